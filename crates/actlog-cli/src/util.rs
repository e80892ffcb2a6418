//! The plumbing the commands share: errors with exit codes, randomness,
//! opening the data directory, the query runtime, progress bars, and the
//! HTTP client for a remote server.

use std::io::IsTerminal;

/// An error that ends the command with an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Exit 1: verification failed or the request was refused.
pub fn refused(message: impl Into<String>) -> CliError {
    CliError { code: 1, message: message.into() }
}

/// Exit 2: usage error or unusable input.
pub fn usage(message: impl Into<String>) -> CliError {
    CliError { code: 2, message: message.into() }
}

impl From<actlog_store::Error> for CliError {
    fn from(e: actlog_store::Error) -> Self {
        use actlog_store::Error as E;
        match e {
            E::NotInitialized(_) | E::AlreadyInitialized(_) | E::Locked(_) | E::ReadOnly => usage(e.to_string()),
            E::Refused { .. } => refused(e.to_string()),
            E::FormatVersion { .. } | E::Corruption(_) => refused(e.to_string()),
            E::Io(_) | E::Poisoned | E::Busy => refused(e.to_string()),
        }
    }
}

impl From<actlog_cluster::ClusterError> for CliError {
    fn from(e: actlog_cluster::ClusterError) -> Self {
        match e {
            actlog_cluster::ClusterError::Refused(m) => usage(m),
            actlog_cluster::ClusterError::Failed(m) => refused(m),
        }
    }
}

/// 32 bytes from the operating system's random source.
pub fn random_32() -> [u8; 32] {
    actlog_store::random::bytes_32()
}

/// A fresh API token: `actlog_` and 43 URL-safe base64 characters (256 bits).
pub fn new_token() -> String {
    actlog_core::api_token(&random_32())
}

/// Whether stderr is a terminal (progress bars go there only then).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints a secret alone on stdout, one line.
pub fn print_secret(secret: &str) {
    println!("{secret}");
}

/// How the CLI reaches a server over HTTPS: the roots it trusts and the
/// client certificate it shows (for `serve --tls-client-ca`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsClient {
    /// PEM CA certificate(s) to trust for an https:// --url, instead of the
    /// public web roots (for a server with its own CA).
    #[arg(long, env = "ACTLOG_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for a server that requires one.
    #[arg(long, env = "ACTLOG_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "ACTLOG_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
}

/// An HTTP(S) agent that returns error statuses as responses, with the
/// trust and client certificate of `tls`.
pub fn http_agent(tls: &TlsClient) -> CliResult<ureq::Agent> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
    };
    let certs = |flag: &str, path: &std::path::Path| -> CliResult<Vec<Certificate<'static>>> {
        let pem = read(flag, path)?;
        let mut out = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item.map_err(|e| usage(format!("{flag} {}: {e}", path.display())))? {
                PemItem::Certificate(c) => out.push(c),
                _ => continue,
            }
        }
        if out.is_empty() {
            return Err(usage(format!("{flag} {}: no PEM certificate in it", path.display())));
        }
        Ok(out)
    };
    let mut config = TlsConfig::builder();
    if let Some(ca) = &tls.ca_cert {
        config = config.root_certs(RootCerts::new_with_certs(&certs("--ca-cert", ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let chain = certs("--client-cert", cert)?;
        let key = PrivateKey::from_pem(&read("--client-key", key)?)
            .map_err(|e| usage(format!("--client-key {}: {e}", key.display())))?;
        config = config.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .tls_config(config.build())
        .build()
        .into())
}

/// Reads a C2SP tlog-policy file named by `flag`; a bad one is a usage error
/// naming the flag, the file and the line.
pub fn read_policy(flag: &str, path: &std::path::Path) -> CliResult<actlog_core::witness::Policy> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?;
    actlog_core::witness::Policy::parse(&text).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

/// Opens a store and, when some of its events have left it for the
/// archive (`serve --hot-retention`), attaches that archive for reads
/// below the floor: `archive`, or else `ACTLOG_ARCHIVE` (and
/// `ACTLOG_ARCHIVE_ENDPOINT`), the variables `serve` reads too.
pub fn open_store(
    data: &std::path::Path,
    opts: actlog_store::Options,
    archive: Option<(&str, Option<&str>)>,
) -> CliResult<actlog_store::Store> {
    let store = actlog_store::Store::open(data, opts)?;
    attach_archive(&store, archive)?;
    Ok(store)
}

/// The archive named by `archive`, or else by `ACTLOG_ARCHIVE` (and
/// `ACTLOG_ARCHIVE_ENDPOINT`), when the store needs one (events left it)
/// or one was named explicitly.
fn archive_for(
    store: &actlog_store::Store,
    archive: Option<(&str, Option<&str>)>,
) -> CliResult<Option<actlog_archive::Archive>> {
    let from_env = std::env::var("ACTLOG_ARCHIVE").ok().filter(|s| !s.is_empty());
    let endpoint_env = std::env::var("ACTLOG_ARCHIVE_ENDPOINT").ok().filter(|s| !s.is_empty());
    let (url, endpoint) = match (archive, &from_env) {
        (Some((u, e)), _) => (u.to_string(), e.map(str::to_string)),
        (None, Some(u)) => (u.clone(), endpoint_env),
        (None, None) => return Ok(None),
    };
    if store.cold_floor() == 0 && archive.is_none() {
        return Ok(None);
    }
    actlog_archive::Archive::open(&url, endpoint.as_deref()).map(Some).map_err(|e| usage(e.to_string()))
}

/// The archive [`open_store`] would attach, as the object store queries
/// and segment checks read.
pub fn archive_reader(
    store: &actlog_store::Store,
    archive: Option<(&str, Option<&str>)>,
) -> CliResult<Option<std::sync::Arc<dyn actlog_query::object_store::ObjectStore>>> {
    Ok(archive_for(store, archive)?.map(|a| a.reader()))
}

/// Opens the query engine over `store`, reading retired segments from the
/// archive [`open_store`] would attach.
pub fn open_engine(
    store: std::sync::Arc<actlog_store::Store>,
    opts: actlog_query::EngineOptions,
) -> CliResult<actlog_query::Engine> {
    let engine =
        actlog_query::Engine::open(store, opts).map_err(|e| refused(format!("opening the query engine: {e}")))?;
    if let Some(archive) = archive_for(engine.store(), None)? {
        engine.attach_archive(archive.reader(), actlog_query::archive_files::ARCHIVE_SEGMENT_CACHE_BYTES_DEFAULT);
    }
    Ok(engine)
}

/// See [`open_store`].
pub fn attach_archive(store: &actlog_store::Store, archive: Option<(&str, Option<&str>)>) -> CliResult {
    let Some(archive) = archive_for(store, archive)? else { return Ok(()) };
    let cold = actlog_archive::ArchiveCold::start(archive, actlog_archive::CACHE_BYTES_DEFAULT)
        .map_err(|e| refused(format!("cannot start the archive reader: {e}")))?;
    store.set_cold_source(std::sync::Arc::new(cold)).map_err(|e| refused(e.to_string()))?;
    Ok(())
}

/// Opens the data dir: for writing when no server holds it (so full
/// segments are sealed first), else read-only beside the running server.
pub fn open_for_query(data: &std::path::Path) -> CliResult<(std::sync::Arc<actlog_store::Store>, bool)> {
    match actlog_store::Store::open(data, actlog_store::Options::default()) {
        Ok(s) => {
            attach_archive(&s, None)?;
            Ok((std::sync::Arc::new(s), true))
        }
        // Held by a server, or not writable here (no ledger key, a read-only
        // copy): read what is there.
        Err(e @ actlog_store::Error::NotInitialized(_)) => Err(e.into()),
        Err(_) => {
            let opts = actlog_store::Options { read_only: true, ..actlog_store::Options::default() };
            Ok((std::sync::Arc::new(open_store(data, opts, None)?), false))
        }
    }
}

/// The tokio runtime a command runs its queries on (two workers).
pub fn query_runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| refused(format!("cannot start the query runtime: {e}")))
}

/// A progress bar of `total` leaves on a terminal (none when stderr is not one).
pub fn bar(total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    bar_of(total, what, "leaves")
}

/// A progress bar of `total` `unit`s on a terminal (none when stderr is not one).
pub fn bar_of(total: u64, what: &str, unit: &str) -> Option<indicatif::ProgressBar> {
    stderr_is_tty().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}"
            ))
            .expect("valid template"),
        );
        b
    })
}

/// A running server to work on instead of the data directory.
#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// Manage a running server through its admin endpoints instead of the data directory.
    #[arg(long, env = "ACTLOG_URL")]
    pub url: Option<String>,
    /// Admin token for --url.
    #[arg(long, env = "ACTLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: TlsClient,
}
