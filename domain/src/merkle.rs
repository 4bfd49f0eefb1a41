//! A Merkle tree over the journal in the layout of RFC 6962 / RFC 9162
//! (section 2.1): leaf hash = SHA-256(0x00 ‖ entry bytes), node hash =
//! SHA-256(0x01 ‖ left ‖ right), and the tree of size n covers the first n
//! entries. Appending a leaf costs O(1) amortised (it completes at most one
//! subtree per level), and the root of any size, the inclusion proof of any
//! leaf and the consistency proof between any two sizes cost O(log n)
//! subtree reads: every range the RFC's recursion asks for is either a
//! complete, aligned subtree, or ends at the tree's size and starts where one
//! of its complete subtrees does, and those right-edge hashes are folded once
//! per size ([`Subtrees`] is where the complete subtrees are kept: in memory
//! here, in the tree file beside the journal in the store).
//!
//! The verifiers are the RFC 9162 algorithms (2.1.3.2 and 2.1.4.2): what an
//! auditor runs against a checkpoint, needing nothing but the proof.

use sha2::{Digest, Sha256};

use super::entry::Hash;

/// SHA-256(0x00 ‖ `bytes`): a leaf's hash.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// SHA-256(0x01 ‖ `left` ‖ `right`): an inner node's hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf is not in a tree of that size.
    #[error("leaf {index} is not in a tree of {size} entries")]
    LeafOutOfRange { index: u64, size: u64 },
    /// The sizes are not 1 ≤ first ≤ second ≤ the tree's size.
    #[error(
        "no consistency proof from size {first} to size {second} (the tree has {size} entries)"
    )]
    Sizes { first: u64, second: u64, size: u64 },
}

/// Where the hashes of a tree's complete, aligned subtrees are kept: in
/// memory ([`MerkleTree`]) or in a file beside the journal (the store's tree
/// file). Everything else (roots, proofs) is worked out from them here.
pub trait Subtrees {
    /// What reading a subtree's hash can fail with.
    type Error;

    /// Leaves in the tree.
    fn size(&self) -> u64;

    /// The hash of the complete subtree of 2^`level` leaves starting at leaf
    /// `index` · 2^`level` (level 0: the leaves), which lies within `size`.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or a proof could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// The sizes or the leaf asked for are out of range.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Reading a subtree's hash failed.
    #[error("reading the Merkle tree: {0}")]
    Read(E),
}

/// The tree of the first `size` leaves of `tree`, with the hashes of its
/// right edge (MTH(D[start:size]) for the start of each of its complete
/// subtrees) worked out once, so that every range the RFC's recursion asks
/// for costs one subtree read: a range whose length is a power of two is a
/// complete, aligned subtree, and any other ends at `size` and starts where
/// one of the tree's complete subtrees does.
struct Sized<'a, T: Subtrees> {
    tree: &'a T,
    size: u64,
    /// (start, MTH(D[start:size])), by start, for each complete subtree.
    right_edge: Vec<(u64, Hash)>,
}

impl<'a, T: Subtrees> Sized<'a, T> {
    fn new(tree: &'a T, size: u64) -> Result<Sized<'a, T>, TreeError<T::Error>> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                let hash = tree
                    .subtree(level, start >> level)
                    .map_err(TreeError::Read)?;
                peaks.push((start, hash));
                start += 1 << level;
            }
        }
        let mut right_edge = peaks.clone();
        for i in (0..right_edge.len().saturating_sub(1)).rev() {
            right_edge[i].1 = node_hash(&peaks[i].1, &right_edge[i + 1].1);
        }
        Ok(Sized {
            tree,
            size,
            right_edge,
        })
    }

    /// MTH(D[start:end]) for a range the RFC's recursion asks for.
    fn range(&self, start: u64, end: u64) -> Result<Hash, TreeError<T::Error>> {
        let len = end - start;
        if len.is_power_of_two() && start.is_multiple_of(len) {
            let level = len.trailing_zeros();
            return self
                .tree
                .subtree(level, start >> level)
                .map_err(TreeError::Read);
        }
        assert_eq!(end, self.size, "a partial range ends at the tree's size");
        let at = self
            .right_edge
            .binary_search_by_key(&start, |(peak, _)| *peak)
            .expect("a partial range starts at a complete subtree");
        Ok(self.right_edge[at].1)
    }

    fn root(&self) -> Hash {
        self.right_edge
            .first()
            .map_or_else(empty_root, |(_, hash)| *hash)
    }

    fn path(
        &self,
        index: u64,
        start: u64,
        end: u64,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TreeError<T::Error>> {
        let len = end - start;
        if len == 1 {
            return Ok(());
        }
        let k = split(len);
        if index < k {
            self.path(index, start, start + k, proof)?;
            proof.push(self.range(start + k, end)?);
        } else {
            self.path(index - k, start + k, end, proof)?;
            proof.push(self.range(start, start + k)?);
        }
        Ok(())
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TreeError<T::Error>> {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(self.range(start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, proof)?;
            proof.push(self.range(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, proof)?;
            proof.push(self.range(start, start + k)?);
        }
        Ok(())
    }
}

/// The root of the tree of the first `size` leaves (`size` ≤ the tree's).
pub fn root_at<T: Subtrees>(tree: &T, size: u64) -> Result<Hash, TreeError<T::Error>> {
    if size > tree.size() {
        return Err(ProofError::Sizes {
            first: size,
            second: size,
            size: tree.size(),
        }
        .into());
    }
    Ok(Sized::new(tree, size)?.root())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 6962 2.1.1, the audit path), deepest sibling first.
pub fn inclusion_proof<T: Subtrees>(
    tree: &T,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<T::Error>> {
    if index >= size || size > tree.size() {
        return Err(ProofError::LeafOutOfRange { index, size }.into());
    }
    let sized = Sized::new(tree, size)?;
    let mut proof = Vec::new();
    sized.path(index, 0, size, &mut proof)?;
    Ok(proof)
}

/// The consistency proof between the trees of `first` and `second` leaves
/// (RFC 6962 2.1.2), 1 ≤ first ≤ second ≤ the tree's size.
pub fn consistency_proof<T: Subtrees>(
    tree: &T,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, TreeError<T::Error>> {
    if first == 0 || first > second || second > tree.size() {
        return Err(ProofError::Sizes {
            first,
            second,
            size: tree.size(),
        }
        .into());
    }
    let sized = Sized::new(tree, second)?;
    let mut proof = Vec::new();
    sized.subproof(first, 0, second, true, &mut proof)?;
    Ok(proof)
}

/// The hashes of the complete subtrees that a new leaf completes, in the
/// order they complete: the leaf's own hash, then one node per level while
/// the leaf closes a subtree there. `peaks` holds the hashes of the tree's
/// complete subtrees on its right edge (largest first) before the leaf with
/// index `index` is added, and after it on return. This is the order of a
/// post-order walk of the tree, which is how the store's tree file keeps
/// them.
pub fn push_leaf(peaks: &mut Vec<Hash>, index: u64, leaf: Hash, completed: &mut Vec<Hash>) {
    peaks.push(leaf);
    completed.push(leaf);
    let mut closing = index;
    while closing & 1 == 1 {
        let right = peaks.pop().expect("a closed subtree has two halves");
        let left = peaks.pop().expect("a closed subtree has two halves");
        let parent = node_hash(&left, &right);
        peaks.push(parent);
        completed.push(parent);
        closing >>= 1;
    }
}

/// The tree in memory: the hashes of every complete, aligned subtree, level
/// by level (level 0 holds the leaves' hashes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl Subtrees for MerkleTree {
    type Error = std::convert::Infallible;

    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

/// A proof error of the in-memory tree, which cannot fail to read.
fn proof_only(error: TreeError<std::convert::Infallible>) -> ProofError {
    match error {
        TreeError::Proof(error) => error,
        TreeError::Read(never) => match never {},
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        Subtrees::size(self)
    }

    /// Appends the leaf whose hash is `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let hashes = &mut self.levels[level];
            hashes.push(carry);
            if hashes.len() % 2 == 1 {
                break;
            }
            carry = node_hash(&hashes[hashes.len() - 2], &hashes[hashes.len() - 1]);
        }
    }

    /// The hashes of level `level` (the complete subtrees of 2^level leaves).
    pub fn level(&self, level: usize) -> &[Hash] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    /// The root of the tree of the first `size` leaves (`size` ≤ the tree's).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        root_at(self, size).ok()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).expect("the tree's own size")
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves
    /// (RFC 6962 2.1.1, the audit path), deepest sibling first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof(self, index, size).map_err(proof_only)
    }

    /// The consistency proof between the trees of `first` and `second`
    /// leaves (RFC 6962 2.1.2), 1 ≤ first ≤ second ≤ the tree's size.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof(self, first, second).map_err(proof_only)
    }
}

/// Checks that `proof` shows the leaf hashed `leaf` at `index` in the tree
/// of `size` leaves whose root is `root` (RFC 9162 2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks that `proof` shows the tree of `first` leaves with root
/// `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *first_root && sr == *second_root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the RFC 6962 test vectors: Certificate Transparency's,
    /// as transparency-dev/merkle publishes them in `testonly/constants.go`
    /// (`LeafInputs`, `RootHashes`, and the inclusion proofs used below;
    /// https://github.com/transparency-dev/merkle/blob/main/testonly/constants.go).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// Their roots for sizes 1 to 8.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn tree_of(n: usize) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for i in 0..n {
            tree.push(leaf_hash(&(i as u64).to_le_bytes()));
        }
        tree
    }

    /// MTH as RFC 6962 defines it, leaf by leaf: the reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_are_the_rfc_6962_test_vectors() {
        let mut tree = MerkleTree::new();
        assert_eq!(
            hex::encode(tree.root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (leaf, root) in LEAVES.iter().zip(ROOTS) {
            tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
            assert_eq!(hex::encode(tree.root()), root, "size {}", tree.size());
        }
        // Every earlier size's root, from the tree of 8.
        for (size, root) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(tree.root_at(size as u64 + 1).unwrap()), *root);
        }
    }

    #[test]
    fn inclusion_proofs_are_the_published_audit_paths() {
        let mut tree = MerkleTree::new();
        for leaf in LEAVES {
            tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
        }
        let hexes = |proof: Vec<Hash>| proof.into_iter().map(hex::encode).collect::<Vec<_>>();
        assert_eq!(
            hexes(tree.inclusion_proof(0, 8).unwrap()),
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
        assert_eq!(
            hexes(tree.inclusion_proof(5, 8).unwrap()),
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
    }

    #[test]
    fn every_root_is_the_reference_root_and_every_proof_verifies() {
        let tree = tree_of(40);
        let leaves = tree.level(0).to_vec();
        for size in 1..=40u64 {
            let root = tree.root_at(size).unwrap();
            assert_eq!(
                root,
                reference_root(&leaves[..size as usize]),
                "size {size}"
            );
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert!(proof.len() <= 64 - (size - 1).leading_zeros() as usize);
                assert!(verify_inclusion(
                    index,
                    size,
                    &leaves[index as usize],
                    &proof,
                    &root
                ));
                // Another leaf, index or root does not verify.
                let other = leaf_hash(b"not in the tree");
                assert!(!verify_inclusion(index, size, &other, &proof, &root));
                if size > 1 {
                    let moved = (index + 1) % size;
                    assert!(!verify_inclusion(
                        moved,
                        size,
                        &leaves[index as usize],
                        &proof,
                        &root
                    ));
                }
            }
            for first in 1..=size {
                let first_root = tree.root_at(first).unwrap();
                let proof = tree.consistency_proof(first, size).unwrap();
                assert!(
                    verify_consistency(first, size, &first_root, &root, &proof),
                    "{first} -> {size}"
                );
                if first < size {
                    let forged = leaf_hash(b"another history");
                    assert!(!verify_consistency(first, size, &forged, &root, &proof));
                    assert!(!verify_consistency(
                        first,
                        size,
                        &first_root,
                        &forged,
                        &proof
                    ));
                    let mut cut = proof.clone();
                    cut.pop();
                    assert!(!verify_consistency(first, size, &first_root, &root, &cut));
                }
            }
        }
    }

    #[test]
    fn out_of_range_proofs_are_refused() {
        let tree = tree_of(5);
        assert!(tree.inclusion_proof(5, 5).is_err());
        assert!(tree.inclusion_proof(0, 6).is_err());
        assert!(tree.consistency_proof(0, 5).is_err());
        assert!(tree.consistency_proof(3, 2).is_err());
        assert!(tree.consistency_proof(2, 6).is_err());
        assert_eq!(tree.root_at(6), None);
    }
    /// Counts the subtree reads a root or proof takes.
    struct Counting<'a> {
        tree: &'a MerkleTree,
        reads: std::cell::Cell<u64>,
    }

    impl Subtrees for Counting<'_> {
        type Error = std::convert::Infallible;
        fn size(&self) -> u64 {
            self.tree.size()
        }
        fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
            self.reads.set(self.reads.get() + 1);
            self.tree.subtree(level, index)
        }
    }

    #[test]
    fn proofs_read_a_logarithmic_number_of_subtrees() {
        let n = (1u64 << 14) + 1234;
        let tree = tree_of(n as usize);
        let counting = Counting {
            tree: &tree,
            reads: std::cell::Cell::new(0),
        };
        let log = 64 - n.leading_zeros() as u64;
        for (first, second) in [(1, n), (5000, n), (n - 1, n), (777, 9999), (8192, 16384)] {
            counting.reads.set(0);
            let proof = consistency_proof(&counting, first, second).unwrap();
            assert!(
                counting.reads.get() <= 3 * log,
                "{first}..{second}: {} reads",
                counting.reads.get()
            );
            assert!(proof.len() as u64 <= 2 * log);
            let (a, b) = (tree.root_at(first).unwrap(), tree.root_at(second).unwrap());
            assert!(verify_consistency(first, second, &a, &b, &proof));
        }
        for index in [0, 1, 4095, 8191, 8192, n - 2, n - 1] {
            counting.reads.set(0);
            let proof = inclusion_proof(&counting, index, n).unwrap();
            assert!(
                counting.reads.get() <= 2 * log,
                "leaf {index}: {} reads",
                counting.reads.get()
            );
            assert!(verify_inclusion(
                index,
                n,
                &tree.level(0)[index as usize],
                &proof,
                &tree.root()
            ));
        }
    }

    #[test]
    fn push_leaf_completes_subtrees_in_post_order() {
        let tree = tree_of(100);
        let mut peaks = Vec::new();
        let mut completed = Vec::new();
        for (index, leaf) in tree.level(0).iter().enumerate() {
            push_leaf(&mut peaks, index as u64, *leaf, &mut completed);
        }
        // Post order: the node (level, i) follows the leaf that completes it.
        let mut expected = Vec::new();
        for leaf in 0..100u64 {
            expected.push(tree.level(0)[leaf as usize]);
            let mut level = 1;
            while (leaf + 1) % (1 << level) == 0 {
                expected.push(tree.level(level)[((leaf + 1) >> level) as usize - 1]);
                level += 1;
            }
        }
        assert_eq!(completed, expected);
        assert_eq!(completed.len() as u64, 2 * 100 - 100u64.count_ones() as u64);
        assert_eq!(peaks.len() as u32, 100u64.count_ones());
    }
}
