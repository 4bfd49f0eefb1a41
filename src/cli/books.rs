//! The books from the accountant's side (`BooksService`): the chart of
//! accounts, the trial balance, the balance sheet and the income statement
//! of a branch or of the institution, and an account's statement (a
//! member's passbook), also as a printable HTML page; and exports of the
//! books for an auditor's spreadsheet (`export`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::args::AsOfArgs;
use super::connect::{channel, read_error};
use super::output::{Report, amount, enum_name, fields, money, money_json, section, table};
use crate::pb;
use crate::pb::books_service_client::BooksServiceClient;
use crate::report::passbook::{self, Language};

mod export;

pub use export::ExportArgs;

/// The books' commands.
#[derive(Subcommand, Clone, Debug)]
pub enum BooksCommand {
    /// List the chart of accounts: every account with its branch, kind,
    /// general-ledger line and code, and balance.
    Accounts(AccountsArgs),
    /// Show the trial balance of a branch (or the institution): every
    /// general-ledger line's debits, credits and balance.
    TrialBalance(TrialBalanceArgs),
    /// Show the balance sheet at the end of a date, beside a previous date.
    BalanceSheet(BalanceSheetArgs),
    /// Show the income statement of a period, beside the previous period.
    IncomeStatement(IncomeStatementArgs),
    /// Show an account's statement (a member's passbook): opening balance,
    /// each movement with the running balance, closing balance.
    Statement(StatementArgs),
    /// Export the journal, its postings, the trial balance or a statement as
    /// CSV or JSON lines, for a spreadsheet; checks what it wrote against
    /// the server's row count and SHA-256.
    Export(ExportArgs),
}

/// Arguments of `accounts`.
#[derive(Args, Clone, Debug)]
pub struct AccountsArgs {
    /// Only this branch's accounts [default: every branch].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
}

/// Arguments of `trial-balance`.
#[derive(Args, Clone, Debug)]
pub struct TrialBalanceArgs {
    /// The branch [default: the institution, every branch added up].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    #[command(flatten)]
    pub as_of: AsOfArgs,
}

/// Arguments of `balance-sheet`.
#[derive(Args, Clone, Debug)]
pub struct BalanceSheetArgs {
    /// The branch [default: the institution].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// End of this date, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
    /// The date beside it [default: a year earlier].
    #[arg(long, value_name = "DATE")]
    pub previous_date: Option<String>,
}

/// Arguments of `income-statement`.
#[derive(Args, Clone, Debug)]
pub struct IncomeStatementArgs {
    /// The branch [default: the institution].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// First day, YYYY-MM-DD [default: 1 January of --to's year].
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
}

/// Arguments of `statement`.
#[derive(Args, Clone, Debug)]
pub struct StatementArgs {
    /// Account, e.g. savings:TB-0001/C1, loan:TB-0001/L1, cash:TB.
    pub account: String,
    /// First day, YYYY-MM-DD [default: the first movement's date].
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Also write a printable HTML page of it (the member's passbook) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Language of the HTML page.
    #[arg(long, value_enum, default_value = "vi")]
    pub lang: Language,
}

async fn client(server: &str) -> anyhow::Result<BooksServiceClient<super::connect::Conn>> {
    Ok(BooksServiceClient::new(channel(server).await?))
}

/// Runs a books command.
pub async fn run(server: &str, command: BooksCommand) -> anyhow::Result<Report> {
    match command {
        BooksCommand::Accounts(args) => accounts(server, args).await,
        BooksCommand::TrialBalance(args) => trial_balance(server, args).await,
        BooksCommand::BalanceSheet(args) => balance_sheet(server, args).await,
        BooksCommand::IncomeStatement(args) => income_statement(server, args).await,
        BooksCommand::Statement(args) => statement(server, args).await,
        BooksCommand::Export(args) => export::export(server, args).await,
    }
}

async fn accounts(server: &str, args: AccountsArgs) -> anyhow::Result<Report> {
    let mut client = client(server).await?;
    let mut accounts = Vec::new();
    let mut token = String::new();
    let sequence = loop {
        let page = client
            .list_accounts(pb::ListAccountsRequest {
                branch_id: args.branch.clone().unwrap_or_default(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(read_error)?
            .into_inner();
        accounts.extend(page.accounts);
        token = page.next_page_token;
        if token.is_empty() {
            break page.as_of_sequence;
        }
    };
    let mut rows = table(
        &["account", "branch", "kind", "GL code", "GL name", "balance"],
        &[5],
    );
    for a in &accounts {
        rows.add_row(vec![
            a.account.clone(),
            a.branch_id.clone(),
            enum_name(a.kind().as_str_name()),
            a.gl_code.clone(),
            a.gl_name.clone(),
            amount(a.balance.as_ref()),
        ]);
    }
    let text = section("Accounts", &rows, "none") + &format!("\nas of entry {sequence}\n");
    let json = json!({
        "accounts": accounts.iter().map(|a| json!({
            "account": a.account,
            "branch_id": a.branch_id,
            "kind": enum_name(a.kind().as_str_name()),
            "line": a.line,
            "gl_code": a.gl_code,
            "gl_name": a.gl_name,
            "balance": money_json(a.balance.as_ref()),
        })).collect::<Vec<_>>(),
        "as_of_sequence": sequence,
    });
    Ok(Report { text, json })
}

async fn trial_balance(server: &str, args: TrialBalanceArgs) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: args.branch.clone().unwrap_or_default(),
            as_of: args.as_of.to_pb(),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let mut rows = table(
        &[
            "GL code",
            "account",
            "debits",
            "credits",
            "debit balance",
            "credit balance",
        ],
        &[2, 3, 4, 5],
    );
    for row in &r.rows {
        rows.add_row(vec![
            row.gl_code.clone(),
            row.gl_name.clone(),
            amount(row.debits.as_ref()),
            amount(row.credits.as_ref()),
            amount(row.debit_balance.as_ref()),
            amount(row.credit_balance.as_ref()),
        ]);
    }
    rows.add_row(vec![
        "Total".to_owned(),
        String::new(),
        amount(r.total_debits.as_ref()),
        amount(r.total_credits.as_ref()),
        amount(r.total_debit_balance.as_ref()),
        amount(r.total_credit_balance.as_ref()),
    ]);
    let whose = if r.branch_id.is_empty() {
        "the institution".to_owned()
    } else {
        format!("branch {}", r.branch_id)
    };
    let when = if r.as_of_date.is_empty() {
        format!("as of entry {}", r.as_of_sequence)
    } else {
        format!("end of {} (as of entry {})", r.as_of_date, r.as_of_sequence)
    };
    let text = section(
        &format!("Trial balance of {whose}, {when}"),
        &rows,
        "no lines",
    );
    let json = json!({
        "branch_id": r.branch_id,
        "as_of_date": r.as_of_date,
        "as_of_sequence": r.as_of_sequence,
        "rows": r.rows.iter().map(|row| json!({
            "gl_code": row.gl_code,
            "gl_name": row.gl_name,
            "line": row.line,
            "kind": enum_name(row.kind().as_str_name()),
            "debits": money_json(row.debits.as_ref()),
            "credits": money_json(row.credits.as_ref()),
            "debit_balance": money_json(row.debit_balance.as_ref()),
            "credit_balance": money_json(row.credit_balance.as_ref()),
        })).collect::<Vec<_>>(),
        "total_debits": money_json(r.total_debits.as_ref()),
        "total_credits": money_json(r.total_credits.as_ref()),
        "total_debit_balance": money_json(r.total_debit_balance.as_ref()),
        "total_credit_balance": money_json(r.total_credit_balance.as_ref()),
    });
    Ok(Report { text, json })
}

/// Statement lines as a table with the previous figure beside each.
fn lines_table(title: &str, lines: &[pb::StatementLine], now: &str, before: &str) -> String {
    let mut rows = table(&["GL code", "line", now, before], &[2, 3]);
    for line in lines {
        rows.add_row(vec![
            line.gl_code.clone(),
            line.gl_name.clone(),
            amount(line.amount.as_ref()),
            amount(line.previous_amount.as_ref()),
        ]);
    }
    section(title, &rows, "none")
}

fn lines_json(lines: &[pb::StatementLine]) -> Value {
    Value::Array(lines.iter().map(line_json).collect())
}

fn line_json(line: &pb::StatementLine) -> Value {
    json!({
        "gl_code": line.gl_code,
        "gl_name": line.gl_name,
        "line": line.line,
        "amount": money_json(line.amount.as_ref()),
        "previous_amount": money_json(line.previous_amount.as_ref()),
    })
}

fn total_row(line: Option<&pb::StatementLine>) -> (String, String) {
    line.map_or_else(Default::default, |l| {
        (money(l.amount.as_ref()), money(l.previous_amount.as_ref()))
    })
}

async fn balance_sheet(server: &str, args: BalanceSheetArgs) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: args.branch.clone().unwrap_or_default(),
            date: args.date.clone().unwrap_or_default(),
            previous_date: args.previous_date.clone().unwrap_or_default(),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let (assets, assets_before) = total_row(r.total_assets.as_ref());
    let (other, other_before) = total_row(r.total_liabilities_and_equity.as_ref());
    let mut text = lines_table("Assets", &r.assets, &r.date, &r.previous_date);
    text += &lines_table("Liabilities", &r.liabilities, &r.date, &r.previous_date);
    text += &lines_table("Equity", &r.equity, &r.date, &r.previous_date);
    text += "\n";
    text += &fields(&[
        (
            "total assets",
            format!("{assets} ({assets_before} on {})", r.previous_date),
        ),
        (
            "total liabilities and equity",
            format!("{other} ({other_before} on {})", r.previous_date),
        ),
        ("as of entry", r.as_of_sequence.to_string()),
    ]);
    let json = json!({
        "branch_id": r.branch_id,
        "date": r.date,
        "previous_date": r.previous_date,
        "assets": lines_json(&r.assets),
        "liabilities": lines_json(&r.liabilities),
        "equity": lines_json(&r.equity),
        "total_assets": r.total_assets.as_ref().map(line_json),
        "total_liabilities_and_equity": r.total_liabilities_and_equity.as_ref().map(line_json),
        "as_of_sequence": r.as_of_sequence,
    });
    Ok(Report { text, json })
}

async fn income_statement(server: &str, args: IncomeStatementArgs) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .get_income_statement(pb::GetIncomeStatementRequest {
            branch_id: args.branch.clone().unwrap_or_default(),
            from: args.from.clone().unwrap_or_default(),
            to: args.to.clone().unwrap_or_default(),
            previous_from: String::new(),
            previous_to: String::new(),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let now = format!("{} to {}", r.from, r.to);
    let before = format!("{} to {}", r.previous_from, r.previous_to);
    let (result, result_before) = total_row(r.result.as_ref());
    let mut text = lines_table("Income", &r.income, &now, &before);
    text += &lines_table("Expenses", &r.expenses, &now, &before);
    text += "\n";
    text += &fields(&[
        ("result", format!("{result} ({result_before} in {before})")),
        ("as of entry", r.as_of_sequence.to_string()),
    ]);
    let json = json!({
        "branch_id": r.branch_id,
        "from": r.from,
        "to": r.to,
        "previous_from": r.previous_from,
        "previous_to": r.previous_to,
        "income": lines_json(&r.income),
        "expenses": lines_json(&r.expenses),
        "result": r.result.as_ref().map(line_json),
        "as_of_sequence": r.as_of_sequence,
    });
    Ok(Report { text, json })
}

async fn statement(server: &str, args: StatementArgs) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .get_account_statement(pb::GetAccountStatementRequest {
            account: args.account.clone(),
            from: args.from.clone().unwrap_or_default(),
            to: args.to.clone().unwrap_or_default(),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    if let Some(path) = &args.html {
        std::fs::write(path, passbook::render(&r, args.lang))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut rows = table(
        &[
            "date",
            "entry",
            "what",
            "debit",
            "credit",
            "balance",
            "reversed by",
        ],
        &[1, 3, 4, 5],
    );
    for m in &r.movements {
        rows.add_row(vec![
            m.date.clone(),
            m.sequence.to_string(),
            m.command.clone(),
            amount(m.debit.as_ref()),
            amount(m.credit.as_ref()),
            amount(m.balance.as_ref()),
            if m.reversed_by == 0 {
                String::new()
            } else {
                m.reversed_by.to_string()
            },
        ]);
    }
    let mut text = fields(&[
        ("account", r.account.clone()),
        ("branch", r.branch_id.clone()),
        ("period", format!("{} to {}", r.from, r.to)),
        ("opening balance", money(r.opening_balance.as_ref())),
    ]);
    text += &section("Movements", &rows, "none");
    text += "\n";
    text += &fields(&[
        ("closing balance", money(r.closing_balance.as_ref())),
        ("as of entry", r.as_of_sequence.to_string()),
    ]);
    if let Some(path) = &args.html {
        text += &format!("\nprintable passbook written to {}\n", path.display());
    }
    let json = json!({
        "account": r.account,
        "kind": enum_name(r.kind().as_str_name()),
        "branch_id": r.branch_id,
        "from": r.from,
        "to": r.to,
        "opening_balance": money_json(r.opening_balance.as_ref()),
        "movements": r.movements.iter().map(|m| json!({
            "sequence": m.sequence,
            "date": m.date,
            "command": m.command,
            "request_id": m.request_id,
            "debit": money_json(m.debit.as_ref()),
            "credit": money_json(m.credit.as_ref()),
            "balance": money_json(m.balance.as_ref()),
            "reversed_by": m.reversed_by,
        })).collect::<Vec<_>>(),
        "closing_balance": money_json(r.closing_balance.as_ref()),
        "as_of_sequence": r.as_of_sequence,
    });
    Ok(Report { text, json })
}
