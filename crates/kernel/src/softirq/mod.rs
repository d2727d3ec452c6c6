//! Softirqs: bottom halves raised from hard interrupts and run later with IRQs on, at
//! `irq_exit` or in the per-CPU `ksoftirqd` task.
//!
//! **Mechanism.** A fixed set of vectors (Linux's: `HI_SOFTIRQ` .. `RCU_SOFTIRQ`) each has at
//! most one action ([`open_softirq`]). [`raise_softirq`] sets the vector's bit in the CPU's
//! pending word; a raise that finds the bit set coalesces. `__do_softirq` takes the whole word,
//! raises the softirq field of `preempt_count` by [`SOFTIRQ_OFFSET`] (serving), turns IRQs on,
//! runs the action of every bit from the lowest, turns IRQs off and looks again: it restarts
//! while work is pending, up to [`MAX_SOFTIRQ_RESTART`] passes and [`MAX_SOFTIRQ_TIME`], and
//! only while no reschedule is due; what is left goes to `ksoftirqd`. Where it is called from is
//! the bottom-half mode, a boot option (`bh=`, [`BhMode`]):
//!
//! - `classic`: at `irq_exit`, once the hardirq count is down and if nothing else is in
//!   interrupt context, ahead of any task (Linux's `invoke_softirq`); `ksoftirqd` is
//!   SCHED_NORMAL and only takes the work past the budget.
//! - `threaded`: `irq_exit` only wakes `ksoftirqd`, which is SCHED_FIFO at `bh_prio` and runs
//!   all softirq work (PREEMPT_RT's choice): an RT task above `bh_prio` runs before bottom
//!   halves, one below after them. This is the 1996 mail's "RT tasks should be scheduled
//!   before bottom halves (maybe this should depend on an extended bottom half priority
//!   notion)".
//!
//! [`local_bh_disable`] adds [`SOFTIRQ_DISABLE_OFFSET`] (twice the serving offset, so the two
//! can be told apart); the matching enable runs what became pending meanwhile (classic) or
//! wakes `ksoftirqd` (threaded).
//!
//! **Invariant.** An action runs once per raise that found its bit clear; never nested in
//! itself (a hard interrupt ending inside a softirq sees `in_interrupt()` and runs none); never
//! while BH is disabled or in hard interrupt context on the CPU; always with IRQs on and the
//! softirq field of `preempt_count` holding exactly [`SOFTIRQ_OFFSET`]. Actions must not
//! allocate or sleep: at `irq_exit` they run inside the host signal handler, where the
//! allocator `BUG`s (the interrupted code may be inside `malloc`).

pub(crate) mod state;

use crate::arch::{Arch, IrqSpinLock, A};
use crate::config::BhMode;
use crate::instance::{this_kernel, try_this_kernel, Kernel};
use crate::preempt::count::{self as preempt, PREEMPT_OFFSET, SOFTIRQ_DISABLE_OFFSET, SOFTIRQ_OFFSET};
use crate::sync::OnceLock;
use crate::task::TaskBuilder;
use crate::task::TaskId;
use alloc::sync::Arc;
use alloc::{boxed::Box, format, string::String};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
pub use state::{SoftirqAction, NR_SOFTIRQS};
use state::{SoftirqCpu, VectorStats};

pub use crate::preempt::count::{in_serving_softirq, in_softirq};

/// High-priority tasklets ([`crate::tasklet::tasklet_hi_schedule`]).
pub const HI_SOFTIRQ: usize = 0;
/// Timer callbacks; raised by the tick when an action is open for it.
pub const TIMER_SOFTIRQ: usize = 1;
/// Network transmit completion.
pub const NET_TX_SOFTIRQ: usize = 2;
/// Network receive (the packet device's receive path).
pub const NET_RX_SOFTIRQ: usize = 3;
/// Block-device completion.
pub const BLOCK_SOFTIRQ: usize = 4;
/// Interrupt polling.
pub const IRQ_POLL_SOFTIRQ: usize = 5;
/// Tasklets ([`crate::tasklet::tasklet_schedule`]).
pub const TASKLET_SOFTIRQ: usize = 6;
/// Scheduler load balancing.
pub const SCHED_SOFTIRQ: usize = 7;
/// High-resolution timer callbacks.
pub const HRTIMER_SOFTIRQ: usize = 8;
/// RCU callbacks.
pub const RCU_SOFTIRQ: usize = 9;
/// The vectors' names, as `/proc/softirqs` prints them.
pub const SOFTIRQ_NAMES: [&str; NR_SOFTIRQS] =
    ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];

/// Passes `__do_softirq` makes before it hands pending work to `ksoftirqd` (Linux's value).
pub const MAX_SOFTIRQ_RESTART: u32 = 10;
/// Nanoseconds `__do_softirq` may run before it hands pending work to `ksoftirqd` (2 ms, as
/// Linux's `MAX_SOFTIRQ_TIME`).
pub const MAX_SOFTIRQ_TIME: u64 = 2_000_000;

/// Where softirq work was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftirqContext {
    /// At `irq_exit` of a hard interrupt.
    IrqExit = 0,
    /// In `ksoftirqd`.
    Ksoftirqd = 1,
    /// In task context, at `local_bh_enable`.
    BhEnable = 2,
}

/// A CPU's softirq state: the tasklet vectors open on `tasklet_action` (the tasklets', which
/// raise them: the boot hands it in, so this file never calls up into them), nothing pending.
pub(crate) fn new_cpu_state(tasklet_action: fn(usize)) -> SoftirqCpu {
    let mut actions: [Option<SoftirqAction>; NR_SOFTIRQS] = core::array::from_fn(|_| None);
    actions[HI_SOFTIRQ] = Some(Arc::new(move || tasklet_action(HI_SOFTIRQ)));
    actions[TASKLET_SOFTIRQ] = Some(Arc::new(move || tasklet_action(TASKLET_SOFTIRQ)));
    SoftirqCpu {
        pending: AtomicU32::new(0),
        opened: AtomicU32::new(1 << HI_SOFTIRQ | 1 << TASKLET_SOFTIRQ),
        actions: IrqSpinLock::new(actions),
        ksoftirqd: OnceLock::new(),
        stop: AtomicBool::new(false),
        stats: Default::default(),
        handoffs: AtomicU64::new(0),
        tasklets: crate::tasklet::state::TaskletCpu::default(),
    }
}

/// Counters of one kernel instance's softirqs (read with [`softirq_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoftirqStats {
    /// Raises per vector.
    pub raised: [u64; NR_SOFTIRQS],
    /// Raises that found the vector already pending (they add no run).
    pub coalesced: [u64; NR_SOFTIRQS],
    /// Runs per vector at `irq_exit`.
    pub runs_irq_exit: [u64; NR_SOFTIRQS],
    /// Runs per vector in `ksoftirqd`.
    pub runs_ksoftirqd: [u64; NR_SOFTIRQS],
    /// Runs per vector at `local_bh_enable`.
    pub runs_bh_enable: [u64; NR_SOFTIRQS],
    /// Times `irq_exit` ran out of budget (restarts, time, or a reschedule due) with work left
    /// and handed it to `ksoftirqd`.
    pub handoffs: u64,
}

impl SoftirqStats {
    /// All runs of vector `nr`, wherever they happened.
    pub fn runs(&self, nr: usize) -> u64 {
        self.runs_irq_exit[nr] + self.runs_ksoftirqd[nr] + self.runs_bh_enable[nr]
    }
}

/// Installs `action` for vector `nr` of the running kernel (`open_softirq`). Call from a task.
/// The tasklet vectors (`HI_SOFTIRQ`, `TASKLET_SOFTIRQ`) are the kernel's own.
pub fn open_softirq(nr: usize, action: impl Fn() + Send + Sync + 'static) -> Result<(), String> {
    if nr >= NR_SOFTIRQS {
        return Err(format!("softirq vector {nr} does not exist: vectors are 0..{NR_SOFTIRQS} ({SOFTIRQ_NAMES:?})"));
    }
    let k = this_kernel();
    let action: SoftirqAction = Arc::new(action);
    if k.cpus[0].softirq.actions.lock()[nr].is_some() {
        return Err(format!("softirq vector {} ({nr}) already has an action", SOFTIRQ_NAMES[nr]));
    }
    for cpu in k.cpus.iter() {
        cpu.softirq.actions.lock()[nr] = Some(action.clone());
        cpu.softirq.opened.fetch_or(1 << nr, Ordering::AcqRel);
    }
    Ok(())
}

/// Marks vector `nr` pending on this CPU (`raise_softirq`). From hard interrupt context it runs
/// at `irq_exit` (or in `ksoftirqd` under `bh=threaded`); from a task with BH enabled it wakes
/// `ksoftirqd`. Never allocates. Call on the CPU (a task, an interrupt or a softirq): on any
/// other thread it does nothing (devices raise their interrupt instead).
pub fn raise_softirq(nr: usize) {
    assert!(nr < NR_SOFTIRQS, "raise_softirq({nr}): vectors are 0..{NR_SOFTIRQS}");
    let Some(k) = try_this_kernel() else { return };
    let _irq = crate::preempt::guard::local_irq_save();
    raise_softirq_irqoff(&k, nr);
}

/// `raise_softirq_irqoff`: call with IRQs masked.
pub(crate) fn raise_softirq_irqoff(k: &Kernel, nr: usize) {
    let bit = 1 << nr;
    let s = &k.this_cpu().softirq.stats[nr];
    s.raised.fetch_add(1, Ordering::Relaxed);
    if k.this_cpu().softirq.pending.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
        s.coalesced.fetch_add(1, Ordering::Relaxed);
    }
    if !preempt::in_interrupt() {
        wakeup_softirqd(k);
    }
}

/// `local_softirq_pending()`: the pending vectors of this CPU, bit `n` = vector `n`.
pub fn local_softirq_pending() -> u32 {
    this_kernel().raw_this_cpu().softirq.pending()
}

/// The tick: raise `TIMER_SOFTIRQ` if an action is open for it (`run_local_timers`).
pub(crate) fn run_local_timers(k: &Kernel) {
    if k.this_cpu().softirq.opened.load(Ordering::Relaxed) & (1 << TIMER_SOFTIRQ) != 0 {
        raise_softirq_irqoff(k, TIMER_SOFTIRQ);
    }
}

/// Called by `irq_exit` once the hardirq count is down (`invoke_softirq`): run pending softirqs
/// here (classic) or wake `ksoftirqd` (threaded). Nothing if still in interrupt context (a
/// nested interrupt, or BH disabled in the interrupted code).
pub(crate) fn invoke_softirq(k: &Kernel) {
    if preempt::in_interrupt() || k.this_cpu().softirq.pending.load(Ordering::Acquire) == 0 {
        return;
    }
    match k.config.bh {
        BhMode::Classic => __do_softirq(k, SoftirqContext::IrqExit),
        BhMode::Threaded => wakeup_softirqd(k),
    }
}

/// `__do_softirq`: serve pending softirqs with the budget. Call with IRQs masked and not in
/// interrupt context; returns with IRQs masked.
pub(crate) fn __do_softirq(k: &Kernel, ctx: SoftirqContext) {
    let end = A::now_ns() + MAX_SOFTIRQ_TIME;
    let mut restart = MAX_SOFTIRQ_RESTART;
    preempt::preempt_count_add(SOFTIRQ_OFFSET);
    loop {
        let pending = k.this_cpu().softirq.pending.swap(0, Ordering::AcqRel);
        A::irq_exit_irqs_on(|| run_actions(k, pending, ctx));
        if k.this_cpu().softirq.pending.load(Ordering::Acquire) == 0 {
            break;
        }
        restart -= 1;
        if A::now_ns() < end && !preempt::need_resched() && restart > 0 {
            continue;
        }
        if ctx != SoftirqContext::Ksoftirqd {
            k.this_cpu().softirq.handoffs.fetch_add(1, Ordering::Relaxed);
        }
        wakeup_softirqd(k);
        break;
    }
    preempt::preempt_count_sub(SOFTIRQ_OFFSET);
}

fn run_actions(k: &Kernel, mut pending: u32, ctx: SoftirqContext) {
    while pending != 0 {
        let nr = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        let action = k.this_cpu().softirq.actions.lock()[nr].clone();
        if let Some(action) = action {
            k.this_cpu().softirq.stats[nr].runs[ctx as usize].fetch_add(1, Ordering::Relaxed);
            crate::trace::event_in(k, crate::trace::Event::SoftirqEntry { vec: nr as u32 });
            action();
            crate::trace::event_in(k, crate::trace::Event::SoftirqExit { vec: nr as u32 });
        }
    }
}

/// `do_softirq()` from task context: serve what is pending unless in interrupt context.
fn do_softirq(k: &Kernel) {
    if preempt::in_interrupt() {
        return;
    }
    let was_masked = A::local_irq_save();
    if k.this_cpu().softirq.pending.load(Ordering::Acquire) != 0 {
        __do_softirq(k, SoftirqContext::BhEnable);
    }
    A::local_irq_restore(was_masked);
}

/// `local_bh_disable()` as a guard: softirqs do not run on this CPU while it lives (nor does
/// the task get preempted: the softirq field is part of `preempt_count`). Dropping it is
/// `local_bh_enable()`.
#[must_use = "BH is enabled again when the guard is dropped"]
pub struct BhGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// `local_bh_disable()`: adds [`SOFTIRQ_DISABLE_OFFSET`] to `preempt_count`.
pub fn local_bh_disable() -> BhGuard {
    preempt::preempt_count_add(SOFTIRQ_DISABLE_OFFSET);
    BhGuard { _not_send: core::marker::PhantomData }
}

impl Drop for BhGuard {
    /// `local_bh_enable()` (Linux's `__local_bh_enable_ip`): keep preemption off while
    /// serving what became pending, then enable it and take a due reschedule.
    fn drop(&mut self) {
        preempt::preempt_count_sub(SOFTIRQ_DISABLE_OFFSET - PREEMPT_OFFSET);
        if let Some(k) = try_this_kernel() {
            if !preempt::in_interrupt() && k.this_cpu().softirq.pending.load(Ordering::Acquire) != 0 {
                match k.config.bh {
                    BhMode::Classic => do_softirq(&k),
                    BhMode::Threaded => {
                        let _irq = crate::preempt::guard::local_irq_save();
                        wakeup_softirqd(&k);
                    }
                }
            }
        }
        if preempt::preempt_count_sub(PREEMPT_OFFSET) == 0 {
            crate::sched::preempt_schedule();
        }
    }
}

/// `wakeup_softirqd()`: make this CPU's `ksoftirqd` runnable (nothing if it is running).
pub(crate) fn wakeup_softirqd(k: &Kernel) {
    if let Some(&id) = k.this_cpu().softirq.ksoftirqd.get() {
        crate::sched::wake_up_process(k, id);
    }
}

/// The pid of `ksoftirqd/0` of the running kernel.
pub fn ksoftirqd_pid() -> Option<TaskId> {
    this_kernel().cpus[0].softirq.ksoftirqd.get().copied()
}

/// A snapshot of the running kernel's softirq counters, summed over its CPUs.
pub fn softirq_stats() -> SoftirqStats {
    let k = this_kernel();
    let sum =
        |f: &dyn Fn(&SoftirqCpu) -> &AtomicU64| k.cpus.iter().map(|c| f(&c.softirq).load(Ordering::Relaxed)).sum();
    let per = |f: &dyn Fn(&VectorStats) -> &AtomicU64| -> [u64; NR_SOFTIRQS] {
        core::array::from_fn(|nr| sum(&|s: &SoftirqCpu| f(&s.stats[nr])))
    };
    SoftirqStats {
        raised: per(&|v| &v.raised),
        coalesced: per(&|v| &v.coalesced),
        runs_irq_exit: per(&|v| &v.runs[SoftirqContext::IrqExit as usize]),
        runs_ksoftirqd: per(&|v| &v.runs[SoftirqContext::Ksoftirqd as usize]),
        runs_bh_enable: per(&|v| &v.runs[SoftirqContext::BhEnable as usize]),
        handoffs: sum(&|s: &SoftirqCpu| &s.handoffs),
    }
}

/// Starts `ksoftirqd/N` for CPU `cpu` at its boot, bound to it: SCHED_NORMAL under
/// `bh=classic`, SCHED_FIFO `bh_prio` under `bh=threaded`. It runs once, finds nothing and
/// sleeps until woken.
pub(crate) fn spawn_ksoftirqd(k: &Kernel, cpu: usize) {
    let b = TaskBuilder::new(&format!("ksoftirqd/{cpu}")).kthread().cpus(1 << cpu);
    let b = match k.config.bh {
        BhMode::Classic => b.nice(0),
        BhMode::Threaded => b.fifo(k.config.bh_prio),
    };
    let h = crate::fork::spawn_on(k, b, Box::new(ksoftirqd_main));
    let _ = k.cpus[cpu].softirq.ksoftirqd.set(h.id());
}

/// Called by an idle loop when only `live` tasks remain: if they are the CPUs' `ksoftirqd`s,
/// ask every one to stop (`kthread_stop`). Returns true if they were asked now.
pub(crate) fn stop_if_alone(k: &Kernel, live: usize) -> bool {
    let started = k.cpus.iter().filter(|c| c.softirq.ksoftirqd.get().is_some()).count();
    if live > started || started < k.cpus.len() || k.cpus[0].softirq.stop.swap(true, Ordering::AcqRel) {
        return false;
    }
    for c in k.cpus.iter() {
        c.softirq.stop.store(true, Ordering::Release);
        if let Some(&id) = c.softirq.ksoftirqd.get() {
            crate::sched::wake_up_process(k, id);
        }
    }
    true
}

/// `ksoftirqd`'s body (`run_ksoftirqd` in a loop): serve pending softirqs with IRQs off around
/// the pending test, give the CPU away if a reschedule is due, sleep when nothing is pending.
fn ksoftirqd_main() -> i64 {
    let k = this_kernel();
    let place = core::panic::Location::caller();
    loop {
        if !ksoftirqd_should_run(&k) {
            if k.this_cpu().softirq.stop.load(Ordering::Acquire) {
                return 0;
            }
            ksoftirqd_sleep(&k, place);
            continue;
        }
        A::local_irq_disable();
        if k.this_cpu().softirq.pending.load(Ordering::Acquire) != 0 {
            __do_softirq(&k, SoftirqContext::Ksoftirqd);
        }
        A::local_irq_enable();
        crate::sched::cond_resched();
    }
}

fn ksoftirqd_should_run(k: &Kernel) -> bool {
    k.this_cpu().softirq.pending.load(Ordering::Acquire) != 0
}

/// Sleeps until woken; the pending test is made after the task is marked sleeping, so a raise
/// in between finds it sleeping and wakes it (no lost wakeup).
fn ksoftirqd_sleep(k: &Kernel, place: &'static core::panic::Location<'static>) {
    {
        let _irq = crate::preempt::guard::local_irq_save();
        let mut rq = crate::sched::rq_lock::this_rq_lock(k);
        if ksoftirqd_should_run(k) || k.this_cpu().softirq.stop.load(Ordering::Acquire) {
            return;
        }
        let me = rq.curr;
        rq.task_mut(me).state = crate::sched::rq::TaskState::Interruptible;
    }
    crate::sched::schedule_at(place);
}
