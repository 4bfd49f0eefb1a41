//! The books' point-in-time reads (issue "The books"), in one run, at
//! journal sizes 10^4, 10^5 and 10^6 (repayments and deposits of 1,000
//! members, dates in order, as `benches/queries.rs` grows them):
//!
//! - a balance as of a date and as of a sequence number (the branch's cash,
//!   posted to by every entry, and one member's savings);
//! - the branch's trial balance as of a date and as of a sequence number;
//! - the balance sheet and the income statement of a year;
//! - the branch's totals and portfolio quality as of a date, and as of a
//!   sequence number (from the day log), against the baseline a ledger
//!   without the day log would have: replaying the journal up to that
//!   entry, timed once per size (the run checks both give the same figures);
//! - the baseline a ledger without the books' histories would have: the
//!   same cash balance as of a date worked out by scanning the journal's
//!   entries (`Ledger::entries`, a page of 10,000 at a time), timed once
//!   per size.
//!
//! Besides criterion's output, the run writes its table to
//! `target/bench/books.md`. `cargo bench --bench books` (about 2 minutes on
//! a 2-core machine). `cargo test` runs it as a smoke run (`support::smoke`):
//! 10^3, 2 x 10^3 and 5 x 10^3 entries of 100 members, whose closed records
//! are let go of and read back as a full run's are.

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use criterion::{BenchmarkId, Criterion};
use mfi_ledger::domain::account::AccountId;
use mfi_ledger::domain::books::{AsOf, Balance};
use mfi_ledger::domain::entry::Side;
use mfi_ledger::domain::ids::BranchId;
use mfi_ledger::domain::state::LedgerState;
use mfi_ledger::domain::totals::PeriodFigures;
use mfi_ledger::ledger::Ledger;

use support::{grow_journal, ledger_with_members, members, out_dir, savings_id, sized};

/// The journal's sizes, and the dates their entries spread over.
fn sizes() -> [(usize, &'static str, u64); 3] {
    [
        (sized(10_000, 1_000), "2024-01-02", 9),
        (sized(100_000, 2_000), "2024-01-11", 49),
        (sized(1_000_000, 5_000), "2024-03-01", 120),
    ]
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// The cash balance as of `on`, the way a ledger without histories would
/// work it out: every entry of the journal, read and summed.
fn scanned(ledger: &Ledger, cash: &AccountId, on: NaiveDate) -> Balance {
    let mut total = Balance::default();
    let mut next = 1;
    loop {
        let page = ledger.entries(next, 10_000).unwrap();
        let Some(last) = page.last() else {
            return total;
        };
        next = last.body.sequence + 1;
        for entry in page.iter().filter(|e| e.body.effective_date <= on) {
            for posting in entry.body.postings.iter().filter(|p| p.account == *cash) {
                match posting.side {
                    Side::Debit => total.debits += posting.amount,
                    Side::Credit => total.credits += posting.amount,
                }
            }
        }
    }
}

fn median_micros(c: &Criterion, group: &str, name: &str, size: usize) -> f64 {
    let _ = c;
    let path = std::path::Path::new("target/criterion")
        .join(group)
        .join(name)
        .join(size.to_string())
        .join("new/estimates.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["median"]["point_estimate"].as_f64())
        .map_or(f64::NAN, |nanos| nanos / 1000.0)
}

/// The branch's totals over `from..=to` as they stood after entry `upto`,
/// the way a ledger without the day log would work them out: the journal
/// replayed up to that entry into a fresh state.
fn replayed_totals(
    ledger: &Ledger,
    branch: &BranchId,
    upto: u64,
    from: NaiveDate,
    to: NaiveDate,
) -> PeriodFigures {
    let mut state = LedgerState::new();
    state.stop_tracking_changes();
    let mut next = 1;
    while next <= upto {
        let page = ledger.entries(next, 10_000).unwrap();
        for entry in page.iter().filter(|e| e.body.sequence <= upto) {
            state.apply(entry).unwrap();
        }
        next = page.last().unwrap().body.sequence + 1;
    }
    state.period_figures(branch, from, to).unwrap()
}

const READS: [&str; 12] = [
    "branch_totals_on_date",
    "branch_totals_at_sequence",
    "branch_totals_at_sequence_cold",
    "portfolio_quality_at_sequence",
    "cash_on_date",
    "cash_at_sequence",
    "savings_on_date",
    "trial_balance_on_date",
    "trial_balance_at_sequence",
    "balance_sheet",
    "income_statement",
    "balance_now",
];

fn main() {
    if support::filtered_out("books") {
        return;
    }
    mfi_ledger::allocator::configure();
    let mut c = support::criterion();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = runtime.block_on(ledger_with_members(dir.path(), members(), true));
    let branch = BranchId::parse("b", "TB").unwrap();
    let cash = AccountId::Cash(branch.clone());
    let savings = AccountId::Savings(savings_id(7));
    let mut scans = Vec::new();
    let mut replays = Vec::new();
    let mut day_log_bytes = Vec::new();
    for (size, first, days) in sizes() {
        let have = ledger.read(|s| s.last_sequence()) as usize;
        runtime.block_on(grow_journal(
            &ledger,
            members(),
            size.saturating_sub(have),
            date(first),
            days,
        ));
        let head = ledger.read(|s| s.last_sequence());
        eprintln!("journal now has {head} entries");
        // The day log's closed chunks leave memory once a checkpoint has
        // saved them (at most `checkpoint_interval` away): wait for it, so
        // that the cold reads below read the state cache.
        let let_go = || {
            ledger.read(|s| {
                let log = s.day_log();
                let closed = log.closed_keys().count();
                let all = log.closed_keys().all(|(b, first)| log.is_let_go(b, first));
                (closed, all)
            })
        };
        for _ in 0..300 {
            if let_go().1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A smoke run reads what a full run does: at its largest size,
        // closed chunks (and accounts' closed records) let go of, and read
        // back by the reads below.
        if support::smoke() && size == sizes()[2].0 {
            let (closed, all) = let_go();
            assert!(
                closed > 0 && all,
                "the smoke run's ledger let go of its closed chunks ({closed} closed, all let go: {all})"
            );
        }
        // A date and a sequence in the middle of the history.
        let middle = date(first);
        let half = head / 2;
        let mut group = c.benchmark_group("books");
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        // Read as `GetBalance` reads it: records the ledger let go of are
        // read back from the state cache.
        let account = |s: &mfi_ledger::domain::state::LedgerState, a: &AccountId, as_of| {
            s.books()
                .account_as_of(a, as_of)
                .expect("the account's records read back")
        };
        group.bench_with_input(BenchmarkId::new("cash_on_date", size), &size, |b, _| {
            b.iter(|| ledger.read(|s| account(s, &cash, AsOf::Date(middle))))
        });
        group.bench_with_input(BenchmarkId::new("cash_at_sequence", size), &size, |b, _| {
            b.iter(|| ledger.read(|s| account(s, &cash, AsOf::Sequence(half))))
        });
        group.bench_with_input(BenchmarkId::new("savings_on_date", size), &size, |b, _| {
            b.iter(|| ledger.read(|s| account(s, &savings, AsOf::Date(middle))))
        });
        group.bench_with_input(BenchmarkId::new("balance_now", size), &size, |b, _| {
            b.iter(|| ledger.read(|s| s.balance(&cash)))
        });
        group.bench_with_input(
            BenchmarkId::new("trial_balance_on_date", size),
            &size,
            |b, _| {
                b.iter(|| {
                    ledger.read(|s| s.books().trial_balance(Some(&branch), AsOf::Date(middle)))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("trial_balance_at_sequence", size),
            &size,
            |b, _| {
                b.iter(|| {
                    ledger.read(|s| s.books().trial_balance(Some(&branch), AsOf::Sequence(half)))
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("balance_sheet", size), &size, |b, _| {
            b.iter(|| {
                ledger.read(|s| {
                    (
                        s.books().balance_sheet(Some(&branch), date("2024-12-31")),
                        s.books().balance_sheet(Some(&branch), date("2023-12-31")),
                    )
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("income_statement", size), &size, |b, _| {
            b.iter(|| {
                ledger.read(|s| {
                    (
                        s.books().income_statement(
                            Some(&branch),
                            date("2024-01-01"),
                            date("2024-12-31"),
                        ),
                        s.books().income_statement(
                            Some(&branch),
                            date("2023-01-01"),
                            date("2023-12-31"),
                        ),
                    )
                })
            })
        });
        let year = date("2024-01-01");
        group.bench_with_input(
            BenchmarkId::new("branch_totals_on_date", size),
            &size,
            |b, _| b.iter(|| ledger.read(|s| s.period_figures(&branch, year, middle).unwrap())),
        );
        group.bench_with_input(
            BenchmarkId::new("branch_totals_at_sequence", size),
            &size,
            |b, _| {
                b.iter(|| {
                    ledger.read(|s| {
                        s.period_figures_at(&branch, year, middle, Some(half))
                            .unwrap()
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("portfolio_quality_at_sequence", size),
            &size,
            |b, _| {
                b.iter(|| {
                    ledger.read(|s| {
                        s.portfolio_quality_at(Some(&branch), middle, year, middle, Some(half))
                            .unwrap()
                    })
                })
            },
        );
        // Each read as of an entry in a chunk of the day log not read
        // recently (64 spread over the journal, the last 8 read kept): one
        // record read from the state cache and decoded, then the chunk's
        // changes replayed as above.
        let spread: Vec<u64> = (0..64).map(|k| 1 + k * head / 64).collect();
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::new("branch_totals_at_sequence_cold", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let sequence = spread[next % spread.len()];
                    next += 1;
                    ledger.read(|s| {
                        s.period_figures_at(&branch, year, middle, Some(sequence))
                            .unwrap()
                    })
                })
            },
        );
        group.finish();
        // The replay baseline, timed once (it applies half the journal).
        let started = Instant::now();
        let by_replay = replayed_totals(&ledger, &branch, half, year, middle);
        let replay = started.elapsed();
        let logged = ledger.read(|s| {
            s.period_figures_at(&branch, year, middle, Some(half))
                .unwrap()
        });
        assert_eq!(by_replay, logged, "the replay and the day log agree");
        replays.push(replay);
        day_log_bytes.push(ledger.read(|s| s.day_log().bytes()) as f64 / head as f64);
        // The scan baseline, timed once (it reads the whole journal).
        let started = Instant::now();
        let by_scan = scanned(&ledger, &cash, middle);
        let scan = started.elapsed();
        let indexed = ledger.read(|s| account(s, &cash, AsOf::Date(middle)));
        assert_eq!(by_scan, indexed, "the scan and the history agree");
        scans.push((size, scan));
    }
    ledger.shutdown();
    c.final_summary();

    let mut table = String::from(
        "| read (µs) | 10^4 entries | 10^5 entries | 10^6 entries |\n|---|---:|---:|---:|\n",
    );
    for read in READS {
        let cells: Vec<String> = sizes()
            .iter()
            .map(|(size, ..)| format!("{:.2}", median_micros(&c, "books", read, *size)))
            .collect();
        writeln!(table, "| {read} | {} |", cells.join(" | ")).unwrap();
    }
    let scan_cells: Vec<String> = scans
        .iter()
        .map(|(_, scan)| format!("{:.0}", scan.as_secs_f64() * 1e6))
        .collect();
    writeln!(
        table,
        "| cash on a date by scanning the journal (baseline) | {} |",
        scan_cells.join(" | ")
    )
    .unwrap();
    let ratios: Vec<String> = scans
        .iter()
        .map(|(size, scan)| {
            let indexed = median_micros(&c, "books", "cash_on_date", *size);
            format!("{:.0}x", scan.as_secs_f64() * 1e6 / indexed)
        })
        .collect();
    writeln!(
        table,
        "| baseline ÷ cash_on_date | {} |",
        ratios.join(" | ")
    )
    .unwrap();
    let replay_cells: Vec<String> = replays
        .iter()
        .map(|replay| format!("{:.0}", replay.as_secs_f64() * 1e6))
        .collect();
    writeln!(
        table,
        "| branch totals as of an entry by replaying the journal (baseline) | {} |",
        replay_cells.join(" | ")
    )
    .unwrap();
    let ratios: Vec<String> = sizes()
        .iter()
        .zip(&replays)
        .map(|((size, ..), replay)| {
            let logged = median_micros(&c, "books", "branch_totals_at_sequence", *size);
            format!("{:.0}x", replay.as_secs_f64() * 1e6 / logged)
        })
        .collect();
    writeln!(
        table,
        "| baseline ÷ branch_totals_at_sequence | {} |",
        ratios.join(" | ")
    )
    .unwrap();
    let cells: Vec<String> = day_log_bytes.iter().map(|b| format!("{b:.0}")).collect();
    writeln!(
        table,
        "| day log: bytes held in memory per entry (its closed chunks are in the state cache) | {} |",
        cells.join(" | ")
    )
    .unwrap();
    std::fs::write(out_dir().join("books.md"), &table).unwrap();
    println!("{table}");
}
