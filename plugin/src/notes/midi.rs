//! Notes into a standard MIDI file (format 0, one track, channel 1, 120 BPM at 480 ticks per
//! beat: 960 ticks per second, about 1 ms), written with `midly` and atomically.

use super::{Note, NotesError};
use crate::files::AtomicFile;
use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use std::path::Path;

/// Ticks per beat.
pub const TICKS_PER_BEAT: u16 = 480;
/// Microseconds per beat (120 BPM).
pub const TEMPO_US: u32 = 500_000;
/// Ticks per second at that tempo.
pub const TICKS_PER_SECOND: f64 = TICKS_PER_BEAT as f64 * 1e6 / TEMPO_US as f64;

/// The file's bytes for `notes`.
pub fn to_bytes(notes: &[Note]) -> Vec<u8> {
    // (tick, off before on at the same tick, key, velocity)
    let mut events: Vec<(u64, bool, u8, u8)> = Vec::with_capacity(notes.len() * 2);
    for n in notes {
        let on = (n.start.max(0.0) * TICKS_PER_SECOND).round() as u64;
        let off = ((n.end.max(0.0) * TICKS_PER_SECOND).round() as u64).max(on + 1);
        events.push((on, false, n.key, n.velocity.clamp(1, 127)));
        events.push((off, true, n.key, 0));
    }
    // Offs first at a tick, so a repeated key is released before it sounds again.
    events.sort_by_key(|&(tick, is_off, key, _)| (tick, !is_off, key));
    let mut track = vec![TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(TEMPO_US))),
    }];
    let mut last = 0u64;
    for (tick, is_off, key, vel) in events {
        let delta = (tick - last).min(u28::max_value().as_int() as u64) as u32;
        last = tick;
        let message = if is_off {
            MidiMessage::NoteOff {
                key: u7::new(key.min(127)),
                vel: u7::new(0),
            }
        } else {
            MidiMessage::NoteOn {
                key: u7::new(key.min(127)),
                vel: u7::new(vel),
            }
        };
        track.push(TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi {
                channel: u4::new(0),
                message,
            },
        });
    }
    track.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(
            Format::SingleTrack,
            Timing::Metrical(u15::new(TICKS_PER_BEAT)),
        ),
        tracks: vec![track],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .expect("writing to memory does not fail");
    bytes
}

/// Writes `notes` to `path` atomically: the file appears whole or not at all.
pub fn write(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    let err = |reason: String| NotesError::Write {
        path: path.display().to_string(),
        reason,
    };
    let mut file = AtomicFile::create(path).map_err(|e| err(e.to_string()))?;
    std::io::Write::write_all(&mut file, &to_bytes(notes)).map_err(|e| err(e.to_string()))?;
    file.commit().map_err(|e| err(e.to_string()))
}

/// Reads the notes back from a file's bytes (the tests use it; so can a user's script).
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<Note>, String> {
    let smf = Smf::parse(bytes).map_err(|e| e.to_string())?;
    let ticks_per_second = match smf.header.timing {
        Timing::Metrical(t) => t.as_int() as f64 * 1e6 / TEMPO_US as f64,
        Timing::Timecode(..) => return Err("a timecode-timed file".into()),
    };
    let mut out = Vec::new();
    let mut open: Vec<(u8, u64, u8)> = Vec::new();
    for track in &smf.tracks {
        let mut tick = 0u64;
        for e in track {
            tick += e.delta.as_int() as u64;
            if let TrackEventKind::Midi { message, .. } = e.kind {
                match message {
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        open.push((key.as_int(), tick, vel.as_int()))
                    }
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        if let Some(i) = open.iter().position(|o| o.0 == key.as_int()) {
                            let (k, on, vel) = open.remove(i);
                            out.push(Note {
                                start: on as f64 / ticks_per_second,
                                end: tick as f64 / ticks_per_second,
                                key: k,
                                velocity: vel,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.key.cmp(&b.key)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_survive_a_round_trip_through_a_midi_file_to_the_millisecond() {
        let notes = vec![
            Note {
                start: 0.5,
                end: 0.8,
                key: 60,
                velocity: 90,
            },
            Note {
                start: 0.8,
                end: 1.1,
                key: 60,
                velocity: 70,
            },
            Note {
                start: 1.2,
                end: 1.9,
                key: 64,
                velocity: 64,
            },
        ];
        let back = from_bytes(&to_bytes(&notes)).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in notes.iter().zip(&back) {
            assert_eq!((a.key, a.velocity), (b.key, b.velocity));
            assert!((a.start - b.start).abs() < 0.001 && (a.end - b.end).abs() < 0.001);
        }
    }
}
