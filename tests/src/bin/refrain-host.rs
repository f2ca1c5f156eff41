//! `refrain-host demo --plugin Refrain.clap --out-dir DIR [--model M] [--licence FILE]`: loads
//! the plugin through Refrain's own CLAP host exactly as a DAW would, bounces a synthesised
//! track through it, measures the latency with an impulse, plays it again in real time and
//! counts where playback differed from the bounce (underruns).
//!
//! Then the licence demo: a throwaway rights holder issues a licence for the synthesised track
//! and the demo remix model, and the track is bounced three ways: licensed (the model is
//! heard), without a licence (the latency-aligned dry signal, bit for bit), and a different
//! track under the same licence (the model switches off once the fingerprint has not matched
//! for 20 s).
//!
//! Licences live in `$REFRAIN_DATA_DIR`, or in DIR/licences when that is not set, so the demo
//! never touches the user's own licence folder.

use anyhow::{bail, Context, Result};
use refrain::licence::gate::LoadedTrack;
use refrain::licence::issue::{self, LicenceSpec};
use refrain::licence::policy::{Clock, SystemClock};
use refrain::licence::store::Store;
use refrain_tests::{write_wav, Host, Setup};
use std::path::{Path, PathBuf};
use std::time::Instant;

const RATE: f64 = 48_000.0;
const BLOCK: u32 = 256;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.get(1).map(String::as_str) != Some("demo") {
        bail!("usage: refrain-host demo --plugin PATH.clap --out-dir DIR [--model MODEL] [--licence FILE] [--release-plugin PATH.clap]");
    }
    let plugin = get("--plugin")
        .map(PathBuf::from)
        .unwrap_or_else(refrain_tests::default_plugin_path);
    let out_dir = PathBuf::from(get("--out-dir").unwrap_or_else(|| "target/demo".into()));
    std::fs::create_dir_all(&out_dir)?;
    let out_dir = out_dir.canonicalize()?;
    if std::env::var_os(refrain::licence::store::ENV_DATA_DIR).is_none() {
        // The demo's own licence folder starts empty each run (its keys are throwaway ones).
        let _ = std::fs::remove_dir_all(out_dir.join("licences"));
        // Single-threaded here: no plugin is loaded yet.
        unsafe {
            std::env::set_var(
                refrain::licence::store::ENV_DATA_DIR,
                out_dir.join("licences"),
            )
        };
    }
    let store = Store::open_default()?;

    let input = refrain::synth::song(1, 8.0, RATE as u32);
    let input_path = out_dir.join("input.wav");
    write_wav(&input_path, &input, RATE as u32)?;

    let mut host = Host::load(&plugin)?;
    if let Some(model) = get("--model") {
        host.set_state_field("model", &model)?;
    }
    if let Some(file) = get("--licence") {
        let track = LoadedTrack::load_file(&store, Path::new(&file))
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        host.set_state_field("track", &track.to_state())?;
    }

    // The bounce: offline, as a DAW's export does.
    host.activate(Setup::offline(RATE, BLOCK))?;
    let latency = host.latency() as usize;
    let padded = refrain::render::pad(&input, latency);
    let started = Instant::now();
    let bounce = host.render(&padded, || BLOCK as usize, false)?;
    let seconds = started.elapsed().as_secs_f64();
    let aligned: Vec<Vec<f32>> = bounce.iter().map(|c| c[latency..].to_vec()).collect();
    let output_path = out_dir.join("output.wav");
    write_wav(&output_path, &aligned, RATE as u32)?;

    // Measured latency: an impulse through a fresh stream.
    host.reset()?;
    let mut impulse = vec![vec![0.0f32; latency + 8_192]; 2];
    impulse[0][1_000] = 1.0;
    impulse[1][1_000] = 1.0;
    let out = host.render(&impulse, || BLOCK as usize, false)?;
    let peak = out[0]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map_or(0, |p| p.0);
    let measured = peak as i64 - 1_000;

    // Live: the same input at real-time pace; every block that differs from the bounce is one
    // where the worker was late and the dry signal was heard.
    host.activate(Setup::realtime(RATE, BLOCK))?;
    let live_len = (3.0 * RATE) as usize;
    let live_in: Vec<Vec<f32>> = padded.iter().map(|c| c[..live_len].to_vec()).collect();
    let live = host.render(&live_in, || BLOCK as usize, true)?;
    let differing = (0..live_len / BLOCK as usize)
        .filter(|b| {
            let r = b * BLOCK as usize..(b + 1) * BLOCK as usize;
            live.iter()
                .zip(&bounce)
                .any(|(x, y)| x[r.clone()] != y[r.clone()])
        })
        .count();
    let diff_rms = {
        let d: f64 = input[0]
            .iter()
            .zip(&aligned[0])
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        (d / input[0].len() as f64).sqrt()
    };

    println!("Refrain demo ({}):", plugin.display());
    println!("  input            {}", input_path.display());
    println!("  output           {}", output_path.display());
    println!(
        "  reported latency {latency} samples ({:.2} ms at {} Hz)",
        latency as f64 * 1000.0 / RATE,
        RATE
    );
    println!("  measured latency {measured} samples (impulse peak)");
    println!(
        "  real-time factor {:.3} (offline bounce of 8 s in {:.2} s)",
        seconds / 8.0,
        seconds
    );
    println!(
        "  underruns        {differing} of {} live blocks differed from the bounce",
        live_len / BLOCK as usize
    );
    println!(
        "  processed vs dry rms difference {diff_rms:.4} (0 would mean the model did nothing)"
    );
    if measured != latency as i64 {
        bail!("measured latency {measured} differs from the reported {latency}");
    }
    if diff_rms < 1e-4 {
        bail!("the output equals the input: the model did not run (see the plugin's log above)");
    }
    drop(host);
    licence_demo(
        &plugin,
        get("--release-plugin").map(PathBuf::from).as_deref(),
        &out_dir,
        &store,
    )
}

const REMIX_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/demo-remix/model.toml"
);

/// Bounces `input` through the demo remix model with `track` loaded; returns the output with
/// the latency removed.
fn bounce_remix(plugin: &Path, track: &str, input: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let mut host = Host::load(plugin)?;
    host.set_state_field("model", REMIX_MODEL)?;
    host.set_state_field("track", track)?;
    host.activate(Setup::offline(RATE, BLOCK))?;
    let latency = host.latency() as usize;
    let padded = refrain::render::pad(input, latency);
    let out = host.render(&padded, || BLOCK as usize, false)?;
    Ok(out.into_iter().map(|c| c[latency..].to_vec()).collect())
}

/// RMS of `a - b` per second.
fn rms_per_second(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f64> {
    let sec = RATE as usize;
    (0..a[0].len() / sec)
        .map(|s| {
            let sum: f64 = a
                .iter()
                .zip(b)
                .flat_map(|(x, y)| {
                    (s * sec..(s + 1) * sec).map(move |t| ((x[t] - y[t]) as f64).powi(2))
                })
                .sum();
            (sum / (2 * sec) as f64).sqrt()
        })
        .collect()
}

/// The licence demo: a rights holder certified by the development registry issues a licence
/// for this machine's device; `plugin` (the development-root build) runs the model under it, and
/// `release` (the release build, trusting the registry root only) refuses it.
fn licence_demo(
    plugin: &Path,
    release: Option<&Path>,
    out_dir: &Path,
    store: &Store,
) -> Result<()> {
    println!();
    println!("Licence demo (licence folder {}):", store.root().display());
    // The development registry (its root's secret key is public: only development builds
    // trust it) certifies a throwaway rights holder for its ISRC prefix.
    let registry = refrain::licence::registry::development(&out_dir.join("registry"))?;
    let store = &store
        .clone()
        .with_roots(refrain::licence::roots::Roots::with(vec![registry.root()]));
    let key = refrain::testkit::certified_issuer(
        &registry,
        "Demo Rights Holder",
        "ZZRFN",
        SystemClock.now(),
    );
    let device = store.device()?.id;
    let track = refrain::synth::song(1, 30.0, RATE as u32);
    let track_path = out_dir.join("licensed-track.wav");
    write_wav(&track_path, &track, RATE as u32)?;
    let spec = format!(
        r#"
licensee = "Demo User"
valid_days = 30
grace_days = 7
uses = ["remix", "live"]

[track]
isrc = "ZZ-RFN-26-00001"
title = "Demo Track One"
artists = ["Refrain Demo Artist"]
release = "Refrain Demo Sessions"
audio = "{}"

[[models]]
manifest = "{REMIX_MODEL}"

[[split]]
party = "Refrain Demo Artist"
role = "artist"
share_percent = 70

[[split]]
party = "Demo Rights Holder"
role = "label"
share_percent = 30
"#,
        track_path.display()
    );
    let claims = LicenceSpec::from_toml(&spec)?.to_claims(
        &key.issuer,
        &[device],
        out_dir,
        None,
        SystemClock.now(),
    )?;
    let token = issue::sign_licence(&key, &claims)?;
    let licence_path = out_dir.join("demo-track-one.paseto");
    std::fs::write(&licence_path, &token).context("write the demo licence")?;
    let loaded = LoadedTrack::load_file(store, &licence_path).map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "  licence          {} ({} bytes, {})",
        licence_path.display(),
        token.len(),
        claims.jti
    );

    let excerpt: Vec<Vec<f32>> = track
        .iter()
        .map(|c| c[..8 * RATE as usize].to_vec())
        .collect();
    let licensed = bounce_remix(plugin, &loaded.to_state(), &excerpt)?;
    write_wav(&out_dir.join("licensed-remix.wav"), &licensed, RATE as u32)?;
    let heard = rms_per_second(&licensed, &excerpt);
    let mean = heard.iter().sum::<f64>() / heard.len() as f64;
    println!("  licensed         the model is heard: rms difference from the dry track {mean:.3}");

    let unlicensed = bounce_remix(plugin, "", &excerpt)?;
    let identical = unlicensed
        .iter()
        .zip(&excerpt)
        .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    println!(
        "  unlicensed       no licence loaded: the output is the dry track, {}",
        if identical {
            "bit for bit"
        } else {
            "NOT bit-identical"
        }
    );

    let other = refrain::synth::song(2, 30.0, RATE as u32);
    let wrong = bounce_remix(plugin, &loaded.to_state(), &other)?;
    write_wav(&out_dir.join("other-track-remix.wav"), &wrong, RATE as u32)?;
    let per_second = rms_per_second(&wrong, &other);
    let off_at = (0..per_second.len()).find(|&s| per_second[s..].iter().all(|&d| d == 0.0));
    match off_at {
        Some(s) => println!(
            "  other track      same licence, different input, bounced: the model ran for {s} s, \
             then the share of matching seconds fell under 80% and switched it off (dry from {s} \
             s to the end)"
        ),
        None => println!("  other track      the model was never switched off"),
    }
    let mut refused = true;
    if let Some(release) = release {
        let out = bounce_remix(release, &loaded.to_state(), &excerpt)?;
        refused = out
            .iter()
            .zip(&excerpt)
            .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        println!(
            "  release bundle   {}: the development registry's licence {}",
            release.display(),
            if refused {
                "is refused (the output is the dry track, bit for bit): a release build trusts \
                 the registry root only"
            } else {
                "was ACCEPTED"
            }
        );
    }
    // Off by 28 s of the 30: 20 unmatched seconds (a window is judged from 12.4 s on), and the
    // track check may run up to 4 s (its ring) behind a bounce.
    if mean < 0.01 || !identical || off_at.is_none_or(|s| s > 28) || !refused {
        bail!("the licence demo did not behave as described");
    }
    Ok(())
}
