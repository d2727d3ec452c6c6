//! The 1996 scenario: a normal task's system call of several atoms; a device interrupt during
//! atom 1 makes an RT task runnable; where does the RT task get the CPU?
//!
//! ```text
//! [atom 1] <---- here a RT process gets runnable due to an ISR
//! [atom 2]
//! [atom 3]
//! [atom 4]
//! [atom 5]
//! ret_from_syscall, reschedule <---- the RT process gets scheduled   (preempt=none)
//! ```
//!
//! **Mechanism.** An RT task (SCHED_FIFO 50) sleeps on a wait queue. A normal task enters a
//! system call of `atoms` atoms; at the start of atom 1 it arms the device, whose host thread
//! raises the interrupt `irq_at_us` later, in the middle of atom 1 (atom 1 goes on at least
//! until the interrupt has been taken, so it always lands there). The handler records the
//! time and the atom, and wakes the RT task, which records which atoms had completed when it
//! ran and how long after the interrupt.
//!
//! **Invariant.** Everything reported is observed, not assumed: the atom the interrupt hit is
//! read in the handler, the atoms completed are read by the RT task when it runs.

use crate::atoms::{run_atom, PAGE};
use kernel::config::WatchdogConfig;
use kernel::device::Device;
use kernel::model::patch::PatchStatsSnapshot;
use kernel::{spawn, syscall, BootError, Config, PreemptModel, RunReport, TaskBuilder, WaitQueue};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// What an atom's work is, and so where in the code the interrupt lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AtomKind {
    /// Checksums, in the function that holds the points (the seed's case).
    Checksum,
    /// Checksums in a callee that has no points of its own.
    Callee,
    /// `memset` of a buffer, in libc (foreign code).
    Libc,
    /// Checksums inside a `preempt_disable` section that ends before the point.
    PreemptOff,
    /// Two halves with a point after each: the interrupt lands between two points of a loop.
    TwoPoints,
    /// Checksums in a callee without points that returns with IRQs masked (as an out-of-line
    /// `local_irq_save()` does); the caller unmasks them before the point.
    IrqOff,
}

impl AtomKind {
    /// Every kind, in report order.
    pub const ALL: [AtomKind; 6] = [
        AtomKind::Checksum,
        AtomKind::Callee,
        AtomKind::Libc,
        AtomKind::PreemptOff,
        AtomKind::TwoPoints,
        AtomKind::IrqOff,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AtomKind::Checksum => "checksum",
            AtomKind::Callee => "callee",
            AtomKind::Libc => "libc",
            AtomKind::PreemptOff => "preempt-off",
            AtomKind::TwoPoints => "two-points",
            AtomKind::IrqOff => "irq-off",
        }
    }

    /// Parses a name, or says which names exist.
    pub fn parse(s: &str) -> Result<AtomKind, String> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!("unknown atom kind '{s}': choose one of {}", names.join(", "))
        })
    }
}

/// The scenario's shape.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// What each atom does.
    pub kind: AtomKind,
    /// Atoms in the system call.
    pub atoms: usize,
    /// Length of each atom in microseconds.
    pub atom_us: u64,
    /// When the device interrupt comes, in microseconds after atom 1 begins.
    pub irq_at_us: u64,
    /// Switch the kernel to this model while the system call runs (at the start of atom 1,
    /// before the interrupt), with `kernel::set_preempt_model`.
    pub switch_to: Option<PreemptModel>,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig { kind: AtomKind::Checksum, atoms: 5, atom_us: 1000, irq_at_us: 200, switch_to: None }
    }
}

impl ScenarioConfig {
    /// Rejects shapes the scenario cannot run: the error starts with `field=value` (the field
    /// of this struct), then says what to use.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.atoms) {
            return Err(format!("atoms={}: use 1..=64 atoms", self.atoms));
        }
        if !(10..=1_000_000).contains(&self.atom_us) {
            return Err(format!("atom_us={}: use 10..=1000000 microseconds", self.atom_us));
        }
        if self.irq_at_us >= self.atom_us {
            return Err(format!(
                "irq_at_us={} must fall inside atom 1, which lasts {} us (atom_us={}): make the interrupt come earlier or the atoms longer",
                self.irq_at_us, self.atom_us, self.atom_us
            ));
        }
        Ok(())
    }

    /// The longest the scenario keeps a CPU in its one system call, in nanoseconds: every atom,
    /// and atom 1's grace after the interrupt. Under `preempt=none` no point is an opportunity
    /// to reschedule, so this is also the longest the CPU passes none, and the longest the RT
    /// task waits once woken.
    pub fn syscall_ns(&self) -> u64 {
        (self.atoms as u64).saturating_mul(self.atom_us.saturating_mul(1000)).saturating_add(IRQ_GRACE_NS)
    }

    /// The detectors for this scenario: the lab's ([`WatchdogConfig::DEFAULTS`]), each
    /// threshold raised by the system call's length ([`Self::syscall_ns`]). The work asked for
    /// (an 11 s system call under `none` is the seed's diagram, not a lockup) never reads as a
    /// soft lockup or a hung task, and a real hang still ends the run, at most that much later.
    pub fn watchdog(&self) -> WatchdogConfig {
        let d = WatchdogConfig::DEFAULTS;
        let work_ms = self.syscall_ns().div_ceil(1_000_000);
        WatchdogConfig {
            softlockup_thresh_ms: d.softlockup_thresh_ms + work_ms,
            hung_task_timeout_ms: d.hung_task_timeout_ms + work_ms,
            ..d
        }
    }
}

/// How long atom 1 goes on after the interrupt has been taken (see `worker`).
const IRQ_GRACE_NS: u64 = 500_000;

/// One line of the timeline.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since the system call began.
    pub t_ns: u64,
    /// Who: `worker`, `irq` or `rt`.
    pub who: &'static str,
    /// The CPU it happened on.
    pub cpu: usize,
    /// What happened.
    pub what: String,
}

/// What one run of the scenario observed.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The preemption model.
    pub model: String,
    /// CPUs of the instance.
    pub cpus: usize,
    /// The CPU the device interrupt arrived on.
    pub irq_cpu: usize,
    /// The CPU the RT task ran on.
    pub rt_cpu: usize,
    /// The CPU the worker's system call ran on.
    pub worker_cpu: usize,
    /// Atoms in the system call.
    pub atoms: usize,
    /// Length of each atom in microseconds.
    pub atom_us: u64,
    /// The atom the device interrupt landed in (1-based).
    pub irq_during_atom: usize,
    /// When the interrupt came, in ns after atom 1 began (asked: `irq_at_us`).
    pub irq_at_ns: u64,
    /// How much later than asked the host delivered it, in ns.
    pub irq_late_ns: u64,
    /// The host took the worker's CPU (its thread) away between atom 1's start and the RT
    /// task running: the run's wait holds the host's time too (`kernel::time::cpu_stolen`).
    pub host_held: bool,
    /// Atoms completed when the RT task ran (0: it ran before atom 1 ended).
    pub rt_ran_after_atom: usize,
    /// Nanoseconds from the interrupt (the wakeup) to the RT task running.
    pub rt_wait_ns: u64,
    /// Nanoseconds from the end of the atom the RT task ran after (the worker reaching its
    /// preemption point) to the RT task running: what serving the point costs under the model
    /// (`None` if it ran before atom 1 ended).
    pub point_to_rt_ns: Option<u64>,
    /// What the atoms did.
    pub kind: AtomKind,
    /// Preemption points the worker had reached when the interrupt came.
    pub irq_points: usize,
    /// Preemption points the worker had reached when the RT task ran: `irq_points + 1` means
    /// it ran at the first point after the interrupt.
    pub rt_points: usize,
    /// Sites not in their idle form when the RT task ran (read from the code bytes).
    pub sites_armed_at_rt: usize,
    /// What the patch models did in this run (zero under the other models).
    pub patch: PatchStatsSnapshot,
    /// The point table the patch models read (`ptable=`).
    pub ptable: &'static str,
    /// Where the patch models serve an event whose interrupted function reaches no point
    /// (`patch_leaf=`).
    pub patch_leaf: &'static str,
    /// How the patch models' patches synchronise the other CPUs (`patch_sync=`).
    pub patch_sync: &'static str,
    /// Patch models: sites armed per RT event (`patch.sites_armed / patch.events`).
    pub sites_armed_per_event: Option<f64>,
    /// Patch models: the interrupt exit's arming time per RT event, in ns
    /// (`patch.arm_ns / patch.events`).
    pub handler_ns_per_event: Option<u64>,
    /// Pages checksummed (or buffers set) by all atoms together.
    pub pages: u64,
    /// Per CPU, what the patch models' armed sites cost the CPUs that did not arm them.
    pub collateral: Vec<CpuCollateral>,
    /// The timeline, in order.
    pub timeline: Vec<Event>,
}

/// One CPU's collateral hits: armed sites it met with no patch event of its own.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuCollateral {
    /// The CPU.
    pub cpu: usize,
    /// Armed `int3`s it stepped over.
    pub int3: u64,
    /// Armed `call`s of `rt_reschedule` it went through.
    pub calls: u64,
    /// Time measured inside the hooks of those hits, in ns.
    pub ns: u64,
}

/// Times recorded by the three actors, all as absolute monotonic ns (0 = not yet).
struct Marks {
    points: AtomicUsize,
    irq_points: AtomicUsize,
    rt_points: AtomicUsize,
    armed_at_rt: AtomicUsize,
    current_atom: AtomicUsize,
    atoms_done: AtomicUsize,
    irq_atom: AtomicUsize,
    irq_ns: AtomicU64,
    rt_ns: AtomicU64,
    rt_after: AtomicUsize,
    begin: Vec<AtomicU64>,
    end: Vec<AtomicU64>,
    syscall: [AtomicU64; 2],
    switched_ns: AtomicU64,
    irq_cpu: AtomicUsize,
    rt_cpu: AtomicUsize,
    worker_cpu: AtomicUsize,
    /// `kernel::time::cpu_stolen` on the worker's CPU when atom 1 began, and when the RT task
    /// (bound to the same CPU) ran.
    stolen: [AtomicU64; 2],
}

impl Marks {
    fn new(atoms: usize) -> Marks {
        let z = || AtomicU64::new(0);
        Marks {
            points: AtomicUsize::new(0),
            irq_points: AtomicUsize::new(0),
            rt_points: AtomicUsize::new(0),
            armed_at_rt: AtomicUsize::new(0),
            current_atom: AtomicUsize::new(0),
            atoms_done: AtomicUsize::new(0),
            irq_atom: AtomicUsize::new(0),
            irq_ns: z(),
            rt_ns: z(),
            rt_after: AtomicUsize::new(0),
            begin: (0..=atoms).map(|_| z()).collect(),
            end: (0..=atoms).map(|_| z()).collect(),
            syscall: [z(), z()],
            switched_ns: z(),
            irq_cpu: AtomicUsize::new(0),
            rt_cpu: AtomicUsize::new(0),
            worker_cpu: AtomicUsize::new(0),
            stolen: [z(), z()],
        }
    }
}

/// Runs the scenario once under `model` on a fresh kernel instance, with the detectors set for
/// its length ([`ScenarioConfig::watchdog`]).
pub fn run(model: PreemptModel, sc: &ScenarioConfig) -> Result<ScenarioResult, BootError> {
    run_with(Config { preempt: model, watchdog: sc.watchdog(), ..Config::default() }, sc)
}

/// Runs the scenario once on a fresh kernel instance booted with `config`.
pub fn run_with(config: Config, sc: &ScenarioConfig) -> Result<ScenarioResult, BootError> {
    run_report(config, sc).map(|(r, _)| r)
}

/// [`run_with`], also handing back the kernel's [`RunReport`] (with its trace, if `config`
/// asked for one).
pub fn run_report(config: Config, sc: &ScenarioConfig) -> Result<(ScenarioResult, RunReport), BootError> {
    sc.validate().map_err(|e| BootError::Config(kernel::ConfigError(e)))?;
    let (model, ptable, patch_sync, patch_leaf) = (config.preempt, config.ptable, config.patch_sync, config.patch_leaf);
    let shown = match sc.switch_to {
        Some(to) => format!("{model}->{to}"),
        None => model.name().to_string(),
    };
    let marks = Arc::new(Marks::new(sc.atoms));
    let (m, shape) = (marks.clone(), sc.clone());
    let cpus = config.cpus;
    let report = kernel::run(config, move || scenario_init(m, shape, cpus))?;
    if let Err(e) = &report.init {
        return Err(BootError::Host(format!("the scenario failed inside the kernel: {e}")));
    }
    let pages = report.init.clone().unwrap_or(0) as u64;
    let mut r = result(&shown, sc, &marks, pages, cpus);
    r.patch = report.patch;
    r.ptable = ptable.name();
    r.patch_leaf = patch_leaf.name();
    r.patch_sync = patch_sync.name();
    let events = r.patch.events;
    r.sites_armed_per_event = (events > 0).then(|| r.patch.sites_armed as f64 / events as f64);
    r.handler_ns_per_event = (events > 0).then(|| r.patch.arm_ns / events);
    r.collateral = report
        .cpus
        .iter()
        .enumerate()
        .map(|(cpu, c)| CpuCollateral { cpu, int3: c.collateral_int3, calls: c.collateral_calls, ns: c.collateral_ns })
        .collect();
    Ok((r, report))
}

/// On one CPU everything happens on CPU 0. On several, the interrupt arrives on CPU 0 and the
/// worker and the RT task are bound to CPU 1: the wakeup crosses CPUs, and CPU 1's model decides
/// where the RT task gets it.
fn scenario_init(m: Arc<Marks>, sc: ScenarioConfig, cpus: usize) -> i64 {
    let (irq_cpu, task_cpus) = if cpus > 1 { (0, 1u64 << 1) } else { (0, 1) };
    let wq = Arc::new(WaitQueue::new());
    let (m1, w1) = (m.clone(), wq.clone());
    let dev = Arc::new(Device::register_on(irq_cpu, "isr", move || {
        m1.irq_cpu.store(kernel::raw_smp_processor_id(), Ordering::Release);
        m1.irq_ns.store(kernel::time::now_ns(), Ordering::Release);
        m1.irq_atom.store(m1.current_atom.load(Ordering::Acquire), Ordering::Release);
        m1.irq_points.store(m1.points.load(Ordering::Acquire), Ordering::Release);
        w1.wake_up();
    }));
    let (m2, w2) = (m.clone(), wq.clone());
    let rt = spawn(TaskBuilder::new("rt").fifo(50).cpus(task_cpus), move || {
        w2.wait_event(|| m2.irq_ns.load(Ordering::Acquire) != 0);
        m2.rt_ns.store(kernel::time::now_ns(), Ordering::Release);
        m2.stolen[1].store(kernel::time::cpu_stolen(), Ordering::Release);
        m2.rt_cpu.store(kernel::raw_smp_processor_id(), Ordering::Release);
        m2.rt_after.store(m2.atoms_done.load(Ordering::Acquire), Ordering::Release);
        m2.rt_points.store(m2.points.load(Ordering::Acquire), Ordering::Release);
        m2.armed_at_rt.store(kernel::model::patch::sites_not_idle(), Ordering::Release);
        0
    });
    let (m3, d3) = (m.clone(), dev.clone());
    let worker = spawn(TaskBuilder::new("worker").cpus(task_cpus), move || worker(&m3, &d3, &sc) as i64);
    rt.join().ok();
    let pages = worker.join().unwrap_or(0);
    drop(dev);
    pages
}

/// The normal task: one system call of `atoms` atoms.
fn worker(marks: &Marks, dev: &Device, sc: &ScenarioConfig) -> u64 {
    let m = marks;
    let page = [0x5au8; PAGE];
    syscall(|| {
        m.syscall[0].store(kernel::time::now_ns(), Ordering::Release);
        m.worker_cpu.store(kernel::raw_smp_processor_id(), Ordering::Release);
        let mut pages = 0;
        for atom in 1..=sc.atoms {
            let start = kernel::time::now_ns();
            m.current_atom.store(atom, Ordering::Release);
            m.begin[atom].store(start, Ordering::Release);
            if atom == 1 {
                m.stolen[0].store(kernel::time::cpu_stolen(), Ordering::Release);
                if let Some(m) = sc.switch_to {
                    kernel::set_preempt_model(m).expect("switch_to is validated before boot");
                    marks.switched_ns.store(kernel::time::now_ns(), Ordering::Release);
                }
                dev.raise_at(start + sc.irq_at_us * 1000);
            }
            let end = start + sc.atom_us * 1000;
            // Never spin forever if the device is lost.
            let give_up = start + 1_000_000_000;
            // Atom 1 lasts until the interrupt has been taken and, after it, long enough for a
            // model that preempts at interrupt exit to have done so even if the interrupt found
            // foreign code (the vDSO's clock) and had to retry: so a late interrupt on a busy
            // host still lands well inside atom 1.
            let until = |end: u64| {
                let now = kernel::time::now_ns();
                let irq = m.irq_ns.load(Ordering::Acquire);
                let irq_taken = atom != 1 || (irq != 0 && now >= irq + IRQ_GRACE_NS);
                (now >= end && irq_taken) || now >= give_up
            };
            pages += match sc.kind {
                AtomKind::TwoPoints => {
                    // An interrupt asked for in the first half lands in it however late the
                    // host delivers it: that half then lasts until it has been taken.
                    let mid = start + sc.atom_us * 500;
                    let irq_in_first_half = sc.irq_at_us * 2 < sc.atom_us;
                    let first =
                        run_atom(&page, || if irq_in_first_half { until(mid) } else { kernel::time::now_ns() >= mid });
                    m.points.fetch_add(1, Ordering::AcqRel);
                    kernel::preempt_point!();
                    first + run_atom(&page, || until(end))
                }
                kind => atom_body(kind, &page, &|| until(end)),
            };
            m.end[atom].store(kernel::time::now_ns(), Ordering::Release);
            m.atoms_done.store(atom, Ordering::Release);
            m.points.fetch_add(1, Ordering::AcqRel);
            kernel::preempt_point!();
        }
        m.syscall[1].store(kernel::time::now_ns(), Ordering::Release);
        pages
    })
}

/// One atom's work of `kind` (not `TwoPoints`, whose points are the worker's own).
fn atom_body(kind: AtomKind, page: &[u8], until: &dyn Fn() -> bool) -> u64 {
    match kind {
        AtomKind::Callee => callee_atom(page, until),
        AtomKind::Libc => libc_atom(until),
        AtomKind::PreemptOff => {
            let _off = kernel::preempt::preempt_disable();
            run_atom(page, until)
        }
        AtomKind::IrqOff => {
            let (pages, irqs_off) = irq_off_callee_atom(page, until);
            drop(irqs_off); // IRQs back on before the atom's point
            pages
        }
        _ => run_atom(page, until),
    }
}

/// Sums `page` as 16-bit words over and over until `until()` (at most
/// [`crate::atoms::MAX_PAGES_PER_ATOM`] times), in a function of its own with no preemption
/// point and no call but `until`, then returns with IRQs masked: an interrupt in it is one
/// whose function returns into an IRQ-off section.
#[inline(never)]
fn irq_off_callee_atom(page: &[u8], until: &dyn Fn() -> bool) -> (u64, kernel::preempt::IrqGuard) {
    let (mut pages, mut acc) = (0u64, 0u32);
    while pages < crate::atoms::MAX_PAGES_PER_ATOM && !until() {
        for w in std::hint::black_box(page).chunks_exact(2) {
            acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
        }
        pages += 1;
    }
    std::hint::black_box(acc);
    (pages, kernel::preempt::local_irq_save())
}

/// Checksums in a function of its own with no preemption point.
#[inline(never)]
fn callee_atom(page: &[u8], until: &dyn Fn() -> bool) -> u64 {
    run_atom(std::hint::black_box(page), until)
}

/// Sets a 1 MiB buffer over and over: the time goes to libc's `memset`. The buffer is
/// allocated before the atom starts (the allocator runs with preemption disabled). At most
/// `MAX_PAGES_PER_ATOM / 256` buffers (as many bytes as `run_atom`'s bound): a counted loop.
fn libc_atom(until: &dyn Fn() -> bool) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while n < crate::atoms::MAX_PAGES_PER_ATOM / 256 && !until() {
        buf.fill(std::hint::black_box(n as u8));
        std::hint::black_box(&mut buf);
        n += 1;
    }
    n
}

fn result(model: &str, sc: &ScenarioConfig, m: &Marks, pages: u64, cpus: usize) -> ScenarioResult {
    let t0 = m.syscall[0].load(Ordering::Acquire);
    let at = |a: &AtomicU64| a.load(Ordering::Acquire).saturating_sub(t0);
    let (irq_atom, rt_after) = (m.irq_atom.load(Ordering::Acquire), m.rt_after.load(Ordering::Acquire));
    let cpu = |c: &AtomicUsize| c.load(Ordering::Acquire);
    let (irq_cpu, rt_cpu, worker_cpu) = (cpu(&m.irq_cpu), cpu(&m.rt_cpu), cpu(&m.worker_cpu));
    let w = |t_ns, what: String| Event { t_ns, who: "worker", cpu: worker_cpu, what };
    let mut tl = vec![w(0, "syscall entry: kernel mode".into())];
    for atom in 1..=sc.atoms {
        tl.push(w(at(&m.begin[atom]), format!("atom {atom} begins")));
        tl.push(w(at(&m.end[atom]), format!("atom {atom} ends: preemption point")));
    }
    tl.push(w(at(&m.syscall[1]), "ret_from_syscall".into()));
    if let Some(to) = sc.switch_to {
        tl.push(w(at(&m.switched_ns), format!("preemption model switched to {to}")));
    }
    let on = if irq_cpu == rt_cpu { String::new() } else { format!(" on CPU {rt_cpu}") };
    tl.push(Event {
        t_ns: at(&m.irq_ns),
        who: "irq",
        cpu: irq_cpu,
        what: format!("device interrupt during atom {irq_atom}: wakes rt (SCHED_FIFO 50){on}"),
    });
    let rt_wait_ns = m.rt_ns.load(Ordering::Acquire).saturating_sub(m.irq_ns.load(Ordering::Acquire));
    let irq_at_ns = m.irq_ns.load(Ordering::Acquire).saturating_sub(m.begin[1].load(Ordering::Acquire));
    tl.push(Event {
        t_ns: at(&m.rt_ns),
        who: "rt",
        cpu: rt_cpu,
        what: format!(
            "runs {}, {:.3} ms after its wakeup",
            ran_at(rt_after, irq_atom, sc.atoms),
            rt_wait_ns as f64 / 1e6
        ),
    });
    tl.sort_by_key(|e| e.t_ns);
    let point_to_rt_ns = (rt_after >= 1 && rt_after <= sc.atoms)
        .then(|| m.rt_ns.load(Ordering::Acquire).saturating_sub(m.end[rt_after].load(Ordering::Acquire)));
    ScenarioResult {
        model: model.into(),
        cpus,
        irq_cpu,
        rt_cpu,
        worker_cpu,
        atoms: sc.atoms,
        atom_us: sc.atom_us,
        irq_during_atom: irq_atom,
        irq_at_ns,
        irq_late_ns: irq_at_ns.saturating_sub(sc.irq_at_us * 1000),
        host_held: m.stolen[0].load(Ordering::Acquire) != m.stolen[1].load(Ordering::Acquire),
        rt_ran_after_atom: rt_after,
        rt_wait_ns,
        point_to_rt_ns,
        kind: sc.kind,
        irq_points: m.irq_points.load(Ordering::Acquire),
        rt_points: m.rt_points.load(Ordering::Acquire),
        sites_armed_at_rt: m.armed_at_rt.load(Ordering::Acquire),
        patch: PatchStatsSnapshot::default(),
        ptable: kernel::PtableMode::Exact.name(),
        patch_leaf: kernel::PatchLeaf::Walk.name(),
        patch_sync: kernel::PatchSync::None.name(),
        sites_armed_per_event: None,
        handler_ns_per_event: None,
        pages,
        collateral: Vec::new(),
        timeline: tl,
    }
}

/// Where the RT task ran in the worker's system call: `inside atom 1` (before the atom the
/// interrupt came in ended), `after atom 2`, `after the system call`.
pub fn ran_at(rt_after: usize, irq_atom: usize, atoms: usize) -> String {
    match rt_after {
        0 => format!("inside atom {}", irq_atom.max(1)),
        a if a >= atoms => "after the system call".into(),
        a => format!("after atom {a}"),
    }
}

impl ScenarioResult {
    /// [`ran_at`] of this run.
    pub fn rt_ran(&self) -> String {
        ran_at(self.rt_ran_after_atom, self.irq_during_atom, self.atoms)
    }
}

/// The timeline as text for a terminal.
pub fn render(r: &ScenarioResult) -> String {
    let mut s = format!(
        "preempt={}{}: {} atoms of {} us; device IRQ during atom {}; RT task ran {}, waited {:.3} ms{}\n",
        r.model,
        if r.cpus > 1 { format!(", {} CPUs", r.cpus) } else { String::new() },
        r.atoms,
        r.atom_us,
        r.irq_during_atom,
        r.rt_ran(),
        r.rt_wait_ns as f64 / 1e6,
        if r.host_held { " (the host held the CPU meanwhile)" } else { "" }
    );
    for e in &r.timeline {
        let cpu = if r.cpus > 1 { format!("CPU {}  ", e.cpu) } else { String::new() };
        s += &format!("  {:>9.3} ms  {cpu}{:<6}  {}\n", e.t_ns as f64 / 1e6, e.who, e.what);
    }
    s
}
