//! Applying sealed entries to the state. Deterministic; checks that the entry
//! fits the state (sequence, chain, balance) and fails rather than guess.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;
use crate::domain::entry::{Recast, Repayment};
use crate::domain::product::FeeCollection;

impl LedgerState {
    /// Applies `entry`, which must follow the last applied one.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), ApplyError> {
        let body = &entry.body;
        let fail = |message: String| ApplyError {
            sequence: body.sequence,
            message,
        };
        if body.sequence != self.last_sequence + 1 {
            return Err(fail(format!(
                "expected sequence {}",
                self.last_sequence + 1
            )));
        }
        if super::super::entry::chain_hash(&self.last_hash(), &entry.canonical) != entry.hash {
            return Err(fail("hash does not chain to the previous entry".into()));
        }
        if !body.is_balanced() {
            return Err(fail("debits do not equal credits".into()));
        }
        self.apply_outcome(body).map_err(fail)?;
        for posting in &body.postings {
            let balance = self.balances.entry(posting.account.clone()).or_default();
            let total = match posting.side {
                super::super::entry::Side::Debit => &mut balance.debits,
                super::super::entry::Side::Credit => &mut balance.credits,
            };
            *total = total
                .checked_add(posting.amount)
                .ok_or_else(|| fail("balance overflow".into()))?;
            self.changed
                .note(|| StateKey::Balance(posting.account.clone()));
        }
        if !self.skip_requests {
            self.requests.insert(body.request_id.clone(), body.sequence);
        }
        self.last_sequence = body.sequence;
        self.last_hash = Some(entry.hash);
        self.changed.note(|| StateKey::Head);
        Ok(())
    }

    fn apply_outcome(&mut self, body: &EntryBody) -> Result<(), String> {
        let date = body.effective_date;
        match (&body.command, &body.outcome) {
            (
                CommandBody::CreateBranch {
                    branch_id,
                    name,
                    time_zone,
                    currency,
                    compulsory_savings_percent,
                    ..
                },
                _,
            ) => {
                let branch = Branch {
                    id: branch_id.clone(),
                    name: name.clone(),
                    time_zone: time_zone.clone(),
                    currency: *currency,
                    compulsory_savings_percent: *compulsory_savings_percent,
                    opened_on: date,
                };
                self.branches.insert(branch_id.clone(), branch);
                self.changed.note(|| StateKey::Branch(branch_id.clone()));
            }
            (
                CommandBody::CreateCenter {
                    center_id,
                    branch_id,
                    name,
                    ..
                },
                _,
            ) => {
                let center = Center {
                    id: center_id.clone(),
                    branch: branch_id.clone(),
                    name: name.clone(),
                    opened_on: date,
                };
                self.centers.insert(center_id.clone(), center);
                self.changed.note(|| StateKey::Center(center_id.clone()));
            }
            (
                CommandBody::CreateGroup {
                    group_id,
                    center_id,
                    name,
                    ..
                },
                _,
            ) => {
                let branch = self
                    .centers
                    .get(center_id)
                    .ok_or("unknown center")?
                    .branch
                    .clone();
                let group = Group {
                    id: group_id.clone(),
                    center: center_id.clone(),
                    branch,
                    name: name.clone(),
                    opened_on: date,
                };
                self.groups.insert(group_id.clone(), group);
                self.changed.note(|| StateKey::Group(group_id.clone()));
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
                let group = self.groups.get(group_id).ok_or("unknown group")?;
                let member = Member {
                    id: member_id.clone(),
                    full_name: full_name.clone(),
                    group: group_id.clone(),
                    center: group.center.clone(),
                    branch: group.branch.clone(),
                    joined_on: date,
                    savings_accounts: Vec::new(),
                    loans: Vec::new(),
                    voluntary_accounts_opened: 0,
                    borrower_steps: Vec::new(),
                };
                self.members.insert(member_id.clone(), member);
                self.changed.note(|| StateKey::Member(member_id.clone()));
            }
            (
                CommandBody::OpenSavingsAccount { member_id, .. },
                Outcome::SavingsAccountOpened { account, kind },
            ) => {
                let member = self.members.get_mut(member_id).ok_or("unknown member")?;
                member.savings_accounts.push(account.clone());
                if *kind == SavingsKind::Voluntary {
                    member.voluntary_accounts_opened += 1;
                }
                self.changed.note(|| StateKey::Member(member_id.clone()));
                let savings = SavingsAccount {
                    id: account.clone(),
                    member: member_id.clone(),
                    branch: member.branch.clone(),
                    kind: *kind,
                    opened_on: date,
                    changes: BTreeMap::new(),
                };
                self.savings.insert(account.clone(), savings);
                self.changed.note(|| StateKey::Savings(account.clone()));
                self.refresh_borrower_steps(member_id)?;
            }
            (CommandBody::DepositSavings { amount, .. }, Outcome::SavingsMoved { account, .. }) => {
                self.change_savings(account, date, amount.amount)?;
                self.add_day(&entry_branch(body)?, date, |d| {
                    d.savings_change += amount.amount
                });
            }
            (
                CommandBody::WithdrawSavings { amount, .. },
                Outcome::SavingsMoved { account, .. },
            ) => {
                self.change_savings(account, date, -amount.amount)?;
                self.add_day(&entry_branch(body)?, date, |d| {
                    d.savings_change -= amount.amount
                });
            }
            (
                CommandBody::CreateProduct {
                    product_id, rules, ..
                }
                | CommandBody::UpdateProduct {
                    product_id, rules, ..
                },
                Outcome::ProductDefined { version },
            ) => {
                let versions = self.products.entry(product_id.clone()).or_default();
                if versions.len() as u32 + 1 != *version {
                    return Err(format!(
                        "product {product_id} version {version} out of order"
                    ));
                }
                versions.push(ProductVersion {
                    id: product_id.clone(),
                    version: *version,
                    effective_from: date,
                    rules: rules.clone(),
                });
                self.changed.note(|| StateKey::Product(product_id.clone()));
            }
            (CommandBody::DisburseLoan { member_id, .. }, Outcome::LoanDisbursed { .. }) => {
                self.apply_disbursement(body, member_id)?;
            }
            (
                CommandBody::DisburseTranche { amount, .. },
                Outcome::TrancheDisbursed { loan, fees, recast },
            ) => {
                let branch = entry_branch(body)?;
                let fees = loans::charged(fees, FeeCollection::AtDisbursement);
                self.apply_tranche(
                    &branch,
                    date,
                    loan,
                    amount.amount,
                    fees,
                    recast,
                    Some(body.sequence),
                )?;
            }
            (_, Outcome::RepaymentAllocated(repayment)) => {
                let branch = entry_branch(body)?;
                self.apply_repayment(&branch, date, repayment, Some(body.sequence))?;
            }
            (_, Outcome::WrittenOff { loan, principal }) => {
                let branch = entry_branch(body)?;
                self.apply_write_off(&branch, date, loan, *principal, Some(body.sequence))?;
            }
            (
                CommandBody::RecordCollectionSheet {
                    lines: commands, ..
                },
                Outcome::CollectionSheetRecorded { lines },
            ) => {
                let branch = entry_branch(body)?;
                if commands.len() != lines.len() {
                    return Err("collection sheet lines do not match their outcomes".into());
                }
                for line in lines {
                    if let Some(repayment) = &line.repayment {
                        self.apply_repayment(&branch, date, repayment, Some(body.sequence))?;
                    }
                }
                for command in commands {
                    if let Some((account, amount)) = &command.deposit {
                        self.change_savings(account, date, amount.amount)?;
                        self.add_day(&branch, date, |d| d.savings_change += amount.amount);
                    }
                }
            }
            (CommandBody::ReverseEntry { .. }, Outcome::Reversed { sequence, undo }) => {
                let branch = entry_branch(body)?;
                self.apply_undo(&branch, date, undo)?;
                self.reversed.insert(*sequence, body.sequence);
                self.changed.note(|| StateKey::Reversed(*sequence));
            }
            (command, outcome) => {
                return Err(format!(
                    "outcome {outcome:?} does not fit command {}",
                    command.name()
                ));
            }
        }
        Ok(())
    }

    fn apply_disbursement(&mut self, body: &EntryBody, member_id: &MemberId) -> Result<(), String> {
        let Outcome::LoanDisbursed {
            loan,
            product,
            terms,
            policy,
            approved_principal,
            currency,
            fees,
            schedule,
        } = &body.outcome
        else {
            return Err("not a disbursement".into());
        };
        let branch = entry_branch(body)?;
        let date = body.effective_date;
        let state = Loan {
            id: loan.clone(),
            member: member_id.clone(),
            branch: branch.clone(),
            currency: *currency,
            product: product.clone(),
            policy: policy.clone(),
            terms: terms.clone(),
            disbursed_on: date,
            approved_principal: *approved_principal,
            status: LoanStatus::Active,
            installments: schedule
                .iter()
                .cloned()
                .map(InstallmentState::unpaid)
                .collect(),
            last_repayment_on: date,
            principal_changes: BTreeMap::from([(date, terms.principal)]),
            paid_changes: BTreeMap::new(),
            principal_unpaid: terms.principal,
            interest_unpaid: schedule.iter().map(|i| i.interest).sum(),
            fee_unpaid: schedule.iter().map(|i| i.fee).sum(),
            first_unpaid: 0,
            disbursed: terms.principal,
            tranches: 1,
            principal_prepaid: Decimal::ZERO,
            written_off: Decimal::ZERO,
            recovered: Decimal::ZERO,
            ended_on: None,
            events: vec![body.sequence],
        };
        let mut state = state;
        advance_first_unpaid(&mut state);
        self.loans.insert(loan.clone(), state);
        self.changed.note(|| StateKey::Loan(loan.clone()));
        self.changed.note(|| StateKey::LoanProgress(loan.clone()));
        let member = self.members.get_mut(member_id).ok_or("unknown member")?;
        member.loans.push(loan.clone());
        self.changed.note(|| StateKey::Member(member_id.clone()));
        let principal = terms.principal;
        let fees = loans::charged(fees, FeeCollection::AtDisbursement);
        self.add_day(&branch, date, |d| {
            d.loans_disbursed += 1;
            d.amount_disbursed += principal;
            d.portfolio_change += principal;
            d.fees_collected += fees;
        });
        self.refresh_borrower_steps(member_id)
    }

    /// Applies a tranche (`sequence` is its entry) or, with `None`, undoes it.
    #[allow(clippy::too_many_arguments)]
    fn apply_tranche(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        loan_id: &LoanId,
        amount: Decimal,
        fees: Decimal,
        recast: &Recast,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let (from, to) = if forward {
            (&recast.before, &recast.after)
        } else {
            (&recast.after, &recast.before)
        };
        let loan = self.loans.get_mut(loan_id).ok_or("unknown loan")?;
        replace_installments(loan, from, to)?;
        loan.disbursed += sign * amount;
        track_event(loan, sequence, date)?;
        change_on(
            &mut loan.principal_changes,
            date,
            sign * amount,
            loan.disbursed_on,
        );
        if forward {
            loan.tranches += 1;
        } else {
            loan.tranches -= 1;
        }
        let member = loan.member.clone();
        self.changed.note(|| StateKey::Loan(loan_id.clone()));
        self.changed
            .note(|| StateKey::LoanProgress(loan_id.clone()));
        self.add_day(branch, date, |d| {
            d.amount_disbursed += sign * amount;
            d.portfolio_change += sign * amount;
            d.fees_collected += sign * fees;
        });
        self.refresh_borrower_steps(&member)
    }

    /// Applies a repayment (`sequence` is its entry) or, with `None`, undoes it.
    fn apply_repayment(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        repayment: &Repayment,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let loan_id = &repayment.loan;
        let loan = self.loans.get_mut(loan_id).ok_or("unknown loan")?;
        track_event(loan, sequence, date)?;
        if !repayment.recovery.is_zero() {
            loan.recovered += sign * repayment.recovery;
            self.changed
                .note(|| StateKey::LoanProgress(loan_id.clone()));
            let recovery = repayment.recovery;
            self.add_day(branch, date, |d| d.recovered += sign * recovery);
            return Ok(());
        }
        if let Some(recast) = &repayment.recast {
            let (from, to) = if forward {
                (&recast.before, &recast.after)
            } else {
                (&recast.after, &recast.before)
            };
            if forward {
                replace_installments(loan, from, to)?;
                apply_payments(loan, &repayment.payments, sign, date)?;
            } else {
                apply_payments(loan, &repayment.payments, sign, date)?;
                replace_installments(loan, from, to)?;
            }
            self.changed.note(|| StateKey::Loan(loan_id.clone()));
        } else {
            apply_payments(loan, &repayment.payments, sign, date)?;
        }
        let prepaid = repayment.prepaid;
        loan.principal_prepaid += sign * prepaid;
        let principal = repayment.principal();
        change_on(
            &mut loan.principal_changes,
            date,
            -sign * principal,
            loan.disbursed_on,
        );
        change_on(
            &mut loan.paid_changes,
            date,
            sign * repayment.to_installments(),
            loan.disbursed_on,
        );
        if forward && repayment.closed {
            loan.status = LoanStatus::Closed;
            loan.ended_on = Some(date);
        } else if !forward && loan.status == LoanStatus::Closed {
            loan.status = LoanStatus::Active;
            loan.ended_on = None;
        }
        if loan.principal_unpaid.is_sign_negative() || loan.interest_unpaid.is_sign_negative() {
            return Err(format!("loan {loan_id} would owe less than nothing"));
        }
        // A repayment on the latest date that leaves principal outstanding
        // cannot change when the loan is active: skip recounting borrowers.
        let at_the_end = loan
            .principal_changes
            .last_key_value()
            .is_some_and(|(last, _)| *last <= date);
        let unchanged = forward && at_the_end && loan.principal_unpaid > Decimal::ZERO;
        let member = loan.member.clone();
        self.changed
            .note(|| StateKey::LoanProgress(loan_id.clone()));
        let (interest, fees) = (repayment.interest(), repayment.fees());
        self.add_day(branch, date, |d| {
            d.principal_collected += sign * principal;
            d.interest_collected += sign * interest;
            d.fees_collected += sign * fees;
            d.portfolio_change -= sign * principal;
        });
        if unchanged {
            return Ok(());
        }
        self.refresh_borrower_steps(&member)
    }

    /// Applies a write-off (`sequence` is its entry) or, with `None`, undoes it.
    fn apply_write_off(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        loan_id: &LoanId,
        principal: Decimal,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let loan = self.loans.get_mut(loan_id).ok_or("unknown loan")?;
        track_event(loan, sequence, date)?;
        if forward {
            loan.status = LoanStatus::WrittenOff;
            loan.written_off = principal;
            loan.ended_on = Some(date);
        } else {
            loan.status = LoanStatus::Active;
            loan.written_off = Decimal::ZERO;
            loan.ended_on = None;
        }
        change_on(
            &mut loan.principal_changes,
            date,
            -sign * principal,
            loan.disbursed_on,
        );
        let member = loan.member.clone();
        self.changed
            .note(|| StateKey::LoanProgress(loan_id.clone()));
        self.add_day(branch, date, |d| {
            d.written_off += sign * principal;
            d.portfolio_change -= sign * principal;
        });
        self.refresh_borrower_steps(&member)
    }

    fn apply_undo(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        undo: &Undo,
    ) -> Result<(), String> {
        match undo {
            Undo::Deposit { amount, account } => {
                self.change_savings(account, date, -*amount)?;
                self.add_day(branch, date, |d| d.savings_change -= *amount);
            }
            Undo::Withdrawal { amount, account } => {
                self.change_savings(account, date, *amount)?;
                self.add_day(branch, date, |d| d.savings_change += *amount);
            }
            Undo::Disbursement {
                loan,
                principal,
                fees,
            } => {
                let state = self.loans.get_mut(loan).ok_or("unknown loan")?;
                track_event(state, None, date)?;
                state.status = LoanStatus::Cancelled;
                state.ended_on = Some(date);
                *state.principal_changes.entry(date).or_default() -= *principal;
                let member = state.member.clone();
                self.changed.note(|| StateKey::LoanProgress(loan.clone()));
                self.add_day(branch, date, |d| {
                    d.loans_disbursed -= 1;
                    d.amount_disbursed -= *principal;
                    d.portfolio_change -= *principal;
                    d.fees_collected -= *fees;
                });
                self.refresh_borrower_steps(&member)?;
            }
            Undo::Tranche {
                loan,
                amount,
                fees,
                recast,
            } => {
                self.apply_tranche(branch, date, loan, *amount, *fees, recast, None)?;
            }
            Undo::Repayment(repayment) => {
                self.apply_repayment(branch, date, repayment, None)?;
            }
            Undo::WriteOff { loan, principal } => {
                self.apply_write_off(branch, date, loan, *principal, None)?;
            }
            Undo::CollectionSheet {
                repayments,
                deposits,
            } => {
                for repayment in repayments {
                    self.apply_repayment(branch, date, repayment, None)?;
                }
                for deposit in deposits {
                    self.change_savings(&deposit.account, date, -deposit.amount)?;
                    self.add_day(branch, date, |d| d.savings_change -= deposit.amount);
                }
            }
        }
        Ok(())
    }

    /// Records a savings balance change on its effective date.
    fn change_savings(
        &mut self,
        account: &SavingsAccountId,
        date: NaiveDate,
        change: Decimal,
    ) -> Result<(), String> {
        let state = self
            .savings
            .get_mut(account)
            .ok_or("unknown savings account")?;
        let total = state.changes.entry(date).or_default();
        *total += change;
        if total.is_zero() {
            state.changes.remove(&date);
        }
        self.changed.note(|| StateKey::Savings(account.clone()));
        Ok(())
    }

    /// Replaces a member's contribution to her branch's borrower counts.
    fn refresh_borrower_steps(&mut self, member_id: &MemberId) -> Result<(), String> {
        let member = self.members.get(member_id).ok_or("unknown member")?;
        let changes: Vec<&BTreeMap<NaiveDate, Decimal>> = member
            .loans
            .iter()
            .filter_map(|id| self.loans.get(id))
            .map(|loan| &loan.principal_changes)
            .collect();
        let savings_opened_on = member
            .savings_accounts
            .iter()
            .filter_map(|id| self.savings.get(id))
            .map(|a| a.opened_on)
            .min();
        let new_steps = borrower_steps(&changes, savings_opened_on);
        if new_steps == member.borrower_steps {
            return Ok(());
        }
        let branch = member.branch.clone();
        let old_steps = std::mem::take(
            &mut self
                .members
                .get_mut(member_id)
                .ok_or("unknown member")?
                .borrower_steps,
        );
        for step in &old_steps {
            self.add_day(&branch, step.date, |d| {
                d.borrowers_change -= step.borrower;
                d.borrowers_with_savings_change -= step.with_savings;
            });
        }
        for step in &new_steps {
            self.add_day(&branch, step.date, |d| {
                d.borrowers_change += step.borrower;
                d.borrowers_with_savings_change += step.with_savings;
            });
        }
        self.members
            .get_mut(member_id)
            .ok_or("unknown member")?
            .borrower_steps = new_steps;
        self.changed.note(|| StateKey::Member(member_id.clone()));
        Ok(())
    }

    fn add_day(&mut self, branch: &BranchId, date: NaiveDate, change: impl FnOnce(&mut DayTotals)) {
        let days = self.days.entry(branch.clone()).or_default();
        let day = days.entry(date).or_default();
        change(day);
        if day.is_empty() {
            days.remove(&date);
        }
        self.changed.note(|| StateKey::Day(branch.clone(), date));
    }
}

/// The branch of an entry that must have one.
fn entry_branch(body: &EntryBody) -> Result<BranchId, String> {
    body.branch
        .clone()
        .ok_or_else(|| format!("entry {} names no branch", body.sequence))
}

/// Adds `change` to `map[date]`, dropping a zero (except on `keep`, the
/// disbursement date, which always stays).
fn change_on(
    map: &mut BTreeMap<NaiveDate, Decimal>,
    date: NaiveDate,
    change: Decimal,
    keep: NaiveDate,
) {
    let total = map.entry(date).or_default();
    *total += change;
    if total.is_zero() && date != keep {
        map.remove(&date);
    }
}

/// Records entry `sequence` as the loan's latest transaction on `date`, or
/// with `None`, forgets its latest one (a reversal).
fn track_event(loan: &mut Loan, sequence: Option<u64>, date: NaiveDate) -> Result<(), String> {
    match sequence {
        Some(sequence) => {
            if loan.events.last() != Some(&sequence) {
                loan.events.push(sequence);
            }
        }
        None => {
            loan.events.pop().ok_or("loan has no transaction to undo")?;
        }
    }
    loan.last_repayment_on = loan.last_repayment_on.max(date);
    Ok(())
}

/// Replaces the installments `from` (as they are now) by `to`, keeping the
/// loan's unpaid totals right; what was paid on each must still fit.
fn replace_installments(
    loan: &mut Loan,
    from: &[Installment],
    to: &[Installment],
) -> Result<(), String> {
    if from.len() != to.len() {
        return Err("recast changes the number of installments".into());
    }
    for (old, new) in from.iter().zip(to) {
        if old.number != new.number || old.due_date != new.due_date {
            return Err(format!(
                "recast of installment {} does not match",
                old.number
            ));
        }
        let index = (old.number as usize)
            .checked_sub(1)
            .ok_or("installment 0")?;
        let installment = loan
            .installments
            .get_mut(index)
            .ok_or("unknown installment")?;
        if installment.due != *old {
            return Err(format!(
                "installment {} is not as the recast found it",
                old.number
            ));
        }
        installment.due = new.clone();
        if installment.principal_paid > new.principal
            || installment.interest_paid > new.interest
            || installment.fee_paid > new.fee
        {
            return Err(format!(
                "installment {} would be paid beyond what is due",
                old.number
            ));
        }
        loan.principal_unpaid += new.principal - old.principal;
        loan.interest_unpaid += new.interest - old.interest;
        loan.fee_unpaid += new.fee - old.fee;
    }
    loan.first_unpaid = loan.first_unpaid.min(
        from.first()
            .map(|i| i.number.saturating_sub(1))
            .unwrap_or(loan.first_unpaid),
    );
    advance_first_unpaid(loan);
    Ok(())
}

fn advance_first_unpaid(loan: &mut Loan) {
    while loan
        .installments
        .get(loan.first_unpaid as usize)
        .is_some_and(InstallmentState::is_paid)
    {
        loan.first_unpaid += 1;
    }
}

/// Adds (`sign` 1) or removes (`sign` -1) payments on a loan's installments.
fn apply_payments(
    loan: &mut Loan,
    payments: &[InstallmentPayment],
    sign: Decimal,
    _date: NaiveDate,
) -> Result<(), String> {
    for payment in payments {
        let index = (payment.number as usize)
            .checked_sub(1)
            .ok_or("installment 0")?;
        let installment = loan
            .installments
            .get_mut(index)
            .ok_or("unknown installment")?;
        installment.fee_paid += sign * payment.fee;
        installment.interest_paid += sign * payment.interest;
        installment.principal_paid += sign * payment.principal;
        let paid_ok = |paid: Decimal, due: Decimal| paid >= Decimal::ZERO && paid <= due;
        if !paid_ok(installment.interest_paid, installment.due.interest)
            || !paid_ok(installment.principal_paid, installment.due.principal)
            || !paid_ok(installment.fee_paid, installment.due.fee)
        {
            return Err(format!(
                "installment {} paid outside 0..=due",
                payment.number
            ));
        }
        loan.principal_unpaid -= sign * payment.principal;
        loan.interest_unpaid -= sign * payment.interest;
        loan.fee_unpaid -= sign * payment.fee;
        if sign.is_sign_negative() {
            loan.first_unpaid = loan.first_unpaid.min(index as u32);
        }
    }
    advance_first_unpaid(loan);
    Ok(())
}
