//! actlog as a witness (contract §11, C2SP tlog-witness):
//! `POST /tlog-witness/add-checkpoint` for the logs a `--witness-for`
//! policy lists.
//!
//! Per origin it keeps only the size and root it last cosigned, in
//! `witness/state` in the data directory. Checking a request against that
//! state and storing the new state are one step under one lock, and the new
//! state is durable (written, fsynced, renamed, directory fsynced) before
//! the cosignature leaves. So concurrent requests or a SIGKILL at any point
//! can never make it cosign two checkpoints no consistency proof joins.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actlog_core::b64;
use actlog_core::leaf::Hash;
use actlog_core::merkle;
use actlog_core::note::open_note;
use actlog_core::witness::{self, AddCheckpoint, CosignerKey, Policy};
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::AppState;

/// The witness state file, under the data directory.
pub const STATE_FILE: &str = "witness/state";

/// actlog's witness: its key, the logs it witnesses, and what it cosigned.
pub struct Witness {
    key: CosignerKey,
    seed: [u8; 32],
    policy: Policy,
    path: PathBuf,
    /// origin → (size, root) last cosigned.
    state: Mutex<BTreeMap<String, (u64, Hash)>>,
}

/// What the witness answers, as tlog-witness defines it.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature line.
    Cosigned(String),
    /// 409 with `text/x.tlog.size`: the size it last cosigned.
    SizeConflict(u64),
    /// Any other status, with a reason.
    Refused(StatusCode, String),
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("key", &self.key.to_text()).finish_non_exhaustive()
    }
}

impl Witness {
    /// Opens the witness of `data_dir`: its state file is read (a malformed
    /// one is corruption, and refuses the start).
    pub fn open(data_dir: &Path, name: &str, seed: [u8; 32], policy: Policy) -> Result<Witness, String> {
        let key = CosignerKey::from_seed(name, &seed).map_err(|e| format!("witness name `{name}`: {e}"))?;
        if policy.logs.is_empty() {
            return Err("the --witness-for policy lists no `log` to witness".into());
        }
        let path = data_dir.join(STATE_FILE);
        let mut state = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let bad = || format!("{} line {} is corrupt: {line:?}", path.display(), i + 1);
                    let mut w = line.split(' ');
                    let (Some(origin), Some(size), Some(root), None) = (w.next(), w.next(), w.next(), w.next()) else {
                        return Err(bad());
                    };
                    let size: u64 = size.parse().map_err(|_| bad())?;
                    let root: Hash = b64::decode_strict(root).and_then(|r| r.try_into().ok()).ok_or_else(bad)?;
                    state.insert(origin.to_string(), (size, root));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        Ok(Witness { key, seed, policy, path, state: Mutex::new(state) })
    }

    /// The witness's cosigner vkey.
    pub fn vkey(&self) -> String {
        self.key.to_text()
    }

    /// The size last cosigned for each origin.
    pub fn sizes(&self) -> BTreeMap<String, u64> {
        self.state.lock().expect("witness lock").iter().map(|(o, (s, _))| (o.clone(), *s)).collect()
    }

    /// Handles one `add-checkpoint` body, in the order tlog-witness gives.
    pub fn add_checkpoint(&self, body: &[u8], now_secs: u64) -> Answer {
        let refuse = |s: StatusCode, m: String| Answer::Refused(s, m);
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let (text, _) = match witness::split_note(&req.note) {
            Ok(x) => x,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let (origin, size, root) = match witness::parse_checkpoint_text(text) {
            Ok(x) => x,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let Some(log) = self.policy.log(origin) else {
            return refuse(StatusCode::NOT_FOUND, format!("this witness does not witness `{origin}`"));
        };
        if open_note(&req.note, &log.key).is_err() {
            return refuse(StatusCode::FORBIDDEN, format!("no signature of `{origin}`'s key verifies"));
        }
        if req.old > size {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("old {} is larger than the checkpoint's size {size}", req.old),
            );
        }
        let mut state = self.state.lock().expect("witness lock");
        let (last, last_root) = state.get(origin).copied().unwrap_or((0, merkle::empty_root()));
        if req.old != last {
            return Answer::SizeConflict(last);
        }
        let consistent = if req.old == 0 {
            req.proof.is_empty()
        } else if req.old == size {
            if !req.proof.is_empty() {
                false
            } else if root != last_root {
                return refuse(StatusCode::CONFLICT, format!("size {size} was cosigned with another root"));
            } else {
                true
            }
        } else {
            merkle::verify_consistency(req.old, size, &req.proof, &last_root, &root)
        };
        if !consistent {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the proof does not show size {size} consistent with the cosigned size {last}"),
            );
        }
        let mut next = state.clone();
        next.insert(origin.to_string(), (size, root));
        if let Err(e) = persist(&self.path, &next) {
            // Nothing was cosigned; the state on disk is the old or the new
            // one, both of which are consistent with every cosignature sent.
            return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the witness cannot store its state: {e}"));
        }
        *state = next;
        Answer::Cosigned(witness::cosign(text, &self.key.name, &self.seed, now_secs))
    }
}

/// Writes the state durably: a temporary file, fsync, rename, fsync of the
/// directory.
fn persist(path: &Path, state: &BTreeMap<String, (u64, Hash)>) -> std::io::Result<()> {
    let dir = path.parent().expect("the state file has a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for (origin, (size, root)) in state {
        writeln!(f, "{origin} {size} {}", b64::encode(root))?;
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// `POST /tlog-witness/add-checkpoint`. No token: a request is
/// authenticated by its log's signature, as tlog-witness defines.
pub async fn add_checkpoint(State(state): State<AppState>, body: Body) -> Response {
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r
    };
    let Some(w) = state.witness.clone() else {
        return text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "this server is not a witness\n".into());
    };
    // Requests are small; a longer one is refused before it is read whole.
    let limit = witness::ADD_CHECKPOINT_BYTES_MAX;
    let read =
        tokio::time::timeout(std::time::Duration::from_millis(state.limits.body_timeout_ms), to_bytes(body, limit))
            .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain; charset=utf-8",
                format!("the body exceeds {limit} bytes\n"),
            );
        }
        Err(_) => {
            return text(StatusCode::REQUEST_TIMEOUT, "text/plain; charset=utf-8", "the body did not arrive\n".into());
        }
    };
    let now = actlog_store::clock::now_secs();
    let w2 = Arc::clone(&w);
    let answer = match tokio::task::spawn_blocking(move || w2.add_checkpoint(&bytes, now)).await {
        Ok(a) => a,
        Err(e) => Answer::Refused(StatusCode::INTERNAL_SERVER_ERROR, format!("witness task failed: {e}")),
    };
    state.metrics.witness_request(match &answer {
        Answer::Cosigned(_) => "cosigned",
        Answer::SizeConflict(_) => "size_conflict",
        Answer::Refused(s, _) if *s == StatusCode::UNPROCESSABLE_ENTITY => "inconsistent",
        Answer::Refused(..) => "refused",
    });
    match answer {
        Answer::Cosigned(line) => text(StatusCode::OK, "text/plain; charset=utf-8", line),
        Answer::SizeConflict(size) => text(StatusCode::CONFLICT, "text/x.tlog.size", format!("{size}\n")),
        Answer::Refused(status, m) => text(status, "text/plain; charset=utf-8", format!("{m}\n")),
    }
}
