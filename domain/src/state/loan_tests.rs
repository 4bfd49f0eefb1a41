//! Properties of product loans, for any valid product, application and
//! disbursement date:
//!
//! - the product is accepted, and the preview (`initial_schedule`, what
//!   PreviewSchedule shows) gives the schedule and fees a disbursement
//!   records; the schedule's principal parts sum to the principal exactly,
//!   every amount has at most the currency's decimals, non-last installments
//!   are multiples as `domain::schedule` states it, no running balance or interest
//!   is negative, and the disbursement pays out the principal less the fees
//!   deducted;
//! - after any sequence of payments (on due dates, between them, beyond the
//!   last; any amount up to the payoff quote), tranches, write-offs,
//!   recoveries and reversals of the latest loan transaction: the loan
//!   account equals the loan's principal, the books balance, nothing is paid
//!   outside `0..=due`, the payoff quote closes the loan, arrears are never
//!   negative, and the cache records, a replay and an import all give the
//!   same state.
//!
//! Bugs found are kept below as `#[ignore]`d tests with their minimal input.

use chrono::{Days, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

use super::*;
use crate::books::AsOf;
use crate::command::{Command, CommandBody, LoanSpec, Money, SavingsKind};
use crate::entry::{Entry, FeeCharge, Side};
use crate::ids::{Actor, CenterId, FeeCode, GroupId, Name, RequestId};
use crate::product::{
    AllocationPart, ArrearsTolerance, CompulsorySavings, Fee, FeeAmount, FeeCollection,
    LoanApplication, ProductRules,
};
use crate::schedule::{
    Amortization, InstallmentBasis, InstallmentRounding, InterestMethod, InterestPeriod,
    RepaymentFrequency, RoundingMode,
};

// ---- Fixtures ----------------------------------------------------------------

fn branch_id() -> BranchId {
    BranchId::parse("b", "TB").unwrap()
}

fn member_id() -> MemberId {
    MemberId::parse("m", "M1").unwrap()
}

fn product_id() -> ProductId {
    ProductId::parse("p", "P").unwrap()
}

fn loan_id() -> LoanId {
    LoanId::new(&member_id(), 'L', 1)
}

fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The branch opens, the member joins and the product is defined on this day.
fn opened_on() -> NaiveDate {
    date(2000, 1, 1)
}

/// Far enough ahead that every date of a loan (and its payments) is in the past.
fn context() -> ExecContext {
    ExecContext {
        recorded_at: Utc.with_ymd_and_hms(2100, 1, 1, 3, 0, 0).unwrap(),
        rules_version: crate::entry::RULES_VERSION_FIRST,
    }
}

fn places_ok(x: Decimal, places: u32) -> bool {
    x.normalize().scale() <= places
}

/// `x` rounded down to the currency's unit.
fn floor(x: Decimal, places: u32) -> Decimal {
    x.round_dp_with_strategy(places, RoundingStrategy::ToZero)
        .normalize()
}

/// `per_mille / 1000` of `x`, rounded down to the currency's unit.
fn share(x: Decimal, per_mille: u32, places: u32) -> Decimal {
    floor(x * Decimal::from(per_mille) / Decimal::from(1000), places)
}

fn is_too_coarse(e: &DomainError) -> bool {
    matches!(e, DomainError::Invalid { field, message }
        if (field == "rounding_multiple" || field == "application.rounding_multiple" || field == "rules.rounding_multiple")
            && (message.contains("too coarse") || message.contains(" to 0")))
}

use crate::stored::KeptInMap as CacheRecords;

/// A ledger whose cache records are checked against a full export after
/// every entry.
struct Ledger {
    state: LedgerState,
    /// A second copy, fed what applying each entry to `state` wrote (as the
    /// read side is fed the writer's).
    mirror: LedgerState,
    /// A third, which keeps its records in `kept` and lets go of what it
    /// may read back from there (a closed loan's installments), as a
    /// server's state does: it must decide and apply every command as
    /// `state` does.
    cold: LedgerState,
    kept: Arc<CacheRecords>,
    /// `cold`'s checkpoint still saving when the next entry applies.
    saving: Option<crate::state::Changes>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    entries: Vec<Entry>,
    /// The loan as it was before each of its transactions (by entry).
    before: BTreeMap<u64, Loan>,
    /// Whether a reversal was dated later than the entry it reversed.
    late_reversal: bool,
}

impl Ledger {
    fn new() -> Ledger {
        let kept = Arc::new(CacheRecords::default());
        let mut cold = LedgerState::new();
        cold.keep_stored_in(kept.clone());
        Ledger {
            state: LedgerState::new(),
            mirror: LedgerState::new(),
            cold,
            kept,
            saving: None,
            records: BTreeMap::new(),
            entries: Vec::new(),
            before: BTreeMap::new(),
            late_reversal: false,
        }
    }

    fn command(&self, body: CommandBody) -> Command {
        Command {
            request_id: RequestId::parse("r", &format!("r{}", self.entries.len() + 1)).unwrap(),
            actor: Actor::parse("a", "clerk").unwrap(),
            principal: None,
            approval: None,
            body,
        }
    }

    /// Decides `body` against `state` (the ledger's or a copy).
    fn decide(&self, state: &LedgerState, body: CommandBody) -> Result<EntryBody, ExecuteError> {
        self.decide_command(state, &self.command(body), context())
    }

    /// Decides `command` against `state` under `context`, earlier entries
    /// read from the ledger's.
    fn decide_command(
        &self,
        state: &LedgerState,
        command: &Command,
        context: ExecContext,
    ) -> Result<EntryBody, ExecuteError> {
        let entries = &self.entries;
        let lookup = |sequence: u64| {
            Ok(entries
                .get((sequence as usize).wrapping_sub(1))
                .map(|e| e.body.clone()))
        };
        state.execute(command, context, &lookup)
    }

    /// Executes and applies `body`; checks the cache records after it.
    fn submit(&mut self, body: CommandBody) -> Result<&Entry, ExecuteError> {
        let on_cold = self.decide(&self.cold, body.clone());
        let decided = self.decide(&self.state, body);
        assert_eq!(
            on_cold.as_ref().map_err(ToString::to_string),
            decided.as_ref().map_err(ToString::to_string),
            "a state that lets go of closed loans decides otherwise"
        );
        let decided = decided?;
        let entry = decided.seal(&self.state.last_hash());
        // Loans a read took out of the state before the entry, and copies.
        let taken: Vec<(std::sync::Arc<Loan>, Loan)> = self
            .state
            .loans
            .values()
            .map(|loan| (loan.clone(), Loan::clone(loan)))
            .collect();
        let written = self
            .state
            .apply_and_keep(&entry)
            .unwrap_or_else(|e| panic!("an executed entry does not apply: {e}"));
        self.mirror
            .apply_written(&entry, written)
            .unwrap_or_else(|e| panic!("what the entry wrote does not apply: {e}"));
        assert!(
            self.mirror.export().unwrap() == self.state.export().unwrap(),
            "the copy fed what entry {} wrote differs from the state",
            entry.body.sequence
        );
        // Applying replaces a loan it changes: a read that took the loan
        // still sees it as it was (listings look at loans after releasing
        // the lock).
        for (shared, copy) in &taken {
            assert!(
                **shared == *copy,
                "entry {} changed loan {} under a reader",
                entry.body.sequence,
                copy.id
            );
        }
        for (key, value) in self.state.take_changes().unwrap() {
            match value {
                Some(value) => self.records.insert(key, value),
                None => self.records.remove(&key),
            };
        }
        assert!(
            self.records == self.state.export().unwrap(),
            "cache records drift from the state after entry {}",
            entry.body.sequence
        );
        // What each member keeps of her ended loans' borrowing is what
        // those loans changed of it, worked out from them whole.
        for member in self.state.members.values() {
            let mut ended = Vec::new();
            for loan in member.loans.iter().map(|id| &self.state.loans[id]) {
                if loan.has_ended() {
                    let changes = crate::totals::borrowing_changes(&loan.principal_changes);
                    crate::totals::add_borrowing_changes(&mut ended, &changes.unwrap(), 1).unwrap();
                }
            }
            assert_eq!(
                member.ended_borrowing, ended,
                "member {}'s ended loans' borrowing after entry {}",
                member.id, entry.body.sequence
            );
        }
        // The state that lets go, checkpointed as a server's read side is:
        // its changes taken, the records grown since they were let go of
        // read back outside the lock, saved into its records, and then
        // what those hold let go of. Every other checkpoint is still
        // reading back and saving when the next entry applies (the
        // publisher does not wait for the persister), and completes after
        // it.
        self.cold
            .apply(&entry)
            .unwrap_or_else(|e| panic!("an executed entry does not apply after a let-go: {e}"));
        self.finish_saving();
        self.saving = Some(self.cold.take_changes_to_save());
        if entry.body.sequence % 2 != 0 {
            self.finish_saving();
            assert!(
                *self.kept.0.lock().expect("not poisoned") == self.records,
                "the records of the state that lets go differ after entry {}",
                entry.body.sequence
            );
        }
        if let Some(loan) = self.state.loans.get(&loan_id()) {
            let let_go = !self.cold.loans.contains_key(&loan_id());
            if self.saving.is_none() {
                assert_eq!(
                    let_go,
                    loan.has_ended(),
                    "a {:?} loan let go of after a save",
                    loan.status,
                );
            }
            let whole = self.cold.whole_loan(&loan_id()).expect("read back");
            assert!(
                whole.as_deref() == Some(&**loan),
                "the loan read back whole differs after entry {}",
                entry.body.sequence
            );
            // Its account's history: let go of whole once a checkpoint
            // saved it, running or ended (memory keeps its last step), and
            // read back, whether booked to since or not, as the state
            // holds it.
            let account = AccountId::Loan(loan_id());
            let books = self.cold.books();
            // An ended loan's account's book goes whole with the loan.
            assert_eq!(
                !books.holds(&account),
                let_go,
                "a {:?} loan's account's book after entry {}",
                loan.status,
                entry.body.sequence
            );
            if self.saving.is_none()
                && let Some(last) = books.last_record(&account)
            {
                assert!(
                    !books.holds_whole(&account, last) && books.is_let_go(&account, last),
                    "a {:?} loan's account's last record held after entry {}",
                    loan.status,
                    entry.body.sequence
                );
            }
            let (first, latest) = (opened_on(), entry.body.effective_date);
            assert_eq!(
                books.account_movements(&account, first, latest).unwrap(),
                self.state
                    .books()
                    .account_movements(&account, first, latest)
                    .unwrap(),
                "the loan's account's movements read back after entry {}",
                entry.body.sequence
            );
            for as_of in [
                AsOf::Latest,
                AsOf::Date(latest),
                AsOf::Sequence(entry.body.sequence / 2),
            ] {
                assert_eq!(
                    books.account_as_of(&account, as_of).unwrap(),
                    self.state.books().account_as_of(&account, as_of).unwrap(),
                    "the loan's account as of {as_of:?} after entry {}",
                    entry.body.sequence
                );
            }
        }
        self.entries.push(entry);
        Ok(self.entries.last().unwrap())
    }

    /// Completes the checkpoint being saved, if one is: its records grown
    /// since they were let go of read back, all saved, and the state told.
    fn finish_saving(&mut self) {
        if let Some(changes) = self.saving.take() {
            let (records, saved) = changes.complete().unwrap();
            self.save_cold(records);
            self.cold.saved_whole(&saved);
        }
    }

    /// Writes `records` into `cold`'s store.
    fn save_cold(&self, records: Vec<StateRecord>) {
        let mut kept = self.kept.0.lock().expect("not poisoned");
        for (key, value) in records {
            match value {
                Some(value) => kept.insert(key, value),
                None => kept.remove(&key),
            };
        }
    }

    /// The state after `body` on a copy, leaving the ledger as it is.
    fn try_on_copy(&self, body: CommandBody) -> Result<(LedgerState, EntryBody), ExecuteError> {
        let mut copy = self.state.clone();
        let decided = self.decide(&copy, body)?;
        let entry = decided.clone().seal(&copy.last_hash());
        copy.apply(&entry)
            .unwrap_or_else(|e| panic!("an executed entry does not apply: {e}"));
        Ok((copy, decided))
    }

    fn loan(&self) -> &Loan {
        self.state
            .held_loan(&loan_id())
            .expect("the loan was disbursed")
    }

    fn currency(&self) -> Currency {
        self.state.branch(&branch_id()).unwrap().currency
    }

    /// `amount`, naming the currency of the books or (odd units) none.
    fn money(&self, amount: Decimal) -> Money {
        let amount = amount.normalize();
        let odd = (amount.mantissa() % 2) != 0;
        Money {
            amount,
            currency: (!odd).then(|| self.currency()),
        }
    }

    /// An account's balance on its normal side, as the books hold it.
    fn balance(&self, account: &AccountId) -> Decimal {
        let balance = self.state.account_as_of(account, AsOf::Latest).unwrap();
        balance.on_normal_side(account.kind())
    }
}

/// Branch, center, group, a member with a compulsory savings account, and
/// the product.
fn setup(rules: &ProductRules) -> Ledger {
    let mut ledger = Ledger::new();
    let bodies = [
        CommandBody::CreateBranch {
            branch_id: branch_id(),
            name: name("Thái Bình"),
            time_zone: TIME_ZONE_DEFAULT.into(),
            currency: rules.currency,
            compulsory_savings_percent: Decimal::from(10),
            opened_on: Some(opened_on()),
        },
        CommandBody::CreateCenter {
            center_id: CenterId::parse("c", "C").unwrap(),
            branch_id: branch_id(),
            name: name("C"),
            opened_on: Some(opened_on()),
        },
        CommandBody::CreateGroup {
            group_id: GroupId::parse("g", "G").unwrap(),
            center_id: CenterId::parse("c", "C").unwrap(),
            name: name("G"),
            opened_on: Some(opened_on()),
        },
        CommandBody::RegisterMember {
            member_id: member_id(),
            full_name: name("Hoa"),
            group_id: GroupId::parse("g", "G").unwrap(),
            joined_on: Some(opened_on()),
        },
        CommandBody::OpenSavingsAccount {
            member_id: member_id(),
            kind: SavingsKind::Compulsory,
            opened_on: Some(opened_on()),
        },
        CommandBody::CreateProduct {
            product_id: product_id(),
            rules: rules.clone(),
            effective_from: Some(opened_on()),
        },
    ];
    for body in bodies {
        let what = body.name();
        if let Err(e) = ledger.submit(body) {
            panic!("set-up {what} refused: {e}");
        }
    }
    ledger
}

// ---- Generators ----------------------------------------------------------------

/// A product, a loan application within its limits, and a disbursement date.
#[derive(Clone, Debug)]
struct Case {
    rules: ProductRules,
    application: LoanApplication,
    disbursed_on: NaiveDate,
}

impl Case {
    fn disburse(&self) -> CommandBody {
        CommandBody::DisburseLoan {
            member_id: member_id(),
            loan: LoanSpec::Product {
                product_id: product_id(),
                application: self.application.clone(),
            },
            disbursed_on: Some(self.disbursed_on),
        }
    }
}

/// The currency and an installment multiple it allows.
fn arb_currency() -> impl Strategy<Value = (Currency, Decimal)> {
    prop_oneof![
        prop_oneof![Just(1i64), Just(100), Just(1000)]
            .prop_map(|m| (Currency::Vnd, Decimal::from(m))),
        prop_oneof![Just(Decimal::new(1, 2)), Just(Decimal::ONE)].prop_map(|m| (Currency::Usd, m)),
    ]
}

/// An amount in minor units: small ones too, so that too coarse multiples
/// and fees larger than a tranche are reached.
fn arb_units() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..=100_000, 1i64..=1_000_000_000_000]
}

fn arb_method() -> impl Strategy<
    Value = (
        InterestMethod,
        Amortization,
        InterestPeriod,
        InstallmentBasis,
    ),
> {
    (
        prop_oneof![
            Just(InterestMethod::Flat),
            Just(InterestMethod::DecliningBalance)
        ],
        prop_oneof![
            Just(Amortization::EqualInstallments),
            Just(Amortization::EqualPrincipal)
        ],
        prop_oneof![
            Just(InterestPeriod::PerPeriod),
            Just(InterestPeriod::Actual365)
        ],
        prop_oneof![
            Just(InstallmentBasis::NominalPeriodRate),
            Just(InstallmentBasis::ActualPeriodRates)
        ],
    )
}

fn arb_schedule_shape() -> impl Strategy<Value = (RepaymentFrequency, RoundingMode)> {
    (
        prop_oneof![
            Just(RepaymentFrequency::Weekly),
            Just(RepaymentFrequency::Fortnightly),
            Just(RepaymentFrequency::Monthly)
        ],
        prop_oneof![
            Just(RoundingMode::HalfEven),
            Just(RoundingMode::HalfUp),
            Just(RoundingMode::Down),
            Just(RoundingMode::Up)
        ],
    )
}

/// A fee: percent or fixed (`value` is hundredths of a percent, or tenths
/// of a per mille of the smallest principal), collected at disbursement or
/// with the first installment.
#[derive(Clone, Copy, Debug)]
struct FeeSeed {
    percent: bool,
    value: u32,
    at_disbursement: bool,
}

fn arb_fee_seed() -> impl Strategy<Value = FeeSeed> {
    (any::<bool>(), 0u32..=10_000, any::<bool>()).prop_map(|(percent, value, at_disbursement)| {
        FeeSeed {
            percent,
            value,
            at_disbursement,
        }
    })
}

fn arb_compulsory() -> impl Strategy<Value = (u8, i64)> {
    (0u8..3, 0i64..=10_000)
}

fn arb_allocation_order() -> impl Strategy<Value = [AllocationPart; 4]> {
    Just(vec![
        AllocationPart::Penalties,
        AllocationPart::Fees,
        AllocationPart::Interest,
        AllocationPart::Principal,
    ])
    .prop_shuffle()
    .prop_map(|v| [v[0], v[1], v[2], v[3]])
}

prop_compose! {
    fn arb_case()(
        (currency, multiple) in arb_currency(),
        (method, amortization, interest_period, installment_basis) in arb_method(),
        (frequency, mode) in arb_schedule_shape(),
        principals in proptest::array::uniform3(arb_units()),
        first_share in prop_oneof![Just(1000u32), 1u32..=1000],
        (rate_a, rate_b, one_rate, rate_seed, give_rate) in
            (prop_oneof![Just(0i64), 0i64..=10_000], 0i64..=10_000, any::<bool>(), any::<u32>(), any::<bool>()),
        (installments_min, extra, default_seed, count_seed, give_count) in
            (prop_oneof![1u32..=24, 1u32..=120, 1u32..=520], prop_oneof![Just(0u32), 0u32..=60], any::<u32>(), any::<u32>(), any::<bool>()),
        (grace_p, grace_i) in (prop_oneof![Just(0u32), any::<u32>()], prop_oneof![Just(0u32), any::<u32>()]),
        fee_seeds in proptest::collection::vec(arb_fee_seed(), 0..=3),
        (compulsory_kind, compulsory_value) in arb_compulsory(),
        (tolerance_days, tolerance_units) in (0u32..=30, 0i64..=100_000),
        allocation_order in arb_allocation_order(),
        tranches_max in 1u32..=3,
        (give_approved, give_currency, day, first_gap) in (any::<bool>(), any::<bool>(), 0u64..=7_300, 1u64..=60),
    ) -> Case {
        let places = currency.decimal_places();
        let amount = |units: i64| Decimal::new(units, places).normalize();
        let mut principals = principals;
        principals.sort_unstable();
        let [min, approved, max] = principals.map(amount);
        let principal = if tranches_max == 1 {
            approved
        } else {
            share(approved, first_share, places).max(currency.unit())
        };
        let approved_principal = if principal != approved || give_approved {
            Some(approved)
        } else {
            None
        };
        let (rate_low, rate_high) = if one_rate {
            (rate_a, rate_a)
        } else {
            (rate_a.min(rate_b), rate_a.max(rate_b))
        };
        let rate = rate_low + i64::from(rate_seed) % (rate_high - rate_low + 1);
        let installments_max = (installments_min + extra).min(520);
        let range = installments_max - installments_min + 1;
        // Fixed fees deducted at disbursement stay below the smallest
        // principal, and percents deducted at disbursement below 30% each,
        // so that a disbursement never deducts more than it lends (see
        // `fees_deducted_beyond_the_principal_are_refused`).
        // At most one fee is collected with the first installment.
        let smallest = principal.min(min);
        let mut with_first = false;
        let fees = fee_seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| {
                let at_disbursement = seed.at_disbursement || with_first;
                with_first |= !at_disbursement;
                let value = if at_disbursement { seed.value % 3_000 } else { seed.value };
                Fee {
                    code: FeeCode::parse("fee", &format!("f{i}")).unwrap(),
                    amount: if seed.percent {
                        FeeAmount::PercentOfPrincipal(Decimal::new(i64::from(value), 2))
                    } else {
                        FeeAmount::Fixed(share(smallest, value / 10, places))
                    },
                    collection: if at_disbursement {
                        FeeCollection::AtDisbursement
                    } else {
                        FeeCollection::WithFirstInstallment
                    },
                }
            })
            .collect();
        let rules = ProductRules {
            name: Name::parse("name", "Any loan").unwrap(),
            currency,
            principal_min: min,
            principal_max: max,
            rate_min: Decimal::new(rate_low, 2),
            rate_max: Decimal::new(rate_high, 2),
            interest_method: method,
            amortization,
            interest_period,
            installment_basis,
            frequency,
            installments_min,
            installments_max,
            installments_default: installments_min + default_seed % range,
            rounding: InstallmentRounding { multiple, mode },
            rounding_decimal_places: None,
            grace_on_principal: grace_p % installments_min,
            grace_on_interest: grace_i % installments_min,
            compulsory_savings: match compulsory_kind {
                0 => CompulsorySavings::None,
                1 => CompulsorySavings::PercentOfPrincipal(Decimal::new(compulsory_value, 2)),
                _ => CompulsorySavings::FixedPerInstallment(amount(compulsory_value)),
            },
            arrears_tolerance: ArrearsTolerance {
                days: tolerance_days,
                amount: amount(tolerance_units),
            },
            allocation_order,
            fees,
            tranches_max,
        };
        let disbursed_on = date(2001, 1, 1) + Days::new(day);
        let application = LoanApplication {
            principal,
            currency: give_currency.then_some(currency),
            approved_principal,
            annual_interest_rate_percent: (!one_rate || give_rate).then(|| Decimal::new(rate, 2)),
            installment_count: give_count.then(|| installments_min + count_seed % range),
            first_repayment_date: disbursed_on + Days::new(first_gap),
        };
        Case { rules, application, disbursed_on }
    }
}

// ---- Checks --------------------------------------------------------------------

/// A fee on `principal`, computed here from the product's definition.
fn expected_fee(fee: &Fee, principal: Decimal, places: u32) -> Decimal {
    let exact = match fee.amount {
        FeeAmount::Fixed(amount) => amount,
        FeeAmount::PercentOfPrincipal(percent) => principal * percent / Decimal::ONE_HUNDRED,
    };
    exact
        .round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

fn is_annuity(terms: &LoanTerms) -> bool {
    terms.interest_method == InterestMethod::DecliningBalance
        && terms.amortization == Amortization::EqualInstallments
        && !terms.annual_interest_rate_percent.is_zero()
}

fn is_multiple_of(x: Decimal, m: Decimal) -> bool {
    (x % m).is_zero()
}

/// A new loan's schedule and fees, as `domain::schedule`'s own properties state them.
fn check_schedule(
    rules: &ProductRules,
    terms: &LoanTerms,
    schedule: &[Installment],
    fees: &[FeeCharge],
) -> Result<(), TestCaseError> {
    let places = rules.currency.decimal_places();
    let m = terms.rounding.multiple;
    let n = schedule.len();
    let g = terms.grace_on_principal as usize;
    let h = terms.grace_on_interest as usize;
    prop_assert_eq!(n, terms.installment_count as usize);
    let principal: Decimal = schedule.iter().map(|i| i.principal).sum();
    prop_assert_eq!(
        principal,
        terms.principal,
        "principal parts do not sum to the principal"
    );
    let mut balance = terms.principal;
    for (k, inst) in schedule.iter().enumerate() {
        prop_assert_eq!(inst.number, k as u32 + 1);
        prop_assert!(
            inst.principal >= Decimal::ZERO,
            "principal {}",
            inst.principal
        );
        prop_assert!(inst.interest >= Decimal::ZERO, "interest {}", inst.interest);
        prop_assert!(inst.fee >= Decimal::ZERO, "fee {}", inst.fee);
        for x in [inst.principal, inst.interest, inst.fee] {
            prop_assert!(
                places_ok(x, places),
                "{} has more than {} decimals",
                x,
                places
            );
        }
        balance -= inst.principal;
        prop_assert!(
            balance >= Decimal::ZERO,
            "balance {} after {}",
            balance,
            k + 1
        );
        if k < g {
            prop_assert!(inst.principal.is_zero(), "principal in grace {}", k + 1);
        }
        if k < h {
            prop_assert!(inst.interest.is_zero(), "interest in grace {}", k + 1);
        }
        if k > 0 {
            prop_assert!(inst.fee.is_zero(), "fee on installment {}", k + 1);
        }
    }
    // Non-last installments: an annuity's after both grace windows are whole
    // multiples (fees aside); otherwise every principal part is.
    let first_regular = if h > 0 { g.max(h + 1) } else { g };
    for (k, inst) in schedule[..n - 1].iter().enumerate() {
        if is_annuity(terms) {
            if k >= first_regular {
                let total = inst.principal + inst.interest;
                prop_assert!(
                    is_multiple_of(total, m),
                    "installment {} total {}",
                    k + 1,
                    total
                );
            }
        } else {
            prop_assert!(
                is_multiple_of(inst.principal, m),
                "installment {} principal {}",
                k + 1,
                inst.principal
            );
        }
    }
    for pair in schedule.windows(2) {
        prop_assert!(pair[0].due_date < pair[1].due_date);
    }
    prop_assert_eq!(schedule[0].due_date, terms.first_repayment_date);
    // Fees: each the product's, zero ones left out; those with the first
    // installment are on it.
    let expected: Vec<(FeeCode, Decimal, FeeCollection)> = rules
        .fees
        .iter()
        .map(|f| {
            (
                f.code.clone(),
                expected_fee(f, terms.principal, places),
                f.collection,
            )
        })
        .filter(|(_, amount, _)| !amount.is_zero())
        .collect();
    let charged: Vec<(FeeCode, Decimal, FeeCollection)> = fees
        .iter()
        .map(|c| (c.code.clone(), c.amount, c.collection))
        .collect();
    prop_assert_eq!(charged, expected);
    prop_assert_eq!(
        schedule[0].fee,
        charged_in(fees, FeeCollection::WithFirstInstallment)
    );
    Ok(())
}

fn charged_in(fees: &[FeeCharge], collection: FeeCollection) -> Decimal {
    fees.iter()
        .filter(|c| c.collection == collection)
        .map(|c| c.amount)
        .sum()
}

/// Every posting of `body` is positive with at most `places` decimals, and
/// the entry balances.
fn check_postings(body: &EntryBody, places: u32) -> Result<(), TestCaseError> {
    prop_assert_eq!(body.currency.decimal_places(), places);
    prop_assert!(
        body.is_balanced(),
        "entry {} does not balance",
        body.sequence
    );
    for posting in &body.postings {
        prop_assert!(posting.amount > Decimal::ZERO);
        prop_assert!(places_ok(posting.amount, places), "posting {:?}", posting);
    }
    Ok(())
}

/// Debits less credits of `account` in `body`.
fn net_debit(body: &EntryBody, account: &AccountId) -> Decimal {
    body.postings
        .iter()
        .filter(|p| p.account == *account)
        .map(|p| match p.side {
            Side::Debit => p.amount,
            Side::Credit => -p.amount,
        })
        .sum()
}

/// Validates the product, previews the loan and disburses it: both agree and
/// the schedule and entry are right. `None` when the multiple is too coarse
/// for the loan (both refuse it alike) or for every loan of the product.
fn check_disbursement(case: &Case) -> Result<Option<Ledger>, TestCaseError> {
    let rules = &case.rules;
    let currency = rules.currency;
    let places = currency.decimal_places();
    if let Err(refused) = rules.validate() {
        prop_assert!(is_too_coarse(&refused), "product refused: {:?}", refused);
        return Ok(None);
    }
    let terms = rules.terms_for(&case.application, case.disbursed_on);
    prop_assert!(terms.is_ok(), "terms refused: {:?}", terms);
    let terms = terms.unwrap();
    let preview = initial_schedule(&terms, &rules.fees, currency, "");
    let mut ledger = setup(rules);
    let disbursed = ledger.submit(case.disburse()).map(|e| e.body.clone());
    let (schedule, fees, body) = match (preview, disbursed) {
        (Err(previewed), Err(ExecuteError::Refused(refused))) => {
            prop_assert!(
                is_too_coarse(&previewed),
                "preview refused: {:?}",
                previewed
            );
            // The same refusal; the disbursement names it under `application`.
            prop_assert_eq!(previewed.within("application"), refused);
            return Ok(None);
        }
        (Ok((schedule, fees)), Ok(body)) => (schedule, fees, body),
        (preview, disbursed) => {
            return Err(TestCaseError::fail(format!(
                "preview {preview:?} but disbursement {disbursed:?}"
            )));
        }
    };
    let Outcome::LoanDisbursed {
        loan,
        product,
        terms: recorded_terms,
        policy,
        approved_principal,
        currency: recorded_currency,
        fees: recorded_fees,
        schedule: recorded_schedule,
    } = &body.outcome
    else {
        return Err(TestCaseError::fail(format!("outcome {:?}", body.outcome)));
    };
    // Preview and disbursement agree.
    prop_assert_eq!(loan, &loan_id());
    prop_assert_eq!(product, &Some((product_id(), 1)));
    prop_assert_eq!(recorded_terms, &terms);
    prop_assert_eq!(recorded_schedule, &schedule);
    prop_assert_eq!(recorded_fees, &fees);
    prop_assert_eq!(policy, &LoanPolicy::of(rules));
    prop_assert_eq!(*recorded_currency, currency);
    prop_assert_eq!(
        *approved_principal,
        case.application
            .approved_principal
            .unwrap_or(case.application.principal)
    );
    check_schedule(rules, &terms, &schedule, &fees)?;
    // The entry: the loan debited with the principal, cash credited with
    // the principal less the fees deducted, each fee to its income account.
    check_postings(&body, places)?;
    let principal = terms.principal;
    let deducted = charged_in(&fees, FeeCollection::AtDisbursement);
    let branch = branch_id();
    prop_assert_eq!(net_debit(&body, &AccountId::Loan(loan_id())), principal);
    prop_assert_eq!(
        -net_debit(&body, &AccountId::Cash(branch.clone())),
        principal - deducted
    );
    for fee in fees
        .iter()
        .filter(|f| f.collection == FeeCollection::AtDisbursement)
    {
        let account = AccountId::FeeIncome(branch.clone(), fee.code.clone());
        prop_assert_eq!(-net_debit(&body, &account), fee.amount);
    }
    prop_assert_eq!(
        body.postings.len(),
        1 + usize::from(principal != deducted)
            + fees
                .iter()
                .filter(|f| f.collection == FeeCollection::AtDisbursement)
                .count()
    );
    // The loan as applied.
    let state = ledger.loan();
    prop_assert_eq!(state.principal_unpaid, principal);
    prop_assert_eq!(
        state.interest_unpaid,
        schedule.iter().map(|i| i.interest).sum::<Decimal>()
    );
    prop_assert_eq!(
        state.fee_unpaid,
        charged_in(&fees, FeeCollection::WithFirstInstallment)
    );
    prop_assert_eq!(ledger.balance(&AccountId::Loan(loan_id())), principal);
    check_loan(&ledger)?;
    Ok(Some(ledger))
}

/// Dates to look at arrears on: around the disbursement, every due date (or
/// a sample of them) and the day after, and the last transaction's.
fn arrears_dates(loan: &Loan) -> Vec<NaiveDate> {
    let stride = loan.installments.len().div_ceil(40).max(1);
    let mut dates = vec![
        loan.disbursed_on,
        loan.disbursed_on + Days::new(1),
        loan.last_repayment_on,
        loan.last_repayment_on + Days::new(1),
    ];
    for (k, installment) in loan.installments.iter().enumerate() {
        if k % stride == 0 || k + 1 == loan.installments.len() {
            dates.push(installment.due.due_date);
            dates.push(installment.due.due_date + Days::new(1));
        }
    }
    dates
}

/// The invariants of the loan and the books, after any step.
fn check_loan(ledger: &Ledger) -> Result<(), TestCaseError> {
    let loan = ledger.loan();
    let places = loan.currency.decimal_places();
    let loan_account = AccountId::Loan(loan_id());
    let in_books = ledger.balance(&loan_account);
    // The loan account holds the principal outstanding.
    prop_assert_eq!(
        in_books,
        loan.principal_outstanding(),
        "loan account vs principal"
    );
    prop_assert_eq!(
        loan.principal_on(NaiveDate::MAX).unwrap(),
        in_books,
        "principal changes"
    );
    match loan.status {
        LoanStatus::WrittenOff | LoanStatus::Cancelled => prop_assert!(in_books.is_zero()),
        LoanStatus::Active | LoanStatus::Closed => {
            prop_assert_eq!(in_books, loan.principal_unpaid)
        }
    }
    if loan.status == LoanStatus::Closed {
        prop_assert!(loan.installments.iter().all(|i| i.is_paid()));
    }
    // An active loan keeps its cumulative dues, and they add up to its
    // schedule as it is now (a recast drops them until they are kept again).
    if loan.status == LoanStatus::Active {
        let mut fresh = Installments::from(loan.installments.iter().collect::<Vec<_>>());
        fresh.keep_cumulative_dues(true);
        prop_assert_eq!(loan.installments.cumulative_dues(), fresh.cumulative_dues());
    }
    // The books balance.
    let (debits, credits) = ledger
        .state
        .balances
        .values()
        .fold((Decimal::ZERO, Decimal::ZERO), |(d, c), b| {
            (d + b.debits, c + b.credits)
        });
    prop_assert_eq!(debits, credits, "the books do not balance");
    // The running totals equal the installments; nothing paid outside 0..=due.
    let sum = |f: fn(&InstallmentState) -> Decimal| {
        loan.installments.iter().map(|i| f(&i)).sum::<Decimal>()
    };
    prop_assert_eq!(
        loan.principal_unpaid,
        sum(InstallmentState::principal_unpaid)
    );
    prop_assert_eq!(loan.interest_unpaid, sum(InstallmentState::interest_unpaid));
    prop_assert_eq!(loan.fee_unpaid, sum(InstallmentState::fee_unpaid));
    let first = loan
        .installments
        .iter()
        .position(|i| !i.is_paid())
        .unwrap_or(loan.installments.len());
    // All before `first_unpaid` are paid; it may lag behind installments
    // with nothing due (see `first_unpaid_skips_installments_with_nothing_due`).
    prop_assert!(
        loan.first_unpaid as usize <= first,
        "first_unpaid {} after {}",
        loan.first_unpaid,
        first
    );
    prop_assert!(loan.interest_unpaid >= Decimal::ZERO && loan.fee_unpaid >= Decimal::ZERO);
    for i in loan.installments.iter() {
        for (paid, due) in [
            (i.principal_paid, i.due.principal),
            (i.interest_paid, i.due.interest),
            (i.fee_paid, i.due.fee),
        ] {
            prop_assert!(
                Decimal::ZERO <= paid && paid <= due,
                "installment {} paid {} of {}",
                i.due.number,
                paid,
                due
            );
            prop_assert!(places_ok(due, places) && places_ok(paid, places));
        }
    }
    // Principal parts sum to what was lent less what was paid ahead.
    prop_assert_eq!(
        loan.installments
            .iter()
            .map(|i| i.due.principal)
            .sum::<Decimal>(),
        loan.disbursed - loan.principal_prepaid,
        "principal parts vs disbursed less prepaid"
    );
    prop_assert!(loan.disbursed <= loan.approved_principal);
    prop_assert_eq!(
        loan.paid_on(NaiveDate::MAX).unwrap(),
        loan.installments
            .iter()
            .map(|i| i.principal_paid + i.interest_paid + i.fee_paid)
            .sum::<Decimal>(),
        "paid changes vs installments"
    );
    // Arrears are never negative.
    for day in arrears_dates(loan) {
        let arrears = loan.arrears_on(day).unwrap();
        // The quick paths of `overdue_on` give what splitting every
        // installment by parts gives, to the representation.
        let quick = loan.overdue_on(day).unwrap();
        let split = overdue_split_by_parts(loan, day);
        prop_assert_eq!(
            format!("{quick:?}"),
            format!("{split:?}"),
            "overdue on {}",
            day
        );
        // With principal outstanding, the arrears listing lists the loan
        // exactly when portfolio quality counts it in arrears. (Without,
        // the listing still shows overdue interest or fees for follow-up;
        // portfolio quality counts only loans with principal outstanding.)
        if loan.principal_on(day).unwrap() > Decimal::ZERO {
            prop_assert_eq!(
                arrears.in_arrears,
                quick.in_arrears,
                "listed vs counted in arrears on {} ({:?}, ended {:?})",
                day,
                loan.status,
                loan.ended_on
            );
        }
        // The listing's cheap test never skips a loan in arrears.
        if arrears.in_arrears {
            prop_assert!(
                loan.may_be_in_arrears_on(day).unwrap(),
                "in arrears on {} but the quick test says it cannot be: {:?}",
                day,
                arrears
            );
        }
        for x in [
            arrears.principal_overdue,
            arrears.interest_overdue,
            arrears.fees_overdue,
            arrears.principal_outstanding,
        ] {
            prop_assert!(x >= Decimal::ZERO, "arrears on {}: {:?}", day, arrears);
        }
        // Not after a reversal dated later than its entry: the schedule as
        // it was comes back for dates when the entry stood (see
        // `arrears_after_a_later_dated_reversal_of_a_payoff`).
        if !ledger.late_reversal {
            prop_assert!(
                arrears.principal_overdue <= arrears.principal_outstanding,
                "overdue principal beyond outstanding on {}: {:?}",
                day,
                arrears
            );
        }
    }
    check_payoff(ledger)?;
    check_replay(ledger)
}

/// What is overdue at the end of `date`, every installment split by parts
/// in the allocation order: the reference [`Loan::overdue_on`] is checked
/// against (its quick paths skip the split where it cannot matter).
fn overdue_split_by_parts(loan: &Loan, date: NaiveDate) -> Arrears {
    use crate::product::AllocationPart;
    let mut arrears = Arrears {
        principal_outstanding: loan.principal_on(date).unwrap(),
        ..Arrears::default()
    };
    let mut paid = loan.paid_on(date).unwrap();
    let mut oldest = None;
    for installment in loan.installments.iter() {
        if installment.due.due_date >= date {
            break;
        }
        let mut owed = [
            (AllocationPart::Fees, installment.due.fee),
            (AllocationPart::Interest, installment.due.interest),
            (AllocationPart::Principal, installment.due.principal),
        ];
        owed.sort_by_key(|(part, _)| loan.policy.allocation_order.iter().position(|p| p == part));
        for (part, amount) in owed {
            let covered = amount.min(paid);
            paid = (paid - covered).normalize();
            let unpaid = (amount - covered).normalize();
            if unpaid.is_zero() {
                continue;
            }
            oldest.get_or_insert(installment.due.due_date);
            let overdue = match part {
                AllocationPart::Fees => &mut arrears.fees_overdue,
                AllocationPart::Interest => &mut arrears.interest_overdue,
                _ => &mut arrears.principal_overdue,
            };
            *overdue = (*overdue + unpaid).normalize();
        }
    }
    if let Some(oldest) = oldest {
        arrears.days_overdue = u32::try_from((date - oldest).num_days()).unwrap();
        let tolerance = loan.policy.arrears_tolerance;
        arrears.in_arrears =
            arrears.days_overdue > tolerance.days && arrears.overdue().unwrap() > tolerance.amount;
    }
    arrears
}

/// On a few dates from the last transaction on, the payoff quote is not
/// negative, paying it closes the loan and paying more is refused.
fn check_payoff(ledger: &Ledger) -> Result<(), TestCaseError> {
    let loan = ledger.loan();
    let unit = loan.currency.unit();
    let last_due = loan.installments.last().map(|i| i.due.due_date).unwrap();
    let base = loan.last_repayment_on;
    for day in [
        base,
        base + Days::new(10),
        last_due.max(base) + Days::new(3),
    ] {
        let quote = loan.payoff_quote(day);
        prop_assert!(quote.is_ok(), "payoff quote on {}: {:?}", day, quote);
        let quote = quote.unwrap();
        for x in [
            quote.due_principal,
            quote.due_interest,
            quote.due_fees,
            quote.accrued_interest,
            quote.principal_not_due,
            quote.fees_not_due,
        ] {
            prop_assert!(x >= Decimal::ZERO, "quote on {}: {:?}", day, quote);
        }
        let total = quote.total();
        if loan.status != LoanStatus::Active {
            prop_assert!(total.is_zero());
            continue;
        }
        prop_assert!(
            total > Decimal::ZERO,
            "an active loan quotes nothing on {}",
            day
        );
        prop_assert_eq!(quote.principal(), loan.principal_unpaid);
        let pay = |amount: Decimal| CommandBody::RecordRepayment {
            loan_id: loan_id(),
            amount: ledger.money(amount),
            effective_date: Some(day),
        };
        let paid = ledger.try_on_copy(pay(total));
        prop_assert!(
            paid.is_ok(),
            "paying the payoff quote {} on {} is refused: {:?}",
            total,
            day,
            paid.err()
        );
        let (after, body) = paid.unwrap();
        let closed = after.held_loan(&loan_id()).unwrap();
        prop_assert_eq!(
            closed.status,
            LoanStatus::Closed,
            "payoff on {} leaves the loan open",
            day
        );
        prop_assert!(closed.installments.iter().all(|i| i.is_paid()));
        prop_assert!(closed.principal_unpaid.is_zero());
        prop_assert!(
            after
                .account_as_of(&AccountId::Loan(loan_id()), AsOf::Latest)
                .unwrap()
                .on_normal_side(AccountKind::Asset)
                .is_zero()
        );
        check_postings(&body, loan.currency.decimal_places())?;
        prop_assert_eq!(net_debit(&body, &AccountId::Cash(branch_id())), total);
        prop_assert!(
            ledger.try_on_copy(pay(total + unit)).is_err(),
            "paying more than the payoff quote on {} is accepted",
            day
        );
    }
    Ok(())
}

/// A replay of the journal gives the same state; an import of the cache
/// records gives the same export.
fn check_replay(ledger: &Ledger) -> Result<(), TestCaseError> {
    let mut replayed = LedgerState::new();
    for entry in &ledger.entries {
        if let Err(e) = replayed.apply(entry) {
            return Err(TestCaseError::fail(format!("replay: {e}")));
        }
    }
    replayed.clear_changes();
    prop_assert!(
        replayed.export().unwrap() == ledger.state.export().unwrap(),
        "replay exports differ"
    );
    prop_assert!(replayed == ledger.state, "replayed state differs");
    let imported = LedgerState::import(
        ledger
            .records
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice())),
    );
    prop_assert!(imported.is_ok());
    prop_assert!(
        imported.unwrap().export().unwrap() == ledger.state.export().unwrap(),
        "import differs"
    );
    // Read back as a server starts: the records read when asked left in
    // the store, a closed loan's installments among them.
    let started = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    prop_assert!(
        started.export().unwrap() == ledger.state.export().unwrap(),
        "a start's import differs"
    );
    let Some(loan) = ledger.state.held_loan(&loan_id()) else {
        return Ok(());
    };
    prop_assert_eq!(!started.loans.contains_key(&loan_id()), loan.has_ended());
    // What a reader asks of the loan is answered the same, on any day of
    // its life, before and after it.
    let now = context().recorded_at;
    let last_due = started
        .whole_loan(&loan_id())
        .unwrap()
        .unwrap()
        .installments
        .last()
        .map_or(loan.disbursed_on, |i| i.due.due_date);
    for day in [
        loan.disbursed_on,
        loan.disbursed_on + Days::new(45),
        last_due,
        last_due + Days::new(400),
    ] {
        prop_assert_eq!(
            started
                .loan_view(&loan_id(), Some(day), now)
                .map_err(|e| e.to_string()),
            ledger
                .state
                .loan_view(&loan_id(), Some(day), now)
                .map_err(|e| e.to_string())
        );
        let arrears = |state: &LedgerState| {
            state
                .loans_in_arrears(None, day)
                .map(|loans| {
                    loans
                        .into_iter()
                        .map(|(loan, arrears)| (loan.id.clone(), arrears))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        };
        prop_assert_eq!(arrears(&started), arrears(&ledger.state));
        let year = date(chrono::Datelike::year(&day), 1, 1);
        prop_assert_eq!(
            started
                .portfolio_quality_scan(None, day, year, day)
                .map_err(|e| e.to_string()),
            ledger
                .state
                .portfolio_quality_scan(None, day, year, day)
                .map_err(|e| e.to_string())
        );
    }
    let lookup = |sequence: u64| {
        ledger
            .entries
            .get((sequence as usize).wrapping_sub(1))
            .map(|e| e.body.clone())
            .ok_or_else(|| format!("no entry {sequence}"))
    };
    for sequence in loan.history.iter() {
        prop_assert_eq!(
            started
                .loan_view_at(&loan_id(), sequence, None, &mut lookup.clone())
                .map_err(|e| e.to_string()),
            ledger
                .state
                .loan_view_at(&loan_id(), sequence, None, &mut lookup.clone())
                .map_err(|e| e.to_string())
        );
    }
    Ok(())
}

/// The state `records` make up read back as a server starts: the records
/// read when asked left in `store`, and read from there.
fn started_from(
    records: &BTreeMap<Vec<u8>, Vec<u8>>,
    store: Arc<dyn crate::stored::StoredRecords>,
) -> LedgerState {
    let mut started = read_as_started(records).unwrap();
    started.keep_stored_in(store);
    started
}

/// Asserts that `refused` is a refusal as unavailable that says to ask
/// again (a store that could not be read just now).
fn assert_ask_again<T: std::fmt::Debug, E: Into<ExecuteError>>(refused: Result<T, E>) {
    let refused = refused.map_err(Into::into);
    assert!(
        matches!(
            &refused,
            Err(ExecuteError::Refused(DomainError::Unavailable { message }))
                if message.contains("ask again")
        ),
        "{refused:?}"
    );
}

/// The state `records` make up read as a server's startup reads them: of
/// the records read when asked, only those it lists, by their keys alone.
pub(super) fn read_as_started(records: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<LedgerState, String> {
    let mut startup = StateImport::at_startup();
    for (key, value) in records {
        if crate::stored::is_stored_key(key) {
            if key.starts_with(crate::stored::LISTED_AT_STARTUP) {
                startup.add_stored(key)?;
            }
        } else {
            startup.add(key, value)?;
        }
    }
    startup.finish()
}

/// The refusal the rules call for: a payment beyond what is due but short
/// of the payoff during a grace period (a recast would move principal or
/// interest into the grace; deferred interest is owed with the installment
/// after the grace, or on payoff).
fn is_grace_refusal(loan: &Loan, e: &ExecuteError) -> bool {
    (loan.terms.grace_on_interest > 0 || loan.terms.grace_on_principal > 0)
        && matches!(e, ExecuteError::Refused(DomainError::Precondition { field, message })
            if field == "amount" && message.contains("grace period"))
}

// ---- Loan transactions -----------------------------------------------------------

/// When a transaction is dated, from the loan's last transaction.
#[derive(Clone, Copy, Debug)]
enum When {
    /// The same day as the last transaction.
    Same,
    /// The due date of the first installment due on or after the last
    /// transaction, or of one `skip` later.
    Due { skip: u8 },
    /// Some days later (usually between due dates).
    Later { days: u16 },
    /// After the last due date.
    BeyondLast { days: u16 },
}

/// How much a payment is, from the payoff quote on its date.
#[derive(Clone, Copy, Debug)]
enum Amount {
    /// The whole quote: closes the loan.
    Payoff,
    /// What is due on the date (or one unit when nothing is).
    Due,
    /// What is due plus a share of the rest: a prepayment.
    DuePlus { per_mille: u32 },
    /// A share of the quote.
    Share { per_mille: u32 },
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Pay {
        when: When,
        amount: Amount,
    },
    Tranche {
        when: When,
        per_mille: u32,
    },
    WriteOff {
        when: When,
    },
    Recover {
        when: When,
        per_mille: u32,
    },
    /// Reverse the loan's latest transaction, on its date or on a later one;
    /// the disbursement only if `cancel`.
    Reverse {
        later: Option<When>,
        cancel: bool,
    },
}

fn arb_when() -> impl Strategy<Value = When> {
    prop_oneof![
        1 => Just(When::Same),
        4 => (0u8..3).prop_map(|skip| When::Due { skip }),
        4 => (1u16..=45).prop_map(|days| When::Later { days }),
        1 => (0u16..=90).prop_map(|days| When::BeyondLast { days }),
    ]
}

fn arb_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        1 => Just(Amount::Payoff),
        3 => Just(Amount::Due),
        2 => (1u32..=1000).prop_map(|per_mille| Amount::DuePlus { per_mille }),
        3 => (1u32..=1000).prop_map(|per_mille| Amount::Share { per_mille }),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (arb_when(), arb_amount()).prop_map(|(when, amount)| Op::Pay { when, amount }),
        3 => (arb_when(), 1u32..=1000).prop_map(|(when, per_mille)| Op::Tranche { when, per_mille }),
        1 => arb_when().prop_map(|when| Op::WriteOff { when }),
        1 => (arb_when(), 1u32..=1000).prop_map(|(when, per_mille)| Op::Recover { when, per_mille }),
        4 => (proptest::option::weighted(0.3, arb_when()), proptest::bool::weighted(0.1))
            .prop_map(|(later, cancel)| Op::Reverse { later, cancel }),
    ]
}

fn resolve_date(loan: &Loan, when: When) -> NaiveDate {
    let base = loan.last_repayment_on;
    let last_due = loan.installments.last().unwrap().due.due_date;
    match when {
        When::Same => base,
        When::Due { skip } => {
            let dues: Vec<NaiveDate> = loan
                .installments
                .iter()
                .map(|i| i.due.due_date)
                .filter(|d| *d >= base)
                .collect();
            dues.get(usize::from(skip))
                .or(dues.last())
                .copied()
                .unwrap_or(base)
        }
        When::Later { days } => base + Days::new(u64::from(days)),
        When::BeyondLast { days } => last_due.max(base) + Days::new(u64::from(days)),
    }
}

fn resolve_amount(quote: &PayoffQuote, amount: Amount, places: u32) -> Decimal {
    let total = quote.total();
    let due = quote.due_principal + quote.due_interest + quote.due_fees;
    let unit = Decimal::new(1, places);
    let amount = match amount {
        Amount::Payoff => total,
        Amount::Due => due.max(unit),
        Amount::DuePlus { per_mille } => due + share(total - due, per_mille, places).max(unit),
        Amount::Share { per_mille } => share(total, per_mille, places).max(unit),
    };
    amount.min(total)
}

/// Takes one step on the loan; refusals are checked to be the expected ones.
fn take(ledger: &mut Ledger, op: Op) -> Result<(), TestCaseError> {
    let loan = ledger.loan().clone();
    let places = loan.currency.decimal_places();
    match op {
        Op::Pay { when, amount } => {
            let day = resolve_date(&loan, when);
            let quote = loan.payoff_quote(day).unwrap();
            let amount = match loan.status {
                LoanStatus::Active => resolve_amount(&quote, amount, places),
                LoanStatus::WrittenOff => {
                    return take(
                        ledger,
                        Op::Recover {
                            when,
                            per_mille: 1000,
                        },
                    );
                }
                // Mostly: the closing payment was a mistake.
                LoanStatus::Closed if !matches!(amount, Amount::Payoff) => {
                    let later = matches!(amount, Amount::Share { .. }).then_some(when);
                    return take(
                        ledger,
                        Op::Reverse {
                            later,
                            cancel: false,
                        },
                    );
                }
                // Anything: it must be refused.
                _ => loan.currency.unit(),
            };
            if amount.is_zero() {
                return Ok(());
            }
            let body = CommandBody::RecordRepayment {
                loan_id: loan_id(),
                amount: ledger.money(amount),
                effective_date: Some(day),
            };
            let result = ledger.submit(body).map(|e| e.body.clone());
            if loan.status != LoanStatus::Active {
                prop_assert!(
                    result.is_err(),
                    "a payment on a {:?} loan is accepted",
                    loan.status
                );
                return Ok(());
            }
            let body = match result {
                Ok(body) => body,
                Err(e) if is_grace_refusal(&loan, &e) && amount < quote.total() => return Ok(()),
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "paying {amount} of the quote {} on {day} is refused: {e}",
                        quote.total()
                    )));
                }
            };
            check_postings(&body, places)?;
            let Outcome::RepaymentAllocated(repayment) = &body.outcome else {
                return Err(TestCaseError::fail("not a repayment"));
            };
            prop_assert_eq!(repayment.closed, amount == quote.total());
            prop_assert_eq!(
                repayment.principal().unwrap()
                    + repayment.interest().unwrap()
                    + repayment.fees().unwrap(),
                amount
            );
            prop_assert_eq!(
                repayment.principal_outstanding_after,
                ledger.loan().principal_unpaid
            );
        }
        Op::Tranche { when, per_mille } => {
            let day = resolve_date(&loan, when);
            let room = loan.approved_principal - loan.disbursed;
            let amount = share(room, per_mille, places).max(loan.currency.unit());
            let deducted: Decimal = loan
                .policy
                .fees
                .iter()
                .filter(|f| f.collection == FeeCollection::AtDisbursement)
                .map(|f| expected_fee(f, amount, places))
                .sum();
            // Refused: fees that leave nothing to pay out, and a tranche in
            // a period whose interest the grace defers.
            let grace = loan
                .terms
                .grace_on_interest
                .max(loan.terms.grace_on_principal);
            let in_grace = loan
                .current_period(day)
                .is_some_and(|c| loan.installments.at(c).due.number <= grace);
            let allowed = loan.status == LoanStatus::Active
                && loan.tranches < loan.policy.tranches_max
                && amount <= room
                && deducted < amount
                && !in_grace
                && loan.current_period(day).is_some();
            let body = CommandBody::DisburseTranche {
                loan_id: loan_id(),
                amount: ledger.money(amount),
                disbursed_on: Some(day),
            };
            let result = ledger.submit(body).map(|e| e.body.clone());
            match result {
                Ok(body) => {
                    prop_assert!(allowed, "a tranche is accepted on a loan that allows none");
                    check_postings(&body, places)?;
                    prop_assert_eq!(net_debit(&body, &AccountId::Loan(loan_id())), amount);
                    prop_assert_eq!(
                        -net_debit(&body, &AccountId::Cash(branch_id())),
                        amount - deducted
                    );
                }
                Err(e) => prop_assert!(!allowed, "tranche of {} on {} refused: {}", amount, day, e),
            }
        }
        Op::WriteOff { when } => {
            let day = resolve_date(&loan, when);
            let allowed =
                loan.status == LoanStatus::Active && !loan.principal_outstanding().is_zero();
            let result = ledger.submit(CommandBody::WriteOffLoan {
                loan_id: loan_id(),
                reason: name("gone"),
                effective_date: Some(day),
            });
            match result {
                Ok(_) => {
                    prop_assert!(allowed, "write-off of a {:?} loan accepted", loan.status);
                    let after = ledger.loan();
                    prop_assert_eq!(after.status, LoanStatus::WrittenOff);
                    prop_assert_eq!(after.written_off, loan.principal_unpaid);
                }
                Err(e) => prop_assert!(!allowed, "write-off on {} refused: {}", day, e),
            }
        }
        Op::Recover { when, per_mille } => {
            let day = resolve_date(&loan, when);
            let left = loan.written_off - loan.recovered;
            let amount = share(left, per_mille, places).max(loan.currency.unit());
            if loan.status == LoanStatus::Active {
                return Ok(());
            }
            let allowed = loan.status == LoanStatus::WrittenOff && amount <= left;
            let result = ledger.submit(CommandBody::RecordRepayment {
                loan_id: loan_id(),
                amount: ledger.money(amount),
                effective_date: Some(day),
            });
            match result {
                Ok(_) => {
                    prop_assert!(
                        allowed,
                        "a recovery on a {:?} loan is accepted",
                        loan.status
                    );
                    prop_assert_eq!(ledger.loan().recovered, loan.recovered + amount);
                }
                Err(e) => {
                    prop_assert!(!allowed, "recovery of {} on {} refused: {}", amount, day, e)
                }
            }
        }
        Op::Reverse { later, cancel } => {
            let Some(sequence) = loan.events.last() else {
                return Ok(());
            };
            if loan.events.len() == 1 && !cancel {
                return Ok(());
            }
            let original = ledger.entries[sequence as usize - 1].body.effective_date;
            let effective_date = later.map(|when| resolve_date(&loan, when));
            // Only a disbursement (cancelling the loan) may be reversed on a
            // later date; the loan's other transactions are reversed as of
            // their own dates (see `a_payoff_is_reversed_as_of_its_own_date`).
            let cancelling = !ledger.before.contains_key(&sequence);
            let result = ledger
                .submit(CommandBody::ReverseEntry {
                    sequence,
                    reason: name("mistake"),
                    effective_date,
                })
                .map(|_| ());
            if !cancelling && effective_date.is_some_and(|d| d != original) {
                prop_assert!(
                    matches!(&result, Err(ExecuteError::Refused(DomainError::Invalid { field, .. })) if field == "effective_date"),
                    "reversing entry {} on {:?}: {:?}",
                    sequence,
                    effective_date,
                    result.as_ref().err()
                );
                return Ok(());
            }
            if let Err(e) = result {
                return Err(TestCaseError::fail(format!(
                    "reversing entry {sequence}, the loan's latest, on {effective_date:?} is refused: {e}"
                )));
            }
            ledger.late_reversal |= effective_date.is_some_and(|d| d > original);
            let after = ledger.loan();
            match ledger.before.get(&sequence) {
                // The disbursement: the loan is cancelled.
                None => {
                    prop_assert_eq!(after.status, LoanStatus::Cancelled);
                    prop_assert!(after.events.is_empty());
                }
                // Anything else: the loan is as it was before the entry.
                Some(before) => prop_assert_eq!(progress(after), progress(before)),
            }
            return Ok(());
        }
    }
    if ledger.loan().events.last() != loan.events.last() {
        let sequence = ledger.state.last_sequence();
        ledger.before.insert(sequence, loan);
    }
    Ok(())
}

/// What a loan transaction changes and its reversal restores (the changes
/// by date aside, as a reversal may be dated later; and `first_unpaid`,
/// which may lag at disbursement).
#[allow(clippy::type_complexity)]
fn progress(loan: &Loan) -> (LoanStatus, &Installments, [Decimal; 8], u32, &EntryList) {
    (
        loan.status,
        &loan.installments,
        [
            loan.principal_unpaid,
            loan.interest_unpaid,
            loan.fee_unpaid,
            loan.disbursed,
            loan.principal_prepaid,
            loan.written_off,
            loan.recovered,
            loan.approved_principal,
        ],
        loan.tranches,
        &loan.events,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Part 1: any product, application and date.
    #[test]
    fn preview_and_disbursement_agree_for_any_product(case in arb_case()) {
        check_disbursement(&case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Part 2: any transactions on such a loan.
    #[test]
    fn loan_invariants_hold_for_any_transactions(
        case in arb_case(),
        ops in proptest::collection::vec(arb_op(), 1..30),
    ) {
        let Some(mut ledger) = check_disbursement(&case)? else {
            return Ok(());
        };
        for op in ops {
            take(&mut ledger, op)?;
            check_loan(&ledger)?;
        }
    }
}

/// What an entry changes of a loan's portfolio days, worked out from where
/// the loan stands before and after it (`quality_change_standing`), is the
/// difference of the two lists of its days, overflow included, from any
/// first day on which no change of either is later, with or without a
/// bound on the installments counted. Returns how many first days the
/// shortcut took.
fn check_standing_change(before: &Loan, after: &Loan) -> Result<usize, TestCaseError> {
    let paid = [
        before.paid_on_installments().unwrap(),
        after.paid_on_installments().unwrap(),
    ];
    let mut froms: Vec<NaiveDate> = [before, after]
        .iter()
        .flat_map(|loan| {
            loan.principal_changes
                .iter()
                .chain(loan.paid_changes.iter())
                .map(|(date, _)| date)
        })
        .flat_map(|date| [date - Days::new(1), date, date + Days::new(1)])
        .chain([before.disbursed_on, after.last_repayment_on + Days::new(45)])
        .collect();
    froms.sort();
    froms.dedup();
    let mut taken = 0;
    for from in froms {
        for bound in [Some(paid[0].max(paid[1])), None] {
            let standing = super::loans::quality_change_standing(before, after, from, bound, paid);
            let listed = before.quality_days_paid_below(from, bound).and_then(|was| {
                let is = after.quality_days_paid_below(from, bound)?;
                super::loans::quality_change(is, was)
            });
            match standing {
                Ok(None) => {
                    let later = [before, after].iter().any(|loan| {
                        [&loan.principal_changes, &loan.paid_changes]
                            .iter()
                            .any(|changes| {
                                changes.last_key_value().is_some_and(|(on, _)| on > from)
                            })
                    });
                    prop_assert!(later, "no shortcut from {} with no change after it", from);
                }
                Ok(Some(change)) => {
                    taken += 1;
                    prop_assert_eq!(Ok(change), listed, "from {}, bound {:?}", from, bound);
                }
                Err(overflow) => {
                    prop_assert_eq!(Err(overflow), listed, "from {}, bound {:?}", from, bound);
                }
            }
        }
    }
    Ok(taken)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Part 3: what each transaction changes of the loan's portfolio days,
    /// worked out from where it stands, is what listing its days gives.
    #[test]
    fn a_loans_change_from_where_it_stands_is_its_days_difference(
        case in arb_case(),
        ops in proptest::collection::vec(arb_op(), 1..20),
    ) {
        let Some(mut ledger) = check_disbursement(&case)? else {
            return Ok(());
        };
        for op in ops {
            let before = ledger.loan().clone();
            take(&mut ledger, op)?;
            check_standing_change(&before, ledger.loan())?;
        }
    }
}

/// The shortcut is taken for a repayment on the loan's latest day, and
/// gives what listing the days gives: a payment that leaves an installment
/// late moves the day its principal is at risk.
#[test]
fn a_repayment_on_the_latest_day_takes_the_shortcut() {
    let mut ledger = plain_loan(&plain_rules(), 1_000_000, None, 10);
    let mut taken = 0;
    for (on, amount) in [
        (date(2001, 1, 2), 50_000),
        (date(2001, 1, 9), 200_000),
        (date(2001, 1, 30), 10_000),
        (date(2001, 2, 6), 400_000),
    ] {
        let before = ledger.loan().clone();
        pay(&mut ledger, amount, on).unwrap();
        let after = ledger.loan();
        let paid = [
            before.paid_on_installments().unwrap(),
            after.paid_on_installments().unwrap(),
        ];
        let bound = Some(paid[0].max(paid[1]));
        let change = super::loans::quality_change_standing(&before, after, on, bound, paid)
            .unwrap()
            .expect("no change of the loan after the repayment's day");
        assert!(!change.is_empty(), "a repayment on {on} changes nothing");
        taken += check_standing_change(&before, after).unwrap();
    }
    assert!(taken >= 8, "the shortcut was taken {taken} times");
}

// ---- Bugs found, with their minimal inputs ----------------------------------------

/// A plain product: VND, 12% a year declining balance, equal weekly
/// installments, whole dong, no grace, no fees, one tranche.
fn plain_rules() -> ProductRules {
    ProductRules {
        name: name("Plain"),
        currency: Currency::Vnd,
        principal_min: Decimal::ONE,
        principal_max: Decimal::from(1_000_000_000),
        rate_min: Decimal::from(12),
        rate_max: Decimal::from(12),
        interest_method: InterestMethod::DecliningBalance,
        amortization: Amortization::EqualInstallments,
        interest_period: InterestPeriod::PerPeriod,
        installment_basis: InstallmentBasis::NominalPeriodRate,
        frequency: RepaymentFrequency::Weekly,
        installments_min: 1,
        installments_max: 52,
        installments_default: 4,
        rounding: InstallmentRounding {
            multiple: Decimal::ONE,
            mode: RoundingMode::HalfEven,
        },
        rounding_decimal_places: None,
        grace_on_principal: 0,
        grace_on_interest: 0,
        compulsory_savings: CompulsorySavings::None,
        arrears_tolerance: ArrearsTolerance {
            days: 0,
            amount: Decimal::ZERO,
        },
        allocation_order: crate::product::ALLOCATION_ORDER_DEFAULT,
        fees: Vec::new(),
        tranches_max: 1,
    }
}

/// A loan of `principal` VND (approved up to `approved`) in `count` weekly
/// installments, disbursed on 1 Jan 2001, the first due on 2 Jan.
fn plain_loan(rules: &ProductRules, principal: i64, approved: Option<i64>, count: u32) -> Ledger {
    let case = Case {
        rules: rules.clone(),
        application: LoanApplication {
            principal: Decimal::from(principal),
            currency: None,
            approved_principal: approved.map(Decimal::from),
            annual_interest_rate_percent: None,
            installment_count: Some(count),
            first_repayment_date: date(2001, 1, 2),
        },
        disbursed_on: date(2001, 1, 1),
    };
    let mut ledger = setup(rules);
    if let Err(e) = ledger.submit(case.disburse()) {
        panic!("disbursement refused: {e}");
    }
    ledger
}

fn pay(ledger: &mut Ledger, amount: i64, on: NaiveDate) -> Result<EntryBody, ExecuteError> {
    let body = CommandBody::RecordRepayment {
        loan_id: loan_id(),
        amount: ledger.money(Decimal::from(amount)),
        effective_date: Some(on),
    };
    ledger.submit(body).map(|e| e.body.clone())
}

fn reverse(
    ledger: &mut Ledger,
    sequence: u64,
    on: Option<NaiveDate>,
) -> Result<EntryBody, ExecuteError> {
    ledger
        .submit(CommandBody::ReverseEntry {
            sequence,
            reason: name("mistake"),
            effective_date: on,
        })
        .map(|e| e.body.clone())
}

/// A loan whose account has closed records of steps (let go of, under
/// their own keys) is paid off: the checkpoint keeps every record in one
/// and removes their own keys. Reopened, then paid off and reopened again
/// while the checkpoint of that payoff still saves (which removes their
/// own keys while memory, holding the loan again, refers to them), the
/// next checkpoint writes every record under its own key again and
/// removes the one that kept them; a statement reads each back as the
/// state holds it. (The harness compares the store with the state's
/// records after every checkpoint it completes at once.)
#[test]
fn a_loan_reopened_while_its_accounts_records_move_keeps_every_record() {
    let rules = ProductRules {
        interest_method: InterestMethod::Flat,
        ..plain_rules()
    };
    let mut ledger = plain_loan(&rules, 1_000_000, None, 4);
    let account = AccountId::Loan(loan_id());
    let on = date(2001, 1, 1);
    while ledger.state.books().last_record(&account) < Some(1) {
        pay(&mut ledger, 1_000, on).unwrap();
    }
    // A payoff at an odd sequence is saved at once, at an even one still
    // saving when the next entry applies.
    let pay_off_at = |ledger: &mut Ledger, parity: u64| {
        if (ledger.state.last_sequence() + 1) % 2 != parity {
            pay(ledger, 1_000, on).unwrap();
        }
        let quote = ledger.loan().payoff_quote(on).unwrap();
        let total = i64::try_from(quote.total().mantissa()).unwrap();
        pay(ledger, total, on).unwrap().sequence
    };
    let own = |index| StateKey::Steps(account.clone(), index).to_bytes();
    let kept_key = StateKey::LoanSteps(loan_id()).to_bytes();
    let payoff = pay_off_at(&mut ledger, 1);
    assert!(ledger.saving.is_none());
    assert!(!ledger.cold.books().holds(&account));
    {
        let kept = ledger.kept.0.lock().unwrap();
        assert!(!kept.contains_key(&own(0)) && !kept.contains_key(&own(1)));
        assert!(kept.contains_key(&kept_key));
    }
    reverse(&mut ledger, payoff, None).unwrap();
    ledger.finish_saving();
    assert!(ledger.cold.books().is_let_go(&account, 0));
    let payoff = pay_off_at(&mut ledger, 0);
    assert!(ledger.saving.is_some());
    // The reversal applies, then that checkpoint completes: its records
    // are saved (the loan's own keys gone), the loan stays in memory.
    reverse(&mut ledger, payoff, None).unwrap();
    assert!(ledger.saving.is_none());
    assert!(ledger.cold.loans.contains_key(&loan_id()));
    let kept = ledger.kept.0.lock().unwrap().clone();
    for index in 0..=1 {
        assert!(
            kept.contains_key(&own(index)),
            "record {index} under its own key"
        );
    }
    assert!(!kept.contains_key(&kept_key));
    let (from, to) = (opened_on(), on);
    assert_eq!(
        ledger.cold.account_movements(&account, from, to).unwrap(),
        ledger.state.account_movements(&account, from, to).unwrap()
    );
}

/// A declining-balance loan cannot be paid off (nor prepaid) in a period
/// whose interest `grace_on_interest` deferred: the interest already owed
/// for the period is taken as the installment's (zero) interest less the
/// interest for the days left, which is negative, and the recast refuses it.
#[test]
fn payoff_in_an_interest_grace_period_is_refused() {
    let rules = ProductRules {
        grace_on_interest: 1,
        installments_min: 2,
        ..plain_rules()
    };
    // 1,000,000 VND, 2 weekly installments, the first one's interest deferred.
    let mut ledger = plain_loan(&rules, 1_000_000, None, 2);
    let on = date(2001, 1, 1);
    let quote = ledger.loan().payoff_quote(on).unwrap();
    assert_eq!(quote.total(), Decimal::from(1_000_000));
    // Refused with "terms: first_interest: -2308 must be zero or more ...".
    let paid = pay(&mut ledger, 1_000_000, on);
    assert!(paid.is_ok(), "payoff refused: {:?}", paid.err());
    assert_eq!(ledger.loan().status, LoanStatus::Closed);
}

/// A prepayment that leaves less principal than installments recasts the
/// rest with installments that owe nothing; `first_unpaid` moves past them,
/// and the next payment dated before their due dates panics in
/// `Loan::allocate` (`installments[first_unpaid..current_period]`, slice
/// index starts at 2 but ends at 0).
#[test]
fn payment_after_a_prepayment_that_empties_the_next_installments_panics() {
    let rules = ProductRules {
        rate_min: Decimal::ZERO,
        rate_max: Decimal::ZERO,
        interest_method: InterestMethod::Flat,
        ..plain_rules()
    };
    // 93 VND at 0% in 3 weekly installments of 31.
    let mut ledger = plain_loan(&rules, 93, None, 3);
    let on = date(2001, 1, 1);
    // Prepaying 92 leaves 1 VND, recast as 0, 0, 1: installments 1 and 2
    // owe nothing and first_unpaid moves to 2.
    pay(&mut ledger, 92, on).unwrap();
    assert_eq!(ledger.loan().first_unpaid, 2);
    // Paying the last 1 VND the same day panics.
    let paid = pay(&mut ledger, 1, on);
    assert!(paid.is_ok(), "{:?}", paid.err());
    assert_eq!(ledger.loan().status, LoanStatus::Closed);
}

/// `ProductRules::validate` accepts fees deducted at disbursement larger
/// than a loan's principal; the disbursement then builds a credit of a
/// negative amount to cash and `execute` panics on its balance assertion
/// instead of refusing.
#[test]
fn fees_deducted_beyond_the_principal_are_refused() {
    let rules = ProductRules {
        fees: vec![Fee {
            code: FeeCode::parse("fee", "f0").unwrap(),
            amount: FeeAmount::Fixed(Decimal::from(2)),
            collection: FeeCollection::AtDisbursement,
        }],
        ..plain_rules()
    };
    assert_eq!(rules.validate(), Ok(()));
    let mut ledger = setup(&rules);
    let case = Case {
        rules,
        application: LoanApplication {
            principal: Decimal::ONE,
            currency: None,
            approved_principal: None,
            annual_interest_rate_percent: None,
            installment_count: Some(1),
            first_repayment_date: date(2001, 1, 2),
        },
        disbursed_on: date(2001, 1, 1),
    };
    // Panics: "entry 7 is not balanced: [... Cash ... amount: -1 ...]".
    let disbursed = ledger.submit(case.disburse()).map(|e| e.body.clone());
    assert!(matches!(
        disbursed,
        Err(ExecuteError::Refused(
            DomainError::Precondition { .. } | DomainError::Invalid { .. }
        ))
    ));
}

/// The same for a tranche smaller than the fixed fee deducted from it.
#[test]
fn fees_deducted_beyond_a_tranche_are_refused() {
    let rules = ProductRules {
        fees: vec![Fee {
            code: FeeCode::parse("fee", "f0").unwrap(),
            amount: FeeAmount::Fixed(Decimal::from(2)),
            collection: FeeCollection::AtDisbursement,
        }],
        tranches_max: 2,
        ..plain_rules()
    };
    let mut ledger = plain_loan(&rules, 100, Some(101), 2);
    let tranche = ledger
        .submit(CommandBody::DisburseTranche {
            loan_id: loan_id(),
            amount: ledger.money(Decimal::ONE),
            disbursed_on: Some(date(2001, 1, 1)),
        })
        .map(|e| e.body.clone());
    assert!(matches!(
        tranche,
        Err(ExecuteError::Refused(
            DomainError::Precondition { .. } | DomainError::Invalid { .. }
        ))
    ));
}

/// A flat loan of 1,000,000 over 4 weeks paid off on 1 Jan 2001, and the
/// payoff's entry.
fn paid_off_on_new_years_day() -> (Ledger, EntryBody) {
    let rules = ProductRules {
        interest_method: InterestMethod::Flat,
        ..plain_rules()
    };
    let mut ledger = plain_loan(&rules, 1_000_000, None, 4);
    let quote = ledger.loan().payoff_quote(date(2001, 1, 1)).unwrap();
    let total = i64::try_from(quote.total().mantissa()).unwrap();
    let payoff = pay(&mut ledger, total, date(2001, 1, 1)).unwrap();
    (ledger, payoff)
}

/// A member's view shares her loans with the state rather than copying
/// each (its schedule, amounts and lists) on every GetMember, whether the
/// loan is held whole or, once paid off and let go of, read back as its
/// summary; as of an entry it
/// shows the loan as it stood then.
#[test]
fn a_members_view_shares_her_loans_with_the_state() {
    let (ledger, payoff) = paid_off_on_new_years_day();
    let now = context().recorded_at;
    for state in [&ledger.state, &ledger.cold] {
        let view = state.member_view(&member_id(), now).unwrap();
        assert_eq!(view.loans.len(), 1);
        // The state's own loan, when it holds it; else its summary read
        // back.
        match (&view.loans[0], state.loans.get(&loan_id())) {
            (LoanSlot::Whole(a), Some(b)) => {
                assert!(Arc::ptr_eq(a, b), "the view holds the state's own loan")
            }
            (LoanSlot::Ended(summary), None) => assert_eq!(summary.id, loan_id()),
            (view, held) => panic!("the view holds {view:?}, the state {held:?}"),
        }
        assert_eq!(view.loans[0].status(), LoanStatus::Closed);
    }
    let mut lookup = |sequence: u64| Ok(ledger.entries[sequence as usize - 1].body.clone());
    let before = ledger
        .state
        .member_view_at(&member_id(), payoff.sequence - 1, &mut lookup)
        .unwrap();
    assert_eq!(before.loans[0].status(), LoanStatus::Active);
}

/// A payoff on 1 Jan cannot be reversed with effect from 20 Jan: the
/// restored installments due 2 and 9 Jan would show as overdue on 10 Jan, a
/// day the loan had been paid off. Reversed as of its own date, the loan is
/// active again from 1 Jan and its arrears on 10 Jan are the installment of
/// 2 and 9 Jan unpaid, within the principal outstanding.
#[test]
fn a_payoff_is_reversed_as_of_its_own_date() {
    let (mut ledger, payoff) = paid_off_on_new_years_day();
    assert_eq!(ledger.loan().status, LoanStatus::Closed);
    let refused = reverse(&mut ledger, payoff.sequence, Some(date(2001, 1, 20)));
    assert!(
        matches!(&refused, Err(ExecuteError::Refused(DomainError::Invalid { field, .. })) if field == "effective_date"),
        "{refused:?}"
    );
    assert_eq!(ledger.loan().status, LoanStatus::Closed);
    reverse(&mut ledger, payoff.sequence, None).unwrap();
    assert_eq!(ledger.loan().status, LoanStatus::Active);
    let arrears = ledger.loan().arrears_on(date(2001, 1, 10)).unwrap();
    assert_eq!(arrears.principal_outstanding, Decimal::from(1_000_000));
    assert!(
        arrears.principal_overdue <= arrears.principal_outstanding,
        "{arrears:?}"
    );
}

/// Tranche and write-off on 1 Jan; the write-off can only be reversed as of
/// 1 Jan, then the tranche: the loan's principal and the branch's portfolio
/// are never negative on any day.
#[test]
fn reversals_in_order_keep_principal_positive_on_every_day() {
    let rules = ProductRules {
        tranches_max: 2,
        ..plain_rules()
    };
    let mut ledger = plain_loan(&rules, 1_000_000, Some(1_500_000), 4);
    let on = date(2001, 1, 1);
    let tranche = ledger
        .submit(CommandBody::DisburseTranche {
            loan_id: loan_id(),
            amount: ledger.money(Decimal::from(500_000)),
            disbursed_on: Some(on),
        })
        .unwrap()
        .body
        .sequence;
    let write_off = ledger
        .submit(CommandBody::WriteOffLoan {
            loan_id: loan_id(),
            reason: name("gone"),
            effective_date: Some(on),
        })
        .unwrap()
        .body
        .sequence;
    assert!(reverse(&mut ledger, write_off, Some(date(2001, 1, 3))).is_err());
    reverse(&mut ledger, write_off, None).unwrap();
    reverse(&mut ledger, tranche, None).unwrap();
    let loan = ledger.loan();
    for day in [on, date(2001, 1, 2), date(2001, 1, 3)] {
        let figures = ledger.state.period_figures(&branch_id(), day, day).unwrap();
        assert_eq!(loan.principal_on(day).unwrap(), Decimal::from(1_000_000));
        assert_eq!(figures.portfolio_outstanding, Decimal::from(1_000_000));
    }
}

/// Minor: `first_unpaid` ("the first installment not fully paid") stays 0
/// at disbursement when the first installments owe nothing (0% with grace
/// on principal, or both graces), until a payment moves it. Nothing reads
/// it wrongly (allocation skips installments owing nothing), but the
/// cached field disagrees with its definition.
#[test]
fn first_unpaid_skips_installments_with_nothing_due() {
    let rules = ProductRules {
        rate_min: Decimal::ZERO,
        rate_max: Decimal::ZERO,
        grace_on_principal: 1,
        installments_min: 2,
        ..plain_rules()
    };
    let ledger = plain_loan(&rules, 1_000, None, 3);
    let loan = ledger.loan();
    assert!(loan.installments.at(0).is_paid());
    assert_eq!(loan.first_unpaid, 1);
}

/// A deposit of `amount` into the member's compulsory savings, on the
/// day the loan was disbursed.
fn deposit_to_compulsory(amount: i64) -> CommandBody {
    CommandBody::DepositSavings {
        account_id: crate::ids::SavingsAccountId::parse("a", &format!("{}/C1", member_id()))
            .unwrap(),
        amount: Money {
            amount: Decimal::from(amount),
            currency: None,
        },
        effective_date: Some(opened_on()),
    }
}

/// What applying one entry wrote is refused for another entry: a read side
/// fed out of step would otherwise take one entry's changes as the next's.
#[test]
fn what_one_entry_wrote_is_refused_for_another() {
    let ledger = setup(&plain_rules());
    let mut copy = ledger.state.clone();
    let mut mirror = ledger.state.clone();
    let first = ledger
        .decide(&copy, deposit_to_compulsory(1000))
        .unwrap()
        .seal(&copy.last_hash());
    let written_first = copy.apply_and_keep(&first).unwrap();
    let second = ledger
        .decide(&copy, deposit_to_compulsory(2000))
        .unwrap()
        .seal(&copy.last_hash());
    let written_second = copy.apply_and_keep(&second).unwrap();
    // The first entry with the second entry's changes: refused, nothing changed.
    let before = mirror.export().unwrap();
    let refused = mirror.apply_written(&first, written_second.clone());
    assert!(refused.is_err(), "{refused:?}");
    assert!(mirror.export().unwrap() == before);
    // In order, each with its own: the same state as applying them.
    mirror.apply_written(&first, written_first).unwrap();
    mirror.apply_written(&second, written_second).unwrap();
    assert!(mirror.export().unwrap() == copy.export().unwrap());
}

/// What was written after one entry is refused by a state whose last
/// entry is another at the same sequence number: the read side checks the
/// chain against the hash the writer applied after, so a side that forked
/// cannot take the writer's next entry as if it followed its own.
#[test]
fn what_was_written_after_one_entry_is_refused_after_another() {
    let ledger = setup(&plain_rules());
    let mut writer = ledger.state.clone();
    let mut forked = ledger.state.clone();
    let sealed = |state: &LedgerState, amount: i64| {
        ledger
            .decide(state, deposit_to_compulsory(amount))
            .unwrap()
            .seal(&state.last_hash())
    };
    let first = sealed(&writer, 1000);
    writer.apply_and_keep(&first).unwrap();
    let other = sealed(&forked, 3000);
    forked.apply(&other).unwrap();
    assert_eq!(forked.last_sequence(), writer.last_sequence());
    let second = sealed(&writer, 2000);
    let written = writer.apply_and_keep(&second).unwrap();
    let before = forked.export().unwrap();
    let refused = forked.apply_written(&second, written);
    let message = refused
        .expect_err("a forked side took the writer's next entry")
        .message;
    assert!(message.contains("does not chain"), "{message}");
    assert!(forked.export().unwrap() == before);
}

/// A loan whose disbursement is reversed with a later date was in the books
/// until that date: on a date before it, a loan with installments unpaid
/// past its tolerance is in arrears for the arrears listing as it is for
/// portfolio quality (which counts it from its outstanding principal).
#[test]
fn a_loan_cancelled_later_is_in_arrears_before_its_cancellation() {
    // 1,000,000 VND, 4 weekly installments from 2 January 2001; nothing paid.
    let mut ledger = plain_loan(&plain_rules(), 1_000_000, None, 4);
    let disbursement = ledger.state.last_sequence();
    reverse(&mut ledger, disbursement, Some(date(2001, 3, 1))).unwrap();
    let loan = ledger.loan();
    assert_eq!(loan.status, LoanStatus::Cancelled);
    let before = date(2001, 1, 20);
    assert!(loan.principal_on(before).unwrap() > Decimal::ZERO);
    let counted = loan.overdue_on(before).unwrap();
    assert!(counted.in_arrears, "{counted:?}");
    let listed = loan.arrears_on(before).unwrap();
    assert!(listed.in_arrears, "listed on {before}: {listed:?}");
    // From the cancellation on, neither counts it.
    let after = date(2001, 3, 2);
    assert_eq!(loan.principal_on(after).unwrap(), Decimal::ZERO);
    assert!(!loan.arrears_on(after).unwrap().in_arrears);
}

/// A store that cannot read anything now.
#[derive(Debug)]
struct Unreadable;

impl crate::stored::StoredRecords for Unreadable {
    fn read(&self, _: &[u8]) -> Result<Option<Vec<u8>>, crate::stored::ReadError> {
        Err(crate::stored::ReadError::Unreadable(
            "the disk is busy".into(),
        ))
    }

    fn records_after(
        &self,
        _: &[u8],
        _: Option<&[u8]>,
        _: usize,
        _: &dyn Fn(&[u8]) -> bool,
    ) -> Result<crate::stored::Records, crate::stored::ReadError> {
        Err(crate::stored::ReadError::Unreadable(
            "the disk is busy".into(),
        ))
    }
}

/// A paid-off loan let go of, on a store that cannot read its records just
/// now: reversing the payoff is refused as unavailable (ask again), not
/// decided and then failing to apply, which would stop the writer; read,
/// it is decided.
#[test]
fn a_payoff_of_a_loan_let_go_of_is_not_reversed_while_its_record_cannot_be_read() {
    let (ledger, payoff) = paid_off_on_new_years_day();
    let reversal = || CommandBody::ReverseEntry {
        sequence: payoff.sequence,
        reason: name("mistake"),
        effective_date: None,
    };
    let unreadable = started_from(&ledger.records, Arc::new(Unreadable));
    assert!(!unreadable.loans.contains_key(&loan_id()));
    assert_ask_again(ledger.decide(&unreadable, reversal()));
    let readable = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    assert!(ledger.decide(&readable, reversal()).is_ok());
    // Nor while its account's book cannot be read back (the read side
    // reads it to book the reversal): missing, or unreadable just now.
    let kept = StateKey::LoanSteps(loan_id()).to_bytes();
    let mut without_book = ledger.records.clone();
    without_book.remove(&kept);
    let refused = ledger.decide(
        &started_from(&ledger.records, Arc::new(CacheRecords::new(without_book))),
        reversal(),
    );
    assert!(
        matches!(&refused, Err(ExecuteError::Refused(DomainError::Damaged { message })) if message.contains("is missing")),
        "{refused:?}"
    );
    let busy = CacheRecords::busy_for(ledger.records.clone(), kept);
    assert_ask_again(ledger.decide(&started_from(&ledger.records, Arc::new(busy)), reversal()));
    // A cache whose closed loan has no record of its installments is
    // refused when every record is read whole (as `verify` reads it; a
    // start reads none of the loan's, and the read above refuses it).
    let refused = LedgerState::import(
        ledger
            .records
            .iter()
            .filter(|(key, _)| !key.starts_with(b"cold/loan/"))
            .map(|(key, value)| (key.as_slice(), value.as_slice())),
    )
    .map(|_| ());
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("records of 0") && why.contains("summaries of 1")),
        "{refused:?}"
    );
}

/// A flat-interest loan of 1,000,000 in four installments from 1 Jan
/// 2001, paid off on 10 Jan (the ledger, its rules and that date).
fn paid_off_on_january_10() -> (Ledger, ProductRules, NaiveDate) {
    let rules = ProductRules {
        interest_method: InterestMethod::Flat,
        ..plain_rules()
    };
    let mut ledger = plain_loan(&rules, 1_000_000, None, 4);
    let paid_on = date(2001, 1, 10);
    let quote = ledger.loan().payoff_quote(paid_on).unwrap();
    let total = i64::try_from(quote.total().mantissa()).unwrap();
    pay(&mut ledger, total, paid_on).unwrap();
    (ledger, rules, paid_on)
}

/// Her next loan: 500,000 in four installments from 8 Feb 2001,
/// disbursed on `on`.
fn next_loan(rules: &ProductRules, on: NaiveDate) -> Case {
    Case {
        rules: rules.clone(),
        application: LoanApplication {
            principal: Decimal::from(500_000),
            currency: None,
            approved_principal: None,
            annual_interest_rate_percent: None,
            installment_count: Some(4),
            first_repayment_date: date(2001, 2, 8),
        },
        disbursed_on: on,
    }
}

/// The loans memory let go of are listed among those it holds for a day
/// one of them was active on (the day before her payoff), as a state
/// holding every loan whole lists them, and are not read at all for a day
/// on or after the latest any loan ended on: a store that cannot be read
/// answers then, and says so for the day before.
#[test]
fn loans_let_go_of_are_listed_for_the_days_they_were_active() {
    let (mut ledger, rules, paid_on) = paid_off_on_january_10();
    let second = next_loan(&rules, date(2001, 2, 1));
    ledger.submit(second.disburse()).unwrap();
    let started = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    assert!(
        !started.loans.contains_key(&loan_id()),
        "the paid-off loan let go of"
    );
    let active = |state: &LedgerState, day: NaiveDate| -> Vec<(LoanId, LoanStatus)> {
        let loans = state.every_loan(Some(day)).unwrap();
        let active = loans.iter().filter(|loan| loan.active_on(day));
        active
            .map(|loan| (loan.id().clone(), loan.status()))
            .collect()
    };
    let day_before = paid_on.pred_opt().unwrap();
    let second_id = LoanId::new(&member_id(), 'L', 2);
    for (day, expected) in [
        (date(2000, 12, 31), vec![]),
        (day_before, vec![(loan_id(), LoanStatus::Closed)]),
        (paid_on, vec![]),
        (date(2001, 2, 1), vec![(second_id, LoanStatus::Active)]),
    ] {
        assert_eq!(active(&started, day), expected, "active on {day}");
        assert_eq!(
            active(&ledger.state, day),
            expected,
            "held whole, active on {day}"
        );
    }
    let unreadable = started_from(&ledger.records, Arc::new(Unreadable));
    assert!(unreadable.every_loan(Some(paid_on)).is_ok());
    assert_ask_again(unreadable.every_loan(Some(day_before)));
}

/// Her borrower steps are worked out again (at her next loan) from a loan
/// closed and let go of: what it changed of her borrowing, kept with her,
/// gives the steps its whole principal by date gave. She borrowed from 1 Jan, paid
/// off on 10 Jan, and borrows again from 1 Feb.
#[test]
fn borrower_steps_are_worked_out_the_same_from_a_loan_let_go_of() {
    let (mut ledger, rules, paid_on) = paid_off_on_january_10();
    assert_eq!(ledger.loan().status, LoanStatus::Closed);
    let mut started = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    assert!(
        !started.loans.contains_key(&loan_id()),
        "the loan let go of"
    );
    let first = started.loan(&loan_id()).unwrap().unwrap();
    assert_eq!(first.principal_changes().len(), 2, "on 1 Jan and on 10 Jan");
    assert_eq!(
        started.members[&member_id()]
            .ended_borrowing
            .iter()
            .map(|change| (change.date, change.loans))
            .collect::<Vec<_>>(),
        [(date(2001, 1, 1), 1), (paid_on, -1)],
        "her ended loan's borrowing, kept with her"
    );
    let next = next_loan(&rules, date(2001, 2, 1));
    let entry = ledger.submit(next.disburse()).unwrap().clone();
    started.apply(&entry).unwrap();
    let steps = |state: &LedgerState| state.members[&member_id()].borrower_steps.clone();
    assert_eq!(steps(&started), steps(&ledger.state));
    assert_eq!(
        steps(&started)
            .iter()
            .map(|s| (s.date, s.borrower))
            .collect::<Vec<_>>(),
        [(date(2001, 1, 1), 1), (paid_on, -1), (date(2001, 2, 1), 1)]
    );
    assert!(started.export().unwrap() == ledger.state.export().unwrap());
}

/// A new loan leaves her borrower steps as they are when she borrows
/// already on its date and every date after (and her steps are then not
/// worked out again); a loan dated before a day she stopped borrowing
/// moves that day. She borrowed from 1 Jan and paid off on 10 Jan; a loan
/// dated 5 Jan keeps her a borrower past 10 Jan, and one dated 7 Jan,
/// while that loan runs, changes nothing more.
#[test]
fn a_new_loan_changes_her_borrower_steps_only_where_she_did_not_borrow() {
    let (mut ledger, rules, paid_on) = paid_off_on_january_10();
    let steps = |ledger: &Ledger| {
        ledger.state.members[&member_id()]
            .borrower_steps
            .iter()
            .map(|s| (s.date, s.borrower))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&ledger), [(date(2001, 1, 1), 1), (paid_on, -1)]);
    ledger
        .submit(next_loan(&rules, date(2001, 1, 5)).disburse())
        .unwrap();
    assert_eq!(steps(&ledger), [(date(2001, 1, 1), 1)]);
    ledger
        .submit(next_loan(&rules, date(2001, 1, 7)).disburse())
        .unwrap();
    assert_eq!(steps(&ledger), [(date(2001, 1, 1), 1)]);
    // What a scan of her loans gives, and a replay of the journal.
    let member = &ledger.state.members[&member_id()];
    let principal: Vec<_> = member
        .loans
        .iter()
        .map(|id| &ledger.state.loans[id].principal_changes)
        .collect();
    let savings: Vec<_> = member
        .savings_accounts
        .iter()
        .map(|id| crate::totals::SavingsChanges {
            folded: None,
            changes: &ledger.state.savings[id].changes,
        })
        .collect();
    assert_eq!(
        crate::totals::borrower_steps(&principal, &[], &savings, &[]).unwrap(),
        member.borrower_steps
    );
}

/// A deposit dated before her loan's last change (she borrowed from 1 Jan,
/// paid off on 10 Jan), with her savings positive before and after it,
/// leaves her borrower steps as a scan of her loans and savings gives
/// them: the savings check that keeps her steps without working them out
/// again does not look at her loans, and needs not.
#[test]
fn a_deposit_dated_before_her_loans_last_change_keeps_her_steps_as_a_scan_gives() {
    let (mut ledger, _, _) = paid_off_on_january_10();
    let on = |amount: i64, day: NaiveDate| {
        let mut body = deposit_to_compulsory(amount);
        if let CommandBody::DepositSavings { effective_date, .. } = &mut body {
            *effective_date = Some(day);
        }
        body
    };
    ledger.submit(on(1_000, opened_on())).unwrap();
    let before = ledger.state.members[&member_id()].borrower_steps.clone();
    ledger.submit(on(2_000, date(2001, 1, 5))).unwrap();
    let member = &ledger.state.members[&member_id()];
    assert_eq!(member.borrower_steps, before);
    let principal: Vec<_> = member
        .loans
        .iter()
        .map(|id| &ledger.state.loans[id].principal_changes)
        .collect();
    let savings: Vec<_> = member
        .savings_accounts
        .iter()
        .map(|id| crate::totals::SavingsChanges {
            folded: None,
            changes: &ledger.state.savings[id].changes,
        })
        .collect();
    assert_eq!(
        crate::totals::borrower_steps(&principal, &[], &savings, &[]).unwrap(),
        member.borrower_steps
    );
}

/// A paid-off loan let go of whose record in the state cache no longer
/// decodes (damaged on disk): reading it whole is refused as damaged,
/// naming the loan and `verify`, never answered from what memory kept.
#[test]
fn a_loan_let_go_of_whose_record_is_damaged_is_refused_as_damaged() {
    let (ledger, _) = paid_off_on_new_years_day();
    let mut records = ledger.records.clone();
    let key = StateKey::LoanSchedule(loan_id()).to_bytes();
    records.insert(key, b"not a loan's record".to_vec());
    let started = started_from(&ledger.records, Arc::new(CacheRecords::new(records)));
    assert!(!started.loans.contains_key(&loan_id()));
    let now = context().recorded_at;
    let refused = started.loan_view(&loan_id(), Some(date(2001, 1, 5)), now);
    assert!(
        matches!(
            &refused,
            Err(DomainError::Damaged { message })
                if message.contains(loan_id().as_str()) && message.contains("verify")
        ),
        "{refused:?}"
    );
}

/// A loan paid off and let go of: a command on it is refused as the loan
/// held whole refuses it, in the same order (a repayment dated before its
/// last transaction for its date, one after for its status) and with the
/// same message, from its summary read back (`verify` decides every command
/// again on loans held whole); on a store that cannot be read just now, it
/// is refused as unavailable (ask again), deciding nothing.
#[test]
fn commands_on_a_loan_let_go_of_are_refused_as_on_the_loan_whole() {
    let (ledger, _) = paid_off_on_new_years_day();
    let readable = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    let unreadable = started_from(&ledger.records, Arc::new(Unreadable));
    assert!(!readable.loans.contains_key(&loan_id()));
    assert!(!unreadable.loans.contains_key(&loan_id()));
    assert!(ledger.state.loans.contains_key(&loan_id()));
    let commands = [
        (
            CommandBody::RecordRepayment {
                loan_id: loan_id(),
                amount: ledger.money(Decimal::from(10_000)),
                effective_date: Some(date(2000, 12, 31)),
            },
            "enter a loan's transactions in date order",
        ),
        (
            CommandBody::RecordRepayment {
                loan_id: loan_id(),
                amount: ledger.money(Decimal::from(10_000)),
                effective_date: Some(date(2001, 1, 8)),
            },
            "is closed: repaid in full",
        ),
        (
            CommandBody::DisburseTranche {
                loan_id: loan_id(),
                amount: ledger.money(Decimal::from(100_000)),
                disbursed_on: Some(date(2001, 1, 8)),
            },
            "is closed: repaid in full",
        ),
        (
            CommandBody::WriteOffLoan {
                loan_id: loan_id(),
                reason: name("gone"),
                effective_date: Some(date(2001, 1, 8)),
            },
            "is closed: repaid in full",
        ),
    ];
    for (body, refusal) in commands {
        let whole = ledger.decide(&ledger.state, body.clone());
        assert!(
            whole
                .as_ref()
                .is_err_and(|e| e.to_string().contains(refusal)),
            "{whole:?}"
        );
        let decided = ledger.decide(&readable, body.clone());
        assert_eq!(
            decided.as_ref().map_err(ToString::to_string),
            whole.as_ref().map_err(ToString::to_string),
        );
        assert_ask_again(ledger.decide(&unreadable, body));
    }
}

/// A principal's command naming a loan let go of, on a store that cannot
/// read the loan's summary just now: refused as unavailable before any
/// permission is checked, not taken for a command naming no loan (which
/// any principal allowed the action in some branch would pass, and then
/// learn the loan's state from its refusal); read, the principal's
/// permission in the loan's branch is checked first (this one has none).
#[test]
fn a_principals_command_on_a_loan_let_go_of_waits_for_its_branch_to_be_read() {
    let (ledger, _) = paid_off_on_new_years_day();
    let mut command = ledger.command(CommandBody::RecordRepayment {
        loan_id: loan_id(),
        amount: ledger.money(Decimal::from(10_000)),
        effective_date: Some(date(2001, 1, 8)),
    });
    command.principal = Some(crate::ids::PrincipalId::parse("principal", "clerk@tb").unwrap());
    let with_access = ExecContext {
        rules_version: crate::entry::RULES_VERSION_ACCESS,
        ..context()
    };
    let unreadable = started_from(&ledger.records, Arc::new(Unreadable));
    assert_ask_again(ledger.decide_command(&unreadable, &command, with_access));
    let readable = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    let refused = ledger.decide_command(&readable, &command, with_access);
    assert!(
        matches!(
            &refused,
            Err(ExecuteError::Refused(DomainError::PermissionDenied { .. }))
        ),
        "{refused:?}"
    );
}

/// Which of the state cache's records hold loan `LOAN`, by kind.
fn loan_record_kinds(records: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeSet<String> {
    let id = loan_id();
    records
        .keys()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .filter(|key| {
            key.ends_with(&format!("/{id}"))
                || key.contains(&format!("/{id}/"))
                    && (key.starts_with("loanevents/") || key.starts_with("loanhistory/"))
        })
        .map(|key| key[..key.rfind(id.as_str()).unwrap()].to_owned())
        .collect()
}

/// A loan paid off is two records of the state cache, the loan whole and
/// its summary (both read when asked), in place of a running loan's terms,
/// progress and lists; the reversal that reopens it brings those back and
/// removes the two. After each entry the records are the state's (the
/// harness checks them against a full export); a state started from them
/// does not hold the loan while it is paid off, and holds it whole once
/// reopened.
#[test]
fn a_paid_off_loan_is_its_whole_record_and_its_summary_until_reopened() {
    // Its lists, shorter than a chunk, are in its progress record.
    let running: BTreeSet<String> = ["loan/", "repaid/"].map(String::from).into();
    let ended: BTreeSet<String> = ["cold/loan/", "cold/ended/"].map(String::from).into();
    let start = |records: &BTreeMap<Vec<u8>, Vec<u8>>| {
        let store = CacheRecords::new(records.clone());
        started_from(records, Arc::new(store))
    };
    let (mut ledger, payoff) = paid_off_on_new_years_day();
    assert_eq!(loan_record_kinds(&ledger.records), ended);
    assert!(!start(&ledger.records).loans.contains_key(&loan_id()));
    reverse(&mut ledger, payoff.sequence, None).unwrap();
    assert_eq!(ledger.loan().status, LoanStatus::Active);
    assert_eq!(loan_record_kinds(&ledger.records), running);
    assert!(ledger.cold.loans.contains_key(&loan_id()));
    assert_eq!(
        start(&ledger.records)
            .loans
            .get(&loan_id())
            .map(|loan| loan.status),
        Some(LoanStatus::Active)
    );
}

/// A cache whose ended loan's records disagree is refused when read whole
/// (as `verify` reads it), naming what is wrong: a whole record with no
/// summary, a summary or a whole record beside a running loan's records, a
/// whole loan read back that is not the one its summary describes, its
/// account's records kept in one missing, or beside records of their own.
/// A start, which lists none of an ended loan's records, refuses the last
/// (the records of its own are read at startup); a record missing is
/// refused when read (above), and the store checks the hashes it keeps
/// for them against their sum.
#[test]
fn a_cache_whose_ended_loan_records_disagree_is_refused() {
    let (ledger, _) = paid_off_on_new_years_day();
    let start = |records: &BTreeMap<Vec<u8>, Vec<u8>>| {
        let mut startup = StateImport::default();
        for (key, value) in records {
            startup.add(key, value)?;
        }
        startup.finish().map(|_| ())
    };
    let start_kept = |records: &BTreeMap<Vec<u8>, Vec<u8>>| read_as_started(records).map(|_| ());
    assert_eq!(start_kept(&ledger.records), Ok(()));
    assert_eq!(start(&ledger.records), Ok(()));
    let summary_key = StateKey::LoanEnded(loan_id()).to_bytes();
    let mut no_summary = ledger.records.clone();
    no_summary.remove(&summary_key);
    let refused = start(&no_summary);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("not of the same loans")),
        "{refused:?}"
    );
    // The same loan's record before its payoff, when it was running.
    let loan_key = StateKey::Loan(loan_id()).to_bytes();
    let rules = ProductRules {
        interest_method: InterestMethod::Flat,
        ..plain_rules()
    };
    let running = plain_loan(&rules, 1_000_000, None, 4);
    let mut beside_running = ledger.records.clone();
    beside_running.insert(loan_key.clone(), running.records[&loan_key].clone());
    let refused = start(&beside_running);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("the records of a running loan")),
        "{refused:?}"
    );
    let mut other = ledger.records.clone();
    let mut summary: EndedLoan = postcard::from_bytes(&other[&summary_key]).unwrap();
    summary.principal += Decimal::ONE;
    other.insert(summary_key, postcard::to_stdvec(&summary).unwrap());
    let refused = start(&other);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("not the Closed loan its summary describes")),
        "{refused:?}"
    );
    // Its account's records kept in one: missing, or beside records of
    // their own (as a cache of format 16 held them).
    let kept_key = StateKey::LoanSteps(loan_id()).to_bytes();
    let mut no_steps = ledger.records.clone();
    let kept = no_steps.remove(&kept_key).unwrap();
    let refused = start(&no_steps);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("accounts' records of 0")),
        "{refused:?}"
    );
    let records: Vec<Vec<u8>> = postcard::from_bytes(&kept).unwrap();
    assert!(!records.is_empty());
    let mut own_too = ledger.records.clone();
    for (record, index) in records.into_iter().zip(0..) {
        let key = StateKey::Steps(AccountId::Loan(loan_id()), index).to_bytes();
        own_too.insert(key, record);
    }
    let refused = start_kept(&own_too);
    assert!(
        refused.as_ref().is_err_and(|why| why.contains(&format!(
            "account loan:{} has its own records of steps, and no running loan",
            loan_id()
        ))),
        "{refused:?}"
    );
    let refused = start(&own_too);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("read twice")),
        "{refused:?}"
    );
}

/// A member and her loan as they stood before the loan's payoff, asked of
/// a state that let go of the paid-off loan: read back whole, the
/// loan gives what the state holding it whole gives; on a store that
/// cannot be read just now, the answer says so (unavailable: ask again),
/// not that the journal could not be read.
#[test]
fn as_of_reads_of_a_loan_let_go_of_read_it_back_or_say_so() {
    let (ledger, payoff) = paid_off_on_new_years_day();
    let before = payoff.sequence - 1;
    let lookup = |sequence: u64| Ok(ledger.entries[sequence as usize - 1].body.clone());
    let readable = started_from(
        &ledger.records,
        Arc::new(CacheRecords::new(ledger.records.clone())),
    );
    let unreadable = started_from(&ledger.records, Arc::new(Unreadable));
    let member =
        |state: &LedgerState| state.member_view_at(&member_id(), before, &mut lookup.clone());
    let loan =
        |state: &LedgerState| state.loan_view_at(&loan_id(), before, None, &mut lookup.clone());
    let whole = member(&ledger.state).unwrap();
    assert_eq!(whole.loans[0].status(), LoanStatus::Active);
    assert_eq!(member(&readable).unwrap(), whole);
    assert_eq!(loan(&readable).unwrap(), loan(&ledger.state).unwrap());
    assert_ask_again(member(&unreadable));
    assert_ask_again(loan(&unreadable));
}

/// The reversal that reopens a closed loan books to its account's history,
/// which the server's state let go of whole with the loan once a
/// checkpoint saved it (its records then kept in one, read when asked):
/// applying the reversal reads the account's book back first. When the
/// store cannot give it, the entry does not apply and the state is as it
/// was; once it can, the next checkpoint writes the account's records
/// under their own keys again, and the one that kept them goes.
#[test]
fn a_reopened_loans_account_is_read_back_whole_or_not_at_all() {
    let (mut ledger, _, _) = paid_off_on_january_10();
    ledger.finish_saving();
    let account = AccountId::Loan(loan_id());
    let own = StateKey::Steps(account.clone(), 0).to_bytes();
    let kept = StateKey::LoanSteps(loan_id()).to_bytes();
    assert!(!ledger.cold.books().holds(&account));
    assert!(!ledger.kept.0.lock().unwrap().contains_key(&own));
    // Read back for a statement as the state holds it.
    let (from, to) = (opened_on(), date(2025, 12, 31));
    let movements =
        |state: &LedgerState| state.books().account_movements(&account, from, to).unwrap();
    assert_eq!(movements(&ledger.cold), movements(&ledger.state));
    let payoff = ledger.entries.last().unwrap().body.sequence;
    let reversal = ledger
        .decide(
            &ledger.state,
            CommandBody::ReverseEntry {
                sequence: payoff,
                reason: name("mistake"),
                effective_date: None,
            },
        )
        .unwrap()
        .seal(&ledger.state.last_hash());
    let stored = ledger.kept.0.lock().unwrap().remove(&kept).unwrap();
    let error = ledger.cold.apply(&reversal).unwrap_err();
    assert!(error.to_string().contains("is missing"), "{error}");
    assert_eq!(ledger.cold.last_sequence(), payoff);
    assert!(!ledger.cold.books().holds(&account));
    assert!(!ledger.cold.loans.contains_key(&loan_id()));
    ledger.kept.0.lock().unwrap().insert(kept.clone(), stored);
    ledger.cold.apply(&reversal).unwrap();
    ledger.state.apply(&reversal).unwrap();
    assert_eq!(ledger.cold.loans[&loan_id()].status, LoanStatus::Active);
    let (keys, records) = ledger.cold.take_changes_with_keys().unwrap();
    let expected = ledger.state.export().unwrap();
    assert_eq!(records.len(), keys.len());
    for (name, value) in &records {
        assert_eq!(value.as_ref(), expected.get(name), "record {name:?}");
    }
    assert!(
        records.contains(&(kept, None)),
        "the record that kept them goes"
    );
    assert!(
        records
            .iter()
            .any(|(key, value)| *key == own && value.is_some()),
        "its own records come back"
    );
    ledger.save_cold(records);
    ledger.cold.saved(&keys);
    assert_eq!(movements(&ledger.cold), movements(&ledger.state));
    assert_eq!(
        ledger.cold.balance(&account),
        ledger.state.balance(&account)
    );
    assert!(ledger.cold.export().unwrap() == expected);
}
