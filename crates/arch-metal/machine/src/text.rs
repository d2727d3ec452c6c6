//! Kernel text, its preemption-point sites, and patching them through the text's alias.
//!
//! **Mechanism.** The text is the linker script's `__text_start..__text_end` (read-execute).
//! [`preempt_point!`](crate::preempt_point) is the hosted arch's site (`cmp eax, imm32`, the
//! immediate being the `rel32` to `rt_reschedule`) with its table entry in the
//! `atomkernel_ppoints` section, which `link.ld` keeps between `__start_atomkernel_ppoints`
//! and `__stop_atomkernel_ppoints`, as the hosted arch's linker gathers it. A site is armed
//! by changing its first byte (`3d` idle, `e8` call, `cc` int3) through the writable alias
//! of the text (`crate::paging::text_alias`), never through the read-only mapping; each site
//! counts its users per form, the byte being `e8` while anyone wants a call, else `cc` while
//! anyone wants int3, else `3d` (as on the hosted arch). An armed `int3` is a real `#BP` through the IDT
//! ([`breakpoint`]): the frame's RIP moves past the whole site and the core's
//! `Hooks::point_trap` decides.
//!
//! **Invariant.** Every site's bytes 1..5 never change; byte 0 is one of the three forms, each
//! safe to execute at any moment. The counts change only under `SITES`' lock (IF clear).
//! After a write through the alias the CPU serializes (`cpuid`) before the text runs again.

use crate::idt::ExceptionFrame;
use crate::{paging, percpu};
use alloc::vec::Vec;
use arch_api::{Arm, IrqExit, IrqFrame, PatchSync, PointInfo, PokeError, Site};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

pub use arch_api::site::OP_IDLE;
use arch_api::site::{OP_CALL, OP_INT3};

/// A preemption point: a 5-byte idle instruction registered in the site table (see the
/// module's description). The image's code uses it as `arch_metal::preempt_point!()`.
#[macro_export]
macro_rules! preempt_point {
    () => {{
        static INFO: $crate::PointInfo =
            $crate::PointInfo { file: file!(), line: line!(), column: column!(), module: module_path!() };
        // SAFETY: `cmp eax, imm32` writes only the flags (declared clobbered by omitting
        // `preserves_flags`) plus a table entry in another section; the C ABI's caller-saved
        // registers are clobbered because the site may become a call of `rt_reschedule`.
        unsafe {
            ::core::arch::asm!(
                "2:",                                                  // the site
                ".byte 0x3d",                                          // cmp eax, imm32 (idle form)
                ".long rt_reschedule - (2b + 5)",                      // imm32 = rel32 to rt_reschedule
                ".pushsection atomkernel_ppoints,\"aR\",@progbits",   // the table (kept by link.ld)
                ".balign 4",                                           // entries are two i32s
                ".long 2b - .",                                        // PC-relative: the site
                ".long {info} - .",                                    // PC-relative: its PointInfo
                ".popsection",                                         // back to the text
                info = sym INFO,
                clobber_abi("C"),
            )
        }
    }};
}

core::arch::global_asm!(
    ".section .text.rt_reschedule, \"ax\"",
    ".global rt_reschedule",
    "rt_reschedule:",             // reached by an armed site's `call`: an ordinary call
    "call metal_stamp_call",      // the served point's stamp (crate::account; rax, rdx clobbered)
    "mov rdi, [rsp]",             // the return address: site + 5
    "sub rdi, 5",                 // the site: the body's argument
    "jmp {body}",                 // tail call: the body returns to the site's caller
    body = sym rt_reschedule_body,
);

extern "C" {
    fn rt_reschedule();
    static __start_atomkernel_ppoints: [i32; 0];
    static __stop_atomkernel_ppoints: [i32; 0];
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
}

extern "C" fn rt_reschedule_body(site: usize) {
    if let Some(h) = percpu::this().hooks.get() {
        (h.rt_reschedule)(site);
    }
}

// A site of the machine's own, so the table exists in every image.
#[inline(never)]
fn canary() {
    crate::preempt_point!();
}

/// The text's range.
pub fn range() -> (usize, usize) {
    (&raw const __text_start as usize, &raw const __text_end as usize)
}

/// True if `ip` is in the text.
#[inline]
pub fn contains(ip: usize) -> bool {
    let (s, e) = range();
    (s..e).contains(&ip)
}

/// The text bytes `[start, end)`.
pub fn bytes(start: usize, end: usize) -> Option<&'static [u8]> {
    let (s, e) = range();
    (s <= start && start <= end && end <= e)
        // SAFETY: inside the text, mapped read-only for the image's life; patches change
        // single bytes of sites, which readers of machine code expect.
        .then(|| unsafe { core::slice::from_raw_parts(start as *const u8, end - start) })
}

/// `len` bytes of the image's read-only data at `addr` (jump tables, for the exact table's
/// analysis of the machine code), if they all lie in `__rodata_start..__rodata_end`.
pub fn read_only(addr: usize, len: usize) -> Option<&'static [u8]> {
    let (s, e) = (&raw const __rodata_start as usize, &raw const __rodata_end as usize);
    (s <= addr && addr.checked_add(len)? <= e)
        // SAFETY: inside rodata, mapped read-only for the image's life and never written.
        .then(|| unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}

/// Every site, in table order.
pub fn sites() -> Vec<Site> {
    core::hint::black_box(canary as fn());
    // SAFETY: the linker script defines both symbols around the table, pairs of PC-relative
    // i32 offsets written by `preempt_point!`, each to a site and to a `static PointInfo`.
    unsafe {
        let start = (&raw const __start_atomkernel_ppoints).cast::<i32>();
        let stop = (&raw const __stop_atomkernel_ppoints).cast::<i32>();
        let n = (stop as usize - start as usize) / 8;
        (0..n)
            .map(|i| {
                let field = |k: usize| {
                    let p = start.add(2 * i + k);
                    (p as isize + *p as isize) as usize
                };
                Site { addr: field(0), info: &*(field(1) as *const PointInfo) }
            })
            .collect()
    }
}

/// The site table: sorted addresses and per-site counts of call and int3 users.
struct Table {
    addrs: &'static [usize],
    /// Per site, in `addrs`' order: its address again (one bounds check finds both) and its
    /// users `[call, int3]`.
    sites: Vec<(usize, [u32; 2])>,
}

static SITES: lock_api::Mutex<crate::sync::RawIrqSpinLock, Option<Table>> = lock_api::Mutex::new(None);
static CLAIMED: AtomicBool = AtomicBool::new(false);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut t = SITES.lock();
    match t.as_mut() {
        Some(t) => f(t),
        None => f(build_table(&mut t)),
    }
}

/// The table's first use: every site from the linker's table, sorted. Every site's five
/// bytes lie in the text (checked here, once: [`check`] and [`write_op`] rely on it).
#[cold]
#[inline(never)]
fn build_table(slot: &mut Option<Table>) -> &mut Table {
    let mut a: Vec<usize> = sites().iter().map(|s| s.addr).collect();
    a.sort_unstable();
    let (s, e) = range();
    if let Some(bad) = a.iter().find(|&&x| x < s || x.checked_add(5).is_none_or(|end| end > e)) {
        crate::kprintln!("BUG: preemption-point site {bad:#x} is outside the text {s:#x}..{e:#x} (link.ld?)");
        crate::serial::exit(crate::exit_codes::PANIC);
    }
    let sites = a.iter().map(|&addr| (addr, [0, 0])).collect();
    slot.insert(Table { addrs: a.leak(), sites })
}

/// The sorted addresses, once the table exists (read without the lock: the patch handler
/// asks for them per site).
static ADDRS: AtomicPtr<Vec<usize>> = AtomicPtr::new(core::ptr::null_mut());

/// Every site's address, sorted: one load once the table exists (the patch handler asks per
/// site), the building out of line.
#[inline]
pub fn site_addrs() -> &'static [usize] {
    // SAFETY: ADDRS is null or a leaked Vec published once by `publish_addrs` and never freed
    // or written afterwards.
    match unsafe { ADDRS.load(Ordering::Acquire).as_ref() } {
        Some(a) => a,
        None => publish_addrs(),
    }
}

/// Builds the table and publishes its addresses for [`site_addrs`].
#[cold]
#[inline(never)]
fn publish_addrs() -> &'static [usize] {
    let a = with_table(|t| t.addrs);
    let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(a.to_vec()));
    if ADDRS.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // SAFETY: `p` came from Box::into_raw just above and was never published.
        drop(unsafe { alloc::boxed::Box::from_raw(p) });
    }
    a
}

/// The index of the site at `addr`.
pub fn index_of(addr: usize) -> Result<usize, PokeError> {
    site_addrs().binary_search(&addr).map_err(|_| PokeError::NotASite(addr))
}

/// The five bytes at `addr` (zeros unless all five are in the text).
#[inline]
pub fn read_site(addr: usize) -> [u8; 5] {
    let (s, e) = range();
    if addr < s || addr.wrapping_add(5) > e || addr.wrapping_add(5) < addr {
        return [0; 5];
    }
    // SAFETY: `addr..addr + 5` is inside the text, mapped read-only for the image's life;
    // patches change single bytes of sites, which readers of machine code expect.
    unsafe { core::ptr::read_unaligned(addr as *const [u8; 5]) }
}

fn rel_bytes(addr: usize) -> [u8; 4] {
    ((rt_reschedule as *const () as usize as i64 - (addr as i64 + 5)) as i32).to_le_bytes()
}

/// Checks that the five bytes at `addr` (a site of the table: in the text) are a site's (any
/// of the three forms, the `rel32` to `rt_reschedule`): two loads and two compares.
#[inline]
fn check(addr: usize) -> Result<(), PokeError> {
    // SAFETY: the table holds only sites whose five bytes lie in the text (`build_table`),
    // mapped read-only for the image's life; patches change single bytes of sites.
    let (op, rel) = unsafe { (*(addr as *const u8), core::ptr::read_unaligned((addr + 1) as *const [u8; 4])) };
    if rel != rel_bytes(addr) || !matches!(op, OP_IDLE | OP_CALL | OP_INT3) {
        return Err(unexpected(addr));
    }
    Ok(())
}

/// The refusal of site `addr`, its bytes as found.
#[cold]
#[inline(never)]
fn unexpected(addr: usize) -> PokeError {
    let r = rel_bytes(addr);
    PokeError::Unexpected { addr, expected: [OP_IDLE, r[0], r[1], r[2], r[3]], found: read_site(addr) }
}

/// The first byte a site's users `counts` (`[call, int3]`) call for (`arch_api::site::site_op`:
/// a call wins, as on the hosted arch).
#[inline]
fn op_for(counts: [u32; 2]) -> u8 {
    arch_api::site::site_op(counts[0], counts[1])
}

/// Writes `op` as the first byte of site `addr` (checked).
#[inline]
fn write_op(addr: usize, op: u8) {
    // `addr` is in the text: its alias is at the same offset in the alias mapping.
    let alias = (paging::TEXT_ALIAS as usize + (addr - range().0)) as *mut u8;
    // SAFETY: the alias maps the text byte at `addr` writable (`paging`'s layout: `TEXT_ALIAS
    // + (addr - __text_start)`); one byte store changes the site from one safe form to
    // another (the module's invariant).
    unsafe { core::ptr::write_volatile(alias, op) };
}

fn slot(how: Arm) -> usize {
    match how {
        Arm::Int3 => 1,
        _ => 0,
    }
}

/// Checks site `idx`'s bytes and changes its users for `how` by `delta`; its address and new
/// counts. On an error nothing is counted.
#[inline]
fn count(t: &mut Table, idx: u32, how: Arm, delta: i32) -> Result<(usize, [u32; 2]), PokeError> {
    let (addr, counts) = t.sites.get_mut(idx as usize).ok_or(PokeError::NotASite(idx as usize))?;
    check(*addr)?;
    let c = &mut counts[slot(how)];
    *c = c.checked_add_signed(delta).ok_or(PokeError::NotArmed(*addr))?;
    Ok((*addr, *counts))
}

/// [`count`], then writes the byte the counts call for.
#[inline]
fn recount(t: &mut Table, idx: u32, how: Arm, delta: i32) -> Result<(), PokeError> {
    let (addr, counts) = count(t, idx, how, delta)?;
    write_op(addr, op_for(counts));
    Ok(())
}

/// Changes the users of every site of `idx` by `delta` for `how` and writes their bytes, under
/// one hold of the lock, then serializes once (under `patch_sync=ipi`, [`change_synced`]).
/// All or nothing: a site that is none, has wrong bytes or no user to remove undoes the sites
/// changed before it, and is itself unchanged.
fn change(idx: &[u32], how: Arm, delta: i32, sync: PatchSync) -> Result<u32, PokeError> {
    with_table(|t| {
        if sync == PatchSync::Ipi {
            return change_synced(t, idx, how, delta);
        }
        for (k, &i) in idx.iter().enumerate() {
            if let Err(e) = recount(t, i, how, delta) {
                return Err(undo(t, &idx[..k], how, delta, e));
            }
        }
        // Serialize before the modified text runs (Intel SDM vol. 3, 9.1.3 "Handling Self-
        // and Cross-Modifying Code").
        let _ = crate::cpu::cpuid(0, 0);
        Ok(0) // `patch_sync=none`: no other CPU is made to serialize
    })
}

/// `patch_sync=ipi`: every count first (all or nothing, nothing written yet), then
/// `text_poke_bp`'s protocol over the batch (`arch_api::site::poke_synced`, as on the hosted
/// arch), each `SYNC_CORE` round an NMI to every other CPU ([`crate::sync_core::round`]).
/// Returns the rounds made (none on one CPU).
fn change_synced(t: &mut Table, idx: &[u32], how: Arm, delta: i32) -> Result<u32, PokeError> {
    for (k, &i) in idx.iter().enumerate() {
        if let Err(e) = count(t, i, how, delta) {
            for &j in &idx[..k] {
                let _ = count(t, j, how, -delta);
            }
            return Err(e);
        }
    }
    // each site's address and the byte its counts now call for (every index was checked)
    let sites = || idx.iter().map(|&i| t.sites[i as usize]).map(|(addr, counts)| (addr, op_for(counts)));
    let round = || {
        let _ = crate::cpu::cpuid(0, 0); // this CPU, as under `patch_sync=none`
        u32::from(crate::sync_core::round())
    };
    Ok(arch_api::site::poke_synced(sites, |addr| read_site(addr)[0], write_op, round))
}

/// Undoes the change of the sites `done` (out of line: the arming's fast path keeps fewer
/// registers); returns `e`.
#[cold]
#[inline(never)]
fn undo(t: &mut Table, done: &[u32], how: Arm, delta: i32, e: PokeError) -> PokeError {
    for &j in done {
        let _ = recount(t, j, how, -delta);
    }
    e
}

/// One more user wants each site of `idx` armed `how`: one batch under one hold of the lock,
/// all or nothing, serialized once (`patch_sync=ipi`: on every CPU).
pub fn arm(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
    change(idx, how, 1, sync)
}

/// One user less wants each site of `idx` armed `how` (one batch).
pub fn disarm(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
    change(idx, how, -1, sync)
}

/// A claim on every site (armed as calls while held).
pub struct AllSitesClaim(());

/// Claims every site.
pub fn claim_all() -> Result<AllSitesClaim, PokeError> {
    if CLAIMED.swap(true, Ordering::AcqRel) {
        return Err(PokeError::Host("every site is claimed already".into()));
    }
    let all: Vec<u32> = (0..site_addrs().len() as u32).collect();
    // one batch: all or nothing, so a refused site leaves no claim behind
    arm(&all, Arm::Call, PatchSync::None).inspect_err(|_| CLAIMED.store(false, Ordering::Release))?;
    Ok(AllSitesClaim(()))
}

/// Releases a claim.
pub fn release_all(c: AllSitesClaim) -> Result<(), PokeError> {
    core::mem::forget(c);
    let mut first = Ok(());
    for i in 0..site_addrs().len() as u32 {
        if let Err(e) = disarm(&[i], Arm::Call, PatchSync::None) {
            first = first.and(Err(e));
        }
    }
    CLAIMED.store(false, Ordering::Release);
    first
}

impl Drop for AllSitesClaim {
    fn drop(&mut self) {
        let _ = release_all(AllSitesClaim(()));
    }
}

/// `#BP`: an armed int3 site (`Some`: the core's answer, 1 = preempt), or not a site.
pub fn breakpoint(frame: &mut ExceptionFrame) -> Option<u64> {
    let site = frame.rip as usize - 1;
    index_of(site).ok()?;
    frame.rip = (site + 5) as u64;
    crate::account::stamp_int3(); // the served point's stamp: this gate's entry TSC
    let hooks = percpu::this().hooks.get()?;
    let f = IrqFrame { ip: site + 5, sp: frame.rsp as usize, bp: frame.rbp as usize, replayed: false, exiting: false };
    Some(u64::from((hooks.point_trap)(site, &f) == IrqExit::Preempt))
}
