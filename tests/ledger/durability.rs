//! Acknowledged means durable: no reply before its batch's barrier, and
//! concurrent commands share barriers (group commit); a large batch made
//! durable in chunks while the rest is decided.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use mfi_ledger::domain::command::{Command, CommandBody, Money, SavingsKind};
use mfi_ledger::domain::entry::Entry;
use mfi_ledger::domain::ids::{
    Actor, BranchId, CenterId, GroupId, MemberId, Name, RequestId, SavingsAccountId,
};
use mfi_ledger::domain::money::Currency;
use mfi_ledger::domain::request_index::RequestIndex;
use mfi_ledger::domain::state::StateRecord;
use mfi_ledger::ledger::{Ledger, LedgerConfig, SubmitError};
use mfi_ledger::store::{DiskStore, StateVisitor, Store, StoreError};
use rust_decimal::Decimal;

use crate::support::TestClock;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    /// The store's barrier covering entries up to this one returned.
    Durable(u64),
    /// A client received the reply for this entry.
    Replied(u64),
}

/// The real store, slowed down and watched: every barrier is logged when it
/// completes, after a pause that would let a premature reply show first.
struct WatchedStore {
    inner: DiskStore,
    events: Arc<Mutex<Vec<Event>>>,
    /// Pause before each barrier.
    delay: Duration,
    /// Fail every append once the journal holds this many entries
    /// (`u64::MAX`: never); a test may move it while the store serves.
    fail_after: Arc<std::sync::atomic::AtomicU64>,
    /// Fail this many checkpoints of the state cache.
    failing_saves: std::sync::atomic::AtomicU32,
    /// When closed, appends wait here until it opens.
    gate: Arc<Gate>,
    /// Give a request index under which every id hashes alike.
    index_all_alike: bool,
    /// How many times the state cache was cleared (to be rebuilt).
    clears: Arc<std::sync::atomic::AtomicU32>,
    /// Every append past the gate: its first and last sequence numbers.
    appends: Arc<Mutex<Vec<(u64, u64)>>>,
}

/// A gate appends wait at while it is closed: lets a test hold commands in
/// flight for as long as it needs, whatever the machine's speed.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: std::sync::Condvar,
    /// Appends that have reached the gate.
    arrived: std::sync::atomic::AtomicU64,
    /// While closed, only appends from this sequence number on wait.
    from: std::sync::atomic::AtomicU64,
}

impl Gate {
    /// Lets an append whose first entry is `first` through, once the gate
    /// is open unless it holds only earlier entries.
    fn pass(&self, first: u64) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut closed = self.closed.lock().unwrap();
        while *closed && first >= self.from.load(Ordering::SeqCst) {
            closed = self.opened.wait(closed).unwrap();
        }
    }

    fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }

    /// Keeps the gate closed from sequence number `from` on only, letting
    /// the appends waiting with earlier entries through.
    fn close_from(&self, from: u64) {
        let _closed = self.closed.lock().unwrap();
        self.from.store(from, Ordering::SeqCst);
        self.opened.notify_all();
    }
}

impl WatchedStore {
    fn new(dir: &std::path::Path, events: Arc<Mutex<Vec<Event>>>) -> WatchedStore {
        WatchedStore {
            inner: crate::support::open_disk_store(dir),
            events,
            delay: Duration::from_millis(3),
            fail_after: Arc::new(u64::MAX.into()),
            failing_saves: std::sync::atomic::AtomicU32::new(0),
            gate: Arc::default(),
            index_all_alike: false,
            clears: Arc::default(),
            appends: Arc::default(),
        }
    }
}

impl Store for WatchedStore {
    fn append(&self, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        let first = entries.first().map_or(0, |e| e.body.sequence);
        self.gate.pass(first);
        let last = entries.last().map_or(0, |e| e.body.sequence);
        self.appends.lock().unwrap().push((first, last));
        std::thread::sleep(self.delay);
        if self.inner.last_sequence() >= self.fail_after.load(Ordering::SeqCst) {
            let source = std::io::Error::other("disk on fire");
            return Err(StoreError::Io {
                context: "fdatasync of the journal".into(),
                source,
            });
        }
        self.inner.append(entries)?;
        self.events.lock().unwrap().push(Event::Durable(last));
        Ok(())
    }
    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.read_entries(from, limit)
    }
    fn take_request_index(&self) -> RequestIndex {
        let index = self.inner.take_request_index();
        if !self.index_all_alike {
            return index;
        }
        let mut alike = RequestIndex::all_alike();
        for entry in self.inner.read_entries(1, usize::MAX).unwrap() {
            alike.note_found(entry.body.request_id.as_str(), entry.body.sequence);
        }
        alike.seal();
        alike
    }
    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }
    fn barrier_count(&self) -> u64 {
        self.inner.barrier_count()
    }
    fn save_state(&self, records: &[StateRecord]) -> Result<(), StoreError> {
        let failing = &self.failing_saves;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::State("sled: no space left on device".into()));
        }
        self.inner.save_state(records)
    }
    fn load_state(&self, visit: &mut StateVisitor<'_>) -> Result<(), StoreError> {
        self.inner.load_state(visit)
    }
    fn stored_records(&self) -> Option<Arc<dyn mfi_ledger::domain::stored::StoredRecords>> {
        self.inner.stored_records()
    }
    fn clear_state(&self) -> Result<(), StoreError> {
        self.clears.fetch_add(1, Ordering::SeqCst);
        self.inner.clear_state()
    }
    fn flush_state(&self) -> Result<(), StoreError> {
        self.inner.flush_state()
    }
}

fn command(request_id: &str, body: CommandBody) -> Command {
    Command {
        request_id: RequestId::parse("request_id", request_id).unwrap(),
        actor: Actor::parse("actor", "clerk").unwrap(),
        principal: Some(
            mfi_ledger::domain::ids::PrincipalId::parse("p", crate::support::TESTER).unwrap(),
        ),
        approval: None,
        body,
    }
}

fn date(text: &str) -> Option<NaiveDate> {
    Some(text.parse().unwrap())
}

fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}

async fn set_up(ledger: &Ledger) {
    let principals = tempfile::tempdir().unwrap();
    crate::support::tester_token(ledger, principals.path()).await;
    let bodies = [
        CommandBody::CreateBranch {
            branch_id: BranchId::parse("b", "TB").unwrap(),
            name: name("Thái Bình"),
            time_zone: "Asia/Ho_Chi_Minh".into(),
            currency: Currency::Vnd,
            compulsory_savings_percent: Decimal::from(5),
            opened_on: date("2024-01-01"),
        },
        CommandBody::CreateCenter {
            center_id: CenterId::parse("c", "C1").unwrap(),
            branch_id: BranchId::parse("b", "TB").unwrap(),
            name: name("Cụm 1"),
            opened_on: date("2024-01-01"),
        },
        CommandBody::CreateGroup {
            group_id: GroupId::parse("g", "G1").unwrap(),
            center_id: CenterId::parse("c", "C1").unwrap(),
            name: name("Nhóm 1"),
            opened_on: date("2024-01-01"),
        },
        CommandBody::RegisterMember {
            member_id: MemberId::parse("m", "M1").unwrap(),
            full_name: name("Lê Thị Mai"),
            group_id: GroupId::parse("g", "G1").unwrap(),
            joined_on: date("2024-01-01"),
        },
        CommandBody::OpenSavingsAccount {
            member_id: MemberId::parse("m", "M1").unwrap(),
            kind: SavingsKind::Voluntary,
            opened_on: date("2024-01-01"),
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        ledger
            .submit(command(&format!("setup-{i}"), body))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_precedes_its_barrier_and_concurrent_commands_share_barriers() {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let store = WatchedStore::new(dir.path(), events.clone());
    let ledger = Arc::new(
        Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default()).unwrap(),
    );
    set_up(&ledger).await;
    let barriers_before = ledger.store().barrier_count();
    const COMMANDS: usize = 400;
    let mut tasks = Vec::new();
    for i in 0..COMMANDS {
        let ledger = ledger.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let body = CommandBody::DepositSavings {
                account_id: SavingsAccountId::parse("a", "M1/V1").unwrap(),
                amount: Money {
                    amount: Decimal::from(1000 + i as i64),
                    currency: Some(Currency::Vnd),
                },
                effective_date: date("2024-02-01"),
            };
            let entry = ledger
                .submit(command(&format!("dep-{i}"), body))
                .await
                .unwrap();
            events
                .lock()
                .unwrap()
                .push(Event::Replied(entry.body.sequence));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = events.lock().unwrap().clone();
    let mut durable_up_to = 0;
    let mut replies = 0;
    for event in &events {
        match *event {
            Event::Durable(last) => durable_up_to = durable_up_to.max(last),
            Event::Replied(sequence) => {
                assert!(
                    sequence <= durable_up_to,
                    "entry {sequence} was acknowledged before its barrier"
                );
                replies += 1;
            }
        }
    }
    assert_eq!(replies, COMMANDS);
    let barriers = ledger.store().barrier_count() - barriers_before;
    assert!(
        (barriers as usize) < COMMANDS / 4,
        "{COMMANDS} concurrent commands took {barriers} barriers; group commit should share them"
    );
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

fn deposit(i: usize) -> Command {
    deposit_on(&format!("dep-{i}"), i, "2024-02-01")
}

/// A deposit of 1,000 + `i` VND into M1/V1 on `day`.
fn deposit_on(request_id: &str, i: usize, day: &str) -> Command {
    command(
        request_id,
        CommandBody::DepositSavings {
            account_id: SavingsAccountId::parse("a", "M1/V1").unwrap(),
            amount: Money {
                amount: Decimal::from(1000 + i as i64),
                currency: Some(Currency::Vnd),
            },
            effective_date: date(day),
        },
    )
}

/// Past the in-flight bound, commands are refused as overloaded and nothing
/// is lost. The bound is filled deterministically (a submission of
/// `queue_depth_max` commands held at the disk), not by racing 40 tasks
/// against a slow disk, which on a loaded machine could finish each one
/// before the next arrived and see no overload at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_commands_are_refused_as_overloaded_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    let gate = store.gate.clone();
    let config = LedgerConfig {
        queue_depth_max: 4,
        ..LedgerConfig::default()
    };
    let ledger = Arc::new(Ledger::start(Arc::new(store), TestClock::new(), config).unwrap());
    set_up(&ledger).await;
    let before = ledger.read(|s| s.last_sequence());

    // Four commands in flight, held at the disk: the bound is full. (The
    // set-up's permits go a moment after its replies: until then the four
    // are refused whole, and are sent again, within a bound.)
    gate.set_closed(true);
    let arrived = gate.arrived.load(Ordering::SeqCst);
    // The block hands back the task that holds the bound (awaited below).
    #[allow(clippy::async_yields_async)]
    let held = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let held = tokio::spawn({
                let ledger = ledger.clone();
                async move { ledger.submit_many((0..4).map(deposit).collect()).await }
            });
            while gate.arrived.load(Ordering::SeqCst) == arrived && !held.is_finished() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if gate.arrived.load(Ordering::SeqCst) > arrived {
                return held;
            }
            let refused = held.await.unwrap();
            assert!(
                refused
                    .iter()
                    .all(|r| matches!(r, Err(SubmitError::Overloaded(_)))),
                "{refused:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the held commands reach the disk");
    for i in 4..40 {
        let refused = ledger.submit(deposit(i)).await;
        assert!(
            matches!(refused, Err(SubmitError::Overloaded(_))),
            "command {i} past a full in-flight bound: {refused:?}"
        );
    }

    // Once the disk answers, the held commands are durable and the bound frees.
    gate.set_closed(false);
    let results = held.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(ledger.read(|s| s.last_sequence()), before + 4);
    // (The permits go when the writer drops the answered submission, a
    // moment after the reply: wait for that, within a bound.)
    let freed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ledger.submit(deposit(40)).await {
                Err(SubmitError::Overloaded(_)) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                other => return other,
            }
        }
    })
    .await
    .expect("the in-flight bound frees once the held commands are answered");
    freed.unwrap();
    assert_eq!(ledger.read(|s| s.last_sequence()), before + 5);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_storage_fault_writes_stop_reads_go_on_and_a_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    // The access entries and the five of set-up, then the fault.
    let set_up_entries = crate::support::ACCESS_ENTRIES + 5;
    store.fail_after.store(set_up_entries, Ordering::SeqCst);
    let ledger = Arc::new(
        Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default()).unwrap(),
    );
    set_up(&ledger).await;
    let failed = ledger.submit(deposit(0)).await.unwrap_err();
    assert!(
        matches!(failed, SubmitError::Internal(ref why) if why.contains("disk on fire")),
        "{failed}"
    );
    assert!(ledger.has_failed());
    let later = ledger.submit(deposit(1)).await.unwrap_err();
    assert!(matches!(later, SubmitError::Unavailable(_)), "{later}");
    // Reads still answer from what was durable.
    assert_eq!(ledger.read(|s| s.last_sequence()), set_up_entries);
    shut_down(ledger).await;
    // A restart on a healthy disk has every acknowledged entry and writes again.
    let ledger = restarted(dir.path());
    assert_eq!(ledger.read(|s| s.last_sequence()), set_up_entries);
    let entry = ledger.submit(deposit(2)).await.unwrap();
    assert_eq!(entry.body.sequence, set_up_entries + 1);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_is_written_again_and_the_cache_still_matches_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    store.failing_saves.store(1, Ordering::SeqCst);
    let config = LedgerConfig {
        checkpoint_entries: 1,
        ..LedgerConfig::default()
    };
    let ledger = Arc::new(Ledger::start(Arc::new(store), TestClock::new(), config).unwrap());
    // The first checkpoint fails; later ones must still write its records.
    set_up(&ledger).await;
    for i in 0..20 {
        ledger.submit(deposit(i)).await.unwrap();
    }
    shut_down(ledger).await;
    let report = mfi_ledger::verify::verify(dir.path()).unwrap();
    let entries = crate::support::ACCESS_ENTRIES + 25;
    assert_eq!(report.entries, entries);
    assert_eq!(report.state_compared_at, entries);
}

/// A lost state cache is replayed past at startup, saving as it goes: a
/// save that fails stops the start with the store's error (the server does
/// not serve a state its cache does not hold), and the next start, on a
/// healthy disk, replays and saves it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cache_whose_save_fails_at_startup_stops_the_start_and_the_next_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(restarted(dir.path()));
    set_up(&ledger).await;
    for i in 0..20 {
        ledger.submit(deposit(i)).await.unwrap();
    }
    shut_down(ledger).await;
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();

    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    store.failing_saves.store(1, Ordering::SeqCst);
    let refused = Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default());
    let Err(error) = refused else {
        panic!("a start whose replay could not save its state started");
    };
    assert!(
        error.to_string().contains("no space left on device"),
        "{error}"
    );

    let ledger = Arc::new(restarted(dir.path()));
    shut_down(ledger).await;
    let report = mfi_ledger::verify::verify(dir.path()).unwrap();
    let entries = crate::support::ACCESS_ENTRIES + 25;
    assert_eq!(report.entries, entries);
    assert_eq!(report.state_compared_at, entries);
}

/// An operator follows a request from its log line to the store: the
/// writer's span of the batch that held it follows from the call's span,
/// names the last entry the batch made durable, and holds the storage fault
/// when the journal's barrier fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_span_follows_from_its_call_and_holds_the_storage_fault() {
    let seen = crate::span_capture::seen();
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    let fail_after = store.fail_after.clone();
    let ledger = Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default()).unwrap();
    let mut app = crate::support::serve_ledger(
        Arc::new(ledger),
        dir,
        mfi_ledger::api::ServerLimits::default(),
    )
    .await;
    app.branch_tb().await;
    let account = app.member("TB-0001").await;
    // Request ids no other test uses: the capture sees the whole binary.
    let ok = format!("span-ok-{}", uuid::Uuid::new_v4());
    let failing = format!("span-fault-{}", uuid::Uuid::new_v4());
    let receipt = app
        .deposit(&ok, &account, "50000", "2024-01-08")
        .await
        .unwrap()
        .receipt
        .unwrap();
    fail_after.store(app.last_sequence().await, Ordering::SeqCst);
    let refused = app
        .deposit(&failing, &account, "50000", "2024-01-08")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    app.stop().await;

    // The call's log line is in the call's span; find that span.
    let seen = seen.lock().unwrap();
    let call_of = |request_id: &str| -> u64 {
        let lines: Vec<_> = seen.events_with("request_id", request_id).collect();
        assert_eq!(lines.len(), 1, "one log line for {request_id}: {lines:?}");
        let call = lines[0].scope[0];
        assert_eq!(seen.span(call).name, "call");
        assert_eq!(
            seen.span(call).fields["rpc"],
            "BranchService/DepositSavings"
        );
        call
    };

    // A durable write: its batch follows from its call and names its entry,
    // the sequence its log line gives.
    let call = call_of(&ok);
    let line = seen.events_with("request_id", &ok).next().unwrap();
    assert_eq!(line.fields["sequence"], receipt.sequence.to_string());
    let batches = seen.following(call, "batch");
    assert_eq!(batches.len(), 1, "one batch follows from the call");
    assert_eq!(
        seen.span(batches[0]).fields["last_sequence"],
        receipt.sequence.to_string()
    );

    // A write the store failed: the writer's report of the fault is in the
    // batch span that follows from the call.
    let call = call_of(&failing);
    let batches = seen.following(call, "batch");
    assert_eq!(batches.len(), 1, "one batch follows from the call");
    let faults: Vec<_> = seen
        .events
        .iter()
        .filter(|event| event.scope.first() == Some(&batches[0]))
        .collect();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(
        faults[0].fields["message"].contains("batch not durable")
            && faults[0].fields["why"].contains("disk on fire"),
        "{faults:?}"
    );
}

/// The request index names entries by a hash of their request ids, and two
/// ids can hash alike: a retry must get the entry recording its very id,
/// whatever other entries the index names. Under an index where every id
/// hashes alike, each retry still gets its own entry, a reused id with
/// another command is still refused, and a new id still writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_get_their_own_entry_when_request_ids_hash_alike() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(
        Arc::new(DiskStore::open(dir.path()).unwrap()),
        TestClock::new(),
        LedgerConfig::default(),
    )
    .unwrap();
    set_up(&ledger).await;
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(ledger.submit(deposit(i)).await.unwrap());
    }
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
    let mut store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    store.delay = Duration::ZERO;
    store.index_all_alike = true;
    let ledger = Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default()).unwrap();
    let head = ledger.read(|s| s.last_sequence());
    for (i, first) in written.iter().enumerate().rev() {
        let again = ledger.submit(deposit(i)).await.unwrap();
        assert_eq!(again.hash, first.hash, "retry of dep-{i}");
    }
    let mut reused = deposit(1);
    reused.body = deposit(2).body;
    let refused = ledger.submit(reused).await.unwrap_err();
    assert!(
        matches!(
            refused,
            SubmitError::Refused(mfi_ledger::domain::DomainError::RequestIdReused { sequence, .. })
                if sequence == written[1].body.sequence
        ),
        "{refused}"
    );
    assert_eq!(
        ledger.read(|s| s.last_sequence()),
        head,
        "nothing new written"
    );
    // A new id writes, and its own retry (indexed since the restart) finds it.
    let new = ledger.submit(deposit(7)).await.unwrap();
    assert_eq!(new.body.sequence, head + 1);
    assert_eq!(ledger.submit(deposit(7)).await.unwrap().hash, new.hash);
    assert_eq!(
        ledger.submit(deposit(0)).await.unwrap().hash,
        written[0].hash
    );
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 1);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

/// A retry of an entry `journal.idx` covers is found by reading that file.
/// While it cannot be read, the writer cannot tell a retry from a new
/// request: it refuses the request (UNAVAILABLE, naming the index) and
/// writes nothing, rather than write a retry twice; once the file reads
/// again, the same retry gets its first reply.
#[tokio::test]
async fn a_retry_is_refused_unwritten_while_the_journals_index_cannot_be_read() {
    use crate::exactly_once::{deposit, with_account};
    let mut app = with_account().await;
    let first = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    // The clean stop writes the index; the restart looks ids up in it.
    let mut app = app.restart().await;
    let index = app
        .dir
        .path()
        .join(mfi_ledger::store::JOURNAL_INDEX_FILE_NAME);
    let whole = std::fs::read(&index).unwrap();
    let head = app.last_sequence().await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(24)
        .unwrap();
    let refused = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("request id") && refused.message().contains("journal.idx"),
        "{}",
        refused.message()
    );
    assert_eq!(app.last_sequence().await, head, "nothing written");
    assert_eq!(app.balance("savings:TB-0001/C1").await, "50000");
    // The same file, whole again: the retry is recognised, still once.
    std::fs::write(&index, &whole).unwrap();
    let retry = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first);
    assert_eq!(app.last_sequence().await, head);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "50000");
}

/// Stops `ledger` cleanly (its last checkpoint, when one can be saved) and
/// lets its store go.
async fn shut_down(ledger: Arc<Ledger>) {
    tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        move || ledger.shutdown()
    })
    .await
    .unwrap();
    drop(ledger);
}

/// The ledger of `dir` started again on the plain store, as after a
/// restart on a healthy disk.
fn restarted(dir: &std::path::Path) -> Ledger {
    let store = crate::support::open_disk_store(dir);
    Ledger::start(Arc::new(store), TestClock::new(), LedgerConfig::default()).unwrap()
}

/// Deposits into M1/V1 on dates over February, numbered from `from`.
fn february_deposits(from: usize, count: usize) -> Vec<Command> {
    (from..from + count)
        .map(|i| {
            deposit_on(
                &format!("feb-{i}"),
                i,
                &format!("2024-02-{:02}", 1 + i % 28),
            )
        })
        .collect()
}

/// After a crash the cache is behind the journal and startup replays the
/// rest: day-log chunks that close during the replay are saved with it,
/// leave memory, and answer as they did before (the checkpoints of the
/// run before failed, so the cache stayed where the setup left it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_log_chunks_closed_while_replaying_are_saved_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let start = |store: Arc<dyn Store>| {
        Arc::new(Ledger::start(store, TestClock::new(), LedgerConfig::default()).unwrap())
    };
    let ledger = start(Arc::new(DiskStore::open(dir.path()).unwrap()));
    set_up(&ledger).await;
    let set_up_head = ledger.read(|s| s.last_sequence());
    shut_down(ledger).await;

    let mut store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    store.delay = Duration::ZERO;
    store.failing_saves.store(u32::MAX, Ordering::SeqCst);
    let ledger = start(Arc::new(store));
    for batch in 0..6 {
        for result in ledger
            .submit_many(february_deposits(batch * 600, 600))
            .await
        {
            result.unwrap();
        }
    }
    let branch = BranchId::parse("b", "TB").unwrap();
    let (from, to) = (date("2024-02-01").unwrap(), date("2024-02-29").unwrap());
    let head = ledger.read(|s| s.last_sequence());
    let sequences: Vec<u64> = (set_up_head..=head).step_by(97).chain([head]).collect();
    let figures = |ledger: &Ledger| -> Vec<_> {
        ledger.read(|s| {
            sequences
                .iter()
                .map(|&at| s.period_figures_at(&branch, from, to, Some(at)).unwrap())
                .collect()
        })
    };
    let before = figures(&ledger);
    let (closed, let_go) = ledger.read(|s| {
        let log = s.day_log();
        let closed = log.closed_keys().count();
        let let_go = log
            .closed_keys()
            .filter(|(b, first)| log.is_let_go(b, *first))
            .count();
        (closed, let_go)
    });
    assert!(closed >= 2, "{closed} closed chunks");
    assert_eq!(let_go, 0, "no checkpoint saved them");
    shut_down(ledger).await;

    let ledger = start(Arc::new(crate::support::open_disk_store(dir.path())));
    assert_eq!(ledger.read(|s| s.last_sequence()), head);
    let let_go = ledger.read(|s| {
        let log = s.day_log();
        log.closed_keys()
            .filter(|(b, first)| log.is_let_go(b, *first))
            .count()
    });
    assert_eq!(
        let_go, closed,
        "saved by the replay's checkpoint, then let go"
    );
    assert_eq!(figures(&ledger), before);
    shut_down(ledger).await;
    let report = mfi_ledger::verify::verify(dir.path()).unwrap();
    assert_eq!(report.state_compared_at, head);
}

/// The entries the journal's index on disk covers: its header's count
/// (`MFIJIDX1`, the key, then that count), 0 without one.
fn indexed_on_disk(dir: &std::path::Path) -> u64 {
    match std::fs::read(dir.join(mfi_ledger::store::JOURNAL_INDEX_FILE_NAME)) {
        Ok(bytes) => u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        Err(_) => 0,
    }
}

/// The test's first deposit, sent again under its request id.
async fn first_again(app: &mut crate::support::App) -> mfi_ledger::pb::DepositSavingsResponse {
    app.branch
        .deposit_savings(crate::exactly_once::deposit("50000"))
        .await
        .unwrap()
        .into_inner()
}

/// A server that runs long writes its journal's index again as entries
/// pass it, so that the request ids it holds in memory do not grow with
/// every entry written since it started; a retry of a request the index
/// now covers still gets its entry, and a different command under that
/// request id is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_writes_its_journal_index_again_and_retries_still_find_their_entries() {
    let config = LedgerConfig {
        checkpoint_entries: 50,
        journal_index_entries: 100,
        ..LedgerConfig::default()
    };
    let mut app =
        crate::support::spawn_app_with(config, mfi_ledger::api::ServerLimits::default()).await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let first = app
        .branch
        .deposit_savings(crate::exactly_once::deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    let first_sequence = first.receipt.as_ref().unwrap().sequence;
    assert_eq!(
        indexed_on_disk(app.dir.path()),
        0,
        "a new journal has no index yet"
    );
    app.deposits(400, "2024-02-01").await;
    let last = app.last_sequence().await;
    // The persister looks after each checkpoint; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while indexed_on_disk(app.dir.path()) < last - 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the index covers {} of {last} entries while the server runs",
            indexed_on_disk(app.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(indexed_on_disk(app.dir.path()) > first_sequence);
    // The writer lets go of the ids the index covers before a batch that
    // follows the persister's hand-over (which comes just after the file).
    let mut written = last;
    loop {
        app.deposits_as(&format!("nudge-{written}"), 1, "2024-02-02")
            .await;
        written += 1;
        let in_memory = app.ledger.request_ids_in_memory();
        let indexed = indexed_on_disk(app.dir.path());
        if in_memory <= written - indexed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{in_memory} request ids in memory, with {indexed} of {written} entries indexed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the index's last entry, writes go on; the first request, now
    // found through the index on disk, gets its entry again ...
    app.deposits_as("after", 29, "2024-02-02").await;
    let written = written + 29;
    assert_eq!(first_again(&mut app).await, first);
    // ... and another command under its id is refused.
    let status = app
        .branch
        .deposit_savings(crate::exactly_once::deposit("70000"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    assert_eq!(app.last_sequence().await, written);
    // So does a deposit of the first batch, by its own id.
    app.deposits(1, "2024-02-01").await;
    assert_eq!(app.last_sequence().await, written);
    let mut app = app.restart().await;
    assert_eq!(indexed_on_disk(app.dir.path()), written);
    assert_eq!(first_again(&mut app).await, first);
    assert_eq!(app.last_sequence().await, written);
    let dir = app.stop().await;
    let report = mfi_ledger::verify::verify(dir.path()).unwrap();
    assert_eq!(report.entries, written);
}

/// After a crash, an entry replayed past the cache may reopen a loan the
/// cache keeps whole apart, its summary in memory (the reversal of its
/// payoff, the cache left at the payoff): startup reads it back from the store and
/// replays on, rather than taking the journal for one that does not
/// continue the cache and rebuilding it. The loan then reads as it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_reopened_by_an_entry_replayed_past_the_cache_is_read_back_whole() {
    use crate::support::{borrower, start_on};
    use mfi_ledger::api::ServerLimits;
    let start = |store: WatchedStore, dir| {
        start_on(
            Arc::new(store),
            dir,
            LedgerConfig::default(),
            ServerLimits::default(),
        )
    };
    let (mut app, loan) = borrower().await;
    let closing = app.pay_off(&loan, "2024-02-20").await;
    let dir = app.stop().await;

    // Every checkpoint fails: the reversal reaches the journal alone.
    let mut store = WatchedStore::new(dir.path(), Arc::default());
    store.delay = Duration::ZERO;
    store.failing_saves.store(u32::MAX, Ordering::SeqCst);
    let mut app = start(store, dir).await;
    app.reverse("reverse-payoff", closing).await.unwrap();
    let reopened = app.loan(&loan, "2024-03-01").await;
    assert_eq!(reopened.status, mfi_ledger::pb::LoanStatus::Active as i32);
    assert_eq!(reopened.schedule.len(), 4);
    let dir = app.stop().await;

    let store = WatchedStore::new(dir.path(), Arc::default());
    let clears = store.clears.clone();
    let mut app = start(store, dir).await;
    assert_eq!(
        clears.load(Ordering::SeqCst),
        0,
        "the cache was rebuilt, not replayed past"
    );
    assert_eq!(app.loan(&loan, "2024-03-01").await, reopened);
    app.stop().await;
}

/// Decides by the ledger's rules, holding each command named in `holds`
/// until the test lets it go (at most 30 s): the commands of a submission
/// after it wait while the test looks at what came before.
struct HoldAt {
    holds: Vec<(&'static str, Arc<Hold>)>,
}

/// Where [`HoldAt`] holds its command.
#[derive(Default)]
struct Hold {
    released: Mutex<bool>,
    changed: std::sync::Condvar,
    /// Set once the writer has reached the command (and holds it).
    reached: std::sync::atomic::AtomicBool,
}

impl Hold {
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// Waits until the writer holds the command, for at most 20 s.
    async fn reached(&self) -> bool {
        for _ in 0..2_000 {
            if self.reached.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl mfi_ledger::ledger::Decide for HoldAt {
    fn decide(
        &self,
        state: &mfi_ledger::domain::state::LedgerState,
        command: &Command,
        context: mfi_ledger::domain::state::ExecContext,
        lookup: &mfi_ledger::ledger::Lookup<'_>,
    ) -> Result<mfi_ledger::domain::entry::EntryBody, mfi_ledger::domain::state::ExecuteError> {
        if let Some((_, hold)) = self
            .holds
            .iter()
            .find(|(id, _)| command.request_id.as_str() == *id)
        {
            hold.reached.store(true, Ordering::SeqCst);
            let released = hold.released.lock().unwrap();
            let _ = hold
                .changed
                .wait_timeout_while(released, Duration::from_secs(30), |r| !*r)
                .unwrap();
        }
        mfi_ledger::ledger::LedgerRules.decide(state, command, context, lookup)
    }
}

/// A ledger on `store` whose batches go on in chunks of 4 new entries,
/// its writer holding the command `hold_at` until the test releases it.
fn chunked_ledger(store: WatchedStore, hold_at: &'static str) -> (Arc<Ledger>, Arc<Hold>) {
    let (ledger, mut holds) = chunked_ledger_holding(store, &[hold_at]);
    (ledger, holds.remove(0))
}

/// A ledger as [`chunked_ledger`]'s, its writer holding each command of
/// `hold_at` in turn: one hold each, in that order.
fn chunked_ledger_holding(
    store: WatchedStore,
    hold_at: &[&'static str],
) -> (Arc<Ledger>, Vec<Arc<Hold>>) {
    let holds: Vec<(&'static str, Arc<Hold>)> =
        hold_at.iter().map(|id| (*id, Arc::default())).collect();
    let handed = holds.iter().map(|(_, hold)| hold.clone()).collect();
    let config = LedgerConfig {
        chunk_entries: 4,
        ..LedgerConfig::default()
    };
    let rules = HoldAt { holds };
    let ledger =
        Ledger::start_with(Arc::new(store), TestClock::new(), config, Arc::new(rules)).unwrap();
    (Arc::new(ledger), handed)
}

/// Waits until the read side holds entry `sequence`, for at most 20 s.
async fn readable(ledger: &Ledger, sequence: u64) -> bool {
    for _ in 0..2_000 {
        if ledger.read(|s| s.last_sequence()) >= sequence {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Twelve deposits into M1/V1, then a retry of the second (the same
/// command again) and the third's request id with another amount.
fn twelve_deposits_and_two_retries() -> Vec<Command> {
    let mut commands: Vec<Command> = (0..12).map(deposit).collect();
    commands.push(deposit(1));
    let mut reused = deposit(2);
    if let CommandBody::DepositSavings { amount, .. } = &mut reused.body {
        amount.amount = Decimal::from(7);
    }
    commands.push(reused);
    commands
}

/// A submission larger than a chunk goes to the journal part by part: its
/// first part is durable and readable while the rest is still decided,
/// it is answered once its last part is durable, and a retry within the
/// submission finds an entry of an earlier part, however far that part
/// has got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_submission_is_made_durable_and_readable_in_parts_while_the_rest_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    let (ledger, hold) = chunked_ledger(store, "dep-6");
    set_up(&ledger).await;
    let head = ledger.read(|s| s.last_sequence());
    let barriers_before = ledger.store().barrier_count();
    let submitted = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.submit_many(twelve_deposits_and_two_retries()).await }
    });
    // The writer holds the seventh deposit until the first four are read
    // (the fifth and sixth, decided, are not a chunk yet).
    let first_part_read = readable(&ledger, head + 4).await;
    let read_while_held = ledger.read(|s| s.last_sequence());
    hold.release();
    assert!(
        first_part_read,
        "the submission's first four entries were not readable while its seventh was decided"
    );
    assert_eq!(
        read_while_held,
        head + 4,
        "the read side ran ahead of the chunks made durable"
    );
    let results = submitted.await.unwrap();
    assert!(ledger.store().last_sequence() >= head + 12);
    assert_eq!(results.len(), 14);
    for (i, result) in results[..12].iter().enumerate() {
        let entry = result.as_ref().unwrap();
        assert_eq!(entry.body.sequence, head + 1 + i as u64);
        assert_eq!(entry.body.request_id.as_str(), format!("dep-{i}"));
    }
    // The retry is answered with the second deposit's entry, written once.
    let retried = results[12].as_ref().unwrap();
    assert_eq!(retried.body.sequence, head + 2);
    assert_eq!(retried.hash, results[1].as_ref().unwrap().hash);
    match &results[13] {
        Err(SubmitError::Refused(mfi_ledger::domain::DomainError::RequestIdReused {
            sequence,
            ..
        })) => assert_eq!(*sequence, head + 3),
        other => panic!("a request id reused with another amount: {other:?}"),
    }
    let barriers = ledger.store().barrier_count() - barriers_before;
    assert!(
        barriers >= 2,
        "the submission took {barriers} barrier(s); its first part was made durable alone"
    );
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 12);
    shut_down(ledger).await;
    let ledger = restarted(dir.path());
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 12);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

/// A retry sent while its first attempt's entry is decided but still on
/// its way to the journal (its barrier held) gets that entry, once it is
/// durable, and writes nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_command_still_on_its_way_to_the_journal_gets_its_entry_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    let gate = store.gate.clone();
    let (ledger, hold) = chunked_ledger(store, "dep-30");
    set_up(&ledger).await;
    let head = ledger.read(|s| s.last_sequence());
    let arrived = gate.arrived.load(Ordering::SeqCst);
    gate.set_closed(true);
    // Eight deposits: two chunks, both with the syncer, held at the gate.
    let first = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.submit_many((20..28).map(deposit).collect()).await }
    });
    let mut at_gate = false;
    for _ in 0..2_000 {
        at_gate = gate.arrived.load(Ordering::SeqCst) > arrived;
        if at_gate {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        at_gate,
        "the first deposits did not reach the journal's barrier"
    );
    // Then the third again, and a new deposit the writer holds: once it
    // holds that one, it has decided the retry.
    let again = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.submit_many(vec![deposit(22), deposit(30)]).await }
    });
    let reached = hold.reached().await;
    let durable_while_held = ledger.store().last_sequence();
    gate.set_closed(false);
    hold.release();
    assert!(
        reached,
        "the writer did not reach the deposit after the retry"
    );
    assert_eq!(
        durable_while_held, head,
        "the first deposits were durable before the retry was decided"
    );
    let first = first.await.unwrap();
    let again = again.await.unwrap();
    let third = first[2].as_ref().unwrap();
    assert_eq!(third.body.sequence, head + 3);
    let retried = again[0].as_ref().unwrap();
    assert_eq!(retried.body.sequence, third.body.sequence);
    assert_eq!(retried.hash, third.hash);
    assert_eq!(again[1].as_ref().unwrap().body.sequence, head + 9);
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 9);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

/// When the barrier of a later part of a submission fails, its earlier
/// part stays durable, nothing decided after it is written (the part the
/// syncer holds behind it is refused, not appended), every command of the
/// submission is answered with the fault, and the same submission sent
/// again after a restart writes each command once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_a_later_parts_barrier_writes_nothing_after_it_and_a_retry_writes_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(dir.path(), Arc::new(Mutex::new(Vec::new())));
    let fail_after = store.fail_after.clone();
    let gate = store.gate.clone();
    let appends = store.appends.clone();
    let (ledger, holds) = chunked_ledger_holding(store, &["dep-4", "dep-8"]);
    set_up(&ledger).await;
    let head = ledger.read(|s| s.last_sequence());
    // The first part's barrier passes; every later one fails. The writer
    // stops after each part until the syncer has it, so that the syncer
    // takes the second alone, and the second waits at the journal's
    // barrier while the writer decides the third behind it.
    fail_after.store(head + 4, Ordering::SeqCst);
    gate.close_from(head + 5);
    gate.set_closed(true);
    let arrived = gate.arrived.load(Ordering::SeqCst);
    let appended_before = appends.lock().unwrap().len();
    let submitted = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.submit_many(twelve_deposits_and_two_retries()).await }
    });
    let first_reached = holds[0].reached().await;
    let first_part_read = readable(&ledger, head + 4).await;
    holds[0].release();
    let second_reached = holds[1].reached().await;
    let mut second_at_gate = false;
    for _ in 0..2_000 {
        second_at_gate = gate.arrived.load(Ordering::SeqCst) >= arrived + 2;
        if second_at_gate {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holds[1].release();
    // The third part decided and handed to the syncer meanwhile (four
    // deposits: well within this).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.set_closed(false);
    assert!(
        first_reached && second_reached,
        "the writer did not reach the fifth and ninth deposits"
    );
    assert!(first_part_read, "the first part was not made durable alone");
    assert!(
        second_at_gate,
        "the second part did not reach the barrier: {} arrivals, appends {:?}",
        gate.arrived.load(Ordering::SeqCst) - arrived,
        &appends.lock().unwrap()[appended_before..]
    );
    let results = submitted.await.unwrap();
    assert_eq!(results.len(), 14);
    // The fault, as the barrier's (INTERNAL) or as the writer's stop
    // (UNAVAILABLE), whichever the submission's last part met.
    for result in &results {
        assert!(
            matches!(result, Err(SubmitError::Internal(why) | SubmitError::Unavailable(why))
                if why.contains("disk on fire")),
            "{result:?}"
        );
    }
    assert!(ledger.has_failed());
    assert_eq!(ledger.store().last_sequence(), head + 4);
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 4);
    // After the failed barrier the journal was not asked to append again:
    // the third part, which may build on entries that never became
    // durable, was refused where it waited.
    assert_eq!(
        appends.lock().unwrap()[appended_before..],
        [(head + 1, head + 4), (head + 5, head + 8)],
        "the appends the submission made"
    );
    let later = ledger.submit(deposit(20)).await.unwrap_err();
    assert!(matches!(later, SubmitError::Unavailable(_)), "{later}");
    shut_down(ledger).await;

    let ledger = restarted(dir.path());
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 4);
    let results = ledger.submit_many(twelve_deposits_and_two_retries()).await;
    for (i, result) in results[..12].iter().enumerate() {
        assert_eq!(
            result.as_ref().unwrap().body.sequence,
            head + 1 + i as u64,
            "dep-{i}"
        );
    }
    assert_eq!(results[12].as_ref().unwrap().body.sequence, head + 2);
    assert!(results[13].is_err());
    assert_eq!(ledger.read(|s| s.last_sequence()), head + 12);
    tokio::task::spawn_blocking(move || ledger.shutdown())
        .await
        .unwrap();
}

/// A write is answered once durable, without waiting for the read side: a
/// long read holding it (an auditor's report) does not hold up a clerk's
/// replies. A read begun after the reply still sees the write, and a proof
/// asked for then waits for the tree to hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_for_the_journal_not_for_a_long_read_and_a_read_after_it_sees_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(restarted(dir.path()));
    set_up(&ledger).await;
    let head = ledger.read(|s| s.last_sequence());
    let (held, holding) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let ledger = ledger.clone();
        move || {
            ledger.read(|_| {
                held.send(()).unwrap();
                released.recv().unwrap();
            })
        }
    });
    holding.recv().unwrap();
    let replied = tokio::time::timeout(Duration::from_secs(20), ledger.submit(deposit(0))).await;
    // The publisher waits for the long read: the tree cannot hold the
    // deposit yet, so a proof of it asked for now waits for it.
    let proof = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.inclusion_proof(head + 1, head + 1).await }
    });
    let reader = std::thread::spawn({
        let ledger = ledger.clone();
        move || ledger.read(|s| s.last_sequence())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let proof_waited = !proof.is_finished();
    // Released whatever the outcome, so that a failure does not hang.
    release.send(()).unwrap();
    holder.join().unwrap();
    let entry = replied
        .expect("the reply waited for a read to let go of the read side")
        .unwrap();
    assert_eq!(entry.body.sequence, head + 1);
    assert_eq!(ledger.store().last_sequence(), head + 1);
    let proof = proof.await.unwrap();
    assert!(
        proof_waited,
        "a proof asked for after the reply did not wait for the tree: {proof:?}"
    );
    assert_eq!(proof.unwrap().sequence, head + 1);
    assert_eq!(
        reader.join().unwrap(),
        head + 1,
        "a read begun after the reply did not see the write"
    );
    shut_down(ledger).await;
}

/// Every reply is followed by reads that see it, however the publisher and
/// the reading task race: a client reads its own write at once (the read
/// side, the journal's pages, the Merkle tree's proofs), and so does any
/// client after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_write_at_once_after_every_reply() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(restarted(dir.path()));
    set_up(&ledger).await;
    let mut stale = Vec::new();
    for i in 0..300 {
        let sequence = ledger.submit(deposit(i)).await.unwrap().body.sequence;
        // Each kind of read goes first after a third of the replies (any
        // read after the first would find it waited already).
        let (kind, sees) = match i % 3 {
            0 => (
                "the read side",
                ledger.read(|s| s.last_sequence()) >= sequence,
            ),
            1 => (
                "the journal's page",
                ledger.entries(sequence, 1).unwrap().len() == 1,
            ),
            _ => (
                "a proof",
                ledger.inclusion_proof(sequence, sequence).await.is_ok(),
            ),
        };
        if !sees {
            stale.push((sequence, kind));
        }
    }
    assert!(
        stale.is_empty(),
        "reads right after a reply missed its entry: {stale:?}"
    );
    shut_down(ledger).await;
}
