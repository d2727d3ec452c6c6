//! The next preemption points of every instruction: a backward data-flow over each function's
//! graph, with calls resolved through the callees' summaries, to a fixpoint over the program.
//!
//! **Mechanism.** For instruction `i`, `next(i)` is the set of points first reached on the
//! paths forward from `i` (before `i` runs), and `ret(i)` says whether some path leaves the
//! function before meeting one:
//!
//! - a point `p`: `next = {p}`, `ret = false`;
//! - a return: `next = {}`, `ret = true`;
//! - otherwise the union over the successors, where a direct call of `f` (or a tail call)
//!   first reaches `f`'s own entry set, and continues to its successors only if `f` may
//!   return before a point (`summary(f) = (next(entry f), ret(entry f))`); a callee outside
//!   the analysed functions (libc), an indirect call, or a function that reaches no point is
//!   `({}, true)`: it returns and reaches nothing.
//!
//! The summaries start empty and only grow, so iterating the functions until none changes
//! reaches the least fixpoint (recursion included). Only functions that have points or call,
//! directly or through others, a function that has them are analysed; the others reach no point.
//!
//! **Invariant.** For a resolved function, `next(i)` holds exactly the points that begin some
//! point-free path from `i` (in this function or in a directly called one), and `ret(i)` is
//! true iff a point-free path from `i` leaves the function. An unresolved function's summary is
//! all its points and `ret = true` (an over-approximation).

use crate::cfg::{self, Cfg, DataReader, Step};
use alloc::collections::BTreeMap;
use alloc::{vec, vec::Vec};

/// A function's machine code.
#[derive(Clone, Copy, Debug)]
pub struct Function<'a> {
    /// Address of its first byte.
    pub start: u64,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// The analysed program.
#[derive(Debug)]
pub struct Analysis {
    /// Every function given, by start address (decoded only if analysed).
    pub(crate) cfgs: Vec<Cfg>,
    /// Per analysed function (index into `cfgs`): per instruction, (set id, may return).
    pub(crate) flows: BTreeMap<usize, Vec<(u32, bool)>>,
    /// Interned point sets (sorted site indices); id 0 is the empty set.
    pub(crate) sets: Vec<Vec<u32>>,
    /// The site addresses (sorted) the analysis was given.
    pub(crate) sites: Vec<u64>,
    /// The analysed functions (indices into `cfgs`, ascending): those with points or that
    /// reach one through calls.
    pub(crate) relevant: Vec<usize>,
    /// Start addresses (sorted) of the functions that never return (panics, `abort`).
    pub(crate) noreturn: Vec<u64>,
    /// Rounds of the whole-program fixpoint.
    pub rounds: usize,
}

/// For one instruction: the points first reached on every path forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextPoints {
    /// Site indices, sorted.
    pub sites: Vec<u32>,
    /// Some path leaves the function before reaching a point.
    pub may_return: bool,
}

struct Interner {
    ids: BTreeMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
}

impl Interner {
    fn id(&mut self, s: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&s) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(s.clone());
        self.ids.insert(s, id);
        id
    }
}

/// Analyses `functions` (any order, not overlapping) given the sorted site addresses; `data`
/// reads jump tables.
pub fn analyze(functions: &[Function<'_>], sites: &[u64], data: DataReader<'_>) -> Analysis {
    let mut order: Vec<&Function<'_>> = functions.iter().collect();
    order.sort_unstable_by_key(|f| f.start);
    let mut cfgs: Vec<Cfg> = order.iter().map(|f| cfg::build(f.start, f.bytes, sites, data)).collect();
    let noreturn = drop_noreturn_fallthrough(&mut cfgs);
    let relevant = relevant(&cfgs);
    let mut interner = Interner { ids: BTreeMap::new(), sets: Vec::new() };
    interner.id(Vec::new());
    let mut summary: BTreeMap<u64, (u32, bool)> = BTreeMap::new();
    for &f in &relevant {
        let c = &cfgs[f];
        let s = if c.unresolved.is_some() { (interner.id(points_of(c)), true) } else { (0, false) };
        summary.insert(c.start, s);
    }
    let mut flows = BTreeMap::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut changed = false;
        for &f in relevant.iter().filter(|&&f| cfgs[f].unresolved.is_none()) {
            let flow = function_flow(&cfgs[f], &summary, &mut interner);
            let entry = flow.first().copied().unwrap_or((0, true));
            changed |= summary.insert(cfgs[f].start, entry) != Some(entry);
            flows.insert(f, flow);
        }
        if !changed {
            break;
        }
    }
    Analysis { cfgs, flows, sets: interner.sets, sites: sites.to_vec(), relevant, noreturn, rounds }
}

/// Finds the functions that can never return (panics, `abort`: no path from the entry reaches
/// a return, or a tail call of a function that may), by a fixpoint from "none returns", and
/// removes the fall-through after every call of one: no path goes on after it.
fn drop_noreturn_fallthrough(cfgs: &mut [Cfg]) -> Vec<u64> {
    let by_start: BTreeMap<u64, usize> = cfgs.iter().enumerate().map(|(i, c)| (c.start, i)).collect();
    let mut returns = vec![false; cfgs.len()];
    let ret = |t: u64, returns: &[bool]| by_start.get(&t).is_none_or(|&f| returns[f] || cfgs[f].unresolved.is_some());
    loop {
        let mut changed = false;
        for f in 0..cfgs.len() {
            if !returns[f] && reaches_return(&cfgs[f], &|t| ret(t, &returns)) {
                returns[f] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let noreturn: Vec<u64> = cfgs.iter().zip(&returns).filter(|(_, &r)| !r).map(|(c, _)| c.start).collect();
    for c in cfgs.iter_mut() {
        for insn in &mut c.insns {
            if matches!(insn.step, Step::Call(t) if noreturn.binary_search(&t).is_ok()) {
                insn.succs.clear();
            }
        }
    }
    noreturn
}

/// Is a return reachable from the entry, given which callees return?
fn reaches_return(c: &Cfg, returns: &dyn Fn(u64) -> bool) -> bool {
    if c.unresolved.is_some() {
        return true;
    }
    let mut seen = vec![false; c.insns.len()];
    let mut work = vec![0usize];
    while let Some(i) = work.pop() {
        if i >= c.insns.len() || core::mem::replace(&mut seen[i], true) {
            continue;
        }
        let insn = &c.insns[i];
        match insn.step {
            Step::Return => return true,
            Step::TailCall(t) if returns(t) => return true,
            Step::Call(t) if !returns(t) => continue,
            _ => {}
        }
        work.extend(insn.succs.iter().map(|&s| s as usize));
    }
    false
}

fn points_of(c: &Cfg) -> Vec<u32> {
    c.insns.iter().filter_map(|i| if let Step::Point(p) = i.step { Some(p) } else { None }).collect()
}

/// Functions with points, and those that call (or tail-call) one, transitively.
fn relevant(cfgs: &[Cfg]) -> Vec<usize> {
    let by_start: BTreeMap<u64, usize> = cfgs.iter().enumerate().map(|(i, c)| (c.start, i)).collect();
    let mut callers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, c) in cfgs.iter().enumerate() {
        for insn in &c.insns {
            if let Step::Call(t) | Step::TailCall(t) = insn.step {
                if let Some(&callee) = by_start.get(&t) {
                    callers.entry(callee).or_default().push(i);
                }
            }
        }
    }
    let mut seen = vec![false; cfgs.len()];
    let mut work: Vec<usize> = (0..cfgs.len()).filter(|&i| !points_of(&cfgs[i]).is_empty()).collect();
    while let Some(f) = work.pop() {
        if core::mem::replace(&mut seen[f], true) {
            continue;
        }
        work.extend(callers.get(&f).into_iter().flatten().copied().filter(|&c| !seen[c]));
    }
    (0..cfgs.len()).filter(|&i| seen[i]).collect()
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The backward fixpoint over one function, given the callees' summaries.
fn function_flow(c: &Cfg, summary: &BTreeMap<u64, (u32, bool)>, interner: &mut Interner) -> Vec<(u32, bool)> {
    let callee = |t: u64| summary.get(&t).copied().unwrap_or((0, true));
    let mut state: Vec<(u32, bool)> = vec![(0, false); c.insns.len()];
    let mut changed = true;
    while changed {
        changed = false;
        for (i, insn) in c.insns.iter().enumerate().rev() {
            let mut set: Vec<u32> = Vec::new();
            let mut ret = false;
            for &s in &insn.succs {
                let (id, r) = state[s as usize];
                set = union(&set, &interner.sets[id as usize]);
                ret |= r;
            }
            let new = match insn.step {
                Step::Point(p) => (vec![p], false),
                Step::Return => (Vec::new(), true),
                Step::Call(t) | Step::TailCall(t) => {
                    let (id, r) = callee(t);
                    let tail = matches!(insn.step, Step::TailCall(_));
                    let after = if r || tail { set } else { Vec::new() };
                    (union(&interner.sets[id as usize], &after), if tail { r || ret } else { r && ret })
                }
                Step::IndirectCall | Step::Plain | Step::Trap => (set, ret),
            };
            let new = (interner.id(new.0), new.1);
            if state[i] != new {
                state[i] = new;
                changed = true;
            }
        }
    }
    state
}

impl Analysis {
    /// The function (index) containing `addr`.
    pub(crate) fn function_at(&self, addr: u64) -> Option<usize> {
        let i = self.cfgs.partition_point(|c| c.start <= addr).checked_sub(1)?;
        (addr < self.cfgs[i].end).then_some(i)
    }

    /// The next points of the instruction at (or containing) `addr`: `None` outside the
    /// analysed functions and in unresolved ones.
    pub fn next_points(&self, addr: u64) -> Option<NextPoints> {
        let f = self.function_at(addr)?;
        let flow = self.flows.get(&f)?;
        let (id, may_return) = flow[self.cfgs[f].index_containing(addr)?];
        Some(NextPoints { sites: self.sets[id as usize].clone(), may_return })
    }

    /// Whether the function containing `addr` was analysed and is resolved (`None`: it is in
    /// no analysed function).
    pub fn resolved(&self, addr: u64) -> Option<bool> {
        let f = self.function_at(addr)?;
        self.relevant.binary_search(&f).ok().map(|_| self.cfgs[f].unresolved.is_none())
    }

    /// The sorted site addresses the analysis was given (a point's index is its position).
    pub fn sites(&self) -> &[u64] {
        &self.sites
    }

    /// Every instruction address of the analysed, resolved functions (for tests and tools).
    pub fn analysed_instructions(&self) -> impl Iterator<Item = u64> + '_ {
        self.flows.keys().flat_map(move |&f| self.cfgs[f].insns.iter().map(|i| i.addr))
    }

    /// How many functions were decoded, analysed, and left unresolved among the analysed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let unresolved = self.relevant.iter().filter(|&&f| self.cfgs[f].unresolved.is_some()).count();
        (self.cfgs.len(), self.relevant.len(), unresolved)
    }
}
