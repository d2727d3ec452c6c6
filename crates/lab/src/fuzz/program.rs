//! A fuzz program: what its tasks do, how proptest generates it, and what each task must
//! return.
//!
//! **Mechanism.** [`program`] is a proptest strategy: raw random tasks, devices and
//! operations, then `Program::normalize` makes them a program that must finish: a task waits
//! only for an event some later task (by index) signals with an immediate operation (a
//! `Signal`, or an `Irq` of a device whose handler signals it), and a spawned child does only
//! leaf work, so by induction from the last task every wait and join completes. Shrinking works
//! on the raw values and the normalization is applied again, so a shrunk program is a program.
//!
//! **Invariant.** A task's result is a pure function of its operations (`TaskSpec::expected`):
//! the checksums its atoms compute over its own data, folded in order, and its children's
//! results. Interrupts, preemptions, migrations and model switches change when the work runs,
//! never what it computes.

use kernel::{BhMode, PatchLeaf, PreemptModel};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use services::atoms::{csum, PAGE};

/// Events tasks signal and wait for (one-shot flags with a wait queue each).
pub(crate) const EVENTS: usize = 4;
/// Most devices of a program.
pub(crate) const MAX_DEVICES: usize = 2;
/// Most top-level tasks of a program.
pub const MAX_TASKS: usize = 6;
/// Most operations of a task.
pub(crate) const MAX_OPS: usize = 10;

/// A task's scheduling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pol {
    /// SCHED_FIFO at this priority.
    Fifo(u8),
    /// SCHED_RR at this priority.
    Rr(u8),
    /// SCHED_NORMAL at this nice value.
    Normal(i8),
}

impl Pol {
    /// The kernel's policy.
    pub fn policy(self) -> kernel::Policy {
        match self {
            Pol::Fifo(p) => kernel::Policy::Fifo(p),
            Pol::Rr(p) => kernel::Policy::Rr(p),
            Pol::Normal(n) => kernel::Policy::Normal(n),
        }
    }
}

/// What a device's interrupt handler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IrqAction {
    /// Signals event `n` (sets its flag, wakes its queue).
    Signal(usize),
    /// Raises the program's softirq vector.
    Softirq,
    /// Schedules the program's tasklet (`hi`: the high-priority one).
    Tasklet {
        /// On `HI_SOFTIRQ`.
        hi: bool,
    },
}

/// One device: its interrupt's CPU and its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The CPU its interrupt arrives on.
    pub cpu: usize,
    /// What its handler does.
    pub action: IrqAction,
}

/// One operation of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A system call of `n` atoms of `reps` checksums each, a preemption point between atoms.
    Atoms {
        /// Atoms.
        n: u8,
        /// Checksums per atom.
        reps: u8,
    },
    /// `reps` checksums in user mode.
    User {
        /// Checksums.
        reps: u8,
    },
    /// Sleeps `us` microseconds.
    Sleep {
        /// Microseconds.
        us: u16,
    },
    /// A system call whose atoms run inside `preempt_disable`.
    PreemptOff {
        /// Atoms.
        n: u8,
        /// Checksums per atom.
        reps: u8,
    },
    /// A system call whose atoms run inside `local_irq_save`.
    IrqOff {
        /// Atoms.
        n: u8,
        /// Checksums per atom.
        reps: u8,
    },
    /// A system call whose atoms run inside `local_bh_disable`, raising the softirq inside if
    /// `raise`.
    BhOff {
        /// Atoms.
        n: u8,
        /// Checksums per atom.
        reps: u8,
        /// Raise the program's softirq inside the section.
        raise: bool,
    },
    /// Sets event `n` and wakes its waiters.
    Signal(usize),
    /// Sleeps until event `n` is set.
    Wait(usize),
    /// Raises the program's softirq vector from task context.
    Softirq,
    /// Schedules a tasklet.
    Tasklet {
        /// The high-priority one.
        hi: bool,
    },
    /// Raises device `n`'s interrupt now.
    Irq(usize),
    /// Has device `n` raise its interrupt `us` microseconds from now.
    IrqAt {
        /// The device.
        dev: usize,
        /// Microseconds from now.
        us: u16,
    },
    /// Spawns a child doing leaf operations (joined at the next `Join`, or at the task's end).
    Spawn {
        /// Its policy.
        pol: Pol,
        /// Its operations (leaf ones only).
        ops: Vec<Op>,
    },
    /// Joins every child spawned so far and not joined yet.
    Join,
    /// Sets the CPUs task `task` (by index) may run on.
    Affinity {
        /// The task's index.
        task: usize,
        /// The CPU mask.
        mask: u64,
    },
    /// Switches the kernel's preemption model.
    Model(#[serde(with = "by_name")] PreemptModel),
    /// `sched_yield`.
    Yield,
    /// Asks for a `BUG:`: sleeps 50 us inside `preempt_disable` ("scheduling while atomic").
    AtomicSleep,
}

impl Op {
    /// A child may do this (no waits, signals, spawns, joins, devices, affinity or model
    /// changes: its end never depends on another task).
    fn is_leaf(&self) -> bool {
        matches!(
            self,
            Op::Atoms { .. }
                | Op::User { .. }
                | Op::Sleep { .. }
                | Op::PreemptOff { .. }
                | Op::IrqOff { .. }
                | Op::BhOff { .. }
                | Op::Softirq
                | Op::Tasklet { .. }
                | Op::Yield
        )
    }
}

/// One top-level task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Its policy.
    pub pol: Pol,
    /// The CPUs it may run on from its spawn (`None`: all).
    pub cpus: Option<u64>,
    /// What it does, in order.
    pub ops: Vec<Op>,
}

/// A whole program: the boot options, the devices and the tasks `init` spawns in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// CPUs of the kernel.
    pub cpus: usize,
    /// Tick rate.
    pub hz: u32,
    /// The boot model.
    #[serde(with = "by_name")]
    pub model: PreemptModel,
    /// Where bottom halves run.
    #[serde(with = "by_name")]
    pub bh: BhMode,
    /// Where the patch models serve an event in a function without points (`patch_leaf=`;
    /// a program saved before it existed reads as `walk`).
    #[serde(with = "by_name", default = "walk")]
    pub patch_leaf: PatchLeaf,
    /// The devices.
    pub devices: Vec<DeviceSpec>,
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
}

/// The data a task's atoms checksum: 4 KiB from the task's seed (a fixed size, so that
/// the static checker sees the checksum's loop counted).
pub(crate) fn page_of(seed: u64) -> Box<[u8; PAGE]> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut page = Box::new([0u8; PAGE]);
    for b in page.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    page
}

/// One atom: `reps` checksums of `page`, each after changing one byte, folded into `acc`.
pub fn atom(page: &mut [u8; PAGE], reps: u8, acc: u64) -> u64 {
    let mut acc = acc;
    for r in 0..reps as usize {
        let i = (acc as usize ^ r.wrapping_mul(2654435761)) % PAGE;
        page[i] = page[i].wrapping_add(1);
        acc = acc.rotate_left(7) ^ csum(std::hint::black_box(&page[..])) as u64;
    }
    acc
}

/// The work of `ops` that computes (atoms of every kind), in order: (atoms, reps) pairs.
pub(crate) fn work_of(op: &Op) -> Option<(u8, u8)> {
    match *op {
        Op::Atoms { n, reps } | Op::PreemptOff { n, reps } | Op::IrqOff { n, reps } | Op::BhOff { n, reps, .. } => {
            Some((n, reps))
        }
        Op::User { reps } => Some((1, reps)),
        _ => None,
    }
}

/// The result a task (or child) with `seed` doing `ops` must return.
pub fn expected(seed: u64, ops: &[Op]) -> i64 {
    let mut page = page_of(seed);
    let (mut acc, mut children, mut pending) = (seed, 0u64, Vec::new());
    for (i, op) in ops.iter().enumerate() {
        if let Some((n, reps)) = work_of(op) {
            for _ in 0..n {
                acc = atom(&mut page, reps, acc);
            }
        }
        match op {
            Op::Spawn { ops, .. } => pending.push(expected(child_seed(seed, i), ops)),
            Op::Join => children = fold_children(children, pending.drain(..)),
            _ => {}
        }
    }
    children = fold_children(children, pending.drain(..));
    result_of(acc, children)
}

/// The seed of the child spawned by operation `i` of the task with `seed`.
pub(crate) fn child_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_mul(31).wrapping_add(i as u64 + 1)
}

/// Folds joined children's results, in spawn order.
pub(crate) fn fold_children(acc: u64, results: impl IntoIterator<Item = i64>) -> u64 {
    results.into_iter().fold(acc, |a, r| a.rotate_left(11) ^ r as u64)
}

/// A task's result from its atoms' fold and its children's.
pub(crate) fn result_of(acc: u64, children: u64) -> i64 {
    ((acc ^ children.rotate_left(29)) >> 2) as i64
}

/// The seed of top-level task `i`.
pub(crate) fn task_seed(i: usize) -> u64 {
    0x5eed_0000 + i as u64
}

/// The name of top-level task `i` (children: `fz<i>.c<op>`).
pub(crate) fn task_name(i: usize) -> String {
    format!("fz{i}")
}

impl Program {
    /// Every CPU of the program, as a mask.
    pub(crate) fn all_cpus(&self) -> u64 {
        (1u64 << self.cpus) - 1
    }

    /// Makes the raw generated values a program that must finish (see the module docs): masks
    /// within the CPUs, devices on existing CPUs, waits only for events a later task signals
    /// immediately, leaf children, valid priorities.
    pub(crate) fn normalize(mut self) -> Program {
        self.cpus = self.cpus.clamp(1, 4);
        let all = self.all_cpus();
        let fix_mask = |m: u64| if m & all == 0 { all } else { m & all };
        for d in &mut self.devices {
            d.cpu %= self.cpus;
            if let IrqAction::Signal(e) = &mut d.action {
                *e %= EVENTS;
            }
        }
        let (ndev, ntasks) = (self.devices.len(), self.tasks.len());
        for t in &mut self.tasks {
            t.pol = fix_pol(t.pol);
            t.cpus = t.cpus.map(fix_mask);
            t.ops.retain(|op| !matches!(op, Op::Irq(_) | Op::IrqAt { .. }) || ndev > 0);
            for op in &mut t.ops {
                match op {
                    Op::Signal(e) | Op::Wait(e) => *e %= EVENTS,
                    Op::Irq(d) | Op::IrqAt { dev: d, .. } => *d %= ndev,
                    Op::Affinity { task, mask } => {
                        *task %= ntasks;
                        *mask = fix_mask(*mask);
                    }
                    Op::Spawn { pol, ops } => {
                        *pol = fix_pol(*pol);
                        ops.retain(Op::is_leaf);
                    }
                    _ => {}
                }
            }
        }
        // A wait stays only if a later task signals its event with an immediate operation.
        let signals = |t: &TaskSpec, e: usize, devices: &[DeviceSpec]| {
            t.ops.iter().any(|op| match op {
                Op::Signal(s) => *s == e,
                Op::Irq(d) => devices[*d].action == IrqAction::Signal(e),
                _ => false,
            })
        };
        for i in 0..ntasks {
            let later = &self.tasks[i + 1..];
            let keep: Vec<bool> = self.tasks[i]
                .ops
                .iter()
                .map(|op| match op {
                    Op::Wait(e) => later.iter().any(|t| signals(t, *e, &self.devices)),
                    _ => true,
                })
                .collect();
            let mut k = keep.into_iter();
            self.tasks[i].ops.retain(|_| k.next().unwrap_or(true));
        }
        self
    }

    /// How many `AtomicSleep`s task `i` does (each a `BUG:` the program asks for).
    pub(crate) fn atomic_sleeps(ops: &[Op]) -> usize {
        ops.iter().filter(|op| matches!(op, Op::AtomicSleep)).count()
    }
}

fn fix_pol(p: Pol) -> Pol {
    match p {
        Pol::Fifo(x) => Pol::Fifo(x.clamp(1, 98)),
        Pol::Rr(x) => Pol::Rr(x.clamp(1, 98)),
        Pol::Normal(n) => Pol::Normal(n.clamp(-20, 19)),
    }
}

fn pol() -> impl Strategy<Value = Pol> {
    prop_oneof![
        3 => (-5i8..=5).prop_map(Pol::Normal),
        2 => (1u8..=98).prop_map(Pol::Fifo),
        1 => (1u8..=98).prop_map(Pol::Rr),
    ]
}

fn model() -> impl Strategy<Value = PreemptModel> {
    proptest::sample::select(PreemptModel::ALL.to_vec())
}

fn leaf_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..=6, 1u8..=24).prop_map(|(n, reps)| Op::Atoms { n, reps }),
        2 => (1u8..=24).prop_map(|reps| Op::User { reps }),
        2 => (1u16..=1500).prop_map(|us| Op::Sleep { us }),
        1 => (1u8..=4, 1u8..=16).prop_map(|(n, reps)| Op::PreemptOff { n, reps }),
        1 => (1u8..=4, 1u8..=16).prop_map(|(n, reps)| Op::IrqOff { n, reps }),
        1 => (1u8..=4, 1u8..=16, any::<bool>()).prop_map(|(n, reps, raise)| Op::BhOff { n, reps, raise }),
        1 => Just(Op::Softirq),
        1 => any::<bool>().prop_map(|hi| Op::Tasklet { hi }),
        1 => Just(Op::Yield),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => leaf_op(),
        2 => (0..EVENTS).prop_map(Op::Signal),
        2 => (0..EVENTS).prop_map(Op::Wait),
        2 => (0..MAX_DEVICES).prop_map(Op::Irq),
        1 => (0..MAX_DEVICES, 1u16..=2000).prop_map(|(dev, us)| Op::IrqAt { dev, us }),
        1 => (pol(), proptest::collection::vec(leaf_op(), 0..4)).prop_map(|(pol, ops)| Op::Spawn { pol, ops }),
        1 => Just(Op::Join),
        1 => (0..MAX_TASKS, 1u64..16).prop_map(|(task, mask)| Op::Affinity { task, mask }),
        1 => model().prop_map(Op::Model),
        1 => prop::bool::weighted(0.1).prop_map(|b| if b { Op::AtomicSleep } else { Op::Yield }),
    ]
}

fn device() -> impl Strategy<Value = DeviceSpec> {
    let action = prop_oneof![
        2 => (0..EVENTS).prop_map(IrqAction::Signal),
        1 => Just(IrqAction::Softirq),
        1 => any::<bool>().prop_map(|hi| IrqAction::Tasklet { hi }),
    ];
    (0usize..4, action).prop_map(|(cpu, action)| DeviceSpec { cpu, action })
}

fn task() -> impl Strategy<Value = TaskSpec> {
    (pol(), proptest::option::weighted(0.3, 1u64..16), proptest::collection::vec(op(), 0..MAX_OPS))
        .prop_map(|(pol, cpus, ops)| TaskSpec { pol, cpus, ops })
}

/// Random programs on `cpus` CPUs (`None`: 1..=4), normalized to programs that finish.
pub fn program(cpus: Option<usize>) -> impl Strategy<Value = Program> {
    let cpus = match cpus {
        Some(n) => Just(n).boxed(),
        None => (1usize..=4).boxed(),
    };
    (
        cpus,
        prop_oneof![Just(250u32), Just(1000u32)],
        model(),
        prop_oneof![3 => Just(BhMode::Classic), 1 => Just(BhMode::Threaded)],
        prop_oneof![Just(PatchLeaf::Walk), Just(PatchLeaf::Return)],
        proptest::collection::vec(device(), 0..=MAX_DEVICES),
        proptest::collection::vec(task(), 1..=MAX_TASKS),
    )
        .prop_map(|(cpus, hz, model, bh, patch_leaf, devices, tasks)| {
            Program { cpus, hz, model, bh, patch_leaf, devices, tasks }.normalize()
        })
}

/// `patch_leaf`'s value in a program saved without it.
fn walk() -> PatchLeaf {
    PatchLeaf::Walk
}

/// A closed set of boot-option values (de)serialized by its name (`Display`, `FromStr`).
mod by_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub(super) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Program {
    /// The program as a listing: the boot options, each device, each task and its operations.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cpus, hz, model, bh, leaf) = (self.cpus, self.hz, self.model, self.bh, self.patch_leaf);
        writeln!(f, "cpus={cpus} hz={hz} preempt={model} bh={bh} patch_leaf={leaf}")?;
        for (d, dev) in self.devices.iter().enumerate() {
            writeln!(f, "  device {d}: IRQ on CPU {}, handler {:?}", dev.cpu, dev.action)?;
        }
        for (i, t) in self.tasks.iter().enumerate() {
            let cpus = t.cpus.map_or("all".to_string(), |m| format!("{m:#x}"));
            writeln!(f, "  task {} {:?} cpus {cpus}:", task_name(i), t.pol)?;
            for op in &t.ops {
                writeln!(f, "    {op:?}")?;
            }
        }
        Ok(())
    }
}
