//! Closed and cancelled loans let go of, and their summaries.
//!
//! A loan that ended owes nothing, and over the years most of a branch's
//! loans have ended (about 18,800 of the 20,809 loans of the simulated
//! branch's ten years). Once the state cache holds such a loan whole, in
//! its record read when asked ([`StateKey::LoanSchedule`]), and what the
//! commands and listings read of it ([`EndedLoan`], in a record read when
//! asked too: [`StateKey::LoanEnded`]), memory lets go of it: a command or
//! listing that names it reads its summary back
//! ([`LedgerState::loan`]), and what reads more reads the loan back whole
//! ([`LedgerState::whole_loan`]).

use super::*;

/// What the commands and listings read of a closed or cancelled loan: who
/// and where, what was lent, when it started and ended, and its
/// principal's spans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedLoan {
    pub id: LoanId,
    pub member: MemberId,
    pub branch: BranchId,
    /// Closed or cancelled.
    pub status: LoanStatus,
    /// The principal of its first disbursement (its terms').
    #[serde(with = "crate::codec::decimal")]
    pub principal: Decimal,
    #[serde(with = "crate::codec::date")]
    pub disbursed_on: NaiveDate,
    /// Set on every loan an entry closed or cancelled; kept as the loan
    /// keeps it, so that a summary is made of any loan that ended.
    #[serde(with = "crate::codec::date_option")]
    pub ended_on: Option<NaiveDate>,
    /// Date of its latest transaction (commands on a loan are refused
    /// before it, whatever the loan's status: the order of the checks is
    /// kept).
    #[serde(with = "crate::codec::date")]
    pub last_repayment_on: NaiveDate,
    /// +1 on each date its principal outstanding became positive, -1 on
    /// each it came back to zero ([`borrowing_spans`]).
    #[serde(with = "crate::codec::date_decimal_map")]
    pub spans: crate::dated::DatedAmounts,
}

impl EndedLoan {
    /// The summary of `loan`, which must have ended (`None` otherwise).
    pub fn of(loan: &Loan) -> Option<EndedLoan> {
        if !loan.has_ended() {
            return None;
        }
        Some(EndedLoan {
            id: loan.id.clone(),
            member: loan.member.clone(),
            branch: loan.branch.clone(),
            status: loan.status,
            principal: loan.terms.principal,
            disbursed_on: loan.disbursed_on,
            ended_on: loan.ended_on,
            last_repayment_on: loan.last_repayment_on,
            spans: borrowing_spans_or_all(&loan.principal_changes),
        })
    }
}

/// A loan as the state gives it ([`LedgerState::loan`]): whole, as memory
/// holds it, or the summary of one that ended and that memory let go of,
/// read back from the store.
#[derive(Clone, Debug, PartialEq)]
pub enum LoanSlot {
    Whole(Arc<Loan>),
    Ended(Arc<EndedLoan>),
}

impl LoanSlot {
    /// The loan, when held whole.
    pub fn whole(&self) -> Option<&Arc<Loan>> {
        match self {
            LoanSlot::Whole(loan) => Some(loan),
            LoanSlot::Ended(_) => None,
        }
    }

    /// True for the summary of a loan memory let go of.
    pub fn is_summary(&self) -> bool {
        matches!(self, LoanSlot::Ended(_))
    }

    pub fn id(&self) -> &LoanId {
        match self {
            LoanSlot::Whole(loan) => &loan.id,
            LoanSlot::Ended(ended) => &ended.id,
        }
    }

    pub fn member(&self) -> &MemberId {
        match self {
            LoanSlot::Whole(loan) => &loan.member,
            LoanSlot::Ended(ended) => &ended.member,
        }
    }

    pub fn branch(&self) -> &BranchId {
        match self {
            LoanSlot::Whole(loan) => &loan.branch,
            LoanSlot::Ended(ended) => &ended.branch,
        }
    }

    pub fn status(&self) -> LoanStatus {
        match self {
            LoanSlot::Whole(loan) => loan.status,
            LoanSlot::Ended(ended) => ended.status,
        }
    }

    /// True when the loan is closed or cancelled.
    pub fn has_ended(&self) -> bool {
        matches!(self.status(), LoanStatus::Closed | LoanStatus::Cancelled)
    }

    /// The principal of its first disbursement.
    pub fn principal(&self) -> Decimal {
        match self {
            LoanSlot::Whole(loan) => loan.terms.principal,
            LoanSlot::Ended(ended) => ended.principal,
        }
    }

    /// Principal not yet repaid (zero once closed, written off or cancelled).
    pub fn principal_outstanding(&self) -> Decimal {
        match self {
            LoanSlot::Whole(loan) => loan.principal_outstanding(),
            LoanSlot::Ended(_) => Decimal::ZERO,
        }
    }

    pub fn disbursed_on(&self) -> NaiveDate {
        match self {
            LoanSlot::Whole(loan) => loan.disbursed_on,
            LoanSlot::Ended(ended) => ended.disbursed_on,
        }
    }

    pub fn ended_on(&self) -> Option<NaiveDate> {
        match self {
            LoanSlot::Whole(loan) => loan.ended_on,
            LoanSlot::Ended(ended) => ended.ended_on,
        }
    }

    pub fn last_repayment_on(&self) -> NaiveDate {
        match self {
            LoanSlot::Whole(loan) => loan.last_repayment_on,
            LoanSlot::Ended(ended) => ended.last_repayment_on,
        }
    }

    /// Its principal by date, or for a summary its spans: either answers
    /// whether principal was outstanding at the end of a day, and the
    /// last date it changed.
    pub fn principal_changes(&self) -> &crate::dated::DatedAmounts {
        match self {
            LoanSlot::Whole(loan) => &loan.principal_changes,
            LoanSlot::Ended(ended) => &ended.spans,
        }
    }

    /// True when the loan was disbursed and had not ended by `date`
    /// ([`Loan::active_on`]).
    pub fn active_on(&self, date: NaiveDate) -> bool {
        date >= self.disbursed_on() && self.ended_on().is_none_or(|end| date < end)
    }
}
