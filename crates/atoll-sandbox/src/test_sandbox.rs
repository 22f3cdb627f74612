//! A throw-away sandbox per test, safe with many test processes at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use tracing::warn;

use crate::{ports, Sandbox, SandboxError, SandboxSpec};

/// Whole-creation attempts when a port is taken between the check and the server start.
const ATTEMPTS: usize = 5;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh sandbox in a new unique directory under the temp dir, on free ports.
/// Dropping it stops the servers and removes the directory, also when the test panics.
#[derive(Debug)]
pub struct TestSandbox {
    /// The sandbox itself; `TestSandbox` also dereferences to it.
    pub sandbox: Sandbox,
}

impl TestSandbox {
    /// Creates a sandbox of `islands` islands with `replicas` replicas each, in a fresh directory
    /// on free ports; retries on another port range when a port is taken meanwhile.
    pub fn new(islands: u16, replicas: u16) -> Result<TestSandbox, SandboxError> {
        TestSandbox::create(islands, replicas, false)
    }

    /// [`TestSandbox::new`], serving TLS when `tls` (see [`SandboxSpec::tls`]).
    pub fn create(islands: u16, replicas: u16, tls: bool) -> Result<TestSandbox, SandboxError> {
        let mut last_err = None;
        for _ in 0..ATTEMPTS {
            let spec = SandboxSpec {
                dir: unique_dir(),
                islands,
                replicas,
                base_port: Some(ports::pick_random_base(islands, replicas)?),
                tls,
            };
            match Sandbox::up(&spec) {
                Ok(sandbox) => return Ok(TestSandbox { sandbox }),
                // Another process grabbed a port: try another range (up cleaned up).
                Err(e) if e.is_port_conflict() => {
                    warn!(error = %e, "test sandbox: port conflict, retrying on another range");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| SandboxError::NoFreePorts("no attempt made".into())))
    }
}

fn unique_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random: u32 = rand::thread_rng().gen();
    std::env::temp_dir().join(format!(
        "atoll-test-{}-{n}-{random:08x}",
        std::process::id()
    ))
}

impl std::ops::Deref for TestSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Err(e) = self.sandbox.down() {
            warn!(error = %e, "test sandbox: down failed");
        }
        if let Err(e) = std::fs::remove_dir_all(self.sandbox.dir()) {
            warn!(dir = %self.sandbox.dir().display(), error = %e, "test sandbox: cannot remove directory");
        }
    }
}
