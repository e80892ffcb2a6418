//! `actlog verify`: full offline verification of a data directory, an
//! export or evidence bundle (`--bundle`), or a tlog-proof receipt
//! (`--receipt`), with progress.

use std::path::{Path, PathBuf};
use std::time::Instant;

use actlog_store::verify::{VerifyOptions, verify};
use actlog_store::{Options, Store};
use clap::Args;

use crate::util::*;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Verify an export or evidence bundle instead of the data directory.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// A checkpoint (signed note) obtained earlier, which the ledger must still contain.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The ledger verifier key you expect (C2SP form, from `actlog info`);
    /// without it the key stored in the data directory is trusted.
    #[arg(long)]
    pub key: Option<String>,
    /// Worker threads for signature and segment checks (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Structural checks only: leaves, chain, tree, checkpoints, registry,
    /// and segment files against their manifest (rows are not rebuilt).
    #[arg(long)]
    pub no_signatures: bool,
    /// A C2SP tlog-policy file: also check every stored witness cosignature
    /// and that a checkpoint meets the policy's quorum.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Check a C2SP tlog-proof file (from /v1/proofs/inclusion?format=tlog-proof)
    /// offline against --policy instead of a data directory.
    #[arg(long, requires = "policy")]
    pub receipt: Option<PathBuf>,
    /// With --receipt: the envelope its producer kept, which must be the proven leaf's.
    #[arg(long, requires = "receipt")]
    pub envelope: Option<PathBuf>,
    /// Verify an archive (file:///PATH or s3://BUCKET/PREFIX): against --key
    /// when there is no data directory; else against the data directory's
    /// key, and then the data directory, reading the events that left it
    /// (serve --hot-retention) from this archive.
    #[arg(long, conflicts_with_all = ["bundle", "receipt"])]
    pub archive: Option<String>,
    /// With --archive: an S3-compatible server's URL.
    #[arg(long, env = "ACTLOG_ARCHIVE_ENDPOINT", requires = "archive")]
    pub archive_endpoint: Option<String>,
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    /// `--key`, parsed.
    fn expected_key(&self) -> CliResult<Option<actlog_core::note::VerifierKey>> {
        self.key
            .as_deref()
            .map(|k| {
                actlog_core::note::VerifierKey::parse(k)
                    .map_err(|e| usage(format!("--key is not a C2SP verifier key: {e}")))
            })
            .transpose()
    }

    /// The note `--checkpoint` names.
    fn trusted_checkpoint(&self) -> CliResult<Option<String>> {
        self.checkpoint
            .as_deref()
            .map(|p| std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display()))))
            .transpose()
    }
}

/// `verify --receipt FILE --policy FILE [--envelope FILE]`: no data
/// directory; the log signature, the quorum, the audit path, and the envelope.
fn receipt(path: &Path, args: &VerifyArgs) -> CliResult {
    let policy = read_policy("--policy", args.policy.as_deref().expect("clap requires --policy"))?;
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("--receipt {}: {e}", path.display())))?;
    let envelope = match &args.envelope {
        Some(e) => Some(std::fs::read(e).map_err(|err| usage(format!("--envelope {}: {err}", e.display())))?),
        None => None,
    };
    let checked = actlog_core::tlog_proof::TlogProof::parse(&text)
        .and_then(|p| actlog_core::tlog_proof::check(&p, &policy, envelope.as_deref()));
    match checked {
        Ok(p) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "origin": p.origin, "tree_size": p.tree_size, "seq": p.leaf.seq,
                        "event_id": p.leaf.event_id, "witnesses": p.witnesses, "envelope_checked": envelope.is_some(),
                    })
                );
            } else {
                println!(
                    "ok: seq {} (event {}) is in {} at tree size {}, cosigned by {}{}",
                    p.leaf.seq,
                    p.leaf.event_id,
                    p.origin,
                    p.tree_size,
                    if p.witnesses.is_empty() {
                        "no witness (the policy needs none)".into()
                    } else {
                        p.witnesses.join(", ")
                    },
                    if envelope.is_some() { "; the envelope is the proven leaf's" } else { "" }
                );
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                println!("{}", serde_json::json!({"ok": false, "reason": e}));
            }
            Err(refused(format!("verification FAILED: {e}")))
        }
    }
}

/// `verify --archive URL --key VKEY [--checkpoint FILE]`: every archived
/// object against its signed range record, every range as a bundle, the
/// links between ranges and the tiles; no data directory.
fn archive(url: &str, args: &VerifyArgs, ledger_key: Option<actlog_core::note::VerifierKey>) -> CliResult {
    let key = match (args.expected_key()?, ledger_key) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(usage("--archive without a data directory needs --key (the ledger verifier key)"));
        }
    };
    let archive =
        actlog_archive::Archive::open(url, args.archive_endpoint.as_deref()).map_err(|e| usage(e.to_string()))?;
    let bar = bar_of(0, "verify archive", "ranges");
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let opts = actlog_archive::VerifyOptions {
        key,
        checkpoint: args.trusted_checkpoint()?,
        jobs: args.jobs,
        progress: Some(&progress),
    };
    let started = Instant::now();
    let result = query_runtime()?.block_on(actlog_archive::verify_archive(&archive, &opts));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(r) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "ranges": r.ranges, "end_seq": r.end_seq, "tree_size": r.tree_size,
                        "objects": r.objects, "bytes": r.bytes, "signatures": r.signatures, "rows": r.rows,
                        "tiles": r.tiles, "unlisted": r.unlisted, "trusted": r.trusted,
                        "seconds": started.elapsed().as_secs_f64(),
                    })
                );
            } else {
                println!(
                    "ok: {} ranges, seqs [0, {}), {} objects ({} bytes), {} signatures, {} rows, {} tiles checked in {:.1}s",
                    r.ranges,
                    r.end_seq,
                    r.objects,
                    r.bytes,
                    r.signatures,
                    r.rows,
                    r.tiles,
                    started.elapsed().as_secs_f64()
                );
                if r.unlisted > 0 {
                    println!("note: {} objects no range lists (left by uploads cut short; safe to delete)", r.unlisted);
                }
                if let Some(t) = &r.trusted {
                    println!("checkpoint: {t}");
                }
            }
            Ok(())
        }
        Err(f) => {
            if args.json {
                println!("{}", serde_json::json!({"ok": false, "object": f.key, "reason": f.reason}));
            }
            Err(refused(format!("verification FAILED: {f}")))
        }
    }
}

pub fn run(data: &Path, args: VerifyArgs) -> CliResult {
    if let Some(r) = &args.receipt {
        return receipt(r, &args);
    }
    if let Some(url) = &args.archive
        && !actlog_store::is_initialized(data)
    {
        return archive(url, &args, None);
    }
    if let Some(dir) = &args.bundle {
        return bundle(dir, &args);
    }
    let trusted = args.trusted_checkpoint()?;
    let expected_key = args.expected_key()?;
    let policy = match &args.policy {
        Some(p) => Some(read_policy("--policy", p)?),
        None => None,
    };
    let store = Store::open(data, Options { read_only: true, ..Options::default() })?;
    if let Some(url) = &args.archive {
        archive(url, &args, Some(store.verifier_key().clone()))?;
    }
    attach_archive(&store, args.archive.as_deref().map(|u| (u, args.archive_endpoint.as_deref())))?;
    let bar = bar(store.head().tree_size, "verify");
    let progress = |done: u64, _total: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let started = Instant::now();
    let result = verify(
        &store,
        &VerifyOptions {
            signatures: !args.no_signatures,
            jobs: args.jobs,
            trusted_checkpoint: trusted,
            progress: Some(&progress),
            expected_key,
            policy,
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // Segments are derived data: checked only once the ledger itself is intact.
    let segments = match &result {
        Ok(_) => {
            // A manifest that does not load is reported by `verify` itself.
            let rows: u64 =
                actlog_query::segments::load(&store, data).map(|segs| segs.iter().map(|s| s.rows).sum()).unwrap_or(0);
            let bar = if rows > 0 { bar_of(rows, "segments", "events") } else { None };
            let progress = |n| {
                if let Some(b) = &bar {
                    b.inc(n);
                }
            };
            // The quick mode checks segment files against the manifest; the
            // full mode also rebuilds their rows from the ledger.
            // Retired segments' archived files are compared too, with the archive.
            let check = actlog_query::segments::SegmentCheck {
                rows: !args.no_signatures,
                jobs: args.jobs,
                archive: archive_reader(
                    &store,
                    args.archive.as_deref().map(|u| (u, args.archive_endpoint.as_deref())),
                )?,
                ..Default::default()
            };
            let checked = actlog_query::segments::check(&store, data, &check, progress)
                .map_err(|e| refused(format!("verification FAILED: segments: {e}")))?;
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            Some(checked)
        }
        Err(_) => None,
    };
    let secs = started.elapsed().as_secs_f64();
    if let Some(Err(f)) = &segments {
        if args.json {
            println!("{}", serde_json::json!({"ok": false, "seq": f.first_seq, "reason": f.reason, "segments": false}));
        }
        return Err(refused(format!(
            "verification FAILED: the ledger is intact, but the segment from seq {} does not match it: {}; \
             segments are derived data: stop the server, delete {}, and restart it to rebuild them",
            f.first_seq,
            f.reason,
            actlog_query::segments::dir(data).display()
        )));
    }
    let segments_checked = segments.and_then(|s| s.ok()).unwrap_or(0);
    match result {
        Ok(r) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "tree_size": r.tree_size, "root_hash": actlog_core::b64::encode(r.root),
                        "checkpoints": r.checkpoints, "signatures": r.signatures, "segments": segments_checked, "seconds": secs,
                        "cosignatures": r.cosignatures, "witnessed_tree_size": r.witnessed_tree_size,
                    })
                );
            } else {
                println!(
                    "ok: {} leaves, {} checkpoints, {} signatures, {} segments verified in {secs:.2}s ({:.0} leaves/s); root {}",
                    r.tree_size,
                    r.checkpoints,
                    r.signatures,
                    segments_checked,
                    r.tree_size as f64 / secs.max(1e-9),
                    actlog_core::b64::encode(r.root)
                );
                if args.policy.is_some() {
                    println!(
                        "ok: {} witness cosignatures verified; the latest checkpoint meeting the quorum has {} leaves",
                        r.cosignatures,
                        r.witnessed_tree_size.map(|s| s.to_string()).unwrap_or_else(|| "no".into())
                    );
                }
            }
            Ok(())
        }
        Err(f) => {
            if args.json {
                println!("{}", serde_json::json!({"ok": false, "seq": f.seq, "reason": f.reason}));
            }
            Err(refused(format!("verification FAILED: {f}")))
        }
    }
}

/// `actlog verify --bundle DIR`.
fn bundle(dir: &Path, args: &VerifyArgs) -> CliResult {
    if args.no_signatures {
        return Err(usage("--no-signatures applies to a data directory; a bundle is always checked in full"));
    }
    let expected_key = args.expected_key()?;
    let trusted_checkpoint = args.trusted_checkpoint()?;
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let policy = args.policy.as_deref().map(|p| read_policy("--policy", p)).transpose()?;
    let progress_bar = std::sync::OnceLock::new();
    let progress = |done: u64, total: u64| {
        if let Some(b) = progress_bar.get_or_init(|| bar(total, "verify")) {
            b.set_position(done);
        }
    };
    let started = Instant::now();
    let result = actlog_export::verify(
        dir,
        &actlog_export::BundleOptions {
            expected_key,
            trusted_checkpoint,
            jobs: args.jobs,
            progress: Some(&progress),
            policy: policy.as_ref(),
        },
    );
    if let Some(Some(b)) = progress_bar.get() {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(r) => {
            let m = &r.manifest;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "bundle": true, "events": m.events, "rows": r.rows, "leaves": r.leaves,
                        "signatures": r.signatures, "files": m.files.len(), "tree_size": m.tree_size,
                        "root_hash": m.root_hash, "verifier_key": m.verifier_key, "key_pinned": r.key_pinned,
                        "trusted_checkpoint": r.trusted, "witnesses": r.witnesses, "seconds": secs,
                    })
                );
            } else {
                println!(
                    "ok: bundle of {} events ({} rows in {} files, {} leaves, {} signatures) verified in {secs:.2}s \
                     against the checkpoint at tree size {}, root {}",
                    m.events,
                    r.rows,
                    m.files.len(),
                    r.leaves,
                    r.signatures,
                    m.tree_size,
                    m.root_hash
                );
                if !r.key_pinned {
                    eprintln!(
                        "note: the ledger key was taken from the bundle ({}); pass --key with the key you trust to pin it",
                        m.verifier_key
                    );
                }
                if let Some(t) = &r.trusted {
                    eprintln!("note: {t}");
                }
                if let Some(w) = &r.witnesses {
                    println!(
                        "ok: the checkpoint meets the witness policy, cosigned by {}",
                        if w.is_empty() { "no witness (the policy needs none)".to_string() } else { w.join(", ") }
                    );
                }
            }
            Ok(())
        }
        Err(f) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "bundle": true, "file": f.file, "seq": f.seq, "reason": f.reason})
                );
            }
            Err(refused(format!("verification FAILED: {f}")))
        }
    }
}
