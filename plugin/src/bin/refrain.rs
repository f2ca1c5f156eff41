//! The `refrain` command line: offline renders through the plugin's engine.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use refrain::models::ModelSource;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "refrain",
    version,
    about = "Refrain: licensed AI covers and remixes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a WAV file through a model, offline, latency-compensated.
    Render {
        /// `builtin:tone-shaper`, or a model.toml (or the folder holding one).
        #[arg(long, default_value = refrain::models::BUILTIN_ID)]
        model: String,
        /// Input WAV.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output WAV (32-bit float).
        #[arg(long = "out")]
        output: PathBuf,
        /// Block size fed to the engine.
        #[arg(long, default_value_t = 512)]
        block: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Render {
            model,
            input,
            output,
            block,
        } => {
            let source = ModelSource::parse(&model);
            let (audio, rate) = refrain::render::read_wav(&input)?;
            if audio.is_empty() || audio.len() > 2 {
                anyhow::bail!(
                    "{} has {} channels; Refrain renders mono or stereo",
                    input.display(),
                    audio.len()
                );
            }
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} rendering [{bar:40}] {percent}% ({eta})",
                )
                .context("progress style")?,
            );
            let (out, report) =
                refrain::render::render(&source, &audio, rate, block.clamp(1, 65536), |f| {
                    bar.set_position((f * 1000.0) as u64)
                })?;
            bar.finish_and_clear();
            refrain::render::write_wav(&output, &out, rate)?;
            println!("model:        {}", source.to_state());
            println!("{}", report.latency_terms);
            println!(
                "rendered:     {:.2} s of audio in {:.2} s (real-time factor {:.3})",
                report.frames as f64 / rate as f64,
                report.seconds,
                report.real_time_factor
            );
            println!("underruns:    {}", report.underruns);
            println!("output:       {}", output.display());
            Ok(())
        }
    }
}
