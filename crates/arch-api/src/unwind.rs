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

/// The most bytes a `call` takes before its return address (`ff /2` with a SIB byte and a
/// disp32), what [`follows_call`] reads.
pub const CALL_MAX: usize = 7;

/// True if the instruction that ends just before a return address is a `call`: `e8 rel32`, or
/// `ff /2` in any of its encodings (ModRM, SIB, displacement: 2 to 7 bytes from the `ff`; a
/// REX prefix before it changes nothing). `before`: the bytes just before the return address,
/// [`CALL_MAX`] of them or fewer where the function starts nearer. The last check an arch
/// makes before it redirects a return slot the unwinder found.
#[inline]
pub fn follows_call(before: &[u8]) -> bool {
    let byte = |back: usize| before.len().checked_sub(back).map(|i| before[i]);
    if byte(5) == Some(0xe8) {
        return true;
    }
    // the `ff`'s distance from the return address, the likeliest first (a call through the
    // GOT or a vtable slot at rip + disp32, through a register, through [reg + disp8]); each
    // reads its ModRM (and SIB) only after an `ff`
    [6, 2, 3, 7, 4].into_iter().any(|back| {
        if byte(back) != Some(0xff) {
            return false;
        }
        let Some(modrm) = byte(back - 1) else { return false };
        let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
        let len = match (md, rm) {
            (3, _) => 2,
            (0, 4) => match byte(back - 2) {
                Some(sib) if sib & 7 == 5 => 7, // SIB with no base: a disp32
                Some(_) => 3,
                None => return false,
            },
            (0, 5) => 6, // rip + disp32
            (0, _) => 2,
            (1, 4) => 4,
            (1, _) => 3,
            (_, 4) => 7,
            _ => 6,
        };
        reg == 2 && len == back
    })
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

    /// `bytes` then the return address: the last `CALL_MAX` of them are what an arch reads.
    fn ends(bytes: &[u8]) -> bool {
        follows_call(&bytes[bytes.len().saturating_sub(CALL_MAX)..])
    }

    #[test]
    fn every_call_encoding_before_a_return_address_is_recognised_and_other_code_is_not() {
        let calls: [&[u8]; 12] = [
            &[0xe8, 1, 2, 3, 4],             // call rel32
            &[0xff, 0xd0],                   // call rax
            &[0x41, 0xff, 0xd3],             // call r11
            &[0xff, 0x10],                   // call [rax]
            &[0xff, 0x14, 0x24],             // call [rsp]
            &[0x41, 0xff, 0x14, 0x24],       // call [r12]
            &[0xff, 0x50, 0x18],             // call [rax + 0x18]
            &[0xff, 0x54, 0x24, 0x08],       // call [rsp + 8]
            &[0xff, 0x15, 1, 2, 3, 4],       // call [rip + disp32]
            &[0xff, 0x90, 1, 2, 3, 4],       // call [rax + disp32]
            &[0xff, 0x94, 0x24, 1, 2, 3, 4], // call [rsp + disp32]
            &[0xff, 0x14, 0xc5, 1, 2, 3, 4], // call [rax * 8 + disp32]
        ];
        for c in calls {
            let mut code = [0x90u8; 16]; // nops, then the call
            code[7..7 + c.len()].copy_from_slice(c);
            assert!(ends(&code[..7 + c.len()]), "{c:02x?}");
        }
        let others: [&[u8]; 6] = [
            &[0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90],       // nops
            &[0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0x20],       // jmp [rax]: /4
            &[0x90, 0x90, 0x90, 0x90, 0xff, 0x54, 0x08],       // a /2 ModRM wanting a SIB byte it lacks: 3 != 4
            &[0x90, 0x90, 0x90, 0x90, 0xff, 0x50, 0x18, 0x90], // ff 50 18 ends one byte early
            &[0x90, 0x90, 0xff, 0x15, 1, 2, 3],                // rip-relative cut short
            &[0x48, 0x89, 0xc7],                               // mov rdi, rax
        ];
        for o in others {
            assert!(!ends(o), "{o:02x?}");
        }
        // the function starts one byte before the return address: no call fits
        assert!(!ends(&[0xd0]));
        assert!(!ends(&[]));
    }
}
