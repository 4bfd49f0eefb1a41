//! A request id is applied once: retries get the original result.

use mfi_ledger::pb;

use crate::support::{App, ctx, spawn_app};

/// A server with branch TB and member TB-0001 (savings account TB-0001/C1).
pub(crate) async fn with_account() -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app
}

/// A deposit of `amount` VND into TB-0001/C1, always under the same request id.
pub(crate) fn deposit(amount: &str) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context: ctx("meeting-2024-02-01-TB-0001"),
        account_id: "TB-0001/C1".into(),
        amount: Some(pb::Money {
            amount: amount.into(),
            currency: "VND".into(),
        }),
        effective_date: "2024-02-01".into(),
    }
}

#[tokio::test]
async fn the_same_request_sent_ten_times_at_once_gives_one_entry_and_ten_identical_replies() {
    let mut app = with_account().await;
    let before = app.last_sequence().await;
    let mut sends = Vec::new();
    for _ in 0..10 {
        let mut client = app.branch.clone();
        sends.push(tokio::spawn(async move {
            client
                .deposit_savings(deposit("50000"))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut replies = Vec::new();
    for send in sends {
        replies.push(send.await.unwrap());
    }
    assert!(
        replies.iter().all(|reply| *reply == replies[0]),
        "replies differ: {replies:#?}"
    );
    assert_eq!(replies[0].receipt.as_ref().unwrap().sequence, before + 1);
    assert_eq!(app.last_sequence().await, before + 1);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "50000");
}

#[tokio::test]
async fn a_retry_after_a_restart_is_still_recognised() {
    let mut app = with_account().await;
    let first = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    let mut app = app.restart().await;
    let retry = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "50000");
}

#[tokio::test]
async fn equal_amounts_written_differently_are_the_same_request() {
    let mut app = with_account().await;
    let first = app
        .branch
        .deposit_savings(deposit("50000"))
        .await
        .unwrap()
        .into_inner();
    let after = app.last_sequence().await;
    for same in ["050000", "50000.0", "50000.000"] {
        let retry = app
            .branch
            .deposit_savings(deposit(same))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retry, first, "{same} is the same amount");
    }
    assert_eq!(app.last_sequence().await, after);
    let status = app
        .branch
        .deposit_savings(deposit("50001"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(app.last_sequence().await, after);
}

#[tokio::test]
async fn a_refused_request_can_be_retried_once_the_state_allows_it() {
    let mut app = with_account().await;
    let withdraw = || pb::WithdrawSavingsRequest {
        context: ctx("wd-1"),
        account_id: "TB-0001/C1".into(),
        amount: Some(pb::Money {
            amount: "30000".into(),
            currency: String::new(),
        }),
        effective_date: "2024-02-02".into(),
    };
    let status = app.branch.withdraw_savings(withdraw()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    app.branch.deposit_savings(deposit("50000")).await.unwrap();
    let done = app
        .branch
        .withdraw_savings(withdraw())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.balance.unwrap().amount, "20000");
}
