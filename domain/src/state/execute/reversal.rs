//! Reversals: what undoing an earlier entry takes, and when it is refused.

use super::*;

impl LedgerState {
    pub(super) fn decide_reversal(
        &self,
        sequence: u64,
        effective_date: Option<NaiveDate>,
        context: ExecContext,
        lookup: &LookupEntry<'_>,
    ) -> Result<Decision, ExecuteError> {
        let original = match lookup(sequence) {
            Ok(Some(body)) if sequence >= 1 && sequence <= self.last_sequence => body,
            Ok(_) => {
                return Err(DomainError::not_found(
                    "sequence",
                    "journal entry",
                    sequence.to_string(),
                )
                .into());
            }
            Err(message) => return Err(ExecuteError::Lookup { sequence, message }),
        };
        if let Outcome::Reversed {
            sequence: reversed, ..
        } = original.outcome
        {
            return Err(DomainError::precondition(
                "sequence",
                format!("entry {sequence} is itself the reversal of entry {reversed}; a reversal cannot be reversed"),
            )
            .into());
        }
        if let Some(by) = self.reversed_by(sequence) {
            return Err(DomainError::precondition(
                "sequence",
                format!("entry {sequence} was already reversed by entry {by}"),
            )
            .into());
        }
        if let CommandBody::Access(access) = &original.command {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) changes access; access is changed by a new grant or \
                     revocation, not reversed",
                    access.name()
                ),
            )
            .into());
        }
        let Some(original_branch) = &original.branch else {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) defines a product; products are changed by a new version, not reversed",
                    original.command.name()
                ),
            )
            .into());
        };
        let branch = self.find_branch("sequence", original_branch)?;
        // An entry of the closed period is reversed after the close, so that
        // the closed books stay as they are.
        let in_closed_period = branch
            .closed
            .filter(|closed| original.effective_date <= closed.through);
        let date = match (effective_date, in_closed_period) {
            (Some(date), _) => self.resolve_date("effective_date", Some(date), branch, context)?,
            (None, Some(closed)) => closed.through.succ_opt().unwrap_or(closed.through),
            (None, None) => original.effective_date,
        };
        not_before(
            "effective_date",
            date,
            original.effective_date,
            "the reversed entry's date",
        )?;
        let undo = self.undo_of(&original, branch, date)?;
        let loan_transaction = matches!(
            undo,
            Undo::Tranche { .. }
                | Undo::Repayment(_)
                | Undo::WriteOff { .. }
                | Undo::CollectionSheet { .. }
        );
        if let Some(closed) = in_closed_period
            && (loan_transaction || matches!(undo, Undo::Disbursement { .. }))
        {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} changed a loan on {}, in branch {}'s closed period (closed through {} by entry {}): a loan's transaction is reversed as of its own date, which would change the closed books; reopen the period to reverse it",
                    original.effective_date, branch.id, closed.through, closed.by
                ),
            )
            .into());
        }
        if loan_transaction && date != original.effective_date {
            // Undone as of its own date, a loan transaction leaves every
            // installment due before any later date as it was: arrears on
            // past dates stay right.
            return Err(DomainError::invalid(
                "effective_date",
                format!(
                    "{date}: entry {sequence} changed a loan, and a loan's transaction is reversed as of its own date, {}",
                    original.effective_date
                ),
            )
            .into());
        }
        let postings = original
            .postings
            .iter()
            .map(|p| Posting {
                account: p.account.clone(),
                side: p.side.opposite(),
                amount: p.amount,
            })
            .collect();
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings,
            outcome: Outcome::Reversed { sequence, undo },
        })
    }

    /// What reversing `original` undoes, if the state allows it.
    pub(super) fn undo_of(
        &self,
        original: &EntryBody,
        branch: &Branch,
        date: NaiveDate,
    ) -> Result<Undo, DomainError> {
        let sequence = original.sequence;
        match (&original.command, &original.outcome) {
            (CommandBody::DepositSavings { amount, .. }, Outcome::SavingsMoved { account, .. }) => {
                self.check_deposit_reversible(sequence, account, amount.amount, branch, date)?;
                Ok(Undo::Deposit {
                    account: account.clone(),
                    amount: amount.amount,
                })
            }
            (
                CommandBody::WithdrawSavings { amount, .. },
                Outcome::SavingsMoved { account, .. },
            ) => Ok(Undo::Withdrawal {
                account: account.clone(),
                amount: amount.amount,
            }),
            (
                _,
                Outcome::LoanDisbursed {
                    loan, terms, fees, ..
                },
            ) => {
                let state = self.find_whole_loan("sequence", loan)?;
                if state.events.len() > 1 {
                    return Err(DomainError::precondition(
                        "sequence",
                        format!(
                            "loan {loan} disbursed in entry {sequence} has later transactions; reverse them first (latest: entry {})",
                            state.events.last().unwrap_or(sequence)
                        ),
                    ));
                }
                Ok(Undo::Disbursement {
                    loan: loan.clone(),
                    principal: terms.principal,
                    fees: loans::charged(fees, FeeCollection::AtDisbursement)?,
                })
            }
            (
                CommandBody::DisburseTranche { amount, .. },
                Outcome::TrancheDisbursed { loan, recast, fees },
            ) => {
                self.check_latest_on_loan(sequence, loan)?;
                Ok(Undo::Tranche {
                    loan: loan.clone(),
                    amount: amount.amount,
                    fees: loans::charged(fees, FeeCollection::AtDisbursement)?,
                    recast: recast.clone(),
                })
            }
            (_, Outcome::RepaymentAllocated(repayment)) => {
                self.check_latest_on_loan(sequence, &repayment.loan)?;
                Ok(Undo::Repayment(repayment.clone()))
            }
            (_, Outcome::WrittenOff { loan, principal }) => {
                self.check_latest_on_loan(sequence, loan)?;
                Ok(Undo::WriteOff {
                    loan: loan.clone(),
                    principal: *principal,
                })
            }
            (
                CommandBody::RecordCollectionSheet {
                    lines: commands, ..
                },
                Outcome::CollectionSheetRecorded { lines },
            ) => {
                for (i, (line, command)) in lines.iter().zip(commands).enumerate() {
                    if let Some(repayment) = &line.repayment {
                        self.check_latest_on_loan(sequence, &repayment.loan)
                            .map_err(|e| e.within(&format!("lines[{i}]")))?;
                    }
                    if let (Some(deposit), Some((_, amount))) = (&line.deposit, &command.deposit) {
                        self.check_deposit_reversible(
                            sequence,
                            &deposit.account,
                            amount.amount,
                            branch,
                            date,
                        )
                        .map_err(|e| e.within(&format!("lines[{i}]")))?;
                    }
                }
                Ok(Undo::CollectionSheet {
                    repayments: lines.iter().filter_map(|l| l.repayment.clone()).collect(),
                    deposits: commands
                        .iter()
                        .filter_map(|c| c.deposit.as_ref())
                        .map(|(account, amount)| SavingsAmount {
                            account: account.clone(),
                            amount: amount.amount,
                        })
                        .collect(),
                })
            }
            (CommandBody::ClosePeriod { .. } | CommandBody::ReopenPeriod { .. }, _) => {
                Err(DomainError::precondition(
                    "sequence",
                    format!(
                        "entry {sequence} ({}) closes or reopens the books; it is not reversed: reopen them (reopen-period) or close them again",
                        original.command.name()
                    ),
                ))
            }
            (
                CommandBody::FundBranch { amount, .. }
                | CommandBody::ReturnBranchFunding { amount, .. },
                Outcome::FundingMoved { source, .. },
            ) => {
                let returned = matches!(original.command, CommandBody::ReturnBranchFunding { .. });
                if !returned {
                    // Undoing a funding takes it out of the source again.
                    self.check_funding_held(
                        "sequence",
                        branch,
                        *source,
                        amount.amount,
                        date,
                        &format!("reversing the funding of entry {sequence}"),
                    )?;
                }
                Ok(Undo::Funding {
                    source: *source,
                    amount: amount.amount,
                    returned,
                })
            }
            (CommandBody::PostSavingsInterest { .. }, _) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} posts savings interest, which is not reversed: the periods after it build on the balances it credited; a different rate applies from a new version of the savings product"
                ),
            )),
            (command, _) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) moves no money; only entries that move money can be reversed",
                    command.name()
                ),
            )),
        }
    }

    pub(super) fn check_deposit_reversible(
        &self,
        sequence: u64,
        account: &SavingsAccountId,
        amount: Decimal,
        branch: &Branch,
        date: NaiveDate,
    ) -> Result<(), DomainError> {
        let state = self.savings.get(account).ok_or_else(|| {
            DomainError::not_found("sequence", "savings account", account.as_str())
        })?;
        let (opening, changes) = self.savings_from(state, date, &mut Default::default())?;
        let (lowest, on) = crate::state::lowest_balance_from(opening, &changes, date);
        if lowest < amount {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "reversing the deposit of {} in entry {sequence} would take savings account {account} below zero on {on} (balance then {})",
                    show(amount, branch.currency),
                    show(lowest, branch.currency)
                ),
            ));
        }
        Ok(())
    }
}
