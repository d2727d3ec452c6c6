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

use crate::arch::{Arch, FixedBuf, IrqSpinLock, A};
use crate::instance::Kernel;
use alloc::{boxed::Box, string::String, string::ToString, vec::Vec};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The log ring of one kernel instance.
pub struct Printk {
    buf: Box<[AtomicU8]>,
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicUsize,
    writer: IrqSpinLock<()>,
    console: bool,
}

impl Printk {
    pub(crate) fn new(size: usize, console: bool) -> Printk {
        Printk {
            buf: (0..size).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            writer: IrqSpinLock::new(()),
            console,
        }
    }

    fn write(&self, line: &[u8]) {
        if self.console {
            A::console_write(2, line);
        }
        let _w = self.writer.lock();
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head + line.len() - tail > self.buf.len() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for (i, &b) in line.iter().enumerate() {
            self.buf[(head + i) % self.buf.len()].store(b, Ordering::Relaxed);
        }
        self.head.store(head + line.len(), Ordering::Release);
    }

    /// Takes everything written so far (the host side's `dmesg -c`).
    pub fn drain(&self) -> String {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let bytes: Vec<u8> = (tail..head).map(|i| self.buf[i % self.buf.len()].load(Ordering::Relaxed)).collect();
        self.tail.store(head, Ordering::Release);
        let mut s = String::from_utf8_lossy(&bytes).into_owned();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(s, "printk: {dropped} messages dropped (log ring full)");
        }
        s
    }
}

/// Most `BUG:` reports kept per instance.
const MAX_BUGS: usize = 64;
/// Most of them made in hard-IRQ context.
const MAX_IRQ_BUGS: usize = 16;

/// The `BUG:` reports an instance keeps for its `RunReport`: the first [`MAX_BUGS`], and those
/// made where allocating is forbidden (hard-IRQ context) in room reserved at boot.
pub(crate) struct BugLog {
    bugs: IrqSpinLock<Vec<String>>,
    irq_bugs: IrqSpinLock<Vec<FixedBuf<512>>>,
}

impl BugLog {
    /// An empty log, its room reserved.
    pub(crate) fn new() -> BugLog {
        BugLog {
            bugs: IrqSpinLock::new(Vec::with_capacity(MAX_BUGS)),
            irq_bugs: IrqSpinLock::new(Vec::with_capacity(MAX_IRQ_BUGS)),
        }
    }

    /// Keeps a report formatted in `msg` (`text` is the same, as a string): into the reserved
    /// room where allocating is forbidden, else as a string.
    pub(crate) fn keep(&self, msg: &FixedBuf<512>, text: &str) {
        if A::allocation_forbidden() {
            let mut bugs = self.irq_bugs.lock();
            if bugs.len() < bugs.capacity() {
                bugs.push(*msg);
            }
            return;
        }
        self.keep_text(text.to_string());
    }

    /// Keeps a report made on the host side (a soft lockup's, symbolized there).
    pub(crate) fn keep_text(&self, text: String) {
        let mut bugs = self.bugs.lock();
        if bugs.len() < MAX_BUGS {
            bugs.push(text);
        }
    }

    /// Every report kept, those from hard-IRQ context last.
    pub(crate) fn reports(&self) -> Vec<String> {
        let irq =
            self.irq_bugs.lock().iter().map(|b| String::from_utf8_lossy(b.as_bytes()).into_owned()).collect::<Vec<_>>();
        self.bugs.lock().iter().cloned().chain(irq).collect()
    }
}

/// Logs one line (no allocation).
pub(crate) fn printk_fmt(k: &Kernel, args: core::fmt::Arguments<'_>) {
    let mut line = FixedBuf::<512>::new();
    let t = k.time.uptime_ns();
    let _ = write!(line, "[{:5}.{:06}] ", t / 1_000_000_000, t % 1_000_000_000 / 1000);
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    k.printk.write(line.as_bytes());
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
