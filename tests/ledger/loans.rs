//! A loan's life after disbursement: tranches, prepayment, payoff, arrears,
//! write-off and recovery. Every expected figure is worked out by hand beside
//! it (declining balance at 52% a year weekly is 1% a week).

use mfi_ledger::domain::account::AccountId;
use mfi_ledger::domain::ids::LoanId;
use mfi_ledger::pb;
use tonic::Code;

use crate::support::{
    App, amount, application, assert_refused, books, borrower, chart, create_product, ctx,
    flat_weekly, loans_in_arrears, product_rules, spawn_app, vnd,
};

/// Declining balance, weekly, 52% a year (1% a week), 4 installments.
fn declining() -> pb::ProductRules {
    product_rules(
        pb::InterestMethod::DecliningBalance,
        pb::RepaymentFrequency::Weekly,
        "52",
        4,
    )
}

/// (due date, principal, interest, total) of each installment.
fn rows(schedule: &[pb::Installment]) -> Vec<(String, String, String, String)> {
    schedule
        .iter()
        .map(|i| {
            (
                i.due_date.clone(),
                amount(&i.principal).to_owned(),
                amount(&i.interest).to_owned(),
                amount(&i.total).to_owned(),
            )
        })
        .collect()
}

fn row(
    due: &str,
    principal: &str,
    interest: &str,
    total: &str,
) -> (String, String, String, String) {
    (due.into(), principal.into(), interest.into(), total.into())
}

/// The schedule of 1,000,000 at 1% a week over 4 weeks from 15 January.
///
/// Annuity 1,000,000 x 0.01 / (1 - 1.01^-4) = 256,281.09 -> 256,281.
/// 1: interest 10,000; principal 246,281; left 753,719.
/// 2: interest 7,537.19 -> 7,537; principal 248,744; left 504,975.
/// 3: interest 5,049.75 -> 5,050; principal 251,231; left 253,744.
/// 4: interest 2,537.44 -> 2,537; principal the rest 253,744; 256,281.
fn million_over_four_weeks() -> Vec<(String, String, String, String)> {
    vec![
        row("2024-01-15", "246281", "10000", "256281"),
        row("2024-01-22", "248744", "7537", "256281"),
        row("2024-01-29", "251231", "5050", "256281"),
        row("2024-02-05", "253744", "2537", "256281"),
    ]
}

async fn tranche(
    app: &mut App,
    request_id: &str,
    loan: &str,
    amount: &str,
    date: &str,
) -> Result<pb::DisburseTrancheResponse, tonic::Status> {
    app.branch
        .disburse_tranche(pb::DisburseTrancheRequest {
            context: ctx(request_id),
            loan_id: loan.into(),
            amount: vnd(amount),
            disbursed_on: date.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn write_off(
    app: &mut App,
    request_id: &str,
    loan: &str,
    date: &str,
) -> Result<pb::WriteOffLoanResponse, tonic::Status> {
    app.write_off_approved(pb::WriteOffLoanRequest {
        context: ctx(request_id),
        loan_id: loan.into(),
        reason: "member moved away, unreachable".into(),
        effective_date: date.into(),
    })
    .await
}

async fn payoff_quote(
    app: &mut App,
    loan: &str,
    date: &str,
) -> Result<pb::GetPayoffQuoteResponse, tonic::Status> {
    app.audit
        .get_payoff_quote(pb::GetPayoffQuoteRequest {
            loan_id: loan.into(),
            as_of_date: date.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn in_arrears(app: &mut App, date: &str) -> Vec<pb::LoanArrears> {
    loans_in_arrears(app, "TB", date).await
}

#[tokio::test]
async fn tranches_recompute_the_schedule_within_the_approved_principal() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    create_product(
        &app,
        "GROWTH",
        pb::ProductRules {
            tranches_max: 2,
            ..declining()
        },
    )
    .await;
    let disbursed = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            pb::LoanApplication {
                approved_principal: "2500000".into(),
                ..application("GROWTH", "1000000", "2024-01-15")
            },
            "2024-01-08",
        )
        .await
        .unwrap();
    let loan = disbursed.loan_id.clone();
    assert_eq!(rows(&disbursed.schedule), million_over_four_weeks());
    app.repay("pay-1", &loan, "256281", "2024-01-15")
        .await
        .unwrap();

    let accounts = ["cash:TB", "loan:TB-0001/L1", "interest-income:TB"];
    let before = books(&mut app, &accounts).await;
    // 1,000,000 + 1,500,001 is beyond the approved 2,500,000.
    let status = tranche(&mut app, "too-much", &loan, "1500001", "2024-01-18")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    // On the last due date nothing is left to repay a tranche with.
    let status = tranche(&mut app, "too-late", &loan, "1000000", "2024-02-05")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "disbursed_on");
    assert_eq!(books(&mut app, &accounts).await, before);

    // A tranche of 1,000,000 on 18 January, 3 days into the week 15-22 January.
    // Balance before: 753,719; after: 1,753,719.
    // Week 2's interest, day-weighted: 7,537 less the 4 days left on the old
    // balance (753,719 x 1% x 4/7 = 4,306.97 -> 4,307) = 3,230, plus the 4 days
    // on the new balance (1,753,719 x 1% x 4/7 = 10,021.25 -> 10,021): 13,251.
    // New annuity over 3 weeks: 1,753,719 x 0.01 / (1 - 1.01^-3) = 596,303.24
    // -> 596,303.
    // 2: principal 596,303 - 13,251 = 583,052; left 1,170,667.
    // 3: interest 11,706.67 -> 11,707; principal 584,596; left 586,071.
    // 4: interest 5,860.71 -> 5,861; principal the rest 586,071; 591,932.
    let added = tranche(&mut app, "tranche-2", &loan, "1000000", "2024-01-18")
        .await
        .unwrap();
    assert_eq!(amount(&added.principal_disbursed), "1000000");
    assert_eq!(amount(&added.fees_at_disbursement), "0");
    assert_eq!(
        rows(&added.schedule),
        vec![
            row("2024-01-22", "583052", "13251", "596303"),
            row("2024-01-29", "584596", "11707", "596303"),
            row("2024-02-05", "586071", "5861", "591932"),
        ]
    );
    let after: Vec<&str> = added
        .schedule
        .iter()
        .map(|i| amount(&i.balance_after))
        .collect();
    assert_eq!(after, vec!["1170667", "586071", "0"]);

    let state = app.loan(&loan, "2024-01-18").await;
    assert_eq!(amount(&state.approved_principal), "2500000");
    assert_eq!(amount(&state.principal_disbursed), "2000000");
    // 2,000,000 - 246,281 repaid.
    assert_eq!(amount(&state.principal_outstanding), "1753719");
    let scheduled: i64 = state
        .schedule
        .iter()
        .map(|i| amount(&i.principal).parse::<i64>().unwrap())
        .sum();
    assert_eq!(scheduled, 2_000_000);
    // Installment 1 stays as it was paid.
    assert_eq!(
        rows(&state.schedule[..1]),
        vec![row("2024-01-15", "246281", "10000", "256281")]
    );
    assert_eq!(rows(&state.schedule[1..]), rows(&added.schedule));
    assert_eq!(app.balance("loan:TB-0001/L1").await, "1753719");
    // -1,000,000 + 256,281 - 1,000,000.
    assert_eq!(app.balance("cash:TB").await, "-1743719");

    // The product allows two tranches: a third is refused though within the
    // approved principal (2,000,001 of 2,500,000).
    let before = books(&mut app, &accounts).await;
    let status = tranche(&mut app, "third", &loan, "1", "2024-01-19")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
    assert_eq!(books(&mut app, &accounts).await, before);

    // No tranche on a loan that is no longer active.
    let other = app
        .disburse_under(
            "loan-2",
            "TB-0002",
            pb::LoanApplication {
                approved_principal: "2000000".into(),
                ..application("GROWTH", "1000000", "2024-01-15")
            },
            "2024-01-08",
        )
        .await
        .unwrap();
    write_off(&mut app, "write-off-2", &other.loan_id, "2024-01-10")
        .await
        .unwrap();
    let status = tranche(&mut app, "dead", &other.loan_id, "1000", "2024-01-11")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
}

/// TB-0001's loan TB-0001/L1 under DECLINE: 1,000,000 VND disbursed on 8
/// January, first due 15 January.
async fn declining_loan() -> (App, String) {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    create_product(&app, "DECLINE", declining()).await;
    let loan = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            application("DECLINE", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    (app, loan)
}

#[tokio::test]
async fn prepaying_a_declining_balance_loan_lowers_the_later_installments() {
    let (mut app, loan) = declining_loan().await;
    // 556,281 on 15 January: installment 1 (256,281), then 300,000 ahead.
    // Interest accrued in week 2 by its first day: none. So 300,000 principal
    // is prepaid: the balance falls from 753,719 to 453,719.
    let paid = app
        .repay("pay-1", &loan, "556281", "2024-01-15")
        .await
        .unwrap();
    assert_eq!(amount(&paid.interest_paid), "10000");
    // 246,281 of installment 1 and 300,000 ahead.
    assert_eq!(amount(&paid.principal_paid), "546281");
    assert_eq!(amount(&paid.principal_outstanding), "453719");
    assert!(!paid.loan_closed);
    let allocation = paid.allocation.unwrap();
    assert_eq!(amount(&allocation.principal_prepaid), "300000");
    assert_eq!(amount(&allocation.fees_paid), "0");

    // Recomputed on 453,719 over the 3 weeks left:
    // annuity 453,719 x 0.01 / (1 - 1.01^-3) = 154,274.49 -> 154,274.
    // 2: interest 4,537.19 -> 4,537; principal 149,737; left 303,982.
    // 3: interest 3,039.82 -> 3,040; principal 151,234; left 152,748.
    // 4: interest 1,527.48 -> 1,527; principal 152,748; total 154,275.
    // Each is smaller than before (256,281).
    let state = app.loan(&loan, "2024-01-15").await;
    let mut expected = million_over_four_weeks();
    expected.truncate(1);
    expected.extend([
        row("2024-01-22", "149737", "4537", "154274"),
        row("2024-01-29", "151234", "3040", "154274"),
        row("2024-02-05", "152748", "1527", "154275"),
    ]);
    assert_eq!(rows(&state.schedule), expected);
    assert_eq!(state.schedule[0].status, pb::InstallmentStatus::Paid as i32);
    // 4,537 + 3,040 + 1,527.
    assert_eq!(amount(&state.interest_outstanding), "9104");
    assert_eq!(app.balance("loan:TB-0001/L1").await, "453719");
    assert_eq!(app.balance("interest-income:TB").await, "10000");

    // The new installment pays the new figures.
    let paid = app
        .repay("pay-2", &loan, "154274", "2024-01-22")
        .await
        .unwrap();
    assert_eq!(amount(&paid.interest_paid), "4537");
    assert_eq!(amount(&paid.principal_outstanding), "303982");
    assert_eq!(amount(&paid.allocation.unwrap().principal_prepaid), "0");
}

#[tokio::test]
async fn paying_off_mid_period_charges_interest_to_the_date_and_closes_the_loan() {
    let (mut app, loan) = declining_loan().await;
    // Nothing paid by 19 January, 4 days into the week 15-22 January.
    // Due: installment 1 (principal 246,281, interest 10,000).
    // Accrued: week 2 on its balance 753,719 for 4 of 7 days,
    // 753,719 x 1% x 4/7 = 4,306.97; counted as week 2's 7,537 less the 3 days
    // left (753,719 x 1% x 3/7 = 3,230.22 -> 3,230): 4,307.
    // Total: 1,000,000 + 10,000 + 4,307 = 1,014,307.
    let quote = payoff_quote(&mut app, &loan, "2024-01-19").await.unwrap();
    assert_eq!(quote.as_of_date, "2024-01-19");
    assert_eq!(amount(&quote.principal), "1000000");
    assert_eq!(amount(&quote.interest_due), "10000");
    assert_eq!(amount(&quote.interest_accrued), "4307");
    assert_eq!(amount(&quote.fees), "0");
    assert_eq!(amount(&quote.total), "1014307");
    // The schedule would cost 1,000,000 + 25,124 (10,000 + 7,537 + 5,050 +
    // 2,537): 10,817 more.
    assert_eq!(amount(&quote.interest_saved), "10817");
    let state = app.loan(&loan, "2024-01-19").await;
    assert_eq!(amount(&state.payoff_amount), "1014307");

    // One đồng more is refused, and writes nothing.
    let accounts = ["cash:TB", "loan:TB-0001/L1", "interest-income:TB"];
    let before = books(&mut app, &accounts).await;
    let status = app
        .repay("too-much", &loan, "1014308", "2024-01-19")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert_eq!(books(&mut app, &accounts).await, before);

    // Exactly the quote closes it.
    let paid = app
        .repay("payoff", &loan, "1014307", "2024-01-19")
        .await
        .unwrap();
    assert!(paid.loan_closed);
    assert_eq!(amount(&paid.interest_paid), "14307");
    assert_eq!(amount(&paid.principal_paid), "1000000");
    assert_eq!(amount(&paid.principal_outstanding), "0");
    // Interest income is the interest due plus the accrued: 10,000 + 4,307.
    assert_eq!(app.balance("interest-income:TB").await, "14307");
    assert_eq!(app.balance("loan:TB-0001/L1").await, "0");
    // -1,000,000 + 1,014,307.
    assert_eq!(app.balance("cash:TB").await, "14307");
    let state = app.loan(&loan, "2024-01-19").await;
    assert_eq!(state.status, pb::LoanStatus::Closed as i32);
    assert_eq!(amount(&state.principal_outstanding), "0");
    assert_eq!(amount(&state.interest_outstanding), "0");
    // Nothing more to pay or quote.
    let status = app
        .repay("after", &loan, "1", "2024-01-20")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
    let status = payoff_quote(&mut app, &loan, "2024-01-20")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
}

#[tokio::test]
async fn arrears_on_a_date_follow_the_products_tolerance() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    // Flat 26% weekly: 250,000 principal + 5,000 interest = 255,000 a week.
    // Not in arrears until more than 7 days late AND more than 10,000 overdue.
    create_product(
        &app,
        "TOLERANT",
        pb::ProductRules {
            arrears_tolerance_days: 7,
            arrears_tolerance_amount: "10000".into(),
            ..product_rules(
                pb::InterestMethod::Flat,
                pb::RepaymentFrequency::Weekly,
                "26",
                4,
            )
        },
    )
    .await;
    let a = app
        .disburse_under(
            "loan-a",
            "TB-0001",
            application("TOLERANT", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    let b = app
        .disburse_under(
            "loan-b",
            "TB-0002",
            application("TOLERANT", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    // A pays 5,000 short on 22 January, and every later payment covers the
    // oldest shortfall first, so 5,000 of principal stays overdue throughout.
    for (i, (paid, date)) in [
        ("255000", "2024-01-15"),
        ("250000", "2024-01-22"),
        ("255000", "2024-01-29"),
        ("255000", "2024-02-05"),
    ]
    .into_iter()
    .enumerate()
    {
        app.repay(&format!("a-{i}"), &a, paid, date).await.unwrap();
    }

    // A on 25 January: installment 2 (due the 22nd) got 250,000: interest
    // 5,000 first, then 245,000 of its 250,000 principal. 5,000 of principal
    // overdue for 3 days: not in arrears.
    let loan = app.loan(&a, "2024-01-25").await;
    assert_eq!(amount(&loan.principal_overdue), "5000");
    assert_eq!(amount(&loan.interest_overdue), "0");
    assert!(!loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 0);
    // A on 20 February: installment 4 (due 5 February) short 5,000, 15 days:
    // more than 7 days, but 5,000 is not more than 10,000.
    let loan = app.loan(&a, "2024-02-20").await;
    assert_eq!(amount(&loan.principal_overdue), "5000");
    assert!(!loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 0);

    // B pays nothing. On 22 January installment 2 is due that day, not
    // overdue: installment 1 is 7 days late (not more than 7).
    let loan = app.loan(&b, "2024-01-22").await;
    assert_eq!(amount(&loan.principal_overdue), "250000");
    assert_eq!(amount(&loan.interest_overdue), "5000");
    assert!(!loan.in_arrears);
    assert_eq!(loan.schedule[1].status, pb::InstallmentStatus::Due as i32);
    // On 23 January: installments 1 and 2 overdue, 8 days: in arrears.
    let loan = app.loan(&b, "2024-01-23").await;
    assert_eq!(amount(&loan.principal_overdue), "500000");
    assert_eq!(amount(&loan.interest_overdue), "10000");
    assert!(loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 8);
    // On 20 February: all four, 15 January to 20 February = 36 days.
    let loan = app.loan(&b, "2024-02-20").await;
    assert_eq!(amount(&loan.principal_overdue), "1000000");
    assert_eq!(amount(&loan.interest_overdue), "20000");
    assert_eq!(loan.days_in_arrears, 36);

    assert!(in_arrears(&mut app, "2024-01-22").await.is_empty());
    let listed = in_arrears(&mut app, "2024-02-20").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].loan_id, b);
    assert_eq!(listed[0].member_id, "TB-0002");
    assert_eq!(listed[0].days_in_arrears, 36);
    assert_eq!(amount(&listed[0].principal_outstanding), "1000000");
    assert_eq!(amount(&listed[0].principal_overdue), "1000000");
    assert_eq!(amount(&listed[0].interest_overdue), "20000");

    // B pays everything on 20 February (4 x 255,000 = 1,020,000, closing it).
    // Its past stays as it was: in arrears on 23 January; not after.
    let paid = app
        .repay("b-all", &b, "1020000", "2024-02-20")
        .await
        .unwrap();
    assert!(paid.loan_closed);
    let loan = app.loan(&b, "2024-01-23").await;
    assert!(loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 8);
    let listed = in_arrears(&mut app, "2024-01-23").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].loan_id, b);
    assert!(!app.loan(&b, "2024-02-21").await.in_arrears);
    assert!(in_arrears(&mut app, "2024-02-21").await.is_empty());
}

#[tokio::test]
async fn write_off_recovery_and_their_reversals() {
    // TB-0001: 200,000 saved; 1,000,000 flat at 26% over 4 weeks (255,000 a
    // week from 15 January); cash -800,000.
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "255000", "2024-01-15")
        .await
        .unwrap();
    // TB-0002 repays her loan in full: 4 x 255,000.
    app.member("TB-0002").await;
    let closed = app
        .disburse(
            "loan-2",
            "TB-0002",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    assert!(
        app.repay("pay-2", &closed, "1020000", "2024-02-05")
            .await
            .unwrap()
            .loan_closed
    );
    // Cash: -800,000 + 255,000 - 1,000,000 + 1,020,000.
    assert_eq!(app.balance("cash:TB").await, "-525000");

    // 750,000 outstanding is written off: debit loan loss, credit the loan.
    let written = write_off(&mut app, "write-off", &loan, "2024-03-01")
        .await
        .unwrap();
    let write_off_sequence = written.receipt.unwrap().sequence;
    assert_eq!(amount(&written.principal_written_off), "750000");
    assert_eq!(app.balance("loan-loss:TB").await, "750000");
    assert_eq!(app.balance("loan:TB-0001/L1").await, "0");
    let state = app.loan(&loan, "2024-03-01").await;
    assert_eq!(state.status, pb::LoanStatus::WrittenOff as i32);
    assert_eq!(amount(&state.written_off), "750000");
    assert_eq!(amount(&state.principal_outstanding), "0");

    // Refused: writing it off again, writing off a closed loan.
    let accounts = [
        "cash:TB",
        "loan:TB-0001/L1",
        "loan:TB-0002/L1",
        "loan-loss:TB",
        "recoveries:TB",
    ];
    let before = books(&mut app, &accounts).await;
    let status = write_off(&mut app, "again", &loan, "2024-03-02")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
    let status = write_off(&mut app, "closed", &closed, "2024-03-02")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "loan_id");
    assert_eq!(books(&mut app, &accounts).await, before);

    // A payment on it is a recovery: debit cash, credit recoveries.
    let recovered = app
        .repay("recovery", &loan, "100000", "2024-04-01")
        .await
        .unwrap();
    let recovery_sequence = recovered.receipt.unwrap().sequence;
    let allocation = recovered.allocation.unwrap();
    assert_eq!(amount(&allocation.recovery), "100000");
    assert_eq!(amount(&allocation.principal_paid), "0");
    assert_eq!(amount(&allocation.interest_paid), "0");
    assert!(!allocation.loan_closed);
    assert_eq!(app.balance("recoveries:TB").await, "100000");
    assert_eq!(app.balance("cash:TB").await, "-425000");
    assert_eq!(
        amount(&app.loan(&loan, "2024-04-01").await.recovered),
        "100000"
    );
    // At most what is not yet recovered: 750,000 - 100,000 = 650,000.
    let before = books(&mut app, &accounts).await;
    let status = app
        .repay("recovery-too-much", &loan, "650001", "2024-04-02")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    // The write-off is not the loan's latest transaction: refused.
    let status = app
        .reverse("reverse-write-off-first", write_off_sequence)
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "sequence");
    assert_eq!(books(&mut app, &accounts).await, before);

    // Newest first: the recovery, then the write-off.
    app.reverse("reverse-recovery", recovery_sequence)
        .await
        .unwrap();
    assert_eq!(app.balance("recoveries:TB").await, "0");
    assert_eq!(app.balance("cash:TB").await, "-525000");
    assert_eq!(amount(&app.loan(&loan, "2024-04-01").await.recovered), "0");
    app.reverse("reverse-write-off", write_off_sequence)
        .await
        .unwrap();
    assert_eq!(app.balance("loan-loss:TB").await, "0");
    assert_eq!(app.balance("loan:TB-0001/L1").await, "750000");
    let state = app.loan(&loan, "2024-04-01").await;
    assert_eq!(state.status, pb::LoanStatus::Active as i32);
    assert_eq!(amount(&state.principal_outstanding), "750000");
    assert_eq!(amount(&state.written_off), "0");

    // The restored loan is repaid as before: installment 2 (overdue) first.
    let paid = app
        .repay("pay-after", &loan, "255000", "2024-04-01")
        .await
        .unwrap();
    assert_eq!(amount(&paid.interest_paid), "5000");
    assert_eq!(amount(&paid.principal_outstanding), "500000");
    // 5,000 (TB-0001's first week) + 20,000 (TB-0002's loan) + 5,000.
    assert_eq!(app.balance("interest-income:TB").await, "30000");
}

#[tokio::test]
async fn a_tranche_dated_into_a_closed_period_is_refused_and_one_after_it_is_not() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    create_product(
        &app,
        "GROWTH",
        pb::ProductRules {
            tranches_max: 2,
            ..declining()
        },
    )
    .await;
    let loan = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            pb::LoanApplication {
                approved_principal: "2500000".into(),
                ..application("GROWTH", "1000000", "2024-01-15")
            },
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    app.branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close"),
            branch_id: "TB".into(),
            through: "2024-01-10".into(),
        })
        .await
        .unwrap();
    let head = app.last_sequence().await;
    let status = tranche(&mut app, "in-closed", &loan, "500000", "2024-01-09")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "disbursed_on");
    assert!(
        status.message().contains("closed through 2024-01-10"),
        "{}",
        status.message()
    );
    assert_eq!(app.last_sequence().await, head, "nothing was written");
    // The same tranche after the close is what the product allows.
    tranche(&mut app, "after-close", &loan, "500000", "2024-01-11")
        .await
        .unwrap();
}

/// A closed loan's installments leave the server's memory once its state
/// cache holds them, and are read back when asked. After a restart (which
/// holds none of them, nor its summary) the loan reads as before: its
/// schedule with every installment paid, its arrears on a day it was
/// overdue and none from its payoff on, the member's loans; and the
/// payment that closed it is reversed into the loan as it
/// was before that payment, which reads the same after another restart.
#[tokio::test]
async fn a_closed_loan_reads_and_reopens_the_same_after_a_restart() {
    // 1,000,000 over 4 weeks from 15 January; nothing paid until the
    // payoff on 20 February, after the last installment fell due.
    let (mut app, loan) = borrower().await;
    let overdue_on = "2024-01-31";
    let unpaid = app.loan(&loan, "2024-03-01").await;
    assert_eq!(unpaid.schedule.len(), 4);
    assert!(unpaid.in_arrears, "{unpaid:?}");
    let closing = app.pay_off(&loan, "2024-02-20").await;

    let closed = app.loan(&loan, "2024-03-01").await;
    assert_eq!(closed.status, pb::LoanStatus::Closed as i32);
    assert!(
        closed
            .schedule
            .iter()
            .all(|i| i.status == pb::InstallmentStatus::Paid as i32),
        "{:?}",
        closed.schedule
    );
    let arrears = in_arrears(&mut app, overdue_on).await;
    assert_eq!(arrears.len(), 1, "overdue on {overdue_on}: {arrears:?}");
    assert_eq!(arrears[0].loan_id, loan);
    let member = |app: &mut App| {
        let mut audit = app.audit.clone();
        async move {
            audit
                .get_member(pb::GetMemberRequest {
                    member_id: "TB-0001".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .loans
        }
    };
    let loans = member(&mut app).await;
    let account = format!("loan:{loan}");
    let books = account_books(&app, &account).await;
    let (balance, statement, chart) = &books;
    assert_eq!(
        [&balance.debits, &balance.credits, &balance.balance].map(amount),
        ["1000000", "1000000", "0"]
    );
    assert_eq!(statement.movements.len(), 2, "{statement:?}");
    assert!(
        chart.iter().any(|a| a.account == account),
        "{account} in {chart:?}"
    );

    assert!(in_arrears(&mut app, "2024-02-20").await.is_empty());

    let mut app = app.restart().await;
    // Neither the loan nor its account's book is in memory now.
    let held = |app: &App| {
        let id = LoanId::parse("loan", &loan).unwrap();
        app.ledger.read(|state| {
            let account = AccountId::Loan(id.clone());
            (
                state.books().holds(&account),
                state.loan(&id).unwrap().unwrap().is_summary(),
            )
        })
    };
    assert_eq!(held(&app), (false, true));
    assert_eq!(app.loan(&loan, "2024-03-01").await, closed);
    assert_eq!(in_arrears(&mut app, overdue_on).await, arrears);
    assert!(in_arrears(&mut app, "2024-02-20").await.is_empty());
    assert_eq!(in_arrears(&mut app, "2024-02-19").await.len(), 1);
    assert_eq!(member(&mut app).await, loans);
    assert_eq!(account_books(&app, &account).await, books);

    // Reversing the payoff gives the loan back as it was before it, and
    // its account the payoff's reversal.
    app.reverse("reverse-payoff", closing).await.unwrap();
    let reopened = app.loan(&loan, "2024-03-01").await;
    assert_eq!(reopened.status, pb::LoanStatus::Active as i32);
    assert_eq!(reopened.schedule, unpaid.schedule);
    assert_eq!(reopened.principal_outstanding, unpaid.principal_outstanding);
    assert_eq!(reopened.days_in_arrears, unpaid.days_in_arrears);
    assert_eq!(held(&app), (true, false));
    let reopened_books = account_books(&app, &account).await;
    let (balance, statement, _) = &reopened_books;
    assert_eq!(amount(&balance.balance), "1000000");
    assert_eq!(statement.movements.len(), 3, "{statement:?}");
    let mut app = app.restart().await;
    assert_eq!(app.loan(&loan, "2024-03-01").await, reopened);
    assert_eq!(account_books(&app, &account).await, reopened_books);
}

/// What the books say of an account: its balance with its debits and
/// credits, its statement from its first movement, and the branch's chart
/// of accounts, read two at a time.
async fn account_books(
    app: &App,
    account: &str,
) -> (
    pb::GetBalanceResponse,
    pb::GetAccountStatementResponse,
    Vec<pb::ChartAccount>,
) {
    let balance = app
        .audit
        .clone()
        .get_balance(pb::GetBalanceRequest {
            account: account.into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut books = pb::books_service_client::BooksServiceClient::new(
        crate::support::connect(app.address, &app.token).await,
    );
    let statement = books
        .get_account_statement(pb::GetAccountStatementRequest {
            account: account.into(),
            from: String::new(),
            to: "2024-03-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (balance, statement, chart(&mut books, "TB", 2).await)
}
