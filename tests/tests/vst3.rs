//! The VST3 build, loaded through a minimal VST3 host as a DAW loads it: it reports the same
//! latency as the CLAP build and produces the same audio, bit for bit. Each offline render
//! follows a real-time activation, as in a DAW session, so a plugin that took the previous
//! `setupProcessing` call's mode (nice-plug 0.4.2's VST3 wrapper, patched in
//! `plugin/vendor/nice-plug`) would render in real time and fail here.

use refrain_tests::vst3_host::{default_vst3_path, Vst3Host};
use refrain_tests::{default_plugin_path, Host, Setup};

fn clap_bounce(rate: f64, block: u32, input: &[Vec<f32>]) -> (u32, Vec<Vec<f32>>) {
    let mut h = Host::load(&default_plugin_path()).unwrap();
    h.activate(Setup::offline(rate, block)).unwrap();
    let latency = h.latency();
    (latency, h.render(input, || block as usize, false).unwrap())
}

#[test]
fn the_vst3_build_matches_the_clap_build_bit_for_bit() {
    // The two builds are two libraries, each measuring the model's inference time on its own:
    // fix it so both plan the same latency. SAFETY: the only test in this process, before any
    // plugin thread starts.
    unsafe { std::env::set_var(refrain::chain::ENV_INFERENCE_MS, "2") };
    let mut v = Vst3Host::load(&default_vst3_path()).expect("load Refrain.vst3");
    for (rate, block) in [(48_000.0, 256u32), (44_100.0, 512), (96_000.0, 64)] {
        let input = refrain::synth::song(3, 2.0, rate as u32);
        // A moment of real-time playback first.
        let live_latency = v.activate(rate, block as i32, false).unwrap();
        let short: Vec<Vec<f32>> = input
            .iter()
            .map(|c| c[..4 * block as usize].to_vec())
            .collect();
        v.render(&short, block as usize, false).unwrap();
        let latency = v.activate(rate, block as i32, true).unwrap();
        assert_eq!(latency, live_latency);
        let out = v.render(&input, block as usize, true).unwrap();
        let (clap_latency, clap_out) = clap_bounce(rate, block, &input);
        assert_eq!(latency, clap_latency, "latency at {rate} Hz");
        assert!(latency > 0);
        assert!(out.iter().flatten().all(|x| x.is_finite()));
        assert!(
            out.iter().flatten().any(|&x| x.abs() > 0.01),
            "silent output at {rate} Hz"
        );
        for (c, (a, b)) in out.iter().zip(&clap_out).enumerate() {
            let first = a
                .iter()
                .zip(b)
                .position(|(x, y)| x.to_bits() != y.to_bits());
            assert_eq!(first, None, "channel {c} at {rate} Hz differs from CLAP");
        }
    }
}
