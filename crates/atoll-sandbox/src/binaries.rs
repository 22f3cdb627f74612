//! Finding the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, psql).
//!
//! Order: `$ATOLL_PG_BIN`, then `pg_config --bindir`, then the highest version under
//! `/usr/lib/postgresql/*/bin`, then `/usr/local/pgsql/bin`. No version is hard-coded.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SandboxError;

/// Environment variable that overrides discovery.
pub const PG_BIN_ENV: &str = "ATOLL_PG_BIN";

/// Finds the directory holding initdb and pg_ctl.
pub fn find_pg_bin() -> Result<PathBuf, SandboxError> {
    discover(
        std::env::var_os(PG_BIN_ENV),
        pg_config_bindir,
        Path::new("/usr/lib/postgresql"),
        Path::new("/usr/local/pgsql/bin"),
    )
}

/// Discovery with its inputs passed in, so the order can be unit-tested.
pub(crate) fn discover(
    env: Option<OsString>,
    pg_config: impl Fn() -> Option<PathBuf>,
    versions_root: &Path,
    fallback: &Path,
) -> Result<PathBuf, SandboxError> {
    let mut looked = Vec::new();
    if let Some(env) = env.filter(|e| !e.is_empty()) {
        let dir = PathBuf::from(env);
        // An explicit setting that is wrong is an error, not a reason to look elsewhere.
        if is_bin_dir(&dir) {
            return Ok(dir);
        }
        return Err(SandboxError::NoBinaries {
            looked: format!("${PG_BIN_ENV}={} (no initdb/pg_ctl there)", dir.display()),
        });
    }
    match pg_config() {
        Some(dir) if is_bin_dir(&dir) => return Ok(dir),
        Some(dir) => looked.push(format!("pg_config --bindir ({})", dir.display())),
        None => looked.push("pg_config --bindir (not on PATH)".to_string()),
    }
    if let Some(dir) = highest_version_bin(versions_root) {
        return Ok(dir);
    }
    looked.push(format!("{}/*/bin", versions_root.display()));
    if is_bin_dir(fallback) {
        return Ok(fallback.to_path_buf());
    }
    looked.push(fallback.display().to_string());
    Err(SandboxError::NoBinaries {
        looked: format!("${PG_BIN_ENV} (unset), {}", looked.join(", ")),
    })
}

fn is_bin_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// `<root>/<version>/bin` with the highest numeric version that holds the binaries.
fn highest_version_bin(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = version_key(&name)?;
            let bin = e.path().join("bin");
            is_bin_dir(&bin).then_some((key, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version directory.
pub(crate) fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("atoll-bin-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_bin(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("initdb"), "").unwrap();
        std::fs::write(dir.join("pg_ctl"), "").unwrap();
    }

    #[test]
    fn version_keys_sort_numerically() {
        assert!(version_key("10").unwrap() > version_key("9.6").unwrap());
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn discovery_order() {
        let root = scratch("order");
        let versions = root.join("versions");
        fake_bin(&versions.join("9.6/bin"));
        fake_bin(&versions.join("16/bin"));
        std::fs::create_dir_all(versions.join("17/bin")).unwrap(); // empty: skipped
        let fallback = root.join("fallback");
        fake_bin(&fallback);
        let env_dir = root.join("env");
        fake_bin(&env_dir);
        let cfg_dir = root.join("cfg");
        fake_bin(&cfg_dir);

        let none = || None;
        // 1. env wins.
        let got = discover(
            Some(env_dir.clone().into()),
            || Some(cfg_dir.clone()),
            &versions,
            &fallback,
        )
        .unwrap();
        assert_eq!(got, env_dir);
        // 2. pg_config next.
        let got = discover(None, || Some(cfg_dir.clone()), &versions, &fallback).unwrap();
        assert_eq!(got, cfg_dir);
        // 3. highest version with binaries.
        let got = discover(None, none, &versions, &fallback).unwrap();
        assert_eq!(got, versions.join("16/bin"));
        // 4. fallback.
        let got = discover(None, none, &root.join("nope"), &fallback).unwrap();
        assert_eq!(got, fallback);
        // Nothing: one line naming the places.
        let err = discover(None, none, &root.join("nope"), &root.join("nope2"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pg_config") && err.contains("nope2") && !err.contains('\n'),
            "{err}"
        );
        // A wrong explicit env is an error.
        assert!(discover(Some(root.join("nope").into()), none, &versions, &fallback).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
