//! Savings products: their interest rules in and out of protobuf, and the
//! two RPCs that define and list them.

use rust_decimal::Decimal;
use tonic::Status;

use crate::domain::DomainError;
use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::Outcome;
use crate::domain::ids::{Name, PrincipalId, ProductId};
use crate::domain::savings_interest::{PostingFrequency, SavingsInterestRules};
use crate::domain::schedule::{InstallmentRounding, RoundingMode};
use crate::ledger::Ledger;
use crate::pb;

use super::super::{convert, status};
use super::rounding_mode_in;

fn rules_in(rules: Option<pb::SavingsInterestRules>) -> Result<SavingsInterestRules, DomainError> {
    let r = rules.ok_or_else(|| DomainError::invalid("interest", "is required"))?;
    let rate = r.annual_rate_percent.parse::<Decimal>().map_err(|_| {
        DomainError::invalid(
            "interest.annual_rate_percent",
            format!(
                "{} is not a decimal rate in percent, e.g. \"5\"",
                crate::domain::error::echo(&r.annual_rate_percent)
            ),
        )
    })?;
    let posting = match pb::PostingFrequency::try_from(r.posting) {
        Ok(pb::PostingFrequency::Monthly) => PostingFrequency::Monthly,
        Ok(pb::PostingFrequency::Quarterly) => PostingFrequency::Quarterly,
        Ok(pb::PostingFrequency::HalfYearly) => PostingFrequency::HalfYearly,
        Ok(pb::PostingFrequency::Yearly) => PostingFrequency::Yearly,
        _ => {
            return Err(DomainError::invalid(
                "interest.posting",
                "is required: monthly, quarterly, half-yearly or yearly",
            ));
        }
    };
    let multiple = if r.rounding_multiple.is_empty() {
        Decimal::ONE
    } else {
        r.rounding_multiple.parse::<Decimal>().map_err(|_| {
            DomainError::invalid(
                "interest.rounding_multiple",
                format!(
                    "{} is not a decimal",
                    crate::domain::error::echo(&r.rounding_multiple)
                ),
            )
        })?
    };
    let mode = rounding_mode_in("interest.rounding_mode", r.rounding_mode)?;
    let rules = SavingsInterestRules {
        annual_rate_percent: rate.normalize(),
        posting,
        rounding: InstallmentRounding {
            multiple: multiple.normalize(),
            mode,
        },
    };
    rules.validate("interest")?;
    Ok(rules)
}

/// The rules as clients read them.
fn rules_out(rules: &SavingsInterestRules) -> pb::SavingsInterestRules {
    pb::SavingsInterestRules {
        annual_rate_percent: rules.annual_rate_percent.normalize().to_string(),
        posting: match rules.posting {
            PostingFrequency::Monthly => pb::PostingFrequency::Monthly,
            PostingFrequency::Quarterly => pb::PostingFrequency::Quarterly,
            PostingFrequency::HalfYearly => pb::PostingFrequency::HalfYearly,
            PostingFrequency::Yearly => pb::PostingFrequency::Yearly,
        } as i32,
        rounding_multiple: rules.rounding.multiple.normalize().to_string(),
        rounding_mode: match rules.rounding.mode {
            RoundingMode::HalfEven => pb::RoundingMode::HalfEven,
            RoundingMode::HalfUp => pb::RoundingMode::HalfUp,
            RoundingMode::Down => pb::RoundingMode::Down,
            RoundingMode::Up => pb::RoundingMode::Up,
        } as i32,
    }
}

/// `DefineSavingsProduct`.
pub async fn define(
    ledger: &Ledger,
    principal: PrincipalId,
    r: pb::DefineSavingsProductRequest,
) -> Result<pb::DefineSavingsProductResponse, Status> {
    let command = (|| {
        let (request_id, actor) = convert::context(r.context)?;
        Ok::<_, DomainError>(Command {
            request_id,
            actor,
            principal: Some(principal),
            approval: None,
            body: CommandBody::DefineSavingsProduct {
                product_id: ProductId::parse("product_id", &r.product_id)?,
                name: Name::parse("name", &r.name)?,
                kind: convert::savings_kind(r.kind)?,
                rules: rules_in(r.interest)?,
                effective_from: convert::optional_date("effective_from", &r.effective_from)?,
            },
        })
    })()
    .map_err(|e| status::from_domain(&e))?;
    let entry = ledger.submit(command).await.map_err(status::from_submit)?;
    match entry.body.outcome {
        Outcome::ProductDefined { version } => Ok(pb::DefineSavingsProductResponse {
            receipt: Some(convert::receipt(&entry)),
            version,
        }),
        _ => Err(Status::internal(
            "internal error: a reply of the wrong kind",
        )),
    }
}

/// `ListSavingsProducts`: every version, by product.
pub fn list(state: &crate::domain::state::LedgerState) -> pb::ListSavingsProductsResponse {
    let versions = state
        .savings_products()
        .flat_map(|versions| versions.iter())
        .map(|v| pb::SavingsProductVersion {
            product_id: v.id.to_string(),
            name: v.name.to_string(),
            kind: convert::savings_kind_out(v.kind) as i32,
            version: v.version,
            effective_from: v.effective_from.to_string(),
            interest: Some(rules_out(&v.rules)),
        })
        .collect();
    pb::ListSavingsProductsResponse { versions }
}
