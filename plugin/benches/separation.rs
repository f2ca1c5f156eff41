//! Separation and notes timings with the real models (`cargo bench -p refrain --bench
//! separation`; set-up fetches them): Spleeter's Studio segment and Live pass, median and p99,
//! and the real-time factor each schedule needs; the four-stem DSP per second of audio; one
//! Basic Pitch window; and, when `python3 models/sizes.py` has written them into
//! `target/model-sizes`, one segment of MDX-Net and of Demucs at their real layer sizes, with
//! what a 4-minute song takes. Figures go to README with the machine they came from.

use realfft::num_complex::Complex32;
use refrain::models::package::{Limits, ModelPackage};
use refrain::separation::four_stems::{self, FourStems};
use refrain::separation::model::SeparatorModel;
use refrain::separation::separator::{LIVE_PASS, LIVE_WINDOW, STUDIO_OVERLAP, STUDIO_SEGMENT};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn real(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real")
        .join(rel)
}

/// Median and p99 of `runs` timings of `f` (after `warm` untimed runs).
fn time(warm: usize, runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[runs / 2], t[(runs * 99 / 100).min(runs - 1)])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let manifest = real("spleeter-2stems/model.toml");
    if !manifest.exists() {
        eprintln!(
            "{}: missing; `cargo xtask fetch-models` fetches it",
            manifest.display()
        );
        return;
    }
    let package = ModelPackage::read(&manifest, Limits::from_env()).expect("Spleeter reads");
    let mut model = SeparatorModel::from_package(&package).expect("Spleeter loads");
    let frame_s = 1024.0 / 44_100.0;
    println!("Spleeter 2-stems on {}", model.device);
    let (runs_live, runs_studio) = if quick { (2, 1) } else { (200, 20) };
    let magnitude = |frames: usize| -> Vec<f32> {
        (0..2 * frames * 1024)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect()
    };
    let (m, p) = time(2, runs_live, || {
        model.run(magnitude(LIVE_WINDOW), LIVE_WINDOW).unwrap();
    });
    let live_audio = LIVE_PASS as f64 * frame_s;
    println!(
        "Live pass ({LIVE_WINDOW} frames, one per {LIVE_PASS} frames = {:.0} ms of audio): median {:.1} ms, p99 {:.1} ms, real-time factor {:.3} (p99 {:.3})",
        live_audio * 1e3,
        ms(m),
        ms(p),
        m.as_secs_f64() / live_audio,
        p.as_secs_f64() / live_audio
    );
    let (m, p) = time(1, runs_studio, || {
        model
            .run(magnitude(STUDIO_SEGMENT), STUDIO_SEGMENT)
            .unwrap();
    });
    let studio_audio = (STUDIO_SEGMENT - STUDIO_OVERLAP) as f64 * frame_s;
    println!(
        "Studio segment ({STUDIO_SEGMENT} frames, {:.1} s of new audio each): median {:.0} ms, p99 {:.0} ms, real-time factor {:.3}",
        studio_audio,
        ms(m),
        ms(p),
        m.as_secs_f64() / studio_audio
    );
    // Four stems: the DSP on one second of stereo accompaniment frames.
    let frames_per_s = (44_100.0 / 1024.0f64).ceil() as usize;
    let spectra: Vec<Vec<Complex32>> = (0..2)
        .map(|c| {
            (0..2049)
                .map(|k| Complex32::new(((k * 31 + c) % 97) as f32 / 97.0, 0.1))
                .collect()
        })
        .collect();
    let (m, _) = time(1, if quick { 1 } else { 10 }, || {
        let mut split = FourStems::new(2049, 4096, 44_100, 2, four_stems::LIVE);
        let mut sink = |_: usize, _: &[Vec<Complex32>]| {};
        for _ in 0..frames_per_s {
            split.push(spectra.clone(), &mut sink);
        }
        split.finish(&mut sink);
    });
    println!(
        "four stems by DSP: {:.1} ms per second of stereo audio (real-time factor {:.4})",
        ms(m),
        m.as_secs_f64()
    );
    sized_separators(quick);
    let bp = real("basic-pitch/nmp.onnx");
    if let Ok(mut notes) = refrain::notes::basic_pitch::BasicPitch::load(&bp) {
        let audio: Vec<f32> = (0..refrain::notes::basic_pitch::WINDOW - 3_840)
            .map(|i| (i as f32 * 0.05).sin() * 0.3)
            .collect();
        let (m, p) = time(1, if quick { 1 } else { 50 }, || {
            notes.run(&audio).unwrap();
        });
        println!(
            "Basic Pitch window (2 s at 22,050 Hz): median {:.1} ms, p99 {:.1} ms, real-time factor {:.3}",
            ms(m),
            ms(p),
            m.as_secs_f64() / (36_164.0 / 22_050.0)
        );
    }
}

/// MDX-Net and Demucs at their real layer sizes (`models/sizes.py`): one segment each, and a
/// 4-minute song's worth of segments (each overlapping the next by a quarter, as Refrain runs
/// them).
fn sized_separators(quick: bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/model-sizes");
    for (name, shape_in, shape_out, segment_s) in [
        (
            "mdx-net-size",
            vec![1usize, 4, 3072, 256],
            vec![1usize, 4, 3072, 256],
            1024.0f64 * 255.0 / 44_100.0,
        ),
        (
            "demucs-size",
            vec![1usize, 2, 343_980],
            vec![1usize, 4, 2, 343_980],
            343_980.0 / 44_100.0,
        ),
    ] {
        let manifest = dir.join(name).join("model.toml");
        if !manifest.exists() {
            println!("{name}: not generated (`python3 models/sizes.py` writes it); skipped");
            continue;
        }
        let package = ModelPackage::read(&manifest, Limits::from_env()).expect("reads");
        let mut model = SeparatorModel::from_package(&package).expect("loads");
        let n: usize = shape_in.iter().product();
        let input: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 5000.0)
            .collect();
        let (m, p) = time(1, if quick { 1 } else { 5 }, || {
            model
                .run_shaped(input.clone(), &shape_in, &shape_out)
                .unwrap();
        });
        let song = (240.0f64 / (segment_s * 0.75)).ceil();
        println!(
            "{name}: one {segment_s:.2} s segment median {:.2} s, p99 {:.2} s, real-time factor {:.2}; a 4-minute song ({song} segments) {:.0} s",
            m.as_secs_f64(),
            p.as_secs_f64(),
            m.as_secs_f64() / (segment_s * 0.75),
            m.as_secs_f64() * song
        );
    }
}
