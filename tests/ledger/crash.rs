//! The real binary killed with SIGKILL at random moments under concurrent
//! writes: after each restart every acknowledged request is there exactly
//! once, and at the end the journal and derived state verify offline.
//!
//! The moments are seeded (the seed is printed; `CRASH_SEED` replays one)
//! and counted from the first acknowledgements of each round, not from its
//! start, so a slow, loaded machine changes when the kill lands, never
//! whether the round has anything to check.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use tokio::process::Child;

use crate::support::{ctx, serve_binary, vnd};

const BINARY: &str = env!("CARGO_BIN_EXE_mfi-ledger");
const ROUNDS: usize = 5;
const WRITERS: usize = 8;
const COMMANDS_PER_WRITER_MAX: usize = 3000;
/// Acknowledgements each round waits for before its kill delay starts.
const ACKNOWLEDGED_BEFORE_KILL: usize = 16;
/// Longest wait for them: past it the server is stalled, a failure.
const ACKNOWLEDGED_WAIT: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    branch: BranchServiceClient<crate::support::Conn>,
    audit: AuditServiceClient<crate::support::Conn>,
}

async fn start(dir: &Path) -> Server {
    let (child, address) = serve_binary(BINARY, dir).await;
    let token = crate::support::tester_token_over_grpc(&address, dir).await;
    let channel = crate::support::connect(address.parse().unwrap(), &token).await;
    Server {
        child,
        branch: BranchServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
    }
}

fn deposit(id: &str, amount: u64) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context: ctx(id),
        account_id: "TB-0001/V1".into(),
        amount: vnd(&amount.to_string()),
        effective_date: "2024-02-01".into(),
    }
}

async fn set_up(server: &mut Server) {
    let branch = &mut server.branch;
    branch
        .create_branch(pb::CreateBranchRequest {
            context: ctx("b"),
            branch_id: "TB".into(),
            name: "Thái Bình".into(),
            opened_on: "2024-01-01".into(),
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
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
    branch
        .create_group(pb::CreateGroupRequest {
            context: ctx("g"),
            group_id: "G1".into(),
            center_id: "C1".into(),
            name: "Nhóm 1".into(),
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
    branch
        .register_member(pb::RegisterMemberRequest {
            context: ctx("m"),
            member_id: "TB-0001".into(),
            full_name: "Phạm Thị Thu".into(),
            group_id: "G1".into(),
            joined_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
    branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("s"),
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Voluntary as i32,
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    set_up(&mut server).await;
    let mut acknowledged: HashMap<String, (u64, u64)> = HashMap::new();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_secs())
        });
    eprintln!("SIGKILL delays: CRASH_SEED={seed}");
    let mut rng = oorandom::Rand64::new(u128::from(seed));
    for round in 0..ROUNDS {
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let writers = spawn_writers(&server, round, acked.clone());
        let waited = tokio::time::timeout(ACKNOWLEDGED_WAIT, async {
            while acked.lock().unwrap().len() < ACKNOWLEDGED_BEFORE_KILL {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "round {round}: fewer than {ACKNOWLEDGED_BEFORE_KILL} writes acknowledged in {ACKNOWLEDGED_WAIT:?}"
        );
        let delay_ms = rng.rand_range(0..450);
        eprintln!(
            "round {round}: SIGKILL {delay_ms} ms after the first {ACKNOWLEDGED_BEFORE_KILL} acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round} acknowledged nothing before the kill"
        );
        acknowledged.extend(acked);
        server = start(dir.path()).await;
        check_every_acknowledged_request_once(&mut server, &acknowledged).await;
    }
    // A clean stop, then offline verification of chain and derived state.
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "SIGTERM should stop the server cleanly: {exit:?}"
    );
    let verify = std::process::Command::new(BINARY)
        .arg("verify")
        .arg("--data")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "verify failed: {stdout} {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

fn spawn_writers(
    server: &Server,
    round: usize,
    acknowledged: Arc<Mutex<HashMap<String, (u64, u64)>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|writer| {
            let mut client = server.branch.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for n in 0..COMMANDS_PER_WRITER_MAX {
                    let id = format!("r{round}-w{writer}-{n}");
                    let amount = 1000 + n as u64;
                    match client.deposit_savings(deposit(&id, amount)).await {
                        Ok(reply) => {
                            let sequence = reply.into_inner().receipt.unwrap().sequence;
                            acknowledged.lock().unwrap().insert(id, (amount, sequence));
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

async fn check_every_acknowledged_request_once(
    server: &mut Server,
    acknowledged: &HashMap<String, (u64, u64)>,
) {
    let info = server
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    // Walk the journal: every request id once; every acknowledged one at its sequence.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut deposited = 0u64;
    for entry in crate::support::read_journal(&mut server.audit, 1000).await {
        if entry.command == "deposit_savings" {
            deposited += entry.postings[0]
                .amount
                .as_ref()
                .unwrap()
                .amount
                .parse::<u64>()
                .unwrap();
        }
        let previous = seen.insert(entry.request_id.clone(), entry.sequence);
        assert!(
            previous.is_none(),
            "request {} appears twice",
            entry.request_id
        );
    }
    assert_eq!(seen.len() as u64, info.last_sequence);
    for (id, (_, sequence)) in acknowledged {
        assert_eq!(
            seen.get(id),
            Some(sequence),
            "acknowledged request {id} is not at entry {sequence}"
        );
    }
    // The derived balance equals the journal's deposits.
    let balance = server
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: "savings:TB-0001/V1".into(),
            as_of: None,
        })
        .await;
    assert_eq!(
        balance.unwrap().into_inner().balance.unwrap().amount,
        deposited.to_string()
    );
    // A retry of an acknowledged request returns its entry and writes nothing.
    if let Some((id, (amount, sequence))) = acknowledged.iter().next() {
        let retry = server
            .branch
            .deposit_savings(deposit(id, *amount))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retry.receipt.unwrap().sequence, *sequence);
        let after = server
            .audit
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after.last_sequence, info.last_sequence);
    }
}
