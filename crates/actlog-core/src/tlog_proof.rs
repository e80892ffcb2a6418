//! C2SP `tlog-proof` files (contract §11): an offline proof that the ledger
//! committed to one leaf in a checkpoint, which witnesses cosigned.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the leaf's bytes>
//! index <leaf index>
//! <audit path, one base64 hash per line, from the leaf's sibling up>
//!
//! <the checkpoint note, cosignatures included>
//! ```
//!
//! The `extra` line carries the leaf, so the file alone proves which leaf;
//! the leaf commits to the envelope's SHA-256, so an envelope kept by its
//! producer can be matched to it.

use crate::b64;
use crate::leaf::{Hash, Leaf, sha256};
use crate::merkle;
use crate::witness::{self, Policy};

/// The first line of every tlog-proof file.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Audit path lines accepted (a tree of 2^63 leaves has 63).
pub const PATH_LINES_MAX: usize = 63;
/// The largest proof file read.
pub const PROOF_BYTES_MAX: usize = 1 << 20;

/// A parsed proof file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The leaf's bytes, from `extra` (actlog always writes it).
    pub leaf: Option<Vec<u8>>,
    /// The leaf index.
    pub index: u64,
    /// The audit path.
    pub path: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut t = format!("{HEADER}\n");
        if let Some(leaf) = &self.leaf {
            t.push_str(&format!("extra {}\n", b64::encode(leaf)));
        }
        t.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            t.push_str(&b64::encode(h));
            t.push('\n');
        }
        t.push('\n');
        t.push_str(&self.checkpoint);
        t
    }

    /// Parses a proof file; every line is checked for its form.
    pub fn parse(text: &str) -> Result<TlogProof, String> {
        if text.len() > PROOF_BYTES_MAX {
            return Err(format!("the proof file is longer than {PROOF_BYTES_MAX} bytes"));
        }
        let (head, checkpoint) = text.split_once("\n\n").ok_or("no blank line between the proof and the checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not `{HEADER}`"));
        }
        let mut line = lines.next().ok_or("no `index` line")?;
        let mut leaf = None;
        if let Some(e) = line.strip_prefix("extra ") {
            leaf = Some(b64::decode_strict(e).ok_or("`extra` is not base64")?);
            line = lines.next().ok_or("no `index` line")?;
        }
        let index = line.strip_prefix("index ").ok_or("no `index` line after the header")?;
        if index.is_empty() || (index.len() > 1 && index.starts_with('0')) || !index.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("the index is not a decimal number without leading zeroes".into());
        }
        let index: u64 = index.parse().map_err(|_| "the index does not fit 64 bits")?;
        let mut path = Vec::new();
        for l in lines {
            if path.len() == PATH_LINES_MAX {
                return Err(format!("more than {PATH_LINES_MAX} audit path lines"));
            }
            let h = b64::decode_strict(l).and_then(|h| <Hash>::try_from(h).ok());
            path.push(h.ok_or("an audit path line is not a base64 SHA-256 hash")?);
        }
        witness::split_note(checkpoint).map_err(|e| format!("the checkpoint: {e}"))?;
        Ok(TlogProof { leaf, index, path, checkpoint: checkpoint.to_string() })
    }
}

/// What a checked proof file proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The log's origin.
    pub origin: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The proven leaf.
    pub leaf: Leaf,
    /// The witnesses whose cosignatures counted, by policy name.
    pub witnesses: Vec<String>,
}

/// Checks a proof file against a policy (the log's key and the quorum) and,
/// when given, the envelope its producer kept.
pub fn check(proof: &TlogProof, policy: &Policy, envelope: Option<&[u8]>) -> Result<Proven, String> {
    let (origin, size, root, by) = policy.check(&proof.checkpoint)?;
    let bytes = proof.leaf.as_deref().ok_or("no `extra` line: actlog proof files carry the leaf there")?;
    let leaf = Leaf::decode(bytes).map_err(|e| format!("the leaf in `extra`: {e}"))?;
    if leaf.seq != proof.index {
        return Err(format!("the leaf says seq {}, the proof index {}", leaf.seq, proof.index));
    }
    if proof.index >= size {
        return Err(format!("index {} is outside the checkpoint's {size} leaves", proof.index));
    }
    if !merkle::verify_inclusion(&merkle::leaf_hash(bytes), proof.index, size, &proof.path, &root) {
        return Err("the audit path does not lead from the leaf to the checkpoint's root".into());
    }
    if let Some(e) = envelope
        && sha256(e) != leaf.envelope_sha256
    {
        return Err("the envelope is not the one the proven leaf commits to (its SHA-256 differs)".into());
    }
    Ok(Proven { origin, tree_size: size, leaf, witnesses: by.into_keys().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of c2sp.org/tlog-proof (shared/reference/transparency.md section 7).
    const EXAMPLE: &str = "c2sp.org/tlog-proof@v1\nindex 2\nv/hH1EAhhZS94gB+wee4jbbhRa8Gk7xtRgyxWRlZ/mY=\n\n\
example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n\n\
\u{2014} example.com/behind-the-sofa E+MLoo7Sh7opSZApJkLDm8y1veqJ4ITuCwjJ0RdhkXfMUJd7c8Y0AqFginZfromQitPjsk5SJzCVsNGQKoTJ0VVt4gU=\n\
\u{2014} witness.example/w1 519lMgAAAABkGFDL6SQNTOyw7DrXj7sup7RyppJdAFetkctYUFOg8cI64WVRIzoXrYf6LTEYcQLbYCg4dqYLLi/fX7mRHFZdAuYzAA==\n";

    #[test]
    fn the_spec_example_parses_round_trips_and_proves_its_entry() {
        let p = TlogProof::parse(EXAMPLE).unwrap();
        assert_eq!((p.index, p.path.len(), p.leaf.is_none()), (2, 1, true));
        assert_eq!(p.to_text(), EXAMPLE);
        let (text, _) = witness::split_note(&p.checkpoint).unwrap();
        let (_, size, root) = witness::parse_checkpoint_text(text).unwrap();
        let entry = merkle::leaf_hash(b"entry three");
        assert!(merkle::verify_inclusion(&entry, 2, size, &p.path, &root));
        assert!(!merkle::verify_inclusion(&merkle::leaf_hash(b"entry two"), 2, size, &p.path, &root));
        // Without the leaf in `extra`, actlog's check refuses by name.
        let seed: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
        let key = crate::sig::PublicKey::from_bytes(&crate::sig::public_key_of(&seed)).unwrap();
        let log = crate::note::VerifierKey::new("example.com/behind-the-sofa", key).unwrap();
        let policy = Policy::parse(&format!("log {}\nquorum none\n", log.to_text())).unwrap();
        assert!(check(&p, &policy, None).unwrap_err().contains("extra"));
    }

    #[test]
    fn malformed_files_are_refused_by_line() {
        for (text, want) in [
            (EXAMPLE.replace("tlog-proof@v1", "tlog-proof@v2"), "first line"),
            (EXAMPLE.replace("index 2", "index 02"), "leading zeroes"),
            (EXAMPLE.replace("index 2", "idx 2"), "`index`"),
            (EXAMPLE.replace("v/hH1EAh", "v/hH1E"), "audit path"),
            (EXAMPLE.replacen("\n\n", "\n", 1), "not a base64 SHA-256 hash"),
            (EXAMPLE.replace("\u{2014} witness", "- witness"), "checkpoint"),
        ] {
            let e = TlogProof::parse(&text).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
