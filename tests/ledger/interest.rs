//! Savings interest over gRPC, against a worked example computed by hand
//! with the formula of the State Bank of Vietnam's Circular 14/2017/TT-NHNN
//! (interest = Σ actual balance × days the balance was kept × yearly rate
//! / 365), as `domain::savings_interest` cites it:
//!
//! Voluntary product at 5% a year, posted monthly, whole dong half-even.
//! TB-0001/V1 receives 2,000,000 on 2024-02-20.
//! - February 2024 (a leap year; 29 days): the balance is kept 10 days
//!   (20 to 29 February): 2,000,000 × 10 × 5% / 365 = 2,739.726… → 2,740,
//!   credited on 29 February.
//! - March: 1,500,000 in on 11 March, 700,000 out on 21 March. Balances
//!   2,002,740 for 10 days, 3,502,740 for 10 days, 2,802,740 for 11 days:
//!   (20,027,400 + 35,027,400 + 30,830,140) × 5% / 365 = 11,765.060… → 11,765
//!   (checked with exact fractions: 85,884,940 × 5 / 36,500).

use mfi_ledger::pb;
use mfi_ledger::pb::product_service_client::ProductServiceClient;
use tonic::Code;

use crate::support::{App, amount, connect, ctx, spawn_app, vnd};

async fn post(
    app: &mut App,
    request_id: &str,
    period_end: &str,
) -> Result<pb::PostSavingsInterestResponse, tonic::Status> {
    app.branch
        .post_savings_interest(pb::PostSavingsInterestRequest {
            context: ctx(request_id),
            branch_id: "TB".into(),
            period_end: period_end.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A savings product's definition at `rate` percent, posted monthly in
/// whole dong, half-even.
fn product(
    request_id: &str,
    id: &str,
    kind: pb::SavingsKind,
    rate: &str,
    from: &str,
) -> pb::DefineSavingsProductRequest {
    pb::DefineSavingsProductRequest {
        context: ctx(request_id),
        product_id: id.into(),
        name: "Tiết kiệm tự nguyện".into(),
        kind: kind as i32,
        interest: Some(pb::SavingsInterestRules {
            annual_rate_percent: rate.into(),
            posting: pb::PostingFrequency::Monthly as i32,
            rounding_multiple: "1".into(),
            rounding_mode: pb::RoundingMode::HalfEven as i32,
        }),
        effective_from: from.into(),
    }
}

async fn voluntary_saver() -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("open-v1"),
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Voluntary as i32,
            opened_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
    let mut products = ProductServiceClient::new(connect(app.address, &app.token).await);
    let defined = products
        .define_savings_product(product(
            "define-vol",
            "SAVE-VOL",
            pb::SavingsKind::Voluntary,
            "5",
            "2024-01-01",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defined.version, 1);
    app.deposit("in-0220", "TB-0001/V1", "2000000", "2024-02-20")
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn interest_is_the_worked_example_posted_once_per_period() {
    let mut app = voluntary_saver().await;
    let february = post(&mut app, "interest-2024-02", "2024-02-29")
        .await
        .unwrap();
    assert_eq!(february.receipt.unwrap().effective_date, "2024-02-29");
    let credits: Vec<(&str, &str)> = february
        .credits
        .iter()
        .map(|c| (c.account_id.as_str(), amount(&c.amount)))
        .collect();
    assert_eq!(credits, vec![("TB-0001/V1", "2740")]);
    assert_eq!(amount(&february.total), "2740");

    app.deposit("in-0311", "TB-0001/V1", "1500000", "2024-03-11")
        .await
        .unwrap();
    app.branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("out-0321"),
            account_id: "TB-0001/V1".into(),
            amount: vnd("700000"),
            effective_date: "2024-03-21".into(),
        })
        .await
        .unwrap();
    let march = post(&mut app, "interest-2024-03", "2024-03-31")
        .await
        .unwrap();
    assert_eq!(amount(&march.credits[0].amount), "11765");
    assert_eq!(app.balance("savings:TB-0001/V1").await, "2814505");
    assert_eq!(app.balance("interest-expense:TB").await, "14505");

    // Posting a period twice, or a day that ends no period, is refused;
    // so is a movement dated into a posted period. Nothing is written.
    let head = app.last_sequence().await;
    let twice = post(&mut app, "interest-2024-03-again", "2024-03-31")
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert!(
        twice.message().contains("already posted"),
        "{}",
        twice.message()
    );
    let mid_month = post(&mut app, "interest-mid", "2024-04-15")
        .await
        .unwrap_err();
    assert_eq!(mid_month.code(), Code::InvalidArgument);
    assert!(
        mid_month.message().contains("period_end"),
        "{}",
        mid_month.message()
    );
    let late = app
        .deposit("late-in", "TB-0001/V1", "1000", "2024-03-30")
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains("interest"), "{}", late.message());
    let reversal = app
        .branch
        .reverse_entry(pb::ReverseEntryRequest {
            context: ctx("reverse-interest"),
            sequence: head,
            reason: "wrong rate".into(),
            effective_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reversal.code(), Code::FailedPrecondition);
    assert!(
        reversal.message().contains("savings interest"),
        "{}",
        reversal.message()
    );
    assert_eq!(app.last_sequence().await, head);
}

#[tokio::test]
async fn a_new_version_pays_its_rate_from_its_date() {
    let mut app = voluntary_saver().await;
    let mut products = ProductServiceClient::new(connect(app.address, &app.token).await);
    // From 25 February the rate is 7.3% (0.02% a day): 2,000,000 earns
    // 5 days (20–24 Feb) at 5% and 5 days (25–29 Feb) at 7.3%:
    // 2,000,000 × 5 × 5% / 365 + 2,000,000 × 5 × 7.3% / 365
    // = 1,369.863… + 2,000 = 3,369.863… → 3,370.
    products
        .define_savings_product(product(
            "vol-v2",
            "SAVE-VOL",
            pb::SavingsKind::Voluntary,
            "7.3",
            "2024-02-25",
        ))
        .await
        .unwrap();
    let february = post(&mut app, "interest-2024-02", "2024-02-29")
        .await
        .unwrap();
    assert_eq!(amount(&february.credits[0].amount), "3370");
    let listed = products
        .list_savings_products(pb::ListSavingsProductsRequest {})
        .await
        .unwrap()
        .into_inner();
    let versions: Vec<(u32, &str, &str)> = listed
        .versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.effective_from.as_str(),
                v.interest.as_ref().unwrap().annual_rate_percent.as_str(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![(1, "2024-01-01", "5"), (2, "2024-02-25", "7.3")]
    );
    // A second product of the same kind is refused: one product per kind.
    let second = products
        .define_savings_product(product(
            "vol-other",
            "SAVE-VOL-2",
            pb::SavingsKind::Voluntary,
            "6",
            "2024-01-01",
        ))
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert!(second.message().contains("kind"), "{}", second.message());
    let bad_rate = products
        .define_savings_product(product(
            "vol-bad",
            "SAVE-X",
            pb::SavingsKind::Compulsory,
            "120",
            "2024-01-01",
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_rate.code(), Code::InvalidArgument);
    assert!(
        bad_rate.message().contains("interest.annual_rate_percent"),
        "{}",
        bad_rate.message()
    );
}

/// The worked example with the books closed through 15 March in between:
/// the close folds the account's changes up to then out of memory into a
/// record read when asked, and after a restart March's interest, whose
/// period began before the close, reads them back and is the worked
/// example's 11,765. A reopening after a restart takes them back: a
/// withdrawal dated in the reopened days is checked against the balances
/// the close folded (2,002,740 on 10 March), and the balance as of a
/// closed date reads the same throughout. On the embedded store, `verify`
/// then finds the state cache, folds and all, what the journal makes.
#[tokio::test]
async fn the_interest_of_a_period_a_close_cut_reads_back_what_the_close_folded() {
    let mut app = voluntary_saver().await;
    post(&mut app, "interest-2024-02", "2024-02-29")
        .await
        .unwrap();
    app.deposit("in-0311", "TB-0001/V1", "1500000", "2024-03-11")
        .await
        .unwrap();
    let close = |request_id: &str| pb::ClosePeriodRequest {
        context: ctx(request_id),
        branch_id: "TB".into(),
        through: "2024-03-15".into(),
    };
    app.branch.close_period(close("close-0315")).await.unwrap();
    let balance_on = |date: &'static str| pb::GetBalanceRequest {
        account: "savings:TB-0001/V1".into(),
        as_of: Some(pb::AsOf {
            point: Some(pb::as_of::Point::Date(date.into())),
        }),
    };
    let mut app = app.restart().await;
    let on_march_12 = app.audit.get_balance(balance_on("2024-03-12")).await;
    assert_eq!(
        amount(&on_march_12.unwrap().into_inner().balance),
        "3502740"
    );

    // Reopened from 1 March: 2,500,000 out on 10 March, less than the
    // account holds now, is more than it held that day; refused, naming
    // the balance then.
    let asked = app
        .branch
        .reopen_period(pb::ReopenPeriodRequest {
            context: ctx("reopen-0301"),
            branch_id: "TB".into(),
            from: "2024-03-01".into(),
            reason: "a withdrawal of 10 March was left out".into(),
        })
        .await
        .unwrap()
        .into_inner();
    app.approve(asked.pending.expect("reopening waits").request)
        .await
        .unwrap();
    let withdraw = |request_id: &str, amount: &str, date: &str| pb::WithdrawSavingsRequest {
        context: ctx(request_id),
        account_id: "TB-0001/V1".into(),
        amount: vnd(amount),
        effective_date: date.into(),
    };
    let head = app.last_sequence().await;
    let too_much = app
        .branch
        .withdraw_savings(withdraw("out-0310", "2500000", "2024-03-10"))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition, "{too_much:?}");
    assert!(
        too_much
            .message()
            .contains("below zero on 2024-03-10 (balance then 2,002,740"),
        "{}",
        too_much.message()
    );
    assert_eq!(app.last_sequence().await, head);
    // Closed again through the 15th; after another restart, the rest of
    // the worked example's March.
    app.branch
        .close_period(close("close-0315-again"))
        .await
        .unwrap();
    let mut app = app.restart().await;
    app.branch
        .withdraw_savings(withdraw("out-0321", "700000", "2024-03-21"))
        .await
        .unwrap();
    let march = post(&mut app, "interest-2024-03", "2024-03-31")
        .await
        .unwrap();
    assert_eq!(amount(&march.credits[0].amount), "11765");
    assert_eq!(app.balance("savings:TB-0001/V1").await, "2814505");
    let on_march_12 = app.audit.get_balance(balance_on("2024-03-12")).await;
    assert_eq!(
        amount(&on_march_12.unwrap().into_inner().balance),
        "3502740"
    );
    if !crate::ON_POSTGRES {
        let dir = app.stop().await;
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mfi-ledger"))
            .arg("verify")
            .arg("--data")
            .arg(dir.path())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            printed.contains("stored state matches the replay"),
            "{printed}"
        );
    }
}
