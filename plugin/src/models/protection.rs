//! Protected models: a rights holder's model (an artist's voice, a label's separator) whose
//! every file is encrypted, so it cannot be loaded without a licence, whatever is done to its
//! folder.
//!
//! `refrain model protect` turns a model folder into:
//!
//! ```text
//! protected.toml      what the folder is: format, model id and name, its identity (one hash
//!                     over the plaintext manifest and files), what a licence must allow, and
//!                     the encrypted files
//! model.toml.enc      the manifest, encrypted
//! <file>.enc          each file the manifest lists (weights, an RVC index), encrypted
//! ```
//!
//! Each file is XChaCha20-Poly1305 with the model's random 32-byte content key, a random
//! 24-byte nonce in front, and the format, the identity and the file's own name as associated
//! data: an altered, swapped or renamed file does not decrypt. The content key travels only
//! inside licences, sealed to the licensee's devices ([`crate::licence::sealing`]). Opening
//! decrypts into memory, then checks what the plaintext says exactly as for a plain model
//! ([`ModelPackage::assemble`]: every file's sha256, the graph scan, the memory limit) and that
//! its identity is the one the header and the licence name. Nothing decrypted touches the disk.
//!
//! `protected.toml` is plaintext so a licence can be found before anything is decrypted; it
//! decides nothing: editing it changes no byte that decrypts, and the identity it claims must
//! match the plaintext's.

use super::manifest::Manifest;
use super::package::{Limits, ModelPackage, PackageError};
use crate::files::{self, ReadError};
use orion::hazardous::aead::xchacha20poly1305::{Nonce, SecretKey, XChaCha20Poly1305};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The header's file name.
pub const HEADER: &str = "protected.toml";

/// The format this build writes and reads.
pub const FORMAT: &str = "refrain-protected-v1";

/// Largest header Refrain reads.
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// What `protected.toml` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    /// The model's id (the manifest's), for messages and licences.
    pub id: String,
    pub name: String,
    /// The plaintext model's identity: what licences name.
    pub identity: String,
    /// The model carries an artist's voice (a licence must allow `cover`); otherwise it is a
    /// remix model (`remix`).
    pub voice: bool,
    /// The plaintext files, the manifest first; each is stored as `<path>.enc`.
    pub files: Vec<String>,
}

/// A protected model's content key as its rights holder keeps it (`<name>.content-key.toml`,
/// mode 0600), for `refrain licence issue --model-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub id: String,
    pub identity: String,
    /// Hex, 32 bytes.
    pub key: String,
}

impl KeyFile {
    /// Writes a new key file (never over an existing file), readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), ProtectionError> {
        let text = toml::to_string(self).map_err(|e| ProtectionError::Crypto(e.to_string()))?;
        files::write_new(path, text.as_bytes(), 0o600).map_err(|e| ProtectionError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads a key file: the model's identity and its key.
    pub fn read(path: &Path) -> Result<(String, [u8; 32]), ProtectionError> {
        let text =
            files::read_text_bounded(path, 16 * 1024).map_err(|source| ProtectionError::Read {
                path: path.to_owned(),
                source,
            })?;
        let bad = |reason: String| ProtectionError::Header {
            path: path.to_owned(),
            reason,
        };
        let file: KeyFile = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
        let key: [u8; 32] = hex::decode(&file.key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the key is not 32 bytes of hex".into()))?;
        Ok((file.identity, key))
    }
}

/// Why a model could not be protected or opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtectionError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: ReadError },
    #[error("protected model {}: its header is not valid: {reason}", path.display())]
    Header { path: PathBuf, reason: String },
    #[error("protected model `{id}`: {} does not decrypt with the licence's key (altered, swapped, or from another model)", path.display())]
    Decrypt { id: String, path: PathBuf },
    #[error("protected model `{id}`: the decrypted model's identity is {actual}, but its header says {claimed} (the folder was tampered with)")]
    Identity {
        id: String,
        claimed: String,
        actual: String,
    },
    #[error("protected model: {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("protected model: {0}")]
    Crypto(String),
    #[error("{} is already a protected model", path.display())]
    AlreadyProtected { path: PathBuf },
}

fn associated_data(identity: &str, path: &str) -> Vec<u8> {
    format!("{FORMAT}\0{identity}\0{path}").into_bytes()
}

/// A fresh random content key.
pub fn content_key() -> Result<[u8; 32], ProtectionError> {
    let key = SecretKey::generate().map_err(|e| ProtectionError::Crypto(e.to_string()))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(key.unprotected_as_ref());
    Ok(out)
}

fn encrypt(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, ProtectionError> {
    let crypto = |e: orion::errors::UnknownCryptoError| ProtectionError::Crypto(e.to_string());
    let sk = SecretKey::try_from(&key[..]).map_err(crypto)?;
    let nonce = Nonce::generate().map_err(crypto)?;
    let mut out = vec![0u8; NONCE_BYTES + plain.len() + TAG_BYTES];
    out[..NONCE_BYTES].copy_from_slice(nonce.as_ref());
    XChaCha20Poly1305::seal(&sk, &nonce, plain, Some(aad), &mut out[NONCE_BYTES..])
        .map_err(|e| ProtectionError::Crypto(e.to_string()))?;
    Ok(out)
}

/// Decrypts in place (no second buffer the size of the weights), then hands the plaintext over
/// in the shared form the package keeps.
fn decrypt(key: &[u8; 32], aad: &[u8], mut sealed: Vec<u8>) -> Option<Arc<[u8]>> {
    use orion::hazardous::aead::xchacha20poly1305::Tag;
    let len = sealed.len();
    if len < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let sk = SecretKey::try_from(&key[..]).ok()?;
    let nonce = Nonce::try_from(&sealed[..NONCE_BYTES]).ok()?;
    let tag = Tag::try_from(&sealed[len - TAG_BYTES..]).ok()?;
    let body = &mut sealed[NONCE_BYTES..len - TAG_BYTES];
    XChaCha20Poly1305::open_inplace(&sk, &nonce, &tag, Some(aad), body).ok()?;
    Some(Arc::from(&sealed[NONCE_BYTES..len - TAG_BYTES]))
}

/// The header of the protected model in `folder`, if it is one (`None`: no `protected.toml`).
pub fn header(folder: &Path) -> Result<Option<Header>, ProtectionError> {
    let path = folder.join(HEADER);
    let text = match files::read_text_bounded(&path, MAX_HEADER_BYTES) {
        Ok(t) => t,
        Err(ReadError::Missing { .. }) => return Ok(None),
        Err(source) => return Err(ProtectionError::Read { path, source }),
    };
    let bad = |reason: String| ProtectionError::Header {
        path: path.clone(),
        reason,
    };
    let header: Header = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    if header.format != FORMAT {
        return Err(bad(format!(
            "format `{}`; this build reads `{FORMAT}`",
            header.format
        )));
    }
    if header.files.first().map(String::as_str) != Some("model.toml") {
        return Err(bad("its first file must be model.toml".into()));
    }
    for f in &header.files {
        let safe = !f.is_empty()
            && !f.starts_with('/')
            && !f.contains('\\')
            && f.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe {
            return Err(bad(format!(
                "`{f}` is not a path inside the model's folder"
            )));
        }
    }
    if header.identity.len() != 64 || !header.identity.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("its identity is not a sha256".into()));
    }
    Ok(Some(header))
}

/// Encrypts the plain model whose manifest is `manifest` into the folder `out` (made; it must
/// not hold a model already) with a fresh content key. Returns the header and the key (the
/// rights holder keeps it, and seals it into licences).
pub fn protect(manifest: &Path, out: &Path) -> Result<(Header, [u8; 32]), ProtectionError> {
    let package = ModelPackage::read(manifest, Limits::from_env())?;
    if out.join(HEADER).exists() || out.join("model.toml").exists() {
        return Err(ProtectionError::AlreadyProtected {
            path: out.to_owned(),
        });
    }
    let write_err = |path: &Path, e: String| ProtectionError::Write {
        path: path.to_owned(),
        reason: e,
    };
    std::fs::create_dir_all(out).map_err(|e| write_err(out, e.to_string()))?;
    let key = content_key()?;
    let folder = &package.folder;
    let mut names = vec!["model.toml".to_owned(), package.manifest.model.file.clone()];
    names.extend(package.manifest.files.iter().map(|f| f.path.clone()));
    for name in &names {
        let plain = files::read_bounded(&folder.join(name), u64::MAX).map_err(|source| {
            ProtectionError::Read {
                path: folder.join(name),
                source,
            }
        })?;
        let sealed = encrypt(&key, &associated_data(&package.identity, name), &plain)?;
        let path = out.join(format!("{name}.enc"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string()))?;
        }
        files::write_atomic(&path, &sealed).map_err(|e| write_err(&path, e.to_string()))?;
    }
    let header = Header {
        format: FORMAT.into(),
        id: package.manifest.model.id.clone(),
        name: package.manifest.model.name.clone(),
        identity: package.identity.clone(),
        voice: package.manifest.rights.licensed_voice,
        files: names,
    };
    let text = toml::to_string(&header).map_err(|e| ProtectionError::Crypto(e.to_string()))?;
    let path = out.join(HEADER);
    files::write_atomic(&path, text.as_bytes()).map_err(|e| write_err(&path, e.to_string()))?;
    Ok((header, key))
}

/// Decrypts the protected model in `folder` with `key` into memory and checks it as a plain
/// model is checked, and that it is the model `header` (read once, before the licence was
/// checked against it) names: a header swapped since then changes nothing.
pub fn open(
    folder: &Path,
    header: &Header,
    key: &[u8; 32],
    limits: Limits,
) -> Result<ModelPackage, ProtectionError> {
    let header = header.clone();
    let folder = std::fs::canonicalize(folder).map_err(|e| ProtectionError::Read {
        path: folder.to_owned(),
        source: ReadError::Io {
            path: folder.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let mut budget = limits.memory;
    let id = header.id.clone();
    let identity = header.identity.clone();
    let mut read = |name: &str| -> Result<Arc<[u8]>, ProtectionError> {
        let path = folder.join(format!("{name}.enc"));
        let sealed = files::read_bounded(&path, budget.saturating_add(64)).map_err(|source| {
            ProtectionError::Read {
                path: path.clone(),
                source,
            }
        })?;
        budget = budget.saturating_sub(sealed.len() as u64);
        decrypt(key, &associated_data(&identity, name), sealed).ok_or(ProtectionError::Decrypt {
            id: id.clone(),
            path,
        })
    };
    let manifest_bytes = read("model.toml")?;
    let manifest_path = folder.join("model.toml");
    let manifest: Manifest = ModelPackage::parse_manifest(&manifest_bytes, &manifest_path)?;
    // Only the files the header lists were encrypted for this model.
    let mut failure = None;
    let mut read_file = |rel: &str, sha: &str| -> Result<Arc<[u8]>, PackageError> {
        let path = folder.join(rel);
        if !header.files.iter().any(|f| f == rel) {
            return Err(PackageError::Read {
                path: path.display().to_string(),
                source: ReadError::Missing { path },
            });
        }
        let bytes = match read(rel) {
            Ok(b) => b,
            Err(e) => {
                let shown = PackageError::Read {
                    path: path.display().to_string(),
                    source: ReadError::Io {
                        path: path.clone(),
                        reason: e.to_string(),
                    },
                };
                failure = Some(e);
                return Err(shown);
            }
        };
        super::package::check_sha256(&path, &bytes, sha)?;
        Ok(bytes)
    };
    let assembled = ModelPackage::assemble(
        folder.clone(),
        &manifest_bytes,
        manifest,
        limits,
        &mut read_file,
    );
    let mut package = match assembled {
        Ok(p) => p,
        Err(e) => return Err(failure.unwrap_or(ProtectionError::Package(e))),
    };
    if package.identity != header.identity {
        return Err(ProtectionError::Identity {
            id: header.id,
            claimed: header.identity,
            actual: package.identity,
        });
    }
    package.protected = true;
    Ok(package)
}
