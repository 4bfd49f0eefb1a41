//! The report as a terminal table: each figure for the previous year and
//! this year, with the change; then the balance sheet and the income
//! statement, each line with its general-ledger code.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

use super::{BranchReport, StatementRow, comparison_rows};
use super::{
    balance_sheet_heading, balance_sheet_rows, income_statement_heading, income_statement_rows,
};

/// The report as text for a terminal: a title line, the table of figures
/// (figure, previous year, this year, change), the balance sheet and the
/// income statement (code, line, previous year, this year), each under its
/// title, and a line naming the ledger head the figures come from.
///
/// Cells are never wrapped, whatever the terminal's width, so that every
/// figure stays whole and the output does not depend on where it goes.
pub fn render_table(report: &BranchReport) -> String {
    let previous_year = report.year.saturating_sub(1).to_string();
    let year = report.year.to_string();
    let mut table = new_table(vec!["Figure", &previous_year, &year, "Change"], 1..=3);
    for row in comparison_rows(report) {
        table.add_row(vec![
            row.label.to_owned(),
            row.previous,
            row.current,
            row.change.to_string(),
        ]);
    }
    let (sheet_title, sheet_previous, sheet_current) = balance_sheet_heading(report);
    let sheet = statement_table(&sheet_previous, &sheet_current, balance_sheet_rows(report));
    let (income_title, income_previous, income_current) = income_statement_heading(report);
    let income = statement_table(
        &income_previous,
        &income_current,
        income_statement_rows(report),
    );
    format!(
        "{name} ({id}): {year} against {previous_year}\n{table}\n\n\
         {sheet_title}\n{sheet}\n\n\
         {income_title}\n{income}\n\n\
         Figures from ledger head {head}, generated {generated}.\n",
        name = report.branch_name,
        id = report.branch_id,
        head = report.ledger_head,
        generated = report.generated_at,
    )
}

/// A statement as a table of code, line, previous and current figure; a
/// section's heading has only its name, a total no code.
fn statement_table(previous: &str, current: &str, rows: Vec<StatementRow>) -> Table {
    let mut table = new_table(vec!["Code", "Line", previous, current], 2..=3);
    for row in rows {
        table.add_row(vec![row.code, row.name, row.previous, row.current]);
    }
    table
}

/// A table with `header`, its `right` columns right-aligned, never wrapped.
fn new_table(header: Vec<&str>, right: std::ops::RangeInclusive<usize>) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(header);
    for index in right {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}
