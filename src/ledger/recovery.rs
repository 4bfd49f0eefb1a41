//! Startup: load the derived-state cache, replay the journal past it, and
//! rebuild from the journal alone when the cache does not fit: when its
//! records do not add up to the digest recorded with them (edited or damaged
//! on disk: the store refuses them), when its head is not the journal's entry
//! at that sequence, or when the journal does not continue it.

use std::sync::Arc;

use crate::domain::ids::Interner;
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
    // The records' ids share their texts, on every thread that decodes
    // them: this one (the store hands each record to it) and the books'.
    let interner = Arc::new(Interner::default());
    interner.enter(|| read_cache(store, &interner))
}

/// [`load_cache`]'s reading, on a thread that entered `interner`.
fn read_cache(store: &dyn Store, interner: &Arc<Interner>) -> Result<LedgerState, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // `recover` has the state read them back from the store once loaded.
    let let_go = store.stored_records().is_some();
    std::thread::scope(|scope| {
        let mut feeds = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..cores.clamp(1, BOOKS_THREADS) {
            let (feed, records) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(2);
            let interner = Arc::clone(interner);
            match std::thread::Builder::new()
                .name("cache-books".into())
                .spawn_scoped(scope, move || {
                    interner.enter(|| take_books(records, let_go))
                }) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rust_decimal::Decimal;

    use super::recover;
    use crate::domain::access::{Role, RoleGrant, Scope};
    use crate::domain::account::AccountId;
    use crate::domain::command::{Command, CommandBody, Money, SavingsKind};
    use crate::domain::ids::{
        Actor, BranchId, CenterId, GroupId, MemberId, Name, PrincipalId, RequestId,
        SavingsAccountId,
    };
    use crate::domain::money::Currency;
    use crate::domain::state::TIME_ZONE_DEFAULT;
    use crate::ledger::{Ledger, LedgerConfig, SystemClock};
    use crate::store::DiskStore;

    /// A restart reads each id's text once: the branch's id in the
    /// branch's record, in each member's, and in the books' records of
    /// the accounts her deposit posted to (read back on threads of their
    /// own) is one allocation, not a copy a record.
    #[tokio::test]
    async fn ids_read_back_from_the_cache_share_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::start(
            Arc::new(DiskStore::open(dir.path()).unwrap()),
            Arc::new(SystemClock),
            LedgerConfig::default(),
        )
        .unwrap();
        crate::auth::bootstrap(&ledger, dir.path()).await.unwrap();
        let admin = PrincipalId::parse("principal", crate::auth::FIRST_ADMINISTRATOR).unwrap();
        let grants = [Role::Manager, Role::ProductAdmin]
            .map(|role| RoleGrant {
                role,
                scope: Scope::Institution,
            })
            .to_vec();
        crate::auth::create_principal_in_process(&ledger, &admin, "manager.tb", grants, 1)
            .await
            .unwrap();
        let name = |text: &str| Name::parse("name", text).unwrap();
        let branch = BranchId::parse("branch_id", "TB").unwrap();
        let center = CenterId::parse("center_id", "TB-C1").unwrap();
        let group = GroupId::parse("group_id", "TB-G1").unwrap();
        let members = ["TB-0001", "TB-0002"].map(|id| MemberId::parse("member_id", id).unwrap());
        let mut bodies = vec![
            CommandBody::CreateBranch {
                branch_id: branch.clone(),
                name: name("Thái Bình"),
                time_zone: TIME_ZONE_DEFAULT.into(),
                currency: Currency::Vnd,
                compulsory_savings_percent: Decimal::from(10),
                opened_on: None,
            },
            CommandBody::CreateCenter {
                center_id: center.clone(),
                branch_id: branch.clone(),
                name: name("Center 1"),
                opened_on: None,
            },
            CommandBody::CreateGroup {
                group_id: group.clone(),
                center_id: center,
                name: name("Group 1"),
                opened_on: None,
            },
        ];
        for member in &members {
            bodies.push(CommandBody::RegisterMember {
                member_id: member.clone(),
                full_name: name("Hoa"),
                group_id: group.clone(),
                joined_on: None,
            });
            bodies.push(CommandBody::OpenSavingsAccount {
                member_id: member.clone(),
                kind: SavingsKind::Compulsory,
                opened_on: None,
            });
            bodies.push(CommandBody::DepositSavings {
                account_id: SavingsAccountId::new(member, 'C', 1),
                amount: Money {
                    amount: Decimal::from(50_000),
                    currency: None,
                },
                effective_date: None,
            });
        }
        for (n, body) in bodies.into_iter().enumerate() {
            let command = Command {
                request_id: RequestId::parse("request_id", &format!("r{n}")).unwrap(),
                actor: Actor::parse("actor", "clerk").unwrap(),
                principal: Some(PrincipalId::parse("principal", "manager.tb").unwrap()),
                approval: None,
                body,
            };
            ledger.submit(command).await.unwrap();
        }
        ledger.shutdown();
        drop(ledger);

        let store = DiskStore::open(dir.path()).unwrap();
        let state = recover(&store).unwrap();
        let at = |id: &BranchId| id.as_str().as_ptr();
        let branch = &state.branch(&branch).unwrap().id;
        for member in &members {
            let hers = state.member_branch(member).unwrap();
            assert_eq!(hers, branch);
            assert_eq!(
                at(hers),
                at(branch),
                "member {member}'s branch id is a copy"
            );
            let account = AccountId::Savings(SavingsAccountId::new(member, 'C', 1));
            let book = state.books().account(&account).expect("her deposit's book");
            assert_eq!(at(&book.branch), at(branch), "{account}'s book's branch id");
        }
        let (cash, _) = state
            .books()
            .account_record_keys()
            .find(|(account, _)| matches!(account, AccountId::Cash(_)))
            .expect("the deposits' cash");
        let AccountId::Cash(cash_branch) = cash else {
            unreachable!("found as cash")
        };
        assert_eq!(at(cash_branch), at(branch), "the cash account's key");
    }
}
