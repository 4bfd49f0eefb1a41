//! The loan product catalogue: versions, previews, fees, and what a product
//! does not allow. Every expected figure is worked out by hand beside it.

use mfi_ledger::pb;
use tonic::Code;

use crate::support::{
    App, amount, application, assert_refused, books, create_product, ctx, product_rules, products,
    spawn_app, vnd,
};

/// Flat, weekly, 26% a year, 4 installments, 1 to 10,000,000 VND.
fn general() -> pb::ProductRules {
    product_rules(
        pb::InterestMethod::Flat,
        pb::RepaymentFrequency::Weekly,
        "26",
        4,
    )
}

/// A product with ranges: 500,000 to 5,000,000 VND, 20% to 30%, 4 to 8
/// weekly installments (4 by default), one tranche.
fn ranged() -> pb::ProductRules {
    pb::ProductRules {
        principal_min: "500000".into(),
        principal_max: "5000000".into(),
        rate_min_percent: "20".into(),
        rate_max_percent: "30".into(),
        installments_min: 4,
        installments_max: 8,
        installments_default: 4,
        ..general()
    }
}

/// Declining balance, monthly, 12% a year (1% a month), 3 installments, with
/// a 2% disbursement fee deducted from the cash paid out and a fixed 15,000
/// insurance fee due with the first installment.
fn housing() -> pb::ProductRules {
    pb::ProductRules {
        fees: vec![
            pb::Fee {
                code: "disbursement".into(),
                amount: Some(pb::fee::Amount::PercentOfPrincipal("2".into())),
                collection: pb::FeeCollection::AtDisbursement as i32,
            },
            pb::Fee {
                code: "insurance".into(),
                amount: Some(pb::fee::Amount::Fixed("15000".into())),
                collection: pb::FeeCollection::WithFirstInstallment as i32,
            },
        ],
        ..product_rules(
            pb::InterestMethod::DecliningBalance,
            pb::RepaymentFrequency::Monthly,
            "12",
            3,
        )
    }
}

async fn get_product(app: &App, id: &str, version: u32) -> Result<pb::Product, tonic::Status> {
    products(app)
        .await
        .get_product(pb::GetProductRequest {
            product_id: id.into(),
            version,
        })
        .await
        .map(|r| r.into_inner().product.unwrap())
}

async fn list_products(app: &App) -> Vec<pb::Product> {
    products(app)
        .await
        .list_products(pb::ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products
}

async fn preview(
    app: &App,
    request: pb::PreviewScheduleRequest,
) -> Result<pb::PreviewScheduleResponse, tonic::Status> {
    products(app)
        .await
        .preview_schedule(request)
        .await
        .map(|r| r.into_inner())
}

/// (due date, principal, interest, fee, total, balance after) of each installment.
fn rows(schedule: &[pb::Installment]) -> Vec<(String, String, String, String, String, String)> {
    schedule
        .iter()
        .map(|i| {
            (
                i.due_date.clone(),
                amount(&i.principal).to_owned(),
                amount(&i.interest).to_owned(),
                amount(&i.fee).to_owned(),
                amount(&i.total).to_owned(),
                i.balance_after
                    .as_ref()
                    .map(|m| m.amount.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn row(
    due: &str,
    principal: &str,
    interest: &str,
    fee: &str,
    total: &str,
    after: &str,
) -> (String, String, String, String, String, String) {
    (
        due.into(),
        principal.into(),
        interest.into(),
        fee.into(),
        total.into(),
        after.into(),
    )
}

#[tokio::test]
async fn products_are_created_read_and_listed() {
    let app = spawn_app().await;
    let mut catalogue = products(&app).await;
    let created = catalogue
        .create_product(pb::CreateProductRequest {
            context: ctx("product-general"),
            product_id: "GENERAL".into(),
            rules: Some(general()),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    let receipt = created.receipt.unwrap();
    assert_eq!(receipt.sequence, crate::support::ACCESS_ENTRIES + 1);
    assert_eq!(receipt.effective_date, "2024-01-01");

    let product = get_product(&app, "GENERAL", 0).await.unwrap();
    assert_eq!(product.product_id, "GENERAL");
    assert_eq!(product.version, 1);
    assert_eq!(product.versions, 1);
    assert_eq!(product.effective_from, "2024-01-01");
    let rules = product.rules.unwrap();
    assert_eq!(rules.name, "Vốn sản xuất");
    assert_eq!(rules.currency, "VND");
    assert_eq!(rules.principal_min, "1");
    assert_eq!(rules.principal_max, "10000000");
    assert_eq!(rules.rate_min_percent, "26");
    assert_eq!(rules.rate_max_percent, "26");
    assert_eq!(rules.interest_method, pb::InterestMethod::Flat as i32);
    assert_eq!(
        rules.repayment_frequency,
        pb::RepaymentFrequency::Weekly as i32
    );
    // Unset maximum and default mean the minimum; unset tranches mean one;
    // unset rounding means one đồng; unset order means the usual one.
    assert_eq!(
        (
            rules.installments_min,
            rules.installments_max,
            rules.installments_default
        ),
        (4, 4, 4)
    );
    assert_eq!(rules.tranches_max, 1);
    assert_eq!(rules.rounding_multiple, "1");
    assert_eq!(
        rules.allocation_order,
        vec![
            pb::AllocationPart::Penalties as i32,
            pb::AllocationPart::Fees as i32,
            pb::AllocationPart::Interest as i32,
            pb::AllocationPart::Principal as i32,
        ]
    );
    assert_eq!(rules.arrears_tolerance_amount, "0");

    create_product(&app, "AGRI", housing()).await;
    let listed = list_products(&app).await;
    let ids: Vec<(&str, u32)> = listed
        .iter()
        .map(|p| (p.product_id.as_str(), p.version))
        .collect();
    assert_eq!(ids, vec![("AGRI", 1), ("GENERAL", 1)]);
    assert_eq!(listed[0].rules.as_ref().unwrap().fees.len(), 2);

    // Refusals: an existing id, an unknown product, identical rules, an
    // unknown version. None writes anything.
    let mut app = app;
    let before = books(&mut app, &[]).await;
    let status = catalogue
        .create_product(pb::CreateProductRequest {
            context: ctx("product-general-again"),
            product_id: "GENERAL".into(),
            rules: Some(ranged()),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::AlreadyExists, "product_id");
    let status = catalogue
        .update_product(pb::UpdateProductRequest {
            context: ctx("update-missing"),
            product_id: "MISSING".into(),
            rules: Some(general()),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::NotFound, "product_id");
    let status = catalogue
        .update_product(pb::UpdateProductRequest {
            context: ctx("update-same"),
            product_id: "GENERAL".into(),
            rules: Some(general()),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "rules");
    let status = get_product(&app, "GENERAL", 2).await.unwrap_err();
    assert_refused(&status, Code::NotFound, "version");
    let status = get_product(&app, "MISSING", 0).await.unwrap_err();
    assert_refused(&status, Code::NotFound, "product_id");
    assert_eq!(books(&mut app, &[]).await, before);
    assert_eq!(get_product(&app, "GENERAL", 0).await.unwrap().versions, 1);
    assert_eq!(list_products(&app).await, listed);
}

#[tokio::test]
async fn a_new_version_applies_to_new_loans_and_old_loans_keep_theirs() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    create_product(&app, "GENERAL", general()).await;
    let first = app
        .disburse_under(
            "loan-v1",
            "TB-0001",
            application("GENERAL", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    assert_eq!(
        (first.product_id.as_str(), first.product_version),
        ("GENERAL", 1)
    );

    // Version 2: twice the rate, and 7 days' tolerance before arrears.
    let updated = products(&app)
        .await
        .update_product(pb::UpdateProductRequest {
            context: ctx("general-v2"),
            product_id: "GENERAL".into(),
            rules: Some(pb::ProductRules {
                rate_min_percent: "52".into(),
                rate_max_percent: "52".into(),
                arrears_tolerance_days: 7,
                ..general()
            }),
            effective_from: "2024-01-08".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    let second = app
        .disburse_under(
            "loan-v2",
            "TB-0002",
            application("GENERAL", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    assert_eq!(second.product_version, 2);

    // A loan is under the version in force on its date: one back-dated to
    // 5 January, entered after version 2 was defined, is under version 1.
    app.member("TB-0003").await;
    let back_dated = app
        .disburse_under(
            "loan-back-dated",
            "TB-0003",
            application("GENERAL", "1000000", "2024-01-12"),
            "2024-01-05",
        )
        .await
        .unwrap();
    assert_eq!(back_dated.product_version, 1);
    // Before its first version applies, a product lends nothing.
    app.member("TB-0004").await;
    products(&app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx("product-later"),
            product_id: "LATER".into(),
            rules: Some(general()),
            effective_from: "2024-03-01".into(),
        })
        .await
        .unwrap();
    let before = books(&mut app, &[]).await;
    let status = app
        .disburse_under(
            "loan-too-early",
            "TB-0004",
            application("LATER", "1000000", "2024-02-08"),
            "2024-02-01",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "product_id");
    assert!(
        status.message().contains("applies only from 2024-03-01"),
        "{}",
        status.message()
    );
    // A version cannot apply from before the latest one.
    let status = products(&app)
        .await
        .update_product(pb::UpdateProductRequest {
            context: ctx("general-v3-too-early"),
            product_id: "GENERAL".into(),
            rules: Some(pb::ProductRules {
                rate_min_percent: "30".into(),
                rate_max_percent: "30".into(),
                ..general()
            }),
            effective_from: "2024-01-07".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "effective_from");
    assert_eq!(books(&mut app, &[]).await, before);

    // Under version 1: 1,000,000 x 26% / 52 = 5,000 interest a week,
    // 1,000,000 / 4 = 250,000 principal: 255,000 a week.
    let loan = app.loan(&first.loan_id, "2024-01-20").await;
    assert_eq!(
        (loan.product_id.as_str(), loan.product_version),
        ("GENERAL", 1)
    );
    assert_eq!(
        loan.terms.as_ref().unwrap().annual_interest_rate_percent,
        "26"
    );
    for installment in &loan.schedule {
        assert_eq!(amount(&installment.principal), "250000");
        assert_eq!(amount(&installment.interest), "5000");
        assert_eq!(amount(&installment.total), "255000");
    }
    // Version 1 has no tolerance: 5 days late (due 15 January, as of the
    // 20th) is in arrears.
    assert!(loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 5);

    // Under version 2: 1,000,000 x 52% / 52 = 10,000 a week; 5 days late is
    // within its 7 days' tolerance.
    let loan = app.loan(&second.loan_id, "2024-01-20").await;
    assert_eq!(loan.product_version, 2);
    assert_eq!(
        loan.terms.as_ref().unwrap().annual_interest_rate_percent,
        "52"
    );
    for installment in &loan.schedule {
        assert_eq!(amount(&installment.interest), "10000");
        assert_eq!(amount(&installment.total), "260000");
    }
    assert!(!loan.in_arrears);
    assert_eq!(loan.days_in_arrears, 0);
    assert_eq!(amount(&loan.principal_overdue), "250000");

    // Both versions stay readable; the catalogue lists the latest.
    let v1 = get_product(&app, "GENERAL", 1).await.unwrap();
    assert_eq!(v1.rules.unwrap().rate_min_percent, "26");
    assert_eq!(v1.versions, 2);
    let latest = get_product(&app, "GENERAL", 0).await.unwrap();
    assert_eq!((latest.version, latest.versions), (2, 2));
    assert_eq!(latest.rules.unwrap().rate_min_percent, "52");
    let listed = list_products(&app).await;
    let versions: Vec<(&str, u32)> = listed
        .iter()
        .map(|p| (p.product_id.as_str(), p.version))
        .collect();
    assert_eq!(versions, vec![("GENERAL", 2), ("LATER", 1)]);
}

#[tokio::test]
async fn preview_is_the_schedule_the_disbursement_records_and_writes_nothing() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    create_product(&app, "HOUSING", housing()).await;
    let head = books(&mut app, &["cash:TB"]).await;
    let shown = preview(
        &app,
        pb::PreviewScheduleRequest {
            product_id: "HOUSING".into(),
            version: 0,
            principal: vnd("3000000"),
            annual_interest_rate_percent: String::new(),
            installment_count: 0,
            disbursed_on: "2024-01-15".into(),
            first_repayment_date: "2024-02-15".into(),
        },
    )
    .await
    .unwrap();
    // Nothing written.
    assert_eq!(books(&mut app, &["cash:TB"]).await, head);

    // Worked by hand: 3,000,000 at 1% a month over 3 months.
    // Annuity 3,000,000 x 0.01 / (1 - 1.01^-3) = 1,020,066.33 -> 1,020,066.
    // 1: interest 3,000,000 x 1% = 30,000; principal 990,066; left 2,009,934;
    //    plus the 15,000 insurance fee: 1,035,066.
    // 2: interest 20,099.34 -> 20,099; principal 999,967; left 1,009,967.
    // 3: interest 10,099.67 -> 10,100; principal the rest 1,009,967; 1,020,067.
    assert_eq!((shown.product_id.as_str(), shown.version), ("HOUSING", 1));
    assert_eq!(
        rows(&shown.schedule),
        vec![
            row(
                "2024-02-15",
                "990066",
                "30000",
                "15000",
                "1035066",
                "2009934"
            ),
            row("2024-03-15", "999967", "20099", "0", "1020066", "1009967"),
            row("2024-04-15", "1009967", "10100", "0", "1020067", "0"),
        ]
    );
    assert_eq!(amount(&shown.total_principal), "3000000");
    // 30,000 + 20,099 + 10,100 = 60,199.
    assert_eq!(amount(&shown.total_interest), "60199");
    assert_eq!(amount(&shown.total_fees), "15000");
    // 3,000,000 + 60,199 + 15,000.
    assert_eq!(amount(&shown.total_repayment), "3075199");
    // 2% of 3,000,000 = 60,000 deducted: 2,940,000 paid out.
    assert_eq!(amount(&shown.fees_at_disbursement), "60000");
    assert_eq!(amount(&shown.paid_out), "2940000");

    // The disbursement records exactly that schedule.
    let disbursed = app
        .disburse_under(
            "loan-1",
            "TB-0001",
            application("HOUSING", "3000000", "2024-02-15"),
            "2024-01-15",
        )
        .await
        .unwrap();
    assert_eq!(disbursed.schedule, shown.schedule);
    assert_eq!(disbursed.fees_at_disbursement, shown.fees_at_disbursement);
    assert_eq!(disbursed.paid_out, shown.paid_out);
    let loan = app.loan(&disbursed.loan_id, "2024-01-15").await;
    assert_eq!(loan.schedule.len(), shown.schedule.len());
    for (kept, previewed) in loan.schedule.iter().zip(&shown.schedule) {
        assert_eq!(kept.number, previewed.number);
        assert_eq!(kept.due_date, previewed.due_date);
        assert_eq!(kept.principal, previewed.principal);
        assert_eq!(kept.interest, previewed.interest);
        assert_eq!(kept.fee, previewed.fee);
        assert_eq!(kept.total, previewed.total);
    }
    assert_eq!(amount(&loan.principal_outstanding), "3000000");

    // The books: loan 3,000,000; cash out 2,940,000; fee income 60,000.
    assert_eq!(app.balance("loan:TB-0001/L1").await, "3000000");
    assert_eq!(app.balance("cash:TB").await, "-2940000");
    assert_eq!(app.balance("fee-income:TB/disbursement").await, "60000");
    assert_eq!(app.balance("fee-income:TB/insurance").await, "0");

    // The first installment collects the insurance fee into its own account.
    let paid = app
        .repay("pay-1", "TB-0001/L1", "1035066", "2024-02-15")
        .await
        .unwrap();
    let allocation = paid.allocation.unwrap();
    assert_eq!(amount(&allocation.fees_paid), "15000");
    assert_eq!(amount(&allocation.interest_paid), "30000");
    assert_eq!(amount(&allocation.principal_paid), "990066");
    assert_eq!(app.balance("fee-income:TB/insurance").await, "15000");
    assert_eq!(app.balance("interest-income:TB").await, "30000");
    // -2,940,000 + 1,035,066.
    assert_eq!(app.balance("cash:TB").await, "-1904934");
}

#[tokio::test]
async fn preview_and_disbursement_in_a_two_decimal_currency() {
    let mut app = spawn_app().await;
    app.other_branch("HCM", "USD").await;
    let rules = pb::ProductRules {
        currency: "USD".into(),
        principal_min: "100.00".into(),
        principal_max: "5000.00".into(),
        ..product_rules(
            pb::InterestMethod::DecliningBalance,
            pb::RepaymentFrequency::Weekly,
            "52",
            2,
        )
    };
    create_product(&app, "USD-LOAN", rules).await;
    let usd = |text: &str| {
        Some(pb::Money {
            amount: text.into(),
            currency: "USD".into(),
        })
    };
    let head = books(&mut app, &["cash:HCM"]).await;
    let shown = preview(
        &app,
        pb::PreviewScheduleRequest {
            product_id: "USD-LOAN".into(),
            principal: usd("1000.00"),
            disbursed_on: "2024-01-08".into(),
            first_repayment_date: "2024-01-15".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(books(&mut app, &["cash:HCM"]).await, head);
    // Worked by hand: 1,000.00 at 1% a week over 2 weeks.
    // Annuity 1,000 x 0.01 / (1 - 1.01^-2) = 507.5124... -> 507.51.
    // 1: interest 10.00, principal 497.51, left 502.49.
    // 2: interest 5.0249 -> 5.02, principal 502.49, total 507.51.
    assert_eq!(
        rows(&shown.schedule),
        vec![
            row("2024-01-15", "497.51", "10.00", "0.00", "507.51", "502.49"),
            row("2024-01-22", "502.49", "5.02", "0.00", "507.51", "0.00"),
        ]
    );
    assert_eq!(
        shown.total_interest,
        usd("15.02"),
        "amounts carry their currency"
    );
    assert_eq!(amount(&shown.total_repayment), "1015.02");
    assert_eq!(amount(&shown.paid_out), "1000.00");

    let disbursed = app
        .disburse_under(
            "loan-usd",
            "HCM-0001",
            pb::LoanApplication {
                product_id: "USD-LOAN".into(),
                principal: usd("1000.00"),
                first_repayment_date: "2024-01-15".into(),
                ..Default::default()
            },
            "2024-01-08",
        )
        .await
        .unwrap();
    assert_eq!(disbursed.schedule, shown.schedule);
    assert_eq!(app.balance("cash:HCM").await, "-1000.00");
    assert_eq!(
        app.balance(&format!("loan:{}", disbursed.loan_id)).await,
        "1000.00"
    );
    let paid = app
        .branch
        .record_repayment(pb::RecordRepaymentRequest {
            context: ctx("pay-usd"),
            loan_id: disbursed.loan_id.clone(),
            amount: usd("507.51"),
            effective_date: "2024-01-15".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.interest_paid, usd("10.00"));
    assert_eq!(paid.principal_outstanding, usd("502.49"));
}

#[tokio::test]
async fn invalid_product_rules_are_refused_naming_the_rule() {
    let mut app = spawn_app().await;
    create_product(&app, "GENERAL", general()).await;
    let before = books(&mut app, &[]).await;
    let listed = list_products(&app).await;
    let fee = |code: &str, amount: pb::fee::Amount| pb::Fee {
        code: code.into(),
        amount: Some(amount),
        collection: pb::FeeCollection::AtDisbursement as i32,
    };
    let cases: Vec<(pb::ProductRules, &str)> = vec![
        (
            pb::ProductRules {
                principal_min: "1000".into(),
                principal_max: "500".into(),
                ..general()
            },
            "rules.principal_max",
        ),
        (
            pb::ProductRules {
                principal_min: "0".into(),
                ..general()
            },
            "rules.principal_min",
        ),
        (
            pb::ProductRules {
                principal_min: "1000.5".into(),
                ..general()
            },
            "rules.principal_min",
        ),
        (
            pb::ProductRules {
                rate_max_percent: "101".into(),
                ..general()
            },
            "rules.rate_max",
        ),
        (
            pb::ProductRules {
                rate_min_percent: "30".into(),
                rate_max_percent: "20".into(),
                ..general()
            },
            "rules.rate_max",
        ),
        (
            pb::ProductRules {
                installments_min: 0,
                ..general()
            },
            "rules.installments_min",
        ),
        (
            pb::ProductRules {
                installments_min: 4,
                installments_max: 2,
                ..general()
            },
            "rules.installments_max",
        ),
        (
            pb::ProductRules {
                installments_min: 4,
                installments_max: 8,
                installments_default: 9,
                ..general()
            },
            "rules.installments_default",
        ),
        (
            pb::ProductRules {
                grace_on_principal: 4,
                ..general()
            },
            "rules.grace_on_principal",
        ),
        (
            pb::ProductRules {
                tranches_max: 11,
                ..general()
            },
            "rules.tranches_max",
        ),
        (
            pb::ProductRules {
                fees: vec![
                    fee("disbursement", pb::fee::Amount::Fixed("1000".into())),
                    fee("disbursement", pb::fee::Amount::Fixed("2000".into())),
                ],
                ..general()
            },
            "rules.fees[1].code",
        ),
        (
            pb::ProductRules {
                fees: vec![fee(
                    "disbursement",
                    pb::fee::Amount::PercentOfPrincipal("150".into()),
                )],
                ..general()
            },
            "rules.fees[0].percent_of_principal",
        ),
        (
            pb::ProductRules {
                interest_method: pb::InterestMethod::Unspecified as i32,
                ..general()
            },
            "rules.interest_method",
        ),
        (
            pb::ProductRules {
                repayment_frequency: pb::RepaymentFrequency::Unspecified as i32,
                ..general()
            },
            "rules.repayment_frequency",
        ),
        (
            pb::ProductRules {
                allocation_order: vec![
                    pb::AllocationPart::Interest as i32,
                    pb::AllocationPart::Interest as i32,
                    pb::AllocationPart::Fees as i32,
                    pb::AllocationPart::Principal as i32,
                ],
                ..general()
            },
            "rules.allocation_order",
        ),
        (
            pb::ProductRules {
                rounding_multiple: "0.5".into(),
                ..general()
            },
            "rules.rounding_multiple",
        ),
        (
            pb::ProductRules {
                name: String::new(),
                ..general()
            },
            "rules.name",
        ),
        (
            pb::ProductRules {
                currency: "XYZ".into(),
                ..general()
            },
            "rules.currency",
        ),
    ];
    let mut catalogue = products(&app).await;
    for (i, (rules, field)) in cases.into_iter().enumerate() {
        let status = catalogue
            .create_product(pb::CreateProductRequest {
                context: ctx(&format!("bad-create-{i}")),
                product_id: format!("BAD-{i}"),
                rules: Some(rules.clone()),
                effective_from: "2024-01-01".into(),
            })
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, field);
        // The same rules as a new version of an existing product.
        let status = catalogue
            .update_product(pb::UpdateProductRequest {
                context: ctx(&format!("bad-update-{i}")),
                product_id: "GENERAL".into(),
                rules: Some(rules),
                effective_from: "2024-01-01".into(),
            })
            .await
            .unwrap_err();
        assert_refused(&status, Code::InvalidArgument, field);
    }
    assert_eq!(books(&mut app, &[]).await, before);
    assert_eq!(list_products(&app).await, listed);
}

#[tokio::test]
async fn applications_outside_the_product_are_refused_and_write_nothing() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.deposit("dep-1", "TB-0001/C1", "100000", "2024-01-05")
        .await
        .unwrap();
    create_product(&app, "RANGED", ranged()).await;
    create_product(
        &app,
        "DOLLARS",
        pb::ProductRules {
            currency: "USD".into(),
            ..ranged()
        },
    )
    .await;
    let accounts = ["cash:TB", "savings:TB-0001/C1"];
    let before = books(&mut app, &accounts).await;
    let ok = || pb::LoanApplication {
        product_id: "RANGED".into(),
        principal: vnd("1000000"),
        annual_interest_rate_percent: "24".into(),
        installment_count: 6,
        first_repayment_date: "2024-01-15".into(),
        ..Default::default()
    };
    let cases: Vec<(pb::LoanApplication, Code, &str)> = vec![
        (
            pb::LoanApplication {
                principal: vnd("499999"),
                ..ok()
            },
            Code::InvalidArgument,
            "principal",
        ),
        (
            pb::LoanApplication {
                principal: vnd("5000001"),
                ..ok()
            },
            Code::InvalidArgument,
            "principal",
        ),
        (
            pb::LoanApplication {
                approved_principal: "6000000".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "approved_principal",
        ),
        // One tranche only: the approved principal is the principal.
        (
            pb::LoanApplication {
                approved_principal: "2000000".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "approved_principal",
        ),
        (
            pb::LoanApplication {
                principal: vnd("2000000"),
                approved_principal: "1000000".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "principal",
        ),
        (
            pb::LoanApplication {
                annual_interest_rate_percent: "30.01".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "annual_interest_rate_percent",
        ),
        (
            pb::LoanApplication {
                annual_interest_rate_percent: "19.99".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "annual_interest_rate_percent",
        ),
        // The product has a range of rates: the application must name one.
        (
            pb::LoanApplication {
                annual_interest_rate_percent: String::new(),
                ..ok()
            },
            Code::InvalidArgument,
            "annual_interest_rate_percent",
        ),
        (
            pb::LoanApplication {
                installment_count: 9,
                ..ok()
            },
            Code::InvalidArgument,
            "installment_count",
        ),
        (
            pb::LoanApplication {
                installment_count: 3,
                ..ok()
            },
            Code::InvalidArgument,
            "installment_count",
        ),
        (
            pb::LoanApplication {
                product_id: "MISSING".into(),
                ..ok()
            },
            Code::NotFound,
            "product_id",
        ),
        // A product lending in dollars in a branch keeping its books in đồng.
        (
            pb::LoanApplication {
                product_id: "DOLLARS".into(),
                ..ok()
            },
            Code::FailedPrecondition,
            "product_id",
        ),
    ];
    for (i, (application, code, field)) in cases.into_iter().enumerate() {
        let status = app
            .disburse_under(
                &format!("bad-{i}"),
                "TB-0001",
                application.clone(),
                "2024-01-08",
            )
            .await
            .unwrap_err();
        assert_refused(&status, code, field);
        // A preview of the same application is refused the same way
        // (except for the branch's currency: a preview names no branch).
        if application.product_id != "DOLLARS" && application.approved_principal.is_empty() {
            let status = preview(
                &app,
                pb::PreviewScheduleRequest {
                    product_id: application.product_id.clone(),
                    version: 0,
                    principal: application.principal.clone(),
                    annual_interest_rate_percent: application.annual_interest_rate_percent.clone(),
                    installment_count: application.installment_count,
                    disbursed_on: "2024-01-08".into(),
                    first_repayment_date: application.first_repayment_date.clone(),
                },
            )
            .await
            .unwrap_err();
            assert_refused(&status, code, field);
        }
    }
    let status = preview(
        &app,
        pb::PreviewScheduleRequest {
            product_id: "RANGED".into(),
            version: 2,
            principal: vnd("1000000"),
            annual_interest_rate_percent: "24".into(),
            installment_count: 6,
            disbursed_on: "2024-01-08".into(),
            first_repayment_date: "2024-01-15".into(),
        },
    )
    .await
    .unwrap_err();
    assert_refused(&status, Code::NotFound, "version");
    assert_eq!(books(&mut app, &accounts).await, before);
    let member = app
        .audit
        .get_member(pb::GetMemberRequest {
            as_of_sequence: 0,
            member_id: "TB-0001".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(member.loans.is_empty());
    // The good application goes through.
    let loan = app
        .disburse_under("good", "TB-0001", ok(), "2024-01-08")
        .await
        .unwrap();
    assert_eq!(loan.schedule.len(), 6);
    assert_eq!(app.balance("cash:TB").await, "-900000");
}

#[tokio::test]
async fn an_application_in_another_currency_is_refused() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    create_product(&app, "GENERAL", general()).await;
    let before = books(&mut app, &["cash:TB"]).await;
    let status = app
        .disburse_under(
            "usd-into-vnd",
            "TB-0001",
            pb::LoanApplication {
                principal: Some(pb::Money {
                    amount: "5000000".into(),
                    currency: "USD".into(),
                }),
                ..application("GENERAL", "1", "2024-01-15")
            },
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "principal.currency");
    assert_eq!(books(&mut app, &["cash:TB"]).await, before);
}

#[tokio::test]
async fn two_fees_with_the_first_installment_are_refused() {
    let app = spawn_app().await;
    let with_first = |code: &str| pb::Fee {
        code: code.into(),
        amount: Some(pb::fee::Amount::Fixed("10000".into())),
        collection: pb::FeeCollection::WithFirstInstallment as i32,
    };
    let status = products(&app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx("two-fees"),
            product_id: "TWO-FEES".into(),
            rules: Some(pb::ProductRules {
                fees: vec![with_first("insurance"), with_first("training")],
                ..general()
            }),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rules.fees[1]");
}

#[tokio::test]
async fn too_many_installments_names_installments_max() {
    let app = spawn_app().await;
    let status = products(&app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx("too-long"),
            product_id: "TOO-LONG".into(),
            rules: Some(pb::ProductRules {
                installments_min: 4,
                installments_max: 600,
                ..general()
            }),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rules.installments_max");
}

#[tokio::test]
async fn an_amount_without_a_currency_is_in_the_branchs_currency() {
    let mut app = spawn_app().await;
    app.other_branch("HCM", "USD").await;
    let deposited = app
        .branch
        .deposit_savings(pb::DepositSavingsRequest {
            context: ctx("deposit-no-currency"),
            account_id: "HCM-0001/C1".into(),
            amount: Some(pb::Money {
                amount: "10".into(),
                currency: String::new(),
            }),
            effective_date: "2024-01-05".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        deposited.balance,
        Some(pb::Money {
            amount: "10.00".into(),
            currency: "USD".into(),
        })
    );
}

/// Reproduces a product defined with tens of thousands of fees: it was
/// accepted, and its first disbursement (which copies the fee list into the
/// entry twice) made an entry too large for the journal, which stopped all
/// writes. The fee list is bounded: such a product is refused when it is
/// defined, naming `rules.fees`, and nothing is written.
#[tokio::test]
async fn a_product_with_very_many_fees_is_refused_naming_fees() {
    let mut app = spawn_app().await;
    let fees = (0..5_000)
        .map(|n| pb::Fee {
            code: format!("fee-{n}"),
            amount: Some(pb::fee::Amount::Fixed("1".into())),
            collection: pb::FeeCollection::AtDisbursement as i32,
        })
        .collect();
    let before = app.last_sequence().await;
    let status = products(&app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx("many-fees"),
            product_id: "MANY-FEES".into(),
            rules: Some(pb::ProductRules { fees, ..general() }),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rules.fees");
    assert!(
        status.message().contains("5000 fees"),
        "{}",
        status.message()
    );
    assert_eq!(app.last_sequence().await, before, "nothing written");
    assert_eq!(
        get_product(&app, "MANY-FEES", 0).await.unwrap_err().code(),
        Code::NotFound
    );
}

/// Reproduces `GetProduct` deriving the rounding decimal places from the
/// multiple: a USD product rounded to 2 places with a multiple of 1 came
/// back with 0 places. The catalogue now shows the places it was given,
/// and leaves them unset when they were (the currency's).
#[tokio::test]
async fn get_product_returns_the_rounding_places_it_was_created_with() {
    let app = spawn_app().await;
    let usd = pb::ProductRules {
        currency: "USD".into(),
        principal_min: "100".into(),
        principal_max: "5000".into(),
        rounding_decimal_places: Some(2),
        rounding_multiple: "1".into(),
        ..general()
    };
    create_product(&app, "USD-LOAN", usd).await;
    let rules = get_product(&app, "USD-LOAN", 0)
        .await
        .unwrap()
        .rules
        .unwrap();
    assert_eq!(rules.rounding_decimal_places, Some(2));
    assert_eq!(rules.rounding_multiple, "1");

    create_product(&app, "GENERAL", general()).await;
    let rules = get_product(&app, "GENERAL", 0)
        .await
        .unwrap()
        .rules
        .unwrap();
    assert_eq!(rules.rounding_decimal_places, None, "as given: unset");
    assert_eq!(rules.rounding_multiple, "1");
}

/// Reproduces a `rounding_multiple` larger than an installment: 1,000,000
/// over 10 weeks rounded to 1,000,000 gave nine installments of 0 and one
/// of 1,000,000 (100,000 and 5,000 a week round half-even to 0). A product
/// whose largest loan would round so is refused; under a product whose
/// larger loans are fine, a smaller loan's preview and disbursement are.
#[tokio::test]
async fn a_multiple_that_rounds_installments_to_zero_is_refused() {
    let mut app = spawn_app().await;
    let coarse = |principal_max: &str| pb::ProductRules {
        principal_max: principal_max.into(),
        rounding_multiple: "1000000".into(),
        installments_min: 10,
        ..general()
    };
    let status = products(&app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx("coarse-small"),
            product_id: "COARSE-SMALL".into(),
            rules: Some(coarse("1000000")),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rules.rounding_multiple");

    // 100,000,000 over 10 weeks is 10,000,000 a week: a fine multiple of it.
    create_product(&app, "COARSE", coarse("100000000")).await;
    let status = preview(
        &app,
        pb::PreviewScheduleRequest {
            product_id: "COARSE".into(),
            principal: vnd("1000000"),
            disbursed_on: "2024-01-08".into(),
            first_repayment_date: "2024-01-15".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rounding_multiple");
    app.branch_tb().await;
    app.member("TB-0001").await;
    let before = app.last_sequence().await;
    let status = app
        .disburse_under(
            "coarse-loan",
            "TB-0001",
            application("COARSE", "1000000", "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "rounding_multiple");
    assert_eq!(app.last_sequence().await, before, "nothing written");
    app.disburse_under(
        "fine-loan",
        "TB-0001",
        application("COARSE", "100000000", "2024-01-15"),
        "2024-01-08",
    )
    .await
    .unwrap();
}
