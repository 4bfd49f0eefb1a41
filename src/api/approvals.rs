//! Maker-checker over gRPC: approving, rejecting and listing the requests
//! the ledger recorded as pending (reversals, write-offs, disbursements
//! above their product's approval limit). The rules (who may approve what,
//! until when, once) are the ledger's (`domain::access`); this module turns
//! an approval into the maker's command with the checker's approval
//! attached.

use tonic::Status;

use crate::domain::DomainError;
use crate::domain::access::{AccessCommand, Action, PendingRequest, Resolution};
use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::Approval;
use crate::domain::ids::{BranchId, Name};
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::batch_command::Command as Write;

use super::access::Caller;
use super::convert;
use super::status;

/// Makes pending request `request` take effect, approved by `caller`.
pub async fn approve(
    ledger: &Ledger,
    caller: Caller,
    request: pb::ApproveRequest,
) -> Result<pb::ApproveResponse, Status> {
    let refuse = |e: DomainError| status::from_domain(&e);
    let (request_id, _) = convert::context(request.context).map_err(refuse)?;
    if request.request == 0 {
        return Err(refuse(DomainError::invalid(
            "request",
            "is required (1 or more)",
        )));
    }
    let access = ledger.access();
    let pending = access
        .pending_request(request.request)
        .ok_or_else(|| {
            DomainError::not_found("request", "pending request", request.request.to_string())
        })
        .map_err(refuse)?;
    // Nothing about the request but its existence is told to a caller who
    // may not approve in its branch.
    caller.authorize(Action::Approve, Some(&pending.branch))?;
    let command = Command {
        request_id,
        actor: pending.actor.clone(),
        principal: Some(pending.maker.clone()),
        approval: Some(Approval {
            by: caller.principal.clone(),
            request: request.request,
        }),
        body: pending.command.clone(),
    };
    let entry = ledger.submit(command).await.map_err(status::from_submit)?;
    let write = match &entry.body.command {
        CommandBody::ReverseEntry { .. } => Write::ReverseEntry(Default::default()),
        CommandBody::WriteOffLoan { .. } => Write::WriteOffLoan(Default::default()),
        CommandBody::DisburseLoan { .. } => Write::DisburseLoan(Default::default()),
        CommandBody::DisburseTranche { .. } => Write::DisburseTranche(Default::default()),
        CommandBody::ReopenPeriod { .. } => Write::ReopenPeriod(Default::default()),
        other => {
            tracing::error!(
                command = other.name(),
                "approved a command that needs no approval"
            );
            return Err(Status::internal(
                "internal error: approved an unexpected command",
            ));
        }
    };
    Ok(pb::ApproveResponse {
        receipt: Some(convert::receipt(&entry)),
        command: entry.body.command.name().to_owned(),
        description: convert::describe(&entry.body, entry.body.currency),
        result: Some(pb::BatchResult {
            result: Some(super::branch::reply(&write, &entry)?),
        }),
    })
}

/// Rejects pending request `request`, by `caller`.
pub async fn reject(
    ledger: &Ledger,
    caller: Caller,
    request: pb::RejectRequest,
) -> Result<pb::RejectResponse, Status> {
    let command = (|| {
        let (request_id, actor) = convert::context(request.context)?;
        if request.request == 0 {
            return Err(DomainError::invalid("request", "is required (1 or more)"));
        }
        Ok(Command {
            request_id,
            actor,
            principal: Some(caller.principal.clone()),
            approval: None,
            body: CommandBody::Access(AccessCommand::RejectRequest {
                request: request.request,
                reason: Name::parse("reason", &request.reason)?,
            }),
        })
    })()
    .map_err(|e| status::from_domain(&e))?;
    let entry = ledger.submit(command).await.map_err(status::from_submit)?;
    Ok(pb::RejectResponse {
        receipt: Some(convert::receipt(&entry)),
    })
}

/// The requests of a branch (or of every branch) that needed approval.
pub fn list(
    ledger: &Ledger,
    caller: Caller,
    request: pb::ListPendingRequestsRequest,
) -> Result<pb::ListPendingRequestsResponse, Status> {
    let branch = match request.branch_id.as_str() {
        "" => None,
        text => Some(BranchId::parse("branch_id", text).map_err(|e| status::from_domain(&e))?),
    };
    caller.authorize(Action::ReadBranch, branch.as_ref())?;
    let now = ledger.now().timestamp_micros();
    let access = ledger.access();
    let requests = access
        .pending_requests()
        .filter(|p| branch.as_ref().is_none_or(|b| &p.branch == b))
        .map(|p| (p, status_of(p, now)))
        .filter(|(_, status)| request.include_decided || *status == "pending")
        .map(|(p, status)| request_out(p, status))
        .collect();
    Ok(pb::ListPendingRequestsResponse { requests })
}

fn status_of(pending: &PendingRequest, now_micros: i64) -> &'static str {
    match pending.resolution {
        Some(Resolution::Approved { .. }) => "approved",
        Some(Resolution::Rejected { .. }) => "rejected",
        None if now_micros >= pending.expires_at_micros => "expired",
        None => "pending",
    }
}

fn request_out(pending: &PendingRequest, status: &str) -> pb::PendingRequest {
    let (decided_by, decided_in) = match &pending.resolution {
        Some(Resolution::Approved { by, sequence })
        | Some(Resolution::Rejected { by, sequence, .. }) => (by.to_string(), *sequence),
        None => (String::new(), 0),
    };
    pb::PendingRequest {
        request: pending.sequence,
        branch_id: pending.branch.to_string(),
        maker: pending.maker.to_string(),
        actor: pending.actor.to_string(),
        command: pending.command.name().to_owned(),
        requested_at: convert::rfc3339(pending.requested_at_micros),
        expires_at: convert::rfc3339(pending.expires_at_micros),
        status: status.to_owned(),
        decided_by,
        decided_in,
    }
}
