//! The command tree (contract section 2) and the small commands.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actlog_core::dsse::Envelope;
use actlog_core::leaf::sha256;
use actlog_core::wire;
use actlog_store::{AdminOp, Options, Store};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::keyfile::{SignerKey, parse_public_key};
use crate::util::*;

#[derive(Parser, Debug)]
#[command(name = "actlog", version, about = "The audit ledger for AI-agent authorization decisions")]
pub struct Cli {
    /// Data directory.
    #[arg(long, global = true, env = "ACTLOG_DATA", default_value = "./actlog-data")]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the ledger: RocksDB, ledger signing key, first admin token (printed once).
    Init {
        /// Log origin, the first line of every checkpoint.
        #[arg(long, env = "ACTLOG_ORIGIN")]
        origin: Option<String>,
    },
    /// Run the HTTP server (initializes an empty data directory first).
    Serve(Box<ServeArgs>),
    /// Show origin, verifier key, tree size and latest checkpoint.
    Info {
        #[arg(long)]
        json: bool,
        /// Also count the keys and bytes of each column family (a full scan).
        #[arg(long)]
        storage: bool,
    },
    /// Upgrade a data directory written by an older actlog to this build's
    /// storage format, in place and one way (back it up first).
    Migrate,
    /// Make an ed25519 key pair for a PDP; prints the C2SP verifier key.
    Keygen {
        /// Where to write the signer key (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Key name (defaults to the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Wrap events from stdin (one JSON event, or NDJSON) in signed DSSE envelopes.
    Sign {
        #[arg(long)]
        key: PathBuf,
        /// The keyid hint to put in each signature (defaults to the key's name).
        #[arg(long)]
        key_name: Option<String>,
    },
    /// Producer keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Append NDJSON envelopes from files (plain or gzip) through the same checks as HTTP.
    Import(crate::import::ImportArgs),
    /// Verify the whole ledger offline; exit 1 with the first failing seq.
    Verify(crate::verify_cmd::VerifyArgs),
    /// A simulated fleet of signing PDPs against a running server.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Run SQL against the ledger (a REPL when QUERY is absent).
    Sql(crate::sql_cmd::SqlArgs),
    /// Print the reconstructed delegation chain of one event.
    Chain(crate::sql_cmd::ChainArgs),
    /// Run a Ballista scheduler or executor for `sql --cluster` (docs/cluster.md).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Write a signed export bundle (Parquet, NDJSON or OCSF) that verifies offline.
    Export(crate::export_cmd::ExportArgs),
    /// Write a signed compliance evidence bundle (NIST CSF 2.0): findings, OCSF, an HTML report, the data.
    Evidence(crate::export_cmd::EvidenceArgs),
    /// Print Merkle proofs as JSON.
    Prove {
        #[command(subcommand)]
        command: ProveCommand,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP listen address.
    #[arg(long, env = "ACTLOG_LISTEN", default_value = "127.0.0.1:7340")]
    pub listen: String,
    /// Log origin, used only when the data directory is empty.
    #[arg(long, env = "ACTLOG_ORIGIN")]
    pub origin: Option<String>,
    /// Sign a checkpoint at most this long after an append.
    #[arg(long, env = "ACTLOG_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
    /// Serve GET /v1/checkpoint without a token.
    #[arg(long, env = "ACTLOG_PUBLIC_CHECKPOINT")]
    pub public_checkpoint: bool,
    /// Serve every /tlog/ route (checkpoint, tiles, entry bundles) without a
    /// token, for witnesses, monitors, mirrors and caches.
    #[arg(long, env = "ACTLOG_PUBLIC_TLOG")]
    pub public_tlog: bool,
    /// Act as a C2SP witness for the logs listed (`log VKEY` lines) in this
    /// tlog-policy file, at POST /tlog-witness/add-checkpoint.
    #[arg(long, env = "ACTLOG_WITNESS_FOR")]
    pub witness_for: Option<PathBuf>,
    /// Have this ledger's checkpoints cosigned by the witnesses of this C2SP
    /// tlog-policy file; /tlog/checkpoint then shows only checkpoints that
    /// meet its quorum. The file must list this ledger (`log VKEY`).
    #[arg(long, env = "ACTLOG_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,
    /// Archive sealed ranges to file:///PATH or s3://BUCKET/PREFIX (S3
    /// credentials and region from the standard AWS_* variables).
    #[arg(long, env = "ACTLOG_ARCHIVE")]
    pub archive: Option<String>,
    /// An S3-compatible server's URL, for --archive s3://...
    #[arg(long, env = "ACTLOG_ARCHIVE_ENDPOINT", requires = "archive")]
    pub archive_endpoint: Option<String>,
    /// Move archived ranges out of RocksDB once their newest event is older
    /// than this (90s, 12h, 30d ...). Their events are then read from the
    /// archive. Needs --archive.
    #[arg(long, env = "ACTLOG_HOT_RETENTION", requires = "archive", value_parser = parse_duration)]
    pub hot_retention: Option<Duration>,
    /// archive_cache_bytes: archived leaves kept in memory for reads below
    /// the cold floor.
    #[arg(long, env = "ACTLOG_ARCHIVE_CACHE_BYTES", default_value_t = actlog_archive::CACHE_BYTES_DEFAULT)]
    pub archive_cache_bytes: usize,
    /// archive_segment_cache_bytes: archived segment files (the rows of
    /// retired segments) kept in memory for queries.
    #[arg(long, env = "ACTLOG_ARCHIVE_SEGMENT_CACHE_BYTES", default_value_t = actlog_query::archive_files::ARCHIVE_SEGMENT_CACHE_BYTES_DEFAULT)]
    pub archive_segment_cache_bytes: usize,
    /// The longest one call to a witness may take, in milliseconds.
    #[arg(long, env = "ACTLOG_WITNESS_TIMEOUT_MS", default_value_t = 5_000)]
    pub witness_timeout_ms: u64,
    /// The longest POST /v1/events?wait=witnessed waits, in milliseconds.
    #[arg(long, env = "ACTLOG_WITNESS_WAIT_MS", default_value_t = 10_000)]
    pub witness_wait_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "ACTLOG_BODY_BYTES_MAX", default_value_t = 16 << 20)]
    pub body_bytes_max: usize,
    /// Envelopes per POST /v1/events.
    #[arg(long, env = "ACTLOG_BATCH_ENVELOPES_MAX", default_value_t = 4096)]
    pub batch_envelopes_max: usize,
    /// Largest decoded payload, in bytes.
    #[arg(long, env = "ACTLOG_PAYLOAD_BYTES_MAX", default_value_t = 128 << 10)]
    pub payload_bytes_max: usize,
    /// Largest envelope as received, in bytes.
    #[arg(long, env = "ACTLOG_ENVELOPE_BYTES_MAX", default_value_t = 256 << 10)]
    pub envelope_bytes_max: usize,
    /// Largest body after gzip decompression, in bytes.
    #[arg(long, env = "ACTLOG_DECOMPRESSED_BYTES_MAX", default_value_t = 64 << 20)]
    pub decompressed_bytes_max: usize,
    /// Deepest JSON nesting accepted in a body.
    #[arg(long, env = "ACTLOG_JSON_DEPTH_MAX", default_value_t = 64)]
    pub json_depth_max: usize,
    /// Longest wait for ?wait=checkpoint, in milliseconds.
    #[arg(long, env = "ACTLOG_WAIT_CHECKPOINT_MS", default_value_t = 5_000)]
    pub wait_checkpoint_ms: u64,
    /// Appends in flight before the server answers 429.
    #[arg(long, env = "ACTLOG_INGEST_REQUESTS_MAX", default_value_t = 64)]
    pub ingest_requests_max: usize,
    /// A JSON file of JSON Pointers locating request fields in non-AuthZEN OPA input (docs/opa.md).
    #[arg(long, env = "ACTLOG_OPA_MAPPING")]
    pub opa_mapping: Option<PathBuf>,
    /// Longest time one request may take, in milliseconds.
    #[arg(long, env = "ACTLOG_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// PostgreSQL wire-protocol listen address (off unless given).
    #[arg(long, env = "ACTLOG_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// Appends one token may have in flight (`ingest_requests_per_token_max`).
    #[arg(long, env = "ACTLOG_INGEST_REQUESTS_PER_TOKEN_MAX", default_value_t = 16)]
    pub ingest_requests_per_token_max: usize,
    /// Open HTTP connections; at the cap the quietest idle one is closed (`http_connections_max`).
    #[arg(long, env = "ACTLOG_HTTP_CONNECTIONS_MAX", default_value_t = 1024)]
    pub http_connections_max: usize,
    /// Time for a request head to arrive once a connection is ready for one, in ms (`http_header_timeout_ms`).
    #[arg(long, env = "ACTLOG_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Time to read one request body, in ms (`http_body_timeout_ms`).
    #[arg(long, env = "ACTLOG_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,
    /// A connection that moves no byte this long while no handler runs is closed, in ms (`http_idle_timeout_ms`).
    #[arg(long, env = "ACTLOG_HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_idle_timeout_ms: u64,
    /// Failed authentications from one address in a minute before it is refused (`auth_failures_per_minute_max`).
    #[arg(long, env = "ACTLOG_AUTH_FAILURES_PER_MINUTE_MAX", default_value_t = actlog_server::AUTH_FAILURES_PER_MINUTE_MAX_DEFAULT)]
    pub auth_failures_per_minute_max: u32,
    /// Open PostgreSQL connections (`pg_connections_max`).
    #[arg(long, env = "ACTLOG_PG_CONNECTIONS_MAX", default_value_t = 100)]
    pub pg_connections_max: usize,
    /// Time from connecting to a completed PostgreSQL login, in ms (`pg_auth_timeout_ms`).
    #[arg(long, env = "ACTLOG_PG_AUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub pg_auth_timeout_ms: u64,
    /// A logged-in PostgreSQL session that sends nothing this long is closed, in ms (`pg_idle_timeout_ms`).
    #[arg(long, env = "ACTLOG_PG_IDLE_TIMEOUT_MS", default_value_t = 900_000)]
    pub pg_idle_timeout_ms: u64,
    /// Largest PostgreSQL message after login, in bytes (`pg_message_bytes_max`).
    #[arg(long, env = "ACTLOG_PG_MESSAGE_BYTES_MAX", default_value_t = 4 << 20)]
    pub pg_message_bytes_max: usize,
    /// Serve HTTPS, and TLS on the PostgreSQL endpoint, with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "ACTLOG_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ACTLOG_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require client certificates issued by these PEM CA certificates on both listeners (needs --tls-cert).
    #[arg(long, env = "ACTLOG_TLS_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub query: crate::sql_cmd::QueryArgs,
    /// SQL queries running at once, HTTP and PostgreSQL together (`sql_requests_max`); more get 429 or SQLSTATE 53000.
    #[arg(long, env = "ACTLOG_SQL_REQUESTS_MAX", default_value_t = 4)]
    pub sql_requests_max: usize,
    /// RocksDB memtables of all column families together, in bytes (at least 16 MiB).
    #[arg(long, env = "ACTLOG_MEMTABLE_BYTES_MAX", default_value_t = actlog_store::DB_WRITE_BUFFER_BYTES_MAX)]
    pub memtable_bytes_max: usize,
    /// RocksDB block cache (index, filter and data blocks), in bytes (at least 8 MiB).
    #[arg(long, env = "ACTLOG_BLOCK_CACHE_BYTES_MAX", default_value_t = actlog_store::BLOCK_CACHE_BYTES_MAX)]
    pub block_cache_bytes_max: usize,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Register a producer key (recorded as a ledger event).
    Add {
        name: String,
        /// Base64 of the raw 32-byte public key, or a C2SP verifier key.
        #[arg(long)]
        public_key: String,
        /// The PDP this key speaks for (defaults to NAME).
        #[arg(long)]
        pdp: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List producer keys.
    List(ListArgs),
    /// Revoke a producer key (recorded as a ledger event).
    Revoke(RevokeArgs),
}

/// `keys list` and `tokens list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// `keys revoke` and `tokens revoke`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    name: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create a token; it is printed once, alone on stdout.
    Create {
        /// ingest, query, auditor or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: Option<String>,
        /// Bind the token to one PDP.
        #[arg(long)]
        pdp: Option<String>,
        /// Lifetime, such as 90s, 15m, 12h or 30d; the token stops working
        /// then (and PostgreSQL sessions that logged in with it end).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token.
    Revoke(RevokeArgs),
}

#[derive(Subcommand, Debug)]
pub enum ProveCommand {
    /// Audit path of one leaf.
    Inclusion {
        seq: u64,
        /// Tree size to prove against (defaults to the latest checkpoint's).
        #[arg(long)]
        tree_size: Option<u64>,
        /// Print JSON (the only output; accepted as on every proving command).
        #[arg(long)]
        json: bool,
    },
    /// Consistency proof between two tree sizes.
    Consistency {
        old: u64,
        new: u64,
        /// Print JSON (the only output; accepted as on every proving command).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> CliResult {
    let data = cli.data.as_path();
    match cli.command {
        Command::Init { origin } => init(data, origin),
        Command::Serve(args) => serve(data, *args),
        Command::Info { json, storage } => info(data, json, storage),
        Command::Migrate => migrate(data),
        Command::Keygen { out, name } => keygen(&out, name),
        Command::Sign { key, key_name } => sign(&key, key_name),
        Command::Keys { command } => keys(data, command),
        Command::Tokens { command } => tokens(data, command),
        Command::Import(args) => crate::import::run(data, args),
        Command::Verify(args) => crate::verify_cmd::run(data, args),
        Command::Prove { command } => prove(data, command),
        Command::Loadgen(args) => crate::loadgen::run(args),
        Command::Sql(args) => crate::sql_cmd::sql(data, args),
        Command::Export(args) => crate::export_cmd::run(data, args),
        Command::Evidence(args) => crate::export_cmd::evidence(data, args),
        Command::Chain(args) => crate::sql_cmd::chain(data, args),
        Command::Cluster { command } => cluster(command),
    }
}

fn open_read(data: &Path) -> CliResult<Store> {
    open_store(data, Options { read_only: true, ..Options::default() }, None)
}

fn open_write(data: &Path) -> CliResult<Store> {
    open_store(data, Options::default(), None)
}

/// Calls an admin endpoint of a running server; returns the body of a 2xx
/// as its type in `actlog_core::wire`, the one the server writes.
fn remote_call<T: serde::de::DeserializeOwned>(
    remote: &Remote,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> CliResult<T> {
    let url = remote.url.as_deref().expect("remote mode");
    let token = remote.token.as_deref().ok_or_else(|| usage("--url needs --token ADMIN_TOKEN (or ACTLOG_TOKEN)"))?;
    let agent = crate::util::http_agent(&remote.tls)?;
    let full = format!("{}{path}", url.trim_end_matches('/'));
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(&full).header("authorization", &auth).call(),
        (_, Some(b)) => agent
            .post(&full)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(b.to_string()),
        (_, None) => agent.post(&full).header("authorization", &auth).send_empty(),
    };
    let mut resp = resp.map_err(|e| refused(format!("cannot reach {url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let msg = value["error"]["message"].as_str().unwrap_or(&text);
        let code = value["error"]["code"].as_str().unwrap_or("error");
        return Err(refused(format!("the server refused ({status} {code}): {msg}")));
    }
    serde_json::from_value(value)
        .map_err(|e| refused(format!("the server's answer to {method} {path} is not what this actlog expects: {e}")))
}

/// Creates a new ledger and its first admin token; returns the store and the token.
fn create_ledger(data: &Path, origin: Option<String>, opts: Options) -> CliResult<(Store, String)> {
    let store = Store::init(data, random_32(), origin, opts)?;
    // The key this ledger cosigns other logs' checkpoints with (`serve --witness-for`).
    actlog_store::write_secret_file(
        &data.join(actlog_store::WITNESS_KEY_FILE),
        &format!("{}\n", hex::encode(random_32())),
    )?;
    let token = new_token();
    store.admin(AdminOp::CreateToken {
        name: actlog_core::ledger::FIRST_ADMIN_TOKEN_NAME.into(),
        role: actlog_store::Role::Admin.as_str().into(),
        pdp_id: None,
        token_sha256: sha256(token.as_bytes()),
        expires_at_ns: None,
    })?;
    Ok((store, token))
}

fn init(data: &Path, origin: Option<String>) -> CliResult {
    let (store, token) = create_ledger(data, origin, Options::default())?;
    let vk = store.verifier_key().to_text();
    store.close()?;
    eprintln!("actlog: created the ledger in {}", data.display());
    eprintln!("actlog: ledger verifier key: {vk}");
    eprintln!("actlog: the admin token follows on stdout; it is shown only this once");
    print_secret(&token);
    Ok(())
}

fn serve(data: &Path, args: ServeArgs) -> CliResult {
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|_| usage(format!("--listen `{}` is not an address like 127.0.0.1:7340", args.listen)))?;
    if args.checkpoint_interval_ms == 0 {
        return Err(usage("--checkpoint-interval-ms must be at least 1"));
    }
    // Before the store: a bad certificate must not leave a new ledger behind.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = actlog_server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            };
            Some(actlog_server::tls::Tls::load(&files).map_err(usage)?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Also before the store: a bad policy must not leave a new ledger behind.
    let witness_for = match &args.witness_for {
        Some(p) => Some(read_policy("--witness-for", p)?),
        None => None,
    };
    let witness_policy = match &args.witness_policy {
        Some(p) => Some(read_policy("--witness-policy", p)?),
        None => None,
    };
    if args.memtable_bytes_max < actlog_store::DB_WRITE_BUFFER_BYTES_MIN {
        return Err(usage(format!(
            "--memtable-bytes-max must be at least {}",
            actlog_store::DB_WRITE_BUFFER_BYTES_MIN
        )));
    }
    if args.block_cache_bytes_max < 8 << 20 {
        return Err(usage(format!("--block-cache-bytes-max must be at least {}", 8 << 20)));
    }
    let opts = Options {
        checkpoint_interval: std::time::Duration::from_millis(args.checkpoint_interval_ms),
        memtable_bytes_max: args.memtable_bytes_max,
        block_cache_bytes_max: args.block_cache_bytes_max,
        ..Options::default()
    };
    let store = if actlog_store::is_initialized(data) {
        Store::open(data, opts)?
    } else {
        let (store, token) = create_ledger(data, args.origin, opts)?;
        eprintln!("actlog: created the ledger in {}", data.display());
        eprintln!("actlog: ledger verifier key: {}", store.verifier_key().to_text());
        eprintln!("actlog: bootstrap admin token (shown only this once) follows on stdout");
        print_secret(&token);
        store
    };
    let limits = actlog_server::Limits {
        body_bytes_max: args.body_bytes_max,
        batch_envelopes_max: args.batch_envelopes_max,
        payload_bytes_max: args.payload_bytes_max,
        ingest_requests_max: args.ingest_requests_max.max(1),
        request_timeout_ms: args.request_timeout_ms,
        envelope_bytes_max: args.envelope_bytes_max,
        decompressed_bytes_max: args.decompressed_bytes_max,
        json_depth_max: args.json_depth_max,
        wait_checkpoint_ms: args.wait_checkpoint_ms,
        body_timeout_ms: args.http_body_timeout_ms,
        ingest_requests_per_token_max: args.ingest_requests_per_token_max.max(1),
    };
    if args.http_connections_max == 0 || args.pg_connections_max == 0 {
        return Err(usage("--http-connections-max and --pg-connections-max must be at least 1"));
    }
    let ms = std::time::Duration::from_millis;
    let http = actlog_server::listen::ConnLimits {
        connections_max: args.http_connections_max,
        header_timeout: ms(args.http_header_timeout_ms.max(1)),
        idle_timeout: ms(args.http_idle_timeout_ms.max(1)),
    };
    let pg = actlog_server::pg::PgLimits {
        connections_max: args.pg_connections_max,
        auth_timeout: ms(args.pg_auth_timeout_ms.max(1)),
        idle_timeout: ms(args.pg_idle_timeout_ms.max(1)),
        message_bytes_max: args.pg_message_bytes_max.max(actlog_server::pg::PRE_AUTH_MESSAGE_BYTES_MAX),
    };
    if limits.payload_bytes_max > limits.envelope_bytes_max {
        return Err(usage(
            "--payload-bytes-max cannot exceed --envelope-bytes-max (a payload travels base64-encoded inside the envelope)",
        ));
    }
    let opa_mapping = match &args.opa_mapping {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
            serde_json::from_str(&text).map_err(|e| usage(format!("{} is not an OPA mapping: {e}", p.display())))?
        }
        None => actlog_core::opa::OpaMapping::default(),
    };
    let pg_listen = match &args.pg_listen {
        Some(a) => {
            Some(a.parse().map_err(|_| usage(format!("--pg-listen `{a}` is not an address like 127.0.0.1:5433")))?)
        }
        None => None,
    };
    if args.query.segment_events == 0 || args.query.sql_rows_max == 0 {
        return Err(usage("--segment-events and --sql-rows-max must be at least 1"));
    }
    let mut query = args.query.engine_options();
    query.queries_max = args.sql_requests_max.max(1);
    let witness = match witness_for {
        Some(policy) => Some(std::sync::Arc::new(open_witness(data, store.origin(), policy)?)),
        None => None,
    };
    let witnessing = match witness_policy {
        Some(policy) => {
            let own = store.verifier_key();
            if !policy.lists_log(own) {
                return Err(usage(format!(
                    "--witness-policy must list this ledger; add the line `log {}`",
                    own.to_text()
                )));
            }
            if args.witness_timeout_ms == 0 {
                return Err(usage("--witness-timeout-ms must be at least 1"));
            }
            Some(actlog_server::WitnessingConfig {
                policy,
                timeout: std::time::Duration::from_millis(args.witness_timeout_ms),
                wait: std::time::Duration::from_millis(args.witness_wait_ms),
            })
        }
        None => None,
    };
    let archive = match &args.archive {
        Some(url) => Some(actlog_server::ArchiveConfig {
            archive: actlog_archive::Archive::open(url, args.archive_endpoint.as_deref())
                .map_err(|e| usage(e.to_string()))?,
            seed: actlog_store::read_ledger_seed(data)?,
            range_events: args.query.segment_events,
            staging: data.join("archive-staging"),
            hot_retention: args.hot_retention,
            cache_bytes: args.archive_cache_bytes,
            segment_cache_bytes: args.archive_segment_cache_bytes,
        }),
        None => None,
    };
    let config = actlog_server::ServerConfig {
        listen,
        limits,
        public_checkpoint: args.public_checkpoint,
        public_tlog: args.public_tlog,
        witness,
        witnessing,
        opa_mapping,
        pg_listen,
        query,
        http,
        pg,
        auth_failures_per_minute_max: args.auth_failures_per_minute_max,
        tls,
        archive,
    };
    let origin = store.origin().to_string();
    actlog_server::run(
        store,
        config,
        |b| {
            if let Some(pg) = b.pg {
                eprintln!("actlog: PostgreSQL wire protocol on {pg} (user=<role> password=<token>)");
            }
            eprintln!("actlog: serving ledger {origin} on {scheme}://{}", b.http)
        },
        std::future::pending(),
    )
    .map_err(|e| refused(format!("server: {e}")))
}

/// The cosigner name of this ledger's witness.
fn witness_name(origin: &str) -> String {
    format!("{origin}/witness")
}

/// Opens this data directory's witness, making its key when an older data
/// directory has none.
fn open_witness(
    data: &Path,
    origin: &str,
    policy: actlog_core::witness::Policy,
) -> CliResult<actlog_server::witness::Witness> {
    let seed = match actlog_store::read_witness_seed(data)? {
        Some(seed) => seed,
        None => {
            let seed = random_32();
            actlog_store::write_secret_file(
                &data.join(actlog_store::WITNESS_KEY_FILE),
                &format!("{}\n", hex::encode(seed)),
            )?;
            eprintln!("actlog: made the witness key {}", data.join(actlog_store::WITNESS_KEY_FILE).display());
            seed
        }
    };
    let w = actlog_server::witness::Witness::open(data, &witness_name(origin), seed, policy).map_err(refused)?;
    eprintln!("actlog: witnessing as {}", w.vkey());
    Ok(w)
}

/// This data directory's witness vkey, when it has a witness key.
fn witness_vkey(data: &Path, origin: &str) -> CliResult<Option<String>> {
    Ok(match actlog_store::read_witness_seed(data)? {
        Some(seed) => Some(
            actlog_core::witness::CosignerKey::from_seed(&witness_name(origin), &seed)
                .map_err(|e| refused(e.to_string()))?
                .to_text(),
        ),
        None => None,
    })
}

fn migrate(data: &Path) -> CliResult {
    let bar = stderr_is_tty().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("migrate {bar:40} {pos}/{len} tiles {per_sec} eta {eta}")
                .expect("valid template"),
        );
        b
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let m = actlog_store::migrate(data, &progress)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if m.from == actlog_store::FORMAT_VERSION {
        println!("ok: {} is already at storage format {}", data.display(), actlog_store::FORMAT_VERSION);
    } else {
        println!(
            "ok: migrated {} from storage format {} to {}: {} leaves, {} Merkle tiles written; run `actlog verify` to check it",
            data.display(),
            m.from,
            actlog_store::FORMAT_VERSION,
            m.tree_size,
            m.tiles
        );
    }
    Ok(())
}

fn info(data: &Path, as_json: bool, storage: bool) -> CliResult {
    let store = open_read(data)?;
    let head = store.head();
    let cp = store.latest_checkpoint().map(|(_, n)| n);
    let vk = store.verifier_key().to_text();
    let wk = witness_vkey(data, store.origin())?;
    let stats = if storage { Some(store.storage_stats()?) } else { None };
    if as_json {
        let mut v = json!({"origin": store.origin(), "verifier_key": vk, "witness_key": wk, "tree_size": head.tree_size, "cold_floor": store.cold_floor(), "checkpoint": cp});
        if let Some(stats) = &stats {
            v["storage"] =
                stats.iter().map(|(cf, keys, bytes)| (cf.to_string(), json!({"keys": keys, "bytes": bytes}))).collect();
        }
        println!("{v}");
    } else {
        if let Some(stats) = &stats {
            for (cf, keys, bytes) in stats {
                println!("storage:      {cf:<12} {keys:>12} keys {bytes:>15} bytes (keys and values)");
            }
        }
        println!("origin:       {}", store.origin());
        println!("verifier key: {vk}");
        if let Some(wk) = &wk {
            println!("witness key:  {wk}");
        }
        println!("tree size:    {}", head.tree_size);
        if store.cold_floor() > 0 {
            println!("cold floor:   {} (seqs below it are read from the archive)", store.cold_floor());
        }
        println!("root hash:    {}", actlog_core::b64::encode(head.root));
        match cp {
            Some(note) => print!("checkpoint:\n{note}"),
            None => println!("checkpoint:   none yet"),
        }
    }
    Ok(())
}

fn keygen(out: &Path, name: Option<String>) -> CliResult {
    let name = match name {
        Some(n) => n,
        None => out
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| usage("cannot derive a key name from --out; pass --name"))?,
    };
    if name.is_empty() || name.chars().any(|c| c == '+' || c.is_whitespace() || c.is_control()) {
        return Err(usage("key names must not be empty or contain '+', spaces or control characters"));
    }
    let key = SignerKey { name, seed: random_32() };
    actlog_store::write_secret_file(out, &format!("{}\n", key.to_text())).map_err(|e| usage(e.to_string()))?;
    eprintln!("actlog: wrote the signer key to {} (mode 0600); the verifier key follows on stdout", out.display());
    println!("{}", key.verifier().to_text());
    Ok(())
}

fn sign(key_path: &Path, key_name: Option<String>) -> CliResult {
    let key = SignerKey::load(key_path)?;
    let keyid = key_name.unwrap_or_else(|| key.name.clone());
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| usage(format!("cannot read stdin: {e}")))?;
    // One JSON document (possibly pretty-printed), or NDJSON. The payload is
    // the bytes as given (trimmed), never a re-serialization.
    let events: Vec<Vec<u8>> = match serde_json::from_slice::<serde_json::Value>(&input) {
        Ok(_) => vec![input.trim_ascii().to_vec()],
        Err(_) => input
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    for (i, ev) in events.into_iter().enumerate() {
        if let Err(e) = actlog_core::event::validate(&ev) {
            return Err(refused(format!("event {}: {e}", i + 1)));
        }
        let env = Envelope::sign(ev, Some(keyid.clone()), &key.seed);
        use std::io::Write;
        writeln!(out, "{}", env.to_json()).map_err(|e| usage(e.to_string()))?;
    }
    Ok(())
}

fn keys(data: &Path, command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Add { name, public_key, pdp, remote } => {
            let pk = parse_public_key(&public_key)?;
            if remote.url.is_some() {
                let pdp_id = pdp.unwrap_or_else(|| name.clone());
                let body = json!({"name": name, "public_key": actlog_core::b64::encode(pk), "pdp_id": pdp_id});
                let r: wire::KeyAdded = remote_call(&remote, "POST", "/v1/keys", Some(body))?;
                eprintln!("actlog: key `{name}` registered for PDP `{pdp_id}` at seq {}", r.added_seq);
                return Ok(());
            }
            let store = open_write(data)?;
            let pdp_id = pdp.unwrap_or_else(|| name.clone());
            let seq = store.admin(AdminOp::AddKey { name: name.clone(), pdp_id: pdp_id.clone(), public_key: pk })?;
            store.close()?;
            eprintln!("actlog: key `{name}` registered for PDP `{pdp_id}` at seq {seq}");
        }
        KeysCommand::List(ListArgs { json: as_json, remote }) => {
            let mut keys: Vec<wire::Key> = if remote.url.is_some() {
                remote_call::<wire::Keys>(&remote, "GET", "/v1/keys", None)?.keys
            } else {
                open_read(data)?.registry().keys.values().map(wire::Key::from).collect()
            };
            keys.sort_by_key(|k| k.added_seq);
            if as_json {
                println!("{}", serde_json::to_string(&keys).expect("keys serialize"));
            } else {
                println!("{:<24} {:<24} {:<10} {:<10} KEY ID", "NAME", "PDP", "ADDED", "REVOKED");
                for k in keys {
                    let revoked = k.revoked_seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<24} {:<24} {:<10} {:<10} {}",
                        k.name,
                        k.pdp_id,
                        k.added_seq,
                        revoked,
                        k.key_id.get(..16).unwrap_or(&k.key_id)
                    );
                }
            }
        }
        KeysCommand::Revoke(RevokeArgs { name, remote }) => {
            if remote.url.is_some() {
                let r: wire::Revoked = remote_call(&remote, "POST", &format!("/v1/keys/{name}/revoke"), None)?;
                eprintln!("actlog: key `{name}` revoked at seq {}", r.revoked_seq);
                return Ok(());
            }
            let store = open_write(data)?;
            let seq = store.admin(AdminOp::RevokeKey { name: name.clone() })?;
            store.close()?;
            eprintln!("actlog: key `{name}` revoked at seq {seq}");
        }
    }
    Ok(())
}

fn tokens(data: &Path, command: TokensCommand) -> CliResult {
    match command {
        TokensCommand::Create { role, name, pdp, expires_in, remote } => {
            // Checked here too, so a bad duration is a usage error before any request.
            let expires_at_ns = expires_in.as_deref().map(actlog_server::expires_at).transpose().map_err(usage)?;
            if remote.url.is_some() {
                let v: serde_json::Value = remote_call(
                    &remote,
                    "POST",
                    "/v1/tokens",
                    Some(json!({"role": role, "name": name, "pdp_id": pdp, "expires_in": expires_in})),
                )?;
                // The token is recorded by now and its secret is in this
                // answer only: never lose it to an answer of another shape.
                let r: wire::TokenCreated = match serde_json::from_value(v.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        let token = v["token"].as_str().ok_or_else(|| {
                            refused(format!("the server created a token but its answer holds no secret ({e}): {v}"))
                        })?;
                        eprintln!(
                            "actlog: the server's answer is not what this actlog expects ({e}); the token follows"
                        );
                        print_secret(token);
                        return Ok(());
                    }
                };
                if expires_in.is_some() && r.expires_at.is_none() {
                    // A server without token lifetimes ignores `expires_in`:
                    // never leave a token behind that lives for ever.
                    let created = &r.name;
                    let revoked: CliResult<wire::Revoked> =
                        remote_call(&remote, "POST", &format!("/v1/tokens/{created}/revoke"), None);
                    return Err(refused(format!(
                        "the server does not support token lifetimes, so --expires-in was not applied; token `{created}` {}",
                        if revoked.is_ok() { "was revoked again" } else { "could not be revoked: revoke it by hand" }
                    )));
                }
                eprintln!("actlog: token `{}` created; it follows on stdout and is shown only this once", r.name);
                print_secret(&r.token);
                return Ok(());
            }
            let name = name.unwrap_or_else(|| format!("{role}-{}", &hex::encode(random_32())[..8]));
            let token = new_token();
            let store = open_write(data)?;
            store.admin(AdminOp::CreateToken {
                name: name.clone(),
                role,
                pdp_id: pdp,
                token_sha256: sha256(token.as_bytes()),
                expires_at_ns,
            })?;
            store.close()?;
            eprintln!("actlog: token `{name}` created; it follows on stdout and is shown only this once");
            print_secret(&token);
        }
        TokensCommand::List(ListArgs { json: as_json, remote }) => {
            let mut tokens: Vec<wire::Token> = if remote.url.is_some() {
                remote_call::<wire::Tokens>(&remote, "GET", "/v1/tokens", None)?.tokens
            } else {
                open_read(data)?.registry().tokens.values().map(wire::Token::from).collect()
            };
            tokens.sort_by_key(|t| t.created_seq);
            if as_json {
                println!("{}", serde_json::to_string(&tokens).expect("tokens serialize"));
            } else {
                println!("{:<24} {:<8} {:<24} {:<10} {:<10} EXPIRES", "NAME", "ROLE", "PDP", "CREATED", "REVOKED");
                for t in tokens {
                    let revoked = t.revoked_seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                    let expires = t.expires_at.as_deref().unwrap_or("-");
                    println!(
                        "{:<24} {:<8} {:<24} {:<10} {:<10} {}",
                        t.name,
                        t.role,
                        t.pdp_id.as_deref().unwrap_or("-"),
                        t.created_seq,
                        revoked,
                        expires
                    );
                }
            }
        }
        TokensCommand::Revoke(RevokeArgs { name, remote }) => {
            if remote.url.is_some() {
                let r: wire::Revoked = remote_call(&remote, "POST", &format!("/v1/tokens/{name}/revoke"), None)?;
                eprintln!("actlog: token `{name}` revoked at seq {}", r.revoked_seq);
                return Ok(());
            }
            let store = open_write(data)?;
            let seq = store.admin(AdminOp::RevokeToken { name: name.clone() })?;
            store.close()?;
            eprintln!("actlog: token `{name}` revoked at seq {seq}");
        }
    }
    Ok(())
}

fn prove(data: &Path, command: ProveCommand) -> CliResult {
    let store = open_read(data)?;
    let b64 = |h: &[u8; 32]| actlog_core::b64::encode(h);
    match command {
        ProveCommand::Inclusion { seq, tree_size, json: _ } => {
            let size = match tree_size {
                Some(s) => s,
                None => store.latest_checkpoint().map(|(s, _)| s).unwrap_or(store.head().tree_size),
            };
            let (leaf_hash, hashes) = store.inclusion_proof(seq, size)?;
            println!(
                "{}",
                json!({
                    "seq": seq, "tree_size": size, "leaf_hash": b64(&leaf_hash),
                    "hashes": hashes.iter().map(b64).collect::<Vec<_>>(),
                })
            );
        }
        ProveCommand::Consistency { old, new, json: _ } => {
            let hashes = store.consistency_proof(old, new)?;
            println!("{}", json!({"old": old, "new": new, "hashes": hashes.iter().map(b64).collect::<Vec<_>>()}));
        }
    }
    Ok(())
}

/// A clap parser for durations written like 90s, 12h or 30d.
fn parse_duration(s: &str) -> Result<Duration, String> {
    actlog_core::time::parse_duration_secs(s).map(Duration::from_secs)
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// The scheduler: takes queries from `actlog sql --cluster` and hands their tasks to executors.
    Scheduler {
        /// Address to listen on (gRPC).
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: std::net::SocketAddr,
        /// Drop an executor that has not sent a heartbeat for this long, in seconds.
        #[arg(long, default_value_t = 10)]
        executor_timeout_s: u64,
        /// The S3-compatible server of s3:// archives (AWS when absent;
        /// credentials and region from AWS_*). The scheduler lists the files.
        #[arg(long)]
        archive_endpoint: Option<String>,
    },
    /// An executor: runs tasks for the scheduler and serves their results.
    Executor {
        /// The scheduler's address.
        #[arg(long)]
        scheduler: std::net::SocketAddr,
        /// Address to serve results on (Arrow Flight).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: std::net::SocketAddr,
        /// Port to take tasks on (gRPC), on the --listen host.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Where shuffle files go (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks run at once (default: the cores).
        #[arg(long)]
        slots: Option<usize>,
        /// The S3-compatible server of s3:// archives (AWS when absent;
        /// credentials and region from AWS_*).
        #[arg(long)]
        archive_endpoint: Option<String>,
    },
}

fn cluster(command: ClusterCommand) -> CliResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| refused(format!("cannot start a runtime: {e}")))?;
    let result = match command {
        ClusterCommand::Scheduler { listen, executor_timeout_s, archive_endpoint } => rt.block_on(async {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| actlog_cluster::ClusterError::Refused(format!("--listen {listen}: {e}")))?;
            let addr = l.local_addr().map_err(|e| actlog_cluster::ClusterError::Failed(e.to_string()))?;
            eprintln!("actlog: cluster scheduler on {addr}");
            actlog_cluster::scheduler(l, executor_timeout_s, archive_endpoint).await
        }),
        ClusterCommand::Executor { scheduler, listen, grpc_port, work_dir, slots, archive_endpoint } => {
            let tmp;
            let work_dir = match work_dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::tempdir().map_err(|e| refused(format!("cannot make a work directory: {e}")))?;
                    tmp.path().to_path_buf()
                }
            };
            eprintln!(
                "actlog: cluster executor on {listen} (tasks on port {grpc_port}) for the scheduler at {scheduler}"
            );
            let slots = slots.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            rt.block_on(actlog_cluster::executor(actlog_cluster::ExecutorOptions {
                scheduler,
                listen,
                grpc_port,
                work_dir,
                slots,
                archive_endpoint,
            }))
        }
    };
    Ok(result?)
}
