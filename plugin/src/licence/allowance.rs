//! The pending allowance (shared/DECISIONS.md §5): how much input that has not (yet) matched
//! the licensed track a licence lets a protected remix model process.
//!
//! Matching starts as *pending*. Pending seconds are charged to the licence's allowance as
//! they play, [`DAILY_SECONDS`] a UTC day; when the input then matches they are refunded
//! (pending time that ends in a match is not charged). With the allowance spent, the model
//! stays dry until the input matches. The book is kept in the licence folder, so
//! reactivating the plugin, reloading the project or starting a new bounce grants nothing
//! new: the 20 s each activation used to get was the last leak of the fingerprint gate.
//!
//! The book is signed with the device key and fails closed: a missing, unreadable, edited or
//! foreign book, or one dated after today (a clock turned back), leaves no allowance for the
//! rest of the day. A new device starts with a fresh book. What an offline file cannot stop
//! (README, "Offline state"): a copy of an earlier book put back the same day restores what
//! was spent since; the usage ledger's registry-signed head (a later issue) closes that.

use super::device::Device;
use super::policy::{Clock, SystemClock};
use super::store::key_tag;
use super::token::{self, Kind};
use crate::files;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Seconds of unmatched input a licence lets through a day.
pub const DAILY_SECONDS: u32 = 120;
/// Largest book Refrain reads.
pub const MAX_BOOK_BYTES: u64 = 256 * 1024;
/// Licences one day's book holds (a book over it is damaged).
const MAX_LICENCES_A_DAY: usize = 2_000;
/// The longest a charge waits for the licence folder's lock.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
/// The book's file in the licence folder.
pub const BOOK_FILE: &str = "allowance.paseto";

/// Why the book cannot be kept. Every one of these leaves no allowance (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowanceError {
    #[error(
        "the allowance book {} is missing or unreadable ({reason}): until tomorrow (UTC) a \
         protected model stays dry until the input matches the licensed track",
        path.display()
    )]
    Lost { path: PathBuf, reason: String },
    #[error("cannot write the allowance book {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error(
        "cannot write the allowance book: another program has held the licence folder's lock \
         {} too long",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("the device keys cannot be read: {0}")]
    Device(String),
}

/// Why the AI path is off when the allowance is spent, with the book's problem if it has one
/// (the plugin's log and editor).
pub fn spent_reason(problem: Option<String>) -> String {
    let reason = super::LicenceError::AllowanceSpent {
        seconds: DAILY_SECONDS,
    }
    .to_string();
    match problem {
        Some(p) => format!("{reason} ({p})"),
        None => reason,
    }
}

/// One UTC day's spending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Book {
    /// The device whose key signs the book.
    device: String,
    /// Days since 1970-01-01 (UTC).
    day: i64,
    /// Every licence's allowance is spent for `day`: the book was lost and started over.
    all_spent: bool,
    /// Seconds spent on `day`, by licence ([`licence_key`]).
    spent: BTreeMap<String, u32>,
}

/// The UTC day of a Unix time.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

/// The book's key for a licence: its issuer and id (hashed, so the book names no one).
pub fn licence_key(issuer: &str, licence_id: &str) -> String {
    key_tag(&format!("{issuer}\u{0}{licence_id}"))
}

/// The allowance book of the licence folder at `root`, kept with `device`'s key.
pub struct Allowances {
    path: PathBuf,
    device: Device,
}

impl Allowances {
    pub fn new(root: &Path, device: Device) -> Allowances {
        Allowances {
            path: root.join(BOOK_FILE),
            device,
        }
    }

    /// Starts a fresh book (a new device): every licence has its whole allowance today.
    pub fn start_fresh(&self, now: i64) -> Result<(), AllowanceError> {
        start_fresh(
            self.path.parent().unwrap_or(Path::new(".")),
            &self.device,
            now,
        )
    }

    /// Seconds left today for `licence` ([`licence_key`]); 0 when the book is lost.
    pub fn remaining(&self, licence: &str, now: i64) -> u32 {
        match self.read(now) {
            Ok(book) => left(&book, licence),
            Err(_) => 0,
        }
    }

    /// Charges `seconds` to `licence` (refunds them when negative) and returns what is left
    /// today. A lost book is started over with today spent (and the error says so); a refund
    /// never takes the day under zero spent.
    pub fn spend(&self, licence: &str, seconds: i64, now: i64) -> Result<u32, AllowanceError> {
        let _lock = self.lock()?;
        let (mut book, lost) = match self.read(now) {
            Ok(book) => (book, None),
            Err(e) => (
                Book {
                    device: self.device.public().id,
                    day: day_of(now),
                    all_spent: true,
                    spent: BTreeMap::new(),
                },
                Some(e),
            ),
        };
        if book.spent.len() >= MAX_LICENCES_A_DAY && !book.spent.contains_key(licence) {
            // No room to record it: nothing left (fail closed).
            return Ok(0);
        }
        if !book.all_spent {
            let entry = book.spent.entry(licence.to_owned()).or_insert(0);
            let total = (i64::from(*entry) + seconds).clamp(0, i64::from(u32::MAX));
            *entry = total as u32;
        }
        self.write(&book)?;
        match lost {
            Some(e) => Err(e),
            None => Ok(left(&book, licence)),
        }
    }

    /// The licence folder's lock, waited for at most [`LOCK_PATIENCE`]: the track check calls
    /// this every unmatched second and must never hang on it (a held lock is no allowance).
    fn lock(&self) -> Result<std::fs::File, AllowanceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        files::lock_folder_within(dir, LOCK_PATIENCE).map_err(|(path, e)| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                AllowanceError::Busy { path }
            } else {
                AllowanceError::Write {
                    path,
                    reason: e.to_string(),
                }
            }
        })
    }

    /// Today's book: verified, this device's, not from the future; a book of an earlier day
    /// is today's fresh one.
    fn read(&self, now: i64) -> Result<Book, AllowanceError> {
        let lost = |reason: String| AllowanceError::Lost {
            path: self.path.clone(),
            reason,
        };
        let text = files::read_text_bounded(&self.path, MAX_BOOK_BYTES)
            .map_err(|e| lost(e.to_string()))?;
        let key = self.device.issuer_key();
        let (_, payload) =
            token::verify_signed(text.trim(), std::slice::from_ref(&key), Kind::Allowance)
                .map_err(|e| lost(format!("it is not signed by this device: {e}")))?;
        let book: Book =
            serde_json::from_slice(&payload).map_err(|e| lost(format!("it is damaged: {e}")))?;
        if book.device != self.device.public().id {
            return Err(lost("it is another device's".into()));
        }
        if book.spent.len() > MAX_LICENCES_A_DAY {
            return Err(lost("it lists too many licences".into()));
        }
        let today = day_of(now);
        if book.day > today {
            return Err(lost(
                "it is dated after today: the clock has been turned back".into(),
            ));
        }
        if book.day < today {
            return Ok(Book {
                device: book.device,
                day: today,
                all_spent: false,
                spent: BTreeMap::new(),
            });
        }
        Ok(book)
    }

    fn write(&self, book: &Book) -> Result<(), AllowanceError> {
        write_book(&self.path, &self.device, book)
    }
}

/// Starts a fresh book in the licence folder at `root` for `device`, which was just made
/// there (`Store::device` calls this with the device it created, under the device lock).
pub fn start_fresh(root: &Path, device: &Device, now: i64) -> Result<(), AllowanceError> {
    let path = root.join(BOOK_FILE);
    let _lock = files::lock_folder_within(root, LOCK_PATIENCE).map_err(|(path, e)| {
        AllowanceError::Write {
            path,
            reason: e.to_string(),
        }
    })?;
    write_book(
        &path,
        device,
        &Book {
            device: device.public().id,
            day: day_of(now),
            all_spent: false,
            spent: BTreeMap::new(),
        },
    )
}

fn write_book(path: &Path, device: &Device, book: &Book) -> Result<(), AllowanceError> {
    let werr = |reason: String| AllowanceError::Write {
        path: path.to_owned(),
        reason,
    };
    let payload = serde_json::to_vec(book).map_err(|e| werr(e.to_string()))?;
    let text = device
        .sign(Kind::Allowance, &payload)
        .map_err(|e| werr(e.to_string()))?;
    files::write_atomic(path, text.as_bytes()).map_err(|e| werr(e.to_string()))
}

fn left(book: &Book, licence: &str) -> u32 {
    let full = book.spent.len() >= MAX_LICENCES_A_DAY && !book.spent.contains_key(licence);
    if book.all_spent || full {
        return 0;
    }
    DAILY_SECONDS.saturating_sub(book.spent.get(licence).copied().unwrap_or(0))
}

/// A licence's allowance in the licence folder, as the fingerprint matcher charges it
/// ([`super::fingerprint::PendingBook`]). Runs on the matcher's thread, never the audio
/// thread.
pub struct LicenceAllowance {
    book: Allowances,
    licence: String,
    /// The latest error, for the log.
    error: Option<AllowanceError>,
    /// What was left at the latest write, and the seconds charged since that another program
    /// holding the folder's lock kept from being written.
    left: Option<u32>,
    owed: i64,
}

/// Seconds a charge may stay owed while another program holds the licence folder's lock (a
/// second plugin instance, `refrain render` writing its own charges on a busy machine); past
/// this, nothing is left until the book can be written. A program that holds the lock for ever
/// gets no more than these.
pub const OWED_WHILE_BUSY_SECONDS: i64 = 5;
/// Attempts at the first read (the activation's, off the audio thread), [`LOCK_PATIENCE`] each,
/// before a busy lock counts as nothing left.
const FIRST_READ_ATTEMPTS: u32 = 6;

impl LicenceAllowance {
    /// `licence`'s allowance (its key, [`licence_key`]) in `book`.
    pub fn new(book: Allowances, licence: String) -> LicenceAllowance {
        LicenceAllowance {
            book,
            licence,
            error: None,
            left: None,
            owed: 0,
        }
    }
}

impl super::fingerprint::PendingBook for LicenceAllowance {
    fn spend(&mut self, seconds: i32) -> u32 {
        let charge = self.owed + i64::from(seconds);
        let attempts = if self.left.is_none() {
            FIRST_READ_ATTEMPTS
        } else {
            1
        };
        let mut result = self.book.spend(&self.licence, charge, SystemClock.now());
        for _ in 1..attempts {
            if !matches!(result, Err(AllowanceError::Busy { .. })) {
                break;
            }
            result = self.book.spend(&self.licence, charge, SystemClock.now());
        }
        match result {
            Ok(left) => {
                self.error = None;
                self.owed = 0;
                self.left = Some(left);
                left
            }
            // Busy: owed, and taken off what was left, until the book can be written again.
            Err(e @ AllowanceError::Busy { .. }) => {
                self.owed = charge;
                let owed = u32::try_from(charge.max(0)).unwrap_or(u32::MAX);
                match self.left {
                    Some(left) if charge <= OWED_WHILE_BUSY_SECONDS => {
                        self.error = None;
                        left.saturating_sub(owed)
                    }
                    _ => {
                        self.error = Some(e);
                        0
                    }
                }
            }
            Err(e) => {
                self.error = Some(e);
                0
            }
        }
    }

    fn problem(&self) -> Option<String> {
        self.error.as_ref().map(ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::licence::store::Store;

    const NOW: i64 = 1_800_000_000;

    fn book_of(store: &Store) -> Allowances {
        Allowances::new(store.root(), store.device().unwrap())
    }

    #[test]
    fn a_new_device_starts_with_the_whole_allowance_and_spending_and_refunds_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let now = SystemClock.now();
        let book = book_of(&store);
        let a = licence_key("Northern Records", "a");
        let b = licence_key("Northern Records", "b");
        assert_eq!(book.remaining(&a, now), DAILY_SECONDS);
        assert_eq!(book.spend(&a, 30, now).unwrap(), DAILY_SECONDS - 30);
        // Kept in the folder: a new handle (a new activation) sees it.
        assert_eq!(book_of(&store).remaining(&a, now), DAILY_SECONDS - 30);
        // Each licence its own; refunds never go under zero spent.
        assert_eq!(book.remaining(&b, now), DAILY_SECONDS);
        assert_eq!(book.spend(&a, -1_000, now).unwrap(), DAILY_SECONDS);
        assert_eq!(book.spend(&a, 1_000, now).unwrap(), 0);
        // The next UTC day starts afresh.
        assert_eq!(book.remaining(&a, now + 86_400), DAILY_SECONDS);
        // Another issuer's licence with the same id is another licence.
        assert_ne!(a, licence_key("Someone Else", "a"));
    }

    #[test]
    fn a_deleted_edited_foreign_or_future_book_leaves_no_allowance_until_the_next_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let book = book_of(&store);
        let a = licence_key("Northern Records", "a");
        book.start_fresh(NOW).unwrap();
        assert_eq!(book.remaining(&a, NOW), DAILY_SECONDS);
        let path = dir.path().join(BOOK_FILE);
        let good = std::fs::read_to_string(&path).unwrap();

        // Deleted: nothing left today; spending says why and starts a spent book.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(book.remaining(&a, NOW), 0);
        let e = book.spend(&a, 1, NOW).unwrap_err();
        assert!(e.to_string().contains("missing or unreadable"), "{e}");
        assert_eq!(book.remaining(&a, NOW), 0, "the restarted book is spent");
        assert_eq!(book.remaining(&a, NOW + 86_400), DAILY_SECONDS);

        // Edited: one character of the signed payload changed.
        let mut edited = good.clone().into_bytes();
        let at = edited.len() / 2;
        edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
        std::fs::write(&path, &edited).unwrap();
        assert_eq!(book.remaining(&a, NOW), 0);

        // Another device's book (copied from another folder), however fresh.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Store::at(other_dir.path());
        book_of(&other).start_fresh(NOW).unwrap();
        std::fs::copy(other_dir.path().join(BOOK_FILE), &path).unwrap();
        assert_eq!(book.remaining(&a, NOW), 0);

        // Dated after today: the clock was turned back.
        std::fs::write(&path, &good).unwrap();
        assert_eq!(book.remaining(&a, NOW), DAILY_SECONDS);
        assert_eq!(book.remaining(&a, NOW - 86_400), 0);

        // Not a regular file, or too large: refused at once, nothing left.
        #[cfg(unix)]
        {
            std::fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
            assert_eq!(book.remaining(&a, NOW), 0);
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(&path, vec![b'x'; MAX_BOOK_BYTES as usize + 1]).unwrap();
        assert_eq!(book.remaining(&a, NOW), 0);
    }

    /// The track check charges every unmatched second under the licence folder's lock; a
    /// program that holds the lock for ever used to stop the check for good (and with it every
    /// charge). Now a charge waits at most `LOCK_PATIENCE`; a few seconds are owed while the
    /// lock is busy (another instance writing its own charges on a loaded machine turned the AI
    /// path off until a match), then nothing is left; what was owed is written once the lock
    /// is free.
    #[test]
    fn a_lock_held_for_ever_is_no_allowance_and_no_hang() {
        use crate::licence::fingerprint::PendingBook;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let mut charged =
            LicenceAllowance::new(book_of(&store), licence_key("Northern Records", "a"));
        assert_eq!(charged.spend(0), DAILY_SECONDS);
        let held = crate::files::lock_folder(dir.path()).unwrap();
        let t0 = std::time::Instant::now();
        for owed in 1..=OWED_WHILE_BUSY_SECONDS as u32 {
            assert_eq!(charged.spend(1), DAILY_SECONDS - owed);
            assert_eq!(charged.problem(), None);
        }
        assert_eq!(charged.spend(1), 0, "owed past the bound");
        assert!(t0.elapsed() < LOCK_PATIENCE * 12, "{:?}", t0.elapsed());
        assert!(
            charged
                .problem()
                .unwrap()
                .contains("held the licence folder's lock"),
            "{:?}",
            charged.problem()
        );
        drop(held);
        let owed = OWED_WHILE_BUSY_SECONDS as u32 + 1;
        assert_eq!(
            charged.spend(1),
            DAILY_SECONDS - owed - 1,
            "the owed seconds were written"
        );
        // A lock busy at the first read is waited for longer (an activation, off the audio
        // thread) and, held throughout, leaves nothing.
        let mut fresh =
            LicenceAllowance::new(book_of(&store), licence_key("Northern Records", "b"));
        let held = crate::files::lock_folder(dir.path()).unwrap();
        assert_eq!(fresh.spend(0), 0);
        drop(held);
        assert_eq!(fresh.spend(0), DAILY_SECONDS);
    }

    #[test]
    fn concurrent_charges_all_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        book_of(&store).start_fresh(NOW).unwrap();
        let a = licence_key("Northern Records", "a");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let book = book_of(&store);
                    for _ in 0..10 {
                        book.spend(&a, 1, NOW).unwrap();
                    }
                });
            }
        });
        assert_eq!(book_of(&store).remaining(&a, NOW), DAILY_SECONDS - 40);
    }
}
