//! Shared setup for the benchmarks: a ledger on a temporary store with a
//! branch, members with compulsory savings, and large loans, built through
//! the same `Ledger::submit_many` path the API uses.

#![allow(dead_code)]

/// The same allocator as the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether this is a smoke run: the binary run without `--bench`, as
/// `cargo test` runs it (the benchmarks are `test = true` in Cargo.toml),
/// or with `--test` too (`cargo bench -- --test`), which is how criterion
/// tells its test mode from a benchmark run. A smoke run measures nothing
/// worth keeping: criterion runs each benchmark once, every size is cut
/// down (see [`sized`]), the environment's settings for a full run are
/// not read ([`setting`]) and the results go to `target/tmp` ([`out_dir`]),
/// not `target/bench`. It finds, in seconds, a benchmark
/// that no longer runs through, which a full run would find only after
/// many minutes.
pub fn smoke() -> bool {
    static SMOKE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SMOKE.get_or_init(|| {
        let has = |flag: &str| std::env::args().any(|arg| arg == flag);
        !has("--bench") || has("--test")
    })
}

/// Whether a smoke run of the benchmark `name` is filtered out by `cargo
/// test`'s own arguments: `cargo test FILTER` hands FILTER to every test
/// binary, and a benchmark's smoke run runs whole, or not at all, as a
/// test would: only when FILTER is part of its name (`--exact`: when it is
/// its name). `--list` and `--ignored` run nothing (a smoke run is listed
/// as nothing, and is not an ignored test), and neither do libtest's
/// options criterion refuses (`--test-threads`, `--skip`, `-q`,
/// `--logfile`, `--format`, `-Z`), after saying so.
pub fn filtered_out(name: &str) -> bool {
    if !smoke() {
        return false;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    let refused = [
        "--test-threads",
        "--skip",
        "-q",
        "--logfile",
        "--format",
        "-Z",
    ];
    if let Some(arg) = args.iter().find(|arg| {
        refused
            .iter()
            .any(|option| arg == option || arg.starts_with(&format!("{option}=")))
    }) {
        eprintln!("{name}: smoke run skipped: criterion does not take libtest's {arg}");
        return true;
    }
    // libtest's options that take a value as the next argument.
    let valued = ["--color"];
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, arg)| {
            !arg.starts_with('-') && (*i == 0 || !valued.contains(&args[i - 1].as_str()))
        })
        .map(|(_, arg)| arg)
        .collect();
    let exact = has("--exact");
    let matches = |filter: &&String| match exact {
        true => *filter == name,
        false => name.contains(filter.as_str()),
    };
    has("--list") || has("--ignored") || !filters.is_empty() && !filters.iter().any(matches)
}

/// The environment variable `name`, which sets a full run's sizes,
/// directories or database; a smoke run reads none of them (its sizes are
/// its own, and it must not write into a directory a full run measures).
pub fn setting(name: &str) -> Option<String> {
    match smoke() {
        true => None,
        false => std::env::var(name).ok(),
    }
}

/// `full` in a benchmark run, `small` in a smoke run ([`smoke`]).
pub fn sized<T>(full: T, small: T) -> T {
    if smoke() { small } else { full }
}

/// How many members the benchmarks' ledgers have: 1,000, or 100 in a smoke
/// run (each with a 520-installment loan in most benchmarks).
pub fn members() -> usize {
    sized(1000, 100)
}

/// Where a benchmark writes its results (and the mix its corpus):
/// `target/bench` in a benchmark run; in a smoke run, a directory of the
/// benchmark's own under cargo's directory for the benchmarks' data
/// (`target/tmp`), emptied before it is used, so that a smoke run never
/// replaces a full run's results.
pub fn out_dir() -> std::path::PathBuf {
    let dir = if smoke() {
        // The binary's name less the build's hash cargo appends.
        let name = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.file_stem()?.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let bench = name
            .rsplit_once('-')
            .map_or(name.as_str(), |(bench, _)| bench);
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-smoke-{bench}"))
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench")
    };
    static CLEARED: std::sync::Once = std::sync::Once::new();
    CLEARED.call_once(|| {
        if smoke() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The benchmarks' criterion: configured from the arguments, and in a
/// smoke run taking every benchmark (the filter `cargo test` was given
/// chose the benchmark by its name: [`filtered_out`]).
pub fn criterion() -> criterion::Criterion {
    let criterion = criterion::Criterion::default().configure_from_args();
    match smoke() {
        true => criterion.with_benchmark_filter(criterion::BenchmarkFilter::AcceptAll),
        false => criterion,
    }
}

/// A benchmark's `main`: unless [`filtered_out`], configures the allocator
/// as the server's, runs `benches` on [`criterion`], and prints criterion's
/// summary.
pub fn criterion_main(name: &str, benches: &[fn(&mut criterion::Criterion)]) {
    if filtered_out(name) {
        return;
    }
    mfi_ledger::allocator::configure();
    let mut criterion = criterion();
    for bench in benches {
        bench(&mut criterion);
    }
    criterion.final_summary();
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mfi_ledger::checkpoint::{KeyKind, Signer};
use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
use mfi_ledger::domain::command::{
    Command, CommandBody, LoanSpec, LoanTermsInput, Money, SavingsKind,
};
use mfi_ledger::domain::ids::{
    Actor, BranchId, CenterId, GroupId, LoanId, MemberId, Name, PrincipalId, RequestId,
    SavingsAccountId,
};
use mfi_ledger::domain::money::Currency;
use mfi_ledger::domain::schedule::{InterestMethod, RepaymentFrequency};
use mfi_ledger::ledger::{Clock, Ledger, LedgerConfig};
use mfi_ledger::store::DiskStore;
use rust_decimal::Decimal;

/// A fixed clock (2024-06-30), so that every effective date used is in the past.
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap()
    }
}

static REQUEST: AtomicU64 = AtomicU64::new(0);

/// The principal the benchmarks write as: a manager and product admin of
/// the institution, as a branch's system would be (its roles are checked
/// on every command, as in the server).
pub const BENCH_PRINCIPAL: &str = "bench";

/// Starts this process's request ids at `bench-{first}`: a process that
/// writes into a journal another process wrote (the recovery benchmark's
/// crashed writer) must not reuse its ids, which would be answered as
/// duplicates.
pub fn start_request_ids_at(first: u64) {
    REQUEST.store(first, Ordering::Relaxed);
}

/// A command with a fresh request id.
pub fn command(body: CommandBody) -> Command {
    let n = REQUEST.fetch_add(1, Ordering::Relaxed);
    Command {
        request_id: RequestId::parse("request_id", &format!("bench-{n}")).unwrap(),
        actor: Actor::parse("actor", "bench").unwrap(),
        principal: Some(PrincipalId::parse("principal", BENCH_PRINCIPAL).unwrap()),
        approval: None,
        body,
    }
}

pub fn date(text: &str) -> Option<NaiveDate> {
    Some(text.parse().unwrap())
}

fn name(text: &str) -> Name {
    Name::parse("name", text).unwrap()
}

pub fn vnd(amount: i64) -> Money {
    Money {
        amount: Decimal::from(amount),
        currency: Some(Currency::Vnd),
    }
}

pub fn member_id(i: usize) -> MemberId {
    MemberId::parse("m", &format!("M{i}")).unwrap()
}

pub fn savings_id(i: usize) -> SavingsAccountId {
    SavingsAccountId::parse("s", &format!("M{i}/C1")).unwrap()
}

pub fn loan_id(i: usize) -> LoanId {
    LoanId::parse("l", &format!("M{i}/L1")).unwrap()
}

/// Terms of a loan large enough never to be repaid by a benchmark.
pub fn big_loan() -> LoanTermsInput {
    LoanTermsInput {
        principal: vnd(1_000_000_000),
        annual_interest_rate_percent: Decimal::from(20),
        interest_method: InterestMethod::Flat,
        installment_count: 520,
        frequency: RepaymentFrequency::Weekly,
        first_repayment_date: "2024-01-08".parse().unwrap(),
        rounding_multiple: Some(Decimal::from(100)),
    }
}

pub fn repayment(member: usize, amount: i64) -> Command {
    command(CommandBody::RecordRepayment {
        loan_id: loan_id(member),
        amount: vnd(amount),
        effective_date: date("2024-06-01"),
    })
}

pub fn deposit(member: usize, amount: i64) -> Command {
    command(CommandBody::DepositSavings {
        account_id: savings_id(member),
        amount: vnd(amount),
        effective_date: date("2024-06-01"),
    })
}

pub fn disbursement(member: usize) -> Command {
    let mut terms = big_loan();
    terms.principal = vnd(5_000_000);
    terms.installment_count = 50;
    command(CommandBody::DisburseLoan {
        member_id: member_id(member),
        loan: LoanSpec::Terms(terms),
        disbursed_on: date("2024-01-01"),
    })
}

/// Submits commands in chunks of 1,000 and panics on any refusal.
pub async fn submit_all(ledger: &Ledger, commands: Vec<Command>) {
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let chunk: Vec<Command> = commands.by_ref().take(1000).collect();
        for result in ledger.submit_many(chunk).await {
            result.expect("set-up command accepted");
        }
    }
}

/// A ledger in `dir` with one branch and `members` members, each with a
/// compulsory savings account and (if `with_loans`) a large loan.
pub async fn ledger_with_members(
    dir: &std::path::Path,
    members: usize,
    with_loans: bool,
) -> Arc<Ledger> {
    let store = Arc::new(DiskStore::open(dir).unwrap());
    ledger_with_members_on(dir, store, bench_config(), members, with_loans).await
}

/// The configuration the benchmarks' ledgers run with: batches of up to
/// 1,000 commands, checkpoints as `LedgerConfig::default()` (a smoke run's
/// every 100 ms), the rest as `LedgerConfig::default()`.
pub fn bench_config() -> LedgerConfig {
    LedgerConfig {
        batch_size_max: 1000,
        // A smoke run's ledgers are small and short-lived: records that
        // close are let go of at the next checkpoint, soon enough for the
        // reads that follow to read them back as a full run's do.
        checkpoint_interval: sized(
            LedgerConfig::default().checkpoint_interval,
            std::time::Duration::from_millis(100),
        ),
        ..LedgerConfig::default()
    }
}

/// The log key of the benchmarks' ledgers (a fixed seed: no figure depends
/// on which key signs).
pub fn bench_log_signer() -> Arc<Signer> {
    Arc::new(Signer::from_seed("bench.example/log", KeyKind::Ed25519, [7; 32]).unwrap())
}

/// [`ledger_with_members`] on a store and with a configuration of the
/// caller's (the Merkle tree's benchmarks compare a store keeping the tree
/// with one opened by `DiskStore::open_without_tree`, and sign checkpoints).
pub async fn ledger_with_members_on(
    dir: &std::path::Path,
    store: Arc<dyn mfi_ledger::store::Store>,
    config: LedgerConfig,
    members: usize,
    with_loans: bool,
) -> Arc<Ledger> {
    let ledger = Arc::new(Ledger::start(store, Arc::new(FixedClock), config).unwrap());
    mfi_ledger::auth::bootstrap(&ledger, dir).await.unwrap();
    let grants = [Role::Manager, Role::ProductAdmin]
        .into_iter()
        .map(|role| RoleGrant {
            role,
            scope: Scope::Institution,
        })
        .collect();
    let admin = PrincipalId::parse("p", mfi_ledger::auth::FIRST_ADMINISTRATOR).unwrap();
    mfi_ledger::auth::create_principal_in_process(&ledger, &admin, BENCH_PRINCIPAL, grants, 365)
        .await
        .unwrap();
    let branch = BranchId::parse("b", "TB").unwrap();
    let mut setup = vec![
        command(CommandBody::CreateBranch {
            branch_id: branch.clone(),
            name: name("Thái Bình"),
            time_zone: "Asia/Ho_Chi_Minh".into(),
            currency: Currency::Vnd,
            compulsory_savings_percent: Decimal::from(5),
            opened_on: date("2020-01-01"),
        }),
        command(CommandBody::CreateCenter {
            center_id: CenterId::parse("c", "C1").unwrap(),
            branch_id: branch,
            name: name("Cụm 1"),
            opened_on: date("2020-01-01"),
        }),
        command(CommandBody::CreateGroup {
            group_id: GroupId::parse("g", "G1").unwrap(),
            center_id: CenterId::parse("c", "C1").unwrap(),
            name: name("Nhóm 1"),
            opened_on: date("2020-01-01"),
        }),
    ];
    for i in 0..members {
        setup.push(command(CommandBody::RegisterMember {
            member_id: member_id(i),
            full_name: name("Nguyễn Thị Hoa"),
            group_id: GroupId::parse("g", "G1").unwrap(),
            joined_on: date("2020-01-01"),
        }));
        setup.push(command(CommandBody::OpenSavingsAccount {
            member_id: member_id(i),
            kind: SavingsKind::Compulsory,
            opened_on: date("2020-01-01"),
        }));
        if with_loans {
            setup.push(command(CommandBody::DisburseLoan {
                member_id: member_id(i),
                loan: LoanSpec::Terms(big_loan()),
                disbursed_on: date("2024-01-01"),
            }));
        }
    }
    submit_all(&ledger, setup).await;
    ledger
}

/// Appends `count` repayments and deposits spread over `members` members,
/// with effective dates spread evenly from `first` over `days` days (in
/// order, as meetings happen).
pub async fn grow_journal(
    ledger: &Ledger,
    members: usize,
    count: usize,
    first: NaiveDate,
    days: u64,
) {
    let commands = (0..count)
        .map(|i| {
            let on = Some(first + chrono::Days::new(i as u64 * days / count.max(1) as u64));
            let member = i % members;
            let amount = vnd(1000 + (i % 9) as i64);
            if i % 4 == 3 {
                command(CommandBody::DepositSavings {
                    account_id: savings_id(member),
                    amount,
                    effective_date: on,
                })
            } else {
                command(CommandBody::RecordRepayment {
                    loan_id: loan_id(member),
                    amount,
                    effective_date: on,
                })
            }
        })
        .collect();
    submit_all(ledger, commands).await;
}
