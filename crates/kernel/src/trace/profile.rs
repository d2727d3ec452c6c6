//! The sampling profiler: at every tick, the instruction pointer the interrupt found.
//!
//! **Mechanism.** The tick's interrupt entry hands the interrupted context's IP (from the
//! signal frame, as the seed's "the profiling code already looks at the EIP value") to
//! [`Profile::sample`], which appends it to a buffer preallocated at boot. Symbol resolution
//! and the per-function histogram are done after the run, outside the kernel (by
//! `services::symbols`).
//!
//! **Invariant.** Sampling never allocates; a full buffer drops new samples and counts them.

use crate::task::TaskId;
use alloc::vec::Vec;

/// One profile sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The interrupted IP; 0 when the tick was held while IRQs were masked and replayed by
    /// `local_irq_enable` (the masked code is then the `local_irq_enable` caller).
    pub ip: usize,
    /// The task that was running.
    pub pid: TaskId,
    /// True if it was in kernel mode (inside a system call, or a kernel thread).
    pub kernel_mode: bool,
    /// True if the IP was outside the program's own code (libc, the vDSO).
    pub foreign: bool,
}

pub(super) struct Profile {
    buf: Vec<Sample>,
    dropped: u64,
}

impl Profile {
    pub(super) fn new(cap: usize) -> Profile {
        Profile { buf: Vec::with_capacity(cap), dropped: 0 }
    }

    pub(super) fn sample(&mut self, s: Sample) {
        if self.buf.len() < self.buf.capacity() {
            self.buf.push(s); // within the reserved capacity: no allocation
        } else {
            self.dropped += 1;
        }
    }

    pub(super) fn samples(&self) -> (Vec<Sample>, u64) {
        (self.buf.clone(), self.dropped)
    }
}
