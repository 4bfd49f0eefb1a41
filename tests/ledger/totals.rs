//! Branch totals on a small hand-made history whose figures are worked out
//! by hand below, independently of the code.
//!
//! Branch TB, all loans flat at 12% a year, monthly (1% a month):
//! - A joins 2022-01-05, saves 300,000 on 2022-01-10 and (entered last,
//!   back-dated) 20,000 on 2022-12-31. Loan 5,000,000 on 2022-03-01 over 10
//!   installments of 500,000 principal + 50,000 interest. Pays 550,000 on
//!   2022-04-01 and 2022-05-02, and the remaining 8 x 550,000 = 4,400,000 on
//!   2023-01-15 (closing it). Withdraws 50,000 on 2023-02-01.
//! - B joins 2023-01-10, saves 100,000 on 2023-01-20. Loan 2,000,000 on
//!   2023-02-01 over 4 x (500,000 + 20,000); pays all 2,080,000 on 2023-12-01.
//! - C joins 2023-01-10, saves 150,000 on 2023-05-20. Loan 3,000,000 on
//!   2023-06-01 over 3 x (1,000,000 + 30,000); pays 1,030,000 on 2023-07-01.
//!   A mistaken 999 deposit on 2023-08-01 is reversed.
//!
//! 2022: 1 loan, 5,000,000 disbursed; collected 1,000,000 principal and
//! 100,000 interest; savings 320,000 at year end; borrowers: A (1), portfolio
//! 4,000,000.
//! 2023: 2 loans, 5,000,000 disbursed (average 2,500,000); collected
//! 4,000,000 + 2,000,000 + 1,000,000 = 7,000,000 principal and 400,000 +
//! 80,000 + 30,000 = 510,000 interest; savings 270,000 + 100,000 + 150,000 =
//! 520,000; borrowers at year end: C only (1, saving: 100%); portfolio
//! 2,000,000.

use mfi_ledger::pb;
use mfi_ledger::pb::get_branch_totals_request::Period;

use crate::support::{App, ctx, spawn_app, vnd};

fn monthly(principal: &str, installments: u32, first: &str) -> pb::LoanTerms {
    pb::LoanTerms {
        principal: vnd(principal),
        annual_interest_rate_percent: "12".into(),
        interest_method: pb::InterestMethod::Flat as i32,
        installment_count: installments,
        repayment_frequency: pb::RepaymentFrequency::Monthly as i32,
        first_repayment_date: first.into(),
        rounding_multiple: String::new(),
    }
}

async fn join(app: &mut App, member: &str, on: &str) {
    app.branch
        .register_member(pb::RegisterMemberRequest {
            context: ctx(&format!("join-{member}")),
            member_id: member.into(),
            full_name: format!("Thành viên {member}"),
            group_id: "G1".into(),
            joined_on: on.into(),
        })
        .await
        .unwrap();
    app.branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx(&format!("open-{member}")),
            member_id: member.into(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: on.into(),
        })
        .await
        .unwrap();
}

pub(crate) async fn history() -> App {
    let mut app = spawn_app().await;
    let b = &mut app.branch;
    b.create_branch(pb::CreateBranchRequest {
        context: ctx("branch"),
        branch_id: "TB".into(),
        name: "TYM - Chi nhánh Thái Bình".into(),
        opened_on: "2022-01-01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    b.create_center(pb::CreateCenterRequest {
        context: ctx("center"),
        center_id: "C1".into(),
        branch_id: "TB".into(),
        name: "Cụm 1".into(),
        opened_on: "2022-01-01".into(),
    })
    .await
    .unwrap();
    b.create_group(pb::CreateGroupRequest {
        context: ctx("group"),
        group_id: "G1".into(),
        center_id: "C1".into(),
        name: "Nhóm 1".into(),
        opened_on: "2022-01-01".into(),
    })
    .await
    .unwrap();
    join(&mut app, "A", "2022-01-05").await;
    app.deposit("a-save", "A/C1", "300000", "2022-01-10")
        .await
        .unwrap();
    app.disburse(
        "a-loan",
        "A",
        monthly("5000000", 10, "2022-04-01"),
        "2022-03-01",
    )
    .await
    .unwrap();
    app.repay("a-pay-1", "A/L1", "550000", "2022-04-01")
        .await
        .unwrap();
    app.repay("a-pay-2", "A/L1", "550000", "2022-05-02")
        .await
        .unwrap();
    join(&mut app, "B", "2023-01-10").await;
    join(&mut app, "C", "2023-01-10").await;
    let closed = app
        .repay("a-pay-3", "A/L1", "4400000", "2023-01-15")
        .await
        .unwrap();
    assert!(closed.loan_closed);
    app.deposit("b-save", "B/C1", "100000", "2023-01-20")
        .await
        .unwrap();
    app.branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("a-withdraw"),
            account_id: "A/C1".into(),
            amount: vnd("50000"),
            effective_date: "2023-02-01".into(),
        })
        .await
        .unwrap();
    app.disburse(
        "b-loan",
        "B",
        monthly("2000000", 4, "2023-03-01"),
        "2023-02-01",
    )
    .await
    .unwrap();
    app.deposit("c-save", "C/C1", "150000", "2023-05-20")
        .await
        .unwrap();
    app.disburse(
        "c-loan",
        "C",
        monthly("3000000", 3, "2023-07-01"),
        "2023-06-01",
    )
    .await
    .unwrap();
    app.repay("c-pay-1", "C/L1", "1030000", "2023-07-01")
        .await
        .unwrap();
    let mistake = app
        .deposit("c-typo", "C/C1", "999", "2023-08-01")
        .await
        .unwrap();
    app.reverse_approved(pb::ReverseEntryRequest {
        context: ctx("c-typo-reversed"),
        sequence: mistake.receipt.unwrap().sequence,
        reason: "typed into the wrong account".into(),
        effective_date: String::new(),
    })
    .await
    .unwrap();
    let closed = app
        .repay("b-pay", "B/L1", "2080000", "2023-12-01")
        .await
        .unwrap();
    assert!(closed.loan_closed);
    app.deposit("a-save-late", "A/C1", "20000", "2022-12-31")
        .await
        .unwrap();
    app
}

/// The figures of a period as (name, value) pairs, amounts as the API prints them.
fn figures(totals: &pb::PeriodTotals) -> Vec<(&'static str, String)> {
    let amount = |m: &Option<pb::Money>| m.as_ref().unwrap().amount.clone();
    vec![
        ("from", totals.from_date.clone()),
        ("to", totals.to_date.clone()),
        ("loans", totals.loans_disbursed.to_string()),
        ("disbursed", amount(&totals.amount_disbursed)),
        ("average", amount(&totals.average_loan)),
        ("principal", amount(&totals.principal_collected)),
        ("interest", amount(&totals.interest_collected)),
        ("savings", amount(&totals.savings_balance)),
        ("borrowers", totals.borrowers.to_string()),
        ("saving", totals.borrowers_with_savings.to_string()),
        ("percent", totals.borrowers_with_savings_percent.clone()),
        ("portfolio", amount(&totals.portfolio_outstanding)),
    ]
}

fn expect(values: [&str; 12]) -> Vec<(&'static str, String)> {
    let names = [
        "from",
        "to",
        "loans",
        "disbursed",
        "average",
        "principal",
        "interest",
        "savings",
        "borrowers",
        "saving",
        "percent",
        "portfolio",
    ];
    names.into_iter().zip(values.map(String::from)).collect()
}

async fn totals(app: &mut App, period: Period) -> pb::GetBranchTotalsResponse {
    let request = pb::GetBranchTotalsRequest {
        as_of_sequence: 0,
        branch_id: "TB".into(),
        period: Some(period),
    };
    app.audit
        .get_branch_totals(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_year_beside_the_year_before_with_the_change() {
    let mut app = history().await;
    let year = totals(&mut app, Period::Year(2023)).await;
    assert_eq!(
        figures(year.current.as_ref().unwrap()),
        expect([
            "2023-01-01",
            "2023-12-31",
            "2",
            "5000000",
            "2500000",
            "7000000",
            "510000",
            "520000",
            "1",
            "1",
            "100.00",
            "2000000"
        ])
    );
    assert_eq!(
        figures(year.previous.as_ref().unwrap()),
        expect([
            "2022-01-01",
            "2022-12-31",
            "1",
            "5000000",
            "5000000",
            "1000000",
            "100000",
            "320000",
            "1",
            "1",
            "100.00",
            "4000000"
        ])
    );
    assert_eq!(
        figures(year.change.as_ref().unwrap()),
        expect([
            "2023-01-01",
            "2023-12-31",
            "1",
            "0",
            "-2500000",
            "6000000",
            "410000",
            "200000",
            "0",
            "0",
            "0.00",
            "-2000000"
        ])
    );
}

#[tokio::test]
async fn a_month_and_a_range_of_days_with_the_periods_before_them() {
    let mut app = history().await;
    // June 2023: C's loan; at month end B and C both owe (2,000,000 + 3,000,000).
    let june = totals(&mut app, Period::Month("2023-06".into())).await;
    assert_eq!(
        figures(june.current.as_ref().unwrap()),
        expect([
            "2023-06-01",
            "2023-06-30",
            "1",
            "3000000",
            "3000000",
            "0",
            "0",
            "520000",
            "2",
            "2",
            "100.00",
            "5000000"
        ])
    );
    assert_eq!(
        figures(june.previous.as_ref().unwrap()),
        expect([
            "2023-05-01",
            "2023-05-31",
            "0",
            "0",
            "0",
            "0",
            "0",
            "520000",
            "1",
            "1",
            "100.00",
            "2000000"
        ])
    );
    // January 2023 as 31 days: A's closing payment; before it, December 2022
    // with A's back-dated deposit.
    let range = pb::DateRange {
        from_date: "2023-01-01".into(),
        to_date: "2023-01-31".into(),
    };
    let january = totals(&mut app, Period::Range(range)).await;
    assert_eq!(
        figures(january.current.as_ref().unwrap()),
        expect([
            "2023-01-01",
            "2023-01-31",
            "0",
            "0",
            "0",
            "4000000",
            "400000",
            "420000",
            "0",
            "0",
            "0.00",
            "0"
        ])
    );
    assert_eq!(
        figures(january.previous.as_ref().unwrap()),
        expect([
            "2022-12-01",
            "2022-12-31",
            "0",
            "0",
            "0",
            "0",
            "0",
            "320000",
            "1",
            "1",
            "100.00",
            "4000000"
        ])
    );
}

#[tokio::test]
async fn totals_survive_a_restart_and_refuse_bad_periods() {
    let app = history().await;
    let mut app = app.restart().await;
    let year = totals(&mut app, Period::Year(2023)).await;
    assert_eq!(
        year.current.unwrap().amount_disbursed.unwrap().amount,
        "5000000"
    );
    for (period, field) in [
        (Period::Month("2023-13".into()), "month"),
        (
            Period::Range(pb::DateRange {
                from_date: "2023-02-01".into(),
                to_date: "2023-01-01".into(),
            }),
            "range.to_date",
        ),
        (Period::Year(0), "year"),
    ] {
        let request = pb::GetBranchTotalsRequest {
            as_of_sequence: 0,
            branch_id: "TB".into(),
            period: Some(period),
        };
        let status = app.audit.get_branch_totals(request).await.unwrap_err();
        crate::support::assert_refused(&status, tonic::Code::InvalidArgument, field);
    }
    let request = pb::GetBranchTotalsRequest {
        as_of_sequence: 0,
        branch_id: "TB".into(),
        period: None,
    };
    let status = app.audit.get_branch_totals(request).await.unwrap_err();
    crate::support::assert_refused(&status, tonic::Code::InvalidArgument, "period");
}

/// Totals of branch TB over January and February 2024.
async fn early_2024(app: &mut App) -> pb::PeriodTotals {
    totals(
        app,
        Period::Range(pb::DateRange {
            from_date: "2024-01-01".into(),
            to_date: "2024-02-29".into(),
        }),
    )
    .await
    .current
    .unwrap()
}

/// A borrower with nothing in her savings account does not save: holding
/// the account a disbursement requires is not saving. Reproduces "borrowers
/// who save" counting account holders, 100 % by construction.
#[tokio::test]
async fn borrowers_who_save_have_a_positive_balance_at_the_periods_end() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    app.deposit("save-2", "TB-0002/C1", "100000", "2024-01-05")
        .await
        .unwrap();
    for member in ["TB-0001", "TB-0002"] {
        app.disburse(
            &format!("loan-{member}"),
            member,
            crate::support::flat_weekly("1000000", "24", 10, "2024-01-17"),
            "2024-01-10",
        )
        .await
        .unwrap();
    }
    let t = early_2024(&mut app).await;
    assert_eq!(t.borrowers, 2);
    // TB-0001's balance is 0: only TB-0002 saves.
    assert_eq!(t.borrowers_with_savings, 1);
    assert_eq!(t.borrowers_with_savings_percent, "50.00");
}

/// Repayments collected are principal, interest and the fees paid with
/// installments; a fee withheld from the disbursement is a fee collected but
/// not a repayment. Reproduces the report adding withheld fees into
/// "repayments collected".
#[tokio::test]
async fn repayments_collected_leave_out_fees_withheld_at_disbursement() {
    use crate::support::{application, create_product, product_rules};

    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    // Flat 24% monthly over 4: 250,000 principal + 20,000 interest a month;
    // 20,000 withheld from the disbursement, 15,000 with the first installment.
    create_product(
        &app,
        "FEES",
        pb::ProductRules {
            fees: vec![
                pb::Fee {
                    code: "disbursement".into(),
                    amount: Some(pb::fee::Amount::Fixed("20000".into())),
                    collection: pb::FeeCollection::AtDisbursement as i32,
                },
                pb::Fee {
                    code: "insurance".into(),
                    amount: Some(pb::fee::Amount::Fixed("15000".into())),
                    collection: pb::FeeCollection::WithFirstInstallment as i32,
                },
            ],
            ..product_rules(
                pb::InterestMethod::Flat,
                pb::RepaymentFrequency::Monthly,
                "24",
                4,
            )
        },
    )
    .await;
    let loan = app
        .disburse_under(
            "loan",
            "TB-0001",
            application("FEES", "1000000", "2024-02-01"),
            "2024-01-02",
        )
        .await
        .unwrap()
        .loan_id;
    app.repay("pay-1", &loan, "285000", "2024-02-01")
        .await
        .unwrap();
    let t = early_2024(&mut app).await;
    let money = |m: &Option<pb::Money>| m.as_ref().unwrap().amount.clone();
    assert_eq!(money(&t.principal_collected), "250000");
    assert_eq!(money(&t.interest_collected), "20000");
    assert_eq!(money(&t.fees_collected), "35000");
    assert_eq!(money(&t.fees_withheld_at_disbursement), "20000");
    // 250,000 + 20,000 + 15,000: what the borrower paid back.
    assert_eq!(money(&t.repayments_collected), "285000");
}
