//! RT class run queue (SCHED_FIFO / SCHED_RR): one FIFO list per priority
//! level plus a 100-bit bitmap of non-empty levels, as Linux's
//! `struct rt_prio_array` in kernel/sched/rt.c.
//!
//! Invariants:
//! - bit `p` of `bitmap` is set iff the list of level `p` is non-empty, so the
//!   highest runnable priority is found in O(1) (two `leading_zeros`);
//! - a task is on at most one list, and `links[id].queued_prio` names it;
//! - **no allocation outside [`RtRunQueue::new`] / [`RtRunQueue::reserve`]**:
//!   the lists are intrusive and index-based (`next`/`prev` are `TaskId`s
//!   into `links`, a `Vec` indexed by `TaskId`). `links` is grown only by
//!   `reserve`, called at task spawn time; every other operation only
//!   reads/writes existing slots, so it is safe from (simulated) interrupt
//!   context where the heap allocator must not be called. Using a `TaskId`
//!   that was never reserved panics rather than growing storage.
//!
//! Priorities are user-facing rt priorities `MIN_RT_PRIO..=MAX_RT_PRIO`
//! (1..=99, higher number = more important, as `sched_param.sched_priority`).
//! Unlike Linux, where the running RT task stays on its list, `pick_next`
//! removes the task; the caller re-inserts it with `enqueue_head` when it is
//! preempted (Linux `ENQUEUE_HEAD`) or `enqueue` when it yields / its RR
//! slice expires.

use crate::task::TaskId;
use alloc::vec::Vec;

/// Highest (most important) user-facing RT priority.
pub(super) const MAX_RT_PRIO: u8 = 99;
/// Lowest user-facing RT priority.
pub(super) const MIN_RT_PRIO: u8 = 1;

/// Number of priority levels / bitmap bits (index 0 is never used).
const NR_RT_LEVELS: usize = MAX_RT_PRIO as usize + 1;

/// Per-task intrusive links (the `run_list` of Linux's `sched_rt_entity`).
#[derive(Clone, Copy, Debug, Default)]
struct SchedRtEntity {
    next: Option<TaskId>,
    prev: Option<TaskId>,
    queued_prio: Option<u8>,
}

/// Head and tail of one priority level's FIFO list.
#[derive(Clone, Copy, Debug, Default)]
struct RtList {
    head: Option<TaskId>,
    tail: Option<TaskId>,
}

/// The RT run queue. See the module docs for the allocation invariant.
#[derive(Debug)]
pub(crate) struct RtRunQueue {
    bitmap: [u64; 2],
    queue: [RtList; NR_RT_LEVELS],
    links: Vec<SchedRtEntity>,
    rt_nr_running: usize,
}

impl Default for RtRunQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl RtRunQueue {
    /// Empty run queue with no link storage; call [`Self::reserve`] before use.
    pub(crate) fn new() -> Self {
        Self { bitmap: [0; 2], queue: [RtList::default(); NR_RT_LEVELS], links: Vec::new(), rt_nr_running: 0 }
    }

    /// Grow link storage so ids `0..max_task_id_exclusive` are usable.
    /// The only allocating call; never shrinks. Call at task spawn time.
    pub(crate) fn reserve(&mut self, max_task_id_exclusive: usize) {
        if max_task_id_exclusive > self.links.len() {
            self.links.resize(max_task_id_exclusive, SchedRtEntity::default());
        }
    }

    /// Queue `id` at the tail of level `prio`.
    ///
    /// # Panics
    /// If `id` is already queued, was never reserved, or `prio` is out of range.
    pub(crate) fn enqueue(&mut self, id: TaskId, prio: u8) {
        self.check_enqueue(id, prio);
        self.list_add_tail(id, prio);
    }

    /// Queue `id` at the head of level `prio` (Linux `ENQUEUE_HEAD`): a FIFO
    /// task preempted by a higher one keeps its place at the front.
    ///
    /// # Panics
    /// As [`Self::enqueue`].
    pub(crate) fn enqueue_head(&mut self, id: TaskId, prio: u8) {
        self.check_enqueue(id, prio);
        self.list_add_head(id, prio);
    }

    /// Remove `id` from its level; returns `false` if it was not queued.
    pub(crate) fn dequeue(&mut self, id: TaskId) -> bool {
        match self.links.get(id).and_then(|l| l.queued_prio) {
            Some(prio) => {
                self.list_del(id, prio);
                true
            }
            None => false,
        }
    }

    /// Whether `id` is on some level's list.
    pub(crate) fn is_queued(&self, id: TaskId) -> bool {
        self.links.get(id).is_some_and(|l| l.queued_prio.is_some())
    }

    /// Highest non-empty priority level, via the bitmap in O(1).
    pub(crate) fn highest_prio(&self) -> Option<u8> {
        sched_find_first_bit(&self.bitmap)
    }

    /// Head of the highest non-empty level, without removing it.
    #[cfg(test)] // used by the tests only
    pub(crate) fn peek_next(&self) -> Option<TaskId> {
        self.highest_prio().and_then(|p| self.queue[usize::from(p)].head)
    }

    /// Remove and return the head of the highest non-empty level.
    pub(crate) fn pick_next(&mut self) -> Option<TaskId> {
        let prio = self.highest_prio()?;
        let id = self.queue[usize::from(prio)].head?;
        self.list_del(id, prio);
        Some(id)
    }

    /// SCHED_RR slice expiry (Linux `requeue_task_rt`): move a queued `id` to
    /// the tail of its own level. Returns `false` (no-op) if not queued.
    #[cfg(test)] // used by the tests only
    pub(crate) fn requeue_tail(&mut self, id: TaskId) -> bool {
        let Some(prio) = self.links.get(id).and_then(|l| l.queued_prio) else {
            return false;
        };
        if self.queue[usize::from(prio)].tail != Some(id) {
            self.list_del(id, prio);
            self.list_add_tail(id, prio);
        }
        true
    }

    /// Number of queued tasks (Linux `rt_nr_running`).
    pub(crate) fn nr_running(&self) -> usize {
        self.rt_nr_running
    }

    /// Tasks queued at `prio`, head to tail (for tests and tracing).
    ///
    /// # Panics
    /// If `prio` is out of range.
    pub(crate) fn iter_level(&self, prio: u8) -> impl Iterator<Item = TaskId> + '_ {
        check_prio(prio);
        core::iter::successors(self.queue[usize::from(prio)].head, move |&id| self.links[id].next)
    }

    fn check_enqueue(&self, id: TaskId, prio: u8) {
        check_prio(prio);
        let len = self.links.len();
        let link = self
            .links
            .get(id)
            .unwrap_or_else(|| panic!("RtRunQueue: task {id} not reserved (capacity {len}); call reserve() at spawn"));
        if let Some(p) = link.queued_prio {
            panic!("RtRunQueue: task {id} already queued at rt priority {p}");
        }
    }

    fn list_add_tail(&mut self, id: TaskId, prio: u8) {
        let level = &mut self.queue[usize::from(prio)];
        let old_tail = level.tail.replace(id);
        if level.head.is_none() {
            level.head = Some(id);
        }
        if let Some(t) = old_tail {
            self.links[t].next = Some(id);
        }
        self.links[id] = SchedRtEntity { next: None, prev: old_tail, queued_prio: Some(prio) };
        self.mark_added(prio);
    }

    fn list_add_head(&mut self, id: TaskId, prio: u8) {
        let level = &mut self.queue[usize::from(prio)];
        let old_head = level.head.replace(id);
        if level.tail.is_none() {
            level.tail = Some(id);
        }
        if let Some(h) = old_head {
            self.links[h].prev = Some(id);
        }
        self.links[id] = SchedRtEntity { next: old_head, prev: None, queued_prio: Some(prio) };
        self.mark_added(prio);
    }

    fn list_del(&mut self, id: TaskId, prio: u8) {
        let SchedRtEntity { next, prev, .. } = core::mem::take(&mut self.links[id]);
        let level = &mut self.queue[usize::from(prio)];
        match prev {
            Some(p) => self.links[p].next = next,
            None => level.head = next,
        }
        match next {
            Some(n) => self.links[n].prev = prev,
            None => level.tail = prev,
        }
        if level.head.is_none() {
            clear_bit(&mut self.bitmap, prio);
        }
        self.rt_nr_running -= 1;
    }

    fn mark_added(&mut self, prio: u8) {
        set_bit(&mut self.bitmap, prio);
        self.rt_nr_running += 1;
    }
}

fn check_prio(prio: u8) {
    assert!(
        (MIN_RT_PRIO..=MAX_RT_PRIO).contains(&prio),
        "rt priority {prio} out of range {MIN_RT_PRIO}..={MAX_RT_PRIO}"
    );
}

fn set_bit(bitmap: &mut [u64; 2], prio: u8) {
    bitmap[usize::from(prio / 64)] |= 1 << (prio % 64);
}

fn clear_bit(bitmap: &mut [u64; 2], prio: u8) {
    bitmap[usize::from(prio / 64)] &= !(1 << (prio % 64));
}

/// Highest set bit (= most important level). Linux numbers priorities the
/// other way round and searches for the first bit; same O(1) idea.
fn sched_find_first_bit(bitmap: &[u64; 2]) -> Option<u8> {
    let top = |word: u64, base: u8| (word != 0).then(|| base + 63 - word.leading_zeros() as u8);
    top(bitmap[1], 64).or_else(|| top(bitmap[0], 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    fn rq(n: usize) -> RtRunQueue {
        let mut rq = RtRunQueue::new();
        rq.reserve(n);
        rq
    }

    fn level(rq: &RtRunQueue, prio: u8) -> Vec<TaskId> {
        rq.iter_level(prio).collect()
    }

    /// Walk a level backwards via `prev` and check it mirrors the forward walk.
    fn assert_level_consistent(rq: &RtRunQueue, prio: u8) {
        let fwd = level(rq, prio);
        let mut back = Vec::new();
        let mut cur = rq.queue[usize::from(prio)].tail;
        while let Some(id) = cur {
            assert_eq!(rq.links[id].queued_prio, Some(prio));
            back.push(id);
            cur = rq.links[id].prev;
        }
        back.reverse();
        assert_eq!(fwd, back);
        let bit = rq.bitmap[usize::from(prio / 64)] >> (prio % 64) & 1 == 1;
        assert_eq!(bit, !fwd.is_empty(), "bitmap bit for level {prio}");
    }

    #[test]
    fn fifo_order_within_level() {
        let mut rq = rq(8);
        for id in [3, 1, 4, 0] {
            rq.enqueue(id, 50);
        }
        assert_eq!(rq.nr_running(), 4);
        let order: Vec<_> = core::iter::from_fn(|| rq.pick_next()).collect();
        assert_eq!(order, vec![3, 1, 4, 0]);
        assert_eq!(rq.nr_running(), 0);
    }

    #[test]
    fn higher_priority_first() {
        let mut rq = rq(8);
        rq.enqueue(0, 10);
        rq.enqueue(1, 80);
        rq.enqueue(2, 70);
        rq.enqueue(3, 80);
        assert_eq!(rq.highest_prio(), Some(80));
        assert_eq!(rq.peek_next(), Some(1));
        let order: Vec<_> = core::iter::from_fn(|| rq.pick_next()).collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
        assert_eq!(rq.highest_prio(), None);
        assert_eq!(rq.peek_next(), None);
    }

    #[test]
    fn enqueue_head_keeps_preempted_task_first() {
        let mut rq = rq(8);
        rq.enqueue(1, 40);
        rq.enqueue(2, 40);
        // Task 0 was running at 40, preempted by a prio-90 task: goes back to head.
        rq.enqueue_head(0, 40);
        assert_eq!(level(&rq, 40), vec![0, 1, 2]);
        rq.enqueue_head(3, 20); // head of an empty level
        assert_eq!(level(&rq, 20), vec![3]);
        assert_level_consistent(&rq, 40);
        assert_level_consistent(&rq, 20);
        assert_eq!(rq.pick_next(), Some(0));
    }

    #[test]
    fn dequeue_middle_head_tail() {
        let mut rq = rq(8);
        for id in 0..5 {
            rq.enqueue(id, 33);
        }
        assert!(rq.dequeue(2)); // middle
        assert_eq!(level(&rq, 33), vec![0, 1, 3, 4]);
        assert!(rq.dequeue(0)); // head
        assert_eq!(level(&rq, 33), vec![1, 3, 4]);
        assert!(rq.dequeue(4)); // tail
        assert_eq!(level(&rq, 33), vec![1, 3]);
        assert_level_consistent(&rq, 33);
        assert!(!rq.dequeue(4));
        assert!(!rq.dequeue(100)); // never reserved: not queued
        assert!(!rq.is_queued(4));
        assert!(rq.is_queued(3));
        assert_eq!(rq.nr_running(), 2);
        rq.enqueue(4, 33);
        assert_eq!(level(&rq, 33), vec![1, 3, 4]);
        assert_level_consistent(&rq, 33);
    }

    #[test]
    fn requeue_tail_rotates() {
        let mut rq = rq(8);
        for id in 0..3 {
            rq.enqueue(id, 5);
        }
        assert!(rq.requeue_tail(0));
        assert_eq!(level(&rq, 5), vec![1, 2, 0]);
        assert!(rq.requeue_tail(2));
        assert_eq!(level(&rq, 5), vec![1, 0, 2]);
        assert!(rq.requeue_tail(2)); // already tail: no change
        assert_eq!(level(&rq, 5), vec![1, 0, 2]);
        assert_level_consistent(&rq, 5);
        assert!(!rq.requeue_tail(7));
        assert_eq!(rq.nr_running(), 3);
    }

    #[test]
    fn bitmap_cleared_when_level_empties() {
        let mut rq = rq(8);
        rq.enqueue(0, 70);
        rq.enqueue(1, 70);
        rq.enqueue(2, 3);
        assert!(rq.dequeue(0));
        assert_eq!(rq.highest_prio(), Some(70));
        assert!(rq.dequeue(1));
        assert_eq!(rq.highest_prio(), Some(3));
        assert_eq!(rq.bitmap, [1 << 3, 0]);
        assert_eq!(rq.pick_next(), Some(2));
        assert_eq!(rq.bitmap, [0, 0]);
    }

    #[test]
    fn priority_edges() {
        let mut rq = rq(8);
        rq.enqueue(0, MIN_RT_PRIO);
        rq.enqueue(1, MAX_RT_PRIO);
        rq.enqueue(2, 63);
        rq.enqueue(3, 64);
        assert_eq!(rq.highest_prio(), Some(99));
        let order: Vec<_> = core::iter::from_fn(|| rq.pick_next()).collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn prio_zero_panics() {
        rq(1).enqueue(0, 0);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn prio_100_panics() {
        rq(1).enqueue_head(0, 100);
    }

    #[test]
    #[should_panic(expected = "already queued")]
    fn double_enqueue_panics() {
        let mut rq = rq(1);
        rq.enqueue(0, 1);
        rq.enqueue(0, 2);
    }

    #[test]
    #[should_panic(expected = "not reserved")]
    fn unreserved_id_panics() {
        rq(2).enqueue(2, 1);
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Naive model: queued tasks as (id, prio, seq); smaller seq = nearer head.
    #[derive(Default)]
    struct Model {
        tasks: Vec<(TaskId, u8, i64)>,
        tail_seq: i64,
        head_seq: i64,
    }

    impl Model {
        fn pos(&self, id: TaskId) -> Option<usize> {
            self.tasks.iter().position(|t| t.0 == id)
        }
        fn add(&mut self, id: TaskId, prio: u8, head: bool) {
            let seq = if head {
                self.head_seq -= 1;
                self.head_seq
            } else {
                self.tail_seq += 1;
                self.tail_seq
            };
            self.tasks.push((id, prio, seq));
        }
        fn remove(&mut self, id: TaskId) -> Option<(TaskId, u8, i64)> {
            self.pos(id).map(|i| self.tasks.swap_remove(i))
        }
        fn next(&self) -> Option<TaskId> {
            let best = self.tasks.iter().max_by_key(|t| (t.1, -t.2));
            best.map(|t| t.0)
        }
        fn level(&self, prio: u8) -> Vec<TaskId> {
            let mut v: Vec<_> = self.tasks.iter().filter(|t| t.1 == prio).collect();
            v.sort_by_key(|t| t.2);
            v.into_iter().map(|t| t.0).collect()
        }
    }

    #[test]
    fn randomized_against_model() {
        const N: usize = 64;
        let mut rq = rq(N);
        let mut model = Model::default();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for step in 0..10_000 {
            let id = rng.below(N as u64) as TaskId;
            // Few distinct levels (incl. both edges) so lists get long.
            let prio = [1, 2, 50, 63, 64, 98, 99][rng.below(7) as usize];
            match rng.below(6) {
                0 | 1 if model.pos(id).is_none() => {
                    let head = rng.below(2) == 0;
                    if head {
                        rq.enqueue_head(id, prio);
                    } else {
                        rq.enqueue(id, prio);
                    }
                    model.add(id, prio, head);
                }
                2 => assert_eq!(rq.dequeue(id), model.remove(id).is_some()),
                3 => {
                    let want = model.next();
                    if let Some(w) = want {
                        model.remove(w);
                    }
                    assert_eq!(rq.pick_next(), want, "step {step}");
                }
                4 => {
                    let moved = model.remove(id).map(|(_, p, _)| model.add(id, p, false));
                    assert_eq!(rq.requeue_tail(id), moved.is_some());
                }
                _ => assert_eq!(rq.is_queued(id), model.pos(id).is_some()),
            }
            assert_eq!(rq.nr_running(), model.tasks.len());
            assert_eq!(rq.peek_next(), model.next(), "step {step}");
            assert_eq!(rq.highest_prio(), model.tasks.iter().map(|t| t.1).max());
            if step % 97 == 0 {
                for p in MIN_RT_PRIO..=MAX_RT_PRIO {
                    assert_eq!(level(&rq, p), model.level(p), "step {step} level {p}");
                    assert_level_consistent(&rq, p);
                }
            }
        }
    }
}
