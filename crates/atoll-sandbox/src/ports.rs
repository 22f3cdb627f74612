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

/// Random base in 20000..60000 whose ports are all free (for parallel test processes).
pub fn pick_random_base(islands: u16, replicas: u16) -> Result<u16, SandboxError> {
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base: u16 = rng.gen_range(20000..60000);
        if let Ok(None) = first_taken(base, islands, replicas) {
            return Ok(base);
        }
    }
    Err(SandboxError::NoFreePorts(format!(
        "200 random bases in 20000..60000 all had a port in use for {islands} island(s)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((20000..60000).contains(&base));
    }
}
