//! The seed scenario with `patch_sync=ipi`, in a test binary of its own: the rounds are made
//! only when a site's byte changes, and the instances of other tests in one process (a
//! `voluntary` run claims every site as `call`) would change that.

use kernel::PreemptModel;
use services::scenario::{self, ScenarioConfig};

/// The patch models with `patch_sync=ipi` (every patch made as `text_poke_bp` does) place the
/// RT task where they do without the rounds, on one CPU and across two, and make the rounds.
#[test]
fn the_patch_models_with_text_poke_bp_rounds_place_the_rt_task_after_atom_1() {
    for (model, cpus) in [
        (PreemptModel::PatchInt3, 1),
        (PreemptModel::PatchCall, 1),
        (PreemptModel::PatchInt3, 2),
        (PreemptModel::PatchCall, 2),
    ] {
        let config =
            kernel::Config { preempt: model, cpus, patch_sync: kernel::PatchSync::Ipi, ..kernel::Config::default() };
        let r = scenario::run_with(config, &ScenarioConfig::default()).unwrap();
        assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 1), "{model} on {cpus}: {r:?}");
        assert_eq!(r.patch_sync, "ipi");
        assert!(r.patch.sync_rounds > 0, "{model} on {cpus}: {:?}", r.patch);
        assert_eq!(r.sites_armed_at_rt, 0, "{model} on {cpus}: a site armed when the RT task ran");
    }
}
