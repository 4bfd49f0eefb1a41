//! A record's payload: an entry's canonical bytes and its hash, the bytes
//! stored as they are or compressed.
//!
//! Two layouts, told apart by the first byte:
//! - **plain**: the canonical bytes (whose first byte is the entry's
//!   encoding version, 3 or 4 so far) followed by the 32-byte hash;
//! - **zstd**: [`PAYLOAD_ZSTD`], the canonical bytes' length (`u32`,
//!   little-endian), one zstd frame (RFC 8878) of the canonical bytes, then
//!   the 32-byte hash.
//!
//! The hash is always of the canonical bytes (`SHA-256(previous hash ||
//! canonical bytes)`), never of what is stored: compression is how a record
//! is kept on disk, not part of the entry, so the chain, the Merkle tree and
//! every proof are the same whichever way an entry was stored, and a later
//! build may store the same entry otherwise without changing any hash.
//!
//! Entries of at least [`COMPRESS_FROM`] canonical bytes are compressed
//! when that makes them smaller: collection sheets of forty lines, loan
//! schedules. A repayment's or a deposit's few hundred bytes are not (zstd
//! finds little to take out of one of them, and the writer's time per
//! repayment is what the benchmarks hold it to). Entries under
//! [`COMPRESS_FAST_BELOW`] bytes are compressed at zstd's fast level,
//! longer ones at level 1: the level is not recorded, any zstd decoder
//! reads either.
//!
//! [`PAYLOAD_ZSTD`] is above every entry encoding version, so a release
//! before compressed records, reading one, refuses the journal as written
//! by a newer release (its decoding names the version), and cuts nothing.

use std::borrow::Cow;

use crate::domain::entry::Hash;
use crate::store::zstd_block;

/// First byte of a payload holding its canonical bytes zstd-compressed.
/// Entry encoding versions count up from 1 and never reach it.
pub const PAYLOAD_ZSTD: u8 = 0xC0;

/// Canonical bytes shorter than this are stored plain.
pub const COMPRESS_FROM: usize = 256;

/// Canonical bytes shorter than this are compressed at zstd's fast level
/// ([`zstd_block::Effort::Fast`]): a disbursement's schedule (about 870
/// bytes for 50 installments) in about a third of level 1's time, for
/// about 90 bytes more (the simulated branch's journal 2 % larger). A
/// collection sheet (3 to 5 KB) keeps level 1, where the fast level would
/// add about 8 % to the journal.
pub const COMPRESS_FAST_BELOW: usize = 2048;

const HASH_LEN: usize = 32;
const ZSTD_HEADER_LEN: usize = 1 + 4;

/// Appends the payload of an entry (`canonical`, `hash`) to `out`: zstd
/// when the entry is long enough and compressing makes it smaller, plain
/// otherwise.
pub fn encode(canonical: &[u8], hash: &Hash, out: &mut Vec<u8>) {
    if canonical.len() >= COMPRESS_FROM
        && let Ok(len) = u32::try_from(canonical.len())
    {
        let start = out.len();
        out.push(PAYLOAD_ZSTD);
        out.extend_from_slice(&len.to_le_bytes());
        let effort = match canonical.len() < COMPRESS_FAST_BELOW {
            true => zstd_block::Effort::Fast,
            false => zstd_block::Effort::Default,
        };
        if zstd_block::compress_with(effort, canonical, ZSTD_HEADER_LEN, out) {
            out.extend_from_slice(hash);
            return;
        }
        out.truncate(start);
    }
    // An entry's bytes start with its encoding version, never the marker.
    debug_assert_ne!(canonical.first(), Some(&PAYLOAD_ZSTD));
    out.extend_from_slice(canonical);
    out.extend_from_slice(hash);
}

/// Why a payload holds no entry's bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Too short to hold a hash and a version byte.
    #[error("record payload of {0} bytes is too short for an entry")]
    TooShort(usize),
    /// A zstd payload whose frame does not decompress to its length.
    #[error("compressed entry does not decompress: {0}")]
    Compressed(String),
}

/// The entry a payload holds: its canonical bytes (borrowed when stored
/// plain, decompressed otherwise) and its hash.
pub fn decode(payload: &[u8]) -> Result<(Cow<'_, [u8]>, Hash), PayloadError> {
    if payload.len() <= HASH_LEN {
        return Err(PayloadError::TooShort(payload.len()));
    }
    let (stored, hash) = payload.split_at(payload.len() - HASH_LEN);
    let hash: Hash = hash.try_into().expect("split_at left exactly 32 bytes");
    if stored[0] != PAYLOAD_ZSTD {
        return Ok((Cow::Borrowed(stored), hash));
    }
    let Some((len, frame)) = stored[1..].split_first_chunk::<4>() else {
        return Err(PayloadError::TooShort(payload.len()));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > super::RECORD_LEN_MAX {
        return Err(PayloadError::Compressed(format!(
            "it names {len} bytes, over the record limit"
        )));
    }
    zstd_block::decompress(frame, len)
        .map(|canonical| (Cow::Owned(canonical), hash))
        .map_err(PayloadError::Compressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(canonical: &[u8]) -> Vec<u8> {
        let hash = [7u8; 32];
        let mut payload = vec![0xAA];
        encode(canonical, &hash, &mut payload);
        let (decoded, got) = decode(&payload[1..]).unwrap();
        assert_eq!(&*decoded, canonical);
        assert_eq!(got, hash);
        payload.split_off(1)
    }

    /// A short entry, and a long one zstd cannot shrink, are stored as
    /// they are: byte for byte what builds before compression wrote.
    #[test]
    fn short_and_incompressible_entries_are_stored_plain() {
        let short: Vec<u8> = (0..COMPRESS_FROM - 1).map(|i| 4 + (i % 7) as u8).collect();
        let payload = round_trip(&short);
        assert_eq!(payload, [&short[..], &[7u8; 32][..]].concat());
        // Bytes of a hash function's output: nothing to compress.
        let mut noise = vec![4u8];
        for i in 0..64u32 {
            noise.extend_from_slice(&crate::domain::entry::chain_hash(
                &[0; 32],
                &i.to_le_bytes(),
            ));
        }
        let payload = round_trip(&noise);
        assert_eq!(payload[0], 4, "stored plain");
        assert_eq!(payload.len(), noise.len() + 32);
    }

    /// A long entry that repeats itself (ids, dates, amounts of a
    /// collection sheet) is stored compressed, and reads back exactly.
    #[test]
    fn long_entries_are_stored_compressed() {
        let mut sheet = vec![4u8, 3, 0];
        for line in 0..40u32 {
            sheet.extend_from_slice(format!("TB-C012-G03-M{line:02}/L1").as_bytes());
            sheet.extend_from_slice(&[0xc0, 0x92, 0x8b, 0x1d, 0, 1, 0]);
        }
        let payload = round_trip(&sheet);
        assert_eq!(payload[0], PAYLOAD_ZSTD);
        assert!(
            payload.len() * 3 < sheet.len(),
            "{} bytes for {}",
            payload.len(),
            sheet.len()
        );
    }

    /// An entry under [`COMPRESS_FAST_BELOW`] bytes (a disbursement's
    /// schedule) is compressed at the fast level, a longer one (a
    /// collection sheet) at level 1; both read back exactly.
    #[test]
    fn short_entries_are_compressed_fast_and_long_ones_harder() {
        let entry = |len: usize| -> Vec<u8> {
            let mut bytes = vec![4u8, 3, 0];
            let mut line = 0u32;
            while bytes.len() < len {
                bytes.extend_from_slice(format!("{line:03}:{}", line * 7919 % 1000).as_bytes());
                bytes.extend_from_slice(&[0xc0, 0x92, (line % 200) as u8, 0x1d, 0, 1, 0]);
                line += 1;
            }
            bytes.truncate(len);
            bytes
        };
        for (len, level) in [
            (900, -1),
            (COMPRESS_FAST_BELOW - 1, -1),
            (COMPRESS_FAST_BELOW, 1),
            (5000, 1),
        ] {
            let canonical = entry(len);
            let payload = round_trip(&canonical);
            assert_eq!(payload[0], PAYLOAD_ZSTD, "{len} bytes");
            let frame = &payload[5..payload.len() - 32];
            let expected = zstd::bulk::compress(&canonical, level).unwrap();
            assert_eq!(frame, &expected[..], "{len} bytes at level {level}");
            let other = zstd::bulk::compress(&canonical, if level == 1 { -1 } else { 1 }).unwrap();
            assert_ne!(frame, &other[..], "{len} bytes: the levels differ on it");
        }
    }

    /// A compressed payload whose frame is damaged, cut, or decompresses to
    /// another length than it names is an error, not a panic or a
    /// different entry.
    #[test]
    fn a_damaged_compressed_payload_is_an_error() {
        let sheet: Vec<u8> = (0..2000u32).map(|i| (i % 13) as u8 + 4).collect();
        let payload = round_trip(&sheet);
        assert_eq!(payload[0], PAYLOAD_ZSTD);
        let mut named_longer = payload.clone();
        named_longer[1] = named_longer[1].wrapping_add(1);
        assert!(matches!(
            decode(&named_longer),
            Err(PayloadError::Compressed(_))
        ));
        let mut huge = payload.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(PayloadError::Compressed(_))));
        let mut damaged = payload.clone();
        for byte in &mut damaged[6..12] {
            *byte ^= 0x5a;
        }
        assert!(decode(&damaged).is_err());
        // A second frame, or bytes after the one frame, are not stored
        // bytes the hash leaves free.
        let frame = &payload[5..payload.len() - 32];
        let doubled = [&payload[..payload.len() - 32], frame, &[7u8; 32][..]].concat();
        assert!(matches!(decode(&doubled), Err(PayloadError::Compressed(_))));
        let trailing = [
            &payload[..payload.len() - 32],
            &[0u8; 3][..],
            &[7u8; 32][..],
        ]
        .concat();
        assert!(matches!(
            decode(&trailing),
            Err(PayloadError::Compressed(_))
        ));
        let cut = [&payload[..payload.len() / 2], &[7u8; 32][..]].concat();
        assert!(decode(&cut).is_err());
        assert!(decode(&[PAYLOAD_ZSTD; 34]).is_err());
        assert_eq!(decode(&[4; 32]), Err(PayloadError::TooShort(32)));
    }
}
