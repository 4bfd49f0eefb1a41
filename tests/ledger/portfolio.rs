//! Portfolio quality of a hand-built portfolio: gross portfolio, PAR1/30/90,
//! borrowers, repayment rate, write-offs and recoveries, for a branch and for
//! all branches. Every expected figure is worked out by hand beside it.

use mfi_ledger::pb;

use crate::support::{
    App, amount, application, create_product, ctx, flat_weekly, loans_in_arrears, product_rules,
    spawn_app,
};

/// Flat 24% a year, 12 monthly installments: interest 2% of the principal a
/// month, principal / 12 a month.
fn monthly(principal: &str, first: &str) -> pb::LoanTerms {
    pb::LoanTerms {
        repayment_frequency: pb::RepaymentFrequency::Monthly as i32,
        ..flat_weekly(principal, "24", 12, first)
    }
}

/// Disburses `terms` to `member` on `date` and pays `installment` on each
/// of `paid_on`; returns the loan id.
async fn loan(
    app: &mut App,
    member: &str,
    terms: pb::LoanTerms,
    date: &str,
    installment: &str,
    paid_on: &[&str],
) -> String {
    let loan = app
        .disburse(&format!("loan-{member}-{date}"), member, terms, date)
        .await
        .unwrap()
        .loan_id;
    for day in paid_on {
        app.repay(
            &format!("pay-{}-{day}", loan.replace('/', "-")),
            &loan,
            installment,
            day,
        )
        .await
        .unwrap();
    }
    loan
}

/// The portfolio, as of 30 June 2024 (all loans flat 24%, monthly):
///
/// | loan | member  | principal | per month | paid on                  | outstanding 30/6 | oldest unpaid | days |
/// |------|---------|-----------|-----------|--------------------------|------------------|---------------|------|
/// | A1   | TB-0001 | 1,200,000 | 124,000   | 10/2 10/3 10/4 10/5 12/6 | 700,000          | -             | 0    |
/// | A2   | TB-0001 |   600,000 |  62,000   | (first due 5/7)          | 600,000          | -             | 0    |
/// | B    | TB-0002 | 2,400,000 | 248,000   | 20/2 20/3 20/4 20/5      | 1,600,000        | 20/6          | 10   |
/// | C    | TB-0003 | 1,200,000 | 124,000   | 16/2 16/3 16/4           | 900,000          | 16/5          | 45   |
/// | D    | TB-0004 |   600,000 |  62,000   | 22/2                     | 550,000          | 22/3          | 100  |
/// | E    | TB-0005 | 1,200,000 | 124,000   | none; written off 1/6, 50,000 recovered 15/6 | - |          |      |
/// | H    | HN-0001 | 1,200,000 | 124,000   | 1/4                      | 1,100,000        | 1/5           | 60   |
///
/// (124,000 = 100,000 principal + 24,000 interest; 248,000 = 200,000 +
/// 48,000; 62,000 = 50,000 + 12,000.)
async fn portfolio() -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    for member in ["TB-0001", "TB-0002", "TB-0003", "TB-0004", "TB-0005"] {
        app.member(member).await;
    }
    app.other_branch("HN", "VND").await;
    let a1 = monthly("1200000", "2024-02-10");
    loan(
        &mut app,
        "TB-0001",
        a1,
        "2024-01-10",
        "124000",
        &[
            "2024-02-10",
            "2024-03-10",
            "2024-04-10",
            "2024-05-10",
            "2024-06-12",
        ],
    )
    .await;
    let a2 = monthly("600000", "2024-07-05");
    loan(&mut app, "TB-0001", a2, "2024-06-05", "62000", &[]).await;
    let b = monthly("2400000", "2024-02-20");
    loan(
        &mut app,
        "TB-0002",
        b,
        "2024-01-20",
        "248000",
        &["2024-02-20", "2024-03-20", "2024-04-20", "2024-05-20"],
    )
    .await;
    let c = monthly("1200000", "2024-02-16");
    loan(
        &mut app,
        "TB-0003",
        c,
        "2024-01-16",
        "124000",
        &["2024-02-16", "2024-03-16", "2024-04-16"],
    )
    .await;
    let d = monthly("600000", "2024-02-22");
    loan(
        &mut app,
        "TB-0004",
        d,
        "2024-01-22",
        "62000",
        &["2024-02-22"],
    )
    .await;
    let e = monthly("1200000", "2024-02-05");
    let e = loan(&mut app, "TB-0005", e, "2024-01-05", "124000", &[]).await;
    app.write_off_approved(pb::WriteOffLoanRequest {
        context: ctx("write-off-e"),
        loan_id: e.clone(),
        reason: "left the province".into(),
        effective_date: "2024-06-01".into(),
    })
    .await
    .unwrap();
    app.repay("recover-e", &e, "50000", "2024-06-15")
        .await
        .unwrap();
    let h = monthly("1200000", "2024-04-01");
    loan(
        &mut app,
        "HN-0001",
        h,
        "2024-03-01",
        "124000",
        &["2024-04-01"],
    )
    .await;
    app
}

async fn quality(
    app: &mut App,
    branch: &str,
    as_of: &str,
    period: Option<(&str, &str)>,
) -> pb::GetPortfolioQualityResponse {
    app.audit
        .get_portfolio_quality(pb::GetPortfolioQualityRequest {
            as_of_sequence: 0,
            branch_id: branch.into(),
            as_of_date: as_of.into(),
            period: period.map(|(from, to)| pb::DateRange {
                from_date: from.into(),
                to_date: to.into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn in_arrears(app: &mut App, branch: &str, as_of: &str) -> Vec<(String, u32)> {
    loans_in_arrears(app, branch, as_of)
        .await
        .into_iter()
        .map(|l| (l.loan_id, l.days_in_arrears))
        .collect()
}

#[tokio::test]
async fn a_branchs_portfolio_quality_is_what_the_hand_count_says() {
    let mut app = portfolio().await;
    let q = quality(
        &mut app,
        "TB",
        "2024-06-30",
        Some(("2024-05-01", "2024-06-30")),
    )
    .await;
    assert_eq!(q.branch_id, "TB");
    assert_eq!(q.as_of_date, "2024-06-30");
    // Gross portfolio: A1 700,000 + A2 600,000 + B 1,600,000 + C 900,000 +
    // D 550,000 = 4,350,000 (E is written off).
    assert_eq!(amount(&q.gross_portfolio), "4350000");
    assert_eq!(q.active_loans, 5);
    // TB-0001 holds two loans: 4 borrowers.
    assert_eq!(q.active_borrowers, 4);
    // 4,350,000 / 5.
    assert_eq!(amount(&q.average_outstanding), "870000");
    // B (10 days), C (45), D (100).
    assert_eq!(q.loans_in_arrears, 3);
    // PAR1: B + C + D = 1,600,000 + 900,000 + 550,000 = 3,050,000;
    // 3,050,000 / 4,350,000 = 70.114942...%.
    assert_eq!(amount(&q.par1_amount), "3050000");
    assert_eq!(q.par1_percent, "70.1149");
    // PAR30: C + D = 1,450,000; / 4,350,000 = 33.333333...%.
    assert_eq!(amount(&q.par30_amount), "1450000");
    assert_eq!(q.par30_percent, "33.3333");
    // PAR90: D = 550,000; / 4,350,000 = 12.643678...%.
    assert_eq!(amount(&q.par90_amount), "550000");
    assert_eq!(q.par90_percent, "12.6437");
    // Due in May and June, and paid by each due date:
    //   A1: 10/5 124,000 on time; 10/6 124,000 paid on 12/6, late.
    //   B:  20/5 248,000 on time; 20/6 248,000 unpaid.
    //   C:  16/5, 16/6 124,000 each, unpaid.
    //   D:  22/5, 22/6 62,000 each, unpaid.
    //   E:  5/5 124,000 unpaid (5/6 falls after its write-off on 1/6).
    // Due 248,000 + 496,000 + 248,000 + 124,000 + 124,000 = 1,240,000;
    // on time 124,000 + 248,000 = 372,000: 30.00%.
    let period = q.period.unwrap();
    assert_eq!(
        (period.from_date.as_str(), period.to_date.as_str()),
        ("2024-05-01", "2024-06-30")
    );
    assert_eq!(amount(&q.due_in_period), "1240000");
    assert_eq!(amount(&q.collected_on_time), "372000");
    assert_eq!(q.repayment_rate_percent, "30.00");
    assert_eq!(amount(&q.written_off), "1200000");
    assert_eq!(amount(&q.recovered), "50000");

    let listed = in_arrears(&mut app, "TB", "2024-06-30").await;
    assert_eq!(
        listed,
        vec![
            ("TB-0004/L1".to_owned(), 100),
            ("TB-0003/L1".to_owned(), 45),
            ("TB-0002/L1".to_owned(), 10),
        ]
    );
}

#[tokio::test]
async fn portfolio_quality_on_an_earlier_date_counts_the_loans_as_they_were() {
    let mut app = portfolio().await;
    // On 31 March (period: 1 January to 31 March by default):
    //   A1 1,000,000 (paid 10/2, 10/3), current; A2 not yet disbursed;
    //   B 2,000,000, current; C 1,000,000, current;
    //   D 550,000, unpaid since 22/3: 9 days;
    //   E 1,200,000, not yet written off, unpaid since 5/2: 24 + 31 = 55 days.
    // Gross 5,750,000 over 5 loans and 5 borrowers.
    let q = quality(&mut app, "TB", "2024-03-31", None).await;
    assert_eq!(amount(&q.gross_portfolio), "5750000");
    assert_eq!((q.active_loans, q.active_borrowers), (5, 5));
    assert_eq!(amount(&q.average_outstanding), "1150000");
    assert_eq!(q.loans_in_arrears, 2);
    // PAR1: D + E = 1,750,000; / 5,750,000 = 30.434782...%.
    assert_eq!(amount(&q.par1_amount), "1750000");
    assert_eq!(q.par1_percent, "30.4348");
    // PAR30: E = 1,200,000; / 5,750,000 = 20.869565...%.
    assert_eq!(amount(&q.par30_amount), "1200000");
    assert_eq!(q.par30_percent, "20.8696");
    assert_eq!(amount(&q.par90_amount), "0");
    assert_eq!(q.par90_percent, "0.0000");
    let period = q.period.unwrap();
    assert_eq!(
        (period.from_date.as_str(), period.to_date.as_str()),
        ("2024-01-01", "2024-03-31")
    );
    // Due January to March: A1 2 x 124,000 on time; B 2 x 248,000 on time;
    // C 2 x 124,000 on time; D 62,000 on time + 62,000 unpaid; E 2 x 124,000
    // unpaid. Due 248,000 + 496,000 + 248,000 + 124,000 + 248,000 =
    // 1,364,000; on time 1,054,000: 77.2727...%.
    assert_eq!(amount(&q.due_in_period), "1364000");
    assert_eq!(amount(&q.collected_on_time), "1054000");
    assert_eq!(q.repayment_rate_percent, "77.27");
    assert_eq!(amount(&q.written_off), "0");
    assert_eq!(amount(&q.recovered), "0");

    // The thresholds' edges. On 11 June:
    //   A1 800,000, its 10/6 installment 1 day late: in arrears, but not
    //   more than 1 day; A2 600,000 and B 1,600,000, current;
    //   C 900,000, unpaid since 16/5: 26 days;
    //   D 550,000, unpaid since 22/3: 9 + 30 + 31 + 11 = 81 days;
    //   E written off on 1 June.
    // Gross 4,450,000.
    let q = quality(&mut app, "TB", "2024-06-11", None).await;
    assert_eq!(amount(&q.gross_portfolio), "4450000");
    assert_eq!((q.active_loans, q.active_borrowers), (5, 4));
    assert_eq!(q.loans_in_arrears, 3);
    // PAR1: C + D = 1,450,000; / 4,450,000 = 32.584269...%.
    assert_eq!(amount(&q.par1_amount), "1450000");
    assert_eq!(q.par1_percent, "32.5843");
    // PAR30: D = 550,000; / 4,450,000 = 12.359550...%.
    assert_eq!(amount(&q.par30_amount), "550000");
    assert_eq!(q.par30_percent, "12.3596");
    assert_eq!(amount(&q.par90_amount), "0");
    let listed = in_arrears(&mut app, "TB", "2024-06-11").await;
    assert_eq!(
        listed,
        vec![
            ("TB-0004/L1".to_owned(), 81),
            ("TB-0003/L1".to_owned(), 26),
            ("TB-0001/L1".to_owned(), 1),
        ]
    );
    // On 15 June: A1 paid on the 12th (700,000 left, current); C exactly
    // 30 days late, not more than 30; D 85 days. Gross 4,350,000.
    let q = quality(&mut app, "TB", "2024-06-15", None).await;
    assert_eq!(amount(&q.gross_portfolio), "4350000");
    assert_eq!(q.loans_in_arrears, 2);
    // PAR1: C + D = 1,450,000; / 4,350,000 = 33.333333...%.
    assert_eq!(q.par1_percent, "33.3333");
    // PAR30: D = 550,000; / 4,350,000 = 12.643678...%.
    assert_eq!(amount(&q.par30_amount), "550000");
    assert_eq!(q.par30_percent, "12.6437");
    let listed = in_arrears(&mut app, "TB", "2024-06-15").await;
    assert_eq!(
        listed,
        vec![("TB-0004/L1".to_owned(), 85), ("TB-0003/L1".to_owned(), 30),]
    );
}

#[tokio::test]
async fn portfolio_quality_of_all_branches_adds_them_up() {
    let mut app = portfolio().await;
    // HN alone: H 1,100,000, unpaid since 1/5: 60 days.
    let hn = quality(
        &mut app,
        "HN",
        "2024-06-30",
        Some(("2024-05-01", "2024-06-30")),
    )
    .await;
    assert_eq!(amount(&hn.gross_portfolio), "1100000");
    assert_eq!(amount(&hn.par30_amount), "1100000");
    assert_eq!(hn.par30_percent, "100.0000");
    assert_eq!(hn.par90_percent, "0.0000");
    assert_eq!(hn.repayment_rate_percent, "0.00");
    assert_eq!(amount(&hn.written_off), "0");

    let all = quality(
        &mut app,
        "",
        "2024-06-30",
        Some(("2024-05-01", "2024-06-30")),
    )
    .await;
    assert_eq!(all.branch_id, "");
    // 4,350,000 + 1,100,000.
    assert_eq!(amount(&all.gross_portfolio), "5450000");
    assert_eq!((all.active_loans, all.active_borrowers), (6, 5));
    // 5,450,000 / 6 = 908,333.33 -> 908,333.
    assert_eq!(amount(&all.average_outstanding), "908333");
    assert_eq!(all.loans_in_arrears, 4);
    // PAR1: 3,050,000 + 1,100,000 = 4,150,000; / 5,450,000 = 76.146788...%.
    assert_eq!(amount(&all.par1_amount), "4150000");
    assert_eq!(all.par1_percent, "76.1468");
    // PAR30: 1,450,000 + 1,100,000 = 2,550,000; / 5,450,000 = 46.788990...%.
    assert_eq!(amount(&all.par30_amount), "2550000");
    assert_eq!(all.par30_percent, "46.7890");
    // PAR90: 550,000 / 5,450,000 = 10.091743...%.
    assert_eq!(amount(&all.par90_amount), "550000");
    assert_eq!(all.par90_percent, "10.0917");
    // H adds 1/5 and 1/6, 124,000 each, unpaid: due 1,488,000; on time
    // 372,000: 25.00%.
    assert_eq!(amount(&all.due_in_period), "1488000");
    assert_eq!(amount(&all.collected_on_time), "372000");
    assert_eq!(all.repayment_rate_percent, "25.00");
    assert_eq!(amount(&all.written_off), "1200000");
    assert_eq!(amount(&all.recovered), "50000");

    let listed = in_arrears(&mut app, "", "2024-06-30").await;
    assert_eq!(
        listed,
        vec![
            ("TB-0004/L1".to_owned(), 100),
            ("HN-0001/L1".to_owned(), 60),
            ("TB-0003/L1".to_owned(), 45),
            ("TB-0002/L1".to_owned(), 10),
        ]
    );
}

/// PAR is the standard measure: a loan 32 days late is in PAR30 even though
/// its product tolerates 45 days, which still keeps it out of the loans in
/// arrears (its own status and collection follow-up). Reproduces PAR
/// applying each product's tolerance, which left this loan out of PAR1 and
/// PAR30.
#[tokio::test]
async fn par_ignores_the_products_tolerance_which_still_decides_arrears() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    // Flat 24% monthly over 4 installments: 250,000 principal + 20,000
    // interest a month. In arrears only beyond 45 days and 100,000 overdue.
    create_product(
        &app,
        "PATIENT",
        pb::ProductRules {
            arrears_tolerance_days: 45,
            arrears_tolerance_amount: "100000".into(),
            ..product_rules(
                pb::InterestMethod::Flat,
                pb::RepaymentFrequency::Monthly,
                "24",
                4,
            )
        },
    )
    .await;
    // Late: nothing paid on the installment due 1 February.
    let late = app
        .disburse_under(
            "late",
            "TB-0001",
            application("PATIENT", "1000000", "2024-02-01"),
            "2024-01-02",
        )
        .await
        .unwrap()
        .loan_id;
    // Current: paid on its due dates.
    let current = app
        .disburse_under(
            "current",
            "TB-0002",
            application("PATIENT", "1000000", "2024-02-01"),
            "2024-01-02",
        )
        .await
        .unwrap()
        .loan_id;
    for (i, day) in ["2024-02-01", "2024-03-01"].into_iter().enumerate() {
        app.repay(&format!("pay-current-{i}"), &current, "270000", day)
            .await
            .unwrap();
    }

    // 4 March: the late loan's 1 February installment is 32 days unpaid
    // (and 1 March's 3 days). Gross portfolio 1,000,000 + 500,000.
    let q = quality(&mut app, "TB", "2024-03-04", None).await;
    assert_eq!(amount(&q.gross_portfolio), "1500000");
    // PAR1 and PAR30: the late loan's whole 1,000,000; / 1,500,000 = 66.666666...%.
    assert_eq!(amount(&q.par1_amount), "1000000");
    assert_eq!(q.par1_percent, "66.6667");
    assert_eq!(amount(&q.par30_amount), "1000000");
    assert_eq!(q.par30_percent, "66.6667");
    assert_eq!(amount(&q.par90_amount), "0");
    // Under its 45-day tolerance the loan is not yet in arrears.
    assert_eq!(q.loans_in_arrears, 0);
    assert!(in_arrears(&mut app, "TB", "2024-03-04").await.is_empty());
    assert!(!app.loan(&late, "2024-03-04").await.in_arrears);

    // 18 March: 46 days late and 540,000 overdue, beyond the tolerance too.
    let q = quality(&mut app, "TB", "2024-03-18", None).await;
    assert_eq!(amount(&q.par30_amount), "1000000");
    assert_eq!(q.loans_in_arrears, 1);
    assert_eq!(
        in_arrears(&mut app, "TB", "2024-03-18").await,
        vec![(late.clone(), 46)]
    );
}
