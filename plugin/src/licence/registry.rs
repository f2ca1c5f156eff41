//! The registry's side (`refrain registry init | certify | revoke | refresh`): its root key,
//! the certificates it gives rights holders, its revocation list and the freshness receipts it
//! signs for devices. Offline files are what moves between the parties:
//!
//! ```text
//! rights holder:  refrain licence keygen        -> label.public.toml      -> registry
//! registry:       refrain registry certify      -> label.cert.paseto      -> rights holder
//! licensee:       refrain device export         -> device.paseto          -> rights holder, registry
//! rights holder:  refrain licence issue --cert label.cert.paseto --device device.paseto
//! registry:       refrain registry refresh      -> receipt.paseto         -> licensee
//! registry:       refrain registry revoke       -> revocations.paseto     -> everyone
//! ```
//!
//! A registry is a folder:
//!
//! ```text
//! root.secret.toml              the root key pair (mode 0600; keep it offline)
//! root.public.toml              the public key builds pin (roots/registry.public.toml)
//! revocations.paseto            the latest signed revocation list
//! certificates/<cid>.paseto     every certificate it has issued
//! .lock                         held while the list's sequence moves on
//! ```

use super::certificate::{self, Certificate, Party, Scope};
use super::claims;
use super::device::DevicePublic;
use super::freshness::{self, Receipt};
use super::issue;
use super::revocation::{self, RegistryRevocations, RevokedLicence};
use super::roots::Roots;
use super::token::{IssuerKey, KeyFileError, SigningKey};
use super::SignError;
use crate::files::{self, ReadError, WriteError};
use std::path::{Path, PathBuf};

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry: {} already holds a registry; refusing to replace its root", path.display())]
    Exists { path: PathBuf },
    #[error("registry: {0}")]
    Key(#[from] KeyFileError),
    #[error("registry: {0}")]
    Sign(#[from] SignError),
    #[error("registry: {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("registry: {0}")]
    Read(ReadError),
    #[error("registry: {0}")]
    Write(WriteError),
    #[error("registry: its revocation list {} does not verify with its own root: {reason}", path.display())]
    DamagedList { path: PathBuf, reason: String },
    #[error("registry: {0}")]
    Certificate(String),
    #[error("registry: nothing to revoke: give certificate ids, key ids or licences")]
    NothingToRevoke,
}

/// An open registry.
pub struct Registry {
    dir: PathBuf,
    root: SigningKey,
}

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

impl Registry {
    /// Makes a registry in `dir`: a new root key named `name`.
    pub fn init(dir: &Path, name: &str) -> Result<Registry, RegistryError> {
        let secret = dir.join("root.secret.toml");
        if secret.exists() {
            return Err(RegistryError::Exists { path: secret });
        }
        let root = SigningKey::generate(name)?;
        issue::write_key_file(&secret, &root.to_file())?;
        issue::write_key_file(&dir.join("root.public.toml"), &root.issuer_key().to_file())?;
        Ok(Registry {
            dir: dir.to_owned(),
            root,
        })
    }

    /// The registry in `dir`.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        let root = SigningKey::from_file(&issue::read_key_file(&dir.join("root.secret.toml"))?)?;
        Ok(Registry {
            dir: dir.to_owned(),
            root,
        })
    }

    /// The root's public key (what a build pins).
    pub fn root(&self) -> IssuerKey {
        self.root.issuer_key()
    }

    fn roots(&self) -> Roots {
        Roots::with(vec![self.root()])
    }

    /// Certifies `key` for `party` and `scope`, valid `days` from `now`. The certificate is
    /// kept in the register and returned with its token.
    pub fn certify(
        &self,
        key: &IssuerKey,
        party: Party,
        scope: Scope,
        now: i64,
        days: u32,
    ) -> Result<(Certificate, String), RegistryError> {
        let scope = Scope {
            isrc_prefixes: scope
                .isrc_prefixes
                .iter()
                .map(|p| certificate::normalise_prefix(p).unwrap_or_else(|| p.clone()))
                .collect(),
            isrcs: scope
                .isrcs
                .iter()
                .map(|i| claims::normalise_isrc(i))
                .collect(),
            iswcs: scope.iswcs,
            voices: scope
                .voices
                .iter()
                .map(|v| v.to_ascii_lowercase())
                .collect(),
        };
        let cert = Certificate {
            cid: uuid::Uuid::new_v4().to_string(),
            party,
            key: key.to_file().public,
            scope,
            iat: claims::format_time(now),
            nbf: claims::format_time(now),
            exp: claims::format_time(now + i64::from(days) * 86_400),
        };
        let token = certificate::sign_certificate(&self.root, &cert)?;
        let path = self
            .dir
            .join("certificates")
            .join(format!("{}.paseto", cert.cid));
        std::fs::create_dir_all(self.dir.join("certificates"))
            .map_err(|e| io(&self.dir.join("certificates"), e))?;
        files::write_new(&path, token.as_bytes(), 0o644).map_err(RegistryError::Write)?;
        Ok((cert, token))
    }

    fn list_path(&self) -> PathBuf {
        self.dir.join("revocations.paseto")
    }

    /// The current revocation list and its token (none before the first revocation).
    pub fn revocations(&self) -> Result<Option<(RegistryRevocations, String)>, RegistryError> {
        let path = self.list_path();
        let text = match files::read_text_bounded(&path, super::store::MAX_REVOCATION_LIST_BYTES) {
            Ok(t) => t,
            Err(ReadError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(RegistryError::Read(e)),
        };
        let signed =
            revocation::verify_registry_revocations(text.trim(), &self.roots()).map_err(|e| {
                RegistryError::DamagedList {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Some((signed.list, text.trim().to_owned())))
    }

    /// Adds withdrawals to the list and signs it with the next sequence number, under the
    /// registry's lock (two revokes at once never reuse a sequence or lose an entry).
    pub fn revoke(
        &self,
        certificates: &[String],
        keys: &[String],
        licences: &[RevokedLicence],
        now: i64,
    ) -> Result<(RegistryRevocations, String), RegistryError> {
        if certificates.is_empty() && keys.is_empty() && licences.is_empty() {
            return Err(RegistryError::NothingToRevoke);
        }
        let lock = files::lock_folder(&self.dir).map_err(|(p, e)| io(&p, e))?;
        let mut list = self.revocations()?.map(|(l, _)| l).unwrap_or_default();
        let add = |to: &mut Vec<String>, items: &[String]| {
            for i in items {
                if !to.contains(i) {
                    to.push(i.clone());
                }
            }
        };
        add(&mut list.certificates, certificates);
        add(&mut list.keys, keys);
        for l in licences {
            if !list.licences.contains(l) {
                list.licences.push(l.clone());
            }
        }
        list.seq += 1;
        list.iat = claims::format_time(now);
        let payload = serde_json::to_vec(&list).map_err(|e| SignError::Encode {
            reason: e.to_string(),
        })?;
        let token = self
            .root
            .sign(super::token::Kind::RegistryRevocations, &payload)
            .map_err(SignError::from)?;
        files::write_atomic(&self.list_path(), token.as_bytes()).map_err(RegistryError::Write)?;
        drop(lock);
        Ok((list, token))
    }

    /// The withdrawals of an issuer's own revocation list (`issuer_list`, a token), as the
    /// registry's list carries them: its licences, under the key that signed them, and the key
    /// itself if the list withdraws it. The list must verify under this registry's root. Put
    /// into the registry's list ([`Self::revoke`]), they are named by every receipt, so deleting
    /// the issuer's list on a licensee's machine no longer revives its licences.
    pub fn issuer_withdrawals(
        &self,
        issuer_list: &str,
    ) -> Result<(Vec<String>, Vec<RevokedLicence>), RegistryError> {
        let signed = revocation::verify_revocations(issuer_list.trim(), &self.roots())
            .map_err(|e| RegistryError::Certificate(e.to_string()))?;
        let keys = signed
            .list
            .revoked_keys
            .iter()
            .filter(|k| **k == signed.kid)
            .cloned()
            .collect();
        let licences = signed
            .list
            .revoked_licences
            .iter()
            .map(|id| RevokedLicence {
                key: signed.kid.clone(),
                id: id.clone(),
            })
            .collect();
        Ok((keys, licences))
    }

    /// A freshness receipt for `device`: the registry's time and its list's sequence.
    pub fn refresh(&self, device: &DevicePublic, now: i64) -> Result<String, RegistryError> {
        let seq = self.revocations()?.map_or(0, |(l, _)| l.seq);
        let receipt = Receipt {
            device: device.id.clone(),
            iat: claims::format_time(now),
            revocation_seq: seq,
            ledger_head: String::new(),
        };
        Ok(freshness::sign_receipt(&self.root, &receipt)?)
    }

    /// The registry's signing key (tests sign with it directly).
    pub fn root_key(&self) -> &SigningKey {
        &self.root
    }
}

/// The development root's signing key (its secret is public; only `dev-root` builds trust it).
pub fn development_root_key() -> Result<SigningKey, RegistryError> {
    let file: super::token::KeyFile = toml::from_str(include_str!("roots/development.secret.toml"))
        .map_err(|e| {
            RegistryError::Key(KeyFileError::Encode {
                reason: e.to_string(),
            })
        })?;
    Ok(SigningKey::from_file(&file)?)
}

/// The development root's registry in `dir` (made there if it is not), for tests and the
/// demo: its secret key is in the repository (`roots/development.secret.toml`), so anyone can
/// sign with it, and only `dev-root` builds trust it. `refrain registry … --dir DIR` works on
/// it like on any registry.
pub fn development(dir: &Path) -> Result<Registry, RegistryError> {
    let root = development_root_key()?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for (name, key) in [
        ("root.secret.toml", root.to_file()),
        ("root.public.toml", root.issuer_key().to_file()),
    ] {
        match issue::write_key_file(&dir.join(name), &key) {
            Ok(()) | Err(KeyFileError::Exists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Registry {
        dir: dir.to_owned(),
        root,
    })
}
