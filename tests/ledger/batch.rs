//! `SubmitBatch`: many commands, each with its own request id and result.

use mfi_ledger::pb;
use mfi_ledger::pb::batch_command::Command as Write;
use mfi_ledger::pb::batch_result::Result as Reply;
use tonic::Code;

use crate::support::{ctx, spawn_app, vnd};

fn deposit(id: &str, amount: &str) -> pb::BatchCommand {
    pb::BatchCommand {
        command: Some(Write::DepositSavings(pb::DepositSavingsRequest {
            context: ctx(id),
            account_id: "TB-0001/C1".into(),
            amount: vnd(amount),
            effective_date: "2024-02-01".into(),
        })),
    }
}

fn withdraw(id: &str, amount: &str) -> pb::BatchCommand {
    pb::BatchCommand {
        command: Some(Write::WithdrawSavings(pb::WithdrawSavingsRequest {
            context: ctx(id),
            account_id: "TB-0001/C1".into(),
            amount: vnd(amount),
            effective_date: "2024-02-01".into(),
        })),
    }
}

#[tokio::test]
async fn each_command_of_a_batch_gets_its_own_result_in_order() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let before = app.last_sequence().await;
    let batch = pb::SubmitBatchRequest {
        commands: vec![
            deposit("b-1", "100000"),
            withdraw("b-2", "150000"), // more than the 100,000 deposited just before
            deposit("b-3", "12.5"),    // malformed for VND
            withdraw("b-4", "30000"),  // sees the deposit of b-1
            pb::BatchCommand { command: None },
        ],
    };
    let results = app
        .branch
        .submit_batch(batch)
        .await
        .unwrap()
        .into_inner()
        .results;
    let results: Vec<Reply> = results.into_iter().map(|r| r.result.unwrap()).collect();
    assert_eq!(results.len(), 5);
    let Reply::DepositSavings(first) = &results[0] else {
        panic!("{:?}", results[0])
    };
    assert_eq!(first.balance.as_ref().unwrap().amount, "100000");
    assert_eq!(first.receipt.as_ref().unwrap().sequence, before + 1);
    let Reply::Error(overdraw) = &results[1] else {
        panic!("{:?}", results[1])
    };
    assert_eq!(overdraw.code, Code::FailedPrecondition as i32);
    assert!(overdraw.message.contains("amount"), "{}", overdraw.message);
    let Reply::Error(malformed) = &results[2] else {
        panic!("{:?}", results[2])
    };
    assert_eq!(malformed.code, Code::InvalidArgument as i32);
    assert!(
        malformed.message.contains("amount.amount"),
        "{}",
        malformed.message
    );
    let Reply::WithdrawSavings(last) = &results[3] else {
        panic!("{:?}", results[3])
    };
    assert_eq!(last.balance.as_ref().unwrap().amount, "70000");
    assert_eq!(last.receipt.as_ref().unwrap().sequence, before + 2);
    let Reply::Error(missing) = &results[4] else {
        panic!("{:?}", results[4])
    };
    assert!(
        missing.message.contains("commands[4].command"),
        "{}",
        missing.message
    );
    // Only the two accepted commands were written.
    assert_eq!(app.last_sequence().await, before + 2);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "70000");
}

#[tokio::test]
async fn a_batch_sent_again_is_applied_once() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let batch = || pb::SubmitBatchRequest {
        commands: (0..50)
            .map(|i| deposit(&format!("d-{i}"), "1000"))
            .collect(),
    };
    let first = app.branch.submit_batch(batch()).await.unwrap().into_inner();
    let after = app.last_sequence().await;
    let again = app.branch.submit_batch(batch()).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(app.last_sequence().await, after);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "50000");
    // The same ids one by one are retries too.
    let single = app
        .deposit("d-7", "TB-0001/C1", "1000", "2024-02-01")
        .await
        .unwrap();
    let Some(Reply::DepositSavings(in_batch)) = &first.results[7].result else {
        panic!()
    };
    assert_eq!(&single, in_batch);
}

#[tokio::test]
async fn empty_and_oversized_batches_are_refused() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let before = app.last_sequence().await;
    let status = app
        .branch
        .submit_batch(pb::SubmitBatchRequest { commands: vec![] })
        .await
        .unwrap_err();
    crate::support::assert_refused(&status, Code::InvalidArgument, "commands");
    let commands = (0..1001).map(|i| deposit(&format!("x-{i}"), "1")).collect();
    let status = app
        .branch
        .submit_batch(pb::SubmitBatchRequest { commands })
        .await
        .unwrap_err();
    crate::support::assert_refused(&status, Code::InvalidArgument, "a batch holds 1 to 1000");
    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn a_batch_larger_than_the_commands_in_flight_bound_is_refused_not_retried_forever() {
    use mfi_ledger::api::ServerLimits;
    use mfi_ledger::ledger::LedgerConfig;
    let config = LedgerConfig {
        queue_depth_max: 10,
        ..LedgerConfig::default()
    };
    let mut app = crate::support::spawn_app_with(config, ServerLimits::default()).await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let commands = (0..11).map(|i| deposit(&format!("big-{i}"), "1")).collect();
    let results = app.submit_batch(commands).await;
    for result in results {
        let Some(Reply::Error(error)) = result.result else {
            panic!("{result:?}")
        };
        assert_eq!(
            error.code,
            Code::InvalidArgument as i32,
            "{}",
            error.message
        );
        assert!(
            error.message.contains("at most 10 are in flight"),
            "{}",
            error.message
        );
    }
}
