//! `atomkernel qemu check`: the static latency bound checked against every measured sample on
//! bare metal, each violation named by its `file:line`.
//!
//! **Mechanism.** One boot per patch model under the exact clock (`-icount`, always):
//! `image.run=bound-check` (crates/arch-metal/src/bound_check.rs) lands the device's
//! interrupts on pseudo-random instructions of the workloads, measures the instructions the
//! interrupted code ran until the point that served the RT event, and compares each with
//! `codeflow`'s bound for that code; it prints one `bound_check` line per workload and one
//! `bound_violation` line per violation (the RIP, both figures). This command reads them,
//! resolves each violation's RIP to its source line in the image's own debug information
//! ([`lab::symbols::places_in_file`]), and prints the verdict, the substrate, a row per model
//! and workload, then the violations.
//!
//! **Invariant.** The verdict says "within the bound" only if every boot ended SUCCESS and no
//! line reported a violation; a boot that ended otherwise than SUCCESS or FAILED (the image's
//! verdict on violations) is an error; the command exits non-zero on any violation.

use super::{grouped, lines_of, Session};
use crate::output::out;
use kernel::PreemptModel;
use serde::{Deserialize, Serialize};

/// The image's workloads for the check: the lab's four, and its own control (`direct-hog`:
/// the hog's atoms by direct calls) and broken one (`broken-hog`: `preempt_disable` held
/// across its points).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckWorkload {
    Loader,
    Copy,
    Checksum,
    Hog,
    DirectHog,
    BrokenHog,
}

impl CheckWorkload {
    fn name(self) -> &'static str {
        match self {
            CheckWorkload::Loader => "loader",
            CheckWorkload::Copy => "copy",
            CheckWorkload::Checksum => "checksum",
            CheckWorkload::Hog => "hog",
            CheckWorkload::DirectHog => "direct-hog",
            CheckWorkload::BrokenHog => "broken-hog",
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CheckArgs {
    /// Workloads, a comma list (default: loader, copy, checksum, hog, direct-hog).
    #[arg(long, value_enum, value_delimiter = ',')]
    workload: Vec<CheckWorkload>,
    /// Samples per workload and model (`image.samples=`), 1..=10000.
    #[arg(long, default_value_t = 200)]
    samples: u64,
    /// The seed of the interrupts' pseudo-random instants (`image.seed=`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The image's `bound_check` line.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct CheckLine {
    pub(super) model: String,
    pub(super) workload: String,
    pub(super) samples: u64,
    pub(super) checked: u64,
    pub(super) unknown: u64,
    pub(super) violations: u64,
    pub(super) max_ratio: f64,
    pub(super) max_measured: u64,
    #[serde(default)]
    pub(super) unknown_reasons: Vec<(String, u64)>,
    /// Per reason, the first address (the interrupted RIP or a caller's return address) whose
    /// code had no bound for it.
    #[serde(default)]
    pub(super) unknown_at: Vec<(String, String)>,
    /// `unknown_at`'s source places, named here (not the image's).
    #[serde(default, skip_deserializing)]
    pub(super) unknown_places: Vec<(String, String)>,
}

/// The image's `bound_violation` line, with its source place.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct Violation {
    pub(super) workload: String,
    pub(super) rip: String,
    pub(super) measured: u64,
    pub(super) bound: u64,
    pub(super) kind: String,
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) place: Option<String>,
}

/// The options' checks, before anything runs; the models to boot.
pub(super) fn plan(c: &CheckArgs, asked: &[PreemptModel]) -> Result<Vec<PreemptModel>, String> {
    if !(1..=10_000).contains(&c.samples) {
        return Err(format!("--samples {}: use 1..=10000", c.samples));
    }
    let patch = [PreemptModel::PatchInt3, PreemptModel::PatchCall];
    if asked.len() == PreemptModel::ALL.len() {
        return Ok(patch.to_vec()); // `all` (the default): the models the check applies to
    }
    match asked.iter().find(|m| !patch.contains(m)) {
        Some(m) => Err(format!(
            "--preempt {m}: the bound check runs under the patch models, whose handler arms the next points (use patch-int3, patch-call or all)"
        )),
        None => Ok(asked.to_vec()),
    }
}

pub(super) fn run(s: &Session, c: &CheckArgs, models: &[PreemptModel]) -> Result<bool, String> {
    let workloads: Vec<&str> = if c.workload.is_empty() {
        vec!["loader", "copy", "checksum", "hog", "direct-hog"]
    } else {
        c.workload.iter().map(|w| w.name()).collect()
    };
    let (mut rows, mut violations) = (Vec::new(), Vec::new());
    for &m in models {
        let cmdline = format!(
            "preempt={m} image.run=bound-check image.seed={} image.samples={} image.workloads={}{}",
            c.seed,
            c.samples,
            workloads.join(","),
            s.patch_options(m)
        );
        let b = s.boot(&cmdline)?;
        let lines: Vec<CheckLine> = lines_of(&b, "bound_check")?;
        let mut found: Vec<Violation> = lines_of(&b, "bound_violation")?;
        let status = |c| qemu::exit_codes::qemu_status(c);
        let ended_as_told = b.status == status(qemu::exit_codes::SUCCESS)
            || (b.status == status(qemu::exit_codes::FAILED) && !found.is_empty());
        if !ended_as_told || lines.len() != workloads.len() {
            return Err(super::failed(&cmdline, &b));
        }
        found.iter_mut().for_each(|v| v.model = m.name().into());
        rows.extend(lines);
        violations.extend(found);
    }
    name_places(s, &mut violations);
    name_unknown_places(s, &mut rows);
    if s.plan.json {
        print_json(s, &rows, &violations)?;
    } else {
        let out = verdict(&rows) + "\n" + &s.header() + "\n" + &table(&rows) + &list(&violations);
        out!("{}", out + &unknown_list(&rows));
    }
    Ok(violations.is_empty() && rows.iter().all(|r| r.violations == 0))
}

/// Each violation's `file:line` from the image's debug information.
fn name_places(s: &Session, violations: &mut [Violation]) {
    let addrs: Vec<u64> = violations.iter().map(|v| parse_hex(&v.rip)).collect();
    let places = lab::symbols::places_in_file(&s.image, &addrs);
    for (v, p) in violations.iter_mut().zip(places) {
        v.place = p.map(|p| p.to_string());
    }
}

/// Each row's `unknown_at` addresses by their source places, from the image's debug information.
fn name_unknown_places(s: &Session, rows: &mut [CheckLine]) {
    for r in rows {
        let addrs: Vec<u64> = r.unknown_at.iter().map(|(_, a)| parse_hex(a)).collect();
        let places = lab::symbols::places_in_file(&s.image, &addrs);
        r.unknown_places = r
            .unknown_at
            .iter()
            .zip(places)
            .map(|((why, at), p)| (why.clone(), p.map_or_else(|| at.clone(), |p| format!("{at} {p}"))))
            .collect();
    }
}

fn parse_hex(a: &str) -> u64 {
    u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(0)
}

/// Where the analysis found no bound: a line per workload, reason and place (the models share
/// the image, so their rows usually name the same place once).
pub(super) fn unknown_list(rows: &[CheckLine]) -> String {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    for r in rows {
        for (why, place) in &r.unknown_places {
            if !seen.contains(&(r.workload.as_str(), why.as_str(), place.as_str())) {
                seen.push((&r.workload, why, place));
            }
        }
    }
    let mut s = String::new();
    if !seen.is_empty() {
        s += "\nno bound: where the analysis stopped (per workload and reason, the first sample's code)\n";
    }
    for (workload, why, place) in seen {
        s += &format!("{workload} {why}: {place}\n");
    }
    s
}

/// One JSON row per model and workload, its violations in `violation_list`.
fn print_json(s: &Session, rows: &[CheckLine], violations: &[Violation]) -> Result<(), String> {
    #[derive(Serialize)]
    struct JsonRow<'a> {
        #[serde(flatten)]
        line: &'a CheckLine,
        violation_list: Vec<&'a Violation>,
    }
    for line in rows {
        let violation_list =
            violations.iter().filter(|v| v.model == line.model && v.workload == line.workload).collect();
        s.print_json_row(&JsonRow { line, violation_list })?;
    }
    Ok(())
}

/// One line: within the bound everywhere it is known, or how many samples were over it.
pub(super) fn verdict(rows: &[CheckLine]) -> String {
    let (samples, checked, over) =
        rows.iter().fold((0, 0, 0), |(s, c, v), r| (s + r.samples, c + r.checked, v + r.violations));
    if over == 0 {
        format!(
            "bound check: every sample with a known bound within it ({} of {} samples had one; 0 over)",
            grouped(checked),
            grouped(samples)
        )
    } else {
        let worst = rows.iter().filter(|r| r.violations > 0).map(|r| r.max_ratio).fold(0.0, f64::max);
        format!(
            "bound check: {} samples over their static bound (of {} with one; the worst {:.1}x): the code breaks the bound's assumptions",
            grouped(over),
            grouped(checked),
            worst
        )
    }
}

/// A row per model and workload.
pub(super) fn table(rows: &[CheckLine]) -> String {
    let mut cells: Vec<[String; 7]> =
        vec![["model", "workload", "samples", "checked", "over", "worst", "unknown: why"].map(String::from)];
    for r in rows {
        let why: Vec<String> = r.unknown_reasons.iter().map(|(n, k)| format!("{n} {k}")).collect();
        cells.push([
            r.model.clone(),
            r.workload.clone(),
            r.samples.to_string(),
            r.checked.to_string(),
            r.violations.to_string(),
            if r.checked > 0 { format!("{:.3}", r.max_ratio) } else { "-".into() },
            if why.is_empty() { "-".into() } else { why.join(", ") },
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for c in &cells {
        let mut l = format!("{:<w0$}  {:<w1$}", c[0], c[1], w0 = widths[0], w1 = widths[1]);
        for i in 2..6 {
            l += &format!("  {:>w$}", c[i], w = widths[i]);
        }
        l += &format!("  {}", c[6]);
        s += l.trim_end();
        s += "\n";
    }
    s + "worst: the largest measured/bound of the checked samples; unknown: samples whose code has no static bound\n"
}

/// The violations, two lines each: the RIP, both figures and which point served; its place.
pub(super) fn list(violations: &[Violation]) -> String {
    let mut s = String::new();
    if !violations.is_empty() {
        s += "\nviolations (the image prints 16 per workload at most):\n";
    }
    for v in violations {
        s += &format!(
            "{} {} {}: measured {} > bound {} instructions (served by {})\n    {}\n",
            v.model,
            v.workload,
            v.rip,
            grouped(v.measured),
            grouped(v.bound),
            v.kind,
            v.place.as_deref().unwrap_or("(no line information)")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(workload: &str, checked: u64, over: u64, ratio: f64) -> CheckLine {
        CheckLine {
            model: "patch-call".into(),
            workload: workload.into(),
            samples: 200,
            checked,
            unknown: 200 - checked,
            violations: over,
            max_ratio: ratio,
            max_measured: 11_000,
            unknown_reasons: if checked < 200 { vec![("RepCount".into(), 200 - checked)] } else { vec![] },
            unknown_at: if checked < 200 { vec![("RepCount".into(), "0x1000".into())] } else { vec![] },
            unknown_places: if checked < 200 {
                vec![("RepCount".into(), "0x1000 memcpy at lib.rs:1".into())]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn where_no_bound_was_found_is_listed_once_per_workload_reason_and_place() {
        let mut other = line("copy", 0, 0, 0.0);
        other.model = "patch-int3".into();
        let rows = [line("copy", 0, 0, 0.0), other, line("hog", 200, 0, 0.996)];
        let l = unknown_list(&rows);
        assert_eq!(l.lines().filter(|l| l.starts_with("copy RepCount: 0x1000 memcpy at lib.rs:1")).count(), 1, "{l}");
        assert_eq!(l.lines().count(), 3, "a blank line, the heading, one place: {l}");
        assert!(unknown_list(&rows[2..]).is_empty());
    }

    #[test]
    fn the_verdict_is_within_only_without_a_violation_and_names_the_worst_otherwise() {
        let ok = [line("hog", 200, 0, 0.996), line("copy", 0, 0, 0.0)];
        assert_eq!(
            verdict(&ok),
            "bound check: every sample with a known bound within it (200 of 400 samples had one; 0 over)"
        );
        let bad = [line("hog", 200, 0, 0.996), line("broken-hog", 100, 100, 63.0)];
        assert!(verdict(&bad)
            .starts_with("bound check: 100 samples over their static bound (of 300 with one; the worst 63.0x)"));
    }

    #[test]
    fn the_table_says_why_a_bound_is_unknown_and_the_list_names_the_line() {
        let t = table(&[line("copy", 0, 0, 0.0), line("hog", 200, 0, 0.996)]);
        assert!(t.lines().nth(1).is_some_and(|l| l.contains("copy") && l.ends_with("RepCount 200")), "{t}");
        assert!(t.lines().nth(2).is_some_and(|l| l.contains("0.996") && l.ends_with('-')), "{t}");
        let v = Violation {
            workload: "broken-hog".into(),
            rip: "0x1234".into(),
            measured: 700_000,
            bound: 11_000,
            kind: "call".into(),
            model: "patch-call".into(),
            place: Some("hog_atom at crates/arch-metal/src/bound_check.rs:99".into()),
        };
        let l = list(&[v]);
        assert!(l.contains("patch-call broken-hog 0x1234: measured 700,000 > bound 11,000 instructions (served by call)\n    hog_atom at crates/arch-metal/src/bound_check.rs:99\n"), "{l}");
    }

    #[test]
    fn only_the_patch_models_are_checked_and_all_means_both() {
        let c = CheckArgs { workload: vec![], samples: 200, seed: 1 };
        assert_eq!(plan(&c, &PreemptModel::ALL), Ok(vec![PreemptModel::PatchInt3, PreemptModel::PatchCall]));
        assert!(plan(&c, &[PreemptModel::Full])
            .is_err_and(|e| e.starts_with("--preempt full: the bound check runs under the patch models")));
        let c = CheckArgs { samples: 0, ..c };
        assert_eq!(plan(&c, &[PreemptModel::PatchCall]), Err("--samples 0: use 1..=10000".into()));
    }
}
