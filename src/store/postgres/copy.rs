//! Copying a journal between the embedded store and PostgreSQL, either way
//! (`mfi-ledger migrate`), and out of PostgreSQL for `verify`: every entry
//! is checked against the chain as it is copied, and the copy is compared
//! with the original hash for hash.
//!
//! These run their own runtime: call them from a plain thread (the CLI),
//! never from an async context.

use std::path::Path;
use std::sync::Arc;

use crate::domain::entry::{Entry, GENESIS_HASH, Hash, chain_hash};

use super::super::journal_file::{JOURNAL_FILE_NAME, JournalFile};
use super::super::{ReadOnlyStore, Store, StoreError};
use super::{PgJournal, PostgresOptions, block, connect, database_error, entry_of, read_head};

/// Entries read and written at a time.
const CHUNK: usize = 1000;

/// What a copy copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Entries copied (the last one's sequence number).
    pub entries: u64,
    /// The last entry's hash (the genesis hash, zeros, when none).
    pub last_hash: Hash,
}

/// Every row of the journal up to `head`, in order: sequence, previous
/// hash, hash, canonical bytes.
const READ_ROWS: &str = "SELECT seq, prev_hash, hash, body FROM mfi_ledger_journal
    WHERE seq <= $1 ORDER BY seq";

/// Every row's sequence number and hash, in order.
const READ_HASHES: &str = "SELECT seq, hash FROM mfi_ledger_journal ORDER BY seq";

/// Copies the PostgreSQL journal at `url`, as it stands (up to its head),
/// into a new journal file in `dir`, which must hold none. Each row must
/// chain to the one before (its previous-hash column, and its hash worked
/// out again from its bytes), and the last must be the head's.
pub fn export_journal(url: &str, dir: &Path) -> Result<Copied, StoreError> {
    let config = super::connection_config(url)?;
    super::LocalFiles::create_dir(dir)?;
    if dir.join(JOURNAL_FILE_NAME).exists() {
        return Err(StoreError::Inconsistent(format!(
            "{} holds a journal already: copy into a new directory",
            dir.display()
        )));
    }
    let mut journal = JournalFile::open(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreError::io("starting a runtime for the copy"))?;
    runtime.block_on(async move {
        use tokio_stream::StreamExt;
        let client = connect(&config)
            .await
            .map_err(database_error("connecting to the PostgreSQL journal"))?;
        let read = read_head(&client).await.map_err(database_error(
            "reading the journal's head (is this a ledger's database?)",
        ))?;
        let (head, head_hash) = (read.sequence, read.hash);
        let rows = client
            .query_raw(READ_ROWS, [head as i64])
            .await
            .map_err(database_error("reading the journal"))?;
        let mut rows = std::pin::pin!(rows);
        let mut previous = GENESIS_HASH;
        let mut sequence = 0u64;
        let mut chunk: Vec<Arc<Entry>> = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.next().await {
            let row = row.map_err(database_error("reading the journal"))?;
            sequence += 1;
            let found = row.get::<_, i64>(0) as u64;
            if found != sequence {
                return Err(StoreError::Inconsistent(format!(
                    "entry {sequence} is missing from the PostgreSQL journal (found {found})"
                )));
            }
            if row.get::<_, &[u8]>(1) != previous {
                return Err(StoreError::Inconsistent(format!(
                    "entry {sequence}'s previous hash in the PostgreSQL journal is not entry {}'s \
                     hash",
                    sequence - 1
                )));
            }
            let entry = entry_of(sequence, row.get(2), row.get(3))?;
            if chain_hash(&previous, &entry.canonical) != entry.hash {
                return Err(StoreError::Inconsistent(format!(
                    "entry {sequence}'s hash is not what its bytes and the entry before give: \
                     changed in the database"
                )));
            }
            previous = entry.hash;
            chunk.push(Arc::new(entry));
            if chunk.len() == CHUNK {
                journal.append(&chunk)?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            journal.append(&chunk)?;
        }
        if (sequence, previous) != (head, head_hash) {
            return Err(StoreError::Inconsistent(format!(
                "the PostgreSQL journal's head names entry {head}, but its rows end at entry \
                 {sequence} with another hash"
            )));
        }
        Ok(Copied {
            entries: sequence,
            last_hash: previous,
        })
    })
}

/// Copies the embedded journal in `dir` (no server may hold it) into the
/// PostgreSQL journal of `options.url`, which must be empty, as its writer
/// (under its lease, which is given back at the end); then reads the rows
/// back and compares them with the original, hash for hash. Every entry is
/// checked against the chain as it is appended.
pub fn import_journal(dir: &Path, options: &PostgresOptions) -> Result<Copied, StoreError> {
    let source = ReadOnlyStore::open(dir)?;
    let target = PgJournal::open(options)?;
    let already = target.last_sequence();
    if already != 0 {
        return Err(StoreError::Inconsistent(format!(
            "the database holds a journal of {already} entries already: migrate into an empty \
             database"
        )));
    }
    let last = source.last_sequence();
    let mut hashes = Vec::with_capacity(usize::try_from(last).unwrap_or(0));
    while (hashes.len() as u64) < last {
        let entries = source.read_entries(hashes.len() as u64 + 1, CHUNK)?;
        if entries.is_empty() {
            return Err(StoreError::Inconsistent(format!(
                "entry {} is missing from the journal in {}",
                hashes.len() + 1,
                dir.display()
            )));
        }
        hashes.extend(entries.iter().map(|entry| entry.hash));
        let entries: Vec<Arc<Entry>> = entries.into_iter().map(Arc::new).collect();
        target.append(&entries)?;
    }
    let config = target.config.clone();
    let read_back = block(target.runtime(), async move {
        use tokio_stream::StreamExt;
        let client = connect(&config)
            .await
            .map_err(database_error("connecting to read the copy back"))?;
        let rows = client
            .query_raw(READ_HASHES, std::iter::empty::<i64>())
            .await
            .map_err(database_error("reading the copy back"))?;
        let mut rows = std::pin::pin!(rows);
        let mut found = Vec::with_capacity(hashes.len());
        while let Some(row) = rows.next().await {
            let row = row.map_err(database_error("reading the copy back"))?;
            found.push((row.get::<_, i64>(0) as u64, super::hash_of(row.get(1))));
        }
        Ok::<_, StoreError>((hashes, found))
    })??;
    let (hashes, found) = read_back;
    let expected = hashes.iter().enumerate().map(|(i, h)| (i as u64 + 1, *h));
    if let Some(((sequence, _), _)) = expected
        .zip(found.iter())
        .find(|(expected, found)| expected != *found)
    {
        return Err(StoreError::Inconsistent(format!(
            "entry {sequence} read back from the database is not the one copied"
        )));
    }
    if found.len() != hashes.len() {
        return Err(StoreError::Inconsistent(format!(
            "the database holds {} entries after the copy of {}",
            found.len(),
            hashes.len()
        )));
    }
    Ok(Copied {
        entries: last,
        last_hash: hashes.last().copied().unwrap_or(GENESIS_HASH),
    })
}
