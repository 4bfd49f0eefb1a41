//! `ProductService`: the loan product catalogue and schedule previews.
//!
//! Definitions are writes like any other (a command, a durable entry);
//! previews compute with the same code a disbursement uses, against the
//! durable catalogue, and write nothing.

use std::sync::Arc;

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::domain::command::{Command, CommandBody, check_len};
use crate::domain::entry::Outcome;
use crate::domain::ids::{FeeCode, Name, ProductId};
use crate::domain::money::{Currency, parse_amount, parse_decimal};
use crate::domain::product::{
    ALLOCATION_ORDER_DEFAULT, AllocationPart, ArrearsTolerance, CompulsorySavings, FEES_MAX, Fee,
    FeeAmount, FeeCollection, LoanApplication, LoanPolicy, ProductRules, ProductVersion,
};
use crate::domain::schedule::{
    Amortization, Installment, InstallmentBasis, InstallmentRounding, InterestMethod,
    InterestPeriod, RepaymentFrequency, RoundingMode,
};
use crate::domain::state::{charged, initial_schedule};
use crate::domain::totals::{Overflow, fees_overflow, sum, too_large};
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::product_service_server::ProductService;

use super::convert::{self, money_out};
use super::status;
use crate::domain::access::AccessCommand;
use crate::domain::ids::PrincipalId;

/// The product service over a running ledger.
pub struct ProductApi {
    ledger: Arc<Ledger>,
}

impl ProductApi {
    /// Serves the catalogue of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> ProductApi {
        ProductApi { ledger }
    }

    async fn define(
        &self,
        principal: PrincipalId,
        context: Option<pb::WriteContext>,
        product_id: &str,
        rules: Option<pb::ProductRules>,
        effective_from: &str,
        create: bool,
    ) -> Result<(pb::EntryReceipt, u32), Status> {
        let command = (|| {
            let (request_id, actor) = convert::context(context)?;
            let product_id = ProductId::parse("product_id", product_id)?;
            let rules = rules_in(rules)?;
            let effective_from = convert::optional_date("effective_from", effective_from)?;
            let body = if create {
                CommandBody::CreateProduct {
                    product_id,
                    rules,
                    effective_from,
                }
            } else {
                CommandBody::UpdateProduct {
                    product_id,
                    rules,
                    effective_from,
                }
            };
            Ok::<_, DomainError>(Command {
                request_id,
                actor,
                principal: Some(principal),
                approval: None,
                body,
            })
        })()
        .map_err(|e| status::from_domain(&e))?;
        let entry = self
            .ledger
            .submit(command)
            .await
            .map_err(status::from_submit)?;
        match entry.body.outcome {
            Outcome::ProductDefined { version } => Ok((convert::receipt(&entry), version)),
            _ => Err(Status::internal(
                "internal error: a reply of the wrong kind",
            )),
        }
    }
}

mod savings;

fn refuse(error: DomainError) -> Status {
    status::from_domain(&error)
}

/// An enum value the client left unset gets `default`; an unknown one is refused.
fn enum_in<P, T>(
    field: &str,
    value: i32,
    default: T,
    map: impl Fn(P) -> Option<T>,
) -> Result<T, DomainError>
where
    P: TryFrom<i32>,
{
    if value == 0 {
        return Ok(default);
    }
    P::try_from(value)
        .ok()
        .and_then(map)
        .ok_or_else(|| DomainError::invalid(field, format!("{value} is not a known value")))
}

/// A rounding mode as `field` gives it; unset means half-even.
fn rounding_mode_in(field: &str, value: i32) -> Result<RoundingMode, DomainError> {
    enum_in(
        field,
        value,
        RoundingMode::HalfEven,
        |v: pb::RoundingMode| match v {
            pb::RoundingMode::HalfEven => Some(RoundingMode::HalfEven),
            pb::RoundingMode::HalfUp => Some(RoundingMode::HalfUp),
            pb::RoundingMode::Down => Some(RoundingMode::Down),
            pb::RoundingMode::Up => Some(RoundingMode::Up),
            pb::RoundingMode::Unspecified => None,
        },
    )
}

/// A non-negative decimal with at most the currency's places; empty gives `default`.
fn amount_or(
    field: &str,
    text: &str,
    currency: Currency,
    default: Decimal,
) -> Result<Decimal, DomainError> {
    if text.is_empty() {
        return Ok(default);
    }
    let value = parse_decimal(field, text, false)?;
    parse_amount(field, &value.to_string(), currency).or_else(|e| {
        if value.is_zero() {
            Ok(Decimal::ZERO)
        } else {
            Err(e)
        }
    })
}

/// Product rules as sent, checked in shape; [`ProductRules::validate`] checks the rest.
pub fn rules_in(rules: Option<pb::ProductRules>) -> Result<ProductRules, DomainError> {
    let r = rules.ok_or_else(|| DomainError::invalid("rules", "is required"))?;
    let currency = convert::currency("rules.currency", &r.currency)?;
    let required = |field: &str, text: &str| -> Result<Decimal, DomainError> {
        if text.is_empty() {
            return Err(DomainError::invalid(field, "is required"));
        }
        parse_decimal(field, text, false)
    };
    let interest_method = match pb::InterestMethod::try_from(r.interest_method) {
        Ok(pb::InterestMethod::Flat) => InterestMethod::Flat,
        Ok(pb::InterestMethod::DecliningBalance) => InterestMethod::DecliningBalance,
        Ok(pb::InterestMethod::Unspecified) => {
            return Err(DomainError::invalid(
                "rules.interest_method",
                "is required (FLAT or DECLINING_BALANCE)",
            ));
        }
        Err(_) => {
            return Err(DomainError::invalid(
                "rules.interest_method",
                format!("{} is not a known value", r.interest_method),
            ));
        }
    };
    let frequency = match pb::RepaymentFrequency::try_from(r.repayment_frequency) {
        Ok(pb::RepaymentFrequency::Weekly) => RepaymentFrequency::Weekly,
        Ok(pb::RepaymentFrequency::Fortnightly) => RepaymentFrequency::Fortnightly,
        Ok(pb::RepaymentFrequency::Monthly) => RepaymentFrequency::Monthly,
        _ => {
            return Err(DomainError::invalid(
                "rules.repayment_frequency",
                "is required (WEEKLY, FORTNIGHTLY or MONTHLY)",
            ));
        }
    };
    let amortization = enum_in(
        "rules.amortization",
        r.amortization,
        Amortization::EqualInstallments,
        |v: pb::Amortization| match v {
            pb::Amortization::EqualInstallments => Some(Amortization::EqualInstallments),
            pb::Amortization::EqualPrincipal => Some(Amortization::EqualPrincipal),
            pb::Amortization::Unspecified => None,
        },
    )?;
    let interest_period = enum_in(
        "rules.interest_period",
        r.interest_period,
        InterestPeriod::PerPeriod,
        |v: pb::InterestPeriod| match v {
            pb::InterestPeriod::PerPeriod => Some(InterestPeriod::PerPeriod),
            pb::InterestPeriod::Actual365 => Some(InterestPeriod::Actual365),
            pb::InterestPeriod::Unspecified => None,
        },
    )?;
    let installment_basis = enum_in(
        "rules.installment_basis",
        r.installment_basis,
        InstallmentBasis::NominalPeriodRate,
        |v: pb::InstallmentBasis| match v {
            pb::InstallmentBasis::NominalPeriodRate => Some(InstallmentBasis::NominalPeriodRate),
            pb::InstallmentBasis::ActualPeriodRates => Some(InstallmentBasis::ActualPeriodRates),
            pb::InstallmentBasis::Unspecified => None,
        },
    )?;
    let mode = rounding_mode_in("rules.rounding_mode", r.rounding_mode)?;
    let places = match r.rounding_decimal_places {
        Some(places) if places > currency.decimal_places() => {
            return Err(DomainError::invalid(
                "rules.rounding_decimal_places",
                format!(
                    "{places} is more than {currency}'s {} decimal places",
                    currency.decimal_places()
                ),
            ));
        }
        Some(places) => places,
        None => currency.decimal_places(),
    };
    let unit = Decimal::new(1, places);
    let multiple = if r.rounding_multiple.is_empty() {
        unit
    } else {
        let multiple = parse_decimal("rules.rounding_multiple", &r.rounding_multiple, false)?;
        if multiple.is_zero() || !(multiple % unit).is_zero() {
            return Err(DomainError::invalid(
                "rules.rounding_multiple",
                format!(
                    "{multiple} must be a positive multiple of {unit} (rounding_decimal_places {places})"
                ),
            ));
        }
        multiple
    };
    let compulsory_savings = match r.compulsory_savings.and_then(|c| c.rule) {
        None => CompulsorySavings::None,
        Some(pb::compulsory_savings_rule::Rule::PercentOfPrincipal(p)) => {
            CompulsorySavings::PercentOfPrincipal(parse_decimal(
                "rules.compulsory_savings.percent_of_principal",
                &p,
                false,
            )?)
        }
        Some(pb::compulsory_savings_rule::Rule::FixedPerInstallment(a)) => {
            CompulsorySavings::FixedPerInstallment(parse_amount(
                "rules.compulsory_savings.fixed_per_installment",
                &a,
                currency,
            )?)
        }
    };
    check_len(
        "rules.allocation_order",
        r.allocation_order.len(),
        ALLOCATION_ORDER_DEFAULT.len(),
        true,
        "parts",
    )?;
    check_len("rules.fees", r.fees.len(), FEES_MAX, true, "fees")?;
    let allocation_order = if r.allocation_order.is_empty() {
        ALLOCATION_ORDER_DEFAULT
    } else {
        let parts: Vec<AllocationPart> = r
            .allocation_order
            .iter()
            .enumerate()
            .map(|(i, v)| {
                enum_in(
                    &format!("rules.allocation_order[{i}]"),
                    *v,
                    None,
                    |p: pb::AllocationPart| match p {
                        pb::AllocationPart::Penalties => Some(Some(AllocationPart::Penalties)),
                        pb::AllocationPart::Fees => Some(Some(AllocationPart::Fees)),
                        pb::AllocationPart::Interest => Some(Some(AllocationPart::Interest)),
                        pb::AllocationPart::Principal => Some(Some(AllocationPart::Principal)),
                        pb::AllocationPart::Unspecified => None,
                    },
                )?
                .ok_or_else(|| {
                    DomainError::invalid(&format!("rules.allocation_order[{i}]"), "is unset")
                })
            })
            .collect::<Result<_, _>>()?;
        parts.try_into().map_err(|parts: Vec<AllocationPart>| {
            DomainError::invalid(
                "rules.allocation_order",
                format!(
                    "names {} parts; give all four (penalties, fees, interest, principal) once each",
                    parts.len()
                ),
            )
        })?
    };
    let mut fees = Vec::with_capacity(r.fees.len());
    for (i, fee) in r.fees.iter().enumerate() {
        let field = format!("rules.fees[{i}]");
        let amount = match &fee.amount {
            Some(pb::fee::Amount::Fixed(a)) => {
                FeeAmount::Fixed(parse_amount(&format!("{field}.fixed"), a, currency)?)
            }
            Some(pb::fee::Amount::PercentOfPrincipal(p)) => FeeAmount::PercentOfPrincipal(
                parse_decimal(&format!("{field}.percent_of_principal"), p, false)?,
            ),
            None => {
                return Err(DomainError::invalid(
                    &format!("{field}.amount"),
                    "is required (fixed or percent_of_principal)",
                ));
            }
        };
        let collection = enum_in(
            &format!("{field}.collection"),
            fee.collection,
            FeeCollection::AtDisbursement,
            |v: pb::FeeCollection| match v {
                pb::FeeCollection::AtDisbursement => Some(FeeCollection::AtDisbursement),
                pb::FeeCollection::WithFirstInstallment => {
                    Some(FeeCollection::WithFirstInstallment)
                }
                pb::FeeCollection::Unspecified => None,
            },
        )?;
        fees.push(Fee {
            code: FeeCode::parse(&format!("{field}.code"), &fee.code)?,
            amount,
            collection,
        });
    }
    let installments_min = r.installments_min;
    let or_min = |v: u32| if v == 0 { installments_min } else { v };
    Ok(ProductRules {
        name: Name::parse("rules.name", &r.name)?,
        currency,
        principal_min: required("rules.principal_min", &r.principal_min)?,
        principal_max: required("rules.principal_max", &r.principal_max)?,
        rate_min: required("rules.rate_min_percent", &r.rate_min_percent)?,
        rate_max: required("rules.rate_max_percent", &r.rate_max_percent)?,
        interest_method,
        amortization,
        interest_period,
        installment_basis,
        frequency,
        installments_min,
        installments_max: or_min(r.installments_max),
        installments_default: or_min(r.installments_default),
        rounding: InstallmentRounding { multiple, mode },
        rounding_decimal_places: r.rounding_decimal_places,
        grace_on_principal: r.grace_on_principal,
        grace_on_interest: r.grace_on_interest,
        compulsory_savings,
        arrears_tolerance: ArrearsTolerance {
            days: r.arrears_tolerance_days,
            amount: amount_or(
                "rules.arrears_tolerance_amount",
                &r.arrears_tolerance_amount,
                currency,
                Decimal::ZERO,
            )?,
        },
        allocation_order,
        fees,
        tranches_max: if r.tranches_max == 0 {
            1
        } else {
            r.tranches_max
        },
    })
}

/// Product rules out.
pub fn rules_out(rules: &ProductRules) -> pb::ProductRules {
    let text = |d: Decimal| d.normalize().to_string();
    pb::ProductRules {
        name: rules.name.to_string(),
        currency: rules.currency.code().to_owned(),
        principal_min: text(rules.principal_min),
        principal_max: text(rules.principal_max),
        rate_min_percent: text(rules.rate_min),
        rate_max_percent: text(rules.rate_max),
        interest_method: match rules.interest_method {
            InterestMethod::Flat => pb::InterestMethod::Flat,
            InterestMethod::DecliningBalance => pb::InterestMethod::DecliningBalance,
        } as i32,
        amortization: match rules.amortization {
            Amortization::EqualInstallments => pb::Amortization::EqualInstallments,
            Amortization::EqualPrincipal => pb::Amortization::EqualPrincipal,
        } as i32,
        interest_period: match rules.interest_period {
            InterestPeriod::PerPeriod => pb::InterestPeriod::PerPeriod,
            InterestPeriod::Actual365 => pb::InterestPeriod::Actual365,
        } as i32,
        installment_basis: match rules.installment_basis {
            InstallmentBasis::NominalPeriodRate => pb::InstallmentBasis::NominalPeriodRate,
            InstallmentBasis::ActualPeriodRates => pb::InstallmentBasis::ActualPeriodRates,
        } as i32,
        repayment_frequency: convert::frequency_out(rules.frequency) as i32,
        installments_min: rules.installments_min,
        installments_max: rules.installments_max,
        installments_default: rules.installments_default,
        rounding_decimal_places: rules.rounding_decimal_places,
        rounding_multiple: text(rules.rounding.multiple),
        rounding_mode: match rules.rounding.mode {
            RoundingMode::HalfEven => pb::RoundingMode::HalfEven,
            RoundingMode::HalfUp => pb::RoundingMode::HalfUp,
            RoundingMode::Down => pb::RoundingMode::Down,
            RoundingMode::Up => pb::RoundingMode::Up,
        } as i32,
        grace_on_principal: rules.grace_on_principal,
        grace_on_interest: rules.grace_on_interest,
        compulsory_savings: Some(pb::CompulsorySavingsRule {
            rule: match rules.compulsory_savings {
                CompulsorySavings::None => None,
                CompulsorySavings::PercentOfPrincipal(p) => Some(
                    pb::compulsory_savings_rule::Rule::PercentOfPrincipal(text(p)),
                ),
                CompulsorySavings::FixedPerInstallment(a) => Some(
                    pb::compulsory_savings_rule::Rule::FixedPerInstallment(text(a)),
                ),
            },
        }),
        arrears_tolerance_days: rules.arrears_tolerance.days,
        arrears_tolerance_amount: text(rules.arrears_tolerance.amount),
        allocation_order: rules
            .allocation_order
            .iter()
            .map(|p| {
                let part = match p {
                    AllocationPart::Penalties => pb::AllocationPart::Penalties,
                    AllocationPart::Fees => pb::AllocationPart::Fees,
                    AllocationPart::Interest => pb::AllocationPart::Interest,
                    AllocationPart::Principal => pb::AllocationPart::Principal,
                };
                part as i32
            })
            .collect(),
        fees: rules
            .fees
            .iter()
            .map(|fee| pb::Fee {
                code: fee.code.to_string(),
                amount: Some(match fee.amount {
                    FeeAmount::Fixed(a) => pb::fee::Amount::Fixed(text(a)),
                    FeeAmount::PercentOfPrincipal(p) => {
                        pb::fee::Amount::PercentOfPrincipal(text(p))
                    }
                }),
                collection: match fee.collection {
                    FeeCollection::AtDisbursement => pb::FeeCollection::AtDisbursement,
                    FeeCollection::WithFirstInstallment => pb::FeeCollection::WithFirstInstallment,
                } as i32,
            })
            .collect(),
        tranches_max: rules.tranches_max,
    }
}

fn product_out(version: &ProductVersion, versions: usize) -> pb::Product {
    pb::Product {
        product_id: version.id.to_string(),
        version: version.version,
        effective_from: version.effective_from.to_string(),
        rules: Some(rules_out(&version.rules)),
        versions: versions as u32,
    }
}

/// A loan application as sent (its fields named under `prefix`, e.g.
/// `application.`), in its product's currency.
pub fn application_in(
    a: pb::LoanApplication,
    prefix: &str,
) -> Result<(ProductId, LoanApplication), DomainError> {
    let field = |name: &str| format!("{prefix}{name}");
    let product_id = ProductId::parse(&field("product_id"), &a.product_id)?;
    let principal = convert::money(&field("principal"), a.principal)?;
    let approved_principal = if a.approved_principal.is_empty() {
        None
    } else {
        Some(parse_amount(
            &field("approved_principal"),
            &a.approved_principal,
            principal.currency.unwrap_or(Currency::MOST_PRECISE),
        )?)
    };
    let annual_interest_rate_percent = if a.annual_interest_rate_percent.is_empty() {
        None
    } else {
        Some(convert::percent(
            &field("annual_interest_rate_percent"),
            &a.annual_interest_rate_percent,
            Decimal::ZERO,
        )?)
    };
    Ok((
        product_id,
        LoanApplication {
            principal: principal.amount,
            currency: principal.currency,
            approved_principal,
            annual_interest_rate_percent,
            installment_count: (a.installment_count > 0).then_some(a.installment_count),
            first_repayment_date: convert::date(
                &field("first_repayment_date"),
                &a.first_repayment_date,
            )?,
        },
    ))
}

/// A schedule out, with the balance after each installment, or an overflow
/// (the caller knows whether that is the request's fault or the books').
pub fn schedule_out(
    schedule: &[Installment],
    currency: Currency,
) -> Result<Vec<pb::Installment>, Overflow> {
    let mut balance = sum(schedule.iter().map(|i| i.principal))?;
    schedule
        .iter()
        .map(|i| {
            balance = balance.checked_sub(i.principal).ok_or(Overflow)?;
            let mut out = convert::installment_out(
                i,
                (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
                pb::InstallmentStatus::NotDue,
                currency,
            )?;
            out.balance_after = Some(money_out(balance, currency));
            Ok(out)
        })
        .collect()
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let principal = super::access::principal(&request)?;
        let r = request.into_inner();
        let (receipt, version) = self
            .define(
                principal,
                r.context,
                &r.product_id,
                r.rules,
                &r.effective_from,
                true,
            )
            .await?;
        Ok(Response::new(pb::CreateProductResponse {
            receipt: Some(receipt),
            version,
        }))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        let principal = super::access::principal(&request)?;
        let r = request.into_inner();
        let (receipt, version) = self
            .define(
                principal,
                r.context,
                &r.product_id,
                r.rules,
                &r.effective_from,
                false,
            )
            .await?;
        Ok(Response::new(pb::UpdateProductResponse {
            receipt: Some(receipt),
            version,
        }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        super::access::read_subject(
            &request,
            format!("product:{}", request.get_ref().product_id),
        );
        let r = request.into_inner();
        let id = ProductId::parse("product_id", &r.product_id).map_err(refuse)?;
        // Off the runtime's workers, like every read: a worker never waits
        // on the read lock.
        let product = self
            .ledger
            .read_off_runtime(move |ledger| {
                ledger.read(|state| {
                    let versions = state.product_versions(&id).ok_or_else(|| {
                        DomainError::not_found("product_id", "product", id.as_str())
                    })?;
                    let chosen = pick_version(versions, r.version)?;
                    Ok::<_, DomainError>(product_out(chosen, versions.len()))
                })
            })
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(refuse)?;
        Ok(Response::new(pb::GetProductResponse {
            product: Some(product),
        }))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        use super::pages::{self, List, Page};
        let r = request.into_inner();
        let page_size = pages::page_size(r.page_size).map_err(refuse)?;
        let after = pages::key_after(List::Products, "", &r.page_token)
            .and_then(|key| key.map(|k| ProductId::parse("page_token", &k)).transpose())
            .map_err(refuse)?;
        // One hold of the read lock, bounded by the page, off the runtime's workers.
        let reply = self
            .ledger
            .read_off_runtime(move |ledger| {
                ledger.read(|state| {
                    let mut page = Page::new(page_size);
                    let mut last: Option<&ProductId> = None;
                    let mut next = None;
                    for (product, versions) in state.products_after(after.as_ref()) {
                        if page.is_full() || page.push(product_out(product, versions)).is_err() {
                            next = last
                                .map(|id| pages::next_page_token(List::Products, "", id.as_str()));
                            break;
                        }
                        last = Some(&product.id);
                    }
                    pb::ListProductsResponse {
                        products: page.into_items(),
                        next_page_token: next.unwrap_or_default(),
                    }
                })
            })
            .await
            .map_err(|error| Status::internal(error.to_string()))?;
        Ok(Response::new(reply))
    }

    async fn define_savings_product(
        &self,
        request: Request<pb::DefineSavingsProductRequest>,
    ) -> Result<Response<pb::DefineSavingsProductResponse>, Status> {
        let principal = super::access::principal(&request)?;
        savings::define(&self.ledger, principal, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_savings_products(
        &self,
        request: Request<pb::ListSavingsProductsRequest>,
    ) -> Result<Response<pb::ListSavingsProductsResponse>, Status> {
        super::access::read_subject(&request, "savings-products");
        self.ledger
            .read_off_runtime(|ledger| ledger.read(savings::list))
            .await
            .map(Response::new)
            .map_err(|e| Status::internal(e.to_string()))
    }

    async fn set_approval_limit(
        &self,
        request: Request<pb::SetApprovalLimitRequest>,
    ) -> Result<Response<pb::SetApprovalLimitResponse>, Status> {
        let principal = super::access::principal(&request)?;
        let r = request.into_inner();
        let command = (|| {
            let (request_id, actor) = convert::context(r.context)?;
            let above = match r.above {
                None => None,
                Some(money) => Some(convert::money("above", Some(money))?),
            };
            Ok::<_, DomainError>(Command {
                request_id,
                actor,
                principal: Some(principal),
                approval: None,
                body: CommandBody::Access(AccessCommand::SetApprovalLimit {
                    product_id: ProductId::parse("product_id", &r.product_id)?,
                    above,
                }),
            })
        })()
        .map_err(refuse)?;
        let entry = self
            .ledger
            .submit(command)
            .await
            .map_err(status::from_submit)?;
        Ok(Response::new(pb::SetApprovalLimitResponse {
            receipt: Some(convert::receipt(&entry)),
        }))
    }

    async fn preview_schedule(
        &self,
        request: Request<pb::PreviewScheduleRequest>,
    ) -> Result<Response<pb::PreviewScheduleResponse>, Status> {
        super::access::read_subject(
            &request,
            format!("product:{}", request.get_ref().product_id),
        );
        let r = request.into_inner();
        let id = ProductId::parse("product_id", &r.product_id).map_err(refuse)?;
        let application = pb::LoanApplication {
            product_id: r.product_id.clone(),
            principal: r.principal,
            approved_principal: String::new(),
            annual_interest_rate_percent: r.annual_interest_rate_percent,
            installment_count: r.installment_count,
            first_repayment_date: r.first_repayment_date,
        };
        let (_, application) = application_in(application, "").map_err(refuse)?;
        let disbursed_on = convert::date("disbursed_on", &r.disbursed_on).map_err(refuse)?;
        let wanted = r.version;
        let version = self
            .ledger
            .read_off_runtime(move |ledger| {
                ledger.read(|state| {
                    let versions = state.product_versions(&id).ok_or_else(|| {
                        DomainError::not_found("product_id", "product", id.as_str())
                    })?;
                    match wanted {
                        0 => state.product_on(&id, disbursed_on).cloned(),
                        wanted => pick_version(versions, wanted).cloned(),
                    }
                })
            })
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(refuse)?;
        let preview = preview(&version, &application, disbursed_on).map_err(refuse)?;
        Ok(Response::new(preview))
    }
}

fn pick_version(versions: &[ProductVersion], wanted: u32) -> Result<&ProductVersion, DomainError> {
    if wanted == 0 {
        return versions
            .last()
            .ok_or_else(|| DomainError::invalid("product_id", "has no version"));
    }
    versions
        .iter()
        .find(|v| v.version == wanted)
        .ok_or_else(|| DomainError::not_found("version", "product version", wanted.to_string()))
}

/// The schedule a disbursement under `version` would record, with its totals.
pub fn preview(
    version: &ProductVersion,
    application: &LoanApplication,
    disbursed_on: chrono::NaiveDate,
) -> Result<pb::PreviewScheduleResponse, DomainError> {
    let rules = &version.rules;
    let currency = rules.currency;
    let terms = rules.terms_for(application, disbursed_on)?;
    let (schedule, fees) = initial_schedule(&terms, &LoanPolicy::of(rules).fees, currency, "")?;
    // Every figure here comes from the application's principal and rate.
    let refuse = |_: Overflow| too_large("principal");
    let at_disbursement =
        charged(&fees, FeeCollection::AtDisbursement).map_err(|_| fees_overflow("principal"))?;
    let principal = sum(schedule.iter().map(|i| i.principal)).map_err(refuse)?;
    let interest = sum(schedule.iter().map(|i| i.interest)).map_err(refuse)?;
    let fees = sum(schedule.iter().map(|i| i.fee)).map_err(refuse)?;
    let total_repayment = sum([principal, interest, fees]).map_err(refuse)?;
    let paid_out = terms
        .principal
        .checked_sub(at_disbursement)
        .ok_or(Overflow)
        .map_err(refuse)?;
    Ok(pb::PreviewScheduleResponse {
        product_id: version.id.to_string(),
        version: version.version,
        schedule: schedule_out(&schedule, currency).map_err(refuse)?,
        total_principal: Some(money_out(principal, currency)),
        total_interest: Some(money_out(interest, currency)),
        total_fees: Some(money_out(fees, currency)),
        total_repayment: Some(money_out(total_repayment, currency)),
        fees_at_disbursement: Some(money_out(at_disbursement, currency)),
        paid_out: Some(money_out(paid_out, currency)),
    })
}
