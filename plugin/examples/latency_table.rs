//! The latency table in README: the built-in model's reported latency and floor in Live and
//! Studio mode at 44.1/48/96 kHz and 64/128/512/1024-sample blocks, with the inference time
//! measured on this machine (once, then kept, as the plugin keeps it).
//!
//!     cargo run --release -p refrain --example latency_table

use refrain::chain::Chain;
use refrain::engine::latency::Mode;
use refrain::engine::EngineConfig;

fn main() {
    println!("| mode | rate | block | latency | floor | latency - floor |");
    println!("|---|---|---|---|---|---|");
    let mut measured = None;
    for mode in [Mode::Live, Mode::Studio] {
        for rate in [44_100u32, 48_000, 96_000] {
            for block in [64usize, 128, 512, 1024] {
                let engine = Chain::built_in(
                    EngineConfig {
                        sample_rate: rate as f32,
                        max_block: block,
                        channels: 2,
                    },
                    mode,
                )
                .expect("engine");
                let p = *engine.plan();
                measured = measured.or(engine.status().timing());
                let ms = |n: usize| n as f64 * 1000.0 / rate as f64;
                println!(
                    "| {} | {:.1} kHz | {block} | {} ({:.2} ms) | {} ({:.2} ms) | {} |",
                    if mode == Mode::Live { "Live" } else { "Studio" },
                    rate as f64 / 1000.0,
                    p.total(),
                    ms(p.total()),
                    p.floor(),
                    ms(p.floor()),
                    p.total() - p.floor(),
                );
            }
        }
    }
    if let Some(t) = measured {
        println!(
            "\nbuilt-in model, one hop (10 ms of audio): {} warm passes, median {:.3} ms, slowest {:.3} ms",
            t.passes,
            t.median_ns as f64 / 1e6,
            t.max_ns as f64 / 1e6
        );
    }
    let e = Chain::built_in(
        EngineConfig {
            sample_rate: 48_000.0,
            max_block: 128,
            channels: 2,
        },
        Mode::Live,
    )
    .expect("engine");
    println!("{}", e.plan().describe());
}
