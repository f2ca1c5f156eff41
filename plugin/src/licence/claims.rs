//! The claims a licence carries, and the validation of every one of them.
//!
//! The payload is JSON with PASETO's registered claims (`iss`, `sub`, `aud`, `jti`, `iat`,
//! `nbf`, `exp`, as RFC 3339 times) and Refrain's own: the track, the allowed uses and models,
//! the territories and the revenue split (shared/RIGHTS.md).

use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The audience every Refrain licence names.
pub const AUDIENCE: &str = "refrain";

/// Basis points a revenue split must add up to.
pub const SPLIT_TOTAL_BP: u32 = 10_000;

/// Longest grace period a licence may grant.
pub const MAX_GRACE_DAYS: u32 = 365;

/// Longest reference fingerprint (in sub-fingerprints): about 2 hours of audio.
pub const MAX_FINGERPRINT_ITEMS: usize = 60_000;

/// What a licence allows the track to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// An AI cover: an artist's voice model applied to other audio.
    Cover,
    /// A remix model applied to the licensed recording or its stems.
    Remix,
    /// Use in real time (on stage, monitoring), not only in offline bounces.
    Live,
    /// Exporting separated stems.
    StemExport,
    /// Commercial release of the result.
    Commercial,
}

impl Use {
    pub const ALL: [Use; 5] = [
        Use::Cover,
        Use::Remix,
        Use::Live,
        Use::StemExport,
        Use::Commercial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Use::Cover => "cover",
            Use::Remix => "remix",
            Use::Live => "live",
            Use::StemExport => "stem-export",
            Use::Commercial => "commercial",
        }
    }

    pub fn parse(s: &str) -> Option<Use> {
        Use::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The licensed recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// International Standard Recording Code, 12 characters without hyphens.
    pub isrc: String,
    pub title: String,
    pub artists: Vec<String>,
    /// The release the recording appears on.
    pub release: String,
    /// International Standard Musical Work Code of the composition, `T-123.456.789-0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iswc: Option<String>,
    /// Reference fingerprint of the licensed audio: base64 of little-endian u32
    /// sub-fingerprints (see [`crate::licence::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The licensed audio's loudness (RMS of its non-silent seconds, dBFS): silence is judged
    /// against it, so another track played quietly is not taken for silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_dbfs: Option<i16>,
    /// The licensed audio's tuning: how far its pitches sit from the A440 semitone grid, in
    /// cents (-50..50, [`crate::licence::tuning::tuning_cents`]); a pitch shift between
    /// semitones is undone against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_cents: Option<i8>,
    /// Reference fingerprints of the left and right channels (stereo recordings): each
    /// non-silent input channel must match its own, so the licensed track on one side cannot
    /// carry another track on the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_left: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_right: Option<String>,
    /// A label's stem pack (shared/DECISIONS.md §5): a reference per stem supplied for the
    /// remix; the input matches when it matches the recording or any of its stems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stems: Vec<StemReference>,
}

/// One stem of a stem pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemReference {
    /// What it is ("vocals", "drums", ...).
    pub name: String,
    /// Its reference fingerprint (of its downmix), encoded as [`Track::fingerprint`].
    pub fingerprint: String,
}

/// Most stems a licence's stem pack lists.
pub const MAX_STEMS: usize = 16;

/// A model the licence covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelGrant {
    /// The manifest's `model.id`.
    pub id: String,
    /// The model's identity (hex SHA-256 over its manifest and every file it lists, as
    /// `refrain model info` prints it): a model with any file swapped is not covered.
    pub sha256: String,
}

/// One party of the revenue split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub party: String,
    /// `artist`, `featured-artist`, `songwriter`, `composer`, `lyricist`, `producer`,
    /// `publisher`, `label` or `other`.
    pub role: String,
    /// Interested Party Information number, where known (9 to 11 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipi: Option<String>,
    /// Share in basis points (1/100 of a percent); all shares add up to 10,000.
    pub share_bp: u32,
}

/// Roles a split may name.
pub const ROLES: [&str; 9] = [
    "artist",
    "featured-artist",
    "songwriter",
    "composer",
    "lyricist",
    "producer",
    "publisher",
    "label",
    "other",
];

/// Everything a licence says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The rights holder that issued the licence.
    pub iss: String,
    /// The licensee.
    pub sub: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// Licence id.
    pub jti: String,
    pub iat: String,
    pub nbf: String,
    pub exp: String,
    /// Days after `exp` during which the licence still works, with a warning.
    pub grace_days: u32,
    pub track: Track,
    pub uses: Vec<Use>,
    pub models: Vec<ModelGrant>,
    /// ISO 3166-1 alpha-2 codes, or `WORLD`.
    pub territories: Vec<String>,
    /// Where the licensee is (ISO 3166-1 alpha-2), as the issuer attests it. A licence limited
    /// to some territories needs it: the territory check reads only this signed statement,
    /// never the user's machine (its environment, settings or locale are the user's to set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensee_territory: Option<String>,
    pub split: Vec<Share>,
    /// The devices the licence is bound to (ids from `refrain device export`: a performer's
    /// main and backup rigs). It counts on no other machine.
    #[serde(default)]
    pub devices: Vec<String>,
    /// When set, the licence needs a registry freshness receipt no older than this many days
    /// (and the revocation state the receipt names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_offline_days: Option<u32>,
    /// Content keys of the protected models the licence names, each sealed to one of its
    /// devices ([`crate::licence::sealing`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_keys: Vec<crate::licence::sealing::SealedKey>,
}

/// Most devices one licence binds.
pub const MAX_DEVICES: usize = 16;

/// Longest `max_offline_days`.
pub const MAX_OFFLINE_DAYS: u32 = 365;

/// Why claims are not acceptable. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ClaimError {
    pub field: String,
    pub problem: String,
}

pub(crate) fn bad(field: impl Into<String>, problem: impl Into<String>) -> ClaimError {
    ClaimError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parses an RFC 3339 time.
pub fn parse_time(field: &str, s: &str) -> Result<OffsetDateTime, ClaimError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| bad(field, format!("`{s}` is not an RFC 3339 time")))
}

/// Formats a Unix time as RFC 3339 (UTC, whole seconds).
pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Formats a Unix time as a date, `2027-01-31`.
pub fn format_date(unix: i64) -> String {
    let s = format_time(unix);
    s.get(..10).map(str::to_owned).unwrap_or(s)
}

/// A character that must not appear in a name shown to people: a control character (Unicode
/// general category Cc) or a format character (Cf: the bidi embeddings, overrides, isolates
/// and marks U+061C, U+200E..U+200F, U+202A..U+202E and U+2066..U+2069, zero-width spaces,
/// U+2060..U+2064, the soft hyphen U+00AD, the byte-order mark U+FEFF, tag characters, ...).
/// Such a character changes how a name displays without being seen: U+202E shows the rest of
/// a licensee's name reversed. The categories come from `unicode-general-category`.
///
/// The one exception is U+200C ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER between two
/// visible non-ASCII characters: Persian, Arabic and Indic names need them
/// (`"می\u{200C}خواهم"`), and so do emoji sequences (`"👩\u{200D}🎤"`). At either end of a
/// name, or next to an ASCII character (`"Art\u{200D}ist"`), a space or another hidden
/// character, a joiner only makes a look-alike of another name, and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenChar(pub char);

const ZWNJ: char = '\u{200C}';
const ZWJ: char = '\u{200D}';

/// Control (Cc) or format (Cf).
fn is_hidden(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory};
    matches!(
        get_general_category(c),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// A character a joiner may stand next to: visible and not ASCII.
fn joinable(c: char) -> bool {
    !c.is_ascii() && !c.is_whitespace() && !is_hidden(c)
}

impl HiddenChar {
    /// The first hidden character in `s`, if any.
    pub fn find(s: &str) -> Option<HiddenChar> {
        let chars: Vec<char> = s.chars().collect();
        let joins = |i: usize| {
            i > 0 && joinable(chars[i - 1]) && chars.get(i + 1).copied().is_some_and(joinable)
        };
        chars
            .iter()
            .enumerate()
            .find(|&(i, &c)| is_hidden(c) && !(matches!(c, ZWNJ | ZWJ) && joins(i)))
            .map(|(_, &c)| HiddenChar(c))
    }
}

impl fmt::Display for HiddenChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            ZWNJ => {
                "a zero-width non-joiner, allowed only between two non-ASCII letters or symbols"
            }
            ZWJ => "a zero-width joiner, allowed only between two non-ASCII letters or symbols",
            c if c.is_control() => "a control character",
            _ => "a bidi/format control",
        };
        write!(f, "U+{:04X} ({kind})", u32::from(self.0))
    }
}

/// A human-readable text field: not blank, at most `max` characters, and nothing that hides
/// how it displays ([`HiddenChar`]).
pub(crate) fn text(field: &str, s: &str, max: usize) -> Result<(), ClaimError> {
    if s.trim().is_empty() {
        return Err(bad(field, "is empty"));
    }
    if s.chars().count() > max {
        return Err(bad(field, format!("is longer than {max} characters")));
    }
    if let Some(c) = HiddenChar::find(s) {
        return Err(bad(field, format!("contains {c}; remove it")));
    }
    Ok(())
}

/// An ISO 3166-1 alpha-2 code's shape: two upper-case letters.
fn is_alpha2(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|c| c.is_ascii_uppercase())
}

/// ISRC: country (2 letters), registrant (3 letters or digits), year (2 digits), designation
/// (5 digits), upper case, no hyphens.
pub fn check_isrc(s: &str) -> Result<(), ClaimError> {
    let b = s.as_bytes();
    let ok = b.len() == 12
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..5]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b[5..].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(bad(
            "track.isrc",
            format!("`{s}` is not an ISRC (12 characters such as GBAYE2600001)"),
        ))
    }
}

/// Normalises a human-written ISRC (`gb-aye-26-00001`) to the 12-character form.
pub fn normalise_isrc(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// ISWC: `T-123.456.789-C`, with the check digit verified.
pub fn check_iswc(s: &str) -> Result<(), ClaimError> {
    let digits: Vec<u32> = s
        .chars()
        .filter(|c| c.is_ascii_digit())
        .filter_map(|c| c.to_digit(10))
        .collect();
    let shape_ok = s.len() == 15
        && s.starts_with("T-")
        && s.as_bytes()[5] == b'.'
        && s.as_bytes()[9] == b'.'
        && s.as_bytes()[13] == b'-'
        && digits.len() == 10;
    if !shape_ok {
        return Err(bad(
            "track.iswc",
            format!("`{s}` is not an ISWC (T-123.456.789-C)"),
        ));
    }
    let sum: u32 = 1 + digits[..9]
        .iter()
        .enumerate()
        .map(|(i, d)| d * (i as u32 + 1))
        .sum::<u32>();
    let check = (10 - sum % 10) % 10;
    if check != digits[9] {
        return Err(bad(
            "track.iswc",
            format!("`{s}` has a wrong check digit (expected {check})"),
        ));
    }
    Ok(())
}

/// Licence ids: 1 to 128 characters of letters, digits, `-`, `_`, `.`.
pub fn check_licence_id(s: &str) -> Result<(), ClaimError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !s.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "jti",
            format!("`{s}` is not a licence id (letters, digits, `-`, `_`, `.`; at most 128)"),
        ))
    }
}

fn check_sha256(field: &str, s: &str) -> Result<(), ClaimError> {
    if s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        Ok(())
    } else {
        Err(bad(field, "is not a lower-case hex SHA-256"))
    }
}

/// Seconds of [`crate::synth::song`] (seed 1) whose fingerprint [`Claims::example`] carries.
pub const EXAMPLE_TRACK_SECONDS: f64 = 30.0;

/// The reference fingerprint of [`Claims::example`]'s track, computed once.
fn example_fingerprint() -> String {
    static FP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FP.get_or_init(|| {
        let rate = 48_000;
        let song = crate::synth::song(1, EXAMPLE_TRACK_SECONDS, rate);
        let fp = crate::licence::fingerprint::compute(&song, rate)
            .expect("the synthesised song fingerprints");
        crate::licence::fingerprint::encode(&fp)
    })
    .clone()
}

impl Claims {
    /// A valid licence from `issuer` for one model: the track "Northern Lights" by Aurora Vale
    /// (ISRC GBAYE2600001; its reference fingerprint is that of the synthesised stand-in the
    /// tests play, the first [`EXAMPLE_TRACK_SECONDS`] of `synth::song(1, ..)`), uses `remix`
    /// and `live`, worldwide, the whole split to the artist, valid from a day before `now`
    /// until `exp`, no grace. For tests, benches and demos; change the fields a case is about.
    pub fn example(issuer: &str, id: &str, model: ModelGrant, now: i64, exp: i64) -> Claims {
        Claims {
            iss: issuer.into(),
            sub: "DJ Example".into(),
            aud: AUDIENCE.into(),
            jti: id.into(),
            iat: format_time(now - 86_400),
            nbf: format_time(now - 86_400),
            exp: format_time(exp),
            grace_days: 0,
            track: Track {
                isrc: "GBAYE2600001".into(),
                title: "Northern Lights".into(),
                artists: vec!["Aurora Vale".into()],
                release: "Northern Lights (Single)".into(),
                iswc: None,
                fingerprint: Some(example_fingerprint()),
                loudness_dbfs: None,
                tuning_cents: None,
                fingerprint_left: None,
                fingerprint_right: None,
                stems: Vec::new(),
            },
            uses: vec![Use::Remix, Use::Live],
            models: vec![model],
            territories: vec!["WORLD".into()],
            licensee_territory: None,
            split: vec![Share {
                party: "Aurora Vale".into(),
                role: "artist".into(),
                ipi: None,
                share_bp: SPLIT_TOTAL_BP,
            }],
            devices: Vec::new(),
            max_offline_days: None,
            sealed_keys: Vec::new(),
        }
    }

    pub fn issued_at(&self) -> Result<i64, ClaimError> {
        Ok(parse_time("iat", &self.iat)?.unix_timestamp())
    }

    pub fn not_before(&self) -> Result<i64, ClaimError> {
        Ok(parse_time("nbf", &self.nbf)?.unix_timestamp())
    }

    pub fn expires(&self) -> Result<i64, ClaimError> {
        Ok(parse_time("exp", &self.exp)?.unix_timestamp())
    }

    /// End of the grace period (Unix seconds).
    pub fn grace_end(&self) -> Result<i64, ClaimError> {
        Ok(self.expires()? + i64::from(self.grace_days) * 86_400)
    }

    /// The reference fingerprint, decoded.
    pub fn reference_fingerprint(&self) -> Result<Option<Vec<u32>>, ClaimError> {
        let Some(b64) = &self.track.fingerprint else {
            return Ok(None);
        };
        crate::licence::fingerprint::decode(b64)
            .map(Some)
            .map_err(|e| bad("track.fingerprint", e))
    }

    /// The left and right channels' reference fingerprints, when the licence has both.
    pub fn channel_references(
        &self,
    ) -> Result<Option<crate::licence::fingerprint::ChannelReferences>, ClaimError> {
        let decode = |field: &str, v: &Option<String>| -> Result<Option<Vec<u32>>, ClaimError> {
            v.as_deref()
                .map(crate::licence::fingerprint::decode)
                .transpose()
                .map_err(|e| bad(field, e))
        };
        let left = decode("track.fingerprint_left", &self.track.fingerprint_left)?;
        let right = decode("track.fingerprint_right", &self.track.fingerprint_right)?;
        Ok(left.zip(right))
    }

    /// The stem pack's references, decoded (none without a stem pack).
    pub fn stem_references(&self) -> Result<Vec<Vec<u32>>, ClaimError> {
        self.track
            .stems
            .iter()
            .map(|s| {
                crate::licence::fingerprint::decode(&s.fingerprint)
                    .map_err(|e| bad("track.stems.fingerprint", e))
            })
            .collect()
    }

    /// Checks every claim (not the audience, the signature or the clock; see
    /// [`crate::licence::policy`]).
    pub fn validate(&self) -> Result<(), ClaimError> {
        text("iss", &self.iss, 256)?;
        text("sub", &self.sub, 256)?;
        check_licence_id(&self.jti)?;
        let iat = self.issued_at()?;
        let nbf = self.not_before()?;
        let exp = self.expires()?;
        if nbf >= exp {
            return Err(bad("nbf", "is not before exp"));
        }
        if iat > exp {
            return Err(bad("iat", "is after exp"));
        }
        if self.grace_days > MAX_GRACE_DAYS {
            return Err(bad(
                "grace_days",
                format!("{} is more than {MAX_GRACE_DAYS}", self.grace_days),
            ));
        }

        let t = &self.track;
        check_isrc(&t.isrc)?;
        text("track.title", &t.title, 512)?;
        text("track.release", &t.release, 512)?;
        if t.artists.is_empty() || t.artists.len() > 64 {
            return Err(bad("track.artists", "must name 1 to 64 artists"));
        }
        if t.tuning_cents.is_some_and(|c| !(-50..=50).contains(&c)) {
            return Err(bad("track.tuning_cents", "must be -50..50 cents"));
        }
        for a in &t.artists {
            text("track.artists", a, 256)?;
        }
        if let Some(iswc) = &t.iswc {
            check_iswc(iswc)?;
        }
        let reference = self.reference_fingerprint()?;
        if self.track.fingerprint_left.is_some() != self.track.fingerprint_right.is_some() {
            return Err(bad(
                "track.fingerprint_left",
                "and track.fingerprint_right come together (a stereo recording's two channels)",
            ));
        }
        self.channel_references()?;
        if t.stems.len() > MAX_STEMS {
            return Err(bad(
                "track.stems",
                format!("lists {} stems; at most {MAX_STEMS}", t.stems.len()),
            ));
        }
        for (i, stem) in t.stems.iter().enumerate() {
            text("track.stems.name", &stem.name, 64)?;
            if t.stems[..i].iter().any(|o| o.name == stem.name) {
                return Err(bad(
                    "track.stems.name",
                    format!("{:?} is listed twice", stem.name),
                ));
            }
        }
        // A short reference would be judged on the few bits it has (a one-item reference
        // matches one random window in 25).
        let least = crate::licence::fingerprint::MIN_WHOLE_ITEMS;
        if let Some(r) = reference.as_ref().filter(|r| r.len() < least) {
            return Err(bad(
                "track.fingerprint",
                format!(
                    "is {} sub-fingerprints; a reference needs at least {least} (about 6 s of \
                     audio)",
                    r.len()
                ),
            ));
        }
        for (stem, items) in t.stems.iter().zip(self.stem_references()?) {
            if items.len() < least {
                return Err(bad(
                    "track.stems.fingerprint",
                    format!(
                        "of {:?} is {} sub-fingerprints; a stem needs at least {least} (about \
                         6 s of audio)",
                        stem.name,
                        items.len()
                    ),
                ));
            }
        }
        if !t.stems.is_empty() && reference.is_none() {
            return Err(bad(
                "track.stems",
                "come with the whole recording's reference fingerprint (track.fingerprint)",
            ));
        }

        if self.uses.is_empty() {
            return Err(bad("uses", "allows nothing"));
        }
        // DECISIONS 5: without a reference, a remix licence would match any recording.
        if self.uses.contains(&Use::Remix) && reference.is_none() {
            return Err(bad(
                "track.fingerprint",
                "is missing: a remix licence must carry the licensed recording's reference \
                 fingerprint, or it would match any recording",
            ));
        }
        // DECISIONS 5: Refrain cannot tell which words a person sings, so a cover licence binds
        // the work and the voice model, and the ledger records the work.
        if self.uses.contains(&Use::Cover) && t.iswc.is_none() {
            return Err(bad(
                "track.iswc",
                "is missing: a cover licence must name the work it covers (its ISWC)",
            ));
        }
        if self.models.is_empty() || self.models.len() > 256 {
            return Err(bad("models", "must name 1 to 256 models"));
        }
        for (i, m) in self.models.iter().enumerate() {
            text(&format!("models[{i}].id"), &m.id, 128)?;
            check_sha256(&format!("models[{i}].sha256"), &m.sha256)?;
        }
        if self.territories.is_empty() || self.territories.len() > 300 {
            return Err(bad("territories", "must name 1 to 300 territories"));
        }
        for t in &self.territories {
            if t != "WORLD" && !is_alpha2(t) {
                return Err(bad(
                    "territories",
                    format!("`{t}` is not an ISO 3166-1 alpha-2 code or WORLD"),
                ));
            }
        }
        if let Some(t) = &self.licensee_territory {
            if !is_alpha2(t) {
                return Err(bad(
                    "licensee_territory",
                    format!("`{t}` is not an ISO 3166-1 alpha-2 code (such as GB)"),
                ));
            }
        }

        if self.split.is_empty() || self.split.len() > 64 {
            return Err(bad("split", "must name 1 to 64 parties"));
        }
        let mut total: u64 = 0;
        for (i, s) in self.split.iter().enumerate() {
            text(&format!("split[{i}].party"), &s.party, 256)?;
            if !ROLES.contains(&s.role.as_str()) {
                return Err(bad(
                    format!("split[{i}].role"),
                    format!("`{}` is not one of {}", s.role, ROLES.join(", ")),
                ));
            }
            if let Some(ipi) = &s.ipi {
                if !(9..=11).contains(&ipi.len()) || !ipi.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad(
                        format!("split[{i}].ipi"),
                        format!("`{ipi}` is not an IPI number (9 to 11 digits)"),
                    ));
                }
            }
            if s.share_bp == 0 {
                return Err(bad(format!("split[{i}].share_bp"), "is zero"));
            }
            total += u64::from(s.share_bp);
        }
        if total != u64::from(SPLIT_TOTAL_BP) {
            return Err(bad(
                "split",
                format!("shares add up to {total} basis points, not {SPLIT_TOTAL_BP}"),
            ));
        }
        if self.devices.is_empty() || self.devices.len() > MAX_DEVICES {
            return Err(bad(
                "devices",
                format!(
                    "must name 1 to {MAX_DEVICES} devices: a licence is bound to the licensee's \
                     devices (refrain device export)"
                ),
            ));
        }
        for d in &self.devices {
            if d.len() != 32 || !d.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(bad(
                    "devices",
                    format!("`{d}` is not a device id (32 lower-case hex digits)"),
                ));
            }
        }
        if self.sealed_keys.len() > MAX_DEVICES * 256 {
            return Err(bad("sealed_keys", "names too many keys"));
        }
        for (i, k) in self.sealed_keys.iter().enumerate() {
            if !self.devices.contains(&k.device) {
                return Err(bad(
                    format!("sealed_keys[{i}].device"),
                    format!("`{}` is not one of the licence's devices", k.device),
                ));
            }
            if !self
                .models
                .iter()
                .any(|m| m.sha256.eq_ignore_ascii_case(&k.model))
            {
                return Err(bad(
                    format!("sealed_keys[{i}].model"),
                    format!(
                        "`{}` is not the identity of a model the licence names",
                        k.model
                    ),
                ));
            }
            if k.enc.len() != 64 || k.sealed.len() != 96 {
                return Err(bad(
                    format!("sealed_keys[{i}]"),
                    "is not an HPKE encapsulation and a sealed 32-byte key (hex)",
                ));
            }
        }
        if let Some(days) = self.max_offline_days {
            if days == 0 || days > MAX_OFFLINE_DAYS {
                return Err(bad(
                    "max_offline_days",
                    format!("{days} is not 1 to {MAX_OFFLINE_DAYS}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the licence covers the model with this id and hash.
    pub fn covers_model(&self, id: &str, sha256: &str) -> bool {
        self.models
            .iter()
            .any(|m| m.id == id && m.sha256.eq_ignore_ascii_case(sha256))
    }

    /// Whether the licence names a model with this identity.
    pub fn covers_model_identity(&self, identity: &str) -> bool {
        self.models
            .iter()
            .any(|m| m.sha256.eq_ignore_ascii_case(identity))
    }

    /// Whether the licence holds everywhere (`territories` names `WORLD`; validation refuses
    /// an empty list).
    pub fn worldwide(&self) -> bool {
        self.territories.iter().any(|t| t == "WORLD")
    }

    /// Whether the licence holds where the issuer says the licensee is: always for a worldwide
    /// licence; otherwise `licensee_territory` must be one of `territories` (absent: no).
    pub fn covers_licensee(&self) -> bool {
        self.worldwide()
            || self
                .licensee_territory
                .as_ref()
                .is_some_and(|here| self.territories.contains(here))
    }

    /// A human summary, one field per line.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, k: &str, v: &str| {
            s.push_str(&format!("{k:<13}{v}\n"));
        };
        line(&mut s, "licence:", &self.jti);
        line(&mut s, "issuer:", &self.iss);
        line(&mut s, "licensee:", &self.sub);
        line(&mut s, "audience:", &self.aud);
        line(
            &mut s,
            "track:",
            &format!(
                "{} - {} ({}), ISRC {}",
                self.track.artists.join(", "),
                self.track.title,
                self.track.release,
                self.track.isrc
            ),
        );
        if let Some(iswc) = &self.track.iswc {
            line(&mut s, "work:", &format!("ISWC {iswc}"));
        }
        let fp = match self.reference_fingerprint() {
            Ok(Some(f)) => format!(
                "{} sub-fingerprints ({:.0} s)",
                f.len(),
                f.len() as f64 * crate::licence::fingerprint::ITEM_SECONDS
            ),
            Ok(None) => "none".into(),
            Err(e) => e.to_string(),
        };
        line(&mut s, "fingerprint:", &fp);
        if !self.track.stems.is_empty() {
            let names: Vec<&str> = self.track.stems.iter().map(|s| s.name.as_str()).collect();
            line(
                &mut s,
                "stem pack:",
                &format!(
                    "{} stems with a reference each ({}); the input may be any of them",
                    names.len(),
                    names.join(", ")
                ),
            );
        }
        line(&mut s, "issued:", &self.iat);
        line(&mut s, "valid from:", &self.nbf);
        line(
            &mut s,
            "expires:",
            &format!("{} (grace {} days)", self.exp, self.grace_days),
        );
        let uses: Vec<&str> = self.uses.iter().map(|u| u.as_str()).collect();
        line(&mut s, "uses:", &uses.join(", "));
        for m in &self.models {
            line(&mut s, "model:", &format!("{} sha256 {}", m.id, m.sha256));
        }
        line(&mut s, "territories:", &self.territories.join(", "));
        if let Some(t) = &self.licensee_territory {
            line(&mut s, "licensee in:", t);
        }
        line(&mut s, "devices:", &self.devices.join(", "));
        if let Some(d) = self.max_offline_days {
            line(
                &mut s,
                "offline:",
                &format!("at most {d} days without a fresh receipt"),
            );
        }
        if self.uses.contains(&Use::Cover) {
            // DECISIONS 5: Refrain cannot tell which words a person sings.
            line(
                &mut s,
                "cover:",
                "voice unlocked for any material while this licence lasts",
            );
            if self.track.fingerprint.is_some() {
                // DECISIONS 5: the fingerprint names the backing the voice sings over.
                line(
                    &mut s,
                    "backing:",
                    "the fingerprint is the backing track's: the voice sings only while \
                     Refrain's Backing sidechain (or `refrain render --backing`) carries it",
                );
            }
        }
        for p in &self.split {
            line(
                &mut s,
                "share:",
                &format!(
                    "{:>6.2}%  {} ({}{})",
                    p.share_bp as f64 / 100.0,
                    p.party,
                    p.role,
                    p.ipi
                        .as_deref()
                        .map(|i| format!(", IPI {i}"))
                        .unwrap_or_default()
                ),
            );
        }
        s
    }
}
