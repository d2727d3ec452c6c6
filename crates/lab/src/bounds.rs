//! The static latency bound from every instruction of the shipped workloads' functions, and
//! its summary: how much of the workloads' code has a known bound, the largest per function,
//! and what makes the rest unknown.
//!
//! **Mechanism.** `kernel::model::patch::exact::analyze` decodes the running program's text
//! (`codeflow`), as `points --check` does; the functions whose ELF symbol is in the workloads'
//! modules ([`WORKLOAD_MODULES`]: the atoms, `services::workloads` with its `Atoms` impls and
//! `kernel_call`) are bounded instruction by instruction with one memo
//! (`codeflow::Bounds`), and every unknown bound is charged to its [`Reason`] and the place
//! (a loop's head, a call) named by `file:line`.
//!
//! **Invariant.** The figures are `codeflow`'s bounds unchanged: a known bound is never below
//! a real path from that instruction to its next point or return; counts are of instructions.

use crate::points_check::Loc;
use crate::symbols::{Place, Resolver, Symbols};
use codeflow::{Bound, Reason};
use std::collections::BTreeMap;

/// The modules whose functions are the workloads' (ELF symbol names containing one).
pub const WORKLOAD_MODULES: [&str; 2] = ["services::workloads::", "services::atoms::"];

/// One workload function's bounds.
#[derive(Clone, Debug)]
pub struct FunctionBounds {
    /// Its ELF symbol, demangled.
    pub function: String,
    /// Its first byte.
    pub addr: u64,
    /// Every instruction and its bound.
    pub bounds: Vec<(u64, Bound)>,
}

impl FunctionBounds {
    /// Instructions with a known bound.
    pub fn known(&self) -> usize {
        self.bounds.iter().filter(|(_, b)| matches!(b, Bound::Known(_))).count()
    }

    /// The largest known bound and its instruction.
    pub fn largest(&self) -> Option<(u64, u64)> {
        self.bounds.iter().filter_map(|&(a, b)| if let Bound::Known(n) = b { Some((n, a)) } else { None }).max()
    }
}

/// Why some instructions' bounds are unknown: the reason, how many instructions, the places.
#[derive(Clone, Debug)]
pub struct ReasonRow {
    /// The cause.
    pub reason: Reason,
    /// Instructions whose bound it makes unknown.
    pub insns: usize,
    /// The loops' heads or calls it names, by instructions charged, most first.
    pub places: Vec<(Loc, usize)>,
}

/// The workloads' bounds and their summary.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The workload functions, by address.
    pub functions: Vec<FunctionBounds>,
    /// The reasons for unknown bounds, most instructions first.
    pub reasons: Vec<ReasonRow>,
    /// Functions in the program's text, and milliseconds to bound all of the workloads'.
    pub text_functions: usize,
    /// Milliseconds the bounds took (the analysis not included).
    pub bound_ms: u128,
}

impl Summary {
    /// Instructions bounded, and those with a known bound.
    pub fn counts(&self) -> (usize, usize) {
        (self.functions.iter().map(|f| f.bounds.len()).sum(), self.functions.iter().map(|f| f.known()).sum())
    }
}

/// Bounds every instruction of the workloads' functions in the running program.
pub fn workload_bounds() -> Result<(Summary, codeflow::Analysis), String> {
    let analysis = kernel::model::patch::exact::analyze()?;
    let (syms, resolver) = (Symbols::load()?, Resolver::load());
    let t0 = std::time::Instant::now();
    let memo = analysis.bounds();
    let mut functions = Vec::new();
    for (start, _) in analysis.function_ranges() {
        let Some(name) = syms.function_at(start as usize) else { continue };
        if !WORKLOAD_MODULES.iter().any(|m| name.contains(m)) || name.contains("::tests::") {
            continue;
        }
        let bounds = memo.of_function(start).unwrap_or_default();
        functions.push(FunctionBounds { function: name.to_string(), addr: start, bounds });
    }
    let bound_ms = t0.elapsed().as_millis();
    let loc = |addr: u64| {
        let Place { file, line, .. } = resolver.innermost(addr as usize);
        Loc { addr: addr as usize, file, line }
    };
    let mut by: BTreeMap<Reason, BTreeMap<u64, usize>> = BTreeMap::new();
    for (_, b) in functions.iter().flat_map(|f| &f.bounds) {
        if let Bound::Unknown(u) = b {
            *by.entry(u.reason).or_default().entry(u.at).or_default() += 1;
        }
    }
    let mut reasons: Vec<ReasonRow> = by
        .into_iter()
        .map(|(reason, at)| {
            let mut places: Vec<(Loc, usize)> = at.into_iter().map(|(a, n)| (loc(a), n)).collect();
            places.sort_by_key(|p| std::cmp::Reverse(p.1));
            ReasonRow { reason, insns: places.iter().map(|p| p.1).sum(), places }
        })
        .collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.insns));
    let text_functions = analysis.function_ranges().count();
    Ok((Summary { functions, reasons, text_functions, bound_ms }, analysis))
}

/// The summary as text: the totals, a line per function, the reasons with their top places.
pub fn render(s: &Summary) -> Vec<String> {
    let (insns, known) = s.counts();
    let mut out = vec![format!(
        "{known} of {insns} instructions of {} workload functions have a known bound ({} ms)",
        s.functions.len(),
        s.bound_ms
    )];
    for f in &s.functions {
        let largest = f.largest().map_or("-".into(), |(n, a)| format!("{n} (from {a:#x})"));
        out.push(format!("  {}: {}/{} known, largest {largest}", f.function, f.known(), f.bounds.len()));
    }
    out.push("Unknown, by reason (instructions; top places):".into());
    for r in &s.reasons {
        out.push(format!("  {}: {} insns", r.reason.describe(), r.insns));
        out.extend(r.places.iter().take(3).map(|(l, n)| format!("    {l}: {n}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use codeflow::cfg::Step;

    /// Prints the summary; checks that a point is bounded by 0, that an instruction that only
    /// falls into a point is bounded by 1, and that the hog atom's 2048-round loop is counted.
    #[test]
    fn bounds_of_the_workloads() {
        let (s, analysis) = workload_bounds().expect("the program's text analyses");
        render(&s).iter().for_each(|l| println!("{l}"));
        let sites = analysis.sites();
        let (mut points, mut before) = (0, 0);
        for (a, b) in s.functions.iter().flat_map(|f| &f.bounds) {
            if sites.binary_search(a).is_ok() {
                assert_eq!(*b, Bound::Known(0), "a point at {a:#x}");
                points += 1;
            }
            if let Some((Step::Plain, next)) = analysis.successors(*a) {
                if next.len() == 1 && sites.binary_search(&next[0]).is_ok() {
                    assert_eq!(*b, Bound::Known(1), "just before a point, at {a:#x}");
                    before += 1;
                }
            }
        }
        assert!(points > 0 && before > 0, "the workloads have points ({points}) and code falling into them ({before})");
        let t0 = std::time::Instant::now();
        let (memo, mut insns, mut known) = (analysis.bounds(), 0, 0);
        for (start, _) in analysis.function_ranges() {
            for (_, b) in memo.of_function(start).unwrap_or_default() {
                insns += 1;
                known += usize::from(matches!(b, Bound::Known(_)));
            }
        }
        let ms = t0.elapsed().as_millis();
        println!("whole text: {known} of {insns} instructions of {} functions known ({ms} ms)", s.text_functions);
        let hog = s.functions.iter().find(|f| f.function.contains("HogAtoms") && f.function.ends_with("::atom"));
        let hog = hog.expect("the hog atom is in the text");
        // 2048 rounds of a shift, an xor, a multiply and a rotate: at least 4 instructions each.
        match hog.bounds[0].1 {
            Bound::Known(n) => assert!(n >= 2048 * 4, "the hog atom's bound {n} covers its 2048 rounds"),
            other => panic!("the hog atom's loop is not counted: {other:?}"),
        }
    }
}
