//! What the caller asks for, and the port layout derived from it (pure).

use std::path::PathBuf;

use crate::SandboxError;

/// Default first port when none is given (PostgreSQL's 5432 with a digit appended).
pub const DEFAULT_BASE_PORT: u16 = 54320;
/// Ports reserved per island: island i node j listens on `base + i*10 + j`.
pub const PORTS_PER_ISLAND: u16 = 10;
/// Largest replica count: one master plus nine replicas fill an island's 10 ports.
pub const MAX_REPLICAS: u16 = PORTS_PER_ISLAND - 1;

/// What a sandbox should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Directory that holds the whole sandbox (data dirs, logs, sandbox.json, atoll.toml).
    pub dir: PathBuf,
    /// Number of islands (at least 1).
    pub islands: u16,
    /// Replicas per island (0..=9).
    pub replicas: u16,
    /// First port; `None` picks a free range starting at 54320.
    pub base_port: Option<u16>,
    /// Serve TLS with a generated self-signed CA, refuse plain TCP, and write
    /// `sslmode = "verify-full"` into atoll.toml (`up --tls`).
    pub tls: bool,
}

impl SandboxSpec {
    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        if self.islands == 0 {
            return Err(SandboxError::InvalidSpec(
                "islands must be at least 1".into(),
            ));
        }
        validate_replicas(self.replicas)?;
        if let Some(base) = self.base_port {
            // Fails if the last port would overflow.
            island_ports(base, self.islands - 1, self.replicas)?;
        }
        Ok(())
    }
}

pub(crate) fn validate_replicas(replicas: u16) -> Result<(), SandboxError> {
    if replicas > MAX_REPLICAS {
        return Err(SandboxError::InvalidSpec(format!(
            "replicas must be at most {MAX_REPLICAS} (an island has {PORTS_PER_ISLAND} ports), got {replicas}"
        )));
    }
    Ok(())
}

/// Port of island `island` node `node` (node 0 = master).
pub fn node_port(base: u16, island: u16, node: usize) -> Result<u16, SandboxError> {
    let port = u32::from(base) + u32::from(island) * u32::from(PORTS_PER_ISLAND) + node as u32;
    if base == 0 || port > u32::from(u16::MAX) {
        return Err(SandboxError::InvalidSpec(format!(
            "island {island} node {node} on base port {base} gives port {port}, outside 1..=65535"
        )));
    }
    // Checked above: fits in u16.
    Ok(port as u16)
}

/// Ports of one island, master first: `(node index, port)`.
pub fn island_ports(
    base: u16,
    island: u16,
    replicas: u16,
) -> Result<Vec<(usize, u16)>, SandboxError> {
    (0..=usize::from(replicas))
        .map(|node| node_port(base, island, node).map(|p| (node, p)))
        .collect()
}

/// All ports of a sandbox: `(island, node, port)`.
pub fn layout(
    base: u16,
    islands: u16,
    replicas: u16,
) -> Result<Vec<(u16, usize, u16)>, SandboxError> {
    let mut out = Vec::new();
    for island in 0..islands {
        for (node, port) in island_ports(base, island, replicas)? {
            out.push((island, node, port));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_layout() {
        let l = layout(54320, 2, 1).unwrap();
        assert_eq!(
            l,
            vec![(0, 0, 54320), (0, 1, 54321), (1, 0, 54330), (1, 1, 54331)]
        );
        assert_eq!(node_port(20000, 3, 9).unwrap(), 20039);
    }

    #[test]
    fn port_overflow_is_refused() {
        assert!(node_port(65530, 1, 0).is_err());
        assert!(node_port(65535, 0, 0).is_ok());
        assert!(node_port(0, 0, 0).is_err());
    }

    #[test]
    fn spec_validation() {
        let mut s = SandboxSpec {
            dir: "/tmp/x".into(),
            islands: 2,
            replicas: 1,
            base_port: None,
            tls: false,
        };
        assert!(s.validate().is_ok());
        s.replicas = 10;
        assert!(s.validate().is_err());
        s.replicas = 1;
        s.islands = 0;
        assert!(s.validate().is_err());
        s.islands = 3;
        s.base_port = Some(65520);
        assert!(s.validate().is_err());
    }
}
