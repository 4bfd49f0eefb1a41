//! Compact binary serde encodings for the types the journal and the state
//! cache store most: a decimal as `(mantissa: i128, scale: u32)` and a date
//! as days since 1 January of year 1 (`i32`). Used with `#[serde(with)]`;
//! postcard writes both as varints. Amounts are normalised before they are
//! stored, so equal amounts have equal bytes.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_parts(value: &Decimal) -> (i128, u32) {
    (value.mantissa(), value.scale())
}

fn from_parts<E: serde::de::Error>((mantissa, scale): (i128, u32)) -> Result<Decimal, E> {
    Decimal::try_from_i128_with_scale(mantissa, scale)
        .map_err(|e| E::custom(format!("bad decimal: {e}")))
}

fn to_days(date: &NaiveDate) -> i32 {
    date.num_days_from_ce()
}

fn from_days<E: serde::de::Error>(days: i32) -> Result<NaiveDate, E> {
    NaiveDate::from_num_days_from_ce_opt(days)
        .ok_or_else(|| E::custom(format!("bad date: day {days}")))
}

/// A decimal.
pub mod decimal {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        to_parts(value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        from_parts(<(i128, u32)>::deserialize(deserializer)?)
    }
}

/// An optional decimal.
pub mod decimal_option {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(to_parts).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        Option::<(i128, u32)>::deserialize(deserializer)?
            .map(from_parts)
            .transpose()
    }
}

/// A date.
pub mod date {
    use super::*;

    pub fn serialize<S: Serializer>(value: &NaiveDate, serializer: S) -> Result<S::Ok, S::Error> {
        to_days(value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
        from_days(i32::deserialize(deserializer)?)
    }
}

/// An optional date.
pub mod date_option {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<NaiveDate>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(to_days).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<NaiveDate>, D::Error> {
        Option::<i32>::deserialize(deserializer)?
            .map(from_days)
            .transpose()
    }
}

/// Amounts by date, in date order
/// ([`DatedAmounts`](crate::dated::DatedAmounts)): a list of `(days,
/// decimal)` pairs.
pub mod date_decimal_map {
    use super::*;
    use crate::dated::DatedAmounts;

    pub fn serialize<S: Serializer>(
        value: &DatedAmounts,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(i32, (i128, u32))> = value
            .iter()
            .map(|(d, a)| (to_days(d), to_parts(a)))
            .collect();
        pairs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DatedAmounts, D::Error> {
        let pairs = Vec::<(i32, (i128, u32))>::deserialize(deserializer)?;
        let mut amounts = DatedAmounts::with_capacity(pairs.len());
        for (days, parts) in pairs {
            if amounts
                .insert(from_days(days)?, from_parts(parts)?)
                .is_some()
            {
                return Err(D::Error::custom("a date appears twice"));
            }
        }
        Ok(amounts)
    }
}

/// Amounts by date packed ([`PackedAmounts`](crate::dated::PackedAmounts)),
/// written as the bytes memory holds them (state cache format 15): read
/// back by one checking walk and kept as they are, where a list of pairs
/// was decoded and each pair packed again (the larger part of reading a
/// long-running branch's savings accounts back at startup). About 5 bytes
/// a weekly deposit, against 8 as a list.
pub mod packed_amounts {
    use super::*;
    use crate::dated::PackedAmounts;

    pub fn serialize<S: Serializer>(
        value: &PackedAmounts,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value.packed())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PackedAmounts, D::Error> {
        struct Bytes;

        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("packed amounts by date")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }

            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }

        let bytes = deserializer.deserialize_bytes(Bytes)?;
        PackedAmounts::from_packed(bytes).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A list of amounts read back holds exactly its amounts: grown one by
    /// one it kept up to twice the room, which every restart held for every
    /// savings account's and loan's changes.
    #[test]
    fn amounts_by_date_read_back_take_only_their_room() {
        #[derive(Serialize, Deserialize)]
        struct Changes(#[serde(with = "date_decimal_map")] crate::dated::DatedAmounts);
        let first = NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
        let amounts: crate::dated::DatedAmounts = (0..100)
            .map(|week| (first + chrono::Days::new(7 * week), Decimal::from(week + 1)))
            .collect();
        let bytes = postcard::to_stdvec(&Changes(amounts.clone())).unwrap();
        let Changes(read) = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read, amounts);
        assert_eq!(read.capacity(), 100);
    }

    /// A savings account's changes are written as the bytes memory packs
    /// them, and read back to the same amounts.
    #[test]
    fn packed_amounts_are_written_as_packed_and_checked_when_read() {
        #[derive(Serialize, Deserialize)]
        struct Packed(#[serde(with = "packed_amounts")] crate::dated::PackedAmounts);
        let first = NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
        let pairs: Vec<_> = (0..100)
            .map(|week| {
                let amount = match week % 3 {
                    0 => Decimal::from(50_000 * (week + 1)),
                    1 => Decimal::new(-(week as i64) * 125, 2),
                    _ => Decimal::MAX,
                };
                (first + chrono::Days::new(7 * week), amount)
            })
            .collect();
        let packed = Packed(pairs.iter().copied().collect());
        let bytes = postcard::to_stdvec(&packed).unwrap();
        // The packed bytes behind their length, nothing else.
        assert_eq!(bytes[2..], *packed.0.packed());
        let Packed(read) = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(read.last_key_value(), pairs.last().copied());
        assert_eq!(read, packed.0);
        // Its last change is where the write path finds it.
        let mut grown = read.clone();
        grown.insert(pairs[99].0, Decimal::ONE);
        assert_eq!(grown.iter().nth(98), Some(pairs[98]));
        assert_eq!(grown.get(&pairs[99].0), Some(Decimal::ONE));

        // Bytes that do not pack amounts are refused (what is wrong with
        // them: `PackedAmounts::from_packed`'s tests).
        let day_back = [packed.0.packed(), &[1, 2 << 5]].concat();
        let encoded = postcard::to_stdvec(&serde_bytes_of(&day_back)).unwrap();
        assert!(postcard::from_bytes::<Packed>(&encoded).is_err());
    }

    /// `bytes` as serde bytes, for postcard to write behind their length.
    fn serde_bytes_of(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "decimal")]
        amount: Decimal,
        #[serde(with = "date")]
        on: NaiveDate,
        #[serde(with = "decimal_option")]
        multiple: Option<Decimal>,
        #[serde(with = "date_decimal_map")]
        changes: crate::dated::DatedAmounts,
    }

    #[test]
    fn round_trips_and_is_compact() {
        let on: NaiveDate = "2024-06-01".parse().unwrap();
        let sample = Sample {
            amount: Decimal::new(15_000_050, 2),
            on,
            multiple: Some(Decimal::from(1000)),
            changes: crate::dated::DatedAmounts::from([(on, Decimal::from(-5))]),
        };
        let bytes = postcard::to_stdvec(&sample).unwrap();
        assert_eq!(postcard::from_bytes::<Sample>(&bytes).unwrap(), sample);
        let amount = postcard::to_stdvec(&Sample {
            multiple: None,
            changes: crate::dated::DatedAmounts::new(),
            ..sample
        })
        .unwrap();
        assert!(amount.len() <= 12, "{} bytes", amount.len());
    }

    /// Amounts by date are written as they were when they were held in a
    /// `BTreeMap` (state caches written then are read as they are): the
    /// pairs in date order; a date twice is refused.
    #[test]
    fn amounts_by_date_keep_their_bytes() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Changes(#[serde(with = "date_decimal_map")] crate::dated::DatedAmounts);
        let (a, b): (NaiveDate, NaiveDate) =
            ("2024-06-01".parse().unwrap(), "2023-01-31".parse().unwrap());
        let changes = Changes([(a, Decimal::new(-5, 1)), (b, Decimal::from(7))].into());
        let bytes = postcard::to_stdvec(&changes).unwrap();
        let pairs: Vec<(i32, (i128, u32))> =
            BTreeMap::from([(a, Decimal::new(-5, 1)), (b, Decimal::from(7))])
                .iter()
                .map(|(d, v)| (to_days(d), to_parts(v)))
                .collect();
        assert_eq!(bytes, postcard::to_stdvec(&pairs).unwrap());
        assert_eq!(postcard::from_bytes::<Changes>(&bytes).unwrap(), changes);
        let twice = postcard::to_stdvec(&vec![(to_days(&a), (1i128, 0u32)), (to_days(&a), (2, 0))])
            .unwrap();
        let refused = postcard::from_bytes::<Changes>(&twice).unwrap_err();
        assert!(
            refused.to_string().contains("twice")
                || matches!(refused, postcard::Error::SerdeDeCustom),
            "{refused}"
        );
    }

    #[test]
    fn refuses_bad_parts() {
        let bytes = postcard::to_stdvec(&(1i128, 40u32)).unwrap();
        #[derive(Debug, Deserialize)]
        struct Only(
            #[serde(with = "decimal")]
            #[allow(dead_code)]
            Decimal,
        );
        assert!(postcard::from_bytes::<Only>(&bytes).is_err());
    }
}
