//! The tracers end to end: they name the deliberately long atom and the task that delayed an RT
//! task, the profile finds the hot function, and the exported trace is valid Chrome trace JSON
//! with the scenario's events in order. Assertions are about places and order, never times.

#![cfg(feature = "trace")]

use kernel::trace::{StretchKind, TraceOptions, TraceReport};
use kernel::{Config, PreemptModel};
use lab::chrome_trace;
use lab::symbols::Resolver;
use lab::trace_report::{self, place};
use lab::trace_run::{self, TraceRun};
use services::scenario;

fn traced(model: PreemptModel, tracers: &str) -> Config {
    let trace = TraceOptions::parse(tracers, 1 << 16).unwrap();
    Config { preempt: model, trace, ..Config::default() }
}

/// The long-atom workload: system calls of short atoms with one 30 ms atom each.
fn long_atom(model: PreemptModel, tracers: &str) -> TraceReport {
    let t = TraceRun {
        workload: "long-atom".into(),
        config: traced(model, tracers),
        seconds: 0.3,
        atoms: 8,
        interval_us: 1000,
        long_atom_us: 30_000,
    };
    trace_run::run(&t).expect("workload runs").trace.expect("tracing was on")
}

/// The two preemption points of `deliberately_long_atom` (start, end), by address.
fn long_atom_sites(r: &Resolver) -> (kernel::text::Site, kernel::text::Site) {
    let mut sites: Vec<_> = kernel::text::sites()
        .into_iter()
        .filter(|s| {
            r.caller_place(s.addr, None).function.as_deref().is_some_and(|f| f.contains("deliberately_long_atom"))
        })
        .collect();
    sites.sort_by_key(|s| s.info.line);
    assert_eq!(sites.len(), 2, "deliberately_long_atom has two points");
    (sites[0], sites[1])
}

#[test]
fn preemptoff_names_the_deliberately_long_atom_under_none_and_voluntary() {
    let r = Resolver::load();
    let (start, end) = long_atom_sites(&r);
    for model in [PreemptModel::None, PreemptModel::Voluntary] {
        let tr = long_atom(model, "preemptoff");
        let max = tr.preemptoff[0];
        assert_eq!(max.kind, StretchKind::Atom, "{model}");
        assert_eq!((max.start.ip, max.end.ip), (start.addr, end.addr), "{model}: {:#?}", tr.preemptoff);
        let (s, e) = (place(&r, &max.start), place(&r, &max.end));
        assert!(s.function.as_deref().unwrap().ends_with("deliberately_long_atom"), "{s}");
        assert_eq!((s.line, e.line), (Some(start.info.line), Some(end.info.line)));
        assert!(s.file.as_deref().unwrap().ends_with("trace_run.rs"), "{s}");
        assert_eq!(tr.task_names[max.pid], "worker");
        assert!(tr.stretches > tr.preemptoff.len() as u64, "the short atoms were measured too");
    }
}

#[test]
fn wakeup_rt_names_the_task_that_delayed_the_rt_task_and_where_it_gave_up() {
    let r = Resolver::load();
    let tr = long_atom(PreemptModel::None, "wakeup_rt");
    let a = trace_report::analyse(&tr, &r);
    let worst = &a.wakeup_rt[0];
    assert_eq!((worst.task.as_str(), worst.woken_during.as_str()), ("rt", "worker"), "{worst:#?}");
    let runner = &worst.runners[0];
    assert_eq!(runner.task, "worker");
    assert_eq!(runner.gave_up_at.what.as_deref(), Some("ret_from_syscall"), "preempt=none: {runner:#?}");
    assert!(runner.gave_up_at.file.as_deref().unwrap().ends_with("trace_run.rs"));

    let (_, end) = long_atom_sites(&r);
    let tr = long_atom(PreemptModel::Voluntary, "wakeup_rt");
    let worst = &trace_report::analyse(&tr, &r).wakeup_rt[0];
    let runner = &worst.runners[0];
    assert_eq!(runner.task, "worker", "{worst:#?}");
    assert!(runner.gave_up_at.function.as_deref().unwrap().ends_with("deliberately_long_atom"), "{runner:#?}");
    assert_eq!(runner.gave_up_at.line, Some(end.info.line), "voluntary: at the point that ends the long atom");
}

#[test]
fn profile_charges_the_ticks_to_the_hot_function() {
    let tr = long_atom(PreemptModel::None, "profile");
    let a = trace_report::analyse(&tr, &Resolver::load());
    assert!(a.samples > 0 && tr.events.is_empty(), "profile only: no events");
    let top = &a.profile[0];
    assert!(top.function.ends_with("atoms::csum"), "{:#?}", &a.profile[..a.profile.len().min(5)]);
    assert_eq!(top.kernel, top.samples, "csum runs inside system calls");
}

#[test]
fn irqsoff_under_full_names_the_long_irqs_off_section() {
    #[inline(never)]
    fn long_irqs_off_section() {
        let _irq = kernel::preempt::local_irq_save();
        let end = kernel::time::now_ns() + 30_000_000;
        while kernel::time::now_ns() < end {
            std::hint::spin_loop();
        }
    }
    let report = kernel::run(traced(PreemptModel::Full, "preemptoff"), || {
        kernel::syscall(|| {
            for _ in 0..20 {
                drop(kernel::preempt::preempt_disable());
            }
            long_irqs_off_section();
        });
        0
    })
    .unwrap();
    let tr = report.trace.unwrap();
    let r = Resolver::load();
    let max = tr.preemptoff[0];
    assert_eq!(max.kind, StretchKind::IrqsOff, "{:#?}", tr.preemptoff);
    let (s, e) = (place(&r, &max.start), place(&r, &max.end));
    assert_eq!(s.what.as_deref(), Some("local_irq_save"));
    assert!(s.file.as_deref().unwrap().ends_with("tests/trace.rs"), "{s}");
    assert_eq!(e.what.as_deref(), Some("local_irq_restore"));
    assert!(e.function.as_deref().unwrap().contains("long_irqs_off_section"), "{e}");
    assert!(tr.preemptoff.iter().any(|s| s.kind == StretchKind::PreemptDisabled), "the short sections too");
}

/// The `i` events of a Chrome trace: (name, args), in array order.
fn instants(v: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let evs = v["traceEvents"].as_array().expect("traceEvents array");
    for e in evs {
        assert!(e["name"].is_string() && e["ph"].is_string() && e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
        assert!(e["ph"] == "M" || e["ts"].is_f64() || e["ts"].is_u64(), "{e}");
    }
    let inst: Vec<&serde_json::Value> = evs.iter().filter(|e| e["ph"] == "i").collect();
    let ts: Vec<f64> = inst.iter().map(|e| e["ts"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "instants in time order");
    inst.iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["args"].clone())).collect()
}

#[test]
fn chrome_trace_is_valid_json_with_the_scenarios_events_in_order() {
    let (res, report) = scenario::run_report(traced(PreemptModel::Voluntary, "events"), &Default::default()).unwrap();
    assert_eq!(res.rt_ran_after_atom, 1);
    let pid = |name: &str| report.tasks.iter().find(|t| t.name == name).unwrap().id;
    let (worker, rt) = (pid("worker"), pid("rt"));
    let tr = report.trace.unwrap();
    let r = Resolver::load();
    let text = serde_json::to_string(&chrome_trace::chrome_json(&tr, &r)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let ev = instants(&v);
    let find = |from: usize, pred: &dyn Fn(&str, &serde_json::Value) -> bool| {
        from + ev[from..]
            .iter()
            .position(|(n, a)| pred(n, a))
            .unwrap_or_else(|| panic!("not found after {from}: {ev:#?}"))
    };
    let device = |a: &serde_json::Value| u64::from_str_radix(&a["lines"].as_str().unwrap()[2..], 16).unwrap() >= 8;
    let entry = find(0, &|n, a| n == "irq_handler_entry" && device(a));
    let wake = find(entry, &|n, a| n == "sched_wakeup" && a["comm"] == "rt");
    let exit = find(wake, &|n, a| n == "irq_handler_exit" && device(a));
    assert_eq!(ev[exit].1["ret"], "resume", "voluntary does not preempt kernel code at IRQ exit");
    let point = find(exit, &|n, _| n == "preempt_point");
    assert!(ev[point].1["site"].as_str().unwrap().contains("scenario.rs"), "{:?}", ev[point]);
    let switch = point + 1;
    assert_eq!(ev[switch].0, "sched_switch");
    assert_eq!((ev[switch].1["prev_comm"].as_str(), ev[switch].1["next_comm"].as_str()), (Some("worker"), Some("rt")));
    assert_eq!(ev[switch].1["prev_state"], "R");
    let evs = v["traceEvents"].as_array().unwrap();
    let track = evs
        .iter()
        .find(|e| e["ph"] == "M" && e["args"]["name"] == format!("worker (pid {worker})").as_str())
        .expect("worker's track");
    assert!(evs.iter().any(|e| e["ph"] == "X" && e["tid"] == track["tid"] && e["name"] == "running"));
    let txt = chrome_trace::text(&tr, &r);
    let line = format!("sched_switch: prev_comm=worker prev_pid={worker} prev_state=R next_comm=rt next_pid={rt}");
    assert!(txt.contains(&line), "{txt}");
}

#[test]
fn model_switch_is_an_event() {
    let sc = scenario::ScenarioConfig { switch_to: Some(PreemptModel::Voluntary), ..Default::default() };
    let (_, report) = scenario::run_report(traced(PreemptModel::None, "events"), &sc).unwrap();
    let v = chrome_trace::chrome_json(&report.trace.unwrap(), &Resolver::load());
    let ev = instants(&v);
    let m = ev.iter().find(|(n, _)| n == "model_switched").expect("model_switched recorded");
    assert_eq!((m.1["from"].as_str(), m.1["to"].as_str()), (Some("none"), Some("voluntary")));
}

#[test]
fn the_register_torture_runs_traced_and_its_preemptions_are_switches() {
    let t = TraceRun { workload: "torture".into(), config: traced(PreemptModel::None, "events"), ..Default::default() };
    let tr = trace_run::run(&t).expect("no register mismatch").trace.unwrap();
    let preempted = tr.events.iter().filter(|r| {
        matches!(r.event, kernel::trace::Event::SchedSwitch { prev_state: kernel::trace::PrevState::Running, .. })
    });
    assert!(preempted.count() > 0, "RR rotation and the storm preempt the torture tasks");
    let bad = TraceRun { config: traced(PreemptModel::Voluntary, "events"), ..t };
    assert!(trace_run::run(&bad).unwrap_err().contains("none (user mode) or full (kernel mode)"));
}

/// Each workload runs under the model it gets when none is named (the torture's is `full`,
/// one of the two it runs under), and reads only its own settings.
#[test]
fn every_workload_is_valid_under_its_default_model() {
    for w in trace_run::WORKLOADS {
        let config = kernel::Config { preempt: trace_run::default_model(w), ..kernel::Config::default() };
        let t = TraceRun { workload: w.into(), config, ..Default::default() };
        t.validate().unwrap_or_else(|e| panic!("{w} under its default model: {e}"));
    }
    assert_eq!(trace_run::default_model("torture"), PreemptModel::Full);
    assert!(trace_run::reads("scenario").iter().all(|f| *f == "hz"), "the scenario has its own shape");
    assert!(trace_run::reads("torture").is_empty(), "the torture has its own work and tick rate");
    assert!(
        trace_run::reads("long-atom").contains(&"long_atom_us") && !trace_run::reads("load").contains(&"long_atom_us")
    );
}
