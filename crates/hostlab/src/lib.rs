//! # atomkernel's host lab support
//!
//! What the latency lab and the register torture need from the host, kept outside the CPU's
//! arch surface (the `arch` crate is what the kernel core runs on; nothing here is part of
//! that boundary, and the kernel core never calls it).
//!
//! | module | used by | here |
//! | --- | --- | --- |
//! | [`sched`] | the lab's host peers and workload threads | a host thread's SCHED_FIFO or nice value, pinning, `clock_nanosleep(TIMER_ABSTIME)`, involuntary switches |
//! | [`signals`] | the command line's end on SIGINT | whether a signal was ignored at start |
//! | [`stall`] | `compare` | the host-stall watcher: a SCHED_FIFO 99 thread that keeps every wakeup of its own 1 ms late or more |
//! | [`torture`] | the register torture | the asm that loads, spins with and dumps every register; the patterns and their comparison |
//! | [`testing`] | the workspace's tests | a test that skips itself says so in the summary `.ci/run` prints |
//!
//! Like `arch`, this is an arch-layer crate: `unsafe`, assembly and host system calls are
//! allowed here (and only in arch-layer crates), each `unsafe` block with its `// SAFETY:`
//! comment. It depends on nothing of atomkernel's.

pub mod sched;
pub mod signals;
pub mod stall;
pub mod testing;
pub mod torture;
