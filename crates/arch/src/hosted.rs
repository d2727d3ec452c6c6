//! [`Hosted`]: this crate as the kernel core's [`Arch`], item by item.
//!
//! **Mechanism.** Each trait item is one call into the module that implements it (the table
//! in the crate docs says which); nothing is decided here. Every function is `#[inline]` (the
//! per-CPU words and the IRQ mask are single instructions the core's hot paths inline).
//!
//! **Invariant.** This impl is the only way the core reaches this crate, but for the
//! `preempt_point!` macro; so [`Arch`]'s definition is the surface a second arch provides.

use crate::{clock, cpu, device, entry, fault, host, instance, irq, kallsyms, patch, percpu, ppoint, redirect};
use crate::{switch, text, timer, unwind};
use arch_api::{Arch, Arm, FixedBuf, Frame, Hooks, PanicReport, PatchSync, PokeError, Regs, Site, Step, Symbol};
use std::sync::Arc;

/// The hosted x86-64 Linux machine: host threads are CPUs, host signals are interrupts.
#[derive(Debug)]
pub struct Hosted;

impl Arch for Hosted {
    type CpuRegistration = cpu::CpuRegistration;
    type IrqRaiser = irq::IrqRaiser;
    type Timer = timer::HostTimer;
    type DeviceTimer = device::DeviceTimer;
    type TaskContext = switch::TaskContext;
    type CpuThread<R: Send + 'static> = std::thread::JoinHandle<R>;
    type Supervisor = std::thread::Thread;
    type RawIrqSpinLock = crate::sync::RawIrqSpinLock;
    type AllSitesClaim = patch::AllSitesClaim;

    fn cpu_register(hooks: &'static Hooks, cpu: u32) -> Result<cpu::CpuRegistration, String> {
        clock::calibrate(); // once per process: cycles_ns is signal-safe from here on
        let r = cpu::CpuRegistration::new(hooks).map_err(|e| e.to_string())?;
        r.set_cpu_number(cpu);
        Ok(r)
    }
    #[inline]
    fn cpu_raiser(reg: &cpu::CpuRegistration) -> irq::IrqRaiser {
        reg.raiser()
    }
    #[inline]
    fn irq_raise(raiser: &irq::IrqRaiser, line: u32) {
        raiser.raise(line)
    }
    fn start_cpu<R: Send + 'static>(
        name: String,
        body: impl FnOnce() -> R + Send + 'static,
    ) -> Result<std::thread::JoinHandle<R>, String> {
        host::start_cpu(name, body)
    }
    fn join_cpu<R: Send + 'static>(t: std::thread::JoinHandle<R>) -> Result<R, String> {
        host::join_cpu(t)
    }
    fn cpu_finished<R: Send + 'static>(t: &std::thread::JoinHandle<R>) -> bool {
        t.is_finished()
    }
    fn pin_current_cpu(host_cpu: usize) -> Result<(), String> {
        cpu::pin_current_thread(host_cpu).map_err(|e| e.to_string())
    }
    fn allowed_host_cpus() -> Vec<usize> {
        cpu::allowed_host_cpus()
    }
    #[inline]
    fn cpu_relax(spins: &mut u32) {
        cpu::cpu_relax(spins)
    }
    #[inline]
    fn safe_halt() {
        cpu::safe_halt()
    }
    #[inline]
    fn current_ip() -> usize {
        cpu::current_ip()
    }
    fn console_write(fd: i32, bytes: &[u8]) {
        cpu::console_write(fd, bytes)
    }
    fn die(msg: &str) -> ! {
        cpu::die(msg)
    }
    fn park_forever() -> ! {
        cpu::park_forever()
    }

    fn set_this_instance<T: Send + Sync + 'static>(i: Option<Arc<T>>) {
        instance::set(i)
    }
    #[inline(always)]
    fn with_this_instance<T: Send + Sync + 'static, R>(f: impl FnOnce(&Arc<T>) -> R) -> Option<R> {
        instance::with(f)
    }

    fn supervisor_handle() -> std::thread::Thread {
        host::supervisor_handle()
    }
    fn supervisor_wake(s: &std::thread::Thread) {
        s.unpark()
    }
    fn supervisor_sleep(timeout_ns: u64) {
        host::supervisor_sleep(timeout_ns)
    }
    fn set_panic_hook(hook: fn(&PanicReport<'_>) -> bool) {
        host::set_panic_hook(hook)
    }
    #[inline]
    fn catch_panic<R>(f: impl FnOnce() -> R) -> Option<R> {
        host::catch_panic(f)
    }

    #[inline(always)]
    fn local_irq_disable() {
        irq::local_irq_disable()
    }
    #[inline(always)]
    fn local_irq_enable() {
        irq::local_irq_enable()
    }
    #[inline(always)]
    fn local_irq_save() -> bool {
        irq::local_irq_save()
    }
    #[inline(always)]
    fn local_irq_restore(was_masked: bool) {
        irq::local_irq_restore(was_masked)
    }
    #[inline(always)]
    fn irqs_disabled() -> bool {
        irq::irqs_disabled()
    }
    #[inline]
    fn irq_exit_irqs_on(f: impl FnOnce()) {
        entry::irq_exit_irqs_on(f)
    }

    #[inline(always)]
    fn cpu_number() -> u32 {
        percpu::cpu_number()
    }
    #[inline(always)]
    fn preempt_count_raw() -> u32 {
        percpu::preempt_count_raw()
    }
    #[inline(always)]
    fn preempt_count_set_raw(v: u32) {
        percpu::preempt_count_set_raw(v)
    }
    #[inline(always)]
    fn preempt_count_add(v: u32) -> u32 {
        percpu::preempt_count_add(v)
    }
    #[inline(always)]
    fn preempt_count_sub(v: u32) -> u32 {
        percpu::preempt_count_sub(v)
    }
    #[inline(always)]
    fn preempt_count_clear_bits(bits: u32) {
        percpu::preempt_count_clear_bits(bits)
    }
    #[inline(always)]
    fn preempt_count_set_bits(bits: u32) {
        percpu::preempt_count_set_bits(bits)
    }
    #[inline(always)]
    fn core_flags() -> u32 {
        percpu::core_flags()
    }
    #[inline(always)]
    fn core_flags_set(bits: u32) {
        percpu::core_flags_set(bits)
    }
    #[inline(always)]
    fn core_flags_clear(bits: u32) {
        percpu::core_flags_clear(bits)
    }
    #[inline(always)]
    fn count_syscall() {
        percpu::count_syscall()
    }
    #[inline(always)]
    fn take_syscall_count() -> u64 {
        percpu::take_syscall_count()
    }
    #[inline(always)]
    fn touch_softlockup() {
        percpu::touch_softlockup()
    }
    #[inline(always)]
    fn take_softlockup_touch() -> bool {
        percpu::take_softlockup_touch()
    }
    #[inline(always)]
    fn in_irq() -> bool {
        percpu::in_irq()
    }
    #[inline]
    fn allocation_forbidden() -> bool {
        crate::alloc::allocation_forbidden()
    }

    #[inline(always)]
    fn now_ns() -> u64 {
        clock::now_ns()
    }
    fn cycles() -> u64 {
        clock::cycles()
    }
    fn cycles_ns(cycles: u64) -> u64 {
        clock::cycles_ns(cycles)
    }
    fn prefetch(addr: usize) {
        cpu::prefetch(addr)
    }
    fn cpu_stolen() -> u64 {
        clock::thread_preempted()
    }
    fn timer_new(line: u32) -> Result<timer::HostTimer, String> {
        timer::HostTimer::new(line).map_err(|e| e.to_string())
    }
    fn timer_set_periodic(t: &timer::HostTimer, period_ns: u64) {
        t.set_periodic(period_ns)
    }
    fn timer_set_oneshot_at(t: &timer::HostTimer, deadline_ns: u64) {
        t.set_oneshot_at(deadline_ns)
    }
    fn timer_disarm(t: &timer::HostTimer) {
        t.disarm()
    }
    fn timer_overrun(t: &timer::HostTimer) -> u32 {
        t.overrun()
    }
    fn device_timer_new(name: &str, raiser: irq::IrqRaiser, line: u32, host_cpus: Vec<usize>) -> device::DeviceTimer {
        device::DeviceTimer::new(name, raiser, line, host_cpus)
    }
    fn device_timer_fire_at(t: &device::DeviceTimer, deadline_ns: u64) {
        t.fire_at(deadline_ns)
    }

    fn task_context_new(
        name: &str,
        stack_size: usize,
        entry: fn(usize) -> !,
        arg: usize,
    ) -> Result<Arc<switch::TaskContext>, String> {
        switch::TaskContext::new(name, stack_size, entry, arg).map_err(|e| e.to_string())
    }
    fn task_context_for_current(name: &str) -> Arc<switch::TaskContext> {
        switch::TaskContext::for_current_thread(name)
    }
    fn current_name() -> FixedBuf<32> {
        switch::current_name()
    }
    #[inline]
    fn switch_to(prev: &switch::TaskContext, next: &switch::TaskContext) {
        switch::switch_to(prev, next)
    }
    fn switch_to_final(prev: Arc<switch::TaskContext>, next: Arc<switch::TaskContext>) -> ! {
        switch::switch_to_final(prev, next)
    }
    fn capture_here(trace: &mut [usize]) -> (Regs, usize) {
        fault::capture_here(trace)
    }

    #[inline]
    fn text_contains(ip: usize) -> bool {
        text::contains(ip)
    }
    fn text_load_bias() -> usize {
        text::load_bias()
    }
    fn text_bytes(start: usize, end: usize) -> Option<&'static [u8]> {
        text::bytes(start, end)
    }
    fn text_read_only(addr: usize, len: usize) -> Option<&'static [u8]> {
        text::read_only(addr, len)
    }
    const OP_IDLE: u8 = ppoint::OP_IDLE;
    fn point_sites() -> Vec<Site> {
        ppoint::sites()
    }
    fn patch_prepare() -> Result<(), PokeError> {
        patch::prepare()
    }
    fn patch_prepare_sync() -> Result<(), PokeError> {
        patch::prepare_sync()
    }
    fn site_addrs() -> &'static [usize] {
        patch::site_addrs()
    }
    fn site_index(addr: usize) -> Result<usize, PokeError> {
        patch::index_of(addr)
    }
    fn read_site(addr: usize) -> [u8; 5] {
        patch::read_site(addr)
    }
    fn prefetch_sites(idx: &[u32]) {
        patch::prefetch_sites(idx)
    }
    fn arm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
        patch::arm_synced(idx, how, sync)
    }
    fn disarm_sites(idx: &[u32], how: Arm, sync: PatchSync) -> Result<u32, PokeError> {
        patch::disarm_synced(idx, how, sync)
    }
    fn claim_all_sites() -> Result<patch::AllSitesClaim, PokeError> {
        patch::claim_all_sites()
    }
    fn release_all_sites(claim: patch::AllSitesClaim) -> Result<(), PokeError> {
        claim.release()
    }

    fn unwind_prepare() -> Result<(), String> {
        unwind::prepare()
    }
    fn prefetch_arming(ip: usize) {
        unwind::prefetch_for(ip);
        patch::prefetch_counts();
    }
    fn prefetch_arming_deeper(ip: usize) {
        unwind::prefetch_row_for(ip);
        redirect::prefetch_current_stack();
    }
    fn unwind_step(f: &Frame, stack: (usize, usize)) -> Option<Step> {
        unwind::step(f, stack)
    }
    fn backtrace(from: Frame, stack: (usize, usize), out: &mut [usize]) -> usize {
        unwind::backtrace(from, stack, out)
    }
    fn functions_in_text() -> Vec<(usize, usize)> {
        unwind::functions_in_text()
    }
    fn current_stack() -> Option<(usize, usize)> {
        redirect::current_stack()
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
    fn symbolize(addr: usize, is_return_address: bool) -> Symbol {
        kallsyms::lookup(addr, is_return_address)
    }
}
