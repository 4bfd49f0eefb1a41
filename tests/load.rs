//! `mfi-ledger load` end to end: start the real server on a free port with a
//! fresh data directory, run the load generator against it with small
//! numbers, unary then batched, and check its JSON: every command sent and
//! acknowledged, no error, and the journal verification passed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

use common::{BIN, Server, field};

impl Server {
    /// Runs `mfi-ledger load` with `args` against this server; it must
    /// succeed. Returns its JSON output.
    fn load(&self, args: &[&str]) -> Value {
        let out = tempfile::tempdir().expect("temp dir");
        let json_path = out.path().join("load.json");
        let mut command = Command::new(BIN);
        if self.token_file.exists() {
            // The echo server takes no credentials.
            command.env("MFI_LEDGER_TOKEN_FILE", &self.token_file);
        }
        let output = command
            .arg("load")
            .args(["--server", &self.url])
            .args(args)
            .arg("--json-out")
            .arg(&json_path)
            .stdin(Stdio::null())
            .output()
            .expect("run mfi-ledger load");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "load {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("commands/s"), "no summary: {stdout}");
        read_json(&json_path)
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON output");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn assert_clean_run(json: &Value, mode: &str, batch_size: u64) {
    assert_eq!(json["mode"], mode, "{json:#}");
    assert_eq!(json["target"], "ledger", "{json:#}");
    assert_eq!(json["clients"], 8, "{json:#}");
    assert_eq!(json["batch_size"], batch_size, "{json:#}");
    assert_eq!(json["commands"], 400, "{json:#}");
    assert_eq!(json["acknowledged"], 400, "{json:#}");
    assert_eq!(json["errors"], 0, "{json:#}");
    assert_eq!(json["verified"], true, "{json:#}");
    let verification = &json["verification"];
    assert_eq!(verification["acknowledged_checked"], 400, "{json:#}");
    assert_eq!(verification["mismatches"], 0, "{json:#}");
    // The branch's cash and each of the 20 savings accounts.
    assert_eq!(verification["balances_checked"], 21, "{json:#}");
    assert_eq!(verification["balance_mismatches"], 0, "{json:#}");
    assert!(json["commands_per_second"].as_f64().unwrap() > 0.0);
    let (p50, p99, p999) = (
        json["p50_ms"].as_f64().unwrap(),
        json["p99_ms"].as_f64().unwrap(),
        json["p999_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{json:#}");
    assert!(json["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn unary_and_batched_loads_are_all_in_the_journal() {
    let server = Server::start();
    let common = ["--clients", "8", "--count", "400", "--setup-loans", "20"];

    let unary = server.load(&[&common[..], &["--mode", "unary"]].concat());
    assert_clean_run(&unary, "unary", 1);
    assert_eq!(unary["calls"], 400);
    assert_eq!(unary["latency_of"], "command");

    // A second run against the same server sets up its own branch.
    let batched = server.load(&[&common[..], &["--mode", "batch", "--batch-size", "50"]].concat());
    assert_clean_run(&batched, "batch", 50);
    assert_eq!(batched["calls"], 8);
    assert_eq!(batched["latency_of"], "batch call");
    assert_ne!(unary["branch_id"], batched["branch_id"]);
}

#[test]
fn duration_bounded_load_verifies() {
    let server = Server::start();
    let json = server.load(&[
        "--clients",
        "4",
        "--duration",
        "500ms",
        "--setup-loans",
        "7",
        "--mode",
        "batch",
        "--batch-size",
        "10",
    ]);
    assert_eq!(json["verified"], true, "{json:#}");
    assert_eq!(json["errors"], 0, "{json:#}");
    assert!(json["commands"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(json["commands"], json["acknowledged"], "{json:#}");
    // The run stops at its duration: no sooner, and not at a count (a run
    // that ignored its duration would go on to the acknowledgement cap, far
    // longer). The upper bound leaves room for the calls in flight at the
    // deadline on a loaded two-core machine.
    let seconds = json["seconds"].as_f64().unwrap();
    assert!((0.5..30.0).contains(&seconds), "{json:#}");
}

#[test]
fn echo_target_skips_setup_and_verification() {
    let server = Server::start_echo();
    for mode in [
        &["--mode", "unary"][..],
        &["--mode", "batch", "--batch-size", "25"][..],
    ] {
        let json = server.load(
            &[
                &["--target", "echo", "--clients", "8", "--count", "400"][..],
                mode,
            ]
            .concat(),
        );
        assert_eq!(json["target"], "echo", "{json:#}");
        assert_eq!(json["commands"], 400, "{json:#}");
        assert_eq!(json["acknowledged"], 400, "{json:#}");
        assert_eq!(json["errors"], 0, "{json:#}");
        assert_eq!(json["verified"], Value::Null, "{json:#}");
        assert_eq!(json["setup"], Value::Null, "{json:#}");
    }
}

#[test]
fn refuses_out_of_bounds_arguments_without_contacting_anyone() {
    // Port 9 (discard) on 127.0.0.1: argument checks come before any connection.
    for args in [
        &["--count", "10", "--clients", "1025"][..],
        &["--count", "10", "--batch-size", "1001"][..],
        &["--count", "0"][..],
        &[][..],
    ] {
        let output = Command::new(BIN)
            .args(["load", "--server", "http://127.0.0.1:9"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mfi-ledger load");
        assert!(!output.status.success(), "{args:?} was accepted");
        assert_eq!(output.status.code(), Some(2), "{args:?}: a usage error");
    }
}

/// `--reader` loops a read on its own connection (and thread) beside the
/// writers, then `--compare-without-reader` runs the writes again without
/// it: the reader's reads all answer, and both runs' writes are verified.
#[test]
fn a_looping_reader_beside_the_writers_reads_and_every_write_is_verified() {
    let server = Server::start();
    let json = server.load(&[
        "--clients",
        "8",
        "--duration",
        "1s",
        "--setup-loans",
        "40",
        "--reader",
        "arrears",
        "--compare-without-reader",
    ]);
    let reader = &json["reader"];
    assert_eq!(reader["read"], "arrears", "{json:#}");
    assert!(reader["reads"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(reader["errors"], 0, "{json:#}");
    assert!(
        json["without_reader"]["p99_ratio"].as_f64().unwrap() > 0.0,
        "{json:#}"
    );
    assert_eq!(json["errors"], 0, "{json:#}");
    assert_eq!(json["verified"], true, "{json:#}");
}

#[test]
fn a_load_stops_soon_after_its_server_does_and_says_why() {
    let mut server = Server::start();
    let mut load = Command::new(BIN)
        .env("MFI_LEDGER_TOKEN_FILE", &server.token_file)
        .args(["load", "--server", &server.url])
        .args(["--clients", "4", "--duration", "10m", "--rate", "300"])
        .args(["--setup-loans", "5", "--mode", "unary"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mfi-ledger load");
    // Let it run: past its setup, commands acknowledged.
    let running = Instant::now();
    loop {
        let info = server.client().arg("info").output().expect("run info");
        let last: u64 = field(&String::from_utf8_lossy(&info.stdout), "last sequence")
            .parse()
            .unwrap_or(0);
        if last > 100 {
            break;
        }
        assert!(
            running.elapsed() < Duration::from_secs(60),
            "the load did not get going"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();
    let stopped = Instant::now();
    while load.try_wait().expect("poll the load").is_none() {
        if stopped.elapsed() > Duration::from_secs(60) {
            let _ = load.kill();
            panic!("the load still runs a minute after its server stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = load.wait_with_output().expect("the load's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("connections in a row") && stderr.contains("the load stops here"),
        "{stderr}"
    );
}

/// `GET /metrics` from `address`: each sample line's name (with labels) and value.
fn scrape(address: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("the metrics");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_metrics_count_what_a_load_sent_and_what_was_refused() {
    let mut server = Server::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let line = server.stdout_line();
    let metrics_address = line
        .strip_prefix("mfi-ledger metrics on ")
        .unwrap_or_else(|| panic!("no metrics address: {line:?}"))
        .to_owned();
    let load = server.load(&[
        "--clients",
        "4",
        "--count",
        "200",
        "--setup-loans",
        "5",
        "--mode",
        "batch",
        "--batch-size",
        "50",
    ]);
    assert_eq!(load["acknowledged"], 200, "{load:#}");
    // One write refused: an account that does not exist.
    let refused = server
        .client()
        .args(["deposit", "LGT-NOPE/C1", "1000", "--date", "2024-01-02"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let info = server.client().arg("info").output().unwrap();
    let entries: f64 = field(&String::from_utf8_lossy(&info.stdout), "last sequence")
        .parse()
        .unwrap();

    let metrics = scrape(&metrics_address);
    let value = |name: &str| {
        metrics
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {metrics:#?}"))
    };
    // Every entry of the journal is a command the ledger acknowledged.
    assert_eq!(value("mfi_ledger_journal_entries"), entries);
    assert_eq!(
        value("mfi_ledger_commands_total{outcome=\"acknowledged\"}"),
        entries
    );
    assert_eq!(
        value("mfi_ledger_commands_refused_total{reason=\"not_found\"}"),
        1.0
    );
    // The load's 4 calls (200 commands in batches of 50), beside its setup's.
    assert_eq!(load["calls"], 4, "{load:#}");
    let batches =
        value("mfi_ledger_requests_total{code=\"OK\",method=\"BranchService/SubmitBatch\"}");
    assert!(batches >= 4.0, "{batches}");
    assert_eq!(
        value(
            "mfi_ledger_requests_total{code=\"NOT_FOUND\",method=\"BranchService/DepositSavings\"}"
        ),
        1.0
    );
    assert_eq!(
        value("mfi_ledger_request_duration_seconds_count{method=\"BranchService/SubmitBatch\"}"),
        batches
    );
    assert!(value("mfi_ledger_barrier_duration_seconds_count") >= 1.0);
    assert_eq!(value("mfi_ledger_batch_entries_sum"), entries);
    assert_eq!(value("mfi_ledger_serving"), 1.0);
    assert_eq!(value("mfi_ledger_read_side_lag_entries"), 0.0);
    // A fresh server, far from writing its journal's index again: the
    // writer holds every entry's request id.
    assert_eq!(value("mfi_ledger_request_ids_in_memory"), entries);
    assert!(value("mfi_ledger_journal_bytes") > 0.0);
}

/// The journal's head as `info --json` gives it: (last sequence, last hash).
/// A child process killed (and reaped) when dropped, so that a failing
/// assertion leaves no server running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The log's verifier key the server at `url` serves (`GetVerifierKey`).
fn served_verifier_key(url: &str, token_file: &Path) -> String {
    let token = std::fs::read_to_string(token_file).expect("read the token");
    common::call_as(url, &token, |channel| async move {
        mfi_ledger::pb::proof_service_client::ProofServiceClient::new(channel)
            .get_verifier_key(mfi_ledger::pb::GetVerifierKeyRequest {})
            .await
            .expect("the verifier key")
            .into_inner()
            .verifier_key
    })
}

fn head(client: Command) -> (u64, String) {
    let mut client = client;
    let out = common::expect_success(
        client.args(["--json", "info"]).output().expect("run info"),
        "info",
    );
    let json: Value = serde_json::from_str(&out).expect("info's JSON");
    (
        json["last_sequence"].as_u64().expect("a sequence"),
        json["last_hash"].as_str().expect("a hash").to_owned(),
    )
}

/// An operator's online backup: taken while 64 clients write, it holds
/// every entry acknowledged before it started, verifies, and a server
/// started on it (read-only, refusing a write; then as the server of
/// record) serves the same head; the writes go on meanwhile and their own
/// end-of-run check passes. A manager without the administrator's role is
/// refused and left with no directory.
#[test]
fn a_backup_taken_under_load_verifies_serves_and_holds_what_was_acknowledged_before_it() {
    let server = Server::start();
    let out = tempfile::tempdir().expect("temp dir");
    let copy = out.path().join("copy");
    let admin_token = server.data_dir().join(common::ADMIN_TOKEN_FILE);
    let refused = common::expect_failure(
        server
            .client()
            .args(["backup", "--to"])
            .arg(out.path().join("refused"))
            .output()
            .expect("run backup"),
        "backup as a manager",
    );
    assert!(refused.contains("PermissionDenied"), "{refused}");
    assert!(!out.path().join("refused").exists());
    std::thread::scope(|scope| {
        let load = scope
            .spawn(|| server.load(&["--clients", "64", "--duration", "5s", "--setup-loans", "64"]));
        // Once the clients write (past the load's setup), note the head:
        // every entry up to it was acknowledged before the backup started.
        let deadline = Instant::now() + Duration::from_secs(60);
        let acknowledged = loop {
            let (sequence, _) = head(server.client());
            if sequence >= 1_000 {
                break sequence;
            }
            assert!(
                Instant::now() < deadline,
                "the load wrote {sequence} entries in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let taken = common::expect_success(
            Command::new(BIN)
                .args(["--server", &server.url, "--json", "backup", "--to"])
                .arg(&copy)
                .env("MFI_LEDGER_TOKEN_FILE", &admin_token)
                .output()
                .expect("run backup"),
            "backup",
        );
        let taken: Value = serde_json::from_str(&taken).expect("backup's JSON");
        assert_eq!(taken["verified"], true, "{taken:#}");
        // Written beside it, and renamed into place once verified.
        assert!(copy.join("journal.log").exists());
        assert!(!out.path().join(".copy.partial").exists());
        let backed_up = taken["head_sequence"].as_u64().expect("a head");
        let backed_up_hash = taken["head_hash"].as_str().expect("a hash").to_owned();
        assert!(
            backed_up >= acknowledged,
            "the backup holds entries up to {backed_up}, not all {acknowledged} acknowledged before it"
        );
        let (after, _) = head(server.client());
        assert!(
            after > backed_up,
            "the writes went on while the backup was taken"
        );
        let json = load.join().expect("the load");
        assert_eq!(json["errors"], 0, "{json:#}");
        assert_eq!(json["verified"], true, "{json:#}");

        // The original's entry at the backup's head is the one the copy ends with.
        let entry = common::expect_success(
            server
                .client()
                .args(["--json", "journal", "--limit", "1", "--from"])
                .arg(backed_up.to_string())
                .output()
                .expect("run journal"),
            "journal",
        );
        assert!(entry.contains(&backed_up_hash), "{entry}");

        // `verify` passes on the copy, and a server started on it serves
        // the same head, with the same credentials.
        let verified = common::expect_success(
            Command::new(BIN)
                .args(["verify", "--data"])
                .arg(&copy)
                .output()
                .expect("run verify"),
            "verify the copy",
        );
        assert!(verified.contains(&backed_up_hash), "{verified}");
        // Served read-only (an auditor's copy, handed over without the
        // log's private key): the same head and the log's verifier key; a
        // write is refused and changes nothing.
        let private_key = copy.join(mfi_ledger::checkpoint::keys::LOG_KEY_FILE);
        let kept_key = out.path().join("log.key");
        std::fs::rename(&private_key, &kept_key).expect("set the private key aside");
        let mut read_only = KillOnDrop(
            Command::new(BIN)
                .args(["serve", "--read-only", "--listen", "127.0.0.1:0", "--data"])
                .arg(&copy)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("serve the copy read-only"),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(read_only.0.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the read-only server's first line");
        let url = format!(
            "http://{}",
            line.trim()
                .strip_prefix("mfi-ledger listening on ")
                .unwrap_or_else(|| panic!("not listening: {line}"))
        );
        let on_copy = || {
            let mut client = Command::new(BIN);
            client.args(["--server", &url]).env(
                "MFI_LEDGER_TOKEN_FILE",
                server.data_dir().join("tester.token"),
            );
            client
        };
        assert_eq!(head(on_copy()), (backed_up, backed_up_hash.clone()));
        assert_eq!(
            served_verifier_key(&url, &server.data_dir().join("tester.token")),
            std::fs::read_to_string(copy.join("log.pub"))
                .expect("the copy's log.pub")
                .trim(),
            "the read-only copy serves the verifier key of log.pub"
        );
        let refused = common::expect_failure(
            on_copy()
                .args(["deposit", "LOAD-0001/C1", "1000"])
                .output()
                .expect("run deposit"),
            "a deposit on the read-only copy",
        );
        assert!(
            refused.contains("FailedPrecondition") && refused.contains("read-only"),
            "{refused}"
        );
        assert_eq!(head(on_copy()).0, backed_up);
        drop(read_only);
        std::fs::rename(&kept_key, &private_key).expect("put the private key back");
        for token in [common::ADMIN_TOKEN_FILE, "tester.token"] {
            std::fs::copy(server.data_dir().join(token), copy.join(token)).expect("copy a token");
        }
        let restored = common::ServerOn::start(&copy).expect("a server on the copy");
        assert_eq!(head(restored.client()), (backed_up, backed_up_hash));
        restored.stop();
    });
}
