//! `collection-sheet`: a center meeting's repayments and savings deposits,
//! read from a CSV file and recorded as ONE journal entry under one request
//! id (all lines or none).
//!
//! The file has a header row naming its columns, in any order:
//! `member_id,loan_id,repayment,savings_account_id,deposit` (`member_id` and
//! at least one amount column are required; unknown columns are refused).
//! Cells may be empty: a line repays when its `repayment` cell has an amount
//! (and then needs `loan_id`), deposits when its `deposit` cell has one (and
//! then needs `savings_account_id`); a line with neither amount is skipped.
//! Amounts are plain decimals (`50000`, no separators). Lines starting with
//! `#` and blank lines are ignored; a cell may be quoted ("...") but not
//! span lines. A UTF-8 byte order mark and CRLF line ends are accepted.
//!
//! Every problem names the file, its line number and the column. One
//! convention for line numbers, in every message and in the output: a
//! line's number in the file, counting from 1 at the top with the header,
//! comments and blank lines included, which is the row number a
//! spreadsheet shows ("meeting.csv line 4 (spreadsheet row 4)"). A refusal
//! from the server names the request's field (`lines[1].repayment.amount`,
//! counted from 0 among the lines sent); it is printed with that field
//! replaced by the file's line it came from, so a clerk sees one numbering.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::args::CollectionSheetArgs;
use super::connect::WriteSession;
use super::output::{Report, amount, count, grouped, is_zero, money_json, table, write_report};
use super::transactions::allocation_json;
use crate::pb;

/// The columns a sheet may have.
pub const COLUMNS: [&str; 5] = [
    "member_id",
    "loan_id",
    "repayment",
    "savings_account_id",
    "deposit",
];

/// One line of the sheet that is sent.
#[derive(Clone, Debug, PartialEq)]
struct SheetLine {
    /// Its line number in the file.
    csv_line: u64,
    /// What is sent.
    line: pb::CollectionLine,
}

/// The lines of a sheet: those sent, and those skipped (no amount).
#[derive(Clone, Debug, Default, PartialEq)]
struct Sheet {
    lines: Vec<SheetLine>,
    /// Line number and member of each line with neither a repayment nor a deposit.
    skipped: Vec<(u64, String)>,
}

/// Where a line of the file is, stating the numbering:
/// "SHEET.csv line 4 (spreadsheet row 4)".
fn place(file: &str, line: u64) -> String {
    format!("{file} line {line} (spreadsheet row {line})")
}

/// A problem with the file, located:
/// `SHEET.csv line 4 (spreadsheet row 4), column repayment: ...`.
fn located(
    file: &str,
    line: u64,
    column: Option<&str>,
    problem: impl std::fmt::Display,
) -> anyhow::Error {
    let place = place(file, line);
    match column {
        Some(column) => anyhow!("{place}, column {column}: {problem}; nothing was sent"),
        None => anyhow!("{place}: {problem}; nothing was sent"),
    }
}

/// True for a plain decimal: digits, optionally a point and more digits.
fn plain_decimal(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// The cells of one CSV line, trimmed; `None` for a line that has none.
fn cells(text: &str) -> Result<Option<csv::StringRecord>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    Ok(reader.read_record(&mut record)?.then_some(record))
}

/// The non-blank, non-comment lines of `input` with their line numbers,
/// each split into cells. (Lines are numbered here rather than by the csv
/// crate, whose positions are off after a blank line.)
fn csv_lines(file: &str, input: &[u8]) -> anyhow::Result<Vec<(u64, csv::StringRecord)>> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines = Vec::new();
    for (number, bytes) in (1u64..).zip(input.split(|&b| b == b'\n')) {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            located(
                file,
                number,
                None,
                "is not UTF-8 text (save the sheet as CSV UTF-8)",
            )
        })?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let record = cells(text).map_err(|error| located(file, number, None, error))?;
        if let Some(record) = record.filter(|r| !r.iter().all(str::is_empty)) {
            lines.push((number, record));
        }
    }
    Ok(lines)
}

/// Reads a sheet from `input`; `file` names it in errors.
fn parse_sheet(file: &str, mut input: impl Read) -> anyhow::Result<Sheet> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {file}"))?;
    let mut lines = csv_lines(file, &bytes)?.into_iter();
    let Some((header_line, header)) = lines.next() else {
        bail!(
            "{file}: no header row; the first line must name the columns, e.g. {}",
            COLUMNS.join(",")
        );
    };
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (position, name) in header.iter().enumerate() {
        let Some(&column) = COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(name)) else {
            return Err(located(
                file,
                header_line,
                Some(name),
                format!("unknown column; the columns are {}", COLUMNS.join(", ")),
            ));
        };
        if index.insert(column, position).is_some() {
            return Err(located(file, header_line, Some(column), "named twice"));
        }
    }
    for (needed, because) in [
        ("member_id", None),
        ("loan_id", Some("repayment")),
        ("savings_account_id", Some("deposit")),
    ] {
        let required = because.is_none_or(|amount| index.contains_key(amount));
        if required && !index.contains_key(needed) {
            let reason = because.map_or(String::new(), |amount| format!(" (with {amount})"));
            return Err(located(
                file,
                header_line,
                None,
                format!("the header has no {needed} column{reason}"),
            ));
        }
    }
    if !index.contains_key("repayment") && !index.contains_key("deposit") {
        return Err(located(
            file,
            header_line,
            None,
            "the header has neither a repayment nor a deposit column",
        ));
    }
    let mut sheet = Sheet::default();
    for (line, record) in lines {
        if record.len() > header.len() {
            return Err(located(
                file,
                line,
                None,
                format!(
                    "{} cells, but the header names {} columns",
                    record.len(),
                    header.len()
                ),
            ));
        }
        let cell = |column: &str| {
            index
                .get(column)
                .and_then(|&i| record.get(i))
                .unwrap_or_default()
                .to_owned()
        };
        let member_id = cell("member_id");
        if member_id.is_empty() {
            return Err(located(file, line, Some("member_id"), "is empty"));
        }
        let mut sent = pb::CollectionLine {
            member_id: member_id.clone(),
            ..pb::CollectionLine::default()
        };
        for (id_column, amount_column) in
            [("loan_id", "repayment"), ("savings_account_id", "deposit")]
        {
            let value = cell(amount_column);
            if value.is_empty() {
                continue;
            }
            if !plain_decimal(&value) {
                return Err(located(
                    file,
                    line,
                    Some(amount_column),
                    format!(
                        "{value:?} is not a plain decimal amount (digits, optionally a point and decimals; no separators or signs)"
                    ),
                ));
            }
            let id = cell(id_column);
            if id.is_empty() {
                return Err(located(
                    file,
                    line,
                    Some(id_column),
                    format!("is empty but the line has a {amount_column}"),
                ));
            }
            let money = Some(pb::Money {
                amount: value,
                currency: String::new(),
            });
            if amount_column == "repayment" {
                (sent.loan_id, sent.repayment) = (id, money);
            } else {
                (sent.savings_account_id, sent.deposit) = (id, money);
            }
        }
        if sent.repayment.is_none() && sent.deposit.is_none() {
            sheet.skipped.push((line, member_id));
        } else {
            sheet.lines.push(SheetLine {
                csv_line: line,
                line: sent,
            });
        }
    }
    if sheet.lines.is_empty() {
        bail!("{file}: no line has a repayment or a deposit; nothing was sent");
    }
    Ok(sheet)
}

/// The lines `collection-sheet` would send for the CSV `input` (named
/// `file` in errors), or the located problem; never contacts a server.
/// Public for the fuzz tests (`tests/fuzz.rs`).
pub fn parse_collection_sheet(file: &str, input: &[u8]) -> anyhow::Result<Vec<pb::CollectionLine>> {
    let sheet = parse_sheet(file, input)?;
    Ok(sheet.lines.into_iter().map(|line| line.line).collect())
}

/// The CSV column a server field under `lines[i]` comes from
/// (`.repayment.amount` is the repayment column).
fn column_of(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix('.')?;
    let first = path.split('.').next().unwrap_or(path);
    Some(match (first, path) {
        (_, "repayment.loan_id") | ("loan_id", _) => "loan_id",
        (_, "deposit.account_id") | ("savings_account_id", _) => "savings_account_id",
        ("repayment", _) => "repayment",
        ("deposit", _) => "deposit",
        ("member_id", _) => "member_id",
        _ => return None,
    })
}

/// A server's refusal naming `lines[i]` (counted from 0 among the lines
/// sent) told in the file's numbering: the field replaced by the line it
/// came from, e.g. `lines[1].repayment.amount: "5.5" has 1 decimal places`
/// becomes `SHEET.csv line 5 (spreadsheet row 5, member TB-0002), column
/// repayment: "5.5" has 1 decimal places`, and "an earlier line" named;
/// `None` when the message names no line of the sheet.
fn locate_refusal(file: &str, message: &str, lines: &[SheetLine]) -> Option<String> {
    let start = message.find("lines[")?;
    let rest = &message[start + "lines[".len()..];
    let (number, rest) = rest.split_once(']')?;
    let index = number.parse::<usize>().ok()?;
    let line = lines.get(index)?;
    let path_len = rest.find([':', ' ']).unwrap_or(rest.len());
    let (path, after) = rest.split_at(path_len);
    let column = column_of(path);
    let place = format!(
        "{file} line {} (spreadsheet row {}, member {}){}",
        line.csv_line,
        line.csv_line,
        line.line.member_id,
        column.map_or(String::new(), |c| format!(", column {c}"))
    );
    let after = name_earlier_line(after, column, line, &lines[..index]);
    Some(format!("{}{place}{after}", &message[..start]))
}

/// `text` with "an earlier line" (the server's word for the loan or the
/// account of `column` already on the sheet) replaced by that line's number.
fn name_earlier_line(
    text: &str,
    column: Option<&str>,
    line: &SheetLine,
    before: &[SheetLine],
) -> String {
    const EARLIER: &str = "on an earlier line too";
    if !text.contains(EARLIER) {
        return text.to_owned();
    }
    let (this, column) = (&line.line, column.unwrap_or_default());
    let same = |other: &SheetLine| {
        let that = &other.line;
        match column {
            "loan_id" => that.repayment.is_some() && that.loan_id == this.loan_id,
            "savings_account_id" => {
                that.deposit.is_some() && that.savings_account_id == this.savings_account_id
            }
            _ => false,
        }
    };
    match before.iter().find(|other| same(other)) {
        Some(earlier) => text.replacen(EARLIER, &format!("on line {} too", earlier.csv_line), 1),
        None => text.to_owned(),
    }
}

/// `collection-sheet`: reads the CSV, sends one RecordCollectionSheet,
/// prints one row per line and the totals.
pub async fn collection_sheet(
    session: &WriteSession,
    args: CollectionSheetArgs,
) -> anyhow::Result<Report> {
    let file = args.file.display().to_string();
    let sheet = read_sheet(&args.file, &file)?;
    let request = pb::RecordCollectionSheetRequest {
        context: session.context(),
        center_id: args.center_id.clone(),
        meeting_date: args.date.unwrap_or_default(),
        lines: sheet.lines.iter().map(|l| l.line.clone()).collect(),
    };
    let response = session
        .client()
        .await?
        .record_collection_sheet(request)
        .await
        .map_err(|status| {
            let status = match locate_refusal(&file, status.message(), &sheet.lines) {
                Some(located) => tonic::Status::new(
                    status.code(),
                    format!("{located}; nothing on the sheet was recorded"),
                ),
                None => status,
            };
            session.error(status)
        })?
        .into_inner();
    let receipt = session.receipt(response.receipt.clone())?;
    let mut report = write_report(
        &session.request_id,
        &receipt,
        vec![
            ("center", args.center_id.clone()),
            ("file", file.clone()),
            ("lines recorded", count(response.lines.len())),
        ],
        sheet_json(&args.center_id, &file, &sheet, &response),
    );
    report.text += &sheet_text(&file, &sheet, &response);
    Ok(report)
}

fn read_sheet(path: &Path, file: &str) -> anyhow::Result<Sheet> {
    let input = std::fs::File::open(path).with_context(|| format!("cannot read {file}"))?;
    parse_sheet(file, input)
}

/// Sums exact decimal amounts; absent ones count as zero.
fn sum<'a>(amounts: impl Iterator<Item = Option<&'a pb::Money>>) -> Decimal {
    amounts
        .flatten()
        .filter_map(|m| m.amount.parse::<Decimal>().ok())
        .sum()
}

fn sheet_text(file: &str, sheet: &Sheet, r: &pb::RecordCollectionSheetResponse) -> String {
    let header = [
        "member",
        "repaid",
        "fees",
        "interest",
        "principal",
        "outstanding",
        "deposit",
        "balance",
        "line",
    ];
    let mut rows = table(&header, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let blank = || String::new();
    let mut recoveries = Vec::new();
    for (sent, result) in sheet.lines.iter().zip(&r.lines) {
        let allocation = result.repayment.as_ref();
        let part = |f: fn(&pb::RepaymentAllocation) -> Option<&pb::Money>| {
            allocation.map_or_else(blank, |a| amount(f(a)))
        };
        if let Some(a) = allocation.filter(|a| !is_zero(a.recovery.as_ref())) {
            recoveries.push(format!(
                "{} {}",
                sent.line.member_id,
                amount(a.recovery.as_ref())
            ));
        }
        rows.add_row(vec![
            result.member_id.clone(),
            sent.line
                .repayment
                .as_ref()
                .map_or_else(blank, |m| grouped(&m.amount)),
            part(|a| a.fees_paid.as_ref()),
            part(|a| a.interest_paid.as_ref()),
            part(|a| a.principal_paid.as_ref()),
            part(|a| a.principal_outstanding.as_ref()),
            sent.line
                .deposit
                .as_ref()
                .map_or_else(blank, |m| grouped(&m.amount)),
            result
                .savings_balance
                .as_ref()
                .map_or_else(blank, |m| grouped(&m.amount)),
            sent.csv_line.to_string(),
        ]);
    }
    let allocations = || r.lines.iter().filter_map(|l| l.repayment.as_ref());
    let total = |f: fn(&pb::RepaymentAllocation) -> Option<&pb::Money>| {
        grouped(&sum(allocations().map(f)).to_string())
    };
    rows.add_row(vec![
        "total".to_owned(),
        amount(r.total_repaid.as_ref()),
        total(|a| a.fees_paid.as_ref()),
        total(|a| a.interest_paid.as_ref()),
        total(|a| a.principal_paid.as_ref()),
        blank(),
        amount(r.total_deposited.as_ref()),
        blank(),
        blank(),
    ]);
    let currency = r
        .total_repaid
        .as_ref()
        .map(|m| m.currency.clone())
        .unwrap_or_default();
    let mut text =
        format!("\ncollected ({currency}; line: the file's line, its spreadsheet row):\n{rows}\n");
    if !recoveries.is_empty() {
        text += &format!(
            "recovered on written-off loans: {}\n",
            recoveries.join(", ")
        );
    }
    for (line, member) in &sheet.skipped {
        text += &format!(
            "skipped {} (member {member}): no repayment and no deposit\n",
            place(file, *line)
        );
    }
    text
}

fn sheet_json(
    center_id: &str,
    file: &str,
    sheet: &Sheet,
    r: &pb::RecordCollectionSheetResponse,
) -> Value {
    let currency = r
        .total_repaid
        .as_ref()
        .map(|m| m.currency.clone())
        .unwrap_or_default();
    let sent_money = |m: &Option<pb::Money>| {
        m.as_ref().map_or(
            Value::Null,
            |m| json!({ "amount": m.amount, "currency": currency }),
        )
    };
    let lines: Vec<Value> = sheet
        .lines
        .iter()
        .zip(&r.lines)
        .map(|(sent, result)| {
            json!({
                "csv_line": sent.csv_line,
                "member_id": result.member_id,
                "loan_id": sent.line.loan_id,
                "repayment": sent_money(&sent.line.repayment),
                "allocation": result.repayment.as_ref().map(allocation_json),
                "savings_account_id": sent.line.savings_account_id,
                "deposit": sent_money(&sent.line.deposit),
                "savings_balance": money_json(result.savings_balance.as_ref()),
            })
        })
        .collect();
    let skipped: Vec<Value> = sheet
        .skipped
        .iter()
        .map(|(line, member)| json!({ "csv_line": line, "member_id": member }))
        .collect();
    json!({
        "center_id": center_id,
        "file": file,
        "lines": lines,
        "total_repaid": money_json(r.total_repaid.as_ref()),
        "total_deposited": money_json(r.total_deposited.as_ref()),
        "skipped_lines": skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Sheet> {
        parse_sheet("s.csv", text.as_bytes())
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("a bad sheet").to_string()
    }

    #[test]
    fn reads_columns_in_any_order_with_comments_and_blank_lines() {
        let sheet = parse(
            "# center C1, 2024-01-19\n\
             deposit, member_id ,loan_id,repayment,savings_account_id\n\
             \n\
             50000,TB-0001,TB-0001/L1,1112000,TB-0001/C1\n\
             # absent\n\
             ,TB-0002,TB-0002/L1,,\n\
             ,,,,\n\
             30000,TB-0003,,,TB-0003/V1\n",
        )
        .expect("a good sheet");
        assert_eq!(sheet.lines.len(), 2);
        let first = &sheet.lines[0];
        assert_eq!(first.csv_line, 4);
        assert_eq!(first.line.member_id, "TB-0001");
        assert_eq!(first.line.loan_id, "TB-0001/L1");
        assert_eq!(
            first.line.repayment.as_ref().map(|m| m.amount.as_str()),
            Some("1112000")
        );
        assert_eq!(first.line.savings_account_id, "TB-0001/C1");
        let second = &sheet.lines[1];
        assert_eq!(second.csv_line, 8);
        assert_eq!(second.line.loan_id, "");
        assert_eq!(second.line.repayment, None);
        assert_eq!(sheet.skipped, [(6, "TB-0002".to_owned())]);
    }

    #[test]
    fn errors_name_the_line_and_the_column() {
        let header = "member_id,loan_id,repayment,savings_account_id,deposit\n";
        let bad_amount = format!("{header}TB-1,TB-1/L1,500,,\n# note\nTB-2,TB-2/L1,\"1,000\",,\n");
        assert_eq!(
            error(&bad_amount),
            "s.csv line 4 (spreadsheet row 4), column repayment: \"1,000\" is not a plain \
             decimal amount (digits, optionally a point and decimals; no separators or signs); \
             nothing was sent"
        );
        for (text, expected) in [
            (
                format!("{header}TB-1,,500,,\n"),
                "s.csv line 2 (spreadsheet row 2), column loan_id: is empty",
            ),
            (
                format!("{header},TB-1/L1,500,,\n"),
                "s.csv line 2 (spreadsheet row 2), column member_id: is empty",
            ),
            (
                format!("{header}TB-1,,,TB-1/C1,-5\n"),
                "s.csv line 2 (spreadsheet row 2), column deposit: \"-5\"",
            ),
            (
                format!("{header}TB-1,,,,1e3\n"),
                "s.csv line 2 (spreadsheet row 2), column deposit: \"1e3\"",
            ),
            (
                format!("{header}TB-1,,,,1,2\n"),
                "s.csv line 2 (spreadsheet row 2): 6 cells",
            ),
            (
                "member,repayment\n".to_owned(),
                "s.csv line 1 (spreadsheet row 1), column member: unknown column",
            ),
            (
                "member_id,repayment\n".to_owned(),
                "s.csv line 1 (spreadsheet row 1): the header has no loan_id",
            ),
            (
                "member_id,loan_id\n".to_owned(),
                "neither a repayment nor a deposit column",
            ),
            (
                format!("{header}TB-1,TB-1/L1,,,\n"),
                "s.csv: no line has a repayment",
            ),
            (String::new(), "s.csv: no header row"),
        ] {
            let message = error(&text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn refusals_are_told_in_the_files_line_numbers() {
        let sheet = parse(
            "member_id,loan_id,repayment,savings_account_id,deposit\n\
             # first\n\
             TB-1,TB-1/L1,500,,\n\
             TB-2,TB-2/L1,600,TB-2/C1,100\n\
             TB-3,TB-1/L1,700,TB-2/C1,100\n",
        )
        .expect("a good sheet");
        let at = |message: &str| locate_refusal("s.csv", message, &sheet.lines);
        assert_eq!(
            at("lines[1].repayment.amount: \"600.5\" has too many decimal places").as_deref(),
            Some(
                "s.csv line 4 (spreadsheet row 4, member TB-2), column repayment: \
                 \"600.5\" has too many decimal places"
            )
        );
        assert_eq!(
            at("lines[1].deposit.account_id: savings account \"TB-2/C1\" not found").as_deref(),
            Some(
                "s.csv line 4 (spreadsheet row 4, member TB-2), column savings_account_id: \
                 savings account \"TB-2/C1\" not found"
            )
        );
        assert_eq!(
            at("lines[0].repayment.loan_id: loan TB-1/L1 is not member TB-1's").as_deref(),
            Some(
                "s.csv line 3 (spreadsheet row 3, member TB-1), column loan_id: \
                 loan TB-1/L1 is not member TB-1's"
            )
        );
        assert_eq!(
            at("lines[0]: has neither a repayment nor a deposit").as_deref(),
            Some(
                "s.csv line 3 (spreadsheet row 3, member TB-1): has neither a repayment nor a deposit"
            )
        );
        // "An earlier line" is named, in the same numbering.
        assert_eq!(
            at("lines[2].loan_id: loan TB-1/L1 is on an earlier line too; one line per loan")
                .as_deref(),
            Some(
                "s.csv line 5 (spreadsheet row 5, member TB-3), column loan_id: \
                 loan TB-1/L1 is on line 3 too; one line per loan"
            )
        );
        assert_eq!(
            at(
                "lines[2].savings_account_id: savings account TB-2/C1 is on an earlier line too; \
                one line per account"
            )
            .as_deref(),
            Some(
                "s.csv line 5 (spreadsheet row 5, member TB-3), column savings_account_id: \
                 savings account TB-2/C1 is on line 4 too; one line per account"
            )
        );
        // No "lines[" is left for a clerk to count differently.
        for index in 0..3 {
            let message = at(&format!("lines[{index}].member_id: x")).expect("located");
            assert!(!message.contains("lines["), "{message}");
        }
        assert_eq!(at("center_id: center \"C9\" not found"), None);
        assert_eq!(at("lines[7].member_id: x"), None);
    }

    #[test]
    fn plain_decimals_only() {
        for good in ["0", "50000", "12.50"] {
            assert!(plain_decimal(good), "{good}");
        }
        for bad in ["", ".5", "5.", "1,000", "-5", "+5", "1e3", "1.2.3", " 5"] {
            assert!(!plain_decimal(bad), "{bad}");
        }
    }
}
