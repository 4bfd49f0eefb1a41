//! Bounds a single client cannot get past: bytes of commands in flight,
//! connections from one address, and time spent on one request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mfi_ledger::api::ServerLimits;
use mfi_ledger::domain::command::Command;
use mfi_ledger::domain::entry::EntryBody;
use mfi_ledger::domain::state::{ExecContext, ExecuteError, LedgerState};
use mfi_ledger::ledger::{Decide, Ledger, LedgerConfig, LedgerRules, Lookup};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{App, TestClock, ctx, serve_ledger, spawn_app_with, vnd};

/// Decides by the ledger's rules, but holds the writer on one request id
/// until released (at most 10 s).
struct HoldOn {
    request_id: &'static str,
    holding: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

impl Decide for HoldOn {
    fn decide(
        &self,
        state: &LedgerState,
        command: &Command,
        context: ExecContext,
        lookup: &Lookup<'_>,
    ) -> Result<EntryBody, ExecuteError> {
        if command.request_id.as_str() == self.request_id {
            self.holding.store(true, Ordering::SeqCst);
            let started = Instant::now();
            while !self.released.load(Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        LedgerRules.decide(state, command, context, lookup)
    }
}

/// A served ledger whose writer holds on `request_id`, with branch TB and
/// member TB-0001 holding compulsory savings `TB-0001/C1`.
async fn app_holding_on(
    request_id: &'static str,
    config: LedgerConfig,
    limits: ServerLimits,
) -> (App, Arc<AtomicBool>, Arc<AtomicBool>) {
    let holding = Arc::new(AtomicBool::new(false));
    let released = Arc::new(AtomicBool::new(false));
    let rules = HoldOn {
        request_id,
        holding: holding.clone(),
        released: released.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::open_store(dir.path()).await;
    let ledger = Ledger::start_with(store, TestClock::new(), config, Arc::new(rules)).unwrap();
    let mut app = serve_ledger(Arc::new(ledger), dir, limits).await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    (app, holding, released)
}

fn deposit(request_id: &str) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context: ctx(request_id),
        account_id: "TB-0001/C1".into(),
        amount: vnd("1000"),
        effective_date: "2024-02-01".into(),
    }
}

/// Waits (at most 5 s) until `condition` holds.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..5000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    condition()
}

/// Reproduces: `queue_depth_max` counted commands only, so commands in
/// flight could hold any number of bytes. With the writer held up, deposits
/// pile up until their bytes reach `queue_bytes_max` (long before the count
/// bound); the next one is refused with RESOURCE_EXHAUSTED saying so, the
/// ones admitted are all written once the writer goes on, and the bytes are
/// given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_flight_are_bounded_in_bytes() {
    let config = LedgerConfig {
        queue_bytes_max: 2_000,
        ..LedgerConfig::default()
    };
    let (mut app, holding, released) =
        app_holding_on("dep-hold", config, ServerLimits::default()).await;
    let mut branch = app.branch.clone();
    let held = tokio::spawn(async move { branch.deposit_savings(deposit("dep-hold")).await });
    assert!(eventually(|| holding.load(Ordering::SeqCst)).await);
    let mut admitted = Vec::new();
    let mut refusal = None;
    for n in 0..200 {
        let in_flight = app.ledger.bytes_in_flight();
        let mut branch = app.branch.clone();
        let task =
            tokio::spawn(async move { branch.deposit_savings(deposit(&format!("dep-{n}"))).await });
        let ledger = app.ledger.clone();
        assert!(eventually(|| task.is_finished() || ledger.bytes_in_flight() > in_flight).await);
        if task.is_finished() {
            refusal = Some(task.await.unwrap().unwrap_err());
            break;
        }
        admitted.push(task);
    }
    let refusal = refusal.expect("a refusal before 200 deposits of about 100 bytes each");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains("2000 bytes"),
        "{}",
        refusal.message()
    );
    assert!(admitted.len() >= 5, "{} admitted", admitted.len());
    released.store(true, Ordering::SeqCst);
    held.await.unwrap().unwrap();
    for task in admitted {
        task.await.unwrap().unwrap();
    }
    assert!(eventually(|| app.ledger.bytes_in_flight() == 0).await);
    app.deposit("dep-after", "TB-0001/C1", "1000", "2024-02-01")
        .await
        .unwrap();
}

/// `GetLedgerInfo` over a new connection of its own.
async fn over_new_connection(app: &App) -> Result<u64, String> {
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    AuditServiceClient::new(crate::support::with_token(channel, &app.token))
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map(|reply| reply.into_inner().last_sequence)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// A second connection to the app, served once.
async fn second_connection(app: &App) -> AuditServiceClient<crate::support::Conn> {
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuditServiceClient::new(crate::support::with_token(channel, &app.token));
    client
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap();
    client
}

/// Reproduces: any number of connections from one address were accepted.
/// With at most 2 per address, the app's own connection and one more are
/// served, a third is refused, and once one closes a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_bounded() {
    let limits = ServerLimits {
        connections_per_peer_max: 2,
        ..ServerLimits::default()
    };
    let mut app = spawn_app_with(LedgerConfig::default(), limits).await;
    app.last_sequence().await;
    let mut second = second_connection(&app).await;
    let refused = over_new_connection(&app).await;
    assert!(refused.is_err(), "a third connection was served");
    // The two admitted ones still work.
    app.last_sequence().await;
    second
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap();
    drop(second);
    let mut served = over_new_connection(&app).await;
    let started = Instant::now();
    while served.is_err() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        served = over_new_connection(&app).await;
    }
    served.expect("a new connection is served once one closed");
}

/// Reproduces: connections were bounded per address only, so many
/// addresses (or many clients behind one proxy) could open connections
/// without limit. With at most 2 in all (and 10 per address), a third is
/// refused while the first two are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_all_are_bounded() {
    let limits = ServerLimits {
        connections_per_peer_max: 10,
        connections_max: 2,
        ..ServerLimits::default()
    };
    let mut app = spawn_app_with(LedgerConfig::default(), limits).await;
    app.last_sequence().await;
    let _second = second_connection(&app).await;
    let refused = over_new_connection(&app).await;
    assert!(refused.is_err(), "a third connection was served");
    app.last_sequence().await;
}

/// Reproduces: no request had a deadline on the server, so a request held
/// up inside the ledger ran as long as the hold. With a 200 ms deadline the
/// client gets CANCELLED in time; the write it had handed to the ledger is
/// still made, once, and a retry with the same request id returns it
/// without writing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_cancelled_and_its_write_is_made_once() {
    let limits = ServerLimits {
        request_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let (mut app, holding, released) =
        app_holding_on("dep-slow", LedgerConfig::default(), limits).await;
    let before = app.last_sequence().await;
    let started = Instant::now();
    let timed_out = app.branch.deposit_savings(deposit("dep-slow")).await;
    let waited = started.elapsed();
    let status = timed_out.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(holding.load(Ordering::SeqCst));
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    released.store(true, Ordering::SeqCst);
    let ledger = app.ledger.clone();
    assert!(eventually(|| ledger.read(|state| state.last_sequence()) == before + 1).await);
    let retried = app
        .branch
        .deposit_savings(deposit("dep-slow"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.receipt.unwrap().sequence, before + 1);
    assert_eq!(app.last_sequence().await, before + 1);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "1000");
}
