//! The real models set-up fetches from PyPI (`models/fetch.py`), loaded through Refrain's own
//! ONNX Runtime loader: their tensor contracts are the ones shared/MODELS.md gives, and they do
//! what they are for on synthetic input. Later issues build the audio-to-MIDI and voice-activity
//! paths on them; this pins the facts those paths rely on.

use ort::value::Tensor;
use std::path::PathBuf;

fn model(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/real")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `cargo xtask setup` (or `python3 models/fetch.py`) fetches it",
            path.display()
        )
    })
}

fn io_names(session: &ort::session::Session) -> (Vec<String>, Vec<String>) {
    (
        session
            .inputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect(),
        session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect(),
    )
}

#[test]
fn basic_pitch_hears_a4_in_a_440_hz_sine() {
    let mut s = refrain::models::runtime::session_from_memory(&model("basic-pitch/nmp.onnx"))
        .expect("load Basic Pitch")
        .session;
    let (ins, mut outs) = io_names(&s);
    assert_eq!(ins, vec!["serving_default_input_2:0"]);
    outs.sort();
    assert_eq!(
        outs,
        vec![
            "StatefulPartitionedCall:0",
            "StatefulPartitionedCall:1",
            "StatefulPartitionedCall:2"
        ]
    );
    // 2 s window minus one hop at 22,050 Hz, mono.
    let n = 43_844;
    let sine: Vec<f32> = (0..n)
        .map(|i| (std::f64::consts::TAU * 440.0 * i as f64 / 22_050.0).sin() as f32 * 0.5)
        .collect();
    let input = Tensor::from_array(([1usize, n, 1], sine)).unwrap();
    let out = s
        .run(ort::inputs!["serving_default_input_2:0" => input])
        .expect("run Basic Pitch");
    let (shape, notes) = out["StatefulPartitionedCall:1"]
        .try_extract_tensor::<f32>()
        .unwrap();
    assert_eq!(shape.to_vec(), vec![1, 172, 88]);
    let (_, contour) = out["StatefulPartitionedCall:0"]
        .try_extract_tensor::<f32>()
        .unwrap();
    assert_eq!(contour.len(), 172 * 264);
    // Mean note activation per key over the middle frames: A4 (MIDI 69) is key 48.
    let mut mean = [0.0f32; 88];
    for frame in 20..150 {
        for (k, m) in mean.iter_mut().enumerate() {
            *m += notes[frame * 88 + k];
        }
    }
    let best = (0..88)
        .max_by(|&a, &b| mean[a].total_cmp(&mean[b]))
        .unwrap();
    assert_eq!(best + 21, 69, "strongest key MIDI {}", best + 21);
    assert!(
        mean[best] / 130.0 > 0.3,
        "weak A4 activation {}",
        mean[best] / 130.0
    );
}

#[test]
fn silero_vad_says_silence_is_not_speech() {
    let mut s = refrain::models::runtime::session_from_memory(&model("silero-vad/silero_vad.onnx"))
        .expect("load Silero VAD")
        .session;
    let (mut ins, mut outs) = io_names(&s);
    ins.sort();
    outs.sort();
    assert_eq!(ins, vec!["input", "sr", "state"]);
    assert_eq!(outs, vec!["output", "stateN"]);
    let mut state = vec![0.0f32; 2 * 128];
    for _ in 0..20 {
        let out = s
            .run(ort::inputs![
                "input" => Tensor::from_array(([1usize, 512], vec![0.0f32; 512])).unwrap(),
                "state" => Tensor::from_array(([2usize, 1, 128], state.clone())).unwrap(),
                "sr" => Tensor::from_array(([0usize; 0], vec![16_000i64])).unwrap(),
            ])
            .expect("run Silero VAD");
        let (_, p) = out["output"].try_extract_tensor::<f32>().unwrap();
        assert!(p[0] < 0.1, "speech probability {} for silence", p[0]);
        let (_, next) = out["stateN"].try_extract_tensor::<f32>().unwrap();
        state.copy_from_slice(next);
    }
}
