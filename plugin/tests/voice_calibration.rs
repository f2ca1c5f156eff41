//! A Live voice is measured on this machine once per process (`voice::rvc::calibrate_live`) to
//! pick the shortest block it keeps up with. A real-size voice takes seconds to measure, which
//! a host's activation must not wait for: the activation plans it on the default Live schedule
//! (`Chain::build_deferring`, the chain marked provisional) and the loader measures it on its
//! own thread and builds it again. Its own binary: the measurement is cached per process.

use refrain::chain::{Chain, ChainKey};
use refrain::engine::latency::Mode;
use refrain::models::package::{Limits, ModelPackage};

fn key(model: &std::path::Path) -> ChainKey {
    refrain::testkit::chain_key(&model.display().to_string(), Mode::Live)
}

#[test]
fn an_activation_plans_an_unmeasured_live_voice_provisionally_and_the_loaders_build_measures_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // SAFETY: set once, before any chain (or thread of one) exists in this binary.
    unsafe {
        std::env::set_var(
            refrain::models::library::ENV_MODEL_PATH,
            root.join("models/real"),
        );
    }
    let manifest = root.join("models/test/rvc-v2/model.toml");
    let package = ModelPackage::read(&manifest, Limits::from_env()).unwrap();
    assert!(!refrain::voice::rvc::is_calibrated(&package));

    // The activation's build: no measurement, a provisional chain on the default schedule.
    let chain = Chain::build_deferring(key(&manifest), |_| {}).unwrap();
    assert!(chain.provisional_schedule);
    assert!(!refrain::voice::rvc::is_calibrated(&package), "it measured");
    drop(chain);

    // The loader's build measures it, once; every later build (an activation too) uses that.
    let chain = Chain::build(key(&manifest), |_| {}).unwrap();
    assert!(!chain.provisional_schedule);
    assert!(refrain::voice::rvc::is_calibrated(&package));
    let latency = chain.engine.latency();
    drop(chain);
    let again = Chain::build_deferring(key(&manifest), |_| {}).unwrap();
    assert!(!again.provisional_schedule);
    assert_eq!(
        again.engine.plan().spec,
        Chain::build(key(&manifest), |_| {})
            .unwrap()
            .engine
            .plan()
            .spec
    );
    assert!(again.engine.latency() > 0 && latency > 0);

    // Studio and models that are not voices are never provisional.
    let mut studio = key(&manifest);
    studio.mode = Mode::Studio;
    assert!(
        !Chain::build_deferring(studio, |_| {})
            .unwrap()
            .provisional_schedule
    );
    let tone = key(&root.join("models/tone-shaper/model.toml"));
    assert!(
        !Chain::build_deferring(tone, |_| {})
            .unwrap()
            .provisional_schedule
    );
}
