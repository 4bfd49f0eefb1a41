//! `audit replay`: downloads the journal past the verified size, up to the
//! latest kept checkpoint, and checks every entry as it comes: the sequence
//! continues, `previous_hash` is the previous entry's hash, `hash` is
//! SHA-256(previous_hash ‖ canonical), and the tree of the leaves so far has
//! the root of every kept checkpoint it reaches. The leaves it verified are
//! kept (`leaves`), with the hash of the last entry (the chain head), so the
//! next replay continues where this one ended.
//!
//! When the next entry does not chain to the kept head (or with `--from
//! 1`), the journal is downloaded again from entry 1 and every entry
//! already verified is compared with the leaf kept for it, which names the
//! first one that changed. Every failure names the first bad sequence
//! number, or, when only a root fails (entries never verified before,
//! rewritten and re-chained consistently), the range of entries that do not
//! match the checkpoint.

use anyhow::{anyhow, bail};
use serde_json::json;

use super::folder::{AuditFolder, LeafReader, LeafWriter, ReplayRun, ReplayState};
use super::{ReplayArgs, log};
use crate::checkpoint::{Checkpoint, Hash};
use crate::cli::connect::{Conn, audit, read_error};
use crate::cli::output::{Report, fields};
use crate::domain::entry::{EntryBody, chain_hash};
use crate::domain::merkle::{self, leaf_hash};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;

/// Entries asked for per page (the server's largest page).
const PAGE_ENTRIES_MAX: u64 = 1000;

/// `audit replay`.
pub async fn run(server: &str, args: ReplayArgs) -> anyhow::Result<Report> {
    let folder = AuditFolder::existing(&args.dir)?;
    let key = folder.required_key()?;
    let checkpoints: Vec<Checkpoint> = folder
        .checkpoints(&key)?
        .into_iter()
        .map(|signed| signed.checkpoint)
        .collect();
    let Some(latest) = checkpoints.last().cloned() else {
        bail!(
            "{} keeps no checkpoint: run `audit fetch --dir {}` first",
            folder.path().display(),
            folder.path().display()
        );
    };
    let state = folder.replay_state()?;
    let verified = state.verified_size;
    if verified > latest.size {
        bail!(
            "{}: replay.json says {verified} entries are verified, more than the latest kept \
             checkpoint's {}: the folder is damaged",
            folder.path().display(),
            latest.size
        );
    }
    let from = args.from.unwrap_or(verified + 1);
    if from != 1 && from != verified + 1 {
        bail!(
            "--from {from}: a replay continues from entry {} (the first not yet verified) \
             or starts again from 1",
            verified + 1
        );
    }
    let head = hash_from_hex(&state.head_hash)
        .ok_or_else(|| anyhow!("replay.json: the chain head is not 64 hex digits"))?;
    let mut client = audit(server).await?;
    let mut replay = Replay::new(&folder, &state, head, &checkpoints, from)?;
    let mut restarted = false;
    let outcome = match replay.run(&mut client, latest.size).await {
        Err(Failure::Join { found }) => {
            restarted = true;
            replay.leaves.abandon();
            let mut again = Replay::new(&folder, &state, head, &checkpoints, 1)?;
            let outcome = again.run(&mut client, latest.size).await;
            replay = again;
            outcome.map_err(|failure| match failure {
                Failure::Join { .. } => unreachable!("a replay from 1 has no join"),
                Failure::Error(error) => anyhow!(
                    "{error:#} (found by downloading the journal again from entry 1: entry {} \
                     did not chain to the head kept from the last replay, its previous_hash \
                     being {} where the kept head is {})",
                    verified + 1,
                    hex::encode(found),
                    state.head_hash
                ),
            })
        }
        Err(Failure::Error(error)) => Err(error),
        Ok(()) => Ok(()),
    };
    let new_state = replay.state_after(&latest, &state);
    let report = report(&replay, &latest, verified, restarted);
    match outcome {
        Ok(()) => folder.record_replay(replay.leaves, &new_state)?,
        Err(error) => {
            replay.leaves.abandon();
            return Err(error);
        }
    }
    Ok(report)
}

/// Why a replay stopped.
enum Failure {
    /// The first entry after the verified ones does not chain to the kept
    /// head: start again from 1 to find what changed.
    Join { found: Hash },
    /// What failed, in words.
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Error(error)
    }
}

/// One pass over the journal. It holds no leaf but the one at hand: the
/// tree is its right edge (`peaks`, one hash per bit of the size), the
/// leaves verified before are read from the folder as their entries come,
/// and the new ones are written to it as they are verified.
struct Replay<'a> {
    state: &'a ReplayState,
    /// The kept checkpoints, smallest first.
    checkpoints: &'a [Checkpoint],
    /// The first kept checkpoint whose root this pass has not reached.
    next_checkpoint: usize,
    /// First entry downloaded.
    start: u64,
    /// Leaves verified by earlier replays (entries 1..=their count) not
    /// yet compared.
    kept: LeafReader,
    /// Where the leaves past the verified ones go.
    leaves: LeafWriter,
    tree: Peaks,
    /// Hash of the entry before the next one.
    head: Hash,
    /// The largest size whose root is verified.
    verified_root_size: u64,
    /// Kept checkpoints whose root this pass checked.
    roots_checked: Vec<u64>,
}

impl<'a> Replay<'a> {
    /// A pass from entry `start`: the tree of the kept leaves before it is
    /// rebuilt from the folder.
    fn new(
        folder: &AuditFolder,
        state: &'a ReplayState,
        kept_head: Hash,
        checkpoints: &'a [Checkpoint],
        start: u64,
    ) -> anyhow::Result<Replay<'a>> {
        let mut kept = folder.leaf_reader(state.verified_size)?;
        let mut tree = Peaks::default();
        while tree.size() < start - 1 {
            let leaf = kept
                .next_leaf()?
                .expect("a replay starts at most one past the verified leaves");
            tree.push(leaf);
        }
        let leaves = folder.leaf_writer(state.verified_size)?;
        Ok(Replay {
            state,
            checkpoints,
            next_checkpoint: checkpoints.partition_point(|c| c.size < start),
            start,
            kept,
            leaves,
            tree,
            head: if start == 1 { [0; 32] } else { kept_head },
            verified_root_size: start - 1,
            roots_checked: Vec::new(),
        })
    }

    /// Downloads and checks entries `start..=end`.
    async fn run(
        &mut self,
        client: &mut AuditServiceClient<Conn>,
        end: u64,
    ) -> Result<(), Failure> {
        let mut next = self.start;
        while next <= end {
            let request = pb::ListJournalEntriesRequest {
                from_sequence: next,
                page_size: u32::try_from((end - next + 1).min(PAGE_ENTRIES_MAX))
                    .expect("at most 1000"),
            };
            let page = client
                .list_journal_entries(request)
                .await
                .map_err(|status| {
                    read_error(status).context(format!("reading the journal from entry {next}"))
                })?
                .into_inner();
            if page.entries.is_empty() {
                return Err(anyhow!(
                    "first bad sequence: {next}: the server's journal ends at entry {}, \
                     but the kept checkpoint of size {end} covers entries 1..={end}",
                    next - 1
                )
                .into());
            }
            for entry in &page.entries {
                if next > end {
                    break;
                }
                self.check(next, entry)?;
                next += 1;
            }
        }
        Ok(())
    }

    /// Checks entry `sequence` (what the server sent as it), adds its leaf
    /// and checks the root when a kept checkpoint has this size.
    fn check(&mut self, sequence: u64, entry: &pb::JournalEntry) -> Result<(), Failure> {
        let bad = |why: String| Failure::Error(anyhow!("first bad sequence: {sequence}: {why}"));
        if entry.sequence != sequence {
            return Err(bad(format!(
                "the server sent entry {} where entry {sequence} was expected (a sequence jump)",
                entry.sequence
            )));
        }
        let body = EntryBody::from_canonical_bytes(&entry.canonical)
            .map_err(|error| bad(format!("its canonical bytes do not decode: {error}")))?;
        if body.sequence != sequence {
            return Err(bad(format!(
                "its canonical bytes say sequence {} (a sequence jump)",
                body.sequence
            )));
        }
        let previous = hash_from_hex(&entry.previous_hash)
            .ok_or_else(|| bad("its previous_hash is not 64 hex digits".to_owned()))?;
        if previous != self.head {
            if sequence == self.start && sequence > 1 {
                return Err(Failure::Join { found: previous });
            }
            return Err(bad(format!(
                "its previous_hash {} is not the hash of entry {} ({}): a broken chain",
                entry.previous_hash,
                sequence - 1,
                hex::encode(self.head)
            )));
        }
        let computed = chain_hash(&previous, &entry.canonical);
        if hash_from_hex(&entry.hash) != Some(computed) {
            return Err(bad(format!(
                "its hash {} is not SHA-256(previous_hash || canonical) = {}: a hash mismatch",
                entry.hash,
                hex::encode(computed)
            )));
        }
        let leaf = leaf_hash(&entry.canonical);
        match self.kept.next_leaf()? {
            Some(kept) if kept != leaf => {
                return Err(bad(format!(
                    "entry {sequence} differs from the entry {sequence} verified on {}: \
                     its leaf hash is {}, the one kept is {}",
                    self.state.verified_on(sequence),
                    hex::encode(leaf),
                    hex::encode(kept)
                )));
            }
            Some(_) => {}
            None => self.leaves.push(&leaf)?,
        }
        self.head = computed;
        self.tree.push(leaf);
        self.check_root()
    }

    /// When a kept checkpoint has the tree's size, its root must be the tree's.
    fn check_root(&mut self) -> Result<(), Failure> {
        let size = self.tree.size();
        let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) else {
            return Ok(());
        };
        if checkpoint.size != size {
            return Ok(());
        }
        self.next_checkpoint += 1;
        let root = self.tree.root();
        if root != checkpoint.root {
            return Err(anyhow!(
                "entries {}..={size} do not match the checkpoint of {}: the tree of the \
                 entries the server sent has root {}",
                self.verified_root_size + 1,
                log::describe(checkpoint),
                log::root_text(&root)
            )
            .into());
        }
        self.verified_root_size = size;
        self.roots_checked.push(size);
        Ok(())
    }

    /// The replay state after this pass verified up to `latest`.
    fn state_after(&self, latest: &Checkpoint, before: &ReplayState) -> ReplayState {
        let mut state = before.clone();
        if latest.size > before.verified_size {
            state.verified_size = latest.size;
            state.head_hash = hex::encode(self.head);
            state.runs.push(ReplayRun {
                size: latest.size,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        state
    }
}

fn report(replay: &Replay, latest: &Checkpoint, verified_before: u64, restarted: bool) -> Report {
    let downloaded = (latest.size + 1).saturating_sub(replay.start);
    let range = if downloaded == 0 {
        "none (nothing past the verified size)".to_owned()
    } else {
        format!("{}..={} ({downloaded})", replay.start, latest.size)
    };
    let compared = if replay.start == 1 && verified_before > 0 {
        format!("entries 1..={verified_before} equal the leaves kept")
    } else {
        "none".to_owned()
    };
    let roots = replay
        .roots_checked
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>();
    let roots_text = if roots.is_empty() {
        "none new".to_owned()
    } else {
        format!("sizes {}", roots.join(", "))
    };
    let mut rows = vec![
        ("entries downloaded", range),
        ("compared", compared),
        ("checkpoint roots verified", roots_text),
        ("verified size", latest.size.to_string()),
        ("root hash", log::root_text(&latest.root)),
        ("chain head", hex::encode(replay.head)),
    ];
    if restarted {
        rows.push((
            "note",
            "the chain did not join the kept head; compared from entry 1".to_owned(),
        ));
    }
    let text = fields(&rows)
        + &format!(
            "entries 1..={} match the checkpoint of size {}\n",
            latest.size, latest.size
        );
    let json = json!({
        "from": replay.start,
        "verified_size": latest.size,
        "verified_before": verified_before,
        "root_hash": log::root_text(&latest.root),
        "chain_head": hex::encode(replay.head),
        "checkpoint_roots_verified": replay.roots_checked,
        "restarted_from_1": restarted,
    });
    Report { text, json }
}

/// The tree of the leaves so far, as its right edge: the hashes of the
/// complete subtrees the size's bits make, largest first (O(log n) hashes,
/// whatever the size).
#[derive(Debug, Default)]
struct Peaks {
    peaks: Vec<Hash>,
    /// `push_leaf`'s completed subtrees, cleared after each leaf.
    completed: Vec<Hash>,
    size: u64,
}

impl Peaks {
    fn size(&self) -> u64 {
        self.size
    }

    fn push(&mut self, leaf: Hash) {
        merkle::push_leaf(&mut self.peaks, self.size, leaf, &mut self.completed);
        self.completed.clear();
        self.size += 1;
    }

    /// The root of the tree of the leaves so far: the peaks folded from the
    /// right.
    fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return merkle::empty_root();
        };
        peaks.fold(*last, |right, left| merkle::node_hash(left, &right))
    }
}

/// 64 hex digits as a hash.
fn hash_from_hex(text: &str) -> Option<Hash> {
    let bytes = hex::decode(text).ok()?;
    Hash::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merkle::MerkleTree;

    #[test]
    fn the_right_edge_gives_every_root_in_log_n_hashes() {
        let mut peaks = Peaks::default();
        let mut tree = MerkleTree::new();
        assert_eq!(peaks.root(), merkle::empty_root());
        for n in 0u64..300 {
            let leaf = leaf_hash(&n.to_be_bytes());
            peaks.push(leaf);
            tree.push(leaf);
            assert_eq!(peaks.size(), n + 1);
            assert_eq!(peaks.root(), tree.root(), "size {}", n + 1);
            assert_eq!(peaks.peaks.len(), (n + 1).count_ones() as usize);
            assert!(peaks.completed.is_empty());
        }
    }
}
