//! `atomkernel points`: the preemption-point table (see `lab::symbols::point_table`), or
//! with `--check` the static latency checker (see `lab::points_check`).
//!
//! **Mechanism.** `--check` prints `lab::points_check::report`: the verdict first, then the
//! shipped services' functions, then the unbounded kernel machinery, library code only with
//! `--all`; it ends with the exact table's size and build time.
//!
//! **Invariant.** The exit code is 1 exactly when `lab::points_check::shipped_unbounded` finds
//! a loop of the shipped services' source that can spin without a point, whatever is printed.

use crate::output::outln;
#[derive(clap::Args)]
pub(crate) struct PointsArgs {
    /// Print one JSON object per line (per site, or per function with `--check`).
    #[arg(long)]
    json: bool,
    /// Check every function with points or called from one: its longest point-free stretch,
    /// its loops without a point (and where one would bound each), its calls into unbounded
    /// functions. Prints the verdict first; exits 1 if a loop of the shipped services (the
    /// lab's workloads, the scenario) can spin without a point.
    #[arg(long)]
    check: bool,
    /// With `--check`: every function in full, bounded project code and library code (Rust's
    /// std, dependencies) included.
    #[arg(long, requires = "check")]
    all: bool,
}

/// `atomkernel points`: the site table with functions and source lines.
pub(crate) fn run(a: &PointsArgs) -> Result<(), String> {
    if a.check {
        return check(a.json, a.all);
    }
    let json = a.json;
    for r in lab::symbols::point_table()? {
        if json {
            outln!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        } else {
            let f = r.function.as_deref().unwrap_or("?");
            outln!("{:#014x}  {}:{}:{}  {}", r.addr, r.file, r.line, r.column, f);
        }
    }
    Ok(())
}

/// `atomkernel points --check`: exits 1 when a shipped service has an unbounded loop.
fn check(json: bool, all: bool) -> Result<(), String> {
    let rows = lab::points_check::check()?;
    if json {
        for r in &rows {
            outln!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    } else {
        let report = lab::points_check::report(&rows, lab::points_check::LAB_SOURCES, all);
        for line in &report.lines {
            outln!("{line}");
        }
        let x = kernel::model::patch::exact::build()?;
        let (decoded, analysed, unresolved) = x.functions;
        let (points, ms, ranges, bytes) = (x.points, x.build_ns as f64 / 1e6, x.table.ranges(), x.table.memory_bytes());
        if all {
            outln!(
                "exact table: {decoded} functions decoded, {analysed} analysed, {unresolved} unresolved; \
                 {points} points; built in {ms:.1} ms; {ranges} ranges, {bytes} bytes ({:.0} bytes per point)",
                bytes as f64 / points.max(1) as f64
            );
        } else {
            outln!(
                "exact table: {analysed}/{decoded} functions analysed ({unresolved} unresolved), {points} points, \
                 {ranges} ranges, {bytes} B, {ms:.1} ms"
            );
        }
    }
    if !lab::points_check::shipped_unbounded(&rows).is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
