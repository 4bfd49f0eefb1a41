//! Interest paid on members' savings: how much a savings account earned over
//! a posting period, and the amount to post for it.
//!
//! Interest accrues on the **daily closing balance**, actual/365 fixed, as
//! the State Bank of Vietnam's Circular 14/2017/TT-NHNN prescribes for
//! deposits whose balance may change within the term:
//!
//! ```text
//! interest = Σ (actual balance × days that balance was kept × annual rate) / 365
//! ```
//!
//! [`accrued`] gives that sum unrounded; [`posted`] rounds it to the
//! product's [`InstallmentRounding`]; [`interest_for_period`] does both for
//! one period of a [`PostingFrequency`] under [`SavingsInterestRules`].
//!
//! The module is pure: no I/O, no clock, no global state. It never posts
//! anything itself; the ledger decides when a period ends and records the
//! amount.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::{DomainError, echo};
use super::schedule::InstallmentRounding;
use super::totals::{Overflow, plus, times};

/// Largest accepted `annual_rate_percent`.
const RATE_PERCENT_MAX: Decimal = Decimal::ONE_HUNDRED;

/// `100 * 365`: turns `balance * days * rate_percent` into interest. A leap
/// year's 29 February is one more day over the same 365 ("actual/365 fixed").
const PERCENT_DAYS_PER_YEAR: Decimal = Decimal::from_parts(36_500, 0, 0, false, 0);

/// How often interest is posted to a savings account: at the end of each
/// calendar month, quarter, half-year or year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostingFrequency {
    /// Periods of one calendar month.
    Monthly,
    /// January-March, April-June, July-September, October-December.
    Quarterly,
    /// January-June, July-December.
    HalfYearly,
    /// The calendar year.
    Yearly,
}

impl PostingFrequency {
    /// Every frequency, in the order messages list them.
    pub const ALL: [PostingFrequency; 4] = [
        PostingFrequency::Monthly,
        PostingFrequency::Quarterly,
        PostingFrequency::HalfYearly,
        PostingFrequency::Yearly,
    ];

    /// The frequency's name on the wire and in the CLI.
    pub fn name(self) -> &'static str {
        match self {
            PostingFrequency::Monthly => "monthly",
            PostingFrequency::Quarterly => "quarterly",
            PostingFrequency::HalfYearly => "half-yearly",
            PostingFrequency::Yearly => "yearly",
        }
    }

    /// The frequency named `text` (as [`PostingFrequency::name`] gives it),
    /// for `field`.
    pub fn parse(field: &str, text: &str) -> Result<PostingFrequency, DomainError> {
        PostingFrequency::ALL
            .into_iter()
            .find(|frequency| frequency.name() == text)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "{} is not a posting frequency; use one of {}",
                        echo(text),
                        PostingFrequency::ALL.map(PostingFrequency::name).join(", ")
                    ),
                )
            })
    }

    /// Calendar months in one period: 1, 3, 6 or 12 (each divides 12, so
    /// periods never straddle a year end).
    fn months(self) -> u32 {
        match self {
            PostingFrequency::Monthly => 1,
            PostingFrequency::Quarterly => 3,
            PostingFrequency::HalfYearly => 6,
            PostingFrequency::Yearly => 12,
        }
    }

    /// The period containing `date`: its first and its last day.
    pub fn period_of(self, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        let months = self.months();
        let first_month = date.month0() / months * months + 1;
        let last_month = first_month + months - 1;
        let year = date.year();
        let first = calendar_day(year, first_month, 1);
        let last = calendar_day(year, last_month, days_in_month(year, last_month));
        (first, last)
    }

    /// Whether `date` is the last day of its period (interest is posted then).
    pub fn is_period_end(self, date: NaiveDate) -> bool {
        self.period_of(date).1 == date
    }
}

/// The date `year-month-day`, which must exist.
///
/// # Panics
/// Never for the days [`PostingFrequency::period_of`] asks: they are in the
/// year of a date it was given, and chrono holds whole years, from
/// `NaiveDate::MIN` (a 1 January) to `NaiveDate::MAX` (a 31 December).
fn calendar_day(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day)
        .expect("every day of a year that holds a NaiveDate is a NaiveDate")
}

/// Days in `month` (1-based) of `year`.
fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if NaiveDate::from_ymd_opt(year, 2, 29).is_some() => 29,
        2 => 28,
        _ => 31,
    }
}

/// How a savings product pays interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsInterestRules {
    /// Nominal yearly rate in percent, `0 <= r <= 100`; 5 means 5% a year,
    /// counted on 365 days whatever the year's length.
    #[serde(with = "crate::codec::decimal")]
    pub annual_rate_percent: Decimal,
    /// When interest is posted: the end of each period.
    pub posting: PostingFrequency,
    /// How the posted amount is rounded (whole dong for VND: multiple 1).
    pub rounding: InstallmentRounding,
}

impl SavingsInterestRules {
    /// Checks the rules; an error names its field under `field_prefix`
    /// (e.g. `savings_interest` gives `savings_interest.annual_rate_percent`).
    pub fn validate(&self, field_prefix: &str) -> Result<(), DomainError> {
        let under_prefix = |error: DomainError| {
            if field_prefix.is_empty() {
                error
            } else {
                error.within(field_prefix)
            }
        };
        let rate = self.annual_rate_percent;
        if rate.is_sign_negative() && !rate.is_zero() || rate > RATE_PERCENT_MAX {
            return Err(under_prefix(DomainError::invalid(
                "annual_rate_percent",
                format!("{rate} is outside 0 to {RATE_PERCENT_MAX}"),
            )));
        }
        let multiple = self.rounding.multiple;
        if multiple <= Decimal::ZERO {
            return Err(under_prefix(DomainError::invalid(
                "rounding.multiple",
                format!("{multiple} must be greater than 0"),
            )));
        }
        Ok(())
    }
}

/// Interest accrued from `from` to `to`, both days included, on the daily
/// closing balance of an account whose balance changes by `changes` (net
/// change by effective date, as [`super::state::SavingsAccount`] keeps it),
/// at `annual_rate_percent`, actual/365 fixed:
///
/// ```text
/// Σ over the days (closing balance of the day) × rate / 100 / 365
/// ```
///
/// The closing balance of a day is the sum of every change dated on or
/// before it, so a change dated before `from` is in the opening balance, a
/// change dated `to` counts for that last day, and a change after `to` is
/// ignored. A negative balance (which the ledger refuses) counts as it is.
/// An empty range (`from > to`) accrues zero.
///
/// The sum of balance × days is taken exactly (while it fits in a
/// [`Decimal`]'s 28 digits, as any real savings do), one segment per change
/// (the balance is constant between two changes), then multiplied by the
/// rate and divided by 36,500 once: the result is unrounded (28 significant
/// digits).
/// Cost: O(changes dated on or before `to`), never O(days).
///
/// # Errors
/// [`Overflow`] when a balance or the sum does not fit in a [`Decimal`].
pub fn accrued(
    changes: &crate::dated::PackedAmounts,
    from: NaiveDate,
    to: NaiveDate,
    annual_rate_percent: Decimal,
) -> Result<Decimal, Overflow> {
    if from > to {
        return Ok(Decimal::ZERO);
    }
    let mut opening = Decimal::ZERO;
    for change in changes.range(..from).map(|(_, change)| change) {
        opening = plus(opening, change)?;
    }
    accrued_from(opening, changes, from, to, annual_rate_percent)
}

/// [`accrued`] for a caller who knows the closing balance of the day
/// before `from` (`opening`): only the changes dated `from..=to` are read.
///
/// # Errors
/// [`Overflow`] when a balance or the sum does not fit in a [`Decimal`].
pub fn accrued_from(
    opening: Decimal,
    changes: &crate::dated::PackedAmounts,
    from: NaiveDate,
    to: NaiveDate,
    annual_rate_percent: Decimal,
) -> Result<Decimal, Overflow> {
    if from > to {
        return Ok(Decimal::ZERO);
    }
    let mut balance = opening;
    // Σ balance × days, one segment per change: `balance` closed every day
    // from `segment_start` up to (not including) the next change's date.
    let mut balance_days = Decimal::ZERO;
    let mut segment_start = from;
    for (date, change) in changes.range(from..=to) {
        let days = (date - segment_start).num_days();
        balance_days = plus(balance_days, times(balance, Decimal::from(days))?)?;
        balance = plus(balance, change)?;
        segment_start = date;
    }
    let days = (to - segment_start).num_days() + 1;
    balance_days = plus(balance_days, times(balance, Decimal::from(days))?)?;
    let scaled = times(balance_days, annual_rate_percent)?;
    scaled
        .checked_div(PERCENT_DAYS_PER_YEAR)
        .map(|interest| interest.normalize())
        .ok_or(Overflow)
}

/// The amount to post for `accrued` interest: rounded to a multiple of
/// `rounding.multiple` by `rounding.mode` (whole dong with multiple 1).
///
/// # Errors
/// [`Overflow`] when the quotient by the multiple does not fit in a
/// [`Decimal`], or when the multiple is zero (which
/// [`SavingsInterestRules::validate`] refuses).
pub fn posted(accrued: Decimal, rounding: InstallmentRounding) -> Result<Decimal, Overflow> {
    let units = accrued
        .checked_div(rounding.multiple)
        .ok_or(Overflow)?
        .round_dp_with_strategy(0, rounding.mode.strategy());
    times(units, rounding.multiple).map(|amount| amount.normalize())
}

/// The interest to post for the period `from..=to` (both days included) of
/// an account whose balance changes by `changes`, under `rules`: the
/// [`accrued`] interest, [`posted`] with the rules' rounding.
///
/// # Errors
/// [`Overflow`] as [`accrued`] and [`posted`] give it.
pub fn interest_for_period(
    changes: &crate::dated::PackedAmounts,
    (from, to): (NaiveDate, NaiveDate),
    rules: &SavingsInterestRules,
) -> Result<Decimal, Overflow> {
    let interest = accrued(changes, from, to, rules.annual_rate_percent)?;
    posted(interest, rules.rounding)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::schedule::RoundingMode;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn changes(items: &[(&str, i64)]) -> crate::dated::PackedAmounts {
        items
            .iter()
            .map(|(day, amount)| (date(day), Decimal::from(*amount)))
            .collect()
    }

    fn whole_dong(mode: RoundingMode) -> InstallmentRounding {
        InstallmentRounding {
            multiple: Decimal::ONE,
            mode,
        }
    }

    fn rules(rate: &str) -> SavingsInterestRules {
        SavingsInterestRules {
            annual_rate_percent: dec(rate),
            posting: PostingFrequency::Monthly,
            rounding: whole_dong(RoundingMode::HalfEven),
        }
    }

    /// January 2024 accrued at 5% a year on `account`.
    fn january(account: &crate::dated::PackedAmounts) -> Decimal {
        accrued(account, date("2024-01-01"), date("2024-01-31"), dec("5")).unwrap()
    }

    // ---- The worked example -------------------------------------------------

    /// The formula is that of Circular 14/2017/TT-NHNN of the State Bank of
    /// Vietnam (on methods of calculating interest in deposit and credit
    /// transactions between credit institutions and customers, in force
    /// 1 January 2018): when the balance may change within the term, interest
    /// = Σ (actual balance × days that balance was kept × annual rate) / 365.
    /// Sources: the summary "New interest calculator: the assumption of
    /// 360-day year no longer valid",
    /// http://118.69.201.250:801/news/headlines/18022/new-interest-calculator-the-assumption-of-360-day-year-no-longer-valid
    /// and the Ministry of Justice's summary of the Circular (a year is 365
    /// days),
    /// https://moj.gov.vn/en/Pages/Activities-of-public-administrative-and-justice-reform.aspx?ItemID=3229
    /// . Banks' deposit terms under it take the actual balance at the end of
    /// each day: https://lawinsider.com/vi/clause/interest-calculation-method
    /// . No published numeric example was found, so this one is by hand.
    ///
    /// A voluntary savings account at 5% a year, posted monthly, March 2024
    /// (31 days):
    ///
    /// | date       | change     | closing balance | days held in March     |
    /// |------------|------------|-----------------|------------------------|
    /// | 2024-02-20 | +2,000,000 | 2,000,000       | 1-10 Mar: 10 days      |
    /// | 2024-03-11 | +1,500,000 | 3,500,000       | 11-20 Mar: 10 days     |
    /// | 2024-03-21 |   -700,000 | 2,800,000       | 21-31 Mar: 11 days     |
    /// | 2024-04-02 |   +400,000 | (after March)   | -                      |
    ///
    /// Σ balance × days = 2,000,000 × 10 + 3,500,000 × 10 + 2,800,000 × 11
    /// = 20,000,000 + 35,000,000 + 30,800,000 = 85,800,000 dong-days;
    /// interest = 85,800,000 × 5 / 36,500 = 858,000 / 73
    /// = 11,753.424657534246575342465753|4246... dong (checked with Python's
    /// `fractions.Fraction` over a day-by-day sum of the closing balances,
    /// which gives the same 85,800,000; a Decimal keeps the 24 decimals
    /// before the bar); posted, whole dong half-even: 11,753.
    #[test]
    fn worked_example_march_with_a_deposit_and_a_withdrawal_mid_month() {
        let account = changes(&[
            ("2024-02-20", 2_000_000),
            ("2024-03-11", 1_500_000),
            ("2024-03-21", -700_000),
            ("2024-04-02", 400_000),
        ]);
        let march = (date("2024-03-01"), date("2024-03-31"));
        assert_eq!(
            PostingFrequency::Monthly.period_of(date("2024-03-15")),
            march
        );
        let interest = accrued(&account, march.0, march.1, dec("5")).unwrap();
        assert_eq!(interest, dec("11753.424657534246575342465753"));
        assert_eq!(
            posted(interest, whole_dong(RoundingMode::HalfEven)),
            Ok(dec("11753"))
        );
        assert_eq!(
            interest_for_period(&account, march, &rules("5")),
            Ok(dec("11753"))
        );
    }

    // ---- Accrual ------------------------------------------------------------

    /// 1,000,000 at 3.65% earns 100 dong a day: 29 days in February 2024, and
    /// 366 days (366/365 of the 36,500 a year) in 2024.
    #[test]
    fn a_leap_year_accrues_its_29_february_over_365() {
        let account = changes(&[("2023-12-31", 1_000_000)]);
        let february = accrued(
            &account,
            date("2024-02-01"),
            date("2024-02-29"),
            dec("3.65"),
        );
        assert_eq!(february, Ok(dec("2900")));
        let year = accrued(
            &account,
            date("2024-01-01"),
            date("2024-12-31"),
            dec("3.65"),
        );
        assert_eq!(year, Ok(dec("36600")));
        let common_year = accrued(
            &account,
            date("2023-01-01"),
            date("2023-12-31"),
            dec("3.65"),
        );
        assert_eq!(
            common_year,
            Ok(dec("100")),
            "2023 holds the deposit only at the close of its last day"
        );
        let full_2025 = accrued(
            &account,
            date("2025-01-01"),
            date("2025-12-31"),
            dec("3.65"),
        );
        assert_eq!(full_2025, Ok(dec("36500")));
    }

    /// 730,000 at 5% earns 100 dong a day.
    #[test]
    fn a_withdrawal_mid_period_lowers_the_balance_from_its_day() {
        let account = changes(&[("2023-12-15", 1_460_000), ("2024-01-11", -730_000)]);
        // 1-10 January at 200 a day, 11-31 January (21 days) at 100.
        assert_eq!(january(&account), dec("4100"));
    }

    #[test]
    fn a_change_before_the_period_is_in_the_opening_balance() {
        let account = changes(&[("2023-12-15", 730_000)]);
        assert_eq!(january(&account), dec("3100"));
        let on_first_day = changes(&[("2024-01-01", 730_000)]);
        assert_eq!(january(&on_first_day), dec("3100"));
    }

    #[test]
    fn a_change_after_the_period_is_ignored_and_one_on_its_last_day_counts_that_day() {
        let after = changes(&[("2023-12-15", 730_000), ("2024-02-01", 730_000)]);
        assert_eq!(january(&after), dec("3100"));
        let on_last_day = changes(&[("2023-12-15", 730_000), ("2024-01-31", 730_000)]);
        assert_eq!(january(&on_last_day), dec("3200"));
    }

    #[test]
    fn an_empty_account_or_an_empty_range_accrues_nothing() {
        assert_eq!(january(&crate::dated::PackedAmounts::new()), Decimal::ZERO);
        let emptied = changes(&[("2023-12-15", 730_000), ("2023-12-20", -730_000)]);
        assert_eq!(january(&emptied), Decimal::ZERO);
        let account = changes(&[("2023-12-15", 730_000)]);
        let backwards = accrued(&account, date("2024-01-31"), date("2024-01-01"), dec("5"));
        assert_eq!(backwards, Ok(Decimal::ZERO));
        let one_day = accrued(&account, date("2024-01-31"), date("2024-01-31"), dec("5"));
        assert_eq!(one_day, Ok(dec("100")));
    }

    #[test]
    fn a_negative_balance_counts_as_it_is() {
        let account = changes(&[("2023-12-15", -730_000)]);
        assert_eq!(january(&account), dec("-3100"));
    }

    #[test]
    fn a_balance_too_large_for_a_decimal_is_an_overflow() {
        let account: crate::dated::PackedAmounts = [(date("2023-12-15"), Decimal::MAX)].into();
        assert_eq!(
            accrued(&account, date("2024-01-01"), date("2024-01-31"), dec("5")),
            Err(Overflow)
        );
    }

    // ---- Posting ------------------------------------------------------------

    fn post(accrued: &str, multiple: i64, mode: RoundingMode) -> Decimal {
        let rounding = InstallmentRounding {
            multiple: Decimal::from(multiple),
            mode,
        };
        posted(dec(accrued), rounding).unwrap()
    }

    #[test]
    fn posting_rounds_a_tie_by_each_mode() {
        use RoundingMode::*;
        // (accrued, multiple, half-even, half-up, down, up)
        let ties = [
            ("2.5", 1, "2", "3", "2", "3"),
            ("3.5", 1, "4", "4", "3", "4"),
            ("-2.5", 1, "-2", "-3", "-2", "-3"),
            ("2500", 1000, "2000", "3000", "2000", "3000"),
            ("3500", 1000, "4000", "4000", "3000", "4000"),
            ("2500.0", 1000, "2000", "3000", "2000", "3000"),
        ];
        for (accrued, multiple, half_even, half_up, down, up) in ties {
            let case = format!("{accrued} to a multiple of {multiple}");
            assert_eq!(post(accrued, multiple, HalfEven), dec(half_even), "{case}");
            assert_eq!(post(accrued, multiple, HalfUp), dec(half_up), "{case}");
            assert_eq!(post(accrued, multiple, Down), dec(down), "{case}");
            assert_eq!(post(accrued, multiple, Up), dec(up), "{case}");
        }
    }

    #[test]
    fn posting_off_a_tie_goes_to_the_nearest_except_down_and_up() {
        use RoundingMode::*;
        assert_eq!(post("11753.4246", 1, HalfEven), dec("11753"));
        assert_eq!(post("11753.4246", 1, HalfUp), dec("11753"));
        assert_eq!(post("11753.4246", 1, Up), dec("11754"));
        assert_eq!(post("11753.5001", 1, Down), dec("11753"));
        assert_eq!(post("11753.4246", 1000, HalfEven), dec("12000"));
        assert_eq!(post("11499.9999", 1000, HalfUp), dec("11000"));
        assert_eq!(post("999.9999", 1000, Down), dec("0"));
        assert_eq!(post("0.0001", 1000, Up), dec("1000"));
    }

    #[test]
    fn posting_to_a_zero_multiple_is_refused_not_a_panic() {
        let zero = InstallmentRounding {
            multiple: Decimal::ZERO,
            mode: RoundingMode::HalfEven,
        };
        assert_eq!(posted(dec("12.5"), zero), Err(Overflow));
    }

    // ---- Periods ------------------------------------------------------------

    #[test]
    fn each_frequency_gives_the_calendar_period_around_a_date() {
        use PostingFrequency::*;
        // (frequency, date, first day, last day)
        let cases = [
            (Monthly, "2024-02-29", "2024-02-01", "2024-02-29"),
            (Monthly, "2023-02-14", "2023-02-01", "2023-02-28"),
            (Monthly, "2024-12-31", "2024-12-01", "2024-12-31"),
            (Monthly, "2024-04-01", "2024-04-01", "2024-04-30"),
            (Quarterly, "2024-02-29", "2024-01-01", "2024-03-31"),
            (Quarterly, "2024-04-01", "2024-04-01", "2024-06-30"),
            (Quarterly, "2024-09-30", "2024-07-01", "2024-09-30"),
            (Quarterly, "2024-12-31", "2024-10-01", "2024-12-31"),
            (HalfYearly, "2024-02-29", "2024-01-01", "2024-06-30"),
            (HalfYearly, "2024-07-01", "2024-07-01", "2024-12-31"),
            (HalfYearly, "2024-12-31", "2024-07-01", "2024-12-31"),
            (Yearly, "2024-02-29", "2024-01-01", "2024-12-31"),
            (Yearly, "2023-12-31", "2023-01-01", "2023-12-31"),
        ];
        for (frequency, day, first, last) in cases {
            assert_eq!(
                frequency.period_of(date(day)),
                (date(first), date(last)),
                "{} around {day}",
                frequency.name()
            );
        }
    }

    #[test]
    fn each_frequency_ends_its_periods_on_their_last_day() {
        use PostingFrequency::*;
        // (date, ends a month, a quarter, a half-year, a year)
        let cases = [
            ("2024-02-29", true, false, false, false),
            ("2024-02-28", false, false, false, false),
            ("2023-02-28", true, false, false, false),
            ("2024-03-31", true, true, false, false),
            ("2024-06-30", true, true, true, false),
            ("2024-09-30", true, true, false, false),
            ("2024-12-31", true, true, true, true),
            ("2024-12-30", false, false, false, false),
            ("2025-01-01", false, false, false, false),
        ];
        for (day, month, quarter, half_year, year) in cases {
            let day = date(day);
            assert_eq!(Monthly.is_period_end(day), month, "monthly {day}");
            assert_eq!(Quarterly.is_period_end(day), quarter, "quarterly {day}");
            assert_eq!(
                HalfYearly.is_period_end(day),
                half_year,
                "half-yearly {day}"
            );
            assert_eq!(Yearly.is_period_end(day), year, "yearly {day}");
        }
    }

    #[test]
    fn periods_exist_at_the_ends_of_the_calendar() {
        let (first, last) = PostingFrequency::Yearly.period_of(NaiveDate::MAX);
        assert_eq!(last, NaiveDate::MAX);
        assert_eq!((first.month(), first.day()), (1, 1));
        let (first, _) = PostingFrequency::Quarterly.period_of(NaiveDate::MIN);
        assert_eq!(first, NaiveDate::MIN);
    }

    // ---- Names and rules ----------------------------------------------------

    #[test]
    fn frequencies_parse_their_names_and_refuse_others_naming_the_allowed() {
        for frequency in PostingFrequency::ALL {
            assert_eq!(
                PostingFrequency::parse("posting", frequency.name()),
                Ok(frequency)
            );
        }
        let error = PostingFrequency::parse("savings_interest.posting", "weekly").unwrap_err();
        assert_eq!(
            error.to_string(),
            "savings_interest.posting: \"weekly\" is not a posting frequency; \
             use one of monthly, quarterly, half-yearly, yearly"
        );
    }

    #[test]
    fn rules_refuse_a_rate_outside_0_to_100_and_a_multiple_not_above_0() {
        assert_eq!(rules("0").validate("savings_interest"), Ok(()));
        assert_eq!(rules("100").validate("savings_interest"), Ok(()));
        let field = |rules: SavingsInterestRules, prefix: &str| match rules.validate(prefix) {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let prefix = "savings_interest";
        assert_eq!(
            field(rules("100.01"), prefix),
            "savings_interest.annual_rate_percent"
        );
        assert_eq!(
            field(rules("-0.5"), prefix),
            "savings_interest.annual_rate_percent"
        );
        assert_eq!(field(rules("-0.5"), ""), "annual_rate_percent");
        let mut zero_multiple = rules("5");
        zero_multiple.rounding.multiple = Decimal::ZERO;
        assert_eq!(
            field(zero_multiple, prefix),
            "savings_interest.rounding.multiple"
        );
    }

    #[test]
    fn rules_survive_a_serde_round_trip() {
        let mut original = rules("5.25");
        original.posting = PostingFrequency::HalfYearly;
        original.rounding = InstallmentRounding {
            multiple: dec("1000"),
            mode: RoundingMode::Down,
        };
        let bytes = postcard::to_allocvec(&original).unwrap();
        assert_eq!(
            postcard::from_bytes::<SavingsInterestRules>(&bytes).unwrap(),
            original
        );
    }

    // ---- Properties ---------------------------------------------------------

    /// Day-by-day: the closing balance of every day summed, then one
    /// multiplication by the rate and one division by 36,500.
    fn accrued_day_by_day(
        changes: &crate::dated::PackedAmounts,
        from: NaiveDate,
        to: NaiveDate,
        rate: Decimal,
    ) -> Decimal {
        let mut balances = Decimal::ZERO;
        let mut day = from;
        while day <= to {
            let closing: Decimal = changes.range(..=day).map(|(_, change)| change).sum();
            balances += closing;
            day = day.succ_opt().unwrap();
        }
        (balances.normalize() * rate / Decimal::from(36_500)).normalize()
    }

    /// Up to 40 changes over 2023-2024 (with the leap day), in dong or in
    /// hundredths, and a range that may start before the first and end after
    /// the last, or be empty.
    fn arb_account() -> impl Strategy<Value = (crate::dated::PackedAmounts, NaiveDate, NaiveDate)> {
        let start = date("2023-01-01");
        let day = move |offset: i64| start + chrono::Days::new(offset as u64);
        let change = (0..730i64, -50_000_000i64..50_000_000, 0..=2u32)
            .prop_map(move |(offset, units, scale)| (day(offset), Decimal::new(units, scale)));
        (
            proptest::collection::vec(change, 0..40),
            0..760i64,
            -3..420i64,
        )
            .prop_map(move |(items, from, length)| {
                let mut account = crate::dated::PackedAmounts::new();
                for (date, amount) in items {
                    let sum = account.get(&date).unwrap_or_default() + amount;
                    account.insert(date, sum);
                }
                let from = day(from);
                let to = from + chrono::Duration::days(length);
                (account, from, to)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn accrued_equals_the_day_by_day_sum(
            (account, from, to) in arb_account(),
            rate_hundredths in 0..=10_000i64,
        ) {
            let rate = Decimal::new(rate_hundredths, 2);
            let expected = accrued_day_by_day(&account, from, to, rate);
            prop_assert_eq!(accrued(&account, from, to, rate), Ok(expected));
        }

        #[test]
        fn posted_is_a_multiple_within_one_multiple_of_accrued(
            units in -10_000_000_000i64..10_000_000_000,
            multiple in prop_oneof![Just(1i64), Just(100), Just(1000)],
            mode in prop_oneof![
                Just(RoundingMode::HalfEven),
                Just(RoundingMode::HalfUp),
                Just(RoundingMode::Down),
                Just(RoundingMode::Up),
            ],
        ) {
            let accrued = Decimal::new(units, 4);
            let multiple = Decimal::from(multiple);
            let amount = posted(accrued, InstallmentRounding { multiple, mode }).unwrap();
            prop_assert!((amount % multiple).is_zero());
            prop_assert!((amount - accrued).abs() < multiple);
            if mode == RoundingMode::Down {
                prop_assert!(amount.abs() <= accrued.abs());
            }
            if mode == RoundingMode::Up {
                prop_assert!(amount.abs() >= accrued.abs());
            }
        }
    }
}
