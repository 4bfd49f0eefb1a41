//! Fuzzing of everything that reads bytes or text it did not write:
//! the journal scanner, entry decoding, the state-cache records, decimal
//! and id parsing, and the collection-sheet CSV.
//!
//! cargo-fuzz needs a nightly compiler, so these are proptest targets: for
//! each, the corpus in `tests/fuzz-corpus/<target>/` is replayed, then
//! valid inputs generated at the start (a journal written by the real
//! server running the simulator, its entries and state records: generated,
//! not committed, so they never go stale with the encoding), then a bounded
//! number of generated cases (`PROPTEST_CASES` sets it): arbitrary bytes,
//! and valid inputs with bytes flipped, set to extreme lengths, cut,
//! spliced, repeated.
//!
//! The properties: no panic; an error is an error value; a success is a
//! sound value (it re-encodes or re-parses to itself); and no allocation
//! out of proportion to the input. A counting allocator measures the
//! largest single allocation and the peak of live bytes on the calling
//! thread during each call, so a length prefix of 4 GB that was believed
//! would fail the test instead of the machine.

use crate::common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use mfi_ledger::cli::parse_collection_sheet;
use mfi_ledger::domain::entry::{EntryBody, peek_request_id};
use mfi_ledger::domain::ids::{
    Actor, BranchId, CenterId, GroupId, LoanId, MemberId, Name, ProductId, RequestId,
    SavingsAccountId,
};
use mfi_ledger::domain::money::{Currency, parse_amount, parse_decimal};
use mfi_ledger::domain::state::LedgerState;
use mfi_ledger::store::{decode_payload, read_entry_at_offset, scan_journal, split_payload};
use proptest::prelude::*;
use proptest::sample::Index;

use common::{BIN, Server};

// ---------------------------------------------------------------------------
// Allocation accounting.

/// The system allocator, counting on each thread (while asked to) the
/// largest single allocation and the peak of bytes live.
struct Counting;

/// (counting, live bytes, peak live bytes, largest allocation)
type Usage = (bool, usize, usize, usize);

thread_local! {
    static USAGE: Cell<Usage> = const { Cell::new((false, 0, 0, 0)) };
}

fn note_alloc(size: usize) {
    let _ = USAGE.try_with(|usage| {
        let (on, live, peak, largest) = usage.get();
        if on {
            let live = live.saturating_add(size);
            usage.set((on, live, peak.max(live), largest.max(size)));
        }
    });
}

fn note_dealloc(size: usize) {
    let _ = USAGE.try_with(|usage| {
        let (on, live, peak, largest) = usage.get();
        if on {
            usage.set((on, live.saturating_sub(size), peak, largest));
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; the counting touches
// only a const-initialised thread-local `Cell` (which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller's layout is passed on as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_dealloc(layout.size());
        note_alloc(new_size);
        // SAFETY: as in `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes any one decoder may allocate beyond its proportion of the input:
/// a 1 MiB read buffer, and what serde allows a sequence to reserve ahead
/// of its elements (1 MiB), with room to spare.
const ALLOCATION_SLACK_BYTES: usize = 4 << 20;
/// Bytes allocated per byte of input, at most.
const ALLOCATION_PER_INPUT_BYTE: usize = 64;

/// Runs `call`, then checks it allocated in proportion to `input_len`.
fn bounded<R>(what: &str, input_len: usize, call: impl FnOnce() -> R) -> R {
    USAGE.with(|usage| usage.set((true, 0, 0, 0)));
    let result = call();
    let (_, _, peak, largest) = USAGE.with(|usage| usage.replace((false, 0, 0, 0)));
    let limit = ALLOCATION_SLACK_BYTES + ALLOCATION_PER_INPUT_BYTE * input_len;
    assert!(
        peak <= limit && largest <= limit,
        "{what}: {input_len} bytes of input made it allocate {largest} bytes at once and \
         {peak} at peak (limit {limit})"
    );
    result
}

// ---------------------------------------------------------------------------
// Inputs: the corpus, valid inputs, and mutations.

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Valid inputs, made by the real server and simulator at the first use.
struct Valid {
    /// A whole journal file.
    journal: Vec<u8>,
    /// Each record's payload: canonical bytes, then the hash, or the
    /// canonical bytes compressed (`store::journal_file::payload`).
    payloads: Vec<Vec<u8>>,
    /// Each entry's canonical bytes.
    canonicals: Vec<Vec<u8>>,
    /// The state records after the last entry.
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

fn valid() -> &'static Valid {
    static VALID: OnceLock<Valid> = OnceLock::new();
    VALID.get_or_init(|| {
        let server = Server::start_at("2024-01-01T00:00:00Z");
        let simulated = Command::new(BIN)
            .args(["simulate", "--server", &server.url])
            .env("MFI_LEDGER_TOKEN_FILE", &server.token_file)
            .env(
                "MFI_LEDGER_APPROVER_TOKEN_FILE",
                server.approver_token_file(),
            )
            .args(["--preset", "demo", "--until", "2023-02-15", "--no-progress"])
            .stdin(Stdio::null())
            .output()
            .expect("run mfi-ledger simulate");
        assert!(
            simulated.status.success(),
            "the simulator failed: {}",
            String::from_utf8_lossy(&simulated.stderr)
        );
        let path = server.data_dir().join("journal.log");
        let journal = std::fs::read(&path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut payloads = Vec::new();
        scan_journal(&file, |_, payload| {
            payloads.push(payload.to_vec());
            Ok(())
        })
        .expect("the simulated journal scans");
        let mut state = LedgerState::new();
        for (sequence, payload) in (1..).zip(&payloads) {
            let entry = decode_payload(payload, sequence).expect("a simulated entry decodes");
            state.apply(&entry).expect("a simulated entry applies");
        }
        let records = state.export().unwrap().into_iter().collect();
        let canonicals = payloads
            .iter()
            .map(|payload| split_payload(0, payload).unwrap().0.into_owned())
            .collect();
        Valid {
            journal,
            payloads,
            canonicals,
            records,
        }
    })
}

/// A change to a valid input that keeps most of its structure.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip one bit.
    Flip(Index, u8),
    /// Overwrite four bytes with a length or count a decoder may believe.
    Length(Index, u32),
    /// Overwrite a varint-sized run with an extreme postcard varint.
    Varint(Index, u64),
    /// Cut the input short.
    Truncate(Index),
    /// Copy a run of the input over another place of it.
    Splice(Index, Index, u8),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Repeat a run of the input in place.
    Repeat(Index, u8, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let length = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7FFF_FFFF),
        Just(0xFFFF_FFFF),
        Just(1 << 20),
        Just((1 << 20) + 1),
        Just(16 << 20),
        any::<u32>(),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Index>(), length).prop_map(|(at, value)| Mutation::Length(at, value)),
        (
            any::<Index>(),
            prop_oneof![Just(u64::MAX), Just(1u64 << 32), any::<u64>()]
        )
            .prop_map(|(at, value)| Mutation::Varint(at, value)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<u8>())
            .prop_map(|(from, to, len)| Mutation::Splice(from, to, len)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Index>(), any::<u8>(), 1u8..8)
            .prop_map(|(at, len, times)| Mutation::Repeat(at, len, times)),
    ]
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let low = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return bytes;
        }
        bytes.push(low | 0x80);
    }
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match mutation {
            Mutation::Flip(at, bit) => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Length(at, value) => {
                let at = at.index(len);
                for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = byte;
                    }
                }
            }
            Mutation::Varint(at, value) => {
                let at = at.index(len);
                let encoded = varint(*value);
                let end = (at + encoded.len()).min(len);
                bytes.splice(at..end, encoded);
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
            Mutation::Splice(from, to, run) => {
                let from = from.index(len);
                let run: Vec<u8> = bytes[from..(from + usize::from(*run)).min(len)].to_vec();
                let to = to.index(len);
                let end = (to + run.len()).min(len);
                bytes.splice(to..end, run);
            }
            Mutation::Insert(at, inserted) => {
                let at = at.index(len);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Repeat(at, run, times) => {
                let at = at.index(len);
                let run: Vec<u8> = bytes[at..(at + usize::from(*run)).min(len)].to_vec();
                for _ in 0..*times {
                    bytes.splice(at..at, run.iter().copied());
                }
            }
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// Arbitrary bytes, or one of `seeds` mutated.
fn bytes_from(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (prop::sample::select(seeds), mutations())
        .prop_map(|(seed, mutations)| mutate(seed, &mutations));
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => mutated,
    ]
}

fn corpus_bytes(target: &str) -> Vec<Vec<u8>> {
    corpus(target).into_iter().map(|(_, bytes)| bytes).collect()
}

// ---------------------------------------------------------------------------
// The journal scanner.

fn scan_bytes(journal: &[u8]) -> Result<Vec<u64>, String> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(journal).unwrap();
    bounded("scan_journal", journal.len(), || {
        let mut decoded = 0u64;
        let scan = scan_journal(&file, |_, payload| {
            decoded += 1;
            let _ = decode_payload(payload, decoded);
            let _ = peek_request_id(&payload[..payload.len().saturating_sub(32)]);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        assert_eq!(
            scan.valid_end + scan.torn_bytes,
            journal.len() as u64,
            "the scan accounts for every byte"
        );
        let offsets: Vec<u64> = scan.offsets.iter().collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1])
                && offsets.last().is_none_or(|&o| o < scan.valid_end),
            "record offsets in order, within the valid frames"
        );
        for (sequence, &offset) in (1..).zip(&offsets) {
            let _ = read_entry_at_offset(&file, offset, sequence);
        }
        Ok(offsets)
    })
}

fn check_journal(journal: &[u8]) {
    let _ = scan_bytes(journal);
}

/// The scanner on the corpus and on the simulated journal cut at every
/// frame-relevant point: a cut journal is a torn tail, never an error, and
/// keeps exactly the records before the cut.
#[test]
fn journal_scanner_corpus_and_every_cut_of_a_valid_journal() {
    for (path, bytes) in corpus("journal") {
        eprintln!("replaying {}", path.display());
        check_journal(&bytes);
    }
    let journal = &valid().journal;
    let full = scan_bytes(journal).expect("the valid journal scans");
    assert_eq!(full.len(), valid().payloads.len());
    let step = (journal.len() / 200).max(1);
    for cut in (8..journal.len()).step_by(step) {
        let offsets = scan_bytes(&journal[..cut])
            .unwrap_or_else(|why| panic!("a journal cut at byte {cut} does not open: {why}"));
        assert!(
            full.starts_with(&offsets),
            "a journal cut at byte {cut} keeps other records"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    /// Any bytes, and valid journals damaged anywhere: the scanner and the
    /// entry reader return errors, never panic, and allocate in
    /// proportion to the file.
    #[test]
    fn journal_scanner_survives_any_bytes(
        journal in bytes_from(corpus_bytes("journal").into_iter().chain([valid().journal.clone()]).collect())
    ) {
        check_journal(&journal);
    }
}

// ---------------------------------------------------------------------------
// Entry decoding.

fn check_entry(bytes: &[u8]) {
    let body = bounded("EntryBody::from_canonical_bytes", bytes.len(), || {
        let _ = peek_request_id(bytes);
        let _ = decode_payload(bytes, 1);
        EntryBody::from_canonical_bytes(bytes)
    });
    if let Ok(body) = body {
        let again = EntryBody::from_canonical_bytes(&body.canonical_bytes())
            .expect("a decoded entry's own encoding decodes");
        assert_eq!(again, body, "a decoded entry re-encodes to itself");
    }
}

fn entry_seeds() -> Vec<Vec<u8>> {
    let mut seeds = corpus_bytes("entry");
    seeds.extend(valid().canonicals.iter().cloned());
    // Compressed payloads, mutated, reach the decompression of
    // `decode_payload`.
    seeds.extend(
        valid()
            .payloads
            .iter()
            .filter(|payload| payload[0] == 0xC0)
            .cloned(),
    );
    seeds
}

/// Every corpus entry and every valid entry the simulator wrote decode (or
/// are refused) without panic, and the valid ones round-trip.
#[test]
fn entry_decoding_corpus_and_valid_entries() {
    for (path, bytes) in corpus("entry") {
        eprintln!("replaying {}", path.display());
        check_entry(&bytes);
    }
    for canonical in &valid().canonicals {
        EntryBody::from_canonical_bytes(canonical).expect("a valid entry decodes");
        check_entry(canonical);
    }
    assert!(
        valid().payloads.iter().any(|payload| payload[0] == 0xC0),
        "the simulated journal stores its long entries compressed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Entry decoding on any bytes and on valid entries mutated.
    #[test]
    fn entry_decoding_survives_any_bytes(bytes in bytes_from(entry_seeds())) {
        check_entry(&bytes);
    }
}

// ---------------------------------------------------------------------------
// State-cache records.

fn check_records(records: &[(Vec<u8>, Vec<u8>)]) {
    let input_len = records.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    let imported = bounded("LedgerState::import", input_len, || {
        LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    });
    if let Ok(state) = imported {
        let exported = state.export().unwrap();
        LedgerState::import(exported.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
            .expect("an imported state's own records import");
    }
}

/// Records of a state as a corpus file holds them: lines of `key<TAB>hex value`.
fn parse_record_file(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('\t')?;
            Some((key.as_bytes().to_vec(), hex::decode(value.trim()).ok()?))
        })
        .collect()
}

fn record_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let valid_records = valid().records.clone();
    let mut seeds: Vec<Vec<(Vec<u8>, Vec<u8>)>> = corpus_bytes("state")
        .iter()
        .map(|bytes| parse_record_file(bytes))
        .collect();
    seeds.push(valid_records);
    let arbitrary = prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(vec![
                    b"head".to_vec(),
                    b"branch/X".to_vec(),
                    b"member/X".to_vec(),
                    b"loan/X".to_vec(),
                    b"repaid/X".to_vec(),
                    b"product/X".to_vec(),
                    b"steps/cash:X/0000000000".to_vec(),
                    b"reversed/00000000000000000001".to_vec(),
                    b"day/X/2023-01-01".to_vec(),
                ]),
                prop::collection::vec(any::<u8>(), 0..24),
            ],
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        0..8,
    );
    let mutated = (
        prop::sample::select(seeds),
        any::<Index>(),
        mutations(),
        any::<bool>(),
    )
        .prop_map(|(mut records, which, mutations, on_key)| {
            if !records.is_empty() {
                let which = which.index(records.len());
                let record = &mut records[which];
                let target = if on_key { &mut record.0 } else { &mut record.1 };
                *target = mutate(std::mem::take(target), &mutations);
            }
            records
        });
    prop_oneof![1 => arbitrary, 4 => mutated]
}

/// The state records of the corpus and of the simulated branch import
/// without panic; the valid ones import and re-export.
#[test]
fn state_records_corpus_and_valid_records() {
    for (path, bytes) in corpus("state") {
        eprintln!("replaying {}", path.display());
        check_records(&parse_record_file(&bytes));
    }
    let records = &valid().records;
    LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        .expect("the simulated state's records import");
    check_records(records);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    /// State import on any records, and on valid records with one damaged.
    #[test]
    fn state_records_survive_any_bytes(records in record_strategy()) {
        check_records(&records);
    }
}

// ---------------------------------------------------------------------------
// Decimals and ids.

/// Longest refusal message: a gRPC client refuses a status larger than its
/// metadata limit, so a message must stay small whatever the input.
const MESSAGE_BYTES_MAX: usize = 2048;

fn check_message(what: &str, text: &str, message: String) {
    assert!(
        message.len() <= MESSAGE_BYTES_MAX,
        "{what} of a {} byte value gives a {} byte message",
        text.len(),
        message.len()
    );
}

fn check_decimal(text: &str) {
    for allow_negative in [false, true] {
        match bounded("parse_decimal", text.len(), || {
            parse_decimal("amount", text, allow_negative)
        }) {
            Ok(value) => {
                assert_eq!(value, value.normalize(), "{text:?} parses normalised");
                assert!(allow_negative || !value.is_sign_negative() || value.is_zero());
                let again = parse_decimal("amount", &value.to_string(), allow_negative)
                    .expect("a parsed decimal's own text parses");
                assert_eq!(again, value);
            }
            Err(error) => check_message("parse_decimal", text, error.to_string()),
        }
    }
    for currency in [Currency::Vnd, Currency::Usd] {
        match parse_amount("amount", text, currency) {
            Ok(amount) => {
                assert!(amount > rust_decimal::Decimal::ZERO, "{text:?} is positive");
                assert!(amount.scale() <= currency.decimal_places(), "{text:?}");
            }
            Err(error) => check_message("parse_amount", text, error.to_string()),
        }
    }
    let _ = Currency::parse("currency", text);
}

fn check_id(text: &str) {
    macro_rules! ids {
        ($($kind:ty),*) => {$(
            match <$kind>::parse("id", text) {
                Ok(id) => assert_eq!(id.as_str(), text, "an id keeps its text"),
                Err(error) => check_message(stringify!($kind), text, error.to_string()),
            }
        )*};
    }
    bounded("id parsing", text.len(), || {
        ids!(
            BranchId,
            CenterId,
            GroupId,
            MemberId,
            LoanId,
            ProductId,
            SavingsAccountId,
            RequestId,
            Actor
        );
        match Name::parse("name", text) {
            Ok(name) => assert_eq!(name.as_str(), text.trim(), "a name keeps its trimmed text"),
            Err(error) => check_message("Name", text, error.to_string()),
        }
    });
}

fn text_seeds(target: &str) -> Vec<String> {
    corpus_bytes(target)
        .into_iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn text_from(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let mutated = (prop::sample::select(seeds), mutations()).prop_map(|(seed, mutations)| {
        String::from_utf8_lossy(&mutate(seed.into_bytes(), &mutations)).into_owned()
    });
    prop_oneof![
        any::<String>(),
        "[-+0-9.eE ,_]{0,40}",
        "[0-9]{20,80}(\\.[0-9]{0,40})?",
        mutated,
    ]
}

/// Decimal and id texts of the corpus (one per line), and long ones.
#[test]
fn decimal_and_id_corpus() {
    for line in text_seeds("decimal") {
        check_decimal(&line);
    }
    for line in text_seeds("id") {
        check_id(&line);
    }
    for len in [30, 1_000, 100_000] {
        check_decimal(&"9".repeat(len));
        check_decimal(&format!("0.{}", "1".repeat(len)));
        check_id(&"A".repeat(len));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// Decimal parsing of any text: a value that is normalised and reads
    /// back as itself, or a short error.
    #[test]
    fn decimal_parsing_survives_any_text(text in text_from(text_seeds("decimal"))) {
        check_decimal(&text);
    }

    /// Id parsing of any text: the same text back, or a short error.
    #[test]
    fn id_parsing_survives_any_text(text in text_from(text_seeds("id"))) {
        check_id(&text);
    }
}

// ---------------------------------------------------------------------------
// The collection-sheet CSV.

fn check_sheet(bytes: &[u8]) {
    let parsed = bounded("parse_collection_sheet", bytes.len(), || {
        parse_collection_sheet("SHEET.csv", bytes)
    });
    match parsed {
        Ok(lines) => {
            assert!(!lines.is_empty(), "a sheet that parses has a line to send");
            for line in lines {
                assert!(!line.member_id.is_empty(), "{line:?}");
                assert!(
                    line.repayment.is_some() || line.deposit.is_some(),
                    "{line:?}"
                );
                assert_eq!(
                    line.repayment.is_some(),
                    !line.loan_id.is_empty(),
                    "{line:?}"
                );
                assert_eq!(
                    line.deposit.is_some(),
                    !line.savings_account_id.is_empty(),
                    "{line:?}"
                );
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with("SHEET.csv"),
                "names the file: {message}"
            );
        }
    }
}

/// The sheets of the corpus parse or are refused naming the file.
#[test]
fn collection_sheet_corpus() {
    for (path, bytes) in corpus("sheet") {
        eprintln!("replaying {}", path.display());
        check_sheet(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// The collection-sheet parser on any bytes and on corpus sheets mutated.
    #[test]
    fn collection_sheet_survives_any_bytes(bytes in bytes_from(corpus_bytes("sheet"))) {
        check_sheet(&bytes);
    }
}

/// The allocation check itself can fail: a decoder that believed a length
/// prefix (here, reserving 64 MiB for 8 bytes of input) is caught.
#[test]
#[should_panic(expected = "allocate")]
fn the_allocation_check_catches_a_believed_length_prefix() {
    bounded("a credulous decoder", 8, || {
        Vec::<u8>::with_capacity(64 << 20)
    });
}
