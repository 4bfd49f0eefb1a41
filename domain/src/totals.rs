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
use super::ids::ProductId;

/// One branch's changes on one effective date.
///
/// Flows (disbursed, collected, due) count what happened on the day; stock
/// changes (`*_change`) are differences: a stock on a date is the sum of its
/// changes up to that date. A loan adds its portfolio-quality stocks as date
/// ranges (+amount on the first day, -amount after the last), so that PAR on
/// any date is one sum over days, never a scan of loans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotals {
    /// Loans disbursed, less disbursements reversed.
    pub loans_disbursed: i64,
    /// Principal disbursed, less disbursements reversed.
    #[serde(with = "crate::codec::decimal")]
    pub amount_disbursed: Decimal,
    /// Principal repaid, less repayments reversed.
    #[serde(with = "crate::codec::decimal")]
    pub principal_collected: Decimal,
    /// Interest repaid, less repayments reversed.
    #[serde(with = "crate::codec::decimal")]
    pub interest_collected: Decimal,
    /// Fees collected (deducted at disbursement or paid with installments).
    #[serde(with = "crate::codec::decimal")]
    pub fees_collected: Decimal,
    /// Of `fees_collected`, the fees deducted from a disbursement or tranche.
    #[serde(with = "crate::codec::decimal")]
    pub fees_withheld: Decimal,
    /// Principal written off, less write-offs reversed.
    #[serde(with = "crate::codec::decimal")]
    pub written_off: Decimal,
    /// Collected on written-off loans.
    #[serde(with = "crate::codec::decimal")]
    pub recovered: Decimal,
    /// Change of all savings balances.
    #[serde(with = "crate::codec::decimal")]
    pub savings_change: Decimal,
    /// Change of principal outstanding.
    #[serde(with = "crate::codec::decimal")]
    pub portfolio_change: Decimal,
    /// Change in the number of members with principal outstanding.
    pub borrowers_change: i64,
    /// Change in the number of those who also have a positive savings balance.
    pub borrowers_with_savings_change: i64,
    /// Change in the number of loans with principal outstanding.
    pub loans_active_change: i64,
    /// Change of the outstanding principal of loans with any part of an
    /// installment unpaid more than 1, 30 and 90 days (standard PAR, no tolerance).
    #[serde(with = "crate::codec::decimal")]
    pub par1_change: Decimal,
    #[serde(with = "crate::codec::decimal")]
    pub par30_change: Decimal,
    #[serde(with = "crate::codec::decimal")]
    pub par90_change: Decimal,
    /// Change in the number of loans in arrears under their product's tolerance.
    pub loans_in_arrears_change: i64,
    /// Installments falling due on the day (principal, interest, fees).
    #[serde(with = "crate::codec::decimal")]
    pub due: Decimal,
    /// Of `due`, what was paid by the day.
    #[serde(with = "crate::codec::decimal")]
    pub paid_on_time: Decimal,
    /// Loans first disbursed on the day, by product (none: outside the
    /// catalogue), less disbursements reversed.
    pub disbursed_by_product: BTreeMap<Option<ProductId>, ProductDay>,
}

/// Loans of one product disbursed on a day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDay {
    /// Loans disbursed.
    pub loans: i64,
    /// Principal of their first disbursements.
    #[serde(with = "crate::codec::decimal")]
    pub amount: Decimal,
}

/// A sum or difference that does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("arithmetic overflow: the amounts involved are too large")]
pub struct Overflow;

impl From<Overflow> for DomainError {
    fn from(_: Overflow) -> DomainError {
        DomainError::Overflow
    }
}

impl From<Overflow> for String {
    fn from(overflow: Overflow) -> String {
        overflow.to_string()
    }
}

/// A refusal of `field`: the amounts it brings together (with the ledger's
/// own) add up to more than a decimal holds.
pub fn too_large(field: &str) -> DomainError {
    DomainError::invalid(
        field,
        "too large: the amounts it brings together do not fit in a decimal",
    )
}

/// A refusal of the amount in `field` whose fees add up to more than a
/// decimal holds.
pub fn fees_overflow(field: &str) -> DomainError {
    DomainError::invalid(
        field,
        "the product's fees on this principal add up to more than a decimal holds",
    )
}

/// `a + b` normalised (no trailing zeros, never "-0"), or an overflow.
pub fn plus(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_add(b).map(|x| x.normalize()).ok_or(Overflow)
}

/// `a - b` normalised, or an overflow.
pub fn minus(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_sub(b).map(|x| x.normalize()).ok_or(Overflow)
}

/// `a * b`, or an overflow.
pub fn times(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_mul(b).ok_or(Overflow)
}

/// The sum of `values`, or an overflow.
pub fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    values.into_iter().try_fold(Decimal::ZERO, plus)
}

pub(crate) fn plus_count(a: i64, b: i64) -> Result<i64, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

impl DayTotals {
    /// True when the day changes nothing (and need not be stored).
    pub fn is_empty(&self) -> bool {
        // Field by field (every field named, so a new one cannot be left
        // out): the same as comparing with an empty day, without building
        // one and comparing decimals by value.
        let DayTotals {
            loans_disbursed: 0,
            borrowers_change: 0,
            borrowers_with_savings_change: 0,
            loans_active_change: 0,
            loans_in_arrears_change: 0,
            amount_disbursed,
            principal_collected,
            interest_collected,
            fees_collected,
            fees_withheld,
            written_off,
            recovered,
            savings_change,
            portfolio_change,
            par1_change,
            par30_change,
            par90_change,
            due,
            paid_on_time,
            disbursed_by_product,
        } = self
        else {
            return false;
        };
        amount_disbursed.is_zero()
            && principal_collected.is_zero()
            && interest_collected.is_zero()
            && fees_collected.is_zero()
            && fees_withheld.is_zero()
            && written_off.is_zero()
            && recovered.is_zero()
            && savings_change.is_zero()
            && portfolio_change.is_zero()
            && par1_change.is_zero()
            && par30_change.is_zero()
            && par90_change.is_zero()
            && due.is_zero()
            && paid_on_time.is_zero()
            && disbursed_by_product.is_empty()
    }

    /// Adds `other` to this day, field by field, or changes nothing on overflow.
    pub fn add(&mut self, other: &DayTotals) -> Result<(), Overflow> {
        // Most changes carry one or two figures: only those are summed, and
        // only those written back, once every sum is known to fit (a day is
        // some 300 bytes: building a whole new one for each change cost
        // more than the sums).
        macro_rules! add_fields {
            (amounts: $($amount:ident),*; counts: $($count:ident),*;) => {
                // Every field named (a new one cannot be left out).
                let DayTotals {
                    $($amount: _,)*
                    $($count: _,)*
                    disbursed_by_product: _,
                } = other;
                $(
                    let $amount = if other.$amount.is_zero() {
                        None
                    } else {
                        Some(plus(self.$amount, other.$amount)?)
                    };
                )*
                $(
                    let $count = if other.$count == 0 {
                        None
                    } else {
                        Some(plus_count(self.$count, other.$count)?)
                    };
                )*
                let by_product = self.by_product_plus(&other.disbursed_by_product)?;
                // Nothing can fail from here: the day changes whole or not at all.
                $(
                    if let Some(sum) = $amount {
                        self.$amount = sum;
                    }
                )*
                $(
                    if let Some(sum) = $count {
                        self.$count = sum;
                    }
                )*
                if let Some(by_product) = by_product {
                    self.disbursed_by_product = by_product;
                }
            };
        }
        add_fields!(
            amounts: amount_disbursed, principal_collected, interest_collected, fees_collected,
                fees_withheld, written_off, recovered, savings_change, portfolio_change,
                par1_change, par30_change, par90_change, due, paid_on_time;
            counts: loans_disbursed, borrowers_change, borrowers_with_savings_change,
                loans_active_change, loans_in_arrears_change;
        );
        Ok(())
    }

    /// The day's loans by product with `other` added (`None`: `other` adds
    /// nothing), or an overflow.
    fn by_product_plus(
        &self,
        other: &BTreeMap<Option<ProductId>, ProductDay>,
    ) -> Result<Option<BTreeMap<Option<ProductId>, ProductDay>>, Overflow> {
        if other.is_empty() {
            return Ok(None);
        }
        let mut by_product = self.disbursed_by_product.clone();
        for (product, day) in other {
            let entry = by_product.entry(product.clone()).or_default();
            entry.loans = plus_count(entry.loans, day.loans)?;
            entry.amount = plus(entry.amount, day.amount)?;
            if entry.loans == 0 && entry.amount.is_zero() {
                by_product.remove(product);
            }
        }
        Ok(Some(by_product))
    }

    /// The day with every figure of the opposite sign.
    pub fn negated(&self) -> DayTotals {
        DayTotals {
            loans_disbursed: -self.loans_disbursed,
            amount_disbursed: -self.amount_disbursed,
            principal_collected: -self.principal_collected,
            interest_collected: -self.interest_collected,
            fees_collected: -self.fees_collected,
            fees_withheld: -self.fees_withheld,
            written_off: -self.written_off,
            recovered: -self.recovered,
            savings_change: -self.savings_change,
            portfolio_change: -self.portfolio_change,
            borrowers_change: -self.borrowers_change,
            borrowers_with_savings_change: -self.borrowers_with_savings_change,
            loans_active_change: -self.loans_active_change,
            par1_change: -self.par1_change,
            par30_change: -self.par30_change,
            par90_change: -self.par90_change,
            loans_in_arrears_change: -self.loans_in_arrears_change,
            due: -self.due,
            paid_on_time: -self.paid_on_time,
            disbursed_by_product: self
                .disbursed_by_product
                .iter()
                .map(|(product, day)| {
                    (
                        product.clone(),
                        ProductDay {
                            loans: -day.loans,
                            amount: -day.amount,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The figures of a [`DayTotals`] (all but its loans by product),
/// numbered in their declaration order: how the day log and a
/// [`DayChanges`](crate::day_changes::DayChanges) name them. The numbers
/// are in the state caches written so far: a figure added takes the next.
pub mod figure {
    /// How many figures a day has.
    pub const COUNT: usize = 19;
    pub const LOANS_DISBURSED: u8 = 0;
    pub const AMOUNT_DISBURSED: u8 = 1;
    pub const PRINCIPAL_COLLECTED: u8 = 2;
    pub const INTEREST_COLLECTED: u8 = 3;
    pub const FEES_COLLECTED: u8 = 4;
    pub const FEES_WITHHELD: u8 = 5;
    pub const WRITTEN_OFF: u8 = 6;
    pub const RECOVERED: u8 = 7;
    pub const SAVINGS_CHANGE: u8 = 8;
    pub const PORTFOLIO_CHANGE: u8 = 9;
    pub const BORROWERS_CHANGE: u8 = 10;
    pub const BORROWERS_WITH_SAVINGS_CHANGE: u8 = 11;
    pub const LOANS_ACTIVE_CHANGE: u8 = 12;
    pub const PAR1_CHANGE: u8 = 13;
    pub const PAR30_CHANGE: u8 = 14;
    pub const PAR90_CHANGE: u8 = 15;
    pub const LOANS_IN_ARREARS_CHANGE: u8 = 16;
    pub const DUE: u8 = 17;
    pub const PAID_ON_TIME: u8 = 18;
}

impl DayTotals {
    /// The day's figures, numbered as [`figure`] numbers them (counts as
    /// decimals).
    pub fn figures(&self) -> [Decimal; figure::COUNT] {
        [
            Decimal::from(self.loans_disbursed),
            self.amount_disbursed,
            self.principal_collected,
            self.interest_collected,
            self.fees_collected,
            self.fees_withheld,
            self.written_off,
            self.recovered,
            self.savings_change,
            self.portfolio_change,
            Decimal::from(self.borrowers_change),
            Decimal::from(self.borrowers_with_savings_change),
            Decimal::from(self.loans_active_change),
            self.par1_change,
            self.par30_change,
            self.par90_change,
            Decimal::from(self.loans_in_arrears_change),
            self.due,
            self.paid_on_time,
        ]
    }

    /// Figure number `figure` (zero for a number [`figure`] does not give).
    pub fn figure(&self, figure: u8) -> Decimal {
        match figure {
            figure::LOANS_DISBURSED => Decimal::from(self.loans_disbursed),
            figure::AMOUNT_DISBURSED => self.amount_disbursed,
            figure::PRINCIPAL_COLLECTED => self.principal_collected,
            figure::INTEREST_COLLECTED => self.interest_collected,
            figure::FEES_COLLECTED => self.fees_collected,
            figure::FEES_WITHHELD => self.fees_withheld,
            figure::WRITTEN_OFF => self.written_off,
            figure::RECOVERED => self.recovered,
            figure::SAVINGS_CHANGE => self.savings_change,
            figure::PORTFOLIO_CHANGE => self.portfolio_change,
            figure::BORROWERS_CHANGE => Decimal::from(self.borrowers_change),
            figure::BORROWERS_WITH_SAVINGS_CHANGE => {
                Decimal::from(self.borrowers_with_savings_change)
            }
            figure::LOANS_ACTIVE_CHANGE => Decimal::from(self.loans_active_change),
            figure::PAR1_CHANGE => self.par1_change,
            figure::PAR30_CHANGE => self.par30_change,
            figure::PAR90_CHANGE => self.par90_change,
            figure::LOANS_IN_ARREARS_CHANGE => Decimal::from(self.loans_in_arrears_change),
            figure::DUE => self.due,
            figure::PAID_ON_TIME => self.paid_on_time,
            _ => Decimal::ZERO,
        }
    }

    /// Sets figure number `figure` to `value`; changes nothing and says why
    /// when there is no such figure, or it is a count and `value` is not
    /// one.
    pub fn set_figure(&mut self, figure: u8, value: Decimal) -> Result<(), String> {
        let count = || {
            i64::try_from(value)
                .ok()
                .filter(|_| value.fract().is_zero())
                .ok_or_else(|| format!("field {figure} holds {value}, not a count"))
        };
        match figure {
            figure::LOANS_DISBURSED => self.loans_disbursed = count()?,
            figure::AMOUNT_DISBURSED => self.amount_disbursed = value,
            figure::PRINCIPAL_COLLECTED => self.principal_collected = value,
            figure::INTEREST_COLLECTED => self.interest_collected = value,
            figure::FEES_COLLECTED => self.fees_collected = value,
            figure::FEES_WITHHELD => self.fees_withheld = value,
            figure::WRITTEN_OFF => self.written_off = value,
            figure::RECOVERED => self.recovered = value,
            figure::SAVINGS_CHANGE => self.savings_change = value,
            figure::PORTFOLIO_CHANGE => self.portfolio_change = value,
            figure::BORROWERS_CHANGE => self.borrowers_change = count()?,
            figure::BORROWERS_WITH_SAVINGS_CHANGE => self.borrowers_with_savings_change = count()?,
            figure::LOANS_ACTIVE_CHANGE => self.loans_active_change = count()?,
            figure::PAR1_CHANGE => self.par1_change = value,
            figure::PAR30_CHANGE => self.par30_change = value,
            figure::PAR90_CHANGE => self.par90_change = value,
            figure::LOANS_IN_ARREARS_CHANGE => self.loans_in_arrears_change = count()?,
            figure::DUE => self.due = value,
            figure::PAID_ON_TIME => self.paid_on_time = value,
            other => return Err(format!("unknown field {other}")),
        }
        Ok(())
    }

    /// True for the figures that count (loans, borrowers): whole numbers
    /// held as `i64`.
    pub fn is_count(figure: u8) -> bool {
        matches!(
            figure,
            figure::LOANS_DISBURSED
                | figure::BORROWERS_CHANGE
                | figure::BORROWERS_WITH_SAVINGS_CHANGE
                | figure::LOANS_ACTIVE_CHANGE
                | figure::LOANS_IN_ARREARS_CHANGE
        )
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
    /// Fees collected in the period: deducted at disbursement or paid with installments.
    pub fees_collected: Decimal,
    /// Of those, fees deducted from disbursements and tranches.
    pub fees_withheld: Decimal,
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
    /// Of those, members with a positive savings balance at the end.
    pub borrowers_with_savings: i64,
    /// Loans with principal outstanding at the end.
    pub loans_active: i64,
    /// Standard PAR1, PAR30 and PAR90 amounts at the end.
    pub par1: Decimal,
    pub par30: Decimal,
    pub par90: Decimal,
    /// Loans in arrears under their product's tolerance at the end.
    pub loans_in_arrears: i64,
    /// Installments due in the period.
    pub due: Decimal,
    /// Of those, paid by their due dates.
    pub paid_on_time: Decimal,
    /// Loans first disbursed in the period, by product.
    pub disbursed_by_product: BTreeMap<Option<ProductId>, ProductDay>,
}

impl PeriodFigures {
    /// Repayments collected in the period: principal, interest and the fees
    /// paid with installments. Fees deducted from a disbursement are not
    /// repayments (the borrower never held that money), and what is
    /// collected on written-off loans is `recovered`.
    pub fn repayments_collected(&self) -> Result<Decimal, Overflow> {
        let fees_repaid = self
            .fees_collected
            .checked_sub(self.fees_withheld)
            .ok_or(Overflow)?;
        plus(
            plus(self.principal_collected, self.interest_collected)?,
            fees_repaid,
        )
    }

    /// Sums one branch's days: flows over `from..=to`, stocks up to `to`.
    pub fn from_days(
        days: &BTreeMap<NaiveDate, DayTotals>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<PeriodFigures, Overflow> {
        let mut sum = DayTotals::default();
        for (date, day) in days.range(..=to) {
            if *date >= from {
                sum.add(day)?;
            } else {
                sum.add(&DayTotals {
                    savings_change: day.savings_change,
                    portfolio_change: day.portfolio_change,
                    borrowers_change: day.borrowers_change,
                    borrowers_with_savings_change: day.borrowers_with_savings_change,
                    loans_active_change: day.loans_active_change,
                    par1_change: day.par1_change,
                    par30_change: day.par30_change,
                    par90_change: day.par90_change,
                    loans_in_arrears_change: day.loans_in_arrears_change,
                    ..DayTotals::default()
                })?;
            }
        }
        Ok(PeriodFigures::from_sum(sum, from, to))
    }

    /// The figures whose flows and stocks `sum` holds.
    fn from_sum(sum: DayTotals, from: NaiveDate, to: NaiveDate) -> PeriodFigures {
        PeriodFigures {
            from: Some(from),
            to: Some(to),
            loans_disbursed: sum.loans_disbursed,
            amount_disbursed: sum.amount_disbursed,
            principal_collected: sum.principal_collected,
            interest_collected: sum.interest_collected,
            fees_collected: sum.fees_collected,
            fees_withheld: sum.fees_withheld,
            written_off: sum.written_off,
            recovered: sum.recovered,
            savings_balance: sum.savings_change,
            portfolio_outstanding: sum.portfolio_change,
            borrowers: sum.borrowers_change,
            borrowers_with_savings: sum.borrowers_with_savings_change,
            loans_active: sum.loans_active_change,
            par1: sum.par1_change,
            par30: sum.par30_change,
            par90: sum.par90_change,
            loans_in_arrears: sum.loans_in_arrears_change,
            due: sum.due,
            paid_on_time: sum.paid_on_time,
            disbursed_by_product: sum.disbursed_by_product,
        }
    }

    /// The figures as one day's totals (stocks in the `*_change` fields).
    fn to_sum(&self) -> DayTotals {
        DayTotals {
            loans_disbursed: self.loans_disbursed,
            amount_disbursed: self.amount_disbursed,
            principal_collected: self.principal_collected,
            interest_collected: self.interest_collected,
            fees_collected: self.fees_collected,
            fees_withheld: self.fees_withheld,
            written_off: self.written_off,
            recovered: self.recovered,
            savings_change: self.savings_balance,
            portfolio_change: self.portfolio_outstanding,
            borrowers_change: self.borrowers,
            borrowers_with_savings_change: self.borrowers_with_savings,
            loans_active_change: self.loans_active,
            par1_change: self.par1,
            par30_change: self.par30,
            par90_change: self.par90,
            loans_in_arrears_change: self.loans_in_arrears,
            due: self.due,
            paid_on_time: self.paid_on_time,
            disbursed_by_product: self.disbursed_by_product.clone(),
        }
    }

    /// These figures less `other`'s, field by field (the dates are these).
    pub fn minus(&self, other: &PeriodFigures) -> Result<PeriodFigures, Overflow> {
        let mut sum = self.to_sum();
        sum.add(&other.to_sum().negated())?;
        Ok(PeriodFigures {
            from: self.from,
            to: self.to,
            ..PeriodFigures::from_sum(sum, NaiveDate::MIN, NaiveDate::MIN)
        })
    }

    /// Adds another branch's figures for the same period.
    pub fn add(&mut self, other: &PeriodFigures) -> Result<(), Overflow> {
        let mut sum = self.to_sum();
        sum.add(&other.to_sum())?;
        let (from, to) = (self.from, self.to);
        *self = PeriodFigures {
            from,
            to,
            ..PeriodFigures::from_sum(sum, NaiveDate::MIN, NaiveDate::MIN)
        };
        Ok(())
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
    /// use mfi_ledger_domain::totals::Period;
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
    #[serde(with = "crate::codec::date")]
    pub date: NaiveDate,
    /// +1 when she becomes a borrower, -1 when she stops.
    pub borrower: i64,
    /// +1 when she becomes a borrower holding savings, -1 when she stops.
    pub with_savings: i64,
}

/// One change of the number of a member's loans with principal
/// outstanding, on a date: +1 when one began, -1 when one stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BorrowingChange {
    #[serde(with = "crate::codec::date")]
    pub date: NaiveDate,
    pub loans: i64,
}

/// The dates a loan's principal outstanding became positive (+1) and came
/// back to zero (-1), from its principal changes by date.
pub fn borrowing_changes(
    principal_changes: &crate::dated::DatedAmounts,
) -> Result<Vec<BorrowingChange>, Overflow> {
    let mut changes = Vec::new();
    each_borrowing_change(principal_changes, |date, loans| {
        changes.push(BorrowingChange { date, loans });
    })?;
    Ok(changes)
}

/// [`borrowing_changes`], each handed to `found` as it is found.
fn each_borrowing_change(
    principal_changes: &crate::dated::DatedAmounts,
    mut found: impl FnMut(NaiveDate, i64),
) -> Result<(), Overflow> {
    let mut outstanding = Decimal::ZERO;
    let mut active = false;
    for (date, change) in principal_changes.iter() {
        outstanding = plus(outstanding, change)?;
        let now_active = outstanding > Decimal::ZERO;
        if now_active != active {
            found(date, if now_active { 1 } else { -1 });
            active = now_active;
        }
    }
    Ok(())
}

/// `changes` with `by` added (`sign` +1) or taken away (-1), date by date,
/// in date order with no date left at zero.
pub fn add_borrowing_changes(
    changes: &mut Vec<BorrowingChange>,
    by: &[BorrowingChange],
    sign: i64,
) -> Result<(), Overflow> {
    for change in by {
        let delta = change.loans.checked_mul(sign).ok_or(Overflow)?;
        match changes.binary_search_by_key(&change.date, |c| c.date) {
            Ok(at) => {
                changes[at].loans = plus_count(changes[at].loans, delta)?;
                if changes[at].loans == 0 {
                    changes.remove(at);
                }
            }
            Err(at) => changes.insert(
                at,
                BorrowingChange {
                    date: change.date,
                    loans: delta,
                },
            ),
        }
    }
    Ok(())
}

/// One of a member's savings accounts, as her borrower steps read it: its
/// changes by date, and, when a close folded those through a date, that
/// date and their sum (the balance then, but for the changes `changes`
/// holds on or before it).
#[derive(Clone, Copy, Debug)]
pub struct SavingsChanges<'a> {
    pub folded: Option<(NaiveDate, Decimal)>,
    pub changes: &'a crate::dated::PackedAmounts,
}

/// The steps of a member's indicators, from her running loans' principal
/// changes by date, what her loans that ended changed of the number she
/// had outstanding ([`add_borrowing_changes`]), and her savings accounts'
/// balance changes by date.
///
/// She is a borrower on a day when any loan has principal outstanding at the
/// end of that day; a borrower who saves when, in addition, her savings
/// balance (all her accounts) is positive at the end of that day. Holding an
/// account is not saving: a disbursement already requires one.
///
/// When a close folded any of her accounts' changes, the steps through
/// the latest date folded are `kept`'s (her steps as they stood: nothing
/// dated in a closed period changes), and those after it are worked out
/// from where she stood at its end (the folded sums, and every other
/// change up to it). An error, besides an overflow: `kept`'s steps through
/// that date do not end where the changes say she stood.
pub fn borrower_steps(
    loans_principal_changes: &[&crate::dated::DatedAmounts],
    ended_loans: &[BorrowingChange],
    savings_changes: &[SavingsChanges<'_>],
    kept: &[BorrowerStep],
) -> Result<Vec<BorrowerStep>, String> {
    let folded = savings_changes
        .iter()
        .filter_map(|account| account.folded.map(|(through, _)| through))
        .max();
    // Count of loans with principal outstanding, and savings, changing by
    // date: gathered in a list, each loan's and account's already in date
    // order, then sorted once (a stable sort, so that a date's changes
    // are summed in the order they came) and summed by date. Cheaper than
    // a map kept in order as they come, the way every disbursement and
    // loan closed works them out again.
    let savings_count: usize = savings_changes
        .iter()
        .map(|account| account.changes.len())
        .sum();
    let mut changes: Vec<(NaiveDate, i64, Decimal)> =
        Vec::with_capacity(savings_count + 2 * loans_principal_changes.len() + ended_loans.len());
    for change in ended_loans {
        changes.push((change.date, change.loans, Decimal::ZERO));
    }
    for loan in loans_principal_changes {
        each_borrowing_change(loan, |date, loans| {
            changes.push((date, loans, Decimal::ZERO));
        })?;
    }
    for account in savings_changes {
        for (date, change) in account.changes.iter() {
            changes.push((date, 0, change));
        }
    }
    changes.sort_by_key(|(date, _, _)| *date);
    let mut by_date: Vec<(NaiveDate, (i64, Decimal))> = Vec::with_capacity(changes.len());
    for (date, loans, saved) in changes {
        match by_date.last_mut() {
            Some((last, (count, sum))) if *last == date => {
                *count += loans;
                *sum = plus(*sum, saved)?;
            }
            _ => by_date.push((date, (loans, plus(Decimal::ZERO, saved)?))),
        }
    }
    let mut changes = by_date.into_iter().peekable();
    let mut steps = Vec::new();
    let mut active_loans = 0i64;
    let mut savings = Decimal::ZERO;
    let (mut borrower, mut with_savings) = (false, false);
    if let Some(through) = folded {
        for account in savings_changes {
            if let Some((_, carried)) = account.folded {
                savings = plus(savings, carried)?;
            }
        }
        while let Some((_, (loans_change, savings_change))) =
            changes.next_if(|(date, _)| *date <= through)
        {
            active_loans = plus_count(active_loans, loans_change)?;
            savings = plus(savings, savings_change)?;
        }
        borrower = active_loans > 0;
        with_savings = borrower && savings > Decimal::ZERO;
        steps.extend(kept.iter().take_while(|step| step.date <= through).copied());
        let stood = steps.iter().fold((0, 0), |(b, w), step| {
            (b + step.borrower, w + step.with_savings)
        });
        if stood != (i64::from(borrower), i64::from(with_savings)) {
            return Err(format!(
                "her borrower steps through {through} end at {stood:?} (borrower, saving), \
                 and her loans and savings then at ({}, {})",
                i64::from(borrower),
                i64::from(with_savings)
            ));
        }
    }
    for (date, (loans_change, savings_change)) in changes {
        active_loans = plus_count(active_loans, loans_change)?;
        savings = plus(savings, savings_change)?;
        let now_borrower = active_loans > 0;
        let now_with_savings = now_borrower && savings > Decimal::ZERO;
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
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// The three readings of a day's numbered figures (all at once, one by
    /// one, and set one by one) agree figure for figure, so a figure added
    /// to one and not the others, or numbered twice, fails here; a count
    /// set to a fraction and an unknown number are refused and change
    /// nothing.
    #[test]
    fn a_days_figures_read_and_set_by_number_agree() {
        let mut day = DayTotals::default();
        for number in 0..figure::COUNT as u8 {
            // A distinct value for each figure, whole so that counts take it.
            let value = Decimal::from(i64::from(number) + 1)
                * Decimal::from(if DayTotals::is_count(number) {
                    1
                } else {
                    -1000
                });
            day.set_figure(number, value).expect("a figure that exists");
        }
        let figures = day.figures();
        for number in 0..figure::COUNT as u8 {
            let value = figures[usize::from(number)];
            assert_eq!(day.figure(number), value, "figure {number}");
            assert_eq!(
                value.abs(),
                Decimal::from(i64::from(number) + 1)
                    * Decimal::from(if DayTotals::is_count(number) { 1 } else { 1000 })
            );
        }
        let counts = (0..figure::COUNT as u8)
            .filter(|n| DayTotals::is_count(*n))
            .count();
        assert_eq!(counts, 5, "the five i64 fields");
        let before = day.clone();
        assert_eq!(
            day.set_figure(figure::LOANS_ACTIVE_CHANGE, Decimal::new(15, 1)),
            Err("field 12 holds 1.5, not a count".to_owned())
        );
        assert_eq!(
            day.set_figure(figure::COUNT as u8, Decimal::ONE),
            Err("unknown field 19".to_owned())
        );
        assert_eq!(day, before);
        assert_eq!(day.figure(figure::COUNT as u8), Decimal::ZERO);
    }

    fn changes<T: FromIterator<(NaiveDate, Decimal)>>(items: &[(&str, i64)]) -> T {
        items
            .iter()
            .map(|(d, a)| (date(d), Decimal::from(*a)))
            .collect()
    }

    /// A day is empty exactly when it equals the empty day: any one figure
    /// moved makes it not, and zeros written with decimal places do not.
    #[test]
    fn a_day_is_empty_when_every_figure_is_zero() {
        let zero = Decimal::new(0, 2);
        let zeros = DayTotals {
            amount_disbursed: zero,
            principal_collected: zero,
            interest_collected: zero,
            fees_collected: zero,
            fees_withheld: zero,
            written_off: zero,
            recovered: zero,
            savings_change: zero,
            portfolio_change: zero,
            par1_change: zero,
            par30_change: zero,
            par90_change: zero,
            due: zero,
            paid_on_time: zero,
            ..DayTotals::default()
        };
        assert!(zeros.is_empty() && zeros == DayTotals::default());
        let moves: Vec<fn(&mut DayTotals)> = vec![
            |d| d.loans_disbursed = 1,
            |d| d.amount_disbursed = Decimal::new(1, 2),
            |d| d.principal_collected = Decimal::new(1, 2),
            |d| d.interest_collected = Decimal::new(1, 2),
            |d| d.fees_collected = Decimal::new(1, 2),
            |d| d.fees_withheld = Decimal::new(1, 2),
            |d| d.written_off = Decimal::new(1, 2),
            |d| d.recovered = Decimal::new(1, 2),
            |d| d.savings_change = Decimal::new(-1, 2),
            |d| d.portfolio_change = Decimal::new(-1, 2),
            |d| d.borrowers_change = -1,
            |d| d.borrowers_with_savings_change = 1,
            |d| d.loans_active_change = 1,
            |d| d.par1_change = Decimal::new(1, 2),
            |d| d.par30_change = Decimal::new(1, 2),
            |d| d.par90_change = Decimal::new(1, 2),
            |d| d.loans_in_arrears_change = 1,
            |d| d.due = Decimal::new(1, 2),
            |d| d.paid_on_time = Decimal::new(1, 2),
            |d| {
                d.disbursed_by_product.insert(None, ProductDay::default());
            },
        ];
        for (i, moved) in moves.iter().enumerate() {
            let mut day = zeros.clone();
            moved(&mut day);
            assert!(!day.is_empty(), "figure {i} moved: {day:?}");
            assert_ne!(day, DayTotals::default(), "figure {i}");
        }
    }

    /// An account's changes as memory holds them all.
    fn held(changes: &crate::dated::PackedAmounts) -> SavingsChanges<'_> {
        SavingsChanges {
            folded: None,
            changes,
        }
    }

    /// Her steps with her accounts' changes folded through a date are the
    /// steps worked out from every change: those through the date kept as
    /// they stood, those after from where she stood then. Steps kept that
    /// do not end where the folded sums say she stood are refused.
    #[test]
    fn steps_worked_out_after_a_fold_are_those_of_every_change() {
        let loan = changes(&[
            ("2022-03-01", 1000),
            ("2023-02-01", 500),
            ("2023-06-01", -1500),
        ]);
        let compulsory = changes(&[("2022-03-01", 40), ("2022-11-01", -40), ("2023-01-10", 60)]);
        let voluntary = changes(&[("2022-05-01", 10), ("2022-10-01", -10)]);
        let whole =
            borrower_steps(&[&loan], &[], &[held(&compulsory), held(&voluntary)], &[]).unwrap();
        assert_eq!(whole.len(), 4, "{whole:?}");
        for through in ["2022-04-30", "2022-10-31", "2022-12-31"] {
            let through = date(through);
            let after = |all: &crate::dated::PackedAmounts| -> crate::dated::PackedAmounts {
                all.range((
                    std::ops::Bound::Excluded(through),
                    std::ops::Bound::Unbounded,
                ))
                .collect()
            };
            let carried = |all: &crate::dated::PackedAmounts| -> Decimal {
                all.range(..=through).map(|(_, change)| change).sum()
            };
            let (compulsory_after, voluntary_after) = (after(&compulsory), after(&voluntary));
            let folded = [
                SavingsChanges {
                    folded: Some((through, carried(&compulsory))),
                    changes: &compulsory_after,
                },
                SavingsChanges {
                    folded: Some((through, carried(&voluntary))),
                    changes: &voluntary_after,
                },
            ];
            assert_eq!(
                borrower_steps(&[&loan], &[], &folded, &whole).unwrap(),
                whole,
                "folded through {through}"
            );
            // One account folded, the other held whole: the same.
            assert_eq!(
                borrower_steps(&[&loan], &[], &[folded[0], held(&voluntary)], &whole).unwrap(),
                whole,
                "one folded through {through}"
            );
            // Steps kept that say she was not a borrower then.
            let refused = borrower_steps(&[&loan], &[], &folded, &[]).unwrap_err();
            assert!(
                refused.starts_with(&format!(
                    "her borrower steps through {through} end at (0, 0)"
                )),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_member_with_overlapping_loans_counts_once() {
        let first = changes(&[("2023-01-10", 1000), ("2023-06-10", -1000)]);
        let second = changes(&[("2023-03-01", 500), ("2023-09-01", -500)]);
        let savings: crate::dated::PackedAmounts = changes(&[("2023-01-01", 50)]);
        let steps = borrower_steps(&[&first, &second], &[], &[held(&savings)], &[]).unwrap();
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
    fn savings_deposited_after_the_loan_starts_the_second_count_later() {
        let loan = changes(&[("2023-01-10", 1000)]);
        let savings: crate::dated::PackedAmounts = changes(&[("2023-02-01", 50)]);
        let steps = borrower_steps(&[&loan], &[], &[held(&savings)], &[]).unwrap();
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

    /// A borrower whose savings are back to zero does not save: holding an
    /// account is not saving (it counted her as saving before).
    #[test]
    fn a_borrower_whose_savings_are_zero_does_not_save() {
        let loan = changes(&[("2023-01-10", 1000)]);
        let savings: crate::dated::PackedAmounts =
            changes(&[("2023-01-05", 50), ("2023-03-01", -50)]);
        let never = crate::dated::PackedAmounts::new();
        let steps = borrower_steps(&[&loan], &[], &[held(&savings), held(&never)], &[]).unwrap();
        assert_eq!(
            steps,
            vec![
                BorrowerStep {
                    date: date("2023-01-10"),
                    borrower: 1,
                    with_savings: 1
                },
                BorrowerStep {
                    date: date("2023-03-01"),
                    borrower: 0,
                    with_savings: -1
                },
            ]
        );
        assert!(
            borrower_steps(&[&loan], &[], &[held(&never)], &[])
                .unwrap()
                .iter()
                .all(|s| s.with_savings == 0)
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
        let figures =
            PeriodFigures::from_days(&days, date("2023-01-01"), date("2023-12-31")).unwrap();
        assert_eq!(figures.loans_disbursed, 2);
        assert_eq!(figures.savings_balance, Decimal::from(150));
    }
}
