//! The bound's longest paths through a function's loops: each strongly connected part without a
//! point is solved as one iteration (its inner loops first) times its trip count.
//!
//! **Mechanism.** [`solve`] visits a region's strongly connected parts sinks first (Tarjan's
//! order): a plain instruction's bound is its weight plus the largest of its successors'; a
//! loop's instructions get the longest path to the end of their iteration (the region of the
//! loop with the edges back into its head removed, solved the same way), plus `T - 1` times
//! the head's, plus the largest bound after an exit. [`trip_count`] finds `T` from a counted
//! exit (see [`crate::bound`]'s docs for the shape).
//!
//! **Invariant.** Every instruction of a region gets a value no smaller than the instructions
//! of any real path from it that stays in the region until it ends or leaves.

use crate::bound::{add, Graph, Reason, Unknown, Val};
use crate::cfg::{Cfg, Shape};
use crate::induct::{Cond, Induct};
use crate::trip;
use alloc::{vec, vec::Vec};

/// Solves `region` (indices into `c`) into `val`: edges into `cut` (a loop's head) or out of
/// the region end the path there.
pub(crate) fn solve(c: &Cfg, g: &Graph, region: &[usize], cut: Option<usize>, val: &mut [Val]) {
    let n = c.insns.len();
    let mut inside = vec![false; n];
    region.iter().for_each(|&v| inside[v] = true);
    let internal = |s: usize| inside[s] && Some(s) != cut;
    let succs = |v: usize| g.live[v].iter().map(|&s| s as usize).filter(|&s| internal(s)).collect::<Vec<_>>();
    for scc in sccs(n, region, &succs) {
        let v = scc[0];
        if scc.len() == 1 && !succs(v).contains(&v) {
            let tail = succs(v).into_iter().try_fold(0, |m, s| Ok(m.max(val[s]?)));
            val[v] = add(g.weight[v], tail, c.insns[v].addr);
            continue;
        }
        solve_loop(c, g, &scc, &internal, val);
    }
}

fn max(a: Val, b: Val) -> Val {
    Ok(a?.max(b?))
}

/// One loop `l` of a region (`internal` says which successors stay in the region).
fn solve_loop(c: &Cfg, g: &Graph, l: &[usize], internal: &dyn Fn(usize) -> bool, val: &mut [Val]) {
    let mut inl = vec![false; c.insns.len()];
    l.iter().for_each(|&v| inl[v] = true);
    let enters = |p: usize, v: usize| !inl[p] && !g.padding[p] && g.live[p].contains(&(v as u32));
    let entered = |v: usize| v == 0 || g.preds[v].iter().any(|&p| enters(p as usize, v));
    let entries: Vec<usize> = l.iter().copied().filter(|&v| entered(v)).collect();
    let low = c.insns[*l.iter().min().expect("non-empty")].addr;
    let trips = match entries[..] {
        [h] => trip_count(c, g, l, &inl, h).map(|t| (h, t)),
        _ => Err(Unknown { reason: Reason::IrreducibleLoop, at: low }),
    };
    let Ok((h, t)) = trips.map_err(|e| l.iter().for_each(|&v| val[v] = Err(e))) else { return };
    solve(c, g, l, Some(h), val);
    let mut after: Val = Ok(0);
    for &v in l {
        for s in g.live[v].iter().map(|&s| s as usize).filter(|&s| !inl[s] && internal(s)) {
            after = max(after, val[s]);
        }
    }
    let at = c.insns[h].addr;
    let rest = val[h].and_then(|w| w.checked_mul(t - 1).ok_or(Unknown { reason: Reason::Overflow, at }));
    for &v in l {
        val[v] = add(add(val[v], rest, at), after, at);
    }
}

/// The loop `l` (members `inl`) with head `h` seen one iteration at a time.
struct Body<'a> {
    c: &'a Cfg,
    g: &'a Graph,
    inl: &'a [bool],
    h: usize,
    /// Members of an inner loop (they may run many times per iteration).
    inner: Vec<bool>,
}

impl Body<'_> {
    /// Edges of one iteration: inside the loop, not back into the head.
    fn next(&self, v: usize) -> impl Iterator<Item = usize> + '_ {
        self.g.live[v].iter().map(|&s| s as usize).filter(|&s| self.inl[s] && s != self.h)
    }

    fn latch(&self, v: usize) -> bool {
        self.g.live[v].contains(&(self.h as u32))
    }

    /// A path from `from` over one iteration, not through `avoid`, reaches a node with `goal`.
    fn reaches(&self, from: usize, avoid: usize, goal: &dyn Fn(usize) -> bool) -> bool {
        self.reaches_avoiding(from, &[avoid], goal)
    }

    /// [`Body::reaches`], avoiding every node of `avoid`.
    fn reaches_avoiding(&self, from: usize, avoid: &[usize], goal: &dyn Fn(usize) -> bool) -> bool {
        let mut seen = vec![false; self.inl.len()];
        let mut work = vec![from];
        while let Some(v) = work.pop() {
            if avoid.contains(&v) || core::mem::replace(&mut seen[v], true) {
                continue;
            }
            if goal(v) {
                return true;
            }
            work.extend(self.next(v));
        }
        false
    }

    /// `x` runs exactly once on every iteration.
    fn every_iteration(&self, x: usize) -> bool {
        !self.inner[x] && (x == self.h || !self.reaches(self.h, x, &|v| self.latch(v)))
    }

    /// One of `xs` (none in an inner loop) runs on every iteration: no path from the head to
    /// a latch avoids them all (LLVM duplicates a latch's test onto each path that ends the
    /// iteration).
    fn one_every_iteration(&self, xs: &[usize]) -> bool {
        xs.iter().all(|&x| !self.inner[x])
            && (xs.contains(&self.h) || !self.reaches_avoiding(self.h, xs, &|v| self.latch(v)))
    }

    /// Whether the step `s` runs before the test `p` on every iteration (`Some(true)`), on
    /// none (`Some(false)`), or on some only (`None`).
    fn step_first(&self, s: usize, p: usize) -> Option<bool> {
        if s == p || s == self.h || !self.reaches(self.h, s, &|v| v == p) {
            Some(true)
        } else if !self.reaches(s, usize::MAX, &|v| v == p) {
            Some(false)
        } else {
            None
        }
    }
}

/// How often the head of loop `l` runs per entry, from its counted exits (the fewest).
fn trip_count(c: &Cfg, g: &Graph, l: &[usize], inl: &[bool], h: usize) -> Result<u64, Unknown> {
    let mut body = Body { c, g, inl, h, inner: vec![false; inl.len()] };
    let next = |v: usize| body.next(v).collect::<Vec<_>>();
    let inner: Vec<usize> =
        sccs(inl.len(), l, &next).into_iter().filter(|s| s.len() > 1 || next(s[0]).contains(&s[0])).flatten().collect();
    inner.into_iter().for_each(|v| body.inner[v] = true);
    let (mut exits, mut why) = (Vec::new(), Reason::LoopExitNotCounted);
    for &b in l {
        let Induct::Jcc { cond, target } = c.insns[b].induct else { continue };
        let x = &c.insns[b];
        let leaves = x.succs.iter().any(|&s| !inl[s as usize]) && x.succs.iter().any(|&s| inl[s as usize]);
        let Some(p) = b.checked_sub(1) else { continue };
        if !leaves || !inl[p] || c.insns[p].succs != [b as u32] || g.preds[b] != [p as u32] {
            continue;
        }
        let test = match c.insns[p].induct {
            Induct::Cmp { reg, imm, width } => (reg, imm, width),
            Induct::Step { reg, width, flags: true, .. } if matches!(cond, Cond::E | Cond::Ne) => (reg, 0, width),
            Induct::None if stepped_against_register(c, l, p) => {
                why = Reason::CountSetAtRunTime; // a count compared with a length, an end
                continue;
            }
            _ => continue,
        };
        let exit = if c.index_of(target).is_some_and(|t| !inl[t]) { cond } else { cond.negate() };
        exits.push((p, test, exit));
    }
    let mut best = None;
    for &(p, test, exit) in &exits {
        // the same test leaving the same way elsewhere in the loop (a duplicated latch)
        let twins: Vec<usize> = exits.iter().filter(|e| (e.1, e.2) == (test, exit)).map(|e| e.0).collect();
        match counted(&body, l, p, &twins, test, exit) {
            Ok(t) => best = Some(best.map_or(t, |b: u64| b.min(t))),
            Err(r) => why = r,
        }
    }
    best.ok_or(Unknown { reason: why, at: c.insns[h].addr })
}

/// `p` compares two registers, one of which the loop writes only by constant steps (a count
/// or a pointer compared with a bound known at run time only).
fn stepped_against_register(c: &Cfg, l: &[usize], p: usize) -> bool {
    let Shape::Cmp(r, Some(o)) = c.insns[p].shape else { return false };
    let stepped = |r: u8| {
        let mut w = l.iter().filter(|&&v| c.insns[v].writes & (1 << r) != 0).peekable();
        w.peek().is_some() && w.all(|&v| c.insns[v].shape == Shape::Step(r))
    };
    stepped(r) || stepped(o)
}

/// The trip count from the exit tested at `p` (`cmp reg, imm` in `width` bits, leaving the
/// loop when `exit` holds); `twins`: the loop's tests of the same register against the same
/// constant leaving the same way (`p` among them), which together may run on every iteration
/// where `p` alone does not.
fn counted(
    body: &Body<'_>,
    l: &[usize],
    p: usize,
    twins: &[usize],
    (reg, imm, width): (u8, u64, u8),
    exit: Cond,
) -> Result<u64, Reason> {
    let c = body.c;
    let writers: Vec<usize> = l.iter().copied().filter(|&v| c.insns[v].writes & (1 << reg) != 0).collect();
    let [s] = writers[..] else { return Err(Reason::CountWrittenInBody) };
    // the step, and the register whose value on entry the count starts from
    let (r, delta, ws, start) = match c.insns[s].induct {
        Induct::Step { reg: r, delta, width: ws, .. } => (r, delta, ws, r),
        Induct::CopyStep { reg: r, from, delta } => match copied_back(body, s, r, from) {
            Some(start) => (r, delta, 64, start),
            None => return Err(Reason::CountWrittenInBody),
        },
        _ => return Err(Reason::CountWrittenInBody),
    };
    if r != reg || ws < width {
        return Err(Reason::CountWrittenInBody);
    }
    // the test on every iteration: `p` itself, or one of its twins (each after the step, or
    // each before it)
    let tested = body.every_iteration(p) || body.one_every_iteration(twins);
    if !body.every_iteration(s) || !tested {
        return Err(Reason::CountNotEveryIteration);
    }
    let step_first = body.step_first(s, p).ok_or(Reason::CountNotEveryIteration)?;
    if twins.iter().any(|&q| body.step_first(s, q) != Some(step_first)) && !body.every_iteration(p) {
        return Err(Reason::CountNotEveryIteration);
    }
    let init = init_value(body, start)?;
    let u0 = if step_first { init.wrapping_add(delta as u64) } else { init };
    let k = trip::first_exit(u0, delta, width as u32, imm, exit).ok_or(Reason::NeverExits)?;
    k.checked_add(1).ok_or(Reason::Overflow)
}

/// `s` (`lea reg, [from + d]`, the loop's one write of `reg`) steps `reg` by `d` if every path
/// back from `s` inside the loop meets `mov from, reg` before any other write of `from` or
/// `reg`: every time `s` runs, `from` then holds what `s` wrote the time before. The first
/// time, `from` holds what the count starts from: `reg`'s value on entry if every path meets
/// the copy before the head (it runs first in the iteration), `from`'s if every path reaches
/// the head first (the entering edge brings it there). That register, or `None`.
fn copied_back(body: &Body<'_>, s: usize, reg: u8, from: u8) -> Option<u8> {
    let h = body.h;
    if s != h {
        match back_to_copy(body, s, s, reg, from, Some(h))? {
            Back::Copied => return Some(reg),
            Back::Head => {}
        }
    }
    // from the head, around the back edges: every path must meet the copy
    match back_to_copy(body, h, s, reg, from, None)? {
        Back::Copied => Some(from),
        Back::Head => None,
    }
}

/// Where every path back from a point ends (see [`back_to_copy`]).
enum Back {
    /// At the copy, each of them.
    Copied,
    /// At the head, each of them.
    Head,
}

/// Walks back from `at` over predecessors inside the loop: `Copied` if every path meets
/// `mov from, reg` first, `Head` if every path reaches `head` first (`Some` only), `None` if a
/// path meets another write of `from` or `reg`, comes back to `s` (or to the head, walking
/// from it), or some paths end one way and some the other.
fn back_to_copy(body: &Body<'_>, at: usize, s: usize, reg: u8, from: u8, head: Option<usize>) -> Option<Back> {
    let (c, g) = (body.c, body.g);
    let (mut seen, mut work) = (vec![false; c.insns.len()], vec![at]);
    let (mut copied, mut headed) = (false, false);
    while let Some(v) = work.pop() {
        for p in g.preds[v].iter().map(|&p| p as usize).filter(|&p| body.inl[p]) {
            if c.insns[p].induct == (Induct::Copy { reg: from, from: reg }) {
                copied = true;
            } else if Some(p) == head {
                headed = true;
            } else if p == s || p == body.h || c.insns[p].writes & ((1 << from) | (1 << reg)) != 0 {
                return None;
            } else if !core::mem::replace(&mut seen[p], true) {
                work.push(p);
            }
        }
    }
    match (copied, headed) {
        (true, false) => Some(Back::Copied),
        (false, true) => Some(Back::Head),
        _ => None,
    }
}

/// The constant every path into the head sets `reg` to (walking back from the entering edges
/// to the last write on each path).
fn init_value(body: &Body<'_>, reg: u8) -> Result<u64, Reason> {
    let (c, g) = (body.c, body.g);
    let mut work: Vec<usize> =
        g.preds[body.h].iter().map(|&p| p as usize).filter(|&p| !body.inl[p] && !g.padding[p]).collect();
    if body.h == 0 || work.is_empty() {
        return Err(Reason::CountSetAtRunTime);
    }
    let (mut seen, mut value) = (vec![false; c.insns.len()], None);
    while let Some(q) = work.pop() {
        if core::mem::replace(&mut seen[q], true) {
            continue;
        }
        if c.insns[q].writes & (1 << reg) != 0 {
            match c.insns[q].induct {
                Induct::Set { reg: r, value: v } if r == reg && *value.get_or_insert(v) == v => continue,
                _ => return Err(Reason::CountSetAtRunTime),
            }
        }
        if q == 0 {
            return Err(Reason::CountSetAtRunTime); // the caller's value
        }
        work.extend(g.preds[q].iter().map(|&p| p as usize).filter(|&p| !g.padding[p]));
    }
    value.ok_or(Reason::CountSetAtRunTime)
}

/// Tarjan's strongly connected components of `nodes` (indices below `n`) under `succs`,
/// iteratively, sinks first.
pub(crate) fn sccs(n: usize, nodes: &[usize], succs: &dyn Fn(usize) -> Vec<usize>) -> Vec<Vec<usize>> {
    let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
    for &root in nodes {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> = vec![(root, succs(root))];
        (index[root], low[root], on[root]) = (next, next, true);
        next += 1;
        stack.push(root);
        while let Some(top) = work.last_mut() {
            let v = top.0;
            if let Some(w) = top.1.pop() {
                if index[w] == usize::MAX {
                    (index[w], low[w], on[w]) = (next, next, true);
                    next += 1;
                    stack.push(w);
                    work.push((w, succs(w)));
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
