//! `BranchService`: a branch's writes. Every write, unary or in a batch, goes
//! the same way: [`parse`] turns the request into a command, the ledger
//! decides it, and [`reply`] builds the answer from the durable entry.

use std::sync::Arc;

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::{Entry, Outcome};
use crate::domain::ids::{BranchId, CenterId, GroupId, LoanId, MemberId, Name, SavingsAccountId};
use crate::domain::state::{COMPULSORY_SAVINGS_PERCENT_DEFAULT, TIME_ZONE_DEFAULT};
use crate::ledger::{Ledger, SubmitError};
use crate::pb;
use crate::pb::batch_command::Command as Write;
use crate::pb::batch_result::Result as Reply;
use crate::pb::branch_service_server::BranchService;

use super::convert::{self, money_out, receipt};
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

    /// One write, as a unary call.
    async fn one(&self, write: Write) -> Result<Reply, Status> {
        let command = parse(write.clone()).map_err(|e| status::from_domain(&e))?;
        let entry = self
            .ledger
            .submit(command)
            .await
            .map_err(status::from_submit)?;
        reply(&write, &entry)
    }
}

/// The command a write asks for, with its request id and actor.
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
                Ok(CommandBody::DisburseLoan {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    terms: convert::loan_terms(r.terms)?,
                    disbursed_on: convert::optional_date("disbursed_on", &r.disbursed_on)?,
                })
            })(),
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
        body: body?,
    })
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
                ..
            },
        ) => {
            let zero = (Decimal::ZERO, Decimal::ZERO);
            let schedule = schedule
                .iter()
                .map(|i| {
                    convert::installment_out(i, zero, pb::InstallmentStatus::NotDue, *currency)
                })
                .collect();
            Reply::DisburseLoan(pb::DisburseLoanResponse {
                receipt,
                loan_id: loan.to_string(),
                schedule,
            })
        }
        (
            Write::RecordRepayment(_),
            Outcome::RepaymentAllocated {
                payments,
                principal_outstanding_after,
                closed,
                ..
            },
        ) => {
            let currency = convert::entry_currency(&entry.body);
            let interest: Decimal = payments.iter().map(|p| p.interest).sum();
            let principal: Decimal = payments.iter().map(|p| p.principal).sum();
            Reply::RecordRepayment(pb::RecordRepaymentResponse {
                receipt,
                interest_paid: Some(money_out(interest, currency)),
                principal_paid: Some(money_out(principal, currency)),
                principal_outstanding: Some(money_out(*principal_outstanding_after, currency)),
                loan_closed: *closed,
            })
        }
        (Write::ReverseEntry(_), Outcome::Reversed { .. }) => {
            Reply::ReverseEntry(pb::ReverseEntryResponse { receipt })
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

fn refused(error: &Status) -> Reply {
    Reply::Error(pb::BatchError {
        code: error.code() as i32,
        message: error.message().to_owned(),
    })
}

fn unexpected() -> Status {
    Status::internal("internal error: a reply of the wrong kind")
}

#[tonic::async_trait]
impl BranchService for BranchApi {
    async fn create_branch(
        &self,
        request: Request<pb::CreateBranchRequest>,
    ) -> Result<Response<pb::CreateBranchResponse>, Status> {
        match self.one(Write::CreateBranch(request.into_inner())).await? {
            Reply::CreateBranch(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn create_center(
        &self,
        request: Request<pb::CreateCenterRequest>,
    ) -> Result<Response<pb::CreateCenterResponse>, Status> {
        match self.one(Write::CreateCenter(request.into_inner())).await? {
            Reply::CreateCenter(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        match self.one(Write::CreateGroup(request.into_inner())).await? {
            Reply::CreateGroup(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        match self
            .one(Write::RegisterMember(request.into_inner()))
            .await?
        {
            Reply::RegisterMember(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn open_savings_account(
        &self,
        request: Request<pb::OpenSavingsAccountRequest>,
    ) -> Result<Response<pb::OpenSavingsAccountResponse>, Status> {
        match self
            .one(Write::OpenSavingsAccount(request.into_inner()))
            .await?
        {
            Reply::OpenSavingsAccount(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn deposit_savings(
        &self,
        request: Request<pb::DepositSavingsRequest>,
    ) -> Result<Response<pb::DepositSavingsResponse>, Status> {
        match self
            .one(Write::DepositSavings(request.into_inner()))
            .await?
        {
            Reply::DepositSavings(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn withdraw_savings(
        &self,
        request: Request<pb::WithdrawSavingsRequest>,
    ) -> Result<Response<pb::WithdrawSavingsResponse>, Status> {
        match self
            .one(Write::WithdrawSavings(request.into_inner()))
            .await?
        {
            Reply::WithdrawSavings(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn disburse_loan(
        &self,
        request: Request<pb::DisburseLoanRequest>,
    ) -> Result<Response<pb::DisburseLoanResponse>, Status> {
        match self.one(Write::DisburseLoan(request.into_inner())).await? {
            Reply::DisburseLoan(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn record_repayment(
        &self,
        request: Request<pb::RecordRepaymentRequest>,
    ) -> Result<Response<pb::RecordRepaymentResponse>, Status> {
        match self
            .one(Write::RecordRepayment(request.into_inner()))
            .await?
        {
            Reply::RecordRepayment(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn reverse_entry(
        &self,
        request: Request<pb::ReverseEntryRequest>,
    ) -> Result<Response<pb::ReverseEntryResponse>, Status> {
        match self.one(Write::ReverseEntry(request.into_inner())).await? {
            Reply::ReverseEntry(reply) => Ok(Response::new(reply)),
            _ => Err(unexpected()),
        }
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
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
                Ok(command) => {
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
