//! The image's init: the scenarios the bare-metal tests check, one JSON line each on COM1.
//!
//! **Mechanism.** [`init`] runs, as the core's first task, on CPU 0:
//! - `pingpong`: two tasks hand a turn back and forth [`ROUNDS`] times through one wait queue
//!   (every hand-over a wake-up and a switch);
//! - `tick`: jiffies before and after a 20 ms sleep (the APIC timer's tick advancing them);
//! - `softirq`: a device's interrupt schedules a tasklet that spins 3 ms at the interrupt's
//!   exit with IF set: the tick's interrupts nest in it (on IST 4, below the live frame);
//! - `torture` (`crate::torture`): registers, vector state and red zone across preemptions;
//! - `rt`: an RT task (SCHED_FIFO 50) sleeps on a wait queue; a normal task enters a system
//!   call whose service is atoms of 1 ms of busy work each with a preemption point between
//!   them, until [`ATOMS_AFTER_IRQ`] atoms ran after the device's interrupt, and arms the
//!   device (the HPET comparator through the IOAPIC: `arch_metal::hpet`) to fire 3.5 ms in; the
//!   device's handler wakes the RT task, which records where the busy task was when it got
//!   the CPU: `mid_atom` (an interrupt return preempted it: `preempt=full`), `point` (at a
//!   preemption point: `voluntary`, and the patch models at the point the interrupt's exit
//!   armed), `return` (under the patch models with `patch_leaf=return`, when the interrupt
//!   landed in `now_ns`, which reaches no point: at its redirected return, inside the atom),
//!   or `syscall_exit` (the service had finished: `none`);
//! - `point_cost`: the normal-path cost of a preemption point, in instructions under `-icount`
//!   (the TSC counts them): a loop of [`COST_POINTS`] idle points and the same loop without,
//!   each the least of [`COST_ROUNDS`] runs (a round an interrupt landed in is longer), the
//!   difference per point: the same under `none` and the patch models (one idle `cmp eax,
//!   imm32` and what the site's clobbers cost), the call of every site under `voluntary`;
//! - under the patch models, `rt_return`: the interrupt lands in a function whose every path
//!   forward returns before its one point, so its return is redirected, and the RT task runs
//!   at that return (`metal_rt_return`); then `patch`: the core's patch counters, the sites
//!   read back idle at every RT wake-up, and W^X walked again with patching in use.
//!
//! **Invariant.** Every line is valid JSON; `init` returns 0 only if every check held.

use alloc::string::String;
use alloc::sync::Arc;
use arch_metal::kprintln;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{BhMode, PatchLeaf, PreemptModel, TaskBuilder, WaitQueue};

/// Hand-overs in the ping-pong.
const ROUNDS: u64 = 200;
/// The busy service's atoms (1 ms each) after its device's interrupt arrived.
const ATOMS_AFTER_IRQ: u64 = 6;
/// The most atoms the service runs if the interrupt never comes.
const MAX_ATOMS: u64 = 1000;

/// `s` with JSON's special characters escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The init task's body (see the module's description).
pub(crate) fn init(model: PreemptModel, bh: BhMode) -> i64 {
    let mut failed = 0;
    failed += i64::from(!unwind());
    failed += i64::from(!pingpong());
    failed += i64::from(!tick());
    failed += i64::from(!point_cost(model));
    failed += i64::from(!rt(model, 1));
    if matches!(model, PreemptModel::PatchInt3 | PreemptModel::PatchCall) {
        let s = kernel::model::patch::patch_stats(); // the rt scenario's event alone
        for (keep, v) in FIRST.iter().zip([s.events, s.arm_ns, s.lookup_ns, s.unwind_ns, s.poke_ns, s.redirect_ns]) {
            keep.store(v, Ordering::Release);
        }
    }
    failed += i64::from(!irq_round_trip());
    failed += i64::from(!softirq(bh));
    // Bound to this CPU with its RT task: on more CPUs the RT task would run beside the calls.
    let cpu = kernel::raw_smp_processor_id();
    failed += i64::from(!crate::torture::torture_on(false, cpu));
    if model == PreemptModel::Full {
        failed += i64::from(!crate::torture::torture_on(true, cpu));
    }
    if matches!(model, PreemptModel::PatchInt3 | PreemptModel::PatchCall) {
        failed += i64::from(!rt_return());
        failed += i64::from(!patch_report(model));
    }
    failed
}

/// The patch counters after the `rt` scenario's event: events, then the handler's time and
/// its parts (look-up, unwind, arm, redirect), in ns.
static FIRST: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// RT wake-ups at which [`check_sites_idle`] read the sites back, and the most it found not
/// idle at one of them.
static SITE_CHECKS: AtomicU64 = AtomicU64::new(0);
static NOT_IDLE_MAX: AtomicU64 = AtomicU64::new(0);

/// Called by an RT task as it starts running after a wake-up: under the patch models the
/// event was served by the `__schedule` that picked it, which disarms every site it armed, so
/// every site must read back idle from the text here.
pub(crate) fn check_sites_idle() {
    if matches!(kernel::preempt_model(), PreemptModel::PatchInt3 | PreemptModel::PatchCall) {
        let n = kernel::model::patch::sites_not_idle() as u64;
        SITE_CHECKS.fetch_add(1, Ordering::AcqRel);
        NOT_IDLE_MAX.fetch_max(n, Ordering::AcqRel);
    }
}

/// `v / n`, 0 for no events.
fn per1(v: u64, n: u64) -> u64 {
    v.checked_div(n).unwrap_or(0)
}

/// The first site's byte 0 after each step of arming it as `int3`, then also as a call, then
/// undoing the call, then the `int3`: `[cc, e8, cc, 3d]` when a call wins over an `int3` (the
/// form that serves both models' events) and the counts undo in any order. Outside any event.
fn site_forms() -> [u8; 4] {
    use arch_metal::{text, Arm, PatchSync};
    let Some(&addr) = text::site_addrs().first() else { return [0; 4] };
    let byte = || text::read_site(addr)[0];
    let step = |r: Result<u32, arch_metal::PokeError>| r.map_or(0, |_| byte());
    [
        step(text::arm(&[0], Arm::Int3, PatchSync::None)),
        step(text::arm(&[0], Arm::Call, PatchSync::None)),
        step(text::disarm(&[0], Arm::Call, PatchSync::None)),
        step(text::disarm(&[0], Arm::Int3, PatchSync::None)),
    ]
}

/// Under a patch model: the core's patch counters (the handler's parts, in ns: instructions
/// under `-icount shift=0`), the site checks, and the sites not idle now, read from the text.
fn patch_report(model: PreemptModel) -> bool {
    let s = kernel::model::patch::patch_stats();
    let checks = SITE_CHECKS.load(Ordering::Acquire);
    let not_idle_max = NOT_IDLE_MAX.load(Ordering::Acquire);
    let not_idle_now = kernel::model::patch::sites_not_idle();
    let sites = arch_metal::text::site_addrs().len();
    // W^X with patching in use: the live tables walked again, after the events
    let wx = arch_metal::paging::check_wx();
    let per = |v: u64| v.checked_div(s.events).unwrap_or(0);
    let first: [u64; 6] = core::array::from_fn(|i| FIRST[i].load(Ordering::Acquire));
    let later: [u64; 6] = core::array::from_fn(|i| {
        [s.events, s.arm_ns, s.lookup_ns, s.unwind_ns, s.poke_ns, s.redirect_ns][i] - first[i]
    });
    // per event: the handler, then its parts (look-up, unwind, arm, redirect)
    let parts = |v: [u64; 6]| {
        alloc::format!(
            "[{},{},{},{},{}]",
            per1(v[1], v[0]),
            per1(v[2], v[0]),
            per1(v[3], v[0]),
            per1(v[4], v[0]),
            per1(v[5], v[0])
        )
    };
    let forms = site_forms();
    let ok = s.events > 0
        && forms == [0xcc, 0xe8, 0xcc, 0x3d]
        && checks > 0
        && not_idle_max == 0
        && not_idle_now == 0
        && s.preemptions > 0
        && wx.both == 0
        && wx.executable > 0;
    kprintln!(
        "{{\"test\":\"patch\",\"model\":\"{model}\",\"sites\":{sites},\"events\":{},\"fallbacks\":{},\
         \"exact_fallbacks\":{},\"sites_armed\":{},\"redirects\":{},\"frames_walked\":{},\"fired\":{},\
         \"returns\":{},\"preemptions\":{},\"chases\":{},\"handler_ns_per_event\":{},\"lookup_ns\":{},\
         \"unwind_ns\":{},\"poke_ns\":{},\"redirect_ns\":{},\"disarm_ns_per_event\":{},\"site_checks\":{checks},\
         \"sites_not_idle_max\":{not_idle_max},\"sites_not_idle_end\":{not_idle_now},\"wx_executable\":{},\
         \"wx_writable\":{},\"wx_both\":{},\"rt_event_ns\":{},\"return_event_ns\":{},\
         \"site_forms\":\"{:02x} {:02x} {:02x} {:02x}\",\"ok\":{ok}}}",
        s.events,
        s.fallbacks,
        s.exact_fallbacks,
        s.sites_armed,
        s.redirects,
        s.frames_walked,
        s.fired,
        s.returns,
        s.preemptions,
        s.chases,
        per(s.arm_ns),
        per(s.lookup_ns),
        per(s.unwind_ns),
        per(s.poke_ns),
        per(s.redirect_ns),
        per(s.disarm_ns),
        wx.executable,
        wx.writable,
        wx.both,
        parts(first),
        parts(later),
        forms[0],
        forms[1],
        forms[2],
        forms[3],
    );
    ok
}

/// Points per round of [`point_cost`], and its rounds per loop.
const COST_POINTS: u64 = 1000;
const COST_ROUNDS: usize = 8;

/// `n` iterations with a preemption point each (the `rt` scenario's loop shape: a store the
/// compiler must keep, then the site).
#[inline(never)]
fn loop_with_points(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s = core::hint::black_box(s.wrapping_add(i));
        arch_metal::preempt_point!();
    }
    s
}

/// [`loop_with_points`] without the point.
#[inline(never)]
fn loop_without_points(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s = core::hint::black_box(s.wrapping_add(i));
    }
    s
}

/// The least TSC cycles of [`COST_ROUNDS`] runs of `f(COST_POINTS)`, and whether every run
/// summed `0..COST_POINTS` (the loop ran whole).
fn least_cycles(f: fn(u64) -> u64) -> (u64, bool) {
    let want = COST_POINTS * (COST_POINTS - 1) / 2;
    (0..COST_ROUNDS).fold((u64::MAX, true), |(least, whole), _| {
        let t0 = arch_metal::cpu::rdtsc();
        let sum = f(core::hint::black_box(COST_POINTS));
        let cycles = arch_metal::cpu::rdtsc() - t0;
        (least.min(cycles), whole && sum == want)
    })
}

/// The normal-path cost of a point under `model` (see the module's description): the two
/// loops' least cycles and the difference per point, in hundredths; `ok` if every run of
/// both loops ran whole.
fn point_cost(model: PreemptModel) -> bool {
    let (with, whole_with) = least_cycles(loop_with_points);
    let (without, whole_without) = least_cycles(loop_without_points);
    let centi = (with.saturating_sub(without) * 100 + COST_POINTS / 2) / COST_POINTS;
    // The figures are checked under -icount (tests/cost.rs); without it they are wall time.
    let ok = whole_with && whole_without;
    kprintln!(
        "{{\"test\":\"point_cost\",\"model\":\"{model}\",\"points\":{COST_POINTS},\"rounds\":{COST_ROUNDS},\
         \"with_points_cycles\":{with},\"without_points_cycles\":{without},\"per_point\":{}.{:02},\"ok\":{ok}}}",
        centi / 100,
        centi % 100
    );
    ok
}

/// The image's `.eh_frame` unwinder walks out of three nested functions on this task's stack.
fn unwind() -> bool {
    let r = arch_metal::unwind::self_check();
    let ok = r.is_ok();
    kprintln!(
        "{{\"test\":\"unwind\",\"frames\":{},\"step_cycles\":{},\"error\":\"{}\",\"ok\":{ok}}}",
        r.unwrap_or(0),
        arch_metal::unwind::STEP_CYCLES.load(Ordering::Relaxed),
        r.err().unwrap_or("")
    );
    ok
}

fn pingpong() -> bool {
    let wq = Arc::new(WaitQueue::new());
    let turn = Arc::new(AtomicU64::new(0));
    let t0 = arch_metal::cpu::rdtsc();
    let player = |me: u64| {
        let (wq, turn) = (wq.clone(), turn.clone());
        kernel::spawn(TaskBuilder::new(if me == 0 { "ping" } else { "pong" }), move || {
            for _ in 0..ROUNDS {
                wq.wait_event(|| turn.load(Ordering::Acquire) % 2 == me);
                turn.fetch_add(1, Ordering::AcqRel);
                wq.wake_up();
            }
            0
        })
    };
    let (a, b) = (player(0), player(1));
    let ok = a.join() == Ok(0) && b.join() == Ok(0) && turn.load(Ordering::Acquire) == 2 * ROUNDS;
    let cycles = arch_metal::cpu::rdtsc() - t0;
    kprintln!(
        "{{\"test\":\"pingpong\",\"handovers\":{},\"ok\":{ok},\"cycles_per_handover\":{}}}",
        turn.load(Ordering::Acquire),
        cycles / (2 * ROUNDS)
    );
    ok
}

fn tick() -> bool {
    let j0 = kernel::time::jiffies();
    kernel::time::sleep_ns(20_000_000);
    let j1 = kernel::time::jiffies();
    let ok = j1 > j0 + 5;
    kprintln!("{{\"test\":\"tick\",\"jiffies_before\":{j0},\"jiffies_after\":{j1},\"ok\":{ok}}}");
    ok
}

/// An interrupt's whole path, from the self-IPI's write to the return to the interrupted
/// code (entry stub, saves, the core's hook for a device with an empty handler, restores,
/// `iretq`), in TSC cycles: min and median of 1000, from a task with IF set.
fn irq_round_trip() -> bool {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let dev = kernel::device::Device::register("null-dev", move || {
        h.fetch_add(1, Ordering::Relaxed);
    });
    let mut samples = alloc::vec::Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t0 = arch_metal::cpu::rdtsc();
        dev.raise();
        samples.push(arch_metal::cpu::rdtsc() - t0);
    }
    samples.sort_unstable();
    let n = hits.load(Ordering::Relaxed);
    let ok = n == 1000;
    kprintln!(
        "{{\"test\":\"irq_round_trip_cycles\",\"interrupts\":{n},\"min\":{},\"median\":{},\"p99\":{},\"ok\":{ok}}}",
        samples[0],
        samples[500],
        samples[990]
    );
    ok
}

/// A device's interrupt schedules a tasklet that spins 3 ms: it runs at the interrupt's
/// exit with IF set (`irq_exit_irqs_on`), so the tick's interrupts nest in it, on the IST
/// stack below the live frame; the line reports how many nested.
fn softirq(bh: BhMode) -> bool {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let nested0 = arch_metal::stats::irq_figures().3;
    let t = kernel::tasklet::Tasklet::new("spin3ms", move || {
        // 3 ms, and under bh=classic until a tick nested (at most 1 s more): under TCG
        // without -icount a loaded host can hold the vCPU past the whole 3 ms, and the
        // check is that interrupts nest here, not how many fit in 3 ms.
        let start = kernel::time::now_ns();
        let (end, limit) = (start + 3_000_000, start + 1_003_000_000);
        let waiting = |now: u64| {
            now < end || (bh == BhMode::Classic && arch_metal::stats::irq_figures().3 == nested0 && now < limit)
        };
        while waiting(kernel::time::now_ns()) {
            core::hint::spin_loop();
        }
        d.fetch_add(1, Ordering::AcqRel);
    });
    let t2 = t.clone();
    let dev = kernel::device::Device::register("softirq-dev", move || {
        kernel::tasklet::tasklet_schedule(&t2);
    });
    dev.raise();
    while done.load(Ordering::Acquire) == 0 {
        kernel::time::sleep_ns(1_000_000);
    }
    let nested = arch_metal::stats::irq_figures().3 - nested0;
    // Under bh=threaded the tasklet runs in ksoftirqd, a task: nothing nests there.
    let ok = t.runs() == 1 && (nested > 0 || bh == BhMode::Threaded);
    kprintln!("{{\"test\":\"softirq\",\"tasklet_runs\":{},\"nested_irqs\":{nested},\"ok\":{ok}}}", t.runs());
    ok
}

/// Where the busy service is: `2 i` at the point after atom `i` (1-based), `2 i + 1` inside
/// atom `i + 1`,
/// [`DONE`] once the service returned its last atom.
static POS: AtomicU64 = AtomicU64::new(0);
const DONE: u64 = u64::MAX;
/// What the RT task saw when it ran: `POS + 1` (0: it has not run).
static SEEN: AtomicU64 = AtomicU64::new(0);
static RAISED_NS: AtomicU64 = AtomicU64::new(0);
static IRQ_NS: AtomicU64 = AtomicU64::new(0);
static RAN_NS: AtomicU64 = AtomicU64::new(0);
/// The TSC just before the service's last point, and as the RT task started running.
static POINT_TSC: AtomicU64 = AtomicU64::new(0);
static RAN_TSC: AtomicU64 = AtomicU64::new(0);
/// `POINT_TSC` as the RT task found it (the service goes on storing it afterwards).
static POINT_TSC_SEEN: AtomicU64 = AtomicU64::new(0);
/// The CPU the device's handler ran on, and the RT task's.
static IRQ_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
static RT_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
/// The atoms the service ran.
static ATOMS_RUN: AtomicU64 = AtomicU64::new(0);

/// The `rt` scenario on `cpus` CPUs: on one, everything on CPU 0; on more, as the hosted
/// scenario (`crates/services`), the device's interrupt on CPU 0 and the busy task and the RT
/// task bound to CPU 1, so the wake-up crosses CPUs (the reschedule IPI) and CPU 1's model
/// decides where the RT task gets it.
pub(crate) fn rt(model: PreemptModel, cpus: usize) -> bool {
    let task_cpus: u64 = if cpus > 1 { 0b10 } else { 0b01 };
    let wq = Arc::new(WaitQueue::new());
    let w = wq.clone();
    let dev = Arc::new(kernel::device::Device::register_on(0, "rt-dev", move || {
        IRQ_CPU.store(kernel::raw_smp_processor_id() as u64, Ordering::Release);
        IRQ_NS.store(kernel::time::now_ns(), Ordering::Release);
        w.wake_up();
    }));
    let w = wq.clone();
    let rt = kernel::spawn(TaskBuilder::new("rt").fifo(50).cpus(task_cpus), move || {
        RT_CPU.store(kernel::raw_smp_processor_id() as u64, Ordering::Release);
        w.wait_event(|| IRQ_NS.load(Ordering::Acquire) != 0);
        RAN_TSC.store(arch_metal::cpu::rdtsc(), Ordering::Release);
        POINT_TSC_SEEN.store(POINT_TSC.load(Ordering::Acquire), Ordering::Release);
        RAN_NS.store(kernel::time::now_ns(), Ordering::Release);
        SEEN.store(POS.load(Ordering::Acquire).wrapping_add(1), Ordering::Release);
        check_sites_idle();
        0
    });
    let d = dev.clone();
    let busy = kernel::spawn(TaskBuilder::new("busy").cpus(task_cpus), move || {
        kernel::syscall(|| {
            let start = kernel::time::now_ns();
            RAISED_NS.store(start + 3_500_000, Ordering::Release);
            d.raise_at(start + 3_500_000);
            // Atoms until a few have run after the interrupt (a host stall may delay it under
            // TCG), so that the interrupt always lands inside the service.
            let mut irq_atom = None;
            for i in 0..MAX_ATOMS {
                POS.store(2 * i + 1, Ordering::Release);
                while kernel::time::now_ns() < start + (i + 1) * 1_000_000 {
                    core::hint::spin_loop();
                }
                POS.store(2 * i + 2, Ordering::Release);
                ATOMS_RUN.store(i + 1, Ordering::Release);
                POINT_TSC.store(arch_metal::cpu::rdtsc(), Ordering::Release);
                kernel::preempt_point!(); // the core's re-export of the machine's site
                if IRQ_NS.load(Ordering::Acquire) != 0 && *irq_atom.get_or_insert(i) + ATOMS_AFTER_IRQ <= i {
                    break;
                }
            }
            POS.store(DONE, Ordering::Release);
        });
        0
    });
    let ok_tasks = rt.join() == Ok(0) && busy.join() == Ok(0);
    let seen = SEEN.load(Ordering::Acquire).wrapping_sub(1);
    let patch = matches!(model, PreemptModel::PatchInt3 | PreemptModel::PatchCall);
    // `patch_leaf=return`: an interrupt in `now_ns` (no point) is served at its return, inside
    // the atom, by the return the interrupt's exit redirected (this scenario's is the boot's
    // first event)
    let leaf_returns = patch && kernel::model::patch::patch_leaf() == PatchLeaf::Return;
    let place = match seen {
        DONE => "syscall_exit",
        p if p % 2 == 0 => "point",
        _ if leaf_returns && kernel::model::patch::patch_stats().returns >= 1 => "return",
        _ => "mid_atom",
    };
    let expected = match model {
        PreemptModel::None => "syscall_exit",
        // the patch models: the point armed after the interrupt, not the system call's exit
        _ if leaf_returns && place == "return" => "return",
        PreemptModel::Voluntary | PreemptModel::Cpulock | PreemptModel::PatchInt3 | PreemptModel::PatchCall => "point",
        _ => "mid_atom",
    };
    let (raised, irq, ran) =
        (RAISED_NS.load(Ordering::Acquire), IRQ_NS.load(Ordering::Acquire), RAN_NS.load(Ordering::Acquire));
    let atoms = ATOMS_RUN.load(Ordering::Acquire);
    let (irq_cpu, rt_cpu) = (IRQ_CPU.load(Ordering::Acquire), RT_CPU.load(Ordering::Acquire));
    let ok = ok_tasks && place == expected && irq_cpu == 0 && rt_cpu == u64::from(cpus > 1);
    kprintln!(
        "{{\"test\":\"rt\",\"model\":\"{model}\",\"cpus\":{cpus},\"irq_cpu\":{irq_cpu},\"rt_cpu\":{rt_cpu},\"place\":\"{place}\",\"expected\":\"{expected}\",\"atom\":{},\
         \"atoms\":{atoms},\"irq_after_deadline_ns\":{},\"rt_wait_ns\":{},\"point_to_rt_cycles\":{},\"ok\":{ok}}}",
        if seen == DONE { atoms } else { seen / 2 },
        irq.saturating_sub(raised),
        ran.saturating_sub(irq),
        // serving the point the RT task ran at: from just before the site to the RT task
        if place == "point" { RAN_TSC.load(Ordering::Acquire) - POINT_TSC_SEEN.load(Ordering::Acquire) } else { 0 }
    );
    ok
}

/// Where the `rt_return` scenario's service is: 1 inside [`spin_until`], 2 back in its caller.
static STAGE: AtomicU64 = AtomicU64::new(0);
static STAGE_SEEN: AtomicU64 = AtomicU64::new(0);
static RR_IRQ_NS: AtomicU64 = AtomicU64::new(0);

/// Spins until `deadline_ns` and, when `for_irq`, until the device's interrupt has come too
/// (a late one under a loaded host must still land here; at most 1 s more); its one point is
/// on a branch the caller never takes, so every path forward from the spin returns first: the
/// patch models arm that point and redirect this function's return address to the machine's
/// `metal_rt_return`.
#[inline(never)]
fn spin_until(deadline_ns: u64, for_irq: bool, take_the_point: bool) -> u64 {
    let mut spins = 0u64;
    let waiting = || for_irq && RR_IRQ_NS.load(Ordering::Acquire) == 0;
    while kernel::time::now_ns() < deadline_ns || (waiting() && kernel::time::now_ns() < deadline_ns + 1_000_000_000) {
        spins += 1;
        core::hint::spin_loop();
    }
    if core::hint::black_box(take_the_point) {
        arch_metal::preempt_point!();
    }
    spins
}

/// Under the patch models: the device's interrupt lands in [`spin_until`], the interrupt's
/// exit redirects its return, and the RT task runs at that return (the stage it sees is 1:
/// the function returned, its caller has not stored 2 yet).
fn rt_return() -> bool {
    let wq = Arc::new(WaitQueue::new());
    let w = wq.clone();
    let dev = Arc::new(kernel::device::Device::register_on(0, "rr-dev", move || {
        RR_IRQ_NS.store(kernel::time::now_ns(), Ordering::Release);
        w.wake_up();
    }));
    let w = wq.clone();
    // Both on CPU 0, where the device's interrupt lands: on another CPU the RT task would run at
    // once, beside the busy task, and no return would be redirected.
    let rt = kernel::spawn(TaskBuilder::new("rt-return").fifo(50).cpus(1), move || {
        w.wait_event(|| RR_IRQ_NS.load(Ordering::Acquire) != 0);
        STAGE_SEEN.store(STAGE.load(Ordering::Acquire), Ordering::Release);
        check_sites_idle();
        0
    });
    let d = dev.clone();
    let busy = kernel::spawn(TaskBuilder::new("busy-return").cpus(1), move || {
        kernel::syscall(|| {
            let start = kernel::time::now_ns();
            d.raise_at(start + 500_000);
            STAGE.store(1, Ordering::Release);
            let spins = spin_until(start + 2_000_000, true, false);
            STAGE.store(2, Ordering::Release);
            core::hint::black_box(spin_until(start + 3_000_000, false, false) + spins);
        });
        0
    });
    let ok_tasks = rt.join() == Ok(0) && busy.join() == Ok(0);
    let place = match STAGE_SEEN.load(Ordering::Acquire) {
        1 => "return",
        2 => "after_return",
        _ => "syscall_exit",
    };
    let ok = ok_tasks && place == "return";
    kprintln!("{{\"test\":\"rt_return\",\"place\":\"{place}\",\"expected\":\"return\",\"ok\":{ok}}}");
    ok
}

/// An init whose task panics: with `panic=abort` the image's panic handler runs the core's
/// panic hook, prints `PANIC:` and ends the machine (task-kill oopses are a later step).
pub(crate) fn task_panic(_model: PreemptModel, _bh: BhMode) -> i64 {
    let t = kernel::spawn(TaskBuilder::new("panicker"), || {
        if core::hint::black_box(true) {
            panic!("a task's deliberate panic");
        }
        0
    });
    let _ = t.join();
    kprintln!("{{\"test\":\"task_panic\",\"survived\":true}}");
    1
}
