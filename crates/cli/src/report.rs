//! The HTML report of `atomkernel compare --report DIR`: one self-contained page that leads
//! with the answer. On top the verdict lines and, per workload, the compact table the terminal
//! prints (the floor first), the trade-off of normal-path cost against p99 latency and where
//! each model's wakeups went; then the seed scenario's timelines on one ms axis; folded below
//! (`<details>`), the latency distributions (a CDF per workload, a histogram per subject), the
//! per-CPU figures and the full table; the rows as JSON beside the page.
//!
//! **Mechanism.** The page is written from the comparison's rows (every figure through
//! `lab::verdict` and [`row_cells`], as the terminal's) and from one run of the seed scenario per
//! model; charts are inline SVG ([`crate::svg`], [`crate::report_charts`]). A small inline script
//! opens the folds, measures what the browser laid out (the charts with something drawn, the
//! CDF curves, the trade-off points, the breakdown segments, every pair of overlapping labels
//! and markers on the trade-offs, the labels outside their chart), closes the folds, and
//! writes the counts and the page's height into `#svg-count`, which the headless-browser test
//! reads.
//!
//! **Invariant.** The page references nothing outside itself: no network, no other file.

use crate::compare_table::{ranged, us};
use crate::report_charts as charts;
use crate::svg::{self, esc};
use lab::compare::CompareConfig;
use lab::row::Row;
use lab::verdict;
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

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px;margin:.3em 0 .6em}\
td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}td:first-child,th:first-child{text-align:left}\
table.compact td:nth-child(2),table.full td:nth-child(2),table.full th:nth-child(2){text-align:left}tr.floor td{background:#eee}\
.grid{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}svg{background:#fafafa;border:1px solid #ddd}\
h2{margin:1em 0 .3em}#verdict{font-family:monospace;font-size:14px;padding-left:1.2em}.note{color:#555;font-size:13px}\
details{margin:.5em 0}summary{cursor:pointer;font-weight:bold;font-size:1.1em}";

/// Opens the folds, counts what the browser laid out (see the module's doc), closes them, and
/// writes the counts into `#svg-count`.
const SCRIPT: &str = "<script>(function(){var ds=[].slice.call(document.querySelectorAll('details'));\
var height=document.documentElement.scrollHeight;ds.forEach(function(d){d.open=true;});\
var n=0,c=0,t=0,b=0,o=0,out=0,l=0;function drawn(x){var r=x.getBBox();return r.width>0||r.height>0;}\
function hit(a,q){return a.x<q.x+q.width&&q.x<a.x+a.width&&a.y<q.y+q.height&&q.y<a.y+a.height;}\
document.querySelectorAll('svg.chart').forEach(function(s){var r=s.getBoundingClientRect();\
if(!(r.width>0&&r.height>0&&s.querySelector('rect,line')))return;n++;\
var k=s.querySelectorAll('polyline.series'),p=s.querySelectorAll('circle.point'),g=s.querySelectorAll('rect.part');\
if(s.classList.contains('cdf')&&k.length>0&&[].every.call(k,drawn))c++;\
if(s.classList.contains('breakdown')&&g.length>0&&[].every.call(g,drawn))b++;\
if(!s.classList.contains('tradeoff'))return;if(p.length>0&&[].every.call(p,drawn))t++;\
var vb=s.viewBox.baseVal,L=[].map.call(s.querySelectorAll('text.label'),function(e){return e.getBBox();}),\
P=[].map.call(p,function(e){return e.getBBox();});l+=L.length;L.forEach(function(a,i){\
if(a.x<0||a.y<0||a.x+a.width>vb.width||a.y+a.height>vb.height)out++;\
for(var j=i+1;j<L.length;j++)if(hit(a,L[j]))o++;P.forEach(function(q){if(hit(a,q))o++;});});});\
ds.forEach(function(d){d.open=false;});var e=document.getElementById('svg-count');e.textContent=String(n);\
[['rendered',n],['cdf',c],['tradeoff',t],['breakdown',b],['labels',l],['overlaps',o],['clipped',out],['height',height]]\
.forEach(function(a){e.setAttribute('data-'+a[0],String(a[1]));});})();</script>";

/// The whole page.
pub(crate) fn page(cfg: &CompareConfig, rows: &[Row], timelines: &[scenario::ScenarioResult]) -> String {
    let mut s = format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>atomkernel latency lab</title><style>{STYLE}</style></head><body>");
    s += "<h1>atomkernel latency lab</h1><h2>The answer</h2>";
    if cfg.rounds < 2 {
        s += "<p><b>Smoke test:</b> one round has no spread, so nothing is ranked (use --rounds 3 or more).</p>";
    }
    s += "<ul id=\"verdict\">";
    for v in verdict(rows) {
        let _ = write!(s, "<li>{}</li>", esc(&v));
    }
    s += "</ul>";
    let p = &cfg.probes;
    let _ = write!(
        s,
        "<p class=\"note\">Per workload, a row per subject, the host's floor first (the same probes beside plain busy loops on the same host CPUs): \
         read each subject as the floor plus what it adds. p50, p99: every sample of {} round(s), [the lowest round, the highest]; \
         cost: throughput lost against <code>none</code> (the rounds paired); host held: samples whose period the host took the subject's thread \
         (*: they set the p99); host stalls: wakeups 1 ms late or more of a SCHED_FIFO 99 watcher during the latency runs \
         (!: the rounds with one set the p99; -: no watcher). Probe: {} × SCHED_FIFO {} every {} µs (cyclictest -t{} -p{} -i{} -d{}); {} s per run, interleaved. Machine: {}.</p>",
        cfg.rounds, p.threads, p.prio, p.interval_us, p.threads, p.prio, p.interval_us, p.distance_us, cfg.seconds, esc(&machine())
    );
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for &w in &workloads {
        let _ = write!(s, "<section class=\"workload\"><h2>{}</h2>{}", esc(w), compact(w, rows));
        let _ =
            write!(s, "<div class=\"grid\">{}{}</div></section>", tradeoff_chart(w, rows), breakdown_chart(w, rows));
    }
    for note in cfg.skipped() {
        let _ = write!(s, "<p class=\"note\">Note: {}</p>", esc(&note));
    }
    s += "<h2>The seed scenario</h2><p class=\"note\">A 5-atom system call of 1 ms atoms; a device interrupt 0.2 ms into atom 1 wakes a \
          SCHED_FIFO task (on several CPUs, the interrupt on CPU 0, the tasks on CPU 1). One run per model, on one time axis.</p>";
    s += &svg::timelines(timelines);
    s += "<details id=\"distributions\"><summary>Latency distributions: a CDF per workload, a histogram per subject</summary>\
          <p class=\"note\">CDF: lateness on a log scale, the quantile on a scale of nines (the tail reads as well as the median). \
          Histograms: half-octave bins, sample counts on a log scale.</p>";
    for &w in &workloads {
        s += &distributions(w, rows);
    }
    s += "</details>";
    s += &per_cpu(rows);
    let _ = write!(
        s,
        "<details id=\"full-table\"><summary>The full table: every figure of every row ({} columns)</summary>{}</details>",
        2 + columns(rows).len(),
        table(rows)
    );
    s += "<p class=\"note\">Charts rendered: <span id=\"svg-count\">(the inline script did not run)</span></p>";
    s + SCRIPT + "</body></html>\n"
}

/// The `none` row `r`'s cost is measured against.
fn none_of<'a>(r: &Row, rows: &'a [Row]) -> Option<&'a Row> {
    rows.iter().find(|n| n.workload == r.workload && n.model == "none" && n.bh == r.bh)
}

/// One workload's compact table, the terminal's (`compare_table`): a row per subject in the
/// comparison's order, the floor first.
fn compact(w: &str, rows: &[Row]) -> String {
    let mut s = format!(
        "<table class=\"compact\"><thead><tr><th>{}</th><th>RT runs at</th><th>p50 µs [lowest round, highest]</th>\
         <th>p99 µs [lowest round, highest]</th><th>cost % [lowest round, highest]</th><th>host held</th><th>host stalls</th></tr></thead><tbody>",
        esc(w)
    );
    for r in rows.iter().filter(|r| r.workload == w) {
        let cost = match none_of(r, rows) {
            Some(_) if r.model == "none" => "reference".into(),
            Some(n) => verdict::cost_pct(r, n).map_or_else(|| "-".into(), |c| ranged(c, |v| format!("{v:+.1}"))),
            None => "-".into(),
        };
        let held = r.host_disturbed as f64 * 100.0 / r.samples.max(1) as f64;
        let mark = crate::compare_table::p99_mark(r);
        let class = if r.model == "floor" { " class=\"floor\"" } else { "" };
        let _ = write!(
            s,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}{mark}</td><td>{}</td><td>{held:.0}%</td><td>{}</td></tr>",
            esc(&label(r, rows)),
            esc(&r.rt_runs_at),
            ranged(verdict::p50_us(r), us),
            ranged(verdict::p99_us(r), us),
            cost,
            crate::compare_table::stalls(r)
        );
    }
    s + "</tbody></table>"
}

/// Each subject's style on workload `w`'s charts: the models numbered in row order (the
/// palette's colours), the references (the floor, the peers) grey.
fn styles<'a>(w: &str, rows: &'a [Row]) -> Vec<(&'a Row, svg::Style)> {
    let (mut m, mut r) = (0, 0);
    let mut out = Vec::new();
    for row in rows.iter().filter(|x| x.workload == w) {
        let (i, style) = if row.bh.is_some() {
            (&mut m, svg::model_style as fn(usize) -> svg::Style)
        } else {
            (&mut r, svg::reference_style as fn(usize) -> svg::Style)
        };
        out.push((row, style(*i)));
        *i += 1;
    }
    out
}

fn tradeoff_chart(w: &str, rows: &[Row]) -> String {
    let mut models = Vec::new();
    let mut refs = Vec::new();
    for (r, style) in styles(w, rows) {
        if r.bh.is_some() {
            let cost = none_of(r, rows).and_then(|n| verdict::cost_pct(r, n));
            models.push(charts::Model { label: label(r, rows), color: style.color, p99: verdict::p99_us(r), cost });
        } else {
            refs.push(charts::Reference { label: label(r, rows), p99_us: verdict::p99_us(r).value });
        }
    }
    charts::tradeoff(&format!("{w}: normal-path cost against p99 latency (lower left is better)"), &models, &refs)
}

fn breakdown_chart(w: &str, rows: &[Row]) -> String {
    let bars: Vec<charts::Bar> = rows
        .iter()
        .filter(|r| r.workload == w)
        .filter_map(|r| {
            let b = r.breakdown.as_ref()?;
            let (part, big) = b.worst_largest();
            let total = svg::fig_us(b.worst_total_ns as f64 / 1e3);
            let text = format!("worst {total}: {part} {}", svg::fig_us(big as f64 / 1e3));
            let title = format!("{text}, the CPU held in {} ({} wakeups explained)", b.worst_held_at, b.explained);
            Some(charts::Bar { label: label(r, rows), median_ns: b.median_ns.ns(), worst: text, worst_title: title })
        })
        .collect();
    if bars.is_empty() {
        return String::new();
    }
    charts::breakdown(&format!("{w}: where each model's wakeups go (medians)"), &bars)
}

/// Workload `w`'s folded charts: the CDF of every subject, a histogram per subject.
fn distributions(w: &str, rows: &[Row]) -> String {
    let st = styles(w, rows);
    let series: Vec<svg::Series> = st
        .iter()
        .map(|(r, style)| svg::Series {
            label: label(r, rows),
            style: *style,
            samples: r.samples,
            points: r.cdf_ns.clone(),
        })
        .collect();
    let mut s = format!("<h3>{}</h3><div class=\"grid\">{}", esc(w), svg::cdf(&format!("{w}: latency CDF"), &series));
    let nbins = st.iter().map(|(r, _)| r.histogram.len()).max().unwrap_or(1);
    for (r, _) in &st {
        s += &svg::histogram(&format!("{} / {}", label(r, rows), w), &r.histogram, nbins);
    }
    s + "</div>"
}

/// The folded per-CPU figures, when the comparison ran on several CPUs: each CPU's probes,
/// the cross-CPU probe, the scaling and the collateral hits.
fn per_cpu(rows: &[Row]) -> String {
    let ncpu = rows.iter().filter_map(|r| r.latency_per_cpu_ns.as_ref().map(Vec::len)).max().unwrap_or(0);
    if !rows.iter().any(|r| r.cpus > 1) {
        return String::new();
    }
    let mut s = String::from("<details id=\"per-cpu\"><summary>Per-CPU figures</summary><table class=\"full\"><tr><th>workload</th><th>subject</th>");
    for c in 0..ncpu {
        let _ = write!(s, "<th>CPU {c} p50 / p99 / max µs</th>");
    }
    s += "<th>cross-CPU p50 / p99 µs</th><th>throughput vs 1 CPU</th><th>collateral hits per RT event</th></tr>";
    let f = |l: &lab::stats::Latency| {
        format!("{} / {} / {}", us(l.p50 as f64 / 1e3), us(l.p99 as f64 / 1e3), us(l.max as f64 / 1e3))
    };
    for r in rows {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td>", esc(&r.workload), esc(&label(r, rows)));
        let per = r.latency_per_cpu_ns.as_deref().unwrap_or(&[]);
        for c in 0..ncpu {
            let _ = write!(s, "<td>{}</td>", per.get(c).map_or_else(|| "-".into(), f));
        }
        let x = r.cross_cpu.as_ref().map_or_else(
            || "-".into(),
            |x| format!("{} / {}", us(x.latency_ns.p50 as f64 / 1e3), us(x.latency_ns.p99 as f64 / 1e3)),
        );
        let sc = r.scaling.map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
        let co = r.collateral_per_event.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let _ = write!(s, "<td>{x}</td><td>{sc}</td><td>{co}</td></tr>");
    }
    s + "</table></details>"
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("<table class=\"full\"><tr><th>workload</th><th>model</th>");
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
    s += "</table><p class=\"note\">Undisturbed: the samples during whose period the host did not preempt the thread the subject runs on (its involuntary context switches did not go up); disturbed: the others.</p>";
    for line in policies(rows) {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(&line));
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
