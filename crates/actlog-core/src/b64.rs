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
///
/// The standard alphabet is tried first: it refuses `-` and `_` at once, so
/// URL-safe text costs one failed attempt and standard text (the usual
/// case) no separate scan. Text that mixes `+`/`/` with `-`/`_` fails both.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT.decode(text).or_else(|_| URL_SAFE_LENIENT.decode(text)).ok()
}

/// Decodes strict standard base64 with padding (for formats that pin it).
pub fn decode_strict(text: &str) -> Option<Vec<u8>> {
    general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_alphabets_with_or_without_padding_and_nothing_mixed() {
        let bytes = [0xfb, 0xff, 0xbf, 0x3e, 0x00];
        let standard = encode(bytes);
        assert_eq!(standard, "+/+/PgA=");
        assert_eq!(decode(&standard).as_deref(), Some(&bytes[..]));
        assert_eq!(decode("+/+/PgA").as_deref(), Some(&bytes[..]), "unpadded standard");
        assert_eq!(decode("-_-_PgA=").as_deref(), Some(&bytes[..]), "URL-safe");
        assert_eq!(decode("-_-_PgA").as_deref(), Some(&bytes[..]), "unpadded URL-safe");
        assert_eq!(decode("+_-/PgA="), None, "mixed alphabets");
        assert_eq!(decode("-/+_PgA="), None, "mixed alphabets, URL-safe first");
        assert_eq!(decode("+/+/Pg!="), None, "a character of neither alphabet");
        assert_eq!(decode(""), Some(Vec::new()));
        assert_eq!(decode_strict("+/+/PgA"), None, "strict needs padding");
    }
}
