//! What a command prints: a [`Report`] holds both the human text and the JSON
//! value, and the helpers here format amounts, enum names, hashes, aligned
//! fields and tables. Amounts stay the exact strings the server sent; only
//! their display gains thousands separators, as do counts ([`count`]).
//! Identifiers a user types back as an argument (entry sequence numbers,
//! request and installment numbers) are shown without separators.

use std::io::{ErrorKind, Write};

use anyhow::Context;
use comfy_table::{CellAlignment, ContentArrangement, Table, TableStyle, presets};
use serde_json::{Value, json};

use crate::pb;

/// Number of hex characters of a hash shown in text output.
const SHORT_HASH_LEN: usize = 16;

/// A command's result, printable as text or as JSON.
pub struct Report {
    /// What a person reads.
    pub text: String,
    /// What a script reads.
    pub json: Value,
}

impl Report {
    /// Prints the report on stdout, as JSON when `json` is set; nothing for
    /// a report with neither text nor JSON (a command that wrote its output
    /// itself). A closed pipe (`| head`) is not an error.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if self.text.is_empty() && self.json.is_null() {
            return Ok(());
        }
        let text = if json {
            serde_json::to_string_pretty(&self.json)?
        } else {
            self.text.trim_end().to_owned()
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
            result => result.context("writing to stdout"),
        }
    }
}

pub use crate::domain::money::grouped;

/// A count with grouped digits: "2,175" (loans, borrowers, lines, days).
pub fn count(value: impl std::fmt::Display) -> String {
    grouped(&value.to_string())
}

/// An amount for a table cell: grouped digits, no currency ("-" when absent).
pub fn amount(money: Option<&pb::Money>) -> String {
    money.map_or_else(|| "-".to_owned(), |m| grouped(&m.amount))
}

/// An amount with its currency, e.g. "10,000,000 VND" ("-" when absent).
pub fn money(money: Option<&pb::Money>) -> String {
    match money {
        Some(m) if m.currency.is_empty() => grouped(&m.amount),
        Some(m) => format!("{} {}", grouped(&m.amount), m.currency),
        None => "-".to_owned(),
    }
}

/// An amount as JSON: `{"amount": "10000000", "currency": "VND"}`, exact.
pub fn money_json(money: Option<&pb::Money>) -> Value {
    money.map_or(
        Value::Null,
        |m| json!({ "amount": m.amount, "currency": m.currency }),
    )
}

/// A protobuf enum value's name without its type prefix:
/// "SAVINGS_KIND_COMPULSORY" becomes "COMPULSORY". Every enum of the API has
/// a two-word prefix.
pub fn enum_name(full: &str) -> String {
    full.splitn(3, '_').nth(2).unwrap_or(full).to_owned()
}

/// The first 16 hex characters of a hash.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..SHORT_HASH_LEN).unwrap_or(hash)
}

/// "yes" or "no".
pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// Lines of "name: value" with the values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(name, value)| format!("{:<width$} {value}\n", format!("{name}:")))
        .collect()
}

/// A table with `header`, condensed style, and the columns at
/// `right_aligned` (amounts, counts) aligned right.
pub fn table(header: &[&str], right_aligned: &[usize]) -> Table {
    styled_table(presets::UTF8_FULL_CONDENSED, header, right_aligned)
}

/// Like [`table`], with a line between rows (for multi-line cells).
pub fn ruled_table(header: &[&str], right_aligned: &[usize]) -> Table {
    styled_table(presets::UTF8_FULL, header, right_aligned)
}

fn styled_table(style: TableStyle, header: &[&str], right_aligned: &[usize]) -> Table {
    let mut table = Table::new();
    table
        .load_style(style)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for &index in right_aligned {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// A titled section: the title, then the table or `empty` when it has no rows.
pub fn section(title: &str, table: &Table, empty: &str) -> String {
    if table.row_count() == 0 {
        format!("\n{title}: {empty}\n")
    } else {
        format!("\n{title}:\n{table}\n")
    }
}

/// The receipt of a write, in text.
pub fn receipt_fields(receipt: &pb::EntryReceipt) -> Vec<(&'static str, String)> {
    vec![
        ("sequence", receipt.sequence.to_string()),
        ("effective date", receipt.effective_date.clone()),
        ("hash", short_hash(&receipt.hash).to_owned()),
    ]
}

/// The receipt of a write, in JSON (full hash).
pub fn receipt_json(receipt: &pb::EntryReceipt) -> Value {
    json!({
        "sequence": receipt.sequence,
        "effective_date": receipt.effective_date,
        "recorded_at": receipt.recorded_at,
        "hash": receipt.hash,
    })
}

/// What a write prints: its receipt, then `rows` (text) or `result`'s fields
/// (JSON, beside the request id and the receipt).
pub fn write_report(
    request_id: &str,
    receipt: &pb::EntryReceipt,
    rows: Vec<(&str, String)>,
    result: Value,
) -> Report {
    let mut lines = receipt_fields(receipt);
    lines.extend(rows);
    let mut json = json!({
        "request_id": request_id,
        "receipt": receipt_json(receipt),
    });
    if let (Some(object), Value::Object(extra)) = (json.as_object_mut(), result) {
        object.extend(extra);
    }
    Report {
        text: fields(&lines),
        json,
    }
}

/// One schedule line as JSON; `with_payments` adds what was paid and the status.
/// `balance_after` is null where the server does not send it (a loan's schedule).
pub fn installment_json(installment: &pb::Installment, with_payments: bool) -> Value {
    let mut value = json!({
        "number": installment.number,
        "due_date": installment.due_date,
        "principal": money_json(installment.principal.as_ref()),
        "interest": money_json(installment.interest.as_ref()),
        "fee": money_json(installment.fee.as_ref()),
        "total": money_json(installment.total.as_ref()),
        "balance_after": money_json(installment.balance_after.as_ref()),
    });
    if with_payments && let Some(object) = value.as_object_mut() {
        object.insert(
            "principal_paid".into(),
            money_json(installment.principal_paid.as_ref()),
        );
        object.insert(
            "interest_paid".into(),
            money_json(installment.interest_paid.as_ref()),
        );
        object.insert("fee_paid".into(), money_json(installment.fee_paid.as_ref()));
        object.insert(
            "status".into(),
            enum_name(installment.status().as_str_name()).into(),
        );
    }
    value
}

/// "GENERAL version 2", or a note that the loan is outside the catalogue.
pub fn product_label(product_id: &str, version: u32) -> String {
    if product_id.is_empty() {
        "none (terms outside the catalogue)".to_owned()
    } else {
        format!("{product_id} version {version}")
    }
}

/// True when `money` is absent or a decimal zero.
pub fn is_zero(money: Option<&pb::Money>) -> bool {
    money.is_none_or(|m| {
        m.amount
            .parse::<rust_decimal::Decimal>()
            .is_ok_and(|d| d.is_zero())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands_and_keeps_the_rest() {
        assert_eq!(grouped("0"), "0");
        assert_eq!(grouped("999"), "999");
        assert_eq!(grouped("1000"), "1,000");
        assert_eq!(grouped("10000000"), "10,000,000");
        assert_eq!(grouped("-440000"), "-440,000");
        assert_eq!(grouped("1234567.50"), "1,234,567.50");
        assert_eq!(grouped("12ab"), "12ab");
        assert_eq!(grouped(""), "");
        assert_eq!(grouped("-"), "-");
        assert_eq!(grouped("1.2.3"), "1.2.3");
    }

    #[test]
    fn counts_are_grouped_like_amounts() {
        assert_eq!(count(999_u64), "999");
        assert_eq!(count(2175_u64), "2,175");
        assert_eq!(count(-1849_i64), "-1,849");
        assert_eq!(count(1_000_000_usize), "1,000,000");
    }

    #[test]
    fn strips_enum_prefixes() {
        assert_eq!(enum_name("SAVINGS_KIND_COMPULSORY"), "COMPULSORY");
        assert_eq!(enum_name("INSTALLMENT_STATUS_NOT_DUE"), "NOT_DUE");
        assert_eq!(enum_name("ODD"), "ODD");
    }

    #[test]
    fn shortens_hashes_safely() {
        assert_eq!(short_hash("0123456789abcdef0123"), "0123456789abcdef");
        assert_eq!(short_hash("abc"), "abc");
    }
}

/// An error with its causes, for a person: each cause once. Errors that
/// quote their source in their own message (an I/O error's "Read-only file
/// system (os error 30)", say) would otherwise print it twice, as `{:#}`
/// does.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod describe_tests {
    use super::describe;

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(30);
        let quoted = format!("journal.log: {io}");
        let error = anyhow::Error::new(io).context(quoted.clone());
        assert_eq!(
            format!("{error:#}"),
            format!("{quoted}: {}", error.root_cause())
        );
        assert_eq!(describe(&error), quoted);
        let plain = anyhow::anyhow!("disk full").context("saving the cache");
        assert_eq!(describe(&plain), "saving the cache: disk full");
    }
}
