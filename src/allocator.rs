//! The process's allocator, mimalloc, as the server and the benchmarks
//! configure it (the binary and the benchmarks each declare it their
//! `#[global_allocator]`; the library allocates with whatever its user
//! declared, and these functions only configure mimalloc).

use std::os::raw::c_long;

/// mimalloc's option `purge_delay` (the 16th of its `mi_option_e`, which
/// the `libmimalloc-sys` crate does not name): how long memory freed stays
/// the process's before it is given back to the system.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long, in milliseconds, freed memory is kept for the allocations
/// that follow before it goes back to the system. mimalloc's default is
/// 1,000: the writer, the read side and the state persister free and
/// allocate again in bursts more than a second apart when commands come
/// in batches, and what was given back in between was faulted in and
/// zeroed again by the kernel: side by side, the realistic mix at batch 100
/// took 0.88x the CPU with 10 s, repayments at batch 1,000 about 0.95x
/// (BENCHMARKS.md).
pub const KEEP_FREED_MS: c_long = 10_000;

/// Keeps freed memory [`KEEP_FREED_MS`] before giving it back, unless the
/// operator chose otherwise (`MIMALLOC_PURGE_DELAY` in the environment,
/// which mimalloc reads and which then wins). Call first thing in `main`.
pub fn configure() {
    // SAFETY: sets one of mimalloc's options, a plain integer it reads when
    // it decides whether to give memory back.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, KEEP_FREED_MS) };
}

/// Gives the memory the allocator holds free back to the system at once
/// (whatever the delay): startup reads the state cache whole and builds
/// the state from it, and what it freed would otherwise stay resident
/// (at 10^6 entries, about 140 MiB more than the state holds).
pub fn release_freed() {
    // SAFETY: `mi_collect` only walks mimalloc's own heaps and returns their
    // free pages to the system; it touches no memory in use.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option set is the purge delay: it reads as mimalloc's documented
    /// default for it (1,000 ms) before, and as ours after. No other test
    /// in this binary configures the allocator.
    #[test]
    fn configure_sets_the_delay_before_freed_memory_goes_back() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            panic!("MIMALLOC_PURGE_DELAY is set: this test reads mimalloc's default");
        }
        // SAFETY: reads one of mimalloc's options.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(before, 1_000, "option {PURGE_DELAY} is not the purge delay");
        configure();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(after, KEEP_FREED_MS);
    }
}
