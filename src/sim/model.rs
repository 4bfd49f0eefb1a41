//! The simulated branch: its members, their loans and savings as the
//! simulator knows them, and the day-by-day choices that become commands.
//!
//! Everything here is deterministic: choices come from one seeded PCG
//! stream ([`oorandom::Rand64`], whose output is fixed for a seed), loans are
//! kept in the order they were disbursed, and members and centers in the
//! order they joined. The only inputs besides the seed are the server's
//! replies (loan ids and schedules), which are themselves deterministic.
//!
//! The model never asks the ledger to refuse: it pays at most what is due,
//! withdraws at most what a member has, and so on. A refusal therefore means
//! a bug, and the run stops on it.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use rust_decimal::Decimal;

use super::preset::{Preset, ProductPlan};
use crate::pb;
use crate::pb::batch_command::Command as Write;

/// Savings amounts and principals are rounded to these (VND).
const THOUSAND: i64 = 1_000;
const PRINCIPAL_STEP: i64 = 500_000;
/// A defaulted loan is written off this many days after its oldest unpaid installment.
const WRITE_OFF_AFTER_DAYS: i64 = 180;

/// One woman of the branch.
#[derive(Clone, Debug)]
struct Member {
    id: String,
    center: usize,
    compulsory: String,
    voluntary: Option<String>,
    compulsory_balance: Decimal,
    voluntary_balance: Decimal,
    /// Loans not yet closed or written off, by index into `Model::loans`.
    active: Vec<usize>,
    left: bool,
}

/// A center and where its next member goes.
#[derive(Clone, Debug)]
struct Center {
    id: String,
    weekday: Weekday,
    groups: Vec<String>,
    members: Vec<usize>,
    in_last_group: u32,
}

/// How a borrower repays one loan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// On time, with the odd missed meeting made up at the next.
    Regular,
    /// Pays nothing from `from` for `weeks`, then catches up.
    Late { from: NaiveDate, weeks: u32 },
    /// Stops paying from `from`.
    Defaults { from: NaiveDate },
}

/// A loan as the simulator tracks it.
#[derive(Clone, Debug)]
struct Loan {
    id: String,
    member: usize,
    product: usize,
    /// (due date, installment total), in order.
    schedule: Vec<(NaiveDate, Decimal)>,
    total: Decimal,
    paid: Decimal,
    behaviour: Behaviour,
    written_off: Option<Decimal>,
    recovered: Decimal,
}

impl Loan {
    /// What is due on or before `day` and not yet paid.
    fn due_on(&self, day: NaiveDate) -> Decimal {
        let due: Decimal = self
            .schedule
            .iter()
            .take_while(|(date, _)| *date <= day)
            .map(|(_, amount)| *amount)
            .sum();
        (due - self.paid).max(Decimal::ZERO)
    }

    /// Due date of the oldest installment not fully paid.
    fn oldest_unpaid(&self) -> Option<NaiveDate> {
        let mut covered = self.paid;
        for (date, amount) in &self.schedule {
            if covered < *amount {
                return Some(*date);
            }
            covered -= *amount;
        }
        None
    }
}

/// What the day's commands are waiting to learn from the server's replies.
#[derive(Clone, Debug)]
pub enum Pending {
    /// Nothing.
    None,
    /// A disbursement: the loan's member and product.
    Loan { member: usize, product: usize },
    /// A write-off of this loan.
    WriteOff { loan: usize },
    /// Savings interest: the accounts credited.
    Interest,
}

/// Counters for the progress display and the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub members: u64,
    pub loans: u64,
    pub sheets: u64,
    pub write_offs: u64,
}

/// The simulated branch.
pub struct Model {
    preset: Preset,
    seed: u64,
    rng: oorandom::Rand64,
    members: Vec<Member>,
    centers: Vec<Center>,
    loans: Vec<Loan>,
    /// Loans still to disburse on each meeting day.
    quota: BTreeMap<NaiveDate, u32>,
    /// Principal disbursed and loans counted so far, by year.
    disbursed: BTreeMap<i32, (Decimal, u32)>,
    /// Branch savings as the simulator has moved them.
    savings: Decimal,
    /// The branch's cash as the simulator has moved it: funded so that it
    /// never goes below zero.
    cash: Decimal,
    /// Multiplies voluntary deposits to steer savings towards the year's target.
    voluntary_factor: Decimal,
    /// This week's savings flows: other than voluntary deposits (compulsory
    /// deposits less withdrawals), and voluntary deposits before the factor.
    week_other: Decimal,
    week_voluntary_base: Decimal,
    requests: u64,
    pub tally: Tally,
}

fn whole(amount: i64) -> Decimal {
    Decimal::from(amount)
}

fn money(amount: Decimal) -> Option<pb::Money> {
    Some(pb::Money {
        amount: amount.normalize().to_string(),
        currency: "VND".to_owned(),
    })
}

fn round_to(amount: Decimal, step: i64) -> Decimal {
    (amount / whole(step)).round() * whole(step)
}

const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

impl Model {
    /// A branch about to open, with its seed.
    pub fn new(preset: Preset, seed: u64) -> Model {
        let mut model = Model {
            seed,
            rng: oorandom::Rand64::new(u128::from(seed)),
            members: Vec::new(),
            centers: Vec::new(),
            loans: Vec::new(),
            quota: BTreeMap::new(),
            disbursed: BTreeMap::new(),
            savings: Decimal::ZERO,
            cash: Decimal::ZERO,
            voluntary_factor: Decimal::ONE,
            week_other: Decimal::ZERO,
            week_voluntary_base: Decimal::ZERO,
            requests: 0,
            tally: Tally::default(),
            preset,
        };
        model.plan_quotas();
        model
    }

    /// The preset being run.
    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.rng.rand_range(0..1000) < per_mille
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.rng.rand_range(low..high + 1)
    }

    fn context(&mut self) -> Option<pb::WriteContext> {
        self.requests += 1;
        Some(pb::WriteContext {
            request_id: format!("sim-{}-{:07}", self.seed, self.requests),
            actor: "simulator".to_owned(),
        })
    }

    /// Spreads each year's loans over its meeting days (more before Tết and
    /// at planting time), by largest remainder so that they add up exactly.
    fn plan_quotas(&mut self) {
        let weight = |month: u32| -> u64 {
            match month {
                1 => 13,
                2 => 7,
                3 | 8 => 12,
                7 | 12 => 11,
                _ => 10,
            }
        };
        // Centers meet on the weekdays of the founding centers (and new
        // centers on a day that already has meetings).
        let meeting_days = &WEEKDAYS[..(self.preset.centers as usize).clamp(1, WEEKDAYS.len())];
        for plan in self.preset.years.clone() {
            let mut days = Vec::new();
            let mut day = NaiveDate::from_ymd_opt(plan.year, 1, 1).expect("a valid year");
            while day.year() == plan.year {
                if day >= self.preset.start
                    && day <= self.preset.end
                    && meeting_days.contains(&day.weekday())
                    && !self.preset.is_holiday(day)
                {
                    days.push((day, weight(day.month())));
                }
                day = day + Days::new(1);
            }
            let total: u64 = days.iter().map(|(_, w)| w).sum();
            if total == 0 {
                continue;
            }
            let target = u64::from(plan.loans);
            let mut shares: Vec<(NaiveDate, u64, u64)> = days
                .iter()
                .map(|(d, w)| (*d, target * w / total, target * w % total))
                .collect();
            let given: u64 = shares.iter().map(|s| s.1).sum();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2).then(a.cmp(b)));
            for index in order.into_iter().take((target - given) as usize) {
                shares[index].1 += 1;
            }
            for (day, count, _) in shares {
                if count > 0 {
                    self.quota.insert(day, count as u32);
                }
            }
        }
    }

    /// The commands that open the branch: the branch, the capital placed in
    /// its cash, its founding centers and members with the savings they
    /// bring.
    pub fn opening(&mut self) -> Vec<(Write, Pending)> {
        let preset = self.preset.clone();
        let day = preset.start.to_string();
        let mut writes = vec![(
            Write::CreateBranch(pb::CreateBranchRequest {
                context: self.context(),
                branch_id: preset.branch_id.to_owned(),
                name: preset.branch_name.to_owned(),
                time_zone: String::new(),
                currency: "VND".to_owned(),
                compulsory_savings_percent: String::new(),
                opened_on: day.clone(),
            }),
            Pending::None,
        )];
        if preset.opening_capital > Decimal::ZERO {
            let funding = self.funding(
                pb::FundingSource::Capital,
                preset.opening_capital,
                preset.start,
            );
            writes.push(funding);
        }
        for _ in 0..preset.centers {
            let center = self.new_center(preset.start, &mut writes);
            for _ in 0..preset.groups_per_center * preset.members_per_group {
                let opening = self.opening_savings();
                self.new_member(center, preset.start, opening, &mut writes);
            }
        }
        self.keep_cash(preset.start, &mut writes);
        writes
    }

    /// Funds of `amount` put into the branch's cash from `source` on `day`.
    fn funding(
        &mut self,
        source: pb::FundingSource,
        amount: Decimal,
        day: NaiveDate,
    ) -> (Write, Pending) {
        (
            Write::FundBranch(pb::FundBranchRequest {
                context: self.context(),
                branch_id: self.preset.branch_id.to_owned(),
                source: source as i32,
                amount: money(amount),
                effective_date: day.to_string(),
            }),
            Pending::None,
        )
    }

    /// What `write` moves into (positive) or out of the branch's cash, as
    /// the ledger books it: a disbursement pays out its principal less the
    /// fee its product deducts at disbursement.
    fn cash_effect(&self, write: &Write) -> Decimal {
        let amount = |money: &Option<pb::Money>| -> Decimal {
            money
                .as_ref()
                .and_then(|m| m.amount.parse().ok())
                .unwrap_or_default()
        };
        match write {
            Write::FundBranch(r) => amount(&r.amount),
            Write::ReturnBranchFunding(r) => -amount(&r.amount),
            Write::DepositSavings(r) => amount(&r.amount),
            Write::WithdrawSavings(r) => -amount(&r.amount),
            Write::RecordCollectionSheet(r) => r
                .lines
                .iter()
                .map(|line| amount(&line.repayment) + amount(&line.deposit))
                .sum(),
            Write::DisburseLoan(r) => match &r.loan {
                Some(pb::disburse_loan_request::Loan::Application(application)) => {
                    let fee = self
                        .preset
                        .products
                        .iter()
                        .find(|p| p.id == application.product_id)
                        .map_or(0, |p| p.fee);
                    -(amount(&application.principal) - whole(fee))
                }
                Some(pb::disburse_loan_request::Loan::Terms(terms)) => -amount(&terms.principal),
                None => Decimal::ZERO,
            },
            _ => Decimal::ZERO,
        }
    }

    /// Keeps the branch's cash at or above zero after every one of a day's
    /// `writes`, in their order: when they would take it below, head office
    /// tops it up first, in whole funding steps. Then counts their cash.
    /// (No random choice: the rest of the run is the same, funded or not.)
    fn keep_cash(&mut self, day: NaiveDate, writes: &mut Vec<(Write, Pending)>) {
        let mut cash = self.cash;
        let mut lowest = self.cash;
        for (write, _) in writes.iter() {
            cash += self.cash_effect(write);
            lowest = lowest.min(cash);
        }
        if lowest < Decimal::ZERO {
            let step = self.preset.funding_step;
            let top_up = (-lowest / step).ceil() * step;
            let funding = self.funding(pb::FundingSource::HeadOffice, top_up, day);
            writes.insert(0, funding);
            cash += top_up;
        }
        self.cash = cash;
    }

    /// The product definitions (through `ProductService`, not a batch).
    pub fn products(&mut self) -> Vec<pb::CreateProductRequest> {
        let products = self.preset.products.clone();
        let start = self.preset.start.to_string();
        products
            .iter()
            .map(|p| pb::CreateProductRequest {
                context: self.context(),
                product_id: p.id.to_owned(),
                rules: Some(product_rules(p, p.rate_percent)),
                effective_from: start.clone(),
            })
            .collect()
    }

    /// New product versions that take effect on `day`.
    pub fn product_updates(&mut self, day: NaiveDate) -> Vec<pb::UpdateProductRequest> {
        let changes: Vec<_> = self
            .preset
            .rate_changes
            .iter()
            .filter(|c| c.on == day)
            .cloned()
            .collect();
        let mut updates = Vec::new();
        for change in changes {
            if let Some(plan) = self
                .preset
                .products
                .iter()
                .find(|p| p.id == change.product)
                .cloned()
            {
                updates.push(pb::UpdateProductRequest {
                    context: self.context(),
                    product_id: plan.id.to_owned(),
                    rules: Some(product_rules(&plan, change.rate_percent)),
                    effective_from: day.to_string(),
                });
            }
        }
        updates
    }

    fn opening_savings(&mut self) -> Decimal {
        // From a fifth to twice the average, in whole thousands.
        let mean = self.preset.opening_savings;
        let permille = Decimal::from(self.between(200, 1800));
        round_to(mean * permille / Decimal::ONE_THOUSAND, THOUSAND)
    }

    fn new_center(&mut self, day: NaiveDate, writes: &mut Vec<(Write, Pending)>) -> usize {
        let index = self.centers.len();
        let id = format!("{}-C{:03}", self.preset.branch_id, index + 1);
        let weekday = WEEKDAYS[index % WEEKDAYS.len()];
        writes.push((
            Write::CreateCenter(pb::CreateCenterRequest {
                context: self.context(),
                center_id: id.clone(),
                branch_id: self.preset.branch_id.to_owned(),
                name: format!("Cụm {}", index + 1),
                opened_on: day.to_string(),
            }),
            Pending::None,
        ));
        self.centers.push(Center {
            id,
            weekday,
            groups: Vec::new(),
            members: Vec::new(),
            in_last_group: self.preset.members_per_group,
        });
        index
    }

    fn new_member(
        &mut self,
        center: usize,
        day: NaiveDate,
        opening: Decimal,
        writes: &mut Vec<(Write, Pending)>,
    ) -> usize {
        let full = self.centers[center].in_last_group >= self.preset.members_per_group;
        if full {
            let number = self.centers[center].groups.len() + 1;
            let group = format!("{}-G{number}", self.centers[center].id);
            let context = self.context();
            writes.push((
                Write::CreateGroup(pb::CreateGroupRequest {
                    context,
                    group_id: group.clone(),
                    center_id: self.centers[center].id.clone(),
                    name: format!("Tổ {number}"),
                    opened_on: day.to_string(),
                }),
                Pending::None,
            ));
            self.centers[center].groups.push(group);
            self.centers[center].in_last_group = 0;
        }
        let index = self.members.len();
        let id = format!("{}-{:05}", self.preset.branch_id, index + 1);
        let group = self.centers[center]
            .groups
            .last()
            .cloned()
            .unwrap_or_default();
        self.centers[center].in_last_group += 1;
        self.centers[center].members.push(index);
        let context = self.context();
        writes.push((
            Write::RegisterMember(pb::RegisterMemberRequest {
                context,
                member_id: id.clone(),
                full_name: format!("Thành viên {}", index + 1),
                group_id: group,
                joined_on: day.to_string(),
            }),
            Pending::None,
        ));
        let context = self.context();
        writes.push((
            Write::OpenSavingsAccount(pb::OpenSavingsAccountRequest {
                context,
                member_id: id.clone(),
                kind: pb::SavingsKind::Compulsory as i32,
                opened_on: day.to_string(),
            }),
            Pending::None,
        ));
        let voluntary = self.chance(600).then(|| format!("{id}/V1"));
        if voluntary.is_some() {
            let context = self.context();
            writes.push((
                Write::OpenSavingsAccount(pb::OpenSavingsAccountRequest {
                    context,
                    member_id: id.clone(),
                    kind: pb::SavingsKind::Voluntary as i32,
                    opened_on: day.to_string(),
                }),
                Pending::None,
            ));
        }
        let compulsory = format!("{id}/C1");
        if opening > Decimal::ZERO {
            let context = self.context();
            writes.push((
                Write::DepositSavings(pb::DepositSavingsRequest {
                    context,
                    account_id: compulsory.clone(),
                    amount: money(opening),
                    effective_date: day.to_string(),
                }),
                Pending::None,
            ));
            self.savings += opening;
        }
        self.members.push(Member {
            id,
            center,
            compulsory,
            voluntary,
            compulsory_balance: opening,
            voluntary_balance: Decimal::ZERO,
            active: Vec::new(),
            left: false,
        });
        self.tally.members += 1;
        index
    }

    /// Sets the voluntary deposit multiplier at the start of a week so that
    /// savings head for the year's target, from last week's flows.
    fn steer_savings(&mut self, day: NaiveDate) {
        let (other, base) = (self.week_other, self.week_voluntary_base);
        self.week_other = Decimal::ZERO;
        self.week_voluntary_base = Decimal::ZERO;
        let Some(plan) = self.preset.year(day.year()) else {
            return;
        };
        let year_end = NaiveDate::from_ymd_opt(day.year(), 12, 31).expect("a valid date");
        let weeks_left = ((year_end - day).num_days() / 7 + 1).max(1);
        let needed = (plan.savings_end - self.savings) / Decimal::from(weeks_left);
        if base > Decimal::ZERO {
            self.voluntary_factor =
                ((needed - other) / base).clamp(Decimal::ZERO, Decimal::from(20));
        }
    }

    /// The commands of one day: product changes aside, new members and
    /// loans, the collection sheets of the centers meeting, withdrawals,
    /// write-offs; first, when they need it, funds from head office.
    pub fn day(&mut self, day: NaiveDate) -> Vec<(Write, Pending)> {
        let mut writes = self.day_writes(day);
        self.keep_cash(day, &mut writes);
        writes
    }

    fn day_writes(&mut self, day: NaiveDate) -> Vec<(Write, Pending)> {
        let mut writes = Vec::new();
        if day.weekday() == Weekday::Mon {
            self.steer_savings(day);
        }
        if !WEEKDAYS.contains(&day.weekday()) || self.preset.is_holiday(day) {
            return writes;
        }
        let meeting: Vec<usize> = (0..self.centers.len())
            .filter(|c| self.centers[*c].weekday == day.weekday())
            .collect();
        for center in &meeting {
            self.meeting(*center, day, &mut writes);
            // Now and then a woman joins the center.
            if self.chance(45) {
                let opening = Decimal::from(self.between(1, 5)) * whole(100_000);
                self.new_member(*center, day, opening, &mut writes);
            }
        }
        self.write_offs(day, &meeting, &mut writes);
        self.disburse(day, &meeting, &mut writes);
        writes
    }

    /// One center meeting: a collection sheet, then members leaving and
    /// voluntary withdrawals.
    fn meeting(&mut self, center: usize, day: NaiveDate, writes: &mut Vec<(Write, Pending)>) {
        let mut lines = Vec::new();
        let mut leaving = Vec::new();
        let members = self.centers[center].members.clone();
        for m in members {
            if self.members[m].left {
                continue;
            }
            let misses = self.chance(20);
            let mut repayments = Vec::new();
            for &l in &self.members[m].active.clone() {
                let loan = &self.loans[l];
                if loan.written_off.is_some() {
                    // A written-off loan: now and then a recovery.
                    let left = loan.written_off.unwrap_or_default() - loan.recovered;
                    if left > Decimal::ZERO && self.chance(15) {
                        let part = round_to(
                            left * Decimal::from(self.between(20, 60)) / Decimal::ONE_HUNDRED,
                            THOUSAND,
                        )
                        .clamp(Decimal::ONE, left);
                        repayments.push((l, part));
                    }
                    continue;
                }
                let due = loan.due_on(day);
                let pays = match loan.behaviour {
                    Behaviour::Regular => !misses,
                    Behaviour::Late { from, weeks } => {
                        day < from || day >= from + Days::new(u64::from(weeks) * 7)
                    }
                    Behaviour::Defaults { from } => day < from,
                };
                if pays && due > Decimal::ZERO {
                    repayments.push((l, due));
                }
            }
            let compulsory = if misses {
                Decimal::ZERO
            } else if self.members[m].active.is_empty() {
                whole(10_000)
            } else {
                self.members[m]
                    .active
                    .iter()
                    .map(|l| {
                        whole(
                            self.preset.products[self.loans[*l].product].compulsory_per_installment,
                        )
                    })
                    .max()
                    .unwrap_or_default()
            };
            let saves = self.members[m].voluntary.is_some();
            let voluntary = match saves {
                true if !misses && self.chance(400) => {
                    let base = Decimal::from(self.between(20, 80)) * whole(THOUSAND);
                    self.week_voluntary_base += base;
                    round_to(base * self.voluntary_factor, THOUSAND)
                }
                _ => Decimal::ZERO,
            };
            let member_id = self.members[m].id.clone();
            let mut deposit = (compulsory > Decimal::ZERO)
                .then(|| (self.members[m].compulsory.clone(), compulsory));
            for (l, amount) in &repayments {
                lines.push(pb::CollectionLine {
                    member_id: member_id.clone(),
                    loan_id: self.loans[*l].id.clone(),
                    repayment: money(*amount),
                    savings_account_id: deposit.as_ref().map(|d| d.0.clone()).unwrap_or_default(),
                    deposit: deposit.take().and_then(|d| money(d.1)),
                });
            }
            if let Some((account, amount)) = deposit {
                lines.push(pb::CollectionLine {
                    member_id: member_id.clone(),
                    loan_id: String::new(),
                    repayment: None,
                    savings_account_id: account,
                    deposit: money(amount),
                });
            }
            if voluntary > Decimal::ZERO {
                lines.push(pb::CollectionLine {
                    member_id: member_id.clone(),
                    loan_id: String::new(),
                    repayment: None,
                    savings_account_id: self.members[m].voluntary.clone().unwrap_or_default(),
                    deposit: money(voluntary),
                });
            }
            // The model's own books.
            let member = &mut self.members[m];
            member.compulsory_balance += compulsory;
            member.voluntary_balance += voluntary;
            self.savings += compulsory + voluntary;
            self.week_other += compulsory;
            for (l, amount) in repayments {
                let loan = &mut self.loans[l];
                if loan.written_off.is_some() {
                    loan.recovered += amount;
                    continue;
                }
                loan.paid += amount;
                if loan.paid == loan.total {
                    self.members[m].active.retain(|a| *a != l);
                    if self.members[m].active.is_empty() && self.chance(50) {
                        leaving.push(m);
                    }
                }
            }
        }
        if !lines.is_empty() {
            let context = self.context();
            writes.push((
                Write::RecordCollectionSheet(pb::RecordCollectionSheetRequest {
                    context,
                    center_id: self.centers[center].id.clone(),
                    meeting_date: day.to_string(),
                    lines,
                }),
                Pending::None,
            ));
            self.tally.sheets += 1;
        }
        for m in leaving {
            self.leave(m, day, writes);
        }
        // A few members take some of their voluntary savings out.
        let members = self.centers[center].members.clone();
        for m in members {
            let balance = self.members[m].voluntary_balance;
            if self.members[m].left || balance < whole(100_000) || !self.chance(15) {
                continue;
            }
            let amount = round_to(
                balance * Decimal::from(self.between(20, 60)) / Decimal::ONE_HUNDRED,
                THOUSAND,
            );
            if amount > Decimal::ZERO && amount <= balance {
                let account = self.members[m].voluntary.clone().unwrap_or_default();
                self.withdraw(&account, amount, day, writes);
                self.members[m].voluntary_balance -= amount;
            }
        }
    }

    fn withdraw(
        &mut self,
        account: &str,
        amount: Decimal,
        day: NaiveDate,
        writes: &mut Vec<(Write, Pending)>,
    ) {
        let context = self.context();
        writes.push((
            Write::WithdrawSavings(pb::WithdrawSavingsRequest {
                context,
                account_id: account.to_owned(),
                amount: money(amount),
                effective_date: day.to_string(),
            }),
            Pending::None,
        ));
        self.savings -= amount;
        self.week_other -= amount;
    }

    /// A member with no loan leaves and takes her savings.
    fn leave(&mut self, m: usize, day: NaiveDate, writes: &mut Vec<(Write, Pending)>) {
        let member = self.members[m].clone();
        if member.compulsory_balance > Decimal::ZERO {
            self.withdraw(&member.compulsory, member.compulsory_balance, day, writes);
        }
        if let Some(account) = &member.voluntary
            && member.voluntary_balance > Decimal::ZERO
        {
            self.withdraw(account, member.voluntary_balance, day, writes);
        }
        let member = &mut self.members[m];
        member.compulsory_balance = Decimal::ZERO;
        member.voluntary_balance = Decimal::ZERO;
        member.left = true;
    }

    fn write_offs(
        &mut self,
        day: NaiveDate,
        meeting: &[usize],
        writes: &mut Vec<(Write, Pending)>,
    ) {
        for l in 0..self.loans.len() {
            let loan = &self.loans[l];
            if loan.written_off.is_some()
                || !matches!(loan.behaviour, Behaviour::Defaults { .. })
                || !meeting.contains(&self.members[loan.member].center)
                || loan.paid == loan.total
            {
                continue;
            }
            let Some(oldest) = loan.oldest_unpaid() else {
                continue;
            };
            if (day - oldest).num_days() > WRITE_OFF_AFTER_DAYS {
                let loan_id = loan.id.clone();
                let context = self.context();
                writes.push((
                    Write::WriteOffLoan(pb::WriteOffLoanRequest {
                        context,
                        loan_id,
                        reason: "no payment for six months; group guarantee exhausted".to_owned(),
                        effective_date: day.to_string(),
                    }),
                    Pending::WriteOff { loan: l },
                ));
                self.loans[l].written_off = Some(Decimal::ZERO);
            }
        }
    }

    /// The day's loans: renewals and first loans among the members meeting
    /// today; new members join when there are not enough of them.
    fn disburse(&mut self, day: NaiveDate, meeting: &[usize], writes: &mut Vec<(Write, Pending)>) {
        let count = self.quota.get(&day).copied().unwrap_or(0);
        if count == 0 || meeting.is_empty() {
            return;
        }
        let year = day.year();
        let Some(plan) = self.preset.year(year).cloned() else {
            return;
        };
        for _ in 0..count {
            let product = self.choose_product();
            let borrower = self.choose_borrower(product, meeting);
            let m = match borrower {
                Some(m) => m,
                None => {
                    let center = self.center_with_room(day, meeting, writes);
                    self.new_member(center, day, Decimal::ZERO, writes)
                }
            };
            let (done_amount, done_count) = self.disbursed.get(&year).copied().unwrap_or_default();
            let left_count = plan.loans.saturating_sub(done_count).max(1);
            let average = (plan.amount - done_amount) / Decimal::from(left_count);
            let plan_product = self.preset.products[product].clone();
            let spread = Decimal::from(self.between(70, 130));
            let mut principal = if left_count == 1 {
                round_to(average, THOUSAND)
            } else {
                round_to(
                    average * Decimal::from(plan_product.size_percent) * spread
                        / Decimal::from(10_000),
                    PRINCIPAL_STEP,
                )
            };
            principal = principal.clamp(
                whole(plan_product.principal_min),
                whole(plan_product.principal_max),
            );
            self.disbursed
                .insert(year, (done_amount + principal, done_count + 1));
            let step = if plan_product.weekly { 7 } else { 14 };
            let context = self.context();
            writes.push((
                Write::DisburseLoan(pb::DisburseLoanRequest {
                    context,
                    member_id: self.members[m].id.clone(),
                    loan: Some(pb::disburse_loan_request::Loan::Application(
                        pb::LoanApplication {
                            product_id: plan_product.id.to_owned(),
                            principal: money(principal),
                            approved_principal: String::new(),
                            annual_interest_rate_percent: String::new(),
                            installment_count: 0,
                            first_repayment_date: (day + Days::new(step)).to_string(),
                        },
                    )),
                    disbursed_on: day.to_string(),
                }),
                Pending::Loan { member: m, product },
            ));
            // Held by the member from now: she is not chosen twice for it.
            self.members[m].active.push(usize::MAX - product);
        }
    }

    fn choose_product(&mut self) -> usize {
        let roll = self.between(1, 100) as u32;
        let mut cumulative = 0;
        for (i, p) in self.preset.products.iter().enumerate() {
            cumulative += p.share_percent;
            if roll <= cumulative {
                return i;
            }
        }
        0
    }

    /// A member meeting today who holds no loan of `product`: first those
    /// with no loan at all, in a seeded order.
    fn choose_borrower(&mut self, product: usize, meeting: &[usize]) -> Option<usize> {
        let holds = |model: &Model, m: usize| {
            model.members[m].active.iter().any(|&l| {
                l == usize::MAX - product
                    || (l < model.loans.len() && model.loans[l].product == product)
            })
        };
        let candidates: Vec<usize> = meeting
            .iter()
            .flat_map(|c| self.centers[*c].members.iter().copied())
            .filter(|&m| !self.members[m].left && !holds(self, m))
            .collect();
        let free: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&m| self.members[m].active.is_empty())
            .collect();
        let pool = if free.is_empty() { candidates } else { free };
        if pool.is_empty() {
            return None;
        }
        let pick = self.rng.rand_range(0..pool.len() as u64) as usize;
        Some(pool[pick])
    }

    fn center_with_room(
        &mut self,
        day: NaiveDate,
        meeting: &[usize],
        writes: &mut Vec<(Write, Pending)>,
    ) -> usize {
        let capacity =
            (self.preset.groups_per_center * self.preset.members_per_group) as usize + 10;
        match meeting
            .iter()
            .copied()
            .find(|c| self.centers[*c].members.len() < capacity)
        {
            Some(center) => center,
            None => {
                // A new center meeting on the same weekday.
                let center = self.new_center(day, writes);
                self.centers[center].weekday = day.weekday();
                center
            }
        }
    }

    /// Takes in the server's reply to a command that was waiting on it.
    pub fn settle(
        &mut self,
        pending: Pending,
        reply: &pb::batch_result::Result,
        day: NaiveDate,
    ) -> anyhow::Result<()> {
        match (pending, reply) {
            (Pending::None, _) => {}
            (Pending::Loan { member, product }, pb::batch_result::Result::DisburseLoan(r)) => {
                let schedule: Vec<(NaiveDate, Decimal)> = r
                    .schedule
                    .iter()
                    .map(|i| {
                        let due = i.due_date.parse::<NaiveDate>()?;
                        let total = i
                            .total
                            .as_ref()
                            .map(|m| m.amount.parse::<Decimal>())
                            .transpose()?
                            .unwrap_or_default();
                        Ok((due, total))
                    })
                    .collect::<anyhow::Result<_>>()?;
                let total = schedule.iter().map(|(_, t)| *t).sum();
                let late = u64::from(self.preset.late_per_mille);
                let default = u64::from(self.preset.default_per_mille);
                let roll = self.rng.rand_range(0..1000);
                let span = schedule.len() as u64;
                let start_at = |model: &mut Model| {
                    let index = model.between(2, span.saturating_sub(2).max(2)) as usize;
                    schedule
                        .get(index.min(schedule.len() - 1))
                        .map(|s| s.0)
                        .unwrap_or(day)
                };
                let behaviour = if roll < default {
                    Behaviour::Defaults {
                        from: start_at(self),
                    }
                } else if roll < default + late {
                    let weeks = self.between(3, 16) as u32;
                    Behaviour::Late {
                        from: start_at(self),
                        weeks,
                    }
                } else {
                    Behaviour::Regular
                };
                let index = self.loans.len();
                self.loans.push(Loan {
                    id: r.loan_id.clone(),
                    member,
                    product,
                    schedule,
                    total,
                    paid: Decimal::ZERO,
                    behaviour,
                    written_off: None,
                    recovered: Decimal::ZERO,
                });
                let active = &mut self.members[member].active;
                if let Some(slot) = active.iter_mut().find(|l| **l == usize::MAX - product) {
                    *slot = index;
                }
                self.tally.loans += 1;
            }
            (Pending::WriteOff { loan }, pb::batch_result::Result::WriteOffLoan(r)) => {
                let principal = r
                    .principal_written_off
                    .as_ref()
                    .map(|m| m.amount.parse::<Decimal>())
                    .transpose()?
                    .unwrap_or_default();
                self.loans[loan].written_off = Some(principal);
                self.tally.write_offs += 1;
            }
            (Pending::Interest, pb::batch_result::Result::PostSavingsInterest(r)) => {
                self.credit_interest(&r.credits)?;
            }
            (pending, reply) => anyhow::bail!("the reply {reply:?} does not fit {pending:?}"),
        }
        Ok(())
    }

    /// Branch savings as the simulator moved them (the ledger's figure must agree).
    pub fn savings(&self) -> Decimal {
        self.savings
    }

    /// The branch's cash as the simulator moved it (the ledger's must agree).
    pub fn cash(&self) -> Decimal {
        self.cash
    }

    /// The savings products the branch's accounts earn under, from the
    /// first day: illustrative rates in the range Vietnamese microfinance
    /// pays (compulsory 3%, voluntary 5% a year), posted monthly in whole dong.
    pub fn savings_products(&mut self) -> Vec<pb::DefineSavingsProductRequest> {
        let start = self.preset.start.to_string();
        [
            (
                "SAVE-COMP",
                "Tiết kiệm bắt buộc",
                pb::SavingsKind::Compulsory,
                "3",
            ),
            (
                "SAVE-VOL",
                "Tiết kiệm tự nguyện",
                pb::SavingsKind::Voluntary,
                "5",
            ),
        ]
        .into_iter()
        .map(|(id, name, kind, rate)| pb::DefineSavingsProductRequest {
            context: self.context(),
            product_id: id.to_owned(),
            name: name.to_owned(),
            kind: kind as i32,
            interest: Some(pb::SavingsInterestRules {
                annual_rate_percent: rate.to_owned(),
                posting: pb::PostingFrequency::Monthly as i32,
                rounding_multiple: "1".to_owned(),
                rounding_mode: pb::RoundingMode::HalfEven as i32,
            }),
            effective_from: start.clone(),
        })
        .collect()
    }

    /// The month-end work due on `day`, the first of a month: posting the
    /// interest of the month before, and at a new year, closing the year.
    pub fn month_end(&mut self, day: NaiveDate) -> Vec<(Write, Pending)> {
        let Some(period_end) = day.pred_opt() else {
            return Vec::new();
        };
        if day.day() != 1 || period_end < self.preset.start {
            return Vec::new();
        }
        let branch_id = self.preset.branch_id.to_owned();
        let mut writes = vec![(
            Write::PostSavingsInterest(pb::PostSavingsInterestRequest {
                context: self.context(),
                branch_id: branch_id.clone(),
                period_end: period_end.to_string(),
            }),
            Pending::Interest,
        )];
        if day.month() == 1 {
            writes.push((
                Write::ClosePeriod(pb::ClosePeriodRequest {
                    context: self.context(),
                    branch_id,
                    through: period_end.to_string(),
                }),
                Pending::None,
            ));
        }
        writes
    }

    /// Credits the interest the ledger posted to the members' balances.
    fn credit_interest(&mut self, credits: &[pb::InterestCredit]) -> anyhow::Result<()> {
        let accounts: BTreeMap<String, (usize, bool)> = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(m, member)| {
                let voluntary = member.voluntary.clone().map(|v| (v, (m, true)));
                std::iter::once((member.compulsory.clone(), (m, false))).chain(voluntary)
            })
            .collect();
        for credit in credits {
            let amount: Decimal = credit
                .amount
                .as_ref()
                .map(|m| m.amount.parse::<Decimal>())
                .transpose()?
                .unwrap_or_default();
            let Some(&(m, voluntary)) = accounts.get(&credit.account_id) else {
                anyhow::bail!(
                    "interest credited to {}, an account the simulator never opened",
                    credit.account_id
                );
            };
            let member = &mut self.members[m];
            if voluntary {
                member.voluntary_balance += amount;
            } else {
                member.compulsory_balance += amount;
            }
            self.savings += amount;
        }
        Ok(())
    }
}

/// The catalogue rules of a planned product at `rate` percent.
fn product_rules(p: &ProductPlan, rate: u32) -> pb::ProductRules {
    pb::ProductRules {
        name: p.name.to_owned(),
        currency: "VND".to_owned(),
        principal_min: p.principal_min.to_string(),
        principal_max: p.principal_max.to_string(),
        rate_min_percent: rate.to_string(),
        rate_max_percent: rate.to_string(),
        interest_method: if p.declining {
            pb::InterestMethod::DecliningBalance
        } else {
            pb::InterestMethod::Flat
        } as i32,
        amortization: if p.equal_principal {
            pb::Amortization::EqualPrincipal
        } else {
            pb::Amortization::EqualInstallments
        } as i32,
        interest_period: pb::InterestPeriod::PerPeriod as i32,
        installment_basis: pb::InstallmentBasis::NominalPeriodRate as i32,
        repayment_frequency: if p.weekly {
            pb::RepaymentFrequency::Weekly
        } else {
            pb::RepaymentFrequency::Fortnightly
        } as i32,
        installments_min: p.installments,
        installments_max: p.installments,
        installments_default: p.installments,
        rounding_decimal_places: None,
        rounding_multiple: "1000".to_owned(),
        rounding_mode: pb::RoundingMode::HalfEven as i32,
        grace_on_principal: p.grace_on_principal,
        grace_on_interest: 0,
        compulsory_savings: Some(pb::CompulsorySavingsRule {
            rule: Some(pb::compulsory_savings_rule::Rule::FixedPerInstallment(
                p.compulsory_per_installment.to_string(),
            )),
        }),
        arrears_tolerance_days: 7,
        arrears_tolerance_amount: "10000".to_owned(),
        allocation_order: Vec::new(),
        fees: if p.fee > 0 {
            vec![pb::Fee {
                code: "application".to_owned(),
                amount: Some(pb::fee::Amount::Fixed(p.fee.to_string())),
                collection: pb::FeeCollection::AtDisbursement as i32,
            }]
        } else {
            Vec::new()
        },
        tranches_max: 1,
    }
}
