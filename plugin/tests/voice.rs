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
