//! The rights holder's side: keys, issuing licences from a TOML description, revocation.
//!
//! ```toml
//! licensee = "DJ Example"
//! # licence_id = "…"          (default: a random UUID)
//! # not_before = "2026-11-21T00:00:00Z"   (default: now)
//! valid_days = 365            # or: expires = "2027-11-21T00:00:00Z"
//! grace_days = 14
//! uses = ["remix", "live"]
//! territories = ["WORLD"]
//!
//! [track]
//! isrc = "GB-AYE-26-00001"
//! title = "Northern Lights"
//! artists = ["Aurora Vale"]
//! release = "Northern Lights (Single)"
//! audio = "northern-lights.wav"   # the reference fingerprint is computed from it
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
//! Relative paths are relative to the description file.

use super::claims::{self, Claims, ModelGrant, Share, Track, Use, AUDIENCE};
use super::fingerprint;
use super::store::{RevocationList, Store};
use super::token::{Kind, SigningKey};
use super::LicenceError;
use serde::Deserialize;
use std::path::Path;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default)]
    pub manifest: Option<String>,
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

fn spec_err(msg: impl Into<String>) -> LicenceError {
    LicenceError::Payload(msg.into())
}

impl LicenceSpec {
    pub fn from_toml(text: &str) -> Result<LicenceSpec, LicenceError> {
        toml::from_str(text).map_err(|e| spec_err(format!("licence description: {e}")))
    }

    /// Turns the description into claims (validated). `base` resolves relative paths;
    /// `audio` overrides `track.audio`; `now` is the issue time.
    pub fn to_claims(
        &self,
        issuer: &str,
        base: &Path,
        audio: Option<&Path>,
        now: i64,
    ) -> Result<Claims, LicenceError> {
        let nbf = match &self.not_before {
            Some(t) => claims::parse_time("not_before", t)?.unix_timestamp(),
            None => now,
        };
        let exp = match (&self.expires, self.valid_days) {
            (Some(t), None) => claims::parse_time("expires", t)?.unix_timestamp(),
            (None, Some(d)) => nbf + i64::from(d) * 86_400,
            _ => return Err(spec_err("give exactly one of `expires` and `valid_days`")),
        };
        let uses = self
            .uses
            .iter()
            .map(|u| {
                Use::parse(u).ok_or_else(|| {
                    spec_err(format!(
                        "unknown use `{u}` (cover, remix, live, stem-export, commercial)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut models = Vec::new();
        for m in &self.models {
            models.push(match (&m.manifest, &m.id, &m.sha256) {
                (Some(path), None, None) => {
                    let manifest = crate::models::manifest::Manifest::load(&base.join(path))
                        .map_err(|e| spec_err(e.to_string()))?;
                    ModelGrant {
                        id: manifest.model.id,
                        sha256: manifest.model.sha256.to_ascii_lowercase(),
                    }
                }
                (None, Some(id), Some(sha)) => ModelGrant {
                    id: id.clone(),
                    sha256: sha.to_ascii_lowercase(),
                },
                _ => {
                    return Err(spec_err(
                        "each [[models]] needs `manifest`, or `id` and `sha256`",
                    ))
                }
            });
        }
        let mut split = Vec::new();
        for s in &self.split {
            let bp = match (s.share_bp, s.share_percent) {
                (Some(bp), None) => bp,
                (None, Some(p)) if (0.0..=100.0).contains(&p) => (p * 100.0).round() as u32,
                _ => {
                    return Err(spec_err(format!(
                        "split `{}`: give exactly one of `share_bp` and `share_percent` (0 to 100)",
                        s.party
                    )))
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
        let fingerprint = match audio_path {
            Some(p) => {
                let (channels, rate) = crate::media::read_wav(&p)
                    .map_err(|e| spec_err(format!("{}: {e}", p.display())))?;
                let fp = fingerprint::compute(&channels, rate)
                    .map_err(|e| spec_err(format!("{}: {e}", p.display())))?;
                Some(fingerprint::encode(&fp))
            }
            None => None,
        };
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
            },
            uses,
            models,
            territories: self
                .territories
                .iter()
                .map(|t| t.trim().to_ascii_uppercase())
                .collect(),
            split,
        };
        claims.validate()?;
        Ok(claims)
    }
}

/// Signs validated claims as a licence.
pub fn sign_licence(key: &SigningKey, claims: &Claims) -> Result<String, LicenceError> {
    claims.validate()?;
    if claims.iss != key.issuer {
        return Err(LicenceError::IssuerMismatch {
            claimed: claims.iss.clone(),
            key_issuer: key.issuer.clone(),
        });
    }
    let payload = serde_json::to_vec(claims).map_err(|e| spec_err(e.to_string()))?;
    key.sign(Kind::Licence, &payload)
}

/// Signs a revocation list.
pub fn sign_revocations(key: &SigningKey, list: &RevocationList) -> Result<String, LicenceError> {
    if list.iss != key.issuer {
        return Err(LicenceError::IssuerMismatch {
            claimed: list.iss.clone(),
            key_issuer: key.issuer.clone(),
        });
    }
    claims::parse_time("iat", &list.iat)?;
    let payload = serde_json::to_vec(list).map_err(|e| spec_err(e.to_string()))?;
    key.sign(Kind::Revocations, &payload)
}

/// Reads a key file (TOML).
pub fn read_key_file(path: &Path) -> Result<super::token::KeyFile, LicenceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LicenceError::Key(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| LicenceError::Key(format!("{}: {e}", path.display())))
}

/// Writes a key file; the secret one is readable by its owner only.
pub fn write_key_file(path: &Path, key: &super::token::KeyFile) -> Result<(), LicenceError> {
    let text = toml::to_string(key).map_err(|e| LicenceError::Key(e.to_string()))?;
    if path.exists() {
        return Err(LicenceError::Key(format!(
            "{} exists; refusing to overwrite a key",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| LicenceError::Key(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| LicenceError::Key(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    if key.secret.is_some() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// A store convenience for demos and tests: trust `key`'s public half.
pub fn trust(store: &Store, key: &SigningKey) -> Result<(), LicenceError> {
    store.trust(&key.issuer_key()).map(|_| ())
}
