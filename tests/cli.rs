//! The client commands end to end: each test starts the real server on a
//! free port with a fresh data directory, runs the same binary's client
//! commands against it, and checks what a clerk or an auditor sees.
//!
//! The walk-through's figures, worked out by hand: a flat loan of 1,000,000
//! VND at 12% a year over 2 monthly installments charges
//! 1,000,000 × 12% × 2/12 = 20,000 interest, so each installment is 500,000
//! principal + 10,000 interest = 510,000. After a 50,000 deposit, the
//! disbursement and the first installment repaid, cash holds
//! 50,000 − 1,000,000 + 510,000 = −440,000, the loan 500,000 and interest
//! income 10,000. Compulsory savings must keep 5% of 500,000 = 25,000.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;

use common::{BIN, Server};

impl Server {
    /// Runs a client command against this server.
    fn run(&self, args: &[&str]) -> Output {
        client(&self.url, args)
    }

    /// Runs a client command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs a client command with `--json` that must succeed; returns the parsed JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let stdout = self.ok(&with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    /// Runs a client command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "{args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

fn client(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--server")
        .arg(url)
        .args(args)
        .env("MFI_LEDGER_ACTOR", "hoa.clerk")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run the client")
}

/// The value of the line "name: value" in a command's text output.
fn field(stdout: &str, name: &str) -> String {
    let prefix = format!("{name}:");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no field {name:?} in:\n{stdout}"))
        .trim()
        .to_owned()
}

/// The cells of the table row whose first cell is `first`.
fn row(stdout: &str, first: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            line.trim_matches('│')
                .split('┆')
                .map(|cell| cell.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|cell| cell == first))
        .unwrap_or_else(|| panic!("no row starting {first:?} in:\n{stdout}"))
}

/// Branch TB, center C1, group G1, member TB-0001 with compulsory savings
/// TB-0001/C1 holding 50,000, loan TB-0001/L1 of 1,000,000 with its first
/// installment repaid: entries 1 to 8.
fn set_up_borrower(server: &Server) {
    server.ok(&[
        "branch-create",
        "TB",
        "--name",
        "TYM - Chi nhánh Thái Bình",
        "--opened-on",
        "2024-01-01",
    ]);
    server.ok(&[
        "center-create",
        "C1",
        "--branch",
        "TB",
        "--name",
        "Trung tâm 1",
        "--opened-on",
        "2024-01-01",
    ]);
    server.ok(&[
        "group-create",
        "G1",
        "--center",
        "C1",
        "--name",
        "Nhóm 1",
        "--opened-on",
        "2024-01-01",
    ]);
    server.ok(&[
        "register",
        "TB-0001",
        "--name",
        "Nguyễn Thị Hoa",
        "--group",
        "G1",
        "--joined-on",
        "2024-01-02",
    ]);
    let opened = server.ok(&[
        "open-savings",
        "TB-0001",
        "--kind",
        "compulsory",
        "--opened-on",
        "2024-01-02",
    ]);
    assert_eq!(field(&opened, "account id"), "TB-0001/C1");
    let deposited = server.ok(&["deposit", "TB-0001/C1", "50000", "--date", "2024-01-03"]);
    assert_eq!(field(&deposited, "balance"), "50,000 VND");
    disburse(server);
    repay_first_installment(server);
}

fn disburse(server: &Server) {
    let out = server.ok(&[
        "disburse",
        "TB-0001",
        "--principal",
        "1000000",
        "--rate",
        "12",
        "--method",
        "flat",
        "--installments",
        "2",
        "--frequency",
        "monthly",
        "--first-repayment",
        "2024-02-05",
        "--date",
        "2024-01-05",
    ]);
    assert_eq!(field(&out, "sequence"), "7");
    assert_eq!(field(&out, "effective date"), "2024-01-05");
    assert_eq!(field(&out, "hash").len(), 16);
    assert_eq!(field(&out, "loan id"), "TB-0001/L1");
    assert_eq!(
        row(&out, "1"),
        ["1", "2024-02-05", "500,000", "10,000", "510,000"]
    );
    assert_eq!(
        row(&out, "2"),
        ["2", "2024-03-05", "500,000", "10,000", "510,000"]
    );
}

fn repay_first_installment(server: &Server) {
    let out = server.ok(&["repay", "TB-0001/L1", "510000", "--date", "2024-02-05"]);
    assert_eq!(field(&out, "sequence"), "8");
    assert_eq!(field(&out, "interest paid"), "10,000 VND");
    assert_eq!(field(&out, "principal paid"), "500,000 VND");
    assert_eq!(field(&out, "principal outstanding"), "500,000 VND");
    assert_eq!(field(&out, "closed"), "no");
}

#[test]
fn walk_through_shows_the_figures_a_clerk_expects() {
    let server = Server::start();
    set_up_borrower(&server);

    for (account, balance) in [
        ("cash:TB", "-440,000 VND"),
        ("savings:TB-0001/C1", "50,000 VND"),
        ("loan:TB-0001/L1", "500,000 VND"),
        ("interest-income:TB", "10,000 VND"),
    ] {
        let out = server.ok(&["balance", account]);
        assert_eq!(field(&out, "balance"), balance, "{account}");
        assert_eq!(field(&out, "as of entry"), "8");
    }

    let member = server.ok(&["member", "TB-0001"]);
    assert_eq!(field(&member, "name"), "Nguyễn Thị Hoa");
    assert_eq!(field(&member, "branch"), "TB");
    assert_eq!(
        row(&member, "TB-0001/C1"),
        ["TB-0001/C1", "COMPULSORY", "2024-01-02", "50,000", "25,000"]
    );
    assert_eq!(
        row(&member, "TB-0001/L1"),
        ["TB-0001/L1", "ACTIVE", "2024-01-05", "1,000,000", "500,000"]
    );

    let loan = server.ok(&["loan", "TB-0001/L1", "--as-of", "2024-03-10"]);
    assert_eq!(field(&loan, "status"), "ACTIVE");
    assert_eq!(field(&loan, "method"), "FLAT");
    assert_eq!(field(&loan, "principal outstanding"), "500,000 VND");
    assert_eq!(field(&loan, "interest outstanding"), "10,000 VND");
    assert_eq!(field(&loan, "principal overdue"), "500,000 VND");
    assert_eq!(field(&loan, "interest overdue"), "10,000 VND");
    let paid = ["500,000", "10,000", "510,000", "500,000", "10,000", "PAID"];
    assert_eq!(row(&loan, "1")[2..], paid);
    let overdue = ["500,000", "10,000", "510,000", "0", "0", "OVERDUE"];
    assert_eq!(row(&loan, "2")[2..], overdue);

    let totals = server.ok(&["totals", "TB", "--year", "2024"]);
    assert!(totals.contains("2024-01-01 to 2024-12-31"), "{totals}");
    assert!(totals.contains("2023-01-01 to 2023-12-31"), "{totals}");
    let figures = [
        ("loans disbursed", "1"),
        ("amount disbursed", "1,000,000"),
        ("principal collected", "500,000"),
        ("interest collected", "10,000"),
        ("savings balance (end)", "50,000"),
        ("borrowers (end)", "1"),
        ("portfolio outstanding (end)", "500,000"),
    ];
    for (name, value) in figures {
        // Nothing happened in 2023, so the change is the current figure.
        assert_eq!(row(&totals, name)[1..], [value, "0", value], "{name}");
    }
    let percent = row(&totals, "borrowers with savings %");
    assert_eq!(percent[1..3], ["100.00", "0.00"]);

    let journal = server.ok(&["journal"]);
    assert!(!journal.contains("more entries follow"), "{journal}");
    assert_eq!(row(&journal, "6")[4], "Dr cash:TB 50,000");
    assert_eq!(row(&journal, "7")[4], "Dr loan:TB-0001/L1 1,000,000");
    assert_eq!(row(&journal, "8")[2], "record_repayment");
    for line in ["Cr loan:TB-0001/L1 500,000", "Cr interest-income:TB 10,000"] {
        assert!(journal.contains(line), "{line} missing from:\n{journal}");
    }

    let info = server.ok(&["info"]);
    assert_eq!(field(&info, "last sequence"), "8");
    let last_hash = field(&info, "last hash");
    assert_eq!(last_hash.len(), 64);
    assert!(last_hash.starts_with(&row(&journal, "8")[5]));
}

#[test]
fn journal_pages_from_a_sequence_up_to_the_limit() {
    let server = Server::start();
    set_up_borrower(&server);

    let page = server.ok(&["journal", "--from", "3", "--limit", "2"]);
    assert_eq!(row(&page, "3")[2], "create_group");
    assert_eq!(row(&page, "4")[2], "register_member");
    assert!(!page.contains("│   5 ┆"), "{page}");
    assert!(
        page.contains("more entries follow: journal --from 5"),
        "{page}"
    );

    let json = server.json(&["journal", "--from", "7"]);
    let entries = json["entries"].as_array().expect("entries");
    let sequences: Vec<u64> = entries
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, [7, 8]);
    assert_eq!(json["next_sequence"], Value::Null);
    assert_eq!(entries[0]["actor"], "hoa.clerk");
    assert_eq!(entries[1]["previous_hash"], entries[0]["hash"]);
    let postings = entries[1]["postings"].as_array().expect("postings");
    assert_eq!(postings[0]["side"], "DEBIT");
    assert_eq!(postings[0]["account"], "cash:TB");
    assert_eq!(postings[0]["amount"]["amount"], "510000");
}

#[test]
fn json_output_is_exact_and_names_enums() {
    let server = Server::start();
    set_up_borrower(&server);

    let deposit = server.json(&[
        "deposit",
        "TB-0001/C1",
        "10000",
        "--date",
        "2024-02-06",
        "--request-id",
        "dep-json-1",
    ]);
    assert_eq!(deposit["request_id"], "dep-json-1");
    assert_eq!(deposit["receipt"]["sequence"], 9);
    assert_eq!(deposit["receipt"]["effective_date"], "2024-02-06");
    assert_eq!(deposit["receipt"]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(deposit["balance"]["amount"], "60000");
    assert_eq!(deposit["balance"]["currency"], "VND");

    let balance = server.json(&["balance", "cash:TB"]);
    assert_eq!(balance["kind"], "ASSET");
    assert_eq!(balance["balance"]["amount"], "-430000");
    assert_eq!(balance["as_of_sequence"], 9);

    let member = server.json(&["member", "TB-0001"]);
    assert_eq!(member["full_name"], "Nguyễn Thị Hoa");
    let savings = &member["savings_accounts"][0];
    assert_eq!(savings["kind"], "COMPULSORY");
    assert_eq!(savings["required_minimum"]["amount"], "25000");
    assert_eq!(member["loans"][0]["status"], "ACTIVE");

    let loan = server.json(&["loan", "TB-0001/L1", "--as-of", "2024-03-10"]);
    assert_eq!(loan["terms"]["interest_method"], "FLAT");
    assert_eq!(loan["terms"]["repayment_frequency"], "MONTHLY");
    assert_eq!(loan["terms"]["principal"]["amount"], "1000000");
    assert_eq!(loan["schedule"][0]["status"], "PAID");
    assert_eq!(loan["schedule"][1]["status"], "OVERDUE");
    assert_eq!(loan["principal_overdue"]["amount"], "500000");

    let closing = server.json(&["repay", "TB-0001/L1", "510000", "--date", "2024-03-10"]);
    assert_eq!(closing["interest_paid"]["amount"], "10000");
    assert_eq!(closing["principal_paid"]["amount"], "500000");
    assert_eq!(closing["principal_outstanding"]["amount"], "0");
    assert_eq!(closing["loan_closed"], true);

    let totals = server.json(&["totals", "TB", "--from", "2024-01-01", "--to", "2024-12-31"]);
    assert_eq!(totals["current"]["loans_disbursed"], 1);
    assert_eq!(
        totals["current"]["principal_collected"]["amount"],
        "1000000"
    );
    assert_eq!(totals["current"]["interest_collected"]["amount"], "20000");
    assert_eq!(totals["current"]["portfolio_outstanding"]["amount"], "0");
    assert_eq!(totals["previous"]["to_date"], "2023-12-31");

    let info = server.json(&["info"]);
    assert_eq!(info["last_sequence"], 10);
    assert_eq!(info["last_hash"], closing["receipt"]["hash"]);
}

#[test]
fn refused_withdrawal_fails_with_the_field_and_the_request_id() {
    let server = Server::start();
    set_up_borrower(&server);

    let stderr = server.fails(&[
        "withdraw",
        "TB-0001/C1",
        "60000",
        "--date",
        "2024-02-06",
        "--request-id",
        "wd-too-much",
    ]);
    assert!(
        stderr.starts_with("error: FailedPrecondition: amount: "),
        "{stderr}"
    );
    assert!(stderr.contains("request id: wd-too-much"), "{stderr}");
    assert!(stderr.contains("--request-id wd-too-much"), "{stderr}");

    // 50,000 - 30,000 would leave less than the 25,000 the loan requires.
    let stderr = server.fails(&["withdraw", "TB-0001/C1", "30000", "--date", "2024-02-06"]);
    assert!(stderr.contains("FailedPrecondition: amount: "), "{stderr}");
    assert!(stderr.contains("25000"), "{stderr}");
    let request_id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("request id: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no request id in {stderr}"));
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");

    let stderr = server.fails(&["deposit", "TB-0001/C1", "1,000", "--date", "2024-02-06"]);
    assert!(
        stderr.contains("InvalidArgument: amount.amount"),
        "{stderr}"
    );

    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "8");
    let stderr = server.fails(&["balance", "savings:TB-0009/C1"]);
    assert!(stderr.starts_with("error: NotFound: "), "{stderr}");
}

#[test]
fn retrying_a_write_with_its_request_id_applies_it_once() {
    let server = Server::start();
    set_up_borrower(&server);
    let deposit = [
        "deposit",
        "TB-0001/C1",
        "10000",
        "--date",
        "2024-02-06",
        "--request-id",
        "dep-retry-1",
    ];
    let first = server.ok(&deposit);
    let second = server.ok(&deposit);
    assert_eq!(first, second);
    assert_eq!(field(&first, "balance"), "60,000 VND");
    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "9");

    let mut changed = deposit;
    changed[2] = "20000";
    let stderr = server.fails(&changed);
    assert!(stderr.contains("AlreadyExists"), "{stderr}");
}

#[test]
fn reversing_a_repayment_restores_the_loan() {
    let server = Server::start();
    set_up_borrower(&server);
    let out = server.ok(&["reverse", "8", "--reason", "entered on the wrong loan"]);
    assert_eq!(field(&out, "sequence"), "9");
    assert_eq!(field(&out, "effective date"), "2024-02-05");
    assert_eq!(field(&out, "reverses"), "entry 8");
    let loan = server.ok(&["balance", "loan:TB-0001/L1"]);
    assert_eq!(field(&loan, "balance"), "1,000,000 VND");
    let stderr = server.fails(&["reverse", "8", "--reason", "again"]);
    assert!(
        stderr.contains("FailedPrecondition: sequence: "),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_is_a_plain_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let output = client(&format!("http://127.0.0.1:{port}"), &["info"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot connect to the ledger at "),
        "{stderr}"
    );
}

#[test]
fn totals_needs_exactly_one_period() {
    for args in [
        &["totals", "TB"][..],
        &["totals", "TB", "--year", "2024", "--month", "2024-01"],
        &["totals", "TB", "--from", "2024-01-01"],
    ] {
        let output = client("http://127.0.0.1:9", args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
