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

use crate::task::TaskId;
use alloc::vec::Vec;

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
mod tests;
