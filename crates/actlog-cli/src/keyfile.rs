//! Producer key files, in the C2SP signer-key form used by Go's `note`
//! package: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.

use std::path::Path;

use actlog_core::b64;
use actlog_core::note::{VerifierKey, key_id};
use actlog_core::sig::{PublicKey, public_key_of};

use crate::util::{CliResult, usage};

/// A loaded signer key.
pub struct SignerKey {
    pub name: String,
    pub seed: [u8; 32],
}

impl SignerKey {
    pub fn to_text(&self) -> String {
        let mut raw = vec![0x01u8];
        raw.extend_from_slice(&self.seed);
        let id = key_id(&self.name, &public_key_of(&self.seed));
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex::encode(id), b64::encode(raw))
    }

    pub fn parse(text: &str) -> Option<SignerKey> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+")?;
        let mut parts = rest.splitn(3, '+');
        let (name, id, key) = (parts.next()?, parts.next()?, parts.next()?);
        let raw = b64::decode_strict(key)?;
        if raw.len() != 33 || raw[0] != 0x01 {
            return None;
        }
        let seed: [u8; 32] = raw[1..].try_into().ok()?;
        if hex::decode(id).ok()? != key_id(name, &public_key_of(&seed)) {
            return None;
        }
        Some(SignerKey { name: name.to_string(), seed })
    }

    pub fn load(path: &Path) -> CliResult<SignerKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read key file {}: {e}", path.display())))?;
        SignerKey::parse(&text).ok_or_else(|| {
            usage(format!(
                "{} is not an actlog signer key (PRIVATE+KEY+name+id+key); make one with `actlog keygen`",
                path.display()
            ))
        })
    }

    pub fn verifier(&self) -> VerifierKey {
        let pk = PublicKey::from_bytes(&public_key_of(&self.seed)).expect("ed25519 keys from seeds are valid");
        VerifierKey::new(&self.name, pk).expect("name was validated")
    }
}

/// Parses a public key given as base64 of 32 raw bytes or as a C2SP verifier key.
pub fn parse_public_key(text: &str) -> CliResult<[u8; 32]> {
    // A verifier key carries its own checksum (the key id), so a raw base64
    // key that happens to contain '+' never parses as one.
    if let Ok(vk) = VerifierKey::parse(text) {
        return Ok(*vk.key.as_bytes());
    }
    let raw = b64::decode(text.trim())
        .ok_or_else(|| usage("the public key must be base64 of 32 raw bytes or a C2SP verifier key (name+id+key)"))?;
    raw.try_into().map_err(|_| usage("the public key must be 32 bytes"))
}
