//! `model.toml` as a model author writes it: [`Manifest::parse`] refuses what it cannot use
//! with a message and never panics, and what it accepts plans a stream at the usual host rates
//! (the plugin does that as soon as a model loads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use refrain::engine::latency::{LatencyPlan, Mode};
use refrain::models::manifest::{check_relative_path, Manifest};

fuzz_target!(|text: &str| {
    // The path check alone, on text that is not TOML at all.
    let _ = check_relative_path("model.file", text);
    let manifest = match Manifest::parse(text) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Accepted means every path stays inside the model's folder.
    check_relative_path("model.file", &manifest.model.file).expect("model.file was checked");
    for f in &manifest.files {
        check_relative_path("files.path", &f.path).expect("files.path was checked");
    }
    let spec = manifest.spec();
    for host_rate in [44_100.0, 48_000.0] {
        for mode in [Mode::Live, Mode::Studio] {
            if let Ok(plan) = LatencyPlan::new(spec, host_rate, 512, mode, None) {
                let _ = (plan.total(), plan.floor(), plan.tail(), plan.describe());
            }
        }
    }
});
