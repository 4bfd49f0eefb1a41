//! `BranchService`: a branch's writes. Each handler parses its request into a
//! command, submits it, and builds its reply from the durable entry.

use std::sync::Arc;

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::{Entry, Outcome};
use crate::domain::ids::{BranchId, CenterId, GroupId, LoanId, MemberId, Name, SavingsAccountId};
use crate::domain::state::{COMPULSORY_SAVINGS_PERCENT_DEFAULT, TIME_ZONE_DEFAULT};
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::branch_service_server::BranchService;

use super::convert::{self, money_out, receipt};
use super::status;

/// The branch service over a running ledger.
pub struct BranchApi {
    ledger: Arc<Ledger>,
}

impl BranchApi {
    /// Serves writes to `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> BranchApi {
        BranchApi { ledger }
    }

    async fn submit(
        &self,
        context: Option<pb::WriteContext>,
        body: impl FnOnce() -> Result<CommandBody, crate::domain::DomainError>,
    ) -> Result<Arc<Entry>, Status> {
        let (request_id, actor) = convert::context(context).map_err(|e| status::from_domain(&e))?;
        let body = body().map_err(|e| status::from_domain(&e))?;
        let command = Command {
            request_id,
            actor,
            body,
        };
        self.ledger
            .submit(command)
            .await
            .map_err(status::from_submit)
    }
}

fn mismatch(entry: &Entry) -> Status {
    tracing::error!(
        sequence = entry.body.sequence,
        "entry outcome does not fit the request"
    );
    Status::internal("internal error; the cause is in the server's log")
}

#[tonic::async_trait]
impl BranchService for BranchApi {
    async fn create_branch(
        &self,
        request: Request<pb::CreateBranchRequest>,
    ) -> Result<Response<pb::CreateBranchResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::CreateBranch {
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    name: Name::parse("name", &r.name)?,
                    time_zone: if r.time_zone.is_empty() {
                        TIME_ZONE_DEFAULT.to_owned()
                    } else {
                        r.time_zone
                    },
                    currency: convert::currency("currency", &r.currency)?,
                    compulsory_savings_percent: convert::percent(
                        "compulsory_savings_percent",
                        &r.compulsory_savings_percent,
                        Decimal::from(COMPULSORY_SAVINGS_PERCENT_DEFAULT),
                    )?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })
            .await?;
        Ok(Response::new(pb::CreateBranchResponse {
            receipt: Some(receipt(&entry)),
        }))
    }

    async fn create_center(
        &self,
        request: Request<pb::CreateCenterRequest>,
    ) -> Result<Response<pb::CreateCenterResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::CreateCenter {
                    center_id: CenterId::parse("center_id", &r.center_id)?,
                    branch_id: BranchId::parse("branch_id", &r.branch_id)?,
                    name: Name::parse("name", &r.name)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })
            .await?;
        Ok(Response::new(pb::CreateCenterResponse {
            receipt: Some(receipt(&entry)),
        }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::CreateGroup {
                    group_id: GroupId::parse("group_id", &r.group_id)?,
                    center_id: CenterId::parse("center_id", &r.center_id)?,
                    name: Name::parse("name", &r.name)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })
            .await?;
        Ok(Response::new(pb::CreateGroupResponse {
            receipt: Some(receipt(&entry)),
        }))
    }

    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::RegisterMember {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    full_name: Name::parse("full_name", &r.full_name)?,
                    group_id: GroupId::parse("group_id", &r.group_id)?,
                    joined_on: convert::optional_date("joined_on", &r.joined_on)?,
                })
            })
            .await?;
        Ok(Response::new(pb::RegisterMemberResponse {
            receipt: Some(receipt(&entry)),
        }))
    }

    async fn open_savings_account(
        &self,
        request: Request<pb::OpenSavingsAccountRequest>,
    ) -> Result<Response<pb::OpenSavingsAccountResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::OpenSavingsAccount {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    kind: convert::savings_kind(r.kind)?,
                    opened_on: convert::optional_date("opened_on", &r.opened_on)?,
                })
            })
            .await?;
        let Outcome::SavingsAccountOpened { account, .. } = &entry.body.outcome else {
            return Err(mismatch(&entry));
        };
        Ok(Response::new(pb::OpenSavingsAccountResponse {
            receipt: Some(receipt(&entry)),
            account_id: account.to_string(),
        }))
    }

    async fn deposit_savings(
        &self,
        request: Request<pb::DepositSavingsRequest>,
    ) -> Result<Response<pb::DepositSavingsResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::DepositSavings {
                    account_id: SavingsAccountId::parse("account_id", &r.account_id)?,
                    amount: convert::money("amount", r.amount)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })
            .await?;
        let balance = savings_balance_after(&entry)?;
        Ok(Response::new(pb::DepositSavingsResponse {
            receipt: Some(receipt(&entry)),
            balance: Some(balance),
        }))
    }

    async fn withdraw_savings(
        &self,
        request: Request<pb::WithdrawSavingsRequest>,
    ) -> Result<Response<pb::WithdrawSavingsResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::WithdrawSavings {
                    account_id: SavingsAccountId::parse("account_id", &r.account_id)?,
                    amount: convert::money("amount", r.amount)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })
            .await?;
        let balance = savings_balance_after(&entry)?;
        Ok(Response::new(pb::WithdrawSavingsResponse {
            receipt: Some(receipt(&entry)),
            balance: Some(balance),
        }))
    }

    async fn disburse_loan(
        &self,
        request: Request<pb::DisburseLoanRequest>,
    ) -> Result<Response<pb::DisburseLoanResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                Ok(CommandBody::DisburseLoan {
                    member_id: MemberId::parse("member_id", &r.member_id)?,
                    terms: convert::loan_terms(r.terms)?,
                    disbursed_on: convert::optional_date("disbursed_on", &r.disbursed_on)?,
                })
            })
            .await?;
        let Outcome::LoanDisbursed {
            loan,
            schedule,
            currency,
            ..
        } = &entry.body.outcome
        else {
            return Err(mismatch(&entry));
        };
        let zero = (Decimal::ZERO, Decimal::ZERO);
        let schedule = schedule
            .iter()
            .map(|i| convert::installment_out(i, zero, pb::InstallmentStatus::NotDue, *currency))
            .collect();
        Ok(Response::new(pb::DisburseLoanResponse {
            receipt: Some(receipt(&entry)),
            loan_id: loan.to_string(),
            schedule,
        }))
    }

    async fn record_repayment(
        &self,
        request: Request<pb::RecordRepaymentRequest>,
    ) -> Result<Response<pb::RecordRepaymentResponse>, Status> {
        let r = request.into_inner();
        let mut currency = None;
        let entry = self
            .submit(r.context, || {
                let amount = convert::money("amount", r.amount)?;
                currency = Some(amount.currency);
                Ok(CommandBody::RecordRepayment {
                    loan_id: LoanId::parse("loan_id", &r.loan_id)?,
                    amount,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })
            .await?;
        let (
            Outcome::RepaymentAllocated {
                payments,
                principal_outstanding_after,
                closed,
                ..
            },
            Some(currency),
        ) = (&entry.body.outcome, currency)
        else {
            return Err(mismatch(&entry));
        };
        let interest: Decimal = payments.iter().map(|p| p.interest).sum();
        let principal: Decimal = payments.iter().map(|p| p.principal).sum();
        Ok(Response::new(pb::RecordRepaymentResponse {
            receipt: Some(receipt(&entry)),
            interest_paid: Some(money_out(interest, currency)),
            principal_paid: Some(money_out(principal, currency)),
            principal_outstanding: Some(money_out(*principal_outstanding_after, currency)),
            loan_closed: *closed,
        }))
    }

    async fn reverse_entry(
        &self,
        request: Request<pb::ReverseEntryRequest>,
    ) -> Result<Response<pb::ReverseEntryResponse>, Status> {
        let r = request.into_inner();
        let entry = self
            .submit(r.context, || {
                if r.sequence == 0 {
                    return Err(crate::domain::DomainError::invalid(
                        "sequence",
                        "is required (1 or more)",
                    ));
                }
                Ok(CommandBody::ReverseEntry {
                    sequence: r.sequence,
                    reason: Name::parse("reason", &r.reason)?,
                    effective_date: convert::optional_date("effective_date", &r.effective_date)?,
                })
            })
            .await?;
        Ok(Response::new(pb::ReverseEntryResponse {
            receipt: Some(receipt(&entry)),
        }))
    }
}

fn savings_balance_after(entry: &Entry) -> Result<pb::Money, Status> {
    match (&entry.body.outcome, &entry.body.command) {
        (
            Outcome::SavingsMoved { balance_after, .. },
            CommandBody::DepositSavings { amount, .. }
            | CommandBody::WithdrawSavings { amount, .. },
        ) => Ok(money_out(*balance_after, amount.currency)),
        _ => Err(mismatch(entry)),
    }
}
