//! The boot self-test: `alloc` on the heap, a patch of the text through its alias, an `int3`
//! through the IDT and back, and the fault the command line asks for; its lines are what
//! `tests/qemu.rs` checks.
//!
//! **Mechanism.** `alloc` builds a `Vec`, an `Arc`, a `String` with `format!` and checks
//! their values. The patch test calls `metal_patch_target` (`mov eax, 1; ret`), rewrites its
//! immediate through [`paging::text_alias`], serializes with CPUID, calls it again (2), and
//! restores it (1). The int3 probe (asm) fills the 128-byte red zone below its `rsp`, the 15
//! general registers and xmm0-15 with known values, executes `int3` (the `#BP` gate, on an IST
//! stack, returns by `iretq`; its handler clears xmm0-15, as any handler may) and checks them
//! all. `fault=stack-overflow` recurses until the
//! boot stack's guard page faults. `fault=ud2` runs a `ud2` whose address it prints first; `fault=write-text`
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

// The int3 probe: fills the 128-byte red zone below its rsp, the 15 general registers and
// xmm0-15 with known values, executes int3 (a #BP through the IDT, which returns), and
// answers 0 if all are intact, 1 if the red zone changed, 2 a general register, 3 an xmm.
core::arch::global_asm!(
    ".section .rodata.metal_probe, \"a\"",
    ".balign 8",                                                      // a table of quadwords
    "metal_probe_values:", // [0] rax and the red zone, [1..15) the other GPRs,
    ".set metal_i, 0",     //   [15..31) xmm0-15: all different
    ".rept 31",            // 31 values
    ".quad 0x1000000000000000 + metal_i * 0x0101010101010101 + 0x5a", // value i
    ".set metal_i, metal_i + 1", // the next
    ".endr",               // (end of the repetition)
    ".section .text.metal_probe, \"ax\"",
    ".global metal_int3_probe",
    "metal_int3_probe:",
    "push rbx",                                  // the callee-saved registers the caller gets back
    "push rbp",                                  // rbp
    "push r12",                                  // r12
    "push r13",                                  // r13
    "push r14",                                  // r14
    "push r15",                                  // r15
    "lea rax, [rip + metal_probe_values]",       // rax = the table (loaded last)
    "mov rbx, [rax + 8]",                        // value 1
    "mov rcx, [rax + 16]",                       // value 2
    "mov rdx, [rax + 24]",                       // value 3
    "mov rsi, [rax + 32]",                       // value 4
    "mov rdi, [rax + 40]",                       // value 5
    "mov rbp, [rax + 48]",                       // value 6
    "mov r8, [rax + 56]",                        // value 7
    "mov r9, [rax + 64]",                        // value 8
    "mov r10, [rax + 72]",                       // value 9
    "mov r11, [rax + 80]",                       // value 10
    "mov r12, [rax + 88]",                       // value 11
    "mov r13, [rax + 96]",                       // value 12
    "mov r14, [rax + 104]",                      // value 13
    "mov r15, [rax + 112]",                      // value 14
    "movq xmm0, [rax + 120]",                    // value 15
    "movq xmm1, [rax + 128]",                    // value 16
    "movq xmm2, [rax + 136]",                    // value 17
    "movq xmm3, [rax + 144]",                    // value 18
    "movq xmm4, [rax + 152]",                    // value 19
    "movq xmm5, [rax + 160]",                    // value 20
    "movq xmm6, [rax + 168]",                    // value 21
    "movq xmm7, [rax + 176]",                    // value 22
    "movq xmm8, [rax + 184]",                    // value 23
    "movq xmm9, [rax + 192]",                    // value 24
    "movq xmm10, [rax + 200]",                   // value 25
    "movq xmm11, [rax + 208]",                   // value 26
    "movq xmm12, [rax + 216]",                   // value 27
    "movq xmm13, [rax + 224]",                   // value 28
    "movq xmm14, [rax + 232]",                   // value 29
    "movq xmm15, [rax + 240]",                   // value 30
    "mov rax, [rax]",                            // rax = value 0, also the red zone's pattern
    ".set metal_off, 8",                         // the red zone: the 16 quadwords below rsp
    ".rept 16",                                  // 16 quadwords: 128 bytes
    "mov [rsp - metal_off], rax",                // fill one with the pattern
    ".set metal_off, metal_off + 8",             // the next one down
    ".endr",                                     // (end of the repetition)
    "int3",                                      // #BP: through its IDT gate (IST 4) and back by iretq
    ".set metal_off, 8",                         // check the red zone, quadword by quadword
    ".rept 16",                                  // 16 quadwords: 128 bytes
    "cmp [rsp - metal_off], rax",                // still the pattern? (a changed rax fails here too)
    "jne 6f",                                    // no: the red zone was written
    ".set metal_off, metal_off + 8",             // the next one down
    ".endr",                                     // (end of the repetition)
    "cmp rax, [rip + metal_probe_values]",       // each general register against its value
    "jne 7f",                                    // a changed register
    "cmp rbx, [rip + metal_probe_values + 8]",   // rbx
    "jne 7f",                                    // changed: answer 2
    "cmp rcx, [rip + metal_probe_values + 16]",  // rcx
    "jne 7f",                                    // changed: answer 2
    "cmp rdx, [rip + metal_probe_values + 24]",  // rdx
    "jne 7f",                                    // changed: answer 2
    "cmp rsi, [rip + metal_probe_values + 32]",  // rsi
    "jne 7f",                                    // changed: answer 2
    "cmp rdi, [rip + metal_probe_values + 40]",  // rdi
    "jne 7f",                                    // changed: answer 2
    "cmp rbp, [rip + metal_probe_values + 48]",  // rbp
    "jne 7f",                                    // changed: answer 2
    "cmp r8, [rip + metal_probe_values + 56]",   // r8
    "jne 7f",                                    // changed: answer 2
    "cmp r9, [rip + metal_probe_values + 64]",   // r9
    "jne 7f",                                    // changed: answer 2
    "cmp r10, [rip + metal_probe_values + 72]",  // r10
    "jne 7f",                                    // changed: answer 2
    "cmp r11, [rip + metal_probe_values + 80]",  // r11
    "jne 7f",                                    // changed: answer 2
    "cmp r12, [rip + metal_probe_values + 88]",  // r12
    "jne 7f",                                    // changed: answer 2
    "cmp r13, [rip + metal_probe_values + 96]",  // r13
    "jne 7f",                                    // changed: answer 2
    "cmp r14, [rip + metal_probe_values + 104]", // r14
    "jne 7f",                                    // changed: answer 2
    "cmp r15, [rip + metal_probe_values + 112]", // r15
    "jne 7f",                                    // changed: answer 2
    "lea rdx, [rip + metal_probe_values + 120]", // rdx walks the xmm values (GPRs are checked)
    "movq rcx, xmm0",                            // each xmm's low quadword against its value
    "cmp rcx, [rdx]",                            // xmm0
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm1",                            // xmm1's low quadword
    "cmp rcx, [rdx + 8]",                        // xmm1
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm2",                            // xmm2's low quadword
    "cmp rcx, [rdx + 16]",                       // xmm2
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm3",                            // xmm3's low quadword
    "cmp rcx, [rdx + 24]",                       // xmm3
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm4",                            // xmm4's low quadword
    "cmp rcx, [rdx + 32]",                       // xmm4
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm5",                            // xmm5's low quadword
    "cmp rcx, [rdx + 40]",                       // xmm5
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm6",                            // xmm6's low quadword
    "cmp rcx, [rdx + 48]",                       // xmm6
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm7",                            // xmm7's low quadword
    "cmp rcx, [rdx + 56]",                       // xmm7
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm8",                            // xmm8's low quadword
    "cmp rcx, [rdx + 64]",                       // xmm8
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm9",                            // xmm9's low quadword
    "cmp rcx, [rdx + 72]",                       // xmm9
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm10",                           // xmm10's low quadword
    "cmp rcx, [rdx + 80]",                       // xmm10
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm11",                           // xmm11's low quadword
    "cmp rcx, [rdx + 88]",                       // xmm11
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm12",                           // xmm12's low quadword
    "cmp rcx, [rdx + 96]",                       // xmm12
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm13",                           // xmm13's low quadword
    "cmp rcx, [rdx + 104]",                      // xmm13
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm14",                           // xmm14's low quadword
    "cmp rcx, [rdx + 112]",                      // xmm14
    "jne 8f",                                    // changed: answer 3
    "movq rcx, xmm15",                           // xmm15's low quadword
    "cmp rcx, [rdx + 120]",                      // xmm15
    "jne 8f",                                    // changed: answer 3
    "xor eax, eax",                              // all intact: 0
    "jmp 9f",                                    // to the return
    "6:",
    "mov eax, 1", // the red zone changed: 1
    "jmp 9f",     // to the return
    "7:",
    "mov eax, 2", // a general register changed: 2
    "jmp 9f",     // to the return
    "8:",
    "mov eax, 3", // an xmm register changed: 3
    "9:",
    "pop r15", // the caller's callee-saved registers back
    "pop r14", // r14
    "pop r13", // r13
    "pop r12", // r12
    "pop rbp", // rbp
    "pop rbx", // rbx
    "ret",     // eax: the answer
);

extern "C" {
    fn metal_int3_probe() -> u32;
    fn metal_patch_target() -> u32;
    fn metal_fault_ud2();
    fn metal_fault_write_text(at: *mut u8);
}

/// Runs the self-test and exits (see the module's description).
pub fn run(m: &Machine) -> ! {
    check_alloc();
    check_patch();
    check_int3();
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
        Some("stack-overflow") => {
            let guard = paging::layout().stack_guard;
            kprintln!("fault: overflowing the boot stack onto its guard page at {guard:#x}");
            let depth = recurse(0);
            panic!("the recursion returned after {depth} calls: no guard page");
        }
        Some(other) => panic!("unknown fault={other} (ud2, write-text, stack-overflow, none)"),
    }
    let (pvh, rust, end) = (crate::boot::tsc_at_pvh_entry(), m.tsc_at_rust, cpu::rdtsc());
    kprintln!(
        "tsc: {pvh} at the PVH entry, +{} to the Rust entry, +{} to the end of the self-test",
        rust.wrapping_sub(pvh),
        end.wrapping_sub(rust)
    );
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

fn check_int3() {
    let before = crate::idt::breakpoints();
    crate::idt::scrub_vector_registers_on_breakpoint(true);
    // SAFETY: `metal_int3_probe` follows the SysV ABI (it saves the callee-saved registers it
    // uses, clobbers only caller-saved ones and xmm0-15) and its int3 returns through the
    // IDT's #BP gate.
    let answer = unsafe { metal_int3_probe() };
    crate::idt::scrub_vector_registers_on_breakpoint(false);
    let served = crate::idt::breakpoints() - before;
    assert_eq!(served, 1, "the int3 reached the #BP gate once");
    match answer {
        0 => {}
        1 => panic!("an int3 wrote the red zone below the interrupted rsp"),
        2 => panic!("an int3 changed a general register"),
        3 => panic!("an int3 changed an xmm register"),
        n => panic!("the int3 probe answered {n}"),
    }
    kprintln!(
        "int3: #BP through the IDT on IST {} and back by iretq: the 128-byte red zone, the 15 general registers and xmm0-15 intact: ok",
        crate::idt::ist_of(3)
    );
}

/// Recurses with 512 bytes of locals a call until the boot stack's guard page stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + frame[63]
}
