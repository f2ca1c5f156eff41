//! Licence costs. Targets (issue 3): verifying a token under 1 ms; fingerprinting the input
//! under 1% of one core in real time.
//!
//! - `verify`: a realistic licence (the reference fingerprint of a 4-minute track inside, about 14
//!   KB) with its issuer's registry certificate in the footer, checked against the roots: the
//!   certificate's signature and fields, the licence's signature, payload, every claim, the
//!   certificate's scope, revocations (a registry list of 1,000 withdrawn licences), terms.
//! - `fingerprint one second`: one second of 48 kHz audio through the live matcher (resampling
//!   to 11,025 Hz, chroma, sub-fingerprints, and the once-a-second match of a 20 s window
//!   against the 4-minute reference), for the licensed track with a mono and a stereo licence,
//!   the licensed track played a semitone and half a semitone faster (matched with the change
//!   undone, re-checked every few seconds; the half from the input's tuning) and another track (each second's window retried with a change
//!   undone). Its time divided by one second is the share of a core.

use criterion::{criterion_group, criterion_main, Criterion};
use refrain::licence::claims::{Claims, ModelGrant, Use};
use refrain::licence::fingerprint::{self, LiveMatcher};
use refrain::licence::policy::{self, Requirement};
use refrain::licence::revocation::Revoked;
use refrain::licence::roots::Roots;
use std::time::Duration;

const RATE: u32 = 48_000;
const SHA: &str = "ab451f78d909abf2398cfd3141a8adefd195c9aa872e299b1326ae3dd3683fd5";

fn bench_licence(c: &mut Criterion) {
    let track = refrain::synth::song(1, 240.0, RATE);
    let reference = fingerprint::compute(&track, RATE).unwrap();
    let now = 1_795_219_200;
    let dir = tempfile::tempdir().unwrap();
    let registry = refrain::licence::registry::development(dir.path()).unwrap();
    let key = refrain::testkit::certified_issuer(&registry, "Northern Records", "GBAYE", now);
    let roots = Roots::with(vec![registry.root()]);
    let mut claims = Claims::example(
        "Northern Records",
        "bench-licence",
        ModelGrant {
            id: "refrain.demo-remix".into(),
            sha256: SHA.into(),
        },
        now,
        now + 365 * 86_400,
    );
    claims.grace_days = 14;
    claims.track.fingerprint = Some(fingerprint::encode(&reference));
    claims.devices = vec!["0123456789abcdef0123456789abcdef".into()];
    let token = refrain::licence::issue::sign_licence(&key, &claims).unwrap();
    eprintln!("token: {} bytes", token.len());
    let mut revoked = Revoked::default();
    for i in 0..1000 {
        revoked
            .licences
            .insert((key.kid.clone(), format!("withdrawn-{i}")));
    }
    let req = Requirement {
        model_id: "refrain.demo-remix".into(),
        model_sha256: SHA.into(),
        uses: vec![Use::Remix, Use::Live],
    };
    c.bench_function(
        "verify licence token (14 KB) with its certificate chain",
        |b| {
            b.iter(|| {
                let c = policy::verify(&token, &roots, &revoked).unwrap();
                assert!(policy::check_terms(&c, &req, now + 10).state.allows());
            })
        },
    );

    let mid = |t: &[Vec<f32>]| -> Vec<f32> {
        (0..t[0].len()).map(|i| (t[0][i] + t[1][i]) * 0.5).collect()
    };
    let side = |t: &[Vec<f32>]| -> Vec<f32> {
        (0..t[0].len()).map(|i| (t[0][i] - t[1][i]) * 0.5).collect()
    };
    let mut group = c.benchmark_group("fingerprint");
    group.measurement_time(Duration::from_secs(10));
    // The licensed track (mono licence), the same in stereo (each channel against its own
    // reference too), the track played a semitone faster (matched with the change undone),
    // and another track (missing: a window retried every second).
    let channels = (
        fingerprint::compute(&track[..1], RATE).unwrap(),
        fingerprint::compute(&track[1..], RATE).unwrap(),
    );
    // The track resampled to `to` and played back at 48 kHz: faster and higher.
    let played_at = |to: u32| {
        let mut change = refrain::engine::resample::RateChange::new(RATE, to, track.len()).unwrap();
        let mut out = vec![Vec::new(); track.len()];
        let planar: Vec<&[f32]> = track.iter().map(|c| c.as_slice()).collect();
        change.push(&planar, &mut out);
        out
    };
    // 48,000 / 45,300 = +1.00 semitone; 48,000 / 46,650 = +0.49 semitone, about as far from
    // the grid as a shift gets.
    let faster = played_at(45_300);
    let half_faster = played_at(46_650);
    let other = refrain::synth::song(2, 240.0, RATE);
    let cases: [(&str, Vec<f32>, Vec<f32>, bool); 5] = [
        (
            "licensed track, mono licence",
            mid(&track),
            Vec::new(),
            false,
        ),
        (
            "licensed track, stereo licence",
            mid(&track),
            side(&track),
            true,
        ),
        (
            "licensed track a semitone faster, change undone",
            mid(&faster),
            side(&faster),
            true,
        ),
        (
            "licensed track half a semitone faster, change undone",
            mid(&half_faster),
            side(&half_faster),
            true,
        ),
        (
            "another track, retried each second",
            mid(&other),
            side(&other),
            true,
        ),
    ];
    for (name, m, s, stereo) in cases {
        let matcher = || {
            LiveMatcher::new(reference.clone(), RATE)
                .unwrap()
                .with_channel_references(stereo.then(|| channels.clone()))
                .unwrap()
        };
        let mut live = matcher();
        let second = RATE as usize;
        // Past the window fill, so that every timed second is judged.
        let warm = 25 * second;
        let mut pos = 0;
        group.bench_function(
            format!("one second of 48 kHz audio: {name} (share of a core = time / 1 s)"),
            |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        if pos == 0 || pos + second > m.len() {
                            // From the start again, untimed (a new stream).
                            live = matcher();
                            for (k, block) in m[..warm].chunks(512).enumerate() {
                                let at = k * 512;
                                live.push_stereo(block, s.get(at..at + block.len()).unwrap_or(&[]));
                            }
                            pos = warm;
                        }
                        let t0 = std::time::Instant::now();
                        for (k, block) in m[pos..pos + second].chunks(512).enumerate() {
                            let at = pos + k * 512;
                            live.push_stereo(block, s.get(at..at + block.len()).unwrap_or(&[]));
                        }
                        spent += t0.elapsed();
                        pos += second;
                    }
                    spent
                })
            },
        );
        eprintln!("{name}: {:?}, undone {:?}", live.state(), live.undone());
    }
    group.finish();
}

criterion_group!(benches, bench_licence);
criterion_main!(benches);
