//! The provable journal's costs (issue 11), in one run:
//!
//! - `tree_writes`: durable repayments and deposits through
//!   `Ledger::submit_many` at batch 100 and 1,000 on a ledger keeping the
//!   Merkle tree (and signing checkpoints with the server's default policy)
//!   and on the same build's ledger on `DiskStore::open_without_tree`,
//!   interleaved: three rounds of each pair, the order alternating, so that
//!   the machine's noise falls on both;
//! - `proofs`: inclusion and consistency proofs at 10^4, 10^5 and 10^6
//!   leaves, from a tree file built from leaf hashes (`TreeFile::append`),
//!   and end to end through a real ledger (`Ledger::inclusion_proof`,
//!   `consistency_proof`) at 10^4 and 10^5 entries; random leaves and sizes;
//! - `checkpoints`: signing a checkpoint note (Ed25519), verifying one, and
//!   issuing one after each write (`Ledger::create_checkpoint`: the root, the
//!   signature, the append and `fdatasync` of `checkpoints.log`).
//!
//! Besides criterion's output, the run writes its tables (medians of the
//! measured samples, ratios, per-call p50/p99 latencies and proof sizes) to
//! `target/bench/proofs.md`. `BENCH_ONLY=tree_writes` (or `proofs`,
//! `checkpoints`) runs one group.
//!
//! `cargo bench --bench proofs` (about 2 minutes on a 2-core machine).
//! `cargo test` runs it as a smoke run (`support::smoke`): each benchmark
//! once, at the sizes of [`tree_sizes`] and [`ledger_sizes`] for it.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mfi_ledger::checkpoint::Checkpoint;
use mfi_ledger::domain::command::Command;
use mfi_ledger::domain::entry::Hash;
use mfi_ledger::domain::merkle;
use mfi_ledger::ledger::{CheckpointPolicy, Ledger, LedgerConfig};
use mfi_ledger::store::tree_file::TreeFile;
use mfi_ledger::store::{DiskStore, Store};
use tokio::runtime::Runtime;

use support::{
    bench_config, bench_log_signer, deposit, grow_journal, ledger_with_members_on, members,
    out_dir, repayment, sized,
};

/// Criterion samples per write and checkpoint benchmark.
const SAMPLES: usize = 10;
/// Pairs (with the tree, without it) per command kind and batch size.
fn rounds() -> usize {
    sized(3, 1)
}
const WRITE_BATCHES: [usize; 2] = [100, 1000];
/// Tree sizes of the tree-file proofs (a smoke run's smaller).
fn tree_sizes() -> [u64; 3] {
    sized([10_000, 100_000, 1_000_000], [1_000, 4_000, 16_000])
}

/// Journal sizes of the proofs through a ledger, and the dates their
/// entries spread over (as in `benches/queries.rs`; a smoke run's smaller).
fn ledger_sizes() -> [(u64, &'static str, u64); 2] {
    [
        (sized(10_000, 1_000), "2024-01-02", 9),
        (sized(100_000, 2_000), "2024-01-11", 49),
    ]
}

/// Random leaves (and first sizes) per tree size.
const PICKS: usize = 4096;

/// Proofs timed one by one per tree size, for p50 and p99.
fn per_call_count() -> usize {
    sized(20_000, 1_000)
}

/// Every `iter_custom` call, by benchmark: the last [`SAMPLES`] of a
/// benchmark's calls are criterion's measured samples (the calls before them
/// are its warm-up), so their median is criterion's median.
static CALLS: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

fn record(id: &str, iterations: u64, elapsed: Duration) {
    CALLS
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push((iterations, elapsed));
}

/// Seconds per iteration in each measured sample of `id`.
fn measured(id: &str) -> Vec<f64> {
    let calls = CALLS.lock().unwrap();
    let Some(calls) = calls.get(id) else {
        return Vec::new();
    };
    calls[calls.len().saturating_sub(SAMPLES)..]
        .iter()
        .map(|(iterations, elapsed)| elapsed.as_secs_f64() / (*iterations).max(1) as f64)
        .collect()
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn rate(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| {
        let whole = v.round() as u64;
        let text = whole.to_string();
        let mut out = String::new();
        for (i, digit) in text.chars().enumerate() {
            if i > 0 && (text.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        out
    })
}

/// A pseudo-random stream (fixed seed: every run asks the same proofs).
fn random_below(seed: u64, bound: u64, count: usize) -> Vec<u64> {
    let mut rng = oorandom::Rand64::new(u128::from(seed));
    (0..count).map(|_| rng.rand_range(0..bound)).collect()
}

fn wants(group: &str) -> bool {
    support::setting("BENCH_ONLY").is_none_or(|only| only.split(',').any(|g| g == group))
}

fn main() {
    if support::filtered_out("proofs") {
        return;
    }
    mfi_ledger::allocator::configure();
    let mut criterion = support::criterion();
    let runtime = Runtime::new().unwrap();
    let mut report = String::new();
    if wants("tree_writes") {
        tree_writes(&mut criterion, &runtime, &mut report);
    }
    if wants("proofs") || wants("checkpoints") {
        proofs_and_checkpoints(&mut criterion, &runtime, &mut report);
    }
    criterion.final_summary();
    let path = out_dir().join("proofs.md");
    std::fs::write(&path, &report).unwrap();
    eprintln!("\n{report}\n(written to {})", path.display());
}

/// The configuration of a ledger keeping the tree as the server does: a
/// log key, checkpoints at the default policy.
fn signing_config() -> LedgerConfig {
    LedgerConfig {
        log_checkpoints: CheckpointPolicy {
            signer: Some(bench_log_signer()),
            ..CheckpointPolicy::default()
        },
        ..bench_config()
    }
}

/// Builds one command for a member.
type MakeCommand = fn(usize) -> Command;

fn tree_writes(c: &mut Criterion, runtime: &Runtime, report: &mut String) {
    let with_dir = tempfile::tempdir().unwrap();
    let without_dir = tempfile::tempdir().unwrap();
    let with = runtime.block_on(ledger_with_members_on(
        with_dir.path(),
        Arc::new(DiskStore::open(with_dir.path()).unwrap()),
        signing_config(),
        members(),
        true,
    ));
    let without = runtime.block_on(ledger_with_members_on(
        without_dir.path(),
        Arc::new(DiskStore::open_without_tree(without_dir.path()).unwrap()),
        signing_config(),
        members(),
        true,
    ));
    assert!(
        runtime.block_on(with.consistency_proof(1, 1)).is_ok(),
        "keeps the tree"
    );
    assert!(
        runtime.block_on(without.consistency_proof(1, 1)).is_err(),
        "keeps no tree"
    );
    let sides: [(&str, &Ledger); 2] = [("with_tree", &with), ("without_tree", &without)];
    let kinds: [(&str, MakeCommand); 2] = [
        ("repayment", |member| repayment(member, 1000)),
        ("deposit", |member| deposit(member, 1000)),
    ];
    let members = members();
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("tree_writes");
    group
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for batch in WRITE_BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        for (kind, make) in kinds {
            for round in 1..=rounds() {
                let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
                for side in order {
                    let (variant, ledger) = sides[side];
                    let name = format!("{kind}_{variant}");
                    let parameter = format!("{batch}_round{round}");
                    let key = format!("{name}/{parameter}");
                    group.bench_function(BenchmarkId::new(&name, &parameter), |b| {
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
                            record(&key, iterations, elapsed);
                            elapsed
                        })
                    });
                }
            }
        }
    }
    group.finish();
    // The tree kept up: every entry of the ledger keeping it is a leaf.
    let last = with.read(|s| s.last_sequence());
    assert!(runtime.block_on(with.consistency_proof(1, last)).is_ok());
    with.shutdown();
    without.shutdown();

    let _ = writeln!(
        report,
        "### Durable writes with and without the Merkle tree (commands/s)\n\n\
         | command | batch | with the tree | without it | with ÷ without | rounds' ratios |\n\
         |---|---:|---:|---:|---:|---|"
    );
    for batch in WRITE_BATCHES {
        for (kind, _) in kinds {
            let per_second = |variant: &str, rounds: &[usize]| {
                let samples: Vec<f64> = rounds
                    .iter()
                    .flat_map(|round| measured(&format!("{kind}_{variant}/{batch}_round{round}")))
                    .collect();
                median(samples).map(|seconds| batch as f64 / seconds)
            };
            let all: Vec<usize> = (1..=rounds()).collect();
            let (with_rate, without_rate) = (
                per_second("with_tree", &all),
                per_second("without_tree", &all),
            );
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.2}x", a / b),
                _ => "n/a".into(),
            };
            let rounds: Vec<String> = all
                .iter()
                .map(|round| {
                    ratio(
                        per_second("with_tree", &[*round]),
                        per_second("without_tree", &[*round]),
                    )
                })
                .collect();
            let _ = writeln!(
                report,
                "| {kind} | {batch} | {} | {} | {} | {} |",
                rate(with_rate),
                rate(without_rate),
                ratio(with_rate, without_rate),
                rounds.join(", ")
            );
        }
    }
    let _ = writeln!(report);
}

/// One proof kind at one size, timed call by call.
struct PerCall {
    p50_us: f64,
    p99_us: f64,
    hashes_min: usize,
    hashes_max: usize,
    hashes_mean: f64,
    verify_p50_us: f64,
}

/// Times `prove` on each of `picks` (cycling to [`per_call_count`] calls), then
/// `verify` on each proof it gave (which must hold).
fn per_call<P>(
    picks: &[u64],
    mut prove: impl FnMut(u64) -> P,
    hashes: impl Fn(&P) -> usize,
    verify: impl Fn(u64, &P) -> bool,
) -> PerCall {
    let calls = per_call_count();
    let mut times = Vec::with_capacity(calls);
    let mut proofs = Vec::with_capacity(picks.len());
    for call in 0..calls {
        let pick = picks[call % picks.len()];
        let start = Instant::now();
        let proof = std::hint::black_box(prove(pick));
        times.push(start.elapsed().as_secs_f64() * 1e6);
        if call < picks.len() {
            proofs.push((pick, proof));
        }
    }
    times.sort_by(f64::total_cmp);
    let sizes: Vec<usize> = proofs.iter().map(|(_, proof)| hashes(proof)).collect();
    let mut verify_times = Vec::with_capacity(proofs.len());
    for (pick, proof) in &proofs {
        let start = Instant::now();
        let ok = std::hint::black_box(verify(*pick, proof));
        verify_times.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(ok, "a proof for {pick} does not verify");
    }
    verify_times.sort_by(f64::total_cmp);
    PerCall {
        p50_us: quantile(&times, 0.5),
        p99_us: quantile(&times, 0.99),
        hashes_min: sizes.iter().copied().min().unwrap_or(0),
        hashes_max: sizes.iter().copied().max().unwrap_or(0),
        hashes_mean: sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        verify_p50_us: quantile(&verify_times, 0.5),
    }
}

/// A row of the proofs table.
struct ProofRow {
    source: &'static str,
    size: u64,
    inclusion: PerCall,
    consistency: PerCall,
}

fn proofs_and_checkpoints(c: &mut Criterion, runtime: &Runtime, report: &mut String) {
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("proofs");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));

    if wants("proofs") {
        let dir = tempfile::tempdir().unwrap();
        let tree = TreeFile::open(dir.path()).unwrap();
        for size in tree_sizes() {
            let start = Instant::now();
            while tree.leaves() < size {
                let end = (tree.leaves() + 65_536).min(size);
                let leaves: Vec<Hash> = (tree.leaves()..end)
                    .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
                    .collect();
                tree.append(&leaves).unwrap();
            }
            eprintln!("tree file: {size} leaves ({:.2?})", start.elapsed());
            let root = tree.root_at(size).unwrap();
            let leaves = random_below(size, size, PICKS);
            let firsts: Vec<u64> = random_below(size + 1, size, PICKS)
                .into_iter()
                .map(|first| first + 1)
                .collect();
            group.bench_with_input(
                BenchmarkId::new("inclusion_tree_file", size),
                &size,
                |b, &size| {
                    let mut i = 0;
                    b.iter(|| {
                        i += 1;
                        merkle::inclusion_proof(&tree, leaves[i % PICKS], size).unwrap()
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("consistency_tree_file", size),
                &size,
                |b, &size| {
                    let mut i = 0;
                    b.iter(|| {
                        i += 1;
                        merkle::consistency_proof(&tree, firsts[i % PICKS], size).unwrap()
                    })
                },
            );
            let inclusion = per_call(
                &leaves,
                |index| merkle::inclusion_proof(&tree, index, size).unwrap(),
                Vec::len,
                |index, proof| {
                    let leaf = merkle::leaf_hash(&index.to_le_bytes());
                    merkle::verify_inclusion(index, size, &leaf, proof, &root)
                },
            );
            let first_roots: BTreeMap<u64, Hash> = firsts
                .iter()
                .map(|first| (*first, tree.root_at(*first).unwrap()))
                .collect();
            let consistency = per_call(
                &firsts,
                |first| merkle::consistency_proof(&tree, first, size).unwrap(),
                Vec::len,
                |first, proof| {
                    merkle::verify_consistency(first, size, &first_roots[&first], &root, proof)
                },
            );
            rows.push(ProofRow {
                source: "tree file",
                size,
                inclusion,
                consistency,
            });
        }
    }

    // End to end: a ledger keeping the tree and signing checkpoints.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DiskStore::open(dir.path()).unwrap());
    let ledger = runtime.block_on(ledger_with_members_on(
        dir.path(),
        store.clone(),
        signing_config(),
        members(),
        true,
    ));
    let tree_leaves = || store.tree().expect("the store keeps the tree").leaves();
    let wait_for_tree = |size: u64| {
        while tree_leaves() < size {
            std::thread::yield_now();
        }
    };
    if wants("proofs") {
        for (target, first_day, days) in ledger_sizes() {
            let have = ledger.read(|s| s.last_sequence());
            runtime.block_on(grow_journal(
                &ledger,
                members(),
                target.saturating_sub(have) as usize,
                first_day.parse().unwrap(),
                days,
            ));
            let size = ledger.read(|s| s.last_sequence());
            wait_for_tree(size);
            eprintln!("ledger: {size} entries");
            let root = store.tree().unwrap().root_at(size).unwrap();
            let sequences: Vec<u64> = random_below(target, size, PICKS)
                .into_iter()
                .map(|s| s + 1)
                .collect();
            let firsts: Vec<u64> = random_below(target + 1, size, PICKS)
                .into_iter()
                .map(|s| s + 1)
                .collect();
            group.bench_with_input(
                BenchmarkId::new("inclusion_ledger", target),
                &size,
                |b, &size| {
                    let mut i = 0;
                    b.iter(|| {
                        i += 1;
                        runtime
                            .block_on(ledger.inclusion_proof(sequences[i % PICKS], size))
                            .unwrap()
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("consistency_ledger", target),
                &size,
                |b, &size| {
                    let mut i = 0;
                    b.iter(|| {
                        i += 1;
                        runtime
                            .block_on(ledger.consistency_proof(firsts[i % PICKS], size))
                            .unwrap()
                    })
                },
            );
            let inclusion = per_call(
                &sequences,
                |sequence| {
                    runtime
                        .block_on(ledger.inclusion_proof(sequence, size))
                        .unwrap()
                },
                |proof| proof.hashes.len(),
                |sequence, proof| {
                    merkle::verify_inclusion(sequence - 1, size, &proof.leaf, &proof.hashes, &root)
                },
            );
            let first_roots: BTreeMap<u64, Hash> = firsts
                .iter()
                .map(|first| (*first, store.tree().unwrap().root_at(*first).unwrap()))
                .collect();
            let consistency = per_call(
                &firsts,
                |first| {
                    runtime
                        .block_on(ledger.consistency_proof(first, size))
                        .unwrap()
                },
                Vec::len,
                |first, proof| {
                    merkle::verify_consistency(first, size, &first_roots[&first], &root, proof)
                },
            );
            rows.push(ProofRow {
                source: "ledger",
                size,
                inclusion,
                consistency,
            });
        }
    }
    group.finish();

    if !rows.is_empty() {
        let _ = writeln!(
            report,
            "### Proofs: latency per call (µs) and size (hashes of 32 bytes)\n\n\
             | from | entries | inclusion p50 / p99 µs | inclusion hashes (mean, min-max) | inclusion bytes (max) | verify p50 µs | consistency p50 / p99 µs | consistency hashes (mean, min-max) | consistency bytes (max) | verify p50 µs |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &rows {
            let (i, k) = (&row.inclusion, &row.consistency);
            let _ = writeln!(
                report,
                "| {} | {} | {:.2} / {:.2} | {:.1}, {}-{} | {} | {:.2} | {:.2} / {:.2} | {:.1}, {}-{} | {} | {:.2} |",
                row.source,
                rate(Some(row.size as f64)),
                i.p50_us,
                i.p99_us,
                i.hashes_mean,
                i.hashes_min,
                i.hashes_max,
                i.hashes_max * 32,
                i.verify_p50_us,
                k.p50_us,
                k.p99_us,
                k.hashes_mean,
                k.hashes_min,
                k.hashes_max,
                k.hashes_max * 32,
                k.verify_p50_us,
            );
        }
        let _ = writeln!(report);
    }

    if wants("checkpoints") {
        checkpoints(c, runtime, &ledger, &tree_leaves, report);
    }
    ledger.shutdown();
}

fn checkpoints(
    c: &mut Criterion,
    runtime: &Runtime,
    ledger: &Ledger,
    tree_leaves: &dyn Fn() -> u64,
    report: &mut String,
) {
    let signer = bench_log_signer();
    let verifier = signer.verifier();
    let root = merkle::leaf_hash(b"root");
    let mut group = c.benchmark_group("checkpoints");
    group
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut size = 1_000_000u64;
    group.bench_function("sign", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                size += 1;
                let checkpoint = Checkpoint {
                    origin: signer.name().to_owned(),
                    size,
                    root,
                    extensions: Vec::new(),
                };
                std::hint::black_box(checkpoint.sign(&signer));
            }
            let elapsed = start.elapsed();
            record("checkpoints/sign", iterations, elapsed);
            elapsed
        })
    });
    let note = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root,
        extensions: Vec::new(),
    }
    .sign(&signer);
    group.bench_function("verify", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(Checkpoint::open(&note, &verifier).unwrap());
            }
            let elapsed = start.elapsed();
            record("checkpoints/verify", iterations, elapsed);
            elapsed
        })
    });
    let member = AtomicUsize::new(0);
    group.bench_function("create_after_write", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let command = repayment(member.fetch_add(1, Ordering::Relaxed) % members(), 1000);
                let entry = runtime.block_on(ledger.submit(command)).unwrap();
                let sequence = entry.body.sequence;
                while tree_leaves() < sequence {
                    std::thread::yield_now();
                }
                let start = Instant::now();
                let issued = runtime.block_on(ledger.create_checkpoint()).unwrap();
                elapsed += start.elapsed();
                assert_eq!(
                    issued.checkpoint.size, sequence,
                    "a new checkpoint each time"
                );
            }
            record("checkpoints/create_after_write", iterations, elapsed);
            elapsed
        })
    });
    group.finish();

    let _ = writeln!(
        report,
        "### Checkpoints\n\n| operation | median µs | per second |\n|---|---:|---:|"
    );
    for (id, label) in [
        ("checkpoints/sign", "sign a checkpoint note (Ed25519)"),
        ("checkpoints/verify", "verify a checkpoint note"),
        (
            "checkpoints/create_after_write",
            "issue a checkpoint after a write (`Ledger::create_checkpoint`)",
        ),
    ] {
        let seconds = median(measured(id));
        let _ = writeln!(
            report,
            "| {label} | {} | {} |",
            seconds.map_or("n/a".into(), |s| format!("{:.1}", s * 1e6)),
            rate(seconds.map(|s| 1.0 / s))
        );
    }
    let _ = writeln!(report);
}
