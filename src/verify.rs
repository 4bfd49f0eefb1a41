//! Offline verification of a data directory (server stopped): replays the
//! journal from the first entry, checks every record's checksum, every
//! entry's hash chain, canonical encoding, balance and sequence, re-executes
//! every command and compares the result with the stored entry, then compares
//! the rebuilt derived state with the stored cache.
//!
//! Architecture invariant: verify only reads; it never repairs or writes the
//! journal.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;

use crate::domain::command::Command;
use crate::domain::entry::{Entry, EntryBody, GENESIS_HASH, Hash, chain_hash};
use crate::domain::state::{ExecContext, LedgerState};
use crate::store::{BATCH_BYTES_MAX, JOURNAL_FILE_NAME, RECORD_LEN_MAX, load_state_records};

/// What a successful verification saw.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry.
    pub last_hash: Hash,
    /// Sequence number the stored state cache was at when compared.
    pub state_compared_at: u64,
    /// Bytes of a torn, never-acknowledged record at the journal's tail
    /// (the server cuts it off at its next start).
    pub torn_tail_bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// The first thing found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The data directory cannot be read.
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    /// An entry does not check out.
    #[error("entry {sequence}: {message}")]
    Entry { sequence: u64, message: String },
    /// The stored derived state differs from the replay.
    #[error("derived state differs from the journal's replay at entry {sequence}: {message}")]
    State { sequence: u64, message: String },
}

/// Verifies the data directory `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let journal_path = dir.join(JOURNAL_FILE_NAME);
    let unreadable = |message: String| VerifyError::Unreadable {
        path: journal_path.display().to_string(),
        message,
    };
    let file = File::open(&journal_path).map_err(|e| unreadable(e.to_string()))?;
    let lookup_file = file.try_clone().map_err(|e| unreadable(e.to_string()))?;
    let stored = load_stored_state(dir)?;
    let stored_at = stored.as_ref().map_or(0, |(sequence, _)| *sequence);

    let mut reader = JournalReader::new(file).map_err(unreadable)?;
    let mut state = LedgerState::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut previous_hash = GENESIS_HASH;
    let mut compared_at = None;
    if stored_at == 0 {
        compare_state(&state, stored.as_ref(), 0)?;
        compared_at = Some(0);
    }
    loop {
        let (offset, payload) = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(RecordError::Torn) if reader.torn_bytes() <= BATCH_BYTES_MAX => break,
            Err(RecordError::Torn) => {
                return Err(VerifyError::Entry {
                    sequence: offsets.len() as u64 + 1,
                    message: format!(
                        "corrupt record at byte {} with {} bytes after it (more than one batch: not a torn write)",
                        reader.offset,
                        reader.torn_bytes()
                    ),
                });
            }
            Err(RecordError::Io(message)) => return Err(unreadable(message)),
        };
        let sequence = offsets.len() as u64 + 1;
        let entry = check_entry(sequence, &payload, &previous_hash)?;
        let lookup = |wanted: u64| -> Result<Option<EntryBody>, String> {
            let Some(&at) = offsets.get((wanted.max(1) - 1) as usize) else {
                return Ok(None);
            };
            crate::store::read_entry_at_offset(&lookup_file, at, wanted)
                .map(|e| Some(e.body))
                .map_err(|e| e.to_string())
        };
        reexecute(&state, &entry, &lookup)?;
        state.apply(&entry).map_err(|e| VerifyError::Entry {
            sequence,
            message: e.message,
        })?;
        state.clear_changes();
        previous_hash = entry.hash;
        offsets.push(offset);
        if sequence == stored_at {
            compare_state(&state, stored.as_ref(), sequence)?;
            compared_at = Some(sequence);
        }
    }
    if compared_at.is_none() {
        return Err(VerifyError::State {
            sequence: stored_at,
            message: format!(
                "the state cache is at entry {stored_at} but the journal ends at entry {}",
                offsets.len()
            ),
        });
    }
    Ok(VerifyReport {
        entries: offsets.len() as u64,
        last_hash: previous_hash,
        state_compared_at: stored_at,
        torn_tail_bytes: reader.torn_bytes(),
        elapsed: started.elapsed(),
    })
}

/// Decodes a record's payload and checks its encoding, chain and balance.
fn check_entry(sequence: u64, payload: &[u8], previous_hash: &Hash) -> Result<Entry, VerifyError> {
    let fail = |message: String| VerifyError::Entry { sequence, message };
    if payload.len() < 33 {
        return Err(fail("record too short".into()));
    }
    let (bytes, hash) = payload.split_at(payload.len() - 32);
    let body = EntryBody::from_canonical_bytes(bytes).map_err(|e| fail(e.to_string()))?;
    if body.sequence != sequence {
        return Err(fail(format!(
            "holds sequence number {} (a gap or a duplicate)",
            body.sequence
        )));
    }
    if body.canonical_bytes() != bytes {
        return Err(fail(
            "stored bytes are not the canonical encoding of the entry".into(),
        ));
    }
    let expected = chain_hash(previous_hash, bytes);
    if expected != hash {
        return Err(fail(format!(
            "hash mismatch: stored {}, expected {} from the previous hash and the entry's bytes",
            hex::encode(hash),
            hex::encode(expected)
        )));
    }
    if !body.is_balanced() {
        let (debits, credits) = body.totals();
        return Err(fail(format!(
            "postings do not balance: debits {debits}, credits {credits}"
        )));
    }
    Ok(Entry {
        body,
        hash: expected,
    })
}

/// Re-decides the entry's command against the state before it and checks
/// that the ledger's rules give exactly the stored entry.
fn reexecute(
    state: &LedgerState,
    entry: &Entry,
    lookup: &dyn Fn(u64) -> Result<Option<EntryBody>, String>,
) -> Result<(), VerifyError> {
    let body = &entry.body;
    let fail = |message: String| VerifyError::Entry {
        sequence: body.sequence,
        message,
    };
    if let Some(earlier) = state.request(&body.request_id) {
        return Err(fail(format!(
            "reuses request id {} of entry {}",
            body.request_id, earlier.sequence
        )));
    }
    let command = Command {
        request_id: body.request_id.clone(),
        actor: body.actor.clone(),
        body: body.command.clone(),
    };
    if command.request_hash() != body.request_hash {
        return Err(fail("request hash does not match the command".into()));
    }
    let recorded_at = DateTime::from_timestamp_micros(body.recorded_at_micros)
        .ok_or_else(|| fail("time of recording out of range".into()))?;
    let decided = state
        .execute(&command, ExecContext { recorded_at }, lookup)
        .map_err(|e| fail(format!("the ledger's rules refuse its command now: {e}")))?;
    if decided != *body {
        return Err(fail(
            "re-executing its command gives a different entry (outcome or postings)".into(),
        ));
    }
    Ok(())
}

type StoredState = (u64, BTreeMap<Vec<u8>, Vec<u8>>);

fn load_stored_state(dir: &Path) -> Result<Option<StoredState>, VerifyError> {
    let records = load_state_records(dir).map_err(|e| VerifyError::Unreadable {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let Some(records) = records else {
        return Ok(None);
    };
    let records: BTreeMap<Vec<u8>, Vec<u8>> = records.into_iter().collect();
    if records.is_empty() {
        return Ok(None);
    }
    let state = LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        .map_err(|message| VerifyError::State {
            sequence: 0,
            message,
        })?;
    Ok(Some((state.last_sequence(), records)))
}

fn compare_state(
    state: &LedgerState,
    stored: Option<&StoredState>,
    sequence: u64,
) -> Result<(), VerifyError> {
    let empty = BTreeMap::new();
    let stored = stored.map_or(&empty, |(_, records)| records);
    let rebuilt = state.export();
    let rebuilt = if sequence == 0 && stored.is_empty() {
        BTreeMap::new()
    } else {
        rebuilt
    };
    for (key, value) in &rebuilt {
        match stored.get(key) {
            None => return Err(state_error(sequence, key, "missing from the stored state")),
            Some(stored_value) if stored_value != value => {
                return Err(state_error(
                    sequence,
                    key,
                    "stored value differs from the replay",
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(key) = stored.keys().find(|key| !rebuilt.contains_key(*key)) {
        return Err(state_error(
            sequence,
            key,
            "stored but absent from the replay",
        ));
    }
    Ok(())
}

fn state_error(sequence: u64, key: &[u8], message: &str) -> VerifyError {
    VerifyError::State {
        sequence,
        message: format!("record {:?}: {message}", String::from_utf8_lossy(key)),
    }
}

enum RecordError {
    Torn,
    Io(String),
}

/// Streams the journal's records without changing the file.
struct JournalReader {
    reader: BufReader<File>,
    offset: u64,
    len: u64,
    torn: u64,
}

impl JournalReader {
    fn new(file: File) -> Result<JournalReader, String> {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        reader
            .read_exact(&mut magic)
            .map_err(|e| format!("reading header: {e}"))?;
        if &magic != b"MFIJRNL1" {
            return Err("not an mfi-ledger journal (bad magic)".into());
        }
        Ok(JournalReader {
            reader,
            offset: 8,
            len,
            torn: 0,
        })
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>, RecordError> {
        let remaining = self.len - self.offset;
        if remaining == 0 {
            return Ok(None);
        }
        let torn = |this: &mut JournalReader| {
            this.torn = remaining;
            Err(RecordError::Torn)
        };
        if remaining < 8 {
            return torn(self);
        }
        let mut header = [0u8; 8];
        self.reader
            .read_exact(&mut header)
            .map_err(|e| RecordError::Io(e.to_string()))?;
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > RECORD_LEN_MAX || (8 + len) as u64 > remaining {
            return torn(self);
        }
        let mut payload = vec![0u8; len];
        self.reader
            .read_exact(&mut payload)
            .map_err(|e| RecordError::Io(e.to_string()))?;
        if crc32fast::hash(&payload) != crc {
            return torn(self);
        }
        let at = self.offset;
        self.offset += 8 + len as u64;
        Ok(Some((at, payload)))
    }

    fn torn_bytes(&self) -> u64 {
        self.torn
    }
}
