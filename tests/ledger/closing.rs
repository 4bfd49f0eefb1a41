//! Period closing over gRPC: once a branch's books are closed through a
//! date, every write dated into the closed period is refused
//! (FAILED_PRECONDITION naming the close) and writes nothing, whichever
//! RPC carries it; an entry of the closed period is reversed after the
//! close; the closed figures stay as they were; the year-end close carries
//! the year's result into retained earnings; reopening needs a second
//! manager and a reason.

use mfi_ledger::pb;
use mfi_ledger::pb::books_service_client::BooksServiceClient;
use tonic::Code;

use crate::support::{App, amount, connect, ctx, flat_weekly, spawn_app, vnd};
use crate::totals::history;

fn closed(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let message = status.message();
    assert!(message.contains(field), "{message:?} should name {field}");
    assert!(
        message.contains("closed period (closed through 2024-03-31"),
        "{message:?} should name the close"
    );
}

async fn close(app: &mut App, request_id: &str, through: &str) -> pb::ClosePeriodResponse {
    app.branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx(request_id),
            branch_id: "TB".into(),
            through: through.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn trial_on(app: &App, date: &str) -> pb::GetTrialBalanceResponse {
    let mut books = BooksServiceClient::new(connect(app.address, &app.token).await);
    books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Date(date.into())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Branch TB (2024-01-01); member TB-0001 saving 500,000 on 2024-01-10 and
/// borrowing 1,000,000 on 2024-02-01 (weekly from 2024-02-08), repaying
/// 120,000 on 2024-03-07; member TB-0002 saving 100,000 on 2024-03-20.
async fn quarter() -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    app.deposit("save-1", "TB-0001/C1", "500000", "2024-01-10")
        .await
        .unwrap();
    app.disburse(
        "loan-1",
        "TB-0001",
        flat_weekly("1000000", "20", 10, "2024-02-08"),
        "2024-02-01",
    )
    .await
    .unwrap();
    app.repay("pay-1", "TB-0001/L1", "120000", "2024-03-07")
        .await
        .unwrap();
    app.deposit("save-2", "TB-0002/C1", "100000", "2024-03-20")
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn every_write_dated_into_the_closed_period_is_refused_and_writes_nothing() {
    let mut app = quarter().await;
    let closing = close(&mut app, "close-q1", "2024-03-31").await;
    assert!(!closing.carried_to_retained_earnings);
    let head = app.last_sequence().await;
    let day = "2024-03-25";

    let b = &mut app.branch;
    let refusals: Vec<(&str, tonic::Status)> = vec![
        (
            "effective_date",
            b.deposit_savings(pb::DepositSavingsRequest {
                context: ctx("late-deposit"),
                account_id: "TB-0001/C1".into(),
                amount: vnd("1000"),
                effective_date: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "effective_date",
            b.withdraw_savings(pb::WithdrawSavingsRequest {
                context: ctx("late-withdrawal"),
                account_id: "TB-0002/C1".into(),
                amount: vnd("1000"),
                effective_date: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "effective_date",
            b.record_repayment(pb::RecordRepaymentRequest {
                context: ctx("late-repayment"),
                loan_id: "TB-0001/L1".into(),
                amount: vnd("120000"),
                effective_date: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "disbursed_on",
            b.disburse_loan(pb::DisburseLoanRequest {
                context: ctx("late-loan"),
                member_id: "TB-0002".into(),
                loan: Some(pb::disburse_loan_request::Loan::Terms(flat_weekly(
                    "500000",
                    "20",
                    5,
                    "2024-04-01",
                ))),
                disbursed_on: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "effective_date",
            b.write_off_loan(pb::WriteOffLoanRequest {
                context: ctx("late-write-off"),
                loan_id: "TB-0001/L1".into(),
                reason: "moved away".into(),
                effective_date: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "meeting_date",
            b.record_collection_sheet(pb::RecordCollectionSheetRequest {
                context: ctx("late-sheet"),
                center_id: "TB-C01".into(),
                meeting_date: day.into(),
                lines: vec![pb::CollectionLine {
                    member_id: "TB-0001".into(),
                    savings_account_id: "TB-0001/C1".into(),
                    deposit: vnd("20000"),
                    ..Default::default()
                }],
            })
            .await
            .unwrap_err(),
        ),
        (
            "joined_on",
            b.register_member(pb::RegisterMemberRequest {
                context: ctx("late-member"),
                member_id: "TB-0003".into(),
                full_name: "Trần Thị Lan".into(),
                group_id: "TB-G01".into(),
                joined_on: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "opened_on",
            b.open_savings_account(pb::OpenSavingsAccountRequest {
                context: ctx("late-account"),
                member_id: "TB-0002".into(),
                kind: pb::SavingsKind::Voluntary as i32,
                opened_on: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "opened_on",
            b.create_group(pb::CreateGroupRequest {
                context: ctx("late-group"),
                group_id: "TB-G02".into(),
                center_id: "TB-C01".into(),
                name: "Nhóm 2".into(),
                opened_on: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "opened_on",
            b.create_center(pb::CreateCenterRequest {
                context: ctx("late-center"),
                center_id: "TB-C02".into(),
                branch_id: "TB".into(),
                name: "Cụm 2".into(),
                opened_on: day.into(),
            })
            .await
            .unwrap_err(),
        ),
        (
            // A reversal dated into the closed period.
            "effective_date",
            b.reverse_entry(pb::ReverseEntryRequest {
                context: ctx("late-reversal"),
                sequence: head - 1,
                reason: "typed twice".into(),
                effective_date: day.into(),
            })
            .await
            .unwrap_err(),
        ),
    ];
    for (field, status) in &refusals {
        closed(status, field);
    }
    // A loan's transaction is reversed as of its own date: in the closed
    // period that would change the closed books, so it is refused.
    let repayment = head - 2;
    let loan_reversal = app
        .branch
        .reverse_entry(pb::ReverseEntryRequest {
            context: ctx("reverse-repayment"),
            sequence: repayment,
            reason: "wrong loan".into(),
            effective_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(loan_reversal.code(), Code::FailedPrecondition);
    assert!(
        loan_reversal.message().contains("closed period")
            && loan_reversal.message().contains("reopen"),
        "{}",
        loan_reversal.message()
    );
    // In a batch, the closed-period command is refused on its own.
    let batch = app
        .branch
        .submit_batch(pb::SubmitBatchRequest {
            commands: vec![pb::BatchCommand {
                command: Some(pb::batch_command::Command::DepositSavings(
                    pb::DepositSavingsRequest {
                        context: ctx("batch-late-deposit"),
                        account_id: "TB-0001/C1".into(),
                        amount: vnd("1000"),
                        effective_date: day.into(),
                    },
                )),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    match &batch.results[0].result {
        Some(pb::batch_result::Result::Error(error)) => {
            assert_eq!(error.code, Code::FailedPrecondition as i32);
            assert!(
                error.message.contains("closed through 2024-03-31"),
                "{}",
                error.message
            );
        }
        other => panic!("a refusal, not {other:?}"),
    }
    assert_eq!(app.last_sequence().await, head, "nothing was written");

    // Closing again an earlier date, or a day not over, is refused.
    let again = app
        .branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close-feb"),
            branch_id: "TB".into(),
            through: "2024-02-29".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("through"), "{}", again.message());
    let future = app
        .branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close-today"),
            branch_id: "TB".into(),
            through: crate::support::TODAY.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), Code::InvalidArgument);
    assert!(future.message().contains("through"), "{}", future.message());
}

#[tokio::test]
async fn reopening_open_books_or_posting_interest_without_a_product_is_refused_by_field() {
    let mut app = quarter().await;
    let head = app.last_sequence().await;
    let reopen = app
        .branch
        .reopen_period(pb::ReopenPeriodRequest {
            context: ctx("reopen-open"),
            branch_id: "TB".into(),
            from: "2024-03-01".into(),
            reason: "nothing is closed".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reopen.code(), Code::FailedPrecondition);
    assert!(
        reopen.message().contains("not closed"),
        "{}",
        reopen.message()
    );
    let interest = app
        .branch
        .post_savings_interest(pb::PostSavingsInterestRequest {
            context: ctx("interest-no-product"),
            branch_id: "TB".into(),
            period_end: "2024-03-31".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(interest.code(), Code::InvalidArgument);
    assert!(
        interest.message().contains("period_end"),
        "{}",
        interest.message()
    );
    assert_eq!(app.last_sequence().await, head, "nothing was written");
}

#[tokio::test]
async fn a_deposit_of_the_closed_period_is_reversed_after_the_close_and_the_closed_books_stay() {
    let mut app = quarter().await;
    let deposit = app.last_sequence().await; // TB-0002's 100,000 on 2024-03-20
    close(&mut app, "close-q1", "2024-03-31").await;
    let before = trial_on(&app, "2024-03-31").await;
    let reversal = app
        .reverse_approved(pb::ReverseEntryRequest {
            context: ctx("reverse-deposit"),
            sequence: deposit,
            reason: "deposited for the wrong member".into(),
            effective_date: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(reversal.receipt.unwrap().effective_date, "2024-04-01");
    let still = trial_on(&app, "2024-03-31").await;
    assert_eq!(still.rows, before.rows);
    assert_eq!(still.total_debits, before.total_debits);
    let after = trial_on(&app, "2024-04-01").await;
    let savings = after
        .rows
        .iter()
        .find(|r| r.line == "savings-compulsory")
        .unwrap();
    assert_eq!(amount(&savings.credit_balance), "500000");
}

#[tokio::test]
async fn the_year_end_close_carries_the_result_into_retained_earnings_and_reopening_needs_a_checker()
 {
    let mut app = history().await;
    let mut books = BooksServiceClient::new(connect(app.address, &app.token).await);
    let year = |books: &mut BooksServiceClient<_>| {
        let request = pb::GetIncomeStatementRequest {
            branch_id: "TB".into(),
            from: "2022-01-01".into(),
            to: "2022-12-31".into(),
            ..Default::default()
        };
        let mut books: BooksServiceClient<_> = books.clone();
        async move {
            books
                .get_income_statement(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let result = year(&mut books).await.result.unwrap();
    assert_eq!(amount(&result.amount), "100000");

    let closing = app
        .branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close-2022"),
            branch_id: "TB".into(),
            through: "2022-12-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(closing.carried_to_retained_earnings);
    assert_eq!(amount(&closing.result_carried), "100000");
    assert_eq!(closing.receipt.unwrap().effective_date, "2022-12-31");
    // Retained earnings took the year's result; the income line is empty
    // at the year's end; the income statement still shows the year.
    assert_eq!(app.balance("retained-earnings:TB").await, "100000");
    let income_at_year_end = app
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: "interest-income:TB".into(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Date("2022-12-31".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&income_at_year_end.balance), "0");
    assert_eq!(
        amount(&year(&mut books).await.result.unwrap().amount),
        "100000"
    );
    let sheet = books
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: "TB".into(),
            date: "2022-12-31".into(),
            previous_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let equity: Vec<(&str, &str)> = sheet
        .equity
        .iter()
        .map(|l| (l.line.as_str(), amount(&l.amount)))
        .collect();
    assert_eq!(
        equity,
        vec![
            ("capital", "0"),
            ("retained-earnings", "100000"),
            ("result", "0")
        ]
    );

    // Reopening waits for a second manager, and names the reason.
    let asked = app
        .branch
        .reopen_period(pb::ReopenPeriodRequest {
            context: ctx("reopen-dec"),
            branch_id: "TB".into(),
            from: "2022-12-01".into(),
            reason: "a December deposit was left out".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let pending = asked.pending.expect("reopening waits for approval");
    let late = app
        .deposit("dec-deposit", "A/C1", "5000", "2022-12-15")
        .await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    match app.approve(pending.request).await.unwrap() {
        pb::batch_result::Result::ReopenPeriod(reply) => {
            assert_eq!(reply.closed_through, "2022-11-30")
        }
        other => panic!("approving a reopening gave {other:?}"),
    }
    app.deposit("dec-deposit", "A/C1", "5000", "2022-12-15")
        .await
        .unwrap();
    // Closed again: nothing more to carry, retained earnings unchanged.
    let again = app
        .branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close-2022-again"),
            branch_id: "TB".into(),
            through: "2022-12-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&again.result_carried), "0");
    assert_eq!(app.balance("retained-earnings:TB").await, "100000");
    assert_eq!(
        amount(&year(&mut books).await.result.unwrap().amount),
        "100000"
    );
}
