//! This machine's identity: two key pairs made on first use in the licence folder.
//!
//! - **Ed25519** signs: the device's public-key export (proof that it holds the key), and later
//!   its usage records and provenance manifests.
//! - **X25519** opens: a protected model's content key travels inside the licence, sealed to it.
//!
//! The device id is the hex of the first 16 bytes of SHA-256 of the Ed25519 public key. A
//! licence names the devices it is bound to; a licence copied to another machine does not
//! count there. `refrain device export` writes the public half, signed, for the rights holder
//! (`refrain licence issue --device FILE`).
//!
//! The key file is created exclusively (`O_EXCL`, mode 0600) under a file lock, so two plugin
//! instances starting at once never make two devices or read a half-written key.

use super::token::{self, IssuerKey, KeyFileError, Kind, SigningKey, TokenError};
use crate::files::{self, ReadError, WriteError};
use orion::hazardous::ecc::x25519;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::version4::V4;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest device key file or export Refrain reads.
pub const MAX_DEVICE_FILE_BYTES: u64 = 16 * 1024;

/// Why the device's keys could not be made, read or exported, or an export not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device key: {0}")]
    Read(ReadError),
    #[error("device key: {0}")]
    Write(WriteError),
    #[error("device key: {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("device key: {} is damaged ({reason}); it cannot be repaired: move it away and licences must be issued again to the new device", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("device key: could not generate a key: {reason}")]
    Generate { reason: String },
    #[error("device file: {0}")]
    Token(#[from] TokenError),
    #[error("device file: {reason}")]
    Export { reason: String },
}

impl From<KeyFileError> for DeviceError {
    fn from(e: KeyFileError) -> Self {
        DeviceError::Export {
            reason: e.to_string(),
        }
    }
}

/// The key file (`device/device.toml`, mode 0600).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    id: String,
    /// `k4.secret.…` (Ed25519).
    ed25519_secret: String,
    /// Hex, 32 bytes.
    x25519_secret: String,
}

/// A device's public keys, as its export carries them (signed by its Ed25519 key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePublic {
    pub id: String,
    /// `k4.public.…` (Ed25519).
    pub ed25519: String,
    /// Hex, 32 bytes.
    pub x25519: String,
}

/// This machine's keys.
pub struct Device {
    pub id: String,
    signing: SigningKey,
    x25519_secret: [u8; 32],
    pub x25519_public: [u8; 32],
}

/// The device id of an Ed25519 public key.
pub fn device_id(public: &AsymmetricPublicKey<V4>) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..16])
}

/// The X25519 public key of `secret`, as HPKE (which opens sealed content keys) derives it.
fn x25519_public(secret: &[u8; 32]) -> Result<[u8; 32], DeviceError> {
    super::sealing::public_of(secret).map_err(|e| DeviceError::Generate {
        reason: e.to_string(),
    })
}

impl Device {
    /// The device whose keys are in `dir` (the licence folder's `device/`), made there on first
    /// use.
    pub fn open_or_create(dir: &Path) -> Result<Device, DeviceError> {
        Device::open_or_create_with(dir, |_| {})
    }

    /// [`Device::open_or_create`]; `created` runs with a device made now, while the device
    /// folder is still locked (so what it writes is for this device and no other).
    pub fn open_or_create_with(
        dir: &Path,
        created: impl FnOnce(&Device),
    ) -> Result<Device, DeviceError> {
        let io = |path: &Path, e: std::io::Error| DeviceError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let lock = files::lock_folder(dir).map_err(|(p, e)| io(&p, e))?;
        let path = dir.join("device.toml");
        let device = match files::read_text_bounded(&path, MAX_DEVICE_FILE_BYTES) {
            Ok(text) => Device::parse(&path, &text),
            Err(ReadError::Missing { .. }) => Device::create(&path).inspect(|d| created(d)),
            Err(e) => Err(DeviceError::Read(e)),
        };
        // Dropping the file releases the lock.
        drop(lock);
        device
    }

    fn create(path: &Path) -> Result<Device, DeviceError> {
        let signing = SigningKey::generate("device")?;
        let sk = x25519::PrivateKey::generate().map_err(|e| DeviceError::Generate {
            reason: e.to_string(),
        })?;
        let mut x25519_secret = [0u8; 32];
        x25519_secret.copy_from_slice(sk.unprotected_as_ref());
        let file = DeviceFile {
            id: device_id(&signing.public),
            ed25519_secret: signing.to_file().secret.unwrap_or_default(),
            x25519_secret: hex::encode(x25519_secret),
        };
        let text = toml::to_string(&file).map_err(|e| DeviceError::Generate {
            reason: e.to_string(),
        })?;
        files::write_new(path, text.as_bytes(), 0o600).map_err(DeviceError::Write)?;
        Ok(Device {
            id: file.id,
            signing,
            x25519_public: x25519_public(&x25519_secret)?,
            x25519_secret,
        })
    }

    fn parse(path: &Path, text: &str) -> Result<Device, DeviceError> {
        let damaged = |reason: String| DeviceError::Damaged {
            path: path.to_owned(),
            reason,
        };
        let file: DeviceFile = toml::from_str(text).map_err(|e| damaged(e.message().into()))?;
        let secret = AsymmetricSecretKey::<V4>::try_from(file.ed25519_secret.as_str())
            .map_err(|_| damaged("the Ed25519 key is not a k4.secret PASERK".into()))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| damaged("the Ed25519 key is damaged".into()))?;
        let id = device_id(&public);
        if id != file.id {
            return Err(damaged(format!(
                "its id {} is not its key's ({id})",
                file.id
            )));
        }
        let bytes = hex::decode(&file.x25519_secret)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| damaged("the X25519 key is not 32 bytes of hex".into()))?;
        Ok(Device {
            id,
            signing: SigningKey {
                issuer: "device".into(),
                kid: token::key_id(&public),
                secret,
                public,
                certificate: None,
            },
            x25519_public: x25519_public(&bytes)?,
            x25519_secret: bytes,
        })
    }

    /// The X25519 secret (to open content keys sealed to this device).
    pub fn x25519_secret(&self) -> &[u8; 32] {
        &self.x25519_secret
    }

    /// The public keys.
    pub fn public(&self) -> DevicePublic {
        DevicePublic {
            id: self.id.clone(),
            ed25519: self.signing.issuer_key().to_file().public,
            x25519: hex::encode(self.x25519_public),
        }
    }

    /// The public keys, signed by the device (`refrain device export`).
    pub fn export(&self) -> Result<String, DeviceError> {
        let payload = serde_json::to_vec(&self.public()).map_err(|e| DeviceError::Export {
            reason: e.to_string(),
        })?;
        Ok(self.signing.sign(Kind::Device, &payload)?)
    }

    /// The device's Ed25519 public key, as a token verifier.
    pub fn issuer_key(&self) -> IssuerKey {
        self.signing.issuer_key()
    }

    /// Signs `payload` as a token of `kind` with the device key (receipt requests).
    pub fn sign(&self, kind: Kind, payload: &[u8]) -> Result<String, DeviceError> {
        Ok(self.signing.sign(kind, payload)?)
    }
}

/// Verifies a device export: the keys it carries, signed by its own Ed25519 key, and the id
/// that key gives.
pub fn verify_export(text: &str) -> Result<DevicePublic, DeviceError> {
    let untrusted = token::parse(text)?;
    let claimed: DevicePublic =
        serde_json::from_slice(untrusted.untrusted_payload()).map_err(|e| DeviceError::Export {
            reason: format!("not a device file: {e}"),
        })?;
    let public = AsymmetricPublicKey::<V4>::try_from(claimed.ed25519.as_str()).map_err(|_| {
        DeviceError::Export {
            reason: "its Ed25519 key is not a k4.public PASERK".into(),
        }
    })?;
    let key = IssuerKey {
        issuer: "device".into(),
        kid: token::key_id(&public),
        public,
    };
    let payload = untrusted.verify(&key, Kind::Device)?;
    let public: DevicePublic =
        serde_json::from_slice(&payload).map_err(|e| DeviceError::Export {
            reason: e.to_string(),
        })?;
    let id = device_id(&key.public);
    if public.id != id {
        return Err(DeviceError::Export {
            reason: format!("it names device {} but its key is device {id}", public.id),
        });
    }
    let x = hex::decode(&public.x25519).ok().filter(|b| b.len() == 32);
    if x.is_none() {
        return Err(DeviceError::Export {
            reason: "its X25519 key is not 32 bytes of hex".into(),
        });
    }
    Ok(public)
}

/// Reads and verifies a device export file.
pub fn read_export(path: &Path) -> Result<DevicePublic, DeviceError> {
    let text = files::read_text_bounded(path, MAX_DEVICE_FILE_BYTES).map_err(DeviceError::Read)?;
    verify_export(text.trim())
}
