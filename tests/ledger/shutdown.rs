//! SIGTERM under load: the real binary stops accepting calls, answers every
//! call it already decided, then exits; no client is told a write failed
//! when the journal holds it.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfi_ledger::pb;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use mfi_ledger::store::{DiskStore, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::support::{ctx, vnd};

const BINARY: &str = env!("CARGO_BIN_EXE_mfi-ledger");
const CLIENTS: usize = 32;
/// HTTP/2 connections the clients share, as the load generator does: calls
/// from several clients are in flight on each when the signal comes.
const CONNECTIONS: usize = 4;
const COMMANDS_PER_CLIENT_MAX: usize = 20_000;
/// Writes acknowledged before the signal, so that it lands mid-load.
const ACKNOWLEDGED_BEFORE_SIGNAL: usize = 1_000;

/// Starts `mfi-ledger serve` on port 0; returns it and its address.
async fn start(dir: &Path) -> (Child, String) {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server says where it listens within 30 s")
        .unwrap()
        .expect("a line on stdout");
    let address = line
        .strip_prefix("mfi-ledger listening on ")
        .expect("the listening line")
        .to_owned();
    (child, address)
}

async fn connect(address: &str) -> BranchServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    BranchServiceClient::new(channel)
}

/// Branch TB with member TB-0001 holding voluntary savings `TB-0001/V1`.
async fn set_up(branch: &mut BranchServiceClient<Channel>) {
    let opened_on = || "2024-01-01".to_string();
    branch
        .create_branch(pb::CreateBranchRequest {
            context: ctx("b"),
            branch_id: "TB".into(),
            name: "Thái Bình".into(),
            opened_on: opened_on(),
            ..Default::default()
        })
        .await
        .unwrap();
    branch
        .create_center(pb::CreateCenterRequest {
            context: ctx("c"),
            center_id: "C1".into(),
            branch_id: "TB".into(),
            name: "Cụm 1".into(),
            opened_on: opened_on(),
        })
        .await
        .unwrap();
    branch
        .create_group(pb::CreateGroupRequest {
            context: ctx("g"),
            group_id: "G1".into(),
            center_id: "C1".into(),
            name: "Nhóm 1".into(),
            opened_on: opened_on(),
        })
        .await
        .unwrap();
    branch
        .register_member(pb::RegisterMemberRequest {
            context: ctx("m"),
            member_id: "TB-0001".into(),
            full_name: "Phạm Thị Thu".into(),
            group_id: "G1".into(),
            joined_on: opened_on(),
        })
        .await
        .unwrap();
    branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("s"),
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Voluntary as i32,
            opened_on: opened_on(),
        })
        .await
        .unwrap();
}

/// What each request got: its sequence number, or the status of its error.
type Outcomes = Arc<Mutex<HashMap<String, Result<u64, tonic::Status>>>>;

/// One client, depositing until a call fails.
async fn write_until_refused(
    mut branch: BranchServiceClient<Channel>,
    client: usize,
    outcomes: Outcomes,
) {
    for n in 0..COMMANDS_PER_CLIENT_MAX {
        let request_id = format!("c{client}-{n}");
        let request = pb::DepositSavingsRequest {
            context: ctx(&request_id),
            account_id: "TB-0001/V1".into(),
            amount: vnd("1000"),
            effective_date: "2024-02-01".into(),
        };
        let outcome = branch
            .deposit_savings(request)
            .await
            .map(|reply| reply.into_inner().receipt.unwrap().sequence);
        let failed = outcome.is_err();
        outcomes.lock().unwrap().insert(request_id, outcome);
        if failed {
            return;
        }
    }
}

/// Reproduces: under SIGTERM with 32 writing clients, some writes were made
/// durable while their clients got UNAVAILABLE (GOAWAY) instead of the
/// reply. Every write the journal holds must have been answered OK (and at
/// its sequence number); a write a client was told failed is not in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_write_the_journal_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = start(dir.path()).await;
    set_up(&mut connect(&address).await).await;
    let outcomes: Outcomes = Arc::default();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(connect(&address).await);
    }
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let branch = connections[client % CONNECTIONS].clone();
            tokio::spawn(write_until_refused(branch, client, outcomes.clone()))
        })
        .collect();
    // Mid-load: once the clients are writing (bounded in time).
    for _ in 0..300 {
        if outcomes.lock().unwrap().len() >= ACKNOWLEDGED_BEFORE_SIGNAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the server stops within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "SIGTERM stops the server cleanly: {exit:?}");
    for client in clients {
        tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .expect("every client sees the server gone")
            .unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let store = DiskStore::open(dir.path()).unwrap();
    let last = store.last_sequence();
    let journal = store.read_entries(1, last as usize).unwrap();
    let mut in_journal = 0;
    for entry in &journal {
        let Some(outcome) = outcomes.get(entry.body.request_id.as_str()) else {
            continue;
        };
        in_journal += 1;
        match outcome {
            Ok(sequence) => assert_eq!(*sequence, entry.body.sequence),
            Err(status) => panic!(
                "write {} is entry {} in the journal, but its client got {:?}: {}",
                entry.body.request_id.as_str(),
                entry.body.sequence,
                status.code(),
                status.message()
            ),
        }
    }
    let acknowledged = outcomes.values().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(
        in_journal, acknowledged,
        "every acknowledged write is in the journal"
    );
    assert!(
        acknowledged >= 100,
        "the signal came mid-load ({acknowledged} writes acknowledged)"
    );
}
