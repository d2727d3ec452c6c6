//! The HTML report of `atomkernel compare --report DIR`: one self-contained page with the
//! answer in words, then per workload what a reader wants first (every subject's latency CDF
//! on one chart, and the trade-off of normal-path cost against p99 latency), the table, and
//! more SVG charts (latency histograms per model on log scales, overhead bars, p50 and p99
//! bars, the seed scenario's timeline per model), plus the rows as JSON.
//!
//! **Mechanism.** The page is written from the comparison's rows and from one run of the seed
//! scenario per model; charts are inline SVG ([`crate::svg`]). A small inline script counts the
//! charts the browser actually laid out, and the CDF curves and trade-off points it drew, and
//! writes the counts into the page (`#svg-count`), which is what the headless-browser test
//! reads.
//!
//! **Invariant.** The page references nothing outside itself: no network, no other file.

use crate::svg::{self, esc};
use lab::compare::CompareConfig;
use lab::row::Row;
use services::scenario::{self, ScenarioConfig};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A row's subject as the table and the report show it: the model with its `bh=` option
/// (`full/threaded`) when the workload's rows have more than one option, else the `model`.
pub(crate) fn label(r: &Row, rows: &[Row]) -> String {
    let Some(bh) = &r.bh else { return r.model.clone() };
    let several = rows.iter().any(|o| o.workload == r.workload && o.bh.as_ref().is_some_and(|b| b != bh));
    if several {
        format!("{}/{bh}", r.model)
    } else {
        r.model.clone()
    }
}

/// The results table's columns after workload and model: (the terminal's header, the HTML
/// page's header), in one place with [`cells`] for both tables.
pub(crate) const COLUMNS: [(&str, &str); 11] = [
    ("throughput/s", "throughput/s"),
    ("overhead%", "overhead %"),
    ("min_us", "min µs"),
    ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"),
    ("p99.9_us", "p99.9 µs"),
    ("max_us", "max µs"),
    ("samples", "samples"),
    ("u_p50_us", "undisturbed p50 µs"),
    ("u_p99_us", "undisturbed p99 µs"),
    ("disturb", "disturbed"),
];

/// A row's figures under [`COLUMNS`], formatted once for both tables.
pub(crate) fn cells(r: &Row) -> [String; 11] {
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1e3);
    let (l, u) = (r.latency_ns, r.latency_undisturbed_ns);
    [
        r.throughput_ops_s.map_or_else(|| "-".to_string(), |t| format!("{t:.0} {}", r.unit)),
        r.overhead_pct.map_or_else(|| "-".to_string(), |o| format!("{o:.2}")),
        us(l.min),
        us(l.p50),
        us(l.p99),
        us(l.p999),
        us(l.max),
        r.samples.to_string(),
        us(u.p50),
        us(u.p99),
        r.host_disturbed.to_string(),
    ]
}

/// The columns a comparison on several CPUs adds (after [`COLUMNS`]): the cross-CPU probe,
/// each CPU's p99 (`a/b/...`, CPU 0's first), the throughput against one CPU, and the patch
/// models' collateral hits per RT event (armed sites met by CPUs with no event of their own).
pub(crate) const SMP_COLUMNS: [(&str, &str); 5] = [
    ("x_p50_us", "cross-CPU p50 µs"),
    ("x_p99_us", "cross-CPU p99 µs"),
    ("cpu_p99_us", "p99 per CPU µs"),
    ("scaling", "throughput vs 1 CPU"),
    ("coll/ev", "collateral hits per RT event"),
];

/// A row's figures under [`SMP_COLUMNS`] (`-` for what the subject did not measure).
pub(crate) fn smp_cells(r: &Row) -> [String; 5] {
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1e3);
    let dash = || "-".to_string();
    let x = r.cross_cpu.as_ref();
    let per = r.latency_per_cpu_ns.as_ref().map(|p| p.iter().map(|l| us(l.p99)).collect::<Vec<_>>().join("/"));
    [
        x.map_or_else(dash, |x| us(x.latency_ns.p50)),
        x.map_or_else(dash, |x| us(x.latency_ns.p99)),
        per.unwrap_or_else(dash),
        r.scaling.map_or_else(dash, |s| format!("{s:.2}x")),
        r.collateral_per_event.map_or_else(dash, |c| format!("{c:.2}")),
    ]
}

/// The columns of a table of `rows`: [`COLUMNS`], and [`SMP_COLUMNS`] when they ran on several
/// CPUs.
pub(crate) fn columns(rows: &[Row]) -> Vec<(&'static str, &'static str)> {
    let smp = rows.iter().any(|r| r.cpus > 1);
    COLUMNS.iter().chain(SMP_COLUMNS.iter().filter(|_| smp)).copied().collect()
}

/// A row's figures under [`columns`].
pub(crate) fn row_cells(r: &Row, rows: &[Row]) -> Vec<String> {
    let smp = rows.iter().any(|r| r.cpus > 1);
    let mut c: Vec<String> = cells(r).into();
    if smp {
        c.extend(smp_cells(r));
    }
    c
}

/// The answer per workload, one line each (at most 100 columns), judged against the spread of
/// the rounds (`lab::verdict`): a model is named lowest only when its lead exceeds the noise.
pub(crate) fn verdict(rows: &[Row]) -> Vec<String> {
    lab::verdict::judge(rows, |r| label(r, rows)).iter().map(lab::verdict::Verdict::line).collect()
}

/// The page `write` writes into the report directory.
pub(crate) const INDEX: &str = "index.html";
/// The rows as JSON, beside the page.
pub(crate) const RESULTS: &str = "results.json";

/// Writes `DIR/index.html` and `DIR/results.json`; returns the page's path.
pub(crate) fn write(dir: &Path, cfg: &CompareConfig, rows: &[Row]) -> Result<PathBuf, String> {
    let mut timelines = Vec::new();
    for &m in &cfg.models {
        let boot = kernel::Config { preempt: m, cpus: cfg.cpus, ..kernel::Config::default() };
        timelines
            .push(scenario::run_with(boot, &ScenarioConfig::default()).map_err(|e| format!("seed scenario: {e}"))?);
    }
    let html = page(cfg, rows, &timelines);
    let path = dir.join(INDEX);
    std::fs::write(&path, html).map_err(|e| format!("--report: cannot write {}: {e}", path.display()))?;
    let json = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    let jpath = dir.join(RESULTS);
    std::fs::write(&jpath, json).map_err(|e| format!("--report: cannot write {}: {e}", jpath.display()))?;
    Ok(path)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}\
.grid{display:flex;flex-wrap:wrap;gap:8px}svg{background:#fafafa;border:1px solid #ddd}h2{margin-top:1.6em}";

/// Counts the charts laid out with something drawn (`data-rendered`), and apart the CDFs with a
/// drawn curve per subject (`data-cdf`) and the trade-off charts with a drawn point per subject
/// that has an overhead figure (`data-tradeoff`).
const SCRIPT: &str =
    "<script>(function(){var n=0,c=0,t=0;function drawn(x){var b=x.getBBox();return b.width>0||b.height>0;}\
document.querySelectorAll('svg.chart').forEach(function(s){var r=s.getBoundingClientRect();\
if(!(r.width>0&&r.height>0&&s.querySelector('rect,line')))return;n++;\
var k=s.querySelectorAll('polyline.series'),p=s.querySelectorAll('circle.point');\
if(s.classList.contains('cdf')&&k.length>0&&Array.prototype.every.call(k,drawn))c++;\
if(s.classList.contains('tradeoff')&&p.length>0&&Array.prototype.every.call(p,drawn))t++;});\
var e=document.getElementById('svg-count');e.textContent=String(n);e.setAttribute('data-rendered',String(n));\
e.setAttribute('data-cdf',String(c));e.setAttribute('data-tradeoff',String(t));})();</script>";

/// The whole page.
pub(crate) fn page(cfg: &CompareConfig, rows: &[Row], timelines: &[scenario::ScenarioResult]) -> String {
    let mut s = format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>atomkernel latency lab</title><style>{STYLE}</style></head><body>");
    s += "<h1>atomkernel latency lab</h1>";
    let p = &cfg.probes;
    let _ = write!(
        s,
        "<p>Probe: {} × SCHED_FIFO {} every {} µs (cyclictest -t{} -p{} -i{} -d{}); {} s per run, {} round(s), interleaved. Machine: {}.</p>",
        p.threads, p.prio, p.interval_us, p.threads, p.prio, p.interval_us, p.distance_us, cfg.seconds, cfg.rounds, esc(&machine())
    );
    s += "<h2>The answer</h2><ul>";
    for v in verdict(rows) {
        let _ = write!(s, "<li>{}</li>", esc(&v));
    }
    s += "</ul><p>Charts rendered: <span id=\"svg-count\">(the inline script did not run)</span></p>";
    s += &first_charts(rows);
    s += &table(rows);
    for note in cfg.skipped() {
        let _ = write!(s, "<p>Note: {}</p>", esc(&note));
    }
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for w in workloads {
        let wr: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        let _ = write!(s, "<h2>Workload: {}</h2><div class=\"grid\">", esc(w));
        let over: Vec<(String, f64)> =
            wr.iter().map(|r| (label(r, rows), r.overhead_pct.unwrap_or(f64::NAN))).collect();
        s += &svg::bars(&format!("{w}: throughput overhead against none"), &over, "%");
        let p50: Vec<(String, f64)> = wr.iter().map(|r| (label(r, rows), r.latency_ns.p50 as f64 / 1e3)).collect();
        s += &svg::log_bars(&format!("{w}: p50 latency (log scale)"), &p50, " µs");
        let p99: Vec<(String, f64)> = wr.iter().map(|r| (label(r, rows), r.latency_ns.p99 as f64 / 1e3)).collect();
        s += &svg::log_bars(&format!("{w}: p99 latency (log scale)"), &p99, " µs");
        s += "</div><div class=\"grid\">";
        let nbins = wr.iter().map(|r| r.histogram.len()).max().unwrap_or(1);
        for r in &wr {
            s += &svg::histogram(&format!("{} / {}", label(r, rows), w), &r.histogram, nbins);
        }
        s += "</div>";
    }
    s += "<h2>The seed scenario per model</h2><p>A 5-atom system call of 1 ms atoms; a device interrupt 0.2 ms into atom 1 wakes a SCHED_FIFO task.</p>";
    for t in timelines {
        s += &format!("<div>{}</div>", svg::timeline(t));
    }
    s + SCRIPT + "</body></html>\n"
}

/// Per workload, what a reader wants first: every subject's latency CDF on one chart, and the
/// trade-off of normal-path cost (overhead against `none`) against p99 latency.
fn first_charts(rows: &[Row]) -> String {
    let mut s = String::from(
        "<h2>Latency and cost per workload</h2><p>Left: the latency CDF of every model and peer (lateness on a log scale; \
         the quantile on a scale of nines, so the tail is as readable as the median). Right: what each costs on the normal \
         path (throughput overhead against <code>none</code>; a peer's also holds its compiler's and runtime's code) against \
         its p99 latency: lower left is better.</p>",
    );
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for w in workloads {
        let wr: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        let series: Vec<svg::Series> = wr
            .iter()
            .map(|r| svg::Series { label: label(r, rows), samples: r.samples, points: r.cdf_ns.clone() })
            .collect();
        let points: Vec<(String, Option<f64>, u64)> =
            wr.iter().map(|r| (label(r, rows), r.overhead_pct, r.latency_ns.p99)).collect();
        let _ = write!(
            s,
            "<div class=\"grid\">{}{}</div>",
            svg::cdf(&format!("{w}: latency CDF"), &series),
            svg::tradeoff(&format!("{w}: normal-path cost against p99 latency"), &points)
        );
    }
    s
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("<h2>Table</h2><table><tr><th>workload</th><th>model</th>");
    for (_, html) in columns(rows) {
        let _ = write!(s, "<th>{html}</th>");
    }
    s += "</tr>";
    for r in rows {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td>", esc(&r.workload), esc(&label(r, rows)));
        for c in row_cells(r, rows) {
            let _ = write!(s, "<td>{}</td>", esc(&c));
        }
        s += "</tr>";
    }
    s += "</table><p>Undisturbed: the samples during whose period the host did not preempt the thread the subject runs on (its involuntary context switches did not go up); disturbed: the others.</p>";
    for line in policies(rows) {
        let _ = write!(s, "<p>{}</p>", esc(&line));
    }
    s
}

/// How the host scheduled each subject, once per distinct line: the models' kernel CPU
/// threads together when they all got the same, then the floor and each peer.
pub(crate) fn policies(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let models: Vec<&Row> = rows.iter().filter(|r| r.bh.is_some()).collect();
    if models.windows(2).all(|w| w[0].policy == w[1].policy) {
        if let Some(r) = models.first() {
            out.push(format!("every model: {}", r.policy));
        }
    }
    for r in rows {
        let line = format!("{}: {}", r.model, r.policy);
        let shown = r.bh.is_some() && out.first().is_some_and(|l| l.starts_with("every model"));
        if !shown && !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// "N CPUs, MODEL NAME, Linux RELEASE" from /proc, as far as it can be read.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |l| l.trim_start_matches([' ', '\t', ':']));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", release.trim())
}
