//! Conversions between protobuf messages and domain types. Parsing a request
//! checks its shape (ids, amounts, dates, enums) and names the field at fault.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;

use crate::domain::DomainError;
use crate::domain::command::{
    CommandBody, FundingSource, LoanTermsInput, Money, SavingsKind, check_date,
};
use crate::domain::entry::{Entry, EntryBody, Outcome, Repayment, Side};
use crate::domain::error::echo;
use crate::domain::ids::{Actor, RequestId};
use crate::domain::money::{Currency, format_amount, grouped, parse_amount, parse_decimal};
use crate::domain::schedule::{Installment, InterestMethod, LoanTerms, RepaymentFrequency};
use crate::domain::totals::{Overflow, sum};
use crate::pb;
use tonic::Status;

/// Request id and actor from a write's context.
pub fn context(context: Option<pb::WriteContext>) -> Result<(RequestId, Actor), DomainError> {
    let context = context
        .ok_or_else(|| DomainError::invalid("context", "is required (request_id and actor)"))?;
    Ok((
        RequestId::parse("context.request_id", &context.request_id)?,
        Actor::parse("context.actor", &context.actor)?,
    ))
}

/// A currency code; empty means VND.
pub fn currency(field: &str, code: &str) -> Result<Currency, DomainError> {
    if code.is_empty() {
        Ok(Currency::Vnd)
    } else {
        Currency::parse(field, code)
    }
}

/// A positive amount with the currency named, if any (none: the books').
/// Its decimal places are checked here against the named currency, and
/// against the books' currency when the ledger executes it.
pub fn money(field: &str, money: Option<pb::Money>) -> Result<Money, DomainError> {
    let money = money.ok_or_else(|| DomainError::invalid(field, "is required"))?;
    let named = if money.currency.is_empty() {
        None
    } else {
        Some(Currency::parse(
            &format!("{field}.currency"),
            &money.currency,
        )?)
    };
    // Until the books are known, allow the most places any currency has.
    let amount = parse_amount(
        &format!("{field}.amount"),
        &money.amount,
        named.unwrap_or(Currency::MOST_PRECISE),
    )?;
    Ok(Money {
        amount,
        currency: named,
    })
}

/// A date "YYYY-MM-DD"; empty means "not given".
pub fn optional_date(field: &str, text: &str) -> Result<Option<NaiveDate>, DomainError> {
    if text.is_empty() {
        return Ok(None);
    }
    date(field, text).map(Some)
}

/// A required date "YYYY-MM-DD", from 1900-01-01 to 9999-12-31 (the one
/// range every write and read accepts: `domain::command::DATE_MIN..=DATE_MAX`).
pub fn date(field: &str, text: &str) -> Result<NaiveDate, DomainError> {
    let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10);
    let date = parsed.ok_or_else(|| {
        if text.is_empty() {
            DomainError::invalid(field, "is required")
        } else {
            DomainError::invalid(field, format!("{} is not a date YYYY-MM-DD", echo(text)))
        }
    })?;
    check_date(field, date)
}

/// A percentage "0" to "100"; empty gives `default`.
pub fn percent(field: &str, text: &str, default: Decimal) -> Result<Decimal, DomainError> {
    if text.is_empty() {
        return Ok(default);
    }
    let value = parse_decimal(field, text, false)?;
    if value > Decimal::ONE_HUNDRED {
        return Err(DomainError::invalid(
            field,
            format!("{} is more than 100", echo(text)),
        ));
    }
    Ok(value)
}

/// Loan terms as sent.
pub fn loan_terms(terms: Option<pb::LoanTerms>) -> Result<LoanTermsInput, DomainError> {
    let terms = terms.ok_or_else(|| DomainError::invalid("terms", "is required"))?;
    let principal = money("terms.principal", terms.principal)?;
    let interest_method = match pb::InterestMethod::try_from(terms.interest_method) {
        Ok(pb::InterestMethod::Flat) => InterestMethod::Flat,
        Ok(pb::InterestMethod::DecliningBalance) => InterestMethod::DecliningBalance,
        Ok(pb::InterestMethod::Unspecified) => {
            return Err(DomainError::invalid(
                "terms.interest_method",
                "is required (FLAT or DECLINING_BALANCE)",
            ));
        }
        Err(_) => return Err(unknown_enum("terms.interest_method", terms.interest_method)),
    };
    let frequency = match pb::RepaymentFrequency::try_from(terms.repayment_frequency) {
        Ok(pb::RepaymentFrequency::Weekly) => RepaymentFrequency::Weekly,
        Ok(pb::RepaymentFrequency::Fortnightly) => RepaymentFrequency::Fortnightly,
        Ok(pb::RepaymentFrequency::Monthly) => RepaymentFrequency::Monthly,
        Ok(pb::RepaymentFrequency::Unspecified) => {
            return Err(DomainError::invalid(
                "terms.repayment_frequency",
                "is required (WEEKLY, FORTNIGHTLY or MONTHLY)",
            ));
        }
        Err(_) => {
            return Err(unknown_enum(
                "terms.repayment_frequency",
                terms.repayment_frequency,
            ));
        }
    };
    let rate_field = "terms.annual_interest_rate_percent";
    let annual_interest_rate_percent =
        parse_decimal(rate_field, &terms.annual_interest_rate_percent, false)?;
    if annual_interest_rate_percent > Decimal::ONE_HUNDRED {
        return Err(DomainError::invalid(
            rate_field,
            format!("{annual_interest_rate_percent} is more than 100"),
        ));
    }
    let rounding_multiple = if terms.rounding_multiple.is_empty() {
        None
    } else {
        let multiple = parse_amount(
            "terms.rounding_multiple",
            &terms.rounding_multiple,
            principal.currency.unwrap_or(Currency::MOST_PRECISE),
        )?;
        Some(multiple)
    };
    Ok(LoanTermsInput {
        principal,
        annual_interest_rate_percent,
        interest_method,
        installment_count: terms.installment_count,
        frequency,
        first_repayment_date: date("terms.first_repayment_date", &terms.first_repayment_date)?,
        rounding_multiple,
    })
}

/// Savings kind.
pub fn savings_kind(value: i32) -> Result<SavingsKind, DomainError> {
    match pb::SavingsKind::try_from(value) {
        Ok(pb::SavingsKind::Compulsory) => Ok(SavingsKind::Compulsory),
        Ok(pb::SavingsKind::Voluntary) => Ok(SavingsKind::Voluntary),
        Ok(pb::SavingsKind::Unspecified) => Err(DomainError::invalid(
            "kind",
            "is required (COMPULSORY or VOLUNTARY)",
        )),
        Err(_) => Err(unknown_enum("kind", value)),
    }
}

/// A funding source from the wire, in `field`.
pub fn funding_source(field: &str, value: i32) -> Result<FundingSource, DomainError> {
    match pb::FundingSource::try_from(value) {
        Ok(pb::FundingSource::HeadOffice) => Ok(FundingSource::HeadOffice),
        Ok(pb::FundingSource::Capital) => Ok(FundingSource::Capital),
        Ok(pb::FundingSource::Unspecified) => Err(DomainError::invalid(
            field,
            "is required (HEAD_OFFICE or CAPITAL)",
        )),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

/// The kind of savings, for clients.
pub fn savings_kind_out(kind: SavingsKind) -> pb::SavingsKind {
    match kind {
        SavingsKind::Compulsory => pb::SavingsKind::Compulsory,
        SavingsKind::Voluntary => pb::SavingsKind::Voluntary,
    }
}

fn unknown_enum(field: &str, value: i32) -> DomainError {
    DomainError::invalid(field, format!("{value} is not a known value"))
}

/// The kind of account, for clients.
pub fn kind_out(kind: crate::domain::account::AccountKind) -> pb::AccountKind {
    use crate::domain::account::AccountKind;
    match kind {
        AccountKind::Asset => pb::AccountKind::Asset,
        AccountKind::Liability => pb::AccountKind::Liability,
        AccountKind::Equity => pb::AccountKind::Equity,
        AccountKind::Income => pb::AccountKind::Income,
        AccountKind::Expense => pb::AccountKind::Expense,
    }
}

/// The moment asked for in `field` (unset: now).
pub fn as_of(
    field: &str,
    as_of: Option<pb::AsOf>,
) -> Result<crate::domain::books::AsOf, DomainError> {
    use crate::domain::books::AsOf;
    Ok(match as_of.and_then(|a| a.point) {
        None => AsOf::Latest,
        Some(pb::as_of::Point::Date(text)) => AsOf::Date(date(&format!("{field}.date"), &text)?),
        Some(pb::as_of::Point::Sequence(sequence)) => AsOf::Sequence(sequence),
    })
}

/// Money out.
pub fn money_out(amount: Decimal, currency: Currency) -> pb::Money {
    pb::Money {
        amount: format_amount(amount, currency),
        currency: currency.code().to_owned(),
    }
}

/// RFC 3339 time of recording.
pub fn recorded_at(body: &EntryBody) -> String {
    DateTime::<Utc>::from_timestamp_micros(body.recorded_at_micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The receipt of an entry.
pub fn receipt(entry: &Entry) -> pb::EntryReceipt {
    pb::EntryReceipt {
        sequence: entry.body.sequence,
        effective_date: entry.body.effective_date.to_string(),
        recorded_at: recorded_at(&entry.body),
        hash: hex::encode(entry.hash),
    }
}

/// The currency an entry's amounts are in.
pub fn entry_currency(body: &EntryBody) -> Currency {
    body.currency
}

/// A journal entry for auditors.
pub fn journal_entry(
    entry: &Entry,
    previous_hash: [u8; 32],
    currency: Currency,
) -> pb::JournalEntry {
    let body = &entry.body;
    let postings = body
        .postings
        .iter()
        .map(|p| pb::Posting {
            account: p.account.to_string(),
            side: match p.side {
                Side::Debit => pb::PostingSide::Debit,
                Side::Credit => pb::PostingSide::Credit,
            } as i32,
            amount: Some(money_out(p.amount, currency)),
        })
        .collect();
    pb::JournalEntry {
        sequence: body.sequence,
        effective_date: body.effective_date.to_string(),
        recorded_at: recorded_at(body),
        branch_id: body
            .branch
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        actor: body.actor.to_string(),
        principal: body
            .attribution
            .as_ref()
            .map(|a| a.principal.to_string())
            .unwrap_or_default(),
        approved_by: body
            .attribution
            .as_ref()
            .and_then(|a| a.approval.as_ref())
            .map(|approval| approval.by.to_string())
            .unwrap_or_default(),
        request_id: body.request_id.to_string(),
        command: body.command.name().to_owned(),
        description: describe(body, currency),
        reverses_sequence: match body.outcome {
            Outcome::Reversed { sequence, .. } => sequence,
            _ => 0,
        },
        postings,
        previous_hash: hex::encode(previous_hash),
        hash: hex::encode(entry.hash),
        canonical: entry.canonical.clone(),
    }
}

/// One line saying what an entry did.
/// Microseconds since the Unix epoch as RFC 3339, UTC (empty when out of range).
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What an access entry did (never a secret: credentials are digests).
fn describe_access(command: &crate::domain::access::AccessCommand) -> String {
    use crate::domain::access::AccessCommand as A;
    match command {
        A::Bootstrap { principal_id, .. } => {
            format!("first administrator {principal_id} created, with a token")
        }
        A::CreatePrincipal {
            principal_id,
            grants,
            credential,
            ..
        } => {
            let roles: Vec<String> = grants.iter().map(ToString::to_string).collect();
            format!(
                "principal {principal_id} created with roles [{}]{}",
                roles.join(", "),
                if credential.is_some() {
                    " and a token"
                } else {
                    ""
                }
            )
        }
        A::GrantRole {
            principal_id,
            grant,
        } => format!("{grant} granted to {principal_id}"),
        A::RevokeRole {
            principal_id,
            grant,
        } => format!("{grant} revoked from {principal_id}"),
        A::IssueCredential {
            principal_id,
            credential,
        } => match credential.kind {
            crate::domain::access::CredentialKind::Token => {
                format!("token issued to {principal_id}")
            }
            crate::domain::access::CredentialKind::Certificate => {
                format!("certificate registered for {principal_id}")
            }
        },
        A::RevokeCredential { credential_id } => format!("credential {credential_id} revoked"),
        A::RejectRequest { request, reason } => format!("request {request} rejected: {reason}"),
        A::SetApprovalLimit {
            product_id,
            above: Some(limit),
        } => format!(
            "disbursements of product {product_id} above {} need a manager's approval",
            match limit.currency {
                Some(currency) => format!(
                    "{} {currency}",
                    grouped(&format_amount(limit.amount, currency))
                ),
                None => grouped(&limit.amount.to_string()),
            }
        ),
        A::SetApprovalLimit {
            product_id,
            above: None,
        } => format!("disbursements of product {product_id} need no approval"),
    }
}

/// Amounts and counts in it have grouped digits ("10,000,000 VND"), as the
/// CLI shows amounts; entry sequence numbers do not.
pub fn describe(body: &EntryBody, currency: Currency) -> String {
    let show =
        |amount: Decimal| format!("{} {currency}", grouped(&format_amount(amount, currency)));
    let count = |n: usize| grouped(&n.to_string());
    if let Outcome::ApprovalRequested { expires_at_micros } = body.outcome {
        return format!(
            "{} awaiting a manager's approval (until {})",
            body.command.name(),
            rfc3339(expires_at_micros)
        );
    }
    match (&body.command, &body.outcome) {
        (
            CommandBody::CreateBranch {
                branch_id, name, ..
            },
            _,
        ) => format!("branch {branch_id} ({name}) created"),
        (
            CommandBody::CreateCenter {
                center_id, name, ..
            },
            _,
        ) => format!("center {center_id} ({name}) created"),
        (
            CommandBody::CreateGroup {
                group_id,
                center_id,
                name,
                ..
            },
            _,
        ) => {
            format!("group {group_id} ({name}) created in center {center_id}")
        }
        (
            CommandBody::RegisterMember {
                member_id,
                full_name,
                group_id,
                ..
            },
            _,
        ) => {
            format!("member {member_id} ({full_name}) registered in group {group_id}")
        }
        (_, Outcome::SavingsAccountOpened { account, kind }) => {
            format!(
                "{} savings account {account} opened",
                format!("{kind:?}").to_lowercase()
            )
        }
        (
            CommandBody::DepositSavings {
                amount, account_id, ..
            },
            _,
        ) => {
            format!("deposit of {} into {account_id}", show(amount.amount))
        }
        (
            CommandBody::WithdrawSavings {
                amount, account_id, ..
            },
            _,
        ) => {
            format!("withdrawal of {} from {account_id}", show(amount.amount))
        }
        (
            CommandBody::DisburseLoan { member_id, .. },
            Outcome::LoanDisbursed { loan, terms, .. },
        ) => format!(
            "loan {loan} of {} disbursed to {member_id} over {} installments",
            show(terms.principal),
            grouped(&terms.installment_count.to_string())
        ),
        (
            CommandBody::RecordRepayment {
                amount, loan_id, ..
            },
            _,
        ) => {
            format!("repayment of {} on loan {loan_id}", show(amount.amount))
        }
        (
            CommandBody::ReverseEntry {
                sequence, reason, ..
            },
            _,
        ) => format!("reversal of entry {sequence}: {reason}"),
        (CommandBody::Access(access), _) => describe_access(access),
        (
            CommandBody::CreateProduct {
                product_id, rules, ..
            },
            _,
        ) => {
            format!("product {product_id} ({}) defined, version 1", rules.name)
        }
        (CommandBody::UpdateProduct { product_id, .. }, Outcome::ProductDefined { version }) => {
            format!("product {product_id} changed: version {version}")
        }
        (
            CommandBody::DisburseTranche {
                loan_id, amount, ..
            },
            _,
        ) => format!(
            "tranche of {} disbursed on loan {loan_id}",
            show(amount.amount)
        ),
        (
            CommandBody::WriteOffLoan {
                loan_id, reason, ..
            },
            Outcome::WrittenOff { principal, .. },
        ) => {
            format!(
                "loan {loan_id} written off: {} principal ({reason})",
                show(*principal)
            )
        }
        (
            CommandBody::RecordCollectionSheet {
                center_id, lines, ..
            },
            _,
        ) => {
            // Each sum is a posting of the entry, so it fits; were it not
            // to, the description says so rather than fail the page.
            let shown = |total: Result<Decimal, Overflow>| {
                total.map_or_else(|_| "more than a decimal holds".to_owned(), show)
            };
            let repaid = sum(lines
                .iter()
                .filter_map(|l| l.repayment.as_ref())
                .map(|r| r.1.amount));
            let deposited = sum(lines
                .iter()
                .filter_map(|l| l.deposit.as_ref())
                .map(|d| d.1.amount));
            format!(
                "collection sheet of center {center_id}: {} lines, {} repaid, {} deposited",
                count(lines.len()),
                shown(repaid),
                shown(deposited)
            )
        }
        (
            CommandBody::ClosePeriod { branch_id, through },
            Outcome::PeriodClosed { carried, .. },
        ) => {
            if *carried {
                format!(
                    "books of branch {branch_id} closed through {through}; the year's result carried into retained earnings"
                )
            } else {
                format!("books of branch {branch_id} closed through {through}")
            }
        }
        (
            CommandBody::ReopenPeriod {
                branch_id,
                from,
                reason,
            },
            _,
        ) => format!("books of branch {branch_id} reopened from {from}: {reason}"),
        (
            CommandBody::DefineSavingsProduct {
                product_id,
                name,
                rules,
                ..
            },
            Outcome::ProductDefined { version },
        ) => format!(
            "savings product {product_id} ({name}) version {version}: {}% a year, posted {}",
            rules.annual_rate_percent.normalize(),
            rules.posting.name()
        ),
        (
            CommandBody::PostSavingsInterest {
                branch_id,
                period_end,
            },
            Outcome::SavingsInterestPosted { credited, .. },
        ) => format!(
            "savings interest of branch {branch_id} for the period ending {period_end}: {} accounts, {}",
            count(credited.len()),
            sum(credited.iter().map(|c| c.amount))
                .map_or_else(|_| "more than a decimal holds".to_owned(), show)
        ),
        (
            CommandBody::FundBranch {
                branch_id,
                source,
                amount,
                ..
            },
            _,
        ) => format!(
            "branch {branch_id} funded with {} from {source}",
            show(amount.amount)
        ),
        (
            CommandBody::ReturnBranchFunding {
                branch_id,
                source,
                amount,
                ..
            },
            _,
        ) => format!(
            "branch {branch_id} gave {} back to {source}",
            show(amount.amount)
        ),
        (command, _) => command.name().to_owned(),
    }
}

/// A repayment frequency out.
pub fn frequency_out(frequency: RepaymentFrequency) -> pb::RepaymentFrequency {
    match frequency {
        RepaymentFrequency::Weekly => pb::RepaymentFrequency::Weekly,
        RepaymentFrequency::Fortnightly => pb::RepaymentFrequency::Fortnightly,
        RepaymentFrequency::Monthly => pb::RepaymentFrequency::Monthly,
    }
}

/// Loan terms out.
pub fn loan_terms_out(terms: &LoanTerms, currency: Currency) -> pb::LoanTerms {
    pb::LoanTerms {
        principal: Some(money_out(terms.principal, currency)),
        annual_interest_rate_percent: terms.annual_interest_rate_percent.normalize().to_string(),
        interest_method: match terms.interest_method {
            InterestMethod::Flat => pb::InterestMethod::Flat,
            InterestMethod::DecliningBalance => pb::InterestMethod::DecliningBalance,
        } as i32,
        installment_count: terms.installment_count,
        repayment_frequency: frequency_out(terms.frequency) as i32,
        first_repayment_date: terms.first_repayment_date.to_string(),
        rounding_multiple: terms.rounding.multiple.normalize().to_string(),
    }
}

/// An installment out, with what was paid (principal, interest, fee) and its status.
pub fn installment_out(
    installment: &Installment,
    paid: (Decimal, Decimal, Decimal),
    status: pb::InstallmentStatus,
    currency: Currency,
) -> Result<pb::Installment, Overflow> {
    Ok(pb::Installment {
        number: installment.number,
        due_date: installment.due_date.to_string(),
        principal: Some(money_out(installment.principal, currency)),
        interest: Some(money_out(installment.interest, currency)),
        total: Some(money_out(installment_total(installment)?, currency)),
        principal_paid: Some(money_out(paid.0, currency)),
        interest_paid: Some(money_out(paid.1, currency)),
        status: status as i32,
        fee: Some(money_out(installment.fee, currency)),
        fee_paid: Some(money_out(paid.2, currency)),
        balance_after: None,
    })
}

/// An installment's principal, interest and fee together, or an overflow
/// (`Installment::total` would panic).
pub fn installment_total(installment: &Installment) -> Result<Decimal, Overflow> {
    sum([installment.principal, installment.interest, installment.fee])
}

/// A figure worked out from what the ledger holds (entries, loans) that does
/// not fit in a decimal: a fault in the books, not in the request. Logged
/// with `figure`; the client sees INTERNAL.
pub fn stored_figure<T>(figure: &'static str, value: Result<T, Overflow>) -> Result<T, Status> {
    value.map_err(|overflow| {
        tracing::error!(figure, %overflow, "a figure from the ledger's own records overflows");
        Status::internal("internal error; the cause is in the server's log")
    })
}

/// A repayment's allocation out (from a durable entry: an overflow is a
/// fault in the books, INTERNAL).
pub fn allocation_out(
    repayment: &Repayment,
    currency: Currency,
) -> Result<pb::RepaymentAllocation, Status> {
    Ok(pb::RepaymentAllocation {
        loan_id: repayment.loan.to_string(),
        interest_paid: Some(money_out(
            stored_figure("interest_paid", repayment.interest())?,
            currency,
        )),
        principal_paid: Some(money_out(
            stored_figure("principal_paid", repayment.principal())?,
            currency,
        )),
        fees_paid: Some(money_out(
            stored_figure("fees_paid", repayment.fees())?,
            currency,
        )),
        principal_prepaid: Some(money_out(repayment.prepaid, currency)),
        recovery: Some(money_out(repayment.recovery, currency)),
        principal_outstanding: Some(money_out(repayment.principal_outstanding_after, currency)),
        loan_closed: repayment.closed,
    })
}
