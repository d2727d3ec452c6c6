//! Running a fuzz program inside a kernel instance.
//!
//! **Mechanism.** `init` opens the program's softirq vector ([`FUZZ_SOFTIRQ`]), sets up its two
//! tasklets and its devices, spawns the tasks in order (publishing their pids for `Affinity`),
//! joins them, and then checks what only the end can show: every softirq raise that found its
//! bit clear ran once, every tasklet schedule that queued it ran once, every device raised
//! immediately took its interrupt. Each task interprets its operations with the kernel's
//! public API and returns the fold of its atoms' checksums and its children's results.
//!
//! **Invariant.** Nothing here blocks a CPU thread on the host: tasks share only atomics, wait
//! queues and IRQ-safe spin locks, and every handler (hard IRQ, softirq, tasklet) only counts,
//! sets a flag and wakes a queue, which never allocates.

use crate::fuzz::program::{
    atom, child_seed, fold_children, page_of, result_of, task_name, task_seed, IrqAction, Op, Pol, Program, EVENTS,
};
use kernel::device::Device;
use kernel::softirq::{open_softirq, raise_softirq, softirq_stats, BLOCK_SOFTIRQ};
use kernel::sync::IrqSpinLock;
use kernel::tasklet::{tasklet_hi_schedule, tasklet_schedule, Tasklet};
use kernel::{spawn, syscall, TaskBuilder, TaskHandle, WaitQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The softirq vector programs raise (one no kernel subsystem uses).
pub(crate) const FUZZ_SOFTIRQ: usize = BLOCK_SOFTIRQ;

/// A task returns this when an operation the kernel should have accepted was refused (the
/// reason is in its slot of `Shared::task_errors`).
pub(crate) const REFUSED: i64 = i64::MIN;

/// How long `init` waits at the end for bottom halves and interrupts still in flight.
const SETTLE_NS: u64 = 5_000_000_000;

/// What the program's tasks, handlers and `init` share.
pub(crate) struct Shared {
    pub(crate) prog: Program,
    flags: [AtomicBool; EVENTS],
    queues: [WaitQueue; EVENTS],
    pids: Vec<AtomicUsize>,
    /// Softirq raises the program made (tasks and handlers), counted before each raise.
    softirq_raises: AtomicU64,
    softirq_runs: AtomicU64,
    /// Per tasklet (normal, hi): schedules that queued it, and its runs.
    tasklet_queued: [AtomicU64; 2],
    tasklet_runs: Arc<[AtomicU64; 2]>,
    tasklets: OnceLock<[Arc<Tasklet>; 2]>,
    /// Per device: raises asked for (immediate and timed), immediate ones, handler runs.
    raises: Vec<AtomicU64>,
    immediate: Vec<AtomicU64>,
    irqs: Vec<AtomicU64>,
    devices: IrqSpinLock<Option<Arc<Vec<Device>>>>,
    /// Why a task returned [`REFUSED`], by task index.
    pub(crate) task_errors: Vec<OnceLock<String>>,
    /// What `init`'s end checks found wrong.
    pub(crate) end_errors: OnceLock<Vec<String>>,
}

const NO_PID: usize = usize::MAX;

impl Shared {
    pub(crate) fn new(prog: Program) -> Arc<Shared> {
        let n = |len: usize| (0..len).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let (ndev, ntasks) = (prog.devices.len(), prog.tasks.len());
        Arc::new(Shared {
            flags: std::array::from_fn(|_| AtomicBool::new(false)),
            queues: std::array::from_fn(|_| WaitQueue::new()),
            pids: (0..ntasks).map(|_| AtomicUsize::new(NO_PID)).collect(),
            softirq_raises: AtomicU64::new(0),
            softirq_runs: AtomicU64::new(0),
            tasklet_queued: [AtomicU64::new(0), AtomicU64::new(0)],
            tasklet_runs: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            tasklets: OnceLock::new(),
            raises: n(ndev),
            immediate: n(ndev),
            irqs: n(ndev),
            devices: IrqSpinLock::new(None),
            task_errors: (0..ntasks).map(|_| OnceLock::new()).collect(),
            end_errors: OnceLock::new(),
            prog,
        })
    }

    fn signal(&self, e: usize) {
        self.flags[e].store(true, Ordering::Release);
        self.queues[e].wake_up();
    }

    fn raise_softirq(&self) {
        self.softirq_raises.fetch_add(1, Ordering::AcqRel);
        raise_softirq(FUZZ_SOFTIRQ);
    }

    fn schedule_tasklet(&self, hi: bool) {
        let Some(t) = self.tasklets.get() else { return };
        let queued = if hi { tasklet_hi_schedule(&t[1]) } else { tasklet_schedule(&t[0]) };
        if queued {
            self.tasklet_queued[hi as usize].fetch_add(1, Ordering::AcqRel);
        }
    }

    fn device(&self, d: usize) -> Option<Arc<Vec<Device>>> {
        let devs = self.devices.lock().clone();
        devs.filter(|v| d < v.len())
    }
}

/// `init`'s body: set up, spawn, join, check the end, release the devices.
pub(crate) fn init(sh: Arc<Shared>) -> i64 {
    let mut errors = Vec::new();
    if let Err(e) = setup(&sh) {
        errors.push(e);
    }
    let handles: Vec<TaskHandle> = sh
        .prog
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let b = builder(&task_name(i), t.pol);
            let b = match t.cpus {
                Some(m) => b.cpus(m),
                None => b,
            };
            let s = sh.clone();
            let h = spawn(b, move || run_task(&s, Some(i), task_seed(i), &s.prog.tasks[i].ops, &task_name(i)));
            sh.pids[i].store(h.id(), Ordering::Release);
            h
        })
        .collect();
    for h in &handles {
        let _ = h.join(); // each result is checked from the run's report
    }
    errors.extend(settle(&sh));
    let devices = sh.devices.lock().take();
    drop(devices); // the last reference: each device's thread stops, its line is freed
    let _ = sh.end_errors.set(errors);
    0
}

fn builder(name: &str, pol: Pol) -> TaskBuilder {
    let b = TaskBuilder::new(name);
    match pol {
        Pol::Fifo(p) => b.fifo(p),
        Pol::Rr(p) => b.rr(p),
        Pol::Normal(n) => b.nice(n),
    }
}

fn setup(sh: &Arc<Shared>) -> Result<(), String> {
    let s = sh.clone();
    open_softirq(FUZZ_SOFTIRQ, move || {
        s.softirq_runs.fetch_add(1, Ordering::AcqRel);
    })?;
    let tasklet = |name: &str, i: usize| {
        let runs = sh.tasklet_runs.clone();
        Tasklet::new(name, move || {
            runs[i].fetch_add(1, Ordering::AcqRel);
        })
    };
    let _ = sh.tasklets.set([tasklet("fz-tasklet", 0), tasklet("fz-tasklet-hi", 1)]);
    let devices = sh
        .prog
        .devices
        .iter()
        .enumerate()
        .map(|(d, spec)| {
            let s = sh.clone();
            let action = spec.action;
            Device::register_on(spec.cpu, &format!("fz-dev{d}"), move || {
                s.irqs[d].fetch_add(1, Ordering::AcqRel);
                match action {
                    IrqAction::Signal(e) => s.signal(e),
                    IrqAction::Softirq => s.raise_softirq(),
                    IrqAction::Tasklet { hi } => s.schedule_tasklet(hi),
                }
            })
        })
        .collect();
    *sh.devices.lock() = Some(Arc::new(devices));
    Ok(())
}

/// Waits (bounded) until every bottom half and immediate interrupt asked for has run, then
/// says what did not add up.
fn settle(sh: &Shared) -> Vec<String> {
    let deadline = kernel::time::now_ns() + SETTLE_NS;
    loop {
        let errors = end_check(sh);
        if errors.is_empty() || kernel::time::now_ns() > deadline {
            return errors;
        }
        kernel::time::sleep_ns(1_000_000);
    }
}

fn end_check(sh: &Shared) -> Vec<String> {
    let mut e = Vec::new();
    let st = softirq_stats();
    let v = FUZZ_SOFTIRQ;
    let (raised, runs, coalesced) = (st.raised[v], st.runs(v), st.coalesced[v]);
    let ours = sh.softirq_raises.load(Ordering::Acquire);
    let ran = sh.softirq_runs.load(Ordering::Acquire);
    if raised != ours || runs + coalesced != raised || ran != runs {
        e.push(format!(
            "softirq {v}: the program raised it {ours} times; the kernel counted {raised} raises, {coalesced} coalesced, {runs} runs; the action ran {ran} times (every raise that found the bit clear runs once)"
        ));
    }
    for (i, name) in ["tasklet", "hi tasklet"].iter().enumerate() {
        let (q, r) = (sh.tasklet_queued[i].load(Ordering::Acquire), sh.tasklet_runs[i].load(Ordering::Acquire));
        if q != r {
            e.push(format!("{name}: queued by {q} schedules, ran {r} times (once per schedule that queued it)"));
        }
    }
    for d in 0..sh.prog.devices.len() {
        let (raises, now, irqs) = (
            sh.raises[d].load(Ordering::Acquire),
            sh.immediate[d].load(Ordering::Acquire),
            sh.irqs[d].load(Ordering::Acquire),
        );
        if irqs > raises || (now > 0 && irqs == 0) {
            e.push(format!("device {d}: raised {raises} times ({now} at once), its handler ran {irqs} times"));
        }
    }
    e
}

/// A task's (or child's) operations; returns its result (see `program::expected`).
fn run_task(sh: &Arc<Shared>, index: Option<usize>, seed: u64, ops: &[Op], name: &str) -> i64 {
    let mut page = page_of(seed);
    let (mut acc, mut children, mut pending) = (seed, 0u64, Vec::<TaskHandle>::new());
    let refuse = |why: String| {
        if let Some(i) = index {
            let _ = sh.task_errors[i].set(why);
        }
        REFUSED
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Atoms { n, reps } => acc = syscall(|| atoms(&mut page, *n, *reps, acc)),
            Op::User { reps } => acc = atom(&mut page, *reps, acc),
            Op::Sleep { us } => kernel::time::sleep_ns(*us as u64 * 1000),
            Op::PreemptOff { n, reps } => {
                acc = syscall(|| {
                    let _off = kernel::preempt::preempt_disable();
                    atoms(&mut page, *n, *reps, acc)
                })
            }
            Op::IrqOff { n, reps } => {
                acc = syscall(|| {
                    let _off = kernel::preempt::local_irq_save();
                    atoms(&mut page, *n, *reps, acc)
                })
            }
            Op::BhOff { n, reps, raise } => {
                acc = syscall(|| {
                    let _off = kernel::softirq::local_bh_disable();
                    if *raise {
                        sh.raise_softirq();
                    }
                    atoms(&mut page, *n, *reps, acc)
                })
            }
            Op::Signal(e) => sh.signal(*e),
            Op::Wait(e) => sh.queues[*e].wait_event(|| sh.flags[*e].load(Ordering::Acquire)),
            Op::Softirq => sh.raise_softirq(),
            Op::Tasklet { hi } => sh.schedule_tasklet(*hi),
            Op::Irq(d) => {
                if let Some(devs) = sh.device(*d) {
                    sh.raises[*d].fetch_add(1, Ordering::AcqRel);
                    sh.immediate[*d].fetch_add(1, Ordering::AcqRel);
                    devs[*d].raise();
                }
            }
            Op::IrqAt { dev, us } => {
                if let Some(devs) = sh.device(*dev) {
                    sh.raises[*dev].fetch_add(1, Ordering::AcqRel);
                    devs[*dev].raise_at(kernel::time::now_ns() + *us as u64 * 1000);
                }
            }
            Op::Spawn { pol, ops } => {
                let (s, ops, child) = (sh.clone(), ops.clone(), format!("{name}.c{i}"));
                let cseed = child_seed(seed, i);
                let b = builder(&child, *pol);
                pending.push(spawn(b, move || run_task(&s, None, cseed, &ops, &child)));
            }
            Op::Join => children = fold_children(children, pending.drain(..).map(|h| h.join().unwrap_or(REFUSED))),
            Op::Affinity { task, mask } => {
                let pid = sh.pids[*task].load(Ordering::Acquire);
                if pid != NO_PID {
                    if let Err(e) = kernel::set_cpus_allowed(pid, *mask) {
                        return refuse(e);
                    }
                }
            }
            Op::Model(m) => {
                if let Err(e) = kernel::set_preempt_model(*m) {
                    return refuse(format!("set_preempt_model({m}): {e}"));
                }
            }
            Op::Yield => kernel::sched_yield(),
            Op::AtomicSleep => syscall(|| {
                let _off = kernel::preempt::preempt_disable();
                kernel::time::sleep_ns(50_000);
            }),
        }
    }
    children = fold_children(children, pending.drain(..).map(|h| h.join().unwrap_or(REFUSED)));
    result_of(acc, children)
}

/// `n` atoms of `reps` checksums, a preemption point between two atoms.
fn atoms(page: &mut [u8; services::atoms::PAGE], n: u8, reps: u8, acc: u64) -> u64 {
    let mut acc = acc;
    for j in 0..n {
        if j > 0 {
            kernel::preempt_point!();
        }
        acc = atom(page, reps, acc);
    }
    acc
}
