//! Models from strangers, tried as a hostile model author would, through `refrain render` (the
//! same loader the plugin uses): a model is its folder and reads nothing else, its files are
//! pinned by their hashes, a run that never ends is stopped, an allocation bomb is refused or
//! bounded, and devices and pipes are refused at once. A legitimate model split into weight
//! files loads from any working directory.

use refrain::testkit::onnx::{self, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOP: usize = 480;

fn refrain() -> Command {
    refrain::testkit::command(env!("CARGO_BIN_EXE_refrain"))
}

fn model_folder(dir: &Path, graph: Vec<u8>, files: &[(&str, &[u8])]) -> PathBuf {
    onnx::model_folder(dir, HOP, graph, files)
}

fn io() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    onnx::contract_io(HOP)
}

fn input_wav(dir: &Path) -> PathBuf {
    let path = dir.join("in.wav");
    let x: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.03).sin() * 0.5).collect();
    refrain::media::write_wav(&path, &[x], 48_000).unwrap();
    path
}

fn render(
    model: &Path,
    input: &Path,
    out: &Path,
    cwd: &Path,
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut c = refrain();
    c.current_dir(cwd)
        .args(["render", "--model"])
        .arg(model)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout),
    )
}

#[test]
fn an_external_data_location_cannot_reach_a_file_outside_the_models_folder() {
    let dir = tempfile::tempdir().unwrap();
    // A label's working folder with its signing key in it.
    let work = dir.path().join("label");
    std::fs::create_dir_all(&work).unwrap();
    let secret = b"secret = \"k4.secret.THIS-MUST-NEVER-BE-HEARD\"\n".repeat(200);
    std::fs::write(work.join("northern.secret.toml"), &secret).unwrap();
    let input = input_wav(dir.path());
    // The model plays its "weights" as audio: whatever file they come from is the output.
    let (inputs, outputs) = io();
    for (cwd, location) in [
        (PathBuf::from("/"), "etc/passwd"),
        (work.clone(), "northern.secret.toml"),
        (work.clone(), "../label/northern.secret.toml"),
    ] {
        let graph = onnx::graph_typed(
            vec![onnx::node("Identity", &["stolen"], &["audio_out"], vec![])],
            vec![Tensor::external(
                "stolen",
                &[1, 1, HOP as i64],
                location,
                4 * HOP as u64,
            )],
            inputs.clone(),
            outputs.clone(),
        );
        let folder = model_folder(
            &dir.path().join(format!("m-{}", location.len())),
            graph,
            &[],
        );
        let out = dir.path().join("out.wav");
        let (ok, text) = render(&folder, &input, &out, &cwd, &[]);
        assert!(
            !ok,
            "{location} from {}: the render must be refused",
            cwd.display()
        );
        assert!(text.contains("does not list"), "{location}: {text}");
        assert!(!out.exists(), "no output at all");
    }
}

#[test]
fn a_legitimate_model_split_into_weight_files_loads_from_any_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A gain of one half in one file, and 32 MB of (zero) weights in another, reduced to a
    // scalar that is added: the output proves both were read, from memory.
    let gain: Vec<u8> = vec![0.5f32; HOP]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let big = vec![0u8; 32 << 20];
    let (inputs, outputs) = io();
    let graph = onnx::graph_typed(
        vec![
            onnx::node("Mul", &["audio_in", "gain"], &["scaled"], vec![]),
            onnx::node(
                "ReduceMean",
                &["big"],
                &["mean"],
                vec![onnx::attr_int("keepdims", 0)],
            ),
            onnx::node("Add", &["scaled", "mean"], &["audio_out"], vec![]),
        ],
        vec![
            Tensor::external(
                "gain",
                &[1, 1, HOP as i64],
                "weights/gain.bin",
                gain.len() as u64,
            ),
            Tensor::external(
                "big",
                &[(big.len() / 4) as i64],
                "weights/big.bin",
                big.len() as u64,
            ),
        ],
        inputs,
        outputs,
    );
    let folder = model_folder(
        &dir.path().join("split"),
        graph,
        &[("weights/gain.bin", &gain), ("weights/big.bin", &big)],
    );
    let input = input_wav(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    for cwd in [PathBuf::from("/"), elsewhere.path().to_owned()] {
        let out = dir.path().join("out.wav");
        let (ok, text) = render(&folder, &input, &out, &cwd, &[]);
        assert!(ok, "from {}: {text}", cwd.display());
        let (y, _) = refrain::media::read_all(&out).unwrap();
        let (x, _) = refrain::media::read_all(&input).unwrap();
        assert!(
            (y[0][1_000] - 0.5 * x[0][1_000]).abs() < 1e-6,
            "{} vs {}",
            y[0][1_000],
            x[0][1_000]
        );
    }
    // The same folder with one weight file swapped: refused by its hash, naming the file.
    std::fs::write(folder.join("weights/gain.bin"), vec![0u8; gain.len()]).unwrap();
    let (ok, text) = render(&folder, &input, &dir.path().join("x.wav"), dir.path(), &[]);
    assert!(!ok);
    assert!(
        text.contains("gain.bin") && text.contains("sha256"),
        "{text}"
    );
}

#[test]
fn a_model_that_never_finishes_is_stopped_within_the_stated_time() {
    let dir = tempfile::tempdir().unwrap();
    let graph = onnx::endless_loop(HOP);
    let folder = model_folder(&dir.path().join("loop"), graph, &[]);
    let input = input_wav(dir.path());
    let started = Instant::now();
    let (ok, text) = render(
        &folder,
        &input,
        &dir.path().join("out.wav"),
        dir.path(),
        &[("REFRAIN_MAX_RUN_MS", "1000")],
    );
    assert!(!ok);
    assert!(
        text.contains("`stranger` took longer than 1.0 s and was stopped"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_allocation_bomb_is_refused_and_never_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_wav(dir.path());
    let (inputs, outputs) = io();
    // A constant shape: 750 M floats, seen before any session exists.
    let constant = onnx::graph_typed(
        vec![
            onnx::node("ConstantOfShape", &["shape"], &["big"], vec![]),
            onnx::node(
                "ReduceSum",
                &["big"],
                &["sum"],
                vec![onnx::attr_int("keepdims", 0)],
            ),
            onnx::node("Add", &["audio_in", "sum"], &["audio_out"], vec![]),
        ],
        vec![Tensor::int64s("shape", &[1], &[750_000_000])],
        inputs.clone(),
        outputs.clone(),
    );
    // A shape computed at run time (the hop's length times 10^6 = 480 M floats): the capped
    // memory arena refuses it.
    let dynamic = onnx::graph_typed(
        vec![
            onnx::node("Shape", &["audio_in"], &["s"], vec![]),
            onnx::node("Mul", &["s", "million"], &["shape"], vec![]),
            onnx::node("ConstantOfShape", &["shape"], &["big"], vec![]),
            onnx::node(
                "ReduceSum",
                &["big"],
                &["sum"],
                vec![onnx::attr_int("keepdims", 0)],
            ),
            onnx::node("Add", &["audio_in", "sum"], &["audio_out"], vec![]),
        ],
        vec![Tensor::int64s("million", &[3], &[1, 1, 1_000_000])],
        inputs,
        outputs,
    );
    for (name, graph) in [("constant", constant), ("dynamic", dynamic)] {
        let folder = model_folder(&dir.path().join(name), graph, &[]);
        let mut c = refrain();
        c.current_dir(dir.path())
            .env("REFRAIN_MODEL_MEMORY_MB", "512")
            .args(["render", "--model"])
            .arg(&folder)
            .arg("--in")
            .arg(&input)
            .arg("--out")
            .arg(dir.path().join("out.wav"));
        let run = refrain::testkit::run_measured(&mut c);
        let err = run.stderr;
        assert!(!run.ok, "{name}: refused");
        assert!(
            err.contains("`stranger`") && err.contains("limit is 512 MB"),
            "{name}: the message names the model and the limit: {err}"
        );
        // 750 M or 480 M floats would be 3 GB or 1.9 GB.
        assert!(
            run.peak_kib < 900 * 1024,
            "{name}: peak {} KiB",
            run.peak_kib
        );
    }
}

#[cfg(unix)]
#[test]
fn devices_pipes_and_absolute_paths_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_wav(dir.path());
    let fifo = dir.path().join("model.toml.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A manifest naming an absolute path as its ONNX file.
    let abs = dir.path().join("abs");
    std::fs::create_dir_all(&abs).unwrap();
    std::fs::write(
        abs.join("model.toml"),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test/half/model.toml"),
        )
        .unwrap()
        .replace("file = \"half.onnx\"", "file = \"/dev/zero\""),
    )
    .unwrap();
    for model in [PathBuf::from("/dev/zero"), fifo, abs.join("model.toml")] {
        let t = Instant::now();
        let (ok, text) = render(&model, &input, &dir.path().join("o.wav"), dir.path(), &[]);
        assert!(!ok, "{}", model.display());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{}: {:?}",
            model.display(),
            t.elapsed()
        );
        assert!(
            text.contains("not a regular file") || text.contains("model.file"),
            "{}: {text}",
            model.display()
        );
    }
}
