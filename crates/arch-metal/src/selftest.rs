//! The boot self-test: `alloc` on the heap, a patch of the text through its alias, and the
//! fault the command line asks for; its lines are what `tests/qemu.rs` checks.
//!
//! **Mechanism.** `alloc` builds a `Vec`, an `Arc`, a `String` with `format!` and checks
//! their values. The patch test calls `metal_patch_target` (`mov eax, 1; ret`), rewrites its
//! immediate through [`paging::text_alias`], serializes with CPUID, calls it again (2), and
//! restores it (1). `fault=ud2` runs a `ud2` whose address it prints first; `fault=write-text`
//! writes a byte to the text itself (not the alias), printing the target and the writing
//! instruction's address first: under W^X that is a page fault with the write and
//! protection bits set. Without a fault the machine exits with [`exit_codes::SUCCESS`].
//!
//! **Invariant.** Every check that fails ends in a panic naming it (exit status `PANIC`),
//! never in a line that says it passed.

use crate::{cpu, exit_codes, kprintln, paging, serial, Machine};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

core::arch::global_asm!(
    ".section .text.metal_selftest, \"ax\"",
    ".global metal_patch_target",
    "metal_patch_target:",
    "mov eax, 1", // b8 imm32: the immediate (byte 1) is patched
    "ret",        // returns the immediate
    ".global metal_fault_ud2",
    "metal_fault_ud2:",
    "ud2", // #UD, vector 6, at this function's address
    "ret", // (not reached)
    ".global metal_fault_write_text",
    "metal_fault_write_text:",
    "mov byte ptr [rdi], 0xcc", // a write to the text at rdi: #PF under W^X
    "ret",                      // (not reached)
);

extern "C" {
    fn metal_patch_target() -> u32;
    fn metal_fault_ud2();
    fn metal_fault_write_text(at: *mut u8);
}

/// Runs the self-test and exits (see the module's description).
pub fn run(m: &Machine) -> ! {
    check_alloc();
    check_patch();
    match crate::boot::cmdline_value(m.start.cmdline(), "fault") {
        None | Some("none") => {}
        Some("ud2") => {
            kprintln!("fault: executing ud2 at {:#x}", metal_fault_ud2 as *const () as usize);
            // SAFETY: raises #UD, which the IDT reports before exiting: nothing returns.
            unsafe { metal_fault_ud2() };
            panic!("the ud2 returned");
        }
        Some("write-text") => {
            let target = metal_patch_target as *const () as usize;
            kprintln!(
                "fault: writing the text at {target:#x} from rip {:#x}",
                metal_fault_write_text as *const () as usize
            );
            // SAFETY: the write targets a read-only text page: the #PF is reported and the
            // machine exits; had W^X failed, the write would change an unused byte of a
            // function only this self-test calls, and the panic below says so.
            unsafe { metal_fault_write_text(target as *mut u8) };
            panic!("the text was writable: W^X does not hold");
        }
        Some(other) => panic!("unknown fault={other} (ud2, write-text, none)"),
    }
    kprintln!("atomkernel-metal: boot complete, exiting with status {:#x}", exit_codes::SUCCESS);
    serial::exit(exit_codes::SUCCESS)
}

fn check_alloc() {
    let v: Vec<u64> = (1..=100).collect();
    let sum: u64 = v.iter().sum();
    let shared = Arc::new(v);
    let other = Arc::clone(&shared);
    let s: String = format!("atomkernel on bare metal, {} items", other.len());
    assert_eq!(sum, 5050, "Vec sum");
    assert_eq!(Arc::strong_count(&shared), 2, "Arc count");
    assert_eq!(s, "atomkernel on bare metal, 100 items", "format!");
    let big: Vec<u8> = alloc::vec![0xA5; 8 << 20];
    assert!(big.iter().all(|&b| b == 0xA5), "an 8 MiB Vec");
    kprintln!(
        "alloc: Vec sum {sum}, Arc strong count {}, format! \"{s}\", 8 MiB Vec at {:#x}: ok",
        Arc::strong_count(&shared),
        big.as_ptr() as usize
    );
}

fn check_patch() {
    let f = metal_patch_target as *const () as usize as u64;
    let imm = paging::text_alias(f + 1).expect("metal_patch_target is in the text");
    // SAFETY: a function of this file: `mov eax, 1; ret`, no arguments.
    let before = unsafe { metal_patch_target() };
    // SAFETY: `imm` is the writable alias of the immediate's first byte; one CPU runs, and
    // CPUID below serializes before the patched code executes again.
    unsafe { core::ptr::write_volatile(imm, 2) };
    cpu::cpuid(0, 0);
    // SAFETY: as above; the function is now `mov eax, 2; ret`.
    let after = unsafe { metal_patch_target() };
    // SAFETY: as the write above: back to `mov eax, 1`.
    unsafe { core::ptr::write_volatile(imm, 1) };
    cpu::cpuid(0, 0);
    // SAFETY: as above.
    let restored = unsafe { metal_patch_target() };
    assert_eq!((before, after, restored), (1, 2, 1), "patching through the text alias");
    kprintln!("patch: through the alias at {:#x}: returns {before}, then {after}, then {restored}: ok", imm as usize);
}
