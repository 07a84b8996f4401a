use super::*;

fn rule(text: &str) -> Rule {
    text.parse().unwrap()
}

fn texts(store: &Store, owner: &RuleOwner) -> Vec<String> {
    store
        .load_owner(owner)
        .unwrap()
        .unwrap()
        .rules
        .into_iter()
        .map(|r| r.text)
        .collect()
}

fn fresh() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.db");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

#[test]
fn a_new_database_has_the_global_and_special_profiles() {
    let (_d, _p, store) = fresh();
    let snap = store.load().unwrap();
    assert!(snap.global.overrides.is_empty());
    assert_eq!(
        snap.apps.keys().collect::<Vec<_>>(),
        [SYSTEM_DNS_KEY, KERNEL_KEY]
    );
    assert_eq!(snap.apps[KERNEL_KEY].info.kind, AppKind::Kernel);
}

#[test]
fn settings_and_rules_survive_reopening() {
    let (_d, path, mut store) = fresh();
    let app = RuleOwner::App("/usr/bin/curl".into());
    assert!(
        store
            .ensure_app("/usr/bin/curl", AppKind::Executable, "curl", 5)
            .unwrap()
    );
    assert!(
        !store
            .ensure_app("/usr/bin/curl", AppKind::Executable, "curl", 6)
            .unwrap()
    );
    let v = SettingValue::parse(SettingKey::DefaultAction, "block").unwrap();
    assert!(
        store
            .set_setting(&app, SettingKey::DefaultAction, Some(&v))
            .unwrap()
    );
    store
        .add_rule(&app, &rule("- 10.0.0.0/8"), None, RuleLifetime::Forever, 7)
        .unwrap()
        .unwrap();
    store
        .add_rule(
            &RuleOwner::Global,
            &rule("+ tcp/443"),
            None,
            RuleLifetime::Forever,
            8,
        )
        .unwrap();
    drop(store);

    let store = Store::open(&path).unwrap();
    let snap = store.load().unwrap();
    let curl = &snap.apps["/usr/bin/curl"];
    assert_eq!(curl.overrides.get(&SettingKey::DefaultAction), Some(&v));
    assert_eq!(curl.rules[0].text, "- 10.0.0.0/8");
    assert_eq!(curl.rules[0].created_unix_ms, 7);
    assert_eq!(snap.global.rules[0].text, "+ tcp/443");
}

#[test]
fn clearing_a_setting_returns_it_to_inherited() {
    let (_d, _p, mut store) = fresh();
    let v = SettingValue::Bool(false);
    store
        .set_setting(&RuleOwner::Global, SettingKey::BlockInbound, Some(&v))
        .unwrap();
    store
        .set_setting(&RuleOwner::Global, SettingKey::BlockInbound, None)
        .unwrap();
    assert!(store.load().unwrap().global.overrides.is_empty());
}

#[test]
fn settings_of_an_unknown_app_are_refused_not_invented() {
    let (_d, _p, mut store) = fresh();
    let owner = RuleOwner::App("/nope".into());
    assert!(
        !store
            .set_setting(
                &owner,
                SettingKey::BlockInbound,
                Some(&SettingValue::Bool(true))
            )
            .unwrap()
    );
    assert!(
        store
            .add_rule(&owner, &rule("- *"), None, RuleLifetime::Forever, 1)
            .unwrap()
            .is_none()
    );
}

#[test]
fn rules_insert_move_and_remove_keep_a_dense_order() {
    let (_d, _p, mut store) = fresh();
    let g = RuleOwner::Global;
    let a = store
        .add_rule(&g, &rule("- a.example.com"), None, RuleLifetime::Forever, 1)
        .unwrap()
        .unwrap();
    let b = store
        .add_rule(&g, &rule("- b.example.com"), None, RuleLifetime::Forever, 1)
        .unwrap()
        .unwrap();
    let c = store
        .add_rule(
            &g,
            &rule("- c.example.com"),
            Some(1),
            RuleLifetime::Forever,
            1,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        texts(&store, &g),
        ["- c.example.com", "- a.example.com", "- b.example.com"]
    );
    store.move_rule(c, 3).unwrap().unwrap();
    assert_eq!(
        texts(&store, &g),
        ["- a.example.com", "- b.example.com", "- c.example.com"]
    );
    store.move_rule(b, 1).unwrap().unwrap();
    assert_eq!(
        texts(&store, &g),
        ["- b.example.com", "- a.example.com", "- c.example.com"]
    );
    store.move_rule(a, 99).unwrap().unwrap();
    assert_eq!(
        texts(&store, &g),
        ["- b.example.com", "- c.example.com", "- a.example.com"]
    );
    assert_eq!(store.remove_rule(c).unwrap(), Some(RuleOwner::Global));
    assert_eq!(store.remove_rule(c).unwrap(), None);
    assert!(store.move_rule(c, 1).unwrap().is_none());
    let positions: Vec<u32> = store
        .load_owner(&g)
        .unwrap()
        .unwrap()
        .rules
        .iter()
        .map(|r| r.position)
        .collect();
    assert_eq!(positions, [1, 2]);
}

#[test]
fn ended_rules_are_removed_and_the_rest_renumbered() {
    let (_d, _p, mut store) = fresh();
    let g = RuleOwner::Global;
    store
        .add_rule(
            &g,
            &rule("- a.example.com"),
            None,
            RuleLifetime::Until { unix_ms: 100 },
            1,
        )
        .unwrap();
    store
        .add_rule(
            &g,
            &rule("- b.example.com"),
            None,
            RuleLifetime::UntilRestart,
            1,
        )
        .unwrap();
    store
        .add_rule(&g, &rule("- c.example.com"), None, RuleLifetime::Forever, 1)
        .unwrap();
    assert!(
        store
            .remove_ended_rules(99, false, &|_, _| false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.remove_ended_rules(100, false, &|_, _| false).unwrap(),
        [RuleOwner::Global]
    );
    assert_eq!(texts(&store, &g), ["- b.example.com", "- c.example.com"]);
    assert_eq!(
        store.remove_ended_rules(100, true, &|_, _| false).unwrap(),
        [RuleOwner::Global]
    );
    let rows = store.load_owner(&g).unwrap().unwrap().rules;
    assert_eq!(
        (rows[0].text.as_str(), rows[0].position),
        ("- c.example.com", 1)
    );
}

#[test]
fn a_file_that_is_not_a_database_is_named_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.db");
    let garbage = b"this is not sqlite, but someone's data".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("settings.db") && err.contains("not a database"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_database_from_a_newer_release_is_refused() {
    let (_d, path, store) = fresh();
    store.conn.pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("settings.db"));
}

#[test]
fn a_hand_edited_bad_rule_stops_loading_and_names_the_rule() {
    let (_d, _p, mut store) = fresh();
    let id = store
        .add_rule(
            &RuleOwner::Global,
            &rule("- 10.0.0.0/8"),
            None,
            RuleLifetime::Forever,
            1,
        )
        .unwrap()
        .unwrap();
    store
        .conn
        .execute(
            "UPDATE rules SET text = '- 10.0.0.0/33' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let err = store.load().unwrap_err();
    assert!(
        matches!(err, StoreError::BadRule { id: i, .. } if i == id),
        "{err}"
    );
    assert!(err.to_string().contains("10.0.0.0/33"));
}

#[test]
fn a_hand_edited_bad_setting_stops_loading_and_names_it() {
    let (_d, _p, store) = fresh();
    store
        .conn
        .execute(
            "INSERT INTO settings (profile_id, key, value) VALUES (1, 'default_action', '{\"type\":\"bool\",\"value\":true}')",
            [],
        )
        .unwrap();
    let err = store.load().unwrap_err().to_string();
    assert!(
        err.contains("default_action") && err.contains("global"),
        "{err}"
    );
}

#[test]
fn a_rule_until_a_process_exits_ends_with_it_and_at_restart() {
    let (_d, _p, mut store) = fresh();
    let g = RuleOwner::Global;
    let lifetime = RuleLifetime::UntilExit {
        pid: 4242,
        start_time: 77,
    };
    store
        .add_rule(&g, &rule("+ 10.0.0.1"), None, lifetime, 1)
        .unwrap();
    assert_eq!(
        store.load_owner(&g).unwrap().unwrap().rules[0].lifetime,
        lifetime
    );
    assert!(
        store
            .remove_ended_rules(2, false, &|_, _| false)
            .unwrap()
            .is_empty()
    );
    let seen = std::cell::Cell::new(None);
    let exited = |pid, start| {
        seen.set(Some((pid, start)));
        true
    };
    assert_eq!(
        store.remove_ended_rules(2, false, &exited).unwrap(),
        [RuleOwner::Global]
    );
    assert_eq!(seen.get(), Some((4242, 77)));
    store
        .add_rule(&g, &rule("+ 10.0.0.1"), None, lifetime, 1)
        .unwrap();
    assert_eq!(
        store.remove_ended_rules(2, true, &|_, _| false).unwrap(),
        [RuleOwner::Global]
    );
}
