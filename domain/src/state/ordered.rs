//! Ordered walks of the state's collections from a key on, for paged reads:
//! a page starts just after the last key of the page before, so its work is
//! proportional to the page, not to the whole collection.

use std::ops::Bound;

use super::*;

impl LedgerState {
    /// Loans in id order, starting just after `after` (at the first loan
    /// when `None`), whole or as the summaries of those that ended. A
    /// reader may clone them (`Arc`s) and release the lock before looking
    /// at them: a loan that changes later is replaced, so what it holds
    /// stays as it was when taken.
    pub fn loans_after<'a>(
        &'a self,
        after: Option<&LoanId>,
    ) -> impl Iterator<Item = &'a LoanSlot> + use<'a> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.loans
            .range::<LoanId, _>((start, Bound::Unbounded))
            .map(|(_, loan)| loan)
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
