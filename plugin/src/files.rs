//! Files Refrain does not trust, read and written safely: every manifest, model file, media
//! file, licence and key comes in through [`read_bounded`], and every file Refrain writes goes
//! out through [`AtomicFile`].
//!
//! - **Reading**: regular files only. The file is opened without blocking (a named pipe would
//!   otherwise hang the caller, a DAW's main thread among them) and checked with `fstat` on the
//!   open descriptor (so a symlink swapped in between cannot slip a device through), then read
//!   up to a size limit and one byte beyond, which catches a file that grows while it is read.
//! - **Writing**: to a new temporary file beside the target (created exclusively), flushed and
//!   synced, then renamed over the target. A write that fails midway (disk full, a file-size
//!   limit) leaves the target as it was, so rendering a file onto itself is safe.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is {what}, not a regular file; Refrain reads regular files only")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("{path} is {size} bytes; the limit for this file is {limit} bytes")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Why a file could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// From [`write_new`] only.
    #[error("{path} already exists; Refrain never replaces it")]
    Exists { path: PathBuf },
}

/// What a non-regular file is, for messages.
fn describe(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (following symlinks), without blocking on
/// pipes or devices.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing {
            path: path.to_owned(),
        },
        _ => ReadError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    };
    // Refuse what is plainly not a file before opening it at all.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_owned(),
            what: describe(meta.file_type()),
        });
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io)?;
    // What was opened is what counts (it may have been swapped since the check above).
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_owned(),
            what: describe(meta.file_type()),
        });
    }
    Ok(file)
}

/// Reads all of a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let size = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| ReadError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if size > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte past the limit tells a file that grew since its size was read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Why a pinned file (a model set-up fetched, known by its sha256) could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedError {
    /// It could not be read.
    Read(ReadError),
    /// It is another file: its sha256.
    Other { sha256: String },
}

/// [`read_bounded`] for a file known by its hex `sha256`: another file is refused.
pub fn read_pinned(path: &Path, limit: u64, sha256: &str) -> Result<Vec<u8>, PinnedError> {
    use sha2::{Digest, Sha256};
    let bytes = read_bounded(path, limit).map_err(PinnedError::Read)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(PinnedError::Other { sha256: actual });
    }
    Ok(bytes)
}

/// [`read_bounded`] for a text file.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// A file being written: it appears at its target only when [`Self::commit`] succeeds.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `target` (through a new temporary file in the same folder).
    pub fn create(target: &Path) -> Result<AtomicFile, WriteError> {
        let io = |p: &Path, e: std::io::Error| WriteError::Io {
            path: p.to_owned(),
            reason: e.to_string(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        for attempt in 0..100u32 {
            let temp = dir.join(format!(".{name}.{}-{attempt}.partial", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(f) => {
                    return Ok(AtomicFile {
                        target: target.to_owned(),
                        temp,
                        file: Some(std::io::BufWriter::with_capacity(1 << 16, f)),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(target, e)),
            }
        }
        Err(WriteError::Io {
            path: target.to_owned(),
            reason: "no free temporary name beside it".into(),
        })
    }

    /// Flushes, syncs and renames the file over its target.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let io = |e: std::io::Error| WriteError::Io {
            path: self.target.clone(),
            reason: e.to_string(),
        };
        let file = self.file.take().expect("committed once");
        let done = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.temp, &self.target));
        // A write that fails here (the buffered tail on a full disk) leaves no partial file.
        if done.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        done.map_err(io)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl std::io::Seek for AtomicFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        match &mut self.file {
            Some(f) => f.seek(pos),
            None => Err(std::io::Error::other("already committed")),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: the target stays as it was and the partial file goes.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl AtomicFile {
    /// Splits the file into its writer and the rename still to do, for writers that insist on
    /// owning their output (a WAV writer that finalises its header on the way out).
    pub fn into_parts(mut self) -> (std::io::BufWriter<File>, PendingRename) {
        let file = self.file.take().expect("not committed");
        let pending = PendingRename {
            target: std::mem::take(&mut self.target),
            temp: std::mem::take(&mut self.temp),
            committed: false,
        };
        (file, pending)
    }
}

/// The rename that makes a written temporary file the target; without [`Self::commit`] the
/// temporary file is removed and the target stays as it was.
pub struct PendingRename {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl PendingRename {
    /// Syncs the (closed) temporary file and renames it over the target.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let io = |e: std::io::Error| WriteError::Io {
            path: self.target.clone(),
            reason: e.to_string(),
        };
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&self.temp, &self.target).map_err(io)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingRename {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes).map_err(|e| WriteError::Io {
        path: target.to_owned(),
        reason: e.to_string(),
    })?;
    f.commit()
}

/// Writes `bytes` to a new file `target`, created exclusively (`O_EXCL`): a file already there
/// (or a link planted at the name) is never replaced or followed, and is reported as
/// [`WriteError::Exists`]. On Unix the file has permissions `mode` (less the umask) from the
/// moment it exists, so a secret is never readable by others, not even while it is written.
/// The file is synced before this returns; a write that fails midway removes it.
///
/// For files that must never overwrite anything (secret keys); everything else goes through
/// [`AtomicFile`].
pub fn write_new(target: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let io = |e: std::io::Error| WriteError::Io {
        path: target.to_owned(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(target).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => WriteError::Exists {
            path: target.to_owned(),
        },
        _ => io(e),
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // The file is ours (created just now), and half a key is worse than none.
        drop(file);
        let _ = std::fs::remove_file(target);
        return Err(io(e));
    }
    Ok(())
}

/// An exclusive lock on the folder `dir` (made if need be), held until the returned file is
/// dropped: an OS lock on `dir/.lock`, so threads and other processes (two plugin instances, a
/// DAW and `refrain`) take turns at a read-compare-write. The error names the path.
pub fn lock_folder(dir: &Path) -> Result<File, (PathBuf, std::io::Error)> {
    let (file, path) = lock_file(dir)?;
    file.lock().map_err(|e| (path, e))?;
    Ok(file)
}

/// `dir/.lock`, opened (and `dir` made) for locking.
fn lock_file(dir: &Path) -> Result<(File, PathBuf), (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| (path.clone(), e))?;
    Ok((file, path))
}

/// [`lock_folder`], waiting at most `patience` for another holder to let go: a thread that must
/// keep deciding (the track check) never waits on a lock someone holds for ever. The error
/// (`TimedOut`) names the lock file.
pub fn lock_folder_within(
    dir: &Path,
    patience: std::time::Duration,
) -> Result<File, (PathBuf, std::io::Error)> {
    let (file, path) = lock_file(dir)?;
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < patience => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err((
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "another program has held the lock too long",
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err((path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo xtask fuzz` (target `bounded_reader`): a limit of `u64::MAX` overflowed
    /// the one-byte-past-the-limit read.
    #[test]
    fn the_largest_limit_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read_bounded(&path, u64::MAX).unwrap(), b"abc");
        assert_eq!(read_text_bounded(&path, u64::MAX).unwrap(), "abc");
    }

    #[test]
    fn devices_pipes_folders_and_big_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotAFile {
                    what: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = read_bounded(dir.path(), 10).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotAFile {
                    what: "a folder",
                    ..
                }
            ),
            "{e}"
        );
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let t = std::time::Instant::now();
            let e = read_bounded(&fifo, 10).unwrap_err();
            assert!(
                matches!(
                    e,
                    ReadError::NotAFile {
                        what: "a named pipe",
                        ..
                    }
                ),
                "{e}"
            );
            assert!(t.elapsed() < std::time::Duration::from_secs(1));
            // A symlink to a device is the device.
            let link = dir.path().join("link");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(matches!(
                read_bounded(&link, 10),
                Err(ReadError::NotAFile { .. })
            ));
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 1000]).unwrap();
        let e = read_bounded(&big, 999).unwrap_err();
        assert!(
            e.to_string()
                .contains("1000 bytes; the limit for this file is 999"),
            "{e}"
        );
        assert_eq!(read_bounded(&big, 1000).unwrap().len(), 1000);
        assert!(matches!(
            read_bounded(&dir.path().join("nothing"), 1),
            Err(ReadError::Missing { .. })
        ));
    }

    #[test]
    fn an_uncommitted_write_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.wav");
        std::fs::write(&target, b"original").unwrap();
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"half of a new fi").unwrap();
            // Dropped without commit, as a failed render does.
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"original");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
        write_atomic(&target, b"replaced").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"replaced");
    }

    #[test]
    fn a_failed_commit_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a folder that is not empty.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["taken"], "no partial file left behind");
    }

    #[test]
    fn write_new_never_replaces_and_starts_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret.toml");
        write_new(&target, b"first", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        assert_eq!(
            write_new(&target, b"second", 0o600),
            Err(WriteError::Exists {
                path: target.clone()
            })
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"first", "not replaced");
        #[cfg(unix)]
        {
            // A link planted at the name is not followed, even to a file that does not exist.
            let elsewhere = dir.path().join("elsewhere");
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
            assert!(matches!(
                write_new(&link, b"x", 0o600),
                Err(WriteError::Exists { .. })
            ));
            assert!(!elsewhere.exists());
        }
        assert!(matches!(
            write_new(&dir.path().join("no/such/folder/k"), b"x", 0o600),
            Err(WriteError::Io { .. })
        ));
    }
}
