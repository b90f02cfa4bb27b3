//! The daemon's allocator (mimalloc, declared in `main.rs`) and the memory it holds.
//!
//! A translation at 10k Ingresses allocates and frees tens of MiB within milliseconds, on
//! whichever blocking thread runs it. mimalloc keeps freed pages for reuse and returns them to
//! the OS only after a delay (1 s), and only when that thread calls into it again; an idle control loop therefore
//! stayed at the high-water mark of its last translations (RSS 662 MiB after 15 changed
//! files at 10k Ingresses, 191 MiB right after start). [`configure`] purges at once, and the
//! control loop calls [`release_free_memory`] on the thread that just freed a snapshot or
//! finished a translation. Without mimalloc as the global allocator (tests) both only touch
//! mimalloc's own empty heap.

use libmimalloc_sys as ffi;

/// `mi_option_purge_delay` of mimalloc v3's `mimalloc.h` (the crate names no constant for
/// it): milliseconds before freed memory is purged (decommitted); default 1000, 0 = at once.
const MI_OPTION_PURGE_DELAY: ffi::mi_option_t = 15;

/// Purge freed memory at once. Call first thing in `main`. mimalloc's own environment
/// variable (`MIMALLOC_PURGE_DELAY`) still wins, to compare.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores the value; options are plain integers.
        unsafe { ffi::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// Frees the calling thread's empty pages and purges free arena memory, returning it to the
/// OS. Takes well under a millisecond on an idle heap; for after large frees, not per request.
pub fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it works on the calling thread's heap.
    unsafe { ffi::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc v3's `purge_delay`: it reads that option's documented
    /// default (1000 ms) unless the environment set it.
    #[test]
    fn option_number_is_the_headers() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an option value.
            assert_eq!(unsafe { ffi::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
        }
        release_free_memory();
    }
}
