//! `compare`'s terminal output: the answer first (one verdict line per workload), then per
//! workload a table of at most 100 columns, one row per subject, the floor first: where the RT
//! task gets the CPU, p50 and p99 with the range of the rounds, the normal-path cost with its
//! range, the share of samples the host held and the host stalls seen; then what the figures
//! mean. `--wide` adds the full table (every figure of every row).
//!
//! **Mechanism.** The verdict is `lab::verdict`'s (a model is lowest only when its lead exceeds
//! the spread of the rounds); the figures are the rows'. A row whose p99 the host set (samples
//! whose period the host took the subject's thread: at least 1% of them, and a p99 more than
//! twice the undisturbed one) is marked `*`; one the host's stalls set (more than twice the
//! p99 of the rounds without a stall) is marked `!`.
//!
//! **Invariant.** Every line but `--wide`'s fits in [`lab::verdict::WIDTH`] columns.

use crate::report;
use lab::compare::CompareConfig;
use lab::row::Row;
use lab::verdict::{self, Range};

/// The terminal output of a comparison: verdict, compact tables, legend, and with `wide` the
/// full table.
pub(crate) fn table(cfg: &CompareConfig, rows: &[Row], wide: bool) -> String {
    let mut s = String::new();
    if cfg.rounds < 2 {
        s += "smoke test: one round has no spread, so nothing is ranked (use --rounds 3 or more)\n";
    }
    for v in report::verdict(rows) {
        s += &format!("{v}\n");
    }
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for &w in &workloads {
        s += "\n";
        s += &compact(w, rows);
    }
    for &w in &workloads {
        s += &breakdown(w, rows);
    }
    s += &legend(cfg);
    for note in cfg.skipped() {
        s += &format!("note: {note}\n");
    }
    if wide {
        s += "\n";
        s += &wide_table(cfg, rows);
        for line in report::policies(rows) {
            s += &format!("{line}\n");
        }
    } else {
        s += "every figure of every row, and how the host ran each subject: --wide\n";
    }
    s
}

/// A figure in µs: one decimal below 100, none above.
pub(crate) fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// `value [lo,hi]`, the range of the rounds, when there are two rounds or more.
pub(crate) fn ranged(r: Range, f: impl Fn(f64) -> String) -> String {
    if r.rounds < 2 {
        f(r.value)
    } else {
        format!("{} [{},{}]", f(r.value), f(r.lo), f(r.hi))
    }
}

/// Whether the host set the row's p99: it held the subject's thread during at least 1% of the
/// samples, and the p99 of all samples is more than twice that of the undisturbed ones.
pub(crate) fn host_set_p99(r: &Row) -> bool {
    r.host_disturbed * 100 >= r.samples.max(1) && r.latency_ns.p99 > 2 * r.latency_undisturbed_ns.p99
}

/// The marks of a row's p99: `*` when the host set it ([`host_set_p99`]), `!` when the host's
/// stalls did (`lab::row::StallRow::set_p99`).
pub(crate) fn p99_mark(r: &Row) -> &'static str {
    let stall_set = r.host_stalls.as_ref().is_some_and(|x| x.set_p99(r.latency_ns.p99));
    match (host_set_p99(r), stall_set) {
        (true, true) => "*!",
        (true, false) => "*",
        (false, true) => "!",
        (false, false) => "",
    }
}

/// The host stalls seen during a row's latency runs; `-` without a watcher.
pub(crate) fn stalls(r: &Row) -> String {
    r.host_stalls.as_ref().map_or("-".into(), |x| x.count.to_string())
}

/// One workload's table: a row per subject, in the comparison's order (the floor first), each
/// column as wide as its widest cell (so labels with a bottom-half option still fit).
fn compact(w: &str, rows: &[Row]) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
    let none = |r: &Row| mine.iter().find(|n| n.model == "none" && n.bh == r.bh).copied();
    let signed = |v: f64| format!("{v:+.1}");
    let mut cells: Vec<[String; 7]> =
        vec![[w, "RT runs at", "p50 us", "p99 us", "cost %", "host", "stalls"].map(String::from)];
    for r in mine.iter().copied() {
        let cost = match none(r) {
            Some(_) if r.model == "none" => "reference".into(),
            Some(n) => verdict::cost_pct(r, n).map_or_else(|| "-".into(), |c| ranged(c, signed)),
            None => "-".into(),
        };
        let held = r.host_disturbed as f64 * 100.0 / r.samples.max(1) as f64;
        cells.push([
            report::label(r, rows),
            r.rt_runs_at.clone(),
            ranged(verdict::p50_us(r), us),
            ranged(verdict::p99_us(r), us) + p99_mark(r),
            cost,
            format!("{held:.0}%"),
            stalls(r),
        ]);
    }
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..7).map(width).collect();
    let mut s = String::new();
    for c in &cells {
        let mut l = format!("{:<w0$}  {:<w1$}", c[0], c[1], w0 = widths[0], w1 = widths[1]);
        for i in 2..7 {
            l += &format!("  {:>w$}", c[i], w = widths[i]);
        }
        s += l.trim_end();
        s += "\n";
    }
    s
}

/// Where each model's wakeups went for workload `w`: one line per model, each part's median
/// in µs, then the worst wakeup's largest part and the code that held the CPU.
fn breakdown(w: &str, rows: &[Row]) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.workload == w && r.breakdown.is_some()).collect();
    if mine.is_empty() {
        return String::new();
    }
    let fit = |l: String| {
        if l.chars().count() > verdict::WIDTH {
            l.chars().take(verdict::WIDTH - 1).collect::<String>() + "…\n"
        } else {
            l + "\n"
        }
    };
    let head: Vec<String> = kernel::time::WakeupParts::NAMES.iter().map(|n| format!("{n:>8}")).collect();
    let mut s = fit(format!("\n{:<22}{} | the worst wakeup", format!("{w}: median us"), head.concat()));
    for r in mine {
        let Some(b) = &r.breakdown else { continue };
        let med: Vec<String> = b.median_ns.ns().iter().map(|&ns| format!("{:>8}", us(ns as f64 / 1e3))).collect();
        let (part, big) = b.worst_largest();
        let at = if part == "wait" { format!(" in {}", short_place(&b.worst_held_at)) } else { String::new() };
        let total = us(b.worst_total_ns as f64 / 1e3);
        s += &fit(format!(
            "{:<22}{} | {total}: {part} {}{at}",
            report::label(r, rows),
            med.concat(),
            us(big as f64 / 1e3)
        ));
        if let Some(h) = &r.handler_parts_ns_per_event {
            let u = |ns: f64| format!("{:.2}", ns / 1e3);
            s += &fit(format!(
                "{:<22}  its exit, arming, us: look-up {}, unwind {}, arm {}, redirect {}",
                "",
                u(h.lookup),
                u(h.unwind),
                u(h.poke),
                u(h.redirect)
            ));
        }
    }
    s
}

/// `function at file:line` made short for a table: the function's last path segment without
/// generics, the file's name.
fn short_place(place: &str) -> String {
    let (func, at) = place.split_once(" at ").unwrap_or((place, ""));
    let mut depth = 0;
    let plain: String = func
        .chars()
        .filter(|&c| {
            depth += i32::from(c == '<') - i32::from(c == '>');
            depth == 0 && c != '>'
        })
        .collect();
    let name = plain.rsplit("::").find(|s| !s.is_empty() && !s.starts_with("{{")).unwrap_or(&plain);
    let file = at.rsplit('/').next().unwrap_or(at);
    if file.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({file})")
    }
}

/// What the compact tables' columns are, and how the probes ran.
fn legend(cfg: &CompareConfig) -> String {
    let p = &cfg.probes;
    let mut s = format!(
        "\np50, p99: every sample of {} rounds, [the lowest round, the highest]\n\
         cost: throughput lost against none (the rounds paired); host: samples whose period\n\
         the host took the subject's thread (*: they set the p99; see --wide's u_p99_us)\n\
         stalls: wakeups 1 ms late or more of a SCHED_FIFO 99 watcher during the latency runs\n\
         (!: the rounds with one set the p99; -: no watcher, it needs SCHED_FIFO)\n",
        cfg.rounds
    );
    s += &format!(
        "probe: {} x SCHED_FIFO {} every {} us (cyclictest -t{} -p{} -i{} -d{}), {} s per run\n",
        p.threads, p.prio, p.interval_us, p.threads, p.prio, p.interval_us, p.distance_us, cfg.seconds
    );
    s += "floor: the same probes beside plain busy loops on the same host CPUs\n";
    s += "wakeup parts: delivery (host, to the handler), handler, exit (patch: arming), wait (for\n\
          the CPU's task to give it up), serve (to __schedule), switch (to the probe running)\n";
    if cfg.models.iter().any(|m| m.name().starts_with("patch-")) {
        let (ptable, leaf, sync) = (cfg.ptable.name(), cfg.patch_leaf.name(), cfg.patch_sync.name());
        s += &format!("patch models: ptable={ptable} patch_leaf={leaf} patch_sync={sync}\n");
    }
    if cfg.cpus > 1 {
        s += &format!("cpus={}: a worker bound to each CPU, every probe on every CPU\n", cfg.cpus);
    }
    s
}

/// The full table: every column of every row (the report's table too).
fn wide_table(cfg: &CompareConfig, rows: &[Row]) -> String {
    let mut s = String::from(
        "u_p50/u_p99: the samples during whose period the host did not preempt the subject's thread; \
         disturb: the samples it did\n",
    );
    if cfg.cpus > 1 {
        s += &format!(
            "x_p50/x_p99: the cross-CPU probe (an interrupt on CPU {} wakes an RT task on CPU {}, every {} us); cpu_p99: each CPU's probes; scaling: throughput against the same subject on one CPU; coll/ev: the patch models' collateral hits per RT event (armed sites met by CPUs with no event of their own)\n",
            lab::cross::CPUS.0,
            lab::cross::CPUS.1,
            cfg.probes.interval_us * lab::measure::CROSS_PERIOD_FACTOR
        );
    }
    let labels: Vec<String> = rows.iter().map(|r| report::label(r, rows)).collect();
    let cols = report::columns(rows);
    let cells: Vec<Vec<String>> = rows.iter().map(|r| report::row_cells(r, rows)).collect();
    let mw = labels.iter().map(String::len).max().unwrap_or(0).max(15);
    // Each column as wide as its header or widest figure; the undisturbed ones after a `|`.
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| cells.iter().map(|c| c[i].chars().count()).chain([cols[i].0.len()]).max().unwrap_or(0))
        .collect();
    let line = |workload: &str, model: &str, cols: &mut dyn Iterator<Item = &str>| {
        let mut l = format!("{workload:<9} {model:<mw$}");
        for (i, (c, w)) in cols.zip(&widths).enumerate() {
            l += if i == 8 || i == report::COLUMNS.len() { " | " } else { " " };
            l += &format!("{c:>w$}");
        }
        l + "\n"
    };
    s += &line("workload", "model", &mut cols.iter().map(|c| c.0));
    for ((r, label), c) in rows.iter().zip(&labels).zip(&cells) {
        s += &line(&r.workload, label, &mut c.iter().map(String::as_str));
    }
    s
}
