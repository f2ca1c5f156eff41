//! Licence enforcement through the built `Refrain.clap`, as a DAW loads it: a valid licence
//! lets the model be heard (in a DAW `remix` is enough, in playback as in bounces); an expired
//! one or a different input track gives the latency-aligned dry signal bit for bit; a licence
//! that expires during playback changes nothing until the next reactivation.
//!
//! Its own test binary: it points the plugin at a private licence folder through the
//! environment, once, before any plugin is loaded.

use refrain::licence::claims::{self, Claims, Use};
use refrain::licence::fingerprint;
use refrain::licence::policy::{Clock, SystemClock};
use refrain::licence::store::Store;
use refrain::licence::token::SigningKey;
use refrain_tests::{default_plugin_path, issue_licence, Host, Setup};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const RATE: f64 = 48_000.0;
const BLOCK: u32 = 256;

struct Env {
    store: Store,
    key: SigningKey,
}

/// The private licence folder and a trusted issuer key, set up once for the whole binary.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("refrain-licence-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Set before any plugin instance (or thread of one) exists.
        unsafe {
            std::env::set_var(refrain::licence::store::ENV_DATA_DIR, &dir);
            std::env::set_var(refrain::licence::gate::ENV_RECHECK_MS, "200");
        }
        let (store, key) = refrain_tests::licence_issuer(&dir);
        Env { store, key }
    })
}

fn remix_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo-remix/model.toml")
}

fn song(seed: u64, seconds: f64) -> Vec<Vec<f32>> {
    refrain::synth::song(seed, seconds, RATE as u32)
}

/// Issues and caches a licence for the demo remix model; returns the state string the plugin
/// persists for the loaded track. Worldwide (no licensee territory needed). The reference
/// fingerprint is `reference`'s, else [`Claims::example`]'s: the start of `song(1, ..)`, the
/// track the tests play where the model must be heard.
fn licence(id: &str, uses: &[Use], exp: i64, reference: Option<&[Vec<f32>]>) -> String {
    licence_with(id, |c| {
        c.uses = uses.to_vec();
        c.exp = claims::format_time(exp);
        if let Some(a) = reference {
            let encode = |channels: &[Vec<f32>]| {
                fingerprint::encode(&fingerprint::compute(channels, RATE as u32).unwrap())
            };
            c.track.fingerprint = Some(encode(a));
            // A stereo recording's licence: each channel's own reference too.
            c.track.fingerprint_left = Some(encode(&a[..1]));
            c.track.fingerprint_right = Some(encode(&a[1..]));
        }
    })
}

/// [`licence`] from [`Claims::example`] (valid for a year) as `edit` leaves it.
fn licence_with(id: &str, edit: impl FnOnce(&mut Claims)) -> String {
    let e = env();
    issue_licence(&e.store, &e.key, &remix_model(), id, edit)
}

fn host(track: &str) -> Host {
    host_of(&default_plugin_path(), track)
}

fn host_of(plugin: &Path, track: &str) -> Host {
    host_with(plugin, &remix_model(), track)
}

fn host_with(plugin: &Path, model: &Path, track: &str) -> Host {
    env();
    let mut h = Host::load(plugin).expect("load the plugin");
    h.set_state_field("model", model.to_str().unwrap()).unwrap();
    h.set_state_field("track", track).unwrap();
    h
}

fn bounce(h: &mut Host, input: &[Vec<f32>], pace: bool) -> Vec<Vec<f32>> {
    h.render(input, || BLOCK as usize, pace).unwrap()
}

/// Whether `out` is `input` delayed by `latency`, bit for bit, over `range`.
fn is_aligned_dry(
    out: &[Vec<f32>],
    input: &[Vec<f32>],
    latency: usize,
    range: std::ops::Range<usize>,
) -> bool {
    out.iter().zip(input).all(|(o, i)| {
        range
            .clone()
            .filter(|&t| t >= latency)
            .all(|t| o[t].to_bits() == i[t - latency].to_bits())
    })
}

fn rms_difference(
    out: &[Vec<f32>],
    input: &[Vec<f32>],
    latency: usize,
    range: std::ops::Range<usize>,
) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for (o, i) in out.iter().zip(input) {
        for t in range.clone().filter(|&t| t >= latency) {
            sum += ((o[t] - i[t - latency]) as f64).powi(2);
            n += 1;
        }
    }
    (sum / n.max(1) as f64).sqrt()
}

const YEAR: i64 = 365 * 86_400;

#[test]
fn a_valid_licence_lets_the_model_be_heard() {
    let track = licence(
        "host-valid",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        None,
    );
    let input = song(1, 3.0);
    for (setup, pace) in [
        (Setup::offline(RATE, BLOCK), false),
        (Setup::realtime(RATE, BLOCK), true),
    ] {
        let mut h = host(&track);
        h.activate(setup).unwrap();
        let latency = h.latency() as usize;
        let out = bounce(&mut h, &input, pace);
        let len = input[0].len();
        let diff = rms_difference(&out, &input, latency, latency + 9_600..len);
        assert!(
            diff > 0.05,
            "the model was not heard: rms difference {diff}"
        );
    }
}

/// The release bundle trusts the registry root only: the same licence (issued under the
/// development registry) that lets the model be heard in the development build gives the
/// latency-aligned dry signal, bit for bit, in the release build.
#[test]
fn the_release_bundle_refuses_a_development_root_licence() {
    let track = licence(
        "host-release",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        None,
    );
    let input = song(1, 3.0);
    let len = input[0].len();
    let mut dev = host(&track);
    dev.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let latency = dev.latency() as usize;
    let heard = bounce(&mut dev, &input, false);
    assert!(rms_difference(&heard, &input, latency, latency + 9_600..len) > 0.05);
    let mut release = host_of(&refrain_tests::release_plugin_path(), &track);
    release.activate(Setup::offline(RATE, BLOCK)).unwrap();
    // Each build measures its own inference budget, so its latency is its own.
    let latency = release.latency() as usize;
    let out = bounce(&mut release, &input, false);
    assert!(
        is_aligned_dry(&out, &input, latency, 0..len),
        "the release build ran the model under a development-root licence"
    );
}

/// A protected (encrypted) copy of the remix model plays under a licence that carries its key
/// sealed to this device; with no licence, or a licence for it without the key, the plugin
/// plays the aligned dry signal: the model is never even loaded.
#[test]
fn a_protected_model_plays_only_under_a_licence_that_carries_its_key() {
    use refrain::models::protection;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("protected");
    let (header, key) = protection::protect(&remix_model(), &folder).unwrap();
    let device = env().store.device().unwrap().public();
    let keyed = licence_with("host-protected", |c| {
        c.uses = vec![Use::Remix];
        refrain::licence::issue::seal_keys(
            c,
            &[(header.identity.clone(), key)],
            &[(device.id.clone(), device.x25519.clone())],
        )
        .unwrap();
    });
    let keyless = licence_with("host-protected-keyless", |c| c.uses = vec![Use::Remix]);
    let input = song(1, 3.0);
    let len = input[0].len();
    for (track, heard) in [
        (keyed.as_str(), true),
        ("", false),
        (keyless.as_str(), false),
    ] {
        let mut h = host_with(&default_plugin_path(), &folder, track);
        h.activate(Setup::offline(RATE, BLOCK)).unwrap();
        let latency = h.latency() as usize;
        let out = bounce(&mut h, &input, false);
        if heard {
            let diff = rms_difference(&out, &input, latency, latency + 9_600..len);
            assert!(diff > 0.05, "the protected model was not heard: {diff}");
        } else {
            assert!(
                is_aligned_dry(&out, &input, latency, 0..len),
                "the protected model ran without its key ({track:?})"
            );
        }
    }
}

#[test]
fn an_expired_licence_passes_the_aligned_dry_signal_bit_for_bit() {
    let track = licence(
        "host-expired",
        &[Use::Remix, Use::Live],
        SystemClock.now() - 3_600,
        None,
    );
    let input = song(1, 3.0);
    for setup in [Setup::offline(RATE, BLOCK), Setup::realtime(RATE, BLOCK)] {
        let mut h = host(&track);
        h.activate(setup).unwrap();
        let latency = h.latency() as usize;
        assert!(latency > 0);
        let out = bounce(&mut h, &input, false);
        assert!(is_aligned_dry(&out, &input, latency, 0..input[0].len()));
    }
    // No licence loaded at all: the same.
    let mut h = host("");
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let out = bounce(&mut h, &input, false);
    assert!(is_aligned_dry(&out, &input, latency, 0..input[0].len()));
}

/// In a DAW, playback and bounces are the same use: `remix` is enough (a DAW set on stage
/// cannot be told from a studio session; public performance, `live`, is the standalone's).
#[test]
fn in_a_daw_real_time_playback_needs_only_the_remix_right() {
    let track = licence(
        "host-no-live",
        &[Use::Remix],
        SystemClock.now() + YEAR,
        None,
    );
    let input = song(1, 3.0);
    let len = input[0].len();
    for (setup, pace) in [
        (Setup::offline(RATE, BLOCK), false),
        (Setup::realtime(RATE, BLOCK), true),
    ] {
        let mut h = host(&track);
        h.activate(setup).unwrap();
        let latency = h.latency() as usize;
        let out = bounce(&mut h, &input, pace);
        assert!(rms_difference(&out, &input, latency, latency + 9_600..len) > 0.05);
    }
}

#[test]
fn a_licence_expiring_during_playback_changes_nothing_until_reactivation() {
    // Expires three seconds from now, no grace; the plugin re-checks every 200 ms.
    let track = licence(
        "host-lapsing",
        &[Use::Remix, Use::Live],
        SystemClock.now() + 3,
        None,
    );
    let mut h = host(&track);
    h.activate(Setup::realtime(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    // Six seconds at real-time pace: the licence lapses half-way through.
    let input = song(1, 6.0);
    let len = input[0].len();
    let out = bounce(&mut h, &input, true);
    let last_second = len - RATE as usize..len;
    let diff = rms_difference(&out, &input, latency, last_second.clone());
    assert!(
        diff > 0.05,
        "the lapse cut the performance: rms difference {diff}"
    );
    assert!(!is_aligned_dry(&out, &input, latency, last_second));

    // The next activation enforces it.
    h.activate(Setup::realtime(RATE, BLOCK)).unwrap();
    let input = song(1, 2.0);
    let out = bounce(&mut h, &input, false);
    assert!(is_aligned_dry(
        &out,
        &input,
        h.latency() as usize,
        0..input[0].len()
    ));
}

#[test]
fn a_licence_lapsed_during_playback_is_enforced_at_the_transport_stop() {
    let track = licence(
        "host-stop",
        &[Use::Remix, Use::Live],
        SystemClock.now() + 3,
        None,
    );
    let mut h = host(&track);
    h.set_transport(Some(true));
    h.activate(Setup::realtime(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let rate = RATE as usize;
    let input = song(1, 7.0);
    let (playing, stopped): (Vec<Vec<f32>>, Vec<Vec<f32>>) = input
        .iter()
        .map(|c| (c[..6 * rate].to_vec(), c[6 * rate..].to_vec()))
        .unzip();
    // Playing through the lapse: still processed at the end.
    let out = bounce(&mut h, &playing, true);
    let last = 5 * rate..6 * rate;
    assert!(rms_difference(&out, &playing, latency, last) > 0.05);
    // The transport stops (audio keeps flowing, as when monitoring): after the crossfade the
    // output is the aligned dry signal, bit for bit.
    h.set_transport(Some(false));
    let out = bounce(&mut h, &stopped, false);
    let fade = 4 * BLOCK as usize;
    for (o, i) in out.iter().zip(&input) {
        for t in fade..o.len() {
            assert_eq!(
                o[t].to_bits(),
                i[6 * rate + t - latency].to_bits(),
                "sample {t} after the stop"
            );
        }
    }
}

/// On stage the transport may never play (a live input, a standalone): a licence that lapses
/// mid-song keeps the model on through the phrase, and it ends at the next 2 s of silence.
#[test]
fn a_licence_lapsed_on_a_live_input_ends_at_the_next_silence() {
    let track = licence(
        "host-live-lapse",
        &[Use::Remix, Use::Live],
        SystemClock.now() + 2,
        None,
    );
    let mut h = host(&track);
    h.set_transport(Some(false));
    h.activate(Setup::realtime(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let rate = RATE as usize;
    // 4 s of the song (the licence lapses at 2 s), 2.5 s of silence, 1.5 s of the song.
    let song = song(1, 6.0);
    let input: Vec<Vec<f32>> = song
        .iter()
        .map(|c| {
            let mut v = c[..4 * rate].to_vec();
            v.extend(std::iter::repeat_n(0.0, 5 * rate / 2));
            v.extend_from_slice(&c[4 * rate..11 * rate / 2]);
            v
        })
        .collect();
    let out = bounce(&mut h, &input, true);
    // Through the lapse, while the music plays: still heard.
    assert!(rms_difference(&out, &input, latency, 3 * rate..4 * rate) > 0.05);
    // After the silence: the aligned dry signal, bit for bit.
    let after = 13 * rate / 2 + 4 * BLOCK as usize..input[0].len();
    assert!(
        is_aligned_dry(&out, &input, latency, after),
        "the model ran on after the lapse and 2 s of silence"
    );
}

#[test]
fn a_different_input_track_switches_the_model_off_after_sustained_mismatch() {
    let licensed = song(1, 40.0);
    let track = licence(
        "host-fingerprint",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        Some(&licensed),
    );
    let rate = RATE as usize;

    // The licensed track itself: the model is heard to the end.
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let input: Vec<Vec<f32>> = licensed.iter().map(|c| c[..32 * rate].to_vec()).collect();
    let out = bounce(&mut h, &input, false);
    let tail = 28 * rate..32 * rate;
    assert!(rms_difference(&out, &input, latency, tail.clone()) > 0.05);

    // Another track: heard at first, then (after 20 s of mismatch and the crossfade) dry.
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let other = song(2, 32.0);
    let out = bounce(&mut h, &other, false);
    assert!(rms_difference(&out, &other, latency, latency + rate..15 * rate) > 0.05);
    assert!(
        is_aligned_dry(&out, &other, latency, tail),
        "the model was still heard on a track that does not match the licence"
    );
}

/// Each activation used to grant a fresh 20 s of a track that does not match. Unmatched
/// seconds are charged to the licence's daily allowance, kept in the licence folder: with
/// 10 s of it left the other track is dry after about 10 s, and a new activation (a reload,
/// a new bounce) is dry from its first block until the input matches.
#[test]
fn a_spent_pending_allowance_keeps_the_model_dry_after_reactivation() {
    use refrain::licence::allowance::{licence_key, Allowances, DAILY_SECONDS};
    let licensed = song(1, 40.0);
    let track = licence(
        "host-allowance",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        Some(&licensed),
    );
    let e = env();
    Allowances::new(e.store.root(), e.store.device().unwrap())
        .spend(
            &licence_key("Northern Records", "host-allowance"),
            i64::from(DAILY_SECONDS) - 10,
            SystemClock.now(),
        )
        .unwrap();
    let rate = RATE as usize;
    let other = song(2, 24.0);
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let out = bounce(&mut h, &other, false);
    assert!(rms_difference(&out, &other, latency, latency + rate..8 * rate) > 0.05);
    assert!(
        is_aligned_dry(&out, &other, latency, 14 * rate..24 * rate),
        "the model was heard after the allowance was spent"
    );
    // Reactivated: dry from the first block.
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let short = song(2, 6.0);
    let out = bounce(&mut h, &short, false);
    assert!(
        is_aligned_dry(&out, &short, latency, 0..6 * rate),
        "a reactivation granted new pending time"
    );
}

/// A producer loops 7.37 seconds of the licensed track in the DAW: each wrap moves the
/// transport back, which the plugin takes as a jump and matches each pass on its own, so the
/// model is still heard after a minute. The same loop from a host that sends no position (so
/// no jump is seen) goes dry: the check's window then holds pieces of several passes.
#[test]
fn a_looped_section_of_the_licensed_track_keeps_the_model_heard() {
    let licensed = song(1, 40.0);
    let track = licence(
        "host-loop",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        Some(&licensed),
    );
    let rate = RATE as usize;
    // 7.37 s: not a whole number of the song's bars, and too short for the check's newest
    // 12.4 s to be mostly one pass.
    let end = 10 * rate + 7 * rate + 37 * rate / 100;
    let section: Vec<Vec<f32>> = licensed
        .iter()
        .map(|c| c[10 * rate..end].to_vec())
        .collect();
    let play = |positions: bool| {
        let mut h = host(&track);
        h.activate(Setup::offline(RATE, BLOCK)).unwrap();
        let latency = h.latency() as usize;
        h.set_transport(positions.then_some(true));
        let mut input = vec![Vec::new(); 2];
        let mut out = vec![Vec::new(); 2];
        for _ in 0..9 {
            h.seek(10.0);
            let o = bounce(&mut h, &section, false);
            for c in 0..2 {
                input[c].extend_from_slice(&section[c]);
                out[c].extend_from_slice(&o[c]);
            }
        }
        (input, out, latency)
    };
    let (input, out, latency) = play(true);
    let end = input[0].len();
    assert!(
        rms_difference(&out, &input, latency, end - 8 * rate..end) > 0.05,
        "the model went dry on a looped section of the licensed track"
    );
    let (input, out, latency) = play(false);
    assert!(
        is_aligned_dry(&out, &input, latency, end - 8 * rate..end),
        "without transport positions the loop should not match"
    );
}

/// Another track kept under -60 dBFS (to be turned up after the plugin) is never judged by the
/// track check, so it gives way to the dry signal, bit for bit, once the monitor has heard a
/// second of it. The same quiet track right after the licensed one is processed at first
/// (its match is recent), which shows the model does run on input that quiet.
#[test]
fn a_quiet_track_that_has_not_matched_passes_dry() {
    let licensed = song(1, 40.0);
    let track = licence(
        "host-quiet",
        &[Use::Remix, Use::Live],
        SystemClock.now() + YEAR,
        Some(&licensed),
    );
    let rate = RATE as usize;
    let other = song(2, 12.0);
    let rms = (other[0].iter().map(|x| x * x).sum::<f32>() / other[0].len() as f32).sqrt();
    let gain = 10f32.powf(-63.0 / 20.0) / rms;
    let quiet: Vec<Vec<f32>> = other
        .iter()
        .map(|c| c.iter().map(|x| x * gain).collect())
        .collect();
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let latency = h.latency() as usize;
    let out = bounce(&mut h, &quiet, false);
    assert!(
        is_aligned_dry(&out, &quiet, latency, 5 * rate..12 * rate),
        "the model ran on a quiet track that never matched"
    );
    // After 20 s of the licensed track (matched), the quiet track is processed at first.
    let mut h = host(&track);
    h.activate(Setup::offline(RATE, BLOCK)).unwrap();
    let first: Vec<Vec<f32>> = licensed.iter().map(|c| c[..20 * rate].to_vec()).collect();
    bounce(&mut h, &first, false);
    let out = bounce(&mut h, &quiet, false);
    assert!(
        !is_aligned_dry(&out, &quiet, latency, latency + rate..4 * rate),
        "the model should still run on the quiet seconds right after a match"
    );
}

/// A licence limited to some territories is judged by where its issuer says the licensee is,
/// never by the machine (this binary sets no territory anywhere): without that statement the
/// model stays dry; with a covered one it is heard.
#[test]
fn a_territory_limit_is_judged_by_the_licensee_territory_the_licence_states() {
    let input = song(1, 3.0);
    let len = input[0].len();
    let heard = |track: &str| {
        let mut h = host(track);
        h.activate(Setup::offline(RATE, BLOCK)).unwrap();
        let latency = h.latency() as usize;
        let out = bounce(&mut h, &input, false);
        (
            rms_difference(&out, &input, latency, latency + 9_600..len) > 0.05,
            is_aligned_dry(&out, &input, latency, 0..len),
        )
    };
    let unstated = licence_with("host-territory-unstated", |c| {
        c.territories = vec!["GB".into(), "IE".into()];
    });
    assert_eq!(heard(&unstated), (false, true));
    let stated = licence_with("host-territory-gb", |c| {
        c.territories = vec!["GB".into(), "IE".into()];
        c.licensee_territory = Some("GB".into());
    });
    assert!(
        heard(&stated).0,
        "a covered licensee territory: the model must be heard"
    );
}
