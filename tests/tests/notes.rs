//! Host-level tests of the note output: the built `Refrain.clap` finds the notes of what it
//! plays with Basic Pitch (the real model, fetched by set-up) and sends them as MIDI note
//! events, each at the sample where the audio it came from leaves the plugin (Studio), or as
//! soon as it is known (Live).

use refrain_tests::{models_dir, Host, SentNote, Setup};
use std::sync::OnceLock;

const RATE: u32 = 48_000;
const BLOCK: usize = 256;

/// Basic Pitch is found in `REFRAIN_MODEL_PATH` (set-up fetches it into `models/real`).
fn env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let real = models_dir().join("real");
        assert!(
            real.join("basic-pitch/nmp.onnx").is_file(),
            "`cargo xtask fetch-models` fetches Basic Pitch"
        );
        // SAFETY: set once, before any plugin instance (or thread of one) exists.
        unsafe { std::env::set_var(refrain::models::library::ENV_MODEL_PATH, &real) };
    });
}

/// A tone of `key` for `seconds`: six partials, a 10 ms attack and release, decaying.
fn tone(key: u8, seconds: f64) -> Vec<f64> {
    let r = RATE as f64;
    let f = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
    let n = (seconds * r) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / r;
            let env = (t / 0.01).min(1.0) * (-t * 3.0).exp() * ((seconds - t) / 0.01).min(1.0);
            (1..=6)
                .map(|h| (std::f64::consts::TAU * f * h as f64 * t).sin() / h as f64)
                .sum::<f64>()
                * env
        })
        .collect()
}

/// C4 E4 G4 C5, 300 ms each, then the C major chord for 600 ms, stereo, with 3 s of silence
/// after; and the notes in it: (key, onset sample).
fn melody() -> (Vec<Vec<f32>>, Vec<(u8, u64)>) {
    let r = RATE as f64;
    let mut x = vec![0.0f64; (0.5 * r) as usize];
    let mut expected = Vec::new();
    for key in [60, 64, 67, 72] {
        expected.push((key, x.len() as u64));
        x.extend(tone(key, 0.3));
    }
    x.extend(vec![0.0; (0.2 * r) as usize]);
    let chord_at = x.len() as u64;
    let chord: Vec<Vec<f64>> = [60, 64, 67].iter().map(|&k| tone(k, 0.6)).collect();
    x.extend((0..chord[0].len()).map(|i| chord.iter().map(|c| c[i]).sum::<f64>() / 2.0));
    for key in [60, 64, 67] {
        expected.push((key, chord_at));
    }
    x.extend(vec![0.0; 3 * RATE as usize]);
    let mono: Vec<f32> = x.iter().map(|v| (v * 0.2) as f32).collect();
    (vec![mono.clone(), mono], expected)
}

/// Note-ons with their note-offs: (key, on sample, off sample).
fn notes_of(sent: &[SentNote]) -> Vec<(u8, u64, u64)> {
    sent.iter()
        .enumerate()
        .filter(|(_, n)| n.on)
        .map(|(i, n)| {
            let off = sent[i..]
                .iter()
                .find(|o| !o.on && o.key == n.key)
                .map_or(u64::MAX, |o| o.at);
            (n.key, n.at, off)
        })
        .collect()
}

/// Every expected note is sent within 35 ms of `onset + shift` (each used once), and any other
/// note is shorter than 50 ms; every note ends. Returns how late each expected note came
/// (samples past `onset + shift`, negative when early).
fn check(sent: &[SentNote], expected: &[(u8, u64)], shift: u64, tolerance_late: u64) -> Vec<i64> {
    let notes = notes_of(sent);
    let tol = (0.035 * RATE as f64) as i64;
    let mut used = vec![false; notes.len()];
    let mut lateness = Vec::new();
    for &(key, onset) in expected {
        let want = (onset + shift) as i64;
        let hit = notes.iter().enumerate().find(|(i, n)| {
            let d = n.1 as i64 - want;
            !used[*i] && n.0 == key && d >= -tol && d <= tol + tolerance_late as i64
        });
        let Some((i, n)) = hit else {
            panic!("no note {key} at sample {want} in {notes:?}");
        };
        used[i] = true;
        lateness.push(n.1 as i64 - want);
    }
    for (n, u) in notes.iter().zip(&used) {
        assert!(n.2 != u64::MAX, "note {n:?} never ends");
        assert!(
            *u || n.2 - n.1 <= (0.05 * RATE as f64) as u64,
            "an extra note longer than 50 ms: {n:?}"
        );
    }
    lateness
}

/// The plugin with `model`, `mode` and notes from `notes`, after a moment of playback (as in a
/// DAW session: the loader has settled on the chain for the project's settings).
fn host(model: &str, mode: &str, notes: &str) -> Host {
    env();
    let mut h = refrain_tests::host_with_model(model);
    h.set_state_param("mode", serde_json::json!({ "string": mode }))
        .unwrap();
    h.set_state_param("notes", serde_json::json!({ "string": notes }))
        .unwrap();
    h.activate(Setup::realtime(RATE as f64, BLOCK as u32))
        .unwrap();
    let silence = vec![vec![0.0f32; RATE as usize / 2]; 2];
    h.render_at(&silence, || BLOCK, Some(1.0)).unwrap();
    h.take_notes();
    h
}

#[test]
fn in_a_studio_bounce_each_note_of_the_input_leaves_at_the_sample_its_audio_leaves() {
    let (input, expected) = melody();
    let mut h = host("tone-shaper", "studio", "input");
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as u64;
    let delay = refrain::notes::tracker::detection_delay_s() * RATE as f64;
    assert!(
        latency as f64 >= delay,
        "Studio's latency {latency} covers the detector's {delay:.0}"
    );
    h.render(&input, || BLOCK, false).unwrap();
    let sent = h.take_notes();
    eprintln!("latency {latency}: {:?}", notes_of(&sent));
    let late = check(&sent, &expected, latency, 0);
    eprintln!("onsets against the aligned sample (samples): {late:?}");
    // A bounce of the same is the same, note for note.
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    h.render(&input, || BLOCK, false).unwrap();
    let again = h.take_notes();
    assert_eq!(notes_of(&again), notes_of(&sent));
}

#[test]
fn live_notes_leave_at_their_aligned_sample_or_as_soon_as_they_are_confirmed() {
    let (input, expected) = melody();
    let mut h = host("tone-shaper", "live", "input");
    h.activate(Setup::realtime(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as u64;
    // Played in real time, as on stage.
    h.render_at(&input, || BLOCK, Some(1.0)).unwrap();
    let sent = h.take_notes();
    let delay = (refrain::notes::tracker::detection_delay_s() * RATE as f64) as u64;
    let late = check(&sent, &expected, latency, delay);
    let ms: Vec<f64> = late.iter().map(|&d| d as f64 * 1e3 / RATE as f64).collect();
    eprintln!("Live latency {latency}; notes after their aligned sample (ms): {ms:?}");
}

#[test]
fn notes_of_a_stem_come_from_that_stem_and_leave_with_it() {
    // Spleeter's four-stem split puts the melody (no voice) in Other: its notes are the
    // melody's. The bass stem holds none of the notes above its band (C4, at 262 Hz, sits in
    // the 220-280 Hz crossover).
    let (input, expected) = melody();
    let spleeter = "real/spleeter-2stems";
    let mut h = host(spleeter, "studio", "other");
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as u64;
    h.render(&input, || BLOCK, false).unwrap();
    let sent = h.take_notes();
    eprintln!("latency {latency}: {:?}", notes_of(&sent));
    check(&sent, &expected, latency, 0);

    let mut h = host(spleeter, "studio", "bass");
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    h.render(&input, || BLOCK, false).unwrap();
    let above: Vec<_> = notes_of(&h.take_notes())
        .into_iter()
        .filter(|n| n.0 > 60 && n.2 - n.1 > (0.05 * RATE as f64) as u64)
        .collect();
    assert!(above.is_empty(), "the bass stem has the melody: {above:?}");
}

/// A Studio bounce of `input` through the tone shaper with notes from the input and one note
/// parameter set: the host (its notes to take) and the latency.
fn bounce_with(param: (&str, serde_json::Value), input: &[Vec<f32>]) -> (Host, u64) {
    let mut h = host("tone-shaper", "studio", "input");
    h.set_state_param(param.0, param.1).unwrap();
    h.activate(Setup::offline(RATE as f64, BLOCK as u32))
        .unwrap();
    let latency = h.latency() as u64;
    h.render(input, || BLOCK, false).unwrap();
    (h, latency)
}

#[test]
fn a_longer_minimum_note_length_keeps_the_chord_and_drops_the_300_ms_notes() {
    let (input, expected) = melody();
    let (mut h, latency) =
        bounce_with(("note_min_ms", serde_json::json!({ "f32": 400.0 })), &input);
    let sent = h.take_notes();
    // Only the chord (600 ms) is long enough.
    check(&sent, &expected[4..], latency, 0);
    let long = notes_of(&sent)
        .into_iter()
        .filter(|n| n.2 - n.1 > (0.05 * RATE as f64) as u64)
        .count();
    assert_eq!(long, 3, "{:?}", notes_of(&sent));
}

#[test]
fn with_pitch_bends_each_note_has_a_channel_of_its_own_and_a_sharp_note_is_bent_a_third_of_a_semitone(
) {
    // The melody and chord, then C4 33 cents sharp (one contour bin) for 0.6 s.
    let (mut input, mut expected) = melody();
    let r = RATE as f64;
    let sharp_at = input[0].len() as u64;
    expected.push((60, sharp_at));
    let f = 261.625_565 * 2f64.powf(33.3 / 1200.0);
    let n = (0.6 * r) as usize;
    let sharp: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / r;
            let env = (t / 0.01).min(1.0) * ((0.6 - t) / 0.01).min(1.0);
            let x: f64 = (1..=3)
                .map(|h| (std::f64::consts::TAU * f * h as f64 * t).sin() / h as f64)
                .sum();
            (0.3 * x * env) as f32
        })
        .chain(std::iter::repeat_n(0.0, 3 * RATE as usize))
        .collect();
    for c in &mut input {
        c.extend_from_slice(&sharp);
    }
    let (mut h, latency) = bounce_with(("note_bends", serde_json::json!({ "bool": true })), &input);
    let sent = h.take_notes();
    let bends = h.take_bends();
    // The notes are those without bends, at their aligned samples.
    check(&sent, &expected, latency, 0);
    let ons: Vec<&SentNote> = sent.iter().filter(|n| n.on).collect();
    for on in &ons {
        assert_ne!(on.channel, 9, "a note on the drums' channel: {on:?}");
        // Its channel's bend is set at its start, before it.
        assert!(
            bends
                .iter()
                .any(|b| b.channel == on.channel && b.at == on.at),
            "no bend with {on:?}"
        );
    }
    // The chord's three notes sound together on three channels.
    let chord: Vec<u8> = ons
        .iter()
        .filter(|n| {
            expected[4..7]
                .iter()
                .any(|e| e.0 == n.key && n.at.abs_diff(e.1 + latency) < 2_000)
        })
        .map(|n| n.channel)
        .collect();
    assert_eq!(chord.len(), 3, "{ons:?}");
    assert!(chord[0] != chord[1] && chord[1] != chord[2] && chord[0] != chord[2]);
    // The bend a note holds longest: centred for the in-tune melody, +1/3 semitone (8,192 +
    // 4,096 / 3 at a 2-semitone range) for the sharp C4.
    let held = |on: &SentNote| -> u16 {
        let off = sent
            .iter()
            .find(|o| !o.on && o.key == on.key && o.at > on.at)
            .map_or(u64::MAX, |o| o.at);
        let mine: Vec<&refrain_tests::SentBend> = bends
            .iter()
            .filter(|b| b.channel == on.channel && b.at >= on.at && b.at < off)
            .collect();
        let mut spans: Vec<(u16, u64)> = mine
            .iter()
            .enumerate()
            .map(|(i, b)| (b.value, mine.get(i + 1).map_or(off, |c| c.at) - b.at))
            .collect();
        spans.sort_by_key(|s| std::cmp::Reverse(s.1));
        spans[0].0
    };
    for on in &ons {
        if on.at < sharp_at + latency {
            assert_eq!(held(on), 8_192, "in tune: {on:?}");
        }
    }
    let sharp_c4 = ons
        .iter()
        .find(|n| n.key == 60 && n.at >= sharp_at + latency)
        .expect("the sharp C4");
    assert_eq!(held(sharp_c4), 8_192 + 4_096 / 3, "sharp: {bends:?}");
}
