//! A chunk of a loan's installments packed into bytes: each installment's
//! number and six amounts kept as columns of fixed-width integers, so that
//! installment `i` is read at a known offset without decoding the others,
//! and its due date as a date (4 bytes: a date worked out from a count of
//! days is a calendar's arithmetic, and reading a schedule reads every
//! installment's date).
//!
//! An installment held as itself is a number, a date and six 16-byte
//! decimals: 104 bytes, most of them zeros (an amount of a few million
//! dong, nothing paid yet). A running loan of the usual 50 installments
//! held about 6 KB with its chunks, and a branch's running loans were the
//! largest part of memory that grows with the branch. Packed, the numbers
//! are held as their differences from the first one's plus their place
//! (none for consecutive numbers), the amounts as their mantissas at the
//! column's one scale, each column in the fewest bytes that hold all of
//! the chunk's (none when they are all zero), and a column of amounts
//! paid in no bytes at all when every installment of the chunk was paid
//! that part in full.
//!
//! Every value reads back exactly as it was written, the decimal's scale
//! and sign included: a column whose amounts are not all of one scale, or
//! whose mantissas do not fit in 64 bits, or that holds a negative zero,
//! keeps each amount's own 16 bytes ([`Decimal::serialize`]).

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::schedule::Installment;
use crate::state::InstallmentState;

/// The columns: the installment's number, then its amounts in
/// [`amounts`]'s order.
const COLUMNS: usize = 7;

/// The first amount's column.
const FIRST_AMOUNT: usize = 1;

// How a column's values are held: its width in bytes (0, 1, 2, 4 or 8),
// or one of these two.

/// Each amount's own 16 bytes ([`Decimal::serialize`]).
const RAW: u8 = 16;
/// Each amount is the amount due of the same part (an amount paid's
/// column only): nothing is held.
const AS_DUE: u8 = 0xFF;

/// Where a column's values are and how they are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Column {
    /// Offset of its first value in the chunk's bytes.
    at: u16,
    /// Bytes a value: 0, 1, 2, 4 or 8 (a signed little-endian integer: a
    /// number's difference from the first one's plus its place, or an
    /// amount's mantissa), [`RAW`] or [`AS_DUE`].
    width: u8,
    /// The scale of every amount of the column (an amount's column, held as
    /// differences).
    scale: u8,
}

/// The most installments a chunk packs.
pub(super) const MAX: usize = 8;

/// Up to [`MAX`] installments, packed (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Packed {
    len: u8,
    /// The first installment's number: the number column holds each one's
    /// difference from this plus its place (none for consecutive numbers).
    number: u32,
    /// Each installment's due date (the last one's repeated after `len`).
    dates: [NaiveDate; MAX],
    columns: [Column; COLUMNS],
    bytes: Box<[u8]>,
}

/// An installment's six amounts, in column order: what is due, then what
/// was paid, of principal, interest and fees.
fn amounts(installment: &InstallmentState) -> [Decimal; 6] {
    let due = &installment.due;
    [
        due.principal,
        due.interest,
        due.fee,
        installment.principal_paid,
        installment.interest_paid,
        installment.fee_paid,
    ]
}

/// Whether two decimals are the same number at the same scale and sign
/// (`==` on decimals ignores the scale).
pub(super) fn same(a: Decimal, b: Decimal) -> bool {
    a.serialize() == b.serialize()
}

/// The fewest bytes (0, 1, 2, 4 or 8) that hold every one of `values`.
fn width_of(values: impl Iterator<Item = i64>) -> u8 {
    let (low, high) = values.fold((0i64, 0i64), |(low, high), v| (low.min(v), high.max(v)));
    let fits = |bits: u32| {
        let bound = 1i64 << (bits - 1);
        low >= -bound && high < bound
    };
    match (low, high) {
        (0, 0) => 0,
        _ if fits(8) => 1,
        _ if fits(16) => 2,
        _ if fits(32) => 4,
        _ => 8,
    }
}

/// Writes `values` as a column of the fewest bytes that hold them all.
fn integers(bytes: &mut Vec<u8>, values: &[i64], scale: u8) -> Column {
    let width = width_of(values.iter().copied());
    let at = bytes.len() as u16;
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes()[..usize::from(width)]);
    }
    Column { at, width, scale }
}

/// The mantissas of `amounts` into `into`, and their scale, when they all
/// have the one scale, fit in 64 bits and none is a negative zero.
fn narrow(mut amounts: impl Iterator<Item = Decimal>, into: &mut [i64; MAX]) -> Option<u8> {
    let first = amounts.next()?;
    let scale = first.scale();
    for (place, amount) in std::iter::once(first).chain(amounts).enumerate() {
        let negative_zero = amount.is_zero() && amount.is_sign_negative();
        if amount.scale() != scale || negative_zero {
            return None;
        }
        into[place] = i64::try_from(amount.mantissa()).ok()?;
    }
    // A decimal's scale is at most 28.
    u8::try_from(scale).ok()
}

impl Packed {
    /// Packs `items` (1 to [`MAX`] of them).
    ///
    /// # Panics
    /// When `items` is empty or longer than [`MAX`]: callers pack chunks.
    pub(super) fn pack(items: &[InstallmentState]) -> Packed {
        assert!(
            (1..=MAX).contains(&items.len()),
            "a chunk of 1 to {MAX} installments"
        );
        let len = items.len();
        let number = items[0].due.number;
        let mut dates = [items[len - 1].due.due_date; MAX];
        for (date, item) in dates.iter_mut().zip(items) {
            *date = item.due.due_date;
        }
        let mut bytes = Vec::with_capacity(len * 16);
        let mut columns = [Column {
            at: 0,
            width: 0,
            scale: 0,
        }; COLUMNS];
        let mut values = [0i64; MAX];
        for (place, item) in items.iter().enumerate() {
            values[place] = i64::from(item.due.number) - i64::from(number) - place as i64;
        }
        columns[0] = integers(&mut bytes, &values[..len], 0);
        let mut all = [[Decimal::ZERO; 6]; MAX];
        for (place, item) in items.iter().enumerate() {
            all[place] = amounts(item);
        }
        let all = &all[..len];
        for part in 0..6 {
            let narrowed = narrow(all.iter().map(|a| a[part]), &mut values);
            let zeros = narrowed.is_some() && values[..len].iter().all(|v| *v == 0);
            // A column of zeros (nothing of it paid, or due) holds no bytes
            // and says so ([`Packed::nothing_paid`]) whatever is due.
            columns[FIRST_AMOUNT + part] =
                if part >= 3 && !zeros && all.iter().all(|a| same(a[part], a[part - 3])) {
                    Column {
                        at: bytes.len() as u16,
                        width: AS_DUE,
                        scale: 0,
                    }
                } else if let Some(scale) = narrowed {
                    integers(&mut bytes, &values[..len], scale)
                } else {
                    let at = bytes.len() as u16;
                    for amounts in all {
                        bytes.extend_from_slice(&amounts[part].serialize());
                    }
                    Column {
                        at,
                        width: RAW,
                        scale: 0,
                    }
                };
        }
        Packed {
            len: len as u8,
            number,
            dates,
            columns,
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// How many installments.
    pub(super) fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Column `column`'s value at `index`, held as a difference.
    fn integer(&self, column: usize, index: usize) -> i64 {
        let Column { at, width, .. } = self.columns[column];
        let at = usize::from(at) + index * usize::from(width);
        let bytes = &self.bytes[at..at + usize::from(width)];
        match width {
            0 => 0,
            1 => i64::from(bytes[0] as i8),
            2 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
            4 => i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            _ => i64::from_le_bytes(bytes.try_into().expect("a column of 8-byte values")),
        }
    }

    /// Amount `part` ([`amounts`]'s order) of installment `index`.
    fn amount(&self, part: usize, index: usize) -> Decimal {
        let column = self.columns[FIRST_AMOUNT + part];
        match column.width {
            AS_DUE => self.amount(part - 3, index),
            RAW => {
                let at = usize::from(column.at) + index * 16;
                let raw: [u8; 16] = self.bytes[at..at + 16]
                    .try_into()
                    .expect("a column of 16-byte amounts");
                Decimal::deserialize(raw)
            }
            _ => Decimal::new(
                self.integer(FIRST_AMOUNT + part, index),
                u32::from(column.scale),
            ),
        }
    }

    /// Installment `index`, if the chunk has one there.
    pub(super) fn get(&self, index: usize) -> Option<InstallmentState> {
        Some(InstallmentState {
            due: self.due(index)?,
            principal_paid: self.amount(3, index),
            interest_paid: self.amount(4, index),
            fee_paid: self.amount(5, index),
        })
    }

    /// Installment `index` as scheduled (what is due, not what was paid),
    /// if the chunk has one there.
    pub(super) fn due(&self, index: usize) -> Option<Installment> {
        let [principal, interest, fee] = self.due_amounts(index)?;
        let number = i64::from(self.number) + index as i64 + self.integer(0, index);
        // Worked out from an installment's own number, so it fits.
        let number = u32::try_from(number).expect("a packed installment's number");
        Some(Installment {
            number,
            due_date: self.dates[index],
            principal,
            interest,
            fee,
        })
    }

    /// True when nothing was paid on any of its installments (each amount
    /// paid held as a zero, in no bytes).
    pub(super) fn nothing_paid(&self) -> bool {
        self.columns[FIRST_AMOUNT + 3..]
            .iter()
            .all(|c| c.width == 0)
    }

    /// Installment `index`'s amounts due (principal, interest, fees) alone,
    /// if the chunk has one there.
    pub(super) fn due_amounts(&self, index: usize) -> Option<[Decimal; 3]> {
        (index < self.len()).then(|| [0, 1, 2].map(|part| self.amount(part, index)))
    }

    /// Installment `index`'s due date alone, if the chunk has one there.
    pub(super) fn due_date(&self, index: usize) -> Option<NaiveDate> {
        (index < self.len()).then(|| self.dates[index])
    }

    /// True when each of `installment`'s values fits its column as the
    /// chunk holds it, so that [`Packed::set`] can write it in place of
    /// installment `index` (a payment on an installment of a chunk
    /// something was paid on already).
    pub(super) fn fits(&self, index: usize, installment: &InstallmentState) -> bool {
        if index >= self.len() {
            return false;
        }
        let values = amounts(installment);
        let number = i64::from(installment.due.number) - i64::from(self.number) - index as i64;
        let fits = |column: Column, value: i64| match column.width {
            0 => value == 0,
            1 => i8::try_from(value).is_ok(),
            2 => i16::try_from(value).is_ok(),
            4 => i32::try_from(value).is_ok(),
            _ => true,
        };
        let amount_fits = |part: usize| {
            let column = self.columns[FIRST_AMOUNT + part];
            let amount = values[part];
            match column.width {
                AS_DUE => same(amount, values[part - 3]),
                RAW => true,
                _ => {
                    let negative_zero = amount.is_zero() && amount.is_sign_negative();
                    amount.scale() == u32::from(column.scale)
                        && !negative_zero
                        && i64::try_from(amount.mantissa()).is_ok_and(|m| fits(column, m))
                }
            }
        };
        fits(self.columns[0], number) && (0..6).all(amount_fits)
    }

    /// Writes `installment` in place of installment `index` when it
    /// [`fits`](Packed::fits); false, and nothing changed, when it does not
    /// (the chunk is then packed again).
    pub(super) fn set(&mut self, index: usize, installment: &InstallmentState) -> bool {
        if !self.fits(index, installment) {
            return false;
        }
        let number = i64::from(installment.due.number) - i64::from(self.number) - index as i64;
        self.write(0, index, number);
        let date = installment.due.due_date;
        let repeated = if index + 1 == self.len() {
            MAX
        } else {
            index + 1
        };
        self.dates[index..repeated].fill(date);
        for (part, amount) in amounts(installment).iter().enumerate() {
            let column = self.columns[FIRST_AMOUNT + part];
            match column.width {
                AS_DUE => {}
                RAW => {
                    let at = usize::from(column.at) + index * 16;
                    self.bytes[at..at + 16].copy_from_slice(&amount.serialize());
                }
                // It fits ([`Packed::fits`]): 64 bits at most.
                _ => self.write(FIRST_AMOUNT + part, index, amount.mantissa() as i64),
            }
        }
        true
    }

    /// Writes `value` (which fits) as column `column`'s value at `index`.
    fn write(&mut self, column: usize, index: usize, value: i64) {
        let Column { at, width, .. } = self.columns[column];
        let width = usize::from(width);
        let at = usize::from(at) + index * width;
        self.bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }

    /// Every installment, unpacked.
    pub(super) fn unpack(&self) -> Vec<InstallmentState> {
        (0..self.len())
            .filter_map(|index| self.get(index))
            .collect()
    }

    /// Bytes it holds beside its fixed part.
    #[cfg(test)]
    pub(super) fn packed_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn amount() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            Just(Decimal::ZERO),
            (0i64..10_000_000).prop_map(Decimal::from),
            (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            (any::<[u8; 12]>(), any::<bool>(), 0u32..=28).prop_map(|(m, negative, scale)| {
                let word = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
                Decimal::from_parts(word(0), word(4), word(8), negative, scale)
            }),
            Just(negative_zero()),
            Just(Decimal::new(100, 2)),
        ]
    }

    /// Zero with its sign set, which arithmetic can leave (`from_parts`
    /// clears the sign of a zero).
    fn negative_zero() -> Decimal {
        let zero = Decimal::deserialize([0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(zero.is_zero() && zero.is_sign_negative());
        zero
    }

    fn installment() -> impl Strategy<Value = InstallmentState> {
        (
            any::<u32>(),
            -10_000i32..10_000,
            [amount(), amount(), amount(), amount(), amount(), amount()],
            any::<[bool; 3]>(),
        )
            .prop_map(|(number, days, a, as_due)| InstallmentState {
                due: Installment {
                    number,
                    due_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                        + chrono::Duration::days(i64::from(days)),
                    principal: a[0],
                    interest: a[1],
                    fee: a[2],
                },
                principal_paid: if as_due[0] { a[0] } else { a[3] },
                interest_paid: if as_due[1] { a[1] } else { a[4] },
                fee_paid: if as_due[2] { a[2] } else { a[5] },
            })
    }

    /// Each decimal's exact bytes: the number, its scale and its sign.
    fn exact(items: &[InstallmentState]) -> Vec<(u32, NaiveDate, Vec<[u8; 16]>)> {
        items
            .iter()
            .map(|i| {
                let parts = amounts(i).iter().map(|a| a.serialize()).collect();
                (i.due.number, i.due.due_date, parts)
            })
            .collect()
    }

    proptest! {
        /// Whatever the installments, each reads back exactly, to the
        /// decimal's scale and sign, alone or with the rest.
        #[test]
        fn installments_read_back_exactly(
            items in proptest::collection::vec(installment(), 1..=MAX),
        ) {
            let packed = Packed::pack(&items);
            prop_assert_eq!(packed.len(), items.len());
            prop_assert_eq!(exact(&packed.unpack()), exact(&items));
            for (index, item) in items.iter().enumerate() {
                let one = packed.get(index).unwrap();
                prop_assert_eq!(exact(&[one]), exact(std::slice::from_ref(item)));
                prop_assert_eq!(packed.due_date(index), Some(item.due.due_date));
            }
            prop_assert_eq!(packed.get(items.len()), None);
            // Each installment written over another in place, where it
            // fits, reads back exactly with the others as they were.
            for (index, other) in items.iter().rev().enumerate() {
                let mut changed = packed.clone();
                let mut expected = items.clone();
                if changed.set(index, other) {
                    expected[index] = other.clone();
                    prop_assert_eq!(exact(&changed.unpack()), exact(&expected));
                } else {
                    prop_assert_eq!(&changed, &packed);
                }
            }
            let dues: Vec<Installment> = (0..items.len()).filter_map(|i| packed.due(i)).collect();
            let expected: Vec<Installment> = items.iter().map(|i| i.due.clone()).collect();
            prop_assert_eq!(format!("{dues:?}"), format!("{expected:?}"));
            let paid = |a: Decimal| !a.is_zero();
            let any_paid = items.iter().any(|i| paid(i.principal_paid) || paid(i.interest_paid) || paid(i.fee_paid));
            if packed.nothing_paid() {
                prop_assert!(!any_paid);
            }
            prop_assert_eq!(packed.due_date(items.len()), None);
        }
    }

    /// An amount paid equal to the amount due but written at another
    /// scale is held as itself, not read back as the amount due.
    #[test]
    fn an_amount_paid_at_another_scale_than_its_due_keeps_its_own() {
        let mut item = InstallmentState::unpaid(Installment {
            number: 1,
            due_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            principal: Decimal::new(100, 2),
            interest: Decimal::new(5, 0),
            fee: Decimal::ZERO,
        });
        item.principal_paid = Decimal::new(10, 1);
        item.interest_paid = Decimal::new(5, 0);
        item.fee_paid = negative_zero();
        let items = [item.clone(), item];
        assert_eq!(exact(&Packed::pack(&items).unpack()), exact(&items));
    }

    /// A weekly installment of a few million dong, half of them paid: a
    /// few bytes each, not 104.
    #[test]
    fn a_usual_chunk_holds_a_few_bytes_an_installment() {
        let items: Vec<InstallmentState> = (1..=8u32)
            .map(|number| {
                let mut item = InstallmentState::unpaid(Installment {
                    number,
                    due_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                        + chrono::Duration::days(i64::from(number) * 7),
                    principal: Decimal::from(1_923_000),
                    interest: Decimal::from(184_615 - i64::from(number) * 3_000),
                    fee: Decimal::ZERO,
                });
                if number <= 4 {
                    item.principal_paid = item.due.principal;
                    item.interest_paid = item.due.interest;
                }
                item
            })
            .collect();
        let packed = Packed::pack(&items);
        assert_eq!(exact(&packed.unpack()), exact(&items));
        // The principal and interest due four bytes each, what was paid
        // four, the numbers and fees none (the dates are kept as dates).
        assert_eq!(packed.packed_len(), 8 * (4 + 4 + 4 + 4));
        // Nothing paid on a chunk whose fees are none: read as such without
        // unpacking it.
        let unpaid: Vec<InstallmentState> = items[4..].to_vec();
        assert!(Packed::pack(&unpaid).nothing_paid());
        assert!(!packed.nothing_paid());
    }
}
