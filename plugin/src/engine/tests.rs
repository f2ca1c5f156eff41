//! Engine tests without a host: exact latency over rates x block sizes, underruns, resets,
//! swaps, bypass, failures, determinism, and no allocation on the audio path.

use super::*;
use crate::models::processor::DelayGain;

/// Test model contract: 48 kHz stereo, 10 ms hop, some context and latency.
fn spec() -> StreamSpec {
    StreamSpec {
        sample_rate: 48_000,
        channels: 2,
        hop: 480,
        context: 64,
        latency: 33,
    }
}

fn loader(p: DelayGain) -> ModelLoader {
    Box::new(move || Ok(Box::new(p) as Box<dyn HopProcessor>))
}

/// A small deterministic generator (no dev-dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Block sizes to drive the engine with: fixed, or random in 1..=max changing every block.
#[derive(Clone, Copy, Debug)]
enum Blocks {
    Fixed(usize),
    Random(u64),
}

/// Runs `input` (planar) through `engine` in blocks, without allocating inside `process()`.
/// `pace` sleeps for each block's duration, like a sound card in real time.
fn render(
    engine: &mut Engine,
    input: &[Vec<f32>],
    blocks: Blocks,
    max_block: usize,
    pace: bool,
) -> Vec<Vec<f32>> {
    let len = input[0].len();
    let mut out = input.to_vec();
    let mut rng = match blocks {
        Blocks::Random(seed) => Lcg(seed),
        Blocks::Fixed(_) => Lcg(0),
    };
    let rate = engine.config().sample_rate as f64;
    let start = Instant::now();
    let mut t = 0;
    while t < len {
        let n = match blocks {
            Blocks::Fixed(n) => n,
            Blocks::Random(_) => 1 + (rng.next() as usize % max_block),
        }
        .min(len - t);
        let (a, b) = out.split_at_mut(1);
        let mut io: [&mut [f32]; 2] = [&mut a[0][t..t + n], &mut b[0][t..t + n]];
        nice_assert_no_alloc::assert_no_alloc(|| engine.process(&mut io, Controls::default()));
        t += n;
        if pace {
            let due = start + Duration::from_secs_f64(t as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    out
}

fn config(rate: f32, max_block: usize, offline: bool) -> EngineConfig {
    EngineConfig {
        sample_rate: rate,
        max_block,
        channels: 2,
        offline,
    }
}

fn wait_running(engine: &Engine) {
    let start = Instant::now();
    while engine.status().state() == EngineState::Starting
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Bit-identical, reporting the first difference instead of two whole signals.
fn assert_identical(a: &[Vec<f32>], b: &[Vec<f32>]) {
    for (c, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len());
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
            panic!(
                "channel {c} differs first at sample {i}: {} vs {}",
                x[i], y[i]
            );
        }
    }
}

fn peak_index(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0
}

#[test]
fn impulse_comes_out_at_the_reported_sample_for_every_rate_and_block_size() {
    let sizes = [1usize, 17, 64, 128, 441, 512, 1024, 4096];
    for rate in [44_100.0f32, 48_000.0, 96_000.0] {
        let mut cases: Vec<(Blocks, usize)> =
            sizes.iter().map(|&n| (Blocks::Fixed(n), n)).collect();
        cases.push((Blocks::Random(rate as u64), 4096));
        for (blocks, max_block) in cases {
            let mut engine = Engine::start(
                config(rate, max_block, true),
                spec(),
                loader(DelayGain::new(spec())),
                WorkerOptions::default(),
            )
            .unwrap();
            let latency = engine.latency() as usize;
            let at = 3_000;
            let len = at + latency + 2_000;
            let mut input = vec![vec![0.0f32; len]; 2];
            input[0][at] = 1.0;
            input[1][at] = -0.5;
            let out = render(&mut engine, &input, blocks, max_block, false);
            assert_eq!(
                peak_index(&out[0]),
                at + latency,
                "rate {rate} {blocks:?}: {}",
                engine.plan().describe()
            );
            assert_eq!(
                peak_index(&out[1]),
                at + latency,
                "rate {rate} {blocks:?} right"
            );
            if rate == 48_000.0 {
                assert_eq!(out[0][at + latency], 1.0);
                assert_eq!(out[1][at + latency], -0.5);
            } else {
                // Band-limited by the resamplers: at 96 kHz the round trip halves the bandwidth.
                assert!(
                    out[0][at + latency] > 0.4 && out[1][at + latency] < -0.2,
                    "{} {}",
                    out[0][at + latency],
                    out[1][at + latency]
                );
            }
            assert_eq!(
                engine.status().underruns.load(Ordering::Relaxed),
                0,
                "offline never underruns"
            );
        }
    }
}

fn sine(len: usize, rate: f32, freq: f32, amp: f32) -> Vec<Vec<f32>> {
    let l: Vec<f32> = (0..len)
        .map(|i| amp * (i as f32 * freq * std::f32::consts::TAU / rate).sin())
        .collect();
    let r = l.iter().map(|x| x * 0.8).collect();
    vec![l, r]
}

#[test]
fn real_time_with_a_fast_worker_matches_the_bounce_exactly() {
    let rate = 48_000.0;
    // A 1024-sample maximum with 128-sample blocks leaves the worker ~30 ms of slack, so a
    // busy CI machine does not make this exactness test flaky.
    let input = sine(24_000, rate, 330.0, 0.5);
    let mut offline = Engine::start(
        config(rate, 1024, true),
        spec(),
        loader(DelayGain::new(spec())),
        WorkerOptions::default(),
    )
    .unwrap();
    let bounce = render(&mut offline, &input, Blocks::Fixed(128), 1024, false);
    let mut live = Engine::start(
        config(rate, 1024, false),
        spec(),
        loader(DelayGain::new(spec())),
        WorkerOptions::default(),
    )
    .unwrap();
    wait_running(&live);
    let played = render(&mut live, &input, Blocks::Fixed(128), 1024, true);
    assert_eq!(live.status().underruns.load(Ordering::Relaxed), 0);
    assert_identical(&played, &bounce);
}

#[test]
fn a_late_worker_crossfades_to_dry_without_clicks_gaps_or_nan() {
    let rate = 48_000.0;
    let input = sine(48_000, rate, 220.0, 0.5);
    let max_in_step = input[0]
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    let mut slow = DelayGain::new(spec());
    slow.gains = vec![0.3, 0.3];
    // Every other chunk takes 1.6 chunk periods: the worker keeps falling behind and catching up.
    slow.sleep = Duration::from_millis(16);
    let mut engine = Engine::start(
        config(rate, 128, false),
        spec(),
        loader(slow),
        WorkerOptions::default(),
    )
    .unwrap();
    wait_running(&engine);
    let out = render(&mut engine, &input, Blocks::Fixed(128), 128, true);
    let latency = engine.latency() as usize;
    assert!(
        engine.status().underruns.load(Ordering::Relaxed) > 0,
        "the slow worker must underrun"
    );
    assert!(out.iter().flatten().all(|x| x.is_finite()));
    for (c, chan) in out.iter().enumerate() {
        let worst = chan
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= max_in_step * 1.5 + 1e-3,
            "channel {c}: step {worst} vs input {max_in_step}"
        );
        // No gap: after the latency, the output is never silent for a whole crossfade.
        let silent = chan[latency + 64..]
            .windows(64)
            .any(|w| w.iter().all(|x| x.abs() < 1e-6));
        assert!(!silent, "channel {c} has a silent gap");
    }
}

#[test]
fn reset_mid_stream_restarts_with_the_same_alignment() {
    let mut engine = Engine::start(
        config(48_000.0, 256, true),
        spec(),
        loader(DelayGain::new(spec())),
        WorkerOptions::default(),
    )
    .unwrap();
    let latency = engine.latency() as usize;
    let input = sine(10_000, 48_000.0, 440.0, 0.5);
    render(&mut engine, &input, Blocks::Fixed(256), 256, false);
    nice_assert_no_alloc::assert_no_alloc(|| engine.reset());
    let mut impulse = vec![vec![0.0f32; latency + 4_000]; 2];
    impulse[0][700] = 1.0;
    impulse[1][700] = 1.0;
    let out = render(&mut engine, &impulse, Blocks::Fixed(100), 256, false);
    assert_eq!(peak_index(&out[0]), 700 + latency);
    assert_eq!(out[0][700 + latency], 1.0);
    // Nothing of the sine before the reset leaks into the new stream.
    assert!(out[0]
        .iter()
        .enumerate()
        .all(|(i, &x)| i == 700 + latency || x == 0.0));
}

#[test]
fn a_model_swap_is_crossfaded_and_lands_exactly() {
    let rate = 48_000.0;
    let mut engine = Engine::start(
        config(rate, 64, true),
        spec(),
        loader(DelayGain::new(spec())),
        WorkerOptions::default(),
    )
    .unwrap();
    let latency = engine.latency() as usize;
    let input = sine(40_000, rate, 200.0, 0.5);
    let max_in_step = input[0]
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    let first = render(
        &mut engine,
        &[input[0][..20_000].to_vec(), input[1][..20_000].to_vec()],
        Blocks::Fixed(64),
        64,
        false,
    );
    let mut quieter = DelayGain::new(spec());
    quieter.gains = vec![0.25, 0.25];
    assert!(engine.swap_model(Box::new(quieter)).is_ok());
    let second = render(
        &mut engine,
        &[input[0][20_000..].to_vec(), input[1][20_000..].to_vec()],
        Blocks::Fixed(64),
        64,
        false,
    );
    let out: Vec<f32> = first[0].iter().chain(&second[0]).copied().collect();
    for (i, &y) in out.iter().enumerate().take(20_000).skip(latency) {
        assert_eq!(y, input[0][i - latency], "before the swap, sample {i}");
    }
    let tail = out.len() - 2_000;
    for (i, &y) in out.iter().enumerate().skip(tail) {
        assert!(
            (y - 0.25 * input[0][i - latency]).abs() < 1e-6,
            "after the swap, sample {i}"
        );
    }
    let worst = out
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= max_in_step * 1.5, "swap click: {worst}");
}

#[test]
fn a_model_that_fails_to_load_passes_latency_aligned_dry_audio() {
    let failing: ModelLoader = Box::new(|| Err("the model file /x/y.onnx is missing".into()));
    let mut engine = Engine::start(
        config(44_100.0, 512, false),
        spec(),
        failing,
        WorkerOptions::default(),
    )
    .unwrap();
    let start = Instant::now();
    while engine.status().state() != EngineState::Failed && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(engine.status().state(), EngineState::Failed);
    assert!(engine.status().message().contains("/x/y.onnx is missing"));
    let latency = engine.latency() as usize;
    let input = sine(8_000, 44_100.0, 1_000.0, 0.7);
    let out = render(&mut engine, &input, Blocks::Random(7), 512, false);
    for c in 0..2 {
        assert!(out[c][..latency].iter().all(|&x| x == 0.0));
        assert_eq!(&out[c][latency..], &input[c][..input[c].len() - latency]);
    }
}

#[test]
fn bypass_is_the_aligned_dry_signal_after_the_fade() {
    let mut quiet = DelayGain::new(spec());
    quiet.gains = vec![0.1, 0.1];
    let mut engine = Engine::start(
        config(48_000.0, 64, true),
        spec(),
        loader(quiet),
        WorkerOptions::default(),
    )
    .unwrap();
    let latency = engine.latency() as usize;
    let input = sine(6_000, 48_000.0, 500.0, 0.5);
    let mut out = input.clone();
    for t in (0..6_000).step_by(64) {
        let e = (t + 64).min(6_000);
        let (a, b) = out.split_at_mut(1);
        let mut io: [&mut [f32]; 2] = [&mut a[0][t..e], &mut b[0][t..e]];
        engine.process(
            &mut io,
            Controls {
                mix: 1.0,
                bypass: true,
            },
        );
    }
    let fade = engine.plan().crossfade_reserve;
    for i in latency + fade..6_000 {
        assert_eq!(out[0][i], input[0][i - latency], "sample {i}");
    }
}

#[test]
fn two_bounces_are_bit_identical() {
    let input = sine(30_000, 44_100.0, 123.0, 0.9);
    let run = || {
        let mut e = Engine::start(
            config(44_100.0, 1024, true),
            spec(),
            loader(DelayGain::new(spec())),
            WorkerOptions::default(),
        )
        .unwrap();
        render(&mut e, &input, Blocks::Random(99), 1024, false)
    };
    let (a, b) = (run(), run());
    assert_identical(&a, &b);
    assert!(
        a[0].iter().any(|&x| x.abs() > 0.5),
        "the bounce carries the signal"
    );
}

#[test]
fn unsupported_host_rates_are_refused_with_a_reason() {
    let err = Engine::start(
        config(44_101.0, 64, false),
        spec(),
        loader(DelayGain::new(spec())),
        WorkerOptions::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("44101 Hz"));
}
