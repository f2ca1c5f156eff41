//! An audio file as a user drops it on the CLI or a licence issuer fingerprints it (WAV, AIFF,
//! FLAC, MP3, Ogg Vorbis, or anything else): [`read_all`] reads it whole or refuses it with a
//! message, within its memory cap; a short file streams through [`AudioReader`] in odd-sized
//! blocks to the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refrain::media::{read_all, AudioReader, MAX_CHANNELS, MAX_IN_MEMORY_SAMPLES};
use std::sync::Once;

/// Files decoding to at most this many frames are also streamed and compared.
const STREAM_CHECK_FRAMES: usize = 1 << 16;

/// libFuzzer's panic hook aborts on every panic, even one that is caught. Refrain runs the
/// decoders (symphonia) under `catch_unwind` on purpose (`media.rs`: a hostile header that makes
/// one panic is refused with a reason), so a panic raised inside symphonia is let through to
/// that `catch_unwind`; any other panic still aborts, and one that escapes `media.rs` aborts in
/// libfuzzer-sys's own wrapper.
fn let_decoder_panics_reach_refrains_catch_unwind() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_decoder = info
                .location()
                .is_some_and(|l| l.file().contains("/symphonia"));
            if !in_decoder {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_decoder_panics_reach_refrains_catch_unwind();
    let path = refrain_fuzz::scratch_file("media", data);
    let (audio, rate) = match read_all(&path) {
        Ok(read) => read,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!((1..=MAX_CHANNELS).contains(&audio.len()));
    assert!((1_000..=768_000).contains(&rate));
    let frames = audio[0].len();
    assert!(audio.iter().all(|c| c.len() == frames), "ragged channels");
    // The cap is checked after each 64 Ki-frame block.
    assert!(frames * audio.len() <= MAX_IN_MEMORY_SAMPLES + (1 << 16) * MAX_CHANNELS);
    if frames > STREAM_CHECK_FRAMES {
        return;
    }
    let mut reader = AudioReader::open(&path).expect("it opened a moment ago");
    let mut streamed = vec![Vec::new(); reader.channels()];
    let mut block = vec![Vec::new(); reader.channels()];
    while let Ok(n) = reader.read(&mut block, 777) {
        if n == 0 {
            break;
        }
        for (s, b) in streamed.iter_mut().zip(&block) {
            s.extend_from_slice(b);
        }
    }
    // NaN payloads compare unequal; compare bits.
    let bits = |a: &[Vec<f32>]| -> Vec<Vec<u32>> {
        a.iter()
            .map(|c| c.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&streamed), bits(&audio), "streaming differs");
});
