//! Tracing: an event ring per CPU, the `preemptoff`/`irqsoff` and `wakeup_rt` latency tracers,
//! and a tick-driven sampling profiler (ftrace's tracers, scaled to atomkernel).
//!
//! **Mechanism.** A kernel instance boots with [`TraceOptions`] (`trace=` on the command line).
//! When anything is on, `boot` preallocates one `CpuTrace` per CPU (the event ring, the
//! tracers' state, the profile buffer) and, for the latency tracers, arms the preemption-point
//! sites so that every point reports itself even under `preempt=none`. The scheduler, the
//! interrupt entry and exit, the point hook and the system-call border call one-line hooks
//! here (`sched_switch`, `sched_wakeup`, `irq_handler_entry`, ...); each starts with
//! `Tracer::on`, one relaxed load of the instance's flag word and a branch, and records under
//! the CPU's `IrqSpinLock` (IRQs masked, so an interrupt never meets a half-written entry).
//! Hooks reached without the instance at hand (the point hook's fast path, `preempt_disable`)
//! test a per-CPU (thread-local) word instead, set only on CPUs of tracing instances. Other
//! subsystems add events with [`event`] (e.g. `trace::event(Event::SitePatched { site })`).
//!
//! **Invariants.** Tracing state belongs to one instance: instances booted side by side never
//! see each other's events. With tracing off nothing is allocated and nothing is recorded: every
//! hook returns after its flag test (with the `trace` feature off, the test is a constant and
//! the hooks compile to nothing). Recording never allocates and never blocks on another CPU's
//! state: it is safe in hard-IRQ context. A full ring overwrites its oldest events (as ftrace's
//! default `overwrite` mode) and counts them.

mod preemptoff;
mod profile;
mod ring;
pub(crate) mod state;
mod types;
mod wakeup_rt;

pub use crate::config::{TraceOptions, BUILT};
pub use preemptoff::{Stretch, StretchKind};
pub use profile::Sample;
pub use types::{Event, PrevState, Record, Where};
pub use wakeup_rt::{Runner, WakeupRt};

use crate::arch::{Arch, IrqExit, IrqFrame, IrqSpinLock, A};
use crate::config::{ConfigError, PreemptModel};
use crate::config::{EVENTS, PREEMPTOFF, PROFILE, WAKEUP_RT};
use crate::cpu::CORE_FLAG_TRACE_HOOKS;
use crate::instance::{try_this_kernel, Kernel};
use crate::sched::rq::Mode;
use crate::task::TaskId;
use alloc::{format, string::String, vec::Vec};
use core::panic::Location;
use core::sync::atomic::Ordering;
use state::CpuTrace;
pub use state::Tracer;

/// True on a CPU whose instance needs the point and section hooks (the constant `BUILT`
/// folds it away without the feature).
#[inline(always)]
fn cpu_hooks() -> bool {
    BUILT && A::core_flags() & CORE_FLAG_TRACE_HOOKS != 0
}

/// Preallocates the tracers' state and arms the point sites if a latency tracer is on. Call on
/// the CPU thread before any task runs.
pub(crate) fn boot(k: &Kernel) -> Result<(), ConfigError> {
    let o = k.trace.options;
    if !BUILT || !o.any() {
        return Ok(());
    }
    let cpu = |c: usize| CpuTrace {
        ring: ring::Ring::new(if o.events { o.buf_entries } else { 0 }),
        preemptoff: preemptoff::State::default(),
        wakeup: wakeup_rt::State::default(),
        profile: profile::Profile::new(if o.profile { o.buf_entries } else { 0 }),
        last_where: Where::default(),
        curr: 0, // the idle task runs the boot
        cpu: c as u32,
    };
    let _ = k.trace.cpus.set((0..k.cpus.len()).map(|c| IrqSpinLock::new(cpu(c))).collect());
    if o.preemptoff || o.wakeup_rt {
        let claim =
            A::claim_all_sites().map_err(|e| ConfigError(format!("trace: cannot arm the preemption points: {e}")))?;
        *k.trace.sites_claim.lock() = Some(claim);
    }
    cpu_up(k);
    k.trace.flags.store(o.flags(), Ordering::Relaxed);
    Ok(())
}

/// A CPU thread of `k` comes up: it reaches the point and section hooks if a latency tracer
/// needs them.
pub(crate) fn cpu_up(k: &Kernel) {
    let o = k.trace.options;
    if BUILT && (o.preemptoff || o.wakeup_rt) {
        set_cpu_hooks(true);
    }
}

/// A CPU thread goes down: it no longer reaches the hooks.
pub(crate) fn cpu_down() {
    set_cpu_hooks(false);
}

fn set_cpu_hooks(on: bool) {
    crate::cpu::set_core_flag(CORE_FLAG_TRACE_HOOKS, on);
}

/// Stops tracing (the state stays for the report) and disarms what [`boot`] armed.
pub(crate) fn shutdown(k: &Kernel) {
    let o = k.trace.options;
    if k.trace.flags.swap(0, Ordering::Relaxed) != 0 && (o.preemptoff || o.wakeup_rt) {
        cpu_down();
        let claim = k.trace.sites_claim.lock().take();
        let _ = claim.map(A::release_all_sites);
    }
}

/// Records `event` on the calling CPU's ring, if it is a CPU of an instance tracing events.
/// For subsystems outside the scheduler: `trace::event(Event::SitePatched { site })`.
pub fn event(event: Event) {
    let Some(k) = try_this_kernel() else { return };
    event_in(&k, event);
}

/// [`event`] for a caller that holds its instance already.
#[inline(always)]
pub(crate) fn event_in(k: &Kernel, event: Event) {
    if k.trace.on(EVENTS) {
        k.trace.with(|t, now| k.trace.record(t, now, event));
    }
}

/// [`event_in`] of the event `make` builds, built only when events are traced (for an event
/// whose fields cost a look-up).
#[inline(always)]
pub(crate) fn event_in_with(k: &Kernel, make: impl FnOnce() -> Event) {
    if k.trace.on(EVENTS) {
        let event = make();
        k.trace.with(|t, now| k.trace.record(t, now, event));
    }
}

/// `trace_sched_switch`, and what the latency tracers learn from it.
#[inline(always)]
pub(crate) fn sched_switch(k: &Kernel, prev: TaskId, next: TaskId, prev_state: PrevState, modes: (Mode, Mode)) {
    if k.trace.on(EVENTS | PREEMPTOFF | WAKEUP_RT | PROFILE) {
        switch_slow(k, prev, next, prev_state, modes);
    }
}

#[cold]
#[inline(never)]
fn switch_slow(k: &Kernel, prev: TaskId, next: TaskId, prev_state: PrevState, modes: (Mode, Mode)) {
    let (prev_mode, next_mode) = modes;
    let model = k.model();
    k.trace.with(|t, now| {
        k.trace.record(t, now, Event::SchedSwitch { prev, next, prev_state });
        t.note_stolen();
        t.curr = next;
        let w = t.last_where;
        if k.trace.on(PREEMPTOFF) {
            t.preemptoff.switch(now, model, w, prev_mode == Mode::Kernel, next, next_mode == Mode::Kernel);
        }
        if k.trace.on(WAKEUP_RT) {
            t.wakeup.switch(now, prev, next, w);
        }
        t.last_where = Where::default();
    });
}

/// `trace_sched_wakeup` for `pid` (of RT priority `rt_prio`, 0 for a fair task), woken while
/// `curr` ran.
#[inline(always)]
pub(crate) fn sched_wakeup(k: &Kernel, pid: TaskId, rt_prio: Option<u8>, curr: TaskId, cpu: usize) {
    if k.trace.on(EVENTS | WAKEUP_RT) {
        wakeup_slow(k, pid, rt_prio.unwrap_or(0), curr, cpu);
    }
}

/// `trace_sched_wakeup_new` for the new task `pid` (of RT priority `rt_prio`), queued on
/// `cpu`: recorded there, as a wakeup is.
#[inline(always)]
pub(crate) fn sched_wakeup_new(k: &Kernel, pid: TaskId, rt_prio: Option<u8>, cpu: usize) {
    if k.trace.on(EVENTS) {
        let event = Event::SchedWakeupNew { pid, rt_prio: rt_prio.unwrap_or(0) };
        k.trace.with_cpu(cpu, |t, now| k.trace.record(t, now, event));
    }
}

/// `sched_migrate_task`: `pid` moved from CPU `from` to CPU `to` (recorded on `to`).
#[inline(always)]
pub(crate) fn sched_migrate(k: &Kernel, pid: TaskId, from: usize, to: usize) {
    if k.trace.on(EVENTS) {
        let event = Event::SchedMigrate { pid, from: from as u32, to: to as u32 };
        k.trace.with_cpu(to, |t, now| k.trace.record(t, now, event));
    }
}

#[cold]
#[inline(never)]
fn wakeup_slow(k: &Kernel, pid: TaskId, rt_prio: u8, curr: TaskId, cpu: usize) {
    k.trace.with_cpu(cpu, |t, now| {
        k.trace.record(t, now, Event::SchedWakeup { pid, rt_prio });
        if rt_prio > 0 && k.trace.on(WAKEUP_RT) {
            let w = t.last_where;
            // The host's count is the calling CPU's: a remote wake-up starts counting at the
            // target CPU's first switch after it.
            let stolen = (cpu == k.raw_cpu_id()).then(A::cpu_stolen);
            t.wakeup.wakeup(now, pid, rt_prio, curr, w, stolen);
        }
    });
}

/// Records `event` on `k`'s ring (out of line: the hooks' slow path).
#[cold]
#[inline(never)]
fn record_slow(k: &Kernel, event: Event) {
    k.trace.with(|t, now| k.trace.record(t, now, event));
}

/// `irq_handler_entry`; the profiler samples the interrupted IP when the tick is among `lines`.
#[inline(always)]
pub(crate) fn irq_handler_entry(k: &Kernel, lines: u64, frame: &IrqFrame) {
    if k.trace.on(EVENTS | PROFILE | WAKEUP_RT | PREEMPTOFF) {
        irq_entry_slow(k, lines, frame);
    }
}

#[cold]
#[inline(never)]
fn irq_entry_slow(k: &Kernel, lines: u64, frame: &IrqFrame) {
    let kernel_mode = crate::cpu::mode() == Mode::Kernel;
    k.trace.with(|t, now| {
        let (ip, pid) = (if frame.replayed { 0 } else { frame.ip }, t.curr);
        k.trace.record(t, now, Event::IrqHandlerEntry { lines, ip, replayed: frame.replayed });
        if ip != 0 {
            let foreign = Where { ip: 0, src: None, what: "foreign code (libc, vDSO)" };
            t.last_where = if crate::arch::in_kernel_text(frame) { Where::ip(ip) } else { foreign };
        }
        if k.trace.on(PROFILE) && lines & (1 << crate::irq_desc::LINE_TICK) != 0 {
            t.profile.sample(Sample { ip, pid, kernel_mode, foreign: !crate::arch::in_kernel_text(frame) });
        }
    });
}

/// `irq_handler_exit`.
#[inline(always)]
pub(crate) fn irq_handler_exit(k: &Kernel, lines: u64, exit: IrqExit) {
    if k.trace.on(EVENTS) {
        record_slow(k, Event::IrqHandlerExit { lines, preempt: exit == IrqExit::Preempt });
    }
}

/// A preemption-point site was reached (from the point hook, before anything else).
#[inline(always)]
pub(crate) fn point_reached(site: usize) {
    if cpu_hooks() {
        opportunity_slow(Where::ip(site));
    }
}

/// `cond_resched()` was called at `loc`: a preemption opportunity under every model.
#[inline(always)]
pub(crate) fn cond_resched(loc: &'static Location<'static>) {
    if cpu_hooks() {
        opportunity_slow(Where { ip: 0, src: Some(loc), what: "cond_resched" });
    }
}

#[cold]
#[inline(never)]
fn opportunity_slow(w: Where) {
    let Some(k) = try_this_kernel() else { return };
    if !k.trace.on(PREEMPTOFF | WAKEUP_RT) || crate::cpu::mode() != Mode::Kernel {
        return;
    }
    let model = k.model();
    k.trace.with(|t, now| {
        t.last_where = w;
        if k.trace.on(PREEMPTOFF) {
            t.note_stolen();
            t.preemptoff.opportunity(now, model, w, t.curr);
        }
    });
}

/// The preemption model took the CPU at point `site` (`PointFired`).
#[inline(always)]
pub(crate) fn point_fired(k: &Kernel, site: usize) {
    if k.trace.on(EVENTS) {
        record_slow(k, Event::PointFired { site });
    }
}

/// System-call entry at `loc`: the task enters kernel mode; an atom stretch begins.
#[inline(always)]
pub(crate) fn syscall_entry(k: &Kernel, loc: &'static Location<'static>) {
    if k.trace.on(PREEMPTOFF | WAKEUP_RT) {
        syscall_border_slow(k, loc, true);
    }
}

/// `ret_from_syscall` of the system call made at `loc`: the end of the last atom.
#[inline(always)]
pub(crate) fn syscall_exit(k: &Kernel, loc: &'static Location<'static>) {
    if k.trace.on(PREEMPTOFF | WAKEUP_RT) {
        syscall_border_slow(k, loc, false);
    }
}

#[cold]
#[inline(never)]
fn syscall_border_slow(k: &Kernel, loc: &'static Location<'static>, entry: bool) {
    let w = Where { ip: 0, src: Some(loc), what: if entry { "syscall entry" } else { "ret_from_syscall" } };
    let model = k.model();
    k.trace.with(|t, now| {
        t.last_where = w;
        t.note_stolen();
        match entry {
            true => t.preemptoff.syscall_entry(now, model, w, t.curr),
            false => t.preemptoff.syscall_exit(now, model, w),
        }
    });
}

/// The model was switched from `from` to `to`.
#[inline(always)]
pub(crate) fn model_switched(k: &Kernel, from: PreemptModel, to: PreemptModel) {
    if k.trace.on(EVENTS | PREEMPTOFF) {
        record_slow(k, Event::ModelSwitched { from, to });
        k.trace.with(|t, _| t.preemptoff.reset());
    }
}

/// `preempt_disable()` or `local_irq_save()` by kernel code at `loc` (under `full`/`lazy`
/// these sections are what keeps the CPU from being taken).
#[inline(always)]
pub(crate) fn section_enter(loc: &'static Location<'static>, irqs: bool) {
    if cpu_hooks() {
        section_slow(Some(loc), irqs, 0);
    }
}

/// The matching `preempt_enable()` / `local_irq_restore()`, at the caller's code address.
#[inline(always)]
pub(crate) fn section_exit(irqs: bool) {
    if cpu_hooks() {
        section_slow(None, irqs, A::current_ip());
    }
}

#[cold]
#[inline(never)]
fn section_slow(enter: Option<&'static Location<'static>>, irqs: bool, ip: usize) {
    let Some(k) = try_this_kernel() else { return };
    let model = k.model();
    if !k.trace.on(PREEMPTOFF) || !model.preempts_kernel_code() {
        return;
    }
    k.trace.with(|t, now| {
        t.note_stolen();
        section_at(t, now, enter, irqs, ip, model)
    });
}

/// [`section_slow`]'s record on the CPU's trace.
fn section_at(
    t: &mut state::CpuTrace,
    now: u64,
    enter: Option<&'static Location<'static>>,
    irqs: bool,
    ip: usize,
    model: PreemptModel,
) {
    match enter {
        Some(loc) => {
            let what = if irqs { "local_irq_save" } else { "preempt_disable" };
            t.preemptoff.section_enter(now, Where { ip: 0, src: Some(loc), what }, t.curr, irqs, model)
        }
        None => {
            let what = if irqs { "local_irq_restore" } else { "preempt_enable" };
            t.preemptoff.section_exit(now, Where { what, ..Where::ip(ip) })
        }
    }
}

/// What an instance's tracers found, handed back in the `RunReport`.
#[derive(Clone, Debug, Default)]
pub struct TraceReport {
    /// The tracers that ran.
    pub options: Option<TraceOptions>,
    /// Every CPU's event ring, merged oldest first (each record names its CPU).
    pub events: Vec<Record>,
    /// Events overwritten because the ring was full.
    pub events_lost: u64,
    /// The longest non-preemptible stretches, longest first (`tracing_max_latency` is the
    /// first).
    pub preemptoff: Vec<Stretch>,
    /// Non-preemptible stretches measured in all.
    pub stretches: u64,
    /// The worst RT wake-ups, worst first.
    pub wakeup_rt: Vec<WakeupRt>,
    /// Profile samples (the interrupted IP at each tick).
    pub samples: Vec<Sample>,
    /// Samples not kept because the buffer was full.
    pub samples_dropped: u64,
    /// Task names by pid (idle included), for exporters.
    pub task_names: Vec<String>,
}

/// Collects the report (host side, after the instance stopped): every CPU's events merged in
/// time order, the latency tracers' worst across CPUs.
pub(crate) fn report(k: &Kernel, task_names: Vec<String>) -> Option<TraceReport> {
    let cpus = k.trace.cpus.get()?;
    let mut r = TraceReport { options: Some(k.trace.options), task_names, ..Default::default() };
    for c in cpus.iter() {
        let t = c.lock();
        let (events, lost) = t.ring.drain();
        let (samples, dropped) = t.profile.samples();
        r.events.extend(events);
        r.events_lost += lost;
        r.preemptoff.extend(t.preemptoff.top());
        r.stretches += t.preemptoff.count();
        r.wakeup_rt.extend(t.wakeup.worst());
        r.samples.extend(samples);
        r.samples_dropped += dropped;
    }
    r.events.sort_by_key(|e| e.ts_ns);
    r.preemptoff.sort_by_key(|s| core::cmp::Reverse(s.ns));
    r.wakeup_rt.sort_by_key(|w| core::cmp::Reverse(w.latency_ns));
    Some(r)
}
