//! Notes into a standard MIDI file (format 0, one track, 120 BPM at 480 ticks per beat: 960
//! ticks per second, about 1 ms), written with `midly` and atomically. Without pitch bends every
//! note is on channel 1. With them, each note gets a channel of its own among the 15 melodic
//! ones (MPE-style, so one note's bend never bends another), a centred bend before it starts,
//! and a bend event wherever its pitch moves, at the synthesiser's default range of 2
//! semitones (4096 per semitone, as the reference writes them).

use super::{Note, NotesError};
use crate::files::AtomicFile;
use midly::num::{u14, u15, u24, u28, u4, u7};
use midly::{
    Format, Header, MetaMessage, MidiMessage, PitchBend, Smf, Timing, TrackEvent, TrackEventKind,
};
use std::path::Path;

/// Ticks per beat.
pub const TICKS_PER_BEAT: u16 = 480;
/// Microseconds per beat (120 BPM).
pub const TEMPO_US: u32 = 500_000;
/// Ticks per second at that tempo.
pub const TICKS_PER_SECOND: f64 = TICKS_PER_BEAT as f64 * 1e6 / TEMPO_US as f64;

/// One event of the track before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    // At one tick: offs first (a repeated key is released before it sounds again), then
    // bends, then ons.
    Off { channel: u8, key: u8 },
    Bend { channel: u8, value: u16 },
    On { channel: u8, key: u8, vel: u8 },
}

/// A bend in thirds of a semitone as a 14-bit MIDI value (8,192 = none; a synthesiser's
/// default range of 2 semitones). The plugin's note output sends the same.
pub fn bend_value(thirds: i8) -> u16 {
    (8192 + (thirds as i32 * 4096) / 3).clamp(0, 16_383) as u16
}

/// The file's bytes for `notes`.
pub fn to_bytes(notes: &[Note]) -> Vec<u8> {
    let ticks = |s: f64| (s.max(0.0) * TICKS_PER_SECOND).round() as u64;
    let with_bends = notes.iter().any(|n| !n.bends.is_empty());
    // Channels 1-16 but 10 (drums), each note on the one free longest when it starts.
    let melodic: Vec<u8> = (0..16u8).filter(|&c| c != 9).collect();
    let mut free_at = vec![0u64; melodic.len()];
    let mut order: Vec<usize> = (0..notes.len()).collect();
    order.sort_by(|&a, &b| notes[a].start.total_cmp(&notes[b].start));
    let mut events: Vec<(u64, Event)> = Vec::with_capacity(notes.len() * 2);
    for i in order {
        let n = &notes[i];
        let on = ticks(n.start);
        let off = ticks(n.end).max(on + 1);
        let key = n.key.min(127);
        let channel = if with_bends {
            let (slot, _) = free_at
                .iter()
                .enumerate()
                .min_by_key(|&(_, &t)| t)
                .expect("15 channels");
            free_at[slot] = off;
            melodic[slot]
        } else {
            0
        };
        if with_bends {
            // The note starts at its first frame's bend (centred without bends), so one tick
            // never holds two bends of a channel.
            let first = n.bends.first().map_or(0, |b| b.1);
            events.push((
                on,
                Event::Bend {
                    channel,
                    value: bend_value(first),
                },
            ));
            let mut last = first;
            for &(t, b) in n.bends.iter().skip(1) {
                if b != last && ticks(t) > on && ticks(t) < off {
                    events.push((
                        ticks(t),
                        Event::Bend {
                            channel,
                            value: bend_value(b),
                        },
                    ));
                    last = b;
                }
            }
        }
        events.push((
            on,
            Event::On {
                channel,
                key,
                vel: n.velocity.clamp(1, 127),
            },
        ));
        events.push((off, Event::Off { channel, key }));
    }
    events.sort();
    let mut track = vec![TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(TEMPO_US))),
    }];
    let mut last = 0u64;
    for (tick, event) in events {
        let delta = (tick - last).min(u28::max_value().as_int() as u64) as u32;
        last = tick;
        let (channel, message) = match event {
            Event::Off { channel, key } => (
                channel,
                MidiMessage::NoteOff {
                    key: u7::new(key),
                    vel: u7::new(0),
                },
            ),
            Event::On { channel, key, vel } => (
                channel,
                MidiMessage::NoteOn {
                    key: u7::new(key),
                    vel: u7::new(vel),
                },
            ),
            Event::Bend { channel, value } => (
                channel,
                MidiMessage::PitchBend {
                    bend: PitchBend(u14::new(value)),
                },
            ),
        };
        track.push(TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi {
                channel: u4::new(channel),
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
    // Sounding notes: (channel, key, on tick, velocity, bends).
    type Sounding = (u8, u8, u64, u8, Vec<(f64, i8)>);
    let mut open: Vec<Sounding> = Vec::new();
    // Each channel's bend, in thirds of a semitone, and whether one was ever set.
    let mut bend = [None::<i8>; 16];
    for track in &smf.tracks {
        let mut tick = 0u64;
        for e in track {
            tick += e.delta.as_int() as u64;
            let TrackEventKind::Midi { channel, message } = e.kind else {
                continue;
            };
            let ch = channel.as_int();
            match message {
                MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                    let at = tick as f64 / ticks_per_second;
                    let bends = bend[ch as usize].map(|b| vec![(at, b)]).unwrap_or_default();
                    open.push((ch, key.as_int(), tick, vel.as_int(), bends))
                }
                MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                    if let Some(i) = open.iter().position(|o| o.0 == ch && o.1 == key.as_int()) {
                        let (_, k, on, vel, bends) = open.remove(i);
                        out.push(Note {
                            start: on as f64 / ticks_per_second,
                            end: tick as f64 / ticks_per_second,
                            key: k,
                            velocity: vel,
                            bends,
                        });
                    }
                }
                MidiMessage::PitchBend { bend: b } => {
                    let thirds =
                        ((((b.0.as_int() as i32 - 8192) * 3) as f64) / 4096.0).round() as i8;
                    bend[ch as usize] = Some(thirds);
                    for o in open.iter_mut().filter(|o| o.0 == ch) {
                        o.4.push((tick as f64 / ticks_per_second, thirds));
                    }
                }
                _ => {}
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
    fn bends_survive_a_round_trip_each_note_on_its_own_channel() {
        let glide: Vec<(f64, i8)> = (0..30)
            .map(|i| (1.0 + i as f64 * 0.0116, (i / 10) as i8))
            .collect();
        let notes = vec![
            Note {
                start: 1.0,
                end: 1.35,
                key: 60,
                velocity: 90,
                bends: glide.clone(),
            },
            Note {
                start: 1.1,
                end: 1.3,
                key: 64,
                velocity: 80,
                bends: vec![(1.1, 0), (1.2, -2)],
            },
        ];
        let back = from_bytes(&to_bytes(&notes)).unwrap();
        assert_eq!(back.len(), 2);
        // The first note's bends: centred, then up a third and two thirds of a semitone.
        let steps: Vec<i8> = back[0].bends.iter().map(|b| b.1).collect();
        assert_eq!(steps, [0, 1, 2]);
        // The second note's bend does not reach the first (another channel).
        assert_eq!(
            back[1].bends.iter().map(|b| b.1).collect::<Vec<_>>(),
            [0, -2]
        );
    }

    #[test]
    fn notes_survive_a_round_trip_through_a_midi_file_to_the_millisecond() {
        let notes = vec![
            Note {
                start: 0.5,
                end: 0.8,
                key: 60,
                velocity: 90,
                bends: Vec::new(),
            },
            Note {
                start: 0.8,
                end: 1.1,
                key: 60,
                velocity: 70,
                bends: Vec::new(),
            },
            Note {
                start: 1.2,
                end: 1.9,
                key: 64,
                velocity: 64,
                bends: Vec::new(),
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
