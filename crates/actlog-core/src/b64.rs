//! Base64 as the formats use it: standard alphabet with padding on output;
//! on input, standard or URL-safe, padded or not (DSSE requires verifiers to
//! accept both alphabets).

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Standard base64 with padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, with or without padding.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|b| b == b'-' || b == b'_') {
        URL_SAFE_LENIENT.decode(text).ok()
    } else {
        STANDARD_LENIENT.decode(text).ok()
    }
}

/// Decodes strict standard base64 with padding (for formats that pin it).
pub fn decode_strict(text: &str) -> Option<Vec<u8>> {
    general_purpose::STANDARD.decode(text).ok()
}
