//! The voice through the whole engine, as `refrain render` and a bounce run it: the built-in
//! transform shifts the pitch the performer asks for, keeps the reported latency exact, and
//! reads its settings from the chain's controls.

use refrain::engine::latency::Mode;
use refrain::models::ModelSource;
use refrain::voice::controls::VoiceSettings;
use refrain::voice::yin::{cents, median_voiced, yin, YinSettings};

/// A neutral vowel's formants (centre, bandwidth).
const SCHWA: [(f32, f32); 3] = [(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)];

fn render(input: &[f32], rate: u32, mode: Mode, voice: VoiceSettings) -> Vec<f32> {
    let stereo = vec![input.to_vec(), input.to_vec()];
    let (out, report) = refrain::render::render(
        &ModelSource::Voice,
        None,
        refrain::render::RenderSettings {
            mode,
            block: 256,
            voice,
        },
        &stereo,
        rate,
        |_| {},
    )
    .expect("the built-in voice renders");
    assert_eq!(report.underruns, 0);
    assert_eq!(out[0].len(), input.len());
    assert_eq!(out[0], out[1], "the voice is the same on both channels");
    out.into_iter().next().unwrap()
}

#[test]
fn the_built_in_voice_raises_a_sung_vowel_by_seven_semitones_at_any_host_rate() {
    for (rate, mode) in [
        (44_100, Mode::Live),
        (48_000, Mode::Studio),
        (96_000, Mode::Live),
    ] {
        let x = refrain::testkit::vowel(rate, 220.0, &SCHWA, 2.0);
        let voice = VoiceSettings {
            pitch_semitones: 7.0,
            ..VoiceSettings::default()
        };
        let y = render(&x, rate, mode, voice);
        let steady = &y[rate as usize / 2..rate as usize * 3 / 2];
        let f = median_voiced(&yin(steady, rate, YinSettings::voice(rate)));
        assert!(
            cents(f, 329.63).abs() < 10.0,
            "{rate} Hz {mode:?}: {f} Hz, want 329.63"
        );
    }
}

#[test]
fn at_no_shift_the_built_in_voice_returns_the_input_at_exactly_the_reported_latency() {
    // The render removes exactly the latency the engine reports: a sample late or early and
    // the vowel no longer cancels.
    for (rate, mode) in [(44_100, Mode::Live), (48_000, Mode::Studio)] {
        let x = refrain::testkit::vowel(rate, 180.0, &SCHWA, 1.5);
        let y = render(&x, rate, mode, VoiceSettings::default());
        let from = rate as usize / 4;
        let diff: f32 = x[from..]
            .iter()
            .zip(&y[from..])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let power: f32 = x[from..].iter().map(|a| a * a).sum();
        let snr = 10.0 * (power / diff).log10();
        assert!(
            snr > 30.0,
            "{rate} Hz {mode:?}: input vs output {snr:.1} dB"
        );
        // One sample off would cost far more than that.
        let shifted: f32 = x[from..]
            .iter()
            .zip(&y[from + 1..])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        assert!(10.0 * (power / shifted).log10() < snr - 6.0);
    }
}

/// A recording from models/real/recordings at 16 kHz (mono) and as it is.
fn recording(name: &str) -> (Vec<f32>, Vec<f32>, u32) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real/recordings")
        .join(name);
    let mut reader = refrain::media::AudioReader::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; `cargo xtask fetch-models` fetches it", path.display()));
    let rate = reader.sample_rate();
    let mut all = vec![Vec::new(); reader.channels()];
    let mut buf = vec![Vec::new(); reader.channels()];
    while reader.read(&mut buf, 1 << 14).unwrap() > 0 {
        for (a, b) in all.iter_mut().zip(&buf) {
            a.extend_from_slice(b);
        }
    }
    let mono = all.swap_remove(0);
    let mut change = refrain::engine::resample::RateChange::new(rate, 16_000, 1).unwrap();
    let mut out = vec![Vec::new()];
    change.push(&[&mono], &mut out);
    change.finish(&mut out);
    (out.swap_remove(0), mono, rate)
}

fn swift_f0() -> refrain::voice::pitch::SwiftF0 {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real/swift-f0/model.onnx");
    refrain::voice::pitch::SwiftF0::load(&path).expect("SwiftF0 (`cargo xtask fetch-models`)")
}

/// The voice prompts of Debian's `alsa-utils` (a person saying "Front Center" and so on,
/// 48 kHz): real speech no one here recorded.
#[test]
fn swift_f0_on_real_speech_is_continuous_and_within_fifty_cents_of_yin() {
    use refrain::voice::pitch::{PitchModel, Tracker};
    let mut model = swift_f0();
    for name in [
        "Front_Center.wav",
        "Front_Left.wav",
        "Front_Right.wav",
        "Rear_Center.wav",
        "Rear_Left.wav",
        "Rear_Right.wav",
        "Side_Left.wav",
        "Side_Right.wav",
    ] {
        let (x16, x, rate) = recording(name);
        let mut f0 = Vec::new();
        model.track(&x16, &mut f0).unwrap();
        Tracker::default().clean(&mut f0);
        let reference = yin(&x, rate, YinSettings::voice(rate));
        let both: Vec<(f32, f32)> = f0
            .iter()
            .zip(&reference)
            .filter(|(a, b)| **a > 0.0 && **b > 0.0)
            .map(|(a, b)| (*a, *b))
            .collect();
        let close = both.iter().filter(|(a, b)| cents(*a, *b).abs() < 50.0).count();
        let voiced = f0.iter().filter(|f| **f > 0.0).count();
        let jumps = f0
            .windows(2)
            .filter(|w| w[0] > 0.0 && w[1] > 0.0 && cents(w[1], w[0]).abs() > 150.0)
            .count();
        let share = close as f32 / both.len().max(1) as f32;
        let report = format!(
            "{name}: {voiced} voiced of {} frames, {} voiced in both, {:.1}% within 50 cents, {jumps} jumps over 150 cents",
            f0.len(),
            both.len(),
            100.0 * share
        );
        eprintln!("{report}");
        // Measured here: 93.5-100% within 50 cents, at most one jump per recording.
        assert!(both.len() >= 30 && voiced >= 30, "{report}");
        assert!(share >= 0.9, "{report}");
        assert!(jumps * 50 <= voiced, "not continuous: {report}");
    }
}
