//! The static latency bound from any instruction: the most instructions that can run from an
//! interrupt landing just before it until the task reaches a preemption point or returns from
//! the function.
//!
//! **Mechanism.** Per function, a longest-path computation over its graph ([`crate::cfg`]) with
//! a weight per instruction: a point weighs 0 and ends the path (the event is served there); a
//! return weighs 1 and ends it (under the patch models a redirected return serves the event;
//! under `voluntary` the return continues into the caller, which
//! [`Bounds::through_returns`] adds for a given chain of return addresses); a direct call
//! weighs 1 plus its callee's bound from the callee's entry (its longest path to a point or
//! its return), and ends the path if every path through the callee meets a point; a call of a
//! function that never returns (a panic) weighs 1 and ends the path, as in the checker
//! ([`crate::check`]); a tail call weighs 1 plus the callee's bound. The strongly connected
//! parts without a point are loops. A loop is **counted** when one conditional exit, tested on
//! every iteration (or duplicated, the same test leaving the same way, onto paths that
//! together cover every iteration: LLVM's duplicated latches), compares (`cmp r, imm`, `test
//! r, r`, or the flags of the step itself for `je`/`jne`) a register `r` that the loop writes
//! only by one constant step, executed once on every iteration (not in an inner loop), and
//! that every path into the loop's single entry (its head) sets to the same constant (`mov r,
//! imm`, `xor r, r`). The step may go through a copy (`lea r, [s + d]`, with `mov s, r` on
//! every path back to it and no other write of either between: LLVM's strength-reduced
//! offsets), the count then starting from `s`'s constant on entry if the copy comes after the
//! head, `r`'s if before. Its trip count `T` (how
//! often the head runs) is the first exit of `init + k*step` under the branch's condition in
//! the compared width (`crate::trip`); the loop's instructions are then bounded by the path
//! from the interrupted instruction to the end of its iteration, plus `T - 1` longest
//! iterations, plus the longest continuation after any exit. Inner loops are solved first
//! inside the outer one's iteration, so nested counted loops multiply. Everything else is
//! [`Bound::Unknown`] with a [`Reason`] and where: a loop without a counted exit, a count set
//! at run time, an irreducible loop, an indirect call, a call out of the analysed text,
//! recursion, an unresolved function, an overflow of `u64`, a `rep`-prefixed string
//! instruction (one instruction retired per repetition, counted at run time).
//!
//! **Invariant.** A [`Bound::Known`] figure is never smaller than the instructions of any real
//! execution from that instruction to its next point or return (soundness over precision);
//! the callee bounds are memoized per function in [`Bounds`], so a whole text costs one pass
//! per function and loop.

use crate::cfg::{Cfg, Step};
use crate::flow::Analysis;
use crate::induct::Induct;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::{vec, vec::Vec};
use core::cell::RefCell;

/// The bound from one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At most this many instructions run before a point or the return.
    Known(u64),
    /// No static figure: why, and where.
    Unknown(Unknown),
}

/// Why a bound is unknown, and the instruction that makes it so (a loop's head, a call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// The cause.
    pub reason: Reason,
    /// The loop's head, the call, or the function's first byte.
    pub at: u64,
}

/// What makes a bound unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A loop without a point whose exits test memory, a call's result or other flags.
    LoopExitNotCounted,
    /// A loop's count register comes from outside the function or from memory.
    CountSetAtRunTime,
    /// A loop's count register is written in the loop other than by one constant step.
    CountWrittenInBody,
    /// A loop's step or test is not on every iteration, or not ordered the same on all.
    CountNotEveryIteration,
    /// A counted exit that is never taken (or only after the count wraps around).
    NeverExits,
    /// A loop entered at more than one instruction.
    IrreducibleLoop,
    /// A call through a register or memory.
    IndirectCall,
    /// A call of code outside the analysed text (libc, the dynamic linker's stubs).
    CallOutsideText,
    /// A call back into a function still being bounded.
    Recursion,
    /// The function's control flow is not known exactly.
    Unresolved,
    /// The figure does not fit in 64 bits.
    Overflow,
    /// The address is not the first byte of an instruction of an analysed function.
    NotAnInstruction,
    /// A `rep`-prefixed string instruction, which repeats its count register's number of
    /// times (a `memcpy`'s `rep movsb` of a page: 4,096 instructions retired, not 1).
    RepCount,
}

impl Reason {
    /// The reason in words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::LoopExitNotCounted => "loop exits on memory, a call's result or uncounted flags",
            Reason::CountSetAtRunTime => "loop counted by a register set at run time",
            Reason::CountWrittenInBody => "loop's count register written in the body, not by its step",
            Reason::CountNotEveryIteration => "loop's step or test not on every iteration",
            Reason::NeverExits => "counted loop never meets its exit without wrapping",
            Reason::IrreducibleLoop => "loop entered at more than one instruction",
            Reason::IndirectCall => "indirect call",
            Reason::CallOutsideText => "call outside the analysed text",
            Reason::Recursion => "recursion",
            Reason::Unresolved => "unresolved control flow",
            Reason::Overflow => "bound overflows 64 bits",
            Reason::NotAnInstruction => "not an instruction of an analysed function",
            Reason::RepCount => "rep-prefixed string instruction (repeats its count register's times)",
        }
    }
}

/// A bound while it is computed.
pub(crate) type Val = Result<u64, Unknown>;

pub(crate) fn add(a: Val, b: Val, at: u64) -> Val {
    a?.checked_add(b?).ok_or(Unknown { reason: Reason::Overflow, at })
}

impl From<Val> for Bound {
    fn from(v: Val) -> Bound {
        v.map_or_else(Bound::Unknown, Bound::Known)
    }
}

/// The bounds of an analysed program, memoized per function (see the module docs).
pub struct Bounds<'a> {
    pub(crate) analysis: &'a Analysis,
    /// Per function (index): its instructions' bounds; `None` while being computed.
    memo: RefCell<BTreeMap<usize, Option<Rc<[Val]>>>>,
}

impl Analysis {
    /// A memo of bounds over this program: use it to bound many instructions.
    pub fn bounds(&self) -> Bounds<'_> {
        Bounds { analysis: self, memo: RefCell::new(BTreeMap::new()) }
    }

    /// The bound from the instruction at `addr` (see the module docs).
    pub fn bound_from(&self, addr: u64) -> Bound {
        self.bounds().from(addr)
    }

    /// What the instruction at `addr` does at the edge of its function and the addresses that
    /// may run next in it (`None`: not an instruction of a given function).
    pub fn successors(&self, addr: u64) -> Option<(Step, Vec<u64>)> {
        let c = &self.cfgs[self.function_at(addr)?];
        let x = &c.insns[c.index_of(addr)?];
        Some((x.step, x.succs.iter().map(|&s| c.insns[s as usize].addr).collect()))
    }

    /// Every function given to the analysis: its first byte and one past its last.
    pub fn function_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.cfgs.iter().map(|c| (c.start, c.end))
    }
}

impl Bounds<'_> {
    /// The bound from the instruction at `addr`: at most this many instructions run, from an
    /// interrupt landing just before it, until a point or the function's return.
    pub fn from(&self, addr: u64) -> Bound {
        let bad = Bound::Unknown(Unknown { reason: Reason::NotAnInstruction, at: addr });
        let Some(f) = self.analysis.function_at(addr) else { return bad };
        let Some(i) = self.analysis.cfgs[f].index_of(addr) else { return bad };
        self.function(f)[i].into()
    }

    /// [`Bounds::from`] for an interrupt that landed on the `rep` string instruction at `addr`
    /// with its count register at `count`, the iterations still to run: `count + 1` as QEMU's
    /// `-icount` counts them (each iteration is one execution of the instruction, and so is
    /// the last, which finds the count at 0 and falls through; measured: `count` alone came
    /// out one short on every sample), plus the longest bound of what follows it. For any
    /// other instruction, what [`Bounds::from`] says.
    pub fn from_rep(&self, addr: u64, count: u64) -> Bound {
        match self.from(addr) {
            Bound::Unknown(u) if u.reason == Reason::RepCount && u.at == addr => {}
            b => return b,
        }
        let Some((_, next)) = self.analysis.successors(addr) else {
            return Bound::Unknown(Unknown { reason: Reason::NotAnInstruction, at: addr });
        };
        let mut after = 0u64;
        for s in next.into_iter().filter(|&s| s != addr) {
            match self.from(s) {
                Bound::Known(n) => after = after.max(n),
                unknown => return unknown,
            }
        }
        count
            .checked_add(1)
            .and_then(|n| n.checked_add(after))
            .map_or(Bound::Unknown(Unknown { reason: Reason::Overflow, at: addr }), Bound::Known)
    }

    /// The bound from `addr` when a return goes on into the callers (the `voluntary` model,
    /// where only a point serves the event): `returns` are the return addresses of the
    /// direct caller chain, innermost first. The figure covers the instructions up to a point,
    /// or up to the return of the last frame listed; a frame whose every path meets a point
    /// ends the sum.
    pub fn through_returns(&self, addr: u64, returns: &[u64]) -> Bound {
        let mut total: Val = Ok(0);
        for &at in core::iter::once(&addr).chain(returns) {
            let b = match self.from(at) {
                Bound::Known(n) => Ok(n),
                Bound::Unknown(u) => Err(u),
            };
            total = add(total, b, at);
            if !self.may_return(at) {
                break;
            }
        }
        total.into()
    }

    /// The bounds of every instruction of the function starting at `start`.
    pub fn of_function(&self, start: u64) -> Option<Vec<(u64, Bound)>> {
        let f = self.analysis.cfgs.binary_search_by_key(&start, |c| c.start).ok()?;
        let vals = self.function(f);
        Some(self.analysis.cfgs[f].insns.iter().zip(vals.iter()).map(|(x, v)| (x.addr, (*v).into())).collect())
    }

    /// Some path from `addr` may leave its function before a point.
    fn may_return(&self, addr: u64) -> bool {
        self.analysis.next_points(addr).is_none_or(|n| n.may_return)
    }

    /// The memoized bounds of function `f`'s instructions.
    fn function(&self, f: usize) -> Rc<[Val]> {
        if let Some(Some(done)) = self.memo.borrow().get(&f) {
            return done.clone();
        }
        self.memo.borrow_mut().insert(f, None);
        let vals: Rc<[Val]> = self.compute(&self.analysis.cfgs[f]).into();
        self.memo.borrow_mut().insert(f, Some(vals.clone()));
        vals
    }

    /// The callee at `t` called at `at`: its bound from its entry, and whether some path
    /// through it returns before a point.
    fn callee(&self, at: u64, t: u64) -> (Val, bool) {
        let a = self.analysis;
        let Ok(g) = a.cfgs.binary_search_by_key(&t, |c| c.start) else {
            return (Err(Unknown { reason: Reason::CallOutsideText, at }), true);
        };
        if matches!(self.memo.borrow().get(&g), Some(None)) {
            return (Err(Unknown { reason: Reason::Recursion, at }), true);
        }
        let entry = self.function(g).first().copied().unwrap_or(Ok(0));
        (entry, a.flows.get(&g).is_none_or(|fl| fl.first().is_none_or(|x| x.1)))
    }

    fn compute(&self, c: &Cfg) -> Vec<Val> {
        let n = c.insns.len();
        if c.unresolved.is_some() {
            return vec![Err(Unknown { reason: Reason::Unresolved, at: c.start }); n];
        }
        let g = self.graph(c);
        let mut val: Vec<Val> = vec![Ok(0); n];
        let all: Vec<usize> = (0..n).collect();
        crate::bound_loops::solve(c, &g, &all, None, &mut val);
        val
    }

    /// Each instruction's weight and the successors a path goes on to.
    fn graph(&self, c: &Cfg) -> Graph {
        let n = c.insns.len();
        let mut g = Graph {
            weight: vec![Ok(1); n],
            live: Vec::with_capacity(n),
            preds: vec![Vec::new(); n],
            padding: Vec::new(),
        };
        for (i, x) in c.insns.iter().enumerate() {
            for &s in &x.succs {
                g.preds[s as usize].push(i as u32);
            }
            let noreturn = |t: u64| self.analysis.noreturn.binary_search(&t).is_ok();
            let goes_on = match x.step {
                Step::Point(_) => {
                    g.weight[i] = Ok(0);
                    false
                }
                Step::Plain if x.induct == Induct::RepString => {
                    g.weight[i] = Err(Unknown { reason: Reason::RepCount, at: x.addr });
                    true
                }
                Step::Plain | Step::Return | Step::Trap => true,
                Step::IndirectCall => {
                    g.weight[i] = Err(Unknown { reason: Reason::IndirectCall, at: x.addr });
                    true
                }
                Step::Call(t) | Step::TailCall(t) if noreturn(t) => true, // no successors
                Step::Call(t) | Step::TailCall(t) => {
                    let (b, returns) = self.callee(x.addr, t);
                    g.weight[i] = add(Ok(1), b, x.addr);
                    returns || matches!(x.step, Step::TailCall(_))
                }
            };
            g.live.push(if goes_on { x.succs.clone() } else { Vec::new() });
        }
        g.padding = padding(c);
        g
    }
}

/// A function's graph as the bound sees it.
pub(crate) struct Graph {
    /// Instructions an instruction stands for (a call: its callee's too).
    pub(crate) weight: Vec<Val>,
    /// Successors a path goes on to (none after a point, a cutting call, a return).
    pub(crate) live: Vec<Vec<u32>>,
    /// Predecessors in the control flow (all edges, for the count's initial value).
    pub(crate) preds: Vec<Vec<u32>>,
    /// `nop`s no path reaches (alignment after a jump): never a way into a loop.
    pub(crate) padding: Vec<bool>,
}

/// The `nop`s reached neither from the entry nor from any other instruction (a landing pad
/// the unwinder enters is an instruction too, so it stays a way in).
fn padding(c: &Cfg) -> Vec<bool> {
    let mut reached = vec![false; c.insns.len()];
    let mut work: Vec<usize> = (0..c.insns.len()).filter(|&i| i == 0 || c.insns[i].induct != Induct::Nop).collect();
    while let Some(v) = work.pop() {
        if !core::mem::replace(&mut reached[v], true) {
            work.extend(c.insns[v].succs.iter().map(|&s| s as usize));
        }
    }
    reached.into_iter().map(|r| !r).collect()
}
