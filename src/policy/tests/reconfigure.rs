//! [`Policy::reconfigure`]: a reload's `[policy]` settings take effect from the next decision.

use super::*;

fn with_idle_timeout(idle: Duration) -> PolicyConfig {
    PolicyConfig {
        idle_timeout: idle,
        ..PolicyConfig::default()
    }
}

#[test]
fn a_shorter_idle_timeout_stops_a_running_job_by_the_new_rule() {
    let mut p = running_faculty();
    assert_eq!(p.next_deadline(), Some(Millis(61 * SEC)), "60 s after running");
    let actions = p.reconfigure(Millis(5 * SEC), with_idle_timeout(Duration::from_secs(10)));
    assert!(actions.is_empty(), "not idle yet: {actions:?}");
    assert_eq!(p.next_deadline(), Some(Millis(11 * SEC)));
    let timed = run_until(&mut p, 11 * SEC);
    assert_eq!(
        stops(&only_actions(&timed)),
        one_stop("faculty", "faculty-1", StopReason::Idle)
    );
    // A table first seen after the reload gets the new rules too.
    assert_eq!(p.unseen_status("room").state, TableState::Idle);
}

#[test]
fn a_new_cooldown_applies_to_the_next_start_from_the_last_one() {
    let mut p = running_faculty();
    p.handle(Millis(2 * SEC), operator("faculty", ControlCommand::Stop));
    p.handle(Millis(3 * SEC), stopped("faculty"));
    p.handle(Millis(4 * SEC), activity("faculty", 1));
    // Default cooldown 30 s from the start at 0.
    assert_eq!(p.next_deadline(), Some(Millis(30 * SEC)));
    let cooldown = PolicyConfig {
        cooldown: Duration::from_secs(5),
        ..PolicyConfig::default()
    };
    let actions = p.reconfigure(Millis(6 * SEC), cooldown);
    assert_eq!(starts(&actions), vec![("faculty".into(), 2, StartReason::Changes)]);
}

#[test]
fn paused_changes_only_where_the_configured_value_changed() {
    let mut p = default_policy();
    // An operator paused faculty at run time; room is unpaused.
    p.handle(Millis(0), operator("faculty", ControlCommand::Pause));
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(0), operator("room", ControlCommand::Pause));
    p.handle(Millis(0), operator("room", ControlCommand::Resume));
    // The file now pauses room only: faculty keeps the operator's pause, room is paused.
    let mut policy = PolicyConfig::default();
    policy.tables.insert(
        "room".into(),
        TableOverrides {
            paused: Some(true),
            ..TableOverrides::default()
        },
    );
    assert!(p.reconfigure(Millis(SEC), policy.clone()).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Paused));
    assert_eq!(p.status("room").map(|s| s.state), Some(TableState::Paused));
    // The same settings again change nothing; an operator resume still works.
    assert!(p.reconfigure(Millis(2 * SEC), policy.clone()).is_empty());
    let actions = p.handle(Millis(3 * SEC), operator("faculty", ControlCommand::Resume));
    assert_eq!(starts(&actions).len(), 1);
    // The file unpausing room resumes it.
    p.handle(Millis(4 * SEC), activity("room", 1));
    let actions = p.reconfigure(Millis(5 * SEC), PolicyConfig::default());
    assert_eq!(starts(&actions), vec![("room".into(), 1, StartReason::Changes)]);
}

#[test]
fn include_and_exclude_stay_as_the_process_started() {
    let mut p = Policy::new(settings_with(|policy, _| policy.exclude = vec!["payment".into()]));
    let policy = PolicyConfig {
        include: vec!["faculty".into()],
        ..PolicyConfig::default()
    };
    p.reconfigure(Millis(0), policy);
    assert_eq!(p.settings().policy.exclude, ["payment"]);
    assert!(p.settings().policy.include.is_empty());
    assert_eq!(starts(&p.handle(Millis(0), activity("room", 1))).len(), 1);
}

#[test]
fn new_operations_decide_what_the_next_records_count_as() {
    let mut p = default_policy();
    let policy = PolicyConfig {
        operations: vec![Op::Delete],
        ..PolicyConfig::default()
    };
    p.reconfigure(Millis(0), policy);
    assert!(starts(&p.handle(Millis(0), activity_ops("faculty", &[(Op::Create, 3)]))).is_empty());
    assert_eq!(
        starts(&p.handle(Millis(SEC), activity_ops("faculty", &[(Op::Delete, 1)]))).len(),
        1
    );
}
