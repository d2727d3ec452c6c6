//! System calls: the border between user mode and kernel mode.
//!
//! **Mechanism.** [`syscall`] is the `syscall` instruction and `entry_SYSCALL_64`: the task's
//! mode becomes kernel, the service runs, then `ret_from_syscall` (Linux's
//! `syscall_exit_to_user_mode`) checks the count, reschedules while `need_resched` is set, and
//! only then returns to user mode, with IRQs masked over the last check so that a wakeup
//! cannot slip in between the check and the return.
//!
//! **Invariant.** A task returns to user mode with `preempt_count == 0`, IRQs on, and no
//! reschedule pending; a service that breaks the first two gets a `BUG:` report naming it.

use crate::arch::{Arch, A};
use crate::instance::{this_kernel, with_this_kernel, Kernel};
use crate::preempt::count as preempt;
use crate::sched::rq::Mode;
use core::panic::Location;

/// Enters the kernel, runs the service `f` in kernel mode, and returns through
/// `ret_from_syscall`. The entry and the exit touch no memory another CPU writes: the
/// instance is borrowed from the CPU thread (no reference count) for the steps that cannot
/// switch, and only a reschedule at the exit takes a reference of its own.
#[track_caller]
pub fn syscall<R>(f: impl FnOnce() -> R) -> R {
    syscall_at(Location::caller(), f)
}

/// [`syscall`], naming `place`.
fn syscall_at<R>(place: &'static Location<'static>, f: impl FnOnce() -> R) -> R {
    // Each one instruction on the CPU's hot words, so no IRQ mask: a task that moves between
    // them counts on one CPU and marks the other, and both travel with it (the count is
    // credited to the running task at switch-out, the mode is the running task's).
    A::count_syscall();
    crate::cpu::set_mode(Mode::Kernel);
    if with_this_kernel(|k| crate::trace::syscall_entry(k, place)).is_none() {
        panic!("this must run on an atomkernel CPU (inside kernel::run)");
    }
    let r = f();
    exit_to_user(place);
    r
}

/// Runs `f` in kernel mode: through [`syscall`] when called from user mode (the kernel's own
/// API functions such as `spawn` or `sleep` are system calls there), directly when already in
/// kernel mode.
#[track_caller]
pub(crate) fn kernel_call<R>(f: impl FnOnce() -> R) -> R {
    kernel_call_at(Location::caller(), f)
}

/// [`kernel_call`], naming `place`.
pub(crate) fn kernel_call_at<R>(place: &'static Location<'static>, f: impl FnOnce() -> R) -> R {
    if crate::cpu::mode() == Mode::User {
        syscall_at(place, f)
    } else {
        f()
    }
}

/// `sched_yield()`: give the CPU to the next task of the same priority. An RT task goes to the
/// tail of its priority; a fair task just reschedules (and runs on if it is still the most
/// deserving).
#[track_caller]
pub fn sched_yield() {
    let place = Location::caller();
    let k = this_kernel();
    kernel_call_at(place, || crate::sched::schedule_mode_at(&k, place, crate::sched::SchedMode::Yield));
}

/// `ret_from_syscall` for the running task, on whatever CPU it is now: the instance borrowed
/// for each step that cannot switch.
fn exit_to_user(place: &'static Location<'static>) {
    with_this_kernel(|k| crate::trace::syscall_exit(k, place));
    if preempt::preempt_count() != 0 || A::irqs_disabled() {
        ret_from_syscall_bugs(&this_kernel(), place);
    }
    loop {
        A::local_irq_disable();
        // Masked: nothing switches inside, so the borrow cannot outlive this CPU thread.
        if with_this_kernel(crate::model::decide::resched_due_for_user).unwrap_or(false) {
            with_this_kernel(|k| {
                if let Some(w) = k.timerlat_pending() {
                    w.point(A::now_ns());
                }
            });
            A::local_irq_enable();
            crate::sched::schedule();
            continue;
        }
        crate::cpu::set_mode(Mode::User);
        A::local_irq_enable();
        return;
    }
}

/// `ret_from_syscall`'s debug checks, out of line: a count the service leaked (reported, then
/// dropped) or IRQs it left masked (reported).
#[cold]
#[inline(never)]
fn ret_from_syscall_bugs(k: &Kernel, place: &'static Location<'static>) {
    if preempt::preempt_count() != 0 {
        k.bug("preempt_count not zero at ret_from_syscall", place);
        preempt::preempt_count_set(0);
    }
    if A::irqs_disabled() {
        k.bug("IRQs disabled at ret_from_syscall", place);
    }
}

/// True while the current task runs kernel code (inside a [`syscall`], or a kernel thread).
pub fn in_kernel_mode() -> bool {
    crate::cpu::mode() == Mode::Kernel
}
