//! Host-level tests of the voice: the built `Refrain.clap` sings what it is sung with the
//! pitch the performer sets, through an RVC voice (generated, RVC's exact tensor contracts)
//! and through the built-in voice, with the latency it reports.

use refrain::voice::yin::{cents, median_voiced, yin, YinSettings};
use refrain_tests::{default_plugin_path, models_dir, Host, Setup};
use std::sync::OnceLock;

const RATE: u32 = 48_000;
const BLOCK: usize = 256;

/// SwiftF0 and Silero VAD are found in `REFRAIN_MODEL_PATH` (set-up fetches them into
/// `models/real`).
fn env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let real = models_dir().join("real");
        assert!(
            real.join("swift-f0/model.onnx").is_file(),
            "`cargo xtask fetch-models` fetches SwiftF0"
        );
        // SAFETY: set once, before any plugin instance (or thread of one) exists.
        unsafe { std::env::set_var(refrain::models::library::ENV_MODEL_PATH, &real) };
    });
}

/// The plugin running `model` (`builtin:voice` or a folder under models/) with the voice
/// raised `semitones`, bounced over `input` (mono, on both channels); the output, aligned by
/// the latency the plugin reported.
fn bounce(model: &str, semitones: f32, input: &[f32]) -> (Vec<f32>, u32) {
    env();
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    let state = if model.starts_with("builtin:") {
        model.to_owned()
    } else {
        models_dir().join(model).join("model.toml").display().to_string()
    };
    h.set_state_field("model", &state).unwrap();
    h.set_state_param("voice_pitch", serde_json::json!({ "f32": semitones }))
        .unwrap();
    h.activate(Setup::offline(RATE as f64, BLOCK as u32)).unwrap();
    let latency = h.latency() as usize;
    let mut padded = input.to_vec();
    padded.extend(vec![0.0; latency]);
    let out = h
        .render(&[padded.clone(), padded], || BLOCK, false)
        .unwrap();
    (out[0][latency..].to_vec(), latency as u32)
}

#[test]
fn the_built_plugin_sings_a_vowel_at_220_hz_seven_semitones_up_at_329_6_hz_within_ten_cents() {
    let vowel = refrain::testkit::vowel(
        RATE,
        220.0,
        &[(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)],
        2.5,
    );
    for model in ["test/rvc-v1", "test/rvc-v2", "builtin:voice"] {
        let (y, latency) = bounce(model, 7.0, &vowel);
        let steady = &y[RATE as usize / 2..RATE as usize * 2];
        let f = median_voiced(&yin(steady, RATE, YinSettings::voice(RATE)));
        eprintln!("{model}: {f:.2} Hz, latency {latency} samples");
        assert!(cents(f, 329.63).abs() < 10.0, "{model}: {f} Hz");
    }
}
