//! A kernel instance: boot, the CPU thread, the idle loop, and shutdown.
//!
//! **Mechanism.** [`run`] validates the configuration, starts one host thread as CPU 0, turns
//! it into a CPU (interrupt stack, IRR, timers), makes its own stack the idle task
//! (`swapper/0`), spawns `init` with the given body, starts the tick and enters the idle loop.
//! When every task has exited, the CPU stops its timers, detaches, and the host side gets a
//! [`RunReport`]: each task's result and counters, every `BUG:` report, the printk log.
//!
//! **Invariant.** Kernel instances share nothing: each has its own CPU thread, and all of its
//! per-CPU state is reached through that thread's local pointer, so any number of instances
//! (the tests run many at once) can boot side by side in one process.

use crate::config::{Config, ConfigError};
use crate::printk::Printk;
use crate::sched::{Mode, Sched, TaskId};
use crate::task::{Policy, Task, TaskHandle, TaskResult, TaskStatsSnapshot};
use crate::time::TimerQueue;
use arch::irq::IrqRaiser;
use arch::switch::TaskContext;
use arch::sync::IrqSpinLock;
use arch::timer::HostTimer;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// Most `BUG:` reports kept per instance (the count goes on).
const MAX_BUGS: usize = 64;

/// The per-CPU part of a kernel instance that other threads and interrupts read.
pub(crate) struct CpuState {
    mode: AtomicU8,
    pub(crate) jiffies: AtomicU64,
    pub(crate) irqs: AtomicU64,
    /// System calls made by the running task since it was switched in (credited to it when
    /// it is switched out, so `syscall()` touches no lock).
    pub(crate) syscalls: AtomicU64,
    pub(crate) raiser: OnceLock<IrqRaiser>,
    pub(crate) tick_timer: OnceLock<HostTimer>,
    pub(crate) hrtimer: OnceLock<HostTimer>,
    pub(crate) retry_timer: OnceLock<HostTimer>,
    /// Consecutive preemption retries that found foreign code (the retry's backoff exponent).
    pub(crate) retry_backoff: AtomicU8,
    /// The preemption models' per-CPU state.
    pub(crate) model: crate::model::ModelCpu,
}

impl CpuState {
    pub(crate) fn mode(&self) -> Mode {
        if self.mode.load(Ordering::Relaxed) == Mode::Kernel as u8 {
            Mode::Kernel
        } else {
            Mode::User
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }
}

/// One kernel instance.
pub struct Kernel {
    pub(crate) config: Config,
    pub(crate) sched: IrqSpinLock<Sched>,
    pub(crate) tasks: IrqSpinLock<Vec<Arc<Task>>>,
    pub(crate) timers: IrqSpinLock<TimerQueue>,
    pub(crate) irq_handlers: IrqSpinLock<Vec<Option<crate::irq::IrqHandler>>>,
    pub(crate) cpu: CpuState,
    pub(crate) printk: Printk,
    bugs: IrqSpinLock<Vec<String>>,
    bug_count: AtomicU64,
    pub(crate) boot_ns: u64,
    /// Host CPUs for the instance's helper threads (devices): the caller's set, without the
    /// CPU thread's own when it is pinned, so they never compete with it for one core.
    pub(crate) helper_cpus: Vec<usize>,
    /// The preemption model now (an index into `PreemptModel::ALL`); switchable at run time.
    pub(crate) model: AtomicU8,
    /// This instance's claim on every preemption-point site while its model uses points.
    pub(crate) sites_claim: IrqSpinLock<Option<arch::patch::AllSitesClaim>>,
    /// Softirqs, tasklets and `ksoftirqd` of the CPU.
    pub(crate) softirq: crate::softirq::SoftirqCpu,
    /// The tracers (`trace=`): off unless asked for.
    pub(crate) trace: crate::trace::Tracer,
}

thread_local! {
    static THIS: RefCell<Option<Arc<Kernel>>> = const { RefCell::new(None) };
}

/// The kernel instance of the calling CPU thread. Panics elsewhere.
pub(crate) fn this_kernel() -> Arc<Kernel> {
    try_this_kernel().expect("this must run on an atomkernel CPU (inside kernel::run)")
}

/// The kernel instance of the calling CPU thread, if it is one. Never panics: the allocator
/// may ask while the CPU is being torn down (the pointer then being replaced).
pub(crate) fn try_this_kernel() -> Option<Arc<Kernel>> {
    THIS.with(|t| t.try_borrow().ok().and_then(|k| k.clone()))
}

impl Kernel {
    pub(crate) fn task(&self, id: TaskId) -> Arc<Task> {
        self.tasks.lock()[id].clone()
    }

    pub(crate) fn current_id(&self) -> TaskId {
        self.sched.lock().curr
    }

    /// Records a `BUG:` report naming the current task, the count and the place.
    pub(crate) fn bug(&self, what: &str, place: &Location<'_>) {
        let id = self.current_id();
        let name = self.task(id).name.clone();
        let msg = format!(
            "BUG: {what}: task '{name}' (pid {id}), preempt_count {:#x}, irqs {}, at {}:{}",
            crate::preempt::preempt_count(),
            if arch::irq::irqs_disabled() { "off" } else { "on" },
            place.file(),
            place.line()
        );
        crate::printk::printk_str(self, &msg);
        self.bug_count.fetch_add(1, Ordering::Relaxed);
        let mut bugs = self.bugs.lock();
        if bugs.len() < MAX_BUGS {
            bugs.push(msg);
        }
    }

    /// Jiffies since boot.
    pub fn jiffies(&self) -> u64 {
        self.cpu.jiffies.load(Ordering::Relaxed)
    }
}

/// Everything a finished kernel instance hands back.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The result of `init`, the body given to [`run`].
    pub init: TaskResult,
    /// Every task but idle, in spawn order.
    pub tasks: Vec<TaskReport>,
    /// Every `BUG:` report (the first 64).
    pub bugs: Vec<String>,
    /// The printk log.
    pub log: String,
    /// Ticks taken.
    pub jiffies: u64,
    /// Interrupts taken (signals and replays).
    pub irqs: u64,
    /// Context switches.
    pub switches: u64,
    /// What the patch models did (all zero under the other models).
    pub patch: crate::model::patch::PatchStatsSnapshot,
    /// What the tracers found (`None` when tracing was off).
    pub trace: Option<crate::trace::TraceReport>,
}

/// One task's end.
#[derive(Clone, Debug)]
pub struct TaskReport {
    /// Its pid.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its scheduling policy.
    pub policy: Policy,
    /// What its body returned (`None` if it never finished).
    pub result: Option<TaskResult>,
    /// Its counters.
    pub stats: TaskStatsSnapshot,
}

/// Why a kernel could not boot.
#[derive(Debug)]
pub enum BootError {
    /// The configuration was refused.
    Config(ConfigError),
    /// The host refused a resource (thread, timer, memory).
    Host(String),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Config(e) => write!(f, "bad configuration: {e}"),
            BootError::Host(e) => write!(f, "the host refused: {e}"),
        }
    }
}

impl std::error::Error for BootError {}

impl From<ConfigError> for BootError {
    fn from(e: ConfigError) -> Self {
        BootError::Config(e)
    }
}

/// Boots a kernel instance with `config`, runs `init` as its first task (SCHED_NORMAL, user
/// mode), and returns when every task has exited.
pub fn run(config: Config, init: impl FnOnce() -> i64 + Send + 'static) -> Result<RunReport, BootError> {
    config.validate()?;
    let k = Arc::new(Kernel {
        sched: IrqSpinLock::new(Sched::new(config.rr_timeslice_ticks)),
        tasks: IrqSpinLock::new(Vec::new()),
        timers: IrqSpinLock::new(TimerQueue::default()),
        irq_handlers: IrqSpinLock::new(vec![None; 64]),
        cpu: CpuState {
            mode: AtomicU8::new(Mode::Kernel as u8),
            jiffies: AtomicU64::new(0),
            irqs: AtomicU64::new(0),
            syscalls: AtomicU64::new(0),
            raiser: OnceLock::new(),
            tick_timer: OnceLock::new(),
            hrtimer: OnceLock::new(),
            retry_timer: OnceLock::new(),
            retry_backoff: AtomicU8::new(0),
            model: Default::default(),
        },
        printk: Printk::new(1 << 20, config.console),
        bugs: IrqSpinLock::new(Vec::with_capacity(MAX_BUGS)),
        bug_count: AtomicU64::new(0),
        boot_ns: arch::clock::now_ns(),
        helper_cpus: helper_cpus(config.pin_cpu),
        model: AtomicU8::new(config.preempt.index()),
        sites_claim: IrqSpinLock::new(None),
        softirq: crate::softirq::SoftirqCpu::new(),
        trace: crate::trace::Tracer::new(config.trace),
        config,
    });
    let kc = k.clone();
    let cpu0 = std::thread::Builder::new()
        .name("atomkernel-cpu0".into())
        .spawn(move || cpu_main(kc, Box::new(init)))
        .map_err(|e| BootError::Host(format!("cannot start the CPU thread: {e}")))?;
    cpu0.join().map_err(|_| BootError::Host("the CPU thread panicked".into()))??;
    Ok(report(&k))
}

fn helper_cpus(pinned: Option<usize>) -> Vec<usize> {
    let all = arch::cpu::allowed_host_cpus();
    let others: Vec<usize> = all.iter().copied().filter(|&c| Some(c) != pinned).collect();
    if others.is_empty() {
        all
    } else {
        others
    }
}

fn report(k: &Kernel) -> RunReport {
    let tasks = k.tasks.lock().clone();
    let sched = k.sched.lock();
    let switches = sched.nr_switches;
    drop(sched);
    RunReport {
        init: tasks.get(1).and_then(|t| t.result.lock().clone()).unwrap_or_else(|| Err("init never ran".into())),
        tasks: tasks
            .iter()
            .filter(|t| t.policy != Policy::Idle)
            .map(|t| TaskReport {
                id: t.id,
                name: t.name.clone(),
                policy: t.policy,
                result: t.result.lock().clone(),
                stats: TaskHandle { task: t.clone() }.stats(),
            })
            .collect(),
        bugs: k.bugs.lock().iter().cloned().chain(k.cpu.model.patch.refused_report()).collect(),
        log: k.printk.drain(),
        jiffies: k.jiffies(),
        irqs: k.cpu.irqs.load(Ordering::Relaxed),
        switches,
        patch: k.cpu.model.patch.stats.snapshot(),
        trace: crate::trace::report(k, tasks.iter().map(|t| t.name.clone()).collect()),
    }
}

fn cpu_main(k: Arc<Kernel>, init: crate::task::TaskBody) -> Result<(), BootError> {
    let host = |e: std::io::Error| BootError::Host(e.to_string());
    if let Some(c) = k.config.pin_cpu {
        arch::cpu::pin_current_thread(c).map_err(host)?;
    }
    let registration = arch::cpu::CpuRegistration::new(&crate::irq::HOOKS).map_err(host)?;
    THIS.with(|t| *t.borrow_mut() = Some(k.clone()));
    crate::preempt::preempt_count_set(0);
    crate::preempt::clear_need_resched();
    let _ = k.cpu.raiser.set(registration.raiser());
    let _ = k.cpu.tick_timer.set(HostTimer::new(crate::irq::LINE_TICK).map_err(host)?);
    let _ = k.cpu.hrtimer.set(HostTimer::new(crate::irq::LINE_HRTIMER).map_err(host)?);
    let _ = k.cpu.retry_timer.set(HostTimer::new(crate::irq::LINE_RETRY).map_err(host)?);
    // Arm the preemption points before anything runs, so a refusal leaves nothing behind.
    crate::model::switch_sites(&k, None, Some(k.config.preempt)).map_err(BootError::Config)?;
    crate::trace::boot(&k).map_err(BootError::Config)?;
    let idle_ctx = TaskContext::for_current_thread("swapper/0");
    add_task(&k, "swapper/0", Policy::Idle, Some(idle_ctx.clone()), None, Mode::Kernel);
    crate::printk::printk_str(
        &k,
        &format!("atomkernel: booting 1 CPU, HZ={}, preempt={}, bh={}", k.config.hz, k.config.preempt, k.config.bh),
    );
    spawn_on(&k, crate::task::TaskBuilder::new("init"), init);
    crate::softirq::spawn_ksoftirqd(&k); // after init, which stays pid 1
    if let Some(t) = k.cpu.tick_timer.get() {
        t.set_periodic(k.config.tick_ns());
    }
    idle_loop(&k);
    crate::trace::shutdown(&k);
    crate::model::switch_sites(&k, Some(k.model()), None).map_err(BootError::Config)?;
    for t in [k.cpu.tick_timer.get(), k.cpu.hrtimer.get(), k.cpu.retry_timer.get()].into_iter().flatten() {
        t.disarm();
    }
    crate::printk::printk_str(&k, "atomkernel: all tasks exited, CPU 0 halted");
    arch::irq::local_irq_disable();
    THIS.with(|t| *t.borrow_mut() = None);
    drop(registration);
    drop(idle_ctx);
    Ok(())
}

/// The idle task: run whatever becomes runnable, halt when nothing is, stop when every other
/// task has exited.
fn idle_loop(k: &Kernel) {
    let mut hung = crate::hung::HungCheck::new(k);
    loop {
        arch::irq::local_irq_disable();
        if crate::preempt::need_resched() || k.sched.lock().has_runnable() {
            crate::sched::schedule_irqs_off(k, crate::sched::SchedMode::Idle);
            arch::irq::local_irq_enable();
            hung.ran();
            continue;
        }
        let live = k.sched.lock().nr_live;
        if live == 0 {
            arch::irq::local_irq_enable();
            return;
        }
        if crate::softirq::stop_if_alone(k, live) {
            arch::irq::local_irq_enable(); // only ksoftirqd is left: it was told to stop
            continue;
        }
        arch::cpu::safe_halt();
        hung.check(k);
    }
}

fn add_task(
    k: &Kernel,
    name: &str,
    policy: Policy,
    ctx: Option<Arc<TaskContext>>,
    body: Option<crate::task::TaskBody>,
    mode: Mode,
) -> Arc<Task> {
    let _irq = crate::preempt::local_irq_save();
    let mut tasks = k.tasks.lock();
    let id = tasks.len();
    let task = Arc::new(Task {
        id,
        name: name.into(),
        policy,
        ctx: IrqSpinLock::new(ctx),
        body: IrqSpinLock::new(body),
        result: IrqSpinLock::new(None),
        exited: crate::wait::WaitQueue::new(),
        stats: Default::default(),
    });
    tasks.push(task.clone());
    k.sched.lock().add_task(id, policy, mode);
    task
}

pub(crate) fn spawn_on(k: &Kernel, b: crate::task::TaskBuilder, body: crate::task::TaskBody) -> TaskHandle {
    if let Err(e) = b.policy.validate() {
        panic!("spawn of task '{}': {e}", b.name);
    }
    let mode = if b.kthread { Mode::Kernel } else { Mode::User };
    let task = add_task(k, &b.name, b.policy, None, Some(body), mode);
    let stack = b.stack_size.unwrap_or(k.config.stack_size);
    let ctx = TaskContext::new(&b.name, stack, crate::task::task_entry, task.id)
        .unwrap_or_else(|e| panic!("cannot map a {stack}-byte stack for task '{}': {e}", b.name));
    *task.ctx.lock() = Some(ctx);
    let mut sched = k.sched.lock();
    if sched.wake_new(task.id) {
        crate::model::resched_curr(k, &sched, task.id);
    }
    drop(sched);
    TaskHandle { task }
}

/// Creates a task running `body` on the calling CPU. Call from a task.
/// From user mode this is a system call (`clone`): if the new task outranks the caller, it
/// runs at the caller's `ret_from_syscall`.
#[track_caller]
pub fn spawn(b: crate::task::TaskBuilder, body: impl FnOnce() -> i64 + Send + 'static) -> TaskHandle {
    let k = this_kernel();
    crate::syscall::kernel_call(|| spawn_on(&k, b, Box::new(body)))
}

/// The running task's id.
pub fn current_pid() -> TaskId {
    this_kernel().current_id()
}

/// Nanoseconds since this kernel booted.
pub fn uptime_ns() -> u64 {
    arch::clock::now_ns() - this_kernel().boot_ns
}
