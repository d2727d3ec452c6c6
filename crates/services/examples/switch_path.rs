//! A fixed number of task switches, for instruction counting (the switch path's cost free of
//! the machine's noise): `valgrind --tool=callgrind target/release/examples/switch_path YIELDS`
//! runs two SCHED_FIFO tasks of one priority that `sched_yield` YIELDS times each, in turn,
//! on one CPU, and exits. The difference between two runs with different YIELDS, divided by
//! the difference in switches, is the instructions of one switch.
use kernel::{spawn, Config, TaskBuilder};

fn main() {
    let yields: u64 = std::env::args().nth(1).map_or(10_000, |s| {
        s.parse().unwrap_or_else(|e| {
            eprintln!("switch_path: YIELDS must be a number ({e}), e.g. switch_path 10000");
            std::process::exit(2)
        })
    });
    let r = kernel::run(Config { hz: 100, ..Config::default() }, move || {
        // Spawned from a higher-priority task, so both are queued before either runs.
        spawn(TaskBuilder::new("spawner").fifo(90), move || ping_pong(yields)).join().unwrap_or(1)
    })
    .expect("kernel boots");
    let switches: u64 = r.cpus.iter().map(|c| c.switches).sum();
    println!("{yields} yields per task, {switches} switches, result {:?}", r.init);
}

fn ping_pong(yields: u64) -> i64 {
    let hs: Vec<_> = (0..2)
        .map(|i| {
            spawn(TaskBuilder::new(&format!("yield{i}")).fifo(10), move || {
                for _ in 0..yields {
                    kernel::sched_yield();
                }
                0
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap_or(1)).sum()
}
