//! Kernel stacks: an anonymous mapping with a `PROT_NONE` guard page below it.
//!
//! **Invariant.** A task that runs off the bottom of its stack touches the guard page and takes
//! a fault that [`crate::fault`] hands the core as a kernel stack overflow (an oops); it can
//! never write into a neighbour's memory.

use std::io;

/// Size of the guard region below every stack.
pub(crate) const GUARD_BYTES: usize = 4096 * 4;

/// Where a stack's mapping lies: the usable part is `[lo, hi)`; the guard is
/// `[lo - GUARD_BYTES, lo)`. Plain numbers, readable after the mapping is gone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackRange {
    base: usize,
    total: usize,
}

/// An `mmap`'d stack, unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Stack {
    range: StackRange,
}

impl Stack {
    /// Maps a stack of at least `size` usable bytes (rounded up to pages).
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        let page = 4096;
        let usable = size.max(page).div_ceil(page) * page;
        let total = usable + GUARD_BYTES;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { range: StackRange { base: base as usize, total } };
        // SAFETY: the guard lies inside the mapping just created and owned by `stack`.
        let rc = unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Where the mapping lies.
    pub(crate) fn range(&self) -> StackRange {
        self.range
    }
}

impl StackRange {
    /// Lowest usable address.
    pub(crate) fn lo(&self) -> usize {
        self.base + GUARD_BYTES
    }

    /// One past the highest usable address (16-byte aligned).
    pub(crate) fn hi(&self) -> usize {
        self.base + self.total
    }

    /// The guard region `[start, end)`.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.base, self.base + GUARD_BYTES)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by this Stack and no longer used: TaskContext never
        // drops the stack of a context that is running.
        unsafe { libc::munmap(self.range.base as *mut libc::c_void, self.range.total) };
    }
}
