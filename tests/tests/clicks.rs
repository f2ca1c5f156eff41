//! Clicks when the worker falls behind, through the built `Refrain.clap`: a 110 Hz sine at 0.5,
//! random block sizes from 1 to 4096 samples, a host clock running faster than real time so
//! the worker is late again and again. The half-gain test model makes processed and dry audio
//! differ by 6 dB, so every switch between them is a chance to click. In every run the largest
//! sample-to-sample step stays within 1.5 times the larger of the dry input's and the
//! processed-only output's largest step, plus 0.001.

use refrain_tests::{host_with_model, max_step, sine, Lcg, Setup};

#[test]
fn a_late_worker_never_clicks_over_twenty_seeds_of_random_block_sizes() {
    let rate = 48_000.0;
    let input = sine(96_000, rate, 110.0, 0.5);
    let mut dry_heard = 0;
    for seed in 0..20u64 {
        let mut h = host_with_model("test/half");
        h.activate(Setup::realtime(rate, 4096)).unwrap();
        let latency = h.latency() as usize;
        let mut rng = Lcg(seed * 7 + 3);
        let out = h
            .render_at(&input, || 1 + (rng.next_u32() % 4096) as usize, None)
            .unwrap();
        for (c, chan) in out.iter().enumerate() {
            let dry = max_step(&input[c]);
            let limit = 1.5 * dry.max(0.5 * dry) + 0.001;
            let worst = max_step(chan);
            assert!(
                worst <= limit,
                "seed {seed} channel {c}: step {worst} vs {limit}"
            );
            assert!(chan.iter().all(|x| x.is_finite()));
        }
        // Where the worker was late, the aligned dry signal was heard.
        dry_heard += (latency..input[0].len())
            .filter(|&i| out[0][i] == input[0][i - latency] && input[0][i - latency].abs() > 0.1)
            .count();
    }
    assert!(
        dry_heard > 0,
        "the host never got ahead of the worker: no fallback was tested"
    );
}
