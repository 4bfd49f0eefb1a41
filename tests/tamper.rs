//! Tamper tests (issue 11): the books are written by the real server, an
//! auditor keeps checkpoints and verifies entries, a witness cosigns; then a
//! copy of the data directory is changed the way each attacker can, and
//! `verify`, the server, `audit` and the witness are run on it.
//!
//! The attackers, from naive to careful:
//! - a byte changed in an entry, an entry dropped, two swapped, with the
//!   record and frame checksums fixed but the hash chain left as it was;
//! - an entry rewritten with the checksums, its request hash and the hash
//!   chain recomputed from it on (a consistent rewrite), leaving or removing
//!   `merkle.tree` and `checkpoints.log`;
//! - the journal truncated at a frame boundary and different entries
//!   appended by a server restarted on it with the same key.
//!
//! Every failing command must exit non-zero and name the first bad sequence
//! number (or, where only a signed root can tell, the checkpoint it fails).
//!
//! What each check can see: `verify` reads the data directory only, so a
//! directory whose tree and checkpoints the forger let the server rebuild
//! verifies; given the checkpoints an auditor kept, it fails the one the
//! journal no longer gives. `audit replay` downloads the entries past the
//! size it verified; a rewrite below it is found with `--from 1` (or when
//! the next entry does not chain to the head it kept).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mfi_ledger::domain::entry::{EntryBody, GENESIS_HASH, chain_hash};

use crate::common;

use common::{
    BIN, Client, ServerOn, audit_fetch, audit_replay, copy_dir, expect_failure, expect_success,
    field, kept_sizes, s, witness_once,
};

/// The journal file as frames of records, each record's payload being an
/// entry's canonical bytes then its 32-byte hash (`store::journal_file`;
/// the entries these tests write are short, so none is stored compressed:
/// asserted at open). Written back with valid record and frame checksums.
struct Journal {
    path: PathBuf,
    header: Vec<u8>,
    frame_magic: [u8; 4],
    frames: Vec<Vec<Vec<u8>>>,
}

impl Journal {
    fn open(dir: &Path) -> Journal {
        let path = dir.join("journal.log");
        let bytes = std::fs::read(&path).expect("read the journal");
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let mut frames = Vec::new();
        let mut frame_magic = [0; 4];
        let mut at = 8;
        while at < bytes.len() {
            frame_magic.copy_from_slice(&bytes[at..at + 4]);
            let (len, count) = (u32_at(at + 4), u32_at(at + 12));
            let end = at + 16 + len;
            let mut records = Vec::new();
            let mut record = at + 16;
            while record < end {
                let payload = record + 8..record + 8 + u32_at(record);
                assert_ne!(
                    bytes[payload.start], 0xC0,
                    "a compressed record at byte {record}: the forgeries here edit plain ones"
                );
                records.push(bytes[payload.clone()].to_vec());
                record = payload.end;
            }
            assert_eq!(records.len(), count, "entries of the frame at byte {at}");
            frames.push(records);
            at = end;
        }
        Journal {
            path,
            header: bytes[..8].to_vec(),
            frame_magic,
            frames,
        }
    }

    /// Where entry `sequence` is: (frame, record in it).
    fn locate(&self, sequence: u64) -> (usize, usize) {
        let mut before = 0;
        for (frame, records) in self.frames.iter().enumerate() {
            let index = usize::try_from(sequence - 1 - before).unwrap();
            if index < records.len() {
                return (frame, index);
            }
            before += records.len() as u64;
        }
        panic!("no entry {sequence}");
    }

    /// The record of entry `sequence`: canonical bytes, then hash.
    fn payload(&mut self, sequence: u64) -> &mut Vec<u8> {
        let (frame, index) = self.locate(sequence);
        &mut self.frames[frame][index]
    }

    fn drop_entry(&mut self, sequence: u64) {
        let (frame, index) = self.locate(sequence);
        self.frames[frame].remove(index);
        self.frames.retain(|records| !records.is_empty());
    }

    fn swap(&mut self, first: u64, second: u64) {
        let moved = std::mem::take(self.payload(first));
        *self.payload(first) = std::mem::replace(self.payload(second), moved);
    }

    /// Keeps the entries up to `last`, which must end a frame: the journal
    /// as a crash between two barriers could have left it.
    fn truncate_after(&mut self, last: u64) {
        let (frame, index) = self.locate(last);
        assert_eq!(index + 1, self.frames[frame].len(), "{last} ends a frame");
        self.frames.truncate(frame + 1);
    }

    /// Recomputes every entry's hash from the first: a consistent chain.
    fn rechain(&mut self) {
        let mut previous = GENESIS_HASH;
        for payload in self.frames.iter_mut().flatten() {
            let canonical = payload.len() - 32;
            let hash = chain_hash(&previous, &payload[..canonical]);
            payload[canonical..].copy_from_slice(&hash);
            previous = hash;
        }
    }

    fn write(&self) {
        let mut bytes = self.header.clone();
        for records in &self.frames {
            let mut body = Vec::new();
            for payload in records {
                body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                body.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                body.extend_from_slice(payload);
            }
            bytes.extend_from_slice(&self.frame_magic);
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            bytes.extend_from_slice(&(records.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&body);
        }
        std::fs::write(&self.path, bytes).expect("write the journal");
    }
}

/// Changes one byte of the branch name in entry `sequence`'s canonical
/// bytes ("Branch C1" becomes "Branch X1"), keeping its stored hash.
fn change_name_byte(journal: &mut Journal, sequence: u64) {
    let payload = journal.payload(sequence);
    let at = payload
        .windows(7)
        .position(|window| window == b"Branch ")
        .unwrap_or_else(|| panic!("entry {sequence} names no branch"));
    payload[at + 7] = b'X';
}

/// [`change_name_byte`], then the request hash made to fit the changed
/// command, so that re-deciding the entry gives it again: only its leaf,
/// the chain and the signed roots can tell.
fn forge_name(journal: &mut Journal, sequence: u64) {
    change_name_byte(journal, sequence);
    let payload = journal.payload(sequence);
    let canonical = payload.len() - 32;
    let mut body = EntryBody::from_canonical_bytes(&payload[..canonical]).expect("decodes");
    body.request_hash = body.client_command().request_hash();
    let forged = body.canonical_bytes();
    assert_eq!(forged.len(), canonical, "the forgery keeps the length");
    payload[..canonical].copy_from_slice(&forged);
}

impl Client for ServerOn {
    fn run(&self, args: &[&str]) -> Output {
        self.client()
            .args(args)
            .env("MFI_LEDGER_ACTOR", "tamper.test")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }
}

/// Writes `count` branches named `prefix`1, `prefix`2, ..., one entry (and
/// one frame) each.
fn write(server: &ServerOn, prefix: &str, count: usize) {
    for n in 1..=count {
        let branch = format!("{prefix}{n}");
        let name = format!("Branch {branch}");
        let args = ["branch-create", &branch, "--name", &name];
        server.ok(&[&args[..], &["--opened-on", "2024-01-02"]].concat());
    }
}

/// `mfi-ledger verify --data DIR`, then `more`.
fn verify_with(dir: &Path, more: &[&str]) -> Output {
    Command::new(BIN)
        .args(["verify", "--data", s(dir)])
        .args(more)
        .env("RUST_LOG", "error")
        .output()
        .expect("run verify")
}

/// `mfi-ledger verify` of `dir` with the log's key in `log_key`.
/// The journal's last sequence number, as `server` tells it.
fn last_sequence(server: &ServerOn) -> u64 {
    field(&server.ok(&["info"]), "last sequence")
        .parse()
        .expect("a number")
}

fn verify(dir: &Path, log_key: &Path) -> Output {
    verify_with(dir, &["--log-key", s(log_key)])
}

/// `mfi-ledger verify` of `dir` held to the checkpoints an auditor kept in
/// `folder` too (with the folder's copy of the log's key).
fn verify_against(dir: &Path, folder: &Path) -> Output {
    verify_with(dir, &["--checkpoints", s(folder)])
}

/// The stderr of a `verify` that must fail.
fn verify_fails(dir: &Path, log_key: &Path) -> String {
    expect_failure(verify(dir, log_key), "verify")
}

/// Books written by the real server and the evidence kept of them, the
/// server stopped: entries up to [`Books::last`], one frame each; the
/// server signed checkpoints of sizes [`Books::first_checkpoint`] and
/// [`Books::last`]; the auditor in `replayed` fetched both and replayed
/// after each (its leaves verified), the auditor in `kept` only fetched
/// them; the witness cosigned the last.
struct Books {
    files: tempfile::TempDir,
    /// Entries written before the branches (the first administrator, tester).
    base: u64,
}

impl Books {
    fn kept() -> Books {
        let books = Books {
            files: tempfile::tempdir().expect("temp dir"),
            base: 0,
        };
        let server = ServerOn::start(&books.data()).expect("a new server starts");
        let base = last_sequence(&server);
        let books = Books { base, ..books };
        std::fs::copy(books.data().join("log.pub"), books.log_pub()).expect("publish log.pub");
        // Two visits: after B1, B2 (the first checkpoint), after C1..C4.
        for (prefix, count) in [("B", 2), ("C", 4)] {
            write(&server, prefix, count);
            for dir in [books.replayed(), books.kept_only()] {
                let log_key = books.log_pub();
                server.ok(&audit_fetch(&dir, &["--create", "--log-key", s(&log_key)]));
            }
            server.ok(&audit_replay(&books.replayed(), &[]));
        }
        let cosigned = expect_success(books.witness(&server), "witness");
        assert!(cosigned.contains(&format!("cosigned the checkpoint of size {}", books.last())));
        server.stop();
        let journal = Journal::open(&books.data());
        assert_eq!(
            journal.frames.len() as u64,
            books.last(),
            "one frame per entry"
        );
        for dir in [books.replayed(), books.kept_only()] {
            assert_eq!(kept_sizes(&dir), [books.first_checkpoint(), books.last()]);
        }
        books
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// The data directory the books were written in (left as it was).
    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// A copy of the log's verifier key, as the institution published it.
    fn log_pub(&self) -> PathBuf {
        self.path("published-log.pub")
    }

    /// The folder of the auditor who fetched and replayed.
    fn replayed(&self) -> PathBuf {
        self.path("replayed")
    }

    /// The folder of the auditor who fetched only.
    fn kept_only(&self) -> PathBuf {
        self.path("kept")
    }

    /// The size of the first checkpoint kept (before [`Books::target`]).
    fn first_checkpoint(&self) -> u64 {
        self.base + 2
    }

    /// The entry the attackers go for, "Branch C1": the first after the
    /// first checkpoint, three before the last.
    fn target(&self) -> u64 {
        self.base + 3
    }

    /// The last entry, and the size of the last checkpoint kept.
    fn last(&self) -> u64 {
        self.base + 6
    }

    /// One round of the witness against `server`.
    fn witness(&self, server: &ServerOn) -> Output {
        let (key, state) = (self.path("witness.key"), self.path("witness"));
        server.run(&witness_once(&key, &state, &self.log_pub(), &[]))
    }

    /// The stderr of the replaying auditor's next fetch from `server`,
    /// which must fail.
    fn fetch_fails(&self, server: &ServerOn) -> String {
        server.fails(&audit_fetch(&self.replayed(), &["--create"]))
    }

    /// The stderr of the fetch-only auditor's first replay from `server`,
    /// which must fail.
    fn replay_never_fails(&self, server: &ServerOn) -> String {
        server.fails(&audit_replay(&self.kept_only(), &[]))
    }

    /// The stderr of the replaying auditor's replay of every entry again
    /// (`--from 1`) from `server`, which must fail.
    fn replay_again_fails(&self, server: &ServerOn) -> String {
        server.fails(&audit_replay(&self.replayed(), &["--from", "1"]))
    }

    /// A copy of the data directory, its journal changed by `tamper`.
    fn forged(&self, name: &str, tamper: impl FnOnce(&mut Journal)) -> PathBuf {
        let dir = self.path(name);
        copy_dir(&self.data(), &dir);
        let mut journal = Journal::open(&dir);
        tamper(&mut journal);
        journal.write();
        dir
    }
}

/// What the auditors and the witness see of a server that signs, with the
/// log's key, a history whose entries from `first_bad` on differ from the
/// books they kept: every check fails, names what it can and keeps nothing.
fn assert_the_evidence_catches(books: &Books, server: &ServerOn, first_bad: u64) {
    let last = books.last();
    write(server, "N", 2);
    let now = last_sequence(server);
    let fetched = books.fetch_fails(server);
    assert!(
        fetched.contains(&format!("split view: the checkpoint of size {now} (root "))
            && fetched.contains(&format!(
                "is not consistent with the kept checkpoint of size {last} (root "
            ))
            && fetched.contains(&format!(
                "the server's consistency proof from size {last} to {now} does not verify"
            )),
        "{fetched}"
    );
    assert_eq!(
        kept_sizes(&books.replayed()),
        [books.first_checkpoint(), last]
    );

    let refused = expect_failure(books.witness(server), "witness");
    assert!(
        refused.contains("refusing to cosign: split view")
            && refused.contains(&format!(
                "not consistent with the checkpoint this witness cosigned last of size {last}"
            )),
        "{refused}"
    );
    let again = books.replay_again_fails(server);
    assert!(
        again.contains(&format!(
            "first bad sequence: {first_bad}: entry {first_bad} differs from the entry {first_bad} verified on"
        )),
        "{again}"
    );
    let never = books.replay_never_fails(server);
    assert!(
        never.contains(&format!(
            "entries {first_bad}..={last} do not match the checkpoint of size {last}"
        )),
        "{never}"
    );
}

#[test]
fn a_byte_changed_in_an_entry_is_named_by_verify_and_by_replaying_it() {
    let books = Books::kept();
    let target = books.target();
    let forged = books.forged("forged", |journal| change_name_byte(journal, target));

    let stderr = verify_fails(&forged, &books.log_pub());
    assert!(
        stderr.contains(&format!("entry {target}: hash mismatch")),
        "{stderr}"
    );

    // The server starts on it (it checks its tree file, not the entries
    // below the journal's last): the auditors read the changed entry.
    let server = ServerOn::start(&forged).expect("the server starts");
    let hash_mismatch = format!("first bad sequence: {target}: its hash ");
    let never = books.replay_never_fails(&server);
    assert!(
        never.contains(&hash_mismatch) && never.contains("a hash mismatch"),
        "{never}"
    );
    let again = books.replay_again_fails(&server);
    assert!(again.contains(&hash_mismatch), "{again}");
    let sequence = target.to_string();
    let proof = server.fails(&[
        "audit",
        "inclusion",
        &sequence,
        "--dir",
        s(&books.kept_only()),
    ]);
    assert!(
        proof.contains(&format!(
            "entry {target} is not proven in the checkpoint of size {}",
            books.last()
        )),
        "{proof}"
    );
}

#[test]
fn a_dropped_entry_is_named_by_verify_and_the_server_refuses_to_start() {
    let books = Books::kept();
    let (target, last) = (books.target(), books.last());
    let forged = books.forged("forged", |journal| journal.drop_entry(target));

    let stderr = verify_fails(&forged, &books.log_pub());
    assert!(
        stderr.contains(&format!(
            "entry {target}: holds sequence number {} (a gap or a duplicate)",
            target + 1
        )),
        "{stderr}"
    );
    let refused = ServerOn::start(&forged).err().expect("the server refuses");
    assert!(
        refused.contains(&format!(
            "the state cache is at entry {last} but the journal ends at entry {}: acknowledged \
             entries are missing from the journal; refusing to start",
            last - 1
        )),
        "{refused}"
    );

    // Without the state cache, the replay from the journal finds the gap.
    std::fs::remove_dir_all(forged.join("state")).expect("remove the state cache");
    let refused = ServerOn::start(&forged).err().expect("the server refuses");
    assert!(
        refused.contains(&format!(
            "entry {} cannot be applied: expected sequence {target}",
            target + 1
        )),
        "{refused}"
    );
}

#[test]
fn swapped_entries_are_named_by_verify_and_by_replaying_them() {
    let books = Books::kept();
    let target = books.target();
    let forged = books.forged("forged", |journal| journal.swap(target, target + 1));

    let stderr = verify_fails(&forged, &books.log_pub());
    assert!(
        stderr.contains(&format!(
            "entry {target}: holds sequence number {} (a gap or a duplicate)",
            target + 1
        )),
        "{stderr}"
    );
    let server = ServerOn::start(&forged).expect("the server starts");
    let jump = format!(
        "first bad sequence: {target}: the server sent entry {} where entry {target} was expected",
        target + 1
    );
    let never = books.replay_never_fails(&server);
    assert!(never.contains(&jump), "{never}");
    let again = books.replay_again_fails(&server);
    assert!(again.contains(&jump), "{again}");
}

#[test]
fn a_consistent_rewrite_is_named_by_the_tree_file_or_fails_the_signed_checkpoint() {
    let books = Books::kept();
    let (target, last) = (books.target(), books.last());
    let forged = books.forged("forged", |journal| {
        forge_name(journal, target);
        journal.rechain();
    });

    // merkle.tree left as the forger found it: it names the entry.
    let stderr = verify_fails(&forged, &books.log_pub());
    assert!(
        stderr.contains(&format!(
            "entry {target}: the Merkle tree the server keeps (merkle.tree) holds another hash"
        )),
        "{stderr}"
    );
    // The server binds the tree to the journal through the chain hash each
    // checkpoint signs: it refuses to serve the rewrite.
    let refused = ServerOn::start(&forged)
        .err()
        .expect("the server refuses a journal that no longer gives what it signed");
    assert!(
        refused.contains(&format!(
            "entry {last} of the journal does not have the chain hash this server signed in its \
             checkpoint of that size"
        )) && refused.contains("refusing to start"),
        "{refused}"
    );

    // merkle.tree removed: the signed checkpoint the journal no longer gives.
    let without_tree = books.forged("without-tree", |journal| {
        forge_name(journal, target);
        journal.rechain();
    });
    std::fs::remove_file(without_tree.join("merkle.tree")).expect("remove merkle.tree");
    let stderr = verify_fails(&without_tree, &books.log_pub());
    assert!(
        stderr.contains(&format!(
            "entries {target}..={last}: the chain hash of entry {last} is not the one the log's \
             key signed in the checkpoint of that size"
        )),
        "{stderr}"
    );
    let refused = ServerOn::start(&without_tree)
        .err()
        .expect("the server refuses");
    assert!(
        refused.contains(&format!(
            "entry {last} of the journal does not have the chain hash this server signed"
        )) && refused.contains("refusing to start"),
        "{refused}"
    );
}

#[test]
fn a_server_restarted_on_a_rewritten_journal_with_the_same_key_is_caught_by_the_evidence() {
    let books = Books::kept();
    let (target, last) = (books.target(), books.last());
    // The same data directory and key; the forger removes what would betray
    // the rewrite on the server's side.
    let forged = books.forged("forged", |journal| {
        forge_name(journal, target);
        journal.rechain();
    });
    std::fs::remove_file(forged.join("merkle.tree")).expect("remove merkle.tree");
    std::fs::remove_file(forged.join("checkpoints.log")).expect("remove checkpoints.log");

    let server = ServerOn::start(&forged).expect("the server starts");
    let fetched = books.fetch_fails(&server);
    assert!(
        fetched.contains(&format!("split view: the checkpoint of size {last} (root "))
            && fetched.contains("same size, different root"),
        "{fetched}"
    );
    assert_the_evidence_catches(&books, &server, target);
    server.stop();

    // The forged directory is consistent with itself: verify passes. Held
    // to the checkpoints the auditor kept, it shows the split view (the
    // forged server signed a checkpoint of a size the auditor kept too)...
    expect_success(verify(&forged, &books.log_pub()), "verify");
    let stderr = expect_failure(verify_against(&forged, &books.replayed()), "verify");
    assert!(
        stderr.contains(&format!(
            "split view: the log's key signed two checkpoints of size {last} with different roots"
        )),
        "{stderr}"
    );
    // ... and without the server's own, it names the entries that differ.
    std::fs::remove_file(forged.join("checkpoints.log")).expect("remove checkpoints.log");
    let stderr = expect_failure(verify_against(&forged, &books.replayed()), "verify");
    assert!(
        stderr.contains(&format!(
            "entries {target}..={last}: the chain hash of entry {last} is not the one the log's \
             key signed"
        )),
        "{stderr}"
    );
}

#[test]
fn a_journal_truncated_and_appended_again_is_caught_by_the_evidence() {
    let books = Books::kept();
    let (first, last) = (books.first_checkpoint(), books.last());
    let forged = books.forged("forged", |journal| journal.truncate_after(first));

    // Truncated only (the state cache moved aside, as the server's refusal
    // says): the signed checkpoint names the first missing entry.
    std::fs::remove_dir_all(forged.join("state")).expect("remove the state cache");
    let stderr = verify_fails(&forged, &books.log_pub());
    assert!(
        stderr.contains(&format!(
            "entry {}: missing: the log's key signed a checkpoint of {last} entries, but the \
             journal ends at entry {first}",
            first + 1
        )),
        "{stderr}"
    );
    let refused = ServerOn::start(&forged).err().expect("the server refuses");
    assert!(
        refused.contains(&format!(
            "this server signed a checkpoint of {last} entries but the journal holds {first}"
        )),
        "{refused}"
    );

    // The forger removes the tree and the checkpoints, and appends others.
    std::fs::remove_file(forged.join("merkle.tree")).expect("remove merkle.tree");
    std::fs::remove_file(forged.join("checkpoints.log")).expect("remove checkpoints.log");
    let server = ServerOn::start(&forged).expect("the server starts");
    write(&server, "X", 4);
    assert_the_evidence_catches(&books, &server, first + 1);
    server.stop();

    expect_success(verify(&forged, &books.log_pub()), "verify");
    let stderr = expect_failure(verify_against(&forged, &books.replayed()), "verify");
    assert!(
        stderr.contains(&format!(
            "entries {}..={last}: the chain hash of entry {last} is not the one the log's key \
             signed",
            first + 1
        )),
        "{stderr}"
    );
}
