//! The static latency bound checked against every sample (`image.run=bound-check`): for each
//! device interrupt landing at a pseudo-random instruction of a workload, the instructions the
//! interrupted code ran until the point that served the RT task must not exceed
//! `codeflow`'s bound from the interrupted RIP (its longest point-free stretch, callees
//! included: `Analysis::bound_from`).
//!
//! **Mechanism.** Under `preempt=patch-call` or `patch-int3`, on one CPU, per workload: a
//! SCHED_NORMAL worker makes system calls of the workload's atoms (`services::workloads`, or
//! the image's own [`DIRECT_HOG`] and [`BROKEN_HOG`]), and an RT task (SCHED_FIFO [`RT_PRIO`]) arms a device
//! (the HPET through the IOAPIC) at `now + MIN_AHEAD_NS + xorshift % span` (`image.seed=`,
//! `image.span_us=`) and sleeps on a wait queue. The device's handler, in the interrupt,
//! copies the arch's record of the depth-0 external interrupt it runs in
//! (`arch_metal::account::irq`: entry TSC, interrupted RIP, the interrupts' cycles and count
//! so far) and wakes the RT task; the patch model arms the points, the worker reaches one,
//! whose mechanism stamps it (`arch_metal::account::point`: TSC, kind, the sums) before the
//! core switches. The RT task reads the stamp first thing: when it is newer than the
//! interrupt, `arch_metal::account::interrupted_insns` is the interrupted code's own
//! instructions (the TSC between them less every interrupt's cycles and gate and the point
//! mechanism's instructions: exact under `-icount shift=0`, where the TSC counts
//! instructions). A sample whose stamp is older (served at the interrupt's return, or the RT
//! task was still running) is counted as `no_point`; one whose handler ran nested is
//! `nested`. After every workload ran, the image analyses its own text
//! (`kernel::model::patch::exact::analyze`, as the patch models do at boot) and bounds each
//! sample's RIP: one `bound_check` line per workload and one `bound_violation` line per
//! sample measured above its bound (the first [`VIOLATIONS_PRINTED`] of each workload).
//! `image.run=bound-calibrate` checks the gate constant instead ([`calibrate`]).
//!
//! **Invariant.** The init returns the violations plus the workloads that failed (a task that
//! did not finish, no sample served by a point, an accounting that went negative): the run
//! is `SUCCESS` only if every sample is within its static bound.

use crate::scenarios::escape;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch_metal::account::{self, Irq, Kind};
use arch_metal::kprintln;
use codeflow::{Bound, Bounds, ExactTable, Lookup};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use kernel::device::Device;
use kernel::{BhMode, PatchLeaf, PreemptModel, TaskBuilder, WaitQueue};
use services::workloads::{self, Workload};

/// The RT task's SCHED_FIFO priority.
const RT_PRIO: u8 = 90;
/// The deliberately broken workload's name (never in the default set).
pub(crate) const BROKEN_HOG: &str = "broken-hog";
/// The index standing for [`BROKEN_HOG`] among the chosen workloads.
const BROKEN_INDEX: u8 = u8::MAX;
/// Its control, the same atoms and points without the bug (never in the default set).
pub(crate) const DIRECT_HOG: &str = "direct-hog";
const DIRECT_INDEX: u8 = u8::MAX - 1;
/// Samples per workload unless `image.samples=` says, and the most.
const SAMPLES_DEFAULT: u64 = 100;
const SAMPLES_MAX: u64 = 10_000;
/// The deadlines' spread unless `image.span_us=` says, and the range.
const SPAN_US_DEFAULT: u64 = 100;
const SPAN_US_RANGE: (u64, u64) = (1, 100_000);
/// The least a deadline is ahead of the arming (the RT task asleep by then).
const MIN_AHEAD_NS: u64 = 20_000;
/// Violation lines printed per workload (all are counted).
const VIOLATIONS_PRINTED: usize = 16;
/// The callers' return addresses a sample keeps.
const RETURNS: usize = 16;
/// The most workloads one boot runs.
const MAX_WORKLOADS: usize = 8;

static SAMPLES: AtomicU64 = AtomicU64::new(SAMPLES_DEFAULT);
static SPAN_NS: AtomicU64 = AtomicU64::new(SPAN_US_DEFAULT * 1000);
static SEED: AtomicU64 = AtomicU64::new(1);
static CHOSEN: [AtomicU8; MAX_WORKLOADS] = [const { AtomicU8::new(0) }; MAX_WORKLOADS];
static CHOSEN_N: AtomicUsize = AtomicUsize::new(0);

/// Reads and checks `image.workloads`, `image.samples`, `image.seed`, `image.span_us` and the
/// model and CPUs of the core's parsed `config` (a bad one ends the boot with a `boot_error`
/// line naming it, before any task runs).
pub(crate) fn configure(cmdline: &str, config: &kernel::Config) {
    crate::options::or_refuse(parse(cmdline, config));
}

fn parse(cmdline: &str, config: &kernel::Config) -> Result<(), String> {
    let opt = |k: &'static str| arch_metal::boot::cmdline_value(cmdline, k);
    let num = |k: &'static str, lo: u64, hi: u64, default: u64| crate::options::number(cmdline, k, lo, hi, default);
    let samples = num("image.samples", 1, SAMPLES_MAX, SAMPLES_DEFAULT)?;
    let span_us = num("image.span_us", SPAN_US_RANGE.0, SPAN_US_RANGE.1, SPAN_US_DEFAULT)?;
    let seed = num("image.seed", 1, u64::MAX, 1)?;
    let chosen: Vec<u8> = match opt("image.workloads") {
        None => Workload::all().iter().map(|w| w.index as u8).collect(),
        Some(list) => list
            .split(',')
            .map(|n| match n {
                BROKEN_HOG => Ok(BROKEN_INDEX),
                DIRECT_HOG => Ok(DIRECT_INDEX),
                _ => Workload::named(n).map(|w| w.index as u8),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("image.workloads={list}: {e} (or the image's {DIRECT_HOG}, {BROKEN_HOG})"))?,
    };
    if chosen.is_empty() || chosen.len() > MAX_WORKLOADS {
        return Err(format!("image.workloads: name 1..={MAX_WORKLOADS} workloads"));
    }
    if !matches!(config.preempt, PreemptModel::PatchCall | PreemptModel::PatchInt3) {
        return Err(format!(
            "image.run=bound-check: preempt={}: use preempt=patch-call or preempt=patch-int3 (the points that serve are stamped there)",
            config.preempt.name()
        ));
    }
    if config.cpus != 1 {
        return Err(format!("image.run=bound-check: cpus={}: use cpus=1", config.cpus));
    }
    SAMPLES.store(samples, Ordering::Relaxed);
    SPAN_NS.store(span_us * 1000, Ordering::Relaxed);
    SEED.store(seed, Ordering::Relaxed);
    for (slot, &w) in CHOSEN.iter().zip(&chosen) {
        slot.store(w, Ordering::Relaxed);
    }
    CHOSEN_N.store(chosen.len(), Ordering::Relaxed);
    Ok(())
}

/// One sample served by a point: the interrupted RIP, the interrupted code's instructions
/// until the point, and the point's kind.
#[derive(Clone, Copy)]
struct Sample {
    rip: u64,
    /// The interrupted `rcx`: the iterations left when the interrupt landed on a `rep`.
    rcx: u64,
    /// The return addresses of the interrupted code's callers, innermost first.
    returns: [u64; RETURNS],
    n_returns: usize,
    measured: u64,
    kind: Kind,
}

/// One workload's samples and the ones that could not be measured.
#[derive(Default)]
struct Taken {
    samples: Vec<Sample>,
    /// Interrupts whose RT task was served other than by a point after them.
    no_point: u64,
    /// Handlers that ran inside another external interrupt.
    nested: u64,
    /// Accountings that came out negative (a bug of the accounting).
    negative: u64,
}

/// What the handler and the RT task share.
struct Shared {
    wq: WaitQueue,
    fired: AtomicBool,
    stop: AtomicBool,
    /// The handler's record of its interrupt (`None` until the first).
    record: kernel::sync::IrqSpinLock<Option<Record>>,
    /// The RT task's samples, left for the init.
    taken: kernel::sync::IrqSpinLock<Option<Taken>>,
}

/// What the handler saw: the arch's record of the depth-0 interrupt it ran in, and the
/// interrupted RIP with its callers' return addresses (the unwinder's), how many.
#[derive(Clone, Copy)]
struct Record {
    irq: Irq,
    chain: [usize; RETURNS + 1],
    n: usize,
}

impl Record {
    /// The handler ran in the device's own interrupt, not nested in another.
    fn alone(&self) -> bool {
        self.irq.depth == 1 && self.irq.vector == u64::from(arch_metal::hpet::VECTOR_DEVICE)
    }

    /// A sample of this interrupt.
    fn sample(&self, measured: u64, kind: Kind) -> Sample {
        let mut returns = [0; RETURNS];
        let n = self.n.saturating_sub(1);
        for (r, &a) in returns.iter_mut().zip(&self.chain[1..=n]) {
            *r = a as u64;
        }
        Sample { rip: self.irq.rip, rcx: self.irq.rcx, returns, n_returns: n, measured, kind }
    }
}

/// The device's handler: the interrupt's record, then the RT task's wake-up.
fn handler(s: &Shared) {
    let irq = account::irq();
    let mut chain = [0usize; RETURNS + 1];
    let n = account::irq_chain(&irq, &mut chain);
    *s.record.lock() = Some(Record { irq, chain, n });
    s.fired.store(true, Ordering::Release);
    s.wq.wake_up();
}

/// The init (see the module's description): every workload, then the check.
pub(crate) fn init(model: PreemptModel, _bh: BhMode) -> i64 {
    let mut runs: Vec<(&'static str, Taken, bool)> = Vec::new();
    for (i, slot) in CHOSEN[..CHOSEN_N.load(Ordering::Relaxed)].iter().enumerate() {
        let index = slot.load(Ordering::Relaxed);
        let name = match index {
            BROKEN_INDEX => BROKEN_HOG,
            DIRECT_INDEX => DIRECT_HOG,
            _ => Workload::all()[usize::from(index)].name(),
        };
        let seed = SEED.load(Ordering::Relaxed).wrapping_add(i as u64 * 0x9e37_79b9_7f4a_7c15) | 1;
        let (taken, ok) = run_workload(index, seed);
        runs.push((name, taken, ok));
    }
    let analysis = match kernel::model::patch::exact::analyze() {
        Ok(a) => a,
        Err(e) => {
            kprintln!("{{\"bug\":\"bound-check: the analysis of the image's text: {}\"}}", escape(&e));
            return 1;
        }
    };
    let memo = analysis.bounds();
    let built;
    let table = match kernel::model::patch::exact::get() {
        Some(x) => &x.table,
        None => {
            built = ExactTable::build(&analysis);
            &built
        }
    };
    let mut failed = 0;
    // `patch_leaf=return`: a frame reaching no point is served at its return (the chain's
    // bound stops there)
    let leaf_returns = kernel::model::patch::patch_leaf() == PatchLeaf::Return;
    for (name, taken, ok) in &runs {
        let rip_known = taken.samples.iter().filter(|s| matches!(memo.from(s.rip), Bound::Known(_))).count();
        failed += report(model, name, taken, rip_known, |s| chain_bound(&memo, table, s, leaf_returns));
        failed += i64::from(!ok || taken.samples.is_empty() || taken.negative > 0);
    }
    failed
}

/// Runs one workload (its worker and the RT task); its samples and whether both tasks finished.
fn run_workload(index: u8, seed: u64) -> (Taken, bool) {
    let shared = Arc::new(Shared {
        wq: WaitQueue::new(),
        fired: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        record: kernel::sync::IrqSpinLock::new(None),
        taken: kernel::sync::IrqSpinLock::new(None),
    });
    let s = shared.clone();
    let worker = kernel::spawn(TaskBuilder::new("bound-worker"), move || worker(&s, index));
    let s = shared.clone();
    let rt = kernel::spawn(TaskBuilder::new("bound-rt").fifo(RT_PRIO), move || {
        let taken = sample(&s, seed);
        s.stop.store(true, Ordering::Release);
        *s.taken.lock() = Some(taken);
        0
    });
    let ok = rt.join() == Ok(0);
    let ok = worker.join() == Ok(0) && ok;
    let taken = shared.taken.lock().take();
    (taken.unwrap_or_default(), ok)
}

/// The worker: system calls of the workload's atoms until the RT task is done.
fn worker(s: &Shared, index: u8) -> i64 {
    if index == BROKEN_INDEX || index == DIRECT_INDEX {
        let mut hog = BrokenHog { done: 0, x: 1 };
        while !s.stop.load(Ordering::Acquire) {
            if index == BROKEN_INDEX {
                broken_call(&mut hog);
            } else {
                direct_call(&mut hog);
            }
        }
        return 0;
    }
    let mut atoms = Workload::all()[usize::from(index)].make();
    if atoms.open().is_err() {
        return -1;
    }
    while !s.stop.load(Ordering::Acquire) {
        workloads::kernel_call(&mut *atoms);
    }
    i64::from(atoms.close().is_err())
}

/// The RT task's loop: arm, sleep, read the stamp of the point that woke it up.
fn sample(s: &Arc<Shared>, seed: u64) -> Taken {
    let r = s.clone();
    let dev = Device::register("bound-check", move || handler(&r));
    let (want, span) = (SAMPLES.load(Ordering::Relaxed), SPAN_NS.load(Ordering::Relaxed));
    let mut rng = seed;
    let mut t = Taken::default();
    // Bounded: a sample is taken or counted on every round.
    for _ in 0..want * 4 {
        if t.samples.len() as u64 >= want {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        s.fired.store(false, Ordering::Release);
        dev.raise_at(kernel::time::now_ns() + MIN_AHEAD_NS + rng % span);
        s.wq.wait_event(|| s.fired.load(Ordering::Acquire));
        let p = account::point();
        let Some(rec) = *s.record.lock() else { continue };
        if !rec.alone() {
            t.nested += 1;
        } else if p.tsc <= rec.irq.tsc || p.kind.is_none() {
            t.no_point += 1;
        } else {
            match (account::interrupted_insns(&rec.irq, &p), p.kind) {
                (Some(measured), Some(kind)) => t.samples.push(rec.sample(measured, kind)),
                _ => t.negative += 1,
            }
        }
    }
    t
}

/// The static bound for a sample: the interrupted frame's and then each caller's bound from
/// its return address (`Bounds::from`: to a point, weighing 0, or the function's return,
/// weighing 1), summed up to the first frame the patch model arms, as its interrupt exit
/// does: the first whose exact-table entry names points or a return before one (its points
/// are armed and its return redirected); a frame outside the table (a function reaching no
/// point) returns into its caller unredirected, or, under `patch_leaf=return`
/// (`leaf_returns`), is the frame whose return is redirected. An interrupted `rep` string instruction weighs
/// the iterations its `rcx` had left (`Bounds::from_rep`). `Err`: the reason no figure exists
/// and where the analysis stopped (the loop's head, the call, the function's first byte; the
/// RIP or the return address for a chain with no armed frame or a sum that overflows).
fn chain_bound(memo: &Bounds<'_>, table: &ExactTable, s: &Sample, leaf_returns: bool) -> Result<u64, (String, u64)> {
    let mut total = 0u64;
    for &at in core::iter::once(&s.rip).chain(&s.returns[..s.n_returns]) {
        // the interrupted frame on a `rep`: its count register says how many iterations remain
        let b = if at == s.rip { memo.from_rep(at, s.rcx) } else { memo.from(at) };
        let b = match b {
            Bound::Known(n) => n,
            Bound::Unknown(u) => return Err((format!("{:?}", u.reason), u.at)),
        };
        total = total.checked_add(b).ok_or_else(|| (String::from("Overflow"), at))?;
        match table.lookup(at) {
            Some(Lookup::Exact { sites, may_return }) if sites.is_empty() && !may_return && !leaf_returns => {}
            None if !leaf_returns => {}
            _ => return Ok(total),
        }
    }
    Err((String::from("NoArmedFrame"), s.rip))
}

/// Prints the workload's `bound_check` line and its `bound_violation` lines; the violations.
/// `rip_known`: the samples whose interrupted frame alone has a known bound (a diagnostic:
/// those whose chain is unknown lose it in a caller).
fn report(
    model: PreemptModel,
    name: &str,
    t: &Taken,
    rip_known: usize,
    bound: impl Fn(&Sample) -> Result<u64, (String, u64)>,
) -> i64 {
    let (mut checked, mut unknown, mut violations) = (0u64, 0u64, 0usize);
    let (mut max_ratio, mut max_measured) = (0f64, 0u64);
    // per reason: the samples, and where the analysis stopped for the first of them
    let mut reasons: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &t.samples {
        max_measured = max_measured.max(s.measured);
        match bound(s) {
            Ok(b) => {
                checked += 1;
                if b > 0 {
                    max_ratio = max_ratio.max(s.measured as f64 / b as f64);
                }
                if s.measured > b {
                    if violations < VIOLATIONS_PRINTED {
                        kprintln!(
                            "{{\"test\":\"bound_violation\",\"workload\":\"{name}\",\"rip\":\"{:#x}\",\"measured\":{},\"bound\":{b},\"kind\":\"{}\"}}",
                            s.rip,
                            s.measured,
                            s.kind.name()
                        );
                    }
                    violations += 1;
                }
            }
            Err((reason, at)) => {
                unknown += 1;
                reasons.entry(reason).or_insert((0, at)).0 += 1;
            }
        }
    }
    let at: Vec<String> = reasons.iter().map(|(r, (_, a))| format!("[\"{r}\",\"{a:#x}\"]")).collect();
    let reasons: Vec<String> = reasons.iter().map(|(r, (n, _))| format!("[\"{r}\",{n}]")).collect();
    let kinds: Vec<String> = [Kind::Call, Kind::Int3, Kind::Return]
        .iter()
        .map(|k| format!("\"{}\":{}", k.name(), t.samples.iter().filter(|s| s.kind == *k).count()))
        .collect();
    kprintln!(
        "{{\"test\":\"bound_check\",\"model\":\"{}\",\"workload\":\"{name}\",\"samples\":{},\"checked\":{checked},\
         \"unknown\":{unknown},\"rip_known\":{rip_known},\"violations\":{violations},\"max_ratio\":{max_ratio:.4},\"max_measured\":{max_measured},\
         \"no_point\":{},\"nested\":{},\"negative\":{},\"kinds\":{{{}}},\"unknown_reasons\":[{}],\"unknown_at\":[{}]}}",
        model.name(),
        t.samples.len(),
        t.no_point,
        t.nested,
        t.negative,
        kinds.join(","),
        reasons.join(","),
        at.join(",")
    );
    violations as i64
}

/// The deliberately broken workload: the hog's atoms with preemption disabled across the
/// points between them (a `preempt_disable` held over `preempt_point!()`, a classic kernel
/// bug). The points are in the table, so the static bound is one atom, but an armed point
/// cannot serve while the count is raised: the RT task waits for the whole call.
struct BrokenHog {
    done: usize,
    x: u64,
}

/// Atoms per call of [`BROKEN_HOG`] (the hog's default).
const BROKEN_ATOMS: usize = 64;

impl BrokenHog {
    /// The hog's atom; `false` when the call is complete.
    #[inline(never)]
    fn atom(&mut self) -> bool {
        let mut x = core::hint::black_box(self.x);
        for _ in 0..2048 {
            x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(17);
        }
        self.x = x;
        self.done += 1;
        self.done < BROKEN_ATOMS
    }
}

/// [`workloads::kernel_call`] with the bug: preemption disabled across the points.
#[inline(never)]
fn broken_call(w: &mut BrokenHog) -> u64 {
    kernel::syscall(|| {
        let _off = kernel::preempt::preempt_disable();
        broken_atoms(w)
    })
}

/// [`broken_call`] without the bug: [`DIRECT_HOG`], the control.
#[inline(never)]
fn direct_call(w: &mut BrokenHog) -> u64 {
    kernel::syscall(|| broken_atoms(w))
}

/// The call's atoms with a point after each, as `kernel_call` runs them, but by direct calls
/// (out of line, so that the static bound from its frame ends at its own return rather than
/// at the guard's drop, whose reschedule calls through the model).
#[inline(never)]
fn broken_atoms(w: &mut BrokenHog) -> u64 {
    w.done = 0;
    while w.atom() {
        kernel::preempt_point!();
    }
    core::hint::black_box(w.x);
    BROKEN_ATOMS as u64
}

/// Iterations of the calibration loop (2 instructions each) per round, and the rounds.
const CAL_ITERS: u64 = 1_000_000;
const CAL_ROUNDS: u64 = 8;

/// `image.run=bound-calibrate` (under `preempt=none`): checks `account::GATE`. A loop of a known instruction count
/// runs with interrupts on between two `rdtsc`s; the interrupts' cycles and count are read
/// with IF clear on both sides, so exactly the interrupts inside are counted. Under
/// `-icount shift=0` the TSC between the two must be the loop's instructions plus the
/// interrupts' cycles plus `GATE` per interrupt. One `bound_calibrate` line; 0 if every round
/// matched and the rounds took interrupts.
pub(crate) fn calibrate(_model: PreemptModel, _bh: BhMode) -> i64 {
    // rdtsc, mov, mov, mov (the count), the loop's dec and jnz per iteration, cli.
    let loop_insns = 5 + 2 * CAL_ITERS;
    let (mut irqs, mut residual_sum, mut exact_rounds) = (0u64, 0i64, 0u64);
    for _ in 0..CAL_ROUNDS {
        // In a system call: under `preempt=none` no interrupt switches away inside (whose
        // cycles the sums would not hold).
        let (before, tsc, after) = kernel::syscall(|| {
            arch_metal::irq::local_irq_disable();
            let before = account::sums();
            let tsc = timed_loop(CAL_ITERS);
            let after = account::sums();
            arch_metal::irq::local_irq_enable();
            (before, tsc, after)
        });
        let k = after.irqs - before.irqs;
        let residual = tsc as i64 - (loop_insns + (after.cycles - before.cycles) + k * account::GATE) as i64;
        irqs += k;
        residual_sum += residual.abs();
        exact_rounds += u64::from(residual == 0);
    }
    let ok = exact_rounds == CAL_ROUNDS && irqs > 0;
    kprintln!(
        "{{\"test\":\"bound_calibrate\",\"rounds\":{CAL_ROUNDS},\"loop_insns\":{loop_insns},\"irqs\":{irqs},\
         \"gate\":{},\"gate_pre\":{},\"gate_post\":{},\"exact_rounds\":{exact_rounds},\"residual_abs_sum\":{residual_sum},\"ok\":{ok}}}",
        account::GATE,
        account::GATE_PRE,
        account::GATE_POST
    );
    i64::from(!ok)
}

/// With IF clear on entry: sets IF, runs `iters` iterations of `dec; jnz` between two
/// `rdtsc`s, clears IF; the TSC between them. Returns with IF clear.
fn timed_loop(iters: u64) -> u64 {
    let (lo0, hi0, lo1, hi1): (u64, u64, u64, u64);
    // SAFETY: registers only (declared); IF is set for the loop and cleared again before the
    // second rdtsc, as the caller expects.
    unsafe {
        core::arch::asm!(
            "sti",              // interrupts on: taken after the next instruction
            "rdtsc",            // the start (in the sti's shadow: no interrupt before it)
            "mov {lo0}, rax",   // keep it
            "mov {hi0}, rdx",   // both halves
            "mov rcx, {n}",     // the count
            "2:",
            "dec rcx",          // one iteration: 2 instructions
            "jnz 2b",           // until zero
            "cli",              // interrupts off: none after this
            "rdtsc",            // the end
            n = in(reg) iters,
            lo0 = out(reg) lo0,
            hi0 = out(reg) hi0,
            out("rcx") _,
            out("rax") lo1,
            out("rdx") hi1,
            options(nomem, nostack),
        )
    }
    ((hi1 << 32) | (lo1 & 0xffff_ffff)) - ((hi0 << 32) | (lo0 & 0xffff_ffff))
}
