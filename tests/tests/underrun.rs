//! The underrun test lives in its own process: it sets the fault-injection variable before
//! any other thread exists (setting the environment while other threads read it is unsound).

use refrain_tests::{default_plugin_path, Host, Setup};
use std::path::Path;

fn sine(len: usize, rate: f64, f: f64, amp: f32) -> Vec<Vec<f32>> {
    let l: Vec<f32> = (0..len)
        .map(|i| amp * (std::f64::consts::TAU * f * i as f64 / rate).sin() as f32)
        .collect();
    vec![l.clone(), l.iter().map(|x| -0.5 * x).collect()]
}

fn host_with_model(model: &Path) -> Host {
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    h.set_state_field("model", model.to_str().unwrap()).unwrap();
    h
}

fn models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn a_slow_worker_underruns_to_dry_without_clicks() {
    // 12 ms of extra work per 10 ms chunk: the worker cannot keep up.
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::set_var(refrain_fault_env(), "12") };
    let mut h = host_with_model(&models().join("test/gain/model.toml"));
    h.activate(Setup::realtime(48_000.0, 128)).unwrap();

    let input = sine(48_000, 48_000.0, 220.0, 0.4);
    let out = h.render(&input, || 128, true).unwrap();
    let latency = h.latency() as usize;
    let max_in = input
        .iter()
        .flat_map(|c| c.windows(2).map(|w| (w[1] - w[0]).abs()))
        .fold(0.0f32, f32::max);
    for c in &out {
        assert!(c.iter().all(|x| x.is_finite()));
        let worst = c
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        // The gain model doubles the right channel: allow that, plus the fade's power bump.
        assert!(
            worst <= 2.0 * max_in * 1.5 + 1e-3,
            "click: step {worst} vs input {max_in}"
        );
    }
    // Dry was heard: somewhere after the latency the left channel equals the aligned input.
    let dry_heard = (latency + 2_000..48_000)
        .any(|i| out[0][i] == input[0][i - latency] && input[0][i - latency].abs() > 0.1);
    assert!(
        dry_heard,
        "the late worker must fall back to the dry signal"
    );
}

fn refrain_fault_env() -> &'static str {
    "REFRAIN_FAULT_WORKER_DELAY_MS"
}
