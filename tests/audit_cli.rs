//! The auditor's and the witness's commands end to end (issue 11): each
//! test starts the real server on a fresh data directory and runs the same
//! binary's `audit` and `witness` commands against it, with the log's key
//! as the server published it (DATA/log.pub) and folders of their own.
//!
//! The fork test starts a second server on another data directory holding
//! the first one's signing key: the same key signs two histories, which is
//! exactly what a witness and an auditor must catch.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use mfi_ledger::checkpoint::{Checkpoint, KeyKind, Signer, Verifier};

use crate::common;

use common::{
    BIN, Client, Server, audit_fetch, audit_replay, expect_failure, expect_success, field,
    kept_sizes, s, witness_once,
};

/// A server, and a temporary folder for the auditor's and witness's files.
struct Setup {
    server: Server,
    files: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        Setup {
            server: Server::start(),
            files: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A path in the temporary folder.
    fn path(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// The log's verifier key file the server published.
    fn log_pub(&self) -> PathBuf {
        self.server.data_dir().join("log.pub")
    }

    /// Writes `count` entries (branches named `prefix`1, `prefix`2, ...).
    fn write(&self, prefix: &str, count: usize) {
        for n in 1..=count {
            let branch = format!("{prefix}{n}");
            self.ok(&[
                "branch-create",
                &branch,
                "--name",
                &format!("Branch {branch}"),
                "--opened-on",
                "2024-01-02",
            ]);
        }
    }

    /// The journal's last sequence number.
    fn last_sequence(&self) -> u64 {
        field(&self.ok(&["info"]), "last sequence")
            .parse()
            .expect("a number")
    }
}

impl Client for Setup {
    /// Runs a client command as `tester` (manager, product admin, auditor).
    fn run(&self, args: &[&str]) -> Output {
        self.server
            .client()
            .args(args)
            .env("MFI_LEDGER_ACTOR", "audit.test")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }
}

#[test]
fn an_auditor_keeps_checkpoints_proves_entries_replays_and_requires_a_witness() {
    let setup = Setup::start();
    let dir = setup.path("audit");
    let log_pub = setup.log_pub();

    // First visit: the key as the institution published it.
    let first = setup.ok(&audit_fetch(&dir, &["--log-key", s(&log_pub), "--create"]));
    let first_size: u64 = field(&first, "tree size").parse().unwrap();
    assert_eq!(first_size, setup.last_sequence());
    assert!(field(&first, "signature").starts_with("verified with the log key"));
    assert_eq!(
        field(&first, "consistency"),
        "none: nothing was kept before this one"
    );
    let published = std::fs::read_to_string(&log_pub).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("log.pub")).unwrap(),
        published
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );

    // More books, a second visit: the new tree extends the kept one.
    setup.write("B", 5);
    let second = setup.ok(&audit_fetch(&dir, &["--create"]));
    let second_size: u64 = field(&second, "tree size").parse().unwrap();
    assert_eq!(second_size, first_size + 5);
    assert!(
        field(&second, "consistency").starts_with(&format!(
            "verified: extends the kept checkpoint of size {first_size} (consistency proof of"
        )),
        "{second}"
    );
    assert_eq!(kept_sizes(&dir), vec![first_size, second_size]);

    // An early entry and the latest one are in the latest kept checkpoint.
    let early = setup.ok(&["audit", "inclusion", "1", "--dir", s(&dir)]);
    assert!(early.contains(&format!("entry 1 is in checkpoint of size {second_size}")));
    assert_eq!(field(&early, "sequence"), "1");
    let late_sequence = second_size.to_string();
    let late = setup.ok(&["audit", "inclusion", &late_sequence, "--dir", s(&dir)]);
    assert!(late.contains(&format!(
        "entry {second_size} is in checkpoint of size {second_size}"
    )));
    assert_eq!(field(&late, "command"), "create_branch");
    assert!(field(&late, "description").contains("B5"), "{late}");
    let after = (second_size + 1).to_string();
    let stderr = setup.fails(&["audit", "inclusion", &after, "--dir", s(&dir)]);
    assert!(
        stderr.contains("after the latest kept checkpoint"),
        "{stderr}"
    );

    // Replay: every entry, both roots.
    let replayed = setup.ok(&audit_replay(&dir, &[]));
    assert_eq!(field(&replayed, "verified size"), second_size.to_string());
    assert_eq!(
        field(&replayed, "checkpoint roots verified"),
        format!("sizes {first_size}, {second_size}")
    );
    assert_eq!(
        std::fs::metadata(dir.join("leaves")).unwrap().len(),
        32 * second_size
    );

    // The next replay continues from there; --from 1 compares everything.
    setup.write("C", 2);
    setup.ok(&audit_fetch(&dir, &["--create"]));
    let third_size = second_size + 2;
    let next = setup.ok(&audit_replay(&dir, &[]));
    assert_eq!(
        field(&next, "entries downloaded"),
        format!("{}..={third_size} (2)", second_size + 1)
    );
    let again = setup.ok(&audit_replay(&dir, &["--from", "1"]));
    assert_eq!(
        field(&again, "compared"),
        format!("entries 1..={third_size} equal the leaves kept")
    );

    // A witness cosigns; the auditor then requires its cosignature.
    let witness_key = setup.path("witness.key");
    let cosigned = setup.ok(&witness_once(
        &witness_key,
        &setup.path("witness"),
        &log_pub,
        &["--name", "witness.example/w1"],
    ));
    assert!(cosigned.contains(&format!("cosigned the checkpoint of size {third_size}")));
    let witness_pub = setup.path("witness.key.pub");
    let fetched = setup.ok(&audit_fetch(&dir, &["--witness", s(&witness_pub)]));
    assert_eq!(
        field(&fetched, "consistency"),
        "the same tree as the kept checkpoint"
    );
    assert!(
        field(&fetched, "witnesses").starts_with("witness.example/w1 cosigned at "),
        "{fetched}"
    );

    // A witness that never cosigned: refused, and nothing new is kept.
    let stranger = Signer::generate("witness.example/w2", KeyKind::Cosignature).unwrap();
    setup.write("D", 1);
    let stderr = setup.fails(&audit_fetch(
        &dir,
        &[
            "--create",
            "--witness",
            s(&witness_pub),
            "--witness",
            &stranger.verifier().to_text(),
        ],
    ));
    assert!(
        stderr.contains("missing witness cosignature") && stderr.contains("witness.example/"),
        "{stderr}"
    );
    assert_eq!(kept_sizes(&dir), vec![first_size, second_size, third_size]);
}

#[test]
fn a_log_key_that_is_not_the_logs_is_refused_and_nothing_is_kept() {
    let setup = Setup::start();
    let published = std::fs::read_to_string(setup.log_pub()).unwrap();
    let log = Verifier::parse(published.trim()).unwrap();
    let dir = setup.path("audit");

    // Another key of the same name: the signature does not verify.
    let impostor = Signer::generate(log.name(), KeyKind::Ed25519).unwrap();
    let stderr = setup.fails(&audit_fetch(
        &dir,
        &["--log-key", &impostor.verifier().to_text(), "--create"],
    ));
    assert!(stderr.contains("signature:"), "{stderr}");
    assert!(
        stderr.contains("does not verify with the log key"),
        "{stderr}"
    );
    assert!(!dir.join("log.pub").exists(), "a refused key was kept");
    assert!(kept_sizes(&dir).is_empty());

    // Not a key at all.
    let stderr = setup.fails(&audit_fetch(&dir, &["--log-key", "nonsense"]));
    assert!(
        stderr.contains("--log-key") && stderr.contains("not a verifier key"),
        "{stderr}"
    );

    // No key the first time.
    let stderr = setup.fails(&audit_fetch(&dir, &[]));
    assert!(
        stderr.contains("the first fetch needs --log-key"),
        "{stderr}"
    );

    // Once the right key is kept, another one is refused.
    setup.ok(&audit_fetch(
        &dir,
        &["--log-key", published.trim(), "--create"],
    ));
    let stderr = setup.fails(&audit_fetch(
        &dir,
        &["--log-key", &impostor.verifier().to_text()],
    ));
    assert!(stderr.contains("is not the log key kept in"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("log.pub")).unwrap(),
        published
    );
}

/// A second server whose data directory starts with `key_from`'s signing
/// key: the same log, a different history.
struct Fork {
    child: Child,
    url: String,
    data: tempfile::TempDir,
}

impl Fork {
    fn start(key_from: &Path) -> Fork {
        let data = tempfile::tempdir().expect("temp dir");
        std::fs::copy(key_from.join("log.key"), data.path().join("log.key")).expect("copy the key");
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the second server");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        let Some(address) = line.trim().strip_prefix("mfi-ledger listening on ") else {
            // Not left running past the test that failed to start it.
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line: {line:?} ({read:?})");
        };
        Fork {
            url: format!("http://{address}"),
            child,
            data,
        }
    }

    /// Runs a client command with the token in `token_file`.
    fn run_as(&self, token_file: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--server", &self.url, "--token-file", s(token_file)])
            .args(args)
            .env_remove("MFI_LEDGER_TOKEN")
            .env_remove("MFI_LEDGER_TOKEN_FILE")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }

    /// The second server's auditor's token file (made on first use).
    fn auditor(&self) -> PathBuf {
        let file = self.data.path().join("auditor.token");
        if !file.exists() {
            let admin = self.data.path().join("admin.token");
            let args = [
                "principal-create",
                "auditor",
                "--grant",
                "auditor",
                "--token-out",
                s(&file),
            ];
            expect_success(self.run_as(&admin, &args), "principal-create auditor");
        }
        file
    }

    /// Writes `count` entries (principals named `prefix`1, ...).
    fn write(&self, prefix: &str, count: u64) {
        for n in 1..=count {
            let id = format!("{prefix}{n}");
            let admin = self.data.path().join("admin.token");
            let args = ["principal-create", &id, "--name", &id, "--grant", "auditor"];
            expect_success(self.run_as(&admin, &args), "principal-create");
        }
    }
}

impl Client for Fork {
    /// Runs a client command as the second server's auditor.
    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.auditor(), args)
    }
}

impl Drop for Fork {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_witness_and_an_auditor_refuse_a_history_that_does_not_extend_what_they_kept() {
    let setup = Setup::start();
    let log_pub = setup.log_pub();
    setup.write("B", 3);
    let dir = setup.path("audit");
    let kept = setup.ok(&audit_fetch(&dir, &["--log-key", s(&log_pub), "--create"]));
    let kept_size: u64 = field(&kept, "tree size").parse().unwrap();
    let state = setup.path("witness");
    let witness_key = setup.path("witness.key");
    let witness =
        |run: &dyn Fn(&[&str]) -> Output| run(&witness_once(&witness_key, &state, &log_pub, &[]));
    expect_success(witness(&|args| setup.run(args)), "witness");
    let cosigned = std::fs::read_to_string(state.join("checkpoint.note")).unwrap();

    // The same key, another history, smaller for now.
    let fork = Fork::start(setup.server.data_dir());
    let fork_dir = setup.path("fork-audit");
    let fork_kept = fork.ok(&audit_fetch(
        &fork_dir,
        &["--log-key", s(&log_pub), "--create"],
    ));
    let fork_size: u64 = field(&fork_kept, "tree size").parse().unwrap();
    assert!(fork_size < kept_size, "{fork_size} < {kept_size}");
    let stderr = expect_failure(witness(&|args| fork.run(args)), "witness on the fork");
    assert!(stderr.contains("refusing to cosign"), "{stderr}");
    assert!(stderr.contains("smaller tree"), "{stderr}");

    // Larger than what the witness cosigned, but not an extension of it.
    fork.write("p", kept_size - fork_size + 2);
    fork.ok(&audit_fetch(&fork_dir, &["--create"]));
    let stderr = expect_failure(witness(&|args| fork.run(args)), "witness on the fork");
    assert!(
        stderr.contains("refusing to cosign: split view"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "not consistent with the checkpoint this witness cosigned last of size {kept_size}"
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("checkpoint.note")).unwrap(),
        cosigned,
        "the witness kept a checkpoint it refused"
    );
    let witness_pub = setup.path("witness.key.pub");
    let stderr = fork.fails(&audit_fetch(
        &setup.path("fresh"),
        &["--log-key", s(&log_pub), "--witness", s(&witness_pub)],
    ));
    assert!(stderr.contains("missing witness cosignature"), "{stderr}");

    // The auditor who kept the first server's checkpoint sees the split view.
    let stderr = fork.fails(&audit_fetch(&dir, &[]));
    assert!(
        stderr.contains("split view: the checkpoint of size"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("the kept checkpoint of size {kept_size}")),
        "{stderr}"
    );
    assert_eq!(kept_sizes(&dir), vec![kept_size]);
}

#[test]
fn a_replay_against_another_history_names_the_first_changed_entry_or_the_range() {
    let setup = Setup::start();
    let log_pub = setup.log_pub();
    setup.write("B", 2);
    let dir = setup.path("audit");
    setup.ok(&audit_fetch(&dir, &["--log-key", s(&log_pub), "--create"]));
    let replayed = setup.ok(&audit_replay(&dir, &[]));
    let verified: u64 = field(&replayed, "verified size").parse().unwrap();
    setup.write("C", 1);
    let latest = setup.ok(&audit_fetch(&dir, &["--create"]));
    let size: u64 = field(&latest, "tree size").parse().unwrap();

    // The same log key over another journal at least as long.
    let fork = Fork::start(setup.server.data_dir());
    fork.write("p", size);

    // Entries already verified: the kept leaves name the first that changed.
    let stderr = fork.fails(&audit_replay(&dir, &[]));
    assert!(
        stderr.contains("first bad sequence: 1: entry 1 differs from the entry 1 verified on"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did not chain to the head kept"),
        "{stderr}"
    );

    // Entries never verified: only the root can say, for the whole range.
    let fresh = setup.path("fresh");
    setup.ok(&audit_fetch(&fresh, &["--log-key", s(&log_pub)]));
    let stderr = fork.fails(&audit_replay(&fresh, &[]));
    assert!(
        stderr.contains(&format!(
            "entries 1..={size} do not match the checkpoint of size {size}"
        )),
        "{stderr}"
    );

    // Nothing was recorded by the failures: the leaves are the verified
    // ones, and the true server still replays.
    let leaves = |dir: &Path| std::fs::metadata(dir.join("leaves")).map_or(0, |m| m.len());
    assert_eq!(leaves(&dir), 32 * verified);
    assert_eq!(leaves(&fresh), 0);
    let replayed = setup.ok(&audit_replay(&dir, &[]));
    assert_eq!(field(&replayed, "verified size"), size.to_string());
    let replayed = setup.ok(&audit_replay(&fresh, &[]));
    assert_eq!(field(&replayed, "verified size"), size.to_string());
    assert_eq!(leaves(&dir), 32 * size);
    assert_eq!(leaves(&fresh), 32 * size);
}

#[test]
fn an_auditor_keeps_the_first_text_of_a_size_and_only_adds_signature_lines_to_it() {
    let setup = Setup::start();
    let log_pub = setup.log_pub();
    setup.write("B", 2);
    let dir = setup.path("audit");
    let first = setup.ok(&audit_fetch(&dir, &["--log-key", s(&log_pub), "--create"]));
    let size: u64 = field(&first, "tree size").parse().unwrap();
    let file = dir.join("checkpoints").join(format!("{size}.note"));
    let log = Verifier::parse(std::fs::read_to_string(&log_pub).unwrap().trim()).unwrap();
    let (checkpoint, mut note) =
        Checkpoint::open(&std::fs::read_to_string(&file).unwrap(), &log).unwrap();
    assert!(
        checkpoint
            .extensions
            .iter()
            .any(|l| l.starts_with("journal ")),
        "{checkpoint:?}"
    );

    // A cosignature the auditor has from elsewhere (a mirror), then the
    // witness's on the server's copy: the fetch adds the witness's line and
    // drops none.
    let mirror = Signer::generate("witness.example/mirror", KeyKind::Cosignature).unwrap();
    let mirror_line = mirror.cosignature_line(&note.text, 1_700_000_000);
    note.add_signature_line(&mirror_line).unwrap();
    std::fs::write(&file, note.to_text()).unwrap();
    let witness_key = setup.path("witness.key");
    setup.ok(&witness_once(
        &witness_key,
        &setup.path("witness"),
        &log_pub,
        &["--name", "witness.example/w1"],
    ));
    let witness_pub = setup.path("witness.key.pub");
    let fetched = setup.ok(&audit_fetch(&dir, &["--witness", s(&witness_pub)]));
    assert_eq!(
        field(&fetched, "consistency"),
        "the same tree as the kept checkpoint"
    );
    let kept = std::fs::read_to_string(&file).unwrap();
    let (_, kept_note) = Checkpoint::open(&kept, &log).unwrap();
    assert_eq!(kept_note.text, note.text);
    assert!(
        kept.starts_with(&note.to_text()),
        "a kept line was dropped:\n{kept}"
    );
    assert_eq!(kept_note.signatures.len(), 3, "{kept}");
    let witness = Verifier::parse(std::fs::read_to_string(&witness_pub).unwrap().trim()).unwrap();
    assert!(kept_note.verify(&witness).unwrap().is_some(), "{kept}");
    assert_eq!(
        field(&fetched, "signature lines"),
        "the note kept before stays (2 signature lines), 1 new added"
    );

    // Nothing new: the note stays as it is.
    let again = setup.ok(&audit_fetch(&dir, &[]));
    assert_eq!(
        field(&again, "signature lines"),
        "the note kept before stays (3 signature lines), 0 new added"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), kept);

    // The log's key signs the same size and root again with another
    // access-log anchor (as after cutting the access log): two texts of one
    // size are a split view, and the note kept first stays. (Here the kept
    // note is the re-signed one and the server's the original: the same
    // contradiction, seen from the other side.)
    let signer = mfi_ledger::checkpoint::keys::load(&setup.server.data_dir().join("log.key"))
        .expect("the log key");
    let empty = format!("access-log 0 {}", "00".repeat(32));
    let anchor = if checkpoint.extensions.contains(&empty) {
        format!("access-log 1 {}", "11".repeat(32))
    } else {
        empty
    };
    let mut resigned = checkpoint.clone();
    resigned
        .extensions
        .retain(|line| !line.starts_with("access-log "));
    resigned.extensions.push(anchor.clone());
    assert_ne!(resigned.body(), checkpoint.body());
    let other_text = resigned.sign(&signer);
    std::fs::write(&file, &other_text).unwrap();
    let stderr = setup.fails(&audit_fetch(&dir, &[]));
    assert!(
        stderr.contains(&format!(
            "split view: two checkpoints of size {size} signed by the log key with different texts"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&anchor), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), other_text);

    // The witness, which cosigned the server's text, refuses the other one.
    let state = setup.path("witness").join("checkpoint.note");
    let cosigned = std::fs::read_to_string(&state).unwrap();
    let (_, mut other_note) = Checkpoint::open(&other_text, &log).unwrap();
    let witness_signer = mfi_ledger::checkpoint::keys::load(&witness_key).unwrap();
    other_note
        .add_signature_line(&witness_signer.cosignature_line(&other_note.text, 1_700_000_000))
        .unwrap();
    std::fs::write(&state, other_note.to_text()).unwrap();
    let stderr = setup.fails(&witness_once(
        &witness_key,
        &setup.path("witness"),
        &log_pub,
        &[],
    ));
    assert!(
        stderr.contains("refusing to cosign: split view: two checkpoints of size"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        other_note.to_text()
    );
    assert_ne!(other_note.to_text(), cosigned);
}

#[test]
fn a_witness_does_not_cosign_again_a_checkpoint_it_cosigned() {
    let setup = Setup::start();
    let log_pub = setup.log_pub();
    setup.write("B", 2);
    setup.ok(&audit_fetch(
        &setup.path("audit"),
        &["--log-key", s(&log_pub), "--create"],
    ));
    let witness_key = setup.path("witness.key");
    let state = setup.path("witness");
    let round = || {
        setup.ok(&witness_once(
            &witness_key,
            &state,
            &log_pub,
            &["--name", "witness.example/w1"],
        ))
    };
    let first = round();
    let size = field(&first, "tree size");
    assert!(first.contains(&format!("cosigned the checkpoint of size {size}")));
    let cosigned = std::fs::read_to_string(state.join("checkpoint.note")).unwrap();

    // Later, the log has not moved: nothing to do (a fresh timestamp each
    // round would fill the server's lines on an idle log).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = round();
    assert!(
        second.contains(&format!("checkpoint {size} already cosigned")),
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("checkpoint.note")).unwrap(),
        cosigned
    );
    let fresh = setup.path("fresh");
    setup.ok(&audit_fetch(&fresh, &["--log-key", s(&log_pub)]));
    let served =
        std::fs::read_to_string(fresh.join("checkpoints").join(format!("{size}.note"))).unwrap();
    let witness = Verifier::parse(
        std::fs::read_to_string(setup.path("witness.key.pub"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let lines = mfi_ledger::checkpoint::Note::parse(&served)
        .unwrap()
        .signature_lines_by(&witness);
    assert_eq!(lines.len(), 1, "{served}");

    // The log grows: the next round cosigns the new checkpoint.
    setup.write("C", 1);
    setup.ok(&audit_fetch(&fresh, &["--create"]));
    let third = round();
    let grown: u64 = field(&third, "tree size").parse().unwrap();
    assert!(
        third.contains(&format!("cosigned the checkpoint of size {grown}")),
        "{third}"
    );
    assert!(grown > size.parse().unwrap());
}
