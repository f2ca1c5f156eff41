//! The `refrain licence` tools and `refrain render --licence`, as a rights holder and a user run
//! them: keygen, issue (fingerprint from a WAV), inspect, verify, a licensed render, an
//! unlicensed render refused, revoke, and verify refusing the revoked licence.

use std::path::Path;
use std::process::{Command, Output};

fn refrain(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(args)
        .env(refrain::licence::store::ENV_DATA_DIR, data)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run refrain")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn rights_holder_and_user_tools_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let p = |name: &str| d.join(name).display().to_string();

    // The rights holder's key, trusted on this machine.
    let o = refrain(
        &data,
        &[
            "licence",
            "keygen",
            "--issuer",
            "Northern Records",
            "--out",
            &p("keys"),
            "--trust",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("k4.pid."));
    let o = refrain(
        &data,
        &[
            "licence",
            "keygen",
            "--issuer",
            "Northern Records",
            "--out",
            &p("keys"),
        ],
    );
    assert!(!o.status.success(), "a key must never be overwritten");

    // The licensed recording and the description.
    let song = refrain::synth::song(1, 12.0, 48_000);
    refrain::media::write_wav(&d.join("track.wav"), &song, 48_000).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix/model.toml");
    // The fixture every licence test issues from (`audio` relative to the description).
    std::fs::write(
        d.join("licence.toml"),
        refrain::testkit::licence_spec(
            "cli-test-licence",
            &["remix"],
            Some(Path::new("track.wav")),
        ),
    )
    .unwrap();
    let o = refrain(
        &data,
        &[
            "licence",
            "issue",
            "--key",
            &p("keys/northern-records.secret.toml"),
            "--spec",
            &p("licence.toml"),
            "--out",
            &p("nl.paseto"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("sub-fingerprints"), "{}", text(&o));

    let o = refrain(&data, &["licence", "inspect", &p("nl.paseto")]);
    assert!(o.status.success());
    let t = text(&o);
    assert!(
        t.contains("75.00%  Aurora Vale (artist)") && t.contains("signature:   verifies"),
        "{t}"
    );

    let o = refrain(
        &data,
        &[
            "licence",
            "verify",
            &p("nl.paseto"),
            "--model",
            &model.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("valid: licensed: Aurora Vale - Northern Lights (GBAYE2600001)"));
    // Real-time use is not in this licence.
    let o = refrain(
        &data,
        &[
            "licence",
            "verify",
            &p("nl.paseto"),
            "--model",
            &model.display().to_string(),
            "--live",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("does not allow `live` use"),
        "{}",
        text(&o)
    );

    // Renders: refused without the licence, done with it (the file is cached on the way).
    let m = model.display().to_string();
    let o = refrain(
        &data,
        &[
            "render",
            "--model",
            &m,
            "--in",
            &p("track.wav"),
            "--out",
            &p("out.wav"),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("needs a licence: no track is loaded"),
        "{}",
        text(&o)
    );
    let o = refrain(
        &data,
        &[
            "render",
            "--model",
            &m,
            "--in",
            &p("track.wav"),
            "--out",
            &p("out.wav"),
            "--licence",
            &p("nl.paseto"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(data.join("licences/cli-test-licence.paseto").is_file());
    let (out, _) = refrain::media::read_wav(&d.join("out.wav")).unwrap();
    let diff: f32 = out[0]
        .iter()
        .zip(&song[0])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 100.0, "the model was not heard ({diff})");
    // Another recording under the same licence is refused by the fingerprint.
    let other = refrain::synth::song(2, 30.0, 48_000);
    refrain::media::write_wav(&d.join("other.wav"), &other, 48_000).unwrap();
    let o = refrain(
        &data,
        &[
            "render",
            "--model",
            &m,
            "--in",
            &p("other.wav"),
            "--out",
            &p("o.wav"),
            "--licence",
            "cli-test-licence",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("input does not match the licensed track"),
        "{}",
        text(&o)
    );

    // Revocation.
    let o = refrain(
        &data,
        &[
            "licence",
            "revoke",
            "--key",
            &p("keys/northern-records.secret.toml"),
            "--licence",
            "cli-test-licence",
            "--out",
            &p("revoked.paseto"),
            "--install",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = refrain(&data, &["licence", "verify", "cli-test-licence"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("has been revoked by its issuer"),
        "{}",
        text(&o)
    );
    let o = refrain(&data, &["licence", "list"]);
    assert!(
        text(&o).contains("cli-test-licence  unusable: licence cli-test-licence has been revoked"),
        "{}",
        text(&o)
    );

    // A damaged file gets a clear error, not a panic.
    std::fs::write(d.join("junk.paseto"), "v4.public.AAAA").unwrap();
    let o = refrain(&data, &["licence", "inspect", &p("junk.paseto")]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("damaged or truncated") && !text(&o).contains("panicked"),
        "{}",
        text(&o)
    );
}

/// `refrain` with extra environment variables (the user's own shell).
fn refrain_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(args)
        .env(refrain::licence::store::ENV_DATA_DIR, data)
        .envs(env.iter().copied())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run refrain")
}

/// A trusted issuer key and the licensed recording in `d`.
fn rights_holder(d: &Path, data: &Path) {
    let keys = d.join("keys").display().to_string();
    let o = refrain(
        data,
        &[
            "licence",
            "keygen",
            "--issuer",
            "Northern Records",
            "--out",
            &keys,
            "--trust",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let song = refrain::synth::song(1, 6.0, 48_000);
    refrain::media::write_wav(&d.join("track.wav"), &song, 48_000).unwrap();
}

/// Issues the description `spec` (written to `d/NAME.toml`) into `d/NAME.paseto`.
fn issue(d: &Path, data: &Path, name: &str, spec: &str) -> Output {
    std::fs::write(d.join(format!("{name}.toml")), spec).unwrap();
    let p = |f: String| d.join(f).display().to_string();
    refrain(
        data,
        &[
            "licence",
            "issue",
            "--key",
            &p("keys/northern-records.secret.toml".into()),
            "--spec",
            &p(format!("{name}.toml")),
            "--out",
            &p(format!("{name}.paseto")),
        ],
    )
}

/// The territory comes from the licence (the issuer states where the licensee is), never from
/// `REFRAIN_TERRITORY`, `settings.toml` or the locale, which the user controls.
#[test]
fn the_environment_does_not_decide_the_territory() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    let spec = |id: &str, extra: &str| {
        format!(
            "territories = [\"GB\"]\n{extra}{}",
            refrain::testkit::licence_spec(id, &["remix"], Some(Path::new("track.wav")))
        )
    };
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("settings.toml"), "territory = \"GB\"\n").unwrap();
    let claims_gb = [
        ("REFRAIN_TERRITORY", "GB"),
        ("LANG", "en_GB.UTF-8"),
        ("LC_ALL", "en_GB.UTF-8"),
    ];
    let verify = |name: &str, env: &[(&str, &str)]| {
        let licence = d.join(format!("{name}.paseto")).display().to_string();
        refrain_with(&data, &["licence", "verify", &licence], env)
    };

    // Limited to GB, no licensee territory: refused, whatever the machine says.
    let o = issue(d, &data, "unstated", &spec("unstated", ""));
    assert!(o.status.success(), "{}", text(&o));
    let o = verify("unstated", &claims_gb);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("names no licensee territory"),
        "{}",
        text(&o)
    );

    // The issuer states GB: valid, whatever the machine says.
    let o = issue(
        d,
        &data,
        "in-gb",
        &spec("in-gb", "licensee_territory = \"GB\"\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = verify(
        "in-gb",
        &[("REFRAIN_TERRITORY", "US"), ("LANG", "en_US.UTF-8")],
    );
    assert!(o.status.success(), "{}", text(&o));

    // The issuer states US: refused, even on a machine set to GB.
    let o = issue(
        d,
        &data,
        "in-us",
        &spec("in-us", "licensee_territory = \"US\"\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = verify("in-us", &claims_gb);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("licensee is in US"), "{}", text(&o));
}

/// `licence issue` refuses a licensee name with a right-to-left override (it would display
/// reversed), and a remix licence with no licensed recording to fingerprint (it would match
/// any recording).
#[test]
fn licence_issue_refuses_bidi_names_and_remix_without_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    let good =
        refrain::testkit::licence_spec("issue-test", &["remix"], Some(Path::new("track.wav")));
    let o = issue(d, &data, "good", &good);
    assert!(o.status.success(), "{}", text(&o));

    let reversed = good.replace("\"DJ Example\"", "\"DJ \u{202E}elpmaxE\"");
    assert_ne!(reversed, good);
    let o = issue(d, &data, "reversed", &reversed);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("sub") && text(&o).contains("U+202E"),
        "{}",
        text(&o)
    );
    assert!(!d.join("reversed.paseto").exists());

    let o = refrain(
        &data,
        &[
            "licence",
            "keygen",
            "--issuer",
            "Northern \u{202E}Records",
            "--out",
            &d.join("keys2").display().to_string(),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("U+202E"), "{}", text(&o));

    let no_audio = refrain::testkit::licence_spec("no-audio", &["remix"], None);
    let o = issue(d, &data, "no-audio", &no_audio);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("a remix licence needs the licensed recording"),
        "{}",
        text(&o)
    );
    assert!(!d.join("no-audio.paseto").exists());
}
