//! Rendering helpers shared by the commands.

use crate::exit::Failure;
use serde::Serialize;

pub fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::failed(e).context("cannot render the result as JSON"))?;
    println!("{text}");
    Ok(())
}

/// Sizes as people read them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes() {
        assert_eq!(super::bytes(10), "10 B");
        assert_eq!(super::bytes(8192), "8.0 kB");
        assert_eq!(super::bytes(5 * 1024 * 1024), "5.0 MB");
    }
}
