//! A separator as the engine runs it in the plugin: a [`HopProcessor`] whose output is every
//! stem, routed to the plugin's four stem outputs ([`PORTS`]: vocals, drums, bass, other).
//!
//! The engine feeds one hop of stereo input at the model's rate per run; the separator
//! ([`StemStream`]) gives back each stem aligned with its input, but late and in bursts (a Live
//! window every eight frames, a segment, a Demucs chunk). Each stem waits in a queue that starts
//! with [`StemStream::lag`] samples of silence, so every run returns exactly one hop of every
//! stem, [`StemStream::lag`] samples behind its input: the model latency the engine reports,
//! the same for every stem and every output.
//!
//! Which stems a model has decides nothing else: a stem named for a port plays there, any other
//! (`accompaniment` without the four-stem split, MDX-Net's `rest`, `instrumental`) plays on
//! `other`, so the four ports always sum to what the model separated.

use super::demucs::{DemucsSeparator, DEFAULT_OVERLAP};
use super::four_stems;
use super::mdx::MdxSeparator;
use super::model::SeparatorModel;
use super::separator::{Schedule, Separator, LIVE_LOOKAHEAD, LIVE_PASS, LIVE_WINDOW};
use super::stft::Framing;
use super::{SeparateError, StemStream};
use crate::engine::latency::Mode;
use crate::models::manifest::{Manifest, KIND_DEMUCS, KIND_MDX_NET, KIND_STEM_MASKS};
use crate::models::package::ModelPackage;
use crate::models::processor::{HopProcessor, ProcessError, StreamSpec};
use std::collections::VecDeque;

/// The plugin's stem outputs, in port order.
pub const PORTS: [&str; 4] = ["vocals", "drums", "bass", "other"];

/// The plugin's Studio schedule for `stem-masks` models: a 128-frame window every 16 frames,
/// each frame seen with at least 8 frames after it. Of the schedules measured on the 15 real
/// excerpts (README: the window curve; shared/DECISIONS.md §4), it has the best mean vocals
/// improvement (+7.1 dB); longer windows and look-aheads measured no better, because Spleeter
/// wants context behind a frame more than ahead of it. The same share of a core as Live.
pub fn studio_schedule() -> Schedule {
    Schedule::Windows {
        window: 2 * LIVE_WINDOW,
        pass: 2 * LIVE_PASS,
        lookahead: 8,
        split: four_stems::CENTRED,
    }
}

/// The schedule the plugin runs a `stem-masks` model on in `mode`.
pub fn schedule_for(mode: Mode) -> Schedule {
    match mode {
        Mode::Live => Schedule::live(LIVE_LOOKAHEAD),
        Mode::Studio => studio_schedule(),
    }
}

/// The port a model's stem plays on.
pub fn port_of(stem: &str) -> usize {
    PORTS
        .iter()
        .position(|p| stem.eq_ignore_ascii_case(p))
        .unwrap_or(PORTS.len() - 1)
}

/// The streaming contract of the separator in `manifest` as the plugin runs it in `mode`:
/// stereo at the model's rate, one frame hop per run, the separator's lag as the model
/// latency, four stems out. `None` for a model that is not a separator.
pub fn stream_spec(manifest: &Manifest, mode: Mode) -> Option<StreamSpec> {
    let stems = manifest.stems.as_ref()?;
    let rate = manifest.stream.sample_rate;
    let (hop, latency) = match manifest.model.kind.as_str() {
        KIND_STEM_MASKS => {
            let framing = Framing {
                fft: stems.fft,
                hop: manifest.stream.hop,
            };
            let four = stems.names.iter().any(|n| n == "accompaniment");
            (
                framing.hop,
                Separator::lag_of(schedule_for(mode), framing, four),
            )
        }
        KIND_MDX_NET => {
            let framing = Framing {
                fft: stems.fft,
                hop: manifest.stream.hop,
            };
            (framing.hop, MdxSeparator::lag_of(stems.frames, framing))
        }
        KIND_DEMUCS => (
            manifest.stream.hop,
            DemucsSeparator::lag_of(
                stems.segment,
                stems.overlap.unwrap_or(DEFAULT_OVERLAP),
                manifest.stream.hop,
            ),
        ),
        _ => return None,
    };
    Some(StreamSpec {
        sample_rate: rate,
        channels: 2,
        hop,
        context: 0,
        latency,
        tail: 0,
        stems: PORTS.len(),
        lookahead: 0,
    })
}

fn not_a_separator(package: &ModelPackage) -> SeparateError {
    SeparateError::NotASeparator {
        id: package.manifest.model.id.clone(),
        kind: package.manifest.model.kind.clone(),
    }
}

/// The separator in `package` as the plugin streams it in `mode` (session, tensor checks),
/// stereo: a `stem-masks` model on [`schedule_for`] `mode` (split into four stems when it has
/// an `accompaniment`), MDX-Net and Demucs on their segments.
pub fn stream_of(
    package: &ModelPackage,
    mode: Mode,
) -> Result<Box<dyn StemStream + Send>, SeparateError> {
    let manifest = &package.manifest;
    let spec = stream_spec(manifest, mode).ok_or_else(|| not_a_separator(package))?;
    let model = SeparatorModel::from_package(package)?;
    let rate = manifest.stream.sample_rate;
    Ok(match manifest.model.kind.as_str() {
        KIND_STEM_MASKS => {
            let four = model.stems.names.iter().any(|n| n == "accompaniment");
            Box::new(Separator::new(
                model,
                2,
                schedule_for(mode),
                spec.hop,
                rate,
                four,
            )?)
        }
        KIND_MDX_NET => Box::new(MdxSeparator::new(model, 2, spec.hop)?),
        KIND_DEMUCS => Box::new(DemucsSeparator::new(model, 2, spec.hop)?),
        _ => return Err(not_a_separator(package)),
    })
}

/// A separator streaming hop by hop, every stem out on its port.
pub struct StemProcessor {
    stream: Box<dyn StemStream + Send>,
    spec: StreamSpec,
    /// The port of each of the stream's stems.
    route: Vec<usize>,
    /// What the stream gave in the last push, `[stem][channel]`.
    got: Vec<Vec<Vec<f32>>>,
    /// Per stem and channel (`stem * 2 + channel`), the samples not yet returned.
    queues: Vec<VecDeque<f32>>,
    /// Samples a run had to return before the stream gave them (0 when the lag is right).
    pub short: u64,
    device: String,
    identity: String,
}

impl StemProcessor {
    /// Loads the separator in `package` (session, tensor checks) for `mode`. A `stem-masks`
    /// model with an `accompaniment` stem is split into four stems.
    pub fn load(package: &ModelPackage, mode: Mode) -> Result<StemProcessor, SeparateError> {
        let stream = stream_of(package, mode)?;
        let spec = stream_spec(&package.manifest, mode).ok_or_else(|| not_a_separator(package))?;
        let device = stream.device().to_owned();
        Ok(StemProcessor::new(
            stream,
            spec,
            device,
            package.identity.clone(),
        ))
    }

    /// Streams `stream` under `spec` (its latency must be the stream's lag).
    pub fn new(
        stream: Box<dyn StemStream + Send>,
        spec: StreamSpec,
        device: String,
        identity: String,
    ) -> StemProcessor {
        let route: Vec<usize> = stream.stem_names().iter().map(|n| port_of(n)).collect();
        let stems = route.len();
        let mut p = StemProcessor {
            got: vec![vec![Vec::new(); 2]; stems],
            queues: vec![VecDeque::new(); stems * 2],
            route,
            stream,
            spec,
            short: 0,
            device,
            identity,
        };
        p.prime();
        p
    }

    /// The stream's stems, in its own order.
    pub fn stem_names(&self) -> &[String] {
        self.stream.stem_names()
    }

    /// Every queue starts with the latency's silence.
    fn prime(&mut self) {
        for q in &mut self.queues {
            q.clear();
            q.extend(std::iter::repeat_n(0.0, self.spec.latency));
        }
    }

    /// Feeds one hop and takes one hop of every stem out (into `out`, when given).
    fn run(&mut self, window: &[f32], out: Option<&mut [f32]>) -> Result<(), ProcessError> {
        let hop = self.spec.hop;
        let planar = [&window[..hop], &window[hop..2 * hop]];
        self.stream
            .push(&planar, &mut self.got)
            .map_err(|e| ProcessError::Inference(e.to_string()))?;
        for (s, stem) in self.got.iter_mut().enumerate() {
            for (c, samples) in stem.iter_mut().enumerate() {
                self.queues[s * 2 + c].extend(samples.drain(..));
            }
        }
        let mut out = out;
        if let Some(o) = out.as_deref_mut() {
            o.fill(0.0);
        }
        for (s, &port) in self.route.iter().enumerate() {
            for c in 0..2 {
                let q = &mut self.queues[s * 2 + c];
                let have = q.len().min(hop);
                if have < hop {
                    self.short += (hop - have) as u64;
                }
                match out.as_deref_mut() {
                    Some(o) => {
                        let dst = &mut o[(port * 2 + c) * hop..][..have];
                        for (d, v) in dst.iter_mut().zip(q.drain(..have)) {
                            *d += v;
                        }
                    }
                    None => {
                        q.drain(..have);
                    }
                }
            }
        }
        Ok(())
    }
}

impl HopProcessor for StemProcessor {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError> {
        self.run(window, Some(out))
    }

    fn reset(&mut self) {
        self.stream.reset();
        for stem in &mut self.got {
            for c in stem.iter_mut() {
                c.clear();
            }
        }
        self.prime();
    }

    fn skip(&mut self, window: &[f32]) {
        self.stream.set_skipping(true);
        let ran = self.run(window, None);
        self.stream.set_skipping(false);
        if ran.is_err() {
            // The next run reports the error; the stream starts over meanwhile.
            self.reset();
        }
    }

    fn device(&self) -> Option<String> {
        Some(self.device.clone())
    }

    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that gives its input back as two stems (`vocals` = 0.75 x, `rest` = 0.25 x)
    /// in bursts of `burst` samples: what a separator looks like to the processor. Fed 64 at a
    /// time in bursts of 200, it trails by 192 at most.
    struct Bursts {
        names: Vec<String>,
        held: Vec<Vec<f32>>,
        burst: usize,
        runs: u64,
    }

    impl StemStream for Bursts {
        fn stem_names(&self) -> &[String] {
            &self.names
        }
        fn push(
            &mut self,
            planar: &[&[f32]],
            out: &mut [Vec<Vec<f32>>],
        ) -> Result<(), SeparateError> {
            for (h, p) in self.held.iter_mut().zip(planar) {
                h.extend_from_slice(p);
            }
            while self.held[0].len() >= self.burst {
                self.runs += 1;
                for (c, held) in self.held.iter_mut().enumerate() {
                    let x: Vec<f32> = held.drain(..self.burst).collect();
                    out[0][c].extend(x.iter().map(|v| v * 0.75));
                    out[1][c].extend(x.iter().map(|v| v * 0.25));
                }
            }
            Ok(())
        }
        fn finish(&mut self, _out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
            Ok(())
        }
        fn runs(&self) -> u64 {
            self.runs
        }
        fn device(&self) -> &str {
            "CPU"
        }
        fn lag(&self) -> usize {
            192
        }
        fn reset(&mut self) {
            self.held.iter_mut().for_each(Vec::clear);
        }
    }

    #[test]
    fn every_stem_comes_out_delayed_by_the_lag_on_its_port() {
        let (hop, burst) = (64, 200);
        let stream = Bursts {
            names: vec!["vocals".into(), "rest".into()],
            held: vec![Vec::new(); 2],
            burst,
            runs: 0,
        };
        let spec = StreamSpec {
            sample_rate: 44_100,
            channels: 2,
            hop,
            context: 0,
            latency: stream.lag(),
            tail: 0,
            stems: 4,
            lookahead: 0,
        };
        let mut p = StemProcessor::new(Box::new(stream), spec, "CPU".into(), String::new());
        assert_eq!(port_of("rest"), 3);
        assert_eq!(port_of("Vocals"), 0);
        let x = |i: usize, c: usize| ((i * 7 + c * 3) % 23) as f32 - 11.0;
        let mut out = vec![0.0f32; spec.out_len()];
        for h in 0..40 {
            let window: Vec<f32> = (0..2)
                .flat_map(|c| (0..hop).map(move |i| x(h * hop + i, c)))
                .collect();
            p.process(&window, &mut out).unwrap();
            for c in 0..2 {
                for i in 0..hop {
                    let t = (h * hop + i) as isize - spec.latency as isize;
                    let want = if t >= 0 { x(t as usize, c) } else { 0.0 };
                    assert_eq!(out[c * hop + i], 0.75 * want, "vocals");
                    assert_eq!(out[(3 * 2 + c) * hop + i], 0.25 * want, "other");
                    assert_eq!(out[(2 + c) * hop + i], 0.0, "drums");
                }
            }
        }
        assert_eq!(p.short, 0);
        // One sample less of latency is not enough.
        let stream = Bursts {
            names: vec!["vocals".into(), "other".into()],
            held: vec![Vec::new(); 2],
            burst,
            runs: 0,
        };
        let spec = StreamSpec {
            latency: 191,
            ..spec
        };
        let mut p = StemProcessor::new(Box::new(stream), spec, "CPU".into(), String::new());
        for _ in 0..40 {
            p.process(&vec![0.5; 2 * hop], &mut out).unwrap();
        }
        assert!(p.short > 0);
    }
}
