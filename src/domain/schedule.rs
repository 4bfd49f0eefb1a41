//! Loan repayment schedules.
//!
//! Given the [`LoanTerms`] a loan is disbursed under, [`compute_schedule`]
//! validates them and returns one [`Installment`] per repayment: its due date,
//! its principal part and its interest part.
//!
//! Two interest methods are supported ([`InterestMethod`]):
//! - **Flat**: interest is charged on the original principal for the whole
//!   term and spread evenly over the installments.
//! - **Declining balance**: equal installments (an annuity); each period's
//!   interest is charged on the outstanding balance.
//!
//! All money is [`Decimal`], all arithmetic is checked (overflow becomes
//! [`ScheduleError::Overflow`], never a panic) and every rounding is explicit
//! banker's rounding ([`RoundingStrategy::MidpointNearestEven`]). Regular
//! installments are rounded to the terms' `rounding_multiple`; the last
//! installment absorbs what rounding left over.
//!
//! The module is pure: no I/O, no clock, no global state.

use chrono::{Days, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

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

/// The terms a loan is disbursed under (a product catalogue will supply them later).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanTerms {
    /// Amount lent; must be > 0 with at most `currency_decimal_places` decimals.
    #[serde(with = "crate::domain::codec::decimal")]
    pub principal: Decimal,
    /// Nominal yearly rate in percent, `0 <= r <= 100`; 18 means 18% a year.
    #[serde(with = "crate::domain::codec::decimal")]
    pub annual_interest_rate_percent: Decimal,
    /// How interest is charged.
    pub interest_method: InterestMethod,
    /// Number of installments, `1..=520`.
    pub installment_count: u32,
    /// How often installments fall due.
    pub frequency: RepaymentFrequency,
    /// Due date of the first installment.
    #[serde(with = "crate::domain::codec::date")]
    pub first_repayment_date: NaiveDate,
    /// Regular installments are rounded to a multiple of this, e.g. 1 (whole
    /// dong), 1000, or 0.01; must be > 0 and a whole number of minor units.
    #[serde(with = "crate::domain::codec::decimal")]
    pub rounding_multiple: Decimal,
    /// The currency's minor-unit exponent: VND 0, USD 2.
    pub currency_decimal_places: u32,
}

/// One scheduled repayment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installment {
    /// 1-based position in the schedule.
    pub number: u32,
    /// Date the installment falls due.
    #[serde(with = "crate::domain::codec::date")]
    pub due_date: NaiveDate,
    /// Part of the installment that repays principal.
    #[serde(with = "crate::domain::codec::decimal")]
    pub principal: Decimal,
    /// Part of the installment that pays interest.
    #[serde(with = "crate::domain::codec::decimal")]
    pub interest: Decimal,
}

impl Installment {
    /// Amount due: principal plus interest.
    ///
    /// # Panics
    /// Only if the installment was built by hand with parts whose sum
    /// overflows [`Decimal`]; [`compute_schedule`] checks this sum for every
    /// installment it returns, so those never panic.
    pub fn total(&self) -> Decimal {
        self.principal + self.interest
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
    /// `rounding_multiple` is zero or negative.
    #[error("rounding_multiple: {0} must be greater than 0")]
    RoundingMultipleNotPositive(Decimal),
    /// `rounding_multiple` is not a whole number of the currency's minor units.
    #[error("rounding_multiple: {value} is finer than the currency's {places} decimal places")]
    RoundingMultipleTooFine {
        /// The offending multiple.
        value: Decimal,
        /// `currency_decimal_places`.
        places: u32,
    },
    /// Rounding regular installments to `rounding_multiple` leaves no valid
    /// (non-negative, not exceeding the balance) remainder.
    #[error(
        "rounding_multiple: {multiple} is too coarse for principal {principal} over {count} installments"
    )]
    RoundingMultipleTooCoarse {
        /// `rounding_multiple`.
        multiple: Decimal,
        /// `principal`.
        principal: Decimal,
        /// `installment_count`.
        count: u32,
    },
    /// A due date falls outside the range `NaiveDate` can represent.
    #[error(
        "first_repayment_date: due date of installment {number} is out of the representable range"
    )]
    DueDateOutOfRange {
        /// 1-based number of the first installment whose date overflows.
        number: u32,
    },
    /// A `Decimal` operation overflowed.
    #[error("arithmetic overflow computing the schedule")]
    Overflow,
}

/// Validates the terms and computes the schedule.
///
/// Returns `installment_count` installments in due-date order whose
/// principal parts sum exactly to `principal`.
pub fn compute_schedule(terms: &LoanTerms) -> Result<Vec<Installment>, ScheduleError> {
    validate(terms)?;
    let dates = due_dates(terms)?;
    let rounding = Rounding::from_terms(terms);
    let parts = if period_rate(terms)?.is_zero() {
        flat_parts(terms, rounding)?
    } else {
        match terms.interest_method {
            InterestMethod::Flat => flat_parts(terms, rounding)?,
            InterestMethod::DecliningBalance => annuity_parts(terms, rounding)?,
        }
    };
    assemble(dates, parts)
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
}

impl Rounding {
    fn from_terms(terms: &LoanTerms) -> Self {
        Self {
            places: terms.currency_decimal_places,
            multiple: terms.rounding_multiple,
        }
    }

    /// `x` rounded half-even to the currency's decimal places.
    fn money(self, x: Decimal) -> Decimal {
        x.round_dp_with_strategy(self.places, RoundingStrategy::MidpointNearestEven)
    }

    /// `x` rounded half-even to the nearest multiple of `rounding_multiple`.
    fn nearest_multiple(self, x: Decimal) -> Result<Decimal, ScheduleError> {
        let units = checked(x.checked_div(self.multiple))?
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
        checked(units.checked_mul(self.multiple))
    }
}

/// Turns a failed checked operation into [`ScheduleError::Overflow`].
fn checked<T>(value: Option<T>) -> Result<T, ScheduleError> {
    value.ok_or(ScheduleError::Overflow)
}

fn has_at_most_places(value: Decimal, places: u32) -> bool {
    value.normalize().scale() <= places
}

fn validate(terms: &LoanTerms) -> Result<(), ScheduleError> {
    validate_principal(terms)?;
    validate_rate(terms.annual_interest_rate_percent)?;
    validate_count(terms.installment_count)?;
    validate_rounding_multiple(terms)
}

fn validate_principal(terms: &LoanTerms) -> Result<(), ScheduleError> {
    let value = terms.principal;
    let places = terms.currency_decimal_places;
    if value <= Decimal::ZERO {
        return Err(ScheduleError::PrincipalNotPositive(value));
    }
    if !has_at_most_places(value, places) {
        return Err(ScheduleError::PrincipalTooPrecise { value, places });
    }
    Ok(())
}

fn validate_rate(rate: Decimal) -> Result<(), ScheduleError> {
    if rate < Decimal::ZERO || rate > MAX_RATE_PERCENT {
        return Err(ScheduleError::RateOutOfRange(rate));
    }
    Ok(())
}

fn validate_count(count: u32) -> Result<(), ScheduleError> {
    if !(MIN_INSTALLMENTS..=MAX_INSTALLMENTS).contains(&count) {
        return Err(ScheduleError::InstallmentCountOutOfRange(count));
    }
    Ok(())
}

fn validate_rounding_multiple(terms: &LoanTerms) -> Result<(), ScheduleError> {
    let value = terms.rounding_multiple;
    let places = terms.currency_decimal_places;
    if value <= Decimal::ZERO {
        return Err(ScheduleError::RoundingMultipleNotPositive(value));
    }
    if !has_at_most_places(value, places) {
        return Err(ScheduleError::RoundingMultipleTooFine { value, places });
    }
    Ok(())
}

fn due_dates(terms: &LoanTerms) -> Result<Vec<NaiveDate>, ScheduleError> {
    (0..terms.installment_count)
        .map(|index| {
            terms
                .frequency
                .due_date(terms.first_repayment_date, index)
                .ok_or(ScheduleError::DueDateOutOfRange { number: index + 1 })
        })
        .collect()
}

fn too_coarse(terms: &LoanTerms) -> ScheduleError {
    ScheduleError::RoundingMultipleTooCoarse {
        multiple: terms.rounding_multiple,
        principal: terms.principal,
        count: terms.installment_count,
    }
}

/// `100 * periods_per_year`: the divisor turning a percent-a-year rate into a
/// per-period fraction.
fn period_divisor(terms: &LoanTerms) -> Decimal {
    Decimal::ONE_HUNDRED * Decimal::from(terms.frequency.periods_per_year())
}

/// Period rate `i = annual_interest_rate_percent / 100 / periods_per_year`.
fn period_rate(terms: &LoanTerms) -> Result<Decimal, ScheduleError> {
    checked(
        terms
            .annual_interest_rate_percent
            .checked_div(period_divisor(terms)),
    )
}

/// `amount * i`, unrounded. Multiplies before dividing so the result is exact
/// whenever it is representable (a half-unit tie stays a tie).
fn period_interest(terms: &LoanTerms, amount: Decimal) -> Result<Decimal, ScheduleError> {
    let scaled = checked(amount.checked_mul(terms.annual_interest_rate_percent))?;
    checked(scaled.checked_div(period_divisor(terms)))
}

/// `total - each * regular_count`, or a too-coarse error if negative.
fn remainder(
    terms: &LoanTerms,
    total: Decimal,
    each: Decimal,
    regular_count: Decimal,
) -> Result<Decimal, ScheduleError> {
    let regular_sum = checked(each.checked_mul(regular_count))?;
    let rest = checked(total.checked_sub(regular_sum))?;
    if rest < Decimal::ZERO {
        return Err(too_coarse(terms));
    }
    Ok(rest)
}

/// Flat method (also used for any method at a zero rate).
fn flat_parts(terms: &LoanTerms, rounding: Rounding) -> Result<Vec<Split>, ScheduleError> {
    let count = Decimal::from(terms.installment_count);
    let regular_count = Decimal::from(terms.installment_count - 1);
    let interest_base = checked(terms.principal.checked_mul(count))?;
    let total_interest = rounding.money(period_interest(terms, interest_base)?);

    let regular = Split {
        principal: rounding.nearest_multiple(checked(terms.principal.checked_div(count))?)?,
        interest: rounding.nearest_multiple(checked(total_interest.checked_div(count))?)?,
    };
    let last = Split {
        principal: remainder(terms, terms.principal, regular.principal, regular_count)?,
        interest: remainder(terms, total_interest, regular.interest, regular_count)?,
    };

    let mut parts = vec![regular; regular_count_usize(terms)];
    parts.push(last);
    Ok(parts)
}

/// Number of installments before the last (`installment_count` is validated >= 1).
fn regular_count_usize(terms: &LoanTerms) -> usize {
    terms.installment_count as usize - 1
}

/// `(1 + i)^n` by repeated checked multiplication.
fn compound_factor(i: Decimal, n: u32) -> Result<Decimal, ScheduleError> {
    let base = checked(Decimal::ONE.checked_add(i))?;
    (0..n).try_fold(Decimal::ONE, |acc, _| checked(acc.checked_mul(base)))
}

/// Unrounded annuity payment `P * i / (1 - (1 + i)^-n)`, computed as
/// `P * (i * q / (q - 1))` with `q = (1 + i)^n` to avoid overflowing on
/// `P * q`. Falls back to `P / n` (the limit as `i -> 0`) if `i` is too small
/// for `q` to differ from 1 at Decimal precision.
fn annuity_payment(principal: Decimal, i: Decimal, n: u32) -> Result<Decimal, ScheduleError> {
    let q = compound_factor(i, n)?;
    let q_minus_one = checked(q.checked_sub(Decimal::ONE))?;
    if q_minus_one <= Decimal::ZERO {
        return checked(principal.checked_div(Decimal::from(n)));
    }
    let factor = checked(checked(i.checked_mul(q))?.checked_div(q_minus_one))?;
    checked(principal.checked_mul(factor))
}

/// Declining balance, equal installments (annuity) at a non-zero rate.
fn annuity_parts(terms: &LoanTerms, rounding: Rounding) -> Result<Vec<Split>, ScheduleError> {
    let n = terms.installment_count;
    let payment =
        rounding.nearest_multiple(annuity_payment(terms.principal, period_rate(terms)?, n)?)?;

    let mut balance = terms.principal;
    let mut parts = Vec::with_capacity(regular_count_usize(terms) + 1);
    for _ in 1..n {
        let split = annuity_split(terms, rounding, payment, balance)?;
        balance = checked(balance.checked_sub(split.principal))?;
        parts.push(split);
    }
    let interest = rounding.money(period_interest(terms, balance)?);
    parts.push(Split {
        principal: balance,
        interest,
    });
    Ok(parts)
}

/// One regular annuity installment: interest on `balance`, the rest of
/// `payment` repays principal.
fn annuity_split(
    terms: &LoanTerms,
    rounding: Rounding,
    payment: Decimal,
    balance: Decimal,
) -> Result<Split, ScheduleError> {
    let interest = rounding.money(period_interest(terms, balance)?);
    let principal = checked(payment.checked_sub(interest))?;
    if principal < Decimal::ZERO || principal > balance {
        return Err(too_coarse(terms));
    }
    Ok(Split {
        principal,
        interest,
    })
}

/// Numbers the installments, attaches due dates and checks every total fits.
fn assemble(dates: Vec<NaiveDate>, parts: Vec<Split>) -> Result<Vec<Installment>, ScheduleError> {
    dates
        .into_iter()
        .zip(parts)
        .zip(1u32..)
        .map(|((due_date, split), number)| {
            checked(split.principal.checked_add(split.interest))?;
            Ok(Installment {
                number,
                due_date,
                principal: split.principal,
                interest: split.interest,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Expected figures were worked out independently of this module, by hand
    //! and with Python's `fractions` + `decimal` (ROUND_HALF_EVEN); the
    //! derivation sits beside each assertion.

    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("valid decimal literal")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    /// 10,000,000 VND, whole-dong rounding; callers override the rest.
    fn vnd_terms(
        rate: &str,
        method: InterestMethod,
        count: u32,
        frequency: RepaymentFrequency,
    ) -> LoanTerms {
        LoanTerms {
            principal: dec("10000000"),
            annual_interest_rate_percent: dec(rate),
            interest_method: method,
            installment_count: count,
            frequency,
            first_repayment_date: date(2024, 1, 1),
            rounding_multiple: Decimal::ONE,
            currency_decimal_places: 0,
        }
    }

    fn parts(schedule: &[Installment]) -> Vec<(Decimal, Decimal)> {
        schedule.iter().map(|i| (i.principal, i.interest)).collect()
    }

    fn sum_principal(schedule: &[Installment]) -> Decimal {
        schedule.iter().map(|i| i.principal).sum()
    }

    fn sum_interest(schedule: &[Installment]) -> Decimal {
        schedule.iter().map(|i| i.interest).sum()
    }

    fn error_of(terms: &LoanTerms) -> ScheduleError {
        compute_schedule(terms).expect_err("terms should be rejected")
    }

    // ---- RepaymentFrequency -------------------------------------------------

    #[test]
    fn periods_per_year_are_52_26_12() {
        assert_eq!(RepaymentFrequency::Weekly.periods_per_year(), 52);
        assert_eq!(RepaymentFrequency::Fortnightly.periods_per_year(), 26);
        assert_eq!(RepaymentFrequency::Monthly.periods_per_year(), 12);
    }

    #[test]
    fn fortnightly_due_dates_step_14_days() {
        // 1 Jan 2024 + 14 = 15 Jan; + 28 = 29 Jan; + 42 = 12 Feb.
        let f = RepaymentFrequency::Fortnightly;
        let first = date(2024, 1, 1);
        assert_eq!(f.due_date(first, 0), Some(first));
        assert_eq!(f.due_date(first, 1), Some(date(2024, 1, 15)));
        assert_eq!(f.due_date(first, 3), Some(date(2024, 2, 12)));
    }

    #[test]
    fn monthly_due_dates_across_month_ends_count_from_first_date() {
        // Each date is first + k months, clamped to the month's last day:
        // 31 Jan 2024 -> 29 Feb 2024 (leap year) -> 31 Mar -> 30 Apr -> 31 May.
        let f = RepaymentFrequency::Monthly;
        let first = date(2024, 1, 31);
        let dates: Vec<_> = (0..5).map(|k| f.due_date(first, k).unwrap()).collect();
        assert_eq!(
            dates,
            vec![
                date(2024, 1, 31),
                date(2024, 2, 29),
                date(2024, 3, 31),
                date(2024, 4, 30),
                date(2024, 5, 31),
            ]
        );
    }

    #[test]
    fn monthly_schedule_uses_month_end_dates() {
        // Same dates as above, through compute_schedule.
        let mut terms = vnd_terms("12", InterestMethod::Flat, 4, RepaymentFrequency::Monthly);
        terms.first_repayment_date = date(2024, 1, 31);
        let dates: Vec<_> = compute_schedule(&terms)
            .unwrap()
            .iter()
            .map(|i| i.due_date)
            .collect();
        assert_eq!(
            dates,
            vec![
                date(2024, 1, 31),
                date(2024, 2, 29),
                date(2024, 3, 31),
                date(2024, 4, 30)
            ]
        );
    }

    #[test]
    fn due_date_overflow_is_none() {
        assert_eq!(RepaymentFrequency::Weekly.due_date(NaiveDate::MAX, 1), None);
        assert_eq!(
            RepaymentFrequency::Monthly.due_date(NaiveDate::MAX, 1),
            None
        );
        assert_eq!(
            RepaymentFrequency::Weekly.due_date(NaiveDate::MAX, 0),
            Some(NaiveDate::MAX)
        );
    }

    // ---- Flat ---------------------------------------------------------------

    #[test]
    fn flat_vnd_weekly_whole_dong() {
        // 10,000,000 VND at 18%/yr flat, 50 weekly installments, multiple 1.
        // i = 18/100/52; total interest = 10,000,000 * 0.18 * 50/52
        //   = 90,000,000/52 = 1,730,769.23 -> 1,730,769.
        // principal_k = 10,000,000/50 = 200,000; last = 10,000,000 - 49*200,000 = 200,000.
        // interest_k = 1,730,769/50 = 34,615.38 -> 34,615;
        // last = 1,730,769 - 49*34,615 = 1,730,769 - 1,696,135 = 34,634.
        let terms = vnd_terms("18", InterestMethod::Flat, 50, RepaymentFrequency::Weekly);
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(schedule.len(), 50);
        for inst in &schedule[..49] {
            assert_eq!(
                (inst.principal, inst.interest),
                (dec("200000"), dec("34615"))
            );
            assert_eq!(inst.total(), dec("234615"));
        }
        assert_eq!(schedule[49].principal, dec("200000"));
        assert_eq!(schedule[49].interest, dec("34634"));
        assert_eq!(sum_principal(&schedule), dec("10000000"));
        assert_eq!(sum_interest(&schedule), dec("1730769"));
        // Due dates: 1 Jan 2024 + 7*(n-1) days; n = 50 -> +343 days = 9 Dec 2024.
        for (k, inst) in schedule.iter().enumerate() {
            assert_eq!(inst.number, k as u32 + 1);
            let expected = date(2024, 1, 1) + chrono::Duration::days(7 * k as i64);
            assert_eq!(inst.due_date, expected);
        }
        assert_eq!(schedule[1].due_date, date(2024, 1, 8));
        assert_eq!(schedule[49].due_date, date(2024, 12, 9));
    }

    #[test]
    fn flat_rounding_to_1000_puts_remainder_on_last_installment() {
        // 10,000,000 VND over 12 monthly at 12%/yr, multiple 1,000.
        // principal: 10,000,000/12 = 833,333.33 -> 833,000;
        //   last = 10,000,000 - 11*833,000 = 10,000,000 - 9,163,000 = 837,000.
        // interest: 10,000,000 * 0.12 * 12/12 = 1,200,000; /12 = 100,000 (exact);
        //   last = 1,200,000 - 11*100,000 = 100,000.
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.rounding_multiple = dec("1000");
        let schedule = compute_schedule(&terms).unwrap();
        let mut expected = vec![(dec("833000"), dec("100000")); 11];
        expected.push((dec("837000"), dec("100000")));
        assert_eq!(parts(&schedule), expected);
        assert_eq!(sum_principal(&schedule), dec("10000000"));
    }

    #[test]
    fn flat_interest_remainder_lands_on_last_installment() {
        // As above at 20%/yr: total interest = 10,000,000 * 0.20 = 2,000,000;
        // /12 = 166,666.67 -> 167,000; last = 2,000,000 - 11*167,000
        //   = 2,000,000 - 1,837,000 = 163,000. Principal as above.
        let mut terms = vnd_terms("20", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.rounding_multiple = dec("1000");
        let schedule = compute_schedule(&terms).unwrap();
        let mut expected = vec![(dec("833000"), dec("167000")); 11];
        expected.push((dec("837000"), dec("163000")));
        assert_eq!(parts(&schedule), expected);
        assert_eq!(sum_interest(&schedule), dec("2000000"));
    }

    #[test]
    fn flat_single_installment_takes_everything() {
        // 10,000,000 at 12%/yr, 1 monthly: interest = 10,000,000 * 0.01 = 100,000.
        let terms = vnd_terms("12", InterestMethod::Flat, 1, RepaymentFrequency::Monthly);
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(parts(&schedule), vec![(dec("10000000"), dec("100000"))]);
    }

    // ---- Declining balance ----------------------------------------------------

    #[test]
    fn annuity_vnd_textbook() {
        // 10,000,000 VND, 12%/yr monthly, 12 months: i = 1%.
        // A = P*i/(1-(1+i)^-12) = 100,000/(1-1.01^-12) = 888,487.8868 -> 888,488.
        // k=1: interest 10,000,000*1% = 100,000; principal 888,488-100,000 = 788,488;
        //      balance 9,211,512.
        // k=2: interest 92,115.12 -> 92,115; principal 796,373; balance 8,415,139.
        // k=3: interest 84,151.39 -> 84,151; principal 804,337; balance 7,610,802.
        // ... (Python, same recurrence) balance before k=12: 879,688;
        // k=12: principal 879,688; interest 8,796.88 -> 8,797; total 888,485.
        let terms = vnd_terms(
            "12",
            InterestMethod::DecliningBalance,
            12,
            RepaymentFrequency::Monthly,
        );
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(schedule.len(), 12);
        assert_eq!(
            parts(&schedule[..3]),
            vec![
                (dec("788488"), dec("100000")),
                (dec("796373"), dec("92115")),
                (dec("804337"), dec("84151")),
            ]
        );
        for inst in &schedule[..11] {
            assert_eq!(inst.total(), dec("888488"));
        }
        assert_eq!(schedule[11].principal, dec("879688"));
        assert_eq!(schedule[11].interest, dec("8797"));
        assert_eq!(schedule[11].total(), dec("888485"));
        assert_eq!(sum_principal(&schedule), dec("10000000"));
        // Python: interest parts sum to 661,853.
        assert_eq!(sum_interest(&schedule), dec("661853"));
    }

    #[test]
    fn annuity_usd_two_decimals() {
        // 10,000.00 USD, 12%/yr monthly, 12 months, multiple 0.01: i = 1%.
        // A = 100/(1-1.01^-12) = 888.4879 -> 888.49.
        // k=1: interest 100.00, principal 788.49, balance 9,211.51.
        // k=2: interest 92.1151 -> 92.12, principal 796.37, balance 8,415.14.
        // k=3: interest 84.1514 -> 84.15, principal 804.34.
        // ... (Python) k=12: principal 879.67, interest 8.7967 -> 8.80, total 888.47.
        let terms = LoanTerms {
            principal: dec("10000.00"),
            annual_interest_rate_percent: dec("12"),
            interest_method: InterestMethod::DecliningBalance,
            installment_count: 12,
            frequency: RepaymentFrequency::Monthly,
            first_repayment_date: date(2024, 1, 15),
            rounding_multiple: dec("0.01"),
            currency_decimal_places: 2,
        };
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(
            parts(&schedule[..3]),
            vec![
                (dec("788.49"), dec("100.00")),
                (dec("796.37"), dec("92.12")),
                (dec("804.34"), dec("84.15")),
            ]
        );
        for inst in &schedule[..11] {
            assert_eq!(inst.total(), dec("888.49"));
        }
        assert_eq!(schedule[11].principal, dec("879.67"));
        assert_eq!(schedule[11].interest, dec("8.80"));
        assert_eq!(sum_principal(&schedule), dec("10000"));
        // Python: interest parts sum to 661.86.
        assert_eq!(sum_interest(&schedule), dec("661.86"));
    }

    #[test]
    fn annuity_rounded_to_1000_vnd() {
        // Same loan as the VND textbook case, multiple 1,000:
        // A = 888,487.89 -> 888.48789 thousands -> 888 -> 888,000.
        // k=1: interest 100,000, principal 788,000, balance 9,212,000.
        // k=2: interest 92,120, principal 795,880, balance 8,416,120.
        // k=3: interest 84,161.2 -> 84,161, principal 803,839.
        // ... (Python) balance before k=12: 885,334;
        // k=12: principal 885,334, interest 8,853.34 -> 8,853, total 894,187.
        let mut terms = vnd_terms(
            "12",
            InterestMethod::DecliningBalance,
            12,
            RepaymentFrequency::Monthly,
        );
        terms.rounding_multiple = dec("1000");
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(
            parts(&schedule[..3]),
            vec![
                (dec("788000"), dec("100000")),
                (dec("795880"), dec("92120")),
                (dec("803839"), dec("84161")),
            ]
        );
        for inst in &schedule[..11] {
            assert_eq!(inst.total(), dec("888000"));
        }
        assert_eq!(schedule[11].principal, dec("885334"));
        assert_eq!(schedule[11].interest, dec("8853"));
        assert_eq!(schedule[11].total(), dec("894187"));
        assert_eq!(sum_principal(&schedule), dec("10000000"));
    }

    #[test]
    fn annuity_single_installment() {
        // N = 1: A = P*i/(1-(1+i)^-1) = P*(1+i); principal P, interest P*i.
        // 10,000,000 at 12%/yr monthly: interest 100,000.
        let terms = vnd_terms(
            "12",
            InterestMethod::DecliningBalance,
            1,
            RepaymentFrequency::Monthly,
        );
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(parts(&schedule), vec![(dec("10000000"), dec("100000"))]);
    }

    #[test]
    fn period_interest_keeps_exact_ties_for_banker_rounding() {
        // Weekly at 1%/yr: i = 1/5200 is not a finite decimal. On a balance of
        // 2,600 the exact interest is 2,600/5,200 = 0.5, which half-even rounds
        // to 0 (multiplying by a rounded i would give 0.50000...002 -> 1).
        let terms = LoanTerms {
            principal: dec("2600"),
            annual_interest_rate_percent: dec("1"),
            interest_method: InterestMethod::DecliningBalance,
            installment_count: 1,
            frequency: RepaymentFrequency::Weekly,
            first_repayment_date: date(2024, 1, 1),
            rounding_multiple: Decimal::ONE,
            currency_decimal_places: 0,
        };
        let schedule = compute_schedule(&terms).unwrap();
        assert_eq!(parts(&schedule), vec![(dec("2600"), dec("0"))]);
    }

    // ---- Zero rate --------------------------------------------------------------

    #[test]
    fn zero_rate_both_methods_split_principal_only() {
        // 1,000,000 VND at 0% over 3 monthly: 1,000,000/3 = 333,333.33 -> 333,333;
        // last = 1,000,000 - 2*333,333 = 333,334; interest 0 everywhere.
        for method in [InterestMethod::Flat, InterestMethod::DecliningBalance] {
            let mut terms = vnd_terms("0", method, 3, RepaymentFrequency::Monthly);
            terms.principal = dec("1000000");
            let schedule = compute_schedule(&terms).unwrap();
            assert_eq!(
                parts(&schedule),
                vec![
                    (dec("333333"), Decimal::ZERO),
                    (dec("333333"), Decimal::ZERO),
                    (dec("333334"), Decimal::ZERO),
                ],
                "{method:?}"
            );
        }
    }

    // ---- Validation -------------------------------------------------------------

    #[test]
    fn rejects_zero_installments() {
        let terms = vnd_terms("12", InterestMethod::Flat, 0, RepaymentFrequency::Monthly);
        let err = error_of(&terms);
        assert_eq!(err, ScheduleError::InstallmentCountOutOfRange(0));
        assert_eq!(
            err.to_string(),
            "installment_count: 0 is out of range 1..=520"
        );
    }

    #[test]
    fn rejects_521_installments_but_accepts_520() {
        let terms = vnd_terms("12", InterestMethod::Flat, 521, RepaymentFrequency::Weekly);
        let err = error_of(&terms);
        assert_eq!(err, ScheduleError::InstallmentCountOutOfRange(521));
        assert_eq!(
            err.to_string(),
            "installment_count: 521 is out of range 1..=520"
        );
        let terms = vnd_terms("12", InterestMethod::Flat, 520, RepaymentFrequency::Weekly);
        assert_eq!(compute_schedule(&terms).unwrap().len(), 520);
    }

    #[test]
    fn rejects_rate_above_100_but_accepts_100() {
        let terms = vnd_terms("101", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        let err = error_of(&terms);
        assert_eq!(err, ScheduleError::RateOutOfRange(dec("101")));
        assert_eq!(
            err.to_string(),
            "annual_interest_rate_percent: 101 is out of range 0..=100"
        );
        let terms = vnd_terms("100", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        assert!(compute_schedule(&terms).is_ok());
    }

    #[test]
    fn rejects_negative_rate() {
        let terms = vnd_terms(
            "-0.5",
            InterestMethod::Flat,
            12,
            RepaymentFrequency::Monthly,
        );
        let err = error_of(&terms);
        assert_eq!(
            err.to_string(),
            "annual_interest_rate_percent: -0.5 is out of range 0..=100"
        );
    }

    #[test]
    fn rejects_zero_and_negative_principal() {
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.principal = Decimal::ZERO;
        assert_eq!(
            error_of(&terms).to_string(),
            "principal: 0 must be greater than 0"
        );
        terms.principal = dec("-5");
        assert_eq!(
            error_of(&terms),
            ScheduleError::PrincipalNotPositive(dec("-5"))
        );
    }

    #[test]
    fn rejects_principal_with_decimals_in_vnd() {
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.principal = dec("1000000.5");
        let err = error_of(&terms);
        assert_eq!(
            err,
            ScheduleError::PrincipalTooPrecise {
                value: dec("1000000.5"),
                places: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "principal: 1000000.5 has more than the currency's 0 decimal places"
        );
    }

    #[test]
    fn accepts_whole_principal_written_with_trailing_zeros() {
        // 10000000.00 is a whole number of dong; only the value matters.
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.principal = dec("10000000.00");
        assert!(compute_schedule(&terms).is_ok());
    }

    #[test]
    fn rejects_half_dong_rounding_multiple() {
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.rounding_multiple = dec("0.5");
        let err = error_of(&terms);
        assert_eq!(
            err,
            ScheduleError::RoundingMultipleTooFine {
                value: dec("0.5"),
                places: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "rounding_multiple: 0.5 is finer than the currency's 0 decimal places"
        );
    }

    #[test]
    fn rejects_zero_rounding_multiple() {
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.rounding_multiple = Decimal::ZERO;
        assert_eq!(
            error_of(&terms).to_string(),
            "rounding_multiple: 0 must be greater than 0"
        );
    }

    #[test]
    fn rejects_too_coarse_multiple_flat() {
        // 3,000 VND at 0% over 5, multiple 1,000: 3,000/5 = 600 -> 1,000;
        // last = 3,000 - 4*1,000 = -1,000 < 0 -> too coarse.
        let mut terms = vnd_terms("0", InterestMethod::Flat, 5, RepaymentFrequency::Monthly);
        terms.principal = dec("3000");
        terms.rounding_multiple = dec("1000");
        let err = error_of(&terms);
        assert_eq!(
            err,
            ScheduleError::RoundingMultipleTooCoarse {
                multiple: dec("1000"),
                principal: dec("3000"),
                count: 5
            }
        );
        assert_eq!(
            err.to_string(),
            "rounding_multiple: 1000 is too coarse for principal 3000 over 5 installments"
        );
    }

    #[test]
    fn rejects_too_coarse_multiple_declining() {
        // 1,000 VND at 12%/yr over 12 monthly, multiple 1,000:
        // A = 88.85 -> 0.08885 thousands -> 0; interest_1 = 10;
        // principal_1 = 0 - 10 < 0 -> too coarse.
        let mut terms = vnd_terms(
            "12",
            InterestMethod::DecliningBalance,
            12,
            RepaymentFrequency::Monthly,
        );
        terms.principal = dec("1000");
        terms.rounding_multiple = dec("1000");
        assert_eq!(
            error_of(&terms).to_string(),
            "rounding_multiple: 1000 is too coarse for principal 1000 over 12 installments"
        );
    }

    #[test]
    fn rejects_due_dates_beyond_calendar() {
        let mut terms = vnd_terms("12", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.first_repayment_date = NaiveDate::MAX;
        let err = error_of(&terms);
        assert_eq!(err, ScheduleError::DueDateOutOfRange { number: 2 });
        assert!(err.to_string().starts_with("first_repayment_date: "));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        // MAX * 100% * 12 / 1200 overflows in the multiplication.
        let mut terms = vnd_terms("100", InterestMethod::Flat, 12, RepaymentFrequency::Monthly);
        terms.principal = Decimal::MAX;
        assert_eq!(error_of(&terms), ScheduleError::Overflow);
        assert_eq!(
            ScheduleError::Overflow.to_string(),
            "arithmetic overflow computing the schedule"
        );
        terms.interest_method = InterestMethod::DecliningBalance;
        assert_eq!(error_of(&terms), ScheduleError::Overflow);
    }

    // ---- Properties -------------------------------------------------------------

    fn is_multiple_of(x: Decimal, m: Decimal) -> bool {
        (x % m).is_zero()
    }

    fn arb_terms() -> impl Strategy<Value = LoanTerms> {
        (
            // Small principals too, so the too-coarse branch is exercised.
            prop_oneof![1u64..=1_000_000_000_000, 1u64..=100_000],
            0u32..=6000,
            prop_oneof![
                Just(InterestMethod::Flat),
                Just(InterestMethod::DecliningBalance)
            ],
            1u32..=120,
            prop_oneof![
                Just(RepaymentFrequency::Weekly),
                Just(RepaymentFrequency::Fortnightly),
                Just(RepaymentFrequency::Monthly)
            ],
            0u32..=36_500,
            prop_oneof![Just(1i64), Just(100), Just(1000)],
        )
            .prop_map(
                |(principal, rate_hundredths, method, count, frequency, day, multiple)| LoanTerms {
                    principal: Decimal::from(principal),
                    annual_interest_rate_percent: Decimal::new(i64::from(rate_hundredths), 2),
                    interest_method: method,
                    installment_count: count,
                    frequency,
                    first_repayment_date: date(2000, 1, 1) + Days::new(u64::from(day)),
                    rounding_multiple: Decimal::from(multiple),
                    currency_decimal_places: 0,
                },
            )
    }

    fn check_schedule(terms: &LoanTerms, schedule: &[Installment]) -> Result<(), TestCaseError> {
        let places = terms.currency_decimal_places;
        let m = terms.rounding_multiple;
        let parts_are_multiples = terms.interest_method == InterestMethod::Flat
            || terms.annual_interest_rate_percent.is_zero();
        prop_assert_eq!(schedule.len(), terms.installment_count as usize);
        prop_assert_eq!(sum_principal(schedule), terms.principal);
        for (k, inst) in schedule.iter().enumerate() {
            prop_assert_eq!(inst.number, k as u32 + 1);
            prop_assert!(
                inst.principal >= Decimal::ZERO,
                "principal {}",
                inst.principal
            );
            prop_assert!(inst.interest >= Decimal::ZERO, "interest {}", inst.interest);
            prop_assert!(has_at_most_places(inst.principal, places));
            prop_assert!(has_at_most_places(inst.interest, places));
        }
        for inst in &schedule[..schedule.len() - 1] {
            // Declining balance rounds the installment amount to the multiple;
            // flat rounds each part to it.
            prop_assert!(is_multiple_of(inst.total(), m), "total {}", inst.total());
            if parts_are_multiples {
                prop_assert!(is_multiple_of(inst.principal, m));
                prop_assert!(is_multiple_of(inst.interest, m));
            }
        }
        for pair in schedule.windows(2) {
            prop_assert!(pair[0].due_date < pair[1].due_date);
        }
        prop_assert_eq!(schedule[0].due_date, terms.first_repayment_date);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn schedules_are_consistent_or_too_coarse(terms in arb_terms()) {
            match compute_schedule(&terms) {
                Ok(schedule) => check_schedule(&terms, &schedule)?,
                Err(err) => prop_assert!(
                    matches!(err, ScheduleError::RoundingMultipleTooCoarse { .. }),
                    "unexpected error {:?}", err
                ),
            }
        }

        #[test]
        fn flat_interest_sums_to_rounded_total(terms in arb_terms()) {
            // Total flat interest = round(P * r * N / (100 * periods_per_year)),
            // recomputed here from the definition.
            let terms = LoanTerms { interest_method: InterestMethod::Flat, ..terms };
            if let Ok(schedule) = compute_schedule(&terms) {
                let exact = terms.principal * terms.annual_interest_rate_percent
                    * Decimal::from(terms.installment_count)
                    / Decimal::from(100 * terms.frequency.periods_per_year());
                let expected = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
                prop_assert_eq!(sum_interest(&schedule), expected);
            }
        }

        #[test]
        fn annuity_regular_installments_are_equal(terms in arb_terms()) {
            let terms = LoanTerms { interest_method: InterestMethod::DecliningBalance, ..terms };
            prop_assume!(!terms.annual_interest_rate_percent.is_zero());
            if let Ok(schedule) = compute_schedule(&terms) {
                let first = schedule[0].total();
                for inst in &schedule[..schedule.len() - 1] {
                    prop_assert_eq!(inst.total(), first);
                }
            }
        }
    }
}
