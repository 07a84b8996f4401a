//! The command line of the custom `peer_auth` harness: libtest's options select the same
//! cases there as in libtest binaries, and never turn into filters that select nothing.

use std::time::Duration;

use crate::common::args::{self, Args};

const CASES: [&str; 3] = [
    "an_outsider_is_refused_told_why_and_logged",
    "a_member_by_effective_group_is_accepted",
    "a_member_by_supplementary_group_is_accepted",
];

fn parse(line: &[&str]) -> Args {
    args::parse(line.iter().map(|s| (*s).to_owned())).unwrap()
}

fn selected(line: &[&str]) -> Vec<&'static str> {
    let args = parse(line);
    CASES.into_iter().filter(|c| args.selects(c)).collect()
}

#[test]
fn scheduling_and_output_options_are_not_filters() {
    for line in [
        &["--test-threads", "2"][..],
        &["--test-threads=2"],
        &["--nocapture", "--quiet"],
        &["--format", "pretty"],
        &["--format=terse", "-q"],
        &["-Z", "unstable-options"],
        &["-Zunstable-options"],
        &["--color", "never", "--show-output", "--include-ignored"],
        &[],
    ] {
        assert_eq!(selected(line), CASES, "{line:?}");
    }
}

#[test]
fn skip_leaves_out_matching_cases_and_words_filter() {
    assert_eq!(
        selected(&["--skip", "outsider"]),
        [
            "a_member_by_effective_group_is_accepted",
            "a_member_by_supplementary_group_is_accepted"
        ]
    );
    assert_eq!(
        selected(&["--skip=member", "--test-threads", "1"]),
        ["an_outsider_is_refused_told_why_and_logged"]
    );
    assert_eq!(
        selected(&["member", "--skip", "supplementary"]),
        ["a_member_by_effective_group_is_accepted"]
    );
    assert_eq!(
        selected(&["outsider", "effective"]),
        [
            "an_outsider_is_refused_told_why_and_logged",
            "a_member_by_effective_group_is_accepted"
        ],
        "several filters: any may match"
    );
    assert!(selected(&["no_such_case"]).is_empty());
    assert!(selected(&["--ignored"]).is_empty(), "no case is ignored");
}

#[test]
fn exact_matches_whole_names_for_filters_and_skips() {
    assert!(selected(&["--exact", "member"]).is_empty());
    assert_eq!(
        selected(&["--exact", "a_member_by_effective_group_is_accepted"]),
        ["a_member_by_effective_group_is_accepted"]
    );
    assert_eq!(selected(&["--exact", "--skip", "member"]), CASES);
    assert_eq!(
        selected(&["--", "--exact"]),
        Vec::<&str>::new(),
        "after `--` everything is a filter"
    );
}

#[test]
fn list_help_and_mistakes() {
    assert!(parse(&["--list", "--format", "terse"]).list);
    assert!(parse(&["-h"]).help);
    let err = |line: &[&str]| args::parse(line.iter().map(|s| (*s).to_owned())).unwrap_err();
    assert_eq!(err(&["--skip"]), "option --skip needs a value");
    assert_eq!(
        err(&["--test-threads"]),
        "option --test-threads needs a value"
    );
    assert_eq!(err(&["--bogus"]), "unrecognized option: --bogus");
    assert_eq!(err(&["--exact=yes"]), "option --exact takes no value");
    for option in [
        "--skip",
        "--exact",
        "--list",
        "--test-threads",
        "--format",
        "-Z",
    ] {
        assert!(args::USAGE.contains(option), "{option}");
    }
}

#[test]
fn the_summary_is_libtests() {
    assert_eq!(
        args::summary(6, 0, 1, Duration::from_millis(1234)),
        "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out; \
         finished in 1.23s"
    );
    assert_eq!(
        args::summary(4, 2, 0, Duration::ZERO),
        "test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; \
         finished in 0.00s"
    );
}
