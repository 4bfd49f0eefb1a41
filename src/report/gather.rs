//! Gathers a [`BranchReport`] from a running ledger over gRPC: the year and
//! the year before from `GetBranchTotals`, each month's flows and savings,
//! and PAR30 (the standard measure, no tolerance) at each month end from
//! `GetPortfolioQuality`.

use crate::cli::connect::Conn;
use anyhow::{Context, anyhow};
use chrono::{Months, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{BranchReport, MonthFigures, ProductFigures, YearFigures};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::get_branch_totals_request::Period;

fn amount(money: &Option<pb::Money>) -> anyhow::Result<Decimal> {
    match money {
        Some(m) => m
            .amount
            .parse()
            .with_context(|| format!("the server sent {:?} as an amount", m.amount)),
        None => Ok(Decimal::ZERO),
    }
}

fn refused(call: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!("{call}: {:?}: {}", status.code(), status.message())
}

async fn totals(
    audit: &mut AuditServiceClient<Conn>,
    branch: &str,
    period: Period,
) -> anyhow::Result<pb::GetBranchTotalsResponse> {
    Ok(audit
        .get_branch_totals(pb::GetBranchTotalsRequest {
            branch_id: branch.to_owned(),
            period: Some(period),
        })
        .await
        .map_err(|s| refused("GetBranchTotals", s))?
        .into_inner())
}

/// PAR30 of `branch` at the end of `day`, as a ratio.
async fn par30(
    audit: &mut AuditServiceClient<Conn>,
    branch: &str,
    day: NaiveDate,
) -> anyhow::Result<Decimal> {
    let quality = audit
        .get_portfolio_quality(pb::GetPortfolioQualityRequest {
            branch_id: branch.to_owned(),
            as_of_date: day.to_string(),
            period: None,
        })
        .await
        .map_err(|s| refused("GetPortfolioQuality", s))?
        .into_inner();
    let percent: Decimal = quality
        .par30_percent
        .parse()
        .with_context(|| format!("the server sent {:?} as PAR30", quality.par30_percent))?;
    Ok(percent / Decimal::ONE_HUNDRED)
}

/// Repayments collected: principal, interest and fees paid with
/// installments, as the server adds them up (fees withheld at disbursement
/// are not repayments).
fn collected(t: &pb::PeriodTotals) -> anyhow::Result<Decimal> {
    amount(&t.repayments_collected)
}

fn year_figures(t: &pb::PeriodTotals, par30: Decimal) -> anyhow::Result<YearFigures> {
    Ok(YearFigures {
        loans_disbursed: u64::try_from(t.loans_disbursed).unwrap_or(0),
        amount_disbursed: amount(&t.amount_disbursed)?,
        average_loan: amount(&t.average_loan)?,
        repayments_collected: collected(t)?,
        savings_balance: amount(&t.savings_balance)?,
        borrowers: u64::try_from(t.borrowers).unwrap_or(0),
        borrowers_saving: u64::try_from(t.borrowers_with_savings).unwrap_or(0),
        gross_portfolio: amount(&t.portfolio_outstanding)?,
        par30,
        write_offs: amount(&t.written_off)?,
    })
}

/// The year-end report of `branch` for `year`, read from the ledger at `server`.
pub async fn gather(
    audit: &mut AuditServiceClient<Conn>,
    branch: &str,
    year: i32,
) -> anyhow::Result<BranchReport> {
    let year_end = NaiveDate::from_ymd_opt(year, 12, 31)
        .ok_or_else(|| anyhow!("--year {year} is outside the calendar"))?;
    let previous_end = NaiveDate::from_ymd_opt(year - 1, 12, 31)
        .ok_or_else(|| anyhow!("--year {year} is outside the calendar"))?;
    let head = audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map_err(|s| refused("GetLedgerInfo", s))?
        .into_inner();
    let whole = totals(audit, branch, Period::Year(year)).await?;
    let current = whole.current.clone().unwrap_or_default();
    let previous = whole.previous.clone().unwrap_or_default();
    let mut months = Vec::with_capacity(12);
    for month in 1..=12u32 {
        let first = NaiveDate::from_ymd_opt(year, month, 1)
            .ok_or_else(|| anyhow!("month {month} of {year}"))?;
        let last = first
            .checked_add_months(Months::new(1))
            .and_then(|d| d.pred_opt())
            .ok_or_else(|| anyhow!("month {month} of {year}"))?;
        let t = totals(audit, branch, Period::Month(format!("{year}-{month:02}")))
            .await?
            .current
            .unwrap_or_default();
        months.push(MonthFigures {
            month,
            loans_disbursed: u64::try_from(t.loans_disbursed).unwrap_or(0),
            amount_disbursed: amount(&t.amount_disbursed)?,
            collected: collected(&t)?,
            savings_balance: amount(&t.savings_balance)?,
            par30: par30(audit, branch, last).await?,
        });
    }
    let by_product = whole
        .by_product
        .iter()
        .map(|p| {
            Ok(ProductFigures {
                product_id: p.product_id.clone(),
                name: p.name.clone(),
                loans: p.loans,
                amount: amount(&p.amount)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let currency = current
        .amount_disbursed
        .as_ref()
        .map(|m| m.currency.clone())
        .unwrap_or_else(|| "VND".to_owned());
    let places = match currency.as_str() {
        "VND" => 0,
        _ => 2,
    };
    Ok(BranchReport {
        branch_id: whole.branch_id.clone(),
        branch_name: whole.branch_name.clone(),
        currency,
        currency_decimal_places: places,
        year,
        current: year_figures(&current, par30(audit, branch, year_end).await?)?,
        previous: year_figures(&previous, par30(audit, branch, previous_end).await?)?,
        months,
        by_product,
        generated_at: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        ledger_head: format!("entry {} (hash {})", head.last_sequence, head.last_hash),
    })
}

/// [`gather`] from the ledger at `server` ("http://host:port" or "host:port").
pub async fn gather_from(server: &str, branch: &str, year: i32) -> anyhow::Result<BranchReport> {
    let mut audit = crate::cli::connect::audit(server).await?;
    gather(&mut audit, branch, year).await
}
