//! A member and a loan as they stood right after an entry: what an auditor
//! reads to see what the books said at that moment, before the entries
//! since (a reversal, a repayment back-dated before the others, a
//! deposit). Each answer is the one read live right after that entry.

use mfi_ledger::pb;
use tonic::Code;

use crate::support::{App, assert_refused, borrower};

async fn loan_at(app: &mut App, loan: &str, sequence: u64, date: &str) -> pb::GetLoanResponse {
    app.audit
        .get_loan(pb::GetLoanRequest {
            loan_id: loan.into(),
            as_of_date: date.into(),
            as_of_sequence: sequence,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn member_at(app: &mut App, member: &str, sequence: u64) -> pb::GetMemberResponse {
    app.audit
        .get_member(pb::GetMemberRequest {
            member_id: member.into(),
            as_of_sequence: sequence,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_member_and_a_loan_as_of_an_entry_are_what_was_read_right_after_it() {
    let (mut app, loan) = borrower().await;
    let disbursed = app.last_sequence().await;
    app.repay("pay-1", &loan, "260000", "2024-01-15")
        .await
        .unwrap();
    let first_paid = app.last_sequence().await;
    app.repay("pay-2", &loan, "260000", "2024-01-22")
        .await
        .unwrap();
    let second_paid = app.last_sequence().await;
    let live_loan = loan_at(&mut app, &loan, 0, "2024-02-01").await;
    let live_member = member_at(&mut app, "TB-0001", 0).await;
    assert_eq!(live_loan.as_of_sequence, second_paid);
    assert_eq!(live_member.as_of_sequence, second_paid);

    // Since then: the second payment reversed, paid again larger, a deposit.
    app.reverse("undo-pay-2", second_paid).await.unwrap();
    app.repay("pay-2-again", &loan, "520000", "2024-01-22")
        .await
        .unwrap();
    app.deposit("dep-2", "TB-0001/C1", "50000", "2024-01-23")
        .await
        .unwrap();
    let now = loan_at(&mut app, &loan, 0, "2024-02-01").await;
    assert_ne!(
        now.principal_outstanding, live_loan.principal_outstanding,
        "the entries since change the loan"
    );

    // As of the second payment: the loan and the member read live then.
    let then = loan_at(&mut app, &loan, second_paid, "2024-02-01").await;
    assert_eq!(then, live_loan);
    let member_then = member_at(&mut app, "TB-0001", second_paid).await;
    assert_eq!(member_then, live_member);

    // As of the first payment: one installment paid, one to go by 22 January.
    let first = loan_at(&mut app, &loan, first_paid, "2024-01-23").await;
    assert_eq!(first.as_of_sequence, first_paid);
    let paid: Vec<i32> = first.schedule.iter().map(|i| i.status).collect();
    assert_eq!(
        paid,
        [
            pb::InstallmentStatus::Paid as i32,
            pb::InstallmentStatus::Overdue as i32,
            pb::InstallmentStatus::NotDue as i32,
            pb::InstallmentStatus::NotDue as i32,
        ]
    );
    assert!(first.in_arrears);
    // Without a date, the statuses are those of the day the entry was
    // recorded (what a read right after it showed).
    let recorded = loan_at(&mut app, &loan, first_paid, "").await;
    assert_eq!(
        recorded.as_of_date,
        loan_at(&mut app, &loan, 0, "").await.as_of_date
    );

    // Before the disbursement the member had no loan; before the loan
    // existed, asking for it is refused by name.
    let before = member_at(&mut app, "TB-0001", disbursed - 1).await;
    assert!(before.loans.is_empty());
    assert_eq!(before.savings_accounts.len(), 1);
    let refused = app
        .audit
        .get_loan(pb::GetLoanRequest {
            loan_id: loan.clone(),
            as_of_date: String::new(),
            as_of_sequence: disbursed - 1,
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "as_of_sequence");
    assert!(refused.message().contains("disbursed by entry"));
    let last = app.last_sequence().await;
    let beyond = app
        .audit
        .get_member(pb::GetMemberRequest {
            member_id: "TB-0001".into(),
            as_of_sequence: last + 1,
        })
        .await
        .unwrap_err();
    assert_refused(&beyond, Code::InvalidArgument, "as_of_sequence");
}

async fn totals_at(app: &mut App, sequence: u64) -> pb::GetBranchTotalsResponse {
    app.audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            branch_id: "TB".into(),
            period: Some(pb::get_branch_totals_request::Period::Month(
                "2024-01".into(),
            )),
            as_of_sequence: sequence,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn quality_at(app: &mut App, branch: &str, sequence: u64) -> pb::GetPortfolioQualityResponse {
    app.audit
        .get_portfolio_quality(pb::GetPortfolioQualityRequest {
            branch_id: branch.into(),
            as_of_date: "2024-02-10".into(),
            period: None,
            as_of_sequence: sequence,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn branch_totals_and_portfolio_quality_as_of_an_entry_are_what_was_read_right_after_it() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "260000", "2024-01-15")
        .await
        .unwrap();
    let paid = app.last_sequence().await;
    let live_totals = totals_at(&mut app, 0).await;
    let live_quality = quality_at(&mut app, "TB", 0).await;
    let live_all = quality_at(&mut app, "", 0).await;
    assert_eq!(live_totals.as_of_sequence, paid);
    assert_eq!(live_quality.as_of_sequence, paid);
    // Two installments unpaid by 10 February: the whole loan is at risk.
    assert_eq!(live_quality.par1_amount, live_quality.gross_portfolio);

    // Since then, all dated in January: the payment reversed, a larger one,
    // and a deposit.
    app.reverse("undo-pay-1", paid).await.unwrap();
    app.repay("pay-1-again", &loan, "520000", "2024-01-22")
        .await
        .unwrap();
    app.deposit("dep-2", "TB-0001/C1", "50000", "2024-01-20")
        .await
        .unwrap();
    let now = totals_at(&mut app, 0).await;
    assert_ne!(
        now.current, live_totals.current,
        "the entries since change January"
    );
    let quality_now = quality_at(&mut app, "TB", 0).await;
    assert_ne!(quality_now.par1_amount, live_quality.par1_amount);

    // As of the payment: what was read right after it, named by its entry.
    assert_eq!(totals_at(&mut app, paid).await, live_totals);
    assert_eq!(quality_at(&mut app, "TB", paid).await, live_quality);
    assert_eq!(quality_at(&mut app, "", paid).await, live_all);

    // Before the disbursement the branch had lent nothing.
    let before = totals_at(&mut app, 2).await;
    assert_eq!(before.as_of_sequence, 2);
    let current = before.current.unwrap();
    assert_eq!(current.loans_disbursed, 0);

    let last = app.last_sequence().await;
    let beyond = app
        .audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            branch_id: "TB".into(),
            period: Some(pb::get_branch_totals_request::Period::Year(2024)),
            as_of_sequence: last + 1,
        })
        .await
        .unwrap_err();
    assert_refused(&beyond, Code::InvalidArgument, "as_of_sequence");
    let beyond = app
        .audit
        .get_portfolio_quality(pb::GetPortfolioQualityRequest {
            branch_id: "TB".into(),
            as_of_date: String::new(),
            period: None,
            as_of_sequence: last + 1,
        })
        .await
        .unwrap_err();
    assert_refused(&beyond, Code::InvalidArgument, "as_of_sequence");
}

/// `count` deposits into `TB-0001/C1` over January (opened on the 2nd), from the `from`th on,
/// six hundred a batch.
async fn deposits_over_january(app: &mut App, from: usize, count: usize) {
    deposits_dated(app, "january", from, count, |i| {
        format!("2024-01-{:02}", 3 + i % 27)
    })
    .await;
}

/// `count` deposits into `TB-0001/C1` from the `from`th on, the `i`th
/// dated `date(i)`, six hundred a batch.
async fn deposits_dated(
    app: &mut App,
    prefix: &str,
    from: usize,
    count: usize,
    date: impl Fn(usize) -> String,
) {
    for batch in (from..from + count).collect::<Vec<_>>().chunks(600) {
        let commands = batch
            .iter()
            .map(|i| pb::BatchCommand {
                command: Some(pb::batch_command::Command::DepositSavings(
                    pb::DepositSavingsRequest {
                        context: crate::support::ctx(&format!("{prefix}-{i}")),
                        account_id: "TB-0001/C1".into(),
                        amount: crate::support::vnd("1000"),
                        effective_date: date(*i),
                    },
                )),
            })
            .collect();
        let results = app.submit_batch(commands).await;
        let refused = results
            .iter()
            .find(|r| !matches!(r.result, Some(pb::batch_result::Result::DepositSavings(_))));
        assert!(refused.is_none(), "{refused:?}");
    }
}

/// A ledger that writes a checkpoint every 600 entries, and within a
/// fifth of a second of entries that trickle in after them.
fn checkpointing() -> mfi_ledger::ledger::LedgerConfig {
    mfi_ledger::ledger::LedgerConfig {
        checkpoint_entries: 600,
        checkpoint_interval: std::time::Duration::from_millis(200),
        ..Default::default()
    }
}

/// A server that writes a checkpoint every 600 entries (each batch: what
/// it holds only for the store leaves memory once one saved it), and
/// entries that trickle in after them within a fifth of a second, with
/// `count` deposits into `TB-0001/C1` over January; and its last entry.
async fn checkpointed_deposits(count: usize) -> (App, u64) {
    let mut app =
        crate::support::spawn_app_with(checkpointing(), mfi_ledger::api::ServerLimits::default())
            .await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    deposits_over_january(&mut app, 0, count).await;
    let last = app.last_sequence().await;
    (app, last)
}

/// What `read` gives once `done` holds of it (the checkpoint that lets
/// records go runs beside the writes), or after five seconds.
async fn once<T>(app: &App, read: impl Fn(&App) -> T, done: impl Fn(&T) -> bool) -> T {
    let mut found = read(app);
    for _ in 0..500 {
        if done(&found) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        found = read(app);
    }
    found
}

/// The first entry of each closed chunk of TB's day log, and how many of
/// them the server let go of (left in the store, read when asked).
fn closed_chunks(app: &App) -> (Vec<u64>, usize) {
    app.ledger.read(|state| {
        let log = state.day_log();
        let firsts: Vec<u64> = log.closed_keys().map(|(_, first)| first).collect();
        let let_go = log
            .closed_keys()
            .filter(|(branch, first)| log.is_let_go(branch, *first))
            .count();
        (firsts, let_go)
    })
}

/// A long day log's older chunks stay in the state cache once written and
/// are read back when a figure as of one of their entries is asked for:
/// after a restart every answer is the one given before it. A chunk's
/// record edited on disk does not stop the server from starting (it is not
/// read then); a figure it holds is refused as damaged, the others still
/// answer, and `verify` reports the edit.
#[tokio::test]
async fn figures_as_of_early_entries_are_read_back_from_the_cache_after_a_restart() {
    // Chunks closed while serving leave memory once a checkpoint saved
    // them.
    let (mut app, last) = checkpointed_deposits(3_600).await;
    let serving = once(&app, closed_chunks, |(firsts, let_go)| {
        *let_go == firsts.len()
    })
    .await;
    assert!(serving.0.len() >= 2, "closed chunks: {:?}", serving.0);
    assert_eq!(
        serving.1,
        serving.0.len(),
        "closed chunks let go once saved"
    );
    let sequences: Vec<u64> = (1..=last).step_by(157).chain([last - 1, last]).collect();
    let mut before = Vec::new();
    for &sequence in &sequences {
        before.push((
            totals_at(&mut app, sequence).await,
            quality_at(&mut app, "TB", sequence).await,
        ));
    }

    let mut app = app.restart().await;
    let (firsts, let_go) = closed_chunks(&app);
    assert!(firsts.len() >= 2, "closed chunks: {firsts:?}");
    assert_eq!(let_go, firsts.len(), "every closed chunk left in the store");
    for (&sequence, (totals, quality)) in sequences.iter().zip(&before) {
        assert_eq!(
            &totals_at(&mut app, sequence).await,
            totals,
            "as of {sequence}"
        );
        assert_eq!(
            &quality_at(&mut app, "TB", sequence).await,
            quality,
            "as of {sequence}"
        );
    }
    // The log goes on: entries after the restart close more chunks, which
    // the next checkpoint leaves in the store as well.
    deposits_over_january(&mut app, 3_600, 1_800).await;
    let later: Vec<u64> = (last..=last + 1_800).step_by(157).collect();
    let mut later_totals = Vec::new();
    for &sequence in &later {
        later_totals.push(totals_at(&mut app, sequence).await);
    }
    let dir = app.stop().await;
    let mut app = crate::support::start_again(dir).await;
    let (more, let_go) = closed_chunks(&app);
    assert!(more.len() > firsts.len(), "{more:?} after {firsts:?}");
    assert_eq!(let_go, more.len());
    for (&sequence, (totals, _)) in sequences.iter().zip(&before) {
        assert_eq!(
            &totals_at(&mut app, sequence).await,
            totals,
            "as of {sequence}"
        );
    }
    for (&sequence, totals) in later.iter().zip(&later_totals) {
        assert_eq!(
            &totals_at(&mut app, sequence).await,
            totals,
            "as of {sequence}"
        );
    }

    // The first closed chunk's record replaced by the second's.
    let dir = app.stop().await;
    {
        let db = crate::support::open_cache_directly(dir.path());
        let key = |first: u64| format!("cold/daylog/TB/{first:020}");
        let second = db.get(key(firsts[1])).unwrap().unwrap();
        db.insert(key(firsts[0]), second).unwrap();
        db.flush().unwrap();
    }
    let mut app = crate::support::start_again(dir).await;
    assert_eq!(
        app.last_sequence().await,
        last + 1_800,
        "started from its cache"
    );
    let damaged = app
        .audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            branch_id: "TB".into(),
            period: Some(pb::get_branch_totals_request::Period::Month(
                "2024-01".into(),
            )),
            as_of_sequence: firsts[0],
        })
        .await
        .unwrap_err();
    assert_eq!(damaged.code(), Code::DataLoss, "{damaged:?}");
    assert!(
        damaged
            .message()
            .contains(&format!("as of entry {}", firsts[0]))
            && damaged.message().contains("mfi-ledger verify"),
        "{damaged:?}"
    );
    let (at, &other) = sequences
        .iter()
        .enumerate()
        .find(|(_, s)| **s >= firsts[1])
        .unwrap();
    assert_eq!(
        totals_at(&mut app, other).await,
        before[at].0,
        "a figure of another chunk still answers"
    );
    let dir = app.stop().await;
    match crate::support::verify(dir.path()) {
        Err(error) => assert!(
            error
                .to_string()
                .contains(&format!("cold/daylog/TB/{:020}", firsts[0])),
            "{error}"
        ),
        Ok(report) => panic!("verify must report the edited record: {report:?}"),
    }
}

/// Of `account`'s records of steps: how many there are, and how many the
/// server let go of (left in the store, read back when asked).
fn account_records(app: &App, account: &str) -> (u64, u64) {
    let account = mfi_ledger::domain::account::AccountId::parse("account", account).unwrap();
    app.ledger.read(|state| {
        let books = state.books();
        let count = books
            .account_record_keys()
            .filter(|(a, _)| **a == account)
            .count() as u64;
        let let_go = (0..count).filter(|k| books.is_let_go(&account, *k)).count() as u64;
        (count, let_go)
    })
}

/// What an auditor reads of one account: its balance as of entries and
/// dates, and its statement over a few spans.
async fn account_reads(
    app: &mut App,
    account: &str,
    sequences: &[u64],
) -> (
    Vec<pb::GetBalanceResponse>,
    Vec<pb::GetAccountStatementResponse>,
) {
    let mut balances = Vec::new();
    let dates = (2..=31).map(|d| pb::as_of::Point::Date(format!("2024-01-{d:02}")));
    let points = sequences
        .iter()
        .map(|s| pb::as_of::Point::Sequence(*s))
        .chain(dates);
    for point in points {
        let balance = app
            .audit
            .get_balance(pb::GetBalanceRequest {
                account: account.into(),
                as_of: Some(pb::AsOf { point: Some(point) }),
            })
            .await
            .unwrap()
            .into_inner();
        balances.push(balance);
    }
    let mut books = pb::books_service_client::BooksServiceClient::new(
        crate::support::connect(app.address, &app.token).await,
    );
    let mut statements = Vec::new();
    let spans = [
        ("", "2024-01-31"),
        ("2024-01-05", "2024-01-05"),
        ("2024-01-20", "2024-01-29"),
    ];
    for (from, to) in spans {
        let statement = books
            .get_account_statement(pb::GetAccountStatementRequest {
                account: account.into(),
                from: from.into(),
                to: to.into(),
            })
            .await
            .unwrap()
            .into_inner();
        statements.push(statement);
    }
    (balances, statements)
}

/// An account's older records of steps leave memory once a checkpoint
/// saved them, and a member's account's last one too, and its balances as
/// of past entries and dates and its statements are read back from the
/// state cache: after a restart, and as more entries come, every answer
/// is the one given before, and the last record, grown by them, leaves
/// memory again once saved.
#[tokio::test]
async fn an_accounts_older_steps_are_read_back_from_the_cache_after_a_restart() {
    let (mut app, last) = checkpointed_deposits(1_200).await;
    let accounts = ["savings:TB-0001/C1", "cash:TB"];
    // Records the server keeps: none of a member's account once saved,
    // the last of the branch's cash (which most entries post to).
    let kept = [0, 1];
    let records = once(
        &app,
        |app| account_records(app, accounts[0]),
        |(count, let_go)| let_go == count,
    )
    .await;
    assert!(records.0 >= 9, "records: {records:?}");
    assert_eq!(records.1, records.0, "every record let go once saved");
    let cash = once(
        &app,
        |app| account_records(app, accounts[1]),
        |(count, let_go)| let_go + 1 == *count,
    )
    .await;
    assert_eq!(cash.1 + 1, cash.0, "all but the last let go once saved");
    let sequences: Vec<u64> = (1..=last).step_by(97).chain([last]).collect();
    let mut before = Vec::new();
    for account in accounts {
        before.push(account_reads(&mut app, account, &sequences).await);
    }
    assert_eq!(
        before[0].1[0].movements.len(),
        1_200,
        "every deposit in the statement"
    );

    let mut app = app.restart_with(checkpointing()).await;
    for ((account, answers), kept) in accounts.iter().zip(&before).zip(kept) {
        let (count, let_go) = account_records(&app, account);
        assert_eq!(
            let_go + kept,
            count,
            "{account}: every closed record left in the store"
        );
        assert_eq!(
            &account_reads(&mut app, account, &sequences).await,
            answers,
            "{account}"
        );
    }
    // Entries after the restart: the older answers stand, and so do the
    // newer ones once the member's account's last record, grown by them,
    // is saved and let go of again.
    deposits_over_january(&mut app, 1_200, 600).await;
    let grown = account_reads(&mut app, accounts[0], &sequences).await;
    assert_eq!(
        grown.1[0].movements.len(),
        1_800,
        "every deposit in the statement"
    );
    let records = once(
        &app,
        |app| account_records(app, accounts[0]),
        |(count, let_go)| let_go == count,
    )
    .await;
    assert_eq!(records.1, records.0, "every record let go once saved again");
    assert_eq!(
        account_reads(&mut app, accounts[0], &sequences).await,
        grown
    );
    for (account, answers) in accounts.iter().zip(&before) {
        let (balances, _) = account_reads(&mut app, account, &sequences).await;
        assert_eq!(
            balances[..sequences.len()],
            answers.0[..sequences.len()],
            "{account}"
        );
    }
}

/// `count` deposits into `TB-0001/C1` from the `from`th on, fifty a day from
/// the 3rd of January, in date order, six hundred a batch.
async fn deposits_in_date_order(app: &mut App, from: usize, count: usize) {
    let first = crate::support::date("2024-01-03");
    deposits_dated(app, "in-order", from, count, |i| {
        (first + chrono::Days::new(i as u64 / 50)).to_string()
    })
    .await;
}

/// Which of `account`'s records of steps the server holds as moved out of
/// those startup reads.
fn moved_records(app: &App, account: &str) -> Vec<u64> {
    let account = mfi_ledger::domain::account::AccountId::parse("account", account).unwrap();
    app.ledger.read(|state| {
        let books = state.books();
        books
            .account_record_keys()
            .filter(|(a, k)| **a == account && books.is_moved(&account, *k))
            .map(|(_, k)| k)
            .collect()
    })
}

/// Of `account`'s records in the state cache of a stopped server: which
/// keep their steps in a record read when asked (`cold/closed/`), and the
/// length of what each record's own key keeps.
fn cached_records(dir: &std::path::Path, account: &str) -> (Vec<u64>, Vec<usize>) {
    let db = crate::support::open_cache_directly(dir);
    let moved = db
        .scan_prefix(format!("cold/closed/{account}/"))
        .map(|item| {
            let (key, _) = item.unwrap();
            let key = String::from_utf8(key.to_vec()).unwrap();
            key.rsplit_once('/').unwrap().1.parse().unwrap()
        })
        .collect();
    let own = db
        .scan_prefix(format!("steps/{account}/"))
        .map(|item| item.unwrap().1.len())
        .collect();
    (moved, own)
}

/// A savings account's closed records of steps, deposits in date order,
/// move out of those startup reads once the record after each opens: the
/// state cache keeps each one's steps in a record read when asked, and
/// its own key only what startup takes of it. Its balances and statements
/// read the same after each restart, as more records close and move, and
/// `verify` finds the cache as the journal's replay makes it; steps
/// edited on disk are refused as damaged, and `verify` names the record.
#[tokio::test]
async fn a_savings_accounts_closed_records_move_out_of_startup_and_read_the_same() {
    let mut app =
        crate::support::spawn_app_with(checkpointing(), mfi_ledger::api::ServerLimits::default())
            .await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    deposits_in_date_order(&mut app, 0, 1_200).await;
    let account = "savings:TB-0001/C1";
    // 1,200 steps: nine full records of 128 and a tenth, open.
    assert_eq!(moved_records(&app, account), (0..9).collect::<Vec<u64>>());
    let last = app.last_sequence().await;
    let sequences: Vec<u64> = (1..=last).step_by(97).chain([last]).collect();
    let before = account_reads(&mut app, account, &sequences).await;
    assert_eq!(before.1[0].movements.len(), 1_200);

    let dir = app.stop().await;
    let (moved, own) = cached_records(dir.path(), account);
    assert_eq!(
        moved,
        (0..9).collect::<Vec<u64>>(),
        "moved out in the cache"
    );
    assert_eq!(own.len(), 10);
    assert!(
        own[..9].iter().all(|len| *len < 200) && own[9] > 200,
        "what each record's own key keeps: {own:?}"
    );
    let mut app = crate::support::start_again(dir).await;
    let (count, let_go) = account_records(&app, account);
    assert_eq!((count, let_go), (10, 10), "none held after a restart");
    assert_eq!(account_reads(&mut app, account, &sequences).await, before);

    // More deposits close and move two more records.
    deposits_in_date_order(&mut app, 1_200, 300).await;
    assert_eq!(moved_records(&app, account), (0..11).collect::<Vec<u64>>());
    let more = account_reads(&mut app, account, &sequences).await;
    // January's: the last fifty are dated the 1st of February.
    assert_eq!(more.1[0].movements.len(), 1_450);
    assert_eq!(more.0[..sequences.len()], before.0[..sequences.len()]);
    let dir = app.stop().await;
    assert_eq!(
        cached_records(dir.path(), account).0,
        (0..11).collect::<Vec<u64>>()
    );
    let report = crate::support::verify(dir.path()).unwrap();
    assert_eq!(report.state_not_compared, None, "{report:?}");
    assert_eq!(report.state_compared_at, last + 300, "{report:?}");
    let mut app = crate::support::start_again(dir).await;
    assert_eq!(account_reads(&mut app, account, &sequences).await, more);

    // The first record's steps replaced on disk by the second's.
    let dir = app.stop().await;
    {
        let db = crate::support::open_cache_directly(dir.path());
        let key = |k: u64| format!("cold/closed/{account}/{k:010}");
        let second = db.get(key(1)).unwrap().unwrap();
        db.insert(key(0), second).unwrap();
        db.flush().unwrap();
    }
    let mut app = crate::support::start_again(dir).await;
    assert_eq!(
        app.last_sequence().await,
        last + 300,
        "started from its cache"
    );
    let mut books = pb::books_service_client::BooksServiceClient::new(
        crate::support::connect(app.address, &app.token).await,
    );
    let damaged = books
        .get_account_statement(pb::GetAccountStatementRequest {
            account: account.into(),
            from: String::new(),
            to: "2024-01-31".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(damaged.code(), Code::DataLoss, "{damaged:?}");
    let dir = app.stop().await;
    match crate::support::verify(dir.path()) {
        Err(error) => assert!(
            error
                .to_string()
                .contains(&format!("cold/closed/{account}/0000000000")),
            "{error}"
        ),
        Ok(report) => panic!("verify must report the edited record: {report:?}"),
    }
}

/// A record read when asked removed on disk with the hash kept for it (so
/// that each record left still matches its own): startup takes those hashes
/// by their sum and reads on, and the check of them that follows finds
/// they do not add up. Every read of such a record is refused as damaged,
/// never answered from what is left; the rest is served; `verify` says the
/// hashes do not add up; and the next start rebuilds the cache from the
/// journal, after which every figure is the one given before.
#[tokio::test]
async fn a_record_read_when_asked_removed_with_its_hash_is_refused_until_rebuilt() {
    let mut app =
        crate::support::spawn_app_with(checkpointing(), mfi_ledger::api::ServerLimits::default())
            .await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    deposits_in_date_order(&mut app, 0, 300).await;
    let account = "savings:TB-0001/C1";
    assert_eq!(moved_records(&app, account), [0, 1]);
    let last = app.last_sequence().await;
    let sequences: Vec<u64> = (1..=last).step_by(31).chain([last]).collect();
    let before = account_reads(&mut app, account, &sequences).await;

    let dir = app.stop().await;
    remove_with_its_hash(dir.path(), &format!("cold/closed/{account}/0000000000"));
    let mut app = crate::support::start_again(dir).await;
    let mut books = pb::books_service_client::BooksServiceClient::new(
        crate::support::connect(app.address, &app.token).await,
    );
    // The record removed and the one left alike.
    for (from, to) in [("2024-01-03", "2024-01-04"), ("2024-01-07", "2024-01-07")] {
        let damaged = books
            .get_account_statement(pb::GetAccountStatementRequest {
                account: account.into(),
                from: from.into(),
                to: to.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(damaged.code(), Code::DataLoss, "{damaged:?}");
        assert!(
            damaged.message().contains("next start rebuilds"),
            "{damaged:?}"
        );
    }
    // The balance as it stands now is memory's.
    let now = before.0[sequences.len() - 1]
        .balance
        .clone()
        .unwrap()
        .amount;
    assert_eq!(app.balance(account).await, now);
    let dir = app.stop().await;
    match crate::support::verify(dir.path()) {
        Err(error) => assert!(error.to_string().contains("do not add up"), "{error}"),
        Ok(report) => panic!("verify must report the hashes: {report:?}"),
    }

    // Rebuilt from the journal at the next start: every figure as before.
    let mut app = crate::support::start_again(dir).await;
    assert_eq!(account_reads(&mut app, account, &sequences).await, before);
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap();
    assert_eq!(report.state_compared_at, last, "{report:?}");

    // A cache behind the journal (as a crash leaves it), damaged so: the
    // start that replays past it and saves waits for the check, and
    // rebuilds the cache at once.
    let behind = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&dir.path().join("state"), behind.path());
    let mut app = crate::support::start_again(dir).await;
    deposits_in_date_order(&mut app, 300, 50).await;
    let more = account_reads(&mut app, account, &sequences).await;
    let dir = app.stop().await;
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    crate::common::copy_dir(behind.path(), &dir.path().join("state"));
    remove_with_its_hash(dir.path(), &format!("cold/closed/{account}/0000000000"));
    let mut app = crate::support::start_again(dir).await;
    assert_eq!(account_reads(&mut app, account, &sequences).await, more);
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap();
    assert_eq!(report.state_compared_at, last + 50, "{report:?}");
}

/// Removes the record `key` of a stopped server's state cache and the hash
/// kept for it (each record left still matches its own).
fn remove_with_its_hash(dir: &std::path::Path, key: &str) {
    let db = crate::support::open_cache_directly(dir);
    assert!(db.remove(key).unwrap().is_some(), "{key}");
    let term = [&b"\xfe"[..], key.as_bytes()].concat();
    assert!(db.remove(term).unwrap().is_some(), "the hash of {key}");
    db.flush().unwrap();
}
