//! Properties of the state machine for any sequence of commands: the cache
//! records equal a full export, a replay of the entries gives the same state,
//! and the books balance.

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::domain::command::{Command, CommandBody, LoanSpec, LoanTermsInput, Money, SavingsKind};
use crate::domain::entry::Entry;
use crate::domain::ids::{
    Actor, BranchId, CenterId, GroupId, LoanId, MemberId, Name, RequestId, SavingsAccountId,
};
use crate::domain::schedule::{InterestMethod, RepaymentFrequency};

/// One step a clerk might take; indices pick a member, amounts are in 1,000 VND.
#[derive(Clone, Debug)]
enum Step {
    Deposit {
        member: usize,
        thousands: u32,
        day: u32,
    },
    Withdraw {
        member: usize,
        thousands: u32,
        day: u32,
    },
    Disburse {
        member: usize,
        millions: u32,
        day: u32,
    },
    Repay {
        member: usize,
        thousands: u32,
        day: u32,
    },
    Reverse {
        back: u64,
    },
}

const MEMBERS: usize = 3;

fn step() -> impl Strategy<Value = Step> {
    let member = 0..MEMBERS;
    prop_oneof![
        (member.clone(), 1..500u32, 0..300u32).prop_map(|(member, thousands, day)| Step::Deposit {
            member,
            thousands,
            day
        }),
        (member.clone(), 1..300u32, 0..300u32).prop_map(|(member, thousands, day)| {
            Step::Withdraw {
                member,
                thousands,
                day,
            }
        }),
        (member.clone(), 1..20u32, 0..300u32).prop_map(|(member, millions, day)| Step::Disburse {
            member,
            millions,
            day
        }),
        (member, 1..3000u32, 0..300u32).prop_map(|(member, thousands, day)| Step::Repay {
            member,
            thousands,
            day
        }),
        (1..6u64).prop_map(|back| Step::Reverse { back }),
    ]
}

fn id<T>(parse: fn(&str, &str) -> Result<T, DomainError>, text: &str) -> T {
    parse("id", text).unwrap()
}

fn vnd(amount: u64) -> Money {
    Money {
        amount: Decimal::from(amount),
        currency: Some(Currency::Vnd),
    }
}

fn day(offset: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Days::new(u64::from(offset))
}

fn member(index: usize) -> MemberId {
    id(MemberId::parse, &format!("M{index}"))
}

fn setup() -> Vec<CommandBody> {
    let name = |text: &str| Name::parse("name", text).unwrap();
    let mut bodies = vec![
        CommandBody::CreateBranch {
            branch_id: id(BranchId::parse, "TB"),
            name: name("Thái Bình"),
            time_zone: TIME_ZONE_DEFAULT.into(),
            currency: Currency::Vnd,
            compulsory_savings_percent: Decimal::from(10),
            opened_on: Some(day(0)),
        },
        CommandBody::CreateCenter {
            center_id: id(CenterId::parse, "C"),
            branch_id: id(BranchId::parse, "TB"),
            name: name("C"),
            opened_on: Some(day(0)),
        },
        CommandBody::CreateGroup {
            group_id: id(GroupId::parse, "G"),
            center_id: id(CenterId::parse, "C"),
            name: name("G"),
            opened_on: Some(day(0)),
        },
    ];
    for m in 0..MEMBERS {
        bodies.push(CommandBody::RegisterMember {
            member_id: member(m),
            full_name: name("Hoa"),
            group_id: id(GroupId::parse, "G"),
            joined_on: Some(day(0)),
        });
        bodies.push(CommandBody::OpenSavingsAccount {
            member_id: member(m),
            kind: SavingsKind::Compulsory,
            opened_on: Some(day(0)),
        });
    }
    bodies
}

fn body_of(step: &Step, state: &LedgerState) -> CommandBody {
    let savings = |m: usize| SavingsAccountId::parse("a", &format!("M{m}/C1")).unwrap();
    let latest_loan = |m: usize| {
        let count = state
            .members
            .get(&member(m))
            .map_or(0, |x| x.loans.len())
            .max(1);
        LoanId::parse("l", &format!("M{m}/L{count}")).unwrap()
    };
    match step.clone() {
        Step::Deposit {
            member: m,
            thousands,
            day: d,
        } => CommandBody::DepositSavings {
            account_id: savings(m),
            amount: vnd(u64::from(thousands) * 1000),
            effective_date: Some(day(d)),
        },
        Step::Withdraw {
            member: m,
            thousands,
            day: d,
        } => CommandBody::WithdrawSavings {
            account_id: savings(m),
            amount: vnd(u64::from(thousands) * 1000),
            effective_date: Some(day(d)),
        },
        Step::Disburse {
            member: m,
            millions,
            day: d,
        } => CommandBody::DisburseLoan {
            member_id: member(m),
            loan: LoanSpec::Terms(LoanTermsInput {
                principal: vnd(u64::from(millions) * 1_000_000),
                annual_interest_rate_percent: Decimal::from(24),
                interest_method: if millions % 2 == 0 {
                    InterestMethod::Flat
                } else {
                    InterestMethod::DecliningBalance
                },
                installment_count: 10 + millions,
                frequency: RepaymentFrequency::Weekly,
                first_repayment_date: day(d + 7),
                rounding_multiple: Some(Decimal::from(100)),
            }),
            disbursed_on: Some(day(d)),
        },
        Step::Repay {
            member: m,
            thousands,
            day: d,
        } => CommandBody::RecordRepayment {
            loan_id: latest_loan(m),
            amount: vnd(u64::from(thousands) * 1000),
            effective_date: Some(day(d)),
        },
        Step::Reverse { back } => CommandBody::ReverseEntry {
            sequence: state.last_sequence().saturating_sub(back).max(1),
            reason: Name::parse("reason", "mistake").unwrap(),
            effective_date: None,
        },
    }
}

/// Runs the commands; returns the entries and the final state, checking the
/// cache records against a full export after every entry.
fn run(
    bodies: impl IntoIterator<Item = CommandBody>,
    state: &mut LedgerState,
    records: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    entries: &mut Vec<Entry>,
) {
    let context = ExecContext {
        recorded_at: Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap(),
    };
    for body in bodies {
        let command = Command {
            request_id: RequestId::parse("r", &format!("r{}", entries.len() + 1000)).unwrap(),
            actor: Actor::parse("a", "clerk").unwrap(),
            body,
        };
        let lookup = |sequence: u64| {
            Ok(entries
                .get((sequence as usize).wrapping_sub(1))
                .map(|e| e.body.clone()))
        };
        let Ok(body) = state.execute(&command, context, &lookup) else {
            continue;
        };
        let entry = body.seal(&state.last_hash());
        state.apply(&entry).unwrap();
        for (key, value) in state.take_changes() {
            match value {
                Some(value) => records.insert(key, value),
                None => records.remove(&key),
            };
        }
        assert_eq!(
            *records,
            state.export(),
            "cache records drift from the state after entry {}",
            entry.body.sequence
        );
        entries.push(entry);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cache_replay_and_books_agree_for_any_commands(steps in proptest::collection::vec(step(), 1..60)) {
        let mut state = LedgerState::new();
        let mut records = BTreeMap::new();
        let mut entries = Vec::new();
        run(setup(), &mut state, &mut records, &mut entries);
        for step in &steps {
            let body = body_of(step, &state);
            run([body], &mut state, &mut records, &mut entries);
        }
        // A replay of the journal gives the same state.
        let mut replayed = LedgerState::new();
        for entry in &entries {
            replayed.apply(entry).unwrap();
        }
        replayed.clear_changes();
        prop_assert_eq!(replayed.export(), state.export());
        // Importing the records gives the same state back.
        let imported = LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
        prop_assert_eq!(imported.export(), state.export());
        // The books balance: all debits equal all credits.
        let (debits, credits) = state.balances.values().fold((Decimal::ZERO, Decimal::ZERO), |(d, c), b| (d + b.debits, c + b.credits));
        prop_assert_eq!(debits, credits);
        // The loans' running totals equal their installments.
        for loan in state.loans.values() {
            let principal: Decimal = loan.installments.iter().map(InstallmentState::principal_unpaid).sum();
            let interest: Decimal = loan.installments.iter().map(InstallmentState::interest_unpaid).sum();
            prop_assert_eq!(loan.principal_unpaid, principal);
            prop_assert_eq!(loan.interest_unpaid, interest);
            let first = loan.installments.iter().position(|i| !i.is_paid()).unwrap_or(loan.installments.len());
            prop_assert_eq!(loan.first_unpaid as usize, first);
        }
        // No savings account is below zero on any day.
        for account in state.savings.values() {
            let (lowest, on) = account.lowest_balance_from(day(0));
            prop_assert!(lowest >= Decimal::ZERO, "{} is at {} on {}", account.id, lowest, on);
        }
        // No savings balance is negative, no loan over-repaid.
        for (account, balance) in &state.balances {
            if let AccountId::Savings(_) | AccountId::Loan(_) = account {
                prop_assert!(balance.on_normal_side(account.kind()) >= Decimal::ZERO, "{} went negative", account);
            }
        }
        // The branch's period stocks equal the account balances.
        let figures = state.period_figures(&id(BranchId::parse, "TB"), day(0), day(400));
        let savings: Decimal = state.balances.iter().filter(|(a, _)| matches!(a, AccountId::Savings(_))).map(|(a, b)| b.on_normal_side(a.kind())).sum();
        let portfolio: Decimal = state.balances.iter().filter(|(a, _)| matches!(a, AccountId::Loan(_))).map(|(a, b)| b.on_normal_side(a.kind())).sum();
        prop_assert_eq!(figures.savings_balance, savings);
        prop_assert_eq!(figures.portfolio_outstanding, portfolio);
        let borrowers = state.members.values().filter(|m| m.loans.iter().any(|l| state.loans[l].status == LoanStatus::Active && !state.loans[l].principal_outstanding().is_zero())).count();
        prop_assert_eq!(figures.borrowers, borrowers as i64);
    }
}
