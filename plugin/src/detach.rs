//! Leaving a stuck thread behind without endangering the host.
//!
//! Deactivation, a model change and closing never wait on a thread stuck in a model (a load or
//! a run that does not return): they wait a bounded time, then leave the thread to finish on
//! its own. A thread left behind still runs this library's code when it finishes, so the
//! library must outlive it: a host may unload the plugin's library once its last instance is
//! gone, and a thread returning into unloaded code would crash the host. Before any thread is
//! left behind (and before Refrain's long-lived watchdog thread starts), the library is pinned
//! in memory for the life of the process ([`pin_library`]): `RTLD_NODELETE` on Linux and
//! macOS, `GET_MODULE_HANDLE_EX_FLAG_PIN` on Windows. Nothing here runs on the audio thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long closing waits for a thread before leaving it behind. Closing waits at most twice
/// this (the worker, then the loader), so a project closes within a second.
pub const JOIN_WAIT: Duration = Duration::from_millis(400);

/// Keeps this library loaded until the process ends. Idempotent; true if the library is (now)
/// pinned.
pub fn pin_library() -> bool {
    static PINNED: AtomicBool = AtomicBool::new(false);
    if PINNED.load(Ordering::Acquire) {
        return true;
    }
    let ok = pin_this_module();
    if ok {
        PINNED.store(true, Ordering::Release);
    }
    ok
}

#[cfg(unix)]
fn pin_this_module() -> bool {
    // SAFETY: dladdr reads the loader's tables for an address in this module; dlopen with
    // RTLD_NOLOAD only takes another reference to a module that is already loaded (the handle
    // is deliberately never closed).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let here = pin_this_module as *const libc::c_void;
        if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        let handle = libc::dlopen(
            info.dli_fname,
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        );
        if !handle.is_null() {
            return true;
        }
        // Linked into the executable itself (the CLI, tests): never unloaded anyway.
        let path = std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy();
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        match std::env::current_exe() {
            Ok(exe) => {
                canonical(std::path::Path::new(&*path)).is_some()
                    && canonical(std::path::Path::new(&*path)) == canonical(&exe)
            }
            Err(_) => false,
        }
    }
}

#[cfg(windows)]
fn pin_this_module() -> bool {
    const FROM_ADDRESS: u32 = 0x4;
    const PIN: u32 = 0x1;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleExW(
            flags: u32,
            name: *const u16,
            module: *mut *mut core::ffi::c_void,
        ) -> i32;
    }
    let mut module = std::ptr::null_mut();
    // SAFETY: FROM_ADDRESS makes `name` an address inside this module; PIN keeps the module
    // loaded until the process ends.
    unsafe {
        GetModuleHandleExW(
            FROM_ADDRESS | PIN,
            pin_this_module as *const u16,
            &mut module,
        ) != 0
    }
}

#[cfg(not(any(unix, windows)))]
fn pin_this_module() -> bool {
    false
}

/// Waits up to [`JOIN_WAIT`] for `done` to disconnect (the thread's end), then joins `handle`;
/// past the wait, pins the library and leaves the thread to finish on its own. Returns whether
/// the thread was joined.
pub fn join_or_leave<T>(
    handle: Option<JoinHandle<T>>,
    done: &crossbeam_channel::Receiver<()>,
) -> bool {
    match done.recv_timeout(JOIN_WAIT) {
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            if let Some(h) = handle {
                let _ = h.join();
            }
            true
        }
        _ => {
            pin_library();
            drop(handle);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_can_be_pinned() {
        assert!(pin_library());
        assert!(pin_library());
    }

    #[test]
    fn a_thread_that_ends_in_time_is_joined_and_a_stuck_one_is_left_within_the_wait() {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let h = std::thread::spawn(move || drop(tx));
        assert!(join_or_leave(Some(h), &rx));

        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            drop(tx);
        });
        let t = std::time::Instant::now();
        assert!(!join_or_leave(Some(h), &rx));
        assert!(t.elapsed() < JOIN_WAIT + Duration::from_millis(200));
    }
}
