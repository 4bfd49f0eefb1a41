//! `apply` meeting amounts that do not fit in a decimal: it refuses the
//! entry and the state stays exactly as it was (no half-applied entry), and
//! the ledger goes on applying ordinary entries after it.

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::command::{Command, CommandBody, Money, SavingsKind};
use crate::entry::{Entry, Posting};
use crate::ids::{Actor, BranchId, CenterId, GroupId, MemberId, Name, RequestId};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()
}

fn branch() -> BranchId {
    BranchId::parse("b", "TB").unwrap()
}

fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}

fn vnd(amount: Decimal) -> Money {
    Money {
        amount,
        currency: None,
    }
}

/// A state with one member whose compulsory savings hold `1e18` đồng (the
/// most digits a request may carry), and the sealed entries that built it.
struct Books {
    state: LedgerState,
    entries: Vec<Entry>,
}

impl Books {
    fn decide(&self, body: CommandBody) -> EntryBody {
        let command = Command {
            request_id: RequestId::parse("r", &format!("r{}", self.entries.len() + 1)).unwrap(),
            actor: Actor::parse("a", "clerk").unwrap(),
            principal: None,
            approval: None,
            body,
        };
        let context = ExecContext {
            recorded_at: Utc.with_ymd_and_hms(2024, 6, 1, 3, 0, 0).unwrap(),
            rules_version: crate::entry::RULES_VERSION_FIRST,
        };
        let lookup = |_: u64| Ok(None);
        self.state
            .execute(&command, context, &lookup)
            .unwrap_or_else(|e| panic!("set-up refused: {e}"))
    }

    fn submit(&mut self, body: CommandBody) {
        let entry = self.decide(body).seal(&self.state.last_hash());
        self.state.apply(&entry).expect("a decided entry applies");
        self.entries.push(entry);
    }

    fn new() -> Books {
        let mut books = Books {
            state: LedgerState::new(),
            entries: Vec::new(),
        };
        let member = MemberId::parse("m", "M1").unwrap();
        for body in [
            CommandBody::CreateBranch {
                branch_id: branch(),
                name: name("Thái Bình"),
                time_zone: TIME_ZONE_DEFAULT.into(),
                currency: crate::money::Currency::Vnd,
                compulsory_savings_percent: Decimal::from(10),
                opened_on: Some(day()),
            },
            CommandBody::CreateCenter {
                center_id: CenterId::parse("c", "C").unwrap(),
                branch_id: branch(),
                name: name("C"),
                opened_on: Some(day()),
            },
            CommandBody::CreateGroup {
                group_id: GroupId::parse("g", "G").unwrap(),
                center_id: CenterId::parse("c", "C").unwrap(),
                name: name("G"),
                opened_on: Some(day()),
            },
            CommandBody::RegisterMember {
                member_id: member.clone(),
                full_name: name("Hoa"),
                group_id: GroupId::parse("g", "G").unwrap(),
                joined_on: Some(day()),
            },
            CommandBody::OpenSavingsAccount {
                member_id: member,
                kind: SavingsKind::Compulsory,
                opened_on: Some(day()),
            },
        ] {
            books.submit(body);
        }
        let account = books.account();
        books.submit(CommandBody::DepositSavings {
            account_id: account,
            amount: vnd(Decimal::from(10u64.pow(18))),
            effective_date: Some(day()),
        });
        books
    }

    /// The member's compulsory savings account (opened by the fifth entry).
    fn account(&self) -> SavingsAccountId {
        match &self.entries[4].body.outcome {
            Outcome::SavingsAccountOpened { account, .. } => account.clone(),
            other => panic!("not an account opening: {other:?}"),
        }
    }

    fn deposit(&self, amount: Decimal) -> CommandBody {
        CommandBody::DepositSavings {
            account_id: self.account(),
            amount: vnd(amount),
            effective_date: Some(day()),
        }
    }
}

/// Reproduces the arithmetic item of the hardening issue: an entry whose
/// amounts pass `Decimal::MAX` once added to the books (a savings balance of
/// 1e18 credited `Decimal::MAX`, after a first posting that fits) must be
/// refused by `apply` with an error, not a panic, and leave every record of
/// the state as it was: an unchecked `+`, or a change written before the
/// overflowing one was worked out, fails this test.
#[test]
fn an_entry_that_overflows_a_balance_is_refused_and_changes_nothing() {
    let mut books = Books::new();
    // A real deposit of 1, then its amounts made enormous by hand: the
    // postings still balance, so only the arithmetic can refuse it.
    let mut body = books.decide(books.deposit(Decimal::ONE));
    let savings = AccountId::Savings(books.account());
    body.postings = vec![
        // Fits: nothing was ever posted to the loan-loss account.
        Posting::debit(AccountId::LoanLoss(branch()), Decimal::MAX),
        // Overflows: the savings account already holds 1e18.
        Posting::credit(savings, Decimal::MAX),
    ];
    if let CommandBody::DepositSavings { amount, .. } = &mut body.command {
        amount.amount = Decimal::MAX;
    }
    if let Outcome::SavingsMoved { balance_after, .. } = &mut body.outcome {
        *balance_after = Decimal::MAX;
    }
    let entry = body.seal(&books.state.last_hash());
    let before = books.state.export().unwrap();
    let sequence = books.state.last_sequence();
    let _ = books.state.take_changes().unwrap();

    let refused = books.state.apply(&entry);

    let error = refused.expect_err("an overflowing entry was applied");
    assert!(error.to_string().contains("overflow"), "{error}");
    assert_eq!(books.state.last_sequence(), sequence);
    assert!(
        books.state.export().unwrap() == before,
        "a refused entry changed the state"
    );
    assert!(
        books.state.take_changes().unwrap().is_empty(),
        "a refused entry left changes for the cache"
    );
    // The ledger goes on: the same sequence number takes an ordinary entry.
    books.submit(books.deposit(Decimal::from(5000)));
    assert_eq!(books.state.last_sequence(), sequence + 1);
}

/// A second member's deposit of `MAX - 1e18 + 1` on `date`, sealed after
/// `books` (her registration and account submitted first): it fits her
/// account, its balance and the loan-loss account it is posted against,
/// and with the first member's 1e18 overflows their savings line, and
/// their day's figures when `date` is the first deposit's.
fn second_members_deposit(books: &mut Books, date: NaiveDate) -> Entry {
    let second = MemberId::parse("m", "M2").unwrap();
    books.submit(CommandBody::RegisterMember {
        member_id: second.clone(),
        full_name: name("Lan"),
        group_id: GroupId::parse("g", "G").unwrap(),
        joined_on: Some(day()),
    });
    books.submit(CommandBody::OpenSavingsAccount {
        member_id: second,
        kind: SavingsKind::Compulsory,
        opened_on: Some(day()),
    });
    let theirs = match &books.entries.last().unwrap().body.outcome {
        Outcome::SavingsAccountOpened { account, .. } => account.clone(),
        other => panic!("not an account opening: {other:?}"),
    };
    let mut body = books.decide(CommandBody::DepositSavings {
        account_id: theirs.clone(),
        amount: vnd(Decimal::ONE),
        effective_date: Some(date),
    });
    let amount = Decimal::MAX - Decimal::from(10u64.pow(18)) + Decimal::ONE;
    body.postings = vec![
        Posting::debit(AccountId::LoanLoss(branch()), amount),
        Posting::credit(AccountId::Savings(theirs), amount),
    ];
    if let CommandBody::DepositSavings { amount: money, .. } = &mut body.command {
        money.amount = amount;
    }
    if let Outcome::SavingsMoved { balance_after, .. } = &mut body.outcome {
        *balance_after = amount;
    }
    body.seal(&books.state.last_hash())
}

/// Applies `entry`, which must be refused for an overflow, leaving the
/// state and its changes as they were; the ledger then goes on.
fn refused_for_overflow(books: &mut Books, entry: &Entry) {
    let before = books.state.export().unwrap();
    let _ = books.state.take_changes().unwrap();
    let error = books
        .state
        .apply(entry)
        .expect_err("an overflowing entry was applied");
    assert!(error.to_string().contains("overflow"), "{error}");
    assert!(
        books.state.export().unwrap() == before,
        "a refused entry changed the state"
    );
    assert!(books.state.take_changes().unwrap().is_empty());
    books.submit(books.deposit(Decimal::from(5000)));
}

/// An entry whose amounts fit every balance, account and member but not
/// its day's figures (another member's deposit on the day the first took
/// 1e18) is refused when staged, not half written: a state that keeps
/// the days works them out before it writes anything, and writing cannot
/// fail.
#[test]
fn an_entry_that_overflows_its_days_figures_is_refused_and_changes_nothing() {
    let mut books = Books::new();
    let entry = second_members_deposit(&mut books, day());
    refused_for_overflow(&mut books, &entry);
}

/// An entry whose amounts fit every balance, account and day but not the
/// line its account is booked to (another member's savings, a day after
/// the first's 1e18: the compulsory savings line adds both) is refused
/// when staged: booking, after the commit, cannot fail, and panicked on it.
#[test]
fn an_entry_that_overflows_a_line_of_the_books_is_refused_and_changes_nothing() {
    let mut books = Books::new();
    let entry = second_members_deposit(&mut books, day().succ_opt().unwrap());
    refused_for_overflow(&mut books, &entry);
}

/// The writer's copy keeps no days, so it does not check their figures
/// (`DayWork`): the entry that overflows its day's figures
/// above also overflows the line of the books its deposit is booked to,
/// which the writer does check, and it is refused there too, with the
/// writer's copy as it was.
#[test]
fn the_writer_keeping_no_days_refuses_that_entry_by_its_line() {
    let mut books = Books::new();
    let entry = second_members_deposit(&mut books, day());
    let (_, mut writer) = books.state.clone().split_for_writer();
    let sequence = writer.last_sequence();
    match writer.seal_and_keep(entry.body.clone()) {
        Err(SealError::Apply(error)) => {
            assert!(error.to_string().contains("overflow"), "{error}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the writer's copy took an entry that overflows a line"),
    }
    assert_eq!(writer.last_sequence(), sequence);
    assert_eq!(writer.last_hash(), books.state.last_hash());
}
