//! The user's licence folder: trusted issuer keys, cached licences, revocation lists, the
//! last time Refrain saw the clock, and settings. Nothing here touches the network.
//!
//! ```text
//! <data dir>/Refrain/            ($REFRAIN_DATA_DIR overrides)
//!   keys/<kid>.toml              trusted issuer public keys
//!   licences/<licence id>.paseto cached licences
//!   revocations/<kid>.paseto     signed revocation lists, one per signing key
//!   clock                        the latest time seen (clock-rollback check)
//! ```
//!
//! A revocation counts only when the key that signs the list has the standing to make it: a
//! key withdraws itself, and a licence is withdrawn by the key that signed it. Matching by the
//! issuer's *name* would let any key that carries the same name (trusted for another catalogue,
//! or made by anyone who can get a key trusted) withdraw another key's licences.

use super::claims::{self, ClaimError, Claims};
use super::token::{self, IssuerKey, KeyFile, KeyFileError, Kind, TokenError};
use crate::files::{self, ReadError, WriteError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Environment variable that moves the data folder (tests, portable installs).
pub const ENV_DATA_DIR: &str = "REFRAIN_DATA_DIR";

/// How far the clock may step back (NTP corrections) before it counts as turned back.
pub const CLOCK_TOLERANCE_S: i64 = 600;

/// Largest revocation list Refrain reads: a signed list is a token like a licence.
pub const MAX_REVOCATION_LIST_BYTES: u64 = token::MAX_TOKEN_BYTES as u64;

/// Largest trusted key (`keys/<kid>.toml`, an issuer's public key file) Refrain reads.
pub const MAX_TRUST_ENTRY_BYTES: u64 = token::MAX_KEY_FILE_BYTES;

/// Largest clock file Refrain reads: it holds one number.
pub const MAX_CLOCK_BYTES: u64 = 64;

/// Why the licence folder could not be read or written, or a licence not found or cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("licence folder: this system has no user data folder; set {ENV_DATA_DIR}")]
    NoDataDir,
    #[error("licence folder: {}: {reason}", path.display())]
    Io {
        path: PathBuf,
        kind: ErrorKind,
        reason: String,
    },
    /// A licence or revocation list file that is not a regular file, or cannot be read (the
    /// message names it).
    #[error(transparent)]
    Read(ReadError),
    #[error("licence folder: {0}")]
    Write(WriteError),
    #[error("the licence is unreadable: {} is {bytes} bytes; a token is at most {max}", path.display())]
    TokenTooLarge {
        path: PathBuf,
        bytes: u64,
        max: usize,
    },
    /// Also for an id that could never name a file (`../keys/x`).
    #[error("licence `{id}` is not in this machine's licence folder")]
    NotFound { id: String },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the licence's contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    #[error(
        "licence folder: a newer revocation list from this key is already installed ({installed})"
    )]
    NewerRevocations { installed: String },
    #[error("the clock has been turned back (Refrain last saw {}); set it right to use licences", claims::format_time(*last_seen))]
    ClockTurnedBack { last_seen: i64 },
}

/// Why a revocation list does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the licence's contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error("the licence names issuer `{claimed}` but is signed by the key of `{key_issuer}`")]
    IssuerMismatch { claimed: String, key_issuer: String },
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
}

/// A file in the licence folder that was skipped, and why: the folder is still used without
/// it, and `refrain licence list` warns about it. A named pipe, a device or a huge file is
/// skipped like a damaged one, before a byte of it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct UnreadableFile {
    pub path: PathBuf,
    pub problem: FileProblem,
}

/// What is wrong with an [`UnreadableFile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("{reason}")]
    Read { kind: ErrorKind, reason: String },
    #[error("it is {bytes} bytes; the limit for this file is {max} bytes")]
    TooLarge { bytes: u64, max: u64 },
    #[error("it is {what}, not a regular file; Refrain reads regular files only")]
    NotAFile { what: &'static str },
    #[error("not a key file: {reason}")]
    NotKeyFile { reason: String },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Revocations(#[from] RevocationError),
}

impl From<std::io::Error> for FileProblem {
    fn from(e: std::io::Error) -> Self {
        FileProblem::Read {
            kind: e.kind(),
            reason: e.to_string(),
        }
    }
}

impl From<ReadError> for FileProblem {
    fn from(e: ReadError) -> Self {
        match e {
            // Listed a moment ago, gone now.
            ReadError::Missing { .. } => FileProblem::Read {
                kind: ErrorKind::NotFound,
                reason: "it no longer exists".into(),
            },
            ReadError::NotAFile { what, .. } => FileProblem::NotAFile { what },
            ReadError::TooLarge { size, limit, .. } => FileProblem::TooLarge {
                bytes: size,
                max: limit,
            },
            ReadError::Io { reason, .. } => FileProblem::Read {
                kind: ErrorKind::Other,
                reason,
            },
        }
    }
}

/// A signed revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// The issuer; it must be the name of the key that signs the list.
    pub iss: String,
    /// When the list was signed (RFC 3339); a newer list from the same key replaces an older
    /// one.
    pub iat: String,
    /// Key ids to withdraw: only the signing key's own id counts (a key withdraws itself).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// Licence ids to withdraw: each counts only for a licence the signing key signed.
    #[serde(default)]
    pub revoked_licences: Vec<String>,
}

/// A revocation list whose signature verified, with the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRevocations {
    /// The id of the key that signed the list (the only key it can withdraw, and the key whose
    /// licences it can withdraw).
    pub kid: String,
    pub list: RevocationList,
}

/// An entry of a verified revocation list that does not count, because the key that signed the
/// list has no standing over it. Not an error: the rest of the list still counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoredRevocation {
    /// The list names another key.
    Key { signed_by: String, kid: String },
    /// The list names a licence that another key signed.
    Licence {
        signed_by: String,
        id: String,
        licence_key: String,
    },
}

impl std::fmt::Display for IgnoredRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IgnoredRevocation::Key { signed_by, kid } => write!(
                f,
                "ignored: the revocation list signed by {signed_by} names key {kid}; \
                 a key can only withdraw itself"
            ),
            IgnoredRevocation::Licence {
                signed_by,
                id,
                licence_key,
            } => write!(
                f,
                "ignored: the revocation list signed by {signed_by} names licence {id}, \
                 which {licence_key} signed; only the key that signed a licence can withdraw it"
            ),
        }
    }
}

/// What the verified revocation lists withdraw.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// Ids of keys that signed their own withdrawal.
    pub keys: HashSet<String>,
    /// (id of the signing key, licence id): withdraws the licence with that id only if that
    /// key signed it.
    pub licences: HashSet<(String, String)>,
    /// Key entries that do not count (a list naming another key).
    pub ignored: Vec<IgnoredRevocation>,
}

/// A verified revocation list as installed, with the entries that do not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRevocations {
    pub signed: SignedRevocations,
    /// Key entries naming another key, and licence entries naming a cached licence that
    /// another key signed (a licence not cached here is checked when it is used).
    pub ignored: Vec<IgnoredRevocation>,
}

/// The data folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        kind: e.kind(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` in the folder (created if need be) through a temporary file, synced
/// and renamed ([`files::write_atomic`]), so a crash or a full disk never leaves a half-written
/// file behind.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    files::write_atomic(path, bytes).map_err(StoreError::Write)
}

/// Reads a text file of the folder, or one given to it, through the bounded reader: regular
/// files of at most `limit` bytes only, so a pipe or a device never blocks and a huge file is
/// refused by its size before a byte is read.
fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    files::read_text_bounded(path, limit).map(|s| s.trim().to_owned())
}

/// A token file's read error, for a caller that names the file itself.
fn token_read_error(e: ReadError) -> StoreError {
    match e {
        ReadError::TooLarge { path, size, .. } => StoreError::TokenTooLarge {
            path,
            bytes: size,
            max: token::MAX_TOKEN_BYTES,
        },
        e => StoreError::Read(e),
    }
}

/// Reads a token file (a licence or a revocation list): a regular file of at most
/// [`token::MAX_TOKEN_BYTES`].
pub fn read_token_file(path: &Path) -> Result<String, StoreError> {
    read_text(path, token::MAX_TOKEN_BYTES as u64).map_err(token_read_error)
}

/// Reads a revocation list of the folder, which is reported with its path.
fn read_revocations(path: &Path) -> Result<String, FileProblem> {
    Ok(read_text(path, MAX_REVOCATION_LIST_BYTES)?)
}

fn file_stem_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 160
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

impl Store {
    /// The store at `root` (created on first write).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// `$REFRAIN_DATA_DIR`, else the platform's data folder (`~/.local/share/Refrain`,
    /// `~/Library/Application Support/Refrain`, `%APPDATA%\Refrain`).
    pub fn open_default() -> Result<Store, StoreError> {
        if let Some(dir) = std::env::var_os(ENV_DATA_DIR).filter(|d| !d.is_empty()) {
            return Ok(Store::at(dir));
        }
        dirs::data_dir()
            .map(|d| Store::at(d.join("Refrain")))
            .ok_or(StoreError::NoDataDir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    fn licences_dir(&self) -> PathBuf {
        self.root.join("licences")
    }

    fn revocations_dir(&self) -> PathBuf {
        self.root.join("revocations")
    }

    /// Trusts an issuer's public key.
    pub fn trust(&self, key: &IssuerKey) -> Result<PathBuf, StoreError> {
        let name = key.kid.replace('.', "_");
        let path = self.keys_dir().join(format!("{name}.toml"));
        let text = key.to_file().to_toml()?;
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Every trusted key, and the key files that could not be read (skipped, not fatal: one
    /// damaged file must not stop the licences of every other issuer).
    pub fn trusted_keys(&self) -> (Vec<IssuerKey>, Vec<UnreadableFile>) {
        let mut keys = Vec::new();
        let mut unreadable = Vec::new();
        for path in list(&self.keys_dir(), "toml") {
            let parsed = read_text(&path, MAX_TRUST_ENTRY_BYTES)
                .map_err(FileProblem::from)
                .and_then(|t| {
                    toml::from_str::<KeyFile>(&t).map_err(|e| FileProblem::NotKeyFile {
                        reason: e.message().to_owned(),
                    })
                })
                .and_then(|f| Ok(IssuerKey::from_file(&f)?));
            match parsed {
                Ok(k) => keys.push(k),
                Err(problem) => unreadable.push(UnreadableFile { path, problem }),
            }
        }
        (keys, unreadable)
    }

    /// Caches a licence token under its id (read from the token without trusting it; the
    /// plugin verifies it each time it is used). Returns the licence id.
    pub fn install_licence(&self, token_text: &str) -> Result<String, StoreError> {
        let untrusted = token::parse(token_text)?;
        let claims: Claims =
            serde_json::from_slice(untrusted.untrusted_payload()).map_err(|e| {
                StoreError::Payload {
                    reason: e.to_string(),
                }
            })?;
        claims::check_licence_id(&claims.jti)?;
        let path = self.licence_path(&claims.jti)?;
        write_atomic(&path, token_text.trim().as_bytes())?;
        Ok(claims.jti)
    }

    fn licence_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !file_stem_safe(id) {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        Ok(self.licences_dir().join(format!("{id}.paseto")))
    }

    /// The cached token of licence `id`.
    pub fn licence_token(&self, id: &str) -> Result<String, StoreError> {
        let path = self.licence_path(id)?;
        read_text(&path, token::MAX_TOKEN_BYTES as u64).map_err(|e| match e {
            ReadError::Missing { .. } => StoreError::NotFound { id: id.to_owned() },
            e => token_read_error(e),
        })
    }

    /// Ids of every cached licence.
    pub fn licence_ids(&self) -> Vec<String> {
        list(&self.licences_dir(), "paseto")
            .into_iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect()
    }

    /// Installs a revocation list (verified first; an older list from the same key is
    /// replaced, a newer one is kept). Entries the signing key has no standing over are
    /// reported as ignored.
    pub fn install_revocations(
        &self,
        token_text: &str,
    ) -> Result<InstalledRevocations, StoreError> {
        // Unreadable key files only mean fewer trusted keys; `refrain licence list` names them.
        let (keys, _) = self.trusted_keys();
        let signed = verify_revocations(token_text, &keys)?;
        let path = self
            .revocations_dir()
            .join(format!("{}.paseto", signed.kid.replace('.', "_")));
        let installed = read_revocations(&path)
            .ok()
            .and_then(|t| verify_revocations(&t, &keys).ok());
        if let Some(old) = installed {
            let newer = claims::parse_time("iat", &old.list.iat)?.unix_timestamp()
                > claims::parse_time("iat", &signed.list.iat)?.unix_timestamp();
            if newer {
                return Err(StoreError::NewerRevocations {
                    installed: old.list.iat,
                });
            }
        }
        write_atomic(&path, token_text.trim().as_bytes())?;
        let mut revoked = Revoked::default();
        revoked.add(&signed);
        let mut ignored = revoked.ignored;
        for id in &signed.list.revoked_licences {
            // The footer's key id, unverified: the cached licence is verified where it is used;
            // this only reports an entry that cannot count for it.
            let licence_key = self
                .licence_token(id)
                .ok()
                .and_then(|t| token::parse(&t).ok())
                .map(|u| u.kid);
            if let Some(licence_key) = licence_key.filter(|k| *k != signed.kid) {
                ignored.push(IgnoredRevocation::Licence {
                    signed_by: signed.kid.clone(),
                    id: id.clone(),
                    licence_key,
                });
            }
        }
        Ok(InstalledRevocations { signed, ignored })
    }

    /// What the installed, verifiable revocation lists withdraw, and the lists that could not
    /// be read or verified with `keys` (skipped).
    pub fn revoked(&self, keys: &[IssuerKey]) -> (Revoked, Vec<UnreadableFile>) {
        let mut revoked = Revoked::default();
        let mut unreadable = Vec::new();
        for path in list(&self.revocations_dir(), "paseto") {
            match read_revocations(&path).and_then(|t| Ok(verify_revocations(&t, keys)?)) {
                Ok(signed) => revoked.add(&signed),
                Err(problem) => unreadable.push(UnreadableFile { path, problem }),
            }
        }
        (revoked, unreadable)
    }

    /// The clock-rollback check: `now` must not be earlier than the latest time seen (less
    /// [`CLOCK_TOLERANCE_S`]); the latest time seen moves forward with `now`.
    pub fn check_clock(&self, now: i64) -> Result<(), StoreError> {
        let path = self.root.join("clock");
        // A clock file that is not a small regular file counts as none (as if deleted), and
        // is replaced below.
        let last = read_text(&path, MAX_CLOCK_BYTES)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        if let Some(last) = last {
            if now + CLOCK_TOLERANCE_S < last {
                return Err(StoreError::ClockTurnedBack { last_seen: last });
            }
            if now <= last + 60 {
                return Ok(());
            }
        }
        // A folder that cannot be written only weakens the next check; it never stops a
        // licence that is otherwise valid.
        let _ = write_atomic(&path, now.to_string().as_bytes());
        Ok(())
    }
}

impl Revoked {
    /// Adds a verified list: its signing key, if the list names it, and the licence ids as
    /// withdrawn for licences of that key. Other keys it names are recorded as ignored.
    pub fn add(&mut self, signed: &SignedRevocations) {
        for kid in &signed.list.revoked_keys {
            if *kid == signed.kid {
                self.keys.insert(kid.clone());
            } else {
                self.ignored.push(IgnoredRevocation::Key {
                    signed_by: signed.kid.clone(),
                    kid: kid.clone(),
                });
            }
        }
        for id in &signed.list.revoked_licences {
            self.licences.insert((signed.kid.clone(), id.clone()));
        }
    }

    /// Whether key `kid` has withdrawn itself.
    pub fn key(&self, kid: &str) -> bool {
        self.keys.contains(kid)
    }

    /// Whether licence `id`, signed by key `kid`, has been withdrawn by that key.
    pub fn licence(&self, kid: &str, id: &str) -> bool {
        self.licences.contains(&(kid.to_owned(), id.to_owned()))
    }

    /// The entries naming licence `id` that do not count for the one key `kid` signed (other
    /// keys' lists).
    pub fn ignored_for_licence(&self, kid: &str, id: &str) -> Vec<IgnoredRevocation> {
        let mut out: Vec<IgnoredRevocation> = self
            .licences
            .iter()
            .filter(|(by, lid)| lid == id && by != kid)
            .map(|(by, _)| IgnoredRevocation::Licence {
                signed_by: by.clone(),
                id: id.to_owned(),
                licence_key: kid.to_owned(),
            })
            .collect();
        out.sort_by_key(|a| a.to_string());
        out
    }
}

/// Verifies a revocation list against the trusted keys and returns it with the key that
/// signed it. A list may be signed by the key it revokes (an issuer withdrawing a compromised
/// key); which entries count is [`Revoked::add`]'s rule.
pub fn verify_revocations(
    token_text: &str,
    keys: &[IssuerKey],
) -> Result<SignedRevocations, RevocationError> {
    let (key, payload) = token::verify_signed(token_text, keys, Kind::Revocations)?;
    let list: RevocationList =
        serde_json::from_slice(&payload).map_err(|e| RevocationError::Payload {
            reason: e.to_string(),
        })?;
    if list.iss != key.issuer {
        return Err(RevocationError::IssuerMismatch {
            claimed: list.iss,
            key_issuer: key.issuer.clone(),
        });
    }
    claims::parse_time("iat", &list.iat)?;
    Ok(SignedRevocations {
        kid: key.kid.clone(),
        list,
    })
}

fn list(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}
