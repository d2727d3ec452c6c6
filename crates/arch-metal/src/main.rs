//! The bare-metal image: the library ([`arch_metal`]) is all of it; this file adds the panic
//! handler, which only the final binary may define.
//!
//! **Mechanism.** Built by `cargo rustc --features image` with `-C panic=abort` (see the
//! library's description and docs/BAREMETAL.md); QEMU enters it at `metal_pvh_start`.
//!
//! **Invariant.** A panic prints `PANIC: ...` on the serial console and exits QEMU with
//! `exit_codes::PANIC`: it never unwinds.
#![no_std]
#![no_main]

use arch_metal as _;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    arch_metal::panic(info)
}
