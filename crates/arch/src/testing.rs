//! Test support, only with the `testing` feature (which only dev-dependencies enable): ways to
//! break or observe the arch layer that production code must not have.

use std::cell::Cell;

/// Overwrites one byte of the text behind the patcher's back, so tests can show that a site
/// whose bytes are not what they should be is refused.
pub fn scribble(addr: usize, v: u8) -> Result<(), crate::patch::PokeError> {
    crate::patch::scribble(addr, v)
}

thread_local! {
    static RT_RESCHEDULE_CALLS: Cell<u64> = const { Cell::new(0) };
}

pub(crate) fn count_rt_reschedule() {
    RT_RESCHEDULE_CALLS.with(|c| c.set(c.get() + 1));
}

/// Calls the calling thread made through armed sites (`rt_reschedule`), CPU or not.
pub fn rt_reschedule_calls() -> u64 {
    RT_RESCHEDULE_CALLS.with(|c| c.get())
}
