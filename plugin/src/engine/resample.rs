//! Host rate <-> model rate, one chunk at a time (rubato's synchronous FFT resampler).
//!
//! Chunks are exact on both sides (`FixedSync::Both`), so the resampler never buffers a
//! partial chunk and its delay (half a chunk, in output samples) is a fixed, whole term of
//! the latency plan.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot build a {from} Hz -> {to} Hz resampler: {reason}")]
    Construction { from: u32, to: u32, reason: String },
    #[error("the {from} Hz -> {to} Hz resampler chose chunks of {got_in} -> {got_out} samples, expected {want_in} -> {want_out}")]
    ChunkMismatch {
        from: u32,
        to: u32,
        got_in: usize,
        got_out: usize,
        want_in: usize,
        want_out: usize,
    },
    #[error("resampling failed: {0}")]
    Run(String),
}

/// Resamples interleaved chunks of exactly `chunk_in` frames into `chunk_out` frames.
pub struct ChunkResampler {
    inner: Fft<f32>,
    channels: usize,
    chunk_in: usize,
    chunk_out: usize,
}

impl ChunkResampler {
    /// A resampler from `from` Hz to `to` Hz on chunks whose sizes are in the exact rate ratio.
    pub fn new(
        from: u32,
        to: u32,
        chunk_in: usize,
        chunk_out: usize,
        channels: usize,
    ) -> Result<Self, ResampleError> {
        let inner = Fft::<f32>::new(
            from as usize,
            to as usize,
            chunk_in,
            channels,
            FixedSync::Both,
        )
        .map_err(|e| ResampleError::Construction {
            from,
            to,
            reason: e.to_string(),
        })?;
        let (got_in, got_out) = (inner.input_frames_next(), inner.output_frames_next());
        if (got_in, got_out) != (chunk_in, chunk_out) {
            return Err(ResampleError::ChunkMismatch {
                from,
                to,
                got_in,
                got_out,
                want_in: chunk_in,
                want_out: chunk_out,
            });
        }
        Ok(ChunkResampler {
            inner,
            channels,
            chunk_in,
            chunk_out,
        })
    }

    /// Delay in output samples.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Forgets all history.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Resamples one interleaved chunk; `input` holds `chunk_in` frames, `output` `chunk_out`.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ResampleError> {
        let run = |e: &dyn std::fmt::Display| ResampleError::Run(e.to_string());
        let adapter_in =
            InterleavedSlice::new(input, self.channels, self.chunk_in).map_err(|e| run(&e))?;
        let mut adapter_out = InterleavedSlice::new_mut(output, self.channels, self.chunk_out)
            .map_err(|e| run(&e))?;
        self.inner
            .process_into_buffer(&adapter_in, &mut adapter_out, None)
            .map_err(|e| run(&e))?;
        Ok(())
    }
}
