//! zstd (RFC 8878) for the store's records, one frame a record: the
//! journal's long entries ([`super::journal_file::payload`]) and the state
//! cache's records. Each thread keeps one compression and one
//! decompression context, so that a record costs no context of its own.

use std::cell::RefCell;

/// zstd's level: the fastest of its positive levels. Level 3 made the
/// simulated branch's journal 2 % smaller, for about twice the time.
const LEVEL: i32 = 1;

/// zstd's level for [`Effort::Fast`]: its first negative level, which
/// leaves literals as they are (no Huffman tables built for them). On a
/// record of about 1 KB most of level 1's time is building those tables:
/// the simulated branch's disbursements (870 bytes) took 6.3 µs each at
/// level 1 for 696 bytes, 2.2 µs at this level for 785.
const LEVEL_FAST: i32 = -1;

/// How hard to compress a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// Level 1.
    Default,
    /// Level -1: about a third of level 1's time on a record of about
    /// 1 KB, for about 13 % more bytes.
    Fast,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(LEVEL).ok());
    static COMPRESSOR_FAST: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(LEVEL_FAST).ok());
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Appends one zstd frame of `bytes` to `out` if it is shorter than
/// `bytes` by more than `overhead` (what the caller adds to mark it), and
/// says whether it did; otherwise `out` is left as it was.
pub fn compress_into(bytes: &[u8], overhead: usize, out: &mut Vec<u8>) -> bool {
    compress_with(Effort::Default, bytes, overhead, out)
}

/// [`compress_into`] at `effort`. Either way the frame is one any zstd
/// decoder reads: the effort is not recorded, nor needed to read it.
pub fn compress_with(effort: Effort, bytes: &[u8], overhead: usize, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.resize(start + zstd::zstd_safe::compress_bound(bytes.len()), 0);
    let context = match effort {
        Effort::Default => &COMPRESSOR,
        Effort::Fast => &COMPRESSOR_FAST,
    };
    let written = context.with(|compressor| match compressor.borrow_mut().as_mut() {
        Some(compressor) => compressor.compress_to_buffer(bytes, &mut out[start..]).ok(),
        None => None,
    });
    match written {
        Some(written) if written + overhead < bytes.len() => {
            out.truncate(start + written);
            true
        }
        // No smaller, or no context (zstd could not allocate one): the
        // caller stores the bytes as they are.
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// The bytes a zstd `frame` holds, which must be exactly `len` long; the
/// frame must be the whole of `frame` (no second frame, nothing after it:
/// the stored bytes are not covered by the entry's hash, so they hold no
/// more than the one frame they need).
pub fn decompress(frame: &[u8], len: usize) -> Result<Vec<u8>, String> {
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(size) if size == frame.len() => {}
        Ok(size) => {
            return Err(format!(
                "{} bytes after its zstd frame",
                frame.len().saturating_sub(size)
            ));
        }
        Err(code) => return Err(zstd::zstd_safe::get_error_name(code).to_owned()),
    }
    let mut bytes = Vec::with_capacity(len);
    let written = DECOMPRESSOR.with(|decompressor| match decompressor.borrow_mut().as_mut() {
        Some(decompressor) => decompressor
            .decompress_to_buffer(frame, &mut bytes)
            .map_err(|error| error.to_string()),
        None => Err("no zstd context could be made".to_owned()),
    })?;
    if written != len {
        return Err(format!("{written} bytes where {len} were named"));
    }
    Ok(bytes)
}
