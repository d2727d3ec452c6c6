//! The torture's asm has right CFI: a signal that lands in the middle of its spin (every
//! register holding a pattern, the asm's own words on the stack) can be unwound, with the arch
//! layer's unwinder, up through the torture to the function that called it.

use arch::unwind::{self, Frame};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The direction flag: set only inside the torture's asm (between its `popfq` and `cld`).
const DF: i64 = 1 << 10;
const DEPTH: usize = 16;

static STACK: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static WALKED: AtomicBool = AtomicBool::new(false);
static IPS: [AtomicUsize; DEPTH] = [const { AtomicUsize::new(0) }; DEPTH];

/// The bounds of the calling thread's stack.
fn stack_bounds() -> (usize, usize) {
    // SAFETY: a zeroed pthread_attr_t is a valid out-parameter for pthread_getattr_np, which
    // fills it for the calling thread; it is destroyed after the read.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// Walks from the interrupted context if it is inside the torture's asm (DF set), once.
extern "C" fn on_sigusr1(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: an SA_SIGINFO handler's third argument is the interrupted ucontext_t.
    let g = unsafe { &(*(uc as *const libc::ucontext_t)).uc_mcontext.gregs };
    if g[libc::REG_EFL as usize] & DF == 0 || WALKED.load(Ordering::Relaxed) {
        return;
    }
    let stack = (STACK[0].load(Ordering::Relaxed), STACK[1].load(Ordering::Relaxed));
    let reg = |r: libc::c_int| g[r as usize] as usize;
    let mut f = Frame::interrupted(reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    for slot in &IPS {
        slot.store(f.ip, Ordering::Relaxed);
        match unwind::step(&f, stack) {
            Some(s) => f = s.caller,
            None => break,
        }
    }
    WALKED.store(true, Ordering::Relaxed);
}

/// The torture's caller: the walk must reach this function.
#[inline(never)]
fn torture_caller(seed: u64) {
    hostlab::torture::check_round(seed, 50_000).expect("registers survive a signal");
    std::hint::black_box(seed);
}

#[test]
fn a_walk_from_inside_the_torture_reaches_its_caller() {
    unwind::prepare().expect("CFI tables");
    let (lo, hi) = stack_bounds();
    STACK[0].store(lo, Ordering::Relaxed);
    STACK[1].store(hi, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO signature and only
    // reads the context, calls the signal-safe unwinder and stores atomics. SIGUSR1 is sent
    // only to this test's thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: no preconditions; the id stays valid: the sender is joined before this returns.
    let me = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sender = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            // SAFETY: `me` is alive (joined below) and SIGUSR1 has our handler.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seed = 0;
    while !WALKED.load(Ordering::Relaxed) && Instant::now() < deadline {
        torture_caller(seed);
        seed += 1;
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(WALKED.load(Ordering::Relaxed), "no signal landed inside the torture's asm");
    let ips: Vec<usize> = IPS.iter().map(|s| s.load(Ordering::Relaxed)).take_while(|&ip| ip != 0).collect();
    let caller = unwind::function_of(torture_caller as *const () as usize).expect("the caller's FDE");
    let functions: Vec<_> =
        ips.iter().enumerate().map(|(i, &ip)| unwind::function_of(ip - usize::from(i > 0))).collect();
    assert!(functions.contains(&Some(caller)), "the walk {ips:x?} did not reach torture_caller {caller:x?}");
}
