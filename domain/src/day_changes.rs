//! What an entry changes of one branch's days, as the figures it moves.
//!
//! A new loan changes a day per installment, each by a figure or two (the
//! installment due; the day its principal would fall into arrears). Handed
//! on as whole days (some 300 bytes each), once as the days' new totals
//! and once as their changes for the day log, the days cost the writer and
//! the read side more than working them out. So each changed figure is
//! kept with its new value, worked out once by the state that keeps the
//! days (the read side; the writer keeps none): it sets it in its copy of
//! the day, and the day log encodes the change (the bytes it encoded from
//! whole days before: only the figures that are not zero).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::ids::ProductId;
use super::totals::{DayTotals, Overflow, ProductDay, figure, plus, plus_count};

/// One figure of one day, changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FigureChange {
    /// Which figure, numbered as [`figure`] numbers them.
    pub figure: u8,
    /// By how much it changes (never zero).
    pub by: Decimal,
    /// Its value after the change.
    pub to: Decimal,
}

/// One day's loans of one product, changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductChange {
    pub product: Option<ProductId>,
    /// By how much they change.
    pub by: ProductDay,
    /// What they are after the change (none left: the product leaves the
    /// day).
    pub to: ProductDay,
}

/// One changed day: its date and its changes.
#[derive(Clone, Copy, Debug)]
pub struct ChangedDay<'a> {
    pub date: NaiveDate,
    /// In figure order.
    pub figures: &'a [FigureChange],
    /// In product order.
    pub products: &'a [ProductChange],
}

/// What an entry changes of one branch's days, in date order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayChanges {
    /// Each changed day, with where its changes end in the lists below.
    days: Vec<DayEnd>,
    figures: Vec<FigureChange>,
    /// Loans by product change on the days loans are disbursed (or a
    /// disbursement reversed): few, and kept apart from the figures.
    products: Vec<ProductChange>,
}

/// A changed day, and where its changes end (its first ones follow the
/// day before's last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DayEnd {
    date: NaiveDate,
    figures: usize,
    products: usize,
}

impl DayChanges {
    /// Room for `days` days of a figure or two.
    pub fn with_capacity(days: usize) -> DayChanges {
        DayChanges {
            days: Vec::with_capacity(days),
            figures: Vec::with_capacity(days + days / 2),
            products: Vec::new(),
        }
    }

    /// True when no day changes.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Adds the change of the day on `date`, which stood as `held` before
    /// the entry (`None`: it had no totals): its figures change by `by`
    /// (numbered as [`figure`] numbers them) and its loans by product by
    /// `products`. Dates must come in increasing order. On an overflow (a
    /// new value that does not fit, or a count that leaves `i64`) nothing
    /// of the day is added.
    pub fn push(
        &mut self,
        date: NaiveDate,
        held: Option<&DayTotals>,
        by: &[Decimal; figure::COUNT],
        products: Option<&BTreeMap<Option<ProductId>, ProductDay>>,
    ) -> Result<(), Overflow> {
        self.push_figures(date, held, (0u8..).zip(by.iter().copied()), products)
    }

    /// [`DayChanges::push`] of a few figures: `by` gives each figure that
    /// changes with its change, in figure order, each figure once (a zero
    /// change is left out).
    pub fn push_figures(
        &mut self,
        date: NaiveDate,
        held: Option<&DayTotals>,
        by: impl IntoIterator<Item = (u8, Decimal)>,
        products: Option<&BTreeMap<Option<ProductId>, ProductDay>>,
    ) -> Result<(), Overflow> {
        debug_assert!(
            self.days.last().is_none_or(|last| last.date < date),
            "days pushed in date order"
        );
        let (figures, products_before) = (self.figures.len(), self.products.len());
        if let Err(overflow) = self.push_day(held, by, products) {
            self.figures.truncate(figures);
            self.products.truncate(products_before);
            return Err(overflow);
        }
        if (self.figures.len(), self.products.len()) != (figures, products_before) {
            self.days.push(DayEnd {
                date,
                figures: self.figures.len(),
                products: self.products.len(),
            });
        }
        Ok(())
    }

    fn push_day(
        &mut self,
        held: Option<&DayTotals>,
        by: impl IntoIterator<Item = (u8, Decimal)>,
        products: Option<&BTreeMap<Option<ProductId>, ProductDay>>,
    ) -> Result<(), Overflow> {
        let start = self.figures.len();
        for (number, by) in by {
            if by.is_zero() {
                continue;
            }
            // In its one form (no trailing zeros), as the sums that built a
            // whole day's change left it: the day log encodes it, and the
            // caches hold those bytes. A loan's installment due is a
            // difference, not normalised.
            let by = by.normalize();
            debug_assert!(
                self.figures.len() == start
                    || self.figures.last().is_some_and(|last| last.figure < number),
                "a day's figures pushed in figure order"
            );
            let to = match held {
                // A figure the day does not hold yet (an installment's day):
                // the change itself, as `plus` would leave it.
                None => by,
                Some(day) => plus(day.figure(number), by)?,
            };
            if DayTotals::is_count(number) && (i64::try_from(to).is_err() || !to.fract().is_zero())
            {
                return Err(Overflow);
            }
            self.figures.push(FigureChange {
                figure: number,
                by,
                to,
            });
        }
        for (product, by) in products.into_iter().flatten() {
            let was = held.and_then(|day| day.disbursed_by_product.get(product));
            let to = ProductDay {
                loans: plus_count(was.map_or(0, |was| was.loans), by.loans)?,
                amount: plus(was.map_or(Decimal::ZERO, |was| was.amount), by.amount)?,
            };
            self.products.push(ProductChange {
                product: product.clone(),
                by: ProductDay {
                    loans: by.loans,
                    amount: by.amount.normalize(),
                },
                to,
            });
        }
        Ok(())
    }

    /// The changed days, in date order.
    pub fn days(&self) -> impl ExactSizeIterator<Item = ChangedDay<'_>> {
        let mut start = (0, 0);
        self.days.iter().map(move |end| {
            let (figures, products) = start;
            start = (end.figures, end.products);
            ChangedDay {
                date: end.date,
                figures: &self.figures[figures..end.figures],
                products: &self.products[products..end.products],
            }
        })
    }

    /// How many days change.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Writes the changes into `days`, the branch's days they were worked
    /// out from (or a copy at the same entry), calling `written` with the
    /// date of each day written. A day left with no figure is removed.
    pub fn write_into(
        &self,
        days: &mut BTreeMap<NaiveDate, DayTotals>,
        mut written: impl FnMut(NaiveDate),
    ) {
        for changed in self.days() {
            written(changed.date);
            let day = days.entry(changed.date).or_default();
            for change in changed.figures {
                // Checked when staged: a figure that exists, a count that
                // fits.
                let set = day.set_figure(change.figure, change.to);
                debug_assert!(set.is_ok(), "a figure checked when staged: {set:?}");
            }
            for change in changed.products {
                if change.to.loans == 0 && change.to.amount.is_zero() {
                    day.disbursed_by_product.remove(&change.product);
                } else {
                    day.disbursed_by_product
                        .insert(change.product.clone(), change.to.clone());
                }
            }
            if day.is_empty() {
                days.remove(&changed.date);
            }
        }
    }

    /// The changes of whole days (`changes`, in date order) to `held`:
    /// days that change nothing are left out. For tests, which state
    /// changes as whole days.
    #[cfg(test)]
    pub(crate) fn of_days(
        held: &BTreeMap<NaiveDate, DayTotals>,
        changes: &[(NaiveDate, DayTotals)],
    ) -> Result<DayChanges, Overflow> {
        let mut day_changes = DayChanges::with_capacity(changes.len());
        for (date, change) in changes {
            day_changes.push(
                *date,
                held.get(date),
                &change.figures(),
                Some(&change.disbursed_by_product),
            )?;
        }
        Ok(day_changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, day).expect("a March date")
    }

    fn product(id: &str) -> Option<ProductId> {
        Some(ProductId::parse("product", id).expect("an id"))
    }

    /// Days that, with their changes written in, are the days each change
    /// added whole gives: figures set, products in and out, days emptied
    /// and removed, days that change nothing left alone.
    #[test]
    fn written_changes_are_the_days_added_whole() {
        let mut held = BTreeMap::new();
        let mut first = DayTotals {
            due: Decimal::new(12_500, 0),
            loans_active_change: 2,
            ..DayTotals::default()
        };
        first.disbursed_by_product.insert(
            product("P1"),
            ProductDay {
                loans: 1,
                amount: Decimal::from(5_000_000),
            },
        );
        held.insert(date(1), first.clone());
        held.insert(
            date(4),
            DayTotals {
                par30_change: Decimal::new(-2, 1),
                ..DayTotals::default()
            },
        );
        let mut undo_first = first.negated();
        undo_first.due = Decimal::ZERO;
        let mut adds_product = DayTotals {
            loans_disbursed: 1,
            ..DayTotals::default()
        };
        adds_product.disbursed_by_product.insert(
            product("P2"),
            ProductDay {
                loans: 1,
                amount: Decimal::from(7),
            },
        );
        let changes = [
            // Takes the first day's product and count away, keeps its due.
            (date(1), undo_first),
            // Changes nothing.
            (date(2), DayTotals::default()),
            // A new day with a product.
            (date(3), adds_product),
            // Empties the day.
            (
                date(4),
                DayTotals {
                    par30_change: Decimal::new(2, 1),
                    ..DayTotals::default()
                },
            ),
        ];
        let day_changes = DayChanges::of_days(&held, &changes).expect("small amounts");
        let mut expected = held.clone();
        for (date, change) in &changes {
            let day = expected.entry(*date).or_default();
            day.add(change).expect("small amounts");
            if day.is_empty() {
                expected.remove(date);
            }
        }
        let mut written = Vec::new();
        let mut days = held.clone();
        day_changes.write_into(&mut days, |date| written.push(date));
        assert_eq!(days, expected);
        assert_eq!(
            written,
            [date(1), date(3), date(4)],
            "the second day is left alone"
        );
        assert_eq!(day_changes.len(), 3);
        assert_eq!(days[&date(1)].due, Decimal::new(12_500, 0));
        assert!(days[&date(1)].disbursed_by_product.is_empty());
        assert!(!days.contains_key(&date(4)));
    }

    /// A change is kept in its one form, whatever form it came in: the
    /// day log's bytes are those a whole day's change (built by sums, which
    /// normalise) gave, and the caches hold those bytes.
    #[test]
    fn a_change_is_kept_without_trailing_zeros() {
        let mut changes = DayChanges::default();
        // An installment due of 100.00, as a difference of two sums leaves it.
        let due = Decimal::new(10_000, 2);
        changes
            .push_figures(date(1), None, [(figure::DUE, due)], None)
            .expect("fits");
        let held = DayTotals {
            due: Decimal::new(5, 1),
            ..DayTotals::default()
        };
        changes
            .push_figures(date(2), Some(&held), [(figure::DUE, due)], None)
            .expect("fits");
        let pushed: Vec<(u128, u32, Decimal)> = changes
            .days()
            .flat_map(|day| day.figures.iter())
            .map(|change| {
                (
                    change.by.mantissa().unsigned_abs(),
                    change.by.scale(),
                    change.to,
                )
            })
            .collect();
        assert_eq!(
            pushed,
            [
                (100, 0, Decimal::from(100)),
                (100, 0, Decimal::new(1005, 1)),
            ]
        );
        assert_eq!(
            changes.days().next().map(|day| day.figures[0].to.scale()),
            Some(0)
        );
    }

    /// A new value that does not fit is an overflow, and the day it was
    /// part of is not added.
    #[test]
    fn a_change_that_does_not_fit_adds_nothing_of_its_day() {
        let mut held = BTreeMap::new();
        held.insert(
            date(2),
            DayTotals {
                borrowers_change: i64::MAX,
                ..DayTotals::default()
            },
        );
        let mut changes = DayChanges::default();
        let mut by = [Decimal::ZERO; figure::COUNT];
        by[usize::from(figure::DUE)] = Decimal::ONE;
        changes.push(date(1), None, &by, None).expect("fits");
        by[usize::from(figure::BORROWERS_CHANGE)] = Decimal::ONE;
        assert_eq!(
            changes.push(date(2), held.get(&date(2)), &by, None),
            Err(Overflow)
        );
        let mut by = [Decimal::ZERO; figure::COUNT];
        by[usize::from(figure::DUE)] = Decimal::MAX;
        let max_due = DayTotals {
            due: Decimal::MAX,
            ..DayTotals::default()
        };
        assert_eq!(
            changes.push(date(3), Some(&max_due), &by, None),
            Err(Overflow)
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes.days().next().map(|day| day.date), Some(date(1)));
    }
}
