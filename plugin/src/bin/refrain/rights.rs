//! `refrain licence | registry | device`: the rights commands. Each party runs its own:
//! the registry certifies rights holders and signs revocations and receipts; a rights holder
//! issues licences to a licensee's devices; a licensee exports its device and installs what it
//! is sent. Files are what moves between them (`refrain::licence::registry` has the flow).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use refrain::licence::certificate::{self, Party, Scope};
use refrain::licence::device;
use refrain::licence::enforce::{self, Setting};
use refrain::licence::gate::LoadedTrack;
use refrain::licence::issue::{self, LicenceSpec};
use refrain::licence::policy::{self, Clock, LicenceState, Requirement, SystemClock};
use refrain::licence::registry::Registry;
use refrain::licence::revocation::{RevocationList, RevokedLicence};
use refrain::licence::store::{self, Store};
use refrain::licence::token::{self, IssuerKey, SigningKey};
use refrain::licence::{claims, roots};
use refrain::models::ModelSource;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum LicenceCommand {
    /// Create an issuer key pair (rights holders). Writes NAME.secret.toml (keep it safe) and
    /// NAME.public.toml (send it to the registry to be certified).
    Keygen {
        /// The rights holder's name (the registry's certificate has the final word on it).
        #[arg(long)]
        issuer: String,
        /// Folder for the two key files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// File name stem (default: from the issuer's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Issue a licence from a TOML description (see `licence::issue` for the fields), bound
    /// to the licensee's devices.
    Issue {
        /// The issuer's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The registry's certificate of that key.
        #[arg(long)]
        cert: PathBuf,
        /// The licence description (TOML).
        #[arg(long)]
        spec: PathBuf,
        /// A licensee device (`refrain device export` file); repeat for backup rigs (1 to 16).
        #[arg(long = "device", required = true)]
        devices: Vec<PathBuf>,
        /// A protected model's content key (`refrain model protect`), sealed into the licence
        /// for every device; the model must be one the description names.
        #[arg(long = "model-key")]
        model_keys: Vec<PathBuf>,
        /// The licensed recording (WAV) for the reference fingerprint; overrides `track.audio`.
        /// A remix licence needs one or the other.
        #[arg(long)]
        audio: Option<PathBuf>,
        /// Where to write the licence token.
        #[arg(long)]
        out: PathBuf,
        /// Also cache the licence on this machine.
        #[arg(long)]
        install: bool,
    },
    /// Show what a licence claims, who certified its issuer, and whether it verifies here.
    Inspect { licence: String },
    /// Check a licence as the plugin would, and say why it fails if it does (exit status 1).
    Verify {
        /// A licence file, or the id of a cached licence.
        licence: String,
        /// The model to check it for: a model.toml (or its folder).
        #[arg(long)]
        model: Option<String>,
        /// Check public performance (`live`, as the standalone on stage needs), not only use
        /// in a DAW.
        #[arg(long)]
        live: bool,
    },
    /// Sign a revocation list withdrawing licences this key signed and/or the key itself.
    Revoke {
        /// The issuer's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The registry's certificate of that key.
        #[arg(long)]
        cert: PathBuf,
        /// Licence ids to withdraw (only licences this key signed are withdrawn).
        #[arg(long = "licence")]
        licences: Vec<String>,
        /// Key ids (`k4.pid.…`) to withdraw: only this key's own id (a key withdraws itself).
        #[arg(long = "key-id")]
        key_ids: Vec<String>,
        /// The list's sequence number (default: the time now in Unix seconds, which always
        /// grows). An installed list is replaced only by a higher one.
        #[arg(long)]
        seq: Option<u64>,
        /// Where to write the signed list.
        #[arg(long)]
        out: PathBuf,
        /// Also install the list on this machine.
        #[arg(long)]
        install: bool,
    },
    /// Install what a rights holder or the registry sent: a licence (cached after it
    /// verifies), a revocation list, or a freshness receipt.
    Install { file: PathBuf },
    /// List the cached licences, what each allows now and how long it lasts.
    List,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Make a registry: a new root key in DIR (root.secret.toml: keep it offline;
    /// root.public.toml: what builds pin, through REFRAIN_REGISTRY_ROOT).
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "Refrain Registry")]
        name: String,
    },
    /// Certify a rights holder's key: who it is and what it may license.
    Certify {
        #[arg(long)]
        dir: PathBuf,
        /// The rights holder's public key file (`refrain licence keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The party's name as licences will show it (default: the key file's).
        #[arg(long)]
        name: Option<String>,
        /// IPI numbers of the party.
        #[arg(long)]
        ipi: Vec<String>,
        /// ISNI of the party.
        #[arg(long)]
        isni: Vec<String>,
        /// ISRC registrant prefixes (`GB-AYE`): every recording the party registered.
        #[arg(long = "isrc-prefix")]
        isrc_prefixes: Vec<String>,
        /// Single recordings.
        #[arg(long = "isrc")]
        isrcs: Vec<String>,
        /// Musical works (cover licences).
        #[arg(long = "iswc")]
        iswcs: Vec<String>,
        /// Voice models (a model folder, or its identity) the party holds the artist's consent
        /// for: only then can it license an unencrypted voice.
        #[arg(long = "voice")]
        voices: Vec<String>,
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        /// Where to write the certificate (sent to the rights holder).
        #[arg(long)]
        out: PathBuf,
    },
    /// Withdraw certificates, issuer keys or licences: signs the registry's list with the
    /// next sequence number.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// Certificate ids.
        #[arg(long = "certificate")]
        certificates: Vec<String>,
        /// Issuer key ids (`k4.pid.…`).
        #[arg(long = "key-id")]
        key_ids: Vec<String>,
        /// Licences, as `KEYID=LICENCEID` (the key that signed it, then its id).
        #[arg(long = "licence")]
        licences: Vec<String>,
        /// An issuer's own revocation list (`refrain licence revoke`): its withdrawals join the
        /// registry's list, which receipts name, so they survive a licensee deleting the
        /// issuer's list.
        #[arg(long = "include")]
        include: Vec<PathBuf>,
        /// Also write the list here (it is always kept in DIR/revocations.paseto).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A freshness receipt for a device: the registry's signed time and its latest revocation
    /// sequence.
    Refresh {
        #[arg(long)]
        dir: PathBuf,
        /// The device's `refrain device export` file.
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Write this device's public keys, signed by it, for rights holders (`licence issue
    /// --device`) and the registry (`registry refresh --device`).
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// This device's id, and the roots this build trusts.
    Show,
}

/// Whether a licence argument names a file rather than a cached licence's id: anything at that
/// path but a folder. A pipe or a device is then refused by the reader, saying what it is.
fn names_file(arg: &str) -> bool {
    std::fs::metadata(arg).is_ok_and(|m| !m.is_dir())
}

/// `--licence`: a file (cached on the way) or the id of a cached licence.
pub fn resolve_track(store: &Store, arg: &str) -> Result<LoadedTrack> {
    let path = Path::new(arg);
    if names_file(arg) {
        LoadedTrack::load_file(store, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    } else {
        Ok(LoadedTrack {
            licence: arg.to_owned(),
            ..Default::default()
        })
    }
}

/// A licence argument's token: a file, or a cached licence's id.
fn token_text(store: &Store, arg: &str) -> Result<String> {
    if names_file(arg) {
        Ok(store::read_token_file(Path::new(arg))?)
    } else {
        Ok(store.licence_token(arg)?)
    }
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() {
        "issuer".into()
    } else {
        s
    }
}

/// An issuer's secret key with its certificate, which must certify that key.
fn certified_key(key: &Path, cert: &Path) -> Result<SigningKey> {
    let key = SigningKey::from_file(&issue::read_key_file(key)?)?;
    let cert_text = store::read_token_file(cert)
        .with_context(|| format!("the certificate {}", cert.display()))?;
    Ok(key.with_certificate(&cert_text))
}

/// What kind of token a file holds, read from its (unverified) payload's fields, so that the
/// error shown is the one for what the file is.
enum TokenKind {
    Licence,
    Revocations,
    Receipt,
}

fn token_kind(text: &str) -> Result<TokenKind> {
    let untrusted = token::parse(text)?;
    let value: serde_json::Value = serde_json::from_slice(untrusted.untrusted_payload())
        .map_err(|_| anyhow::anyhow!("not a licence, revocation list or receipt"))?;
    Ok(if value.get("jti").is_some() {
        TokenKind::Licence
    } else if value.get("revocation_seq").is_some() {
        TokenKind::Receipt
    } else if value.get("seq").is_some() {
        TokenKind::Revocations
    } else {
        bail!("not a licence, revocation list or receipt")
    })
}

pub fn licence(cmd: LicenceCommand) -> Result<()> {
    let store = Store::open_default()?;
    match cmd {
        LicenceCommand::Keygen { issuer, out, name } => {
            let key = SigningKey::generate(&issuer)?;
            let stem = name.unwrap_or_else(|| slug(&issuer));
            let secret = out.join(format!("{stem}.secret.toml"));
            let public = out.join(format!("{stem}.public.toml"));
            issue::write_key_file(&secret, &key.to_file())?;
            issue::write_key_file(&public, &key.issuer_key().to_file())?;
            println!("issuer:      {issuer}");
            println!("key id:      {}", key.kid);
            println!(
                "secret key:  {} (keep it safe; never share it)",
                secret.display()
            );
            println!("public key:  {}", public.display());
            println!(
                "next:        send the public key to the registry (refrain registry certify); \
                 licences need its certificate"
            );
        }
        LicenceCommand::Issue {
            key,
            cert,
            spec,
            devices,
            model_keys,
            audio,
            out,
            install,
        } => {
            let key = certified_key(&key, &cert)?;
            let mut ids = Vec::new();
            let mut publics = Vec::new();
            for d in &devices {
                let public = device::read_export(d).with_context(|| d.display().to_string())?;
                if !ids.contains(&public.id) {
                    ids.push(public.id.clone());
                    publics.push((public.id, public.x25519));
                }
            }
            let mut content_keys = Vec::new();
            for k in &model_keys {
                content_keys.push(refrain::models::protection::KeyFile::read(k)?);
            }
            let issuer = key
                .certificate
                .as_deref()
                .and_then(|c| token::parse(c).ok())
                .and_then(|u| {
                    serde_json::from_slice::<certificate::Certificate>(u.untrusted_payload()).ok()
                })
                .map(|c| c.party.name)
                .unwrap_or_else(|| key.issuer.clone());
            let base = spec.parent().unwrap_or(Path::new("."));
            let mut claims = LicenceSpec::load(&spec)?.to_claims(
                &issuer,
                &ids,
                base,
                audio.as_deref(),
                SystemClock.now(),
            )?;
            issue::seal_keys(&mut claims, &content_keys, &publics)?;
            let token = issue::sign_licence(&key, &claims)?;
            // Whole or not at all: an earlier licence at `out` stays if the write fails.
            refrain::files::write_atomic(&out, token.as_bytes())?;
            print!("{}", claims.describe());
            println!("written:     {} ({} bytes)", out.display(), token.len());
            if install {
                store.install_licence(&token)?;
                println!("cached in:   {}", store.root().display());
            }
        }
        LicenceCommand::Inspect { licence } => {
            let text = token_text(&store, &licence)?;
            let untrusted = token::parse(&text)?;
            let (revoked, _) = store.revoked();
            match policy::verify_signed_by(&text, store.roots(), &revoked) {
                Ok((c, certified)) => {
                    print!("{}", c.describe());
                    println!("certified:   {}", certified.certificate.describe());
                    println!("root:        {}", certified.root);
                    println!("signature:   verifies (key {})", untrusted.kid);
                }
                Err(e) => {
                    // Show what it claims, marked as untrusted.
                    if let Ok(c) =
                        serde_json::from_slice::<claims::Claims>(untrusted.untrusted_payload())
                    {
                        print!("{}", c.describe());
                    }
                    println!("signature:   NOT TRUSTED: {e}");
                }
            }
        }
        LicenceCommand::Verify {
            licence,
            model,
            live,
        } => {
            let text = token_text(&store, &licence)?;
            let (revoked, _) = store.revoked();
            let claims = match policy::verify(&text, store.roots(), &revoked) {
                Ok(c) => c,
                Err(e) => bail!("invalid: {e}"),
            };
            let requirement = match model {
                Some(m) => {
                    let package = ModelSource::parse(&m).package()?;
                    let setting = if live {
                        Setting::PublicPerformance
                    } else {
                        Setting::Studio
                    };
                    match enforce::requirement(&package, setting) {
                        Some(r) => r,
                        None => {
                            println!("model `{}` needs no licence", package.manifest.model.id);
                            return Ok(());
                        }
                    }
                }
                // No model: the chain, signature, revocation, clock, device and dates.
                None => Requirement {
                    model_id: claims.models[0].id.clone(),
                    model_sha256: claims.models[0].sha256.clone(),
                    uses: if live {
                        vec![claims::Use::Live]
                    } else {
                        vec![]
                    },
                },
            };
            let v = policy::evaluate_token(&store, &text, &requirement, &SystemClock);
            match v.state {
                LicenceState::Valid | LicenceState::NotRequired => println!("valid: {}", v.reason),
                LicenceState::Grace => println!("valid (grace period): {}", v.reason),
                LicenceState::Invalid => bail!("invalid: {}", v.reason),
            }
        }
        LicenceCommand::Revoke {
            key,
            cert,
            licences,
            key_ids,
            seq,
            out,
            install,
        } => {
            if licences.is_empty() && key_ids.is_empty() {
                bail!("nothing to revoke: give --licence ID and/or --key-id KID");
            }
            let key = certified_key(&key, &cert)?;
            let now = SystemClock.now();
            let issuer = token::parse(key.certificate.as_deref().unwrap_or_default())
                .ok()
                .and_then(|u| {
                    serde_json::from_slice::<certificate::Certificate>(u.untrusted_payload()).ok()
                })
                .map(|c| c.party.name)
                .unwrap_or_else(|| key.issuer.clone());
            let list = RevocationList {
                iss: issuer,
                seq: seq.unwrap_or(now.max(1) as u64),
                iat: claims::format_time(now),
                revoked_keys: key_ids,
                revoked_licences: licences,
            };
            let token = issue::sign_revocations(&key, &list)?;
            refrain::files::write_atomic(&out, token.as_bytes())?;
            println!(
                "revocation list {} of {}: {} licence(s), {} key(s), written to {}",
                list.seq,
                list.iss,
                list.revoked_licences.len(),
                list.revoked_keys.len(),
                out.display()
            );
            if install {
                let installed = store.install_revocations(&token)?;
                println!("installed in {}", store.root().display());
                for entry in &installed.ignored {
                    println!("{entry}");
                }
            }
        }
        LicenceCommand::Install { file } => {
            let text = store::read_token_file(&file)?;
            match token_kind(&text).with_context(|| file.display().to_string())? {
                TokenKind::Revocations => {
                    let installed = store.install_revocations(&text)?;
                    println!("installed {}", installed.signed.describe());
                    for entry in &installed.ignored {
                        println!("{entry}");
                    }
                }
                TokenKind::Receipt => {
                    let r = store.install_receipt(&text)?;
                    println!(
                        "installed the freshness receipt of {} for this device (revocation list \
                         {})",
                        r.receipt.iat, r.receipt.revocation_seq
                    );
                }
                TokenKind::Licence => {
                    let cached = store.install_licence(&text)?;
                    println!(
                        "cached licence {} (key {}) in {}",
                        cached.id,
                        cached.kid,
                        store.root().display()
                    );
                }
            }
        }
        LicenceCommand::List => {
            let listing = policy::listing(&store);
            for file in &listing.unreadable {
                eprintln!("warning: skipped {file}");
            }
            for entry in &listing.ignored {
                eprintln!("note: {entry}");
            }
            if let Some(r) = store.receipt() {
                let age = (SystemClock.now() - r.time).div_euclid(86_400);
                println!(
                    "freshness receipt: {} ({age} days old), revocation list {}",
                    r.receipt.iat, r.receipt.revocation_seq
                );
            }
            if listing.licences.is_empty() {
                println!("no licences cached in {}", store.root().display());
            }
            for row in listing.licences {
                println!("{}  {}", row.id, row.text);
            }
        }
    }
    Ok(())
}

pub fn registry(cmd: RegistryCommand) -> Result<()> {
    let now = SystemClock.now();
    match cmd {
        RegistryCommand::Init { dir, name } => {
            let registry = Registry::init(&dir, &name)?;
            let root = registry.root();
            println!("registry:    {name} in {}", dir.display());
            println!("root key id: {}", root.kid);
            println!(
                "pin it:      REFRAIN_REGISTRY_ROOT={} cargo xtask bundle refrain --release",
                root.to_file().public
            );
        }
        RegistryCommand::Certify {
            dir,
            key,
            name,
            ipi,
            isni,
            isrc_prefixes,
            isrcs,
            iswcs,
            voices,
            valid_days,
            out,
        } => {
            let registry = Registry::open(&dir)?;
            let key = IssuerKey::from_file(&issue::read_key_file(&key)?)?;
            let party = Party {
                name: name.unwrap_or_else(|| key.issuer.clone()),
                ipi,
                isni,
            };
            let mut identities = Vec::new();
            for v in voices {
                identities.push(if Path::new(&v).exists() {
                    ModelSource::parse(&v).package()?.identity.clone()
                } else {
                    v
                });
            }
            let scope = Scope {
                isrc_prefixes,
                isrcs,
                iswcs,
                voices: identities,
            };
            let (cert, token) = registry.certify(&key, party, scope, now, valid_days)?;
            refrain::files::write_atomic(&out, token.as_bytes())?;
            println!("certified:   {}", cert.describe());
            println!("key:         {}", key.kid);
            println!("written:     {}", out.display());
        }
        RegistryCommand::Revoke {
            dir,
            certificates,
            mut key_ids,
            licences,
            include,
            out,
        } => {
            let registry = Registry::open(&dir)?;
            let mut included = Vec::new();
            for file in &include {
                let text = store::read_token_file(file)?;
                let (keys, licences) = registry
                    .issuer_withdrawals(&text)
                    .with_context(|| file.display().to_string())?;
                key_ids.extend(keys);
                included.extend(licences);
            }
            let mut licences = licences
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((key, id)) if !key.is_empty() && !id.is_empty() => Ok(RevokedLicence {
                        key: key.to_owned(),
                        id: id.to_owned(),
                    }),
                    _ => bail!("--licence {l}: give KEYID=LICENCEID"),
                })
                .collect::<Result<Vec<_>>>()?;
            licences.extend(included);
            let (list, token) = registry.revoke(&certificates, &key_ids, &licences, now)?;
            println!(
                "revocation list {}: {} certificate(s), {} key(s), {} licence(s)",
                list.seq,
                list.certificates.len(),
                list.keys.len(),
                list.licences.len()
            );
            if let Some(out) = out {
                refrain::files::write_atomic(&out, token.as_bytes())?;
                println!("written:     {}", out.display());
            }
        }
        RegistryCommand::Refresh { dir, device, out } => {
            let registry = Registry::open(&dir)?;
            let public =
                device::read_export(&device).with_context(|| device.display().to_string())?;
            let token = registry.refresh(&public, now)?;
            refrain::files::write_atomic(&out, token.as_bytes())?;
            println!(
                "receipt for device {} at {} written to {}",
                public.id,
                claims::format_time(now),
                out.display()
            );
        }
    }
    Ok(())
}

pub fn device(cmd: DeviceCommand) -> Result<()> {
    let store = Store::open_default()?;
    let device = store.device()?;
    match cmd {
        DeviceCommand::Export { out } => {
            refrain::files::write_atomic(&out, device.export()?.as_bytes())?;
            println!("device {} written to {}", device.id, out.display());
        }
        DeviceCommand::Show => {
            println!("device:      {}", device.id);
            println!("x25519:      {}", hex::encode(device.x25519_public));
            println!("roots:       {}", store.roots().describe());
            if roots::development_root_trusted() {
                println!(
                    "warning:     this is a development build: it trusts the development root, \
                     whose secret key is public"
                );
            }
        }
    }
    Ok(())
}
