//! Faults inside the writer: a panic while deciding one command refuses that
//! command alone and the writer goes on; a fault that leaves the working
//! state in doubt stops writes, and health checks say so for every service
//! that writes while reads go on.

use std::sync::Arc;
use std::time::Duration;

use mfi_ledger::api::ServerLimits;
use mfi_ledger::domain::command::Command;
use mfi_ledger::domain::entry::EntryBody;
use mfi_ledger::domain::state::{ExecContext, ExecuteError, LedgerState};
use mfi_ledger::ledger::{Decide, Ledger, LedgerConfig, LedgerRules, Lookup};
use mfi_ledger::store::DiskStore;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{App, TestClock, health, read_journal, serve_ledger};

/// Decides by the ledger's rules, except for one request id.
struct FaultOn {
    request_id: &'static str,
    fault: Fault,
}

enum Fault {
    /// Panics while deciding.
    Panic,
    /// Decides an entry that does not follow the state (a bug `apply` catches).
    WrongSequence,
}

impl Decide for FaultOn {
    fn decide(
        &self,
        state: &LedgerState,
        command: &Command,
        context: ExecContext,
        lookup: &Lookup<'_>,
    ) -> Result<EntryBody, ExecuteError> {
        let mut body = LedgerRules.decide(state, command, context, lookup)?;
        if command.request_id.as_str() == self.request_id {
            match self.fault {
                Fault::Panic => panic!("a bug in the rules for {}", self.request_id),
                Fault::WrongSequence => body.sequence += 1,
            }
        }
        Ok(body)
    }
}

/// A served ledger whose writer decides by `rules`, with branch TB and
/// member TB-0001 holding compulsory savings `TB-0001/C1`.
async fn app_with(rules: FaultOn) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path()).unwrap();
    let ledger = Ledger::start_with(
        Arc::new(store),
        TestClock::new(),
        LedgerConfig::default(),
        Arc::new(rules),
    )
    .unwrap();
    let mut app = serve_ledger(Arc::new(ledger), dir, ServerLimits::default()).await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app
}

/// Waits (at most 5 s) until health of `service` is `wanted`.
async fn health_turns(app: &App, service: &str, wanted: ServingStatus) -> ServingStatus {
    let mut seen = health(app, service).await;
    for _ in 0..100 {
        if seen == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = health(app, service).await;
    }
    seen
}

const WRITING_SERVICES: [&str; 3] = [
    "",
    "mfi.ledger.v1.BranchService",
    "mfi.ledger.v1.ProductService",
];

/// Reproduces: a panic inside `execute` unwound the writer thread, which
/// marked the ledger failed, so one bad command stopped every write until a
/// restart. Now that command alone gets INTERNAL and writes nothing; the
/// commands decided with it and after it are written with no gap in the
/// journal, and health stays SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_deciding_one_command_refuses_it_alone_and_the_writer_goes_on() {
    let mut app = app_with(FaultOn {
        request_id: "dep-bug",
        fault: Fault::Panic,
    })
    .await;
    let before = app.last_sequence().await;
    // Sent together, so that most share the writer's batch with the bad one.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let mut app_branch = app.branch.clone();
        let request_id = if n == 8 {
            "dep-bug".to_string()
        } else {
            format!("dep-{n}")
        };
        tasks.push(tokio::spawn(async move {
            let request = mfi_ledger::pb::DepositSavingsRequest {
                context: crate::support::ctx(&request_id),
                account_id: "TB-0001/C1".into(),
                amount: crate::support::vnd("1000"),
                effective_date: "2024-02-01".into(),
            };
            (request_id, app_branch.deposit_savings(request).await)
        }));
    }
    for task in tasks {
        let (request_id, reply) = task.await.unwrap();
        match (request_id.as_str(), reply) {
            ("dep-bug", Err(status)) => assert_eq!(status.code(), Code::Internal, "{status:?}"),
            ("dep-bug", Ok(reply)) => panic!("the faulty command was written: {reply:?}"),
            (_, reply) => {
                reply.unwrap();
            }
        }
    }
    // The next commands are written too.
    let after = app
        .deposit("dep-after", "TB-0001/C1", "500", "2024-02-02")
        .await
        .unwrap();
    assert_eq!(after.receipt.unwrap().sequence, before + 16);
    let retried = app
        .deposit("dep-bug", "TB-0001/C1", "1000", "2024-02-01")
        .await
        .unwrap_err();
    assert_eq!(retried.code(), Code::Internal);
    // Nothing of the faulty command is in the journal, and it has no gap.
    let journal = read_journal(&mut app.audit, 100).await;
    let sequences: Vec<u64> = journal.iter().map(|entry| entry.sequence).collect();
    assert_eq!(sequences, (1..=before + 16).collect::<Vec<u64>>());
    assert!(journal.iter().all(|entry| entry.request_id != "dep-bug"));
    assert_eq!(app.balance("savings:TB-0001/C1").await, "15500");
    for service in WRITING_SERVICES {
        assert_eq!(
            health(&app, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    assert!(!app.ledger.has_failed());
}

/// Reproduces: when writes stopped, only BranchService turned NOT_SERVING;
/// ProductService and the server as a whole ("") still said SERVING. A
/// fault in `apply` (an entry that does not follow the state) still stops
/// the writer; then every service that writes and "" say NOT_SERVING, and
/// AuditService stays SERVING because reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_writes_stop_every_writing_service_and_the_server_say_not_serving() {
    let mut app = app_with(FaultOn {
        request_id: "dep-bad-entry",
        fault: Fault::WrongSequence,
    })
    .await;
    for service in WRITING_SERVICES {
        assert_eq!(
            health(&app, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let before = app.last_sequence().await;
    let fault = app
        .deposit("dep-bad-entry", "TB-0001/C1", "1000", "2024-02-01")
        .await
        .unwrap_err();
    assert_eq!(fault.code(), Code::Internal, "{fault:?}");
    let refused = app
        .deposit("dep-next", "TB-0001/C1", "1000", "2024-02-01")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    for service in WRITING_SERVICES {
        assert_eq!(
            health_turns(&app, service, ServingStatus::NotServing).await,
            ServingStatus::NotServing,
            "{service:?}"
        );
    }
    assert_eq!(
        health(&app, "mfi.ledger.v1.AuditService").await,
        ServingStatus::Serving
    );
    assert_eq!(app.last_sequence().await, before);
}
