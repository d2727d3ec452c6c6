//! The register torture: every general register, the vector registers and the red zone kept
//! intact across preemptions on the real interrupt return.
//!
//! **Mechanism.** `metal_torture(seed, spins)` (asm) fills xmm0-15 (both halves: `seed ^
//! (0x100 + k)`), the 16 quadwords of the red zone below its `rsp` (`seed ^ (0x200 + k)`) and
//! the 15 general registers but `rsp` (`seed ^ k`, rbp included), spins `spins` times on a
//! memory counter (no register changes), then checks the red zone (a mismatch sets
//! `metal_torture_rz_bad`), saves every register to its stack and counts the registers that
//! differ from their pattern: the count is its result. Meanwhile an RT task woken every
//! 500 µs by its timer clobbers every vector and general register it may; each of its runs
//! during a torture call is a preemption of that call on an interrupt's return (the only way
//! it can get the CPU while the asm spins).
//!
//! **Invariant.** The asm follows the SysV ABI at its boundary (callee-saved registers pushed
//! and popped, `rsp` 16-byte aligned at no call, none made); a non-zero count or a red-zone
//! flag is a lost register.

use alloc::sync::Arc;
use arch_metal::kprintln;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use kernel::TaskBuilder;

#[no_mangle]
static metal_torture_rz_bad: AtomicU8 = AtomicU8::new(0);
#[no_mangle]
static metal_torture_scratch: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    ".section .text.metal_torture, \"ax\"",
    ".global metal_torture",
    "metal_torture:",                                // rdi = seed, rsi = spins
    "push rbp",                                      // callee-saved registers
    "push rbx",                                      // rbx
    "push r12",                                      // r12
    "push r13",                                      // r13
    "push r14",                                      // r14
    "push r15",                                      // r15
    "push rdi",                                      // [rsp + 8] = seed
    "push rsi",                                      // [rsp] = the spin counter
    ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // the vector registers:
    "mov rax, rdi",                                  //   the seed
    "xor rax, 0x100 + \\k",                          //   ^ (0x100 + k)
    "movq xmm\\k, rax",                              //   in the low half
    "punpcklqdq xmm\\k, xmm\\k",                     //   and the high half
    ".endr",                                         // (end of the vector registers)
    ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // the red zone's 16 quadwords:
    "mov rax, rdi",                                  //   the seed
    "xor rax, 0x200 + \\k",                          //   ^ (0x200 + k)
    "mov [rsp - 8 - 8 * \\k], rax",                  //   at rsp - 8 - 8k
    ".endr",                                         // (end of the red zone)
    "mov rax, rdi",
    "xor rax, 1", // rax = seed ^ 1
    "mov rbx, rdi",
    "xor rbx, 2", // rbx = seed ^ 2
    "mov rcx, rdi",
    "xor rcx, 3", // rcx = seed ^ 3
    "mov rdx, rdi",
    "xor rdx, 4", // rdx = seed ^ 4
    "mov rbp, rdi",
    "xor rbp, 5", // rbp = seed ^ 5
    "mov rsi, rdi",
    "xor rsi, 6", // rsi = seed ^ 6
    "mov r8, rdi",
    "xor r8, 8", // r8 = seed ^ 8
    "mov r9, rdi",
    "xor r9, 9", // r9 = seed ^ 9
    "mov r10, rdi",
    "xor r10, 10", // r10 = seed ^ 10
    "mov r11, rdi",
    "xor r11, 11", // r11 = seed ^ 11
    "mov r12, rdi",
    "xor r12, 12", // r12 = seed ^ 12
    "mov r13, rdi",
    "xor r13, 13", // r13 = seed ^ 13
    "mov r14, rdi",
    "xor r14, 14", // r14 = seed ^ 14
    "mov r15, rdi",
    "xor r15, 15", // r15 = seed ^ 15
    "xor rdi, 7",  // rdi = seed ^ 7 (the seed is at [rsp + 8])
    "2:",
    "dec qword ptr [rsp]",                           // spin on memory: no register changes
    "jnz 2b",                                        // until the counter is 0
    "mov [rip + metal_torture_scratch], rax",        // free rax for the red zone's check
    ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // each red-zone quadword:
    "mov rax, [rsp + 8]",                            //   the seed
    "xor rax, 0x200 + \\k",                          //   its pattern
    "cmp rax, [rsp - 8 - 8 * \\k]",                  //   intact?
    "je 3f",                                         //   yes: next
    "mov byte ptr [rip + metal_torture_rz_bad], 1",  // no: flag it
    "3:",
    ".endr",                                  // (end of the red zone's check)
    "mov rax, [rip + metal_torture_scratch]", // rax back
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx", // save the general registers:
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8", //   rax at rsp + 368 (after the vector area),
    "push r9",
    "push r10",
    "push r11",
    "push r12", //   r15 at rsp + 256
    "push r13",
    "push r14",
    "push r15",                                      // (15 pushes)
    "sub rsp, 256",                                  // the vector registers' area
    ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // each xmm:
    "movdqu [rsp + 16 * \\k], xmm\\k",               //   saved
    ".endr",                                         // (end of the vector save)
    "mov rdx, [rsp + 256 + 15 * 8 + 8]",             // rdx = the seed
    "xor eax, eax",                                  // rax = mismatches
    ".macro metal_torture_check k, off",             // one general register's check:
    "mov rcx, rdx",                                  //   the seed
    "xor rcx, \\k",                                  //   ^ k
    "cmp rcx, [rsp + \\off]",                        //   the saved value
    "setne r8b",                                     //   1 if it differs
    "movzx r8d, r8b",                                //   widened
    "add rax, r8",                                   //   counted
    ".endm",                                         // (end of the macro)
    "metal_torture_check 1, 368",                    // rax
    "metal_torture_check 2, 360",                    // rbx
    "metal_torture_check 3, 352",                    // rcx
    "metal_torture_check 4, 344",                    // rdx
    "metal_torture_check 6, 336",                    // rsi
    "metal_torture_check 7, 328",                    // rdi
    "metal_torture_check 5, 320",                    // rbp
    "metal_torture_check 8, 312",                    // r8
    "metal_torture_check 9, 304",                    // r9
    "metal_torture_check 10, 296",                   // r10
    "metal_torture_check 11, 288",                   // r11
    "metal_torture_check 12, 280",                   // r12
    "metal_torture_check 13, 272",                   // r13
    "metal_torture_check 14, 264",                   // r14
    "metal_torture_check 15, 256",                   // r15
    ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // each xmm, both halves:
    "metal_torture_check 0x100 + \\k, 16 * \\k",     //   low
    "metal_torture_check 0x100 + \\k, 16 * \\k + 8", //   high
    ".endr",                                         // (end of the vector check)
    ".purgem metal_torture_check",                   // the macro's name is free again
    "add rsp, 256 + 15 * 8 + 16",                    // drop the saves, the counter and the seed
    "pop r15",                                       // callee-saved registers back
    "pop r14",                                       // r14
    "pop r13",                                       // r13
    "pop r12",                                       // r12
    "pop rbx",                                       // rbx
    "pop rbp",                                       // rbp
    "ret",                                           // rax = mismatches
);

extern "C" {
    fn metal_torture(seed: u64, spins: u64) -> u64;
}

/// Clobbers every register an interrupted task must get back (run by the RT task).
fn clobber() {
    // SAFETY: writes only registers declared clobbered.
    unsafe {
        core::arch::asm!(
            ".irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", // each xmm:
            "pcmpeqd xmm\\k, xmm\\k",                        //   all ones
            ".endr",                                         // (end)
            "mov rax, -1",
            "mov rcx, -1",
            "mov rdx, -1", // the caller-saved registers
            "mov rsi, -1",
            "mov rdi, -1",
            "mov r8, -1", // to all ones
            "mov r9, -1",
            "mov r10, -1",
            "mov r11, -1", // (the callee-saved ones the compiler restores)
            clobber_abi("C"),
        )
    }
}

/// Runs torture calls on CPU `cpu` until the RT task preempted them `want` times; one JSON
/// line. The calls run in a task bound to `cpu` and the RT task is bound to it too (its timer,
/// and so its wake-up and the preemption, that CPU's own): on more CPUs the RT task would
/// otherwise run beside the calls and never preempt them; on an AP, its gate, its IST stacks
/// and its vector state are under the same patterns.
pub(crate) fn torture_on(kernel_mode: bool, cpu: usize) -> bool {
    let mask = 1u64 << cpu;
    let t = kernel::spawn(TaskBuilder::new("torture").cpus(mask), move || i64::from(!calls(kernel_mode, cpu)));
    t.join() == Ok(0)
}

/// The torture loop (see [`torture_on`]); `cpu`: the CPU both tasks are bound to.
fn calls(kernel_mode: bool, cpu: usize) -> bool {
    let runs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (runs.clone(), stop.clone());
    let rt = kernel::spawn(TaskBuilder::new("clobber").fifo(60).cpus(1 << cpu), move || {
        while !s.load(Ordering::Acquire) {
            kernel::time::sleep_ns(500_000);
            crate::scenarios::check_sites_idle();
            clobber();
            r.fetch_add(1, Ordering::AcqRel);
        }
        0
    });
    let (mut calls, mut preempted, mut mismatches) = (0u64, 0u64, 0u64);
    let want = 20;
    let t0 = kernel::time::now_ns();
    while preempted < want && kernel::time::now_ns() - t0 < 10_000_000_000 {
        let before = runs.load(Ordering::Acquire);
        let seed = 0x5a5a_0000_0000_0000 ^ (calls << 16);
        // SAFETY: `metal_torture` follows the SysV ABI (see the module's invariant).
        let call = || unsafe { metal_torture(seed, 200_000) };
        mismatches += if kernel_mode { kernel::syscall(call) } else { call() };
        calls += 1;
        if runs.load(Ordering::Acquire) != before {
            preempted += 1;
        }
    }
    stop.store(true, Ordering::Release);
    let rt_ok = rt.join() == Ok(0);
    let rz_bad = metal_torture_rz_bad.load(Ordering::Acquire) != 0;
    let on_cpu = kernel::raw_smp_processor_id() == cpu;
    let ok = rt_ok && mismatches == 0 && !rz_bad && preempted >= want && on_cpu;
    kprintln!(
        "{{\"test\":\"torture\",\"mode\":\"{}\",\"cpu\":{},\"calls\":{calls},\"preempted_calls\":{preempted},\
         \"register_mismatches\":{mismatches},\"red_zone_intact\":{},\"ok\":{ok}}}",
        if kernel_mode { "kernel" } else { "user" },
        kernel::raw_smp_processor_id(),
        !rz_bad
    );
    ok
}
