//! Writes that move money: savings deposits and withdrawals, loan
//! disbursements, tranches, repayments and write-offs, reversals, and a
//! branch's funding from head office or capital.
//!
//! Reversals, write-offs, and disbursements or tranches above their
//! product's approval limit may be recorded as requests waiting for another
//! manager's approval (maker-checker): then the reply has only the receipt
//! and the request, and the command prints that instead of its figures.

use anyhow::bail;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::args::{
    ClosePeriodArgs, DisburseArgs, FundingArgs, PostInterestArgs, ReopenPeriodArgs, RepayArgs,
    ReverseArgs, SavingsMoveArgs, TrancheArgs, WriteOffArgs,
};
use super::connect::WriteSession;
use super::output::{
    Report, amount, count, installment_json, money, money_json, product_label, section, table,
    write_report, yes_no,
};
use crate::pb;

/// An amount as typed, in the currency given (empty: the branch's).
pub fn typed_money(amount: String, currency: Option<String>) -> Option<pb::Money> {
    Some(pb::Money {
        amount,
        currency: currency.unwrap_or_default(),
    })
}

/// What a write recorded as a request waiting for a manager's approval
/// prints instead of its figures (the server sends none): `rows` and
/// `result` (what names the write), then the request and until when it may
/// be approved.
pub fn pending_report(
    request_id: &str,
    receipt: &pb::EntryReceipt,
    pending: &pb::PendingApproval,
    mut rows: Vec<(&'static str, String)>,
    mut result: Value,
) -> Report {
    // The request's id is the sequence of the entry that recorded it.
    let request = match pending.request {
        0 => receipt.sequence,
        request => request,
    };
    rows.extend([
        ("status", "waiting for a manager's approval".to_owned()),
        ("request", request.to_string()),
        ("expires at", pending.expires_at.clone()),
        (
            "note",
            format!("nothing changes until another manager of the branch runs `approve {request}`"),
        ),
    ]);
    if let Some(object) = result.as_object_mut() {
        object.insert("status".into(), "pending_approval".into());
        object.insert(
            "pending".into(),
            json!({ "request": request, "expires_at": pending.expires_at }),
        );
    }
    write_report(request_id, receipt, rows, result)
}

/// `deposit`: prints the balance after.
pub async fn deposit(session: &WriteSession, args: SavingsMoveArgs) -> anyhow::Result<Report> {
    let request = pb::DepositSavingsRequest {
        context: session.context(),
        account_id: args.account_id.clone(),
        amount: typed_money(args.amount, args.currency),
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .deposit_savings(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    moved(session, response.receipt, args.account_id, response.balance)
}

/// `withdraw`: prints the balance after.
pub async fn withdraw(session: &WriteSession, args: SavingsMoveArgs) -> anyhow::Result<Report> {
    let request = pb::WithdrawSavingsRequest {
        context: session.context(),
        account_id: args.account_id.clone(),
        amount: typed_money(args.amount, args.currency),
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .withdraw_savings(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    moved(session, response.receipt, args.account_id, response.balance)
}

fn moved(
    session: &WriteSession,
    receipt: Option<pb::EntryReceipt>,
    account_id: String,
    balance: Option<pb::Money>,
) -> anyhow::Result<Report> {
    let receipt = session.receipt(receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("account id", account_id.clone()),
            ("balance", money(balance.as_ref())),
        ],
        json!({ "account_id": account_id, "balance": money_json(balance.as_ref()) }),
    ))
}

/// The disbursement request the arguments describe: an application under
/// `--product`, or terms in full (clap makes sure the terms are complete).
fn disburse_request(
    session: &WriteSession,
    args: DisburseArgs,
) -> anyhow::Result<pb::DisburseLoanRequest> {
    let principal = typed_money(args.principal, args.currency);
    let loan = match args.product {
        Some(product_id) => pb::disburse_loan_request::Loan::Application(pb::LoanApplication {
            product_id,
            principal,
            approved_principal: args.approved.unwrap_or_default(),
            annual_interest_rate_percent: args.rate.unwrap_or_default(),
            installment_count: args.installments.unwrap_or_default(),
            first_repayment_date: args.first_repayment,
        }),
        None => {
            let (Some(rate), Some(method), Some(installments), Some(frequency)) =
                (args.rate, args.method, args.installments, args.frequency)
            else {
                bail!("without --product, give --rate, --method, --installments and --frequency");
            };
            pb::disburse_loan_request::Loan::Terms(pb::LoanTerms {
                principal,
                annual_interest_rate_percent: rate,
                interest_method: pb::InterestMethod::from(method) as i32,
                installment_count: installments,
                repayment_frequency: pb::RepaymentFrequency::from(frequency) as i32,
                first_repayment_date: args.first_repayment,
                rounding_multiple: args.rounding.unwrap_or_default(),
            })
        }
    };
    Ok(pb::DisburseLoanRequest {
        context: session.context(),
        member_id: args.member_id,
        loan: Some(loan),
        disbursed_on: args.date.unwrap_or_default(),
    })
}

/// `disburse`: prints the loan id, its product, the fees, the cash paid out
/// and the schedule.
pub async fn disburse(session: &WriteSession, args: DisburseArgs) -> anyhow::Result<Report> {
    let member_id = args.member_id.clone();
    let request = disburse_request(session, args)?;
    let response = session
        .client()
        .await?
        .disburse_loan(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    if let Some(pending) = &response.pending {
        return Ok(pending_report(
            &session.request_id,
            &receipt,
            pending,
            vec![("member id", member_id.clone())],
            json!({ "member_id": member_id }),
        ));
    }
    let fees = response.fees_at_disbursement.as_ref();
    let paid_out = response.paid_out.as_ref();
    let mut report = write_report(
        &session.request_id,
        &receipt,
        vec![
            ("loan id", response.loan_id.clone()),
            (
                "product",
                product_label(&response.product_id, response.product_version),
            ),
            ("fees at disbursement", money(fees)),
            ("paid out", money(paid_out)),
        ],
        json!({
            "loan_id": response.loan_id,
            "product_id": response.product_id,
            "product_version": response.product_version,
            "fees_at_disbursement": money_json(fees),
            "paid_out": money_json(paid_out),
            "schedule": schedule_json(&response.schedule),
        }),
    );
    report.text += &schedule_section("schedule", &response.schedule, None);
    Ok(report)
}

/// A new or recomputed schedule as JSON.
pub fn schedule_json(schedule: &[pb::Installment]) -> Vec<Value> {
    schedule
        .iter()
        .map(|i| installment_json(i, false))
        .collect()
}

/// A new or recomputed schedule as a table, with a totals row when `totals`
/// (principal, interest, fees, repayment) is given.
pub fn schedule_section(
    title: &str,
    schedule: &[pb::Installment],
    totals: Option<[Option<&pb::Money>; 4]>,
) -> String {
    let header = [
        "no",
        "due date",
        "principal",
        "interest",
        "fee",
        "total",
        "balance after",
    ];
    let mut rows = table(&header, &[0, 2, 3, 4, 5, 6]);
    for installment in schedule {
        rows.add_row(vec![
            installment.number.to_string(),
            installment.due_date.clone(),
            amount(installment.principal.as_ref()),
            amount(installment.interest.as_ref()),
            amount(installment.fee.as_ref()),
            amount(installment.total.as_ref()),
            amount(installment.balance_after.as_ref()),
        ]);
    }
    if let (Some([principal, interest, fees, total]), false) = (totals, schedule.is_empty()) {
        rows.add_row(vec![
            "total".to_owned(),
            String::new(),
            amount(principal),
            amount(interest),
            amount(fees),
            amount(total),
            String::new(),
        ]);
    }
    section(title, &rows, "no installments")
}

/// `tranche`: prints the tranche, its fees, the cash paid out and the
/// recomputed installments.
pub async fn tranche(session: &WriteSession, args: TrancheArgs) -> anyhow::Result<Report> {
    let request = pb::DisburseTrancheRequest {
        context: session.context(),
        loan_id: args.loan_id.clone(),
        amount: typed_money(args.amount, args.currency),
        disbursed_on: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .disburse_tranche(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    if let Some(pending) = &response.pending {
        return Ok(pending_report(
            &session.request_id,
            &receipt,
            pending,
            vec![("loan id", args.loan_id.clone())],
            json!({ "loan_id": args.loan_id }),
        ));
    }
    let principal = response.principal_disbursed.as_ref();
    let fees = response.fees_at_disbursement.as_ref();
    let paid_out = difference(principal, fees);
    let mut report = write_report(
        &session.request_id,
        &receipt,
        vec![
            ("loan id", args.loan_id.clone()),
            ("principal disbursed", money(principal)),
            ("fees at disbursement", money(fees)),
            ("paid out", money(paid_out.as_ref())),
        ],
        json!({
            "loan_id": args.loan_id,
            "principal_disbursed": money_json(principal),
            "fees_at_disbursement": money_json(fees),
            "paid_out": money_json(paid_out.as_ref()),
            "schedule": schedule_json(&response.schedule),
        }),
    );
    report.text += &schedule_section("recomputed installments", &response.schedule, None);
    Ok(report)
}

/// `a - b`, exact, in `a`'s currency; `None` unless both are decimals.
pub fn difference(a: Option<&pb::Money>, b: Option<&pb::Money>) -> Option<pb::Money> {
    let (a, b) = (a?, b?);
    let value = a.amount.parse::<Decimal>().ok()? - b.amount.parse::<Decimal>().ok()?;
    Some(pb::Money {
        amount: value.normalize().to_string(),
        currency: a.currency.clone(),
    })
}

/// `write-off`: prints the principal moved to loan loss.
pub async fn write_off(session: &WriteSession, args: WriteOffArgs) -> anyhow::Result<Report> {
    let request = pb::WriteOffLoanRequest {
        context: session.context(),
        loan_id: args.loan_id.clone(),
        reason: args.reason,
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .write_off_loan(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    if let Some(pending) = &response.pending {
        return Ok(pending_report(
            &session.request_id,
            &receipt,
            pending,
            vec![("loan id", args.loan_id.clone())],
            json!({ "loan_id": args.loan_id }),
        ));
    }
    let written_off = response.principal_written_off.as_ref();
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("loan id", args.loan_id.clone()),
            ("principal written off", money(written_off)),
        ],
        json!({
            "loan_id": args.loan_id,
            "principal_written_off": money_json(written_off),
        }),
    ))
}

/// `close-period`: prints the close and the result it carried.
pub async fn close_period(session: &WriteSession, args: ClosePeriodArgs) -> anyhow::Result<Report> {
    let request = pb::ClosePeriodRequest {
        context: session.context(),
        branch_id: args.branch_id.clone(),
        through: args.through.clone(),
    };
    let response = session
        .client()
        .await?
        .close_period(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let carried = response.result_carried.as_ref();
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("branch", args.branch_id.clone()),
            ("closed through", args.through.clone()),
            (
                "carried to retained earnings",
                if response.carried_to_retained_earnings {
                    money(carried)
                } else {
                    "no (not a year end)".to_owned()
                },
            ),
        ],
        json!({
            "branch_id": args.branch_id,
            "closed_through": args.through,
            "carried_to_retained_earnings": response.carried_to_retained_earnings,
            "result_carried": money_json(carried),
        }),
    ))
}

/// `reopen-period`: asks to reopen a branch's books (a second manager approves).
pub async fn reopen_period(
    session: &WriteSession,
    args: ReopenPeriodArgs,
) -> anyhow::Result<Report> {
    let request = pb::ReopenPeriodRequest {
        context: session.context(),
        branch_id: args.branch_id.clone(),
        from: args.from.clone(),
        reason: args.reason,
    };
    let response = session
        .client()
        .await?
        .reopen_period(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    if let Some(pending) = &response.pending {
        return Ok(pending_report(
            &session.request_id,
            &receipt,
            pending,
            vec![("branch", args.branch_id.clone())],
            json!({ "branch_id": args.branch_id }),
        ));
    }
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("branch", args.branch_id.clone()),
            ("closed through", response.closed_through.clone()),
        ],
        json!({ "branch_id": args.branch_id, "closed_through": response.closed_through }),
    ))
}

/// `post-interest`: prints each account credited.
pub async fn post_interest(
    session: &WriteSession,
    args: PostInterestArgs,
) -> anyhow::Result<Report> {
    let request = pb::PostSavingsInterestRequest {
        context: session.context(),
        branch_id: args.branch_id.clone(),
        period_end: args.period_end.clone(),
    };
    let response = session
        .client()
        .await?
        .post_savings_interest(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let mut report = write_report(
        &session.request_id,
        &receipt,
        vec![
            ("branch", args.branch_id.clone()),
            ("period end", args.period_end.clone()),
            ("accounts credited", count(response.credits.len())),
            ("interest posted", money(response.total.as_ref())),
        ],
        json!({
            "branch_id": args.branch_id,
            "period_end": args.period_end,
            "total": money_json(response.total.as_ref()),
            "credits": response.credits.iter().map(|c| json!({
                "account_id": c.account_id,
                "amount": money_json(c.amount.as_ref()),
            })).collect::<Vec<_>>(),
        }),
    );
    let mut rows = table(&["account", "interest"], &[1]);
    for credit in &response.credits {
        rows.add_row(vec![
            credit.account_id.clone(),
            amount(credit.amount.as_ref()),
        ]);
    }
    report.text += &section("Credited", &rows, "none");
    Ok(report)
}

/// `repay`: prints how the payment was allocated.
pub async fn repay(session: &WriteSession, args: RepayArgs) -> anyhow::Result<Report> {
    let request = pb::RecordRepaymentRequest {
        context: session.context(),
        loan_id: args.loan_id.clone(),
        amount: typed_money(args.amount, args.currency),
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .record_repayment(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    // A server without the allocation sends only its first four figures.
    let allocation = response
        .allocation
        .unwrap_or_else(|| pb::RepaymentAllocation {
            loan_id: args.loan_id.clone(),
            interest_paid: response.interest_paid,
            principal_paid: response.principal_paid,
            principal_outstanding: response.principal_outstanding,
            loan_closed: response.loan_closed,
            ..pb::RepaymentAllocation::default()
        });
    let mut result = json!({ "loan_id": args.loan_id });
    if let (Some(object), Value::Object(figures)) =
        (result.as_object_mut(), allocation_json(&allocation))
    {
        object.extend(figures);
    }
    let mut rows = vec![("loan id", args.loan_id)];
    rows.extend(allocation_fields(&allocation));
    Ok(write_report(&session.request_id, &receipt, rows, result))
}

/// How a payment was allocated, in text.
pub fn allocation_fields(a: &pb::RepaymentAllocation) -> Vec<(&'static str, String)> {
    vec![
        ("fees paid", money(a.fees_paid.as_ref())),
        ("interest paid", money(a.interest_paid.as_ref())),
        ("principal paid", money(a.principal_paid.as_ref())),
        ("principal prepaid", money(a.principal_prepaid.as_ref())),
        ("recovery", money(a.recovery.as_ref())),
        (
            "principal outstanding",
            money(a.principal_outstanding.as_ref()),
        ),
        ("closed", yes_no(a.loan_closed).to_owned()),
    ]
}

/// How a payment was allocated, in JSON.
pub fn allocation_json(a: &pb::RepaymentAllocation) -> Value {
    json!({
        "fees_paid": money_json(a.fees_paid.as_ref()),
        "interest_paid": money_json(a.interest_paid.as_ref()),
        "principal_paid": money_json(a.principal_paid.as_ref()),
        "principal_prepaid": money_json(a.principal_prepaid.as_ref()),
        "recovery": money_json(a.recovery.as_ref()),
        "principal_outstanding": money_json(a.principal_outstanding.as_ref()),
        "loan_closed": a.loan_closed,
    })
}

/// `reverse`: prints the reversal's receipt (or the request waiting for
/// approval).
pub async fn reverse(session: &WriteSession, args: ReverseArgs) -> anyhow::Result<Report> {
    let request = pb::ReverseEntryRequest {
        context: session.context(),
        sequence: args.sequence,
        reason: args.reason,
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .reverse_entry(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let rows = vec![("reverses", format!("entry {}", args.sequence))];
    let result = json!({ "reverses_sequence": args.sequence });
    Ok(match &response.pending {
        Some(pending) => pending_report(&session.request_id, &receipt, pending, rows, result),
        None => write_report(&session.request_id, &receipt, rows, result),
    })
}

/// `fund`: prints the source's account and what the branch holds from it.
pub async fn fund(session: &WriteSession, args: FundingArgs) -> anyhow::Result<Report> {
    let request = pb::FundBranchRequest {
        context: session.context(),
        branch_id: args.branch_id.clone(),
        source: pb::FundingSource::from(args.source) as i32,
        amount: typed_money(args.amount, args.currency),
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .fund_branch(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    funding_report(
        session,
        response.receipt,
        &args.branch_id,
        response.account,
        response.source_balance,
    )
}

/// `return-funding`: prints the source's account and what the branch
/// still holds from it.
pub async fn return_funding(session: &WriteSession, args: FundingArgs) -> anyhow::Result<Report> {
    let request = pb::ReturnBranchFundingRequest {
        context: session.context(),
        branch_id: args.branch_id.clone(),
        source: pb::FundingSource::from(args.source) as i32,
        amount: typed_money(args.amount, args.currency),
        effective_date: args.date.unwrap_or_default(),
    };
    let response = session
        .client()
        .await?
        .return_branch_funding(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    funding_report(
        session,
        response.receipt,
        &args.branch_id,
        response.account,
        response.source_balance,
    )
}

fn funding_report(
    session: &WriteSession,
    receipt: Option<pb::EntryReceipt>,
    branch_id: &str,
    account: String,
    held: Option<pb::Money>,
) -> anyhow::Result<Report> {
    let receipt = session.receipt(receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("branch", branch_id.to_owned()),
            ("source account", account.clone()),
            ("held from the source", money(held.as_ref())),
        ],
        json!({
            "branch_id": branch_id,
            "account": account,
            "source_balance": money_json(held.as_ref()),
        }),
    ))
}
