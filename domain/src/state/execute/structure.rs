//! Branches, centers and groups, the product catalogue, and access control.

use super::*;

impl LedgerState {
    /// Decides an access command: no postings, in no branch, dated today
    /// in the institution's default zone.
    pub(super) fn decide_access(
        &self,
        command: &Command,
        access: &AccessCommand,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let principal = command
            .principal
            .as_ref()
            .expect("authorize refused a command without a principal");
        self.access
            .decide(access, principal, context.recorded_at.timestamp_micros())?;
        if let AccessCommand::SetApprovalLimit { product_id, above } = access {
            let versions = self.products.get(product_id).ok_or_else(|| {
                DomainError::not_found("product_id", "product", product_id.as_str())
            })?;
            if let (Some(limit), Some(latest)) = (above, versions.last()) {
                let books = latest.rules.currency;
                limit.check("above", books, &format_args!("product {product_id} lends"))?;
            }
        }
        Ok(Decision {
            branch: None,
            effective_date: today_in(TIME_ZONE_DEFAULT, context.recorded_at),
            outcome: Outcome::AccessChanged,
            postings: Vec::new(),
        })
    }

    pub(super) fn decide_create_branch(
        &self,
        branch_id: &BranchId,
        time_zone: &str,
        compulsory_savings_percent: Decimal,
        opened_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        if self.branches.contains_key(branch_id) {
            return Err(DomainError::already_exists(
                "branch_id",
                "branch",
                branch_id.as_str(),
            ));
        }
        if Tz::from_str(time_zone).is_err() {
            return Err(DomainError::invalid(
                "time_zone",
                format!(
                    "{} is not an IANA time zone such as \"Asia/Ho_Chi_Minh\"",
                    echo(time_zone)
                ),
            ));
        }
        if compulsory_savings_percent.is_sign_negative()
            || compulsory_savings_percent > Decimal::ONE_HUNDRED
        {
            return Err(DomainError::invalid(
                "compulsory_savings_percent",
                format!("{compulsory_savings_percent} is outside 0 to 100"),
            ));
        }
        let today = today_in(time_zone, context.recorded_at);
        let date = check_date("opened_on", opened_on.unwrap_or(today))?;
        not_in_future("opened_on", date, today, time_zone)?;
        Ok(Decision::structural(branch_id.clone(), date))
    }

    pub(super) fn decide_product(
        &self,
        product_id: &ProductId,
        rules: &ProductRules,
        effective_from: Option<NaiveDate>,
        create: bool,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        // The catalogue is the institution's: its calendar is that of the
        // default zone.
        let today = today_in(TIME_ZONE_DEFAULT, context.recorded_at);
        let date = check_date("effective_from", effective_from.unwrap_or(today))?;
        not_in_future("effective_from", date, today, TIME_ZONE_DEFAULT)?;
        let versions = self.products.get(product_id);
        if let Some(latest) = versions.and_then(|v| v.last())
            && !create
            && date < latest.effective_from
        {
            return Err(DomainError::invalid(
                "effective_from",
                format!(
                    "{date} is before {}, from which version {} of product {product_id} applies",
                    latest.effective_from, latest.version
                ),
            ));
        }
        let version = match (versions.and_then(|v| v.last()), create) {
            (Some(_), true) => {
                return Err(DomainError::already_exists(
                    "product_id",
                    "product",
                    product_id.as_str(),
                ));
            }
            (None, false) => {
                return Err(DomainError::not_found(
                    "product_id",
                    "product",
                    product_id.as_str(),
                ));
            }
            (None, true) => 1,
            (Some(latest), false) => {
                if latest.rules == *rules {
                    return Err(DomainError::precondition(
                        "rules",
                        format!(
                            "are the same as version {} of product {product_id}; nothing to change",
                            latest.version
                        ),
                    ));
                }
                latest.version + 1
            }
        };
        rules.validate()?;
        Ok(Decision {
            branch: None,
            effective_date: date,
            outcome: Outcome::ProductDefined { version },
            postings: Vec::new(),
        })
    }
}
