//! Witnessing (contract §11): C2SP `tlog-cosignature` (Ed25519
//! `cosignature/v1`), `tlog-policy` files, and the `tlog-witness`
//! `add-checkpoint` request.
//!
//! - A cosigner key's id is `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`;
//!   its vkey is `name+hex8+base64(0x04 ‖ public key)`.
//! - A cosignature line is `— name base64(key id ‖ timestamp u64 BE ‖ sig)`
//!   over `cosignature/v1\ntime <timestamp>\n` ‖ the checkpoint text.
//! - A policy names trusted logs, witnesses, groups and one quorum.

use std::collections::{BTreeMap, BTreeSet};

use crate::b64;
use crate::leaf::Hash;
use crate::note::{NOTE_BYTES_MAX, NoteError, VerifierKey};
use crate::sig::{self, PublicKey};

/// The C2SP type byte of an Ed25519 `cosignature/v1` key.
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Proof lines an `add-checkpoint` request may carry (tlog-witness: 0..63).
pub const PROOF_LINES_MAX: usize = 63;
/// The largest `add-checkpoint` body accepted: 63 proof lines and a note
/// with a few dozen signatures fit well within it.
pub const ADD_CHECKPOINT_BYTES_MAX: usize = 64 * 1024;

/// Witnessing errors, each naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// A cosigner vkey is malformed.
    #[error("cosigner key is malformed: {0}")]
    Key(String),
    /// A policy file line is wrong.
    #[error("policy line {line}: {message}")]
    Policy {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An `add-checkpoint` request body is malformed.
    #[error("add-checkpoint body: {0}")]
    Request(String),
    /// A note is malformed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// The key id of a cosigner `name` with an Ed25519 public key.
pub fn cosigner_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    crate::note::typed_key_id(name, ALG_COSIGNATURE_V1, public_key)
}

/// A named Ed25519 `cosignature/v1` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    /// The cosigner's name.
    pub name: String,
    /// Its public key.
    pub key: PublicKey,
}

impl CosignerKey {
    /// The key of `name` for a signing seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<CosignerKey, WitnessError> {
        let key = PublicKey::from_bytes(&sig::public_key_of(seed)).map_err(|e| WitnessError::Key(e.to_string()))?;
        // The same name rules as note keys.
        VerifierKey::new(name, key)?;
        Ok(CosignerKey { name: name.to_string(), key })
    }

    /// Parses `<name>+<hex key id>+<base64(0x04 ‖ key)>`.
    pub fn parse(text: &str) -> Result<CosignerKey, WitnessError> {
        let wrong_type = "not an Ed25519 cosignature/v1 key (0x04 and 32 bytes)";
        let (name, key) = crate::note::parse_typed_vkey(text, ALG_COSIGNATURE_V1, wrong_type)
            .map_err(|e| WitnessError::Key(format!("`{text}`: {e}")))?;
        Ok(CosignerKey { name, key })
    }

    /// This key's id.
    pub fn key_id(&self) -> [u8; 4] {
        cosigner_key_id(&self.name, self.key.as_bytes())
    }

    /// The vkey text.
    pub fn to_text(&self) -> String {
        crate::note::typed_vkey_text(&self.name, ALG_COSIGNATURE_V1, &self.key)
    }

    /// Checks a signature line's bytes (key id ‖ timestamp ‖ signature)
    /// over checkpoint `text`; returns the timestamp when it verifies.
    pub fn verify(&self, text: &str, blob: &[u8]) -> Option<u64> {
        if blob.len() != 76 || blob[..4] != self.key_id() {
            return None;
        }
        let ts = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
        if ts > i64::MAX as u64 {
            return None;
        }
        sig::verify(&self.key, &cosignature_message(ts, text), &blob[12..]).ok().map(|_| ts)
    }
}

/// The bytes a `cosignature/v1` signs.
pub fn cosignature_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// Cosigns checkpoint `text` at `timestamp`: one signature line, newline
/// included, to append to the note.
pub fn cosign(text: &str, name: &str, seed: &[u8; 32], timestamp: u64) -> String {
    assert!(text.ends_with('\n'), "checkpoint text ends with a newline");
    let mut blob = cosigner_key_id(name, &sig::public_key_of(seed)).to_vec();
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig::sign(seed, &cosignature_message(timestamp, text)));
    format!("\u{2014} {name} {}\n", b64::encode(blob))
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigLine {
    /// The signer's name.
    pub name: String,
    /// The decoded bytes: key id, then what the key type defines.
    pub blob: Vec<u8>,
}

impl SigLine {
    /// The line, newline included.
    pub fn to_line(&self) -> String {
        format!("\u{2014} {} {}\n", self.name, b64::encode(&self.blob))
    }
}

/// Parses one signature line (`— <name> <base64>`, no newline).
pub fn parse_sig_line(line: &str) -> Result<SigLine, NoteError> {
    let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Format("signature line must start with an em dash"))?;
    let (name, blob) = rest.split_once(' ').ok_or(NoteError::Format("bad signature line"))?;
    let blob = b64::decode_strict(blob).ok_or(NoteError::Format("signature is not base64"))?;
    if name.is_empty() || name.contains(['+', ' ']) || blob.len() < 4 {
        return Err(NoteError::Format("bad signature line"));
    }
    Ok(SigLine { name: name.to_string(), blob })
}

/// Splits a signed note into its text (final newline included) and its
/// signature lines. Lines must be well formed; their keys are not checked.
pub fn split_note(note: &str) -> Result<(&str, Vec<SigLine>), NoteError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::Format("note is too long"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Format("control characters other than newline"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Format("no blank line before signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Format("signature block must end with a newline"));
    }
    let out = sigs.lines().map(parse_sig_line).collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(NoteError::Format("no signature lines"));
    }
    Ok((text, out))
}

/// The origin, size and root of checkpoint text (extension lines allowed).
pub fn parse_checkpoint_text(text: &str) -> Result<(&str, u64, Hash), NoteError> {
    let mut lines = text.split('\n');
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Checkpoint("missing origin"))?;
    let size = lines.next().ok_or(NoteError::Checkpoint("missing tree size"))?;
    let root = lines.next().ok_or(NoteError::Checkpoint("missing root hash"))?;
    if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NoteError::Checkpoint("tree size is not a decimal number"));
    }
    let size = size.parse().map_err(|_| NoteError::Checkpoint("tree size is not a number"))?;
    let root: Hash = b64::decode_strict(root)
        .and_then(|r| r.try_into().ok())
        .ok_or(NoteError::Checkpoint("root hash is not 32 bytes of base64"))?;
    Ok((origin, size, root))
}

/// A trusted log of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its key; the key's name is the log's origin.
    pub key: VerifierKey,
    /// Its URL, when given.
    pub url: Option<String>,
}

/// A witness of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The policy's name for it (unique among witnesses and groups).
    pub name: String,
    /// Its cosigner key.
    pub key: CosignerKey,
    /// Its submission prefix, when given.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    threshold: usize,
    members: Vec<String>,
}

/// A C2SP tlog-policy: trusted logs, witnesses, groups and the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `log` lines.
    pub logs: Vec<PolicyLog>,
    /// `witness` lines.
    pub witnesses: Vec<PolicyWitness>,
    groups: BTreeMap<String, Group>,
    /// The quorum's name (`none`, a witness or a group).
    pub quorum: String,
}

/// Names, logs, witnesses and groups a policy may hold (tlog-policy asks
/// implementations for at least 32 of each).
pub const POLICY_ENTRIES_MAX: usize = 256;

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Policy, WitnessError> {
        let mut logs: Vec<PolicyLog> = Vec::new();
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups = BTreeMap::new();
        let mut quorum = None;
        let mut keys_seen = BTreeSet::new();
        for (i, line) in text.split('\n').enumerate() {
            let err = |m: String| WitnessError::Policy { line: i + 1, message: m };
            if line.bytes().any(|b| b < 0x20 && b != b'\t') || line.bytes().any(|b| b == 0x7f) {
                return Err(err("control characters are not allowed".into()));
            }
            let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            if words.is_empty() || words[0].starts_with('#') {
                continue;
            }
            if logs.len() + witnesses.len() + groups.len() > POLICY_ENTRIES_MAX {
                return Err(err(format!("more than {POLICY_ENTRIES_MAX} entries")));
            }
            let defined = |n: &str| n == "none" || witnesses.iter().any(|w| w.name == n) || groups.contains_key(n);
            match words[0] {
                "log" => {
                    let [_, vkey, rest @ ..] = words.as_slice() else {
                        return Err(err("expected `log <vkey> [<url>]`".into()));
                    };
                    if rest.len() > 1 {
                        return Err(err("expected `log <vkey> [<url>]`".into()));
                    }
                    let key = VerifierKey::parse(vkey).map_err(|e| err(e.to_string()))?;
                    if !keys_seen.insert(*key.key.as_bytes()) {
                        return Err(err("this public key is already listed".into()));
                    }
                    logs.push(PolicyLog { key, url: rest.first().map(|u| u.to_string()) });
                }
                "witness" => {
                    let [_, name, vkey, rest @ ..] = words.as_slice() else {
                        return Err(err("expected `witness <name> <vkey> [<url>]`".into()));
                    };
                    if rest.len() > 1 {
                        return Err(err("expected `witness <name> <vkey> [<url>]`".into()));
                    }
                    if defined(name) {
                        return Err(err(format!("`{name}` is already defined")));
                    }
                    let key = CosignerKey::parse(vkey).map_err(|e| err(e.to_string()))?;
                    if !keys_seen.insert(*key.key.as_bytes()) {
                        return Err(err("this public key is already listed".into()));
                    }
                    let url = rest.first().map(|u| u.to_string());
                    witnesses.push(PolicyWitness { name: name.to_string(), key, url });
                }
                "group" => {
                    let [_, name, threshold, members @ ..] = words.as_slice() else {
                        return Err(err("expected `group <name> all|any|<k> <member>...`".into()));
                    };
                    if members.is_empty() {
                        return Err(err("a group needs at least one member".into()));
                    }
                    if defined(name) {
                        return Err(err(format!("`{name}` is already defined")));
                    }
                    let mut seen = BTreeSet::new();
                    for m in members {
                        if *m == "none" || !defined(m) {
                            return Err(err(format!("member `{m}` is not a witness or group defined above")));
                        }
                        if !seen.insert(*m) {
                            return Err(err(format!("member `{m}` appears twice")));
                        }
                    }
                    let n = members.len();
                    let k = match *threshold {
                        "all" => n,
                        "any" => 1,
                        k => k
                            .parse::<usize>()
                            .ok()
                            .filter(|v| (1..=n).contains(v) && v.to_string() == k)
                            .ok_or_else(|| err(format!("threshold `{k}` is not all, any or 1..{n}")))?,
                    };
                    let members = members.iter().map(|m| m.to_string()).collect();
                    groups.insert(name.to_string(), Group { threshold: k, members });
                }
                "quorum" => {
                    let [_, name] = words.as_slice() else {
                        return Err(err("expected `quorum <name>`".into()));
                    };
                    if quorum.is_some() {
                        return Err(err("there is already a quorum line".into()));
                    }
                    if !defined(name) {
                        return Err(err(format!("`{name}` is not `none` or a witness or group defined above")));
                    }
                    quorum = Some(name.to_string());
                }
                other => return Err(err(format!("unknown keyword `{other}`"))),
            }
        }
        let quorum = quorum.ok_or(WitnessError::Policy { line: 0, message: "no `quorum` line".into() })?;
        Ok(Policy { logs, witnesses, groups, quorum })
    }

    /// The policy as tlog-policy text, groups with numeric thresholds;
    /// [`Policy::parse`] reads it back to the same policy.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.logs {
            out +=
                &format!("log {}{}\n", l.key.to_text(), l.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default());
        }
        for w in &self.witnesses {
            let url = w.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            out += &format!("witness {} {}{url}\n", w.name, w.key.to_text());
        }
        // Groups in an order where every member is defined before its group.
        let mut written: BTreeSet<&str> = self.witnesses.iter().map(|w| w.name.as_str()).collect();
        while written.len() < self.witnesses.len() + self.groups.len() {
            let before = written.len();
            for (name, g) in &self.groups {
                if !written.contains(name.as_str()) && g.members.iter().all(|m| written.contains(m.as_str())) {
                    out += &format!("group {name} {} {}\n", g.threshold, g.members.join(" "));
                    written.insert(name);
                }
            }
            if written.len() == before {
                break; // unreachable for a parsed policy: groups only name what is defined above them
            }
        }
        out += &format!("quorum {}\n", self.quorum);
        out
    }

    /// The trusted log whose key name is `origin`.
    pub fn log(&self, origin: &str) -> Option<&PolicyLog> {
        self.logs.iter().find(|l| l.key.name == origin)
    }

    /// Whether a `log` line lists exactly this key (name and public key).
    pub fn lists_log(&self, key: &VerifierKey) -> bool {
        self.log(&key.name).is_some_and(|l| l.key == *key)
    }

    /// Whether the witnesses named in `cosigned` meet the quorum.
    pub fn quorum_met(&self, cosigned: &BTreeSet<String>) -> bool {
        self.met(&self.quorum, cosigned)
    }

    fn met(&self, name: &str, cosigned: &BTreeSet<String>) -> bool {
        if name == "none" {
            return true;
        }
        match self.groups.get(name) {
            Some(g) => g.members.iter().filter(|m| self.met(m, cosigned)).count() >= g.threshold,
            None => cosigned.contains(name),
        }
    }

    /// The witnesses whose valid cosignatures `note` carries, with their
    /// timestamps; lines of unknown keys are ignored.
    pub fn cosigners(&self, text: &str, sigs: &[SigLine]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in sigs {
            for w in self.witnesses.iter().filter(|w| w.key.name == s.name) {
                if let Some(ts) = w.key.verify(text, &s.blob) {
                    out.insert(w.name.clone(), ts);
                }
            }
        }
        out
    }

    /// Checks a note against the policy: some listed log signed it, and its
    /// valid cosignatures meet the quorum. Returns the checkpoint and the
    /// witnesses that cosigned it.
    pub fn check(&self, note: &str) -> Result<(String, u64, Hash, BTreeMap<String, u64>), String> {
        let (text, sigs) = split_note(note).map_err(|e| e.to_string())?;
        let (origin, size, root) = parse_checkpoint_text(text).map_err(|e| e.to_string())?;
        let log = self.log(origin).ok_or_else(|| format!("the policy lists no log `{origin}`"))?;
        crate::note::open_note(note, &log.key).map_err(|e| e.to_string())?;
        let cosigners = self.cosigners(text, &sigs);
        if !self.quorum_met(&cosigners.keys().cloned().collect()) {
            return Err(format!(
                "the cosignatures ({}) do not meet the quorum `{}`",
                if cosigners.is_empty() {
                    "none".to_string()
                } else {
                    cosigners.keys().cloned().collect::<Vec<_>>().join(", ")
                },
                self.quorum
            ));
        }
        Ok((origin.to_string(), size, root, cosigners))
    }
}

/// A parsed `add-checkpoint` request (C2SP tlog-witness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// `old N`: the size the client believes the witness last cosigned.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint note, signatures included.
    pub note: String,
}

impl AddCheckpoint {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, WitnessError> {
        let bad = |m: &str| WitnessError::Request(m.to_string());
        if body.len() > ADD_CHECKPOINT_BYTES_MAX {
            return Err(bad(&format!("longer than {ADD_CHECKPOINT_BYTES_MAX} bytes")));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, note) = text.split_once("\n\n").ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old =
            lines.next().and_then(|l| l.strip_prefix("old ")).ok_or_else(|| bad("the first line is not `old N`"))?;
        if old.is_empty() || (old.len() > 1 && old.starts_with('0')) || !old.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("`old` is not a decimal number without leading zeroes"));
        }
        let old = old.parse().map_err(|_| bad("`old` does not fit 64 bits"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == PROOF_LINES_MAX {
                return Err(bad(&format!("more than {PROOF_LINES_MAX} proof lines")));
            }
            let h = b64::decode_strict(l).and_then(|h| <Hash>::try_from(h).ok());
            proof.push(h.ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))?);
        }
        split_note(note)?;
        Ok(AddCheckpoint { old, proof, note: note.to_string() })
    }

    /// The request body.
    pub fn to_body(&self) -> String {
        let mut b = format!("old {}\n", self.old);
        for h in &self.proof {
            b.push_str(&b64::encode(h));
            b.push('\n');
        }
        b.push('\n');
        b.push_str(&self.note);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq_seed(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start + i as u8)
    }

    // The worked example of c2sp.org/tlog-cosignature, as summarized in
    // shared/reference/transparency.md section 4.
    const EXAMPLE_NOTE: &str = "example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n\n\
\u{2014} example.com/behind-the-sofa E+MLoo7Sh7opSZApJkLDm8y1veqJ4ITuCwjJ0RdhkXfMUJd7c8Y0AqFginZfromQitPjsk5SJzCVsNGQKoTJ0VVt4gU=\n";
    const EXAMPLE_COSIG: &str = "\u{2014} witness.example/w1 519lMgAAAABkGFDL6SQNTOyw7DrXj7sup7RyppJdAFetkctYUFOg8cI64WVRIzoXrYf6LTEYcQLbYCg4dqYLLi/fX7mRHFZdAuYzAA==\n";

    #[test]
    fn the_spec_example_cosignature_is_reproduced_and_verifies() {
        let w = CosignerKey::from_seed("witness.example/w1", &seq_seed(0)).unwrap();
        assert_eq!(w.to_text(), "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4");
        assert_eq!(CosignerKey::parse(&w.to_text()).unwrap(), w);
        let log = crate::note::sign_note(
            "example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n",
            "example.com/behind-the-sofa",
            &seq_seed(0x20),
        );
        assert_eq!(log, EXAMPLE_NOTE);
        let (text, _) = split_note(EXAMPLE_NOTE).unwrap();
        assert_eq!(cosign(text, "witness.example/w1", &seq_seed(0), 1_679_315_147), EXAMPLE_COSIG);
        let (_, sigs) = split_note(&format!("{EXAMPLE_NOTE}{EXAMPLE_COSIG}")).unwrap();
        assert_eq!(w.verify(text, &sigs[1].blob), Some(1_679_315_147));
        assert_eq!(w.verify(&text.replace("\n3\n", "\n4\n"), &sigs[1].blob), None);
        assert_eq!(w.verify(text, &sigs[0].blob), None, "a note signature is not a cosignature");
    }

    fn policy_text(extra: &str) -> String {
        let log = VerifierKey::new(
            "example.com/behind-the-sofa",
            PublicKey::from_bytes(&sig::public_key_of(&seq_seed(0x20))).unwrap(),
        )
        .unwrap();
        let w1 = CosignerKey::from_seed("witness.example/w1", &seq_seed(0)).unwrap();
        let w2 = CosignerKey::from_seed("witness.example/w2", &seq_seed(0x40)).unwrap();
        format!(
            "# two of two\nlog {} https://example.com/log\n\nwitness w1 {} https://w1.example/\nwitness\tw2 {}\n{extra}",
            log.to_text(),
            w1.to_text(),
            w2.to_text()
        )
    }

    #[test]
    fn policies_parse_and_quorums_count_valid_cosignatures() {
        let p = Policy::parse(&policy_text("group both 2 w1 w2\nquorum both\n")).unwrap();
        assert_eq!(p.logs.len(), 1);
        assert_eq!(p.witnesses[0].url.as_deref(), Some("https://w1.example/"));
        let err = p.check(&format!("{EXAMPLE_NOTE}{EXAMPLE_COSIG}")).unwrap_err();
        assert!(err.contains("do not meet the quorum `both`"), "{err}");
        let (text, _) = split_note(EXAMPLE_NOTE).unwrap();
        let w2 = cosign(text, "witness.example/w2", &seq_seed(0x40), 1_700_000_000);
        let (origin, size, _, by) = p.check(&format!("{EXAMPLE_NOTE}{EXAMPLE_COSIG}{w2}")).unwrap();
        assert_eq!((origin.as_str(), size), ("example.com/behind-the-sofa", 3));
        assert_eq!(by.into_iter().collect::<Vec<_>>(), [("w1".into(), 1_679_315_147), ("w2".into(), 1_700_000_000)]);
        // A cosignature by the wrong key does not count.
        let forged = cosign(text, "witness.example/w2", &seq_seed(0x41), 1_700_000_000);
        assert!(p.check(&format!("{EXAMPLE_NOTE}{EXAMPLE_COSIG}{forged}")).is_err());
        let any = Policy::parse(&policy_text("group g any w1 w2\nquorum g\n")).unwrap();
        assert!(any.check(&format!("{EXAMPLE_NOTE}{EXAMPLE_COSIG}")).is_ok());
        let none = Policy::parse(&policy_text("quorum none\n")).unwrap();
        assert!(none.check(EXAMPLE_NOTE).is_ok());
        assert!(none.check(&EXAMPLE_NOTE.replace("\n3\n", "\n4\n")).is_err(), "the log signature still counts");
    }

    #[test]
    fn a_policy_written_as_text_reads_back_the_same() {
        for extra in [
            "quorum none\n",
            "quorum w2\n",
            "group both all w1 w2\nquorum both\n",
            "group one any w1 w2\ngroup top 1 one w2\nquorum top\n",
        ] {
            let p = Policy::parse(&policy_text(extra)).unwrap();
            let text = p.to_text();
            assert_eq!(Policy::parse(&text).unwrap(), p, "{text}");
            assert!(text.ends_with(&format!("quorum {}\n", p.quorum)));
        }
    }

    #[test]
    fn bad_policies_are_refused_by_line() {
        for (extra, line, want) in [
            ("quorum w3\n", 6, "not `none`"),
            ("group g 3 w1 w2\nquorum g\n", 6, "threshold"),
            ("group g 01 w1 w2\nquorum g\n", 6, "threshold"),
            ("group g 1 w1 w1\nquorum g\n", 6, "twice"),
            ("group g 1 none\nquorum g\n", 6, "member `none`"),
            ("group w1 1 w2\nquorum w1\n", 6, "already defined"),
            ("quorum none\nquorum none\n", 7, "already a quorum"),
            ("frobnicate\nquorum none\n", 6, "unknown keyword"),
            ("", 0, "no `quorum` line"),
        ] {
            let e = Policy::parse(&policy_text(extra)).unwrap_err();
            match &e {
                WitnessError::Policy { line: l, message } => {
                    assert_eq!(*l, line, "{extra:?}: {e}");
                    assert!(message.contains(want), "{extra:?}: {e}");
                }
                other => panic!("{other}"),
            }
        }
        let dup = policy_text("quorum none\n").replace("witness\tw2", "witness w2")
            + "witness w9 "
            + &CosignerKey::from_seed("w9", &seq_seed(0)).unwrap().to_text()
            + "\n";
        assert!(Policy::parse(&dup).unwrap_err().to_string().contains("already listed"));
    }

    #[test]
    fn add_checkpoint_bodies_round_trip_and_bad_ones_are_named() {
        let req = AddCheckpoint { old: 2, proof: vec![[7; 32]], note: EXAMPLE_NOTE.to_string() };
        assert_eq!(AddCheckpoint::parse(req.to_body().as_bytes()).unwrap(), req);
        let zero = AddCheckpoint { old: 0, proof: vec![], note: EXAMPLE_NOTE.to_string() };
        assert!(zero.to_body().starts_with("old 0\n\nexample.com/"));
        assert_eq!(AddCheckpoint::parse(zero.to_body().as_bytes()).unwrap(), zero);
        for (body, want) in [
            ("old 01\n\nx", "leading zeroes"),
            ("old -1\n\nx", "decimal"),
            ("nope\n\nx", "`old N`"),
            ("old 1\nnot-base64\n\nx", "proof line"),
            ("old 1", "blank line"),
        ] {
            let e = AddCheckpoint::parse(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: {e}");
        }
        let long = format!("old 1\n{}\n{EXAMPLE_NOTE}", format!("{}\n", b64::encode([0u8; 32])).repeat(64));
        assert!(AddCheckpoint::parse(long.as_bytes()).unwrap_err().to_string().contains("more than 63"));
        assert!(AddCheckpoint::parse(b"old 1\n\nno signatures\n").is_err());
    }
}
