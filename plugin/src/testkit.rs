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
/// fixture the CLI test, the editor test and the demo host issue from. `audio` is the licensed
/// recording (`track.audio`); a remix licence needs it (or `--audio`), so `None` is for
/// descriptions that add it another way or test the refusal.
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

/// `exe` (a binary of this workspace: `env!("CARGO_BIN_EXE_refrain")`) with the CPU ONNX
/// Runtime set-up put in `target/onnxruntime/`.
pub fn command(exe: &str) -> Command {
    let mut c = Command::new(exe);
    c.env(
        "ORT_DYLIB_PATH",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/onnxruntime/libonnxruntime.so.1.31.1"),
    );
    c
}

/// How a command run by [`run_measured`] ended.
#[derive(Debug)]
pub struct Measured {
    /// It exited with status 0.
    pub ok: bool,
    /// Its peak resident memory, KiB.
    pub peak_kib: i64,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// Runs `cmd` to completion (stdout discarded, stderr collected) and measures its peak
/// memory. The child is reaped by `wait4`, which also gives the peak, not by `Child::wait`.
#[cfg(unix)]
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command) -> Measured {
    use std::io::Read;
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let pid = child.id() as libc::pid_t;
    // Read stderr while it runs, so a chatty child never blocks on a full pipe.
    let mut pipe = child.stderr.expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it and the status for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4");
    Measured {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        peak_kib: usage.ru_maxrss,
        stderr: reader.join().unwrap_or_default(),
    }
}

/// Hex SHA-256 of `bytes` (how manifests pin files).
/// The chain a test builds for `model` in `mode`: 48 kHz stereo, blocks up to 256, no track,
/// no notes, the studio setting.
pub fn chain_key(model: &str, mode: crate::engine::latency::Mode) -> crate::chain::ChainKey {
    crate::chain::ChainKey {
        model: model.to_owned(),
        track: String::new(),
        mode,
        config: crate::engine::EngineConfig {
            sample_rate: 48_000.0,
            max_block: 256,
            channels: 2,
        },
        setting: crate::licence::enforce::Setting::Studio,
        notes: None,
        note_settings: Default::default(),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A small ONNX writer (protobuf wire format), enough to build the models the untrusted-input
/// tests need at test time: external data, subgraphs, loops and allocation bombs.
pub mod onnx {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
        varint(out, (field << 3) | wire);
    }

    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn int(out: &mut Vec<u8>, field: u64, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }

    /// A tensor: inline data, or data in an external file.
    pub struct Tensor {
        name: String,
        dims: Vec<i64>,
        data_type: i64,
        raw: Option<Vec<u8>>,
        external: Option<(String, u64, u64)>,
    }

    impl Tensor {
        pub fn floats(name: &str, dims: &[i64], values: &[f32]) -> Tensor {
            Tensor {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: 1,
                raw: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                external: None,
            }
        }

        pub fn int64s(name: &str, dims: &[i64], values: &[i64]) -> Tensor {
            Tensor {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: 7,
                raw: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                external: None,
            }
        }

        pub fn bools(name: &str, values: &[bool]) -> Tensor {
            Tensor {
                name: name.into(),
                dims: vec![],
                data_type: 9,
                raw: Some(values.iter().map(|&b| b as u8).collect()),
                external: None,
            }
        }

        /// Float data in `location` (relative to the model), `length` bytes from the start.
        pub fn external(name: &str, dims: &[i64], location: &str, length: u64) -> Tensor {
            Tensor::external_at(name, dims, location, 0, length)
        }

        pub fn external_at(
            name: &str,
            dims: &[i64],
            location: &str,
            offset: u64,
            length: u64,
        ) -> Tensor {
            Tensor {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: 1,
                raw: None,
                external: Some((location.into(), offset, length)),
            }
        }

        pub fn encode(&self) -> Vec<u8> {
            let mut t = Vec::new();
            for &d in &self.dims {
                int(&mut t, 1, d);
            }
            int(&mut t, 2, self.data_type);
            bytes(&mut t, 8, self.name.as_bytes());
            if let Some(raw) = &self.raw {
                bytes(&mut t, 9, raw);
            }
            if let Some((location, offset, length)) = &self.external {
                for (k, v) in [
                    ("location", location.clone()),
                    ("offset", offset.to_string()),
                    ("length", length.to_string()),
                ] {
                    let mut e = Vec::new();
                    bytes(&mut e, 1, k.as_bytes());
                    bytes(&mut e, 2, v.as_bytes());
                    bytes(&mut t, 13, &e);
                }
                int(&mut t, 14, 1);
            }
            t
        }
    }

    /// A float tensor value (graph input or output) of `dims`; -1 is a dynamic dimension.
    pub fn value(name: &str, elem_type: i64, dims: &[i64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for (i, &d) in dims.iter().enumerate() {
            let mut dim = Vec::new();
            if d >= 0 {
                int(&mut dim, 1, d);
            } else {
                bytes(&mut dim, 2, format!("d{i}").as_bytes());
            }
            bytes(&mut shape, 1, &dim);
        }
        let mut tensor_type = Vec::new();
        int(&mut tensor_type, 1, elem_type);
        bytes(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes(&mut type_proto, 1, &tensor_type);
        let mut v = Vec::new();
        bytes(&mut v, 1, name.as_bytes());
        bytes(&mut v, 2, &type_proto);
        v
    }

    /// A node; `attrs` from [`attr_int`], [`attr_graph`], [`attr_tensor`].
    pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Vec<u8>>) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            bytes(&mut n, 1, i.as_bytes());
        }
        for o in outputs {
            bytes(&mut n, 2, o.as_bytes());
        }
        bytes(&mut n, 4, op.as_bytes());
        for a in attrs {
            bytes(&mut n, 5, &a);
        }
        n
    }

    pub fn attr_int(name: &str, v: i64) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        int(&mut a, 3, v);
        int(&mut a, 20, 2);
        a
    }

    pub fn attr_ints(name: &str, v: &[i64]) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        for &x in v {
            int(&mut a, 8, x);
        }
        int(&mut a, 20, 7);
        a
    }

    pub fn attr_tensor(name: &str, t: Tensor) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        bytes(&mut a, 5, &t.encode());
        int(&mut a, 20, 4);
        a
    }

    pub fn attr_graph(name: &str, g: Vec<u8>) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        bytes(&mut a, 6, &g);
        int(&mut a, 20, 5);
        a
    }

    /// A graph: nodes, initializers, and its inputs and outputs as [`value`]s (or bare names,
    /// given as `&str`, for subgraphs that ONNX Runtime types itself).
    pub fn graph(
        nodes: Vec<Vec<u8>>,
        initializers: Vec<Tensor>,
        inputs: &[&str],
        outputs: &[&str],
    ) -> Vec<u8> {
        graph_typed(
            nodes,
            initializers,
            inputs.iter().map(|n| value(n, 1, &[-1])).collect(),
            outputs.iter().map(|n| value(n, 1, &[-1])).collect(),
        )
    }

    pub fn graph_typed(
        nodes: Vec<Vec<u8>>,
        initializers: Vec<Tensor>,
        inputs: Vec<Vec<u8>>,
        outputs: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let mut g = Vec::new();
        for n in nodes {
            bytes(&mut g, 1, &n);
        }
        bytes(&mut g, 2, b"g");
        for t in initializers {
            bytes(&mut g, 5, &t.encode());
        }
        for i in inputs {
            bytes(&mut g, 11, &i);
        }
        for o in outputs {
            bytes(&mut g, 12, &o);
        }
        g
    }

    /// A model (IR 8, opset 17) around `graph`.
    pub fn model(graph: Vec<u8>) -> Vec<u8> {
        let mut m = Vec::new();
        int(&mut m, 1, 8);
        bytes(&mut m, 2, b"refrain-testkit");
        bytes(&mut m, 7, &graph);
        let mut opset = Vec::new();
        bytes(&mut opset, 1, b"");
        int(&mut opset, 2, 17);
        bytes(&mut m, 8, &opset);
        m
    }

    /// The input and output of a contract-v1 model: `audio_in` and `audio_out`, float
    /// `[1, 1, hop]`.
    pub fn contract_io(hop: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        (
            vec![value("audio_in", 1, &[1, 1, hop as i64])],
            vec![value("audio_out", 1, &[1, 1, hop as i64])],
        )
    }

    /// Writes a contract-v1 model folder (id `stranger`, 48 kHz mono, `hop`) around `graph`,
    /// with `files` beside it listed in the manifest as external data with their sha256.
    /// Returns the folder.
    pub fn model_folder(
        dir: &std::path::Path,
        hop: usize,
        graph: Vec<u8>,
        files: &[(&str, &[u8])],
    ) -> std::path::PathBuf {
        let sha = super::sha256_hex;
        std::fs::create_dir_all(dir).unwrap();
        let model = model(graph);
        std::fs::write(dir.join("model.onnx"), &model).unwrap();
        let mut listing = String::new();
        for (path, data) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            listing += &format!(
                "[[files]]\npath = {path:?}\nsha256 = \"{}\"\nrole = \"external-data\"\n\n",
                sha(data)
            );
        }
        let manifest = format!(
            r#"format = 1
[model]
id = "stranger"
name = "A stranger's model"
version = "1.0.0"
kind = "audio-to-audio"
file = "model.onnx"
sha256 = "{}"
[stream]
sample_rate = 48000
channels = 1
hop = {hop}
[input]
name = "audio_in"
dtype = "float32"
shape = [1, 1, {hop}]
[output]
name = "audio_out"
dtype = "float32"
shape = [1, 1, {hop}]
{listing}"#,
            sha(&model)
        );
        std::fs::write(dir.join("model.toml"), manifest).unwrap();
        dir.to_owned()
    }

    /// A contract-v1 graph that never finishes: a `Loop` of 10^15 trips over an identity body.
    pub fn endless_loop(hop: usize) -> Vec<u8> {
        let h = hop as i64;
        let body = graph_typed(
            vec![
                node("Identity", &["cond_in"], &["cond_out"], vec![]),
                node("Identity", &["v_in"], &["v_out"], vec![]),
            ],
            vec![],
            vec![
                value("iter", 7, &[]),
                value("cond_in", 9, &[]),
                value("v_in", 1, &[1, 1, h]),
            ],
            vec![value("cond_out", 9, &[]), value("v_out", 1, &[1, 1, h])],
        );
        let (inputs, outputs) = contract_io(hop);
        graph_typed(
            vec![node(
                "Loop",
                &["trips", "keep_going", "audio_in"],
                &["audio_out"],
                vec![attr_graph("body", body)],
            )],
            vec![
                Tensor::int64s("trips", &[], &[1_000_000_000_000_000]),
                Tensor::bools("keep_going", &[true]),
            ],
            inputs,
            outputs,
        )
    }
}

/// A vowel's spectral envelope at `f` Hz: one resonance per formant (centre, bandwidth in Hz)
/// over a small floor.
pub fn vowel_envelope(f: f32, formants: &[(f32, f32)]) -> f32 {
    formants
        .iter()
        .map(|&(fc, bw)| {
            let x = (f - fc) / (bw / 2.0);
            1.0 / (1.0 + x * x)
        })
        .sum::<f32>()
        + 0.01
}

/// A sung vowel at `rate`: the harmonics of `f0` (up to 5 kHz) under [`vowel_envelope`], with
/// a slight vibrato so it is not a frozen spectrum. Peak about 0.3.
pub fn vowel(rate: u32, f0: f32, formants: &[(f32, f32)], seconds: f32) -> Vec<f32> {
    use std::f64::consts::TAU;
    let n = (seconds * rate as f32) as usize;
    let gains: Vec<f32> = (1..=(5000.0 / f0) as usize)
        .map(|h| vowel_envelope(h as f32 * f0, formants))
        .collect();
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let f = f0 as f64 * (1.0 + 0.002 * (TAU * 5.0 * t).sin());
            phase += TAU * f / rate as f64;
            gains
                .iter()
                .enumerate()
                .map(|(h, g)| g * ((h + 1) as f64 * phase).sin() as f32)
                .sum::<f32>()
                * 0.1
        })
        .collect()
}

/// A rights holder's key named `name`, certified by `registry` (the development registry in
/// tests and the demo) for the ISRC registrant prefix `prefix` (`GBAYE`), valid from 60 days
/// before `now` for 800 days.
pub fn certified_issuer(
    registry: &crate::licence::registry::Registry,
    name: &str,
    prefix: &str,
    now: i64,
) -> crate::licence::token::SigningKey {
    certified_issuer_for(
        registry,
        name,
        crate::licence::certificate::Scope {
            isrc_prefixes: vec![prefix.into()],
            ..Default::default()
        },
        now,
    )
}

/// [`certified_issuer`] for any scope (voices, works).
pub fn certified_issuer_for(
    registry: &crate::licence::registry::Registry,
    name: &str,
    scope: crate::licence::certificate::Scope,
    now: i64,
) -> crate::licence::token::SigningKey {
    use crate::licence::certificate::Party;
    let key = crate::licence::token::SigningKey::generate(name).expect("a key");
    let (_, cert) = registry
        .certify(
            &key.issuer_key(),
            Party {
                name: name.into(),
                ipi: vec![],
                isni: vec![],
            },
            scope,
            now - 60 * 86_400,
            800,
        )
        .expect("the registry certifies");
    key.with_certificate(&cert)
}

/// A licence folder at `dir` that trusts the development root (whatever this build's
/// features), and the development registry beside it (`dir/registry`).
pub fn development_store(
    dir: &Path,
) -> (
    crate::licence::store::Store,
    crate::licence::registry::Registry,
) {
    let registry =
        crate::licence::registry::development(&dir.join("registry")).expect("the registry");
    let store = crate::licence::store::Store::at(dir.join("data"))
        .with_roots(crate::licence::roots::Roots::with(vec![registry.root()]));
    (store, registry)
}
