//! Read-only views of members and loans for auditors.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;

/// A savings account with its balance and required minimum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavingsView {
    pub account: SavingsAccount,
    pub balance: Decimal,
    pub required_minimum: Decimal,
}

/// A member with her accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    pub member: Member,
    pub currency: Currency,
    pub savings: Vec<SavingsView>,
    /// Her loans. From [`LedgerState::member_view`], a closed or
    /// cancelled one memory let go of is its summary ([`LoanSlot::Ended`]):
    /// what reads more of it reads the loan whole
    /// ([`LedgerState::whole_loan`]). Shared with the state, not copied.
    pub loans: Vec<LoanSlot>,
}

/// Where an installment stands on a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallmentStatus {
    Paid,
    NotDue,
    Due,
    Overdue,
}

/// A loan as of a date.
#[derive(Clone, Debug, PartialEq)]
pub struct LoanView {
    pub loan: Loan,
    pub as_of: NaiveDate,
    pub statuses: Vec<InstallmentStatus>,
    pub arrears: Arrears,
    pub payoff: PayoffQuote,
}

/// Portfolio quality at a date, with flows over a period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortfolioQuality {
    pub as_of: NaiveDate,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub currency: Currency,
    /// Principal outstanding on every loan (gross loan portfolio).
    pub gross_portfolio: Decimal,
    /// Loans with principal outstanding.
    pub active_loans: u64,
    /// Members with principal outstanding.
    pub active_borrowers: u64,
    /// Loans in arrears under their product's tolerance (collection follow-up).
    pub loans_in_arrears: u64,
    /// Portfolio at risk, the standard measure (CGAP): the whole outstanding
    /// principal of every loan with any part of an installment unpaid for
    /// more than 1, 30 and 90 days, no tolerance.
    pub par1: Decimal,
    pub par30: Decimal,
    pub par90: Decimal,
    /// Installments due in the period, and what of them was paid by their due dates.
    pub due_in_period: Decimal,
    pub collected_on_time: Decimal,
    /// Written off and recovered in the period.
    pub written_off: Decimal,
    pub recovered: Decimal,
}

impl PortfolioQuality {
    /// `amount / gross portfolio`, or `None` when there is no portfolio.
    pub fn ratio(&self, amount: Decimal) -> Option<Decimal> {
        amount.checked_div(self.gross_portfolio)
    }

    /// Average outstanding principal per active loan.
    pub fn average_outstanding(&self) -> Option<Decimal> {
        self.gross_portfolio
            .checked_div(Decimal::from(self.active_loans))
    }

    /// Collected on time against due, or `None` when nothing fell due.
    pub fn repayment_rate(&self) -> Option<Decimal> {
        self.collected_on_time.checked_div(self.due_in_period)
    }
}

/// Loans of one product disbursed in a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductCount {
    pub product: Option<ProductId>,
    pub name: String,
    pub loans: u64,
    pub amount: Decimal,
}

impl LedgerState {
    /// A member with her savings and loans, the required minimum balances
    /// as of today in her branch's zone at `now`.
    pub fn member_view(
        &self,
        id: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<MemberView, DomainError> {
        let member = self.find_member("member_id", id)?;
        let branch = self.find_branch("member_id", &member.branch)?;
        let today = today_in(&branch.time_zone, now);
        let mut savings = Vec::new();
        for account_id in &member.savings_accounts {
            let Some(account) = self.savings.get(account_id) else {
                continue;
            };
            savings.push(SavingsView {
                account: SavingsAccount::clone(account),
                balance: self
                    .balance(&AccountId::Savings(account_id.clone()))
                    .on_normal_side(AccountKind::Liability),
                required_minimum: self.required_savings(account, today)?,
            });
        }
        let mut loans = Vec::with_capacity(member.loans.len());
        for id in &member.loans {
            loans.extend(self.loan(id)?);
        }
        Ok(MemberView {
            member: member.clone(),
            currency: branch.currency,
            savings,
            loans,
        })
    }

    /// A loan with each installment's status on `as_of` (today in the
    /// branch's zone at `now` when `None`).
    pub fn loan_view(
        &self,
        id: &LoanId,
        as_of: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<LoanView, DomainError> {
        let loan = self
            .whole_loan(id)?
            .ok_or_else(|| DomainError::not_found("loan_id", "loan", id.as_str()))?;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        let as_of = as_of.unwrap_or_else(|| today_in(&branch.time_zone, now));
        view_of_loan(&loan, as_of)
    }

    /// A member as she stood right after entry `sequence`: the accounts she
    /// had opened and the loans she had by then, each balance and loan as
    /// it was then, the required minimums as of the day that entry was
    /// recorded (in her branch's zone). Reads her loans' entries with
    /// `lookup` ([`LedgerState::loan_at`]).
    pub fn member_view_at(
        &self,
        id: &MemberId,
        sequence: u64,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<MemberView, DomainError> {
        let at = crate::books::AsOf::Sequence(sequence);
        self.check_sequence("as_of_sequence", sequence)?;
        let member = self.find_member("member_id", id)?;
        if member.registered > sequence {
            return Err(DomainError::invalid(
                "as_of_sequence",
                format!(
                    "member {id} was registered by entry {}, after entry {sequence}",
                    member.registered
                ),
            ));
        }
        let branch = self.find_branch("member_id", &member.branch)?;
        let today = self.day_of_entry(sequence, &branch.time_zone, lookup)?;
        let mut loans = Vec::new();
        for loan_id in &member.loans {
            // A closed loan read back whole first: a store that cannot be
            // read answers as such (ask again), not as the journal.
            let now = self.find_whole_loan("member_id", loan_id)?;
            if let Some(loan) = self
                .loan_whole_at(&now, sequence, lookup)
                .map_err(lookup_failed)?
            {
                loans.push(LoanSlot::Whole(Arc::new(loan)));
            }
        }
        let mut savings = Vec::new();
        for account_id in &member.savings_accounts {
            let Some(account) = self
                .savings
                .get(account_id)
                .filter(|a| a.opened <= sequence)
            else {
                continue;
            };
            let balance = self.account_as_of(&AccountId::Savings(account_id.clone()), at)?;
            savings.push(SavingsView {
                account: SavingsAccount::clone(account),
                balance: balance.on_normal_side(AccountKind::Liability),
                required_minimum: self.required_savings_with(
                    account,
                    today,
                    loans.iter().filter_map(LoanSlot::whole).map(Arc::as_ref),
                )?,
            });
        }
        let mut member = member.clone();
        member.savings_accounts = savings.iter().map(|s| s.account.id.clone()).collect();
        member.loans = loans.iter().map(|loan| loan.id().clone()).collect();
        Ok(MemberView {
            member,
            currency: branch.currency,
            savings,
            loans,
        })
    }

    /// A loan as it stood right after entry `sequence`, each installment's
    /// status on `as_of` (by default the day that entry was recorded, in
    /// the branch's zone: what a read right after it showed).
    pub fn loan_view_at(
        &self,
        id: &LoanId,
        sequence: u64,
        as_of: Option<NaiveDate>,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<LoanView, DomainError> {
        self.check_sequence("as_of_sequence", sequence)?;
        let now = self.find_whole_loan("loan_id", id)?;
        let Some(loan) = self
            .loan_whole_at(&now, sequence, lookup)
            .map_err(lookup_failed)?
        else {
            return Err(DomainError::invalid(
                "as_of_sequence",
                format!(
                    "loan {id} was disbursed by entry {}, after entry {sequence}",
                    now.history.first().unwrap_or_default()
                ),
            ));
        };
        let branch = self.find_branch("loan_id", &loan.branch)?;
        let as_of = match as_of {
            Some(date) => date,
            None => self.day_of_entry(sequence, &branch.time_zone, lookup)?,
        };
        view_of_loan(&loan, as_of)
    }

    /// The day entry `sequence` was recorded on, in `branch`'s time zone
    /// (the default zone for all branches): the day a read right after it
    /// took as today.
    pub fn recorded_day(
        &self,
        sequence: u64,
        branch: Option<&BranchId>,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<NaiveDate, DomainError> {
        let zone = branch
            .and_then(|b| self.branches.get(b))
            .map_or(TIME_ZONE_DEFAULT, |b| b.time_zone.as_str());
        self.day_of_entry(sequence, zone, lookup)
    }

    /// The day entry `sequence` was recorded on, in time zone `zone`.
    fn day_of_entry(
        &self,
        sequence: u64,
        zone: &str,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<NaiveDate, DomainError> {
        let body = lookup(sequence).map_err(lookup_failed)?;
        let recorded = DateTime::<Utc>::from_timestamp_micros(body.recorded_at_micros)
            .ok_or_else(|| lookup_failed(format!("entry {sequence} has no valid time")))?;
        Ok(today_in(zone, recorded))
    }
}

/// A journal read that failed while working out a past figure (the
/// caller's `lookup` keeps the cause, and answers with an internal error).
fn lookup_failed(message: String) -> DomainError {
    DomainError::precondition(
        "as_of_sequence",
        format!("the journal could not be read: {message}"),
    )
}

/// `loan` with each installment's status, its arrears and its payoff on `as_of`.
fn view_of_loan(loan: &Loan, as_of: NaiveDate) -> Result<LoanView, DomainError> {
    let arrears = loan.arrears_on(as_of)?;
    let statuses = loan
        .installments
        .iter()
        .map(|installment| {
            if installment.is_paid() {
                InstallmentStatus::Paid
            } else if installment.due.due_date > as_of {
                InstallmentStatus::NotDue
            } else if installment.due.due_date == as_of {
                InstallmentStatus::Due
            } else {
                InstallmentStatus::Overdue
            }
        })
        .collect();
    let payoff = loan.payoff_quote(as_of)?;
    Ok(LoanView {
        loan: loan.clone(),
        as_of,
        statuses,
        arrears,
        payoff,
    })
}

impl LedgerState {
    /// Loans of a branch (or of all branches) in arrears at the end of `as_of`,
    /// most days first.
    pub fn loans_in_arrears(
        &self,
        branch: Option<&BranchId>,
        as_of: NaiveDate,
    ) -> Result<Vec<(Arc<Loan>, Arrears)>, DomainError> {
        if let Some(branch) = branch {
            self.find_branch("branch_id", branch)?;
        }
        let mut loans: Vec<(Arc<Loan>, Arrears)> = Vec::new();
        for loan in self
            .every_loan(Some(as_of))?
            .iter()
            .filter(|loan| branch.is_none_or(|b| loan.branch() == b))
        {
            // A loan that had ended by then owes nothing then; one that
            // since ended is read back whole.
            if !loan.active_on(as_of) {
                continue;
            }
            let loan = super::whole_loan(self.stored.0.as_deref(), loan)?;
            let arrears = loan.arrears_on(as_of)?;
            if arrears.in_arrears {
                loans.push((loan, arrears));
            }
        }
        loans.sort_by(|a, b| {
            b.1.days_overdue
                .cmp(&a.1.days_overdue)
                .then_with(|| a.0.id.cmp(&b.0.id))
        });
        Ok(loans)
    }

    /// The branches a portfolio question is about: one, or all (which must
    /// share a currency), and their currency.
    fn quality_branches(
        &self,
        branch: Option<&BranchId>,
    ) -> Result<(Vec<&Branch>, Currency), DomainError> {
        let branches: Vec<&Branch> = match branch {
            Some(id) => vec![self.find_branch("branch_id", id)?],
            None => self.branches.values().collect(),
        };
        let currency = branches
            .first()
            .map(|b| b.currency)
            .unwrap_or(Currency::Vnd);
        if let Some(other) = branches.iter().find(|b| b.currency != currency) {
            return Err(DomainError::precondition(
                "branch_id",
                format!(
                    "branches keep books in {currency} and {}; ask for one branch at a time",
                    other.currency
                ),
            ));
        }
        Ok((branches, currency))
    }

    /// Portfolio quality of a branch (or of all branches) at the end of
    /// `as_of`, with repayment rate and write-offs over `from..=to`. Read
    /// from the branches' day totals: O(branches × days), whatever the
    /// number of loans.
    pub fn portfolio_quality(
        &self,
        branch: Option<&BranchId>,
        as_of: NaiveDate,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<PortfolioQuality, DomainError> {
        self.portfolio_quality_at(branch, as_of, from, to, None)
    }

    /// [`LedgerState::portfolio_quality`] as the books gave it right after
    /// entry `sequence` (`None`: now), before any later entry.
    pub fn portfolio_quality_at(
        &self,
        branch: Option<&BranchId>,
        as_of: NaiveDate,
        from: NaiveDate,
        to: NaiveDate,
        sequence: Option<u64>,
    ) -> Result<PortfolioQuality, DomainError> {
        let (branches, currency) = self.quality_branches(branch)?;
        let mut stocks = PeriodFigures::default();
        let mut flows = PeriodFigures::default();
        for b in &branches {
            stocks.add(&self.period_figures_at(&b.id, as_of, as_of, sequence)?)?;
            flows.add(&self.period_figures_at(&b.id, from, to, sequence)?)?;
        }
        let count = |n: i64| u64::try_from(n).map_err(|_| DomainError::Overflow);
        Ok(PortfolioQuality {
            as_of,
            from,
            to,
            currency,
            gross_portfolio: stocks.portfolio_outstanding,
            active_loans: count(stocks.loans_active)?,
            active_borrowers: count(stocks.borrowers)?,
            loans_in_arrears: count(stocks.loans_in_arrears)?,
            par1: stocks.par1,
            par30: stocks.par30,
            par90: stocks.par90,
            due_in_period: flows.due,
            collected_on_time: flows.paid_on_time,
            written_off: flows.written_off,
            recovered: flows.recovered,
        })
    }

    /// [`LedgerState::portfolio_quality`] worked out loan by loan: O(loans ×
    /// installments). The reference the day totals are tested against.
    pub fn portfolio_quality_scan(
        &self,
        branch: Option<&BranchId>,
        as_of: NaiveDate,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<PortfolioQuality, DomainError> {
        let (branches, currency) = self.quality_branches(branch)?;
        let mut quality = PortfolioQuality {
            as_of,
            from,
            to,
            currency,
            ..PortfolioQuality::default()
        };
        let mut borrowers = BTreeSet::new();
        for loan in self
            .every_loan(None)?
            .iter()
            .filter(|loan| branch.is_none_or(|b| loan.branch() == b))
        {
            let loan = &super::whole_loan(self.stored.0.as_deref(), loan)?;
            let (due, on_time) = loan.due_and_paid_on_time(from, to)?;
            quality.due_in_period = checked_add(quality.due_in_period, due)?;
            quality.collected_on_time = checked_add(quality.collected_on_time, on_time)?;
            let outstanding = loan.principal_on(as_of)?;
            if outstanding <= Decimal::ZERO {
                continue;
            }
            quality.gross_portfolio = checked_add(quality.gross_portfolio, outstanding)?;
            quality.active_loans += 1;
            borrowers.insert(loan.member.clone());
            let arrears = loan.overdue_on(as_of)?;
            if arrears.in_arrears {
                quality.loans_in_arrears += 1;
            }
            for (threshold, at_risk) in [
                (1, &mut quality.par1),
                (30, &mut quality.par30),
                (90, &mut quality.par90),
            ] {
                if arrears.days_overdue > threshold {
                    *at_risk = checked_add(*at_risk, outstanding)?;
                }
            }
        }
        quality.active_borrowers = borrowers.len() as u64;
        for b in &branches {
            let figures = self.period_figures(&b.id, from, to)?;
            quality.written_off = checked_add(quality.written_off, figures.written_off)?;
            quality.recovered = checked_add(quality.recovered, figures.recovered)?;
        }
        Ok(quality)
    }

    /// Loans disbursed in `from..=to` in a branch, by product: (product id and
    /// name, or none outside the catalogue; count; principal of the first
    /// disbursement). Read from the branch's day totals: O(days × products).
    pub fn loans_by_product(
        &self,
        branch: &BranchId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ProductCount>, DomainError> {
        self.loans_by_product_at(branch, from, to, None)
    }

    /// [`LedgerState::loans_by_product`] as the books gave it right after
    /// entry `sequence` (`None`: now).
    pub fn loans_by_product_at(
        &self,
        branch: &BranchId,
        from: NaiveDate,
        to: NaiveDate,
        sequence: Option<u64>,
    ) -> Result<Vec<ProductCount>, DomainError> {
        self.find_branch("branch_id", branch)?;
        let figures = self.period_figures_at(branch, from, to, sequence)?;
        let mut counts = Vec::new();
        for (product, day) in figures.disbursed_by_product {
            counts.push(ProductCount {
                name: self.product_name(product.as_ref()),
                product,
                loans: u64::try_from(day.loans).map_err(|_| DomainError::Overflow)?,
                amount: day.amount,
            });
        }
        Ok(counts)
    }

    /// [`LedgerState::loans_by_product`] worked out loan by loan: the
    /// reference the day totals are tested against.
    pub fn loans_by_product_scan(
        &self,
        branch: &BranchId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ProductCount>, DomainError> {
        self.find_branch("branch_id", branch)?;
        let mut counts: BTreeMap<Option<ProductId>, ProductCount> = BTreeMap::new();
        for slot in self.every_loan(None)?.iter().filter(|loan| {
            loan.branch() == branch
                && loan.status() != LoanStatus::Cancelled
                && (from..=to).contains(&loan.disbursed_on())
        }) {
            let loan = super::whole_loan(self.stored.0.as_deref(), slot)?;
            let id = loan.product.as_ref().map(|(id, _)| id.clone());
            let entry = counts.entry(id.clone()).or_insert_with(|| ProductCount {
                name: self.product_name(id.as_ref()),
                product: id,
                loans: 0,
                amount: Decimal::ZERO,
            });
            entry.loans += 1;
            entry.amount = checked_add(entry.amount, loan.terms.principal)?;
        }
        Ok(counts.into_values().collect())
    }

    /// A product's latest name, or what loans outside the catalogue are called.
    fn product_name(&self, id: Option<&ProductId>) -> String {
        id.and_then(|id| self.products.get(id))
            .and_then(|v| v.last())
            .map(|v| v.rules.name.as_str().to_owned())
            .unwrap_or_else(|| "outside the catalogue".to_owned())
    }

    /// Checks that an account exists in the chart (its branch, loan or
    /// savings account exists) and gives its currency.
    pub fn account_currency(&self, account: &AccountId) -> Result<Currency, DomainError> {
        let branch = self.account_branch(account)?;
        Ok(self.find_branch("account", &branch)?.currency)
    }

    /// The branch whose books hold `account`.
    pub fn account_branch(&self, account: &AccountId) -> Result<BranchId, DomainError> {
        Ok(match account {
            AccountId::Cash(branch)
            | AccountId::InterestIncome(branch)
            | AccountId::FeeIncome(branch, _)
            | AccountId::LoanLoss(branch)
            | AccountId::Recoveries(branch)
            | AccountId::RetainedEarnings(branch)
            | AccountId::InterestExpense(branch)
            | AccountId::HeadOfficeFunding(branch)
            | AccountId::Capital(branch) => branch.clone(),
            AccountId::Loan(loan) => self.find_loan("account", loan)?.branch().clone(),
            AccountId::Savings(id) => self
                .savings
                .get(id)
                .ok_or_else(|| DomainError::not_found("account", "savings account", id.as_str()))?
                .branch
                .clone(),
        })
    }

    /// The branch a member belongs to, if she exists.
    pub fn member_branch(&self, id: &MemberId) -> Option<&BranchId> {
        self.members.get(id).map(|member| &member.branch)
    }
}

/// What the books are asked about: a branch's, or the institution's.
impl LedgerState {
    /// The currency of `branch`'s books, or of every branch's when `None`
    /// (refused when branches keep books in different currencies: their
    /// figures do not add up).
    pub fn books_currency(&self, branch: Option<&BranchId>) -> Result<Currency, DomainError> {
        if let Some(branch) = branch {
            return Ok(self.find_branch("branch_id", branch)?.currency);
        }
        let mut currencies = self.branches.values().map(|b| b.currency);
        let first = currencies.next().unwrap_or(Currency::Vnd);
        if let Some(other) = currencies.find(|c| *c != first) {
            return Err(DomainError::precondition(
                "branch_id",
                format!(
                    "branches keep their books in {first} and {other}: ask for one branch at a time"
                ),
            ));
        }
        Ok(first)
    }

    /// Today in `branch`'s zone (the default zone for the institution).
    pub fn today_for(&self, branch: Option<&BranchId>, now: DateTime<Utc>) -> NaiveDate {
        let zone = branch
            .and_then(|b| self.branches.get(b))
            .map_or(TIME_ZONE_DEFAULT, |b| b.time_zone.as_str());
        today_in(zone, now)
    }

    /// Refuses a sequence past the last entry (or 0), naming `field`.
    pub fn check_as_of(&self, field: &str, as_of: crate::books::AsOf) -> Result<(), DomainError> {
        match as_of {
            crate::books::AsOf::Sequence(sequence) => {
                self.check_sequence(&format!("{field}.sequence"), sequence)
            }
            _ => Ok(()),
        }
    }

    /// Refuses `sequence`, given in `field`, unless it is an entry of the journal.
    pub fn check_sequence(&self, field: &str, sequence: u64) -> Result<(), DomainError> {
        if sequence == 0 || sequence > self.last_sequence {
            return Err(DomainError::invalid(
                field,
                format!(
                    "{sequence} is not an entry of the journal (1 to {})",
                    self.last_sequence
                ),
            ));
        }
        Ok(())
    }

    /// The sequence number a figure as of `as_of` reflects.
    pub fn reflects(&self, as_of: crate::books::AsOf) -> u64 {
        match as_of {
            crate::books::AsOf::Sequence(sequence) => sequence,
            _ => self.last_sequence,
        }
    }
}
