//! Waiting for a condition with a deadline, instead of sleeping a guessed time: the
//! servers, replication and killed sessions each take their own moment.

use anyhow::{bail, Result};
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `true`; fails naming `what` once `timeout` has passed.
/// An error from `check` ends the wait with that error.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The blocking form of [`wait_until`] for synchronous tests: polls `check` until it
/// returns `true`, panicking naming `what` once `timeout` has passed.
pub fn poll_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(POLL);
    }
}
