//! A branch's funding over gRPC: `FundBranch` debits the branch's cash and
//! credits the source's line (head-office funding, a liability; capital,
//! equity), `ReturnBranchFunding` gives money back, never more than the
//! branch holds from the source; the books stay balanced and the chart
//! shows both lines with their GL codes. Bad input is refused naming the
//! field and writes nothing; a clerk may not fund; a date in a closed
//! period is refused; a funding is reversed like any entry; a retry
//! returns the same entry.

use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
use mfi_ledger::domain::ids::{BranchId, PrincipalId};
use mfi_ledger::pb;
use mfi_ledger::pb::books_service_client::BooksServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use tonic::Code;

use crate::support::{
    App, amount, assert_refused, books, connect, ctx, flat_weekly, spawn_app, vnd,
};

const HEAD_OFFICE: i32 = pb::FundingSource::HeadOffice as i32;
const CAPITAL: i32 = pb::FundingSource::Capital as i32;

fn funding(
    request_id: &str,
    source: i32,
    amount: Option<pb::Money>,
    date: &str,
) -> pb::FundBranchRequest {
    pb::FundBranchRequest {
        context: ctx(request_id),
        branch_id: "TB".into(),
        source,
        amount,
        effective_date: date.into(),
    }
}

fn giving_back(
    request_id: &str,
    source: i32,
    amount: &str,
    date: &str,
) -> pb::ReturnBranchFundingRequest {
    pb::ReturnBranchFundingRequest {
        context: ctx(request_id),
        branch_id: "TB".into(),
        source,
        amount: vnd(amount),
        effective_date: date.into(),
    }
}

async fn fund(app: &mut App, request: pb::FundBranchRequest) -> pb::FundBranchResponse {
    app.branch.fund_branch(request).await.unwrap().into_inner()
}

async fn books_client(app: &App) -> BooksServiceClient<crate::support::Conn> {
    BooksServiceClient::new(connect(app.address, &app.token).await)
}

async fn trial_on(app: &App, date: &str) -> pb::GetTrialBalanceResponse {
    books_client(app)
        .await
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

/// Branch TB, funded with 500,000,000 VND from head office on 2024-01-01
/// and 200,000,000 VND of capital on 2024-01-02; the two entries' sequences.
async fn funded() -> (App, u64, u64) {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let head_office = fund(
        &mut app,
        funding("fund-ho", HEAD_OFFICE, vnd("500000000"), "2024-01-01"),
    )
    .await;
    let capital = fund(
        &mut app,
        funding("fund-capital", CAPITAL, vnd("200000000"), "2024-01-02"),
    )
    .await;
    let sequence = |reply: pb::FundBranchResponse| reply.receipt.unwrap().sequence;
    (app, sequence(head_office), sequence(capital))
}

#[tokio::test]
async fn funding_moves_cash_and_the_source_line_and_the_books_stay_balanced() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let reply = fund(
        &mut app,
        funding("fund-ho", HEAD_OFFICE, vnd("500000000"), "2024-01-01"),
    )
    .await;
    assert_eq!(reply.account, "head-office-funding:TB");
    assert_eq!(amount(&reply.source_balance), "500000000");
    let reply = fund(
        &mut app,
        funding("fund-capital", CAPITAL, vnd("200000000"), "2024-01-02"),
    )
    .await;
    assert_eq!(reply.account, "capital:TB");
    assert_eq!(amount(&reply.source_balance), "200000000");
    assert_eq!(app.balance("cash:TB").await, "700000000");
    assert_eq!(app.balance("head-office-funding:TB").await, "500000000");
    assert_eq!(app.balance("capital:TB").await, "200000000");

    // The journal shows what it was and its postings.
    let entry = app
        .audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: reply.receipt.as_ref().unwrap().sequence,
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .remove(0);
    assert_eq!(entry.command, "fund_branch");
    assert_eq!(
        entry.description,
        "branch TB funded with 200,000,000 VND from capital"
    );
    let postings: Vec<(String, i32, &str)> = entry
        .postings
        .iter()
        .map(|p| (p.account.clone(), p.side, amount(&p.amount)))
        .collect();
    assert_eq!(
        postings,
        vec![
            (
                "cash:TB".to_owned(),
                pb::PostingSide::Debit as i32,
                "200000000"
            ),
            (
                "capital:TB".to_owned(),
                pb::PostingSide::Credit as i32,
                "200000000"
            ),
        ]
    );

    // A member's loan is paid out of the funded cash; then some of head
    // office's money goes back.
    app.member("TB-0001").await;
    app.disburse(
        "loan-1",
        "TB-0001",
        flat_weekly("10000000", "20", 10, "2024-01-15"),
        "2024-01-08",
    )
    .await
    .unwrap();
    let back = app
        .branch
        .return_branch_funding(giving_back(
            "return-1",
            HEAD_OFFICE,
            "100000000",
            "2024-01-31",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.account, "head-office-funding:TB");
    assert_eq!(amount(&back.source_balance), "400000000");
    assert_eq!(app.balance("cash:TB").await, "590000000");
    assert_eq!(app.balance("head-office-funding:TB").await, "400000000");

    // The trial balance: both lines, with their GL codes, and debits equal credits.
    let trial = trial_on(&app, "2024-01-31").await;
    let row = |line: &str| {
        trial
            .rows
            .iter()
            .find(|r| r.line == line)
            .unwrap_or_else(|| panic!("no {line} row in {trial:?}"))
    };
    let head_office = row("head-office-funding");
    assert_eq!(
        (head_office.gl_code.as_str(), head_office.gl_name.as_str()),
        ("2311", "Funding from head office")
    );
    assert_eq!(head_office.kind, pb::AccountKind::Liability as i32);
    assert_eq!(amount(&head_office.credits), "500000000");
    assert_eq!(amount(&head_office.debits), "100000000");
    assert_eq!(amount(&head_office.credit_balance), "400000000");
    let capital = row("capital");
    assert_eq!(capital.gl_code, "3111");
    assert_eq!(capital.kind, pb::AccountKind::Equity as i32);
    assert_eq!(amount(&capital.credit_balance), "200000000");
    assert_eq!(amount(&row("cash").debit_balance), "590000000");
    assert_eq!(amount(&trial.total_debits), amount(&trial.total_credits));
    assert_eq!(
        amount(&trial.total_debit_balance),
        amount(&trial.total_credit_balance)
    );
    // Before the funding, the lines are there, empty.
    let before = trial_on(&app, "2023-12-31").await;
    assert!(
        before
            .rows
            .iter()
            .any(|r| r.line == "capital" && amount(&r.credits) == "0")
    );

    // The balance sheet: head-office funding among the liabilities, capital
    // in equity, and assets equal to both.
    let sheet = books_client(&app)
        .await
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: "TB".into(),
            date: "2024-01-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let shown = |lines: &[pb::StatementLine], line: &str| {
        lines
            .iter()
            .find(|l| l.line == line)
            .map(|l| amount(&l.amount).to_owned())
    };
    assert_eq!(
        shown(&sheet.liabilities, "head-office-funding").as_deref(),
        Some("400000000")
    );
    assert_eq!(
        shown(&sheet.equity, "capital").as_deref(),
        Some("200000000")
    );
    assert_eq!(
        amount(&sheet.total_assets.as_ref().unwrap().amount),
        amount(&sheet.total_liabilities_and_equity.as_ref().unwrap().amount)
    );

    // The chart of accounts lists both accounts on their lines.
    let accounts = books_client(&app)
        .await
        .list_accounts(pb::ListAccountsRequest {
            branch_id: "TB".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    let listed = |name: &str| {
        accounts
            .iter()
            .find(|a| a.account == name)
            .map(|a| (a.line.as_str(), a.gl_code.as_str(), amount(&a.balance)))
    };
    assert_eq!(
        listed("head-office-funding:TB"),
        Some(("head-office-funding", "2311", "400000000"))
    );
    assert_eq!(listed("capital:TB"), Some(("capital", "3111", "200000000")));

    // verify re-decides every funding entry.
    let entries = app.last_sequence().await;
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.entries, entries);
}

#[tokio::test]
async fn bad_funding_is_refused_naming_the_field_and_writes_nothing() {
    let (mut app, _, _) = funded().await;
    let accounts = ["cash:TB", "head-office-funding:TB", "capital:TB"];
    let before = books(&mut app, &accounts).await;
    let money = |amount: &str, currency: &str| {
        Some(pb::Money {
            amount: amount.into(),
            currency: currency.into(),
        })
    };
    let cases: Vec<(pb::FundBranchRequest, Code, &str)> = vec![
        (
            funding("zero", HEAD_OFFICE, vnd("0"), "2024-02-01"),
            Code::InvalidArgument,
            "amount",
        ),
        (
            funding("negative", HEAD_OFFICE, vnd("-1000"), "2024-02-01"),
            Code::InvalidArgument,
            "amount",
        ),
        (
            funding("fraction", HEAD_OFFICE, vnd("1000.5"), "2024-02-01"),
            Code::InvalidArgument,
            "amount",
        ),
        (
            funding("missing", HEAD_OFFICE, None, "2024-02-01"),
            Code::InvalidArgument,
            "amount",
        ),
        (
            funding("dollars", HEAD_OFFICE, money("1000", "USD"), "2024-02-01"),
            Code::InvalidArgument,
            "amount.currency",
        ),
        (
            funding("no-source", 0, vnd("1000"), "2024-02-01"),
            Code::InvalidArgument,
            "source",
        ),
        (
            funding("odd-source", 7, vnd("1000"), "2024-02-01"),
            Code::InvalidArgument,
            "source",
        ),
        (
            pb::FundBranchRequest {
                branch_id: "HN".into(),
                ..funding("elsewhere", HEAD_OFFICE, vnd("1000"), "2024-02-01")
            },
            Code::NotFound,
            "branch_id",
        ),
        (
            funding("future", HEAD_OFFICE, vnd("1000"), "2024-07-01"),
            Code::InvalidArgument,
            "effective_date",
        ),
        (
            funding("before", HEAD_OFFICE, vnd("1000"), "2023-12-31"),
            Code::FailedPrecondition,
            "effective_date",
        ),
    ];
    for (request, code, field) in cases {
        let refused = app.branch.fund_branch(request).await.unwrap_err();
        assert_refused(&refused, code, field);
    }
    // Giving back more than head office sent, or before it sent it.
    for (id, amount, date) in [
        ("too-much", "500000001", "2024-02-01"),
        ("too-early", "1", "2023-12-31"),
    ] {
        let refused = app
            .branch
            .return_branch_funding(giving_back(id, HEAD_OFFICE, amount, date))
            .await
            .unwrap_err();
        let code = if date == "2023-12-31" {
            "effective_date"
        } else {
            "amount"
        };
        assert_refused(&refused, Code::FailedPrecondition, code);
    }
    let refused = app
        .branch
        .return_branch_funding(giving_back("capital", CAPITAL, "200000001", "2024-02-01"))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "amount");
    assert!(
        refused
            .message()
            .contains("holds from capital on 2024-02-01: 200,000,000 VND"),
        "{refused:?} should say what is held"
    );
    assert_eq!(books(&mut app, &accounts).await, before);
}

#[tokio::test]
async fn a_clerk_may_not_fund_a_branch_and_its_manager_may() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let admin = PrincipalId::parse("p", "admin").unwrap();
    let tb = Scope::Branch(BranchId::parse("b", "TB").unwrap());
    let mut clients = Vec::new();
    for (id, role) in [("clerk.tb", Role::Clerk), ("manager.tb", Role::Manager)] {
        let grants = vec![RoleGrant {
            role,
            scope: tb.clone(),
        }];
        let token =
            mfi_ledger::auth::create_principal_in_process(&app.ledger, &admin, id, grants, 36_500)
                .await
                .unwrap();
        clients.push(BranchServiceClient::new(connect(app.address, &token).await));
    }
    let head = app.last_sequence().await;
    let refused = clients[0]
        .fund_branch(funding(
            "clerk-fund",
            HEAD_OFFICE,
            vnd("1000"),
            "2024-02-01",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("manager"), "{refused:?}");
    let refused = clients[0]
        .return_branch_funding(giving_back("clerk-return", HEAD_OFFICE, "1", "2024-02-01"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(app.last_sequence().await, head, "nothing written");
    clients[1]
        .fund_branch(funding(
            "manager-fund",
            HEAD_OFFICE,
            vnd("1000"),
            "2024-02-01",
        ))
        .await
        .unwrap();
    assert_eq!(app.balance("cash:TB").await, "1000");
}

#[tokio::test]
async fn funding_dated_into_a_closed_period_is_refused_and_reversed_after_it() {
    let (mut app, _, capital_entry) = funded().await;
    app.branch
        .close_period(pb::ClosePeriodRequest {
            context: ctx("close-q1"),
            branch_id: "TB".into(),
            through: "2024-03-31".into(),
        })
        .await
        .unwrap();
    let head = app.last_sequence().await;
    let refused = app
        .branch
        .fund_branch(funding("late", HEAD_OFFICE, vnd("1000"), "2024-03-15"))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "effective_date");
    assert!(refused.message().contains("closed period"), "{refused:?}");
    let refused = app
        .branch
        .return_branch_funding(giving_back(
            "late-return",
            HEAD_OFFICE,
            "1000",
            "2024-03-15",
        ))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "effective_date");
    assert_eq!(app.last_sequence().await, head, "nothing written");
    // After the close, funding goes on; and January's capital, entered by
    // mistake, is reversed after the close, leaving the closed books as
    // they were.
    fund(
        &mut app,
        funding("april", HEAD_OFFICE, vnd("1000"), "2024-04-01"),
    )
    .await;
    let closed_trial = trial_on(&app, "2024-03-31").await;
    let reversal = app.reverse("undo-capital", capital_entry).await.unwrap();
    let sequence = reversal.receipt.unwrap().sequence;
    let entry = app
        .audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: sequence,
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .remove(0);
    assert_eq!(entry.reverses_sequence, capital_entry);
    assert_eq!(entry.effective_date, "2024-04-01");
    assert_eq!(app.balance("capital:TB").await, "0");
    assert_eq!(trial_on(&app, "2024-03-31").await.rows, closed_trial.rows);
}

#[tokio::test]
async fn a_funding_is_reversed_unless_its_money_was_given_back() {
    let (mut app, head_office, _) = funded().await;
    let back = app
        .branch
        .return_branch_funding(giving_back(
            "return",
            HEAD_OFFICE,
            "200000000",
            "2024-02-01",
        ))
        .await
        .unwrap()
        .into_inner();
    let returned = back.receipt.unwrap().sequence;
    // Undoing the 500,000,000 would leave head office owed less than
    // nothing from 1 February: refused when asked, before any approval.
    let refused = app.reverse("undo-funding", head_office).await.unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "sequence");
    assert!(refused.message().contains("head-office"), "{refused:?}");
    // The return reversed first, then the funding.
    app.reverse("undo-return", returned).await.unwrap();
    assert_eq!(app.balance("head-office-funding:TB").await, "500000000");
    app.reverse("undo-funding-2", head_office).await.unwrap();
    assert_eq!(app.balance("head-office-funding:TB").await, "0");
    assert_eq!(app.balance("cash:TB").await, "200000000");
    // Once is all.
    let refused = app
        .reverse("undo-funding-3", head_office)
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "sequence");
}

#[tokio::test]
async fn a_retried_funding_returns_the_same_entry_and_writes_nothing() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    // In the branch's currency, named by the branch (no currency given).
    let unnamed = |amount: &str| {
        Some(pb::Money {
            amount: amount.into(),
            currency: String::new(),
        })
    };
    let first = fund(
        &mut app,
        funding("fund-once", HEAD_OFFICE, unnamed("500000000"), "2024-01-05"),
    )
    .await;
    let head = app.last_sequence().await;
    // The same request, the amount written with trailing zeros: the same.
    let again = fund(
        &mut app,
        funding(
            "fund-once",
            HEAD_OFFICE,
            unnamed("500000000.00"),
            "2024-01-05",
        ),
    )
    .await;
    assert_eq!(again, first);
    assert_eq!(app.last_sequence().await, head);
    assert_eq!(app.balance("cash:TB").await, "500000000");
    // The same request id for another amount or source: refused.
    for request in [
        funding("fund-once", HEAD_OFFICE, unnamed("600000000"), "2024-01-05"),
        funding("fund-once", CAPITAL, unnamed("500000000"), "2024-01-05"),
    ] {
        let refused = app.branch.fund_branch(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    }
    assert_eq!(app.last_sequence().await, head);

    // In a batch, each with its reply; the batch's retry is answered the same.
    let batch = pb::SubmitBatchRequest {
        commands: vec![
            pb::BatchCommand {
                command: Some(pb::batch_command::Command::FundBranch(funding(
                    "batch-fund",
                    CAPITAL,
                    vnd("100000000"),
                    "2024-01-06",
                ))),
            },
            pb::BatchCommand {
                command: Some(pb::batch_command::Command::ReturnBranchFunding(
                    giving_back("batch-return", HEAD_OFFICE, "50000000", "2024-01-07"),
                )),
            },
        ],
    };
    let results = app
        .branch
        .submit_batch(batch.clone())
        .await
        .unwrap()
        .into_inner()
        .results;
    match results
        .iter()
        .map(|r| r.result.clone())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [
            Some(pb::batch_result::Result::FundBranch(funded)),
            Some(pb::batch_result::Result::ReturnBranchFunding(returned)),
        ] => {
            assert_eq!(amount(&funded.source_balance), "100000000");
            assert_eq!(amount(&returned.source_balance), "450000000");
        }
        other => panic!("{other:?}"),
    }
    let head = app.last_sequence().await;
    let retried = app
        .branch
        .submit_batch(batch)
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(retried, results);
    assert_eq!(app.last_sequence().await, head);
    assert_eq!(app.balance("cash:TB").await, "550000000");
}
