//! Interrupt handling: `irq_enter`/`irq_exit`, the line table, and the decision taken on
//! return from an interrupt.
//!
//! **Mechanism.** The arch layer calls [`HOOKS`]`.irq` with the lines that fired and where the
//! CPU was. [`irq_enter`] raises the hardirq field of `preempt_count`; the tick, the hrtimer and
//! device handlers run; [`irq_exit`] lowers it. Then [`irq_exit_decision`] (Linux's
//! `irqentry_exit`) says whether to preempt: only if a reschedule is due, the count is zero,
//! the current task is not idle, and the interrupted code may be preempted: user mode in
//! kernel text always; kernel mode only as the preemption model allows (never under `none`).
//! Interrupted foreign code (libc, vDSO) is never preempted; a retry interrupt
//! ([`LINE_RETRY`]) looks again 20 µs later.
//!
//! **Invariant.** Handlers run with IRQs masked and the hardirq count raised, never allocate,
//! never sleep (a handler that tries gets a `BUG:`). A handler is never freed in interrupt
//! context: each line counts the CPUs running its handler (`IRQD_IRQ_INPROGRESS`), and
//! [`free_irq`] takes the handler out of the table, then waits until no CPU runs it
//! (`synchronize_irq`), then drops it, in task context, as the last owner.

use crate::arch::{Arch, Hooks, IrqExit, IrqFrame, IrqSpinLock, A};
use crate::instance::{try_this_kernel, Kernel};
use crate::model::IrqExitPolicy;
use crate::preempt::count::{self as preempt, HARDIRQ_OFFSET};
use crate::sched::Mode;
use alloc::sync::Arc;
use alloc::{vec, vec::Vec};
use core::panic::Location;
use core::sync::atomic::{AtomicU32, Ordering};

/// The periodic tick.
pub(crate) const LINE_TICK: u32 = 0;
/// One-shot high-resolution timers.
pub(crate) const LINE_HRTIMER: u32 = 1;
/// The preemption retry: armed when a preemption was due but the interrupt landed in foreign
/// code, so the next look comes soon rather than at the next tick.
pub(crate) const LINE_RETRY: u32 = 2;
/// The reschedule IPI (`smp::smp_send_reschedule`).
pub(crate) const LINE_RESCHED: u32 = 3;
/// The function-call IPI (`smp::smp_call_function_many`).
pub(crate) const LINE_CALL_FUNCTION: u32 = 4;
/// The first line available to devices.
pub(crate) const FIRST_DEVICE_LINE: u32 = 5;
/// How soon the first retry interrupt comes; each further retry that still finds foreign code
/// waits twice as long, up to one tick, so a long host call is not flooded with signals.
pub(crate) const RETRY_NS: u64 = 20_000;

/// A device's interrupt handler.
pub(crate) type IrqHandler = Arc<dyn Fn() + Send + Sync>;

/// Number of interrupt lines (one bit each in the IRR).
const NR_LINES: usize = 64;

/// The device lines (Linux's `irq_desc` array): each line's handler and how many CPUs are
/// inside it right now.
pub(crate) struct IrqDescs {
    handlers: IrqSpinLock<Vec<Option<IrqHandler>>>,
    in_progress: [AtomicU32; NR_LINES],
}

impl IrqDescs {
    pub(crate) fn new() -> IrqDescs {
        IrqDescs {
            handlers: IrqSpinLock::new(vec![None; NR_LINES]),
            in_progress: [const { AtomicU32::new(0) }; NR_LINES],
        }
    }

    /// Runs `line`'s handler, if it has one (`handle_irq_event`). The handler is taken and
    /// counted in progress under the table's lock, and its reference dropped before the count
    /// is, so the one [`free_irq`] holds is always the last.
    fn handle(&self, line: usize) {
        let handler = {
            let table = self.handlers.lock();
            let h = table[line].clone();
            if h.is_some() {
                self.in_progress[line].fetch_add(1, Ordering::AcqRel);
            }
            h
        };
        if let Some(h) = handler {
            h();
            drop(h);
            self.in_progress[line].fetch_sub(1, Ordering::Release);
        }
    }
}

/// Longest `free_irq` waits for a line's handler to finish on another CPU before a `BUG:`.
const SYNCHRONIZE_PATIENCE_NS: u64 = 2_000_000_000;

/// The core's side of the arch boundary.
pub(crate) static HOOKS: Hooks = Hooks {
    irq: irq_hook,
    preempt_schedule_irq: crate::sched::preempt_schedule_irq,
    rt_reschedule: crate::model::rt_reschedule,
    preempt_schedule: crate::sched::preempt_schedule,
    point_trap: crate::model::point_trap,
    rt_return: crate::model::rt_return,
    fault: crate::oops::fault_hook,
    oops_exit: crate::oops::oops_exit,
    alloc_in_irq: crate::oops::alloc_in_irq,
};

fn irq_hook(lines: u64, frame: &IrqFrame) -> IrqExit {
    let Some(k) = try_this_kernel() else { return IrqExit::Resume };
    if k.oops.panicking() {
        crate::oops::stop_this_cpu(&k); // another CPU panicked: every CPU stops
    }
    irq_enter(&k);
    crate::trace::irq_handler_entry(&k, lines, frame);
    if lines & (1 << LINE_TICK) != 0 {
        crate::time::timer_interrupt(&k);
        crate::watchdog::tick(&k, frame);
    }
    if lines & (1 << LINE_TICK | 1 << LINE_HRTIMER) != 0 {
        crate::time::hrtimer_interrupt(&k);
    }
    if lines & (1 << LINE_RESCHED) != 0 {
        crate::smp::scheduler_ipi(&k);
    }
    if lines & (1 << LINE_CALL_FUNCTION) != 0 {
        crate::smp::call_function_interrupt(&k);
    }
    let mut devices = lines >> FIRST_DEVICE_LINE << FIRST_DEVICE_LINE;
    while devices != 0 {
        let line = devices.trailing_zeros();
        devices &= devices - 1;
        k.irq.handle(line as usize);
    }
    irq_exit(&k);
    let exit = irq_exit_decision(&k, frame);
    crate::trace::irq_handler_exit(&k, lines, exit);
    exit
}

/// `irq_enter()`: the CPU is now in hard interrupt context.
pub(crate) fn irq_enter(k: &Kernel) {
    preempt::preempt_count_add(HARDIRQ_OFFSET);
    k.this_cpu().irqs.fetch_add(1, Ordering::Relaxed);
}

/// `irq_exit()`: leave hard interrupt context.
/// Pending softirqs are then served here, with IRQs on, or handed to `ksoftirqd`
/// (`softirq::invoke_softirq`).
pub(crate) fn irq_exit(k: &Kernel) {
    preempt::preempt_count_sub(HARDIRQ_OFFSET);
    crate::softirq::invoke_softirq(k);
}

/// `irqentry_exit()`: may the interrupted code be preempted now? The model says what it wants
/// ([`IrqExitPolicy`]); this function does the mechanics: the count, the idle task, foreign
/// code and the retry timer.
pub(crate) fn irq_exit_decision(k: &Kernel, frame: &IrqFrame) -> IrqExit {
    let policy = if crate::cpu::mode() == Mode::User {
        if crate::model::resched_due_for_user(k) {
            IrqExitPolicy::Preempt // return to user mode may always preempt
        } else {
            IrqExitPolicy::Nothing
        }
    } else {
        crate::model::irq_exit_kernel(k, frame)
    };
    let retry = match policy {
        IrqExitPolicy::Nothing => {
            // Whatever the last retries waited for has been served, so the next one starts
            // from the shortest interval again.
            if k.this_cpu().retry_backoff.load(Ordering::Relaxed) != 0 {
                k.this_cpu().retry_backoff.store(0, Ordering::Relaxed);
            }
            return IrqExit::Resume;
        }
        IrqExitPolicy::Wait => return IrqExit::Resume,
        // The model found nothing to make the task reach a point: look again soon.
        IrqExitPolicy::RetrySoon => true,
        _ if crate::sched::rq_lock::running_idle(k) => return IrqExit::Resume, // the idle loop reschedules by itself
        IrqExitPolicy::Preempt if preempt::preempt_count() != 0 => return IrqExit::Resume,
        IrqExitPolicy::Preempt => !crate::arch::in_kernel_text(frame),
    };
    if retry {
        arm_retry(k);
        return IrqExit::Resume;
    }
    if policy == IrqExitPolicy::Preempt {
        k.this_cpu().retry_backoff.store(0, Ordering::Relaxed);
        return IrqExit::Preempt;
    }
    IrqExit::Resume
}

/// Foreign code (libc, the vDSO) may hold host locks: look again soon, by which time it has
/// most likely returned into kernel text. The wait stays bounded by the time spent in foreign
/// code plus one retry interval, not by the tick.
fn arm_retry(k: &Kernel) {
    let n = k.this_cpu().retry_backoff.fetch_add(1, Ordering::Relaxed).min(16);
    let delay = (RETRY_NS << n).min(k.config.tick_ns());
    if let Some(t) = k.this_cpu().retry_timer.get() {
        A::timer_set_oneshot_at(t, A::now_ns() + delay);
    }
}

/// Installs `handler` for a free device line and returns the line.
pub(crate) fn request_irq(k: &Kernel, handler: IrqHandler) -> Option<u32> {
    let mut table = k.irq.handlers.lock();
    let line = (FIRST_DEVICE_LINE as usize..table.len()).find(|&l| table[l].is_none())?;
    table[line] = Some(handler);
    Some(line as u32)
}

/// Removes the handler of `line` (`free_irq`): no CPU starts it any more, and once none runs
/// it (`synchronize_irq`) it is dropped here. Call from a task.
#[track_caller]
pub(crate) fn free_irq(k: &Kernel, line: u32) {
    let line = line as usize;
    let handler = k.irq.handlers.lock()[line].take();
    let (t0, mut spins) = (A::now_ns(), 0);
    while k.irq.in_progress[line].load(Ordering::Acquire) != 0 {
        if A::now_ns() - t0 > SYNCHRONIZE_PATIENCE_NS {
            k.bug_args(format_args!("free_irq: line {line}'s handler still runs after 2 s"), Location::caller());
            core::mem::forget(handler); // a CPU may still be inside it: never free it under it
            return;
        }
        A::cpu_relax(&mut spins);
    }
    drop(handler);
}
