//! Query latency at journal sizes 10^4, 10^5 and 10^6: an account balance, a
//! loan with its schedule as of a date, and a branch's totals for a year
//! beside the year before. None of them may scan the journal, so the figures
//! at 10^6 entries should be within noise of those at 10^4.
//!
//! `cargo bench --bench queries` (builds a 10^6-entry journal first: about a
//! minute on a 2-core machine). `cargo test` runs it as a smoke run
//! (`support::smoke`): 5 x 10^2, 10^3 and 10^4 entries of 100 members.

mod support;

use std::time::Duration;

use chrono::NaiveDate;
use criterion::{BenchmarkId, Criterion};
use mfi_ledger::domain::account::AccountId;
use mfi_ledger::domain::ids::BranchId;

use support::{FixedClock, grow_journal, ledger_with_members, loan_id, members, savings_id, sized};

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn queries(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = runtime.block_on(ledger_with_members(dir.path(), members(), true));
    let branch = BranchId::parse("b", "TB").unwrap();
    let cash = AccountId::Cash(branch.clone());
    let savings = AccountId::Savings(savings_id(7));
    let now = mfi_ledger::ledger::Clock::now(&FixedClock);
    let mut group = c.benchmark_group("queries");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    // Grow the journal in three phases with dates in order: to 10^4, 10^5,
    // 10^6 (a smoke run: 5 x 10^2, 10^3, 10^4; its 100 members' setup is
    // about 300).
    let phases: [(usize, &str, u64); 3] = [
        (sized(10_000, 500), "2024-01-02", 9),
        (sized(100_000, 1_000), "2024-01-11", 49),
        (sized(1_000_000, 10_000), "2024-03-01", 120),
    ];
    for (size, first, days) in phases {
        let have = ledger.read(|s| s.last_sequence()) as usize;
        runtime.block_on(grow_journal(
            &ledger,
            members(),
            size.saturating_sub(have),
            date(first),
            days,
        ));
        let entries = ledger.read(|s| s.last_sequence());
        eprintln!("journal now has {entries} entries");
        group.bench_with_input(BenchmarkId::new("balance", size), &size, |b, _| {
            b.iter(|| ledger.read(|s| (s.balance(&cash), s.balance(&savings))))
        });
        group.bench_with_input(BenchmarkId::new("loan", size), &size, |b, _| {
            b.iter(|| {
                ledger.read(|s| {
                    s.loan_view(&loan_id(42), Some(date("2024-05-01")), now)
                        .unwrap()
                        .arrears
                        .principal_overdue
                })
            })
        });
        group.bench_with_input(
            BenchmarkId::new("branch_totals_year", size),
            &size,
            |b, _| {
                b.iter(|| {
                    ledger.read(|s| {
                        let year = s
                            .period_figures(&branch, date("2024-01-01"), date("2024-12-31"))
                            .unwrap();
                        let before = s
                            .period_figures(&branch, date("2023-01-01"), date("2023-12-31"))
                            .unwrap();
                        (year.amount_disbursed, before.savings_balance)
                    })
                })
            },
        );
    }
    group.finish();
    ledger.shutdown();
}

fn main() {
    support::criterion_main("queries", &[queries]);
}
