//! Durable write throughput in process: repayments, deposits and
//! disbursements through `Ledger::submit_many` at batch sizes 1, 10, 100 and
//! 1,000 (one durable barrier per batch; at 1,000, one per chunk of 256
//! entries, made while the next is decided), beside the storage limits measured
//! in the same run: the same encoded entries appended to a plain file with
//! one `fdatasync` per batch, and sled `apply_batch` + flush + `fdatasync`.
//!
//! Each ledger row runs on a ledger of its own, set up afresh (1,000
//! members, each with a savings account and a running 520-installment
//! loan), stopped cleanly and started again, as the mix benchmark's rows
//! are: its members hold what that row wrote, not what every row before
//! it wrote (each row runs for a fixed time, so a faster row before it
//! would hand it loans with more repayments on them), and no row times
//! the set-up's checkpoint.
//!
//! `cargo bench --bench write_path` (`cargo test` runs it as a smoke run,
//! `support::smoke`: each benchmark once, 100 members).

mod support;

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mfi_ledger::domain::command::Command;

use mfi_ledger::ledger::Ledger;
use mfi_ledger::store::DiskStore;
use support::{
    FixedClock, bench_config, deposit, disbursement, ledger_with_members, members, repayment,
};

/// Builds one command for a member.
type MakeCommand = fn(usize) -> Command;

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];

fn write_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let members = members();
    // As the mix benchmark's rows: the members and their loans set up,
    // written into the state cache by a clean stop, and the ledger started
    // again on them, so that no row times the set-up's checkpoint.
    let fresh_ledger = || {
        let dir = tempfile::tempdir().unwrap();
        runtime
            .block_on(ledger_with_members(dir.path(), members, true))
            .shutdown();
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let ledger = Ledger::start(store, Arc::new(FixedClock), bench_config()).unwrap();
        (dir, ledger)
    };
    // Real encoded entries (a repayment's journal record) for the baselines.
    let record = {
        let (_dir, ledger) = fresh_ledger();
        let sample = runtime.block_on(ledger.submit(repayment(0, 1000))).unwrap();
        ledger.shutdown();
        let mut record = sample.body.canonical_bytes();
        record.extend_from_slice(&sample.hash);
        record
    };

    let mut group = c.benchmark_group("durable_writes");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // The storage baselines first, on an idle disk, then every kind's rows
    // in turn, each on a ledger of its own, set up and started again
    // untimed.
    let kinds: [(&str, MakeCommand); 3] = [
        ("repayment", |member| repayment(member, 1000)),
        ("deposit", |member| deposit(member, 1000)),
        ("disbursement", disbursement),
    ];
    for batch in BATCH_SIZES {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::new("baseline_file_fdatasync", batch),
            &batch,
            |b, &batch| {
                let dir = tempfile::tempdir().unwrap();
                let mut file = File::create(dir.path().join("journal")).unwrap();
                let mut framed = Vec::new();
                framed.extend_from_slice(&(record.len() as u32).to_le_bytes());
                framed.extend_from_slice(&crc32fast::hash(&record).to_le_bytes());
                framed.extend_from_slice(&record);
                b.iter_custom(|iterations| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        let mut buffer = Vec::with_capacity(framed.len() * batch);
                        for _ in 0..batch {
                            buffer.extend_from_slice(&framed);
                        }
                        file.write_all(&buffer).unwrap();
                        file.sync_data().unwrap();
                    }
                    start.elapsed()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("baseline_sled_fdatasync", batch),
            &batch,
            |b, &batch| {
                let dir = tempfile::tempdir().unwrap();
                let db = sled::open(dir.path().join("sled")).unwrap();
                let db_file = File::open(dir.path().join("sled").join("db")).unwrap();
                let mut key = 0u64;
                b.iter_custom(|iterations| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        let mut sled_batch = sled::Batch::default();
                        for _ in 0..batch {
                            key += 1;
                            sled_batch.insert(&key.to_be_bytes(), record.as_slice());
                        }
                        db.apply_batch(sled_batch).unwrap();
                        db.flush().unwrap();
                        db_file.sync_data().unwrap();
                    }
                    start.elapsed()
                })
            },
        );
    }
    for (kind, make) in kinds {
        for batch in BATCH_SIZES {
            let (_dir, ledger) = fresh_ledger();
            let next = AtomicUsize::new(0);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(kind, batch), &batch, |b, &batch| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let commands = (0..batch)
                            .map(|_| make(next.fetch_add(1, Ordering::Relaxed) % members))
                            .collect();
                        let start = Instant::now();
                        let results = runtime.block_on(ledger.submit_many(commands));
                        elapsed += start.elapsed();
                        assert!(results.iter().all(Result::is_ok));
                    }
                    elapsed
                })
            });
            // Its state cache written through before the next row starts.
            ledger.shutdown();
        }
    }
    group.finish();
}

fn main() {
    support::criterion_main("write_path", &[write_path]);
}
