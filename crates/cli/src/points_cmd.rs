//! `atomkernel points`: the preemption-point table (see `services::symbols::point_table`).

#[derive(clap::Args)]
pub(crate) struct PointsArgs {
    /// Print one JSON object per site.
    #[arg(long)]
    json: bool,
}

/// `atomkernel points`: the site table with functions and source lines.
pub(crate) fn run(a: &PointsArgs) -> Result<(), String> {
    let json = a.json;
    for r in services::symbols::point_table()? {
        if json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        } else {
            let f = r.function.as_deref().unwrap_or("?");
            println!("{:#014x}  {}:{}:{}  {}", r.addr, r.file, r.line, r.column, f);
        }
    }
    Ok(())
}
