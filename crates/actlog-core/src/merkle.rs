//! The RFC 6962 Merkle tree over SHA-256: hashing, proofs and their verifiers.
//!
//! The store keeps the hash of every *perfect* subtree: node `(level, index)`
//! covers leaves `[index·2^level, (index+1)·2^level)`. Any subtree hash that
//! RFC 6962's recursion asks for is either such a node (one read) or the
//! right edge of a tree, folded from at most 64 nodes. So a proof for any
//! past tree size needs O(log n) reads and never a rebuild.

use sha2::{Digest, Sha256};

pub use crate::leaf::Hash;

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// Reads stored perfect-subtree hashes.
pub trait NodeReader {
    /// The storage error.
    type Error;
    /// The hash of the perfect subtree `(level, index)`. Level 0 is the leaf hash.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Errors from proof generation.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    /// The request does not fit the tree.
    #[error("{0}")]
    Range(String),
    /// The node store failed.
    #[error("node store: {0:?}")]
    Store(E),
}

fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` where the recursion guarantees `start` is aligned.
pub fn subtree_hash<R: NodeReader>(r: &R, start: u64, end: u64) -> Result<Hash, R::Error> {
    let n = end - start;
    assert!(n > 0, "empty subtree");
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return r.node(n.trailing_zeros() as u8, start >> n.trailing_zeros());
    }
    let k = largest_power_of_two_below(n);
    let left = subtree_hash(r, start, start + k)?;
    let right = subtree_hash(r, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root hash of the tree of `size` leaves.
pub fn root<R: NodeReader>(r: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 { Ok(empty_root()) } else { subtree_hash(r, 0, size) }
}

/// The RFC 6962 audit path for leaf `index` in the tree of `size`, leaf upward.
pub fn inclusion_proof<R: NodeReader>(r: &R, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::Range(format!("seq {index} is not below tree size {size}")));
    }
    let mut out = Vec::new();
    path(r, index, 0, size, &mut out).map_err(ProofError::Store)?;
    Ok(out)
}

fn path<R: NodeReader>(r: &R, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), R::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        path(r, m, start, start + k, out)?;
        out.push(subtree_hash(r, start + k, end)?);
    } else {
        path(r, m - k, start + k, end, out)?;
        out.push(subtree_hash(r, start, start + k)?);
    }
    Ok(())
}

/// The RFC 6962 consistency proof between tree sizes `old` and `new`.
pub fn consistency_proof<R: NodeReader>(r: &R, old: u64, new: u64) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if old > new {
        return Err(ProofError::Range(format!("old size {old} is larger than new size {new}")));
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(r, old, 0, new, true, &mut out).map_err(ProofError::Store)?;
    Ok(out)
}

fn subproof<R: NodeReader>(
    r: &R,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree_hash(r, start, end)?);
        }
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        subproof(r, m, start, start + k, whole, out)?;
        out.push(subtree_hash(r, start + k, end)?);
    } else {
        subproof(r, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(r, start, start + k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf_hash: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, proof: &[Hash], old_root: &Hash, new_root: &Hash) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut proof = proof.to_vec();
    if old.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (proof[0], proof[0]);
    for c in &proof[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &fr == old_root && &sr == new_root
}

/// The right edge of the tree: the perfect subtrees whose sizes are the set
/// bits of the tree size, largest first. Appending a leaf is a binary
/// increment that emits the new perfect nodes to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of a stored tree of `size` leaves.
    pub fn load<R: NodeReader>(r: &R, size: u64) -> Result<Frontier, R::Error> {
        let mut nodes = Vec::new();
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                let start = size & !((1u64 << level) - 1) & !(1u64 << level);
                nodes.push((level, r.node(level, start >> level)?));
            }
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; calls `emit(level, index, hash)` for every new
    /// perfect node, the leaf itself (level 0) first.
    pub fn push(&mut self, leaf: Hash, mut emit: impl FnMut(u8, u64, Hash)) {
        let index = self.size;
        emit(0, index, leaf);
        let mut level = 0u8;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            emit(level, (index + 1) / (1u64 << level) - 1, hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else { return empty_root() };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// An in-memory node store, for tests and for verifying a leaf sequence.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> MemTree {
        MemTree::default()
    }
    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, |level, index, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            assert_eq!(levels[level].len() as u64, index, "nodes are emitted in order");
            levels[level].push(hash);
        });
    }
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }
    /// The current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeReader for MemTree {
    type Error = std::convert::Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The trivially correct model: RFC 6962's recursive definition over all leaves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = largest_power_of_two_below(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemTree, Vec<Hash>) {
        let mut t = MemTree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let h = leaf_hash(&i.to_be_bytes());
            leaves.push(h);
            t.push(h);
        }
        (t, leaves)
    }

    #[test]
    fn known_roots() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        // RFC 6962 test vector: the leaf hash of the empty string.
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    proptest! {
        #[test]
        fn frontier_and_stored_nodes_agree_with_the_model(n in 0u64..300) {
            let (t, leaves) = tree(n);
            prop_assert_eq!(t.root(), mth(&leaves));
            for m in 0..=n {
                prop_assert_eq!(root(&t, m).unwrap(), mth(&leaves[..m as usize]));
            }
            prop_assert_eq!(Frontier::load(&t, n).unwrap().root(), t.root());
        }

        #[test]
        fn inclusion_proofs_verify_and_fail_when_altered(
            size in 1u64..600, idx_seed in any::<u64>(), flip in any::<(usize, usize, u8)>()
        ) {
            let (t, leaves) = tree(size);
            let index = idx_seed % size;
            let root_h = root(&t, size).unwrap();
            let proof = inclusion_proof(&t, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root_h));
            // Wrong leaf, wrong index, wrong size, altered hash, dropped hash: all fail.
            prop_assert!(!verify_inclusion(&leaf_hash(b"other"), index, size, &proof, &root_h));
            if size > 1 {
                prop_assert!(!verify_inclusion(&leaves[index as usize], (index + 1) % size, size, &proof, &root_h));
            }
            let mut wrong_root = root_h;
            wrong_root[31] ^= 1;
            prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &proof, &wrong_root));
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let (i, j, bit) = flip;
                bad[i % proof.len()][j % 32] ^= 1 << (bit % 8);
                prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &bad, &root_h));
                let mut short = proof.clone();
                short.pop();
                prop_assert!(!verify_inclusion(&leaves[index as usize], index, size, &short, &root_h));
            }
        }

        #[test]
        fn consistency_proofs_verify_and_fail_when_altered(
            new in 1u64..600, old_seed in any::<u64>(), flip in any::<(usize, usize, u8)>()
        ) {
            let (t, _) = tree(new);
            let old = 1 + old_seed % new;
            let (old_root, new_root) = (root(&t, old).unwrap(), root(&t, new).unwrap());
            let proof = consistency_proof(&t, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root));
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let (i, j, bit) = flip;
                bad[i % proof.len()][j % 32] ^= 1 << (bit % 8);
                prop_assert!(!verify_consistency(old, new, &bad, &old_root, &new_root));
            }
            if old < new {
                let mut wrong = old_root;
                wrong[0] ^= 1;
                prop_assert!(!verify_consistency(old, new, &proof, &wrong, &new_root));
            }
        }
    }
}
