//! Audio-thread cost of `Engine::process()` for a 128-sample stereo block at 48 kHz with the
//! worker running the built-in ONNX model (or, without ONNX Runtime, a pure-Rust model), and of
//! the same block with Spleeter separating into the main output and four stereo stem outputs
//! (when set-up has fetched it). Target: median under 1% of the block period (26.7 us), p99
//! under 5%.

use criterion::{criterion_group, criterion_main, Criterion};
use refrain::chain::{Chain, ChainKey};
use refrain::engine::latency::Mode;
use refrain::engine::{Controls, EngineConfig};
use refrain::licence::enforce::Setting;
use std::time::{Duration, Instant};

fn bench_process(c: &mut Criterion) {
    let config = EngineConfig {
        sample_rate: 48_000.0,
        max_block: 128,
        channels: 2,
    };
    let mut engine =
        refrain::chain::Chain::built_in(config, refrain::engine::latency::Mode::Live).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "model state: {:?} ({})",
        engine.status().state(),
        engine.status().message()
    );
    let mut l: Vec<f32> = (0..128).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let mut r = l.clone();
    // Paced like a sound card so the worker keeps up, as in a live set; criterion times the calls.
    let period = Duration::from_secs_f64(128.0 / 48_000.0);
    let mut next = Instant::now();
    c.bench_function("process 128 stereo @48k (worker running)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                engine.process(&mut [&mut l[..], &mut r[..]], Controls::default());
                total += start.elapsed();
                next += period;
                if let Some(w) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                } else {
                    next = Instant::now();
                }
            }
            total
        })
    });
    // Percentiles over 20,000 paced blocks (~53 s of audio).
    let mut times = Vec::with_capacity(20_000);
    let mut next = Instant::now();
    for _ in 0..20_000 {
        let start = Instant::now();
        engine.process(&mut [&mut l[..], &mut r[..]], Controls::default());
        times.push(start.elapsed().as_nanos() as u64);
        next += period;
        if let Some(w) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    eprintln!(
        "process(): median {:.2} us, p99 {:.2} us, worst {:.2} us (block period 2666.7 us); underruns {}",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        engine.status().underruns.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// The audio thread with Spleeter in the worker and all five outputs connected, paced like a
/// sound card for 10,000 blocks (27 s): percentiles of `process_stems()`.
fn bench_stems(_c: &mut Criterion) {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real/spleeter-2stems/model.toml");
    if !model.exists() {
        eprintln!(
            "stems: {} is missing (set-up fetches it); skipped",
            model.display()
        );
        return;
    }
    let config = EngineConfig {
        sample_rate: 48_000.0,
        max_block: 128,
        channels: 2,
    };
    let key = ChainKey {
        model: model.display().to_string(),
        track: String::new(),
        mode: Mode::Live,
        config,
        setting: Setting::Studio,
        notes: None,
        note_settings: Default::default(),
    };
    let mut chain = Chain::build(key, |_| {}).unwrap();
    while chain.engine.status().state() == refrain::engine::status::EngineState::Starting {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut l: Vec<f32> = (0..128).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let mut r = l.clone();
    let mut aux = vec![vec![0.0f32; 128]; 8];
    let period = Duration::from_secs_f64(128.0 / 48_000.0);
    let mut times = Vec::with_capacity(10_000);
    let mut next = Instant::now();
    for _ in 0..10_000 {
        let (a, b) = aux.split_at_mut(4);
        let (s0, s1) = a.split_at_mut(2);
        let (s2, s3) = b.split_at_mut(2);
        let mut chans: Vec<Vec<&mut [f32]>> = [s0, s1, s2, s3]
            .into_iter()
            .map(|s| s.iter_mut().map(|c| &mut c[..]).collect())
            .collect();
        let mut stems: Vec<&mut [&mut [f32]]> = chans.iter_mut().map(|s| &mut s[..]).collect();
        let start = Instant::now();
        chain.process(
            &mut [&mut l[..], &mut r[..]],
            &mut stems,
            Controls::default(),
            true,
        );
        times.push(start.elapsed().as_nanos() as u64);
        next += period;
        if let Some(w) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let status = chain.engine.status();
    eprintln!(
        "process() with Spleeter and five outputs: median {:.2} us, p99 {:.2} us, worst {:.2} us (block period 2666.7 us); latency {} samples; underruns {}, late hops {}",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        chain.engine.latency(),
        status.underruns.load(std::sync::atomic::Ordering::Relaxed),
        status.late_hops.load(std::sync::atomic::Ordering::Relaxed)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench_process, bench_stems
}
criterion_main!(benches);
