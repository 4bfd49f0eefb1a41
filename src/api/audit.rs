//! `AuditService`: reads of durable state for auditors and managers.
//!
//! Every read runs off the async runtime's worker threads
//! ([`Ledger::read_off_runtime`]), so no worker waits on the read lock; the
//! lists are paged (`super::pages`) and a page of loans in arrears takes its
//! loans out of the read lock [`LOANS_PER_HOLD`] at a time and works out
//! their arrears after releasing it, so the publisher, which needs the lock
//! to apply a durable chunk (and the reads after a write wait for it),
//! never waits for a scan.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::domain::access::Action;
use crate::domain::account::AccountId;
use crate::domain::entry::EntryBody;
use crate::domain::entry::GENESIS_HASH;
use crate::domain::ids::{BranchId, LoanId, MemberId};
use crate::domain::money::Currency;
use crate::domain::state::{
    Arrears, InstallmentStatus, LedgerState, Loan, LoanSlot, LoanStatus, LoanView,
};
use crate::domain::totals::{Overflow, Period, PeriodFigures, minus, plus, sum, times};
use crate::ledger::{Holds, Ledger};
use crate::pb;
use crate::pb::audit_service_server::AuditService;

use super::access::{self, Caller};
use super::convert::{self, money_out, stored_figure};
use super::pages::{self, List, Page};
pub use super::pages::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use super::status;

/// Loans taken in one hold of the read lock while listing loans in arrears.
pub const LOANS_PER_HOLD: usize = 256;
/// Most loans looked at for one page of loans in arrears (ended loans' summaries
/// read from the state cache and passed over as not active then count too):
/// a page ends there (with a token) even when it holds fewer loans than
/// asked.
pub const LOANS_PER_PAGE_MAX: usize = 10_000;

/// The audit service over a running ledger.
pub struct AuditApi {
    ledger: Arc<Ledger>,
}

impl AuditApi {
    /// Serves reads of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> AuditApi {
        AuditApi { ledger }
    }

    /// Runs `read` on the durable state in one hold of the read lock, off
    /// the runtime's worker threads.
    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&LedgerState) -> R + Send + 'static,
    ) -> Result<R, Status> {
        self.ledger
            .read_off_runtime(move |ledger| ledger.read(read))
            .await
            .map_err(read_failed)
    }

    /// Runs `read` on the durable state with a reader of the journal's
    /// entries (for figures as they stood after an earlier entry); with
    /// the sequence number the answer reflects. A journal that cannot be
    /// read is an internal error, logged with its cause.
    async fn read_past<R: Send + 'static>(
        &self,
        read: impl FnOnce(
            &LedgerState,
            &mut dyn FnMut(u64) -> Result<EntryBody, String>,
        ) -> Result<R, DomainError>
        + Send
        + 'static,
    ) -> Result<R, Status> {
        self.ledger
            .read_off_runtime(move |ledger| {
                let mut failure = None;
                let result = {
                    let mut lookup = |sequence: u64| {
                        ledger
                            .entry_body(sequence)
                            .inspect_err(|error| failure = Some(error.clone()))
                    };
                    ledger.read(|state| read(state, &mut lookup))
                };
                match failure {
                    Some(cause) => {
                        tracing::error!(%cause, "reading the journal for a past figure failed");
                        Err(Status::internal(
                            "internal error reading the journal; the cause is in the server's log",
                        ))
                    }
                    None => result.map_err(refuse),
                }
            })
            .await
            .map_err(read_failed)?
    }

    /// A loan as of the date asked for (today when empty), as it stands now
    /// or, with `as_of_sequence`, as it stood right after that entry; with
    /// the sequence number it reflects.
    async fn loan_view(
        &self,
        caller: Caller,
        loan_id: &str,
        as_of_date: &str,
        as_of_sequence: u64,
    ) -> Result<(LoanView, u64), Status> {
        let id = LoanId::parse("loan_id", loan_id).map_err(refuse)?;
        let as_of = convert::optional_date("as_of_date", as_of_date).map_err(refuse)?;
        let now = self.ledger.now();
        self.read_past(move |state, lookup| {
            if let Some(loan) = state.loan(&id)? {
                may_read(&caller, Some(loan.branch()))?;
            }
            match as_of_sequence {
                0 => Ok((state.loan_view(&id, as_of, now)?, state.last_sequence())),
                sequence => Ok((state.loan_view_at(&id, sequence, as_of, lookup)?, sequence)),
            }
        })
        .await
    }
}

/// The date asked for, or today at `now` in the branch's zone (UTC+7 by
/// default, and for all branches).
fn as_of_in(
    state: &LedgerState,
    asked: Option<NaiveDate>,
    branch: Option<&BranchId>,
    now: chrono::DateTime<chrono::Utc>,
) -> NaiveDate {
    asked.unwrap_or_else(|| {
        let zone = branch
            .and_then(|b| state.branch(b))
            .map_or(crate::domain::state::TIME_ZONE_DEFAULT, |b| {
                b.time_zone.as_str()
            });
        crate::domain::state::today_in(zone, now)
    })
}

/// A branch as the access log names it (`branch:*` for every branch).
fn branch_subject(branch_id: &str) -> String {
    match branch_id {
        "" => "branch:*".to_owned(),
        id => format!("branch:{id}"),
    }
}

/// Refuses the read unless `caller` may read `branch`'s books (`None`:
/// every branch's).
pub(super) fn may_read(caller: &Caller, branch: Option<&BranchId>) -> Result<(), DomainError> {
    caller
        .access
        .authorize(&caller.principal, Action::ReadBranch, branch)
}

pub(super) fn refuse(error: DomainError) -> Status {
    status::from_domain(&error)
}

/// A read that did not complete: a bug, logged here with its cause; or a
/// read side an internal fault left behind, until a restart.
pub(super) fn read_failed(error: crate::ledger::ReadError) -> Status {
    tracing::error!(%error, "a read failed");
    match error {
        crate::ledger::ReadError::Behind => Status::unavailable(error.to_string()),
        crate::ledger::ReadError::Failed(_) => Status::internal(error.to_string()),
    }
}

fn loan_status(status: LoanStatus) -> pb::LoanStatus {
    match status {
        LoanStatus::Active => pb::LoanStatus::Active,
        LoanStatus::Closed => pb::LoanStatus::Closed,
        LoanStatus::Cancelled => pb::LoanStatus::Cancelled,
        LoanStatus::WrittenOff => pb::LoanStatus::WrittenOff,
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        access::read_subject(&request, format!("account:{}", request.get_ref().account));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let account = AccountId::parse("account", &r.account).map_err(refuse)?;
        let as_of = convert::as_of("as_of", r.as_of).map_err(refuse)?;
        let kind = account.kind();
        let read = account.clone();
        let (currency, balance, sequence) = self
            .read(move |state| {
                may_read(&caller, Some(&state.account_branch(&read)?))?;
                state.check_as_of("as_of", as_of)?;
                let currency = state.account_currency(&read)?;
                // Held, or read back for a closed loan's account memory
                // let go of.
                let balance = state.account_as_of(&read, as_of)?;
                Ok::<_, DomainError>((currency, balance, state.reflects(as_of)))
            })
            .await?
            .map_err(refuse)?;
        Ok(Response::new(pb::GetBalanceResponse {
            account: account.to_string(),
            kind: convert::kind_out(kind) as i32,
            balance: Some(money_out(balance.on_normal_side(kind), currency)),
            debits: Some(money_out(balance.debits, currency)),
            credits: Some(money_out(balance.credits, currency)),
            as_of_sequence: sequence,
        }))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        access::read_subject(&request, format!("member:{}", request.get_ref().member_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let id = MemberId::parse("member_id", &r.member_id).map_err(refuse)?;
        let now = self.ledger.now();
        let (view, reflects) = self
            .read_past(move |state, lookup| {
                if let Some(branch) = state.member_branch(&id) {
                    may_read(&caller, Some(branch))?;
                }
                match r.as_of_sequence {
                    0 => Ok((state.member_view(&id, now)?, state.last_sequence())),
                    sequence => Ok((state.member_view_at(&id, sequence, lookup)?, sequence)),
                }
            })
            .await?;
        let currency = view.currency;
        let member = view.member;
        Ok(Response::new(pb::GetMemberResponse {
            member_id: member.id.to_string(),
            full_name: member.full_name.to_string(),
            group_id: member.group.to_string(),
            center_id: member.center.to_string(),
            branch_id: member.branch.to_string(),
            joined_on: member.joined_on.to_string(),
            savings_accounts: view
                .savings
                .iter()
                .map(|s| pb::SavingsAccount {
                    account_id: s.account.id.to_string(),
                    kind: convert::savings_kind_out(s.account.kind) as i32,
                    opened_on: s.account.opened_on.to_string(),
                    balance: Some(money_out(s.balance, currency)),
                    required_minimum: Some(money_out(s.required_minimum, currency)),
                })
                .collect(),
            loans: view
                .loans
                .iter()
                .map(|loan| pb::LoanSummary {
                    loan_id: loan.id().to_string(),
                    status: loan_status(loan.status()) as i32,
                    disbursed_on: loan.disbursed_on().to_string(),
                    principal: Some(money_out(loan.principal(), currency)),
                    principal_outstanding: Some(money_out(loan.principal_outstanding(), currency)),
                })
                .collect(),
            as_of_sequence: reflects,
        }))
    }

    async fn get_loan(
        &self,
        request: Request<pb::GetLoanRequest>,
    ) -> Result<Response<pb::GetLoanResponse>, Status> {
        access::read_subject(&request, format!("loan:{}", request.get_ref().loan_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let (view, reflects) = self
            .loan_view(caller, &r.loan_id, &r.as_of_date, r.as_of_sequence)
            .await?;
        let loan = &view.loan;
        let currency = loan.currency;
        let mut balance = stored_figure(
            "balance_after",
            sum(loan.installments.iter().map(|i| i.due.principal)),
        )?;
        let schedule = loan
            .installments
            .iter()
            .zip(&view.statuses)
            .map(|(installment, status)| {
                let status = match status {
                    InstallmentStatus::Paid => pb::InstallmentStatus::Paid,
                    InstallmentStatus::NotDue => pb::InstallmentStatus::NotDue,
                    InstallmentStatus::Due => pb::InstallmentStatus::Due,
                    InstallmentStatus::Overdue => pb::InstallmentStatus::Overdue,
                };
                let paid = (
                    installment.principal_paid,
                    installment.interest_paid,
                    installment.fee_paid,
                );
                balance =
                    stored_figure("balance_after", minus(balance, installment.due.principal))?;
                let mut out = stored_figure(
                    "schedule",
                    convert::installment_out(&installment.due, paid, status, currency),
                )?;
                out.balance_after = Some(money_out(balance, currency));
                Ok(out)
            })
            .collect::<Result<_, Status>>()?;
        let interest_outstanding = if loan.status == LoanStatus::Cancelled {
            Decimal::ZERO
        } else {
            loan.interest_outstanding()
        };
        Ok(Response::new(pb::GetLoanResponse {
            loan_id: loan.id.to_string(),
            member_id: loan.member.to_string(),
            branch_id: loan.branch.to_string(),
            status: loan_status(loan.status) as i32,
            terms: Some(convert::loan_terms_out(&loan.terms, currency)),
            disbursed_on: loan.disbursed_on.to_string(),
            as_of_date: view.as_of.to_string(),
            principal_outstanding: Some(money_out(outstanding_unless_cancelled(loan), currency)),
            interest_outstanding: Some(money_out(interest_outstanding, currency)),
            principal_overdue: Some(money_out(view.arrears.principal_overdue, currency)),
            interest_overdue: Some(money_out(view.arrears.interest_overdue, currency)),
            schedule,
            product_id: loan
                .product
                .as_ref()
                .map(|(id, _)| id.to_string())
                .unwrap_or_default(),
            product_version: loan.product.as_ref().map_or(0, |(_, v)| *v),
            approved_principal: Some(money_out(loan.approved_principal, currency)),
            principal_disbursed: Some(money_out(loan.disbursed, currency)),
            fees_overdue: Some(money_out(view.arrears.fees_overdue, currency)),
            days_in_arrears: view.arrears.days_in_arrears(),
            in_arrears: view.arrears.in_arrears,
            payoff_amount: Some(money_out(view.payoff.total(), currency)),
            written_off: Some(money_out(loan.written_off, currency)),
            recovered: Some(money_out(loan.recovered, currency)),
            as_of_sequence: reflects,
        }))
    }

    async fn get_payoff_quote(
        &self,
        request: Request<pb::GetPayoffQuoteRequest>,
    ) -> Result<Response<pb::GetPayoffQuoteResponse>, Status> {
        access::read_subject(&request, format!("loan:{}", request.get_ref().loan_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let (view, _) = self.loan_view(caller, &r.loan_id, &r.as_of_date, 0).await?;
        let loan = &view.loan;
        let id = &loan.id;
        if loan.status != LoanStatus::Active {
            return Err(refuse(DomainError::precondition(
                "loan_id",
                format!("loan {id} is not active; there is nothing to pay off"),
            )));
        }
        if view.as_of < loan.last_repayment_on {
            return Err(refuse(DomainError::precondition(
                "as_of_date",
                format!(
                    "{} is before loan {id}'s last transaction on {}",
                    view.as_of, loan.last_repayment_on
                ),
            )));
        }
        let currency = loan.currency;
        let quote = &view.payoff;
        let scheduled = stored_figure(
            "interest_saved",
            sum([
                loan.principal_outstanding(),
                loan.interest_outstanding(),
                loan.fees_outstanding(),
            ]),
        )?;
        let fees = stored_figure("fees", plus(quote.due_fees, quote.fees_not_due))?;
        let interest_saved = stored_figure("interest_saved", minus(scheduled, quote.total()))?;
        Ok(Response::new(pb::GetPayoffQuoteResponse {
            loan_id: id.to_string(),
            as_of_date: view.as_of.to_string(),
            principal: Some(money_out(quote.principal(), currency)),
            interest_due: Some(money_out(quote.due_interest, currency)),
            interest_accrued: Some(money_out(quote.accrued_interest, currency)),
            fees: Some(money_out(fees, currency)),
            total: Some(money_out(quote.total(), currency)),
            interest_saved: Some(money_out(interest_saved, currency)),
        }))
    }

    async fn list_loans_in_arrears(
        &self,
        request: Request<pb::ListLoansInArrearsRequest>,
    ) -> Result<Response<pb::ListLoansInArrearsResponse>, Status> {
        access::read_subject(&request, branch_subject(&request.get_ref().branch_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = optional_branch(&r.branch_id)?;
        may_read(&caller, branch.as_ref()).map_err(refuse)?;
        let query = ArrearsQuery {
            branch,
            as_of: convert::optional_date("as_of_date", &r.as_of_date).map_err(refuse)?,
            now: self.ledger.now(),
            page_size: pages::page_size(r.page_size).map_err(refuse)?,
            page_token: r.page_token,
        };
        let started = std::time::Instant::now();
        let reply = self
            .ledger
            .read_off_runtime_holding(Holds::Briefly, move |ledger| query.page(ledger))
            .await
            .map_err(read_failed)?
            .map_err(refuse)?;
        // Paced: the page is answered no sooner than twice the time it took,
        // so a client looping the listing takes at most about half of one
        // core, and less when the writes keep the machine busy (the read
        // then takes longer). Writes' acknowledgements come first.
        tokio::time::sleep(started.elapsed()).await;
        Ok(Response::new(reply))
    }

    async fn get_portfolio_quality(
        &self,
        request: Request<pb::GetPortfolioQualityRequest>,
    ) -> Result<Response<pb::GetPortfolioQualityResponse>, Status> {
        access::read_subject(&request, branch_subject(&request.get_ref().branch_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = optional_branch(&r.branch_id)?;
        may_read(&caller, branch.as_ref()).map_err(refuse)?;
        let asked = convert::optional_date("as_of_date", &r.as_of_date).map_err(refuse)?;
        let period = match r.period {
            Some(range) => {
                let from = convert::date("period.from_date", &range.from_date).map_err(refuse)?;
                let to = convert::date("period.to_date", &range.to_date).map_err(refuse)?;
                if to < from {
                    return Err(refuse(DomainError::invalid(
                        "period.to_date",
                        format!("{to} is before from_date {from}"),
                    )));
                }
                Some((from, to))
            }
            None => None,
        };
        let now = self.ledger.now();
        let sequence = r.as_of_sequence;
        let (as_of, from, to, q, reflects) = self
            .read_past(move |state, lookup| {
                let (as_of, at) = match sequence {
                    0 => (as_of_in(state, asked, branch.as_ref(), now), None),
                    sequence => {
                        state.check_sequence("as_of_sequence", sequence)?;
                        let day = match asked {
                            Some(day) => day,
                            None => state.recorded_day(sequence, branch.as_ref(), lookup)?,
                        };
                        (day, Some(sequence))
                    }
                };
                let (from, to) = period.unwrap_or((
                    NaiveDate::from_ymd_opt(as_of.year(), 1, 1).unwrap_or(as_of),
                    as_of,
                ));
                state
                    .portfolio_quality_at(branch.as_ref(), as_of, from, to, at)
                    .map(|q| (as_of, from, to, q, at.unwrap_or(state.last_sequence())))
            })
            .await?;
        let c = q.currency;
        let percent = |ratio: Option<Decimal>, places: u32, none: Decimal| {
            let hundredfold = times(ratio.unwrap_or(none), Decimal::ONE_HUNDRED);
            let mut value = stored_figure("percent", hundredfold)?
                .round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven);
            value.rescale(places);
            Ok::<_, Status>(value.to_string())
        };
        let average = q
            .average_outstanding()
            .unwrap_or_default()
            .round_dp_with_strategy(c.decimal_places(), RoundingStrategy::MidpointNearestEven);
        Ok(Response::new(pb::GetPortfolioQualityResponse {
            branch_id: r.branch_id,
            as_of_date: as_of.to_string(),
            gross_portfolio: Some(money_out(q.gross_portfolio, c)),
            active_loans: q.active_loans,
            active_borrowers: q.active_borrowers,
            average_outstanding: Some(money_out(average, c)),
            loans_in_arrears: q.loans_in_arrears,
            par1_amount: Some(money_out(q.par1, c)),
            par1_percent: percent(q.ratio(q.par1), 4, Decimal::ZERO)?,
            par30_amount: Some(money_out(q.par30, c)),
            par30_percent: percent(q.ratio(q.par30), 4, Decimal::ZERO)?,
            par90_amount: Some(money_out(q.par90, c)),
            par90_percent: percent(q.ratio(q.par90), 4, Decimal::ZERO)?,
            period: Some(pb::DateRange {
                from_date: from.to_string(),
                to_date: to.to_string(),
            }),
            due_in_period: Some(money_out(q.due_in_period, c)),
            collected_on_time: Some(money_out(q.collected_on_time, c)),
            repayment_rate_percent: percent(q.repayment_rate(), 2, Decimal::ONE)?,
            written_off: Some(money_out(q.written_off, c)),
            recovered: Some(money_out(q.recovered, c)),
            as_of_sequence: reflects,
        }))
    }

    async fn get_branch_totals(
        &self,
        request: Request<pb::GetBranchTotalsRequest>,
    ) -> Result<Response<pb::GetBranchTotalsResponse>, Status> {
        access::read_subject(&request, branch_subject(&request.get_ref().branch_id));
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let branch = BranchId::parse("branch_id", &r.branch_id).map_err(refuse)?;
        may_read(&caller, Some(&branch)).map_err(refuse)?;
        let period = match r.period {
            Some(pb::get_branch_totals_request::Period::Year(year)) => {
                if !(1900..=9999).contains(&year) {
                    return Err(refuse(DomainError::invalid(
                        "year",
                        format!("{year} is outside 1900 to 9999"),
                    )));
                }
                Period::Year(year)
            }
            Some(pb::get_branch_totals_request::Period::Month(month)) => {
                Period::parse_month("month", &month).map_err(refuse)?
            }
            Some(pb::get_branch_totals_request::Period::Range(range)) => Period::Range {
                from: convert::date("range.from_date", &range.from_date).map_err(refuse)?,
                to: convert::date("range.to_date", &range.to_date).map_err(refuse)?,
            },
            None => {
                return Err(refuse(DomainError::invalid(
                    "period",
                    "is required: a year, a month or a range",
                )));
            }
        };
        let (from, to) = period.bounds().map_err(refuse)?;
        let (previous_from, previous_to) =
            period.previous().and_then(Period::bounds).map_err(refuse)?;
        let read = branch.clone();
        let sequence = r.as_of_sequence;
        let (currency, name, current, previous, by_product, reflects) = self
            .read(move |state| {
                let branch = read;
                let found = state.branch(&branch).ok_or_else(|| {
                    DomainError::not_found("branch_id", "branch", branch.as_str())
                })?;
                let at = match sequence {
                    0 => None,
                    sequence => {
                        state.check_sequence("as_of_sequence", sequence)?;
                        Some(sequence)
                    }
                };
                Ok::<_, DomainError>((
                    found.currency,
                    found.name.to_string(),
                    state.period_figures_at(&branch, from, to, at)?,
                    state.period_figures_at(&branch, previous_from, previous_to, at)?,
                    state.loans_by_product_at(&branch, from, to, at)?,
                    at.unwrap_or(state.last_sequence()),
                ))
            })
            .await?
            .map_err(refuse)?;
        let change = current
            .minus(&previous)
            .map_err(|overflow| refuse(overflow.into()))?;
        let (current, previous) = (
            period_out(&current, currency)?,
            period_out(&previous, currency)?,
        );
        let mut change = period_out(&change, currency)?;
        // Ratios change by the difference of the ratios, not the ratio of the differences.
        let average_change = minus(
            amount(&current.average_loan),
            amount(&previous.average_loan),
        );
        change.average_loan = Some(money_out(
            stored_figure("average_loan", average_change)?,
            currency,
        ));
        let percent = |t: &pb::PeriodTotals| {
            t.borrowers_with_savings_percent
                .parse::<Decimal>()
                .unwrap_or_default()
        };
        // Not normalised: the change keeps the percentages' two places.
        let percent_change = percent(&current)
            .checked_sub(percent(&previous))
            .ok_or(Overflow);
        change.borrowers_with_savings_percent =
            stored_figure("borrowers_with_savings_percent", percent_change)?.to_string();
        Ok(Response::new(pb::GetBranchTotalsResponse {
            branch_id: branch.to_string(),
            branch_name: name,
            as_of_sequence: reflects,
            current: Some(current),
            previous: Some(previous),
            change: Some(change),
            by_product: by_product
                .into_iter()
                .map(|p| pb::ProductTotals {
                    product_id: p.product.map(|id| id.to_string()).unwrap_or_default(),
                    name: p.name,
                    loans: p.loans,
                    amount: Some(money_out(p.amount, currency)),
                })
                .collect(),
        }))
    }

    async fn list_journal_entries(
        &self,
        request: Request<pb::ListJournalEntriesRequest>,
    ) -> Result<Response<pb::ListJournalEntriesResponse>, Status> {
        access::read_subject(
            &request,
            format!("journal:{}", request.get_ref().from_sequence.max(1)),
        );
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let r = request.into_inner();
        let page_size = pages::page_size(r.page_size).map_err(refuse)?;
        let from = r.from_sequence.max(1);
        let reply = self
            .ledger
            .read_off_runtime(move |ledger| journal_page(ledger, from, page_size))
            .await
            .map_err(read_failed)??;
        Ok(Response::new(reply))
    }

    async fn list_access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        access::caller(&request)?.authorize(Action::ReadAccess, None)?;
        access::read_subject(&request, "access-log");
        let r = request.into_inner();
        let page_size = pages::page_size(r.page_size).map_err(refuse)? as u64;
        let from = r.from_sequence.max(1);
        let records = self
            .ledger
            .read_off_runtime(|ledger| ledger.store().access_records())
            .await
            .map_err(read_failed)?
            .transpose()
            .map_err(|e| {
                tracing::error!(error = %e, "the access log does not check out");
                Status::internal(
                    "internal error reading the access log; the cause is in the server's log",
                )
            })?
            .unwrap_or_default();
        let page: Vec<pb::AccessRecord> = records
            .iter()
            .skip((from - 1) as usize)
            .take(page_size as usize)
            .map(|record| pb::AccessRecord {
                sequence: record.sequence,
                recorded_at: chrono::DateTime::<chrono::Utc>::from_timestamp_micros(
                    record.access.at_micros,
                )
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                .unwrap_or_default(),
                principal: record.access.principal.clone(),
                method: record.access.method.clone(),
                subject: record.access.subject.clone(),
                outcome: record.access.outcome.clone(),
                hash: hex::encode(record.hash),
            })
            .collect();
        let next = from + page.len() as u64;
        let next_sequence = if next <= records.len() as u64 {
            next
        } else {
            0
        };
        Ok(Response::new(pb::ListAccessLogResponse {
            records: page,
            next_sequence,
        }))
    }

    async fn get_ledger_info(
        &self,
        _request: Request<pb::GetLedgerInfoRequest>,
    ) -> Result<Response<pb::GetLedgerInfoResponse>, Status> {
        let (last_sequence, last_hash) = self
            .read(|state| (state.last_sequence(), state.last_hash()))
            .await?;
        Ok(Response::new(pb::GetLedgerInfoResponse {
            last_sequence,
            last_hash: hex::encode(last_hash),
        }))
    }
}

/// A page of the journal from `from`: at most `page_size` entries, within
/// the page byte bound; read from the store, only up to the entries the read
/// side holds.
fn journal_page(
    ledger: &Ledger,
    from: u64,
    page_size: usize,
) -> Result<pb::ListJournalEntriesResponse, Status> {
    let last = ledger.read(LedgerState::last_sequence);
    // The entry before the page gives the first entry's previous hash.
    let mut previous_hash = GENESIS_HASH;
    if from > 1 && from <= last {
        let before = ledger.entries(from - 1, 1).map_err(status::from_store)?;
        if let Some(entry) = before.first() {
            previous_hash = entry.hash;
        }
    }
    // Entries are read a few at a time and the page stops at its byte
    // bound, so a page of large entries reads little more than it returns.
    let mut page = Page::new(page_size);
    let mut next_sequence = 0;
    let mut sequence = from;
    'page: while sequence <= last && !page.is_full() {
        let want = JOURNAL_ENTRIES_PER_READ.min(page_size - page.len());
        let chunk = ledger.entries(sequence, want).map_err(status::from_store)?;
        if chunk.is_empty() {
            break;
        }
        let currencies: Vec<Currency> = ledger.read(|state| {
            chunk
                .iter()
                .map(|e| {
                    e.body
                        .branch
                        .as_ref()
                        .and_then(|b| state.branch(b))
                        .map(|b| b.currency)
                        .unwrap_or_else(|| convert::entry_currency(&e.body))
                })
                .collect()
        });
        for (entry, currency) in chunk.iter().zip(currencies) {
            if page
                .push(convert::journal_entry(entry, previous_hash, currency))
                .is_err()
            {
                next_sequence = entry.body.sequence;
                break 'page;
            }
            previous_hash = entry.hash;
            next_sequence = if entry.body.sequence < last {
                entry.body.sequence + 1
            } else {
                0
            };
        }
        sequence += chunk.len() as u64;
    }
    Ok(pb::ListJournalEntriesResponse {
        entries: page.into_items(),
        next_sequence,
    })
}

/// Entries read from the journal at a time for a page: with entries of up
/// to `ENTRY_BYTES_MAX`, a page reads at most this many past its byte bound.
const JOURNAL_ENTRIES_PER_READ: usize = 16;

/// A request for a page of loans in arrears, parsed.
struct ArrearsQuery {
    branch: Option<BranchId>,
    /// The date asked for; today in the branch's zone at `now` when none.
    as_of: Option<NaiveDate>,
    now: chrono::DateTime<chrono::Utc>,
    page_size: usize,
    page_token: String,
}

impl ArrearsQuery {
    /// The page: loans in id order from the one after the token's, until
    /// the page is full, [`LOANS_PER_PAGE_MAX`] were looked at, or the
    /// loans end. The loans are taken [`LOANS_PER_HOLD`] at a time in short
    /// holds of the read lock (shared handles of the loans memory holds;
    /// for a day before the latest any loan ended on, the summaries of
    /// those it let go of, read from the state cache in the hold) and
    /// looked at after it is released, so the publisher never waits for a
    /// page's arrears to be worked out, however slowly this read thread
    /// runs.
    fn page(self, ledger: &Ledger) -> Result<pb::ListLoansInArrearsResponse, DomainError> {
        let branch = self.branch.as_ref();
        let as_of = ledger.read(|state| {
            if let Some(branch) = branch
                && state.branch(branch).is_none()
            {
                return Err(DomainError::not_found(
                    "branch_id",
                    "branch",
                    branch.as_str(),
                ));
            }
            Ok(as_of_in(state, self.as_of, branch, self.now))
        })?;
        let filters = format!(
            "{}\n{as_of}",
            branch.map(BranchId::as_str).unwrap_or_default()
        );
        let after = pages::key_after(List::LoansInArrears, &filters, &self.page_token)?
            .map(|key| LoanId::parse("page_token", &key))
            .transpose()?;
        let mut page = Page::new(self.page_size);
        let mut looked_at = 0usize;
        // The last loan looked at; the next page starts after it.
        let mut last = after;
        // The last loan of the page when loans remain after it.
        let mut next: Option<LoanId> = None;
        'steps: loop {
            // The ended loans memory let go of are read from the state
            // cache only when one may have been active then.
            let taken = ledger
                .read(|state| state.loans_after(last.as_ref(), LOANS_PER_HOLD, Some(as_of)))?;
            if looked_at >= LOANS_PER_PAGE_MAX {
                next = last;
                break;
            }
            looked_at += taken.passed_over;
            for slot in &taken.loans {
                if page.is_full() || looked_at >= LOANS_PER_PAGE_MAX {
                    next = last;
                    break 'steps;
                }
                looked_at += 1;
                // A loan that had ended by then owes nothing then; one that
                // since closed is read back whole from the state cache.
                let candidate = branch.is_none_or(|b| slot.branch() == b) && slot.active_on(as_of);
                let loan = match (candidate, slot) {
                    (false, _) => None,
                    (true, LoanSlot::Whole(loan)) => Some(loan.clone()),
                    // Closed since: read back whole in a hold of its own,
                    // as the ledger holds it now (a record read in the lock
                    // is the loan's; one read after the lock was released
                    // could be of the loan reopened and closed again since).
                    // A loan never leaves the ledger: `None` is unreachable.
                    (true, LoanSlot::Ended(_)) => {
                        ledger.read(|state| state.whole_loan(slot.id()))?
                    }
                };
                if let Some(loan) = loan
                    && loan.may_be_in_arrears_on(as_of).unwrap_or(true)
                {
                    let arrears = loan.arrears_on(as_of).map_err(DomainError::from)?;
                    if arrears.in_arrears && page.push(arrears_out(&loan, &arrears)).is_err() {
                        next = last;
                        break 'steps;
                    }
                }
                last = Some(slot.id().clone());
            }
            match taken.next {
                // Every loan up to it was looked at (the ended ones not
                // active then were passed over).
                Some(after) => last = Some(after),
                None => break,
            }
        }
        Ok(pb::ListLoansInArrearsResponse {
            as_of_date: as_of.to_string(),
            loans: page.into_items(),
            next_page_token: next
                .map(|id| pages::next_page_token(List::LoansInArrears, &filters, id.as_str()))
                .unwrap_or_default(),
        })
    }
}

fn arrears_out(loan: &Loan, arrears: &Arrears) -> pb::LoanArrears {
    let currency = loan.currency;
    pb::LoanArrears {
        loan_id: loan.id.to_string(),
        member_id: loan.member.to_string(),
        principal_outstanding: Some(money_out(arrears.principal_outstanding, currency)),
        principal_overdue: Some(money_out(arrears.principal_overdue, currency)),
        interest_overdue: Some(money_out(arrears.interest_overdue, currency)),
        fees_overdue: Some(money_out(arrears.fees_overdue, currency)),
        days_in_arrears: arrears.days_in_arrears(),
    }
}

/// The amount of a money figure this module formatted itself.
fn amount(money: &Option<pb::Money>) -> Decimal {
    money
        .as_ref()
        .and_then(|m| m.amount.parse().ok())
        .unwrap_or_default()
}

fn outstanding_unless_cancelled(loan: &crate::domain::state::Loan) -> Decimal {
    if loan.status == LoanStatus::Cancelled {
        Decimal::ZERO
    } else {
        loan.principal_outstanding()
    }
}

fn period_out(figures: &PeriodFigures, currency: Currency) -> Result<pb::PeriodTotals, Status> {
    let repayments = figures
        .repayments_collected()
        .map_err(|overflow| refuse(overflow.into()))?;
    // No loans or no borrowers: the ratio is zero (checked_div gives None).
    let average = figures
        .amount_disbursed
        .checked_div(Decimal::from(figures.loans_disbursed))
        .unwrap_or_default()
        .round_dp_with_strategy(
            currency.decimal_places(),
            RoundingStrategy::MidpointNearestEven,
        );
    let with_savings = stored_figure(
        "borrowers_with_savings_percent",
        times(
            Decimal::from(figures.borrowers_with_savings),
            Decimal::ONE_HUNDRED,
        ),
    )?;
    let percent = with_savings
        .checked_div(Decimal::from(figures.borrowers))
        .unwrap_or_default()
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    let mut percent_text = percent;
    percent_text.rescale(2);
    Ok(pb::PeriodTotals {
        from_date: figures.from.map(|d| d.to_string()).unwrap_or_default(),
        to_date: figures.to.map(|d| d.to_string()).unwrap_or_default(),
        loans_disbursed: figures.loans_disbursed,
        amount_disbursed: Some(money_out(figures.amount_disbursed, currency)),
        average_loan: Some(money_out(average, currency)),
        principal_collected: Some(money_out(figures.principal_collected, currency)),
        interest_collected: Some(money_out(figures.interest_collected, currency)),
        savings_balance: Some(money_out(figures.savings_balance, currency)),
        borrowers: figures.borrowers,
        borrowers_with_savings: figures.borrowers_with_savings,
        borrowers_with_savings_percent: percent_text.to_string(),
        portfolio_outstanding: Some(money_out(figures.portfolio_outstanding, currency)),
        fees_collected: Some(money_out(figures.fees_collected, currency)),
        written_off: Some(money_out(figures.written_off, currency)),
        recovered: Some(money_out(figures.recovered, currency)),
        fees_withheld_at_disbursement: Some(money_out(figures.fees_withheld, currency)),
        repayments_collected: Some(money_out(repayments, currency)),
    })
}

/// A branch id, or none when empty (all branches).
fn optional_branch(text: &str) -> Result<Option<BranchId>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    BranchId::parse("branch_id", text).map(Some).map_err(refuse)
}
