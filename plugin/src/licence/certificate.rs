//! Registry certificates: who a rights holder is and what they may license.
//!
//! A root compiled into the build ([`super::roots`]) signs a certificate for each issuer key:
//! the party (name, IPI and/or ISNI numbers), its scope (ISRC registrant prefixes and/or listed
//! ISRCs and ISWCs) and its validity. Every token an issuer signs carries its certificate in the
//! authenticated footer, so a licence file is checked on its own, offline: the certificate
//! against the roots, the licence against the certified key, and the licensed track against the
//! certificate's scope. Nobody becomes a label by naming themselves one.

use super::claims::{self, ClaimError, Claims, Use};
use super::roots::Roots;
use super::token::{self, IssuerKey, Kind, SigningKey, TokenError};
use pasetors::keys::AsymmetricPublicKey;
use pasetors::version4::V4;
use serde::{Deserialize, Serialize};

/// Largest certificate Refrain reads (one is well under 2 KiB).
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Longest validity the registry gives a certificate.
pub const MAX_CERTIFICATE_DAYS: u32 = 3 * 366;

/// Who a certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// The name licences show as their issuer.
    pub name: String,
    /// Interested Party Information numbers (9 to 11 digits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipi: Vec<String>,
    /// International Standard Name Identifiers (16 characters, digits and a final X).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isni: Vec<String>,
}

/// What a certified party may license.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// ISRC registrant prefixes (country + registrant code, `GBAYE`): every recording the
    /// party registered. A self-releasing artist's own prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isrc_prefixes: Vec<String>,
    /// Single recordings (ISRC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isrcs: Vec<String>,
    /// Musical works (ISWC): a publisher's, for cover licences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iswcs: Vec<String>,
    /// Voice models (their identities) the party holds the artist's consent for: only they
    /// can license an unencrypted voice (a protected voice is proven by its sealed key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voices: Vec<String>,
}

/// A certificate's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Certificate id (the registry withdraws a certificate by it).
    pub cid: String,
    pub party: Party,
    /// The certified key (`k4.public.…`).
    pub key: String,
    pub scope: Scope,
    pub iat: String,
    pub nbf: String,
    pub exp: String,
}

/// A verified certificate: the issuer key it certifies (named as the party), and the root
/// that signed it.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub key: IssuerKey,
    pub certificate: Certificate,
    /// The id of the root key that signed the certificate.
    pub root: String,
}

/// Why a certificate, or the chain from a token to a root, does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "the issuer is not certified: key {kid} signed this without a registry certificate, \
         and only keys the registry certifies can license anything (the rights holder sends \
         its public key to the registry: refrain registry certify)"
    )]
    Missing { kid: String },
    #[error("the issuer's certificate is unreadable: {0}")]
    Token(TokenError),
    #[error(
        "the issuer's certificate is signed by root {kid}, which this build does not trust \
         (it trusts: {trusted})"
    )]
    UnknownRoot { kid: String, trusted: String },
    #[error("the issuer's certificate does not verify: it was altered or not signed by its root")]
    BadSignature,
    #[error("the issuer's certificate's contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error("the issuer's certificate has an invalid field: {0}")]
    Field(ClaimError),
    #[error("the issuer's certificate certifies key {certified}, but this is signed by key {kid}")]
    KeyMismatch { certified: String, kid: String },
}

impl From<TokenError> for CertificateError {
    fn from(e: TokenError) -> Self {
        CertificateError::Token(e)
    }
}

impl From<ClaimError> for CertificateError {
    fn from(e: ClaimError) -> Self {
        CertificateError::Field(e)
    }
}

fn field(name: &str, e: ClaimError) -> ClaimError {
    claims::bad(name, e.problem)
}

/// `GB-AYE`, `gbaye` → `GBAYE`; `None` if it is not a registrant prefix (2 letters, then 3
/// letters or digits).
pub fn normalise_prefix(s: &str) -> Option<String> {
    let p: String = s
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let b = p.as_bytes();
    let ok = b.len() == 5
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    ok.then_some(p)
}

/// An ISWC as compared: its digits and check character.
fn iswc_key(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn check_isni(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[..15].iter().all(u8::is_ascii_digit)
        && (b[15].is_ascii_digit() || b[15] == b'X')
}

impl Certificate {
    pub fn issued_at(&self) -> Result<i64, ClaimError> {
        Ok(claims::parse_time("iat", &self.iat)?.unix_timestamp())
    }

    pub fn not_before(&self) -> Result<i64, ClaimError> {
        Ok(claims::parse_time("nbf", &self.nbf)?.unix_timestamp())
    }

    pub fn expires(&self) -> Result<i64, ClaimError> {
        Ok(claims::parse_time("exp", &self.exp)?.unix_timestamp())
    }

    /// Checks every field: the party, the key, a scope that names something, dates in order.
    pub fn validate(&self) -> Result<(), ClaimError> {
        claims::check_licence_id(&self.cid).map_err(|e| field("cid", e))?;
        claims::text("party.name", &self.party.name, 256)?;
        if self.party.ipi.len() > 16 || self.party.isni.len() > 16 {
            return Err(claims::bad(
                "party",
                "names more than 16 IPI or ISNI numbers",
            ));
        }
        for ipi in &self.party.ipi {
            if !(9..=11).contains(&ipi.len()) || !ipi.bytes().all(|c| c.is_ascii_digit()) {
                return Err(claims::bad(
                    "party.ipi",
                    format!("`{ipi}` is not an IPI number (9 to 11 digits)"),
                ));
            }
        }
        for isni in &self.party.isni {
            if !check_isni(isni) {
                return Err(claims::bad(
                    "party.isni",
                    format!(
                        "`{isni}` is not an ISNI (16 characters: 15 digits, then a digit or X)"
                    ),
                ));
            }
        }
        AsymmetricPublicKey::<V4>::try_from(self.key.as_str())
            .map_err(|_| claims::bad("key", "is not a k4.public PASERK"))?;
        let s = &self.scope;
        if s.isrc_prefixes.is_empty() && s.isrcs.is_empty() && s.iswcs.is_empty() {
            return Err(claims::bad(
                "scope",
                "names nothing: give ISRC registrant prefixes, ISRCs or ISWCs",
            ));
        }
        for v in &s.voices {
            if v.len() != 64 || !v.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(claims::bad(
                    "scope.voices",
                    format!("`{v}` is not a model identity (64 lower-case hex digits)"),
                ));
            }
        }
        if s.isrc_prefixes.len() + s.isrcs.len() + s.iswcs.len() + s.voices.len() > 10_000 {
            return Err(claims::bad("scope", "names more than 10,000 entries"));
        }
        for p in &s.isrc_prefixes {
            if normalise_prefix(p).as_deref() != Some(p.as_str()) {
                return Err(claims::bad(
                    "scope.isrc_prefixes",
                    format!("`{p}` is not an ISRC registrant prefix (such as GBAYE)"),
                ));
            }
        }
        for i in &s.isrcs {
            claims::check_isrc(i).map_err(|e| field("scope.isrcs", e))?;
        }
        for w in &s.iswcs {
            claims::check_iswc(w).map_err(|e| field("scope.iswcs", e))?;
        }
        let (iat, nbf, exp) = (self.issued_at()?, self.not_before()?, self.expires()?);
        if nbf >= exp {
            return Err(claims::bad("nbf", "is not before exp"));
        }
        if iat > exp {
            return Err(claims::bad("iat", "is after exp"));
        }
        if exp - nbf > i64::from(MAX_CERTIFICATE_DAYS) * 86_400 {
            return Err(claims::bad(
                "exp",
                format!("a certificate is valid for at most {MAX_CERTIFICATE_DAYS} days"),
            ));
        }
        Ok(())
    }

    /// Whether the scope covers the recording `isrc` (normalised).
    pub fn covers_recording(&self, isrc: &str) -> bool {
        let isrc = claims::normalise_isrc(isrc);
        self.scope.isrcs.contains(&isrc)
            || self
                .scope
                .isrc_prefixes
                .iter()
                .any(|p| isrc.len() == 12 && isrc.starts_with(p.as_str()))
    }

    /// Whether the party may license the voice model with identity `identity`.
    pub fn covers_voice(&self, identity: &str) -> bool {
        self.scope
            .voices
            .iter()
            .any(|v| v.eq_ignore_ascii_case(identity))
    }

    /// Whether the scope covers the work `iswc`.
    pub fn covers_work(&self, iswc: &str) -> bool {
        let key = iswc_key(iswc);
        self.scope.iswcs.iter().any(|w| iswc_key(w) == key)
    }

    /// Whether the certificate lets its party issue `claims`: a licence to use the recording
    /// (remix, stem export) needs the recording (ISRC) in scope; a cover licence only needs the
    /// work (ISWC) or the recording.
    pub fn covers(&self, claims: &Claims) -> bool {
        let cover_only = claims
            .uses
            .iter()
            .all(|u| matches!(u, Use::Cover | Use::Live | Use::Commercial))
            && claims.uses.contains(&Use::Cover);
        self.covers_recording(&claims.track.isrc)
            || (cover_only
                && claims
                    .track
                    .iswc
                    .as_deref()
                    .is_some_and(|w| self.covers_work(w)))
    }

    /// One line: `Northern Records (IPI 00123456789): ISRC prefixes GBAYE; until 2028-01-01`.
    pub fn describe(&self) -> String {
        let mut ids = Vec::new();
        ids.extend(self.party.ipi.iter().map(|i| format!("IPI {i}")));
        ids.extend(self.party.isni.iter().map(|i| format!("ISNI {i}")));
        let ids = if ids.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        };
        let mut scope = Vec::new();
        if !self.scope.isrc_prefixes.is_empty() {
            scope.push(format!(
                "ISRC prefixes {}",
                self.scope.isrc_prefixes.join(", ")
            ));
        }
        if !self.scope.isrcs.is_empty() {
            scope.push(format!("{} ISRC(s)", self.scope.isrcs.len()));
        }
        if !self.scope.iswcs.is_empty() {
            scope.push(format!("{} ISWC(s)", self.scope.iswcs.len()));
        }
        if !self.scope.voices.is_empty() {
            scope.push(format!("{} voice(s)", self.scope.voices.len()));
        }
        let until = self
            .expires()
            .map(claims::format_date)
            .unwrap_or_else(|_| "?".into());
        format!(
            "{}{ids}: {}; certificate {} until {until}",
            self.party.name,
            scope.join("; "),
            self.cid
        )
    }
}

/// Signs a certificate with a root key (the registry's `certify`).
pub fn sign_certificate(root: &SigningKey, cert: &Certificate) -> Result<String, super::SignError> {
    cert.validate()?;
    let payload = serde_json::to_vec(cert).map_err(|e| super::SignError::Encode {
        reason: e.to_string(),
    })?;
    Ok(root.sign(Kind::Certificate, &payload)?)
}

/// Verifies a certificate against `roots` (signature and fields; not the clock or revocation,
/// which [`super::policy`] checks).
pub fn verify_certificate(text: &str, roots: &Roots) -> Result<CertifiedKey, CertificateError> {
    if text.len() > MAX_CERTIFICATE_BYTES {
        return Err(CertificateError::Token(TokenError::TooLarge {
            bytes: text.len(),
            max: MAX_CERTIFICATE_BYTES,
        }));
    }
    let untrusted = token::parse(text)?;
    let root = roots
        .find(&untrusted.kid)
        .ok_or_else(|| CertificateError::UnknownRoot {
            kid: untrusted.kid.clone(),
            trusted: roots.describe(),
        })?;
    let payload = untrusted
        .verify(root, Kind::Certificate)
        .map_err(|_| CertificateError::BadSignature)?;
    let certificate: Certificate =
        serde_json::from_slice(&payload).map_err(|e| CertificateError::Payload {
            reason: e.to_string(),
        })?;
    certificate.validate()?;
    let public = AsymmetricPublicKey::<V4>::try_from(certificate.key.as_str())
        .map_err(|_| CertificateError::Field(claims::bad("key", "is not a k4.public PASERK")))?;
    Ok(CertifiedKey {
        key: IssuerKey {
            issuer: certificate.party.name.clone(),
            kid: token::key_id(&public),
            public,
        },
        certificate,
        root: root.kid.clone(),
    })
}

/// Verifies a token an issuer signed (a licence, an issuer's revocation list): the certificate
/// in its footer against `roots`, then the token's signature with the certified key. Returns
/// the certified key and the authenticated payload.
pub fn verify_issued(
    token_text: &str,
    roots: &Roots,
    kind: Kind,
) -> Result<(CertifiedKey, Vec<u8>), CertificateError> {
    let untrusted = token::parse(token_text)?;
    let cert = untrusted
        .cert
        .as_deref()
        .ok_or_else(|| CertificateError::Missing {
            kid: untrusted.kid.clone(),
        })?;
    let certified = verify_certificate(cert, roots)?;
    if certified.key.kid != untrusted.kid {
        return Err(CertificateError::KeyMismatch {
            certified: certified.key.kid.clone(),
            kid: untrusted.kid.clone(),
        });
    }
    let payload = untrusted.verify(&certified.key, kind)?;
    Ok((certified, payload))
}
