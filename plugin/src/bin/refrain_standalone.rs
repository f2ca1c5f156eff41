//! Refrain without a DAW: `refrain-standalone --backend jack|alsa|dummy` for performers.

fn main() {
    nice_plug::prelude::nice_export_standalone::<refrain::Refrain>();
}
