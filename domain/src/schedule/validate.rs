//! Checks of a loan's terms before a schedule is worked out: principal,
//! rate, count, rounding, dates and grace, each refused with its own
//! [`ScheduleError`].

use rust_decimal::Decimal;

use super::*;

pub(super) fn has_at_most_places(value: Decimal, places: u32) -> bool {
    value.normalize().scale() <= places
}

pub(super) fn validate(terms: &LoanTerms) -> Result<(), ScheduleError> {
    validate_principal(terms)?;
    validate_rate(terms.annual_interest_rate_percent)?;
    validate_count(terms.installment_count)?;
    validate_rounding_multiple(terms)?;
    validate_dates(terms)?;
    validate_grace(terms)
}

fn validate_principal(terms: &LoanTerms) -> Result<(), ScheduleError> {
    let value = terms.principal;
    let places = terms.currency_decimal_places;
    if value <= Decimal::ZERO {
        return Err(ScheduleError::PrincipalNotPositive(value));
    }
    if !has_at_most_places(value, places) {
        return Err(ScheduleError::PrincipalTooPrecise { value, places });
    }
    Ok(())
}

fn validate_rate(rate: Decimal) -> Result<(), ScheduleError> {
    if rate < Decimal::ZERO || rate > MAX_RATE_PERCENT {
        return Err(ScheduleError::RateOutOfRange(rate));
    }
    Ok(())
}

fn validate_count(count: u32) -> Result<(), ScheduleError> {
    if !(MIN_INSTALLMENTS..=MAX_INSTALLMENTS).contains(&count) {
        return Err(ScheduleError::InstallmentCountOutOfRange(count));
    }
    Ok(())
}

fn validate_rounding_multiple(terms: &LoanTerms) -> Result<(), ScheduleError> {
    let value = terms.rounding.multiple;
    let places = terms.currency_decimal_places;
    if value <= Decimal::ZERO {
        return Err(ScheduleError::RoundingMultipleNotPositive(value));
    }
    if !has_at_most_places(value, places) {
        return Err(ScheduleError::RoundingMultipleTooFine { value, places });
    }
    Ok(())
}

fn validate_dates(terms: &LoanTerms) -> Result<(), ScheduleError> {
    if terms.first_repayment_date <= terms.disbursed_on {
        return Err(ScheduleError::FirstRepaymentNotAfterDisbursement {
            first_repayment_date: terms.first_repayment_date,
            disbursed_on: terms.disbursed_on,
        });
    }
    Ok(())
}

fn validate_grace(terms: &LoanTerms) -> Result<(), ScheduleError> {
    let count = terms.installment_count;
    if terms.grace_on_principal >= count {
        return Err(ScheduleError::GraceOnPrincipalTooLong {
            grace: terms.grace_on_principal,
            count,
        });
    }
    if terms.grace_on_interest >= count {
        return Err(ScheduleError::GraceOnInterestTooLong {
            grace: terms.grace_on_interest,
            count,
        });
    }
    Ok(())
}

pub(super) fn validate_recast_amount(
    field: &'static str,
    value: Decimal,
    places: u32,
) -> Result<(), ScheduleError> {
    if value < Decimal::ZERO || !has_at_most_places(value, places) {
        return Err(ScheduleError::RecastAmountInvalid {
            field,
            value,
            places,
        });
    }
    Ok(())
}
