//! The GPU build of ONNX Runtime (PyPI's `onnxruntime-gpu`, put in `target/onnxruntime-gpu` by
//! `cargo xtask setup --gpu`) on a machine without a usable GPU: the runtime loads, the CUDA and
//! TensorRT providers do not, and the model runs on the CPU with the providers' own error
//! messages saying why. Its own test binary: ONNX Runtime is loaded once per process.

use refrain::models::processor::HopProcessor;
use refrain::models::ModelSource;
use std::path::Path;

#[test]
fn without_a_gpu_the_gpu_runtime_falls_back_to_the_cpu_and_says_why() {
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/onnxruntime-gpu/libonnxruntime.so.1.31.1");
    assert!(
        gpu.is_file(),
        "{} is missing: run `cargo xtask setup --gpu` (cargo xtask test does)",
        gpu.display()
    );
    // SAFETY: the only test in this process, before ONNX Runtime or any thread is started.
    unsafe {
        std::env::set_var("ORT_DYLIB_PATH", &gpu);
        std::env::remove_var(refrain::models::runtime::ENV_DEVICE);
    }
    let mut model = ModelSource::Builtin
        .load()
        .expect("the model loads on the CPU");
    let device = model.device().unwrap_or_default();
    eprintln!("device: {device}");
    assert!(device.starts_with("CPU"), "{device}");
    assert!(
        device.contains("the CUDA provider failed to load"),
        "{device}"
    );
    // The dynamic loader's own message: which CUDA library it could not open.
    assert!(
        device.contains("cannot open shared object file"),
        "no library message: {device}"
    );
    // And the model runs there.
    let s = model.spec();
    let window: Vec<f32> = (0..s.channels * (s.context + s.hop))
        .map(|i| ((i as f32) * 0.01).sin() * 0.3)
        .collect();
    let mut out = vec![0.0f32; s.channels * s.hop];
    model.process(&window, &mut out).unwrap();
    assert!(
        out.iter().any(|&x| x.abs() > 0.01),
        "the model produced silence"
    );
}
