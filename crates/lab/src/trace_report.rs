//! What the tracers found, pointed at source lines: the `preemptoff`/`irqsoff` stretches, the
//! worst `wakeup_rt` latencies, and the profile by function.
//!
//! **Mechanism.** The kernel core records code addresses and `#[track_caller]` locations only
//! (it has no symbols); [`analyse`] resolves them with [`Resolver`] (DWARF through inlining,
//! the ELF symbols otherwise) and names tasks by pid. [`render`] is the `report.txt` of
//! `atomkernel trace`.
//!
//! **Invariant.** Every figure is the kernel's own record; nothing is estimated here. A place
//! that cannot be resolved is shown as `?`, never guessed from a neighbouring symbol.

use crate::symbols::{Place, Resolver};
use kernel::trace::{Stretch, TraceReport, WakeupRt, Where};
use serde::Serialize;
use std::collections::HashMap;

/// One non-preemptible stretch, resolved.
#[derive(Clone, Debug, Serialize)]
pub struct StretchRow {
    /// `preemptoff (atom)`, `preemptoff` or `irqsoff`.
    pub tracer: &'static str,
    pub ns: u64,
    pub task: String,
    pub pid: usize,
    pub model: String,
    pub start: Place,
    pub end: Place,
    /// Times the host took the CPU away during it: a stretch with any holds the host's time.
    pub host_held: u64,
}

/// A task that ran while an RT task waited.
#[derive(Clone, Debug, Serialize)]
pub struct RunnerRow {
    pub task: String,
    pub pid: usize,
    pub ns: u64,
    pub gave_up_at: Place,
}

/// One RT wake-up, resolved.
#[derive(Clone, Debug, Serialize)]
pub struct WakeupRow {
    pub task: String,
    pub pid: usize,
    pub rt_prio: u8,
    pub latency_ns: u64,
    pub woken_during: String,
    pub woken_at: Place,
    pub runners: Vec<RunnerRow>,
    pub more_runners: u32,
    /// Times the host took the CPU away between the wake-up and the RT task running.
    pub host_held: u64,
}

/// Profile samples charged to one function.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    pub function: String,
    pub samples: u64,
    /// Of those, taken in kernel mode.
    pub kernel: u64,
}

/// The tracers' findings, resolved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Analysis {
    pub tracers: String,
    pub preemptoff: Vec<StretchRow>,
    pub stretches: u64,
    pub wakeup_rt: Vec<WakeupRow>,
    pub profile: Vec<ProfileRow>,
    pub samples: u64,
    pub samples_dropped: u64,
    pub events: usize,
    pub events_lost: u64,
}

/// Resolves a tracer's [`Where`].
pub fn place(r: &Resolver, w: &Where) -> Place {
    if w.ip == 0 && w.src.is_none() {
        let what = if w.what.is_empty() { "switched in" } else { w.what };
        return Place { what: Some(what.into()), ..Place::default() };
    }
    let mut p = r.caller_place(w.ip, w.src.map(|l| (l.file(), l.line())));
    p.what = (!w.what.is_empty()).then(|| w.what.to_string());
    p
}

fn name(tr: &TraceReport, pid: usize) -> String {
    tr.task_names.get(pid).cloned().unwrap_or_else(|| format!("pid{pid}"))
}

fn stretch(tr: &TraceReport, r: &Resolver, s: &Stretch) -> StretchRow {
    StretchRow {
        tracer: s.kind.tracer(),
        ns: s.ns,
        task: name(tr, s.pid),
        pid: s.pid,
        model: s.model.name().into(),
        start: place(r, &s.start),
        end: place(r, &s.end),
        host_held: s.host_held,
    }
}

fn wakeup(tr: &TraceReport, r: &Resolver, w: &WakeupRt) -> WakeupRow {
    WakeupRow {
        task: name(tr, w.pid),
        pid: w.pid,
        rt_prio: w.rt_prio,
        latency_ns: w.latency_ns,
        woken_during: name(tr, w.woken_during),
        woken_at: place(r, &w.woken_at),
        runners: w
            .runners()
            .map(|x| RunnerRow { task: name(tr, x.pid), pid: x.pid, ns: x.ns, gave_up_at: place(r, &x.gave_up_at) })
            .collect(),
        more_runners: w.more_runners,
        host_held: w.host_held,
    }
}

/// The profile by function, most samples first.
fn profile(tr: &TraceReport, r: &Resolver) -> Vec<ProfileRow> {
    let mut by_ip: HashMap<(usize, bool), (u64, u64)> = HashMap::new();
    for s in &tr.samples {
        let key = (if s.foreign { 1 } else { s.ip }, s.foreign);
        let e = by_ip.entry(key).or_default();
        e.0 += 1;
        e.1 += u64::from(s.kernel_mode);
    }
    let mut by_fn: HashMap<String, (u64, u64)> = HashMap::new();
    for ((ip, foreign), (n, k)) in by_ip {
        let f = match (ip, foreign) {
            (_, true) => "(foreign code: libc, vDSO)".to_string(),
            (0, _) => "(tick held while IRQs were masked)".to_string(),
            _ => r.innermost(ip).function.unwrap_or_else(|| format!("{ip:#x}")),
        };
        let e = by_fn.entry(f).or_default();
        e.0 += n;
        e.1 += k;
    }
    let mut rows: Vec<ProfileRow> =
        by_fn.into_iter().map(|(function, (samples, kernel))| ProfileRow { function, samples, kernel }).collect();
    rows.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.function.cmp(&b.function)));
    rows
}

/// Resolves everything the tracers recorded.
pub fn analyse(tr: &TraceReport, r: &Resolver) -> Analysis {
    Analysis {
        tracers: tr.options.map_or_else(|| "off".into(), |o| o.to_string()),
        preemptoff: tr.preemptoff.iter().map(|s| stretch(tr, r, s)).collect(),
        stretches: tr.stretches,
        wakeup_rt: tr.wakeup_rt.iter().map(|w| wakeup(tr, r, w)).collect(),
        profile: profile(tr, r),
        samples: tr.samples.len() as u64,
        samples_dropped: tr.samples_dropped,
        events: tr.events.len(),
        events_lost: tr.events_lost,
    }
}

fn us(ns: u64) -> String {
    format!("{:.1} us", ns as f64 / 1e3)
}

/// ` (the host held the CPU N times meanwhile)` when it did: the figure holds the host's time.
fn held(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " (the host held the CPU once meanwhile)".into(),
        n => format!(" (the host held the CPU {n} times meanwhile)"),
    }
}

/// The report as text (`report.txt`).
pub fn render(a: &Analysis, top: usize) -> String {
    let mut s = format!("# tracers: {}\n", a.tracers);
    s += &format!(
        "\n## preemptoff / irqsoff: longest stretches the CPU could not be taken ({} measured)\n",
        a.stretches
    );
    for (i, x) in a.preemptoff.iter().take(top).enumerate() {
        let head = if i == 0 { "tracing_max_latency" } else { "" };
        s += &format!(
            "{:>20} {:>12}  {} [{}] task {} (pid {}){}\n",
            head,
            us(x.ns),
            x.tracer,
            x.model,
            x.task,
            x.pid,
            held(x.host_held)
        );
        s += &format!("{:>20}   start: {}\n{:>20}   end:   {}\n", "", x.start, "", x.end);
    }
    s += "\n## wakeup_rt: worst RT wake-ups (wake-up to running)\n";
    for w in a.wakeup_rt.iter().take(top) {
        s += &format!(
            "{:>12}  {} (pid {}, FIFO/RR {}){}\n",
            us(w.latency_ns),
            w.task,
            w.pid,
            w.rt_prio,
            held(w.host_held)
        );
        s += &format!("              woken while {} ran, at {}\n", w.woken_during, w.woken_at);
        for x in &w.runners {
            s += &format!(
                "              ran meanwhile: {} (pid {}) for {}, gave up the CPU at {}\n",
                x.task,
                x.pid,
                us(x.ns),
                x.gave_up_at
            );
        }
        if w.more_runners > 0 {
            s += &format!("              and {} more runners\n", w.more_runners);
        }
    }
    s += &format!(
        "\n## profile: {} tick samples of the interrupted IP by function ({} dropped)\n",
        a.samples, a.samples_dropped
    );
    s += &format!("{:>8} {:>7} {:>8}  function\n", "samples", "%", "kernel");
    for p in a.profile.iter().take(top.max(20)) {
        let pct = 100.0 * p.samples as f64 / a.samples.max(1) as f64;
        s += &format!("{:>8} {:>7.2} {:>8}  {}\n", p.samples, pct, p.kernel, p.function);
    }
    s += &format!("\n## events: {} in the ring ({} overwritten)\n", a.events, a.events_lost);
    s
}
