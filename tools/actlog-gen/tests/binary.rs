//! The `actlog-gen` binary, as the console's browser test
//! (`tests/console_e2e.py`) and the benchmarks run it. Being an integration
//! test, this also makes `cargo test --workspace` build the binary, so the
//! test command works on a fresh machine.

use std::process::Command;

use actlog_core::leaf::LeafKind;
use actlog_store::verify::{VerifyOptions, verify};
use actlog_store::{Options, Store};

/// It builds a fresh ledger of the events asked for, which verifies, and
/// the same seed gives the same producer events.
#[test]
fn the_binary_builds_a_ledger_that_verifies_and_repeats_with_its_seed() {
    let ids = |seed: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_actlog-gen"))
            .arg("--data")
            .arg(dir.path())
            .args(["--events", "300", "--seed", seed, "--pdps", "3"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let store = Store::open(dir.path(), Options { read_only: true, ..Options::default() }).unwrap();
        let report = verify(&store, &VerifyOptions::default());
        assert!(report.is_ok(), "{report:?}");
        let mut ids = Vec::new();
        store
            .scan(0, u64::MAX, |ev| {
                if ev.leaf.kind != LeafKind::LedgerSigned {
                    ids.push(ev.leaf.event_id);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(ids.len(), 300);
        ids
    };
    assert_eq!(ids("5"), ids("5"));
    assert_ne!(ids("5"), ids("6"));
}
