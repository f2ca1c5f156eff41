//! Signing and verifying tokens: PASETO v4.public (Ed25519) with the issuer's key id (a PASERK
//! `k4.pid`) in the authenticated footer.
//!
//! Two kinds of token are signed, each bound to its kind by PASETO's implicit assertion, so a
//! revocation list can never pass for a licence or the other way round.

use super::claims::HiddenChar;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::Public;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest token Refrain reads; anything bigger is refused before it is parsed. A licence
/// with the fingerprint of a 2-hour track is about 330 KiB.
pub const MAX_TOKEN_BYTES: usize = 512 * 1024;

/// Largest key file Refrain reads (an issuer's secret key file, or a public one to trust):
/// one is a few hundred bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Why a token could not be read, or its signature not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the licence is unreadable: the token is {bytes} bytes; the limit is {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("the licence is unreadable: not a PASETO v4.public token (damaged or truncated)")]
    NotPaseto,
    #[error("the licence is unreadable: the token's footer names no key id")]
    NoKeyId,
    #[error("the licence is signed by a key this machine does not trust ({kid})")]
    UnknownKey { kid: String },
    #[error("signature does not verify: the licence was altered or not signed by its issuer")]
    BadSignature,
}

/// Why an issuer key could not be made, read, written or used to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("key: the issuer name is empty")]
    EmptyIssuer,
    #[error("key: could not generate a key: {reason}")]
    Generate { reason: String },
    #[error("key: the key names no issuer")]
    NoIssuer,
    /// The issuer's name is shown next to every licence it signs, so it must display as it is.
    #[error("key: the issuer name contains {0}; remove it")]
    HiddenCharInIssuer(HiddenChar),
    #[error("key: the key file holds no secret key")]
    NoSecret,
    #[error("key: the secret key is not a k4.secret PASERK")]
    NotSecretPaserk,
    #[error("key: the secret key is damaged")]
    DamagedSecret,
    #[error("key: the secret key does not belong to the public key in the same file")]
    HalvesMismatch,
    #[error("key: the public key is not a k4.public PASERK")]
    NotPublicPaserk,
    #[error("key: the key id {claimed} does not match the public key ({actual})")]
    KidMismatch { claimed: String, actual: String },
    #[error("key: could not sign: {reason}")]
    Sign { reason: String },
    /// Missing, not a regular file, larger than [`MAX_KEY_FILE_BYTES`], or not text.
    #[error("key: {0}")]
    Read(crate::files::ReadError),
    #[error("key: {}: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },
    #[error("key: {reason}")]
    Encode { reason: String },
    #[error("key: {} exists; refusing to overwrite a key", path.display())]
    Exists { path: PathBuf },
    #[error("key: {0}")]
    Write(crate::files::WriteError),
}

/// What a token is. Each kind is bound to its purpose by PASETO's implicit assertion, so no
/// token can pass for another kind, whoever signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A licence (signed by a certified issuer).
    Licence,
    /// An issuer's revocation list (its own key, its own licences).
    Revocations,
    /// A registry certificate of an issuer's key (signed by a root).
    Certificate,
    /// The registry's revocation list (certificates, keys, licences), with its sequence.
    RegistryRevocations,
    /// A freshness receipt: the registry's signed time and revocation sequence for a device.
    Receipt,
    /// A device's public keys, signed by the device itself.
    Device,
    /// The device's pending-allowance book, signed by the device itself.
    Allowance,
}

impl Kind {
    fn implicit(self) -> &'static [u8] {
        match self {
            Kind::Licence => b"refrain-licence-v1",
            Kind::Revocations => b"refrain-revocations-v2",
            Kind::Certificate => b"refrain-certificate-v1",
            Kind::RegistryRevocations => b"refrain-registry-revocations-v1",
            Kind::Receipt => b"refrain-receipt-v1",
            Kind::Device => b"refrain-device-v1",
            Kind::Allowance => b"refrain-allowance-v1",
        }
    }
}

/// The authenticated footer: the signing key's id and, for tokens an issuer signs, the
/// registry certificate of that key (so a licence file carries its whole chain).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
}

/// An issuer's public key, as trusted by this machine.
#[derive(Debug, Clone)]
pub struct IssuerKey {
    /// The rights holder's name; licences signed with the key must name it as `iss`.
    pub issuer: String,
    /// PASERK id (`k4.pid.…`).
    pub kid: String,
    pub public: AsymmetricPublicKey<V4>,
}

/// An issuer's signing key (kept by the rights holder, never by the plugin), or a registry
/// root's, or a device's.
pub struct SigningKey {
    pub issuer: String,
    pub kid: String,
    pub secret: AsymmetricSecretKey<V4>,
    pub public: AsymmetricPublicKey<V4>,
    /// The registry certificate of this key (a token), carried in the footer of everything
    /// it signs. An issuer without one signs licences that no build accepts.
    pub certificate: Option<String>,
}

/// On-disk form of keys (TOML).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub issuer: String,
    pub kid: String,
    pub public: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl KeyFile {
    /// The file's text (TOML).
    pub fn to_toml(&self) -> Result<String, KeyFileError> {
        toml::to_string(self).map_err(|e| KeyFileError::Encode {
            reason: e.to_string(),
        })
    }
}

fn paserk(k: &dyn FormatAsPaserk) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = k.fmt(&mut s);
    s
}

/// The PASERK id of a public key.
pub fn key_id(public: &AsymmetricPublicKey<V4>) -> String {
    paserk(&Id::from(public))
}

impl SigningKey {
    /// A fresh Ed25519 key pair for `issuer`.
    pub fn generate(issuer: &str) -> Result<SigningKey, KeyFileError> {
        if issuer.trim().is_empty() {
            return Err(KeyFileError::EmptyIssuer);
        }
        if let Some(c) = HiddenChar::find(issuer) {
            return Err(KeyFileError::HiddenCharInIssuer(c));
        }
        let pair = AsymmetricKeyPair::<V4>::generate().map_err(|e| KeyFileError::Generate {
            reason: e.to_string(),
        })?;
        Ok(SigningKey {
            issuer: issuer.to_owned(),
            kid: key_id(&pair.public),
            secret: pair.secret,
            public: pair.public,
            certificate: None,
        })
    }

    pub fn issuer_key(&self) -> IssuerKey {
        IssuerKey {
            issuer: self.issuer.clone(),
            kid: self.kid.clone(),
            public: self.public.clone(),
        }
    }

    pub fn to_file(&self) -> KeyFile {
        KeyFile {
            issuer: self.issuer.clone(),
            kid: self.kid.clone(),
            public: paserk(&self.public),
            secret: Some(paserk(&self.secret)),
        }
    }

    pub fn from_file(f: &KeyFile) -> Result<SigningKey, KeyFileError> {
        let public = IssuerKey::from_file(f)?;
        let secret = f.secret.as_deref().ok_or(KeyFileError::NoSecret)?;
        let secret = AsymmetricSecretKey::<V4>::try_from(secret)
            .map_err(|_| KeyFileError::NotSecretPaserk)?;
        let derived = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| KeyFileError::DamagedSecret)?;
        if derived.as_bytes() != public.public.as_bytes() {
            return Err(KeyFileError::HalvesMismatch);
        }
        Ok(SigningKey {
            issuer: public.issuer,
            kid: public.kid,
            secret,
            public: public.public,
            certificate: None,
        })
    }

    /// This key with its registry certificate, carried by everything it signs from now on.
    pub fn with_certificate(mut self, certificate: &str) -> SigningKey {
        self.certificate = Some(certificate.trim().to_owned());
        self
    }

    /// Signs `payload` (JSON) as a token of `kind`.
    pub fn sign(&self, kind: Kind, payload: &[u8]) -> Result<String, KeyFileError> {
        let cert = match kind {
            Kind::Licence | Kind::Revocations => self.certificate.clone(),
            _ => None,
        };
        let footer = serde_json::to_vec(&Footer {
            kid: self.kid.clone(),
            cert,
        })
        .map_err(|e| KeyFileError::Sign {
            reason: e.to_string(),
        })?;
        PublicToken::sign(&self.secret, payload, Some(&footer), Some(kind.implicit())).map_err(
            |e| KeyFileError::Sign {
                reason: e.to_string(),
            },
        )
    }
}

impl IssuerKey {
    pub fn to_file(&self) -> KeyFile {
        KeyFile {
            issuer: self.issuer.clone(),
            kid: self.kid.clone(),
            public: paserk(&self.public),
            secret: None,
        }
    }

    pub fn from_file(f: &KeyFile) -> Result<IssuerKey, KeyFileError> {
        if f.issuer.trim().is_empty() {
            return Err(KeyFileError::NoIssuer);
        }
        if let Some(c) = HiddenChar::find(&f.issuer) {
            return Err(KeyFileError::HiddenCharInIssuer(c));
        }
        let public = AsymmetricPublicKey::<V4>::try_from(f.public.as_str())
            .map_err(|_| KeyFileError::NotPublicPaserk)?;
        let kid = key_id(&public);
        if kid != f.kid {
            return Err(KeyFileError::KidMismatch {
                claimed: f.kid.clone(),
                actual: kid,
            });
        }
        Ok(IssuerKey {
            issuer: f.issuer.clone(),
            kid,
            public,
        })
    }
}

/// A token split into its parts without trusting anything in it.
pub struct Unverified {
    token: UntrustedToken<Public, V4>,
    /// The key id named in the footer.
    pub kid: String,
    /// The signing key's registry certificate, from the footer (issuer tokens).
    pub cert: Option<String>,
}

/// Parses the token's structure and reads the key id. Nothing here is trusted yet.
pub fn parse(token: &str) -> Result<Unverified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            bytes: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let token = token.trim();
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::NotPaseto)?;
    let footer: Footer =
        serde_json::from_slice(untrusted.untrusted_footer()).map_err(|_| TokenError::NoKeyId)?;
    Ok(Unverified {
        token: untrusted,
        kid: footer.kid,
        cert: footer.cert,
    })
}

/// Parses `token_text`, finds the key its footer names among `keys` and verifies the
/// signature for `kind`. Returns the key and the authenticated payload.
pub fn verify_signed<'k>(
    token_text: &str,
    keys: &'k [IssuerKey],
    kind: Kind,
) -> Result<(&'k IssuerKey, Vec<u8>), TokenError> {
    let untrusted = parse(token_text)?;
    let key = keys
        .iter()
        .find(|k| k.kid == untrusted.kid)
        .ok_or_else(|| TokenError::UnknownKey {
            kid: untrusted.kid.clone(),
        })?;
    Ok((key, untrusted.verify(key, kind)?))
}

impl Unverified {
    /// The payload, unverified: only for showing what a token claims.
    pub fn untrusted_payload(&self) -> &[u8] {
        self.token.untrusted_payload()
    }

    /// Checks the signature with `key` (which must be the key named in the footer) and returns
    /// the authenticated payload.
    pub fn verify(&self, key: &IssuerKey, kind: Kind) -> Result<Vec<u8>, TokenError> {
        if key.kid != self.kid {
            return Err(TokenError::UnknownKey {
                kid: self.kid.clone(),
            });
        }
        let trusted = PublicToken::verify(&key.public, &self.token, None, Some(kind.implicit()))
            .map_err(|_| TokenError::BadSignature)?;
        Ok(trusted.payload().as_bytes().to_vec())
    }
}
