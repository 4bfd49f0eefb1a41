//! Named branches the simulator can run, and how a run is scaled.
//!
//! A preset says what the branch looks like at the start (centers, groups,
//! members and what they bring in savings), which products it lends, and
//! what each year should come to: loans disbursed, principal disbursed and
//! savings at year end. The simulator steers its members' behaviour towards
//! those targets; the ledger computes the figures from what they did.

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// One loan product the branch offers and how often members choose it.
#[derive(Clone, Debug)]
pub struct ProductPlan {
    /// Catalogue id, e.g. "GENERAL".
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Share of new loans, in percent.
    pub share_percent: u32,
    /// Principal limits (whole VND).
    pub principal_min: i64,
    pub principal_max: i64,
    /// Size of a loan relative to the year's average loan, in percent.
    pub size_percent: u32,
    /// Annual rate in percent.
    pub rate_percent: u32,
    /// True for declining balance, false for flat.
    pub declining: bool,
    /// True for equal principal (declining balance only).
    pub equal_principal: bool,
    /// Installments fall due every 7 days when true, every 14 otherwise.
    pub weekly: bool,
    /// Number of installments.
    pub installments: u32,
    /// Installments at the start that repay no principal.
    pub grace_on_principal: u32,
    /// Fee deducted at disbursement, whole VND (0 for none).
    pub fee: i64,
    /// Compulsory savings deposit expected with each installment, whole VND.
    pub compulsory_per_installment: i64,
}

/// A year's targets.
#[derive(Clone, Debug)]
pub struct YearPlan {
    pub year: i32,
    /// Loans disbursed in the year (exact).
    pub loans: u32,
    /// Principal disbursed in the year (approached; the last loans settle it).
    pub amount: Decimal,
    /// Savings balance of the branch at the end of the year (approached).
    pub savings_end: Decimal,
}

/// A change of a product's rate on a date (a new product version).
#[derive(Clone, Debug)]
pub struct RateChange {
    pub on: NaiveDate,
    pub product: &'static str,
    pub rate_percent: u32,
}

/// A branch to simulate.
#[derive(Clone, Debug)]
pub struct Preset {
    /// Name on the command line.
    pub name: &'static str,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    pub branch_id: &'static str,
    pub branch_name: &'static str,
    /// First and last simulated day.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Centers at the start; each has `groups_per_center` groups of
    /// `members_per_group` women.
    pub centers: u32,
    pub groups_per_center: u32,
    pub members_per_group: u32,
    /// Average savings a founding member brings from before the ledger.
    pub opening_savings: Decimal,
    /// Paid-in capital placed in the branch's cash when it opens.
    pub opening_capital: Decimal,
    /// Head office tops the branch's cash up in multiples of this, before
    /// a day whose disbursements and withdrawals it could not pay.
    pub funding_step: Decimal,
    pub products: Vec<ProductPlan>,
    pub years: Vec<YearPlan>,
    /// Days without center meetings (Tết), inclusive.
    pub holidays: Vec<(NaiveDate, NaiveDate)>,
    pub rate_changes: Vec<RateChange>,
    /// Per mille of loans with a spell of late payments.
    pub late_per_mille: u32,
    /// Per mille of loans whose borrower stops paying.
    pub default_per_mille: u32,
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid preset date")
}

fn vnd(billions_thousandths: i64) -> Decimal {
    // Millions of VND, to keep the table below readable.
    Decimal::from(billions_thousandths) * Decimal::from(1_000_000)
}

/// The presets, by name.
pub fn presets() -> Vec<Preset> {
    vec![tym_thai_binh(), tym_thai_binh_decade(), demo()]
}

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Preset> {
    presets().into_iter().find(|p| p.name == name)
}

/// TYM's three loan products, as the simulated branches offer them.
fn tym_products() -> Vec<ProductPlan> {
    vec![
        ProductPlan {
            id: "GENERAL",
            name: "Vay vốn chung (general)",
            share_percent: 70,
            principal_min: 5_000_000,
            principal_max: 70_000_000,
            size_percent: 104,
            rate_percent: 22,
            declining: true,
            equal_principal: false,
            weekly: true,
            installments: 50,
            grace_on_principal: 0,
            fee: 50_000,
            compulsory_per_installment: 20_000,
        },
        ProductPlan {
            id: "SEASONAL",
            name: "Vay thời vụ (seasonal)",
            share_percent: 18,
            principal_min: 5_000_000,
            principal_max: 40_000_000,
            size_percent: 55,
            rate_percent: 18,
            declining: false,
            equal_principal: false,
            weekly: false,
            installments: 12,
            grace_on_principal: 2,
            fee: 0,
            compulsory_per_installment: 10_000,
        },
        ProductPlan {
            id: "HOUSING",
            name: "Vay cải thiện nhà ở (housing)",
            share_percent: 12,
            principal_min: 20_000_000,
            principal_max: 100_000_000,
            size_percent: 155,
            rate_percent: 12,
            declining: true,
            equal_principal: true,
            weekly: false,
            installments: 48,
            grace_on_principal: 0,
            fee: 100_000,
            compulsory_per_installment: 20_000,
        },
    ]
}

/// TYM Thái Bình, calibrated to the figures published for 2023: 2,175 loans
/// (1,849 in 2022), over 71 billion VND disbursed, every borrower saving and
/// over 22 billion VND saved. 2021 is a warm-up year that gives the branch
/// its loans and savings in progress; it is not part of the report.
pub fn tym_thai_binh() -> Preset {
    Preset {
        name: "tym-thai-binh",
        seed: 2023,
        branch_id: "TB",
        branch_name: "TYM - Chi nhánh Thái Bình",
        start: date(2021, 1, 4),
        end: date(2023, 12, 31),
        centers: 55,
        groups_per_center: 6,
        members_per_group: 5,
        opening_savings: vnd(4),
        opening_capital: vnd(2_000),
        funding_step: vnd(500),
        products: tym_products(),
        years: vec![
            YearPlan {
                year: 2021,
                loans: 1_560,
                amount: vnd(44_000),
                savings_end: vnd(11_200),
            },
            YearPlan {
                year: 2022,
                loans: 1_849,
                amount: vnd(58_600),
                savings_end: vnd(16_800),
            },
            YearPlan {
                year: 2023,
                loans: 2_175,
                amount: vnd(71_500),
                savings_end: vnd(22_500),
            },
        ],
        holidays: vec![
            (date(2021, 2, 8), date(2021, 2, 17)),
            (date(2022, 1, 28), date(2022, 2, 6)),
            (date(2023, 1, 18), date(2023, 1, 27)),
        ],
        rate_changes: vec![RateChange {
            on: date(2023, 7, 3),
            product: "GENERAL",
            rate_percent: 21,
        }],
        late_per_mille: 12,
        default_per_mille: 3,
    }
}

/// TYM Thái Bình's three years, then seven more like 2023 (2,175 loans and
/// 71.5 billion VND disbursed a year, savings growing by 5.7 billion a year,
/// as from 2022 to 2023): a branch of the same size with a longer history,
/// to see what grows with the journal's age rather than with the branch.
pub fn tym_thai_binh_decade() -> Preset {
    let mut preset = tym_thai_binh();
    preset.name = "tym-thai-binh-decade";
    preset.end = date(2030, 12, 31);
    let mut savings_end = vnd(22_500);
    for year in 2024..=2030 {
        savings_end += vnd(5_700);
        preset.years.push(YearPlan {
            year,
            loans: 2_175,
            amount: vnd(71_500),
            savings_end,
        });
    }
    // Tết: centers do not meet from four days before the new year to five
    // days after it, as in the years above.
    for (y, m, d) in [
        (2024, 2, 10),
        (2025, 1, 29),
        (2026, 2, 17),
        (2027, 2, 6),
        (2028, 1, 26),
        (2029, 2, 13),
        (2030, 2, 3),
    ] {
        let new_year = date(y, m, d);
        preset.holidays.push((
            new_year - chrono::Days::new(4),
            new_year + chrono::Days::new(5),
        ));
    }
    preset
}

/// A small branch over one year, for trying the simulator out.
pub fn demo() -> Preset {
    Preset {
        name: "demo",
        seed: 7,
        branch_id: "DEMO",
        branch_name: "Demo branch",
        start: date(2023, 1, 2),
        end: date(2023, 12, 31),
        centers: 4,
        groups_per_center: 5,
        members_per_group: 5,
        opening_savings: vnd(2),
        opening_capital: vnd(200),
        funding_step: vnd(50),
        products: tym_products(),
        years: vec![YearPlan {
            year: 2023,
            loans: 110,
            amount: vnd(3_300),
            savings_end: vnd(400),
        }],
        holidays: vec![(date(2023, 1, 18), date(2023, 1, 27))],
        rate_changes: Vec::new(),
        late_per_mille: 30,
        default_per_mille: 10,
    }
}

impl Preset {
    /// The same branch scaled by `percent` (centers, loans, amounts and
    /// savings): a quicker run with the same shape.
    pub fn scaled(mut self, percent: u32) -> Preset {
        if percent == 100 {
            return self;
        }
        let factor = Decimal::from(percent) / Decimal::ONE_HUNDRED;
        let scale = |n: u32| ((n as u64 * percent as u64).div_ceil(100)).max(1) as u32;
        self.centers = scale(self.centers);
        self.opening_capital = (self.opening_capital * factor).round_dp(0);
        self.funding_step = (self.funding_step * factor).round_dp(0).max(Decimal::ONE);
        for year in &mut self.years {
            year.loans = scale(year.loans);
            year.amount = (year.amount * factor).round_dp(0);
            year.savings_end = (year.savings_end * factor).round_dp(0);
        }
        self
    }

    /// The plan of `year`, if the run covers it.
    pub fn year(&self, year: i32) -> Option<&YearPlan> {
        self.years.iter().find(|y| y.year == year)
    }

    /// True when centers do not meet on `day`.
    pub fn is_holiday(&self, day: NaiveDate) -> bool {
        self.holidays
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&day))
    }
}
