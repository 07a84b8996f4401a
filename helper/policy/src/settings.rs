//! Setting resolution: the value in force for a key is the app's own value (for keys an app
//! may override), else the global value, else Portcullis' built-in default, and every
//! resolved value says which of the three it came from. This module owns the built-in
//! defaults and that order; it must not load or store settings (the daemon does) nor decide
//! verdicts.

use std::collections::BTreeMap;

use portcullis_protocol::{
    Action, ListCategory, SettingEntry, SettingKey, SettingSource, SettingValue, SettingsView,
};

/// The settings one profile (an app, or the global profile) sets explicitly.
pub type Overrides = BTreeMap<SettingKey, SettingValue>;

/// Portcullis' built-in default for `key`: what applies when neither the app nor the global
/// profile sets it.
pub fn builtin_default(key: SettingKey) -> SettingValue {
    match key {
        // Nothing breaks on install; the user tightens from there.
        SettingKey::DefaultAction => SettingValue::Action(Action::Allow),
        // Desktop apps rarely need to accept connections; servers are the exception to opt in.
        SettingKey::BlockInbound => SettingValue::Bool(true),
        SettingKey::BlockScopes => SettingValue::Scopes(Vec::new()),
        SettingKey::PromptTimeoutSecs => SettingValue::Seconds(30),
        // An unanswered prompt must not let traffic through behind the user's back.
        SettingKey::PromptFallback => SettingValue::Action(Action::Block),
        // A stopped or crashed helper must not cut the machine off the network.
        SettingKey::FailOpen => SettingValue::Bool(true),
        // Apps' own resolvers would bypass every DNS rule: make them fall back to ours.
        SettingKey::BlockDoh => SettingValue::Bool(true),
        // History stays on the machine; an app the user wants forgotten opts out.
        SettingKey::RecordHistory => SettingValue::Bool(true),
        // Out of the box every app is protected from known ads, trackers, malware and scams.
        SettingKey::FilterLists => SettingValue::Categories(ListCategory::ALL.to_vec()),
    }
}

/// Resolves `key`: the app's value if the key is per-app and the app sets it, else the global
/// value, else the built-in default.
///
/// A stored value that does not fit its key (e.g. a boolean for `default_action`, from a
/// damaged database) is skipped as if unset, so the decision code always sees a well-typed
/// value and never has to guess.
pub fn resolve(key: SettingKey, app: Option<&Overrides>, global: &Overrides) -> SettingEntry {
    let fitting = |profile: &Overrides| profile.get(&key).filter(|v| v.check(key).is_ok()).cloned();
    let from_app = app.filter(|_| key.per_app()).and_then(fitting);
    let (value, source) = match (from_app, fitting(global)) {
        (Some(v), _) => (v, SettingSource::App),
        (None, Some(v)) => (v, SettingSource::Global),
        (None, None) => (builtin_default(key), SettingSource::Default),
    };
    SettingEntry { key, value, source }
}

/// Every key in [`SettingKey::ALL`] order, resolved for one app (`app_key` and its
/// overrides) or, with `app_key` and `app` both `None`, for the global profile.
pub fn settings_view(
    app_key: Option<&str>,
    app: Option<&Overrides>,
    global: &Overrides,
) -> SettingsView {
    SettingsView {
        app: app_key.map(str::to_owned),
        entries: SettingKey::ALL
            .into_iter()
            .map(|key| resolve(key, app, global))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_protocol::Scope;

    #[test]
    fn builtin_defaults_are_the_documented_ones_and_fit_their_keys() {
        assert_eq!(
            builtin_default(SettingKey::DefaultAction),
            SettingValue::Action(Action::Allow)
        );
        assert_eq!(
            builtin_default(SettingKey::BlockInbound),
            SettingValue::Bool(true)
        );
        assert_eq!(
            builtin_default(SettingKey::BlockScopes),
            SettingValue::Scopes(vec![])
        );
        assert_eq!(
            builtin_default(SettingKey::PromptTimeoutSecs),
            SettingValue::Seconds(30)
        );
        assert_eq!(
            builtin_default(SettingKey::PromptFallback),
            SettingValue::Action(Action::Block)
        );
        assert_eq!(
            builtin_default(SettingKey::FailOpen),
            SettingValue::Bool(true)
        );
        for key in SettingKey::ALL {
            builtin_default(key).check(key).unwrap();
        }
    }

    #[test]
    fn app_beats_global_beats_default() {
        let key = SettingKey::DefaultAction;
        let mut global = Overrides::new();
        let mut app = Overrides::new();
        let entry = resolve(key, Some(&app), &global);
        assert_eq!(entry.value, SettingValue::Action(Action::Allow));
        assert_eq!(entry.source, SettingSource::Default);

        global.insert(key, SettingValue::Action(Action::Block));
        let entry = resolve(key, Some(&app), &global);
        assert_eq!(entry.value, SettingValue::Action(Action::Block));
        assert_eq!(entry.source, SettingSource::Global);

        app.insert(key, SettingValue::Action(Action::Ask));
        let entry = resolve(key, Some(&app), &global);
        assert_eq!(
            entry,
            SettingEntry {
                key,
                value: SettingValue::Action(Action::Ask),
                source: SettingSource::App
            }
        );
        // Without the app, its value does not count.
        assert_eq!(resolve(key, None, &global).source, SettingSource::Global);
    }

    #[test]
    fn global_only_keys_ignore_app_values() {
        let key = SettingKey::FailOpen;
        let app = Overrides::from([(key, SettingValue::Bool(false))]);
        let global = Overrides::new();
        let entry = resolve(key, Some(&app), &global);
        assert_eq!(entry.value, SettingValue::Bool(true));
        assert_eq!(entry.source, SettingSource::Default);
    }

    #[test]
    fn values_that_do_not_fit_their_key_are_skipped() {
        let key = SettingKey::DefaultAction;
        let app = Overrides::from([(key, SettingValue::Bool(false))]);
        let global = Overrides::from([(key, SettingValue::Seconds(3))]);
        let entry = resolve(key, Some(&app), &global);
        assert_eq!(entry.value, SettingValue::Action(Action::Allow));
        assert_eq!(entry.source, SettingSource::Default);
    }

    #[test]
    fn view_lists_every_key_in_order_with_sources() {
        let global = Overrides::from([(
            SettingKey::BlockScopes,
            SettingValue::Scopes(vec![Scope::P2p]),
        )]);
        let app = Overrides::from([(SettingKey::BlockInbound, SettingValue::Bool(false))]);
        let view = settings_view(Some("/usr/bin/curl"), Some(&app), &global);
        assert_eq!(view.app.as_deref(), Some("/usr/bin/curl"));
        let keys: Vec<SettingKey> = view.entries.iter().map(|e| e.key).collect();
        assert_eq!(keys, SettingKey::ALL.to_vec());
        let source_of = |k: SettingKey| view.entries.iter().find(|e| e.key == k).unwrap().source;
        assert_eq!(source_of(SettingKey::BlockInbound), SettingSource::App);
        assert_eq!(source_of(SettingKey::BlockScopes), SettingSource::Global);
        assert_eq!(source_of(SettingKey::DefaultAction), SettingSource::Default);

        let global_view = settings_view(None, None, &global);
        assert_eq!(global_view.app, None);
        assert_eq!(global_view.entries.len(), SettingKey::ALL.len());
    }
}
