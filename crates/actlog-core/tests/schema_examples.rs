//! The Rust validator agrees with `schema/event.v1.schema.json` on every
//! example: valid examples pass, and each invalid case is refused at exactly
//! the JSON Pointer the case names (`tests/schema_check.py` checks the same
//! cases against the JSON Schema itself).

use actlog_core::event;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/examples");

#[test]
fn valid_examples_pass() {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("{EXAMPLES}/valid")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = event::validate(&bytes) {
            panic!("{} should be valid: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 8, "at least 8 valid examples, found {n}");
}

#[test]
fn invalid_examples_fail_at_the_named_path() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{EXAMPLES}/invalid.json")).unwrap()).unwrap();
    assert!(cases.len() >= 25);
    let mut wrong = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let want = case["path"].as_str().unwrap();
        let bytes = serde_json::to_vec(&case["event"]).unwrap();
        match event::validate(&bytes) {
            Ok(_) => wrong.push(format!("{name}: accepted, expected an error at {want}")),
            Err(e) if e.path != want => {
                wrong.push(format!("{name}: error at {} ({}), expected {want}", e.path, e.message))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{} cases disagree:\n{}", wrong.len(), wrong.join("\n"));
}
