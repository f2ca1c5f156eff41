//! Licence costs. Targets (issue 3): verifying a token under 1 ms; fingerprinting the input
//! under 1% of one core in real time.
//!
//! - `verify`: a realistic licence (the reference fingerprint of a 4-minute track inside, about 14
//!   KB) with its issuer's registry certificate in the footer, checked against the roots: the
//!   certificate's signature and fields, the licence's signature, payload, every claim, the
//!   certificate's scope, revocations (a registry list of 1,000 withdrawn licences), terms.
//! - `fingerprint one second`: one second of 48 kHz audio through the live matcher (resampling
//!   to 11,025 Hz, chroma, sub-fingerprints, and the once-a-second match of a 10 s window
//!   against the 4-minute reference). Its time divided by one second is the share of a core.

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

    let mono: Vec<f32> = (0..track[0].len())
        .map(|i| (track[0][i] + track[1][i]) * 0.5)
        .collect();
    let mut matcher = LiveMatcher::new(reference.clone(), RATE).unwrap();
    // Warm up past the window fill so every second includes a full match.
    for block in mono[..12 * RATE as usize].chunks(512) {
        matcher.push(block);
    }
    let mut pos = 12 * RATE as usize;
    let mut group = c.benchmark_group("fingerprint");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(
        "one second of 48 kHz audio (share of a core = time / 1 s)",
        |b| {
            b.iter(|| {
                if pos + RATE as usize > mono.len() {
                    pos = 12 * RATE as usize;
                }
                for block in mono[pos..pos + RATE as usize].chunks(512) {
                    matcher.push(block);
                }
                pos += RATE as usize;
            })
        },
    );
    // A stereo licence: the mid, and each channel against its own reference.
    let side: Vec<f32> = (0..track[0].len())
        .map(|i| (track[0][i] - track[1][i]) * 0.5)
        .collect();
    let channels = (
        fingerprint::compute(&track[..1], RATE).unwrap(),
        fingerprint::compute(&track[1..], RATE).unwrap(),
    );
    let mut stereo = LiveMatcher::new(reference.clone(), RATE)
        .unwrap()
        .with_channel_references(Some(channels))
        .unwrap();
    for (m, s) in mono[..12 * RATE as usize]
        .chunks(512)
        .zip(side[..12 * RATE as usize].chunks(512))
    {
        stereo.push_stereo(m, s);
    }
    let mut pos = 12 * RATE as usize;
    group.bench_function(
        "one second of 48 kHz stereo, mid and each channel (share of a core = time / 1 s)",
        |b| {
            b.iter(|| {
                if pos + RATE as usize > mono.len() {
                    pos = 12 * RATE as usize;
                }
                let (m, s) = (
                    &mono[pos..pos + RATE as usize],
                    &side[pos..pos + RATE as usize],
                );
                for (m, s) in m.chunks(512).zip(s.chunks(512)) {
                    stereo.push_stereo(m, s);
                }
                pos += RATE as usize;
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_licence);
criterion_main!(benches);
