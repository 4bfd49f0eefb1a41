//! The PostgreSQL store beside the embedded one, in one run: durable
//! repayments through `Ledger::submit_many` at batch sizes 1, 10, 100 and
//! 1,000 (one durable barrier per batch: an `fdatasync` of the journal file,
//! or one committed statement), each store's ledger set up alike.
//!
//! The database is the one `MFI_BENCH_POSTGRES_URL` names (`scripts/bench-all`
//! starts a throw-away cluster with `scripts/pg-cluster` and sets it);
//! without it the benchmark says so and measures nothing.
//!
//! `MFI_BENCH_POSTGRES_URL=postgresql://... cargo bench --bench stores`

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use mfi_ledger::ledger::Ledger;
use mfi_ledger::store::{DiskStore, PostgresOptions, PostgresStore, Store};

use support::{bench_config, ledger_with_members_on, repayment};

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const MEMBERS: usize = 1000;

fn stores(c: &mut Criterion) {
    let Ok(url) = std::env::var("MFI_BENCH_POSTGRES_URL") else {
        eprintln!(
            "stores: MFI_BENCH_POSTGRES_URL is not set, nothing measured (scripts/bench-all \
             starts a PostgreSQL and sets it)"
        );
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let embedded_dir = tempfile::tempdir().unwrap();
    let postgres_dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(DiskStore::open(embedded_dir.path()).unwrap());
    let postgres: Arc<dyn Store> =
        Arc::new(PostgresStore::open(postgres_dir.path(), &PostgresOptions::new(url)).unwrap());
    let ledgers: [(&str, Arc<Ledger>); 2] = [
        ("embedded", {
            let dir = embedded_dir.path();
            runtime.block_on(ledger_with_members_on(
                dir,
                embedded,
                bench_config(),
                MEMBERS,
                true,
            ))
        }),
        ("postgres", {
            let dir = postgres_dir.path();
            runtime.block_on(ledger_with_members_on(
                dir,
                postgres,
                bench_config(),
                MEMBERS,
                true,
            ))
        }),
    ];
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("stores");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for batch in BATCH_SIZES {
        group.throughput(Throughput::Elements(batch as u64));
        for (store, ledger) in &ledgers {
            group.bench_with_input(BenchmarkId::new(*store, batch), &batch, |b, &batch| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let commands = (0..batch)
                            .map(|_| {
                                repayment(next.fetch_add(1, Ordering::Relaxed) % MEMBERS, 1000)
                            })
                            .collect();
                        let start = Instant::now();
                        let results = runtime.block_on(ledger.submit_many(commands));
                        elapsed += start.elapsed();
                        assert!(results.iter().all(Result::is_ok));
                    }
                    elapsed
                })
            });
        }
    }
    group.finish();
    for (_, ledger) in ledgers {
        ledger.shutdown();
    }
}

criterion_group!(benches, stores);

fn main() {
    support::criterion_main(&[benches]);
}
