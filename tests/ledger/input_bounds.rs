//! Input bounds found by a barrage of bad inputs: refusals stay short
//! whatever the client sent, every write and read takes dates from
//! 1900-01-01 to 9999-12-31 only, and no loan falls due after that.

use mfi_ledger::pb;
use tonic::Code;

use crate::support::{assert_refused, borrower, ctx, flat_weekly, spawn_app, vnd};

/// Longest refusal message these tests accept: far below the 8 to 16 KB a
/// gRPC client accepts in a status.
const MESSAGE_BYTES_SHORT: usize = 512;

fn assert_short(status: &tonic::Status) {
    assert!(
        status.message().len() <= MESSAGE_BYTES_SHORT,
        "a {}-byte message: {:.200}",
        status.message().len(),
        status.message()
    );
}

/// Reproduces refusals that repeated the whole offending value: a 10 KB
/// loan id or amount gave a 10 KB status message (a client with a smaller
/// limit saw RESOURCE_EXHAUSTED, which it retries, instead of
/// INVALID_ARGUMENT). Now the value is cut after 64 characters and its
/// length given.
#[tokio::test]
async fn a_ten_kilobyte_id_or_amount_is_refused_with_a_short_message() {
    let (mut app, loan) = borrower().await;
    let before = app.last_sequence().await;
    let long_id = "x".repeat(10_000);
    let status = app
        .repay("long-id", &long_id, "1000", "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "loan_id");
    assert!(status.message().contains("…(10000 bytes)"), "{status:?}");
    assert_short(&status);

    let long_amount = "9".repeat(10_000);
    let status = app
        .repay("long-amount", &loan, &long_amount, "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "amount.amount");
    assert!(status.message().contains("…(10000 bytes)"), "{status:?}");
    assert_short(&status);

    let status = app
        .branch
        .record_repayment(pb::RecordRepaymentRequest {
            context: ctx("long-currency"),
            loan_id: loan.clone(),
            amount: Some(pb::Money {
                amount: "1000".into(),
                currency: "Đ".repeat(5_000),
            }),
            effective_date: "2024-01-15".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "amount.currency");
    assert_short(&status);

    let status = app
        .branch
        .create_branch(pb::CreateBranchRequest {
            context: ctx("long-zone"),
            branch_id: "HN".into(),
            name: "Hà Nội".into(),
            time_zone: "Asia/".repeat(2_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "time_zone");
    assert_short(&status);

    let status = app
        .branch
        .deposit_savings(pb::DepositSavingsRequest {
            context: ctx("long-date"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("1000"),
            effective_date: "2024-01-15".repeat(1_000),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_date");
    assert_short(&status);
    assert_eq!(app.last_sequence().await, before, "nothing written");
}

/// Reproduces writes taking dates no read accepts: a branch opened on
/// 0000-01-01 was created. Every date, in writes and reads, is from
/// 1900-01-01 to 9999-12-31.
#[tokio::test]
async fn dates_before_1900_are_refused_in_writes_and_reads() {
    let (mut app, loan) = borrower().await;
    let before = app.last_sequence().await;
    for (request_id, opened_on) in [("year-0", "0000-01-01"), ("year-1899", "1899-12-31")] {
        let status = app
            .branch
            .create_branch(pb::CreateBranchRequest {
                context: ctx(request_id),
                branch_id: "OLD".into(),
                name: "Chi nhánh cũ".into(),
                opened_on: opened_on.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "opened_on");
        assert!(
            status.message().contains("1900-01-01 to 9999-12-31"),
            "{status:?}"
        );
    }
    let status = app
        .deposit("deposit-1899", "TB-0001/C1", "1000", "1899-12-31")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_date");
    assert_eq!(app.last_sequence().await, before, "nothing written");

    let status = app
        .audit
        .get_loan(pb::GetLoanRequest {
            as_of_sequence: 0,
            loan_id: loan,
            as_of_date: "1899-12-31".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "as_of_date");

    // The first day of the range is a date like any other.
    app.branch
        .create_branch(pb::CreateBranchRequest {
            context: ctx("year-1900"),
            branch_id: "OLD".into(),
            name: "Chi nhánh cũ".into(),
            opened_on: "1900-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Reproduces a loan whose due dates ran past year 9999 (`+10043-03-31`),
/// which no read could show: a schedule that would fall due after
/// 9999-12-31 is refused naming `terms.first_repayment_date`.
#[tokio::test]
async fn a_loan_due_after_9999_is_refused() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let before = app.last_sequence().await;
    // 52 weeks from 15 June 9999 run into the year 10000.
    let status = app
        .disburse(
            "loan-far",
            "TB-0001",
            flat_weekly("1000000", "26", 52, "9999-06-15"),
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "terms.first_repayment_date");
    assert!(status.message().contains("9999-12-31"), "{status:?}");
    assert_eq!(app.last_sequence().await, before, "nothing written");
}

/// Reproduces terms whose `rounding_multiple` was larger than an
/// installment: 1,000,000 over 10 weeks rounded to 1,000,000 gave nine
/// installments of 0 and a last one of 1,000,000 plus all the interest.
/// Such terms are refused naming `terms.rounding_multiple`.
#[tokio::test]
async fn terms_that_round_installments_to_zero_are_refused() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let before = app.last_sequence().await;
    let terms = pb::LoanTerms {
        rounding_multiple: "1000000".into(),
        ..flat_weekly("1000000", "26", 10, "2024-01-15")
    };
    let status = app
        .disburse("loan-coarse", "TB-0001", terms, "2024-01-08")
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "terms.rounding_multiple");
    assert!(status.message().contains("to 0"), "{status:?}");
    assert_eq!(app.last_sequence().await, before, "nothing written");
}

/// `Decimal::MAX` and its neighbours, as a client might type them.
const NEAR_DECIMAL_MAX: [&str; 5] = [
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "7922816251426433759354395033.5",
    "1000000000000000000000000000",
    "1000000000000000000",
];

/// Reproduces the arithmetic item of the hardening issue from a client's
/// side: amounts at and around `Decimal::MAX`, in every place a request
/// carries an amount or a rate, must get INVALID_ARGUMENT naming the field
/// (never INTERNAL, a panic or a dropped connection) and write nothing; the
/// largest amounts accepted add up exactly, and a repayment that large is
/// refused by the payoff arithmetic as more than the loan owes.
#[tokio::test]
async fn amounts_near_the_decimal_maximum_are_refused_by_name() {
    let (mut app, loan) = borrower().await;
    let account = "TB-0001/C1";
    let before = app.last_sequence().await;
    for (i, amount) in NEAR_DECIMAL_MAX.iter().enumerate() {
        let status = app
            .deposit(&format!("huge-deposit-{i}"), account, amount, "2024-01-15")
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "amount");
        assert_short(&status);
        let status = app
            .repay(&format!("huge-repay-{i}"), &loan, amount, "2024-01-15")
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "amount");
        let status = app
            .disburse(
                &format!("huge-loan-{i}"),
                "TB-0001",
                flat_weekly(amount, "26", 4, "2024-01-22"),
                "2024-01-15",
            )
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "principal");
        let mut terms = flat_weekly("1000000", amount, 4, "2024-01-22");
        let status = app
            .disburse(
                &format!("huge-rate-{i}"),
                "TB-0001",
                terms.clone(),
                "2024-01-15",
            )
            .await
            .unwrap_err();
        assert_refused(
            &status,
            Code::InvalidArgument,
            "annual_interest_rate_percent",
        );
        terms.annual_interest_rate_percent = "26".into();
        terms.rounding_multiple = amount.to_string();
        let status = app
            .disburse(
                &format!("huge-multiple-{i}"),
                "TB-0001",
                terms,
                "2024-01-15",
            )
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, "rounding_multiple");
    }
    assert_eq!(app.last_sequence().await, before, "nothing written");

    // The largest amount a request may carry (18 digits), twice: the
    // balance is the exact sum.
    let largest = "999999999999999999";
    let balance = |text: String| text.parse::<rust_decimal::Decimal>().unwrap();
    let start = balance(app.balance("savings:TB-0001/C1").await);
    for request_id in ["largest-1", "largest-2"] {
        app.deposit(request_id, account, largest, "2024-01-15")
            .await
            .unwrap();
    }
    let twice = balance(largest.into()) * rust_decimal::Decimal::TWO;
    assert_eq!(
        balance(app.balance("savings:TB-0001/C1").await),
        start + twice
    );

    // A repayment that large goes through the allocation and payoff
    // arithmetic and is refused as more than the loan owes.
    let status = app
        .repay("largest-repay", &loan, largest, "2024-01-15")
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "amount");
    assert_short(&status);
    assert_eq!(
        app.last_sequence().await,
        before + 2,
        "nothing more written"
    );
}
