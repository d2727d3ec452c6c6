//! The static latency checker: per function with points or
//! called from one, the longest point-free stretch, the loops that can spin without a point
//! (and where one point would bound each), and the calls into such functions, with `file:line`.
//!
//! **Mechanism.** `kernel::model::patch::exact::analyze` decodes the running program's text
//! (`codeflow`); [`check`] turns `codeflow`'s verdicts into rows, naming each address by the
//! innermost source function and line outside the standard library (debug information through
//! `addr2line`; the ELF symbol without it). A row is **in the lab** when its function's first
//! instruction, one of its points or one of its unbounded loops is in the shipped services'
//! source (`crates/services/src/`: the workloads and the scenario, which the kernel's
//! `syscall()` often inlines); [`shipped_unbounded`] is what the check fails on: a
//! loop of that source that can spin without a point.
//!
//! **Invariant.** A row is `unbounded` iff `codeflow` found a loop without a point and without
//! a counted exit in it, or a call into a function with such a loop; rows are sorted by file
//! and line.

use crate::symbols::{Place, Resolver, Symbols};
use serde::Serialize;

/// A code address and where it is in the source.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Loc {
    /// Runtime address.
    pub addr: usize,
    /// Source file (from the workspace root) and line, if debug information says.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}"),
            _ => write!(f, "{:#x}", self.addr),
        }
    }
}

/// A loop that can spin without meeting a point.
#[derive(Clone, Debug, Serialize)]
pub struct LoopRow {
    /// The loop's head.
    pub head: Loc,
    /// Where one `preempt_point!()` would bound it.
    pub place_point_at: Loc,
}

/// A call into a function that has an unbounded stretch.
#[derive(Clone, Debug, Serialize)]
pub struct CallRow {
    /// The call instruction.
    pub at: Loc,
    /// The callee's name.
    pub callee: Option<String>,
}

/// The checker's verdict on one function.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    /// The machine-code function (ELF symbol, demangled).
    pub function: Option<String>,
    /// The source file of its first instruction.
    pub file: Option<String>,
    /// Its source line.
    pub line: Option<u32>,
    /// Address of its first byte.
    pub addr: usize,
    /// Preemption points in it.
    pub points: usize,
    /// Its longest point-free stretch in instructions (callees included; per iteration of its
    /// counted loops); `null` when unbounded or unresolved.
    pub max_stretch_insns: Option<u64>,
    /// The stretch's first and last instruction.
    pub stretch: Option<(Loc, Loc)>,
    /// Loops without a point or a counted exit.
    pub unbounded: Vec<LoopRow>,
    /// Loops without a point that have a counted exit.
    pub counted_loops: usize,
    /// Calls into functions with an unbounded stretch.
    pub unbounded_calls: Vec<CallRow>,
    /// Its control flow is known exactly (no unrecognised indirect jump).
    pub resolved: bool,
    /// Its code is (partly) the shipped services' (the lab's workloads, the scenario).
    pub in_lab: bool,
}

impl CheckRow {
    /// True if some path runs without bound.
    pub fn is_unbounded(&self) -> bool {
        !self.unbounded.is_empty() || !self.unbounded_calls.is_empty()
    }
}

/// Where the shipped services' sources are.
const LAB_SOURCES: &str = "crates/services/src/";

fn is_lab(file: &Option<String>) -> bool {
    file.as_deref().is_some_and(|f| f.starts_with(LAB_SOURCES))
}

/// The unbounded loops written in the shipped services' source (the check fails if there is
/// one).
pub fn shipped_unbounded(rows: &[CheckRow]) -> Vec<&LoopRow> {
    rows.iter().flat_map(|r| &r.unbounded).filter(|l| is_lab(&l.head.file)).collect()
}

/// Checks the running program (see the module docs).
pub fn check() -> Result<Vec<CheckRow>, String> {
    let analysis = kernel::model::patch::exact::analyze()?;
    let (resolver, syms) = (Resolver::load(), Symbols::load()?);
    let sites = kernel::text::sites();
    let loc = |addr: u64| {
        let Place { file, line, .. } = resolver.innermost(addr as usize);
        Loc { addr: addr as usize, file, line }
    };
    let mut rows: Vec<CheckRow> = analysis
        .check()
        .into_iter()
        .map(|c| {
            let at = loc(c.start);
            let range = c.start as usize..c.end as usize;
            let lab_point = sites.iter().any(|s| range.contains(&s.addr) && s.info.file.contains(LAB_SOURCES));
            let lab_loop = c.unbounded.iter().any(|l| is_lab(&loc(l.head).file));
            CheckRow {
                function: syms.function_at(c.start as usize).map(String::from),
                in_lab: is_lab(&at.file) || lab_point || lab_loop,
                file: at.file,
                line: at.line,
                addr: c.start as usize,
                points: c.points,
                max_stretch_insns: c.max_stretch.map(|s| s.insns),
                stretch: c.max_stretch.map(|s| (loc(s.start), loc(s.end))),
                unbounded: c
                    .unbounded
                    .iter()
                    .map(|l| LoopRow { head: loc(l.head), place_point_at: loc(l.place_point_at) })
                    .collect(),
                counted_loops: c.counted_loops,
                unbounded_calls: c
                    .unbounded_calls
                    .iter()
                    .map(|&(at, callee)| CallRow {
                        at: loc(at),
                        callee: syms.function_at(callee as usize).map(String::from),
                    })
                    .collect(),
                resolved: c.resolved,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.file, a.line, a.addr).cmp(&(&b.file, b.line, b.addr)));
    Ok(rows)
}

/// One line of the text report.
pub fn render(r: &CheckRow) -> String {
    let name = r.function.as_deref().unwrap_or("?");
    let at = Loc { addr: r.addr, file: r.file.clone(), line: r.line };
    let mut s = match (&r.stretch, r.max_stretch_insns) {
        _ if !r.resolved => format!("{at}  {name}: unresolved (points {})", r.points),
        (Some((a, b)), Some(n)) => format!("{at}  {name}: points {}, longest stretch {n} insns ({a} .. {b})", r.points),
        _ => format!("{at}  {name}: points {}, UNBOUNDED", r.points),
    };
    if r.counted_loops > 0 {
        s += &format!(", {} counted loop(s) without a point", r.counted_loops);
    }
    for l in &r.unbounded {
        s += &format!("\n    unbounded loop at {}: put a preempt_point!() at {}", l.head, l.place_point_at);
    }
    for c in &r.unbounded_calls {
        s += &format!("\n    calls unbounded {} at {}", c.callee.as_deref().unwrap_or("?"), c.at);
    }
    s
}
