//! Micro-benchmarks of the arch layer's site patching, the raw primitive under the patch
//! models (no kernel instance): patching one site and restoring it, and what an armed site
//! costs when it is reached on a thread that is no CPU (through a breakpoint: the SIGTRAP
//! handler steps over it; through a call: the point stub, which finds no hooks and returns),
//! with warm caches and with cold ones.
//!
//! `cargo bench -p atomkernel-arch --bench patch`

use arch::patch::{Arm, PatchSync};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::time::Duration;

fn canary_site() -> usize {
    arch::ppoint::sites().iter().find(|s| s.info.file.ends_with("ppoint.rs")).expect("canary site").addr
}

/// One iteration = patch one site into a call and back to its NOP (W^X alias, one verified
/// byte each way, no system call).
/// The same under `patch_sync=ipi`: `text_poke_bp`'s protocol, two `SYNC_CORE` rounds each way.
fn patch_site(c: &mut Criterion) {
    let site = canary_site();
    arch::patch::prepare().expect("text alias");
    arch::patch::prepare_sync().expect("membarrier SYNC_CORE");
    let idx = [arch::patch::index_of(site).unwrap() as u32];
    let bench = |c: &mut Criterion, name: &str, sync| {
        c.bench_function(name, |b| {
            b.iter(|| {
                arch::patch::arm_synced(&idx, Arm::Call, sync).unwrap();
                arch::patch::disarm_synced(&idx, Arm::Call, sync).unwrap();
            })
        });
    };
    bench(c, "patch one site and restore it", PatchSync::None);
    bench(c, "patch one site and restore it (patch_sync=ipi)", PatchSync::Ipi);
    // A round interrupts only the host CPUs running a thread of the process: with a second
    // thread spinning (as a kernel's other CPU does), each round reaches another core.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let spinner = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    bench(c, "patch one site and restore it (patch_sync=ipi, another thread running)", PatchSync::Ipi);
    bench(c, "patch one site and restore it (another thread running)", PatchSync::None);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
}

/// One iteration = the canary site, armed `how`, reached by the bench's own thread (no CPU, so
/// no core hook runs): for `int3` a SIGTRAP delivery, the step over the site and `sigreturn`;
/// for `call` the call of the point stub and its return.
fn armed_site_reached(c: &mut Criterion) {
    arch::patch::prepare().expect("text alias");
    let site = canary_site();
    for (name, how) in [("int3", Arm::Int3), ("call", Arm::Call)] {
        c.bench_function(&format!("armed site reached on a thread that is no CPU ({name})"), |b| {
            arch::patch::arm_site(site, how).unwrap();
            b.iter(arch::ppoint::canary);
            arch::patch::disarm_site(site, how).unwrap();
        });
    }
}

/// The same, with the caches cold: before each iteration (untimed) the thread streams through
/// 16 MB, as a checksumming task does before an RT event, so the host's trap and signal paths
/// (`int3`) or the stub (`call`) run from memory, not from the caches.
fn armed_site_reached_cold(c: &mut Criterion) {
    arch::patch::prepare().expect("text alias");
    let site = canary_site();
    let mut junk = vec![0u8; 16 << 20];
    for (name, how) in [("int3", Arm::Int3), ("call", Arm::Call)] {
        c.bench_function(&format!("armed site reached, caches cold ({name})"), |b| {
            arch::patch::arm_site(site, how).unwrap();
            b.iter_batched(
                || junk.iter_mut().step_by(64).for_each(|x| *x = x.wrapping_add(1)),
                |()| arch::ppoint::canary(),
                BatchSize::PerIteration,
            );
            arch::patch::disarm_site(site, how).unwrap();
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = patch_site, armed_site_reached, armed_site_reached_cold
}
criterion_main!(benches);
