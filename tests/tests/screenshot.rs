//! README's screenshots of the editor: the built `Refrain.clap` in the test host on a virtual
//! display, running Spleeter with notes out from the Other stem while a melody plays
//! (`plugin/docs/editor.png`), and running an RVC voice (the generated test voice) five
//! semitones up while a person speaks (`plugin/docs/editor-voice.png`). Not checks (they assert
//! only that the capture worked), so they are ignored by default: `cargo test -p refrain-tests
//! --test screenshot -- --ignored --test-threads 1`.

use refrain::testkit::XDisplay;
use refrain_tests::{capture_window, models_dir, write_png, Setup};
use std::time::Duration;

#[cfg(unix)]
#[test]
#[ignore = "writes README's screenshot"]
fn screenshot_of_the_editor_running_spleeter_with_notes_out() {
    let (display, _data) = virtual_display();
    let mut h = refrain_tests::host_with_model("real/spleeter-2stems");
    h.set_state_param("notes", serde_json::json!({ "string": "other" }))
        .unwrap();
    h.set_state_param("drums_mute", serde_json::json!({ "bool": true }))
        .unwrap();
    h.set_state_param("vocals_gain", serde_json::json!({ "f32": 0.5 }))
        .unwrap();
    h.activate(Setup::realtime(48_000.0, 256)).unwrap();
    let window = h.open_editor().expect("open the editor");
    // A melody over a pulse, played in real time for 8 s, so the meters and notes move.
    let rate = 48_000.0;
    let music: Vec<f32> = (0..(8.0 * rate) as usize)
        .map(|i| {
            let t = i as f64 / rate;
            let key = [60.0, 64.0, 67.0, 72.0][(t / 0.4) as usize % 4];
            let f = 440.0 * 2f64.powf((key - 69.0) / 12.0);
            let beat = (-(t % 0.5) * 30.0).exp();
            (0.15 * (std::f64::consts::TAU * f * t).sin()
                + 0.2 * beat * (std::f64::consts::TAU * 60.0 * t).sin()) as f32
        })
        .collect();
    // The pointer moves over the editor while it plays, so it repaints as with a user in front
    // of it; the capture is taken near the end, while the meters move.
    let display_name = display.name.clone();
    let window_id = window.window;
    let capture = std::thread::spawn(move || {
        let display = XDisplay::attach(&display_name);
        let id = window_id.to_string();
        for i in 0..45 {
            let x = (560 + (i % 2) * 8).to_string();
            display.xdotool(&["mousemove", "--window", &id, &x, "560"]);
            std::thread::sleep(Duration::from_millis(150));
        }
        capture_window(&display_name, window_id).expect("capture")
    });
    h.render_at(&[music.clone(), music], || 256, Some(1.0))
        .unwrap();
    let (w, hgt, rgb) = capture.join().unwrap();
    save(h, window, display, "editor.png", w, hgt, &rgb);
}

/// A virtual display for the plugin's editor, a private licence folder, and the real models.
fn virtual_display() -> (XDisplay, tempfile::TempDir) {
    let display = XDisplay::start();
    let data = tempfile::tempdir().unwrap();
    // SAFETY: before any plugin thread starts (the tests run one at a time).
    unsafe {
        std::env::set_var(refrain::licence::store::ENV_DATA_DIR, data.path());
        std::env::set_var(
            refrain::models::library::ENV_MODEL_PATH,
            models_dir().join("real"),
        );
        std::env::set_var("DISPLAY", &display.name);
        std::env::set_var("LIBGL_ALWAYS_SOFTWARE", "1");
    }
    (display, data)
}

/// Writes the capture to plugin/docs/`name` and closes everything.
fn save(
    mut h: refrain_tests::Host,
    window: refrain_tests::EditorWindow,
    display: XDisplay,
    name: &str,
    w: u32,
    hgt: u32,
    rgb: &[u8],
) {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugin/docs")
        .join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    write_png(&out, w, hgt, rgb).unwrap();
    assert!(rgb.iter().any(|&b| b != rgb[0]), "the capture is blank");
    eprintln!("wrote {} ({w} x {hgt})", out.display());
    h.close_editor();
    std::thread::sleep(Duration::from_millis(500));
    drop(h);
    drop(window);
    drop(display);
}

#[cfg(unix)]
#[test]
#[ignore = "writes README's screenshot"]
fn screenshot_of_the_editor_running_a_voice() {
    let (display, _data) = virtual_display();
    let mut h = refrain_tests::host_with_model("test/rvc-v2");
    h.set_state_param("voice_pitch", serde_json::json!({ "f32": 5.0 }))
        .unwrap();
    h.activate(Setup::realtime(48_000.0, 256)).unwrap();
    let window = h.open_editor().expect("open the editor");
    // A person speaking (alsa-utils' prompts), one after another for 8 s.
    let mut speech = Vec::new();
    for name in [
        "Front_Center",
        "Front_Left",
        "Rear_Right",
        "Side_Left",
        "Front_Right",
    ] {
        let path = models_dir().join(format!("real/recordings/{name}.wav"));
        let mut r = hound::WavReader::open(&path).expect("`cargo xtask fetch-models`");
        speech.extend(r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0));
        speech.extend(vec![0.0; 12_000]);
    }
    let display_name = display.name.clone();
    let window_id = window.window;
    let capture = std::thread::spawn(move || {
        let display = XDisplay::attach(&display_name);
        let id = window_id.to_string();
        // Near the end of a word, while the voice sings and its pitch shows.
        for i in 0..36 {
            let x = (560 + (i % 2) * 8).to_string();
            display.xdotool(&["mousemove", "--window", &id, &x, "560"]);
            std::thread::sleep(Duration::from_millis(150));
        }
        capture_window(&display_name, window_id).expect("capture")
    });
    h.render_at(&[speech.clone(), speech], || 256, Some(1.0))
        .unwrap();
    let (w, hgt, rgb) = capture.join().unwrap();
    save(h, window, display, "editor-voice.png", w, hgt, &rgb);
}
