//! The arch the core runs on, chosen at build time: the one door to the machine.
//!
//! **Mechanism.** [`A`] names the type implementing [`arch_api::Arch`] that this build runs on
//! (the hosted x86-64 Linux machine, `crates/arch`, or, with the `metal` feature, the
//! bare-metal x86-64 machine of `crates/arch-metal/machine`), as Hubris's `sys/kern/src/arch.rs`
//! picks its arch module. The core calls the machine as `A::now_ns()`, `A::switch_to(..)`,
//! and names the machine's types through the aliases below; the plain types both sides share
//! come from `arch_api`. The typed spinlock is `lock_api`'s over the arch's raw one.
//!
//! **Invariant.** No other file of the core names an arch crate: everything the core needs from
//! a CPU is an item of the [`Arch`] trait, so an arch that implements the trait runs the core
//! unchanged, and the compiler lists what an incomplete one is missing.

pub(crate) use arch_api::{
    Arch, Arm, Fault, FixedBuf, Frame, Hooks, IrqExit, IrqFrame, PanicReport, PokeError, Regs, Symbol, GP_NAMES,
    TRACE_DEPTH,
};

/// The machine this build of the core runs on.
#[cfg(all(feature = "hosted", not(feature = "metal")))]
pub(crate) type A = arch_hosted::Hosted;

/// The machine this build of the core runs on.
#[cfg(all(feature = "metal", not(feature = "hosted")))]
pub(crate) type A = arch_metal::Metal;

#[cfg(not(any(feature = "hosted", feature = "metal")))]
compile_error!(
    "atomkernel-kernel needs an arch: enable its `hosted` feature (the hosted x86-64 Linux arch) or its `metal` \
     feature (the bare-metal x86-64 arch, with `default-features = false`)"
);

#[cfg(all(feature = "hosted", feature = "metal"))]
compile_error!(
    "atomkernel-kernel's `hosted` and `metal` features are exclusive: the bare-metal image depends on the core \
     with `default-features = false, features = [\"metal\"]`"
);

/// A spinlock protecting `T`, taken with this CPU's interrupts masked (`spin_lock_irqsave`).
pub type IrqSpinLock<T> = lock_api::Mutex<<A as Arch>::RawIrqSpinLock, T>;
/// Holds an [`IrqSpinLock`]; releases it and restores the interrupt mask when dropped.
pub(crate) type IrqSpinGuard<'a, T> = lock_api::MutexGuard<'a, <A as Arch>::RawIrqSpinLock, T>;
/// A task's machine context.
pub(crate) type TaskContext = <A as Arch>::TaskContext;
/// A CPU-local timer.
pub(crate) type Timer = <A as Arch>::Timer;
/// A raiser of one CPU's interrupt lines.
pub(crate) type IrqRaiser = <A as Arch>::IrqRaiser;
/// A CPU's registration with the machine.
pub(crate) type CpuRegistration = <A as Arch>::CpuRegistration;
/// A claim on every preemption-point site.
pub(crate) type AllSitesClaim = <A as Arch>::AllSitesClaim;
/// A device's timed interrupt source.
pub(crate) type DeviceTimer = <A as Arch>::DeviceTimer;

/// True if an interrupt found the CPU in kernel text where it may be preempted (a replayed
/// interrupt always is: the "interrupted" code is the `local_irq_enable` that replayed it);
/// false in foreign code such as libc or the vDSO, and in the arch's return path from an
/// earlier preemption (`IrqFrame::exiting`): there preemption waits for the next safe point.
#[inline]
pub(crate) fn in_kernel_text(frame: &IrqFrame) -> bool {
    frame.replayed || (!frame.exiting && A::text_contains(frame.ip))
}
