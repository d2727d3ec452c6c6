//! A preemption-point site's three forms and how a batch of them changes, for every arch.
//!
//! **Mechanism.** A site is five bytes: byte 0 one of [`OP_IDLE`] (`cmp eax, imm32`, the
//! NOP), [`OP_CALL`] (`call rt_reschedule`) or [`OP_INT3`], bytes 1..5 the `rel32` to
//! `rt_reschedule` in every form. Each site counts the users that want it to call and those
//! that want it to trap; [`site_op`] is the byte those counts call for. An arch writes one
//! byte per site (every form is a whole instruction, so a CPU running it sees the old or the
//! new one: `patch_sync=none`), or, under `patch_sync=ipi`, follows Linux's
//! `text_poke_bp_batch` over the whole batch ([`poke_synced`]).
//!
//! **Invariant.** Pure: the arch gives the reads, the writes and the serializing rounds.

/// First byte of an idle site: `cmp eax, imm32`, a 5-byte instruction that changes only flags.
pub const OP_IDLE: u8 = 0x3d;
/// First byte of an armed site that calls the point hook: `call rt_reschedule`.
pub const OP_CALL: u8 = 0xe8;
/// First byte of an armed site that traps: `int3`.
pub const OP_INT3: u8 = 0xcc;

/// The first byte for a site with `calls` users that want a call and `int3s` that want a
/// trap: a call while any wants one (`rt_reschedule` serves an event armed either way, while
/// an `int3` met under `patch-call` passes on), else `int3` while any wants one, else idle.
#[inline]
pub fn site_op(calls: u32, int3s: u32) -> u8 {
    if calls > 0 {
        OP_CALL
    } else if int3s > 0 {
        OP_INT3
    } else {
        OP_IDLE
    }
}

/// `text_poke_bp_batch`'s protocol over a batch whose counts are already changed: `sites()`
/// each site's address and the byte it now wants, `read`/`write` a site's byte 0, `round` one
/// `SYNC_CORE` round on every other CPU (returning the rounds it made: 0 where there is no
/// other CPU). `int3` first on every site that changes between the two other forms, a round,
/// then every final byte, a round. Returns the rounds made.
pub fn poke_synced<I: Iterator<Item = (usize, u8)>>(
    sites: impl Fn() -> I,
    read: impl Fn(usize) -> u8,
    mut write: impl FnMut(usize, u8),
    mut round: impl FnMut() -> u32,
) -> u32 {
    let mut rounds = 0;
    let mut first = false;
    for (addr, want) in sites() {
        let now = read(addr);
        if now != want && now != OP_INT3 && want != OP_INT3 {
            write(addr, OP_INT3);
            first = true;
        }
    }
    if first {
        rounds += round();
    }
    let mut wrote = false;
    for (addr, want) in sites() {
        if read(addr) != want {
            write(addr, want);
            wrote = true;
        }
    }
    if wrote {
        rounds += round();
    }
    rounds
}
