//! Notes with Basic Pitch's real weights (`models/real/basic-pitch/nmp.onnx`, fetched from PyPI by
//! set-up): a synthesised melody, C4 E4 G4 C5 of 300 ms each and then a C-E-G chord, in
//! harmonic-rich tones (six partials, so the fifth harmonic of one note is a candidate for an
//! extra one), comes out as exactly those notes, from the library and from `refrain notes`.

use refrain::media::write_wav;
use refrain::notes::basic_pitch::BasicPitch;
use refrain::notes::decode::Settings;
use refrain::notes::tracker::NoteChange;
use refrain::notes::{midi, notes_of_file, Note, NotesError};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

fn model_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/real/basic-pitch/nmp.onnx");
    assert!(p.exists(), "{}: `cargo xtask fetch-models`", p.display());
    p
}

/// A tone of `key` for `seconds`: six partials at 1/h, a 10 ms attack and release, decaying.
fn tone(key: u8, seconds: f64, rate: f64) -> Vec<f64> {
    let f = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
    let n = (seconds * rate) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let env = (t / 0.01).min(1.0) * (-t * 3.0).exp() * ((seconds - t) / 0.01).min(1.0);
            (1..=6)
                .map(|h| (std::f64::consts::TAU * f * h as f64 * t).sin() / h as f64)
                .sum::<f64>()
                * env
        })
        .collect()
}

/// The melody and the chord at `rate`, and the notes in it: (key, onset in seconds).
fn melody(rate: u32) -> (Vec<f32>, Vec<(u8, f64)>) {
    let r = rate as f64;
    let mut x = vec![0.0f64; (0.5 * r) as usize];
    let mut expected = Vec::new();
    for key in [60, 64, 67, 72] {
        expected.push((key, x.len() as f64 / r));
        x.extend(tone(key, 0.3, r));
    }
    x.extend(vec![0.0; (0.2 * r) as usize]);
    let chord_at = x.len() as f64 / r;
    let chord: Vec<Vec<f64>> = [60, 64, 67].iter().map(|&k| tone(k, 0.6, r)).collect();
    x.extend((0..chord[0].len()).map(|i| chord.iter().map(|c| c[i]).sum::<f64>() / 2.0));
    for key in [60, 64, 67] {
        expected.push((key, chord_at));
    }
    x.extend(vec![0.0; (0.5 * r) as usize]);
    (x.iter().map(|v| (v * 0.2) as f32).collect(), expected)
}

/// Runs `refrain notes INPUT --out OUT --model <Basic Pitch> EXTRA...`, which must succeed;
/// returns what it printed.
fn refrain_notes(input: &Path, out: &Path, extra: &[&OsStr]) -> String {
    let o = refrain::testkit::command(env!("CARGO_BIN_EXE_refrain"))
        .arg("notes")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(model_path())
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// Every expected note found with its onset within 35 ms; nothing else longer than 50 ms.
fn check(found: &[Note], expected: &[(u8, f64)]) {
    let mut matched = vec![false; found.len()];
    for &(key, onset) in expected {
        let hit = found
            .iter()
            .enumerate()
            .find(|(i, n)| !matched[*i] && n.key == key && (n.start - onset).abs() <= 0.035);
        let Some((i, _)) = hit else {
            panic!("no note {key} at {onset:.3} s within 35 ms in {found:#?}");
        };
        matched[i] = true;
    }
    for (n, m) in found.iter().zip(&matched) {
        assert!(
            *m || n.end - n.start <= 0.050,
            "an extra note longer than 50 ms: {n:?}"
        );
    }
}

#[test]
fn a_synthesised_melody_and_chord_come_out_as_their_notes_at_any_input_rate() {
    let mut model = BasicPitch::load(&model_path()).unwrap();
    for rate in [44_100, 48_000, 22_050] {
        let (audio, expected) = melody(rate);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("melody.wav");
        // Stereo, to check the mix to mono too.
        write_wav(&input, &[audio.clone(), audio], rate).unwrap();
        let found = notes_of_file(&input, &mut model, &Settings::default()).unwrap();
        eprintln!("{rate} Hz: {found:?}");
        check(&found, &expected);
    }
}

#[test]
fn refrain_notes_writes_a_midi_file_with_those_notes() {
    let (audio, expected) = melody(44_100);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("melody.wav");
    write_wav(&input, &[audio], 44_100).unwrap();
    let out = dir.path().join("melody.mid");
    let stdout = refrain_notes(&input, &out, &[]);
    assert!(stdout.contains("notes:        7"), "{stdout}");
    let back = midi::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    check(&back, &expected);
}

#[test]
fn another_model_a_corrupt_file_and_a_bad_threshold_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Silero VAD is an ONNX model, but not the one the decoder is for.
    let other =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/real/silero-vad/silero_vad.onnx");
    let e = BasicPitch::load(&other).err().unwrap();
    assert!(matches!(e, NotesError::NotBasicPitch { .. }), "{e}");
    assert!(e.to_string().contains("silero_vad.onnx"), "{e}");
    let mut model = BasicPitch::load(&model_path()).unwrap();
    let junk = dir.path().join("take.flac");
    std::fs::write(&junk, b"fLaC but not really").unwrap();
    let e = notes_of_file(&junk, &mut model, &Settings::default()).unwrap_err();
    assert!(e.to_string().contains("take.flac"), "{e}");
    let wav = dir.path().join("ok.wav");
    write_wav(&wav, &[vec![0.0; 4410]], 44_100).unwrap();
    let bad = Settings {
        onset_threshold: 0.0,
        ..Settings::default()
    };
    let e = notes_of_file(&wav, &mut model, &bad).unwrap_err();
    assert!(e.to_string().contains("onset threshold"), "{e}");
    // Silence has no notes, and a short file is fine.
    assert!(notes_of_file(&wav, &mut model, &Settings::default())
        .unwrap()
        .is_empty());
}

#[test]
fn a_long_file_is_decoded_chunk_by_chunk_without_losing_or_doubling_notes_at_the_seams() {
    // 75 s: the melody and chord every 3.5 s, and a C3 held from 28.5 s to 32 s across the
    // first 30 s chunk boundary (the decoder works in 30 s chunks).
    let rate = 22_050u32;
    let r = rate as f64;
    let (phrase, phrase_notes) = melody(rate);
    let period = 3.5;
    let mut x = vec![0.0f32; (75.0 * r) as usize];
    let mut expected = Vec::new();
    let mut t = 0.0;
    while t + 3.2 < 75.0 {
        if !(27.0..33.0).contains(&t) {
            let at = (t * r) as usize;
            for (o, v) in x[at..].iter_mut().zip(&phrase) {
                *o += v;
            }
            expected.extend(phrase_notes.iter().map(|&(k, s)| (k, s + t)));
        }
        t += period;
    }
    let held = tone(48, 3.5, r);
    let at = (28.5 * r) as usize;
    for (o, v) in x[at..].iter_mut().zip(&held) {
        *o += (*v * 0.2) as f32;
    }
    expected.push((48, 28.5));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.wav");
    write_wav(&input, &[x], rate).unwrap();
    let mut model = BasicPitch::load(&model_path()).unwrap();
    let found = notes_of_file(&input, &mut model, &Settings::default()).unwrap();
    // Chunk by chunk gives what the whole posteriorgram at once gives: no note lost or doubled
    // at the seams (at 30 and 60 s), the held note found once across the first (and, as the
    // reference decoder does, its decaying end as a second note of its own).
    let (audio, _) = refrain::media::read_all(&input).unwrap();
    let whole = refrain::notes::decode::notes(&model.run(&audio[0]).unwrap(), &Settings::default());
    // Inferred onsets are scaled per chunk, so an onset may move by a frame (11.6 ms).
    let frame = 256.0 / 22_050.0 + 1e-9;
    assert_eq!(found.len(), whole.len(), "{found:#?}\n{whole:#?}");
    for w in &whole {
        assert!(
            found.iter().any(|f| f.key == w.key
                && (f.start - w.start).abs() <= frame
                && (f.end - w.end).abs() <= frame),
            "{w:?} is not in the chunked notes"
        );
    }
    // And every note played is there, at its onset.
    for &(key, onset) in &expected {
        assert!(
            found
                .iter()
                .any(|n| n.key == key && (n.start - onset).abs() <= 0.035),
            "no note {key} at {onset:.3} s"
        );
    }
    assert!(found.len() >= expected.len());
}

#[test]
fn notes_of_the_bass_stem_are_the_bass_line_not_the_melody_above_it() {
    // C2 E2 G2 C2 (500 ms each) under the C5 E5 G5 C6 melody, at once.
    let rate = 44_100u32;
    let r = rate as f64;
    let mut x = vec![0.0f64; (2.6 * r) as usize];
    for (i, (low, high)) in [(36, 72), (40, 76), (43, 79), (36, 84)]
        .into_iter()
        .enumerate()
    {
        let at = ((0.3 + 0.5 * i as f64) * r) as usize;
        for (o, v) in x[at..].iter_mut().zip(tone(low, 0.45, r)) {
            *o += v;
        }
        for (o, v) in x[at..].iter_mut().zip(tone(high, 0.45, r)) {
            *o += v * 0.7;
        }
    }
    let audio: Vec<f32> = x.iter().map(|v| (v * 0.15) as f32).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("band.wav");
    write_wav(&input, &[audio], rate).unwrap();
    let out = dir.path().join("bass.mid");
    let spleeter = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/real/spleeter-2stems");
    let stdout = refrain_notes(
        &input,
        &out,
        &[
            "--stem".as_ref(),
            "bass".as_ref(),
            "--separator".as_ref(),
            spleeter.as_os_str(),
        ],
    );
    assert!(stdout.contains("stem:         bass"), "{stdout}");
    let found = midi::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    let long: Vec<&Note> = found.iter().filter(|n| n.end - n.start > 0.05).collect();
    assert!(
        long.iter().all(|n| n.key < 60),
        "the melody leaked into the bass: {long:?}"
    );
    // The DSP bass stem is the harmonic part (a 17-frame median over time), which smears
    // onsets: through it they land within 75 ms, not the 35 ms of a clean input, and an octave
    // above the fundamental may be heard too.
    for (i, key) in [36u8, 40, 43, 36].into_iter().enumerate() {
        let onset = 0.3 + 0.5 * i as f64;
        assert!(
            long.iter()
                .any(|n| n.key == key && (n.start - onset).abs() <= 0.075),
            "no bass note {key} at {onset} s in {long:?}"
        );
    }
}

/// C4 in tune, then C4 33 cents sharp (one contour bin), 0.6 s each, a pure-ish tone, at
/// 44.1 kHz.
fn in_tune_then_sharp() -> Vec<f32> {
    let r = 44_100.0;
    let sing = |cents: f64, seconds: f64| -> Vec<f64> {
        let f = 261.625_565 * 2f64.powf(cents / 1200.0);
        (0..(seconds * r) as usize)
            .map(|i| {
                let t = i as f64 / r;
                let env = (t / 0.01).min(1.0) * ((seconds - t) / 0.01).min(1.0);
                (1..=3)
                    .map(|h| (std::f64::consts::TAU * f * h as f64 * t).sin() / h as f64)
                    .sum::<f64>()
                    * env
            })
            .collect()
    };
    let mut x = vec![0.0; (0.3 * r) as usize];
    x.extend(sing(0.0, 0.6));
    x.extend(vec![0.0; (0.3 * r) as usize]);
    x.extend(sing(33.3, 0.6));
    x.extend(vec![0.0; (0.3 * r) as usize]);
    x.iter().map(|v| (v * 0.3) as f32).collect()
}

/// The median of a note's bends.
fn median_bend(n: &Note) -> i8 {
    let mut b: Vec<i8> = n.bends.iter().map(|b| b.1).collect();
    b.sort();
    b[b.len() / 2]
}

#[test]
fn pitch_bends_follow_a_note_sung_a_third_of_a_semitone_sharp() {
    let rate = 44_100u32;
    let audio = in_tune_then_sharp();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sung.wav");
    write_wav(&input, &[audio], rate).unwrap();
    let mut model = BasicPitch::load(&model_path()).unwrap();
    let settings = Settings {
        pitch_bends: true,
        ..Settings::default()
    };
    let found = notes_of_file(&input, &mut model, &settings).unwrap();
    let c4: Vec<&Note> = found.iter().filter(|n| n.key == 60).collect();
    assert_eq!(c4.len(), 2, "{found:?}");
    assert_eq!(median_bend(c4[0]), 0, "in tune: {:?}", c4[0].bends);
    assert_eq!(
        median_bend(c4[1]),
        1,
        "a third of a semitone sharp: {:?}",
        c4[1].bends
    );
    // And they survive the MIDI file, each note on a channel of its own.
    let back = midi::from_bytes(&midi::to_bytes(&found)).unwrap();
    let sharp = back.iter().find(|n| n.key == 60 && n.start > 1.0).unwrap();
    assert!(sharp.bends.iter().any(|b| b.1 == 1), "{:?}", sharp.bends);
}

/// Streams `audio` (mono, at `rate`) through the plugin's note tracker in blocks of 512 from
/// input time `origin`, then 3 s of silence, and collects its events.
fn track(
    audio: &[f32],
    rate: u32,
    origin: u64,
    settings: Settings,
) -> Vec<refrain::notes::tracker::NoteEvent> {
    use refrain::notes::tracker::NoteTracker;
    let model = BasicPitch::load(&model_path()).unwrap();
    let (tracker, mut feed, mut events) = NoteTracker::start(model, settings, rate).unwrap();
    let mut padded = audio.to_vec();
    padded.extend(vec![0.0; 3 * rate as usize]);
    for (i, block) in padded.chunks(512).enumerate() {
        feed.push(origin + (i * 512) as u64, block);
    }
    let end = origin + padded.len() as u64;
    let shared = tracker.shared().clone();
    let started = std::time::Instant::now();
    while shared.decided.load(std::sync::atomic::Ordering::Acquire) + 3 * rate as u64 / 2 < end
        && started.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut out = Vec::new();
    while let Some(e) = events.pop() {
        out.push(e);
    }
    out
}

/// Events into notes: each note-on with the next note-off of its key, as seconds from `origin`.
fn notes_of_events(
    events: &[refrain::notes::tracker::NoteEvent],
    rate: u32,
    origin: u64,
) -> Vec<Note> {
    let mut notes = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let NoteChange::On { velocity } = e.change else {
            continue;
        };
        let off = events[i..]
            .iter()
            .position(|o| o.is_off() && o.key == e.key)
            .map_or(events.len(), |j| i + j);
        let seconds = |at: u64| (at - origin) as f64 / rate as f64;
        // Its bends: the one just before it, and those after it until its end.
        let before = events[..i]
            .iter()
            .rev()
            .take_while(|b| b.at == e.at)
            .find(|b| b.key == e.key);
        let bends = before
            .into_iter()
            .chain(&events[i..off])
            .filter_map(|b| match b.change {
                NoteChange::Bend(t) if b.key == e.key => Some((seconds(b.at), t)),
                _ => None,
            })
            .collect();
        notes.push(Note {
            start: seconds(e.at),
            end: events.get(off).map_or(f64::INFINITY, |o| seconds(o.at)),
            key: e.key,
            velocity,
            bends,
        });
    }
    notes
}

#[test]
fn the_plugins_note_tracker_finds_the_melody_and_chord_as_they_stream_and_ends_every_note() {
    for (rate, origin) in [(48_000u32, 1_000u64), (44_100, 0)] {
        let (audio, expected) = melody(rate);
        let events = track(&audio, rate, origin, Settings::default());
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.change, NoteChange::Bend(_))),
            "no bends unless asked for"
        );
        let found = notes_of_events(&events, rate, origin);
        eprintln!("{rate} Hz: {found:?}");
        check(&found, &expected);
        assert!(
            found.iter().all(|n| n.end.is_finite() && n.end > n.start),
            "every note ends: {found:?}"
        );
        // The file decoder and the stream agree on the ends too, within 35 ms.
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("melody.wav");
        write_wav(&input, &[audio], rate).unwrap();
        let mut model = BasicPitch::load(&model_path()).unwrap();
        let file = notes_of_file(&input, &mut model, &Settings::default()).unwrap();
        for n in &found {
            let same = file
                .iter()
                .find(|f| f.key == n.key && (f.start - n.start).abs() <= 0.035)
                .unwrap_or_else(|| panic!("{n:?} is not in the file's notes {file:?}"));
            assert!(
                (same.end - n.end).abs() <= 0.035,
                "{n:?} ends apart from the file's {same:?}"
            );
        }
    }
}

#[test]
fn the_plugins_note_tracker_bends_a_sharp_note_and_not_an_in_tune_one() {
    let rate = 44_100u32;
    let origin = 500;
    let settings = Settings {
        pitch_bends: true,
        ..Settings::default()
    };
    let events = track(&in_tune_then_sharp(), rate, origin, settings);
    let found = notes_of_events(&events, rate, origin);
    let c4: Vec<&Note> = found.iter().filter(|n| n.key == 60).collect();
    assert_eq!(c4.len(), 2, "{found:?}");
    for n in &c4 {
        // A bend at the onset, before the note-on, so the note never starts at a stale pitch.
        assert_eq!(n.bends.first().map(|b| b.0), Some(n.start), "{n:?}");
        // Bends only while it sounds.
        assert!(
            n.bends.iter().all(|b| b.0 >= n.start && b.0 < n.end),
            "{n:?}"
        );
    }
    // Bends are sent where the pitch moves, so the median over a note's time is what counts:
    // weight each bend by how long it holds.
    let held = |n: &Note| -> i8 {
        let mut spans: Vec<(i8, f64)> = n
            .bends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.1, n.bends.get(i + 1).map_or(n.end, |c| c.0) - b.0))
            .collect();
        spans.sort_by_key(|s| s.0);
        let total: f64 = spans.iter().map(|s| s.1).sum();
        let mut run = 0.0;
        spans
            .iter()
            .find(|s| {
                run += s.1;
                run >= total / 2.0
            })
            .map_or(0, |s| s.0)
    };
    assert_eq!(held(c4[0]), 0, "in tune: {:?}", c4[0].bends);
    assert_eq!(
        held(c4[1]),
        1,
        "a third of a semitone sharp: {:?}",
        c4[1].bends
    );
    // The same bends as the file decoder's, where each frame's bend is kept.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sung.wav");
    write_wav(&input, &[in_tune_then_sharp()], rate).unwrap();
    let mut model = BasicPitch::load(&model_path()).unwrap();
    let file = notes_of_file(&input, &mut model, &settings).unwrap();
    let file_c4: Vec<&Note> = file.iter().filter(|n| n.key == 60).collect();
    assert_eq!(median_bend(file_c4[1]), held(c4[1]));
}
