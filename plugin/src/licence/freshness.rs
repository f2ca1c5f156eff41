//! Freshness: state a user can delete must not extend a licence.
//!
//! The clock file and the revocation lists are plain files in the user's folder. A licence that
//! sets `max_offline_days` therefore also needs a **freshness receipt**: the registry's signed
//! time and the sequence of its latest revocation list, made for this device (`refrain registry
//! refresh`, installed with `refrain licence install`). With it, deleting the revocation lists
//! or rolling them back is seen (the installed sequence is below the receipt's), a clock turned
//! back is seen (earlier than the receipt's signed time), and a stale receipt stops the licence
//! until it is refreshed. A missing receipt, clock or revocation list fails closed for such
//! licences, with a message that says what to do.
//!
//! The receipt's signed time also repairs the clock check: a machine whose clock once ran far
//! ahead (so that every later time looked "turned back") is set right by installing a fresh
//! receipt.

use super::claims;
use super::roots::Roots;
use super::token::{self, Kind, SigningKey, TokenError};
use serde::{Deserialize, Serialize};

/// Largest receipt Refrain reads.
pub const MAX_RECEIPT_BYTES: u64 = 16 * 1024;

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The device it was made for.
    pub device: String,
    /// The registry's time when it signed (RFC 3339).
    pub iat: String,
    /// The sequence of the registry's latest revocation list at that time.
    pub revocation_seq: u64,
    /// The device's ledger head per issuer, once the usage ledger lands; empty until then.
    #[serde(default)]
    pub ledger_head: String,
}

/// A receipt whose signature verified, with the root that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    pub root: String,
    pub receipt: Receipt,
    /// `iat`, parsed.
    pub time: i64,
}

/// Why a licence that asks for freshness cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreshnessError {
    #[error(
        "this licence needs a freshness receipt no older than {max_days} days, and this machine \
         has none: send `refrain device export` to the registry (refrain registry refresh) and \
         install the receipt it returns (refrain licence install)"
    )]
    NoReceipt { max_days: u32 },
    #[error(
        "the freshness receipt is {age_days} days old; this licence allows {max_days} days \
         offline: refresh it (refrain registry refresh, then refrain licence install)"
    )]
    Stale { age_days: i64, max_days: u32 },
    #[error(
        "the registry's revocation list {have} is installed, but the freshness receipt says list \
         {need} exists: revocation state was deleted or rolled back; install the latest list \
         (refrain licence install)"
    )]
    RevocationsBehind { have: u64, need: u64 },
    #[error(
        "this machine has no record of the time it last saw (the clock file is missing or \
         unreadable): install a fresh receipt (refrain licence install) to restore it"
    )]
    NoClock,
    #[error("the freshness receipt is signed by root {receipt_root}, but the licence's issuer is certified by root {licence_root}")]
    OtherRoot {
        receipt_root: String,
        licence_root: String,
    },
}

/// Why a receipt does not verify or install.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt: {0}")]
    Token(#[from] TokenError),
    #[error("receipt: its contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error("receipt: {0}")]
    Claims(#[from] claims::ClaimError),
    #[error("receipt: it was made for device {receipt}; this machine is device {this}")]
    OtherDevice { receipt: String, this: String },
    #[error("receipt: a newer receipt (signed {installed}) is already installed")]
    Older { installed: String },
}

/// Signs a receipt with a root key (the registry's `refresh`).
pub fn sign_receipt(root: &SigningKey, receipt: &Receipt) -> Result<String, super::SignError> {
    claims::parse_time("iat", &receipt.iat)?;
    let payload = serde_json::to_vec(receipt).map_err(|e| super::SignError::Encode {
        reason: e.to_string(),
    })?;
    Ok(root.sign(Kind::Receipt, &payload)?)
}

/// Verifies a receipt against `roots`.
pub fn verify_receipt(text: &str, roots: &Roots) -> Result<SignedReceipt, ReceiptError> {
    let (root, payload) = token::verify_signed(text, roots.keys(), Kind::Receipt)?;
    let receipt: Receipt = serde_json::from_slice(&payload).map_err(|e| ReceiptError::Payload {
        reason: e.to_string(),
    })?;
    let time = claims::parse_time("iat", &receipt.iat)?.unix_timestamp();
    Ok(SignedReceipt {
        root: root.kid.clone(),
        receipt,
        time,
    })
}

/// The freshness check of a licence with `max_days` offline, certified under root
/// `licence_root`: the installed receipt, the registry list it names, and the clock file.
pub fn check(
    max_days: u32,
    licence_root: &str,
    receipt: Option<&SignedReceipt>,
    installed_registry_seq: u64,
    clock_present: bool,
    now: i64,
) -> Result<(), FreshnessError> {
    let Some(r) = receipt else {
        return Err(FreshnessError::NoReceipt { max_days });
    };
    if r.root != licence_root {
        return Err(FreshnessError::OtherRoot {
            receipt_root: r.root.clone(),
            licence_root: licence_root.to_owned(),
        });
    }
    if !clock_present {
        return Err(FreshnessError::NoClock);
    }
    let age = now - r.time;
    if age > i64::from(max_days) * 86_400 {
        return Err(FreshnessError::Stale {
            age_days: age / 86_400,
            max_days,
        });
    }
    if installed_registry_seq < r.receipt.revocation_seq {
        return Err(FreshnessError::RevocationsBehind {
            have: installed_registry_seq,
            need: r.receipt.revocation_seq,
        });
    }
    Ok(())
}
