//! Patching the program's own machine code, safely.
//!
//! **W^X.** No page is ever writable and executable at once. On first use the program's
//! executable segments are copied into a `memfd` and mapped back over themselves, `r-x` and
//! shared, with a second, `rw-` mapping of the same file elsewhere (the alias). Code is written
//! through the alias and executed through the original addresses; `/proc/self/maps` never
//! shows a `wx` mapping. The patch path makes no system call (under [`PatchSync::None`]).
//!
//! **One byte per patch.** A site ([`crate::ppoint`]) is `op rel32` where only `op` ever
//! changes: [`OP_IDLE`] (`cmp eax, imm32`, the NOP), [`OP_CALL`] or [`OP_INT3`]. A single-byte
//! store is seen whole or not at all, and every form is safe to execute, so the int3-first
//! protocol of Linux's `text_poke_bp` (`arch/x86/kernel/alternative.c`) has nothing left to
//! protect: its core synchronisations exist to stop a CPU from decoding a mix of old and new
//! bytes 1..n, and bytes 1..5 never change here. A CPU that runs a stale copy of a site either
//! passes it (idle), calls the hook (which finds nothing pending and returns), or traps; the
//! trap handler then sees the current byte and re-executes it. So patching needs no `membarrier`
//! and may run in an interrupt handler.
//!
//! **`text_poke_bp` for comparison ([`PatchSync::Ipi`]).** So that the claim above is measured
//! rather than argued, a patch may instead follow Linux's protocol: `int3` first (unless the
//! old or new byte is the `int3`), a serializing round on every CPU, then the final byte and
//! another round; an event's sites are one batch sharing the two rounds, as in Linux's
//! `text_poke_bp_batch`. The round is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`: the
//! host interrupts every host CPU running a thread of this process, and each executes a
//! core-serializing instruction before it returns to that thread, which is Linux's
//! `text_poke_sync()` (`on_each_cpu(do_sync_core)`) one level down, where the cores that decode
//! the text are. It reaches every thread that may run the text (the CPUs of every instance,
//! the lab's other threads), and, being the host's interrupt, it cannot deadlock against a CPU
//! thread that spins with its soft mask set, which a round of the core's own function-call IPIs
//! sent from the interrupt exit could. [`prepare_sync`] registers the process once.
//!
//! **Arming is counted.** Sites are shared by every kernel instance in the process. Each site
//! counts the users that want it to call and the users that want it to trap; its byte is
//! `call` if any wants a call, else `int3` if any wants a trap, else idle. The counts and the
//! byte change together under one lock.
//!
//! **Invariants.** Only registered sites are written, and only after their five bytes have
//! been checked: bytes 1..5 must be the site's `rel32` and byte 0 one of the three forms;
//! anything else is refused with a `BUG:` message and nothing is written.

use crate::ppoint::{self, OP_CALL, OP_IDLE, OP_INT3};
use crate::sync::IrqSpinLock;
use std::fmt::Write as _;
use std::io;
use std::sync::OnceLock;

pub use arch_api::{Arm, PatchSync, PokeError};

const PAGE: usize = 4096;

/// The writable alias of the text and the sorted site addresses.
struct Alias {
    /// (start, end, alias start) of each remapped executable range.
    ranges: Vec<(usize, usize, usize)>,
    sites: Vec<usize>,
}

/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE` (`<linux/membarrier.h>`, Linux 4.16).
const MEMBARRIER_SYNC_CORE: libc::c_int = 1 << 5;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE`.
const MEMBARRIER_REGISTER_SYNC_CORE: libc::c_int = 1 << 6;

/// Registers the process for [`PatchSync::Ipi`]'s rounds (idempotent); `Err` if the host
/// refuses, with its reason. Call before patching with [`PatchSync::Ipi`].
pub fn prepare_sync() -> Result<(), PokeError> {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_REGISTER_SYNC_CORE, 0, 0) };
    if rc != 0 {
        return Err(PokeError::Host(host_err("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)")));
    }
    Ok(())
}

/// One serializing round on every CPU running a thread of the process. Registered by
/// [`prepare_sync`], it cannot fail (the host's errors are for unregistered callers).
fn sync_core_round() {
    // SAFETY: as in `prepare_sync`; a system call is async-signal-safe.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_SYNC_CORE, 0, 0) };
}

/// Per site: how many users want it to call and to trap.
#[derive(Clone, Copy, Default)]
struct Counts {
    call: u32,
    int3: u32,
}

static ALIAS: OnceLock<Result<Alias, String>> = OnceLock::new();
static COUNTS: IrqSpinLock<Vec<Counts>> = IrqSpinLock::new(Vec::new());

fn host_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// Remaps `[lo, hi)` (page aligned, currently `r-x`) onto a memfd and returns the alias.
fn alias_range(lo: usize, hi: usize) -> Result<usize, String> {
    let len = hi - lo;
    // SAFETY: memfd_create/ftruncate/pwrite/mmap/close on a descriptor this function owns.
    // `[lo, hi)` is the program's own executable mapping, readable, and is replaced by a
    // mapping of identical bytes and the same protection in one `mmap(MAP_FIXED)` call, which
    // the host performs under its mmap lock: any thread executing there sees either mapping.
    unsafe {
        let fd = libc::memfd_create(c"atomkernel-text".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(host_err("memfd_create"));
        }
        let close = |e: String| {
            libc::close(fd);
            Err(e)
        };
        if libc::ftruncate(fd, len as libc::off_t) != 0 {
            return close(host_err("ftruncate"));
        }
        let mut done = 0;
        while done < len {
            let n = libc::pwrite(fd, (lo + done) as *const libc::c_void, len - done, done as libc::off_t);
            if n <= 0 {
                return close(host_err("pwrite"));
            }
            done += n as usize;
        }
        // Both mappings populated now (MAP_POPULATE): the first patch and the first fetch of
        // each page would otherwise take a page fault in the interrupt's path, several µs each.
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        let fixed = libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE;
        let text = libc::mmap(lo as *mut libc::c_void, len, rx, fixed, fd, 0);
        if text == libc::MAP_FAILED {
            return close(host_err("mmap(text)"));
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let alias = libc::mmap(std::ptr::null_mut(), len, rw, libc::MAP_SHARED | libc::MAP_POPULATE, fd, 0);
        libc::close(fd);
        if alias == libc::MAP_FAILED {
            return Err(host_err("mmap(alias)"));
        }
        Ok(alias as usize)
    }
}

fn init() -> Result<Alias, String> {
    crate::entry::install();
    let mut ranges = Vec::new();
    for &(lo, hi) in crate::text::ranges() {
        let (lo, hi) = (lo & !(PAGE - 1), hi.div_ceil(PAGE) * PAGE);
        ranges.push((lo, hi, alias_range(lo, hi)?));
    }
    let mut sites: Vec<usize> = ppoint::sites().iter().map(|s| s.addr).collect();
    sites.sort_unstable();
    *COUNTS.lock() = vec![Counts::default(); sites.len()];
    Ok(Alias { ranges, sites })
}

fn alias() -> Result<&'static Alias, PokeError> {
    ALIAS.get_or_init(init).as_ref().map_err(|e| PokeError::Host(e.clone()))
}

/// Sets up the alias and the site counts now (they are otherwise set up by the first patch).
/// Call before patching from an interrupt handler: it allocates.
pub fn prepare() -> Result<(), PokeError> {
    alias().map(|_| ())
}

/// The index of the site at `addr` (binary search; no allocation, signal-safe once prepared).
pub(crate) fn site_index(addr: usize) -> Option<usize> {
    match ALIAS.get() {
        Some(Ok(a)) => a.sites.binary_search(&addr).ok(),
        _ => None,
    }
}

/// True if `addr` is a registered site.
pub(crate) fn is_site(addr: usize) -> bool {
    site_index(addr).is_some()
}

/// Every site's address, sorted (the index space of [`arm`]). Empty before [`prepare`].
pub fn site_addrs() -> &'static [usize] {
    match ALIAS.get() {
        Some(Ok(a)) => &a.sites,
        _ => &[],
    }
}

/// The five bytes at `addr`, read through the executable mapping.
pub fn read_site(addr: usize) -> [u8; 5] {
    let mut b = [0u8; 5];
    for (i, byte) in b.iter_mut().enumerate() {
        // SAFETY: callers pass registered sites, which lie in the program's readable text.
        *byte = unsafe { std::ptr::read_volatile((addr + i) as *const u8) };
    }
    b
}

/// The address of `addr`'s byte in the writable alias; `None` outside the remapped text.
fn alias_of(a: &Alias, addr: usize) -> Option<usize> {
    a.ranges.iter().find(|(lo, hi, _)| addr >= *lo && addr < *hi).map(|&(lo, _, al)| al + (addr - lo))
}

fn write_byte(a: &Alias, addr: usize, v: u8) {
    let at = alias_of(a, addr).expect("site in text");
    // SAFETY: `at` is inside the rw alias of the range holding `addr`.
    unsafe { std::ptr::write_volatile(at as *mut u8, v) };
}

/// Prefetches what arming the sites `idx` reads and writes: their addresses, then, all at
/// once, each site's bytes in the text and in the alias. Signal-safe.
pub fn prefetch_sites(idx: &[u32]) {
    let Some(Ok(a)) = ALIAS.get() else { return };
    let sites = || idx.iter().filter_map(|&i| a.sites.get(i as usize));
    sites().for_each(|s| crate::cpu::prefetch(s as *const usize as usize));
    for &addr in sites() {
        crate::cpu::prefetch(addr);
        if let Some(at) = alias_of(a, addr) {
            crate::cpu::prefetch(at);
        }
    }
}

/// The first byte a site's counts call for (`arch_api::site::site_op`).
fn want(c: Counts) -> u8 {
    arch_api::site::site_op(c.call, c.int3)
}

/// Checks site `idx`'s five bytes (byte 0 one of the three forms, 1..5 its `rel32`), then
/// changes its count for `how` by `delta`; on an error nothing is counted.
fn recount(a: &Alias, counts: &mut [Counts], idx: usize, how: Arm, delta: i32) -> Result<(), PokeError> {
    let (Some(&addr), Some(c)) = (a.sites.get(idx), counts.get_mut(idx)) else {
        return Err(PokeError::NotASite(idx));
    };
    let found = read_site(addr);
    if found[1..] != ppoint::idle_bytes(addr)[1..] || ![OP_IDLE, OP_CALL, OP_INT3].contains(&found[0]) {
        return Err(PokeError::Unexpected { addr, expected: ppoint::idle_bytes(addr), found });
    }
    let n = match how {
        Arm::Call => &mut c.call,
        Arm::Int3 => &mut c.int3,
    };
    *n = n.checked_add_signed(delta).ok_or(PokeError::NotArmed(addr))?;
    Ok(())
}

/// Changes the counts of the sites `idx` by `delta` for `how` and rewrites their bytes, under
/// one hold of the lock; returns the `SYNC_CORE` rounds it made. Under [`PatchSync::Ipi`] the
/// whole batch shares one pair of rounds, as Linux's `text_poke_bp_batch`: `int3` first on
/// every site that changes between two other forms, a round, then every final byte, a round.
/// All or nothing: a site that is none, has wrong bytes, or whose count would fall below 0
/// undoes the counts changed before it, and nothing is written. Signal-safe once
/// [`prepare`]d: no allocation, and no system call but the rounds.
fn change(idx: &[u32], how: Arm, delta: i32, sync: PatchSync) -> Result<u32, PokeError> {
    let a = alias()?;
    let mut counts = COUNTS.lock();
    for (k, &i) in idx.iter().enumerate() {
        if let Err(e) = recount(a, &mut counts, i as usize, how, delta) {
            for &j in &idx[..k] {
                let _ = recount(a, &mut counts, j as usize, how, -delta);
            }
            return Err(e);
        }
    }
    // Each site's address and the byte its counts now call for (every index was checked).
    let sites = || idx.iter().map(|&i| (a.sites[i as usize], want(counts[i as usize])));
    if sync == PatchSync::Ipi {
        let round = || {
            sync_core_round();
            1
        };
        return Ok(arch_api::site::poke_synced(
            sites,
            |addr| read_site(addr)[0],
            |addr, v| write_byte(a, addr, v),
            round,
        ));
    }
    for (addr, want) in sites() {
        if read_site(addr)[0] != want {
            write_byte(a, addr, want);
        }
    }
    Ok(0)
}

/// Prefetches the site counts' lock and vector header, which every arming takes first.
pub fn prefetch_counts() {
    crate::cpu::prefetch(&COUNTS as *const _ as usize);
}

/// A site index as a batch's entry.
fn one(idx: usize) -> Result<u32, PokeError> {
    u32::try_from(idx).map_err(|_| PokeError::NotASite(idx))
}

/// One more user wants site `idx` armed `how`, unsynchronised ([`PatchSync::None`]).
pub fn arm(idx: usize, how: Arm) -> Result<(), PokeError> {
    change(&[one(idx)?], how, 1, PatchSync::None).map(drop)
}

/// A user no longer wants site `idx` armed `how`; the last one restores the idle form.
pub fn disarm(idx: usize, how: Arm) -> Result<(), PokeError> {
    change(&[one(idx)?], how, -1, PatchSync::None).map(drop)
}

/// [`arm`] for every site of `idx`, as one batch synchronised as `sync` says (under
/// [`PatchSync::Ipi`] one pair of rounds for the whole batch; all or nothing); returns the
/// `SYNC_CORE` rounds.
pub fn arm_synced(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
    change(idx, how, 1, sync)
}

/// [`disarm`] for every site of `idx`, as one batch synchronised as `sync` says.
pub fn disarm_synced(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
    change(idx, how, -1, sync)
}

/// The index ([`arm`]'s) of the site at `addr`; `Err` if it is none (or there is no alias).
pub fn index_of(addr: usize) -> Result<usize, PokeError> {
    alias()?;
    site_index(addr).ok_or(PokeError::NotASite(addr))
}

/// Arms the site at `addr` (by address; see [`arm`]).
pub fn arm_site(addr: usize, how: Arm) -> Result<(), PokeError> {
    arm(index_of(addr)?, how)
}

/// Disarms the site at `addr` (by address; see [`disarm`]).
pub fn disarm_site(addr: usize, how: Arm) -> Result<(), PokeError> {
    disarm(index_of(addr)?, how)
}

/// Overwrites one byte of the text behind the patcher's back (see [`crate::testing::scribble`]).
#[cfg(feature = "testing")]
pub(crate) fn scribble(addr: usize, v: u8) -> Result<(), PokeError> {
    let a = alias()?;
    let _g = COUNTS.lock();
    write_byte(a, addr, v);
    Ok(())
}

/// What a SIGTRAP at a site means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trap {
    /// Not a site's `int3`: not ours.
    Foreign,
    /// A stale `int3` (the site has changed since): re-execute the site's current bytes.
    Stale,
    /// An armed `int3` at this site: the point fired.
    Fired(usize),
}

/// Classifies a SIGTRAP whose `rip` is just after an `int3`.
pub(crate) fn classify_trap(rip: usize) -> Trap {
    let site = rip.wrapping_sub(1);
    if !is_site(site) {
        return Trap::Foreign;
    }
    if read_site(site)[0] == OP_INT3 {
        Trap::Fired(site)
    } else {
        Trap::Stale
    }
}

/// One user's claim that every site calls `rt_reschedule` (a model that acts at points, or a
/// latency tracer): while any claim lives, every site is armed [`Arm::Call`] (counted like any
/// other arming). Dropping the claim releases it; [`AllSitesClaim::release`] does the same and
/// reports a refusal.
#[derive(Debug)]
#[must_use = "dropping the claim releases it at once"]
pub struct AllSitesClaim {
    _claimed: (),
}

/// Claims every site (see [`AllSitesClaim`]). On a refusal nothing stays claimed: the sites
/// armed before the refused one are disarmed again.
pub fn claim_all_sites() -> Result<AllSitesClaim, PokeError> {
    let all: Vec<u32> = (0..alias()?.sites.len()).map(one).collect::<Result<_, _>>()?;
    change(&all, Arm::Call, 1, PatchSync::None)?; // one batch: all or nothing
    Ok(AllSitesClaim { _claimed: () })
}

impl AllSitesClaim {
    /// Releases the claim now; `Err` names the first site that refused its disarm (the others
    /// are disarmed all the same).
    pub fn release(self) -> Result<(), PokeError> {
        std::mem::forget(self);
        release_all()
    }
}

impl Drop for AllSitesClaim {
    fn drop(&mut self) {
        if let Err(e) = release_all() {
            let mut msg = crate::cpu::FixedBuf::<256>::new();
            let _ = writeln!(msg, "{e}");
            crate::cpu::console_write(2, msg.as_bytes());
        }
    }
}

fn release_all() -> Result<(), PokeError> {
    let mut first = Ok(());
    for idx in 0..alias()?.sites.len() {
        if let Err(e) = disarm(idx, Arm::Call) {
            first = first.and(Err(e));
        }
    }
    first
}
