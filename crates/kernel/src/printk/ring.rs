//! The kernel's log as data: the printk byte ring and the `BUG:` reports kept for the
//! `RunReport`. Finding the instance to log to is `printk`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem, and nothing here allocates but
//! the host side's reads.

use crate::arch::{Arch, FixedBuf, IrqSpinLock, A};
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
    pub(super) console: bool,
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

    /// Logs one line stamped `uptime_ns` after boot, as `dmesg` prints it (no allocation).
    pub(crate) fn log_line(&self, uptime_ns: u64, args: core::fmt::Arguments<'_>) {
        let mut line = FixedBuf::<512>::new();
        let t = uptime_ns;
        let _ = write!(line, "[{:5}.{:06}] ", t / 1_000_000_000, t % 1_000_000_000 / 1000);
        let _ = line.write_fmt(args);
        let _ = line.write_str("\n");
        self.write(line.as_bytes());
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
