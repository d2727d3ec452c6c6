//! Patching the program's own machine code, safely.
//!
//! **W^X.** No page is ever writable and executable at once. On first use the program's
//! executable segments are copied into a `memfd` and mapped back over themselves, `r-x` and
//! shared, with a second, `rw-` mapping of the same file elsewhere (the alias). Code is written
//! through the alias and executed through the original addresses; `/proc/self/maps` never
//! shows a `wx` mapping. The patch path makes no `mprotect` call.
//!
//! **Cross-modification** follows Linux's `text_poke_bp` (`arch/x86/kernel/alternative.c`),
//! because other threads (other CPUs, other kernel instances) may be executing the site:
//! verify the old bytes; write `int3` over the first byte; serialise every core
//! (`membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`, plus `cpuid` here); write bytes 1..5; serialise;
//! write byte 0; serialise. A thread that meets the `int3` meanwhile traps into
//! [`trap_signal_handler`], which emulates the new instruction (a NOP: skip it; a `call`:
//! push the return address and jump), or, if the poke has finished by then, re-executes the
//! completed instruction.
//!
//! **Invariants.** Only registered sites are written, and only after their current bytes have
//! been checked against what the caller expects; anything else is refused with a `BUG:`
//! message and nothing is written. One poke at a time in the whole process.

use crate::ppoint::{self, NOP5};
use crate::sync::IrqSpinLock;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

const PAGE: usize = 4096;
const INT3: u8 = 0xcc;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 5;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 6;

/// The writable alias of the text and the sorted site addresses.
struct Alias {
    /// (start, end, alias start) of each remapped executable range.
    ranges: Vec<(usize, usize, usize)>,
    sites: Vec<usize>,
}

static ALIAS: OnceLock<Result<Alias, String>> = OnceLock::new();
static POKE: IrqSpinLock<()> = IrqSpinLock::new(());
/// The site being poked (0: none) and the bytes it is becoming, packed little-endian.
static INFLIGHT_ADDR: AtomicUsize = AtomicUsize::new(0);
static INFLIGHT_NEW: AtomicU64 = AtomicU64::new(0);

/// Why a poke was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PokeError {
    /// The address is not a registered preemption-point site.
    NotASite(usize),
    /// The site's bytes were not the expected ones.
    Unexpected { addr: usize, expected: [u8; 5], found: [u8; 5] },
    /// The host refused to set up the alias or to synchronise cores.
    Host(String),
}

impl std::fmt::Display for PokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PokeError::NotASite(a) => write!(f, "BUG: refusing to patch {a:#x}: not a registered preemption point"),
            PokeError::Unexpected { addr, expected, found } => {
                write!(f, "BUG: refusing to patch site {addr:#x}: expected bytes {expected:02x?}, found {found:02x?}")
            }
            PokeError::Host(e) => write!(f, "text patching unavailable: {e}"),
        }
    }
}

impl std::error::Error for PokeError {}

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
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        let text = libc::mmap(lo as *mut libc::c_void, len, rx, libc::MAP_SHARED | libc::MAP_FIXED, fd, 0);
        if text == libc::MAP_FAILED {
            return close(host_err("mmap(text)"));
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let alias = libc::mmap(std::ptr::null_mut(), len, rw, libc::MAP_SHARED, fd, 0);
        libc::close(fd);
        if alias == libc::MAP_FAILED {
            return Err(host_err("mmap(alias)"));
        }
        Ok(alias as usize)
    }
}

fn init() -> Result<Alias, String> {
    crate::entry::install();
    // SAFETY: membarrier registration has no memory effects.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) };
    if rc != 0 {
        return Err(host_err("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)"));
    }
    let mut ranges = Vec::new();
    for &(lo, hi) in crate::text::ranges() {
        let (lo, hi) = (lo & !(PAGE - 1), hi.div_ceil(PAGE) * PAGE);
        ranges.push((lo, hi, alias_range(lo, hi)?));
    }
    let mut sites: Vec<usize> = ppoint::sites().iter().map(|s| s.addr).collect();
    sites.sort_unstable();
    Ok(Alias { ranges, sites })
}

fn alias() -> Result<&'static Alias, PokeError> {
    ALIAS.get_or_init(init).as_ref().map_err(|e| PokeError::Host(e.clone()))
}

/// Sets up the alias now (it is otherwise set up by the first poke).
pub fn prepare() -> Result<(), PokeError> {
    alias().map(|_| ())
}

/// True if `addr` is a registered site (binary search; no allocation, signal-safe once
/// prepared).
pub fn is_site(addr: usize) -> bool {
    matches!(ALIAS.get(), Some(Ok(a)) if a.sites.binary_search(&addr).is_ok())
}

/// Makes every core of this process execute a serialising instruction.
fn sync_core() -> Result<(), PokeError> {
    // SAFETY: membarrier only sends IPIs; cpuid only serialises this core.
    unsafe {
        if libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) != 0 {
            return Err(PokeError::Host(host_err("membarrier(PRIVATE_EXPEDITED_SYNC_CORE)")));
        }
        std::arch::x86_64::__cpuid(0);
    }
    Ok(())
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

/// `call rel32` from the site at `addr` to `target`.
pub fn call_bytes(addr: usize, target: usize) -> [u8; 5] {
    let rel = (target as i64 - (addr as i64 + 5)) as i32;
    let r = rel.to_le_bytes();
    [0xe8, r[0], r[1], r[2], r[3]]
}

fn write_byte(a: &Alias, addr: usize, v: u8) {
    let (lo, _, al) = *a.ranges.iter().find(|(lo, hi, _)| addr >= *lo && addr < *hi).expect("site in text");
    // SAFETY: `al + (addr - lo)` is inside the rw alias of the range holding `addr`.
    unsafe { std::ptr::write_volatile((al + (addr - lo)) as *mut u8, v) };
}

/// Rewrites the site at `addr` from `expect` to `new` with the int3-first protocol. Writing the
/// bytes it already holds is a no-op. Refuses (and writes nothing) if `addr` is not a site or
/// holds anything else.
pub fn poke_site(addr: usize, expect: [u8; 5], new: [u8; 5]) -> Result<(), PokeError> {
    let a = alias()?;
    if a.sites.binary_search(&addr).is_err() {
        return Err(PokeError::NotASite(addr));
    }
    let _g = POKE.lock();
    let found = read_site(addr);
    if found == new {
        return Ok(());
    }
    if found != expect {
        return Err(PokeError::Unexpected { addr, expected: expect, found });
    }
    let mut packed = [0u8; 8];
    packed[..5].copy_from_slice(&new);
    INFLIGHT_NEW.store(u64::from_le_bytes(packed), Ordering::Release);
    INFLIGHT_ADDR.store(addr, Ordering::Release);
    write_byte(a, addr, INT3);
    sync_core()?;
    for (i, &b) in new.iter().enumerate().skip(1) {
        write_byte(a, addr + i, b);
    }
    sync_core()?;
    write_byte(a, addr, new[0]);
    sync_core()?;
    INFLIGHT_ADDR.store(0, Ordering::Release);
    Ok(())
}

/// Patches the site to call the preemption-point hook (from the NOP).
pub fn arm_site(addr: usize) -> Result<(), PokeError> {
    poke_site(addr, NOP5, call_bytes(addr, ppoint::point_call_target()))
}

/// Restores the site's NOP (from the hook call).
pub fn disarm_site(addr: usize) -> Result<(), PokeError> {
    poke_site(addr, call_bytes(addr, ppoint::point_call_target()), NOP5)
}

/// SIGTRAP: an `int3` of an in-flight poke. Returns false if the trap is not ours.
pub(crate) fn handle_trap(gregs: &mut [libc::greg_t; 23]) -> bool {
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let site = rip.wrapping_sub(1);
    if !is_site(site) {
        return false;
    }
    // SAFETY: `site` is a registered site in readable text.
    let now = unsafe { std::ptr::read_volatile(site as *const u8) };
    if now != INT3 {
        gregs[libc::REG_RIP as usize] = site as i64; // the poke finished: run the new bytes
        return true;
    }
    if INFLIGHT_ADDR.load(Ordering::Acquire) != site {
        return false;
    }
    let new = INFLIGHT_NEW.load(Ordering::Acquire).to_le_bytes();
    if new[..5] == NOP5 {
        gregs[libc::REG_RIP as usize] = (site + 5) as i64;
    } else {
        let rel = i32::from_le_bytes([new[1], new[2], new[3], new[4]]) as i64;
        let sp = gregs[libc::REG_RSP as usize] as usize - 8;
        // SAFETY: sites are in asm blocks that are not `nostack`, so the interrupted code may
        // have its stack used below rsp (as the real `call` would).
        unsafe { (sp as *mut u64).write((site + 5) as u64) };
        gregs[libc::REG_RSP as usize] = sp as i64;
        gregs[libc::REG_RIP as usize] = site as i64 + 5 + rel;
    }
    true
}

/// How many users want every site armed (kernel instances whose model acts at points).
static ARMERS: IrqSpinLock<usize> = IrqSpinLock::new(0);

/// One more user wants every site to call the hook; the first one arms them all.
pub fn sites_get() -> Result<(), PokeError> {
    let mut n = ARMERS.lock();
    if *n == 0 {
        for s in ppoint::sites() {
            arm_site(s.addr)?;
        }
    }
    *n += 1;
    Ok(())
}

/// A user no longer needs the sites; the last one restores every NOP.
pub fn sites_put() -> Result<(), PokeError> {
    let mut n = ARMERS.lock();
    assert!(*n > 0, "sites_put without sites_get");
    *n -= 1;
    if *n == 0 {
        for s in ppoint::sites() {
            disarm_site(s.addr)?;
        }
    }
    Ok(())
}
