//! A model that takes seconds to load while real-time playback runs, through the built
//! `Refrain.clap`: the input ring overflows, a new stream starts once the worker moves, and
//! the processed audio that follows is exactly at the reported latency (it once came out one
//! host block early). Its own test binary: it sets the load-delay fault variable before any
//! plugin thread exists.

use refrain_tests::{host_with_model, impulse, peak_index, Setup};

#[test]
fn after_a_slow_model_load_overflows_the_ring_processed_audio_is_aligned() {
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::set_var(refrain::chain::ENV_LOAD_DELAY_MS, "2500") };
    let rate = 48_000.0;
    let mut h = host_with_model("test/invert");
    h.activate(Setup::realtime(rate, 4096)).unwrap();
    // Four seconds at real-time pace with 4096-sample blocks; the impulse comes well after the
    // model has loaded and the stream has restarted.
    let at = 3 * 48_000 + 1_234;
    let input = impulse(2, at + 40_000, at);
    let out = h.render(&input, || 4096, true).unwrap();
    // The model loaded after activation, so its measured inference time changed the latency
    // once; the plugin reported it and the host restarted it, as a DAW does.
    let latency = h.latency() as usize;
    assert_eq!(peak_index(&out[0]), at + latency);
    assert_eq!(
        out[0][at + latency],
        -1.0,
        "processed (flipped), exactly at the latency"
    );
}
