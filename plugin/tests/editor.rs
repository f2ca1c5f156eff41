//! The editor, driven as a user drives it: `refrain-standalone` on the dummy audio backend with
//! its egui editor open on a virtual X display (Xvfb, Mesa's software GL), clicked and typed
//! into with `xdotool`. Loading the demo remix model from the editor reactivates the plugin
//! with that model and no licence (the AI path is off, with the reason); loading a licence file
//! from the editor loads the track and the licence verifies.
//!
//! Needs `Xvfb` and `xdotool` (set-up installs them when run as root; see README).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child on drop (the test's Xvfb and standalone never outlive it).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run `cargo xtask setup` as root (see README)")
        })
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new(tool("xdotool"))
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("run xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

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
    let store = Store::at(data);
    let key = refrain::licence::token::SigningKey::generate("Editor Test Label").unwrap();
    store.trust(&key.issuer_key()).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix/model.toml");
    let spec = format!(
        r#"
licensee = "Editor Test"
licence_id = "editor-test-licence"
valid_days = 30
uses = ["remix", "live"]
[track]
isrc = "ZZRFN2600042"
title = "Editor Test Track"
artists = ["Refrain Demo Artist"]
release = "Tests"
[[models]]
manifest = "{}"
[[split]]
party = "Refrain Demo Artist"
role = "artist"
share_percent = 100
"#,
        model.display()
    );
    let claims = LicenceSpec::from_toml(&spec)
        .unwrap()
        .to_claims(&key.issuer, dir, None, SystemClock.now())
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

    // A free display number.
    let n = (90..140)
        .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
        .expect("a free X display");
    let display = format!(":{n}");
    let _xvfb = Guard(
        Command::new(tool("Xvfb"))
            .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
        assert!(Instant::now() < deadline, "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_refrain-standalone"))
        .args([
            "--backend",
            "dummy",
            "--sample-rate",
            "48000",
            "--period-size",
            "256",
        ])
        .env("DISPLAY", &display)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env(refrain::licence::store::ENV_DATA_DIR, &data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start refrain-standalone");
    let stderr = child.stderr.take().unwrap();
    let _standalone = Guard(child);
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
        let w = xdotool(&display, &["search", "--name", "^Refrain$"]);
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
    let click = |x: &str, y: &str| {
        xdotool(
            &display,
            &["mousemove", "--window", &window, x, y, "click", "1"],
        );
        std::thread::sleep(Duration::from_millis(400));
    };
    let type_text = |text: &str| {
        xdotool(&display, &["type", "--delay", "5", text]);
        std::thread::sleep(Duration::from_millis(300));
    };

    // The first two rows never move: model file, licence file.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix");
    click("240", "55");
    type_text(&model.display().to_string());
    click("454", "55");
    let line = wait_for(&rx, &mut log, "Refrain licence:");
    assert!(line.contains("no track is loaded"), "{line}");
    wait_for(&rx, &mut log, "demo-remix/model.toml, live mode: latency");

    click("240", "78");
    type_text(&licence.display().to_string());
    click("456", "78");
    let line = wait_for(&rx, &mut log, "Refrain licence:");
    assert!(
        line.contains("licensed: Refrain Demo Artist - Editor Test Track (ZZRFN2600042)"),
        "{line}"
    );
    // The licence was cached in the licence folder on the way.
    assert!(data.join("licences/editor-test-licence.paseto").is_file());
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}
