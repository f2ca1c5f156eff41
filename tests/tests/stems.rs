//! Host-level tests of the stem outputs: the built `Refrain.clap` and `Refrain.vst3` running
//! Spleeter (Deezer's trained weights, fetched by set-up) on real speech over music, as a DAW
//! routes them: the main output carries the remix, four stereo outputs carry vocals, drums,
//! bass and other, all at the one reported latency; the licence gate covers every output.

use refrain::licence::claims::Use;
use refrain::licence::fingerprint;
use refrain::licence::store::Store;
use refrain::licence::token::SigningKey;
use refrain_tests::vst3_host::{default_vst3_path, Vst3Host};
use refrain_tests::{default_plugin_path, issue_licence, models_dir, Host, PortsAudio, Setup};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const RATE: u32 = 48_000;
const BLOCK: usize = 256;
const STEMS: [&str; 4] = ["Vocals", "Drums", "Bass", "Other"];

struct Env {
    store: Store,
    key: SigningKey,
    /// Holds the protected copy of Spleeter.
    _dir: tempfile::TempDir,
    protected: PathBuf,
}

/// The private licence folder, a trusted issuer, and a copy of Spleeter whose manifest says it
/// separates licensed tracks (a protected separator), set up once for the whole binary.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let data = std::env::temp_dir().join(format!("refrain-stems-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        // Set before any plugin instance (or thread of one) exists.
        // Every test here bounces (the engine waits for the model), so a fixed inference time
        // costs nothing and lets the CLAP and VST3 builds (two libraries, each measuring on its
        // own) plan the same latency.
        unsafe {
            std::env::set_var(refrain::licence::store::ENV_DATA_DIR, &data);
            std::env::set_var(refrain::chain::ENV_INFERENCE_MS, "50");
            // Basic Pitch, for the notes of a stem.
            std::env::set_var(
                refrain::models::library::ENV_MODEL_PATH,
                models_dir().join("real"),
            );
        }
        let (store, key) = refrain_tests::licence_issuer(&data);
        let (dir, manifest) =
            refrain_tests::protected_copy(spleeter().parent().unwrap(), "licensed_track");
        Env {
            store,
            key,
            protected: manifest,
            _dir: dir,
        }
    })
}

fn spleeter() -> PathBuf {
    let path = models_dir().join("real/spleeter-2stems/model.toml");
    assert!(
        path.exists(),
        "{}: `cargo xtask fetch-models` fetches it",
        path.display()
    );
    path
}

/// 8 s of real speech (the `alsa-utils` prompts) over a synthesised song, stereo at 48 kHz.
fn speech_over_song() -> Vec<Vec<f32>> {
    let mut voice = Vec::new();
    for name in ["Front_Center", "Front_Left", "Front_Right", "Rear_Center"] {
        let path = models_dir().join(format!("real/recordings/{name}.wav"));
        let (audio, rate) = refrain::media::read_all(&path).unwrap();
        assert_eq!(rate, RATE);
        voice.extend_from_slice(&audio[0]);
    }
    let len = 8 * RATE as usize;
    voice.resize(len, 0.0);
    let song = refrain::synth::song(3, 8.0, RATE);
    (0..2)
        .map(|c| {
            (0..len)
                .map(|i| 0.7 * voice[i] + 0.5 * song[c][i.min(song[c].len() - 1)])
                .collect()
        })
        .collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// How far `a` is from `b`, relative to `b`, in dB.
fn db_apart(a: &[f32], b: &[f32]) -> f64 {
    let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    20.0 * (rms(&d) / rms(b)).log10()
}

/// `out` from the latency on, the input's length: what lines up with the input.
fn aligned(out: &[f32], latency: usize, len: usize) -> &[f32] {
    &out[latency..latency + len]
}

/// The input followed by silence for the latency to flush, so every output holds all of it.
fn padded(input: &[Vec<f32>], latency: usize) -> Vec<Vec<f32>> {
    input
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.resize(c.len() + latency + BLOCK, 0.0);
            c
        })
        .collect()
}

fn clap_with(model: &Path, track: &str) -> Host {
    env();
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    h.set_state_field("model", model.to_str().unwrap()).unwrap();
    if !track.is_empty() {
        h.set_state_field("track", track).unwrap();
    }
    h
}

fn mute_vocals(h: &mut Host) {
    h.set_state_param("vocals_mute", serde_json::json!({ "bool": true }))
        .unwrap();
}

/// A bounce through every output port of the CLAP build: (latency, main, stems).
fn bounce_ports(h: &mut Host, input: &[Vec<f32>]) -> (usize, PortsAudio) {
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as usize;
    (
        latency,
        h.render_ports(&padded(input, latency), BLOCK).unwrap(),
    )
}

#[test]
fn both_builds_offer_the_main_output_and_four_stereo_stem_outputs_named_for_their_stems() {
    env();
    let mut h = Host::load(&default_plugin_path()).unwrap();
    let want: Vec<(String, u32)> = std::iter::once("Main")
        .chain(STEMS)
        .map(|n| (n.to_owned(), 2))
        .collect();
    assert_eq!(h.audio_ports(false), want);
    // The covers' "Backing" sidechain beside the main input.
    assert_eq!(
        h.audio_ports(true),
        vec![("Main".to_owned(), 2), ("Backing".to_owned(), 2)]
    );
    let configs = h.port_configs();
    assert_eq!(
        configs,
        [
            "Stereo with backing and stems",
            "Stereo with stems",
            "Stereo",
            "Mono"
        ]
    );
    // A host that picks the stems without the sidechain sees one input.
    h.select_port_config(1).unwrap();
    assert_eq!(h.audio_ports(false).len(), 5);
    assert_eq!(h.audio_ports(true), vec![("Main".to_owned(), 2)]);
    // A host that picks plain stereo sees one output.
    h.select_port_config(2).unwrap();
    assert_eq!(h.audio_ports(false), vec![("Main".to_owned(), 2)]);

    let v = Vst3Host::load(&default_vst3_path()).unwrap();
    let buses = v.output_buses();
    let want: Vec<(String, i32)> = want.into_iter().map(|(n, c)| (n, c as i32)).collect();
    assert_eq!(buses, want);
    assert_eq!(
        v.input_buses(),
        vec![("Main".to_owned(), 2), ("Backing".to_owned(), 2)]
    );
}

#[test]
fn spleeter_plays_each_stem_on_its_own_output_aligned_and_summing_to_the_remix_in_both_builds() {
    let input = speech_over_song();
    let len = input[0].len();
    let mut h = clap_with(&spleeter(), "");
    let (latency, (main, stems)) = bounce_ports(&mut h, &input);
    assert!(latency > 0);
    for c in 0..2 {
        // Every stem is heard, and together they are the main output.
        for (s, name) in STEMS.iter().enumerate() {
            assert!(rms(&stems[s][c]) > 1e-4, "{name} is silent");
        }
        let sum: Vec<f32> = (0..main[c].len())
            .map(|i| stems.iter().map(|s| s[c][i]).sum())
            .collect();
        let stems_db = db_apart(&sum, &main[c]);
        // With every gain at 1 the remix is the input, at exactly the reported latency: a
        // sample off is far worse.
        let exact = db_apart(aligned(&main[c], latency, len), &input[c]);
        let off = db_apart(aligned(&main[c], latency + 1, len), &input[c]);
        eprintln!("channel {c}: latency {latency}, remix vs input {exact:.1} dB (a sample late {off:.1} dB), stems vs remix {stems_db:.1} dB");
        assert!(stems_db < -100.0);
        assert!(exact < -100.0, "channel {c}: {exact:.1} dB");
        assert!(off > exact + 20.0);
    }
    // The vocals output carries the voice: more of it than the other stems.
    assert!(rms(&stems[0][0]) > rms(&stems[1][0]));

    // The VST3 build with the same project state, five stereo buses: the same latency and
    // the same audio on every output, bit for bit.
    let state = serde_json::to_vec(&h.state_json().unwrap()).unwrap();
    drop(h);
    let mut v = Vst3Host::load(&default_vst3_path()).unwrap();
    v.set_state(&state).unwrap();
    let vst3_latency = v
        .activate_outputs(RATE as f64, BLOCK as i32, true, 5)
        .unwrap();
    assert_eq!(vst3_latency as usize, latency);
    let buses = v
        .render_buses(&padded(&input, latency), BLOCK, true)
        .unwrap();
    assert_eq!(buses.len(), 5);
    assert!(buses[0] == main, "VST3 main output differs from CLAP");
    for (s, name) in STEMS.iter().enumerate() {
        assert!(
            buses[s + 1] == stems[s],
            "VST3 {name} output differs from CLAP"
        );
    }
}

#[test]
fn without_stem_outputs_connected_or_offered_the_main_output_still_plays_the_remix() {
    let input = speech_over_song();
    let len = input[0].len();
    // Vocals muted: the remix is the input without the voice, which the dry path never is.
    let mut full = clap_with(&spleeter(), "");
    mute_vocals(&mut full);
    let (latency, (reference, _)) = bounce_ports(&mut full, &input);
    let apart = db_apart(aligned(&reference[0], latency, len), &input[0]);
    eprintln!("vocals muted: the remix is {apart:.1} dB from the input");
    assert!(
        apart > -20.0,
        "muting the vocals changed little: {apart:.1} dB"
    );

    // A host that connects only the main output of the stems layout.
    let mut only_main = clap_with(&spleeter(), "");
    mute_vocals(&mut only_main);
    only_main
        .activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    assert_eq!(only_main.latency() as usize, latency);
    let out = only_main
        .render(&padded(&input, latency), || BLOCK, false)
        .unwrap();
    assert_eq!(out, reference, "main output only, stems layout");

    // A host that picks the plain stereo layout.
    let mut stereo = clap_with(&spleeter(), "");
    mute_vocals(&mut stereo);
    stereo.select_port_config(2).unwrap();
    stereo
        .activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let out = stereo
        .render(&padded(&input, latency), || BLOCK, false)
        .unwrap();
    assert_eq!(out, reference, "plain stereo layout");

    // A host that picks the mono layout: the mono remix, vocals muted, at the same latency.
    let mut mono = clap_with(&spleeter(), "");
    mute_vocals(&mut mono);
    mono.select_port_config(3).unwrap();
    mono.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    assert_eq!(mono.latency() as usize, latency);
    let mid: Vec<f32> = (0..len)
        .map(|i| 0.5 * (input[0][i] + input[1][i]))
        .collect();
    let out = mono
        .render(
            &padded(std::slice::from_ref(&mid), latency),
            || BLOCK,
            false,
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    let apart = db_apart(aligned(&out[0], latency, len), &mid);
    assert!(
        apart > -20.0 && out[0].iter().all(|v| v.is_finite()),
        "the mono layout did not play the remix: {apart:.1} dB from the input"
    );
    let voiceless = db_apart(
        aligned(&out[0], latency, len),
        aligned(&reference[0], latency, len),
    );
    assert!(
        voiceless < -10.0,
        "the mono remix is not the stereo one's: {voiceless:.1} dB apart"
    );
}

/// Issues and caches a remix licence for the protected Spleeter with `uses`, for the track
/// `input` (its reference fingerprint); returns the plugin's persisted track.
fn licence(id: &str, uses: &[Use], input: &[Vec<f32>]) -> String {
    let e = env();
    issue_licence(&e.store, &e.key, &e.protected, id, |c| {
        c.uses = uses.to_vec();
        c.track.fingerprint = Some(fingerprint::encode(
            &fingerprint::compute(input, RATE).unwrap(),
        ));
    })
}

#[test]
fn an_unlicensed_protected_separator_plays_the_aligned_dry_input_and_silent_stems() {
    let e = env();
    let input = speech_over_song();
    let mut h = clap_with(&e.protected, "");
    let (latency, (main, stems)) = bounce_ports(&mut h, &input);
    for c in 0..2 {
        let dry = aligned(&main[c], latency, input[c].len());
        assert!(
            dry.iter()
                .zip(&input[c])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "channel {c}: not the aligned dry input"
        );
        for (s, name) in STEMS.iter().enumerate() {
            assert!(
                stems[s][c].iter().all(|&v| v == 0.0),
                "{name} is not silent"
            );
        }
    }
}

#[test]
fn an_unlicensed_protected_separator_sends_no_notes_of_its_stems_and_a_licensed_one_does() {
    let e = env();
    let input = speech_over_song();
    let licensed = licence("notes", &[Use::Remix, Use::StemExport], &input);
    for (track, heard) in [("", false), (licensed.as_str(), true)] {
        let mut h = clap_with(&e.protected, track);
        // The notes of Other: the synthesised song's melody and chords.
        h.set_state_param("notes", serde_json::json!({ "string": "other" }))
            .unwrap();
        bounce_ports(&mut h, &input);
        let ons = h.take_notes().iter().filter(|n| n.on).count();
        if heard {
            assert!(ons >= 3, "licensed: only {ons} notes from Other");
        } else {
            assert_eq!(ons, 0, "unlicensed, the separator's notes left");
        }
    }
}

#[test]
fn a_remix_licence_without_stem_export_plays_the_remix_and_keeps_the_stem_outputs_silent() {
    let e = env();
    let input = speech_over_song();
    let len = input[0].len();
    // `remix` only: the remix plays (vocals muted: not the dry input), the stems stay home.
    let track = licence("remix-only", &[Use::Remix], &input);
    let mut h = clap_with(&e.protected, &track);
    mute_vocals(&mut h);
    let (latency, (main, stems)) = bounce_ports(&mut h, &input);
    let apart = db_apart(aligned(&main[0], latency, len), &input[0]);
    assert!(
        apart > -20.0,
        "the remix did not play: {apart:.1} dB from the input"
    );
    for (s, name) in STEMS.iter().enumerate() {
        assert!(
            stems[s].iter().flatten().all(|&v| v == 0.0),
            "{name} left without stem-export"
        );
    }
    // With `stem-export` as well, they leave.
    let track = licence("with-stems", &[Use::Remix, Use::StemExport], &input);
    let mut h = clap_with(&e.protected, &track);
    let (_, (_, stems)) = bounce_ports(&mut h, &input);
    for (s, name) in STEMS.iter().enumerate() {
        assert!(
            rms(&stems[s][0]) > 1e-4,
            "{name} is silent with stem-export"
        );
    }
}

/// `hz` for 3 s at 44.1 kHz, stereo, faded in and out, with 1.5 s of silence after.
fn tone(hz: f64) -> Vec<Vec<f32>> {
    let rate = 44_100.0;
    let n = (3.0 * rate) as usize;
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let fade = (t / 0.05).min((3.0 - t) / 0.05).clamp(0.0, 1.0);
            (0.4 * (std::f64::consts::TAU * hz * t).sin() * fade) as f32
        })
        .collect();
    x.resize(n + (1.5 * rate) as usize, 0.0);
    vec![x.clone(), x]
}

#[test]
fn generated_mdx_net_and_demucs_models_put_80_hz_and_1_khz_on_their_stem_outputs_30_db_apart() {
    // Through the built plugin at the models' rate: MDX-Net's `bass` plays on Bass and its
    // `rest` on Other; Demucs's four stems on their own outputs.
    for (model, low, high) in [
        ("test/mdx-band", "Bass", "Other"),
        ("test/demucs-band", "Bass", "Other"),
    ] {
        for (hz, want) in [(80.0, low), (1_000.0, high)] {
            let mut h = refrain_tests::host_with_model(model);
            h.activate(Setup::offline(44_100.0, BLOCK as u32)).unwrap();
            let latency = h.latency() as usize;
            let input = tone(hz);
            let (_, stems) = h.render_ports(&padded(&input, latency), BLOCK).unwrap();
            // The middle 2 s of the tone, where it leaves.
            let middle = latency + 22_050..latency + 110_250;
            let energy = |s: usize| -> f64 {
                stems[s]
                    .iter()
                    .flat_map(|c| c[middle.clone()].iter())
                    .map(|&v| v as f64 * v as f64)
                    .sum()
            };
            let own = STEMS.iter().position(|n| *n == want).unwrap();
            let others: f64 = (0..4).filter(|&s| s != own).map(energy).sum();
            let apart = 10.0 * (energy(own) / others.max(1e-30)).log10();
            eprintln!("{model}: {hz} Hz on {want}, {apart:.1} dB over the other outputs");
            assert!(
                apart >= 30.0,
                "{model}: {hz} Hz on {want} only {apart:.1} dB over the rest"
            );
        }
    }
}
