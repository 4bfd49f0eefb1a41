//! The branch simulator and the year-end report, end to end: the real
//! binary serves, `mfi-ledger simulate` drives it over gRPC, `mfi-ledger
//! report branch` reads the figures back (as the README's `reader`, an
//! auditor of the branch alone), and the test recomputes them on its own
//! from the journal (read over gRPC, entry by entry).
//!
//! The published figures of TYM Thái Bình for 2023 (provincial news report
//! of 28 December 2023, see `shared/domain.md`): 2,175 loans disbursed, 326
//! more than in 2022; over 71 billion VND disbursed; every borrower saving;
//! over 22 billion VND saved.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::chromium::open_in_chromium;
use common::postgres::Cluster;
use common::{BIN, Server};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use rust_decimal::Decimal;
use serde_json::Value;

/// Every entry is recorded at this instant, so that runs can be compared hash for hash.
const CLOCK: &str = "2024-06-30T00:00:00Z";

fn dec(text: &str) -> Decimal {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a decimal"))
}

/// A read client of `server`, as the tests' principal.
async fn auditor(server: &Server) -> AuditServiceClient<mfi_ledger::cli::connect::Conn> {
    let channel = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = mfi_ledger::cli::connect::Bearer::new(Some(&server.token())).unwrap();
    AuditServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel, bearer,
    ))
}

/// The binary as a client of `server`, with `args`, as the tests' principal.
fn client(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--server", &server.url])
        .env("MFI_LEDGER_TOKEN_FILE", &server.token_file)
        .env(
            "MFI_LEDGER_APPROVER_TOKEN_FILE",
            server.approver_token_file(),
        )
        .env("RUST_LOG", "warn");
    command
}

/// Runs the binary as a client of `server`; panics with its output unless it succeeds.
fn run(server: &Server, args: &[&str]) -> String {
    let output = client(server, args).output().expect("run mfi-ledger");
    assert!(
        output.status.success(),
        "mfi-ledger {args:?} failed\nstdout:\n{}\nstderr:\n{}\nthe server's log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log_tail()
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: not JSON:\n{text}"))
}

fn simulate(server: &Server, extra: &[&str]) -> Value {
    let mut args = vec!["simulate", "--json", "--no-progress"];
    args.extend_from_slice(extra);
    json(&run(server, &args))
}

/// Figures of one year worked out from the journal alone.
#[derive(Debug, Default)]
struct Recomputed {
    loans: u64,
    disbursed: Decimal,
    savings_at_end: Decimal,
    borrowers_at_end: u64,
    borrowers_saving_at_end: u64,
}

/// The whole journal, read over gRPC page by page.
async fn read_journal(server: &Server) -> Vec<pb::JournalEntry> {
    let mut audit = auditor(server).await;
    let mut next = 1;
    let mut entries = Vec::new();
    while next != 0 {
        let page = audit
            .list_journal_entries(pb::ListJournalEntriesRequest {
                from_sequence: next,
                page_size: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        next = page.next_sequence;
    }
    entries
}

/// Works out `year`'s figures for `branch` from the journal's entries
/// alone: their commands, dates and postings. Loans are disbursement
/// entries, amounts their debits to `loan:` accounts; savings are credits
/// less debits of `savings:` accounts; a borrower is a member with
/// principal outstanding on a `loan:` account at year end, and she saves
/// when one of her `savings:` accounts holds money then.
fn recompute(entries: &[pb::JournalEntry], branch: &str, year: i32) -> Recomputed {
    let year_end = format!("{year}-12-31");
    let mut figures = Recomputed::default();
    let mut loans: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut savings: BTreeMap<String, Decimal> = BTreeMap::new();
    assert!(
        entries.iter().all(|e| e.reverses_sequence == 0),
        "the simulator reverses nothing"
    );
    for entry in entries.iter().filter(|e| e.branch_id == branch) {
        let in_year = entry.effective_date.starts_with(&format!("{year}-"));
        let by_end = entry.effective_date <= year_end;
        if entry.command == "disburse_loan" && in_year {
            figures.loans += 1;
        }
        for posting in &entry.postings {
            let amount = dec(&posting.amount.as_ref().unwrap().amount);
            let debit = posting.side == pb::PostingSide::Debit as i32;
            let signed = if debit { amount } else { -amount };
            if let Some(loan) = posting.account.strip_prefix("loan:") {
                if entry.command == "disburse_loan" && in_year && debit {
                    figures.disbursed += amount;
                }
                if by_end {
                    *loans.entry(loan.to_owned()).or_default() += signed;
                }
            }
            if let Some(account) = posting.account.strip_prefix("savings:")
                && by_end
            {
                *savings.entry(account.to_owned()).or_default() -= signed;
            }
        }
    }
    figures.savings_at_end = savings.values().copied().sum();
    let member = |account: &str| account.split('/').next().unwrap().to_owned();
    let borrowers: BTreeSet<String> = loans
        .iter()
        .filter(|(_, outstanding)| **outstanding > Decimal::ZERO)
        .map(|(loan, _)| member(loan))
        .collect();
    let savers: BTreeSet<String> = savings
        .iter()
        .filter(|(_, balance)| **balance > Decimal::ZERO)
        .map(|(account, _)| member(account))
        .collect();
    figures.borrowers_at_end = borrowers.len() as u64;
    figures.borrowers_saving_at_end = borrowers.intersection(&savers).count() as u64;
    figures
}

#[test]
fn the_thai_binh_preset_reproduces_the_published_figures() {
    let mut server = Server::start_at(CLOCK);
    let summary = simulate(&server, &["--preset", "tym-thai-binh"]);
    assert_eq!(summary["branch_id"], "TB");

    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("tb-2023.html");
    // The report reads as the README's reader: an auditor of TB alone.
    let admin_token = server.data_dir().join("admin.token");
    let reader_token = dir.path().join("reader.token");
    run(
        &server,
        &[
            "principal-create",
            "reader",
            "--grant",
            "auditor:TB",
            "--token-out",
            reader_token.to_str().unwrap(),
            "--token-file",
            admin_token.to_str().unwrap(),
        ],
    );
    let report = json(&run(
        &server,
        &[
            "report",
            "branch",
            "TB",
            "--year",
            "2023",
            "--json",
            "--html",
            html_path.to_str().unwrap(),
            "--token-file",
            reader_token.to_str().unwrap(),
        ],
    ));
    // The HTML report, laid out by a browser beside the checks below.
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("TYM - Chi nhánh Thái Bình"));
    let browser_dir = dir.path().to_owned();
    let browser = std::thread::spawn(move || {
        open_in_chromium(
            "the_thai_binh_preset_reproduces_the_published_figures",
            &html,
            &browser_dir,
        )
    });

    let this = &report["current"];
    let last = &report["previous"];
    let figure = |v: &Value| dec(v.as_str().unwrap_or_else(|| panic!("{v} is not a string")));
    let count = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"));

    // The published figures.
    assert_eq!(count(&this["loans_disbursed"]), 2175);
    assert_eq!(
        count(&last["loans_disbursed"]),
        1849,
        "2,175 is 326 more than 2022"
    );
    let disbursed = figure(&this["amount_disbursed"]);
    assert!(
        disbursed > dec("71000000000") && disbursed < dec("72000000000"),
        "over 71 billion VND disbursed: {disbursed}"
    );
    let borrowers = count(&this["borrowers"]);
    assert!(borrowers > 1000, "{borrowers} borrowers");
    assert_eq!(
        count(&this["borrowers_saving"]),
        borrowers,
        "every borrower saves"
    );
    let saved = figure(&this["savings_balance"]);
    assert!(
        saved > dec("22000000000") && saved < dec("23000000000"),
        "over 22 billion VND saved: {saved}"
    );

    // The books at both year ends: the balance sheet balances, line by
    // line and in its totals, and each year's result is its income less
    // its expenses.
    let sheet = &report["balance_sheet"];
    let statement = &report["income_statement"];
    assert_eq!(sheet["date"], "2023-12-31");
    assert_eq!(sheet["previous_date"], "2022-12-31");
    assert_eq!(statement["from"], "2023-01-01");
    assert_eq!(statement["previous_to"], "2022-12-31");
    let sum = |lines: &Value, field: &str| -> Decimal {
        lines
            .as_array()
            .unwrap_or_else(|| panic!("{lines} is not a list of lines"))
            .iter()
            .map(|line| figure(&line[field]))
            .sum()
    };
    for field in ["amount", "previous_amount"] {
        let assets = figure(&sheet["total_assets"][field]);
        assert!(assets > Decimal::ZERO, "{field}: total assets {assets}");
        assert_eq!(
            assets,
            figure(&sheet["total_liabilities_and_equity"][field]),
            "{field}: total assets against total liabilities and equity"
        );
        assert_eq!(assets, sum(&sheet["assets"], field), "{field}: asset lines");
        assert_eq!(
            assets,
            sum(&sheet["liabilities"], field) + sum(&sheet["equity"], field),
            "{field}: liability and equity lines"
        );
        let income = sum(&statement["income"], field);
        assert!(income > Decimal::ZERO, "{field}: income {income}");
        assert_eq!(
            figure(&statement["result"][field]),
            income - sum(&statement["expenses"], field),
            "{field}: the result is income less expenses"
        );
    }
    // The balance sheet's portfolio is the comparison's gross portfolio.
    let portfolio = sheet["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["line"] == "loan-portfolio")
        .expect("a loan portfolio line");
    assert_eq!(
        figure(&portfolio["amount"]),
        figure(&this["gross_portfolio"])
    );
    assert_eq!(
        figure(&portfolio["previous_amount"]),
        figure(&last["gross_portfolio"])
    );

    // The same figures worked out from the journal, entry by entry.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let journal = runtime.block_on(read_journal(&server));
    let mine = recompute(&journal, "TB", 2023);
    assert_eq!(mine.loans, 2175);
    assert_eq!(mine.disbursed, disbursed);
    assert_eq!(mine.savings_at_end, saved);
    assert_eq!(mine.borrowers_at_end, borrowers);
    assert_eq!(mine.borrowers_saving_at_end, borrowers);
    let before = recompute(&journal, "TB", 2022);
    assert_eq!(before.loans, 1849);
    assert_eq!(before.disbursed, figure(&last["amount_disbursed"]));
    assert_eq!(before.savings_at_end, figure(&last["savings_balance"]));

    // Portfolio at risk at year end, the standard measure (no tolerance).
    let quality = runtime.block_on(async {
        let mut audit = auditor(&server).await;
        audit
            .get_portfolio_quality(pb::GetPortfolioQualityRequest {
                as_of_sequence: 0,
                branch_id: "TB".into(),
                as_of_date: "2023-12-31".into(),
                period: None,
            })
            .await
            .unwrap()
            .into_inner()
    });
    // Any part of an installment unpaid more than a day: 1.67 %; more than
    // 30 days: 0.28 % (figures of this simulated year, savings earning
    // interest).
    assert_eq!(
        (
            quality.par1_percent.as_str(),
            quality.par30_percent.as_str()
        ),
        ("1.6735", "0.2828")
    );
    assert_eq!(
        figure(&this["par30"]) * dec("100"),
        dec(&quality.par30_percent),
        "the report's PAR30 is the standard one"
    );

    // The months add up to the year, and the products too.
    let months = report["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    let monthly_loans: u64 = months.iter().map(|m| count(&m["loans_disbursed"])).sum();
    let monthly_amount: Decimal = months.iter().map(|m| figure(&m["amount_disbursed"])).sum();
    assert_eq!(monthly_loans, 2175);
    assert_eq!(monthly_amount, disbursed);
    assert_eq!(figure(&months[11]["savings_balance"]), saved);
    let products = report["by_product"].as_array().unwrap();
    assert_eq!(products.len(), 3, "general, seasonal and housing loans");
    let product_loans: u64 = products.iter().map(|p| count(&p["loans"])).sum();
    assert_eq!(product_loans, 2175);

    the_exported_postings_add_up_to_the_trial_balance(&server, &runtime, dir.path());
    runtime.block_on(the_books_balance_every_day_and_the_closes_carry_the_results(&server));
    the_years_move_to_postgres_and_back_hash_for_hash(&mut server);

    // The HTML report, as the browser laid it out.
    let Some(rendered) = browser.join().unwrap() else {
        return;
    };
    assert!(rendered.output.status.success(), "{}", rendered.describe());
    assert!(
        !rendered.stderr().contains(":CONSOLE"),
        "console messages:\n{}",
        rendered.describe()
    );
    let png = std::fs::read(&rendered.png).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 60_000);
    let dom = std::fs::read_to_string(&rendered.dom).unwrap();
    assert_eq!(dom.matches("<svg").count(), 4, "four charts");
    // 12 months of disbursements and of collections, 12 savings balances,
    // 12 PAR30 figures and one bar per product.
    assert_eq!(dom.matches("class=\"point\"").count(), 24 + 12 + 12 + 3);
}

/// The simulated years' journal, copied into a PostgreSQL database with
/// `migrate` and from it into a new data directory, ends at the same entry
/// with the same hash each way (the hash chains every entry before it), and
/// both copies verify: the database's against the server's own checkpoints.
/// Stops the server (`migrate` copies a directory no server holds), which
/// signs a last checkpoint of the whole journal.
fn the_years_move_to_postgres_and_back_hash_for_hash(server: &mut Server) {
    let info = json(&run(server, &["--json", "info"]));
    let (entries, last_hash) = (&info["last_sequence"], &info["last_hash"]);
    assert!(entries.as_u64().unwrap() > 20_000, "{info}");
    server.stop();
    let Some(cluster) = Cluster::start("the_years_move_to_postgres_and_back_hash_for_hash") else {
        return;
    };
    let url = cluster.database("books");
    let mfi = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run mfi-ledger");
        assert!(
            output.status.success(),
            "mfi-ledger {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    };
    let data = server.data_dir().to_str().unwrap();
    let into = json(&mfi(&["--json", "migrate", "--from", data, "--to", &url]));
    // Only into an empty database: a second copy changes nothing.
    let again = Command::new(BIN)
        .args(["migrate", "--from", data, "--to", &url])
        .output()
        .expect("run mfi-ledger");
    let refusal = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{refusal}");
    assert!(
        refusal.contains(&format!("holds a journal of {entries} entries already")),
        "{refusal}"
    );
    let back_dir = tempfile::tempdir().unwrap();
    let back = back_dir.path().join("data");
    let back = back.to_str().unwrap();
    let out = json(&mfi(&["--json", "migrate", "--from", &url, "--to", back]));
    for copy in [&into, &out] {
        assert_eq!((&copy["entries"], &copy["last_hash"]), (entries, last_hash));
    }
    let last_hash = last_hash.as_str().unwrap();
    let report = mfi(&["verify", "--chain-only", "--data", back]);
    assert!(report.starts_with("ok: "), "{report}");
    assert!(
        report.contains(&format!("last hash {last_hash}")),
        "{report}"
    );
    // The server's own checkpoints hold for the database's journal.
    let report = mfi(&["verify", "--chain-only", "--store", &url, "--data", data]);
    assert!(
        report.contains(&format!("last hash {last_hash}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("(latest of size {entries})")),
        "{report}"
    );
}

/// TB's 2023 postings, exported with the CLI (`export postings`) and
/// added up by an independent reader (`scripts/trial-balance-from-export.py`,
/// Python's standard library) on top of 2022's closing trial balance, give
/// `GetTrialBalance` at the end of 2023, line by line. Python 3 is on every
/// machine that runs the tests: without it this fails.
fn the_exported_postings_add_up_to_the_trial_balance(
    server: &Server,
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) {
    let postings = dir.join("tb-2023-postings.csv");
    let started = std::time::Instant::now();
    let summary = json(&run(
        server,
        &[
            "export",
            "postings",
            "--branch",
            "TB",
            "--from",
            "2023-01-01",
            "--to",
            "2023-12-31",
            "--format",
            "csv",
            "--out",
            postings.to_str().unwrap(),
            "--json",
        ],
    ));
    let exported_in = started.elapsed();
    let opening = dir.join("tb-2022.json");
    let opening_json = run(
        server,
        &[
            "trial-balance",
            "--branch",
            "TB",
            "--as-of-date",
            "2022-12-31",
            "--json",
        ],
    );
    std::fs::write(&opening, opening_json).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/trial-balance-from-export.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&postings)
        .arg("--opening")
        .arg(&opening)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let independent: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(independent["postings"], summary["rows"]);
    assert!(summary["rows"].as_u64().unwrap() > 10_000, "{summary}");
    eprintln!(
        "exported {} postings ({} bytes) in {exported_in:?}",
        summary["rows"], summary["bytes"]
    );

    let closing = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bearer = mfi_ledger::cli::connect::Bearer::new(Some(&server.token())).unwrap();
        pb::books_service_client::BooksServiceClient::new(
            tonic::service::interceptor::InterceptedService::new(channel, bearer),
        )
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Date("2023-12-31".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
    });
    let amount = |money: &Option<pb::Money>| dec(&money.as_ref().unwrap().amount);
    let ledger: Vec<(String, String, [Decimal; 4])> = closing
        .rows
        .iter()
        .filter(|r| amount(&r.debits) != Decimal::ZERO || amount(&r.credits) != Decimal::ZERO)
        .map(|r| {
            (
                r.gl_code.clone(),
                r.line.clone(),
                [
                    amount(&r.debits),
                    amount(&r.credits),
                    amount(&r.debit_balance),
                    amount(&r.credit_balance),
                ],
            )
        })
        .collect();
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("{v} is not text"))
            .to_owned()
    };
    let theirs: Vec<(String, String, [Decimal; 4])> = independent["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                text(&r["gl_code"]),
                text(&r["line"]),
                ["debits", "credits", "debit_balance", "credit_balance"].map(|k| dec(&text(&r[k]))),
            )
        })
        .collect();
    assert!(ledger.len() >= 5, "{ledger:?}");
    assert_eq!(theirs, ledger);
    assert_eq!(
        dec(&text(&independent["total_debits"])),
        amount(&closing.total_debits)
    );
    assert_eq!(
        dec(&text(&independent["total_credit_balance"])),
        amount(&closing.total_credit_balance)
    );
}

/// SHA-256 over every entry the simulation wrote, without their hashes:
/// every entry but those that set up access (the first administrator and
/// the tests' principals, whose tokens are random, so that the chain's
/// hashes differ from run to run while every simulated entry is the same).
fn simulated_entries(server: &Server) -> String {
    use prost::Message;
    use sha2::{Digest, Sha256};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut audit = auditor(server).await;
        let mut digest = Sha256::new();
        let mut from = 1;
        while from != 0 {
            let page = audit
                .list_journal_entries(pb::ListJournalEntriesRequest {
                    from_sequence: from,
                    page_size: 1000,
                })
                .await
                .unwrap()
                .into_inner();
            for mut entry in page.entries {
                if ["bootstrap_access", "create_principal"].contains(&entry.command.as_str()) {
                    continue;
                }
                entry.hash.clear();
                entry.previous_hash.clear();
                digest.update(entry.encode_to_vec());
            }
            from = page.next_sequence;
        }
        hex::encode(digest.finalize())
    })
}

#[test]
fn the_same_seed_writes_the_same_journal() {
    // Three runs, each on a server of its own, side by side: each run
    // waits on its server's replies most of the time.
    let run = |extra: &'static [&'static str]| {
        std::thread::spawn(move || {
            let server = Server::start_at(CLOCK);
            let mut args = vec!["--preset", "tym-thai-binh", "--scale", "4"];
            args.extend_from_slice(extra);
            (simulate(&server, &args), simulated_entries(&server))
        })
    };
    // The preset's own seed twice, and another.
    let runs = [run(&[]), run(&[]), run(&["--seed", "1"])].map(|run| run.join().unwrap());
    assert_ne!(runs[0].0["seed"], runs[2].0["seed"]);
    assert!(runs[0].0["entries"].as_u64().unwrap() > 1000);
    assert_eq!(runs[0].0["entries"], runs[1].0["entries"]);
    assert_eq!(runs[0].1, runs[1].1, "the simulated entries differ");

    // Another seed is another branch.
    assert_ne!(runs[2].1, runs[0].1);
}

/// A reader that stops reading (`simulate | head -1`) does not make the
/// run fail or panic: its summary goes to a closed pipe, quietly, in
/// either output format, and the branch is written all the same.
#[test]
fn a_reader_that_stops_reading_ends_the_summary_quietly() {
    for format in [&["--json"][..], &[][..]] {
        let server = Server::start_at(CLOCK);
        let mut args = vec![
            "simulate",
            "--no-progress",
            "--scale",
            "1",
            "--until",
            "2021-01-31",
        ];
        args.extend_from_slice(format);
        let mut child = client(&server, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mfi-ledger simulate");
        // The reader goes away before the summary is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "simulate {format:?} into a closed pipe: {}\n{stderr}",
            output.status
        );
        let journal = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(read_journal(&server));
        let sheets = journal
            .iter()
            .filter(|entry| entry.command == "record_collection_sheet")
            .count();
        assert!(sheets > 0, "January's center meetings are in the journal");
    }
}

/// The simulated books: the trial balance of every day of 2023 has debits
/// equal to credits; the branch's cash is never below zero at the end of
/// any day of the run, funded by its opening capital and head office's
/// top-ups; each year's close (the simulator closes 2021 and 2022
/// on the first days of the next years, and 2023 at the end of the run)
/// moved retained earnings by exactly that year's result, and left the
/// income and expense lines empty; savings earned interest.
async fn the_books_balance_every_day_and_the_closes_carry_the_results(server: &Server) {
    use chrono::Datelike;
    use mfi_ledger::pb::books_service_client::BooksServiceClient;
    let channel = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = mfi_ledger::cli::connect::Bearer::new(Some(&server.token())).unwrap();
    let mut books = BooksServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        channel, bearer,
    ));
    let amount = |m: &Option<pb::Money>| dec(&m.as_ref().unwrap().amount);
    let on = |date: String| pb::GetTrialBalanceRequest {
        branch_id: "TB".into(),
        as_of: Some(pb::AsOf {
            point: Some(pb::as_of::Point::Date(date)),
        }),
    };
    let mut day = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    while day.year() == 2023 {
        let trial = books
            .get_trial_balance(on(day.to_string()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            amount(&trial.total_debits),
            amount(&trial.total_credits),
            "{day}"
        );
        assert_eq!(
            amount(&trial.total_debit_balance),
            amount(&trial.total_credit_balance),
            "{day}"
        );
        let cash = trial.rows.iter().find(|r| r.line == "cash").unwrap();
        assert_eq!(amount(&cash.credit_balance), Decimal::ZERO, "cash on {day}");
        day = day.succ_opt().unwrap();
    }
    // The years before, day by day: cash at the end of each.
    let mut audit = auditor(server).await;
    let mut day = chrono::NaiveDate::from_ymd_opt(2021, 1, 4).unwrap();
    while day.year() < 2023 {
        let cash = audit
            .get_balance(pb::GetBalanceRequest {
                account: "cash:TB".into(),
                as_of: Some(pb::AsOf {
                    point: Some(pb::as_of::Point::Date(day.to_string())),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(amount(&cash.balance) >= Decimal::ZERO, "cash on {day}");
        day = day.succ_opt().unwrap();
    }
    // Capital opened the branch; head office funded the rest.
    let end = books
        .get_trial_balance(on("2023-12-31".into()))
        .await
        .unwrap()
        .into_inner();
    let line = |name: &str| end.rows.iter().find(|r| r.line == name).unwrap();
    assert_eq!(
        amount(&line("capital").credit_balance),
        dec("2000000000"),
        "the opening capital"
    );
    let head_office = amount(&line("head-office-funding").credit_balance);
    assert!(
        head_office > Decimal::ZERO && head_office % dec("500000000") == Decimal::ZERO,
        "head office tops up in steps of 500 million: {head_office}"
    );
    let retained = |trial: &pb::GetTrialBalanceResponse| {
        let line = trial
            .rows
            .iter()
            .find(|r| r.line == "retained-earnings")
            .unwrap();
        amount(&line.credit_balance) - amount(&line.debit_balance)
    };
    let mut interest_paid = Decimal::ZERO;
    for year in [2022, 2023] {
        let before = books
            .get_trial_balance(on(format!("{}-12-31", year - 1)))
            .await
            .unwrap()
            .into_inner();
        let after = books
            .get_trial_balance(on(format!("{year}-12-31")))
            .await
            .unwrap()
            .into_inner();
        let statement = books
            .get_income_statement(pb::GetIncomeStatementRequest {
                branch_id: "TB".into(),
                from: format!("{year}-01-01"),
                to: format!("{year}-12-31"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let result = amount(&statement.result.as_ref().unwrap().amount);
        assert!(result != Decimal::ZERO, "{year} had a result");
        assert_eq!(
            retained(&after) - retained(&before),
            result,
            "{year}'s close carried its result"
        );
        for row in after.rows.iter().filter(|r| {
            r.kind == pb::AccountKind::Income as i32 || r.kind == pb::AccountKind::Expense as i32
        }) {
            assert_eq!(
                amount(&row.debit_balance) + amount(&row.credit_balance),
                Decimal::ZERO,
                "{year}: {} after the close",
                row.line
            );
        }
        if year == 2023 {
            interest_paid = statement
                .expenses
                .iter()
                .find(|l| l.line == "interest-expense")
                .map(|l| amount(&l.amount))
                .unwrap_or_default();
        }
    }
    assert!(
        interest_paid > Decimal::ZERO,
        "savings earned interest in 2023"
    );
}
