//! `actlog loadgen`: a simulated fleet of signing PDPs.
//!
//! It registers one key per PDP and an ingest token through the admin
//! endpoints, generates the events with actlog-gen (the generator behind the
//! fixtures and benchmarks, with a fresh seed per run), pre-signs every
//! event before the timed phase (so signing does not compete with the
//! server for CPU), then sends batches from `--concurrency` threads at
//! `--rate` events/s (or as fast as acknowledged) and reports events/s and
//! acknowledgement latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actlog_core::b64;
use actlog_core::dsse::Envelope;
use actlog_core::sig::public_key_of;
use clap::Args;
use rayon::prelude::*;
use serde_json::json;

use crate::util::*;

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    /// Server base URL, e.g. http://127.0.0.1:7340
    #[arg(long, env = "ACTLOG_URL")]
    pub url: String,
    /// An admin token (to register keys and an ingest token).
    #[arg(long, env = "ACTLOG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    #[command(flatten)]
    pub tls: TlsClient,
    /// Target events per second (0 = as fast as acknowledged).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Simulated PDPs, each with its own key.
    #[arg(long, default_value_t = 4)]
    pub pdps: usize,
    /// Envelopes per request.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Events to pre-sign when --rate is 0 (the run stops early if they run out).
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// POSTs JSON with a bearer token; returns (status, body).
pub fn post_json(agent: &ureq::Agent, url: &str, token: &str, body: &serde_json::Value) -> CliResult<(u16, String)> {
    let mut resp = agent
        .post(url)
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| refused(format!("cannot reach {url}: {e}")))?;
    let status = resp.status().as_u16();
    Ok((status, resp.body_mut().read_to_string().unwrap_or_default()))
}

pub fn run(args: LoadgenArgs) -> CliResult {
    if args.batch == 0 || args.concurrency == 0 || args.pdps == 0 {
        return Err(usage("--batch, --concurrency and --pdps must be at least 1"));
    }
    let base = args.url.trim_end_matches('/').to_string();
    let http = http_agent(&args.tls)?;
    let run_id = hex::encode(&random_32()[..4]);
    // The events are actlog-gen's (the generator behind the test fixtures
    // and the benchmarks): realistic delegation chains, decisions and
    // outcomes, with planted anomalies. A fresh seed per run gives fresh
    // event ids, so runs against one server never collide.
    let total = if args.rate > 0 { args.rate * args.duration } else { args.events };
    // Whole batches only, so every request carries `--batch` events.
    let total = total.div_ceil(args.batch as u64) * args.batch as u64;
    let seed = u64::from_le_bytes(random_32()[..8].try_into().expect("8 bytes"));
    let cfg = actlog_gen::GenConfig { seed, events: total, pdps: args.pdps, ..actlog_gen::GenConfig::default() };
    // Onboard the fleet through the admin endpoints: each PDP's key, under
    // a name of this run (a PDP may hold several keys).
    let mut keys = Vec::new();
    for p in 0..args.pdps {
        let signing = actlog_gen::pdp_seed(seed, p);
        let (pdp, name) = (actlog_gen::pdp_id(p), format!("lg-{run_id}-pdp{p}-key"));
        let (status, body) = post_json(
            &http,
            &format!("{base}/v1/keys"),
            &args.admin_token,
            &json!({"name": name, "public_key": b64::encode(public_key_of(&signing)), "pdp_id": pdp}),
        )?;
        if status != 201 {
            return Err(refused(format!("registering a PDP key failed ({status}): {body}")));
        }
        keys.push((name, signing));
    }
    let (status, body) = post_json(
        &http,
        &format!("{base}/v1/tokens"),
        &args.admin_token,
        &json!({"role": actlog_store::Role::Ingest, "name": format!("lg-{run_id}-ingest")}),
    )?;
    if status != 201 {
        return Err(refused(format!("creating an ingest token failed ({status}): {body}")));
    }
    let token: String = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
        .ok_or_else(|| refused("the token response has no token"))?;

    // Generate and pre-sign every batch before the clock starts.
    let started_sign = Instant::now();
    let events: Vec<actlog_gen::Generated> = actlog_gen::Generator::new(cfg).collect();
    let batches: Vec<String> = events
        .par_chunks(args.batch)
        .map(|chunk| {
            let envs: Vec<String> = chunk
                .iter()
                .map(|g| {
                    let (name, signing) = &keys[g.pdp];
                    Envelope::sign(g.payload.clone(), Some(name.clone()), signing).to_json()
                })
                .collect();
            format!("[{}]", envs.join(","))
        })
        .collect();
    let n_batches = batches.len();
    drop(events);
    if !args.json {
        eprintln!(
            "loadgen: pre-signed {} events in {:.1}s; sending",
            n_batches * args.batch,
            started_sign.elapsed().as_secs_f64()
        );
    }
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let progress = stderr_is_tty() && !args.json;
    let latencies: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (batches, next, acked, errors, shed, http) =
                    (&batches, &next, &acked, &errors, &shed, http.clone());
                let (token, base) = (&token, &base);
                scope.spawn(move || {
                    let mut lat = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= batches.len() || Instant::now() >= deadline {
                            break;
                        }
                        if args.rate > 0 {
                            let due = start + Duration::from_secs_f64((k * args.batch) as f64 / args.rate as f64);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        // Like OPA, keep a shed batch and send it again after Retry-After.
                        let t = Instant::now();
                        loop {
                            let resp = http
                                .post(&format!("{base}/v1/events"))
                                .header("authorization", &format!("Bearer {token}"))
                                .header("content-type", "application/json")
                                .send(batches[k].as_str());
                            match resp {
                                Ok(mut r) if r.status().as_u16() == 200 => {
                                    let _ = r.body_mut().read_to_string();
                                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                                    acked.fetch_add(args.batch as u64, Ordering::Relaxed);
                                }
                                Ok(mut r) if matches!(r.status().as_u16(), 429 | 503) => {
                                    let _ = r.body_mut().read_to_string();
                                    shed.fetch_add(1, Ordering::Relaxed);
                                    if Instant::now() < deadline {
                                        std::thread::sleep(Duration::from_millis(50));
                                        continue;
                                    }
                                }
                                Ok(mut r) => {
                                    let _ = r.body_mut().read_to_string();
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            break;
                        }
                    }
                    lat
                })
            })
            .collect();
        if progress {
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(Duration::from_millis(500));
                let secs = start.elapsed().as_secs_f64();
                eprint!(
                    "\rloadgen: {:>9} events acked, {:>8.0}/s, {} errors   ",
                    acked.load(Ordering::Relaxed),
                    acked.load(Ordering::Relaxed) as f64 / secs,
                    errors.load(Ordering::Relaxed)
                );
            }
            eprintln!();
        }
        handles.into_iter().map(|h| h.join().expect("sender thread")).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if all.is_empty() { 0.0 } else { all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1] }
    };
    let events = acked.load(Ordering::Relaxed);
    let report = json!({
        "events": events,
        "seconds": seconds,
        "events_per_s": events as f64 / seconds,
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": all.last().copied().unwrap_or(0.0)},
        "errors": errors.load(Ordering::Relaxed),
        "shed": shed.load(Ordering::Relaxed),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{events} events in {seconds:.2}s = {:.0} events/s; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors; {} shed and retried",
            events as f64 / seconds,
            pct(0.50),
            pct(0.99),
            all.last().copied().unwrap_or(0.0),
            report["errors"],
            report["shed"]
        );
    }
    Ok(())
}
