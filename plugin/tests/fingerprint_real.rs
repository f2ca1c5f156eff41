//! The fingerprint gate on real music no one here made: the game music of Debian's `a7xpg-data`
//! (three tracks, fetched by set-up). The licensed track still matches after an MP3 round trip
//! at 128 kbit/s (LAME, from PyPI's `lameenc`, installed by set-up), and the other tracks, as
//! they are, through MP3 or played faster or slower, never do; the licensed track changed in tempo,
//! pitch or speed as remixers change it (SoX: whole and fractional semitones) still matches.

use refrain::licence::fingerprint::{self, LiveMatcher, TrackMatch};
use refrain::media::read_all;
use std::path::{Path, PathBuf};

fn track(name: &str) -> (Vec<Vec<f32>>, u32) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real/recordings")
        .join(format!("{name}.ogg"));
    read_all(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `cargo xtask fetch-models` fetches it",
            path.display()
        )
    })
}

/// `seconds` of `audio` from `from` seconds on.
fn excerpt(audio: &[Vec<f32>], rate: u32, from: usize, seconds: usize) -> Vec<Vec<f32>> {
    let (a, z) = (from * rate as usize, (from + seconds) * rate as usize);
    audio
        .iter()
        .map(|c| c[a..z.min(c.len())].to_vec())
        .collect()
}

/// `audio` played at another speed: resampled from `rate` to `to` and played at `rate` again
/// (faster and higher when `to` is lower).
fn speed(audio: &[Vec<f32>], rate: u32, to: u32) -> Vec<Vec<f32>> {
    let mut change = refrain::engine::resample::RateChange::new(rate, to, audio.len()).unwrap();
    let mut out = vec![Vec::new(); audio.len()];
    let planar: Vec<&[f32]> = audio.iter().map(|c| c.as_slice()).collect();
    change.push(&planar, &mut out);
    change.finish(&mut out);
    out
}

/// Resampling rates for speed changes of about +1, -1, +2 and -2 semitones at 44.1 kHz
/// (44,100 / 41,650 = +0.99, / 46,725 = -1.00, / 39,200 = +2.04, / 49,500 = -2.00 semitones).
const SPEEDS: [(u32, &str); 4] = [
    (41_650, "+1 st"),
    (46_725, "-1 st"),
    (39_200, "+2 st"),
    (49_500, "-2 st"),
];

/// `audio` through LAME at 128 kbit/s and back (symphonia decodes it).
fn mp3_round_trip(audio: &[Vec<f32>], rate: u32, dir: &Path) -> Vec<Vec<f32>> {
    let mp3: PathBuf = dir.join("out.mp3");
    // LAME takes interleaved 16-bit PCM.
    let pcm = dir.join("in.pcm");
    let frames = audio[0].len();
    let mut bytes = Vec::with_capacity(frames * audio.len() * 2);
    for i in 0..frames {
        for c in audio {
            let v = (c[i].clamp(-1.0, 1.0) * 32767.0).round() as i16;
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(&pcm, bytes).unwrap();
    let code = format!(
        "import lameenc\n\
         e = lameenc.Encoder()\n\
         e.set_bit_rate(128)\n\
         e.set_in_sample_rate({rate})\n\
         e.set_channels({channels})\n\
         e.set_quality(2)\n\
         data = open({pcm:?}, 'rb').read()\n\
         out = e.encode(data) + e.flush()\n\
         open({mp3:?}, 'wb').write(out)\n",
        channels = audio.len(),
        pcm = pcm.display().to_string(),
        mp3 = mp3.display().to_string(),
    );
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(&code)
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "LAME failed: `cargo xtask fetch-models` installs lameenc"
    );
    let (decoded, r) = read_all(&mp3).unwrap();
    assert_eq!(r, rate);
    decoded
}

/// The states a live matcher goes through on `audio` (mono, as the recordings are), in 0.5 s
/// blocks.
fn states(matcher: &mut LiveMatcher, audio: &[Vec<f32>]) -> Vec<TrackMatch> {
    let mut out = Vec::new();
    for block in audio[0].chunks(22_050) {
        matcher.push(block);
        out.push(matcher.state());
    }
    out
}

/// The live matcher of a licence for `licensed` (mono: one reference).
fn matcher_for(licensed: &[Vec<f32>], rate: u32) -> LiveMatcher {
    let reference = fingerprint::compute(licensed, rate).unwrap();
    // The tuning `licence issue` states (the downmix's; this music is mono).
    let tuning =
        refrain::licence::tuning::tuning_cents(&licensed[0], rate).map(|t| t.round() as i8);
    LiveMatcher::new(reference, rate)
        .unwrap()
        .with_reference_loudness(fingerprint::loudness_dbfs(licensed, rate))
        .with_reference_tuning(tuning)
}

/// Each of `inputs` (another track, changed as each name says) never matches `licensed`'s
/// licence and switches the model off.
fn never_matches<S: std::fmt::Display>(
    licensed: &[Vec<f32>],
    rate: u32,
    other: &str,
    inputs: Vec<(S, Vec<Vec<f32>>)>,
) {
    for (how, input) in inputs {
        let mut m = matcher_for(licensed, rate);
        let s = states(&mut m, &input);
        eprintln!("{other} {how}: last BER {:.3}", m.last_ber);
        assert!(s.contains(&TrackMatch::Mismatch), "{other} {how}: {s:?}");
        assert!(!s.contains(&TrackMatch::Match), "{other} {how}: {s:?}");
    }
}

#[test]
fn the_licensed_recording_matches_through_mp3_at_128_kbits_and_other_tracks_never_do() {
    let (bgm1, rate) = track("bgm1");
    assert_eq!(bgm1.len(), 1, "the game's music is mono");
    // The licence's reference: the first 90 s of the track.
    let licensed = excerpt(&bgm1, rate, 0, 90);
    let dir = tempfile::tempdir().unwrap();
    // Through MP3 at 128 kbit/s, from 20 s in for 40 s: it matches, and never mismatches.
    let piece = excerpt(&bgm1, rate, 20, 40);
    let mp3 = mp3_round_trip(&piece, rate, dir.path());
    let mut m = matcher_for(&licensed, rate);
    let s = states(&mut m, &mp3);
    assert!(s.contains(&TrackMatch::Match), "{s:?}");
    assert!(!s.contains(&TrackMatch::Mismatch), "{s:?}");
    eprintln!("MP3 128k: last window BER {:.3}", m.last_ber);
    // The other two tracks, as they are, through MP3 and at each speed: never a match, off
    // after 20 s.
    for other in ["bgm2", "bgm3"] {
        let (audio, r) = track(other);
        assert_eq!(r, rate);
        let piece = excerpt(&audio, rate, 10, 40);
        let mut inputs = vec![
            ("as is", piece.clone()),
            ("MP3", mp3_round_trip(&piece, rate, dir.path())),
        ];
        inputs.extend(
            SPEEDS
                .iter()
                .map(|&(to, how)| (how, speed(&piece, rate, to))),
        );
        never_matches(&licensed, rate, other, inputs);
    }
}

/// Measurement, not a check (`cargo test --test fingerprint_real -- --ignored --nocapture`):
/// for each window length, the best bit error rate of every window of the other tracks (as
/// they are, through MP3, at each speed) against the licensed track's reference, and the worst
/// of the licensed track's own windows through MP3.
#[test]
#[ignore]
fn measure_window_lengths() {
    let (bgm1, rate) = track("bgm1");
    let licensed = excerpt(&bgm1, rate, 0, 90);
    let reference = fingerprint::compute(&licensed, rate).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fp = |a: &[Vec<f32>]| fingerprint::compute(a, rate).unwrap();
    let mut own = vec![(
        "bgm1 mp3",
        fp(&mp3_round_trip(
            &excerpt(&bgm1, rate, 0, 90),
            rate,
            dir.path(),
        )),
    )];
    own.push(("bgm1 as is", fp(&licensed)));
    let mut others = Vec::new();
    for other in ["bgm2", "bgm3"] {
        let (audio, _) = track(other);
        others.push((format!("{other} as is"), fp(&audio)));
        others.push((
            format!("{other} mp3"),
            fp(&mp3_round_trip(&audio, rate, dir.path())),
        ));
        for &(to, how) in &SPEEDS {
            others.push((format!("{other} {how}"), fp(&speed(&audio, rate, to))));
        }
    }
    for w in [24usize, 40, 60, 80, 100, 121, 161] {
        let mut worst_own = 0f32;
        for (_, f) in &own {
            for s in (0..f.len().saturating_sub(w)).step_by(4) {
                worst_own =
                    worst_own.max(fingerprint::best_bit_error_rate(&f[s..s + w], &reference));
            }
        }
        let mut best_other = (1f32, String::new());
        let mut trials = 0;
        for (name, f) in &others {
            for s in (0..f.len().saturating_sub(w)).step_by(4) {
                trials += 1;
                let b = fingerprint::best_bit_error_rate(&f[s..s + w], &reference);
                if b < best_other.0 {
                    best_other = (b, name.clone());
                }
            }
        }
        eprintln!(
            "window {w} items ({:.1} s): own worst {worst_own:.3}; others best {:.3} ({}) in {trials} trials",
            w as f64 * fingerprint::ITEM_SECONDS,
            best_other.0,
            best_other.1
        );
    }
}

/// `audio` (at `rate`) through SoX with `effect` (e.g. `["tempo", "1.04"]`), at `out_rate`.
fn sox_at(
    audio: &[Vec<f32>],
    rate: u32,
    effect: &[&str],
    dir: &Path,
    out_rate: u32,
) -> Vec<Vec<f32>> {
    let input = dir.join("sox-in.wav");
    let output = dir.join("sox-out.wav");
    refrain::media::write_wav(&input, audio, rate).unwrap();
    let status = std::process::Command::new("sox")
        .args(["-V1", "--guard"])
        .arg(&input)
        .args(["-r", &out_rate.to_string()])
        .arg(&output)
        .args(effect)
        .status()
        .expect("sox: set-up installs Debian's sox");
    assert!(status.success(), "sox {effect:?}");
    let (out, r) = read_all(&output).unwrap();
    assert_eq!(r, out_rate);
    out
}

/// [`sox_at`], mono at 11,025 Hz.
fn sox(audio: &[Vec<f32>], rate: u32, effect: &[&str], dir: &Path) -> Vec<f32> {
    sox_at(audio, rate, effect, dir, 11_025)
        .into_iter()
        .next()
        .unwrap()
}

/// The changes remixers make, as SoX makes them: tempo (pitch kept), pitch (tempo kept), and
/// speed (both), with the change the matcher must undo for each.
fn remixes() -> Vec<(refrain::licence::transforms::Transform, Vec<&'static str>)> {
    use refrain::licence::transforms::Transform;
    vec![
        (Transform::Tempo(4), vec!["tempo", "1.04"]),
        (Transform::Tempo(-4), vec!["tempo", "0.96"]),
        (Transform::Tempo(8), vec!["tempo", "1.08"]),
        (Transform::Tempo(-8), vec!["tempo", "0.92"]),
        (Transform::Pitch(100), vec!["pitch", "100"]),
        (Transform::Pitch(-100), vec!["pitch", "-100"]),
        (Transform::Pitch(200), vec!["pitch", "200"]),
        (Transform::Pitch(-200), vec!["pitch", "-200"]),
        (Transform::Speed(100), vec!["speed", "1.059463"]),
        (Transform::Speed(-100), vec!["speed", "0.943874"]),
        (Transform::Speed(200), vec!["speed", "1.122462"]),
        (Transform::Speed(-200), vec!["speed", "0.890899"]),
    ]
}

/// The licensed track with its tempo changed by 4% and 8%, its pitch by one and two semitones,
/// or played one and two semitones faster or slower (SoX, as a remixer would) still matches in
/// real time, within the 20 s the gate waits, and never goes off; the other tracks, changed the
/// same ways, never match.
#[test]
fn the_licensed_recording_matches_after_the_tempo_and_pitch_changes_remixers_make() {
    let (bgm1, rate) = track("bgm1");
    let licensed = excerpt(&bgm1, rate, 0, 90);
    let dir = tempfile::tempdir().unwrap();
    let piece = excerpt(&bgm1, rate, 15, 40);
    for (t, effect) in remixes() {
        let changed = sox_at(&piece, rate, &effect, dir.path(), rate);
        let mut m = matcher_for(&licensed, rate);
        let s = states(&mut m, &changed);
        eprintln!(
            "bgm1 {}: {:?}, BER {:.3}, undone {:?}",
            t.describe(),
            s.iter()
                .position(|x| *x == TrackMatch::Match)
                .map(|i| i / 2),
            m.last_ber,
            m.undone()
        );
        assert!(s.contains(&TrackMatch::Match), "{}: {s:?}", t.describe());
        assert!(
            !s.contains(&TrackMatch::Mismatch),
            "{}: {s:?}",
            t.describe()
        );
    }
    for other in ["bgm2", "bgm3"] {
        let (audio, _) = track(other);
        let piece = excerpt(&audio, rate, 10, 40);
        let mut inputs = vec![("as is".to_owned(), piece.clone())];
        for (t, effect) in remixes().into_iter().step_by(3) {
            inputs.push((
                t.describe(),
                sox_at(&piece, rate, &effect, dir.path(), rate),
            ));
        }
        never_matches(&licensed, rate, other, inputs);
    }
}

/// Pitch shifts between semitones (+50 cents is as far from the grid as a shift gets), with
/// the tempo kept and as speed changes: the licensed track still matches in real time, within
/// the 20 s the gate waits, by undoing the shift its tuning says (tuning.rs); the other tracks,
/// shifted the same ways, never match.
#[test]
fn the_licensed_recording_matches_after_pitch_shifts_between_semitones() {
    let (bgm1, rate) = track("bgm1");
    let licensed = excerpt(&bgm1, rate, 0, 90);
    let dir = tempfile::tempdir().unwrap();
    let piece = excerpt(&bgm1, rate, 15, 40);
    let shifts: [(&str, Vec<&str>); 5] = [
        ("pitch +0.5 st", vec!["pitch", "50"]),
        ("pitch -1.5 st", vec!["pitch", "-150"]),
        ("pitch +1.3 st", vec!["pitch", "130"]),
        ("speed +0.5 st", vec!["speed", "1.029302"]),
        ("speed -0.7 st", vec!["speed", "0.960376"]),
    ];
    for (what, effect) in &shifts {
        let changed = sox_at(&piece, rate, effect, dir.path(), rate);
        let mut m = matcher_for(&licensed, rate);
        let s = states(&mut m, &changed);
        eprintln!(
            "bgm1 {what}: matched at {:?} s, BER {:.3}, undone {:?}",
            s.iter()
                .position(|x| *x == TrackMatch::Match)
                .map(|i| i / 2),
            m.last_ber,
            m.undone().map(|t| t.describe())
        );
        assert!(s.contains(&TrackMatch::Match), "{what}: {s:?}");
        assert!(!s.contains(&TrackMatch::Mismatch), "{what}: {s:?}");
    }
    // A licence issued before the tuning was stated: this track sits about 20 cents under A440,
    // so its input looks off the grid, yet whole semitones are still tried first.
    let changed = sox_at(&piece, rate, &["pitch", "100"], dir.path(), rate);
    let mut m = matcher_for(&licensed, rate).with_reference_tuning(None);
    let s = states(&mut m, &changed);
    assert!(s.contains(&TrackMatch::Match), "no tuning, +1 st: {s:?}");
    assert!(
        !s.contains(&TrackMatch::Mismatch),
        "no tuning, +1 st: {s:?}"
    );
    for other in ["bgm2", "bgm3"] {
        let (audio, _) = track(other);
        let piece = excerpt(&audio, rate, 10, 40);
        let inputs: Vec<(&str, Vec<Vec<f32>>)> = shifts
            .iter()
            .step_by(2)
            .map(|(what, effect)| (*what, sox_at(&piece, rate, effect, dir.path(), rate)))
            .collect();
        never_matches(&licensed, rate, other, inputs);
    }
}

/// The best bit error rate of a 20 s window (at 11,025 Hz) against `reference`, as it is and
/// with `t` undone.
fn window_ber(
    window: &[f32],
    reference: &[u32],
    t: Option<refrain::licence::transforms::Transform>,
) -> f32 {
    let plain = fingerprint::compute(&[window.to_vec()], 11_025).unwrap();
    let fp = match t {
        Some(t) => t.undo(window, 11_025, &plain).unwrap(),
        None => plain,
    };
    fingerprint::best_bit_error_rate(&fp, reference)
}

/// Measurement (`-- --ignored --nocapture`): the licensed track changed by SoX as remixers do,
/// matched as it is and with each change undone; the other tracks with every change undone.
#[test]
#[ignore]
fn measure_transform_retries() {
    use refrain::licence::transforms::Transform;
    let (bgm1, rate) = track("bgm1");
    let reference = fingerprint::compute(&bgm1, rate).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let variants = remixes();
    let w = 20 * 11_025;
    for (t, effect) in &variants {
        let changed = sox(&bgm1, rate, effect, dir.path());
        let (mut plain, mut undone, mut other_best) = (0f32, 0f32, 1f32);
        for s in (0..changed.len().saturating_sub(w)).step_by(5 * 11_025) {
            let win = &changed[s..s + w];
            plain = plain.max(window_ber(win, &reference, None));
            undone = undone.max(window_ber(win, &reference, Some(*t)));
            for c in Transform::all().filter(|c| c != t) {
                other_best = other_best.min(window_ber(win, &reference, Some(c)));
            }
        }
        eprintln!(
            "bgm1 {}: worst window as is {plain:.3}, undone {undone:.3}; best wrong undo {other_best:.3}",
            t.describe()
        );
    }
    for other in ["bgm2", "bgm3"] {
        let (audio, _) = track(other);
        let as_11k = sox(&audio, rate, &[], dir.path());
        let mut best = (1f32, String::new());
        for s in (0..as_11k.len().saturating_sub(w)).step_by(5 * 11_025) {
            let win = &as_11k[s..s + w];
            for c in Transform::all() {
                let b = window_ber(win, &reference, Some(c));
                if b < best.0 {
                    best = (b, c.describe());
                }
            }
        }
        eprintln!(
            "{other} with every change undone: best {:.3} ({})",
            best.0, best.1
        );
    }
}
