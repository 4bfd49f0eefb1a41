//! The journal written by this release must open, serve and verify under
//! every later release: `tests/fixtures/v3-journal/journal.log` is a data
//! directory written by this release (encoding version 3, rules version 1),
//! committed and never rewritten by a later one. Every build opens a copy of
//! it over gRPC, verifies it, and answers known figures from it.
//!
//! Only the journal is committed: it is the truth, and the state cache is
//! derived from it (a build rebuilds a missing or unfitting cache at start;
//! its format may change between releases for that reason). sled's files are
//! also large for what they hold.
//!
//! The generator is the ignored test `regenerate`: it runs the scenario below
//! through a real server with a fixed clock (every entry recorded at
//! 2024-06-30T03:00:00Z), so that its journal is the same byte for byte on
//! every run. Run it while entries still change before a release with
//! `cargo test --test ledger fixture::regenerate -- --ignored`, then set
//! [`FIXTURE_HEAD_HASH`] to the hash it prints. Once released, the fixture
//! is frozen: a later release that cannot read it has broken its promise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use mfi_ledger::api::{self, ServerLimits};
use mfi_ledger::ledger::{FixedClock, Ledger, LedgerConfig};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::support::{App, application, ctx, flat_weekly, products, spawn_app, vnd};

/// Entries in the fixture: what the scenario submits (see [`write_scenario`]).
const FIXTURE_ENTRIES: u64 = 370;
/// Hash of the fixture's last entry, as the generator printed it.
const FIXTURE_HEAD_HASH: &str = "44436a366a1c789325ecfef8ceada945d9c9b3c037994a27dbb0e933e268f0f1";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3-journal")
}

/// A server on a copy of a data directory.
struct Served {
    audit: AuditServiceClient<Channel>,
    ledger: Arc<Ledger>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn serve(dir: &Path) -> Served {
    let store = mfi_ledger::store::DiskStore::open(dir).unwrap();
    let clock = Arc::new(FixedClock(
        Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap(),
    ));
    let ledger = Arc::new(
        tokio::task::spawn_blocking(move || {
            Ledger::start(Arc::new(store), clock, LedgerConfig::default())
        })
        .await
        .unwrap()
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = ledger.clone();
    let server = tokio::spawn(async move {
        api::serve(listener, served, ServerLimits::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Served {
        audit: AuditServiceClient::new(channel),
        ledger,
        stop,
        server,
    }
}

impl Served {
    async fn balance(&mut self, account: &str) -> String {
        let request = pb::GetBalanceRequest {
            account: account.into(),
        };
        let response = self.audit.get_balance(request).await.unwrap();
        response.into_inner().balance.unwrap().amount
    }

    async fn loan(&mut self, loan: &str) -> pb::GetLoanResponse {
        let request = pb::GetLoanRequest {
            loan_id: loan.into(),
            as_of_date: "2024-06-30".into(),
        };
        self.audit.get_loan(request).await.unwrap().into_inner()
    }

    async fn shut(self) {
        let _ = self.stop.send(());
        drop(self.audit);
        self.server.await.unwrap();
        let ledger = self.ledger;
        tokio::task::spawn_blocking(move || ledger.shutdown())
            .await
            .unwrap();
    }
}

fn amount(money: Option<pb::Money>) -> String {
    money.expect("an amount").amount
}

/// Verifies a copy of `journal` and serves it, checking the figures the
/// scenario makes true; gives the head entry's hash.
async fn check_fixture(journal: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(journal, dir.path().join("journal.log")).unwrap();

    let report = mfi_ledger::verify::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.entries, FIXTURE_ENTRIES);
    assert!(report.invariants_only.is_empty(), "{report}");
    let head = hex::encode(report.last_hash);

    let mut served = serve(dir.path()).await;
    let info = served
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.last_sequence, FIXTURE_ENTRIES);
    assert_eq!(info.last_hash, head);

    // Savings: deposits, withdrawals and their reversals.
    // 100,000 at joining, then 10,000 a week for six weeks.
    assert_eq!(served.balance("savings:TB-0021/C1").await, "160000");
    // The same, with the last weekly deposit reversed.
    assert_eq!(served.balance("savings:TB-0040/C1").await, "150000");
    // 50,000 deposited, 20,000 withdrawn.
    assert_eq!(served.balance("savings:TB-0021/V1").await, "30000");
    // 50,000 deposited, 20,000 withdrawn and the withdrawal reversed.
    assert_eq!(served.balance("savings:TB-0025/V1").await, "50000");
    // 100,000, then 5,000 on each of four collection sheets.
    assert_eq!(served.balance("savings:TB-0011/C1").await, "120000");
    // Fees: ten loans and five tranches under version 1 (10,000 each), one
    // loan under version 2 (20,000).
    assert_eq!(served.balance("fee-income:TB/disb").await, "170000");
    // TB-0009/L1 written off after one installment (250,000 of principal
    // repaid), and 100,000 recovered since.
    assert_eq!(served.balance("loan-loss:TB").await, "750000");
    assert_eq!(served.balance("recoveries:TB").await, "100000");

    // Loans.
    let repaid = served.loan("TB-0001/L1").await;
    assert_eq!(repaid.status, pb::LoanStatus::Closed as i32);
    assert_eq!(amount(repaid.principal_outstanding), "0");
    let paid_off = served.loan("TB-0008/L1").await;
    assert_eq!(paid_off.status, pb::LoanStatus::Closed as i32);
    let written_off = served.loan("TB-0009/L1").await;
    assert_eq!(written_off.status, pb::LoanStatus::WrittenOff as i32);
    assert_eq!(amount(written_off.written_off), "750000");
    assert_eq!(amount(written_off.recovered), "100000");
    let cancelled = served.loan("TB-0030/L1").await;
    assert_eq!(cancelled.status, pb::LoanStatus::Cancelled as i32);
    // Its only repayment reversed: all of the principal is owed.
    let unpaid = served.loan("TB-0010/L1").await;
    assert_eq!(unpaid.status, pb::LoanStatus::Active as i32);
    assert_eq!(amount(unpaid.principal_outstanding), "1000000");
    let tranched = served.loan("TB-0011/L1").await;
    assert_eq!(tranched.status, pb::LoanStatus::Closed as i32);
    assert_eq!(amount(tranched.principal_disbursed), "1500000");
    assert_eq!(tranched.product_version, 1);
    let second_version = served.loan("TB-0026/L1").await;
    assert_eq!(second_version.product_id, "FLAT4");
    assert_eq!(second_version.product_version, 2);
    assert_eq!(amount(second_version.principal_outstanding), "1000000");

    // Branch ND's year: five loans of 2,000,000, one installment of each
    // repaid (500,000 principal, 10,000 interest), 100,000 saved by each of
    // ten members.
    let totals = served
        .audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            branch_id: "ND".into(),
            period: Some(pb::get_branch_totals_request::Period::Year(2024)),
        })
        .await
        .unwrap()
        .into_inner()
        .current
        .unwrap();
    assert_eq!(totals.loans_disbursed, 5);
    assert_eq!(amount(totals.amount_disbursed), "10000000");
    assert_eq!(amount(totals.principal_collected), "2500000");
    assert_eq!(amount(totals.interest_collected), "50000");
    assert_eq!(amount(totals.savings_balance), "1000000");
    served.shut().await;
    head
}

/// Issue 9: only encoding version 2 decoded, and no journal written by a
/// release was kept to show that a later build still reads it. This one is:
/// it opens, serves and verifies, and answers the figures its scenario made.
#[tokio::test]
async fn the_fixture_journal_of_release_v3_opens_verifies_and_answers_known_figures() {
    let head = check_fixture(&fixture_dir().join("journal.log")).await;
    assert_eq!(
        head, FIXTURE_HEAD_HASH,
        "the fixture's head entry changed: a released fixture is never rewritten"
    );
}

/// Writes the fixture: runs the scenario through a real server with a fixed
/// clock and copies its journal into `tests/fixtures/v3-journal/`.
#[tokio::test]
#[ignore = "writes tests/fixtures/v3-journal; run by hand before a release"]
async fn regenerate() {
    let mut app = spawn_app().await;
    write_scenario(&mut app).await;
    let written = app.stop().await;
    let target = fixture_dir();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(
        written.path().join("journal.log"),
        target.join("journal.log"),
    )
    .unwrap();
    let head = check_fixture(&target.join("journal.log")).await;
    println!("FIXTURE_HEAD_HASH = {head:?}");
    assert_eq!(
        head, FIXTURE_HEAD_HASH,
        "fixture written; set FIXTURE_HEAD_HASH in tests/ledger/fixture.rs to {head:?}"
    );
}

/// A request id naming an account or a loan (ids hold no '/').
fn request_id(text: &str) -> String {
    text.replace('/', ".")
}

/// The receipt's sequence number of a write.
fn sequence(receipt: Option<pb::EntryReceipt>) -> u64 {
    receipt.expect("a receipt").sequence
}

/// The fixture's scenario: every kind of command, 370 entries.
async fn write_scenario(app: &mut App) {
    structure(app).await;
    savings(app).await;
    catalogue(app).await;
    loans(app).await;
}

/// Branches TB and ND, centers, groups, 50 members with compulsory savings
/// and five with voluntary savings (113 entries).
async fn structure(app: &mut App) {
    for branch in ["TB", "ND"] {
        app.branch
            .create_branch(pb::CreateBranchRequest {
                context: ctx(&format!("fx-branch-{branch}")),
                branch_id: branch.into(),
                name: format!("Chi nhánh {branch}"),
                opened_on: "2024-01-01".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for (center, branch, group) in [
        ("TB-C01", "TB", "TB-G01"),
        ("TB-C02", "TB", "TB-G02"),
        ("ND-C01", "ND", "ND-G01"),
    ] {
        app.branch
            .create_center(pb::CreateCenterRequest {
                context: ctx(&format!("fx-center-{center}")),
                center_id: center.into(),
                branch_id: branch.into(),
                name: format!("Cụm {center}"),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
        app.branch
            .create_group(pb::CreateGroupRequest {
                context: ctx(&format!("fx-group-{group}")),
                group_id: group.into(),
                center_id: center.into(),
                name: format!("Nhóm {group}"),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
    }
    let members = (1..=40)
        .map(|n| {
            (
                format!("TB-{n:04}"),
                if n <= 20 { "TB-G01" } else { "TB-G02" },
            )
        })
        .chain((1..=10).map(|n| (format!("ND-{n:04}"), "ND-G01")));
    for (member, group) in members {
        app.branch
            .register_member(pb::RegisterMemberRequest {
                context: ctx(&format!("fx-register-{member}")),
                member_id: member.clone(),
                full_name: format!("Thành viên {member}"),
                group_id: group.into(),
                joined_on: "2024-01-02".into(),
            })
            .await
            .unwrap();
        open_savings(app, &member, pb::SavingsKind::Compulsory).await;
    }
    for n in 21..=25 {
        open_savings(app, &format!("TB-{n:04}"), pb::SavingsKind::Voluntary).await;
    }
}

async fn open_savings(app: &mut App, member: &str, kind: pb::SavingsKind) {
    app.branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx(&format!("fx-open-{member}-{}", kind as i32)),
            member_id: member.into(),
            kind: kind as i32,
            opened_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
}

/// Deposits, withdrawals and a reversal of each (182 entries).
async fn savings(app: &mut App) {
    let compulsory = (1..=40)
        .map(|n| format!("TB-{n:04}/C1"))
        .chain((1..=10).map(|n| format!("ND-{n:04}/C1")));
    for account in compulsory {
        app.deposit(
            &request_id(&format!("fx-dep-{account}")),
            &account,
            "100000",
            "2024-01-05",
        )
        .await
        .unwrap();
    }
    let mut withdrawal = 0;
    for n in 21..=25 {
        let account = format!("TB-{n:04}/V1");
        app.deposit(
            &request_id(&format!("fx-dep-{account}")),
            &account,
            "50000",
            "2024-01-05",
        )
        .await
        .unwrap();
        let response = app
            .branch
            .withdraw_savings(pb::WithdrawSavingsRequest {
                context: ctx(&request_id(&format!("fx-wd-{account}"))),
                account_id: account,
                amount: vnd("20000"),
                effective_date: "2024-01-20".into(),
            })
            .await
            .unwrap()
            .into_inner();
        withdrawal = sequence(response.receipt);
    }
    // The last withdrawal (TB-0025/V1's) entered by mistake.
    app.reverse("fx-reverse-withdrawal", withdrawal)
        .await
        .unwrap();
    let mut deposit = 0;
    for week in 0..6 {
        let date =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 8).unwrap() + chrono::Duration::weeks(week);
        for n in 21..=40 {
            let account = format!("TB-{n:04}/C1");
            let response = app
                .deposit(
                    &request_id(&format!("fx-weekly-{account}-{week}")),
                    &account,
                    "10000",
                    &date.to_string(),
                )
                .await
                .unwrap();
            deposit = sequence(response.receipt);
        }
    }
    // The last weekly deposit (TB-0040/C1's) entered by mistake.
    app.reverse("fx-reverse-deposit", deposit).await.unwrap();
}

/// Product FLAT4, version 1 and version 2 (2 entries).
async fn catalogue(app: &mut App) {
    let rules = |fee: &str| pb::ProductRules {
        name: "Vốn sản xuất 4 tuần".into(),
        currency: "VND".into(),
        principal_min: "1".into(),
        principal_max: "10000000".into(),
        rate_min_percent: "26".into(),
        rate_max_percent: "26".into(),
        interest_method: pb::InterestMethod::Flat as i32,
        repayment_frequency: pb::RepaymentFrequency::Weekly as i32,
        installments_min: 4,
        tranches_max: 2,
        fees: vec![pb::Fee {
            code: "disb".into(),
            amount: Some(pb::fee::Amount::Fixed(fee.into())),
            collection: pb::FeeCollection::AtDisbursement as i32,
        }],
        ..Default::default()
    };
    let mut catalogue = products(app).await;
    catalogue
        .create_product(pb::CreateProductRequest {
            context: ctx("fx-product"),
            product_id: "FLAT4".into(),
            rules: Some(rules("10000")),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap();
    catalogue
        .update_product(pb::UpdateProductRequest {
            context: ctx("fx-product-v2"),
            product_id: "FLAT4".into(),
            rules: Some(rules("20000")),
            effective_from: "2024-03-01".into(),
        })
        .await
        .unwrap();
}

/// Disbursements with and without a product, tranches, repayments,
/// prepayments, a payoff, a write-off and a recovery, collection sheets, and
/// reversals of a repayment and a disbursement (73 entries).
async fn loans(app: &mut App) {
    for n in 1..=10 {
        let member = format!("TB-{n:04}");
        let terms = flat_weekly("1000000", "26", 4, "2024-02-12");
        app.disburse(&format!("fx-loan-{member}"), &member, terms, "2024-02-05")
            .await
            .unwrap();
    }
    // Installments of each product loan, by member, as the last schedule says.
    let mut installments: Vec<(String, Vec<String>)> = Vec::new();
    for n in 11..=20 {
        let member = format!("TB-{n:04}");
        let mut applied = application("FLAT4", "1000000", "2024-02-12");
        if n <= 15 {
            applied.approved_principal = "1500000".into();
        }
        let response = app
            .disburse_under(&format!("fx-loan-{member}"), &member, applied, "2024-02-05")
            .await
            .unwrap();
        let totals = response.schedule.into_iter().map(|i| amount(i.total));
        installments.push((member, totals.collect()));
    }
    for n in 1..=5 {
        let member = format!("ND-{n:04}");
        let terms = flat_weekly("2000000", "26", 4, "2024-02-12");
        app.disburse(&format!("fx-loan-{member}"), &member, terms, "2024-02-05")
            .await
            .unwrap();
    }
    let terms = flat_weekly("1000000", "26", 4, "2024-02-12");
    let mistaken = app
        .disburse("fx-loan-TB-0030", "TB-0030", terms, "2024-02-05")
        .await
        .unwrap();
    app.reverse("fx-reverse-loan", sequence(mistaken.receipt))
        .await
        .unwrap();
    let under_v2 = application("FLAT4", "1000000", "2024-03-11");
    app.disburse_under("fx-loan-TB-0026", "TB-0026", under_v2, "2024-03-04")
        .await
        .unwrap();
    for (member, totals) in installments.iter_mut().take(5) {
        let response = app
            .branch
            .disburse_tranche(pb::DisburseTrancheRequest {
                context: ctx(&format!("fx-tranche-{member}")),
                loan_id: format!("{member}/L1"),
                amount: vnd("500000"),
                disbursed_on: "2024-02-08".into(),
            })
            .await
            .unwrap()
            .into_inner();
        *totals = response
            .schedule
            .into_iter()
            .map(|i| amount(i.total))
            .collect();
    }
    repayments(app).await;
    for (week, date) in ["2024-02-12", "2024-02-19", "2024-02-26", "2024-03-04"]
        .into_iter()
        .enumerate()
    {
        let lines = installments
            .iter()
            .map(|(member, totals)| pb::CollectionLine {
                member_id: member.clone(),
                loan_id: format!("{member}/L1"),
                repayment: vnd(&totals[week]),
                savings_account_id: format!("{member}/C1"),
                deposit: vnd("5000"),
            })
            .collect();
        app.branch
            .record_collection_sheet(pb::RecordCollectionSheetRequest {
                context: ctx(&format!("fx-sheet-{date}")),
                center_id: "TB-C01".into(),
                meeting_date: date.into(),
                lines,
            })
            .await
            .unwrap();
    }
}

/// Repayments of the loans outside the catalogue (36 entries).
async fn repayments(app: &mut App) {
    let mut reversible = 0;
    for n in 1..=10 {
        let loan = format!("TB-{n:04}/L1");
        let paid = app
            .repay(
                &request_id(&format!("fx-repay-{loan}-1")),
                &loan,
                "255000",
                "2024-02-12",
            )
            .await
            .unwrap();
        reversible = sequence(paid.receipt);
    }
    // TB-0010's payment entered by mistake.
    app.reverse("fx-reverse-repayment", reversible)
        .await
        .unwrap();
    for n in 1..=5 {
        let member = format!("ND-{n:04}");
        let loan = format!("{member}/L1");
        app.repay(
            &request_id(&format!("fx-repay-{loan}-1")),
            &loan,
            "510000",
            "2024-02-12",
        )
        .await
        .unwrap();
    }
    for (number, date) in [(2, "2024-02-19"), (3, "2024-02-26"), (4, "2024-03-04")] {
        for n in 1..=5 {
            let loan = format!("TB-{n:04}/L1");
            let request = request_id(&format!("fx-repay-{loan}-{number}"));
            app.repay(&request, &loan, "255000", date).await.unwrap();
        }
    }
    // Installment 2 and 245,000 paid ahead.
    for n in 6..=7 {
        let loan = format!("TB-{n:04}/L1");
        app.repay(
            &request_id(&format!("fx-prepay-{loan}")),
            &loan,
            "500000",
            "2024-02-19",
        )
        .await
        .unwrap();
    }
    let quote = app
        .audit
        .get_payoff_quote(pb::GetPayoffQuoteRequest {
            loan_id: "TB-0008/L1".into(),
            as_of_date: "2024-02-19".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let payoff = amount(quote.total);
    app.repay("fx-payoff-TB-0008", "TB-0008/L1", &payoff, "2024-02-19")
        .await
        .unwrap();
    app.branch
        .write_off_loan(pb::WriteOffLoanRequest {
            context: ctx("fx-write-off-TB-0009"),
            loan_id: "TB-0009/L1".into(),
            reason: "member moved away".into(),
            effective_date: "2024-04-01".into(),
        })
        .await
        .unwrap();
    app.repay("fx-recovery-TB-0009", "TB-0009/L1", "100000", "2024-05-02")
        .await
        .unwrap();
}
