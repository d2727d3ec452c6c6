//! `atomkernel points`: the preemption-point table (see `lab::symbols::point_table`), or
//! with `--check` the static latency checker (see `lab::points_check`).

#[derive(clap::Args)]
pub(crate) struct PointsArgs {
    /// Print one JSON object per line (per site, or per function with `--check`).
    #[arg(long)]
    json: bool,
    /// Check every function with points or called from one: its longest point-free stretch,
    /// its loops without a point (and where one would bound each), its calls into unbounded
    /// functions. Exits 1 if a loop of the shipped services (the lab's workloads, the
    /// scenario) can spin without a point.
    #[arg(long)]
    check: bool,
}

/// `atomkernel points`: the site table with functions and source lines.
pub(crate) fn run(a: &PointsArgs) -> Result<(), String> {
    if a.check {
        return check(a.json);
    }
    let json = a.json;
    for r in lab::symbols::point_table()? {
        if json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        } else {
            let f = r.function.as_deref().unwrap_or("?");
            println!("{:#014x}  {}:{}:{}  {}", r.addr, r.file, r.line, r.column, f);
        }
    }
    Ok(())
}

/// `atomkernel points --check`: exits 1 when a shipped service has an unbounded stretch.
fn check(json: bool) -> Result<(), String> {
    let rows = lab::points_check::check()?;
    for r in &rows {
        if json {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        } else {
            println!("{}", lab::points_check::render(r));
        }
    }
    let bad = lab::points_check::shipped_unbounded(&rows);
    if !json {
        let unbounded = rows.iter().filter(|r| r.is_unbounded()).count();
        println!(
            "{} functions checked, {unbounded} unbounded (a loop, or a call into one); \
             {} unbounded loop(s) in the shipped services' source",
            rows.len(),
            bad.len()
        );
    }
    if !json {
        let x = kernel::model::patch::exact::build()?;
        let (decoded, analysed, unresolved) = x.functions;
        println!(
            "exact table: {decoded} functions decoded, {analysed} analysed, {unresolved} unresolved; {} points; \
             built in {:.1} ms; {} ranges, {} bytes ({:.0} bytes per point)",
            x.points,
            x.build_ns as f64 / 1e6,
            x.table.ranges(),
            x.table.memory_bytes(),
            x.table.memory_bytes() as f64 / x.points.max(1) as f64
        );
    }
    if !bad.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
