//! Soak run: streams audio at real-time pace (paced by a simulated audio clock) through a model
//! in Live mode, then reports underruns, late hops, the worst `process()` time and the hop time
//! percentiles.
//!
//! The simulated audio thread makes itself real-time the way a DAW's is (`SCHED_FIFO`, default
//! priority 60), and the worker asks for its own priority one below it: nothing is inherited
//! from a `chrt`'d process.
//!
//!     cargo run --release -p refrain --example soak -- [minutes] [--block N] [--rate HZ]
//!         [--mode live|studio] [--model PATH] [--audio-priority N (0: normal)]

use refrain::chain::{Chain, ChainKey};
use refrain::engine::latency::Mode;
use refrain::engine::status::EngineState;
use refrain::engine::{Controls, EngineConfig};
use refrain::licence::enforce::Setting;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let rate: f64 = arg(&args, "--rate", 48_000.0);
    let block: usize = arg(&args, "--block", 128);
    let audio_priority: i32 = arg(&args, "--audio-priority", 60);
    let mode = Mode::parse(&arg(&args, "--mode", "live".to_string())).unwrap_or(Mode::Live);
    let model: String = arg(&args, "--model", refrain::models::BUILTIN_ID.to_string());

    let key = ChainKey {
        model,
        track: String::new(),
        mode,
        config: EngineConfig {
            sample_rate: rate as f32,
            max_block: block,
            channels: 2,
        },
        setting: Setting::Studio,
        notes: None,
        note_settings: Default::default(),
    };
    // Built off the audio thread, as the plugin's activation does.
    let mut chain = Chain::build(key, |_| {}).expect("chain");
    let audio = std::thread::Builder::new()
        .name("soak-audio".into())
        .spawn(move || {
            let sched = if audio_priority > 0 {
                let param = libc::sched_param {
                    sched_priority: audio_priority,
                };
                match unsafe {
                    libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param)
                } {
                    0 => format!("SCHED_FIFO {audio_priority}"),
                    e => format!(
                        "normal (SCHED_FIFO refused: {})",
                        std::io::Error::from_raw_os_error(e)
                    ),
                }
            } else {
                "normal".into()
            };
            while chain.engine.status().state() == EngineState::Starting {
                std::thread::sleep(Duration::from_millis(5));
            }
            let blocks = (minutes * 60.0 * rate / block as f64) as usize;
            let mut pacer = refrain::testkit::Pacer::new(rate, 1.0);
            let period = Duration::from_secs_f64(block as f64 / rate);
            let mut xruns = 0u64;
            // Underruns within 100 ms after a host xrun are the stall's, not the plugin's.
            let mut last_xrun: Option<usize> = None;
            let mut underruns_after_xrun = 0u64;
            let window = (0.1 * rate / block as f64).ceil() as usize;
            let (mut l, mut r) = (vec![0.0f32; block], vec![0.0f32; block]);
            let mut times = Vec::with_capacity(blocks);
            let mut phase = 0.0f64;
            for k in 0..blocks {
                for i in 0..block {
                    phase += 220.0 / rate;
                    l[i] = (phase * std::f64::consts::TAU).sin() as f32 * 0.5;
                    r[i] = l[i] * 0.7;
                }
                let before = chain.engine.status().underruns.load(Ordering::Relaxed);
                let t = Instant::now();
                chain.process(
                    &mut [&mut l[..], &mut r[..]],
                    &mut [],
                    Controls::default(),
                    true,
                );
                times.push(t.elapsed().as_nanos() as u64);
                let new = chain.engine.status().underruns.load(Ordering::Relaxed) - before;
                if last_xrun.is_some_and(|x| k - x <= window) {
                    underruns_after_xrun += new;
                }
                // A block that comes back more than a period late is the host's own xrun (the
                // machine stalled the audio thread): a driver moves on, it does not race.
                if pacer.wait_or_slip(((k + 1) * block) as u64, period) {
                    xruns += 1;
                    last_xrun = Some(k);
                }
            }
            (chain, times, blocks, sched, xruns, underruns_after_xrun)
        })
        .expect("audio thread");
    let (chain, mut times, blocks, sched, xruns, after_xrun) = audio.join().expect("audio thread");
    times.sort_unstable();
    let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    let s = chain.engine.status();
    let plan = chain.engine.plan();
    let period_us = block as f64 / rate * 1e6;
    println!(
        "soak: {minutes} min, {blocks} blocks of {block} at {rate} Hz, audio thread {sched}\n\
         underruns {} ({after_xrun} within 100 ms after a host xrun), late hops {}, overflows {}; \
         host xruns (the audio thread itself more than a block late) {xruns}\n\
         process(): median {:.1} us, p99 {:.1} us, worst {:.1} us (block period {period_us:.0} us)\n\
         hops: {} run, real-time factor {:.4} (mean), p50 {:.3} ms, p99.9 {:.3} ms, worst {:.3} ms\n\
         worker: {}\ndevice: {}\n{}",
        s.underruns.load(Ordering::Relaxed),
        s.late_hops.load(Ordering::Relaxed),
        s.overflows.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        s.hops.load(Ordering::Relaxed),
        s.real_time_factor(plan.hop_seconds()),
        s.hop_percentile(0.5) as f64 / 1e6,
        s.hop_percentile(0.999) as f64 / 1e6,
        s.worst_hop_ns.load(Ordering::Relaxed) as f64 / 1e6,
        s.priority(),
        s.device(),
        plan.describe()
    );
}
