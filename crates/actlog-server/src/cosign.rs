//! The log side of witnessing (contract §11, `serve --witness-policy`):
//! each new checkpoint goes to every witness of the policy, the
//! cosignatures that come back are verified and stored beside it, and a
//! checkpoint is published (at `/tlog/checkpoint`, in witnessed receipts)
//! once they meet the quorum.
//!
//! Appends never wait for any of this: witnesses are called from their own
//! task, each call is bounded by `witness_timeout_ms`, and a witness that
//! fails is retried with exponential backoff. A witness's reply is
//! untrusted: only a cosignature that verifies with the policy's key for it
//! is stored or counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actlog_core::witness::{self, AddCheckpoint, Policy, PolicyWitness, SigLine};
use actlog_store::Store;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Retries of one submission after a 409 that names another size.
const CONFLICT_RETRIES_MAX: usize = 3;
/// The longest pause before retrying a failing witness.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The first pause after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// How often the submitter looks for a new checkpoint.
const POLL: Duration = Duration::from_millis(20);
/// Checkpoint sizes whose cosignatures are kept while they wait for a quorum.
const PENDING_SIZES_MAX: usize = 64;
/// The largest witness reply read.
const REPLY_BYTES_MAX: u64 = 64 * 1024;

/// What `/v1/log` shows of one witness.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WitnessStatus {
    /// The policy's name for it.
    pub name: String,
    /// The largest tree size it has cosigned for this ledger, as far as we know.
    pub size: Option<u64>,
    /// When we last stored a cosignature from it (RFC 3339).
    pub cosigned_at: Option<String>,
    /// Its last failure, cleared by a success.
    pub last_error: Option<String>,
}

struct Peer {
    witness: PolicyWitness,
    status: WitnessStatus,
    /// Not called again before this instant.
    retry_at: Instant,
    backoff: Duration,
}

/// Witnessing state shared with the handlers.
pub struct Witnessing {
    policy: Policy,
    /// The latest checkpoint meeting the quorum: (size, note with cosignatures).
    published: watch::Sender<Option<(u64, String)>>,
    peers: Mutex<Vec<Peer>>,
    /// Valid cosignatures by tree size, for sizes not yet published.
    pending: Mutex<BTreeMap<u64, Vec<SigLine>>>,
}

impl std::fmt::Debug for Witnessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessing").field("quorum", &self.policy.quorum).finish_non_exhaustive()
    }
}

/// The note with cosignature lines appended.
fn with_cosignatures(note: &str, lines: &[SigLine]) -> String {
    let mut n = note.to_string();
    for l in lines {
        n.push_str(&l.to_line());
    }
    n
}

impl Witnessing {
    /// Loads stored cosignatures and publishes the largest checkpoint that
    /// meets the quorum. The policy must list this ledger's key.
    pub fn open(store: &Store, policy: Policy) -> Result<Witnessing, String> {
        let own = store.verifier_key();
        if !policy.lists_log(own) {
            return Err(format!("the witness policy does not list this ledger; add the line `log {}`", own.to_text()));
        }
        let notes: BTreeMap<u64, String> = store.checkpoints().map_err(|e| e.to_string())?.into_iter().collect();
        let stored = store.cosignatures().map_err(|e| e.to_string())?;
        let mut published = None;
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for (size, lines) in &stored {
            let Some(note) = notes.get(size) else { continue };
            let Ok((text, _)) = witness::split_note(note) else { continue };
            let by = policy.cosigners(text, lines);
            for name in by.keys() {
                sizes.insert(name.clone(), *size);
            }
            if policy.quorum_met(&by.keys().cloned().collect()) {
                published = Some((*size, with_cosignatures(note, lines)));
            }
        }
        if policy.quorum == "none" {
            published = store.latest_checkpoint().or(published);
        }
        let now = Instant::now();
        let peers = policy
            .witnesses
            .iter()
            .map(|w| Peer {
                witness: w.clone(),
                status: WitnessStatus {
                    name: w.name.clone(),
                    size: sizes.get(&w.name).copied(),
                    last_error: w.url.is_none().then(|| "the policy gives no URL for this witness".into()),
                    ..Default::default()
                },
                retry_at: now,
                backoff: BACKOFF_MIN,
            })
            .collect();
        Ok(Witnessing {
            policy,
            published: watch::channel(published).0,
            peers: Mutex::new(peers),
            pending: Mutex::new(BTreeMap::new()),
        })
    }

    /// The latest checkpoint that meets the quorum, with its cosignatures.
    pub fn published(&self) -> Option<(u64, String)> {
        self.published.borrow().clone()
    }

    /// Waits until a checkpoint of at least `tree_size` leaves is published.
    pub async fn wait_published(&self, tree_size: u64, timeout: Duration) -> Option<(u64, String)> {
        let mut rx = self.published.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|p| p.as_ref().is_some_and(|(s, _)| *s >= tree_size)));
        match waited.await {
            Ok(Ok(p)) => p.clone(),
            _ => None,
        }
    }

    /// Every witness's status.
    /// The witness policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn status(&self) -> Vec<WitnessStatus> {
        self.peers.lock().expect("peers lock").iter().map(|p| p.status.clone()).collect()
    }

    /// Records valid cosignatures of the checkpoint `(size, note)`; stores
    /// them and publishes the checkpoint when they meet the quorum.
    fn record(&self, store: &Store, size: u64, note: &str, lines: Vec<SigLine>) -> Result<(), String> {
        store.put_cosignatures(size, &lines).map_err(|e| format!("storing cosignatures: {e}"))?;
        let mut pending = self.pending.lock().expect("pending lock");
        // Only recent sizes can still be published; a witness that stays
        // down must not make this grow.
        while pending.len() >= PENDING_SIZES_MAX {
            pending.pop_first();
        }
        let all = pending.entry(size).or_default();
        for l in lines {
            if !all.contains(&l) {
                all.push(l);
            }
        }
        let (text, _) = witness::split_note(note).map_err(|e| e.to_string())?;
        let by: BTreeSet<String> = self.policy.cosigners(text, all).into_keys().collect();
        if self.policy.quorum_met(&by) {
            let lines = all.clone();
            self.published.send_if_modified(|p| {
                if p.as_ref().is_none_or(|(s, _)| *s < size) {
                    *p = Some((size, with_cosignatures(note, &lines)));
                    true
                } else {
                    false
                }
            });
            pending.retain(|s, _| *s > size);
        }
        Ok(())
    }
}

/// Runs witnessing until `stop`: every new checkpoint goes to every witness
/// that is not backing off, in parallel, and each reply is handled as it
/// arrives.
pub async fn run(
    w: Arc<Witnessing>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into();
    // Each witness has at most one call in flight.
    let busy: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // One read of the latest checkpoint per turn, for both uses below.
        let latest = store.latest_checkpoint();
        if w.policy.quorum == "none"
            && let Some(cp) = &latest
        {
            w.published.send_if_modified(|p| {
                let newer = p.as_ref().is_none_or(|(s, _)| *s < cp.0);
                if newer {
                    *p = Some(cp.clone());
                }
                newer
            });
        }
        if let Some((size, note)) = latest {
            let now = Instant::now();
            let due: Vec<PolicyWitness> = w
                .peers
                .lock()
                .expect("peers lock")
                .iter()
                .filter(|p| p.witness.url.is_some() && p.retry_at <= now && p.status.size.is_none_or(|s| s < size))
                .filter(|p| sent.get(&p.witness.name).is_none_or(|s| *s < size))
                .map(|p| p.witness.clone())
                .collect();
            for peer in due {
                if !busy.lock().expect("busy lock").insert(peer.name.clone()) {
                    continue;
                }
                sent.insert(peer.name.clone(), size);
                let (w, store, metrics, agent, busy, note) = (
                    Arc::clone(&w),
                    Arc::clone(&store),
                    Arc::clone(&metrics),
                    agent.clone(),
                    Arc::clone(&busy),
                    note.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let outcome = submit(&w, &store, &agent, &peer, size, &note);
                    metrics.witness_submission(&peer.name, outcome.as_ref().map_or_else(|(o, _)| *o, |_| "cosigned"));
                    let mut peers = w.peers.lock().expect("peers lock");
                    if let Some(p) = peers.iter_mut().find(|p| p.witness.name == peer.name) {
                        match outcome {
                            Ok(()) => {
                                p.status.size = Some(p.status.size.map_or(size, |s| s.max(size)));
                                p.status.cosigned_at =
                                    Some(actlog_core::time::format_rfc3339_utc(actlog_store::now_ns() as i64));
                                p.status.last_error = None;
                                p.backoff = BACKOFF_MIN;
                            }
                            Err((_, e)) => {
                                p.status.last_error = Some(e);
                                p.retry_at = Instant::now() + p.backoff;
                                p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
                            }
                        }
                    }
                    drop(peers);
                    busy.lock().expect("busy lock").remove(&peer.name);
                });
            }
            // A witness that failed is asked again once its backoff ends.
            let failed: Vec<String> = w
                .peers
                .lock()
                .expect("peers lock")
                .iter()
                .filter(|p| p.status.last_error.is_some() && p.retry_at <= Instant::now())
                .map(|p| p.witness.name.clone())
                .collect();
            for name in failed {
                if !busy.lock().expect("busy lock").contains(&name) {
                    sent.remove(&name);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One submission of `(size, note)` to one witness, following 409s to the
/// size the witness reports. Err holds (metric outcome, message).
fn submit(
    w: &Witnessing,
    store: &Store,
    agent: &ureq::Agent,
    peer: &PolicyWitness,
    size: u64,
    note: &str,
) -> Result<(), (&'static str, String)> {
    let url =
        format!("{}/add-checkpoint", peer.url.as_deref().expect("due witnesses have a URL").trim_end_matches('/'));
    let mut old = w
        .peers
        .lock()
        .expect("peers lock")
        .iter()
        .find(|p| p.witness.name == peer.name)
        .and_then(|p| p.status.size)
        .unwrap_or(0);
    let (text, _) = witness::split_note(note).map_err(|e| ("error", e.to_string()))?;
    for _ in 0..=CONFLICT_RETRIES_MAX {
        if old > size {
            return Err(("conflict", format!("the witness has cosigned size {old}, beyond this ledger's {size}")));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            store.consistency_proof(old, size).map_err(|e| ("error", format!("consistency proof {old}→{size}: {e}")))?
        };
        let body = AddCheckpoint { old, proof, note: note.to_string() }.to_body();
        let mut resp = match agent.post(&url).header("content-type", "text/plain").send(body) {
            Ok(r) => r,
            Err(e) => return Err(("unreachable", format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let reply = resp
            .body_mut()
            .with_config()
            .limit(REPLY_BYTES_MAX)
            .read_to_string()
            .map_err(|e| ("bad_reply", format!("{url}: reading the reply: {e}")))?;
        match status {
            200 => {
                let lines: Vec<SigLine> = reply
                    .lines()
                    .filter_map(|l| witness::parse_sig_line(l).ok())
                    .filter(|l| peer.key.name == l.name && peer.key.verify(text, &l.blob).is_some())
                    .collect();
                if lines.is_empty() {
                    return Err((
                        "bad_cosignature",
                        format!("{url}: the reply holds no valid cosignature by {}", peer.key.name),
                    ));
                }
                return w.record(store, size, note, lines).map_err(|e| ("error", e));
            }
            409 if ctype.starts_with("text/x.tlog.size") => {
                let theirs: u64 = reply
                    .trim_end_matches('\n')
                    .parse()
                    .map_err(|_| ("bad_reply", format!("{url}: a 409 whose body is not a size")))?;
                if theirs == old {
                    return Err(("bad_reply", format!("{url}: 409 names the size that was sent ({old})")));
                }
                old = theirs;
            }
            s => {
                let first = reply.lines().next().unwrap_or("").chars().take(200).collect::<String>();
                return Err(("refused", format!("{url}: {s} {first}")));
            }
        }
    }
    Err(("conflict", format!("{url}: the witness kept naming other sizes")))
}
