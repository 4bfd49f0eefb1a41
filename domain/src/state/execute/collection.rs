//! A center meeting's collection sheet, line by line.

use super::*;

impl LedgerState {
    pub(super) fn decide_collection_sheet(
        &self,
        center_id: &CenterId,
        lines: &[CollectionLine],
        meeting_date: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let center = self
            .centers
            .get(center_id)
            .ok_or_else(|| DomainError::not_found("center_id", "center", center_id.as_str()))?;
        let branch = self.find_branch("center_id", &center.branch)?;
        let date = self.resolve_date("meeting_date", meeting_date, branch, context)?;
        check_len("lines", lines.len(), COLLECTION_LINES_MAX, false, "lines")?;
        let mut loans_seen = BTreeSet::new();
        let mut accounts_seen = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(lines.len());
        let mut postings = Postings::default();
        for (i, line) in lines.iter().enumerate() {
            let outcome = self
                .decide_line(
                    line,
                    center,
                    branch,
                    date,
                    &mut loans_seen,
                    &mut accounts_seen,
                )
                .map_err(|e| e.within(&format!("lines[{i}]")))?;
            postings.extend(outcome.1)?;
            outcomes.push(outcome.0);
        }
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings: postings.into_vec(),
            outcome: Outcome::CollectionSheetRecorded { lines: outcomes },
        })
    }

    pub(super) fn decide_line(
        &self,
        line: &CollectionLine,
        center: &Center,
        branch: &Branch,
        date: NaiveDate,
        loans_seen: &mut BTreeSet<LoanId>,
        accounts_seen: &mut BTreeSet<SavingsAccountId>,
    ) -> Result<(LineOutcome, Vec<Posting>), DomainError> {
        let member = self.find_member("member_id", &line.member_id)?;
        if member.center != center.id {
            return Err(DomainError::precondition(
                "member_id",
                format!(
                    "member {} meets at center {}, not {}",
                    member.id, member.center, center.id
                ),
            ));
        }
        if line.repayment.is_none() && line.deposit.is_none() {
            return Err(DomainError::invalid(
                "",
                "has neither a repayment nor a deposit",
            ));
        }
        let mut outcome = LineOutcome {
            repayment: None,
            deposit: None,
        };
        let mut postings = Vec::new();
        if let Some((loan_id, amount)) = &line.repayment {
            let loan = self.find_loan("loan_id", loan_id)?;
            if *loan.member() != member.id {
                return Err(DomainError::precondition(
                    "loan_id",
                    format!("loan {loan_id} is not member {}'s", member.id),
                ));
            }
            if !loans_seen.insert(loan_id.clone()) {
                return Err(DomainError::invalid(
                    "loan_id",
                    format!("loan {loan_id} is on an earlier line too; one line per loan"),
                ));
            }
            let (repayment, lines) = self.decide_repayment(&loan, *amount, date).map_err(|e| {
                e.renamed("amount", "repayment")
                    .renamed("effective_date", "meeting_date")
            })?;
            outcome.repayment = Some(repayment);
            postings.extend(lines);
        }
        if let Some((account_id, amount)) = &line.deposit {
            let account = self.savings.get(account_id).ok_or_else(|| {
                DomainError::not_found("savings_account_id", "savings account", account_id.as_str())
            })?;
            if account.member != member.id {
                return Err(DomainError::precondition(
                    "savings_account_id",
                    format!("savings account {account_id} is not member {}'s", member.id),
                ));
            }
            if !accounts_seen.insert(account_id.clone()) {
                return Err(DomainError::invalid(
                    "savings_account_id",
                    format!(
                        "savings account {account_id} is on an earlier line too; one line per account"
                    ),
                ));
            }
            let (balance_after, lines) = self
                .savings_move(account, branch, *amount, date, true, date)
                .map_err(|e| {
                    e.renamed("amount", "deposit")
                        .renamed("effective_date", "meeting_date")
                })?;
            outcome.deposit = Some(SavingsAmount {
                account: account_id.clone(),
                amount: balance_after,
            });
            postings.extend(lines);
        }
        Ok((outcome, postings))
    }
}
