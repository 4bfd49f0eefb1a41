//! The provable journal over gRPC: signed checkpoints of the Merkle tree
//! over the entries, inclusion and consistency proofs checked with nothing
//! but the published verifier key and the entries' canonical bytes (what an
//! auditor has), cosignatures, and the tree kept across restarts.

use mfi_ledger::checkpoint::{Checkpoint, KeyKind, Note, SignatureLine, Signer, Verifier};
use mfi_ledger::domain::merkle::{MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
use mfi_ledger::ledger::{CheckpointPolicy, LedgerConfig};
use mfi_ledger::pb;
use mfi_ledger::pb::proof_service_client::ProofServiceClient;
use tonic::Code;

use mfi_ledger::api::ServerLimits;

use crate::support::{App, Conn, LOG_ORIGIN, connect, read_journal, spawn_app, spawn_app_with};

fn hash(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("a 32-byte hash")
}

async fn proofs(app: &App) -> ProofServiceClient<Conn> {
    ProofServiceClient::new(connect(app.address, &app.token).await)
}

/// The log's verifier key as `serve` publishes it (DATA/log.pub).
fn published_key(app: &App) -> Verifier {
    let text = std::fs::read_to_string(app.dir.path().join("log.pub")).unwrap();
    Verifier::parse(text.trim()).unwrap()
}

/// Deposits `count` times into TB-0001's savings, from request `tag`-0 on.
async fn deposits(app: &mut App, tag: &str, count: u32) {
    for i in 0..count {
        app.deposit(&format!("{tag}-{i}"), "TB-0001/C1", "1000", "2024-03-01")
            .await
            .unwrap();
    }
}

async fn with_member(mut app: App) -> App {
    app.branch_tb().await;
    app.member("TB-0001").await;
    app
}

/// The tree an auditor computes from the journal's canonical bytes.
async fn tree_from_journal(app: &mut App) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for entry in read_journal(&mut app.audit, 100).await {
        tree.push(leaf_hash(&entry.canonical));
    }
    tree
}

/// The checkpoint of `tree_size` (0: the latest), which must exist.
async fn get(proofs: &mut ProofServiceClient<Conn>, tree_size: u64) -> pb::Checkpoint {
    proofs
        .get_checkpoint(pb::GetCheckpointRequest { tree_size })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
}

async fn create(proofs: &mut ProofServiceClient<Conn>) -> pb::Checkpoint {
    proofs
        .create_checkpoint(pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
}

#[tokio::test]
async fn checkpoints_are_signed_and_every_entry_is_proved_in_them() {
    let mut app = with_member(spawn_app().await).await;
    deposits(&mut app, "first", 7).await;
    let mut proofs = proofs(&app).await;
    let key = published_key(&app);
    assert_eq!(key.name(), LOG_ORIGIN);
    let served_key = proofs
        .get_verifier_key(pb::GetVerifierKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    assert_eq!(served_key, key.to_text());

    let first = create(&mut proofs).await;
    let (checkpoint, _) = Checkpoint::open(&first.note, &key).expect("signed by the log key");
    let size = app.last_sequence().await;
    assert_eq!((checkpoint.size, first.tree_size), (size, size));
    assert_eq!(checkpoint.origin, LOG_ORIGIN);
    let tree = tree_from_journal(&mut app).await;
    assert_eq!(checkpoint.root, tree.root(), "the root is the journal's");
    assert_eq!(first.root_hash, tree.root().to_vec());
    // Nothing new: the same checkpoint.
    assert_eq!(create(&mut proofs).await.note, first.note);

    for sequence in 1..=size {
        let proof = proofs
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                sequence,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.tree_size, size);
        let leaf = tree.level(0)[sequence as usize - 1];
        assert_eq!(proof.leaf_hash, leaf.to_vec());
        let path: Vec<[u8; 32]> = proof.hashes.iter().map(|h| hash(h)).collect();
        assert!(
            verify_inclusion(sequence - 1, size, &leaf, &path, &checkpoint.root),
            "entry {sequence}"
        );
        // The same path does not prove another leaf.
        let other = leaf_hash(b"not an entry");
        assert!(!verify_inclusion(
            sequence - 1,
            size,
            &other,
            &path,
            &checkpoint.root
        ));
    }

    deposits(&mut app, "second", 5).await;
    let second = create(&mut proofs).await;
    let (later, _) = Checkpoint::open(&second.note, &key).unwrap();
    assert_eq!(later.size, size + 5);
    let proof = proofs
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: size,
            second_size: later.size,
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<[u8; 32]> = proof.hashes.iter().map(|h| hash(h)).collect();
    assert!(verify_consistency(
        size,
        later.size,
        &checkpoint.root,
        &later.root,
        &path
    ));
    assert!(!verify_consistency(
        size,
        later.size,
        &leaf_hash(b"x"),
        &later.root,
        &path
    ));

    // Every checkpoint issued is kept and served by its size.
    let again = get(&mut proofs, size).await;
    assert_eq!(again.note, first.note);
    let latest = get(&mut proofs, 0).await;
    assert_eq!(latest.note, second.note);
}

#[tokio::test]
async fn bad_sizes_and_sequences_are_refused_naming_the_field() {
    let mut app = with_member(spawn_app().await).await;
    let mut proofs = proofs(&app).await;
    let size = create(&mut proofs).await.tree_size;
    let cases = [
        (0, 0, "sequence"),
        (size + 1, 0, "sequence"),
        (1, size + 100, "tree_size"),
    ];
    for (sequence, tree_size, field) in cases {
        let status = proofs
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                sequence,
                tree_size,
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{sequence}/{tree_size}"
        );
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    for (first, second, field) in [
        (0, size, "first_size"),
        (3, 2, "first_size"),
        (1, size + 9, "second_size"),
    ] {
        let status = proofs
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: first,
                second_size: second,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let status = proofs
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: size - 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("tree_size"),
        "{}",
        status.message()
    );
    assert_eq!(app.last_sequence().await, size, "nothing was written");
}

#[tokio::test]
async fn a_checkpoint_is_signed_every_n_entries_without_being_asked() {
    let config = LedgerConfig {
        log_checkpoints: CheckpointPolicy {
            every_entries: 4,
            ..CheckpointPolicy::default()
        },
        ..LedgerConfig::default()
    };
    let mut app = with_member(spawn_app_with(config, ServerLimits::default()).await).await;
    deposits(&mut app, "auto", 10).await;
    let mut proofs = proofs(&app).await;
    // The checkpointer runs beside the writer: give it a moment.
    let mut latest = 0;
    for _ in 0..200 {
        latest = proofs
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await
            .map(|r| r.into_inner().checkpoint.unwrap().tree_size)
            .unwrap_or(0);
        if latest + 4 > app.last_sequence().await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let head = app.last_sequence().await;
    assert!(
        latest + 4 > head,
        "latest checkpoint {latest}, journal {head}"
    );
}

#[tokio::test]
async fn a_witness_cosignature_is_checked_kept_and_served() {
    let mut app = with_member(spawn_app().await).await;
    let mut proofs = proofs(&app).await;
    let issued = create(&mut proofs).await;
    let witness = Signer::generate("witness.example/w1", KeyKind::Cosignature).unwrap();
    let mut note = Note::parse(&issued.note).unwrap();
    note.add_signature_line(&witness.cosignature_line(&note.text, 1_750_000_000))
        .unwrap();

    // A cosignature of a text the server did not issue is refused.
    deposits(&mut app, "more", 1).await;
    let mut forged = note.text.clone();
    forged = forged.replacen(
        &format!("\n{}\n", issued.tree_size),
        &format!("\n{}\n", issued.tree_size + 1),
        1,
    );
    let mut other = Note::parse(&format!(
        "{forged}\n{}",
        witness.cosignature_line(&forged, 1)
    ))
    .unwrap();
    other.signatures.truncate(1);
    let status = proofs
        .add_cosignature(pb::AddCosignatureRequest {
            note: other.to_text(),
            witness_key: witness.verifier().to_text(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("note"), "{}", status.message());
    // A line by the witness's key whose signature does not verify is refused.
    let mut bad =
        SignatureLine::parse(&witness.cosignature_line(&note.text, 1_750_000_000)).unwrap();
    *bad.signature.last_mut().unwrap() ^= 1;
    let mut tampered = Note::parse(&issued.note).unwrap();
    tampered.add_signature_line(&bad.to_line()).unwrap();
    let status = proofs
        .add_cosignature(pb::AddCosignatureRequest {
            note: tampered.to_text(),
            witness_key: witness.verifier().to_text(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("does not verify"),
        "{}",
        status.message()
    );
    // A witness named like the log is refused: its line would be taken for
    // the log's own signature by every auditor.
    let named_as_log = Signer::generate(LOG_ORIGIN, KeyKind::Cosignature).unwrap();
    let mut posing = Note::parse(&issued.note).unwrap();
    posing
        .add_signature_line(&named_as_log.cosignature_line(&posing.text, 1_750_000_000))
        .unwrap();
    let status = proofs
        .add_cosignature(pb::AddCosignatureRequest {
            note: posing.to_text(),
            witness_key: named_as_log.verifier().to_text(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("witness_key"),
        "{}",
        status.message()
    );

    let kept = proofs
        .add_cosignature(pb::AddCosignatureRequest {
            note: note.to_text(),
            witness_key: witness.verifier().to_text(),
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let served = get(&mut proofs, issued.tree_size).await;
    assert_eq!(served.note, kept.note);
    let served = Note::parse(&served.note).unwrap();
    assert!(served.verify(&witness.verifier()).unwrap().is_some());
    assert!(served.verify(&published_key(&app)).unwrap().is_some());

    // The witness cosigns again (a later round): its newer line replaces
    // the older one, so an idle log's checkpoint never fills up.
    for round in 1..=40u64 {
        let mut again = Note::parse(&issued.note).unwrap();
        again
            .add_signature_line(&witness.cosignature_line(&again.text, 1_750_000_000 + round))
            .unwrap();
        proofs
            .add_cosignature(pb::AddCosignatureRequest {
                note: again.to_text(),
                witness_key: witness.verifier().to_text(),
            })
            .await
            .unwrap();
    }
    let served = Note::parse(&get(&mut proofs, issued.tree_size).await.note).unwrap();
    assert_eq!(served.signature_lines_by(&witness.verifier()).len(), 1);
    let verified = served.verify(&witness.verifier()).unwrap().unwrap();
    assert_eq!(verified.timestamp, Some(1_750_000_040));

    // Kept across a restart.
    let size = issued.tree_size;
    let app = app.restart().await;
    let mut proofs = self::proofs(&app).await;
    let served = get(&mut proofs, size).await;
    assert!(
        Note::parse(&served.note)
            .unwrap()
            .verify(&witness.verifier())
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_tree_is_kept_across_restarts_and_caught_up_after_a_lost_tail() {
    let mut app = with_member(spawn_app().await).await;
    deposits(&mut app, "before", 20).await;
    let mut proofs = proofs(&app).await;
    let before = create(&mut proofs).await;
    let tree_file = app.dir.path().join("merkle.tree");
    let bytes = std::fs::metadata(&tree_file).unwrap().len();
    assert_eq!(
        bytes,
        (2 * before.tree_size - u64::from(before.tree_size.count_ones())) * 32
    );

    // A restart keeps the file as it is (nothing is rehashed) ...
    let mut app = app.restart().await;
    assert_eq!(std::fs::metadata(&tree_file).unwrap().len(), bytes);
    deposits(&mut app, "after", 3).await;
    // ... and a tree file cut short (its writes are not durable) is caught
    // up from the journal at the next start.
    let dir = app.stop().await;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("merkle.tree"))
        .unwrap();
    file.set_len(5 * 32 + 7).unwrap();
    drop(file);
    let mut app = crate::support::start_again(dir).await;
    let mut proofs = self::proofs(&app).await;
    let after = create(&mut proofs).await;
    let tree = tree_from_journal(&mut app).await;
    assert_eq!(after.root_hash, tree.root().to_vec());
    let proof = proofs
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: before.tree_size,
            second_size: after.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<[u8; 32]> = proof.hashes.iter().map(|h| hash(h)).collect();
    assert!(verify_consistency(
        before.tree_size,
        after.tree_size,
        &hash(&before.root_hash),
        &hash(&after.root_hash),
        &path
    ));
}

/// Hashes after the latest checkpoint were never synced nor signed: a start
/// works them out again from the journal (here, an entry rewritten after a
/// crash lost the shutdown's checkpoint, under a tree file that still holds
/// the old leaf), so no checkpoint is ever signed of stale hashes.
#[tokio::test]
async fn hashes_past_the_latest_checkpoint_are_worked_out_again_at_start() {
    let mut app = with_member(spawn_app().await).await;
    let mut proofs = proofs(&app).await;
    let signed = create(&mut proofs).await;
    deposits(&mut app, "tail", 3).await;
    let rewritten = app.last_sequence().await - 1;
    drop(proofs);
    let dir = app.stop().await;
    // Keep only the first checkpoint (as after a crash), then rewrite an
    // entry after it, re-chained, leaving merkle.tree as it was.
    let path = dir.path().join("checkpoints.log");
    let log = std::fs::read_to_string(&path).unwrap();
    let second = log[1..]
        .find("\ncheckpoint ")
        .map(|at| at + 2)
        .expect("a shutdown checkpoint");
    std::fs::write(&path, &log[..second]).unwrap();
    crate::verify::rechain_only(dir.path(), rewritten, |canonical| {
        let at = canonical
            .windows(5)
            .position(|w| w == b"clerk")
            .expect("the actor's name");
        canonical[at..at + 5].copy_from_slice(b"clark");
    });
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();

    let mut app = crate::support::start_again(dir).await;
    let mut proofs = self::proofs(&app).await;
    let after = create(&mut proofs).await;
    let tree = tree_from_journal(&mut app).await;
    assert_eq!(
        after.root_hash,
        tree.root().to_vec(),
        "signed of the journal as it is"
    );
    assert!(after.tree_size > signed.tree_size);
}

/// The key's holder re-signs a size with another access-log anchor (after
/// cutting the log, say): the root is the same, but the two signed texts
/// about one size contradict each other, and `verify` held to the
/// auditor's kept note says so.
#[tokio::test]
async fn verify_calls_two_signed_texts_of_one_size_a_split_view() {
    let app = with_member(spawn_app().await).await;
    let mut proofs = proofs(&app).await;
    let kept = create(&mut proofs).await;
    drop(proofs);
    let dir = app.stop().await;
    let key = std::fs::read_to_string(dir.path().join("log.key")).unwrap();
    let signer = Signer::from_text(key.trim()).unwrap();
    // The auditor's folder keeps the checkpoint as served.
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("checkpoints")).unwrap();
    let note_path = folder
        .path()
        .join(format!("checkpoints/{}.note", kept.tree_size));
    std::fs::write(&note_path, &kept.note).unwrap();
    std::fs::write(folder.path().join("log.pub"), signer.verifier().to_text()).unwrap();
    let evidence = mfi_ledger::verify::Evidence {
        log_key: None,
        auditor_folder: Some(folder.path()),
    };
    mfi_ledger::verify::verify_with(dir.path(), &evidence).unwrap_or_else(|e| panic!("{e}"));

    let (mut checkpoint, _) = Checkpoint::open(&kept.note, &signer.verifier()).unwrap();
    let anchor = checkpoint
        .extensions
        .iter_mut()
        .find(|line| line.starts_with("access-log "))
        .expect("an access-log anchor");
    *anchor = "access-log 1 ".to_owned() + &"00".repeat(32);
    std::fs::write(&note_path, checkpoint.sign(&signer)).unwrap();
    let error = mfi_ledger::verify::verify_with(dir.path(), &evidence)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "split view: the log's key signed two checkpoints of size {} with different texts",
            kept.tree_size
        )),
        "{error}"
    );
}
