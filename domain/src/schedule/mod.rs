//! Loan repayment schedules.
//!
//! Given the [`LoanTerms`] a loan is disbursed under, [`compute_schedule`]
//! validates them and returns one [`Installment`] per repayment: its due date,
//! its principal part and its interest part. [`recast`] recomputes the rest of
//! a schedule for a new outstanding balance (after a tranche or a
//! prepayment), and [`interest_for_days`] gives the unrounded interest for
//! part of a period.
//!
//! Two interest methods are supported ([`InterestMethod`]):
//! - **Flat**: interest is charged on the original principal for the whole
//!   term and spread evenly over the installments.
//! - **Declining balance**: each period's interest is charged on the
//!   outstanding balance, with equal installments (an annuity) or equal
//!   principal parts ([`Amortization`]).
//!
//! A period's interest is the annual rate over the periods in a year, or
//! counted on its actual days over 365 ([`InterestPeriod`]). Interest-only
//! periods (`grace_on_principal`) and deferred interest (`grace_on_interest`)
//! are supported.
//!
//! All money is [`Decimal`] and all arithmetic is checked (overflow becomes
//! [`ScheduleError::Overflow`], never a panic). Every rounding is explicit:
//! interest on a declining balance and flat total interest are rounded
//! half-even to the currency's decimals; regular installments (or their
//! parts) are rounded to the terms' `rounding.multiple` with its
//! [`RoundingMode`]; the last installment absorbs what rounding left over.
//!
//! The module is pure: no I/O, no clock, no global state.

use chrono::{Days, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::command::DATE_MAX;

mod validate;
use validate::{validate, validate_recast_amount};

/// Smallest accepted `installment_count`.
const MIN_INSTALLMENTS: u32 = 1;
/// Largest accepted `installment_count` (ten years of weekly repayments).
const MAX_INSTALLMENTS: u32 = 520;
/// Largest accepted `annual_interest_rate_percent`.
const MAX_RATE_PERCENT: Decimal = Decimal::ONE_HUNDRED;

/// How interest is charged over the life of a loan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InterestMethod {
    /// Interest on the original principal for the whole term, spread evenly.
    Flat,
    /// Equal installments; interest on the outstanding balance each period.
    DecliningBalance,
}

/// How often installments fall due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RepaymentFrequency {
    /// Every 7 days.
    Weekly,
    /// Every 14 days.
    Fortnightly,
    /// Same day of each calendar month (clamped to the month's last day).
    Monthly,
}

impl RepaymentFrequency {
    /// Number of repayment periods in a year: 52, 26 or 12.
    pub fn periods_per_year(self) -> u32 {
        match self {
            Self::Weekly => 52,
            Self::Fortnightly => 26,
            Self::Monthly => 12,
        }
    }

    /// Due date of installment `index` (0-based) given the first repayment date.
    ///
    /// Weekly: `first + 7 * index` days; fortnightly: `first + 14 * index` days;
    /// monthly: `first + index` calendar months, always counted from `first`
    /// (so 31 Jan 2024 -> 29 Feb 2024 -> 31 Mar 2024). `None` on overflow.
    pub fn due_date(self, first: NaiveDate, index: u32) -> Option<NaiveDate> {
        let days = |step: u64| first.checked_add_days(Days::new(step * u64::from(index)));
        match self {
            Self::Weekly => days(7),
            Self::Fortnightly => days(14),
            Self::Monthly => first.checked_add_months(Months::new(index)),
        }
    }
}

/// How each installment's principal is set when interest declines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Amortization {
    /// Equal installments (an annuity): principal grows as interest shrinks.
    EqualInstallments,
    /// Equal principal parts; the installment shrinks with the interest.
    EqualPrincipal,
}

/// How one period's interest is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InterestPeriod {
    /// The annual rate divided by the periods in a year (52, 26 or 12),
    /// whatever the period's length in days.
    PerPeriod,
    /// From the period's actual days: `rate * days / 365`.
    Actual365,
}

/// How the equal installment of a declining-balance loan is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstallmentBasis {
    /// From the nominal period rate: `annual rate / periods per year`.
    NominalPeriodRate,
    /// From each period's own day-based rate (`rate * days / 365`), so that
    /// the last installment comes out equal to the others.
    ActualPeriodRates,
}

/// How an amount is rounded to the installment multiple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoundingMode {
    /// To the nearest; a tie goes to the even multiple (banker's rounding).
    HalfEven,
    /// To the nearest; a tie goes away from zero.
    HalfUp,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

/// How installments are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallmentRounding {
    /// Installments are a multiple of this, e.g. 1 (whole dong), 1000, or
    /// 0.01; > 0 and a whole number of the currency's minor units.
    #[serde(with = "crate::codec::decimal")]
    pub multiple: Decimal,
    /// How a value between two multiples is rounded.
    pub mode: RoundingMode,
}

/// The terms a loan is disbursed under, as its product and the loan resolve them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanTerms {
    /// Amount lent; must be > 0 with at most `currency_decimal_places` decimals.
    #[serde(with = "crate::codec::decimal")]
    pub principal: Decimal,
    /// Nominal yearly rate in percent, `0 <= r <= 100`; 18 means 18% a year.
    #[serde(with = "crate::codec::decimal")]
    pub annual_interest_rate_percent: Decimal,
    /// How interest is charged.
    pub interest_method: InterestMethod,
    /// Equal installments or equal principal (declining balance only; a flat
    /// loan's parts are equal either way).
    pub amortization: Amortization,
    /// How each period's interest is counted.
    pub interest_period: InterestPeriod,
    /// How the equal installment is computed (declining balance, equal installments).
    pub installment_basis: InstallmentBasis,
    /// Number of installments, `1..=520`.
    pub installment_count: u32,
    /// How often installments fall due.
    pub frequency: RepaymentFrequency,
    /// Date the money is paid out: the start of the first period.
    #[serde(with = "crate::codec::date")]
    pub disbursed_on: NaiveDate,
    /// Due date of the first installment; after `disbursed_on`.
    #[serde(with = "crate::codec::date")]
    pub first_repayment_date: NaiveDate,
    /// How installments are rounded.
    pub rounding: InstallmentRounding,
    /// The currency's minor-unit exponent: VND 0, USD 2.
    pub currency_decimal_places: u32,
    /// The first this many installments repay no principal (interest only);
    /// `< installment_count`.
    pub grace_on_principal: u32,
    /// The first this many installments collect no interest; the interest of
    /// those periods is deferred to the first installment after them.
    /// `< installment_count`.
    pub grace_on_interest: u32,
}

/// One scheduled repayment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installment {
    /// 1-based position in the schedule.
    pub number: u32,
    /// Date the installment falls due.
    #[serde(with = "crate::codec::date")]
    pub due_date: NaiveDate,
    /// Part of the installment that repays principal.
    #[serde(with = "crate::codec::decimal")]
    pub principal: Decimal,
    /// Part of the installment that pays interest.
    #[serde(with = "crate::codec::decimal")]
    pub interest: Decimal,
    /// Fees due with the installment (set by the ledger from the product's
    /// fees; [`compute_schedule`] leaves it zero).
    #[serde(with = "crate::codec::decimal")]
    pub fee: Decimal,
}

impl Installment {
    /// Amount due: principal plus interest plus fees.
    ///
    /// # Panics
    /// Only if the installment was built by hand with parts whose sum
    /// overflows [`Decimal`]; [`compute_schedule`] checks this sum for every
    /// installment it returns, so those never panic.
    pub fn total(&self) -> Decimal {
        self.principal + self.interest + self.fee
    }
}

/// Why a schedule could not be computed. Messages name the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `principal` is zero or negative.
    #[error("principal: {0} must be greater than 0")]
    PrincipalNotPositive(Decimal),
    /// `principal` has more decimals than the currency allows.
    #[error("principal: {value} has more than the currency's {places} decimal places")]
    PrincipalTooPrecise {
        /// The offending principal.
        value: Decimal,
        /// `currency_decimal_places`.
        places: u32,
    },
    /// `annual_interest_rate_percent` is outside `0..=100`.
    #[error("annual_interest_rate_percent: {0} is out of range 0..=100")]
    RateOutOfRange(Decimal),
    /// `installment_count` is outside `1..=520`.
    #[error("installment_count: {0} is out of range 1..=520")]
    InstallmentCountOutOfRange(u32),
    /// `rounding.multiple` is zero or negative.
    #[error("rounding.multiple: {0} must be greater than 0")]
    RoundingMultipleNotPositive(Decimal),
    /// `rounding.multiple` is not a whole number of the currency's minor units.
    #[error("rounding.multiple: {value} is finer than the currency's {places} decimal places")]
    RoundingMultipleTooFine {
        /// The offending multiple.
        value: Decimal,
        /// `currency_decimal_places`.
        places: u32,
    },
    /// Rounding regular installments to `rounding.multiple` leaves no valid
    /// (non-negative, not exceeding the balance) remainder.
    #[error(
        "rounding.multiple: {multiple} is too coarse for principal {principal} over {count} installments"
    )]
    RoundingMultipleTooCoarse {
        /// `rounding.multiple`.
        multiple: Decimal,
        /// `principal`.
        principal: Decimal,
        /// `installment_count`.
        count: u32,
    },
    /// `first_repayment_date` is not after `disbursed_on`.
    #[error(
        "first_repayment_date: {first_repayment_date} is not after disbursed_on {disbursed_on}"
    )]
    FirstRepaymentNotAfterDisbursement {
        /// `first_repayment_date`.
        first_repayment_date: NaiveDate,
        /// `disbursed_on`.
        disbursed_on: NaiveDate,
    },
    /// `grace_on_principal` is not less than `installment_count`.
    #[error("grace_on_principal: {grace} must be less than installment_count {count}")]
    GraceOnPrincipalTooLong {
        /// `grace_on_principal`.
        grace: u32,
        /// `installment_count`.
        count: u32,
    },
    /// `grace_on_interest` is not less than `installment_count`.
    #[error("grace_on_interest: {grace} must be less than installment_count {count}")]
    GraceOnInterestTooLong {
        /// `grace_on_interest`.
        grace: u32,
        /// `installment_count`.
        count: u32,
    },
    /// A due date falls after [`DATE_MAX`] (or outside what `NaiveDate`
    /// can represent).
    #[error("first_repayment_date: installment {number} would fall due after {DATE_MAX}")]
    DueDateOutOfRange {
        /// 1-based number of the first installment due too late.
        number: u32,
    },
    /// Rounding leaves an installment outside the grace periods with
    /// nothing to pay (neither principal nor interest).
    #[error(
        "rounding.multiple: {multiple} rounds installment {number} to 0; use a smaller multiple, fewer installments or a larger principal"
    )]
    InstallmentZero {
        /// 1-based number of the first such installment.
        number: u32,
        /// `rounding.multiple`.
        multiple: Decimal,
    },
    /// An amount passed to [`recast`] (`balance` or `first_interest`) is
    /// negative or has more decimals than the currency allows.
    #[error(
        "{field}: {value} must be zero or more with at most the currency's {places} decimal places"
    )]
    RecastAmountInvalid {
        /// `"balance"` or `"first_interest"`.
        field: &'static str,
        /// The offending amount.
        value: Decimal,
        /// `currency_decimal_places`.
        places: u32,
    },
    /// [`recast`] was given no installments but something to spread over them.
    #[error("future: no installments to recast a balance of {balance} over")]
    RecastWithoutInstallments {
        /// The balance that had nowhere to go.
        balance: Decimal,
    },
    /// A recast installment is due before `period_start` or not after the
    /// installment before it.
    #[error("future: installment {number} is not due after the start of its period")]
    RecastDatesOutOfOrder {
        /// `number` of the offending installment.
        number: u32,
    },
    /// [`interest_for_days`] was given a period that does not end after it starts.
    #[error("period_end: {period_end} is not after period_start {period_start}")]
    PeriodEmpty {
        /// `period_start`.
        period_start: NaiveDate,
        /// `period_end`.
        period_end: NaiveDate,
    },
    /// A `Decimal` operation overflowed.
    #[error("arithmetic overflow computing the schedule")]
    Overflow,
}

/// Validates the terms and computes the schedule.
///
/// Returns `installment_count` installments in due-date order whose
/// principal parts sum exactly to `principal`; every `fee` is zero.
///
/// Period `k` runs from the previous due date (`disbursed_on` for the first)
/// to installment `k`'s due date.
///
/// - **Flat**: total interest is `principal * rate * n / (100 * periods_per_year)`
///   ([`InterestPeriod::PerPeriod`]) or the sum over the periods of
///   `principal * rate / 100 * days / 365` ([`InterestPeriod::Actual365`]),
///   rounded half-even to the currency's decimals. Regular principal and
///   interest parts are each rounded to `rounding.multiple`; the last
///   installment takes what is left of both.
/// - **Declining balance**: each period's interest is charged on the running
///   balance and rounded half-even to the currency's decimals.
///   [`Amortization::EqualInstallments`]: the installment (annuity, per
///   [`InstallmentBasis`]) is rounded to `rounding.multiple`, its principal
///   part is the installment less the interest, and the last installment
///   takes the remaining balance. [`Amortization::EqualPrincipal`]: each
///   principal part is `principal / (n - grace_on_principal)` rounded to the
///   multiple, the last takes the remainder.
/// - At a zero rate both methods only split the principal.
/// - `grace_on_principal` `g`: installments `1..=g` repay no principal; the
///   principal is amortised over the remaining `n - g`.
/// - `grace_on_interest` `h`: installments `1..=h` carry no interest; what
///   those periods accrued is added to installment `h + 1` (deferred, not
///   forgiven).
/// - Only an installment in the grace on principal (`1..=g`) may come out
///   as zero; every later one has something to pay.
///
/// # Errors
/// A [`ScheduleError`] naming the offending field if the terms are invalid,
/// [`ScheduleError::DueDateOutOfRange`] if an installment would fall due
/// after [`DATE_MAX`], [`ScheduleError::RoundingMultipleTooCoarse`] if the
/// multiple leaves no valid last installment,
/// [`ScheduleError::InstallmentZero`] if it rounds an installment after the
/// grace to zero, and [`ScheduleError::Overflow`] if an amount does not fit
/// a [`Decimal`].
pub fn compute_schedule(terms: &LoanTerms) -> Result<Vec<Installment>, ScheduleError> {
    validate(terms)?;
    let dates = due_dates(terms)?;
    let days = period_days(terms.disbursed_on, &dates);
    let rounding = Rounding::from_terms(terms);
    let mut parts = if terms.annual_interest_rate_percent.is_zero() {
        principal_only_parts(terms, rounding)?
    } else {
        match terms.interest_method {
            InterestMethod::Flat => flat_parts(terms, rounding, &days)?,
            InterestMethod::DecliningBalance => declining_parts(terms, rounding, &days)?,
        }
    };
    defer_interest(&mut parts, terms.grace_on_interest as usize)?;
    let installments = dates
        .into_iter()
        .zip(parts)
        .zip(1u32..)
        .map(|((due_date, split), number)| installment(number, due_date, split, Decimal::ZERO))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(zero) = installments.iter().find(|i| {
        i.number > terms.grace_on_principal && i.principal.is_zero() && i.interest.is_zero()
    }) {
        return Err(ScheduleError::InstallmentZero {
            number: zero.number,
            multiple: terms.rounding.multiple,
        });
    }
    Ok(installments)
}

/// Recomputes the installments `future` (same numbers and due dates, in order)
/// for an outstanding principal `balance`, the first period starting on
/// `period_start`. Their principal parts sum exactly to `balance`.
///
/// Declining balance: interest per period on the running balance (per
/// `terms.interest_period`); [`Amortization::EqualInstallments`] => a new
/// equal installment over `future.len()` periods (per
/// `terms.installment_basis`), rounded per `terms.rounding`, last absorbs;
/// [`Amortization::EqualPrincipal`] => `balance / future.len()`.
/// If `first_interest` is `Some`, it is the first installment's interest
/// instead of the computed one (the caller day-weights a period in which the
/// balance changed); for an annuity the installment amount is still computed
/// from the balance, so the first principal part is that amount less
/// `first_interest`. Flat: each installment keeps its interest from `future`
/// (the first takes `first_interest` if given); principal is re-spread evenly
/// over `future.len()` (rounded per `terms.rounding`, last absorbs). No grace
/// is applied. `fee` is carried over from `future`.
/// `balance` may be zero (all principal parts zero; computed declining
/// interest zero; a given `first_interest` is still charged).
///
/// A recast never refuses a balance for being too small for the multiple:
/// - if a rounded annuity is so coarse that a principal part would go negative
///   or exceed the balance, the recast falls back to equal principal parts;
/// - if rounding equal principal parts with `terms.rounding.mode` would make
///   them overshoot the balance, they are rounded down (towards zero) to the
///   multiple instead, which never overshoots.
///
/// # Errors
/// [`ScheduleError`] if `terms` are invalid (as for [`compute_schedule`]),
/// [`ScheduleError::RecastAmountInvalid`] if `balance` or `first_interest` is
/// negative or finer than the currency's decimals,
/// [`ScheduleError::RecastWithoutInstallments`] if `future` is empty but
/// `balance` or `first_interest` is not zero,
/// [`ScheduleError::RecastDatesOutOfOrder`] if the first due date is before
/// `period_start` or the due dates do not increase, and
/// [`ScheduleError::Overflow`] if an amount does not fit a [`Decimal`].
pub fn recast(
    terms: &LoanTerms,
    balance: Decimal,
    period_start: NaiveDate,
    future: &[Installment],
    first_interest: Option<Decimal>,
) -> Result<Vec<Installment>, ScheduleError> {
    validate(terms)?;
    let places = terms.currency_decimal_places;
    validate_recast_amount("balance", balance, places)?;
    if let Some(value) = first_interest {
        validate_recast_amount("first_interest", value, places)?;
    }
    if future.is_empty() {
        if balance.is_zero() && first_interest.is_none_or(|i| i.is_zero()) {
            return Ok(Vec::new());
        }
        return Err(ScheduleError::RecastWithoutInstallments { balance });
    }
    let days = recast_days(period_start, future)?;
    let rounding = Rounding::from_terms(terms);
    let count = future.len();

    let parts = match terms.interest_method {
        InterestMethod::Flat => {
            let principals = lenient_equal_parts(rounding, balance, count)?;
            principals
                .into_iter()
                .zip(future)
                .enumerate()
                .map(|(k, (principal, inst))| Split {
                    principal,
                    interest: match (k, first_interest) {
                        (0, Some(interest)) => interest,
                        _ => inst.interest,
                    },
                })
                .collect()
        }
        InterestMethod::DecliningBalance => {
            let annuity = if terms.amortization == Amortization::EqualInstallments
                && !terms.annual_interest_rate_percent.is_zero()
            {
                let payment = rounding
                    .to_multiple(equal_installment(terms, balance, &days)?, rounding.mode)?;
                annuity_walk(terms, rounding, balance, &days, payment, first_interest)?
            } else {
                None
            };
            match annuity {
                Some(parts) => parts,
                None => {
                    let principals = lenient_equal_parts(rounding, balance, count)?;
                    declining_interest_walk(
                        terms,
                        rounding,
                        balance,
                        &days,
                        &principals,
                        first_interest,
                    )?
                }
            }
        }
    };
    future
        .iter()
        .zip(parts)
        .map(|(inst, split)| installment(inst.number, inst.due_date, split, inst.fee))
        .collect()
}

/// Unrounded interest on `balance` for the days `from..to` of the period
/// `period_start..period_end` (half-open, dates in days).
///
/// [`InterestPeriod::PerPeriod`]: `balance * rate/100/periods_per_year *
/// days(from..to) / days(period)`; [`InterestPeriod::Actual365`]: `balance *
/// rate/100 * days(from..to)/365`. Flat loans use the same formula (the
/// caller passes the original principal). Zero when `from >= to`. `from..to`
/// is not clamped to the period. The result is exact whenever it is a finite
/// decimal that fits (it multiplies before dividing).
///
/// # Errors
/// [`ScheduleError::PeriodEmpty`] if `from < to` but `period_end` is not
/// after `period_start`; [`ScheduleError::Overflow`] if the amount does not
/// fit a [`Decimal`].
pub fn interest_for_days(
    terms: &LoanTerms,
    balance: Decimal,
    period_start: NaiveDate,
    period_end: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Decimal, ScheduleError> {
    if from >= to {
        return Ok(Decimal::ZERO);
    }
    if period_end <= period_start {
        return Err(ScheduleError::PeriodEmpty {
            period_start,
            period_end,
        });
    }
    let days = Decimal::from((to - from).num_days());
    let scaled = checked(balance.checked_mul(terms.annual_interest_rate_percent))?;
    let scaled = checked(scaled.checked_mul(days))?;
    let divisor = match terms.interest_period {
        InterestPeriod::PerPeriod => {
            let period_days = Decimal::from((period_end - period_start).num_days());
            checked(period_divisor(terms).checked_mul(period_days))?
        }
        InterestPeriod::Actual365 => DAYS_DIVISOR,
    };
    checked(scaled.checked_div(divisor))
}

/// `100 * 365`: turns `balance * rate_percent * days` into interest.
const DAYS_DIVISOR: Decimal = Decimal::from_parts(36_500, 0, 0, false, 0);

impl RoundingMode {
    /// The `rust_decimal` strategy this mode rounds with.
    pub(crate) fn strategy(self) -> RoundingStrategy {
        match self {
            Self::HalfEven => RoundingStrategy::MidpointNearestEven,
            Self::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Self::Down => RoundingStrategy::ToZero,
            Self::Up => RoundingStrategy::AwayFromZero,
        }
    }
}

/// Principal and interest of one installment, before dates are attached.
#[derive(Clone, Copy, Debug)]
struct Split {
    principal: Decimal,
    interest: Decimal,
}

/// The two roundings the schedule uses.
#[derive(Clone, Copy, Debug)]
struct Rounding {
    places: u32,
    multiple: Decimal,
    mode: RoundingStrategy,
}

impl Rounding {
    fn from_terms(terms: &LoanTerms) -> Self {
        Self {
            places: terms.currency_decimal_places,
            multiple: terms.rounding.multiple,
            mode: terms.rounding.mode.strategy(),
        }
    }

    /// `x` rounded half-even to the currency's decimal places.
    fn money(self, x: Decimal) -> Decimal {
        x.round_dp_with_strategy(self.places, RoundingStrategy::MidpointNearestEven)
    }

    /// `x` rounded to a multiple of `rounding.multiple` with `strategy`.
    fn to_multiple(self, x: Decimal, strategy: RoundingStrategy) -> Result<Decimal, ScheduleError> {
        let units = checked(x.checked_div(self.multiple))?.round_dp_with_strategy(0, strategy);
        checked(units.checked_mul(self.multiple))
    }
}

/// Turns a failed checked operation into [`ScheduleError::Overflow`].
fn checked<T>(value: Option<T>) -> Result<T, ScheduleError> {
    value.ok_or(ScheduleError::Overflow)
}

fn due_dates(terms: &LoanTerms) -> Result<Vec<NaiveDate>, ScheduleError> {
    (0..terms.installment_count)
        .map(|index| {
            terms
                .frequency
                .due_date(terms.first_repayment_date, index)
                .filter(|due| *due <= DATE_MAX)
                .ok_or(ScheduleError::DueDateOutOfRange { number: index + 1 })
        })
        .collect()
}

/// Length in days of each period, the first starting on `start`.
fn period_days(start: NaiveDate, dues: &[NaiveDate]) -> Vec<i64> {
    let mut previous = start;
    dues.iter()
        .map(|&due| {
            let days = (due - previous).num_days();
            previous = due;
            days
        })
        .collect()
}

/// Period lengths for a recast, checking the dates are in order.
fn recast_days(period_start: NaiveDate, future: &[Installment]) -> Result<Vec<i64>, ScheduleError> {
    let mut previous: Option<NaiveDate> = None;
    for inst in future {
        let in_order = match previous {
            None => inst.due_date >= period_start,
            Some(before) => inst.due_date > before,
        };
        if !in_order {
            return Err(ScheduleError::RecastDatesOutOfOrder {
                number: inst.number,
            });
        }
        previous = Some(inst.due_date);
    }
    let dues: Vec<NaiveDate> = future.iter().map(|i| i.due_date).collect();
    Ok(period_days(period_start, &dues))
}

fn too_coarse(terms: &LoanTerms) -> ScheduleError {
    ScheduleError::RoundingMultipleTooCoarse {
        multiple: terms.rounding.multiple,
        principal: terms.principal,
        count: terms.installment_count,
    }
}

/// `100 * periods_per_year`: the divisor turning a percent-a-year rate into a
/// per-period fraction.
fn period_divisor(terms: &LoanTerms) -> Decimal {
    Decimal::ONE_HUNDRED * Decimal::from(terms.frequency.periods_per_year())
}

/// Nominal period rate `i = annual_interest_rate_percent / 100 / periods_per_year`.
fn period_rate(terms: &LoanTerms) -> Result<Decimal, ScheduleError> {
    checked(
        terms
            .annual_interest_rate_percent
            .checked_div(period_divisor(terms)),
    )
}

/// Unrounded interest on `balance` for one period of `days` days, per
/// `terms.interest_period`. Multiplies before dividing so the result is exact
/// whenever it is representable (a half-unit tie stays a tie).
fn period_interest(
    terms: &LoanTerms,
    balance: Decimal,
    days: i64,
) -> Result<Decimal, ScheduleError> {
    let scaled = checked(balance.checked_mul(terms.annual_interest_rate_percent))?;
    match terms.interest_period {
        InterestPeriod::PerPeriod => checked(scaled.checked_div(period_divisor(terms))),
        InterestPeriod::Actual365 => day_based_interest(terms, balance, days),
    }
}

/// Unrounded `balance * rate/100 * days/365`, multiplying before dividing.
fn day_based_interest(
    terms: &LoanTerms,
    balance: Decimal,
    days: i64,
) -> Result<Decimal, ScheduleError> {
    let scaled = checked(balance.checked_mul(terms.annual_interest_rate_percent))?;
    let scaled = checked(scaled.checked_mul(Decimal::from(days)))?;
    checked(scaled.checked_div(DAYS_DIVISOR))
}

/// `balance`'s interest for one period, rounded half-even to the currency.
fn rounded_interest(
    terms: &LoanTerms,
    rounding: Rounding,
    balance: Decimal,
    days: i64,
) -> Result<Decimal, ScheduleError> {
    Ok(rounding.money(period_interest(terms, balance, days)?))
}

/// Unrounded total flat interest over all periods.
fn flat_total_interest(terms: &LoanTerms, days: &[i64]) -> Result<Decimal, ScheduleError> {
    match terms.interest_period {
        InterestPeriod::PerPeriod => {
            let base = checked(
                terms
                    .principal
                    .checked_mul(Decimal::from(terms.installment_count)),
            )?;
            period_interest(terms, base, 0)
        }
        InterestPeriod::Actual365 => {
            let total_days = days.iter().try_fold(0i64, |acc, &d| acc.checked_add(d));
            period_interest(terms, terms.principal, checked(total_days)?)
        }
    }
}

/// `total` split into `count` parts rounded to the multiple with `strategy`,
/// the last taking the remainder; `None` if the remainder would be negative.
fn equal_parts(
    rounding: Rounding,
    total: Decimal,
    count: usize,
    strategy: RoundingStrategy,
) -> Result<Option<Vec<Decimal>>, ScheduleError> {
    let regular =
        rounding.to_multiple(checked(total.checked_div(Decimal::from(count)))?, strategy)?;
    let regular_sum = checked(regular.checked_mul(Decimal::from(count - 1)))?;
    let last = checked(total.checked_sub(regular_sum))?;
    if last < Decimal::ZERO {
        return Ok(None);
    }
    let mut parts = vec![regular; count - 1];
    parts.push(last);
    Ok(Some(parts))
}

/// [`equal_parts`] with the terms' mode, falling back to rounding down (which
/// never overshoots: `floor(total / count) * (count - 1) <= total`).
fn lenient_equal_parts(
    rounding: Rounding,
    total: Decimal,
    count: usize,
) -> Result<Vec<Decimal>, ScheduleError> {
    if let Some(parts) = equal_parts(rounding, total, count, rounding.mode)? {
        return Ok(parts);
    }
    // Unreachable in exact arithmetic; kept as an error rather than a panic.
    equal_parts(rounding, total, count, RoundingStrategy::ToZero)?.ok_or(ScheduleError::Overflow)
}

/// `count - grace` equal principal parts (strict: too coarse is an error),
/// preceded by `grace` zero parts.
fn graced_principal_parts(
    terms: &LoanTerms,
    rounding: Rounding,
) -> Result<Vec<Decimal>, ScheduleError> {
    let grace = terms.grace_on_principal as usize;
    let amortising = terms.installment_count as usize - grace;
    let parts = equal_parts(rounding, terms.principal, amortising, rounding.mode)?
        .ok_or_else(|| too_coarse(terms))?;
    let mut principals = vec![Decimal::ZERO; grace];
    principals.extend(parts);
    Ok(principals)
}

/// Any method at a zero rate: principal only.
fn principal_only_parts(
    terms: &LoanTerms,
    rounding: Rounding,
) -> Result<Vec<Split>, ScheduleError> {
    Ok(graced_principal_parts(terms, rounding)?
        .into_iter()
        .map(|principal| Split {
            principal,
            interest: Decimal::ZERO,
        })
        .collect())
}

/// Flat method at a non-zero rate.
fn flat_parts(
    terms: &LoanTerms,
    rounding: Rounding,
    days: &[i64],
) -> Result<Vec<Split>, ScheduleError> {
    let total_interest = rounding.money(flat_total_interest(terms, days)?);
    let interests = equal_parts(
        rounding,
        total_interest,
        terms.installment_count as usize,
        rounding.mode,
    )?
    .ok_or_else(|| too_coarse(terms))?;
    let principals = graced_principal_parts(terms, rounding)?;
    Ok(principals
        .into_iter()
        .zip(interests)
        .map(|(principal, interest)| Split {
            principal,
            interest,
        })
        .collect())
}

/// Declining balance at a non-zero rate: interest-only grace periods, then
/// the amortisation.
fn declining_parts(
    terms: &LoanTerms,
    rounding: Rounding,
    days: &[i64],
) -> Result<Vec<Split>, ScheduleError> {
    let (grace_days, amortising_days) = days.split_at(terms.grace_on_principal as usize);
    let mut parts = Vec::with_capacity(days.len());
    for &d in grace_days {
        parts.push(Split {
            principal: Decimal::ZERO,
            interest: rounded_interest(terms, rounding, terms.principal, d)?,
        });
    }
    let amortising = match terms.amortization {
        Amortization::EqualInstallments => {
            let payment = rounding.to_multiple(
                equal_installment(terms, terms.principal, amortising_days)?,
                rounding.mode,
            )?;
            annuity_walk(
                terms,
                rounding,
                terms.principal,
                amortising_days,
                payment,
                None,
            )?
            .ok_or_else(|| too_coarse(terms))?
        }
        Amortization::EqualPrincipal => {
            let principals = equal_parts(
                rounding,
                terms.principal,
                amortising_days.len(),
                rounding.mode,
            )?
            .ok_or_else(|| too_coarse(terms))?;
            declining_interest_walk(
                terms,
                rounding,
                terms.principal,
                amortising_days,
                &principals,
                None,
            )?
        }
    };
    parts.extend(amortising);
    Ok(parts)
}

/// `(1 + i)^n` by repeated checked multiplication.
fn compound_factor(i: Decimal, n: usize) -> Result<Decimal, ScheduleError> {
    let base = checked(Decimal::ONE.checked_add(i))?;
    (0..n).try_fold(Decimal::ONE, |acc, _| checked(acc.checked_mul(base)))
}

/// Unrounded annuity payment `P * i / (1 - (1 + i)^-n)`, computed as
/// `P * (i * q / (q - 1))` with `q = (1 + i)^n` to avoid overflowing on
/// `P * q`. Falls back to `P / n` (the limit as `i -> 0`) if `i` is too small
/// for `q` to differ from 1 at Decimal precision.
fn annuity_payment(principal: Decimal, i: Decimal, n: usize) -> Result<Decimal, ScheduleError> {
    let q = compound_factor(i, n)?;
    let q_minus_one = checked(q.checked_sub(Decimal::ONE))?;
    if q_minus_one <= Decimal::ZERO {
        return checked(principal.checked_div(Decimal::from(n)));
    }
    let factor = checked(checked(i.checked_mul(q))?.checked_div(q_minus_one))?;
    checked(principal.checked_mul(factor))
}

/// Unrounded payment `A = P / sum_{k} prod_{j<=k} 1/(1+i_j)` with each
/// period's own day-based rate `i_j = rate/100 * days_j/365`: paying `A`
/// each period amortises `P` exactly at those rates.
fn actual_rates_payment(
    terms: &LoanTerms,
    principal: Decimal,
    days: &[i64],
) -> Result<Decimal, ScheduleError> {
    let mut discount = Decimal::ONE;
    let mut annuity_factor = Decimal::ZERO;
    for &d in days {
        let i = day_based_interest(terms, Decimal::ONE, d)?;
        let growth = checked(Decimal::ONE.checked_add(i))?;
        discount = checked(discount.checked_div(growth))?;
        annuity_factor = checked(annuity_factor.checked_add(discount))?;
    }
    checked(principal.checked_div(annuity_factor))
}

/// Unrounded equal installment amortising `principal` over the periods
/// `days`, per `terms.installment_basis`.
fn equal_installment(
    terms: &LoanTerms,
    principal: Decimal,
    days: &[i64],
) -> Result<Decimal, ScheduleError> {
    match terms.installment_basis {
        InstallmentBasis::NominalPeriodRate => {
            annuity_payment(principal, period_rate(terms)?, days.len())
        }
        InstallmentBasis::ActualPeriodRates => actual_rates_payment(terms, principal, days),
    }
}

/// Walks an annuity of `payment` over the periods `days` from `balance`:
/// interest on the running balance (or `first_interest` for the first),
/// principal = payment - interest, the last takes the remaining balance.
/// `None` if the payment is too coarse: a principal part would be negative
/// or exceed the balance.
fn annuity_walk(
    terms: &LoanTerms,
    rounding: Rounding,
    balance: Decimal,
    days: &[i64],
    payment: Decimal,
    first_interest: Option<Decimal>,
) -> Result<Option<Vec<Split>>, ScheduleError> {
    let mut balance = balance;
    let mut parts = Vec::with_capacity(days.len());
    for (k, &d) in days.iter().enumerate() {
        let interest = match (k, first_interest) {
            (0, Some(interest)) => interest,
            _ => rounded_interest(terms, rounding, balance, d)?,
        };
        let principal = if k + 1 == days.len() {
            balance
        } else {
            checked(payment.checked_sub(interest))?
        };
        if principal < Decimal::ZERO || principal > balance {
            return Ok(None);
        }
        balance = checked(balance.checked_sub(principal))?;
        parts.push(Split {
            principal,
            interest,
        });
    }
    Ok(Some(parts))
}

/// Pairs the given principal parts with interest on the running balance
/// (or `first_interest` for the first period).
fn declining_interest_walk(
    terms: &LoanTerms,
    rounding: Rounding,
    balance: Decimal,
    days: &[i64],
    principals: &[Decimal],
    first_interest: Option<Decimal>,
) -> Result<Vec<Split>, ScheduleError> {
    let mut balance = balance;
    let mut parts = Vec::with_capacity(days.len());
    for (k, (&d, &principal)) in days.iter().zip(principals).enumerate() {
        let interest = match (k, first_interest) {
            (0, Some(interest)) => interest,
            _ => rounded_interest(terms, rounding, balance, d)?,
        };
        balance = checked(balance.checked_sub(principal))?;
        parts.push(Split {
            principal,
            interest,
        });
    }
    Ok(parts)
}

/// Moves the interest of the first `grace` installments to installment
/// `grace + 1` (`grace < parts.len()` is validated).
fn defer_interest(parts: &mut [Split], grace: usize) -> Result<(), ScheduleError> {
    if grace == 0 {
        return Ok(());
    }
    let mut deferred = Decimal::ZERO;
    for split in &mut parts[..grace] {
        deferred = checked(deferred.checked_add(split.interest))?;
        split.interest = Decimal::ZERO;
    }
    let receiver = &mut parts[grace];
    receiver.interest = checked(receiver.interest.checked_add(deferred))?;
    Ok(())
}

/// One installment, checking that its total fits a [`Decimal`].
fn installment(
    number: u32,
    due_date: NaiveDate,
    split: Split,
    fee: Decimal,
) -> Result<Installment, ScheduleError> {
    let parts = checked(split.principal.checked_add(split.interest))?;
    checked(parts.checked_add(fee))?;
    Ok(Installment {
        number,
        due_date,
        principal: split.principal,
        interest: split.interest,
        fee,
    })
}

#[cfg(test)]
mod tests;
