//! The operating system's random source: the one place the workspace draws
//! from it (`clippy.toml` refuses `getrandom::fill` everywhere else). Ledger
//! seeds, API tokens, witness keys and request ids come from here.

#![allow(clippy::disallowed_methods)]

/// Fills `buf` from the operating system's random source.
pub fn fill(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}

/// 32 bytes from the operating system's random source. A machine without
/// one cannot make keys or tokens, so its failure is a panic with a reason.
pub fn bytes_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system random source works");
    b
}
