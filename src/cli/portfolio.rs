//! Portfolio quality for an auditor: the loans in arrears on a date, and
//! the gross loan portfolio with PAR1/30/90, borrowers and the repayment
//! rate over a period.

use serde_json::{Value, json};

use super::args::{ArrearsArgs, PortfolioArgs};
use super::connect::{audit, read_error};
use super::output::{Report, amount, count, fields, money, money_json, section, table};
use crate::pb;

/// "branch TB", or "all branches" for an empty id.
fn scope(branch_id: &str) -> String {
    if branch_id.is_empty() {
        "all branches".to_owned()
    } else {
        format!("branch {branch_id}")
    }
}

/// `arrears`: the loans in arrears, most days overdue first (the server
/// lists them in loan id order, a page at a time: every page is read).
pub async fn arrears(server: &str, args: ArrearsArgs) -> anyhow::Result<Report> {
    let branch_id = args.branch.unwrap_or_default();
    let mut client = audit(server).await?;
    let mut request = pb::ListLoansInArrearsRequest {
        branch_id: branch_id.clone(),
        as_of_date: args.as_of.unwrap_or_default(),
        page_size: crate::api::PAGE_SIZE_MAX,
        page_token: String::new(),
    };
    let mut r = pb::ListLoansInArrearsResponse::default();
    loop {
        let page = client
            .list_loans_in_arrears(request.clone())
            .await
            .map_err(read_error)?
            .into_inner();
        r.loans.extend(page.loans);
        // Every page of the date the first one answered ("today" could change).
        r.as_of_date = page.as_of_date;
        if page.next_page_token.is_empty() {
            break;
        }
        anyhow::ensure!(
            page.next_page_token != request.page_token,
            "ListLoansInArrears gave the same page token twice"
        );
        request.as_of_date = r.as_of_date.clone();
        request.page_token = page.next_page_token;
    }
    r.loans.sort_by(|a, b| {
        b.days_in_arrears
            .cmp(&a.days_in_arrears)
            .then_with(|| a.loan_id.cmp(&b.loan_id))
    });
    let header = [
        "loan",
        "member",
        "days",
        "outstanding",
        "principal overdue",
        "interest overdue",
        "fees overdue",
    ];
    let mut rows = table(&header, &[2, 3, 4, 5, 6]);
    for l in &r.loans {
        rows.add_row(vec![
            l.loan_id.clone(),
            l.member_id.clone(),
            count(l.days_in_arrears),
            amount(l.principal_outstanding.as_ref()),
            amount(l.principal_overdue.as_ref()),
            amount(l.interest_overdue.as_ref()),
            amount(l.fees_overdue.as_ref()),
        ]);
    }
    let title = format!(
        "loans in arrears in {} on {} ({})",
        scope(&branch_id),
        r.as_of_date,
        count(r.loans.len())
    );
    let text = section(&title, &rows, "none").trim_start().to_owned();
    let json = json!({
        "branch_id": branch_id,
        "as_of_date": r.as_of_date,
        "loans": r.loans.iter().map(arrears_json).collect::<Vec<_>>(),
    });
    Ok(Report { text, json })
}

fn arrears_json(l: &pb::LoanArrears) -> Value {
    json!({
        "loan_id": l.loan_id,
        "member_id": l.member_id,
        "days_in_arrears": l.days_in_arrears,
        "principal_outstanding": money_json(l.principal_outstanding.as_ref()),
        "principal_overdue": money_json(l.principal_overdue.as_ref()),
        "interest_overdue": money_json(l.interest_overdue.as_ref()),
        "fees_overdue": money_json(l.fees_overdue.as_ref()),
    })
}

/// `portfolio`: stock figures on a date, flow figures over a period.
pub async fn portfolio(server: &str, args: PortfolioArgs) -> anyhow::Result<Report> {
    let period = match (args.from, args.to) {
        (Some(from_date), Some(to_date)) => Some(pb::DateRange { from_date, to_date }),
        _ => None,
    };
    let request = pb::GetPortfolioQualityRequest {
        branch_id: args.branch.unwrap_or_default(),
        as_of_date: args.as_of.unwrap_or_default(),
        period,
        as_of_sequence: args.as_of_sequence.unwrap_or_default(),
    };
    let r = audit(server)
        .await?
        .get_portfolio_quality(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let period = r.period.clone().unwrap_or_default();
    let mut text = format!("{} on {}\n", scope(&r.branch_id), r.as_of_date);
    text += &fields(&[
        ("as of entry", r.as_of_sequence.to_string()),
        ("gross loan portfolio", money(r.gross_portfolio.as_ref())),
        ("active loans", count(r.active_loans)),
        ("active borrowers", count(r.active_borrowers)),
        ("average outstanding", money(r.average_outstanding.as_ref())),
        (
            "loans in arrears (product tolerance)",
            count(r.loans_in_arrears),
        ),
    ]);
    let mut par = table(
        &[
            "portfolio at risk (standard, no tolerance)",
            "amount",
            "percent",
        ],
        &[1, 2],
    );
    for (name, value, percent) in [
        ("PAR1", &r.par1_amount, &r.par1_percent),
        ("PAR30", &r.par30_amount, &r.par30_percent),
        ("PAR90", &r.par90_amount, &r.par90_percent),
    ] {
        par.add_row(vec![
            name.to_owned(),
            amount(value.as_ref()),
            format!("{percent}%"),
        ]);
    }
    text += &format!("{par}\n");
    text += &format!("\n{} to {}\n", period.from_date, period.to_date);
    text += &fields(&[
        ("due in period", money(r.due_in_period.as_ref())),
        ("collected on time", money(r.collected_on_time.as_ref())),
        ("repayment rate", format!("{}%", r.repayment_rate_percent)),
        ("written off", money(r.written_off.as_ref())),
        ("recovered", money(r.recovered.as_ref())),
    ]);
    let json = json!({
        "branch_id": r.branch_id,
        "as_of_date": r.as_of_date,
        "as_of_sequence": r.as_of_sequence,
        "gross_portfolio": money_json(r.gross_portfolio.as_ref()),
        "active_loans": r.active_loans,
        "active_borrowers": r.active_borrowers,
        "average_outstanding": money_json(r.average_outstanding.as_ref()),
        "loans_in_arrears": r.loans_in_arrears,
        "par1_amount": money_json(r.par1_amount.as_ref()),
        "par1_percent": r.par1_percent,
        "par30_amount": money_json(r.par30_amount.as_ref()),
        "par30_percent": r.par30_percent,
        "par90_amount": money_json(r.par90_amount.as_ref()),
        "par90_percent": r.par90_percent,
        "period": { "from_date": period.from_date, "to_date": period.to_date },
        "due_in_period": money_json(r.due_in_period.as_ref()),
        "collected_on_time": money_json(r.collected_on_time.as_ref()),
        "repayment_rate_percent": r.repayment_rate_percent,
        "written_off": money_json(r.written_off.as_ref()),
        "recovered": money_json(r.recovered.as_ref()),
    });
    Ok(Report { text, json })
}
