//! Panic reports. A panic on R's thread is caught and reaches R as an
//! error carrying its message, so printing it too would only clutter the
//! console; a panic anywhere else (an I/O thread, a reaper) has no R
//! caller to tell, so it is reported as Rust normally does.

use std::thread::{self, ThreadId};

/// From now on, keep panics on the calling thread quiet and pass those of
/// every other thread to the hook that was installed before.
pub fn quiet_on_this_thread() {
    let quiet: ThreadId = thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if thread::current().id() != quiet {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn quiet_here_reported_elsewhere() {
        let reported = Arc::new(AtomicUsize::new(0));
        let seen = reported.clone();
        let original = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        quiet_on_this_thread();
        let here = std::panic::catch_unwind(|| panic!("on the quiet thread"));
        let quiet_count = reported.load(Ordering::SeqCst);
        let there = thread::spawn(|| panic!("on another thread")).join();
        let other_count = reported.load(Ordering::SeqCst);
        std::panic::set_hook(original);
        assert!(here.is_err() && there.is_err());
        assert_eq!(quiet_count, 0, "a panic on the quiet thread was reported");
        assert!(
            other_count >= 1,
            "a panic on another thread went unreported"
        );
    }
}
