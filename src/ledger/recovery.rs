//! Startup: load the derived-state cache, replay the journal past it, and
//! rebuild from the journal alone when the cache does not fit: when its
//! records do not add up to the digest recorded with them (edited or damaged
//! on disk: the store refuses them), when its head is not the journal's entry
//! at that sequence, when the journal does not continue it, or when a replay
//! past it saved and the store found the hashes it keeps of its records read
//! when asked damaged (`Store::check_state`).

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
        match replay_saving(store, &mut state, journal_last, SAVE_EVERY) {
            // A cache at the journal's end (a clean stop's, mostly):
            // nothing written, nothing to flush. What the store checks of
            // the records it did not read goes on beside the rest of
            // startup and the server: the cache's next use (a checkpoint,
            // a read of one of those records) waits for it, and if it
            // finds them damaged, it refuses them and has the next start
            // rebuild the cache.
            Ok(0) => {
                tracing::info!(
                    last_sequence = state.last_sequence(),
                    "ledger recovered from cache and journal"
                );
                return Ok(state);
            }
            // The saves waited for that check: a cache it found damaged is
            // rebuilt now (the replay is thrown away).
            Ok(_) => match store.check_state() {
                Ok(()) => {
                    store.flush_state()?;
                    tracing::info!(
                        last_sequence = state.last_sequence(),
                        "ledger recovered from cache and journal"
                    );
                    return Ok(state);
                }
                Err(error @ StoreError::Untrusted(_)) => {
                    tracing::warn!(%error, "state cache does not match what was kept of it; rebuilding it from the journal");
                }
                Err(error) => return Err(error),
            },
            Err(Stopped::Save(error)) => return Err(error),
            Err(Stopped::Replay(error)) => {
                tracing::warn!(%error, "the state cache could not be brought up to the journal; rebuilding it from the journal");
            }
        }
    }
    rebuild(store, journal_last)
}

/// Entries replayed between two saves of what they changed, past the
/// cache or rebuilding it. Once saved, what the state holds only for the
/// store to save (closed loans whole, the day log's closed chunks,
/// members' accounts' records) leaves memory, as at a running server's
/// checkpoints: replaying a long journal (a lost cache is an empty one,
/// replayed past) needs about the memory of serving it, not of holding its
/// whole history and then every record it changed, encoded, to write at
/// once.
const SAVE_EVERY: u64 = 10_000;

/// Replays the whole journal into a new state and replaces the cache with it.
fn rebuild(store: &dyn Store, journal_last: u64) -> Result<LedgerState, StoreError> {
    rebuild_saving_every(store, journal_last, SAVE_EVERY)
}

/// [`rebuild`], saving what changed every `every` entries.
fn rebuild_saving_every(
    store: &dyn Store,
    journal_last: u64,
    every: u64,
) -> Result<LedgerState, StoreError> {
    let mut state = LedgerState::new();
    // Cleared first, then saved as the replay goes: a rebuild stopped
    // partway (a crash, a refused entry) leaves a cache of the state at
    // its last save, whole and consistent, which the next start replays
    // past as any cache behind the journal.
    store.clear_state()?;
    if journal_last == 0 {
        // No entry: the new state's records, head and format among them.
        let records: Vec<_> = state
            .export()
            .map_err(|e| StoreError::State(e.to_string()))?
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        store.save_state(&records)?;
    } else {
        // What is let go of once saved is read back from the store.
        if let Some(stored) = store.stored_records() {
            state.keep_stored_in(stored);
        }
        replay_saving(store, &mut state, journal_last, every).map_err(Stopped::into_error)?;
    }
    store.flush_state()?;
    tracing::info!(
        last_sequence = state.last_sequence(),
        "ledger rebuilt from the journal"
    );
    Ok(state)
}

/// Why bringing the state up to the journal stopped.
enum Stopped {
    /// Replaying an entry, or reading back a record let go of to write it
    /// whole: this cache cannot be brought up to the journal.
    Replay(StoreError),
    /// Writing the cache.
    Save(StoreError),
}

impl Stopped {
    fn into_error(self) -> StoreError {
        match self {
            Stopped::Replay(error) | Stopped::Save(error) => error,
        }
    }
}

/// Replays the journal past the state's last entry up to `last`, and
/// saves what the entries changed every `every` entries and after the
/// last, as a server that wrote them would have at checkpoints that often
/// (each record changed since the last save, as it then stood): what the
/// cache held plus those saves hold every record of the state. Returns
/// how many saves wrote records.
fn replay_saving(
    store: &dyn Store,
    state: &mut LedgerState,
    last: u64,
    every: u64,
) -> Result<usize, Stopped> {
    let mut saves = 0;
    loop {
        let until = last.min(state.last_sequence().saturating_add(every.max(1)));
        replay(store, state, until).map_err(Stopped::Replay)?;
        let (records, saved) = state
            .take_changes_to_save()
            .complete()
            .map_err(|(error, _)| {
                Stopped::Replay(StoreError::Inconsistent(format!(
                    "a record of the state cache could not be read back to be written again: {error}"
                )))
            })?;
        if !records.is_empty() {
            store.save_state(&records).map_err(Stopped::Save)?;
            // What the store now holds for the state leaves memory.
            state.saved_whole(&saved);
            saves += 1;
        }
        if state.last_sequence() >= last {
            return Ok(saves);
        }
        // Flushed, so that the store gives back what it replaced (its
        // pages' old versions), not only at the end.
        store.flush_state().map_err(Stopped::Save)?;
    }
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
        let mut import = StateImport::at_startup();
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
        // Up to `last` and no further: a replay that saves as it goes
        // stops at each save's entry.
        let wanted = usize::try_from(last - state.last_sequence())
            .unwrap_or(usize::MAX)
            .min(REPLAY_CHUNK);
        let entries = store.read_entries(state.last_sequence() + 1, wanted)?;
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
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::{Days, NaiveDate};
    use rust_decimal::Decimal;

    use super::recover;
    use crate::domain::access::{Role, RoleGrant, Scope};
    use crate::domain::account::AccountId;
    use crate::domain::command::{
        Command, CommandBody, LoanSpec, LoanTermsInput, Money, SavingsKind,
    };
    use crate::domain::ids::{
        Actor, BranchId, CenterId, GroupId, LoanId, MemberId, Name, PrincipalId, RequestId,
        SavingsAccountId,
    };
    use crate::domain::money::Currency;
    use crate::domain::schedule::{InterestMethod, RepaymentFrequency};
    use crate::domain::state::{LedgerState, TIME_ZONE_DEFAULT};
    use crate::ledger::{Ledger, LedgerConfig, SystemClock};
    use crate::store::{DiskStore, Store};

    /// A restart reads each id's text once: the branch's id in the
    /// branch's record, in each member's, and in the books' records of
    /// the accounts her deposit posted to (read back on threads of their
    /// own) is one allocation, not a copy a record.
    #[tokio::test]
    async fn ids_read_back_from_the_cache_share_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = branch_ledger(dir.path()).await;
        let branch = BranchId::parse("branch_id", "TB").unwrap();
        let members = ["TB-0001", "TB-0002"].map(|id| MemberId::parse("member_id", id).unwrap());
        let mut bodies = Vec::new();
        for member in &members {
            bodies.extend(member_with_savings(member));
            bodies.push(deposit(member, 50_000, None));
        }
        submit_all(&ledger, 0, bodies).await;
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

    /// A ledger in `dir` with its manager `manager.tb` and a branch TB
    /// with a center and a group.
    async fn branch_ledger(dir: &std::path::Path) -> Ledger {
        let ledger = Ledger::start(
            Arc::new(DiskStore::open(dir).unwrap()),
            Arc::new(SystemClock),
            LedgerConfig::default(),
        )
        .unwrap();
        crate::auth::bootstrap(&ledger, dir).await.unwrap();
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
        let branch = BranchId::parse("branch_id", "TB").unwrap();
        let center = CenterId::parse("center_id", "TB-C1").unwrap();
        let bodies = vec![
            CommandBody::CreateBranch {
                branch_id: branch.clone(),
                name: name("Thái Bình"),
                time_zone: TIME_ZONE_DEFAULT.into(),
                currency: Currency::Vnd,
                compulsory_savings_percent: Decimal::from(10),
                opened_on: Some(opened_on()),
            },
            CommandBody::CreateCenter {
                center_id: center.clone(),
                branch_id: branch,
                name: name("Center 1"),
                opened_on: Some(opened_on()),
            },
            CommandBody::CreateGroup {
                group_id: GroupId::parse("group_id", "TB-G1").unwrap(),
                center_id: center,
                name: name("Group 1"),
                opened_on: Some(opened_on()),
            },
        ];
        submit_all(&ledger, 1_000_000, bodies).await;
        ledger
    }

    /// When the branch, its center and group, its members and their
    /// accounts opened: before the entries, which are dated.
    fn opened_on() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
    }

    fn name(text: &str) -> Name {
        Name::parse("name", text).unwrap()
    }

    /// `member` registered in group TB-G1, with her compulsory savings
    /// account.
    fn member_with_savings(member: &MemberId) -> [CommandBody; 2] {
        [
            CommandBody::RegisterMember {
                member_id: member.clone(),
                full_name: name("Hoa"),
                group_id: GroupId::parse("group_id", "TB-G1").unwrap(),
                joined_on: Some(opened_on()),
            },
            CommandBody::OpenSavingsAccount {
                member_id: member.clone(),
                kind: SavingsKind::Compulsory,
                opened_on: Some(opened_on()),
            },
        ]
    }

    fn vnd(amount: Decimal) -> Money {
        Money {
            amount,
            currency: None,
        }
    }

    fn deposit(member: &MemberId, amount: i64, on: Option<NaiveDate>) -> CommandBody {
        CommandBody::DepositSavings {
            account_id: SavingsAccountId::new(member, 'C', 1),
            amount: vnd(Decimal::from(amount)),
            effective_date: on,
        }
    }

    /// Submits `bodies` as `manager.tb`, one after the other, their
    /// request ids numbered from `first`; each must be accepted.
    async fn submit_all(ledger: &Ledger, first: usize, bodies: Vec<CommandBody>) {
        for (n, body) in bodies.into_iter().enumerate() {
            let command = Command {
                request_id: RequestId::parse("request_id", &format!("r{}", first + n)).unwrap(),
                actor: Actor::parse("actor", "clerk").unwrap(),
                principal: Some(PrincipalId::parse("principal", "manager.tb").unwrap()),
                approval: None,
                body,
            };
            if let Err(refused) = ledger.submit(command).await {
                panic!("command {} refused: {refused}", first + n);
            }
        }
    }

    /// Every record of the store's state cache: those startup reads, and
    /// those read when asked (under `cold/`, which startup does not read)
    /// listed and read back.
    fn cached(store: &DiskStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut records = BTreeMap::new();
        store
            .load_state(&mut |key, value| {
                if let Some(value) = value {
                    records.insert(key.to_vec(), value.to_vec());
                }
                Ok(())
            })
            .unwrap();
        let stored = store.stored_records().expect("a store that reads back");
        let cold = stored
            .records_after(
                crate::domain::stored::STORED_PREFIX,
                None,
                usize::MAX,
                &|_| false,
            )
            .unwrap();
        records.extend(cold);
        records
    }

    /// A cache rebuilt from the journal in steps, or a lost one (empty)
    /// replayed past, saving what changed every few entries as a server's
    /// checkpoints do, holds the records of a rebuild that writes the whole
    /// state at once, whatever the step; and what was saved left memory as
    /// the rebuild went: a loan paid off early is let go of (its summary read
    /// when asked), a
    /// member's account's records of steps are read back when asked.
    #[tokio::test]
    async fn a_cache_rebuilt_in_steps_holds_the_records_of_one_rebuilt_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = branch_ledger(dir.path()).await;
        let members =
            ["TB-0001", "TB-0002", "TB-0003"].map(|id| MemberId::parse("member_id", id).unwrap());
        let loan = LoanId::parse("loan_id", "TB-0001/L1").unwrap();
        let first_day = NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
        let mut bodies: Vec<CommandBody> = members.iter().flat_map(member_with_savings).collect();
        bodies.push(CommandBody::DisburseLoan {
            member_id: members[0].clone(),
            loan: LoanSpec::Terms(LoanTermsInput {
                principal: vnd(Decimal::from(1_000_000)),
                annual_interest_rate_percent: Decimal::from(20),
                interest_method: InterestMethod::Flat,
                installment_count: 4,
                frequency: RepaymentFrequency::Weekly,
                first_repayment_date: first_day + Days::new(7),
                rounding_multiple: Some(Decimal::from(100)),
            }),
            disbursed_on: Some(first_day),
        });
        submit_all(&ledger, 0, bodies).await;
        let paid_off_on = first_day + Days::new(7);
        let owed = ledger.read(|state| {
            let loan = state.held_loan(&loan).cloned();
            loan.expect("the loan, whole")
                .payoff_quote(paid_off_on)
                .unwrap()
                .total()
        });
        let mut bodies = vec![CommandBody::RecordRepayment {
            loan_id: loan.clone(),
            amount: vnd(owed),
            effective_date: Some(paid_off_on),
        }];
        // Weekly deposits, enough that the members' accounts' records of
        // steps fill and close.
        for week in 0..60u64 {
            for member in &members {
                bodies.push(deposit(
                    member,
                    10_000,
                    Some(first_day + Days::new(7 * week)),
                ));
            }
        }
        submit_all(&ledger, 100, bodies).await;
        ledger.shutdown();
        drop(ledger);

        let store = DiskStore::open(dir.path()).unwrap();
        let last = store.last_sequence();
        let mut whole = LedgerState::new();
        super::replay(&store, &mut whole, last).unwrap();
        store.clear_state().unwrap();
        let records: Vec<_> = whole
            .export()
            .unwrap()
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        store.save_state(&records).unwrap();
        let at_once = cached(&store);
        assert!(
            at_once.keys().any(|key| key.starts_with(b"cold/loan/")),
            "the paid-off loan's record, read when asked"
        );
        let account = AccountId::Savings(SavingsAccountId::new(&members[1], 'C', 1));
        for every in [1, 7, 40, last] {
            // A lost cache: an empty one, replayed past.
            store.clear_state().unwrap();
            let mut state = LedgerState::new();
            state.keep_stored_in(store.stored_records().unwrap());
            let Ok(saves) = super::replay_saving(&store, &mut state, last, every) else {
                panic!("replaying past an empty cache, saving every {every} entries, failed");
            };
            // Every step changes the head, so each saves.
            assert_eq!(
                saves as u64,
                last.div_ceil(every),
                "saves, every {every} entries"
            );
            assert!(
                cached(&store) == at_once,
                "the cache replayed past saving every {every} entries differs from the one rebuilt at once"
            );
            let state = super::rebuild_saving_every(&store, last, every).unwrap();
            assert_eq!(state.last_sequence(), last);
            assert!(
                cached(&store) == at_once,
                "the cache rebuilt saving every {every} entries differs from the one rebuilt at once"
            );
            assert!(
                state.held_loan(&loan).is_none()
                    && state
                        .loan(&loan)
                        .unwrap()
                        .is_some_and(|slot| slot.is_summary()),
                "saving every {every} entries, the paid-off loan is held whole"
            );
            assert!(
                state.books().is_let_go(&account, 0),
                "saving every {every} entries, her account's first record of steps is held"
            );
        }
    }
}
