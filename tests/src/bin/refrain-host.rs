//! `refrain-host demo --plugin Refrain.clap --out-dir DIR`: loads the plugin through Refrain's
//! own CLAP host exactly as a DAW would, bounces a synthesised input through it, measures the
//! latency with an impulse, plays it again in real time and counts where playback differed
//! from the bounce (underruns).

use anyhow::{bail, Result};
use refrain_tests::{write_wav, Host, Setup};
use std::path::PathBuf;
use std::time::Instant;

const RATE: f64 = 48_000.0;
const BLOCK: u32 = 256;

/// Eight seconds of a synthesised song sketch: a chord progression of soft saws, a bass line
/// and hi-hat noise bursts, in stereo. No copyrighted audio.
fn synthesise(seconds: f64) -> Vec<Vec<f32>> {
    let n = (seconds * RATE) as usize;
    let mut l = vec![0.0f32; n];
    let mut r = vec![0.0f32; n];
    let chords: [[f32; 3]; 4] = [
        [220.0, 277.18, 329.63],
        [196.0, 246.94, 293.66],
        [174.61, 220.0, 261.63],
        [196.0, 246.94, 311.13],
    ];
    let mut noise = refrain_tests::Lcg(7);
    for i in 0..n {
        let t = i as f64 / RATE;
        let bar = ((t / 2.0) as usize) % 4;
        let mut s = 0.0f32;
        for (k, &f) in chords[bar].iter().enumerate() {
            let phase = (t * f as f64).fract() as f32;
            s += (2.0 * phase - 1.0) * 0.08 * (1.0 + 0.2 * k as f32);
        }
        let bass = (std::f64::consts::TAU * t * chords[bar][0] as f64 / 2.0).sin() as f32 * 0.25;
        let beat = (t * 4.0).fract();
        let hat = if beat < 0.03 {
            (noise.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.3 * (1.0 - beat as f32 / 0.03)
        } else {
            0.0
        };
        l[i] = s * 0.9 + bass + hat * 0.6;
        r[i] = s * 1.1 + bass + hat;
    }
    vec![l, r]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.get(1).map(String::as_str) != Some("demo") {
        bail!("usage: refrain-host demo --plugin PATH.clap --out-dir DIR [--model MODEL]");
    }
    let plugin = get("--plugin")
        .map(PathBuf::from)
        .unwrap_or_else(refrain_tests::default_plugin_path);
    let out_dir = PathBuf::from(get("--out-dir").unwrap_or_else(|| "target/demo".into()));
    std::fs::create_dir_all(&out_dir)?;

    let input = synthesise(8.0);
    let input_path = out_dir.join("input.wav");
    write_wav(&input_path, &input, RATE as u32)?;

    let mut host = Host::load(&plugin)?;
    if let Some(model) = get("--model") {
        host.set_state_field("model", &model)?;
    }

    // The bounce: offline, as a DAW's export does.
    host.activate(Setup::offline(RATE, BLOCK))?;
    let latency = host.latency() as usize;
    let padded: Vec<Vec<f32>> = input
        .iter()
        .map(|c| {
            c.iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, latency))
                .collect()
        })
        .collect();
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
    Ok(())
}
