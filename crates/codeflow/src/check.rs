//! The static latency checker: per function, the longest stretch of instructions that can run
//! without passing a preemption point, and every loop that can spin without one.
//!
//! **Mechanism.** In a function's graph (`check_graph.rs`) a point *cuts* the path (a
//! stretch ends before it and the next starts after it). A direct call of a function every
//! path through which meets a point (its summary's `may return` is false) ends the stretch
//! that reaches it, with the callee's longest run from its entry to its first point, and the
//! stretches after the call start with the callee's longest run from a point to its return.
//! A call of any other analysed callee is one node weighing 1 plus the callee's own longest
//! stretch from its entry (an upper bound of what it runs point-free); a call of a function
//! that never returns and reaches no point (a panic) ends the path and is not followed. A cycle among uncut instructions is a loop without a point; its
//! head is its lowest-addressed instruction entered from outside the cycle. The loop is
//! **counted** if it leaves through a conditional branch whose flags come from the instruction
//! just before it, a `cmp r, imm`, a `cmp r, s` (either way round) or a step of `r`
//! (`add`/`sub`/`inc`/`dec`), where the loop writes `r` only by constant steps and never
//! writes `s`: it runs a finite
//! number of iterations fixed when it starts (a count, a length). Any other such loop is
//! **unbounded** (its exit hangs on memory, a call's result, the clock), and one point placed
//! at its head bounds it. An unbounded loop's head is then cut; a counted loop loses its edges
//! back into its head; the rest of the cycle is searched again, so nested loops are each named.
//! What is left is acyclic: the longest stretch is its heaviest path, from the function's entry,
//! from just after a cut or from after a call that ends a stretch, through one iteration of
//! each counted loop (its head included).
//!
//! What the checker cannot know weighs 1 and is listed in `unknowns` with its [`Reason`]: a call
//! through a register or memory, into code outside the analysis (libc, the vDSO), into an
//! unresolved function, back into a function still being checked (recursion), into a callee
//! that has such an unknown itself, and a `rep`-prefixed string instruction (it repeats its
//! count register's times). The stretch is then a lower bound, never passed off as a bound.
//!
//! **Invariant.** `max_stretch` is `None` exactly when the function is unresolved, has an
//! unbounded loop or calls a function that does; otherwise, when `unknowns` is empty, no
//! point-free path through the function (per iteration of its counted loops) is longer, and
//! when it is not, some path is at least that long.

use crate::bound::Reason;
use crate::cfg::Step;
use crate::check_graph::Graph;
use crate::flow::Analysis;
use crate::induct::Induct;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

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
    /// What the checker cannot know on its point-free paths, each weighed as 1 instruction in
    /// `max_stretch` (see the module docs).
    pub unknowns: Vec<Unseen>,
    /// The longest run from its entry to its first point (or a return).
    pub head_insns: u64,
    /// The longest run from a point to its return.
    pub tail_insns: u64,
}

/// An instruction whose cost the checker cannot know (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unseen {
    /// The instruction (a call, or a `rep` string instruction).
    pub at: u64,
    /// The callee, for a direct call.
    pub callee: Option<u64>,
    /// Why its cost is not known (for a callee with an unknown of its own, that one's reason).
    pub reason: Reason,
}

impl FunctionCheck {
    /// True if some path through it, or through a callee, runs without bound.
    pub fn is_unbounded(&self) -> bool {
        !self.unbounded.is_empty() || !self.unbounded_calls.is_empty()
    }

    /// True if `max_stretch` is an upper bound: it is known, and nothing on the way is
    /// unknown.
    pub fn is_bound(&self) -> bool {
        self.max_stretch.is_some() && self.unknowns.is_empty()
    }
}

/// What a call adds to its caller's stretches.
#[derive(Default)]
struct Callee {
    /// Its longest stretch from its entry (0 for a callee that never returns).
    stretch: u64,
    /// Its longest runs from its entry to a point and from a point to its return.
    head: u64,
    tail: u64,
    /// Why these are only lower bounds, if they are.
    unknown: Option<Reason>,
    /// It has an unbounded stretch.
    unbounded: bool,
}

impl Callee {
    fn unknown(reason: Reason) -> Callee {
        Callee { unknown: Some(reason), ..Callee::default() }
    }
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
            unknowns: Vec::new(),
            head_insns: 0,
            tail_insns: 0,
        };
        if r.resolved {
            let mut g = self.graph(f, memo, &mut r);
            (r.unbounded, r.counted_loops) = g.loops(c);
            if r.unbounded.is_empty() && r.unbounded_calls.is_empty() {
                (r.max_stretch, r.head_insns, r.tail_insns) = g.stretches(c);
            }
        }
        memo.insert(f, Some(r.clone()));
        r
    }

    /// `f`'s graph, its calls weighed (the unbounded and unknown ones noted in `r`).
    fn graph(&self, f: usize, memo: &mut BTreeMap<usize, Option<FunctionCheck>>, r: &mut FunctionCheck) -> Graph {
        let c = &self.cfgs[f];
        let mut g = Graph::new(c.insns.len());
        for (i, x) in c.insns.iter().enumerate() {
            g.succs.push(x.succs.clone());
            let unseen = |callee, reason| Unseen { at: x.addr, callee, reason };
            match x.step {
                Step::Point(_) => g.cut[i] = true,
                Step::Call(t) | Step::TailCall(t) => {
                    let callee = self.callee(f, t, memo);
                    if callee.unbounded {
                        r.unbounded_calls.push((x.addr, t));
                    }
                    r.unknowns.extend(callee.unknown.map(|why| unseen(Some(t), why)));
                    match (self.call_cuts(t), x.step) {
                        // returns here: the stretch ends in the callee, the next starts in it
                        (true, Step::Call(_)) => (g.weight[i], g.resume[i]) = (1 + callee.head, Some(callee.tail)),
                        // leaves for good on the taken path (a conditional one falls through
                        // too: the head is counted on both, an upper bound); the callee's tail
                        // then runs into this function's caller
                        (true, _) => (g.weight[i], g.passes_on[i]) = (1 + callee.head, Some(callee.tail)),
                        (false, _) => g.weight[i] += callee.stretch,
                    }
                }
                Step::IndirectCall => r.unknowns.push(unseen(None, Reason::IndirectCall)),
                Step::Plain if x.induct == Induct::RepString => r.unknowns.push(unseen(None, Reason::RepCount)),
                _ => {}
            }
        }
        g
    }
}

impl Analysis {
    /// What the call of the callee at `t` from `f` adds to its stretches.
    fn callee(&self, f: usize, t: u64, memo: &mut BTreeMap<usize, Option<FunctionCheck>>) -> Callee {
        // A callee that never returns and reaches no point (a panic) ends the task's path, not
        // its latency; one that reaches a point (an idle loop) is checked like any other.
        if self.noreturn.binary_search(&t).is_ok() && !self.call_cuts(t) {
            return Callee::default();
        }
        let Ok(callee) = self.cfgs.binary_search_by_key(&t, |c| c.start) else {
            return Callee::unknown(Reason::CallOutsideText);
        };
        if callee == f || memo.get(&callee).is_some_and(|m| m.is_none()) {
            return Callee::unknown(Reason::Recursion); // the callee is being checked
        }
        let cc = self.check_function(callee, memo);
        match cc.max_stretch {
            _ if cc.is_unbounded() => Callee { unbounded: true, ..Callee::default() },
            None => Callee::unknown(Reason::Unresolved),
            Some(s) => Callee {
                stretch: s.insns,
                head: cc.head_insns,
                tail: cc.tail_insns,
                unknown: cc.unknowns.first().map(|u| u.reason),
                unbounded: false,
            },
        }
    }
}
