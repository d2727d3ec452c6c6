//! # Register-integrity torture
//!
//! **Mechanism.** [`fill_spin_dump`] loads a known pattern into every architectural register a
//! preemption must preserve — the 15 general-purpose registers other than `rsp` (including `rbx`
//! and `rbp`, which LLVM does not let us name), `rflags` with `DF=1`, a non-default `MXCSR`, the
//! whole vector register file of the CPU (`xmm0..15`, `ymm0..15` or `zmm0..31`) and, with
//! AVX-512, the opmask registers `k0..k7` — then spins with all of them live and finally dumps
//! them into a [`RegState`]. The spin counts down in `rcx` with `loop`, which touches neither
//! flags nor any other register, so `rcx` is the only register that changes (it ends at 0).
//!
//! **Invariant tested.** Whatever lands in the middle of the spin — a host signal, or the
//! kernel's preemption trampoline saving everything, switching to another task and restoring
//! everything later — the interrupted code must observe no change in any of those registers.
//! [`check_round`] compares the dump with the pattern and names the registers that changed.
//!
//! The status-flag pattern sets CF, PF, AF, ZF, SF and OF together: no arithmetic instruction can
//! produce ZF=1 together with SF=1, so flags recomputed by foreign code can never pass by luck.
//!
//! ## Stack inside the asm
//!
//! The asm keeps its state on the stack so that it can find its way back once every
//! general-purpose register holds a pattern value. Offsets are from `rsp` after the prologue:
//!
//! ```text
//!   rsp+32  saved rbp                     (pushed first; LLVM's frame pointer)
//!   rsp+24  saved rbx                     (LLVM's base pointer)
//!   rsp+16  caller's MXCSR (low 4 bytes)  (restored before returning)
//!   rsp+8   output pointer: &mut RegState (read back after the spin)
//!   rsp+0   spin count                    (loaded into rcx last)  <- rsp while spinning
//!   rsp-8   transient: pattern MXCSR during ldmxcsr, pattern rflags for popfq, then rax
//!           parked while the output pointer is fetched (output pointer at rsp+16 then)
//!   below   the 128-byte red zone the kernel's preemption skips, then its frames
//! ```
//!
//! The caller's `DF=0` (required by the ABI) and MXCSR are restored before the asm ends; the
//! AVX and AVX-512 variants end with `vzeroupper`. Everything else is declared clobbered.
//!
//! ## CFI inside the asm
//!
//! Every instruction of the asm that moves `rsp` is followed by `.cfi_adjust_cfa_offset`, and
//! the saves of `rbp` and `rbx` by `.cfi_rel_offset`, so the call-frame information is right at
//! every instruction: an unwinder (the kernel's patch models walking up from an interrupted ip,
//! gdb's `bt`) steps out of the spin to the torture's callers with their `rbp` and `rbx`. The
//! asm ends with `.cfi_restore_state`, back to the function's own row from before it.

use std::arch::asm;
use std::fmt;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which vector register file the CPU has (runtime-detected once, cached in a static).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorIsa {
    /// `xmm0..15`, 128 bits each (the x86-64 baseline).
    Sse,
    /// `ymm0..15`, 256 bits each.
    Avx,
    /// `zmm0..31`, 512 bits each, plus the opmasks `k0..k7`. Needs AVX512F and AVX512BW (for
    /// `kmovq`, which moves all 64 bits of an opmask).
    Avx512,
}

impl VectorIsa {
    /// All variants, narrowest first.
    pub const ALL: [VectorIsa; 3] = [VectorIsa::Sse, VectorIsa::Avx, VectorIsa::Avx512];

    /// Whether this CPU and the host OS (which must save the state) support the variant.
    pub fn is_supported(self) -> bool {
        match self {
            VectorIsa::Sse => true,
            VectorIsa::Avx => is_x86_feature_detected!("avx"),
            VectorIsa::Avx512 => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"),
        }
    }

    /// (vector registers, valid 64-bit lanes per register, opmask registers, register prefix).
    pub const fn shape(self) -> (usize, usize, usize, &'static str) {
        match self {
            VectorIsa::Sse => (16, 2, 0, "xmm"),
            VectorIsa::Avx => (16, 4, 0, "ymm"),
            VectorIsa::Avx512 => (32, 8, 8, "zmm"),
        }
    }
}

/// 0 = not detected yet, otherwise `VectorIsa as u8 + 1`.
static DETECTED_ISA: AtomicU8 = AtomicU8::new(0);

/// The widest vector register file this CPU supports (detected once, then cached).
pub fn vector_isa() -> VectorIsa {
    let cached = usize::from(DETECTED_ISA.load(Ordering::Relaxed));
    if let Some(&isa) = VectorIsa::ALL.get(cached.wrapping_sub(1)) {
        return isa;
    }
    let mut widest = VectorIsa::ALL.into_iter().rev().filter(|isa| isa.is_supported());
    let isa = widest.next().unwrap_or(VectorIsa::Sse);
    DETECTED_ISA.store(isa as u8 + 1, Ordering::Relaxed);
    isa
}

/// The direction flag: 1 in the pattern, 0 whenever Rust code runs.
const DF: u64 = 1 << 10;
/// The rflags bits the pattern sets and [`compare`] checks: CF PF AF ZF SF DF OF (`0xcd5`).
pub const FLAGS_MASK: u64 = 1 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | DF | 1 << 11;
/// Bit 1 (always one) and IF (always one in user mode, where `popfq` cannot change it).
const RFLAGS_FIXED: u64 = 1 << 1 | 1 << 9;
/// The pattern rflags: every compared flag set, DF included (`0xed7`).
pub const PATTERN_RFLAGS: u64 = FLAGS_MASK | RFLAGS_FIXED;
/// MXCSR with all six exceptions masked, as in the default `0x1f80`.
const MXCSR_ALL_MASKED: u32 = 0x1F80;
/// The pattern MXCSR before the seed adds sticky exception flags (bits 0..5): all exceptions
/// masked, rounding toward zero (RC=11), flush-to-zero: `0xff80`.
pub const PATTERN_MXCSR: u32 = MXCSR_ALL_MASKED | 0x6000 | 0x8000;
/// MXCSR bits that may be loaded: all but DAZ (not on every CPU) and the reserved bits.
const MXCSR_LOADABLE: u32 = 0xFFBF;
/// At most this many mismatches are reported per round.
pub const MAX_MISMATCHES: usize = 8;
/// Index of rcx in [`RegState::gpr`]: the spin counter, 0 after the spin.
const RCX: usize = 2;
/// Names of the [`RegState::gpr`] entries, in order.
pub const GPR_NAMES: [&str; 15] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// A snapshot of every register the torture loads (`#[repr(C)]`: the asm uses its offsets).
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegState {
    /// rax rbx rcx rdx rsi rdi rbp r8..r15 (all but rsp; see [`GPR_NAMES`]). As an input the
    /// rcx entry is ignored (rcx counts the spin); as an expectation it is 0.
    pub gpr: [u64; 15],
    /// Only the [`FLAGS_MASK`] bits are loaded and compared.
    pub rflags: u64,
    /// Loaded with every exception masked and DAZ clear.
    pub mxcsr: u32,
    /// `zmm0..31` as 64-bit lanes: only `xmm0..15` lanes `[0..2]` are valid under
    /// [`VectorIsa::Sse`], `ymm0..15` lanes `[0..4]` under [`VectorIsa::Avx`].
    pub vec: [[u64; 8]; 32],
    /// Opmasks `k0..k7` ([`VectorIsa::Avx512`] only).
    pub k: [u64; 8],
}

const GPR_OFF: usize = offset_of!(RegState, gpr);
const RFLAGS_OFF: usize = offset_of!(RegState, rflags);
const MXCSR_OFF: usize = offset_of!(RegState, mxcsr);
const VEC_OFF: usize = offset_of!(RegState, vec);
const K_OFF: usize = offset_of!(RegState, k);

/// The splitmix64 step: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (*state ^ (*state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RegState {
    /// The pattern for `seed` on this CPU's [`vector_isa`]: see [`RegState::pattern_for`].
    pub fn pattern(seed: u64) -> RegState {
        RegState::pattern_for(seed, vector_isa())
    }

    /// A deterministic pattern: distinct splitmix64 values in every general-purpose register
    /// but rcx (0, its value after the spin) and in every vector lane and opmask valid for
    /// `isa`; [`PATTERN_RFLAGS`]; [`PATTERN_MXCSR`] plus seed-dependent sticky exception flags.
    /// Lanes and opmasks `isa` lacks are zero.
    pub fn pattern_for(seed: u64, isa: VectorIsa) -> RegState {
        let (regs, lanes, kregs, _) = isa.shape();
        // Start from a mixed seed, so that nearby seeds do not give shifted streams.
        let mut state = seed;
        let mut state = splitmix64(&mut state);
        let mut next = || splitmix64(&mut state);
        let mut p = RegState { rflags: PATTERN_RFLAGS, ..RegState::default() };
        for (i, g) in p.gpr.iter_mut().enumerate() {
            *g = if i == RCX { 0 } else { next() };
        }
        p.mxcsr = PATTERN_MXCSR | (next() as u32 & 0x3F);
        p.vec[..regs].iter_mut().flat_map(|r| &mut r[..lanes]).for_each(|v| *v = next());
        p.k[..kregs].iter_mut().for_each(|k| *k = next());
        p
    }
}

/// One register that did not survive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The register, e.g. `"r13"`, `"zmm17 lane 3"`, `"rflags"`, `"mxcsr"`, `"k5"`.
    pub what: String,
    /// The value in the pattern (rflags masked with [`FLAGS_MASK`]).
    pub expected: u64,
    /// The value in the dump (rflags masked with [`FLAGS_MASK`]).
    pub found: u64,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Mismatch { what, expected, found } = self;
        write!(f, "{what}: expected {expected:#018x}, found {found:#018x}")
    }
}

/// Compares the registers valid for `isa` (rflags under [`FLAGS_MASK`]) and returns the first
/// [`MAX_MISMATCHES`] differences, in register order.
pub fn compare(expected: &RegState, found: &RegState, isa: VectorIsa) -> Vec<Mismatch> {
    let (regs, lanes, kregs, prefix) = isa.shape();
    let mut out = Vec::new();
    let mut note = |e: u64, f: u64, what: &dyn Fn() -> String| {
        if e != f && out.len() < MAX_MISMATCHES {
            out.push(Mismatch { what: what(), expected: e, found: f });
        }
    };
    for (i, name) in GPR_NAMES.iter().enumerate() {
        note(expected.gpr[i], found.gpr[i], &|| name.to_string());
    }
    let flags = (expected.rflags & FLAGS_MASK, found.rflags & FLAGS_MASK);
    note(flags.0, flags.1, &|| "rflags".into());
    note(expected.mxcsr.into(), found.mxcsr.into(), &|| "mxcsr".into());
    for r in 0..regs {
        for l in 0..lanes {
            note(expected.vec[r][l], found.vec[r][l], &|| format!("{prefix}{r} lane {l}"));
        }
    }
    for i in 0..kregs {
        note(expected.k[i], found.k[i], &|| format!("k{i}"));
    }
    out
}

/// Loads `pattern` (for the detected [`vector_isa`]) into the registers, sets rflags and MXCSR,
/// spins `spins` iterations with all of them live, then stores everything into a [`RegState`]
/// and returns it. Only the [`FLAGS_MASK`] bits of `pattern.rflags` are loaded, MXCSR is loaded
/// with all exceptions masked and DAZ clear, and the rcx entry is ignored (rcx is the counter).
/// Lanes the ISA lacks are zero in the result.
pub fn fill_spin_dump(pattern: &RegState, spins: u64) -> RegState {
    run(vector_isa(), pattern, spins)
}

/// [`fill_spin_dump`] with an explicit vector ISA (any one the CPU supports, not only the
/// widest). Panics if the CPU does not support `isa`.
pub fn fill_spin_dump_with(isa: VectorIsa, pattern: &RegState, spins: u64) -> RegState {
    assert!(isa.is_supported(), "this CPU does not support {isa:?}");
    run(isa, pattern, spins)
}

/// [`fill_spin_dump`] of [`RegState::pattern`]`(seed)` plus [`compare`]: `Err` lists the first
/// mismatches (at most [`MAX_MISMATCHES`]).
pub fn check_round(seed: u64, spins: u64) -> Result<(), Vec<Mismatch>> {
    check_round_with(vector_isa(), seed, spins)
}

/// [`check_round`] with an explicit vector ISA. Panics if the CPU does not support `isa`.
pub fn check_round_with(isa: VectorIsa, seed: u64, spins: u64) -> Result<(), Vec<Mismatch>> {
    let pattern = RegState::pattern_for(seed, isa);
    let mismatches = compare(&pattern, &fill_spin_dump_with(isa, &pattern, spins), isa);
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(mismatches)
    }
}

/// Runs the asm variant for `isa`, which the caller has checked is supported.
fn run(isa: VectorIsa, pattern: &RegState, spins: u64) -> RegState {
    let mut out = RegState::default();
    let rflags = (pattern.rflags & FLAGS_MASK) | RFLAGS_FIXED;
    let mxcsr = u64::from((pattern.mxcsr & MXCSR_LOADABLE) | MXCSR_ALL_MASKED);
    let (p, o) = (pattern as *const RegState, &mut out as *mut RegState);
    // SAFETY: callers pass only supported ISAs (vector_isa() or an is_supported() check), so
    // the variant's target features are present; p and o come from live references.
    unsafe {
        match isa {
            VectorIsa::Sse => torture_sse(p, o, spins, rflags, mxcsr),
            VectorIsa::Avx => torture_avx(p, o, spins, rflags, mxcsr),
            VectorIsa::Avx512 => torture_avx512(p, o, spins, rflags, mxcsr),
        }
    }
    out
}

/// One asm line per listed register number `N`: `pre N mid N post`.
macro_rules! each {
    ($pre:literal, $mid:literal, $post:literal; $($i:literal)*) => {
        concat!($($pre, $i, $mid, $i, $post, "\n"),*)
    };
}

/// Defines one variant of the torture: `$load`/`$store` are its vector lines, `$end` runs last,
/// `$extra` are more named operands. Inputs: rdi = pattern, rsi = output, rdx = spins,
/// rcx = sanitized rflags, r8 = sanitized MXCSR. Stack layout: see the module docs.
macro_rules! torture_fn {
    ($(#[$attr:meta])* fn $name:ident, load: $load:expr, store: $store:expr, end: $end:expr,
     extra: [$($extra:tt)*]) => {
        $(#[$attr])*
        ///
        /// Never inlined: the function has nothing of its own to keep across the asm, so it
        /// leaves `rbx` and `rbp` to the asm, and the asm's CFI (where it saved them) is the
        /// whole truth about them.
        ///
        /// # Safety
        /// The CPU must support this variant's target features; `p` must point to a readable
        /// and `o` to a writable `RegState`.
        #[inline(never)]
        unsafe fn $name(p: *const RegState, o: *mut RegState, spins: u64, rflags: u64, mxcsr: u64) {
            // SAFETY: the features are present and p/o valid per this fn's contract. The asm
            // restores rsp, rbx, rbp, MXCSR and DF=0; declares every other register it writes
            // clobbered (clobber_abi covers the vector and opmask registers the target features
            // enable); sanitized rflags/MXCSR cannot trap; it only accesses *p, *o and the
            // stack slots it pushes (allowed: no `nostack`, so no red zone is live).
            unsafe { asm!(
                ".cfi_remember_state",              // the function's CFI row, restored at the end
                "push rbp",                         // save rbp (cannot be an operand)
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                ".cfi_rel_offset rbp, 0",           // CFI: the caller's rbp is at [rsp]
                "push rbx",                         // save rbx (cannot be an operand)
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                ".cfi_rel_offset rbx, 0",           // CFI: the caller's rbx is at [rsp]
                "sub rsp, 8",                       // reserve the caller-MXCSR slot
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "stmxcsr dword ptr [rsp]",          // save the caller's MXCSR there
                "push rsi",                         // save the output pointer
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "push rdx",                         // save the spin count: layout complete
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "push r8",                          // stage the pattern MXCSR (ldmxcsr: memory)
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "ldmxcsr dword ptr [rsp]",          // load the pattern MXCSR
                "pop r8",                           // unstage it; r8 gets its pattern below
                ".cfi_adjust_cfa_offset -8",        // CFI: rsp moved 8 up
                $load,                              // vector (and opmask) registers from *rdi
                "push rcx",                         // stage the sanitized pattern rflags
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "popfq",                            // load it: DF=1; no flag changes until pushfq
                ".cfi_adjust_cfa_offset -8",        // CFI: rsp moved 8 up
                "mov rax, [rdi + {gpr} + 0]",       // rax = pattern
                "mov rbx, [rdi + {gpr} + 8]",       // rbx = pattern
                "mov rdx, [rdi + {gpr} + 24]",      // rdx = pattern
                "mov rsi, [rdi + {gpr} + 32]",      // rsi = pattern
                "mov rbp, [rdi + {gpr} + 48]",      // rbp = pattern
                "mov r8, [rdi + {gpr} + 56]",       // r8 = pattern
                "mov r9, [rdi + {gpr} + 64]",       // r9 = pattern
                "mov r10, [rdi + {gpr} + 72]",      // r10 = pattern
                "mov r11, [rdi + {gpr} + 80]",      // r11 = pattern
                "mov r12, [rdi + {gpr} + 88]",      // r12 = pattern
                "mov r13, [rdi + {gpr} + 96]",      // r13 = pattern
                "mov r14, [rdi + {gpr} + 104]",     // r14 = pattern
                "mov r15, [rdi + {gpr} + 112]",     // r15 = pattern
                "mov rcx, [rsp]",                   // rcx = spin count (0 expected afterwards)
                "mov rdi, [rdi + {gpr} + 40]",      // rdi = pattern; last: the pointer dies here
                "jrcxz 3f",                         // no spins: skip (loop would wrap to 2^64)
                "2:",                               // spin: every register live, preemptible
                "loop 2b",                          // rcx -= 1, again while nonzero; flags kept
                "3:",                               // spin done
                "push rax",                         // park rax; output pointer now at [rsp+16]
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "mov rax, [rsp + 16]",              // rax = output pointer
                "mov [rax + {gpr} + 8], rbx",       // store rbx
                "mov [rax + {gpr} + 16], rcx",      // store rcx (0 expected)
                "mov [rax + {gpr} + 24], rdx",      // store rdx
                "mov [rax + {gpr} + 32], rsi",      // store rsi
                "mov [rax + {gpr} + 40], rdi",      // store rdi
                "mov [rax + {gpr} + 48], rbp",      // store rbp
                "mov [rax + {gpr} + 56], r8",       // store r8
                "mov [rax + {gpr} + 64], r9",       // store r9
                "mov [rax + {gpr} + 72], r10",      // store r10
                "mov [rax + {gpr} + 80], r11",      // store r11
                "mov [rax + {gpr} + 88], r12",      // store r12
                "mov [rax + {gpr} + 96], r13",      // store r13
                "mov [rax + {gpr} + 104], r14",     // store r14
                "mov [rax + {gpr} + 112], r15",     // store r15
                "pop rbx",                          // rbx = parked rax (pop keeps flags)
                ".cfi_adjust_cfa_offset -8",        // CFI: rsp moved 8 up
                "mov [rax + {gpr} + 0], rbx",       // store rax
                "pushfq",                           // rflags, untouched since popfq
                ".cfi_adjust_cfa_offset 8",         // CFI: rsp moved 8 down
                "pop rbx",                          // rbx = rflags
                ".cfi_adjust_cfa_offset -8",        // CFI: rsp moved 8 up
                "mov [rax + {rflags}], rbx",        // store rflags
                "stmxcsr dword ptr [rax + {mxcsr}]", // store MXCSR
                $store,                             // vector (and opmask) registers to *rax
                "ldmxcsr dword ptr [rsp + 16]",     // restore the caller's MXCSR
                "add rsp, 24",                      // drop spin count, output pointer, MXCSR
                ".cfi_adjust_cfa_offset -24",       // CFI: rsp moved 24 up
                "pop rbx",                          // restore rbx
                ".cfi_adjust_cfa_offset -8",        // CFI: rsp moved 8 up
                "pop rbp",                          // restore rbp
                ".cfi_restore_state",               // CFI: the function's row again (rsp as at entry)
                "cld",                              // DF=0, as the ABI requires
                $end,                               // vzeroupper for AVX and AVX-512
                $($extra)*
                gpr = const GPR_OFF,
                rflags = const RFLAGS_OFF,
                mxcsr = const MXCSR_OFF,
                vec = const VEC_OFF,
                inout("rdi") p => _,
                inout("rsi") o => _,
                inout("rdx") spins => _,
                inout("rcx") rflags => _,
                inout("r8") mxcsr => _,
                out("rax") _, out("r9") _, out("r10") _, out("r11") _,
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                clobber_abi("C"),
            ) }
        }
    };
}

torture_fn! {
    /// SSE variant: `xmm0..15` via `movdqu` (x86-64 baseline).
    fn torture_sse,
    load: each!("movdqu xmm", ", [rdi + {vec} + 64*", "]";          // xmmN = vec[N][0..2]
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
    store: each!("movdqu [rax + {vec} + 64*", "], xmm", "";         // vec[N][0..2] = xmmN
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
    end: "",
    extra: []
}

torture_fn! {
    /// AVX variant: `ymm0..15` via `vmovdqu`.
    #[target_feature(enable = "avx")]
    fn torture_avx,
    load: each!("vmovdqu ymm", ", [rdi + {vec} + 64*", "]";         // ymmN = vec[N][0..4]
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
    store: each!("vmovdqu [rax + {vec} + 64*", "], ymm", "";        // vec[N][0..4] = ymmN
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
    end: "vzeroupper",                                              // no dirty upper state
    extra: []
}

torture_fn! {
    /// AVX-512 variant: `zmm0..31` via `vmovdqu64`, `k0..k7` via `kmovq` (AVX512BW).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn torture_avx512,
    load: concat!(
        each!("vmovdqu64 zmm", ", [rdi + {vec} + 64*", "]";         // zmmN = vec[N]
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31),
        each!("kmovq k", ", [rdi + {k} + 8*", "]"; 0 1 2 3 4 5 6 7),  // kN = k[N]
    ),
    store: concat!(
        each!("vmovdqu64 [rax + {vec} + 64*", "], zmm", "";         // vec[N] = zmmN
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31),
        each!("kmovq [rax + {k} + 8*", "], k", ""; 0 1 2 3 4 5 6 7),  // k[N] = kN
    ),
    end: "vzeroupper",                                              // no dirty upper state
    extra: [k = const K_OFF,]
}

#[cfg(test)]
mod tests;
