//! RFC 8785 JSON Canonicalization Scheme (JCS): the bytes of every JSON
//! payload the ledger writes itself (its `ledger.*` records and mapped OPA
//! events). Canonical bytes are a pure function of the JSON value, whatever
//! serde_json's map order or float printing, so the same value always
//! hashes the same.
//!
//! Objects print with their members sorted by the UTF-16 code units of
//! their names; numbers print as ECMAScript's `Number.prototype.toString`
//! does; strings escape only `"`, `\` and control characters (as
//! `\b \t \n \f \r` or `\u00xx`); nothing else is escaped and there is no
//! whitespace.
//!
//! One deliberate exception: an integer that serde_json holds exactly
//! (`i64`/`u64`) prints with all its digits. RFC 8785 reads every number as
//! a double, so it would round one beyond 2^53 (18446744073709551615 would
//! print as 18446744073709552000). An audit record keeps the value it was
//! given; for integers within ±2^53, the only ones a double holds exactly,
//! the two agree.

use std::fmt::Write;

use serde_json::Value;

/// The canonical (RFC 8785) text of `v`.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// The canonical (RFC 8785) bytes of `v`.
pub fn to_vec(v: &Value) -> Vec<u8> {
    to_string(v).into_bytes()
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write!(out, "{i}").expect("writing to a String");
            } else if let Some(u) = n.as_u64() {
                write!(out, "{u}").expect("writing to a String");
            } else {
                write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(Vec<u16>, &String, &Value)> =
                map.iter().map(|(k, v)| (k.encode_utf16().collect(), k, v)).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (_, k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a JSON string, escaped as RFC 8785 requires and no more.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("writing to a String"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript `Number.prototype.toString` of a finite double (JSON has no
/// other): the shortest digits that round-trip, in plain or exponent form
/// by the magnitude's decimal exponent.
fn write_f64(out: &mut String, x: f64) {
    if x == 0.0 || !x.is_finite() {
        // -0 prints as 0; JSON values are always finite.
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    // The value is 0.d1d2..dk × 10^n.
    let n = exp.parse::<i32>().expect("`{:e}` exponent is an integer") + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs()).expect("writing to a String");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(x: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, x);
        s
    }

    /// The number examples of RFC 8785 section 3.2.2.3 and appendix B
    /// (written with the RFC's digits, more than a double holds).
    #[test]
    #[allow(clippy::excessive_precision)]
    fn numbers_print_as_ecmascript() {
        for (x, want) in [
            (333333333.33333329, "333333333.3333333"),
            (1e30, "1e+30"),
            (4.50, "4.5"),
            (2e-3, "0.002"),
            (0.000000000000000000000000001, "1e-27"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (123456789012345680000.0, "123456789012345680000"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (0.1, "0.1"),
            (100.25, "100.25"),
        ] {
            assert_eq!(num(x), want, "{x:e}");
        }
        assert_eq!(to_string(&json!(-7)), "-7");
        // The documented exception: exact integers keep every digit.
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709551615");
    }

    /// RFC 8785 section 3.2.3: members sorted by UTF-16 code units (here a
    /// character above U+FFFF sorts before U+FB33, unlike UTF-8 order).
    #[test]
    fn members_sort_by_utf16_and_strings_escape_only_what_they_must() {
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        assert_eq!(
            to_string(&v),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
             \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        assert_eq!(
            to_string(&json!(["\u{1}\u{1f}/\u{7f}\u{2028}", "\"\\\u{8}\t\n\u{c}\r"])),
            "[\"\\u0001\\u001f/\u{7f}\u{2028}\",\"\\\"\\\\\\b\\t\\n\\f\\r\"]"
        );
        assert_eq!(
            to_string(&json!({"a": [1, {"c": null, "b": true}], "": false})),
            r#"{"":false,"a":[1,{"b":true,"c":null}]}"#
        );
    }

    /// For the values the ledger writes (integers, strings, sorted maps),
    /// canonical text is what serde_json printed before: stored records keep
    /// their bytes.
    #[test]
    fn integer_and_string_values_print_as_serde_json_did() {
        let v =
            json!({"spec_version": "1", "ledger": {"name": "k\u{e9}y\n", "seq": 12, "neg": -3}, "ok": [true, null]});
        assert_eq!(to_string(&v), v.to_string());
    }
}
