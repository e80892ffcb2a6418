//! Prometheus counters and histograms, rendered by hand as text format 0.0.4.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const COMMIT_BUCKETS_MS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 10.0, 64.0, 256.0, 1024.0, 4096.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, b) in buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, name: &str, help: &str, buckets: &[f64], out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (i, b) in buckets.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {c}\n"));
        }
        out.push_str(&format!(
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n",
            self.count, self.sum, self.count
        ));
    }
}

/// What happened, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    commit_ms: Mutex<Histogram>,
    batch_sizes: Mutex<Histogram>,
    limit_hits: Mutex<BTreeMap<&'static str, u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    witness_requests: Mutex<BTreeMap<&'static str, u64>>,
    witness_submissions: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// One past the last archived seq; 0 before the first range.
    archive_end_seq: AtomicU64,
    archive_failures: AtomicU64,
    /// Seqs below this live only in the archive (`--hot-retention`).
    cold_floor: AtomicU64,
    /// Events moved out of RocksDB since start.
    evicted: AtomicU64,
    /// Cerbos access-log entries received and skipped (not decisions).
    cerbos_access_skipped: AtomicU64,
    /// OTLP spans and log records received that are not GenAI decisions or tool calls.
    otlp_skipped: AtomicU64,
    /// The archive's read counters, once it is attached as the cold source.
    cold: std::sync::OnceLock<std::sync::Arc<actlog_archive::ColdStats>>,
    /// The archived segment files' cache of the query engine.
    segment_cache: std::sync::OnceLock<std::sync::Arc<actlog_query::archive_files::ObjectCache>>,
    /// Segments retired to the archive since start.
    retired_segments: AtomicU64,
    /// Numbered producer streams seen since start, for the sequence gaps.
    streams: Mutex<Streams>,
}

/// Most numbered producer streams (`source.stream`) tracked for
/// `/metrics`; events of further streams are counted as untracked. The
/// `producer_streams` SQL view has every stream, whatever this limit.
pub const PRODUCER_STREAMS_MAX: usize = 10_000;

/// The numbers each producer stream has delivered since start.
#[derive(Default)]
struct Streams {
    spans: std::collections::HashMap<(String, String), Span>,
    /// New events of streams past [`PRODUCER_STREAMS_MAX`].
    untracked: u64,
}

/// The first and last number of a stream, and how many events it delivered.
#[derive(Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    received: u64,
}

impl Span {
    /// Numbers between first and last that never arrived. A number sent
    /// twice (under two event ids) counts twice, so can hide a gap.
    fn missing(&self) -> u64 {
        (self.last - self.first + 1).saturating_sub(self.received)
    }
}

impl Metrics {
    pub fn accepted(&self, new: u64, duplicates: u64, _batch: usize) {
        self.accepted.fetch_add(new, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }
    pub fn refused(&self, reason: &'static str) {
        *self.refused.lock().expect("metrics lock").entry(reason).or_default() += 1;
    }
    /// OTLP items skipped (not `apply_guardrail` or `execute_tool`).
    pub fn otlp_skipped(&self, n: u64) {
        self.otlp_skipped.fetch_add(n, Ordering::Relaxed);
    }
    /// Cerbos access-log entries skipped (they are not decisions).
    pub fn cerbos_access_skipped(&self, n: u64) {
        self.cerbos_access_skipped.fetch_add(n, Ordering::Relaxed);
    }
    /// A connection or request turned away (or a connection closed) by the
    /// named limit.
    pub fn connection_refused(&self, limit: &'static str) {
        *self.limit_hits.lock().expect("metrics lock").entry(limit).or_default() += 1;
    }
    /// A failed authentication, by listener (`http` or `pg`).
    pub fn auth_failed(&self, listener: &'static str) {
        *self.auth_failures.lock().expect("metrics lock").entry(listener).or_default() += 1;
    }
    /// Where the archive ends after an archiver turn.
    pub fn archive_end(&self, end_seq: u64) {
        self.archive_end_seq.store(end_seq, Ordering::Relaxed);
    }
    /// Where the cold floor is, and how many events just left RocksDB.
    pub fn evicted(&self, floor: u64, events: u64) {
        self.cold_floor.store(floor, Ordering::Relaxed);
        self.evicted.fetch_add(events, Ordering::Relaxed);
    }
    /// The archive's read counters.
    pub fn cold_reads(&self, stats: std::sync::Arc<actlog_archive::ColdStats>) {
        let _ = self.cold.set(stats);
    }
    /// The query engine's cache of archived segment files.
    pub fn segment_reads(&self, cache: std::sync::Arc<actlog_query::archive_files::ObjectCache>) {
        let _ = self.segment_cache.set(cache);
    }
    /// Segments just retired to the archive.
    pub fn retired(&self, segments: u64) {
        self.retired_segments.fetch_add(segments, Ordering::Relaxed);
    }
    /// An archiver turn that failed (it is retried).
    pub fn archive_failed(&self) {
        self.archive_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// An `add-checkpoint` request to actlog's own witness, by outcome.
    pub fn witness_request(&self, outcome: &'static str) {
        *self.witness_requests.lock().expect("metrics lock").entry(outcome).or_default() += 1;
    }
    /// A submission of a checkpoint to a witness of the policy, by outcome.
    pub fn witness_submission(&self, witness: &str, outcome: &'static str) {
        *self.witness_submissions.lock().expect("metrics lock").entry((witness.to_string(), outcome)).or_default() += 1;
    }
    /// Newly stored events of a numbered producer stream: `(pdp_id,
    /// stream, stream_seq)`.
    pub fn stream_events(&self, events: impl IntoIterator<Item = (String, String, u64)>) {
        let mut streams = self.streams.lock().expect("metrics lock");
        for (pdp, stream, n) in events {
            let full = streams.spans.len() >= PRODUCER_STREAMS_MAX;
            match streams.spans.entry((pdp, stream)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let s = e.get_mut();
                    s.first = s.first.min(n);
                    s.last = s.last.max(n);
                    s.received += 1;
                }
                std::collections::hash_map::Entry::Vacant(_) if full => streams.untracked += 1,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Span { first: n, last: n, received: 1 });
                }
            }
        }
    }
    pub fn commit_latency(&self, d: Duration) {
        self.commit_ms.lock().expect("metrics lock").observe(COMMIT_BUCKETS_MS, d.as_secs_f64() * 1000.0);
    }
    pub fn batch(&self, n: usize) {
        self.batch_sizes.lock().expect("metrics lock").observe(BATCH_BUCKETS, n as f64);
    }

    /// Renders every metric; gauges are passed in by the caller.
    pub fn render(
        &self,
        tree_size: u64,
        checkpoint_age_s: Option<f64>,
        queue_depth: usize,
        storage_memory: &[(&str, u64)],
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP actlog_events_accepted_total Events appended (new leaves).\n# TYPE actlog_events_accepted_total counter\n");
        out.push_str(&format!("actlog_events_accepted_total {}\n", self.accepted.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_events_duplicate_total Events acknowledged as duplicates of stored ones.\n# TYPE actlog_events_duplicate_total counter\n");
        out.push_str(&format!("actlog_events_duplicate_total {}\n", self.duplicates.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_events_refused_total Envelopes or requests refused, by reason.\n# TYPE actlog_events_refused_total counter\n");
        for (reason, n) in self.refused.lock().expect("metrics lock").iter() {
            out.push_str(&format!("actlog_events_refused_total{{reason=\"{reason}\"}} {n}\n"));
        }
        out.push_str("# HELP actlog_cerbos_access_entries_skipped_total Cerbos access-log entries received at /v1/cerbos/logs and skipped: they record calls, not decisions.\n# TYPE actlog_cerbos_access_entries_skipped_total counter\n");
        out.push_str(&format!(
            "actlog_cerbos_access_entries_skipped_total {}\n",
            self.cerbos_access_skipped.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP actlog_otlp_items_skipped_total OTLP spans and log records received that are not GenAI guardrail decisions or tool calls.\n# TYPE actlog_otlp_items_skipped_total counter\n");
        out.push_str(&format!("actlog_otlp_items_skipped_total {}\n", self.otlp_skipped.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_limit_hits_total Connections or requests turned away by a named limit.\n# TYPE actlog_limit_hits_total counter\n");
        for (limit, n) in self.limit_hits.lock().expect("metrics lock").iter() {
            out.push_str(&format!("actlog_limit_hits_total{{limit=\"{limit}\"}} {n}\n"));
        }
        out.push_str("# HELP actlog_auth_failures_total Failed authentications, by listener.\n# TYPE actlog_auth_failures_total counter\n");
        for (listener, n) in self.auth_failures.lock().expect("metrics lock").iter() {
            out.push_str(&format!("actlog_auth_failures_total{{listener=\"{listener}\"}} {n}\n"));
        }
        out.push_str("# HELP actlog_witness_requests_total add-checkpoint requests to this server's witness, by outcome.\n# TYPE actlog_witness_requests_total counter\n");
        for (outcome, n) in self.witness_requests.lock().expect("metrics lock").iter() {
            out.push_str(&format!("actlog_witness_requests_total{{outcome=\"{outcome}\"}} {n}\n"));
        }
        out.push_str("# HELP actlog_witness_submissions_total Checkpoints submitted to the policy's witnesses, by witness and outcome.\n# TYPE actlog_witness_submissions_total counter\n");
        for ((witness, outcome), n) in self.witness_submissions.lock().expect("metrics lock").iter() {
            out.push_str(&format!(
                "actlog_witness_submissions_total{{witness=\"{witness}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP actlog_archive_end_seq One past the last seq in the archive (--archive).\n# TYPE actlog_archive_end_seq gauge\n");
        out.push_str(&format!("actlog_archive_end_seq {}\n", self.archive_end_seq.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_archive_failures_total Archiver turns that failed and will be retried.\n# TYPE actlog_archive_failures_total counter\n");
        out.push_str(&format!("actlog_archive_failures_total {}\n", self.archive_failures.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_cold_floor_seq Seqs below this have left RocksDB for the archive (--hot-retention).\n# TYPE actlog_cold_floor_seq gauge\n");
        out.push_str(&format!("actlog_cold_floor_seq {}\n", self.cold_floor.load(Ordering::Relaxed)));
        out.push_str("# HELP actlog_evicted_events_total Events whose leaves and envelopes left RocksDB since start.\n# TYPE actlog_evicted_events_total counter\n");
        out.push_str(&format!("actlog_evicted_events_total {}\n", self.evicted.load(Ordering::Relaxed)));
        if let Some(c) = self.cold.get() {
            out.push_str("# HELP actlog_archive_leaves_read_total Events read back from the archive below the cold floor.\n# TYPE actlog_archive_leaves_read_total counter\n");
            out.push_str(&format!("actlog_archive_leaves_read_total {}\n", c.leaves_read.load(Ordering::Relaxed)));
            out.push_str("# HELP actlog_archive_fetches_total Row groups of leaves fetched from the archive (archive_cache_bytes misses).\n# TYPE actlog_archive_fetches_total counter\n");
            out.push_str(&format!("actlog_archive_fetches_total {}\n", c.fetches.load(Ordering::Relaxed)));
            out.push_str("# HELP actlog_archive_cache_bytes Bytes of archived leaves held in memory (bounded by archive_cache_bytes).\n# TYPE actlog_archive_cache_bytes gauge\n");
            out.push_str(&format!("actlog_archive_cache_bytes {}\n", c.cache_bytes.load(Ordering::Relaxed)));
            out.push_str("# HELP actlog_archive_tile_fetches_total Level-0 tiles fetched from the archive below the cold floor (archive_tiles_max misses).\n# TYPE actlog_archive_tile_fetches_total counter\n");
            out.push_str(&format!("actlog_archive_tile_fetches_total {}\n", c.tile_fetches.load(Ordering::Relaxed)));
        }
        if let Some(c) = self.segment_cache.get() {
            out.push_str("# HELP actlog_retired_segments_total Query segments retired to the archive since start (their local files deleted).\n# TYPE actlog_retired_segments_total counter\n");
            out.push_str(&format!("actlog_retired_segments_total {}\n", self.retired_segments.load(Ordering::Relaxed)));
            out.push_str("# HELP actlog_archive_segment_fetches_total Archived segment files fetched and checked for queries (archive_segment_cache_bytes misses).\n# TYPE actlog_archive_segment_fetches_total counter\n");
            out.push_str(&format!("actlog_archive_segment_fetches_total {}\n", c.fetches.load(Ordering::Relaxed)));
            out.push_str("# HELP actlog_archive_segment_cache_bytes Bytes of archived segment files held in memory (bounded by archive_segment_cache_bytes).\n# TYPE actlog_archive_segment_cache_bytes gauge\n");
            out.push_str(&format!("actlog_archive_segment_cache_bytes {}\n", c.bytes()));
        }
        self.batch_sizes.lock().expect("metrics lock").render(
            "actlog_ingest_batch_envelopes",
            "Envelopes per ingest request.",
            BATCH_BUCKETS,
            &mut out,
        );
        self.commit_ms.lock().expect("metrics lock").render(
            "actlog_commit_latency_ms",
            "Time from handing a checked batch to the writer until its synced commit.",
            COMMIT_BUCKETS_MS,
            &mut out,
        );
        self.render_streams(&mut out);
        out.push_str("# HELP actlog_tree_size Leaves in the ledger.\n# TYPE actlog_tree_size gauge\n");
        out.push_str(&format!("actlog_tree_size {tree_size}\n"));
        out.push_str("# HELP actlog_checkpoint_age_seconds Age of the latest signed checkpoint.\n# TYPE actlog_checkpoint_age_seconds gauge\n");
        out.push_str(&format!("actlog_checkpoint_age_seconds {}\n", checkpoint_age_s.unwrap_or(-1.0)));
        out.push_str("# HELP actlog_ingest_queue_depth Appends being checked or waiting for commit.\n# TYPE actlog_ingest_queue_depth gauge\n");
        out.push_str(&format!("actlog_ingest_queue_depth {queue_depth}\n"));
        out.push_str("# HELP actlog_storage_memory_bytes RocksDB memory by kind (memtables, table readers, block cache).\n# TYPE actlog_storage_memory_bytes gauge\n");
        for (kind, bytes) in storage_memory {
            out.push_str(&format!("actlog_storage_memory_bytes{{kind=\"{kind}\"}} {bytes}\n"));
        }
        out
    }

    fn render_streams(&self, out: &mut String) {
        let streams = self.streams.lock().expect("metrics lock");
        let mut by_pdp: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((pdp, _), span) in &streams.spans {
            let e = by_pdp.entry(pdp).or_default();
            e.0 += 1;
            e.1 += span.missing();
        }
        out.push_str("# HELP actlog_producer_streams Numbered producer streams (source.stream) seen since start, by PDP.\n# TYPE actlog_producer_streams gauge\n");
        for (pdp, (n, _)) in &by_pdp {
            out.push_str(&format!("actlog_producer_streams{{pdp=\"{}\"}} {n}\n", label_value(pdp)));
        }
        out.push_str("# HELP actlog_producer_sequence_gaps Numbers missing between the first and last source.stream_seq of each stream since start, by PDP: events the producer made that have not reached the ledger.\n# TYPE actlog_producer_sequence_gaps gauge\n");
        for (pdp, (_, missing)) in &by_pdp {
            out.push_str(&format!("actlog_producer_sequence_gaps{{pdp=\"{}\"}} {missing}\n", label_value(pdp)));
        }
        out.push_str("# HELP actlog_producer_stream_events_untracked_total Numbered events of streams past the tracked limit (the producer_streams SQL view has them).\n# TYPE actlog_producer_stream_events_untracked_total counter\n");
        out.push_str(&format!("actlog_producer_stream_events_untracked_total {}\n", streams.untracked));
    }
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_gaps_are_counted_whatever_the_arrival_order() {
        let m = Metrics::default();
        let ev = |pdp: &str, s: &str, n: u64| (pdp.to_string(), s.to_string(), n);
        // Stream a: 5, 7, 6, 10 (8 and 9 missing); stream b: 0, 1 (none).
        m.stream_events([ev("p\"1\n", "a", 5), ev("p\"1\n", "a", 7), ev("p2", "b", 0)]);
        m.stream_events([ev("p\"1\n", "a", 6), ev("p\"1\n", "a", 10), ev("p2", "b", 1)]);
        let out = m.render(0, None, 0, &[]);
        assert!(out.contains("actlog_producer_sequence_gaps{pdp=\"p\\\"1\\n\"} 2\n"), "{out}");
        assert!(out.contains("actlog_producer_sequence_gaps{pdp=\"p2\"} 0\n"), "{out}");
        assert!(out.contains("actlog_producer_streams{pdp=\"p2\"} 1\n"), "{out}");
        // The late arrivals close the gap.
        m.stream_events([ev("p\"1\n", "a", 8), ev("p\"1\n", "a", 9)]);
        assert!(m.render(0, None, 0, &[]).contains("actlog_producer_sequence_gaps{pdp=\"p\\\"1\\n\"} 0\n"));
    }

    #[test]
    fn streams_past_the_limit_are_counted_as_untracked() {
        let m = Metrics::default();
        m.stream_events((0..PRODUCER_STREAMS_MAX as u64 + 3).map(|i| ("p".to_string(), format!("s{i}"), 0)));
        let out = m.render(0, None, 0, &[]);
        assert!(out.contains(&format!("actlog_producer_streams{{pdp=\"p\"}} {PRODUCER_STREAMS_MAX}\n")), "{out}");
        assert!(out.contains("actlog_producer_stream_events_untracked_total 3\n"));
    }
}
