//! `BooksService`: the chart of accounts, the trial balance, the balance
//! sheet, the income statement and an account's statement, from the general
//! ledger the state keeps (`domain::books`), with the institution's
//! general-ledger codes (`LedgerConfig::chart`); and exports of the books,
//! streamed (`export`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::domain::access::Action;
use crate::domain::account::AccountId;
use crate::domain::books::{
    AsOf, Balance, BalanceSheet, Chart, IncomeStatement, Line, Movement, TrialBalance,
};
use crate::domain::ids::BranchId;
use crate::domain::money::Currency;
use crate::domain::state::LedgerState;
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::books_service_server::BooksService;

use super::access::{self, Caller};
use super::audit::{may_read, read_failed, refuse};
use super::convert::{self, kind_out, money_out};
use super::pages::{self, List, Page};

mod export;

use export::EXPORTS_AT_ONCE_MAX;

/// Accounts a page of `ListAccounts` looks at, at most: those of other
/// branches passed over count too, and closed loans' accounts are read
/// back from the state cache. A page ends there (with a token) even when
/// it holds fewer accounts than asked.
pub const ACCOUNTS_PER_PAGE_MAX: usize = 10_000;

/// Accounts taken at a time while a page of `ListAccounts` is made.
const ACCOUNTS_PER_STEP: usize = 256;

/// The books service over a running ledger.
pub struct BooksApi {
    ledger: Arc<Ledger>,
    /// Turns for exports: at most [`EXPORTS_AT_ONCE_MAX`] run at once.
    exports: Arc<tokio::sync::Semaphore>,
}

impl BooksApi {
    /// Serves the books of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> BooksApi {
        BooksApi {
            ledger,
            exports: Arc::new(tokio::sync::Semaphore::new(EXPORTS_AT_ONCE_MAX)),
        }
    }

    /// Runs `read` on the read side, off the runtime's workers.
    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&LedgerState) -> Result<R, DomainError> + Send + 'static,
    ) -> Result<R, Status> {
        self.ledger
            .read_off_runtime(move |ledger| ledger.read(read))
            .await
            .map_err(read_failed)?
            .map_err(refuse)
    }
}

/// The accounts of a step of a `ListAccounts` page (at most
/// [`ACCOUNTS_PER_STEP`] after `after`), each with its line of the chart
/// when it is `branch`'s (every branch's when `None`); and the sequence
/// they are as of.
type AccountsStep = (Vec<(AccountId, Option<pb::ChartAccount>)>, u64);

fn list_accounts_step(
    state: &LedgerState,
    chart: &crate::domain::books::Chart,
    branch: Option<&BranchId>,
    after: Option<&AccountId>,
) -> Result<AccountsStep, DomainError> {
    let mut step = Vec::new();
    for (account, book) in state.accounts_listed(after, ACCOUNTS_PER_STEP)? {
        if branch.is_some_and(|b| *b != book.branch) {
            step.push((account, None));
            continue;
        }
        let currency = state.books_currency(Some(&book.branch))?;
        let gl = chart.account(&book.line);
        let item = pb::ChartAccount {
            account: account.to_string(),
            branch_id: book.branch.to_string(),
            kind: kind_out(account.kind()) as i32,
            line: book.line.key(),
            gl_code: gl.code,
            gl_name: gl.name,
            balance: Some(money_out(
                book.history.latest().on_normal_side(account.kind()),
                currency,
            )),
        };
        step.push((account, Some(item)));
    }
    Ok((step, state.last_sequence()))
}

/// The branch named in `field`; empty names the institution.
fn branch_in(field: &str, text: &str) -> Result<Option<BranchId>, DomainError> {
    (!text.is_empty())
        .then(|| BranchId::parse(field, text))
        .transpose()
}

/// The caller may read `branch`'s books (the institution's when `None`),
/// and the books exist; their currency.
fn books_of(
    caller: &Caller,
    state: &LedgerState,
    branch: Option<&BranchId>,
) -> Result<Currency, DomainError> {
    may_read(caller, branch)?;
    state.books_currency(branch)
}

/// The same day `months` earlier (the last of the month when it has fewer days).
fn months_before(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(months)).unwrap_or(date)
}

/// A statement line with the previous figure beside it.
fn statement_line(
    chart: &Chart,
    line: Option<&Line>,
    amounts: (Decimal, Decimal),
    currency: Currency,
) -> pb::StatementLine {
    let (gl_code, gl_name, key) = match line {
        Some(line) => {
            let account = chart.account(line);
            (account.code, account.name, line.key())
        }
        None => (
            String::new(),
            "Result not yet carried into retained earnings".to_owned(),
            "result".to_owned(),
        ),
    };
    pb::StatementLine {
        gl_code,
        gl_name,
        line: key,
        amount: Some(money_out(amounts.0, currency)),
        previous_amount: Some(money_out(amounts.1, currency)),
    }
}

/// Lines of two periods side by side, in the order of the chart's codes.
fn side_by_side(
    chart: &Chart,
    now: &[(Line, Decimal)],
    before: &[(Line, Decimal)],
    currency: Currency,
) -> Vec<pb::StatementLine> {
    let mut lines: BTreeMap<Line, (Decimal, Decimal)> = BTreeMap::new();
    for (line, amount) in now {
        lines.entry(line.clone()).or_default().0 = *amount;
    }
    for (line, amount) in before {
        lines.entry(line.clone()).or_default().1 = *amount;
    }
    let mut out: Vec<pb::StatementLine> = lines
        .iter()
        .map(|(line, amounts)| statement_line(chart, Some(line), *amounts, currency))
        .collect();
    out.sort_by(|a, b| a.gl_code.cmp(&b.gl_code));
    out
}

fn total(name: &str, amounts: (Decimal, Decimal), currency: Currency) -> pb::StatementLine {
    pb::StatementLine {
        gl_code: String::new(),
        gl_name: name.to_owned(),
        line: "total".to_owned(),
        amount: Some(money_out(amounts.0, currency)),
        previous_amount: Some(money_out(amounts.1, currency)),
    }
}

/// A movement on the account's normal side.
fn signed(kind: crate::domain::account::AccountKind, posted: Balance) -> Decimal {
    posted.on_normal_side(kind)
}

/// The trial balance as the client reads it: every line with its GL code, in
/// code order, and the totals.
fn trial_balance_out(
    chart: &Chart,
    branch: Option<&BranchId>,
    trial: &TrialBalance,
    currency: Currency,
    as_of: AsOf,
    sequence: u64,
) -> pb::GetTrialBalanceResponse {
    let mut rows: Vec<pb::TrialBalanceRow> = trial
        .rows
        .iter()
        .map(|(line, balance)| {
            let gl = chart.account(line);
            let net = balance.debits - balance.credits;
            pb::TrialBalanceRow {
                gl_code: gl.code,
                gl_name: gl.name,
                line: line.key(),
                kind: kind_out(line.kind()) as i32,
                debits: Some(money_out(balance.debits, currency)),
                credits: Some(money_out(balance.credits, currency)),
                debit_balance: Some(money_out(
                    if net > Decimal::ZERO {
                        net
                    } else {
                        Decimal::ZERO
                    },
                    currency,
                )),
                credit_balance: Some(money_out(
                    if net < Decimal::ZERO {
                        -net
                    } else {
                        Decimal::ZERO
                    },
                    currency,
                )),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.gl_code.cmp(&b.gl_code));
    let net = |(_, balance): &(Line, Balance)| balance.debits - balance.credits;
    let debit_balance: Decimal = trial
        .rows
        .iter()
        .map(net)
        .filter(|n| *n > Decimal::ZERO)
        .sum();
    // Credits less debits of the credit-balance lines: never a "-0".
    let credit_balance: Decimal = trial
        .rows
        .iter()
        .map(net)
        .filter(|n| *n < Decimal::ZERO)
        .map(|n| -n)
        .sum();
    pb::GetTrialBalanceResponse {
        branch_id: branch.map(|b| b.to_string()).unwrap_or_default(),
        rows,
        total_debits: Some(money_out(trial.debits, currency)),
        total_credits: Some(money_out(trial.credits, currency)),
        total_debit_balance: Some(money_out(debit_balance, currency)),
        total_credit_balance: Some(money_out(credit_balance, currency)),
        as_of_date: match as_of {
            AsOf::Date(date) => date.to_string(),
            _ => String::new(),
        },
        as_of_sequence: sequence,
    }
}

/// The balance sheet at `sheet`'s date beside `before`'s, as the client reads it.
fn balance_sheet_out(
    chart: &Chart,
    branch: Option<&BranchId>,
    (sheet, before): (&BalanceSheet, &BalanceSheet),
    currency: Currency,
    sequence: u64,
) -> pb::GetBalanceSheetResponse {
    let mut equity = side_by_side(chart, &sheet.equity, &before.equity, currency);
    equity.push(statement_line(
        chart,
        None,
        (sheet.result, before.result),
        currency,
    ));
    pb::GetBalanceSheetResponse {
        branch_id: branch.map(|b| b.to_string()).unwrap_or_default(),
        date: sheet.date.to_string(),
        previous_date: before.date.to_string(),
        assets: side_by_side(chart, &sheet.assets, &before.assets, currency),
        liabilities: side_by_side(chart, &sheet.liabilities, &before.liabilities, currency),
        equity,
        total_assets: Some(total(
            "Total assets",
            (sheet.total_assets(), before.total_assets()),
            currency,
        )),
        total_liabilities_and_equity: Some(total(
            "Total liabilities and equity",
            (
                sheet.total_liabilities() + sheet.total_equity(),
                before.total_liabilities() + before.total_equity(),
            ),
            currency,
        )),
        as_of_sequence: sequence,
    }
}

/// The income statement of `statement`'s period beside `before`'s, as the
/// client reads it.
fn income_statement_out(
    chart: &Chart,
    branch: Option<&BranchId>,
    (statement, before): (&IncomeStatement, &IncomeStatement),
    currency: Currency,
    sequence: u64,
) -> pb::GetIncomeStatementResponse {
    pb::GetIncomeStatementResponse {
        branch_id: branch.map(|b| b.to_string()).unwrap_or_default(),
        from: statement.from.to_string(),
        to: statement.to.to_string(),
        previous_from: before.from.to_string(),
        previous_to: before.to.to_string(),
        income: side_by_side(chart, &statement.income, &before.income, currency),
        expenses: side_by_side(chart, &statement.expenses, &before.expenses, currency),
        result: Some(total(
            "Result (income less expenses)",
            (statement.result, before.result),
            currency,
        )),
        as_of_sequence: sequence,
    }
}

/// The period of an income statement ending `to`: from `from`, or from 1
/// January of to's year; refused when it starts after it ends.
fn statement_period(
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), DomainError> {
    let from = from.unwrap_or_else(|| NaiveDate::from_ymd_opt(to.year(), 1, 1).unwrap_or(to));
    if from > to {
        return Err(DomainError::invalid(
            "from",
            format!("{from} is after to ({to})"),
        ));
    }
    Ok((from, to))
}

#[tonic::async_trait]
impl BooksService for BooksApi {
    type ExportBooksStream = export::ExportStream;

    async fn export_books(
        &self,
        request: Request<pb::ExportBooksRequest>,
    ) -> Result<Response<Self::ExportBooksStream>, Status> {
        access::read_subject(&request, export::subject(request.get_ref()));
        let caller = access::caller(&request)?;
        let asked = export::ExportRequest::parse(request.get_ref()).map_err(refuse)?;
        if asked.kind == export::Kind::Journal {
            caller.authorize(Action::ReadJournal, None)?;
        }
        let turn = self.exports.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{EXPORTS_AT_ONCE_MAX} exports are running on this server; try again when one ends"
            ))
        })?;
        let plan = self
            .ledger
            .read_off_runtime(move |ledger| export::plan(ledger, &caller, asked))
            .await
            .map_err(read_failed)??;
        Ok(Response::new(export::start(
            self.ledger.clone(),
            plan,
            turn,
        )))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        access::read_subject(
            &request,
            format!("accounts:{}", request.get_ref().branch_id),
        );
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = branch_in("branch_id", &r.branch_id).map_err(refuse)?;
        let page_size = pages::page_size(r.page_size).map_err(refuse)?;
        let after = pages::key_after(List::Accounts, &r.branch_id, &r.page_token)
            .map_err(refuse)?
            .map(|key| AccountId::parse("page_token", &key))
            .transpose()
            .map_err(refuse)?;
        let chart = self.ledger.chart().clone();
        let filters = r.branch_id.clone();
        let (accounts, last, sequence) = self
            .ledger
            .read_off_runtime(move |ledger| {
                ledger.read(|state| books_of(&caller, state, branch.as_ref()))?;
                let mut page = Page::new(page_size);
                // The last account looked at: the next page's start.
                let mut last = after;
                let mut more = false;
                let mut looked_at = 0;
                let mut sequence;
                // A step of accounts a short hold of the read lock: closed
                // loans' accounts are read back from the state cache.
                'steps: loop {
                    let (step, at) = ledger.read(|state| {
                        list_accounts_step(state, &chart, branch.as_ref(), last.as_ref())
                    })?;
                    sequence = at;
                    if step.is_empty() {
                        break;
                    }
                    for (account, item) in step {
                        // A page's work stays bounded.
                        if looked_at >= ACCOUNTS_PER_PAGE_MAX || page.is_full() && item.is_some() {
                            more = true;
                            break 'steps;
                        }
                        looked_at += 1;
                        if let Some(item) = item
                            && page.push(item).is_err()
                        {
                            more = true;
                            break 'steps;
                        }
                        last = Some(account);
                    }
                }
                Ok::<_, DomainError>((
                    page.into_items(),
                    last.filter(|_| more).map(|last| last.to_string()),
                    sequence,
                ))
            })
            .await
            .map_err(read_failed)?
            .map_err(refuse)?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts,
            next_page_token: last
                .map(|last| pages::next_page_token(List::Accounts, &filters, &last))
                .unwrap_or_default(),
            as_of_sequence: sequence,
        }))
    }

    async fn get_trial_balance(
        &self,
        request: Request<pb::GetTrialBalanceRequest>,
    ) -> Result<Response<pb::GetTrialBalanceResponse>, Status> {
        access::read_subject(
            &request,
            format!("trial-balance:{}", request.get_ref().branch_id),
        );
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = branch_in("branch_id", &r.branch_id).map_err(refuse)?;
        let as_of = convert::as_of("as_of", r.as_of).map_err(refuse)?;
        let read_branch = branch.clone();
        let (currency, trial, sequence) = self
            .read(move |state| {
                let currency = books_of(&caller, state, read_branch.as_ref())?;
                state.check_as_of("as_of", as_of)?;
                Ok((
                    currency,
                    state.books().trial_balance(read_branch.as_ref(), as_of),
                    state.reflects(as_of),
                ))
            })
            .await?;
        Ok(Response::new(trial_balance_out(
            self.ledger.chart(),
            branch.as_ref(),
            &trial,
            currency,
            as_of,
            sequence,
        )))
    }

    async fn get_balance_sheet(
        &self,
        request: Request<pb::GetBalanceSheetRequest>,
    ) -> Result<Response<pb::GetBalanceSheetResponse>, Status> {
        access::read_subject(
            &request,
            format!("balance-sheet:{}", request.get_ref().branch_id),
        );
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = branch_in("branch_id", &r.branch_id).map_err(refuse)?;
        let date = convert::optional_date("date", &r.date).map_err(refuse)?;
        let previous = convert::optional_date("previous_date", &r.previous_date).map_err(refuse)?;
        let now = self.ledger.now();
        let read_branch = branch.clone();
        let (currency, sheet, before, sequence) = self
            .read(move |state| {
                let currency = books_of(&caller, state, read_branch.as_ref())?;
                let date = date.unwrap_or_else(|| state.today_for(read_branch.as_ref(), now));
                let previous = previous.unwrap_or_else(|| months_before(date, 12));
                let books = state.books();
                Ok((
                    currency,
                    books.balance_sheet(read_branch.as_ref(), date),
                    books.balance_sheet(read_branch.as_ref(), previous),
                    state.last_sequence(),
                ))
            })
            .await?;
        Ok(Response::new(balance_sheet_out(
            self.ledger.chart(),
            branch.as_ref(),
            (&sheet, &before),
            currency,
            sequence,
        )))
    }

    async fn get_income_statement(
        &self,
        request: Request<pb::GetIncomeStatementRequest>,
    ) -> Result<Response<pb::GetIncomeStatementResponse>, Status> {
        access::read_subject(
            &request,
            format!("income-statement:{}", request.get_ref().branch_id),
        );
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = branch_in("branch_id", &r.branch_id).map_err(refuse)?;
        let from = convert::optional_date("from", &r.from).map_err(refuse)?;
        let to = convert::optional_date("to", &r.to).map_err(refuse)?;
        let previous_from =
            convert::optional_date("previous_from", &r.previous_from).map_err(refuse)?;
        let previous_to = convert::optional_date("previous_to", &r.previous_to).map_err(refuse)?;
        let now = self.ledger.now();
        let read_branch = branch.clone();
        let (currency, statement, before, sequence) = self
            .read(move |state| {
                let currency = books_of(&caller, state, read_branch.as_ref())?;
                let to = to.unwrap_or_else(|| state.today_for(read_branch.as_ref(), now));
                let (from, to) = statement_period(from, to)?;
                let previous_from = previous_from.unwrap_or_else(|| months_before(from, 12));
                let previous_to = previous_to.unwrap_or_else(|| months_before(to, 12));
                if previous_from > previous_to {
                    return Err(DomainError::invalid(
                        "previous_from",
                        format!("{previous_from} is after previous_to ({previous_to})"),
                    ));
                }
                let books = state.books();
                Ok((
                    currency,
                    books.income_statement(read_branch.as_ref(), from, to),
                    books.income_statement(read_branch.as_ref(), previous_from, previous_to),
                    state.last_sequence(),
                ))
            })
            .await?;
        Ok(Response::new(income_statement_out(
            self.ledger.chart(),
            branch.as_ref(),
            (&statement, &before),
            currency,
            sequence,
        )))
    }

    async fn get_account_statement(
        &self,
        request: Request<pb::GetAccountStatementRequest>,
    ) -> Result<Response<pb::GetAccountStatementResponse>, Status> {
        access::read_subject(&request, format!("statement:{}", request.get_ref().account));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let account = AccountId::parse("account", &r.account).map_err(refuse)?;
        let from = convert::optional_date("from", &r.from).map_err(refuse)?;
        let to = convert::optional_date("to", &r.to).map_err(refuse)?;
        let now = self.ledger.now();
        let kind = account.kind();
        let read_account = account.clone();
        let ledger = self.ledger.clone();
        let statement = self
            .ledger
            .read_off_runtime(move |_| {
                let read = ledger.read(|state| {
                    let branch = state.account_branch(&read_account)?;
                    may_read(&caller, Some(&branch))?;
                    let currency = state.account_currency(&read_account)?;
                    let to = to.unwrap_or_else(|| state.today_for(Some(&branch), now));
                    // From the account's first movement, if it is on or
                    // before `to`.
                    let from = match from {
                        Some(from) => from,
                        None => state
                            .account_first_date(&read_account)?
                            .filter(|first| *first <= to)
                            .unwrap_or(to),
                    };
                    if from > to {
                        return Err(DomainError::invalid(
                            "from",
                            format!("{from} is after to ({to})"),
                        ));
                    }
                    let opening = match from.pred_opt() {
                        Some(day) => state.account_as_of(&read_account, AsOf::Date(day))?,
                        None => Balance::default(),
                    };
                    let movements = state.account_movements(&read_account, from, to)?;
                    let reversed: Vec<u64> = movements
                        .iter()
                        .map(|m| state.reversed_by(m.sequence).unwrap_or(0))
                        .collect();
                    Ok((
                        branch,
                        currency,
                        from,
                        to,
                        opening,
                        movements,
                        reversed,
                        state.last_sequence(),
                    ))
                });
                let read = read?;
                // The entries' names and request ids, from the journal,
                // outside the state's lock.
                let mut entries = Vec::with_capacity(read.5.len());
                for movement in &read.5 {
                    let entry = ledger
                        .entries(movement.sequence, 1)
                        .map_err(|e| DomainError::invalid("account", e.to_string()))?;
                    entries.push(
                        entry
                            .into_iter()
                            .next()
                            .map(|e| (e.body.command.name(), e.body.request_id.to_string()))
                            .unwrap_or(("", String::new())),
                    );
                }
                Ok::<_, DomainError>((read, entries))
            })
            .await
            .map_err(read_failed)?
            .map_err(refuse)?;
        let ((branch, currency, from, to, opening, movements, reversed, sequence), entries) =
            statement;
        let mut balance = signed(kind, opening);
        let out: Vec<pb::StatementMovement> = movements
            .iter()
            .zip(entries)
            .zip(reversed)
            .map(
                |((movement, (command, request_id)), reversed_by): ((&Movement, _), u64)| {
                    balance += signed(kind, movement.posted);
                    pb::StatementMovement {
                        sequence: movement.sequence,
                        date: movement.date.to_string(),
                        command: command.to_owned(),
                        request_id,
                        debit: Some(money_out(movement.posted.debits, currency)),
                        credit: Some(money_out(movement.posted.credits, currency)),
                        balance: Some(money_out(balance, currency)),
                        reversed_by,
                    }
                },
            )
            .collect();
        Ok(Response::new(pb::GetAccountStatementResponse {
            account: account.to_string(),
            kind: kind_out(kind) as i32,
            branch_id: branch.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            opening_balance: Some(money_out(signed(kind, opening), currency)),
            movements: out,
            closing_balance: Some(money_out(balance, currency)),
            as_of_sequence: sequence,
        }))
    }
}
