//! A fixed amount of kernel work with no RT events, for instruction counting under each model:
//! `valgrind --tool=callgrind --smc-check=all target/release/examples/normal_path MODEL [CALLS
//! [BOOT_OPTIONS]]` runs CALLS system calls of 64 checksum atoms (a preemption point after each)
//! and exits; BOOT_OPTIONS (one argument, e.g. `"softlockup_thresh_ms=10000"`) are added to the
//! command line.
use kernel::{spawn, syscall, Config, PreemptModel, TaskBuilder};
use services::atoms::{csum, PAGE};

fn main() {
    let mut args = std::env::args().skip(1);
    let model: PreemptModel = args.next().unwrap_or_else(|| "none".into()).parse().unwrap_or_else(|e| {
        eprintln!("normal_path: {e}");
        std::process::exit(2)
    });
    let calls: u64 = args.next().map_or(200, |s| s.parse().expect("CALLS is a number"));
    let extra = args.next().unwrap_or_default();
    let config = Config::from_cmdline(&format!("preempt={model} hz=100 {extra}")).unwrap_or_else(|e| {
        eprintln!("normal_path: {e}");
        std::process::exit(2)
    });
    let r = kernel::run(config, move || {
        spawn(TaskBuilder::new("worker"), move || {
            let page = [0x5au8; PAGE];
            let mut acc = 0u16;
            for _ in 0..calls {
                acc ^= syscall(|| {
                    let mut a = 0u16;
                    for _ in 0..64 {
                        a ^= csum(std::hint::black_box(&page));
                        kernel::preempt_point!();
                    }
                    a
                });
            }
            acc as i64
        })
        .join()
        .unwrap_or(0)
    })
    .expect("kernel boots");
    println!("{model}: {calls} system calls of 64 atoms, result {:?}", r.init);
}
