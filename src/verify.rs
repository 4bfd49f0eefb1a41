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
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;

use crate::domain::command::Command;
use crate::domain::entry::{Entry, EntryBody, GENESIS_HASH, Hash, chain_hash};
use crate::domain::state::{ExecContext, LedgerState};
use crate::store::{
    JOURNAL_FILE_NAME, STATE_DIR_NAME, StoreError, load_state_records, read_entry_at_offset,
    scan_journal,
};

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
    let stored = load_stored_state(dir)?;
    let stored_at = stored.as_ref().map_or(0, |(sequence, _)| *sequence);
    let mut replay = Replay {
        file: &file,
        state: LedgerState::new(),
        offsets: Vec::new(),
        previous_hash: GENESIS_HASH,
        stored: stored.as_ref(),
        stored_at,
        compared: false,
        failure: None,
    };
    if stored_at == 0 {
        compare_state(&replay.state, stored.as_ref(), 0)?;
        replay.compared = true;
    }
    let scan = scan_journal(&file, |offset, payload| {
        replay.step(offset, payload).map_err(|failure| {
            let message = failure.to_string();
            replay.failure = Some(failure);
            StoreError::State(message)
        })
    });
    if let Some(failure) = replay.failure {
        return Err(failure);
    }
    let scan = scan.map_err(|error| VerifyError::Entry {
        sequence: replay.offsets.len() as u64 + 1,
        message: format!("journal unreadable: {error}"),
    })?;
    if !replay.compared {
        return Err(VerifyError::State {
            sequence: stored_at,
            message: format!(
                "the state cache is at entry {stored_at} but the journal ends at entry {}: acknowledged entries are missing",
                replay.offsets.len()
            ),
        });
    }
    Ok(VerifyReport {
        entries: replay.offsets.len() as u64,
        last_hash: replay.previous_hash,
        state_compared_at: stored_at,
        torn_tail_bytes: scan.torn_bytes,
        elapsed: started.elapsed(),
    })
}

/// The replay in progress.
struct Replay<'a> {
    file: &'a File,
    state: LedgerState,
    offsets: Vec<u64>,
    previous_hash: Hash,
    stored: Option<&'a StoredState>,
    stored_at: u64,
    compared: bool,
    failure: Option<VerifyError>,
}

impl Replay<'_> {
    /// Checks and applies the entry held by the record at `offset`.
    fn step(&mut self, offset: u64, payload: &[u8]) -> Result<(), VerifyError> {
        let sequence = self.offsets.len() as u64 + 1;
        let entry = check_entry(sequence, payload, &self.previous_hash)?;
        let (file, offsets) = (self.file, &self.offsets);
        let lookup = |wanted: u64| -> Result<Option<EntryBody>, String> {
            let Some(&at) = offsets.get((wanted.max(1) - 1) as usize) else {
                return Ok(None);
            };
            read_entry_at_offset(file, at, wanted)
                .map(|e| Some(e.body))
                .map_err(|e| e.to_string())
        };
        reexecute(&self.state, &entry, &lookup)?;
        self.state.apply(&entry).map_err(|e| VerifyError::Entry {
            sequence,
            message: e.message,
        })?;
        self.state.clear_changes();
        self.previous_hash = entry.hash;
        self.offsets.push(offset);
        if sequence == self.stored_at {
            compare_state(&self.state, self.stored, sequence)?;
            self.compared = true;
        }
        Ok(())
    }
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
        canonical: bytes.to_vec(),
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
            body.request_id, earlier
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

/// The stored state, read from a copy of the state directory so that
/// verification never writes to the data directory (opening sled writes).
fn load_stored_state(dir: &Path) -> Result<Option<StoredState>, VerifyError> {
    let unreadable = |message: String| VerifyError::Unreadable {
        path: dir.display().to_string(),
        message,
    };
    if !dir.join(STATE_DIR_NAME).exists() {
        return Ok(None);
    }
    let copy = tempfile::tempdir().map_err(|e| unreadable(e.to_string()))?;
    copy_dir(&dir.join(STATE_DIR_NAME), &copy.path().join(STATE_DIR_NAME))
        .map_err(|e| unreadable(e.to_string()))?;
    let dir = copy.path();
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

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
