//! What the test suites share (so no test file carries its own copy): a virtual X display
//! driven with `xdotool`, a pacer that times blocks like a sound card, and the licence
//! description fixture. Test signals are in [`crate::synth`].
//!
//! Not part of the plugin's behaviour; it lives in the library so the plugin's own tests, the
//! host-level tests and the demo host can all use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Blocks timed like a sound card: `wait(frames)` sleeps until `frames` would have been played
/// at `rate`, `speed` times faster than real time.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    rate: f64,
    speed: f64,
}

impl Pacer {
    /// [`Self::wait`] as a sound card driver behaves: a caller later than `max_late` behind the
    /// clock has missed its deadline (an xrun of the host itself); the clock slips to now
    /// instead of letting the caller race through the missed blocks. Returns whether it did.
    pub fn wait_or_slip(&mut self, frames: u64, max_late: Duration) -> bool {
        let due = self.start + Duration::from_secs_f64(frames as f64 / self.rate / self.speed);
        let now = Instant::now();
        if now > due + max_late {
            self.start += now - due;
            return true;
        }
        self.wait(frames);
        false
    }
}

impl Pacer {
    pub fn new(rate: f64, speed: f64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            speed,
        }
    }

    /// Sleeps until `frames` frames are due.
    pub fn wait(&self, frames: u64) {
        let due = self.start + Duration::from_secs_f64(frames as f64 / self.rate / self.speed);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
}

/// A program on `PATH`, or a panic that says how to get it.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run `cargo xtask setup` as root (see README)")
        })
}

/// A child process that is terminated when dropped.
pub struct Guard(pub Child);

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

/// A virtual X display (Xvfb) for editor tests, stopped when dropped.
pub struct XDisplay {
    /// `:N`, for `DISPLAY`.
    pub name: String,
    _server: Option<Guard>,
}

impl XDisplay {
    /// A handle on a display another [`XDisplay`] runs (for a second thread).
    pub fn attach(name: &str) -> XDisplay {
        XDisplay {
            name: name.to_owned(),
            _server: None,
        }
    }

    /// Starts Xvfb on a free display number and waits for it.
    pub fn start() -> XDisplay {
        let n = (90..140)
            .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
            .expect("a free X display");
        let name = format!(":{n}");
        let server = Guard(
            Command::new(tool("Xvfb"))
                .args([&name, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
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
        XDisplay {
            name,
            _server: Some(server),
        }
    }

    /// Runs `xdotool` with `args` on this display; returns its output.
    pub fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new(tool("xdotool"))
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .expect("run xdotool");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Clicks at `(x, y)` in `window` (an X window id, as xdotool prints it).
    pub fn click(&self, window: &str, x: u32, y: u32) {
        self.xdotool(&[
            "mousemove",
            "--window",
            window,
            &x.to_string(),
            &y.to_string(),
            "click",
            "1",
        ]);
        std::thread::sleep(Duration::from_millis(400));
    }

    /// Types `text` into whatever has the keyboard focus.
    pub fn type_text(&self, text: &str) {
        self.xdotool(&["type", "--delay", "5", text]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Where the editor's rows are, in window coordinates (they never move: the first two rows).
pub mod editor_layout {
    /// The model file field and its Load button.
    pub const MODEL_FIELD: (u32, u32) = (240, 55);
    pub const LOAD_MODEL: (u32, u32) = (454, 55);
    /// The licence file field and its Load button.
    pub const LICENCE_FIELD: (u32, u32) = (240, 78);
    pub const LOAD_LICENCE: (u32, u32) = (456, 78);
}

/// A licence description (`refrain licence issue --spec`) for the demo remix model: the
/// fixture the CLI test, the editor test and the demo host issue from.
pub fn licence_spec(licence_id: &str, uses: &[&str], audio: Option<&Path>) -> String {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix/model.toml");
    let uses = uses
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let audio = audio
        .map(|a| format!("audio = \"{}\"\n", a.display()))
        .unwrap_or_default();
    format!(
        r#"licensee = "DJ Example"
licence_id = "{licence_id}"
valid_days = 30
grace_days = 7
uses = [{uses}]
[track]
isrc = "GB-AYE-26-00001"
title = "Northern Lights"
artists = ["Aurora Vale"]
release = "Northern Lights (Single)"
{audio}[[models]]
manifest = "{}"
[[split]]
party = "Aurora Vale"
role = "artist"
share_percent = 75
[[split]]
party = "Northern Records"
role = "label"
share_percent = 25
"#,
        model.display()
    )
}
