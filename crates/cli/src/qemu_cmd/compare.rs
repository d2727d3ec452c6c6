//! `atomkernel qemu compare`: RT probes beside the lab's workloads on bare metal, per model,
//! the verdict first, as the hosted `compare` prints them.
//!
//! **Mechanism.** One boot per model and round with `preempt=M image.run=lab` (and
//! `image.workloads=`, `image.samples=`, `image.interval_us=` when given). The image prints a
//! `{"test":"clock","tsc_khz":K}` line, then per workload one `{"test":"lab",...}` line with its
//! probes' latencies in TSC cycles ([`LabLine`]). Under `-icount` a cycle is an instruction and
//! figures stay in instructions; otherwise they become ns through `tsc_khz`. Each model ×
//! workload is a [`Row`]: the median of the rounds' p50 and p99 with their range (on more than
//! one CPU the worst CPU's p99). The verdict names the lowest p99 per workload: under `-icount`
//! one boot is exact (no run-to-run noise; equal figures tie); otherwise `lab::verdict::lowest`
//! judges the rounds' ranges (a lead inside the spread is a tie; one round ranks nothing).
//!
//! **Invariant.** A figure the image did not print is null in the JSON (`-` in the table),
//! never made up: no p99.9, no host-disturbance counts, no undisturbed distribution.

use super::{failed, grouped, lines_of, Session};
use crate::compare_table::ranged;
use crate::output::{out, outln};
use crate::values::{self, List};
use lab::verdict::{self, Lowest, Range};
use serde::Deserialize;
use serde_json::{json, Value};
use services::workloads::Workload;

#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// Workloads, a comma list of the lab's (loader, copy, checksum, hog, packet) or `all`.
    /// Default: the image's own set.
    #[arg(long, value_parser = values::list::<Workload>())]
    workload: Option<List<Workload>>,
    /// Probe wake-ups per probe and workload (the image's `image.samples=`), 1..=1000000.
    /// Default: the image's.
    #[arg(long)]
    samples: Option<u64>,
    /// The probes' period in microseconds (`image.interval_us=`), 10..=1000000. Default: the
    /// image's.
    #[arg(long)]
    interval_us: Option<u64>,
    /// Boots per model, 1..=100: the spread the verdict judges by. Default: 1 under --icount
    /// (exact), else 3.
    #[arg(long)]
    rounds: Option<usize>,
}

/// The options' ranges.
pub(super) fn check(c: &CompareArgs) -> Result<(), String> {
    if c.workload.as_ref().is_some_and(|w| w.0.is_empty()) {
        return Err("--workload: name at least one workload, or all".into());
    }
    if let Some(n) = c.samples.filter(|n| !(1..=1_000_000).contains(n)) {
        return Err(format!("--samples {n}: use 1..=1000000"));
    }
    if let Some(n) = c.interval_us.filter(|n| !(10..=1_000_000).contains(n)) {
        return Err(format!("--interval-us {n}: use 10..=1000000"));
    }
    if let Some(n) = c.rounds.filter(|n| !(1..=100).contains(n)) {
        return Err(format!("--rounds {n}: use 1..=100"));
    }
    Ok(())
}

/// The image's `clock` line.
#[derive(Clone, Copy, Debug, Deserialize)]
pub(super) struct ClockLine {
    pub(super) tsc_khz: u64,
}

/// One probe in a `lab` line: its latencies in TSC cycles, `hist` as `[lo, count]` bins.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct ProbeLine {
    pub(super) cpu: usize,
    pub(super) prio: u8,
    pub(super) interval_ns: u64,
    pub(super) samples: u64,
    pub(super) min: u64,
    pub(super) p50: u64,
    pub(super) p99: u64,
    pub(super) max: u64,
    pub(super) hist: Vec<(u64, u64)>,
}

/// The patch handler over one `lab` run (its `patch` object): events and their summed and
/// longest time in ns (instructions under `-icount`); all zero under the other models.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(super) struct PatchLine {
    pub(super) events: u64,
    pub(super) handler_ns: u64,
    pub(super) handler_max_ns: u64,
    pub(super) sites_armed: u64,
    pub(super) frames_walked: u64,
}

/// The image's `lab` line: one workload under one model.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct LabLine {
    pub(super) model: String,
    pub(super) cpus: usize,
    pub(super) workload: String,
    pub(super) size: usize,
    pub(super) calls: u64,
    pub(super) units: u64,
    pub(super) elapsed_cycles: u64,
    pub(super) probes: Vec<ProbeLine>,
    /// Absent from an image older than the `patch` object: as if no event was armed.
    #[serde(default)]
    pub(super) patch: PatchLine,
}

/// TSC cycles to the figures' unit: instructions as they are under `-icount`, else ns.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    pub(super) tsc_khz: u64,
    pub(super) icount: bool,
}

impl Clock {
    pub(super) fn figure(self, cycles: u64) -> u64 {
        if self.icount || self.tsc_khz == 0 {
            cycles
        } else {
            (cycles as u128 * 1_000_000 / self.tsc_khz as u128) as u64
        }
    }

    /// Seconds of `cycles` (virtual seconds under `-icount`).
    fn seconds(self, cycles: u64) -> f64 {
        cycles as f64 / (self.tsc_khz.max(1) as f64 * 1e3)
    }
}

/// The patch handler per RT event over a row's rounds, in ns (instructions under `-icount`).
#[derive(Clone, Copy, Debug)]
struct Handler {
    mean: f64,
    max: u64,
    sites: f64,
    frames: f64,
}

/// One model × workload over its rounds.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) model: String,
    pub(super) workload: String,
    /// Each round's line and clock, in round order.
    pub(super) rounds: Vec<(LabLine, Clock)>,
}

impl Row {
    /// A round's probe figure: the worst CPU's (the only one on one CPU).
    fn round_fig(&self, f: fn(&ProbeLine) -> u64) -> Vec<f64> {
        let worst = |(l, c): &(LabLine, Clock)| l.probes.iter().map(|p| c.figure(f(p))).max().unwrap_or(0) as f64;
        self.rounds.iter().map(worst).collect()
    }

    /// The median of the rounds' figure, with their range.
    fn range(&self, f: fn(&ProbeLine) -> u64) -> Range {
        let mut v = self.round_fig(f);
        v.sort_by(f64::total_cmp);
        Range::of(v.get(v.len() / 2).copied().unwrap_or(0.0), &v)
    }

    pub(super) fn p99(&self) -> Range {
        self.range(|p| p.p99)
    }

    fn p50(&self) -> Range {
        self.range(|p| p.p50)
    }

    /// The patch handler over every round; `None` without an armed event (the other models).
    fn handler(&self) -> Option<Handler> {
        let sum = |f: fn(&PatchLine) -> u64| self.rounds.iter().map(|(l, _)| f(&l.patch)).sum::<u64>();
        let events = sum(|p| p.events);
        let per = |v: u64| v as f64 / events as f64;
        (events > 0).then(|| Handler {
            mean: per(sum(|p| p.handler_ns)),
            max: self.rounds.iter().map(|(l, _)| l.patch.handler_max_ns).max().unwrap_or(0),
            sites: per(sum(|p| p.sites_armed)),
            frames: per(sum(|p| p.frames_walked)),
        })
    }

    /// Units of work per (virtual) second, the median over rounds.
    fn throughput(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .rounds
            .iter()
            .filter(|(l, _)| l.elapsed_cycles > 0)
            .map(|(l, c)| l.units as f64 / c.seconds(l.elapsed_cycles))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

/// The clock line and the lab lines of one boot's serial output.
pub(super) fn parse(b: &qemu::Boot) -> Result<(ClockLine, Vec<LabLine>), String> {
    let clock: Vec<ClockLine> = lines_of(b, "clock")?;
    let clock = *clock.first().ok_or("no `clock` line on the serial port (an image without image.run=lab?)")?;
    Ok((clock, lines_of(b, "lab")?))
}

pub(super) fn run(s: &Session, c: &CompareArgs) -> Result<(), String> {
    let icount = s.plan.icount;
    let rounds = c.rounds.unwrap_or(if icount { 1 } else { 3 });
    let mut extra = String::new();
    if let Some(w) = &c.workload {
        extra += &format!(" image.workloads={}", w.0.iter().map(|w| w.name()).collect::<Vec<_>>().join(","));
    }
    if let Some(n) = c.samples {
        extra += &format!(" image.samples={n}");
    }
    if let Some(n) = c.interval_us {
        extra += &format!(" image.interval_us={n}");
    }
    let mut rows: Vec<Row> = Vec::new();
    for &m in &s.plan.models {
        for _ in 0..rounds {
            let cmdline = s.cmdline(m, Some("lab")) + &extra;
            let b = s.boot(&cmdline)?;
            if !b.succeeded() {
                return Err(failed(&cmdline, &b));
            }
            let (clock, lines) = parse(&b).map_err(|e| format!("`{cmdline}`: {e}"))?;
            add(&mut rows, lines, Clock { tsc_khz: clock.tsc_khz, icount });
        }
    }
    if s.plan.json {
        for r in &rows {
            outln!("{}", json_row(s, r));
        }
    } else {
        out!("{}", table(&rows, s.unit(), icount, rounds, &s.header()));
    }
    Ok(())
}

/// Files each line under its model × workload row, in the order first seen.
pub(super) fn add(rows: &mut Vec<Row>, lines: Vec<LabLine>, clock: Clock) {
    for l in lines {
        match rows.iter_mut().find(|r| r.model == l.model && r.workload == l.workload) {
            Some(r) => r.rounds.push((l, clock)),
            None => rows.push(Row { model: l.model.clone(), workload: l.workload.clone(), rounds: vec![(l, clock)] }),
        }
    }
}

/// The lowest p99 of `figs`: exact under `-icount` (equal figures tie), else judged against
/// the rounds' spread.
pub(super) fn lowest(figs: &[Range], exact: bool) -> Lowest {
    if !exact || figs.is_empty() {
        return verdict::lowest(figs);
    }
    let best = figs.iter().map(|r| r.value).fold(f64::INFINITY, f64::min);
    let tied: Vec<usize> = (0..figs.len()).filter(|&i| figs[i].value == best).collect();
    if tied.len() == 1 {
        Lowest::One(tied[0])
    } else {
        Lowest::Tie(tied)
    }
}

/// The verdict lines, the `header` (the substrate and the clock), then per workload a table:
/// a row per model.
pub(super) fn table(rows: &[Row], unit: &str, exact: bool, rounds: usize, header: &str) -> String {
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.sort_unstable();
    workloads.dedup();
    let mut s = String::new();
    if exact {
        s += "-icount: the figures count instructions; there is no run-to-run noise, so a lower p99 is a real lead\n";
    } else if rounds < 2 {
        s += "one round has no spread, so nothing is ranked (use --rounds 3 or more, or --icount)\n";
    }
    for &w in &workloads {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        let figs: Vec<Range> = mine.iter().map(|r| r.p99()).collect();
        let fig = |i: usize| format!("{} {}", grouped(figs[i].value as u64), unit);
        s += &match lowest(&figs, exact) {
            Lowest::One(i) => format!("{w}: p99 lowest {} {}\n", mine[i].model, fig(i)),
            Lowest::Tie(ix) => {
                let names: Vec<String> = ix.iter().map(|&i| format!("{} {}", mine[i].model, fig(i))).collect();
                format!("{w}: p99 a tie within the spread: {}\n", names.join(", "))
            }
            Lowest::Unknown => format!("{w}: p99 not ranked\n"),
        };
    }
    s += header.trim_end();
    s += "\n";
    for &w in &workloads {
        s += "\n";
        s += &workload_table(w, rows, unit);
    }
    s += &format!(
        "\np50, p99: the RT probes' lateness in {unit}, the median of {rounds} round{} [the lowest round, the highest];\n\
         on 2 CPUs or more the worst CPU's. units/s: the workload's work per {}second. handler: the\n\
         patch models' handler per RT event, mean and longest, in {unit}. p99.9 and the host's share\n\
         are not measured on bare metal (null in --json)\n",
        if rounds == 1 { "" } else { "s" },
        if exact { "virtual " } else { "" }
    );
    s
}

/// One workload's table.
fn workload_table(w: &str, rows: &[Row], unit: &str) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
    let num = |v: f64| grouped(v as u64);
    let mut cells: Vec<[String; 7]> =
        vec![[w, &format!("p50 {unit}"), &format!("p99 {unit}"), "max", "samples", "units/s", "handler mean/max"]
            .map(String::from)];
    for r in mine {
        let max = r.range(|p| p.max).hi;
        let samples: u64 = r.rounds.iter().flat_map(|(l, _)| l.probes.iter().map(|p| p.samples)).sum();
        cells.push([
            r.model.clone(),
            ranged(r.p50(), num),
            ranged(r.p99(), num),
            num(max),
            samples.to_string(),
            r.throughput().map_or("-".into(), |t| format!("{t:.0}")),
            r.handler().map_or("-".into(), |h| format!("{}/{}", num(h.mean), num(h.max as f64))),
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for c in &cells {
        let mut l = format!("{:<w$}", c[0], w = widths[0]);
        for i in 1..7 {
            l += &format!("  {:>w$}", c[i], w = widths[i]);
        }
        s += l.trim_end();
        s += "\n";
    }
    s
}

/// A latency object in the hosted row's shape, in the figures' unit; p999 null (not measured).
fn latency(min: u64, p50: u64, p99: u64, max: u64, count: u64) -> Value {
    json!({"min": min, "p50": p50, "p99": p99, "p999": null, "max": max, "count": count})
}

/// The hosted lab's row (docs/LAB.md) where it fits; what bare metal does not measure is null.
pub(super) fn json_row(s: &Session, r: &Row) -> Value {
    let mut o = s.json_head();
    let (first, _) = &r.rounds[0];
    let (p99, h) = (r.p99(), r.handler());
    let probes: Vec<Value> = first
        .probes
        .iter()
        .map(|p| {
            let c = r.rounds[0].1;
            let hist: Vec<Value> = p.hist.iter().map(|&(lo, n)| json!({"lo_ns": c.figure(lo), "count": n})).collect();
            json!({"cpu": p.cpu, "prio": p.prio, "interval_us": p.interval_ns / 1000, "ran_on": [p.cpu],
                "latency_ns": latency(c.figure(p.min), c.figure(p.p50), c.figure(p.p99), c.figure(p.max), p.samples),
                "histogram": hist})
        })
        .collect();
    let rounds: Vec<Value> = r
        .rounds
        .iter()
        .map(|(l, c)| {
            let w = |f: fn(&ProbeLine) -> u64| l.probes.iter().map(|p| c.figure(f(p))).max().unwrap_or(0);
            let n: u64 = l.probes.iter().map(|p| p.samples).sum();
            latency(
                l.probes.iter().map(|p| c.figure(p.min)).min().unwrap_or(0),
                w(|p| p.p50),
                w(|p| p.p99),
                w(|p| p.max),
                n,
            )
        })
        .collect();
    let v = json!({"model": r.model, "rt_runs_at": null, "bh": null, "workload": r.workload, "unit": "units",
        "size": first.size, "cpus": first.cpus, "calls": first.calls, "units": first.units,
        "elapsed_cycles": first.elapsed_cycles, "tsc_khz": r.rounds[0].1.tsc_khz,
        "throughput_ops_s": r.throughput(), "latency_ns": {"p50": r.p50().value, "p99": p99.value,
        "p99_lo": p99.lo, "p99_hi": p99.hi}, "latency_undisturbed_ns": null, "host_disturbed": null,
        "rounds": r.rounds.len(), "rounds_latency_ns": rounds, "probes": probes,
        "handler_ns_per_event": h.map(|h| h.mean), "handler_max_ns": h.map(|h| h.max),
        "sites_armed_per_event": h.map(|h| h.sites), "frames_walked_per_event": h.map(|h| h.frames)});
    if let Value::Object(v) = v {
        o.extend(v);
    }
    Value::Object(o)
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
