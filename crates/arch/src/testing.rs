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

/// Faults on purpose, for the oops tests: each raises its signal at an instruction of its own
/// (never inlined, so a report names it).
pub mod faults {
    /// Reads address 0 (`SIGSEGV`, a NULL pointer dereference).
    #[inline(never)]
    pub fn read_null() -> u64 {
        let p = std::hint::black_box(0usize) as *const u64;
        // SAFETY: none: this read faults on purpose (address 0 is never mapped).
        unsafe { p.read_volatile() }
    }

    /// Reads a page that was just unmapped (`SIGSEGV` at a wild address).
    #[inline(never)]
    pub fn read_wild() -> u64 {
        // SAFETY: maps and unmaps one anonymous page we own; the read faults on purpose.
        unsafe {
            let p =
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap(p, 4096);
            (std::hint::black_box(p as usize + 8) as *const u64).read_volatile()
        }
    }

    /// Reads a mapped page past the end of its (empty) file (`SIGBUS`).
    #[inline(never)]
    pub fn read_past_file() -> u64 {
        // SAFETY: maps one page of an empty memfd we own; the read faults on purpose.
        unsafe {
            let fd = libc::memfd_create(c"atomkernel-sigbus".as_ptr(), 0);
            assert!(fd >= 0);
            let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            libc::close(fd);
            assert_ne!(p, libc::MAP_FAILED);
            (std::hint::black_box(p as usize) as *const u64).read_volatile()
        }
    }

    /// Executes `ud2` (`SIGILL`).
    #[inline(never)]
    pub fn invalid_opcode() {
        // SAFETY: none: `ud2` faults on purpose.
        unsafe { std::arch::asm!("ud2", options(nomem, nostack)) };
    }

    /// Divides by zero with `div` (`SIGFPE`), not Rust's checked division.
    #[inline(never)]
    pub fn divide_error(n: u64, d: u64) -> u64 {
        let q: u64;
        // SAFETY: `div` of rdx:rax by `d`; with `d` = 0 it faults on purpose.
        unsafe {
            std::arch::asm!("div {d}", d = in(reg) d, inout("rax") n => q, inout("rdx") 0u64 => _, options(nomem, nostack))
        };
        q
    }

    /// Executes an `int3` that is no preemption point's (`SIGTRAP`).
    #[inline(never)]
    pub fn breakpoint() {
        // SAFETY: none: a foreign `int3` traps on purpose.
        unsafe { std::arch::asm!("int3", options(nomem, nostack)) };
    }
}
