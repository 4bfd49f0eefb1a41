//! The journal of the books' entries, kept as `tests/fixtures/books-journal/`
//! as `fixture.rs` and `fixture_v4.rs` keep theirs: every later release must
//! verify it. It holds the entry kinds added with the books (encoding
//! version 4, rules version 2): savings products defined and given a new
//! version, savings interest posted, a month closed, reopened with a second
//! manager's approval and closed again, and a year-end close carrying a
//! year's result into retained earnings.
//!
//! The generator is the ignored test `regenerate_books` (`cargo test --test
//! ledger fixture_books::regenerate_books -- --ignored --nocapture`, then set
//! the constants below to what it prints). Tokens are random, so each run
//! writes another journal; once released, the fixture is frozen.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mfi_ledger::domain::command::CommandBody;
use mfi_ledger::domain::entry::{EntryBody, Outcome};
use mfi_ledger::pb;
use mfi_ledger::pb::product_service_client::ProductServiceClient;

use crate::support::{App, connect, ctx, flat_weekly, spawn_app};

/// Entries in the fixture.
const BOOKS_ENTRIES: u64 = 26;
/// Hash of its last entry.
const BOOKS_HEAD_HASH: &str = "34e6c0c0db1b0d9ad11174657050b9d8fd6ffa4cb837f6aabdf28d3e22440f9d";

fn fixture_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/books-journal")
}

/// The books' entry kinds, and whether the journal holds them.
fn kinds(entries: &[EntryBody]) -> BTreeSet<&'static str> {
    let mut kinds = BTreeSet::new();
    for entry in entries {
        match (&entry.command, &entry.outcome) {
            (CommandBody::DefineSavingsProduct { .. }, Outcome::ProductDefined { version: 2 }) => {
                kinds.insert("savings product version 2");
            }
            (CommandBody::DefineSavingsProduct { .. }, _) => {
                kinds.insert("savings product");
            }
            (
                CommandBody::PostSavingsInterest { .. },
                Outcome::SavingsInterestPosted { credited, .. },
            ) if !credited.is_empty() => {
                kinds.insert("interest posted");
            }
            (CommandBody::ClosePeriod { .. }, Outcome::PeriodClosed { carried: true, .. })
                if !entry.postings.is_empty() =>
            {
                kinds.insert("year-end close");
            }
            (CommandBody::ClosePeriod { .. }, Outcome::PeriodClosed { carried: false, .. }) => {
                kinds.insert("close");
            }
            (CommandBody::ReopenPeriod { .. }, Outcome::PeriodReopened { .. })
                if entry
                    .attribution
                    .as_ref()
                    .is_some_and(|a| a.approval.is_some()) =>
            {
                kinds.insert("approved reopening");
            }
            _ => {}
        }
    }
    kinds
}

const KINDS: [&str; 6] = [
    "approved reopening",
    "close",
    "interest posted",
    "savings product",
    "savings product version 2",
    "year-end close",
];

/// Written by a released build: it verifies, its head is what it was, and
/// it holds every kind of the books' entries.
#[test]
fn the_books_fixture_verifies_and_holds_every_kind() {
    crate::fixture::verify_frozen(&fixture_dir(), BOOKS_ENTRIES, BOOKS_HEAD_HASH);
    let entries = crate::fixture::journal_entries(&fixture_dir());
    assert_eq!(kinds(&entries), KINDS.into_iter().collect());
}

/// Writes the fixture.
#[tokio::test]
#[ignore = "writes tests/fixtures/books-journal; run by hand before a release"]
async fn regenerate_books() {
    let mut app = spawn_app().await;
    books_scenario(&mut app).await;
    let written = app.stop().await;
    let report = mfi_ledger::verify::verify(written.path()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(fixture_dir()).unwrap();
    std::fs::copy(
        written.path().join("journal.log"),
        fixture_dir().join("journal.log"),
    )
    .unwrap();
    println!(
        "BOOKS_ENTRIES = {}; BOOKS_HEAD_HASH = {:?}",
        report.entries,
        hex::encode(report.last_hash)
    );
}

/// Branch YB, opened 2023-01-01: a member saving and borrowing through
/// 2023, savings products from 2023-01-01 (voluntary changed in June),
/// interest posted for January to March, March closed, reopened and closed
/// again, and the year 2023 closed with its interest income and expense.
async fn books_scenario(app: &mut App) {
    let b = &mut app.branch;
    b.create_branch(pb::CreateBranchRequest {
        context: ctx("fxb-branch"),
        branch_id: "YB".into(),
        name: "Chi nhánh Yên Bái".into(),
        opened_on: "2023-01-01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    b.create_center(pb::CreateCenterRequest {
        context: ctx("fxb-center"),
        center_id: "YB-C01".into(),
        branch_id: "YB".into(),
        name: "Cụm 1".into(),
        opened_on: "2023-01-01".into(),
    })
    .await
    .unwrap();
    b.create_group(pb::CreateGroupRequest {
        context: ctx("fxb-group"),
        group_id: "YB-G01".into(),
        center_id: "YB-C01".into(),
        name: "Nhóm 1".into(),
        opened_on: "2023-01-01".into(),
    })
    .await
    .unwrap();
    b.register_member(pb::RegisterMemberRequest {
        context: ctx("fxb-member"),
        member_id: "YB-0001".into(),
        full_name: "Lê Thị Mai".into(),
        group_id: "YB-G01".into(),
        joined_on: "2023-01-02".into(),
    })
    .await
    .unwrap();
    for (kind, id) in [
        (pb::SavingsKind::Compulsory, "fxb-open-c"),
        (pb::SavingsKind::Voluntary, "fxb-open-v"),
    ] {
        b.open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx(id),
            member_id: "YB-0001".into(),
            kind: kind as i32,
            opened_on: "2023-01-02".into(),
        })
        .await
        .unwrap();
    }
    let mut products = ProductServiceClient::new(connect(app.address, &app.token).await);
    for (id, kind, rate, from, request) in [
        (
            "SAVE-C",
            pb::SavingsKind::Compulsory,
            "3",
            "2023-01-01",
            "fxb-sp-c",
        ),
        (
            "SAVE-V",
            pb::SavingsKind::Voluntary,
            "5",
            "2023-01-01",
            "fxb-sp-v",
        ),
        (
            "SAVE-V",
            pb::SavingsKind::Voluntary,
            "6",
            "2023-06-01",
            "fxb-sp-v2",
        ),
    ] {
        products
            .define_savings_product(pb::DefineSavingsProductRequest {
                context: ctx(request),
                product_id: id.into(),
                name: format!("Tiết kiệm {id}"),
                kind: kind as i32,
                interest: Some(pb::SavingsInterestRules {
                    annual_rate_percent: rate.into(),
                    posting: pb::PostingFrequency::Monthly as i32,
                    rounding_multiple: "1".into(),
                    rounding_mode: pb::RoundingMode::HalfEven as i32,
                }),
                effective_from: from.into(),
            })
            .await
            .unwrap();
    }
    app.deposit("fxb-in-v", "YB-0001/V1", "3000000", "2023-01-05")
        .await
        .unwrap();
    app.deposit("fxb-in-c", "YB-0001/C1", "500000", "2023-01-05")
        .await
        .unwrap();
    app.disburse(
        "fxb-loan",
        "YB-0001",
        flat_weekly("2000000", "20", 10, "2023-01-12"),
        "2023-01-05",
    )
    .await
    .unwrap();
    app.repay("fxb-pay", "YB-0001/L1", "800000", "2023-02-02")
        .await
        .unwrap();
    let post = |period_end: &'static str| pb::PostSavingsInterestRequest {
        context: ctx(&format!("fxb-interest-{period_end}")),
        branch_id: "YB".into(),
        period_end: period_end.into(),
    };
    for period_end in ["2023-01-31", "2023-02-28", "2023-03-31"] {
        app.branch
            .post_savings_interest(post(period_end))
            .await
            .unwrap();
    }
    let close = |request: &str, through: &str| pb::ClosePeriodRequest {
        context: ctx(request),
        branch_id: "YB".into(),
        through: through.into(),
    };
    app.branch
        .close_period(close("fxb-close-march", "2023-03-31"))
        .await
        .unwrap();
    let asked = app
        .branch
        .reopen_period(pb::ReopenPeriodRequest {
            context: ctx("fxb-reopen"),
            branch_id: "YB".into(),
            from: "2023-03-01".into(),
            reason: "a repayment of March was left out".into(),
        })
        .await
        .unwrap()
        .into_inner();
    app.approve(asked.pending.expect("reopening waits").request)
        .await
        .unwrap();
    app.repay("fxb-pay-march", "YB-0001/L1", "440000", "2023-03-20")
        .await
        .unwrap();
    app.branch
        .close_period(close("fxb-close-march-again", "2023-03-31"))
        .await
        .unwrap();
    app.deposit("fxb-in-v-june", "YB-0001/V1", "1000000", "2023-06-15")
        .await
        .unwrap();
    app.branch
        .close_period(close("fxb-close-2023", "2023-12-31"))
        .await
        .unwrap();
}
