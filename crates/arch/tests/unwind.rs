//! The CFI unwinder: tables, real unwinds through our frames, libc's frames, an rbp-based frame and
//! a call that ends its function, from a signal handler too, and the refusals (unknown ip, bounds
//! excluding the CFA).

use arch::unwind::{function_of, functions_in_text, prepare, step, Frame};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The current thread's stack bounds `[lo, hi)`.
fn stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_getattr_np initialises `attr` for the calling thread, which is destroyed
    // after pthread_attr_getstack has read the bounds from it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size) = (std::ptr::null_mut(), 0);
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// The registers at this point of the calling function, as an interrupted frame.
macro_rules! here {
    () => {{
        let (ip, sp, bp): (usize, usize, usize);
        // SAFETY: reads rip, rsp and rbp into registers; touches no memory.
        unsafe {
            std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
                ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp, options(nomem, nostack, preserves_flags))
        };
        Frame::interrupted(ip, sp, bp)
    }};
}

/// Caller ips from `f` up, at most `out.len()` of them; returns how many.
fn walk(mut f: Frame, bounds: (usize, usize), out: &mut [usize]) -> usize {
    for (n, slot) in out.iter_mut().enumerate() {
        let Some(s) = step(&f, bounds) else { return n };
        // SAFETY: step read the return address from ra_slot, inside the live stack.
        assert_eq!(unsafe { *(s.ra_slot as *const usize) }, s.caller.ip);
        assert!(s.caller.is_return_address && s.caller.sp > f.sp);
        *slot = s.caller.ip;
        f = s.caller;
    }
    out.len()
}

fn contains(range: Option<(usize, usize)>, ip: usize) -> bool {
    range.is_some_and(|(lo, hi)| ip > lo && ip <= hi)
}

#[test]
fn tables_cover_our_functions_and_libc() {
    prepare().unwrap();
    prepare().unwrap(); // idempotent
    let f = outer as fn(&mut [usize; 8]) as usize;
    let (lo, hi) = function_of(f).expect("outer has an FDE");
    assert!(lo <= f && f < hi);
    let fns = functions_in_text();
    assert!(fns.len() > 100, "{} functions", fns.len());
    assert!(fns.windows(2).all(|w| w[0].0 < w[0].1 && w[0].1 <= w[1].0), "sorted, non-overlapping");
    assert!(fns.contains(&(lo, hi)));
    arch::text::init();
    let getpid = libc::getpid as *const () as usize;
    assert!(!arch::text::contains(getpid));
    assert!(function_of(getpid).is_some_and(|(lo, hi)| lo <= getpid && getpid < hi), "libc has CFI");
    assert!(!fns.contains(&function_of(getpid).unwrap()), "libc is not our text");
}

#[inline(never)]
fn inner(out: &mut [usize; 8]) {
    let f = here!();
    let n = walk(f, stack_bounds(), out);
    assert!(n >= 3, "walked {n} frames");
    assert!(contains(function_of(inner as fn(&mut [usize; 8]) as usize), f.ip));
}

#[inline(never)]
fn middle(out: &mut [usize; 8]) {
    inner(black_box(out));
    black_box(out);
}

#[inline(never)]
fn outer(out: &mut [usize; 8]) {
    middle(black_box(out));
    black_box(out);
}

#[test]
fn steps_up_through_our_frames_in_order() {
    prepare().unwrap();
    let mut ips = [0; 8];
    outer(&mut ips);
    assert!(contains(function_of(middle as fn(&mut [usize; 8]) as usize), ips[0]), "{ips:x?}");
    assert!(contains(function_of(outer as fn(&mut [usize; 8]) as usize), ips[1]), "{ips:x?}");
    assert!(contains(function_of(steps_up_through_our_frames_in_order as fn() as usize), ips[2]), "{ips:x?}");
}

#[test]
fn walk_ends_at_the_thread_entry() {
    prepare().unwrap();
    let mut ips = [0; 256];
    let n = walk(here!(), stack_bounds(), &mut ips);
    assert!(n > 2 && n < ips.len(), "walked {n} frames");
}

#[test]
fn refuses_unknown_ips_and_out_of_bounds_reads() {
    prepare().unwrap();
    let f = here!();
    assert!(step(&f, stack_bounds()).is_some());
    assert!(step(&Frame::interrupted(8, f.sp, f.bp), stack_bounds()).is_none(), "no object there");
    assert!(step(&f, (f.sp, f.sp + 8)).is_none(), "the return address lies above the bounds");
    assert!(step(&f, (0, 0)).is_none());
    assert!(function_of(8).is_none());
}

static SORT_IPS: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];
static SORT_DONE: AtomicBool = AtomicBool::new(false);

extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    if !SORT_DONE.swap(true, Ordering::Relaxed) {
        let mut ips = [0; 16];
        let n = walk(here!(), stack_bounds(), &mut ips);
        for (slot, ip) in SORT_IPS.iter().zip(&ips[..n]) {
            slot.store(*ip, Ordering::Relaxed);
        }
    }
    // SAFETY: qsort passes pointers to two elements of the u32 array below.
    unsafe { (*(a as *const u32)).cmp(&*(b as *const u32)) as libc::c_int }
}

#[inline(never)]
fn sort_through_libc() {
    let mut v: [u32; 8] = [5, 3, 7, 1, 8, 2, 6, 4];
    // SAFETY: `v` holds 8 elements of 4 bytes; `compare` matches qsort's comparator type.
    unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(compare)) };
    black_box(&v);
}

#[test]
fn steps_through_libc_frames() {
    prepare().unwrap();
    arch::text::init();
    sort_through_libc();
    let ips: Vec<usize> = SORT_IPS.iter().map(|a| a.load(Ordering::Relaxed)).take_while(|&ip| ip != 0).collect();
    let ours = ips.iter().position(|&ip| contains(function_of(sort_through_libc as fn() as usize), ip));
    let ours = ours.unwrap_or_else(|| panic!("never reached sort_through_libc: {ips:x?}"));
    assert!(ours >= 1 && ips[..ours].iter().all(|&ip| !arch::text::contains(ip)), "libc frames first: {ips:x?}");
}

static SPINNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static STACK: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
static SIG_IPS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: an SA_SIGINFO handler's third argument is the interrupted ucontext_t.
    let g = unsafe { &(*(uc as *const libc::ucontext_t)).uc_mcontext.gregs };
    let reg = |r: libc::c_int| g[r as usize] as usize;
    let mut f = Frame::interrupted(reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    let bounds = (STACK[0].load(Ordering::Relaxed), STACK[1].load(Ordering::Relaxed));
    for slot in &SIG_IPS {
        let Some(s) = step(&f, bounds) else { break };
        slot.store(s.caller.ip, Ordering::Relaxed);
        f = s.caller;
    }
    STOP.store(true, Ordering::Release);
}

#[inline(never)]
fn spin() {
    SPINNING.store(true, Ordering::Release);
    while !STOP.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
}

#[inline(never)]
fn spin_caller() {
    spin();
    black_box(());
}

#[test]
fn steps_from_a_signal_handler() {
    use std::os::unix::thread::JoinHandleExt;
    prepare().unwrap();
    // SAFETY: installs an SA_SIGINFO handler for SIGUSR2, which no other test uses.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    let t = std::thread::spawn(|| {
        let (lo, hi) = stack_bounds();
        STACK[0].store(lo, Ordering::Relaxed);
        STACK[1].store(hi, Ordering::Relaxed);
        spin_caller();
    });
    while !SPINNING.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    // SAFETY: the thread is alive (spinning until the handler runs) and SIGUSR2 is handled.
    assert_eq!(unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR2) }, 0);
    t.join().unwrap();
    let ip = SIG_IPS[0].load(Ordering::Relaxed);
    assert!(contains(function_of(spin_caller as fn() as usize), ip), "interrupted spin returns into spin_caller");
}

// A frame whose CFA rule is `rbp + 16` (as with frame pointers), that moves rsp away from the CFA
// and calls the function in rdi.
std::arch::global_asm!(
    ".p2align 4",
    ".globl unwind_test_rbp_frame",
    "unwind_test_rbp_frame:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "sub rsp, 64",
    "call rdi",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
);

extern "C" {
    fn unwind_test_rbp_frame(callback: extern "C" fn());
}

static RBP_IPS: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

extern "C" fn from_rbp_frame() {
    let mut ips = [0; 2];
    walk(here!(), stack_bounds(), &mut ips);
    for (slot, ip) in RBP_IPS.iter().zip(ips) {
        slot.store(ip, Ordering::Relaxed);
    }
}

#[inline(never)]
fn call_rbp_frame() {
    // SAFETY: the assembly function keeps the ABI (callee-saved registers, stack alignment).
    unsafe { unwind_test_rbp_frame(from_rbp_frame) };
    black_box(());
}

#[test]
fn steps_through_an_rbp_based_frame() {
    prepare().unwrap();
    call_rbp_frame();
    let ips = RBP_IPS.each_ref().map(|a| a.load(Ordering::Relaxed));
    assert!(contains(function_of(unwind_test_rbp_frame as *const () as usize), ips[0]), "{ips:x?}");
    assert!(contains(function_of(call_rbp_frame as fn() as usize), ips[1]), "{ips:x?}");
}

// A call that is its function's last instruction (as before a `noreturn` call's end): its return
// address is the first byte of the next function, whose own row (CFA = rsp + 8) is wrong for this
// frame. Only the look-up of `ip - 1` finds the right row (CFA = rsp + 32).
std::arch::global_asm!(
    ".p2align 4",
    ".globl unwind_test_call_at_end",
    "unwind_test_call_at_end:",
    ".cfi_startproc",
    "sub rsp, 24",
    ".cfi_def_cfa_offset 32",
    "call rdi",
    ".cfi_endproc",
    ".globl unwind_test_next_function",
    "unwind_test_next_function:",
    ".cfi_startproc",
    "add rsp, 24",
    "ret",
    ".cfi_endproc",
);

extern "C" {
    fn unwind_test_call_at_end(callback: extern "C" fn());
    fn unwind_test_next_function();
}

static END_IPS: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

extern "C" fn from_call_at_end() {
    let mut ips = [0; 2];
    walk(here!(), stack_bounds(), &mut ips);
    for (slot, ip) in END_IPS.iter().zip(ips) {
        slot.store(ip, Ordering::Relaxed);
    }
}

#[inline(never)]
fn call_at_end() {
    // SAFETY: the assembly pair keeps the ABI: it returns through the next function's epilogue.
    unsafe { unwind_test_call_at_end(from_call_at_end) };
    black_box(());
}

#[test]
fn return_addresses_are_looked_up_at_the_call() {
    prepare().unwrap();
    call_at_end();
    let ips = END_IPS.each_ref().map(|a| a.load(Ordering::Relaxed));
    assert_eq!(ips[0], unwind_test_next_function as *const () as usize, "the return address ends the caller");
    assert!(contains(function_of(call_at_end as fn() as usize), ips[1]), "{ips:x?}");
}
