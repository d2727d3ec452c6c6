//! Micro-benchmarks of the arch layer's site patching, the raw primitive under the patch
//! models (no kernel instance): patching one site and restoring it, and what an armed site
//! costs when it is reached on a thread that is no CPU (through a breakpoint: the SIGTRAP
//! handler steps over it; through a call: the point stub, which finds no hooks and returns).
//!
//! `cargo bench -p atomkernel-arch --bench patch`

use arch::patch::Arm;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn canary_site() -> usize {
    arch::ppoint::sites().iter().find(|s| s.info.file.ends_with("ppoint.rs")).expect("canary site").addr
}

/// One iteration = patch one site into a call and back to its NOP (W^X alias, one verified
/// byte each way, no system call).
fn patch_site(c: &mut Criterion) {
    let site = canary_site();
    arch::patch::prepare().expect("text alias");
    c.bench_function("patch one site and restore it", |b| {
        b.iter(|| {
            arch::patch::arm_site(site, Arm::Call).unwrap();
            arch::patch::disarm_site(site, Arm::Call).unwrap();
        })
    });
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = patch_site, armed_site_reached
}
criterion_main!(benches);
