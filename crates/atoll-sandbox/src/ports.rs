//! Finding free TCP ports on 127.0.0.1 (where the sandbox servers listen).

use std::net::{Ipv4Addr, TcpListener};

use rand::Rng;

use crate::spec::{layout, DEFAULT_BASE_PORT};
use crate::SandboxError;

/// True if nothing listens on 127.0.0.1:port right now (binding is the only reliable test).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// First port of the layout that is taken: `(island, node, port)`.
pub fn first_taken(
    base: u16,
    islands: u16,
    replicas: u16,
) -> Result<Option<(u16, usize, u16)>, SandboxError> {
    Ok(layout(base, islands, replicas)?
        .into_iter()
        .find(|&(_, _, port)| !port_is_free(port)))
}

/// Checks an explicitly chosen base: every needed port must be free.
pub fn check_base(base: u16, islands: u16, replicas: u16) -> Result<(), SandboxError> {
    match first_taken(base, islands, replicas)? {
        Some((island, node, port)) => Err(SandboxError::PortInUse { port, island, node }),
        None => Ok(()),
    }
}

/// Default base (54320), moved up by 100 until all ports are free.
pub fn pick_default_base(islands: u16, replicas: u16) -> Result<u16, SandboxError> {
    let mut base = u32::from(DEFAULT_BASE_PORT);
    while base <= u32::from(u16::MAX) {
        let b = base as u16;
        // A layout running past 65535 ends the search.
        match first_taken(b, islands, replicas) {
            Ok(None) => return Ok(b),
            Ok(Some(_)) => base += 100,
            Err(_) => break,
        }
    }
    Err(SandboxError::NoFreePorts(format!(
        "every base from {DEFAULT_BASE_PORT} upwards in steps of 100 has a port in use for {islands} island(s) of {} node(s)",
        replicas + 1
    )))
}

/// Lowest random base: above the well-known and most registered service ports.
const RANDOM_BASE_MIN: u32 = 10000;
/// The usual start of Linux's ephemeral port range, if the kernel's cannot be read.
const DEFAULT_EPHEMERAL_START: u32 = 32768;

/// First port the kernel hands out to outgoing connections (`ip_local_port_range`).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// The range random bases are drawn from: below the kernel's ephemeral ports, so that a
/// client connection made meanwhile (by any process) cannot take a port the sandbox will
/// start a node on later, leaving room for the layout plus one more island. Falls back to
/// the whole range above the minimum if the ephemeral range starts too low for that.
fn random_range(islands: u16) -> std::ops::Range<u32> {
    let span = (u32::from(islands) + 1) * u32::from(crate::spec::PORTS_PER_ISLAND);
    let start = ephemeral_start();
    if start > RANDOM_BASE_MIN + span + 1000 {
        RANDOM_BASE_MIN..start - span
    } else {
        RANDOM_BASE_MIN..u32::from(u16::MAX) - span
    }
}

/// Random base whose ports are all free, for this layout and one island more (what
/// `add_island` would need), so parallel test processes rarely collide.
pub fn pick_random_base(islands: u16, replicas: u16) -> Result<u16, SandboxError> {
    let mut rng = rand::thread_rng();
    let range = random_range(islands);
    for _ in 0..200 {
        // The range ends below 65536.
        let base = rng.gen_range(range.clone()) as u16;
        if let Ok(None) = first_taken(base, islands.saturating_add(1), replicas) {
            return Ok(base);
        }
    }
    Err(SandboxError::NoFreePorts(format!(
        "200 random bases in {}..{} all had a port in use for {} island(s)",
        range.start,
        range.end,
        islands.saturating_add(1)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_last_port(base: u16, islands: u16, replicas: u16) -> u16 {
        layout(base, islands, replicas)
            .unwrap()
            .into_iter()
            .map(|(_, _, p)| p)
            .max()
            .unwrap()
    }

    #[test]
    fn taken_port_is_detected() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!port_is_free(port));
        // Island 0 node 0 sits on the taken port. (A layout starting below it would also
        // test a neighbouring port, which another process may hold at that moment.)
        let err = check_base(port, 1, 0).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("port {port} (island 0 node 0) is already in use")),
            "{err}"
        );
    }

    #[test]
    fn random_base_is_free_and_in_range() {
        let base = pick_random_base(2, 1).unwrap();
        let range = random_range(2);
        assert!(range.contains(&u32::from(base)), "{base} not in {range:?}");
        assert!(first_taken(base, 3, 1).unwrap().is_none());
        // Below the ephemeral ports (when they start high enough to leave room).
        let start = ephemeral_start();
        if start > RANDOM_BASE_MIN + 4000 {
            let last = u32::from(spec_last_port(base, 3, 1));
            assert!(last < start, "last port {last} reaches {start}");
        }
    }
}
