//! ONNX Runtime: finding the shared library, loading it once per process, choosing the device
//! and making sessions.
//!
//! The library is looked for beside Refrain's own binary (the `.clap`, the `.vst3`'s `.so`, or
//! the `refrain` executable), then at `ORT_DYLIB_PATH`, then in this checkout's `target/`
//! (where `cargo xtask setup` puts it). If none loads, the plugin still loads and passes dry
//! audio; the error lists every path tried.
//!
//! Devices: with the GPU build of the runtime (`cargo xtask setup --gpu`), sessions ask for
//! TensorRT (when its provider library is present), then CUDA, and fall back to the CPU when a
//! provider does not load, saying which device runs and the exact reason a preferred one was
//! not used. `REFRAIN_DEVICE=cpu` forces the CPU.

use ort::environment::Environment;
use ort::session::Session;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};

/// The ONNX Runtime version Refrain is built against.
pub const ORT_VERSION: &str = "1.31.1";

/// Environment variable: `cpu` forces the CPU; `auto` (the default) prefers a GPU.
pub const ENV_DEVICE: &str = "REFRAIN_DEVICE";
/// Environment variable: intra-op threads per session (default: 1 for models under 16 MB).
pub const ENV_INTRA_THREADS: &str = "REFRAIN_INTRA_THREADS";

/// Models smaller than this run on one intra-op thread: splitting a tiny graph across threads
/// costs more in wake-ups than it saves, and the cores are the DAW's.
const SMALL_MODEL_BYTES: usize = 16 << 20;

/// File name of the library on this platform.
#[cfg(target_os = "linux")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so.1.31.1", "libonnxruntime.so"];
#[cfg(target_os = "macos")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.1.31.1.dylib", "libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
pub const LIBRARY_NAMES: &[&str] = &["onnxruntime.dll"];

/// The CUDA and TensorRT provider libraries, beside the runtime in the GPU build.
#[cfg(target_os = "windows")]
const CUDA_PROVIDER: &str = "onnxruntime_providers_cuda.dll";
#[cfg(not(target_os = "windows"))]
const CUDA_PROVIDER: &str = "libonnxruntime_providers_cuda.so";
#[cfg(target_os = "windows")]
const TENSORRT_PROVIDER: &str = "onnxruntime_providers_tensorrt.dll";
#[cfg(not(target_os = "windows"))]
const TENSORRT_PROVIDER: &str = "libonnxruntime_providers_tensorrt.so";

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

/// The loaded runtime: its environment and where it came from.
struct Loaded {
    env: Environment,
    path: PathBuf,
}

static ENVIRONMENT: Mutex<Option<Loaded>> = Mutex::new(None);

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
    loaded().map(|(env, _)| env)
}

fn loaded() -> Result<(Environment, PathBuf), RuntimeError> {
    let mut slot = ENVIRONMENT.lock();
    if let Some(l) = slot.as_ref() {
        return Ok((l.env.clone(), l.path.clone()));
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
    // Every session takes its CPU memory from one arena with a ceiling, so a model that asks
    // for more (a tiny graph that fills gigabytes) gets an error, not the host's memory.
    let limit = super::package::Limits::from_env().memory;
    if let Err(e) = register_limited_allocator(&built, limit) {
        return Err(RuntimeError::Environment(format!(
            "could not set the model memory limit: {e}"
        )));
    }
    *slot = Some(Loaded {
        env: built.clone(),
        path: path.clone(),
    });
    Ok((built, path))
}

/// Registers a CPU arena allocator capped at `max_bytes` with the environment; sessions use it
/// (`session.use_env_allocators`).
fn register_limited_allocator(env: &Environment, max_bytes: u64) -> Result<(), String> {
    use ort::sys::{OrtAllocatorType, OrtMemType};
    use ort::AsPointer;
    let api = ort::api();
    let check = |status: ort::sys::OrtStatusPtr| -> Result<(), String> {
        if status.0.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null status carries a message; it is released once read.
        unsafe {
            let text = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status.0);
            Err(text)
        }
    };
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    // arena_extend_strategy 1: grow by what is asked, not in powers of two.
    let values = [max_bytes.min(usize::MAX as u64) as usize, 1usize];
    let mut cfg = std::ptr::null_mut();
    let mut info = std::ptr::null_mut();
    // SAFETY: valid key/value arrays of equal length; the out-pointers are filled by the calls
    // and released below; the environment outlives this call (it is kept for the process).
    unsafe {
        check((api.CreateArenaCfgV2)(
            keys.as_ptr(),
            values.as_ptr(),
            2,
            &mut cfg,
        ))?;
        let made = check((api.CreateCpuMemoryInfo)(
            OrtAllocatorType::OrtArenaAllocator,
            OrtMemType::OrtMemTypeDefault,
            &mut info,
        ));
        let registered = made.and_then(|_| {
            check((api.CreateAndRegisterAllocator)(
                env.ptr().cast_mut(),
                info,
                cfg,
            ))
        });
        if !info.is_null() {
            (api.ReleaseMemoryInfo)(info);
        }
        (api.ReleaseArenaCfg)(cfg);
        registered
    }
}

/// Intra-op threads for a model of `bytes`: one for small models, else half the cores (at most
/// four); `REFRAIN_INTRA_THREADS` overrides.
pub fn intra_threads_for(bytes: usize) -> usize {
    if let Some(n) = std::env::var(ENV_INTRA_THREADS)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n.min(64);
    }
    if bytes < SMALL_MODEL_BYTES {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// Whether the user forces the CPU.
fn cpu_forced() -> bool {
    std::env::var(ENV_DEVICE).is_ok_and(|v| v.trim().eq_ignore_ascii_case("cpu"))
}

/// The runtime settings that change a model's speed (part of the identity its measured
/// inference time is cached under).
pub fn settings_identity() -> String {
    format!(
        "threads={};device={}",
        std::env::var(ENV_INTRA_THREADS).unwrap_or_default(),
        std::env::var(ENV_DEVICE).unwrap_or_default()
    )
}

/// A session and which device runs it, in words (e.g. `CPU (CUDA provider failed to load:
/// libcudnn.so.9: cannot open shared object file)`).
pub struct DeviceSession {
    pub session: Session,
    pub device: String,
}

/// A session for real-time streaming from ONNX bytes (no external data), on the preferred
/// device the runtime offers, else the CPU.
pub fn session_from_memory(bytes: &[u8]) -> Result<DeviceSession, String> {
    session_with_externals(bytes, &[])
}

/// A session for a checked model package: its graph and its external data, all from memory
/// (ONNX Runtime opens no file for it).
pub fn session_for(package: &super::package::ModelPackage) -> Result<DeviceSession, String> {
    session_with_externals(&package.onnx, &package.external)
}

fn session_with_externals(
    bytes: &[u8],
    external: &[(String, std::sync::Arc<[u8]>)],
) -> Result<DeviceSession, String> {
    let (env, library) = loaded().map_err(|e| e.to_string())?;
    let threads = intra_threads_for(bytes.len());
    let cpu_name = format!(
        "CPU, {threads} intra-op thread{}",
        if threads == 1 { "" } else { "s" }
    );
    let base = || -> Result<ort::session::builder::SessionBuilder, String> {
        let mut b = Session::builder(&env)
            .map_err(|e| e.to_string())?
            .with_intra_threads(threads)
            .map_err(|e| e.to_string())?
            .with_inter_threads(1)
            .map_err(|e| e.to_string())?
            .with_intra_op_spinning(false)
            .map_err(|e| e.to_string())?
            .with_env_allocators()
            .map_err(|e| e.to_string())?;
        for (location, data) in external {
            b = b
                .with_external_initializer_file_in_memory(location, data.clone())
                .map_err(|e| e.to_string())?;
        }
        Ok(b)
    };
    if cpu_forced() {
        let session = base()?
            .commit_from_memory(bytes)
            .map_err(|e| e.to_string())?;
        return Ok(DeviceSession {
            session,
            device: format!("{cpu_name} ({ENV_DEVICE}=cpu)"),
        });
    }
    let dir = library.parent().map(Path::to_owned).unwrap_or_default();
    let mut refused = Vec::new();
    for (name, provider) in [("TensorRT", TENSORRT_PROVIDER), ("CUDA", CUDA_PROVIDER)] {
        if !dir.join(provider).is_file() {
            continue;
        }
        let ep = match name {
            "TensorRT" => ort::ep::TensorRT::default().build().error_on_failure(),
            _ => ort::ep::CUDA::default().build().error_on_failure(),
        };
        let attempt = base().and_then(|b| {
            b.with_execution_providers([ep])
                .map_err(|e| e.to_string())?
                .commit_from_memory(bytes)
                .map_err(|e| e.to_string())
        });
        match attempt {
            Ok(session) => {
                return Ok(DeviceSession {
                    session,
                    device: format!("{name} (GPU)"),
                })
            }
            Err(e) => refused.push(format!(
                "the {name} provider failed to load: {}",
                provider_message(&e)
            )),
        }
    }
    let session = base()?
        .commit_from_memory(bytes)
        .map_err(|e| e.to_string())?;
    let device = if refused.is_empty() {
        cpu_name
    } else {
        format!("{cpu_name} ({})", refused.join("; "))
    };
    Ok(DeviceSession { session, device })
}

/// The part of ONNX Runtime's provider error a person needs: the dynamic loader's own message
/// (e.g. `Failed to load library …: libcublasLt.so.13: cannot open shared object file`), without
/// the source-file prefix.
fn provider_message(e: &str) -> &str {
    let e = e.trim();
    match e.find("Failed to load library") {
        Some(i) => &e[i..],
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_get_one_thread() {
        if std::env::var_os(ENV_INTRA_THREADS).is_none() {
            assert_eq!(intra_threads_for(200_000), 1);
            assert!(intra_threads_for(100 << 20) >= 1);
        }
    }
}
