//! Properties of the state machine for any sequence of commands (savings,
//! loans on terms and under products, tranches, write-offs, collection
//! sheets, the branch's funding and reversals): the cache records equal a
//! full export, a replay of the entries gives the same state, and the books
//! balance. Then the branch's funding, worked by hand.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::command::{
    CollectionLine, Command, CommandBody, FundingSource, LoanSpec, LoanTermsInput, Money,
    SavingsKind,
};
use crate::entry::{Attribution, ENTRY_BYTES_MAX, Entry, EntryBody, Side};
use crate::ids::{
    Actor, BranchId, CenterId, FeeCode, GroupId, LoanId, MemberId, Name, PrincipalId, ProductId,
    REQUEST_ID_LEN_MAX, RequestId, SavingsAccountId,
};
use crate::product::{
    ALLOCATION_ORDER_DEFAULT, AllocationPart, ArrearsTolerance, CompulsorySavings, Fee, FeeAmount,
    FeeCollection, LoanApplication, ProductRules,
};
use crate::schedule::{
    Amortization, InstallmentBasis, InstallmentRounding, InterestMethod, InterestPeriod,
    RepaymentFrequency, RoundingMode,
};

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
    /// Reverse the latest transaction on one of a member's loans.
    ReverseLoan {
        member: usize,
    },
    CreateProduct {
        product: usize,
    },
    /// A new version of a product, its rate range widened by `points`,
    /// for loans disbursed from `day` on.
    UpdateProduct {
        product: usize,
        points: u32,
        day: u32,
    },
    DisburseProduct {
        member: usize,
        product: usize,
        millions: u32,
        /// Approved beyond the first tranche, in millions.
        extra_millions: u32,
        /// Picks the installment count (or the product's default).
        installments: u32,
        day: u32,
    },
    Tranche {
        member: usize,
        millions: u32,
        day: u32,
    },
    WriteOff {
        member: usize,
        day: u32,
    },
    /// A meeting of the center: per member, a repayment and a deposit, in
    /// thousands, either of which may be missing.
    Sheet {
        lines: [(Option<u32>, Option<u32>); MEMBERS],
        day: u32,
    },
    /// Close the branch's books through a day (364 is 31 December 2023:
    /// the year-end close carries the year's result).
    Close {
        day: u32,
    },
    /// Reopen the branch's books from a day on: the savings accounts'
    /// changes the closes after it folded are taken back.
    Reopen {
        day: u32,
    },
    /// Post the savings interest of a month of 2023 (1 to 12).
    Interest {
        month: u32,
    },
    /// Fund the branch's cash from head office (or capital), or give
    /// funds back (refused for more than the branch holds).
    Fund {
        capital: bool,
        returned: bool,
        millions: u32,
        day: u32,
    },
}

/// Members, all meeting at the one center.
const MEMBERS: usize = 3;
/// Products the set-up creates; one more can be created by a step.
const PRODUCTS: usize = 3;

fn step() -> impl Strategy<Value = Step> {
    let member = || 0..MEMBERS;
    let day = || 0..300u32;
    prop_oneof![
        2 => (member(), 1..500u32, day()).prop_map(|(member, thousands, day)| Step::Deposit {
            member,
            thousands,
            day
        }),
        2 => (member(), 1..300u32, day()).prop_map(|(member, thousands, day)| Step::Withdraw {
            member,
            thousands,
            day,
        }),
        2 => (member(), 1..20u32, day()).prop_map(|(member, millions, day)| Step::Disburse {
            member,
            millions,
            day
        }),
        2 => (member(), 1..3000u32, day()).prop_map(|(member, thousands, day)| Step::Repay {
            member,
            thousands,
            day
        }),
        3 => (1..6u64).prop_map(|back| Step::Reverse { back }),
        1 => prop_oneof![Just(364u32), 30..300u32].prop_map(|day| Step::Close { day }),
        1 => (0..365u32).prop_map(|day| Step::Reopen { day }),
        1 => (1..=12u32).prop_map(|month| Step::Interest { month }),
        1 => (any::<bool>(), any::<bool>(), 1..50u32, day()).prop_map(|(capital, returned, millions, day)| Step::Fund {
            capital,
            returned,
            millions,
            day
        }),
        3 => member().prop_map(|member| Step::ReverseLoan { member }),
        1 => (0..=PRODUCTS).prop_map(|product| Step::CreateProduct { product }),
        1 => (0..=PRODUCTS, 1..10u32, day()).prop_map(|(product, points, day)| Step::UpdateProduct {
            product,
            points,
            day
        }),
        3 => (
            member(),
            0..=PRODUCTS,
            (1..20u32, prop_oneof![Just(0u32), 1..10u32]),
            any::<u32>(),
            day()
        )
            .prop_map(|(member, product, (millions, extra_millions), installments, day)| {
                Step::DisburseProduct {
                    member,
                    product,
                    millions,
                    extra_millions,
                    installments,
                    day,
                }
            }),
        1 => (member(), 1..10u32, day()).prop_map(|(member, millions, day)| Step::Tranche {
            member,
            millions,
            day
        }),
        1 => (member(), day()).prop_map(|(member, day)| Step::WriteOff { member, day }),
        2 => (
            proptest::array::uniform3((
                proptest::option::of(1..3000u32),
                proptest::option::of(1..500u32)
            )),
            day()
        )
            .prop_map(|(lines, day)| Step::Sheet { lines, day }),
    ]
}

fn product(index: usize) -> ProductId {
    id(ProductId::parse, &format!("P{index}"))
}

fn fee(code: &str, amount: FeeAmount, collection: FeeCollection) -> Fee {
    Fee {
        code: id(FeeCode::parse, code),
        amount,
        collection,
    }
}

/// The catalogue: a weekly flat group loan with fees, a monthly
/// declining-balance business loan with grace and tranches, a fortnightly
/// annuity on the days of each period, and (created by a step, if at all) a
/// group loan in two tranches.
fn product_rules(index: usize) -> ProductRules {
    let million = |m: i64| Decimal::from(m * 1_000_000);
    let group_loan = ProductRules {
        name: Name::parse("name", "Group loan").unwrap(),
        currency: Currency::Vnd,
        principal_min: million(1),
        principal_max: million(50),
        rate_min: Decimal::from(20),
        rate_max: Decimal::from(30),
        interest_method: InterestMethod::Flat,
        amortization: Amortization::EqualInstallments,
        interest_period: InterestPeriod::PerPeriod,
        installment_basis: InstallmentBasis::NominalPeriodRate,
        frequency: RepaymentFrequency::Weekly,
        installments_min: 10,
        installments_max: 50,
        installments_default: 25,
        rounding: InstallmentRounding {
            multiple: Decimal::from(1000),
            mode: RoundingMode::HalfUp,
        },
        rounding_decimal_places: None,
        grace_on_principal: 0,
        grace_on_interest: 0,
        compulsory_savings: CompulsorySavings::PercentOfPrincipal(Decimal::from(5)),
        arrears_tolerance: ArrearsTolerance {
            days: 0,
            amount: Decimal::ZERO,
        },
        allocation_order: ALLOCATION_ORDER_DEFAULT,
        fees: vec![
            fee(
                "disbursement",
                FeeAmount::Fixed(Decimal::from(50_000)),
                FeeCollection::AtDisbursement,
            ),
            fee(
                "insurance",
                FeeAmount::PercentOfPrincipal(Decimal::ONE),
                FeeCollection::WithFirstInstallment,
            ),
        ],
        tranches_max: 1,
    };
    match index {
        0 => group_loan,
        // Installment 1 owes its fee: grace on both principal and interest
        // leaves it nothing else (see loan_tests'
        // `first_unpaid_skips_installments_with_nothing_due`).
        1 => ProductRules {
            name: Name::parse("name", "Business loan").unwrap(),
            rate_min: Decimal::from(18),
            rate_max: Decimal::from(18),
            interest_method: InterestMethod::DecliningBalance,
            amortization: Amortization::EqualPrincipal,
            interest_period: InterestPeriod::Actual365,
            frequency: RepaymentFrequency::Monthly,
            installments_min: 6,
            installments_max: 24,
            installments_default: 12,
            rounding: InstallmentRounding {
                multiple: Decimal::from(100),
                mode: RoundingMode::Up,
            },
            grace_on_principal: 2,
            grace_on_interest: 1,
            compulsory_savings: CompulsorySavings::FixedPerInstallment(Decimal::from(20_000)),
            allocation_order: [
                AllocationPart::Principal,
                AllocationPart::Interest,
                AllocationPart::Fees,
                AllocationPart::Penalties,
            ],
            fees: vec![
                fee(
                    "appraisal",
                    FeeAmount::PercentOfPrincipal(Decimal::from(2)),
                    FeeCollection::AtDisbursement,
                ),
                fee(
                    "service",
                    FeeAmount::Fixed(Decimal::from(10_000)),
                    FeeCollection::WithFirstInstallment,
                ),
            ],
            tranches_max: 3,
            ..group_loan
        },
        3 => ProductRules {
            name: Name::parse("name", "Group loan in tranches").unwrap(),
            tranches_max: 2,
            ..group_loan
        },
        _ => ProductRules {
            name: Name::parse("name", "Seasonal loan").unwrap(),
            rate_min: Decimal::new(245, 1),
            rate_max: Decimal::new(245, 1),
            interest_method: InterestMethod::DecliningBalance,
            amortization: Amortization::EqualInstallments,
            interest_period: InterestPeriod::Actual365,
            installment_basis: InstallmentBasis::ActualPeriodRates,
            frequency: RepaymentFrequency::Fortnightly,
            installments_min: 8,
            installments_max: 26,
            installments_default: 13,
            rounding: InstallmentRounding {
                multiple: Decimal::ONE,
                mode: RoundingMode::Down,
            },
            compulsory_savings: CompulsorySavings::None,
            arrears_tolerance: ArrearsTolerance {
                days: 7,
                amount: Decimal::from(10_000),
            },
            fees: Vec::new(),
            tranches_max: 2,
            ..group_loan
        },
    }
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
    for p in 0..PRODUCTS {
        bodies.push(CommandBody::CreateProduct {
            product_id: product(p),
            rules: product_rules(p),
            effective_from: Some(day(0)),
        });
    }
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
    for (product, kind, rate) in [
        ("SAVE-C", SavingsKind::Compulsory, 3),
        ("SAVE-V", SavingsKind::Voluntary, 7),
    ] {
        bodies.push(CommandBody::DefineSavingsProduct {
            product_id: id(ProductId::parse, product),
            name: name(product),
            kind,
            rules: crate::savings_interest::SavingsInterestRules {
                annual_rate_percent: Decimal::from(rate),
                posting: crate::savings_interest::PostingFrequency::Monthly,
                rounding: InstallmentRounding {
                    multiple: Decimal::ONE,
                    mode: RoundingMode::HalfEven,
                },
            },
            effective_from: Some(day(0)),
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
    // Loan transactions are entered in date order: mostly some days after
    // the loan's last one, sometimes on any day (and likely refused).
    let after_last = |loan: Option<&Loan>, d: u32| match loan {
        Some(loan) if !d.is_multiple_of(4) => {
            (loan.last_repayment_on + chrono::Days::new(u64::from(d % 40))).min(day(540))
        }
        _ => day(d),
    };
    let loan_day = |m: usize, d: u32| after_last(state.held_loan(&latest_loan(m)).map(|l| &**l), d);
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
                interest_method: if millions.is_multiple_of(2) {
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
            effective_date: Some(loan_day(m, d)),
        },
        Step::Interest { month } => CommandBody::PostSavingsInterest {
            branch_id: id(BranchId::parse, "TB"),
            period_end: crate::savings_interest::PostingFrequency::Monthly
                .period_of(NaiveDate::from_ymd_opt(2023, month, 1).unwrap())
                .1,
        },
        Step::Fund {
            capital,
            returned,
            millions,
            day: d,
        } => {
            let source = if capital {
                FundingSource::Capital
            } else {
                FundingSource::HeadOffice
            };
            fund(source, u64::from(millions), d, returned)
        }
        Step::Close { day: d } => CommandBody::ClosePeriod {
            branch_id: id(BranchId::parse, "TB"),
            through: day(d),
        },
        Step::Reopen { day: d } => CommandBody::ReopenPeriod {
            branch_id: id(BranchId::parse, "TB"),
            from: day(d),
            reason: Name::parse("reason", "a missed entry").unwrap(),
        },
        Step::Reverse { back } => CommandBody::ReverseEntry {
            sequence: state.last_sequence().saturating_sub(back).max(1),
            reason: Name::parse("reason", "mistake").unwrap(),
            effective_date: None,
        },
        // Mostly a loan with transactions after its disbursement.
        Step::ReverseLoan { member: m } => CommandBody::ReverseEntry {
            sequence: state
                .members
                .get(&member(m))
                .and_then(|x| {
                    let loans = || {
                        x.loans
                            .iter()
                            .rev()
                            .filter_map(|l| state.held_loan(l))
                            .map(|l| &**l)
                    };
                    loans()
                        .find(|loan| loan.events.len() > 1)
                        .or_else(|| loans().next())
                })
                .and_then(|loan| loan.events.last())
                .unwrap_or(1),
            reason: Name::parse("reason", "mistake").unwrap(),
            effective_date: None,
        },
        Step::CreateProduct { product: p } => CommandBody::CreateProduct {
            product_id: product(p),
            rules: product_rules(p),
            effective_from: Some(day(0)),
        },
        Step::UpdateProduct {
            product: p,
            points,
            day: d,
        } => {
            let mut rules = state
                .product_versions(&product(p))
                .and_then(|v| v.last())
                .map_or_else(|| product_rules(p), |v| v.rules.clone());
            rules.rate_max = (rules.rate_max + Decimal::from(points)).min(Decimal::ONE_HUNDRED);
            CommandBody::UpdateProduct {
                product_id: product(p),
                rules,
                effective_from: Some(day(d)),
            }
        }
        Step::DisburseProduct {
            member: m,
            product: p,
            millions,
            extra_millions,
            installments,
            day: d,
        } => {
            // The version in force on the disbursement date.
            let rules = state
                .product_on(&product(p), day(d))
                .map_or_else(|_| product_rules(p), |v| v.rules.clone());
            let range = rules.installments_max - rules.installments_min + 1;
            let principal = Decimal::from(u64::from(millions) * 1_000_000);
            CommandBody::DisburseLoan {
                member_id: member(m),
                loan: LoanSpec::Product {
                    product_id: product(p),
                    application: LoanApplication {
                        principal,
                        currency: installments.is_multiple_of(2).then_some(Currency::Vnd),
                        // Mostly only where the product allows tranches.
                        approved_principal: (extra_millions > 0
                            && (rules.tranches_max > 1 || installments.is_multiple_of(7)))
                        .then(|| principal + Decimal::from(u64::from(extra_millions) * 1_000_000)),
                        annual_interest_rate_percent: (rules.rate_min != rules.rate_max)
                            .then(|| rules.rate_min + Decimal::from(millions % 11)),
                        installment_count: (!installments.is_multiple_of(3))
                            .then(|| rules.installments_min + installments % range),
                        first_repayment_date: day(d + 7 + installments % 20),
                    },
                },
                disbursed_on: Some(day(d)),
            }
        }
        Step::Tranche {
            member: m,
            millions,
            day: d,
        } => {
            // Mostly her latest loan with room for a tranche, and within it.
            let open = state.members.get(&member(m)).and_then(|x| {
                x.loans
                    .iter()
                    .rev()
                    .filter_map(|l| state.held_loan(l))
                    .map(|l| &**l)
                    .find(|loan| {
                        loan.status == LoanStatus::Active
                            && loan.tranches < loan.policy.tranches_max
                            && loan.disbursed < loan.approved_principal
                    })
            });
            let mut amount = Decimal::from(u64::from(millions) * 1_000_000);
            if let Some(loan) = open.filter(|_| !millions.is_multiple_of(3)) {
                amount = amount.min(loan.approved_principal - loan.disbursed);
            }
            CommandBody::DisburseTranche {
                loan_id: open.map_or_else(|| latest_loan(m), |loan| loan.id.clone()),
                amount: Money {
                    amount,
                    currency: Some(Currency::Vnd),
                },
                disbursed_on: Some(after_last(open, d)),
            }
        }
        Step::WriteOff { member: m, day: d } => CommandBody::WriteOffLoan {
            loan_id: latest_loan(m),
            reason: Name::parse("reason", "moved away").unwrap(),
            effective_date: Some(loan_day(m, d)),
        },
        Step::Sheet { lines, day: d } => {
            // Mostly repayments only of active loans (a sheet is all or nothing).
            let active = |m: usize| {
                d.is_multiple_of(5)
                    || state
                        .loans
                        .get(&latest_loan(m))
                        .is_some_and(|loan| loan.status == LoanStatus::Active)
            };
            let lines: Vec<(Option<u32>, Option<u32>)> = lines
                .iter()
                .enumerate()
                .map(|(m, (repay, deposit))| (repay.filter(|_| active(m)), *deposit))
                .collect();
            CommandBody::RecordCollectionSheet {
                center_id: id(CenterId::parse, "C"),
                lines: lines
                    .iter()
                    .enumerate()
                    .filter(|(_, (repay, deposit))| repay.is_some() || deposit.is_some())
                    .map(|(m, (repay, deposit))| CollectionLine {
                        member_id: member(m),
                        repayment: repay
                            .map(|thousands| (latest_loan(m), vnd(u64::from(thousands) * 1000))),
                        deposit: deposit
                            .map(|thousands| (savings(m), vnd(u64::from(thousands) * 1000))),
                    })
                    .collect(),
                // After the last transaction of the latest of the lines' loans.
                meeting_date: Some(after_last(
                    (0..MEMBERS)
                        .filter(|&m| lines[m].0.is_some())
                        .filter_map(|m| state.held_loan(&latest_loan(m)))
                        .map(|l| &**l)
                        .max_by_key(|loan| loan.last_repayment_on),
                    d,
                )),
            }
        }
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
        rules_version: crate::entry::RULES_VERSION_FIRST,
    };
    // A full copy that applies each entry itself: `state` is fed what the
    // writer wrote, as the read side is, and must come out the same.
    let mut working = state.clone();
    // The server's writer keeps the books' lines by date alone, no days
    // and no day log: it must decide every command as the full state does. The
    // server's read side reads each account's balance from its books.
    let (mut reader, mut writer) = state.clone().split_for_writer();
    // A read side fed the whole run as the publisher feeds it a chunk:
    // every entry's loans worked out first, then each entry written.
    let (mut chunked, _) = state.clone().split_for_writer();
    let mut chunk = Vec::new();
    for body in bodies {
        let command = Command {
            request_id: RequestId::parse("r", &format!("r{}", entries.len() + 1000)).unwrap(),
            actor: Actor::parse("a", "clerk").unwrap(),
            principal: None,
            approval: None,
            body,
        };
        let lookup = |sequence: u64| {
            Ok(entries
                .get((sequence as usize).wrapping_sub(1))
                .map(|e| e.body.clone()))
        };
        let decided = writer.execute(&command, context, &lookup);
        assert_eq!(
            format!("{decided:?}"),
            format!("{:?}", working.execute(&command, context, &lookup)),
            "the writer's copy and the full state decide {:?} differently",
            command.body
        );
        let Ok(body) = decided else {
            continue;
        };
        // Sealed and applied as the server's writer does (its hash worked
        // out once): the entry any state would seal.
        let (entry, written) = match writer.seal_and_keep(body.clone()) {
            Ok(sealed) => sealed,
            Err(SealError::Refused(_)) => continue,
            Err(error) => panic!("a decided entry did not apply: {error}"),
        };
        assert_eq!(entry, body.seal(&working.last_hash()));
        // What the server's writer wrote (with what the entry changes of
        // the days, which the writer keeps none of) makes the read side.
        working.apply(&entry).unwrap();
        chunk.push((entry.clone(), written.clone()));
        reader.apply_written(&entry, written.clone()).unwrap();
        state.apply_written(&entry, written).unwrap();
        // Every balance, to the scale the writer summed it at; a loan's
        // reopened after it ended on its normal side (deciding keeps no
        // balance for an ended loan's account, and starts it again from
        // zero: `LedgerState::balances`).
        for account in working.balances.keys() {
            let (read, decided) = (reader.balance(account), working.balance(account));
            if matches!(account, AccountId::Loan(_)) {
                let kind = account.kind();
                assert_eq!(
                    read.on_normal_side(kind),
                    decided.on_normal_side(kind),
                    "{account}"
                );
                continue;
            }
            assert_eq!(
                format!("{read:?}"),
                format!("{decided:?}"),
                "the read side's balance of {account} after entry {}",
                entry.body.sequence
            );
        }
        assert!(reader.balances.is_empty());
        // The writer keeps no days: the read side works them out from
        // what the writer handed it, as applying the entry does.
        assert!(writer.days.is_empty());
        assert!(
            reader.days == working.days,
            "the read side's days after entry {}",
            entry.body.sequence
        );
        assert!(
            working.export().unwrap() == state.export().unwrap(),
            "what entry {} wrote differs from applying it",
            entry.body.sequence
        );
        for (key, value) in state.take_changes().unwrap() {
            match value {
                Some(value) => records.insert(key, value),
                None => records.remove(&key),
            };
        }
        assert_eq!(
            *records,
            state.export().unwrap(),
            "cache records drift from the state after entry {}",
            entry.body.sequence
        );
        entries.push(entry);
    }
    for (_, written) in &mut chunk {
        written.work_out_loans();
    }
    for (entry, written) in chunk {
        chunked.apply_written(&entry, written).unwrap();
    }
    assert!(
        chunked.days == working.days,
        "the days of a read side fed the run as one chunk"
    );
}

/// The set-up and a deposit, run: the state, its cache records, the
/// entries.
fn set_up_and_deposit() -> (LedgerState, BTreeMap<Vec<u8>, Vec<u8>>, Vec<Entry>) {
    let mut state = LedgerState::new();
    let mut records = BTreeMap::new();
    let mut entries = Vec::new();
    run(setup(), &mut state, &mut records, &mut entries);
    let deposit = Step::Deposit {
        member: 0,
        thousands: 50,
        day: 3,
    };
    let body = body_of(&deposit, &state);
    run([body], &mut state, &mut records, &mut entries);
    (state, records, entries)
}

/// The state the set-up left, and the deposit that followed it.
fn before_the_deposit() -> (LedgerState, Entry) {
    let (_, _, mut entries) = set_up_and_deposit();
    let deposit = entries.pop().unwrap();
    let mut state = LedgerState::new();
    for entry in &entries {
        state.apply(entry).unwrap();
    }
    (state, deposit)
}

/// An entry that posts to accounts names its branch: its postings are
/// booked there, and a state read back from its records takes each
/// account's balance from its books. One that names none (a journal edited
/// and chained again) is refused, and changes nothing.
#[test]
fn an_entry_that_posts_and_names_no_branch_is_refused() {
    let (mut state, deposit) = before_the_deposit();
    let mut body = deposit.body.clone();
    assert!(body.branch.is_some() && !body.postings.is_empty());
    body.branch = None;
    let edited = body.seal(&state.last_hash());
    let exported = state.export().unwrap();
    let refused = state.apply(&edited).unwrap_err();
    assert_eq!(refused.sequence, deposit.body.sequence);
    assert_eq!(
        refused.message,
        "the entry posts to accounts and names no branch"
    );
    assert_eq!(state.export().unwrap(), exported);
    state.apply(&deposit).unwrap();
}

/// An entry whose canonical bytes are over what the journal holds is
/// refused when the writer seals it, naming the list that made it so large,
/// and changes nothing, whether its body alone is over or the attribution
/// the journal holds after the body takes it over; an entry within the
/// bound is sealed as any state would seal it.
#[test]
fn an_entry_over_the_journals_bound_is_refused_when_sealed() {
    let (mut state, deposit) = before_the_deposit();
    let exported = state.export().unwrap();
    let sheet = |attribution: Option<Attribution>| EntryBody {
        command: CommandBody::RecordCollectionSheet {
            center_id: id(CenterId::parse, "C"),
            lines: Vec::new(),
            meeting_date: None,
        },
        attribution,
        ..deposit.body.clone()
    };
    // Still balanced: the deposit's postings, `times` times over.
    let repeated = |mut body: EntryBody, times: usize| {
        let postings = std::mem::take(&mut body.postings);
        body.postings = (0..times).flat_map(|_| postings.iter().cloned()).collect();
        body
    };
    let len = |body: &EntryBody| body.canonical_bytes().len();
    let mut refuse = |body: EntryBody| {
        let len = len(&body);
        match state.seal_and_keep(body) {
            Err(SealError::Refused(error)) => assert_eq!(
                error.to_string(),
                format!(
                    "lines: the journal entry would be {len} bytes, over the {ENTRY_BYTES_MAX} \
                     bytes an entry may have; record the meeting on several smaller sheets"
                )
            ),
            Err(other) => panic!("an entry of {len} bytes did not apply: {other}"),
            Ok((entry, _)) => panic!("sealed an entry of {len} bytes as {}", entry.body.sequence),
        }
        assert_eq!(state.export().unwrap(), exported);
    };
    // Its body alone far over.
    let unattributed = sheet(None);
    let per_copy =
        len(&repeated(unattributed.clone(), 2)) - len(&repeated(unattributed.clone(), 1));
    refuse(repeated(unattributed, ENTRY_BYTES_MAX / per_copy + 100));
    // Its body and header within, its attribution over: the fewest copies
    // of the postings that take it over.
    let attributed = sheet(Some(Attribution {
        principal: id(PrincipalId::parse, &"p".repeat(REQUEST_ID_LEN_MAX)),
        approval: None,
    }));
    let none = len(&repeated(attributed.clone(), 0));
    let mut times = (ENTRY_BYTES_MAX - none) / per_copy - 2;
    while len(&repeated(attributed.clone(), times)) <= ENTRY_BYTES_MAX {
        times += 1;
    }
    let just_over = repeated(attributed, times);
    let body_alone = EntryBody {
        attribution: None,
        ..just_over.clone()
    };
    assert!(len(&body_alone) <= ENTRY_BYTES_MAX, "the body alone fits");
    refuse(just_over);
    let (sealed, _) = state.seal_and_keep(deposit.body.clone()).unwrap();
    assert_eq!(sealed, deposit);
}

/// A checkpoint that fails marks its keys changed again: the next one
/// takes every one of them, the days (noted apart) as the rest.
#[test]
fn keys_marked_changed_again_are_taken_again() {
    let (_, _, entries) = set_up_and_deposit();
    let mut replayed = LedgerState::new();
    for entry in &entries {
        replayed.apply(entry).unwrap();
    }
    let (keys, _) = replayed.take_changes_with_keys().unwrap();
    assert!(
        keys.iter().any(|key| matches!(key, StateKey::Day(..))),
        "the set-up changes days"
    );
    assert!(keys.iter().any(|key| !matches!(key, StateKey::Day(..))));
    assert!(replayed.take_changes_with_keys().unwrap().0.is_empty());
    replayed.mark_changed(keys.clone());
    let (again, records_again) = replayed.take_changes_with_keys().unwrap();
    assert_eq!(again, keys);
    assert_eq!(records_again.len(), keys.len());
}

/// A loan's lists of entries are kept in chunks: a record for each full
/// chunk, written when it fills and removed when a reversal takes its last
/// entry, and the entries after the last full chunk in the loan's progress
/// record; the records read back give the lists whole.
#[test]
fn a_loans_lists_of_entries_are_kept_in_chunks() {
    let chunk = super::keys::LOAN_LIST_CHUNK;
    let mut state = LedgerState::new();
    let mut records = BTreeMap::new();
    let mut entries = Vec::new();
    run(setup(), &mut state, &mut records, &mut entries);
    let disburse = Step::Disburse {
        member: 0,
        millions: 19,
        day: 1,
    };
    run(
        [body_of(&disburse, &state)],
        &mut state,
        &mut records,
        &mut entries,
    );
    let repay = |state: &LedgerState| {
        let step = Step::Repay {
            member: 0,
            thousands: 1,
            day: 2,
        };
        body_of(&step, state)
    };
    let reverse = |state: &LedgerState| body_of(&Step::ReverseLoan { member: 0 }, state);
    let loan = LoanId::parse("l", "M0/L1").unwrap();
    let events = |state: &LedgerState| state.loans[&loan].events.len();
    let history = |state: &LedgerState| state.loans[&loan].history.len();
    let keys = |records: &BTreeMap<Vec<u8>, Vec<u8>>, kind: &str| {
        let prefix = format!("{kind}/M0/L1/");
        records
            .keys()
            .filter(|key| key.starts_with(prefix.as_bytes()))
            .count()
    };
    let bodies: Vec<_> = (events(&state)..chunk - 1).map(|_| repay(&state)).collect();
    run(bodies, &mut state, &mut records, &mut entries);
    assert_eq!(events(&state), chunk - 1);
    assert_eq!(
        (keys(&records, "loanevents"), keys(&records, "loanhistory")),
        (0, 0),
        "fewer entries than a chunk are all in the progress record"
    );
    run([repay(&state)], &mut state, &mut records, &mut entries);
    assert_eq!(events(&state), chunk, "a full first chunk");
    assert_eq!(keys(&records, "loanevents"), 1);
    run([reverse(&state)], &mut state, &mut records, &mut entries);
    assert_eq!((events(&state), history(&state)), (chunk - 1, chunk + 1));
    assert_eq!(
        (keys(&records, "loanevents"), keys(&records, "loanhistory")),
        (0, 1),
        "the reversal took the first chunk's last entry: its record goes; \
         the history keeps both entries"
    );
    run([repay(&state)], &mut state, &mut records, &mut entries);
    let before = Arc::clone(&state.loans[&loan]);
    run([repay(&state)], &mut state, &mut records, &mut entries);
    assert_eq!((events(&state), history(&state)), (chunk + 1, chunk + 3));
    assert_eq!(
        (keys(&records, "loanevents"), keys(&records, "loanhistory")),
        (1, 1),
        "entries after a full chunk are in the progress record"
    );
    // The copy of the loan the entry made shares its lists' full chunks
    // with the loan before it, and their tails grew by that entry, not to
    // twice their length.
    let held = &state.loans[&loan];
    let full = (chunk / 128, chunk / 128);
    assert_eq!(held.events.shared_with(&before.events), full);
    assert_eq!(held.history.shared_with(&before.history), full);
    // One entry in the list's tail: no distance yet, no room held.
    assert_eq!(held.events.tail_room(), (1, 0, 0));
    // `run` held the records to the state after every entry; read back,
    // they give the lists whole.
    let read =
        LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
    assert_eq!(read.loans[&loan].events, state.loans[&loan].events);
    assert_eq!(read.loans[&loan].history, state.loans[&loan].history);
    // A chunk missing is refused, not read as a shorter list.
    let first = records
        .keys()
        .find(|key| key.starts_with(b"loanhistory/M0/L1/"))
        .unwrap()
        .clone();
    let mut gap = records.clone();
    gap.remove(&first);
    let refused = LedgerState::import(gap.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
    assert!(
        matches!(&refused, Err(why) if why.contains(&format!(
            "loan M0/L1: its progress record says its history holds {} entries, 3 of them after \
             its full chunks, and 0 were read in chunks",
            chunk + 3
        ))),
        "{:?}",
        refused.map(|s| s.last_sequence())
    );
    // So are a chunk holding fewer or more entries than a full chunk, and
    // one that does not follow the chunk before it.
    let refused_with = |key: &[u8], entries: Vec<u64>, why: &str| {
        let mut edited = records.clone();
        edited.insert(key.to_vec(), postcard::to_stdvec(&entries).unwrap());
        let read = LedgerState::import(edited.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        assert!(
            matches!(&read, Err(e) if e.contains(why)),
            "{why}: {:?}",
            read.map(|s| s.last_sequence())
        );
    };
    refused_with(
        &first,
        Vec::new(),
        "holds 0 entries, not a full chunk of 1024",
    );
    refused_with(&first, vec![1; chunk + 1], "holds 1025 entries");
    refused_with(&first, vec![1; chunk - 1], "holds 1023 entries");
    let second = b"loanhistory/M0/L1/0000000002";
    refused_with(second, vec![1; chunk], "does not follow the 1 chunks");
}

/// The set-up, a deposit and a loan to member 1, run: the state and its
/// cache records.
fn set_up_deposit_and_disburse() -> (LedgerState, BTreeMap<Vec<u8>, Vec<u8>>) {
    let (mut state, mut records, mut entries) = set_up_and_deposit();
    let loan = Step::Disburse {
        member: 1,
        millions: 5,
        day: 4,
    };
    let body = body_of(&loan, &state);
    run([body], &mut state, &mut records, &mut entries);
    (state, records)
}

/// `records` read back as a restart reads them: the books' on a thread of
/// their own; every thread under `interner` when one is given.
fn read_back(
    records: &BTreeMap<Vec<u8>, Vec<u8>>,
    interner: Option<&Arc<crate::ids::Interner>>,
) -> LedgerState {
    let under = |f: &mut dyn FnMut()| match interner {
        Some(interner) => interner.enter(f),
        None => f(),
    };
    let books = std::thread::scope(|scope| {
        let books = scope.spawn(|| {
            let mut books = BooksRecords::default();
            under(&mut || {
                for (key, value) in records.iter().filter(|(key, _)| BooksRecords::holds(key)) {
                    books.add(key, value.clone()).unwrap();
                }
                books.settle().unwrap();
            });
            books
        });
        books.join().unwrap()
    });
    let mut import = StateImport::default();
    under(&mut || {
        for (key, value) in records.iter().filter(|(key, _)| !BooksRecords::holds(key)) {
            import.add(key, value).unwrap();
        }
    });
    let (mut parts, mut state) = (Some((import, books)), None);
    under(&mut || {
        if let Some((import, books)) = parts.take() {
            state = Some(import.finish_with_books(books).unwrap());
        }
    });
    state.expect("the records read back")
}

/// Every id the state holds for its branches, members, savings accounts,
/// loans and books' accounts: each's text and where that text lies.
fn id_texts(state: &LedgerState) -> Vec<(String, *const u8)> {
    let mut texts = Vec::new();
    let mut note = |text: &str| texts.push((text.to_owned(), text.as_ptr()));
    for (id, branch) in &state.branches {
        note(id.as_str());
        note(branch.id.as_str());
    }
    for (id, member) in &state.members {
        for text in [id.as_str(), member.id.as_str(), member.branch.as_str()] {
            note(text);
        }
        member
            .savings_accounts
            .iter()
            .for_each(|a| note(a.as_str()));
        member.loans.iter().for_each(|l| note(l.as_str()));
    }
    for (id, account) in &state.savings {
        for text in [id.as_str(), account.id.as_str(), account.member.as_str()] {
            note(text);
        }
        note(account.branch.as_str());
    }
    for (id, loan) in &state.loans {
        note(id.as_str());
        for text in [loan.id.as_str(), loan.member.as_str(), loan.branch.as_str()] {
            note(text);
        }
    }
    for (account, _) in state.books.account_record_keys() {
        let book = state
            .books
            .account(account)
            .expect("an account with records");
        note(book.branch.as_str());
        match account {
            AccountId::Savings(id) => note(id.as_str()),
            AccountId::Loan(id) => note(id.as_str()),
            AccountId::Cash(id) | AccountId::InterestIncome(id) => note(id.as_str()),
            _ => {}
        }
    }
    texts
}

/// Records read back under one interner, on the threads a restart reads
/// them on, hold each id's text once: a member's id in her record, her
/// accounts', her loans' and the books', the branch's in every one of
/// them. Read back without one, each record holds its own copy. Either
/// way the state is the same.
#[test]
fn records_read_back_under_an_interner_share_each_ids_text() {
    let (state, records) = set_up_deposit_and_disburse();
    assert!(!state.loans.is_empty());

    let copies = |state: &LedgerState| {
        let mut places: BTreeMap<String, BTreeSet<*const u8>> = BTreeMap::new();
        for (text, at) in id_texts(state) {
            places.entry(text).or_default().insert(at);
        }
        places
    };
    let interner = Arc::new(crate::ids::Interner::default());
    let shared = read_back(&records, Some(&interner));
    assert_eq!(shared.export().unwrap(), records);
    for (text, at) in copies(&shared) {
        assert_eq!(at.len(), 1, "{text:?} is held in {} places", at.len());
    }

    let apart = read_back(&records, None);
    assert_eq!(apart.export().unwrap(), records);
    let tb = copies(&apart).remove("TB").expect("the branch's id");
    assert!(
        tb.len() > 1,
        "the branch's id is held once without an interner"
    );
}

/// An account or loan an entry opens holds its member's id as her record
/// does, one text, not the copy the command named her by, and a member
/// her group's as its record does; the writer and the read side hold one
/// member, not a copy each.
#[test]
fn an_entry_opens_accounts_and_loans_under_its_members_own_id() {
    let (state, _) = set_up_deposit_and_disburse();
    let at = |id: &MemberId| id.as_str().as_ptr();
    for index in 0..2 {
        let her = &state.members[&member(index)];
        let group = &state.groups[&her.group];
        assert_eq!(her.group.as_str().as_ptr(), group.id.as_str().as_ptr());
        for id in &her.savings_accounts {
            assert_eq!(at(&state.savings[id].member), at(&her.id), "{id}");
        }
        for id in &her.loans {
            let loan = &state.loans[id];
            assert_eq!(at(&loan.member), at(&her.id), "{id}");
        }
    }
    assert!(!state.members[&member(1)].loans.is_empty());

    let (reader, writer) = state.split_for_writer();
    for (id, member) in &reader.members {
        assert!(
            Arc::ptr_eq(member, &writer.members[id]),
            "member {id} copied"
        );
    }
}

/// The books' records taken in apart from the rest: without the rest (no
/// head record) they are a cache cut short, as they would be taken in with
/// it; a books' record that does not decode is refused, naming its key.
#[test]
fn books_records_apart_from_the_rest_are_checked_as_with_it() {
    let (mut state, mut records, mut entries) = set_up_and_deposit();
    let mut books = BooksRecords::default();
    for (key, value) in records.iter().filter(|(key, _)| BooksRecords::holds(key)) {
        books.add(key, value.clone()).unwrap();
    }
    let alone = StateImport::default().finish_with_books(books);
    assert!(
        matches!(&alone, Err(why) if why.contains("without a head record")),
        "{:?}",
        alone.map(|s| s.last_sequence())
    );
    let (key, _) = records
        .iter()
        .find(|(key, _)| BooksRecords::holds(key))
        .expect("the deposit posts");
    // Refused once its history's records are appended: when the reading
    // ends, or when a record of another history comes.
    let mut garbled = BooksRecords::default();
    garbled.add(key, b"\xff\xff\xff".to_vec()).unwrap();
    let refused = garbled.settle();
    assert!(
        matches!(&refused, Err(why) if why.contains(std::str::from_utf8(key).unwrap())),
        "{refused:?}"
    );
    let mut garbled = BooksRecords::default();
    garbled.add(key, b"\xff\xff\xff".to_vec()).unwrap();
    let (other, value) = records
        .iter()
        .filter(|(k, _)| BooksRecords::holds(k))
        .nth(1)
        .expect("a deposit posts to two histories at least");
    let refused = garbled.add(other, value.clone());
    assert!(
        matches!(&refused, Err(why) if why.contains(std::str::from_utf8(key).unwrap())),
        "{refused:?}"
    );
    assert!(BooksRecords::default().add(b"head", Vec::new()).is_err());

    // An account whose records two took in (her deposits in two records,
    // the later to one and the earlier to the other) is read whole, in
    // order, once absorbed.
    let mut deposits = Vec::new();
    for d in 0..crate::books::RECORD_STEPS as u32 {
        let step = Step::Deposit {
            member: 0,
            thousands: 10 + d,
            day: 4 + d / 8,
        };
        deposits.push(body_of(&step, &state));
    }
    run(deposits, &mut state, &mut records, &mut entries);
    let her = SavingsAccountId::parse("a", "M0/C1").unwrap();
    let account = format!("steps/{}/", AccountId::Savings(her));
    let hers: Vec<&Vec<u8>> = records
        .keys()
        .filter(|key| key.starts_with(account.as_bytes()))
        .collect();
    assert_eq!(
        hers.len(),
        2,
        "her deposits fill a record and start another"
    );
    let (mut first, mut second, mut rest) = (
        BooksRecords::default(),
        BooksRecords::default(),
        StateImport::default(),
    );
    for (k, v) in &records {
        if k == hers[0] {
            second.add(k, v.clone()).unwrap();
        } else if BooksRecords::holds(k) {
            first.add(k, v.clone()).unwrap();
        } else {
            rest.add(k, v).unwrap();
        }
    }
    first.settle().unwrap();
    second.settle().unwrap();
    first.absorb(second).unwrap();
    let absorbed = rest.finish_with_books(first).unwrap();
    assert_eq!(absorbed.books(), state.books());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cache_replay_and_books_agree_for_any_commands(steps in proptest::collection::vec(step(), 1..80)) {
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
        prop_assert_eq!(replayed.export().unwrap(), state.export().unwrap());
        // Importing the records gives the same state back.
        let imported = LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
        prop_assert_eq!(imported.export().unwrap(), state.export().unwrap());
        // The books read back from the records are the books kept as
        // entries came: every account's history and every line's. Each
        // account's balance, which has no record, is its history's.
        prop_assert_eq!(imported.books(), state.books());
        prop_assert_eq!(as_decided(&imported.balances), as_decided(&state.balances));
        // So do the records taken in as startup takes them: the books' apart
        // from the rest, in key order each, shared out by history between
        // three.
        let mut rest = StateImport::default();
        let mut shares: Vec<BooksRecords> = (0..3).map(|_| BooksRecords::default()).collect();
        for (key, value) in &records {
            if BooksRecords::holds(key) {
                shares[BooksRecords::share_of(key, 3)].add(key, value.clone()).unwrap();
            } else {
                rest.add(key, value).unwrap();
            }
        }
        let mut books = BooksRecords::default();
        for share in shares {
            books.absorb(share).unwrap();
        }
        let split = rest.finish_with_books(books).unwrap();
        prop_assert_eq!(split.export().unwrap(), state.export().unwrap());
        prop_assert_eq!(split.books(), state.books());
        prop_assert_eq!(as_decided(&split.balances), as_decided(&state.balances));
        // Read back as a server starts, the records read when asked left in
        // the store: a closed or cancelled loan is let go of, and read back
        // whole it is the loan.
        let mut started = super::loan_tests::read_as_started(&records).unwrap();
        started.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(records.clone())));
        prop_assert_eq!(started.export().unwrap(), state.export().unwrap());
        // A state that lets go of what the store holds after each entry, as
        // a server's read side does, applies every entry to the same records
        // (a member's borrower steps worked out again from her closed loans'
        // spans, a reopened loan read back whole).
        let kept = Arc::new(RecordsSaved::default());
        let mut cold = LedgerState::new();
        cold.keep_stored_in(kept.clone());
        for entry in &entries {
            cold.apply(entry).unwrap();
            let (keys, changed) = cold.take_changes_with_keys().unwrap();
            kept.save(changed);
            cold.saved(&keys);
        }
        prop_assert_eq!(&*kept.0.lock().unwrap(), &records);
        // So does a state replayed from the journal, once its records are
        // in the store (a start that replayed past the cache, or rebuilt it).
        let mut kept_replay = replayed.clone();
        kept_replay.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(records.clone())));
        prop_assert_eq!(kept_replay.export().unwrap(), state.export().unwrap());
        for loan in state.loans.values() {
            for read in [&started, &kept_replay] {
                prop_assert_eq!(!read.loans.contains_key(&loan.id), loan.has_ended());
                // Its account's book goes with it.
                let account = AccountId::Loan(loan.id.clone());
                prop_assert_eq!(!read.books().holds(&account), loan.has_ended());
                let whole = read.whole_loan(&loan.id).unwrap().unwrap();
                prop_assert_eq!(&*whole, &**loan);
            }
        }
        // Listed in id order a few at a time, the loans memory let go of
        // are read back among those it holds: the same loans, once each and
        // in order, as the state holding every one whole lists; asked for
        // those active on a day, every one active on it.
        let listed_as = |slots: &[LoanSlot]| -> Vec<(LoanId, LoanStatus, Option<NaiveDate>)> {
            slots.iter().map(|l| (l.id().clone(), l.status(), l.ended_on())).collect()
        };
        let every = state.every_loan(None).unwrap();
        prop_assert_eq!(every.len(), state.loans.len());
        let last_day = entries.iter().map(|e| e.body.effective_date).max().unwrap();
        // And the days either side of the latest any loan ended on, the
        // last one the loans let go of may have been active on.
        let latest = state.ended_latest.unwrap_or(last_day);
        let days = [None, Some(day(0)), Some(day(20)), Some(last_day), Some(latest), latest.pred_opt()];
        for read in [&started, &kept_replay, &cold] {
            for active_on in days {
                let active = |slots: &[LoanSlot]| -> Vec<LoanSlot> {
                    slots.iter().filter(|l| active_on.is_none_or(|d| l.active_on(d))).cloned().collect()
                };
                let expected = listed_as(&active(&every));
                prop_assert_eq!(listed_as(&active(&read.every_loan(active_on).unwrap())), expected.clone());
                for limit in [1, 2, 5] {
                    let (mut listed, mut after) = (Vec::new(), None);
                    loop {
                        let taken = read.loans_after(after.as_ref(), limit, active_on).unwrap();
                        prop_assert!(taken.loans.len() <= limit);
                        listed.extend(taken.loans);
                        match taken.next {
                            Some(next) => after = Some(next),
                            None => break,
                        }
                    }
                    prop_assert_eq!(listed_as(&active(&listed)), expected.clone(), "{} at a time, active on {:?}", limit, active_on);
                }
            }
        }
        // Listed a few at a time, the accounts memory let go of with their
        // loans are read back among those it holds: the same accounts, once
        // each and in order, where each belongs and what was posted to it;
        // and each one read alone gives the state's balance and movements.
        let listed_book = |account: &AccountId, book: &crate::books::AccountBook| {
            (account.clone(), book.branch.clone(), book.line.clone(), book.history.latest())
        };
        let every_account: Vec<_> = state.books().accounts_after(None).map(|(a, b)| listed_book(a, b)).collect();
        for read in [&started, &kept_replay, &cold] {
            for limit in [1, 2, 5] {
                let (mut listed, mut after) = (Vec::new(), None);
                loop {
                    let taken = read.accounts_listed(after.as_ref(), limit).unwrap();
                    prop_assert!(taken.len() <= limit);
                    let Some((last, _)) = taken.last() else { break };
                    after = Some(last.clone());
                    listed.extend(taken.iter().map(|(a, b)| listed_book(a, b)));
                }
                prop_assert_eq!(&listed, &every_account, "{} at a time", limit);
            }
            for (account, _, _, latest) in &every_account {
                prop_assert_eq!(read.account_as_of(account, crate::books::AsOf::Latest).unwrap(), *latest);
                prop_assert_eq!(read.account_as_of(account, crate::books::AsOf::Date(day(30))).unwrap(), state.account_as_of(account, crate::books::AsOf::Date(day(30))).unwrap());
                prop_assert_eq!(read.account_movements(account, day(0), day(600)).unwrap(), state.account_movements(account, day(0), day(600)).unwrap());
            }
        }
        // The books balance: all debits equal all credits.
        let (debits, credits) = state.balances.values().fold((Decimal::ZERO, Decimal::ZERO), |(d, c), b| (d + b.debits, c + b.credits));
        prop_assert_eq!(debits, credits);
        // The loans' running totals equal their installments.
        for loan in state.loans.values() {
            let principal: Decimal = loan.installments.iter().map(|i| i.principal_unpaid()).sum();
            let interest: Decimal = loan.installments.iter().map(|i| i.interest_unpaid()).sum();
            let fees: Decimal = loan.installments.iter().map(|i| i.fee_unpaid()).sum();
            prop_assert_eq!(loan.principal_unpaid, principal);
            prop_assert_eq!(loan.interest_unpaid, interest);
            prop_assert_eq!(loan.fee_unpaid, fees);
            for i in loan.installments.iter() {
                for (paid, due) in [(i.principal_paid, i.due.principal), (i.interest_paid, i.due.interest), (i.fee_paid, i.due.fee)] {
                    prop_assert!(Decimal::ZERO <= paid && paid <= due, "{} installment {} paid {} of {}", loan.id, i.due.number, paid, due);
                }
            }
            // The loan account holds the principal outstanding.
            let account = AccountId::Loan(loan.id.clone());
            prop_assert_eq!(every_balance(&state)[&account].on_normal_side(account.kind()), loan.principal_outstanding());
            let first = loan.installments.iter().position(|i| !i.is_paid()).unwrap_or(loan.installments.len());
            prop_assert_eq!(loan.first_unpaid as usize, first);
        }
        // No savings account is below zero on any day, and its changes by
        // date add up to its balance (interest postings count on it).
        for account in state.savings.values() {
            let (opening, changes) = state.savings_from(account, day(0), &mut Default::default()).unwrap();
            prop_assert_eq!(opening, Decimal::ZERO);
            let held: Decimal = account.changes.values().sum::<Decimal>() + account.folded.map_or(Decimal::ZERO, |folded| folded.carried);
            prop_assert_eq!(held, changes.values().sum::<Decimal>());
            let savings = AccountId::Savings(account.id.clone());
            prop_assert_eq!(held, state.balance(&savings).on_normal_side(savings.kind()), "{}", account.id);
            // Memory's changes and the folds read back are what its books
            // posted, date by date.
            let mut posted: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
            for movement in state.account_movements(&savings, day(0), day(1000)).unwrap() {
                *posted.entry(movement.date).or_default() += movement.posted.on_normal_side(savings.kind());
            }
            posted.retain(|_, change| !change.is_zero());
            prop_assert_eq!(changes.iter().collect::<BTreeMap<_, _>>(), posted, "{}", account.id);
            let (lowest, on) = crate::state::lowest_balance_from(opening, &changes, day(0));
            prop_assert!(lowest >= Decimal::ZERO, "{} is at {} on {}", account.id, lowest, on);
        }
        // No savings balance is negative, no loan over-repaid.
        for (account, balance) in &state.balances {
            if let AccountId::Savings(_) | AccountId::Loan(_) = account {
                prop_assert!(balance.on_normal_side(account.kind()) >= Decimal::ZERO, "{} went negative", account);
            }
        }
        // The branch's period stocks equal the account balances.
        // (Loan transactions go up to day 540.)
        let figures = state.period_figures(&id(BranchId::parse, "TB"), day(0), day(600)).unwrap();
        let savings: Decimal = state.balances.iter().filter(|(a, _)| matches!(a, AccountId::Savings(_))).map(|(a, b)| b.on_normal_side(a.kind())).sum();
        let portfolio: Decimal = state.balances.iter().filter(|(a, _)| matches!(a, AccountId::Loan(_))).map(|(a, b)| b.on_normal_side(a.kind())).sum();
        prop_assert_eq!(figures.savings_balance, savings);
        prop_assert_eq!(figures.portfolio_outstanding, portfolio);
        let borrowers = state.members.values().filter(|m| m.loans.iter().any(|l| state.loans[l].status == LoanStatus::Active && !state.loans[l].principal_outstanding().is_zero())).count();
        prop_assert_eq!(figures.borrowers, borrowers as i64);
        aggregates_equal_the_scan(&state)?;
        aggregates_equal_the_scan(&imported)?;
    }
}

/// What deciding reads of a writer's balances: each account's debits and
/// credits, a loan's on its normal side only (a reopened loan's account
/// starts again from zero there: `LedgerState::balances`).
fn as_decided(
    balances: &HashMap<AccountId, Balance, FastHash>,
) -> BTreeMap<AccountId, (Decimal, Option<Balance>)> {
    balances
        .iter()
        .map(|(account, balance)| {
            let gross = (!matches!(account, AccountId::Loan(_))).then_some(*balance);
            (
                account.clone(),
                (balance.on_normal_side(account.kind()), gross),
            )
        })
        .collect()
}

/// Every account's debits and credits, from the books (the writer's map
/// keeps none for ended loans' accounts).
fn every_balance(state: &LedgerState) -> BTreeMap<AccountId, Balance> {
    state
        .books()
        .accounts_after(None)
        .map(|(account, book)| (account.clone(), book.history.latest()))
        .collect()
}

/// The portfolio figures read from the day totals equal the same figures
/// worked out loan by loan, on dates before, during and after the loans,
/// and so do borrowers who save (a positive savings balance).
fn aggregates_equal_the_scan(state: &LedgerState) -> Result<(), TestCaseError> {
    let branch = id(BranchId::parse, "TB");
    for offset in [
        0, 1, 7, 30, 45, 61, 90, 95, 120, 150, 200, 250, 299, 330, 400, 540, 700,
    ] {
        let as_of = day(offset);
        let from = day(offset.saturating_sub(60));
        for which in [Some(&branch), None] {
            let quick = state.portfolio_quality(which, as_of, from, as_of).unwrap();
            let scan = state
                .portfolio_quality_scan(which, as_of, from, as_of)
                .unwrap();
            prop_assert_eq!(&quick, &scan, "portfolio quality on {}", as_of);
            // The loans in arrears are the ones with principal outstanding
            // that the arrears listing lists (it also lists loans owing only
            // overdue interest or fees, which portfolio quality leaves out).
            let mut listed = 0u64;
            for loan in state.loans.values() {
                if which.is_none_or(|b| loan.branch == *b)
                    && loan.principal_on(as_of).unwrap() > Decimal::ZERO
                    && loan.arrears_on(as_of).unwrap().in_arrears
                {
                    listed += 1;
                }
            }
            prop_assert_eq!(
                quick.loans_in_arrears,
                listed,
                "loans in arrears listed on {}",
                as_of
            );
        }
        prop_assert_eq!(
            state.loans_by_product(&branch, from, as_of).unwrap(),
            state.loans_by_product_scan(&branch, from, as_of).unwrap()
        );
        // Borrowers who save: principal outstanding and a positive balance.
        let saving = state
            .members
            .values()
            .filter(|m| {
                let borrows = m
                    .loans
                    .iter()
                    .any(|l| state.loans[l].principal_on(as_of).unwrap() > Decimal::ZERO);
                // Read from the books, not the changes by date it keeps
                // (which a close folds).
                let saved: Decimal = m
                    .savings_accounts
                    .iter()
                    .map(|a| {
                        let account = AccountId::Savings(a.clone());
                        state
                            .account_as_of(&account, crate::books::AsOf::Date(as_of))
                            .unwrap()
                            .on_normal_side(account.kind())
                    })
                    .sum();
                borrows && saved > Decimal::ZERO
            })
            .count();
        let figures = state.period_figures(&branch, from, as_of).unwrap();
        prop_assert_eq!(
            figures.borrowers_with_savings,
            saving as i64,
            "borrowers saving on {}",
            as_of
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Back-dated savings and loans out of date order: the aggregates stay
    /// equal to the scan whatever the order entries arrive in.
    #[test]
    fn aggregates_equal_the_scan_for_any_commands(steps in proptest::collection::vec(step(), 1..60)) {
        let mut state = LedgerState::new();
        let mut records = BTreeMap::new();
        let mut entries = Vec::new();
        run(setup(), &mut state, &mut records, &mut entries);
        for step in &steps {
            let body = body_of(step, &state);
            run([body], &mut state, &mut records, &mut entries);
            aggregates_equal_the_scan(&state)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Back-dated entries and reversals: every balance and the trial
    /// balance asked "as of sequence s" equal what was read live right
    /// after entry s; "as of date d" equal the sum of the postings of the
    /// entries dated on or before d; and debits equal credits on every date.
    #[test]
    fn figures_as_of_a_sequence_or_a_date_equal_the_live_and_recomputed_ones(steps in proptest::collection::vec(step(), 1..60)) {
        use crate::books::{AsOf, Line};
        let tb = id(BranchId::parse, "TB");
        let mut state = LedgerState::new();
        let mut records = BTreeMap::new();
        let mut entries = Vec::new();
        run(setup(), &mut state, &mut records, &mut entries);
        let mut live = Vec::new();
        for step in &steps {
            let body = body_of(step, &state);
            run([body], &mut state, &mut records, &mut entries);
            let now = Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap();
            let members: BTreeMap<MemberId, MemberView> = state
                .members
                .keys()
                .map(|id| (id.clone(), state.member_view(id, now).unwrap()))
                .collect();
            let loan_views: BTreeMap<LoanId, LoanView> = state
                .loans
                .keys()
                .map(|id| (id.clone(), state.loan_view(id, None, now).unwrap()))
                .collect();
            let quality = [(day(20), day(1), day(40)), (day(100), day(60), day(100)), (day(400), day(1), day(400))]
                .map(|(at, from, to)| state.portfolio_quality(Some(&tb), at, from, to).unwrap());
            let days = state.days.get(&tb).cloned().unwrap_or_default();
            live.push((state.last_sequence(), every_balance(&state), state.books().trial_balance(Some(&tb), AsOf::Latest), (state.loans.clone(), members, loan_views), (days, quality)));
        }
        let mut lookup = |sequence: u64| {
            entries
                .get((sequence as usize).wrapping_sub(1))
                .map(|e| e.body.clone())
                .ok_or_else(|| format!("no entry {sequence}"))
        };
        let line_of = |state: &LedgerState, account: &AccountId| {
            let kind = match account {
                AccountId::Savings(id) => state.savings.get(id).map(|a| a.kind),
                _ => None,
            };
            Line::of(account, kind)
        };
        for (sequence, balances, trial, (loans, members, loan_views), (days, quality)) in &live {
            // The branch's days, and so its totals and portfolio quality on
            // any date, as they stood right after entry s.
            prop_assert_eq!(&state.days_at(&tb, *sequence).unwrap(), days, "days as of {}", sequence);
            let then = [(day(20), day(1), day(40)), (day(100), day(60), day(100)), (day(400), day(1), day(400))]
                .map(|(at, from, to)| state.portfolio_quality_at(Some(&tb), at, from, to, Some(*sequence)).unwrap());
            prop_assert_eq!(&then, quality, "portfolio quality as of {}", sequence);
            prop_assert_eq!(
                state.period_figures_at(&tb, day(1), day(400), Some(*sequence)).unwrap(),
                PeriodFigures::from_days(days, day(1), day(400)).unwrap(),
                "branch totals as of {}", sequence
            );
            // Every loan as it stood right after entry s, replayed from its
            // own entries, is the loan read live then (or none before it),
            // and so is its view (statuses, arrears, payoff on that day).
            for id in state.loans.keys() {
                let replayed = state.loan_at(id, *sequence, &mut lookup).unwrap();
                prop_assert_eq!(replayed.as_ref(), loans.get(id).map(|loan| &**loan), "loan {} as of {}", id, sequence);
                let view = state.loan_view_at(id, *sequence, None, &mut lookup).ok();
                prop_assert_eq!(view.as_ref(), loan_views.get(id), "loan view {} as of {}", id, sequence);
            }
            // Every member: her accounts opened by then with their balances
            // and required minimums, and her loans, as read live.
            for id in state.members.keys() {
                let at = state.member_view_at(id, *sequence, &mut lookup).ok();
                let then = members.get(id);
                prop_assert_eq!(at.is_some(), then.is_some(), "member {} as of {}", id, sequence);
                let (Some(at), Some(then)) = (at, then) else { continue };
                prop_assert_eq!(&at.loans, &then.loans, "member {} loans as of {}", id, sequence);
                let brief = |view: &MemberView| view.savings.iter().map(|s| (s.account.id.clone(), s.account.kind, s.account.opened_on, s.balance, s.required_minimum)).collect::<Vec<_>>();
                prop_assert_eq!(brief(&at), brief(then), "member {} savings as of {}", id, sequence);
                prop_assert_eq!((&at.member.full_name, &at.member.group, at.member.joined_on), (&then.member.full_name, &then.member.group, then.member.joined_on));
            }
            for (account, balance) in balances {
                let book = state.books().account(account).unwrap();
                prop_assert_eq!(book.history.at_sequence(*sequence), *balance, "{} as of {}", account, sequence);
            }
            prop_assert_eq!(&state.books().trial_balance(Some(&tb), AsOf::Sequence(*sequence)), trial);
            // The live trial balance is the balances added up by line.
            let mut by_line: BTreeMap<Line, Balance> = BTreeMap::new();
            for (account, balance) in balances {
                let total = by_line.entry(line_of(&state, account)).or_default();
                total.debits += balance.debits;
                total.credits += balance.credits;
            }
            for (line, balance) in &trial.rows {
                prop_assert_eq!(by_line.get(line).copied().unwrap_or_default(), *balance, "line {} as of {}", line, sequence);
            }
            prop_assert_eq!(trial.debits, trial.credits);
        }
        let dates: BTreeSet<NaiveDate> = entries
            .iter()
            .flat_map(|e| [e.body.effective_date.pred_opt().unwrap(), e.body.effective_date])
            .collect();
        for date in dates {
            let mut expected: BTreeMap<AccountId, Balance> = BTreeMap::new();
            for entry in entries.iter().filter(|e| e.body.effective_date <= date) {
                for posting in &entry.body.postings {
                    let total = expected.entry(posting.account.clone()).or_default();
                    match posting.side {
                        Side::Debit => total.debits += posting.amount,
                        Side::Credit => total.credits += posting.amount,
                    }
                }
            }
            for account in every_balance(&state).keys() {
                let book = state.books().account(account).unwrap();
                prop_assert_eq!(book.history.on_date(date), expected.get(account).copied().unwrap_or_default(), "{} on {}", account, date);
            }
            let trial = state.books().trial_balance(Some(&tb), AsOf::Date(date));
            prop_assert_eq!(trial.debits, trial.credits, "trial balance on {}", date);
            let sheet = state.books().balance_sheet(Some(&tb), date);
            prop_assert_eq!(sheet.total_assets(), sheet.total_liabilities() + sheet.total_equity(), "balance sheet on {}", date);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Closing: once a branch's books are closed through a date, no later
    /// entry is dated on or before it, and every figure of the closed
    /// period (each account on each closed date, the trial balance, the
    /// branch's period figures) stays what it was at the close. A year-end
    /// close empties the income and expense lines into retained earnings
    /// by exactly the year's result.
    #[test]
    fn closed_figures_never_change(steps in proptest::collection::vec(step(), 1..70), close_at in 0..70usize, year_end: bool) {
        use crate::books::{AsOf, Line, Section};
        let tb = id(BranchId::parse, "TB");
        let mut state = LedgerState::new();
        let mut records = BTreeMap::new();
        let mut entries = Vec::new();
        run(setup(), &mut state, &mut records, &mut entries);
        let mut snapshots = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let body = if i == close_at.min(steps.len() - 1) {
                CommandBody::ClosePeriod { branch_id: tb.clone(), through: day(if year_end { 364 } else { 150 }) }
            } else {
                body_of(step, &state)
            };
            // A reopening lets entries into the closed period: not here.
            if matches!(body, CommandBody::ReopenPeriod { .. }) {
                continue;
            }
            let closes = matches!(body, CommandBody::ClosePeriod { .. });
            let retained_before = state.books().line(&tb, &Line::RetainedEarnings, AsOf::Latest);
            let before = state.last_sequence();
            run([body], &mut state, &mut records, &mut entries);
            if !closes || state.last_sequence() == before {
                continue;
            }
            let entry = entries.last().unwrap();
            let through = entry.body.effective_date;
            let Outcome::PeriodClosed { carried, .. } = entry.body.outcome else { panic!("a close") };
            if carried {
                // The year's result, as the income statement shows it, went to retained earnings.
                let year = state.books().income_statement(Some(&tb), through.with_ordinal(1).unwrap(), through);
                let retained = state.books().line(&tb, &Line::RetainedEarnings, AsOf::Latest);
                prop_assert_eq!(retained.on_normal_side(crate::account::AccountKind::Equity) - retained_before.on_normal_side(crate::account::AccountKind::Equity), year.result);
                for (line, balance) in state.books().lines(Some(&tb), AsOf::Date(through)) {
                    if matches!(line.section(), Section::Income | Section::Expenses) {
                        prop_assert_eq!(balance.debits, balance.credits, "{} after the close", line);
                    }
                }
            }
            let accounts: Vec<(AccountId, Balance)> = every_balance(&state).keys().map(|a| (a.clone(), state.books().account(a).unwrap().history.on_date(through))).collect();
            snapshots.push((
                entry.body.sequence,
                through,
                accounts,
                state.books().trial_balance(Some(&tb), AsOf::Date(through)),
                state.period_figures(&tb, day(0), through).unwrap(),
            ));
        }
        for (sequence, through, accounts, trial, figures) in &snapshots {
            // The institution's catalogue is in no branch's books.
            for entry in entries.iter().filter(|e| e.body.sequence > *sequence && e.body.branch.is_some()) {
                prop_assert!(entry.body.effective_date > *through || matches!(entry.body.command, CommandBody::ClosePeriod { .. }),
                    "entry {} ({}) dated {} after the close through {}", entry.body.sequence, entry.body.command.name(), entry.body.effective_date, through);
            }
            for (account, balance) in accounts {
                prop_assert_eq!(state.books().account(account).unwrap().history.on_date(*through), *balance, "{} on {}", account, through);
            }
            prop_assert_eq!(&state.books().trial_balance(Some(&tb), AsOf::Date(*through)), trial);
            prop_assert_eq!(&state.period_figures(&tb, day(0), *through).unwrap(), figures);
        }
    }
}

/// Decides `body` against `state` (the entries so far for reversals), as
/// [`run`] does, without applying it.
fn decide(
    state: &LedgerState,
    entries: &[Entry],
    body: CommandBody,
) -> Result<EntryBody, DomainError> {
    let context = ExecContext {
        recorded_at: Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap(),
        rules_version: crate::entry::RULES_VERSION_FIRST,
    };
    let command = Command {
        request_id: RequestId::parse("r", "decide").unwrap(),
        actor: Actor::parse("a", "manager").unwrap(),
        principal: None,
        approval: None,
        body,
    };
    let lookup = |sequence: u64| {
        Ok(entries
            .get((sequence as usize).wrapping_sub(1))
            .map(|e| e.body.clone()))
    };
    state
        .execute(&command, context, &lookup)
        .map_err(|e| match e {
            ExecuteError::Refused(e) => e,
            other => panic!("{other}"),
        })
}

fn fund(source: FundingSource, millions: u64, d: u32, returned: bool) -> CommandBody {
    let branch_id = id(BranchId::parse, "TB");
    let amount = vnd(millions * 1_000_000);
    let effective_date = Some(day(d));
    if returned {
        CommandBody::ReturnBranchFunding {
            branch_id,
            source,
            amount,
            effective_date,
        }
    } else {
        CommandBody::FundBranch {
            branch_id,
            source,
            amount,
            effective_date,
        }
    }
}

/// The setup's ledger, then the branch funded with 200 million of capital
/// on day 5 and 500 million from head office on day 10.
struct Funded {
    state: LedgerState,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    entries: Vec<Entry>,
    /// Entries the setup wrote, before the fundings.
    before: usize,
}

fn funded() -> Funded {
    let mut state = LedgerState::new();
    let mut records = BTreeMap::new();
    let mut entries = Vec::new();
    run(setup(), &mut state, &mut records, &mut entries);
    let before = entries.len();
    run(
        [
            fund(FundingSource::Capital, 200, 5, false),
            fund(FundingSource::HeadOffice, 500, 10, false),
        ],
        &mut state,
        &mut records,
        &mut entries,
    );
    Funded {
        state,
        records,
        entries,
        before,
    }
}

/// A branch funded from head office and with capital: cash debited, the
/// source's line credited (a liability, equity), the books balanced; a
/// return debits the source and is refused for more than the branch holds
/// from it on its date or after, and so is a reversal of a funding that
/// was partly given back; bad input is refused naming the field.
#[test]
fn funding_moves_cash_and_its_source_and_never_gives_back_more_than_was_given() {
    use crate::books::{AsOf, Line};
    let tb = id(BranchId::parse, "TB");
    let million = |m: i64| Decimal::from(m * 1_000_000);
    let Funded {
        mut state,
        mut records,
        mut entries,
        before,
    } = funded();
    assert_eq!(entries.len(), before + 2, "both fundings are booked");
    let funding = entries.last().unwrap().body.clone();
    assert_eq!(
        funding.postings,
        vec![
            Posting::debit(AccountId::Cash(tb.clone()), million(500)),
            Posting::credit(AccountId::HeadOfficeFunding(tb.clone()), million(500)),
        ]
    );
    assert_eq!(
        funding.outcome,
        Outcome::FundingMoved {
            source: FundingSource::HeadOffice,
            balance_after: million(500),
        }
    );
    let line = |state: &LedgerState, line: Line, date: u32| {
        state
            .books()
            .line(&tb, &line, AsOf::Date(day(date)))
            .on_normal_side(line.kind())
    };
    assert_eq!(line(&state, Line::Cash, 10), million(700));
    assert_eq!(
        line(&state, Line::Cash, 7),
        million(200),
        "capital came first"
    );
    assert_eq!(line(&state, Line::HeadOfficeFunding, 10), million(500));
    assert_eq!(line(&state, Line::Capital, 10), million(200));
    let sheet = state.books().balance_sheet(Some(&tb), day(10));
    assert!(
        sheet
            .liabilities
            .contains(&(Line::HeadOfficeFunding, million(500)))
    );
    assert!(sheet.equity.contains(&(Line::Capital, million(200))));
    assert_eq!(sheet.total_assets(), million(700));
    assert_eq!(
        sheet.total_assets(),
        sheet.total_liabilities() + sheet.total_equity()
    );
    let trial = state.books().trial_balance(Some(&tb), AsOf::Latest);
    assert_eq!(trial.debits, trial.credits);

    // More than head office sent, or dated before it did: refused.
    let refusal =
        |state: &LedgerState, entries: &[Entry], body| decide(state, entries, body).unwrap_err();
    for body in [
        fund(FundingSource::HeadOffice, 501, 20, true),
        fund(FundingSource::HeadOffice, 1, 9, true),
    ] {
        let error = refusal(&state, &entries, body);
        assert!(
            matches!(&error, DomainError::Precondition { field, .. } if field == "amount"),
            "{error}"
        );
        assert!(error.to_string().contains("head-office"), "{error}");
    }
    let error = refusal(
        &state,
        &entries,
        fund(FundingSource::Capital, 201, 20, true),
    );
    assert!(error.to_string().contains("capital"), "{error}");
    // In another currency than the branch's books, or for no branch.
    let mut dollars = fund(FundingSource::HeadOffice, 1, 20, false);
    if let CommandBody::FundBranch { amount, .. } = &mut dollars {
        amount.currency = Some(Currency::Usd);
    }
    let error = refusal(&state, &entries, dollars);
    assert!(
        matches!(&error, DomainError::Invalid { field, .. } if field == "amount.currency"),
        "{error}"
    );
    let mut elsewhere = fund(FundingSource::HeadOffice, 1, 20, false);
    if let CommandBody::FundBranch { branch_id, .. } = &mut elsewhere {
        *branch_id = id(BranchId::parse, "HN");
    }
    assert!(matches!(
        refusal(&state, &entries, elsewhere),
        DomainError::NotFound { field, .. } if field == "branch_id"
    ));
    // Before the branch opened, or in the future.
    let mut early = fund(FundingSource::HeadOffice, 1, 0, false);
    if let CommandBody::FundBranch { effective_date, .. } = &mut early {
        *effective_date = day(0).pred_opt();
    }
    assert!(matches!(
        refusal(&state, &entries, early),
        DomainError::Precondition { field, .. } if field == "effective_date"
    ));
    assert!(matches!(
        refusal(&state, &entries, fund(FundingSource::HeadOffice, 1, 600, false)),
        DomainError::Invalid { field, .. } if field == "effective_date"
    ));

    // 200 million given back on day 20: 300 million held from then on.
    run(
        [fund(FundingSource::HeadOffice, 200, 20, true)],
        &mut state,
        &mut records,
        &mut entries,
    );
    let returned = entries.last().unwrap().body.clone();
    assert_eq!(returned.command.name(), "return_branch_funding");
    assert_eq!(
        returned.postings,
        vec![
            Posting::debit(AccountId::HeadOfficeFunding(tb.clone()), million(200)),
            Posting::credit(AccountId::Cash(tb.clone()), million(200)),
        ]
    );
    assert_eq!(line(&state, Line::HeadOfficeFunding, 20), million(300));
    assert_eq!(line(&state, Line::Cash, 20), million(500));
    // Reversing the 500 million would leave less than nothing from day 20.
    let funded_in = funding.sequence;
    let reverse = |sequence: u64| CommandBody::ReverseEntry {
        sequence,
        reason: Name::parse("reason", "entered twice").unwrap(),
        effective_date: None,
    };
    let error = refusal(&state, &entries, reverse(funded_in));
    assert!(
        matches!(&error, DomainError::Precondition { field, .. } if field == "sequence"),
        "{error}"
    );
    // Reversing the return first, then the funding: nothing held, cash as
    // the capital left it.
    run(
        [reverse(returned.sequence), reverse(funded_in)],
        &mut state,
        &mut records,
        &mut entries,
    );
    assert!(matches!(
        entries.last().unwrap().body.outcome,
        Outcome::Reversed {
            undo: Undo::Funding {
                returned: false,
                ..
            },
            ..
        }
    ));
    assert_eq!(line(&state, Line::HeadOfficeFunding, 30), Decimal::ZERO);
    assert_eq!(line(&state, Line::Cash, 30), million(200));
    let mut replayed = LedgerState::new();
    for entry in &entries {
        replayed.apply(entry).unwrap();
    }
    replayed.clear_changes();
    assert_eq!(replayed.export().unwrap(), state.export().unwrap());
}

/// Figures as of an earlier entry read from a damaged day log answer
/// `Damaged` (a fault of the ledger's, which the server reports as
/// DATA_LOSS), not a refusal of the request; figures now still answer.
#[test]
fn figures_as_of_an_entry_from_a_damaged_day_log_are_reported_damaged() {
    let tb = id(BranchId::parse, "TB");
    let Funded {
        mut state, entries, ..
    } = funded();
    let earlier = entries.len() as u64 - 1;
    assert!(
        state
            .period_figures_at(&tb, day(0), day(30), Some(earlier))
            .is_ok(),
        "the log as kept answers"
    );
    let mut damaged = crate::day_log::DayLog::default();
    damaged
        .restore(
            tb.clone(),
            Vec::new(),
            crate::day_log::DayChunk {
                first_sequence: 1,
                entries: 1,
                before: vec![0xff; 4],
                changes: Vec::new(),
            },
        )
        .unwrap();
    state.day_log = damaged;
    match state.period_figures_at(&tb, day(0), day(30), Some(earlier)) {
        Err(DomainError::Damaged { message }) => assert!(
            message.contains(&format!("as of entry {earlier} are damaged"))
                && message.contains("mfi-ledger verify"),
            "{message}"
        ),
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert!(state.period_figures_at(&tb, day(0), day(30), None).is_ok());
}

#[test]
fn figures_as_of_an_entry_whose_chunk_cannot_be_read_now_are_unavailable_not_damaged() {
    let tb = id(BranchId::parse, "TB");
    let Funded { mut state, .. } = funded();
    // A closed chunk from entry 1 left in a store that cannot read now.
    let first = 1;
    let mut log = crate::day_log::DayLog::default();
    log.restore(
        tb.clone(),
        vec![(first, None)],
        crate::day_log::DayChunk {
            first_sequence: 2,
            entries: 0,
            before: vec![0],
            changes: Vec::new(),
        },
    )
    .unwrap();
    state.day_log = log;
    state.keep_stored_in(std::sync::Arc::new(crate::day_log::tests::Unreadable));
    match state.period_figures_at(&tb, day(0), day(30), Some(first)) {
        Err(DomainError::Unavailable { message }) => assert!(
            message.contains(&format!("as of entry {first} could not be read"))
                && message.contains("ask again"),
            "{message}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(state.period_figures_at(&tb, day(0), day(30), None).is_ok());
}

/// Records saved into a map as a checkpoint saves them, and read from it.
#[derive(Debug, Default)]
struct RecordsSaved(
    std::sync::Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// How many reads it answered.
    std::sync::atomic::AtomicUsize,
);

impl RecordsSaved {
    fn save(&self, records: Vec<StateRecord>) {
        let mut kept = self.0.lock().unwrap();
        for (key, value) in records {
            match value {
                Some(value) => kept.insert(key, value),
                None => kept.remove(&key),
            };
        }
    }
}

impl crate::stored::StoredRecords for RecordsSaved {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::stored::ReadError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.0.lock().unwrap().get(key).cloned())
    }

    fn records_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        skip: &dyn Fn(&[u8]) -> bool,
    ) -> Result<crate::stored::Records, crate::stored::ReadError> {
        let kept = self.0.lock().unwrap();
        Ok(crate::stored::records_after_in(
            &kept, prefix, after, limit, skip,
        ))
    }
}

/// `entries` applied as a server's read side applies them, letting go of
/// what the store holds: a checkpoint every `every` entries, saved before
/// the next applies, or (`delayed`) only once the next checkpoint is taken;
/// and a last one. The state, and the store its checkpoints saved to.
fn replay_saving(
    entries: &[Entry],
    every: usize,
    delayed: bool,
) -> (LedgerState, Arc<RecordsSaved>) {
    let kept = Arc::new(RecordsSaved::default());
    let mut cold = LedgerState::new();
    cold.keep_stored_in(kept.clone());
    // A checkpoint taken, its grown records read back and saved once it
    // completes, as a server's persister does outside the lock.
    let complete = |cold: &mut LedgerState, changes: crate::state::Changes| {
        let (records, saved) = changes.complete().unwrap();
        kept.save(records);
        cold.saved_whole(&saved);
    };
    let mut saving: Option<crate::state::Changes> = None;
    for (n, entry) in entries.iter().enumerate() {
        cold.apply(entry).unwrap();
        if n % every == 0 {
            if let Some(changes) = saving.take() {
                complete(&mut cold, changes);
            }
            // Under the state's lock, nothing is read back: the records
            // let go of that it writes whole, those that move out among
            // them, are read back as it completes, outside it.
            let reads = kept.1.load(std::sync::atomic::Ordering::Relaxed);
            saving = Some(cold.take_changes_to_save());
            assert_eq!(kept.1.load(std::sync::atomic::Ordering::Relaxed), reads);
        }
        if !delayed && let Some(changes) = saving.take() {
            complete(&mut cold, changes);
        }
    }
    if let Some(changes) = saving.take() {
        complete(&mut cold, changes);
    }
    let changes = cold.take_changes_to_save();
    complete(&mut cold, changes);
    (cold, kept)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A savings account's closed records move out of those startup reads
    /// up to its first step back in date, wherever that falls, whatever
    /// the checkpoints' cadence: the records every cadence saves are a
    /// rebuild's; startup reads them back to the same state, refusing them
    /// when a moved record's own record is missing (and a read of its
    /// steps when they are); and its balance as of every entry and date is
    /// the one held.
    #[test]
    fn closed_records_move_out_alike_for_any_step_back_and_cadence(
        count in 130..420u32,
        back in proptest::option::of(0..420u32),
        every in 1..9usize,
        delayed in any::<bool>(),
    ) {
        let mut state = LedgerState::new();
        let mut records = BTreeMap::new();
        let mut entries = Vec::new();
        run(setup(), &mut state, &mut records, &mut entries);
        for n in 0..count {
            let deposit = Step::Deposit {
                member: 0,
                thousands: 10 + n,
                day: if Some(n) == back { 0 } else { 1 + n / 4 },
            };
            let body = body_of(&deposit, &state);
            run([body], &mut state, &mut records, &mut entries);
        }
        let savings = AccountId::Savings(SavingsAccountId::parse("a", "M0/C1").unwrap());
        // Its steps' dates, one an entry that posted to it, from the
        // journal: its records close every 128 steps, and those before the
        // one its first step back in date is in move out.
        let dates: Vec<NaiveDate> = entries
            .iter()
            .filter(|e| e.body.postings.iter().any(|p| p.account == savings))
            .map(|e| e.body.effective_date)
            .collect();
        let per_record = crate::books::RECORD_STEPS;
        let last = (dates.len() - 1) / per_record;
        let first_back = (1..dates.len())
            .find(|i| dates[*i] < dates[i - 1])
            .map_or(usize::MAX, |i| i / per_record);
        for k in 0..=last {
            let moved = k < last && k < first_back;
            let key = StateKey::ClosedSteps(savings.clone(), k as u64).to_bytes();
            prop_assert_eq!(records.contains_key(&key), moved, "record {}", k);
        }
        let (cold, kept) = replay_saving(&entries, every, delayed);
        prop_assert_eq!(&*kept.0.lock().unwrap(), &records);
        prop_assert_eq!(cold.export().unwrap(), state.export().unwrap());

        let startup = crate::state::loan_tests::read_as_started;
        let mut started = startup(&records).unwrap();
        started.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(records.clone())));
        prop_assert_eq!(started.export().unwrap(), state.export().unwrap());
        let held = &state.books().account(&savings).unwrap().history;
        for sequence in (0..=state.last_sequence() + 1).step_by(7) {
            prop_assert_eq!(
                started.books().account_as_of(&savings, crate::books::AsOf::Sequence(sequence)).unwrap(),
                held.at_sequence(sequence)
            );
        }
        for d in 0..=110 {
            prop_assert_eq!(
                started.books().account_as_of(&savings, crate::books::AsOf::Date(day(d))).unwrap(),
                held.on_date(day(d))
            );
        }
        // A moved record's steps missing: refused when read whole (as
        // `verify` reads), and, by a start that lists none of them, when
        // a figure reads them. Its own record missing: refused by a start.
        if let Some(key) = records.keys().find(|k| k.starts_with(b"cold/closed/")).cloned() {
            let mut without = records.clone();
            without.remove(&key);
            let why = LedgerState::import(
                without.iter().map(|(key, value)| (key.as_slice(), value.as_slice())),
            )
            .unwrap_err();
            prop_assert!(why.contains("not of the same records"), "{}", why);
            let mut started = startup(&without).unwrap();
            started.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(without.clone())));
            let refused = (0..=state.last_sequence())
                .map(|s| started.books().account_as_of(&savings, crate::books::AsOf::Sequence(s)))
                .find(Result::is_err);
            prop_assert!(
                matches!(refused, Some(Err(crate::stored::ReadError::Damaged(_)))),
                "{:?}",
                refused
            );
            let mut without = records.clone();
            let own = StateKey::Steps(savings.clone(), 0).to_bytes();
            without.remove(&own);
            prop_assert!(startup(&without).is_err());
        }
    }
}

/// An account's closed records of steps leave memory once a checkpoint
/// saved them, not while entries applied during the save changed them
/// again (the store then holds an older one), and so does a member's
/// account's last record, again after each deposit grows it; its
/// balances by entry and by date and its movements are read back from
/// the store as they were held: deposits in date order over three
/// records, then back-dated ones after the older records were let go of.
#[test]
fn an_accounts_closed_records_of_steps_are_read_back_as_they_were_held() {
    use crate::books::AsOf;
    let mut state = LedgerState::new();
    let mut records = BTreeMap::new();
    let mut entries = Vec::new();
    run(setup(), &mut state, &mut records, &mut entries);
    let deposits = (0..420u32).map(|n| Step::Deposit {
        member: 0,
        thousands: 10 + n,
        day: if n < 330 { n / 3 } else { (n * 7) % 100 },
    });
    for deposit in deposits {
        let body = body_of(&deposit, &state);
        run([body], &mut state, &mut records, &mut entries);
    }
    // Applied as a server's read side applies them: a checkpoint after
    // every entry, saved before the next applies (a record saved while it
    // was the last, let go of when a later checkpoint saves the next); a
    // checkpoint every fifth entry, saved before the next applies (the
    // member's account's last record let go of, grown by the next four,
    // and closed while grown when they fill it); and a checkpoint every
    // third entry, saved only after the next two applied.
    let replay = |every: usize, delayed: bool| {
        let (cold, kept) = replay_saving(&entries, every, delayed);
        assert_eq!(*kept.0.lock().unwrap(), records);
        assert!(
            cold.export().unwrap() == state.export().unwrap(),
            "the records read back"
        );
        (cold, kept)
    };
    let (cold, kept) = replay(3, true);
    let (in_step, in_step_kept) = replay(1, false);
    let (every_fifth, _) = replay(5, false);
    let savings = AccountId::Savings(SavingsAccountId::parse("a", "M0/C1").unwrap());
    let cash = AccountId::Cash(id(BranchId::parse, "TB"));
    for account in [&savings, &cash] {
        // What each entry posted to the account, from the journal.
        let posted: Vec<crate::books::Movement> = entries
            .iter()
            .filter_map(|entry| {
                let mut postings = entry.body.postings.iter().filter(|p| p.account == *account);
                let first = postings.next()?;
                let posted = postings.fold(Balance::of(first.side, first.amount), |total, p| {
                    let more = Balance::of(p.side, p.amount);
                    Balance {
                        debits: total.debits + more.debits,
                        credits: total.credits + more.credits,
                    }
                });
                Some(crate::books::Movement {
                    sequence: entry.body.sequence,
                    date: entry.body.effective_date,
                    posted,
                })
            })
            .collect();
        let total = |keep: &dyn Fn(&crate::books::Movement) -> bool| {
            posted
                .iter()
                .filter(|m| keep(m))
                .fold((Decimal::ZERO, Decimal::ZERO), |(d, c), m| {
                    (d + m.posted.debits, c + m.posted.credits)
                })
        };
        let held = &state.books().account(account).unwrap().history;
        let count = cold
            .books()
            .account_record_keys()
            .filter(|(a, _)| *a == account)
            .count() as u64;
        assert!(count >= 4, "{account}: {count} records");
        for read in [&cold, &in_step, &every_fifth] {
            for index in 0..count {
                // A member's account's last record too, the branch's
                // cash's not.
                assert_eq!(
                    read.books().is_let_go(account, index),
                    index + 1 < count || account == &savings,
                    "{account} record {index}"
                );
            }
        }
        for sequence in 0..=state.last_sequence() + 1 {
            let read = cold
                .account_as_of(account, AsOf::Sequence(sequence))
                .unwrap();
            assert_eq!(
                read,
                held.at_sequence(sequence),
                "{account} as of entry {sequence}"
            );
            assert_eq!(
                (read.debits, read.credits),
                total(&|m| m.sequence <= sequence),
                "{account} as of entry {sequence}"
            );
        }
        for d in 0..=150 {
            let read = cold.account_as_of(account, AsOf::Date(day(d))).unwrap();
            assert_eq!(read, held.on_date(day(d)), "{account} on {}", day(d));
            assert_eq!(
                (read.debits, read.credits),
                total(&|m| m.date <= day(d)),
                "{account} on {}",
                day(d)
            );
        }
        for (from, to) in [(0, 150), (0, 0), (20, 45), (21, 21), (97, 99), (110, 150)] {
            let (from, to) = (day(from), day(to));
            let mut expected: Vec<crate::books::Movement> = posted
                .iter()
                .filter(|m| (from..=to).contains(&m.date))
                .copied()
                .collect();
            expected.sort_by_key(|m| (m.date, m.sequence));
            let reads = in_step_kept.1.load(std::sync::atomic::Ordering::Relaxed);
            let read = in_step.account_movements(account, from, to).unwrap();
            assert_eq!(
                read,
                held.movements(from, to),
                "{account} from {from} to {to}"
            );
            assert_eq!(read, expected, "{account} from {from} to {to}");
            if from > day(109) {
                // No step is dated after the 109th: of the closed records,
                // only the one the steps in date order end in is read (to
                // find where they end), the others passed by.
                let read_back = in_step_kept.1.load(std::sync::atomic::Ordering::Relaxed) - reads;
                assert!(
                    read_back <= 1,
                    "{account} from {from} to {to}: {read_back} records read"
                );
            }
            assert_eq!(cold.account_movements(account, from, to).unwrap(), read);
        }
    }
    assert!(
        state
            .books()
            .account(&savings)
            .unwrap()
            .history
            .dated_from()
            .is_some(),
        "back-dated deposits"
    );
    assert!(cold.books().held_bytes() < state.books().held_bytes());

    // The savings account's closed records before the first back-dated
    // deposit (its first two of three) moved out of those startup reads:
    // their steps each in a record read when asked, their own keeping what
    // startup takes of them; the third, which went back in date, did not.
    let key = |k: u64| {
        crate::books::StepsOf::Account(savings.clone())
            .key(k)
            .into_bytes()
    };
    let closed = |k: u64| crate::books::closed_steps_key(&savings, k).into_bytes();
    for (k, moved) in [(0, true), (1, true), (2, false), (3, false)] {
        assert_eq!(records.contains_key(&closed(k)), moved, "record {k}");
        assert_eq!(
            records[&key(k)].len() < 200,
            moved,
            "record {k}: {} bytes",
            records[&key(k)].len()
        );
    }
    let moved_bytes: usize = (0..2).map(|k| records[&key(k)].len()).sum();
    let steps_bytes: usize = (0..2).map(|k| records[&closed(k)].len()).sum();
    assert!(
        moved_bytes * 3 < steps_bytes,
        "{moved_bytes} of {steps_bytes}"
    );
    // The cash account's records never move.
    assert!(!records.keys().any(|k| k.starts_with(b"cold/closed/cash")));

    // The steps of the savings account's first record replaced in the
    // store by its second's: a figure it holds is refused as damaged,
    // naming the record, and one held in memory still answers.
    let second = kept.0.lock().unwrap()[&closed(1)].clone();
    kept.0.lock().unwrap().insert(closed(0), second);
    let damaged = cold
        .account_as_of(&savings, AsOf::Sequence(40))
        .unwrap_err();
    assert!(
        matches!(&damaged, DomainError::Damaged { message }
            if message.contains("steps/savings:M0/C1/0000000000") && message.contains("mfi-ledger verify")),
        "{damaged}"
    );
    assert!(cold.account_movements(&savings, day(0), day(150)).is_err());
    let last = state.last_sequence();
    assert_eq!(
        cold.account_as_of(&savings, AsOf::Sequence(last)).unwrap(),
        state.books().account(&savings).unwrap().history.latest()
    );
    // A record gone is damage too, its steps' or its own; a store that
    // cannot be read now is unavailable (ask again), not damage.
    kept.0.lock().unwrap().remove(&closed(0));
    let missing = cold
        .account_as_of(&savings, AsOf::Date(day(5)))
        .unwrap_err();
    assert!(
        matches!(&missing, DomainError::Damaged { message }
            if message.contains("cold/closed/savings:M0/C1/0000000000") && message.contains("missing")),
        "{missing}"
    );
    kept.0.lock().unwrap().remove(&key(0));
    let missing = cold
        .account_as_of(&savings, AsOf::Date(day(5)))
        .unwrap_err();
    assert!(
        matches!(&missing, DomainError::Damaged { message } if message.contains("missing")),
        "{missing}"
    );
    let mut unreadable = cold.clone();
    unreadable.keep_stored_in(Arc::new(crate::day_log::tests::Unreadable));
    let now = unreadable
        .account_as_of(&cash, AsOf::Date(day(5)))
        .unwrap_err();
    assert!(matches!(now, DomainError::Unavailable { .. }), "{now}");
}

/// Interest for a month a close cut in two (closed through its 10th) is
/// what it is without the close: the posting reads back the changes the
/// close folded, from memory before a checkpoint, from the store once a
/// start left them there. A reopening from before the close takes them
/// back whole, and a withdrawal dated in the reopened days is checked
/// against every balance from its date on.
#[test]
fn a_period_a_close_cut_in_two_reads_back_what_the_close_folded() {
    let account = AccountId::Savings(SavingsAccountId::parse("a", "M0/C1").unwrap());
    let savings = |state: &LedgerState| {
        state
            .balance(&account)
            .on_normal_side(AccountKind::Liability)
    };
    let deposit = |thousands: u64, d: u32| CommandBody::DepositSavings {
        account_id: SavingsAccountId::parse("a", "M0/C1").unwrap(),
        amount: vnd(thousands * 1000),
        effective_date: Some(day(d)),
    };
    let withdraw = |thousands: u64, d: u32| CommandBody::WithdrawSavings {
        account_id: SavingsAccountId::parse("a", "M0/C1").unwrap(),
        amount: vnd(thousands * 1000),
        effective_date: Some(day(d)),
    };
    let tb = id(BranchId::parse, "TB");
    // February 2023: days 31 to 58.
    let interest = CommandBody::PostSavingsInterest {
        branch_id: tb.clone(),
        period_end: day(58),
    };
    let history = [
        deposit(500, 3),
        deposit(300, 33),
        withdraw(700, 36),
        deposit(200, 45),
    ];
    let (mut plain, mut plain_records, mut plain_entries) =
        (LedgerState::new(), BTreeMap::new(), Vec::new());
    run(setup(), &mut plain, &mut plain_records, &mut plain_entries);
    run(
        history.clone(),
        &mut plain,
        &mut plain_records,
        &mut plain_entries,
    );
    let before = savings(&plain);
    assert_eq!(before, Decimal::from(300_000));
    run(
        [interest.clone()],
        &mut plain,
        &mut plain_records,
        &mut plain_entries,
    );
    let earned = savings(&plain) - before;
    assert!(earned > Decimal::ZERO, "interest was posted");

    let (mut closed, mut records, mut entries) = (LedgerState::new(), BTreeMap::new(), Vec::new());
    run(setup(), &mut closed, &mut records, &mut entries);
    run(history, &mut closed, &mut records, &mut entries);
    run(
        [CommandBody::ClosePeriod {
            branch_id: tb.clone(),
            through: day(40),
        }],
        &mut closed,
        &mut records,
        &mut entries,
    );
    let folded = closed.savings[&SavingsAccountId::parse("a", "M0/C1").unwrap()].clone();
    assert_eq!(folded.changes.len(), 1, "the change after the 10th is held");
    assert_eq!(
        folded.folded,
        Some(super::Folded {
            through: day(40),
            carried: Decimal::from(100_000)
        })
    );
    assert!(records.contains_key(b"cold/savings-history/TB/2023-02-10/0000".as_slice()));
    // Held, and read back as a start leaves it.
    let mut started = super::loan_tests::read_as_started(&records).unwrap();
    started.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(records.clone())));
    assert!(started.savings_history.is_empty());
    let (mut started_records, mut started_entries) = (records.clone(), entries.clone());
    let mut reopened = super::loan_tests::read_as_started(&records).unwrap();
    reopened.keep_stored_in(Arc::new(crate::stored::KeptInMap::new(records.clone())));
    let (reopened_records, reopened_entries) = (records.clone(), entries.clone());
    for (state, records, entries) in [
        (&mut closed, &mut records, &mut entries),
        (&mut started, &mut started_records, &mut started_entries),
    ] {
        let before = savings(state);
        run([interest.clone()], state, records, entries);
        assert_eq!(savings(state) - before, earned);
    }
    // Reopened from 1 February on, from the store (before that interest
    // was posted, which would refuse the days it paid on): the close's
    // fold is taken back, and 150,000 withdrawn on the 5th, when the
    // account held 800,000, would leave it at -50,000 on the 6th: refused.
    // 90,000 is not.
    let (started, mut records, mut entries) = (&mut reopened, reopened_records, reopened_entries);
    let reopen = CommandBody::ReopenPeriod {
        branch_id: tb,
        from: day(31),
        reason: Name::parse("reason", "a missed entry").unwrap(),
    };
    let held = savings(started);
    run([reopen], started, &mut records, &mut entries);
    assert_eq!(
        started.branches[&id(BranchId::parse, "TB")].folds,
        Vec::<super::folds::Fold>::new()
    );
    assert!(!records.contains_key(b"cold/savings-history/TB/2023-02-10/0000".as_slice()));
    run([withdraw(150, 35)], started, &mut records, &mut entries);
    let account_now = &started.savings[&SavingsAccountId::parse("a", "M0/C1").unwrap()];
    assert_eq!(account_now.folded, None);
    assert_eq!(account_now.changes.len(), 4);
    assert_eq!(savings(started), held, "the withdrawal was refused");
    run([withdraw(90, 35)], started, &mut records, &mut entries);
    assert_eq!(savings(started), held - Decimal::from(90_000));
}

/// A close reopened and made again on the same date, twice, between two
/// checkpoints of a state that reads what it let go of from its store:
/// the store ends up with the records of a state that saved after every
/// entry, no record a reopening took back is read back as if it stood
/// (the balances from the reopened days are the live ones), and `verify`'s
/// whole reading of them checks.
#[test]
fn a_close_reopened_and_made_again_between_checkpoints_leaves_the_last_ones_records() {
    let tb = id(BranchId::parse, "TB");
    let deposit = |m: usize, thousands: u64, d: u32| CommandBody::DepositSavings {
        account_id: SavingsAccountId::parse("a", &format!("M{m}/C1")).unwrap(),
        amount: vnd(thousands * 1000),
        effective_date: Some(day(d)),
    };
    let close = || CommandBody::ClosePeriod {
        branch_id: tb.clone(),
        through: day(40),
    };
    let reopen = |d: u32| CommandBody::ReopenPeriod {
        branch_id: tb.clone(),
        from: day(d),
        reason: Name::parse("reason", "a missed entry").unwrap(),
    };
    let (mut live, mut records, mut entries) = (LedgerState::new(), BTreeMap::new(), Vec::new());
    run(setup(), &mut live, &mut records, &mut entries);
    let first = entries.len();
    run(
        [
            deposit(0, 500, 3),
            deposit(1, 200, 33),
            deposit(2, 100, 45),
            close(),
            reopen(31),
            deposit(0, 50, 35),
            close(),
            reopen(20),
            deposit(1, 70, 25),
            close(),
            deposit(2, 10, 50),
        ],
        &mut live,
        &mut records,
        &mut entries,
    );
    assert_eq!(entries.len(), first + 11, "every command was taken");
    let kept = Arc::new(RecordsSaved::default());
    let mut cold = LedgerState::new();
    cold.keep_stored_in(kept.clone());
    let close_at = first + 4;
    for (at, entry) in entries.iter().enumerate() {
        cold.apply(entry).unwrap();
        // Saved once after the setup's entries and the first close, then
        // only at the end.
        if at + 1 == first || at + 1 == close_at || at + 1 == entries.len() {
            let (keys, changed) = cold.take_changes_with_keys().unwrap();
            kept.save(changed);
            cold.saved(&keys);
        }
    }
    assert_eq!(*kept.0.lock().unwrap(), records);
    assert_eq!(cold.export().unwrap(), live.export().unwrap());
    assert!(
        cold.savings_history.is_empty(),
        "every fold's records saved and let go of"
    );
    // One fold through day 40, its one record holding the three accounts.
    let folds = &cold.branches[&tb].folds;
    assert_eq!(folds.len(), 1);
    let record = format!("cold/savings-history/TB/{}/0000", day(40));
    assert!(records.contains_key(record.as_bytes()));
    for m in 0..3 {
        let account = &cold.savings[&SavingsAccountId::parse("a", &format!("M{m}/C1")).unwrap()];
        let (opening, changes) = cold
            .savings_from(account, day(0), &mut Default::default())
            .unwrap();
        let (live_opening, live_changes) = live
            .savings_from(&live.savings[&account.id], day(0), &mut Default::default())
            .unwrap();
        assert_eq!(
            (opening, changes.into_owned()),
            (live_opening, live_changes.into_owned())
        );
    }
    let imported =
        LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
    assert_eq!(imported.export().unwrap(), records);
}

/// The writer's copy holds a close's fold only as long as the read side
/// does: once a checkpoint saved it and the read side let go of it, the
/// writer holds none of it, and a reopening it decides then reads the
/// fold from the store.
#[test]
fn the_writer_holds_a_fold_only_while_the_read_side_does() {
    let tb = id(BranchId::parse, "TB");
    let (mut live, mut records, mut entries) = (LedgerState::new(), BTreeMap::new(), Vec::new());
    run(setup(), &mut live, &mut records, &mut entries);
    let deposit = CommandBody::DepositSavings {
        account_id: SavingsAccountId::parse("a", "M0/C1").unwrap(),
        amount: vnd(500_000),
        effective_date: Some(day(3)),
    };
    run([deposit], &mut live, &mut records, &mut entries);
    let kept = Arc::new(RecordsSaved::default());
    kept.save(
        records
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
    );
    let mut started = super::loan_tests::read_as_started(&records).unwrap();
    started.keep_stored_in(kept.clone());
    let (mut reader, mut writer) = started.split_for_writer();
    let context = ExecContext {
        recorded_at: Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap(),
        rules_version: crate::entry::RULES_VERSION_FIRST,
    };
    let lookup = |_: u64| Ok(None);
    let submit = |writer: &mut LedgerState, reader: &mut LedgerState, body: CommandBody| {
        let command = Command {
            request_id: RequestId::parse("r", &format!("w{}", writer.last_sequence())).unwrap(),
            actor: Actor::parse("a", "clerk").unwrap(),
            principal: None,
            approval: None,
            body,
        };
        let body = writer.execute(&command, context, &lookup).unwrap();
        let (entry, written) = writer.seal_and_keep(body).unwrap();
        reader.apply_written(&entry, written).unwrap();
    };
    submit(
        &mut writer,
        &mut reader,
        CommandBody::ClosePeriod {
            branch_id: tb.clone(),
            through: day(40),
        },
    );
    let key = (tb.clone(), day(40), 0);
    assert!(
        writer.savings_history.get(&key).is_some(),
        "held while the read side holds it"
    );
    let (keys, changed) = reader.take_changes_with_keys().unwrap();
    kept.save(changed);
    reader.saved(&keys);
    assert!(reader.savings_history.is_empty());
    assert!(
        writer.savings_history.is_empty(),
        "let go of with the read side"
    );
    let account = SavingsAccountId::parse("a", "M0/C1").unwrap();
    assert!(writer.savings[&account].folded.is_some());
    let reads = kept.1.load(std::sync::atomic::Ordering::Relaxed);
    submit(
        &mut writer,
        &mut reader,
        CommandBody::ReopenPeriod {
            branch_id: tb,
            from: day(31),
            reason: Name::parse("reason", "a missed entry").unwrap(),
        },
    );
    assert!(
        kept.1.load(std::sync::atomic::Ordering::Relaxed) > reads,
        "the reopening read the fold from the store"
    );
    for side in [&writer, &reader] {
        let account = &side.savings[&account];
        assert_eq!(account.folded, None);
        assert_eq!(
            account.changes.iter().collect::<Vec<_>>(),
            [(day(3), Decimal::from(500_000))]
        );
    }
}
