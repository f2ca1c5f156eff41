//! Audio files in and out, in blocks: the formats producers have (WAV, AIFF, FLAC, MP3, Ogg
//! Vorbis) are decoded with `symphonia`; output is 32-bit float WAV written with `hound`.
//!
//! The only place Refrain reads or writes audio files; the CLI, licence issuing (the reference
//! fingerprint) and the tests all come here. Files are opened with [`crate::files`] (regular
//! files only, no blocking on pipes or devices) and outputs are written atomically, so a render
//! that fails midway never damages anything, not even when its output is its own input.

use crate::files::{self, AtomicFile, PendingRename};
use std::fs::File;
use std::io::BufWriter;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// Most channels Refrain reads from a file.
pub const MAX_CHANNELS: usize = 8;
/// The longest audio [`read_all`] reads at once, in samples over all channels (about 46 minutes
/// of 48 kHz stereo): anything longer streams.
pub const MAX_IN_MEMORY_SAMPLES: usize = 1 << 28;

/// Why an audio file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Open(#[from] files::ReadError),
    #[error("{path} is not audio Refrain can read (WAV, AIFF, FLAC, MP3, Ogg Vorbis): {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path} is damaged at {seconds:.2} s: {reason}")]
    Corrupt {
        path: PathBuf,
        seconds: f64,
        reason: String,
    },
    #[error("{path} has {channels} channels; Refrain reads 1 to {MAX_CHANNELS}")]
    Channels { path: PathBuf, channels: usize },
    #[error("{path} is too long to read at once ({frames} frames); it streams instead")]
    TooLong { path: PathBuf, frames: u64 },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A file being decoded, block by block.
pub struct AudioReader {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track: u32,
    channels: usize,
    rate: u32,
    frames: Option<u64>,
    /// Decoded frames not yet handed out, planar.
    pending: Vec<Vec<f32>>,
    pending_at: usize,
    /// Frames handed out so far.
    position: u64,
    done: bool,
}

impl AudioReader {
    /// Opens `path` and reads its format (not its audio).
    pub fn open(path: &Path) -> Result<AudioReader, MediaError> {
        let file = files::open_regular(path)?;
        let format_err = |reason: String| MediaError::Format {
            path: path.to_owned(),
            reason,
        };
        let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = contained(|| {
            symphonia::default::get_probe().probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        })
        .map_err(format_err)?
        .map_err(|e| format_err(e.to_string()))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| format_err("it holds no audio track".into()))?;
        let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
            return Err(format_err("its audio track has no codec parameters".into()));
        };
        let frames = track.num_frames;
        let track_id = track.id;
        let channels = params.channels.as_ref().map_or(0, |c| c.count());
        let rate = params
            .sample_rate
            .ok_or_else(|| format_err("it states no sample rate".into()))?;
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(MediaError::Channels {
                path: path.to_owned(),
                channels,
            });
        }
        if !(1_000..=768_000).contains(&rate) {
            return Err(format_err(format!("a sample rate of {rate} Hz")));
        }
        let decoder = contained(|| {
            symphonia::default::get_codecs()
                .make_audio_decoder(&params, &AudioDecoderOptions::default())
        })
        .map_err(format_err)?
        .map_err(|e| format_err(e.to_string()))?;
        Ok(AudioReader {
            path: path.to_owned(),
            format,
            decoder,
            track: track_id,
            channels,
            rate,
            frames,
            pending: vec![Vec::new(); channels],
            pending_at: 0,
            position: 0,
            done: false,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// The length in frames, when the file states it.
    pub fn frames(&self) -> Option<u64> {
        self.frames
    }

    /// Decodes up to `max` frames into `out` (one vector per channel, cleared first). Returns
    /// the frames read; 0 at the end.
    pub fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, MediaError> {
        for c in out.iter_mut() {
            c.clear();
        }
        let mut got = 0;
        while got < max {
            let available = self.pending.first().map_or(0, |p| p.len()) - self.pending_at;
            if available > 0 {
                let k = available.min(max - got);
                for (o, p) in out.iter_mut().zip(&self.pending) {
                    o.extend_from_slice(&p[self.pending_at..self.pending_at + k]);
                }
                self.pending_at += k;
                got += k;
                continue;
            }
            if self.done || !self.decode_next()? {
                break;
            }
        }
        self.position += got as u64;
        Ok(got)
    }

    /// Decodes the next packet of the track into `pending`; false at the end. A decoder that
    /// panics on a damaged file ends the stream with [`MediaError::Corrupt`].
    fn decode_next(&mut self) -> Result<bool, MediaError> {
        match contained(|| self.decode_next_packet()) {
            Ok(result) => result,
            Err(reason) => {
                self.done = true;
                Err(self.corrupt(reason))
            }
        }
    }

    fn decode_next_packet(&mut self) -> Result<bool, MediaError> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.done = true;
                    return Ok(false);
                }
                Err(e) => return Err(self.corrupt(e.to_string())),
            };
            if packet.track_id != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                // A damaged frame in a lossy stream: skip it, as players do.
                Err(symphonia::core::errors::Error::DecodeError(_)) => continue,
                Err(e) => return Err(self.corrupt(e.to_string())),
            };
            let planes = decoded.num_planes();
            if planes == self.channels {
                decoded.copy_to_vecs_planar::<f32>(&mut self.pending);
            }
            if planes != self.channels {
                return Err(MediaError::Corrupt {
                    path: self.path.clone(),
                    seconds: self.position as f64 / self.rate as f64,
                    reason: format!(
                        "a packet with {planes} channels in a {}-channel stream",
                        self.channels
                    ),
                });
            }
            self.pending_at = 0;
            if self.pending.first().is_some_and(|p| !p.is_empty()) {
                return Ok(true);
            }
        }
    }

    fn corrupt(&self, reason: String) -> MediaError {
        MediaError::Corrupt {
            path: self.path.clone(),
            seconds: self.position as f64 / self.rate as f64,
            reason,
        }
    }
}

/// Runs a step of the third-party decoders and turns a panic (an arithmetic overflow on a
/// hostile header, found by fuzzing) into the reason the file is refused: damaged media is an
/// error, never a crash of the host or the CLI.
fn contained<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(step)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        format!("the decoder failed on it ({what})")
    })
}

/// Reads a whole (short) file as planar f32 and its rate. Longer than
/// [`MAX_IN_MEMORY_SAMPLES`] is refused: long files stream through [`AudioReader`].
pub fn read_all(path: &Path) -> Result<(Vec<Vec<f32>>, u32), MediaError> {
    let mut r = AudioReader::open(path)?;
    let mut out = vec![Vec::new(); r.channels()];
    let mut block = vec![Vec::new(); r.channels()];
    loop {
        let n = r.read(&mut block, 1 << 16)?;
        if n == 0 {
            break;
        }
        for (o, b) in out.iter_mut().zip(&block) {
            o.extend_from_slice(b);
        }
        if out[0].len() * out.len() > MAX_IN_MEMORY_SAMPLES {
            return Err(MediaError::TooLong {
                path: path.to_owned(),
                frames: out[0].len() as u64,
            });
        }
    }
    Ok((out, r.sample_rate()))
}

/// A 32-bit float WAV being written, block by block; it appears at its path only when
/// [`Self::finish`] succeeds.
pub struct WavWriter {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
    pending: PendingRename,
    channels: usize,
}

impl WavWriter {
    pub fn create(path: &Path, channels: usize, rate: u32) -> Result<WavWriter, MediaError> {
        let err = |reason: String| MediaError::Write {
            path: path.to_owned(),
            reason,
        };
        let (file, pending) = AtomicFile::create(path)
            .map_err(|e| err(e.to_string()))?
            .into_parts();
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let writer = hound::WavWriter::new(file, spec).map_err(|e| err(e.to_string()))?;
        Ok(WavWriter {
            path: path.to_owned(),
            writer,
            pending,
            channels,
        })
    }

    /// Appends planar frames (every channel the same length).
    pub fn write(&mut self, planar: &[&[f32]]) -> Result<(), MediaError> {
        let n = planar.first().map_or(0, |c| c.len());
        for i in 0..n {
            for c in planar.iter().take(self.channels) {
                self.writer
                    .write_sample(c[i])
                    .map_err(|e| MediaError::Write {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })?;
            }
        }
        Ok(())
    }

    /// Finishes the header, syncs, and puts the file in place.
    pub fn finish(self) -> Result<(), MediaError> {
        let err = |reason: String| MediaError::Write {
            path: self.path.clone(),
            reason,
        };
        self.writer.finalize().map_err(|e| err(e.to_string()))?;
        self.pending.commit().map_err(|e| err(e.to_string()))
    }
}

/// Writes planar f32 as a 32-bit float WAV, atomically.
pub fn write_wav(path: &Path, audio: &[Vec<f32>], rate: u32) -> Result<(), MediaError> {
    let mut w = WavWriter::create(path, audio.len(), rate)?;
    let planes: Vec<&[f32]> = audio.iter().map(|c| c.as_slice()).collect();
    w.write(&planes)?;
    w.finish()
}

/// [`read_all`] under the name the callers used when only WAV was read.
pub fn read_wav(path: &Path) -> Result<(Vec<Vec<f32>>, u32), MediaError> {
    read_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo xtask fuzz` (target `media`): a WAV `fmt ` chunk stating 65,025 channels
    /// overflows a multiplication inside symphonia's header parser, which panics in builds with
    /// overflow checks. It is refused with a reason, and nothing panics out of the reader.
    #[test]
    fn a_header_that_makes_the_decoder_panic_is_refused_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostile.wav");
        let bytes = include_bytes!("../../fuzz/corpus/media/regress-wav-fmt-overflow.wav");
        std::fs::write(&path, bytes).unwrap();
        let err = read_all(&path).expect_err("a hostile header is refused");
        assert!(
            matches!(err, MediaError::Format { .. } | MediaError::Channels { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("hostile.wav"), "{err}");
    }

    #[test]
    fn a_written_file_reads_back_and_streams_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let audio = crate::synth::sine(10_000, 44_100.0, 440.0, 0.5);
        write_wav(&path, &audio, 44_100).unwrap();
        let (back, rate) = read_all(&path).unwrap();
        assert_eq!((rate, back.len()), (44_100, 2));
        assert_eq!(back, audio);
        let mut r = AudioReader::open(&path).unwrap();
        assert_eq!(r.frames(), Some(10_000));
        let mut block = vec![Vec::new(); 2];
        let mut total = 0;
        loop {
            let n = r.read(&mut block, 777).unwrap();
            if n == 0 {
                break;
            }
            assert_eq!(&block[1][..], &audio[1][total..total + n]);
            total += n;
        }
        assert_eq!(total, 10_000);
    }

    #[test]
    fn garbage_truncation_and_devices_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, b"ID3 not really an mp3 at all, just text").unwrap();
        let e = AudioReader::open(&junk).err().expect("junk refused");
        assert!(
            e.to_string().contains("is not audio Refrain can read"),
            "{e}"
        );
        let e = AudioReader::open(Path::new("/dev/zero")).err().unwrap();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A WAV cut in half still reads its first half, without panicking.
        let path = dir.path().join("cut.wav");
        write_wav(
            &path,
            &crate::synth::sine(8_000, 48_000.0, 300.0, 0.5),
            48_000,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match read_all(&path) {
            Ok((a, _)) => assert!(a[0].len() < 8_000),
            Err(e) => assert!(e.to_string().contains("cut.wav"), "{e}"),
        }
    }
}
