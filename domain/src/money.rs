//! Money: an exact decimal amount in one currency.
//!
//! [`Currency`] knows its ISO 4217 code and minor-unit exponent (VND has none).
//! [`parse_amount`] is the only way a client's decimal string becomes an amount:
//! it refuses anything that is not a plain positive decimal with at most the
//! currency's decimal places. Amounts are kept normalised (`2.50` is stored as
//! `2.5`) so that equal amounts have equal bytes. Never floats.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::{DomainError, echo};

/// Largest amount accepted in one command: 10^18 of the currency's unit.
/// Far above any microfinance figure, and far below `Decimal::MAX`, so sums of
/// many amounts stay exact.
pub const AMOUNT_MAX_DIGITS: usize = 18;

/// A currency the ledger can keep books in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord,
)]
pub enum Currency {
    /// Vietnamese đồng, no minor unit.
    #[default]
    Vnd,
    /// US dollar, cents.
    Usd,
    /// Euro, cents.
    Eur,
}

impl Currency {
    /// The currency with the most decimal places (an amount's places can be
    /// checked against it before the currency of its books is known).
    pub const MOST_PRECISE: Currency = Currency::Usd;

    /// ISO 4217 alphabetic code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Vnd => "VND",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
        }
    }

    /// ISO 4217 minor-unit exponent: the decimal places an amount may have.
    pub fn decimal_places(self) -> u32 {
        match self {
            Currency::Vnd => 0,
            Currency::Usd | Currency::Eur => 2,
        }
    }

    /// Parses an ISO 4217 code (upper case, as the standard writes it).
    pub fn parse(field: &str, code: &str) -> Result<Currency, DomainError> {
        match code {
            "VND" => Ok(Currency::Vnd),
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            other => Err(DomainError::invalid(
                field,
                format!(
                    "{} is not a supported currency (VND, USD, EUR)",
                    echo(other)
                ),
            )),
        }
    }

    /// The smallest unit: 1 for VND, 0.01 for USD.
    pub fn unit(self) -> Decimal {
        Decimal::new(1, self.decimal_places())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses a plain decimal string exactly: optional leading `-` only if
/// `allow_negative`, digits, optionally one `.` followed by digits. No
/// exponents, spaces, signs `+`, or separators. The result is normalised.
pub fn parse_decimal(
    field: &str,
    text: &str,
    allow_negative: bool,
) -> Result<Decimal, DomainError> {
    let digits = text
        .strip_prefix('-')
        .filter(|_| allow_negative)
        .unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
        return Err(DomainError::invalid(
            field,
            format!(
                "{} is not a plain decimal number (digits, at most one '.', no exponent, spaces or separators)",
                echo(text)
            ),
        ));
    }
    let significant = whole.trim_start_matches('0').len();
    if significant > AMOUNT_MAX_DIGITS {
        return Err(DomainError::invalid(
            field,
            format!(
                "{} has more than {AMOUNT_MAX_DIGITS} digits before the decimal point",
                echo(text)
            ),
        ));
    }
    if fraction.is_some_and(|f| f.len() > 28) {
        return Err(DomainError::invalid(
            field,
            format!("{} has more than 28 decimal places", echo(text)),
        ));
    }
    Decimal::from_str_exact(text)
        .map(|d| d.normalize())
        .map_err(|e| {
            DomainError::invalid(
                field,
                format!("{} is not a decimal number: {e}", echo(text)),
            )
        })
}

/// Parses a client's positive amount in `currency`: refused if zero, negative,
/// malformed, or with more decimal places than the currency has.
///
/// ```
/// use mfi_ledger_domain::money::{Currency, parse_amount};
///
/// assert_eq!(parse_amount("amount", "150000", Currency::Vnd).unwrap().to_string(), "150000");
/// // Equal amounts are equal values: "2.50" is 2.5.
/// assert_eq!(parse_amount("amount", "2.50", Currency::Usd).unwrap().to_string(), "2.5");
/// // VND has no minor unit, and nothing but plain decimals is accepted.
/// let refused = parse_amount("amount", "1000.5", Currency::Vnd).unwrap_err();
/// assert_eq!(refused.to_string(), "amount: \"1000.5\" has 1 decimal places but VND allows 0");
/// assert!(parse_amount("amount", "1e6", Currency::Vnd).is_err());
/// ```
pub fn parse_amount(field: &str, text: &str, currency: Currency) -> Result<Decimal, DomainError> {
    let amount = parse_decimal(field, text, true)?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(DomainError::invalid(
            field,
            format!("{} is negative; amounts must be positive", echo(text)),
        ));
    }
    if amount.is_zero() {
        return Err(DomainError::invalid(
            field,
            format!("{} is zero; amounts must be positive", echo(text)),
        ));
    }
    if amount.scale() > currency.decimal_places() {
        return Err(DomainError::invalid(
            field,
            format!(
                "{} has {} decimal places but {currency} allows {}",
                echo(text),
                amount.scale(),
                currency.decimal_places()
            ),
        ));
    }
    Ok(amount)
}

/// Formats an amount with exactly the currency's decimal places ("150000", "12.50").
pub fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut shown = amount;
    shown.rescale(currency.decimal_places());
    // A whole amount (every đồng amount) is written as the integer it is:
    // the same text as `Decimal`'s, which divides its 96 bits by ten for
    // each digit (about 47 ns an amount against 16; the gRPC workers
    // answering a collection sheet's lines spent about a tenth of their
    // time there). Zero keeps `Decimal`'s own text, which keeps its sign.
    if shown.scale() == 0
        && !shown.is_zero()
        && let Some(whole) = rust_decimal::prelude::ToPrimitive::to_i64(&shown)
    {
        return whole.to_string();
    }
    shown.to_string()
}

/// `amount` with a comma between each group of three integer digits
/// ("-1234567.50" becomes "-1,234,567.50"); anything that is not a plain
/// decimal is returned unchanged.
pub fn grouped(amount: &str) -> String {
    let (sign, unsigned) = match amount.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", amount),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !fraction.is_none_or(digits) {
        return amount.to_owned();
    }
    let mut out = String::from(sign);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// Adds two amounts, refusing overflow.
pub fn checked_add(a: Decimal, b: Decimal) -> Result<Decimal, DomainError> {
    a.checked_add(b).ok_or(DomainError::Overflow)
}

/// Subtracts two amounts, refusing overflow.
pub fn checked_sub(a: Decimal, b: Decimal) -> Result<Decimal, DomainError> {
    a.checked_sub(b).ok_or(DomainError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// An amount's text is `Decimal`'s own, in every currency, for
        /// whole amounts (written as integers) and the rest alike.
        #[test]
        fn an_amounts_text_is_the_decimals(
            mantissa in proptest::prelude::any::<i64>(),
            wide in proptest::prelude::any::<i128>(),
            scale in 0u32..6,
        ) {
            let wide = wide % 79_228_162_514_264_337_593_543_950_335i128;
            for amount in [Decimal::new(mantissa, scale), Decimal::from_i128_with_scale(wide, scale), Decimal::new(mantissa, 0), -Decimal::ZERO, Decimal::ZERO, Decimal::MAX, Decimal::MIN] {
                for currency in [Currency::Vnd, Currency::Usd, Currency::Eur] {
                    let mut shown = amount;
                    shown.rescale(currency.decimal_places());
                    proptest::prop_assert_eq!(format_amount(amount, currency), shown.to_string(), "{:?} in {}", amount, currency);
                }
            }
        }
    }

    fn vnd(text: &str) -> Result<Decimal, DomainError> {
        parse_amount("amount", text, Currency::Vnd)
    }

    #[test]
    fn accepts_plain_positive_whole_dong() {
        assert_eq!(vnd("150000").unwrap(), Decimal::new(150_000, 0));
        assert_eq!(vnd("007").unwrap(), Decimal::new(7, 0));
        assert_eq!(vnd("150000.0").unwrap(), Decimal::new(150_000, 0));
    }

    #[test]
    fn normalises_so_equal_amounts_have_equal_bytes() {
        let a = parse_amount("amount", "2.50", Currency::Usd).unwrap();
        let b = parse_amount("amount", "2.5", Currency::Usd).unwrap();
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.serialize(), b.serialize());
    }

    #[test]
    fn refuses_what_is_not_a_plain_positive_amount() {
        for (text, why) in [
            ("", "is required"),
            ("0", "is zero"),
            ("-5", "is negative"),
            ("1e6", "not a plain decimal"),
            ("1 000", "not a plain decimal"),
            ("1,000", "not a plain decimal"),
            (" 5", "not a plain decimal"),
            ("+5", "not a plain decimal"),
            ("5.", "not a plain decimal"),
            (".5", "not a plain decimal"),
            ("12.5", "has 1 decimal places but VND allows 0"),
            ("1234567890123456789", "more than 18 digits"),
            ("abc", "not a plain decimal"),
        ] {
            let err = vnd(text).unwrap_err().to_string();
            assert!(err.starts_with("amount: "), "{text:?}: {err}");
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn cents_currencies_take_two_places() {
        assert_eq!(
            parse_amount("a", "12.34", Currency::Usd).unwrap(),
            Decimal::new(1234, 2)
        );
        assert!(parse_amount("a", "12.345", Currency::Usd).is_err());
        assert_eq!(format_amount(Decimal::new(125, 1), Currency::Usd), "12.50");
        assert_eq!(
            format_amount(Decimal::new(150_000, 0), Currency::Vnd),
            "150000"
        );
    }
}
