//! Gives a waiting job thread's dead stack pages back to the system.
//!
//! A page of a thread's stack, once touched, stays resident until the
//! thread ends, even when the stack has long shrunk again: a job that ran
//! once keeps the stack its run needed (restic's output, the rules, a
//! notification) for as long as it then waits, days. With a thousand jobs
//! that is most of the daemon's memory. Before a job waits, it drops the
//! pages below its current frame (`MADV_DONTNEED`: the kernel frees them
//! and hands out zeroed pages if the stack grows into them again). An idle
//! job then keeps the one page it shares with its thread's TLS.

/// Releases the pages of the calling thread's stack below the caller's
/// frame. Not for the main thread (whose stack the C library finds by
/// reading /proc/self/maps).
pub fn release_unused() {
    thread_local! {
        /// This thread's stack bounds do not change: asked once.
        static LOW_END: Option<usize> = low_end();
    }
    if let Some(low_end) = LOW_END.with(|low_end| *low_end) {
        release_below(low_end);
    }
}

/// The lowest address of the calling thread's stack (above its guard), or
/// `None` when the C library cannot say.
fn low_end() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read
    // and destroyed once; the out-pointers point to locals.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut address = std::ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut address, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (got == 0).then_some(address as usize)
    }
}

/// Releases the pages of this thread's stack from `low_end` up to below the
/// caller's frame.
#[inline(never)]
fn release_below(low_end: usize) {
    let here = std::hint::black_box(0u8);
    let here = std::ptr::addr_of!(here) as usize;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // Everything below this frame is dead; a kilobyte is left for the
    // madvise call itself.
    let end = here.saturating_sub(1024) & !(page - 1);
    if end > low_end {
        // SAFETY: [low_end, end) is this thread's own stack below every live
        // frame: nothing refers to it, and MADV_DONTNEED only makes its
        // next read return zeroes.
        unsafe {
            libc::madvise(
                low_end as *mut libc::c_void,
                end - low_end,
                libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `depth` kB of stack below the caller, then returns.
    #[inline(never)]
    fn dig(depth: usize) -> u8 {
        let block = std::hint::black_box([depth as u8; 1024]);
        if depth == 0 {
            block[0]
        } else {
            dig(depth - 1).wrapping_add(block[1023])
        }
    }

    /// Resident pages of this process.
    fn resident_pages() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn the_dead_stack_goes_back_and_the_live_frames_keep_their_values() {
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(|| {
                let live = std::hint::black_box([7u8; 2048]);
                dig(256);
                let before = resident_pages();
                release_unused();
                let after = resident_pages();
                // At least 256 kB of dead stack: most of its 64 pages go
                // (other test threads may touch pages meanwhile).
                assert!(before >= after + 48, "{before} -> {after} pages");
                assert!(live.iter().all(|b| *b == 7), "a live frame was cleared");
                // The stack grows into released pages again as usual.
                dig(256);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
