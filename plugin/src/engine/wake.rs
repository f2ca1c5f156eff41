//! Waking the worker from the audio thread without a lock.
//!
//! On Linux an `eventfd`: the audio thread writes a counter increment (one non-blocking system
//! call, no lock, no allocation), the worker blocks in `poll` until it is set or a timeout
//! passes. Elsewhere the worker parks and the audio thread unparks it (also lock-free).

use std::time::Duration;

/// A wake-up signal from one or more notifiers to one waiting thread.
pub struct Wake {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    #[cfg(not(target_os = "linux"))]
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Wake {
    /// A new signal. Fails only if the system is out of file descriptors.
    pub fn new() -> std::io::Result<Wake> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: eventfd returns a fresh descriptor we own, or -1.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Wake {
                fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Wake {
            thread: std::sync::OnceLock::new(),
        })
    }

    /// Binds the signal to the calling thread (the one that will wait); a no-op on Linux.
    pub fn bind_waiter(&self) {
        #[cfg(not(target_os = "linux"))]
        let _ = self.thread.set(std::thread::current());
    }

    /// Wakes the waiter. Real-time safe: one non-blocking system call, no lock.
    pub fn notify(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64; EAGAIN (counter saturated) is harmless.
            unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Blocks until notified or until `timeout` passes, and clears the signal.
    pub fn wait(&self, timeout: Duration) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd; then an 8-byte read into a u64 (EAGAIN if not set).
            unsafe {
                libc::poll(&mut pfd, 1, ms);
                let mut v: u64 = 0;
                libc::read(
                    self.fd.as_raw_fd(),
                    &mut v as *mut u64 as *mut libc::c_void,
                    8,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::park_timeout(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_notify_ends_the_wait_and_a_timeout_ends_it_too() {
        let wake = Arc::new(Wake::new().unwrap());
        wake.bind_waiter();
        let t = Instant::now();
        wake.wait(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(25), "timed out early");
        let other = wake.clone();
        let waiter = std::thread::spawn(move || {
            other.bind_waiter();
            let t = Instant::now();
            other.wait(Duration::from_secs(10));
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        wake.notify();
        assert!(waiter.join().unwrap() < Duration::from_secs(5));
    }
}
