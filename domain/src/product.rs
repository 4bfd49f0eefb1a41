//! Loan products: the catalogue's rules a loan is disbursed under.
//!
//! A product is defined once and changed by new versions; each version's
//! [`ProductRules`] are immutable, and a loan keeps the version it was
//! disbursed under. [`ProductRules::validate`] checks a definition;
//! [`ProductRules::terms_for`] turns a loan application (principal, rate,
//! term, dates) into the [`LoanTerms`] the schedule engine computes, refusing
//! what the product does not allow.

use std::collections::HashSet;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::command::check_len;
use super::error::DomainError;
use super::ids::{FeeCode, Name, ProductId};
use super::money::{Currency, format_amount, grouped};
use super::schedule::{
    Amortization, InstallmentBasis, InstallmentRounding, InterestMethod, InterestPeriod, LoanTerms,
    RepaymentFrequency, ScheduleError, compute_schedule,
};

/// Most tranches a product may allow.
pub const TRANCHES_MAX: u32 = 10;

/// Most fees a product may charge. Each fee is copied into every
/// disbursement's entry (its rules and its charge), so the list is bounded.
pub const FEES_MAX: usize = 20;

/// One part of what a borrower owes, in the order a payment is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllocationPart {
    /// Late-payment penalties.
    Penalties,
    /// Fees due with installments.
    Fees,
    /// Interest.
    Interest,
    /// Principal.
    Principal,
}

/// The usual order: penalties, fees, interest, principal.
pub const ALLOCATION_ORDER_DEFAULT: [AllocationPart; 4] = [
    AllocationPart::Penalties,
    AllocationPart::Fees,
    AllocationPart::Interest,
    AllocationPart::Principal,
];

/// How much a fee is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeAmount {
    /// A fixed amount in the product's currency.
    Fixed(#[serde(with = "crate::codec::decimal")] Decimal),
    /// A share of the principal disbursed, in percent.
    PercentOfPrincipal(#[serde(with = "crate::codec::decimal")] Decimal),
}

/// When a fee is collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeCollection {
    /// Deducted from the money paid out at disbursement.
    AtDisbursement,
    /// Due with the first installment.
    WithFirstInstallment,
}

/// A fee charged on each disbursement (each tranche).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    /// Names the fee and its income account `fee-income:BRANCH/CODE`.
    pub code: FeeCode,
    /// How much.
    pub amount: FeeAmount,
    /// When it is collected.
    pub collection: FeeCollection,
}

impl Fee {
    /// The fee on a disbursement of `principal`, rounded half-even to the
    /// currency's unit.
    pub fn on(&self, principal: Decimal, currency: Currency) -> Result<Decimal, DomainError> {
        let value = match self.amount {
            FeeAmount::Fixed(amount) => amount,
            FeeAmount::PercentOfPrincipal(percent) => principal
                .checked_mul(percent)
                .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
                .ok_or(DomainError::Overflow)?,
        };
        Ok(value
            .round_dp_with_strategy(
                currency.decimal_places(),
                RoundingStrategy::MidpointNearestEven,
            )
            .normalize())
    }
}

/// What a borrower must keep in compulsory savings while a loan is outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompulsorySavings {
    /// Nothing.
    None,
    /// A share of the outstanding principal, in percent.
    PercentOfPrincipal(#[serde(with = "crate::codec::decimal")] Decimal),
    /// A fixed deposit with every installment: the balance may not fall below
    /// this amount times the installments due so far.
    FixedPerInstallment(#[serde(with = "crate::codec::decimal")] Decimal),
}

/// When a loan counts as in arrears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrearsTolerance {
    /// A loan is not in arrears until its oldest unpaid installment is more
    /// than this many days overdue.
    pub days: u32,
    /// Nor while the overdue amount is at most this.
    #[serde(with = "crate::codec::decimal")]
    pub amount: Decimal,
}

/// One version of a product's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRules {
    /// Display name, e.g. "General loan".
    pub name: Name,
    /// Currency of its loans.
    pub currency: Currency,
    /// Smallest principal a loan (all its tranches) may have.
    #[serde(with = "crate::codec::decimal")]
    pub principal_min: Decimal,
    /// Largest principal a loan (all its tranches) may have.
    #[serde(with = "crate::codec::decimal")]
    pub principal_max: Decimal,
    /// Lowest annual rate in percent.
    #[serde(with = "crate::codec::decimal")]
    pub rate_min: Decimal,
    /// Highest annual rate in percent.
    #[serde(with = "crate::codec::decimal")]
    pub rate_max: Decimal,
    /// Flat or declining balance.
    pub interest_method: InterestMethod,
    /// Equal installments or equal principal.
    pub amortization: Amortization,
    /// How each period's interest is counted.
    pub interest_period: InterestPeriod,
    /// How the equal installment is computed.
    pub installment_basis: InstallmentBasis,
    /// How often installments fall due.
    pub frequency: RepaymentFrequency,
    /// Fewest installments a loan may have.
    pub installments_min: u32,
    /// Most installments a loan may have.
    pub installments_max: u32,
    /// Installments when the loan names none.
    pub installments_default: u32,
    /// Rounding of installments.
    pub rounding: InstallmentRounding,
    /// The decimal places the client gave for the rounding (`None`: the
    /// currency's); kept so the catalogue shows the product as defined.
    pub rounding_decimal_places: Option<u32>,
    /// Installments at the start that repay no principal.
    pub grace_on_principal: u32,
    /// Installments at the start that collect no interest (deferred).
    pub grace_on_interest: u32,
    /// Compulsory savings while a loan is outstanding.
    pub compulsory_savings: CompulsorySavings,
    /// When a loan counts as in arrears.
    pub arrears_tolerance: ArrearsTolerance,
    /// Order in which a payment settles what is due.
    pub allocation_order: [AllocationPart; 4],
    /// Fees charged on each disbursement.
    pub fees: Vec<Fee>,
    /// Most disbursements (tranches) one loan may have; 1 = a single disbursement.
    pub tranches_max: u32,
}

/// A product version as the catalogue keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductVersion {
    /// The product.
    pub id: ProductId,
    /// 1 for the first definition, then one more per change.
    pub version: u32,
    /// Date from which loans disbursed use it (the entry's effective date).
    #[serde(with = "crate::codec::date")]
    pub effective_from: NaiveDate,
    /// Its rules.
    pub rules: ProductRules,
}

/// A version of a savings product: the interest every savings account of
/// its kind earns from `effective_from` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsProductVersion {
    /// The product.
    pub id: ProductId,
    /// Its name.
    pub name: crate::ids::Name,
    /// The kind of savings it covers (fixed at version 1).
    pub kind: crate::command::SavingsKind,
    /// 1 for the first definition, then one more per change.
    pub version: u32,
    /// First day its rate applies (the entry's effective date).
    #[serde(with = "crate::codec::date")]
    pub effective_from: NaiveDate,
    /// Rate, posting frequency and rounding.
    pub rules: crate::savings_interest::SavingsInterestRules,
}

/// A loan application against a product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanApplication {
    /// First (or only) disbursement.
    #[serde(with = "crate::codec::decimal")]
    pub principal: Decimal,
    /// Currency the client named for the amounts; `None` means the product's.
    pub currency: Option<Currency>,
    /// Total the loan may reach through tranches; `None` means `principal`.
    #[serde(with = "crate::codec::decimal_option")]
    pub approved_principal: Option<Decimal>,
    /// Annual rate in percent; `None` only when the product has one rate.
    #[serde(with = "crate::codec::decimal_option")]
    pub annual_interest_rate_percent: Option<Decimal>,
    /// Number of installments; `None` means the product's default.
    pub installment_count: Option<u32>,
    /// Due date of the first installment.
    #[serde(with = "crate::codec::date")]
    pub first_repayment_date: NaiveDate,
}

fn places_ok(value: Decimal, places: u32) -> bool {
    value.normalize().scale() <= places
}

fn show(value: Decimal, currency: Currency) -> String {
    format!("{} {currency}", grouped(&format_amount(value, currency)))
}

impl ProductRules {
    /// Checks a definition; errors name the field under `rules.`.
    pub fn validate(&self) -> Result<(), DomainError> {
        let places = self.currency.decimal_places();
        let money = |field: &str, value: Decimal| -> Result<(), DomainError> {
            if value.is_sign_negative() && !value.is_zero() {
                return Err(DomainError::invalid(field, format!("{value} is negative")));
            }
            if !places_ok(value, places) {
                return Err(DomainError::invalid(
                    field,
                    format!(
                        "{value} has more than {places} decimal places, which {} allows",
                        self.currency
                    ),
                ));
            }
            Ok(())
        };
        money("rules.principal_min", self.principal_min)?;
        money("rules.principal_max", self.principal_max)?;
        if self.principal_min.is_zero() {
            return Err(DomainError::invalid(
                "rules.principal_min",
                "must be greater than 0",
            ));
        }
        if self.principal_max < self.principal_min {
            return Err(DomainError::invalid(
                "rules.principal_max",
                format!(
                    "{} is below principal_min {}",
                    self.principal_max, self.principal_min
                ),
            ));
        }
        let percent = |field: &str, value: Decimal| -> Result<(), DomainError> {
            if value.is_sign_negative() && !value.is_zero() || value > Decimal::ONE_HUNDRED {
                return Err(DomainError::invalid(
                    field,
                    format!("{value} is outside 0 to 100"),
                ));
            }
            Ok(())
        };
        percent("rules.rate_min_percent", self.rate_min)?;
        percent("rules.rate_max_percent", self.rate_max)?;
        if self.rate_max < self.rate_min {
            return Err(DomainError::invalid(
                "rules.rate_max_percent",
                format!("{} is below rate_min {}", self.rate_max, self.rate_min),
            ));
        }
        if self.installments_min == 0 || self.installments_min > 520 {
            return Err(DomainError::invalid(
                "rules.installments_min",
                format!("{} is outside 1..=520", self.installments_min),
            ));
        }
        if self.installments_max > 520 {
            return Err(DomainError::invalid(
                "rules.installments_max",
                format!("{} is outside 1..=520", self.installments_max),
            ));
        }
        if self.installments_max < self.installments_min {
            return Err(DomainError::invalid(
                "rules.installments_max",
                format!(
                    "{} is below installments_min {}",
                    self.installments_max, self.installments_min
                ),
            ));
        }
        if !(self.installments_min..=self.installments_max).contains(&self.installments_default) {
            return Err(DomainError::invalid(
                "rules.installments_default",
                format!(
                    "{} is outside {}..={}",
                    self.installments_default, self.installments_min, self.installments_max
                ),
            ));
        }
        if self.grace_on_principal >= self.installments_min {
            return Err(DomainError::invalid(
                "rules.grace_on_principal",
                format!(
                    "{} must be fewer than installments_min {}",
                    self.grace_on_principal, self.installments_min
                ),
            ));
        }
        if self.grace_on_interest >= self.installments_min {
            return Err(DomainError::invalid(
                "rules.grace_on_interest",
                format!(
                    "{} must be fewer than installments_min {}",
                    self.grace_on_interest, self.installments_min
                ),
            ));
        }
        let multiple = self.rounding.multiple;
        if multiple <= Decimal::ZERO || !places_ok(multiple, places) {
            return Err(DomainError::invalid(
                "rules.rounding_multiple",
                format!(
                    "{multiple} must be greater than 0 and a whole number of {}'s {places}-decimal units",
                    self.currency
                ),
            ));
        }
        if let Some(rounding_places) = self.rounding_decimal_places {
            if rounding_places > places {
                return Err(DomainError::invalid(
                    "rules.rounding_decimal_places",
                    format!(
                        "{rounding_places} is more than {}'s {places} decimal places",
                        self.currency
                    ),
                ));
            }
            if !places_ok(multiple, rounding_places) {
                return Err(DomainError::invalid(
                    "rules.rounding_multiple",
                    format!(
                        "{multiple} is not a multiple of {} (rounding_decimal_places {rounding_places})",
                        Decimal::new(1, rounding_places)
                    ),
                ));
            }
        }
        match self.compulsory_savings {
            CompulsorySavings::None => {}
            CompulsorySavings::PercentOfPrincipal(p) => {
                percent("rules.compulsory_savings.percent_of_principal", p)?
            }
            CompulsorySavings::FixedPerInstallment(amount) => {
                money("rules.compulsory_savings.fixed_per_installment", amount)?
            }
        }
        money(
            "rules.arrears_tolerance_amount",
            self.arrears_tolerance.amount,
        )?;
        let mut seen = Vec::new();
        for part in self.allocation_order {
            if seen.contains(&part) {
                return Err(DomainError::invalid(
                    "rules.allocation_order",
                    format!(
                        "names {part:?} twice; give each of penalties, fees, interest and principal once"
                    ),
                ));
            }
            seen.push(part);
        }
        check_len("rules.fees", self.fees.len(), FEES_MAX, true, "fees")?;
        let mut codes = HashSet::with_capacity(self.fees.len());
        for (i, fee) in self.fees.iter().enumerate() {
            let field = format!("rules.fees[{i}]");
            if !codes.insert(&fee.code) {
                return Err(DomainError::invalid(
                    &format!("{field}.code"),
                    format!("{} is used by two fees", fee.code),
                ));
            }
            match fee.amount {
                FeeAmount::Fixed(a) => money(&format!("{field}.fixed"), a)?,
                FeeAmount::PercentOfPrincipal(p) => {
                    percent(&format!("{field}.percent_of_principal"), p)?
                }
            }
        }
        if let Some(second) = self
            .fees
            .iter()
            .enumerate()
            .filter(|(_, f)| f.collection == FeeCollection::WithFirstInstallment)
            .nth(1)
            .map(|(i, _)| i)
        {
            return Err(DomainError::invalid(
                &format!("rules.fees[{second}].collection"),
                "a second fee collected with the first installment; at most one fee may be",
            ));
        }
        if self.tranches_max == 0 || self.tranches_max > TRANCHES_MAX {
            return Err(DomainError::invalid(
                "rules.tranches_max",
                format!("{} is outside 1..={TRANCHES_MAX}", self.tranches_max),
            ));
        }
        self.check_largest_loan_schedule()
    }

    /// Refuses a rounding that leaves an installment of zero even in the
    /// product's most generous loan (`principal_max` at `rate_max` over
    /// `installments_min`): no loan under the product could be disbursed.
    /// Other loans are checked when they are previewed or disbursed.
    fn check_largest_loan_schedule(&self) -> Result<(), DomainError> {
        let disbursed_on = NaiveDate::from_ymd_opt(2001, 1, 1).expect("a valid date");
        let first_repayment_date = self
            .frequency
            .due_date(disbursed_on, 1)
            .expect("a date in 2001 plus one period is valid");
        let terms = LoanTerms {
            principal: self.principal_max,
            annual_interest_rate_percent: self.rate_max,
            interest_method: self.interest_method,
            amortization: self.amortization,
            interest_period: self.interest_period,
            installment_basis: self.installment_basis,
            installment_count: self.installments_min,
            frequency: self.frequency,
            disbursed_on,
            first_repayment_date,
            rounding: self.rounding,
            currency_decimal_places: self.currency.decimal_places(),
            grace_on_principal: self.grace_on_principal,
            grace_on_interest: self.grace_on_interest,
        };
        match compute_schedule(&terms) {
            Err(ScheduleError::InstallmentZero { number, multiple }) => Err(DomainError::invalid(
                "rules.rounding_multiple",
                format!(
                    "{multiple} rounds installment {number} of even the largest loan ({} over {} installments) to 0",
                    show(self.principal_max, self.currency),
                    self.installments_min
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The terms of a loan applied for under these rules, disbursed on
    /// `disbursed_on`; refuses what the product does not allow.
    pub fn terms_for(
        &self,
        application: &LoanApplication,
        disbursed_on: NaiveDate,
    ) -> Result<LoanTerms, DomainError> {
        let currency = self.currency;
        let named = |field: &str, amount: Decimal| {
            crate::command::Money {
                amount,
                currency: application.currency,
            }
            .check(field, currency, &"the product lends")
        };
        named("principal", application.principal)?;
        if let Some(approved) = application.approved_principal {
            named("approved_principal", approved)?;
        }
        let approved = application
            .approved_principal
            .unwrap_or(application.principal);
        if application.principal > approved {
            return Err(DomainError::invalid(
                "principal",
                format!(
                    "{} is more than the approved principal {}",
                    show(application.principal, currency),
                    show(approved, currency)
                ),
            ));
        }
        if approved < self.principal_min || approved > self.principal_max {
            let field = if application.approved_principal.is_some() {
                "approved_principal"
            } else {
                "principal"
            };
            return Err(DomainError::invalid(
                field,
                format!(
                    "{} is outside the product's limits {} to {}",
                    show(approved, currency),
                    show(self.principal_min, currency),
                    show(self.principal_max, currency)
                ),
            ));
        }
        if approved != application.principal && self.tranches_max < 2 {
            return Err(DomainError::invalid(
                "approved_principal",
                "the product disburses in one tranche; approved_principal must equal principal",
            ));
        }
        let rate = match application.annual_interest_rate_percent {
            Some(rate) => rate,
            None if self.rate_min == self.rate_max => self.rate_min,
            None => {
                return Err(DomainError::invalid(
                    "annual_interest_rate_percent",
                    format!(
                        "is required: the product allows {}% to {}%",
                        self.rate_min, self.rate_max
                    ),
                ));
            }
        };
        if rate < self.rate_min || rate > self.rate_max {
            return Err(DomainError::invalid(
                "annual_interest_rate_percent",
                format!(
                    "{rate}% is outside the product's range {}% to {}%",
                    self.rate_min, self.rate_max
                ),
            ));
        }
        let count = application
            .installment_count
            .unwrap_or(self.installments_default);
        if !(self.installments_min..=self.installments_max).contains(&count) {
            return Err(DomainError::invalid(
                "installment_count",
                format!(
                    "{count} is outside the product's {}..={}",
                    self.installments_min, self.installments_max
                ),
            ));
        }
        Ok(LoanTerms {
            principal: application.principal,
            annual_interest_rate_percent: rate,
            interest_method: self.interest_method,
            amortization: self.amortization,
            interest_period: self.interest_period,
            installment_basis: self.installment_basis,
            installment_count: count,
            frequency: self.frequency,
            disbursed_on,
            first_repayment_date: application.first_repayment_date,
            rounding: self.rounding,
            currency_decimal_places: currency.decimal_places(),
            grace_on_principal: self.grace_on_principal,
            grace_on_interest: self.grace_on_interest,
        })
    }
}

/// The rules a loan keeps from its product version (or the defaults for a
/// loan outside the catalogue), so that its repayments and arrears never
/// depend on later versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanPolicy {
    /// Order in which a payment settles an installment.
    pub allocation_order: [AllocationPart; 4],
    /// When the loan counts as in arrears.
    pub arrears_tolerance: ArrearsTolerance,
    /// Compulsory savings while it is outstanding; `None` here with
    /// `branch_share` true means the branch's share of outstanding principal.
    pub compulsory_savings: CompulsorySavings,
    /// True for loans outside the catalogue: the branch's compulsory share applies.
    pub branch_share: bool,
    /// Fees on each tranche.
    pub fees: Vec<Fee>,
    /// Most tranches.
    pub tranches_max: u32,
}

impl LoanPolicy {
    /// The policy of a loan outside the catalogue.
    pub fn outside_catalogue() -> LoanPolicy {
        LoanPolicy {
            allocation_order: ALLOCATION_ORDER_DEFAULT,
            arrears_tolerance: ArrearsTolerance {
                days: 0,
                amount: Decimal::ZERO,
            },
            compulsory_savings: CompulsorySavings::None,
            branch_share: true,
            fees: Vec::new(),
            tranches_max: 1,
        }
    }

    /// The policy a product version gives its loans.
    pub fn of(rules: &ProductRules) -> LoanPolicy {
        LoanPolicy {
            allocation_order: rules.allocation_order,
            arrears_tolerance: rules.arrears_tolerance,
            compulsory_savings: rules.compulsory_savings,
            branch_share: false,
            fees: rules.fees.clone(),
            tranches_max: rules.tranches_max,
        }
    }
}
