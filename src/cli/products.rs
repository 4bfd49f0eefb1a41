//! The loan product catalogue, for a head-office product manager: define a
//! product (`product-create`) or its next version (`product-update`), list
//! and show products, and preview the schedule a loan would get.

use anyhow::bail;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::args::{
    PreviewArgs, ProductArgs, ProductDefineArgs, ProductRulesArgs, SavingsProductArgs,
};
use super::connect::{WriteSession, products, read_error};
use super::output::{
    Report, count, enum_name, fields, grouped, money, money_json, section, table, write_report,
};
use super::transactions::{schedule_json, schedule_section, typed_money};
use crate::pb;

/// The flags `product-create` needs, with the rule each fills.
const REQUIRED: [&str; 7] = [
    "--name",
    "--principal-min",
    "--principal-max",
    "--rate (or --rate-min and --rate-max)",
    "--method",
    "--frequency",
    "--installments (or --installments-min)",
];

/// `product-create`: defines version 1 from the flags and the defaults.
pub async fn create(session: &WriteSession, args: ProductDefineArgs) -> anyhow::Result<Report> {
    let rules = apply(pb::ProductRules::default(), args.rules);
    let missing: Vec<&str> = REQUIRED
        .iter()
        .zip([
            rules.name.is_empty(),
            rules.principal_min.is_empty(),
            rules.principal_max.is_empty(),
            rules.rate_min_percent.is_empty() || rules.rate_max_percent.is_empty(),
            rules.interest_method == 0,
            rules.repayment_frequency == 0,
            rules.installments_min == 0,
        ])
        .filter_map(|(flag, missing)| missing.then_some(*flag))
        .collect();
    if !missing.is_empty() {
        bail!("product-create needs {}", missing.join(", "));
    }
    let request = pb::CreateProductRequest {
        context: session.context(),
        product_id: args.product_id.clone(),
        rules: Some(rules),
        effective_from: args.effective_from.clone().unwrap_or_default(),
    };
    let response = session
        .products()
        .await?
        .create_product(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    defined(session, response.receipt, args.product_id, response.version)
}

/// `product-update`: defines the next version, the latest one's rules with
/// the flags given changed.
pub async fn update(session: &WriteSession, args: ProductDefineArgs) -> anyhow::Result<Report> {
    let mut client = session.products().await?;
    let latest = client
        .get_product(pb::GetProductRequest {
            product_id: args.product_id.clone(),
            version: 0,
        })
        .await
        .map_err(read_error)?
        .into_inner()
        .product
        .and_then(|product| product.rules)
        .unwrap_or_default();
    let request = pb::UpdateProductRequest {
        context: session.context(),
        product_id: args.product_id.clone(),
        rules: Some(apply(latest, args.rules)),
        effective_from: args.effective_from.clone().unwrap_or_default(),
    };
    let response = client
        .update_product(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    defined(session, response.receipt, args.product_id, response.version)
}

/// The report of a definition: the receipt, the product and its new version.
fn defined(
    session: &WriteSession,
    receipt: Option<pb::EntryReceipt>,
    product_id: String,
    version: u32,
) -> anyhow::Result<Report> {
    let receipt = session.receipt(receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("product", product_id.clone()),
            ("version", version.to_string()),
        ],
        json!({ "product_id": product_id, "version": version }),
    ))
}

/// `rules` with every flag given applied; the rest unchanged.
fn apply(mut rules: pb::ProductRules, a: ProductRulesArgs) -> pb::ProductRules {
    let set = |field: &mut String, value: Option<String>| {
        if let Some(value) = value {
            *field = value;
        }
    };
    let set_u32 = |field: &mut u32, value: Option<u32>| {
        if let Some(value) = value {
            *field = value;
        }
    };
    set(&mut rules.name, a.name);
    set(&mut rules.currency, a.currency);
    set(&mut rules.principal_min, a.principal_min);
    set(&mut rules.principal_max, a.principal_max);
    set(&mut rules.rate_min_percent, a.rate.clone().or(a.rate_min));
    set(&mut rules.rate_max_percent, a.rate.or(a.rate_max));
    if let Some(method) = a.method {
        rules.interest_method = pb::InterestMethod::from(method) as i32;
    }
    if let Some(amortization) = a.amortization {
        rules.amortization = pb::Amortization::from(amortization) as i32;
    }
    if let Some(period) = a.interest_period {
        rules.interest_period = pb::InterestPeriod::from(period) as i32;
    }
    if let Some(basis) = a.installment_basis {
        rules.installment_basis = pb::InstallmentBasis::from(basis) as i32;
    }
    if let Some(frequency) = a.frequency {
        rules.repayment_frequency = pb::RepaymentFrequency::from(frequency) as i32;
    }
    set_u32(
        &mut rules.installments_min,
        a.installments.or(a.installments_min),
    );
    set_u32(
        &mut rules.installments_max,
        a.installments.or(a.installments_max),
    );
    set_u32(
        &mut rules.installments_default,
        a.installments.or(a.installments_default),
    );
    if a.rounding_places.is_some() {
        rules.rounding_decimal_places = a.rounding_places;
    }
    set(&mut rules.rounding_multiple, a.rounding);
    if let Some(mode) = a.rounding_mode {
        rules.rounding_mode = pb::RoundingMode::from(mode) as i32;
    }
    set_u32(&mut rules.grace_on_principal, a.grace_principal);
    set_u32(&mut rules.grace_on_interest, a.grace_interest);
    use pb::compulsory_savings_rule::Rule;
    let compulsory = match (a.compulsory_percent, a.compulsory_per_installment) {
        (Some(percent), _) => Some(Some(Rule::PercentOfPrincipal(percent))),
        (None, Some(amount)) => Some(Some(Rule::FixedPerInstallment(amount))),
        (None, None) if a.no_compulsory => Some(None),
        (None, None) => None,
    };
    if let Some(rule) = compulsory {
        rules.compulsory_savings = Some(pb::CompulsorySavingsRule { rule });
    }
    set_u32(&mut rules.arrears_tolerance_days, a.tolerance_days);
    set(&mut rules.arrears_tolerance_amount, a.tolerance_amount);
    if let Some(parts) = a.allocation {
        rules.allocation_order = parts
            .into_iter()
            .map(|part| pb::AllocationPart::from(part) as i32)
            .collect();
    }
    if a.no_fees || !a.fee.is_empty() {
        rules.fees = a.fee.into_iter().map(|fee| fee.0).collect();
    }
    set_u32(&mut rules.tranches_max, a.tranches);
    rules
}

/// `savings-product-define`: defines a savings product or its next version.
pub async fn define_savings(
    session: &WriteSession,
    args: SavingsProductArgs,
) -> anyhow::Result<Report> {
    let request = pb::DefineSavingsProductRequest {
        context: session.context(),
        product_id: args.product_id.clone(),
        name: args.name,
        kind: pb::SavingsKind::from(args.kind) as i32,
        interest: Some(pb::SavingsInterestRules {
            annual_rate_percent: args.rate.clone(),
            posting: pb::PostingFrequency::from(args.posting) as i32,
            rounding_multiple: args.rounding,
            rounding_mode: pb::RoundingMode::from(args.rounding_mode) as i32,
        }),
        effective_from: args.effective_from.unwrap_or_default(),
    };
    let response = session
        .products()
        .await?
        .define_savings_product(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("product", args.product_id.clone()),
            ("version", response.version.to_string()),
            ("rate", format!("{}% a year", args.rate)),
        ],
        json!({ "product_id": args.product_id, "version": response.version }),
    ))
}

/// `savings-products`: every version of every savings product.
pub async fn list_savings(server: &str) -> anyhow::Result<Report> {
    let r = products(server)
        .await?
        .list_savings_products(pb::ListSavingsProductsRequest {})
        .await
        .map_err(read_error)?
        .into_inner();
    let mut rows = table(
        &[
            "product", "name", "kind", "version", "from", "rate %", "posting", "rounding",
        ],
        &[3, 5],
    );
    let mut json_rows = Vec::new();
    for v in &r.versions {
        let interest = v.interest.clone().unwrap_or_default();
        let posting = enum_name(interest.posting().as_str_name());
        rows.add_row(vec![
            v.product_id.clone(),
            v.name.clone(),
            enum_name(v.kind().as_str_name()),
            v.version.to_string(),
            v.effective_from.clone(),
            interest.annual_rate_percent.clone(),
            posting.clone(),
            format!(
                "multiple of {}, {}",
                grouped(&interest.rounding_multiple),
                enum_name(interest.rounding_mode().as_str_name())
            ),
        ]);
        json_rows.push(json!({
            "product_id": v.product_id,
            "name": v.name,
            "kind": enum_name(v.kind().as_str_name()),
            "version": v.version,
            "effective_from": v.effective_from,
            "annual_rate_percent": interest.annual_rate_percent,
            "posting": posting,
            "rounding_multiple": interest.rounding_multiple,
            "rounding_mode": enum_name(interest.rounding_mode().as_str_name()),
        }));
    }
    Ok(Report {
        text: section("Savings products", &rows, "none defined"),
        json: json!({ "versions": json_rows }),
    })
}

/// `products`: every product's latest version.
pub async fn list(server: &str) -> anyhow::Result<Report> {
    let r = pb::ListProductsResponse {
        products: super::reads::all_products(server).await?,
        ..Default::default()
    };
    let header = [
        "product",
        "version",
        "name",
        "principal",
        "rate",
        "method",
        "installments",
        "fees",
    ];
    let mut rows = table(&header, &[1]);
    for p in &r.products {
        let rules = p.rules.clone().unwrap_or_default();
        rows.add_row(vec![
            p.product_id.clone(),
            p.version.to_string(),
            rules.name.clone(),
            principal_range(&rules),
            rate_range(&rules),
            enum_name(rules.interest_method().as_str_name()),
            format!(
                "{} {}",
                installments_text(&rules),
                enum_name(rules.repayment_frequency().as_str_name())
            ),
            fees_short(&rules.fees, &rules.currency),
        ]);
    }
    let text = if r.products.is_empty() {
        "products: none\n".to_owned()
    } else {
        format!("{rows}\n")
    };
    let json = json!({ "products": r.products.iter().map(product_json).collect::<Vec<_>>() });
    Ok(Report { text, json })
}

/// `product`: one version's rules in full.
pub async fn show(server: &str, args: ProductArgs) -> anyhow::Result<Report> {
    let request = pb::GetProductRequest {
        product_id: args.product_id,
        version: args.version.unwrap_or_default(),
    };
    let product = products(server)
        .await?
        .get_product(request)
        .await
        .map_err(read_error)?
        .into_inner()
        .product
        .unwrap_or_default();
    let r = product.rules.clone().unwrap_or_default();
    let declining = r.interest_method() == pb::InterestMethod::DecliningBalance;
    let mut rows = vec![
        ("product", product.product_id.clone()),
        (
            "version",
            format!("{} of {}", product.version, product.versions),
        ),
        ("effective from", product.effective_from.clone()),
        ("name", r.name.clone()),
        ("currency", r.currency.clone()),
        ("principal", principal_range(&r)),
        ("interest rate", format!("{} a year", rate_range(&r))),
        ("method", enum_name(r.interest_method().as_str_name())),
    ];
    if declining {
        rows.push(("amortization", amortization_name(&r)));
        rows.push((
            "installment basis",
            enum_name(r.installment_basis().as_str_name()),
        ));
    }
    rows.extend([
        (
            "interest period",
            enum_name(r.interest_period().as_str_name()),
        ),
        (
            "frequency",
            enum_name(r.repayment_frequency().as_str_name()),
        ),
        ("installments", installments_text(&r)),
        ("rounding", rounding_text(&r)),
        ("grace", grace_text(&r)),
        ("compulsory savings", compulsory_text(&r)),
        ("arrears tolerance", tolerance_text(&r)),
        ("allocation order", allocation_names(&r).join(", ")),
        ("fees", fees_text(&r.fees, &r.currency)),
        ("tranches", format!("at most {}", r.tranches_max)),
    ]);
    Ok(Report {
        text: fields(&rows),
        json: product_json(&product),
    })
}

/// `preview`: the schedule a loan would get, its totals, the fees taken at
/// disbursement, all fees together and the cash paid out.
pub async fn preview(server: &str, args: PreviewArgs) -> anyhow::Result<Report> {
    let request = pb::PreviewScheduleRequest {
        product_id: args.product_id,
        version: args.version.unwrap_or_default(),
        principal: typed_money(args.principal, args.currency),
        annual_interest_rate_percent: args.rate.unwrap_or_default(),
        installment_count: args.installments.unwrap_or_default(),
        disbursed_on: args.date,
        first_repayment_date: args.first_repayment,
    };
    let r = products(server)
        .await?
        .preview_schedule(request)
        .await
        .map_err(read_error)?
        .into_inner();
    let fees_in_all = money_sum(r.total_fees.as_ref(), r.fees_at_disbursement.as_ref());
    let mut text = fields(&[
        ("product", format!("{} version {}", r.product_id, r.version)),
        ("principal", money(r.total_principal.as_ref())),
        ("total interest", money(r.total_interest.as_ref())),
        ("fees with installments", money(r.total_fees.as_ref())),
        ("total repayment", money(r.total_repayment.as_ref())),
        (
            "fees at disbursement",
            money(r.fees_at_disbursement.as_ref()),
        ),
        ("fees in all", money(fees_in_all.as_ref())),
        ("paid out", money(r.paid_out.as_ref())),
    ]);
    let totals = [
        r.total_principal.as_ref(),
        r.total_interest.as_ref(),
        r.total_fees.as_ref(),
        r.total_repayment.as_ref(),
    ];
    text += &schedule_section("schedule", &r.schedule, Some(totals));
    let json = json!({
        "product_id": r.product_id,
        "version": r.version,
        "schedule": schedule_json(&r.schedule),
        "total_principal": money_json(r.total_principal.as_ref()),
        "total_interest": money_json(r.total_interest.as_ref()),
        "total_fees": money_json(r.total_fees.as_ref()),
        "total_repayment": money_json(r.total_repayment.as_ref()),
        "fees_at_disbursement": money_json(r.fees_at_disbursement.as_ref()),
        "fees_in_all": money_json(fees_in_all.as_ref()),
        "paid_out": money_json(r.paid_out.as_ref()),
    });
    Ok(Report { text, json })
}

/// `a + b`, exact, in their currency; `None` when either is absent, not a
/// decimal, in another currency, or the sum overflows.
fn money_sum(a: Option<&pb::Money>, b: Option<&pb::Money>) -> Option<pb::Money> {
    let (a, b) = (a?, b?);
    if a.currency != b.currency {
        return None;
    }
    let sum = a
        .amount
        .parse::<Decimal>()
        .ok()?
        .checked_add(b.amount.parse::<Decimal>().ok()?)?;
    Some(pb::Money {
        amount: sum.normalize().to_string(),
        currency: a.currency.clone(),
    })
}

/// "EQUAL_INSTALLMENTS" (the enum's prefix is one word, unlike the others).
fn amortization_name(r: &pb::ProductRules) -> String {
    let full = r.amortization().as_str_name();
    full.strip_prefix("AMORTIZATION_")
        .unwrap_or(full)
        .to_owned()
}

/// "1,000,000 to 50,000,000 VND".
fn principal_range(r: &pb::ProductRules) -> String {
    format!(
        "{} to {} {}",
        grouped(&r.principal_min),
        grouped(&r.principal_max),
        r.currency
    )
}

/// "24%", or "18% to 24%".
fn rate_range(r: &pb::ProductRules) -> String {
    if r.rate_min_percent == r.rate_max_percent {
        format!("{}%", r.rate_min_percent)
    } else {
        format!("{}% to {}%", r.rate_min_percent, r.rate_max_percent)
    }
}

/// "10", or "6 to 24 (default 12)".
fn installments_text(r: &pb::ProductRules) -> String {
    if r.installments_min == r.installments_max {
        r.installments_min.to_string()
    } else {
        format!(
            "{} to {} (default {})",
            r.installments_min, r.installments_max, r.installments_default
        )
    }
}

/// "multiple of 1,000 VND, HALF_EVEN".
fn rounding_text(r: &pb::ProductRules) -> String {
    format!(
        "multiple of {}, {}",
        with_currency(&r.rounding_multiple, &r.currency),
        enum_name(r.rounding_mode().as_str_name())
    )
}

/// "5% of outstanding principal", "20,000 VND per installment" or "none".
fn compulsory_text(r: &pb::ProductRules) -> String {
    use pb::compulsory_savings_rule::Rule;
    match r.compulsory_savings.as_ref().and_then(|c| c.rule.as_ref()) {
        Some(Rule::PercentOfPrincipal(p)) => format!("{p}% of outstanding principal"),
        Some(Rule::FixedPerInstallment(a)) => {
            format!("{} per installment", with_currency(a, &r.currency))
        }
        None => "none".to_owned(),
    }
}

/// "2 installments on principal, 1 installment on interest": how many
/// installments at the start repay no principal, and collect no interest.
fn grace_text(r: &pb::ProductRules) -> String {
    format!(
        "{} on principal, {} on interest",
        installments(r.grace_on_principal),
        installments(r.grace_on_interest)
    )
}

/// "1 installment", "0 installments".
fn installments(n: u32) -> String {
    let noun = if n == 1 {
        "installment"
    } else {
        "installments"
    };
    format!("{} {noun}", count(n))
}

/// "7 days late, or 0 VND overdue": a loan is not in arrears while its
/// oldest unpaid installment is at most that many days late, nor while the
/// overdue amount is at most that much.
fn tolerance_text(r: &pb::ProductRules) -> String {
    let amount = match r.arrears_tolerance_amount.as_str() {
        "" => "0",
        amount => amount,
    };
    format!(
        "{} days late, or {} overdue",
        count(r.arrears_tolerance_days),
        with_currency(amount, &r.currency)
    )
}

/// "20,000 VND": an amount with grouped digits and its currency, if known.
fn with_currency(amount: &str, currency: &str) -> String {
    if currency.is_empty() {
        grouped(amount)
    } else {
        format!("{} {currency}", grouped(amount))
    }
}

/// The allocation order's part names, lower case.
fn allocation_names(r: &pb::ProductRules) -> Vec<String> {
    r.allocation_order
        .iter()
        .map(|&part| {
            pb::AllocationPart::try_from(part).map_or_else(
                |_| part.to_string(),
                |p| enum_name(p.as_str_name()).to_lowercase(),
            )
        })
        .collect()
}

/// "disbursement 1% at disbursement; card 20,000 VND with first installment", or "none".
fn fees_text(fees: &[pb::Fee], currency: &str) -> String {
    if fees.is_empty() {
        return "none".to_owned();
    }
    fees.iter()
        .map(|fee| {
            let collection = match fee.collection() {
                pb::FeeCollection::WithFirstInstallment => "with first installment",
                _ => "at disbursement",
            };
            format!(
                "{} {} {collection}",
                fee.code,
                fee_amount_text(fee, currency)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "disbursement 1%, card 20,000 VND", or "none".
fn fees_short(fees: &[pb::Fee], currency: &str) -> String {
    if fees.is_empty() {
        return "none".to_owned();
    }
    fees.iter()
        .map(|fee| format!("{} {}", fee.code, fee_amount_text(fee, currency)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fee_amount_text(fee: &pb::Fee, currency: &str) -> String {
    match &fee.amount {
        Some(pb::fee::Amount::Fixed(a)) => with_currency(a, currency),
        Some(pb::fee::Amount::PercentOfPrincipal(p)) => format!("{p}%"),
        None => "-".to_owned(),
    }
}

fn product_json(p: &pb::Product) -> Value {
    json!({
        "product_id": p.product_id,
        "version": p.version,
        "versions": p.versions,
        "effective_from": p.effective_from,
        "rules": p.rules.as_ref().map(rules_json),
    })
}

fn rules_json(r: &pb::ProductRules) -> Value {
    use pb::compulsory_savings_rule::Rule;
    let compulsory = match r.compulsory_savings.as_ref().and_then(|c| c.rule.as_ref()) {
        Some(Rule::PercentOfPrincipal(p)) => json!({ "percent_of_principal": p }),
        Some(Rule::FixedPerInstallment(a)) => json!({ "fixed_per_installment": a }),
        None => Value::Null,
    };
    let fees: Vec<Value> = r
        .fees
        .iter()
        .map(|fee| {
            let (key, value) = match &fee.amount {
                Some(pb::fee::Amount::Fixed(a)) => ("fixed", a.clone()),
                Some(pb::fee::Amount::PercentOfPrincipal(p)) => ("percent_of_principal", p.clone()),
                None => ("fixed", String::new()),
            };
            json!({
                "code": fee.code,
                key: value,
                "collection": enum_name(fee.collection().as_str_name()),
            })
        })
        .collect();
    json!({
        "name": r.name,
        "currency": r.currency,
        "principal_min": r.principal_min,
        "principal_max": r.principal_max,
        "rate_min_percent": r.rate_min_percent,
        "rate_max_percent": r.rate_max_percent,
        "interest_method": enum_name(r.interest_method().as_str_name()),
        "amortization": amortization_name(r),
        "interest_period": enum_name(r.interest_period().as_str_name()),
        "installment_basis": enum_name(r.installment_basis().as_str_name()),
        "repayment_frequency": enum_name(r.repayment_frequency().as_str_name()),
        "installments_min": r.installments_min,
        "installments_max": r.installments_max,
        "installments_default": r.installments_default,
        "rounding_decimal_places": r.rounding_decimal_places,
        "rounding_multiple": r.rounding_multiple,
        "rounding_mode": enum_name(r.rounding_mode().as_str_name()),
        "grace_on_principal": r.grace_on_principal,
        "grace_on_interest": r.grace_on_interest,
        "compulsory_savings": compulsory,
        "arrears_tolerance_days": r.arrears_tolerance_days,
        "arrears_tolerance_amount": r.arrears_tolerance_amount,
        "allocation_order": allocation_names(r),
        "fees": fees,
        "tranches_max": r.tranches_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vnd(amount: &str) -> pb::Money {
        pb::Money {
            amount: amount.to_owned(),
            currency: "VND".to_owned(),
        }
    }

    #[test]
    fn fees_in_all_add_the_two_kinds_exactly() {
        let sum = money_sum(Some(&vnd("20000")), Some(&vnd("100000")));
        assert_eq!(sum, Some(vnd("120000")));
        let usd = pb::Money {
            amount: "1.50".to_owned(),
            currency: "USD".to_owned(),
        };
        assert_eq!(money_sum(Some(&vnd("1")), Some(&usd)), None);
        assert_eq!(money_sum(Some(&vnd("1")), None), None);
        assert_eq!(money_sum(Some(&vnd("x")), Some(&vnd("1"))), None);
    }

    #[test]
    fn every_rule_figure_names_its_unit() {
        let rules = pb::ProductRules {
            currency: "VND".to_owned(),
            arrears_tolerance_days: 7,
            grace_on_principal: 1,
            ..pb::ProductRules::default()
        };
        assert_eq!(tolerance_text(&rules), "7 days late, or 0 VND overdue");
        assert_eq!(
            grace_text(&rules),
            "1 installment on principal, 0 installments on interest"
        );
        let rules = pb::ProductRules {
            arrears_tolerance_amount: "15000".to_owned(),
            ..rules
        };
        assert_eq!(tolerance_text(&rules), "7 days late, or 15,000 VND overdue");
    }
}
