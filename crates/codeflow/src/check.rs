//! The static latency checker: per function, the longest stretch of instructions that can run
//! without passing a preemption point, and every loop that can spin without one.
//!
//! **Mechanism.** In a function's graph a point *cuts* the path (a stretch ends before it and
//! the next starts after it), and so does a direct call of a function every path through which
//! meets a point (its summary's `may return` is false). A call of any other analysed callee is
//! one node weighing 1 plus the callee's own longest stretch from its entry (an upper bound of
//! what it runs point-free); a call of a function that never returns (a panic) ends the path
//! and is not followed. A cycle among uncut instructions is a loop without a point; its
//! head is its lowest-addressed instruction entered from outside the cycle. The loop is
//! **counted** if it leaves through a conditional branch whose flags come from the instruction
//! just before it, a `cmp r, imm`, a `cmp r, s` (either way round) or a step of `r`
//! (`add`/`sub`/`inc`/`dec`), where the loop writes `r` only by constant steps and never
//! writes `s`: it runs a finite
//! number of iterations fixed when it starts (a count, a length). Any other such loop is
//! **unbounded** (its exit hangs on memory, a call's result, the clock), and one point placed
//! at its head bounds it. Either way the head is then cut and the rest of the cycle searched
//! again, so nested loops are each named. What is left is acyclic: the longest stretch is its
//! heaviest path, from the function's entry or from just after a cut, so with counted loops it
//! is the longest stretch of one iteration.
//!
//! A call whose callee's stretch is not known weighs 1 and is listed in `unknown_calls`: a call
//! through a register or memory, into code outside the analysis (libc, the vDSO), into an
//! unresolved function, back into a function still being checked (recursion), or into a
//! callee that has such calls itself. The stretch is then a lower bound, never passed off as
//! a bound.
//!
//! **Invariant.** `max_stretch` is `None` exactly when the function is unresolved, has an
//! unbounded loop or calls a function that does; otherwise, when `unknown_calls` is empty, no
//! point-free path through the function (per iteration of its counted loops) is longer, and
//! when it is not, some path is at least that long.

use crate::cfg::{Cfg, Shape, Step};
use crate::flow::Analysis;
use alloc::collections::BTreeMap;
use alloc::{vec, vec::Vec};

/// The longest point-free stretch: its length and its first and last instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    /// Instructions executed (callees' stretches included).
    pub insns: u64,
    /// Address of its first instruction.
    pub start: u64,
    /// Address of its last instruction.
    pub end: u64,
}

/// A loop that can run forever without passing a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnboundedLoop {
    /// Its head (the instruction entered from outside the loop).
    pub head: u64,
    /// Where one preemption point bounds it (before this instruction).
    pub place_point_at: u64,
}

/// The checker's verdict on one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCheck {
    /// First byte of the function.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Points in it.
    pub points: usize,
    /// Its graph is known exactly.
    pub resolved: bool,
    /// Its longest point-free stretch (`None`: unbounded or unresolved).
    pub max_stretch: Option<Stretch>,
    /// Its loops without points whose exit is not counted.
    pub unbounded: Vec<UnboundedLoop>,
    /// Its counted loops without points (the stretch is per iteration of these).
    pub counted_loops: usize,
    /// Calls (call-site address, callee) into functions that have an unbounded stretch.
    pub unbounded_calls: Vec<(u64, u64)>,
    /// Calls (call-site address, callee if direct) whose callee's stretch is not known, each
    /// weighed as 1 instruction in `max_stretch` (see the module docs).
    pub unknown_calls: Vec<(u64, Option<u64>)>,
}

impl FunctionCheck {
    /// True if some path through it, or through a callee, runs without bound.
    pub fn is_unbounded(&self) -> bool {
        !self.unbounded.is_empty() || !self.unbounded_calls.is_empty()
    }

    /// True if `max_stretch` is an upper bound: it is known, and no call on the way has a
    /// callee whose stretch is unknown.
    pub fn is_bound(&self) -> bool {
        self.max_stretch.is_some() && self.unknown_calls.is_empty()
    }
}

/// What a call adds to its caller's stretch.
enum Callee {
    /// Its longest stretch from its entry (0 for a callee that never returns).
    Known(u64),
    /// At least this much; the rest is not known.
    AtLeast(u64),
    /// It has an unbounded stretch.
    Unbounded,
}

impl Analysis {
    /// Checks every function that has points or is called from one.
    pub fn check(&self) -> Vec<FunctionCheck> {
        let mut memo = BTreeMap::new();
        let mut out = Vec::new();
        for f in self.reported() {
            out.push(self.check_function(f, &mut memo));
        }
        out
    }

    /// Checks the function containing `addr` (and what it calls).
    pub fn check_at(&self, addr: u64) -> Option<FunctionCheck> {
        Some(self.check_function(self.function_at(addr)?, &mut BTreeMap::new()))
    }

    fn reported(&self) -> Vec<usize> {
        let mut fs: Vec<usize> = Vec::new();
        for (i, c) in self.cfgs.iter().enumerate() {
            if !c.insns.iter().any(|x| matches!(x.step, Step::Point(_))) {
                continue;
            }
            fs.push(i);
            for x in &c.insns {
                if let Step::Call(t) | Step::TailCall(t) = x.step {
                    fs.extend(self.cfgs.binary_search_by_key(&t, |c| c.start).ok());
                }
            }
        }
        fs.sort_unstable();
        fs.dedup();
        fs
    }

    /// Every path through the callee at `t` meets a point (or never returns).
    fn call_cuts(&self, t: u64) -> bool {
        let Ok(f) = self.cfgs.binary_search_by_key(&t, |c| c.start) else { return false };
        self.flows.get(&f).is_some_and(|flow| flow.first().is_some_and(|&(_, ret)| !ret))
    }

    fn check_function(&self, f: usize, memo: &mut BTreeMap<usize, Option<FunctionCheck>>) -> FunctionCheck {
        if let Some(Some(done)) = memo.get(&f) {
            return done.clone();
        }
        memo.insert(f, None); // in progress: a recursive call weighs 1
        let c = &self.cfgs[f];
        let points = c.insns.iter().filter(|x| matches!(x.step, Step::Point(_))).count();
        let mut r = FunctionCheck {
            start: c.start,
            end: c.end,
            points,
            resolved: c.unresolved.is_none(),
            max_stretch: None,
            unbounded: Vec::new(),
            counted_loops: 0,
            unbounded_calls: Vec::new(),
            unknown_calls: Vec::new(),
        };
        if r.resolved {
            let mut g = self.graph(f, memo, &mut r);
            (r.unbounded, r.counted_loops) = g.loops(c);
            if r.unbounded.is_empty() && r.unbounded_calls.is_empty() {
                r.max_stretch = g.longest(&c.insns.iter().map(|x| x.addr).collect::<Vec<_>>());
            }
        }
        memo.insert(f, Some(r.clone()));
        r
    }

    /// `f`'s graph, its calls weighed (the unbounded and unknown ones noted in `r`).
    fn graph(&self, f: usize, memo: &mut BTreeMap<usize, Option<FunctionCheck>>, r: &mut FunctionCheck) -> Graph {
        let c = &self.cfgs[f];
        let n = c.insns.len();
        let mut g = Graph { cut: vec![false; n], weight: vec![1; n], succs: Vec::with_capacity(n) };
        for (i, x) in c.insns.iter().enumerate() {
            g.succs.push(x.succs.clone());
            match x.step {
                Step::Point(_) => g.cut[i] = true,
                Step::Call(t) | Step::TailCall(t) if self.call_cuts(t) => {
                    g.cut[i] = true;
                    if let Callee::Unbounded = self.callee_stretch(f, t, memo) {
                        r.unbounded_calls.push((x.addr, t));
                    }
                }
                Step::Call(t) | Step::TailCall(t) => match self.callee_stretch(f, t, memo) {
                    Callee::Known(s) => g.weight[i] += s,
                    Callee::AtLeast(s) => {
                        g.weight[i] += s;
                        r.unknown_calls.push((x.addr, Some(t)));
                    }
                    Callee::Unbounded => r.unbounded_calls.push((x.addr, t)),
                },
                Step::IndirectCall => r.unknown_calls.push((x.addr, None)),
                _ => {}
            }
        }
        g
    }
}

impl Analysis {
    /// What the call of the callee at `t` from `f` adds to a stretch.
    fn callee_stretch(&self, f: usize, t: u64, memo: &mut BTreeMap<usize, Option<FunctionCheck>>) -> Callee {
        // A callee that never returns (a panic) ends the task's path, not its latency.
        if self.noreturn.binary_search(&t).is_ok() {
            return Callee::Known(0);
        }
        // Outside the analysis (foreign code), or recursion (the callee is being checked).
        let Ok(callee) = self.cfgs.binary_search_by_key(&t, |c| c.start) else { return Callee::AtLeast(0) };
        if callee == f || memo.get(&callee).is_some_and(|m| m.is_none()) {
            return Callee::AtLeast(0);
        }
        let cc = self.check_function(callee, memo);
        match cc.max_stretch {
            _ if cc.is_unbounded() => Callee::Unbounded,
            Some(s) if cc.unknown_calls.is_empty() => Callee::Known(s.insns),
            Some(s) => Callee::AtLeast(s.insns),
            None => Callee::AtLeast(0), // unresolved
        }
    }
}

/// A function's graph as the checker sees it.
struct Graph {
    cut: Vec<bool>,
    weight: Vec<u64>,
    succs: Vec<Vec<u32>>,
}

impl Graph {
    /// Successors along which a stretch goes on (neither end is cut).
    fn live(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let from_cut = self.cut[i];
        self.succs[i].iter().map(|&s| s as usize).filter(move |&s| !from_cut && !self.cut[s])
    }

    /// Finds the cycles among uncut instructions, cutting each loop's head in turn: the
    /// unbounded loops, and how many were counted.
    fn loops(&mut self, c: &Cfg) -> (Vec<UnboundedLoop>, usize) {
        let (mut out, mut counted) = (Vec::new(), 0);
        loop {
            let cyclic: Vec<Vec<usize>> =
                self.sccs().into_iter().filter(|s| s.len() > 1 || self.live(s[0]).any(|t| t == s[0])).collect();
            if cyclic.is_empty() {
                return (out, counted);
            }
            for scc in cyclic {
                let head = self.head(&scc);
                if is_counted(c, &scc) {
                    counted += 1;
                } else {
                    out.push(UnboundedLoop { head: c.insns[head].addr, place_point_at: c.insns[head].addr });
                }
                self.cut[head] = true;
            }
        }
    }

    /// The lowest-addressed node of `scc` entered from outside it (else its lowest).
    fn head(&self, scc: &[usize]) -> usize {
        let inside = |n: usize| scc.contains(&n);
        let entered =
            |n: usize| n == 0 || (0..self.succs.len()).any(|p| !inside(p) && self.succs[p].contains(&(n as u32)));
        scc.iter().copied().filter(|&n| entered(n)).min().unwrap_or_else(|| *scc.iter().min().expect("non-empty"))
    }

    /// Tarjan's strongly connected components over the live edges, iteratively.
    fn sccs(&self) -> Vec<Vec<usize>> {
        let n = self.succs.len();
        let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
        let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
        for root in 0..n {
            if index[root] != usize::MAX || self.cut[root] {
                continue;
            }
            let mut work: Vec<(usize, Vec<usize>)> = vec![(root, self.live(root).collect())];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on[root] = true;
            while let Some(top) = work.last_mut() {
                let v = top.0;
                if let Some(w) = top.1.pop() {
                    if index[w] == usize::MAX {
                        (index[w], low[w], on[w]) = (next, next, true);
                        next += 1;
                        stack.push(w);
                        work.push((w, self.live(w).collect()));
                    } else if on[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some((p, _)) = work.last() {
                    low[*p] = low[*p].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut scc = Vec::new();
                    while let Some(w) = stack.pop() {
                        on[w] = false;
                        scc.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(scc);
                }
            }
        }
        out
    }

    /// The heaviest path over live edges of the (acyclic) graph, starting at the entry or just
    /// after a cut.
    fn longest(&self, addrs: &[u64]) -> Option<Stretch> {
        let n = self.succs.len();
        let mut best: Vec<Option<(u64, usize)>> = vec![None; n]; // (weight, last node)
        for scc in self.sccs() {
            let v = scc[0]; // acyclic: singletons, in reverse topological order
            let tail = self.live(v).filter_map(|s| best[s]).max_by_key(|b| b.0);
            best[v] = Some(tail.map_or((self.weight[v], v), |(w, e)| (w + self.weight[v], e)));
        }
        let mut starts: Vec<usize> = vec![0];
        for i in 0..n {
            if self.cut[i] {
                starts.extend(self.succs[i].iter().map(|&s| s as usize).filter(|&s| !self.cut[s]));
            }
        }
        let s = starts.into_iter().filter_map(|s| best[s].map(|b| (b, s))).max_by_key(|((w, _), _)| *w)?;
        let ((insns, end), start) = s;
        Some(Stretch { insns, start: addrs[start], end: addrs[end] })
    }
}

/// Does the loop `scc` leave through a counted exit (see the module docs)?
fn is_counted(c: &Cfg, scc: &[usize]) -> bool {
    let inside = |n: u32| scc.contains(&(n as usize));
    let written_in_loop = |r: u8| scc.iter().filter(move |&&k| c.insns[k].writes & (1 << r) != 0);
    let stepped = |r: u8| written_in_loop(r).all(|&k| c.insns[k].shape == Shape::Step(r));
    let invariant = |r: u8| written_in_loop(r).next().is_none();
    scc.iter().any(|&j| {
        let (b, Some(p)) = (&c.insns[j], j.checked_sub(1)) else { return false };
        let exits = b.step == Step::Plain && b.succs.len() == 2 && b.succs.iter().any(|&s| !inside(s));
        let counted = match c.insns[p].shape {
            Shape::Cmp(r, None) | Shape::Step(r) => stepped(r),
            Shape::Cmp(r, Some(o)) => stepped(r) && invariant(o) || stepped(o) && invariant(r),
            Shape::Other => false,
        };
        exits && scc.contains(&p) && counted
    })
}
