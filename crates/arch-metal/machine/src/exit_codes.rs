//! The exit statuses the image hands QEMU's `isa-debug-exit` device, shared with the host
//! tests (which include this file with `#[path]`): QEMU exits with `(code << 1) | 1`.
//!
//! **Invariant.** Each cause has its own code, and none is 0 (QEMU's own exit 1 would then be
//! indistinguishable from a kernel's exit).

/// The boot and the self-test went through.
pub const SUCCESS: u32 = 0x10;
/// A CPU exception reached the IDT (the report line says which).
pub const EXCEPTION: u32 = 0x31;
/// A Rust panic.
pub const PANIC: u32 = 0x32;
/// The CPU has no long mode (exited from the 32-bit entry, before any output).
pub const NO_LONG_MODE: u32 = 0x33;
/// The kernel core ran, but a check of the image's init failed or the core refused to boot
/// (QEMU's exit code 105).
pub const FAILED: u32 = 0x34;
/// The status QEMU exits with when the image exits with `code`.
pub const fn qemu_status(code: u32) -> i32 {
    ((code << 1) | 1) as i32
}
