//! A model that never finishes, in a host. Its own process: it sets the run limit before any
//! plugin thread exists (setting the environment while other threads read it is unsound), to
//! a minute, so that the model's threads are really stuck for the whole test; the watchdog's
//! own stop is tested through `refrain render` (`plugin/tests/untrusted_models.rs`).

use refrain::testkit::onnx;
use refrain_tests::{default_plugin_path, max_step, models_dir, sine, Host, Setup};
use std::time::{Duration, Instant};

const HOP: usize = 480;

/// Every sample from `from` on is the input delayed by `latency`: the dry signal, aligned.
fn assert_dry_aligned(input: &[Vec<f32>], out: &[Vec<f32>], latency: usize, from: usize) {
    for (c, (x, y)) in input.iter().zip(out).enumerate() {
        for i in from.max(latency)..y.len() {
            assert_eq!(
                y[i],
                x[i - latency],
                "channel {c}, frame {i}: not the aligned dry signal"
            );
        }
    }
}

#[test]
fn a_stuck_model_plays_dry_and_aligned_and_never_holds_up_deactivation_a_model_change_or_closing() {
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::set_var(refrain::models::watchdog::ENV_MAX_RUN_MS, "60000") };
    let dir = tempfile::tempdir().unwrap();
    let stuck = onnx::model_folder(&dir.path().join("loop"), HOP, onnx::endless_loop(HOP), &[])
        .join("model.toml");
    let stuck = stuck.to_str().unwrap();
    let half = models_dir().join("test/half/model.toml");

    // 1. The stuck model in a playing host: the dry signal, aligned, with no click.
    let mut h = Host::load(&default_plugin_path()).unwrap();
    h.set_state_field("model", stuck).unwrap();
    h.activate(Setup::realtime(48_000.0, 128)).unwrap();
    let input = sine(48_000, 48_000.0, 220.0, 0.4);
    let out = h.render(&input, || 128, true).unwrap();
    let latency = h.latency() as usize;
    assert_dry_aligned(&input, &out, latency, 0);
    assert!(max_step(&out[0]) <= max_step(&input[0]) + 1e-6);

    // 2. Deactivation returns at once.
    let t = Instant::now();
    h.deactivate();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "deactivation took {:?}",
        t.elapsed()
    );

    // 3. A model change away from it: the new model is heard (half the input), soon.
    let t = Instant::now();
    h.set_state_field("model", half.to_str().unwrap()).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the model change took {:?}",
        t.elapsed()
    );
    h.activate(Setup::realtime(48_000.0, 128)).unwrap();
    let input = sine(3 * 48_000, 48_000.0, 220.0, 0.4);
    let out = h.render(&input, || 128, true).unwrap();
    let latency = h.latency() as usize;
    let tail = 2 * 48_000..3 * 48_000;
    let heard = tail
        .clone()
        .all(|i| (out[0][i] - 0.5 * input[0][i - latency]).abs() < 1e-5);
    assert!(
        heard,
        "the working model is heard within two seconds of the change"
    );
    let t = Instant::now();
    drop(h);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "closing took {:?}",
        t.elapsed()
    );

    // 4. Closing a project while the stuck model is running: deactivation and the plugin's
    // destruction together return within a second.
    let mut h = Host::load(&default_plugin_path()).unwrap();
    h.set_state_field("model", stuck).unwrap();
    h.activate(Setup::realtime(48_000.0, 128)).unwrap();
    let input = sine(24_000, 48_000.0, 220.0, 0.4);
    let out = h.render(&input, || 128, true).unwrap();
    assert_dry_aligned(&input, &out, h.latency() as usize, 0);
    let t = Instant::now();
    h.deactivate();
    drop(h);
    let closing = t.elapsed();
    assert!(closing < Duration::from_secs(1), "closing took {closing:?}");
    // It had to leave the stuck worker behind (a model that failed at once would not hold
    // anything up, and this test would prove nothing).
    assert!(
        closing >= refrain::detach::JOIN_WAIT,
        "closing took {closing:?}"
    );
    // The host has unloaded the plugin's library as far as it knows; the thread left behind
    // still runs its code, so the library must still be mapped.
    #[cfg(target_os = "linux")]
    {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let clap = default_plugin_path().canonicalize().unwrap();
        assert!(
            maps.contains(clap.to_str().unwrap()),
            "the plugin's library stays loaded while a thread it left behind may run"
        );
    }
}
