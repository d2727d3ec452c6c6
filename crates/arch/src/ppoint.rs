//! Preemption-point sites: 5-byte do-nothing instructions in the machine code, listed in a table
//! at link time, that one byte turns into a call or a breakpoint.
//!
//! **Mechanism.** [`preempt_point!`](crate::preempt_point) emits `cmp eax, imm32` (`3d` + 4
//! bytes) whose immediate is the `rel32` from the end of the site to `rt_reschedule`, the asm
//! entry of the point hook (the seed's "patch a `jmp rt_reschedule` at the next preemption
//! point"). That instruction only writes the flags, which the asm block declares clobbered: it
//! is the site's NOP (its "idle" form). Changing the first byte alone makes it `call
//! rt_reschedule` (`e8`, the same four bytes now read as the call's displacement), which passes
//! the site to the core's `Hooks::rt_reschedule`, or a breakpoint (`cc`), so every patch is
//! one byte and the other four never change. Into the `atomkernel_ppoints` section goes an entry
//! of two PC-relative 32-bit offsets: to the site and to a static [`PointInfo`] (file, line,
//! module). The linker gathers the entries of every crate between `__start_atomkernel_ppoints`
//! and `__stop_atomkernel_ppoints`, as Linux gathers `__jump_table`; the section is marked
//! retained (`R`) so section GC keeps it. The asm block declares the C ABI's caller-saved
//! registers clobbered, so the call needs to save nothing at the site; it is not `nostack`, so
//! `rsp` is 16-byte aligned there and the red zone is free.
//!
//! **Invariant.** Every site in the table is five bytes: bytes 1..5 are always the `rel32` to
//! `rt_reschedule`, byte 0 is one of [`OP_IDLE`], [`OP_CALL`], [`OP_INT3`]. Each of the
//! three forms is safe to execute at any moment, which is what lets [`crate::patch`] change a
//! site while other threads run it without the `text_poke_bp` synchronisation.

pub use arch_api::{PointInfo, Site};

pub use arch_api::site::{OP_CALL, OP_IDLE, OP_INT3};

/// The five bytes of the site at `addr` in the given form (`op` is one of the `OP_*` bytes).
pub fn site_bytes(addr: usize, op: u8) -> [u8; 5] {
    let rel = (rt_reschedule_target() as i64 - (addr as i64 + 5)) as i32;
    let r = rel.to_le_bytes();
    [op, r[0], r[1], r[2], r[3]]
}

/// The bytes of the site at `addr` while unpatched (its NOP).
pub fn idle_bytes(addr: usize) -> [u8; 5] {
    site_bytes(addr, OP_IDLE)
}

/// A preemption point between two atoms of kernel work: emits a site here, a 5-byte idle
/// instruction registered in the site table. `voluntary` and `cpulock` keep every site patched
/// into `call rt_reschedule` (the core's `Hooks::rt_reschedule`); the patch models arm only the
/// sites an RT event needs, as `int3` or `call`; otherwise it stays a NOP and costs nothing but
/// its bytes. The kernel re-exports it as `kernel::preempt_point!`.
#[macro_export]
macro_rules! preempt_point {
    () => {{
        static INFO: $crate::ppoint::PointInfo = $crate::ppoint::PointInfo {
            file: file!(),
            line: line!(),
            column: column!(),
            module: module_path!(),
        };
        // SAFETY: the block is `cmp eax, imm32` (it writes only the flags, which asm! without
        // `preserves_flags` declares clobbered) plus a table entry in another section. It
        // declares the C ABI's caller-saved registers clobbered because the patcher may turn it
        // into a call of `rt_reschedule`, which calls an `extern "C"` function.
        unsafe {
            ::core::arch::asm!(
                "2:",
                ".byte 0x3d",
                ".long rt_reschedule - (2b + 5)",
                ".pushsection atomkernel_ppoints,\"aR\",@progbits",
                ".balign 4",
                ".long 2b - .",
                ".long {info} - .",
                ".popsection",
                info = sym INFO,
                clobber_abi("C"),
            )
        }
    }};
}

// A site of the arch crate's own, in a function the table reader references, so the section
// (and its start/stop symbols) exists in every program that links this crate.
#[inline(never)]
fn canary_body() {
    preempt_point!();
}

/// Runs the canary site once (tests patch it and call this).
#[inline(never)]
pub fn canary() {
    canary_body();
}

extern "C" {
    static __start_atomkernel_ppoints: [i32; 0];
    static __stop_atomkernel_ppoints: [i32; 0];
}

/// Every preemption-point site in the program, in table order.
pub fn sites() -> Vec<Site> {
    std::hint::black_box(canary as fn());
    // SAFETY: the linker defines both symbols around the section, which holds pairs of i32
    // PC-relative offsets written by `preempt_point!`; each resolves to a site in the
    // program's text and to a `static PointInfo`.
    unsafe {
        let start = __start_atomkernel_ppoints.as_ptr();
        let stop = __stop_atomkernel_ppoints.as_ptr();
        let n = (stop as usize - start as usize) / 8;
        (0..n)
            .map(|i| {
                let field = |k: usize| {
                    let p = start.add(2 * i + k);
                    (p as isize + *p as isize) as usize
                };
                Site { addr: field(0), info: &*(field(1) as *const PointInfo) }
            })
            .collect()
    }
}

/// The address an armed site calls: `rt_reschedule` (asm), which passes the site address to
/// the core's `Hooks::rt_reschedule`.
pub(crate) fn rt_reschedule_target() -> usize {
    rt_reschedule as *const () as usize
}

// Reached by a patched site's `call rel32`: an ordinary call, so the CIE's rules (CFA = rsp +
// 8, return address at CFA - 8) hold at every instruction and the body needs no CFI of its own.
crate::asm::asm_function!(
    "rt_reschedule",
    [
        "    mov rdi, [rsp]",        // the return address: site + 5
        "    sub rdi, 5",            // the site: the body's argument
        "    jmp {body}",            // tail call: the body returns straight to the site's caller
    ],
    body = sym rt_reschedule_body,
);

extern "C" {
    fn rt_reschedule();
}

/// The Rust half of `rt_reschedule`: the core's hook, if this thread is a CPU.
extern "C" fn rt_reschedule_body(site: usize) {
    if let Some(hooks) = crate::percpu::hooks() {
        (hooks.rt_reschedule)(site);
    }
    #[cfg(feature = "testing")]
    crate::testing::count_rt_reschedule();
}
