//! The static latency checker: per function with points or called from one, the longest
//! point-free stretch, the loops that can spin without a point (and where one point would
//! bound each), and the calls into such functions, with `file:line`; and its report, the
//! answer first.
//!
//! **Mechanism.** `kernel::model::patch::exact::analyze` decodes the running program's text
//! (`codeflow`); [`check`] turns `codeflow`'s verdicts into rows, naming each address by the
//! innermost source function and line outside the standard library (debug information through
//! `addr2line`; the ELF symbol without it). Each row has an [`Origin`]: **services** when its
//! first instruction, one of its points or one of its unbounded loops is in the shipped
//! services' source (`crates/services/src/`: the workloads and the scenario, which the
//! kernel's `syscall()` often inlines); else **project** when one of those is elsewhere in the
//! workspace (the kernel's machinery, the tooling); else **library** (Rust's `/rustc/` std,
//! libc, dependencies outside the workspace). A loop is **shipped** when its head is in the
//! shipped services' source; [`shipped_unbounded`] is what the check fails on (exit 1).
//! [`report`] prints the verdict first, then the shipped services' functions (those with a
//! shipped loop first, each with its advice), then the other project code with a loop of its
//! own without a point, or unresolved (kernel machinery by design: spin locks, the
//! `ret_from_syscall` loop; not a workload's fault), one line each; the project code that only
//! calls those, the project code with no such loop and all library code only with `all`. A
//! stretch that passes a call the analysis cannot see into (through a pointer, into libc, an
//! unresolved or recursive function) counts that call as one instruction and is printed as a
//! lower bound (`>= N insns`), with the calls listed: never as a bound.
//!
//! **Invariant.** A row is `unbounded` iff `codeflow` found a loop without a point and without
//! a counted exit in it, or a call into a function with such a loop; rows are sorted by file
//! and line. A loop gets `advice` (a place for `preempt_point!()`) only when that place is the
//! project's own source, never Rust's library or a dependency. Without `all`, every line of
//! the report is at most [`WIDTH`] columns, and its first line is the verdict, which agrees
//! with [`shipped_unbounded`].

use crate::symbols::{is_project_file, Place, Resolver, Symbols};
use serde::Serialize;

/// A code address and where it is in the source.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Loc {
    /// Runtime address.
    pub addr: usize,
    /// Source file (from the workspace root when it is the project's; absolute otherwise) and
    /// line, if debug information says.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}

impl Loc {
    /// True if the source file is the project's own (under the workspace).
    pub fn is_project(&self) -> bool {
        self.file.as_deref().is_some_and(is_project_file)
    }
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
    /// Its head is in the shipped services' source: it makes the check fail (exit 1).
    pub shipped: bool,
    /// What to do, where the code is the project's (`add preempt_point!() at FILE:LINE`);
    /// `null` for library code, which is not ours to change.
    pub advice: Option<String>,
}

/// A call into a function that has an unbounded stretch.
#[derive(Clone, Debug, Serialize)]
pub struct CallRow {
    /// The call instruction.
    pub at: Loc,
    /// The callee's name.
    pub callee: Option<String>,
}

/// An instruction on a point-free path whose cost the checker cannot know.
#[derive(Clone, Debug, Serialize)]
pub struct UnseenRow {
    /// The instruction: a call, or a `rep` string instruction.
    pub at: Loc,
    /// The callee's name, for a direct call (`null` otherwise, or where no symbol names it).
    pub callee: Option<String>,
    /// Why its cost is not known (`codeflow::Reason`'s words).
    pub why: String,
}

/// Whose code a function is (see the module docs).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The shipped services': their loops decide the exit code.
    Services,
    /// The project's other code: the kernel's machinery, the tooling.
    Project,
    /// Rust's standard library, libc, dependencies outside the workspace.
    Library,
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
    /// counted loops); `null` when unbounded or unresolved. A lower bound when
    /// `unknowns` is not empty.
    pub max_stretch_insns: Option<u64>,
    /// `max_stretch_insns` is only a lower bound: something on the way is unknown.
    pub stretch_is_lower_bound: bool,
    /// The stretch's first and last instruction.
    pub stretch: Option<(Loc, Loc)>,
    /// Loops without a point or a counted exit.
    pub unbounded: Vec<LoopRow>,
    /// Loops without a point that have a counted exit.
    pub counted_loops: usize,
    /// Calls into functions with an unbounded stretch.
    pub unbounded_calls: Vec<CallRow>,
    /// What the checker cannot know on its point-free paths (a call through a pointer, into
    /// code outside the analysis, unresolved, recursive, or into a callee with such an unknown;
    /// a `rep` string instruction), each counted as 1 instruction.
    pub unknowns: Vec<UnseenRow>,
    /// Its control flow is known exactly (no unrecognised indirect jump).
    pub resolved: bool,
    /// Its code is (partly) the shipped services' (the lab's workloads, the scenario).
    pub in_lab: bool,
    /// Whose code it is: `services` (as `in_lab`), `project` or `library`.
    pub origin: Origin,
}

impl CheckRow {
    /// True if some path runs without bound.
    pub fn is_unbounded(&self) -> bool {
        !self.unbounded.is_empty() || !self.unbounded_calls.is_empty()
    }

    /// True if it has a loop that makes the check fail.
    pub fn decides_exit(&self) -> bool {
        self.unbounded.iter().any(|l| l.shipped)
    }

    fn at(&self) -> Loc {
        Loc { addr: self.addr, file: self.file.clone(), line: self.line }
    }
}

/// Where the shipped services' sources are.
pub const LAB_SOURCES: &str = "crates/services/src/";

/// The most columns a line of the report takes (without `all`).
pub const WIDTH: usize = 100;

fn is_under(file: &Option<String>, sources: &str) -> bool {
    file.as_deref().is_some_and(|f| f.starts_with(sources))
}

/// The unbounded loops written in the shipped services' source (the check fails if there is
/// one).
pub fn shipped_unbounded(rows: &[CheckRow]) -> Vec<&LoopRow> {
    rows.iter().flat_map(|r| &r.unbounded).filter(|l| l.shipped).collect()
}

/// The advice for a loop: where the code is the project's, the place for one point (the
/// checker's place, or the head when only the head is ours); none for library code.
fn advice(head: &Loc, place: &Loc) -> Option<String> {
    let at = [place, head].into_iter().find(|l| l.is_project() && l.line.is_some())?;
    Some(format!("add preempt_point!() at {at}"))
}

/// Checks the running program (see the module docs).
pub fn check() -> Result<Vec<CheckRow>, String> {
    check_with(LAB_SOURCES)
}

/// [`check`] with the shipped services' sources at `shipped` (a path prefix from the
/// workspace root): what the report and the exit code would say if that were the services'
/// code (for tests with a fixture of their own).
pub fn check_with(shipped: &str) -> Result<Vec<CheckRow>, String> {
    let analysis = kernel::model::patch::exact::analyze()?;
    let (resolver, syms) = (Resolver::load(), Symbols::load()?);
    let sites = kernel::text::sites();
    let loc = |addr: u64| {
        let Place { file, line, .. } = resolver.innermost(addr as usize);
        Loc { addr: addr as usize, file, line }
    };
    let name = |t: u64| syms.function_at(t as usize).map(String::from);
    let mut rows: Vec<CheckRow> = analysis
        .check()
        .into_iter()
        .map(|c| {
            let at = loc(c.start);
            let range = c.start as usize..c.end as usize;
            let points: Vec<&str> = sites.iter().filter(|s| range.contains(&s.addr)).map(|s| s.info.file).collect();
            let unbounded: Vec<LoopRow> = c
                .unbounded
                .iter()
                .map(|l| {
                    let (head, place_point_at) = (loc(l.head), loc(l.place_point_at));
                    let advice = advice(&head, &place_point_at);
                    LoopRow { shipped: is_under(&head.file, shipped), head, place_point_at, advice }
                })
                .collect();
            let in_lab = is_under(&at.file, shipped)
                || points.iter().any(|f| f.contains(shipped))
                || unbounded.iter().any(|l| l.shipped);
            let project = at.is_project()
                || points.iter().any(|f| is_project_file(f))
                || unbounded.iter().any(|l| l.head.is_project());
            CheckRow {
                function: syms.function_at(c.start as usize).map(String::from),
                in_lab,
                origin: match (in_lab, project) {
                    (true, _) => Origin::Services,
                    (false, true) => Origin::Project,
                    (false, false) => Origin::Library,
                },
                file: at.file,
                line: at.line,
                addr: c.start as usize,
                points: c.points,
                max_stretch_insns: c.max_stretch.map(|s| s.insns),
                stretch_is_lower_bound: c.max_stretch.is_some() && !c.is_bound(),
                stretch: c.max_stretch.map(|s| (loc(s.start), loc(s.end))),
                unbounded,
                counted_loops: c.counted_loops,
                unbounded_calls: c
                    .unbounded_calls
                    .iter()
                    .map(|&(at, t)| CallRow { at: loc(at), callee: name(t) })
                    .collect(),
                unknowns: c
                    .unknowns
                    .iter()
                    .map(|u| UnseenRow {
                        at: loc(u.at),
                        callee: u.callee.and_then(name),
                        why: u.reason.describe().into(),
                    })
                    .collect(),
                resolved: c.resolved,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.file, a.line, a.addr).cmp(&(&b.file, b.line, b.addr)));
    Ok(rows)
}

/// One row in full, as `--all` prints it: its status, then a line per unbounded loop (with
/// the advice where the code is the project's) and per call into an unbounded function.
pub fn render(r: &CheckRow) -> String {
    let name = r.function.as_deref().unwrap_or("?");
    let at = r.at();
    let mut s = match (&r.stretch, r.max_stretch_insns) {
        _ if !r.resolved => format!("{at}  {name}: unresolved (points {})", r.points),
        (Some((a, b)), Some(n)) => {
            let ge = if r.stretch_is_lower_bound { ">= " } else { "" };
            format!("{at}  {name}: points {}, longest stretch {ge}{n} insns ({a} .. {b})", r.points)
        }
        _ => format!("{at}  {name}: points {}, UNBOUNDED", r.points),
    };
    if r.counted_loops > 0 {
        s += &format!(", {} counted loop(s) without a point", r.counted_loops);
    }
    for l in &r.unbounded {
        let what = l.advice.as_deref().unwrap_or("library code, not ours to change");
        s += &format!("\n    unbounded loop at {}: {what}", l.head);
    }
    for c in &r.unbounded_calls {
        s += &format!("\n    calls unbounded {} at {}", c.callee.as_deref().unwrap_or("?"), c.at);
    }
    for u in &r.unknowns {
        let what = u.callee.as_ref().map_or_else(|| "this instruction".to_string(), |c| format!("the call of {c}"));
        s += &format!("\n    cost not known at {}: {what}: {}", u.at, u.why);
    }
    s
}

/// `head  name: status` in at most [`WIDTH`] columns: when the name does not fit, its leading
/// path segments are dropped (`run_atom` for `services::atoms::run_atom`: the file says where),
/// and then its end is cut (`...`).
fn row_line(indent: &str, at: &Loc, name: &str, status: &str) -> String {
    let fixed = indent.len() + at.to_string().chars().count() + 2 + 2 + status.chars().count();
    let room = WIDTH.saturating_sub(fixed).max(8);
    let fits = |n: &str| n.chars().count() <= room;
    let short = if fits(name) {
        name.to_string()
    } else {
        let last = tail_segments(name).last().copied().unwrap_or(name);
        match tail_segments(name).into_iter().find(|n| fits(n)) {
            Some(n) => n.to_string(),
            None => last.chars().take(room - 3).chain("...".chars()).collect(),
        }
    };
    format!("{indent}{at}  {short}: {status}")
}

/// The suffixes of a path after each `::` outside `<...>`, longest first.
fn tail_segments(name: &str) -> Vec<&str> {
    let (mut depth, mut out) = (0i32, Vec::new());
    for (i, c) in name.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ':' if depth == 0 && name[i..].starts_with("::") && i + 2 < name.len() => out.push(&name[i + 2..]),
            _ => {}
        }
    }
    out
}

/// A loop's line: its head and the advice, the place as `line N` when in the head's file; the
/// advice on a line of its own when the whole would not fit in [`WIDTH`].
fn loop_lines(l: &LoopRow) -> Vec<String> {
    let Some(advice) = &l.advice else {
        return vec![format!("    unbounded loop at {}: library code, not ours to change", l.head)];
    };
    let same_file = l.head.file.is_some() && l.head.file == l.place_point_at.file;
    let advice = match (same_file, l.place_point_at.line, advice.ends_with(&l.place_point_at.to_string())) {
        (true, Some(n), true) => format!("add preempt_point!() at line {n}"),
        _ => advice.clone(),
    };
    let one = format!("    unbounded loop at {}: {advice}", l.head);
    if one.chars().count() <= WIDTH {
        vec![one]
    } else {
        vec![format!("    unbounded loop at {}:", l.head), format!("      {advice}")]
    }
}

/// A services row's status, said in a few words.
fn services_status(r: &CheckRow) -> String {
    let shipped = r.unbounded.iter().filter(|l| l.shipped).count();
    let others = r.unbounded.len() - shipped;
    let calls = r.unbounded_calls.len();
    match r.max_stretch_insns {
        _ if shipped > 0 => format!("UNBOUNDED, {shipped} loop(s) without a point"),
        _ if !r.resolved => "unresolved: its control flow is not known".into(),
        Some(n) if r.stretch_is_lower_bound => {
            format!("stretch >= {n} insns; {} cost(s) not known", r.unknowns.len())
        }
        Some(n) => format!("bounded, longest stretch {n} insns"),
        None if others > 0 => format!("{others} loop(s) without a point outside the services"),
        None => format!("loops bounded; calls {calls} unbounded"),
    }
}

/// Another project row's status: why it is listed.
fn machinery_status(r: &CheckRow) -> String {
    match (r.resolved, r.unbounded.len()) {
        (false, _) => "unresolved: its control flow is not known".into(),
        (true, l) => format!("{l} loop(s) without a point"),
    }
}

/// The text report (without the exact table's line) and the exit code it stands for.
#[derive(Clone, Debug)]
pub struct Report {
    /// Its lines, the verdict first.
    pub lines: Vec<String>,
    /// 1 if a shipped loop is unbounded ([`shipped_unbounded`]), else 0.
    pub exit_code: i32,
}

/// The verdict: whether a shipped services' loop is unbounded, which decides the exit code, in
/// at most [`WIDTH`] columns. With none, the word is "bounded" when no services' row has a
/// stretch known only as a lower bound ([`lower_bounds`]), else "loops bounded".
fn verdict(rows: &[CheckRow], shipped: &str) -> (String, i32) {
    let bad = shipped_unbounded(rows).len();
    let (word, code) = match (bad, lower_bounds(rows)) {
        (0, 0) => ("bounded", 0),
        (0, _) => ("loops bounded", 0),
        _ => ("UNBOUNDED", 1),
    };
    let head = format!("{word}: {bad} unbounded loop(s) in the shipped services' source");
    let full = format!("{head} ({shipped}), so exit {code}");
    let line = if full.chars().count() <= WIDTH { full } else { format!("{head}, so exit {code}") };
    (line, code)
}

/// The services' rows whose stretch is known only as a lower bound.
fn lower_bounds(rows: &[CheckRow]) -> usize {
    rows.iter().filter(|r| r.origin == Origin::Services && r.stretch_is_lower_bound).count()
}

/// The text report on `rows` (see the module docs); `shipped` names the services' sources in
/// the verdict ([`LAB_SOURCES`] for [`check`]'s rows). With `all`, every row in full
/// ([`render`]), library code included, and no limit on the width.
pub fn report(rows: &[CheckRow], shipped: &str, all: bool) -> Report {
    let (verdict, exit_code) = verdict(rows, shipped);
    let mut lines = vec![verdict];
    let mut services: Vec<&CheckRow> = rows.iter().filter(|r| r.origin == Origin::Services).collect();
    // Stable: the rows that decide the exit code first, then the services' own files.
    services.sort_by_key(|r| (!r.decides_exit(), !is_under(&r.file, shipped)));
    // The project's own sources of unboundedness: its loops without a point, and what the
    // checker cannot see through; the functions that only call them come with `all`.
    let project = |r: &&CheckRow| r.origin == Origin::Project;
    let listed = |r: &&CheckRow| !r.unbounded.is_empty() || !r.resolved;
    let machinery: Vec<&CheckRow> = rows.iter().filter(project).filter(listed).collect();
    let callers: Vec<&CheckRow> = rows.iter().filter(project).filter(|r| !listed(r) && r.is_unbounded()).collect();
    let quiet: Vec<&CheckRow> = rows.iter().filter(project).filter(|r| !r.is_unbounded() && r.resolved).collect();
    let library: Vec<&CheckRow> = rows.iter().filter(|r| r.origin == Origin::Library).collect();
    let full = |lines: &mut Vec<String>, group: &[&CheckRow]| {
        lines.extend(group.iter().flat_map(|r| render(r).lines().map(|l| format!("  {l}")).collect::<Vec<_>>()))
    };

    let partial = match lower_bounds(rows) {
        0 => String::new(),
        n => format!(", {n} lower bound(s)"),
    };
    lines.push(format!(
        "The shipped services' functions ({} checked{partial}; their loops decide the exit code):",
        services.len()
    ));
    for r in &services {
        if all {
            full(&mut lines, &[r]);
            continue;
        }
        lines.push(row_line("  ", &r.at(), r.function.as_deref().unwrap_or("?"), &services_status(r)));
        lines.extend(r.unbounded.iter().filter(|l| l.shipped).flat_map(loop_lines));
    }
    if !machinery.is_empty() {
        lines.push(
            "Kernel machinery and tooling with loops without a point (by design, not a workload's fault):".into(),
        );
        for r in &machinery {
            if all {
                full(&mut lines, &[r]);
            } else {
                lines.push(row_line("  ", &r.at(), r.function.as_deref().unwrap_or("?"), &machinery_status(r)));
            }
        }
    }
    if all {
        lines.push(format!("Project code that calls unbounded code ({}):", callers.len()));
        full(&mut lines, &callers);
        lines.push(format!("Other project code, no loop without a point ({}):", quiet.len()));
        full(&mut lines, &quiet);
        lines.push(format!("Library code: Rust's std, libc, dependencies; not ours to change ({}):", library.len()));
        full(&mut lines, &library);
    }
    let unbounded = rows.iter().filter(|r| r.is_unbounded()).count();
    let mut tail = format!("{} functions checked, {unbounded} unbounded", rows.len());
    if !all {
        let (c, q, l) = (callers.len(), quiet.len(), library.len());
        tail += &format!("; not shown: {c} calling those, {q} others, {l} library (--all)");
    }
    lines.push(tail);
    Report { lines, exit_code }
}
