//! `BranchService`: a branch's writes. Every write, unary or in a batch, goes
//! the same way: [`parse`] turns the request into a command, the ledger
//! decides it, and [`reply`] builds the answer from the durable entry.

use std::sync::Arc;

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::domain::command::{
    CollectionLine, Command, CommandBody, FundingSource, LoanSpec, Money,
};
use crate::domain::entry::{Entry, Outcome};
use crate::domain::ids::{
    BranchId, CenterId, GroupId, LoanId, MemberId, Name, PrincipalId, SavingsAccountId,
};
use crate::domain::product::FeeCollection;
use crate::domain::state::charged;
use crate::domain::state::{COMPULSORY_SAVINGS_PERCENT_DEFAULT, TIME_ZONE_DEFAULT};
use crate::domain::totals::{Overflow, minus, plus, sum};
use crate::ledger::{Ledger, SubmitError};
use crate::pb;
use crate::pb::batch_command::Command as Write;
use crate::pb::batch_result::Result as Reply;
use crate::pb::branch_service_server::BranchService;

use super::access;
use super::approvals;
use super::convert::{self, money_out, receipt, stored_figure};
use super::products;
use super::status;

/// Most commands in one `SubmitBatch`.
pub const BATCH_COMMANDS_MAX: usize = 1000;

/// The branch service over a running ledger.
pub struct BranchApi {
    ledger: Arc<Ledger>,
}

impl BranchApi {
    /// Serves writes to `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> BranchApi {
        BranchApi { ledger }
    }

    /// One write, as a unary call by `principal`.
    async fn one(&self, principal: PrincipalId, write: Write) -> Result<Reply, Status> {
        let mut command = parse(write.clone()).map_err(|e| status::from_domain(&e))?;
        command.principal = Some(principal);
        let entry = self
            .ledger
            .submit(command)
            .await
            .map_err(status::from_submit)?;
        reply(&write, &entry)
    }
}

/// The command a write asks for, with its request id and actor (and no
/// principal: the handler sets the authenticated one).
pub fn parse(write: Write) -> Result<Command, DomainError> {
    let (context, body) = match write {
        Write::CreateBranch(r) => (
            r.context,
            create_branch(
                r.branch_id,
                r.name,
                r.time_zone,
                r.currency,
                r.compulsory_savings_percent,
                r.opened_on,
            ),
        ),
        Write::CreateCenter(r) => (
            r.context,
            (|| {
                Ok(CommandBody::CreateCenter {
                    center_id: CenterId::parse("center_id", &r.center_id)?,
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    name: Name::parse("name", &r.name)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })(),
        ),
        Write::CreateGroup(r) => (
            r.context,
            (|| {
                Ok(CommandBody::CreateGroup {
                    group_id: GroupId::parse("group_id", &r.group_id)?,
                    center_id: CenterId::parse("center_id", &r.center_id)?,
                    name: Name::parse("name", &r.name)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })(),
        ),
        Write::RegisterMember(r) => (
            r.context,
            (|| {
                Ok(CommandBody::RegisterMember {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    full_name: Name::parse("full_name", &r.full_name)?,
                    group_id: GroupId::parse("group_id", &r.group_id)?,
                    joined_on: convert::optional_date("joined_on", &r.joined_on)?,
                })
            })(),
        ),
        Write::OpenSavingsAccount(r) => (
            r.context,
            (|| {
                Ok(CommandBody::OpenSavingsAccount {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    kind: convert::savings_kind(r.kind)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })(),
        ),
        Write::DepositSavings(r) => (
            r.context,
            (|| {
                Ok(CommandBody::DepositSavings {
                    account_id: SavingsAccountId::parse("account_id", &r.account_id)?,
                    amount: convert::money("amount", r.amount)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })(),
        ),
        Write::WithdrawSavings(r) => (
            r.context,
            (|| {
                Ok(CommandBody::WithdrawSavings {
                    account_id: SavingsAccountId::parse("account_id", &r.account_id)?,
                    amount: convert::money("amount", r.amount)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })(),
        ),
        Write::DisburseLoan(r) => (
            r.context,
            (|| {
                let loan = match r.loan {
                    Some(pb::disburse_loan_request::Loan::Terms(terms)) => {
                        LoanSpec::Terms(convert::loan_terms(Some(terms))?)
                    }
                    Some(pb::disburse_loan_request::Loan::Application(application)) => {
                        let (product_id, application) =
                            products::application_in(application, "application.")?;
                        LoanSpec::Product {
                            product_id,
                            application,
                        }
                    }
                    None => {
                        return Err(DomainError::invalid(
                            "loan",
                            "is required: an application under a product, or terms",
                        ));
                    }
                };
                Ok(CommandBody::DisburseLoan {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    loan,
                    disbursed_on: convert::optional_date("disbursed_on", &r.disbursed_on)?,
                })
            })(),
        ),
        Write::DisburseTranche(r) => (
            r.context,
            (|| {
                Ok(CommandBody::DisburseTranche {
                    loan_id: LoanId::parse("loan_id", &r.loan_id)?,
                    amount: convert::money("amount", r.amount)?,
                    disbursed_on: convert::optional_date("disbursed_on", &r.disbursed_on)?,
                })
            })(),
        ),
        Write::WriteOffLoan(r) => (
            r.context,
            (|| {
                Ok(CommandBody::WriteOffLoan {
                    loan_id: LoanId::parse("loan_id", &r.loan_id)?,
                    reason: Name::parse("reason", &r.reason)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })(),
        ),
        Write::RecordCollectionSheet(r) => (
            r.context,
            collection_sheet(r.center_id, r.meeting_date, r.lines),
        ),
        Write::ClosePeriod(r) => (
            r.context,
            (|| {
                Ok(CommandBody::ClosePeriod {
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    through: convert::date("through", &r.through)?,
                })
            })(),
        ),
        Write::ReopenPeriod(r) => (
            r.context,
            (|| {
                Ok(CommandBody::ReopenPeriod {
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    from: convert::date("from", &r.from)?,
                    reason: Name::parse("reason", &r.reason)?,
                })
            })(),
        ),
        Write::PostSavingsInterest(r) => (
            r.context,
            (|| {
                Ok(CommandBody::PostSavingsInterest {
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    period_end: convert::date("period_end", &r.period_end)?,
                })
            })(),
        ),
        Write::FundBranch(r) => (
            r.context,
            funding(r.branch_id, r.source, r.amount, r.effective_date).map(
                |(branch_id, source, amount, effective_date)| CommandBody::FundBranch {
                    branch_id,
                    source,
                    amount,
                    effective_date,
                },
            ),
        ),
        Write::ReturnBranchFunding(r) => (
            r.context,
            funding(r.branch_id, r.source, r.amount, r.effective_date).map(
                |(branch_id, source, amount, effective_date)| CommandBody::ReturnBranchFunding {
                    branch_id,
                    source,
                    amount,
                    effective_date,
                },
            ),
        ),
        Write::RecordRepayment(r) => (
            r.context,
            (|| {
                Ok(CommandBody::RecordRepayment {
                    loan_id: LoanId::parse("loan_id", &r.loan_id)?,
                    amount: convert::money("amount", r.amount)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })(),
        ),
        Write::ReverseEntry(r) => (
            r.context,
            (|| {
                if r.sequence == 0 {
                    return Err(DomainError::invalid("sequence", "is required (1 or more)"));
                }
                Ok(CommandBody::ReverseEntry {
                    sequence: r.sequence,
                    reason: Name::parse("reason", &r.reason)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })(),
        ),
    };
    let (request_id, actor) = convert::context(context)?;
    Ok(Command {
        request_id,
        actor,
        principal: None,
        approval: None,
        body: body?,
    })
}

/// Most lines on one collection sheet.
pub use crate::domain::command::COLLECTION_LINES_MAX;

fn collection_sheet(
    center_id: String,
    meeting_date: String,
    lines: Vec<pb::CollectionLine>,
) -> Result<CommandBody, DomainError> {
    if lines.is_empty() || lines.len() > COLLECTION_LINES_MAX {
        return Err(DomainError::invalid(
            "lines",
            format!(
                "{} lines; a collection sheet holds 1 to {COLLECTION_LINES_MAX}",
                lines.len()
            ),
        ));
    }
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            (|| {
                let repayment = match (line.loan_id.is_empty(), line.repayment) {
                    (true, None) => None,
                    (false, amount) => Some((
                        LoanId::parse("loan_id", &line.loan_id)?,
                        convert::money("repayment", amount)?,
                    )),
                    (true, Some(_)) => {
                        return Err(DomainError::invalid(
                            "loan_id",
                            "is required with a repayment",
                        ));
                    }
                };
                let deposit = match (line.savings_account_id.is_empty(), line.deposit) {
                    (true, None) => None,
                    (false, amount) => Some((
                        SavingsAccountId::parse("savings_account_id", &line.savings_account_id)?,
                        convert::money("deposit", amount)?,
                    )),
                    (true, Some(_)) => {
                        return Err(DomainError::invalid(
                            "savings_account_id",
                            "is required with a deposit",
                        ));
                    }
                };
                Ok(CollectionLine {
                    member_id: MemberId::parse("member_id", &line.member_id)?,
                    repayment,
                    deposit,
                })
            })()
            .map_err(|e: DomainError| e.within(&format!("lines[{i}]")))
        })
        .collect::<Result<_, _>>()?;
    Ok(CommandBody::RecordCollectionSheet {
        center_id: CenterId::parse("center_id", &center_id)?,
        lines,
        meeting_date: convert::optional_date("meeting_date", &meeting_date)?,
    })
}

/// The fields of a funding or a return: branch, source, amount and date.
fn funding(
    branch_id: String,
    source: i32,
    amount: Option<pb::Money>,
    effective_date: String,
) -> Result<(BranchId, FundingSource, Money, Option<chrono::NaiveDate>), DomainError> {
    Ok((
        BranchId::parse("branch_id", &branch_id)?,
        convert::funding_source("source", source)?,
        convert::money("amount", amount)?,
        convert::optional_date("effective_date", &effective_date)?,
    ))
}

fn create_branch(
    branch_id: String,
    name: String,
    time_zone: String,
    currency: String,
    compulsory_savings_percent: String,
    opened_on: String,
) -> Result<CommandBody, DomainError> {
    Ok(CommandBody::CreateBranch {
        branch_id: BranchId::parse("branch_id", &branch_id)?,
        name: Name::parse("name", &name)?,
        time_zone: if time_zone.is_empty() {
            TIME_ZONE_DEFAULT.to_owned()
        } else {
            time_zone
        },
        currency: convert::currency("currency", &currency)?,
        compulsory_savings_percent: convert::percent(
            "compulsory_savings_percent",
            &compulsory_savings_percent,
            Decimal::from(COMPULSORY_SAVINGS_PERCENT_DEFAULT),
        )?,
        opened_on: convert::optional_date("opened_on", &opened_on)?,
    })
}

/// The reply to `write` from its durable entry.
pub fn reply(write: &Write, entry: &Entry) -> Result<Reply, Status> {
    let receipt = Some(receipt(entry));
    let outcome = &entry.body.outcome;
    if let Outcome::ApprovalRequested { expires_at_micros } = outcome {
        return pending_reply(write, entry, *expires_at_micros);
    }
    Ok(match (write, outcome) {
        (Write::CreateBranch(_), _) => Reply::CreateBranch(pb::CreateBranchResponse { receipt }),
        (Write::CreateCenter(_), _) => Reply::CreateCenter(pb::CreateCenterResponse { receipt }),
        (Write::CreateGroup(_), _) => Reply::CreateGroup(pb::CreateGroupResponse { receipt }),
        (Write::RegisterMember(_), _) => {
            Reply::RegisterMember(pb::RegisterMemberResponse { receipt })
        }
        (Write::OpenSavingsAccount(_), Outcome::SavingsAccountOpened { account, .. }) => {
            Reply::OpenSavingsAccount(pb::OpenSavingsAccountResponse {
                receipt,
                account_id: account.to_string(),
            })
        }
        (Write::DepositSavings(_), Outcome::SavingsMoved { balance_after, .. }) => {
            let balance = Some(money_out(
                *balance_after,
                convert::entry_currency(&entry.body),
            ));
            Reply::DepositSavings(pb::DepositSavingsResponse { receipt, balance })
        }
        (Write::WithdrawSavings(_), Outcome::SavingsMoved { balance_after, .. }) => {
            let balance = Some(money_out(
                *balance_after,
                convert::entry_currency(&entry.body),
            ));
            Reply::WithdrawSavings(pb::WithdrawSavingsResponse { receipt, balance })
        }
        (
            Write::DisburseLoan(_),
            Outcome::LoanDisbursed {
                loan,
                schedule,
                currency,
                product,
                terms,
                fees,
                ..
            },
        ) => {
            let at_disbursement = stored_figure(
                "fees_at_disbursement",
                charged(fees, FeeCollection::AtDisbursement),
            )?;
            let paid_out = stored_figure(
                "paid_out",
                terms.principal.checked_sub(at_disbursement).ok_or(Overflow),
            )?;
            Reply::DisburseLoan(pb::DisburseLoanResponse {
                receipt,
                loan_id: loan.to_string(),
                schedule: stored_figure("schedule", products::schedule_out(schedule, *currency))?,
                product_id: product
                    .as_ref()
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_default(),
                product_version: product.as_ref().map_or(0, |(_, v)| *v),
                fees_at_disbursement: Some(money_out(at_disbursement, *currency)),
                paid_out: Some(money_out(paid_out, *currency)),
                pending: None,
            })
        }
        (Write::DisburseTranche(_), Outcome::TrancheDisbursed { fees, recast, .. }) => {
            let currency = convert::entry_currency(&entry.body);
            let disbursed = stored_figure(
                "principal_disbursed",
                sum(recast.after.iter().map(|i| i.principal)).and_then(|after| {
                    minus(after, sum(recast.before.iter().map(|i| i.principal))?)
                }),
            )?;
            let fees_at_disbursement = stored_figure(
                "fees_at_disbursement",
                charged(fees, FeeCollection::AtDisbursement),
            )?;
            Reply::DisburseTranche(pb::DisburseTrancheResponse {
                receipt,
                principal_disbursed: Some(money_out(disbursed, currency)),
                fees_at_disbursement: Some(money_out(fees_at_disbursement, currency)),
                schedule: stored_figure(
                    "schedule",
                    products::schedule_out(&recast.after, currency),
                )?,
                pending: None,
            })
        }
        (Write::RecordRepayment(_), Outcome::RepaymentAllocated(repayment)) => {
            let currency = convert::entry_currency(&entry.body);
            let allocation = convert::allocation_out(repayment, currency)?;
            Reply::RecordRepayment(pb::RecordRepaymentResponse {
                receipt,
                interest_paid: allocation.interest_paid.clone(),
                principal_paid: allocation.principal_paid.clone(),
                principal_outstanding: allocation.principal_outstanding.clone(),
                loan_closed: repayment.closed,
                allocation: Some(allocation),
            })
        }
        (Write::WriteOffLoan(_), Outcome::WrittenOff { principal, .. }) => {
            let currency = convert::entry_currency(&entry.body);
            Reply::WriteOffLoan(pb::WriteOffLoanResponse {
                receipt,
                principal_written_off: Some(money_out(*principal, currency)),
                pending: None,
            })
        }
        (Write::RecordCollectionSheet(r), Outcome::CollectionSheetRecorded { lines }) => {
            let currency = convert::entry_currency(&entry.body);
            let (mut repaid, mut deposited) = (Decimal::ZERO, Decimal::ZERO);
            for line in &r.lines {
                let amount = |m: &Option<pb::Money>| {
                    m.as_ref()
                        .and_then(|m| m.amount.parse::<Decimal>().ok())
                        .unwrap_or_default()
                };
                repaid = stored_figure("total_repaid", plus(repaid, amount(&line.repayment)))?;
                deposited =
                    stored_figure("total_deposited", plus(deposited, amount(&line.deposit)))?;
            }
            let mut results = Vec::with_capacity(lines.len());
            for (request, outcome) in r.lines.iter().zip(lines) {
                results.push(pb::CollectionLineResult {
                    member_id: request.member_id.clone(),
                    repayment: outcome
                        .repayment
                        .as_ref()
                        .map(|rep| convert::allocation_out(rep, currency))
                        .transpose()?,
                    savings_balance: outcome
                        .deposit
                        .as_ref()
                        .map(|d| money_out(d.amount, currency)),
                });
            }
            Reply::RecordCollectionSheet(pb::RecordCollectionSheetResponse {
                receipt,
                lines: results,
                total_repaid: Some(money_out(repaid, currency)),
                total_deposited: Some(money_out(deposited, currency)),
            })
        }
        (Write::ReverseEntry(_), Outcome::Reversed { .. }) => {
            Reply::ReverseEntry(pb::ReverseEntryResponse {
                receipt,
                pending: None,
            })
        }
        (Write::ClosePeriod(_), Outcome::PeriodClosed { carried, .. }) => {
            let currency = convert::entry_currency(&entry.body);
            let result: Decimal = entry
                .body
                .postings
                .iter()
                .filter(|p| {
                    matches!(
                        p.account,
                        crate::domain::account::AccountId::RetainedEarnings(_)
                    )
                })
                .map(|p| match p.side {
                    crate::domain::entry::Side::Credit => p.amount,
                    crate::domain::entry::Side::Debit => -p.amount,
                })
                .sum();
            Reply::ClosePeriod(pb::ClosePeriodResponse {
                receipt,
                carried_to_retained_earnings: *carried,
                result_carried: Some(money_out(result, currency)),
            })
        }
        (Write::PostSavingsInterest(_), Outcome::SavingsInterestPosted { credited, .. }) => {
            let currency = convert::entry_currency(&entry.body);
            let total = stored_figure("total", sum(credited.iter().map(|c| c.amount)))?;
            Reply::PostSavingsInterest(pb::PostSavingsInterestResponse {
                receipt,
                credits: credited
                    .iter()
                    .map(|c| pb::InterestCredit {
                        account_id: c.account.to_string(),
                        amount: Some(money_out(c.amount, currency)),
                    })
                    .collect(),
                total: Some(money_out(total, currency)),
            })
        }
        (Write::FundBranch(_), Outcome::FundingMoved { source, .. }) => {
            let (account, source_balance) = funding_reply(entry, *source);
            Reply::FundBranch(pb::FundBranchResponse {
                receipt,
                account,
                source_balance,
            })
        }
        (Write::ReturnBranchFunding(_), Outcome::FundingMoved { source, .. }) => {
            let (account, source_balance) = funding_reply(entry, *source);
            Reply::ReturnBranchFunding(pb::ReturnBranchFundingResponse {
                receipt,
                account,
                source_balance,
            })
        }
        (Write::ReopenPeriod(_), Outcome::PeriodReopened { closed_through }) => {
            Reply::ReopenPeriod(pb::ReopenPeriodResponse {
                receipt,
                closed_through: closed_through.map(|d| d.to_string()).unwrap_or_default(),
                pending: None,
            })
        }
        _ => {
            tracing::error!(
                sequence = entry.body.sequence,
                "entry outcome does not fit the request"
            );
            return Err(Status::internal(
                "internal error; the cause is in the server's log",
            ));
        }
    })
}

/// The source's account a funding entry moved, and what the branch holds
/// from the source after it.
fn funding_reply(entry: &Entry, source: FundingSource) -> (String, Option<pb::Money>) {
    let Outcome::FundingMoved { balance_after, .. } = &entry.body.outcome else {
        return (String::new(), None);
    };
    let account = entry
        .body
        .branch
        .as_ref()
        .map(|branch| source.account(branch).to_string())
        .unwrap_or_default();
    let currency = convert::entry_currency(&entry.body);
    (account, Some(money_out(*balance_after, currency)))
}

/// The reply to a write recorded as a pending request: its receipt and
/// the request, nothing else.
fn pending_reply(write: &Write, entry: &Entry, expires_at_micros: i64) -> Result<Reply, Status> {
    let receipt = Some(receipt(entry));
    let pending = Some(pb::PendingApproval {
        request: entry.body.sequence,
        expires_at: convert::rfc3339(expires_at_micros),
    });
    Ok(match write {
        Write::ReverseEntry(_) => {
            Reply::ReverseEntry(pb::ReverseEntryResponse { receipt, pending })
        }
        Write::WriteOffLoan(_) => Reply::WriteOffLoan(pb::WriteOffLoanResponse {
            receipt,
            pending,
            ..Default::default()
        }),
        Write::DisburseLoan(_) => Reply::DisburseLoan(pb::DisburseLoanResponse {
            receipt,
            pending,
            ..Default::default()
        }),
        Write::DisburseTranche(_) => Reply::DisburseTranche(pb::DisburseTrancheResponse {
            receipt,
            pending,
            ..Default::default()
        }),
        Write::ReopenPeriod(_) => Reply::ReopenPeriod(pb::ReopenPeriodResponse {
            receipt,
            pending,
            ..Default::default()
        }),
        _ => return Err(unexpected()),
    })
}

fn refused(error: &Status) -> Reply {
    Reply::Error(pb::BatchError {
        code: error.code() as i32,
        message: error.message().to_owned(),
    })
}

fn unexpected() -> Status {
    Status::internal("internal error: a reply of the wrong kind")
}

/// `BranchService`: the unary writes, each one command through
/// [`BranchApi::one`] whose reply is the variant of the same name, then the
/// approvals and the batch (`$rest`).
macro_rules! branch_service {
    ($($method:ident: $request:ident => $response:ident, $variant:ident;)* { $($rest:tt)* }) => {
        #[tonic::async_trait]
        impl BranchService for BranchApi {
            $(
                async fn $method(
                    &self,
                    request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    let principal = access::principal(&request)?;
                    match self.one(principal, Write::$variant(request.into_inner())).await? {
                        Reply::$variant(reply) => Ok(Response::new(reply)),
                        _ => Err(unexpected()),
                    }
                }
            )*
            $($rest)*
        }
    };
}

branch_service! {
    create_branch: CreateBranchRequest => CreateBranchResponse, CreateBranch;
    create_center: CreateCenterRequest => CreateCenterResponse, CreateCenter;
    create_group: CreateGroupRequest => CreateGroupResponse, CreateGroup;
    register_member: RegisterMemberRequest => RegisterMemberResponse, RegisterMember;
    open_savings_account: OpenSavingsAccountRequest => OpenSavingsAccountResponse, OpenSavingsAccount;
    deposit_savings: DepositSavingsRequest => DepositSavingsResponse, DepositSavings;
    withdraw_savings: WithdrawSavingsRequest => WithdrawSavingsResponse, WithdrawSavings;
    disburse_loan: DisburseLoanRequest => DisburseLoanResponse, DisburseLoan;
    record_repayment: RecordRepaymentRequest => RecordRepaymentResponse, RecordRepayment;
    reverse_entry: ReverseEntryRequest => ReverseEntryResponse, ReverseEntry;
    disburse_tranche: DisburseTrancheRequest => DisburseTrancheResponse, DisburseTranche;
    write_off_loan: WriteOffLoanRequest => WriteOffLoanResponse, WriteOffLoan;
    record_collection_sheet: RecordCollectionSheetRequest => RecordCollectionSheetResponse, RecordCollectionSheet;
    close_period: ClosePeriodRequest => ClosePeriodResponse, ClosePeriod;
    post_savings_interest: PostSavingsInterestRequest => PostSavingsInterestResponse, PostSavingsInterest;
    fund_branch: FundBranchRequest => FundBranchResponse, FundBranch;
    return_branch_funding: ReturnBranchFundingRequest => ReturnBranchFundingResponse, ReturnBranchFunding;
    reopen_period: ReopenPeriodRequest => ReopenPeriodResponse, ReopenPeriod;
{
    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let caller = access::caller(&request)?;
        approvals::approve(&self.ledger, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn reject(
        &self,
        request: Request<pb::RejectRequest>,
    ) -> Result<Response<pb::RejectResponse>, Status> {
        let caller = access::caller(&request)?;
        approvals::reject(&self.ledger, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_pending_requests(
        &self,
        request: Request<pb::ListPendingRequestsRequest>,
    ) -> Result<Response<pb::ListPendingRequestsResponse>, Status> {
        let caller = access::caller(&request)?;
        let branch = &request.get_ref().branch_id;
        access::read_subject(
            &request,
            match branch.as_str() {
                "" => "branch:*".to_owned(),
                id => format!("branch:{id}"),
            },
        );
        approvals::list(&self.ledger, caller, request.into_inner()).map(Response::new)
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let principal = access::principal(&request)?;
        let commands = request.into_inner().commands;
        if commands.is_empty() || commands.len() > BATCH_COMMANDS_MAX {
            let message = format!(
                "{} commands; a batch holds 1 to {BATCH_COMMANDS_MAX}",
                commands.len()
            );
            return Err(status::from_domain(&DomainError::invalid(
                "commands", message,
            )));
        }
        // Parse every command; only the well-formed ones reach the ledger.
        let mut writes = Vec::with_capacity(commands.len());
        let mut parsed = Vec::with_capacity(commands.len());
        for (index, command) in commands.into_iter().enumerate() {
            let Some(write) = command.command else {
                let error =
                    DomainError::invalid(&format!("commands[{index}].command"), "is required");
                writes.push(Err(status::from_domain(&error)));
                continue;
            };
            match parse(write.clone()) {
                Ok(mut command) => {
                    command.principal = Some(principal.clone());
                    parsed.push(command);
                    writes.push(Ok(write));
                }
                Err(error) => writes.push(Err(status::from_domain(&error))),
            }
        }
        let mut decided = self.ledger.submit_many(parsed).await.into_iter();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let result = match write {
                Err(error) => refused(&error),
                Ok(write) => match decided.next() {
                    Some(Ok(entry)) => {
                        reply(&write, &entry).unwrap_or_else(|error| refused(&error))
                    }
                    Some(Err(error)) => refused(&status::from_submit(error)),
                    None => refused(&status::from_submit(SubmitError::Internal(
                        "missing result".into(),
                    ))),
                },
            };
            results.push(pb::BatchResult {
                result: Some(result),
            });
        }
        Ok(Response::new(pb::SubmitBatchResponse { results }))
    }
}
}
