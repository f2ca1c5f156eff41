//! REFRAIN PATCH: the host's render mode for the block being processed.
//!
//! The wrappers set it on the audio thread right before every `Plugin::process()` call (CLAP
//! from the `render` extension's current mode, VST3 from `ProcessData::processMode`), so a
//! plugin can follow a switch between real-time playback and an offline bounce at the next
//! block, without a restart. Const-initialised thread-local: reading it never allocates.

use nice_plug_core::audio_setup::ProcessMode;
use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(0) };
}

fn encode(mode: ProcessMode) -> u8 {
    match mode {
        ProcessMode::Realtime => 1,
        ProcessMode::Buffered => 2,
        ProcessMode::Offline => 3,
    }
}

/// Sets the mode for the `process()` call that follows on this thread.
pub(crate) fn set(mode: ProcessMode) {
    CURRENT.with(|c| c.set(encode(mode)));
}

/// The render mode the host set for the block being processed on this thread; `None` outside
/// a wrapper's `process()` call (e.g. the standalone, which is always real time).
pub fn current() -> Option<ProcessMode> {
    CURRENT.with(|c| match c.get() {
        1 => Some(ProcessMode::Realtime),
        2 => Some(ProcessMode::Buffered),
        3 => Some(ProcessMode::Offline),
        _ => None,
    })
}
