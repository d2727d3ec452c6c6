//! `atomkernel qemu demo`: the image's `rt` scenario per model, as the hosted `demo`'s table.
//!
//! **Mechanism.** One boot per model (`preempt=M`; on 2 CPUs or more `cpus=N image.run=smp`,
//! the interrupt on CPU 0 and the RT task on CPU 1); the `rt` line (an RT task sleeps, a
//! normal task's system call runs 10 atoms of 1 ms, the device's interrupt 3.5 ms in wakes the
//! RT task) becomes a [`Row`]. The verdict line ranks the models by the RT task's wait.
//!
//! **Invariant.** Every figure is the image's own; a boot that ended other than SUCCESS is
//! shown, then fails the command with its serial output's end.

use super::{failed, grouped, lines_of, Session};
use crate::output::out;
use serde::{Deserialize, Serialize};

/// The image's `rt` line (crates/arch-metal/src/scenarios.rs).
#[derive(Clone, Debug, Deserialize)]
pub(super) struct RtLine {
    pub(super) model: String,
    pub(super) irq_cpu: u64,
    pub(super) rt_cpu: u64,
    pub(super) place: String,
    pub(super) expected: String,
    pub(super) atom: u64,
    pub(super) atoms: u64,
    pub(super) irq_after_deadline_ns: u64,
    pub(super) rt_wait_ns: u64,
    #[serde(default)]
    pub(super) point_to_rt_cycles: u64,
    pub(super) ok: bool,
}

/// One model's row: the hosted `demo`'s names where they fit.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Row {
    pub(super) model: String,
    /// `mid_atom`, `point`, `return` (a redirected return inside an atom) or `syscall_exit`:
    /// where the RT task ran.
    pub(super) place: String,
    pub(super) expected: String,
    pub(super) atoms: u64,
    pub(super) rt_ran_after_atom: u64,
    pub(super) irq_cpu: u64,
    pub(super) rt_cpu: u64,
    /// From the device's deadline to its handler (ns; instructions under `-icount`).
    pub(super) irq_late_ns: u64,
    /// From the handler to the RT task running.
    pub(super) rt_wait_ns: u64,
    /// Serving the point the RT task ran at (TSC cycles); null when it ran elsewhere.
    pub(super) point_to_rt_cycles: Option<u64>,
    /// The image's exit status (33: SUCCESS).
    pub(super) status: i32,
    pub(super) ok: bool,
    /// `SYNC_CORE` rounds the boot's patching made (`patch_sync=ipi`: an NMI round on every
    /// other CPU each; 0 otherwise).
    pub(super) sync_core_rounds: u64,
}

/// The image's `sync_core` line.
#[derive(Clone, Debug, Deserialize)]
struct SyncCoreLine {
    rounds: u64,
}

impl Row {
    pub(super) fn of(rt: RtLine, status: i32, succeeded: bool) -> Row {
        let point = (rt.place == "point").then_some(rt.point_to_rt_cycles);
        Row {
            model: rt.model,
            place: rt.place,
            expected: rt.expected,
            atoms: rt.atoms,
            rt_ran_after_atom: rt.atom,
            irq_cpu: rt.irq_cpu,
            rt_cpu: rt.rt_cpu,
            irq_late_ns: rt.irq_after_deadline_ns,
            rt_wait_ns: rt.rt_wait_ns,
            point_to_rt_cycles: point,
            status,
            ok: rt.ok && succeeded,
            sync_core_rounds: 0,
        }
    }

    /// Where the RT task ran, in words.
    fn ran(&self) -> String {
        match self.place.as_str() {
            // `rt_ran_after_atom` atoms had ended: it ran inside the next one
            "mid_atom" => format!("inside atom {}", self.rt_ran_after_atom + 1),
            "point" => format!("point after atom {}", self.rt_ran_after_atom),
            "return" => format!("return inside atom {}", self.rt_ran_after_atom + 1),
            "syscall_exit" => "after the system call".into(),
            p => p.into(),
        }
    }
}

pub(super) fn run(s: &Session) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &m in &s.plan.models {
        let cmdline = s.cmdline(m, None);
        let b = s.boot(&cmdline)?;
        let rt: Vec<RtLine> = lines_of(&b, "rt")?;
        let sync: Vec<SyncCoreLine> = lines_of(&b, "sync_core")?;
        match rt.into_iter().next() {
            Some(rt) => rows.push(Row {
                sync_core_rounds: sync.first().map_or(0, |l| l.rounds),
                ..Row::of(rt, b.status, b.succeeded())
            }),
            None => errors.push(format!("`{cmdline}`: no `rt` line on the serial port")),
        }
        if !b.succeeded() {
            errors.push(failed(&cmdline, &b));
        }
    }
    if s.plan.json {
        for r in &rows {
            s.print_json_row(r)?;
        }
    } else {
        out!("{}", table(s, &rows));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// The verdict, the header and one row per model.
pub(super) fn table(s: &Session, rows: &[Row]) -> String {
    let unit = s.unit();
    let mut out = verdict(rows, unit) + "\n";
    out += &s.header();
    out += "\n";
    out += &format!(
        "{:<12} {:<22} {:>8} {:>14} {:>12}  {}\n",
        "model",
        "rt_ran",
        "irq->rt",
        format!("rt_wait_{unit}"),
        "point_rt_cyc",
        "status"
    );
    for r in rows {
        let point = r.point_to_rt_cycles.map_or("-".to_string(), grouped);
        let status = if r.ok { "ok".to_string() } else { format!("FAILED ({}; expected {})", r.status, r.expected) };
        out += &format!(
            "{:<12} {:<22} {:>8} {:>14} {:>12}  {status}\n",
            r.model,
            r.ran(),
            format!("{}->{}", r.irq_cpu, r.rt_cpu),
            grouped(r.rt_wait_ns),
            point
        );
    }
    out += &format!(
        "scenario: a system call of {} atoms of 1 ms with a point between them, the device's interrupt\n\
         3.5 ms in wakes an RT task (SCHED_FIFO 50); rt_wait: the handler to the RT task running;\n\
         irq->rt: the CPU of the interrupt and of the RT task; point_rt_cyc: serving the point\n",
        rows.first().map_or(10, |r| r.atoms)
    );
    if let Some(ps) = s.plan.patch_sync {
        let rounds: Vec<String> = rows
            .iter()
            .filter(|r| r.model.starts_with("patch"))
            .map(|r| format!("{} {}", r.model, r.sync_core_rounds))
            .collect();
        out += &format!("patch_sync={}: SYNC_CORE rounds: {}\n", ps.name(), rounds.join(", "));
    }
    out
}

/// One line: the models from the shortest RT wait to the longest (equal waits tie).
pub(super) fn verdict(rows: &[Row], unit: &str) -> String {
    if rows.is_empty() {
        return "verdict: no model ran the scenario".into();
    }
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by_key(|r| r.rt_wait_ns);
    let best = sorted[0].rt_wait_ns;
    let tied: Vec<&str> = sorted.iter().filter(|r| r.rt_wait_ns == best).map(|r| r.model.as_str()).collect();
    let lead = if tied.len() > 1 { format!("a tie of {}", tied.join(", ")) } else { tied[0].to_string() };
    let rest: Vec<String> = sorted
        .iter()
        .filter(|r| r.rt_wait_ns != best)
        .map(|r| format!("{} {}", r.model, grouped(r.rt_wait_ns)))
        .collect();
    let mut line = format!("verdict: the shortest RT wait: {lead} ({} {unit}, {})", grouped(best), sorted[0].ran());
    if !rest.is_empty() {
        line += &format!("; then {}", rest.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: &str) -> Row {
        Row::of(serde_json::from_str(line).unwrap(), 33, true)
    }

    const FULL: &str = r#"{"test":"rt","model":"full","cpus":1,"irq_cpu":0,"rt_cpu":0,"place":"mid_atom","expected":"mid_atom","atom":3,"atoms":10,"irq_after_deadline_ns":564,"rt_wait_ns":2257,"point_to_rt_cycles":0,"ok":true}"#;
    const VOL: &str = r#"{"test":"rt","model":"voluntary","cpus":1,"irq_cpu":0,"rt_cpu":0,"place":"point","expected":"point","atom":4,"atoms":10,"irq_after_deadline_ns":564,"rt_wait_ns":500787,"point_to_rt_cycles":1311,"ok":true}"#;
    const LAZY: &str = r#"{"test":"rt","model":"lazy","cpus":1,"irq_cpu":0,"rt_cpu":0,"place":"mid_atom","expected":"mid_atom","atom":3,"atoms":10,"irq_after_deadline_ns":702,"rt_wait_ns":2257,"point_to_rt_cycles":0,"ok":true}"#;

    #[test]
    fn the_rt_line_becomes_a_row_with_the_point_only_where_the_task_ran_at_one() {
        let (f, v) = (row(FULL), row(VOL));
        assert_eq!((f.place.as_str(), f.rt_ran_after_atom, f.point_to_rt_cycles), ("mid_atom", 3, None));
        assert_eq!((v.place.as_str(), v.rt_ran_after_atom, v.point_to_rt_cycles), ("point", 4, Some(1311)));
        assert_eq!(v.ran(), "point after atom 4");
        assert!(!Row::of(serde_json::from_str(FULL).unwrap(), 105, false).ok, "a failed boot is not ok");
    }

    #[test]
    fn the_verdict_ranks_by_the_wait_and_names_equal_waits_a_tie() {
        let v = verdict(&[row(VOL), row(FULL)], "instr");
        assert!(
            v.starts_with("verdict: the shortest RT wait: full (2,257 instr, inside atom 4); then voluntary 500,787"),
            "{v}"
        );
        let t = verdict(&[row(VOL), row(FULL), row(LAZY)], "instr");
        assert!(t.contains("a tie of full, lazy (2,257 instr"), "{t}");
    }
}
