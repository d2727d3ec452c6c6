//! Fair class (CFS-style): runnable tasks are ordered by virtual runtime,
//! which advances at `NICE_0_LOAD / weight` times wall-clock runtime, so
//! always running the smallest-vruntime task shares the CPU in proportion to
//! the nice weights (Linux kernel/sched/fair.c, pre-EEVDF).
//!
//! Invariants:
//! - the queue holds runnable tasks that are *not* running (the running task
//!   is CFS's `curr`, kept by the caller) in a binary min-heap keyed by
//!   `(vruntime, insertion seq)`, so ties are picked in insertion order;
//!   `heap_pos[id]` is the heap slot of a queued `id` (`None` otherwise), so
//!   arbitrary dequeue is O(log n);
//! - `min_vruntime` never decreases; `load_weight` is the sum of queued weights;
//! - **no allocation outside [`FairRunQueue::new`] / [`FairRunQueue::reserve`]**:
//!   `heap_pos` is a `Vec` indexed by `TaskId` grown only by `reserve` (called
//!   at task spawn time), and `heap` only ever `push`es within the capacity
//!   that `reserve` set (checked by `debug_assert!`), so enqueue / dequeue /
//!   pick are safe from (simulated) interrupt context where the heap
//!   allocator must not be called. An unreserved `TaskId` panics.
//!
//! vruntimes are plain `u64` nanoseconds (no wrap-around handling: 2^64 ns is
//! ~584 years of virtual time).

use super::TaskId;

/// Load weight of a nice-0 task (Linux `NICE_0_LOAD` without the fixed-point
/// scale-up used on 64-bit).
pub(super) const NICE_0_LOAD: u64 = 1024;

/// Linux `sched_prio_to_weight` (kernel/sched/core.c): index = nice + 20.
/// Each step is ~1.25x, so one nice level is ~10% CPU between two tasks.
#[rustfmt::skip]
pub(super) const SCHED_PRIO_TO_WEIGHT: [u64; 40] = [
    /* -20 */ 88761, 71755, 56483, 46273, 36291,
    /* -15 */ 29154, 23254, 18705, 14949, 11916,
    /* -10 */  9548,  7620,  6100,  4904,  3906,
    /*  -5 */  3121,  2501,  1991,  1586,  1277,
    /*   0 */  1024,   820,   655,   526,   423,
    /*   5 */   335,   272,   215,   172,   137,
    /*  10 */   110,    87,    70,    56,    45,
    /*  15 */    36,    29,    23,    18,    15,
];

/// Lowest (most favoured) nice value.
pub(super) const MIN_NICE: i8 = -20;
/// Highest (least favoured) nice value.
pub(super) const MAX_NICE: i8 = 19;

/// Load weight for `nice`.
///
/// # Panics
/// If `nice` is outside `-20..=19`.
pub(super) fn nice_to_weight(nice: i8) -> u64 {
    assert!((MIN_NICE..=MAX_NICE).contains(&nice), "nice {nice} out of range {MIN_NICE}..={MAX_NICE}");
    SCHED_PRIO_TO_WEIGHT[(i16::from(nice) - i16::from(MIN_NICE)) as usize]
}

/// Scheduler tunables (Linux sysctl_sched_*, unscaled single-CPU values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FairTunables {
    /// Target period in which every runnable task runs once (6 ms).
    pub sched_latency_ns: u64,
    /// Minimum slice before tick preemption (0.75 ms).
    pub min_granularity_ns: u64,
    /// vruntime lead a woken task needs to preempt `curr` (1 ms at nice 0).
    pub wakeup_granularity_ns: u64,
}

impl Default for FairTunables {
    fn default() -> Self {
        Self { sched_latency_ns: 6_000_000, min_granularity_ns: 750_000, wakeup_granularity_ns: 1_000_000 }
    }
}

/// Per-task fair-class state (Linux `struct sched_entity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FairEntity {
    pub vruntime: u64,
    pub weight: u64,
    pub sum_exec_runtime: u64,
    pub exec_start_ns: u64,
    pub prev_sum_exec_runtime: u64,
}

impl FairEntity {
    /// Fresh entity with weight for `nice`; place it with `place_entity`.
    pub(crate) fn new(nice: i8) -> Self {
        Self {
            vruntime: 0,
            weight: nice_to_weight(nice),
            sum_exec_runtime: 0,
            exec_start_ns: 0,
            prev_sum_exec_runtime: 0,
        }
    }
}

/// Scale wall-clock `delta_ns` to virtual time: `delta * NICE_0_LOAD / weight`
/// (saturating at `u64::MAX`).
pub(super) fn calc_delta_fair(delta_ns: u64, weight: u64) -> u64 {
    if weight == NICE_0_LOAD {
        return delta_ns;
    }
    calc_delta(delta_ns, NICE_0_LOAD, weight)
}

/// `delta * mul / div` with a u128 intermediate, saturating (Linux `__calc_delta`).
fn calc_delta(delta: u64, mul: u64, div: u64) -> u64 {
    assert!(div != 0, "calc_delta: zero weight");
    let q = u128::from(delta) * u128::from(mul) / u128::from(div);
    u64::try_from(q).unwrap_or(u64::MAX)
}

/// Charge `se` for the time it ran since `exec_start_ns` (Linux `update_curr`):
/// adds to `sum_exec_runtime` and, weighted, to `vruntime`. Returns the
/// wall-clock delta (0 if the clock did not advance).
pub(super) fn update_curr(se: &mut FairEntity, now_ns: u64) -> u64 {
    let delta_exec = now_ns.saturating_sub(se.exec_start_ns);
    if delta_exec == 0 {
        return 0;
    }
    se.exec_start_ns = now_ns;
    se.sum_exec_runtime += delta_exec;
    se.vruntime = se.vruntime.saturating_add(calc_delta_fair(delta_exec, se.weight));
    delta_exec
}

/// Mark `se` as just picked to run (Linux `set_next_entity`): starts its
/// execution clock and the slice measured by `check_preempt_tick`.
pub(super) fn set_next_entity(se: &mut FairEntity, now_ns: u64) {
    se.exec_start_ns = now_ns;
    se.prev_sum_exec_runtime = se.sum_exec_runtime;
}

/// One heap slot: ordering key `(vruntime, seq)` plus payload.
#[derive(Clone, Copy, Debug)]
struct FairNode {
    vruntime: u64,
    seq: u64,
    id: TaskId,
    weight: u64,
}

impl FairNode {
    fn key(&self) -> (u64, u64) {
        (self.vruntime, self.seq)
    }
}

/// The fair run queue (Linux `struct cfs_rq`, minus `curr`).
#[derive(Debug)]
pub(crate) struct FairRunQueue {
    tunables: FairTunables,
    heap: Vec<FairNode>,
    heap_pos: Vec<Option<usize>>,
    next_seq: u64,
    min_vruntime: u64,
    load_weight: u64,
}

impl FairRunQueue {
    /// Empty run queue with no storage; call [`Self::reserve`] before use.
    pub(crate) fn new(tunables: FairTunables) -> Self {
        Self { tunables, heap: Vec::new(), heap_pos: Vec::new(), next_seq: 0, min_vruntime: 0, load_weight: 0 }
    }

    /// Make ids `0..max_tasks` usable and the heap able to hold all of them.
    /// The only allocating call; never shrinks. Call at task spawn time.
    pub(crate) fn reserve(&mut self, max_tasks: usize) {
        if max_tasks > self.heap_pos.len() {
            self.heap_pos.resize(max_tasks, None);
        }
        self.heap.reserve(max_tasks.saturating_sub(self.heap.len()));
    }

    /// The tunables this queue was built with.
    #[cfg(test)] // used by the tests only
    pub(crate) fn tunables(&self) -> &FairTunables {
        &self.tunables
    }

    /// Queue `id` (not running) with its current `vruntime` and `weight`.
    ///
    /// # Panics
    /// If `id` is already queued or was never reserved.
    pub(crate) fn enqueue(&mut self, id: TaskId, vruntime: u64, weight: u64) {
        let len = self.heap_pos.len();
        let slot = self.heap_pos.get(id).unwrap_or_else(|| {
            panic!("FairRunQueue: task {id} not reserved (capacity {len}); call reserve() at spawn")
        });
        assert!(slot.is_none(), "FairRunQueue: task {id} already queued");
        debug_assert!(self.heap.len() < self.heap.capacity(), "FairRunQueue: push would reallocate in enqueue");
        let seq = self.next_seq;
        self.next_seq += 1;
        let i = self.heap.len();
        self.heap.push(FairNode { vruntime, seq, id, weight });
        self.heap_pos[id] = Some(i);
        self.load_weight += weight;
        self.sift_up(i);
    }

    /// Remove a queued `id`; returns `false` if it was not queued.
    pub(crate) fn dequeue(&mut self, id: TaskId) -> bool {
        match self.heap_pos.get(id).copied().flatten() {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    /// Whether `id` is queued.
    pub(crate) fn is_queued(&self, id: TaskId) -> bool {
        self.heap_pos.get(id).is_some_and(Option::is_some)
    }

    /// Remove and return the leftmost (min vruntime, then oldest) task.
    pub(crate) fn pick_next(&mut self) -> Option<(TaskId, u64)> {
        let first = *self.heap.first()?;
        self.remove_at(0);
        Some((first.id, first.vruntime))
    }

    /// Leftmost task without removing it (Linux `__pick_first_entity`).
    #[cfg(test)] // used by the tests only
    pub(crate) fn peek_next(&self) -> Option<TaskId> {
        self.heap.first().map(|n| n.id)
    }

    /// The queued tasks, in heap order (for balancing, which picks one to move).
    pub(crate) fn iter_ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.heap.iter().map(|n| n.id)
    }

    /// vruntime of the leftmost task.
    pub(crate) fn peek_min_vruntime(&self) -> Option<u64> {
        self.heap.first().map(|n| n.vruntime)
    }

    /// Number of queued tasks (excludes the running task).
    pub(crate) fn nr_running(&self) -> usize {
        self.heap.len()
    }

    /// Sum of queued tasks' weights (excludes the running task).
    pub(crate) fn load_weight(&self) -> u64 {
        self.load_weight
    }

    /// Monotonic floor of the queue's vruntimes.
    pub(crate) fn min_vruntime(&self) -> u64 {
        self.min_vruntime
    }

    /// Linux `update_min_vruntime`: move `min_vruntime` towards
    /// min(curr, leftmost), never backwards. Pass `None` when nothing runs.
    pub(crate) fn update_min_vruntime(&mut self, curr_vruntime: Option<u64>) {
        let candidate = match (curr_vruntime, self.peek_min_vruntime()) {
            (Some(c), Some(l)) => c.min(l),
            (Some(v), None) | (None, Some(v)) => v,
            (None, None) => return,
        };
        self.min_vruntime = self.min_vruntime.max(candidate);
    }

    /// Linux `place_entity` (without START_DEBIT): new tasks (`initial`) start
    /// no earlier than `min_vruntime`; waking sleepers get at most
    /// `sched_latency / 2` of credit (GENTLE_FAIR_SLEEPERS). Never moves an
    /// entity backwards.
    pub(crate) fn place_entity(&self, se: &mut FairEntity, initial: bool) {
        let mut vruntime = self.min_vruntime;
        if !initial {
            vruntime = vruntime.saturating_sub(self.tunables.sched_latency_ns / 2);
        }
        se.vruntime = se.vruntime.max(vruntime);
    }

    /// Linux `__sched_period`: `sched_latency`, stretched to
    /// `nr * min_granularity` once more than `latency / min_gran` tasks run.
    pub(crate) fn sched_period(&self, nr_running: usize) -> u64 {
        let t = &self.tunables;
        let sched_nr_latency = t.sched_latency_ns / t.min_granularity_ns.max(1);
        let nr = nr_running as u64;
        if nr > sched_nr_latency {
            nr.saturating_mul(t.min_granularity_ns)
        } else {
            t.sched_latency_ns
        }
    }

    /// Linux `sched_slice`: the entity's weighted share of the period.
    /// Both counts must include the running task.
    pub(crate) fn sched_slice(&self, se_weight: u64, nr_running_incl_curr: usize, total_weight_incl_curr: u64) -> u64 {
        let period = self.sched_period(nr_running_incl_curr);
        if total_weight_incl_curr == 0 {
            return period;
        }
        calc_delta(period, se_weight, total_weight_incl_curr)
    }

    /// Tick preemption: true once `curr` has run longer than its slice since
    /// it was picked (`set_next_entity`).
    pub(crate) fn check_preempt_tick(&self, curr: &FairEntity, nr_running_incl_curr: usize, total_weight: u64) -> bool {
        let ideal_runtime = self.sched_slice(curr.weight, nr_running_incl_curr, total_weight);
        let delta_exec = curr.sum_exec_runtime.saturating_sub(curr.prev_sum_exec_runtime);
        delta_exec > ideal_runtime
    }

    /// Wakeup preemption (Linux `wakeup_preempt_entity` == 1): `woken` is
    /// more than the wakeup granularity (scaled by its weight) behind `curr`.
    pub(crate) fn check_preempt_wakeup(&self, curr: &FairEntity, woken: &FairEntity) -> bool {
        let gran = calc_delta_fair(self.tunables.wakeup_granularity_ns, woken.weight);
        woken.vruntime.saturating_add(gran) < curr.vruntime
    }

    fn remove_at(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.swap_nodes(i, last);
        let Some(gone) = self.heap.pop() else { return };
        self.heap_pos[gone.id] = None;
        self.load_weight -= gone.weight;
        if i < self.heap.len() {
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    fn swap_nodes(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.heap_pos[self.heap[a].id] = Some(a);
        self.heap_pos[self.heap[b].id] = Some(b);
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].key() >= self.heap[parent].key() {
                break;
            }
            self.swap_nodes(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let mut min = i;
            for child in [2 * i + 1, 2 * i + 2] {
                if child < self.heap.len() && self.heap[child].key() < self.heap[min].key() {
                    min = child;
                }
            }
            if min == i {
                return;
            }
            self.swap_nodes(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rq(n: usize) -> FairRunQueue {
        let mut rq = FairRunQueue::new(FairTunables::default());
        rq.reserve(n);
        rq
    }

    fn drain(rq: &mut FairRunQueue) -> Vec<TaskId> {
        std::iter::from_fn(|| rq.pick_next().map(|(id, _)| id)).collect()
    }

    #[test]
    fn weight_table_spot_values() {
        assert_eq!(nice_to_weight(-20), 88761);
        assert_eq!(nice_to_weight(0), NICE_0_LOAD);
        assert_eq!(nice_to_weight(19), 15);
        assert_eq!(nice_to_weight(-5), 3121);
        assert_eq!(nice_to_weight(5), 335);
        for pair in SCHED_PRIO_TO_WEIGHT.windows(2) {
            let ratio = pair[0] as f64 / pair[1] as f64;
            assert!((1.19..=1.29).contains(&ratio), "{pair:?} ratio {ratio}");
        }
    }

    #[test]
    #[should_panic(expected = "nice 20 out of range")]
    fn nice_out_of_range_panics() {
        nice_to_weight(20);
    }

    #[test]
    fn calc_delta_fair_scales_by_weight() {
        assert_eq!(calc_delta_fair(1_000_000, NICE_0_LOAD), 1_000_000);
        assert_eq!(calc_delta_fair(1_000_000, 2048), 500_000);
        assert_eq!(calc_delta_fair(1_000, 15), 68_266);
        assert_eq!(calc_delta_fair(u64::MAX, 15), u64::MAX);
    }

    #[test]
    fn update_curr_charges_weighted_vruntime() {
        let mut se = FairEntity::new(5);
        set_next_entity(&mut se, 1_000);
        assert_eq!(update_curr(&mut se, 2_001_000), 2_000_000);
        assert_eq!(se.sum_exec_runtime, 2_000_000);
        assert_eq!(se.vruntime, 2_000_000 * 1024 / 335);
        assert_eq!(se.exec_start_ns, 2_001_000);
        assert_eq!(update_curr(&mut se, 2_001_000), 0);
    }

    #[test]
    fn pick_order_by_vruntime_ties_in_insertion_order() {
        let mut rq = rq(8);
        rq.enqueue(0, 300, 1024);
        rq.enqueue(1, 100, 1024);
        rq.enqueue(2, 200, 1024);
        rq.enqueue(3, 100, 1024);
        rq.enqueue(4, 100, 1024);
        rq.enqueue(5, 50, 1024);
        assert_eq!(rq.peek_min_vruntime(), Some(50));
        assert_eq!(rq.peek_next(), Some(5));
        assert_eq!(rq.pick_next(), Some((5, 50)));
        assert_eq!(drain(&mut rq), vec![1, 3, 4, 2, 0]);
        assert_eq!(rq.pick_next(), None);
        assert_eq!(rq.load_weight(), 0);
    }

    #[test]
    fn dequeue_arbitrary_entry() {
        let mut rq = rq(8);
        for (id, v) in [(0, 40), (1, 10), (2, 30), (3, 20), (4, 50), (5, 25)] {
            rq.enqueue(id, v, 100 + id as u64);
        }
        assert_eq!(rq.load_weight(), 615);
        assert!(rq.dequeue(3));
        assert!(!rq.dequeue(3));
        assert!(!rq.dequeue(99));
        assert!(rq.dequeue(1)); // the leftmost
        assert!(!rq.is_queued(1));
        assert_eq!(rq.nr_running(), 4);
        assert_eq!(rq.load_weight(), 615 - 103 - 101);
        rq.enqueue(3, 35, 103); // may re-enqueue after dequeue
        assert_eq!(drain(&mut rq), vec![5, 2, 3, 0, 4]);
    }

    #[test]
    fn randomized_dequeue_against_model() {
        let mut rq = rq(32);
        let mut model: Vec<(u64, u64, TaskId)> = Vec::new();
        let (mut x, mut seq) = (0x2545_F491_4F6C_DD1Du64, 0);
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 32) as TaskId;
            let pos = model.iter().position(|m| m.2 == id);
            match (x >> 8) % 3 {
                0 if pos.is_none() => {
                    let v = (x >> 16) % 16;
                    rq.enqueue(id, v, 1);
                    model.push((v, seq, id));
                    seq += 1;
                }
                1 => {
                    model.sort_unstable();
                    let want = (!model.is_empty()).then(|| model.remove(0));
                    assert_eq!(rq.pick_next(), want.map(|m| (m.2, m.0)));
                }
                _ => assert_eq!(rq.dequeue(id), pos.map(|p| model.remove(p)).is_some()),
            }
            assert_eq!(rq.nr_running(), model.len());
            assert_eq!(rq.load_weight(), model.len() as u64);
            assert_eq!(rq.peek_min_vruntime(), model.iter().map(|m| m.0).min());
        }
    }

    #[test]
    fn min_vruntime_is_monotonic() {
        let mut rq = rq(4);
        rq.enqueue(0, 1_000, 1024);
        rq.update_min_vruntime(Some(5_000));
        assert_eq!(rq.min_vruntime(), 1_000); // min(curr, leftmost)
        rq.update_min_vruntime(None);
        assert_eq!(rq.min_vruntime(), 1_000);
        rq.dequeue(0);
        rq.update_min_vruntime(Some(5_000));
        assert_eq!(rq.min_vruntime(), 5_000); // only curr
        rq.enqueue(1, 2_000, 1024); // a placed-back sleeper lower than min
        rq.update_min_vruntime(Some(4_000));
        assert_eq!(rq.min_vruntime(), 5_000); // never backwards
        rq.update_min_vruntime(None);
        assert_eq!(rq.min_vruntime(), 5_000);
    }

    #[test]
    fn place_entity_sleeper_credit_clamp() {
        let mut rq = rq(4);
        rq.enqueue(0, 100_000_000, 1024);
        rq.update_min_vruntime(None);
        let half_latency = rq.tunables().sched_latency_ns / 2;
        let mut new = FairEntity::new(0);
        rq.place_entity(&mut new, true);
        assert_eq!(new.vruntime, 100_000_000);
        let mut long_sleeper = FairEntity::new(0);
        long_sleeper.vruntime = 10;
        rq.place_entity(&mut long_sleeper, false);
        assert_eq!(long_sleeper.vruntime, 100_000_000 - half_latency);
        let mut short_sleeper = FairEntity::new(0);
        short_sleeper.vruntime = 99_000_000;
        rq.place_entity(&mut short_sleeper, false);
        assert_eq!(short_sleeper.vruntime, 99_000_000); // keeps its own, no boost
        let mut early = FairEntity::new(0);
        rq_empty_place(&mut early);
        assert_eq!(early.vruntime, 0); // saturates at 0 near boot
    }

    fn rq_empty_place(se: &mut FairEntity) {
        rq(1).place_entity(se, false);
    }

    #[test]
    fn period_and_slice() {
        let rq = rq(1);
        assert_eq!(rq.sched_period(1), 6_000_000);
        assert_eq!(rq.sched_period(8), 6_000_000);
        assert_eq!(rq.sched_period(9), 9 * 750_000);
        assert_eq!(rq.sched_slice(1024, 2, 2048), 3_000_000);
        assert_eq!(rq.sched_slice(1024, 1, 0), 6_000_000);
        assert_eq!(rq.sched_slice(3121, 3, 4480), 6_000_000 * 3121 / 4480);
    }

    #[test]
    fn preempt_tick_after_slice() {
        let rq = rq(1);
        let mut curr = FairEntity::new(0);
        set_next_entity(&mut curr, 0);
        update_curr(&mut curr, 3_000_000);
        assert!(!rq.check_preempt_tick(&curr, 2, 2048)); // exactly the slice
        update_curr(&mut curr, 3_000_001);
        assert!(rq.check_preempt_tick(&curr, 2, 2048));
        set_next_entity(&mut curr, 3_000_001);
        assert!(!rq.check_preempt_tick(&curr, 2, 2048));
    }

    #[test]
    fn preempt_wakeup_uses_scaled_granularity() {
        let rq = rq(1);
        let mut curr = FairEntity::new(0);
        curr.vruntime = 10_000_000;
        let mut woken = FairEntity::new(0);
        woken.vruntime = 9_000_000; // exactly 1 ms behind: not enough
        assert!(!rq.check_preempt_wakeup(&curr, &woken));
        woken.vruntime = 8_999_999;
        assert!(rq.check_preempt_wakeup(&curr, &woken));
        let mut heavy = FairEntity::new(-5); // gran scaled down to ~328 us
        heavy.vruntime = 9_600_000;
        assert!(rq.check_preempt_wakeup(&curr, &heavy));
        let mut light = FairEntity::new(5); // gran scaled up to ~3.06 ms
        light.vruntime = 8_000_000;
        assert!(!rq.check_preempt_wakeup(&curr, &light));
        assert!(!rq.check_preempt_wakeup(&woken, &curr)); // woken ahead
    }

    /// Three tasks (nice 0, 5, -5) on one CPU for 10 s with a 1 ms tick:
    /// each one's CPU share must be within 2% (relative) of weight / total.
    #[test]
    fn simulation_shares_follow_weights() {
        const TICK_NS: u64 = 1_000_000;
        const RUN_NS: u64 = 10_000_000_000;
        let mut tasks = [FairEntity::new(0), FairEntity::new(5), FairEntity::new(-5)];
        let total: u64 = tasks.iter().map(|t| t.weight).sum();
        let mut rq = rq(tasks.len());
        for (id, se) in tasks.iter_mut().enumerate() {
            rq.place_entity(se, true);
            rq.enqueue(id, se.vruntime, se.weight);
        }
        let (mut now, mut switches) = (0, 0);
        let (mut curr, _) = rq.pick_next().unwrap();
        set_next_entity(&mut tasks[curr], now);
        while now < RUN_NS {
            now += TICK_NS;
            let se = &mut tasks[curr];
            update_curr(se, now);
            rq.update_min_vruntime(Some(se.vruntime));
            let nr = rq.nr_running() + 1;
            if rq.check_preempt_tick(se, nr, rq.load_weight() + se.weight) {
                rq.enqueue(curr, se.vruntime, se.weight); // put_prev_entity
                curr = rq.pick_next().unwrap().0;
                set_next_entity(&mut tasks[curr], now);
                switches += 1;
            }
        }
        assert!(switches > 1_000, "only {switches} context switches");
        let ran: u64 = tasks.iter().map(|t| t.sum_exec_runtime).sum();
        assert_eq!(ran, RUN_NS);
        for (id, se) in tasks.iter().enumerate() {
            let share = se.sum_exec_runtime as f64 / ran as f64;
            let want = se.weight as f64 / total as f64;
            let err = (share - want).abs() / want;
            assert!(err < 0.02, "task {id}: share {share:.4} want {want:.4}");
        }
    }
}
