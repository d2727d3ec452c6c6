//! Per-CPU data through the GS base: the core's hot per-CPU words and the CPU's pointers.
//!
//! **Mechanism.** Each CPU has one [`PerCpu`] block; `IA32_GS_BASE` (MSR `0xC000_0101`) holds
//! its address, written once by [`init`] on that CPU, so a `gs:`-relative access reaches this
//! CPU's copy in one instruction, as Linux's `this_cpu_*` ops do. The block's first word is its
//! own address, so Rust reaches the whole block with one `mov rax, gs:[0]`. The hot words (the
//! raw `preempt_count`, the core's flags, the system-call count, the soft-lockup touch, the
//! in-IRQ flag) are changed by single `gs:`-relative read-modify-write instructions: an
//! interrupt lands before or after such an instruction, never inside it, so one CPU's own
//! updates need no `lock` prefix. CPU 0's block is `PERCPU0`; each application processor's
//! is allocated by [`new_ap_block`] (`crate::smp`).
//!
//! **Invariant.** The GS base is set before any Rust code calls an accessor (the image's Rust
//! entry calls [`init`] first thing after the console), and it never changes afterwards.
//! The block's layout is `#[repr(C)]` and the `OFF_*` constants are its field offsets
//! (checked at compile time).

use arch_api::Hooks;
use core::any::TypeId;
use core::arch::asm;
use core::cell::Cell;
use core::mem::offset_of;

/// The raw `preempt_count` at boot: `PREEMPT_NEED_RESCHED` set (stored inverted: no
/// reschedule due), count zero.
const PREEMPT_ENABLED: u32 = 0x8000_0000;

/// The instance a CPU belongs to: a `Box<Arc<T>>` as a raw pointer, `T`'s `TypeId`, and the
/// function that drops the box.
type Instance = (usize, TypeId, fn(usize));

/// One CPU's block (see the module's description).
#[repr(C)]
pub struct PerCpu {
    this: Cell<usize>,
    cpu: Cell<u32>,
    preempt_count: Cell<u32>,
    core_flags: Cell<u32>,
    in_irq: Cell<u32>,
    syscalls: Cell<u64>,
    softlockup: Cell<u32>,
    _pad: u32,
    /// The core's hooks for this CPU (`None` until `cpu_register`).
    pub hooks: Cell<Option<&'static Hooks>>,
    /// The context running on this CPU (`crate::switch`).
    pub current: Cell<usize>,
    /// An `Arc` of a context left for good, released by the next context (`crate::switch`).
    pub release: Cell<usize>,
    /// The instance this CPU belongs to: a `Box<Arc<T>>` as a raw pointer, its `TypeId`, and
    /// the function that drops it.
    instance: Cell<Option<Instance>>,
    /// This CPU's TSS (`crate::gdt`).
    pub tss: Cell<usize>,
    /// Where this CPU's instructions went (`crate::account`).
    pub(crate) account: crate::account::Account,
}

// SAFETY: a block is only ever used by the CPU whose GS base points at it (an AP's block is
// filled by the boot CPU before that AP starts, then used only by the AP);
// interrupts on that CPU see it between instructions, as the module's description says.
unsafe impl Sync for PerCpu {}

const OFF_PREEMPT: usize = offset_of!(PerCpu, preempt_count);
const OFF_FLAGS: usize = offset_of!(PerCpu, core_flags);
const OFF_IN_IRQ: usize = offset_of!(PerCpu, in_irq);
const OFF_SYSCALLS: usize = offset_of!(PerCpu, syscalls);
const OFF_SOFTLOCKUP: usize = offset_of!(PerCpu, softlockup);
const _: () = assert!(offset_of!(PerCpu, this) == 0);

/// CPU 0's block.
static PERCPU0: PerCpu = PerCpu::new(0);

impl PerCpu {
    /// A fresh block for CPU `cpu`: preemption enabled, nothing running, no instance.
    const fn new(cpu: u32) -> PerCpu {
        PerCpu {
            this: Cell::new(0),
            cpu: Cell::new(cpu),
            preempt_count: Cell::new(PREEMPT_ENABLED),
            core_flags: Cell::new(0),
            in_irq: Cell::new(0),
            syscalls: Cell::new(0),
            softlockup: Cell::new(0),
            _pad: 0,
            hooks: Cell::new(None),
            current: Cell::new(0),
            release: Cell::new(0),
            instance: Cell::new(None),
            tss: Cell::new(0),
            account: crate::account::Account::new(),
        }
    }
}

/// `IA32_GS_BASE`.
const MSR_GS_BASE: u32 = 0xC000_0101;

/// Points this CPU's GS base at its block (CPU 0's: the only one yet).
pub fn init() {
    let base = &PERCPU0 as *const PerCpu as usize;
    PERCPU0.this.set(base);
    // SAFETY: writes IA32_GS_BASE, which exists on every long-mode CPU; nothing else uses GS.
    unsafe { crate::cpu::wrmsr(MSR_GS_BASE, base as u64) };
}

/// A fresh block for application processor `cpu` (`crate::smp`), leaked: it lives as long as
/// the CPU.
pub fn new_ap_block(cpu: u32) -> &'static PerCpu {
    alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu::new(cpu)))
}

/// Points this application processor's GS base at `block` (from [`new_ap_block`]).
pub fn init_ap(block: &'static PerCpu) {
    let base = block as *const PerCpu as usize;
    block.this.set(base);
    // SAFETY: as in `init`, on the AP that owns `block`, before any accessor runs there.
    unsafe { crate::cpu::wrmsr(MSR_GS_BASE, base as u64) };
}

/// This CPU's block.
#[inline(always)]
pub fn this() -> &'static PerCpu {
    let p: usize;
    // SAFETY: gs:[0] is the block's own address (see `init`), a `'static` block.
    unsafe {
        asm!("mov {}, qword ptr gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags));
        &*(p as *const PerCpu)
    }
}

macro_rules! gs_load32 {
    ($off:expr) => {{
        let v: u32;
        // SAFETY: a 32-bit load from this CPU's block, at a field's offset.
        unsafe {
            asm!("mov {v:e}, dword ptr gs:[{o}]", o = const $off, v = out(reg) v,
                 options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

macro_rules! gs_op32 {
    ($op:literal, $off:expr, $v:expr) => {{
        // SAFETY: one read-modify-write instruction on a 32-bit field of this CPU's block.
        unsafe {
            asm!(concat!($op, " dword ptr gs:[{o}], {v:e}"), o = const $off, v = in(reg) $v,
                 options(nostack))
        };
    }};
}

/// This CPU's number.
#[inline(always)]
pub fn cpu_number() -> u32 {
    this().cpu.get()
}

/// Sets this CPU's number (`cpu_register`).
pub fn set_cpu_number(n: u32) {
    this().cpu.set(n)
}

/// The raw `preempt_count`.
#[inline(always)]
pub fn preempt_count_raw() -> u32 {
    gs_load32!(OFF_PREEMPT)
}

/// Sets the raw `preempt_count`.
#[inline(always)]
pub fn preempt_count_set_raw(v: u32) {
    gs_op32!("mov", OFF_PREEMPT, v)
}

/// Adds to `preempt_count`; the new raw word.
#[inline(always)]
pub fn preempt_count_add(v: u32) -> u32 {
    gs_op32!("add", OFF_PREEMPT, v);
    preempt_count_raw()
}

/// Subtracts from `preempt_count`; the new raw word.
#[inline(always)]
pub fn preempt_count_sub(v: u32) -> u32 {
    gs_op32!("sub", OFF_PREEMPT, v);
    preempt_count_raw()
}

/// Clears bits of the raw word.
#[inline(always)]
pub fn preempt_count_clear_bits(bits: u32) {
    gs_op32!("and", OFF_PREEMPT, !bits)
}

/// Sets bits of the raw word.
#[inline(always)]
pub fn preempt_count_set_bits(bits: u32) {
    gs_op32!("or", OFF_PREEMPT, bits)
}

/// The core's flags word.
#[inline(always)]
pub fn core_flags() -> u32 {
    gs_load32!(OFF_FLAGS)
}

/// Sets bits of the flags word.
#[inline(always)]
pub fn core_flags_set(bits: u32) {
    gs_op32!("or", OFF_FLAGS, bits)
}

/// Clears bits of the flags word.
#[inline(always)]
pub fn core_flags_clear(bits: u32) {
    gs_op32!("and", OFF_FLAGS, !bits)
}

/// Counts a system call.
#[inline(always)]
pub fn count_syscall() {
    // SAFETY: one 64-bit increment of this CPU's system-call count.
    unsafe { asm!("add qword ptr gs:[{o}], 1", o = const OFF_SYSCALLS, options(nostack)) };
}

/// Takes (and zeroes) the system-call count.
pub fn take_syscall_count() -> u64 {
    let v: u64;
    // SAFETY: `xchg` with memory swaps this CPU's count with zero in one instruction.
    unsafe {
        asm!("xchg qword ptr gs:[{o}], {v}", o = const OFF_SYSCALLS, v = inout(reg) 0u64 => v,
             options(nostack, preserves_flags))
    };
    v
}

/// Notes that this CPU scheduled (the soft-lockup detector).
#[inline(always)]
pub fn touch_softlockup() {
    gs_op32!("mov", OFF_SOFTLOCKUP, 1u32)
}

/// Takes (and clears) the soft-lockup touch.
pub fn take_softlockup_touch() -> bool {
    let v: u32;
    // SAFETY: `xchg` swaps this CPU's touch with zero in one instruction.
    unsafe {
        asm!("xchg dword ptr gs:[{o}], {v:e}", o = const OFF_SOFTLOCKUP, v = inout(reg) 0u32 => v,
             options(nostack, preserves_flags))
    };
    v != 0
}

/// True while this CPU runs the core's interrupt hook.
#[inline(always)]
pub fn in_irq() -> bool {
    gs_load32!(OFF_IN_IRQ) != 0
}

/// Sets the in-IRQ flag; returns what it was.
pub fn replace_in_irq(on: bool) -> bool {
    let old = in_irq();
    gs_op32!("mov", OFF_IN_IRQ, on as u32);
    old
}

/// Makes this CPU belong to `instance` (dropping what it belonged to before).
pub fn set_instance<T: Send + Sync + 'static>(instance: Option<alloc::sync::Arc<T>>) {
    fn drop_it<T>(p: usize) {
        // SAFETY: `p` came from `Box::into_raw` of a `Box<Arc<T>>` in `set_instance`, and is
        // dropped once, here.
        drop(unsafe { alloc::boxed::Box::from_raw(p as *mut alloc::sync::Arc<T>) });
    }
    let new = instance.map(|a| {
        (alloc::boxed::Box::into_raw(alloc::boxed::Box::new(a)) as usize, TypeId::of::<T>(), drop_it::<T> as fn(usize))
    });
    if let Some((p, _, drop_fn)) = this().instance.replace(new) {
        drop_fn(p);
    }
}

/// Runs `f` on this CPU's instance if it is a `T`.
#[inline(always)]
pub fn with_instance<T: Send + Sync + 'static, R>(f: impl FnOnce(&alloc::sync::Arc<T>) -> R) -> Option<R> {
    let (p, ty, _) = this().instance.get()?;
    if ty != TypeId::of::<T>() {
        return None;
    }
    // SAFETY: `p` is a live `Box<Arc<T>>` (the TypeId says which `T`), freed only by
    // `set_instance`, which this CPU does not run while `f` borrows it.
    Some(f(unsafe { &*(p as *const alloc::sync::Arc<T>) }))
}
