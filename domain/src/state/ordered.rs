//! Ordered walks of the state's collections from a key on, for paged reads:
//! a page starts just after the last key of the page before, so its work is
//! proportional to the page, not to the whole collection.

use std::ops::Bound;

use super::keys::LOAN_ENDED_PREFIX;

use super::*;

impl LedgerState {
    /// Loans in id order, starting just after `after` (at the first loan
    /// when `None`), at most `limit`: those memory holds, whole, and the
    /// summaries of those it let go of, read from the store, unless
    /// `active_on` says only loans active on that day are wanted and none
    /// let go of was (its summaries are then neither read nor given: a
    /// question about today reads no ended loan). The caller still checks
    /// [`LoanSlot::active_on`] of the held ones. With them, the loan to go
    /// on after when more may follow (fewer than `limit` may come before
    /// it). A reader may look at them after releasing the lock (`Arc`s): a
    /// loan that changes later is replaced, so what it holds stays as it
    /// was when taken. An error when the store could not list the
    /// summaries, or holds a damaged one.
    pub fn loans_after(
        &self,
        after: Option<&LoanId>,
        limit: usize,
        active_on: Option<NaiveDate>,
    ) -> Result<LoansTaken, DomainError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let held = self
            .loans
            .range::<LoanId, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, loan)| LoanSlot::Whole(loan.clone()));
        let wanted = active_on.is_none_or(|day| self.ended_latest.is_some_and(|end| day < end));
        let held: Vec<LoanSlot> = held.collect();
        let Some(store) = self.stored.0.as_deref().filter(|_| wanted) else {
            let next = held.last().map(|loan| loan.id().clone());
            return Ok(LoansTaken {
                next: next.filter(|_| held.len() == limit),
                loans: held,
                passed_over: 0,
            });
        };
        // Memory's is the loan as it stands (reopened, or ended again,
        // since the store took it, its records maybe being written again
        // now): the store's is passed over unread.
        let held_key = |key: &[u8]| {
            std::str::from_utf8(key)
                .ok()
                .and_then(|key| key.strip_prefix(LOAN_ENDED_PREFIX))
                .and_then(|id| LoanId::parse("key", id).ok())
                .is_some_and(|id| self.loans.contains_key(&id))
        };
        let read = store
            .records_after(
                LOAN_ENDED_PREFIX.as_bytes(),
                after.map(|id| id.as_str().as_bytes()),
                limit,
                &held_key,
            )
            .map_err(|error| stored_error("the ended loans' summaries", error))?;
        // Each list is whole up to its last loan when it is full; merged,
        // both are up to the first of those.
        let full_up_to = |last: Option<&LoanId>, len: usize| last.filter(|_| len == limit).cloned();
        let mut ended = Vec::with_capacity(read.len());
        for (key, value) in &read {
            let name = String::from_utf8_lossy(key);
            let id = name.strip_prefix(LOAN_ENDED_PREFIX).unwrap_or_default();
            let id = LoanId::parse("key", id).map_err(|_| DomainError::Damaged {
                message: format!("record {name:?} of the state cache names no loan"),
            })?;
            let summary = keys::decode_summary(key, value, &id)
                .map_err(|error| stored_error(&format!("loan {id}'s summary"), error))?;
            ended.push(summary);
        }
        let bound = match (
            full_up_to(held.last().map(LoanSlot::id), held.len()),
            full_up_to(ended.last().map(|summary| &summary.id), read.len()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let read_count = ended.len();
        let ended: Vec<LoanSlot> = ended
            .into_iter()
            .filter(|summary| active_on.is_none_or(|day| summary_active_on(summary, day)))
            .map(|summary| LoanSlot::Ended(Arc::new(summary)))
            .collect();
        let passed_over = read_count - ended.len();
        let mut loans: Vec<LoanSlot> = held.into_iter().chain(ended).collect();
        loans.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        if let Some(bound) = &bound {
            loans.retain(|loan| loan.id() <= bound);
        }
        let next = if loans.len() > limit {
            loans.truncate(limit);
            loans.last().map(|loan| loan.id().clone())
        } else {
            bound
        };
        Ok(LoansTaken {
            loans,
            next,
            passed_over,
        })
    }

    /// Every loan ([`LedgerState::loans_after`] from the first, without a
    /// limit), or those that may have been active on `active_on`.
    pub fn every_loan(&self, active_on: Option<NaiveDate>) -> Result<Vec<LoanSlot>, DomainError> {
        self.loans_after(None, usize::MAX, active_on)
            .map(|taken| taken.loans)
    }

    /// Every product's latest version in id order, starting just after
    /// `after` (at the first product when `None`), with its number of
    /// versions.
    pub fn products_after<'a>(
        &'a self,
        after: Option<&ProductId>,
    ) -> impl Iterator<Item = (&'a ProductVersion, usize)> + use<'a> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.products
            .range::<ProductId, _>((start, Bound::Unbounded))
            .filter_map(|(_, versions)| versions.last().map(|last| (last, versions.len())))
    }
}

/// True when the loan `summary` describes was active on `day`.
fn summary_active_on(summary: &EndedLoan, day: NaiveDate) -> bool {
    day >= summary.disbursed_on && summary.ended_on.is_none_or(|end| day < end)
}

/// Loans taken in id order ([`LedgerState::loans_after`]).
#[derive(Debug)]
pub struct LoansTaken {
    pub loans: Vec<LoanSlot>,
    /// The loan to go on after, when more may follow.
    pub next: Option<LoanId>,
    /// Summaries read from the store and passed over, as not active on
    /// the day asked.
    pub passed_over: usize,
}
