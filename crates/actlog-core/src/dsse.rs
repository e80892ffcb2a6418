//! DSSE v1 envelopes: parsing untrusted bytes and the pre-authentication
//! encoding (PAE) that signatures cover.
//!
//! The payload bytes are kept exactly as decoded from the envelope; nothing is
//! ever re-serialized before a signature check.

use serde::Deserialize;

use crate::b64;
use crate::event::Text;

/// The payload type every producer envelope must carry.
pub const EVENT_PAYLOAD_TYPE: &str = "application/vnd.actlog.event.v1+json";

/// At most this many signatures in one envelope (DSSE allows t-of-n; we need one).
pub const ENVELOPE_SIGNATURES_MAX: usize = 8;

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `payloadType`, as sent.
    pub payload_type: String,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// Signatures in the order sent.
    pub signatures: Vec<Signature>,
}

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The unauthenticated key hint.
    pub keyid: Option<String>,
    /// The decoded signature bytes.
    pub sig: Vec<u8>,
}

/// Why an envelope was refused. Each variant has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    /// Not a JSON object of the envelope's shape.
    #[error("envelope is not valid JSON: {0}")]
    Malformed(String),
    /// A required member is missing.
    #[error("envelope member `{0}` is missing")]
    Missing(&'static str),
    /// Base64 that does not decode.
    #[error("envelope member `{0}` is not valid base64")]
    BadBase64(&'static str),
    /// The payload type is not the event type.
    #[error("payloadType must be `{EVENT_PAYLOAD_TYPE}`, got `{0}`")]
    WrongPayloadType(String),
    /// No signatures.
    #[error("envelope has no signatures")]
    NoSignatures,
    /// Too many signatures.
    #[error("envelope has more than {ENVELOPE_SIGNATURES_MAX} signatures")]
    TooManySignatures,
}

impl DsseError {
    /// The stable error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            DsseError::Malformed(_) => "malformed_envelope",
            DsseError::Missing(_) => "malformed_envelope",
            DsseError::BadBase64(_) => "bad_base64",
            DsseError::WrongPayloadType(_) => "wrong_payload_type",
            DsseError::NoSignatures => "missing_signature",
            DsseError::TooManySignatures => "too_many_signatures",
        }
    }

    /// The JSON Pointer of the offending member inside the envelope.
    pub fn path(&self) -> &'static str {
        match self {
            DsseError::Malformed(_) => "",
            DsseError::Missing(m) | DsseError::BadBase64(m) => match *m {
                "payloadType" => "/payloadType",
                "payload" => "/payload",
                "signatures" => "/signatures",
                _ => "/signatures/sig",
            },
            DsseError::WrongPayloadType(_) => "/payloadType",
            DsseError::NoSignatures | DsseError::TooManySignatures => "/signatures",
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "payloadType", borrow)]
    payload_type: Option<Text<'a>>,
    #[serde(borrow)]
    payload: Option<Text<'a>>,
    #[serde(borrow)]
    signatures: Option<Vec<RawSignature<'a>>>,
}

#[derive(Deserialize)]
struct RawSignature<'a> {
    #[serde(borrow)]
    keyid: Option<Text<'a>>,
    #[serde(borrow)]
    sig: Option<Text<'a>>,
}

impl Envelope {
    /// Parses and checks an event envelope from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, DsseError> {
        Envelope::parse_as(bytes, EVENT_PAYLOAD_TYPE)
    }

    /// Parses and checks an envelope whose `payloadType` must be `payload_type`
    /// (export bundles carry an in-toto statement).
    pub fn parse_as(bytes: &[u8], expected_type: &str) -> Result<Envelope, DsseError> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))?;
        let payload_type = raw.payload_type.ok_or(DsseError::Missing("payloadType"))?;
        let payload = raw.payload.ok_or(DsseError::Missing("payload"))?;
        let raw_sigs = raw.signatures.ok_or(DsseError::Missing("signatures"))?;
        if &*payload_type != expected_type {
            return Err(DsseError::WrongPayloadType(payload_type.chars().take(100).collect()));
        }
        let payload = b64::decode(&payload).ok_or(DsseError::BadBase64("payload"))?;
        if raw_sigs.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        if raw_sigs.len() > ENVELOPE_SIGNATURES_MAX {
            return Err(DsseError::TooManySignatures);
        }
        let mut signatures = Vec::with_capacity(raw_sigs.len());
        for s in raw_sigs {
            let sig = s.sig.ok_or(DsseError::Missing("sig"))?;
            let sig = b64::decode(&sig).ok_or(DsseError::BadBase64("sig"))?;
            signatures.push(Signature { keyid: s.keyid.map(|k| k.0.into_owned()), sig });
        }
        Ok(Envelope { payload_type: payload_type.0.into_owned(), payload, signatures })
    }

    /// The bytes the signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Serializes an envelope (used when actlog or a test signs one).
    pub fn to_json(&self) -> String {
        let sigs: Vec<serde_json::Value> = self
            .signatures
            .iter()
            .map(|s| {
                let mut m = serde_json::Map::new();
                if let Some(k) = &s.keyid {
                    m.insert("keyid".into(), k.clone().into());
                }
                m.insert("sig".into(), b64::encode(&s.sig).into());
                serde_json::Value::Object(m)
            })
            .collect();
        serde_json::json!({
            "payloadType": self.payload_type,
            "payload": b64::encode(&self.payload),
            "signatures": sigs,
        })
        .to_string()
    }

    /// Builds an event envelope signed with one ed25519 seed.
    pub fn sign(payload: Vec<u8>, keyid: Option<String>, seed: &[u8; 32]) -> Envelope {
        Envelope::sign_as(EVENT_PAYLOAD_TYPE, payload, keyid, seed)
    }

    /// Builds an envelope of any `payloadType` signed with one ed25519 seed.
    pub fn sign_as(payload_type: &str, payload: Vec<u8>, keyid: Option<String>, seed: &[u8; 32]) -> Envelope {
        let payload_type = payload_type.to_string();
        let sig = crate::sig::sign(seed, &pae(&payload_type, &payload)).to_vec();
        Envelope { payload_type, payload, signatures: vec![Signature { keyid, sig }] }
    }
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_then_parse_round_trips_and_accepts_url_safe_base64() {
        let env = Envelope::sign(b"{\"a\":1}".to_vec(), Some("k".into()), &[7; 32]);
        let parsed = Envelope::parse(env.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, env);
        use base64::Engine;
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Bytes whose standard base64 uses '+' and '/'.
        let payload = vec![0xfbu8, 0xff, 0xbf, b'{', b'}'];
        let url = serde_json::json!({
            "payloadType": EVENT_PAYLOAD_TYPE,
            "payload": url_safe.encode(&payload),
            "signatures": [{"sig": url_safe.encode([0xfbu8; 64])}],
        })
        .to_string();
        assert!(url.contains('-') || url.contains('_'));
        let parsed = Envelope::parse(url.as_bytes()).unwrap();
        assert_eq!(parsed.payload, payload);
        assert_eq!(parsed.signatures[0].sig, vec![0xfbu8; 64]);
    }

    #[test]
    fn escaped_json_strings_parse_like_plain_ones() {
        // Strings are borrowed from the input unless they hold escapes; both
        // forms must give the same envelope. `\/` is a legal JSON escape of
        // the `/` that standard base64 uses.
        let env = Envelope::sign(vec![0xfb, 0xff, 0xbf, 0x3f], Some("k/1".into()), &[7; 32]);
        let plain = env.to_json();
        assert!(plain.contains('/'), "the test needs a `/` to escape: {plain}");
        let escaped = plain.replace('/', "\\/");
        let a = Envelope::parse(plain.as_bytes()).unwrap();
        let b = Envelope::parse(escaped.as_bytes()).unwrap();
        assert_eq!(a, env);
        assert_eq!(b, env);
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let cases: &[(&str, &str)] = &[
            ("not json", "malformed_envelope"),
            ("[]", "malformed_envelope"),
            (r#"{"payload":"e30=","signatures":[{"sig":"AA=="}]}"#, "malformed_envelope"),
            (
                r#"{"payloadType":"application/json","payload":"e30=","signatures":[{"sig":"AA=="}]}"#,
                "wrong_payload_type",
            ),
            (
                r#"{"payloadType":"application/vnd.actlog.event.v1+json","payload":"%%","signatures":[{"sig":"AA=="}]}"#,
                "bad_base64",
            ),
            (
                r#"{"payloadType":"application/vnd.actlog.event.v1+json","payload":"e30=","signatures":[]}"#,
                "missing_signature",
            ),
            (
                r#"{"payloadType":"application/vnd.actlog.event.v1+json","payload":"e30=","signatures":[{"sig":"!!"}]}"#,
                "bad_base64",
            ),
            (
                r#"{"payloadType":"application/vnd.actlog.event.v1+json","payload":"e30=","signatures":[{"keyid":"x"}]}"#,
                "malformed_envelope",
            ),
            (r#"{"payloadType":5,"payload":"e30=","signatures":[]}"#, "malformed_envelope"),
        ];
        for (input, code) in cases {
            let err = Envelope::parse(input.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{input}: {err}");
        }
    }
}
