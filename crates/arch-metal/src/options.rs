//! The image's own boot options (the `image.*` words of the command line): a number read and
//! checked against its range, and the refusal of a bad one.
//!
//! **Mechanism.** [`number`] reads `key=value` with `arch_metal::boot::cmdline_value`, parses a
//! whole number and checks it against `lo..=hi`; [`or_refuse`] prints a `{"boot_error": ...}`
//! line naming what was wrong and ends the boot with `FAILED`.
//!
//! **Invariant.** A bad option is refused before any task runs, with the option, its value
//! and what to use; an absent one is its default.

use crate::scenarios::escape;
use alloc::format;
use alloc::string::String;
use arch_metal::{exit_codes, kprintln, serial};

/// `key`'s whole number on `cmdline`, `default` when absent, in `lo..=hi`.
pub(crate) fn number(cmdline: &str, key: &str, lo: u64, hi: u64, default: u64) -> Result<u64, String> {
    let Some(v) = arch_metal::boot::cmdline_value(cmdline, key) else { return Ok(default) };
    v.parse().ok().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| format!("{key}={v}: use a whole number {lo}..={hi}"))
}

/// Ends the boot with a `boot_error` line if the options were refused.
pub(crate) fn or_refuse(checked: Result<(), String>) {
    if let Err(e) = checked {
        kprintln!("{{\"boot_error\":\"{}\"}}", escape(&e));
        serial::exit(exit_codes::FAILED)
    }
}
