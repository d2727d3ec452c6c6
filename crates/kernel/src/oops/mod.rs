//! Oops and panic: a fault in a task kills that task; a fault anywhere else stops the kernel.
//!
//! **Mechanism.** Two kinds of fault reach here. A Rust panic in kernel code (`panic!`, a
//! checked division by zero, an `expect`) runs the panic hook [`install`] puts in front of the
//! default one; a hardware fault (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, a foreign `int3`)
//! runs [`fault_hook`] from the arch layer's handler. Both take an [`OopsRecord`] in fixed room
//! (no allocation: the fault may have hit inside `malloc`, or in interrupt context): what
//! happened, the task's name and pid, the CPU, `preempt_count`, the IRQ state, the registers
//! and a backtrace of the task's own stack. Then they decide, as Linux's `oops_end` and
//! `make_task_dead` do:
//!
//! - in hard-IRQ or softirq context, with BH or IRQs disabled, in the idle task, in a task
//!   already dying of an oops, or with `panic_on_oops=1`: a kernel panic ([`panic`]);
//! - otherwise the task dies. A Rust panic unwinds the task's stack to the catch at the task
//!   boundary (`task::run_body`), with `preempt_count` raised by the hook so that the unwinder
//!   (which takes host locks) is never preempted; its destructors release what the task held.
//!   A hardware fault does not unwind at all: the arch layer sends the task to
//!   `Hooks::oops_exit` at the top of its own stack and abandons the frames below. Either way
//!   [`task_dead`] notes a `preempt_count` left raised (as Linux's "exited with
//!   preempt_count"), resets it, and ends the task through `do_exit` with an error naming the
//!   oops, which its joiners get; `do_exit` frees its stack after the final switch.
//!
//! Reports are formatted and symbolized on the host side (`report.rs`, run by the thread in
//! [`crate::run`]), never on a CPU: they reach stderr, the printk log and `RunReport::oopses`.
//!
//! **What a dying task leaves behind.** Every spinlock is taken with IRQs masked, so a task
//! that dies in task context holds none (a fault with one held is a panic). A killed task's
//! pid may stay in wait queues it was on; wakeups skip it (it is dead). A lock that a Rust
//! panic's destructors cannot reach, or that a hardware fault abandons in a dead frame (a
//! flag, a counter the task meant to put back), stays as it was, as in Linux; a task waiting
//! for it is then reported by the hung-task detector. A `catch_unwind` inside a task catches
//! the unwinding but not the oops: it is reported as a `BUG:` when the task returns.
//!
//! **Invariant.** Nothing here allocates or takes a lock a faulting CPU could hold before the
//! decision; a panic stops every CPU that takes interrupts, and [`crate::run`] returns an
//! error within a bounded time whatever the stopped CPUs were doing.

pub(crate) mod report;
pub(crate) mod state;

pub use state::OopsReport;
pub(crate) use state::{LockupRecord, OopsRecord, PanicRecord, Report};

use crate::arch::{Arch, Fault, FixedBuf, PanicReport, Regs, A, TRACE_DEPTH};
use crate::instance::{try_this_kernel, Kernel};
use crate::preempt::count::{self as preempt, PREEMPT_OFFSET};
use crate::task::TaskId;
use alloc::sync::Arc;
use alloc::{format, string::String};
use core::fmt::Write as _;
use core::sync::atomic::Ordering;

/// Installs the panic hook (once per process): a panic on a CPU thread is an oops; anywhere
/// else the previous hook runs as before.
pub(crate) fn install() {
    A::set_panic_hook(on_panic);
}

/// The panic hook on a CPU: records the oops, then panics the kernel or lets the task unwind.
fn on_panic(info: &PanicReport<'_>) -> bool {
    let Some(k) = try_this_kernel() else { return false };
    let mut what = FixedBuf::<256>::new();
    let _ = what.write_str("kernel BUG (Rust panic)");
    if let Some(l) = info.location {
        let _ = write!(what, " at {}:{}:{}", l.file(), l.line(), l.column());
    }
    match info.message {
        Some(m) => write!(what, ": {m}"),
        None => write!(what, ": (a non-string payload)"),
    }
    .ok();
    let mut trace = [0; TRACE_DEPTH];
    let (regs, depth) = A::capture_here(&mut trace);
    let rec = record(&k, what, regs, false, trace, depth);
    if let Some(reason) = fatal(&k, &rec) {
        panic(&k, reason, Some(Report::Oops(rec)));
    }
    // No preemption while the stack unwinds (the unwinder takes host locks); `task_dead`
    // lowers it again.
    preempt::preempt_count_add(PREEMPT_OFFSET);
    keep(&k, rec);
    true
}

/// `Hooks::alloc_in_irq`: the allocator was entered in interrupt context, where the
/// interrupted code may be inside `malloc` (a formatted `panic!` in a handler gets here while
/// std formats its message): a kernel panic, "Fatal exception in interrupt". Allocates nothing.
pub(crate) fn alloc_in_irq() -> ! {
    let Some(k) = try_this_kernel() else {
        A::die("BUG: memory allocation in interrupt context (the interrupted code may be inside malloc)")
    };
    let mut what = FixedBuf::<256>::new();
    let _ = what.write_str(
        "BUG: memory allocation in interrupt context (a formatted panic in a handler, or a handler that allocates)",
    );
    let mut trace = [0; TRACE_DEPTH];
    let (regs, depth) = A::capture_here(&mut trace);
    let rec = record(&k, what, regs, false, trace, depth);
    panic(&k, "Fatal exception in interrupt", Some(Report::Oops(rec)))
}

/// `Hooks::fault`: a hardware fault on this CPU (its signal handler: no allocation).
pub(crate) fn fault_hook(f: &Fault) -> bool {
    let Some(k) = try_this_kernel() else { return false };
    let mut what = FixedBuf::<256>::new();
    let _ = write!(what, "{} at {:#x} ({})", f.what, f.addr, String::from_utf8_lossy(f.source.as_bytes()));
    let rec = record(&k, what, f.regs, true, f.trace, f.depth);
    let mut reason = fatal(&k, &rec);
    if f.stack.is_none() && reason.is_none() {
        reason = Some("Attempted to kill the idle task!");
    }
    if let Some(reason) = reason {
        panic(&k, reason, Some(Report::Oops(rec)));
    }
    // Not preemptible until `task_dead` has taken the record on this CPU.
    preempt::preempt_count_add(PREEMPT_OFFSET);
    keep(&k, rec);
    true
}

fn record(
    k: &Kernel,
    what: FixedBuf<256>,
    regs: Regs,
    full_regs: bool,
    trace: [usize; TRACE_DEPTH],
    depth: usize,
) -> OopsRecord {
    OopsRecord {
        what,
        name: A::current_name(),
        pid: k.raw_this_cpu().curr(),
        cpu: k.raw_cpu_id(),
        preempt_count: preempt::preempt_count(),
        irqs_off: A::irqs_disabled(),
        regs,
        full_regs,
        trace,
        depth,
    }
}

/// Why an oops must be a panic, if it must.
fn fatal(k: &Kernel, rec: &OopsRecord) -> Option<&'static str> {
    let in_flight = k.oops.in_flight.lock().iter().any(|r| r.pid == rec.pid);
    if A::in_irq() || preempt::in_interrupt() {
        Some("Fatal exception in interrupt")
    } else if rec.irqs_off {
        Some("Fatal exception with IRQs disabled")
    } else if in_flight {
        Some("Fatal exception while the task was dying of an oops")
    } else if k.task(rec.pid).policy == crate::task::Policy::Idle {
        Some("Attempted to kill the idle task!")
    } else if k.config.watchdog.panic_on_oops {
        Some("Fatal exception (panic_on_oops=1)")
    } else {
        None
    }
}

fn keep(k: &Kernel, rec: OopsRecord) {
    k.oops.count.fetch_add(1, Ordering::Relaxed);
    let mut f = k.oops.in_flight.lock();
    if f.len() < f.capacity() {
        f.push(rec);
    } else {
        k.oops.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes the running task's oops, if it has one in flight.
pub(crate) fn take_in_flight(k: &Kernel, pid: TaskId) -> Option<OopsRecord> {
    let mut f = k.oops.in_flight.lock();
    let i = f.iter().position(|r| r.pid == pid)?;
    Some(f.swap_remove(i))
}

/// `Hooks::oops_exit`: a task killed by a hardware fault, on top of its own stack.
pub(crate) fn oops_exit() -> ! {
    let Some(k) = try_this_kernel() else { A::die("BUG: oops_exit on a thread with no kernel") };
    let pid = k.raw_this_cpu().curr();
    let result = task_dead(&k, pid);
    drop(k);
    crate::sched::do_exit(pid, Err(result))
}

/// The end of an oopsed task, in its own context: hands the report to the host side, fixes
/// `preempt_count` (noting it if the task left it raised), and returns the error its joiners
/// get. Call with the hook's `PREEMPT_OFFSET` still raised.
pub(crate) fn task_dead(k: &Kernel, pid: TaskId) -> String {
    let rec = take_in_flight(k, pid);
    let left = preempt::preempt_count().saturating_sub(PREEMPT_OFFSET);
    preempt::preempt_count_set(0);
    let Some(rec) = rec else { return format!("oops in task pid {pid} (its report did not fit)") };
    let name = String::from_utf8_lossy(rec.name.as_bytes()).into_owned();
    if left != 0 {
        crate::printk::printk_emerg(k, format_args!("note: {name}[{pid}] exited with preempt_count {left:#x}"));
    }
    k.oops.push(Report::Oops(rec));
    format!("oops: {} in task '{name}' (pid {pid}) on CPU {}", String::from_utf8_lossy(rec.what.as_bytes()), rec.cpu)
}

/// `panic()`: records why (the first CPU only), stops every other CPU at its next interrupt,
/// wakes the host side, and stops this CPU. Never returns; allocates nothing.
pub(crate) fn panic(k: &Kernel, reason: &str, cause: Option<Report>) -> ! {
    if !k.oops.panicking.swap(true, Ordering::AcqRel) {
        let mut r = FixedBuf::<160>::new();
        let _ = r.write_str(reason);
        *k.oops.panic.lock() = Some(PanicRecord { reason: r, cause });
        k.oops.panicked.store(true, Ordering::Release);
        let me = k.raw_cpu_id();
        for cpu in k.cpus.iter().filter(|c| c.id != me) {
            if let Some(r) = cpu.raiser.get() {
                A::irq_raise(r, crate::irq_desc::LINE_RESCHED);
            }
        }
        k.oops.wake_supervisor();
    }
    stop_this_cpu(k)
}

/// The host side's panic (a detector that found the kernel stuck): as [`panic`], from a
/// thread that is no CPU, so it returns.
pub(crate) fn panic_from_host(k: &Kernel, reason: &str) {
    if k.oops.panicking.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut r = FixedBuf::<160>::new();
    let _ = r.write_str(reason);
    *k.oops.panic.lock() = Some(PanicRecord { reason: r, cause: None });
    k.oops.panicked.store(true, Ordering::Release);
    for cpu in k.cpus.iter() {
        if let Some(r) = cpu.raiser.get() {
            A::irq_raise(r, crate::irq_desc::LINE_RESCHED);
        }
    }
}

/// Stops this CPU for the panic: its timers off, its bit in `stopped`, then it sleeps for good.
pub(crate) fn stop_this_cpu(k: &Kernel) -> ! {
    let cpu = &k.cpus[k.raw_cpu_id()];
    for t in [cpu.tick_timer.get(), cpu.hrtimer.get(), cpu.retry_timer.get()].into_iter().flatten() {
        A::timer_disarm(t);
    }
    k.oops.stopped.fetch_or(1 << cpu.id, Ordering::AcqRel);
    k.oops.wake_supervisor();
    A::park_forever()
}

/// Ends the oops of a task whose own `catch_unwind` caught the unwinding: the task ran on, so
/// the oops becomes a `BUG:` report and the hook's raised count is dropped.
pub(crate) fn caught_inside(k: &Arc<Kernel>, pid: TaskId) {
    if let Some(rec) = take_in_flight(k, pid) {
        preempt::preempt_count_sub(PREEMPT_OFFSET);
        k.bug_args(
            format_args!(
                "the oops '{}' was caught by a catch_unwind inside the task, which ran on non-preemptible",
                String::from_utf8_lossy(rec.what.as_bytes())
            ),
            core::panic::Location::caller(),
        );
    }
}
