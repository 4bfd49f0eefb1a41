//! A branch's year-end report: the year against the previous one, for the
//! branch manager, with the branch's balance sheet at 31 December beside the
//! previous 31 December and its income statement of the year beside the
//! previous year.
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

use chrono::{Datelike, NaiveDate};
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
    /// The branch's balance sheet at 31 December of `year`, beside 31
    /// December of the year before.
    pub balance_sheet: BalanceSheet,
    /// The branch's income statement of `year`, beside the year before.
    pub income_statement: IncomeStatement,
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

/// A figure of the report's year beside the same figure the year before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Amounts {
    /// The figure of the report's year (at its end, or over it).
    pub amount: Decimal,
    /// The same figure of the year before.
    pub previous_amount: Decimal,
}

impl Amounts {
    /// The sum of `lines`' amounts, or `None` if it overflows.
    pub fn sum(lines: &[StatementLine]) -> Option<Amounts> {
        lines.iter().try_fold(Amounts::default(), |total, line| {
            total.checked_add(line.amounts())
        })
    }

    /// `self + other`, year by year, or `None` if it overflows.
    pub fn checked_add(self, other: Amounts) -> Option<Amounts> {
        Some(Amounts {
            amount: self.amount.checked_add(other.amount)?,
            previous_amount: self.previous_amount.checked_add(other.previous_amount)?,
        })
    }

    /// `self - other`, year by year, or `None` if it overflows.
    pub fn checked_sub(self, other: Amounts) -> Option<Amounts> {
        Some(Amounts {
            amount: self.amount.checked_sub(other.amount)?,
            previous_amount: self.previous_amount.checked_sub(other.previous_amount)?,
        })
    }
}

/// One general-ledger line of a statement, with the year before beside it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatementLine {
    /// The line's code in the institution's chart, e.g. "1011"; empty for a
    /// computed line (the result not yet carried into retained earnings).
    pub gl_code: String,
    /// The line's name in the chart, e.g. "Cash on hand and in banks".
    pub gl_name: String,
    /// The ledger's line, e.g. "cash"; "result" for income less expenses
    /// not yet carried into retained earnings.
    pub line: String,
    /// The figure of the report's year, on the line's normal side (an
    /// allowance shows negative among the assets).
    pub amount: Decimal,
    /// The same line the year before.
    pub previous_amount: Decimal,
}

impl StatementLine {
    /// The line's two figures.
    pub fn amounts(&self) -> Amounts {
        Amounts {
            amount: self.amount,
            previous_amount: self.previous_amount,
        }
    }
}

/// A branch's balance sheet at the end of a date, beside an earlier date.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BalanceSheet {
    /// 31 December of the report's year.
    pub date: NaiveDate,
    /// 31 December of the year before.
    pub previous_date: NaiveDate,
    /// Cash, loan portfolio, receivables, the allowance for loan losses.
    pub assets: Vec<StatementLine>,
    /// Members' savings.
    pub liabilities: Vec<StatementLine>,
    /// Retained earnings, and the result not yet carried into them (the
    /// line "result").
    pub equity: Vec<StatementLine>,
    /// The sum of the assets.
    pub total_assets: Amounts,
    /// The sum of the liabilities and the equity: equals `total_assets`.
    pub total_liabilities_and_equity: Amounts,
}

impl BalanceSheet {
    /// The sum of the liabilities, or `None` if it overflows.
    pub fn total_liabilities(&self) -> Option<Amounts> {
        Amounts::sum(&self.liabilities)
    }

    /// The sum of the equity lines, or `None` if it overflows.
    pub fn total_equity(&self) -> Option<Amounts> {
        Amounts::sum(&self.equity)
    }
}

/// A branch's income statement of a period, beside an earlier period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncomeStatement {
    /// First day of the period: 1 January of the report's year.
    pub from: NaiveDate,
    /// Last day of the period: 31 December of the report's year.
    pub to: NaiveDate,
    /// First day of the period beside it.
    pub previous_from: NaiveDate,
    /// Last day of the period beside it.
    pub previous_to: NaiveDate,
    /// Interest, fees, recoveries.
    pub income: Vec<StatementLine>,
    /// Interest on savings, loan losses.
    pub expenses: Vec<StatementLine>,
    /// Income less expenses.
    pub result: Amounts,
}

impl IncomeStatement {
    /// The sum of the income lines, or `None` if it overflows.
    pub fn total_income(&self) -> Option<Amounts> {
        Amounts::sum(&self.income)
    }

    /// The sum of the expense lines, or `None` if it overflows.
    pub fn total_expenses(&self) -> Option<Amounts> {
        Amounts::sum(&self.expenses)
    }
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

/// What a row of a statement is, for styling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowKind {
    /// A section's name ("Assets"), with no figures.
    Heading,
    /// A general-ledger line.
    Line,
    /// The sum of a section ("Total liabilities").
    Subtotal,
    /// A statement's bottom line: total assets, total liabilities and
    /// equity, the result.
    Total,
}

/// One row of a statement, formatted; shared by the terminal and the HTML
/// table. Amounts have the report's digit grouping and decimals and no
/// currency (the statement's title names it).
struct StatementRow {
    kind: RowKind,
    /// General-ledger code; empty for headings, totals and computed lines.
    code: String,
    /// The line's name, or the heading's or total's.
    name: String,
    /// The ledger's line ("cash"); empty for headings and totals.
    line: String,
    previous: String,
    current: String,
}

impl StatementRow {
    fn heading(name: &str) -> StatementRow {
        StatementRow {
            kind: RowKind::Heading,
            code: String::new(),
            name: name.to_owned(),
            line: String::new(),
            previous: String::new(),
            current: String::new(),
        }
    }

    fn line(line: &StatementLine, places: u32) -> StatementRow {
        StatementRow {
            kind: RowKind::Line,
            code: line.gl_code.clone(),
            name: line.gl_name.clone(),
            line: line.line.clone(),
            previous: format_decimal(line.previous_amount, places),
            current: format_decimal(line.amount, places),
        }
    }

    /// A total, "n/a" when it could not be added up.
    fn total(kind: RowKind, name: &str, amounts: Option<Amounts>, places: u32) -> StatementRow {
        let format = |figure: fn(&Amounts) -> Decimal| {
            amounts.map_or_else(not_available, |amounts| {
                format_decimal(figure(&amounts), places)
            })
        };
        StatementRow {
            kind,
            code: String::new(),
            name: name.to_owned(),
            line: String::new(),
            previous: format(|a| a.previous_amount),
            current: format(|a| a.amount),
        }
    }
}

/// A section of a statement: its heading, its lines and their subtotal.
fn section_rows(
    heading: &str,
    lines: &[StatementLine],
    subtotal: Option<(&str, Option<Amounts>)>,
    places: u32,
) -> Vec<StatementRow> {
    let mut rows = vec![StatementRow::heading(heading)];
    rows.extend(lines.iter().map(|line| StatementRow::line(line, places)));
    if let Some((name, amounts)) = subtotal {
        rows.push(StatementRow::total(
            RowKind::Subtotal,
            name,
            amounts,
            places,
        ));
    }
    rows
}

/// The balance sheet's rows: assets and their total, then liabilities and
/// equity with theirs and the total of both, which equals total assets.
fn balance_sheet_rows(report: &BranchReport) -> Vec<StatementRow> {
    let sheet = &report.balance_sheet;
    let places = report.currency_decimal_places;
    let mut rows = section_rows("Assets", &sheet.assets, None, places);
    rows.push(StatementRow::total(
        RowKind::Total,
        "Total assets",
        Some(sheet.total_assets),
        places,
    ));
    rows.extend(section_rows(
        "Liabilities",
        &sheet.liabilities,
        Some(("Total liabilities", sheet.total_liabilities())),
        places,
    ));
    rows.extend(section_rows(
        "Equity",
        &sheet.equity,
        Some(("Total equity", sheet.total_equity())),
        places,
    ));
    rows.push(StatementRow::total(
        RowKind::Total,
        "Total liabilities and equity",
        Some(sheet.total_liabilities_and_equity),
        places,
    ));
    rows
}

/// The income statement's rows: income and expenses, each with its total,
/// then the result.
fn income_statement_rows(report: &BranchReport) -> Vec<StatementRow> {
    let statement = &report.income_statement;
    let places = report.currency_decimal_places;
    let mut rows = section_rows(
        "Income",
        &statement.income,
        Some(("Total income", statement.total_income())),
        places,
    );
    rows.extend(section_rows(
        "Expenses",
        &statement.expenses,
        Some(("Total expenses", statement.total_expenses())),
        places,
    ));
    rows.push(StatementRow::total(
        RowKind::Total,
        "Result",
        Some(statement.result),
        places,
    ));
    rows
}

/// A date as statements head their columns: "31 Dec 2023".
fn format_date(date: NaiveDate) -> String {
    date.format("%-d %b %Y").to_string()
}

/// A period as an income statement heads its column: "2023" for a whole
/// calendar year, else "1 Jan 2023 – 30 Jun 2023".
fn format_period(from: NaiveDate, to: NaiveDate) -> String {
    let whole_year = from.year() == to.year()
        && (from.month(), from.day()) == (1, 1)
        && (to.month(), to.day()) == (12, 31);
    if whole_year {
        from.year().to_string()
    } else {
        format!("{} – {}", format_date(from), format_date(to))
    }
}

/// The balance sheet's title and its two column headings, previous first.
fn balance_sheet_heading(report: &BranchReport) -> (String, String, String) {
    let sheet = &report.balance_sheet;
    let (previous, current) = (format_date(sheet.previous_date), format_date(sheet.date));
    (
        format!(
            "Balance sheet at {current} against {previous}{}",
            in_currency(&report.currency)
        ),
        previous,
        current,
    )
}

/// The income statement's title and its two column headings, previous first.
fn income_statement_heading(report: &BranchReport) -> (String, String, String) {
    let statement = &report.income_statement;
    let previous = format_period(statement.previous_from, statement.previous_to);
    let current = format_period(statement.from, statement.to);
    (
        format!(
            "Income statement {current} against {previous}{}",
            in_currency(&report.currency)
        ),
        previous,
        current,
    )
}

/// " (VND)", or nothing without a currency.
fn in_currency(currency: &str) -> String {
    if currency.is_empty() {
        String::new()
    } else {
        format!(" ({currency})")
    }
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

/// Decimals of a percentage in the report.
const PERCENT_PLACES: u32 = 2;

/// `value` rounded half away from zero to `places` decimals, as the report
/// shows it.
fn rounded(value: Decimal, places: u32) -> Decimal {
    value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
}

/// `value` rounded half away from zero to exactly `places` decimals, with a
/// comma between each group of three integer digits: "-1,234,567.50".
fn format_decimal(value: Decimal, places: u32) -> String {
    let mut rounded = rounded(value, places);
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
            format!("{} %", format_decimal(percent, PERCENT_PLACES))
        })
}

/// The relative change from `previous` to `current` as a ratio, or `None`
/// when `previous` is zero.
fn relative_change(previous: Decimal, current: Decimal) -> Option<Decimal> {
    current.checked_sub(previous)?.checked_div(previous)
}

/// The change of a count or amount, absolute and relative:
/// "+326 (+17.63 %)", or "+326 (n/a)" from zero. Both are worked out from
/// the figures as shown (an amount rounded to the currency's places), so
/// that the difference is the one a reader computes from them.
fn format_change(previous: Decimal, current: Decimal, unit: &Unit<'_>) -> Change {
    let (previous, current) = match unit {
        Unit::Count => (previous, current),
        Unit::Money { places, .. } => (rounded(previous, *places), rounded(current, *places)),
    };
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
/// either ratio is unknown. It is the difference of the two percentages as
/// shown (rounded to 2 places, [`format_percent`]), so that the three
/// figures on a line agree: 2.5149 % and 3.0151 % are "2.51 %" and
/// "3.02 %", a change of "+0.51 pp" (not the exact +0.5002).
fn format_points_change(previous: Option<Decimal>, current: Option<Decimal>) -> Change {
    let as_shown = |ratio: Decimal| {
        ratio
            .checked_mul(Decimal::ONE_HUNDRED)
            .map(|percent| rounded(percent, PERCENT_PLACES))
    };
    let difference = previous
        .zip(current)
        .and_then(|(previous, current)| as_shown(current)?.checked_sub(as_shown(previous)?))
        .map_or_else(not_available, |points| {
            format!("{} pp", format_signed(points, PERCENT_PLACES))
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
    fn a_change_agrees_with_the_rounded_figures_beside_it() {
        // 2.5149 % and 3.0151 % are shown as 2.51 % and 3.02 %; the exact
        // change, 0.5002 pp, would show as +0.50 pp.
        let (previous, current) = (dec("0.025149"), dec("0.030151"));
        assert_eq!(format_percent(previous), "2.51 %");
        assert_eq!(format_percent(current), "3.02 %");
        assert_eq!(
            format_points_change(Some(previous), Some(current)).to_string(),
            "+0.51 pp"
        );
        // And downwards: 3.0149 % → 2.5151 % is 3.01 % → 2.52 %, -0.49 pp.
        assert_eq!(
            format_points_change(Some(dec("0.030149")), Some(dec("0.025151"))).to_string(),
            "-0.49 pp"
        );
        // An amount with decimals: 10.5 and 20.4 VND show as 11 and 20.
        let vnd = Unit::Money {
            currency: "VND",
            places: 0,
        };
        assert_eq!(
            format_change(dec("10.5"), dec("20.4"), &vnd).difference,
            "+9 VND"
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

    fn statement_line(
        code: &str,
        name: &str,
        line: &str,
        amount: &str,
        previous: &str,
    ) -> StatementLine {
        StatementLine {
            gl_code: code.to_owned(),
            gl_name: name.to_owned(),
            line: line.to_owned(),
            amount: dec(amount),
            previous_amount: dec(previous),
        }
    }

    fn amounts(amount: &str, previous: &str) -> Amounts {
        Amounts {
            amount: dec(amount),
            previous_amount: dec(previous),
        }
    }

    /// A branch keeping its books in USD, 2 decimals, whose statements add
    /// up: assets 1,250.50 + 10,000 − 200.25 = 11,050.25 (980.25 + 8,000 −
    /// 150 = 8,830.25 the year before) against savings 6,000 (5,000),
    /// retained earnings 3,830.25 and the year's result 1,220 (0, the year
    /// before closed); income 1,620.50 (1,190) less expenses 400.50 (330).
    fn report_with_statements() -> BranchReport {
        let year = YearFigures {
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
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        BranchReport {
            branch_id: "TB".to_owned(),
            branch_name: "TYM Thái Bình".to_owned(),
            currency: "USD".to_owned(),
            currency_decimal_places: 2,
            year: 2023,
            current: year.clone(),
            previous: year,
            months: Vec::new(),
            by_product: Vec::new(),
            balance_sheet: BalanceSheet {
                date: day(2023, 12, 31),
                previous_date: day(2022, 12, 31),
                assets: vec![
                    statement_line(
                        "1011",
                        "Cash on hand and in banks",
                        "cash",
                        "1250.5",
                        "980.25",
                    ),
                    statement_line(
                        "1311",
                        "Gross loan portfolio",
                        "loan-portfolio",
                        "10000",
                        "8000",
                    ),
                    statement_line(
                        "1391",
                        "Allowance for loan losses",
                        "loan-loss-allowance",
                        "-200.25",
                        "-150",
                    ),
                ],
                liabilities: vec![statement_line(
                    "2121",
                    "Voluntary savings",
                    "savings-voluntary",
                    "6000",
                    "5000",
                )],
                equity: vec![
                    statement_line(
                        "3211",
                        "Retained earnings",
                        "retained-earnings",
                        "3830.25",
                        "3830.25",
                    ),
                    statement_line(
                        "",
                        "Result not yet carried into retained earnings",
                        "result",
                        "1220",
                        "0",
                    ),
                ],
                total_assets: amounts("11050.25", "8830.25"),
                total_liabilities_and_equity: amounts("11050.25", "8830.25"),
            },
            income_statement: IncomeStatement {
                from: day(2023, 1, 1),
                to: day(2023, 12, 31),
                previous_from: day(2022, 1, 1),
                previous_to: day(2022, 12, 31),
                income: vec![
                    statement_line(
                        "4111",
                        "Interest income on loans",
                        "interest-income",
                        "1500",
                        "1100",
                    ),
                    statement_line(
                        "4211.disbursement",
                        "Fee income: disbursement",
                        "fee-income/disbursement",
                        "120.5",
                        "90",
                    ),
                ],
                expenses: vec![
                    statement_line(
                        "5111",
                        "Interest expense on savings",
                        "interest-expense",
                        "300.5",
                        "250",
                    ),
                    statement_line(
                        "5311",
                        "Loan-loss expense and write-offs",
                        "loan-loss",
                        "100",
                        "80",
                    ),
                ],
                result: amounts("1220", "860"),
            },
            generated_at: "2024-01-02 08:30 UTC".to_owned(),
            ledger_head: "entry 42 (hash 9f2c)".to_owned(),
        }
    }

    /// Each row as (code, name, previous, current), headings with empty figures.
    fn cells(rows: &[StatementRow]) -> Vec<[&str; 4]> {
        rows.iter()
            .map(|row| {
                [
                    row.code.as_str(),
                    row.name.as_str(),
                    row.previous.as_str(),
                    row.current.as_str(),
                ]
            })
            .collect()
    }

    /// The cells of the terminal table's line holding `label`, after `from`.
    fn terminal_row<'a>(text: &'a str, from: &str, label: &str) -> Vec<&'a str> {
        let start = text
            .find(from)
            .unwrap_or_else(|| panic!("no {from:?} in\n{text}"));
        let line = text[start..]
            .lines()
            .find(|line| line.contains(label))
            .unwrap_or_else(|| panic!("no row {label:?} after {from:?}\n{text}"));
        line.split(['│', '┆'])
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect()
    }

    #[test]
    fn the_statements_of_the_fixture_add_up() {
        let report = report_with_statements();
        let sheet = &report.balance_sheet;
        assert_eq!(Amounts::sum(&sheet.assets), Some(sheet.total_assets));
        let liabilities_and_equity = sheet
            .total_liabilities()
            .and_then(|l| l.checked_add(sheet.total_equity()?));
        assert_eq!(
            liabilities_and_equity,
            Some(sheet.total_liabilities_and_equity)
        );
        assert_eq!(sheet.total_assets, sheet.total_liabilities_and_equity);
        let statement = &report.income_statement;
        let result = statement
            .total_income()
            .and_then(|i| i.checked_sub(statement.total_expenses()?));
        assert_eq!(result, Some(statement.result));
    }

    #[test]
    fn the_balance_sheet_shows_every_line_with_its_code_and_the_totals() {
        let report = report_with_statements();
        assert_eq!(
            cells(&balance_sheet_rows(&report)),
            [
                ["", "Assets", "", ""],
                ["1011", "Cash on hand and in banks", "980.25", "1,250.50"],
                ["1311", "Gross loan portfolio", "8,000.00", "10,000.00"],
                ["1391", "Allowance for loan losses", "-150.00", "-200.25"],
                ["", "Total assets", "8,830.25", "11,050.25"],
                ["", "Liabilities", "", ""],
                ["2121", "Voluntary savings", "5,000.00", "6,000.00"],
                ["", "Total liabilities", "5,000.00", "6,000.00"],
                ["", "Equity", "", ""],
                ["3211", "Retained earnings", "3,830.25", "3,830.25"],
                [
                    "",
                    "Result not yet carried into retained earnings",
                    "0.00",
                    "1,220.00"
                ],
                ["", "Total equity", "3,830.25", "5,050.25"],
                ["", "Total liabilities and equity", "8,830.25", "11,050.25"],
            ]
        );
        let kinds: Vec<RowKind> = balance_sheet_rows(&report).iter().map(|r| r.kind).collect();
        assert_eq!(kinds[4], RowKind::Total);
        assert_eq!(kinds[7], RowKind::Subtotal);
        assert_eq!(kinds.last(), Some(&RowKind::Total));
    }

    #[test]
    fn the_income_statement_ends_with_the_result() {
        let report = report_with_statements();
        assert_eq!(
            cells(&income_statement_rows(&report)),
            [
                ["", "Income", "", ""],
                ["4111", "Interest income on loans", "1,100.00", "1,500.00"],
                [
                    "4211.disbursement",
                    "Fee income: disbursement",
                    "90.00",
                    "120.50"
                ],
                ["", "Total income", "1,190.00", "1,620.50"],
                ["", "Expenses", "", ""],
                ["5111", "Interest expense on savings", "250.00", "300.50"],
                [
                    "5311",
                    "Loan-loss expense and write-offs",
                    "80.00",
                    "100.00"
                ],
                ["", "Total expenses", "330.00", "400.50"],
                ["", "Result", "860.00", "1,220.00"],
            ]
        );
    }

    #[test]
    fn a_subtotal_that_overflows_is_not_available() {
        let mut report = report_with_statements();
        let huge = statement_line("2111", "Compulsory savings", "savings-compulsory", "1", "1");
        report.balance_sheet.liabilities = vec![
            StatementLine {
                amount: Decimal::MAX,
                ..huge.clone()
            },
            huge,
        ];
        let rows = balance_sheet_rows(&report);
        let total = rows
            .iter()
            .find(|row| row.name == "Total liabilities")
            .unwrap();
        assert_eq!(
            (total.previous.as_str(), total.current.as_str()),
            ("n/a", "n/a")
        );
    }

    #[test]
    fn statements_head_their_columns_with_dates_and_years() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(format_date(day(2023, 12, 31)), "31 Dec 2023");
        assert_eq!(format_date(day(2024, 1, 5)), "5 Jan 2024");
        assert_eq!(format_period(day(2023, 1, 1), day(2023, 12, 31)), "2023");
        assert_eq!(
            format_period(day(2023, 1, 1), day(2023, 6, 30)),
            "1 Jan 2023 – 30 Jun 2023"
        );
        assert_eq!(
            format_period(day(2022, 7, 1), day(2023, 6, 30)),
            "1 Jul 2022 – 30 Jun 2023"
        );
        let report = report_with_statements();
        assert_eq!(
            balance_sheet_heading(&report),
            (
                "Balance sheet at 31 Dec 2023 against 31 Dec 2022 (USD)".to_owned(),
                "31 Dec 2022".to_owned(),
                "31 Dec 2023".to_owned()
            )
        );
        assert_eq!(
            income_statement_heading(&report).0,
            "Income statement 2023 against 2022 (USD)"
        );
    }

    #[test]
    fn the_terminal_shows_the_statements_after_the_comparison() {
        let text = render_table(&report_with_statements());
        let comparison = text.find("Loans disbursed").unwrap();
        let sheet = text
            .find("Balance sheet at 31 Dec 2023 against 31 Dec 2022 (USD)\n")
            .unwrap_or_else(|| panic!("no balance sheet title\n{text}"));
        let income = text
            .find("Income statement 2023 against 2022 (USD)\n")
            .unwrap_or_else(|| panic!("no income statement title\n{text}"));
        let footer = text.find("Figures from ledger head entry 42").unwrap();
        assert!(
            comparison < sheet && sheet < income && income < footer,
            "{text}"
        );
        let title = "Balance sheet at";
        assert_eq!(
            terminal_row(&text, title, "Code"),
            ["Code", "Line", "31 Dec 2022", "31 Dec 2023"]
        );
        assert_eq!(
            terminal_row(&text, title, "Allowance"),
            ["1391", "Allowance for loan losses", "-150.00", "-200.25"]
        );
        assert_eq!(
            terminal_row(&text, title, "Total assets"),
            ["Total assets", "8,830.25", "11,050.25"]
        );
        assert_eq!(
            terminal_row(&text, title, "Total liabilities and equity"),
            ["Total liabilities and equity", "8,830.25", "11,050.25"]
        );
        let title = "Income statement";
        assert_eq!(
            terminal_row(&text, title, "Code"),
            ["Code", "Line", "2022", "2023"]
        );
        assert_eq!(
            terminal_row(&text, title, "Fee income"),
            [
                "4211.disbursement",
                "Fee income: disbursement",
                "90.00",
                "120.50"
            ]
        );
        assert_eq!(
            terminal_row(&text, title, "Result"),
            ["Result", "860.00", "1,220.00"]
        );
        // Amounts are right-aligned: the cell ends where the column does.
        let cash = text
            .lines()
            .find(|line| line.contains("Cash on hand"))
            .unwrap();
        assert!(cash.contains("   980.25 ┆"), "{cash}");
    }

    #[test]
    fn the_html_shows_the_statements_as_tables() {
        let html = render_html(&report_with_statements());
        let sheet_at = html
            .find("<table class=\"figures statement\" id=\"balance-sheet\">")
            .unwrap();
        let income_at = html
            .find("<table class=\"figures statement\" id=\"income-statement\">")
            .unwrap();
        assert!(sheet_at < income_at);
        assert!(html.contains("<h2>Balance sheet at 31 Dec 2023 against 31 Dec 2022 (USD)</h2>"));
        assert!(html.contains(
            "<thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Line</th>\
             <th scope=\"col\">31 Dec 2022</th><th scope=\"col\">31 Dec 2023</th></tr></thead>"
        ));
        for row in [
            "<tr data-line=\"loan-loss-allowance\"><td class=\"code\">1391</td>\
             <th scope=\"row\">Allowance for loan losses</th><td>-150.00</td>\
             <td class=\"current\">-200.25</td></tr>",
            "<tr class=\"heading\"><th colspan=\"4\">Liabilities</th></tr>",
            "<tr class=\"total\"><td class=\"code\"></td><th scope=\"row\">Total assets</th>\
             <td>8,830.25</td><td class=\"current\">11,050.25</td></tr>",
            "<tr class=\"subtotal\"><td class=\"code\"></td><th scope=\"row\">Total equity</th>\
             <td>3,830.25</td><td class=\"current\">5,050.25</td></tr>",
            "<tr class=\"total\"><td class=\"code\"></td>\
             <th scope=\"row\">Total liabilities and equity</th>\
             <td>8,830.25</td><td class=\"current\">11,050.25</td></tr>",
            "<tr data-line=\"fee-income/disbursement\"><td class=\"code\">4211.disbursement</td>\
             <th scope=\"row\">Fee income: disbursement</th><td>90.00</td>\
             <td class=\"current\">120.50</td></tr>",
            "<tr class=\"total\"><td class=\"code\"></td><th scope=\"row\">Result</th>\
             <td>860.00</td><td class=\"current\">1,220.00</td></tr>",
        ] {
            assert!(html.contains(row), "no {row}");
        }
        // The balance sheet's rows are in the balance sheet's table.
        let total_assets = html.find("Total assets").unwrap();
        assert!(sheet_at < total_assets && total_assets < income_at);
    }

    #[test]
    fn statement_names_are_escaped_in_html() {
        let mut report = report_with_statements();
        report.balance_sheet.assets[0].gl_name = "Cash <& banks>".to_owned();
        report.balance_sheet.assets[0].line = "cash\"x".to_owned();
        let html = render_html(&report);
        assert!(html.contains("data-line=\"cash&quot;x\""));
        assert!(html.contains(">Cash &lt;&amp; banks&gt;</th>"));
    }
}
