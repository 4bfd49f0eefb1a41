//! An echo `BranchService` for benchmarks: the RPC ceiling. It answers every
//! write at once with a reply of the same shape and size as the ledger's,
//! doing no ledger work, so that the load generator can measure what gRPC
//! alone costs with the same messages and concurrency.
//!
//! Never part of `serve`; started only by the hidden `echo-server` command.

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Request, Response, Status};

use crate::pb;
use crate::pb::batch_command::Command as Write;
use crate::pb::batch_result::Result as Reply;
use crate::pb::branch_service_server::BranchService;

/// Answers writes without a ledger.
#[derive(Default)]
pub struct EchoBranchApi {
    sequence: AtomicU64,
}

impl EchoBranchApi {
    fn receipt(&self) -> Option<pb::EntryReceipt> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        Some(pb::EntryReceipt {
            sequence,
            effective_date: "2024-01-08".into(),
            recorded_at: "2024-01-08T03:00:00.000000Z".into(),
            hash: format!("{sequence:064x}"),
        })
    }

    fn echo(&self, write: &Write) -> Reply {
        let money = |amount: &str| {
            Some(pb::Money {
                amount: amount.into(),
                currency: "VND".into(),
            })
        };
        let receipt = self.receipt();
        match write {
            Write::RecordRepayment(r) => Reply::RecordRepayment(pb::RecordRepaymentResponse {
                receipt,
                interest_paid: money("1000"),
                principal_paid: r.amount.clone().map(|m| pb::Money {
                    amount: m.amount,
                    currency: "VND".into(),
                }),
                principal_outstanding: money("999000000"),
                loan_closed: false,
                allocation: None,
            }),
            Write::DepositSavings(r) => Reply::DepositSavings(pb::DepositSavingsResponse {
                receipt,
                balance: r.amount.clone(),
            }),
            Write::WithdrawSavings(r) => Reply::WithdrawSavings(pb::WithdrawSavingsResponse {
                receipt,
                balance: r.amount.clone(),
            }),
            Write::CreateBranch(_) => Reply::CreateBranch(pb::CreateBranchResponse { receipt }),
            Write::CreateCenter(_) => Reply::CreateCenter(pb::CreateCenterResponse { receipt }),
            Write::CreateGroup(_) => Reply::CreateGroup(pb::CreateGroupResponse { receipt }),
            Write::RegisterMember(_) => {
                Reply::RegisterMember(pb::RegisterMemberResponse { receipt })
            }
            Write::OpenSavingsAccount(r) => {
                Reply::OpenSavingsAccount(pb::OpenSavingsAccountResponse {
                    receipt,
                    account_id: format!("{}/C1", r.member_id),
                })
            }
            Write::DisburseLoan(r) => Reply::DisburseLoan(pb::DisburseLoanResponse {
                receipt,
                loan_id: format!("{}/L1", r.member_id),
                schedule: Vec::new(),
                ..Default::default()
            }),
            Write::ReverseEntry(_) => Reply::ReverseEntry(pb::ReverseEntryResponse {
                receipt,
                pending: None,
            }),
            Write::DisburseTranche(r) => Reply::DisburseTranche(pb::DisburseTrancheResponse {
                receipt,
                principal_disbursed: r.amount.clone(),
                ..Default::default()
            }),
            Write::WriteOffLoan(_) => Reply::WriteOffLoan(pb::WriteOffLoanResponse {
                receipt,
                principal_written_off: money("0"),
                pending: None,
            }),
            Write::RecordCollectionSheet(_) => {
                Reply::RecordCollectionSheet(pb::RecordCollectionSheetResponse {
                    receipt,
                    ..Default::default()
                })
            }
            Write::ClosePeriod(_) => Reply::ClosePeriod(pb::ClosePeriodResponse {
                receipt,
                ..Default::default()
            }),
            Write::ReopenPeriod(_) => Reply::ReopenPeriod(pb::ReopenPeriodResponse {
                receipt,
                ..Default::default()
            }),
            Write::PostSavingsInterest(_) => {
                Reply::PostSavingsInterest(pb::PostSavingsInterestResponse {
                    receipt,
                    ..Default::default()
                })
            }
            Write::FundBranch(_) => Reply::FundBranch(pb::FundBranchResponse {
                receipt,
                ..Default::default()
            }),
            Write::ReturnBranchFunding(_) => {
                Reply::ReturnBranchFunding(pb::ReturnBranchFundingResponse {
                    receipt,
                    ..Default::default()
                })
            }
        }
    }
}

fn wrong_kind() -> Status {
    Status::internal("echo: reply of the wrong kind")
}

macro_rules! echo_method {
    ($self:ident, $request:ident, $variant:ident) => {
        match $self.echo(&Write::$variant($request.into_inner())) {
            Reply::$variant(reply) => Ok(Response::new(reply)),
            _ => Err(wrong_kind()),
        }
    };
}

#[tonic::async_trait]
impl BranchService for EchoBranchApi {
    async fn create_branch(
        &self,
        request: Request<pb::CreateBranchRequest>,
    ) -> Result<Response<pb::CreateBranchResponse>, Status> {
        echo_method!(self, request, CreateBranch)
    }
    async fn create_center(
        &self,
        request: Request<pb::CreateCenterRequest>,
    ) -> Result<Response<pb::CreateCenterResponse>, Status> {
        echo_method!(self, request, CreateCenter)
    }
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        echo_method!(self, request, CreateGroup)
    }
    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        echo_method!(self, request, RegisterMember)
    }
    async fn open_savings_account(
        &self,
        request: Request<pb::OpenSavingsAccountRequest>,
    ) -> Result<Response<pb::OpenSavingsAccountResponse>, Status> {
        echo_method!(self, request, OpenSavingsAccount)
    }
    async fn deposit_savings(
        &self,
        request: Request<pb::DepositSavingsRequest>,
    ) -> Result<Response<pb::DepositSavingsResponse>, Status> {
        echo_method!(self, request, DepositSavings)
    }
    async fn withdraw_savings(
        &self,
        request: Request<pb::WithdrawSavingsRequest>,
    ) -> Result<Response<pb::WithdrawSavingsResponse>, Status> {
        echo_method!(self, request, WithdrawSavings)
    }
    async fn disburse_loan(
        &self,
        request: Request<pb::DisburseLoanRequest>,
    ) -> Result<Response<pb::DisburseLoanResponse>, Status> {
        echo_method!(self, request, DisburseLoan)
    }
    async fn record_repayment(
        &self,
        request: Request<pb::RecordRepaymentRequest>,
    ) -> Result<Response<pb::RecordRepaymentResponse>, Status> {
        echo_method!(self, request, RecordRepayment)
    }
    async fn reverse_entry(
        &self,
        request: Request<pb::ReverseEntryRequest>,
    ) -> Result<Response<pb::ReverseEntryResponse>, Status> {
        echo_method!(self, request, ReverseEntry)
    }
    async fn disburse_tranche(
        &self,
        request: Request<pb::DisburseTrancheRequest>,
    ) -> Result<Response<pb::DisburseTrancheResponse>, Status> {
        echo_method!(self, request, DisburseTranche)
    }
    async fn write_off_loan(
        &self,
        request: Request<pb::WriteOffLoanRequest>,
    ) -> Result<Response<pb::WriteOffLoanResponse>, Status> {
        echo_method!(self, request, WriteOffLoan)
    }
    async fn record_collection_sheet(
        &self,
        request: Request<pb::RecordCollectionSheetRequest>,
    ) -> Result<Response<pb::RecordCollectionSheetResponse>, Status> {
        echo_method!(self, request, RecordCollectionSheet)
    }
    async fn close_period(
        &self,
        request: Request<pb::ClosePeriodRequest>,
    ) -> Result<Response<pb::ClosePeriodResponse>, Status> {
        echo_method!(self, request, ClosePeriod)
    }
    async fn reopen_period(
        &self,
        request: Request<pb::ReopenPeriodRequest>,
    ) -> Result<Response<pb::ReopenPeriodResponse>, Status> {
        echo_method!(self, request, ReopenPeriod)
    }
    async fn post_savings_interest(
        &self,
        request: Request<pb::PostSavingsInterestRequest>,
    ) -> Result<Response<pb::PostSavingsInterestResponse>, Status> {
        echo_method!(self, request, PostSavingsInterest)
    }
    async fn fund_branch(
        &self,
        request: Request<pb::FundBranchRequest>,
    ) -> Result<Response<pb::FundBranchResponse>, Status> {
        echo_method!(self, request, FundBranch)
    }
    async fn return_branch_funding(
        &self,
        request: Request<pb::ReturnBranchFundingRequest>,
    ) -> Result<Response<pb::ReturnBranchFundingResponse>, Status> {
        echo_method!(self, request, ReturnBranchFunding)
    }
    async fn approve(
        &self,
        _request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        Err(Status::unimplemented(
            "the echo server records nothing to approve",
        ))
    }

    async fn reject(
        &self,
        _request: Request<pb::RejectRequest>,
    ) -> Result<Response<pb::RejectResponse>, Status> {
        Err(Status::unimplemented(
            "the echo server records nothing to reject",
        ))
    }

    async fn list_pending_requests(
        &self,
        _request: Request<pb::ListPendingRequestsRequest>,
    ) -> Result<Response<pb::ListPendingRequestsResponse>, Status> {
        Ok(Response::new(pb::ListPendingRequestsResponse::default()))
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let results = request
            .into_inner()
            .commands
            .into_iter()
            .map(|command| pb::BatchResult {
                result: command.command.map(|write| self.echo(&write)),
            })
            .collect();
        Ok(Response::new(pb::SubmitBatchResponse { results }))
    }
}

/// Serves the echo service on `listener` until `shutdown` resolves.
pub async fn serve_echo(
    listener: tokio::net::TcpListener,
    limits: super::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let echo = pb::branch_service_server::BranchServiceServer::new(EchoBranchApi::default())
        .max_decoding_message_size(limits.message_size_max);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits.requests_per_connection_max)
        .add_service(echo)
        .serve_with_incoming_shutdown(super::incoming(listener), shutdown)
        .await?;
    Ok(())
}
