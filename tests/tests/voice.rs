//! Host-level tests of the voice: the built `Refrain.clap` sings what it is sung with the
//! pitch the performer sets, through an RVC voice (generated, RVC's exact tensor contracts)
//! and through the built-in voice, with the latency it reports.

use refrain::voice::yin::{cents, median_voiced, yin, YinSettings};
use refrain_tests::{default_plugin_path, models_dir, Host, Setup};
use std::sync::OnceLock;

const RATE: u32 = 48_000;
const BLOCK: usize = 256;

/// A private licence folder with a trusted issuer, and a copy of the RVC v2 test voice whose
/// manifest says it carries an artist's voice.
struct Env {
    store: refrain::licence::store::Store,
    key: refrain::licence::token::SigningKey,
    artist_voice: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// SwiftF0 and Silero VAD are found in `REFRAIN_MODEL_PATH` (set-up fetches them into
/// `models/real`); the licence folder is private to this binary.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let real = models_dir().join("real");
        assert!(
            real.join("swift-f0/model.onnx").is_file(),
            "`cargo xtask fetch-models` fetches SwiftF0"
        );
        let data = std::env::temp_dir().join(format!("refrain-voice-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        // SAFETY: set once, before any plugin instance (or thread of one) exists.
        unsafe {
            std::env::set_var(refrain::models::library::ENV_MODEL_PATH, &real);
            std::env::set_var(refrain::licence::store::ENV_DATA_DIR, &data);
        }
        let (dir, manifest) =
            refrain_tests::protected_copy(&models_dir().join("test/rvc-v2"), "licensed_voice");
        // The label holds the artist's consent for this voice: the registry certified it.
        let identity = refrain::models::ModelSource::parse(manifest.to_str().unwrap())
            .package()
            .unwrap()
            .identity
            .clone();
        let (store, key) = refrain_tests::licence_issuer_with_voices(&data, &[identity]);
        Env {
            store,
            key,
            artist_voice: manifest,
            _dir: dir,
        }
    })
}

/// The plugin running `model` (`builtin:voice` or a folder under models/) with the voice
/// raised `semitones`, bounced over `input` (mono, on both channels); the output, aligned by
/// the latency the plugin reported.
fn bounce(model: &str, semitones: f32, input: &[f32]) -> (Vec<f32>, u32) {
    bounce_with(model, "", semitones, input)
}

/// [`bounce`] with a loaded track (a licence), `model` a `builtin:` name, a folder under
/// models/ or a manifest path.
fn bounce_with(model: &str, track: &str, semitones: f32, input: &[f32]) -> (Vec<f32>, u32) {
    env();
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    let state = if model.starts_with("builtin:") || model.ends_with("model.toml") {
        model.to_owned()
    } else {
        models_dir()
            .join(model)
            .join("model.toml")
            .display()
            .to_string()
    };
    h.set_state_field("model", &state).unwrap();
    if !track.is_empty() {
        h.set_state_field("track", track).unwrap();
    }
    h.set_state_param("voice_pitch", serde_json::json!({ "f32": semitones }))
        .unwrap();
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
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

#[test]
fn an_artists_voice_sings_only_under_a_cover_licence_for_it() {
    use refrain::licence::claims::Use;
    let e = env();
    let vowel = refrain::testkit::vowel(
        RATE,
        220.0,
        &[(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)],
        2.0,
    );
    let model = e.artist_voice.display().to_string();
    let sung = |y: &[f32]| {
        median_voiced(&yin(
            &y[RATE as usize / 2..],
            RATE,
            YinSettings::voice(RATE),
        ))
    };
    // No licence: the voice is never loaded; the dry vowel passes, at 220 Hz.
    let (y, _) = bounce_with(&model, "", 7.0, &vowel);
    assert!(
        y.iter()
            .zip(&vowel)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "not the dry input"
    );
    // A remix licence for it is not a cover licence.
    let remix = refrain_tests::issue_licence(&e.store, &e.key, &e.artist_voice, "V-REMIX", |c| {
        c.uses = vec![Use::Remix];
    });
    let (y, _) = bounce_with(&model, &remix, 7.0, &vowel);
    assert!(
        y.iter()
            .zip(&vowel)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "sang under a remix licence"
    );
    // A cover licence for this voice: it sings, 7 semitones up.
    let cover = refrain_tests::issue_licence(&e.store, &e.key, &e.artist_voice, "V-COVER", |c| {
        c.uses = vec![Use::Cover];
        c.track.iswc = Some("T-034.524.680-1".into());
    });
    let (y, _) = bounce_with(&model, &cover, 7.0, &vowel);
    let f = sung(&y);
    assert!(
        cents(f, 329.63).abs() < 10.0,
        "under a cover licence: {f} Hz"
    );
}
