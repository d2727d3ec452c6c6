//! `printk`: the kernel's log, a byte ring that the host side drains.
//!
//! **Mechanism.** A message is formatted into a fixed stack buffer (no allocation, so it works
//! in interrupt context), stamped with the time since boot as `dmesg` does, and copied into a
//! ring of atomic bytes. Writers on a CPU serialise through an IRQ-masking spinlock; the host
//! side reads behind them with [`Printk::drain`], never taking a lock a task could hold. With
//! `console=1` each line is also written to stderr at once with `write(2)`.
//!
//! **Invariant.** Kernel code never touches `std`'s stdout/stderr locks (a task preempted
//! while holding one would deadlock the next task on the same CPU thread); a full ring drops
//! new lines and counts them rather than blocking.

use crate::arch::{Arch, FixedBuf, A};
use crate::instance::Kernel;

pub(crate) mod ring;

use core::fmt::Write as _;
pub(crate) use ring::BugLog;
pub use ring::Printk;

/// Logs one line (no allocation).
pub(crate) fn printk_fmt(k: &Kernel, args: core::fmt::Arguments<'_>) {
    k.printk.log_line(k.time.uptime_ns(), args);
}

/// Logs one line and writes it to stderr whatever `console=` says (Linux's `KERN_EMERG`
/// reaching the console): for reports a user must see even if the instance never ends.
pub(crate) fn printk_emerg(k: &Kernel, args: core::fmt::Arguments<'_>) {
    let mut line = FixedBuf::<512>::new();
    let _ = line.write_fmt(args);
    if !k.printk.console {
        let _ = line.write_str("\n");
        A::console_write(2, line.as_bytes());
    }
    printk_str(k, core::str::from_utf8(line.as_bytes()).unwrap_or("").trim_end());
}

pub(crate) fn printk_str(k: &Kernel, msg: &str) {
    printk_fmt(k, format_args!("{msg}"));
}

/// Logs a formatted line from kernel code running on a CPU (task or interrupt context).
pub fn printk(args: core::fmt::Arguments<'_>) {
    if let Some(k) = crate::instance::try_this_kernel() {
        printk_fmt(&k, args);
    }
}

/// `printk!("format", args...)`: log a line from kernel code. Never allocates.
#[macro_export]
macro_rules! printk {
    ($($arg:tt)*) => { $crate::printk::printk(format_args!($($arg)*)) };
}
