//! Real-time priority for the worker, asked for the way audio software does it, and denormal
//! flushing.
//!
//! Only a Live-mode worker in real time asks, and only for one step below the host's own audio
//! thread, read at the host's first callback: a worker above the audio thread would starve it,
//! and a real-time worker beside a normal-priority host thread would starve the host. The
//! process-wide `RLIMIT_RTTIME` is never changed (the DAW's own audio threads would get
//! `SIGXCPU`), which is why `audio_thread_priority`'s Linux path, which sets it, is not used.
//! rtkit is not asked either: it requires that limit, and no D-Bus client is built in; a
//! refusal says how to grant real-time scheduling instead.

use std::fmt;

/// Scheduling policies as [`current`] encodes them.
const POLICY_FIFO: u32 = 1;
const POLICY_RR: u32 = 2;

/// The calling thread's scheduling, compact: 0 when it is not real-time, else `policy << 8 |
/// priority`. Real-time safe (one system call, no allocation).
pub fn current() -> u32 {
    #[cfg(unix)]
    {
        let mut policy: libc::c_int = 0;
        let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
        // SAFETY: both out-pointers are valid for the call.
        let rc =
            unsafe { libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param) };
        if rc != 0 {
            return 0;
        }
        let p = match policy {
            libc::SCHED_FIFO => POLICY_FIFO,
            libc::SCHED_RR => POLICY_RR,
            _ => return 0,
        };
        (p << 8) | (param.sched_priority.clamp(0, 255) as u32)
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// What asking for real-time priority came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The worker runs `SCHED_FIFO` at this priority.
    Raised { priority: i32, host: i32 },
    /// The worker stays at normal priority on purpose; the reason says why.
    Normal(String),
    /// The system refused; the reason says what to do.
    Refused(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Raised { priority, host } => write!(
                f,
                "real-time priority {priority} (SCHED_FIFO, one below the host's audio thread at {host})"
            ),
            Outcome::Normal(why) => write!(f, "normal priority: {why}"),
            Outcome::Refused(why) => write!(f, "real-time priority refused: {why}"),
        }
    }
}

/// Raises the calling (worker) thread to `SCHED_FIFO` one step below the host audio thread
/// whose scheduling [`current`] returned as `host`.
pub fn raise_below(host: u32) -> Outcome {
    if host == 0 {
        return Outcome::Normal(
            "the host's audio thread is not real-time, so the worker must not be either".into(),
        );
    }
    let host_priority = (host & 0xff) as i32;
    let priority = host_priority - 1;
    if priority < 1 {
        return Outcome::Normal(
            "the host's audio thread runs at the lowest real-time priority".into(),
        );
    }
    #[cfg(unix)]
    {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: a valid sched_param for the calling thread.
        let rc =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        match rc {
            0 => Outcome::Raised {
                priority,
                host: host_priority,
            },
            libc::EPERM => Outcome::Refused(format!(
                "this user may not use real-time scheduling (EPERM for priority {priority}); \
                 add the user to the `audio` group or raise `rtprio` in /etc/security/limits.conf"
            )),
            e => Outcome::Refused(format!(
                "pthread_setschedparam failed: {}",
                std::io::Error::from_raw_os_error(e)
            )),
        }
    }
    #[cfg(not(unix))]
    {
        Outcome::Normal("real-time priority is not implemented on this platform yet".into())
    }
}

/// Makes denormal floats flush to zero on the calling thread (a decaying filter state would
/// otherwise cost hundreds of cycles per sample).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        // FTZ (bit 15) and DAZ (bit 6) in MXCSR.
        #[allow(deprecated)]
        unsafe {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            _mm_setcsr(_mm_getcsr() | 0x8040);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FZ (bit 24) in FPCR.
        unsafe {
            let mut fpcr: u64;
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr);
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_host_thread_keeps_the_worker_normal() {
        assert!(matches!(raise_below(0), Outcome::Normal(_)));
        assert!(matches!(
            raise_below(POLICY_FIFO << 8 | 1),
            Outcome::Normal(_)
        ));
    }

    #[test]
    fn a_real_time_host_thread_gets_a_worker_one_below_or_a_clear_refusal() {
        let outcome = std::thread::spawn(|| {
            let o = raise_below(POLICY_FIFO << 8 | 40);
            (o, current())
        })
        .join()
        .unwrap();
        match outcome {
            (
                Outcome::Raised {
                    priority: 39,
                    host: 40,
                },
                now,
            ) => assert_eq!(now, POLICY_FIFO << 8 | 39),
            (Outcome::Refused(why), now) => {
                assert!(why.contains("audio"), "{why}");
                assert_eq!(now, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn denormals_flush_to_zero_after_the_call() {
        let r = std::thread::spawn(|| {
            flush_denormals();
            let tiny = std::hint::black_box(f32::MIN_POSITIVE);
            std::hint::black_box(tiny) / std::hint::black_box(4.0f32)
        })
        .join()
        .unwrap();
        assert_eq!(r, 0.0);
    }
}
