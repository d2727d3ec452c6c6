//! The checker's graph of one function ([`Graph`]): its loops without a point, its heaviest
//! point-free path, and the runs its callers add around a call of it.
//!
//! **Mechanism.** Nodes are instructions with a weight (1, plus what a call runs in its callee).
//! A node is **cut** (a point, or the head of a loop without a counted exit once the loop is
//! named): no stretch goes through it. A node with a **resume** weight (a call of a function
//! every path through which meets a point) ends the stretch that reaches it, the callee's run
//! from its entry to its first point included in its weight, and the stretches after it start
//! with the resume weight: the callee's longest run from a point to its return. A tail call of
//! such a function carries its **passes on** weight instead (the callee's run from a point
//! runs into this function's caller) and stays in the stretches through it. Loops are the
//! strongly connected parts of the live edges (Tarjan's, iteratively); a counted loop loses its
//! edges back into its head (so a stretch runs through one iteration, the head included), an
//! unbounded one has its head cut; once no cycle is left the heaviest path is one pass in
//! reverse topological order.
//!
//! **Invariant.** A live edge leaves neither a cut node nor a resuming one and enters no cut
//! node; every stretch starts at the entry, after a cut, or after a resuming node with its
//! resume weight.

use crate::bound_loops::sccs;
use crate::cfg::{Cfg, Shape, Step};
use crate::check::{Stretch, UnboundedLoop};
use alloc::{vec, vec::Vec};

/// A function's graph as the checker sees it (see the module docs).
pub(crate) struct Graph {
    pub(crate) cut: Vec<bool>,
    pub(crate) weight: Vec<u64>,
    /// For a call that ends the stretch, what the stretches after it start with.
    pub(crate) resume: Vec<Option<u64>>,
    /// For a tail call of a function that meets a point, its run from a point to its return.
    pub(crate) passes_on: Vec<Option<u64>>,
    pub(crate) succs: Vec<Vec<u32>>,
}

impl Graph {
    /// An empty graph for `n` instructions of weight 1.
    pub(crate) fn new(n: usize) -> Graph {
        let none = vec![None; n];
        Graph {
            cut: vec![false; n],
            weight: vec![1; n],
            resume: none.clone(),
            passes_on: none,
            succs: Vec::with_capacity(n),
        }
    }

    /// Successors along which a stretch goes on (see the module's invariant).
    fn live(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let open = !self.cut[i] && self.resume[i].is_none();
        self.succs[i].iter().map(|&s| s as usize).filter(move |&s| open && !self.cut[s])
    }

    /// Finds the cycles among uncut instructions, breaking each loop at its head in turn (a
    /// counted one loses its edges back into the head, an unbounded one has its head cut): the
    /// unbounded loops, and how many were counted.
    pub(crate) fn loops(&mut self, c: &Cfg) -> (Vec<UnboundedLoop>, usize) {
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
                    for &m in &scc {
                        self.succs[m].retain(|&s| s as usize != head);
                    }
                } else {
                    out.push(UnboundedLoop { head: c.insns[head].addr, place_point_at: c.insns[head].addr });
                    self.cut[head] = true;
                }
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

    /// The strongly connected components over the live edges of the uncut nodes, in reverse
    /// topological order (`bound_loops::sccs`, Tarjan's).
    fn sccs(&self) -> Vec<Vec<usize>> {
        let nodes: Vec<usize> = (0..self.succs.len()).filter(|&v| !self.cut[v]).collect();
        sccs(self.succs.len(), &nodes, &|v| self.live(v).collect())
    }

    /// Per node of the (acyclic) graph, the heaviest path from it over live edges and its last
    /// node.
    fn heaviest(&self) -> Vec<Option<(u64, usize)>> {
        let mut best: Vec<Option<(u64, usize)>> = vec![None; self.succs.len()];
        for scc in self.sccs() {
            let v = scc[0]; // acyclic: singletons, in reverse topological order
            let tail = self.live(v).filter_map(|s| best[s]).max_by_key(|b| b.0);
            best[v] = Some(tail.map_or((self.weight[v], v), |(w, e)| (w + self.weight[v], e)));
        }
        best
    }

    /// Per node, the heaviest path from it over live edges that ends by leaving the function
    /// (a node of `exits`).
    fn to_exit(&self, exits: &[bool]) -> Vec<Option<u64>> {
        let mut best: Vec<Option<u64>> = vec![None; self.succs.len()];
        for scc in self.sccs() {
            let v = scc[0];
            let via = self.live(v).filter_map(|s| best[s]).max();
            best[v] = via.max(exits[v].then_some(0)).map(|w| w + self.weight[v]);
        }
        best
    }

    /// Where stretches start after the entry: `(node, its start weight, the address index a
    /// report names)`, after each cut and each resuming call.
    fn restarts(&self) -> Vec<(usize, u64, usize)> {
        let mut out = Vec::new();
        for i in 0..self.succs.len() {
            let extra = match (self.cut[i], self.resume[i]) {
                (true, _) => 0,
                (false, Some(r)) => r,
                (false, None) => continue,
            };
            let named = |s: usize| if self.cut[i] { s } else { i };
            out.extend(
                self.succs[i].iter().map(|&s| s as usize).filter(|&s| !self.cut[s]).map(|s| (s, extra, named(s))),
            );
        }
        out
    }

    /// Over the (acyclic) graph: the heaviest path over live edges, from the entry, just after
    /// a cut, or after a resuming call with its resume weight; and what a caller adds around a
    /// call of this function if every path through it meets a point: the heaviest run from its
    /// entry to its first point, and from a point (or a resuming call) to its return, or
    /// through a tail call of a function that meets a point to that function's own run to its
    /// return.
    pub(crate) fn stretches(&self, c: &Cfg) -> (Option<Stretch>, u64, u64) {
        let (best, restarts) = (self.heaviest(), self.restarts());
        let addr = |i: usize| c.insns[i].addr;
        let starts = core::iter::once((0, 0, 0)).chain(restarts.iter().copied());
        let longest = starts
            .filter_map(|(s, extra, named)| best[s].map(|(w, e)| ((w + extra, e), named)))
            .max_by_key(|s| s.0 .0)
            .map(|((insns, end), start)| Stretch { insns, start: addr(start), end: addr(end) });
        let head = best[0].map_or(0, |b| b.0);
        let leaves = |i: usize| matches!(c.insns[i].step, Step::Return | Step::TailCall(_));
        let exits: Vec<bool> = (0..self.succs.len()).map(|i| leaves(i) && self.passes_on[i].is_none()).collect();
        let to_exit = self.to_exit(&exits);
        let through = restarts.iter().filter_map(|&(s, extra, _)| to_exit[s].map(|w| w + extra));
        // a tail call of a function that meets a point: that function's run from its point on
        // returns to this function's caller
        let passed_on = self.passes_on.iter().flatten().copied();
        (longest, head, through.chain(passed_on).max().unwrap_or(0))
    }
}

/// Does the loop `scc` leave through a counted exit (see `crate::check`'s module docs)?
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
