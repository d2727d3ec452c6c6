//! What a host process gives a kernel instance beyond a CPU: threads for its CPUs, a
//! supervisor thread that sleeps until woken, and Rust's panic machinery.
//!
//! **Mechanism.** A CPU is a host thread started by [`start_cpu`] (`atomkernel-cpuN`), joined
//! when it stops. The supervisor (the thread in `kernel::run`) parks and is unparked by the
//! CPUs. [`set_panic_hook`] puts the core's hook in front of std's (once per process), and
//! [`catch_panic`] is `catch_unwind`: a panic in a task unwinds to its boundary there.
//!
//! **Invariant.** The core's panic hook runs first for every panic in the process and passes
//! on those that are not a kernel's (a panic on a thread that is no CPU reaches std's hook as
//! before).

use arch_api::PanicReport;
use std::sync::{Once, OnceLock};
use std::thread::{JoinHandle, Thread};

/// Starts a host thread named `name` running `body`.
pub(crate) fn start_cpu<R: Send + 'static>(
    name: String,
    body: impl FnOnce() -> R + Send + 'static,
) -> Result<JoinHandle<R>, String> {
    std::thread::Builder::new().name(name).spawn(body).map_err(|e| e.to_string())
}

/// Waits for a CPU thread and takes its result (`Err`: it panicked).
pub(crate) fn join_cpu<R>(t: JoinHandle<R>) -> Result<R, String> {
    t.join().map_err(|_| "the thread panicked".to_string())
}

/// The calling thread, for CPUs to wake.
pub(crate) fn supervisor_handle() -> Thread {
    std::thread::current()
}

/// Parks the calling thread until unparked or `timeout_ns` passed.
pub(crate) fn supervisor_sleep(timeout_ns: u64) {
    std::thread::park_timeout(std::time::Duration::from_nanos(timeout_ns));
}

static HOOK: OnceLock<fn(&PanicReport<'_>) -> bool> = OnceLock::new();

/// Installs `hook` in front of the process's panic hook, once (later calls keep the first).
pub(crate) fn set_panic_hook(hook: fn(&PanicReport<'_>) -> bool) {
    static ONCE: Once = Once::new();
    let _ = HOOK.set(hook);
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str();
            let report = PanicReport {
                location: info.location(),
                message: message.as_ref().map(|m| m as &dyn std::fmt::Display),
            };
            if !HOOK.get().is_some_and(|h| h(&report)) {
                prev(info)
            }
        }));
    });
}

/// Runs `f`; a panic in it unwinds to here and ends as `None`.
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}
