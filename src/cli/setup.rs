//! Writes that build a branch's structure: branches, centers, groups,
//! members and their savings accounts.

use serde_json::json;

use super::args::{
    BranchCreateArgs, CenterCreateArgs, GroupCreateArgs, OpenSavingsArgs, RegisterArgs,
};
use super::connect::WriteSession;
use super::output::{Report, enum_name, write_report};
use crate::pb;

/// `branch-create`.
pub async fn branch_create(
    session: &WriteSession,
    args: BranchCreateArgs,
) -> anyhow::Result<Report> {
    let request = pb::CreateBranchRequest {
        context: session.context(),
        branch_id: args.id.clone(),
        name: args.name,
        time_zone: args.time_zone.unwrap_or_default(),
        currency: args.currency.unwrap_or_default(),
        compulsory_savings_percent: args.compulsory_savings_percent.unwrap_or_default(),
        opened_on: args.opened_on.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .create_branch(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    created(session, response.receipt, "branch_id", args.id)
}

/// `center-create`.
pub async fn center_create(
    session: &WriteSession,
    args: CenterCreateArgs,
) -> anyhow::Result<Report> {
    let request = pb::CreateCenterRequest {
        context: session.context(),
        center_id: args.id.clone(),
        branch_id: args.branch,
        name: args.name,
        opened_on: args.opened_on.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .create_center(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    created(session, response.receipt, "center_id", args.id)
}

/// `group-create`.
pub async fn group_create(session: &WriteSession, args: GroupCreateArgs) -> anyhow::Result<Report> {
    let request = pb::CreateGroupRequest {
        context: session.context(),
        group_id: args.id.clone(),
        center_id: args.center,
        name: args.name,
        opened_on: args.opened_on.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .create_group(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    created(session, response.receipt, "group_id", args.id)
}

/// `register`.
pub async fn register(session: &WriteSession, args: RegisterArgs) -> anyhow::Result<Report> {
    let request = pb::RegisterMemberRequest {
        context: session.context(),
        member_id: args.member_id.clone(),
        full_name: args.name,
        group_id: args.group,
        joined_on: args.joined_on.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .register_member(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    created(session, response.receipt, "member_id", args.member_id)
}

/// `open-savings`: prints the new account's id.
pub async fn open_savings(session: &WriteSession, args: OpenSavingsArgs) -> anyhow::Result<Report> {
    let kind = pb::SavingsKind::from(args.kind);
    let request = pb::OpenSavingsAccountRequest {
        context: session.context(),
        member_id: args.member_id,
        kind: kind as i32,
        opened_on: args.opened_on.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .open_savings_account(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let kind = enum_name(kind.as_str_name());
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("account id", response.account_id.clone()),
            ("kind", kind.clone()),
        ],
        json!({ "account_id": response.account_id, "kind": kind }),
    ))
}

/// The report of a create: the receipt and the id created.
fn created(
    session: &WriteSession,
    receipt: Option<pb::EntryReceipt>,
    id_field: &str,
    id: String,
) -> anyhow::Result<Report> {
    let receipt = session.receipt(receipt)?;
    let label = id_field.trim_end_matches("_id");
    let mut result = serde_json::Map::new();
    result.insert(id_field.to_owned(), id.clone().into());
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![("created", format!("{label} {id}"))],
        result.into(),
    ))
}
