//! Reads of one thing: an account's balance, a member, a loan, a loan's
//! payoff quote, the journal's head; and the whole product catalogue,
//! page after page.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::args::{BalanceArgs, LoanArgs, MemberArgs, PayoffArgs};
use super::connect::{audit, products, read_error};
use super::output::{
    Report, amount, count, enum_name, fields, grouped, installment_json, is_zero, money,
    money_json, product_label, section, table, yes_no,
};
use crate::pb;

/// `balance`.
pub async fn balance(server: &str, args: BalanceArgs) -> anyhow::Result<Report> {
    let request = pb::GetBalanceRequest {
        as_of: args.as_of.to_pb(),
        account: args.account,
    };
    let r = audit(server)
        .await?
        .get_balance(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let kind = enum_name(r.kind().as_str_name());
    let text = fields(&[
        ("account", r.account.clone()),
        ("kind", kind.clone()),
        ("balance", money(r.balance.as_ref())),
        ("debits", money(r.debits.as_ref())),
        ("credits", money(r.credits.as_ref())),
        ("as of entry", r.as_of_sequence.to_string()),
    ]);
    let json = json!({
        "account": r.account,
        "kind": kind,
        "balance": money_json(r.balance.as_ref()),
        "debits": money_json(r.debits.as_ref()),
        "credits": money_json(r.credits.as_ref()),
        "as_of_sequence": r.as_of_sequence,
    });
    Ok(Report { text, json })
}

/// `member`: details, savings accounts and loans.
pub async fn member(server: &str, args: MemberArgs) -> anyhow::Result<Report> {
    let request = pb::GetMemberRequest {
        member_id: args.member_id,
        as_of_sequence: args.as_of_sequence.unwrap_or_default(),
    };
    let r = audit(server)
        .await?
        .get_member(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let mut text = fields(&[
        ("member id", r.member_id.clone()),
        ("name", r.full_name.clone()),
        ("group", r.group_id.clone()),
        ("center", r.center_id.clone()),
        ("branch", r.branch_id.clone()),
        ("joined on", r.joined_on.clone()),
        ("as of entry", r.as_of_sequence.to_string()),
    ]);
    text += &savings_section(&r.savings_accounts);
    for note in shortfall_notes(&r.savings_accounts, &r.loans) {
        text += &format!("{}\n", note.text());
    }
    text += &loans_section(&r.loans);
    let json = json!({
        "member_id": r.member_id,
        "full_name": r.full_name,
        "group_id": r.group_id,
        "center_id": r.center_id,
        "branch_id": r.branch_id,
        "joined_on": r.joined_on,
        "savings_accounts": r.savings_accounts.iter().map(|a| savings_json(a, &r.loans)).collect::<Vec<_>>(),
        "loans": r.loans.iter().map(loan_summary_json).collect::<Vec<_>>(),
        "as_of_sequence": r.as_of_sequence,
    });
    Ok(Report { text, json })
}

fn savings_section(accounts: &[pb::SavingsAccount]) -> String {
    let header = [
        "account",
        "kind",
        "opened on",
        "balance",
        "required minimum",
    ];
    let mut rows = table(&header, &[3, 4]);
    for a in accounts {
        rows.add_row(vec![
            a.account_id.clone(),
            enum_name(a.kind().as_str_name()),
            a.opened_on.clone(),
            amount(a.balance.as_ref()),
            amount(a.required_minimum.as_ref()),
        ]);
    }
    section("savings accounts", &rows, "none")
}

fn savings_json(a: &pb::SavingsAccount, loans: &[pb::LoanSummary]) -> Value {
    let shortfall = Shortfall::of(a, loans);
    json!({
        "account_id": a.account_id,
        "kind": enum_name(a.kind().as_str_name()),
        "opened_on": a.opened_on,
        "balance": money_json(a.balance.as_ref()),
        "required_minimum": money_json(a.required_minimum.as_ref()),
        "shortfall": shortfall.as_ref().map(|s| json!({
            "amount": s.amount.to_string(),
            "currency": s.currency,
        })),
        "required_by_loans": shortfall.map(|s| s.loans),
    })
}

/// A compulsory savings account holding less than the minimum its
/// member's active loans require: why the member view shows a required
/// minimum above the balance, and what it means.
#[derive(Debug, PartialEq)]
struct Shortfall {
    account_id: String,
    /// Required minimum less balance, positive.
    amount: Decimal,
    required: String,
    currency: String,
    /// The member's active loans, which require the minimum.
    loans: Vec<String>,
}

impl Shortfall {
    /// The shortfall of `account`, or `None` when it holds its minimum.
    fn of(account: &pb::SavingsAccount, loans: &[pb::LoanSummary]) -> Option<Shortfall> {
        let decimal = |m: Option<&pb::Money>| m.and_then(|m| m.amount.parse::<Decimal>().ok());
        let required = decimal(account.required_minimum.as_ref())?;
        let balance = decimal(account.balance.as_ref())?;
        let amount = required
            .checked_sub(balance)
            .filter(|a| a.is_sign_positive() && !a.is_zero())?;
        let minimum = account.required_minimum.as_ref()?;
        Some(Shortfall {
            account_id: account.account_id.clone(),
            amount: amount.normalize(),
            required: minimum.amount.clone(),
            currency: minimum.currency.clone(),
            loans: loans
                .iter()
                .filter(|l| l.status() == pb::LoanStatus::Active)
                .map(|l| l.loan_id.clone())
                .collect(),
        })
    }

    /// "TB-0001/C1 is 290,000 VND short of its required minimum of 490,000 VND, ..."
    fn text(&self) -> String {
        let show = |amount: &str| match self.currency.as_str() {
            "" => grouped(amount),
            currency => format!("{} {currency}", grouped(amount)),
        };
        let why = match self.loans.as_slice() {
            [] => "her loans require".to_owned(),
            [loan] => format!("her active loan {loan} requires"),
            loans => format!("her active loans {} require", loans.join(", ")),
        };
        format!(
            "{} is {} short of its required minimum of {}: the compulsory savings {why} \
             while outstanding. Nothing can be withdrawn from it until deposits make up the {}.",
            self.account_id,
            show(&self.amount.to_string()),
            show(&self.required),
            show(&self.amount.to_string()),
        )
    }
}

/// The shortfall of each of `accounts` that holds less than its minimum.
fn shortfall_notes(accounts: &[pb::SavingsAccount], loans: &[pb::LoanSummary]) -> Vec<Shortfall> {
    accounts
        .iter()
        .filter_map(|account| Shortfall::of(account, loans))
        .collect()
}

fn loans_section(loans: &[pb::LoanSummary]) -> String {
    let header = ["loan", "status", "disbursed on", "principal", "outstanding"];
    let mut rows = table(&header, &[3, 4]);
    for l in loans {
        rows.add_row(vec![
            l.loan_id.clone(),
            enum_name(l.status().as_str_name()),
            l.disbursed_on.clone(),
            amount(l.principal.as_ref()),
            amount(l.principal_outstanding.as_ref()),
        ]);
    }
    section("loans", &rows, "none")
}

fn loan_summary_json(l: &pb::LoanSummary) -> Value {
    json!({
        "loan_id": l.loan_id,
        "status": enum_name(l.status().as_str_name()),
        "disbursed_on": l.disbursed_on,
        "principal": money_json(l.principal.as_ref()),
        "principal_outstanding": money_json(l.principal_outstanding.as_ref()),
    })
}

/// `loan`: product, terms, outstanding, overdue and arrears figures, the
/// payoff amount, the schedule.
pub async fn loan(server: &str, args: LoanArgs) -> anyhow::Result<Report> {
    let request = pb::GetLoanRequest {
        loan_id: args.loan_id,
        as_of_date: args.as_of.unwrap_or_default(),
        as_of_sequence: args.as_of_sequence.unwrap_or_default(),
    };
    let r = audit(server)
        .await?
        .get_loan(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let terms = r.terms.clone().unwrap_or_default();
    let mut rows = vec![
        ("loan id", r.loan_id.clone()),
        ("member", r.member_id.clone()),
        ("branch", r.branch_id.clone()),
        ("status", enum_name(r.status().as_str_name())),
        ("product", product_label(&r.product_id, r.product_version)),
        ("disbursed on", r.disbursed_on.clone()),
    ];
    rows.extend(terms_fields(&terms));
    rows.extend([
        ("approved principal", money(r.approved_principal.as_ref())),
        ("principal disbursed", money(r.principal_disbursed.as_ref())),
        ("as of", r.as_of_date.clone()),
        ("as of entry", r.as_of_sequence.to_string()),
        (
            "principal outstanding",
            money(r.principal_outstanding.as_ref()),
        ),
        (
            "interest outstanding",
            money(r.interest_outstanding.as_ref()),
        ),
        ("principal overdue", money(r.principal_overdue.as_ref())),
        ("interest overdue", money(r.interest_overdue.as_ref())),
        ("fees overdue", money(r.fees_overdue.as_ref())),
        ("in arrears", yes_no(r.in_arrears).to_owned()),
        ("days in arrears", count(r.days_in_arrears)),
        ("payoff amount", money(r.payoff_amount.as_ref())),
    ]);
    if r.status() == pb::LoanStatus::WrittenOff
        || !is_zero(r.written_off.as_ref())
        || !is_zero(r.recovered.as_ref())
    {
        rows.extend([
            ("written off", money(r.written_off.as_ref())),
            ("recovered", money(r.recovered.as_ref())),
        ]);
    }
    let text = fields(&rows) + &loan_schedule_section(&r.schedule);
    Ok(Report {
        text,
        json: loan_json(&r, &terms),
    })
}

fn terms_fields(terms: &pb::LoanTerms) -> Vec<(&'static str, String)> {
    let currency = terms.principal.as_ref().map_or("", |m| m.currency.as_str());
    let rounding = match (terms.rounding_multiple.as_str(), currency) {
        ("", _) => "currency unit".to_owned(),
        (multiple, "") => grouped(multiple),
        (multiple, currency) => format!("{} {currency}", grouped(multiple)),
    };
    vec![
        ("principal", money(terms.principal.as_ref())),
        (
            "interest rate",
            format!("{}% a year", terms.annual_interest_rate_percent),
        ),
        ("method", enum_name(terms.interest_method().as_str_name())),
        (
            "installments",
            format!(
                "{} {}",
                count(terms.installment_count),
                enum_name(terms.repayment_frequency().as_str_name())
            ),
        ),
        ("first repayment", terms.first_repayment_date.clone()),
        ("rounding multiple", rounding),
    ]
}

fn loan_schedule_section(schedule: &[pb::Installment]) -> String {
    let header = [
        "no",
        "due date",
        "principal",
        "interest",
        "fee",
        "total",
        "principal paid",
        "interest paid",
        "fee paid",
        "status",
    ];
    let mut rows = table(&header, &[0, 2, 3, 4, 5, 6, 7, 8]);
    for i in schedule {
        rows.add_row(vec![
            i.number.to_string(),
            i.due_date.clone(),
            amount(i.principal.as_ref()),
            amount(i.interest.as_ref()),
            amount(i.fee.as_ref()),
            amount(i.total.as_ref()),
            amount(i.principal_paid.as_ref()),
            amount(i.interest_paid.as_ref()),
            amount(i.fee_paid.as_ref()),
            enum_name(i.status().as_str_name()),
        ]);
    }
    if let Some(totals) = schedule_totals(schedule) {
        let mut row = vec!["total".to_owned(), String::new()];
        row.extend(totals.iter().map(|sum| grouped(&sum.to_string())));
        row.push(String::new());
        rows.add_row(row);
    }
    section("schedule", &rows, "no installments")
}

/// Each amount column of a loan's schedule added up (principal, interest,
/// fee, total, and what was paid of each part), exactly: the clerk checks
/// the loan's principal and what it will cost at a glance. None for an
/// empty schedule, or one with an amount that is not a decimal.
fn schedule_totals(schedule: &[pb::Installment]) -> Option<[Decimal; 7]> {
    if schedule.is_empty() {
        return None;
    }
    let mut totals = [Decimal::ZERO; 7];
    for i in schedule {
        let parts = [
            &i.principal,
            &i.interest,
            &i.fee,
            &i.total,
            &i.principal_paid,
            &i.interest_paid,
            &i.fee_paid,
        ];
        for (sum, part) in totals.iter_mut().zip(parts) {
            let value = match part {
                Some(money) => money.amount.parse().ok()?,
                None => Decimal::ZERO,
            };
            *sum = sum.checked_add(value)?;
        }
    }
    Some(totals.map(|sum| sum.normalize()))
}

fn loan_json(r: &pb::GetLoanResponse, terms: &pb::LoanTerms) -> Value {
    json!({
        "loan_id": r.loan_id,
        "member_id": r.member_id,
        "branch_id": r.branch_id,
        "status": enum_name(r.status().as_str_name()),
        "as_of_sequence": r.as_of_sequence,
        "terms": {
            "principal": money_json(terms.principal.as_ref()),
            "annual_interest_rate_percent": terms.annual_interest_rate_percent,
            "interest_method": enum_name(terms.interest_method().as_str_name()),
            "installment_count": terms.installment_count,
            "repayment_frequency": enum_name(terms.repayment_frequency().as_str_name()),
            "first_repayment_date": terms.first_repayment_date,
            "rounding_multiple": terms.rounding_multiple,
        },
        "product_id": r.product_id,
        "product_version": r.product_version,
        "approved_principal": money_json(r.approved_principal.as_ref()),
        "principal_disbursed": money_json(r.principal_disbursed.as_ref()),
        "disbursed_on": r.disbursed_on,
        "as_of_date": r.as_of_date,
        "principal_outstanding": money_json(r.principal_outstanding.as_ref()),
        "interest_outstanding": money_json(r.interest_outstanding.as_ref()),
        "principal_overdue": money_json(r.principal_overdue.as_ref()),
        "interest_overdue": money_json(r.interest_overdue.as_ref()),
        "fees_overdue": money_json(r.fees_overdue.as_ref()),
        "in_arrears": r.in_arrears,
        "days_in_arrears": r.days_in_arrears,
        "payoff_amount": money_json(r.payoff_amount.as_ref()),
        "written_off": money_json(r.written_off.as_ref()),
        "recovered": money_json(r.recovered.as_ref()),
        "schedule": r.schedule.iter().map(|i| installment_json(i, true)).collect::<Vec<_>>(),
    })
}

/// `payoff`: what closes a loan on a date, part by part.
pub async fn payoff(server: &str, args: PayoffArgs) -> anyhow::Result<Report> {
    let request = pb::GetPayoffQuoteRequest {
        loan_id: args.loan_id,
        as_of_date: args.date.unwrap_or_default(),
    };
    let r = audit(server)
        .await?
        .get_payoff_quote(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let text = fields(&[
        ("loan id", r.loan_id.clone()),
        ("as of", r.as_of_date.clone()),
        ("principal", money(r.principal.as_ref())),
        ("interest due", money(r.interest_due.as_ref())),
        ("interest accrued", money(r.interest_accrued.as_ref())),
        ("fees", money(r.fees.as_ref())),
        ("payoff amount", money(r.total.as_ref())),
        ("interest saved", money(r.interest_saved.as_ref())),
    ]);
    let json = json!({
        "loan_id": r.loan_id,
        "as_of_date": r.as_of_date,
        "principal": money_json(r.principal.as_ref()),
        "interest_due": money_json(r.interest_due.as_ref()),
        "interest_accrued": money_json(r.interest_accrued.as_ref()),
        "fees": money_json(r.fees.as_ref()),
        "total": money_json(r.total.as_ref()),
        "interest_saved": money_json(r.interest_saved.as_ref()),
    });
    Ok(Report { text, json })
}

/// `info`: the journal's head.
pub async fn info(server: &str) -> anyhow::Result<Report> {
    let r = audit(server)
        .await?
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map_err(read_error)?
        .into_inner();
    let text = fields(&[
        ("last sequence", r.last_sequence.to_string()),
        ("last hash", r.last_hash.clone()),
    ]);
    let json = json!({ "last_sequence": r.last_sequence, "last_hash": r.last_hash });
    Ok(Report { text, json })
}

/// Every product's latest version, following the pages of `ListProducts`.
pub async fn all_products(server: &str) -> anyhow::Result<Vec<pb::Product>> {
    let mut client = products(server).await?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListProductsRequest {
            page_size: crate::api::PAGE_SIZE_MAX,
            page_token: page_token.clone(),
        };
        let page = client
            .list_products(request)
            .await
            .map_err(read_error)?
            .into_inner();
        all.extend(page.products);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        anyhow::ensure!(
            page.next_page_token != page_token,
            "ListProducts gave the same page token twice"
        );
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vnd(amount: &str) -> Option<pb::Money> {
        Some(pb::Money {
            amount: amount.to_owned(),
            currency: "VND".to_owned(),
        })
    }

    fn compulsory(balance: &str, required: &str) -> pb::SavingsAccount {
        pb::SavingsAccount {
            account_id: "TB-0001/C1".to_owned(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: "2024-01-03".to_owned(),
            balance: vnd(balance),
            required_minimum: vnd(required),
        }
    }

    fn loan(id: &str, status: pb::LoanStatus) -> pb::LoanSummary {
        pb::LoanSummary {
            loan_id: id.to_owned(),
            status: status as i32,
            ..pb::LoanSummary::default()
        }
    }

    #[test]
    fn a_minimum_above_the_balance_is_explained_by_the_active_loans() {
        let loans = [
            loan("TB-0001/L1", pb::LoanStatus::Closed),
            loan("TB-0001/L2", pb::LoanStatus::Active),
        ];
        let notes = shortfall_notes(&[compulsory("200000", "490000")], &loans);
        assert_eq!(notes.len(), 1);
        assert_eq!(
            notes[0].text(),
            "TB-0001/C1 is 290,000 VND short of its required minimum of 490,000 VND: the \
             compulsory savings her active loan TB-0001/L2 requires while outstanding. Nothing \
             can be withdrawn from it until deposits make up the 290,000 VND."
        );
        let both = [
            loan("TB-0001/L1", pb::LoanStatus::Active),
            loan("TB-0001/L2", pb::LoanStatus::Active),
        ];
        let notes = shortfall_notes(&[compulsory("0", "75000")], &both);
        assert!(
            notes[0]
                .text()
                .contains("her active loans TB-0001/L1, TB-0001/L2 require"),
            "{}",
            notes[0].text()
        );
    }

    #[test]
    fn an_account_holding_its_minimum_has_no_note() {
        let loans = [loan("TB-0001/L1", pb::LoanStatus::Active)];
        for (balance, required) in [("490000", "490000"), ("500000", "490000"), ("50000", "0")] {
            let notes = shortfall_notes(&[compulsory(balance, required)], &loans);
            assert!(notes.is_empty(), "{balance} against {required}: {notes:?}");
        }
    }
}
