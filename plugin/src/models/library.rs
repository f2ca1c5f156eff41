//! The models folder: where models live, and how a project names them.
//!
//! A project names its model by id and identity hash (`night-drive@3f2a…`, [`ModelRef`]),
//! never by a path, so it opens on another machine that has the model. Models are found in the
//! models folder (`models/` in Refrain's data folder, `$REFRAIN_DATA_DIR` overriding it) and in
//! the folders `$REFRAIN_MODEL_PATH` lists (the platform's path-list separator between them).
//! Loading a model from anywhere else imports it: its files, exactly the bytes that were
//! checked and hashed, are copied into the models folder (into a temporary folder first, then
//! renamed, so a half-copied model is never found). A model that is not found plays dry, with a
//! message naming its id and identity.

use super::package::{Limits, ModelPackage, PackageError};
use crate::files;
use std::path::{Path, PathBuf};

/// Environment variable: more folders to find models in.
pub const ENV_MODEL_PATH: &str = "REFRAIN_MODEL_PATH";

/// A model as a project names it: its manifest id and its identity hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub id: String,
    /// One hash over the manifest and all its files (64 hex digits).
    pub identity: String,
}

impl ModelRef {
    /// Reads `id@identity`; `None` if `text` is not that.
    pub fn parse(text: &str) -> Option<ModelRef> {
        let (id, identity) = text.trim().split_once('@')?;
        let id_ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let identity_ok = identity.len() == 64 && identity.chars().all(|c| c.is_ascii_hexdigit());
        (id_ok && identity_ok).then(|| ModelRef {
            id: id.to_owned(),
            identity: identity.to_ascii_lowercase(),
        })
    }

    /// The form saved in a project.
    pub fn to_state(&self) -> String {
        format!("{}@{}", self.id, self.identity)
    }

    /// The reference to the model in `package`.
    pub fn of(package: &ModelPackage) -> ModelRef {
        ModelRef {
            id: package.manifest.model.id.clone(),
            identity: package.identity.clone(),
        }
    }

    /// The folder name an import gives the model: its id and the start of its identity.
    fn folder_name(&self) -> String {
        format!("{}-{}", self.id, &self.identity[..12])
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.identity)
    }
}

/// Why a model could not be found or imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LibraryError {
    #[error("this system has no data folder for the models folder; set REFRAIN_DATA_DIR")]
    NoDataDir,
    #[error("the model {reference} is not in the models folder ({searched}); load it once from its folder to import it, or add its folder to {ENV_MODEL_PATH}")]
    NotFound { reference: String, searched: String },
    #[error("cannot import the model into {folder}: {reason}")]
    Import { folder: PathBuf, reason: String },
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// The models folder: `<data folder>/models`.
pub fn models_folder() -> Result<PathBuf, LibraryError> {
    crate::licence::store::Store::open_default()
        .map(|s| s.root().join("models"))
        .map_err(|_| LibraryError::NoDataDir)
}

/// Every folder models are found in: the models folder, then `$REFRAIN_MODEL_PATH`'s.
pub fn search_folders() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = models_folder().into_iter().collect();
    if let Some(extra) = std::env::var_os(ENV_MODEL_PATH) {
        out.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    out
}

/// The file at `relative` in the first folder of [`search_folders`] that has it: where the
/// real models set-up fetches (Basic Pitch, SwiftF0, Silero VAD) are found.
pub fn find_file(relative: &str) -> Option<PathBuf> {
    search_folders()
        .into_iter()
        .map(|f| f.join(relative))
        .find(|p| p.is_file())
}

/// Manifests of the models in `folder`: `<folder>/<model>/model.toml`, one level down.
fn manifests_in(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("model.toml"))
        .filter(|m| m.is_file())
        .collect();
    out.sort();
    out
}

/// Finds the model `reference` names and reads it (checked, hashed, in memory). Folders named
/// for it are tried first; any other with the same id is read to compare its identity.
pub fn find(reference: &ModelRef) -> Result<ModelPackage, LibraryError> {
    let folders = search_folders();
    let mut candidates: Vec<PathBuf> = Vec::new();
    for folder in &folders {
        let named = folder.join(reference.folder_name()).join("model.toml");
        if named.is_file() {
            candidates.push(named);
        }
    }
    for folder in &folders {
        for manifest in manifests_in(folder) {
            if candidates.contains(&manifest) {
                continue;
            }
            // Only folders with the same id are worth hashing.
            let same_id = files::read_text_bounded(&manifest, super::manifest::MAX_MANIFEST_BYTES)
                .ok()
                .and_then(|t| super::manifest::Manifest::parse(&t).ok())
                .is_some_and(|m| m.model.id == reference.id);
            if same_id {
                candidates.push(manifest);
            }
        }
    }
    for manifest in candidates {
        if let Ok(package) = ModelPackage::read(&manifest, Limits::from_env()) {
            if package.identity == reference.identity && package.manifest.model.id == reference.id {
                return Ok(package);
            }
        }
    }
    Err(LibraryError::NotFound {
        reference: reference.to_string(),
        searched: folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Finds a model by its id alone (any identity; the first that reads, in search order): what
/// `refrain separate` does with a model's plain id.
pub fn find_id(id: &str) -> Result<ModelPackage, LibraryError> {
    let folders = search_folders();
    for folder in &folders {
        for manifest in manifests_in(folder) {
            let same_id = files::read_text_bounded(&manifest, super::manifest::MAX_MANIFEST_BYTES)
                .ok()
                .and_then(|t| super::manifest::Manifest::parse(&t).ok())
                .is_some_and(|m| m.model.id == id);
            if same_id {
                if let Ok(package) = ModelPackage::read(&manifest, Limits::from_env()) {
                    return Ok(package);
                }
            }
        }
    }
    Err(LibraryError::NotFound {
        reference: id.to_owned(),
        searched: folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The folder of the protected model `reference` names ([`super::protection`]): found by its
/// header, without decrypting anything. `None` if no protected model with that id and identity
/// is in the search folders.
pub fn find_protected(reference: &ModelRef) -> Option<PathBuf> {
    let matches = |dir: &Path| {
        super::protection::header(dir)
            .ok()
            .flatten()
            .is_some_and(|h| h.id == reference.id && h.identity == reference.identity)
    };
    let folders = search_folders();
    for folder in &folders {
        let named = folder.join(reference.folder_name());
        if matches(&named) {
            return Some(named);
        }
    }
    for folder in &folders {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            if matches(&entry.path()) {
                return Some(entry.path());
            }
        }
    }
    None
}

/// Imports the protected model in `folder`: its header and encrypted files, copied as they are
/// (nothing is decrypted), under its id and identity.
fn import_protected(
    folder: &Path,
    header: super::protection::Header,
) -> Result<(ModelRef, PathBuf), LibraryError> {
    let reference = ModelRef {
        id: header.id.clone(),
        identity: header.identity.clone(),
    };
    if let Some(found) = find_protected(&reference) {
        return Ok((reference, found));
    }
    let library = models_folder()?;
    let target = library.join(reference.folder_name());
    let fail = |reason: String| LibraryError::Import {
        folder: library.clone(),
        reason,
    };
    std::fs::create_dir_all(&library).map_err(|e| fail(e.to_string()))?;
    let staging = Staging::create(&library, &reference).map_err(|e| fail(e.to_string()))?;
    let names = std::iter::once(super::protection::HEADER.to_owned())
        .chain(header.files.iter().map(|f| format!("{f}.enc")));
    for rel in names {
        let bytes = files::read_bounded(&folder.join(&rel), Limits::from_env().memory)
            .map_err(|e| fail(e.to_string()))?;
        let path = staging.0.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        files::write_atomic(&path, &bytes).map_err(|e| fail(e.to_string()))?;
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging.0, &target).map_err(|e| fail(e.to_string()))?;
    Ok((reference, target))
}

/// Imports the model whose manifest is `manifest` into the models folder (unless it already
/// lives in a folder models are found in) and returns its reference and its folder. What is
/// copied is what was read and hashed, so the copy is the model the reference names.
pub fn import(manifest: &Path) -> Result<(ModelRef, PathBuf), LibraryError> {
    let folder = manifest.parent().unwrap_or(Path::new("."));
    if let Ok(Some(header)) = super::protection::header(folder) {
        return import_protected(folder, header);
    }
    let package = ModelPackage::read(manifest, Limits::from_env())?;
    let reference = ModelRef::of(&package);
    for folder in search_folders() {
        if let Ok(folder) = std::fs::canonicalize(folder) {
            if package.folder.parent() == Some(folder.as_path()) {
                return Ok((reference, package.folder.clone()));
            }
        }
    }
    let library = models_folder()?;
    let target = library.join(reference.folder_name());
    if let Ok(existing) = ModelPackage::read(&target.join("model.toml"), Limits::from_env()) {
        if existing.identity == reference.identity {
            return Ok((reference, target));
        }
    }
    let fail = |reason: String| LibraryError::Import {
        folder: library.clone(),
        reason,
    };
    std::fs::create_dir_all(&library).map_err(|e| fail(e.to_string()))?;
    let staging = Staging::create(&library, &reference).map_err(|e| fail(e.to_string()))?;
    let manifest_bytes = files::read_bounded(manifest, super::manifest::MAX_MANIFEST_BYTES)
        .map_err(|e| fail(e.to_string()))?;
    let mut written: Vec<(String, &[u8])> = vec![
        ("model.toml".to_owned(), &manifest_bytes),
        (package.manifest.model.file.clone(), &package.onnx),
    ];
    // External data by the manifest path it was listed under.
    for f in &package.manifest.files {
        let bytes = package
            .external
            .iter()
            .chain(&package.others)
            .find(|(name, _)| name == &f.path || normalise(name) == normalise(&f.path))
            .map(|(_, b)| &b[..]);
        if let Some(bytes) = bytes {
            written.push((f.path.clone(), bytes));
        }
    }
    for (rel, bytes) in &written {
        let path = staging.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        files::write_atomic(&path, bytes).map_err(|e| fail(e.to_string()))?;
    }
    // The copy must be the model the reference names.
    let copied = ModelPackage::read(&staging.0.join("model.toml"), Limits::from_env())?;
    if copied.identity != reference.identity {
        return Err(fail(format!(
            "the copy's identity {} differs from the original's {}",
            copied.identity, reference.identity
        )));
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging.0, &target).map_err(|e| fail(e.to_string()))?;
    Ok((reference, target))
}

/// A hidden folder an import copies into, removed unless it was renamed into place.
struct Staging(PathBuf);

impl Staging {
    fn create(library: &Path, reference: &ModelRef) -> std::io::Result<Staging> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = library.join(format!(
            ".import-{}-{}-{nanos}",
            reference.folder_name(),
            std::process::id()
        ));
        std::fs::create_dir(&path)?;
        Ok(Staging(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Gone already once renamed into place.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A manifest path without `./` segments, for matching an external-data location to it.
fn normalise(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_paths_are_not_references() {
        let r = ModelRef {
            id: "night-drive".into(),
            identity: "ab".repeat(32),
        };
        assert_eq!(ModelRef::parse(&r.to_state()), Some(r.clone()));
        assert_eq!(
            ModelRef::parse(
                &r.to_state()
                    .to_uppercase()
                    .replace("NIGHT-DRIVE", "night-drive")
            ),
            Some(r)
        );
        for not in [
            "/home/me/models/night/model.toml",
            "night-drive",
            "night drive@abab",
            &format!("night/drive@{}", "ab".repeat(32)),
            &format!("@{}", "ab".repeat(32)),
            &format!("x@{}", "zz".repeat(32)),
        ] {
            assert_eq!(ModelRef::parse(not), None, "{not}");
        }
    }
}
