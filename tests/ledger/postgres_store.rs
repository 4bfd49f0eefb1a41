//! The PostgreSQL store (`serve --store postgres://...`): the journal of
//! record in a real PostgreSQL server started by the test, one writer at a
//! time under a lease, and no acknowledgement without a commit, even while
//! the database is down.

use std::sync::Arc;
use std::time::Duration;

use mfi_ledger::api::ServerLimits;
use mfi_ledger::ledger::LedgerConfig;
use mfi_ledger::pb;
use mfi_ledger::store::{PostgresOptions, PostgresStore, StoreError};
use tempfile::TempDir;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::postgres::Cluster;
use crate::support::{App, ctx, health, start_on, vnd};

/// Opens the store on database `url` with its derived files in `dir`.
async fn open(
    dir: &TempDir,
    url: &str,
    lease_wait: Option<Duration>,
) -> Result<PostgresStore, StoreError> {
    // Long: no renewal happens within a test unless it waits for one.
    open_with_lease(dir, url, lease_wait, Duration::from_secs(30)).await
}

/// [`open`] with a lease of `lease`.
async fn open_with_lease(
    dir: &TempDir,
    url: &str,
    lease_wait: Option<Duration>,
    lease: Duration,
) -> Result<PostgresStore, StoreError> {
    let options = PostgresOptions {
        lease,
        lease_wait,
        ..PostgresOptions::new(url)
    };
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || PostgresStore::open(&path, &options))
        .await
        .unwrap()
}

/// A server on the PostgreSQL journal at `url`, with its derived files in
/// `dir`.
async fn serve(dir: TempDir, url: &str) -> App {
    serve_with_lease(dir, url, Duration::from_secs(30)).await
}

/// [`serve`] with a lease of `lease`.
async fn serve_with_lease(dir: TempDir, url: &str, lease: Duration) -> App {
    let store = open_with_lease(&dir, url, None, lease).await.unwrap();
    start_on(
        Arc::new(store),
        dir,
        LedgerConfig::default(),
        ServerLimits::default(),
    )
    .await
}

/// Opens the store on database `url` as a standby, its derived files in
/// `dir`.
async fn open_standby(dir: &TempDir, url: &str) -> Result<PostgresStore, StoreError> {
    let options = PostgresOptions {
        lease: Duration::from_secs(30),
        ..PostgresOptions::new(url)
    };
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || PostgresStore::open_standby(&path, &options))
        .await
        .unwrap()
}

/// A standby on the PostgreSQL journal at `url`, with its derived files in
/// `dir`, following it on its own thread.
async fn standby(dir: TempDir, url: &str) -> App {
    let store = Arc::new(open_standby(&dir, url).await.unwrap());
    let config = LedgerConfig {
        standby: true,
        ..LedgerConfig::default()
    };
    let app = start_on(store.clone(), dir, config, ServerLimits::default()).await;
    mfi_ledger::ledger::standby::spawn_follower(store, app.ledger.clone()).unwrap();
    app
}

/// Sends `request` to a standby until it takes over and writes it (it
/// answers UNAVAILABLE until then), within 10 s.
async fn written_once_it_takes_over(
    standby: &mut App,
    request: pb::DepositSavingsRequest,
) -> pb::DepositSavingsResponse {
    let started = std::time::Instant::now();
    loop {
        match standby.branch.deposit_savings(request.clone()).await {
            Ok(reply) => return reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(started.elapsed() < Duration::from_secs(10), "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

/// Waits (at most 10 s) until `app` has applied entry `sequence`.
async fn caught_up(app: &mut App, sequence: u64) {
    for _ in 0..200 {
        if app.last_sequence().await >= sequence {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the standby did not reach entry {sequence} within 10 s");
}

/// A new, empty data directory for another server on the same journal,
/// with the token of `tester` (a principal in the journal) kept in `dir`.
fn another_dir(dir: &std::path::Path) -> TempDir {
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("tester.token"), other.path().join("tester.token")).unwrap();
    other
}

/// A branch, a member and `deposits` deposits into her account.
async fn books(app: &mut App, deposits: usize) {
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.deposits(deposits, "2024-06-03").await;
}

fn deposit(request_id: &str, amount: &str) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context: ctx(request_id),
        account_id: "TB-0001/C1".into(),
        amount: vnd(amount),
        effective_date: "2024-06-04".into(),
    }
}

/// The sequence number a deposit was recorded at.
fn sequence(reply: &pb::DepositSavingsResponse) -> u64 {
    reply.receipt.as_ref().unwrap().sequence
}

#[tokio::test]
async fn the_books_are_in_the_database_and_a_new_server_rebuilds_them_from_it() {
    let Some(cluster) = Cluster::start("postgres_store::the_books_are_in_the_database") else {
        return;
    };
    let url = cluster.database("books");
    let mut app = serve(tempfile::tempdir().unwrap(), &url).await;
    books(&mut app, 1500).await;
    let late = app
        .branch
        .deposit_savings(deposit("late", "5000"))
        .await
        .unwrap()
        .into_inner();
    let last = app.last_sequence().await;
    assert_eq!(sequence(&late), last);
    let balance = app.balance("savings:TB-0001/C1").await;
    assert_eq!(balance, "1505000");

    // Every entry is a row, each chained to the one before; the head names
    // the last, and a clean stop gave the lease back.
    let dir = app.stop().await;
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*), min(seq), max(seq) FROM mfi_ledger_journal"
        ),
        format!("{last}|1|{last}")
    );
    assert_eq!(cluster.chain_breaks("books"), 0);
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT h.seq, h.holder, h.hash = j.hash FROM mfi_ledger_head h \
             JOIN mfi_ledger_journal j ON j.seq = h.seq"
        ),
        format!("{last}||t")
    );

    // The same data directory: its state cache, checked against the
    // database's journal.
    let elsewhere_dir = another_dir(dir.path());
    let mut again = serve(dir, &url).await;
    assert_eq!(again.last_sequence().await, last);
    assert_eq!(again.balance("savings:TB-0001/C1").await, balance);
    drop(again.stop().await);

    // A new machine (an empty data directory): the state is rebuilt from
    // the database's journal, and a client's retry is answered from it,
    // exactly once.
    let mut elsewhere = serve(elsewhere_dir, &url).await;
    assert_eq!(elsewhere.last_sequence().await, last);
    assert_eq!(elsewhere.balance("savings:TB-0001/C1").await, balance);
    let retried = elsewhere
        .branch
        .deposit_savings(deposit("late", "5000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, late);
    let next = elsewhere
        .branch
        .deposit_savings(deposit("next", "1000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sequence(&next), last + 1);
    assert_eq!(elsewhere.balance("savings:TB-0001/C1").await, "1506000");
}

#[tokio::test]
async fn one_server_writes_at_a_time_and_one_that_lost_the_lease_writes_nothing() {
    let Some(cluster) = Cluster::start("postgres_store::one_server_writes_at_a_time") else {
        return;
    };
    let url = cluster.database("books");
    // Renewed every second: it finds out it lost the lease within one.
    let mut first =
        serve_with_lease(tempfile::tempdir().unwrap(), &url, Duration::from_secs(3)).await;
    books(&mut first, 10).await;
    let before = first.last_sequence().await;

    // A second server on the same database does not write while the first
    // holds the lease: it waits, here for half a second, then gives up.
    let second_dir = another_dir(first.dir.path());
    let refused = open(&second_dir, &url, Some(Duration::from_millis(500)))
        .await
        .err()
        .expect("a second writer while the first holds the lease");
    assert!(
        matches!(&refused, StoreError::Fenced(why) if why.contains("holds the journal's lease")),
        "{refused}"
    );

    // The first server's lease lapses (its host stalled past it, say) and
    // another takes it (the epoch rises); then the second takes it.
    cluster.psql(
        "books",
        "UPDATE mfi_ledger_head SET epoch = epoch + 1, holder = '', \
         lease_expires = now() - interval '1 second'",
    );
    let mut second = serve(second_dir, &url).await;
    assert_eq!(second.last_sequence().await, before);

    // The first finds out at its next renewal, before any write: health
    // checks say it takes no writes.
    let branch_service = "mfi.ledger.v1.BranchService";
    let started = std::time::Instant::now();
    while health(&first, branch_service).await != ServingStatus::NotServing {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a server that lost its lease still says SERVING"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The first server's next command is refused as unavailable, nothing
    // of it is written, and it decides nothing more.
    let lost = first
        .branch
        .deposit_savings(deposit("to-the-first", "1000"))
        .await
        .unwrap_err();
    assert_eq!(lost.code(), tonic::Code::Unavailable, "{lost:?}");
    assert!(lost.message().contains("no longer writes"), "{lost:?}");
    assert!(first.ledger.has_failed());
    let again = first
        .branch
        .deposit_savings(deposit("to-the-first-again", "1000"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unavailable, "{again:?}");

    // The second writes on from the same head: no fork, and the command
    // the first refused is written once when sent to the second.
    let moved = second
        .branch
        .deposit_savings(deposit("to-the-first", "1000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sequence(&moved), before + 1);
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*), max(seq), count(DISTINCT epoch) FROM mfi_ledger_journal"
        ),
        format!("{}|{}|2", before + 1, before + 1)
    );
    assert_eq!(second.balance("savings:TB-0001/C1").await, "11000");
}

#[tokio::test]
async fn a_batch_waits_while_the_database_is_down_and_is_written_once_when_it_is_back() {
    let Some(mut cluster) = Cluster::start("postgres_store::a_batch_waits") else {
        return;
    };
    let url = cluster.database("books");
    let mut app = serve(tempfile::tempdir().unwrap(), &url).await;
    books(&mut app, 10).await;
    let before = app.last_sequence().await;

    // The database crashes; a deposit sent now is not acknowledged while
    // it is down.
    cluster.kill_server();
    let mut branch = app.branch.clone();
    let pending =
        tokio::spawn(async move { branch.deposit_savings(deposit("while-down", "2000")).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pending.is_finished(),
        "a deposit was answered while the database was down: {:?}",
        pending.await
    );
    // Reads go on from the server's state meanwhile.
    assert_eq!(app.balance("savings:TB-0001/C1").await, "10000");

    // The database is back: the deposit is written, once, and answered.
    cluster.start_server();
    let written = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the deposit is answered once the database is back")
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(sequence(&written), before + 1);
    assert!(!app.ledger.has_failed());
    let retried = app
        .branch
        .deposit_savings(deposit("while-down", "2000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, written);
    assert_eq!(
        cluster.psql("books", "SELECT count(*), max(seq) FROM mfi_ledger_journal"),
        format!("{}|{}", before + 1, before + 1)
    );
    assert_eq!(app.balance("savings:TB-0001/C1").await, "12000");
}

#[tokio::test]
async fn a_standby_follows_serves_reads_and_takes_over_when_the_writer_stops() {
    let Some(cluster) = Cluster::start("postgres_store::a_standby_follows") else {
        return;
    };
    let url = cluster.database("books");
    let mut writer = serve(tempfile::tempdir().unwrap(), &url).await;
    books(&mut writer, 10).await;
    // A standby opens while the writer writes (a busy branch): its view of
    // the journal is taken at one head.
    let mut busy = writer.branch.clone();
    let load = tokio::spawn(async move {
        for i in 0.. {
            let request = deposit(&format!("busy-{i}"), "1000");
            if busy.deposit_savings(request).await.is_err() {
                return i;
            }
        }
        unreachable!()
    });
    for _ in 0..5 {
        let dir = another_dir(writer.dir.path());
        drop(open_standby(&dir, &url).await.unwrap());
    }
    let mut standby = standby(another_dir(writer.dir.path()), &url).await;
    load.abort();
    let _ = load.await;

    // It follows what the writer writes, and serves it.
    let acknowledged = writer
        .branch
        .deposit_savings(deposit("on-the-writer", "5000"))
        .await
        .unwrap()
        .into_inner();
    caught_up(&mut standby, sequence(&acknowledged)).await;
    let balance = writer.balance("savings:TB-0001/C1").await;
    assert_eq!(standby.balance("savings:TB-0001/C1").await, balance);

    // It refuses writes, and says so to health checks; reads are served.
    let refused = standby
        .branch
        .deposit_savings(deposit("on-the-standby", "1000"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("standby"), "{refused:?}");
    let branch_service = "mfi.ledger.v1.BranchService";
    assert_eq!(
        health(&standby, branch_service).await,
        ServingStatus::NotServing
    );
    assert_eq!(health(&standby, "").await, ServingStatus::NotServing);
    assert_eq!(
        health(&standby, "mfi.ledger.v1.AuditService").await,
        ServingStatus::Serving
    );

    // The writer stops (giving its lease back): the standby takes over,
    // without a restart, within seconds.
    drop(writer.stop().await);
    let started = std::time::Instant::now();
    let written = written_once_it_takes_over(&mut standby, deposit("on-the-standby", "1000")).await;
    assert_eq!(sequence(&written), sequence(&acknowledged) + 1);
    // Health checks say so at their next look.
    let mut status = health(&standby, branch_service).await;
    while status != ServingStatus::Serving && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = health(&standby, branch_service).await;
    }
    assert_eq!(status, ServingStatus::Serving);

    // A retry of what the writer acknowledged is answered from the journal.
    let retried = standby
        .branch
        .deposit_savings(deposit("on-the-writer", "5000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, acknowledged);
    let after: u64 = balance.parse::<u64>().unwrap() + 1000;
    assert_eq!(
        standby.balance("savings:TB-0001/C1").await,
        after.to_string()
    );
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*), count(DISTINCT epoch) FROM mfi_ledger_journal"
        ),
        format!("{}|2", sequence(&written))
    );
}

#[tokio::test]
async fn the_ledger_goes_on_with_the_promoted_replica_when_the_primary_dies() {
    let Some(mut primary) = Cluster::start("postgres_store::the_ledger_goes_on_with_the_replica")
    else {
        return;
    };
    primary.database("books");
    let replica = primary.start_replica();
    let url = Cluster::url_of(&[&primary, &replica], "books");
    let mut app = serve(tempfile::tempdir().unwrap(), &url).await;
    books(&mut app, 10).await;
    let acknowledged = app
        .branch
        .deposit_savings(deposit("before", "5000"))
        .await
        .unwrap()
        .into_inner();

    // Four clients deposit all along; the primary dies under them.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let mut branch = app.branch.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..40 {
                    let request = deposit(&format!("client-{client}-{i}"), "1000");
                    let reply = branch.deposit_savings(request).await.unwrap();
                    written.push(sequence(&reply.into_inner()));
                }
                written
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    primary.kill_server();
    // A deposit sent now waits, unacknowledged.
    let mut branch = app.branch.clone();
    let pending =
        tokio::spawn(async move { branch.deposit_savings(deposit("during", "2000")).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!pending.is_finished(), "{:?}", pending.await);

    // The replica is promoted: the ledger reconnects to it by itself, and
    // every client's deposits are written, once each.
    replica.promote();
    let written = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the deposit is answered once the replica is promoted")
        .unwrap()
        .unwrap()
        .into_inner();
    let mut sequences = vec![sequence(&acknowledged), sequence(&written)];
    for client in clients {
        sequences.extend(client.await.unwrap());
    }
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), 2 + 4 * 40);
    let last = *sequences.last().unwrap();
    assert_eq!(last, sequence(&acknowledged) + 1 + 4 * 40);

    // Every entry acknowledged is in the promoted database, once, chained.
    assert_eq!(
        replica.psql(
            "books",
            "SELECT count(*), max(seq), count(DISTINCT request_id) FROM mfi_ledger_journal"
        ),
        format!("{last}|{last}|{last}")
    );
    assert_eq!(replica.chain_breaks("books"), 0);
    let retried = app
        .branch
        .deposit_savings(deposit("before", "5000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, acknowledged);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "177000");
    assert!(!app.ledger.has_failed());
}

#[tokio::test]
async fn a_writer_stopped_by_a_fault_gives_its_lease_to_the_standby() {
    let Some(cluster) = Cluster::start("postgres_store::a_writer_stopped_by_a_fault") else {
        return;
    };
    let url = cluster.database("books");
    let mut writer = serve(tempfile::tempdir().unwrap(), &url).await;
    books(&mut writer, 10).await;
    let mut standby = standby(another_dir(writer.dir.path()), &url).await;
    let last = writer.last_sequence().await;
    caught_up(&mut standby, last).await;

    // The database refuses the writer's next batch (a constraint an
    // operator added, say): nothing is written, and the writer stops.
    cluster.psql(
        "books",
        "ALTER TABLE mfi_ledger_journal ADD CONSTRAINT refused \
         CHECK (request_id <> 'refused')",
    );
    let refused = writer
        .branch
        .deposit_savings(deposit("refused", "1000"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert!(writer.ledger.has_failed());

    // It gives its 30 s lease back at once: the standby writes within
    // seconds, from the same head.
    let written = written_once_it_takes_over(&mut standby, deposit("after", "1000")).await;
    assert_eq!(sequence(&written), last + 1);
}
