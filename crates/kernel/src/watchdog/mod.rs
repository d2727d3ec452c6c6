//! The soft-lockup detector (`softlockup_thresh_ms=`), and the boot options of every detector.
//!
//! **Mechanism.** Linux's `kernel/watchdog.c` keeps a per-CPU touch timestamp that the
//! watchdog's stopper thread refreshes whenever it gets to run, and a per-CPU hrtimer that
//! wakes the stopper and complains when the timestamp grows older than the threshold. Here
//! the timer is each CPU's tick, and "the stopper got to run" is a context switch
//! (`__schedule`), a `cond_resched()` or the idle loop (`Arch::touch_softlockup`,
//! one per-CPU store), or, seen by the tick itself, user mode or kernel code that the model
//! may preempt right there (`preempt_count` zero under `full`, `lazy` and the patch models).
//! As the hrtimer wakes the stopper, a tick that finds the stretch past half the threshold
//! sets `need_resched`, so a preemption point that acts on it (`voluntary`) schedules, and
//! that switch is the touch; a point costs nothing more. `tick` takes the touch; if there
//! was none for longer than the threshold it reports once per stretch:
//! `BUG: soft lockup - CPU#N stuck for Xms! [task:pid]` with a backtrace of the interrupted
//! code (recorded raw in interrupt context, symbolized on the host side), or, with
//! `softlockup_panic=1`, panics.
//!
//! **Invariant.** Off (threshold 0) costs the tick one load and test; on, one clock read and
//! a few per-CPU words per tick. Nothing on a task's path but the touch. A CPU with IRQs
//! masked takes no tick and is not seen (Linux's hard-lockup detector is not modelled).

pub(crate) mod state;

use crate::arch::{Arch, Frame, IrqFrame, A, TRACE_DEPTH};
use crate::instance::Kernel;
use crate::sched::rq::Mode;
use core::sync::atomic::Ordering;

/// The soft-lockup check on this CPU's tick (hard-IRQ context; no allocation).
pub(crate) fn tick(k: &Kernel, frame: &IrqFrame) {
    let thresh_ms = k.config.watchdog.softlockup_thresh_ms;
    if thresh_ms == 0 {
        return;
    }
    let cpu = k.raw_this_cpu();
    let w = &k.watchdog.cpus[cpu.id];
    let now = A::now_ns();
    if A::take_softlockup_touch() || could_reschedule_here(k) || w.touch_ns.load(Ordering::Relaxed) == 0 {
        w.touch_ns.store(now, Ordering::Relaxed);
        w.reported.store(false, Ordering::Relaxed);
        return;
    }
    let stuck_ns = now.saturating_sub(w.touch_ns.load(Ordering::Relaxed));
    let thresh_ns = thresh_ms.saturating_mul(1_000_000);
    if stuck_ns >= thresh_ns / 2 {
        crate::preempt::count::set_need_resched(); // the stopper's wakeup: a point that acts schedules
    }
    if stuck_ns < thresh_ns || w.reported.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut trace = [0; TRACE_DEPTH];
    let depth = match (frame.replayed, A::current_stack()) {
        (false, Some(stack)) => A::backtrace(Frame::interrupted(frame.ip, frame.sp, frame.bp), stack, &mut trace),
        _ => 0,
    };
    let rec = crate::oops::LockupRecord {
        cpu: cpu.id,
        pid: cpu.curr(),
        name: A::current_name(),
        stuck_ms: stuck_ns / 1_000_000,
        trace,
        depth,
    };
    if k.config.watchdog.softlockup_panic {
        crate::oops::panic(k, "softlockup: hung tasks", Some(crate::oops::Report::SoftLockup(rec)));
    }
    k.oops.push(crate::oops::Report::SoftLockup(rec));
}

/// Is the interrupted code somewhere the CPU could reschedule: user mode, or kernel code the
/// model preempts on this very interrupt's exit (count zero under a preempting model)?
fn could_reschedule_here(k: &Kernel) -> bool {
    if crate::cpu::mode() == Mode::User {
        return true;
    }
    let m = k.model();
    (m.preempts_kernel_code() || m.is_patch())
        && crate::preempt::count::preempt_count() == crate::preempt::count::HARDIRQ_OFFSET
}
