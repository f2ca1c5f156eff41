//! Soak run: streams audio at real-time pace (paced by a simulated audio clock) in 128-sample
//! blocks through the built-in model, then reports underruns and the worst `process()` time.
//!
//!     cargo run --release -p refrain --example soak -- [minutes]   (default 10)

use refrain::engine::{Controls, EngineConfig};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn main() {
    let minutes: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10.0);
    let (rate, block) = (48_000.0f64, 128usize);
    let config = EngineConfig {
        sample_rate: rate as f32,
        max_block: block,
        channels: 2,
    };
    let mut engine = refrain::chain::Chain::built_in(config, refrain::engine::latency::Mode::Live)
        .expect("engine");
    while engine.status().state() == refrain::engine::status::EngineState::Starting {
        std::thread::sleep(Duration::from_millis(5));
    }
    let blocks = (minutes * 60.0 * rate / block as f64) as usize;
    let period = Duration::from_secs_f64(block as f64 / rate);
    let (mut l, mut r) = (vec![0.0f32; block], vec![0.0f32; block]);
    let mut worst = Duration::ZERO;
    let mut phase = 0.0f64;
    let start = Instant::now();
    for k in 0..blocks {
        for i in 0..block {
            phase += 220.0 / rate;
            l[i] = (phase * std::f64::consts::TAU).sin() as f32 * 0.5;
            r[i] = l[i] * 0.7;
        }
        let t = Instant::now();
        engine.process(&mut [&mut l[..], &mut r[..]], Controls::default());
        worst = worst.max(t.elapsed());
        let due = start + period * (k as u32 + 1);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
    let s = engine.status();
    let hops = s.hops.load(Ordering::Relaxed).max(1);
    println!(
        "soak: {minutes} min, {blocks} blocks of {block} at {rate} Hz: underruns {}, late hops {}, worst process() {:.1} us, \
         model real-time factor {:.4} (mean), worst hop {:.2} ms; {}",
        s.underruns.load(Ordering::Relaxed),
        s.late_hops.load(Ordering::Relaxed),
        worst.as_secs_f64() * 1e6,
        s.total_hop_ns.load(Ordering::Relaxed) as f64 / hops as f64 / 1e9 / (engine.plan().hop_seconds()),
        s.worst_hop_ns.load(Ordering::Relaxed) as f64 / 1e6,
        engine.plan().describe()
    );
}
