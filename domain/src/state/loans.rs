//! Loan arithmetic shared by commands and queries: how a payment is
//! allocated (dues, then a prepayment that recomputes the rest), what paying
//! a loan off costs on a date, and how a tranche recomputes the schedule.
//!
//! The rules, in the order a payment meets them:
//! 1. Everything due on or before the payment date, oldest installment
//!    first, each installment in the product's allocation order.
//! 2. Anything beyond is paid ahead: first the interest accrued in the
//!    current period up to the payment date, then fees still scheduled, then
//!    principal. Principal paid ahead recomputes the remaining installments
//!    ([`schedule::recast`]): a declining-balance loan pays interest on the
//!    lower balance from the payment date; a flat loan keeps its interest.
//! 3. Paying exactly the payoff amount closes the loan: interest after the
//!    payoff date is not charged. Paying more is refused.

use crate::dated::DatedAmounts;

use chrono::{Days, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

use super::*;
use crate::entry::{FeeCharge, InstallmentPayment, Recast, Repayment};
use crate::product::{AllocationPart, Fee, FeeCollection};
use crate::schedule::{self, InterestMethod, ScheduleError};
use crate::totals::{Overflow, fees_overflow, minus, plus, sum, too_large};

/// What paying a loan off on a date costs, part by part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayoffQuote {
    /// Date of the quote.
    pub as_of: Option<NaiveDate>,
    /// Principal, interest and fees of installments due on or before it.
    pub due_principal: Decimal,
    pub due_interest: Decimal,
    pub due_fees: Decimal,
    /// Interest of the current period up to the date, not yet paid.
    pub accrued_interest: Decimal,
    /// Principal not yet due.
    pub principal_not_due: Decimal,
    /// Fees scheduled with later installments.
    pub fees_not_due: Decimal,
    /// The sum of the parts, checked when the quote was made.
    total: Decimal,
    /// Principal due and not due, checked when the quote was made.
    principal: Decimal,
}

impl PayoffQuote {
    /// The amount that closes the loan on the date.
    pub fn total(&self) -> Decimal {
        self.total
    }

    /// Principal the payoff repays.
    pub fn principal(&self) -> Decimal {
        self.principal
    }

    /// Works out the total and the principal from the parts.
    fn add_up(mut self) -> Result<PayoffQuote, Overflow> {
        self.principal = plus(self.due_principal, self.principal_not_due)?;
        self.total = sum([
            self.principal,
            self.due_interest,
            self.due_fees,
            self.accrued_interest,
            self.fees_not_due,
        ])?;
        Ok(self)
    }
}

/// Rounds interest half-even to the currency's unit.
fn money(x: Decimal, currency: Currency) -> Decimal {
    x.round_dp_with_strategy(
        currency.decimal_places(),
        RoundingStrategy::MidpointNearestEven,
    )
    .normalize()
}

fn schedule_error(e: ScheduleError) -> DomainError {
    match e {
        ScheduleError::Overflow => DomainError::Overflow,
        other => DomainError::invalid("terms", other.to_string()),
    }
}

impl Loan {
    /// Index of the first installment due after `date` (the current period).
    pub fn current_period(&self, date: NaiveDate) -> Option<usize> {
        // Due dates increase: a search, from the first installment not
        // paid (a payment's date is mostly near its due date).
        let index = self
            .installments
            .partition_by_due_date(self.first_unpaid as usize, |due| due <= date);
        (index < self.installments.len()).then_some(index)
    }

    /// Due date of the last installment of the grace (on interest or principal).
    fn grace_end(&self) -> NaiveDate {
        let grace = self
            .terms
            .grace_on_interest
            .max(self.terms.grace_on_principal);
        let last = (grace as usize).saturating_sub(1);
        self.installments
            .get(last)
            .map_or(self.disbursed_on, |i| i.due.due_date)
    }

    /// First day of installment `index`'s period.
    fn period_start(&self, index: usize) -> NaiveDate {
        match index.checked_sub(1) {
            Some(previous) => self.installments.due_date_at(previous),
            None => self.disbursed_on,
        }
    }

    /// Principal of installments from `index` on not yet paid.
    fn principal_from(&self, index: usize) -> Result<Decimal, Overflow> {
        let mut total = Decimal::ZERO;
        for installment in self.installments.iter_from(index) {
            total = plus(
                total,
                minus(installment.due.principal, installment.principal_paid)?,
            )?;
        }
        Ok(total)
    }

    /// The part of installment `index`'s interest that belongs to the days
    /// from `date` to its due date, on a balance of `balance`.
    fn interest_after(
        &self,
        index: usize,
        balance: Decimal,
        date: NaiveDate,
    ) -> Result<Decimal, DomainError> {
        let installment = &self.installments.at(index);
        let start = self.period_start(index);
        let end = installment.due.due_date;
        let from = date.max(start);
        if self.terms.interest_method == InterestMethod::Flat {
            // Flat interest is a fixed amount per installment: the share of it
            // for the days left.
            let days = (end - start).num_days();
            if days <= 0 {
                return Ok(Decimal::ZERO);
            }
            let left = Decimal::from((end - from).num_days().max(0));
            let days = Decimal::from(days);
            let share = installment
                .due
                .interest
                .checked_mul(left)
                .and_then(|x| x.checked_div(days))
                .ok_or(DomainError::Overflow)?;
            return Ok(money(share, self.currency));
        }
        let exact = schedule::interest_for_days(&self.terms, balance, start, end, from, end)
            .map_err(schedule_error)?;
        Ok(money(exact, self.currency))
    }

    /// Interest of the current period (installment `index`, on whose
    /// installments onwards `balance` of principal is unpaid) accrued up to
    /// `date` and not yet paid.
    fn accrued_unpaid(
        &self,
        index: usize,
        balance: Decimal,
        date: NaiveDate,
    ) -> Result<Decimal, DomainError> {
        if self.in_interest_grace(index) {
            return self.grace_interest(index, date);
        }
        let installment = &self.installments.at(index);
        let future = self.interest_after(index, balance, date)?;
        let unpaid = minus(installment.due.interest, installment.interest_paid)?;
        Ok(minus(unpaid, future)?.max(Decimal::ZERO))
    }

    /// True when installment `index` collects no interest: its period's
    /// interest is deferred to the first installment after the grace.
    fn in_interest_grace(&self, index: usize) -> bool {
        self.installments
            .get(index)
            .is_some_and(|i| i.due.number <= self.terms.grace_on_interest)
    }

    /// True when installment `index` is in either grace: a recast (which
    /// knows nothing of grace) would move principal or interest into it.
    fn in_grace(&self, index: usize) -> bool {
        let grace = self
            .terms
            .grace_on_interest
            .max(self.terms.grace_on_principal);
        self.installments
            .get(index)
            .is_some_and(|i| i.due.number <= grace)
    }

    /// Interest deferred by the grace up to `date`, in the grace period of
    /// installment `index`: every earlier grace period's interest and the
    /// current one's up to the date, each on the balance scheduled for it
    /// (flat: on the principal), rounded to the currency like the schedule.
    fn grace_interest(&self, index: usize, date: NaiveDate) -> Result<Decimal, DomainError> {
        let mut total = Decimal::ZERO;
        for j in 0..=index {
            let start = self.period_start(j);
            let end = self.installments.due_date_at(j);
            let base = if self.terms.interest_method == InterestMethod::Flat {
                self.terms.principal
            } else {
                sum(self.installments.iter_from(j).map(|i| i.due.principal))?
            };
            let to = if j == index {
                date.clamp(start, end)
            } else {
                end
            };
            let exact = schedule::interest_for_days(&self.terms, base, start, end, start, to)
                .map_err(schedule_error)?;
            total = total
                .checked_add(money(exact, self.currency))
                .ok_or(DomainError::Overflow)?;
        }
        Ok(total)
    }

    /// What closes the loan on `date` (interest only up to that date).
    pub fn payoff_quote(&self, date: NaiveDate) -> Result<PayoffQuote, DomainError> {
        let mut quote = PayoffQuote {
            as_of: Some(date),
            ..PayoffQuote::default()
        };
        if self.status != LoanStatus::Active {
            return Ok(quote.add_up()?);
        }
        // Everything before `first_unpaid` is paid: only the installments
        // from there to the current period are read; the rest follows from
        // the loan's running totals.
        let current = self.current_period(date);
        let due_end = current.unwrap_or(self.installments.len());
        let first = (self.first_unpaid as usize).min(due_end);
        for installment in self.installments.range(first, due_end) {
            let due = &installment.due;
            quote.due_principal = plus(
                quote.due_principal,
                minus(due.principal, installment.principal_paid)?,
            )?;
            quote.due_interest = plus(
                quote.due_interest,
                minus(due.interest, installment.interest_paid)?,
            )?;
            quote.due_fees = plus(quote.due_fees, minus(due.fee, installment.fee_paid)?)?;
        }
        quote.principal_not_due = minus(self.principal_unpaid, quote.due_principal)?;
        quote.fees_not_due = minus(self.fee_unpaid, quote.due_fees)?;
        if let Some(index) = current {
            quote.accrued_interest = self.accrued_unpaid(index, quote.principal_not_due, date)?;
        }
        Ok(quote.add_up()?)
    }

    /// Allocates a payment of `amount` on `date`; the loan must be active.
    pub(super) fn allocate(
        &self,
        amount: Decimal,
        date: NaiveDate,
    ) -> Result<Repayment, DomainError> {
        let mut payments = Vec::new();
        let mut left = amount;
        // Installments due, oldest first, from the first unpaid one (those
        // before it are paid; reading on from it touches only what it pays,
        // which matters with long schedules). Most payments stop here, short
        // of or exactly at what is due: the payoff quote is needed only when
        // the payment reaches past the dues (or may close the loan).
        let mut walked_all = true;
        for installment in self.from_first_unpaid() {
            if installment.due.due_date > date {
                break;
            }
            if left.is_zero() {
                walked_all = installment.is_paid();
                if !walked_all {
                    break;
                }
                continue;
            }
            let payment = pay_in_order(&installment, &self.policy.allocation_order, &mut left)?;
            if !payment_total(&payment)?.is_zero() {
                payments.push(payment);
            }
        }
        let quote;
        let total;
        if !left.is_zero() || walked_all {
            quote = self.payoff_quote(date)?;
            total = quote.total();
            if amount > total {
                return Err(DomainError::precondition(
                    "amount",
                    format!(
                        "{} is more than the {} that pays loan {} off on {date} (principal {}, interest {}, fees {})",
                        show(amount, self.currency),
                        show(total, self.currency),
                        self.id,
                        show(quote.principal(), self.currency),
                        show(
                            plus(quote.due_interest, quote.accrued_interest)?,
                            self.currency
                        ),
                        show(plus(quote.due_fees, quote.fees_not_due)?, self.currency),
                    ),
                ));
            }
        } else {
            // Some installment due stays unpaid: the loan stays open.
            quote = PayoffQuote::default();
            total = Decimal::MAX;
        }
        let mut prepaid = Decimal::ZERO;
        let mut recast = None;
        let current = if left.is_zero() {
            None
        } else {
            self.current_period(date)
        };
        if let (Some(index), false) = (current, left.is_zero()) {
            // Paid ahead: accrued interest, then fees still scheduled, then principal.
            let due_now = minus(amount, left)?;
            let balance = self.principal_from(index)?;
            let interest = quote.accrued_interest.min(left);
            left = minus(left, interest)?;
            let mut ahead = vec![InstallmentPayment {
                number: self.installments.at(index).due.number,
                fee: Decimal::ZERO,
                interest,
                principal: Decimal::ZERO,
            }];
            for (offset, installment) in self.installments.iter_from(index).enumerate() {
                let fee = minus(installment.due.fee, installment.fee_paid)?.min(left);
                left = minus(left, fee)?;
                if offset == 0 {
                    ahead[0].fee = fee;
                } else if !fee.is_zero() {
                    ahead.push(InstallmentPayment {
                        number: installment.due.number,
                        fee,
                        interest: Decimal::ZERO,
                        principal: Decimal::ZERO,
                    });
                }
            }
            if self.in_grace(index) && amount != total {
                // Interest deferred by the grace is owed only with the
                // installment after it, or on payoff.
                return Err(DomainError::precondition(
                    "amount",
                    format!(
                        "loan {} is in its grace period until {}: pay what is due ({}) or the whole loan off ({})",
                        self.id,
                        self.grace_end(),
                        show(due_now, self.currency),
                        show(total, self.currency)
                    ),
                ));
            }
            for payment in ahead {
                if !payment_total(&payment)?.is_zero() {
                    payments.push(payment);
                }
            }
            prepaid = left;
            if !prepaid.is_zero() {
                recast = Some(self.recast_after_prepayment(index, balance, prepaid, date)?);
            }
        }
        let paid_principal = sum(payments.iter().map(|p| p.principal))?;
        let principal_after = minus(minus(self.principal_unpaid, paid_principal)?, prepaid)?;
        Ok(Repayment {
            loan: self.id.clone(),
            payments,
            prepaid,
            recast,
            recovery: Decimal::ZERO,
            principal_outstanding_after: principal_after.normalize(),
            closed: amount == total,
        })
    }

    /// The installments from `index` on after `prepaid` of `balance` is
    /// repaid ahead on `date`.
    fn recast_after_prepayment(
        &self,
        index: usize,
        balance: Decimal,
        prepaid: Decimal,
        date: NaiveDate,
    ) -> Result<Recast, DomainError> {
        let before: Vec<Installment> = self
            .installments
            .iter_from(index)
            .map(|i| i.due.clone())
            .collect();
        let after_balance = minus(balance, prepaid)?;
        let start = self.period_start(index);
        let current = &self.installments.at(index);
        // The current installment's interest that no longer depends on the
        // balance: the days before `date` (in a grace period: all interest
        // deferred so far, which a payoff pays now).
        let fixed = if self.in_interest_grace(index) {
            self.grace_interest(index, date)?
        } else {
            minus(
                current.due.interest,
                self.interest_after(index, balance, date)?,
            )?
        };
        let after = if self.terms.interest_method == InterestMethod::Flat {
            let mut future = before.clone();
            if after_balance.is_zero() {
                // Paid off: interest only up to the payoff date.
                future[0].interest = fixed;
                for installment in &mut future[1..] {
                    installment.interest = Decimal::ZERO;
                }
            }
            schedule::recast(&self.terms, after_balance, start, &future, None)
                .map_err(schedule_error)?
        } else {
            let first = plus(fixed, self.interest_after(index, after_balance, date)?)?;
            schedule::recast(&self.terms, after_balance, start, &before, Some(first))
                .map_err(schedule_error)?
        };
        Ok(Recast { before, after })
    }

    /// The installments from the current period on after a tranche of
    /// `amount` on `date`, with the fees due with the next installment.
    pub(super) fn recast_after_tranche(
        &self,
        amount: Decimal,
        date: NaiveDate,
        installment_fees: Decimal,
    ) -> Result<Recast, DomainError> {
        let Some(index) = self.current_period(date) else {
            return Err(DomainError::precondition(
                "disbursed_on",
                format!(
                    "{date} is on or after loan {}'s last due date; a tranche needs installments left to repay it",
                    self.id
                ),
            ));
        };
        if self.in_grace(index) {
            return Err(DomainError::precondition(
                "disbursed_on",
                format!(
                    "loan {} is in its grace period until {}; a tranche can follow it",
                    self.id,
                    self.grace_end()
                ),
            ));
        }
        let before: Vec<Installment> = self
            .installments
            .iter_from(index)
            .map(|i| i.due.clone())
            .collect();
        let balance = self.principal_from(index)?;
        let after_balance = plus(balance, amount)?;
        let start = self.period_start(index);
        let mut after = if self.terms.interest_method == InterestMethod::Flat {
            // Flat interest on the tranche from the next period on (the
            // current installment's flat interest stays as it was, so that
            // what accrues in it before the tranche does not change).
            let mut future = before.clone();
            let mut period_start = start;
            for (offset, installment) in future.iter_mut().enumerate() {
                if offset == 0 {
                    period_start = installment.due_date;
                    continue;
                }
                let extra = schedule::interest_for_days(
                    &self.terms,
                    amount,
                    period_start,
                    installment.due_date,
                    date.max(period_start),
                    installment.due_date,
                )
                .map_err(schedule_error)?;
                installment.interest = plus(installment.interest, money(extra, self.currency))?;
                period_start = installment.due_date;
            }
            schedule::recast(&self.terms, after_balance, start, &future, None)
                .map_err(schedule_error)?
        } else {
            let current = &self.installments.at(index);
            let fixed = minus(
                current.due.interest,
                self.interest_after(index, balance, date)?,
            )?;
            let first = plus(fixed, self.interest_after(index, after_balance, date)?)?;
            schedule::recast(&self.terms, after_balance, start, &before, Some(first))
                .map_err(schedule_error)?
        };
        if let Some(first) = after.first_mut() {
            first.fee = plus(first.fee, installment_fees)?;
        }
        Ok(Recast { before, after })
    }
}

/// Pays one installment from `left`, part by part in `order`.
fn pay_in_order(
    installment: &InstallmentState,
    order: &[AllocationPart; 4],
    left: &mut Decimal,
) -> Result<InstallmentPayment, Overflow> {
    let mut payment = InstallmentPayment {
        number: installment.due.number,
        fee: Decimal::ZERO,
        interest: Decimal::ZERO,
        principal: Decimal::ZERO,
    };
    for part in order {
        let due = &installment.due;
        let (owed, paid) = match part {
            // No product charges penalties yet: nothing is ever owed.
            AllocationPart::Penalties => continue,
            AllocationPart::Fees => (minus(due.fee, installment.fee_paid)?, &mut payment.fee),
            AllocationPart::Interest => (
                minus(due.interest, installment.interest_paid)?,
                &mut payment.interest,
            ),
            AllocationPart::Principal => (
                minus(due.principal, installment.principal_paid)?,
                &mut payment.principal,
            ),
        };
        let amount = owed.min(*left);
        *paid = amount.normalize();
        *left = minus(*left, amount)?;
    }
    Ok(payment)
}

/// Everything a payment puts on an installment.
fn payment_total(payment: &InstallmentPayment) -> Result<Decimal, Overflow> {
    sum([payment.fee, payment.interest, payment.principal])
}

/// The fees on a disbursement of `principal`: what is deducted now and
/// what is added to the next installment.
pub(super) fn fee_charges(
    fees: &[Fee],
    principal: Decimal,
    currency: Currency,
) -> Result<Vec<FeeCharge>, DomainError> {
    let mut charges = Vec::new();
    for fee in fees {
        let amount = fee.on(principal, currency)?;
        if !amount.is_zero() {
            charges.push(FeeCharge {
                code: fee.code.clone(),
                amount,
                collection: fee.collection,
            });
        }
    }
    Ok(charges)
}

/// Sum of the charges collected in `collection` (not normalised, as
/// `Iterator::sum` gives it, since schedules hold it as is), or an overflow:
/// flat fees are bounded in number, not in their sum.
pub fn charged(charges: &[FeeCharge], collection: FeeCollection) -> Result<Decimal, Overflow> {
    charges
        .iter()
        .filter(|c| c.collection == collection)
        .try_fold(Decimal::ZERO, |sum, c| {
            sum.checked_add(c.amount).ok_or(Overflow)
        })
}

/// Where a loan stands on a date: what is overdue and for how long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrears {
    /// Principal of installments due before the date and unpaid on it.
    pub principal_overdue: Decimal,
    /// Interest of those installments.
    pub interest_overdue: Decimal,
    /// Fees of those installments.
    pub fees_overdue: Decimal,
    /// Days since the oldest unpaid installment fell due (0 when none).
    pub days_overdue: u32,
    /// Whether the loan counts as in arrears under its tolerance.
    pub in_arrears: bool,
    /// Principal outstanding on the date.
    pub principal_outstanding: Decimal,
}

impl Arrears {
    /// Everything overdue.
    pub fn overdue(&self) -> Result<Decimal, Overflow> {
        sum([
            self.principal_overdue,
            self.interest_overdue,
            self.fees_overdue,
        ])
    }

    /// Days in arrears: the days overdue when the loan counts as in arrears.
    pub fn days_in_arrears(&self) -> u32 {
        if self.in_arrears {
            self.days_overdue
        } else {
            0
        }
    }
}

impl Loan {
    /// True when the loan was disbursed and had not ended by `date`. A
    /// cancelled loan ended on its cancellation's date (its disbursement's
    /// reversal may be dated later than the disbursement): before that it
    /// was in the books, as portfolio quality counts it.
    pub fn active_on(&self, date: NaiveDate) -> bool {
        date >= self.disbursed_on && self.ended_on.is_none_or(|end| date < end)
    }

    /// The loan's arrears at the end of `date`.
    ///
    /// Payments settle installments oldest first, so what was paid by a date
    /// covers the installments in order; and an installment due before a
    /// date is never changed by anything entered after it (recasts only
    /// touch later installments). So the arrears on any past date follow
    /// from the current schedule and the amounts paid by that date.
    pub fn arrears_on(&self, date: NaiveDate) -> Result<Arrears, Overflow> {
        if !self.active_on(date) {
            return Ok(Arrears::default());
        }
        self.overdue_on(date)
    }

    /// False when the loan cannot be in arrears under its tolerance at the
    /// end of `date` (true does not say it is: [`Loan::arrears_on`] does).
    /// A cheap test before the full computation, for listings that look at
    /// every loan: being in arrears needs an installment due more than the
    /// tolerance's days before `date` that is not fully paid, and payments
    /// settle installments oldest first, so what fell due before then must
    /// exceed what was paid by `date`.
    pub fn may_be_in_arrears_on(&self, date: NaiveDate) -> Result<bool, Overflow> {
        if !self.active_on(date) {
            return Ok(false);
        }
        let days = u64::from(self.policy.arrears_tolerance.days);
        let Some(cutoff) = date.checked_sub_days(Days::new(days)) else {
            return Ok(false);
        };
        let mut due_before = Decimal::ZERO;
        for installment in self.installments.iter() {
            if installment.due.due_date >= cutoff.min(date) {
                break;
            }
            let total = due_before
                .checked_add(installment.due.principal)
                .and_then(|d| d.checked_add(installment.due.interest))
                .and_then(|d| d.checked_add(installment.due.fee));
            due_before = total.ok_or(Overflow)?;
        }
        if due_before.is_zero() {
            return Ok(false);
        }
        Ok(due_before > self.paid_on(date)?)
    }

    /// What is overdue at the end of `date` from the schedule and the
    /// amounts paid by then, whatever the loan's status (see [`Loan::arrears_on`]).
    ///
    /// Payments cover installments oldest first, each in the product's
    /// allocation order; an installment that what was paid covers whole, or
    /// that nothing paid reaches, needs no allocation, so only the one
    /// installment a payment covers in part is split by parts. Listings of
    /// loans in arrears call this for every loan they look at.
    pub fn overdue_on(&self, date: NaiveDate) -> Result<Arrears, Overflow> {
        let mut arrears = Arrears {
            principal_outstanding: self.principal_on(date)?,
            ..Arrears::default()
        };
        let mut order = [
            AllocationPart::Fees,
            AllocationPart::Interest,
            AllocationPart::Principal,
        ];
        order.sort_by_key(|part| self.policy.allocation_order.iter().position(|p| p == part));
        let mut paid = self.paid_on(date)?;
        let mut oldest = None;
        // Unpaid fees, interest and principal, added up unnormalised.
        let mut unpaid = [Decimal::ZERO; 3];
        let slot = |part: AllocationPart| match part {
            AllocationPart::Fees => 0,
            AllocationPart::Interest => 1,
            _ => 2,
        };
        let add = |sum: &mut Decimal, amount: Decimal| -> Result<(), Overflow> {
            *sum = sum.checked_add(amount).ok_or(Overflow)?;
            Ok(())
        };
        for installment in self.installments.iter() {
            let due = &installment.due;
            if due.due_date >= date {
                break;
            }
            let parts = [due.fee, due.interest, due.principal];
            let whole = parts.iter().all(|amount| !amount.is_sign_negative());
            if whole && paid.is_zero() {
                // Nothing paid reaches it: all of it is unpaid.
                if parts.iter().any(|amount| !amount.is_zero()) {
                    oldest.get_or_insert(due.due_date);
                }
                for (sum, amount) in unpaid.iter_mut().zip(parts) {
                    add(sum, amount)?;
                }
                continue;
            }
            if whole {
                let total = installment_total(due)?;
                if paid >= total {
                    // Covered whole.
                    paid = paid.checked_sub(total).ok_or(Overflow)?;
                    continue;
                }
            }
            for part in order {
                let amount = parts[slot(part)];
                let covered = amount.min(paid);
                paid = minus(paid, covered)?;
                let left = minus(amount, covered)?;
                if left.is_zero() {
                    continue;
                }
                oldest.get_or_insert(due.due_date);
                add(&mut unpaid[slot(part)], left)?;
            }
        }
        let [fees, interest, principal] = unpaid;
        arrears.fees_overdue = fees.normalize();
        arrears.interest_overdue = interest.normalize();
        arrears.principal_overdue = principal.normalize();
        if let Some(oldest) = oldest {
            arrears.days_overdue = u32::try_from((date - oldest).num_days()).unwrap_or(u32::MAX);
            let tolerance = self.policy.arrears_tolerance;
            arrears.in_arrears =
                arrears.days_overdue > tolerance.days && arrears.overdue()? > tolerance.amount;
        }
        Ok(arrears)
    }

    /// Of the installments due in `from..=to`: what was due, and what of it
    /// was paid by each installment's due date.
    pub fn due_and_paid_on_time(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(Decimal, Decimal), Overflow> {
        let (mut due, mut on_time) = (Decimal::ZERO, Decimal::ZERO);
        if self.status == LoanStatus::Cancelled {
            return Ok((due, on_time));
        }
        let mut before = Decimal::ZERO;
        for installment in self.installments.iter() {
            let date = installment.due.due_date;
            if date > to {
                break;
            }
            let amount = installment_total(&installment.due)?;
            if date >= from && self.ended_on.is_none_or(|end| date <= end) {
                let paid_by_then = self.paid_on(date)?;
                let covered = minus(paid_by_then, before)?.clamp(Decimal::ZERO, amount);
                due = plus(due, amount)?;
                on_time = plus(on_time, covered)?;
            }
            before = plus(before, amount)?;
        }
        Ok((due, on_time))
    }
}

/// One loan's part of one day's portfolio figures: the fields of
/// [`DayTotals`] that [`Loan::quality_days`] computes. Small and `Copy`,
/// because every transaction on a loan recomputes dozens of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QualityDay {
    /// Change in the number of loans with principal outstanding.
    pub loans_active_change: i64,
    /// Change of the outstanding principal at risk beyond 1, 30 and 90 days.
    pub par_change: [Decimal; 3],
    /// Change in the number of loans in arrears under their tolerance.
    pub loans_in_arrears_change: i64,
    /// Installments falling due on the day.
    pub due: Decimal,
    /// Of `due`, what was paid by the day.
    pub paid_on_time: Decimal,
}

impl QualityDay {
    /// `self + sign × other`, field by field; unchanged on overflow.
    fn add_signed(&mut self, other: &QualityDay, negate: bool) -> Result<(), Overflow> {
        let amount = |a: Decimal, b: Decimal| -> Result<Decimal, Overflow> {
            match (b.is_zero(), negate) {
                (true, _) => Ok(a),
                (false, false) => plus(a, b),
                (false, true) => minus(a, b),
            }
        };
        let count = |a: i64, b: i64| -> Result<i64, Overflow> {
            if negate {
                a.checked_sub(b)
            } else {
                a.checked_add(b)
            }
            .ok_or(Overflow)
        };
        let mut next = *self;
        next.loans_active_change = count(self.loans_active_change, other.loans_active_change)?;
        for (part, change) in next.par_change.iter_mut().enumerate() {
            *change = amount(self.par_change[part], other.par_change[part])?;
        }
        next.loans_in_arrears_change =
            count(self.loans_in_arrears_change, other.loans_in_arrears_change)?;
        next.due = amount(self.due, other.due)?;
        next.paid_on_time = amount(self.paid_on_time, other.paid_on_time)?;
        *self = next;
        Ok(())
    }

    /// Adds `other`; unchanged on overflow.
    pub fn add(&mut self, other: &QualityDay) -> Result<(), Overflow> {
        self.add_signed(other, false)
    }

    /// Subtracts `other`; unchanged on overflow.
    pub fn subtract(&mut self, other: &QualityDay) -> Result<(), Overflow> {
        self.add_signed(other, true)
    }

    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == QualityDay::default()
    }

    /// The figures this change moves, numbered as
    /// [`figure`](crate::totals::figure) numbers them, in that order (some
    /// of them zero).
    pub fn figures(&self) -> [(u8, Decimal); 7] {
        use crate::totals::figure;
        [
            (
                figure::LOANS_ACTIVE_CHANGE,
                Decimal::from(self.loans_active_change),
            ),
            (figure::PAR1_CHANGE, self.par_change[0]),
            (figure::PAR30_CHANGE, self.par_change[1]),
            (figure::PAR90_CHANGE, self.par_change[2]),
            (
                figure::LOANS_IN_ARREARS_CHANGE,
                Decimal::from(self.loans_in_arrears_change),
            ),
            (figure::DUE, self.due),
            (figure::PAID_ON_TIME, self.paid_on_time),
        ]
    }

    /// Adds this change to a day's figures, numbered as
    /// [`figure`](crate::totals::figure) numbers them; unchanged on
    /// overflow.
    pub fn add_to_figures(
        &self,
        figures: &mut [Decimal; crate::totals::figure::COUNT],
    ) -> Result<(), Overflow> {
        let changes = self.figures();
        let mut sums = [Decimal::ZERO; 7];
        for ((number, change), sum) in changes.iter().zip(&mut sums) {
            let was = figures[usize::from(*number)];
            // Most of the entry's own changes carry none of these figures:
            // the loan's change itself, as `plus` would leave it.
            *sum = match (change.is_zero(), was.is_zero()) {
                (true, _) => was,
                (false, true) => change.normalize(),
                (false, false) => plus(was, *change)?,
            };
        }
        for ((number, _), sum) in changes.iter().zip(sums) {
            figures[usize::from(*number)] = sum;
        }
        Ok(())
    }

    /// As a change of a day's totals (what [`QualityDay::add_to_figures`]
    /// adds without building it).
    #[cfg(test)]
    fn day_totals(&self) -> DayTotals {
        DayTotals {
            loans_active_change: self.loans_active_change,
            par1_change: self.par_change[0],
            par30_change: self.par_change[1],
            par90_change: self.par_change[2],
            loans_in_arrears_change: self.loans_in_arrears_change,
            due: self.due,
            paid_on_time: self.paid_on_time,
            ..DayTotals::default()
        }
    }
}

/// Day-by-day figures a loan adds to its branch's totals.
impl Loan {
    /// The loan's contribution to its branch's portfolio figures
    /// ([`DayTotals`]: loans active, standard PAR, loans in arrears under
    /// the tolerance, installments due and paid on time), on `from` and
    /// after; nothing for earlier days.
    ///
    /// Between two of the loan's transactions its principal outstanding and
    /// the amount paid on installments are constant, so the oldest
    /// installment not fully paid is too (payments cover installments
    /// oldest first): in each such interval the loan is at risk beyond N
    /// days from that installment's due date plus N days, a date range.
    /// Installments due before a date never change after it, so an entry on
    /// date `t` changes only the contribution on `t` and after: applying it
    /// replaces this function's result from `t`, computed before and after.
    ///
    /// The days come in date order, one entry per date.
    pub fn quality_days(&self, from: NaiveDate) -> Result<Vec<(NaiveDate, QualityDay)>, Overflow> {
        self.quality_days_paid_below(from, None)
    }

    /// Keeps the sums of the loan's principal and paid changes (one every 8
    /// changes, about 3.5 bytes a change) and the cumulative dues of its
    /// schedule (4 bytes an installment, [`CumulativeDues`]) while it is
    /// active, when entries on it come week after week; drops them once it
    /// is closed, cancelled
    /// or written off (they would be kept for every loan the institution
    /// ever made), its figures then worked out by walking its changes and
    /// adding up its schedule.
    pub fn keep_running_sums(&mut self) {
        let active = self.status == LoanStatus::Active;
        self.principal_changes.keep_sums(active);
        self.paid_changes.keep_sums(active);
        self.installments.keep_cumulative_dues(active);
    }

    /// What this loan has paid on its installments, in all.
    pub fn paid_on_installments(&self) -> Result<Decimal, Overflow> {
        self.paid_changes.sum()
    }

    /// [`Loan::quality_days`], leaving out the installments (due and paid
    /// on time) that start at or past `paid_bound` of cumulative dues: no
    /// payment reaches them while the loan has paid at most that much, so
    /// each is counted due and unpaid. Two states of one loan with the same
    /// schedule and end, each having paid at most `paid_bound`, give the
    /// same days for those installments, and their difference (what
    /// applying an entry needs) is the same without them, at the cost of
    /// the installments payments reach rather than of the whole schedule.
    pub fn quality_days_paid_below(
        &self,
        from: NaiveDate,
        paid_bound: Option<Decimal>,
    ) -> Result<Vec<(NaiveDate, QualityDay)>, Overflow> {
        // Changes are collected in a list, then sorted and merged by date
        // once: cheaper than keeping a map ordered while they come.
        // Bounded by what was paid (a payment), not sized for the whole
        // schedule: a payment reaches a few installments, and a list as
        // long as the schedule, allocated and dropped twice per entry, cost
        // more than the work itself; room for a few payments' ranges at
        // once, rather than growing from nothing in four steps. Unbounded
        // (a new loan, a schedule changed), every installment due from
        // `from` on is counted: room for them all at once.
        let capacity = match paid_bound {
            Some(_) => 16,
            None => {
                let before_from = self.installments.partition_by_due_date(0, |due| due < from);
                self.installments.len().saturating_sub(before_from) + 16
            }
        };
        let mut days: Vec<(NaiveDate, QualityDay)> = Vec::with_capacity(capacity);
        // What was paid covers about the installments before the first
        // not fully paid, whose sums the searches below then start from.
        let mut cumulative =
            CumulativeDue::new(&self.installments).near(self.first_unpaid as usize);
        self.risk_ranges(from, &mut cumulative, &mut days)?;
        self.installment_days(from, paid_bound, &mut cumulative, &mut days)?;
        merge_by_date(days)
    }

    /// The first part of [`Loan::quality_days_paid_below`]: the loan
    /// active, its principal at risk and the loan in arrears, as ranges of
    /// days from `from` on, one interval between two changes of its
    /// principal or payments at a time.
    fn risk_ranges(
        &self,
        from: NaiveDate,
        cumulative: &mut CumulativeDue<'_>,
        days: &mut Vec<(NaiveDate, QualityDay)>,
    ) -> Result<(), Overflow> {
        // The intervals that end on or before `from` add nothing: the walk
        // starts at the last change on or before `from`, with what the
        // changes before it sum to (the sums kept every 8 changes: a walk
        // of at most 8, not through the loan's history).
        let start = [&self.principal_changes, &self.paid_changes]
            .into_iter()
            .filter_map(|changes| changes.last_date_through(from))
            .max();
        let ((mut principal, principal_from), (mut paid, paid_from)) = match start {
            Some(start) => (
                self.principal_changes.split_before(start)?,
                self.paid_changes.split_before(start)?,
            ),
            None => (
                (Decimal::ZERO, self.principal_changes.iter()),
                (Decimal::ZERO, self.paid_changes.iter()),
            ),
        };
        // The dates of either kind of change, in order, once each, with
        // what changed on each: the two lists walked side by side.
        let mut changes = ChangesByDate {
            principal: principal_from.peekable(),
            paid: paid_from.peekable(),
        }
        .peekable();
        while let Some((start, principal_change, paid_change)) = changes.next() {
            principal = plus(principal, principal_change)?;
            paid = plus(paid, paid_change)?;
            let end = changes.peek().map(|(date, _, _)| *date);
            if end.is_some_and(|end| end <= from) {
                continue;
            }
            let Some(standing) = self.standing(principal, paid, cumulative)? else {
                continue;
            };
            standing.add_ranges(start, end, from, days)?;
        }
        Ok(())
    }

    /// How the loan stands while its principal outstanding is `principal`
    /// and it has paid `paid` on its installments: `None` when it has no
    /// principal outstanding (it counts in none of the figures).
    fn standing(
        &self,
        principal: Decimal,
        paid: Decimal,
        cumulative: &mut CumulativeDue<'_>,
    ) -> Result<Option<Standing>, Overflow> {
        if principal <= Decimal::ZERO {
            return Ok(None);
        }
        let mut standing = Standing {
            principal,
            at_risk_from: [None; 3],
            in_arrears_from: None,
        };
        // The oldest installment not covered by what was paid.
        let oldest = cumulative.first_above(paid)?;
        let Some(oldest_due) = self.installments.due_date(oldest) else {
            return Ok(Some(standing));
        };
        for (days_late, at_risk) in [1u64, 30, 90].into_iter().zip(&mut standing.at_risk_from) {
            *at_risk = oldest_due.checked_add_days(Days::new(days_late + 1));
        }
        // In arrears under the tolerance: late beyond its days, and
        // more overdue than its amount.
        let tolerance = self.policy.arrears_tolerance;
        let beyond = plus(paid, tolerance.amount)?;
        let over_amount = cumulative.first_above(beyond)?;
        let late = oldest_due.checked_add_days(Days::new(u64::from(tolerance.days) + 1));
        let over = self
            .installments
            .due_date(over_amount)
            .and_then(|due| due.succ_opt());
        if let (Some(late), Some(over)) = (late, over) {
            standing.in_arrears_from = Some(late.max(over));
        }
        Ok(Some(standing))
    }

    /// The second part of [`Loan::quality_days_paid_below`]: installments
    /// due from `from` on, and what of each was paid by its due date.
    fn installment_days(
        &self,
        from: NaiveDate,
        paid_bound: Option<Decimal>,
        cumulative: &mut CumulativeDue<'_>,
        days: &mut Vec<(NaiveDate, QualityDay)>,
    ) -> Result<(), Overflow> {
        if self.status == LoanStatus::Cancelled {
            return Ok(());
        }
        // Installments due, and what of each was paid by its due date, from
        // the first installment due on or after `from` (the ones before add
        // nothing): what was paid by its due date is a running sum.
        // Due dates increase: a search, from the first installment not
        // paid (a payment's date is mostly near its due date).
        let first = self
            .installments
            .partition_by_due_date(self.first_unpaid as usize, |due| due < from);
        let Some(first_date) = self.installments.due_date(first) else {
            return Ok(());
        };
        let Some(mut before) = cumulative.due_before(first, paid_bound)? else {
            return Ok(());
        };
        let (mut paid_by, paid_changes) = self.paid_changes.split_after(first_date)?;
        let mut paid_changes = paid_changes.peekable();
        for (index, date) in (first..).zip(self.installments.due_dates_from(first)) {
            if paid_bound.is_some_and(|bound| before >= bound) {
                break;
            }
            let through = cumulative.through(index)?;
            while let Some((_, change)) = paid_changes.next_if(|(on, _)| *on <= date) {
                paid_by = plus(paid_by, change)?;
            }
            let counted = date >= from && self.ended_on.is_none_or(|end| date <= end);
            if counted {
                let amount = through.checked_sub(before).ok_or(Overflow)?;
                let covered = paid_by
                    .checked_sub(before)
                    .ok_or(Overflow)?
                    .clamp(Decimal::ZERO, amount);
                days.push((
                    date,
                    QualityDay {
                        due: amount,
                        paid_on_time: covered,
                        ..QualityDay::default()
                    },
                ));
            }
            before = through;
        }
        Ok(())
    }

    /// How the loan stands from `from` on, when no change of its principal
    /// or of what it has paid is dated after `from` (one interval, from its
    /// last change, then covers every day from `from` on). The outer `None`
    /// when a change is dated after `from`; the inner when it has no
    /// principal outstanding. `paid`: what it has paid on its installments
    /// ([`Loan::paid_on_installments`]).
    fn standing_from(
        &self,
        from: NaiveDate,
        paid: Decimal,
        cumulative: &mut CumulativeDue<'_>,
    ) -> Result<Option<Option<Standing>>, Overflow> {
        let after_from = |changes: &crate::dated::DatedAmounts| {
            changes
                .last_key_value()
                .is_some_and(|(last, _)| last > from)
        };
        if after_from(&self.principal_changes) || after_from(&self.paid_changes) {
            return Ok(None);
        }
        // Every change is on or before `from`: the walk's one interval
        // starts at the last, with every change summed, in the same order.
        let principal = self.principal_changes.sum()?;
        self.standing(principal, paid, cumulative).map(Some)
    }
}

/// How a loan stands over an interval between two changes of its principal
/// or payments: its principal outstanding (above zero: it is active), and
/// from which day, at the earliest, that principal is at risk beyond 1, 30
/// and 90 days and the loan in arrears under its tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Standing {
    principal: Decimal,
    at_risk_from: [Option<NaiveDate>; 3],
    in_arrears_from: Option<NaiveDate>,
}

impl Standing {
    /// Adds the interval `start..end` (no end: on and on) of this standing
    /// to `days`, from `from` on, as [`add_range`] adds a range.
    fn add_ranges(
        &self,
        start: NaiveDate,
        end: Option<NaiveDate>,
        from: NaiveDate,
        days: &mut Vec<(NaiveDate, QualityDay)>,
    ) -> Result<(), Overflow> {
        let active = QualityDay {
            loans_active_change: 1,
            ..QualityDay::default()
        };
        add_range(days, start, end, from, &active)?;
        for (part, at_risk) in self.at_risk_from.iter().enumerate() {
            if let Some(at_risk) = at_risk {
                let mut change = QualityDay::default();
                change.par_change[part] = self.principal;
                add_range(days, start.max(*at_risk), end, from, &change)?;
            }
        }
        if let Some(in_arrears) = self.in_arrears_from {
            add_range(
                days,
                start.max(in_arrears),
                end,
                from,
                &QualityDay {
                    loans_in_arrears_change: 1,
                    ..QualityDay::default()
                },
            )?;
        }
        Ok(())
    }
}

/// `after - before` of one loan's days from `from` on, as
/// [`quality_change`] of their [`Loan::quality_days_paid_below`] with
/// `paid_bound` gives it, worked out without listing either loan's ranges
/// when neither has a change of its principal or payments dated after
/// `from` (an entry on the loan's latest day, most of them): each then
/// stands over every day from `from` on as after its last change, and the
/// ranges differ on a few days. `None` when a change is dated after
/// `from`. `paid`: what each has paid on its installments, before and
/// after ([`Loan::paid_on_installments`]).
///
/// The same days, and the same refusals on overflow: the sums are the
/// walk's, in its order, and the ranges' figures (loans active, at risk,
/// in arrears) are apart from the installments' (due, paid on time), so
/// the two parts' differences, each worked out alone, add up without a
/// sum the lists' own could not make.
pub(crate) fn quality_change_standing(
    before: &Loan,
    after: &Loan,
    from: NaiveDate,
    paid_bound: Option<Decimal>,
    paid: [Decimal; 2],
) -> Result<Option<Vec<(NaiveDate, QualityDay)>>, Overflow> {
    let mut before_sums =
        CumulativeDue::new(&before.installments).near(before.first_unpaid as usize);
    let mut after_sums = CumulativeDue::new(&after.installments).near(after.first_unpaid as usize);
    let Some(was) = before.standing_from(from, paid[0], &mut before_sums)? else {
        return Ok(None);
    };
    let Some(is) = after.standing_from(from, paid[1], &mut after_sums)? else {
        return Ok(None);
    };
    // The installments' days, as the lists have them.
    let mut was_due = Vec::new();
    before.installment_days(from, paid_bound, &mut before_sums, &mut was_due)?;
    let mut is_due = Vec::new();
    after.installment_days(from, paid_bound, &mut after_sums, &mut is_due)?;
    let mut change = if was_due.is_empty() && is_due.is_empty() {
        Vec::new()
    } else {
        quality_change(merge_by_date(is_due)?, merge_by_date(was_due)?)?
    };
    // The ranges' days: each figure's first day from `from` on, before and
    // after, and what it counts from then.
    let ranges_before = change.len();
    let count = |standing: Option<Standing>| i64::from(standing.is_some());
    push_difference(
        &mut change,
        (from, count(was)),
        (from, count(is)),
        |day, by| day.loans_active_change = by,
    );
    for part in 0..3 {
        let at_risk = |standing: Option<Standing>| {
            standing.and_then(|s| s.at_risk_from[part].map(|on| (on.max(from), s.principal)))
        };
        match (at_risk(was), at_risk(is)) {
            (Some((was_on, was_principal)), Some((is_on, is_principal))) if was_on == is_on => {
                let by = minus(is_principal, was_principal)?;
                if !by.is_zero() {
                    let mut day = QualityDay::default();
                    day.par_change[part] = by;
                    change.push((is_on, day));
                }
            }
            (was_risk, is_risk) => {
                if let Some((on, principal)) = was_risk {
                    let mut day = QualityDay::default();
                    day.par_change[part] = minus(Decimal::ZERO, principal)?;
                    change.push((on, day));
                }
                if let Some((on, principal)) = is_risk {
                    let mut day = QualityDay::default();
                    day.par_change[part] = principal;
                    change.push((on, day));
                }
            }
        }
    }
    let in_arrears = |standing: Option<Standing>| {
        standing
            .and_then(|s| s.in_arrears_from)
            .map_or((from, 0), |on| (on.max(from), 1))
    };
    push_difference(&mut change, in_arrears(was), in_arrears(is), |day, by| {
        day.loans_in_arrears_change = by
    });
    if change.len() > ranges_before {
        change = merge_by_date(change)?;
        change.retain(|(_, day)| !day.is_empty());
    }
    Ok(Some(change))
}

/// Pushes onto `change` what a count of loans (1 or 0) from a day on
/// changes: `was` from its day before, `is` from its day after.
fn push_difference(
    change: &mut Vec<(NaiveDate, QualityDay)>,
    was: (NaiveDate, i64),
    is: (NaiveDate, i64),
    set: impl Fn(&mut QualityDay, i64),
) {
    let mut push = |on: NaiveDate, by: i64| {
        if by != 0 {
            let mut day = QualityDay::default();
            set(&mut day, by);
            change.push((on, day));
        }
    };
    if was.0 == is.0 {
        push(is.0, is.1 - was.1);
    } else {
        push(was.0, -was.1);
        push(is.0, is.1);
    }
}

/// The amount due up to and including each installment of a schedule: the
/// sums the loan keeps while it is active
/// ([`Installments::cumulative_dues`]), otherwise summed only as far as a
/// question needs (a repayment asks about the first installments not yet
/// paid, not about the whole schedule). The sums are compared and
/// subtracted only, so left unnormalised.
struct CumulativeDue<'a> {
    installments: &'a Installments,
    /// The loan's own sums, up to the first that would overflow.
    kept: Option<&'a CumulativeDues>,
    sums: Vec<Decimal>,
    /// Where a search of the kept sums starts: the last answer, at first
    /// a guess ([`CumulativeDue::near`]).
    near: usize,
}

impl<'a> CumulativeDue<'a> {
    fn new(installments: &'a Installments) -> CumulativeDue<'a> {
        CumulativeDue {
            installments,
            kept: installments.cumulative_dues(),
            sums: Vec::new(),
            near: 0,
        }
    }

    /// The same, its first search of the kept sums starting at
    /// installment `index` (the answers do not depend on it).
    fn near(mut self, index: usize) -> CumulativeDue<'a> {
        self.near = index;
        self
    }

    /// Sums one more installment; false when every one is summed.
    fn extend(&mut self) -> Result<bool, Overflow> {
        let Some(due) = self.installments.due_amounts_at(self.sums.len()) else {
            return Ok(false);
        };
        // Added as the kept sums are, so that both give the same numbers.
        let total = due
            .into_iter()
            .try_fold(
                self.sums.last().copied().unwrap_or_default(),
                Decimal::checked_add,
            )
            .ok_or(Overflow)?;
        self.sums.push(total);
        Ok(true)
    }

    /// Due up to and including installment `index`; `Overflow` past the
    /// schedule, or when a sum up to it overflows.
    fn through(&mut self, index: usize) -> Result<Decimal, Overflow> {
        if let Some(kept) = self.kept {
            // Past the kept sums: past the schedule, or a sum that overflows.
            return kept.get(index).ok_or(Overflow);
        }
        while self.sums.len() <= index {
            if !self.extend()? {
                break;
            }
        }
        self.sums.get(index).copied().ok_or(Overflow)
    }

    /// The index of the first installment whose cumulative due is above
    /// `amount` (the schedule's length when none is): how many are covered
    /// by paying `amount`. Amounts due are never negative, so the sums only
    /// grow and the first sum above `amount` ends the search.
    fn first_above(&mut self, amount: Decimal) -> Result<usize, Overflow> {
        if let Some(kept) = self.kept {
            let covered = kept.covered_by_near(amount, self.near);
            self.near = covered;
            if covered == kept.len() && kept.len() < self.installments.len() {
                // The next sum, which would have to be looked at, overflows.
                return Err(Overflow);
            }
            return Ok(covered);
        }
        while self.sums.last().is_none_or(|sum| *sum <= amount) {
            if !self.extend()? {
                break;
            }
        }
        Ok(self.sums.partition_point(|sum| *sum <= amount))
    }

    /// What is due before installment `first` (up to and including
    /// installment `first - 1`), or None when some installment before it
    /// already starts at or past `bound` of cumulative dues (see
    /// [`Loan::quality_days_paid_below`]). As if asked of each installment
    /// in turn, stopping at the first that starts at or past the bound: the
    /// same answer, overflow included, without the walk when the sums are
    /// kept.
    fn due_before(
        &mut self,
        first: usize,
        bound: Option<Decimal>,
    ) -> Result<Option<Decimal>, Overflow> {
        let Some(last) = first.checked_sub(1) else {
            return Ok(Some(Decimal::ZERO));
        };
        let Some(kept) = self.kept else {
            let mut before = Decimal::ZERO;
            for index in 0..first {
                if bound.is_some_and(|bound| before >= bound) {
                    return Ok(None);
                }
                before = self.through(index)?;
            }
            return Ok(Some(before));
        };
        if let Some(bound) = bound {
            // Installment i starts at the sum through i - 1 (0 for the
            // first). The sums only grow, so whether one of those before
            // `first` starts at or past the bound is the last of them the
            // walk would reach: the one before `last`, or the last kept one
            // when a sum overflows before it.
            if Decimal::ZERO >= bound {
                return Ok(None);
            }
            let reached = last.checked_sub(1).zip(kept.len().checked_sub(1));
            if let Some(start) = reached.map(|(before, kept)| before.min(kept))
                && kept.get(start).is_some_and(|sum| sum >= bound)
            {
                return Ok(None);
            }
        }
        kept.get(last).map(Some).ok_or(Overflow)
    }
}

/// The changes summed by date, in date order: summed in the list itself
/// (each date's sum where its first change was, the list then cut to the
/// sums), not copied into another.
pub(crate) fn merge_by_date(
    mut days: Vec<(NaiveDate, QualityDay)>,
) -> Result<Vec<(NaiveDate, QualityDay)>, Overflow> {
    days.sort_by_key(|(date, _)| *date);
    let mut merged: usize = 0;
    for next in 0..days.len() {
        let (date, day) = days[next];
        match merged.checked_sub(1).map(|last| &mut days[last]) {
            Some((last, sum)) if *last == date => sum.add(&day)?,
            _ => {
                days[merged] = (date, day);
                merged += 1;
            }
        }
    }
    days.truncate(merged);
    Ok(days)
}

/// `after - before`, day by day, of two lists of [`Loan::quality_days`]
/// (each in date order, one entry per date): the days that differ, in order.
pub fn quality_change(
    after: Vec<(NaiveDate, QualityDay)>,
    before: Vec<(NaiveDate, QualityDay)>,
) -> Result<Vec<(NaiveDate, QualityDay)>, Overflow> {
    if before.is_empty() {
        // A new loan: its days are the change.
        let mut change = after;
        change.retain(|(_, day)| !day.is_empty());
        return Ok(change);
    }
    let mut change = Vec::with_capacity(after.len().max(before.len()));
    let mut before = before.into_iter().peekable();
    for (date, mut day) in after {
        while let Some((earlier, gone)) = before.next_if(|(on, _)| *on < date) {
            let mut undo = QualityDay::default();
            undo.subtract(&gone)?;
            change.push((earlier, undo));
        }
        if let Some((_, was)) = before.next_if(|(on, _)| *on == date) {
            day.subtract(&was)?;
        }
        if !day.is_empty() {
            change.push((date, day));
        }
    }
    for (date, gone) in before {
        let mut undo = QualityDay::default();
        undo.subtract(&gone)?;
        change.push((date, undo));
    }
    change.retain(|(_, day)| !day.is_empty());
    Ok(change)
}

/// Everything an installment asks for.
fn installment_total(installment: &Installment) -> Result<Decimal, Overflow> {
    plus(
        plus(installment.principal, installment.interest)?,
        installment.fee,
    )
}

/// The dates of two maps of changes by date, in order, once each, with
/// each map's change on that date (zero where it has none).
struct ChangesByDate<'a> {
    principal: std::iter::Peekable<<&'a DatedAmounts as IntoIterator>::IntoIter>,
    paid: std::iter::Peekable<<&'a DatedAmounts as IntoIterator>::IntoIter>,
}

impl Iterator for ChangesByDate<'_> {
    type Item = (NaiveDate, Decimal, Decimal);

    fn next(&mut self) -> Option<(NaiveDate, Decimal, Decimal)> {
        let date = match (self.principal.peek(), self.paid.peek()) {
            (Some((a, _)), Some((b, _))) => (*a).min(*b),
            (Some((a, _)), None) => *a,
            (None, Some((b, _))) => *b,
            (None, None) => return None,
        };
        let principal = self.principal.next_if(|(on, _)| *on == date);
        let paid = self.paid.next_if(|(on, _)| *on == date);
        Some((
            date,
            principal.map_or(Decimal::ZERO, |(_, change)| change),
            paid.map_or(Decimal::ZERO, |(_, change)| change),
        ))
    }
}

/// Adds `change` to every day of `start..end` (no end: on and on) from
/// `from` on, as differences: `change` on the first day, its negation on `end`.
fn add_range(
    days: &mut Vec<(NaiveDate, QualityDay)>,
    start: NaiveDate,
    end: Option<NaiveDate>,
    from: NaiveDate,
    change: &QualityDay,
) -> Result<(), Overflow> {
    let first = start.max(from);
    if let Some(end) = end {
        if first >= end {
            return Ok(());
        }
        let mut undo = QualityDay::default();
        undo.subtract(change)?;
        days.push((end, undo));
    }
    days.push((first, *change));
    Ok(())
}

/// A new loan's schedule and the fees on its disbursement: what a
/// disbursement records and what a preview shows. Schedule errors name their
/// field under `field_prefix` (e.g. `terms`), or bare when it is empty.
pub fn initial_schedule(
    terms: &LoanTerms,
    fees: &[Fee],
    currency: Currency,
    field_prefix: &str,
) -> Result<(Vec<Installment>, Vec<FeeCharge>), DomainError> {
    let mut schedule =
        schedule::compute_schedule(terms).map_err(|e| schedule_refusal(field_prefix, e))?;
    let charges = fee_charges(fees, terms.principal, currency)?;
    for installment in &mut schedule {
        installment.principal = installment.principal.normalize();
        installment.interest = installment.interest.normalize();
    }
    if let Some(first) = schedule.first_mut() {
        first.fee =
            charged(&charges, FeeCollection::WithFirstInstallment).map_err(
                |_| match field_prefix {
                    "" => fees_overflow("principal"),
                    prefix => fees_overflow(&format!("{prefix}.principal")),
                },
            )?;
    }
    Ok((schedule, charges))
}

/// A schedule error as a refusal naming the field under `prefix`.
pub(super) fn schedule_refusal(prefix: &str, e: ScheduleError) -> DomainError {
    if e == ScheduleError::Overflow {
        // The principal, rate and installments together do not fit.
        return too_large(if prefix.is_empty() {
            "principal"
        } else {
            prefix
        });
    }
    let text = e.to_string();
    match text.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => {
            // The proto calls the multiple `rounding_multiple`.
            let field = field.replace("rounding.multiple", "rounding_multiple");
            let field = if prefix.is_empty() {
                field
            } else {
                format!("{prefix}.{field}")
            };
            DomainError::invalid(&field, message)
        }
        _ => DomainError::invalid(if prefix.is_empty() { "terms" } else { prefix }, text),
    }
}

#[cfg(test)]
mod quality_day_tests {
    use super::*;
    use proptest::prelude::*;

    /// Amounts of either sign, in whole units or hundredths, now and then
    /// one near the largest decimal (so that sums overflow).
    fn amount() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            4 => Just(Decimal::ZERO),
            8 => (-5_000i64..5_000).prop_map(Decimal::from),
            4 => (-500_000i64..500_000).prop_map(|cents| Decimal::new(cents, 2)),
            1 => prop_oneof![Just(Decimal::MAX), Just(Decimal::MIN)],
        ]
    }

    fn quality_day() -> impl Strategy<Value = QualityDay> {
        (
            -3i64..3,
            [amount(), amount(), amount()],
            -3i64..3,
            amount(),
            amount(),
        )
            .prop_map(
                |(active, par_change, arrears, due, paid_on_time)| QualityDay {
                    loans_active_change: active,
                    par_change,
                    loans_in_arrears_change: arrears,
                    due,
                    paid_on_time,
                },
            )
    }

    proptest! {
        /// Adding a loan's change of a day straight into the day's figures
        /// gives what adding it as a whole day does, field by field, and on
        /// overflow leaves the day as it was, as that does.
        #[test]
        fn a_change_added_in_place_is_the_change_added_as_a_day(
            held in quality_day(),
            change in quality_day(),
            collected in amount(),
        ) {
            let mut day = held.day_totals();
            day.principal_collected = collected;
            day.loans_disbursed = 2;
            let mut in_place = day.figures();
            let mut as_a_day = day.clone();
            let expected = as_a_day.add(&change.day_totals());
            prop_assert_eq!(change.add_to_figures(&mut in_place), expected);
            prop_assert_eq!(in_place, as_a_day.figures());
            if expected.is_err() {
                prop_assert_eq!(in_place, day.figures());
            }
        }
    }
}

#[cfg(test)]
mod cumulative_due_tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule(parts: &[(i64, i64, i64)]) -> Vec<InstallmentState> {
        let first: NaiveDate = "2024-01-08".parse().unwrap();
        parts
            .iter()
            .enumerate()
            .map(|(i, &(principal, interest, fee))| {
                InstallmentState::unpaid(schedule::Installment {
                    number: i as u32 + 1,
                    due_date: first + Days::new(7 * i as u64),
                    principal: Decimal::from(principal),
                    interest: Decimal::from(interest),
                    fee: Decimal::from(fee),
                })
            })
            .collect()
    }

    /// The whole schedule's sums, as they were worked out before.
    fn full_sums(installments: &[InstallmentState]) -> Vec<Decimal> {
        let mut total = Decimal::ZERO;
        installments
            .iter()
            .map(|i| {
                total += i.due.principal + i.due.interest + i.due.fee;
                total
            })
            .collect()
    }

    proptest! {
        /// Summing lazily answers as the whole schedule's sums do, asked in
        /// any order: the paid amounts of a loan go up and down (reversals).
        #[test]
        fn lazy_sums_answer_as_the_whole_schedule(
            parts in proptest::collection::vec((0i64..5_000, 0i64..500, 0i64..3), 0..60),
            asks in proptest::collection::vec(0i64..400_000, 1..20),
        ) {
            let installments = schedule(&parts);
            let full = full_sums(&installments);
            let installments = Installments::from(installments);
            let mut lazy = CumulativeDue::new(&installments);
            for amount in asks {
                let amount = Decimal::from(amount);
                prop_assert_eq!(
                    lazy.first_above(amount).unwrap(),
                    full.partition_point(|sum| *sum <= amount)
                );
            }
            for (index, sum) in full.iter().enumerate().rev() {
                prop_assert_eq!(lazy.through(index).unwrap(), *sum);
            }
        }
    }

    /// The installments as given, and the same installments keeping their
    /// cumulative dues.
    fn plain_and_kept(installments: Vec<InstallmentState>) -> (Installments, Installments) {
        let plain = Installments::from(installments);
        let mut kept = plain.clone();
        kept.keep_cumulative_dues(true);
        (plain, kept)
    }

    /// Amounts in whole units and in hundredths (where a sum too large for
    /// its decimals is rounded before it overflows), and now and then one
    /// large enough that a schedule's sums overflow partway.
    fn amount() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            20 => (0i64..5_000).prop_map(Decimal::from),
            15 => (0i64..500_000).prop_map(|cents| Decimal::new(cents, 2)),
            1 => (0u32..4).prop_map(|i| Decimal::MAX / Decimal::from(1 + i)),
            1 => (0u32..4).prop_map(|i| Decimal::MAX / Decimal::from(100 + i) + Decimal::new(1, 2)),
        ]
    }

    proptest! {
        /// The sums a loan keeps answer every question as summing on demand
        /// does, overflow included: the same sums, the same installments
        /// covered, the same refusals, and the same stop at a bound.
        #[test]
        fn kept_sums_answer_as_summing_on_demand(
            parts in proptest::collection::vec((amount(), 0i64..500, 0i64..3), 0..80),
            asks in proptest::collection::vec(
                prop_oneof![(0i64..200_000).prop_map(Decimal::from), amount()],
                1..12,
            ),
            firsts in proptest::collection::vec(0usize..45, 1..8),
        ) {
            let installments: Vec<InstallmentState> = parts
                .iter()
                .enumerate()
                .map(|(i, &(principal, interest, fee))| {
                    InstallmentState::unpaid(schedule::Installment {
                        number: i as u32 + 1,
                        due_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                            + Days::new(7 * i as u64),
                        principal,
                        interest: Decimal::from(interest),
                        fee: Decimal::from(fee),
                    })
                })
                .collect();
            let (plain, kept) = plain_and_kept(installments);
            prop_assert!(plain.cumulative_dues().is_none());
            prop_assert!(kept.cumulative_dues().is_some());
            let mut lazy = CumulativeDue::new(&plain);
            // Its searches start anywhere, then where the last one ended.
            let mut read = CumulativeDue::new(&kept).near(firsts[0]);
            for &amount in &asks {
                prop_assert_eq!(read.first_above(amount), lazy.first_above(amount));
            }
            for index in (0..parts.len() + 2).rev() {
                let (a, b) = (read.through(index), lazy.through(index));
                prop_assert_eq!(a, b);
                // The same number to the last digit of its scale.
                prop_assert_eq!(a.map(|d| d.serialize()), b.map(|d| d.serialize()));
            }
            // Bounds between the sums and at them.
            let sums = kept.cumulative_dues().map(CumulativeDues::to_vec).unwrap_or_default();
            let bounds: Vec<Option<Decimal>> = asks
                .iter()
                .chain(&sums)
                .copied()
                .map(Some)
                .chain([None, Some(Decimal::ZERO)])
                .collect();
            for &first in &firsts {
                for &bound in &bounds {
                    // Fresh each time: the walk without kept sums stops
                    // early, and must not lean on an earlier question's sums.
                    let mut lazy = CumulativeDue::new(&plain);
                    prop_assert_eq!(
                        CumulativeDue::new(&kept).due_before(first, bound),
                        lazy.due_before(first, bound),
                        "first {}, bound {:?}", first, bound
                    );
                }
            }
        }
    }

    #[test]
    fn a_recast_drops_the_kept_sums_and_keeping_them_again_sums_the_new_dues() {
        let (_, mut kept) = plain_and_kept(schedule(&[(100, 10, 0), (100, 10, 0), (100, 10, 0)]));
        // A payment leaves them.
        kept.get_mut(0).unwrap().principal_paid = Decimal::from(100);
        assert_eq!(
            kept.cumulative_dues().map(CumulativeDues::to_vec),
            Some([110, 220, 330].map(Decimal::from).to_vec())
        );
        // The same amount at another scale is another number to them.
        kept.get_mut(1).unwrap().due.interest = Decimal::new(1000, 2);
        assert_eq!(kept.cumulative_dues(), None);
        kept.keep_cumulative_dues(true);
        kept.get_mut(1).unwrap().due.principal = Decimal::from(50);
        assert_eq!(kept.cumulative_dues(), None);
        kept.keep_cumulative_dues(true);
        assert_eq!(
            kept.cumulative_dues().map(CumulativeDues::to_vec),
            Some([110, 170, 280].map(Decimal::from).to_vec())
        );
        kept.for_each_before_mut(3, |i| i.fee_paid = i.due.fee);
        assert!(kept.cumulative_dues().is_some());
        kept.for_each_before_mut(3, |i| i.due.fee = Decimal::ONE);
        assert_eq!(kept.cumulative_dues(), None);
        kept.keep_cumulative_dues(true);
        kept.keep_cumulative_dues(false);
        assert_eq!(kept.cumulative_dues(), None);
    }

    #[test]
    fn searching_from_the_start_finds_what_a_binary_search_finds() {
        for len in 0..70usize {
            // Every third installment due 1, the others nothing: the sums
            // come in runs of three, and the search lands inside them.
            let parts: Vec<(i64, i64, i64)> =
                (0..len).map(|i| (0, i64::from(i % 3 == 0), 0)).collect();
            let (_, kept) = plain_and_kept(schedule(&parts));
            let dues = kept.cumulative_dues().unwrap();
            let sums = dues.to_vec();
            for bound in 0..=len / 3 + 1 {
                let amount = Decimal::from(bound);
                assert_eq!(
                    dues.covered_by(amount),
                    sums.partition_point(|sum| *sum <= amount),
                    "{len} sums, at most {bound}"
                );
            }
        }
    }

    #[test]
    fn an_amount_at_a_sum_covers_that_installment_and_not_the_next() {
        let installments =
            Installments::from(schedule(&[(100, 10, 0), (100, 10, 0), (100, 10, 0)]));
        let mut lazy = CumulativeDue::new(&installments);
        assert_eq!(lazy.first_above(Decimal::ZERO).unwrap(), 0);
        assert_eq!(lazy.first_above(Decimal::from(110)).unwrap(), 1);
        // Only as far as the question needed.
        assert_eq!(lazy.sums.len(), 2);
        assert_eq!(lazy.first_above(Decimal::from(219)).unwrap(), 1);
        assert_eq!(lazy.first_above(Decimal::from(330)).unwrap(), 3);
        assert_eq!(lazy.first_above(Decimal::from(10_000)).unwrap(), 3);
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    /// A loan's days summed by date: in date order, one a date, each the
    /// sum of that date's changes; an overflowing sum an error.
    #[test]
    fn days_merge_into_one_a_date_in_date_order() {
        let on = |day: u32| NaiveDate::from_ymd_opt(2024, 1, day).unwrap();
        let due = |amount: i64| QualityDay {
            due: Decimal::from(amount),
            ..QualityDay::default()
        };
        assert_eq!(merge_by_date(Vec::new()), Ok(Vec::new()));
        assert_eq!(
            merge_by_date(vec![(on(3), due(1))]),
            Ok(vec![(on(3), due(1))])
        );
        let merged = merge_by_date(vec![
            (on(5), due(1)),
            (on(2), due(10)),
            (on(5), due(100)),
            (on(2), due(1000)),
            (on(9), due(7)),
            (on(5), due(10_000)),
        ]);
        assert_eq!(
            merged,
            Ok(vec![
                (on(2), due(1010)),
                (on(5), due(10_101)),
                (on(9), due(7))
            ])
        );
        assert_eq!(
            merge_by_date(vec![(on(1), due(1)); 5]),
            Ok(vec![(on(1), due(5))])
        );
        let most = QualityDay {
            due: Decimal::MAX,
            ..QualityDay::default()
        };
        assert_eq!(
            merge_by_date(vec![(on(1), most), (on(2), due(1)), (on(1), due(1))]),
            Err(Overflow)
        );
    }
}
