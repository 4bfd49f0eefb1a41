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

use crate::common;

use common::{BIN, Server, expect_failure, expect_success, field, row};

impl Server {
    /// Runs a client command against this server.
    fn run(&self, args: &[&str]) -> Output {
        self.client()
            .args(args)
            .env("MFI_LEDGER_ACTOR", "hoa.clerk")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }

    /// Approves pending request `request` as `checker`, a second manager;
    /// returns the output.
    fn approve(&self, request: &str) -> String {
        let output = self
            .client()
            .args(["approve", request])
            .env("MFI_LEDGER_TOKEN_FILE", self.approver_token_file())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client");
        expect_success(output, &format!("approve {request}"))
    }

    /// Runs a client command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        expect_success(self.run(args), &format!("{args:?}"))
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
        expect_failure(self.run(args), &format!("{args:?}"))
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
    assert_eq!(field(&out, "sequence"), "9");
    assert_eq!(field(&out, "effective date"), "2024-01-05");
    assert_eq!(field(&out, "hash").len(), 16);
    assert_eq!(field(&out, "loan id"), "TB-0001/L1");
    assert_eq!(field(&out, "product"), "none (terms outside the catalogue)");
    assert_eq!(field(&out, "paid out"), "1,000,000 VND");
    assert_eq!(
        row(&out, "1"),
        [
            "1",
            "2024-02-05",
            "500,000",
            "10,000",
            "0",
            "510,000",
            "500,000"
        ]
    );
    assert_eq!(
        row(&out, "2"),
        ["2", "2024-03-05", "500,000", "10,000", "0", "510,000", "0"]
    );
}

fn repay_first_installment(server: &Server) {
    let out = server.ok(&["repay", "TB-0001/L1", "510000", "--date", "2024-02-05"]);
    assert_eq!(field(&out, "sequence"), "10");
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
        assert_eq!(field(&out, "as of entry"), "10");
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
    // She holds her minimum: nothing to explain.
    assert!(!member.contains("short of"), "{member}");

    let loan = server.ok(&["loan", "TB-0001/L1", "--as-of", "2024-03-10"]);
    assert_eq!(field(&loan, "status"), "ACTIVE");
    assert_eq!(field(&loan, "method"), "FLAT");
    assert_eq!(field(&loan, "principal outstanding"), "500,000 VND");
    assert_eq!(field(&loan, "interest outstanding"), "10,000 VND");
    assert_eq!(field(&loan, "principal overdue"), "500,000 VND");
    assert_eq!(field(&loan, "interest overdue"), "10,000 VND");
    assert_eq!(field(&loan, "in arrears"), "yes");
    assert_eq!(field(&loan, "days in arrears"), "5");
    // Payoff on 2024-03-10, after the last due date: all that is left.
    assert_eq!(field(&loan, "payoff amount"), "510,000 VND");
    let paid = [
        "500,000", "10,000", "0", "510,000", "500,000", "10,000", "0", "PAID",
    ];
    assert_eq!(row(&loan, "1")[2..], paid);
    let overdue = [
        "500,000", "10,000", "0", "510,000", "0", "0", "0", "OVERDUE",
    ];
    assert_eq!(row(&loan, "2")[2..], overdue);
    // The schedule's columns added up: the principal lent, the interest it
    // costs, and what was paid of each.
    let total = [
        "1,000,000",
        "20,000",
        "0",
        "1,020,000",
        "500,000",
        "10,000",
        "0",
        "",
    ];
    assert_eq!(row(&loan, "total")[2..], total);

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
    let percent = row(&totals, "borrowers with savings > 0 %");
    assert_eq!(percent[1..3], ["100.00", "0.00"]);

    let journal = server.ok(&["journal"]);
    assert!(!journal.contains("more entries follow"), "{journal}");
    assert_eq!(row(&journal, "8")[4], "Dr cash:TB 50,000");
    assert_eq!(row(&journal, "9")[4], "Dr loan:TB-0001/L1 1,000,000");
    assert_eq!(row(&journal, "10")[2], "record_repayment");
    // The descriptions group digits like the postings beside them.
    assert_eq!(
        row(&journal, "8")[3],
        "deposit of 50,000 VND into TB-0001/C1"
    );
    assert_eq!(
        row(&journal, "9")[3],
        "loan TB-0001/L1 of 1,000,000 VND disbursed to TB-0001 over 2 installments"
    );
    assert_eq!(
        row(&journal, "10")[3],
        "repayment of 510,000 VND on loan TB-0001/L1"
    );
    for line in ["Cr loan:TB-0001/L1 500,000", "Cr interest-income:TB 10,000"] {
        assert!(journal.contains(line), "{line} missing from:\n{journal}");
    }

    let info = server.ok(&["info"]);
    assert_eq!(field(&info, "last sequence"), "10");
    let last_hash = field(&info, "last hash");
    assert_eq!(last_hash.len(), 64);
    assert!(last_hash.starts_with(&row(&journal, "10")[5]));
}

#[test]
fn a_member_short_of_her_compulsory_minimum_is_told_why() {
    let server = Server::start();
    set_up_borrower(&server);
    // A second loan of 1,000,000 beside the 500,000 left of the first: 5% of
    // 1,500,000 = 75,000 required, against the 50,000 she holds.
    server.ok(&[
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
        "2024-03-06",
        "--date",
        "2024-02-06",
    ]);
    let member = server.ok(&["member", "TB-0001"]);
    assert_eq!(
        row(&member, "TB-0001/C1")[3..],
        ["50,000", "75,000"],
        "{member}"
    );
    assert!(
        member.contains(
            "TB-0001/C1 is 25,000 VND short of its required minimum of 75,000 VND: the \
             compulsory savings her active loans TB-0001/L1, TB-0001/L2 require while \
             outstanding. Nothing can be withdrawn from it until deposits make up the 25,000 VND."
        ),
        "{member}"
    );
    let json = server.json(&["member", "TB-0001"]);
    let account = &json["savings_accounts"][0];
    assert_eq!(account["shortfall"]["amount"], "25000");
    assert_eq!(account["required_by_loans"][1], "TB-0001/L2");
}

#[test]
fn journal_pages_from_a_sequence_up_to_the_limit() {
    let server = Server::start();
    set_up_borrower(&server);

    let page = server.ok(&["journal", "--from", "5", "--limit", "2"]);
    assert_eq!(row(&page, "5")[2], "create_group");
    assert_eq!(row(&page, "6")[2], "register_member");
    assert!(!page.contains("│   7 ┆"), "{page}");
    assert!(
        page.contains("more entries follow: journal --from 7"),
        "{page}"
    );

    let json = server.json(&["journal", "--from", "9"]);
    let entries = json["entries"].as_array().expect("entries");
    let sequences: Vec<u64> = entries
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, [9, 10]);
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
    assert_eq!(deposit["receipt"]["sequence"], 11);
    assert_eq!(deposit["receipt"]["effective_date"], "2024-02-06");
    assert_eq!(deposit["receipt"]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(deposit["balance"]["amount"], "60000");
    assert_eq!(deposit["balance"]["currency"], "VND");

    let balance = server.json(&["balance", "cash:TB"]);
    assert_eq!(balance["kind"], "ASSET");
    assert_eq!(balance["balance"]["amount"], "-430000");
    assert_eq!(balance["as_of_sequence"], 11);

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
    assert_eq!(info["last_sequence"], 12);
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
    // Refused: nothing to retry, and nothing says a retry is the way.
    assert!(
        stderr.contains("request id: wd-too-much (refused: nothing was written)"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "{stderr}");

    // 50,000 - 30,000 would leave less than the 25,000 the loan requires.
    let stderr = server.fails(&["withdraw", "TB-0001/C1", "30000", "--date", "2024-02-06"]);
    assert!(stderr.contains("FailedPrecondition: amount: "), "{stderr}");
    assert!(stderr.contains("below the 25,000 VND required"), "{stderr}");
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

    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "10");
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
    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "11");

    let mut changed = deposit;
    changed[2] = "20000";
    let stderr = server.fails(&changed);
    assert!(stderr.contains("AlreadyExists"), "{stderr}");
    assert!(stderr.contains("use a new request id"), "{stderr}");
    assert!(
        !stderr.contains("retrying"),
        "one advice, not two: {stderr}"
    );
}

#[test]
fn a_second_server_on_a_data_directory_in_use_says_why_once() {
    let server = Server::start();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(server.data_dir())
        .env("RUST_LOG", "off")
        .output()
        .expect("run a second server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is another mfi-ledger using this data directory?"),
        "{stderr}"
    );
    // The OS's reason, once (it used to follow its own quotation).
    let reason = std::io::Error::from(std::io::ErrorKind::WouldBlock).to_string();
    assert_eq!(stderr.matches(reason.as_str()).count(), 1, "{stderr}");
}

#[test]
fn reversing_a_repayment_restores_the_loan() {
    let server = Server::start();
    set_up_borrower(&server);
    // A reversal waits for a second manager's approval (maker-checker).
    let out = server.ok(&["reverse", "10", "--reason", "entered on the wrong loan"]);
    assert_eq!(field(&out, "request"), "11");
    assert_eq!(field(&out, "status"), "waiting for a manager's approval");
    let loan = server.ok(&["balance", "loan:TB-0001/L1"]);
    assert_eq!(field(&loan, "balance"), "500,000 VND");
    // Entry 12 creates the approving manager; 13 is the reversal in effect.
    let out = server.approve("11");
    assert_eq!(field(&out, "sequence"), "13");
    assert_eq!(field(&out, "effective date"), "2024-02-05");
    let loan = server.ok(&["balance", "loan:TB-0001/L1"]);
    assert_eq!(field(&loan, "balance"), "1,000,000 VND");
    let stderr = server.fails(&["reverse", "10", "--reason", "again"]);
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

/// The product of the catalogue tests, worked out by hand.
///
/// GENERAL lends flat at 24% a year over 10 fortnightly installments, each
/// rounded to a multiple of 1,000, with a 1% fee taken at disbursement and
/// a 20,000 card fee due with the first installment. On 10,000,000:
/// - total interest 10,000,000 × 24% × 10/26 = 923,076.92, rounded to
///   923,077; each installment's share 92,307.7 rounds to 92,000, and the
///   last takes the rest: 923,077 − 9 × 92,000 = 95,077;
/// - principal 1,000,000 an installment, so installment 1 is
///   1,000,000 + 92,000 + 20,000 = 1,112,000, installments 2 to 9 are
///   1,092,000 and installment 10 is 1,095,077;
/// - repaid in all 10,000,000 + 923,077 + 20,000 = 10,943,077;
/// - the fee at disbursement is 100,000, so 9,900,000 is paid out.
///
/// On 5,000,000: interest 461,538.46 → 461,538, shares 46,153.8 → 46,000
/// (the last 461,538 − 9 × 46,000 = 47,538), principal 500,000, installment
/// 1 = 500,000 + 46,000 + 20,000 = 566,000, later ones 546,000; fee at
/// disbursement 50,000.
const GENERAL: &[&str] = &[
    "product-create",
    "GENERAL",
    "--effective-from",
    "2024-01-01",
    "--name",
    "General loan",
    "--principal-min",
    "1000000",
    "--principal-max",
    "50000000",
    "--rate",
    "24",
    "--method",
    "flat",
    "--frequency",
    "fortnightly",
    "--installments",
    "10",
    "--rounding",
    "1000",
    "--fee",
    "disbursement:1%",
    "--fee",
    "card:20000:with-first-installment",
    "--compulsory-percent",
    "5",
];

/// Branch TB, center C1, group G1 and product GENERAL (entries 1 to 4);
/// members TB-0001 (600,000 in compulsory savings TB-0001/C1) and TB-0002
/// (300,000 in TB-0002/C1), entries 5 to 10; then TB-0001/L1 of 10,000,000
/// and TB-0002/L1 of 5,000,000 under GENERAL on 2024-01-05, first
/// repayment 2024-01-19: entries 11 and 12.
fn set_up_product_loans(server: &Server) {
    let opened = "--opened-on=2024-01-01";
    for args in [
        &["branch-create", "TB", "--name", "TB", opened][..],
        &[
            "center-create",
            "C1",
            "--branch",
            "TB",
            "--name",
            "C1",
            opened,
        ],
        &[
            "group-create",
            "G1",
            "--center",
            "C1",
            "--name",
            "G1",
            opened,
        ],
    ] {
        server.ok(args);
    }
    let created = server.ok(GENERAL);
    assert_eq!(field(&created, "version"), "1");
    for (member, deposit) in [("TB-0001", "600000"), ("TB-0002", "300000")] {
        let joined = "--joined-on=2024-01-02";
        server.ok(&[
            "register", member, "--name", member, "--group", "G1", joined,
        ]);
        let opened = "--opened-on=2024-01-02";
        server.ok(&["open-savings", member, "--kind", "compulsory", opened]);
        let account = format!("{member}/C1");
        server.ok(&["deposit", &account, deposit, "--date", "2024-01-03"]);
    }
    let disbursements = [
        ("TB-0001", "10000000", "100,000 VND", "9,900,000 VND"),
        ("TB-0002", "5000000", "50,000 VND", "4,950,000 VND"),
    ];
    for (member, principal, fees, paid_out) in disbursements {
        let out = server.ok(&[
            "disburse",
            member,
            "--product",
            "GENERAL",
            "--principal",
            principal,
            "--first-repayment",
            "2024-01-19",
            "--date",
            "2024-01-05",
        ]);
        assert_eq!(field(&out, "loan id"), format!("{member}/L1"));
        assert_eq!(field(&out, "product"), "GENERAL version 1");
        assert_eq!(field(&out, "fees at disbursement"), fees);
        assert_eq!(field(&out, "paid out"), paid_out);
    }
}

#[test]
fn a_product_previews_the_schedule_worked_out_by_hand() {
    let server = Server::start();
    server.ok(&[
        "branch-create",
        "TB",
        "--name",
        "TB",
        "--opened-on",
        "2024-01-01",
    ]);
    let missing = server.fails(&["product-create", "P", "--name", "P", "--method", "flat"]);
    assert!(
        missing.contains("needs --principal-min, --principal-max, --rate"),
        "{missing}"
    );
    let created = server.ok(GENERAL);
    assert_eq!(field(&created, "sequence"), "4");
    assert_eq!(field(&created, "version"), "1");

    let preview = [
        "preview",
        "GENERAL",
        "--principal",
        "10000000",
        "--date",
        "2024-01-05",
        "--first-repayment",
        "2024-01-19",
    ];
    let out = server.ok(&preview);
    let first = [
        "1",
        "2024-01-19",
        "1,000,000",
        "92,000",
        "20,000",
        "1,112,000",
        "9,000,000",
    ];
    assert_eq!(row(&out, "1"), first);
    assert_eq!(row(&out, "2")[3..6], ["92,000", "0", "1,092,000"]);
    let last = [
        "10",
        "2024-05-24",
        "1,000,000",
        "95,077",
        "0",
        "1,095,077",
        "0",
    ];
    assert_eq!(row(&out, "10"), last);
    let total = ["10,000,000", "923,077", "20,000", "10,943,077"];
    assert_eq!(row(&out, "total")[2..6], total);
    assert_eq!(field(&out, "fees at disbursement"), "100,000 VND");
    // The card fee comes with the first installment, the 1% off the money
    // paid out: 20,000 + 100,000.
    assert_eq!(field(&out, "fees with installments"), "20,000 VND");
    assert_eq!(field(&out, "fees in all"), "120,000 VND");
    assert_eq!(field(&out, "paid out"), "9,900,000 VND");
    let json = server.json(&preview);
    assert_eq!(json["fees_in_all"]["amount"], "120000");
    assert_eq!(json["version"], 1);
    assert_eq!(json["total_interest"]["amount"], "923077");
    assert_eq!(json["schedule"][9]["interest"]["amount"], "95077");
    assert_eq!(json["schedule"][0]["fee"]["amount"], "20000");
    assert_eq!(json["schedule"][0]["balance_after"]["amount"], "9000000");
    assert_eq!(json["paid_out"]["amount"], "9900000");
    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "4");

    // A new version changes only what is given; the first stays as it was.
    let updated = server.ok(&[
        "product-update",
        "GENERAL",
        "--effective-from",
        "2024-02-01",
        "--rate-min",
        "20",
        "--rate-max",
        "26",
        "--tolerance-days",
        "7",
        "--tolerance-amount",
        "5000",
        "--grace-principal",
        "1",
    ]);
    assert_eq!(field(&updated, "version"), "2");
    let latest = server.ok(&["product", "GENERAL"]);
    assert_eq!(field(&latest, "version"), "2 of 2");
    assert_eq!(field(&latest, "interest rate"), "20% to 26% a year");
    assert_eq!(field(&latest, "installments"), "10");
    assert_eq!(
        field(&latest, "fees"),
        "disbursement 1% at disbursement; card 20,000 VND with first installment"
    );
    // Every figure says what it counts.
    assert_eq!(
        field(&latest, "rounding"),
        "multiple of 1,000 VND, HALF_EVEN"
    );
    assert_eq!(
        field(&latest, "grace"),
        "1 installment on principal, 0 installments on interest"
    );
    assert_eq!(
        field(&latest, "arrears tolerance"),
        "7 days late, or 5,000 VND overdue"
    );
    let first_version = server.json(&["product", "GENERAL", "--version", "1"]);
    assert_eq!(first_version["rules"]["rate_max_percent"], "24");
    assert_eq!(first_version["rules"]["rounding_multiple"], "1000");
    assert_eq!(
        first_version["rules"]["fees"][1]["collection"],
        "WITH_FIRST_INSTALLMENT"
    );
    let products = server.ok(&["products"]);
    assert_eq!(row(&products, "GENERAL")[1..3], ["2", "General loan"]);

    // Loans from 1 February are under version 2, whose rate is a range.
    let stderr = server.fails(&[
        "preview",
        "GENERAL",
        "--principal",
        "10000000",
        "--date",
        "2024-02-05",
        "--first-repayment",
        "2024-02-19",
    ]);
    assert!(stderr.contains("rate"), "two rates need --rate: {stderr}");
}

#[test]
fn disburse_takes_a_product_or_terms_in_full() {
    for args in [
        // Terms outside the catalogue need the method and the frequency...
        &[
            "disburse",
            "M",
            "--principal",
            "1",
            "--rate",
            "1",
            "--installments",
            "1",
            "--first-repayment",
            "2024-01-01",
        ][..],
        // ...which a product sets itself.
        &[
            "disburse",
            "M",
            "--product",
            "P",
            "--principal",
            "1",
            "--method",
            "flat",
            "--first-repayment",
            "2024-01-01",
        ],
        &[
            "disburse",
            "M",
            "--product",
            "P",
            "--principal",
            "1",
            "--rounding",
            "1000",
            "--first-repayment",
            "2024-01-01",
        ],
    ] {
        let output = client("http://127.0.0.1:9", args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_collection_sheet_records_every_line_as_one_entry() {
    let server = Server::start();
    set_up_product_loans(&server);
    let loan = server.ok(&["loan", "TB-0001/L1", "--as-of", "2024-01-05"]);
    assert_eq!(field(&loan, "product"), "GENERAL version 1");
    assert_eq!(field(&loan, "approved principal"), "10,000,000 VND");
    assert_eq!(field(&loan, "principal disbursed"), "10,000,000 VND");
    assert_eq!(field(&loan, "in arrears"), "no");
    assert_eq!(
        row(&loan, "1")[2..6],
        ["1,000,000", "92,000", "20,000", "1,112,000"]
    );

    // Each borrower pays her first installment and saves a little more.
    let dir = tempfile::tempdir().expect("temp dir");
    let sheet = dir.path().join("c1-2024-01-19.csv");
    std::fs::write(
        &sheet,
        "# Center C1, meeting of 2024-01-19\n\
         deposit,member_id,loan_id,repayment,savings_account_id\n\
         50000,TB-0001,TB-0001/L1,1112000,TB-0001/C1\n\
         \n\
         30000,TB-0002,TB-0002/L1,566000,TB-0002/C1\n",
    )
    .expect("write the sheet");
    let file = sheet.to_str().expect("a UTF-8 path");
    let out = server.ok(&[
        "collection-sheet",
        "C1",
        "--file",
        file,
        "--date",
        "2024-01-19",
    ]);
    assert_eq!(field(&out, "sequence"), "15");
    assert_eq!(field(&out, "lines recorded"), "2");
    // member, repaid, fees, interest, principal, outstanding, deposit, balance, CSV line
    assert_eq!(
        row(&out, "TB-0001")[1..],
        [
            "1,112,000",
            "20,000",
            "92,000",
            "1,000,000",
            "9,000,000",
            "50,000",
            "650,000",
            "3"
        ]
    );
    assert_eq!(
        row(&out, "TB-0002")[1..],
        [
            "566,000",
            "20,000",
            "46,000",
            "500,000",
            "4,500,000",
            "30,000",
            "330,000",
            "5"
        ]
    );
    assert_eq!(
        row(&out, "total")[1..8],
        [
            "1,678,000",
            "40,000",
            "138,000",
            "1,500,000",
            "",
            "80,000",
            ""
        ]
    );
    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "15");
    // Cash: 900,000 saved, 14,850,000 paid out (15,000,000 less 150,000 of
    // fees), 1,758,000 collected.
    for (account, balance) in [
        ("savings:TB-0001/C1", "650,000 VND"),
        ("savings:TB-0002/C1", "330,000 VND"),
        ("loan:TB-0001/L1", "9,000,000 VND"),
        ("loan:TB-0002/L1", "4,500,000 VND"),
        ("fee-income:TB/card", "40,000 VND"),
        ("fee-income:TB/disbursement", "150,000 VND"),
        ("interest-income:TB", "138,000 VND"),
        ("cash:TB", "-12,192,000 VND"),
    ] {
        assert_eq!(
            field(&server.ok(&["balance", account]), "balance"),
            balance,
            "{account}"
        );
    }

    // TB-0001 pays her second installment on time; TB-0002 misses hers
    // (546,000 due 2024-02-02).
    let repaid = server.json(&["repay", "TB-0001/L1", "1092000", "--date", "2024-02-02"]);
    assert_eq!(repaid["interest_paid"]["amount"], "92000");
    assert_eq!(repaid["fees_paid"]["amount"], "0");
    assert_eq!(repaid["principal_prepaid"]["amount"], "0");
    assert_eq!(repaid["principal_outstanding"]["amount"], "8000000");

    // Paying TB-0002/L1 off on 2024-02-10: the principal 4,500,000, the
    // overdue interest 46,000, and 8 of the 14 days of installment 3's
    // 46,000: 46,000 less its 6 days left (19,714.29 → 19,714) = 26,286.
    // Total 4,572,286. The interest left on the schedule is 8 × 46,000 +
    // 47,538 = 415,538, so paying off saves 415,538 − 72,286 = 343,252.
    let payoff = server.json(&["payoff", "TB-0002/L1", "--date", "2024-02-10"]);
    assert_eq!(payoff["principal"]["amount"], "4500000");
    assert_eq!(payoff["interest_due"]["amount"], "46000");
    assert_eq!(payoff["interest_accrued"]["amount"], "26286");
    assert_eq!(payoff["fees"]["amount"], "0");
    assert_eq!(payoff["total"]["amount"], "4572286");
    assert_eq!(payoff["interest_saved"]["amount"], "343252");

    let arrears = server.json(&["arrears", "TB", "--as-of", "2024-02-10"]);
    assert_eq!(arrears["as_of_date"], "2024-02-10");
    let loans = arrears["loans"].as_array().expect("loans");
    assert_eq!(loans.len(), 1, "{arrears}");
    assert_eq!(loans[0]["loan_id"], "TB-0002/L1");
    assert_eq!(loans[0]["days_in_arrears"], 8);
    assert_eq!(loans[0]["principal_outstanding"]["amount"], "4500000");
    assert_eq!(loans[0]["principal_overdue"]["amount"], "500000");
    assert_eq!(loans[0]["interest_overdue"]["amount"], "46000");

    // Portfolio on 2024-02-10: 8,000,000 + 4,500,000 outstanding; all of
    // TB-0002's is at risk (4,500,000 / 12,500,000 = 36%). Due since 1
    // January: 1,112,000 + 1,092,000 + 566,000 + 546,000 = 3,316,000, of
    // which 2,770,000 was paid on time: 83.53%.
    let portfolio = server.json(&[
        "portfolio",
        "TB",
        "--as-of",
        "2024-02-10",
        "--from",
        "2024-01-01",
        "--to",
        "2024-02-10",
    ]);
    assert_eq!(portfolio["gross_portfolio"]["amount"], "12500000");
    assert_eq!(portfolio["active_loans"], 2);
    assert_eq!(portfolio["active_borrowers"], 2);
    assert_eq!(portfolio["average_outstanding"]["amount"], "6250000");
    assert_eq!(portfolio["loans_in_arrears"], 1);
    assert_eq!(portfolio["par1_amount"]["amount"], "4500000");
    assert_eq!(portfolio["par1_percent"], "36.0000");
    assert_eq!(portfolio["par30_amount"]["amount"], "0");
    assert_eq!(portfolio["due_in_period"]["amount"], "3316000");
    assert_eq!(portfolio["collected_on_time"]["amount"], "2770000");
    assert_eq!(portfolio["repayment_rate_percent"], "83.53");
    let text = server.ok(&["portfolio", "--as-of", "2024-02-10"]);
    assert_eq!(row(&text, "PAR1")[1..], ["4,500,000", "36.0000%"]);
    assert_eq!(field(&text, "repayment rate"), "83.53%");
}

#[test]
fn a_bad_collection_sheet_names_its_csv_line_and_writes_nothing() {
    let server = Server::start();
    set_up_product_loans(&server);
    let dir = tempfile::tempdir().expect("temp dir");
    let sheet = |name: &str, second_repayment: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "member_id,loan_id,repayment,savings_account_id,deposit\n\
             # first line\n\
             TB-0001,TB-0001/L1,1112000,TB-0001/C1,50000\n\
             TB-0002,TB-0002/L1,{second_repayment},TB-0002/C1,30000\n"
        );
        std::fs::write(&path, text).expect("write the sheet");
        path.to_str().expect("a UTF-8 path").to_owned()
    };
    let run = |file: &str| {
        server.fails(&[
            "collection-sheet",
            "C1",
            "--file",
            file,
            "--date=2024-01-19",
        ])
    };

    // Data line 2 is CSV line 4 (the header, then a comment): every message
    // counts the file's lines, as a spreadsheet numbers its rows.
    let stderr = run(&sheet("separators.csv", "\"566,000\""));
    assert!(
        stderr.contains(
            "separators.csv line 4 (spreadsheet row 4), column repayment: \"566,000\" is not a \
             plain decimal"
        ),
        "{stderr}"
    );

    // The server refuses lines[1] (VND has no decimals): told as the CSV line
    // it came from, with no other numbering beside it.
    let stderr = run(&sheet("decimals.csv", "566000.5"));
    assert!(stderr.starts_with("error: InvalidArgument: "), "{stderr}");
    assert!(
        stderr.contains(
            "decimals.csv line 4 (spreadsheet row 4, member TB-0002), column repayment: \
             566000.5 has 1 decimal places but VND allows 0; nothing on the sheet was recorded"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("; nothing on the sheet was recorded"),
        "{stderr}"
    );
    assert!(!stderr.contains("lines["), "{stderr}");

    // A loan twice: the server's "an earlier line" is named, in the same numbering.
    let twice = dir.path().join("twice.csv");
    std::fs::write(
        &twice,
        "member_id,loan_id,repayment\n\
         TB-0001,TB-0001/L1,1112000\n\
         # the clerk typed her twice\n\
         TB-0001,TB-0001/L1,1000\n",
    )
    .expect("write the sheet");
    let stderr = run(twice.to_str().expect("a UTF-8 path"));
    assert!(
        stderr.contains(
            "twice.csv line 4 (spreadsheet row 4, member TB-0001), column loan_id: \
             loan TB-0001/L1 is on line 2 too; one line per loan"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("request id: "), "{stderr}");

    assert_eq!(field(&server.ok(&["info"]), "last sequence"), "14");
    let savings = server.ok(&["balance", "savings:TB-0001/C1"]);
    assert_eq!(field(&savings, "balance"), "600,000 VND");
}

#[test]
fn a_write_off_and_its_recovery_show_in_the_loan_and_the_totals() {
    let server = Server::start();
    set_up_product_loans(&server);
    let out = server.ok(&[
        "write-off",
        "TB-0002/L1",
        "--reason",
        "moved away",
        "--date",
        "2024-01-10",
    ]);
    assert_eq!(field(&out, "request"), "15");
    let out = server.approve("15");
    assert_eq!(field(&out, "sequence"), "17");
    assert_eq!(field(&out, "principal written off"), "5,000,000 VND");
    let out = server.ok(&["repay", "TB-0002/L1", "200000", "--date", "2024-01-20"]);
    assert_eq!(field(&out, "recovery"), "200,000 VND");
    assert_eq!(field(&out, "principal paid"), "0 VND");

    let loan = server.ok(&["loan", "TB-0002/L1", "--as-of", "2024-01-20"]);
    assert_eq!(field(&loan, "status"), "WRITTEN_OFF");
    assert_eq!(field(&loan, "written off"), "5,000,000 VND");
    assert_eq!(field(&loan, "recovered"), "200,000 VND");
    for (account, balance) in [
        ("loan-loss:TB", "5,000,000 VND"),
        ("recoveries:TB", "200,000 VND"),
    ] {
        let out = server.ok(&["balance", account]);
        assert_eq!(field(&out, "balance"), balance, "{account}");
    }

    let totals = server.ok(&["totals", "TB", "--month", "2024-01"]);
    for (name, value) in [
        ("fees collected", "150,000"),
        ("written off", "5,000,000"),
        ("recovered", "200,000"),
    ] {
        assert_eq!(row(&totals, name)[1..], [value, "0", value], "{name}");
    }
    assert_eq!(
        row(&totals, "GENERAL")[1..],
        ["General loan", "2", "15,000,000"]
    );
    let json = server.json(&["totals", "TB", "--month", "2024-01"]);
    assert_eq!(json["current"]["written_off"]["amount"], "5000000");
    assert_eq!(json["by_product"][0]["loans"], 2);
}

/// A loan in two tranches: 400,000 VND at 0% over 4 weekly installments
/// (100,000 each), approved for 1,000,000; a second tranche of 200,000 on
/// 10 January, before the first due date, spreads 600,000 over the same 4
/// installments: 150,000 each, the balance after falling by 150,000.
#[test]
fn a_tranche_recomputes_the_installments_left() {
    let server = Server::start();
    set_up_product_loans(&server);
    server.ok(&[
        "product-create",
        "HOUSE",
        "--effective-from",
        "2024-01-01",
        "--name",
        "Housing",
        "--principal-min",
        "100000",
        "--principal-max",
        "1000000",
        "--rate",
        "0",
        "--method",
        "flat",
        "--frequency",
        "weekly",
        "--installments",
        "4",
        "--tranches",
        "3",
    ]);
    let loan = server.json(&[
        "disburse",
        "TB-0002",
        "--product",
        "HOUSE",
        "--principal",
        "400000",
        "--approved",
        "1000000",
        "--first-repayment",
        "2024-01-15",
        "--date",
        "2024-01-08",
    ]);
    assert_eq!(loan["loan_id"], "TB-0002/L2");
    let tranche = server.json(&["tranche", "TB-0002/L2", "200000", "--date", "2024-01-10"]);
    assert_eq!(tranche["principal_disbursed"]["amount"], "200000");
    assert_eq!(tranche["paid_out"]["amount"], "200000");
    let rows: Vec<(String, String, String)> = tranche["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["due_date"].as_str().unwrap().to_owned(),
                i["principal"]["amount"].as_str().unwrap().to_owned(),
                i["balance_after"]["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |due: &str, principal: &str, after: &str| {
        (due.to_owned(), principal.to_owned(), after.to_owned())
    };
    assert_eq!(
        rows,
        vec![
            row("2024-01-15", "150000", "450000"),
            row("2024-01-22", "150000", "300000"),
            row("2024-01-29", "150000", "150000"),
            row("2024-02-05", "150000", "0"),
        ]
    );
    let balance = server.ok(&["balance", "loan:TB-0002/L2"]);
    assert!(balance.contains("600,000"), "{balance}");
    // Beyond the approved principal, refused with nothing written.
    let before = field(&server.ok(&["info"]), "last sequence");
    let refused = server.fails(&["tranche", "TB-0002/L2", "500000", "--date", "2024-01-10"]);
    assert!(refused.contains("approved principal"), "{refused}");
    assert_eq!(field(&server.ok(&["info"]), "last sequence"), before);
}

#[test]
fn the_books_show_the_walk_through_in_the_institutions_chart_and_print_a_passbook() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.toml");
    std::fs::write(
        &chart,
        "[lines]\ncash = { code = \"101\", name = \"Tiền mặt\" }\n",
    )
    .unwrap();
    let server = Server::start_with(&["--chart", chart.to_str().unwrap()]);
    set_up_borrower(&server);

    // The walk-through's balances (see the header), line by line, in the
    // institution's codes: cash took 50,000 + 510,000 in and paid 1,000,000 out.
    let trial = server.ok(&["trial-balance", "--branch", "TB"]);
    assert_eq!(
        row(&trial, "101"),
        ["101", "Tiền mặt", "560,000", "1,000,000", "0", "440,000"]
    );
    assert_eq!(
        row(&trial, "1311")[2..],
        ["1,000,000", "500,000", "500,000", "0"]
    );
    assert_eq!(row(&trial, "2111")[2..], ["0", "50,000", "0", "50,000"]);
    assert_eq!(row(&trial, "4111")[2..], ["0", "10,000", "0", "10,000"]);
    assert_eq!(
        row(&trial, "Total")[2..],
        ["1,560,000", "1,560,000", "500,000", "500,000"]
    );

    // Cash as the books stood after entry 8 (the deposit), and on the day before it.
    let after_deposit = server.ok(&["balance", "cash:TB", "--as-of-sequence", "8"]);
    assert_eq!(field(&after_deposit, "balance"), "50,000 VND");
    assert_eq!(field(&after_deposit, "as of entry"), "8");
    let before = server.ok(&["balance", "cash:TB", "--as-of-date", "2024-01-02"]);
    assert_eq!(field(&before, "balance"), "0 VND");

    let sheet = server.json(&["balance-sheet", "--branch", "TB", "--date", "2024-02-29"]);
    assert_eq!(sheet["total_assets"]["amount"]["amount"], "60000");
    assert_eq!(
        sheet["total_liabilities_and_equity"]["amount"]["amount"],
        "60000"
    );

    let passbook = dir.path().join("passbook.html");
    let statement = server.ok(&[
        "statement",
        "savings:TB-0001/C1",
        "--from",
        "2024-01-01",
        "--to",
        "2024-03-31",
        "--html",
        passbook.to_str().unwrap(),
    ]);
    assert_eq!(field(&statement, "opening balance"), "0 VND");
    assert_eq!(field(&statement, "closing balance"), "50,000 VND");
    assert_eq!(
        row(&statement, "2024-01-03"),
        [
            "2024-01-03",
            "8",
            "deposit_savings",
            "0",
            "50,000",
            "50,000",
            ""
        ]
    );
    let html = std::fs::read_to_string(&passbook).unwrap();
    assert!(html.contains("Sổ tiết kiệm"), "{html}");
    assert!(html.contains("50.000 VND"), "{html}");

    let refused = server.fails(&["trial-balance", "--branch", "TB", "--as-of-sequence", "99"]);
    assert!(refused.contains("as_of.sequence"), "{refused}");

    // January closed: a deposit dated in it is refused, naming the close.
    let closed = server.ok(&["close-period", "TB", "--through", "2024-01-31"]);
    assert_eq!(field(&closed, "closed through"), "2024-01-31");
    assert_eq!(
        field(&closed, "carried to retained earnings"),
        "no (not a year end)"
    );
    let late = server.fails(&["deposit", "TB-0001/C1", "1000", "--date", "2024-01-20"]);
    assert!(
        late.contains("FAILED_PRECONDITION") || late.contains("FailedPrecondition"),
        "{late}"
    );
    assert!(late.contains("closed through 2024-01-31"), "{late}");
}

#[test]
fn a_chart_file_naming_an_unknown_line_stops_the_server_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.toml");
    std::fs::write(
        &chart,
        "[lines]\nbank = { code = \"1\", name = \"Bank\" }\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--chart"])
        .arg(&chart)
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lines.bank") && stderr.contains("not a line"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing created");
}

#[test]
fn export_writes_the_books_to_stdout_or_a_file_and_checks_them() {
    let server = Server::start();
    set_up_borrower(&server);

    // To standard output: the CSV alone there, the summary on stderr.
    let output = server.run(&["export", "postings", "--branch", "TB"]);
    let stdout = expect_success(output.clone(), "export postings");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "sequence",
            "effective_date",
            "branch_id",
            "account",
            "line",
            "gl_code",
            "gl_name",
            "side",
            "amount",
            "currency"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // The deposit (2 postings), the disbursement (2) and the repayment (3).
    assert_eq!(rows.len(), 7, "{stdout}");
    let cash: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| &r[3] == "cash:TB")
        .map(|r| (&r[7], &r[8]))
        .collect();
    assert_eq!(
        cash,
        [
            ("debit", "50000"),
            ("credit", "1000000"),
            ("debit", "510000")
        ]
    );
    assert_eq!(field(&stderr, "rows"), "7", "{stderr}");
    assert_eq!(field(&stderr, "head sequence"), "10", "{stderr}");

    // To a file: the summary is the report.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.jsonl");
    let summary = server.json(&[
        "export",
        "journal",
        "--format",
        "json-lines",
        "--to",
        "2024-01-31",
        "--out",
        file.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // Every entry dated in January 2024: all but the repayment of
    // 2024-02-05 and the access entries, dated the day the server started.
    assert_eq!(lines.len(), 7, "{written}");
    assert_eq!(summary["rows"], 7);
    assert_eq!(summary["bytes"], written.len());
    assert_eq!(summary["last_date"], "2024-01-05");
    assert_eq!(summary["out"], file.to_str().unwrap());
    assert_eq!(lines[0]["sequence"], 3);
    assert_eq!(lines[6]["command"], "disburse_loan");

    // A refusal names the field, and leaves no file behind.
    let refused_file = dir.path().join("refused.csv");
    let refused = server.fails(&[
        "export",
        "trial-balance",
        "--from",
        "2024-01-01",
        "--out",
        refused_file.to_str().unwrap(),
    ]);
    assert!(refused.contains("from"), "{refused}");
    assert!(!refused_file.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the journal's file"
    );
}

#[test]
fn each_command_lists_only_the_options_it_takes() {
    let help = |args: &[&str]| {
        let output = Command::new(BIN).args(args).output().expect("run --help");
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).expect("UTF-8 help")
    };
    for command in [&["serve", "--help"][..], &["verify", "--help"]] {
        let text = help(command);
        for option in ["--server", "--token", "--actor", "--request-id", "--json"] {
            assert!(
                !text.contains(option),
                "{command:?} lists {option}:\n{text}"
            );
        }
    }
    // A report reads: where and as whom, but no write's options.
    let report = help(&["report", "branch", "--help"]);
    assert!(report.contains("--server") && report.contains("--token-file"));
    for option in ["--actor", "--request-id"] {
        assert!(!report.contains(option), "report lists {option}:\n{report}");
    }
    let deposit = help(&["deposit", "--help"]);
    for option in ["--server", "--actor", "--request-id"] {
        assert!(
            deposit.contains(option),
            "deposit lacks {option}:\n{deposit}"
        );
    }
}

#[test]
fn a_missing_data_directory_is_created_only_with_init_and_after_the_port_is_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("mistyped");
    let serve = |args: &[&str]| {
        Command::new(BIN)
            .arg("serve")
            .args(args)
            .arg("--data")
            .arg(&missing)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .output()
            .expect("run serve")
    };
    // A --data naming no directory: refused, nothing created.
    let output = serve(&["--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("--init"),
        "{stderr}"
    );
    assert!(!missing.exists(), "a refused start created {missing:?}");
    // With --init, but on a port already taken: no directory either.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().unwrap().to_string();
    let output = serve(&["--init", "--listen", &address]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("listening on"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !missing.exists(),
        "a server that could not listen created {missing:?}"
    );
    drop(taken);
}

#[test]
fn verify_refuses_a_directory_a_server_is_using() {
    let server = Server::start();
    let output = Command::new(BIN)
        .arg("verify")
        .arg("--data")
        .arg(server.data_dir())
        .output()
        .expect("run verify");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains("copy"),
        "{stderr}"
    );
}

/// `serve` on `dir` logging at info in `format`, its stderr piped: the
/// child and its address (`http://…`).
fn serve_logging(dir: &std::path::Path, format: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", format])
        .arg("--data")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the listening line");
    let address = line
        .trim()
        .strip_prefix("mfi-ledger listening on ")
        .unwrap_or_else(|| panic!("not the listening line: {line:?}"));
    let url = format!("http://{address}");
    (child, url)
}

#[test]
fn logs_are_json_lines_on_request_and_never_coloured_off_a_terminal() {
    use std::io::Read;
    let logs = |format: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut child, _) = serve_logging(dir.path(), format);
        child.kill().unwrap();
        child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    };
    let json = logs("json");
    let lines: Vec<&str> = json.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{json}");
    for line in &lines {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let text = logs("text");
    assert!(text.contains("serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text:?}");
}

#[test]
fn the_systemd_unit_verifies_and_runs_the_binary_as_documented() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mfi-ledger.service"
    ))
    .expect("deploy/mfi-ledger.service");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart=/usr/local/bin/mfi-ledger "))
        .expect("an ExecStart of /usr/local/bin/mfi-ledger");
    // Its options are the binary's: they parse (and serve refuses to start
    // only for want of the directory, not for an unknown option).
    let output = Command::new(BIN)
        .args(exec.split_whitespace())
        .args(["--listen", "127.0.0.1:0", "--help"])
        .output()
        .expect("run the unit's command line");
    assert!(output.status.success(), "{output:?}");
    let available = Command::new("systemd-analyze").arg("--version").output();
    if available.is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is missing (CI checks the unit with it)"
        );
        eprintln!("systemd-analyze is missing: the unit's syntax is not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfi-ledger.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mfi-ledger", BIN)).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    // An unknown key or a bad value is only a warning to systemd: none.
    assert!(said.trim().is_empty(), "{said}");
}

#[test]
fn each_call_is_one_log_line_with_its_principal_entry_and_status_and_no_names() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, url) = serve_logging(dir.path(), "json");
    let admin = dir.path().join("admin.token");
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(["--server", &url, "--token-file"])
            .arg(&admin)
            .args(args)
            .output()
            .expect("run the client")
    };
    let created = cli(&[
        "principal-create",
        "hoa",
        "--name",
        "Nguyễn Thị Hoa",
        "--grant",
        "auditor",
        "--request-id",
        "log-line-1",
    ]);
    assert!(created.status.success(), "{created:?}");
    let refused = cli(&["principal-create", "not ok!", "--grant", "auditor"]);
    assert!(!refused.status.success());
    server.kill().unwrap();
    server.wait().unwrap();
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();

    assert!(!logs.contains("Nguyễn"), "a name in the logs:\n{logs}");
    let calls: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "call")
        .collect();
    let create: Vec<&Value> = calls
        .iter()
        .filter(|call| call["fields"]["rpc"] == "AccessService/CreatePrincipal")
        .collect();
    assert_eq!(create.len(), 2, "one line per call:\n{logs}");
    let ok = &create[0]["fields"];
    assert_eq!(ok["status"], "OK", "{ok}");
    assert_eq!(ok["principal"], "admin", "{ok}");
    assert_eq!(ok["request_id"], "log-line-1", "{ok}");
    assert!(ok["sequence"].as_u64().is_some_and(|s| s >= 2), "{ok}");
    assert!(ok["duration_ms"].as_f64().is_some(), "{ok}");
    let bad = &create[1]["fields"];
    assert_eq!(bad["status"], "INVALID_ARGUMENT", "{bad}");
    assert_eq!(bad["refused_field"], "principal_id", "{bad}");
}

#[test]
fn serve_reads_its_settings_from_a_config_file_and_flags_win() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mfi-ledger.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata = \"ledger\"\nmetrics_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let start = |extra: &[&str]| {
        let mut child = Command::new(BIN)
            .args(["serve", "--init", "--config"])
            .arg(&config)
            .args(extra)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            stdout.read_line(line).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        lines
    };
    // The file's data (relative to the file) and metrics address are used.
    let lines = start(&[]);
    assert!(
        lines[0].starts_with("mfi-ledger listening on "),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("mfi-ledger metrics on "), "{lines:?}");
    assert!(dir.path().join("ledger/admin.token").exists());
    // A flag wins over the file.
    let other = dir.path().join("other");
    let lines = start(&["--data", other.to_str().unwrap()]);
    assert!(
        lines[0].starts_with("mfi-ledger listening on "),
        "{lines:?}"
    );
    assert!(other.join("admin.token").exists());

    // A key that is none of serve's is refused by name.
    std::fs::write(&config, "listne = \"127.0.0.1:0\"\n").unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listne"), "{stderr}");
}

/// A reader that stops early (`verify … | head -c 0`) ends the output, not
/// the process with a panic: `verify` and `report branch` print as every
/// client command does.
#[test]
fn verify_into_a_closed_pipe_exits_cleanly() {
    let mut server = Server::start();
    server.kill();
    let script = format!(
        "{BIN} verify --data '{}' | head -c 0; exit ${{PIPESTATUS[0]}}",
        server.data_dir().display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\n{stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
