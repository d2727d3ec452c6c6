//! One step up an x86-64 stack by a reduced CFI row: the arithmetic both arches' unwinders
//! share.
//!
//! **Mechanism.** A row of `.eh_frame`'s call-frame information, reduced to what an x86-64
//! step needs ([`UnwindRule`]): the CFA is `rsp + cfa_off` or `rbp + cfa_off`, the return
//! address is stored at `CFA + ra_off`, the caller's `rbp` at `CFA + rbp_off` or left as it
//! was. [`UnwindRule::step`] computes the CFA from a frame, reads the return address (and the
//! saved `rbp`) through the reader its caller passes (the arch's, which reads only aligned
//! words inside the running stack), and gives the caller's frame with `sp` = CFA.
//!
//! **Invariant.** A step moves strictly up the stack (the CFA lies above `sp`) and reads only
//! through `read`: sums wrap, and a wrapped address fails that test or the reader's bounds,
//! like any other corrupt one, so a corrupt frame ends a walk (`None`), never a wild read or a
//! loop. A return address of 0 ends it too (the outermost frame).

use crate::{Frame, Step};

/// A reduced CFI row's rule (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnwindRule {
    /// The CFA's offset from its base register.
    pub cfa_off: i32,
    /// Where the return address is, from the CFA.
    pub ra_off: i32,
    /// Where the caller's `rbp` is, from the CFA; [`UnwindRule::RBP_SAME`]: not saved.
    pub rbp_off: i32,
    /// The CFA's base is `rbp` (else `rsp`).
    pub cfa_rbp: bool,
    /// A signal frame's row: its caller's ip is an interrupted instruction, not a return
    /// address.
    pub signal: bool,
}

impl UnwindRule {
    /// `rbp_off` of a row that leaves `rbp` as the caller had it.
    pub const RBP_SAME: i32 = i32::MIN;

    /// One frame up from `f` by this rule; `read(addr)` reads the stack word at `addr` (`None`
    /// where the walk may not read). `None` if the CFA is not above `f.sp`, a read is refused,
    /// or the return address is 0.
    #[inline]
    pub fn step(&self, f: &Frame, read: impl Fn(usize) -> Option<usize>) -> Option<Step> {
        let cfa = (if self.cfa_rbp { f.bp } else { f.sp }).wrapping_add_signed(self.cfa_off as isize);
        if cfa <= f.sp {
            return None;
        }
        let ra_slot = cfa.wrapping_add_signed(self.ra_off as isize);
        let ip = read(ra_slot)?;
        let bp = match self.rbp_off {
            Self::RBP_SAME => f.bp,
            off => read(cfa.wrapping_add_signed(off as isize))?,
        };
        (ip != 0).then_some(Step { caller: Frame { ip, sp: cfa, bp, is_return_address: !self.signal }, ra_slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: [usize; 4] = [0x1111, 0x2222, 0x4000_1234, 0x3333];
    const LO: usize = 0x8000;

    fn read(addr: usize) -> Option<usize> {
        let i = addr.checked_sub(LO)?;
        (i % 8 == 0).then(|| STACK.get(i / 8).copied()).flatten()
    }

    fn rule(cfa_off: i32, rbp_off: i32, cfa_rbp: bool) -> UnwindRule {
        UnwindRule { cfa_off, ra_off: -8, rbp_off, cfa_rbp, signal: false }
    }

    #[test]
    fn a_step_reads_the_return_address_and_the_saved_rbp_below_the_cfa() {
        let f = Frame::interrupted(0x100, LO, 0x9999);
        // after `push rbp`: CFA = rsp + 24 here, the return address at CFA - 8, rbp at CFA - 16
        let s = rule(24, -16, false).step(&f, read).unwrap();
        assert_eq!((s.caller.ip, s.caller.sp, s.caller.bp, s.ra_slot), (0x4000_1234, LO + 24, 0x2222, LO + 16));
        assert!(s.caller.is_return_address);
        // rbp-based, rbp not saved by this row
        let f = Frame::interrupted(0x100, LO, LO + 8);
        let s = rule(16, UnwindRule::RBP_SAME, true).step(&f, read).unwrap();
        assert_eq!((s.caller.ip, s.caller.sp, s.caller.bp), (0x4000_1234, LO + 24, LO + 8));
        let signal = UnwindRule { signal: true, ..rule(24, UnwindRule::RBP_SAME, false) };
        assert!(!signal.step(&Frame::interrupted(0x100, LO, 0), read).unwrap().caller.is_return_address);
    }

    #[test]
    fn a_step_that_would_not_move_up_or_would_read_outside_ends_the_walk() {
        let f = Frame::interrupted(0x100, LO, 0);
        // a reader that reads anything: only the step's own test can refuse these
        let any = |_| Some(0x1234);
        assert!(rule(8, UnwindRule::RBP_SAME, false).step(&f, any).is_some(), "the reader alone lets it through");
        assert!(rule(0, UnwindRule::RBP_SAME, false).step(&f, any).is_none(), "CFA not above sp");
        assert!(rule(-64, UnwindRule::RBP_SAME, false).step(&f, any).is_none(), "CFA below sp");
        let wraps = Frame::interrupted(0x100, usize::MAX - 4, 0);
        assert!(rule(16, UnwindRule::RBP_SAME, false).step(&wraps, any).is_none(), "a CFA that wraps is below sp");
        assert!(rule(64, UnwindRule::RBP_SAME, false).step(&f, read).is_none(), "past the stack");
        assert!(rule(i32::MAX, UnwindRule::RBP_SAME, true)
            .step(&Frame::interrupted(0, LO, usize::MAX), read)
            .is_none());
        // a return address of 0: the outermost frame
        assert!(rule(8, UnwindRule::RBP_SAME, false).step(&f, |_| Some(0)).is_none());
    }
}
