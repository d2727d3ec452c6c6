//! Interrupt handling: the core's hooks, `irq_enter`/`irq_exit`, and the decision taken on
//! return from an interrupt (the lines and their handlers are `irq_desc.rs`'s).
//!
//! **Mechanism.** The arch layer calls [`HOOKS`]`.irq` with the lines that fired and where the
//! CPU was. [`irq_enter`] raises the hardirq field of `preempt_count`; the tick, the hrtimer and
//! device handlers run; [`irq_exit`] lowers it. Then [`irq_exit_decision`] (Linux's
//! `irqentry_exit`) says whether to preempt: only if a reschedule is due, the count is zero,
//! the current task is not idle, and the interrupted code may be preempted: user mode in
//! kernel text always; kernel mode only as the preemption model allows (never under `none`).
//! Interrupted foreign code (libc, vDSO) is never preempted; a retry interrupt
//! (`LINE_RETRY`) looks again 20 µs later.
//!
//! **Invariant.** Handlers run with IRQs masked and the hardirq count raised, never allocate,
//! never sleep (a handler that tries gets a `BUG:`).

use crate::arch::{Arch, Hooks, IrqExit, IrqFrame, A};
use crate::instance::{try_this_kernel, Kernel};
use crate::irq_desc::{FIRST_DEVICE_LINE, LINE_CALL_FUNCTION, LINE_HRTIMER, LINE_RESCHED, LINE_TICK};
use crate::model::policy::IrqExitPolicy;
use crate::preempt::count::{self as preempt, HARDIRQ_OFFSET};
use crate::sched::rq::Mode;
use core::sync::atomic::Ordering;

/// How soon the first retry interrupt comes; each further retry that still finds foreign code
/// waits twice as long, up to one tick, so a long host call is not flooded with signals.
pub(crate) const RETRY_NS: u64 = 20_000;

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
    if k.time.timerlat.load(Ordering::Relaxed) {
        // Only in an instance with a tracked task: no clock read at entry otherwise.
        let stamps = &k.this_cpu().stamps;
        stamps.irq_entry.store(A::now_ns(), Ordering::Relaxed);
        stamps.irq_ip.store(frame.ip, Ordering::Relaxed);
    }
    irq_enter(&k);
    crate::model::decide::irq_entry(&k, frame.ip);
    crate::trace::irq_handler_entry(&k, lines, frame);
    if lines & (1 << LINE_TICK) != 0 {
        crate::time::timer_interrupt(&k);
        crate::watchdog::tick(&k, frame);
    }
    if lines & (1 << LINE_TICK | 1 << LINE_HRTIMER) != 0 {
        crate::time::hrtimer_interrupt(&k);
    }
    if lines & (1 << LINE_RESCHED) != 0 {
        crate::model::decide::scheduler_ipi(&k);
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
    let timerlat = k.timerlat_pending().map(|w| (w, A::now_ns()));
    let exit = irq_exit_decision(&k, frame);
    if let Some((w, start)) = timerlat {
        w.irq_exit(start, A::now_ns());
    }
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
        if crate::model::decide::resched_due_for_user(k) {
            IrqExitPolicy::Preempt // return to user mode may always preempt
        } else {
            IrqExitPolicy::Nothing
        }
    } else {
        crate::model::decide::irq_exit_kernel(k, frame)
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
