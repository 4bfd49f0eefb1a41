//! The process's allocator, mimalloc, as the server and the benchmarks
//! configure it (the binary and the benchmarks each declare it their
//! `#[global_allocator]`; the library allocates with whatever its user
//! declared, and these functions only configure mimalloc and have it give
//! memory back: a thread that never allocated through it has nothing to
//! give).

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
/// which mimalloc reads and which then wins), and keeps the process's
/// memory in 4 KiB pages ([`without_huge_pages`]) unless
/// `MIMALLOC_ALLOW_THP` is set. Call first thing in `main`.
pub fn configure() {
    // SAFETY: sets one of mimalloc's options, a plain integer it reads when
    // it decides whether to give memory back.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, KEEP_FREED_MS) };
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        without_huge_pages();
    }
}

/// Turns transparent huge pages off for the process (Linux's
/// `PR_SET_THP_DISABLE`, what mimalloc does itself with
/// `MIMALLOC_ALLOW_THP=0`, which it reads before `main`, too early for
/// [`configure`] to set). mimalloc asks for huge pages for its segments,
/// and a 2 MiB page is resident whole as soon as any of it is touched: the
/// server's long-lived state (the books' steps, the loans' lists of
/// entries) grows a little at a time among short-lived allocations, so
/// huge pages stayed resident for a few live bytes each. Side by side at
/// 10^7 entries written over gRPC (BENCHMARKS.md), the server peaked at
/// 1,054 MiB resident without them and 1,153 with them, at the same
/// throughput.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` sets a flag of this
    // process's memory map and takes no pointers (its variadic arguments
    // passed as the `unsigned long`s the kernel reads); mappings made huge
    // before it stay as they are. A kernel that refuses it leaves huge
    // pages as they were configured: more memory, nothing else.
    unsafe {
        let (on, unused) = (1 as libc::c_ulong, 0 as libc::c_ulong);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

/// Gives the memory the allocator holds free back to the system at once
/// (whatever the delay): startup reads the state cache whole and builds
/// the state from it, and what it freed would otherwise stay resident
/// (at 10^6 entries, about 140 MiB more than the state holds). `serve`
/// calls it once the ledger started, and the store's thread that closes
/// the cache startup read once it closed it (after `serve`'s call, as a
/// clean restart does not wait for that thread).
pub fn release_freed() {
    // SAFETY: `mi_collect` only walks mimalloc's own heaps and returns their
    // free pages to the system; it touches no memory in use.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option set is the purge delay: it reads as mimalloc's documented
    /// default for it (1,000 ms) before, and as ours after; and transparent
    /// huge pages are then off for the process. No other test in this
    /// binary configures the allocator.
    #[test]
    fn configure_sets_the_delay_and_turns_huge_pages_off() {
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
        // And the process runs without transparent huge pages, as the
        // kernel reports it (unless the operator allowed them).
        #[cfg(target_os = "linux")]
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: reads a flag of this process; no pointers.
            let unused = 0 as libc::c_ulong;
            let disabled =
                unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, unused, unused, unused, unused) };
            assert_eq!(disabled, 1, "transparent huge pages are still allowed");
        }
    }
}
