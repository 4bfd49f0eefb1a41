//! A branch's year-end report: the year against the previous one, for the
//! branch manager.
//!
//! [`BranchReport`] holds the figures; [`gather`] reads them from a running
//! ledger over gRPC. The rest only renders them, as a terminal table
//! ([`render_table`]) or as a self-contained HTML document with charts
//! ([`render_html`]). Rendering is pure: no I/O, no clock, no network.
//!
//! Money stays [`Decimal`] all the way: every figure shown is the exact
//! amount rounded to the currency's decimal places, every change and share is
//! computed in decimal arithmetic, and a division by zero shows "n/a". Only
//! the positions of chart elements are floating point.

mod gather;
mod html;
pub mod passbook;
mod table;

pub use gather::{gather, gather_from};
pub use html::render_html;
pub use table::render_table;

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// Everything a branch's year-end report shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BranchReport {
    /// The branch's identifier in the ledger.
    pub branch_id: String,
    /// The branch's name, e.g. "TYM - Chi nhánh Thái Bình".
    pub branch_name: String,
    /// ISO 4217 code of every amount, e.g. "VND".
    pub currency: String,
    /// Decimal places amounts are shown with (0 for VND).
    pub currency_decimal_places: u32,
    /// The year reported on.
    pub year: i32,
    /// Figures of `year`.
    pub current: YearFigures,
    /// Figures of the year before `year`.
    pub previous: YearFigures,
    /// The months of `year`, January first; a month numbered outside 1..=12
    /// is not drawn.
    pub months: Vec<MonthFigures>,
    /// Loans disbursed in `year`, per product.
    pub by_product: Vec<ProductFigures>,
    /// When the figures were gathered, e.g. "2026-11-29 08:30 UTC".
    pub generated_at: String,
    /// The journal sequence and hash the figures were read at.
    pub ledger_head: String,
}

/// A branch's figures for one year; balances and ratios are at year end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct YearFigures {
    /// Number of loans disbursed in the year.
    pub loans_disbursed: u64,
    /// Total principal disbursed in the year.
    pub amount_disbursed: Decimal,
    /// Average principal of a loan disbursed in the year.
    pub average_loan: Decimal,
    /// Principal, interest and fees paid with installments in the year
    /// (fees withheld at disbursement are not repayments).
    pub repayments_collected: Decimal,
    /// Savings balance at year end.
    pub savings_balance: Decimal,
    /// Active borrowers at year end.
    pub borrowers: u64,
    /// Active borrowers at year end with a positive savings balance.
    pub borrowers_saving: u64,
    /// Outstanding principal at year end.
    pub gross_portfolio: Decimal,
    /// Portfolio at risk over 30 days at year end (the standard measure: any
    /// part of an installment unpaid more than 30 days, no tolerance), as a
    /// ratio of the gross portfolio (0.0123 is 1.23 %).
    pub par30: Decimal,
    /// Principal written off in the year.
    pub write_offs: Decimal,
}

impl YearFigures {
    /// The share of active borrowers who hold savings, as a ratio, or `None`
    /// when there are no active borrowers.
    pub fn borrowers_saving_share(&self) -> Option<Decimal> {
        Decimal::from(self.borrowers_saving).checked_div(Decimal::from(self.borrowers))
    }
}

/// A branch's figures for one month.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthFigures {
    /// The month, 1 (January) to 12 (December).
    pub month: u32,
    /// Number of loans disbursed in the month.
    pub loans_disbursed: u64,
    /// Total principal disbursed in the month.
    pub amount_disbursed: Decimal,
    /// Repayments collected in the month (as `repayments_collected`).
    pub collected: Decimal,
    /// Savings balance at month end.
    pub savings_balance: Decimal,
    /// Portfolio at risk over 30 days at month end, as a ratio.
    pub par30: Decimal,
}

impl MonthFigures {
    /// The month's English abbreviation ("Jan"), or `None` when `month` is
    /// not in 1..=12.
    pub fn month_abbreviation(&self) -> Option<&'static str> {
        month_abbreviation(self.month)
    }
}

/// The English abbreviation of month 1 to 12 ("Jan").
fn month_abbreviation(month: u32) -> Option<&'static str> {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = usize::try_from(month).ok()?.checked_sub(1)?;
    NAMES.get(index).copied()
}

/// The loans of one product disbursed in the year.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProductFigures {
    /// The product's identifier in the ledger.
    pub product_id: String,
    /// The product's name.
    pub name: String,
    /// Number of loans disbursed.
    pub loans: u64,
    /// Total principal disbursed.
    pub amount: Decimal,
}

/// One line of the year-against-previous comparison, formatted; shared by
/// the terminal and the HTML table.
struct ComparisonRow {
    label: &'static str,
    previous: String,
    current: String,
    change: Change,
}

/// How a figure changed from the previous year to this one.
struct Change {
    /// The difference, signed: "+326", "-24,500,000 VND", "+0.40 pp"; "n/a"
    /// when it cannot be computed.
    difference: String,
    /// For counts and amounts, the difference relative to the previous
    /// year: "+17.63 %", or "n/a" from zero.
    relative: Option<String>,
}

impl fmt::Display for Change {
    /// "+326 (+17.63 %)", or the difference alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.relative {
            Some(relative) => write!(f, "{} ({relative})", self.difference),
            None => f.write_str(&self.difference),
        }
    }
}

/// The comparison lines, in the order the report shows them.
fn comparison_rows(report: &BranchReport) -> Vec<ComparisonRow> {
    let (previous, current) = (&report.previous, &report.current);
    let (currency, places) = (&report.currency, report.currency_decimal_places);
    let money = |label, figure: fn(&YearFigures) -> Decimal| {
        let (previous, current) = (figure(previous), figure(current));
        ComparisonRow {
            label,
            previous: format_money(previous, currency, places),
            current: format_money(current, currency, places),
            change: format_change(previous, current, &Unit::Money { currency, places }),
        }
    };
    let count = |label, figure: fn(&YearFigures) -> u64| {
        let (previous, current) = (figure(previous), figure(current));
        ComparisonRow {
            label,
            previous: format_count(previous),
            current: format_count(current),
            change: format_change(
                Decimal::from(previous),
                Decimal::from(current),
                &Unit::Count,
            ),
        }
    };
    let ratio = |label, figure: fn(&YearFigures) -> Option<Decimal>| {
        let (previous, current) = (figure(previous), figure(current));
        ComparisonRow {
            label,
            previous: previous.map_or_else(not_available, format_percent),
            current: current.map_or_else(not_available, format_percent),
            change: format_points_change(previous, current),
        }
    };
    vec![
        count("Loans disbursed", |y| y.loans_disbursed),
        money("Amount disbursed", |y| y.amount_disbursed),
        money("Average loan", |y| y.average_loan),
        money("Repayments collected", |y| y.repayments_collected),
        money("Savings balance", |y| y.savings_balance),
        ratio(
            "Share of borrowers saving",
            YearFigures::borrowers_saving_share,
        ),
        count("Active borrowers", |y| y.borrowers),
        money("Gross loan portfolio", |y| y.gross_portfolio),
        ratio("PAR30", |y| Some(y.par30)),
        money("Write-offs", |y| y.write_offs),
    ]
}

/// What a figure counts, for formatting it and its change.
enum Unit<'a> {
    /// A number of things (loans, borrowers).
    Count,
    /// An amount of `currency`, shown with `places` decimals.
    Money { currency: &'a str, places: u32 },
}

/// "n/a", shown where a figure cannot be computed.
fn not_available() -> String {
    "n/a".to_owned()
}

/// `value` rounded half away from zero to exactly `places` decimals, with a
/// comma between each group of three integer digits: "-1,234,567.50".
fn format_decimal(value: Decimal, places: u32) -> String {
    let mut rounded = value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(places);
    if rounded.is_zero() {
        // Rounding -0.001 gives "-0.00"; show it unsigned.
        rounded.set_sign_positive(true);
    }
    let text = rounded.to_string();
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let mut out = String::with_capacity(text.len() + whole.len() / 3);
    out.push_str(sign);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// `format_decimal` with a leading "+" when the rounded value is positive.
fn format_signed(value: Decimal, places: u32) -> String {
    let text = format_decimal(value, places);
    if text.starts_with('-') || text.bytes().all(|b| matches!(b, b'0' | b'.' | b',')) {
        text
    } else {
        format!("+{text}")
    }
}

/// A count with grouped digits: "2,175".
fn format_count(count: u64) -> String {
    format_decimal(Decimal::from(count), 0)
}

/// An amount with grouped digits and its currency: "71,500,000,000 VND".
fn format_money(amount: Decimal, currency: &str, places: u32) -> String {
    with_currency(format_decimal(amount, places), currency)
}

/// `digits` followed by the currency code, if there is one.
fn with_currency(digits: String, currency: &str) -> String {
    if currency.is_empty() {
        digits
    } else {
        format!("{digits} {currency}")
    }
}

/// A ratio as a percentage with 2 decimals: 0.0123 is "1.23 %".
fn format_percent(ratio: Decimal) -> String {
    ratio
        .checked_mul(Decimal::ONE_HUNDRED)
        .map_or_else(not_available, |percent| {
            format!("{} %", format_decimal(percent, 2))
        })
}

/// The relative change from `previous` to `current` as a ratio, or `None`
/// when `previous` is zero.
fn relative_change(previous: Decimal, current: Decimal) -> Option<Decimal> {
    current.checked_sub(previous)?.checked_div(previous)
}

/// The change of a count or amount, absolute and relative:
/// "+326 (+17.63 %)", or "+326 (n/a)" from zero.
fn format_change(previous: Decimal, current: Decimal, unit: &Unit<'_>) -> Change {
    let Some(difference) = current.checked_sub(previous) else {
        return Change {
            difference: not_available(),
            relative: None,
        };
    };
    let difference = match unit {
        Unit::Count => format_signed(difference, 0),
        Unit::Money { currency, places } => {
            with_currency(format_signed(difference, *places), currency)
        }
    };
    let relative = relative_change(previous, current)
        .and_then(|ratio| ratio.checked_mul(Decimal::ONE_HUNDRED))
        .map_or_else(not_available, |percent| {
            format!("{} %", format_signed(percent, 2))
        });
    Change {
        difference,
        relative: Some(relative),
    }
}

/// The change of a ratio in percentage points: "+0.40 pp", or "n/a" when
/// either ratio is unknown.
fn format_points_change(previous: Option<Decimal>, current: Option<Decimal>) -> Change {
    let difference = previous
        .zip(current)
        .and_then(|(previous, current)| current.checked_sub(previous))
        .and_then(|difference| difference.checked_mul(Decimal::ONE_HUNDRED))
        .map_or_else(not_available, |points| {
            format!("{} pp", format_signed(points, 2))
        });
    Change {
        difference,
        relative: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn decimals_are_grouped_and_rounded_half_away_from_zero() {
        assert_eq!(format_decimal(dec("0"), 0), "0");
        assert_eq!(format_decimal(dec("999"), 0), "999");
        assert_eq!(format_decimal(dec("1000"), 0), "1,000");
        assert_eq!(format_decimal(dec("71500000000"), 0), "71,500,000,000");
        assert_eq!(format_decimal(dec("-1234567.5"), 2), "-1,234,567.50");
        assert_eq!(format_decimal(dec("32873563.2184"), 0), "32,873,563");
        assert_eq!(format_decimal(dec("2.5"), 0), "3");
        assert_eq!(format_decimal(dec("-2.5"), 0), "-3");
        assert_eq!(format_decimal(dec("-0.001"), 2), "0.00");
    }

    #[test]
    fn counts_and_money_carry_separators_and_currency() {
        assert_eq!(format_count(2175), "2,175");
        assert_eq!(format_count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(
            format_money(dec("71234500000"), "VND", 0),
            "71,234,500,000 VND"
        );
        assert_eq!(format_money(dec("1234.5"), "USD", 2), "1,234.50 USD");
        assert_eq!(format_money(dec("12"), "", 0), "12");
    }

    #[test]
    fn ratios_are_percentages_with_two_decimals() {
        assert_eq!(format_percent(dec("0.0123")), "1.23 %");
        assert_eq!(format_percent(dec("0.95897")), "95.90 %");
        assert_eq!(format_percent(dec("1")), "100.00 %");
        assert_eq!(format_percent(dec("0")), "0.00 %");
    }

    #[test]
    fn changes_are_absolute_and_relative() {
        // 326 / 1,849 = 0.176311...
        assert_eq!(
            format_change(dec("1849"), dec("2175"), &Unit::Count).to_string(),
            "+326 (+17.63 %)"
        );
        assert_eq!(
            format_change(dec("2175"), dec("1849"), &Unit::Count).to_string(),
            "-326 (-14.99 %)"
        );
        assert_eq!(
            format_change(dec("7"), dec("7"), &Unit::Count).to_string(),
            "0 (0.00 %)"
        );
        let vnd = Unit::Money {
            currency: "VND",
            places: 0,
        };
        // 13,180,000,000 / 58,320,000,000 = 0.225994...
        assert_eq!(
            format_change(dec("58320000000"), dec("71500000000"), &vnd).to_string(),
            "+13,180,000,000 VND (+22.60 %)"
        );
    }

    #[test]
    fn a_change_from_zero_has_no_percentage() {
        assert_eq!(
            format_change(dec("0"), dec("5"), &Unit::Count).to_string(),
            "+5 (n/a)"
        );
        assert_eq!(
            format_change(dec("0"), dec("0"), &Unit::Count).to_string(),
            "0 (n/a)"
        );
    }

    #[test]
    fn ratio_changes_are_percentage_points() {
        assert_eq!(
            format_points_change(Some(dec("0.0083")), Some(dec("0.0123"))).to_string(),
            "+0.40 pp"
        );
        assert_eq!(
            format_points_change(Some(dec("0.0123")), Some(dec("0.0083"))).to_string(),
            "-0.40 pp"
        );
        assert_eq!(
            format_points_change(Some(dec("0.5")), Some(dec("0.5"))).to_string(),
            "0.00 pp"
        );
        assert_eq!(
            format_points_change(None, Some(dec("0.5"))).to_string(),
            "n/a"
        );
    }

    #[test]
    fn borrowers_saving_share_is_none_without_borrowers() {
        let mut year = YearFigures {
            loans_disbursed: 0,
            amount_disbursed: Decimal::ZERO,
            average_loan: Decimal::ZERO,
            repayments_collected: Decimal::ZERO,
            savings_balance: Decimal::ZERO,
            borrowers: 0,
            borrowers_saving: 0,
            gross_portfolio: Decimal::ZERO,
            par30: Decimal::ZERO,
            write_offs: Decimal::ZERO,
        };
        assert_eq!(year.borrowers_saving_share(), None);
        year.borrowers = 5318;
        year.borrowers_saving = 5102;
        // 5,102 / 5,318 = 0.959383...
        assert_eq!(
            year.borrowers_saving_share().map(format_percent),
            Some("95.94 %".to_owned())
        );
    }

    #[test]
    fn months_are_abbreviated_in_range_only() {
        let month = |month| MonthFigures {
            month,
            loans_disbursed: 0,
            amount_disbursed: Decimal::ZERO,
            collected: Decimal::ZERO,
            savings_balance: Decimal::ZERO,
            par30: Decimal::ZERO,
        };
        assert_eq!(month(1).month_abbreviation(), Some("Jan"));
        assert_eq!(month(12).month_abbreviation(), Some("Dec"));
        assert_eq!(month(0).month_abbreviation(), None);
        assert_eq!(month(13).month_abbreviation(), None);
    }
}
