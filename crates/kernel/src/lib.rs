//! # atomkernel's kernel core
//!
//! Arch-independent, under `#![forbid(unsafe_code)]`: per-CPU state, `preempt_count`, `need_resched`,
//! the scheduler classes, interrupts, timers, wait queues, system-call entry and exit, and the
//! preemption model's decisions. It runs on the `arch` crate's hosted x86-64 machine.
//!
//! Start with [`run`]: it boots an instance from a [`Config`] and runs a body as `init`.
//! Inside, [`spawn`] creates tasks, [`syscall()`] enters kernel mode, [`time::sleep_until`] and
//! [`WaitQueue`] sleep, [`device::Device`] brings interrupts from outside, [`softirq`] and
//! [`tasklet`] defer interrupt work to bottom halves (run at `irq_exit` or in `ksoftirqd`, as the
//! `bh=` boot option chooses).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
#[macro_use]
extern crate std;

mod arch;
mod boot;
pub mod config;
mod cpu;
pub mod device;
mod fork;
mod hung;
mod instance;
mod irq;
mod irq_desc;
pub mod model;
mod oops;
pub mod preempt;
pub mod printk;
mod run;
mod sched;
pub mod smp;
pub mod softirq;
pub mod sync;
pub mod syscall;
mod task;
mod task_table;
pub mod tasklet;
pub mod text;
pub mod time;
pub mod trace;
mod wait;
mod watchdog;

pub use config::{BhMode, Config, ConfigError, PatchLeaf, PatchSync, PreemptModel, PtableMode};
pub use fork::spawn;
pub use fork::TaskHandle;
pub use instance::{current_pid, raw_smp_processor_id, smp_processor_id, uptime_ns, BootError};
pub use model::{preempt_model, set_preempt_model};
pub use oops::OopsReport;
pub use run::{run, CpuReport, RunReport, TaskReport};
pub use sched::balance::{sched_debug, set_cpus_allowed};
pub use sched::{cond_resched, schedule, CpuMask, TaskId};
pub use syscall::sched_yield;
pub use syscall::syscall;
pub use task::{Policy, TaskBuilder, TaskResult, TaskStatsSnapshot};
pub use wait::WaitQueue;

/// The arch's preemption-point macro, `kernel::preempt_point!()`: the hosted arch's site
/// under `hosted`, the bare-metal arch's (the same bytes and table) under `metal`.
#[cfg(feature = "hosted")]
pub use arch_hosted::preempt_point;
/// See the `hosted` re-export above.
#[cfg(feature = "metal")]
pub use arch_metal::preempt_point;
