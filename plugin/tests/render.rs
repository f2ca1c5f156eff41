//! `refrain render` on files as a user runs it: in blocks (memory does not grow with the file's
//! length) and atomically (a render that fails midway leaves everything as it was, even when
//! the output is the input).

use std::path::{Path, PathBuf};
use std::process::Command;

fn refrain() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_refrain"));
    c.env(
        "ORT_DYLIB_PATH",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/onnxruntime/libonnxruntime.so.1.31.1"),
    );
    c
}

fn model(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .display()
        .to_string()
}

/// A 16-bit stereo WAV of `seconds` of a sine, written in blocks.
fn write_input(path: &Path, seconds: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..seconds * 48_000 {
        let x = ((i as f64 * 330.0 / 48_000.0 * std::f64::consts::TAU).sin() * 12_000.0) as i16;
        w.write_sample(x).unwrap();
        w.write_sample(-x / 2).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs the command to completion; returns whether it succeeded and its peak memory (KiB).
fn run_measured(mut cmd: Command) -> (bool, i64, String) {
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills the two out-parameters.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid);
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss, err)
}

#[test]
fn memory_does_not_grow_with_the_length_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for seconds in [20usize, 240] {
        let input = dir.path().join(format!("in-{seconds}.wav"));
        write_input(&input, seconds);
        let out = dir.path().join(format!("out-{seconds}.wav"));
        let mut cmd = refrain();
        cmd.args(["render", "--model", &model("test/half"), "--in"])
            .arg(&input)
            .arg("--out")
            .arg(&out);
        let (ok, peak, err) = run_measured(cmd);
        assert!(ok, "{err}");
        let (back, _) = refrain::media::read_all(&out).unwrap();
        assert_eq!(back[0].len(), seconds * 48_000, "the whole file, aligned");
        peaks.push(peak);
    }
    // Four minutes of 48 kHz stereo is 92 MB of f32; rendering it in memory would need several
    // times that. Streaming, the longer file costs no more than a little noise.
    let growth_kib = peaks[1] - peaks[0];
    assert!(
        growth_kib < 24 * 1024,
        "peak memory grew by {growth_kib} KiB from 20 s to 4 min ({peaks:?} KiB)"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_render_onto_its_own_input_that_fails_midway_leaves_the_input_byte_identical() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = dir.path().join("a.wav");
    write_input(&input, 10);
    let before = std::fs::read(&input).unwrap();
    // A file-size limit far below the 3.8 MB the output needs: the write fails midway, as on
    // a full disk.
    let mut cmd = refrain();
    cmd.args(["render", "--model", &model("test/half"), "--in"])
        .arg(&input)
        .arg("--out")
        .arg(&input);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 500_000,
                rlim_max: 500_000,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let (ok, _, err) = run_measured(cmd);
    assert!(!ok, "the render must fail");
    assert!(err.contains("a.wav"), "the error names the file: {err}");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input was damaged"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no partial file left behind");

    // Without the limit the same command replaces the input with its render.
    let mut cmd = refrain();
    cmd.args(["render", "--model", &model("test/half"), "--in"])
        .arg(&input)
        .arg("--out")
        .arg(&input);
    let (ok, _, err) = run_measured(cmd);
    assert!(ok, "{err}");
    let (out, _) = refrain::media::read_all(&input).unwrap();
    assert_eq!(out[0].len(), 480_000);
    let x = (10_000.0f64 * 330.0 / 48_000.0 * std::f64::consts::TAU).sin() * 12_000.0 / 32_768.0;
    assert!(
        (out[0][10_000] as f64 - 0.5 * x).abs() < 1e-3,
        "half the level: {}",
        out[0][10_000]
    );
}
