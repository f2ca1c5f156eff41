//! A project saved in a DAW names its model by id and identity, not by path: it reopens with
//! the model wherever the models folder has it, and plays the dry signal, aligned, where it
//! does not. Its own process: it sets the data folder before any plugin thread exists.

use refrain::models::library;
use refrain_tests::{default_plugin_path, models_dir, sine, Host, Setup};

const RATE: f64 = 48_000.0;

/// Opens `state` in a fresh plugin, bounces `input`; returns the output and the latency.
fn bounce(state: &[u8], input: &[Vec<f32>]) -> (Vec<Vec<f32>>, usize) {
    let mut h = Host::load(&default_plugin_path()).unwrap();
    h.load_state(state).unwrap();
    h.activate(Setup::offline(RATE, 256)).unwrap();
    let out = h.render(input, || 256, false).unwrap();
    (out, h.latency() as usize)
}

#[test]
fn a_project_names_its_model_by_identity_and_reopens_with_it_or_plays_dry_without_it() {
    let data = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::set_var(refrain::licence::store::ENV_DATA_DIR, data.path()) };

    // The user loads the polarity-flip model (the editor imports it the same way).
    let (reference, folder) =
        library::import(&models_dir().join("test/invert/model.toml")).unwrap();
    let mut h = Host::load(&default_plugin_path()).unwrap();
    h.set_state_field("model", &reference.to_state()).unwrap();
    let state = h.save_state().unwrap();
    drop(h);
    let text = String::from_utf8_lossy(&state);
    assert!(text.contains(&reference.to_state()), "{text}");
    assert!(
        !text.contains(&*models_dir().to_string_lossy()),
        "no path in the project: {text}"
    );

    let input = sine(24_000, RATE, 330.0, 0.5);
    let flipped = |out: &[Vec<f32>], latency: usize| {
        (latency + 1_000..24_000).all(|i| out[0][i] == -input[0][i - latency])
    };
    let dry = |out: &[Vec<f32>], latency: usize| {
        (latency..24_000).all(|i| out[0][i] == input[0][i - latency])
    };

    // Reopened with the model in the models folder: the model is heard.
    let (out, latency) = bounce(&state, &input);
    assert!(flipped(&out, latency), "the project reopens with its model");

    // On a machine without it: the dry signal, aligned.
    let away = data.path().join("elsewhere");
    std::fs::rename(&folder, &away).unwrap();
    let (out, latency) = bounce(&state, &input);
    assert!(dry(&out, latency), "a missing model plays dry, aligned");

    // Installed there (any folder name in the models folder): heard again.
    std::fs::rename(&away, folder.with_file_name("my-invert")).unwrap();
    let (out, latency) = bounce(&state, &input);
    assert!(
        flipped(&out, latency),
        "found by its identity, whatever its folder is called"
    );
}
