//! Unit tests of `torture`.

use super::*;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

fn supported() -> impl Iterator<Item = VectorIsa> {
    VectorIsa::ALL.into_iter().filter(|isa| isa.is_supported())
}

fn names(m: &[Mismatch]) -> Vec<&str> {
    m.iter().map(|m| m.what.as_str()).collect()
}

#[test]
fn pattern_is_distinct_per_register_and_seed() {
    assert_eq!((FLAGS_MASK, PATTERN_RFLAGS), (0xCD5, 0xED7));
    assert_eq!(RegState::pattern(3), RegState::pattern_for(3, vector_isa()));
    for isa in VectorIsa::ALL {
        let (regs, lanes, kregs, _) = isa.shape();
        let mut seen = HashSet::new();
        for seed in 0..16 {
            let p = RegState::pattern_for(seed, isa);
            assert_eq!(p, RegState::pattern_for(seed, isa), "deterministic");
            assert_eq!((p.gpr[RCX], p.rflags), (0, PATTERN_RFLAGS));
            assert_eq!(p.mxcsr & !0x3F, PATTERN_MXCSR);
            let mut all = p.gpr.to_vec();
            all.remove(RCX);
            all.extend(p.vec[..regs].iter().flat_map(|r| &r[..lanes]));
            all.extend(&p.k[..kregs]);
            assert_eq!(all.len(), 14 + regs * lanes + kregs);
            assert!(all.iter().all(|&x| x != 0 && seen.insert(x)), "{isa:?} {seed}");
            // Only the valid lanes are nonzero: the ones the ISA lacks stay zero.
            let nonzero = p.vec.iter().flatten().chain(&p.k).filter(|&&x| x != 0);
            assert_eq!(nonzero.count(), regs * lanes + kregs);
        }
    }
}

#[test]
fn check_round_passes_without_preemption() {
    for seed in 0..32 {
        assert_eq!(check_round(seed, 1000), Ok(()), "seed {seed}");
    }
    assert_eq!(check_round(99, 0), Ok(()), "zero spins must not wrap");
}

#[test]
fn every_supported_isa_variant_round_trips() {
    println!("detected vector ISA: {:?}", vector_isa());
    for isa in supported() {
        for seed in 0..16 {
            let p = RegState::pattern_for(seed, isa);
            let mut dump = fill_spin_dump_with(isa, &p, 1000);
            assert_eq!(dump.rflags & 0xFFF, PATTERN_RFLAGS, "exact flags");
            dump.rflags = p.rflags;
            // Exact equality: rcx is 0 and lanes beyond the ISA stay zero.
            assert_eq!(dump, p, "{isa:?} seed {seed}");
            assert_eq!(check_round_with(isa, seed, 1000), Ok(()));
        }
        println!("{isa:?}: 16 rounds ok");
    }
}

type Corruption = (fn(&mut RegState), &'static str);

#[test]
fn corrupted_expectation_names_the_register() {
    let (seven, eight) = (RegState::pattern(7), RegState::pattern(8));
    let dump = fill_spin_dump(&seven, 100);
    let wrong = compare(&eight, &dump, vector_isa());
    assert_eq!(wrong.len(), MAX_MISMATCHES);
    assert!(!names(&wrong).contains(&"rcx"), "rcx is 0 in every pattern");
    assert_eq!((wrong[0].expected, wrong[0].found), (eight.gpr[0], dump.gpr[0]));
    for isa in supported() {
        let pattern = RegState::pattern_for(7, isa);
        let dump = fill_spin_dump_with(isa, &pattern, 100);
        let mut cases: Vec<Corruption> = vec![
            (|e| e.gpr[12] ^= 1, "r13"),
            (|e| e.rflags ^= DF, "rflags"),
            (|e| e.mxcsr ^= 0x2000, "mxcsr"),
            (|e| e.vec[9][1] ^= 1 << 63, "9 lane 1"),
            (|e| e.vec[15][0] ^= 1, "15 lane 0"),
        ];
        if isa == VectorIsa::Avx512 {
            cases.push((|e| e.vec[17][3] ^= 8, "17 lane 3"));
            cases.push((|e| e.k[5] ^= 1 << 40, "k5"));
        }
        for (corrupt, name) in cases {
            let mut expected = pattern.clone();
            corrupt(&mut expected);
            let m = compare(&expected, &dump, isa);
            let vec_name = format!("{}{name}", isa.shape().3);
            let name = if name.contains(' ') { &vec_name } else { name };
            assert_eq!(names(&m), [name], "{isa:?}");
            println!("{isa:?}: {}", m[0]);
        }
    }
}

thread_local! {
    /// Per thread, so that tests running in parallel do not see each other's signals.
    static SIGNALS: Cell<u64> = const { Cell::new(0) };
    /// Signals that interrupted the torture (DF=1 only between its popfq and cld).
    static HITS: Cell<u64> = const { Cell::new(0) };
    /// Makes the handler flip bit 0 of the interrupted r13, to prove corruption is caught.
    static CORRUPT_R13: Cell<bool> = const { Cell::new(false) };
}

/// Sets every vector (and opmask) register to garbage. All are caller-saved, so only the
/// host's sigreturn can bring the interrupted values back.
#[target_feature(enable = "avx512f,avx512bw")]
fn smash_avx512() {
    // SAFETY: register-only instructions on registers declared clobbered.
    unsafe {
        asm!(
            each!("vpternlogd zmm", ", zmm0, zmm", ", 0xff"; 0 1 2 3 4 5 6 7 8 9 10 11 12
                13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31),
            each!("kxnorq k", ", k0, k", ""; 0 1 2 3 4 5 6 7),
            "vzeroupper",
            clobber_abi("C"),
            options(nomem, nostack)
        )
    }
}

/// [`smash_avx512`] for CPUs without AVX-512 (`xmm` only; Linux hands signal handlers a
/// freshly initialized vector state anyway).
fn smash_sse() {
    // SAFETY: register-only instructions on registers declared clobbered.
    unsafe {
        asm!(
            each!("pcmpeqd xmm", ", xmm", ""; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
            clobber_abi("C"),
            options(nomem, nostack)
        )
    }
}

extern "C" fn on_sigusr2(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    SIGNALS.set(SIGNALS.get() + 1);
    // SAFETY: an SA_SIGINFO handler's third argument is the interrupted ucontext_t, ours
    // until we return.
    let gregs = unsafe { &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs };
    if gregs[libc::REG_EFL as usize] as u64 & DF != 0 {
        HITS.set(HITS.get() + 1);
        if CORRUPT_R13.get() {
            gregs[libc::REG_R13 as usize] ^= 1; // r13 only holds a pattern value there
        }
    }
    let mut x = std::hint::black_box(1.5f64);
    for i in 0..32 {
        x = (x * 1.0001 + f64::from(i)).sqrt() / 0.7;
    }
    std::hint::black_box(x);
    match vector_isa() {
        // SAFETY: AVX512F and AVX512BW were detected.
        VectorIsa::Avx512 => unsafe { smash_avx512() },
        _ => smash_sse(),
    }
}

/// Installs the SIGUSR2 handler and has a helper thread signal this thread until dropped
/// (the drop joins the helper, so no signal can target this thread after it is gone).
struct Storm(Arc<AtomicBool>, Option<thread::JoinHandle<u64>>);

impl Storm {
    fn start() -> Storm {
        static INSTALL: Once = Once::new();
        vector_isa(); // fill the cache before the handler reads it
        INSTALL.call_once(|| {
            // SAFETY: a zeroed sigaction is valid; we set an SA_SIGINFO handler of the
            // matching signature that only uses const thread-locals, arithmetic and
            // register-only asm. SIGUSR2 is only ever sent to a test's own thread.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigusr2 as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
            }
        });
        // SAFETY: no preconditions; the id stays valid because Drop joins the sender first.
        let me = unsafe { libc::pthread_self() };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sender = thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: `me` is alive (see above) and SIGUSR2 has our handler.
                assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR2) }, 0);
                sent += 1;
                thread::sleep(Duration::from_micros(100));
            }
            sent
        });
        Storm(stop, Some(sender))
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        let sent = self.1.take().map_or(0, |s| s.join().unwrap_or(0));
        println!("signal storm: {sent} SIGUSR2 sent");
    }
}

#[test]
fn rounds_survive_signal_storm() {
    let storm = Storm::start();
    for isa in supported() {
        let (signals, hits, mut rounds) = (SIGNALS.get(), HITS.get(), 0u64);
        let deadline = Instant::now() + Duration::from_secs(30);
        while HITS.get() - hits < 200 && Instant::now() < deadline {
            let seed = rounds + 1_000_000 * isa as u64;
            if let Err(m) = check_round_with(isa, seed, 50_000) {
                panic!("{isa:?} seed {seed} under signals: {m:#?}");
            }
            rounds += 1;
        }
        let (signals, hits) = (SIGNALS.get() - signals, HITS.get() - hits);
        println!("{isa:?}: {rounds} rounds ok, {signals} signals, {hits} hit the torture");
        assert!(hits >= 200, "{isa:?}: only {hits} signals hit the torture");
    }
    drop(storm);
}

#[test]
fn corruption_through_a_signal_is_caught() {
    let storm = Storm::start();
    CORRUPT_R13.set(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let caught = (0..)
        .take_while(|_| Instant::now() < deadline)
        .find_map(|seed| check_round(seed, 50_000).err().map(|m| (seed, m)));
    CORRUPT_R13.set(false);
    drop(storm);
    let (seed, m) = caught.expect("a flipped r13 was never detected");
    let r13 = RegState::pattern(seed).gpr[12];
    assert_eq!((names(&m), m[0].expected, m[0].found), (vec!["r13"], r13, r13 ^ 1));
    println!("caught: {}", m[0]);
}
