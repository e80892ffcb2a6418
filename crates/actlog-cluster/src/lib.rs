//! Distributed query on Apache DataFusion Ballista (contract section 12):
//! `actlog cluster scheduler`, `actlog cluster executor`, and
//! `actlog sql --cluster ADDR --archive URL`, which runs the pinned tables
//! over the archive's hive-partitioned Parquet across the executors.
//!
//! The tables are plain Parquet listing tables over the archive's
//! `events/` and `delegation_hops/` folders, and `decision_chains`,
//! `lifecycle` and `producer_streams` are the same views as on one node, so
//! no actlog operator crosses the wire and Ballista's own codecs carry every
//! plan. The views' payload functions are registered by name on the
//! scheduler and the executors. The query text goes through the
//! same sandbox as every other SQL surface before any plan is made.

use std::net::SocketAddr;
use std::sync::Arc;

use actlog_query::datafusion;
use ballista::prelude::SessionContextExt;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Bad input: an address, an archive URL, a refused query.
    #[error("{0}")]
    Refused(String),
    /// The cluster or the archive failed.
    #[error("{0}")]
    Failed(String),
}

fn failed(what: &str) -> impl Fn(String) -> ClusterError + '_ {
    move |e| ClusterError::Failed(format!("{what}: {e}"))
}

/// Runs a scheduler on `listener` until the process ends. Executors that
/// stop heart-beating for `executor_timeout_s` are dropped, and their
/// tasks run again elsewhere.
pub async fn scheduler(
    listener: tokio::net::TcpListener,
    executor_timeout_s: u64,
    archive_endpoint: Option<String>,
) -> Result<(), ClusterError> {
    let addr = listener.local_addr().map_err(|e| ClusterError::Failed(e.to_string()))?;
    let config = ballista_scheduler::config::SchedulerConfig {
        bind_host: addr.ip().to_string(),
        bind_port: addr.port(),
        external_host: addr.ip().to_string(),
        executor_timeout_seconds: executor_timeout_s,
        expire_dead_executor_interval_seconds: 1.max(executor_timeout_s / 3),
        ..Default::default()
    };
    // The scheduler plans with actlog's payload functions too (the
    // `lifecycle` and `producer_streams` views call them).
    // It lists the archive's files when it plans, so it reaches `s3://`
    // archives too.
    let config = config.with_override_session_builder(Arc::new(move |c| {
        let state = ballista_core::utils::default_session_builder(c)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(ArchiveStores::new(archive_endpoint.clone())))
            .build()?;
        let mut state = SessionStateBuilder::new_from_existing(state).with_runtime_env(Arc::new(runtime)).build();
        for udf in actlog_query::tables::payload_udfs() {
            datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(udf))?;
        }
        Ok(state)
    }));
    let cluster = ballista_scheduler::cluster::BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| failed("starting the scheduler")(e.to_string()))?;
    let server = ballista_scheduler::scheduler_process::create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(
        cluster,
        Arc::new(config),
    )
    .await
    .map_err(|e| failed("starting the scheduler")(e.to_string()))?;
    ballista_scheduler::scheduler_process::start_grpc_service_with_listener(listener, server)
        .await
        .map_err(|e| failed("the scheduler stopped")(e.to_string()))
}

/// Where an executor listens and whom it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's address.
    pub scheduler: SocketAddr,
    /// Where the executor serves its Arrow Flight results.
    pub listen: SocketAddr,
    /// Where it takes tasks (gRPC).
    pub grpc_port: u16,
    /// Shuffle files.
    pub work_dir: std::path::PathBuf,
    /// Tasks it runs at once.
    pub slots: usize,
    /// The S3-compatible server of an `s3://` archive (`--archive-endpoint`);
    /// AWS when none. Credentials and region come from `AWS_*`.
    pub archive_endpoint: Option<String>,
}

/// Runs an executor until the process ends.
pub async fn executor(o: ExecutorOptions) -> Result<(), ClusterError> {
    let config = ballista_executor::executor_process::ExecutorProcessConfig {
        bind_host: o.listen.ip().to_string(),
        external_host: Some(o.listen.ip().to_string()),
        port: o.listen.port(),
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.ip().to_string(),
        scheduler_port: o.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        vcores: o.slots.max(1),
        work_dir: Some(o.work_dir.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: 2,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(function_registry())),
        // Ballista's own runtime (spill files in the work dir), with object
        // stores that reach `s3://` archives.
        override_runtime_producer: Some(Arc::new({
            let (work_dir, endpoint) = (o.work_dir.clone(), o.archive_endpoint.clone());
            move |_| {
                let runtime = RuntimeEnvBuilder::new()
                    .with_temp_file_path(work_dir.clone())
                    .with_object_store_registry(Arc::new(ArchiveStores::new(endpoint.clone())))
                    .build()?;
                Ok(Arc::new(runtime))
            }
        })),
        ..Default::default()
    };
    ballista_executor::executor_process::start_executor_process(Arc::new(config))
        .await
        .map_err(|e| failed("the executor stopped")(e.to_string()))
}

/// Ballista's functions and actlog's payload functions, for executors.
fn function_registry() -> ballista_core::registry::BallistaFunctionRegistry {
    let mut r = ballista_core::registry::BallistaFunctionRegistry::default();
    for udf in actlog_query::tables::payload_udfs() {
        r.scalar_functions.insert(udf.name().to_string(), Arc::new(udf));
    }
    r
}

/// Object stores for archive URLs: DataFusion's (the local file system,
/// and any registered), and for `s3://BUCKET/...` an S3 store made on first
/// use from the `AWS_*` variables and the endpoint, then kept.
#[derive(Debug)]
struct ArchiveStores {
    stores: datafusion::execution::object_store::DefaultObjectStoreRegistry,
    endpoint: Option<String>,
}

impl ArchiveStores {
    fn new(endpoint: Option<String>) -> ArchiveStores {
        ArchiveStores { stores: Default::default(), endpoint }
    }
}

impl datafusion::execution::object_store::ObjectStoreRegistry for ArchiveStores {
    fn register_store(
        &self,
        url: &url::Url,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.stores.register_store(url, store)
    }

    fn deregister_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn object_store::ObjectStore>> {
        self.stores.deregister_store(url)
    }

    fn get_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn object_store::ObjectStore>> {
        if url.scheme() != "s3" {
            return self.stores.get_store(url);
        }
        if let Ok(s) = self.stores.get_store(url) {
            return Ok(s);
        }
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            datafusion::error::DataFusionError::Configuration(format!("{url}: an s3:// URL names a bucket"))
        })?;
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(ep) = &self.endpoint {
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
        }
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(b.build()?);
        let _ = self.stores.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

/// The archive's root as a URL DataFusion lists: `file:///PATH/` (a path
/// every executor sees) or `s3://BUCKET[/PREFIX]/`.
fn archive_root(url: &str) -> Result<String, ClusterError> {
    if let Some(p) = url.strip_prefix("file://").filter(|p| p.starts_with('/')) {
        return Ok(format!("file://{}/", p.trim_end_matches('/')));
    }
    if let Some(rest) = url.strip_prefix("s3://").filter(|r| !r.is_empty() && !r.starts_with('/')) {
        return Ok(format!("s3://{}/", rest.trim_end_matches('/')));
    }
    Err(ClusterError::Refused(format!(
        "--archive {url}: the cluster reads file:///PATH archives (a path every executor sees, such as a shared mount) \
         or s3://BUCKET/PREFIX"
    )))
}

/// Runs `sql` on the cluster at `scheduler` over the archive at `archive`:
/// the tables `events` and `delegation_hops` (every archived range) and the
/// `decision_chains` view.
pub async fn query(
    scheduler: &str,
    archive: &str,
    archive_endpoint: Option<&str>,
    sql: &str,
) -> Result<Vec<RecordBatch>, ClusterError> {
    // The same sandbox as every SQL surface: one read-only statement over
    // the pinned tables.
    actlog_query::engine::check_with(sql, &actlog_query::QueryLimits::default())
        .map_err(|e| ClusterError::Refused(e.to_string()))?;
    let root = archive_root(archive)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(ArchiveStores::new(archive_endpoint.map(str::to_string))))
        .build()
        .map_err(|e| failed("the archive's object store")(e.to_string()))?;
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_information_schema(false))
        .with_runtime_env(Arc::new(runtime))
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(&format!("df://{scheduler}"), state)
        .await
        .map_err(|e| failed("connecting to the scheduler")(e.to_string()))?;
    for table in ["events", "delegation_hops"] {
        let url = ListingTableUrl::parse(format!("{root}{table}/"))
            .map_err(|e| ClusterError::Refused(format!("--archive {archive}: {e}")))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await
            .map_err(|e| failed(&format!("reading the archive's {table} files"))(e.to_string()))?;
        let provider = ListingTable::try_new(config).map_err(|e| failed("the archive's tables")(e.to_string()))?;
        ctx.register_table(table, Arc::new(provider)).map_err(|e| failed("the archive's tables")(e.to_string()))?;
    }
    for udf in actlog_query::tables::payload_udfs() {
        ctx.register_udf(udf);
    }
    for (name, view) in [
        ("decision_chains", actlog_query::tables::DECISION_CHAINS_SQL),
        ("lifecycle", actlog_query::tables::LIFECYCLE_SQL),
        ("producer_streams", actlog_query::tables::PRODUCER_STREAMS_SQL),
    ] {
        ctx.sql(view).await.map_err(|e| failed(&format!("the {name} view"))(e.to_string()))?;
    }
    let df = ctx.sql(sql).await.map_err(|e| ClusterError::Refused(e.to_string()))?;
    df.collect().await.map_err(|e| failed("the query failed on the cluster")(e.to_string()))
}
