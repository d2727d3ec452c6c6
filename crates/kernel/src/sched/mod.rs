//! Scheduler (placeholder; being written).
pub mod fair;
pub mod rt;

/// Index of a task in the kernel's task table.
pub type TaskId = usize;
