//! The editor, driven as a user drives it: `refrain-standalone` on the dummy audio backend with
//! its egui editor open on a virtual X display (Xvfb, Mesa's software GL), clicked and typed
//! into with `xdotool`. Loading the demo remix model from the editor builds the chain for it
//! (no reactivation) with no licence (the AI path is off, with the reason); loading a licence
//! file from the editor loads the track and the licence verifies.
//!
//! Needs `Xvfb` and `xdotool` (set-up installs them when run as root; see README).

use refrain::testkit::{self, editor_layout, XDisplay};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Waits until a log line contains `needle`; returns it.
fn wait_for(rx: &mpsc::Receiver<String>, log: &mut Vec<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }
    panic!("no `{needle}` in the log within 60 s:\n{}", log.join("\n"));
}

fn issue_licence(data: &Path, dir: &Path) -> PathBuf {
    use refrain::licence::issue::{self, LicenceSpec};
    use refrain::licence::policy::{Clock, SystemClock};
    use refrain::licence::store::Store;
    assert!(
        refrain::licence::roots::development_root_trusted(),
        "this test needs the development root: cargo test --features refrain/dev-root"
    );
    let store = Store::at(data);
    let registry = refrain::licence::registry::development(&dir.join("registry")).unwrap();
    let key = testkit::certified_issuer(&registry, "Northern Records", "GBAYE", SystemClock.now());
    let device = store.device().unwrap().id;
    // A remix licence carries the licensed recording's fingerprint (the dummy backend feeds
    // silence, which never counts as a mismatch).
    let audio = dir.join("licensed-track.wav");
    refrain::media::write_wav(&audio, &refrain::synth::song(1, 10.0, 48_000), 48_000).unwrap();
    let spec = testkit::licence_spec("editor-test-licence", &["remix", "live"], Some(&audio));
    let claims = LicenceSpec::from_toml(&spec)
        .unwrap()
        .to_claims(&key.issuer, &[device], dir, None, SystemClock.now())
        .unwrap();
    let path = dir.join("editor-test.paseto");
    std::fs::write(&path, issue::sign_licence(&key, &claims).unwrap()).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn the_editor_loads_a_model_and_a_licence_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let licence = issue_licence(&data, dir.path());

    let x = XDisplay::start();

    let mut child = Command::new(env!("CARGO_BIN_EXE_refrain-standalone"))
        .args([
            "--backend",
            "dummy",
            "--sample-rate",
            "48000",
            "--period-size",
            "256",
        ])
        .env("DISPLAY", &x.name)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env(refrain::licence::store::ENV_DATA_DIR, &data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start refrain-standalone");
    let stderr = child.stderr.take().unwrap();
    let _standalone = testkit::Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    wait_for(&rx, &mut log, "model builtin:tone-shaper");

    // The editor window (software GL on a loaded 2-core machine can take a while).
    let deadline = Instant::now() + Duration::from_secs(120);
    let window = loop {
        let w = x.xdotool(&["search", "--name", "^Refrain$"]);
        if let Some(w) = w.lines().next().filter(|w| !w.is_empty()) {
            break w.to_owned();
        }
        log.extend(rx.try_iter());
        assert!(
            !log.iter().any(|l| l.contains("Failed to open editor")),
            "the editor did not open:\n{}",
            log.join("\n")
        );
        assert!(
            Instant::now() < deadline,
            "no editor window:\n{}",
            log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1500));
    // The first two rows never move: model file, licence file.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix");
    let click = |(cx, cy): (u32, u32)| x.click(&window, cx, cy);
    click(editor_layout::MODEL_FIELD);
    x.type_text(&model.display().to_string());
    click(editor_layout::LOAD_MODEL);
    let line = wait_for(&rx, &mut log, "Refrain licence:");
    assert!(line.contains("no track is loaded"), "{line}");
    // Imported into the models folder, and named by id and identity (what the project saves).
    let line = wait_for(&rx, &mut log, "Refrain: model refrain.demo-remix@");
    assert!(line.contains("live mode: latency"), "{line}");
    let imported: Vec<_> = std::fs::read_dir(data.join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        imported
            .iter()
            .any(|n| n.starts_with("refrain.demo-remix-")),
        "{imported:?}"
    );

    click(editor_layout::LICENCE_FIELD);
    x.type_text(&licence.display().to_string());
    click(editor_layout::LOAD_LICENCE);
    let line = wait_for(&rx, &mut log, "Refrain licence:");
    assert!(
        line.contains("licensed: Aurora Vale - Northern Lights (GBAYE2600001)"),
        "{line}"
    );
    // The licence was cached in the licence folder on the way.
    assert_eq!(
        refrain::licence::store::Store::at(&data)
            .licence_tokens("editor-test-licence", None)
            .unwrap()
            .len(),
        1
    );
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}
