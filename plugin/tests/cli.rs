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
