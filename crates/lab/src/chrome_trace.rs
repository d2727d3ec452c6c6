//! The event ring exported for people: Chrome trace / Perfetto JSON, and an ftrace-like text
//! view for the terminal.
//!
//! **Mechanism.** [`chrome_json`] writes the Trace Event Format that `chrome://tracing` and
//! <https://ui.perfetto.dev> open: a JSON object with `traceEvents`, timestamps in
//! microseconds. Process 0 is CPU 0 with three tracks: `running` (one complete `X` slice per
//! stretch a task held the CPU, named by the task, from `sched_switch` to `sched_switch`),
//! `irq` (one `X` slice per `irq_handler_entry` .. `irq_handler_exit`), and `events` (every
//! record as an instant `i` event named as Linux's tracepoint, with its fields in `args`);
//! then one track per task with its own `running` slices. Track names go in `M` metadata
//! events. [`text`] prints one line per record, as
//! `/sys/kernel/tracing/trace` does.
//!
//! **Invariant.** Instant events appear in ring order (the order the CPU recorded them), and
//! every event has `name`, `ph`, `ts`, `pid` and `tid`.

use crate::symbols::Resolver;
use kernel::trace::{Event, PrevState, Record, TraceReport, Where};
use serde_json::{json, Value};
use std::collections::HashMap;

const TID_RUNNING: u32 = 0;
const TID_IRQ: u32 = 1;
const TID_EVENTS: u32 = 2;
/// Task `pid` has its own track, `TID_TASKS + pid`.
const TID_TASKS: u32 = 100;

/// Code addresses resolved once each.
struct Places<'a> {
    r: &'a Resolver,
    cache: HashMap<usize, String>,
}

impl Places<'_> {
    fn at(&mut self, ip: usize) -> String {
        if ip == 0 {
            return "-".into();
        }
        let r = self.r;
        self.cache.entry(ip).or_insert_with(|| crate::trace_report::place(r, &Where::ip(ip)).to_string()).clone()
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn task(tr: &TraceReport, pid: usize) -> String {
    tr.task_names.get(pid).cloned().unwrap_or_else(|| format!("pid{pid}"))
}

fn state(s: PrevState) -> &'static str {
    match s {
        PrevState::Running => "R",
        PrevState::Sleeping => "S",
        PrevState::Dead => "X",
    }
}

/// The record's fields as (key, value) pairs, places resolved.
fn fields(tr: &TraceReport, p: &mut Places<'_>, e: &Event) -> Vec<(&'static str, Value)> {
    match *e {
        Event::SchedSwitch { prev, next, prev_state } => vec![
            ("prev_comm", json!(task(tr, prev))),
            ("prev_pid", json!(prev)),
            ("prev_state", json!(state(prev_state))),
            ("next_comm", json!(task(tr, next))),
            ("next_pid", json!(next)),
        ],
        Event::SchedWakeup { pid, rt_prio } | Event::SchedWakeupNew { pid, rt_prio } => {
            vec![("comm", json!(task(tr, pid))), ("pid", json!(pid)), ("rt_prio", json!(rt_prio))]
        }
        Event::SchedMigrate { pid, from, to } => vec![
            ("comm", json!(task(tr, pid))),
            ("pid", json!(pid)),
            ("orig_cpu", json!(from)),
            ("dest_cpu", json!(to)),
        ],
        Event::IrqHandlerEntry { lines, ip, replayed } => {
            vec![("lines", json!(format!("{lines:#x}"))), ("ip", json!(p.at(ip))), ("replayed", json!(replayed))]
        }
        Event::IrqHandlerExit { lines, preempt } => {
            vec![("lines", json!(format!("{lines:#x}"))), ("ret", json!(if preempt { "preempt" } else { "resume" }))]
        }
        Event::SoftirqEntry { vec } | Event::SoftirqExit { vec } => vec![("vec", json!(vec))],
        Event::PointFired { site } | Event::SitePatched { site } | Event::SiteRestored { site } => {
            vec![("site", json!(p.at(site)))]
        }
        Event::ModelSwitched { from, to } => vec![("from", json!(from.name())), ("to", json!(to.name()))],
    }
}

fn meta(tid: u32, name: &str) -> Value {
    json!({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid, "args": {"name": name}})
}

/// The trace as a Chrome trace / Perfetto JSON object.
pub fn chrome_json(tr: &TraceReport, r: &Resolver) -> Value {
    let mut p = Places { r, cache: HashMap::new() };
    let mut out = vec![
        json!({"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "atomkernel CPU 0"}}),
        meta(TID_RUNNING, "running"),
        meta(TID_IRQ, "irq"),
        meta(TID_EVENTS, "events"),
    ];
    for (pid, name) in tr.task_names.iter().enumerate() {
        out.push(meta(TID_TASKS + pid as u32, &format!("{name} (pid {pid})")));
    }
    out.extend(slices(tr));
    for rec in &tr.events {
        let args: serde_json::Map<String, Value> =
            fields(tr, &mut p, &rec.event).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        out.push(json!({
            "name": rec.event.name(), "cat": category(&rec.event), "ph": "i", "s": "t",
            "ts": us(rec.ts_ns), "pid": 0, "tid": TID_EVENTS,
            "args": Value::Object(args),
        }));
    }
    json!({"traceEvents": out, "displayTimeUnit": "ns", "otherData": {"source": "atomkernel trace", "events_lost": tr.events_lost}})
}

fn category(e: &Event) -> &'static str {
    match e {
        Event::SchedSwitch { .. }
        | Event::SchedWakeup { .. }
        | Event::SchedWakeupNew { .. }
        | Event::SchedMigrate { .. } => "sched",
        Event::IrqHandlerEntry { .. } | Event::IrqHandlerExit { .. } => "irq",
        Event::SoftirqEntry { .. } | Event::SoftirqExit { .. } => "softirq",
        _ => "preempt",
    }
}

/// Complete (`X`) slices: who held the CPU, and interrupt handling.
fn slices(tr: &TraceReport) -> Vec<Value> {
    let x = |name: String, tid: u32, from: u64, to: u64| json!({"name": name, "ph": "X", "ts": us(from), "dur": us(to.saturating_sub(from)), "pid": 0, "tid": tid});
    let mut out = Vec::new();
    let mut running: Option<(usize, u64)> = None;
    let mut irq: Option<(u64, u64)> = None;
    for rec in &tr.events {
        match rec.event {
            Event::SchedSwitch { prev, next, .. } => {
                let from = running.map_or(tr.events[0].ts_ns, |(_, t)| t);
                out.push(x(task(tr, prev), TID_RUNNING, from, rec.ts_ns));
                out.push(x("running".into(), TID_TASKS + prev as u32, from, rec.ts_ns));
                running = Some((next, rec.ts_ns));
            }
            Event::IrqHandlerEntry { lines, .. } => irq = Some((lines, rec.ts_ns)),
            Event::IrqHandlerExit { .. } => {
                if let Some((lines, from)) = irq.take() {
                    out.push(x(format!("irq {lines:#x}"), TID_IRQ, from, rec.ts_ns));
                }
            }
            _ => {}
        }
    }
    if let (Some((pid, from)), Some(last)) = (running, tr.events.last()) {
        out.push(x(task(tr, pid), TID_RUNNING, from, last.ts_ns));
        out.push(x("running".into(), TID_TASKS + pid as u32, from, last.ts_ns));
    }
    out
}

/// One line per record, like `/sys/kernel/tracing/trace`.
pub fn text(tr: &TraceReport, r: &Resolver) -> String {
    let mut p = Places { r, cache: HashMap::new() };
    let mut s = format!(
        "# tracer: events\n# entries-in-buffer: {}   entries-lost: {}\n#\n#           TASK-PID     CPU   TIMESTAMP  FUNCTION\n",
        tr.events.len(),
        tr.events_lost
    );
    for rec in &tr.events {
        s += &line(tr, &mut p, rec);
    }
    s
}

fn line(tr: &TraceReport, p: &mut Places<'_>, rec: &Record) -> String {
    let who = format!("{}-{}", task(tr, rec.pid), rec.pid);
    let f: Vec<String> = fields(tr, p, &rec.event)
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(
        "{who:>20} [{:03}] {:>5}.{:06}: {}: {}\n",
        rec.cpu,
        rec.ts_ns / 1_000_000_000,
        rec.ts_ns % 1_000_000_000 / 1000,
        rec.event.name(),
        f.join(" ")
    )
}
