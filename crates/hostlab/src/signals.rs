//! What the command line asks of the host's signals before it installs its own handling.
//!
//! **Mechanism.** [`is_ignored`] reads a signal's disposition with `sigaction` (a query: the
//! disposition is not changed). **Invariant.** A signal the process was started with ignored
//! (a shell's background job ignores SIGINT, `nohup` SIGHUP) stays ignored: the caller leaves
//! it alone.

/// Whether `sig` is ignored (`SIG_IGN`) in this process; `false` for a signal that does not
/// exist.
pub fn is_ignored(sig: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action makes sigaction
    // a pure query, which changes nothing and is thread-safe.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_default_signal_is_not_ignored() {
        assert!(!super::is_ignored(libc::SIGUSR2));
        assert!(!super::is_ignored(12345));
    }
}
