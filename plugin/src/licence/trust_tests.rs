//! The consent issue's attacks on trust, each tried as a determined user would: a self-made
//! label, a self-made registry, a label licensing another's catalogue, deleted or rolled-back
//! state, a frozen clock, concurrent installs, and the cache. Each of these passed on the code
//! before the registry root (see the issue's findings 1, 6 and 7).

use super::certificate::{self, CertificateError, Party, Scope};
use super::claims::Use;
use super::device::{self, Device};
use super::freshness::FreshnessError;
use super::policy::{self, LicenceState, ManualClock, Verdict};
use super::registry::Registry;
use super::revocation::{RevocationList, RevokedLicence};
use super::roots::{self, Roots};
use super::store::{Store, StoreError};
use super::tests::{claims_for, fixture, requirement, sign, verify_with, Fixture, DAY, NOW};
use super::token::{Kind, SigningKey};
use super::{issue, ReceiptError, TermsError, VerifyError};

/// A key for `name`, certified by the fixture's registry for `scope`, valid `days` from a day
/// before NOW.
fn certify(f: &Fixture, name: &str, scope: Scope, days: u32) -> SigningKey {
    let key = SigningKey::generate(name).unwrap();
    let party = Party {
        name: name.into(),
        ipi: vec![],
        isni: vec![],
    };
    let (_, cert) = f
        .registry
        .certify(&key.issuer_key(), party, scope, NOW - DAY, days)
        .unwrap();
    key.with_certificate(&cert)
}

/// "Aurora Songs", a publisher certified for one work (T-034.524.680-1) and nothing else.
fn publisher(f: &Fixture) -> SigningKey {
    certify(
        f,
        "Aurora Songs",
        Scope {
            iswcs: vec!["T-034.524.680-1".into()],
            ..Scope::default()
        },
        365,
    )
}

fn evaluate(f: &Fixture, token: &str, at: i64) -> Verdict {
    policy::evaluate_token(&f.store, token, &requirement(), &ManualClock::at(at))
}

/// Finding 1: `licence keygen --issuer "<any famous label>" --trust` made a trusted issuer.
#[test]
fn a_self_made_label_is_refused_with_a_message_naming_the_missing_certificate() {
    let f = fixture();
    let label = SigningKey::generate("Universal Music Group").unwrap();
    let claims = claims_for("Universal Music Group");
    // The issuing tool says what is missing...
    let e = issue::sign_licence(&label, &claims).unwrap_err();
    assert!(matches!(e, issue::SignError::NoCertificate { .. }), "{e}");
    // ...and a licence signed anyway is refused by every verifier, naming the certificate.
    let token = label
        .sign(Kind::Licence, &serde_json::to_vec(&claims).unwrap())
        .unwrap();
    let e = verify_with(&f, &token).unwrap_err();
    assert_eq!(
        e,
        VerifyError::Certificate(CertificateError::Missing {
            kid: label.kid.clone()
        })
    );
    let words = e.to_string();
    assert!(
        words.contains("not certified") && words.contains("registry certify"),
        "{words}"
    );
    assert!(f.store.install_licence(&token).is_err());
    assert!(f.store.licence_ids().is_empty(), "nothing was cached");

    // A self-made registry: its own root, certifying itself for everything.
    let dir = tempfile::tempdir().unwrap();
    let fake = Registry::init(dir.path(), "Refrain Registry").unwrap();
    let self_certified = super::tests::certified_with(&fake, "Universal Music Group", "GBAYE");
    let token = sign(&self_certified, &claims);
    let e = verify_with(&f, &token).unwrap_err();
    assert!(
        matches!(
            &e,
            VerifyError::Certificate(CertificateError::UnknownRoot { kid, .. })
                if *kid == fake.root().kid
        ),
        "{e}"
    );
    assert!(e.to_string().contains("does not trust"), "{e}");
    assert!(e.to_string().contains(&f.registry.root().kid), "{e}");
    let v = evaluate(&f, &token, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
}

/// A certificate's scope is what its party may license: a label only its own recordings, a
/// self-releasing artist their own prefix, a publisher covers of its works.
#[test]
fn a_certified_party_licenses_only_what_its_certificate_covers() {
    let f = fixture();
    // Northern Records (GBAYE) licensing a US recording.
    let mut c = claims_for("Northern Records");
    c.track.isrc = "USRC17607839".into();
    assert!(matches!(
        issue::sign_licence(&f.key, &c),
        Err(issue::SignError::OutOfScope { .. })
    ));
    let token = f
        .key
        .sign(Kind::Licence, &serde_json::to_vec(&c).unwrap())
        .unwrap();
    let e = verify_with(&f, &token).unwrap_err();
    assert!(matches!(e, VerifyError::OutOfScope { .. }), "{e}");
    let words = e.to_string();
    assert!(
        words.contains("`Northern Records` is not certified for this track (USRC17607839")
            && words.contains("ISRC prefixes GBAYE"),
        "{words}"
    );

    // A self-releasing artist with their own registrant prefix licenses their own stems.
    let artist = f.certified("Aurora Vale", "QZABC");
    let mut own = claims_for("Aurora Vale");
    own.track.isrc = "QZABC2600007".into();
    verify_with(&f, &sign(&artist, &own)).unwrap();
    own.track.isrc = "GBAYE2600001".into();
    assert!(issue::sign_licence(&artist, &own).is_err());

    // A publisher certified for one work: a cover licence of it, never a remix of a recording.
    let publisher = publisher(&f);
    let mut cover = claims_for("Aurora Songs");
    cover.uses = vec![Use::Cover];
    verify_with(&f, &sign(&publisher, &cover)).unwrap();
    cover.uses = vec![Use::Cover, Use::Remix];
    assert!(issue::sign_licence(&publisher, &cover).is_err());
    let token = publisher
        .sign(Kind::Licence, &serde_json::to_vec(&cover).unwrap())
        .unwrap();
    assert!(matches!(
        verify_with(&f, &token),
        Err(VerifyError::OutOfScope { .. })
    ));
}

#[test]
fn the_registry_withdraws_certificates_and_keys_and_certificates_expire() {
    let f = fixture();
    let token = sign(&f.key, &claims_for("Northern Records"));
    assert_eq!(evaluate(&f, &token, NOW).state, LicenceState::Valid);
    let cid = certificate::verify_issued(&token, f.store.roots(), Kind::Licence)
        .unwrap()
        .0
        .certificate
        .cid;
    let (list, signed) = f
        .registry
        .revoke(std::slice::from_ref(&cid), &[], &[], NOW)
        .unwrap();
    assert_eq!(list.seq, 1);
    f.store.install_revocations(&signed).unwrap();
    assert_eq!(
        verify_with(&f, &token).unwrap_err(),
        VerifyError::CertificateRevoked {
            party: "Northern Records".into(),
            cid
        }
    );

    let other = f.certified("Other Label", "GBAYE");
    let mut c = claims_for("Other Label");
    c.jti = "lic-other".into();
    let token = sign(&other, &c);
    verify_with(&f, &token).unwrap();
    let (list, signed) = f
        .registry
        .revoke(&[], std::slice::from_ref(&other.kid), &[], NOW)
        .unwrap();
    assert_eq!(list.seq, 2, "the registry's list grows");
    f.store.install_revocations(&signed).unwrap();
    assert_eq!(
        verify_with(&f, &token).unwrap_err(),
        VerifyError::KeyRevoked { kid: other.kid }
    );

    // A certificate valid for ten days: the licence (valid 30) stops with it.
    let short = certify(
        &f,
        "Short Label",
        Scope {
            isrc_prefixes: vec!["GBAYE".into()],
            ..Scope::default()
        },
        10,
    );
    let mut c = claims_for("Short Label");
    c.jti = "lic-short".into();
    let token = sign(&short, &c);
    assert_eq!(evaluate(&f, &token, NOW).state, LicenceState::Valid);
    let v = evaluate(&f, &token, NOW + 10 * DAY);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(
        v.reason
            .contains("certificate (Short Label) expired on 2026-11-30"),
        "{}",
        v.reason
    );
}

/// Release builds trust only the registry; the development root exists only in `dev-root`
/// builds (tests and the demo).
#[test]
fn only_a_development_build_accepts_a_development_root_licence() {
    let f = fixture();
    let token = sign(&f.key, &claims_for("Northern Records"));
    assert_eq!(f.registry.root().kid, roots::DEVELOPMENT_ROOT_KID);
    let built_in = Store::at(f.store.root());
    let v = policy::evaluate_token(&built_in, &token, &requirement(), &ManualClock::at(NOW));
    if roots::development_root_trusted() {
        assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
    } else {
        assert_eq!(v.state, LicenceState::Invalid);
        assert!(v.reason.contains("does not trust"), "{}", v.reason);
    }
    // Exactly the registry's key otherwise: nothing the user edits adds a root.
    let release = Roots::built_in();
    assert_eq!(
        release.keys().len(),
        1 + usize::from(roots::development_root_trusted())
    );
}

/// A licence that asks for freshness, with the registry's list 1 and a receipt naming it.
fn fresh(f: &Fixture) -> (String, String, String) {
    let mut c = claims_for("Northern Records");
    c.max_offline_days = Some(7);
    let token = sign(&f.key, &c);
    f.store.install_licence(&token).unwrap();
    let v = evaluate(f, &token, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert_eq!(
        v.reason,
        TermsError::Freshness(FreshnessError::NoReceipt { max_days: 7 }).to_string()
    );
    assert!(
        v.reason.contains("refrain registry refresh"),
        "{}",
        v.reason
    );
    let gone = RevokedLicence {
        key: f.key.kid.clone(),
        id: "some-other-licence".into(),
    };
    let (_, list) = f.registry.revoke(&[], &[], &[gone], NOW - 60).unwrap();
    f.store.install_revocations(&list).unwrap();
    let device = f.store.device().unwrap().public();
    let receipt = f.registry.refresh(&device, NOW).unwrap();
    f.store.install_receipt(&receipt).unwrap();
    let v = evaluate(f, &token, NOW);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
    (token, list, receipt)
}

/// Finding 6: deleting `clock` or `revocations/`, or copying an older list over the newer one,
/// made an expired or revoked licence valid again.
#[test]
fn deleted_or_rolled_back_state_fails_closed_for_licences_that_ask_for_freshness() {
    let f = fixture();
    let (token, list1, receipt1) = fresh(&f);
    let root = f.store.root().to_owned();

    // The revocation lists deleted.
    std::fs::remove_dir_all(root.join("revocations")).unwrap();
    let v = evaluate(&f, &token, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(
        v.reason.contains("list 0 is installed") && v.reason.contains("list 1 exists"),
        "{}",
        v.reason
    );
    f.store.install_revocations(&list1).unwrap();
    assert_eq!(evaluate(&f, &token, NOW).state, LicenceState::Valid);

    // The registry moves on to list 2 (withdrawing this licence); a receipt names it.
    let this = RevokedLicence {
        key: f.key.kid.clone(),
        id: "lic-0001".into(),
    };
    let (_, list2) = f.registry.revoke(&[], &[], &[this], NOW + 60).unwrap();
    let device = f.store.device().unwrap().public();
    let receipt2 = f.registry.refresh(&device, NOW + 120).unwrap();
    f.store.install_receipt(&receipt2).unwrap();
    f.store.install_revocations(&list2).unwrap();
    assert!(evaluate(&f, &token, NOW + 180)
        .reason
        .contains("has been revoked"));
    // An older list is never installed over it...
    assert_eq!(
        f.store.install_revocations(&list1).unwrap_err(),
        StoreError::NewerRevocations {
            installed: 2,
            offered: 1
        }
    );
    // ...and copied over it by hand, the receipt notices.
    let file = std::fs::read_dir(root.join("revocations"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "paseto"))
        .unwrap();
    std::fs::write(&file, &list1).unwrap();
    let v = evaluate(&f, &token, NOW + 180);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(v.reason.contains("rolled back"), "{}", v.reason);
    // An older receipt cannot replace the newer one to hide list 2.
    assert!(matches!(
        f.store.install_receipt(&receipt1),
        Err(StoreError::Receipt(ReceiptError::Older { .. }))
    ));

    // The clock file deleted.
    let g = fixture();
    let (token, _, receipt) = fresh(&g);
    std::fs::remove_file(g.store.root().join("clock")).unwrap();
    let v = evaluate(&g, &token, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert_eq!(
        v.reason,
        TermsError::Freshness(FreshnessError::NoClock).to_string()
    );
    g.store.install_receipt(&receipt).unwrap();
    assert_eq!(evaluate(&g, &token, NOW).state, LicenceState::Valid);
    // A receipt older than the licence's allowance.
    let v = evaluate(&g, &token, NOW + 8 * DAY);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(v.reason.contains("8 days old"), "{}", v.reason);
}

/// An issuer's own withdrawal, included in the registry's list, survives the licensee deleting
/// the issuer's list: the receipt names the registry's list, which now carries it.
#[test]
fn an_issuer_withdrawal_the_registry_includes_survives_deleting_the_issuer_list() {
    let f = fixture();
    let (token, _, _) = fresh(&f);
    let own = issue::sign_revocations(
        &f.key,
        &RevocationList {
            iss: "Northern Records".into(),
            seq: 1,
            iat: super::claims::format_time(NOW),
            revoked_keys: vec![],
            revoked_licences: vec!["lic-0001".into()],
        },
    )
    .unwrap();
    f.store.install_revocations(&own).unwrap();
    assert!(evaluate(&f, &token, NOW)
        .reason
        .contains("has been revoked"));
    // Deleted by the licensee, the issuer's list alone is not missed...
    let issuer_file = |f: &Fixture| {
        std::fs::read_dir(f.store.root().join("revocations"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("issuer-")
            })
    };
    std::fs::remove_file(issuer_file(&f).unwrap()).unwrap();
    assert_eq!(evaluate(&f, &token, NOW).state, LicenceState::Valid);
    // ...but once the registry includes it (and a receipt names that list), it is.
    let (keys, licences) = f.registry.issuer_withdrawals(&own).unwrap();
    let (_, list) = f.registry.revoke(&[], &keys, &licences, NOW + 60).unwrap();
    let device = f.store.device().unwrap().public();
    f.store
        .install_receipt(&f.registry.refresh(&device, NOW + 120).unwrap())
        .unwrap();
    f.store.install_revocations(&list).unwrap();
    assert!(issuer_file(&f).is_none());
    let v = evaluate(&f, &token, NOW + 180);
    assert!(v.reason.contains("has been revoked"), "{}", v.reason);
    std::fs::remove_dir_all(f.store.root().join("revocations")).unwrap();
    let v = evaluate(&f, &token, NOW + 180);
    assert!(v.reason.contains("rolled back"), "{}", v.reason);
}

#[test]
fn a_fresh_receipt_repairs_a_clock_that_once_ran_far_ahead() {
    let f = fixture();
    let token = sign(&f.key, &claims_for("Northern Records"));
    f.store.install_licence(&token).unwrap();
    // The machine's clock once said next year.
    f.store.check_clock(NOW + 365 * DAY).unwrap();
    let v = evaluate(&f, &token, NOW);
    assert!(
        v.reason.contains("clock has been turned back"),
        "{}",
        v.reason
    );
    let device = f.store.device().unwrap().public();
    f.store
        .install_receipt(&f.registry.refresh(&device, NOW).unwrap())
        .unwrap();
    let v = evaluate(&f, &token, NOW);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);

    // A receipt made for another device is refused.
    let other = tempfile::tempdir().unwrap();
    let other = Device::open_or_create(other.path()).unwrap().public();
    let e = f
        .store
        .install_receipt(&f.registry.refresh(&other, NOW + 60).unwrap())
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Receipt(ReceiptError::OtherDevice { .. })),
        "{e}"
    );
}

/// Finding 6: write errors on `clock` were ignored, so a clock file that could not be updated
/// froze the rollback check.
#[test]
fn a_clock_that_cannot_be_written_fails_closed() {
    let f = fixture();
    let token = sign(&f.key, &claims_for("Northern Records"));
    // A folder where the clock file goes: it can be neither read nor replaced.
    std::fs::create_dir_all(f.store.root().join("clock/x")).unwrap();
    let v = evaluate(&f, &token, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(v.reason.contains("cannot record the time"), "{}", v.reason);
}

/// Finding 7: revocation install was check-then-write; concurrent installs left the older
/// list in place 4 times in 40.
#[test]
fn concurrent_revocation_installs_always_keep_the_newest() {
    let f = fixture();
    let lists: Vec<String> = (1..=6u64)
        .map(|seq| {
            issue::sign_revocations(
                &f.key,
                &RevocationList {
                    iss: "Northern Records".into(),
                    seq,
                    iat: super::claims::format_time(NOW + seq as i64),
                    revoked_keys: vec![],
                    revoked_licences: vec![format!("lic-{seq}")],
                },
            )
            .unwrap()
        })
        .collect();
    for round in 0..40 {
        let _ = std::fs::remove_dir_all(f.store.root().join("revocations"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(lists.len()));
        let handles: Vec<_> = lists
            .iter()
            .enumerate()
            .map(|(i, _)| {
                // Each round in another order.
                let store = f.store.clone();
                let barrier = barrier.clone();
                let text = lists[(i * 7 + round) % lists.len()].clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let _ = store.install_revocations(&text);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (revoked, unreadable) = f.store.revoked();
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert!(
            revoked.licence(&f.key.kid, "lic-6"),
            "round {round}: an older list was left in place"
        );
    }
}

/// Two plugin instances starting at once on a fresh machine make one device, not two.
#[test]
fn instances_starting_at_once_make_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let ids: Vec<String> = (0..8)
        .map(|_| {
            let d = dir.path().to_owned();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                Device::open_or_create(&d).unwrap().id
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("device.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

#[test]
fn a_device_export_verifies_and_an_edited_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::open_or_create(dir.path()).unwrap();
    let export = d.export().unwrap();
    assert_eq!(device::verify_export(&export).unwrap(), d.public());
    // Another device's id in this device's export (re-signed by a key the id is not from).
    let mut edited = d.public();
    edited.id = "0123456789abcdef0123456789abcdef".into();
    let intruder = SigningKey::generate("device").unwrap();
    let forged = intruder
        .sign(Kind::Device, &serde_json::to_vec(&edited).unwrap())
        .unwrap();
    assert!(device::verify_export(&forged).is_err());
    assert!(device::verify_export(&format!("{}x", &export[..export.len() - 1])).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn certificate() -> &'static (Fixture, String) {
        static C: std::sync::OnceLock<(Fixture, String)> = std::sync::OnceLock::new();
        C.get_or_init(|| {
            let f = fixture();
            let cert = f.key.certificate.clone().unwrap();
            (f, cert)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_mutation_of_a_certificate_is_refused(pos in 0usize..4096, ch in any::<char>()) {
            let (f, cert) = certificate();
            let mut chars: Vec<char> = cert.chars().collect();
            let i = pos % chars.len();
            prop_assume!(chars[i] != ch);
            chars[i] = ch;
            let m: String = chars.into_iter().collect();
            prop_assert!(certificate::verify_certificate(&m, f.store.roots()).is_err());
        }

        #[test]
        fn random_certificates_signed_by_the_root_never_panic(json in "\\PC{0,400}") {
            let (f, _) = certificate();
            if let Ok(t) = f.registry.root_key().sign(Kind::Certificate, json.as_bytes()) {
                prop_assert!(certificate::verify_certificate(&t, f.store.roots()).is_err());
            }
        }

        #[test]
        fn a_prefix_covers_exactly_the_recordings_it_begins(
            prefix in "[A-Z]{2}[A-Z0-9]{3}",
            isrc in "[A-Z]{2}[A-Z0-9]{3}[0-9]{7}",
        ) {
            let (f, _) = certificate();
            let cert = certificate::Certificate {
                cid: "c".into(),
                party: Party { name: "P".into(), ipi: vec![], isni: vec![] },
                key: f.key.issuer_key().to_file().public,
                scope: Scope { isrc_prefixes: vec![prefix.clone()], ..Scope::default() },
                iat: super::super::claims::format_time(NOW),
                nbf: super::super::claims::format_time(NOW),
                exp: super::super::claims::format_time(NOW + DAY),
            };
            prop_assert!(cert.validate().is_ok());
            prop_assert_eq!(cert.covers_recording(&isrc), isrc.starts_with(&prefix));
            let hyphenated = format!("{}-{}-{}-{}", &isrc[..2], &isrc[2..5], &isrc[5..7], &isrc[7..]);
            prop_assert_eq!(cert.covers_recording(&hyphenated), isrc.starts_with(&prefix));
        }
    }
}

// ---- Models bound to licences (findings 2 and 3) ----

mod protected {
    use super::*;
    use crate::licence::enforce::{self, Setting};
    use crate::licence::gate::LoadedTrack;
    use crate::models::package::{Limits, ModelPackage};
    use crate::models::protection;
    use std::path::{Path, PathBuf};

    fn demo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix")
    }

    /// A copy of the demo remix model in `dir/name`, its manifest passed through `edit`.
    fn plain_copy(dir: &Path, name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(demo()).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        let manifest = std::fs::read_to_string(to.join("model.toml")).unwrap();
        std::fs::write(to.join("model.toml"), edit(&manifest)).unwrap();
        to
    }

    /// Protects `plain` into `dir/name`.
    fn protect(plain: &Path, dir: &Path, name: &str) -> (PathBuf, protection::Header, [u8; 32]) {
        let out = dir.join(name);
        let (header, key) = protection::protect(&plain.join("model.toml"), &out).unwrap();
        (out, header, key)
    }

    /// A remix licence `id` for the protected model `header`, carrying `key` sealed to the
    /// fixture's device when given; cached, and named as a project names it.
    fn licence_for(
        f: &Fixture,
        id: &str,
        header: &protection::Header,
        key: Option<[u8; 32]>,
    ) -> LoadedTrack {
        let mut c = claims_for("Northern Records");
        c.jti = id.into();
        c.uses = vec![Use::Remix];
        c.models[0].id = header.id.clone();
        c.models[0].sha256 = header.identity.clone();
        if let Some(key) = key {
            let device = f.store.device().unwrap().public();
            issue::seal_keys(
                &mut c,
                &[(header.identity.clone(), key)],
                &[(device.id, device.x25519)],
            )
            .unwrap();
        }
        let token = sign(&f.key, &c);
        let cached = f.store.install_licence(&token).unwrap();
        LoadedTrack::from_token(&cached.id, &cached.text)
    }

    fn unlock(
        f: &Fixture,
        folder: &Path,
        track: Option<&LoadedTrack>,
    ) -> Result<ModelPackage, String> {
        enforce::unlock_with(&f.store, folder, track, Setting::Studio).map_err(|e| e.to_string())
    }

    /// Finding 2: deleting `[rights]` from the manifest ran the same weights with no licence.
    #[test]
    fn a_protected_model_opens_only_under_a_licence_that_carries_its_key() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        // The rights holder's manifest says nothing about rights: protected, it still needs a
        // licence.
        let plain = plain_copy(dir.path(), "plain", |m| {
            let cut = m.find("[rights]").unwrap_or(m.len());
            m[..cut].to_owned()
        });
        let plain_package =
            ModelPackage::read(&plain.join("model.toml"), Limits::from_env()).unwrap();
        assert!(!plain_package.manifest.rights.licensed_track);
        let (folder, header, key) = protect(&plain, dir.path(), "protected");
        assert_eq!(header.identity, plain_package.identity);
        // No plaintext is left in the protected folder.
        let onnx_plain = std::fs::read(plain.join(&plain_package.manifest.model.file)).unwrap();
        for e in std::fs::read_dir(&folder).unwrap().flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            assert!(
                !bytes.windows(64).any(|w| w == &onnx_plain[1000..1064]),
                "{} holds plaintext weights",
                e.path().display()
            );
        }

        // No licence, whatever the manifest says.
        let e = unlock(&f, &folder, None).unwrap_err();
        assert!(
            e.contains("is protected and stays off") && e.contains("no track is loaded"),
            "{e}"
        );
        let source = crate::models::ModelSource::parse(folder.to_str().unwrap());
        assert!(source.package().is_err());
        // A licence for the model that does not carry its key.
        let keyless = licence_for(&f, "lic-keyless", &header, None);
        let e = unlock(&f, &folder, Some(&keyless)).unwrap_err();
        assert!(e.contains("carries no key for this model"), "{e}");
        // The licence with the key: the model opens, byte for byte the rights holder's.
        let track = licence_for(&f, "lic-keyed", &header, Some(key));
        let package = unlock(&f, &folder, Some(&track)).unwrap();
        assert_eq!(package.identity, plain_package.identity);
        assert_eq!(&package.onnx[..], &plain_package.onnx[..]);
        assert!(package.protected);
        // Decrypted, it needs a licence though its manifest names no rights.
        let req = enforce::requirement(&package, Setting::Studio).expect("a licence is needed");
        assert_eq!(req.uses, vec![Use::Remix]);
        assert_eq!(req.model_sha256, header.identity);
    }

    #[test]
    fn an_altered_swapped_or_relabelled_protected_model_does_not_open() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let (folder, header, key) = protect(&demo(), dir.path(), "protected");
        let track = licence_for(&f, "lic-keyed", &header, Some(key));
        unlock(&f, &folder, Some(&track)).unwrap();
        let onnx = folder.join(format!("{}.enc", header.files[1]));
        let manifest = folder.join("model.toml.enc");
        let original = std::fs::read(&onnx).unwrap();

        // One byte of the weights changed.
        let mut edited = original.clone();
        edited[original.len() / 2] ^= 1;
        std::fs::write(&onnx, &edited).unwrap();
        let e = unlock(&f, &folder, Some(&track)).unwrap_err();
        assert!(e.contains("does not decrypt"), "{e}");
        std::fs::write(&onnx, &original).unwrap();

        // The encrypted manifest and weights swapped by name.
        let m = std::fs::read(&manifest).unwrap();
        std::fs::write(&manifest, &original).unwrap();
        std::fs::write(&onnx, &m).unwrap();
        assert!(unlock(&f, &folder, Some(&track)).is_err());
        std::fs::write(&manifest, &m).unwrap();
        std::fs::write(&onnx, &original).unwrap();
        unlock(&f, &folder, Some(&track)).unwrap();

        // The header relabelled: another identity (the licence does not cover it), or a
        // voice (a remix licence does not allow `cover`).
        let text = std::fs::read_to_string(folder.join(protection::HEADER)).unwrap();
        let other = text.replace(&header.identity, &"0".repeat(64));
        std::fs::write(folder.join(protection::HEADER), other).unwrap();
        let e = unlock(&f, &folder, Some(&track)).unwrap_err();
        assert!(e.contains("is not covered"), "{e}");
        std::fs::write(
            folder.join(protection::HEADER),
            text.replace("voice = false", "voice = true"),
        )
        .unwrap();
        let e = unlock(&f, &folder, Some(&track)).unwrap_err();
        assert!(e.contains("does not allow `cover`"), "{e}");
        // An unreadable header fails closed (no plain fallback).
        std::fs::remove_file(folder.join(protection::HEADER)).unwrap();
        std::fs::create_dir(folder.join(protection::HEADER)).unwrap();
        let source = crate::models::ModelSource::parse(folder.to_str().unwrap());
        assert!(source.protected_folder().is_some());
        assert!(source.package().is_err());
        assert!(unlock(&f, &folder, Some(&track)).is_err());

        // Another model's key (sealed to this device, in a licence for that model) does not
        // open this one.
        let (other_folder, other_header, other_key) = protect(
            &plain_copy(dir.path(), "other-plain", |m| {
                m.replace("Night Drive", "Day Drive")
            }),
            dir.path(),
            "other",
        );
        assert_ne!(other_header.identity, header.identity);
        let wrong = protection::open(&folder, &other_header, &other_key, Limits::from_env());
        assert!(wrong.is_err());
        let _ = other_folder;
    }

    /// Finding 3: the manifest was read twice, and swapping it between the check and the load
    /// ran another protected model 9 times in 30. The header is read once and the licence
    /// checked against it; a folder swapped underneath decrypts to nothing else.
    #[test]
    fn swapping_the_folder_during_loads_never_opens_another_model() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let (a, header_a, key_a) = protect(&demo(), dir.path(), "a");
        let (b, header_b, key_b) = protect(
            &plain_copy(dir.path(), "b-plain", |m| {
                m.replace("Night Drive", "Day Drive")
            }),
            dir.path(),
            "b",
        );
        // The user holds licences for both, each with its own key.
        let track_a = licence_for(&f, "lic-a", &header_a, Some(key_a));
        let _track_b = licence_for(&f, "lic-b", &header_b, Some(key_b));
        let live = dir.path().join("live");
        copy_dir(&a, &live);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (live, a, b, stop) = (live.clone(), a.clone(), b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let from = if n % 2 == 0 { &b } else { &a };
                    for e in std::fs::read_dir(from).unwrap().flatten() {
                        let _ = std::fs::copy(e.path(), live.join(e.file_name()));
                    }
                    n += 1;
                }
            })
        };
        let (mut opened, mut refused) = (0, 0);
        for _ in 0..150 {
            match unlock(&f, &live, Some(&track_a)) {
                Ok(p) => {
                    assert_eq!(
                        p.identity, header_a.identity,
                        "another model ran under lic-a"
                    );
                    opened += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(opened + refused, 150);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

// ---- The fingerprint gate's leaks (finding 4, in part) ----

mod gate_leaks {
    use super::super::fingerprint::{self, LiveMatcher, TrackMatch};

    const RATE: u32 = 48_000;

    fn song(seed: u64, seconds: f64) -> Vec<Vec<f32>> {
        crate::synth::song(seed, seconds, RATE)
    }

    fn reference() -> (Vec<u32>, Option<i16>) {
        let s = song(1, 60.0);
        (
            fingerprint::compute(&s, RATE).unwrap(),
            fingerprint::loudness_dbfs(&s, RATE),
        )
    }

    /// The licensed track's left and right references, as `licence issue` computes them.
    fn channel_references() -> (Vec<u32>, Vec<u32>) {
        let s = song(1, 60.0);
        (
            fingerprint::compute(&s[..1], RATE).unwrap(),
            fingerprint::compute(&s[1..], RATE).unwrap(),
        )
    }

    /// A matcher with a stereo licence's references: mid, left and right.
    fn matcher() -> LiveMatcher {
        let (r, loudness) = reference();
        LiveMatcher::new(r, RATE)
            .unwrap()
            .with_channel_references(Some(channel_references()))
            .unwrap()
            .with_reference_loudness(loudness)
    }

    /// Feeds stereo as the tap does (mid and side), a block at a time; the state after each.
    fn feed(m: &mut LiveMatcher, left: &[f32], right: &[f32]) -> Vec<TrackMatch> {
        let mut states = Vec::new();
        for (l, r) in left.chunks(RATE as usize).zip(right.chunks(RATE as usize)) {
            let mid: Vec<f32> = l.iter().zip(r).map(|(a, b)| (a + b) * 0.5).collect();
            let side: Vec<f32> = l.iter().zip(r).map(|(a, b)| (a - b) * 0.5).collect();
            m.push_stereo(&mid, &side);
            states.push(m.state());
        }
        states
    }

    /// A cover licence naming a backing track (DECISIONS §5): the matcher listens to the
    /// "Backing" sidechain, where silence (an unrouted port reads as digital silence) is not a
    /// licensed use: the voice is dry from the start, is heard once the licensed backing is,
    /// stays on through a short break in it, and goes dry again when the backing stops. A
    /// silent backing is refused whole; another backing track is a mismatch.
    #[test]
    fn a_covers_backing_must_be_heard_and_be_the_licensed_track() {
        let mut m = matcher().of_backing();
        assert!(m.dry_when_quiet(), "dry before the backing is heard");
        let hush = vec![0.0; 5 * RATE as usize];
        let states = feed(&mut m, &hush, &hush);
        assert!(m.dry_when_quiet(), "an unrouted backing");
        assert!(
            states.iter().all(|s| *s == TrackMatch::Unknown),
            "{states:?}"
        );
        assert_eq!(
            m.allowance_left(),
            crate::licence::allowance::DAILY_SECONDS,
            "silence charged"
        );
        let licensed = song(1, 20.0);
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert!(states.contains(&TrackMatch::Match), "{states:?}");
        assert!(!m.dry_when_quiet());
        // A two-second break in the backing: the singer is not cut off.
        feed(
            &mut m,
            &hush[..2 * RATE as usize],
            &hush[..2 * RATE as usize],
        );
        assert!(!m.dry_when_quiet(), "cut off in a short break");
        feed(
            &mut m,
            &hush[..3 * RATE as usize],
            &hush[..3 * RATE as usize],
        );
        assert!(m.dry_when_quiet(), "still on with the backing stopped");

        let mut silent = matcher().of_backing();
        feed(&mut silent, &hush, &hush);
        let e = silent.judge_whole().unwrap_err();
        assert!(e.contains("backing is silent"), "{e}");

        let other = song(2, 30.0);
        let mut m = matcher().of_backing();
        let states = feed(&mut m, &other[0], &other[1]);
        assert!(states.contains(&TrackMatch::Mismatch), "{states:?}");
        let mut whole = matcher().of_backing();
        feed(&mut whole, &other[0], &other[1]);
        assert!(whole.judge_whole().is_err());
        let mut whole = matcher().of_backing();
        feed(&mut whole, &licensed[0], &licensed[1]);
        assert!(whole.judge_whole().is_ok(), "share {:?}", whole.share());
    }

    /// Anti-phase stereo (L = x, R = -x) downmixes to silence: an unrelated track played that
    /// way rendered in full. Loud side with a silent mid is now audio that does not match.
    #[test]
    fn anti_phase_stereo_is_not_silence() {
        let other = song(2, 30.0);
        let flipped: Vec<f32> = other[0].iter().map(|x| -x).collect();
        let mut m = matcher();
        let states = feed(&mut m, &other[0], &flipped);
        let off = states.iter().position(|s| *s == TrackMatch::Mismatch);
        assert_eq!(
            off,
            Some(fingerprint::MISMATCH_SECONDS as usize - 1),
            "{states:?}"
        );
        // The licensed track hard-panned (all in one channel) still matches.
        let licensed = song(1, 20.0);
        let silent = vec![0.0; licensed[0].len()];
        let mut m = matcher();
        let states = feed(&mut m, &licensed[0], &silent);
        assert!(states.contains(&TrackMatch::Match), "{states:?}");
        assert!(!states.contains(&TrackMatch::Mismatch));
    }

    /// The one-sided trick: the licensed track's left channel on the left, another track on
    /// the right. Their mix matched the mid reference at the old threshold (bit error rate
    /// 0.299, under 0.30), and a mix with less of the other track still may: each channel
    /// must match its own reference too.
    #[test]
    fn the_licensed_track_on_one_side_does_not_carry_another_on_the_other() {
        let licensed = song(1, 40.0);
        let other = song(2, 40.0);
        let mut m = matcher();
        let states = feed(&mut m, &licensed[0], &other[0]);
        assert!(states.contains(&TrackMatch::Mismatch), "{states:?}");
        let mut whole = matcher();
        feed(&mut whole, &licensed[0], &other[0]);
        assert!(whole.judge_whole().is_err());
        // The licensed track itself, in stereo: every channel matches.
        let mut m = matcher();
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert!(!states.contains(&TrackMatch::Mismatch), "{states:?}");
        assert!(m.judge_whole().is_ok(), "share {:?}", m.share());
    }

    /// A different track at -52 dBFS counted as silence (the threshold was -50 dBFS). Silence
    /// is now under -60 dBFS, and 45 dB under the reference's loudness.
    #[test]
    fn a_quiet_different_track_is_not_silence() {
        let (_, loudness) = reference();
        let loudness = loudness.unwrap();
        assert!((-30..=-3).contains(&loudness), "{loudness}");
        let other = song(2, 30.0);
        let rms = (other[0].iter().map(|x| x * x).sum::<f32>() / other[0].len() as f32).sqrt();
        let gain = 10f32.powf(-52.0 / 20.0) / rms;
        let quiet: Vec<f32> = other[0].iter().map(|x| x * gain).collect();
        let mut m = matcher();
        let states = feed(&mut m, &quiet, &quiet);
        assert!(
            states.contains(&TrackMatch::Mismatch),
            "-52 dBFS counted as silence"
        );
        // True silence still counts neither way.
        let mut m = matcher();
        let hush = vec![0.0; 30 * RATE as usize];
        assert!(feed(&mut m, &hush, &hush)
            .iter()
            .all(|s| *s == TrackMatch::Unknown));
    }

    /// A live input kept under -60 dBFS was never judged, so another track played that quietly
    /// (to be turned up after the plugin) ran through the model for ever. A quiet second that
    /// has not matched recently now gives way to the dry signal; the licensed track's quiet
    /// passages soon after it matched still run through the model, and true silence is left
    /// alone.
    #[test]
    fn a_quiet_input_that_has_not_matched_gives_way_to_the_dry_signal() {
        let (_, loudness) = reference();
        let other = song(2, 40.0);
        let rms = (other[0].iter().map(|x| x * x).sum::<f32>() / other[0].len() as f32).sqrt();
        let gain = 10f32.powf(-63.0 / 20.0) / rms;
        let quiet: Vec<f32> = other[0].iter().map(|x| x * gain).collect();
        assert!(fingerprint::silence_rms(loudness) > 10f32.powf(-63.0 / 20.0));
        let second = RATE as usize;
        // Dry from the first second on, never judged either way.
        let mut m = matcher();
        let mut dry = Vec::new();
        for s in quiet[..10 * second].chunks(second) {
            feed(&mut m, s, s);
            dry.push(m.dry_when_quiet());
        }
        assert!(dry.iter().all(|d| *d), "{dry:?}");
        assert_eq!(m.state(), TrackMatch::Unknown);
        // The licensed track, then the quiet other track: the model keeps running for the
        // quiet seconds while the match is recent, then gives way.
        let licensed = song(1, 20.0);
        let mut m = matcher();
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert_eq!(states.last(), Some(&TrackMatch::Match));
        assert!(!m.dry_when_quiet());
        let mut dry = Vec::new();
        for s in quiet[..30 * second].chunks(second) {
            feed(&mut m, s, s);
            dry.push(m.dry_when_quiet());
        }
        assert!(!dry[0], "{dry:?}");
        assert!(dry[25..].iter().all(|d| *d), "{dry:?}");
        // Digital silence: nothing to give way.
        let mut m = matcher();
        let hush = vec![0.0; 5 * second];
        feed(&mut m, &hush, &hush);
        assert!(!m.dry_when_quiet());
    }

    /// 5 s of the licensed track every 26 s kept an unrelated track on (each match reset the
    /// 20 s count). A bounce is judged by its share of matching seconds.
    #[test]
    fn interleaving_the_licensed_track_does_not_carry_a_bounce() {
        let licensed = song(1, 60.0);
        let other = song(2, 60.0);
        let rate = RATE as usize;
        let mut input = Vec::new();
        for k in 0..2 {
            input.extend_from_slice(&licensed[0][k * 5 * rate..(k + 1) * 5 * rate]);
            input.extend_from_slice(&other[0][k * 21 * rate..(k + 1) * 21 * rate]);
        }
        let mut bounce = matcher();
        bounce.set_bounce(true);
        let states = feed(&mut bounce, &input, &input);
        let off = states
            .iter()
            .position(|s| *s == TrackMatch::Mismatch)
            .expect("never off");
        assert!(off < 26, "off only after {off} s: {states:?}");
        assert!(
            states[off..].iter().all(|s| *s == TrackMatch::Mismatch),
            "a bounce that fell under the share came back on"
        );
        let mut whole = matcher();
        feed(&mut whole, &input, &input);
        let e = whole.judge_whole().unwrap_err();
        assert!(
            e.contains("of the input matches the licensed track; 80% is needed"),
            "{e}"
        );
        // Seconds matched while playing in real time do not count for a bounce that follows.
        let mut m = matcher();
        feed(&mut m, &licensed[0], &licensed[0]);
        m.set_bounce(true);
        let other_only = &other[0][..30 * rate];
        let states = feed(&mut m, other_only, other_only);
        assert!(
            states.iter().take(16).any(|s| *s == TrackMatch::Mismatch),
            "the real-time matches carried the bounce: {states:?}"
        );
        // The licensed track itself, bounced: on throughout, and judged whole it passes.
        let mut m = matcher();
        m.set_bounce(true);
        let states = feed(&mut m, &licensed[0][..40 * rate], &licensed[0][..40 * rate]);
        assert!(!states.contains(&TrackMatch::Mismatch), "{states:?}");
        assert!(m.judge_whole().is_ok(), "share {:?}", m.share());
    }

    /// Renders shorter than 20 s were never checked: an unrelated song cut into 18 s pieces
    /// rendered 7 of 7. A render is judged whole.
    #[test]
    fn short_pieces_are_judged_whole() {
        let rate = RATE as usize;
        let other = song(2, 130.0);
        let licensed = song(1, 40.0);
        for piece in other[0].chunks(18 * rate).take(7) {
            let mut m = matcher();
            feed(&mut m, piece, piece);
            assert!(
                m.judge_whole().is_err(),
                "an 18 s piece of another song passed"
            );
        }
        let mut m = matcher();
        let piece = &licensed[0][10 * rate..28 * rate];
        feed(&mut m, piece, piece);
        m.judge_whole()
            .expect("an 18 s piece of the licensed track");
        // Eight seconds (too few for the streaming judgement) are judged whole.
        let mut m = matcher();
        let six = &other[0][..8 * rate];
        feed(&mut m, six, six);
        assert!(m
            .judge_whole()
            .unwrap_err()
            .contains("of the input matches"));
        let mut m = matcher();
        let six = &licensed[0][20 * rate..28 * rate];
        feed(&mut m, six, six);
        m.judge_whole()
            .expect("eight seconds of the licensed track");
        // Too short to judge: refused, not waved through.
        let mut m = matcher();
        let blip = &other[0][..2 * rate];
        feed(&mut m, blip, blip);
        let e = m.judge_whole().unwrap_err();
        assert!(e.contains("too short to check"), "{e}");
    }

    /// A matcher whose pending seconds are charged to the licence folder's book at `dir`.
    fn charged_matcher(dir: &std::path::Path) -> LiveMatcher {
        use super::super::allowance::{licence_key, Allowances, LicenceAllowance};
        let store = super::Store::at(dir);
        matcher().with_book(Box::new(LicenceAllowance::new(
            Allowances::new(dir, store.device().unwrap()),
            licence_key("Northern Records", "allowance"),
        )))
    }

    fn spent(dir: &std::path::Path, seconds: i64) {
        use super::super::allowance::{licence_key, Allowances};
        let store = super::Store::at(dir);
        let now = super::super::policy::Clock::now(&super::super::policy::SystemClock);
        Allowances::new(dir, store.device().unwrap())
            .spend(&licence_key("Northern Records", "allowance"), seconds, now)
            .unwrap();
    }

    /// Every activation granted a fresh 20 s of another track. Unmatched seconds are now
    /// charged to the licence's daily allowance in the licence folder: a new matcher (a
    /// reactivation, a reload) or a new bounce starts with what is left, and with nothing
    /// left the model stays dry until the input matches.
    #[test]
    fn reactivating_or_a_new_bounce_grants_no_new_pending_time() {
        use super::super::allowance::DAILY_SECONDS;
        let dir = tempfile::tempdir().unwrap();
        let other = song(2, 30.0);
        let licensed = song(1, 30.0);
        // 110 s of today's 120 already spent: off after the 10 s left, not after 20.
        spent(dir.path(), i64::from(DAILY_SECONDS) - 10);
        let mut m = charged_matcher(dir.path());
        assert_eq!(m.allowance_left(), 10);
        let states = feed(&mut m, &other[0], &other[0]);
        let off = states.iter().position(|s| *s == TrackMatch::Mismatch);
        assert_eq!(off, Some(10), "{states:?}");
        drop(m);
        // Reactivated: off before the first second, and a bounce does not change that.
        let mut m = charged_matcher(dir.path());
        assert_eq!(m.state(), TrackMatch::Mismatch);
        m.set_bounce(true);
        assert_eq!(m.state(), TrackMatch::Mismatch);
        let states = feed(&mut m, &other[0][..480_000], &other[0][..480_000]);
        assert!(
            states.iter().all(|s| *s == TrackMatch::Mismatch),
            "{states:?}"
        );
        // The licensed track turns it back on, live and in a bounce.
        let mut m = charged_matcher(dir.path());
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert_eq!(states.last(), Some(&TrackMatch::Match), "{states:?}");
        let mut m = charged_matcher(dir.path());
        m.set_bounce(true);
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert_eq!(
            states.last(),
            Some(&TrackMatch::Match),
            "bounce: {states:?}"
        );
    }

    /// Pending time that ends in a match is refunded: the licensed track's own first seconds
    /// (before a window can be judged) cost nothing, and neither does a short stretch of
    /// something else that the licensed track then follows (the stretch lasts until the
    /// licensed track matches, 12.4 s into it: under 20 s in all).
    #[test]
    fn pending_time_that_ends_in_a_match_is_not_charged() {
        use super::super::allowance::DAILY_SECONDS;
        let dir = tempfile::tempdir().unwrap();
        let licensed = song(1, 30.0);
        let other = song(2, 5.0);
        let mut m = charged_matcher(dir.path());
        let states = feed(&mut m, &licensed[0], &licensed[1]);
        assert!(states.contains(&TrackMatch::Match), "{states:?}");
        assert_eq!(m.allowance_left(), DAILY_SECONDS);
        let mut m = charged_matcher(dir.path());
        feed(&mut m, &other[0], &other[0]);
        assert_eq!(m.allowance_left(), DAILY_SECONDS - 5);
        feed(&mut m, &licensed[0], &licensed[1]);
        assert_eq!(m.state(), TrackMatch::Match);
        assert_eq!(m.allowance_left(), DAILY_SECONDS);
        // A stretch that ends without a match stays charged, in a new activation too.
        let mut m = charged_matcher(dir.path());
        let long = song(3, 25.0);
        let states = feed(&mut m, &long[0], &long[1]);
        assert_eq!(states.last(), Some(&TrackMatch::Mismatch));
        drop(m);
        let m = charged_matcher(dir.path());
        assert_eq!(
            m.allowance_left(),
            DAILY_SECONDS - fingerprint::MISMATCH_SECONDS as u32
        );
    }

    /// A producer looping a few bars of the licensed track: each wrap is a transport jump,
    /// which splits the window ([`LiveMatcher::restart`]), and each piece matches at its own
    /// offset. Without the splits the loop matched nothing and went off; another track looped
    /// the same way still never matches.
    #[test]
    fn a_looped_section_matches_piece_by_piece() {
        let licensed = song(1, 40.0);
        let other = song(2, 40.0);
        let rate = RATE as usize;
        // 7.37 s: not a whole number of the song's bars, so passes joined without a split do
        // not line up with the song, and too short for a window's newest 12.4 s to be mostly
        // one pass.
        let (a, b) = (10 * rate, 10 * rate + 7 * rate + 37 * rate / 100);
        let looped = |m: &mut LiveMatcher, track: &[Vec<f32>], split: bool| {
            let mut states = Vec::new();
            for _ in 0..6 {
                if split {
                    m.restart();
                }
                states.extend(feed(m, &track[0][a..b], &track[1][a..b]));
            }
            states
        };
        let mut m = matcher();
        let states = looped(&mut m, &licensed, true);
        assert!(states.contains(&TrackMatch::Match), "{states:?}");
        assert!(!states.contains(&TrackMatch::Mismatch), "{states:?}");
        let mut m = matcher();
        let states = looped(&mut m, &licensed, false);
        assert!(
            states.contains(&TrackMatch::Mismatch),
            "unsplit: {states:?}"
        );
        let mut m = matcher();
        let states = looped(&mut m, &other, true);
        assert!(
            !states.contains(&TrackMatch::Match),
            "another track: {states:?}"
        );
        assert!(
            states.contains(&TrackMatch::Mismatch),
            "another track: {states:?}"
        );
    }

    /// A label's stem pack: the licence carries a reference for each stem it supplies, and an
    /// input that is one stem alone (the remixer works on the vocals) matches, which the whole
    /// recording's reference alone does not do; another track still never matches.
    #[test]
    fn a_stem_pack_licence_matches_each_stem_alone() {
        let (vocals, backing) = (song(3, 40.0), song(1, 40.0));
        let mix: Vec<Vec<f32>> = vocals
            .iter()
            .zip(&backing)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect())
            .collect();
        let reference = fingerprint::compute(&mix, RATE).unwrap();
        let stems = vec![
            fingerprint::compute(&vocals, RATE).unwrap(),
            fingerprint::compute(&backing, RATE).unwrap(),
        ];
        let matcher = |stems: Vec<Vec<u32>>| {
            LiveMatcher::new(reference.clone(), RATE)
                .unwrap()
                .with_reference_loudness(fingerprint::loudness_dbfs(&mix, RATE))
                .with_stem_references(stems)
        };
        // The recording's reference alone: a stem played alone does not match it.
        let mut m = matcher(Vec::new());
        let states = feed(&mut m, &vocals[0], &vocals[1]);
        assert!(!states.contains(&TrackMatch::Match), "{states:?}");
        // With the stem pack: each stem alone matches, and so does the mix.
        for input in [&vocals, &backing, &mix] {
            let mut m = matcher(stems.clone());
            let states = feed(&mut m, &input[0], &input[1]);
            assert!(states.contains(&TrackMatch::Match), "{states:?}");
            assert!(!states.contains(&TrackMatch::Mismatch), "{states:?}");
        }
        let other = song(2, 40.0);
        let mut m = matcher(stems.clone());
        let states = feed(&mut m, &other[0], &other[1]);
        assert!(!states.contains(&TrackMatch::Match), "{states:?}");
        assert!(states.contains(&TrackMatch::Mismatch), "{states:?}");
        // A short stem judged whole (a render) matches too.
        let mut m = matcher(stems).offline();
        let eight = 8 * RATE as usize;
        feed(&mut m, &vocals[0][..eight], &vocals[1][..eight]);
        m.judge_whole().expect("eight seconds of a stem");
    }

    /// The licensed track in 7.4 s pieces between 12 s stretches of another track, each a
    /// piece of its own (the DAW jumps between them): every licensed piece matched and refunded
    /// the stretch before it, so about 60% of another track ran for ever at no cost. Pending
    /// time before a split is not refunded by the piece after it, so the other track's stretches
    /// spend the day's allowance, and then go dry.
    #[test]
    fn licensed_pieces_between_stretches_of_another_track_spend_the_allowance() {
        use super::super::allowance::DAILY_SECONDS;
        let dir = tempfile::tempdir().unwrap();
        let licensed = song(1, 40.0);
        let other = song(2, 40.0);
        let rate = RATE as usize;
        let piece = 10 * rate..10 * rate + 7 * rate + 4 * rate / 10;
        let mut m = charged_matcher(dir.path());
        let mut other_heard = 0;
        for k in 0..16 {
            m.restart();
            feed(
                &mut m,
                &licensed[0][piece.clone()],
                &licensed[1][piece.clone()],
            );
            m.restart();
            let at = (k % 2) * 12 * rate;
            for s in other[0][at..at + 12 * rate].chunks(rate) {
                feed(&mut m, s, s);
                other_heard += usize::from(m.state() != TrackMatch::Mismatch);
            }
        }
        assert_eq!(m.allowance_left(), 0);
        assert!(
            other_heard <= DAILY_SECONDS as usize + 16,
            "another track ran for {other_heard} s"
        );
    }

    /// Turned down by 110 dB before the plugin (and up after it), another track lost nothing in
    /// floating point and was under the old -100 dBFS floor of what counts as a signal. Only
    /// digital silence is no signal now.
    #[test]
    fn a_track_turned_down_110_db_is_still_a_signal() {
        let other = song(2, 10.0);
        let tiny: Vec<f32> = other[0]
            .iter()
            .map(|x| x * 10f32.powf(-110.0 / 20.0))
            .collect();
        let mut m = matcher();
        for s in tiny.chunks(RATE as usize) {
            feed(&mut m, s, s);
            assert!(m.dry_when_quiet());
        }
        let mut whole = matcher();
        feed(&mut whole, &tiny, &tiny);
        assert!(whole.judge_whole().unwrap_err().contains("too quiet"));
    }

    /// L = s + x, R = s - x with x 14 dB over s: the mid is exactly s (the licensed track) and
    /// not anti-phase by the 20 dB rule, so a licence without channel references matched it and
    /// the model processed mostly x. Where no channel is checked, the side may not be louder
    /// than the mid.
    #[test]
    fn a_loud_side_does_not_ride_on_a_mid_that_matches() {
        let (reference, loudness) = reference();
        let mono = |m: &mut LiveMatcher, l: &[f32], r: &[f32]| feed(m, l, r);
        let licensed = song(1, 30.0);
        let other = song(2, 30.0);
        let s: Vec<f32> = licensed[0].iter().map(|x| x * 0.2).collect();
        let x: Vec<f32> = other[0].to_vec();
        let left: Vec<f32> = s.iter().zip(&x).map(|(a, b)| a + b).collect();
        let right: Vec<f32> = s.iter().zip(&x).map(|(a, b)| a - b).collect();
        let matcher = || {
            LiveMatcher::new(reference.clone(), RATE)
                .unwrap()
                .with_reference_loudness(loudness)
        };
        let mut m = matcher();
        let states = mono(&mut m, &left, &right);
        assert!(!states.contains(&TrackMatch::Match), "{states:?}");
        assert!(states.contains(&TrackMatch::Mismatch), "{states:?}");
        // The licensed track itself, in stereo, still matches a mono licence.
        let mut m = matcher();
        let states = mono(&mut m, &licensed[0], &licensed[1]);
        assert!(states.contains(&TrackMatch::Match), "{states:?}");
        assert!(!states.contains(&TrackMatch::Mismatch), "{states:?}");
    }

    /// In live use (no bounce share), 5 s of the licensed track every 26 s kept another track
    /// on. A 20 s window with 5 s of the licensed track in it does not match (at most 7 s of
    /// another track fit under a bit error rate of 0.20), so it goes off and stays off.
    #[test]
    fn interleaving_the_licensed_track_live_does_not_keep_another_on() {
        let licensed = song(1, 60.0);
        let other = song(2, 60.0);
        let rate = RATE as usize;
        let mut input = Vec::new();
        for k in 0..3 {
            input.extend_from_slice(&licensed[0][k * 5 * rate..(k + 1) * 5 * rate]);
            input.extend_from_slice(&other[0][k * 21 * rate..((k + 1) * 21 * rate).min(60 * rate)]);
        }
        let mut m = matcher();
        let states = feed(&mut m, &input, &input);
        let off = states
            .iter()
            .position(|s| *s == TrackMatch::Mismatch)
            .expect("never off");
        assert!(off <= 21, "off only after {off} s");
        assert!(
            !states[off..].contains(&TrackMatch::Match),
            "5 s of the licensed track turned it back on: {states:?}"
        );
    }
}

/// A voice is the artist's: a cover licence for an unencrypted voice model counts only from a
/// party the registry certified for that voice (a publisher certified for the work is not
/// enough), or one that sealed a protected voice's key into the licence.
#[test]
fn only_a_party_certified_for_a_voice_can_license_it() {
    use super::policy::Requirement;
    let f = fixture();
    let voice = "ab".repeat(32);
    let req = Requirement {
        model_id: "artist.voice".into(),
        model_sha256: voice.clone(),
        uses: vec![Use::Cover],
    };
    let cover = |key: &SigningKey, name: &str| {
        let mut c = claims_for(name);
        c.uses = vec![Use::Cover];
        c.models[0].id = "artist.voice".into();
        c.models[0].sha256 = voice.clone();
        sign(key, &c)
    };
    // A publisher certified for the work, not the voice.
    let publisher = publisher(&f);
    let v = policy::evaluate_token(
        &f.store,
        &cover(&publisher, "Aurora Songs"),
        &req,
        &ManualClock::at(NOW),
    );
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(
        v.reason.contains("is not certified for the voice"),
        "{}",
        v.reason
    );
    // The artist's label, certified for the voice.
    let label = certify(
        &f,
        "Aurora Vale Music",
        Scope {
            isrc_prefixes: vec!["GBAYE".into()],
            voices: vec![voice.clone()],
            ..Scope::default()
        },
        365,
    );
    let v = policy::evaluate_token(
        &f.store,
        &cover(&label, "Aurora Vale Music"),
        &req,
        &ManualClock::at(NOW),
    );
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
}
