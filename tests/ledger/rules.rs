//! Refusals that keep a loan's books consistent, each with its status code
//! and proof that nothing was written: fees that leave nothing to pay out,
//! payments and tranches during a grace period, loan transactions reversed
//! on another date, and a back-dated withdrawal below the compulsory
//! minimum.

use tonic::Code;

use crate::support::*;
use mfi_ledger::pb;

const CASH: &str = "cash:TB";

/// A branch, member TB-0001 with 600,000 VND in compulsory savings, and
/// `rules` as product P (from 2024-01-01).
async fn set_up(rules: pb::ProductRules) -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.deposit("save-1", "TB-0001/C1", "600000", "2024-01-03")
        .await
        .unwrap();
    create_product(&app, "P", rules).await;
    app
}

fn weekly(rate: &str, installments: u32) -> pb::ProductRules {
    product_rules(
        pb::InterestMethod::DecliningBalance,
        pb::RepaymentFrequency::Weekly,
        rate,
        installments,
    )
}

#[tokio::test]
async fn fees_that_leave_nothing_to_pay_out_are_refused() {
    // A 60,000 fee deducted from a 50,000 loan.
    let rules = pb::ProductRules {
        fees: vec![pb::Fee {
            code: "application".into(),
            amount: Some(pb::fee::Amount::Fixed("60000".into())),
            collection: pb::FeeCollection::AtDisbursement as i32,
        }],
        ..weekly("26", 4)
    };
    let mut app = set_up(rules).await;
    let before = books(&mut app, &[CASH]).await;
    let status = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            application("P", "50000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "application.principal");
    assert!(
        status.message().contains("leave nothing"),
        "{}",
        status.message()
    );
    assert_eq!(books(&mut app, &[CASH]).await, before);
}

#[tokio::test]
async fn during_a_grace_period_only_what_is_due_or_the_payoff_is_taken() {
    // 1,040,000 at 26% over 4 weekly installments, the first two repaying
    // no principal: 5,200 interest a week, then 525,200 and 522,600.
    let rules = pb::ProductRules {
        grace_on_principal: 2,
        tranches_max: 2,
        ..weekly("26", 4)
    };
    let mut app = set_up(rules).await;
    let loan = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            pb::LoanApplication {
                approved_principal: "2000000".into(),
                ..application("P", "1040000", "2024-01-15")
            },
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    assert_eq!(
        amount(&app.loan(&loan, "2024-01-08").await.schedule[0].total),
        "5200"
    );
    let account = format!("loan:{loan}");
    let before = books(&mut app, &[CASH, &account]).await;
    // On 15 January 5,200 is due; 100,000 is more, and not the payoff.
    let status = app
        .repay("ahead", &loan, "100000", "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert!(
        status.message().contains("grace period until 2024-01-22"),
        "{}",
        status.message()
    );
    // A tranche waits for the grace to end too.
    let status = app
        .branch
        .disburse_tranche(pb::DisburseTrancheRequest {
            context: ctx("tranche"),
            loan_id: loan.clone(),
            amount: vnd("500000"),
            disbursed_on: "2024-01-15".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "disbursed_on");
    assert_eq!(books(&mut app, &[CASH, &account]).await, before);

    // What is due is taken, and so is the payoff: 1,040,000 principal, the
    // 5,200 due, and no interest accrued yet in the period starting that day.
    app.repay("due", &loan, "5200", "2024-01-15").await.unwrap();
    let paid = app
        .repay("payoff", &loan, "1040000", "2024-01-15")
        .await
        .unwrap();
    assert!(paid.loan_closed);
    assert_eq!(app.balance(&account).await, "0");
}

#[tokio::test]
async fn a_loan_transaction_is_reversed_as_of_its_own_date() {
    let mut app = set_up(weekly("26", 4)).await;
    let loan = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            application("P", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    let paid = app
        .repay("pay-1", &loan, "300000", "2024-01-15")
        .await
        .unwrap();
    let sequence = paid.receipt.unwrap().sequence;
    let account = format!("loan:{loan}");
    let before = books(&mut app, &[CASH, &account]).await;
    let status = app
        .reverse_approved(pb::ReverseEntryRequest {
            context: ctx("reverse-later"),
            sequence,
            reason: "wrong loan".into(),
            effective_date: "2024-01-20".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_date");
    assert!(
        status.message().contains("as of its own date, 2024-01-15"),
        "{}",
        status.message()
    );
    assert_eq!(books(&mut app, &[CASH, &account]).await, before);
    // On its own date (the default) it is reversed.
    let reversed = app.reverse("reverse", sequence).await.unwrap();
    assert_eq!(reversed.receipt.unwrap().effective_date, "2024-01-15");
    assert_eq!(app.balance(&account).await, "1000000");
}

#[tokio::test]
async fn a_back_dated_withdrawal_keeps_the_minimum_required_today() {
    // 20,000 of compulsory savings per installment due: by 30 June all 4
    // weekly installments of a loan disbursed 8 January are due, 80,000.
    let rules = pb::ProductRules {
        compulsory_savings: Some(pb::CompulsorySavingsRule {
            rule: Some(pb::compulsory_savings_rule::Rule::FixedPerInstallment(
                "20000".into(),
            )),
        }),
        ..weekly("26", 4)
    };
    let mut app = set_up(rules).await;
    app.disburse_under(
        "loan-1",
        "TB-0001",
        application("P", "1000000", "2024-01-15"),
        "2024-01-08",
    )
    .await
    .unwrap();
    let before = books(&mut app, &["savings:TB-0001/C1"]).await;
    // Dated 10 January, when nothing was due yet: leaving 20,000 of the
    // 600,000 would still break today's 80,000 minimum.
    let withdraw = |id: &str, amount: &str| pb::WithdrawSavingsRequest {
        context: ctx(id),
        account_id: "TB-0001/C1".into(),
        amount: vnd(amount),
        effective_date: "2024-01-10".into(),
    };
    let status = app
        .branch
        .withdraw_savings(withdraw("wd-too-much", "580000"))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert!(
        status.message().contains("80,000 VND"),
        "{}",
        status.message()
    );
    assert_eq!(books(&mut app, &["savings:TB-0001/C1"]).await, before);
    app.branch
        .withdraw_savings(withdraw("wd-ok", "520000"))
        .await
        .unwrap();
    assert_eq!(app.balance("savings:TB-0001/C1").await, "80000");
}
