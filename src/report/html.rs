//! The report as one self-contained HTML5 document: inline CSS, the
//! year-against-previous table, four inline SVG charts drawn here, then the
//! balance sheet and the income statement as tables (`id="balance-sheet"`
//! and `id="income-statement"`, a row per general-ledger line with its
//! `data-line`, amounts right-aligned with the report's digit grouping). It
//! loads nothing (no script, font, image or style sheet), so it opens from a
//! file with no network, and it prints on A4.
//!
//! Each chart is an `<svg>` with an `id` and a `<title>`; each data point in
//! it is an element with `class="point"`, a `data-value` holding the exact
//! figure as in [`BranchReport`] (a PAR30 point holds the ratio, a product's
//! bar its number of loans and, in `data-amount`, their amount) and a
//! `<title>` that browsers show as a tooltip. Nothing else has that class.
//!
//! Axes start at zero and end at a round value at least as large as the
//! largest figure, and at least 1 VND, 1 loan or 1 %, so that an all-zero
//! year still draws. Values outside the axis are drawn at its ends.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{BranchReport, MonthFigures, comparison_rows, month_abbreviation};
use super::{RowKind, StatementRow};
use super::{
    balance_sheet_heading, balance_sheet_rows, income_statement_heading, income_statement_rows,
};
use super::{format_count, format_decimal, format_money, format_percent};

/// Width of every chart's view box; text in it is sized in the same units.
const WIDTH: f64 = 560.0;
/// Height of the monthly charts' view box.
const MONTHLY_HEIGHT: f64 = 300.0;
/// Font size of chart text, in view box units (the style sheet's
/// `svg text { font-size: 12px }`).
const TEXT_SIZE: f64 = 12.0;
/// The widest a character of a chart label is taken to be: one em. No
/// Latin or Vietnamese glyph of the usual sans-serif fonts is wider (in
/// DejaVu Sans, "W" is 0.99 em and the average 0.5 em), so a label wrapped
/// to this estimate always fits the width it was wrapped for.
const CHAR_WIDTH_MAX: f64 = TEXT_SIZE;
/// Distance between the baselines of a wrapped label's lines.
const LABEL_LINE: f64 = 15.0;
/// Height of a product's bar.
const PRODUCT_BAR: f64 = 22.0;
/// Space above a product's name, between it and its bar, and below the bar.
const PRODUCT_GAP: f64 = 6.0;
/// The shortest bar drawn for a positive figure.
const MIN_BAR: f64 = 1.5;
/// Intervals a value axis aims for; it may use fewer.
const TARGET_INTERVALS: u32 = 5;

/// Colour of disbursements, savings and product bars.
const BLUE: &str = "#1f4e79";
/// Colour of collections.
const LIGHT_BLUE: &str = "#8db3d9";
/// Colour of the portfolio at risk.
const RED: &str = "#a8322d";

/// The report as a complete HTML document, ready to be written to a file.
pub fn render_html(report: &BranchReport) -> String {
    let name = escape(&report.branch_name);
    let year = report.year;
    let previous_year = year.saturating_sub(1);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}: year-end report {year}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<h1>{name}</h1>
<p class="subtitle">Year-end report {year}, against {previous_year} · branch {id} · amounts in {currency}</p>
</header>
<section>
<h2>{year} against {previous_year}</h2>
{table}
</section>
<section class="charts">
{disbursements}
{savings}
{par}
{products}
</section>
<section class="statements">
{balance_sheet}
{income_statement}
</section>
<footer>Generated {generated} from ledger head <code>{head}</code>.</footer>
</main>
</body>
</html>
"#,
        id = escape(&report.branch_id),
        currency = escape(&report.currency),
        table = comparison_table(report),
        disbursements = disbursements_chart(report),
        savings = savings_chart(report),
        par = par_chart(report),
        products = products_chart(report),
        balance_sheet = balance_sheet_table(report),
        income_statement = income_statement_table(report),
        generated = escape(&report.generated_at),
        head = escape(&report.ledger_head),
    )
}

/// Sober, printable styling; no web font, the system's sans-serif.
const STYLE: &str = r#"
:root { --ink: #1f2933; --muted: #52606d; --rule: #d9dee3; --grid: #e6e9ed; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef0f3; color: var(--ink);
  font: 15px/1.45 system-ui, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 32px 40px 24px; background: #fff; }
h1 { margin: 0; font-size: 26px; font-weight: 600; }
h2 { margin: 28px 0 10px; font-size: 18px; font-weight: 600; }
h3 { margin: 0 0 6px; font-size: 15px; font-weight: 600; }
.subtitle { margin: 4px 0 0; color: var(--muted); }
table.figures { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.figures th, table.figures td { padding: 6px 10px; text-align: right; white-space: nowrap;
  border-bottom: 1px solid var(--rule); }
table.figures th:first-child, table.figures td:first-child { text-align: left; }
table.figures thead th { border-bottom: 2px solid var(--ink); }
table.figures td.current { font-weight: 600; }
table.figures td.change { color: var(--muted); white-space: normal; }
table.figures td.change span { white-space: nowrap; }
table.statement { margin-bottom: 8px; }
table.statement thead th:nth-child(2), table.statement th[scope="row"] { text-align: left;
  white-space: normal; }
table.statement td.code { width: 10em; color: var(--muted); }
table.statement thead th:nth-child(n+3) { width: 12em; }
table.statement tr[data-line] th { font-weight: 400; }
table.statement tr.heading th { padding-top: 14px; font-weight: 600; }
table.statement tr.subtotal th, table.statement tr.subtotal td { font-weight: 600; }
table.statement tr.total th, table.statement tr.total td { font-weight: 700;
  border-top: 1px solid var(--ink); border-bottom: 3px double var(--ink); }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 28px 36px;
  margin-top: 28px; }
figure.chart { margin: 0; break-inside: avoid; }
figure.chart svg { display: block; width: 100%; height: auto; }
svg text { font-size: 12px; fill: var(--muted); }
svg text.value { fill: var(--ink); font-weight: 600; }
svg text.label { fill: var(--ink); }
svg .grid { stroke: var(--grid); }
svg .axis { stroke: #9aa5b1; }
footer { margin-top: 28px; padding-top: 10px; border-top: 1px solid var(--rule);
  color: var(--muted); font-size: 12px; }
@media (max-width: 900px) { .charts { grid-template-columns: minmax(0, 1fr); } }
@page { size: A4; margin: 14mm; }
@media print {
  body { background: #fff; font-size: 10pt; }
  main { max-width: none; padding: 0; }
  table.figures { break-inside: avoid; }
  .statements { break-before: page; }
  .charts { grid-template-columns: minmax(0, 1fr); gap: 16px; }
  figure.chart svg { max-width: 150mm; }
}
"#;

/// The year-against-previous figures as an HTML table.
fn comparison_table(report: &BranchReport) -> String {
    let rows: String = comparison_rows(report)
        .into_iter()
        .map(|row| {
            // The difference and the relative change each stay on one line,
            // and the cell may break between them on a narrow page.
            let change = match &row.change.relative {
                Some(relative) => format!(
                    "<span>{}</span> <span>({})</span>",
                    escape(&row.change.difference),
                    escape(relative)
                ),
                None => format!("<span>{}</span>", escape(&row.change.difference)),
            };
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"current\">{}</td>\
                 <td class=\"change\">{change}</td></tr>\n",
                escape(row.label),
                escape(&row.previous),
                escape(&row.current),
            )
        })
        .collect();
    format!(
        "<table class=\"figures\">\n<thead><tr><th scope=\"col\">Figure</th>\
         <th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">Change</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n</table>",
        report.year.saturating_sub(1),
        report.year,
    )
}

/// The balance sheet as an HTML table under its title.
fn balance_sheet_table(report: &BranchReport) -> String {
    let (title, previous, current) = balance_sheet_heading(report);
    statement_table(
        "balance-sheet",
        &title,
        (&previous, &current),
        balance_sheet_rows(report),
    )
}

/// The income statement as an HTML table under its title.
fn income_statement_table(report: &BranchReport) -> String {
    let (title, previous, current) = income_statement_heading(report);
    statement_table(
        "income-statement",
        &title,
        (&previous, &current),
        income_statement_rows(report),
    )
}

/// A statement's title and table: code, line, the previous and the current
/// figure; a heading row per section, a row per line and the totals.
fn statement_table(
    id: &str,
    title: &str,
    (previous, current): (&str, &str),
    rows: Vec<StatementRow>,
) -> String {
    let rows: String = rows.into_iter().map(statement_row).collect();
    format!(
        "<h2>{title}</h2>\n<table class=\"figures statement\" id=\"{id}\">\n\
         <thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Line</th>\
         <th scope=\"col\">{previous}</th><th scope=\"col\">{current}</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n</table>",
        title = escape(title),
        previous = escape(previous),
        current = escape(current),
    )
}

/// One row of a statement's table.
fn statement_row(row: StatementRow) -> String {
    let attributes = match row.kind {
        RowKind::Heading => {
            return format!(
                "<tr class=\"heading\"><th colspan=\"4\">{}</th></tr>\n",
                escape(&row.name)
            );
        }
        RowKind::Line => format!(" data-line=\"{}\"", escape(&row.line)),
        RowKind::Subtotal => " class=\"subtotal\"".to_owned(),
        RowKind::Total => " class=\"total\"".to_owned(),
    };
    format!(
        "<tr{attributes}><td class=\"code\">{}</td><th scope=\"row\">{}</th><td>{}</td>\
         <td class=\"current\">{}</td></tr>\n",
        escape(&row.code),
        escape(&row.name),
        escape(&row.previous),
        escape(&row.current),
    )
}

/// Chart 1: amounts disbursed and collected each month, as grouped bars.
fn disbursements_chart(report: &BranchReport) -> String {
    let plot = Plot::monthly();
    let largest = report
        .months
        .iter()
        .flat_map(|m| [m.amount_disbursed, m.collected])
        .max()
        .unwrap_or(Decimal::ZERO);
    let axis = Axis::new(largest, Decimal::ONE, money_min_step(report));
    let bar = (plot.month_band() * 0.34).min(16.0);
    let mut body = value_grid(&plot, &axis, &|tick| money_tick(tick, axis.max()));
    body.push_str(&month_labels(&plot));
    body.push_str(&legend(&[("Disbursed", BLUE), ("Collected", LIGHT_BLUE)]));
    for (month, label) in months_in_range(report) {
        let center = plot.month_center(month.month);
        let bars = [
            (
                "disbursed",
                month.amount_disbursed,
                BLUE,
                center - bar - 1.0,
                format!(
                    "{label} {}: disbursed {} in {}",
                    report.year,
                    money(report, month.amount_disbursed),
                    loans(month.loans_disbursed),
                ),
            ),
            (
                "collected",
                month.collected,
                LIGHT_BLUE,
                center + 1.0,
                format!(
                    "{label} {}: collected {}",
                    report.year,
                    money(report, month.collected)
                ),
            ),
        ];
        for (series, value, colour, x, tooltip) in bars {
            let top = plot.bottom - axis.bar_length(value, plot.height());
            body.push_str(&format!(
                "<rect class=\"point\" data-series=\"{series}\" data-month=\"{month}\" \
                 data-value=\"{value}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" \
                 height=\"{height:.1}\" fill=\"{colour}\"><title>{tooltip}</title></rect>\n",
                month = month.month,
                height = plot.bottom - top,
                tooltip = escape(&tooltip),
            ));
        }
    }
    chart(
        "chart-disbursements",
        &format!(
            "Disbursements and collections by month ({})",
            report.currency
        ),
        MONTHLY_HEIGHT,
        &body,
    )
}

/// Chart 2: the savings balance at each month end, as a line with points.
fn savings_chart(report: &BranchReport) -> String {
    let largest = report
        .months
        .iter()
        .map(|m| m.savings_balance)
        .max()
        .unwrap_or(Decimal::ZERO);
    let axis = Axis::new(largest, Decimal::ONE, money_min_step(report));
    let points: Vec<LinePoint> = months_in_range(report)
        .map(|(month, label)| LinePoint {
            month: month.month,
            value: month.savings_balance,
            tooltip: format!(
                "{label} {}: savings {}",
                report.year,
                money(report, month.savings_balance)
            ),
            annotation: compact_number(month.savings_balance),
        })
        .collect();
    let body = line_chart(
        &axis,
        &|tick| money_tick(tick, axis.max()),
        "savings",
        BLUE,
        &points,
    );
    chart(
        "chart-savings",
        &format!("Savings balance at month end ({})", report.currency),
        MONTHLY_HEIGHT,
        &body,
    )
}

/// Chart 3: PAR30 at each month end, as a line with points on a percent axis.
fn par_chart(report: &BranchReport) -> String {
    let largest = report
        .months
        .iter()
        .map(|m| m.par30)
        .max()
        .unwrap_or(Decimal::ZERO);
    // At least up to 1 %, in steps of at least 0.01 %.
    let axis = Axis::new(largest, Decimal::new(1, 2), Decimal::new(1, 4));
    let points: Vec<LinePoint> = months_in_range(report)
        .map(|(month, label)| LinePoint {
            month: month.month,
            value: month.par30,
            tooltip: format!(
                "{label} {}: PAR30 {}",
                report.year,
                format_percent(month.par30)
            ),
            annotation: format_percent(month.par30),
        })
        .collect();
    let tick_label = |ratio: Decimal| {
        ratio.checked_mul(Decimal::ONE_HUNDRED).map_or_else(
            || trimmed(ratio),
            |percent| format!("{} %", trimmed(percent)),
        )
    };
    let body = line_chart(&axis, &tick_label, "par30", RED, &points);
    chart(
        "chart-par30",
        "Portfolio at risk over 30 days (PAR30) at month end",
        MONTHLY_HEIGHT,
        &body,
    )
}

/// Chart 4: the loans disbursed per product, as horizontal bars of the
/// number of loans, each labelled with that number and the amount. Each
/// product's name is written whole above its bar, across the chart's
/// width, wrapped onto more lines when it is longer than fits
/// ([`ProductRows`]): never cut.
fn products_chart(report: &BranchReport) -> String {
    let title = format!("Loans disbursed in {} by product", report.year);
    if report.by_product.is_empty() {
        let body = format!(
            "<text x=\"{:.1}\" y=\"60\" text-anchor=\"middle\">No loans disbursed in {}.</text>\n",
            WIDTH / 2.0,
            report.year
        );
        return chart("chart-products", &title, 110.0, &body);
    }
    let rows = ProductRows::new(report.by_product.iter().map(|p| p.name.as_str()));
    let plot = rows.plot;
    let height = plot.bottom + 30.0;
    let largest = report.by_product.iter().map(|p| p.loans).max().unwrap_or(0);
    let axis = Axis::new(Decimal::from(largest), Decimal::ONE, Decimal::ONE);
    let mut body = String::new();
    for tick in axis.ticks() {
        let x = plot.left + axis.fraction(tick) * plot.width();
        body.push_str(&format!(
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>\n\
             <text x=\"{x:.1}\" y=\"{label_y:.1}\" text-anchor=\"middle\">{label}</text>\n",
            top = plot.top,
            bottom = plot.bottom,
            label_y = plot.bottom + 18.0,
            label = format_decimal(tick, 0),
        ));
    }
    body.push_str(&format!(
        "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>\n",
        x = plot.left,
        top = plot.top,
        bottom = plot.bottom,
    ));
    for (product, row) in report.by_product.iter().zip(&rows.rows) {
        let middle = row.bar_y + PRODUCT_BAR / 2.0;
        let length = axis.bar_length(Decimal::from(product.loans), plot.width());
        let loans = loans(product.loans);
        let tooltip = format!(
            "{}: {loans}, {}",
            product.name,
            money(report, product.amount)
        );
        let name: String = row
            .lines
            .iter()
            .zip(&row.baselines)
            .map(|(line, y)| {
                format!(
                    "<tspan x=\"{x:.1}\" y=\"{y:.1}\">{line}</tspan>",
                    x = plot.left,
                    line = escape(line)
                )
            })
            .collect();
        body.push_str(&format!(
            "<text class=\"label\" data-label=\"{id}\">{name}</text>\n\
             <rect class=\"point\" data-product=\"{id}\" data-value=\"{value}\" \
             data-amount=\"{amount}\" x=\"{x:.1}\" y=\"{bar_y:.1}\" width=\"{length:.1}\" \
             height=\"{PRODUCT_BAR:.1}\" fill=\"{BLUE}\"><title>{tooltip}</title></rect>\n\
             <text class=\"value\" x=\"{label_x:.1}\" y=\"{first_line:.1}\">{loans}</text>\n\
             <text x=\"{label_x:.1}\" y=\"{second_line:.1}\">{amount_label}</text>\n",
            id = escape(&product.product_id),
            value = product.loans,
            amount = product.amount,
            x = plot.left,
            bar_y = row.bar_y,
            tooltip = escape(&tooltip),
            label_x = plot.right + 12.0,
            first_line = middle - 2.0,
            second_line = middle + 13.0,
            amount_label = escape(&format!(
                "{} {}",
                compact_number(product.amount),
                report.currency
            )),
        ));
    }
    chart("chart-products", &title, height, &body)
}

/// The layout of the product chart's rows: each product's name, wrapped to
/// the chart's width, above its bar.
struct ProductRows {
    /// Where the bars are drawn: from the left margin to the value labels'
    /// column, from the first row's top to the last row's bottom.
    plot: Plot,
    rows: Vec<ProductRow>,
}

/// One product's row.
struct ProductRow {
    /// The name's lines, each at most [`ProductRows::label_chars_max`].
    lines: Vec<String>,
    /// Each line's baseline.
    baselines: Vec<f64>,
    /// Top of the bar, below the name.
    bar_y: f64,
}

impl ProductRows {
    /// Left margin of the names and the bars.
    const LEFT: f64 = 12.0;
    /// Right margin of the names.
    const RIGHT: f64 = 12.0;
    /// Width of the column of value labels, right of the bars.
    const VALUES: f64 = 140.0;
    /// Top of the first row.
    const TOP: f64 = 8.0;

    fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> ProductRows {
        let chars_max = ProductRows::label_chars_max();
        let mut top = ProductRows::TOP;
        let mut rows = Vec::new();
        for name in names {
            let lines = wrapped(name, chars_max);
            let baselines: Vec<f64> = (0..lines.len())
                .map(|line| top + PRODUCT_GAP + TEXT_SIZE + line as f64 * LABEL_LINE)
                .collect();
            let bar_y = top + PRODUCT_GAP + lines.len() as f64 * LABEL_LINE + PRODUCT_GAP;
            top = bar_y + PRODUCT_BAR + PRODUCT_GAP;
            rows.push(ProductRow {
                lines,
                baselines,
                bar_y,
            });
        }
        ProductRows {
            plot: Plot {
                left: ProductRows::LEFT,
                right: WIDTH - ProductRows::VALUES,
                top: ProductRows::TOP,
                bottom: top,
            },
            rows,
        }
    }

    /// The most characters of a name on one line: as many of the widest
    /// as the chart's width holds between its margins.
    fn label_chars_max() -> usize {
        ((WIDTH - ProductRows::LEFT - ProductRows::RIGHT) / CHAR_WIDTH_MAX) as usize
    }
}

/// One `<figure>` holding a titled chart.
fn chart(id: &str, title: &str, height: f64, body: &str) -> String {
    let title = escape(title);
    format!(
        "<figure class=\"chart\">\n<h3>{title}</h3>\n\
         <svg id=\"{id}\" viewBox=\"0 0 {WIDTH:.0} {height:.0}\" role=\"img\" \
         aria-labelledby=\"{id}-title\">\n<title id=\"{id}-title\">{title}</title>\n\
         {body}</svg>\n</figure>"
    )
}

/// The drawing area of a chart, in view box units.
struct Plot {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Plot {
    /// The plot area of a monthly chart, with room for tick labels on the
    /// left, the legend above and the month names below.
    fn monthly() -> Self {
        Plot {
            left: 62.0,
            right: WIDTH - 12.0,
            top: 34.0,
            bottom: MONTHLY_HEIGHT - 28.0,
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn height(&self) -> f64 {
        self.bottom - self.top
    }

    /// The height at `fraction` (0 to 1) of the way up.
    fn y(&self, fraction: f64) -> f64 {
        self.bottom - fraction * self.height()
    }

    /// Width of one month's band on a twelve-month axis.
    fn month_band(&self) -> f64 {
        self.width() / 12.0
    }

    /// The middle of `month`'s band (1 to 12).
    fn month_center(&self, month: u32) -> f64 {
        self.left + (f64::from(month) - 0.5) * self.month_band()
    }
}

/// A value axis from zero to `step × intervals`, with a tick at each step.
struct Axis {
    step: Decimal,
    intervals: u32,
}

impl Axis {
    /// The axis for values up to `largest`, or up to `floor` if that is
    /// larger: a round step (1, 2, 2.5 or 5 times a power of ten, and at
    /// least `min_step`), and as many steps as it takes.
    fn new(largest: Decimal, floor: Decimal, min_step: Decimal) -> Self {
        let target = largest.max(floor);
        let step = round_step(target / Decimal::from(TARGET_INTERVALS)).max(min_step);
        let intervals = target
            .checked_div(step)
            .map(|steps| steps.ceil())
            .and_then(|steps| steps.to_u32())
            .unwrap_or(TARGET_INTERVALS)
            .max(1);
        Axis { step, intervals }
    }

    /// The value at the top (or right end) of the axis.
    fn max(&self) -> Decimal {
        self.step
            .checked_mul(Decimal::from(self.intervals))
            .unwrap_or(Decimal::MAX)
    }

    /// The tick values, from zero.
    fn ticks(&self) -> impl Iterator<Item = Decimal> + '_ {
        (0..=self.intervals).filter_map(|i| self.step.checked_mul(Decimal::from(i)))
    }

    /// The length of a bar for `value` along an axis `full` units long; a
    /// positive value gets at least a sliver, so that it shows.
    fn bar_length(&self, value: Decimal, full: f64) -> f64 {
        let length = self.fraction(value) * full;
        if value > Decimal::ZERO {
            length.max(MIN_BAR)
        } else {
            length
        }
    }

    /// Where `value` falls along the axis, from 0 to 1.
    fn fraction(&self, value: Decimal) -> f64 {
        value
            .checked_div(self.max())
            .and_then(|fraction| fraction.to_f64())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    }
}

/// The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is at least
/// `raw` (which is positive).
fn round_step(raw: Decimal) -> Decimal {
    // A Decimal has at most 29 digits each side of the point.
    const DIGITS: usize = 29;
    let mut magnitude = Decimal::ONE;
    for _ in 0..DIGITS {
        match magnitude.checked_mul(Decimal::TEN) {
            Some(next) if next <= raw => magnitude = next,
            _ => break,
        }
    }
    for _ in 0..DIGITS {
        if magnitude <= raw || magnitude.is_zero() {
            break;
        }
        magnitude /= Decimal::TEN;
    }
    [
        Decimal::ONE,
        Decimal::TWO,
        Decimal::new(25, 1),
        Decimal::new(5, 0),
    ]
    .into_iter()
    .filter_map(|factor| magnitude.checked_mul(factor))
    .find(|step| *step >= raw)
    .or_else(|| magnitude.checked_mul(Decimal::TEN))
    .unwrap_or(raw)
}

/// The finest step of a money axis: one unit of the currency's last place.
fn money_min_step(report: &BranchReport) -> Decimal {
    Decimal::try_new(1, report.currency_decimal_places).unwrap_or(Decimal::ONE)
}

/// A point of a line chart.
struct LinePoint {
    month: u32,
    value: Decimal,
    tooltip: String,
    annotation: String,
}

/// The body of a monthly line chart: grid, the line, the points and the
/// last point's value written beside it.
fn line_chart(
    axis: &Axis,
    tick_label: &dyn Fn(Decimal) -> String,
    series: &str,
    colour: &str,
    points: &[LinePoint],
) -> String {
    let plot = Plot::monthly();
    let mut body = value_grid(&plot, axis, tick_label);
    body.push_str(&month_labels(&plot));
    let at = |point: &LinePoint| {
        (
            plot.month_center(point.month),
            plot.y(axis.fraction(point.value)),
        )
    };
    let coordinates: Vec<String> = points
        .iter()
        .map(|point| {
            let (x, y) = at(point);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    if coordinates.len() > 1 {
        body.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" \
             stroke-linejoin=\"round\" points=\"{}\"/>\n",
            coordinates.join(" ")
        ));
    }
    for point in points {
        let (x, y) = at(point);
        body.push_str(&format!(
            "<circle class=\"point\" data-series=\"{series}\" data-month=\"{month}\" \
             data-value=\"{value}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"#fff\" \
             stroke=\"{colour}\" stroke-width=\"2\"><title>{tooltip}</title></circle>\n",
            month = point.month,
            value = point.value,
            tooltip = escape(&point.tooltip),
        ));
    }
    if let Some(last) = points.iter().max_by_key(|point| point.month) {
        let (x, y) = at(last);
        // Above the point, or below it when the point is near the top.
        let label_y = if y - 12.0 < plot.top {
            y + 20.0
        } else {
            y - 10.0
        };
        body.push_str(&format!(
            "<text class=\"value\" x=\"{x:.1}\" y=\"{label_y:.1}\" text-anchor=\"end\">{}</text>\n",
            escape(&last.annotation)
        ));
    }
    body
}

/// Horizontal grid lines with their tick labels, and the base line.
fn value_grid(plot: &Plot, axis: &Axis, tick_label: &dyn Fn(Decimal) -> String) -> String {
    let mut grid = String::new();
    for tick in axis.ticks() {
        let y = plot.y(axis.fraction(tick));
        grid.push_str(&format!(
            "<line class=\"grid\" x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>\n\
             <text x=\"{label_x:.1}\" y=\"{label_y:.1}\" text-anchor=\"end\">{label}</text>\n",
            left = plot.left,
            right = plot.right,
            label_x = plot.left - 8.0,
            label_y = y + 4.0,
            label = escape(&tick_label(tick)),
        ));
    }
    grid.push_str(&format!(
        "<line class=\"axis\" x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>\n",
        left = plot.left,
        right = plot.right,
        y = plot.bottom,
    ));
    grid
}

/// The twelve month names under a monthly chart.
fn month_labels(plot: &Plot) -> String {
    (1..=12)
        .filter_map(|month| {
            let name = month_abbreviation(month)?;
            Some(format!(
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{name}</text>\n",
                x = plot.month_center(month),
                y = plot.bottom + 18.0,
            ))
        })
        .collect()
}

/// A legend of coloured squares along the top of a monthly chart.
fn legend(entries: &[(&str, &str)]) -> String {
    let mut legend = String::new();
    let mut x = Plot::monthly().left;
    for (label, colour) in entries {
        legend.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\n\
             <text x=\"{text_x:.1}\" y=\"16\">{label}</text>\n",
            text_x = x + 17.0,
            label = escape(label),
        ));
        x += 110.0;
    }
    legend
}

/// The months numbered 1 to 12, with their names.
fn months_in_range(report: &BranchReport) -> impl Iterator<Item = (&MonthFigures, &'static str)> {
    report
        .months
        .iter()
        .filter_map(|month| Some((month, month.month_abbreviation()?)))
}

/// A number of loans: "1 loan", "1,412 loans".
fn loans(count: u64) -> String {
    let noun = if count == 1 { "loan" } else { "loans" };
    format!("{} {noun}", format_count(count))
}

/// An exact amount with its currency, for tooltips.
fn money(report: &BranchReport, amount: Decimal) -> String {
    format_money(amount, &report.currency, report.currency_decimal_places)
}

/// A money tick label in the unit the axis's top calls for: "20 bn",
/// "500 M", or plain digits below a million; zero is "0".
fn money_tick(tick: Decimal, axis_max: Decimal) -> String {
    if tick.is_zero() {
        return "0".to_owned();
    }
    let (unit, suffix) = large_unit(axis_max);
    tick.checked_div(unit).map_or_else(
        || trimmed(tick),
        |scaled| format!("{}{suffix}", trimmed(scaled)),
    )
}

/// A large number shortened to at most 2 decimals of its unit: "22.4 bn",
/// "350 M", "12,500".
fn compact_number(value: Decimal) -> String {
    let (unit, suffix) = large_unit(value.abs());
    value.checked_div(unit).map_or_else(
        || trimmed(value),
        |scaled| format!("{}{suffix}", trimmed(scaled.round_dp(2))),
    )
}

/// The unit that large amounts are shown in: billions, millions or ones.
fn large_unit(magnitude: Decimal) -> (Decimal, &'static str) {
    let billion = Decimal::from(1_000_000_000_u64);
    let million = Decimal::from(1_000_000_u64);
    if magnitude >= billion {
        (billion, " bn")
    } else if magnitude >= million {
        (million, " M")
    } else {
        (Decimal::ONE, "")
    }
}

/// `value` with grouped digits and no trailing zeros: "2.5", "1,500".
fn trimmed(value: Decimal) -> String {
    let value = value.normalize();
    format_decimal(value, value.scale())
}

/// `text` in lines of at most `max_chars` characters, broken between
/// words; a word longer than a line is broken inside. Nothing is left
/// out: the lines hold every character of `text` but its spaces between
/// words (a blank `text` is one empty line).
fn wrapped(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word: Vec<char> = word.chars().collect();
        for piece in word.chunks(max_chars) {
            let used = line.chars().count();
            if used > 0 && used + 1 + piece.len() > max_chars {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.extend(piece);
        }
    }
    lines.push(line);
    lines
}

/// `text` safe in HTML text and in double- or single-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn ticks(axis: &Axis) -> Vec<String> {
        axis.ticks()
            .map(|tick| tick.normalize().to_string())
            .collect()
    }

    #[test]
    fn axes_end_on_a_round_value() {
        let one = Decimal::ONE;
        let axis = Axis::new(dec("6860000000"), one, one);
        assert_eq!(
            ticks(&axis),
            ["0", "2000000000", "4000000000", "6000000000", "8000000000"]
        );
        let axis = Axis::new(dec("22400000000"), one, one);
        assert_eq!(axis.max(), dec("25000000000"));
        let axis = Axis::new(dec("1412"), one, one);
        assert_eq!(ticks(&axis), ["0", "500", "1000", "1500"]);
        // PAR30 ratios, from 0 to at least 1 %.
        let axis = Axis::new(dec("0.0131"), dec("0.01"), dec("0.0001"));
        assert_eq!(ticks(&axis), ["0", "0.005", "0.01", "0.015"]);
        let axis = Axis::new(dec("0.004"), dec("0.01"), dec("0.0001"));
        assert_eq!(
            ticks(&axis),
            ["0", "0.002", "0.004", "0.006", "0.008", "0.01"]
        );
        // A currency with cents never gets a step below one cent.
        let axis = Axis::new(dec("0.03"), one, dec("0.01"));
        assert_eq!(ticks(&axis), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    }

    #[test]
    fn an_all_zero_axis_still_reaches_one() {
        let one = Decimal::ONE;
        let axis = Axis::new(Decimal::ZERO, one, one);
        assert_eq!(ticks(&axis), ["0", "1"]);
        assert_eq!(axis.fraction(Decimal::ZERO), 0.0);
        let axis = Axis::new(dec("-5"), one, one);
        assert_eq!(axis.fraction(dec("-5")), 0.0);
    }

    #[test]
    fn an_axis_survives_the_largest_decimal() {
        let axis = Axis::new(Decimal::MAX, Decimal::ONE, Decimal::ONE);
        assert!(axis.max() >= dec("1e28"));
        assert_eq!(axis.fraction(Decimal::MAX), 1.0);
    }

    #[test]
    fn money_ticks_use_billions_and_millions() {
        let max = dec("25000000000");
        assert_eq!(money_tick(dec("20000000000"), max), "20 bn");
        assert_eq!(money_tick(dec("2500000000"), max), "2.5 bn");
        assert_eq!(money_tick(Decimal::ZERO, max), "0");
        assert_eq!(money_tick(dec("500000000"), dec("1000000000")), "0.5 bn");
        assert_eq!(money_tick(dec("500000000"), dec("500000000")), "500 M");
        assert_eq!(money_tick(dec("2000"), dec("5000")), "2,000");
    }

    #[test]
    fn compact_numbers_keep_two_decimals() {
        assert_eq!(compact_number(dec("22400000000")), "22.4 bn");
        assert_eq!(compact_number(dec("14071234567")), "14.07 bn");
        assert_eq!(compact_number(dec("96500000")), "96.5 M");
        assert_eq!(compact_number(dec("12500")), "12,500");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<b>"Thái" & 'Bình'</b>"#),
            "&lt;b&gt;&quot;Thái&quot; &amp; &#39;Bình&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn labels_wrap_between_words_and_lose_nothing() {
        assert_eq!(wrapped("Vay tiêu dùng", 24), ["Vay tiêu dùng"]);
        assert_eq!(
            wrapped("Vay nhà ở và nước sạch nông thôn", 12),
            ["Vay nhà ở và", "nước sạch", "nông thôn"]
        );
        // A word longer than a line is broken inside it.
        assert_eq!(
            wrapped("ab Nhàởnướcsạch cd", 5),
            ["ab", "Nhàởn", "ướcsạ", "ch cd"]
        );
        assert_eq!(wrapped("", 5), [""]);
        for name in [
            "Vay cải thiện nhà ở (housing)",
            "Vay cải thiện nhà ở, công trình nước sạch và vệ sinh môi trường nông thôn (housing)",
            "Vaynhàởvànướcsạchnôngthônkhôngcódấucáchnàocảtrongtêndàinày",
            "  spaces   around  ",
        ] {
            for max_chars in [1, 7, 24, 44] {
                let lines = wrapped(name, max_chars);
                for line in &lines {
                    assert!(line.chars().count() <= max_chars, "{line:?} of {name:?}");
                }
                let kept: String = lines.concat().split_whitespace().collect();
                let all: String = name.split_whitespace().collect();
                assert_eq!(kept, all, "{name:?} in {max_chars}");
            }
        }
    }

    #[test]
    fn product_names_fit_the_chart_whole_above_their_bars() {
        let names = [
            "Vay vốn chung (general)",
            "Vay cải thiện nhà ở (housing)",
            "Vay cải thiện nhà ở, công trình nước sạch và vệ sinh môi trường nông thôn (housing)",
        ];
        let rows = ProductRows::new(names);
        // The housing loan's name, 29 characters, is one line.
        assert_eq!(rows.rows[1].lines, [names[1]]);
        assert!(rows.rows[2].lines.len() > 1);
        let mut previous_bottom = 0.0;
        for row in &rows.rows {
            for (line, baseline) in row.lines.iter().zip(&row.baselines) {
                // At its widest, the line fits between the margins.
                let width = line.chars().count() as f64 * CHAR_WIDTH_MAX;
                assert!(
                    ProductRows::LEFT + width <= WIDTH - ProductRows::RIGHT,
                    "{line}"
                );
                // Below the row above, above its own bar.
                assert!(baseline - TEXT_SIZE >= previous_bottom, "{line}");
                assert!(*baseline + LABEL_LINE - TEXT_SIZE <= row.bar_y, "{line}");
            }
            previous_bottom = row.bar_y + PRODUCT_BAR;
        }
        assert!(rows.plot.bottom >= previous_bottom);
        assert_eq!(ProductRows::label_chars_max(), 44);
    }
}
