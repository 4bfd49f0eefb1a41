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

/// A stopped ledger with a member, a deposit (entry 6) and a withdrawal (7).
async fn data_dir() -> TempDir {
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
    app.stop().await
}

fn verify(dir: &Path) -> (bool, String) {
    let output = Command::new(BINARY)
        .arg("verify")
        .arg("--data")
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Rewrites entry `sequence` of the journal with `change` applied to its body,
/// keeping its stored hash and giving the record a valid checksum: what a
/// careful forger would do.
fn forge(dir: &Path, sequence: u64, change: impl FnOnce(&mut EntryBody)) {
    let path = dir.join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let mut offset = 8;
    for _ in 1..sequence {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 8 + len;
    }
    let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    let payload = &bytes[offset + 8..offset + 8 + len];
    let (body_bytes, hash) = payload.split_at(len - 32);
    let mut body = EntryBody::from_canonical_bytes(body_bytes).unwrap();
    change(&mut body);
    let mut forged = body.canonical_bytes();
    forged.extend_from_slice(hash);
    assert_eq!(forged.len(), len, "the forgery keeps the record's length");
    bytes[offset + 4..offset + 8].copy_from_slice(&crc32fast::hash(&forged).to_le_bytes());
    bytes[offset + 8..offset + 8 + len].copy_from_slice(&forged);
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn verify_passes_on_a_clean_data_directory() {
    let dir = data_dir().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert!(text.starts_with("ok: 7 entries verified"), "{text}");
}

#[tokio::test]
async fn verify_names_an_altered_entry() {
    let dir = data_dir().await;
    forge(dir.path(), 6, |body| {
        for posting in &mut body.postings {
            posting.amount = Decimal::from(900_000);
        }
    });
    let (ok, text) = verify(dir.path());
    assert!(!ok, "an altered amount must fail verification: {text}");
    assert!(text.contains("entry 6: hash mismatch"), "{text}");
}

#[tokio::test]
async fn verify_names_an_altered_state_record() {
    let dir = data_dir().await;
    {
        let db = sled::open(dir.path().join("state")).unwrap();
        let savings = db.get("balance/savings:TB-0001/C1").unwrap().unwrap();
        db.insert("balance/cash:TB", savings).unwrap();
        db.flush().unwrap();
    }
    let (ok, text) = verify(dir.path());
    assert!(!ok, "an altered state cache must fail verification: {text}");
    assert!(text.contains("derived state differs"), "{text}");
    assert!(text.contains("balance/cash:TB"), "{text}");
}
