//! Reads over many entries: a branch's totals for a period and pages of the
//! journal.

use crate::cli::connect::Conn;
use anyhow::bail;
use serde_json::{Value, json};

use super::args::{JournalArgs, TotalsArgs};
use super::connect::{audit, read_error};
use super::output::{
    Report, amount, count, enum_name, money_json, ruled_table, section, short_hash, table,
};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::get_branch_totals_request::Period;

/// Most entries the server returns in one page.
const PAGE_SIZE_MAX: usize = 1000;

/// `totals`: current, previous and change of each figure.
pub async fn totals(server: &str, args: TotalsArgs) -> anyhow::Result<Report> {
    let request = pb::GetBranchTotalsRequest {
        branch_id: args.branch.clone(),
        as_of_sequence: args.as_of_sequence.unwrap_or_default(),
        period: Some(period(args)?),
    };
    let r = audit(server)
        .await?
        .get_branch_totals(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let current = r.current.unwrap_or_default();
    let previous = r.previous.unwrap_or_default();
    let change = r.change.unwrap_or_default();
    let mut text = format!(
        "branch {}: {} to {} compared with {} to {}, as of entry {}\n{}\n",
        r.branch_id,
        current.from_date,
        current.to_date,
        previous.from_date,
        previous.to_date,
        r.as_of_sequence,
        totals_table(&current, &previous, &change)
    );
    text += &by_product_section(&r.by_product, &current);
    let json = json!({
        "branch_id": r.branch_id,
        "as_of_sequence": r.as_of_sequence,
        "current": period_json(&current),
        "previous": period_json(&previous),
        "change": period_json(&change),
        "by_product": r.by_product.iter().map(product_totals_json).collect::<Vec<_>>(),
    });
    Ok(Report { text, json })
}

/// The one period the arguments name (clap makes sure there is exactly one).
fn period(args: TotalsArgs) -> anyhow::Result<Period> {
    Ok(match (args.year, args.month, args.from, args.to) {
        (Some(year), _, _, _) => Period::Year(year),
        (None, Some(month), _, _) => Period::Month(month),
        (None, None, Some(from_date), Some(to_date)) => {
            Period::Range(pb::DateRange { from_date, to_date })
        }
        _ => bail!("name a period: --year, --month, or --from and --to"),
    })
}

/// One row per figure: its name and the three values.
fn figure_rows(p: &pb::PeriodTotals) -> Vec<(&'static str, String)> {
    vec![
        ("loans disbursed", count(p.loans_disbursed)),
        ("amount disbursed", amount(p.amount_disbursed.as_ref())),
        ("average loan", amount(p.average_loan.as_ref())),
        (
            "principal collected",
            amount(p.principal_collected.as_ref()),
        ),
        ("interest collected", amount(p.interest_collected.as_ref())),
        ("fees collected", amount(p.fees_collected.as_ref())),
        (
            "  of which withheld at disbursement",
            amount(p.fees_withheld_at_disbursement.as_ref()),
        ),
        (
            "repayments collected",
            amount(p.repayments_collected.as_ref()),
        ),
        ("written off", amount(p.written_off.as_ref())),
        ("recovered", amount(p.recovered.as_ref())),
        ("savings balance (end)", amount(p.savings_balance.as_ref())),
        ("borrowers (end)", count(p.borrowers)),
        (
            "borrowers with savings > 0",
            count(p.borrowers_with_savings),
        ),
        (
            "borrowers with savings > 0 %",
            p.borrowers_with_savings_percent.clone(),
        ),
        (
            "portfolio outstanding (end)",
            amount(p.portfolio_outstanding.as_ref()),
        ),
    ]
}

fn totals_table(
    current: &pb::PeriodTotals,
    previous: &pb::PeriodTotals,
    change: &pb::PeriodTotals,
) -> comfy_table::Table {
    let currency = current
        .amount_disbursed
        .as_ref()
        .map(|m| m.currency.clone())
        .unwrap_or_default();
    let header = [
        format!("figure ({currency})"),
        format!("current\n{} to {}", current.from_date, current.to_date),
        format!("previous\n{} to {}", previous.from_date, previous.to_date),
        "change".to_owned(),
    ];
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut rows = table(&header, &[1, 2, 3]);
    let [current, previous, change] = [current, previous, change].map(figure_rows);
    let figures = current.into_iter().zip(previous).zip(change);
    for (((name, now), (_, before)), (_, difference)) in figures {
        rows.add_row(vec![name.to_owned(), now, before, difference]);
    }
    rows
}

/// Loans disbursed in the period, by product.
fn by_product_section(products: &[pb::ProductTotals], current: &pb::PeriodTotals) -> String {
    let mut rows = table(&["product", "name", "loans", "amount"], &[2, 3]);
    for p in products {
        let id = if p.product_id.is_empty() {
            "(none)".to_owned()
        } else {
            p.product_id.clone()
        };
        let name = if p.product_id.is_empty() && p.name.is_empty() {
            "outside the catalogue".to_owned()
        } else {
            p.name.clone()
        };
        rows.add_row(vec![id, name, count(p.loans), amount(p.amount.as_ref())]);
    }
    let title = format!(
        "loans disbursed by product, {} to {}",
        current.from_date, current.to_date
    );
    section(&title, &rows, "none")
}

fn product_totals_json(p: &pb::ProductTotals) -> Value {
    json!({
        "product_id": p.product_id,
        "name": p.name,
        "loans": p.loans,
        "amount": money_json(p.amount.as_ref()),
    })
}

fn period_json(p: &pb::PeriodTotals) -> Value {
    json!({
        "from_date": p.from_date,
        "to_date": p.to_date,
        "loans_disbursed": p.loans_disbursed,
        "amount_disbursed": money_json(p.amount_disbursed.as_ref()),
        "average_loan": money_json(p.average_loan.as_ref()),
        "principal_collected": money_json(p.principal_collected.as_ref()),
        "interest_collected": money_json(p.interest_collected.as_ref()),
        "fees_collected": money_json(p.fees_collected.as_ref()),
        "fees_withheld_at_disbursement": money_json(p.fees_withheld_at_disbursement.as_ref()),
        "repayments_collected": money_json(p.repayments_collected.as_ref()),
        "written_off": money_json(p.written_off.as_ref()),
        "recovered": money_json(p.recovered.as_ref()),
        "savings_balance": money_json(p.savings_balance.as_ref()),
        "borrowers": p.borrowers,
        "borrowers_with_savings": p.borrowers_with_savings,
        "borrowers_with_savings_percent": p.borrowers_with_savings_percent,
        "portfolio_outstanding": money_json(p.portfolio_outstanding.as_ref()),
    })
}

/// `journal`: up to `--limit` entries from `--from`, paging as needed.
pub async fn journal(server: &str, args: JournalArgs) -> anyhow::Result<Report> {
    let mut client = audit(server).await?;
    let (entries, next) = fetch_entries(&mut client, args.from, args.limit as usize).await?;
    let mut text = journal_text(&entries);
    if let Some(next) = next {
        text += &format!("more entries follow: journal --from {next}\n");
    }
    let json = json!({
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_sequence": next,
    });
    Ok(Report { text, json })
}

/// Entries from `from`, at most `limit`, and the sequence to ask for next
/// (`None` at the journal's end).
async fn fetch_entries(
    client: &mut AuditServiceClient<Conn>,
    from: u64,
    limit: usize,
) -> anyhow::Result<(Vec<pb::JournalEntry>, Option<u64>)> {
    let mut entries = Vec::new();
    let mut next = from.max(1);
    while entries.len() < limit {
        let page_size = (limit - entries.len()).min(PAGE_SIZE_MAX);
        let request = pb::ListJournalEntriesRequest {
            from_sequence: next,
            page_size: u32::try_from(page_size).unwrap_or(1000),
        };
        let page = client
            .list_journal_entries(request)
            .await
            .map_err(read_error)?
            .into_inner();
        let got = page.entries.len();
        entries.extend(page.entries);
        // Stop at the end, and on a page that does not move forward.
        if page.next_sequence <= next || got == 0 {
            return Ok((entries, None));
        }
        next = page.next_sequence;
    }
    entries.truncate(limit);
    let next = entries
        .last()
        .map_or(next, |last| last.sequence.saturating_add(1));
    Ok((entries, Some(next)))
}

fn journal_text(entries: &[pb::JournalEntry]) -> String {
    let header = ["seq", "date", "command", "description", "postings", "hash"];
    let mut rows = ruled_table(&header, &[0]);
    for e in entries {
        rows.add_row(vec![
            e.sequence.to_string(),
            e.effective_date.clone(),
            e.command.clone(),
            e.description.clone(),
            postings_text(&e.postings),
            short_hash(&e.hash).to_owned(),
        ]);
    }
    section("journal", &rows, "no entries")
        .trim_start()
        .to_owned()
}

/// Postings as lines like "Dr cash:TB 50,000".
fn postings_text(postings: &[pb::Posting]) -> String {
    postings
        .iter()
        .map(|p| {
            let side = match p.side() {
                pb::PostingSide::Debit => "Dr",
                pb::PostingSide::Credit => "Cr",
                pb::PostingSide::Unspecified => "??",
            };
            format!("{side} {} {}", p.account, amount(p.amount.as_ref()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn entry_json(e: &pb::JournalEntry) -> Value {
    let postings: Vec<Value> = e
        .postings
        .iter()
        .map(|p| {
            json!({
                "account": p.account,
                "side": enum_name(p.side().as_str_name()),
                "amount": money_json(p.amount.as_ref()),
            })
        })
        .collect();
    json!({
        "sequence": e.sequence,
        "effective_date": e.effective_date,
        "recorded_at": e.recorded_at,
        "branch_id": e.branch_id,
        "actor": e.actor,
        "request_id": e.request_id,
        "command": e.command,
        "description": e.description,
        "reverses_sequence": (e.reverses_sequence != 0).then_some(e.reverses_sequence),
        "postings": postings,
        "previous_hash": e.previous_hash,
        "hash": e.hash,
    })
}
