//! The console: a 16550 UART on COM1 (I/O port 0x3F8), 115200 8N1, polled; and the exit
//! through QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
//!
//! **Mechanism.** [`init`] programs the divisor (1: 115200 baud), 8 data bits, no parity,
//! one stop bit, enables and clears the FIFOs and masks the UART's interrupts. Each byte
//! waits for the transmit holding register to be empty (LSR bit 5) and is written to THR;
//! `\n` is sent as `\r\n`. [`exit`] writes the status to port 0xf4, after which QEMU exits
//! with `(status << 1) | 1`; without the device it halts.
//!
//! **Invariant.** Output is polled, behind one lock taken with IF clear (it does not use the
//! per-CPU block, so it works before the GS base is set): a [`crate::kprintln!`] line, or a
//! [`write_str`], goes out whole, whichever CPU writes it.

use crate::cpu::{inb, outb, outl};
use core::fmt;

/// COM1's base port.
const COM1: u16 = 0x3F8;
/// The `isa-debug-exit` device's port.
const DEBUG_EXIT: u16 = 0xf4;

/// Programs COM1 (see the module's description).
pub fn init() {
    // Each write below is to one of COM1's registers, base + 0..7, which touch no memory.
    // SAFETY: IER = 0: no UART interrupts.
    unsafe { outb(COM1 + 1, 0x00) };
    // SAFETY: LCR = DLAB: the next two registers are the divisor.
    unsafe { outb(COM1 + 3, 0x80) };
    // SAFETY: divisor low byte = 1 (115200 baud).
    unsafe { outb(COM1, 0x01) };
    // SAFETY: divisor high byte = 0.
    unsafe { outb(COM1 + 1, 0x00) };
    // SAFETY: LCR = 8 bits, no parity, one stop bit, DLAB off.
    unsafe { outb(COM1 + 3, 0x03) };
    // SAFETY: FCR = enable FIFOs, clear both, 14-byte threshold.
    unsafe { outb(COM1 + 2, 0xC7) };
    // SAFETY: MCR = DTR | RTS | OUT2.
    unsafe { outb(COM1 + 4, 0x0B) };
}

/// Sends one byte, waiting for room.
fn put(byte: u8) {
    // SAFETY: reading LSR (COM1 + 5) has no side effect on memory.
    while unsafe { inb(COM1 + 5) } & 0x20 == 0 {
        core::hint::spin_loop();
    }
    // SAFETY: THR (COM1 + 0) transmits the byte.
    unsafe { outb(COM1, byte) };
}

/// The console's lock: set while a CPU writes.
static LOCK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Runs `f` holding the console's lock, with IF clear.
fn locked<R>(f: impl FnOnce() -> R) -> R {
    use core::sync::atomic::Ordering;
    let was_masked = crate::irq::local_irq_save();
    while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    let r = f();
    LOCK.store(false, Ordering::Release);
    crate::irq::local_irq_restore(was_masked);
    r
}

/// Writes `s` to the console, `\n` as `\r\n`.
pub fn write_str(s: &str) {
    locked(|| raw_write_str(s))
}

/// [`write_str`] without the lock (its caller holds it).
fn raw_write_str(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

/// The console as a [`fmt::Write`].
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        raw_write_str(s);
        Ok(())
    }
}

/// Formats to the console.
pub fn print(args: fmt::Arguments<'_>) {
    locked(|| {
        let _ = fmt::write(&mut Console, args);
    })
}

/// Formats a line to the console (`args`, then `\n`), whole.
pub fn println(args: fmt::Arguments<'_>) {
    locked(|| {
        let _ = fmt::write(&mut Console, args);
        raw_write_str("\n");
    })
}

/// `println!` to the serial console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        $crate::serial::println(format_args!($($arg)*));
    }};
}

/// Ends the machine with `status` through `isa-debug-exit` (QEMU exits with
/// `(status << 1) | 1`); halts if the device is absent.
pub fn exit(status: u32) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device (or nothing): the write touches no memory.
    unsafe { outl(DEBUG_EXIT, status) };
    crate::cpu::halt_forever()
}
