//! How the state cache keeps in sled the records read when asked (a day
//! log's closed chunks, closed loans' records, under `cold/`:
//! [`crate::domain::stored`]): behind a
//! byte that says whether the value is stored as it is or zstd-compressed.
//!
//! - `[0x00][value]`: as it is (short values, and those zstd cannot
//!   shrink);
//! - `[0x01][value length u32, little-endian][one zstd frame of the value]`.
//!
//! Every other record is kept bare, as it is: those are read at every
//! start, and decompressing them (on the thread that reads sled, ahead of
//! the rest of startup) took a clean restart at 10^7 entries from about
//! 1.9 s to about 3.8 s, while the records read when asked are not read at
//! startup at all. The day log's chunks are the largest part of the cache
//! (at 10^6 entries of the recovery benchmark, 31.6 of its 74 MB of
//! records) and compress to about a fifth.
//!
//! The terms kept for these records, and the cache's digest, are of the
//! stored bytes (what is on disk is what is checked); what the store hands
//! out, and what `verify` compares with its replay, is the value. A cache
//! of an earlier format, whose records read when asked have no such byte,
//! is known by its format record (kept bare) before any of them is read.

use std::borrow::Cow;

use crate::domain::stored::is_stored_key;

use super::zstd_block;

/// A value stored as it is.
const PLAIN: u8 = 0x00;
/// A value stored zstd-compressed.
const ZSTD: u8 = 0x01;
/// Values shorter than this are stored as they are.
const COMPRESS_FROM: usize = 256;
const ZSTD_HEADER_LEN: usize = 1 + 4;

/// Whether the record `key` is kept bare, without the layout byte: all
/// but the records read when asked.
pub fn is_bare(key: &[u8]) -> bool {
    !is_stored_key(key)
}

/// The bytes stored in sled for the value of record `key` (the value
/// itself, not a copy, for a record kept bare).
pub fn seal<'a>(key: &[u8], value: &'a [u8]) -> Cow<'a, [u8]> {
    if is_bare(key) {
        return Cow::Borrowed(value);
    }
    if value.len() >= COMPRESS_FROM
        && let Ok(len) = u32::try_from(value.len())
    {
        let mut stored = Vec::with_capacity(ZSTD_HEADER_LEN + value.len() / 2);
        stored.push(ZSTD);
        stored.extend_from_slice(&len.to_le_bytes());
        if zstd_block::compress_into(value, ZSTD_HEADER_LEN, &mut stored) {
            return Cow::Owned(stored);
        }
    }
    let mut stored = Vec::with_capacity(1 + value.len());
    stored.push(PLAIN);
    stored.extend_from_slice(value);
    Cow::Owned(stored)
}

/// The value of record `key` from the bytes stored for it.
pub fn open<'a>(key: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    if is_bare(key) {
        return Ok(Cow::Borrowed(stored));
    }
    let unreadable = |why: String| {
        format!(
            "record {:?} is not stored in a layout this build reads: {why}",
            String::from_utf8_lossy(key)
        )
    };
    match stored.split_first() {
        Some((&PLAIN, value)) => Ok(Cow::Borrowed(value)),
        Some((&ZSTD, rest)) => {
            let Some((len, frame)) = rest.split_first_chunk::<4>() else {
                return Err(unreadable("its length is cut".into()));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > RECORD_BYTES_MAX {
                return Err(unreadable(format!("it names {len} bytes")));
            }
            zstd_block::decompress(frame, len)
                .map(Cow::Owned)
                .map_err(unreadable)
        }
        Some((tag, _)) => Err(unreadable(format!("layout byte {tag:#04x}"))),
        None => Err(unreadable("no bytes".into())),
    }
}

/// The longest value a compressed record may name: far above any record
/// the state writes (a day log's chunk ends by its bytes, well under a
/// mebibyte), so that a damaged length cannot ask for gigabytes; the
/// record's term is checked before its bytes are read as a layout.
const RECORD_BYTES_MAX: usize = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_they_were_written() {
        let long: Vec<u8> = (0..4000u32).flat_map(|i| (i % 50).to_le_bytes()).collect();
        let noise: Vec<u8> = (0..64u32)
            .flat_map(|i| crate::domain::entry::chain_hash(&[0; 32], &i.to_le_bytes()))
            .collect();
        for value in [&b""[..], b"short", &long, &noise] {
            let stored = seal(b"cold/x/1", value);
            assert_eq!(&*open(b"cold/x/1", &stored).unwrap(), value);
        }
        let stored = seal(b"cold/x/1", &long);
        assert_eq!(stored[0], ZSTD);
        assert!(stored.len() * 5 < long.len(), "{} bytes", stored.len());
        assert_eq!(seal(b"cold/x/1", &noise)[0], PLAIN, "no smaller compressed");
        assert_eq!(&*seal(b"cold/x/1", b"short"), b"\x00short");
    }

    /// Records read at startup, the format record among them, are kept
    /// bare, as earlier formats kept them.
    #[test]
    fn records_read_at_startup_are_kept_bare() {
        let long: Vec<u8> = (0..4000u32).flat_map(|i| (i % 50).to_le_bytes()).collect();
        let format = crate::domain::state::StateKey::Format.to_bytes();
        for key in [&format[..], b"steps/acct/1", b"loan/L1"] {
            assert!(is_bare(key));
            assert_eq!(seal(key, &long), long);
            assert_eq!(&*open(key, &long).unwrap(), &long[..]);
        }
    }

    /// Damaged or foreign bytes are an error naming the record, never a
    /// panic or another value.
    #[test]
    fn damaged_values_are_errors() {
        let long: Vec<u8> = (0..4000u32).flat_map(|i| (i % 50).to_le_bytes()).collect();
        let stored = seal(b"cold/x/1", &long).into_owned();
        let mut longer = stored.clone();
        longer[1] = longer[1].wrapping_add(1);
        let mut cut = stored.clone();
        cut.truncate(stored.len() / 2);
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        for bad in [&longer[..], &cut, &huge, &[ZSTD, 1, 0], &[7, 1, 2], &[]] {
            let error = open(b"cold/x/1", bad).unwrap_err();
            assert!(error.contains("\"cold/x/1\""), "{error}");
        }
    }

    proptest::proptest! {
        /// Any bytes, and compressed values mutated: an error or a value,
        /// never a panic.
        #[test]
        fn any_stored_bytes_open_without_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            flip in 0usize..600,
        ) {
            let _ = open(b"cold/x/1", &bytes);
            let long: Vec<u8> = (0..2000u32).map(|i| (i % 37) as u8).collect();
            let mut stored = seal(b"cold/x/1", &long).into_owned();
            let at = flip % stored.len();
            stored[at] ^= bytes.first().copied().unwrap_or(1) | 1;
            if let Ok(value) = open(b"cold/x/1", &stored) {
                proptest::prop_assert!(value.len() <= RECORD_BYTES_MAX);
            }
        }
    }
}
