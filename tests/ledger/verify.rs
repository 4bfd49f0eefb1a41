//! `mfi-ledger verify`: passes on a good data directory, and names the first
//! mismatch (exit non-zero) when the journal or the state cache was altered.

use std::path::Path;
use std::process::Command;

use mfi_ledger::domain::entry::EntryBody;
use mfi_ledger::pb;
use rust_decimal::Decimal;
use tempfile::TempDir;

use crate::support::{ctx, spawn_app, vnd};

const BINARY: &str = env!("CARGO_BIN_EXE_mfi-ledger");

/// The deposit's entry in [`data_dir`] (after the access entries, the
/// branch, center, group, member and account).
const DEPOSIT: u64 = crate::support::ACCESS_ENTRIES + 6;
/// The withdrawal's entry: the last.
const WITHDRAWAL: u64 = DEPOSIT + 1;

/// A stopped ledger with a member, a deposit ([`DEPOSIT`]) and a withdrawal
/// ([`WITHDRAWAL`]), the last entry.
async fn data_dir() -> TempDir {
    data_dir_with(0).await
}

/// [`data_dir`] with `more` deposits after the withdrawal.
async fn data_dir_with(more: usize) -> TempDir {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.deposit("dep", "TB-0001/C1", "200000", "2024-02-01")
        .await
        .unwrap();
    app.branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd"),
            account_id: "TB-0001/C1".into(),
            amount: vnd("50000"),
            effective_date: "2024-02-02".into(),
        })
        .await
        .unwrap();
    app.deposits(more, "2024-02-03").await;
    app.stop().await
}

fn verify(dir: &Path) -> (bool, String) {
    verify_args(dir, &[])
}

/// `mfi-ledger verify --data DIR ARGS...`: whether it passed, and what it
/// printed.
fn verify_args(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY)
        .arg("verify")
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Byte ranges of the journal's frames: (frame start, body start, body end).
fn frames(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 8;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        frames.push((at, at + 16, at + 16 + len));
        at += 16 + len;
    }
    frames
}

/// Rewrites entry `sequence` of the journal with `change` applied to its body,
/// keeping its stored hash and giving record and frame valid checksums: what
/// a careful forger would do. The entry is one stored plain (short).
fn forge(dir: &Path, sequence: u64, change: impl FnOnce(&mut EntryBody)) {
    let path = dir.join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let (frame, record) = records(&bytes)[sequence as usize - 1].clone();
    let payload = &bytes[record.clone()];
    assert_ne!(payload[0], 0xC0, "entry {sequence} is stored compressed");
    let (body_bytes, hash) = payload.split_at(payload.len() - 32);
    let mut body = EntryBody::from_canonical_bytes(body_bytes).unwrap();
    change(&mut body);
    let mut forged = body.canonical_bytes();
    forged.extend_from_slice(hash);
    assert_eq!(
        forged.len(),
        record.len(),
        "the forgery keeps the record's length"
    );
    bytes[record.clone()].copy_from_slice(&forged);
    fix_checksums(&mut bytes, frame, record);
    std::fs::write(&path, bytes).unwrap();
}

/// The records of the journal `bytes`: each payload's place in the file,
/// with the start of the frame it is in.
fn records(bytes: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut records = Vec::new();
    for (frame, body_start, body_end) in frames(bytes) {
        let mut at = body_start;
        while at < body_end {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            records.push((frame, at + 8..at + 8 + len));
            at += 8 + len;
        }
    }
    records
}

/// Makes the checksums of the record at `record` (its payload) and of
/// its frame at `frame` fit the bytes as they are now.
fn fix_checksums(bytes: &mut [u8], frame: usize, record: std::ops::Range<usize>) {
    let crc = crc32fast::hash(&bytes[record.clone()]);
    bytes[record.start - 4..record.start].copy_from_slice(&crc.to_le_bytes());
    let body_len = u32::from_le_bytes(bytes[frame + 4..frame + 8].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&bytes[frame + 16..frame + 16 + body_len]);
    bytes[frame + 8..frame + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Every file under `dir` with its bytes, to see that nothing changed.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

fn open_ledger(dir: &Path) -> Result<mfi_ledger::ledger::Ledger, String> {
    let store = mfi_ledger::store::DiskStore::open(dir).map_err(|e| e.to_string())?;
    let clock = crate::support::TestClock::new();
    mfi_ledger::ledger::Ledger::start(std::sync::Arc::new(store), clock, Default::default())
        .map_err(|e| e.to_string())
}

/// Starts the ledger on `dir` (recovering it as a start does) and stops it
/// cleanly; gives the last entry it held.
async fn start_and_stop(dir: &Path) -> u64 {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let ledger = open_ledger(&dir).unwrap();
        let last = ledger.read(|state| state.last_sequence());
        ledger.shutdown();
        last
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn verify_passes_on_a_clean_data_directory() {
    let dir = data_dir().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    let expected = format!("ok: {WITHDRAWAL} entries verified");
    assert!(text.starts_with(&expected), "{text}");
}

#[tokio::test]
async fn verify_names_an_altered_entry() {
    let dir = data_dir().await;
    forge(dir.path(), DEPOSIT, |body| {
        for posting in &mut body.postings {
            posting.amount = Decimal::from(900_000);
        }
    });
    let (ok, text) = verify(dir.path());
    assert!(!ok, "an altered amount must fail verification: {text}");
    let expected = format!("entry {DEPOSIT}: hash mismatch");
    assert!(text.contains(&expected), "{text}");
}

/// A long entry (a 50-installment loan's disbursement, its schedule
/// included) is stored zstd-compressed in the journal: smaller than its
/// canonical bytes, read back exactly over gRPC after a restart (the same
/// hashes, the same schedule), and verified by the hash of its canonical
/// bytes. A compressed record damaged under valid checksums fails `verify`,
/// which names the entry.
#[tokio::test]
async fn long_entries_are_stored_compressed_read_back_and_verified() {
    use crate::support::{flat_weekly, read_journal, start_again};
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let loan = app
        .disburse(
            "loan",
            "TB-0001",
            flat_weekly("5000000", "26", 50, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap()
        .loan_id;
    app.repay("repay", &loan, "102500", "2024-01-15")
        .await
        .unwrap();
    let written = read_journal(&mut app.audit, 100).await;
    let disbursement = written
        .iter()
        .find(|entry| entry.request_id == "loan")
        .unwrap()
        .sequence;
    let dir = app.stop().await;

    let bytes = std::fs::read(dir.path().join("journal.log")).unwrap();
    let stored = records(&bytes);
    assert_eq!(stored.len() as u64, written.len() as u64);
    let (_, record) = &stored[disbursement as usize - 1];
    let payload = &bytes[record.clone()];
    assert_eq!(payload[0], 0xC0, "the disbursement is stored compressed");
    let canonical_len = u32::from_le_bytes(payload[1..5].try_into().unwrap()) as usize;
    assert!(
        payload.len() * 2 < canonical_len,
        "{} bytes stored for {canonical_len}",
        payload.len()
    );
    let (_, repayment) = stored.last().unwrap();
    assert_ne!(bytes[repayment.start], 0xC0, "a repayment is stored plain");

    let mut app = start_again(dir).await;
    assert_eq!(read_journal(&mut app.audit, 7).await, written);
    assert_eq!(app.loan(&loan, "2024-01-15").await.schedule.len(), 50);
    let dir = app.stop().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");

    // Damaged inside the compressed bytes, the checksums made valid again.
    let path = dir.path().join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let (frame, record) = records(&bytes)[disbursement as usize - 1].clone();
    for byte in &mut bytes[record.start + 40..record.start + 48] {
        *byte ^= 0x55;
    }
    fix_checksums(&mut bytes, frame, record);
    std::fs::write(&path, bytes).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(
        !ok,
        "a damaged compressed entry must fail verification: {text}"
    );
    assert!(text.contains(&format!("entry {disbursement}")), "{text}");
}

/// Issue 14: `verify --chain-only` checks the chain without re-deciding
/// the commands. Full verification runs the two passes side by side and
/// still reports the first fault by entry: a rechained forgery (a deposit
/// whose amount no longer matches its command) before a later entry whose
/// bytes were changed under its hash, which is all the chain pass sees.
#[tokio::test]
async fn the_chain_pass_alone_and_both_passes_report_their_first_fault() {
    let dir = data_dir().await;
    let set_amounts = |body: &mut EntryBody, amount: u64| {
        for posting in &mut body.postings {
            posting.amount = Decimal::from(amount);
        }
    };
    rewrite_and_rechain(dir.path(), DEPOSIT, |canonical| {
        let mut body = EntryBody::from_canonical_bytes(canonical).unwrap();
        set_amounts(&mut body, 900_000);
        *canonical = body.canonical_bytes();
    });
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let redecided = format!("entry {DEPOSIT}: re-deciding its command");

    let (ok, text) = verify(dir.path());
    assert!(
        !ok,
        "a rechained forgery must fail full verification: {text}"
    );
    assert!(text.contains(&redecided), "{text}");
    let (ok, text) = verify_args(dir.path(), &["--chain-only"]);
    assert!(ok, "the chain of a rechained forgery holds: {text}");
    assert!(
        text.starts_with(&format!("ok: {WITHDRAWAL} entries verified"))
            && text.contains("chain only"),
        "{text}"
    );

    forge(dir.path(), WITHDRAWAL, |body| set_amounts(body, 90_000));
    let (ok, text) = verify_args(dir.path(), &["--chain-only"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("entry {WITHDRAWAL}: hash mismatch")),
        "{text}"
    );
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(text.contains(&redecided), "the earlier fault first: {text}");
}

/// The chain pass (hashes, tree) and the entry pass (decoding, balance)
/// run on their own threads: the earlier entry's fault is still the one
/// reported, and at one entry the one a single pass finds first (its hash
/// before its balance).
#[tokio::test]
async fn an_entry_fault_and_a_later_chain_fault_report_the_earlier_entry() {
    let unbalance = |body: &mut EntryBody| {
        body.postings[0].amount += Decimal::ONE;
    };
    let dir = data_dir().await;
    rewrite_and_rechain(dir.path(), DEPOSIT, body_changed(unbalance));
    forge(dir.path(), WITHDRAWAL, |body| {
        body.postings[0].amount = Decimal::from(90_000);
    });
    both_depths_name(
        dir.path(),
        &format!("entry {DEPOSIT}: postings do not balance"),
    );

    let dir = data_dir().await;
    forge(dir.path(), DEPOSIT, unbalance);
    let (ok, text) = verify_args(dir.path(), &["--chain-only"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("entry {DEPOSIT}: hash mismatch")),
        "its hash before its balance: {text}"
    );
}

/// The entry pass checks its batches of 256 records on several threads,
/// which may finish a later batch first: two unbalanced entries in batches
/// apart are still reported by the earlier one, with and without
/// re-execution.
#[tokio::test]
async fn of_two_entry_faults_batches_apart_the_earlier_is_reported() {
    let dir = data_dir_with(700).await;
    let unbalance = |body: &mut EntryBody| {
        body.postings[0].amount += Decimal::ONE;
    };
    // The last record of the first batch and the first of the third: a
    // merge taking faults as they arrive would often report the later.
    let (earlier, later) = (256, 513);
    assert!(earlier > WITHDRAWAL, "both are deposits");
    rewrite_and_rechain(dir.path(), earlier, body_changed(unbalance));
    rechain_only(dir.path(), later, body_changed(unbalance));
    both_depths_name(
        dir.path(),
        &format!("entry {earlier}: postings do not balance"),
    );
}

/// The tree pass stops at the record whose leaf `merkle.tree` does not
/// hold, but hands that record on: an unbalanced posting in the same
/// entry, which a single pass checks before the tree, is the fault
/// reported; the same entry changed but balanced is named by the tree.
#[tokio::test]
async fn a_tree_fault_gives_way_to_a_balance_fault_in_the_same_entry() {
    let unbalanced = data_dir_with(700).await;
    let fault = 300;
    assert!(fault > WITHDRAWAL, "a deposit");
    rechain_only(
        unbalanced.path(),
        fault,
        body_changed(|body: &mut EntryBody| body.postings[0].amount += Decimal::ONE),
    );
    both_depths_name(
        unbalanced.path(),
        &format!("entry {fault}: postings do not balance"),
    );
    let balanced = data_dir_with(700).await;
    rechain_only(
        balanced.path(),
        fault,
        body_changed(|body: &mut EntryBody| body.recorded_at_micros += 1),
    );
    both_depths_name(
        balanced.path(),
        &format!("entry {fault}: the Merkle tree the server keeps"),
    );
}

/// Full verification and `--chain-only` both fail, naming `fault`.
fn both_depths_name(dir: &Path, fault: &str) {
    for args in [&[][..], &["--chain-only"][..]] {
        let (ok, text) = verify_args(dir, args);
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains(fault), "{args:?}: {text}");
    }
}

/// The passes hand entries over 256 at a time, 64 handovers in flight:
/// when re-execution fails early in a journal longer than that, the entry
/// pass and then the chain pass stop at their next handover, and the
/// re-execution fault is the one reported, not a broken handover.
#[tokio::test]
async fn an_early_re_execution_fault_in_a_long_journal_is_the_one_reported() {
    let more = 5_000;
    let dir = data_dir_with(more).await;
    rewrite_and_rechain(dir.path(), DEPOSIT, every_amount(900_000));
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("entry {DEPOSIT}: re-deciding its command")),
        "{text}"
    );
    let (ok, text) = verify_args(dir.path(), &["--chain-only"]);
    assert!(ok, "{text}");
    let last = WITHDRAWAL + more as u64;
    let last = format!("{},{:03}", last / 1000, last % 1000);
    assert!(
        text.starts_with(&format!("ok: {last} entries verified")),
        "{text}"
    );
}

/// The re-execution pass compares the rebuilt state with the cache at the
/// entry the cache stands at, which after a crash is behind the journal's
/// end: a cache record altered there comes before a later entry that no
/// longer re-decides, and an earlier entry that no longer re-decides comes
/// before the altered record. The first fault by entry is the one reported.
#[tokio::test]
async fn the_earlier_of_a_cache_fault_and_a_re_execution_fault_is_reported() {
    let dir = data_dir().await;
    let cache_at_withdrawal = tempfile::tempdir().unwrap();
    copy_tree(&dir.path().join("state"), cache_at_withdrawal.path());
    let mut app = crate::support::start_again(dir).await;
    app.deposits(3, "2024-02-03").await;
    let dir = app.stop().await;
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    copy_tree(cache_at_withdrawal.path(), &dir.path().join("state"));
    let (ok, text) = verify(dir.path());
    assert!(
        ok,
        "a cache behind the journal is compared where it stands: {text}"
    );

    let later = WITHDRAWAL + 2;
    // A deposit of 1,000 VND: 2,000 encodes in as many bytes.
    rewrite_and_rechain(dir.path(), later, every_amount(2_000));
    fails_naming(
        dir.path(),
        &format!("entry {later}: re-deciding its command"),
    );

    alter_cash_balance(dir.path());
    // The cache's fault, at entry WITHDRAWAL, comes first.
    fails_naming(
        dir.path(),
        &format!("replay at entry {WITHDRAWAL}: record \"{CASH_STEPS}\""),
    );

    rechain_only(dir.path(), DEPOSIT, every_amount(900_000));
    // The entry's fault, before the cache's entry, comes first.
    fails_naming(
        dir.path(),
        &format!("entry {DEPOSIT}: re-deciding its command"),
    );
}

/// Full verification fails, naming `fault`.
fn fails_naming(dir: &Path, fault: &str) {
    let (ok, text) = verify(dir);
    assert!(!ok, "{text}");
    assert!(text.contains(fault), "{fault}: {text}");
}

/// `change` as a change of an entry's canonical bytes (for
/// [`rechain_only`]; the bytes must keep their length).
fn body_changed(change: impl FnOnce(&mut EntryBody)) -> impl FnOnce(&mut Vec<u8>) {
    move |canonical| {
        let mut body = EntryBody::from_canonical_bytes(canonical).unwrap();
        change(&mut body);
        *canonical = body.canonical_bytes();
    }
}

/// Sets every posting's amount of an entry to `amount`.
fn every_amount(amount: u64) -> impl FnOnce(&mut Vec<u8>) {
    body_changed(move |body| {
        for posting in &mut body.postings {
            posting.amount = Decimal::from(amount);
        }
    })
}

/// Copies the directory `from` (a stopped server's state cache) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The state cache's record of the branch's cash account's steps (its
/// balance is its steps' last total).
const CASH_STEPS: &str = "steps/cash:TB/0000000000";

/// Writes the member's savings account's record of steps under the
/// branch's cash account in the state cache.
fn alter_cash_balance(dir: &Path) {
    let db = crate::support::open_cache_directly(dir);
    let savings = db
        .get("steps/savings:TB-0001/C1/0000000000")
        .unwrap()
        .unwrap();
    assert!(db.get(CASH_STEPS).unwrap().is_some());
    db.insert(CASH_STEPS, savings).unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn verify_names_an_altered_state_record() {
    let dir = data_dir().await;
    alter_cash_balance(dir.path());
    let (ok, text) = verify(dir.path());
    assert!(!ok, "an altered state cache must fail verification: {text}");
    assert!(text.contains("derived state differs"), "{text}");
    assert!(text.contains(CASH_STEPS), "{text}");
}

/// Reproduces: `verify` of a data directory whose state cache another
/// release wrote (each release whose cache records changed moved the
/// cache's format) failed on the cache ("state records of format 5; this
/// release reads format 6") although its journal, which every later build
/// must verify, was sound. Now the journal is verified in full and the
/// report says the cache was not compared, and why; the server rebuilds the
/// cache at its next start, and verify compares it again.
#[tokio::test]
async fn a_state_cache_another_release_wrote_is_not_compared_and_the_journal_verifies() {
    use mfi_ledger::domain::state::STATE_FORMAT;
    use mfi_ledger::store::{DiskStore, Store};
    let older = postcard::to_stdvec(&(STATE_FORMAT - 1)).unwrap();
    for (format, says) in [
        (
            Some(older),
            format!(
                "; every command re-decided; the stored state not compared: its records are in format {}, \
                 written by another release, and this build reads format {STATE_FORMAT}; the server rebuilds it \
                 from the journal at its next start",
                STATE_FORMAT - 1
            ),
        ),
        (
            None,
            "the stored state not compared: its records have no format record".into(),
        ),
    ] {
        let dir = data_dir().await;
        {
            let store = DiskStore::open(dir.path()).unwrap();
            store.save_state(&[(b"format".to_vec(), format)]).unwrap();
            store.flush_state().unwrap();
        }
        let (ok, text) = verify(dir.path());
        assert!(ok, "{text}");
        assert!(text.contains(&says), "{text}");
        assert!(!text.contains("matches the replay"), "{text}");
        assert_eq!(start_and_stop(dir.path()).await, WITHDRAWAL);
        let (ok, text) = verify(dir.path());
        assert!(
            ok && text.contains(&format!(
                "stored state matches the replay at entry {WITHDRAWAL};"
            )),
            "the rebuilt cache is compared: {text}"
        );
    }
}

/// A format record that does not decode is damage, not another release's
/// cache: verify fails naming it.
#[tokio::test]
async fn a_state_cache_whose_format_record_does_not_decode_fails_verify() {
    use mfi_ledger::store::{DiskStore, Store};
    let dir = data_dir().await;
    {
        let store = DiskStore::open(dir.path()).unwrap();
        store
            .save_state(&[(b"format".to_vec(), Some(vec![0xff; 6]))])
            .unwrap();
        store.flush_state().unwrap();
    }
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(text.contains("\"format\""), "{text}");
}

/// A copy of a data directory without its state cache (the server builds
/// one from the journal): its journal verifies, and the report does not
/// claim a comparison it did not make.
#[tokio::test]
async fn a_data_directory_without_a_state_cache_verifies_and_says_so() {
    let dir = data_dir().await;
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert!(
        text.contains("the stored state not compared: the data directory keeps no state cache"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_changes_nothing_in_the_data_directory() {
    let dir = data_dir().await;
    let before = snapshot(dir.path());
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_damaged_frame_with_entries_after_it_is_corruption_not_a_torn_tail() {
    let dir = data_dir().await;
    let path = dir.path().join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip one bit in the body of the third frame (entry 3); entries 4 to 7 follow.
    let (_, body_start, _) = frames(&bytes)[2];
    bytes[body_start + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("entry 3") && text.contains("refusing to cut"),
        "{text}"
    );
    // The server refuses to start rather than cut acknowledged entries.
    let refused = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || open_ledger(&dir).err()
    })
    .await
    .unwrap()
    .expect("the server must not start on a journal damaged in the middle");
    assert!(refused.contains("refusing to cut"), "{refused}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
}

#[tokio::test]
async fn a_torn_last_frame_is_cut_and_loses_nothing_acknowledged() {
    for tail in [
        b"\0".repeat(4096),
        vec![
            0x46, 0x49, 0x46, 0x4d, 200, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 9, 9,
        ],
    ] {
        let dir = data_dir().await;
        let path = dir.path().join("journal.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let (ok, text) = verify(dir.path());
        assert!(ok, "{text}");
        assert!(text.contains("torn"), "{text}");
        assert_eq!(start_and_stop(dir.path()).await, WITHDRAWAL);
        let (ok, text) = verify(dir.path());
        assert!(ok && !text.contains("torn"), "the tail was cut: {text}");
        // The cut bytes are kept aside, not destroyed.
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("journal.log.torn-")
            })
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(kept[0].path()).unwrap(), tail);
    }
}

#[tokio::test]
async fn a_journal_that_lost_acknowledged_entries_is_refused_at_startup() {
    let dir = data_dir().await;
    let path = dir.path().join("journal.log");
    let bytes = std::fs::read(&path).unwrap();
    // Drop the last frame whole: the state cache knows the withdrawal, the
    // journal ends at the deposit.
    let (last, _, _) = *frames(&bytes).last().unwrap();
    std::fs::write(&path, &bytes[..last]).unwrap();
    let refused = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || open_ledger(&dir).err()
    })
    .await
    .unwrap()
    .expect("the server must not start when acknowledged entries are missing");
    assert!(
        refused.contains("acknowledged entries are missing"),
        "{refused}"
    );
    let (ok, text) = verify(dir.path());
    assert!(
        !ok && text.contains("acknowledged entries are missing"),
        "{text}"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = mfi_ledger::store::DiskStore::open(dir.path()).unwrap();
    let before = std::fs::read(dir.path().join("journal.log")).unwrap();
    let second = mfi_ledger::store::DiskStore::open(dir.path());
    let error = second
        .err()
        .expect("the journal is locked by the first store")
        .to_string();
    assert!(error.contains("another mfi-ledger"), "{error}");
    assert_eq!(
        std::fs::read(dir.path().join("journal.log")).unwrap(),
        before
    );
    drop(first);
}

/// Rewrites the canonical bytes of entry `sequence` with `change` (keeping
/// their length) and re-chains every hash from it on, with valid record and
/// frame checksums: a journal a release with other versions could have
/// written. That release would have kept its own Merkle tree and signed its
/// own checkpoints: the tree file and the checkpoints go (the server
/// rebuilds the tree; `tamper.rs` keeps them, as a forger would find them).
fn rewrite_and_rechain(dir: &Path, sequence: u64, change: impl FnOnce(&mut Vec<u8>)) {
    rechain_only(dir, sequence, change);
    std::fs::remove_file(dir.join("merkle.tree")).unwrap();
    std::fs::remove_file(dir.join("checkpoints.log")).unwrap();
}

/// [`rewrite_and_rechain`], leaving the tree file and the checkpoints as
/// they were.
pub fn rechain_only(dir: &Path, sequence: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let mut change = Some(change);
    let mut previous = mfi_ledger::domain::entry::GENESIS_HASH;
    let mut seen = 0;
    for (frame, body_start, body_end) in frames(&bytes) {
        let mut at = body_start;
        while at < body_end {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            seen += 1;
            let payload = at + 8..at + 8 + len;
            let mut canonical = bytes[payload.start..payload.end - 32].to_vec();
            if seen == sequence {
                (change.take().unwrap())(&mut canonical);
                assert_eq!(canonical.len(), len - 32, "the change keeps the length");
            }
            let hash = mfi_ledger::domain::entry::chain_hash(&previous, &canonical);
            bytes[payload.start..payload.end - 32].copy_from_slice(&canonical);
            bytes[payload.end - 32..payload.end].copy_from_slice(&hash);
            let crc = crc32fast::hash(&bytes[payload.clone()]);
            bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            previous = hash;
            at = payload.end;
        }
        let crc = crc32fast::hash(&bytes[body_start..body_end]);
        bytes[frame + 8..frame + 12].copy_from_slice(&crc.to_le_bytes());
    }
    assert!(change.is_none(), "no entry {sequence}");
    std::fs::write(&path, bytes).unwrap();
}

/// Issue 9: `verify` re-executed every entry under today's rules, so a rules
/// fix would have failed every older journal. An entry names its rules
/// version; one this build cannot re-decide (a newer release's) is checked
/// by its invariants, and the output says how many and why; the server,
/// which would decide the next commands under older rules, refuses to start.
#[tokio::test]
async fn entries_under_newer_rules_are_verified_by_invariants_and_not_served() {
    let dir = data_dir().await;
    // The withdrawal as a release with the next rules version would write it.
    let current = mfi_ledger::domain::entry::RULES_VERSION_CURRENT;
    let next = current + 1;
    rewrite_and_rechain(dir.path(), WITHDRAWAL, |canonical| {
        assert_eq!(canonical[0], 4, "encoding version 4");
        assert_eq!(
            &canonical[1..3],
            &current.to_le_bytes(),
            "this build's rules"
        );
        canonical[1..3].copy_from_slice(&next.to_le_bytes());
    });
    // The cache holds the withdrawal's old hash: this build would rebuild it.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    let expected = format!("ok: {WITHDRAWAL} entries verified");
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.contains("note: 1 entries verified by their invariants only")
            && text.contains(&format!(
                "rules version {next}, newer than this build's rules ({current})"
            )),
        "{text}"
    );
    let refused = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || open_ledger(&dir).err()
    })
    .await
    .unwrap()
    .expect("a server with older rules must not decide after newer entries");
    assert!(
        refused.contains(&format!("rules version {next}")) && refused.contains("upgrade"),
        "{refused}"
    );
}

/// Issue 9: only encoding version 2 decoded, and any other version was a
/// generic decode error ("entry does not decode"). An entry of a newer
/// encoding is refused by serve and verify as written by a newer release,
/// and one of the development builds' encoding 2 names its version; the
/// journal is left as it was (nothing is cut as if torn).
#[tokio::test]
async fn entries_of_other_encodings_are_refused_naming_the_version() {
    for (version, expected) in [
        (5u8, "written by a newer release of mfi-ledger"),
        (2u8, "version 2 was written by a development build"),
    ] {
        let dir = data_dir().await;
        rewrite_and_rechain(dir.path(), 5, |canonical| canonical[0] = version);
        let journal = std::fs::read(dir.path().join("journal.log")).unwrap();
        let (ok, text) = verify(dir.path());
        assert!(!ok, "{text}");
        assert!(
            text.contains("entry 5") && text.contains(expected),
            "{text}"
        );
        let refused = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || open_ledger(&dir).err()
        })
        .await
        .unwrap()
        .expect("the server must not start on entries it cannot read");
        assert!(refused.contains(expected), "{refused}");
        assert!(!refused.contains("corrupt"), "{refused}");
        assert_eq!(
            std::fs::read(dir.path().join("journal.log")).unwrap(),
            journal,
            "nothing was cut"
        );
    }
}

/// The real binary serving `dir`; its standard error is collected.
struct ServedBinary {
    child: tokio::process::Child,
    audit: mfi_ledger::pb::audit_service_client::AuditServiceClient<crate::support::Conn>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

async fn serve_binary(dir: &Path) -> ServedBinary {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(BINARY)
        .args(["serve", "--init", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let collected = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            let mut text = collected.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server says where it listens within 30 s")
        .unwrap()
        .unwrap_or_else(|| panic!("no listening line; stderr: {}", stderr.lock().unwrap()));
    let address = line.strip_prefix("mfi-ledger listening on ").unwrap();
    let token = crate::support::tester_token_over_grpc(address, dir).await;
    let channel = crate::support::connect(address.parse().unwrap(), &token).await;
    ServedBinary {
        child,
        audit: mfi_ledger::pb::audit_service_client::AuditServiceClient::new(channel),
        stderr,
    }
}

/// Issue 9: startup loaded the state cache whenever its head matched the
/// journal, so a record edited on disk was served (cash read 0 here) and
/// used for decisions. The cache's digest no longer adds up: the server says
/// so, rebuilds from the journal, and serves the journal's figure. A data
/// directory open to other users is served, with a warning.
#[tokio::test]
async fn a_cache_record_edited_on_disk_is_not_served_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = data_dir().await;
    alter_cash_balance(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut server = serve_binary(dir.path()).await;
    let balance = server
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: "cash:TB".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap()
        .amount;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let stderr = server.stderr.lock().unwrap().clone();
    assert_eq!(balance, "150000", "cash from the journal; stderr: {stderr}");
    assert!(
        stderr.contains("state cache does not match its digest; rebuilding it from the journal"),
        "{stderr}"
    );
    assert!(stderr.contains("open to other users"), "{stderr}");
}

/// Issue 9: the data directory holds personal data: a new one is its
/// owner's only (directories 0700, files 0600: journal, cache, torn-tail
/// copies).
#[tokio::test]
async fn a_new_data_directory_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = data_dir().await;
    let dir = parent.path().join("new-data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    {
        let store = mfi_ledger::store::DiskStore::open(&dir).unwrap();
        let records = vec![(b"head".to_vec(), Some(b"x".to_vec()))];
        mfi_ledger::store::Store::save_state(&store, &records).unwrap();
        mfi_ledger::store::Store::flush_state(&store).unwrap();
    }
    // A torn tail, kept aside at the next open.
    let mut journal = std::fs::read(dir.join("journal.log")).unwrap();
    journal.extend_from_slice(&[0u8; 64]);
    std::fs::write(dir.join("journal.log"), journal).unwrap();
    let mut reopened = mfi_ledger::store::DiskStore::open(&dir);
    for _ in 0..250 {
        if reopened.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        reopened = mfi_ledger::store::DiskStore::open(&dir);
    }
    drop(reopened.unwrap());
    let mut seen = (0, 0);
    let mut pending = vec![dir.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            seen.0 += 1;
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            seen.1 += 1;
        }
    }
    assert!(seen.0 >= 2 && seen.1 >= 3, "{seen:?}");
    assert!(dir.join("journal.log.torn-8").exists());
}

/// Issue 10: every entry names the principal who asked for it, and verify
/// re-decides it with that principal's roles as they stood: an entry
/// rewritten (and rechained) to name a principal without the role (an
/// auditor, who never writes) fails verification.
#[tokio::test]
async fn verify_refuses_an_entry_whose_principal_lacked_the_role() {
    use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
    use mfi_ledger::domain::ids::PrincipalId;
    let mut app = spawn_app().await;
    // As long as "tester", so that the entry keeps its length.
    let auditor = "audit1";
    let admin = PrincipalId::parse("p", "admin").unwrap();
    let grants = vec![RoleGrant {
        role: Role::Auditor,
        scope: Scope::Institution,
    }];
    mfi_ledger::auth::create_principal_in_process(&app.ledger, &admin, auditor, grants, 36_500)
        .await
        .unwrap();
    app.branch_tb().await;
    app.member("TB-0001").await;
    let deposit = app
        .deposit("dep", "TB-0001/C1", "200000", "2024-02-01")
        .await
        .unwrap()
        .receipt
        .unwrap()
        .sequence;
    let dir = app.stop().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    rewrite_and_rechain(dir.path(), deposit, |canonical| {
        let mut body = EntryBody::from_canonical_bytes(canonical).unwrap();
        let attribution = body.attribution.as_mut().expect("a principal");
        assert_eq!(attribution.principal.as_str(), crate::support::TESTER);
        attribution.principal = PrincipalId::parse("p", auditor).unwrap();
        // A forger recomputes the request hash too (it covers the principal).
        body.request_hash = mfi_ledger::domain::command::Command {
            request_id: body.request_id.clone(),
            actor: body.actor.clone(),
            principal: Some(PrincipalId::parse("p", auditor).unwrap()),
            approval: None,
            body: body.command.clone(),
        }
        .request_hash();
        *canonical = body.canonical_bytes();
    });
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    let expected = format!("entry {deposit}");
    assert!(
        text.contains(&expected) && text.contains("permission denied") && text.contains(auditor),
        "{text}"
    );
}

/// Exactly once, checked offline: an entry recording the request id of an
/// earlier entry (written with its checksums, request hash and chain made
/// to fit) is named by `verify`, with the entry it repeats.
#[tokio::test]
async fn verify_names_an_entry_that_reuses_an_earlier_request_id() {
    let dir = data_dir_with(2).await;
    let (earlier, last) = (WITHDRAWAL + 1, WITHDRAWAL + 2);
    let mut earlier_id = None;
    rechain_only(dir.path(), earlier, |canonical| {
        earlier_id = Some(
            EntryBody::from_canonical_bytes(canonical)
                .unwrap()
                .request_id,
        );
    });
    let earlier_id = earlier_id.unwrap();
    rewrite_and_rechain(dir.path(), last, |canonical| {
        let mut body = EntryBody::from_canonical_bytes(canonical).unwrap();
        assert_ne!(body.request_id, earlier_id);
        body.request_id = earlier_id.clone();
        body.request_hash = body.client_command().request_hash();
        *canonical = body.canonical_bytes();
    });
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "entry {last}: reuses request id {earlier_id} of entry {earlier}"
        )),
        "{text}"
    );
    let (ok, text) = verify_args(dir.path(), &["--chain-only"]);
    assert!(ok, "the chain holds: {text}");
}

/// `journal.idx`, which a stopped server leaves beside the journal so that
/// its next start reads none of it, is compared with the journal: every
/// offset and request-id hash. One the server would use (its checksum
/// holds and it is tied to the journal's last frame) but that is not the
/// journal's fails verify, naming what differs; one the server would not
/// use is a note.
#[tokio::test]
async fn verify_compares_the_journals_index_with_the_journal() {
    let dir = data_dir_with(20).await;
    let path = dir.path().join("journal.idx");
    let pristine = std::fs::read(&path).expect("a stopped server leaves journal.idx");
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    let count = u64::from_le_bytes(pristine[24..32].try_into().unwrap());
    assert!(count > 20, "{count}");
    assert!(
        text.contains(&format!("ok: {count} entries verified"))
            && text.contains(&format!(
                "journal.idx: the offsets and request ids of its {count} entries match"
            )),
        "{text}"
    );
    // Edited, with its checksum made to hold again.
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = pristine.clone();
        edit(&mut bytes);
        let end = bytes.len() - 8;
        let crc = crc32fast::hash(&bytes[..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        verify(dir.path())
    };
    let hashes_at = 32 + count as usize * 8;
    // Two request ids' entries swapped.
    let (ok, text) = edited(&|bytes| {
        let first = bytes[hashes_at + 8..hashes_at + 16].to_vec();
        bytes.copy_within(hashes_at + 24..hashes_at + 32, hashes_at + 8);
        bytes[hashes_at + 24..hashes_at + 32].copy_from_slice(&first);
    });
    assert!(!ok, "{text}");
    assert!(
        text.contains("journal.idx: its request-id hashes are not the journal's: entry ")
            && text.contains(": it holds request-id hash "),
        "the entry is named: {text}"
    );
    // The largest hash changed (still in order): a hash no entry gives.
    let last_hash = hashes_at + (count as usize - 1) * 16;
    let (ok, text) = edited(&|bytes| {
        let hash = u64::from_le_bytes(bytes[last_hash..last_hash + 8].try_into().unwrap());
        bytes[last_hash..last_hash + 8].copy_from_slice(&(hash + 1).to_le_bytes());
    });
    assert!(!ok, "{text}");
    let sequence = u64::from_le_bytes(pristine[last_hash + 8..last_hash + 16].try_into().unwrap());
    assert!(
        text.contains(&format!(
            "journal.idx: its request-id hashes are not the journal's: entry {sequence}: it holds \
             request-id hash "
        )),
        "{text}"
    );
    // Entry 2's record put where entry 3's is.
    let (ok, text) = edited(&|bytes| bytes.copy_within(32 + 16..32 + 24, 32 + 8));
    assert!(!ok, "{text}");
    assert!(
        text.contains("journal.idx: entry 2: the index puts its record at byte"),
        "{text}"
    );
    // Cut short: the server would not use it.
    std::fs::write(&path, &pristine[..pristine.len() - 1]).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert!(
        text.contains("note: journal.idx is not the journal's")
            && text.contains("not the size of an index of"),
        "{text}"
    );
    assert!(!text.contains("entries match"), "{text}");
}

/// The index is compared batch by batch as `verify`'s workers check the
/// journal (256 entries a batch): an entry misplaced in any batch, or a
/// record pairing a hash with another batch's entry, is found and named;
/// and a journal grown past its index (a server stopped without writing
/// it again) still matches on the entries it covers.
#[tokio::test]
async fn verify_compares_the_index_across_batches_and_a_journal_grown_past_it() {
    let dir = data_dir_with(700).await;
    let path = dir.path().join("journal.idx");
    let pristine = std::fs::read(&path).unwrap();
    let count = u64::from_le_bytes(pristine[24..32].try_into().unwrap());
    assert!(count > 600, "{count}");
    let (ok, text) = verify(dir.path());
    assert!(
        ok && text.contains(&format!("its {count} entries match")),
        "{text}"
    );
    let with_crc = |mut bytes: Vec<u8>| {
        let end = bytes.len() - 8;
        let crc = crc32fast::hash(&bytes[..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = pristine.clone();
        edit(&mut bytes);
        std::fs::write(&path, with_crc(bytes)).unwrap();
        verify(dir.path())
    };
    let offset_at = |sequence: usize| 32 + (sequence - 1) * 8;
    // Two entries' offsets swapped, at batch edges and within batches (the
    // last entry's offset is tied to the trailer: not swapped).
    for sequence in [256usize, 257, 300, 513, count as usize - 2] {
        let (ok, text) = edited(&|bytes| {
            let (a, b) = (offset_at(sequence), offset_at(sequence + 1));
            let first = bytes[a..a + 8].to_vec();
            bytes.copy_within(b..b + 8, a);
            bytes[b..b + 8].copy_from_slice(&first);
        });
        assert!(!ok, "{text}");
        assert!(
            text.contains(&format!("journal.idx: entry {sequence}: the index puts")),
            "{sequence}: {text}"
        );
    }
    // The sequence numbers of two hash records swapped, an early entry's
    // with one past the second batch.
    let hashes_at = 32 + count as usize * 8;
    let sequence_of = |bytes: &[u8], record: usize| {
        let at = hashes_at + record * 16 + 8;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let early = (0..count as usize)
        .find(|&r| sequence_of(&pristine, r) < 100)
        .unwrap();
    let late = (0..count as usize)
        .find(|&r| sequence_of(&pristine, r) > 520)
        .unwrap();
    let (ok, text) = edited(&|bytes| {
        let (a, b) = (hashes_at + early * 16 + 8, hashes_at + late * 16 + 8);
        let first = bytes[a..a + 8].to_vec();
        bytes.copy_within(b..b + 8, a);
        bytes[b..b + 8].copy_from_slice(&first);
    });
    assert!(!ok, "{text}");
    let named = sequence_of(&pristine, early.max(late));
    let other = sequence_of(&pristine, early.min(late));
    assert!(
        text.contains(&format!(
            "journal.idx: its request-id hashes are not the journal's: entry {named}: it holds"
        )),
        "the first record in the index's order that is wrong, entry {named} (or {other}): {text}"
    );
    // A record naming an entry the index does not cover.
    let (ok, text) = edited(&|bytes| {
        let at = hashes_at + (count as usize - 1) * 16 + 8;
        bytes[at..at + 8].copy_from_slice(&(count + 1).to_le_bytes());
    });
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("a record names entry {}", count + 1)),
        "{text}"
    );
    std::fs::write(&path, &pristine).unwrap();
    // The journal grown past the index; the old index put back covers the
    // entries it did.
    let mut app = crate::support::start_again(dir).await;
    app.deposits_as("grown", 300, "2024-02-04").await;
    let dir = app.stop().await;
    let grown = std::fs::read(&path).unwrap();
    assert!(u64::from_le_bytes(grown[24..32].try_into().unwrap()) >= count + 300);
    std::fs::write(&path, &pristine).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(
        ok && text.contains(&format!("its {count} entries match")),
        "{text}"
    );
    // An offset changed inside the old index is still found.
    let mut bytes = pristine.clone();
    bytes.copy_within(
        offset_at(1)..offset_at(1) + 8,
        offset_at(count as usize - 1),
    );
    std::fs::write(&path, with_crc(bytes)).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("entry {}: the index puts", count - 1)),
        "{text}"
    );
}
