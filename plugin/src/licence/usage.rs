//! Licensed use, counted as the usage ledger will record it (shared/DECISIONS.md §6; the
//! ledger itself, its chains per issuer and the royalty reports are a later issue). Each use
//! carries the terms it ran under, `commercial` among them, so every record says whether the
//! use was commercial:
//! - a use is counted in integer milliseconds of non-silent input while the AI path runs (a
//!   project left open overnight counts nothing), carrying the sub-millisecond remainder;
//! - one use is one contiguous run under one licence in real time (it ends when the AI path
//!   stops, the host resets at a stop or a jump, a bounce starts, or the chain goes), or one
//!   bounce.
//!
//! The audio thread counts ([`UsageMeter::count`], real-time safe: integers and a lock-free
//! ring of finished uses); the uses are read off it elsewhere ([`UsageMeter::finish`]) and,
//! until the ledger lands, written to the log when the chain goes.

use super::claims::{Claims, Use};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// The terms a use ran under: what the ledger needs beside the milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTerms {
    /// The issuer (the certified party) and the licence id.
    pub issuer: String,
    pub licence: String,
    pub isrc: String,
    /// The covered work, for cover licences.
    pub iswc: Option<String>,
    /// The model's identity (one hash over its manifest and files).
    pub model: String,
    /// The licence allows commercial use: recorded with each use.
    pub commercial: bool,
}

impl UsageTerms {
    /// The terms of `claims` for the model whose identity is `model`.
    pub fn of(claims: &Claims, model: &str) -> UsageTerms {
        UsageTerms {
            issuer: claims.iss.clone(),
            licence: claims.jti.clone(),
            isrc: claims.track.isrc.clone(),
            iswc: claims.track.iswc.clone(),
            model: model.to_owned(),
            commercial: claims.uses.contains(&Use::Commercial),
        }
    }
}

/// How the use ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseKind {
    /// Playback or a live input, in real time.
    Realtime,
    /// A bounce (the host rendering offline) or `refrain render`.
    Bounce,
}

/// One finished use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub kind: UseKind,
    /// Milliseconds of non-silent input the AI path ran on.
    pub ms: u64,
}

impl Usage {
    /// One line for the log: `Refrain usage: 12.345 s in real time under licence L of
    /// Northern Records (ISRC GBAYE2600001, commercial)`.
    pub fn describe(&self, terms: &UsageTerms) -> String {
        let kind = match self.kind {
            UseKind::Realtime => "in real time",
            UseKind::Bounce => "in a bounce",
        };
        let work = terms
            .iswc
            .as_deref()
            .map(|w| format!(", ISWC {w}"))
            .unwrap_or_default();
        let commercial = if terms.commercial {
            "commercial"
        } else {
            "not commercial"
        };
        format!(
            "Refrain usage: {}.{:03} s {kind} under licence {} of {} (ISRC {}{work}, model {}, {commercial})",
            self.ms / 1000,
            self.ms % 1000,
            terms.licence,
            terms.issuer,
            terms.isrc,
            terms.model,
        )
    }
}

/// Finished uses the ring holds (a reader takes them at every chain change); past that, each
/// further use's milliseconds are added to one merged use of its kind, so none is lost.
const FINISHED: usize = 1024;

/// The audio thread's count of the running use, and the uses it finished.
pub struct UsageMeter {
    rate: u64,
    kind: UseKind,
    /// The running use's whole milliseconds, and its remainder in (frames x 1000) units.
    ms: u64,
    remainder: u64,
    finished: HeapProd<Usage>,
    taken: HeapCons<Usage>,
    /// With the ring full: the milliseconds of the uses merged, per kind (real time, bounce),
    /// and how many were merged.
    merged_ms: [u64; 2],
    merged: u64,
}

impl UsageMeter {
    /// A meter for audio at `sample_rate`.
    pub fn new(sample_rate: u32) -> UsageMeter {
        let (finished, taken) = HeapRb::new(FINISHED).split();
        UsageMeter {
            rate: u64::from(sample_rate.max(1)),
            kind: UseKind::Realtime,
            ms: 0,
            remainder: 0,
            finished,
            taken,
            merged_ms: [0, 0],
            merged: 0,
        }
    }

    /// Counts one block of `frames`: its input was `silent` or not, the AI path `ran` or not,
    /// and the host was bouncing (`offline`) or not. A change of kind, or the AI path
    /// stopping, finishes the running use. Real-time safe.
    pub fn count(&mut self, frames: usize, silent: bool, ran: bool, offline: bool) {
        let kind = if offline {
            UseKind::Bounce
        } else {
            UseKind::Realtime
        };
        if kind != self.kind || !ran {
            self.end();
            self.kind = kind;
        }
        if ran && !silent {
            let units = self.remainder + frames as u64 * 1000;
            self.ms += units / self.rate;
            self.remainder = units % self.rate;
        }
    }

    /// Finishes the running use (if it counted anything): the host's reset (a stop, a jump, the
    /// start of a bounce) ends a run, so two bounces in a row are two uses. Real-time safe.
    pub fn end(&mut self) {
        if self.ms > 0 {
            let usage = Usage {
                kind: self.kind,
                ms: self.ms,
            };
            if let Err(usage) = self.finished.try_push(usage) {
                let k = usize::from(usage.kind == UseKind::Bounce);
                self.merged_ms[k] = self.merged_ms[k].saturating_add(usage.ms);
                self.merged += 1;
            }
        }
        self.ms = 0;
        self.remainder = 0;
    }

    /// Finishes the running use and takes every finished one, oldest first, then the merged
    /// ones (one per kind) when the ring filled (not on the audio thread: it allocates).
    pub fn finish(&mut self) -> Vec<Usage> {
        self.end();
        let mut out = Vec::new();
        while let Some(u) = self.taken.try_pop() {
            out.push(u);
        }
        for (kind, ms) in [UseKind::Realtime, UseKind::Bounce]
            .into_iter()
            .zip(std::mem::take(&mut self.merged_ms))
        {
            if ms > 0 {
                out.push(Usage { kind, ms });
            }
        }
        self.merged = 0;
        out
    }

    /// Uses merged into one because the ring was full when they finished (since the last
    /// [`Self::finish`]).
    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_silent_input_is_counted_in_whole_milliseconds_with_the_remainder_carried() {
        // 44.1 kHz in blocks of 441 frames: 10 ms each; in blocks of 17 frames the remainder
        // carries, so 44,100 frames are exactly one second however they come.
        let mut m = UsageMeter::new(44_100);
        for _ in 0..100 {
            m.count(441, false, true, false);
        }
        let mut left = 44_100;
        while left > 0 {
            let n = left.min(17);
            m.count(n, false, true, false);
            left -= n;
        }
        // Silence and a dry path count nothing.
        m.count(44_100, true, true, false);
        assert_eq!(
            m.finish(),
            vec![Usage {
                kind: UseKind::Realtime,
                ms: 2_000
            }]
        );
        assert_eq!(m.finish(), vec![], "taken once");
    }

    #[test]
    fn a_bounce_and_each_run_of_the_ai_path_are_uses_of_their_own() {
        let mut m = UsageMeter::new(48_000);
        m.count(48_000, false, true, false);
        // The AI path stops (a lapse, a mismatch): the run ends.
        m.count(4_800, false, false, false);
        m.count(24_000, false, true, false);
        // A bounce.
        m.count(96_000, false, true, true);
        m.count(480, false, true, false);
        assert_eq!(
            m.finish(),
            vec![
                Usage {
                    kind: UseKind::Realtime,
                    ms: 1_000
                },
                Usage {
                    kind: UseKind::Realtime,
                    ms: 500
                },
                Usage {
                    kind: UseKind::Bounce,
                    ms: 2_000
                },
                Usage {
                    kind: UseKind::Realtime,
                    ms: 10
                },
            ]
        );
        assert_eq!(m.merged(), 0);
        // Two bounces back to back, the host's reset between them: two uses.
        m.count(48_000, false, true, true);
        m.end();
        m.count(24_000, false, true, true);
        let uses: Vec<u64> = m.finish().iter().map(|u| u.ms).collect();
        assert_eq!(uses, vec![1_000, 500]);
    }

    /// A user toggling the AI path every block (bypass automation) makes a use per block: past
    /// the ring's room they are merged, and not a millisecond is lost.
    #[test]
    fn uses_past_the_rings_room_are_merged_not_lost() {
        let mut m = UsageMeter::new(48_000);
        let n = FINISHED + 500;
        for _ in 0..n {
            m.count(480, false, true, false);
            m.count(480, false, false, false);
        }
        assert_eq!(m.merged(), 500);
        let uses = m.finish();
        assert_eq!(uses.len(), FINISHED + 1);
        assert_eq!(uses.iter().map(|u| u.ms).sum::<u64>(), 10 * n as u64);
        assert_eq!(uses.last().unwrap().ms, 10 * 500);
    }

    #[test]
    fn each_use_says_whether_it_was_commercial() {
        let mut c = Claims::example(
            "Northern Records",
            "L-1",
            super::super::claims::ModelGrant {
                id: "m".into(),
                sha256: "0".repeat(64),
            },
            1_790_000_000,
            1_800_000_000,
        );
        let terms = UsageTerms::of(&c, "abc");
        assert!(!terms.commercial);
        let u = Usage {
            kind: UseKind::Bounce,
            ms: 12_345,
        };
        assert!(u.describe(&terms).contains("12.345 s in a bounce"));
        assert!(u.describe(&terms).contains("not commercial"));
        c.uses.push(Use::Commercial);
        let terms = UsageTerms::of(&c, "abc");
        assert!(terms.commercial);
        assert!(
            u.describe(&terms).ends_with(", commercial)"),
            "{}",
            u.describe(&terms)
        );
    }
}
