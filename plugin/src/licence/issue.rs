//! The rights holder's side: keys, issuing licences from a TOML description, revocation.
//!
//! ```toml
//! licensee = "DJ Example"
//! # licence_id = "…"          (default: a random UUID)
//! # not_before = "2026-11-21T00:00:00Z"   (default: now)
//! valid_days = 365            # or: expires = "2027-11-21T00:00:00Z"
//! grace_days = 14
//! uses = ["remix", "live"]
//! territories = ["GB", "IE"]  # default ["WORLD"]
//! licensee_territory = "GB"   # where the licensee is; needed unless worldwide
//! # max_offline_days = 30     (needs a registry freshness receipt this recent)
//!
//! [track]
//! isrc = "GB-AYE-26-00001"
//! title = "Northern Lights"
//! artists = ["Aurora Vale"]
//! release = "Northern Lights (Single)"
//! audio = "northern-lights.wav"   # the reference fingerprint is computed from it;
//!                                 # a remix licence needs it (or `--audio`); in a cover
//!                                 # licence it is the backing track the voice must sing
//!                                 # over (the plugin's Backing sidechain)
//!
//! [[models]]
//! manifest = "models/remix/model.toml"   # or: id = "…" and sha256 = "…"
//!
//! [[split]]
//! party = "Aurora Vale"
//! role = "artist"
//! share_percent = 60.0          # or share_bp = 6000
//! ```
//!
//! Relative paths are relative to the description file. The devices the licence is bound to
//! come from `refrain device export` files (`--device`), and the issuer's key must carry its
//! registry certificate (`--cert`): the certificate names the issuer.

use super::certificate::Certificate;
use super::claims::{self, ClaimError, Claims, ModelGrant, Share, Track, Use, AUDIENCE};
use super::fingerprint;
use super::revocation::RevocationList;
use super::token::{self, KeyFile, KeyFileError, Kind, SigningKey};
use crate::models::manifest::ManifestError;
use crate::models::package::{Limits, ModelPackage};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why a licence description cannot become a licence's claims. Each message names the field
/// or the file at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("licence description: {reason}")]
    Syntax { reason: String },
    #[error("licence description: give exactly one of `expires` and `valid_days`")]
    Expiry,
    #[error(
        "licence description: unknown use `{value}` (cover, remix, live, stem-export, commercial)"
    )]
    UnknownUse { value: String },
    #[error("licence description: a protected model: {reason}")]
    Protected { reason: String },
    #[error(
        "licence description: each [[models]] needs `manifest`, `protected`, or `id` and `sha256`"
    )]
    ModelEntry,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("licence description: the model: {0}")]
    Model(#[from] crate::models::package::PackageError),
    #[error("licence description: split `{party}`: give exactly one of `share_bp` and `share_percent` (0 to 100)")]
    Share { party: String },
    /// `reason` names the file (it comes from [`crate::media::MediaError`]).
    #[error("licence description: the licensed recording: {reason}")]
    Audio { path: PathBuf, reason: String },
    #[error("licence description: cannot fingerprint {}: {reason}", path.display())]
    Fingerprint { path: PathBuf, reason: String },
    /// Without the reference fingerprint a remix licence would match any recording.
    #[error("licence description: a remix licence needs the licensed recording: give `track.audio` or `--audio`")]
    RemixWithoutRecording,
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
    /// The description file: missing, not a regular file, larger than [`MAX_SPEC_BYTES`], or
    /// not text.
    #[error("licence description: {0}")]
    Read(crate::files::ReadError),
}

/// Largest licence description Refrain reads; one with every field filled in is a few KiB.
pub const MAX_SPEC_BYTES: u64 = 256 * 1024;

/// Why a licence or a revocation list could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
    #[error("the licence names issuer `{claimed}` but is signed by the key of `{key_issuer}`")]
    IssuerMismatch { claimed: String, key_issuer: String },
    /// A revocation list withdraws only the key that signs it; another key's withdrawal would
    /// be ignored wherever the list is installed.
    #[error("a revocation list withdraws only the key that signs it: {kid} is not this key ({own}); sign its withdrawal with that key")]
    OtherKey { kid: String, own: String },
    #[error("the licence's contents cannot be encoded: {reason}")]
    Encode { reason: String },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(
        "the issuer key {kid} has no registry certificate: no build accepts what it signs \
         (send its public key file to the registry: refrain registry certify; then sign with \
         --cert)"
    )]
    NoCertificate { kid: String },
    #[error(
        "the certificate does not belong to this key: it certifies {certified}, the key is {kid}"
    )]
    CertificateForOtherKey { certified: String, kid: String },
    #[error("the certificate is unreadable: {reason}")]
    Certificate { reason: String },
    #[error("a content key for model {identity}, which the licence does not name: add the protected model to [[models]]")]
    KeyForOtherModel { identity: String },
    #[error(
        "`{party}` is not certified for track {isrc}: its certificate covers {scope} (ask the \
         registry to extend the scope)"
    )]
    OutOfScope {
        party: String,
        isrc: String,
        scope: String,
    },
}

/// A licence description, as a rights holder writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceSpec {
    pub licensee: String,
    #[serde(default)]
    pub licence_id: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub valid_days: Option<u32>,
    #[serde(default)]
    pub grace_days: u32,
    pub uses: Vec<String>,
    #[serde(default = "world")]
    pub territories: Vec<String>,
    /// Where the licensee is (ISO 3166-1 alpha-2), as the issuer attests it; a licence not
    /// worldwide needs it.
    #[serde(default)]
    pub licensee_territory: Option<String>,
    /// Days the licence works without a fresh registry receipt (none: no freshness needed).
    #[serde(default)]
    pub max_offline_days: Option<u32>,
    pub track: TrackSpec,
    pub models: Vec<ModelSpec>,
    pub split: Vec<ShareSpec>,
}

fn world() -> Vec<String> {
    vec!["WORLD".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackSpec {
    pub isrc: String,
    pub title: String,
    pub artists: Vec<String>,
    pub release: String,
    #[serde(default)]
    pub iswc: Option<String>,
    /// The licensed recording (WAV), for the reference fingerprint.
    #[serde(default)]
    pub audio: Option<String>,
    /// A label's stem pack: each stem supplied for the remix (WAV), for a reference each.
    #[serde(default)]
    pub stems: Vec<StemSpec>,
}

/// One stem of a stem pack (`[[track.stems]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemSpec {
    pub name: String,
    /// The stem's audio (WAV), relative to the description.
    pub audio: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default)]
    pub manifest: Option<String>,
    /// A protected model's folder (`refrain model protect`): its header names its id and
    /// identity.
    #[serde(default)]
    pub protected: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSpec {
    pub party: String,
    pub role: String,
    #[serde(default)]
    pub ipi: Option<String>,
    #[serde(default)]
    pub share_bp: Option<u32>,
    #[serde(default)]
    pub share_percent: Option<f64>,
}

impl LicenceSpec {
    /// Reads a description file (a regular file of at most [`MAX_SPEC_BYTES`]) and parses it.
    pub fn load(path: &Path) -> Result<LicenceSpec, SpecError> {
        let text =
            crate::files::read_text_bounded(path, MAX_SPEC_BYTES).map_err(SpecError::Read)?;
        LicenceSpec::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<LicenceSpec, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::Syntax {
            reason: e.to_string(),
        })
    }

    /// Turns the description into claims (validated). `base` resolves relative paths;
    /// `audio` overrides `track.audio`; `now` is the issue time.
    pub fn to_claims(
        &self,
        issuer: &str,
        devices: &[String],
        base: &Path,
        audio: Option<&Path>,
        now: i64,
    ) -> Result<Claims, SpecError> {
        let nbf = match &self.not_before {
            Some(t) => claims::parse_time("not_before", t)?.unix_timestamp(),
            None => now,
        };
        let exp = match (&self.expires, self.valid_days) {
            (Some(t), None) => claims::parse_time("expires", t)?.unix_timestamp(),
            (None, Some(d)) => nbf + i64::from(d) * 86_400,
            _ => return Err(SpecError::Expiry),
        };
        let uses = self
            .uses
            .iter()
            .map(|u| Use::parse(u).ok_or_else(|| SpecError::UnknownUse { value: u.clone() }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut models = Vec::new();
        for m in &self.models {
            models.push(match (&m.manifest, &m.id, &m.sha256) {
                (Some(path), None, None) if m.protected.is_none() => {
                    // The model is read whole and checked: the licence names its identity.
                    let package = ModelPackage::read(&base.join(path), Limits::from_env())?;
                    ModelGrant {
                        id: package.manifest.model.id.clone(),
                        sha256: package.identity.clone(),
                    }
                }
                (None, None, None) if m.protected.is_some() => {
                    let folder = base.join(m.protected.as_deref().unwrap_or_default());
                    let header = crate::models::protection::header(&folder)
                        .map_err(|e| SpecError::Protected {
                            reason: e.to_string(),
                        })?
                        .ok_or_else(|| SpecError::Protected {
                            reason: format!("{} is not a protected model", folder.display()),
                        })?;
                    ModelGrant {
                        id: header.id,
                        sha256: header.identity,
                    }
                }
                (None, Some(id), Some(sha)) if m.protected.is_none() => ModelGrant {
                    id: id.clone(),
                    sha256: sha.to_ascii_lowercase(),
                },
                _ => return Err(SpecError::ModelEntry),
            });
        }
        let mut split = Vec::new();
        for s in &self.split {
            let bp = match (s.share_bp, s.share_percent) {
                (Some(bp), None) => bp,
                (None, Some(p)) if (0.0..=100.0).contains(&p) => (p * 100.0).round() as u32,
                _ => {
                    return Err(SpecError::Share {
                        party: s.party.clone(),
                    })
                }
            };
            split.push(Share {
                party: s.party.clone(),
                role: s.role.clone(),
                ipi: s.ipi.clone(),
                share_bp: bp,
            });
        }
        let audio_path = audio
            .map(Path::to_path_buf)
            .or_else(|| self.track.audio.as_ref().map(|a| base.join(a)));
        if audio_path.is_none() && uses.contains(&Use::Remix) {
            return Err(SpecError::RemixWithoutRecording);
        }
        let fingerprint = match audio_path {
            Some(p) => {
                let (channels, rate) =
                    crate::media::read_wav(&p).map_err(|e| SpecError::Audio {
                        path: p.clone(),
                        reason: e.to_string(),
                    })?;
                let fp = fingerprint::compute(&channels, rate).map_err(|reason| {
                    SpecError::Fingerprint {
                        path: p.clone(),
                        reason,
                    }
                })?;
                // A stereo recording: each channel's own reference too.
                let sides = match channels.as_slice() {
                    [l, r] => {
                        let one = |c: &Vec<f32>| {
                            fingerprint::compute(std::slice::from_ref(c), rate)
                                .map(|f| fingerprint::encode(&f))
                                .map_err(|reason| SpecError::Fingerprint {
                                    path: p.clone(),
                                    reason,
                                })
                        };
                        Some((one(l)?, one(r)?))
                    }
                    _ => None,
                };
                // The downmix's tuning: the matcher estimates the input's on its downmix too.
                let n = channels.first().map_or(0, Vec::len);
                let mono: Vec<f32> = (0..n)
                    .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() / channels.len() as f32)
                    .collect();
                let tuning = super::tuning::tuning_cents(&mono, rate)
                    .map(|t| t.round().clamp(-50.0, 50.0) as i8);
                Some((
                    fingerprint::encode(&fp),
                    fingerprint::loudness_dbfs(&channels, rate),
                    tuning,
                    sides,
                ))
            }
            None => None,
        };
        let (fingerprint, loudness_dbfs, tuning_cents, sides) = match fingerprint {
            Some((f, l, t, s)) => (Some(f), l, t, s),
            None => (None, None, None, None),
        };
        let (fingerprint_left, fingerprint_right) = sides.unzip();
        let mut stems = Vec::new();
        for stem in &self.track.stems {
            let p = base.join(&stem.audio);
            let (channels, rate) = crate::media::read_wav(&p).map_err(|e| SpecError::Audio {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            let fp = fingerprint::compute(&channels, rate)
                .map_err(|reason| SpecError::Fingerprint { path: p, reason })?;
            stems.push(claims::StemReference {
                name: stem.name.clone(),
                fingerprint: fingerprint::encode(&fp),
            });
        }
        let claims = Claims {
            iss: issuer.to_owned(),
            sub: self.licensee.clone(),
            aud: AUDIENCE.to_owned(),
            jti: self
                .licence_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            iat: claims::format_time(now),
            nbf: claims::format_time(nbf),
            exp: claims::format_time(exp),
            grace_days: self.grace_days,
            track: Track {
                isrc: claims::normalise_isrc(&self.track.isrc),
                title: self.track.title.clone(),
                artists: self.track.artists.clone(),
                release: self.track.release.clone(),
                iswc: self.track.iswc.clone(),
                fingerprint,
                loudness_dbfs,
                tuning_cents,
                fingerprint_left,
                fingerprint_right,
                stems,
            },
            uses,
            models,
            territories: self
                .territories
                .iter()
                .map(|t| t.trim().to_ascii_uppercase())
                .collect(),
            licensee_territory: self
                .licensee_territory
                .as_ref()
                .map(|t| t.trim().to_ascii_uppercase()),
            split,
            devices: devices.to_vec(),
            max_offline_days: self.max_offline_days,
            sealed_keys: Vec::new(),
        };
        claims.validate()?;
        Ok(claims)
    }
}

/// Seals each protected model's content key (`keys`: the model's identity and key) to each of
/// `devices` (id and X25519 public key, hex) into `claims`. A key for a model the licence does
/// not name is refused.
pub fn seal_keys(
    claims: &mut Claims,
    keys: &[(String, [u8; 32])],
    devices: &[(String, String)],
) -> Result<(), SignError> {
    for (identity, key) in keys {
        if !claims.covers_model_identity(identity) {
            return Err(SignError::KeyForOtherModel {
                identity: identity.clone(),
            });
        }
        for (device, x25519) in devices {
            let sealed = super::sealing::seal(key, identity, device, x25519).map_err(|e| {
                SignError::Encode {
                    reason: e.to_string(),
                }
            })?;
            claims.sealed_keys.push(sealed);
        }
    }
    Ok(())
}

/// The certificate `key` carries, read without verifying it (verifiers check it against
/// their roots; this only catches an issuer's mistakes before a licence goes out).
fn carried_certificate(key: &SigningKey) -> Result<Certificate, SignError> {
    let text = key
        .certificate
        .as_deref()
        .ok_or_else(|| SignError::NoCertificate {
            kid: key.kid.clone(),
        })?;
    let untrusted = token::parse(text).map_err(|e| SignError::Certificate {
        reason: e.to_string(),
    })?;
    let cert: Certificate = serde_json::from_slice(untrusted.untrusted_payload()).map_err(|e| {
        SignError::Certificate {
            reason: e.to_string(),
        }
    })?;
    if cert.key != key.issuer_key().to_file().public {
        return Err(SignError::CertificateForOtherKey {
            certified: cert.key,
            kid: key.kid.clone(),
        });
    }
    Ok(cert)
}

/// Signs validated claims as a licence, with the key's certificate in the footer. The issuer
/// named is the certified party, and the track must be in the certificate's scope.
pub fn sign_licence(key: &SigningKey, claims: &Claims) -> Result<String, SignError> {
    claims.validate()?;
    let cert = carried_certificate(key)?;
    if claims.iss != cert.party.name {
        return Err(SignError::IssuerMismatch {
            claimed: claims.iss.clone(),
            key_issuer: cert.party.name.clone(),
        });
    }
    if !cert.covers(claims) {
        return Err(SignError::OutOfScope {
            party: cert.party.name.clone(),
            isrc: claims.track.isrc.clone(),
            scope: cert.describe(),
        });
    }
    let payload = serde_json::to_vec(claims).map_err(|e| SignError::Encode {
        reason: e.to_string(),
    })?;
    Ok(key.sign(Kind::Licence, &payload)?)
}

/// Signs a revocation list. It may withdraw `key` itself and licences `key` signed; naming
/// another key is refused (it would not count).
pub fn sign_revocations(key: &SigningKey, list: &RevocationList) -> Result<String, SignError> {
    let cert = carried_certificate(key)?;
    if list.iss != cert.party.name {
        return Err(SignError::IssuerMismatch {
            claimed: list.iss.clone(),
            key_issuer: cert.party.name.clone(),
        });
    }
    if let Some(kid) = list.revoked_keys.iter().find(|k| **k != key.kid) {
        return Err(SignError::OtherKey {
            kid: kid.clone(),
            own: key.kid.clone(),
        });
    }
    claims::parse_time("iat", &list.iat)?;
    let payload = serde_json::to_vec(list).map_err(|e| SignError::Encode {
        reason: e.to_string(),
    })?;
    Ok(key.sign(Kind::Revocations, &payload)?)
}

/// Reads a key file (TOML): a regular file of at most [`super::token::MAX_KEY_FILE_BYTES`], so
/// a pipe, a device or a huge file is refused at once.
pub fn read_key_file(path: &Path) -> Result<KeyFile, KeyFileError> {
    let text = crate::files::read_text_bounded(path, super::token::MAX_KEY_FILE_BYTES)
        .map_err(KeyFileError::Read)?;
    toml::from_str(&text).map_err(|e| KeyFileError::Syntax {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes a new key file. It never replaces a file (or follows a link) already at `path`, and
/// the secret one is readable by its owner only from the moment it exists.
pub fn write_key_file(path: &Path, key: &KeyFile) -> Result<(), KeyFileError> {
    use crate::files::WriteError;
    let text = key.to_toml()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            KeyFileError::Write(WriteError::Io {
                path: dir.to_owned(),
                reason: e.to_string(),
            })
        })?;
    }
    let mode = if key.secret.is_some() { 0o600 } else { 0o644 };
    crate::files::write_new(path, text.as_bytes(), mode).map_err(|e| match e {
        WriteError::Exists { path } => KeyFileError::Exists { path },
        e => KeyFileError::Write(e),
    })
}
