//! The `refrain` command line: offline renders through the plugin's engine.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use refrain::engine::latency::Mode;
use refrain::licence::enforce::Setting;
use refrain::licence::store::Store;
use refrain::models::ModelSource;

mod rights;
use rights::{DeviceCommand, LicenceCommand, RegistryCommand};
use std::path::{Path, PathBuf};

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
    /// Render an audio file (WAV, AIFF, FLAC, MP3, Ogg Vorbis) through a model, offline and
    /// latency-compensated, into a 32-bit float WAV.
    Render {
        /// `builtin:tone-shaper`, `builtin:voice` (pitch and formant shift), a model.toml (or
        /// the folder holding one), or `id@identity` (a model in the models folder).
        #[arg(long, default_value = refrain::models::BUILTIN_ID)]
        model: String,
        /// Input audio file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The backing track a cover's voice sings over (at the input's sample rate, at least
        /// as long): a cover licence that names a backing track needs it, as the plugin needs
        /// its "Backing" sidechain. Other models ignore it.
        #[arg(long)]
        backing: Option<PathBuf>,
        /// A voice's pitch shift in semitones (-24..24; the formants stay).
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        pitch: f32,
        /// A voice's formant shift in semitones (-12..12; the built-in voice).
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        formant: f32,
        /// A voice model's index rate (0..1: how much comes from its training features).
        #[arg(long, default_value_t = 0.5)]
        index_rate: f32,
        /// A multi-speaker voice model's speaker.
        #[arg(long, default_value_t = 0)]
        speaker: u32,
        /// How much of a voice model's own loudness envelope it keeps (0..1, RVC's
        /// rms_mix_rate; 0 follows the input's).
        #[arg(long, default_value_t = 1.0)]
        envelope: f32,
        /// Output WAV (32-bit float).
        #[arg(long = "out")]
        output: PathBuf,
        /// Block size fed to the engine.
        #[arg(long, default_value_t = 512)]
        block: usize,
        /// `studio` (the long resampling filter; the default for files) or `live` (the
        /// plugin's low-latency mode, as a bounce in that mode renders).
        #[arg(long, default_value = "studio", value_parser = parse_mode)]
        mode: Mode,
        /// The track's licence, for models that need one: a licence file (cached on the way)
        /// or the id of a cached licence.
        #[arg(long)]
        licence: Option<String>,
    },
    /// Separate an audio file (WAV, AIFF, FLAC, MP3, Ogg Vorbis; mono or stereo) into stems,
    /// one 32-bit float WAV each (`vocals`, `drums`, `bass`, `other`; with `--stems 2`, the
    /// model's: `vocals`, `accompaniment`), at the input's rate and length, aligned sample for
    /// sample; the stems sum to the input.
    Separate {
        /// Input audio file.
        input: PathBuf,
        /// Folder for the stems (created if missing).
        #[arg(long = "out-dir")]
        out_dir: PathBuf,
        /// The separator: a model id in the models folder (`deezer.spleeter-2stems`, what
        /// `cargo xtask fetch-models` writes to models/real/spleeter-2stems and `refrain model
        /// import` installs), `id@identity`, or a model.toml (or its folder).
        #[arg(long, default_value = "deezer.spleeter-2stems")]
        model: String,
        /// `studio`: Spleeter's 512-frame segments, overlapped and cross-faded (best); `live`:
        /// what the plugin's Live mode hears, a 64-frame window every 8 frames.
        #[arg(long, default_value = "studio", value_parser = parse_mode)]
        mode: Mode,
        /// Live: frames of look-ahead (1024 samples each at 44.1 kHz); more is better and later.
        #[arg(long, default_value_t = refrain::separation::separator::LIVE_LOOKAHEAD)]
        lookahead_frames: usize,
        /// 4: vocals, drums, bass, other (a Spleeter-style model's accompaniment split by DSP:
        /// harmonic/percussive separation, the harmonic part below 250 Hz as bass); 2: the
        /// model's own stems. Default: 4 where the model has an accompaniment to split, else
        /// the model's own stems (MDX-Net, Demucs).
        #[arg(long, value_parser = clap::value_parser!(u8).range(2..=4))]
        stems: Option<u8>,
        /// A protected separator's licence (a file, cached on the way, or a cached licence's
        /// id): it must allow `remix` and `stem-export`, and the input must be the licensed
        /// track.
        #[arg(long)]
        licence: Option<String>,
    },
    /// Find the notes in an audio file with Basic Pitch (Spotify) and write them as a standard
    /// MIDI file (format 0, 120 BPM, 480 ticks per beat: the times are the audio's).
    Notes {
        /// Input audio file (WAV, AIFF, FLAC, MP3, Ogg Vorbis; mixed to mono).
        input: PathBuf,
        /// The MIDI file to write.
        #[arg(long = "out")]
        output: PathBuf,
        /// Basic Pitch's ONNX file (`nmp.onnx` from PyPI's basic-pitch 0.4.0: `cargo xtask
        /// fetch-models` puts it in models/real/basic-pitch/). Default: basic-pitch/nmp.onnx in
        /// the models folder.
        #[arg(long)]
        model: Option<PathBuf>,
        /// An onset peak must exceed this.
        #[arg(long, default_value_t = 0.5)]
        onset_threshold: f32,
        /// A note lasts while its activation is at least this (the reference's 0.3 turns
        /// strong harmonics into extra notes).
        #[arg(long, default_value_t = 0.5)]
        frame_threshold: f32,
        /// Notes must be longer than this many milliseconds.
        #[arg(long, default_value_t = 127.7)]
        min_note_ms: f64,
        /// Write each note's pitch bends (from Basic Pitch's pitch contour, in thirds of a
        /// semitone), each note on its own MIDI channel so bends stay its own.
        #[arg(long)]
        pitch_bends: bool,
        /// Find the notes of one stem instead of the whole mix: `vocals`, `drums`, `bass`,
        /// `other` (or the separator's own stem names), separated first (Studio).
        #[arg(long)]
        stem: Option<String>,
        /// The separator for --stem (as `refrain separate --model`).
        #[arg(long, default_value = "deezer.spleeter-2stems")]
        separator: String,
    },
    /// Licences: keys, issuing, checking, revoking, installing.
    #[command(subcommand, alias = "license")]
    Licence(LicenceCommand),
    /// The registry's role: its root, certifying rights holders, revoking, freshness receipts.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// This machine's device keys: the id licences are bound to.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Models: what a model folder holds, its identity, and the models folder.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Check a model (a folder, a model.toml, `id@identity` or `builtin:tone-shaper`) the way
    /// the plugin loads it, and print its id, identity and files. The identity is what
    /// licences and projects name.
    Info { model: String },
    /// Copy a model into the models folder (what the editor's Load does) and print the
    /// `id@identity` a project saves.
    Import { model: PathBuf },
    /// The models in the models folder and on REFRAIN_MODEL_PATH.
    List,
    /// Encrypt a model (rights holders): writes the protected folder and the content key file
    /// that `refrain licence issue --model-key` seals into licences. Without a licence carrying
    /// its key, the protected model cannot be loaded at all.
    Protect {
        /// The plain model (a folder or its model.toml).
        model: PathBuf,
        /// The protected folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the content key (default: OUT.content-key.toml beside the folder).
        #[arg(long)]
        key_out: Option<PathBuf>,
    },
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("`{s}` is not a mode: use `live` or `studio`"))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Render {
            model,
            input,
            backing,
            output,
            block,
            mode,
            licence: licence_arg,
            pitch,
            formant,
            index_rate,
            speaker,
            envelope,
        } => {
            let source = ModelSource::parse(&model);
            let voice = refrain::voice::controls::VoiceSettings {
                pitch_semitones: pitch.clamp(-24.0, 24.0),
                formant_semitones: formant.clamp(-12.0, 12.0),
                index_rate: index_rate.clamp(0.0, 1.0),
                speaker,
                envelope: envelope.clamp(0.0, 1.0),
                ..Default::default()
            };
            let track = match &licence_arg {
                Some(arg) => Some(rights::resolve_track(&Store::open_default()?, arg)?),
                None => None,
            };
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} rendering [{bar:40}] {percent}% ({eta})",
                )
                .context("progress style")?,
            );
            // In blocks from file to file; the output appears only once it is complete.
            let report = refrain::render::render_file_over(
                &source,
                track.as_ref(),
                refrain::render::RenderSettings {
                    mode,
                    block: block.clamp(1, 65536),
                    voice,
                },
                &input,
                backing.as_deref(),
                &output,
                |f| bar.set_position((f * 1000.0) as u64),
            )?;
            bar.finish_and_clear();
            let rate = report.sample_rate;
            println!("model:        {}", source.to_state());
            println!("{}", report.latency_terms);
            println!(
                "rendered:     {:.2} s of audio in {:.2} s (real-time factor {:.3})",
                report.frames as f64 / rate as f64,
                report.seconds,
                report.real_time_factor
            );
            println!("underruns:    {}", report.underruns);
            for line in &report.usage {
                println!("{line}");
            }
            println!("output:       {}", output.display());
            Ok(())
        }
        Command::Separate {
            input,
            out_dir,
            model,
            mode,
            lookahead_frames,
            stems,
            licence,
        } => {
            if stems == Some(3) {
                bail!("--stems is 2 (the model's stems) or 4 (vocals, drums, bass, other)");
            }
            use refrain::separation::separator::Schedule;
            let schedule = match mode {
                Mode::Studio => Schedule::studio(),
                Mode::Live => Schedule::live(lookahead_frames),
            };
            separate(
                &input,
                &out_dir,
                &model,
                schedule,
                stems,
                licence.as_deref(),
            )
        }
        Command::Notes {
            input,
            output,
            model,
            onset_threshold,
            frame_threshold,
            min_note_ms,
            pitch_bends,
            stem,
            separator,
        } => {
            let settings = refrain::notes::decode::Settings {
                onset_threshold,
                frame_threshold,
                min_note_ms,
                pitch_bends,
                ..Default::default()
            };
            match stem {
                None => notes(&input, &output, model, &settings),
                Some(stem) => {
                    // The stem goes to a private folder first, and is gone afterwards.
                    let dir = std::env::temp_dir().join(format!(
                        "refrain-notes-{}-{}",
                        std::process::id(),
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos())
                    ));
                    // Made here, new (never one that exists), and private.
                    let mut private = std::fs::DirBuilder::new();
                    #[cfg(unix)]
                    std::os::unix::fs::DirBuilderExt::mode(&mut private, 0o700);
                    private
                        .create(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    let result =
                        notes_of_stem(&input, &output, model, &settings, &stem, &separator, &dir);
                    let _ = std::fs::remove_dir_all(&dir);
                    result
                }
            }
        }
        Command::Licence(cmd) => rights::licence(cmd),
        Command::Registry(cmd) => rights::registry(cmd),
        Command::Device(cmd) => rights::device(cmd),
        Command::Model(cmd) => model(cmd),
    }
}

/// Separates `input` into `dir` with `separator` (four stems where it can), then finds the
/// notes of `stem`.
fn notes_of_stem(
    input: &Path,
    output: &Path,
    model: Option<PathBuf>,
    settings: &refrain::notes::decode::Settings,
    stem: &str,
    separator: &str,
    dir: &Path,
) -> Result<()> {
    use refrain::separation::file::{separate_file, SeparateOptions};
    let package = separator_package(separator, None)?;
    if refrain::licence::enforce::requirement(&package, Setting::Studio).is_some() {
        bail!(
            "model `{}` needs a licence; `refrain notes --stem` runs public separators only \
             (separate the licensed track with `refrain separate --licence`, then take the \
             notes of a stem file)",
            package.manifest.model.id
        );
    }
    let splittable = package
        .manifest
        .stems
        .as_ref()
        .is_some_and(|s| s.names.iter().any(|n| n == "accompaniment"))
        && package.manifest.model.kind == refrain::models::manifest::KIND_STEM_MASKS;
    let four = splittable && stem != "accompaniment";
    let report = separate_file(
        input,
        dir,
        &package,
        SeparateOptions::studio(four),
        &mut |_| {},
    )?;
    let Some((_, path)) = report.stems.iter().find(|(n, _)| n == stem) else {
        let names: Vec<&str> = report.stems.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "{} has no stem `{stem}`; its stems are {}",
            package.manifest.model.id,
            names.join(", ")
        );
    };
    println!(
        "stem:         {stem} (separated by {}@{})",
        package.manifest.model.id, package.identity
    );
    notes(path, output, model, settings)
}

/// A separator by plain id (the models folder), `id@identity`, or a path.
fn separator_package(
    model: &str,
    track: Option<&refrain::licence::gate::LoadedTrack>,
) -> Result<std::sync::Arc<refrain::models::package::ModelPackage>> {
    let is_plain_id = !model.contains('@')
        && !Path::new(model).exists()
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    Ok(if is_plain_id {
        std::sync::Arc::new(refrain::models::library::find_id(model).with_context(|| {
            format!("no separator `{model}` in the models folder: `cargo xtask fetch-models` writes Spleeter to models/real/spleeter-2stems; pass --model models/real/spleeter-2stems or `refrain model import` it")
        })?)
    } else {
        ModelSource::parse(model).package_with(track, Setting::Studio)?
    })
}

/// `refrain separate` of a separator that needs a licence: the licence must allow `remix` and
/// `stem-export` (stems leave Refrain as files), and the whole input must be the licensed
/// track, judged on the very blocks that are separated. `None` for public separators.
fn stem_export_licence(
    package: &refrain::models::package::ModelPackage,
    track: Option<&refrain::licence::gate::LoadedTrack>,
    input: &Path,
) -> Result<Option<refrain::render::RenderLicence>> {
    use refrain::licence::{claims::Use, enforce, policy};
    let Some(mut requirement) = enforce::requirement(package, Setting::Studio) else {
        return Ok(None);
    };
    requirement.uses.push(Use::StemExport);
    let store = Store::open_default()?;
    let verdict = policy::evaluate(
        &store,
        track.map(|t| t.licence.as_str()),
        track.map(|t| t.key.as_str()),
        &requirement,
        &policy::SystemClock,
    );
    if !verdict.state.allows() {
        bail!(
            "model `{}` needs a licence that allows stem export: {}",
            package.manifest.model.id,
            verdict.reason
        );
    }
    let rate = refrain::media::AudioReader::open(input)?.sample_rate();
    Ok(refrain::render::RenderLicence::check(package, track, rate)?)
}

fn notes(
    input: &Path,
    output: &Path,
    model: Option<PathBuf>,
    settings: &refrain::notes::decode::Settings,
) -> Result<()> {
    use refrain::notes::{basic_pitch::BasicPitch, midi, notes_of_file};
    let model = match model {
        Some(m) => m,
        None => refrain::models::library::models_folder()?.join("basic-pitch/nmp.onnx"),
    };
    let mut basic_pitch = BasicPitch::load(&model).with_context(|| {
        format!("no Basic Pitch at {}: `cargo xtask fetch-models` puts it in models/real/basic-pitch/nmp.onnx; pass --model", model.display())
    })?;
    let started = std::time::Instant::now();
    let found = notes_of_file(input, &mut basic_pitch, settings)?;
    midi::write(output, &found)?;
    println!("device:       {}", basic_pitch.device);
    println!(
        "notes:        {} in {:.2} s",
        found.len(),
        started.elapsed().as_secs_f64()
    );
    for n in found.iter().take(64) {
        println!(
            "  {:>8.3} s  {:>8.3} s  key {:>3}  velocity {:>3}",
            n.start, n.end, n.key, n.velocity
        );
    }
    if found.len() > 64 {
        println!("  ... {} more", found.len() - 64);
    }
    println!("output:       {}", output.display());
    Ok(())
}

fn separate(
    input: &Path,
    out_dir: &Path,
    model: &str,
    schedule: refrain::separation::separator::Schedule,
    stems: Option<u8>,
    licence: Option<&str>,
) -> Result<()> {
    let track = match licence {
        Some(l) => Some(rights::resolve_track(&Store::open_default()?, l)?),
        None => None,
    };
    let package = separator_package(model, track.as_ref())?;
    let mut licence = stem_export_licence(&package, track.as_ref(), input)?;
    let splittable = package.manifest.model.kind == refrain::models::manifest::KIND_STEM_MASKS
        && package
            .manifest
            .stems
            .as_ref()
            .is_some_and(|s| s.names.iter().any(|n| n == "accompaniment"));
    let options = refrain::separation::file::SeparateOptions {
        schedule,
        four_stems: stems.map_or(splittable, |n| n == 4),
    };
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} separating [{bar:40}] {percent}% ({eta})",
        )
        .context("progress style")?,
    );
    let report = refrain::separation::file::separate_file_checked(
        input,
        out_dir,
        &package,
        options,
        licence.as_mut(),
        &mut |f| bar.set_position((f * 1000.0) as u64),
    )?;
    bar.finish_and_clear();
    let seconds = report.frames as f64 / report.sample_rate as f64;
    println!(
        "model:        {}@{}",
        package.manifest.model.id, package.identity
    );
    println!("device:       {}", report.device);
    println!(
        "separated:    {seconds:.2} s of audio in {:.2} s (real-time factor {:.3}), {} segment runs",
        report.seconds_taken,
        report.seconds_taken / seconds.max(1e-9),
        report.segments_run
    );
    for (name, path) in &report.stems {
        println!("{name:<13} {}", path.display());
    }
    Ok(())
}

fn model(cmd: ModelCommand) -> Result<()> {
    use refrain::models::library;
    match cmd {
        ModelCommand::Protect {
            model,
            out,
            key_out,
        } => {
            use refrain::models::protection;
            let manifest = if model.is_dir() {
                model.join("model.toml")
            } else {
                model
            };
            let key_path = key_out.unwrap_or_else(|| {
                let name = out
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into());
                out.with_file_name(format!("{name}.content-key.toml"))
            });
            if key_path.exists() {
                bail!(
                    "{} exists; refusing to overwrite a content key",
                    key_path.display()
                );
            }
            let (header, key) = protection::protect(&manifest, &out)?;
            protection::KeyFile {
                id: header.id.clone(),
                identity: header.identity.clone(),
                key: hex::encode(key),
            }
            .write(&key_path)?;
            println!("protected:   {} ({})", header.id, header.name);
            println!("identity:    {}", header.identity);
            println!(
                "folder:      {} ({} files encrypted)",
                out.display(),
                header.files.len()
            );
            println!(
                "content key: {} (keep it safe: licences carry it, sealed to each device)",
                key_path.display()
            );
            Ok(())
        }
        ModelCommand::Info { model } => {
            let package = ModelSource::parse(&model).package()?;
            let m = &package.manifest;
            println!(
                "model:     {} ({}, version {})",
                m.model.id, m.model.name, m.model.version
            );
            println!("identity:  {}", package.identity);
            println!("reference: {}@{}", m.model.id, package.identity);
            println!("folder:    {}", package.folder.display());
            println!(
                "{:<10} {} ({} bytes)",
                "graph:",
                m.model.file,
                package.onnx.len()
            );
            for f in &m.files {
                println!(
                    "{:<10} {} ({}, sha256 {})",
                    "file:", f.path, f.role, f.sha256
                );
            }
            let rights = m.rights;
            if rights.licensed_voice || rights.licensed_track {
                println!(
                    "licence:   needed ({})",
                    if rights.licensed_voice {
                        "cover"
                    } else {
                        "remix"
                    }
                );
            } else {
                println!("licence:   none needed");
            }
            Ok(())
        }
        ModelCommand::Import { model } => {
            let path = if model.is_dir() {
                model.join("model.toml")
            } else {
                model
            };
            let (reference, folder) = library::import(&path)?;
            println!("{reference}");
            println!("in {}", folder.display());
            Ok(())
        }
        ModelCommand::List => {
            for folder in library::search_folders() {
                println!("{}:", folder.display());
                let Ok(entries) = std::fs::read_dir(&folder) else {
                    println!("  (none)");
                    continue;
                };
                let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                names.sort();
                for dir in names {
                    let manifest = dir.join("model.toml");
                    if dir
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        || !manifest.is_file()
                    {
                        continue;
                    }
                    match ModelSource::Manifest(manifest).package() {
                        Ok(p) => println!(
                            "  {}@{}  {}",
                            p.manifest.model.id, p.identity, p.manifest.model.name
                        ),
                        Err(e) => println!("  {}: unusable: {e}", dir.display()),
                    }
                }
            }
            Ok(())
        }
    }
}
