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
/// `mi_option_arena_eager_commit` of mimalloc v3's `mimalloc.h`: commit a whole arena when it
/// is reserved; default 2 (yes, on systems that overcommit, such as Linux).
const MI_OPTION_ARENA_EAGER_COMMIT: ffi::mi_option_t = 4;

/// Purge freed memory at once, and commit arena memory as it is used rather than a whole
/// arena up front. Call first thing in `main`. mimalloc's own environment variables
/// (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`) still win, to compare.
///
/// Eager commit cost ~16 MiB of RSS at 10k Ingresses (186 MiB ready against 169 MiB without,
/// deploy/docs/performance.md, session 6): the daemon's heap is mostly built once, and what an
/// eagerly committed arena held across translations stayed resident.
pub fn configure() {
    for (option, env, value) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mi_option_set only stores the value; options are plain integers.
            unsafe { ffi::mi_option_set(option, value) };
        }
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
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            // SAFETY: reads an option value.
            assert_eq!(
                unsafe { ffi::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) },
                2
            );
        }
        release_free_memory();
    }
}
