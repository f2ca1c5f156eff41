//! Host-level tests: the built `Refrain.clap` (debug bundle: nice-plug aborts on any allocation
//! in `process()`) loaded through clack-host, as a DAW loads it. The latency tests run a model
//! that flips polarity, so processed audio can never pass for the latency-aligned dry path.

use refrain_tests::{
    default_plugin_path, host_with_model, impulse, max_step, models_dir, peak_index, sine, Host,
    Lcg, Setup,
};
use std::path::{Path, PathBuf};

fn host() -> Host {
    Host::load(&default_plugin_path()).expect("load the plugin")
}

fn models() -> PathBuf {
    models_dir()
}

fn peak(x: &[f32]) -> usize {
    peak_index(x)
}

/// Sets the Live/Studio mode as a preset would.
fn set_mode(h: &mut Host, mode: &str) {
    h.set_state_param("mode", serde_json::json!({ "string": mode }))
        .unwrap();
}

/// Every rate x block size from the issue, in both modes, with the polarity-flip model
/// (latency 100 at 48 kHz).
#[test]
fn impulse_comes_out_processed_at_the_reported_latency_for_every_rate_block_size_and_mode() {
    for mode in ["live", "studio"] {
        let mut h = host_with_model("test/invert");
        set_mode(&mut h, mode);
        let mut latencies = Vec::new();
        for rate in [44_100.0, 48_000.0, 96_000.0] {
            for block in [1u32, 17, 64, 128, 441, 512, 1024, 4096, 0] {
                let (max, mut rng) = if block == 0 {
                    (4096, Some(Lcg(rate as u64)))
                } else {
                    (block, None)
                };
                h.activate(Setup::offline(rate, max)).unwrap();
                let latency = h.latency() as usize;
                latencies.push(latency);
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
                let what = format!("{mode} rate {rate} block {block}");
                assert_eq!(peak(&out[0]), at + latency, "{what}");
                assert_eq!(peak(&out[1]), at + latency, "{what} right");
                // Processed: flipped.
                if rate == 48_000.0 {
                    assert_eq!(
                        (out[0][at + latency], out[1][at + latency]),
                        (-1.0, 1.0),
                        "{what}"
                    );
                } else {
                    assert!(
                        out[0][at + latency] < -0.4 && out[1][at + latency] > 0.4,
                        "{what}"
                    );
                }
            }
        }
        assert!(latencies.windows(2).any(|w| w[0] != w[1]));
    }
}

#[test]
fn studio_mode_reports_more_latency_than_live() {
    let mut live = host();
    live.activate(Setup::offline(44_100.0, 128)).unwrap();
    let mut studio = host();
    set_mode(&mut studio, "studio");
    studio.activate(Setup::offline(44_100.0, 128)).unwrap();
    assert!(
        studio.latency() > live.latency(),
        "studio {} vs live {}",
        studio.latency(),
        live.latency()
    );
}

#[test]
fn the_tail_reported_to_the_host_covers_the_audio_in_flight() {
    let mut h = host();
    h.activate(Setup::realtime(48_000.0, 256)).unwrap();
    let input = sine(4_800, 48_000.0, 440.0, 0.5);
    h.render(&input, || 256, false).unwrap();
    assert_eq!(h.tail(), Some(h.latency()));
}

#[test]
fn real_time_playback_matches_the_bounce_and_is_processed() {
    let input = refrain::synth::song(4, 3.0, 48_000);
    let mut offline = host_with_model("test/invert");
    offline.activate(Setup::offline(48_000.0, 256)).unwrap();
    let bounced = offline.render(&input, || 256, false).unwrap();
    let mut live = host_with_model("test/invert");
    live.activate(Setup::realtime(48_000.0, 256)).unwrap();
    assert_eq!(live.latency(), offline.latency());
    let played = live.render(&input, || 256, true).unwrap();
    let latency = live.latency() as usize;
    let differing = (0..input[0].len())
        .filter(|&i| played[0][i].to_bits() != bounced[0][i].to_bits())
        .count();
    assert_eq!(differing, 0, "{differing} samples differ from the bounce");
    assert_eq!(
        played[0][latency + 30_000],
        -input[0][30_000],
        "processed (flipped)"
    );
}

#[test]
fn a_bounce_right_after_playback_needs_no_reactivation() {
    // The host switches the render mode while active (no restart) and resets for the bounce.
    let input = refrain::synth::song(5, 2.0, 48_000);
    let mut fresh = host_with_model("test/invert");
    fresh.activate(Setup::offline(48_000.0, 512)).unwrap();
    let reference = fresh.render(&input, || 512, false).unwrap();
    let fresh_latency = fresh.latency() as usize;

    let mut h = host_with_model("test/invert");
    h.activate(Setup::realtime(48_000.0, 512)).unwrap();
    h.render(&input, || 512, true).unwrap();
    h.set_render_mode(true).unwrap();
    h.reset().unwrap();
    let latency = h.latency() as usize;
    let bounced = h.render(&input, || 512, false).unwrap();
    assert!(!h.idle().unwrap(), "no restart requested");
    // Compared as the host compensates them (on a loaded machine the first instance's
    // measurement can finish after its activation, so the two may report different latencies).
    let len = input[0].len() - latency.max(fresh_latency);
    for c in 0..2 {
        let first = (0..len).find(|&i| {
            bounced[c][i + latency].to_bits() != reference[c][i + fresh_latency].to_bits()
        });
        assert_eq!(
            first, None,
            "channel {c}: the bounce differs from a fresh one"
        );
    }
    assert!(
        bounced[0][latency + 20_000] != input[0][20_000],
        "processed"
    );
}

#[test]
fn a_model_with_the_same_contract_is_swapped_in_without_a_gap_or_a_latency_change() {
    // Identity and polarity flip: the same stream contract, neither needs a licence.
    let mut h = host_with_model("test/identity");
    h.activate(Setup::realtime(48_000.0, 256)).unwrap();
    let latency = h.latency() as usize;
    let input = sine(48_000 * 3, 48_000.0, 150.0, 0.4);
    let piece = |r: std::ops::Range<usize>| -> Vec<Vec<f32>> {
        input.iter().map(|c| c[r.clone()].to_vec()).collect()
    };
    let mut out = h.render(&piece(0..24_000), || 256, true).unwrap();
    // As a preset or the editor would: only the persisted field changes.
    let invert = models_dir().join("test/invert/model.toml");
    h.set_state_field("model", invert.to_str().unwrap())
        .unwrap();
    let rest = h
        .render(&piece(24_000..input[0].len()), || 256, true)
        .unwrap();
    for (o, r) in out.iter_mut().zip(rest) {
        o.extend(r);
    }
    assert_eq!(h.latency() as usize, latency, "no latency change");
    let end = input[0].len();
    // Before: the identity model; at the end: the flipped one, both aligned.
    for i in [latency + 10_000, latency + 20_000] {
        assert_eq!(out[0][i], input[0][i - latency], "sample {i}");
    }
    for i in end - 5_000..end {
        assert_eq!(out[0][i], -input[0][i - latency], "sample {i}");
    }
    // The swap is a crossfade over one hop, not a gap or a jump.
    let limit = 1.5 * max_step(&input[0]) + 1e-3;
    assert!(
        max_step(&out[0]) <= limit,
        "step {} vs {limit}",
        max_step(&out[0])
    );
    let silent = out[0][latency..]
        .windows(96)
        .any(|w| w.iter().all(|x| x.abs() < 1e-6));
    assert!(!silent, "a gap");
}

#[test]
fn changing_the_mode_while_playing_reports_the_new_latency_and_stays_aligned() {
    let mut h = host_with_model("test/invert");
    h.activate(Setup::realtime(44_100.0, 256)).unwrap();
    let live = h.latency();
    let input = sine(44_100, 44_100.0, 300.0, 0.3);
    h.render(&input, || 256, true).unwrap();
    set_mode(&mut h, "studio");
    // Keep playing: the loader builds the Studio chain, the plugin takes it over and reports
    // the new latency; the host restarts it as a DAW does.
    let mut restarted = false;
    for _ in 0..40 {
        let piece: Vec<Vec<f32>> = input.iter().map(|c| c[..4_410].to_vec()).collect();
        h.render(&piece, || 256, true).unwrap();
        if h.latency() != live {
            restarted = true;
            break;
        }
    }
    assert!(restarted, "the latency never changed from {live}");
    let studio = h.latency() as usize;
    h.set_render_mode(true).unwrap();
    h.reset().unwrap();
    let x = impulse(2, 3_000 + studio, 1_000);
    let out = h.render(&x, || 256, false).unwrap();
    assert_eq!(peak(&out[0]), 1_000 + studio);
    assert!(out[0][1_000 + studio] < -0.4, "processed");
}

#[test]
fn in_place_and_out_of_place_processing_agree() {
    let mut a = host_with_model("test/fir");
    a.activate(Setup::offline(48_000.0, 256)).unwrap();
    let input = sine(12_000, 48_000.0, 3_000.0, 0.5);
    let in_place = a.render(&input, || 256, false).unwrap();

    let mut b = host_with_model("test/fir");
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
    let mut a = host_with_model("test/gain");
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
        // A shared project naming a device, or a pipe, as its model: refused at once.
        ("a device as the model", PathBuf::from("/dev/zero")),
        ("a pipe as the model", {
            let fifo = dir.path().join("model.toml.fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid C string; creates a named pipe in our own temporary folder.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            fifo
        }),
        (
            "a device as the graph",
            copy("device", &|d| {
                let t = std::fs::read_to_string(d.join("model.toml")).unwrap();
                std::fs::write(
                    d.join("model.toml"),
                    t.replace("file = \"identity.onnx\"", "file = \"/dev/zero\""),
                )
                .unwrap();
            }),
        ),
        ("a project naming a model this machine lacks", {
            PathBuf::from(format!("night-drive@{}", "5e".repeat(32)))
        }),
    ];
    for (what, model) in cases {
        let started = std::time::Instant::now();
        let mut h = host();
        h.set_state_field("model", model.to_str().unwrap()).unwrap();
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
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
}
