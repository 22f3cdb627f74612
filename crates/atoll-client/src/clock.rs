//! A cheap wall clock for app-side IDs. IDs carry whole seconds, so the kernel's coarse
//! realtime clock (updated every tick, a few ms) is precise enough, and reading it costs a
//! few ns instead of the ~50 ns of a precise `clock_gettime` on a virtual machine. Being a
//! few ms behind only makes the generator's lead bound more conservative.

/// Unix milliseconds from the coarse clock (Linux), or `SystemTime` elsewhere / on failure.
pub(crate) fn coarse_now_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, exclusively borrowed timespec for the call's duration, and
        // CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        if rc == 0 && ts.tv_sec >= 0 {
            return ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000;
        }
    }
    crate::attempt::now_ms()
}

/// Milliseconds of a monotonic clock (never jumps with the wall clock), for lease deadlines.
/// It stops while the machine is suspended, so a lease deadline is also kept by the wall
/// clock. Linux: the coarse monotonic clock (a few ns to read; a few ms behind, which the
/// lease margin covers); `u64::MAX` if it cannot be read, which makes every deadline passed, so
/// IDs are refused rather than made on an unknown clock. Elsewhere: `Instant` since first use.
pub(crate) fn coarse_monotonic_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as above; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        if rc == 0 && ts.tv_sec >= 0 {
            ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
        } else {
            u64::MAX
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
}

/// A moment by both clocks a lease deadline is kept in (see [`crate::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Unix ms ([`coarse_now_ms`]).
    pub wall_ms: u64,
    /// [`coarse_monotonic_ms`].
    pub mono_ms: u64,
}

/// Both clocks now: the wall clock first, so the monotonic reading bounds when it was read.
#[inline]
pub(crate) fn stamp() -> Stamp {
    let wall_ms = coarse_now_ms();
    Stamp {
        wall_ms,
        mono_ms: coarse_monotonic_ms(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_agrees_with_the_precise_one() {
        // Precise readings on both sides bound the coarse one however long the thread is
        // preempted in between; the coarse clock may lag a tick (a few ms; 100 allowed).
        let before = crate::attempt::now_ms();
        let coarse = super::coarse_now_ms();
        let after = crate::attempt::now_ms();
        assert!(
            coarse + 100 >= before && coarse <= after + 100,
            "coarse {coarse} outside precise {before}..={after} (100 ms tolerance)"
        );
    }

    #[test]
    fn the_monotonic_clock_moves_with_time() {
        let a = super::coarse_monotonic_ms();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = super::coarse_monotonic_ms();
        // Each coarse reading may lag up to a tick (10 ms at HZ=100) and lose a truncated ms.
        assert!(b >= a + 25 && b < a + 60_000, "{a} then {b}");
    }
}
