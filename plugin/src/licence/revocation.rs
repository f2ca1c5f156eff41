//! Revocation lists, and what they withdraw.
//!
//! Two signers, each with its own standing:
//! - **the registry** (a root) withdraws certificates, issuer keys and licences. Its lists carry
//!   a sequence number; the freshness receipts ([`super::freshness`]) name the latest, so a list
//!   deleted or rolled back is noticed by every licence that asks for freshness.
//! - **an issuer** withdraws its own key and the licences it signed, nothing else. Its lists
//!   carry their own sequence. Naming another key or another key's licence does not count:
//!   matching by the issuer's *name* would let anyone with a key of the same name withdraw
//!   another party's licences.
//!
//! A list is never replaced by one with a lower sequence ([`super::store::Store`] installs
//! under a file lock).

use super::certificate::{self, CertificateError};
use super::claims::{self, ClaimError};
use super::roots::Roots;
use super::token::{self, Kind, TokenError};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// An issuer's signed revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// The issuer; it must be the certified name of the key that signs the list.
    pub iss: String,
    /// Sequence number: a list replaces an installed one of the same key only when higher.
    pub seq: u64,
    /// When the list was signed (RFC 3339).
    pub iat: String,
    /// Key ids to withdraw: only the signing key's own id counts (a key withdraws itself).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// Licence ids to withdraw: each counts only for a licence the signing key signed.
    #[serde(default)]
    pub revoked_licences: Vec<String>,
}

/// A licence the registry withdraws: by the key that signed it and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedLicence {
    pub key: String,
    pub id: String,
}

/// The registry's signed revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRevocations {
    /// Sequence number, 1 for the first list; receipts name the latest.
    pub seq: u64,
    pub iat: String,
    /// Certificate ids.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Issuer key ids (every certificate of the key).
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub licences: Vec<RevokedLicence>,
}

/// An issuer's revocation list whose signature and certificate verified, with the key that
/// signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRevocations {
    /// The id of the key that signed the list (the only key it can withdraw, and the key whose
    /// licences it can withdraw).
    pub kid: String,
    pub list: RevocationList,
}

/// The registry's list, verified, with the root that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRegistryRevocations {
    pub root: String,
    pub list: RegistryRevocations,
}

/// Either kind of verified list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyRevocations {
    Issuer(SignedRevocations),
    Registry(SignedRegistryRevocations),
}

impl AnyRevocations {
    /// The key that signed the list (an issuer's, or a root's).
    pub fn signer(&self) -> &str {
        match self {
            AnyRevocations::Issuer(s) => &s.kid,
            AnyRevocations::Registry(s) => &s.root,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            AnyRevocations::Issuer(s) => s.list.seq,
            AnyRevocations::Registry(s) => s.list.seq,
        }
    }

    /// One line for `refrain licence install`.
    pub fn describe(&self) -> String {
        match self {
            AnyRevocations::Issuer(s) => format!(
                "the revocation list {} of {} signed by {} ({} licence(s), {} key(s))",
                s.list.seq,
                s.list.iss,
                s.kid,
                s.list.revoked_licences.len(),
                s.list.revoked_keys.len()
            ),
            AnyRevocations::Registry(s) => format!(
                "the registry's revocation list {} signed by {} ({} certificate(s), {} key(s), \
                 {} licence(s))",
                s.list.seq,
                s.root,
                s.list.certificates.len(),
                s.list.keys.len(),
                s.list.licences.len()
            ),
        }
    }
}

/// Why a revocation list does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("the revocation list's contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error(
        "the revocation list names issuer `{claimed}` but is signed by the key of `{key_issuer}`"
    )]
    IssuerMismatch { claimed: String, key_issuer: String },
    #[error("the revocation list has an invalid field: {0}")]
    Claims(#[from] ClaimError),
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
    /// Issuer key ids withdrawn (by themselves or by the registry).
    pub keys: HashSet<String>,
    /// Certificate ids the registry withdrew.
    pub certificates: HashSet<String>,
    /// (id of the signing key, licence id): withdraws the licence with that id only if that
    /// key signed it.
    pub licences: HashSet<(String, String)>,
    /// Key entries that do not count (a list naming another key).
    pub ignored: Vec<IgnoredRevocation>,
    /// The sequence of the registry list installed, per root key id.
    pub registry_seq: HashMap<String, u64>,
}

impl Revoked {
    /// Adds a verified issuer list: its signing key, if the list names it, and the licence ids
    /// as withdrawn for licences of that key. Other keys it names are recorded as ignored.
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

    /// Adds the registry's verified list: everything in it counts.
    pub fn add_registry(&mut self, signed: &SignedRegistryRevocations) {
        self.certificates
            .extend(signed.list.certificates.iter().cloned());
        self.keys.extend(signed.list.keys.iter().cloned());
        self.licences.extend(
            signed
                .list
                .licences
                .iter()
                .map(|l| (l.key.clone(), l.id.clone())),
        );
        let seq = self.registry_seq.entry(signed.root.clone()).or_insert(0);
        *seq = (*seq).max(signed.list.seq);
    }

    pub fn add_any(&mut self, list: &AnyRevocations) {
        match list {
            AnyRevocations::Issuer(s) => self.add(s),
            AnyRevocations::Registry(s) => self.add_registry(s),
        }
    }

    /// Whether issuer key `kid` has been withdrawn.
    pub fn key(&self, kid: &str) -> bool {
        self.keys.contains(kid)
    }

    /// Whether the registry withdrew certificate `cid`.
    pub fn certificate(&self, cid: &str) -> bool {
        self.certificates.contains(cid)
    }

    /// Whether licence `id`, signed by key `kid`, has been withdrawn.
    pub fn licence(&self, kid: &str, id: &str) -> bool {
        self.licences.contains(&(kid.to_owned(), id.to_owned()))
    }

    /// The installed registry list's sequence for root `root` (0: none installed).
    pub fn registry_seq(&self, root: &str) -> u64 {
        self.registry_seq.get(root).copied().unwrap_or(0)
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

/// Verifies an issuer's revocation list: its certificate against `roots`, its signature with
/// the certified key, and its issuer's name. A list may be signed by the key it revokes (an
/// issuer withdrawing a compromised key); which entries count is [`Revoked::add`]'s rule.
pub fn verify_revocations(
    token_text: &str,
    roots: &Roots,
) -> Result<SignedRevocations, RevocationError> {
    let (certified, payload) = certificate::verify_issued(token_text, roots, Kind::Revocations)?;
    let list: RevocationList =
        serde_json::from_slice(&payload).map_err(|e| RevocationError::Payload {
            reason: e.to_string(),
        })?;
    if list.iss != certified.key.issuer {
        return Err(RevocationError::IssuerMismatch {
            claimed: list.iss,
            key_issuer: certified.key.issuer.clone(),
        });
    }
    claims::parse_time("iat", &list.iat)?;
    Ok(SignedRevocations {
        kid: certified.key.kid.clone(),
        list,
    })
}

/// Verifies the registry's revocation list against `roots`.
pub fn verify_registry_revocations(
    token_text: &str,
    roots: &Roots,
) -> Result<SignedRegistryRevocations, RevocationError> {
    let (root, payload) =
        token::verify_signed(token_text, roots.keys(), Kind::RegistryRevocations)?;
    let list: RegistryRevocations =
        serde_json::from_slice(&payload).map_err(|e| RevocationError::Payload {
            reason: e.to_string(),
        })?;
    claims::parse_time("iat", &list.iat)?;
    Ok(SignedRegistryRevocations {
        root: root.kid.clone(),
        list,
    })
}

/// Verifies a list of either kind: one that carries a certificate is an issuer's, one without
/// is the registry's (and then only a root's signature makes it count).
pub fn verify_any(token_text: &str, roots: &Roots) -> Result<AnyRevocations, RevocationError> {
    if token::parse(token_text)?.cert.is_some() {
        verify_revocations(token_text, roots).map(AnyRevocations::Issuer)
    } else {
        verify_registry_revocations(token_text, roots).map(AnyRevocations::Registry)
    }
}
