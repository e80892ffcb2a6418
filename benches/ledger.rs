//! Ledger benchmarks, each beside the physical limit measured in the same run:
//! - `limit/*`: ed25519-dalek's own single and batch verification, and blake3
//!   chaining of 360-byte leaves, on this machine.
//! - `ingest/*`: check (schema + signatures, both cores) and append with sync
//!   on, at batch sizes 1, 64 and 1024.
//! - `verify/*`: full verification of a 20,000-event ledger, with and
//!   without signatures.
//!
//! `tools/bench_report.py` turns the results into the ratios in
//! `docs/benchmarks.md`.

use std::time::Duration;

use actlog_benches::{PDP, SEED, envelopes};
use actlog_core::dsse::Envelope;
use actlog_core::ingest::{Checked, EnvelopeLimits, Submitter, check_envelopes};
use actlog_core::sig::{self, PublicKey};
use actlog_core::{event, leaf};
use actlog_store::verify::{VerifyOptions, verify};
use actlog_store::{AdminOp, Options, Store};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use rayon::prelude::*;

// The allocator the `actlog` binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("limit");
    let sk = SigningKey::from_bytes(&SEED);
    let vk = sk.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..1024u32).map(|i| format!("message {i} {}", "x".repeat(900)).into_bytes()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| sk.sign(m)).collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("dalek_verify_single", |b| b.iter(|| vk.verify(&msgs[0], &sigs[0]).unwrap()));
    g.throughput(Throughput::Elements(1024));
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    let keys = vec![vk; 1024];
    g.bench_function("dalek_verify_batch_1024", |b| {
        b.iter(|| ed25519_dalek::verify_batch(&refs, &sigs, &keys).unwrap())
    });
    g.bench_function("dalek_verify_batch_1024_2cores", |b| {
        b.iter(|| {
            refs.par_chunks(512)
                .zip(sigs.par_chunks(512))
                .for_each(|(m, s)| ed25519_dalek::verify_batch(m, s, &keys[..m.len()]).unwrap())
        })
    });
    let pk = PublicKey::from_bytes(vk.as_bytes()).unwrap();
    let raw: Vec<[u8; 64]> = sigs.iter().map(|s| s.to_bytes()).collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("actlog_verify_single", |b| b.iter(|| sig::verify(&pk, &msgs[0], &raw[0]).unwrap()));
    g.throughput(Throughput::Elements(1024));
    g.bench_function("actlog_verify_batch_1024", |b| {
        let items: Vec<sig::BatchItem<'_>> = msgs.iter().zip(&raw).map(|(m, s)| (&pk, &m[..], &s[..])).collect();
        b.iter(|| assert!(sig::verify_batch(&items).iter().all(Result::is_ok)))
    });
    let leaves: Vec<[u8; 360]> = (0..1024u32).map(|i| [i as u8; 360]).collect();
    g.bench_function("blake3_chain_360B_1024", |b| {
        b.iter(|| {
            let mut h = [0u8; 32];
            for l in &leaves {
                h = actlog_core::leaf::chain_hash(&h, l);
            }
            h
        })
    });
    g.finish();
}

/// Where one envelope's check time goes, stage by stage, on one core: the
/// parts `check_envelopes` (ingest) and `verify` spend their time on.
fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("parts");
    let envs = envelopes(0, 1024);
    let parsed: Vec<Envelope> = envs.iter().map(|e| Envelope::parse(e).unwrap()).collect();
    let paes: Vec<Vec<u8>> = parsed.iter().map(Envelope::pae).collect();
    g.throughput(Throughput::Elements(1024));
    g.bench_function("envelope_sha256_1024", |b| b.iter(|| envs.iter().map(|e| leaf::sha256(e)[0]).sum::<u8>()));
    g.bench_function("envelope_parse_1024", |b| {
        b.iter(|| envs.iter().map(|e| Envelope::parse(e).unwrap().payload.len()).sum::<usize>())
    });
    g.bench_function("pae_1024", |b| b.iter(|| parsed.iter().map(|e| e.pae().len()).sum::<usize>()));
    g.bench_function("payload_sha256_1024", |b| {
        b.iter(|| parsed.iter().map(|e| leaf::sha256(&e.payload)[0]).sum::<u8>())
    });
    g.bench_function("event_validate_1024", |b| {
        b.iter(|| parsed.iter().map(|e| event::validate(&e.payload).unwrap().fields.event_id.len()).sum::<usize>())
    });
    let pk = PublicKey::from_bytes(&sig::public_key_of(&SEED)).unwrap();
    let items: Vec<sig::BatchItem<'_>> =
        paes.iter().zip(&parsed).map(|(m, e)| (&pk, &m[..], &e.signatures[0].sig[..])).collect();
    g.bench_function("signature_batch_1024", |b| {
        b.iter(|| assert!(sig::verify_batch(&items).iter().all(Result::is_ok)))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let reg = store.registry();
    g.bench_function("check_envelopes_1024", |b| {
        b.iter_batched(
            || envs.clone(),
            |e| check_envelopes(e, &reg, &Submitter::default(), &EnvelopeLimits::default()).len(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn setup(dir: &std::path::Path) -> Store {
    let store = Store::init(dir, [7; 32], Some("bench.example/log".into()), Options::default()).unwrap();
    store
        .admin(AdminOp::AddKey { name: "bench-key".into(), pdp_id: PDP.into(), public_key: sig::public_key_of(&SEED) })
        .unwrap();
    store
}

/// Check on both cores, as the server and `import` do.
fn check_parallel(store: &Store, envs: Vec<Vec<u8>>) -> Vec<Checked> {
    let reg = store.registry();
    let limits = EnvelopeLimits::default();
    let chunk = envs.len().div_ceil(2).max(1);
    envs.par_chunks(chunk)
        .flat_map_iter(|c| {
            check_envelopes(c.to_vec(), &reg, &Submitter::default(), &limits).into_iter().map(|r| r.unwrap())
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for batch in [1u64, 64, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let store = setup(dir.path());
        let mut next = 0u64;
        g.throughput(Throughput::Elements(batch));
        g.bench_function(format!("check_and_append_sync_batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    next += batch;
                    envelopes(next - batch, batch)
                },
                |envs| store.append(check_parallel(&store, envs)).unwrap(),
                BatchSize::PerIteration,
            )
        });
        if batch == 1024 {
            // Check batch N+1 on both cores while the writer commits batch
            // N, as the server (concurrent requests) does.
            g.bench_function(format!("check_and_append_pipelined_sync_batch_{batch}"), |b| {
                b.iter_custom(|iters| {
                    let batches: Vec<Vec<Vec<u8>>> = (0..iters)
                        .map(|_| {
                            next += batch;
                            envelopes(next - batch, batch)
                        })
                        .collect();
                    let start = std::time::Instant::now();
                    std::thread::scope(|s| {
                        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Checked>>(1);
                        let store = &store;
                        s.spawn(move || {
                            for items in rx {
                                store.append(items).unwrap();
                            }
                        });
                        for envs in batches {
                            tx.send(check_parallel(store, envs)).unwrap();
                        }
                    });
                    start.elapsed()
                })
            });
        }
        g.bench_function(format!("append_only_sync_batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    next += batch;
                    check_parallel(&store, envelopes(next - batch, batch))
                },
                |items| store.append(items).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn verify_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let n = 20_000u64;
    for from in (0..n).step_by(1024) {
        store.append(check_parallel(&store, envelopes(from, 1024.min(n - from)))).unwrap();
    }
    store.checkpoint_now().unwrap();
    let size = store.head().tree_size;
    g.throughput(Throughput::Elements(size));
    g.bench_function("with_signatures_20k", |b| b.iter(|| verify(&store, &VerifyOptions::default()).unwrap()));
    g.bench_function("structural_20k", |b| {
        b.iter(|| verify(&store, &VerifyOptions { signatures: false, ..VerifyOptions::default() }).unwrap())
    });
    g.finish();
}

/// Inclusion and consistency proofs for random seqs in a large tree: a tree
/// built here (`ACTLOG_BENCH_PROOF_LEAVES` leaves, default 1,000,000), or an
/// existing data directory opened read-only (`ACTLOG_BENCH_PROOF_DATA`, e.g.
/// the 10,000,000-event ledger of `tools/bench_sql.sh`).
fn proofs(c: &mut Criterion) {
    let (_dir, store) = match std::env::var_os("ACTLOG_BENCH_PROOF_DATA") {
        Some(path) => {
            let opts = Options { read_only: true, ..Options::default() };
            (None, Store::open(std::path::Path::new(&path), opts).unwrap())
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let store = proof_ledger(dir.path());
            (Some(dir), store)
        }
    };
    let size = store.head().tree_size;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut g = c.benchmark_group("proof");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("inclusion_random_seq_{size}"), |b| {
        b.iter(|| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            store.inclusion_proof(rng % size, size).unwrap()
        })
    });
    g.bench_function(format!("consistency_random_{size}"), |b| {
        b.iter(|| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            store.consistency_proof(1 + rng % (size - 1), size).unwrap()
        })
    });
    g.finish();
}

/// A tree of token-authenticated leaves: small OPA decisions, so the
/// fixture builds fast (the proof path does not look at payloads).
fn proof_ledger(dir: &std::path::Path) -> Store {
    let n: u64 = std::env::var("ACTLOG_BENCH_PROOF_LEAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let store = setup(dir);
    let token = actlog_core::leaf::sha256(b"bench-token");
    store
        .admin(AdminOp::CreateToken {
            name: "t".into(),
            role: "ingest".into(),
            pdp_id: None,
            token_sha256: token,
            expires_at_ns: None,
        })
        .unwrap();
    // Real token-authenticated items (OPA decisions through `opa::check`):
    // a `Checked` only comes from core's checks.
    let mapping = actlog_core::opa::OpaMapping::default();
    let opa_token = actlog_core::opa::OpaToken { name: "t", sha256: token, pdp_id: None };
    let mut i = 0u64;
    while store.head().tree_size < n {
        let items: Vec<Checked> = (0..16_384)
            .map(|_| {
                i += 1;
                let raw = format!(
                    r#"{{"decision_id":"p-{i}","labels":{{"id":"opa-1"}},"path":"authz/allow","timestamp":"2026-08-21T10:15:30Z","input":{{"user":"u"}},"result":true}}"#
                );
                actlog_core::opa::check(raw.as_bytes(), &mapping, &opa_token, 1 << 16).expect("a valid OPA decision")
            })
            .collect();
        store.append(items).unwrap();
    }
    store
}

criterion_group!(benches, limit, parts, ingest, verify_bench, proofs);
criterion_main!(benches);
