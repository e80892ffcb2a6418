#!/usr/bin/env python3
"""Prints the criterion results of `benches/ledger.rs` as rates and as
ratios to the physical limit measured in the same run.

    cargo bench -p actlog-benches --bench ledger && python3 tools/bench_report.py
"""
import json
import os
import sys

root = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")


def rate(group, name):
    """Elements per second from criterion's mean estimate and throughput."""
    base = os.path.join(root, group, name, "new")
    try:
        est = json.load(open(os.path.join(base, "estimates.json")))
        bench = json.load(open(os.path.join(base, "benchmark.json")))
    except FileNotFoundError:
        return None
    elements = (bench.get("throughput") or {}).get("Elements", 1)
    return elements / (est["mean"]["point_estimate"] / 1e9)


def main():
    single = rate("limit", "dalek_verify_single")
    batch1 = rate("limit", "dalek_verify_batch_1024")
    batch2 = rate("limit", "dalek_verify_batch_1024_2cores")
    if not batch2:
        sys.exit(f"bench_report: no results under {root}; run cargo bench first")
    rows = [
        ("ed25519-dalek verify, single (1 core)", single, None),
        ("ed25519-dalek verify, batch 1024 (1 core)", batch1, None),
        ("ed25519-dalek verify, batch 1024 (2 cores) = the limit", batch2, None),
        ("actlog signature rule, single", rate("limit", "actlog_verify_single"), single),
        ("actlog signature rule, batch 1024", rate("limit", "actlog_verify_batch_1024"), batch1),
        ("blake3 chain, 360-byte leaves", rate("limit", "blake3_chain_360B_1024"), None),
    ]
    for b in (1, 64, 1024):
        rows.append((f"check + append, sync, batch {b}", rate("ingest", f"check_and_append_sync_batch_{b}"), batch2))
        rows.append((f"append only (pre-checked), sync, batch {b}", rate("ingest", f"append_only_sync_batch_{b}"), None))
    rows.append(("verify with signatures (20k events)", rate("verify", "with_signatures_20k"), batch2))
    rows.append(("verify structural only (20k events)", rate("verify", "structural_20k"), None))
    for d in sorted(os.listdir(os.path.join(root, "proof"))) if os.path.isdir(os.path.join(root, "proof")) else []:
        r = rate("proof", d)
        if r:
            rows.append((f"proof: {d.replace('_', ' ')} (µs each: {1e6 / r:.1f})", r, None))
    print("| measurement | per second | ratio to the limit |")
    print("| --- | ---: | ---: |")
    for name, r, ref in rows:
        if r is None:
            continue
        ratio = f"{r / ref:.2f}" if ref else ""
        print(f"| {name} | {r:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
