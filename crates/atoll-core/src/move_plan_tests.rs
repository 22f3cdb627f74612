use super::*;

fn s(n: i64) -> ShardNo {
    ShardNo::new(n).unwrap()
}

#[test]
fn steps_are_ordered_and_round_trip() {
    let mut step = MoveStep::Prepared;
    let mut seen = vec![step];
    while let Some(n) = step.next() {
        assert!(n > step);
        step = n;
        seen.push(n);
    }
    assert_eq!(seen, MoveStep::ALL.to_vec());
    for st in MoveStep::ALL {
        assert_eq!(st.as_str().parse::<MoveStep>().unwrap(), st);
    }
    assert!("halfway".parse::<MoveStep>().is_err());
}

#[test]
fn a_crash_inside_the_pause_leaves_caught_up() {
    for st in [MoveStep::Paused, MoveStep::Synced, MoveStep::Verified] {
        assert!(!st.durable());
        assert_eq!(st.persisted_after_crash(), MoveStep::CaughtUp);
        assert_eq!(st.resume_action(), ResumeAction::Cutover);
    }
    assert_eq!(
        MoveStep::Switched.persisted_after_crash(),
        MoveStep::Switched
    );
}

#[test]
fn resume_continues_with_the_next_piece_of_work() {
    assert_eq!(MoveStep::Prepared.resume_action(), ResumeAction::CopySchema);
    assert_eq!(
        MoveStep::SchemaCopied.resume_action(),
        ResumeAction::Subscribe
    );
    assert_eq!(
        MoveStep::Subscribed.resume_action(),
        ResumeAction::WaitForCopy
    );
    assert_eq!(MoveStep::Switched.resume_action(), ResumeAction::Activate);
    assert_eq!(
        MoveStep::Activated.resume_action(),
        ResumeAction::DropReplication
    );
    assert_eq!(MoveStep::CleanedUp.resume_action(), ResumeAction::Nothing);
}

#[test]
fn abort_undoes_replication_and_the_destination_copy() {
    use AbortAction::*;
    assert_eq!(
        MoveStep::Prepared.abort_plan().unwrap(),
        vec![DropDestinationSchema, ForgetMove]
    );
    let mid = vec![
        DropSubscription,
        DropSlot,
        DropPublication,
        DropDestinationSchema,
        ForgetMove,
    ];
    for st in [
        MoveStep::SchemaCopied,
        MoveStep::Subscribed,
        MoveStep::CaughtUp,
        MoveStep::Paused,
        MoveStep::Verified,
    ] {
        assert_eq!(st.abort_plan().unwrap(), mid, "{st}");
    }
    let switched = MoveStep::Switched.abort_plan().unwrap();
    assert_eq!(switched.first(), Some(&RefuseIfDestinationActive));
    let restore = switched
        .iter()
        .position(|a| *a == RestoreSourceSchema)
        .unwrap();
    let reactivate = switched
        .iter()
        .position(|a| *a == ReactivateSource)
        .unwrap();
    assert!(
        restore < reactivate,
        "the schema is back before the shard is active"
    );
    assert_eq!(
        MoveStep::Activated.abort_plan(),
        Err(AbortRefused(MoveStep::Activated))
    );
    assert!(MoveStep::CleanedUp.abort_plan().is_err());
}

#[test]
fn names_carry_the_shard_and_fit_identifiers() {
    let n = move_names(s(42), 1_763_700_000_123_456);
    assert!(n.publication.starts_with(&move_name_prefix(s(42))));
    assert!(n.slot.len() <= 63);
    assert_eq!(n.slot, n.slot.to_lowercase());
    assert_eq!(n.subscription, "atoll_move_sh0042_1763700000123456");
    assert_eq!(
        parse_move_name(&n.slot),
        Some((s(42), 1_763_700_000_123_456))
    );
    for other in [
        "atoll_move_sh0042_",
        "atoll_move_sh42_1",
        "atoll_move_sh0042_1x",
        "pg_16384_sync_16390_7",
    ] {
        assert_eq!(parse_move_name(other), None, "{other}");
    }
}

#[test]
fn abort_actions_round_trip_and_say_what_ends_a_move() {
    for a in AbortAction::ALL {
        assert_eq!(a.as_str().parse::<AbortAction>(), Ok(a));
    }
    assert!("reactivate".parse::<AbortAction>().is_err());
    assert_eq!(
        finish_by(MoveStep::Subscribed, false),
        FinishBy::ResumeOrAbort
    );
    assert_eq!(finish_by(MoveStep::Switched, true), FinishBy::Abort);
    assert_eq!(finish_by(MoveStep::Activated, false), FinishBy::Resume);
    assert_eq!(finish_by(MoveStep::Activated, true), FinishBy::Resume);
}

#[test]
fn backup_names_round_trip_and_are_never_shards() {
    let b = backup_schema(s(42), 1_763_700_000);
    assert_eq!(b, "sh0042_moved_1763700000");
    assert!(ShardNo::from_schema(&b).is_err());
    assert_eq!(parse_backup_schema(&b), Some((s(42), 1_763_700_000)));
    assert_eq!(parse_backup_schema("sh0042_moved_"), None);
    assert_eq!(parse_backup_schema("sh42_moved_5"), None);
    assert_eq!(parse_backup_schema("sh0042"), None);
    assert_eq!(parse_backup_schema("sh0042_moved_12x"), None);
}

#[test]
fn cleanup_drops_only_old_backups() {
    let names = vec![
        "sh0001_moved_1000".to_string(),
        "sh0002_moved_5000".to_string(),
        "sh0003".to_string(),
        "public".to_string(),
    ];
    assert_eq!(
        backups_to_drop(&names, 6000, 4000),
        vec!["sh0001_moved_1000"]
    );
    assert_eq!(
        backups_to_drop(&names, 6000, 0),
        vec!["sh0001_moved_1000", "sh0002_moved_5000"]
    );
    assert!(backups_to_drop(&names, 6000, 86400).is_empty());
}

#[test]
fn ages_parse() {
    assert_eq!(parse_age("7d"), Ok(7 * 86400));
    assert_eq!(parse_age("12h"), Ok(12 * 3600));
    assert_eq!(parse_age("30m"), Ok(1800));
    assert_eq!(parse_age("0"), Ok(0));
    assert!(parse_age("7").is_err());
    assert!(parse_age("d").is_err());
    assert!(parse_age("").is_err());
    assert!(parse_age("-1d").is_err());
}

#[test]
fn digests_compare() {
    let d = |t: &str, rows, sum: Option<&str>| TableDigest {
        table: t.into(),
        rows,
        checksum: sum.map(String::from),
    };
    let src = vec![d("a", 10, None), d("b", 5, None)];
    assert!(compare_digests(&src, &src.clone()).is_empty());
    let dst = vec![d("a", 9, None), d("c", 1, None)];
    let m = compare_digests(&src, &dst);
    assert_eq!(m.len(), 3);
    assert!(m[0].to_string().contains("10 rows on the source, 9"));
    assert!(m[1].to_string().contains("b is missing on the destination"));
    assert!(m[2].to_string().contains("c is missing on the source"));
    let m = compare_digests(&[d("a", 1, Some("x"))], &[d("a", 1, Some("y"))]);
    assert_eq!(m, vec![Mismatch::Checksum { table: "a".into() }]);
}

#[test]
fn start_checks_fail_closed() {
    let i = IslandId;
    assert_eq!(
        check_start(s(1), Some(i(0)), i(1), true, false, &[]),
        Ok(i(0))
    );
    assert_eq!(
        check_start(s(1), None, i(1), true, false, &[]),
        Err(StartRefused::NotActive { shard: s(1) })
    );
    assert!(matches!(
        check_start(s(1), Some(i(1)), i(1), true, false, &[]),
        Err(StartRefused::AlreadyThere { .. })
    ));
    assert_eq!(
        check_start(s(1), Some(i(0)), i(7), false, false, &[]),
        Err(StartRefused::UnknownIsland(i(7)))
    );
    let e = check_start(s(1), Some(i(0)), i(1), true, true, &[]).unwrap_err();
    assert!(e.to_string().starts_with("destination_has_schema"));
    let old = MoveRecord {
        id: 9,
        shard: s(1),
        source: i(0),
        destination: i(1),
        step: MoveStep::Subscribed,
        verify: VerifyMode::Counts,
        backup_schema: None,
    };
    let e = check_start(
        s(1),
        Some(i(0)),
        i(1),
        true,
        false,
        std::slice::from_ref(&old),
    )
    .unwrap_err();
    assert!(e
        .to_string()
        .contains("unfinished move 9 (step subscribed)"));
    // Another shard's unfinished move does not block this one.
    let other = MoveRecord { shard: s(2), ..old };
    assert!(check_start(s(1), Some(i(0)), i(1), true, false, &[other]).is_ok());
}
