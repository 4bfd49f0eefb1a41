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

/// Branch TB, member TB-0001 and her compulsory savings account TB-0001/C1.
fn set_up_member(server: &Server) {
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
        let output = server.client().args(args).output().unwrap();
        expect_success(output, &format!("{args:?}"));
    }
}

/// `serve` with `args` on two new data directories at once, each started on
/// a thread of its own: each server comes through the one channel once it
/// listens, whichever that is first.
fn start_two_in_background(args: &[&str]) -> std::sync::mpsc::Receiver<Server> {
    let (sender, receiver) = std::sync::mpsc::channel();
    for _ in 0..2 {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let sender = sender.clone();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = sender.send(Server::start_with(&args));
        });
    }
    receiver
}

#[test]
fn two_servers_started_together_on_one_database_take_turns_to_write() {
    let Some(cluster) = Cluster::start("two_servers_started_together") else {
        return;
    };
    let url = cluster.database("books");
    let args = ["--store", url.as_str(), "--lease-seconds", "2"];
    let servers = start_two_in_background(&args);
    // One takes the lease and serves; the other waits for it, not listening.
    let mut first = servers
        .recv_timeout(Duration::from_secs(20))
        .expect("one of the servers listens");
    let second = servers;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        second.try_recv().is_err(),
        "both servers took the journal's lease"
    );

    // Under load on the first, the second writes nothing.
    set_up_member(&first);
    let token = first.token();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acknowledged: u64 = runtime.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (url, token) = (first.url.clone(), token.clone());
                tokio::spawn(async move {
                    let mut to_first = branch(&url, &token).await;
                    for i in 0..50 {
                        let request_id = format!("client-{client}-{i}");
                        to_first
                            .deposit_savings(deposit(&request_id))
                            .await
                            .unwrap();
                    }
                    50u64
                })
            })
            .collect();
        let mut acknowledged = 0;
        for client in clients {
            acknowledged += client.await.unwrap();
        }
        acknowledged
    });
    assert!(
        second.try_recv().is_err(),
        "the second server took the lease while the first held it"
    );
    let head: u64 = cluster
        .psql("books", "SELECT seq FROM mfi_ledger_head")
        .parse()
        .unwrap();
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*), count(DISTINCT epoch), count(DISTINCT request_id) \
             FROM mfi_ledger_journal"
        ),
        format!("{head}|1|{head}")
    );
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*) FROM mfi_ledger_journal WHERE request_id LIKE 'client-%'"
        ),
        acknowledged.to_string()
    );

    // The first crashes: the second takes the lease once it expires, and
    // writes on from the same head.
    first.kill();
    let second = second
        .recv_timeout(Duration::from_secs(10))
        .expect("the second server takes over within 10 s");
    let output = std::process::Command::new(BIN)
        .args(["deposit", "TB-0001/C1", "1000", "--date", "2024-01-03"])
        .args(["--server", &second.url])
        .env("MFI_LEDGER_TOKEN_FILE", &first.token_file)
        .output()
        .unwrap();
    expect_success(output, "a deposit on the second server");
    assert_eq!(
        cluster.psql(
            "books",
            "SELECT count(*), max(seq), count(DISTINCT epoch) FROM mfi_ledger_journal"
        ),
        format!("{}|{}|2", head + 1, head + 1)
    );
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
    set_up_member(&writer);

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
    assert_eq!(cluster.chain_breaks("books"), 0);
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
