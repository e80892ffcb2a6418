//! An export bundle's signed manifest (contract section 8): its types, and
//! the checks that need no file of the bundle beyond the manifest and its
//! signed statement.
//!
//! [`open_manifest`] trusts only the ledger key. It reads the key the
//! manifest names (nothing else) before the statement's signature and the
//! manifest's digest check out, then parses and checks the rest: the format,
//! the statement's subjects against the manifest's files, and the evidence
//! report files. Reading, hashing and parsing the bundle's other files is
//! the caller's (`actlog_export::verify`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::dsse::Envelope;
use crate::note::{Checkpoint, VerifierKey};
use crate::{b64, sig};

/// `manifest.json`'s `format`.
pub const BUNDLE_FORMAT: &str = "actlog.export.v1";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The statement's predicate type.
pub const PREDICATE_TYPE: &str = "https://actlog.dev/export/v1";
/// The DSSE `payloadType` of the signed statement.
pub const STATEMENT_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// File names at the top of a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The signed statement.
pub const SIGNED_MANIFEST_FILE: &str = "manifest.dsse.json";
/// The leaves and envelopes.
pub const LEAVES_FILE: &str = "leaves.parquet";
/// The covering checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// `bundle_manifest_bytes_max`: the largest `manifest.json` or
/// `manifest.dsse.json` that `verify` reads.
pub const MANIFEST_BYTES_MAX: u64 = 256 << 20;
/// The `table` of an evidence bundle's report files (findings, OCSF
/// findings, the HTML report): signed and hashed, but not rows of the ledger.
pub const EVIDENCE_TABLE: &str = "evidence";

/// The report files one kind of report bundle adds (table
/// [`EVIDENCE_TABLE`]), registered by the module that writes them: a bundle
/// of `framework` lists exactly these, and a bundle without a framework none.
#[derive(Debug, Clone, Copy)]
pub struct Reports {
    /// The manifest's `framework`.
    pub framework: &'static str,
    /// The report files' paths.
    pub files: &'static [&'static str],
}

/// One file of a bundle, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the bundle, `/`-separated.
    pub path: String,
    /// `events`, `delegation_hops`, `ocsf` or `leaves`.
    pub table: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows (lines) in the file.
    pub rows: u64,
    /// Seq of its first row.
    pub first_seq: u64,
    /// Seq of its last row.
    pub last_seq: u64,
}

/// An RFC 6962 inclusion proof against the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The leaf's seq (its index).
    pub seq: u64,
    /// Its Merkle leaf hash, base64.
    pub leaf_hash: String,
    /// The audit path, base64, from the leaf upward.
    pub hashes: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// `parquet`, `ndjson` or `ocsf`.
    pub data_format: String,
    /// The OCSF mapping version, for `ocsf` bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsf_mapping: Option<String>,
    /// The log origin.
    pub origin: String,
    /// The ledger's verifier key (C2SP form).
    pub verifier_key: String,
    /// When the bundle was written (RFC 3339 UTC).
    pub created_at: String,
    /// The window on `event_time`: from (inclusive), RFC 3339 UTC.
    pub from: Option<String>,
    /// The window's end (exclusive).
    pub to: Option<String>,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The checkpoint's root hash, base64.
    pub root_hash: String,
    /// The checkpoint (signed note text); also in `checkpoint.txt`.
    pub checkpoint: String,
    /// Events exported.
    pub events: u64,
    /// Seq of the first exported event.
    pub first_seq: u64,
    /// Seq of the last exported event.
    pub last_seq: u64,
    /// Every data file and the leaves file.
    pub files: Vec<FileEntry>,
    /// Inclusion proofs: the first exported leaf and the last leaf of every
    /// run of consecutive leaves in `leaves.parquet`.
    pub proofs: Vec<Proof>,
    /// For an evidence bundle, its framework (`nist-csf-2.0`); its reports
    /// are files of table [`EVIDENCE_TABLE`], checked by hash only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
}

/// The first thing found wrong in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{reason}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), seq.map(|s| format!("seq {s}: ")).unwrap_or_default())]
pub struct BundleFailure {
    /// The file at fault, relative to the bundle.
    pub file: Option<String>,
    /// The seq at fault.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// `Err` of a [`BundleFailure`] at `file` (and `seq`).
pub fn bad<T>(file: Option<&str>, seq: Option<u64>, reason: impl Into<String>) -> Result<T, BundleFailure> {
    Err(BundleFailure { file: file.map(str::to_string), seq, reason: reason.into() })
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct Subject {
    name: String,
    digest: HashMap<String, String>,
}

/// A relative bundle path: `/`-separated normal components, nothing that
/// could leave the bundle directory.
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 1024
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A manifest whose signed statement checked out.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    /// The manifest.
    pub manifest: Manifest,
    /// The ledger key it is signed with.
    pub key: VerifierKey,
    /// Every signed file (the statement's subjects) and its SHA-256,
    /// lowercase hex. Each is the manifest itself, `checkpoint.txt` or a
    /// file the manifest lists, and each file listed is signed.
    pub subjects: BTreeMap<String, String>,
}

impl SignedManifest {
    /// Every file of the bundle but the signed statement: the manifest and
    /// `checkpoint.txt` (no entry), and the files the manifest lists.
    pub fn listed(&self) -> BTreeMap<&str, Option<&FileEntry>> {
        let mut listed: BTreeMap<&str, Option<&FileEntry>> =
            [(MANIFEST_FILE, None), (CHECKPOINT_FILE, None)].into_iter().collect();
        listed.extend(self.manifest.files.iter().map(|f| (f.path.as_str(), Some(f))));
        listed
    }

    /// The manifest's checkpoint, opened with the ledger key, agreeing with
    /// the manifest's tree size and root.
    pub fn checkpoint(&self) -> Result<Checkpoint, BundleFailure> {
        let m = &self.manifest;
        let cp = Checkpoint::open(&m.checkpoint, &self.key)
            .or_else(|e| bad(Some(MANIFEST_FILE), None, format!("checkpoint: {e}")))?;
        if cp.tree_size != m.tree_size || b64::encode(cp.root) != m.root_hash {
            return bad(Some(MANIFEST_FILE), None, "tree_size or root_hash differ from the checkpoint");
        }
        Ok(cp)
    }
}

/// Checks `manifest.dsse.json` (`signed`) and `manifest.json`
/// (`manifest_bytes`) against the ledger key: `expected` if given (the
/// manifest must name it), else the key the manifest names. `reports` are
/// the known kinds of report and their files.
pub fn open_manifest(
    signed: &[u8],
    manifest_bytes: &[u8],
    expected: Option<&VerifierKey>,
    reports: &[Reports],
) -> Result<SignedManifest, BundleFailure> {
    // Only the key is read from the manifest before the signature and the
    // manifest's digest check out; the rest is parsed after.
    #[derive(Deserialize)]
    struct KeyOnly {
        verifier_key: String,
    }
    let named: KeyOnly = serde_json::from_slice(manifest_bytes)
        .or_else(|e| bad(Some(MANIFEST_FILE), None, format!("not an export manifest: {e}")))?;
    let named = VerifierKey::parse(&named.verifier_key)
        .or_else(|e| bad(Some(MANIFEST_FILE), None, format!("verifier_key: {e}")))?;
    let key = match expected {
        Some(k) if *k != named => {
            return bad(
                None,
                None,
                format!("the bundle is from the ledger {}, not the expected {}", named.to_text(), k.to_text()),
            );
        }
        Some(k) => k.clone(),
        None => named,
    };

    let env = Envelope::parse_as(signed, STATEMENT_PAYLOAD_TYPE)
        .or_else(|e| bad(Some(SIGNED_MANIFEST_FILE), None, format!("not a signed statement: {e}")))?;
    let pae = env.pae();
    if !env.signatures.iter().any(|s| sig::verify(&key.key, &pae, &s.sig).is_ok()) {
        return bad(Some(SIGNED_MANIFEST_FILE), None, format!("not signed by the ledger key {}", key.to_text()));
    }
    let statement: Statement = serde_json::from_slice(&env.payload)
        .or_else(|e| bad(Some(SIGNED_MANIFEST_FILE), None, format!("not an in-toto statement: {e}")))?;
    if statement.kind != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return bad(Some(SIGNED_MANIFEST_FILE), None, "not an actlog export statement (wrong _type or predicateType)");
    }
    let mut subjects: BTreeMap<String, String> = BTreeMap::new();
    for s in statement.subject {
        if !safe_path(&s.name) {
            return bad(Some(SIGNED_MANIFEST_FILE), None, format!("subject `{}` is not a plain relative path", s.name));
        }
        let Some(d) = s.digest.get("sha256") else {
            return bad(Some(SIGNED_MANIFEST_FILE), None, format!("subject `{}` has no sha256 digest", s.name));
        };
        if subjects.insert(s.name.clone(), d.to_ascii_lowercase()).is_some() {
            return bad(Some(SIGNED_MANIFEST_FILE), None, format!("subject `{}` is listed twice", s.name));
        }
    }
    if subjects.get(MANIFEST_FILE) != Some(&hex::encode(Sha256::digest(manifest_bytes))) {
        return bad(Some(MANIFEST_FILE), None, "does not match the signed statement");
    }
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .or_else(|e| bad(Some(MANIFEST_FILE), None, format!("not an export manifest: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return bad(Some(MANIFEST_FILE), None, format!("format `{}` is not {BUNDLE_FORMAT}", manifest.format));
    }
    let p = &statement.predicate;
    if p["origin"] != json!(manifest.origin)
        || p["tree_size"] != json!(manifest.tree_size)
        || p["root_hash"] != json!(manifest.root_hash)
        || manifest.origin != key.name
    {
        return bad(
            Some(SIGNED_MANIFEST_FILE),
            None,
            "the statement's origin, tree size or root differ from the manifest",
        );
    }
    // Report files only in report bundles, only those of its framework, and all of them.
    let evidence: Vec<&str> =
        manifest.files.iter().filter(|f| f.table == EVIDENCE_TABLE).map(|f| f.path.as_str()).collect();
    let mut want_evidence: Vec<&str> = match manifest.framework.as_deref() {
        None => Vec::new(),
        Some(name) => match reports.iter().find(|r| r.framework == name) {
            Some(r) => r.files.to_vec(),
            None => return bad(Some(MANIFEST_FILE), None, format!("framework `{name}` is not known")),
        },
    };
    want_evidence.sort_unstable();
    let mut sorted = evidence.clone();
    sorted.sort_unstable();
    if sorted != want_evidence {
        return bad(
            Some(MANIFEST_FILE),
            None,
            format!(
                "evidence files {evidence:?}; a bundle of framework {:?} has exactly {want_evidence:?}",
                manifest.framework
            ),
        );
    }
    let mut listed: BTreeMap<&str, ()> = [(MANIFEST_FILE, ()), (CHECKPOINT_FILE, ())].into_iter().collect();
    for f in &manifest.files {
        if listed.insert(&f.path, ()).is_some() {
            return bad(Some(MANIFEST_FILE), None, format!("file `{}` is listed twice", f.path));
        }
        if subjects.get(&f.path) != Some(&f.sha256) {
            return bad(Some(&f.path), None, "its manifest entry does not match the signed statement");
        }
    }
    if let Some(extra) = subjects.keys().find(|s| !listed.contains_key(s.as_str())) {
        return bad(Some(extra), None, "signed but not in the manifest");
    }
    Ok(SignedManifest { manifest, key, subjects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_stay_inside_the_bundle() {
        assert!(safe_path("events/date=2026-11-28/part-00000.parquet"));
        assert!(safe_path("manifest.json"));
        for p in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a\\b", "a/", "x\0y"] {
            assert!(!safe_path(p), "{p:?}");
        }
    }
}
