//! Applying sealed entries to the state. Deterministic; checks that the entry
//! fits the state (sequence, chain, balance) and fails rather than guess.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;

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
                self.add_day(&body.branch, date, |d| d.savings_change += amount.amount);
            }
            (
                CommandBody::WithdrawSavings { amount, .. },
                Outcome::SavingsMoved { account, .. },
            ) => {
                self.change_savings(account, date, -amount.amount)?;
                self.add_day(&body.branch, date, |d| d.savings_change -= amount.amount);
            }
            (
                CommandBody::DisburseLoan { member_id, .. },
                Outcome::LoanDisbursed {
                    loan,
                    terms,
                    currency,
                    schedule,
                },
            ) => {
                self.apply_disbursement(body, member_id, loan, terms, *currency, schedule)?;
            }
            (
                CommandBody::RecordRepayment { .. },
                Outcome::RepaymentAllocated {
                    loan,
                    payments,
                    closed,
                    ..
                },
            ) => {
                self.apply_payments(loan, payments, 1, date)?;
                let state = self.loans.get_mut(loan).ok_or("unknown loan")?;
                state.last_repayment_on = date;
                if *closed {
                    state.status = LoanStatus::Closed;
                }
                let principal: Decimal = payments.iter().map(|p| p.principal).sum();
                let interest: Decimal = payments.iter().map(|p| p.interest).sum();
                self.add_day(&body.branch, date, |d| {
                    d.principal_collected += principal;
                    d.interest_collected += interest;
                    d.portfolio_change -= principal;
                });
            }
            (CommandBody::ReverseEntry { .. }, Outcome::Reversed { sequence, undo }) => {
                self.apply_undo(&body.branch, date, undo)?;
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

    fn apply_disbursement(
        &mut self,
        body: &EntryBody,
        member_id: &MemberId,
        loan: &LoanId,
        terms: &LoanTerms,
        currency: Currency,
        schedule: &[Installment],
    ) -> Result<(), String> {
        let date = body.effective_date;
        let installments = schedule
            .iter()
            .map(|due| InstallmentState {
                due: due.clone(),
                principal_paid: Decimal::ZERO,
                interest_paid: Decimal::ZERO,
            })
            .collect();
        let state = Loan {
            id: loan.clone(),
            member: member_id.clone(),
            branch: body.branch.clone(),
            currency,
            terms: terms.clone(),
            disbursed_on: date,
            status: LoanStatus::Active,
            installments,
            last_repayment_on: date,
            principal_changes: BTreeMap::from([(date, terms.principal)]),
            principal_unpaid: terms.principal,
            interest_unpaid: schedule.iter().map(|i| i.interest).sum(),
            first_unpaid: 0,
        };
        self.loans.insert(loan.clone(), state);
        self.changed.note(|| StateKey::Loan(loan.clone()));
        self.changed.note(|| StateKey::LoanProgress(loan.clone()));
        let member = self.members.get_mut(member_id).ok_or("unknown member")?;
        member.loans.push(loan.clone());
        self.changed.note(|| StateKey::Member(member_id.clone()));
        let principal = terms.principal;
        self.add_day(&body.branch, date, |d| {
            d.loans_disbursed += 1;
            d.amount_disbursed += principal;
            d.portfolio_change += principal;
        });
        self.refresh_borrower_steps(member_id)
    }

    /// Adds (`sign` 1) or removes (`sign` -1) payments on a loan's installments.
    fn apply_payments(
        &mut self,
        loan_id: &LoanId,
        payments: &[InstallmentPayment],
        sign: i64,
        date: NaiveDate,
    ) -> Result<(), String> {
        let sign = Decimal::from(sign);
        let loan = self.loans.get_mut(loan_id).ok_or("unknown loan")?;
        let mut principal = Decimal::ZERO;
        for payment in payments {
            let index = (payment.number as usize)
                .checked_sub(1)
                .ok_or("installment 0")?;
            let installment = loan
                .installments
                .get_mut(index)
                .ok_or("unknown installment")?;
            installment.interest_paid += sign * payment.interest;
            installment.principal_paid += sign * payment.principal;
            let paid_ok = |paid: Decimal, due: Decimal| paid >= Decimal::ZERO && paid <= due;
            if !paid_ok(installment.interest_paid, installment.due.interest)
                || !paid_ok(installment.principal_paid, installment.due.principal)
            {
                return Err(format!(
                    "installment {} paid outside 0..=due",
                    payment.number
                ));
            }
            principal += payment.principal;
            loan.principal_unpaid -= sign * payment.principal;
            loan.interest_unpaid -= sign * payment.interest;
            if sign.is_sign_negative() {
                loan.first_unpaid = loan.first_unpaid.min(index as u32);
            }
        }
        while loan
            .installments
            .get(loan.first_unpaid as usize)
            .is_some_and(InstallmentState::is_paid)
        {
            loan.first_unpaid += 1;
        }
        *loan.principal_changes.entry(date).or_default() -= sign * principal;
        if loan
            .principal_changes
            .get(&date)
            .is_some_and(|d| d.is_zero())
            && loan.disbursed_on != date
        {
            loan.principal_changes.remove(&date);
        }
        // A repayment on the latest date that leaves principal outstanding
        // cannot change when the loan is active: skip recounting borrowers.
        let at_the_end = loan
            .principal_changes
            .last_key_value()
            .is_some_and(|(last, _)| *last <= date);
        let unchanged =
            sign.is_sign_positive() && at_the_end && loan.principal_unpaid > Decimal::ZERO;
        let member = loan.member.clone();
        self.changed
            .note(|| StateKey::LoanProgress(loan_id.clone()));
        if unchanged {
            return Ok(());
        }
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
            Undo::Disbursement { loan, principal } => {
                let state = self.loans.get_mut(loan).ok_or("unknown loan")?;
                state.status = LoanStatus::Cancelled;
                *state.principal_changes.entry(date).or_default() -= *principal;
                let member = state.member.clone();
                self.changed.note(|| StateKey::LoanProgress(loan.clone()));
                self.add_day(branch, date, |d| {
                    d.loans_disbursed -= 1;
                    d.amount_disbursed -= *principal;
                    d.portfolio_change -= *principal;
                });
                self.refresh_borrower_steps(&member)?;
            }
            Undo::Repayment { loan, payments } => {
                self.apply_payments(loan, payments, -1, date)?;
                let state = self.loans.get_mut(loan).ok_or("unknown loan")?;
                if state.status == LoanStatus::Closed {
                    state.status = LoanStatus::Active;
                }
                let principal: Decimal = payments.iter().map(|p| p.principal).sum();
                let interest: Decimal = payments.iter().map(|p| p.interest).sum();
                self.add_day(branch, date, |d| {
                    d.principal_collected -= principal;
                    d.interest_collected -= interest;
                    d.portfolio_change += principal;
                });
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
