//! Branch figures by day, so that any period's totals cost O(days), never
//! O(entries).
//!
//! Every entry adds its effect to the [`DayTotals`] of its branch and
//! effective date. Flows (disbursed, collected) sum the days of a period;
//! stocks (savings balance, portfolio, borrowers) sum every day up to the
//! period's end. Borrower counts are kept exact under back-dated entries by
//! keeping, per member, the steps of her "is a borrower" indicator
//! ([`borrower_steps`]) and replacing her old steps with her new ones.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::DomainError;

/// One branch's changes on one effective date.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotals {
    /// Loans disbursed, less disbursements reversed.
    pub loans_disbursed: i64,
    /// Principal disbursed, less disbursements reversed.
    #[serde(with = "crate::domain::codec::decimal")]
    pub amount_disbursed: Decimal,
    /// Principal repaid, less repayments reversed.
    #[serde(with = "crate::domain::codec::decimal")]
    pub principal_collected: Decimal,
    /// Interest repaid, less repayments reversed.
    #[serde(with = "crate::domain::codec::decimal")]
    pub interest_collected: Decimal,
    /// Fees collected (deducted at disbursement or paid with installments).
    #[serde(with = "crate::domain::codec::decimal")]
    pub fees_collected: Decimal,
    /// Principal written off, less write-offs reversed.
    #[serde(with = "crate::domain::codec::decimal")]
    pub written_off: Decimal,
    /// Collected on written-off loans.
    #[serde(with = "crate::domain::codec::decimal")]
    pub recovered: Decimal,
    /// Change of all savings balances.
    #[serde(with = "crate::domain::codec::decimal")]
    pub savings_change: Decimal,
    /// Change of principal outstanding.
    #[serde(with = "crate::domain::codec::decimal")]
    pub portfolio_change: Decimal,
    /// Change in the number of members with principal outstanding.
    pub borrowers_change: i64,
    /// Change in the number of those who also hold a savings account.
    pub borrowers_with_savings_change: i64,
}

impl DayTotals {
    /// True when the day changes nothing (and need not be stored).
    pub fn is_empty(&self) -> bool {
        *self == DayTotals::default()
    }
}

/// A branch's figures over a period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeriodFigures {
    /// First day.
    pub from: Option<NaiveDate>,
    /// Last day.
    pub to: Option<NaiveDate>,
    /// Loans disbursed in the period.
    pub loans_disbursed: i64,
    /// Principal disbursed in the period.
    pub amount_disbursed: Decimal,
    /// Principal repaid in the period.
    pub principal_collected: Decimal,
    /// Interest repaid in the period.
    pub interest_collected: Decimal,
    /// Fees collected in the period.
    pub fees_collected: Decimal,
    /// Principal written off in the period.
    pub written_off: Decimal,
    /// Collected on written-off loans in the period.
    pub recovered: Decimal,
    /// All savings balances at the end.
    pub savings_balance: Decimal,
    /// Principal outstanding at the end.
    pub portfolio_outstanding: Decimal,
    /// Members with principal outstanding at the end.
    pub borrowers: i64,
    /// Of those, holders of a savings account.
    pub borrowers_with_savings: i64,
}

impl PeriodFigures {
    /// Sums one branch's days: flows over `from..=to`, stocks up to `to`.
    pub fn from_days(
        days: &BTreeMap<NaiveDate, DayTotals>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> PeriodFigures {
        let mut figures = PeriodFigures {
            from: Some(from),
            to: Some(to),
            ..PeriodFigures::default()
        };
        for (date, day) in days.range(..=to) {
            figures.savings_balance += day.savings_change;
            figures.portfolio_outstanding += day.portfolio_change;
            figures.borrowers += day.borrowers_change;
            figures.borrowers_with_savings += day.borrowers_with_savings_change;
            if *date >= from {
                figures.loans_disbursed += day.loans_disbursed;
                figures.amount_disbursed += day.amount_disbursed;
                figures.principal_collected += day.principal_collected;
                figures.interest_collected += day.interest_collected;
                figures.fees_collected += day.fees_collected;
                figures.written_off += day.written_off;
                figures.recovered += day.recovered;
            }
        }
        figures
    }
}

/// A period a manager asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// A calendar year.
    Year(i32),
    /// A calendar month.
    Month { year: i32, month: u32 },
    /// Any days, both ends included.
    Range { from: NaiveDate, to: NaiveDate },
}

impl Period {
    /// First and last day.
    pub fn bounds(self) -> Result<(NaiveDate, NaiveDate), DomainError> {
        let bad = || DomainError::invalid("period", "is outside the calendar");
        match self {
            Period::Year(year) => {
                let from = NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(bad)?;
                let to = NaiveDate::from_ymd_opt(year, 12, 31).ok_or_else(bad)?;
                Ok((from, to))
            }
            Period::Month { year, month } => {
                let from = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
                let next = from
                    .checked_add_months(chrono::Months::new(1))
                    .ok_or_else(bad)?;
                Ok((from, next.pred_opt().ok_or_else(bad)?))
            }
            Period::Range { from, to } if from <= to => Ok((from, to)),
            Period::Range { from, to } => Err(DomainError::invalid(
                "range.to_date",
                format!("{to} is before from_date {from}"),
            )),
        }
    }

    /// The period of the same length just before: the previous year, the
    /// previous month, or as many days just before a range.
    ///
    /// ```
    /// use mfi_ledger::domain::totals::Period;
    ///
    /// let march = Period::Range { from: "2023-03-01".parse().unwrap(), to: "2023-03-31".parse().unwrap() };
    /// let (from, to) = march.previous().unwrap().bounds().unwrap();
    /// assert_eq!((from.to_string(), to.to_string()), ("2023-01-29".into(), "2023-02-28".into()));
    /// ```
    pub fn previous(self) -> Result<Period, DomainError> {
        match self {
            Period::Year(year) => Ok(Period::Year(year - 1)),
            Period::Month { year, month: 1 } => Ok(Period::Month {
                year: year - 1,
                month: 12,
            }),
            Period::Month { year, month } => Ok(Period::Month {
                year,
                month: month - 1,
            }),
            Period::Range { from, to } => {
                let (from, to) = Period::Range { from, to }.bounds()?;
                let days = (to - from).num_days() as u64 + 1;
                let bad =
                    || DomainError::invalid("range", "the previous period is outside the calendar");
                let previous_to = from.pred_opt().ok_or_else(bad)?;
                let previous_from = from.checked_sub_days(Days::new(days)).ok_or_else(bad)?;
                Ok(Period::Range {
                    from: previous_from,
                    to: previous_to,
                })
            }
        }
    }

    /// Parses "YYYY-MM".
    pub fn parse_month(field: &str, text: &str) -> Result<Period, DomainError> {
        let parsed = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| text.len() == 7);
        match parsed {
            Some(date) => Ok(Period::Month {
                year: date.year(),
                month: date.month(),
            }),
            None => Err(DomainError::invalid(
                field,
                format!("{text:?} is not a month YYYY-MM"),
            )),
        }
    }
}

/// One change of a member's borrower indicators on a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BorrowerStep {
    /// Effective date of the change.
    #[serde(with = "crate::domain::codec::date")]
    pub date: NaiveDate,
    /// +1 when she becomes a borrower, -1 when she stops.
    pub borrower: i64,
    /// +1 when she becomes a borrower holding savings, -1 when she stops.
    pub with_savings: i64,
}

/// The steps of a member's indicators, from her loans' principal changes by
/// date and the date her first savings account opened.
///
/// She is a borrower on a day when any loan has principal outstanding at the
/// end of that day; a borrower with savings when, in addition, a savings
/// account of hers is open that day.
pub fn borrower_steps(
    loans_principal_changes: &[&BTreeMap<NaiveDate, Decimal>],
    savings_opened_on: Option<NaiveDate>,
) -> Vec<BorrowerStep> {
    // Count of loans with principal outstanding, changing by date.
    let mut active_changes: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for changes in loans_principal_changes {
        let mut outstanding = Decimal::ZERO;
        let mut active = false;
        for (date, change) in changes.iter() {
            outstanding += *change;
            let now_active = outstanding > Decimal::ZERO;
            if now_active != active {
                *active_changes.entry(*date).or_default() += if now_active { 1 } else { -1 };
                active = now_active;
            }
        }
    }
    if let Some(opened) = savings_opened_on {
        active_changes.entry(opened).or_default();
    }
    let mut steps = Vec::new();
    let mut active_loans = 0;
    let (mut borrower, mut with_savings) = (false, false);
    for (date, change) in active_changes {
        active_loans += change;
        let now_borrower = active_loans > 0;
        let now_with_savings =
            now_borrower && savings_opened_on.is_some_and(|opened| opened <= date);
        let step = BorrowerStep {
            date,
            borrower: i64::from(now_borrower) - i64::from(borrower),
            with_savings: i64::from(now_with_savings) - i64::from(with_savings),
        };
        if step.borrower != 0 || step.with_savings != 0 {
            steps.push(step);
        }
        (borrower, with_savings) = (now_borrower, now_with_savings);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn changes(items: &[(&str, i64)]) -> BTreeMap<NaiveDate, Decimal> {
        items
            .iter()
            .map(|(d, a)| (date(d), Decimal::from(*a)))
            .collect()
    }

    #[test]
    fn a_member_with_overlapping_loans_counts_once() {
        let first = changes(&[("2023-01-10", 1000), ("2023-06-10", -1000)]);
        let second = changes(&[("2023-03-01", 500), ("2023-09-01", -500)]);
        let steps = borrower_steps(&[&first, &second], Some(date("2023-01-01")));
        assert_eq!(
            steps,
            vec![
                BorrowerStep {
                    date: date("2023-01-10"),
                    borrower: 1,
                    with_savings: 1
                },
                BorrowerStep {
                    date: date("2023-09-01"),
                    borrower: -1,
                    with_savings: -1
                },
            ]
        );
    }

    #[test]
    fn savings_opened_after_the_loan_starts_the_second_count_later() {
        let loan = changes(&[("2023-01-10", 1000)]);
        let steps = borrower_steps(&[&loan], Some(date("2023-02-01")));
        assert_eq!(
            steps,
            vec![
                BorrowerStep {
                    date: date("2023-01-10"),
                    borrower: 1,
                    with_savings: 0
                },
                BorrowerStep {
                    date: date("2023-02-01"),
                    borrower: 0,
                    with_savings: 1
                },
            ]
        );
    }

    #[test]
    fn previous_periods_have_the_same_length() {
        assert_eq!(Period::Year(2023).previous().unwrap(), Period::Year(2022));
        assert_eq!(
            Period::Month {
                year: 2023,
                month: 1
            }
            .previous()
            .unwrap(),
            Period::Month {
                year: 2022,
                month: 12
            }
        );
        let range = Period::Range {
            from: date("2023-03-01"),
            to: date("2023-03-10"),
        };
        assert_eq!(
            range.previous().unwrap(),
            Period::Range {
                from: date("2023-02-19"),
                to: date("2023-02-28")
            }
        );
        assert_eq!(
            Period::Month {
                year: 2024,
                month: 2
            }
            .bounds()
            .unwrap(),
            (date("2024-02-01"), date("2024-02-29"))
        );
    }

    #[test]
    fn flows_sum_the_period_and_stocks_sum_to_its_end() {
        let mut days = BTreeMap::new();
        days.insert(
            date("2022-12-31"),
            DayTotals {
                loans_disbursed: 1,
                savings_change: Decimal::from(100),
                ..Default::default()
            },
        );
        days.insert(
            date("2023-01-01"),
            DayTotals {
                loans_disbursed: 2,
                savings_change: Decimal::from(50),
                ..Default::default()
            },
        );
        days.insert(
            date("2024-01-01"),
            DayTotals {
                loans_disbursed: 4,
                ..Default::default()
            },
        );
        let figures = PeriodFigures::from_days(&days, date("2023-01-01"), date("2023-12-31"));
        assert_eq!(figures.loans_disbursed, 2);
        assert_eq!(figures.savings_balance, Decimal::from(150));
    }
}
