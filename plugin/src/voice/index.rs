//! Feature retrieval (RVC's `index_rate`): each content frame is blended with the nearest of
//! the voice's own training features, which pulls the timbre towards the trained voice.
//!
//! As RVC does it (shared/MODELS.md §2): the k = 8 nearest rows by Euclidean distance, weighted
//! by 1 / distance² and normalised; `frame = rate x retrieved + (1 - rate) x frame`. RVC
//! searches with faiss; here the rows are searched exhaustively, so an index larger than
//! [`MAX_ROWS`] is thinned to an evenly spaced subset of that many rows when it is loaded (the
//! search stays inside the hop's time budget on a CPU).

/// Neighbours blended per frame.
pub const K: usize = 8;
/// Most rows searched.
pub const MAX_ROWS: usize = 8192;

/// Why training features could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("{path} is not a NumPy .npy file of float32 features: {reason}")]
    Format { path: String, reason: String },
    #[error("{path} holds {got}-channel features; this {version} voice needs {want}")]
    Channels {
        path: String,
        got: usize,
        want: usize,
        version: String,
    },
}

/// A voice's training features, row-major `[rows][channels]`.
#[derive(Debug, Clone)]
pub struct FeatureIndex {
    rows: Vec<f32>,
    channels: usize,
}

impl FeatureIndex {
    /// Parses a `.npy` (format 1.0-3.0, little-endian float32, C order, two dimensions) of
    /// `want` channels. `path` names the file in messages.
    pub fn parse(
        bytes: &[u8],
        want: usize,
        path: &str,
        version: &str,
    ) -> Result<FeatureIndex, IndexError> {
        let err = |reason: &str| IndexError::Format {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(err("no .npy magic"));
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            _ => return Err(err("unknown .npy version")),
        };
        let header = bytes
            .get(start..start + header_len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| err("truncated header"))?;
        let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
        if !compact.contains("'descr':'<f4'") {
            return Err(err("the data must be little-endian float32 ('<f4')"));
        }
        if !compact.contains("'fortran_order':False") {
            return Err(err("the data must be in C order"));
        }
        let shape = compact
            .split("'shape':(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| err("no shape in the header"))?;
        let dims: Vec<usize> = shape
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().map_err(|_| err("a dimension is not a number")))
            .collect::<Result<_, _>>()?;
        let [rows, channels] = dims[..] else {
            return Err(err(
                "the features must be two-dimensional: [rows, channels]",
            ));
        };
        if channels != want {
            return Err(IndexError::Channels {
                path: path.to_owned(),
                got: channels,
                want,
                version: version.to_owned(),
            });
        }
        let data = &bytes[start + header_len..];
        let values = rows
            .checked_mul(channels)
            .filter(|n| n.checked_mul(4) == Some(data.len()))
            .ok_or_else(|| err("the data's length does not match its shape"))?;
        if rows == 0 {
            return Err(err("no rows"));
        }
        // Evenly spaced rows when there are too many to search in time.
        let keep = rows.min(MAX_ROWS);
        let mut kept = Vec::with_capacity(keep * channels);
        for r in 0..keep {
            let src = r * rows / keep;
            let row = &data[src * channels * 4..(src + 1) * channels * 4];
            kept.extend(
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        debug_assert!(values >= kept.len());
        if kept.iter().any(|v| !v.is_finite()) {
            return Err(err("it holds NaN or infinite values"));
        }
        Ok(FeatureIndex {
            rows: kept,
            channels,
        })
    }

    /// Rows searched.
    pub fn len(&self) -> usize {
        self.rows.len() / self.channels
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Blends `frame` with its [`K`] nearest rows at `rate` (0: unchanged, 1: only the
    /// retrieved features). `best` is scratch for the search.
    pub fn blend(&self, frame: &mut [f32], rate: f32, best: &mut Vec<(f32, usize)>) {
        if rate <= 0.0 {
            return;
        }
        best.clear();
        for (r, row) in self.rows.chunks_exact(self.channels).enumerate() {
            let d: f32 = row
                .iter()
                .zip(frame.iter())
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            if best.len() < K {
                best.push((d, r));
                best.sort_by(|a, b| a.0.total_cmp(&b.0));
            } else if d < best[K - 1].0 {
                best[K - 1] = (d, r);
                best.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        // RVC's weights: (1 / score)² where faiss's score is the squared distance.
        let weights: [f32; K] =
            std::array::from_fn(|i| best.get(i).map_or(0.0, |(d, _)| 1.0 / d.max(1e-9).powi(2)));
        let total: f32 = weights.iter().sum();
        for (c, v) in frame.iter_mut().enumerate() {
            let retrieved: f32 = best
                .iter()
                .zip(&weights)
                .map(|((_, r), w)| w * self.rows[r * self.channels + c])
                .sum::<f32>()
                / total;
            *v = rate * retrieved + (1.0 - rate) * *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(rows: usize, channels: usize, values: &[f32]) -> Vec<u8> {
        let header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {channels}), }}");
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_frame_on_a_training_row_is_that_row_and_rate_zero_changes_nothing() {
        let values: Vec<f32> = (0..20 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        let index = FeatureIndex::parse(&npy(20, 4, &values), 4, "f.npy", "v1").unwrap();
        assert_eq!(index.len(), 20);
        let mut best = Vec::new();
        let mut frame = values[8..12].to_vec();
        frame[0] += 1e-4;
        index.blend(&mut frame, 1.0, &mut best);
        // The row itself dominates the 1/d² weights.
        assert!((frame[1] - values[9]).abs() < 1e-3, "{frame:?}");
        let mut same = vec![0.5; 4];
        index.blend(&mut same, 0.0, &mut best);
        assert_eq!(same, vec![0.5; 4]);
    }

    #[test]
    fn wrong_channels_and_broken_files_are_refused_by_name() {
        let values = vec![0.0f32; 12];
        let e = FeatureIndex::parse(&npy(3, 4, &values), 768, "voice/f.npy", "v2").unwrap_err();
        assert!(e.to_string().contains("voice/f.npy holds 4-channel"), "{e}");
        let mut short = npy(3, 4, &values);
        short.truncate(short.len() - 4);
        let e = FeatureIndex::parse(&short, 4, "f.npy", "v1").unwrap_err();
        assert!(e.to_string().contains("does not match its shape"), "{e}");
        assert!(FeatureIndex::parse(b"not numpy", 4, "f.npy", "v1").is_err());
    }
}
