//! Maker-checker for a branch manager: list the requests waiting for
//! approval (`pending`), approve one (`approve`: the command takes effect
//! now, as a new entry) or reject it (`reject`); and for a product admin,
//! the amount above which a product's disbursements wait for approval
//! (`approval-limit`).
//!
//! Reversals and write-offs always wait for another manager of the branch;
//! disbursements and tranches only above their product's approval limit.
//! A request's id is the sequence of the entry that recorded it, printed by
//! the command that made it.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::ClientOptions;
use super::connect::{self, WriteSession, read_error};
use super::output::{Report, money, money_json, product_label, table, write_report};
use super::transactions::{difference, schedule_json, schedule_section, typed_money};
use crate::pb;
use crate::pb::batch_result::Result as Reply;

/// Commands of maker-checker.
#[derive(Subcommand, Clone, Debug)]
pub enum ApprovalCommand {
    /// List the requests waiting for a manager's approval, oldest first
    /// (with --all, also approved, rejected and expired ones).
    Pending(PendingArgs),
    /// Approve another principal's pending request: the command takes
    /// effect now; prints its entry and what it did. Managers of the
    /// request's branch only, not the one who made it.
    Approve(ApproveArgs),
    /// Reject a pending request: it will never take effect.
    Reject(RejectArgs),
    /// Set the amount above which a product's disbursements and tranches
    /// wait for a manager's approval (--none: no limit). Product admins only.
    ApprovalLimit(ApprovalLimitArgs),
}

/// Arguments of `pending`.
#[derive(Args, Clone, Debug)]
pub struct PendingArgs {
    /// Only this branch's requests [default: every branch, which needs an
    /// institution-wide role].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Also list approved, rejected and expired requests.
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `approve`.
#[derive(Args, Clone, Debug)]
pub struct ApproveArgs {
    /// The request's id (the sequence of the entry that recorded it).
    pub request: u64,
}

/// Arguments of `reject`.
#[derive(Args, Clone, Debug)]
pub struct RejectArgs {
    /// The request's id (the sequence of the entry that recorded it).
    pub request: u64,
    /// Why, 1 to 200 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Arguments of `approval-limit`.
#[derive(Args, Clone, Debug)]
pub struct ApprovalLimitArgs {
    /// The product.
    pub product_id: String,
    /// Disbursements and tranches above this amount need approval, e.g.
    /// 20000000.
    #[arg(required_unless_present = "none", conflicts_with = "none")]
    pub amount: Option<String>,
    /// ISO 4217 currency of the amount [default: the product's].
    #[arg(long, conflicts_with = "none")]
    pub currency: Option<String>,
    /// Remove the product's limit: no disbursement of it waits for approval.
    #[arg(long)]
    pub none: bool,
}

/// Runs a maker-checker command.
pub async fn run(options: &ClientOptions, command: ApprovalCommand) -> anyhow::Result<Report> {
    match command {
        ApprovalCommand::Pending(args) => pending(&options.server, args).await,
        ApprovalCommand::Approve(args) => approve(&options.write_session(), args).await,
        ApprovalCommand::Reject(args) => reject(&options.write_session(), args).await,
        ApprovalCommand::ApprovalLimit(args) => {
            approval_limit(&options.write_session(), args).await
        }
    }
}

/// "-" for an empty text.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// `pending`: one table of requests.
async fn pending(server: &str, args: PendingArgs) -> anyhow::Result<Report> {
    let response = connect::branch(server)
        .await?
        .list_pending_requests(pb::ListPendingRequestsRequest {
            branch_id: args.branch.clone().unwrap_or_default(),
            include_decided: args.all,
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let mut rows = table(
        &[
            "request",
            "branch",
            "command",
            "maker",
            "actor",
            "requested at",
            "expires at",
            "status",
            "decided by",
            "decided in",
        ],
        &[0, 9],
    );
    for r in &response.requests {
        rows.add_row(vec![
            r.request.to_string(),
            r.branch_id.clone(),
            r.command.clone(),
            r.maker.clone(),
            r.actor.clone(),
            r.requested_at.clone(),
            r.expires_at.clone(),
            r.status.clone(),
            or_dash(&r.decided_by),
            match r.decided_in {
                0 => "-".to_owned(),
                sequence => sequence.to_string(),
            },
        ]);
    }
    let text = if rows.row_count() == 0 {
        let what = if args.all {
            "requests"
        } else {
            "pending requests"
        };
        match &args.branch {
            Some(branch) => format!("no {what} in branch {branch}\n"),
            None => format!("no {what}\n"),
        }
    } else {
        format!("{rows}\n")
    };
    let json = json!({
        "branch_id": args.branch,
        "include_decided": args.all,
        "requests": response.requests.iter().map(|r| json!({
            "request": r.request,
            "branch_id": r.branch_id,
            "command": r.command,
            "maker": r.maker,
            "actor": r.actor,
            "requested_at": r.requested_at,
            "expires_at": r.expires_at,
            "status": r.status,
            "decided_by": (!r.decided_by.is_empty()).then_some(&r.decided_by),
            "decided_in": (r.decided_in != 0).then_some(r.decided_in),
        })).collect::<Vec<_>>(),
    });
    Ok(Report { text, json })
}

/// `approve`: the entry now in effect, what it did, and the command's own
/// figures.
async fn approve(session: &WriteSession, args: ApproveArgs) -> anyhow::Result<Report> {
    let response = session
        .client()
        .await?
        .approve(pb::ApproveRequest {
            context: session.context(),
            request: args.request,
        })
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let mut rows = vec![
        ("approved request", args.request.to_string()),
        ("command", response.command.clone()),
        ("description", response.description.clone()),
    ];
    let figures = figures(response.result.and_then(|r| r.result))?;
    rows.extend(figures.rows);
    let mut report = write_report(
        &session.request_id,
        &receipt,
        rows,
        json!({
            "request": args.request,
            "command": response.command,
            "description": response.description,
            "result": figures.json,
        }),
    );
    report.text += &figures.more;
    Ok(report)
}

/// The key figures of an approved command's own reply.
struct Figures {
    /// Lines of text.
    rows: Vec<(&'static str, String)>,
    /// The same, as JSON (null when the server sent no reply).
    json: Value,
    /// Text after the lines (a schedule).
    more: String,
}

fn figures(reply: Option<Reply>) -> anyhow::Result<Figures> {
    let mut more = String::new();
    let (rows, json) = match reply {
        None | Some(Reply::ReverseEntry(_)) => (Vec::new(), Value::Null),
        Some(Reply::DisburseLoan(r)) => {
            let fees = r.fees_at_disbursement.as_ref();
            let paid_out = r.paid_out.as_ref();
            more = schedule_section("schedule", &r.schedule, None);
            (
                vec![
                    ("loan id", r.loan_id.clone()),
                    ("product", product_label(&r.product_id, r.product_version)),
                    ("fees at disbursement", money(fees)),
                    ("paid out", money(paid_out)),
                ],
                json!({
                    "loan_id": r.loan_id,
                    "product_id": r.product_id,
                    "product_version": r.product_version,
                    "fees_at_disbursement": money_json(fees),
                    "paid_out": money_json(paid_out),
                    "schedule": schedule_json(&r.schedule),
                }),
            )
        }
        Some(Reply::DisburseTranche(r)) => {
            let principal = r.principal_disbursed.as_ref();
            let fees = r.fees_at_disbursement.as_ref();
            let paid_out = difference(principal, fees);
            more = schedule_section("recomputed installments", &r.schedule, None);
            (
                vec![
                    ("principal disbursed", money(principal)),
                    ("fees at disbursement", money(fees)),
                    ("paid out", money(paid_out.as_ref())),
                ],
                json!({
                    "principal_disbursed": money_json(principal),
                    "fees_at_disbursement": money_json(fees),
                    "paid_out": money_json(paid_out.as_ref()),
                    "schedule": schedule_json(&r.schedule),
                }),
            )
        }
        Some(Reply::WriteOffLoan(r)) => {
            let written_off = r.principal_written_off.as_ref();
            (
                vec![("principal written off", money(written_off))],
                json!({ "principal_written_off": money_json(written_off) }),
            )
        }
        Some(Reply::Error(e)) => bail!(
            "the request was approved but the server reported: {} (code {})",
            e.message,
            e.code
        ),
        Some(_) => (Vec::new(), Value::Null),
    };
    Ok(Figures { rows, json, more })
}

/// `reject`.
async fn reject(session: &WriteSession, args: RejectArgs) -> anyhow::Result<Report> {
    let response = session
        .client()
        .await?
        .reject(pb::RejectRequest {
            context: session.context(),
            request: args.request,
            reason: args.reason.clone(),
        })
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("rejected request", args.request.to_string()),
            ("reason", args.reason.clone()),
        ],
        json!({ "request": args.request, "reason": args.reason }),
    ))
}

/// `approval-limit`.
async fn approval_limit(session: &WriteSession, args: ApprovalLimitArgs) -> anyhow::Result<Report> {
    let above = match (&args.amount, args.none) {
        (Some(amount), false) => typed_money(amount.clone(), args.currency.clone()),
        (None, true) => None,
        _ => return Err(anyhow!("give an AMOUNT or --none, not both")),
    };
    let response = session
        .products()
        .await?
        .set_approval_limit(pb::SetApprovalLimitRequest {
            context: session.context(),
            product_id: args.product_id.clone(),
            above: above.clone(),
        })
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let limit = match &above {
        Some(_) => format!(
            "disbursements above {} wait for approval",
            money(above.as_ref())
        ),
        None => "none: no disbursement waits for approval".to_owned(),
    };
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("product", args.product_id.clone()),
            ("approval limit", limit),
        ],
        json!({
            "product_id": args.product_id,
            "approval_limit": money_json(above.as_ref()),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reply_is_an_error_and_a_reversal_has_no_figures() {
        let error = figures(Some(Reply::Error(pb::BatchError {
            code: 9,
            message: "no".into(),
        })));
        assert!(error.is_err());
        let reversal = figures(Some(Reply::ReverseEntry(Default::default()))).unwrap();
        assert!(reversal.rows.is_empty());
        assert_eq!(reversal.json, Value::Null);
    }
}
