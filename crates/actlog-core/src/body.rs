//! Request bodies as they arrive over HTTP: bounded gunzip, JSON nesting
//! depth, and splitting a batch into its items exactly as received.
//!
//! Pure functions over untrusted bytes, shared by the server and the fuzz
//! targets (`fuzz/`). Every refusal names its limit or what is malformed.

use std::io::Read;

use serde_json::value::RawValue;

/// Why a body was refused: an HTTP status, a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// 400 (malformed), 413 (over a size limit) or 422 (too deep).
    pub status: u16,
    /// The stable error code (`malformed_gzip`, `json_too_deep`, ...).
    pub code: &'static str,
    /// What is wrong and which limit, for the caller.
    pub message: String,
}

impl BodyError {
    fn new(status: u16, code: &'static str, message: String) -> BodyError {
        BodyError { status, code, message }
    }
}

/// Inflates a gzip body (one or more members) to at most `max` bytes.
/// Reading at most `max + 1` bytes refuses a gzip bomb without inflating it.
pub fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max));
    let read = flate2::read::MultiGzDecoder::new(bytes).take(max as u64 + 1).read_to_end(&mut out);
    match read {
        Err(e) => Err(BodyError::new(400, "malformed_gzip", format!("the gzip body does not decompress: {e}"))),
        Ok(n) if n > max => Err(BodyError::new(
            413,
            "decompressed_too_large",
            format!("the body decompresses beyond decompressed_bytes_max ({max} bytes)"),
        )),
        Ok(_) => Ok(out),
    }
}

/// Nesting depth of a JSON text, counted outside strings. Cheap, and runs
/// before the parser so deep input never reaches recursion. Strings (most of
/// an envelope: its base64 payload) are skipped with `memchr` rather than
/// walked byte by byte.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                // Find the closing quote; a backslash escapes the next byte.
                i += 1;
                loop {
                    let Some(rest) = bytes.get(i..) else { return max };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        // An unterminated string: nothing after it nests.
                        None => return max,
                        Some(j) if rest[j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// How a batch body holds its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One JSON array.
    Array,
    /// One JSON text per line (blank lines skipped, `\r\n` allowed).
    Ndjson,
}

/// The limits a batch body is split under.
#[derive(Debug, Clone, Copy)]
pub struct SplitLimits {
    /// `json_depth_max`: nesting of one item (the array adds one level).
    pub json_depth_max: usize,
    /// `batch_envelopes_max`: items in one batch.
    pub batch_items_max: usize,
    /// An empty array is a batch of nothing rather than a refusal (OPA's
    /// upload protocol).
    pub empty_batch_ok: bool,
}

/// Splits a batch body into its items' bytes, exactly as received. `what`
/// names the items in messages ("envelopes", "OPA decision events").
pub fn split(body: &[u8], shape: Shape, limits: &SplitLimits, what: &str) -> Result<Vec<Vec<u8>>, BodyError> {
    if !limits.empty_batch_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::new(400, "empty_body", format!("the body is empty; send at least one of the {what}")));
    }
    if json_depth(body) > limits.json_depth_max + 1 {
        return Err(BodyError::new(
            422,
            "json_too_deep",
            format!("the JSON nests deeper than json_depth_max ({})", limits.json_depth_max),
        ));
    }
    let items: Vec<Vec<u8>> = match shape {
        Shape::Array => {
            let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                BodyError::new(400, "malformed_json", format!("the body is not a JSON array of {what}: {e}"))
            })?;
            raws.into_iter().map(|r| r.get().as_bytes().to_vec()).collect()
        }
        Shape::Ndjson => body
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect(),
    };
    if items.is_empty() && !limits.empty_batch_ok {
        return Err(BodyError::new(400, "empty_batch", format!("the batch holds no {what}")));
    }
    if items.len() > limits.batch_items_max {
        return Err(BodyError::new(
            413,
            "batch_too_large",
            format!("{} {what} exceed batch_envelopes_max ({})", items.len(), limits.batch_items_max),
        ));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(json_depth(br#"[{"a":"[[[{{{"}]"#), 2);
        assert_eq!(json_depth(br#"{"a":"\"[","b":[[1]]}"#), 3);
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(br#"["\\",[["#), 3, "an escaped backslash ends before the quote");
        assert_eq!(json_depth(b"[\"abc\\"), 1, "a backslash as the last byte");
        assert_eq!(json_depth(b"[\"[["), 1, "an unterminated string");
    }

    /// The byte-by-byte scanner `json_depth` replaced, kept as the reference.
    fn json_depth_reference(bytes: &[u8]) -> usize {
        let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
        for &b in bytes {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        max
    }

    #[test]
    fn depth_agrees_with_the_byte_by_byte_reference() {
        // Random texts over the bytes that matter, from a fixed-seed LCG.
        let alphabet = b"[]{}\"\\a";
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in 0..20_000 {
            let len = n % 48;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(x >> 33) as usize % alphabet.len()]
                })
                .collect();
            assert_eq!(json_depth(&text), json_depth_reference(&text), "{:?}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn gzip_bombs_are_refused_at_the_limit() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 4 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 16 << 10);
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap_err().code, "decompressed_too_large");
        assert_eq!(gunzip(&bomb, 8 << 20).unwrap().len(), 4 << 20);
        assert_eq!(gunzip(b"not gzip", 1 << 20).unwrap_err().code, "malformed_gzip");
    }

    #[test]
    fn batches_split_into_items_as_received_under_their_limits() {
        let l = SplitLimits { json_depth_max: 4, batch_items_max: 2, empty_batch_ok: false };
        assert_eq!(
            split(b"[ {\"a\": 1} , [2]]", Shape::Array, &l, "items").unwrap(),
            vec![b"{\"a\": 1}".to_vec(), b"[2]".to_vec()]
        );
        assert_eq!(
            split(b"{\"a\":1}\r\n\n  \n[2]\n", Shape::Ndjson, &l, "items").unwrap(),
            vec![b"{\"a\":1}".to_vec(), b"[2]".to_vec()]
        );
        let code = |body: &[u8], shape| split(body, shape, &l, "items").unwrap_err().code;
        assert_eq!(code(b" \n", Shape::Ndjson), "empty_body");
        assert_eq!(code(b"[]", Shape::Array), "empty_batch");
        assert_eq!(code(b"[1,2,3]", Shape::Array), "batch_too_large");
        assert_eq!(code(b"1\n2\n3", Shape::Ndjson), "batch_too_large");
        assert_eq!(code(b"[[[[[[1]]]]]]", Shape::Array), "json_too_deep");
        assert_eq!(code(b"{\"a\":1}", Shape::Array), "malformed_json");
        let opa = SplitLimits { empty_batch_ok: true, ..l };
        assert_eq!(split(b"[]", Shape::Array, &opa, "items").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split(b" ", Shape::Array, &opa, "items").unwrap_err().code, "malformed_json");
    }
}
