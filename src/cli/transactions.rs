//! Writes that move money: savings deposits and withdrawals, loan
//! disbursements and repayments, and reversals.

use serde_json::{Value, json};

use super::args::{DisburseArgs, RepayArgs, ReverseArgs, SavingsMoveArgs};
use super::connect::WriteSession;
use super::output::{
    Report, amount, installment_json, money, money_json, section, table, write_report, yes_no,
};
use crate::pb;

/// An amount as typed, in the currency given (empty: the branch's).
fn typed_money(amount: String, currency: Option<String>) -> Option<pb::Money> {
    Some(pb::Money {
        amount,
        currency: currency.unwrap_or_default(),
    })
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

/// The disbursement request the arguments describe.
fn disburse_request(session: &WriteSession, args: DisburseArgs) -> pb::DisburseLoanRequest {
    let terms = pb::LoanTerms {
        principal: typed_money(args.principal, args.currency),
        annual_interest_rate_percent: args.rate,
        interest_method: pb::InterestMethod::from(args.method) as i32,
        installment_count: args.installments,
        repayment_frequency: pb::RepaymentFrequency::from(args.frequency) as i32,
        first_repayment_date: args.first_repayment,
        rounding_multiple: args.rounding.unwrap_or_default(),
    };
    pb::DisburseLoanRequest {
        context: session.context(),
        member_id: args.member_id,
        loan: Some(pb::disburse_loan_request::Loan::Terms(terms)),
        disbursed_on: args.date.unwrap_or_default(),
    }
}

/// `disburse`: prints the loan id and the schedule.
pub async fn disburse(session: &WriteSession, args: DisburseArgs) -> anyhow::Result<Report> {
    let request = disburse_request(session, args);
    let response = session
        .client()
        .await?
        .disburse_loan(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let schedule: Vec<Value> = response
        .schedule
        .iter()
        .map(|i| installment_json(i, false))
        .collect();
    let mut report = write_report(
        &session.request_id,
        &receipt,
        vec![("loan id", response.loan_id.clone())],
        json!({ "loan_id": response.loan_id, "schedule": schedule }),
    );
    report.text += &schedule_section(&response.schedule);
    Ok(report)
}

/// The schedule of a new loan as a table.
fn schedule_section(schedule: &[pb::Installment]) -> String {
    let mut rows = table(
        &["no", "due date", "principal", "interest", "total"],
        &[0, 2, 3, 4],
    );
    for installment in schedule {
        rows.add_row(vec![
            installment.number.to_string(),
            installment.due_date.clone(),
            amount(installment.principal.as_ref()),
            amount(installment.interest.as_ref()),
            amount(installment.total.as_ref()),
        ]);
    }
    section("schedule", &rows, "no installments")
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
    let (interest, principal) = (response.interest_paid, response.principal_paid);
    let outstanding = response.principal_outstanding;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("loan id", args.loan_id.clone()),
            ("interest paid", money(interest.as_ref())),
            ("principal paid", money(principal.as_ref())),
            ("principal outstanding", money(outstanding.as_ref())),
            ("closed", yes_no(response.loan_closed).to_owned()),
        ],
        json!({
            "loan_id": args.loan_id,
            "interest_paid": money_json(interest.as_ref()),
            "principal_paid": money_json(principal.as_ref()),
            "principal_outstanding": money_json(outstanding.as_ref()),
            "loan_closed": response.loan_closed,
        }),
    ))
}

/// `reverse`: prints the reversal's receipt.
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
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![("reverses", format!("entry {}", args.sequence))],
        json!({ "reverses_sequence": args.sequence }),
    ))
}
