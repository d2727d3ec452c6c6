//! A backtrace taken inside `preempt_schedule_irq`, reached through the preemption trampoline,
//! walks through the trampoline into the function the interrupt found spinning and on into its
//! caller: with libgcc's unwinder over `.eh_frame` (`std::backtrace`) and with the project's
//! own [`arch::unwind::step`]. One test in its own binary: it installs the CPU's signal
//! handlers and registers a CPU, which no other test of this process does.

use arch::cpu::CpuRegistration;
use arch::switch::TaskContext;
use arch::unwind::{function_of, step, Frame};
use arch::{Hooks, IrqExit, IrqFrame};
use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

const LINE: u32 = 3;

extern "C" {
    /// The preemption trampoline (a global symbol of the arch crate; only its address is used).
    fn atomkernel_preempt_trampoline();
}

static HOOKS: Hooks = Hooks {
    irq: on_irq,
    preempt_schedule_irq: on_preempt,
    rt_reschedule: |_| {},
    preempt_schedule: || {},
    point_trap: |_, _| IrqExit::Resume,
    rt_return: |_, _, _| arch::cpu::die("no return is redirected in this test"),
    fault: |_| false,
    oops_exit: || arch::cpu::die("no task is killed in this test"),
    alloc_in_irq: || arch::cpu::die("nothing allocates in interrupt context in this test"),
};

/// Set by `on_preempt` once it has captured both walks; ends the spin.
static CAPTURED: AtomicBool = AtomicBool::new(false);
/// The interrupted rip and rsp the trampoline was injected for.
static INTERRUPTED: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
/// What libgcc's unwinder saw.
static LIBGCC: Mutex<Option<Backtrace>> = Mutex::new(None);
/// What `arch::unwind::step` saw: (ip, sp) of each caller, from `on_preempt` up.
static STEPS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

thread_local! {
    /// The spinner's context and the CPU thread's own, for the spinner's final switch.
    static CONTEXTS: RefCell<Option<(Arc<TaskContext>, Arc<TaskContext>)>> = const { RefCell::new(None) };
}

fn range_of(f: usize) -> (usize, usize) {
    function_of(f).expect("the function has an FDE")
}

fn contains((lo, hi): (usize, usize), ip: usize) -> bool {
    ip >= lo && ip < hi
}

/// Interrupts only the spinning function ask for preemption, so the backtrace has one place
/// to reach; not at its first byte, which std's symbolizer (it looks up `ip - 1` for every
/// frame, a return address's convention) would name as the function before it. Runs from the
/// signal handler: no allocation.
fn on_irq(_lines: u64, frame: &IrqFrame) -> IrqExit {
    let (lo, hi) = range_of(spin_until_preempted as fn() as usize);
    let spinning = !frame.replayed && contains((lo + 1, hi), frame.ip);
    if !spinning || CAPTURED.load(Ordering::Acquire) {
        return IrqExit::Resume;
    }
    INTERRUPTED[0].store(frame.ip, Ordering::Relaxed);
    INTERRUPTED[1].store(frame.sp, Ordering::Relaxed);
    IrqExit::Preempt
}

/// `preempt_schedule_irq`, in task context on the spinner's stack, called by the trampoline.
#[inline(never)]
fn on_preempt() {
    *LIBGCC.lock().unwrap() = Some(Backtrace::force_capture());
    let (ip, sp, bp): (usize, usize, usize);
    // SAFETY: reads rip, rsp and rbp into registers; touches no memory.
    unsafe {
        std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp, options(nomem, nostack, preserves_flags))
    };
    let bounds = arch::redirect::current_stack().expect("a task is running");
    let mut f = Frame::interrupted(ip, sp, bp);
    let mut steps = Vec::new();
    while let Some(s) = step(&f, bounds).filter(|_| steps.len() < 32) {
        steps.push((s.caller.ip, s.caller.sp));
        f = s.caller;
    }
    *STEPS.lock().unwrap() = steps;
    CAPTURED.store(true, Ordering::Release);
}

/// The function the interrupt finds: spins with IRQs on until `on_preempt` has run.
#[inline(never)]
fn spin_until_preempted() {
    while !CAPTURED.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
}

/// Its caller, which the walks must reach too (past the interrupted frame).
#[inline(never)]
fn spinner_body() {
    spin_until_preempted();
    black_box(());
}

fn spinner(_: usize) -> ! {
    arch::irq::local_irq_enable();
    spinner_body();
    arch::irq::local_irq_disable();
    let (me, cpu) = CONTEXTS.with(|c| c.borrow_mut().take()).expect("contexts set before the switch");
    arch::switch::switch_to_final(me, cpu)
}

#[test]
fn a_backtrace_in_preempt_schedule_irq_reaches_the_interrupted_function() {
    arch::unwind::prepare().unwrap();
    arch::text::init();
    let (tx, rx) = mpsc::channel();
    let cpu = std::thread::spawn(move || {
        let registration = CpuRegistration::new(&HOOKS).unwrap();
        tx.send(registration.raiser()).unwrap();
        let me = TaskContext::for_current_thread("backtrace-cpu");
        let task = TaskContext::new("spinner", 1 << 20, spinner, 0).unwrap();
        CONTEXTS.with(|c| *c.borrow_mut() = Some((task.clone(), me.clone())));
        arch::switch::switch_to(&me, &task); // back when the spinner has finished
        drop(registration);
    });
    let raiser = rx.recv().unwrap();
    // Until an interrupt has found the spinner spinning (it may find the CPU elsewhere first).
    while !CAPTURED.load(Ordering::Acquire) && !cpu.is_finished() {
        raiser.raise(LINE);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    cpu.join().unwrap();

    let (ip, sp) = (INTERRUPTED[0].load(Ordering::Relaxed), INTERRUPTED[1].load(Ordering::Relaxed));
    let spin = range_of(spin_until_preempted as fn() as usize);
    let body = range_of(spinner_body as fn() as usize);
    let trampoline = range_of(atomkernel_preempt_trampoline as *const () as usize);

    // arch::unwind::step: ... -> the trampoline -> exactly the interrupted rip and rsp (a
    // signal frame: the rip is not a return address) -> the spinner's caller.
    let steps = STEPS.lock().unwrap().clone();
    let at = steps.iter().position(|&(i, _)| contains(trampoline, i - 1));
    let at = at.unwrap_or_else(|| panic!("step never reached the trampoline: {steps:x?}"));
    assert_eq!(steps.get(at + 1), Some(&(ip, sp)), "the trampoline's caller is the interrupted frame: {steps:x?}");
    assert!(contains(spin, ip));
    assert!(steps.get(at + 2).is_some_and(|&(i, _)| contains(body, i - 1)), "then its caller: {steps:x?}");

    // libgcc's unwinder (std::backtrace), symbolized: the same three frames in that order.
    let text = format!("{:?}", LIBGCC.lock().unwrap().take().unwrap());
    let find = |name: &str| text.find(name).unwrap_or_else(|| panic!("no {name} in the backtrace:\n{text}"));
    let (t, s, b) = (find("atomkernel_preempt_trampoline"), find("spin_until_preempted"), find("spinner_body"));
    assert!(find("on_preempt") < t && t < s && s < b, "out of order:\n{text}");
}
