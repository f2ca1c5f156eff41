//! The `refrain licence`, `registry` and `device` tools and `refrain render --licence`, as the
//! registry, a rights holder and a user run them: keygen, certify, device export, issue
//! (fingerprint from a WAV), inspect, verify, a licensed render, an unlicensed render refused,
//! revoke, and verify refusing the revoked licence. The registry is the development root's,
//! which only `dev-root` builds trust (this test binary needs the feature: `cargo xtask test`).

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

    // The rights holder's key, certified by the registry; the user's device.
    rights_holder(d, &data);
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
            "--cert",
            &p("northern.cert"),
            "--device",
            &p("device.paseto"),
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
        t.contains("75.00%  Aurora Vale (artist)")
            && t.contains("signature:   verifies")
            && t.contains("certified:   Northern Records: ISRC prefixes GBAYE"),
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
    assert_eq!(
        refrain::licence::store::Store::at(&data)
            .licence_tokens("cli-test-licence", None)
            .unwrap()
            .len(),
        1
    );
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
        text(&o).contains("only 0% of the input matches the licensed track; 80% is needed"),
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
            "--cert",
            &p("northern.cert"),
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

/// The parties' files in `d`: Northern Records' key (`keys/`) and its certificate from the
/// development registry (`northern.cert`, for the prefix GBAYE), this machine's device export
/// (`device.paseto`), and the licensed recording (`track.wav`).
fn rights_holder(d: &Path, data: &Path) {
    assert!(
        refrain::licence::roots::development_root_trusted(),
        "these tests need the development root: cargo test --features refrain/dev-root"
    );
    let p = |name: &str| d.join(name).display().to_string();
    let o = refrain(
        data,
        &[
            "licence",
            "keygen",
            "--issuer",
            "Northern Records",
            "--out",
            &p("keys"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("k4.pid."));
    refrain::licence::registry::development(&d.join("registry")).unwrap();
    let o = refrain(
        data,
        &[
            "registry",
            "certify",
            "--dir",
            &p("registry"),
            "--key",
            &p("keys/northern-records.public.toml"),
            "--isrc-prefix",
            "GB-AYE",
            "--out",
            &p("northern.cert"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = refrain(data, &["device", "export", "--out", &p("device.paseto")]);
    assert!(o.status.success(), "{}", text(&o));
    // Long enough to be judged whole (about 7 s are needed).
    let song = refrain::synth::song(1, 10.0, 48_000);
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
            "--cert",
            &p("northern.cert".into()),
            "--device",
            &p("device.paseto".into()),
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

/// `refrain` in a child that may use at most 1 GiB of address space and is killed if it has not
/// finished within 20 s: a command that reads a named pipe would hang, one that reads a device
/// or a huge file whole would run out of memory. Returns the output and whether it finished.
#[cfg(target_os = "linux")]
fn refrain_bounded(data: &Path, args: &[&str]) -> (Output, bool) {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_refrain"));
    cmd.args(args)
        .env(refrain::licence::store::ENV_DATA_DIR, data)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run refrain");
    let start = std::time::Instant::now();
    let mut finished = true;
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            finished = false;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), finished)
}

#[cfg(target_os = "linux")]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A sparse 2 GiB file: no disk space, but reading it whole needs 2 GiB of memory.
fn huge(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
}

/// `refrain licence issue` with these files.
fn issue_args<'a>(
    key: &'a str,
    cert: &'a str,
    device: &'a str,
    spec: &'a str,
    out: &'a str,
) -> Vec<&'a str> {
    vec![
        "licence", "issue", "--key", key, "--cert", cert, "--device", device, "--spec", spec,
        "--out", out,
    ]
}

/// A named pipe, `/dev/zero` and a huge file given as a licence (`install`, `verify`, `inspect`,
/// `render --licence`), as a key file (`issue --key`, `registry certify --key`), a certificate
/// (`issue --cert`), a device (`issue --device`, `registry refresh --device`) and as a licence
/// description (`issue --spec`) are refused at once, with what is wrong and what would do.
#[cfg(target_os = "linux")]
#[test]
fn pipes_devices_and_huge_files_are_refused_as_licences_keys_and_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    std::fs::write(
        d.join("licence.toml"),
        refrain::testkit::licence_spec("bad-input", &["remix"], Some(Path::new("track.wav"))),
    )
    .unwrap();
    mkfifo(&d.join("pipe"));
    huge(&d.join("huge"));
    let key = d
        .join("keys/northern-records.secret.toml")
        .display()
        .to_string();
    let spec = d.join("licence.toml").display().to_string();
    let cert = d.join("northern.cert").display().to_string();
    let device = d.join("device.paseto").display().to_string();
    let registry = d.join("registry").display().to_string();
    let out = d.join("out.paseto").display().to_string();
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/demo-remix/model.toml")
        .display()
        .to_string();
    let track = d.join("track.wav").display().to_string();
    let render_out = d.join("render.wav").display().to_string();
    let cases = [
        (
            d.join("pipe").display().to_string(),
            "is a named pipe, not a regular file",
        ),
        (
            "/dev/zero".to_owned(),
            "is a character device, not a regular file",
        ),
        (d.join("huge").display().to_string(), "2147483648 bytes"),
    ];
    for (bad, says) in &cases {
        let bad = bad.as_str();
        let issue = |key, cert, device, spec| issue_args(key, cert, device, spec, &out);
        let commands: [Vec<&str>; 10] = [
            vec!["licence", "install", bad],
            vec!["licence", "verify", bad],
            vec!["licence", "inspect", bad],
            issue(bad, &cert, &device, &spec),
            issue(&key, bad, &device, &spec),
            issue(&key, &cert, bad, &spec),
            issue(&key, &cert, &device, bad),
            vec![
                "registry", "certify", "--dir", &registry, "--key", bad, "--out", &out,
            ],
            vec![
                "registry", "refresh", "--dir", &registry, "--device", bad, "--out", &out,
            ],
            vec![
                "render",
                "--model",
                &model,
                "--in",
                &track,
                "--out",
                &render_out,
                "--licence",
                bad,
            ],
        ];
        for args in commands {
            let (o, finished) = refrain_bounded(&data, &args);
            assert!(finished, "`refrain {}` did not return", args.join(" "));
            let t = text(&o);
            // An error it reports (exit status 1), not a crash.
            assert_eq!(
                o.status.code(),
                Some(1),
                "`refrain {}`: {t}",
                args.join(" ")
            );
            assert!(
                t.contains(bad) && t.contains(says) && !t.contains("panicked"),
                "`refrain {}`: {t}",
                args.join(" ")
            );
        }
    }
    assert!(!d.join("out.paseto").exists() && !d.join("render.wav").exists());
}

/// A named pipe, a link to `/dev/zero` and a huge file among the cached licences and the
/// revocation lists (and a pipe for the clock and the receipt): `licence list` names each and
/// lists the good licence, and `licence verify` still finds it valid.
#[cfg(target_os = "linux")]
#[test]
fn pipes_devices_and_huge_files_in_the_licence_folder_do_not_stop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    let good =
        refrain::testkit::licence_spec("good-licence", &["remix"], Some(Path::new("track.wav")));
    let o = issue(d, &data, "good", &good);
    assert!(o.status.success(), "{}", text(&o));
    let o = refrain(
        &data,
        &[
            "licence",
            "install",
            &d.join("good.paseto").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::create_dir_all(data.join("revocations")).unwrap();
    let store = refrain::licence::store::Store::at(&data);
    let kid = &store.licence_tokens("good-licence", None).unwrap()[0].kid;
    let licences = format!("licences/{}", refrain::licence::store::key_tag(kid));
    for folder in [licences.as_str(), "revocations"] {
        mkfifo(&data.join(format!("{folder}/pipe.paseto")));
        std::os::unix::fs::symlink("/dev/zero", data.join(format!("{folder}/zero.paseto")))
            .unwrap();
        huge(&data.join(format!("{folder}/huge.paseto")));
    }
    mkfifo(&data.join("clock"));
    mkfifo(&data.join("receipt.paseto"));

    let (o, finished) = refrain_bounded(&data, &["licence", "list"]);
    assert!(finished, "`licence list` did not return");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("good-licence  Aurora Vale - Northern Lights"),
        "{t}"
    );
    for (id, says) in [
        ("pipe", "a named pipe, not a regular file"),
        ("zero", "a character device, not a regular file"),
        ("huge", "2147483648 bytes"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{id}  unusable:")) && l.contains(says)),
            "{id}: {t}"
        );
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    for folder in ["revocations"] {
        for (name, says) in [
            ("pipe", "a named pipe, not a regular file"),
            ("zero", "a character device, not a regular file"),
            ("huge", "2147483648 bytes"),
        ] {
            assert!(
                stderr.lines().any(|l| l.starts_with("warning: skipped")
                    && l.contains(&format!("{folder}/{name}."))
                    && l.contains(says)),
                "{folder}/{name}: {t}"
            );
        }
    }

    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/demo-remix/model.toml")
        .display()
        .to_string();
    let (o, finished) = refrain_bounded(
        &data,
        &["licence", "verify", "good-licence", "--model", &model],
    );
    assert!(finished, "`licence verify` did not return");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("valid: licensed:"), "{}", text(&o));
}

/// A licence written over an earlier one appears whole or not at all: a write that fails
/// midway (here a file-size limit, as on a full disk) leaves the earlier file byte for byte
/// and no partial file beside it.
#[cfg(target_os = "linux")]
#[test]
fn a_licence_write_that_fails_midway_leaves_the_earlier_file_whole() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    std::fs::write(
        d.join("licence.toml"),
        refrain::testkit::licence_spec("rewritten", &["remix"], Some(Path::new("track.wav"))),
    )
    .unwrap();
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("licence.paseto");
    std::fs::write(&target, "the earlier licence").unwrap();
    let args = [
        "licence".to_owned(),
        "issue".to_owned(),
        "--key".to_owned(),
        d.join("keys/northern-records.secret.toml")
            .display()
            .to_string(),
        "--cert".to_owned(),
        d.join("northern.cert").display().to_string(),
        "--device".to_owned(),
        d.join("device.paseto").display().to_string(),
        "--spec".to_owned(),
        d.join("licence.toml").display().to_string(),
        "--out".to_owned(),
        target.display().to_string(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_refrain"));
    cmd.args(&args)
        .env(refrain::licence::store::ENV_DATA_DIR, &data)
        .env_remove("RUST_BACKTRACE");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().expect("run refrain");
    assert!(!o.status.success(), "the write must fail: {}", text(&o));
    assert!(text(&o).contains("licence.paseto"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "the earlier licence"
    );
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["licence.paseto"], "no partial file left behind");

    // Without the limit the licence replaces the earlier file, whole.
    let o = refrain(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let o = refrain(
        &data,
        &["licence", "inspect", &target.display().to_string()],
    );
    assert!(text(&o).contains("signature:   verifies"), "{}", text(&o));
}

/// DECISIONS 2: stems of a separator that needs a licence leave Refrain as files only under a
/// licence that allows `remix` and `stem-export`, and only for the licensed track (the whole
/// input is judged). Before, `refrain separate` ran any separator with no check at all.
#[test]
fn refrain_separate_needs_stem_export_and_the_licensed_track() {
    let dir = tempfile::tempdir().unwrap();
    let (d, data) = (dir.path(), dir.path().join("data"));
    rights_holder(d, &data);
    // A generated MDX-Net separator whose rights holder declared it licensed.
    let sep = d.join("separator");
    std::fs::create_dir_all(&sep).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test/mdx-band");
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        std::fs::copy(e.path(), sep.join(e.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(sep.join("model.toml")).unwrap();
    std::fs::write(
        sep.join("model.toml"),
        format!("{manifest}\n[rights]\nlicensed_track = true\n"),
    )
    .unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/demo-remix/model.toml")
        .display()
        .to_string();
    let spec = |id: &str, uses: &[&str]| {
        refrain::testkit::licence_spec(id, uses, Some(Path::new("track.wav")))
            .replace(&demo, &sep.join("model.toml").display().to_string())
    };
    let p = |name: &str| d.join(name).display().to_string();
    let separate = |input: &str, licence: Option<&str>| {
        let mut args = vec![
            "separate".to_owned(),
            p(input),
            "--out-dir".into(),
            p("stems"),
            "--model".into(),
            sep.display().to_string(),
        ];
        if let Some(l) = licence {
            args.extend(["--licence".into(), p(l)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refrain(&data, &args)
    };

    let o = separate("track.wav", None);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("needs a licence that allows stem export: no track is loaded"),
        "{}",
        text(&o)
    );
    let o = issue(d, &data, "remix-only", &spec("remix-only", &["remix"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = separate("track.wav", Some("remix-only.paseto"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("does not allow `stem-export` use"),
        "{}",
        text(&o)
    );
    assert!(!d.join("stems").exists(), "stems were written");
    let o = issue(d, &data, "stems", &spec("stems", &["remix", "stem-export"]));
    assert!(o.status.success(), "{}", text(&o));
    // Another recording under the stem-export licence: refused, nothing written.
    refrain::media::write_wav(
        &d.join("other.wav"),
        &refrain::synth::song(2, 8.0, 48_000),
        48_000,
    )
    .unwrap();
    let o = separate("other.wav", Some("stems.paseto"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("of the input matches the licensed track"),
        "{}",
        text(&o)
    );
    let written = std::fs::read_dir(d.join("stems"))
        .map(|r| r.flatten().count())
        .unwrap_or(0);
    assert_eq!(written, 0, "stems were written");
    // The licensed track: its stems.
    let o = separate("track.wav", Some("stems.paseto"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_dir(d.join("stems")).unwrap().count() >= 2);
}
