//! The plugin's own editor in a CLAP host: the built `Refrain.clap` in the test host, its egui
//! editor embedded in the host's X11 window on a virtual display (Xvfb), driven with `xdotool`
//! as a user drives it. Loading another model from the editor while audio plays is heard, and
//! its latency is reported to the host (which restarts the plugin, as a DAW does), with no
//! reactivation on the audio thread.
//!
//! Its own test binary: it points `DISPLAY` at its Xvfb before any plugin thread exists.
//! Needs `Xvfb` and `xdotool` (set-up installs them when run as root; see README).

use refrain::testkit::{editor_layout, XDisplay};
use refrain_tests::{default_plugin_path, impulse, models_dir, peak_index, sine, Host, Setup};
use std::time::{Duration, Instant};

#[cfg(unix)]
#[test]
fn a_model_loaded_from_the_editor_in_a_clap_host_is_heard_and_its_latency_reported() {
    let display = XDisplay::start();
    // The model is imported into the models folder of this scratch data folder.
    let data = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe {
        std::env::set_var(refrain::licence::store::ENV_DATA_DIR, data.path());
        std::env::set_var("DISPLAY", &display.name);
        std::env::set_var("LIBGL_ALWAYS_SOFTWARE", "1");
    }
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    h.activate(Setup::realtime(48_000.0, 256)).unwrap();
    let before = h.latency();
    let window = h.open_editor().expect("open the editor");
    let window_id = window.window.to_string();

    // The user, on another thread, while the host keeps playing: select the model field's
    // text, type the polarity-flip model's path, click "Load model". Software GL on a loaded
    // machine can take a while to show the editor, so this repeats until the host sees the
    // new latency.
    let model = models_dir().join("test/invert");
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let display_name = display.name.clone();
    let user = std::thread::spawn(move || {
        let display = XDisplay::attach(&display_name);
        std::thread::sleep(Duration::from_secs(2));
        loop {
            let (x, y) = editor_layout::MODEL_FIELD;
            display.click(&window_id, x, y);
            display.xdotool(&["key", "ctrl+a"]);
            display.type_text(&model.display().to_string());
            let (x, y) = editor_layout::LOAD_MODEL;
            display.click(&window_id, x, y);
            if done_rx.recv_timeout(Duration::from_secs(5)).is_ok() {
                return;
            }
        }
    });
    let piece = sine(4_800, 48_000.0, 220.0, 0.3);
    let deadline = Instant::now() + Duration::from_secs(150);
    while h.latency() == before {
        assert!(
            Instant::now() < deadline,
            "loading from the editor never reached the host"
        );
        h.render(&piece, || 256, true).unwrap();
    }
    let _ = done_tx.send(());
    user.join().unwrap();

    // The new model is heard, exactly at the latency the host now has.
    let latency = h.latency() as usize;
    h.set_render_mode(true).unwrap();
    h.reset().unwrap();
    let x = impulse(2, 2_000 + latency + 1_000, 2_000);
    let out = h.render(&x, || 256, false).unwrap();
    assert_eq!(peak_index(&out[0]), 2_000 + latency);
    assert_eq!(
        out[0][2_000 + latency],
        -1.0,
        "the polarity-flip model is heard"
    );
    // Close as a DAW does: the editor first (its window thread needs a moment), then the
    // plugin, then the host's window, and the display last.
    h.close_editor();
    std::thread::sleep(Duration::from_millis(500));
    drop(h);
    drop(window);
    drop(display);
}
