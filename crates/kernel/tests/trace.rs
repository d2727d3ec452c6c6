//! Tracing inside one kernel instance: off records nothing, on records this instance's events
//! only, in the order they happened.

#![cfg(feature = "trace")]

mod common;
use common::run_with_timeout;
use kernel::trace::{Event, PrevState, TraceOptions};
use kernel::{spawn, Config, PreemptModel, TaskBuilder};

fn ping_pong() -> i64 {
    let rt = spawn(TaskBuilder::new("sleeper").fifo(10), || {
        kernel::time::sleep_ns(200_000);
        0
    });
    rt.join().unwrap_or(-1)
}

fn events_on() -> Config {
    Config { trace: TraceOptions::parse("events", 4096).unwrap(), ..Config::default() }
}

#[test]
fn tracing_off_records_nothing_and_allocates_nothing() {
    let report = run_with_timeout(Config::default(), 30, ping_pong);
    assert_eq!(report.init, Ok(0));
    assert!(report.trace.is_none(), "no tracer asked for: no trace state at all");
    assert!(report.switches > 0, "the workload did switch");
}

#[test]
fn instances_side_by_side_see_only_their_own_events_in_order() {
    let traced = std::thread::spawn(|| run_with_timeout(events_on(), 30, ping_pong));
    let quiet = std::thread::spawn(|| run_with_timeout(Config::default(), 30, ping_pong));
    let (traced, quiet) = (traced.join().unwrap(), quiet.join().unwrap());
    assert!(quiet.trace.is_none());
    let tr = traced.trace.expect("events were on");
    let switches: Vec<(usize, usize, PrevState)> = tr
        .events
        .iter()
        .filter_map(|r| match r.event {
            Event::SchedSwitch { prev, next, prev_state } => Some((prev, next, prev_state)),
            _ => None,
        })
        .collect();
    assert_eq!(switches.len() as u64, traced.switches, "one sched_switch per switch, none from the other instance");
    let names: Vec<&str> = tr.task_names.iter().map(String::as_str).collect();
    assert_eq!(names, ["swapper/0", "init", "ksoftirqd/0", "sleeper"]);
    let sleeper = 3;
    // idle -> init; init spawns the sleeper, which preempts it at ret_from_syscall; it sleeps...
    assert_eq!(switches[0], (0, 1, PrevState::Running));
    let first = switches.iter().position(|s| s.1 == sleeper).expect("the sleeper ran");
    assert_eq!(switches[first], (1, sleeper, PrevState::Running), "{switches:?}");
    assert_eq!((switches[first + 1].0, switches[first + 1].2), (sleeper, PrevState::Sleeping));
    // ...its timer's wakeup comes from an hrtimer interrupt, before it runs again and exits.
    let wake = tr.events.iter().position(|r| r.event == Event::SchedWakeup { pid: sleeper, rt_prio: 10 }).unwrap();
    let irq = tr.events[..wake].iter().rposition(|r| matches!(r.event, Event::IrqHandlerEntry { .. })).unwrap();
    assert!(tr.events[irq..wake].iter().all(|r| !matches!(r.event, Event::IrqHandlerExit { .. })), "inside the IRQ");
    let exit = tr
        .events
        .iter()
        .position(|r| r.event == Event::SchedSwitch { prev: sleeper, next: 1, prev_state: PrevState::Dead });
    assert!(exit.is_some_and(|e| e > wake), "{:#?}", tr.events);
    assert!(tr.events.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
}

/// Every task's first queueing is a `sched_wakeup_new` on the CPU it was placed on, before it
/// first runs there: replaying the trace sees every runnable task (the fuzzer's checker does).
#[test]
fn every_new_task_is_a_sched_wakeup_new_before_it_first_runs() {
    let cfg = Config { cpus: 2, ..events_on() };
    let report = run_with_timeout(cfg, 30, ping_pong);
    assert_eq!(report.init, Ok(0));
    let tr = report.trace.expect("events were on");
    for (pid, name) in tr.task_names.iter().enumerate().filter(|(_, n)| !n.starts_with("swapper/")) {
        let new = tr.events.iter().position(|r| matches!(r.event, Event::SchedWakeupNew { pid: p, .. } if p == pid));
        let new = new.unwrap_or_else(|| panic!("no sched_wakeup_new for {name}: {:#?}", tr.events));
        let ran = tr.events.iter().position(|r| matches!(r.event, Event::SchedSwitch { next, .. } if next == pid));
        let ran = ran.unwrap_or_else(|| panic!("{name} never ran"));
        assert!(new < ran, "{name}: queued at {new}, ran at {ran}");
        // It first runs where it was queued, or where the last move before that took it.
        let moved = tr.events[new..ran].iter().rev().find_map(|r| match r.event {
            Event::SchedMigrate { pid: p, to, .. } if p == pid => Some(to),
            _ => None,
        });
        assert_eq!(moved.unwrap_or(tr.events[new].cpu), tr.events[ran].cpu, "{name}: {:#?}", tr.events);
    }
    let sleeper = tr.task_names.iter().position(|n| n == "sleeper").unwrap();
    assert!(tr.events.iter().any(|r| r.event == Event::SchedWakeupNew { pid: sleeper, rt_prio: 10 }));
}

#[test]
fn a_full_ring_keeps_the_newest_events_and_counts_the_rest() {
    let cfg = Config { hz: 10_000, trace: TraceOptions::parse("events", 64).unwrap(), ..Config::default() };
    let report = run_with_timeout(cfg, 30, || {
        kernel::time::sleep_ns(20_000_000);
        0
    });
    let tr = report.trace.unwrap();
    assert_eq!(tr.events.len(), 64);
    assert!(tr.events_lost > 0, "200 ticks make more than 64 events");
    // The newest events are the shutdown: init exits, then ksoftirqd (told to stop once it is
    // the last task) exits, both into idle.
    let switches: Vec<Event> =
        tr.events.iter().filter(|r| matches!(r.event, Event::SchedSwitch { .. })).map(|r| r.event).collect();
    let init_exit = Event::SchedSwitch { prev: 1, next: 0, prev_state: PrevState::Dead };
    assert!(switches.contains(&init_exit), "init's exit is among the newest events: {switches:?}");
    assert!(
        matches!(switches.last(), Some(Event::SchedSwitch { next: 0, prev_state: PrevState::Dead, .. })),
        "the newest switch is the last task's exit: {switches:?}"
    );
}

#[test]
fn trace_options_are_checked() {
    let e = Config::from_cmdline("trace=bogus").unwrap_err().0;
    assert!(e.contains("unknown tracer 'bogus'") && e.contains("events, preemptoff, wakeup_rt, profile"), "{e}");
    let e = Config::from_cmdline("trace=all trace_buf=1").unwrap_err().0;
    assert!(e.contains("trace_buf=1"), "{e}");
    let c = Config::from_cmdline("trace=all preempt=voluntary").unwrap();
    assert!(c.trace.events && c.trace.preemptoff && c.trace.wakeup_rt && c.trace.profile);
    assert_eq!(c.trace.to_string(), "events,preemptoff,wakeup_rt,profile");
    assert_eq!(c.preempt, PreemptModel::Voluntary);
}

#[test]
fn other_subsystems_record_events_with_one_call() {
    kernel::trace::event(Event::SitePatched { site: 1 }); // not a CPU thread: ignored
    let events = [
        Event::SitePatched { site: 0x1000 },
        Event::SoftirqEntry { vec: 3 },
        Event::SoftirqExit { vec: 3 },
        Event::SiteRestored { site: 0x1000 },
    ];
    let report = run_with_timeout(events_on(), 30, move || {
        let _irq = kernel::preempt::local_irq_save(); // callable with IRQs masked, locks held
        events.iter().for_each(|&e| kernel::trace::event(e));
        0
    });
    let tr = report.trace.unwrap();
    let mine: Vec<Event> = tr.events.iter().filter(|r| events.contains(&r.event)).map(|r| r.event).collect();
    assert_eq!(mine, events);
    assert!(tr.events.iter().filter(|r| events.contains(&r.event)).all(|r| r.pid == 1), "recorded as init's");
    let quiet = run_with_timeout(Config::default(), 30, move || {
        kernel::trace::event(Event::SitePatched { site: 0x1000 });
        0
    });
    assert!(quiet.trace.is_none());
}
