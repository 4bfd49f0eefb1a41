//! The PostgreSQL store's failover, with the real binary: a writer and a
//! hot standby (`serve --store postgres://... --standby`) on one database,
//! the writer killed with SIGKILL under load; the standby takes over within
//! seconds, nothing acknowledged is lost, and the clients' retries with
//! their request ids are written exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mfi_ledger::cli::connect::{Bearer, Conn};
use mfi_ledger::pb;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;

use crate::common::postgres::Cluster;
use crate::common::{BIN, Server, expect_success};
use crate::support::{ctx, vnd};

/// Clients sending deposits at once.
const CLIENTS: usize = 4;

/// A client of the server at `url` presenting `token`.
async fn branch(url: &str, token: &str) -> BranchServiceClient<Conn> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20))
        .connect_lazy();
    BranchServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel,
        Bearer::new(Some(token)).unwrap(),
    ))
}

fn deposit(request_id: &str) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context: ctx(request_id),
        account_id: "TB-0001/C1".into(),
        amount: vnd("1000"),
        effective_date: "2024-01-03".into(),
    }
}

/// Sends `request_id` to the standby until it is written (the standby
/// answers UNAVAILABLE until it takes over); its sequence number.
async fn written_on(standby: &mut BranchServiceClient<Conn>, request_id: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match standby.deposit_savings(deposit(request_id)).await {
            Ok(reply) => return reply.into_inner().receipt.unwrap().sequence,
            Err(status) => {
                assert!(
                    status.code() == tonic::Code::Unavailable && Instant::now() < deadline,
                    "{request_id} on the standby: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[test]
fn the_standby_takes_over_from_a_killed_writer_and_loses_nothing_acknowledged() {
    let Some(cluster) = Cluster::start("postgres_failover") else {
        return;
    };
    let url = cluster.database("books");
    let store = ["--store", url.as_str(), "--lease-seconds", "2"];
    let mut writer = Server::start_with(&store);
    let token = writer.token();
    let mut standby_args = store.to_vec();
    standby_args.push("--standby");
    let standby = Server::start_with(&standby_args);
    for args in [
        &[
            "branch-create",
            "TB",
            "--name",
            "TB",
            "--opened-on",
            "2024-01-01",
        ][..],
        &[
            "center-create",
            "C1",
            "--branch",
            "TB",
            "--name",
            "C1",
            "--opened-on",
            "2024-01-01",
        ],
        &[
            "group-create",
            "G1",
            "--center",
            "C1",
            "--name",
            "G1",
            "--opened-on",
            "2024-01-01",
        ],
        &[
            "register",
            "TB-0001",
            "--name",
            "Hoa",
            "--group",
            "G1",
            "--joined-on",
            "2024-01-02",
        ],
        &[
            "open-savings",
            "TB-0001",
            "--kind",
            "compulsory",
            "--opened-on",
            "2024-01-02",
        ],
    ] {
        let output = writer.client().args(args).output().unwrap();
        expect_success(output, &format!("{args:?}"));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (acknowledged, retried, took_over) = runtime.block_on(async {
        // Each client deposits until the writer fails it, then sends that
        // deposit to the standby until it is written there.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (writer_url, standby_url, token) =
                    (writer.url.clone(), standby.url.clone(), token.clone());
                tokio::spawn(async move {
                    let mut to_writer = branch(&writer_url, &token).await;
                    let mut acknowledged = BTreeMap::new();
                    for i in 0.. {
                        let request_id = format!("client-{client}-{i}");
                        match to_writer.deposit_savings(deposit(&request_id)).await {
                            Ok(reply) => {
                                let sequence = reply.into_inner().receipt.unwrap().sequence;
                                acknowledged.insert(request_id, sequence);
                            }
                            Err(_) => {
                                let mut to_standby = branch(&standby_url, &token).await;
                                let sequence = written_on(&mut to_standby, &request_id).await;
                                return (acknowledged, (request_id, sequence), Instant::now());
                            }
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        writer.kill();
        let killed = Instant::now();
        let mut acknowledged = BTreeMap::new();
        let mut retried = BTreeMap::new();
        let mut took_over = Duration::ZERO;
        for client in clients {
            let (acked, (request_id, sequence), at) = client.await.unwrap();
            acknowledged.extend(acked);
            retried.insert(request_id, sequence);
            took_over = took_over.max(at - killed);
        }
        // Every deposit the writer acknowledged is in the standby's
        // journal, at the same place: a retry is answered from it.
        let mut to_standby = branch(&standby.url, &token).await;
        for (request_id, sequence) in &acknowledged {
            assert_eq!(written_on(&mut to_standby, request_id).await, *sequence);
        }
        (acknowledged, retried, took_over)
    });
    assert!(
        acknowledged.len() >= CLIENTS * 5,
        "only {} deposits acknowledged before the kill",
        acknowledged.len()
    );
    assert!(
        took_over < Duration::from_secs(10),
        "took over in {took_over:?}"
    );

    // Exactly once: one entry per request id, no gap, no fork.
    let deposits = acknowledged.len() + retried.len();
    let counted = cluster.psql(
        "books",
        "SELECT count(*), count(DISTINCT request_id), max(seq) - min(seq) + 1 \
         FROM mfi_ledger_journal WHERE request_id LIKE 'client-%'",
    );
    let fields: Vec<u64> = counted.split('|').map(|n| n.parse().unwrap()).collect();
    assert_eq!(fields[0], fields[1], "{counted}");
    assert_eq!(fields[0], fields[2], "{counted}");
    // Each deposit acknowledged, and each one retried on the standby (once,
    // even when the writer wrote it but could not answer), and no other.
    assert_eq!(fields[0] as usize, deposits, "{counted}");
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*) FROM mfi_ledger_journal j JOIN mfi_ledger_journal p \
             ON p.seq = j.seq - 1 WHERE j.prev_hash <> p.hash"
        ),
        "0"
    );
    let info = expect_success(
        std::process::Command::new(BIN)
            .args(["--json", "info", "--server", &standby.url])
            .env("MFI_LEDGER_TOKEN_FILE", &writer.token_file)
            .output()
            .unwrap(),
        "info",
    );
    let head = cluster.psql("books", "SELECT seq FROM mfi_ledger_head");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["last_sequence"].to_string(), head, "{info}");
    println!(
        "{} deposits acknowledged by the writer, {} retried on the standby, which took over \
         {took_over:?} after the kill",
        acknowledged.len(),
        retried.len()
    );
}
