//! Smoke test of `refrain-standalone` (the plugin without a DAW, for the stage): started
//! headless on nice-plug's dummy audio backend, it must activate the engine, run for a while
//! without dying, and stop cleanly on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[cfg(unix)]
#[test]
fn the_standalone_runs_headless_on_the_dummy_backend_and_stops_on_sigint() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_refrain-standalone"))
        .args([
            "--backend",
            "dummy",
            "--sample-rate",
            "48000",
            "--period-size",
            "256",
        ])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start refrain-standalone");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // The engine reports its latency plan on activation.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    let activated = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains("latency") && line.contains("samples");
                log.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "refrain-standalone exited early ({status}):\n{}",
                log.join("\n")
            );
        }
    };
    assert!(activated, "no activation within 60 s:\n{}", log.join("\n"));

    // Two seconds of audio callbacks, then a clean stop.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "refrain-standalone died while running:\n{}",
        log.join("\n")
    );
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("refrain-standalone did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "exit status {status}:\n{}\n{}",
        log.join("\n"),
        rest.join("\n")
    );
    let all = format!("{}\n{}", log.join("\n"), rest.join("\n"));
    assert!(!all.contains("panicked"), "{all}");
}
