//! The command tree (contract section 2) and the small commands.

use std::io::Read;
use std::path::{Path, PathBuf};

use actlog_core::dsse::Envelope;
use actlog_core::leaf::sha256;
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
    /// Show origin, verifier key, tree size and latest checkpoint.
    Info {
        #[arg(long)]
        json: bool,
    },
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
    /// Print Merkle proofs as JSON.
    Prove {
        #[command(subcommand)]
        command: ProveCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Manage a running server instead of the data directory (not yet available).
    #[arg(long, env = "ACTLOG_URL")]
    pub url: Option<String>,
    /// Admin token for --url.
    #[arg(long, env = "ACTLOG_TOKEN")]
    pub token: Option<String>,
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
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a producer key (recorded as a ledger event).
    Revoke {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
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
        #[command(flatten)]
        remote: Remote,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token.
    Revoke {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProveCommand {
    /// Audit path of one leaf.
    Inclusion {
        seq: u64,
        /// Tree size to prove against (defaults to the latest checkpoint's).
        #[arg(long)]
        tree_size: Option<u64>,
    },
    /// Consistency proof between two tree sizes.
    Consistency { old: u64, new: u64 },
}

pub fn run(cli: Cli) -> CliResult {
    let data = cli.data.as_path();
    match cli.command {
        Command::Init { origin } => init(data, origin),
        Command::Info { json } => info(data, json),
        Command::Keygen { out, name } => keygen(&out, name),
        Command::Sign { key, key_name } => sign(&key, key_name),
        Command::Keys { command } => keys(data, command),
        Command::Tokens { command } => tokens(data, command),
        Command::Import(args) => crate::import::run(data, args),
        Command::Verify(args) => crate::verify_cmd::run(data, args),
        Command::Prove { command } => prove(data, command),
    }
}

fn open_read(data: &Path) -> CliResult<Store> {
    Ok(Store::open(data, Options { read_only: true, ..Options::default() })?)
}

fn open_write(data: &Path) -> CliResult<Store> {
    Ok(Store::open(data, Options::default())?)
}

fn no_remote(remote: &Remote) -> CliResult {
    if remote.url.is_some() {
        return Err(usage(
            "--url needs `actlog serve`, which this build does not have yet; run the command on the data directory instead",
        ));
    }
    Ok(())
}

fn init(data: &Path, origin: Option<String>) -> CliResult {
    let store = Store::init(data, random_32(), origin, Options::default())?;
    let token = new_token();
    store.admin(AdminOp::CreateToken {
        name: "admin".into(),
        role: "admin".into(),
        pdp_id: None,
        token_sha256: sha256(token.as_bytes()),
    })?;
    let vk = store.verifier_key().to_text();
    store.close()?;
    eprintln!("actlog: created the ledger in {}", data.display());
    eprintln!("actlog: ledger verifier key: {vk}");
    eprintln!("actlog: the admin token follows on stdout; it is shown only this once");
    print_secret(&token);
    Ok(())
}

fn info(data: &Path, as_json: bool) -> CliResult {
    let store = open_read(data)?;
    let head = store.head();
    let cp = store.latest_checkpoint().map(|(_, n)| n);
    let vk = store.verifier_key().to_text();
    if as_json {
        println!(
            "{}",
            json!({"origin": store.origin(), "verifier_key": vk, "tree_size": head.tree_size, "checkpoint": cp})
        );
    } else {
        println!("origin:       {}", store.origin());
        println!("verifier key: {vk}");
        println!("tree size:    {}", head.tree_size);
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
    if name.is_empty() || name.contains(['+', ' ', '\n']) {
        return Err(usage("key names must not be empty or contain '+' or spaces"));
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
            no_remote(&remote)?;
            let pk = parse_public_key(&public_key)?;
            let store = open_write(data)?;
            let pdp_id = pdp.unwrap_or_else(|| name.clone());
            let seq = store.admin(AdminOp::AddKey { name: name.clone(), pdp_id: pdp_id.clone(), public_key: pk })?;
            store.close()?;
            eprintln!("actlog: key `{name}` registered for PDP `{pdp_id}` at seq {seq}");
        }
        KeysCommand::List { json: as_json, remote } => {
            no_remote(&remote)?;
            let store = open_read(data)?;
            let mut keys: Vec<_> = store.registry().keys.into_values().collect();
            keys.sort_by_key(|k| k.added_seq);
            if as_json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "name": k.name, "pdp_id": k.pdp_id,
                            "public_key": actlog_core::b64::encode(hex::decode(&k.public_key_hex).unwrap_or_default()),
                            "key_id": k.fingerprint_hex, "added_seq": k.added_seq, "revoked_seq": k.revoked_seq,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
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
                        &k.fingerprint_hex[..16]
                    );
                }
            }
        }
        KeysCommand::Revoke { name, remote } => {
            no_remote(&remote)?;
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
        TokensCommand::Create { role, name, pdp, remote } => {
            no_remote(&remote)?;
            let name = name.unwrap_or_else(|| format!("{role}-{}", &hex::encode(random_32())[..8]));
            let token = new_token();
            let store = open_write(data)?;
            store.admin(AdminOp::CreateToken {
                name: name.clone(),
                role,
                pdp_id: pdp,
                token_sha256: sha256(token.as_bytes()),
            })?;
            store.close()?;
            eprintln!("actlog: token `{name}` created; it follows on stdout and is shown only this once");
            print_secret(&token);
        }
        TokensCommand::List { json: as_json, remote } => {
            no_remote(&remote)?;
            let store = open_read(data)?;
            let mut tokens: Vec<_> = store.registry().tokens.into_values().collect();
            tokens.sort_by_key(|t| t.created_seq);
            if as_json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "name": t.name, "role": t.role, "pdp_id": t.pdp_id,
                            "created_seq": t.created_seq, "revoked_seq": t.revoked_seq,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<24} {:<8} {:<24} {:<10} REVOKED", "NAME", "ROLE", "PDP", "CREATED");
                for t in tokens {
                    let revoked = t.revoked_seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<24} {:<8} {:<24} {:<10} {}",
                        t.name,
                        t.role,
                        t.pdp_id.as_deref().unwrap_or("-"),
                        t.created_seq,
                        revoked
                    );
                }
            }
        }
        TokensCommand::Revoke { name, remote } => {
            no_remote(&remote)?;
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
        ProveCommand::Inclusion { seq, tree_size } => {
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
        ProveCommand::Consistency { old, new } => {
            let hashes = store.consistency_proof(old, new)?;
            println!("{}", json!({"old": old, "new": new, "hashes": hashes.iter().map(b64).collect::<Vec<_>>()}));
        }
    }
    Ok(())
}
