//! Reading the migration directory, and `migrate new`.

use crate::error::MigrateError;
use atoll_core::migration::MigrationSet;
use std::path::{Path, PathBuf};

/// Reads every regular file of `dir` and validates the set.
pub fn read_dir(dir: &Path) -> Result<MigrationSet, MigrateError> {
    let err = |msg: String| MigrateError::Dir {
        dir: dir.display().to_string(),
        msg,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| err(format!("{name}: {e}")))?;
        files.push((name, text));
    }
    Ok(MigrationSet::parse(files)?)
}

/// The first second at or after `from` whose UTC stamp no file in `dir` uses as its
/// version number yet (two files may not share one).
pub fn unused_stamp(dir: &Path, from: u64) -> u64 {
    let used: std::collections::BTreeSet<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split_once('.').map(|(v, _)| v.to_string())
        })
        .collect();
    (from..)
        .find(|s| !used.contains(&utc_stamp(*s)))
        .unwrap_or(from)
}

/// Creates an empty `<UTC timestamp>.<name>.<target>.up.sql` / `.dn.sql` pair, refusing
/// a name or target the grammar would refuse later.
pub fn new_pair(
    dir: &Path,
    name: &str,
    target: &str,
    now_unix: u64,
) -> Result<[PathBuf; 2], MigrateError> {
    let stamp = utc_stamp(now_unix);
    let base = format!("{stamp}.{name}.{target}");
    let up = format!("{base}.up.sql");
    let dn = format!("{base}.dn.sql");
    // Validate with the parser itself, so `new` and `apply` can never disagree.
    MigrationSet::parse(vec![
        (up.clone(), String::new()),
        (dn.clone(), String::new()),
    ])?;
    let err = |msg: String| MigrateError::Dir {
        dir: dir.display().to_string(),
        msg,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let paths = [dir.join(&up), dir.join(&dn)];
    for p in &paths {
        if p.exists() {
            return Err(err(format!("{} already exists", p.display())));
        }
    }
    std::fs::write(&paths[0], format!("-- {base}: up\n")).map_err(|e| err(e.to_string()))?;
    std::fs::write(&paths[1], format!("-- {base}: down (undoes the up file)\n"))
        .map_err(|e| err(e.to_string()))?;
    Ok(paths)
}

/// `YYYYMMDDHHMMSS` in UTC, as pg-mig names its files.
pub fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for the whole u64 range we see.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps() {
        assert_eq!(super::utc_stamp(0), "19700101000000");
        assert_eq!(super::utc_stamp(1_700_000_000), "20231114221320");
        assert_eq!(super::utc_stamp(951_782_400), "20000229000000");
    }
}
