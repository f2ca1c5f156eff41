//! The user's licence folder: this device's keys, cached licences, revocation lists, the
//! freshness receipt and the last time Refrain saw the clock. Nothing here touches the network,
//! and nothing here decides whom to trust: the roots are compiled in ([`super::roots`]).
//!
//! ```text
//! <data dir>/Refrain/                  ($REFRAIN_DATA_DIR overrides)
//!   device/device.toml                 this device's key pairs (mode 0600; made on first use)
//!   licences/<key tag>/<id>.paseto     cached licences, verified before caching, keyed by
//!                                      (issuer key, licence id)
//!   revocations/registry-<tag>.paseto  the registry's list (highest sequence kept)
//!   revocations/issuer-<tag>.paseto    each issuer's own list (highest sequence kept)
//!   receipt.paseto                     the registry's freshness receipt for this device
//!   clock                              the latest time seen (clock-rollback check)
//! ```

use super::claims::{self, ClaimError};
use super::device::{Device, DeviceError};
use super::freshness::{self, ReceiptError, SignedReceipt};
use super::policy::{self, VerifyError};
use super::revocation::{self, AnyRevocations, IgnoredRevocation, RevocationError, Revoked};
use super::roots::Roots;
use super::token::{self, KeyFileError, TokenError};
use crate::files::{self, ReadError, WriteError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Environment variable that moves the data folder (tests, portable installs).
pub const ENV_DATA_DIR: &str = "REFRAIN_DATA_DIR";

/// How far the clock may step back (NTP corrections) before it counts as turned back.
pub const CLOCK_TOLERANCE_S: i64 = 600;

/// Largest revocation list Refrain reads: a signed list is a token like a licence.
pub const MAX_REVOCATION_LIST_BYTES: u64 = token::MAX_TOKEN_BYTES as u64;

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
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
    /// A licence offered for caching that does not verify (not cached).
    #[error(transparent)]
    Verify(VerifyError),
    #[error(
        "licence {id} is bound to device(s) {devices}; this machine is device {this} (send \
         `refrain device export` to the issuer for a licence bound to it)"
    )]
    OtherDevice {
        id: String,
        devices: String,
        this: String,
    },
    #[error(transparent)]
    Device(DeviceError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    #[error(
        "licence folder: list {installed} from this signer is already installed; list \
         {offered} is older and is not installed"
    )]
    NewerRevocations { installed: u64, offered: u64 },
    #[error(
        "licence folder: another list with sequence {seq} from this signer is installed; a \
         signer never reuses a sequence, so this one is refused"
    )]
    SameSequence { seq: u64 },
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error("the clock has been turned back (Refrain last saw {}); set it right to use licences, or install a fresh receipt", claims::format_time(*last_seen))]
    ClockTurnedBack { last_seen: i64 },
    #[error("licence folder: cannot record the time in {}: {reason}; Refrain must be able to write it to use licences", path.display())]
    ClockUnwritable { path: PathBuf, reason: String },
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

/// A verified revocation list as installed, with the entries that do not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRevocations {
    pub signed: AnyRevocations,
    /// Issuer-list entries naming another key, or a cached licence another key signed.
    pub ignored: Vec<IgnoredRevocation>,
}

/// The data folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    roots: Roots,
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

/// Reads a token file (a licence, a revocation list, a receipt): a regular file of at most
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

/// A key id as a file name: the first 16 hex digits of its SHA-256.
pub fn key_tag(kid: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(kid.as_bytes())[..8])
}

/// An exclusive lock on `<dir>/.lock`, held until dropped: installs of revocation lists and
/// receipts read, compare and write under it, so two at once never keep the older one.
struct FolderLock(#[allow(dead_code)] std::fs::File);

impl FolderLock {
    fn take(dir: &Path) -> Result<FolderLock, StoreError> {
        files::lock_folder(dir)
            .map(FolderLock)
            .map_err(|(path, e)| io_err(&path, e))
    }
}

/// A cached licence: the key that signed it and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub kid: String,
    pub id: String,
    pub text: String,
}

impl Store {
    /// The store at `root` (created on first write), trusting the roots compiled into this
    /// build.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            roots: Roots::built_in().clone(),
        }
    }

    /// This store, trusting exactly `roots` (the registry's tools and tests).
    pub fn with_roots(mut self, roots: Roots) -> Store {
        self.roots = roots;
        self
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

    /// The registry roots this store trusts.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    fn licences_dir(&self) -> PathBuf {
        self.root.join("licences")
    }

    fn revocations_dir(&self) -> PathBuf {
        self.root.join("revocations")
    }

    fn clock_path(&self) -> PathBuf {
        self.root.join("clock")
    }

    fn receipt_path(&self) -> PathBuf {
        self.root.join("receipt.paseto")
    }

    /// This machine's device keys (made on first use).
    /// A new device starts a fresh pending-allowance book, written with the device just made
    /// while its folder is locked; a device that exists without its book has none left today
    /// ([`super::allowance`]).
    pub fn device(&self) -> Result<Device, StoreError> {
        Device::open_or_create_with(&self.root.join("device"), |device| {
            // A book that cannot be written now is lost, which fails closed.
            let now = super::policy::Clock::now(&super::policy::SystemClock);
            let _ = super::allowance::start_fresh(&self.root, device, now);
        })
        .map_err(StoreError::Device)
    }

    /// Caches a licence after verifying it: its certificate chain, its signature and claims,
    /// revocation, and its binding to this device. Cached under (issuer key, licence id), so
    /// a token of another key with the same id never replaces it. Returns the cached entry.
    pub fn install_licence(&self, token_text: &str) -> Result<CachedToken, StoreError> {
        let (revoked, _) = self.revoked();
        let (claims, certified) = policy::verify_signed_by(token_text, &self.roots, &revoked)
            .map_err(StoreError::Verify)?;
        let device = self.device()?;
        if !claims.devices.contains(&device.id) {
            return Err(StoreError::OtherDevice {
                id: claims.jti,
                devices: claims.devices.join(", "),
                this: device.id,
            });
        }
        let kid = certified.key.kid;
        let path = self.licence_path(&kid, &claims.jti)?;
        write_atomic(&path, token_text.trim().as_bytes())?;
        Ok(CachedToken {
            kid,
            id: claims.jti,
            text: token_text.trim().to_owned(),
        })
    }

    fn licence_path(&self, kid: &str, id: &str) -> Result<PathBuf, StoreError> {
        if !file_stem_safe(id) {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        Ok(self
            .licences_dir()
            .join(key_tag(kid))
            .join(format!("{id}.paseto")))
    }

    /// The cached tokens with licence id `id` (one per issuer key that issued that id), or
    /// only the one of key `kid` when it is given.
    pub fn licence_tokens(
        &self,
        id: &str,
        kid: Option<&str>,
    ) -> Result<Vec<CachedToken>, StoreError> {
        if !file_stem_safe(id) {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        let mut out = Vec::new();
        for entry in self.cached_files() {
            if entry.1 != id {
                continue;
            }
            let text =
                read_text(&entry.0, token::MAX_TOKEN_BYTES as u64).map_err(token_read_error)?;
            let Ok(untrusted) = token::parse(&text) else {
                continue;
            };
            if kid.is_some_and(|k| k != untrusted.kid) || key_tag(&untrusted.kid) != entry.2 {
                continue;
            }
            out.push(CachedToken {
                kid: untrusted.kid,
                id: id.to_owned(),
                text,
            });
        }
        if out.is_empty() {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        Ok(out)
    }

    /// The cached token of licence `id` (the first, if several keys issued that id).
    pub fn licence_token(&self, id: &str) -> Result<String, StoreError> {
        Ok(self.licence_tokens(id, None)?.remove(0).text)
    }

    /// (path, licence id, key tag) of every cached licence file.
    fn cached_files(&self) -> Vec<(PathBuf, String, String)> {
        let mut out = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.licences_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let tag = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for path in list(&dir, "paseto") {
                if let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) {
                    out.push((path, id, tag.clone()));
                }
            }
        }
        out
    }

    /// Ids of every cached licence (an id issued by two keys is listed twice).
    pub fn licence_ids(&self) -> Vec<String> {
        self.cached_files()
            .into_iter()
            .map(|(_, id, _)| id)
            .collect()
    }

    /// Installs a revocation list, the registry's or an issuer's (verified first). Under the
    /// folder's lock, a list replaces the installed one of the same signer only if its
    /// sequence is higher; an older one is refused, the same one changes nothing. Issuer-list
    /// entries the signing key has no standing over are reported as ignored.
    pub fn install_revocations(
        &self,
        token_text: &str,
    ) -> Result<InstalledRevocations, StoreError> {
        let signed = revocation::verify_any(token_text, &self.roots)?;
        let dir = self.revocations_dir();
        let name = match &signed {
            AnyRevocations::Registry(r) => format!("registry-{}.paseto", key_tag(&r.root)),
            AnyRevocations::Issuer(r) => format!("issuer-{}.paseto", key_tag(&r.kid)),
        };
        let path = dir.join(name);
        {
            let _lock = FolderLock::take(&dir)?;
            let installed = read_revocations(&path)
                .ok()
                .and_then(|t| revocation::verify_any(&t, &self.roots).ok());
            match installed {
                Some(old) if old.seq() > signed.seq() => {
                    return Err(StoreError::NewerRevocations {
                        installed: old.seq(),
                        offered: signed.seq(),
                    });
                }
                Some(old) if old.seq() == signed.seq() && old != signed => {
                    return Err(StoreError::SameSequence { seq: old.seq() });
                }
                _ => write_atomic(&path, token_text.trim().as_bytes())?,
            }
        }
        let mut ignored = Vec::new();
        if let AnyRevocations::Issuer(list) = &signed {
            let mut revoked = Revoked::default();
            revoked.add(list);
            ignored = revoked.ignored;
            for id in &list.list.revoked_licences {
                // The cached licences with that id that another key signed: the entry cannot
                // count for them.
                for other in self.licence_tokens(id, None).unwrap_or_default() {
                    if other.kid != list.kid {
                        ignored.push(IgnoredRevocation::Licence {
                            signed_by: list.kid.clone(),
                            id: id.clone(),
                            licence_key: other.kid,
                        });
                    }
                }
            }
        }
        Ok(InstalledRevocations { signed, ignored })
    }

    /// What the installed, verifiable revocation lists withdraw, and the lists that could not
    /// be read or verified (skipped).
    pub fn revoked(&self) -> (Revoked, Vec<UnreadableFile>) {
        let mut revoked = Revoked::default();
        let mut unreadable = Vec::new();
        for path in list(&self.revocations_dir(), "paseto") {
            match read_revocations(&path).and_then(|t| Ok(revocation::verify_any(&t, &self.roots)?))
            {
                Ok(signed) => revoked.add_any(&signed),
                Err(problem) => unreadable.push(UnreadableFile { path, problem }),
            }
        }
        (revoked, unreadable)
    }

    /// Installs a freshness receipt made for this device (verified first; under the lock, a
    /// receipt older than the installed one is refused). Its signed time becomes the latest
    /// time seen, which also repairs a clock check stuck in the future.
    pub fn install_receipt(&self, token_text: &str) -> Result<SignedReceipt, StoreError> {
        let signed = freshness::verify_receipt(token_text, &self.roots)?;
        let device = self.device()?;
        if signed.receipt.device != device.id {
            return Err(ReceiptError::OtherDevice {
                receipt: signed.receipt.device,
                this: device.id,
            }
            .into());
        }
        let _lock = FolderLock::take(&self.root)?;
        let old = self.receipt();
        if let Some(old) = &old {
            if old.time > signed.time {
                return Err(ReceiptError::Older {
                    installed: old.receipt.iat.clone(),
                }
                .into());
            }
        }
        write_atomic(&self.receipt_path(), token_text.trim().as_bytes())?;
        // A newer receipt's signed time replaces the latest time seen (repairing a clock check
        // stuck in the future); the same receipt again only restores a missing record.
        let newer = old.is_none_or(|o| signed.time > o.time);
        let clock = match self.last_seen() {
            Some(last) if !newer => last.max(signed.time),
            _ => signed.time,
        };
        write_atomic(&self.clock_path(), clock.to_string().as_bytes())?;
        Ok(signed)
    }

    /// The installed receipt, if one is there and verifies.
    pub fn receipt(&self) -> Option<SignedReceipt> {
        let text = read_text(&self.receipt_path(), freshness::MAX_RECEIPT_BYTES).ok()?;
        freshness::verify_receipt(&text, &self.roots).ok()
    }

    /// The latest time seen, if the clock file is there and readable.
    pub fn last_seen(&self) -> Option<i64> {
        read_text(&self.clock_path(), MAX_CLOCK_BYTES)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    }

    /// The clock-rollback check: `now` must not be earlier than the latest time seen (or the
    /// installed receipt's signed time), less [`CLOCK_TOLERANCE_S`]; the latest time seen
    /// moves forward with `now`. A clock file that cannot be written is an error: a frozen
    /// clock would let the clock be turned back unseen.
    pub fn check_clock(&self, now: i64) -> Result<(), StoreError> {
        let last = self.last_seen();
        let floor = last.max(self.receipt().map(|r| r.time));
        if let Some(floor) = floor {
            if now + CLOCK_TOLERANCE_S < floor {
                return Err(StoreError::ClockTurnedBack { last_seen: floor });
            }
        }
        if last.is_some_and(|l| now <= l + 60) {
            return Ok(());
        }
        let path = self.clock_path();
        write_atomic(&path, now.to_string().as_bytes()).map_err(|e| StoreError::ClockUnwritable {
            path,
            reason: e.to_string(),
        })
    }
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
