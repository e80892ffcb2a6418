//! actlog-store: the ledger's durable store, on RocksDB.
//!
//! This is the only crate that depends on `rocksdb`. It owns the data
//! directory: the database, the ledger signing key file and the format
//! version. Key types: [`Store`] (open, append, read, prove), [`Registry`]
//! (producer keys and tokens), and [`verify::verify`].
//!
//! Architecture invariants:
//! - One writer thread performs every write. Each group of concurrent
//!   requests becomes **one** RocksDB `WriteBatch` written with `sync = true`:
//!   leaves, envelopes, Merkle nodes, the event-id and secondary indexes,
//!   registry changes, any checkpoint, and the head. Acknowledgements are sent
//!   only after that write returns.
//! - There is no update API, and the one delete is [`Store::evict`] below
//!   the cold floor (`cold.rs`). A failed write poisons the store: the
//!   process must reopen it, and recovery restarts from the last head on disk.
//! - `open` checks the format version and the head against the last leaf and
//!   the stored Merkle nodes, and reports any mismatch as corruption.

pub mod clock;
mod cold;
pub mod keys;
pub mod random;
pub mod registry;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use actlog_core::ingest::Checked;
use actlog_core::leaf::{Leaf, sha256};
use actlog_core::merkle::{self, Frontier, NodeReader};
use actlog_core::note::{Checkpoint, VerifierKey};
use actlog_core::sig::{self, PublicKey};
use actlog_core::tiles::{self, Tile, TileEdges, TileKind};
use actlog_core::witness::SigLine;
use actlog_core::{Hash, b64};
use rocksdb::{ColumnFamilyDescriptor, DB, Options as DbOptions};

pub use actlog_core::ledger::StoredEvent;
pub use clock::now_ns;
pub use cold::{COLD_CHUNK, ColdLeaf, ColdSource};
pub use keys::{INDEX_VALUE_BYTES_MAX, IndexField};
pub use registry::{KeyRecord, Registry, Role, TokenRecord};

use crate::keys::*;

/// The on-disk format this build reads and writes.
/// Format 2 keeps the Merkle tree as tlog tiles (`tiles`); format 1 kept
/// every node (`nodes`) and is upgraded by [`migrate`].
pub const FORMAT_VERSION: u32 = 2;
/// The ledger signing key file inside the data directory.
pub const LEDGER_KEY_FILE: &str = "ledger.key";
/// The witness's Ed25519 seed (hex), for `serve --witness-for`; mode 0600.
pub const WITNESS_KEY_FILE: &str = "witness.key";
/// The RocksDB directory inside the data directory.
pub const DB_DIR: &str = "db";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory has no ledger.
    #[error("no ledger at {0}; create one with `actlog init`")]
    NotInitialized(PathBuf),
    /// `init` on a directory that has a ledger.
    #[error("a ledger already exists at {0}")]
    AlreadyInitialized(PathBuf),
    /// Written by a newer (or unknown) format.
    #[error(
        "data format version {found} is not supported (this build reads version {FORMAT_VERSION}); {}",
        if *found < FORMAT_VERSION { "upgrade it once with `actlog migrate` (one-way; back up the data directory first)" } else { "use a newer actlog" }
    )]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// The stored data contradicts itself. Never repaired silently.
    #[error("storage corruption: {0}")]
    Corruption(String),
    /// Another process holds the database.
    #[error("the data directory is in use by another process (is `actlog serve` running?): {0}")]
    Locked(String),
    /// RocksDB or file system failure.
    #[error("storage error: {0}")]
    Io(String),
    /// A previous write failed; the store must be reopened.
    #[error("the store stopped after a failed write; restart to recover from the last committed batch")]
    Poisoned,
    /// The store is opened read-only.
    #[error("the store is opened read-only")]
    ReadOnly,
    /// The ingest queue is full.
    #[error("the commit queue is full; retry later")]
    Busy,
    /// A refused request (admin operations).
    #[error("{message}")]
    Refused {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        let s = e.to_string();
        if s.contains("lock") && s.contains("LOCK") {
            Error::Locked(s)
        } else if s.to_lowercase().contains("corrupt") {
            Error::Corruption(s)
        } else {
            Error::Io(s)
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tuning and limits for an open store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sign a checkpoint at most this long after an append.
    pub checkpoint_interval: Duration,
    /// Requests waiting for the writer before `append` answers `Busy`.
    pub commit_queue_requests_max: usize,
    /// Events one group commit takes at most.
    pub group_events_max: usize,
    /// Open without the writer (readers beside a running server).
    pub read_only: bool,
    /// RocksDB memtables of all column families together, in bytes.
    pub memtable_bytes_max: usize,
    /// The block cache shared by all column families, in bytes.
    pub block_cache_bytes_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            checkpoint_interval: Duration::from_millis(1000),
            commit_queue_requests_max: 1024,
            group_events_max: 16 * 1024,
            read_only: false,
            memtable_bytes_max: DB_WRITE_BUFFER_BYTES_MAX,
            block_cache_bytes_max: BLOCK_CACHE_BYTES_MAX,
        }
    }
}

/// One receipt per submitted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The event id.
    pub event_id: String,
    /// Its seq (the original seq for duplicates).
    pub seq: u64,
    /// Its Merkle leaf hash. `None` only for a duplicate whose original is
    /// below the cold floor: the writer never waits on the archive, so the
    /// caller asks [`Store::leaf_hash`] for it.
    pub leaf_hash: Option<Hash>,
    /// Whether it was already in the ledger.
    pub duplicate: bool,
}

/// The outcome of an accepted append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Receipts in submission order.
    pub receipts: Vec<Receipt>,
    /// Tree size after the commit.
    pub tree_size: u64,
}

/// Why an append request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The same event id with a different payload.
    #[error("event_id `{event_id}` (item {index}) is already in the ledger with a different payload")]
    Conflict {
        /// Item index.
        index: usize,
        /// The id.
        event_id: String,
        /// Seq of the stored event (None when the first copy is in the same request).
        seq: Option<u64>,
    },
    /// The key was revoked between the check and the commit.
    #[error("the key that signed item {index} was revoked")]
    KeyRevoked {
        /// Item index.
        index: usize,
    },
    /// The token that authenticated an unsigned item was revoked before the commit.
    #[error("the token that authenticated item {index} was revoked")]
    TokenRevoked {
        /// Item index.
        index: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// The committed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Number of leaves.
    pub tree_size: u64,
    /// Chain hash of the last leaf (zeros when empty).
    pub chain_hash: Hash,
    /// Merkle root.
    pub root: Hash,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(72);
        v.extend_from_slice(&self.tree_size.to_be_bytes());
        v.extend_from_slice(&self.chain_hash);
        v.extend_from_slice(&self.root);
        v
    }
    fn decode(b: &[u8]) -> Option<Head> {
        if b.len() != 72 {
            return None;
        }
        Some(Head {
            tree_size: u64::from_be_bytes(b[..8].try_into().ok()?),
            chain_hash: b[8..40].try_into().ok()?,
            root: b[40..72].try_into().ok()?,
        })
    }
}

/// An administrative change, written as a ledger-signed leaf.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// Register a producer key.
    AddKey {
        /// Unique name.
        name: String,
        /// The PDP it speaks for.
        pdp_id: String,
        /// Raw public key.
        public_key: [u8; 32],
    },
    /// Revoke a producer key.
    RevokeKey {
        /// Its name.
        name: String,
    },
    /// Create a token (the caller made the secret; only its hash is kept).
    CreateToken {
        /// Unique name.
        name: String,
        /// Role.
        role: String,
        /// Bound PDP.
        pdp_id: Option<String>,
        /// SHA-256 of the secret.
        token_sha256: Hash,
        /// When it stops working (unix nanoseconds); `None` for no lifetime.
        expires_at_ns: Option<i64>,
    },
    /// Revoke a token.
    RevokeToken {
        /// Its name.
        name: String,
    },
}

pub(crate) struct Shared {
    pub(crate) db: DB,
    pub(crate) head: RwLock<Head>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) latest_checkpoint: RwLock<Option<(u64, String)>>,
    pub(crate) checkpoint_signal: (std::sync::Mutex<u64>, std::sync::Condvar),
    pub(crate) checkpoint_signed_at: std::sync::Mutex<Option<std::time::Instant>>,
    pub(crate) poisoned: std::sync::atomic::AtomicBool,
    /// The failed write found the disk full.
    pub(crate) disk_full: std::sync::atomic::AtomicBool,
    /// Synced writes since open (one per group commit).
    pub(crate) synced_writes: std::sync::atomic::AtomicU64,
    /// Seqs below this are read from `cold` (the archive); see `cold.rs`.
    pub(crate) cold_floor: std::sync::atomic::AtomicU64,
    /// Where seqs below the cold floor are read from, once attached.
    pub(crate) cold: std::sync::OnceLock<Arc<dyn ColdSource>>,
    /// Held by the one eviction that may run at a time.
    pub(crate) evicting: std::sync::Mutex<()>,
}

/// An open ledger.
pub struct Store {
    shared: Arc<Shared>,
    origin: String,
    verifier: VerifierKey,
    tx: Option<SyncSender<writer::Request>>,
    writer: Option<JoinHandle<()>>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("origin", &self.origin).field("data_dir", &self.data_dir).finish()
    }
}

/// Explicit RocksDB options, one comment per knob.
fn db_options(create: bool, opts: &Options) -> DbOptions {
    let mut o = DbOptions::default();
    o.create_if_missing(create);
    o.create_missing_column_families(create);
    // Everything the ledger writes is synced by the writer; the WAL is the
    // durability point, so it must never be disabled.
    o.set_manual_wal_flush(false);
    // Report corruption instead of skipping damaged records during WAL replay:
    // a torn tail write is the only thing recovery may drop, and RocksDB
    // drops it only when it was never acknowledged.
    o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    o.set_paranoid_checks(true);
    // Two cores: one background flush plus one compaction.
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    // Bigger memtables mean fewer, larger L0 files under steady ingest, but
    // all column families together stay under one budget, so memory is
    // bounded however the load spreads across them.
    o.set_write_buffer_size(memtable_bytes(opts));
    o.set_db_write_buffer_size(opts.memtable_bytes_max.max(DB_WRITE_BUFFER_BYTES_MIN));
    // Open table files are cached with their readers; without a bound that
    // memory grows with the data (seen as slow RSS growth in a 25-minute soak).
    o.set_max_open_files(OPEN_FILES_MAX);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
    o
}

/// Memtables of all column families together, in bytes (the default of
/// [`Options::memtable_bytes_max`]).
pub const DB_WRITE_BUFFER_BYTES_MAX: usize = 256 << 20;
/// The smallest memtable budget [`Options::memtable_bytes_max`] accepts.
pub const DB_WRITE_BUFFER_BYTES_MIN: usize = 16 << 20;
/// Table files RocksDB keeps open (and their readers in memory).
pub const OPEN_FILES_MAX: i32 = 256;
/// The block cache shared by all column families, in bytes (the default of
/// [`Options::block_cache_bytes_max`]).
pub const BLOCK_CACHE_BYTES_MAX: usize = 128 << 20;

/// One memtable: a quarter of the budget, at most 64 MiB, so a busy column
/// family flushes before it can take the whole budget.
fn memtable_bytes(opts: &Options) -> usize {
    (opts.memtable_bytes_max.max(DB_WRITE_BUFFER_BYTES_MIN) / 4).min(64 << 20)
}

fn cf_descriptors(opts: &Options) -> Vec<ColumnFamilyDescriptor> {
    // One cache for every column family (RocksDB would otherwise give each
    // table factory its own).
    let cache = rocksdb::Cache::new_lru_cache(opts.block_cache_bytes_max);
    ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, opts, &cache))).collect()
}

fn cf_options(name: &str, opts: &Options, cache: &rocksdb::Cache) -> DbOptions {
    let mut o = DbOptions::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    // Bloom filters only where point lookups miss: appends look up every
    // event id and nearly all are new. Leaves, envelopes and index entries
    // are keyed by seq or read by prefix scans, so a filter would only take
    // memory; tile reads hit, except below the cold floor, where the miss
    // is followed by an archive read that costs far more.
    match name {
        CF_LEAVES | CF_ENVELOPES | CF_INDEX => {}
        CF_TILES => {
            table.set_bloom_filter(10.0, false);
            o.set_optimize_filters_for_hits(true);
        }
        _ => table.set_bloom_filter(10.0, false),
    }
    // Partitioned index and filters: a lookup loads one small partition
    // instead of a table's whole index (megabytes for a large file), so a
    // block cache smaller than all the metadata does not thrash; the top
    // level stays pinned.
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_top_level_index_and_filter(true);
    table.set_block_cache(cache);
    o.set_block_based_table_factory(&table);
    o.set_write_buffer_size(memtable_bytes(opts));
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
    o
}

/// Reads the ledger seed from `ledger.key` (64 hex characters).
pub fn read_ledger_seed(data_dir: &Path) -> Result<[u8; 32]> {
    let path = data_dir.join(LEDGER_KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("cannot read the ledger key file {}: {e}", path.display())))?;
    let bytes = hex::decode(text.trim()).map_err(|_| Error::Corruption("the ledger key file is not hex".into()))?;
    bytes.try_into().map_err(|_| Error::Corruption("the ledger key file is not 32 bytes".into()))
}

/// Reads the witness seed from `witness.key`, or `None` when there is none.
pub fn read_witness_seed(data_dir: &Path) -> Result<Option<[u8; 32]>> {
    let path = data_dir.join(WITNESS_KEY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io(format!("cannot read the witness key file {}: {e}", path.display()))),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| Error::Corruption("the witness key file is not hex".into()))?;
    bytes.try_into().map(Some).map_err(|_| Error::Corruption("the witness key file is not 32 bytes".into()))
}

/// Writes a secret file with mode 0600, refusing to overwrite.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes()).map_err(|e| Error::Io(e.to_string()))?;
    f.sync_all().map_err(|e| Error::Io(e.to_string()))?;
    Ok(())
}

/// The default origin for a ledger public key.
pub fn default_origin(public_key: &[u8; 32]) -> String {
    format!("actlog.local/{}", &hex::encode(sha256(public_key))[..8])
}

/// Whether `dir` holds a ledger.
pub fn is_initialized(data_dir: &Path) -> bool {
    data_dir.join(DB_DIR).join("CURRENT").exists()
}

impl Store {
    /// Creates a ledger in `data_dir` from a ledger seed and origin, and opens it.
    /// The caller creates the first admin token with [`Store::admin`].
    pub fn init(data_dir: &Path, seed: [u8; 32], origin: Option<String>, opts: Options) -> Result<Store> {
        if is_initialized(data_dir) {
            return Err(Error::AlreadyInitialized(data_dir.to_path_buf()));
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", data_dir.display())))?;
        let public = sig::public_key_of(&seed);
        let origin = origin.unwrap_or_else(|| default_origin(&public));
        let key = PublicKey::from_bytes(&public).map_err(|e| Error::Io(format!("ledger key: {e}")))?;
        VerifierKey::new(&origin, key).map_err(|e| Error::Refused { code: "bad_origin", message: e.to_string() })?;
        write_secret_file(&data_dir.join(LEDGER_KEY_FILE), &format!("{}\n", hex::encode(seed)))?;
        let db = DB::open_cf_descriptors(&db_options(true, &opts), data_dir.join(DB_DIR), cf_descriptors(&opts))?;
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(&meta, META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
        wb.put_cf(&meta, META_ORIGIN, origin.as_bytes());
        wb.put_cf(&meta, META_LEDGER_PUBLIC_KEY, public);
        let head = Head { tree_size: 0, chain_hash: [0; 32], root: merkle::empty_root() };
        wb.put_cf(&meta, META_HEAD, head.encode());
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)?;
        drop(db);
        Store::open(data_dir, opts)
    }

    /// Opens an existing ledger, checking its format and head.
    pub fn open(data_dir: &Path, opts: Options) -> Result<Store> {
        if !is_initialized(data_dir) {
            return Err(Error::NotInitialized(data_dir.to_path_buf()));
        }
        let path = data_dir.join(DB_DIR);
        let mut db = open_db(&path, &opts)?;
        let version = format_version(&db)?;
        if version != FORMAT_VERSION {
            return Err(Error::FormatVersion { found: version });
        }
        if !opts.read_only && db.cf_handle(CF_NODES_V1).is_some() {
            // A migration that stopped after its version bump: finish it.
            db.drop_cf(CF_NODES_V1)?;
        }
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let origin = String::from_utf8(
            db.get_cf(&meta, META_ORIGIN)?.ok_or_else(|| Error::Corruption("origin is missing".into()))?,
        )
        .map_err(|_| Error::Corruption("origin is not UTF-8".into()))?;
        let public: [u8; 32] = db
            .get_cf(&meta, META_LEDGER_PUBLIC_KEY)?
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::Corruption("ledger public key is missing or malformed".into()))?;
        let key = PublicKey::from_bytes(&public).map_err(|e| Error::Corruption(format!("ledger public key: {e}")))?;
        let verifier = VerifierKey::new(&origin, key).map_err(|e| Error::Corruption(format!("origin: {e}")))?;
        let head_bytes = db.get_cf(&meta, META_HEAD)?.ok_or_else(|| Error::Corruption("head is missing".into()))?;
        let head = Head::decode(&head_bytes).ok_or_else(|| Error::Corruption("head is malformed".into()))?;
        let registry = load_registry(&db)?;
        let latest = latest_checkpoint(&db)?;
        let floor = cold::stored_floor(&db)?;
        if floor > 0 && floor >= head.tree_size {
            return Err(Error::Corruption(format!(
                "the cold floor ({floor}) is not below the head ({})",
                head.tree_size
            )));
        }
        let shared = Arc::new(Shared {
            db,
            head: RwLock::new(head.clone()),
            registry: RwLock::new(registry),
            latest_checkpoint: RwLock::new(latest.clone()),
            checkpoint_signal: (
                std::sync::Mutex::new(latest.as_ref().map(|(s, _)| *s).unwrap_or(0)),
                std::sync::Condvar::new(),
            ),
            checkpoint_signed_at: std::sync::Mutex::new(None),
            poisoned: std::sync::atomic::AtomicBool::new(false),
            disk_full: std::sync::atomic::AtomicBool::new(false),
            synced_writes: std::sync::atomic::AtomicU64::new(0),
            cold_floor: std::sync::atomic::AtomicU64::new(floor),
            cold: Default::default(),
            evicting: Default::default(),
        });
        let (frontier, edges) = check_head(&shared.db, &head)?;
        if let Some((size, note)) = &latest {
            let cp =
                Checkpoint::open(note, &verifier).map_err(|e| Error::Corruption(format!("latest checkpoint: {e}")))?;
            if *size != cp.tree_size || cp.tree_size > head.tree_size {
                return Err(Error::Corruption(format!(
                    "latest checkpoint covers {} leaves but the head has {}",
                    cp.tree_size, head.tree_size
                )));
            }
            let reader = Tiles::new(&shared.db);
            if merkle::root(&reader, cp.tree_size)? != cp.root {
                return Err(Error::Corruption(format!(
                    "latest checkpoint root does not match the stored tree at size {}",
                    cp.tree_size
                )));
            }
        }
        let mut store = Store { shared, origin, verifier, tx: None, writer: None, data_dir: data_dir.to_path_buf() };
        if !opts.read_only {
            let seed = read_ledger_seed(data_dir)?;
            if sig::public_key_of(&seed) != public {
                return Err(Error::Corruption("the ledger key file does not match the ledger's public key".into()));
            }
            let (tx, rx) = mpsc::sync_channel(opts.commit_queue_requests_max);
            let state = writer::WriterState::new(
                Arc::clone(&store.shared),
                seed,
                store.origin.clone(),
                head,
                (frontier, edges),
                latest.map(|(s, _)| s),
                &opts,
            );
            let handle = std::thread::Builder::new()
                .name("actlog-writer".into())
                .spawn(move || writer::run(state, rx))
                .map_err(|e| Error::Io(e.to_string()))?;
            store.tx = Some(tx);
            store.writer = Some(handle);
        }
        Ok(store)
    }

    /// The log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The ledger's verifier key.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The committed head.
    pub fn head(&self) -> Head {
        self.shared.head.read().expect("head lock").clone()
    }

    /// A snapshot of the registry.
    pub fn registry(&self) -> Registry {
        self.shared.registry.read().expect("registry lock").clone()
    }

    /// Runs `f` with the registry, without cloning it.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.shared.registry.read().expect("registry lock"))
    }

    fn send(&self, req: writer::Request, block: bool) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::ReadOnly)?;
        if block {
            tx.send(req).map_err(|_| Error::Poisoned)
        } else {
            tx.try_send(req).map_err(|e| match e {
                mpsc::TrySendError::Full(_) => Error::Busy,
                mpsc::TrySendError::Disconnected(_) => Error::Poisoned,
            })
        }
    }

    /// Appends a checked batch atomically, waiting for the synced commit.
    /// Blocks while the commit queue is full.
    pub fn append(&self, items: Vec<Checked>) -> Result<Appended, AppendError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(
            writer::Request::Append {
                items,
                reply: Box::new(move |r| {
                    let _ = reply.send(r);
                }),
            },
            true,
        )?;
        rx.recv().map_err(|_| AppendError::Store(Error::Poisoned))?
    }

    /// Appends without blocking: `done` runs on the writer thread after the
    /// synced commit (or refusal). Answers [`Error::Busy`] when the queue is full.
    pub fn append_async(
        &self,
        items: Vec<Checked>,
        done: Box<dyn FnOnce(Result<Appended, AppendError>) + Send>,
    ) -> Result<()> {
        self.send(writer::Request::Append { items, reply: done }, false)
    }

    /// Applies an administrative change as a ledger-signed leaf. Returns its seq.
    pub fn admin(&self, op: AdminOp) -> Result<u64> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(writer::Request::Admin { op, reply }, true)?;
        rx.recv().map_err(|_| Error::Poisoned)?
    }

    /// Signs a checkpoint of the current head now, if it is not covered yet.
    /// Returns the latest checkpoint.
    pub fn checkpoint_now(&self) -> Result<Option<(u64, String)>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(writer::Request::Checkpoint { reply }, true)?;
        rx.recv().map_err(|_| Error::Poisoned)?
    }

    /// Waits until a checkpoint covers `tree_size` or `timeout` passes.
    pub fn wait_checkpoint(&self, tree_size: u64, timeout: Duration) -> Option<(u64, String)> {
        let (lock, cv) = &self.shared.checkpoint_signal;
        let guard = lock.lock().expect("signal lock");
        let (_guard, _) = cv.wait_timeout_while(guard, timeout, |covered| *covered < tree_size).expect("signal lock");
        self.latest_checkpoint().filter(|(s, _)| *s >= tree_size)
    }

    /// The latest signed checkpoint: (tree size, note text).
    pub fn latest_checkpoint(&self) -> Option<(u64, String)> {
        self.shared.latest_checkpoint.read().expect("checkpoint lock").clone()
    }

    /// Synced writes since open: one per group commit, however many requests it carried.
    pub fn synced_writes(&self) -> u64 {
        self.shared.synced_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// RocksDB's own memory accounting, summed over column families:
    /// (`memtables`, `table_readers`, `block_cache`, `block_cache_pinned`) in bytes.
    pub fn memory_stats(&self) -> Vec<(&'static str, u64)> {
        let db = &self.shared.db;
        let sum = |prop: &str| -> u64 {
            ALL_CFS.iter().filter_map(|cf| db.property_int_value_cf(self.cf(cf), prop).ok().flatten()).sum()
        };
        // The block cache is shared, so it is read once, not summed.
        let once =
            |prop: &str| -> u64 { db.property_int_value_cf(self.cf(CF_LEAVES), prop).ok().flatten().unwrap_or(0) };
        vec![
            ("memtables", sum("rocksdb.cur-size-all-mem-tables")),
            ("table_readers", sum("rocksdb.estimate-table-readers-mem")),
            ("block_cache", once("rocksdb.block-cache-usage")),
            ("block_cache_pinned", once("rocksdb.block-cache-pinned-usage")),
        ]
    }

    /// Whether a failed write stopped the writer (the store must be reopened).
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the failed write that stopped the writer found the disk full.
    pub fn is_disk_full(&self) -> bool {
        self.shared.disk_full.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Time since this process signed a checkpoint (None before the first).
    pub fn checkpoint_age(&self) -> Option<Duration> {
        self.shared.checkpoint_signed_at.lock().expect("checkpoint time lock").map(|t| t.elapsed())
    }

    /// Every stored checkpoint with when it was signed (unix nanos; `None`
    /// for checkpoints written before the time was recorded), oldest first.
    pub fn checkpoints_with_time(&self) -> Result<Vec<(u64, String, Option<u64>)>> {
        let meta = self.cf(CF_META);
        let list = self.checkpoints()?;
        let keys: Vec<_> = list.iter().map(|(size, _)| (&meta, encode_checkpoint_time(*size))).collect();
        let times = self.shared.db.multi_get_cf(keys);
        list.into_iter()
            .zip(times)
            .map(|((size, note), t)| {
                let t = match t? {
                    Some(v) => Some(u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                        Error::Corruption(format!("checkpoint time of tree size {size} is malformed"))
                    })?)),
                    None => None,
                };
                Ok((size, note, t))
            })
            .collect()
    }

    /// Calls `f` with every committed event in `[from, to)`, in seq order,
    /// reading leaves and envelopes with two forward iterators. `to` is
    /// clamped to the head read at the start, so the scan sees a prefix that
    /// was committed as a whole.
    pub fn scan(&self, from: u64, to: u64, mut f: impl FnMut(StoredEvent) -> Result<()>) -> Result<()> {
        let to = to.min(self.head().tree_size);
        if from >= to {
            return Ok(());
        }
        let db = &self.shared.db;
        // The snapshot first, then the floor: see `cold.rs`.
        let snap = db.snapshot();
        let floor = self.cold_floor();
        let mut seq = from;
        while seq < to.min(floor) {
            let end = (seq + COLD_CHUNK).min(to.min(floor));
            for ev in self.cold_events(&(seq..end).collect::<Vec<_>>())? {
                f(ev)?;
            }
            seq = end;
        }
        if seq >= to {
            return Ok(());
        }
        let opts = || {
            let mut o = rocksdb::ReadOptions::default();
            o.set_iterate_upper_bound(encode_seq(to).to_vec());
            // A bulk read must not evict the point-lookup working set.
            o.fill_cache(false);
            o.set_snapshot(&snap);
            o
        };
        let start = encode_seq(seq);
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut leaves = db.iterator_cf_opt(&self.cf(CF_LEAVES), opts(), mode);
        let mut envelopes = db.iterator_cf_opt(&self.cf(CF_ENVELOPES), opts(), mode);
        for seq in seq..to {
            let (lk, lv) =
                leaves.next().ok_or_else(|| Error::Corruption(format!("leaf {seq} is missing below the head")))??;
            let (ek, ev) = envelopes
                .next()
                .ok_or_else(|| Error::Corruption(format!("envelope {seq} is missing below the head")))??;
            if decode_seq(&lk) != Some(seq) {
                return Err(Error::Corruption(format!("leaf {seq} is missing below the head")));
            }
            if decode_seq(&ek) != Some(seq) {
                return Err(Error::Corruption(format!("envelope {seq} is missing below the head")));
            }
            f(decode_stored(seq, &lv, ev.into_vec())?)?;
        }
        Ok(())
    }

    /// Reads committed events by seq with one batched point lookup; seqs at
    /// or past the head are skipped. Seqs below the cold floor are read
    /// from the archive and checked against the tree.
    pub fn events_at(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        let size = self.head().tree_size;
        let db = &self.shared.db;
        let snap = db.snapshot();
        let floor = self.cold_floor();
        let seqs: Vec<u64> = seqs.iter().copied().filter(|s| *s < size).collect();
        let (mut cold_seqs, hot_seqs): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|s| **s < floor);
        cold_seqs.sort_unstable();
        cold_seqs.dedup();
        let cold: std::collections::HashMap<u64, StoredEvent> =
            self.cold_events(&cold_seqs)?.into_iter().map(|e| (e.seq, e)).collect();
        let (lcf, ecf) = (self.cf(CF_LEAVES), self.cf(CF_ENVELOPES));
        let ro = || {
            let mut o = rocksdb::ReadOptions::default();
            o.set_snapshot(&snap);
            o
        };
        let leaves = db.multi_get_cf_opt(hot_seqs.iter().map(|s| (&lcf, encode_seq(*s))), &ro());
        let envelopes = db.multi_get_cf_opt(hot_seqs.iter().map(|s| (&ecf, encode_seq(*s))), &ro());
        let mut hot = hot_seqs.iter().zip(leaves).zip(envelopes);
        let mut out = Vec::with_capacity(seqs.len());
        for seq in &seqs {
            if *seq < floor {
                let ev = cold
                    .get(seq)
                    .ok_or_else(|| Error::Corruption(format!("leaf {seq} is missing from the archive")))?;
                out.push(ev.clone());
                continue;
            }
            let ((_, l), e) = hot.next().expect("one hot read per hot seq");
            let l = l?.ok_or_else(|| Error::Corruption(format!("leaf {seq} is missing below the head")))?;
            let e = e?.ok_or_else(|| Error::Corruption(format!("envelope {seq} is missing below the head")))?;
            out.push(decode_stored(*seq, &l, e)?);
        }
        Ok(out)
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>> {
        let cf = self.cf(CF_CHECKPOINTS);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let size = decode_seq(&k).ok_or_else(|| Error::Corruption("checkpoint key is malformed".into()))?;
            let note = String::from_utf8(v.to_vec())
                .map_err(|_| Error::Corruption(format!("checkpoint {size} is not UTF-8")))?;
            out.push((size, note));
        }
        Ok(out)
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.shared.db.cf_handle(name).expect("column family exists")
    }

    /// Reads one event by seq, if committed.
    pub fn event(&self, seq: u64) -> Result<Option<StoredEvent>> {
        if seq >= self.head().tree_size {
            return Ok(None);
        }
        Ok(self.events_at(&[seq])?.pop())
    }

    /// Reads one event by event id.
    pub fn event_by_id(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        match self.seq_of(event_id)? {
            Some((seq, _)) => self.event(seq),
            None => Ok(None),
        }
    }

    /// The seq and payload hash of an event id, if committed.
    pub fn seq_of(&self, event_id: &str) -> Result<Option<(u64, Hash)>> {
        let v = self.shared.db.get_cf(&self.cf(CF_EVENT_IDS), event_id.as_bytes())?;
        let Some(v) = v else { return Ok(None) };
        let (seq, hash) = decode_event_id_value(&v)
            .ok_or_else(|| Error::Corruption(format!("event id index entry for `{event_id}` is malformed")))?;
        Ok((seq < self.head().tree_size).then_some((seq, hash)))
    }

    /// The committed event ids that start with `prefix`, with their seqs,
    /// in id order, at most `limit` (an id scheme with a common prefix,
    /// such as the spans of one trace, is found in one seek).
    pub fn event_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<(String, u64)>> {
        let size = self.head().tree_size;
        let cf = self.cf(CF_EVENT_IDS);
        let mode = rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(&cf, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            let id = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corruption("an event id in the index is not UTF-8".into()))?;
            let (seq, _) = decode_event_id_value(&v)
                .ok_or_else(|| Error::Corruption(format!("event id index entry for `{id}` is malformed")))?;
            if seq < size {
                out.push((id, seq));
            }
        }
        Ok(out)
    }

    /// The seq of the committed event that `item` would conflict with: one
    /// stored under its event id with another payload (and not a record of
    /// the same raw OPA event). The writer refuses such an item; `import`
    /// asks first, so that a file is refused before anything of it is
    /// written. The writer's own decision stays the final one.
    pub fn stored_conflict(&self, item: &Checked) -> Result<Option<u64>> {
        match self.seq_of(&item.fields().event_id)? {
            Some((seq, payload)) if writer::conflicts_with_stored(&self.shared.db, seq, &payload, item)? => {
                Ok(Some(seq))
            }
            _ => Ok(None),
        }
    }

    /// Seqs of committed events whose indexed field equals `value`,
    /// ascending: at most `max + 1` of them, so a caller learns that there
    /// are more than `max` without the store collecting every match.
    pub fn index_lookup(&self, field: IndexField, value: &str, max: usize) -> Result<Vec<u64>> {
        let prefix = index_prefix(field, value);
        let size = self.head().tree_size;
        let mut out = Vec::new();
        let cf = self.cf(CF_INDEX);
        let iter = self.shared.db.iterator_cf(&cf, rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (_, _, seq) = decode_index(&k).ok_or_else(|| Error::Corruption("index key is malformed".into()))?;
            if seq < size {
                out.push(seq);
                if out.len() > max {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The Merkle leaf hash of `seq` (below the head). Below the cold floor
    /// it may read its level-0 tile from the archive.
    pub fn leaf_hash(&self, seq: u64) -> Result<Hash> {
        self.check_size(seq + 1)?;
        Tiles::of(&self.shared).node(0, seq)
    }

    /// The Merkle root of the tree of `tree_size` leaves (≤ the head).
    pub fn root_at(&self, tree_size: u64) -> Result<Hash> {
        self.check_size(tree_size)?;
        merkle::root(&Tiles::of(&self.shared), tree_size)
    }

    fn check_size(&self, tree_size: u64) -> Result<()> {
        let size = self.head().tree_size;
        if tree_size > size {
            return Err(Error::Refused {
                code: "tree_size_out_of_range",
                message: format!("tree size {tree_size} is larger than the ledger ({size})"),
            });
        }
        Ok(())
    }

    /// The audit path of `seq` in the tree of `tree_size` leaves. O(log n) reads.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<(Hash, Vec<Hash>)> {
        self.check_size(tree_size)?;
        let reader = Tiles::of(&self.shared);
        let proof = merkle::inclusion_proof(&reader, seq, tree_size).map_err(proof_error)?;
        Ok((reader.node(0, seq)?, proof))
    }

    /// The consistency proof between two tree sizes. O(log n) reads.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        merkle::consistency_proof(&Tiles::of(&self.shared), old, new).map_err(proof_error)
    }

    /// Stores witnesses' cosignatures of the checkpoint of `tree_size`,
    /// durably (a synced write). The caller has verified them.
    pub fn put_cosignatures(&self, tree_size: u64, lines: &[SigLine]) -> Result<()> {
        let cp = self.shared.db.get_cf(&self.cf(CF_CHECKPOINTS), encode_seq(tree_size))?;
        if cp.is_none() {
            return Err(Error::Refused {
                code: "checkpoint_not_found",
                message: format!("no checkpoint of tree size {tree_size} is stored"),
            });
        }
        let meta = self.cf(CF_META);
        let mut wb = rocksdb::WriteBatch::default();
        for l in lines {
            wb.put_cf(&meta, encode_cosignature(tree_size, &l.name), l.to_line().trim_end().as_bytes());
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        Ok(self.shared.db.write_opt(wb, &wo)?)
    }

    /// The stored checkpoint of `tree_size` with every stored cosignature
    /// of it appended, or `None` when no checkpoint of that size is stored.
    pub fn cosigned_checkpoint(&self, tree_size: u64) -> Result<Option<String>> {
        let Some(note) = self.shared.db.get_cf(&self.cf(CF_CHECKPOINTS), encode_seq(tree_size))? else {
            return Ok(None);
        };
        let mut note =
            String::from_utf8(note).map_err(|_| Error::Corruption(format!("checkpoint {tree_size} is not UTF-8")))?;
        let prefix = encode_cosignature(tree_size, "");
        let mode = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        for item in self.shared.db.iterator_cf(&self.cf(CF_META), mode) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let line = std::str::from_utf8(&v)
                .ok()
                .filter(|l| actlog_core::witness::parse_sig_line(l).is_ok())
                .ok_or_else(|| Error::Corruption(format!("a cosignature at tree size {tree_size} is malformed")))?;
            note.push_str(line);
            note.push('\n');
        }
        Ok(Some(note))
    }

    /// Every stored cosignature, by tree size (ascending).
    pub fn cosignatures(&self) -> Result<std::collections::BTreeMap<u64, Vec<SigLine>>> {
        let meta = self.cf(CF_META);
        let mut out: std::collections::BTreeMap<u64, Vec<SigLine>> = Default::default();
        let mode = rocksdb::IteratorMode::From(META_COSIGNATURE, rocksdb::Direction::Forward);
        for item in self.shared.db.iterator_cf(&meta, mode) {
            let (k, v) = item?;
            let Some(rest) = k.strip_prefix(META_COSIGNATURE) else { break };
            let (size, name) =
                decode_cosignature(rest).ok_or_else(|| Error::Corruption("a cosignature key is malformed".into()))?;
            let line = std::str::from_utf8(&v)
                .ok()
                .and_then(|l| actlog_core::witness::parse_sig_line(l).ok())
                .filter(|l| l.name == name)
                .ok_or_else(|| {
                    Error::Corruption(format!("the cosignature of `{name}` at tree size {size} is malformed"))
                })?;
            out.entry(size).or_default().push(line);
        }
        Ok(out)
    }

    /// Keys and key+value bytes stored in each column family, counted by a
    /// full scan (for sizing; `actlog info --storage`).
    pub fn storage_stats(&self) -> Result<Vec<(&'static str, u64, u64)>> {
        let mut out = Vec::new();
        for name in ALL_CFS {
            let mut o = rocksdb::ReadOptions::default();
            o.fill_cache(false);
            let (mut keys, mut bytes) = (0u64, 0u64);
            for item in self.shared.db.iterator_cf_opt(&self.cf(name), o, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                keys += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            out.push((*name, keys, bytes));
        }
        Ok(out)
    }

    /// The bytes of one tlog tile (contract §11), for a tree of `tree_size`
    /// leaves (≤ the head): the tile's hashes back to back, or, for an entry
    /// bundle, its leaves behind their u16 lengths. One range read.
    /// Refused with `tile_out_of_range` when the tree does not hold every
    /// item of the tile.
    pub fn tile(&self, tile: &Tile, tree_size: u64) -> Result<Vec<u8>> {
        self.check_size(tree_size)?;
        if tile.leaves_needed().is_none_or(|n| n > tree_size) {
            return Err(Error::Refused {
                code: "tile_out_of_range",
                message: format!("tile/{} needs more leaves than the tree of {tree_size} holds", tile.path()),
            });
        }
        let (first, width) = (tile.first(), u64::from(tile.width));
        let db = &self.shared.db;
        if let TileKind::Hashes(l) = tile.kind {
            // One read: the stored tile holds at least `width` hashes.
            let want = usize::from(tile.width) * 32;
            let Some(bytes) = db.get_pinned_cf(&self.cf(CF_TILES), encode_tile(l, tile.index))? else {
                if l == 0 && cold::tile_is_cold(&self.shared, tile.index) {
                    let hashes = Tiles::of(&self.shared).entries(0, tile.index, usize::from(tile.width))?;
                    return Ok(hashes.iter().take(usize::from(tile.width)).flatten().copied().collect());
                }
                return Err(Error::Corruption(format!("tile ({l}, {}) is missing below the head", tile.index)));
            };
            if bytes.len() < want || bytes.len() % 32 != 0 || bytes.len() > 8192 {
                return Err(Error::Corruption(format!("tile ({l}, {}) has {} bytes", tile.index, bytes.len())));
            }
            return Ok(bytes[..want].to_vec());
        }
        // The snapshot first, then the floor: see `cold.rs`.
        let snap = db.snapshot();
        if first < self.cold_floor() {
            // Entries reach below the floor: read them through the archive.
            let seqs: Vec<u64> = (first..first + width).collect();
            let mut out = Vec::with_capacity(width as usize * 160);
            for ev in self.events_at(&seqs)? {
                tiles::push_entry(&mut out, &ev.leaf_bytes);
            }
            return Ok(out);
        }
        let (cf, start, end) = (self.cf(CF_LEAVES), encode_seq(first).to_vec(), encode_seq(first + width).to_vec());
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        opts.set_snapshot(&snap);
        let mut it = db.iterator_cf_opt(&cf, opts, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        let mut out = Vec::with_capacity(width as usize * 160);
        for i in first..first + width {
            let (k, v) =
                it.next().ok_or_else(|| Error::Corruption(format!("leaf {i} is missing below the head")))??;
            if decode_seq(&k) != Some(i) {
                return Err(Error::Corruption(format!("leaf {i} is missing below the head")));
            }
            if v.len() < 32 || v.len() - 32 > usize::from(u16::MAX) {
                return Err(Error::Corruption(format!("leaf {i} has an impossible length")));
            }
            tiles::push_entry(&mut out, &v[32..]);
        }
        Ok(out)
    }

    /// Waits for queued writes, signs a final checkpoint, and stops the writer.
    pub fn close(mut self) -> Result<()> {
        let result = if self.tx.is_some() { self.checkpoint_now().map(|_| ()) } else { Ok(()) };
        let writable = self.tx.is_some();
        self.stop_writer();
        if writable && result.is_ok() {
            // Flushing memtables spares the next open (and readers beside a
            // server) from replaying the whole write-ahead log.
            for name in ALL_CFS {
                self.shared.db.flush_cf(self.cf(name))?;
            }
        }
        result
    }

    fn stop_writer(&mut self) {
        self.tx = None;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }

    pub(crate) fn db(&self) -> &DB {
        &self.shared.db
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

fn proof_error(e: merkle::ProofError<Error>) -> Error {
    match e {
        merkle::ProofError::Range(m) => Error::Refused { code: "seq_out_of_range", message: m },
        merkle::ProofError::Store(e) => e,
    }
}

pub(crate) fn decode_event_id_value(v: &[u8]) -> Option<(u64, Hash)> {
    if v.len() != 40 {
        return None;
    }
    Some((u64::from_be_bytes(v[..8].try_into().ok()?), v[8..].try_into().ok()?))
}

pub(crate) fn decode_stored(seq: u64, leaf_value: &[u8], envelope: Vec<u8>) -> Result<StoredEvent> {
    if leaf_value.len() < 32 {
        return Err(Error::Corruption(format!("leaf {seq} is truncated")));
    }
    let chain_hash: Hash = leaf_value[..32].try_into().expect("32 bytes");
    let leaf_bytes = leaf_value[32..].to_vec();
    let leaf = Leaf::decode(&leaf_bytes).map_err(|e| Error::Corruption(format!("leaf {seq}: {e}")))?;
    if leaf.seq != seq {
        return Err(Error::Corruption(format!("leaf stored at seq {seq} says seq {}", leaf.seq)));
    }
    Ok(StoredEvent { seq, leaf_hash: merkle::leaf_hash(&leaf_bytes), leaf, leaf_bytes, chain_hash, envelope })
}

/// Reads Merkle nodes from the `tiles` column family: node (level, index)
/// is one entry of a tile (level a multiple of 8) or the root of a run of
/// 2, 4 … 128 entries of one tile. The tiles read are kept for the life of
/// the reader, so a proof reads each tile once.
pub(crate) struct Tiles<'a> {
    db: &'a DB,
    /// Where full level-0 tiles below the cold floor are read from, and
    /// the floor; `None` at open, before a cold source can be attached.
    shared: Option<&'a Shared>,
    read: std::cell::RefCell<Vec<ReadTile>>,
}

/// A tile a reader has read: (tile level, tile index) and its hashes.
type ReadTile = ((u8, u64), Arc<Vec<Hash>>);

/// Tiles one reader keeps (a proof touches at most two per tile level).
const READER_TILES_MAX: usize = 32;

impl<'a> Tiles<'a> {
    /// A reader of RocksDB's tiles only (recovery, migration).
    pub(crate) fn new(db: &'a DB) -> Tiles<'a> {
        Tiles { db, shared: None, read: Default::default() }
    }

    /// A reader that also finds the level-0 tiles that left RocksDB with
    /// their leaves (`cold.rs`), each checked against the level-1 tile.
    pub(crate) fn of(shared: &'a Shared) -> Tiles<'a> {
        Tiles { db: &shared.db, shared: Some(shared), read: Default::default() }
    }

    /// The hashes of tile (l, n); at least `need` of them must be stored.
    fn entries(&self, l: u8, n: u64, need: usize) -> Result<Arc<Vec<Hash>>> {
        if let Some((_, t)) = self.read.borrow().iter().find(|(k, t)| *k == (l, n) && t.len() >= need) {
            return Ok(Arc::clone(t));
        }
        let cf = self.db.cf_handle(CF_TILES).expect("tiles cf");
        let hashes = match self.db.get_pinned_cf(&cf, encode_tile(l, n))? {
            Some(v) => {
                if v.is_empty() || v.len() % 32 != 0 || v.len() > 8192 {
                    return Err(Error::Corruption(format!("Merkle tile ({l}, {n}) is malformed ({} bytes)", v.len())));
                }
                Arc::new(tiles::hashes_of(&v))
            }
            // Evicted with its leaves: the floor was raised before the
            // delete, so a miss below the floor is read from the archive.
            None => match self.shared.filter(|sh| l == 0 && cold::tile_is_cold(sh, n)) {
                Some(sh) => Arc::new(cold::checked_cold_tile(sh, self, n)?),
                None => return Err(Error::Corruption(format!("Merkle tile ({l}, {n}) is missing"))),
            },
        };
        if hashes.len() < need {
            return Err(Error::Corruption(format!(
                "Merkle tile ({l}, {n}) holds {} hashes, {need} are needed",
                hashes.len()
            )));
        }
        let mut read = self.read.borrow_mut();
        if read.len() == READER_TILES_MAX {
            read.remove(0);
        }
        read.push(((l, n), Arc::clone(&hashes)));
        Ok(hashes)
    }
}

impl NodeReader for Tiles<'_> {
    type Error = Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        let (l, n, range) = tiles::node_location(level, index);
        let hashes = self.entries(l, n, range.end)?;
        Ok(tiles::fold(&hashes[range]))
    }
}

/// Recovery check: the head must match the last leaf, no leaf may lie beyond
/// it, and the stored Merkle nodes must give the head's root.
fn check_head(db: &DB, head: &Head) -> Result<(Frontier, TileEdges)> {
    let leaves = db.cf_handle(CF_LEAVES).expect("leaves cf");
    let mut last = db.iterator_cf(&leaves, rocksdb::IteratorMode::End);
    match last.next().transpose()? {
        None => {
            if head.tree_size != 0 {
                return Err(Error::Corruption(format!("head says {} leaves but none are stored", head.tree_size)));
            }
            if head.chain_hash != [0; 32] || head.root != merkle::empty_root() {
                return Err(Error::Corruption("the empty ledger's head is not the empty head".into()));
            }
        }
        Some((k, v)) => {
            let seq = decode_seq(&k).ok_or_else(|| Error::Corruption("leaf key is malformed".into()))?;
            if seq + 1 != head.tree_size {
                return Err(Error::Corruption(format!(
                    "the last stored leaf is seq {seq} but the head says {} leaves",
                    head.tree_size
                )));
            }
            if v.len() < 32 || v[..32] != head.chain_hash {
                return Err(Error::Corruption(format!("the head's chain hash does not match leaf {seq}")));
            }
        }
    }
    drop(last);
    let reader = Tiles::new(db);
    let frontier = Frontier::load(&reader, head.tree_size)?;
    if frontier.root() != head.root {
        return Err(Error::Corruption("the head's root does not match the stored Merkle tiles".into()));
    }
    let edges = TileEdges::load(head.tree_size, |l, n, width| {
        let hashes = reader.entries(l, n, width)?;
        if hashes.len() != width {
            return Err(Error::Corruption(format!(
                "the open Merkle tile ({l}, {n}) holds {} hashes; the head implies {width}",
                hashes.len()
            )));
        }
        Ok(hashes.to_vec())
    })?;
    Ok((frontier, edges))
}

/// Opens the database with every column family it has: the current ones,
/// and those of an older format (so its version can be read and migrated).
fn open_db(path: &Path, opts: &Options) -> Result<DB> {
    let existing = DB::list_cf(&DbOptions::default(), path).unwrap_or_default();
    let mut cfs: Vec<ColumnFamilyDescriptor> =
        cf_descriptors(opts).into_iter().filter(|d| existing.iter().any(|e| e == d.name())).collect();
    for name in existing.iter().filter(|e| *e != "default" && !ALL_CFS.contains(&e.as_str())) {
        cfs.push(ColumnFamilyDescriptor::new(name, DbOptions::default()));
    }
    Ok(if opts.read_only {
        DB::open_cf_descriptors_read_only(&db_options(false, opts), path, cfs, false)?
    } else {
        DB::open_cf_descriptors(&db_options(false, opts), path, cfs)?
    })
}

fn format_version(db: &DB) -> Result<u32> {
    let meta = db.cf_handle(CF_META).ok_or_else(|| Error::Corruption("the meta column family is missing".into()))?;
    let version =
        db.get_cf(&meta, META_FORMAT_VERSION)?.ok_or_else(|| Error::Corruption("format version is missing".into()))?;
    Ok(u32::from_be_bytes(
        version.as_slice().try_into().map_err(|_| Error::Corruption("format version is malformed".into()))?,
    ))
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The format found.
    pub from: u32,
    /// Leaves in the ledger.
    pub tree_size: u64,
    /// Tiles written.
    pub tiles: u64,
}

/// Upgrades a format-1 data directory to format 2, one way: the `nodes`
/// column family (every Merkle node) becomes `tiles` (tlog tiles of 256
/// hashes). Tiles are written and synced first, then the version, then
/// `nodes` is dropped; a run that stops midway is simply run again (and an
/// `open` after the version bump finishes the drop). The new tiles are
/// checked against the head's root before the version changes.
pub fn migrate(data_dir: &Path, progress: &dyn Fn(u64, u64)) -> Result<Migrated> {
    if !is_initialized(data_dir) {
        return Err(Error::NotInitialized(data_dir.to_path_buf()));
    }
    let path = data_dir.join(DB_DIR);
    let opts = Options::default();
    let mut db = open_db(&path, &opts)?;
    let version = format_version(&db)?;
    if version == FORMAT_VERSION {
        if db.cf_handle(CF_NODES_V1).is_some() {
            db.drop_cf(CF_NODES_V1)?;
        }
        return Ok(Migrated { from: version, tree_size: 0, tiles: 0 });
    }
    if version != 1 {
        return Err(Error::FormatVersion { found: version });
    }
    if db.cf_handle(CF_TILES).is_none() {
        let cache = rocksdb::Cache::new_lru_cache(opts.block_cache_bytes_max);
        db.create_cf(CF_TILES, &cf_options(CF_TILES, &opts, &cache))?;
    }
    let (head, written) = write_tiles(&db, progress)?;
    db.drop_cf(CF_NODES_V1)?;
    Ok(Migrated { from: 1, tree_size: head.tree_size, tiles: written })
}

/// Writes format 2's tiles from format 1's nodes, checks them against the
/// head, and bumps the version (see [`migrate`]).
fn write_tiles(db: &DB, progress: &dyn Fn(u64, u64)) -> Result<(Head, u64)> {
    let meta = db.cf_handle(CF_META).expect("meta cf");
    let head_bytes = db.get_cf(&meta, META_HEAD)?.ok_or_else(|| Error::Corruption("head is missing".into()))?;
    let head = Head::decode(&head_bytes).ok_or_else(|| Error::Corruption("head is malformed".into()))?;
    let nodes = db.cf_handle(CF_NODES_V1).ok_or_else(|| Error::Corruption("format 1 without `nodes`".into()))?;
    let tiles_cf = db.cf_handle(CF_TILES).expect("tiles cf");
    let mut written = 0u64;
    let total: u64 = (0..=tiles::TILE_LEVEL_MAX)
        .map(|l| head.tree_size >> (u32::from(l) * u32::from(tiles::TILE_HEIGHT)))
        .take_while(|m| *m > 0)
        .map(|m| m.div_ceil(tiles::TILE_WIDTH))
        .sum();
    for l in 0..=tiles::TILE_LEVEL_MAX {
        let level = l * tiles::TILE_HEIGHT;
        let count = head.tree_size >> u32::from(level);
        if count == 0 {
            break;
        }
        let start = encode_node(level, 0);
        let mut it = db.iterator_cf(&nodes, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        let mut batch = rocksdb::WriteBatch::default();
        let mut tile = Vec::with_capacity(8192);
        for i in 0..count {
            let (k, v) =
                it.next().ok_or_else(|| Error::Corruption(format!("Merkle node ({level}, {i}) is missing")))??;
            if decode_node(&k) != Some((level, i)) || v.len() != 32 {
                return Err(Error::Corruption(format!("Merkle node ({level}, {i}) is missing or malformed")));
            }
            tile.extend_from_slice(&v);
            if tile.len() == 8192 || i + 1 == count {
                batch.put_cf(&tiles_cf, encode_tile(l, i / tiles::TILE_WIDTH), &tile);
                tile.clear();
                written += 1;
                if batch.len() >= 1024 {
                    db.write(std::mem::take(&mut batch))?;
                    progress(written, total);
                }
            }
        }
        db.write(batch)?;
        progress(written, total);
    }
    db.flush_cf(&tiles_cf)?;
    let frontier = Frontier::load(&Tiles::new(db), head.tree_size)?;
    if frontier.root() != head.root {
        return Err(Error::Corruption("the migrated tiles do not give the head's root; nothing was changed".into()));
    }
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    db.put_cf_opt(&meta, META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes(), &wo)?;
    Ok((head, written))
}

fn load_registry(db: &DB) -> Result<Registry> {
    let cf = db.cf_handle(CF_REGISTRY).expect("registry cf");
    let mut reg = Registry::default();
    for item in db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        if k.starts_with(REG_KEY_PREFIX) {
            let rec: KeyRecord =
                serde_json::from_slice(&v).map_err(|e| Error::Corruption(format!("key record: {e}")))?;
            reg.put_key(rec);
        } else if k.starts_with(REG_TOKEN_PREFIX) {
            let rec: TokenRecord =
                serde_json::from_slice(&v).map_err(|e| Error::Corruption(format!("token record: {e}")))?;
            reg.put_token(rec);
        } else {
            return Err(Error::Corruption("unknown registry record".into()));
        }
    }
    Ok(reg)
}

fn latest_checkpoint(db: &DB) -> Result<Option<(u64, String)>> {
    let cf = db.cf_handle(CF_CHECKPOINTS).expect("checkpoints cf");
    let mut it = db.iterator_cf(&cf, rocksdb::IteratorMode::End);
    match it.next().transpose()? {
        None => Ok(None),
        Some((k, v)) => {
            let size = decode_seq(&k).ok_or_else(|| Error::Corruption("checkpoint key is malformed".into()))?;
            let note =
                String::from_utf8(v.to_vec()).map_err(|_| Error::Corruption("checkpoint is not UTF-8".into()))?;
            Ok(Some((size, note)))
        }
    }
}

/// Standard base64 of a hash (the JSON form).
pub fn hash_b64(h: &Hash) -> String {
    b64::encode(h)
}
