//! A kernel instance: what it holds and how code finds it.
//!
//! **Mechanism.** [`Kernel`] composes the subsystems' state (the CPUs, the scheduler's, the
//! interrupt lines, the model, the clock, the logs, the tracers, the oops and watchdog state),
//! each reached through its own functions; `run.rs` builds one and drives it. A CPU finds its
//! instance and its CPU number through the arch's per-CPU words (`Arch::with_this_instance`,
//! `Arch::cpu_number`).
//!
//! **Invariant.** Kernel instances share nothing: each has its own CPUs, and all of its state
//! is reached through those CPUs' instance pointers, so any number of instances (the tests run
//! many at once) can boot side by side in one process.

use crate::arch::{Arch, FixedBuf, A};
use crate::config::{Config, ConfigError, PreemptModel};
use crate::cpu::Cpu;
use crate::printk::ring::Printk;
use crate::task::Task;
use crate::task::{CpuMask, TaskId};
use alloc::sync::Arc;
use alloc::{boxed::Box, string::String, vec::Vec};
use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};

/// One kernel instance.
pub(crate) struct Kernel {
    pub(crate) config: Config,
    /// Scheduling: the task table, the tasks still live, RT placement (`sched/state.rs`).
    pub(crate) sched: crate::sched::state::Sched,
    /// The device lines' handlers (`irq_desc`).
    pub(crate) irq: crate::irq_desc::IrqDescs,
    /// The CPUs (`cpus=`).
    pub(crate) cpus: Box<[Cpu]>,
    /// CPUs that have come up (bit per CPU).
    pub(crate) online: AtomicU64,
    /// Function calls sent without waiting that some target has not run yet (`smp.rs`).
    pub(crate) smp: crate::smp::state::InFlight,
    pub(crate) printk: Printk,
    /// The `BUG:` reports kept for the `RunReport`.
    pub(crate) bugs: crate::printk::ring::BugLog,
    /// When it booted and the jiffies since (`time.rs`).
    pub(crate) time: crate::time::state::Clock,
    /// Host CPUs for the instance's helper threads (devices): the caller's set, without the
    /// CPU threads' own when they are pinned, so they never compete with them for a core.
    pub(crate) helper_cpus: Vec<usize>,
    /// The preemption model, its claim on the point sites, a switch in progress (`model/`).
    pub(crate) model: crate::model::state::ModelState,
    /// The tracers (`trace=`): off unless asked for.
    pub(crate) trace: crate::trace::state::Tracer,
    /// Oopses caught, reports for the host side, the panic (`oops`).
    pub(crate) oops: crate::oops::state::OopsState,
    /// The soft-lockup detector's per-CPU state.
    pub(crate) watchdog: crate::watchdog::state::Watchdog,
}

/// The kernel instance of the calling CPU thread. Panics elsewhere.
pub(crate) fn this_kernel() -> Arc<Kernel> {
    try_this_kernel().expect("this must run on an atomkernel CPU (inside kernel::run)")
}

/// The kernel instance of the calling CPU, if it is one (the arch's per-CPU instance
/// pointer). Never panics: the allocator may ask while the CPU is being torn down.
#[inline(never)]
pub(crate) fn try_this_kernel() -> Option<Arc<Kernel>> {
    unpreemptible(|| A::with_this_instance(|k: &Arc<Kernel>| k.clone()))
}

/// Runs `f` with the calling task unpreemptible (the count raised by one, as
/// `preempt_disable`, and lowered again as `preempt_enable_no_resched`: the scheduler's own
/// entries ask for the instance here, so taking a reschedule that came due in these few
/// instructions would recurse; the next interrupt exit, point or `preempt_enable` takes it).
/// The arch counts the lends of its per-CPU instance pointer per CPU: a task preempted inside
/// one and resumed on another CPU would close it on the wrong CPU. An interrupt handler
/// inside one is harmless: it runs to completion and closes its own.
#[inline(always)]
fn unpreemptible<R>(f: impl FnOnce() -> R) -> R {
    crate::preempt::count::preempt_count_add(crate::preempt::count::PREEMPT_OFFSET);
    let r = f();
    crate::preempt::count::preempt_count_sub(crate::preempt::count::PREEMPT_OFFSET);
    r
}

/// Runs `f` on the kernel instance of the calling CPU thread, if it is one, borrowing it: no
/// reference count is taken, so a path that every CPU takes often (a collateral call) does not
/// bounce the `Arc`'s counter between them. `None` off a CPU thread. `f` must not make the
/// thread a CPU of another instance.
#[inline(never)]
pub(crate) fn with_this_kernel<R>(f: impl FnOnce(&Kernel) -> R) -> Option<R> {
    unpreemptible(|| A::with_this_instance(|k: &Arc<Kernel>| f(k)))
}

/// The CPU number of the calling CPU thread (0 elsewhere): one `%fs`-relative load of the arch
/// layer's per-CPU word, right on whatever thread the task runs now.
#[inline(always)]
pub(crate) fn this_cpu_id() -> usize {
    A::cpu_number() as usize
}

/// Makes the calling CPU one of `k` (`None`: of no instance any more).
pub(crate) fn set_this_cpu(this: Option<Arc<Kernel>>) {
    A::set_this_instance(this);
}

impl Kernel {
    /// Task `id`, borrowed from the table (no reference count is taken: tasks stay in it for
    /// the instance's life).
    pub(crate) fn task(&self, id: TaskId) -> &Arc<Task> {
        match self.sched.task(id) {
            Some(t) => t,
            None => panic!("no task with pid {id} (pids handed out: {})", self.sched.nr_tasks()),
        }
    }

    /// The stamps this CPU owes the tracked wakeup pending on it (`task::timerlat`), if one is.
    /// Call with IRQs masked.
    pub(crate) fn timerlat_pending(&self) -> Option<&crate::task::timerlat::WakeupStamps> {
        match self.raw_this_cpu().stamps.pending.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(&self.task(pid - 1).wakeup),
        }
    }

    /// The running task of the calling CPU (read with IRQs masked, so that the task cannot
    /// move between finding its CPU and reading it).
    pub(crate) fn current_id(&self) -> TaskId {
        let was_masked = A::local_irq_save();
        let id = self.raw_this_cpu().curr();
        A::local_irq_restore(was_masked);
        id
    }

    /// Records a `BUG:` report naming the current task, the CPU, the count and the place.
    /// Takes no run-queue lock, so that it may report from under one, and allocates nothing in
    /// hard-IRQ context (the report is formatted into a fixed buffer there).
    pub(crate) fn bug(&self, what: &str, place: &Location<'_>) {
        self.bug_args(format_args!("{what}"), place);
    }

    /// [`Kernel::bug`] with a formatted description (formatted without allocating).
    pub(crate) fn bug_args(&self, what: core::fmt::Arguments<'_>, place: &Location<'_>) {
        use core::fmt::Write;
        let id = self.current_id();
        let mut msg = FixedBuf::<512>::new();
        let _ = write!(msg, "BUG: {what}: task '");
        if let Some(t) = self.sched.task(id) {
            let _ = msg.write_str(&t.name);
        }
        let _ = write!(
            msg,
            "' (pid {id}) on CPU {}, preempt_count {:#x}, irqs {}, at {}:{}",
            self.raw_cpu_id(),
            crate::preempt::count::preempt_count(),
            if A::irqs_disabled() { "off" } else { "on" },
            place.file(),
            place.line()
        );
        let text = core::str::from_utf8(msg.as_bytes()).unwrap_or("BUG: (unprintable)");
        self.printk.log_line(self.time.uptime_ns(), format_args!("{text}"));
        self.bugs.keep(&msg, text);
    }

    /// Keeps a `BUG:` report made on the host side (a soft lockup's, symbolized there).
    pub(crate) fn bug_text(&self, text: String) {
        self.bugs.keep_text(text);
    }

    /// The current preemption model.
    #[inline]
    pub(crate) fn model(&self) -> PreemptModel {
        self.model.current()
    }

    /// The CPUs of this instance, as a mask.
    pub(crate) fn all_cpus(&self) -> CpuMask {
        crate::task::mask_of(self.cpus.len())
    }

    /// The number of the CPU whose thread calls, without the preemptibility check.
    pub(crate) fn raw_cpu_id(&self) -> usize {
        crate::instance::this_cpu_id()
    }

    /// The calling CPU, without the check: for counters, where a task that moved on meanwhile
    /// only credits the CPU it came from.
    pub(crate) fn raw_this_cpu(&self) -> &Cpu {
        &self.cpus[self.raw_cpu_id()]
    }

    /// The calling CPU (`this_cpu_ptr`), checked as `debug_smp_processor_id` does (see the
    /// module docs).
    #[track_caller]
    #[inline(always)]
    pub(crate) fn this_cpu(&self) -> &Cpu {
        let cpu = self.raw_this_cpu();
        if crate::preempt::count::preemptible() {
            self.check_bound(cpu, Location::caller());
        }
        cpu
    }

    /// The preemptible case of [`Kernel::this_cpu`], out of line: a `BUG:` unless the running
    /// task is bound to `cpu`.
    #[cold]
    #[inline(never)]
    fn check_bound(&self, cpu: &Cpu, place: &'static Location<'static>) {
        if !self.bound_to(cpu) {
            self.bug("using smp_processor_id() in preemptible code", place);
        }
    }

    /// Is the running task allowed on `cpu` alone (a per-CPU kthread, which cannot move)?
    fn bound_to(&self, cpu: &Cpu) -> bool {
        self.sched.task(cpu.curr()).is_some_and(|t| t.cpus_allowed.load(Ordering::Relaxed) == 1 << cpu.id)
    }
}

/// Why a kernel could not boot.
#[derive(Debug)]
pub enum BootError {
    /// The configuration was refused.
    Config(ConfigError),
    /// The host refused a resource (thread, timer, memory).
    Host(String),
    /// The kernel panicked (a fatal oops, `panic_on_oops=1`, a detector's `*_panic=1`): every
    /// CPU was stopped and the report and the printk log went to stderr. Names the cause.
    Panic(String),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Config(e) => write!(f, "bad configuration: {e}"),
            BootError::Host(e) => write!(f, "the host refused: {e}"),
            BootError::Panic(e) => write!(f, "Kernel panic - not syncing: {e}"),
        }
    }
}

impl core::error::Error for BootError {}

impl From<ConfigError> for BootError {
    fn from(e: ConfigError) -> Self {
        BootError::Config(e)
    }
}

/// The running task's id.
pub fn current_pid() -> TaskId {
    this_kernel().current_id()
}

/// The CPU the calling task runs on (`raw_smp_processor_id`): it may move on right after.
pub fn raw_smp_processor_id() -> usize {
    this_cpu_id()
}

/// The CPU the calling code runs on (`smp_processor_id`), for code that cannot move: with
/// preemption or IRQs disabled, or in a task bound to one CPU. Called from anywhere else, it is
/// a `BUG:` report naming the task, the CPU and the caller (Linux's `debug_smp_processor_id`).
#[track_caller]
pub fn smp_processor_id() -> usize {
    this_kernel().this_cpu().id
}

/// Nanoseconds since this kernel booted.
pub fn uptime_ns() -> u64 {
    this_kernel().time.uptime_ns()
}
