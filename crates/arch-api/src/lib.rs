//! # The arch interface: everything atomkernel's kernel core needs from a CPU
//!
//! **Mechanism.** The core (`crates/kernel`) is arch-independent safe Rust. Whatever it needs
//! from the machine (interrupts and their mask, per-CPU words, stacks and the switch between
//! them, timers, the clock, kernel text and its patching, frame walking, bringing CPUs up,
//! catching a panic) it asks of one type implementing [`Arch`], chosen at build time in
//! `crates/kernel/src/arch.rs`, as Hubris's `sys/kern/src/arch.rs` chooses its arch module.
//! The hosted arch (`crates/arch`: a Linux process, host threads as CPUs, signals as
//! interrupts) implements it today; a bare-metal arch implements the same trait, and the
//! compiler lists what it is missing.
//!
//! **Invariant.** This trait's definition is the whole surface: the core names no item of an
//! arch crate but through it, except the `preempt_point!` macro an arch crate exports for its
//! point sites (a macro cannot be a trait item). The core gives back one [`Hooks`] table per
//! CPU, which the arch calls on interrupts, armed points, faults and the allocator's
//! `preempt_enable`. The plain types both sides exchange ([`types`]) are data only.
//!
//! The methods are associated functions, not methods on a value: an arch is a machine, not an
//! object, and every call is static dispatch the compiler inlines (the task switch and the
//! preemption points are nanosecond paths).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod site;
pub mod types;
pub mod unwind;

pub use lock_api;
pub use types::*;
pub use unwind::UnwindRule;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// The machine under the kernel core. See the crate docs; every item is one the core uses.
pub trait Arch: 'static {
    // ---- Types the arch owns -------------------------------------------------------------

    /// A CPU's life, from [`Arch::cpu_register`] on that CPU to its drop there.
    type CpuRegistration;
    /// A handle any thread or CPU uses to raise one CPU's interrupt lines.
    type IrqRaiser: Clone + Send + Sync + core::fmt::Debug + 'static;
    /// A CPU-local timer that raises one interrupt line of the CPU that made it (the tick,
    /// the high-resolution timer). Dropping it disarms it.
    type Timer: Send + Sync;
    /// An interrupt source outside the CPUs: raises a line at a set time whatever the CPUs
    /// are doing (the 1996 scenario's device). Dropping it stops it.
    type DeviceTimer: Send + Sync;
    /// A task's machine context: its stack and the state saved while it is switched out.
    type TaskContext: Send + Sync + 'static;
    /// A CPU started by [`Arch::start_cpu`], whose body returns `R`.
    type CpuThread<R: Send + 'static>;
    /// A handle that wakes the supervisor (the context [`Arch::supervisor_handle`] ran on).
    type Supervisor: Send + Sync + 'static;
    /// The raw spinlock under the core's `IrqSpinLock`: taking it masks this CPU's
    /// interrupts until it is released; taking one this CPU holds is a `BUG:`, not a hang.
    type RawIrqSpinLock: lock_api::RawMutex + Send + Sync;
    /// A claim on every preemption-point site (one instance's, while its model uses points).
    type AllSitesClaim: Send + Sync;

    // ---- CPUs ------------------------------------------------------------------------------

    /// Makes the calling context CPU `cpu`, whose interrupts are served by `hooks`.
    fn cpu_register(hooks: &'static Hooks, cpu: u32) -> Result<Self::CpuRegistration, String>;
    /// A raiser of the registered CPU's lines.
    fn cpu_raiser(reg: &Self::CpuRegistration) -> Self::IrqRaiser;
    /// Raises `line` on the raiser's CPU.
    fn irq_raise(raiser: &Self::IrqRaiser, line: u32);
    /// Starts another CPU, which runs `body` and stops; `name` names it in reports.
    fn start_cpu<R: Send + 'static>(
        name: String,
        body: impl FnOnce() -> R + Send + 'static,
    ) -> Result<Self::CpuThread<R>, String>;
    /// Waits for a started CPU to stop and takes its body's result (`Err`: it died).
    fn join_cpu<R: Send + 'static>(cpu: Self::CpuThread<R>) -> Result<R, String>;
    /// True when a started CPU has stopped.
    fn cpu_finished<R: Send + 'static>(cpu: &Self::CpuThread<R>) -> bool;
    /// Binds the calling CPU to physical CPU `host_cpu` (the hosted arch pins its thread).
    fn pin_current_cpu(host_cpu: usize) -> Result<(), String>;
    /// The physical CPUs this kernel may use.
    fn allowed_host_cpus() -> Vec<usize>;
    /// One step of a spin-wait (`cpu_relax`), backing off as `spins` grows.
    fn cpu_relax(spins: &mut u32);
    /// `sti; hlt`: enables interrupts and waits for one. Returns with interrupts enabled.
    fn safe_halt();
    /// The instruction pointer of the caller.
    fn current_ip() -> usize;
    /// Writes `bytes` to the console (`fd` 1: output, 2: errors) without locks or allocation.
    fn console_write(fd: i32, bytes: &[u8]);
    /// Stops the machine with `msg` (the last resort: a broken invariant).
    fn die(msg: &str) -> !;
    /// Stops the calling CPU for good, interrupts off (a CPU stopped by a panic).
    fn park_forever() -> !;

    // ---- The instance a CPU belongs to ---------------------------------------------------

    /// Makes the calling CPU belong to `instance` (`None`: to none). Every CPU of one process
    /// belongs to instances of one type.
    fn set_this_instance<T: Send + Sync + 'static>(instance: Option<Arc<T>>);
    /// Runs `f` on the instance of the calling CPU, borrowed; `None` off a CPU or while it
    /// belongs to none.
    fn with_this_instance<T: Send + Sync + 'static, R>(f: impl FnOnce(&Arc<T>) -> R) -> Option<R>;

    // ---- The supervisor: where `kernel::run` waits for its instance -----------------------

    /// A waker of the calling context, for CPUs to call when they have something to report.
    fn supervisor_handle() -> Self::Supervisor;
    /// Wakes the supervisor (from a CPU, in any context).
    fn supervisor_wake(s: &Self::Supervisor);
    /// Sleeps the supervisor until woken or `timeout_ns` passed.
    fn supervisor_sleep(timeout_ns: u64);

    // ---- Panics -------------------------------------------------------------------------

    /// Puts `hook` in front of the machine's panic handling (once per process): it runs first
    /// for every Rust panic; `false` passes the panic on as if the hook were not there.
    fn set_panic_hook(hook: fn(&PanicReport<'_>) -> bool);
    /// Runs `f`; a panic in it ends here as `None` (the hosted arch unwinds to here; an arch
    /// that cannot unwind ends the task in its panic entry instead and never returns `None`).
    fn catch_panic<R>(f: impl FnOnce() -> R) -> Option<R>;

    // ---- Interrupts ---------------------------------------------------------------------

    /// `cli`.
    fn local_irq_disable();
    /// `sti`; interrupts that arrived while masked are taken now.
    fn local_irq_enable();
    /// Masks interrupts; returns whether they were masked already.
    fn local_irq_save() -> bool;
    /// Puts the mask back as [`Arch::local_irq_save`] found it.
    fn local_irq_restore(was_masked: bool);
    /// True while interrupts are masked.
    fn irqs_disabled() -> bool;
    /// Runs `f` with interrupts enabled inside an interrupt's exit path (softirqs at
    /// `irq_exit`), nested interrupts taken on the interrupt stack.
    fn irq_exit_irqs_on(f: impl FnOnce());

    // ---- Per-CPU words ------------------------------------------------------------------

    /// This CPU's number.
    fn cpu_number() -> u32;
    /// The raw `preempt_count` word (need_resched folded in, inverted).
    fn preempt_count_raw() -> u32;
    /// Sets the raw `preempt_count` word.
    fn preempt_count_set_raw(v: u32);
    /// Adds to `preempt_count`; returns the new raw word.
    fn preempt_count_add(v: u32) -> u32;
    /// Subtracts from `preempt_count`; returns the new raw word.
    fn preempt_count_sub(v: u32) -> u32;
    /// Clears bits of the raw word.
    fn preempt_count_clear_bits(bits: u32);
    /// Sets bits of the raw word.
    fn preempt_count_set_bits(bits: u32);
    /// The core's per-CPU flags word.
    fn core_flags() -> u32;
    /// Sets bits of the flags word.
    fn core_flags_set(bits: u32);
    /// Clears bits of the flags word.
    fn core_flags_clear(bits: u32);
    /// Counts a system call on this CPU.
    fn count_syscall();
    /// Takes this CPU's system-call count (and zeroes it).
    fn take_syscall_count() -> u64;
    /// Tells the soft-lockup detector this CPU scheduled.
    fn touch_softlockup();
    /// Takes (and clears) the soft-lockup touch.
    fn take_softlockup_touch() -> bool;
    /// True while this CPU runs the core's interrupt hook.
    fn in_irq() -> bool;
    /// True while allocating is forbidden on this CPU (interrupt context).
    fn allocation_forbidden() -> bool;

    // ---- Time ---------------------------------------------------------------------------

    /// Nanoseconds on the machine's monotonic clock.
    fn now_ns() -> u64;
    /// A cycle counter for timing short stretches of this CPU's own work (x86's TSC): much
    /// cheaper to read than [`Arch::now_ns`]; [`Arch::cycles_ns`] converts a difference.
    fn cycles() -> u64;
    /// A difference of [`Arch::cycles`] in nanoseconds.
    fn cycles_ns(cycles: u64) -> u64;
    /// A hint that the cache line holding `addr` will be read soon (x86's `prefetcht0`): it
    /// never faults and changes nothing but timing, whatever `addr` is.
    fn prefetch(addr: usize);
    /// How many times the machine under the calling CPU took that CPU away from the kernel so
    /// far (a host's involuntary switches of the CPU's thread, a hypervisor's preemptions of the
    /// vCPU); 0 where nothing can. Two reads that differ bracket a stretch in which the CPU was
    /// not the kernel's.
    fn cpu_stolen() -> u64;
    /// A disarmed timer raising `line` on the calling CPU.
    fn timer_new(line: u32) -> Result<Self::Timer, String>;
    /// Fires every `period_ns`, first after one period.
    fn timer_set_periodic(t: &Self::Timer, period_ns: u64);
    /// Fires once at `deadline_ns` (at once if it is past).
    fn timer_set_oneshot_at(t: &Self::Timer, deadline_ns: u64);
    /// Stops the timer.
    fn timer_disarm(t: &Self::Timer);
    /// Periods missed before the last expiry was taken.
    fn timer_overrun(t: &Self::Timer) -> u32;
    /// A device that raises `line` through `raiser` when told to; its helper runs on
    /// `host_cpus`, off the kernel's own CPUs where it can.
    fn device_timer_new(name: &str, raiser: Self::IrqRaiser, line: u32, host_cpus: Vec<usize>) -> Self::DeviceTimer;
    /// Raises the device's line at `deadline_ns` (replacing a deadline not yet reached).
    fn device_timer_fire_at(t: &Self::DeviceTimer, deadline_ns: u64);

    // ---- Tasks --------------------------------------------------------------------------

    /// A new context on a fresh stack of `stack_size` bytes that starts in `entry(arg)`.
    fn task_context_new(
        name: &str,
        stack_size: usize,
        entry: fn(usize) -> !,
        arg: usize,
    ) -> Result<Arc<Self::TaskContext>, String>;
    /// The context of the calling CPU's own stack (its idle task), already running.
    fn task_context_for_current(name: &str) -> Arc<Self::TaskContext>;
    /// The name of the context running on this CPU.
    fn current_name() -> FixedBuf<32>;
    /// Switches this CPU from `prev` (running) to `next`; returns when switched back to.
    /// Called with interrupts masked.
    fn switch_to(prev: &Self::TaskContext, next: &Self::TaskContext);
    /// Switches away from `prev` for the last time; its stack is freed on `next`'s.
    fn switch_to_final(prev: Arc<Self::TaskContext>, next: Arc<Self::TaskContext>) -> !;
    /// The registers and the backtrace of the caller (a Rust panic's report); returns the
    /// registers and how many entries of `trace` it filled.
    fn capture_here(trace: &mut [usize]) -> (Regs, usize);

    // ---- Kernel text and its preemption points --------------------------------------------

    /// True if `ip` is in kernel text.
    fn text_contains(ip: usize) -> bool;
    /// Where the text was loaded, against its link-time addresses.
    fn text_load_bias() -> usize;
    /// The text bytes `[start, end)`, if all of it is text.
    fn text_bytes(start: usize, end: usize) -> Option<&'static [u8]>;
    /// `len` read-only bytes at `addr` (constants the machine-code analysis reads).
    fn text_read_only(addr: usize, len: usize) -> Option<&'static [u8]>;
    /// The first byte of an idle preemption-point site.
    const OP_IDLE: u8;
    /// Every preemption-point site, in table order.
    fn point_sites() -> Vec<Site>;
    /// Sets up patching (the writable alias of the text); idempotent.
    fn patch_prepare() -> Result<(), PokeError>;
    /// Sets up [`PatchSync::Ipi`]'s serializing rounds; idempotent.
    fn patch_prepare_sync() -> Result<(), PokeError>;
    /// Every site's address, sorted.
    fn site_addrs() -> &'static [usize];
    /// The index of the site at `addr`.
    fn site_index(addr: usize) -> Result<usize, PokeError>;
    /// The five bytes of the site at `addr`.
    fn read_site(addr: usize) -> [u8; 5];
    /// Starts bringing in what arming the sites `idx` touches (their table entries, their
    /// bytes in the text and in its writable alias), all at once. A hint, as
    /// [`Arch::prefetch`].
    fn prefetch_sites(idx: &[u32]);
    /// One more user wants each site of `idx` armed `how`: one batch under one hold of the
    /// sites' lock, serialized once (under `PatchSync::Ipi`, one pair of rounds for the batch,
    /// as Linux's `text_poke_bp_batch`); returns the serializing rounds it took. All or
    /// nothing: an error leaves every count and byte as it was.
    fn arm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError>;
    /// One user less wants each site of `idx` armed `how` (the batch of [`Arch::arm_sites`]);
    /// returns the rounds it took.
    fn disarm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError>;
    /// Claims every site (refused while another claim holds).
    fn claim_all_sites() -> Result<Self::AllSitesClaim, PokeError>;
    /// Gives a claim back, reporting what releasing found.
    fn release_all_sites(claim: Self::AllSitesClaim) -> Result<(), PokeError>;

    // ---- Frames -------------------------------------------------------------------------

    /// Loads the frame tables (idempotent).
    fn unwind_prepare() -> Result<(), String>;
    /// Starts bringing in, all at once, the first line of each table an arming from the
    /// interrupted `ip` reads in the arch (the frame table's index entry for `ip`, the site
    /// counts and their lock), so that the arming's dependent reads do not each start cold, one
    /// after another. A hint, as [`Arch::prefetch`].
    fn prefetch_arming(ip: usize);
    /// The second step, once [`Arch::prefetch_arming`]'s lines are cached: reads them and
    /// requests the lines they point to (the frame table's row for `ip`, the running task's
    /// stack bounds). A hint, as [`Arch::prefetch`].
    fn prefetch_arming_deeper(ip: usize);
    /// One step up from `f` on `stack`.
    fn unwind_step(f: &Frame, stack: (usize, usize)) -> Option<Step>;
    /// Return addresses from `from` up `stack` into `out`; returns how many.
    fn backtrace(from: Frame, stack: (usize, usize), out: &mut [usize]) -> usize;
    /// `[start, end)` of every function in kernel text.
    fn functions_in_text() -> Vec<(usize, usize)>;
    /// The running task's stack `[lo, hi)`, if it has one of its own.
    fn current_stack() -> Option<(usize, usize)>;
    /// Points the return address in `slot` at the redirected-return entry; returns the
    /// original.
    fn redirect_return(slot: usize) -> Option<usize>;
    /// Puts `orig` back in `slot` if it still holds the redirection.
    fn restore_return(slot: usize, orig: usize) -> bool;
    /// At a redirected return whose record a disarm took while the `ret` was already done
    /// (an interrupt between the `ret` and the entry's masking of IRQs): the return address
    /// that disarm put back in the popped slot, `sp - 8` (`sp`: the caller's), if that word is
    /// in the running stack and follows a `call`.
    fn restored_return(sp: usize) -> Option<usize>;
    /// Describes `addr` (`kallsyms`); `is_return_address`: it follows a call.
    fn symbolize(addr: usize, is_return_address: bool) -> Symbol;
}
