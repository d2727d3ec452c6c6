//! Boots the kernel core in the bare-metal image under QEMU TCG and checks, from the JSON
//! lines its init prints on the serial port, where an RT task woken by an interrupt got the
//! CPU under each preemption model, that every general register, the vector registers and the
//! red zone survive preemptions on the real interrupt return (the torture: user mode under
//! every model, kernel mode under `full`), that every task finished, and that the
//! configurations the machine cannot run yet are refused with a clear message; and on
//! QEMU's `-smp 2`, with `cpus=2`, a remote wake-up and function calls crossing by IPI. Under the
//! patch models the RT event is served at the point the interrupt's exit armed (or, under
//! `patch_leaf=return`, at the return of the function without points it landed in), every site
//! reads back idle after every event, and W^X holds with patching in use. Under each
//! model a tasklet spinning at an interrupt's exit (IF set) must see the tick's interrupts
//! nest in it.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once per test binary and
//! boots it with `-append "preempt=..."`; each boot is killed after 60 s and the test then
//! fails with the serial output.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot, boot_with, exit_codes, json, result, results, Boot};

/// Boots `preempt=model` and checks every scenario; the RT task must have run at `place`.
fn model_places_the_rt_task(model: &str, place: &str) {
    let Some(b) = boot(&format!("preempt={model}")) else { return };
    scenarios_pass(&b, model, place);
}

/// The image's scenarios (`image.run` unset) on QEMU's `-smp 2` with `cpus=2`: each binds its
/// tasks where it needs them (the torture's calls and RT task to the init's CPU), so every
/// one passes as on one CPU.
fn scenarios_pass_on_two_cpus(model: &str, place: &str) {
    let Some(b) = boot_with(&["-smp", "2"], &format!("preempt={model} cpus=2")) else { return };
    scenarios_pass(&b, model, place);
    assert_eq!(results(&b, "cpu").len(), 2, "both CPUs report: {}", b.serial);
}

/// Every scenario's line of the boot `b` as it must be under `model`, the RT task at `place`.
fn scenarios_pass(b: &Boot, model: &str, place: &str) {
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let unwind = result(b, "unwind");
    assert_eq!(unwind["ok"], true, "the .eh_frame walk out of three nested functions: {}", b.serial);
    assert!(unwind["frames"].as_u64() >= Some(4), "{}", b.serial);
    let pp = result(b, "pingpong");
    assert_eq!(pp["handovers"], 400, "{}", b.serial);
    assert_eq!(pp["ok"], true, "{}", b.serial);
    let tick = result(b, "tick");
    assert!(tick["jiffies_after"].as_u64() > tick["jiffies_before"].as_u64().map(|j| j + 5), "{}", b.serial);
    let softirq = result(b, "softirq");
    assert_eq!(softirq["tasklet_runs"], 1, "{}", b.serial);
    assert!(softirq["nested_irqs"].as_u64() > Some(0), "no interrupt nested in the softirq window: {}", b.serial);
    let rt = result(b, "rt");
    assert_eq!(rt["model"], model, "{}", b.serial);
    assert_eq!(rt["place"], place, "{}", b.serial);
    if place == "syscall_exit" {
        assert_eq!(rt["atom"], rt["atoms"], "under none the RT task waits for the whole service: {}", b.serial);
    } else {
        assert!(rt["atom"].as_u64() < rt["atoms"].as_u64(), "the RT task ran inside the service: {}", b.serial);
    }
    let torture = results(b, "torture");
    assert_eq!(torture.len(), if model == "full" { 2 } else { 1 }, "torture lines: {}", b.serial);
    for t in &torture {
        assert_eq!(t["register_mismatches"], 0, "a register was lost across a preemption: {}", b.serial);
        assert_eq!(t["red_zone_intact"], true, "the red zone was overwritten: {}", b.serial);
        assert!(t["preempted_calls"].as_u64() >= Some(20), "too few preemptions inside the asm: {}", b.serial);
        assert_eq!(t["ok"], true, "{}", b.serial);
    }
    if model.starts_with("patch-") {
        patch_checks(b, model);
    }
    let run = result(b, "run");
    assert_eq!(run["init"], 0, "{}", b.serial);
    assert_eq!(run["finished"], run["tasks"], "every task finished: {}", b.serial);
    assert_eq!(run["bugs"], 0, "{}", b.serial);
}

/// Under a patch model: the RT event was served at an armed point (armed by the interrupt's
/// exit from the exact table, reached, preempting), every site read back idle from the text
/// at every RT wake-up and at the end, and W^X held in the tables walked after the events.
fn patch_checks(b: &Boot, model: &str) {
    let p = result(b, "patch");
    assert_eq!(p["model"], model, "{}", b.serial);
    assert!(p["events"].as_u64() >= Some(1), "no RT event armed a point: {}", b.serial);
    assert!(p["sites_armed"].as_u64() >= Some(1), "{}", b.serial);
    assert!(p["fired"].as_u64() >= Some(1), "no armed point was reached: {}", b.serial);
    assert!(p["preemptions"].as_u64() >= Some(1), "no armed point preempted: {}", b.serial);
    assert!(p["site_checks"].as_u64() >= Some(2), "the sites were not read back after events: {}", b.serial);
    assert_eq!(p["sites_not_idle_max"], 0, "a site stayed armed after its event: {}", b.serial);
    assert_eq!(p["sites_not_idle_end"], 0, "a site is armed at the end: {}", b.serial);
    assert_eq!(p["wx_both"], 0, "a page is writable and executable with patching in use: {}", b.serial);
    assert!(p["wx_executable"].as_u64() > Some(0), "{}", b.serial);
    // a site armed as int3, then as a call too: the call wins (it serves both models' events),
    // and undoing the call leaves the int3, undoing that the idle form (as the hosted arch)
    assert_eq!(p["site_forms"], "cc e8 cc 3d", "{}", b.serial);
    assert_eq!(p["ok"], true, "{}", b.serial);
    // the rt_return scenario: the interrupted function's return redirected to the machine's
    // stub, and the RT task ran at that return
    let rr = result(b, "rt_return");
    assert_eq!(rr["place"], "return", "the redirected return did not preempt: {}", b.serial);
    assert!(p["redirects"].as_u64() >= Some(1), "{}", b.serial);
    assert!(p["returns"].as_u64() >= Some(1), "no redirected return arrived: {}", b.serial);
    // the RT task ran at the point right after the atom the interrupt landed in
    let rt = result(b, "rt");
    let point_to_rt = rt["point_to_rt_cycles"].as_u64().unwrap_or(0);
    assert!(point_to_rt > 0, "{}", b.serial);
}

#[test]
fn the_scenarios_pass_on_two_cpus_under_full_and_patch_call() {
    scenarios_pass_on_two_cpus("full", "mid_atom");
    scenarios_pass_on_two_cpus("patch-call", "point");
}

#[test]
fn under_preempt_none_the_rt_task_waits_for_the_system_calls_exit() {
    model_places_the_rt_task("none", "syscall_exit");
}

#[test]
fn under_preempt_voluntary_the_rt_task_runs_at_the_next_preemption_point() {
    model_places_the_rt_task("voluntary", "point");
}

#[test]
fn under_preempt_full_the_interrupt_return_preempts_the_atom() {
    model_places_the_rt_task("full", "mid_atom");
}

/// The boot error line's message.
fn boot_error(b: &Boot) -> String {
    json(b)
        .into_iter()
        .find_map(|v| v["boot_error"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no boot_error line:\n{}", b.serial))
}

#[test]
fn under_preempt_patch_int3_an_armed_breakpoint_serves_the_rt_task_at_the_next_point() {
    model_places_the_rt_task("patch-int3", "point");
}

#[test]
fn under_preempt_patch_call_an_armed_call_serves_the_rt_task_at_the_next_point() {
    model_places_the_rt_task("patch-call", "point");
}

/// `patch_leaf=return`: the `rt` scenario's interrupt lands in the loop's own code (served at
/// the armed point after the atom) or in `now_ns`, which reaches no point (served at its
/// redirected return, inside the atom); no frame is walked either way, and every site reads
/// back idle.
#[test]
fn under_patch_leaf_return_the_rt_task_runs_at_the_armed_point_or_at_the_leafs_return() {
    let Some(b) = boot("preempt=patch-call patch_leaf=return") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let rt = result(&b, "rt");
    let place = rt["place"].as_str().unwrap_or("");
    assert!(["point", "return"].contains(&place) && rt["expected"] == place, "{}", b.serial);
    let p = result(&b, "patch");
    assert_eq!((p["frames_walked"].as_u64(), p["ok"].as_bool()), (Some(0), Some(true)), "{}", b.serial);
    assert!(p["redirects"].as_u64() >= Some(1) && p["returns"].as_u64() >= Some(1), "{}", b.serial);
    assert_eq!((p["sites_not_idle_max"].as_u64(), p["wx_both"].as_u64()), (Some(0), Some(0)), "{}", b.serial);
    assert_eq!(result(&b, "rt_return")["place"], "return", "{}", b.serial);
}

#[test]
fn an_unknown_image_run_is_refused_before_any_task_naming_every_choice() {
    let Some(b) = boot("preempt=full image.run=nonsense") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "exit status; serial:\n{}", b.serial);
    let e = boot_error(&b);
    assert!(e.starts_with("image.run=nonsense: use one of scenarios, "), "{e}");
    assert!(e.contains("fault-irqs-off") && e.contains("softirq-stack"), "{e}");
    assert!(!b.serial.contains("\"test\":\"run\""), "no kernel ran:\n{}", b.serial);
}

#[test]
fn cpus_2_on_a_machine_of_one_cpu_is_refused_naming_smp() {
    let Some(b) = boot("preempt=full cpus=2") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "exit status; serial:\n{}", b.serial);
    let e = boot_error(&b);
    assert!(e.contains("CPU 1 is not running") && e.contains("-smp 2"), "{e}");
}

/// Boots `preempt=model cpus=2 image.run=smp` on QEMU's `-smp 2` and checks the SMP scenario:
/// the RT task must have run at `place`. Under `-icount` the two vCPUs run by turns on virtual
/// time, so a host that starves one of QEMU's threads for milliseconds (a loaded 2-core
/// machine) cannot move the interrupt or the IPI out of the atoms it must land in.
fn two_cpus_run_the_smp_scenario(model: &str, place: &str) {
    if let Some(b) = two_cpus_run_the_smp_scenario_with(model, place, "") {
        let sync = result(&b, "sync_core");
        assert_eq!(sync["rounds"], 0, "patch_sync=none makes no SYNC_CORE round: {}", b.serial);
    }
}

/// The SMP scenario's boot under `model` with `options` added, checked as
/// [`two_cpus_run_the_smp_scenario`] does; `None` without QEMU.
fn two_cpus_run_the_smp_scenario_with(model: &str, place: &str, options: &str) -> Option<Boot> {
    let qemu = ["-smp", "2", "-icount", "shift=0,sleep=off"];
    let b = boot_with(&qemu, &format!("preempt={model} cpus=2 image.run=smp {options}"))?;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    // as the hosted scenario on 2 CPUs: the interrupt on CPU 0, the busy and RT tasks on CPU 1
    let rt = result(&b, "rt");
    let cpus = (rt["cpus"].as_u64(), rt["irq_cpu"].as_u64(), rt["rt_cpu"].as_u64());
    assert_eq!(cpus, (Some(2), Some(0), Some(1)), "{}", b.serial);
    assert_eq!(rt["place"], place, "CPU 1's model decides where the RT task runs: {}", b.serial);
    // the RT task pinned to CPU 1, woken by a task of CPU 0: the reschedule IPI
    let w = result(&b, "remote_wakeup");
    assert_eq!((w["waker_cpu"].as_u64(), w["rt_cpu"].as_u64()), (Some(0), Some(1)), "{}", b.serial);
    assert_eq!(w["ok"], true, "{}", b.serial);
    // 100 function calls run on CPU 1 from CPU 0, each waited for
    let ipi = result(&b, "ipi_round_trip_cycles");
    assert_eq!(ipi["ran_on_cpu1"], 100, "{}", b.serial);
    let run = result(&b, "run");
    assert_eq!(run["init"], 0, "{}", b.serial);
    assert_eq!(run["finished"], run["tasks"], "every task finished: {}", b.serial);
    let cpus = results(&b, "cpu");
    assert_eq!(cpus.len(), 2, "{}", b.serial);
    for c in &cpus {
        assert!(c["irqs"].as_u64() > Some(0) && c["switches"].as_u64() > Some(0), "both CPUs worked: {}", b.serial);
    }
    assert!(cpus[0]["ipis_sent"].as_u64() >= Some(101), "CPU 0 sent the IPIs: {}", b.serial);
    assert!(cpus[1]["ipis_received"].as_u64() >= Some(101), "CPU 1 took them as interrupts: {}", b.serial);
    // the register torture on CPU 1, an AP: user mode always, kernel mode under `full`
    let tortures = results(&b, "torture");
    let modes: Vec<&str> = tortures.iter().map(|t| t["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, if model == "full" { vec!["user", "kernel"] } else { vec!["user"] }, "{}", b.serial);
    for t in &tortures {
        assert_eq!((t["cpu"].as_u64(), t["register_mismatches"].as_u64()), (Some(1), Some(0)), "{t}");
        assert!(t["preempted_calls"].as_u64() >= Some(20) && t["red_zone_intact"] == true && t["ok"] == true, "{t}");
    }
    Some(b)
}

#[test]
fn on_two_cpus_under_preempt_none_the_rt_task_on_cpu_1_waits_for_the_system_calls_exit() {
    two_cpus_run_the_smp_scenario("none", "syscall_exit");
}

#[test]
fn on_two_cpus_under_preempt_voluntary_the_rt_task_on_cpu_1_runs_at_the_next_point() {
    two_cpus_run_the_smp_scenario("voluntary", "point");
}

#[test]
fn on_two_cpus_under_preempt_full_the_reschedule_ipis_return_preempts_the_atom_on_cpu_1() {
    two_cpus_run_the_smp_scenario("full", "mid_atom");
}

#[test]
fn on_two_cpus_under_preempt_patch_int3_the_rt_task_on_cpu_1_runs_at_the_armed_point() {
    two_cpus_run_the_smp_scenario("patch-int3", "point");
}

#[test]
fn on_two_cpus_under_preempt_patch_call_the_rt_task_on_cpu_1_runs_at_the_armed_point() {
    two_cpus_run_the_smp_scenario("patch-call", "point");
}

#[test]
fn on_two_cpus_under_the_instruction_counting_clock_two_boots_print_identical_figures() {
    let args = ["-smp", "2", "-icount", "shift=0,sleep=off"];
    let cmdline = "preempt=full cpus=2 image.run=smp";
    let Some(a) = boot_with(&args, cmdline) else { return };
    let Some(b) = boot_with(&args, cmdline) else { return };
    assert_eq!(a.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", a.serial);
    // From the calibration on: the AP's bring-up, the IPI figures, the per-CPU counts.
    let figures = |b: &Boot| b.serial.lines().skip_while(|l| !l.starts_with("time:")).collect::<Vec<_>>().join("\n");
    assert!(figures(&a).contains("ipi_round_trip_cycles"), "{}", a.serial);
    assert_eq!(figures(&a), figures(&b), "two -smp 2 -icount boots differ");
}

#[test]
fn on_two_cpus_patch_sync_ipi_makes_text_poke_bps_rounds_each_answered_by_the_other_cpus_nmi() {
    // The scenario's one event: `int3` is written straight over the idle form and back (a
    // round each); a `call` goes through `int3` first both ways (two rounds each way).
    for (model, rounds) in [("patch-int3", 2), ("patch-call", 4)] {
        let Some(b) = two_cpus_run_the_smp_scenario_with(model, "point", "patch_sync=ipi") else { return };
        let sync = result(&b, "sync_core");
        assert_eq!(sync["rounds"], rounds, "{model}: {}", b.serial);
        assert_eq!(sync["core_rounds"], sync["rounds"], "the core counted the rounds the arch made: {}", b.serial);
        assert_eq!(sync["stray_nmis"], 0, "every NMI found its round: {}", b.serial);
    }
}

#[test]
fn a_task_that_overflows_its_stack_dies_of_an_oops_naming_its_guard_page_and_the_others_finish() {
    let Some(b) = boot("preempt=full image.run=stack-overflow") else { return };
    let s = &b.serial;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{s}");
    let oops = result(&b, "oops");
    assert_eq!(oops["task"], "overflow", "{s}");
    let what = oops["what"].as_str().unwrap_or_default();
    assert!(what.starts_with("kernel stack overflow (guard page hit)") && what.contains("#PF"), "{what}\n{s}");
    assert!(s.contains("Oops: kernel stack overflow (guard page hit)"), "the core's report on the console:\n{s}");
    let died = b.serial.lines().find(|l| l.contains("\"task\":\"overflow\"") && l.contains("\"ok\":true"));
    assert!(died.is_some(), "its joiner got the oops error:\n{s}");
    for i in 0..3 {
        assert!(s.contains(&format!("\"task\":\"worker{i}\",\"result\":\"Ok({i})\"")), "worker{i} finished:\n{s}");
    }
    assert!(!s.contains("EXCEPTION"), "{s}");
}

/// Two boots of `preempt=model` under `-icount shift=0,sleep=off` print the same lines.
fn icount_boots_are_identical(model: &str, place: &str) {
    let icount = ["-icount", "shift=0,sleep=off"];
    let cmdline = format!("preempt={model}");
    let Some(a) = boot_with(&icount, &cmdline) else { return };
    let Some(b) = boot_with(&icount, &cmdline) else { return };
    assert_eq!(a.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", a.serial);
    // From the line after the calibration on, everything the image prints is guest-determined.
    let figures = |b: &Boot| b.serial.lines().skip_while(|l| !l.starts_with("time:")).collect::<Vec<_>>().join("\n");
    assert!(!figures(&a).is_empty(), "{}", a.serial);
    assert_eq!(figures(&a), figures(&b), "two -icount boots differ");
    let rt = result(&a, "rt");
    assert_eq!(rt["place"], place, "{}", a.serial);
}

#[test]
fn under_the_instruction_counting_clock_two_boots_print_identical_figures() {
    icount_boots_are_identical("full", "mid_atom");
}

#[test]
fn under_the_instruction_counting_clock_two_patch_int3_boots_print_identical_figures() {
    icount_boots_are_identical("patch-int3", "point");
}

#[test]
fn a_tasks_panic_ends_the_machine_with_its_message_and_the_panic_status() {
    let Some(b) = boot("preempt=full image.run=panic") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::PANIC), "exit status; serial:\n{}", b.serial);
    assert!(b.serial.contains("PANIC: panicked at crates/arch-metal/src/scenarios.rs"), "{}", b.serial);
    assert!(b.serial.contains("a task's deliberate panic"), "{}", b.serial);
    assert!(!b.serial.contains("survived"), "{}", b.serial);
}
