//! The books an accountant reads, on the hand-worked history of
//! `totals.rs` (its header gives the entries). Worked out by hand from it:
//!
//! Cash is not funded in this ledger, so it runs negative: 2022 +300,000
//! +20,000 (savings) −5,000,000 (loan A) +1,100,000 (A's two payments) =
//! −3,580,000; 2023 +4,400,000 +100,000 −50,000 −2,000,000 +150,000
//! −3,000,000 +1,030,000 +2,080,000 (the 999 typo and its reversal cancel)
//! = +2,710,000, so −870,000 at the end of 2023.
//!
//! Trial balance of TB at 2023-12-31 (debits / credits): cash 9,180,999 /
//! 10,050,999; loan portfolio 10,000,000 / 8,000,000; compulsory savings
//! 50,999 / 570,999; interest income 0 / 610,000; totals 19,231,998 each.
//! Balances: debit 2,000,000 (portfolio) = credit 870,000 + 520,000 + 610,000.
//!
//! Balance sheet at 2023-12-31 (2022-12-31): assets −870,000 + 2,000,000 =
//! 1,130,000 (−3,580,000 + 4,000,000 = 420,000); savings 520,000 (320,000);
//! result not yet carried 610,000 (100,000). Income statement 2023 (2022):
//! interest 510,000 (100,000).

use mfi_ledger::pb;
use mfi_ledger::pb::books_service_client::BooksServiceClient;
use tonic::Code;

use crate::support::{App, Conn, assert_refused, chart, connect};
use crate::totals::history;

async fn books(app: &App) -> BooksServiceClient<Conn> {
    BooksServiceClient::new(connect(app.address, &app.token).await)
}

fn amount(money: &Option<pb::Money>) -> &str {
    &money.as_ref().expect("an amount").amount
}

fn on_date(date: &str) -> Option<pb::AsOf> {
    Some(pb::AsOf {
        point: Some(pb::as_of::Point::Date(date.into())),
    })
}

fn at_sequence(sequence: u64) -> Option<pb::AsOf> {
    Some(pb::AsOf {
        point: Some(pb::as_of::Point::Sequence(sequence)),
    })
}

/// (line, debits, credits, debit balance, credit balance) of the rows with any posting.
fn rows(trial: &pb::GetTrialBalanceResponse) -> Vec<(String, String, String, String, String)> {
    trial
        .rows
        .iter()
        .filter(|r| amount(&r.debits) != "0" || amount(&r.credits) != "0")
        .map(|r| {
            (
                r.line.clone(),
                amount(&r.debits).to_owned(),
                amount(&r.credits).to_owned(),
                amount(&r.debit_balance).to_owned(),
                amount(&r.credit_balance).to_owned(),
            )
        })
        .collect()
}

fn row(
    line: &str,
    d: &str,
    c: &str,
    db: &str,
    cb: &str,
) -> (String, String, String, String, String) {
    (line.into(), d.into(), c.into(), db.into(), cb.into())
}

#[tokio::test]
async fn the_trial_balance_on_a_date_is_the_hand_worked_one_and_balances() {
    let app = history().await;
    let mut books = books(&app).await;
    let trial = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: on_date("2023-12-31"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rows(&trial),
        vec![
            row("cash", "9180999", "10050999", "0", "870000"),
            row("loan-portfolio", "10000000", "8000000", "2000000", "0"),
            row("savings-compulsory", "50999", "570999", "0", "520000"),
            row("interest-income", "0", "610000", "0", "610000"),
        ]
    );
    assert_eq!(amount(&trial.total_debits), "19231998");
    assert_eq!(amount(&trial.total_credits), "19231998");
    assert_eq!(amount(&trial.total_debit_balance), "2000000");
    assert_eq!(amount(&trial.total_credit_balance), "2000000");
    assert_eq!(trial.as_of_date, "2023-12-31");
    // No amount shows as "-0".
    for row in &trial.rows {
        for money in [
            &row.debits,
            &row.credits,
            &row.debit_balance,
            &row.credit_balance,
        ] {
            assert!(!amount(money).starts_with("-0"), "{row:?}");
        }
    }
    // Every line of the chart is there, with the default codes, in code order.
    let codes: Vec<&str> = trial.rows.iter().map(|r| r.gl_code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(codes, sorted);
    assert!(codes.contains(&"1011") && codes.contains(&"3211") && codes.contains(&"5111"));
    // The institution's trial balance is the one branch's here.
    let institution = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: String::new(),
            as_of: on_date("2023-12-31"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rows(&institution), rows(&trial));
    assert_eq!(institution.branch_id, "");
    // Before any entry: nothing, and zeros that are plain zeros (no "-0").
    let empty = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: on_date("2000-01-01"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            amount(&empty.total_debit_balance),
            amount(&empty.total_credit_balance)
        ),
        ("0", "0")
    );
}

#[tokio::test]
async fn figures_as_of_a_sequence_are_what_the_books_said_before_a_back_dated_entry() {
    let mut app = history().await;
    // The history's last entry is the deposit of 20,000 back-dated to 2022-12-31.
    let last = app.last_sequence().await;
    let balance = |as_of| pb::GetBalanceRequest {
        account: "savings:A/C1".into(),
        as_of,
    };
    let before = app
        .audit
        .get_balance(balance(at_sequence(last - 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&before.balance), "250000");
    assert_eq!(before.as_of_sequence, last - 1);
    let now = app
        .audit
        .get_balance(balance(None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&now.balance), "270000");
    assert_eq!(now.as_of_sequence, last);
    // On 31 December 2022 (business view): 300,000 and the back-dated 20,000.
    let year_end = app
        .audit
        .get_balance(balance(on_date("2022-12-31")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&year_end.balance), "320000");
    assert_eq!(amount(&year_end.credits), "320000");

    let mut books = books(&app).await;
    let trial = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: at_sequence(last - 1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trial.as_of_sequence, last - 1);
    let savings = trial
        .rows
        .iter()
        .find(|r| r.line == "savings-compulsory")
        .unwrap();
    assert_eq!(amount(&savings.credit_balance), "500000");
    let cash = trial.rows.iter().find(|r| r.line == "cash").unwrap();
    assert_eq!(amount(&cash.credit_balance), "890000");
    assert_eq!(amount(&trial.total_debits), amount(&trial.total_credits));

    // A sequence past the head, or a date that is not one, is refused by name.
    let past = app
        .audit
        .get_balance(balance(at_sequence(last + 1)))
        .await
        .unwrap_err();
    assert_refused(&past, Code::InvalidArgument, "as_of.sequence");
    let bad = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: on_date("2023-13-01"),
        })
        .await
        .unwrap_err();
    assert_refused(&bad, Code::InvalidArgument, "as_of.date");
    let unknown = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "XX".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_refused(&unknown, Code::NotFound, "branch_id");
}

#[tokio::test]
async fn the_balance_sheet_and_income_statement_stand_beside_the_previous_year() {
    let app = history().await;
    let mut books = books(&app).await;
    let sheet = books
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: "TB".into(),
            date: "2023-12-31".into(),
            previous_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sheet.previous_date, "2022-12-31");
    let figure = |lines: &[pb::StatementLine], line: &str| {
        let l = lines.iter().find(|l| l.line == line).unwrap();
        (
            amount(&l.amount).to_owned(),
            amount(&l.previous_amount).to_owned(),
        )
    };
    assert_eq!(
        figure(&sheet.assets, "cash"),
        ("-870000".into(), "-3580000".into())
    );
    assert_eq!(
        figure(&sheet.assets, "loan-portfolio"),
        ("2000000".into(), "4000000".into())
    );
    assert_eq!(
        figure(&sheet.liabilities, "savings-compulsory"),
        ("520000".into(), "320000".into())
    );
    assert_eq!(
        figure(&sheet.equity, "result"),
        ("610000".into(), "100000".into())
    );
    let total = |line: &Option<pb::StatementLine>| {
        let line = line.as_ref().unwrap();
        (
            amount(&line.amount).to_owned(),
            amount(&line.previous_amount).to_owned(),
        )
    };
    assert_eq!(
        total(&sheet.total_assets),
        ("1130000".into(), "420000".into())
    );
    assert_eq!(
        total(&sheet.total_liabilities_and_equity),
        total(&sheet.total_assets)
    );

    let income = books
        .get_income_statement(pb::GetIncomeStatementRequest {
            branch_id: "TB".into(),
            from: "2023-01-01".into(),
            to: "2023-12-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (income.previous_from.as_str(), income.previous_to.as_str()),
        ("2022-01-01", "2022-12-31")
    );
    assert_eq!(
        figure(&income.income, "interest-income"),
        ("510000".into(), "100000".into())
    );
    assert_eq!(total(&income.result), ("510000".into(), "100000".into()));
    let backwards = books
        .get_income_statement(pb::GetIncomeStatementRequest {
            branch_id: "TB".into(),
            from: "2023-12-31".into(),
            to: "2023-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&backwards, Code::InvalidArgument, "from");
}

#[tokio::test]
async fn a_statement_runs_from_the_opening_balance_through_every_movement() {
    let app = history().await;
    let mut books = books(&app).await;
    let statement = books
        .get_account_statement(pb::GetAccountStatementRequest {
            account: "savings:A/C1".into(),
            from: "2022-01-01".into(),
            to: "2023-12-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&statement.opening_balance), "0");
    let movements: Vec<(&str, &str, &str, &str, &str)> = statement
        .movements
        .iter()
        .map(|m| {
            (
                m.date.as_str(),
                m.command.as_str(),
                amount(&m.debit),
                amount(&m.credit),
                amount(&m.balance),
            )
        })
        .collect();
    // In date order: the back-dated deposit, entered last, is second.
    assert_eq!(
        movements,
        vec![
            ("2022-01-10", "deposit_savings", "0", "300000", "300000"),
            ("2022-12-31", "deposit_savings", "0", "20000", "320000"),
            ("2023-02-01", "withdraw_savings", "50000", "0", "270000"),
        ]
    );
    assert_eq!(statement.movements[1].request_id, "a-save-late");
    assert_eq!(amount(&statement.closing_balance), "270000");

    let from_2023 = books
        .get_account_statement(pb::GetAccountStatementRequest {
            account: "savings:A/C1".into(),
            from: "2023-01-01".into(),
            to: "2023-12-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&from_2023.opening_balance), "320000");
    assert_eq!(from_2023.movements.len(), 1);
    assert_eq!(amount(&from_2023.closing_balance), "270000");

    // A reversed deposit shows the entry that reversed it, and the reversal.
    let c = books
        .get_account_statement(pb::GetAccountStatementRequest {
            account: "savings:C/C1".into(),
            from: "2023-08-01".into(),
            to: "2023-08-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.movements.len(), 2);
    assert_eq!(c.movements[0].reversed_by, c.movements[1].sequence);
    assert_eq!(c.movements[1].command, "reverse_entry");
    assert_eq!(amount(&c.opening_balance), amount(&c.closing_balance));
}

#[tokio::test]
async fn the_chart_lists_every_account_with_its_line_and_code_page_by_page() {
    let app = history().await;
    let accounts = chart(&mut books(&app).await, "TB", 3).await;
    let names: Vec<&str> = accounts.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "cash:TB",
            "interest-income:TB",
            "loan:A/L1",
            "loan:B/L1",
            "loan:C/L1",
            "savings:A/C1",
            "savings:B/C1",
            "savings:C/C1",
        ]
    );
    let c1 = accounts
        .iter()
        .find(|a| a.account == "savings:A/C1")
        .unwrap();
    assert_eq!(
        (c1.line.as_str(), c1.gl_code.as_str()),
        ("savings-compulsory", "2111")
    );
    assert_eq!(c1.kind(), pb::AccountKind::Liability);
    assert_eq!(amount(&c1.balance), "270000");
    let loan = accounts.iter().find(|a| a.account == "loan:C/L1").unwrap();
    assert_eq!(
        (loan.gl_code.as_str(), amount(&loan.balance)),
        ("1311", "2000000")
    );
}

/// `count` members of `group`, `prefix-0002` on (the first is a branch's
/// own), each with a compulsory savings account and one deposit into it
/// (so that its account is in the books), a hundred members a batch.
async fn savers(app: &mut App, prefix: &str, group: &str, count: usize) {
    for chunk in (2..count + 2).collect::<Vec<_>>().chunks(100) {
        let mut commands = Vec::new();
        for n in chunk {
            let member = format!("{prefix}-{n:04}");
            let command = |command| pb::BatchCommand {
                command: Some(command),
            };
            commands.push(command(pb::batch_command::Command::RegisterMember(
                pb::RegisterMemberRequest {
                    context: crate::support::ctx(&format!("register-{member}")),
                    member_id: member.clone(),
                    full_name: "Trần Thị Mai".into(),
                    group_id: group.into(),
                    joined_on: "2024-01-02".into(),
                },
            )));
            commands.push(command(pb::batch_command::Command::OpenSavingsAccount(
                pb::OpenSavingsAccountRequest {
                    context: crate::support::ctx(&format!("open-{member}")),
                    member_id: member.clone(),
                    kind: pb::SavingsKind::Compulsory as i32,
                    opened_on: "2024-01-02".into(),
                },
            )));
            commands.push(command(pb::batch_command::Command::DepositSavings(
                pb::DepositSavingsRequest {
                    context: crate::support::ctx(&format!("deposit-{member}")),
                    account_id: format!("{member}/C1"),
                    amount: crate::support::vnd("50000"),
                    effective_date: "2024-01-03".into(),
                },
            )));
        }
        let results = app.submit_batch(commands).await;
        let refused = results
            .iter()
            .find(|r| matches!(r.result, Some(pb::batch_result::Result::Error(_)) | None));
        assert!(refused.is_none(), "{refused:?}");
    }
}

/// A chart longer than the accounts one short hold of the read lock looks
/// at (256): a page of up to 1,000 spans several holds, and lists every
/// account of the branch once and in order, passing another branch's among
/// them, as pages of a few do; the institution's lists both branches'.
#[tokio::test]
async fn a_page_of_the_chart_spans_several_holds_of_the_read_lock() {
    let mut app = crate::support::spawn_app().await;
    app.branch_tb().await;
    app.other_branch("HN", "VND").await;
    // HN's savings accounts sort before TB's, among the accounts looked at.
    savers(&mut app, "HN", "HN-G01", 150).await;
    savers(&mut app, "TB", "TB-G01", 320).await;
    let mut client = books(&app).await;
    let whole = chart(&mut client, "TB", 1000).await;
    let names: Vec<&str> = whole.iter().map(|a| a.account.as_str()).collect();
    let savings = names
        .iter()
        .filter(|n| n.starts_with("savings:TB-"))
        .count();
    assert_eq!(savings, 320, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("HN")), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert!(names.contains(&"cash:TB"));
    // One page: every account in it.
    let page = client
        .list_accounts(pb::ListAccountsRequest {
            branch_id: "TB".into(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.accounts, whole);
    assert!(page.next_page_token.is_empty());
    assert_eq!(chart(&mut client, "TB", 7).await, whole);
    let institution = chart(&mut client, "", 1000).await;
    let hn = chart(&mut client, "HN", 1000).await;
    assert_eq!(institution.len(), whole.len() + hn.len());
    assert_eq!(
        hn.iter()
            .filter(|a| a.account.starts_with("savings:HN-"))
            .count(),
        150
    );
}
