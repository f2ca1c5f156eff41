//! Voice timings (`cargo bench -p refrain --bench voice`): the built-in voice transform per
//! hop; SwiftF0 on a Live window; and, when `python3 models/sizes.py` has written it into
//! `target/model-sizes`, an RVC v2 40 kHz voice with a HuBERT-base content encoder at their
//! real layer sizes: each stage's time per hop (median, p99) and real-time factor in Live and
//! Studio, and the latency the plugin reports in Live with it on this machine. Figures go to
//! README with the machine they came from.

use refrain::chain::{Chain, ChainKey};
use refrain::engine::latency::Mode;
use refrain::engine::EngineConfig;
use refrain::models::package::{Limits, ModelPackage};
use refrain::models::processor::HopProcessor;
use refrain::voice::controls::{VoiceControls, VoiceSettings};
use refrain::voice::gate::VoiceGate;
use refrain::voice::pitch::{PitchModel, SwiftF0};
use refrain::voice::rvc::{RvcVoice, Schedule};
use refrain::voice::transform::VoiceTransformProcessor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Median and p99 of `v` (ns), in ms.
fn stats(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let n = v.len();
    (
        v[n / 2] as f64 / 1e6,
        v[(n * 99 / 100).min(n - 1)] as f64 / 1e6,
    )
}

/// A sung vowel at 220 Hz with 20% vibrato-free noise, at `rate`, `seconds` long.
fn voice_input(rate: u32, seconds: f32) -> Vec<f32> {
    refrain::testkit::vowel(
        rate,
        220.0,
        &[(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)],
        seconds,
    )
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    // SAFETY: before any thread reads it.
    unsafe {
        std::env::set_var(
            refrain::models::library::ENV_MODEL_PATH,
            root().join("models/real"),
        )
    };
    // The built-in transform, one hop (5.3 ms Live, 2.7 ms Studio at 48 kHz).
    for mode in [Mode::Live, Mode::Studio] {
        let controls = Arc::new(VoiceControls::new(VoiceSettings {
            pitch_semitones: 5.0,
            ..VoiceSettings::default()
        }));
        let mut p = VoiceTransformProcessor::new(mode, controls);
        let spec = p.spec();
        let x = voice_input(48_000, 2.0);
        let mut out = vec![0.0; 2 * spec.hop];
        let mut times = Vec::new();
        let runs = if quick { 50 } else { 3000 };
        for (i, hop) in x.chunks_exact(spec.hop).cycle().take(runs).enumerate() {
            let mut w = hop.to_vec();
            w.extend_from_slice(hop);
            let t = Instant::now();
            p.process(&w, &mut out).unwrap();
            if i >= 20 {
                times.push(t.elapsed().as_nanos() as u64);
            }
        }
        let (m, p99) = stats(times);
        let hop_ms = spec.hop as f64 * 1000.0 / 48_000.0;
        println!(
            "built-in voice, {mode:?}: {} samples a hop, median {m:.3} ms, p99 {p99:.3} ms, real-time factor {:.3}; latency of its own {:.1} ms",
            spec.hop,
            m / hop_ms,
            spec.latency as f64 * 1000.0 / 48_000.0
        );
    }
    // SwiftF0 on one Live window.
    let Ok(mut swift) = SwiftF0::find() else {
        println!("SwiftF0: missing (`cargo xtask fetch-models`); the rest is skipped");
        return;
    };
    let window = Schedule::of(Mode::Live).window() * 160;
    let x16 = voice_input(16_000, 2.0);
    let mut f0 = Vec::new();
    let mut times = Vec::new();
    for i in 0..if quick { 5 } else { 300 } {
        let start = (i * 960) % (x16.len() - window);
        f0.clear();
        let t = Instant::now();
        swift.track(&x16[start..start + window], &mut f0).unwrap();
        times.push(t.elapsed().as_nanos() as u64);
    }
    let (m, p) = stats(times);
    println!(
        "SwiftF0 on a Live window ({window} samples at 16 kHz): median {m:.2} ms, p99 {p:.2} ms"
    );
    // CREPE tiny (a pitch model a voice may bring) on the same windows.
    let crepe_path = root().join("models/real/crepe-tiny/crepe-tiny.onnx");
    if let Ok(bytes) = std::fs::read(&crepe_path) {
        let mut crepe =
            refrain::voice::crepe::Crepe::from_bytes(&bytes, "crepe-tiny.onnx", None).unwrap();
        let mut times = Vec::new();
        for i in 0..if quick { 5 } else { 100 } {
            let start = (i * 960) % (x16.len() - window);
            f0.clear();
            let t = Instant::now();
            crepe.track(&x16[start..start + window], &mut f0).unwrap();
            times.push(t.elapsed().as_nanos() as u64);
        }
        let (m, p) = stats(times);
        println!(
            "CREPE tiny on a Live window ({window} samples at 16 kHz, {} frames): median {m:.2} ms, p99 {p:.2} ms",
            window / 160
        );
    }
    // The real-size RVC voice.
    let manifest = root().join("target/model-sizes/rvc-v2-size/model.toml");
    if !manifest.exists() {
        println!("rvc-v2-size: not generated (`python3 models/sizes.py target/model-sizes rvc`); skipped");
        return;
    }
    let t = Instant::now();
    let package = Arc::new(ModelPackage::read(&manifest, Limits::from_env()).expect("reads"));
    println!(
        "rvc-v2-size read and hashed in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for mode in [Mode::Live, Mode::Studio] {
        let controls = Arc::new(VoiceControls::default());
        let t = Instant::now();
        let mut voice = RvcVoice::load(
            &package,
            mode,
            controls,
            Box::new(SwiftF0::find().unwrap()),
            VoiceGate::find(),
        )
        .expect("the voice loads");
        let loaded = t.elapsed();
        let spec = voice.spec();
        let hop_ms = spec.hop as f64 * 1000.0 / spec.sample_rate as f64;
        let x = voice_input(spec.sample_rate, 4.0);
        let mut out = vec![0.0; 2 * spec.hop];
        let (mut stages, mut whole) = ([Vec::new(), Vec::new(), Vec::new()], Vec::new());
        let runs = if quick {
            3
        } else if mode == Mode::Live {
            200
        } else {
            40
        };
        for (i, hop) in x.chunks_exact(spec.hop).cycle().take(runs + 3).enumerate() {
            let mut w = hop.to_vec();
            w.extend_from_slice(hop);
            let t = Instant::now();
            voice.process(&w, &mut out).unwrap();
            if i >= 3 {
                whole.push(t.elapsed().as_nanos() as u64);
                for (s, v) in stages.iter_mut().zip(voice.stage_ns) {
                    s.push(v);
                }
            }
        }
        println!(
            "RVC v2 40 kHz at real sizes, {mode:?} ({} ms hop, {} ms window; loaded in {:.1} s, {}):",
            hop_ms,
            Schedule::of(mode).window() * 10,
            loaded.as_secs_f64(),
            voice.device().unwrap_or_default()
        );
        for (name, v) in ["content encoder", "pitch (SwiftF0)", "generator"]
            .iter()
            .zip(stages)
            .chain(std::iter::once((&"whole hop", whole)))
        {
            let (m, p) = stats(v);
            println!(
                "  {name:16} median {m:7.1} ms, p99 {p:7.1} ms, real-time factor {:.2}",
                m / hop_ms
            );
        }
    }
    // What the plugin reports in Live with it (48 kHz, 128-sample blocks).
    let key = ChainKey {
        model: manifest.display().to_string(),
        track: String::new(),
        mode: Mode::Live,
        config: EngineConfig {
            sample_rate: 48_000.0,
            max_block: 128,
            channels: 2,
        },
        setting: refrain::licence::enforce::Setting::Studio,
        notes: None,
        note_settings: Default::default(),
    };
    match Chain::build(key, |_| {}) {
        Ok(chain) => {
            let plan = chain.engine.plan();
            println!(
                "plugin in Live at 48 kHz, 128-sample blocks: {}",
                plan.describe()
            );
        }
        Err(e) => println!("the chain did not start: {e}"),
    }
}
