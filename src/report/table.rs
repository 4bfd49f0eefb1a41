//! The report as a terminal table: each figure for the previous year and
//! this year, with the change.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

use super::{BranchReport, comparison_rows};

/// The report as text for a terminal: a title line, the table of figures
/// (figure, previous year, this year, change) and a line naming the ledger
/// head the figures come from.
///
/// Cells are never wrapped, whatever the terminal's width, so that every
/// figure stays whole and the output does not depend on where it goes.
pub fn render_table(report: &BranchReport) -> String {
    let previous_year = report.year.saturating_sub(1).to_string();
    let year = report.year.to_string();
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(vec!["Figure", &previous_year, &year, "Change"]);
    for index in 1..=3 {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    for row in comparison_rows(report) {
        table.add_row(vec![
            row.label.to_owned(),
            row.previous,
            row.current,
            row.change.to_string(),
        ]);
    }
    format!(
        "{name} ({id}): {year} against {previous_year}\n{table}\n\
         Figures from ledger head {head}, generated {generated}.\n",
        name = report.branch_name,
        id = report.branch_id,
        head = report.ledger_head,
        generated = report.generated_at,
    )
}
