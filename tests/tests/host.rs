//! Host-level tests: the built `Refrain.clap` (debug bundle: nice-plug aborts on any allocation
//! in `process()`) loaded through clack-host, as a DAW loads it.

use refrain_tests::{default_plugin_path, Host, Lcg, Setup};
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn host() -> Host {
    Host::load(&default_plugin_path()).expect("load the plugin")
}

fn host_with_model(model: &Path) -> Host {
    let mut h = host();
    h.set_state_field("model", model.to_str().unwrap()).unwrap();
    h
}

fn peak(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0
}

fn sine(len: usize, rate: f64, f: f64, amp: f32) -> Vec<Vec<f32>> {
    let l: Vec<f32> = (0..len)
        .map(|i| amp * (std::f64::consts::TAU * f * i as f64 / rate).sin() as f32)
        .collect();
    vec![l.clone(), l.iter().map(|x| -0.5 * x).collect()]
}

/// Every rate x block size from the issue, with the identity model (latency 100 at 48 kHz).
#[test]
fn impulse_comes_out_at_the_reported_latency_for_every_rate_and_block_size() {
    let mut h = host_with_model(&models().join("test/identity/model.toml"));
    for rate in [44_100.0, 48_000.0, 96_000.0] {
        for block in [1u32, 17, 64, 128, 441, 512, 1024, 4096, 0] {
            let (max, mut rng) = if block == 0 {
                (4096, Some(Lcg(rate as u64)))
            } else {
                (block, None)
            };
            h.activate(Setup::offline(rate, max)).unwrap();
            let latency = h.latency() as usize;
            let at = 2_000;
            let mut input = vec![vec![0.0f32; at + latency + 1_500]; 2];
            input[0][at] = 1.0;
            input[1][at] = -1.0;
            let out = h
                .render(
                    &input,
                    || {
                        rng.as_mut()
                            .map_or(max as usize, |r| 1 + (r.next_u32() % 4096) as usize)
                    },
                    false,
                )
                .unwrap();
            assert_eq!(peak(&out[0]), at + latency, "rate {rate} block {block}");
            assert_eq!(
                peak(&out[1]),
                at + latency,
                "rate {rate} block {block} right"
            );
            if rate == 48_000.0 {
                assert_eq!((out[0][at + latency], out[1][at + latency]), (1.0, -1.0));
            }
        }
    }
}

#[test]
fn in_place_and_out_of_place_processing_agree() {
    let mut a = host_with_model(&models().join("test/fir/model.toml"));
    a.activate(Setup::offline(48_000.0, 256)).unwrap();
    let input = sine(12_000, 48_000.0, 3_000.0, 0.5);
    let in_place = a.render(&input, || 256, false).unwrap();

    let mut b = host_with_model(&models().join("test/fir/model.toml"));
    b.activate(Setup::offline(48_000.0, 256)).unwrap();
    let mut out = vec![vec![0.0f32; 12_000]; 2];
    for t in (0..12_000).step_by(256) {
        let e = (t + 256).min(12_000);
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[t..e]).collect();
        let (l, r) = out.split_at_mut(1);
        let mut outs: Vec<&mut [f32]> = vec![&mut l[0][t..e], &mut r[0][t..e]];
        b.process(&ins, &mut outs).unwrap();
    }
    assert_eq!(in_place, out);
    // The FIR lowpass at 2 kHz takes most of a 3 kHz tone away: the model really ran.
    let latency = a.latency() as usize;
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    assert!(rms(&out[0][latency + 1_000..]) < 0.5 * rms(&input[0][1_000..]));
}

#[test]
fn state_round_trips_byte_identical_with_model_and_parameters() {
    let model = models().join("test/gain/model.toml");
    let mut a = host_with_model(&model);
    a.set_state_param("mix", serde_json::json!({ "f32": 0.75 }))
        .unwrap();
    let saved = a.save_state().unwrap();
    let text = String::from_utf8_lossy(&saved);
    assert!(text.contains("gain/model.toml"), "{text}");
    let mut b = host();
    b.load_state(&saved).unwrap();
    assert_eq!(b.save_state().unwrap(), saved);
    // And the restored instance runs that model: left x0.5, right x2.
    b.activate(Setup::offline(44_100.0, 128)).unwrap();
    let latency = b.latency() as usize;
    let input = sine(8_000, 44_100.0, 200.0, 0.25);
    let out = b.render(&input, || 128, false).unwrap();
    let i = 4_000;
    let expect_l = 0.25 * input[0][i - latency] + 0.75 * 0.5 * input[0][i - latency];
    assert!(
        (out[0][i] - expect_l).abs() < 1e-5,
        "{} vs {expect_l}",
        out[0][i]
    );
}

#[test]
fn reactivation_with_new_rates_and_sizes_keeps_exact_latency() {
    let mut h = host();
    let mut last = 0;
    for (rate, block) in [
        (48_000.0, 64),
        (44_100.0, 1024),
        (96_000.0, 32),
        (48_000.0, 512),
    ] {
        h.activate(Setup::realtime(rate, block)).unwrap();
        h.deactivate();
        h.activate(Setup::offline(rate, block)).unwrap();
        let latency = h.latency() as usize;
        assert_ne!(latency, last);
        last = latency;
        let mut input = vec![vec![0.0f32; latency + 3_000]; 2];
        input[0][500] = 0.5;
        input[1][500] = 0.5;
        let out = h.render(&input, || block as usize, false).unwrap();
        assert_eq!(peak(&out[0]), 500 + latency, "rate {rate} block {block}");
    }
}

#[test]
fn two_bounces_are_bit_identical() {
    let input = sine(48_000, 48_000.0, 440.0, 0.8);
    let bounce = || {
        let mut h = host();
        h.activate(Setup::offline(48_000.0, 4096)).unwrap();
        let mut rng = Lcg(5);
        h.render(&input, || 1 + (rng.next_u32() % 4096) as usize, false)
            .unwrap()
    };
    let (a, b) = (bounce(), bounce());
    assert!(a == b, "bounces differ");
    assert!(a[0].iter().any(|x| x.abs() > 0.3));
}

/// Every broken model keeps the plugin loaded and passes the latency-aligned dry signal.
#[test]
fn bad_models_pass_aligned_dry_audio() {
    let dir = tempfile::tempdir().unwrap();
    let identity = models().join("test/identity");
    let copy = |name: &str, edit: &dyn Fn(&Path)| -> PathBuf {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["model.toml", "identity.onnx"] {
            std::fs::copy(identity.join(f), d.join(f)).unwrap();
        }
        edit(&d);
        d.join("model.toml")
    };
    let cases: Vec<(&str, PathBuf)> = vec![
        ("missing manifest", dir.path().join("nothing/model.toml")),
        (
            "missing onnx",
            copy("missing", &|d| {
                std::fs::remove_file(d.join("identity.onnx")).unwrap()
            }),
        ),
        (
            "truncated onnx",
            copy("truncated", &|d| {
                let b = std::fs::read(d.join("identity.onnx")).unwrap();
                std::fs::write(d.join("identity.onnx"), &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "hash mismatch",
            copy("hash", &|d| {
                let t = std::fs::read_to_string(d.join("model.toml")).unwrap();
                let line = t
                    .lines()
                    .find(|l| l.starts_with("sha256"))
                    .unwrap()
                    .to_owned();
                std::fs::write(
                    d.join("model.toml"),
                    t.replace(&line, &format!("sha256 = \"{}\"", "ab".repeat(32))),
                )
                .unwrap();
            }),
        ),
        (
            "wrong input name",
            models().join("test/bad-input-name/model.toml"),
        ),
        (
            "wrong input shape",
            models().join("test/bad-input-shape/model.toml"),
        ),
        (
            "wrong input dtype",
            models().join("test/bad-input-dtype/model.toml"),
        ),
    ];
    for (what, model) in cases {
        let mut h = host_with_model(&model);
        h.activate(Setup::offline(48_000.0, 256)).unwrap();
        let latency = h.latency() as usize;
        assert!(
            latency > 0,
            "{what}: the dry path keeps the planned latency"
        );
        let input = sine(6_000, 48_000.0, 700.0, 0.6);
        let out = h.render(&input, || 256, false).unwrap();
        for c in 0..2 {
            assert!(out[c][..latency].iter().all(|&x| x == 0.0), "{what}");
            assert_eq!(
                &out[c][latency..],
                &input[c][..6_000 - latency],
                "{what}: dry, bit-identical and aligned"
            );
        }
    }
}
