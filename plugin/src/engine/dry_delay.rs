//! The latency-aligned dry path: the input delayed by exactly the reported latency, so that
//! switching between processed and dry audio (underrun, bypass, no licence) never shifts time.

/// A multichannel delay line sized in `activate()`; `process()` never allocates.
#[derive(Debug, Clone)]
pub struct DryDelay {
    /// One circular buffer per channel, each `capacity` samples long.
    lines: Vec<Vec<f32>>,
    /// Delay in samples.
    delay: usize,
    /// Next write position in every line.
    write: usize,
}

impl DryDelay {
    /// A delay of `delay` samples that accepts blocks of up to `max_block` samples.
    pub fn new(channels: usize, delay: usize, max_block: usize) -> Self {
        Self::with_max_delay(channels, delay, delay, max_block)
    }

    /// A delay of `delay` samples that [`Self::set_delay`] may later move up to `max_delay`.
    pub fn with_max_delay(
        channels: usize,
        delay: usize,
        max_delay: usize,
        max_block: usize,
    ) -> Self {
        let capacity = delay.max(max_delay) + max_block.max(1);
        DryDelay {
            lines: vec![vec![0.0; capacity]; channels],
            delay,
            write: 0,
        }
    }

    /// Moves the read position (within the capacity). Real-time safe; the output jumps, so
    /// the caller fades around it.
    pub fn set_delay(&mut self, delay: usize) {
        let cap = self.lines.first().map_or(0, |l| l.len());
        self.delay = delay.min(cap.saturating_sub(1));
    }

    /// The delay in samples.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Clears the history.
    pub fn reset(&mut self) {
        self.lines.iter_mut().for_each(|l| l.fill(0.0));
        self.write = 0;
    }

    /// Writes the first `n` samples (at most `max_block`) of each channel of `input` and fills
    /// the first `n` of `output` with the delayed samples.
    pub fn process(&mut self, input: &[Vec<f32>], output: &mut [Vec<f32>], n: usize) {
        let cap = self.lines.first().map_or(0, |l| l.len());
        debug_assert!(n <= cap - self.delay);
        for (line, (inp, out)) in self
            .lines
            .iter_mut()
            .zip(input.iter().zip(output.iter_mut()))
        {
            let mut w = self.write;
            let mut r = (self.write + cap - self.delay) % cap;
            for i in 0..n {
                line[w] = inp[i];
                out[i] = line[r];
                w += 1;
                if w == cap {
                    w = 0;
                }
                r += 1;
                if r == cap {
                    r = 0;
                }
            }
        }
        if cap > 0 {
            self.write = (self.write + n) % cap;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impulse_comes_out_delayed_for_any_block_split() {
        for delay in [0usize, 1, 7, 500] {
            for block in [1usize, 3, 64, 100] {
                let mut d = DryDelay::new(2, delay, 100);
                let total = delay + 300;
                let mut out_all = vec![Vec::new(); 2];
                let mut t = 0;
                while t < total {
                    let n = block.min(total - t);
                    let inp: Vec<Vec<f32>> = (0..2)
                        .map(|c| {
                            (t..t + n)
                                .map(|i| if i == 5 { 1.0 + c as f32 } else { 0.0 })
                                .collect()
                        })
                        .collect();
                    let mut out = vec![vec![0.0; n]; 2];
                    d.process(&inp, &mut out, n);
                    for c in 0..2 {
                        out_all[c].extend_from_slice(&out[c]);
                    }
                    t += n;
                }
                for (c, chan) in out_all.iter().enumerate() {
                    let peak = chan.iter().position(|&x| x != 0.0);
                    assert_eq!(peak, Some(5 + delay), "delay {delay} block {block}");
                    assert_eq!(chan[5 + delay], 1.0 + c as f32);
                }
            }
        }
    }
}
