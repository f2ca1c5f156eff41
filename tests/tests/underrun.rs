//! The underrun test lives in its own process: it sets the fault-injection variable before
//! any other thread exists (setting the environment while other threads read it is unsound).

use refrain_tests::{host_with_model, max_step, sine, Setup};

#[test]
fn a_slow_worker_underruns_to_dry_without_clicks() {
    // 12 ms of extra work per 10 ms chunk: the worker cannot keep up.
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::set_var(refrain_fault_env(), "12") };
    let mut h = host_with_model("test/gain");
    h.activate(Setup::realtime(48_000.0, 128)).unwrap();

    let input = sine(48_000, 48_000.0, 220.0, 0.4);
    let out = h.render(&input, || 128, true).unwrap();
    let latency = h.latency() as usize;
    let max_in = input.iter().map(|c| max_step(c)).fold(0.0f32, f32::max);
    for c in &out {
        assert!(c.iter().all(|x| x.is_finite()));
        let worst = max_step(c);
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
    refrain::chain::ENV_WORKER_DELAY_MS
}
