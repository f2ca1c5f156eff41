//! What untrusted-model safety costs (issue 14).
//!
//! - `read and hash`: reading a model folder through the one model-loading function
//!   ([`ModelPackage::read`]): bounded reads of every file, a SHA-256 of each against the
//!   manifest, the graph scan and the identity hash. A 256 MB weights file; criterion reports
//!   the throughput, whose inverse is the load overhead per GB.
//! - `plain read`: the same bytes read with `std::fs::read` and no hashing, for comparison.
//! - `open protected`: the same model protected (`refrain model protect`) and opened with its
//!   content key: XChaCha20-Poly1305 decryption in memory, then the same checks. The difference
//!   from `read and hash` is what protection adds to a load (issue: under 200 ms per 100 MB).
//! - `watchdog per run`: what every model run pays for the watchdog (two atomic stores and a
//!   load, on the worker; nothing on the audio thread).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use refrain::models::package::{Limits, ModelPackage};
use refrain::testkit::onnx::{self, Tensor};
use std::time::Duration;

const HOP: usize = 480;
const WEIGHTS: usize = 256 << 20;

fn bench_model_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let weights = vec![0x3cu8; WEIGHTS];
    let (inputs, outputs) = onnx::contract_io(HOP);
    let graph = onnx::graph_typed(
        vec![
            onnx::node(
                "ReduceMean",
                &["w"],
                &["m"],
                vec![onnx::attr_int("keepdims", 0)],
            ),
            onnx::node("Add", &["audio_in", "m"], &["audio_out"], vec![]),
        ],
        vec![Tensor::external(
            "w",
            &[(WEIGHTS / 4) as i64],
            "weights.bin",
            WEIGHTS as u64,
        )],
        inputs,
        outputs,
    );
    let folder = onnx::model_folder(dir.path(), HOP, graph, &[("weights.bin", &weights)]);
    drop(weights);
    let manifest = folder.join("model.toml");
    let limits = Limits { memory: 4 << 30 };

    let mut g = c.benchmark_group("model load");
    g.throughput(Throughput::Bytes(WEIGHTS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("read and hash", |b| {
        b.iter(|| ModelPackage::read(&manifest, limits).unwrap())
    });
    g.bench_function("plain read", |b| {
        b.iter(|| std::fs::read(folder.join("weights.bin")).unwrap())
    });
    let protected = dir.path().join("protected");
    let (header, key) = refrain::models::protection::protect(&manifest, &protected).unwrap();
    g.bench_function("open protected", |b| {
        b.iter(|| refrain::models::protection::open(&protected, &header, &key, limits).unwrap())
    });
    g.finish();

    let watched = refrain::models::watchdog::watch(Duration::from_secs(5)).unwrap();
    c.bench_function("watchdog per run", |b| {
        b.iter(|| {
            watched.begin();
            std::hint::black_box(watched.end())
        })
    });
}

criterion_group!(benches, bench_model_load);
criterion_main!(benches);
