//! Our checkpoints against an implementation that is not ours: Go's
//! `golang.org/x/mod/sumdb/note` (the signed-note reference, which the Go
//! checksum database uses) and `golang.org/x/mod/sumdb/tlog` (its RFC 6962
//! tree), through the small command in `tests/fixtures/checkpoint/gonote`.
//! Each side opens what the other signed, a note with one byte changed is
//! refused by Go, and the two trees agree on every root and proof up to 70
//! leaves. Published notes (Go's and C2SP's examples) open with our code.
//!
//! Needs `go` and Debian's `golang-golang-x-mod-dev` (the x/mod sources in
//! GOPATH form under /usr/share/gocode; another GOPATH may be given in
//! `MFI_GONOTE_GOPATH`). Without them the Go tests are skipped, except
//! under CI=true, where they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use mfi_ledger::checkpoint::{Checkpoint, KeyKind, Note, NoteError, Signer, Verifier};
use mfi_ledger::domain::merkle::{MerkleTree, leaf_hash, verify_consistency, verify_inclusion};

/// Go's example key and signed note, published in
/// <https://github.com/golang/mod/blob/master/sumdb/note/example_test.go>
/// (`ExampleSign`, `ExampleOpen`) and `note_test.go` (`TestNewVerifier`).
const GO_EXAMPLE_VERIFIER: &str =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_EXAMPLE_PRIVATE: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_EXAMPLE_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
    then you don't know what your problem is.\n\
    \n\
    — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/// The example of <https://github.com/C2SP/C2SP/blob/main/signed-note.md#example>.
const C2SP_EXAMPLE_VERIFIER: &str =
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_EXAMPLE_NOTE: &str = "This is an example message.\n\
    \n\
    — example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// The largest tree compared with Go's.
const TREE_SIZE_MAX: u64 = 70;

// ---------------------------------------------------------------- helpers

/// The built Go command, or `None` (skipped) where Go is missing outside CI.
fn gonote() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build_gonote).as_deref()
}

fn build_gonote() -> Option<PathBuf> {
    let gopath = std::env::var("MFI_GONOTE_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
    let x_mod = Path::new(&gopath).join("src/golang.org/x/mod/sumdb/note");
    let go_runs = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !go_runs || !x_mod.is_dir() {
        let why = format!(
            "the Go interop tests need `go` and golang.org/x/mod in {gopath} \
             (Debian: apt-get install golang-go golang-golang-x-mod-dev); go runs: {go_runs}, \
             x/mod found: {}",
            x_mod.is_dir()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
        return None;
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gonote");
    let binary = out_dir.join("gonote");
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/gonote/main.go");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(&source)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", out_dir.join("cache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .output()
        .expect("running go build");
    assert!(
        output.status.success(),
        "go build of gonote failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(binary)
}

/// Runs gonote: its standard output, or its error message.
fn run(gonote: &Path, args: &[&str], input: &[u8]) -> Result<String, String> {
    let mut child = Command::new(gonote)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gonote");
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("running gonote");
    writer.join().expect("writer").expect("writing to gonote");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("gonote prints UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// What Go's `note.Open` said about a note.
#[derive(Debug)]
struct Opened {
    text: String,
    /// (name, hex key ID, cosignature time) of each verified signature.
    verified: Vec<(String, String, Option<u64>)>,
    unverified: Vec<String>,
}

fn go_open(gonote: &Path, note: &[u8], verifiers: &[&Verifier]) -> Result<Opened, String> {
    let keys: Vec<String> = verifiers.iter().map(|v| v.to_text()).collect();
    let mut args = vec!["open"];
    args.extend(keys.iter().map(String::as_str));
    let json: serde_json::Value =
        serde_json::from_str(&run(gonote, &args, note)?).expect("gonote prints JSON");
    let signatures = |key: &str| -> Vec<&serde_json::Value> {
        json[key].as_array().expect("a list").iter().collect()
    };
    Ok(Opened {
        text: json["text"].as_str().expect("text").to_owned(),
        verified: signatures("verified")
            .into_iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["hash"].as_str().unwrap().to_owned(),
                    s["time"].as_u64(),
                )
            })
            .collect(),
        unverified: signatures("unverified")
            .into_iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect(),
    })
}

fn go_sign(gonote: &Path, text: &str, time: u64, private_keys: &[&str]) -> String {
    let time = time.to_string();
    let mut args = vec!["sign", time.as_str()];
    args.extend_from_slice(private_keys);
    run(gonote, &args, text.as_bytes()).expect("Go signs the note")
}

/// The data of leaf `i`: entries of varied length, as a journal has.
fn leaf_data(i: u64) -> Vec<u8> {
    format!("entry {i}: {}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn tree(size: u64) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for i in 0..size {
        tree.push(leaf_hash(&leaf_data(i)));
    }
    tree
}

fn checkpoint_of(origin: &str, size: u64) -> Checkpoint {
    Checkpoint {
        origin: origin.to_owned(),
        size,
        root: tree(size).root(),
        extensions: Vec::new(),
    }
}

fn hex_key_id(verifier: &Verifier) -> String {
    hex::encode(verifier.key_hash())
}

// ------------------------------------------------------- published notes

#[test]
fn published_notes_open_with_our_code() {
    let go_key = Verifier::parse(GO_EXAMPLE_VERIFIER).unwrap();
    let note = Note::parse(GO_EXAMPLE_NOTE).unwrap();
    assert!(note.verify(&go_key).unwrap().is_some());
    let c2sp_key = Verifier::parse(C2SP_EXAMPLE_VERIFIER).unwrap();
    let note = Note::parse(C2SP_EXAMPLE_NOTE).unwrap();
    assert!(note.verify(&c2sp_key).unwrap().is_some());
    // Ed25519 is deterministic: our signer makes Go's published line.
    let signer = Signer::from_text(GO_EXAMPLE_PRIVATE).unwrap();
    let text = Note::parse(GO_EXAMPLE_NOTE).unwrap().text;
    assert_eq!(
        format!("{text}\n{}", signer.signature_line(&text)),
        GO_EXAMPLE_NOTE
    );
}

#[test]
fn published_notes_with_one_byte_changed_do_not_open_with_our_code() {
    let go_key = Verifier::parse(GO_EXAMPLE_VERIFIER).unwrap();
    for at in 0..GO_EXAMPLE_NOTE.len() {
        let mut bytes = GO_EXAMPLE_NOTE.as_bytes().to_vec();
        bytes[at] ^= 0x01;
        let Ok(changed) = String::from_utf8(bytes) else {
            continue;
        };
        let outcome = Note::parse(&changed).and_then(|n| n.verify(&go_key));
        assert!(
            !matches!(outcome, Ok(Some(_))),
            "byte {at} changed, still verifies"
        );
    }
}

#[test]
fn the_go_command_opens_the_published_notes_too() {
    let Some(gonote) = gonote() else { return };
    let go_key = Verifier::parse(GO_EXAMPLE_VERIFIER).unwrap();
    let opened = go_open(gonote, GO_EXAMPLE_NOTE.as_bytes(), &[&go_key]).unwrap();
    assert_eq!(opened.verified[0].1, "c74f20a3");
    let c2sp_key = Verifier::parse(C2SP_EXAMPLE_VERIFIER).unwrap();
    go_open(gonote, C2SP_EXAMPLE_NOTE.as_bytes(), &[&c2sp_key]).unwrap();
}

// ------------------------------------------------------ our notes, in Go

#[test]
fn go_opens_our_signed_checkpoints() {
    let Some(gonote) = gonote() else { return };
    let log = Signer::generate("example.org/books", KeyKind::Ed25519).unwrap();
    for size in [0, 1, 2, 7, 70] {
        let checkpoint = checkpoint_of("example.org/books", size);
        let note = checkpoint.sign(&log);
        let opened = go_open(gonote, note.as_bytes(), &[&log.verifier()]).unwrap();
        assert_eq!(opened.text, checkpoint.body());
        assert_eq!(
            opened.verified,
            vec![(
                "example.org/books".to_owned(),
                hex_key_id(&log.verifier()),
                None
            )]
        );
    }
}

#[test]
fn go_refuses_our_checkpoint_with_any_one_byte_changed() {
    let Some(gonote) = gonote() else { return };
    let log = Signer::generate("example.org/books", KeyKind::Ed25519).unwrap();
    let note = checkpoint_of("example.org/books", 70).sign(&log);
    // Every byte but the last base64 digit of the signature, whose unused
    // low bits Go's decoder ignores (the signature bytes stay the same).
    let last_digit = note.len() - 3;
    for at in (0..note.len()).filter(|&at| at != last_digit) {
        let mut changed = note.clone().into_bytes();
        changed[at] ^= 0x01;
        let outcome = go_open(gonote, &changed, &[&log.verifier()]);
        assert!(
            outcome.is_err(),
            "byte {at} changed and Go still opens it: {outcome:?}"
        );
    }
}

#[test]
fn go_keeps_and_ignores_signature_lines_of_unknown_keys_in_our_notes() {
    let Some(gonote) = gonote() else { return };
    let log = Signer::generate("example.org/books", KeyKind::Ed25519).unwrap();
    let stranger = Signer::generate("stranger.example/k", KeyKind::Ed25519).unwrap();
    let checkpoint = checkpoint_of("example.org/books", 5);
    let mut note = Note::parse(&checkpoint.sign(&log)).unwrap();
    note.add_signature_line(&stranger.signature_line(&note.text))
        .unwrap();
    let opened = go_open(gonote, note.to_text().as_bytes(), &[&log.verifier()]).unwrap();
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified, vec!["stranger.example/k".to_owned()]);
}

// ------------------------------------------------------ Go's notes, in ours

#[test]
fn we_open_checkpoints_go_signed_with_a_key_go_generated() {
    let Some(gonote) = gonote() else { return };
    let name = "example.org/go-made";
    let keys = run(gonote, &["generate", name], b"").unwrap();
    let (private_key, verifier_key) = keys.trim_end().split_once('\n').unwrap();
    let verifier = Verifier::parse(verifier_key).unwrap();
    let signer = Signer::from_text(private_key).unwrap();
    assert_eq!(signer.verifier(), verifier);
    assert_eq!(signer.to_text(), private_key);

    let checkpoint = checkpoint_of(name, 42);
    let note = go_sign(gonote, &checkpoint.body(), 0, &[private_key]);
    assert_eq!(
        note,
        checkpoint.sign(&signer),
        "the same bytes from Go and from us"
    );
    let (opened, _) = Checkpoint::open(&note, &verifier).unwrap();
    assert_eq!(opened, checkpoint);

    let changed = note.replacen("\n42\n", "\n43\n", 1);
    assert_eq!(
        Checkpoint::open(&changed, &verifier).unwrap_err(),
        NoteError::BadSignature {
            name: name.to_owned()
        }
    );
}

// ------------------------------------------------------------ cosignatures

#[test]
fn go_verifies_our_cosignatures_and_their_time() {
    let Some(gonote) = gonote() else { return };
    let log = Signer::generate("example.org/books", KeyKind::Ed25519).unwrap();
    let witness = Signer::generate("witness.example/w1", KeyKind::Cosignature).unwrap();
    let checkpoint = checkpoint_of("example.org/books", 9);
    let mut note = Note::parse(&checkpoint.sign(&log)).unwrap();
    note.add_signature_line(&witness.cosignature_line(&note.text, 1_679_315_147))
        .unwrap();
    let opened = go_open(
        gonote,
        note.to_text().as_bytes(),
        &[&log.verifier(), &witness.verifier()],
    )
    .unwrap();
    assert_eq!(
        opened.verified,
        vec![
            (
                "example.org/books".to_owned(),
                hex_key_id(&log.verifier()),
                None
            ),
            (
                "witness.example/w1".to_owned(),
                hex_key_id(&witness.verifier()),
                Some(1_679_315_147)
            ),
        ]
    );

    // The same line claiming another time: Go refuses the note.
    let mut line = note.signatures[1].clone();
    line.signature[..8].copy_from_slice(&1_679_315_148u64.to_be_bytes());
    note.signatures[1] = line;
    let refused = go_open(
        gonote,
        note.to_text().as_bytes(),
        &[&log.verifier(), &witness.verifier()],
    );
    assert!(refused.unwrap_err().contains("invalid signature"));
}

#[test]
fn we_verify_cosignatures_go_made() {
    let Some(gonote) = gonote() else { return };
    let log = Signer::generate("example.org/books", KeyKind::Ed25519).unwrap();
    let witness = Signer::generate("witness.example/w2", KeyKind::Cosignature).unwrap();
    let checkpoint = checkpoint_of("example.org/books", 33);
    let note = go_sign(
        gonote,
        &checkpoint.body(),
        1_700_000_123,
        &[&log.to_text(), &witness.to_text()],
    );
    let (opened, parsed) = Checkpoint::open(&note, &log.verifier()).unwrap();
    assert_eq!(opened, checkpoint);
    assert_eq!(
        parsed
            .verify(&witness.verifier())
            .unwrap()
            .unwrap()
            .timestamp,
        Some(1_700_000_123)
    );
    assert_eq!(
        parsed.signature_lines_by(&witness.verifier()),
        vec![witness.cosignature_line(&parsed.text, 1_700_000_123)]
    );

    let mut wrong_time = parsed.clone();
    let at = wrong_time
        .signatures
        .iter()
        .position(|l| l.name == "witness.example/w2")
        .unwrap();
    wrong_time.signatures[at].signature[..8].copy_from_slice(&1_700_000_124u64.to_be_bytes());
    assert_eq!(
        wrong_time.verify(&witness.verifier()).unwrap_err(),
        NoteError::BadSignature {
            name: "witness.example/w2".to_owned()
        }
    );
}

// ------------------------------------------------------------ Merkle trees

/// Our roots and proofs for every size up to 70, against Go's tlog: the
/// same roots, the same proofs, and Go's checkers accept ours (and refuse
/// them with one byte changed).
#[test]
fn our_merkle_tree_agrees_with_go_tlog_up_to_70_leaves() {
    let Some(gonote) = gonote() else { return };
    let tree = tree(TREE_SIZE_MAX);
    let mut queries = String::new();
    let mut expected = Vec::new();
    for i in 0..TREE_SIZE_MAX {
        queries.push_str(&format!("leaf {}\n", hex::encode(leaf_data(i))));
    }
    let encode = |proof: &[[u8; 32]]| match proof {
        [] => "-".to_owned(),
        hashes => hashes.iter().map(hex::encode).collect(),
    };
    for size in 1..=TREE_SIZE_MAX {
        let root = tree.root_at(size).unwrap();
        queries.push_str(&format!("root {size} {}\n", hex::encode(root)));
        expected.push((format!("root {size}"), "same"));
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert!(verify_inclusion(
                index,
                size,
                &leaf_hash(&leaf_data(index)),
                &proof,
                &root
            ));
            queries.push_str(&format!("inclusion {index} {size} {}\n", encode(&proof)));
            expected.push((format!("inclusion {index} {size}"), "valid same"));
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0][0] ^= 1;
                assert_ne!(bad[0], *first);
                queries.push_str(&format!("inclusion {index} {size} {}\n", encode(&bad)));
                expected.push((
                    format!("inclusion {index} {size}, changed"),
                    "invalid different",
                ));
            }
        }
        for first in 1..=size {
            let proof = tree.consistency_proof(first, size).unwrap();
            let first_root = tree.root_at(first).unwrap();
            assert!(verify_consistency(first, size, &first_root, &root, &proof));
            queries.push_str(&format!("consistency {first} {size} {}\n", encode(&proof)));
            expected.push((format!("consistency {first} {size}"), "valid same"));
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let last = bad.len() - 1;
                bad[last][31] ^= 1;
                queries.push_str(&format!("consistency {first} {size} {}\n", encode(&bad)));
                expected.push((
                    format!("consistency {first} {size}, changed"),
                    "invalid different",
                ));
            }
        }
    }
    let answers = run(gonote, &["merkle"], queries.as_bytes()).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), expected.len());
    for ((query, want), got) in expected.iter().zip(answers) {
        assert_eq!(got, *want, "{query}");
    }
}
