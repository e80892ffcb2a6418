//! The optional `actlog.toml` in the data directory.
//!
//! Every flag has an environment variable `ACTLOG_<FLAG>` (clap reads them).
//! The file is the layer below: each `key = value` in it sets
//! `ACTLOG_<KEY>` unless that variable is already set, before the command
//! line is parsed. So the order is: flag, then environment, then file, then
//! the built-in default. Keys are flag names with `_` or `-`:
//!
//! ```toml
//! listen = "0.0.0.0:7340"
//! checkpoint_interval_ms = 500
//! public_checkpoint = true
//! ```

use std::path::PathBuf;

use crate::util::{CliResult, usage};

/// The config file's name inside the data directory.
pub const CONFIG_FILE: &str = "actlog.toml";

/// The data directory as the command line or environment gives it, before clap runs.
fn data_dir() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--data" {
            if let Some(v) = args.next() {
                return PathBuf::from(v);
            }
        } else if let Some(v) = a.strip_prefix("--data=") {
            return PathBuf::from(v);
        }
    }
    std::env::var_os("ACTLOG_DATA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("./actlog-data"))
}

/// Every long flag of every subcommand, `-` written `_`.
fn known_keys() -> std::collections::BTreeSet<String> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long() {
                out.insert(l.replace('-', "_"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&crate::cli::Cli::command(), &mut out);
    out.remove("help");
    out.remove("version");
    out
}

/// Reads `actlog.toml` (if present) into `ACTLOG_*` variables that are not set yet.
pub fn load_into_env() -> CliResult {
    let path = data_dir().join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(usage(format!("cannot read {}: {e}", path.display()))),
    };
    let table: toml::Table = text.parse().map_err(|e| usage(format!("{} is not valid TOML: {e}", path.display())))?;
    let known = known_keys();
    for (key, value) in table {
        let norm = key.to_ascii_lowercase().replace('-', "_");
        if !known.contains(&norm) {
            return Err(usage(format!(
                "{}: `{key}` is not a flag of any actlog command (known: {})",
                path.display(),
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if key == "data" {
            return Err(usage(format!("{}: `data` cannot be set from inside the data directory", path.display())));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(usage(format!("{}: `{key}` must be a string, number or boolean", path.display()))),
        };
        let var = format!("ACTLOG_{}", key.to_ascii_uppercase().replace('-', "_"));
        if std::env::var_os(&var).is_none() {
            // SAFETY: called at the start of main, before any thread exists.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(&var, value)
            };
        }
    }
    Ok(())
}
