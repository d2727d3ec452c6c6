//! `preempt=patch-int3` and `preempt=patch-call`: the 1996 "crazy idea".
//!
//! **Mechanism.** Kernel code runs over idle preemption points and pays nothing for them. When
//! an interrupt wakes an RT task while the current task is in kernel mode, the interrupt exit
//! reads the interrupted instruction pointer and looks it up in the point table: under
//! `ptable=exact` (the default) the [`exact`] table, which names the points first reached on
//! every path forward from that instruction (through calls too) and says whether some path
//! returns before one; under `ptable=function` the per-function [`ptable`], which names every
//! point of the interrupted function (and every path may return). The points named are armed:
//! turned into `int3` (served by the SIGTRAP handler, which injects a call of
//! `preempt_schedule_irq`) or into `call` of the point hook (which calls `schedule`). If some
//! path returns first, the return address is redirected too (`Arch::redirect_return`). A function the
//! exact analysis left unresolved is armed from the per-function table instead (counted in
//! `exact_fallbacks`). If the instruction reaches no point (a leaf helper, libc, the vDSO) the
//! handler unwinds the stack (`Arch::unwind_step`: on the hosted arch, from `.eh_frame`) to the first caller that does
//! and does the same there (`patch_leaf=walk`, the default); under `patch_leaf=return` it
//! redirects that function's return instead and arms nothing: every path from the
//! interrupted instruction to a caller's points passes that return, so the RT task runs no
//! later, for one unwind step whatever the depth, but at a return rather than at a point
//! (as it already does when a path of a function with points returns before one). When a redirected return
//! fires and the task may be preempted there, it is; if not (a count is held, or the return
//! lands in foreign code), the caller's points are armed and its return redirected in turn.
//! The arming's cost is cache and TLB misses more than instructions, so it first asks for the
//! first line of every table it will read (`prefetch_arming`) and the misses overlap. Its
//! whole time is taken with the cycle counter (`Arch::cycles`, a third of a clock read's
//! cost); its parts only under `patch_parts=on` (`laps.rs`).
//!
//! **Invariants.**
//! - Only an RT wakeup arms anything; fair wakeups wait for `ret_from_syscall` as under `none`.
//! - The event is served by the next `__schedule` on this CPU, whatever caused it, and that
//!   `__schedule` disarms every site this CPU armed and restores the return address before
//!   any task runs on: no site stays patched after the event.
//! - A task that meets an armed site while no event of its CPU is pending passes on.
//! - Nothing here allocates or makes a system call on the interrupt path.

pub mod exact;
mod laps;
pub mod ptable;
pub(super) mod stats;

pub use super::state::MAX_ARMED;
use super::state::{Armed, PatchState};
pub use stats::PatchStatsSnapshot;

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use crate::arch::{Arch, Arm, Frame, IrqExit, IrqFrame, PokeError, A};
use crate::config::{PatchLeaf, PtableMode};
use crate::instance::{try_this_kernel, Kernel};
use crate::preempt::count as preempt;
use crate::sync::OnceLock;
#[cfg(feature = "torture")]
use alloc::string::ToString;
use alloc::{format, string::String};
use core::sync::atomic::Ordering;
use laps::{Laps, NoLaps, Part, Stages};

/// The most frames the handler unwinds looking for a function with points.
pub const MAX_DEPTH: usize = 32;

impl PatchState {
    /// Keeps a refused patch's site and bytes for [`PatchState::refused_report`].
    #[cold]
    fn note_refused(&self, e: PokeError) {
        if let PokeError::Unexpected { addr, found, .. } = e {
            let mut packed = [0u8; 8];
            packed[..5].copy_from_slice(&found);
            self.refused_bytes.store(u64::from_le_bytes(packed), Ordering::Release);
            self.refused.store(addr, Ordering::Release);
        }
    }

    /// The `BUG:` line for a refused patch, if there was one.
    pub(crate) fn refused_report(&self) -> Option<String> {
        let addr = self.refused.load(Ordering::Acquire);
        let b = self.refused_bytes.load(Ordering::Acquire).to_le_bytes();
        (addr != 0).then(|| {
            format!(
                "BUG: refusing to patch site {addr:#x}: its bytes {:02x?} are not a preemption point's; \
                 the RT event fell back to the retry timer",
                &b[..5]
            )
        })
    }
}

/// `patch-int3` or `patch-call`: the two differ only in how a point is armed.
pub(crate) struct Patch {
    how: Arm,
}

/// `preempt=patch-int3`.
pub(super) static PATCH_INT3: Patch = Patch { how: Arm::Int3 };
/// `preempt=patch-call`.
pub(super) static PATCH_CALL: Patch = Patch { how: Arm::Call };

impl Model for Patch {
    /// Every interrupt may wake an RT task: the first line of each table an arming from `ip`
    /// reads is requested now, a microsecond or so before the exit would read it.
    fn irq_entry(&self, k: &Kernel, ip: usize) {
        k.this_cpu().model.patch.irq_ip.store(ip, Ordering::Relaxed);
        prefetch_arming(k, ip);
    }

    /// Only an RT wakeup arms anything (at the interrupt exit); a fair one waits for
    /// `ret_from_syscall`, as under `none`. An RT one also requests the tables' second lines
    /// (what the first lines, requested at the entry, point to).
    fn wakeup(&self, k: &Kernel, w: Wakeup) {
        if w.rt && !w.is_curr {
            let p = &k.this_cpu().model.patch;
            p.rt_resched.store(true, Ordering::Relaxed);
            prefetch_arming_deeper(k, p.irq_ip.load(Ordering::Relaxed));
        }
        preempt::set_need_resched();
    }

    /// `patch-call`: an armed site called `rt_reschedule` with a reschedule due.
    fn point(&self, k: &Kernel, _site: usize) -> PointAction {
        // Decided with IRQs masked: a preemptible task could move to another CPU between
        // finding its CPU and reading that CPU's event.
        let t0 = A::cycles();
        let fire = {
            let _irq = preempt::raw_local_irq_save();
            fire_decision(k, Hit::Call)
        };
        match fire {
            Fire::Now if !A::irqs_disabled() => PointAction::Schedule,
            Fire::Collateral => {
                note_collateral_ns(k, t0);
                PointAction::Pass
            }
            _ => PointAction::Pass,
        }
    }

    /// The 1996 idea: arm the next points instead of preempting here. (Not from inside a
    /// bottom half or another interrupt: that code is not on the task's stack, and the task's
    /// own points will be armed by the interrupt that returns to it.)
    fn irq_exit_kernel(&self, k: &Kernel, frame: &IrqFrame) -> IrqExitPolicy {
        if preempt::in_interrupt() || crate::sched::rq_lock::running_idle(k) {
            // The idle loop reschedules by itself.
            IrqExitPolicy::Wait
        } else if arm_on_irq_exit(k, frame, self.how) {
            IrqExitPolicy::Wait
        } else {
            IrqExitPolicy::RetrySoon
        }
    }

    fn preempts_kernel_code(&self) -> bool {
        false
    }

    /// `patch-int3`: an armed site's breakpoint fired; under `patch-call` an `int3` is another
    /// instance's and passes on.
    fn trap(&self, k: &Kernel) -> IrqExit {
        let t0 = A::cycles();
        match fire_decision(k, Hit::Int3) {
            Fire::Now if self.how == Arm::Int3 => IrqExit::Preempt,
            Fire::Collateral => {
                note_collateral_ns(k, t0);
                IrqExit::Resume
            }
            _ => IrqExit::Resume,
        }
    }

    fn sites(&self) -> SiteClaim {
        SiteClaim::PerEvent
    }

    fn rt_runs_at(&self) -> &'static str {
        match self.how {
            Arm::Int3 => "armed int3",
            Arm::Call => "armed call",
        }
    }
}

/// At interrupt exit, kernel mode, a reschedule due, model `patch-*`: arm the next points if
/// the reschedule is an RT one and nothing is armed yet. False if nothing could be armed.
fn arm_on_irq_exit(k: &Kernel, frame: &IrqFrame, how: Arm) -> bool {
    // Interrupt context (IF clear): the CPU cannot change under us, so the raw look-up.
    let p = &k.raw_this_cpu().model.patch;
    if !p.rt_resched.load(Ordering::Relaxed) || p.active.load(Ordering::Relaxed) || frame.replayed {
        return true;
    }
    if !A::text_contains(frame.ip) {
        p.stats.foreign.fetch_add(1, Ordering::Relaxed);
    }
    let t0 = A::cycles();
    let ok = arm_from(k, p, Frame::interrupted(frame.ip, frame.sp, frame.bp), how, t0);
    let dt = A::cycles() - t0;
    p.stats.arm_ns.fetch_add(dt, Ordering::Relaxed);
    p.stats.arm_max_ns.fetch_max(dt, Ordering::Relaxed);
    if ok {
        p.stats.events.fetch_add(1, Ordering::Relaxed);
    } else {
        p.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Starts every look-up of the arming from `ip` at once, at the interrupt's entry
/// (`Patch::irq_entry`): each table's first line for `ip` (the exact table's index slot here;
/// the frame table's and the site counts' in the arch) is requested before the first is read,
/// so their misses overlap instead of adding up, and are done by the exit.
fn prefetch_arming(k: &Kernel, ip: usize) {
    if k.config.ptable == PtableMode::Exact {
        if let Some(line) = exact::get().and_then(|x| x.table.first_line(ip as u64)) {
            A::prefetch(line);
        }
    }
    A::prefetch_arming(ip);
}

/// The second step of [`prefetch_arming`]: reads the first lines (requested at the entry,
/// cached by now) and requests the lines they point to: the exact table's range for `ip`, the
/// frame table's row.
fn prefetch_arming_deeper(k: &Kernel, ip: usize) {
    if k.config.ptable == PtableMode::Exact {
        if let Some(line) = exact::get().and_then(|x| x.table.second_line(ip as u64)) {
            A::prefetch(line);
        }
    }
    A::prefetch_arming_deeper(ip);
}

/// Builds the tables the interrupt exit will read under `mode` (outside interrupt context).
pub(crate) fn build_tables(mode: PtableMode) -> Result<(), String> {
    let function = ptable::build()?;
    let exact = match mode {
        PtableMode::Exact => Some(&exact::build()?.table),
        PtableMode::Function => None,
    };
    let _ = TABLES[mode.index()].set(Tables { exact, function });
    Ok(())
}

/// The tables of each `ptable=` mode, once built: one load finds both at an arming.
static TABLES: [OnceLock<Tables<'static>>; PtableMode::ALL.len()] = [const { OnceLock::new() }; PtableMode::ALL.len()];

/// What one frame's look-up says to arm.
enum Plan<'a> {
    /// Arm these sites; redirect the frame's return if some path returns before them.
    Arm { points: &'a [u32], redirect: bool },
    /// Nothing reachable from here: look one frame up.
    Up,
}

/// The tables an arming reads, found once per arming (not per frame).
#[derive(Clone, Copy)]
struct Tables<'a> {
    /// The exact table, under `ptable=exact`.
    exact: Option<&'a codeflow::ExactTable>,
    /// The per-function table (`ptable=function`, and the exact table's fallback).
    function: &'a ptable::PointTable,
}

impl Tables<'static> {
    /// `k`'s tables (its `ptable=` mode's), once [`build_tables`] has run.
    #[inline]
    fn get(k: &Kernel) -> Option<Tables<'static>> {
        TABLES[k.config.ptable.index()].get().copied()
    }
}

/// The look-up for one frame: the exact table under `ptable=exact` (falling back to the
/// per-function table where the function is unresolved), else the per-function table.
/// Both tables hold kernel text only: foreign code (the vDSO, libc, an unanalysed stub) is
/// `Up` without a separate test.
fn plan<'a>(p: &PatchState, f: &Frame, tables: &Tables<'a>) -> Plan<'a> {
    if let Some(x) = tables.exact {
        match x.lookup(f.ip as u64) {
            Some(codeflow::Lookup::Exact { sites, may_return }) if !sites.is_empty() || may_return => {
                return Plan::Arm { points: sites, redirect: may_return }
            }
            None => return Plan::Up,
            // Unresolved, or no path forward meets a point or returns (a trap): per function.
            Some(_) => p.stats.exact_fallbacks.fetch_add(1, Ordering::Relaxed),
        };
    }
    match tables.function.lookup(if f.is_return_address { f.ip - 1 } else { f.ip }) {
        Some(points) => Plan::Arm { points, redirect: true },
        None => Plan::Up,
    }
}

/// Walks up from `f` to the first frame whose look-up names points, arms them and, if some
/// path returns before them, redirects that frame's return. `p`: this CPU's patch state (IF
/// clear: the CPU cannot change). Under `patch_parts=on` the parts of its time go to the CPU's counters
/// (laps from `t0`).
fn arm_from(k: &Kernel, p: &PatchState, f: Frame, how: Arm, t0: u64) -> bool {
    if !k.config.patch_parts {
        return walk(k, p, f, how, &mut NoLaps);
    }
    let mut t = Stages::from(t0);
    let ok = walk(k, p, f, how, &mut t);
    t.add_to(&p.stats);
    ok
}

fn walk(k: &Kernel, p: &PatchState, mut f: Frame, how: Arm, t: &mut impl Laps) -> bool {
    let Some(tables) = Tables::get(k) else { return false };
    let stack = A::current_stack();
    t.lap(Part::Unwind);
    let Some(stack) = stack else { return false };
    // `patch_leaf=return`: a frame that reaches no point is served at its return (every
    // path from it to a caller's points passes there) instead of walking on.
    let leaf_returns = k.config.patch_leaf == PatchLeaf::Return;
    for depth in 0..MAX_DEPTH {
        let plan = plan(p, &f, &tables);
        t.lap(Part::Lookup);
        let (points, redirect) = match plan {
            Plan::Arm { points, redirect } => (points, redirect),
            Plan::Up if leaf_returns => (&[][..], true),
            Plan::Up => {
                let up = A::unwind_step(&f, stack);
                t.lap(Part::Unwind);
                match up {
                    Some(s) => f = s.caller,
                    None => return false,
                }
                continue;
            }
        };
        p.stats.frames_walked.fetch_add(depth as u64, Ordering::Relaxed);
        p.stats.armed_at_ip.store(f.ip as u64, Ordering::Relaxed);
        let slot = if redirect { A::unwind_step(&f, stack).map(|s| s.ra_slot) } else { None };
        t.lap(Part::Unwind);
        return arm_points(k, p, points, slot, how, t);
    }
    false
}

/// Arms `points` (and redirects the return at `ra_slot`) as this CPU's event: the sites in
/// one batch (`Arch::arm_sites`: one hold of the sites' lock, one serialization). Nothing is
/// armed yet: `active` is clear (the interrupt exit arms only then; a redirected return
/// disarms first), and whoever clears it disarms in the same masked section.
fn arm_points(k: &Kernel, p: &PatchState, points: &[u32], ra_slot: Option<usize>, how: Arm, t: &mut impl Laps) -> bool {
    A::prefetch_sites(points);
    let mut a = p.armed.borrow();
    debug_assert!(a.n == 0 && a.ret.is_none(), "arming over an armed event");
    if points.len() > a.sites.len() {
        return false;
    }
    // a redirect alone (`patch_leaf=return`, or only a return ahead) makes no call into the
    // arch's patcher: no sites' lock, no serialization
    match if points.is_empty() { Ok(0) } else { A::arm_sites(points, how, k.config.patch_sync) } {
        Ok(0) => {}
        Ok(rounds) => {
            p.stats.sync_rounds.fetch_add(rounds as u64, Ordering::Relaxed);
        }
        Err(e) => {
            p.note_refused(e);
            return false; // the batch armed nothing
        }
    }
    for (slot, &idx) in a.sites.iter_mut().zip(points) {
        *slot = idx;
        crate::trace::event_in_with(k, || crate::trace::Event::SitePatched { site: A::site_addrs()[idx as usize] });
    }
    (a.n, a.how) = (points.len(), how);
    t.lap(Part::Poke);
    a.ret = ra_slot.and_then(|slot| Some((slot, A::redirect_return(slot)?)));
    t.lap(Part::Redirect);
    if a.n == 0 && a.ret.is_none() {
        return false; // nothing armed: the retry timer looks again
    }
    p.stats.sites_armed.fetch_add(a.n as u64, Ordering::Relaxed);
    p.stats.redirects.fetch_add(a.ret.is_some() as u64, Ordering::Relaxed);
    p.active.store(true, Ordering::Release);
    true
}

/// Undoes every arming in `a` (this CPU's, `p`'s): nothing to do, and no call made, when
/// nothing is armed (the usual case at an arming).
#[inline(always)]
fn disarm_locked(k: &Kernel, p: &PatchState, a: &mut Armed) {
    if a.n != 0 || a.ret.is_some() {
        disarm_armed(k, p, a);
    }
}

fn disarm_armed(k: &Kernel, p: &PatchState, a: &mut Armed) {
    let sites = &a.sites[..a.n];
    // Only sites this CPU armed are disarmed, and arming verified their bytes: a failure here
    // means someone else wrote the text, which the arch's patcher reports.
    let rounds = A::disarm_sites(sites, a.how, k.config.patch_sync).unwrap_or(0);
    if rounds != 0 {
        p.stats.sync_rounds.fetch_add(rounds as u64, Ordering::Relaxed);
    }
    for &idx in sites {
        crate::trace::event_in_with(k, || crate::trace::Event::SiteRestored { site: A::site_addrs()[idx as usize] });
    }
    a.n = 0;
    if let Some((slot, orig)) = a.ret.take() {
        A::restore_return(slot, orig);
    }
}

/// The event is served (`__schedule` picked a task) or abandoned (model switch): disarm
/// everything this CPU armed.
pub(crate) fn event_served(k: &Kernel) {
    let p = &k.this_cpu().model.patch;
    p.rt_resched.store(false, Ordering::Relaxed);
    // A load first: the usual switch has no event to serve, and then takes no locked
    // instruction (an event set after the load is served at the next switch, as one set
    // after a swap would be).
    if p.active.load(Ordering::Acquire) && p.active.swap(false, Ordering::AcqRel) {
        let t0 = A::cycles();
        disarm_locked(k, p, &mut p.armed.borrow());
        p.stats.disarm_ns.fetch_add(A::cycles() - t0, Ordering::Relaxed);
    }
}

/// How an armed site was met.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hit {
    Int3,
    Call,
}

/// What meeting an armed site means on this CPU.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fire {
    /// This CPU's event, and the task may be preempted here.
    Now,
    /// This CPU's event, but not here (a count is held, or nothing is due any more).
    NotHere,
    /// Not this CPU's event: another CPU (or instance) armed the site; pass on.
    Collateral,
}

/// May an armed point preempt now (this CPU's event pending, count zero, IRQs on)? A site met
/// with no event of this CPU's is collateral, counted by kind. Call with IRQs masked (the trap
/// handler runs so; the point hooks mask them around the call), so that the CPU read is the
/// one whose event is tested.
fn fire_decision(k: &Kernel, hit: Hit) -> Fire {
    let p = &k.raw_this_cpu().model.patch;
    if !p.active.load(Ordering::Acquire) {
        let c = if hit == Hit::Int3 { &p.stats.collateral_int3 } else { &p.stats.collateral_calls };
        c.fetch_add(1, Ordering::Relaxed);
        return Fire::Collateral;
    }
    p.stats.fired.fetch_add(1, Ordering::Relaxed);
    let now = preempt::need_resched() && preempt::preempt_count() == 0;
    p.stats.preemptions.fetch_add(now as u64, Ordering::Relaxed);
    if now {
        Fire::Now
    } else {
        Fire::NotHere
    }
}

/// The collateral hit's time since `t0` (`Arch::cycles`; the counter keeps cycles).
fn note_collateral_ns(k: &Kernel, t0: u64) {
    let c = A::cycles().saturating_sub(t0);
    k.raw_this_cpu().model.patch.stats.collateral_ns.fetch_add(c, Ordering::Relaxed);
}

/// A site called `rt_reschedule` under a patch model with nothing due on this CPU: counted as
/// collateral unless this CPU armed it (a point of its own event reached after the
/// reschedule was served elsewhere).
#[cold]
#[inline(never)]
pub(crate) fn call_passed() {
    let t0 = A::cycles();
    crate::instance::with_this_kernel(|k| {
        let fire = {
            let _irq = preempt::raw_local_irq_save(); // as in `point`: the CPU's event, read masked
            fire_decision(k, Hit::Call)
        };
        if fire == Fire::Collateral {
            note_collateral_ns(k, t0);
        }
    });
}

/// A redirected return arrived (task context, IRQs masked): the original return address, and
/// whether to preempt here (`preempt_schedule_irq`, the caller's to call) because the task may
/// be preempted; if it may not (a count is held, the function returned with IRQs masked
/// (`masked`: an IRQ-off section goes on in the caller), or the caller is foreign code), the
/// event has moved one frame up.
pub(crate) fn rt_return(sp: usize, bp: usize, masked: bool) -> (usize, bool) {
    let Some(k) = try_this_kernel() else {
        A::die("BUG: a redirected return outside any kernel: the original return address is lost");
    };
    let p = &k.this_cpu().model.patch;
    p.stats.returns.fetch_add(1, Ordering::Relaxed);
    // this CPU's record, if it is this return's (its slot is the word the `ret` popped)
    let ret = p.armed.borrow().ret.take_if(|(slot, _)| *slot == sp.wrapping_sub(8));
    let Some((_, orig)) = ret else {
        // An interrupt between the `ret` and the entry's masking served the event (a switch,
        // a model change): its disarm put the return address back in the popped slot.
        return match A::restored_return(sp) {
            Some(orig) => (orig, false),
            None => A::die("BUG: a redirected return that no CPU redirected: the original return address is lost"),
        };
    };
    if !p.active.load(Ordering::Acquire) || !preempt::need_resched() {
        return (orig, false);
    }
    let user = crate::cpu::mode() == crate::sched::rq::Mode::User;
    if preempt::preempt_count() == 0 && !masked && (user || A::text_contains(orig)) {
        p.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        return (orig, true);
    }
    p.stats.chases.fetch_add(1, Ordering::Relaxed);
    let how = {
        let mut a = p.armed.borrow();
        if p.active.swap(false, Ordering::AcqRel) {
            disarm_locked(&k, p, &mut a);
        }
        a.how
    };
    if !arm_from(&k, p, Frame { ip: orig, sp, bp, is_return_address: true }, how, A::cycles()) {
        p.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    (orig, false)
}

/// Where the running kernel's patch models serve an event whose interrupted function reaches
/// no point (`patch_leaf=`).
pub fn patch_leaf() -> PatchLeaf {
    crate::instance::this_kernel().config.patch_leaf
}

/// The running kernel's patch counters.
pub fn patch_stats() -> PatchStatsSnapshot {
    let mut sum = PatchStatsSnapshot::default();
    for c in crate::instance::this_kernel().cpus.iter() {
        sum.add(&c.model.patch.stats.snapshot());
    }
    sum
}

/// Sets the running kernel's patch counters back to 0 on every CPU: a measurement's start
/// (the bare-metal lab's, per workload). Counts from an event in flight may straddle it.
pub fn reset_patch_stats() {
    for c in crate::instance::this_kernel().cpus.iter() {
        c.model.patch.stats.reset();
    }
}

/// How many preemption-point sites are not in their idle form right now, read from the code
/// bytes (in the whole process: other kernel instances may have armed some).
pub fn sites_not_idle() -> usize {
    A::point_sites().iter().filter(|s| A::read_site(s.addr)[0] != A::OP_IDLE).count()
}

/// Arms the site at `addr` as `int3` (or `call`) outside any event, counted like an event's
/// arming: the cross-modifying torture's patchers, which arm and disarm sites other CPUs are
/// executing. Every arming must be undone by [`torture_disarm`] with the same `int3`.
/// Synchronised as the running kernel's `patch_sync=` says; returns the `SYNC_CORE` rounds.
#[cfg(feature = "torture")]
pub fn torture_arm(addr: usize, int3: bool) -> Result<u32, String> {
    torture_patch(addr, int3, A::arm_sites)
}

/// Undoes one [`torture_arm`]; returns the `SYNC_CORE` rounds.
#[cfg(feature = "torture")]
pub fn torture_disarm(addr: usize, int3: bool) -> Result<u32, String> {
    torture_patch(addr, int3, A::disarm_sites)
}

#[cfg(feature = "torture")]
type SyncedPatch = fn(&[u32], Arm, crate::config::PatchSync) -> Result<u32, PokeError>;

#[cfg(feature = "torture")]
fn torture_patch(addr: usize, int3: bool, patch: SyncedPatch) -> Result<u32, String> {
    let sync = crate::instance::this_kernel().config.patch_sync;
    let idx = A::site_index(addr).map_err(|e| e.to_string())?;
    let idx = u32::try_from(idx).map_err(|_| format!("site index {idx} does not fit a batch entry"))?;
    patch(&[idx], if int3 { Arm::Int3 } else { Arm::Call }, sync).map_err(|e| e.to_string())
}
