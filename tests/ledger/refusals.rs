//! Every refusal has its status, names the field, and writes nothing.

use mfi_ledger::pb;
use tonic::Code;

use crate::support::{App, assert_refused, ctx, flat_weekly, spawn_app, vnd};

/// The journal head and the balances a refusal must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: pb::GetLedgerInfoResponse,
    balances: Vec<String>,
}

async fn snapshot(app: &mut App) -> Snapshot {
    let head = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut balances = Vec::new();
    for account in [
        "cash:TB",
        "savings:TB-0001/C1",
        "loan:TB-0001/L1",
        "interest-income:TB",
    ] {
        balances.push(app.balance(account).await);
    }
    Snapshot { head, balances }
}

/// A borrower with 200,000 saved and 1,000,000 borrowed (255,000 a week x 4).
async fn ready() -> (App, Snapshot) {
    let (mut app, _) = crate::support::borrower().await;
    let before = snapshot(&mut app).await;
    (app, before)
}

#[tokio::test]
async fn malformed_amounts_are_invalid_arguments() {
    let (mut app, before) = ready().await;
    for (i, amount, why) in [
        ("12a", "not a plain decimal"),
        ("1e5", "not a plain decimal"),
        ("1 000", "not a plain decimal"),
        ("1,000", "not a plain decimal"),
        ("", "is required"),
        ("0", "is zero"),
        ("-5000", "is negative"),
        ("1000.5", "decimal places"),
        ("99999999999999999999", "more than 18 digits"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (amount, why))| (i, amount, why))
    {
        let status = app
            .deposit(&format!("bad-{i}"), "TB-0001/C1", amount, "2024-02-01")
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "amount.amount");
        assert!(
            status.message().contains(why),
            "{amount:?}: {}",
            status.message()
        );
    }
    let status = app
        .branch
        .deposit_savings(pb::DepositSavingsRequest {
            context: ctx("bad-currency"),
            account_id: "TB-0001/C1".into(),
            amount: Some(pb::Money {
                amount: "5".into(),
                currency: "XYZ".into(),
            }),
            effective_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "amount.currency");
    let status = app
        .branch
        .deposit_savings(pb::DepositSavingsRequest {
            context: ctx("usd-into-vnd"),
            account_id: "TB-0001/C1".into(),
            amount: Some(pb::Money {
                amount: "5.25".into(),
                currency: "USD".into(),
            }),
            effective_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "keeps its books in VND");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn unknown_members_loans_and_accounts_are_not_found() {
    let (mut app, before) = ready().await;
    let status = app
        .disburse(
            "x-1",
            "TB-9999",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "member_id");
    let status = app
        .repay("x-2", "TB-0001/L7", "1000", "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "loan_id");
    let status = app
        .deposit("x-3", "TB-0001/V4", "1000", "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "account_id");
    let status = app
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: "savings:TB-0002/C1".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "account");
    let status = app
        .audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            as_of_sequence: 0,
            branch_id: "HN".into(),
            period: Some(pb::get_branch_totals_request::Period::Year(2023)),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "branch_id");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn a_payment_above_what_is_outstanding_is_refused() {
    let (mut app, before) = ready().await;
    // Paying off on 15 January: installment 1 (250,000 + 5,000 interest) and
    // the 750,000 principal not yet due; no interest has accrued on the next
    // installment yet (its period starts that day): 1,005,000.
    let status = app
        .repay("over", "TB-0001/L1", "1005001", "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert!(
        status
            .message()
            .contains("more than the 1,005,000 VND that pays loan TB-0001/L1 off on 2024-01-15"),
        "{}",
        status.message()
    );
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn a_withdrawal_below_the_compulsory_minimum_is_refused() {
    let (mut app, before) = ready().await;
    // Required: 5% of 1,000,000 = 50,000; 200,000 - 150,001 = 49,999.
    let status = app
        .branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("150001"),
            effective_date: "2024-01-20".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert!(
        status.message().contains("50,000 VND required"),
        "{}",
        status.message()
    );
    let status = app
        .branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd-all"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("200001"),
            effective_date: "2024-01-20".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "more than the balance");
    assert_eq!(snapshot(&mut app).await, before);
}

fn reverse(id: &str, sequence: u64) -> pb::ReverseEntryRequest {
    pb::ReverseEntryRequest {
        context: ctx(id),
        sequence,
        reason: "mistake".into(),
        effective_date: String::new(),
    }
}

#[tokio::test]
async fn reversing_twice_or_reversing_a_reversal_is_refused() {
    let (mut app, _) = ready().await;
    let paid = app
        .repay("pay", "TB-0001/L1", "255000", "2024-01-15")
        .await
        .unwrap();
    let paid_at = paid.receipt.unwrap().sequence;
    let reversal = app
        .reverse_approved(reverse("rev-1", paid_at))
        .await
        .unwrap();
    let reversal_at = reversal.receipt.unwrap().sequence;
    let before = snapshot(&mut app).await;
    let status = app
        .reverse_approved(reverse("rev-2", paid_at))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "already reversed");
    let status = app
        .reverse_approved(reverse("rev-3", reversal_at))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "cannot be reversed");
    let status = app
        .reverse_approved(reverse("rev-4", crate::support::ACCESS_ENTRIES + 1))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "moves no money");
    // Entry 1 created the first administrator: access is not reversed.
    let status = app
        .reverse_approved(reverse("rev-access", 1))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "changes access");
    let status = app
        .reverse_approved(reverse("rev-5", 999))
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "sequence");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn a_reversal_that_would_make_a_balance_impossible_is_refused() {
    let (mut app, _) = ready().await;
    let before_pay = app.last_sequence().await;
    app.repay("pay", "TB-0001/L1", "255000", "2024-01-15")
        .await
        .unwrap();
    let before = snapshot(&mut app).await;
    // The loan has a repayment: its disbursement cannot be undone first.
    let status = app
        .reverse_approved(reverse("rev-loan", before_pay))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "reverse them first");
    assert_eq!(snapshot(&mut app).await, before);
    // Withdrawing down to the required 5% of 750,000 = 37,500, then undoing
    // the 200,000 deposit would leave savings below zero.
    app.branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("162500"),
            effective_date: "2024-01-16".into(),
        })
        .await
        .unwrap();
    let before = snapshot(&mut app).await;
    // Entries: branch, center, group, member, account, then the deposit (6).
    let status = app
        .reverse_approved(reverse("rev-dep", crate::support::ACCESS_ENTRIES + 6))
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "below zero");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn future_effective_dates_are_refused() {
    let (mut app, before) = ready().await;
    // Today in Asia/Ho_Chi_Minh on the test clock is 2024-06-30.
    let status = app
        .deposit("future", "TB-0001/C1", "1000", "2024-07-01")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_date");
    assert!(
        status.message().contains("in the future"),
        "{}",
        status.message()
    );
    let status = app
        .deposit("bad-date", "TB-0001/C1", "1000", "30/06/2024")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_date");
    // A repayment before the loan's last transaction is out of order.
    let status = app
        .repay("early", "TB-0001/L1", "1000", "2024-01-07")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "effective_date");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn reusing_a_request_id_for_different_content_is_already_exists() {
    let (mut app, before) = ready().await;
    // "dep-1" deposited 200,000 on 2024-01-05.
    let status = app
        .deposit("dep-1", "TB-0001/C1", "200001", "2024-01-05")
        .await
        .unwrap_err();
    assert_refused(&status, Code::AlreadyExists, "request_id");
    assert!(
        status.message().contains("different request"),
        "{}",
        status.message()
    );
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn oversize_messages_and_fields_are_refused() {
    let (mut app, before) = ready().await;
    let huge = pb::RegisterMemberRequest {
        context: ctx("huge"),
        member_id: "TB-0002".into(),
        full_name: "x".repeat(2 << 20),
        group_id: "TB-G01".into(),
        joined_on: String::new(),
    };
    let status = app.branch.register_member(huge).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "a 2 MiB request should be refused for its size: {status:?}"
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    let long = pb::RegisterMemberRequest {
        context: ctx("long"),
        member_id: "TB-0002".into(),
        full_name: "x".repeat(201),
        group_id: "TB-G01".into(),
        joined_on: String::new(),
    };
    let status = app.branch.register_member(long).await.unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "full_name");
    let page = app
        .audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: 1,
            page_size: 5000,
        })
        .await
        .unwrap_err();
    assert_refused(&page, Code::InvalidArgument, "page_size");
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn missing_context_fields_and_unknown_enums_are_invalid() {
    let (mut app, before) = ready().await;
    let status = app
        .branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: None,
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Voluntary as i32,
            opened_on: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "context");
    let status = app
        .branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("enum"),
            member_id: "TB-0001".into(),
            kind: 9,
            opened_on: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "kind");
    let status = app
        .branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("second-compulsory"),
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::FailedPrecondition,
        "already has compulsory savings account TB-0001/C1",
    );
    let mut terms = flat_weekly("1000000", "26", 0, "2024-02-01");
    let status = app
        .disburse("zero-installments", "TB-0001", terms.clone(), "2024-01-20")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "terms.installment_count");
    terms.installment_count = 4;
    terms.annual_interest_rate_percent = "120".into();
    let status = app
        .disburse("rate", "TB-0001", terms, "2024-01-20")
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::InvalidArgument,
        "terms.annual_interest_rate_percent",
    );
    assert_eq!(snapshot(&mut app).await, before);
}

#[tokio::test]
async fn a_loan_needs_compulsory_savings_first() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.branch
        .register_member(pb::RegisterMemberRequest {
            context: ctx("reg"),
            member_id: "TB-0002".into(),
            full_name: "Trần Thị Lan".into(),
            group_id: "TB-G01".into(),
            joined_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
    let before = app.last_sequence().await;
    let status = app
        .disburse(
            "loan",
            "TB-0002",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::FailedPrecondition,
        "no compulsory savings account",
    );
    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn a_back_dated_withdrawal_may_not_overdraw_any_later_day() {
    let (mut app, before) = ready().await;
    // 200,000 was deposited on 2024-01-05 (entry 6); a withdrawal dated 2024-01-04 finds nothing.
    let status = app
        .branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd-early"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("1000"),
            effective_date: "2024-01-04".into(),
        })
        .await
        .unwrap_err();
    assert_refused(
        &status,
        Code::FailedPrecondition,
        "below zero on 2024-01-04",
    );
    // A disbursement may not precede the compulsory account it needs (opened 2024-01-02).
    let status = app
        .disburse(
            "loan-early",
            "TB-0001",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-01",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "disbursed_on");
    assert_eq!(snapshot(&mut app).await, before);
}
