//! `atomkernel latency`: cyclictest inside atomkernel. RT probes (priority, interval, count or
//! duration as options) sleep to each period and record how late they ran, beside a workload,
//! under one preemption model; min, p50, p99, p99.9, max and a log-scale histogram per probe.

use crate::output::{out, outln};
use crate::values;
use kernel::{Config, PreemptModel};
use lab::measure::{self, CpuPolicy, ProbeSet, ProbeSpec, Stop};
use lab::probe;
use lab::stats::LatencyHist;
use services::workloads::Workload;

#[derive(clap::Args)]
pub(crate) struct LatencyArgs {
    /// The preemption model to boot (none, voluntary, full, lazy, cpulock, ...).
    #[arg(long, default_value = "full", value_parser = values::one::<PreemptModel>())]
    preempt: PreemptModel,
    /// The load beside the probes: a workload (loader, copy, checksum, hog, packet) or `none`.
    #[arg(long, default_value = "checksum")]
    workload: String,
    /// The workload's size as NAME=N (see `compare --help`).
    #[arg(long, default_value = "")]
    size: String,
    /// Probes (cyclictest's -t), 1..=16.
    #[arg(long, default_value_t = ProbeSet::default().threads)]
    threads: usize,
    /// SCHED_FIFO priority of the first probe (cyclictest's -p); probe i runs at prio - i.
    #[arg(long, default_value_t = ProbeSet::default().prio)]
    prio: u8,
    /// Period of the first probe in microseconds (cyclictest's -i), 100..=1000000.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Added to the period of each further probe, in microseconds (cyclictest's -d).
    #[arg(long, default_value_t = 500)]
    distance_us: u64,
    /// Stop after this many seconds (cyclictest's -D); the default when --loops is not given: 5.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop when every probe has taken this many samples (cyclictest's -l); at most what the
    /// slowest probe takes in 600 s.
    #[arg(long)]
    loops: Option<u64>,
    /// Host nice value (-20..=19) for the kernel's CPU thread, or `keep`.
    #[arg(long, default_value_t = crate::compare_cmd::cpu_nice_default(), allow_hyphen_values = true)]
    cpu_nice: String,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cpus: crate::cpus_arg::CpusArg,
}

/// The fields of the lab's probe set and run length, and of the kernel's `Config`, and the
/// option that sets each.
const FLAGS: [(&str, &str); 8] = [
    ("cpus", "--cpus"),
    ("preempt", "--preempt"),
    ("threads", "--threads"),
    ("prio", "--prio"),
    ("interval_us", "--interval-us"),
    ("distance_us", "--distance-us"),
    ("seconds", "--duration"),
    ("loops", "--loops"),
];

/// What `latency` runs, checked before anything starts.
pub(crate) struct Plan {
    model: PreemptModel,
    workload: Option<Workload>,
    specs: Vec<ProbeSpec>,
    stop: Stop,
    cpu: CpuPolicy,
}

pub(crate) fn plan(a: &LatencyArgs) -> Result<Plan, String> {
    let model = a.preempt;
    let named = |e: String| values::flags(e, &FLAGS);
    Config { preempt: model, cpus: a.cpus.get(), ..Config::default() }.validate().map_err(|e| named(e.to_string()))?;
    let workload = match a.workload.trim() {
        "none" if !a.size.trim().is_empty() => {
            return Err(format!(
            "--size {}: --workload none runs no workload, so there is nothing to size; drop --size, or name a workload",
            a.size.trim()
        ))
        }
        "none" => None,
        w => Some(values::sized(&[<Workload as values::Named>::parse("--workload", w)?], &a.size)?.remove(0)),
    };
    let set = ProbeSet { threads: a.threads, prio: a.prio, interval_us: a.interval_us, distance_us: a.distance_us };
    set.validate().map_err(named)?;
    let specs = set.specs();
    let stop = match (a.duration, a.loops) {
        (Some(_), Some(_)) => return Err("--duration and --loops: give one of them, not both".into()),
        (_, Some(n)) => {
            measure::validate_loops(n, &specs).map_err(named)?;
            Stop::Loops(n)
        }
        (d, None) => {
            let s = d.unwrap_or(5.0);
            measure::validate_seconds(s).map_err(named)?;
            if s * 1e6 < a.interval_us as f64 {
                return Err(format!(
                    "--duration {s} is shorter than one probe period (--interval-us {})",
                    a.interval_us
                ));
            }
            Stop::After((s * 1e9) as u64)
        }
    };
    let cpu = crate::compare_cmd::cpu_policy(&a.cpu_nice)?;
    Ok(Plan { model, workload, specs, stop, cpu })
}

pub(crate) fn run(a: &LatencyArgs) -> Result<(), String> {
    let Plan { model, workload, specs, stop, cpu } = plan(a)?;
    let out = probe::run_kernel(model, a.cpus.get(), workload, &specs, stop, cpu)?;
    let wname = workload.map_or("none", |w| w.name());
    if a.json {
        let probes: Vec<_> = specs
            .iter()
            .zip(&out.hists)
            .map(|(s, h)| {
                serde_json::json!({"prio": s.prio, "interval_us": s.interval_ns / 1000,
                    "latency_ns": h.summary(), "latency_undisturbed_ns": h.undisturbed(),
                    "host_disturbed": h.disturbed(), "histogram": h.bins()})
            })
            .collect();
        let v = serde_json::json!({"model": model.name(), "workload": wname,
            "throughput_ops_s": out.units_per_s(), "unit": workload.map(|w| w.info().unit), "policy": out.policy,
            "probes": probes});
        outln!("{v}");
        return Ok(());
    }
    let unit = workload.map_or("units", |w| w.info().unit);
    let policy = out.policy.as_deref().unwrap_or("");
    outln!("preempt={model}, workload {wname}: {:.0} {unit}/s beside the probes; {policy}", out.units_per_s());
    for (i, (s, h)) in specs.iter().zip(&out.hists).enumerate() {
        out!("{}", render(i, s.prio, s.interval_ns / 1000, h));
    }
    Ok(())
}

/// One probe as text: cyclictest's summary line and a histogram of `#` bars (log of counts).
fn render(i: usize, prio: u8, interval_us: u64, h: &LatencyHist) -> String {
    let l = h.summary();
    let us = |ns: u64| ns as f64 / 1e3;
    let mut s = format!(
        "T:{i} P:{prio} I:{interval_us}us C:{} Min:{:.1} P50:{:.1} P99:{:.1} P99.9:{:.1} Max:{:.1} (us)\n",
        l.count,
        us(l.min),
        us(l.p50),
        us(l.p99),
        us(l.p999),
        us(l.max)
    );
    let u = h.undisturbed();
    s += &format!(
        "     undisturbed by the host: C:{} P50:{:.1} P99:{:.1} Max:{:.1} (us); disturbed: {}\n",
        u.count,
        us(u.p50),
        us(u.p99),
        us(u.max),
        h.disturbed()
    );
    let max_log = h.bins().iter().map(|b| ((b.count + 1) as f64).log2()).fold(1.0, f64::max);
    for b in h.bins().iter().filter(|b| b.count > 0) {
        let bar = "#".repeat((((b.count + 1) as f64).log2() / max_log * 40.0).ceil() as usize);
        s += &format!("  {:>9.1} .. {:>9.1} us {:>8} {bar}\n", us(b.lo_ns), us(b.hi_ns), b.count);
    }
    s
}
