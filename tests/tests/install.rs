//! `cargo xtask install`, as `cargo xtask test` runs it into a scratch home
//! (`REFRAIN_INSTALL_CHECK_HOME`): the CLAP and VST3 bundles land in the per-user plugin
//! folders with ONNX Runtime beside their binaries, and the installed CLAP plugin finds it
//! there (no `ORT_DYLIB_PATH`) and runs its model. Its own test binary: it clears the
//! variable before any plugin thread exists.

use refrain_tests::{impulse, peak_index, Host, Setup};
use std::path::PathBuf;

#[test]
fn the_installed_plugin_finds_onnx_runtime_beside_itself_and_runs() {
    let Some(home) = std::env::var_os("REFRAIN_INSTALL_CHECK_HOME").map(PathBuf::from) else {
        panic!("run through `cargo xtask test`, which installs into a scratch home first");
    };
    // SAFETY: the only test in this process, before any plugin thread starts.
    unsafe { std::env::remove_var("ORT_DYLIB_PATH") };
    let clap = home.join(".clap/Refrain.clap");
    let vst3_bin = home.join(".vst3/Refrain.vst3/Contents/x86_64-linux");
    for path in [
        clap.clone(),
        home.join(".clap/libonnxruntime.so.1.31.1"),
        vst3_bin.join("Refrain.so"),
        vst3_bin.join("libonnxruntime.so.1.31.1"),
    ] {
        assert!(path.is_file(), "{} was not installed", path.display());
    }
    let mut h = Host::load(&clap).expect("load the installed plugin");
    let model = refrain_tests::models_dir().join("test/invert/model.toml");
    h.set_state_field("model", model.to_str().unwrap()).unwrap();
    h.activate(Setup::offline(48_000.0, 256)).unwrap();
    let latency = h.latency() as usize;
    let out = h
        .render(&impulse(2, 3_000 + latency, 1_000), || 256, false)
        .unwrap();
    assert_eq!(peak_index(&out[0]), 1_000 + latency);
    assert_eq!(
        out[0][1_000 + latency],
        -1.0,
        "the model ran: ONNX Runtime was found"
    );
}
