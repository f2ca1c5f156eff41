//! `refrain render` on files as a user runs it: in blocks (memory does not grow with the file's
//! length) and atomically (a render that fails midway leaves everything as it was, even when
//! the output is the input).

use std::path::{Path, PathBuf};
use std::process::Command;

fn refrain() -> Command {
    refrain::testkit::command(env!("CARGO_BIN_EXE_refrain"))
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

/// Runs the command to completion; returns whether it succeeded, its peak memory (KiB) and
/// its stderr.
fn run_measured(mut cmd: Command) -> (bool, i64, String) {
    let m = refrain::testkit::run_measured(&mut cmd);
    (m.ok, m.peak_kib, m.stderr)
}

/// A 16-bit mono 48 kHz WAV of `seconds` of a sine, written a second at a time (fast enough
/// for two hours of audio).
fn write_long_input(path: &Path, seconds: usize) {
    use std::io::Write;
    let data = (seconds * 48_000 * 2) as u32;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&48_000u32.to_le_bytes());
    header.extend_from_slice(&96_000u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data.to_le_bytes());
    // 330 Hz repeats exactly every second at 48 kHz.
    let second: Vec<u8> = (0..48_000)
        .flat_map(|i| {
            let x = (i as f64 * 330.0 / 48_000.0 * std::f64::consts::TAU).sin() * 12_000.0;
            (x as i16).to_le_bytes()
        })
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&header).unwrap();
    for _ in 0..seconds {
        f.write_all(&second).unwrap();
    }
    f.flush().unwrap();
}

/// The most `refrain render` may take, whatever the length of the file (peak resident memory,
/// ONNX Runtime and the model included).
const RENDER_MEMORY_CEILING_MB: i64 = 64;

#[test]
fn a_two_hour_render_stays_under_the_memory_ceiling_of_a_one_minute_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for seconds in [60usize, 2 * 3600] {
        let input = dir.path().join(format!("in-{seconds}.wav"));
        write_long_input(&input, seconds);
        let out = dir.path().join(format!("out-{seconds}.wav"));
        let mut cmd = refrain();
        cmd.args(["render", "--model", &model("test/half"), "--in"])
            .arg(&input)
            .arg("--out")
            .arg(&out);
        let (ok, peak, err) = run_measured(cmd);
        assert!(ok, "{err}");
        let back = refrain::media::AudioReader::open(&out).unwrap();
        assert_eq!(
            back.frames(),
            Some(seconds as u64 * 48_000),
            "the whole file"
        );
        // The middle of the render is the model's output (half the input), aligned.
        let mut reader = refrain::media::AudioReader::open(&out).unwrap();
        let mut buf = vec![Vec::new()];
        let (mut start, mut got) = (0, 0);
        while got < 30 * 48_000 {
            start = got;
            got += reader.read(&mut buf, 48_000).unwrap();
        }
        let i = 1_234.min(buf[0].len() - 1);
        let x = (((start + i) as f64 * 330.0 / 48_000.0 * std::f64::consts::TAU).sin() * 12_000.0)
            as i16 as f32
            / 32_768.0;
        assert!(
            (buf[0][i] - 0.5 * x).abs() < 1e-4,
            "{} vs {}",
            buf[0][i],
            0.5 * x
        );
        std::fs::remove_file(&input).unwrap();
        std::fs::remove_file(&out).unwrap();
        peaks.push(peak);
    }
    eprintln!(
        "peak resident memory: 1 min {} KiB, 2 h {} KiB",
        peaks[0], peaks[1]
    );
    // Two hours of 48 kHz mono is 1.4 GB of f32; streaming, it costs what a minute does.
    assert!(
        peaks[1] < RENDER_MEMORY_CEILING_MB * 1024,
        "2 h peaked at {} KiB; the ceiling is {RENDER_MEMORY_CEILING_MB} MB",
        peaks[1]
    );
    let growth_kib = peaks[1] - peaks[0];
    assert!(
        growth_kib < 16 * 1024,
        "peak memory grew by {growth_kib} KiB from 1 min to 2 h ({peaks:?} KiB)"
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
