//! Compact binary serde encodings for the types the journal and the state
//! cache store most: a decimal as `(mantissa: i128, scale: u32)` and a date
//! as days since 1 January of year 1 (`i32`). Used with `#[serde(with)]`;
//! postcard writes both as varints. Amounts are normalised before they are
//! stored, so equal amounts have equal bytes.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// postcard's output into a `Vec<u8>`, a short run of bytes written one
/// byte at a time. postcard hands every varint (each amount, date, length
/// and tag) over as a slice of one to nineteen bytes, and
/// `extend_from_slice` copies each through a call to `memcpy`: about half
/// of the time of encoding an entry went there.
struct VecOutput<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecOutput<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() <= 16 {
            self.0.reserve(bytes.len());
            for &byte in bytes {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends postcard's encoding of `value` to `bytes` (the bytes
/// `postcard::to_stdvec` gives).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, bytes: &mut Vec<u8>) {
    postcard::serialize_with_flavor(value, VecOutput(bytes))
        .expect("postcard encodes plain data into a Vec without failing")
}

/// postcard's encoding of `value` (what `postcard::to_stdvec` gives).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_into(value, &mut bytes);
    bytes
}

/// postcard's output fed to a digest through a buffer on the stack: the
/// digest of [`encode`]'s bytes without a `Vec` grown for them (a command's
/// request hash grew one from nothing, moving it four or five times).
struct DigestOutput<'a, D: sha2::Digest> {
    digest: &'a mut D,
    buffer: [u8; 128],
    len: usize,
}

impl<D: sha2::Digest> DigestOutput<'_, D> {
    fn flush(&mut self) {
        self.digest.update(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl<D: sha2::Digest> postcard::ser_flavors::Flavor for DigestOutput<'_, D> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.len == self.buffer.len() {
            self.flush();
        }
        self.buffer[self.len] = byte;
        self.len += 1;
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() > self.buffer.len() - self.len {
            self.flush();
        }
        if bytes.len() >= self.buffer.len() {
            self.digest.update(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.flush();
        Ok(())
    }
}

/// Feeds postcard's encoding of `value` (the bytes [`encode`] gives) to
/// `digest`.
pub fn digest_encoding<T: Serialize + ?Sized, D: sha2::Digest>(value: &T, digest: &mut D) {
    let output = DigestOutput {
        digest,
        buffer: [0; 128],
        len: 0,
    };
    postcard::serialize_with_flavor(value, output)
        .expect("postcard encodes plain data into a digest without failing")
}

/// A decimal written as `(mantissa: i128, scale: u32)`.
struct Parts<'a>(&'a Decimal);

impl Serialize for Parts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mantissa = self.0.mantissa();
        // postcard writes a zigzag varint of the value whatever the width
        // of its integer: a mantissa that fits in an `i64` (every amount
        // below about 9.2 * 10^18 of its smallest unit) is written as one,
        // the same bytes, without the 128-bit arithmetic.
        match i64::try_from(mantissa) {
            Ok(narrow) => (narrow, self.0.scale()).serialize(serializer),
            Err(_) => (mantissa, self.0.scale()).serialize(serializer),
        }
    }
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
        Parts(value).serialize(serializer)
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
        value.as_ref().map(Parts).serialize(serializer)
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
/// decimal)` pairs, as a map wrote them (memory packs them; the records
/// keep the pairs, so the state cache's format did not change).
pub mod date_decimal_map {
    use super::*;
    use crate::dated::DatedAmounts;

    pub fn serialize<S: Serializer>(
        value: &DatedAmounts,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        /// A pair written as `(days, Parts)`, its amount held by value
        /// (the list yields them so).
        struct Pair(i32, Decimal);
        impl Serialize for Pair {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                (self.0, Parts(&self.1)).serialize(serializer)
            }
        }
        let pairs: Vec<Pair> = value.iter().map(|(d, a)| Pair(to_days(&d), a)).collect();
        pairs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DatedAmounts, D::Error> {
        let pairs = Vec::<(i32, (i128, u32))>::deserialize(deserializer)?;
        let mut amounts = DatedAmounts::new();
        for (days, parts) in pairs {
            if amounts
                .insert(from_days(days)?, from_parts(parts)?)
                .is_some()
            {
                return Err(D::Error::custom("a date appears twice"));
            }
        }
        amounts.shrink_to_fit();
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

    /// The digest fed through the stack buffer is the digest of the
    /// encoding's bytes, whatever the pieces postcard hands over: values
    /// short and long, with strings that fill the buffer exactly, overflow
    /// it by one, or are longer than it (fed without it). A request's hash,
    /// which the journal keeps, depends on it.
    #[test]
    fn digest_encoding_hashes_the_bytes_encode_gives() {
        use sha2::{Digest, Sha256};
        for text_len in [
            0usize, 1, 15, 16, 17, 120, 126, 127, 128, 129, 255, 256, 257, 1000,
        ] {
            for prefix in [0u64, 1, 300, u64::MAX] {
                let text = "x".repeat(text_len);
                let value = (prefix, &text, vec![7u8; text_len % 40], &text, prefix);
                let mut digest = Sha256::new();
                digest_encoding(&value, &mut digest);
                let through_buffer: [u8; 32] = digest.finalize().into();
                let whole: [u8; 32] = Sha256::digest(encode(&value)).into();
                assert_eq!(through_buffer, whole, "text of {text_len}, prefix {prefix}");
            }
        }
    }

    /// A decimal is written as its `(i128 mantissa, u32 scale)`, byte for
    /// byte, whether its mantissa fits in an `i64` (written as one) or
    /// not: on both sides of the boundary and at the extremes.
    #[test]
    fn a_decimal_is_written_as_its_wide_mantissa_and_scale() {
        #[derive(Serialize)]
        struct Amount(#[serde(with = "decimal")] Decimal);
        let max = Decimal::MAX.mantissa();
        let edges = [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            i128::from(i64::MAX),
            i128::from(i64::MAX) + 1,
            i128::from(i64::MIN),
            i128::from(i64::MIN) - 1,
            i128::from(u64::MAX),
            max,
            -max,
        ];
        for mantissa in edges {
            for scale in [0, 2, 28] {
                let amount = Decimal::from_i128_with_scale(mantissa, scale);
                assert_eq!(
                    postcard::to_stdvec(&Amount(amount)).unwrap(),
                    postcard::to_stdvec(&(mantissa, scale)).unwrap(),
                    "{mantissa} scale {scale}"
                );
            }
        }
    }

    /// `encode` and `encode_into` write exactly postcard's bytes: runs of
    /// every length around the one byte by byte (varints of one to nineteen
    /// bytes, texts of 0 to 40), appended after what the buffer held.
    #[test]
    fn encoding_gives_postcards_bytes() {
        #[derive(Serialize)]
        struct Sample {
            #[serde(with = "decimal")]
            amount: Decimal,
            #[serde(with = "date")]
            on: NaiveDate,
            text: String,
            wide: i128,
            bytes: Vec<u8>,
        }
        let mut samples = Vec::new();
        for len in 0..=40usize {
            let text: String = "Tình Thương ".chars().cycle().take(len).collect();
            let shift = (len * 3) as u32 % 127;
            samples.push(Sample {
                amount: Decimal::from_i128_with_scale(-(1i128 << (shift % 95)), len as u32 % 28),
                on: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Days::new(len as u64),
                text,
                wide: if len % 2 == 0 {
                    1i128 << shift
                } else {
                    i128::MIN >> (shift % 120)
                },
                bytes: vec![len as u8; len],
            });
        }
        let expected = postcard::to_stdvec(&samples).unwrap();
        assert_eq!(encode(&samples), expected);
        let mut after = vec![0xAA; 3];
        encode_into(&samples, &mut after);
        assert_eq!(after[..3], [0xAA; 3]);
        assert_eq!(after[3..], expected[..]);
    }

    /// A list of amounts read back holds exactly its amounts' bytes: grown
    /// one by one it kept up to twice the room, which every restart held for
    /// every loan's changes.
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
        assert_eq!(read.heap_bytes(), read.packed_len());
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
        // Beside them, more than a block of kept sums' worth of weekly
        // changes, and amounts whose mantissas do not fit 64 bits.
        let mut amounts = BTreeMap::from([(a, Decimal::new(-5, 1)), (b, Decimal::from(7))]);
        for week in 0..20u32 {
            let on = b + chrono::Days::new(7 * u64::from(week + 1));
            let amount = match week % 3 {
                0 => Decimal::MAX,
                1 => Decimal::from_i128_with_scale(-(1i128 << 90), week % 7),
                _ => Decimal::new(125_000 * i64::from(week), 2),
            };
            amounts.insert(on, amount);
        }
        let mut summed: crate::dated::DatedAmounts =
            amounts.iter().map(|(d, v)| (*d, *v)).collect();
        summed.keep_sums(true);
        let changes = Changes(summed);
        let bytes = postcard::to_stdvec(&changes).unwrap();
        let pairs: Vec<(i32, (i128, u32))> = amounts
            .iter()
            .map(|(d, v)| (to_days(d), (v.mantissa(), v.scale())))
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
