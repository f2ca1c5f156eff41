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
    let state = if model.starts_with("builtin:") || model.ends_with("model.toml") {
        model.to_owned()
    } else {
        models_dir()
            .join(model)
            .join("model.toml")
            .display()
            .to_string()
    };
    let (mut h, latency) = voice_host(&state, track, semitones, None);
    let mut padded = input.to_vec();
    padded.extend(vec![0.0; latency]);
    let out = h
        .render(&[padded.clone(), padded], || BLOCK, false)
        .unwrap();
    (out[0][latency..].to_vec(), latency as u32)
}

/// The plugin with `model` (its state string), `track` (a licence's, or none when empty) and
/// the voice raised `semitones`, in `mode` (`None`: the default, Live), activated for an
/// offline bounce; and the latency it reports.
fn voice_host(model: &str, track: &str, semitones: f32, mode: Option<&str>) -> (Host, usize) {
    env();
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    h.set_state_field("model", model).unwrap();
    if !track.is_empty() {
        h.set_state_field("track", track).unwrap();
    }
    h.set_state_param("voice_pitch", serde_json::json!({ "f32": semitones }))
        .unwrap();
    if let Some(mode) = mode {
        h.set_state_param("mode", serde_json::json!({ "string": mode }))
            .unwrap();
    }
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as usize;
    (h, latency)
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
    // A cover licence for this voice (naming no backing track): it sings, 7 semitones up.
    let cover = refrain_tests::issue_licence(&e.store, &e.key, &e.artist_voice, "V-COVER", |c| {
        c.uses = vec![Use::Cover];
        c.track.iswc = Some("T-034.524.680-1".into());
        c.track.fingerprint = None;
    });
    let (y, _) = bounce_with(&model, &cover, 7.0, &vowel);
    let f = sung(&y);
    assert!(
        cents(f, 329.63).abs() < 10.0,
        "under a cover licence: {f} Hz"
    );
}

/// What the host routes to the "Backing" sidechain.
enum Backing<'a> {
    /// Nothing: the host passes the main input only.
    Unrouted,
    /// A track, on the second input port.
    Track(&'a [Vec<f32>]),
}

/// [`bounce_with`] with `backing` on the sidechain: the output, aligned by the latency.
fn bounce_over(
    model: &str,
    track: &str,
    semitones: f32,
    input: &[f32],
    backing: Backing,
) -> Vec<f32> {
    // Studio: a Live voice's first activation in a process is rebuilt once measured, at
    // another latency, which would move the dry signal this compares bit for bit.
    let (mut h, latency) = voice_host(model, track, semitones, Some("studio"));
    let mut padded = input.to_vec();
    padded.extend(vec![0.0; latency]);
    let io = [padded.clone(), padded];
    let out = match backing {
        Backing::Unrouted => h.render(&io, || BLOCK, false).unwrap(),
        Backing::Track(b) => {
            let b: Vec<Vec<f32>> = b
                .iter()
                .map(|c| {
                    let mut c = c[..input.len()].to_vec();
                    c.extend(vec![0.0; latency]);
                    c
                })
                .collect();
            h.render_with_backing(&io, &b, BLOCK).unwrap()
        }
    };
    out[0][latency..].to_vec()
}

/// A cover licence that names a backing track (its reference fingerprint, DECISIONS §5):
/// the voice sings only while the "Backing" sidechain carries that track. Unrouted or silent,
/// the dry vowel passes bit for bit; over the licensed backing it sings 7 semitones up (from
/// the first seconds, while the backing is still pending, to the end); over another track it
/// sings while the pending allowance lasts and is dry once the bounce's share of matching
/// seconds falls short. The VST3 build reads its second input bus the same way.
#[test]
fn a_cover_licence_naming_a_backing_track_sings_only_over_that_backing() {
    use refrain::licence::claims::Use;
    let e = env();
    let seconds = 30.0f64;
    let vowel = refrain::testkit::vowel(
        RATE,
        220.0,
        &[(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)],
        seconds as f32,
    );
    let model = e.artist_voice.display().to_string();
    // Claims::example's reference: the first 30 s of `synth::song(1, ..)`.
    let cover = refrain_tests::issue_licence(&e.store, &e.key, &e.artist_voice, "V-BACKING", |c| {
        c.uses = vec![Use::Cover];
        c.track.iswc = Some("T-034.524.680-1".into());
    });
    let licensed = refrain::synth::song(1, seconds, RATE);
    let other = refrain::synth::song(2, seconds, RATE);
    let silence = vec![vec![0.0f32; vowel.len()]; 2];
    let dry = |y: &[f32]| {
        y.iter()
            .zip(&vowel)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    };
    let sung = |y: &[f32], from: f64, to: f64| {
        let (a, b) = ((from * RATE as f64) as usize, (to * RATE as f64) as usize);
        median_voiced(&yin(&y[a..b], RATE, YinSettings::voice(RATE)))
    };

    let y = bounce_over(&model, &cover, 7.0, &vowel, Backing::Unrouted);
    assert!(dry(&y), "sang with no backing routed");
    let y = bounce_over(&model, &cover, 7.0, &vowel, Backing::Track(&silence));
    assert!(dry(&y), "sang over a silent backing");

    let y = bounce_over(&model, &cover, 7.0, &vowel, Backing::Track(&licensed));
    for (from, to) in [(6.0, 12.0), (24.0, seconds)] {
        let f = sung(&y, from, to);
        eprintln!("over the licensed backing, {from}-{to} s: {f:.1} Hz");
        assert!(cents(f, 329.63).abs() < 10.0, "{from}-{to} s: {f} Hz");
    }

    let y = bounce_over(&model, &cover, 7.0, &vowel, Backing::Track(&other));
    let (early, late) = (sung(&y, 6.0, 10.0), sung(&y, 26.0, seconds));
    eprintln!("over another backing: {early:.1} Hz at 6-10 s (pending), {late:.1} Hz at the end");
    assert!(cents(early, 329.63).abs() < 10.0, "pending: {early} Hz");
    let tail = (26.0 * RATE as f64) as usize;
    assert!(
        y[tail..]
            .iter()
            .zip(&vowel[tail..])
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "still sang over another backing at the end: {late} Hz"
    );

    // The VST3 build, with the same project state: two input buses; the licensed backing on
    // the second, or nothing routed to it.
    let (mut h, _) = voice_host(&model, &cover, 7.0, Some("studio"));
    let state = serde_json::to_vec(&h.state_json().unwrap()).unwrap();
    drop(h);
    let short = 14 * RATE as usize;
    let vst3 = |backing: Option<&[Vec<f32>]>| {
        let mut v = refrain_tests::vst3_host::Vst3Host::load(
            &refrain_tests::vst3_host::default_vst3_path(),
        )
        .unwrap();
        assert_eq!(
            v.input_buses(),
            vec![("Main".to_owned(), 2), ("Backing".to_owned(), 2)]
        );
        v.set_state(&state).unwrap();
        let latency = v
            .activate_buses(RATE as f64, BLOCK as i32, true, 2, 5)
            .unwrap() as usize;
        let mut input = vowel[..short].to_vec();
        input.extend(vec![0.0; latency]);
        let backing: Option<Vec<Vec<f32>>> = backing.map(|b| {
            b.iter()
                .map(|c| {
                    let mut c = c[..short].to_vec();
                    c.extend(vec![0.0; latency]);
                    c
                })
                .collect()
        });
        let out = v
            .render_buses_with_backing(&[input.clone(), input], backing.as_deref(), BLOCK, true)
            .unwrap();
        out[0][0][latency..].to_vec()
    };
    let y = vst3(None);
    assert!(
        y.iter()
            .zip(&vowel)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "VST3: sang with nothing on the Backing bus"
    );
    let y = vst3(Some(&licensed));
    let f = sung(&y, 6.0, 14.0);
    eprintln!("VST3 over the licensed backing: {f:.1} Hz");
    assert!(cents(f, 329.63).abs() < 10.0, "VST3: {f} Hz");
}

/// `refrain render` of a voice whose cover licence names a backing track: refused without the
/// backing, with another track or a shorter one as the backing, and before anything is
/// written; with the licensed backing it sings, and reports the use (commercial, as the
/// licence allows) for the ledger.
#[test]
fn a_render_of_a_cover_naming_a_backing_track_needs_that_backing() {
    use refrain::licence::claims::Use;
    use refrain::render::{render_file_over, RenderError, RenderSettings};
    let e = env();
    let cover = refrain_tests::issue_licence(&e.store, &e.key, &e.artist_voice, "V-RENDER", |c| {
        c.uses = vec![Use::Cover, Use::Commercial];
        c.track.iswc = Some("T-034.524.680-1".into());
    });
    let track = refrain::licence::gate::LoadedTrack::parse(&cover);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let seconds = 14.0;
    let vowel = refrain::testkit::vowel(
        RATE,
        220.0,
        &[(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)],
        seconds as f32,
    );
    refrain::media::write_wav(&path("voice.wav"), &[vowel.clone(), vowel], RATE).unwrap();
    let song = |seed, s| refrain::synth::song(seed, s, RATE);
    refrain::media::write_wav(&path("backing.wav"), &song(1, seconds), RATE).unwrap();
    refrain::media::write_wav(&path("other.wav"), &song(2, seconds), RATE).unwrap();
    refrain::media::write_wav(&path("short.wav"), &song(1, 8.0), RATE).unwrap();
    let model = refrain::models::ModelSource::parse(e.artist_voice.to_str().unwrap());
    let mut settings = RenderSettings::new(refrain::engine::latency::Mode::Studio, 512);
    settings.voice.pitch_semitones = 7.0;
    let render = |backing: Option<&str>| {
        let backing = backing.map(path);
        render_file_over(
            &model,
            track.as_ref(),
            settings,
            &path("voice.wav"),
            backing.as_deref(),
            &path("out.wav"),
            |_| {},
        )
    };
    let refused = |r: Result<_, RenderError>, what: &str| {
        let e = r
            .err()
            .unwrap_or_else(|| panic!("rendered {what}"))
            .to_string();
        assert!(!path("out.wav").exists(), "{what}: written");
        e
    };
    let e1 = refused(render(None), "without a backing");
    assert!(e1.contains("--backing"), "{e1}");
    let e2 = refused(render(Some("other.wav")), "over another track");
    assert!(e2.contains("matches the licensed track"), "{e2}");
    let e3 = refused(render(Some("short.wav")), "over a shorter backing");
    assert!(e3.contains("last as long as the voice"), "{e3}");
    // Another track under the voice, then the licensed one for much longer: only the span under
    // the voice is judged.
    let mut padded = song(2, seconds);
    for (c, l) in padded.iter_mut().zip(song(1, 60.0)) {
        c.extend(l);
    }
    refrain::media::write_wav(&path("padded.wav"), &padded, RATE).unwrap();
    let e4 = refused(
        render(Some("padded.wav")),
        "over another track padded with the licensed one",
    );
    assert!(e4.contains("matches the licensed track"), "{e4}");
    let report = render(Some("backing.wav")).unwrap();
    // One use, as the ledger will record it: the render's milliseconds of voice through the
    // model (the first second waits for the backing to be heard), commercial.
    eprintln!("{:?}", report.usage);
    assert_eq!(report.usage.len(), 1, "{:?}", report.usage);
    let line = &report.usage[0];
    assert!(
        line.contains("in a bounce under licence V-RENDER")
            && line.contains("ISWC T-034.524.680-1")
            && line.ends_with(", commercial)"),
        "{line}"
    );
    let seconds: f64 = line
        .strip_prefix("Refrain usage: ")
        .and_then(|l| l.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!((11.0..=14.0).contains(&seconds), "{seconds} s");
    let (out, _) = refrain::media::read_wav(&path("out.wav")).unwrap();
    let a = 4 * RATE as usize;
    let f = median_voiced(&yin(&out[0][a..], RATE, YinSettings::voice(RATE)));
    eprintln!("rendered over the licensed backing: {f:.1} Hz");
    assert!(cents(f, 329.63).abs() < 10.0, "{f} Hz");
}
