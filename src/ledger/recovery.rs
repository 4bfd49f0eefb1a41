//! Startup: load the derived-state cache, replay the journal past it, and
//! rebuild from the journal alone when the cache does not fit: when its
//! records do not add up to the digest recorded with them (edited or damaged
//! on disk: the store refuses them), when its head is not the journal's entry
//! at that sequence, or when the journal does not continue it.

use crate::domain::state::{BooksRecords, LedgerState, StateImport};
use crate::store::{Store, StoreError};

/// Entries read from the journal at a time while replaying.
const REPLAY_CHUNK: usize = 4096;

/// The state of every durable entry, with the store's cache brought up to date.
pub fn recover(store: &dyn Store) -> Result<LedgerState, StoreError> {
    // The request index lives in the journal: every entry names its
    // request id, and the store indexed them as it opened.
    let index = store.take_request_index();
    let mut state = recover_state(store)?;
    // The store holds every record now (read, replayed and saved, or
    // rebuilt and saved): those read when asked leave memory.
    if let Some(stored) = store.stored_records() {
        state.keep_stored_in(stored);
    }
    // The journal's frames its index spared reading, checked meanwhile.
    store.check_journal()?;
    state.import_request_index(index);
    Ok(state)
}

/// The derived state of every durable entry, without the request index.
fn recover_state(store: &dyn Store) -> Result<LedgerState, StoreError> {
    let journal_last = store.last_sequence();
    let cached = match load_cache(store) {
        Ok(state) if state.last_sequence() > journal_last => {
            // The cache is written only after the journal's barrier, so this
            // means the journal lost acknowledged entries.
            return Err(StoreError::Inconsistent(format!(
                "the state cache is at entry {} but the journal ends at entry {journal_last}: acknowledged \
                     entries are missing from the journal; refusing to start (restore the journal, or move the \
                     state directory aside to accept the loss)",
                state.last_sequence()
            )));
        }
        Ok(state) if joins_the_journal(store, &state)? => Some(state),
        Ok(state) => {
            tracing::warn!(
                cache = state.last_sequence(),
                "state cache does not match the journal's entry at its sequence; rebuilding it from the journal"
            );
            None
        }
        Err(error @ StoreError::Untrusted(_)) => {
            tracing::warn!(%error, "state cache does not match its digest; rebuilding it from the journal");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "state cache unreadable; rebuilding it from the journal");
            None
        }
    };
    if let Some(mut state) = cached {
        // What the cache's records left in the store (a closed loan whole)
        // is read back from it by entries replayed past the cache (the
        // reversal that reopens a loan).
        if let Some(stored) = store.stored_records() {
            state.keep_stored_in(stored);
        }
        match replay(store, &mut state, journal_last).and_then(|()| {
            state
                .take_changes()
                .map_err(|error| {
                    StoreError::Inconsistent(format!(
                        "a record of the state cache could not be read back to be written again: {error}"
                    ))
                })
        }) {
            Ok(replayed) => {
                if !replayed.is_empty() {
                    store.save_state(&replayed)?;
                }
                store.flush_state()?;
                tracing::info!(
                    last_sequence = state.last_sequence(),
                    "ledger recovered from cache and journal"
                );
                return Ok(state);
            }
            Err(error) => {
                tracing::warn!(%error, "the state cache could not be brought up to the journal; rebuilding it from the journal");
            }
        }
    }
    rebuild(store, journal_last)
}

/// Replays the whole journal into a new state and replaces the cache with it.
fn rebuild(store: &dyn Store, journal_last: u64) -> Result<LedgerState, StoreError> {
    let mut state = LedgerState::new();
    replay(store, &mut state, journal_last)?;
    state.clear_changes();
    store.clear_state()?;
    let records: Vec<_> = state
        .export()
        .into_iter()
        .map(|(key, value)| (key, Some(value)))
        .collect();
    store.save_state(&records)?;
    store.flush_state()?;
    tracing::info!(
        last_sequence = state.last_sequence(),
        "ledger rebuilt from the journal"
    );
    Ok(state)
}

/// True when the cache's last entry is the journal's entry at that sequence.
fn joins_the_journal(store: &dyn Store, state: &LedgerState) -> Result<bool, StoreError> {
    if state.last_sequence() == 0 {
        return Ok(true);
    }
    let entry = store.read_entries(state.last_sequence(), 1)?;
    Ok(entry
        .first()
        .is_some_and(|entry| entry.hash == state.last_hash()))
}

/// Books' records handed to their thread at a time, at most...
const BOOKS_BATCH: usize = 256;
/// ... and once they hold this many bytes (a bucket of a busy account holds
/// tens of kilobytes: batches of 256 of them in flight on each thread
/// raised a restart's peak at 10^7 entries by about 130 MiB).
const BOOKS_BATCH_BYTES: usize = 1 << 20;
/// Threads the books' records are shared out between, by account (at most;
/// no more than the machine's cores).
const BOOKS_THREADS: usize = 2;

/// Reads the state cache back. The books' records (most of a long
/// journal's, and most of the work of reading them) are taken in on
/// threads of their own, shared out by account, beside the rest of the
/// state on this one and the store's reading on its own (BENCHMARKS.md,
/// restart); the books' lines are then merged on as many threads. Which
/// thread's refusal is reported when several refuse is not the first in
/// key order, only one of them: any refusal rebuilds the cache. Without
/// threads (none could be started) everything is taken in on this one.
fn load_cache(store: &dyn Store) -> Result<LedgerState, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // `recover` has the state read them back from the store once loaded.
    let let_go = store.stored_records().is_some();
    std::thread::scope(|scope| {
        let mut feeds = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..cores.clamp(1, BOOKS_THREADS) {
            let (feed, records) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(2);
            match std::thread::Builder::new()
                .name("cache-books".into())
                .spawn_scoped(scope, move || take_books(records, let_go))
            {
                Ok(reader) => {
                    feeds.push((feed, Vec::with_capacity(BOOKS_BATCH), 0usize));
                    readers.push(reader);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start a thread to read the books back; reading them on fewer");
                    break;
                }
            }
        }
        let threads = feeds.len();
        let mut import = StateImport::default();
        let loaded = store.load_state(&mut |key, value| {
            let Some(value) = value else {
                return import.add_stored(key);
            };
            if threads == 0 || !BooksRecords::holds(key) {
                return import.add(key, value);
            }
            let (feed, batch, bytes) = &mut feeds[BooksRecords::share_of(key, threads)];
            batch.push((key.to_vec(), value.to_vec()));
            *bytes += key.len() + value.len();
            if batch.len() == BOOKS_BATCH || *bytes >= BOOKS_BATCH_BYTES {
                *bytes = 0;
                let full = std::mem::replace(batch, Vec::with_capacity(BOOKS_BATCH));
                feed.send(full)
                    .map_err(|_| "the books' reader stopped".to_owned())?;
            }
            Ok(())
        });
        for (feed, batch, _) in feeds {
            if !batch.is_empty() && loaded.is_ok() {
                // A send fails only when the thread is gone: its join says why.
                let _ = feed.send(batch);
            }
        }
        let mut books: Result<BooksRecords, String> = Ok(BooksRecords::default());
        for reader in readers {
            // Taking records in has nothing to panic on: if it did, the
            // panic goes on here, as it would on one thread.
            let share = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            books = match (books, share) {
                (Ok(mut books), Ok(share)) => books.absorb(share).map(|()| books),
                (Err(why), _) | (_, Err(why)) => Err(why),
            };
        }
        // The store's verdict first: records that do not add up to their
        // digest say more than one the books refused.
        loaded?;
        let books = books.map_err(StoreError::State)?;
        import.finish_with_books(books).map_err(StoreError::State)
    })
}

/// Takes in the books' records handed over until the sender is done; the
/// first refused is the error (the rest are taken on, for the store to
/// finish its reading and its digest's check).
fn take_books(
    records: std::sync::mpsc::Receiver<Vec<(Vec<u8>, Vec<u8>)>>,
    let_go: bool,
) -> Result<BooksRecords, String> {
    // Accounts' closed records let go of as they are read when the store
    // will read them back: memory never holds them all at once.
    let mut books = match let_go {
        true => BooksRecords::letting_go(),
        false => BooksRecords::default(),
    };
    let mut refused = None;
    for batch in records {
        for (key, value) in batch {
            if refused.is_none()
                && let Err(why) = books.add(&key, value)
            {
                refused = Some(why);
            }
        }
    }
    if let Some(why) = refused {
        return Err(why);
    }
    // The records held appended and the totals by date of the histories
    // taken in worked out, on this thread.
    books.settle()?;
    Ok(books)
}

/// Applies journal entries after the state's last up to `last`.
fn replay(store: &dyn Store, state: &mut LedgerState, last: u64) -> Result<(), StoreError> {
    while state.last_sequence() < last {
        let entries = store.read_entries(state.last_sequence() + 1, REPLAY_CHUNK)?;
        if entries.is_empty() {
            return Err(StoreError::Inconsistent(format!(
                "entry {} missing",
                state.last_sequence() + 1
            )));
        }
        for entry in &entries {
            state
                .apply(entry)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        }
    }
    Ok(())
}
