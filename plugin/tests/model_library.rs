//! The models folder, as a user meets it: loading a model from anywhere imports it; a project
//! names it by id and identity; a model found through `REFRAIN_MODEL_PATH` is not copied; a
//! copy whose files changed is not the model the project names; a missing model is named by its
//! id and identity. Its own process: it sets the data folder and the model path before any
//! other thread exists.

use refrain::models::library::{self, LibraryError, ModelRef};
use refrain::models::ModelSource;
use std::path::{Path, PathBuf};

fn repo_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn models_are_imported_named_by_identity_and_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shared = dir.path().join("shared-models");
    // SAFETY: the only test in this process, before any other thread starts.
    unsafe {
        std::env::set_var(refrain::licence::store::ENV_DATA_DIR, &data);
        std::env::set_var(library::ENV_MODEL_PATH, &shared);
    }

    // 1. Loading from a folder elsewhere copies the model, exactly, into the models folder.
    let half = repo_model("test/half/model.toml");
    let (reference, folder) = library::import(&half).unwrap();
    assert!(
        folder.starts_with(data.join("models")),
        "{}",
        folder.display()
    );
    for name in ["model.toml", "half.onnx"] {
        assert_eq!(
            std::fs::read(folder.join(name)).unwrap(),
            std::fs::read(repo_model("test/half").join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        library::import(&half).unwrap(),
        (reference.clone(), folder.clone())
    );
    let leftovers: Vec<_> = std::fs::read_dir(data.join("models"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no half-copied folder stays behind");

    // 2. What a project saves: the id and identity, no path; it reads back to the same model.
    let state = ModelSource::Library(reference.clone()).to_state();
    assert!(
        !state.contains('/') && state.starts_with("test-half@"),
        "{state}"
    );
    let package = ModelSource::parse(&state).package().unwrap();
    assert_eq!(package.identity, reference.identity);

    // 3. A model in a folder on REFRAIN_MODEL_PATH is used where it is.
    copy_folder(&repo_model("test/invert"), &shared.join("invert"));
    let (invert, at) = library::import(&shared.join("invert/model.toml")).unwrap();
    assert_eq!(at, shared.join("invert").canonicalize().unwrap());
    assert!(ModelSource::Library(invert).package().is_ok());

    // 4. The copy changed (its graph swapped, its manifest re-pinned to the new file, as a
    // careful tamperer would): it is no longer the model the project names.
    let invert_onnx = std::fs::read(repo_model("test/invert/invert.onnx")).unwrap();
    std::fs::write(folder.join("half.onnx"), &invert_onnx).unwrap();
    let manifest = std::fs::read_to_string(folder.join("model.toml")).unwrap();
    let old_sha = &package.manifest.model.sha256;
    let new_sha = refrain::testkit::sha256_hex(&invert_onnx);
    std::fs::write(
        folder.join("model.toml"),
        manifest.replace(old_sha.as_str(), &new_sha),
    )
    .unwrap();
    match ModelSource::parse(&state).package() {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&state) && text.contains("not in the models folder"),
                "{text}"
            );
        }
        Ok(_) => panic!("a changed copy must not pass for the model the project names"),
    }

    // 5. A model this machine does not have: named by id and identity.
    let missing = ModelRef {
        id: "night-drive".into(),
        identity: "5e".repeat(32),
    };
    let e = library::find(&missing).unwrap_err();
    assert!(matches!(e, LibraryError::NotFound { .. }));
    assert!(e.to_string().contains(&missing.to_state()), "{e}");

    // 6. The same from the command line: import prints the reference, info checks and names
    // it, and a render takes it.
    let refrain = |args: &[&str]| {
        let o = refrain::testkit::command(env!("CARGO_BIN_EXE_refrain"))
            .args(args)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "refrain {args:?}: {text}");
        text
    };
    let gain = repo_model("test/gain");
    let imported = refrain(&["model", "import", gain.to_str().unwrap()]);
    let reference = imported.lines().next().unwrap().trim().to_owned();
    assert!(ModelRef::parse(&reference).is_some(), "{imported}");
    let info = refrain(&["model", "info", &reference]);
    assert!(info.contains(&format!("reference: {reference}")), "{info}");
    assert!(refrain(&["model", "list"]).contains(&reference));
    let wav = dir.path().join("in.wav");
    refrain::media::write_wav(
        &wav,
        &[vec![0.25f32; 44_100], vec![0.25f32; 44_100]],
        44_100,
    )
    .unwrap();
    let out = dir.path().join("out.wav");
    let rendered = refrain(&[
        "render",
        "--model",
        &reference,
        "--in",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        rendered.contains(&format!("model:        {reference}")),
        "{rendered}"
    );
    let (y, _) = refrain::media::read_all(&out).unwrap();
    // The gain model: left x0.5, right x2.
    assert!((y[0][30_000] - 0.125).abs() < 1e-3 && (y[1][30_000] - 0.5).abs() < 1e-3);
}
