//! Reviewed plans and scopes, without a server.

use super::*;
use crate::island::IslandId;
use std::collections::{BTreeMap, BTreeSet};

const A: &str = "20240101000000.users.sh";
const B: &str = "20240102000000.nick.sh";
const P: &str = "20240103000000.settings.public";

fn set_with(b_up: &str, extra: &[(&str, &str)]) -> MigrationSet {
    let mut files = Vec::new();
    let mut all = vec![
        (A, "create table users (id bigint);"),
        (B, b_up),
        (P, "create table settings (k text);"),
    ];
    all.extend_from_slice(extra);
    for (v, up) in all {
        files.push((format!("{v}.up.sql"), up.to_string()));
        files.push((format!("{v}.dn.sql"), "select 1;".to_string()));
    }
    MigrationSet::parse(files).expect("valid")
}

fn states() -> Vec<SchemaState> {
    let mut out: Vec<SchemaState> = (1..=10)
        .map(|n| SchemaState {
            schema: format!("sh{n:04}"),
            island: IslandId((n % 2) as u16),
            applied: if n <= 5 { vec![A.into()] } else { vec![] },
            checksums: BTreeMap::new(),
        })
        .collect();
    out.push(SchemaState {
        schema: "public".into(),
        island: IslandId(0),
        applied: vec![],
        checksums: BTreeMap::new(),
    });
    out
}

fn build(scope: &Scope) -> PlanFile {
    let set = set_with("alter table users drop column x;", &[]);
    let p = plan(&set, &states());
    PlanFile::build("c1", scope, &set, &p, &states()).expect("plan")
}

#[test]
fn plan_file_groups_by_state_and_round_trips() {
    let f = build(&Scope::default());
    assert_eq!(f.groups.len(), 3, "{f:?}");
    assert_eq!(f.groups[0].shards, "1-5");
    assert_eq!(f.groups[0].applied, vec![A.to_string()]);
    assert_eq!(f.groups[0].pending.len(), 1);
    assert_eq!(f.groups[0].unsafe_notes.len(), 1);
    assert_eq!(f.groups[1].shards, "6-10");
    assert_eq!(f.groups[2].schemas, vec!["public".to_string()]);
    let text = serde_json::to_string_pretty(&f).expect("json");
    let back = PlanFile::parse("p.json", &text).expect("parse");
    assert_eq!(back, f);
    let set = set_with("alter table users drop column x;", &[]);
    let jobs = back
        .check("p.json", "c1", &set, &states(), &BTreeSet::new())
        .expect("accepted");
    assert_eq!(jobs.len(), 11);
}

#[test]
fn plan_file_refuses_tampering_other_clusters_and_changes() {
    let f = build(&Scope::default());
    let text = serde_json::to_string(&f).expect("json");
    let tampered = text.replace("\"1-5\"", "\"1-6\"");
    let e = PlanFile::parse("p.json", &tampered)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("plan file p.json: its content does not match"),
        "{e}"
    );
    let e = PlanFile::parse("p.json", "{").unwrap_err().to_string();
    assert!(e.starts_with("plan file p.json: not a plan file"), "{e}");
    let set = set_with("alter table users drop column x;", &[]);
    let e = f
        .check("p.json", "c2", &set, &states(), &BTreeSet::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("made for cluster c1, this is cluster c2"), "{e}");
    // A planned file edited.
    let edited = set_with("alter table users drop column y;", &[]);
    let e = f
        .check("p.json", "c1", &edited, &states(), &BTreeSet::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("migration file {B}.up.sql changed")),
        "{e}"
    );
    // A new file before the planned ones.
    let early = set_with(
        "alter table users drop column x;",
        &[("20240101500000.early.sh", "select 1;")],
    );
    let e = f
        .check("p.json", "c1", &early, &states(), &BTreeSet::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("20240101500000.early.sh.up.sql is new"), "{e}");
    // A shard migrated by hand in between.
    let mut moved = states();
    moved[6].applied = vec![A.into()];
    let e = f
        .check("p.json", "c1", &set, &moved, &BTreeSet::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema sh0007 (island 1) has applied up to"),
        "{e}"
    );
    // ... unless this plan's own earlier run did it (a resumed run).
    let mut resumed = states();
    resumed[6].applied = vec![A.into(), B.into()];
    let done: BTreeSet<String> = ["sh0007".to_string()].into();
    let jobs = f
        .check("p.json", "c1", &set, &resumed, &done)
        .expect("resumed");
    assert_eq!(jobs.len(), 10);
    assert!(!jobs.iter().any(|j| j.schema == "sh0007"));
}

#[test]
fn scoped_plan_leaves_the_finalizer_out_until_the_keyspace_is_done() {
    let scope = Scope::new(Some("1-3,9"), None).expect("scope");
    assert_eq!(scope.describe(), "shards 1-3,9");
    let f = build(&scope);
    let shards: Vec<&str> = f.groups.iter().map(|g| g.shards.as_str()).collect();
    assert_eq!(shards, ["1-3", "9"]);
    assert!(f.groups.iter().all(|g| g.schemas.is_empty()));
    let island = Scope::new(None, Some(IslandId(1))).expect("scope");
    assert!(island.contains("sh0003", IslandId(1)));
    assert!(!island.contains("sh0002", IslandId(0)));
    assert!(!island.contains("public", IslandId(0)));
    assert!(Scope::default().contains("public", IslandId(0)));
}

#[test]
fn scopes_out_of_bounds_are_refused() {
    let e = Scope::new(Some("1-10000"), None).unwrap_err().to_string();
    assert!(
        e.starts_with("--shards \"1-10000\": shard number 10000 is out of range"),
        "{e}"
    );
    assert!(Scope::new(Some("5-1"), None).is_err());
    let s = Scope::new(Some("9-12"), None).expect("scope");
    let e = s
        .check(&states(), &[IslandId(0), IslandId(1)])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--shards: shards are not in the cluster (shards 11-12)");
    let s = Scope::new(None, Some(IslandId(7))).expect("scope");
    let e = s.check(&states(), &[IslandId(0)]).unwrap_err().to_string();
    assert_eq!(e, "--island 7: no such island in the config");
}

proptest::proptest! {
    #[test]
    fn plan_file_parser_never_panics(text in ".{0,400}") {
        let _ = PlanFile::parse("p", &text);
    }

    #[test]
    fn edited_plan_files_are_refused(pos in 0usize..2000, byte in 32u8..127) {
        let text = serde_json::to_string(&build(&Scope::default())).expect("json");
        let mut bytes = text.into_bytes();
        let i = pos % bytes.len();
        if bytes[i] != byte {
            bytes[i] = byte;
            let edited = String::from_utf8_lossy(&bytes).to_string();
            // Either not a plan any more or refused by the digest; never accepted as is
            // unless the edit did not change the parsed content (whitespace).
            if let Ok(f) = PlanFile::parse("p", &edited) {
                proptest::prop_assert_eq!(f, build(&Scope::default()));
            }
        }
    }
}
