//! A model is its folder: the manifest and every file it lists, read once, checked, and held in
//! memory for ONNX Runtime, which never opens a file itself.
//!
//! [`ModelPackage::read`] is the one way a model comes off disk:
//! - paths are relative and must resolve (symlinks followed) to a place inside the folder;
//! - every file is a regular file, read with a size limit ([`crate::files::read_bounded`]) and
//!   checked against its sha256 in the manifest: the bytes checked are the bytes run;
//! - the ONNX graph is scanned ([`super::onnx_scan`]) before any session exists: every
//!   external-data `location` must be a file the manifest lists (so no file outside the folder,
//!   nor one the manifest does not pin, can reach the audio), and what the graph declares or
//!   will allocate must fit the memory limit;
//! - the model's **identity** is one hash over the manifest and all its files: what licences
//!   and plugin state name.

use super::manifest::{Manifest, ManifestError};
use super::onnx_scan::{self, OnnxFacts};
use crate::files::{self, ReadError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable: the memory a model may use, in MB (default: half the machine's memory,
/// at most 16 GB).
pub const ENV_MODEL_MEMORY_MB: &str = "REFRAIN_MODEL_MEMORY_MB";

/// Why a model folder could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Read { path: String, source: ReadError },
    #[error("the model file {path} leads outside the model's folder {folder} (through a symbolic link); a model's files stay in its folder")]
    Outside { path: PathBuf, folder: PathBuf },
    #[error("the model file {path} does not match its manifest: sha256 is {actual}, the manifest says {expected} (a damaged or swapped file)")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path} is not a usable ONNX model: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    #[error("the model's tensor `{tensor}` reads external data from `{location}`, which its manifest does not list under [[files]]; a model may only read the files it lists")]
    UnlistedExternal { tensor: String, location: String },
    #[error("the model's tensor `{tensor}` reads bytes {offset}..{end} of `{location}`, which has {size}")]
    ExternalOutOfRange {
        tensor: String,
        location: String,
        offset: u64,
        end: u64,
        size: u64,
    },
    #[error("the model `{model}` needs at least {needed} MB ({what}); the limit is {limit} MB (set {ENV_MODEL_MEMORY_MB} to change it)")]
    TooBig {
        model: String,
        needed: u64,
        limit: u64,
        what: &'static str,
    },
}

/// How much a model may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes: its files together, what its graph declares, and what its ops allocate at once.
    pub memory: u64,
}

impl Limits {
    /// `REFRAIN_MODEL_MEMORY_MB`, else half the machine's memory, at most 16 GB.
    pub fn from_env() -> Limits {
        let mb = std::env::var(ENV_MODEL_MEMORY_MB)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&mb| mb > 0);
        Limits {
            memory: match mb {
                Some(mb) => mb << 20,
                None => (machine_memory() / 2).clamp(256 << 20, 16 << 30),
            },
        }
    }
}

/// The machine's memory in bytes (8 GB when it cannot be read).
pub fn machine_memory() -> u64 {
    #[cfg(target_os = "linux")]
    if let Ok(text) = files::read_text_bounded(Path::new("/proc/meminfo"), 1 << 16) {
        if let Some(kb) = text
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            return kb * 1024;
        }
    }
    8 << 30
}

/// Where [`ModelPackage::assemble`] gets each listed file: by its manifest path and sha256, the
/// bytes (hash checked).
pub(crate) type FileSource<'a> = dyn FnMut(&str, &str) -> Result<Arc<[u8]>, PackageError> + 'a;

/// A model read off disk (or embedded), checked and in memory.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    /// The folder (canonical), or a name for an embedded model.
    pub folder: PathBuf,
    pub manifest: Manifest,
    /// The ONNX graph.
    pub onnx: Arc<[u8]>,
    /// Files the graph reads external data from, by the `location` it names them with.
    pub external: Vec<(String, Arc<[u8]>)>,
    /// The other listed files (indexes, configs), by their manifest path.
    pub others: Vec<(String, Arc<[u8]>)>,
    /// One hash over the manifest and all its files (hex).
    pub identity: String,
    /// What the graph scan found.
    pub facts: OnnxFacts,
    /// Decrypted from a protected model ([`super::protection`]): it needs a licence, whatever
    /// its manifest says.
    pub protected: bool,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a model file's bytes against the sha256 its manifest pins.
pub(crate) fn check_sha256(path: &Path, bytes: &[u8], sha: &str) -> Result<(), PackageError> {
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(sha) {
        Ok(())
    } else {
        Err(PackageError::HashMismatch {
            path: path.to_owned(),
            expected: sha.to_owned(),
            actual,
        })
    }
}

/// The identity of a model: the manifest's bytes, then each file's path and hash in path order.
pub fn identity(manifest_bytes: &[u8], files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    h.update(b"refrain-model-identity-v1\n");
    h.update(Sha256::digest(manifest_bytes));
    for (path, sha) in sorted {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

impl ModelPackage {
    /// Reads the model whose manifest is `manifest_path`, within `limits`.
    pub fn read(manifest_path: &Path, limits: Limits) -> Result<ModelPackage, PackageError> {
        let read_err = |path: &Path, source: ReadError| PackageError::Read {
            path: path.display().to_string(),
            source,
        };
        let manifest_bytes =
            files::read_bounded(manifest_path, super::manifest::MAX_MANIFEST_BYTES)
                .map_err(|e| read_err(manifest_path, e))?;
        let manifest = ModelPackage::parse_manifest(&manifest_bytes, manifest_path)?;
        let folder = manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let folder = std::fs::canonicalize(folder).map_err(|e| {
            read_err(
                folder,
                ReadError::Io {
                    path: folder.to_owned(),
                    reason: e.to_string(),
                },
            )
        })?;

        // Every file, once, inside the folder, within what is left of the limit.
        let mut budget = limits.memory;
        let (inside, model_id) = (folder.clone(), manifest.model.id.clone());
        let mut read_file = |rel: &str, sha: &str| -> Result<Arc<[u8]>, PackageError> {
            let folder = &inside;
            let path = folder.join(rel);
            let real = std::fs::canonicalize(&path).map_err(|e| {
                read_err(
                    &path,
                    if e.kind() == std::io::ErrorKind::NotFound {
                        ReadError::Missing { path: path.clone() }
                    } else {
                        ReadError::Io {
                            path: path.clone(),
                            reason: e.to_string(),
                        }
                    },
                )
            })?;
            if !real.starts_with(folder) {
                return Err(PackageError::Outside {
                    path,
                    folder: folder.clone(),
                });
            }
            let bytes = files::read_bounded(&real, budget).map_err(|e| match e {
                ReadError::TooLarge { size, .. } => PackageError::TooBig {
                    model: model_id.clone(),
                    needed: (limits.memory - budget + size) >> 20,
                    limit: limits.memory >> 20,
                    what: "its files",
                },
                other => read_err(&path, other),
            })?;
            budget -= bytes.len() as u64;
            check_sha256(&path, &bytes, sha)?;
            Ok(bytes.into())
        };
        ModelPackage::assemble(folder, &manifest_bytes, manifest, limits, &mut read_file)
    }

    /// The manifest at `path` (for messages) from its bytes.
    pub(crate) fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest, PackageError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::Parse {
            path: path.to_owned(),
            reason: "not UTF-8 text".into(),
        })?;
        Ok(Manifest::parse(text).map_err(|e| match e {
            ManifestError::Parse { reason, .. } => ManifestError::Parse {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })?)
    }

    /// Everything after the manifest: each listed file through `read_file` (by its manifest
    /// path and sha256; it checks the hash and the memory left), the graph scan, the external
    /// data, the memory limit and the identity. [`Self::read`] reads from the folder; a
    /// protected model ([`super::protection`]) decrypts in memory.
    pub(crate) fn assemble(
        folder: PathBuf,
        manifest_bytes: &[u8],
        manifest: Manifest,
        limits: Limits,
        read_file: &mut FileSource<'_>,
    ) -> Result<ModelPackage, PackageError> {
        let onnx = read_file(&manifest.model.file, &manifest.model.sha256)?;
        let mut listed = Vec::new();
        for f in &manifest.files {
            listed.push((f.path.clone(), read_file(&f.path, &f.sha256)?));
        }
        let used = onnx.len() as u64 + listed.iter().map(|(_, b)| b.len() as u64).sum::<u64>();

        let onnx_path = folder.join(&manifest.model.file);
        let facts = onnx_scan::scan(&onnx).map_err(|e| PackageError::NotOnnx {
            path: onnx_path.clone(),
            reason: e.to_string(),
        })?;
        let mut external: Vec<(String, Arc<[u8]>)> = Vec::new();
        for r in &facts.external {
            let wanted = r.location.strip_prefix("./").unwrap_or(&r.location);
            let Some((_, bytes)) = listed.iter().find(|(p, _)| p == wanted) else {
                return Err(PackageError::UnlistedExternal {
                    tensor: r.tensor.clone(),
                    location: r.location.clone(),
                });
            };
            let size = bytes.len() as u64;
            let end = r.length.map_or(size, |l| r.offset.saturating_add(l));
            if r.offset > size || end > size {
                return Err(PackageError::ExternalOutOfRange {
                    tensor: r.tensor.clone(),
                    location: r.location.clone(),
                    offset: r.offset,
                    end,
                    size,
                });
            }
            if !external.iter().any(|(l, _)| l == &r.location) {
                external.push((r.location.clone(), bytes.clone()));
            }
        }
        let needed = used
            .saturating_add(facts.declared_bytes)
            .saturating_add(facts.allocated_bytes);
        if needed > limits.memory {
            return Err(PackageError::TooBig {
                model: manifest.model.id.clone(),
                needed: needed >> 20,
                limit: limits.memory >> 20,
                what: if facts.allocated_bytes > facts.declared_bytes {
                    "what its operators allocate"
                } else {
                    "its weights"
                },
            });
        }
        let others = listed
            .iter()
            .filter(|(p, _)| {
                !external
                    .iter()
                    .any(|(l, _)| l.strip_prefix("./").unwrap_or(l) == p)
            })
            .cloned()
            .collect();
        let hashes: Vec<(String, String)> = std::iter::once((
            manifest.model.file.clone(),
            manifest.model.sha256.to_ascii_lowercase(),
        ))
        .chain(
            manifest
                .files
                .iter()
                .map(|f| (f.path.clone(), f.sha256.to_ascii_lowercase())),
        )
        .collect();
        Ok(ModelPackage {
            identity: identity(manifest_bytes, &hashes),
            folder,
            manifest,
            onnx,
            external,
            others,
            facts,
            protected: false,
        })
    }

    /// A package for a model held in memory (the built-in one): its manifest text and graph.
    pub fn embedded(
        name: &str,
        manifest_text: &str,
        onnx: &'static [u8],
    ) -> Result<ModelPackage, PackageError> {
        let manifest = Manifest::parse(manifest_text)?;
        let facts = onnx_scan::scan(onnx).map_err(|e| PackageError::NotOnnx {
            path: PathBuf::from(name),
            reason: e.to_string(),
        })?;
        let actual = sha256_hex(onnx);
        if !actual.eq_ignore_ascii_case(&manifest.model.sha256) {
            return Err(PackageError::HashMismatch {
                path: PathBuf::from(name),
                expected: manifest.model.sha256.clone(),
                actual,
            });
        }
        let hashes = vec![(manifest.model.file.clone(), actual)];
        Ok(ModelPackage {
            identity: identity(manifest_text.as_bytes(), &hashes),
            folder: PathBuf::from(name),
            manifest,
            onnx: Arc::from(onnx),
            external: Vec::new(),
            others: Vec::new(),
            facts,
            protected: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::onnx::{self, Tensor};

    /// A folder with a manifest for `model` (bytes) and `files`, listed with their hashes.
    fn folder(model: &[u8], files: &[(&str, &[u8])], extra_listing: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), model).unwrap();
        let mut listing = String::new();
        for (path, bytes) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            listing += &format!(
                "[[files]]\npath = {path:?}\nsha256 = \"{}\"\n\n",
                sha256_hex(bytes)
            );
        }
        listing += extra_listing;
        let manifest = format!(
            "format = 1\n[model]\nid = \"t\"\nname = \"T\"\nversion = \"1\"\nkind = \"audio-to-audio\"\nfile = \"m.onnx\"\nsha256 = \"{}\"\n[stream]\nsample_rate = 48000\nchannels = 1\nhop = 4\n[input]\nname = \"x\"\ndtype = \"float32\"\nshape = [1, 1, 4]\n[output]\nname = \"y\"\ndtype = \"float32\"\nshape = [1, 1, 4]\n{listing}",
            sha256_hex(model)
        );
        std::fs::write(dir.path().join("model.toml"), manifest).unwrap();
        dir
    }

    fn weights_model(location: &str) -> Vec<u8> {
        onnx::model(onnx::graph(
            vec![onnx::node("Mul", &["x", "w"], &["y"], vec![])],
            vec![Tensor::external("w", &[4], location, 16)],
            &["x"],
            &["y"],
        ))
    }

    fn limits() -> Limits {
        Limits { memory: 64 << 20 }
    }

    #[test]
    fn a_model_reads_only_the_files_its_manifest_lists_and_hashes() {
        let weights: Vec<u8> = [0.5f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dir = folder(
            &weights_model("weights/w.bin"),
            &[("weights/w.bin", &weights)],
            "",
        );
        let pkg = ModelPackage::read(&dir.path().join("model.toml"), limits()).unwrap();
        assert_eq!(pkg.external.len(), 1);
        assert_eq!(&*pkg.external[0].1, &weights[..]);

        // A location outside the folder, or not listed: refused before anything is read.
        for location in ["etc/passwd", "../secret.toml", "/etc/passwd"] {
            let dir = folder(&weights_model(location), &[("weights/w.bin", &weights)], "");
            let e = ModelPackage::read(&dir.path().join("model.toml"), limits()).unwrap_err();
            assert!(
                matches!(e, PackageError::UnlistedExternal { .. }),
                "{location}: {e}"
            );
        }

        // A swapped weight file: refused by its hash.
        let dir = folder(
            &weights_model("weights/w.bin"),
            &[("weights/w.bin", &weights)],
            "",
        );
        std::fs::write(dir.path().join("weights/w.bin"), [0u8; 16]).unwrap();
        let e = ModelPackage::read(&dir.path().join("model.toml"), limits()).unwrap_err();
        assert!(matches!(e, PackageError::HashMismatch { .. }), "{e}");
        assert!(e.to_string().contains("w.bin"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_folder_and_devices_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"label signing key").unwrap();
        let weights = [0u8; 16];
        let dir = folder(&weights_model("w.bin"), &[("w.bin", &weights)], "");
        std::fs::remove_file(dir.path().join("w.bin")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("w.bin"))
            .unwrap();
        let e = ModelPackage::read(&dir.path().join("model.toml"), limits()).unwrap_err();
        assert!(matches!(e, PackageError::Outside { .. }), "{e}");

        std::fs::remove_file(dir.path().join("w.bin")).unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("w.bin")).unwrap();
        let t = std::time::Instant::now();
        assert!(ModelPackage::read(&dir.path().join("model.toml"), limits()).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_identity_covers_the_manifest_and_every_file() {
        let weights: Vec<u8> = [0.5f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = folder(&weights_model("w.bin"), &[("w.bin", &weights)], "");
        let other: Vec<u8> = [0.25f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = folder(&weights_model("w.bin"), &[("w.bin", &other)], "");
        let ia = ModelPackage::read(&a.path().join("model.toml"), limits())
            .unwrap()
            .identity;
        let ib = ModelPackage::read(&b.path().join("model.toml"), limits())
            .unwrap()
            .identity;
        assert_ne!(ia, ib, "different weights, different identity");
        let again = ModelPackage::read(&a.path().join("model.toml"), limits())
            .unwrap()
            .identity;
        assert_eq!(ia, again);
    }

    #[test]
    fn a_model_bigger_than_the_limit_is_refused_with_the_limit() {
        let bomb = onnx::model(onnx::graph(
            vec![onnx::node("ConstantOfShape", &["shape"], &["y"], vec![])],
            vec![Tensor::int64s("shape", &[1], &[750_000_000])],
            &["x"],
            &["y"],
        ));
        let dir = folder(&bomb, &[], "");
        let e = ModelPackage::read(&dir.path().join("model.toml"), limits()).unwrap_err();
        assert!(matches!(e, PackageError::TooBig { limit: 64, .. }), "{e}");
        assert!(e.to_string().contains(ENV_MODEL_MEMORY_MB), "{e}");
    }
}
