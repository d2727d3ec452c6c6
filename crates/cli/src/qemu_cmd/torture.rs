//! `atomkernel qemu torture`: the image's register-integrity torture per model, as the hosted
//! `torture`'s report.
//!
//! **Mechanism.** One boot per model (`preempt=M`, the image's scenarios; with `--cpus 2` or
//! more its SMP scenario, which runs the torture on CPU 1, an AP); its `torture` lines (user
//! mode under every model, kernel mode where the model preempts kernel code: an asm body
//! fills the 15 general registers, xmm0-15 and its red zone, spins, checks them all, while an
//! RT task woken every 500 µs on the same CPU clobbers every register it may) become rows.
//!
//! **Invariant.** The verdict says "no register lost" only when every boot ended SUCCESS,
//! printed its torture lines, and each has 0 mismatches, its red zone intact and as many
//! preempted calls as the image asks (its `ok`).

use super::{failed, lines_of, Session};
use crate::output::out;
use serde::{Deserialize, Serialize};

/// The image's `torture` line (crates/arch-metal/src/torture.rs).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct TortureLine {
    pub(super) mode: String,
    /// The CPU the calls ran on (0 in an image older than the field).
    #[serde(default)]
    pub(super) cpu: usize,
    pub(super) calls: u64,
    pub(super) preempted_calls: u64,
    pub(super) register_mismatches: u64,
    pub(super) red_zone_intact: bool,
    pub(super) ok: bool,
}

/// One model's torture line.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Row {
    pub(super) model: String,
    #[serde(flatten)]
    pub(super) line: TortureLine,
}

pub(super) fn run(s: &Session) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &m in &s.plan.models {
        let cmdline = s.cmdline(m, None);
        let b = s.boot(&cmdline)?;
        let lines: Vec<TortureLine> = lines_of(&b, "torture")?;
        if lines.is_empty() {
            errors.push(format!("`{cmdline}`: no `torture` line on the serial port"));
        }
        rows.extend(lines.into_iter().map(|line| Row { model: m.name().into(), line }));
        if !b.succeeded() {
            errors.push(failed(&cmdline, &b));
        }
    }
    if s.plan.json {
        for r in &rows {
            s.print_json_row(r)?;
        }
    } else {
        out!("{}", verdict(&rows, errors.is_empty()) + "\n" + &s.header() + "\n" + &table(&rows));
    }
    let bad = rows.iter().filter(|r| !r.line.ok).count();
    if bad > 0 {
        errors
            .push(format!("{bad} torture runs failed their check (mismatches, the red zone, or too few preemptions)"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// The answer first: no register lost, or how many.
pub(super) fn verdict(rows: &[Row], boots_ok: bool) -> String {
    let preempted: u64 = rows.iter().map(|r| r.line.preempted_calls).sum();
    let mismatches: u64 = rows.iter().map(|r| r.line.register_mismatches).sum();
    let zones = rows.iter().filter(|r| !r.line.red_zone_intact).count();
    let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    models.dedup();
    if rows.is_empty() {
        "verdict: no torture ran".into()
    } else if mismatches == 0 && zones == 0 && rows.iter().all(|r| r.line.ok) && boots_ok {
        format!(
            "verdict: no register lost: {preempted} preempted calls in {} runs under {} ({}), red zones intact",
            rows.len(),
            if models.len() == 1 { "one model".to_string() } else { format!("{} models", models.len()) },
            models.join(", ")
        )
    } else {
        format!(
            "verdict: FAILED: {mismatches} register mismatches, {zones} red zones overwritten, {} runs not ok{}",
            rows.iter().filter(|r| !r.line.ok).count(),
            if boots_ok { "" } else { ", a boot failed" }
        )
    }
}

/// Mode, calls, preempted, mismatches, red zone: a row per model and mode.
pub(super) fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<7} {:>3} {:>6} {:>10} {:>11}  {:<9} {}\n",
        "model", "mode", "cpu", "calls", "preempted", "mismatches", "red zone", "check"
    );
    for r in rows {
        let l = &r.line;
        s += &format!(
            "{:<12} {:<7} {:>3} {:>6} {:>10} {:>11}  {:<9} {}\n",
            r.model,
            l.mode,
            l.cpu,
            l.calls,
            l.preempted_calls,
            l.register_mismatches,
            if l.red_zone_intact { "intact" } else { "OVERWRITTEN" },
            if l.ok { "ok" } else { "FAILED" }
        );
    }
    s += "user: the calls in a task; kernel: inside a system call (where the model preempts kernel code);\n\
          preempted: calls an RT task (every 500 us, clobbering every register) ran during;\n\
          mismatches: registers (general, xmm0-15 halves) not as the call left them\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, line: &str) -> Row {
        Row { model: model.into(), line: serde_json::from_str(line).unwrap() }
    }

    const USER: &str = r#"{"test":"torture","mode":"user","calls":25,"preempted_calls":20,"register_mismatches":0,"red_zone_intact":true,"ok":true}"#;
    const KERNEL: &str = r#"{"test":"torture","mode":"kernel","calls":25,"preempted_calls":20,"register_mismatches":0,"red_zone_intact":true,"ok":true}"#;
    const LOST: &str = r#"{"test":"torture","mode":"user","calls":25,"preempted_calls":20,"register_mismatches":40,"red_zone_intact":true,"ok":false}"#;

    #[test]
    fn the_verdict_counts_the_preempted_calls_and_names_a_loss() {
        let good = [row("full", USER), row("full", KERNEL), row("none", USER)];
        let v = verdict(&good, true);
        assert_eq!(
            v,
            "verdict: no register lost: 60 preempted calls in 3 runs under 2 models (full, none), red zones intact"
        );
        assert!(verdict(&good, false).starts_with("verdict: FAILED"), "a failed boot is no pass");
        let bad = verdict(&[row("full", USER), row("full", LOST)], true);
        assert!(
            bad.starts_with("verdict: FAILED: 40 register mismatches, 0 red zones overwritten, 1 runs not ok"),
            "{bad}"
        );
    }

    #[test]
    fn the_table_has_a_row_per_model_and_mode() {
        let t = table(&[row("full", USER), row("full", KERNEL)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("model ") && lines[0].contains("red zone"), "{t}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["full", "user", "0", "25", "20", "0", "intact", "ok"]
        );
        assert_eq!(lines[2].split_whitespace().take(2).collect::<Vec<_>>(), ["full", "kernel"]);
    }
}
