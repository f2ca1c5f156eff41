//! The roots of trust, compiled into the build: the registry keys that certify rights holders.
//! Nothing a user can edit adds one (there is no trust store); a licence counts only when its
//! issuer's certificate chains to one of these.
//!
//! - The **Refrain Registry** root (`roots/registry.public.toml`) is the only root of a release
//!   build. Its secret key is held offline by the registry's operator and is not in this
//!   repository. A registry run by someone else is pinned at build time with
//!   `REFRAIN_REGISTRY_ROOT=k4.public.… cargo xtask bundle` (the public key of its `refrain
//!   registry init`), which replaces it.
//! - The **development root** (`roots/development.*`) exists for tests and the demo. Its secret
//!   key is in the repository, so a build that trusts it trusts anyone: it is compiled in only
//!   with the `dev-root` feature, whose bundles are named "Refrain (development root)" and
//!   carry their own plugin ids, so they are never mistaken for (or replace) a release.

use super::token::{IssuerKey, KeyFile, KeyFileError};
use std::sync::OnceLock;

/// The registry root pinned in release builds.
const REGISTRY_ROOT: &str = include_str!("roots/registry.public.toml");

/// The development root's public key (only in `dev-root` builds).
#[cfg(feature = "dev-root")]
const DEVELOPMENT_ROOT: &str = include_str!("roots/development.public.toml");

/// Whether this build trusts the development root (the `dev-root` feature).
pub fn development_root_trusted() -> bool {
    cfg!(feature = "dev-root")
}

/// The development root's key id, for messages and tests (its public key is in every build's
/// source; only `dev-root` builds trust it).
pub const DEVELOPMENT_ROOT_KID: &str = "k4.pid.PE4iMMjf3fv5sL_5S4T-MP94mag3yOLaIbn_x8QYzCvx";

/// The registry roots a build trusts.
#[derive(Debug, Clone)]
pub struct Roots {
    keys: Vec<IssuerKey>,
}

fn parse_root(text: &str) -> Result<IssuerKey, KeyFileError> {
    let file: KeyFile = toml::from_str(text).map_err(|e| KeyFileError::Encode {
        reason: e.to_string(),
    })?;
    IssuerKey::from_file(&file)
}

/// A registry root given as its public PASERK (`k4.public.…`), as `REFRAIN_REGISTRY_ROOT`
/// names it at build time.
fn root_from_paserk(public: &str) -> Result<IssuerKey, KeyFileError> {
    use pasetors::keys::AsymmetricPublicKey;
    use pasetors::version4::V4;
    let public = AsymmetricPublicKey::<V4>::try_from(public.trim())
        .map_err(|_| KeyFileError::NotPublicPaserk)?;
    Ok(IssuerKey {
        issuer: "Registry".into(),
        kid: super::token::key_id(&public),
        public,
    })
}

impl Roots {
    /// The roots compiled into this build: the registry (or the one `REFRAIN_REGISTRY_ROOT`
    /// named at build time), and the development root in `dev-root` builds.
    pub fn built_in() -> &'static Roots {
        static ROOTS: OnceLock<Roots> = OnceLock::new();
        ROOTS.get_or_init(|| {
            let mut keys = Vec::new();
            // Both are compiled-in constants, checked by the tests: a build whose root does
            // not parse trusts nobody rather than failing to load.
            let registry = match option_env!("REFRAIN_REGISTRY_ROOT") {
                Some(paserk) if !paserk.trim().is_empty() => root_from_paserk(paserk),
                _ => parse_root(REGISTRY_ROOT),
            };
            keys.extend(registry.ok());
            #[cfg(feature = "dev-root")]
            keys.extend(parse_root(DEVELOPMENT_ROOT).ok());
            Roots { keys }
        })
    }

    /// Exactly these roots (the registry's own tools and tests).
    pub fn with(keys: Vec<IssuerKey>) -> Roots {
        Roots { keys }
    }

    /// The root with key id `kid`.
    pub fn find(&self, kid: &str) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// `Refrain Registry (k4.pid.…)`, … for messages.
    pub fn describe(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        self.keys
            .iter()
            .map(|k| format!("{} ({})", k.issuer, k.kid))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_parse_and_the_development_root_only_with_its_feature() {
        let registry = parse_root(REGISTRY_ROOT).unwrap();
        assert_eq!(registry.issuer, "Refrain Registry");
        let roots = Roots::built_in();
        assert!(
            roots.find(&registry.kid).is_some() || option_env!("REFRAIN_REGISTRY_ROOT").is_some()
        );
        let dev = parse_root(include_str!("roots/development.public.toml")).unwrap();
        assert_eq!(dev.kid, DEVELOPMENT_ROOT_KID);
        assert_eq!(
            roots.find(DEVELOPMENT_ROOT_KID).is_some(),
            development_root_trusted()
        );
        // The secret beside it belongs to the public key.
        let secret: KeyFile =
            toml::from_str(include_str!("roots/development.secret.toml")).unwrap();
        let key = super::super::token::SigningKey::from_file(&secret).unwrap();
        assert_eq!(key.kid, DEVELOPMENT_ROOT_KID);
    }
}
