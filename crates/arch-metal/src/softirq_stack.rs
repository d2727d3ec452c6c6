//! `image.run=softirq-stack`: a softirq's deep call chain at an interrupt's exit, with the
//! tick's interrupts nesting in it, comes back intact.
//!
//! **Mechanism.** A device's handler schedules a tasklet, which the core runs at the
//! interrupt's exit with IF set, on the instance's last CPU (CPU 1 with `cpus=2` and QEMU's
//! `-smp 2`: an AP's softirq stack and IST stacks) (`arch_metal::irq::irq_exit_irqs_on`, `bh=classic`). The
//! tasklet descends [`FRAMES`] non-inlined frames ([`frame`]), each filling an array of
//! [`WORDS`] quadwords (256 bytes) on its stack with a pattern of its depth and index, kept in
//! memory by `core::hint::black_box`. The deepest frame spins until [`NESTS`] interrupts have
//! nested in the window (the machine's `nested` count) or [`SPIN_NS`] passed; on the way back
//! each frame counts the words of its array that no longer hold the pattern. A nested
//! interrupt that pushed its frame, vector state or handler's frames over the chain shows as
//! corrupted words, or as a return through a clobbered return address (an `EXCEPTION` exit).
//! The init prints `{"test":"softirq_stack","cpu":K,"frames":8,"words":256,"nested_irqs":N,
//! "corrupted":C,"returned":true,"ok":...}`.
//!
//! **Invariant.** `ok` only if the tasklet ran once, on the device's CPU, at least one interrupt nested while the
//! chain was live, no word changed and the chain returned through every frame.

use alloc::sync::Arc;
use arch_metal::kprintln;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::{BhMode, PreemptModel};

/// The frames of the chain.
const FRAMES: usize = 8;
/// The quadwords of each frame's array (256 bytes).
const WORDS: usize = 32;
/// The nested interrupts the deepest frame waits for.
const NESTS: u64 = 3;
/// The longest the deepest frame spins, whatever nested.
const SPIN_NS: u64 = 20_000_000;
/// The 1 ms sleeps the init waits for the tasklet, at most.
const WAIT_MS: u64 = 1000;

/// The words of the chain that lost their pattern.
static CORRUPTED: AtomicU64 = AtomicU64::new(0);
/// The interrupts that nested while the deepest frame spun.
static NESTED: AtomicU64 = AtomicU64::new(0);
/// Set once the chain returned to the tasklet's body.
static RETURNED: AtomicBool = AtomicBool::new(false);
/// The CPU the tasklet ran on.
static RAN_ON: AtomicU64 = AtomicU64::new(u64::MAX);

/// The pattern of word `i` of the frame at `depth`.
fn pattern(depth: usize, i: usize) -> u64 {
    0x5AF7_C0DE_0000_0000 ^ ((depth as u64) << 16) ^ i as u64
}

/// One frame of the chain: its array filled, the next frame called (or the spin at the
/// bottom), then the array checked. Returns the corrupted words of this frame and those below.
#[inline(never)]
fn frame(depth: usize) -> u64 {
    let mut words = [0u64; WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = pattern(depth, i);
    }
    // The array's address escapes: it lives in memory, and is read back from memory below.
    core::hint::black_box(&mut words);
    let below = if depth + 1 < FRAMES { frame(depth + 1) } else { spin_while_nesting() };
    core::hint::black_box(&mut words);
    let bad = words.iter().enumerate().filter(|&(i, w)| *w != pattern(depth, i)).count() as u64;
    core::hint::black_box(below + bad)
}

/// The deepest frame's wait: until [`NESTS`] interrupts nested in the window, or [`SPIN_NS`].
#[inline(never)]
fn spin_while_nesting() -> u64 {
    let nested0 = arch_metal::stats::irq_figures().3;
    let end = kernel::time::now_ns() + SPIN_NS;
    while arch_metal::stats::irq_figures().3 - nested0 < NESTS && kernel::time::now_ns() < end {
        core::hint::spin_loop();
    }
    NESTED.store(arch_metal::stats::irq_figures().3 - nested0, Ordering::Relaxed);
    0
}

/// The init of `image.run=softirq-stack` (see the module's description).
pub(crate) fn init(_model: PreemptModel, bh: BhMode) -> i64 {
    if bh == BhMode::Threaded {
        kprintln!(
            "{{\"boot_error\":\"image.run=softirq-stack runs its tasklet at an interrupt's exit: use bh=classic (bh=threaded runs it in ksoftirqd)\"}}"
        );
        return 1;
    }
    let cpu = kernel::smp::num_cpus() - 1;
    let t = kernel::tasklet::Tasklet::new("deep-chain", || {
        RAN_ON.store(kernel::raw_smp_processor_id() as u64, Ordering::Relaxed);
        CORRUPTED.store(frame(0), Ordering::Relaxed);
        RETURNED.store(true, Ordering::Release);
    });
    let t2 = Arc::clone(&t);
    let dev = kernel::device::Device::register_on(cpu, "softirq-stack-dev", move || {
        kernel::tasklet::tasklet_schedule(&t2);
    });
    dev.raise();
    let mut waited = 0;
    while !RETURNED.load(Ordering::Acquire) && waited < WAIT_MS {
        kernel::time::sleep_ns(1_000_000);
        waited += 1;
    }
    let (nested, corrupted) = (NESTED.load(Ordering::Relaxed), CORRUPTED.load(Ordering::Relaxed));
    let returned = RETURNED.load(Ordering::Acquire);
    let ran_on = RAN_ON.load(Ordering::Relaxed);
    let ok = t.runs() == 1 && ran_on == cpu as u64 && returned && nested >= 1 && corrupted == 0;
    kprintln!(
        "{{\"test\":\"softirq_stack\",\"cpu\":{ran_on},\"frames\":{FRAMES},\"words\":{},\"tasklet_runs\":{},\"nested_irqs\":{nested},\"corrupted\":{corrupted},\"returned\":{returned},\"ok\":{ok}}}",
        FRAMES * WORDS,
        t.runs()
    );
    i64::from(!ok)
}
