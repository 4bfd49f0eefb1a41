//! Gathers a [`BranchReport`] from a running ledger over gRPC: the year and
//! the year before from `GetBranchTotals`, each month's flows and savings,
//! and PAR30 (the standard measure, no tolerance) at each month end from
//! `GetPortfolioQuality`; the balance sheet at both year ends from
//! `GetBalanceSheet` and the income statement of both years from
//! `GetIncomeStatement`.
//!
//! The statements are checked as they arrive: every amount in the report's
//! currency, the totals the sums of their lines, the balance sheet
//! balanced. A report whose statements do not add up is refused rather than
//! printed.

use crate::cli::connect::Conn;
use anyhow::{Context, anyhow};
use chrono::{Months, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{
    Amounts, BalanceSheet, BranchReport, IncomeStatement, MonthFigures, ProductFigures,
    StatementLine, YearFigures,
};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::books_service_client::BooksServiceClient;
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
            as_of_sequence: 0,
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
            as_of_sequence: 0,
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

/// An amount of a statement, which must be in `currency`.
fn statement_amount(
    call: &str,
    money: &Option<pb::Money>,
    currency: &str,
) -> anyhow::Result<Decimal> {
    if let Some(m) = money
        && m.currency != currency
    {
        return Err(anyhow!(
            "{call}: the server sent an amount in {:?}, the report is in {currency:?}",
            m.currency
        ));
    }
    amount(money)
}

/// The lines of a statement as the report keeps them.
fn statement_lines(
    call: &str,
    lines: &[pb::StatementLine],
    currency: &str,
) -> anyhow::Result<Vec<StatementLine>> {
    lines
        .iter()
        .map(|line| {
            Ok(StatementLine {
                gl_code: line.gl_code.clone(),
                gl_name: line.gl_name.clone(),
                line: line.line.clone(),
                amount: statement_amount(call, &line.amount, currency)?,
                previous_amount: statement_amount(call, &line.previous_amount, currency)?,
            })
        })
        .collect()
}

/// The two figures of a statement's total, which the server must send.
fn statement_total(
    call: &str,
    what: &str,
    line: &Option<pb::StatementLine>,
    currency: &str,
) -> anyhow::Result<Amounts> {
    let line = line
        .as_ref()
        .ok_or_else(|| anyhow!("{call}: the server sent no {what}"))?;
    Ok(Amounts {
        amount: statement_amount(call, &line.amount, currency)?,
        previous_amount: statement_amount(call, &line.previous_amount, currency)?,
    })
}

/// A date the server sent, which must be the one asked for.
fn answered_date(call: &str, field: &str, sent: &str, asked: NaiveDate) -> anyhow::Result<()> {
    if sent == asked.to_string() {
        Ok(())
    } else {
        Err(anyhow!(
            "{call}: asked for {field} {asked}, the server answered for {sent:?}"
        ))
    }
}

/// Refuses `figures` unless they equal `expected` (`None`: the sum
/// overflowed), naming both.
fn check_equal(
    call: &str,
    what: &str,
    figures: Amounts,
    expected: Option<Amounts>,
    against: &str,
) -> anyhow::Result<()> {
    if expected == Some(figures) {
        return Ok(());
    }
    let shown = |amounts: Option<Amounts>| {
        amounts.map_or_else(
            || "an overflow".to_owned(),
            |a| format!("{} (previous {})", a.amount, a.previous_amount),
        )
    };
    Err(anyhow!(
        "{call}: {what} is {}, but {against} is {}",
        shown(Some(figures)),
        shown(expected)
    ))
}

/// The balance sheet of `branch` at the end of `date`, beside `previous_date`.
async fn balance_sheet(
    books: &mut BooksServiceClient<Conn>,
    branch: &str,
    (date, previous_date): (NaiveDate, NaiveDate),
    currency: &str,
) -> anyhow::Result<BalanceSheet> {
    const CALL: &str = "GetBalanceSheet";
    let sheet = books
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: branch.to_owned(),
            date: date.to_string(),
            previous_date: previous_date.to_string(),
        })
        .await
        .map_err(|s| refused(CALL, s))?
        .into_inner();
    balance_sheet_from(&sheet, (date, previous_date), currency)
}

/// The balance sheet the server sent for `date` beside `previous_date`,
/// refused unless it is of those dates, in `currency`, and adds up.
fn balance_sheet_from(
    sheet: &pb::GetBalanceSheetResponse,
    (date, previous_date): (NaiveDate, NaiveDate),
    currency: &str,
) -> anyhow::Result<BalanceSheet> {
    const CALL: &str = "GetBalanceSheet";
    answered_date(CALL, "date", &sheet.date, date)?;
    answered_date(CALL, "previous_date", &sheet.previous_date, previous_date)?;
    let sheet = BalanceSheet {
        date,
        previous_date,
        assets: statement_lines(CALL, &sheet.assets, currency)?,
        liabilities: statement_lines(CALL, &sheet.liabilities, currency)?,
        equity: statement_lines(CALL, &sheet.equity, currency)?,
        total_assets: statement_total(CALL, "total assets", &sheet.total_assets, currency)?,
        total_liabilities_and_equity: statement_total(
            CALL,
            "total liabilities and equity",
            &sheet.total_liabilities_and_equity,
            currency,
        )?,
    };
    check_equal(
        CALL,
        "total assets",
        sheet.total_assets,
        Amounts::sum(&sheet.assets),
        "the sum of the asset lines",
    )?;
    let liabilities_and_equity = sheet
        .total_liabilities()
        .zip(sheet.total_equity())
        .and_then(|(liabilities, equity)| liabilities.checked_add(equity));
    check_equal(
        CALL,
        "total liabilities and equity",
        sheet.total_liabilities_and_equity,
        liabilities_and_equity,
        "the sum of the liability and equity lines",
    )?;
    check_equal(
        CALL,
        "total liabilities and equity",
        sheet.total_liabilities_and_equity,
        Some(sheet.total_assets),
        "total assets",
    )?;
    Ok(sheet)
}

/// The income statement of `branch` for `from..=to`, beside
/// `previous_from..=previous_to`.
async fn income_statement(
    books: &mut BooksServiceClient<Conn>,
    branch: &str,
    (from, to): (NaiveDate, NaiveDate),
    (previous_from, previous_to): (NaiveDate, NaiveDate),
    currency: &str,
) -> anyhow::Result<IncomeStatement> {
    const CALL: &str = "GetIncomeStatement";
    let answer = books
        .get_income_statement(pb::GetIncomeStatementRequest {
            branch_id: branch.to_owned(),
            from: from.to_string(),
            to: to.to_string(),
            previous_from: previous_from.to_string(),
            previous_to: previous_to.to_string(),
        })
        .await
        .map_err(|s| refused(CALL, s))?
        .into_inner();
    income_statement_from(&answer, (from, to), (previous_from, previous_to), currency)
}

/// The income statement the server sent for `from..=to` beside
/// `previous_from..=previous_to`, refused unless it is of those periods, in
/// `currency`, and its result is its income less its expenses.
fn income_statement_from(
    answer: &pb::GetIncomeStatementResponse,
    (from, to): (NaiveDate, NaiveDate),
    (previous_from, previous_to): (NaiveDate, NaiveDate),
    currency: &str,
) -> anyhow::Result<IncomeStatement> {
    const CALL: &str = "GetIncomeStatement";
    answered_date(CALL, "from", &answer.from, from)?;
    answered_date(CALL, "to", &answer.to, to)?;
    answered_date(CALL, "previous_from", &answer.previous_from, previous_from)?;
    answered_date(CALL, "previous_to", &answer.previous_to, previous_to)?;
    let statement = IncomeStatement {
        from,
        to,
        previous_from,
        previous_to,
        income: statement_lines(CALL, &answer.income, currency)?,
        expenses: statement_lines(CALL, &answer.expenses, currency)?,
        result: statement_total(CALL, "result", &answer.result, currency)?,
    };
    let income_less_expenses = statement
        .total_income()
        .zip(statement.total_expenses())
        .and_then(|(income, expenses)| income.checked_sub(expenses));
    check_equal(
        CALL,
        "the result",
        statement.result,
        income_less_expenses,
        "income less expenses",
    )?;
    Ok(statement)
}

/// The year-end report of `branch` for `year`, read with `audit` (the
/// branch's figures) and `books` (its statements).
pub async fn gather(
    audit: &mut AuditServiceClient<Conn>,
    books: &mut BooksServiceClient<Conn>,
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
    let year_start = NaiveDate::from_ymd_opt(year, 1, 1)
        .ok_or_else(|| anyhow!("--year {year} is outside the calendar"))?;
    let previous_start = NaiveDate::from_ymd_opt(year - 1, 1, 1)
        .ok_or_else(|| anyhow!("--year {year} is outside the calendar"))?;
    let balance_sheet = balance_sheet(books, branch, (year_end, previous_end), &currency).await?;
    let income_statement = income_statement(
        books,
        branch,
        (year_start, year_end),
        (previous_start, previous_end),
        &currency,
    )
    .await?;
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
        balance_sheet,
        income_statement,
        generated_at: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        ledger_head: format!("entry {} (hash {})", head.last_sequence, head.last_hash),
    })
}

/// [`gather`] from the ledger at `server` ("http://host:port" or "host:port"),
/// over one connection.
pub async fn gather_from(server: &str, branch: &str, year: i32) -> anyhow::Result<BranchReport> {
    let channel = crate::cli::connect::channel(server).await?;
    let mut audit = AuditServiceClient::new(channel.clone());
    let mut books = BooksServiceClient::new(channel);
    gather(&mut audit, &mut books, branch, year).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn vnd(amount: &str) -> Option<pb::Money> {
        Some(pb::Money {
            amount: amount.to_owned(),
            currency: "VND".to_owned(),
        })
    }

    fn line(code: &str, key: &str, amount: &str, previous: &str) -> pb::StatementLine {
        pb::StatementLine {
            gl_code: code.to_owned(),
            gl_name: format!("GL {code}"),
            line: key.to_owned(),
            amount: vnd(amount),
            previous_amount: vnd(previous),
        }
    }

    const YEAR_ENDS: (NaiveDate, NaiveDate) = (
        NaiveDate::from_ymd_opt(2023, 12, 31).unwrap(),
        NaiveDate::from_ymd_opt(2022, 12, 31).unwrap(),
    );

    /// Cash 300 (200) and a portfolio of 1,000 (800) against savings 900
    /// (700), retained earnings 300 and a result of 100 (0).
    fn sheet() -> pb::GetBalanceSheetResponse {
        pb::GetBalanceSheetResponse {
            branch_id: "TB".to_owned(),
            date: "2023-12-31".to_owned(),
            previous_date: "2022-12-31".to_owned(),
            assets: vec![
                line("1011", "cash", "300", "200"),
                line("1311", "loan-portfolio", "1000", "800"),
            ],
            liabilities: vec![line("2111", "savings-compulsory", "900", "700")],
            equity: vec![
                line("3211", "retained-earnings", "300", "300"),
                line("", "result", "100", "0"),
            ],
            total_assets: Some(line("", "total", "1300", "1000")),
            total_liabilities_and_equity: Some(line("", "total", "1300", "1000")),
            as_of_sequence: 7,
        }
    }

    /// Income 150 (120) less expenses 50 (40).
    fn income() -> pb::GetIncomeStatementResponse {
        pb::GetIncomeStatementResponse {
            branch_id: "TB".to_owned(),
            from: "2023-01-01".to_owned(),
            to: "2023-12-31".to_owned(),
            previous_from: "2022-01-01".to_owned(),
            previous_to: "2022-12-31".to_owned(),
            income: vec![line("4111", "interest-income", "150", "120")],
            expenses: vec![line("5111", "interest-expense", "50", "40")],
            result: Some(line("", "total", "100", "80")),
            as_of_sequence: 7,
        }
    }

    fn income_from(answer: &pb::GetIncomeStatementResponse) -> anyhow::Result<IncomeStatement> {
        income_statement_from(
            answer,
            (day(2023, 1, 1), day(2023, 12, 31)),
            (day(2022, 1, 1), day(2022, 12, 31)),
            "VND",
        )
    }

    #[test]
    fn statements_that_add_up_are_kept_exactly() {
        let kept = balance_sheet_from(&sheet(), YEAR_ENDS, "VND").unwrap();
        assert_eq!(kept.date, day(2023, 12, 31));
        assert_eq!(kept.assets[1].gl_code, "1311");
        assert_eq!(kept.assets[1].gl_name, "GL 1311");
        assert_eq!(kept.assets[1].amount, Decimal::from(1000));
        assert_eq!(kept.assets[1].previous_amount, Decimal::from(800));
        assert_eq!(kept.equity[1].line, "result");
        assert_eq!(
            kept.total_liabilities_and_equity.amount,
            Decimal::from(1300)
        );
        let kept = income_from(&income()).unwrap();
        assert_eq!(kept.result.previous_amount, Decimal::from(80));
    }

    #[test]
    fn a_balance_sheet_that_does_not_add_up_is_refused() {
        let mut unbalanced = sheet();
        unbalanced.equity[1].amount = vnd("99");
        unbalanced.total_liabilities_and_equity = Some(line("", "total", "1299", "1000"));
        let error = balance_sheet_from(&unbalanced, YEAR_ENDS, "VND").unwrap_err();
        assert_eq!(
            error.to_string(),
            "GetBalanceSheet: total liabilities and equity is 1299 (previous 1000), \
             but total assets is 1300 (previous 1000)"
        );
        let mut wrong_total = sheet();
        wrong_total.total_assets = Some(line("", "total", "1300", "1001"));
        let error = balance_sheet_from(&wrong_total, YEAR_ENDS, "VND").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("but the sum of the asset lines is 1300 (previous 1000)"),
            "{error}"
        );
        let mut no_total = sheet();
        no_total.total_assets = None;
        let error = balance_sheet_from(&no_total, YEAR_ENDS, "VND").unwrap_err();
        assert_eq!(
            error.to_string(),
            "GetBalanceSheet: the server sent no total assets"
        );
    }

    #[test]
    fn a_result_other_than_income_less_expenses_is_refused() {
        let mut wrong = income();
        wrong.result = Some(line("", "total", "100", "90"));
        let error = income_from(&wrong).unwrap_err();
        assert_eq!(
            error.to_string(),
            "GetIncomeStatement: the result is 100 (previous 90), \
             but income less expenses is 100 (previous 80)"
        );
    }

    #[test]
    fn statements_of_other_dates_or_currencies_are_refused() {
        let mut other_date = sheet();
        other_date.previous_date = "2023-06-30".to_owned();
        let error = balance_sheet_from(&other_date, YEAR_ENDS, "VND").unwrap_err();
        assert_eq!(
            error.to_string(),
            "GetBalanceSheet: asked for previous_date 2022-12-31, \
             the server answered for \"2023-06-30\""
        );
        let error = balance_sheet_from(&sheet(), YEAR_ENDS, "USD").unwrap_err();
        assert!(
            error.to_string().contains("an amount in \"VND\""),
            "{error}"
        );
        let mut other_period = income();
        other_period.from = "2023-07-01".to_owned();
        assert!(income_from(&other_period).is_err());
    }
}
