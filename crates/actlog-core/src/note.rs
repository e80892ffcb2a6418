//! C2SP signed notes, verifier keys and tlog-checkpoints.
//!
//! - A verifier key is `<name>+<hex key id>+<base64(0x01 || public key)>`.
//! - The key id is the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)`.
//! - A signed note is the text, a blank line, then lines `— <name> <base64(key id || signature)>`.
//! - A checkpoint's text is `<origin>\n<tree size>\n<base64 root>\n`.
//!
//! Unknown signature lines (witness cosignatures) are ignored, as C2SP requires.

use sha2::{Digest, Sha256};

use crate::b64;
use crate::leaf::Hash;
use crate::sig::{self, PublicKey};

/// The signature algorithm byte for Ed25519 in C2SP keys.
const ALG_ED25519: u8 = 0x01;
/// A note is at most this long (C2SP suggests verifiers bound it).
pub const NOTE_BYTES_MAX: usize = 1 << 20;

/// Note and key errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The verifier key string is malformed.
    #[error("verifier key is malformed: {0}")]
    KeyFormat(&'static str),
    /// The key bytes are not an acceptable ed25519 key.
    #[error("verifier key: {0}")]
    Key(sig::SigError),
    /// The note text is malformed.
    #[error("note is malformed: {0}")]
    Format(&'static str),
    /// No signature line from the expected key verifies.
    #[error("note has no valid signature from key {0}")]
    NoValidSignature(String),
    /// The checkpoint body is malformed.
    #[error("checkpoint body is malformed: {0}")]
    Checkpoint(&'static str),
}

/// A named ed25519 verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name (for the ledger key, the log origin).
    pub name: String,
    /// The public key.
    pub key: PublicKey,
}

/// The C2SP key id of `name` and an ed25519 public key.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_id(name, ALG_ED25519, public_key)
}

/// The C2SP key id of `name` and a public key of type `alg`:
/// `SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[:4]`.
pub(crate) fn typed_key_id(name: &str, alg: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, alg]);
    h.update(public_key);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// Parses a vkey `<name>+<hex key id>+<base64(alg ‖ 32-byte key)>` of
/// type `alg`, checking the name and the key id; `wrong_type` says what the
/// key should have been.
pub(crate) fn parse_typed_vkey(
    text: &str,
    alg: u8,
    wrong_type: &'static str,
) -> Result<(String, PublicKey), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::KeyFormat("expected name+keyid+key"));
    };
    let raw = b64::decode_strict(key_b64).ok_or(NoteError::KeyFormat("key is not base64"))?;
    if raw.len() != 33 || raw[0] != alg {
        return Err(NoteError::KeyFormat(wrong_type));
    }
    let bytes: [u8; 32] = raw[1..].try_into().expect("32 bytes");
    let key = PublicKey::from_bytes(&bytes).map_err(NoteError::Key)?;
    if !valid_name(name) {
        return Err(NoteError::KeyFormat("name must be non-empty with no spaces or '+'"));
    }
    if id_hex.len() != 8 || hex::decode(id_hex).ok().as_deref() != Some(&typed_key_id(name, alg, &bytes)[..]) {
        return Err(NoteError::KeyFormat("key id does not match the name and key"));
    }
    Ok((name.to_string(), key))
}

/// The vkey text of `name` and a key of type `alg`.
pub(crate) fn typed_vkey_text(name: &str, alg: u8, key: &PublicKey) -> String {
    let mut raw = vec![alg];
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(typed_key_id(name, alg, key.as_bytes())), b64::encode(raw))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| !c.is_whitespace() && c != '+' && !c.is_control())
}

impl VerifierKey {
    /// A key from a name and validated public key.
    pub fn new(name: &str, key: PublicKey) -> Result<VerifierKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::KeyFormat("name must be non-empty with no spaces or '+'"));
        }
        Ok(VerifierKey { name: name.to_string(), key })
    }

    /// Parses `<name>+<hex key id>+<base64(0x01 || key)>`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, key) = parse_typed_vkey(text, ALG_ED25519, "key is not an ed25519 key (0x01 + 32 bytes)")?;
        Ok(VerifierKey { name, key })
    }

    /// This key's C2SP key id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.as_bytes())
    }

    /// The `<name>+<hex id>+<base64>` form.
    pub fn to_text(&self) -> String {
        typed_vkey_text(&self.name, ALG_ED25519, &self.key)
    }
}

/// Signs note `text` (which must end in a newline) as `name` with an ed25519 seed.
pub fn sign_note(text: &str, name: &str, seed: &[u8; 32]) -> String {
    assert!(text.ends_with('\n'), "note text ends with a newline");
    let public = sig::public_key_of(seed);
    let mut blob = key_id(name, &public).to_vec();
    blob.extend_from_slice(&sig::sign(seed, text.as_bytes()));
    format!("{text}\n\u{2014} {name} {}\n", b64::encode(blob))
}

/// Verifies a signed note against one key; returns the note text.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, NoteError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::Format("note is too long"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Format("no blank line before signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Format("signature block must end with a newline"));
    }
    let want_id = key.key_id();
    for line in sigs.lines() {
        let rest =
            line.strip_prefix("\u{2014} ").ok_or(NoteError::Format("signature line must start with an em dash"))?;
        let (name, blob) = rest.split_once(' ').ok_or(NoteError::Format("bad signature line"))?;
        let blob = b64::decode_strict(blob).ok_or(NoteError::Format("signature is not base64"))?;
        if name != key.name || blob.len() != 68 || blob[..4] != want_id {
            continue;
        }
        if sig::verify(&key.key, text.as_bytes(), &blob[4..]).is_ok() {
            return Ok(text);
        }
    }
    Err(NoteError::NoValidSignature(key.name.clone()))
}

/// A tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log origin.
    pub origin: String,
    /// Tree size.
    pub tree_size: u64,
    /// Root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.tree_size, b64::encode(self.root))
    }

    /// Signs this checkpoint with the ledger key (named by the origin).
    pub fn sign(&self, seed: &[u8; 32]) -> String {
        sign_note(&self.body(), &self.origin, seed)
    }

    /// Verifies a signed checkpoint note with the ledger's verifier key.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let text = open_note(note, key)?;
        let mut lines = text.split('\n');
        let origin = lines.next().ok_or(NoteError::Checkpoint("missing origin"))?;
        let size = lines.next().ok_or(NoteError::Checkpoint("missing tree size"))?;
        let root = lines.next().ok_or(NoteError::Checkpoint("missing root hash"))?;
        if origin != key.name {
            return Err(NoteError::Checkpoint("origin is not the key's name"));
        }
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) {
            return Err(NoteError::Checkpoint("tree size is not a decimal number"));
        }
        let tree_size = size.parse().map_err(|_| NoteError::Checkpoint("tree size is not a number"))?;
        let root: Hash = b64::decode_strict(root)
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Checkpoint("root hash is not 32 bytes of base64"))?;
        Ok(Checkpoint { origin: origin.to_string(), tree_size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_key() -> ([u8; 32], VerifierKey) {
        let seed = [42u8; 32];
        let key = PublicKey::from_bytes(&sig::public_key_of(&seed)).unwrap();
        (seed, VerifierKey::new("example.com/log", key).unwrap())
    }

    #[test]
    fn verifier_key_round_trips_and_checks_its_id() {
        let (_, vk) = ledger_key();
        let text = vk.to_text();
        assert_eq!(VerifierKey::parse(&text).unwrap(), vk);
        let tampered = text.replacen("example.com/log", "example.com/lag", 1);
        assert!(VerifierKey::parse(&tampered).is_err());
    }

    #[test]
    fn checkpoint_sign_open_and_tamper() {
        let (seed, vk) = ledger_key();
        let cp = Checkpoint { origin: vk.name.clone(), tree_size: 7, root: [3; 32] };
        let note = cp.sign(&seed);
        assert!(note.starts_with("example.com/log\n7\nAwMD"));
        assert_eq!(Checkpoint::open(&note, &vk).unwrap(), cp);
        // A witness cosignature from another key is ignored.
        let other = sign_note(&cp.body(), "witness", &[9; 32]);
        let cosigned = format!("{}{}", note, other.rsplit_once("\n\n").unwrap().1);
        assert_eq!(Checkpoint::open(&cosigned, &vk).unwrap(), cp);
        assert!(Checkpoint::open(&note.replacen("\n7\n", "\n8\n", 1), &vk).is_err());
        assert!(Checkpoint::open(&other, &vk).is_err());
    }
}
