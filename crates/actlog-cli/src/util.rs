//! Errors with exit codes, randomness and small helpers.

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

/// 32 bytes from the operating system's random source.
pub fn random_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system random source works");
    b
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
