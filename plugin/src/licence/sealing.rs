//! Content keys sealed to devices: how a protected model's key travels inside its licence.
//!
//! A protected model's files are encrypted with a random 32-byte content key
//! ([`crate::models::protection`]). The rights holder seals that key to each licensee device's
//! X25519 key with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) and the sealed keys go into the signed licence. The HPKE `info` binds a
//! sealed key to its purpose and the model's identity, the AAD to the device id: a key sealed
//! for one model or one device opens nothing else.

use orion::hazardous::hpke::{ModeBase, DHKEM_X25519_SHA256_CHACHA20};
use orion::hazardous::kem::x25519_hkdf_sha256::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

type Hpke = ModeBase<DHKEM_X25519_SHA256_CHACHA20>;

/// Length of a content key.
pub const CONTENT_KEY_BYTES: usize = 32;
/// ChaCha20-Poly1305's tag.
const TAG_BYTES: usize = 16;

/// A protected model's content key, sealed to one device (a licence claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    /// The device it opens on.
    pub device: String,
    /// The identity of the model it decrypts.
    pub model: String,
    /// The HPKE encapsulated key (hex, 32 bytes).
    pub enc: String,
    /// The sealed content key (hex, 48 bytes: key and tag).
    pub sealed: String,
}

/// Why a content key could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the device's X25519 key is not 32 bytes of hex")]
    DeviceKey,
    #[error("the sealed key for model {model} is damaged (not the hex of an HPKE encapsulation and a sealed 32-byte key)")]
    Damaged { model: String },
    #[error("the sealed key for model {model} does not open on device {device}: it was sealed for another device or model, or altered")]
    DoesNotOpen { model: String, device: String },
    #[error("could not seal the content key: {reason}")]
    Seal { reason: String },
}

fn info(model: &str) -> Vec<u8> {
    format!("refrain content key v1\0{model}").into_bytes()
}

/// Seals `key` for the model with identity `model` to the device `device_id` whose X25519
/// public key is `device_x25519` (hex).
pub fn seal(
    key: &[u8; CONTENT_KEY_BYTES],
    model: &str,
    device_id: &str,
    device_x25519: &str,
) -> Result<SealedKey, SealError> {
    let public: [u8; 32] = hex::decode(device_x25519)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SealError::DeviceKey)?;
    let public = PublicKey::from(public);
    let mut out = [0u8; CONTENT_KEY_BYTES + TAG_BYTES];
    let enc = Hpke::base_seal(&public, &info(model), key, device_id.as_bytes(), &mut out).map_err(
        |e| SealError::Seal {
            reason: e.to_string(),
        },
    )?;
    Ok(SealedKey {
        device: device_id.to_owned(),
        model: model.to_owned(),
        enc: hex::encode(enc.as_ref()),
        sealed: hex::encode(out),
    })
}

/// Opens `sealed` with this device's X25519 secret.
pub fn open(
    sealed: &SealedKey,
    device_id: &str,
    x25519_secret: &[u8; 32],
) -> Result<[u8; CONTENT_KEY_BYTES], SealError> {
    let damaged = || SealError::Damaged {
        model: sealed.model.clone(),
    };
    let enc: [u8; 32] = hex::decode(&sealed.enc)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(damaged)?;
    let ct = hex::decode(&sealed.sealed)
        .ok()
        .filter(|b| b.len() == CONTENT_KEY_BYTES + TAG_BYTES)
        .ok_or_else(damaged)?;
    let secret = PrivateKey::from(*x25519_secret);
    let mut key = [0u8; CONTENT_KEY_BYTES];
    Hpke::base_open(
        &PublicKey::from(enc),
        &secret,
        &info(&sealed.model),
        &ct,
        device_id.as_bytes(),
        &mut key,
    )
    .map_err(|_| SealError::DoesNotOpen {
        model: sealed.model.clone(),
        device: device_id.to_owned(),
    })?;
    Ok(key)
}

/// The X25519 public key (hex) of a device secret, as HPKE derives it.
pub fn public_of(x25519_secret: &[u8; 32]) -> Result<[u8; 32], SealError> {
    let secret = PrivateKey::from(*x25519_secret);
    let public = PublicKey::try_from(&secret).map_err(|e| SealError::Seal {
        reason: e.to_string(),
    })?;
    let mut out = [0u8; 32];
    out.copy_from_slice(public.as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_on_its_device_for_its_model() {
        let secret = [7u8; 32];
        let other = [9u8; 32];
        let public = hex::encode(public_of(&secret).unwrap());
        let key = [42u8; 32];
        let s = seal(&key, "model-a", "dev-1", &public).unwrap();
        assert_eq!(open(&s, "dev-1", &secret).unwrap(), key);
        // Another device's secret, another device id, another model, an edited byte.
        assert!(open(&s, "dev-1", &other).is_err());
        assert!(open(&s, "dev-2", &secret).is_err());
        let moved = SealedKey {
            model: "model-b".into(),
            ..s.clone()
        };
        assert!(open(&moved, "dev-1", &secret).is_err());
        let mut edited = s.clone();
        edited.sealed.replace_range(0..2, "00");
        assert!(edited == s || open(&edited, "dev-1", &secret).is_err());
    }
}
