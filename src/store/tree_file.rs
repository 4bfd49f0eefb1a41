//! The Merkle tree's hashes beside the journal: `merkle.tree`, the hash of
//! every complete subtree of the tree over the journal's entries
//! (`domain::merkle`), 32 bytes each, in the order they complete as entries
//! are appended (post order: a leaf, then each subtree it closes). After n
//! leaves the file holds 2n − popcount(n) hashes, and the subtree of level
//! `l` and index `i` (leaves i·2^l .. (i+1)·2^l) is hash number
//! 2j − popcount(j) + l, where j = (i+1)·2^l − 1 is the leaf that closes it.
//!
//! Appending a batch of leaves writes their hashes and the subtrees they
//! close in one `write`; nothing is rewritten, so readers (proofs) read
//! hashes already published while the next batch is written. The file is
//! derived from the journal and not a barrier of the write path: it is
//! synced before each checkpoint of it is signed, and startup works out the
//! hashes past the latest checkpoint again from the journal. `verify`
//! recomputes all of it.
//!
//! Architecture invariant: only hashes below the published leaf count are
//! read, and they never change once written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::entry::Hash;
use crate::domain::merkle::{self, Subtrees};

use super::StoreError;

/// Name of the tree file in the data directory.
pub const TREE_FILE_NAME: &str = "merkle.tree";

const HASH_BYTES: u64 = 32;

/// Hashes a tree of `leaves` leaves keeps: 2n − popcount(n).
pub fn hashes_for(leaves: u64) -> u64 {
    2 * leaves - u64::from(leaves.count_ones())
}

/// The position in the file of the subtree at `level` and `index`.
fn position(level: u32, index: u64) -> u64 {
    let closing = ((index + 1) << level) - 1;
    hashes_for(closing) + u64::from(level)
}

/// The most leaves whose hashes fit in `hashes` stored hashes.
pub fn leaves_within(hashes: u64) -> u64 {
    // hashes_for is increasing, and hashes_for(n) ≥ 2n − 64.
    let (mut low, mut high) = (0u64, hashes / 2 + 64);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if hashes_for(mid) <= hashes {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

/// The writer's side: the hashes of the complete subtrees on the right
/// edge (largest first), to close subtrees as leaves arrive.
struct Edge {
    peaks: Vec<Hash>,
    /// Scratch for a batch's hashes.
    completed: Vec<Hash>,
}

/// The tree file, opened.
pub struct TreeFile {
    file: File,
    path: PathBuf,
    edge: Mutex<Edge>,
    /// Leaves whose hashes are written (published after the write).
    leaves: AtomicU64,
}

impl std::fmt::Debug for TreeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeFile")
            .field("path", &self.path)
            .field("leaves", &self.leaves())
            .finish()
    }
}

impl TreeFile {
    /// Opens (or creates) `dir/merkle.tree`, cutting a partial last hash and
    /// any hashes past the last whole leaf (a write a crash interrupted).
    pub fn open(dir: &Path) -> Result<TreeFile, StoreError> {
        let path = dir.join(TREE_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(super::DATA_FILE_MODE)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        let bytes = file
            .metadata()
            .map_err(StoreError::io(format!("reading {}", path.display())))?
            .len();
        let tree = TreeFile {
            file,
            path,
            edge: Mutex::new(Edge {
                peaks: Vec::new(),
                completed: Vec::new(),
            }),
            leaves: AtomicU64::new(0),
        };
        let leaves = leaves_within(bytes / HASH_BYTES);
        tree.truncate(leaves)?;
        Ok(tree)
    }

    /// Leaves in the tree.
    pub fn leaves(&self) -> u64 {
        self.leaves.load(Ordering::Acquire)
    }

    /// Keeps the first `leaves` leaves (and what they close) only.
    pub fn truncate(&self, leaves: u64) -> Result<(), StoreError> {
        let mut edge = self.edge.lock().unwrap_or_else(|p| p.into_inner());
        let leaves = leaves.min(self.leaves_on_disk()?);
        self.file
            .set_len(hashes_for(leaves) * HASH_BYTES)
            .map_err(StoreError::io(format!("cutting {}", self.path.display())))?;
        self.leaves.store(leaves, Ordering::Release);
        edge.peaks.clear();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if leaves & (1 << level) != 0 {
                edge.peaks.push(self.read(level, start >> level)?);
                start += 1 << level;
            }
        }
        Ok(())
    }

    fn leaves_on_disk(&self) -> Result<u64, StoreError> {
        let bytes = self
            .file
            .metadata()
            .map_err(StoreError::io(format!("reading {}", self.path.display())))?
            .len();
        Ok(leaves_within(bytes / HASH_BYTES))
    }

    /// Appends leaves (their hashes), following the last one, in one write.
    pub fn append(&self, leaves: &[Hash]) -> Result<(), StoreError> {
        if leaves.is_empty() {
            return Ok(());
        }
        let mut edge = self.edge.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.leaves();
        let Edge { peaks, completed } = &mut *edge;
        completed.clear();
        for (offset, leaf) in leaves.iter().enumerate() {
            merkle::push_leaf(peaks, first + offset as u64, *leaf, completed);
        }
        let bytes: Vec<u8> = completed.iter().flatten().copied().collect();
        if let Err(error) = self
            .file
            .write_all_at(&bytes, hashes_for(first) * HASH_BYTES)
        {
            // The edge now runs ahead of the file: put both back as they were.
            drop(edge);
            let _ = self.truncate(first);
            return Err(StoreError::io(format!("writing {}", self.path.display()))(
                error,
            ));
        }
        self.leaves
            .store(first + leaves.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Makes every hash written so far durable (before a checkpoint that
    /// covers them is signed).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(StoreError::io(format!("syncing {}", self.path.display())))
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, merkle::TreeError<StoreError>> {
        merkle::root_at(self, size)
    }

    fn read(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let mut hash = [0u8; 32];
        self.file
            .read_exact_at(&mut hash, position(level, index) * HASH_BYTES)
            .map_err(StoreError::io(format!(
                "reading subtree {level}/{index} of {}",
                self.path.display()
            )))?;
        Ok(hash)
    }
}

impl Subtrees for TreeFile {
    type Error = StoreError;

    fn size(&self) -> u64 {
        self.leaves()
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let end = (index + 1)
            .checked_shl(level)
            .filter(|end| *end <= self.leaves());
        if end.is_none() {
            return Err(StoreError::Inconsistent(format!(
                "subtree {level}/{index} is past the tree's {} leaves",
                self.leaves()
            )));
        }
        self.read(level, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merkle::{MerkleTree, leaf_hash};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn positions_follow_post_order() {
        assert_eq!(position(0, 0), 0);
        assert_eq!(position(0, 1), 1);
        assert_eq!(position(1, 0), 2);
        assert_eq!(position(0, 2), 3);
        assert_eq!(position(0, 3), 4);
        assert_eq!(position(1, 1), 5);
        assert_eq!(position(2, 0), 6);
        for n in 0..300 {
            assert_eq!(leaves_within(hashes_for(n)), n);
            if n > 0 {
                assert_eq!(leaves_within(hashes_for(n) - 1), n - 1);
            }
        }
    }

    #[test]
    fn the_file_agrees_with_the_tree_in_memory_across_batches_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(1000);
        let mut memory = MerkleTree::new();
        let mut appended = 0usize;
        for (round, batch) in [1usize, 1, 2, 5, 64, 100, 127, 300, 400].iter().enumerate() {
            let file = TreeFile::open(dir.path()).unwrap();
            assert_eq!(file.leaves(), appended as u64, "round {round}");
            let next = &all[appended..appended + batch];
            file.append(next).unwrap();
            for leaf in next {
                memory.push(*leaf);
            }
            appended += batch;
            for size in [1, appended as u64 / 2 + 1, appended as u64] {
                assert_eq!(file.root_at(size).unwrap(), memory.root_at(size).unwrap());
                let index = size / 3;
                assert_eq!(
                    merkle::inclusion_proof(&file, index, size).unwrap(),
                    memory.inclusion_proof(index, size).unwrap()
                );
                assert_eq!(
                    merkle::consistency_proof(&file, size.div_ceil(2), appended as u64).unwrap(),
                    memory
                        .consistency_proof(size.div_ceil(2), appended as u64)
                        .unwrap()
                );
            }
        }
        assert_eq!(
            std::fs::metadata(dir.path().join(TREE_FILE_NAME))
                .unwrap()
                .len(),
            hashes_for(1000) * 32
        );
    }

    #[test]
    fn a_torn_write_is_cut_back_to_the_last_whole_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(8);
        TreeFile::open(dir.path()).unwrap().append(&all).unwrap();
        // 8 leaves: 15 hashes. Cut into the 15th (leaf 7's closing nodes).
        let path = dir.path().join(TREE_FILE_NAME);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(13 * 32 + 5).unwrap();
        let tree = TreeFile::open(dir.path()).unwrap();
        assert_eq!(tree.leaves(), 7);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), hashes_for(7) * 32);
        tree.append(&all[7..]).unwrap();
        let mut memory = MerkleTree::new();
        all.iter().for_each(|leaf| memory.push(*leaf));
        assert_eq!(tree.root_at(8).unwrap(), memory.root());
    }

    #[test]
    fn truncating_then_appending_other_leaves_gives_their_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = TreeFile::open(dir.path()).unwrap();
        tree.append(&leaves(50)).unwrap();
        tree.truncate(20).unwrap();
        let other: Vec<Hash> = (0..30u64).map(|i| leaf_hash(&[i as u8, 1])).collect();
        tree.append(&other).unwrap();
        let mut memory = MerkleTree::new();
        leaves(20)
            .iter()
            .chain(&other)
            .for_each(|leaf| memory.push(*leaf));
        assert_eq!(tree.root_at(50).unwrap(), memory.root());
        assert!(tree.root_at(51).is_err());
    }
}
