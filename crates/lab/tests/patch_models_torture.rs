//! The register torture in kernel mode under both patch models (`preempt=patch-int3`,
//! `preempt=patch-call`): nothing lost across patched preemptions, every site idle after.
//!
//! Only patch models run in this test binary (an instance of another model would arm the
//! sites whose bytes the check reads).

use kernel::PreemptModel;
use lab::torture::{self, TortureConfig};

const PATCH: [PreemptModel; 2] = [PreemptModel::PatchInt3, PreemptModel::PatchCall];

#[test]
fn torture_in_kernel_mode_loses_nothing_under_both_patch_models() {
    for model in PATCH {
        let cfg =
            TortureConfig { kernel_mode: true, model, preemptions: 2000, max_secs: 120, ..TortureConfig::default() };
        let r = torture::run(&cfg).unwrap();
        assert!(r.mismatches.is_empty(), "{model}: {:?}", &r.mismatches[..r.mismatches.len().min(10)]);
        assert!(r.preemptions >= 1 && r.rounds > 0, "{model}: {r:?}");
        assert_eq!(r.model, model.name());
        let [events, fired, redirects, _] = r.patch.unwrap();
        assert!(events >= 1 && fired + redirects >= 1, "{model}: {r:?}");
        assert_eq!(kernel::model::patch::sites_not_idle(), 0, "{model}: a site stayed armed after the run");
    }
}
