//! [`Metal`]: the bare-metal machine as the kernel core's [`Arch`], item by item.
//!
//! **Mechanism.** Each item calls the module that implements it: [`crate::percpu`] (GS-based
//! per-CPU words), [`crate::irq`] (IF and the external vectors), [`crate::apic`] (timers,
//! raised lines), [`crate::clock`] (TSC), [`crate::switch`] (contexts), [`crate::text`] (text,
//! sites, patching), [`crate::unwind`] (the image's `.eh_frame`: frame steps, functions) and
//! [`crate::redirect`] (redirected returns). One CPU: `start_cpu` runs CPU 0's body at once on the calling context
//! (the boot stack, which becomes CPU 0's idle task) and refuses a second CPU; the supervisor
//! therefore finds CPU 0 finished when it first looks. What is not real yet returns the
//! trait's error or an empty answer, each listed in docs/BAREMETAL.md.
//!
//! **Invariant.** This impl is the only way the core reaches the machine, but for the
//! `preempt_point!` macro.

use crate::{apic, clock, hpet, irq, percpu, redirect, smp, switch, text, unwind};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arch_api::{Arch, Arm, FixedBuf, Frame, Hooks, PanicReport, PatchSync, PokeError, Regs, Site, Step, Symbol};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// How long a stopped AP waits for CPU 0's supervisor to report a panic and end the machine.
const PARK_PATIENCE_NS: u64 = 5_000_000_000;

/// The bare-metal x86-64 machine (see the module's description).
#[derive(Debug)]
pub struct Metal;

/// What a bare-metal method answers where the machine cannot do it yet.
pub const NOT_YET: &str = "not yet on bare metal";

/// A CPU's registration: its hooks are installed until it is dropped.
pub struct CpuRegistration(u32);
impl Drop for CpuRegistration {
    fn drop(&mut self) {
        percpu::this().hooks.set(None);
    }
}
/// Raises one CPU's lines (a self-IPI: CPU 0 only).
#[derive(Clone, Debug)]
pub struct IrqRaiser(u32);
/// A CPU-local timer: one slot of the multiplexed APIC timer.
pub struct Timer(apic::SlotId);
impl Drop for Timer {
    fn drop(&mut self) {
        apic::slot_free(self.0)
    }
}
/// A CPU's body: CPU 0's, already run on the calling context, or an AP's, running there.
pub enum CpuThread<R> {
    /// CPU 0's result.
    Ran(Option<R>),
    /// An AP's result, once it finished.
    On(Arc<smp::CpuResult<R>>),
}
/// The supervisor's handle (nothing to wake: it runs after CPU 0's body).
pub struct Supervisor;

/// How many CPUs `start_cpu` started (the next one's number).
static CPUS_STARTED: AtomicU32 = AtomicU32::new(0);
static PANIC_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Runs the core's panic hook, if one is set; the image's panic handler calls it first.
pub fn run_panic_hook(info: &core::panic::PanicInfo<'_>) {
    let h = PANIC_HOOK.load(Ordering::Relaxed);
    if h != 0 {
        // SAFETY: stored from a `fn(&PanicReport) -> bool` by `set_panic_hook`.
        let hook: fn(&PanicReport<'_>) -> bool =
            unsafe { core::mem::transmute::<usize, fn(&PanicReport<'_>) -> bool>(h) };
        let msg = info.message();
        hook(&PanicReport { location: info.location(), message: Some(&msg) });
    }
}

impl Arch for Metal {
    type CpuRegistration = CpuRegistration;
    type IrqRaiser = IrqRaiser;
    type Timer = Timer;
    type DeviceTimer = hpet::DeviceTimer;
    type TaskContext = switch::TaskContext;
    type CpuThread<R: Send + 'static> = CpuThread<R>;
    type Supervisor = Supervisor;
    type RawIrqSpinLock = crate::sync::RawIrqSpinLock;
    type AllSitesClaim = text::AllSitesClaim;

    fn cpu_register(hooks: &'static Hooks, cpu: u32) -> Result<CpuRegistration, String> {
        if cpu >= smp::cpus() {
            return Err(alloc::format!("CPU {cpu}: not running (boot with -smp {} or more)", cpu + 1));
        }
        percpu::set_cpu_number(cpu);
        percpu::this().hooks.set(Some(hooks));
        Ok(CpuRegistration(cpu))
    }
    fn cpu_raiser(reg: &CpuRegistration) -> IrqRaiser {
        IrqRaiser(reg.0)
    }
    fn irq_raise(raiser: &IrqRaiser, line: u32) {
        apic::raise_on(raiser.0, line)
    }
    fn start_cpu<R: Send + 'static>(
        name: String,
        body: impl FnOnce() -> R + Send + 'static,
    ) -> Result<CpuThread<R>, String> {
        let n = CPUS_STARTED.fetch_add(1, Ordering::AcqRel);
        if n == 0 {
            // CPU 0's body, on the calling context (the boot stack becomes its idle task),
            // under a saved context a panic returns to (`escape`): then `Ran(None)`
            return Ok(CpuThread::Ran(crate::escape::call(body)));
        }
        let result = Arc::new(smp::CpuResult::new());
        let r = Arc::clone(&result);
        smp::run_on(
            n,
            alloc::boxed::Box::new(move || {
                let v = body();
                r.put(v);
            }),
        )
        .map_err(|e| alloc::format!("{name}: {e}"))?;
        Ok(CpuThread::On(result))
    }
    fn join_cpu<R: Send + 'static>(cpu: CpuThread<R>) -> Result<R, String> {
        match cpu {
            CpuThread::Ran(mut r) => r.take().ok_or_else(|| "the CPU's result was taken".into()),
            CpuThread::On(r) => {
                let mut spins = 0;
                loop {
                    if let Some(v) = r.take() {
                        return Ok(v);
                    }
                    Self::cpu_relax(&mut spins);
                }
            }
        }
    }
    fn cpu_finished<R: Send + 'static>(cpu: &CpuThread<R>) -> bool {
        match cpu {
            CpuThread::Ran(_) => true,
            CpuThread::On(r) => r.done(),
        }
    }
    fn pin_current_cpu(_host_cpu: usize) -> Result<(), String> {
        Ok(())
    }
    fn allowed_host_cpus() -> Vec<usize> {
        alloc::vec![0]
    }
    fn cpu_relax(spins: &mut u32) {
        *spins = spins.saturating_add(1);
        core::hint::spin_loop()
    }
    fn safe_halt() {
        // SAFETY: `sti; hlt` (the `sti` shadow covers the `hlt`, so an interrupt pending now
        // ends the halt rather than being taken before it).
        unsafe {
            core::arch::asm!(
                "sti", // IF on; the next instruction runs before any interrupt is taken
                "hlt", // wait for an interrupt (taken on the way out of the halt)
                options(nomem, nostack),
            )
        }
    }
    fn current_ip() -> usize {
        let ip: usize;
        // SAFETY: reads the address of the next instruction.
        unsafe { core::arch::asm!("lea {}, [rip]", out(reg) ip, options(nomem, nostack, preserves_flags)) };
        ip
    }
    fn console_write(_fd: i32, bytes: &[u8]) {
        for chunk in bytes.utf8_chunks() {
            crate::serial::write_str(chunk.valid());
        }
    }
    fn die(msg: &str) -> ! {
        crate::kprintln!("DIE: {msg}");
        crate::serial::exit(crate::exit_codes::PANIC)
    }
    fn park_forever() -> ! {
        let cpu = percpu::cpu_number();
        crate::kprintln!("PANIC: CPU {cpu} stopped");
        // CPU 0 goes back to the context that called `start_cpu`, where the core's supervisor
        // prints its panic report (`escape`); it does not come back.
        crate::escape::escape();
        if cpu != 0 {
            // An AP waits, interrupts masked, for the supervisor's report and exit; if CPU 0
            // never stops (stuck with IRQs masked), it ends the machine itself.
            crate::irq::local_irq_disable();
            let end = clock::now_ns().saturating_add(PARK_PATIENCE_NS);
            while clock::now_ns() < end {
                core::hint::spin_loop();
            }
            crate::kprintln!("PANIC: CPU 0 did not reach the supervisor within 5 s");
        }
        crate::serial::exit(crate::exit_codes::PANIC)
    }

    fn set_this_instance<T: Send + Sync + 'static>(instance: Option<Arc<T>>) {
        percpu::set_instance(instance)
    }
    fn with_this_instance<T: Send + Sync + 'static, R>(f: impl FnOnce(&Arc<T>) -> R) -> Option<R> {
        percpu::with_instance(f)
    }

    fn supervisor_handle() -> Supervisor {
        Supervisor
    }
    fn supervisor_wake(_s: &Supervisor) {}
    fn supervisor_sleep(timeout_ns: u64) {
        let end = clock::now_ns() + timeout_ns;
        while clock::now_ns() < end {
            core::hint::spin_loop();
        }
    }
    fn set_panic_hook(hook: fn(&PanicReport<'_>) -> bool) {
        PANIC_HOOK.store(hook as usize, Ordering::Relaxed);
    }
    fn catch_panic<R>(f: impl FnOnce() -> R) -> Option<R> {
        // panic=abort: a panic never comes back here; the panic handler ends the machine.
        Some(f())
    }

    fn local_irq_disable() {
        irq::local_irq_disable()
    }
    fn local_irq_enable() {
        irq::local_irq_enable()
    }
    fn local_irq_save() -> bool {
        irq::local_irq_save()
    }
    fn local_irq_restore(was_masked: bool) {
        irq::local_irq_restore(was_masked)
    }
    fn irqs_disabled() -> bool {
        irq::irqs_disabled()
    }
    fn irq_exit_irqs_on(f: impl FnOnce()) {
        irq::irq_exit_irqs_on(f)
    }

    fn cpu_number() -> u32 {
        percpu::cpu_number()
    }
    fn preempt_count_raw() -> u32 {
        percpu::preempt_count_raw()
    }
    fn preempt_count_set_raw(v: u32) {
        percpu::preempt_count_set_raw(v)
    }
    fn preempt_count_add(v: u32) -> u32 {
        percpu::preempt_count_add(v)
    }
    fn preempt_count_sub(v: u32) -> u32 {
        percpu::preempt_count_sub(v)
    }
    fn preempt_count_clear_bits(bits: u32) {
        percpu::preempt_count_clear_bits(bits)
    }
    fn preempt_count_set_bits(bits: u32) {
        percpu::preempt_count_set_bits(bits)
    }
    fn core_flags() -> u32 {
        percpu::core_flags()
    }
    fn core_flags_set(bits: u32) {
        percpu::core_flags_set(bits)
    }
    fn core_flags_clear(bits: u32) {
        percpu::core_flags_clear(bits)
    }
    fn count_syscall() {
        percpu::count_syscall()
    }
    fn take_syscall_count() -> u64 {
        percpu::take_syscall_count()
    }
    fn touch_softlockup() {
        percpu::touch_softlockup()
    }
    fn take_softlockup_touch() -> bool {
        percpu::take_softlockup_touch()
    }
    fn in_irq() -> bool {
        percpu::in_irq()
    }
    fn allocation_forbidden() -> bool {
        percpu::in_irq()
    }

    fn now_ns() -> u64 {
        clock::now_ns()
    }
    fn cycles() -> u64 {
        crate::cpu::rdtsc()
    }
    fn cycles_ns(cycles: u64) -> u64 {
        clock::cycles_ns(cycles)
    }
    fn prefetch(addr: usize) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { core::arch::asm!("prefetcht0 [{}]", in(reg) addr, options(nostack, readonly, preserves_flags)) }
    }
    fn cpu_stolen() -> u64 {
        0
    }
    fn timer_new(line: u32) -> Result<Timer, String> {
        apic::slot_new(percpu::cpu_number(), line).map(Timer).map_err(String::from)
    }
    fn timer_set_periodic(t: &Timer, period_ns: u64) {
        apic::slot_arm(t.0, clock::now_ns() + period_ns, period_ns)
    }
    fn timer_set_oneshot_at(t: &Timer, deadline_ns: u64) {
        apic::slot_arm(t.0, deadline_ns, 0)
    }
    fn timer_disarm(t: &Timer) {
        apic::slot_disarm(t.0)
    }
    fn timer_overrun(t: &Timer) -> u32 {
        apic::slot_overrun(t.0)
    }
    fn device_timer_new(name: &str, raiser: IrqRaiser, line: u32, _host_cpus: Vec<usize>) -> hpet::DeviceTimer {
        // The HPET comparator through the IOAPIC to the raiser's CPU (`crate::hpet`); without
        // an HPET, a slot of the calling CPU's APIC timer raising the line there by IPI.
        hpet::device_timer_new(raiser.0, line).unwrap_or_else(|e| Self::die(&alloc::format!("device {name}: {e}")))
    }
    fn device_timer_fire_at(t: &hpet::DeviceTimer, deadline_ns: u64) {
        hpet::device_timer_fire_at(t, deadline_ns)
    }

    fn task_context_new(
        name: &str,
        stack_size: usize,
        entry: fn(usize) -> !,
        arg: usize,
    ) -> Result<Arc<switch::TaskContext>, String> {
        switch::TaskContext::new(name, stack_size, entry, arg)
    }
    fn task_context_for_current(name: &str) -> Arc<switch::TaskContext> {
        switch::TaskContext::for_current(name)
    }
    fn current_name() -> FixedBuf<32> {
        switch::current_name()
    }
    fn switch_to(prev: &switch::TaskContext, next: &switch::TaskContext) {
        switch::switch_to(prev, next)
    }
    fn switch_to_final(prev: Arc<switch::TaskContext>, next: Arc<switch::TaskContext>) -> ! {
        switch::switch_to_final(prev, next)
    }
    fn capture_here(_trace: &mut [usize]) -> (Regs, usize) {
        let (sp, bp): (u64, u64);
        // SAFETY: copies rsp and rbp.
        unsafe {
            core::arch::asm!(
                "mov {}, rsp", // the stack pointer
                "mov {}, rbp", // the frame pointer register
                out(reg) sp,
                out(reg) bp,
                options(nomem, nostack, preserves_flags),
            )
        };
        let mut gp = [0u64; 15];
        gp[6] = bp; // GP_NAMES' order: rax rbx rcx rdx rsi rdi rbp ...
        (Regs { rip: Self::current_ip() as u64, rsp: sp, rflags: 0, gp }, 0)
    }

    fn text_contains(ip: usize) -> bool {
        text::contains(ip)
    }
    fn text_load_bias() -> usize {
        0
    }
    fn text_bytes(start: usize, end: usize) -> Option<&'static [u8]> {
        text::bytes(start, end)
    }
    fn text_read_only(addr: usize, len: usize) -> Option<&'static [u8]> {
        text::read_only(addr, len)
    }
    const OP_IDLE: u8 = text::OP_IDLE;
    fn point_sites() -> Vec<Site> {
        text::sites()
    }
    fn patch_prepare() -> Result<(), PokeError> {
        // The text's writable alias is mapped at boot (`paging`) and the sites' table is
        // the linker's: nothing is left to set up. The tables of frames come from
        // `unwind_prepare`, which the core calls next.
        Ok(())
    }
    fn patch_prepare_sync() -> Result<(), PokeError> {
        Ok(()) // the rounds are NMIs (`sync_core`): nothing to set up
    }
    fn site_addrs() -> &'static [usize] {
        text::site_addrs()
    }
    fn site_index(addr: usize) -> Result<usize, PokeError> {
        text::index_of(addr)
    }
    fn read_site(addr: usize) -> [u8; 5] {
        text::read_site(addr)
    }
    fn prefetch_sites(_idx: &[u32]) {}
    fn arm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
        text::arm(idx, how, sync)
    }
    fn disarm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
        text::disarm(idx, how, sync)
    }
    fn claim_all_sites() -> Result<text::AllSitesClaim, PokeError> {
        text::claim_all()
    }
    fn release_all_sites(claim: text::AllSitesClaim) -> Result<(), PokeError> {
        text::release_all(claim)
    }

    fn unwind_prepare() -> Result<(), String> {
        unwind::prepare()
    }
    fn prefetch_arming(ip: usize) {
        unwind::prefetch_for(ip);
    }
    fn prefetch_arming_deeper(ip: usize) {
        unwind::prefetch_row_for(ip);
        let ctx = percpu::this().current.get(); // the running context: its stack bounds
        if ctx != 0 {
            Self::prefetch(ctx);
        }
    }
    fn unwind_step(f: &Frame, stack: (usize, usize)) -> Option<Step> {
        unwind::step(f, stack)
    }
    fn backtrace(from: Frame, stack: (usize, usize), out: &mut [usize]) -> usize {
        unwind::backtrace(from, stack, out)
    }
    fn functions_in_text() -> Vec<(usize, usize)> {
        unwind::functions()
    }
    fn current_stack() -> Option<(usize, usize)> {
        switch::current_stack()
    }
    fn redirect_return(slot: usize) -> Option<usize> {
        redirect::redirect_return(slot)
    }
    fn restored_return(sp: usize) -> Option<usize> {
        redirect::restored_return(sp)
    }
    fn restore_return(slot: usize, orig: usize) -> bool {
        redirect::restore_return(slot, orig)
    }
    fn symbolize(addr: usize, _is_return_address: bool) -> Symbol {
        Symbol { addr, function: None, offset: 0, size: 0, file: None, line: None }
    }
}
