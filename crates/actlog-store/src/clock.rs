//! The wall clock: the one place the workspace reads it. `clippy.toml`
//! refuses `SystemTime::now` everywhere else, so every time the ledger
//! records (receive times, checkpoint and bundle times, token expiry) comes
//! from here, and the core takes time only as an argument.
//!
//! `Instant` (the monotonic clock, for timeouts and measurements) is not
//! restricted: it never reaches a record.

#![allow(clippy::disallowed_methods)]

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock as unix nanoseconds (0 before 1970, `i64::MAX` past 2262).
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The wall clock as unix seconds (0 before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
