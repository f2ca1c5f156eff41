//! ONNX Runtime: finding the shared library, loading it once per process, making sessions.
//!
//! The library is looked for beside Refrain's own binary (the `.clap`, the `.vst3`'s `.so`, or
//! the `refrain` executable), then at `ORT_DYLIB_PATH`, then in this checkout's `target/`
//! (where `cargo xtask setup` puts it). If none loads, the plugin still loads and passes dry
//! audio; the error lists every path tried.

use ort::environment::Environment;
use ort::session::Session;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};

/// The ONNX Runtime version Refrain is built against.
pub const ORT_VERSION: &str = "1.31.1";

/// File name of the library on this platform.
#[cfg(target_os = "linux")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so.1.31.1", "libonnxruntime.so"];
#[cfg(target_os = "macos")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.1.31.1.dylib", "libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
pub const LIBRARY_NAMES: &[&str] = &["onnxruntime.dll"];

/// Why ONNX Runtime is not available.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime {ORT_VERSION} was not found (looked at: {tried}); run `cargo xtask setup` or set ORT_DYLIB_PATH")]
    NotFound { tried: String },
    #[error("ONNX Runtime at {path} could not be loaded: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime could not start: {0}")]
    Environment(String),
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The directory holding the binary this code was loaded from (plugin or executable).
pub fn own_binary_dir() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let addr = own_binary_dir as *const () as *const libc::c_void;
        // SAFETY: dladdr only reads the address and fills `info`.
        if unsafe { libc::dladdr(addr, &mut info) } != 0 && !info.dli_fname.is_null() {
            let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
            let path = PathBuf::from(name.to_string_lossy().into_owned());
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            return path.parent().map(Path::to_owned);
        }
    }
    std::env::current_exe().ok()?.parent().map(Path::to_owned)
}

/// Every place the library may be, in the order they are tried.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = own_binary_dir() {
        out.extend(LIBRARY_NAMES.iter().map(|n| dir.join(n)));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/onnxruntime");
    out.extend(LIBRARY_NAMES.iter().map(|n| dev.join(n)));
    out
}

/// Loads ONNX Runtime (once per process) and returns its environment.
pub fn environment() -> Result<Environment, RuntimeError> {
    let mut slot = ENVIRONMENT.lock();
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let candidates = candidates();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let tried = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(RuntimeError::NotFound { tried });
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let built = std::panic::catch_unwind(|| -> Result<Environment, RuntimeError> {
        let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        builder
            .with_name("refrain")
            .with_telemetry(false)
            .build()
            .map_err(|e| RuntimeError::Environment(e.to_string()))
    })
    .unwrap_or_else(|_| {
        Err(RuntimeError::Load {
            path: path.clone(),
            reason: "the loader panicked".into(),
        })
    })?;
    *slot = Some(built.clone());
    Ok(built)
}

/// Threads one session may use for one run. Few, and never spinning: the audio thread and
/// the host's other plugins share these cores.
pub fn intra_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// A session for real-time streaming from ONNX bytes.
pub fn session_from_memory(bytes: &[u8]) -> Result<Session, String> {
    let env = environment().map_err(|e| e.to_string())?;
    let builder = Session::builder(&env).map_err(|e| e.to_string())?;
    let mut builder = builder
        .with_intra_threads(intra_threads())
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?;
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}
