#![forbid(unsafe_code)]
pub mod sched;
