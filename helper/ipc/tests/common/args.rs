//! The command line of a test binary with its own `main` (`harness = false`, `peer_auth`),
//! read the way libtest reads it, so that `cargo test -p portcullis-ipc -- …` selects the same
//! cases there as in every other test binary: bare words are substring filters (a case runs if
//! any matches), `--skip X` leaves out cases containing X, `--exact` makes both whole-name
//! matches, `--list` lists, `--ignored` selects nothing (no case is ignored). Options that
//! concern only libtest's own scheduling and output (`--test-threads N`, `--nocapture`,
//! `--format X`, `-Z X`, …) are accepted and ignored; an unknown option is an error rather than
//! a guess. Also the summary line, in libtest's format so that tools adding up `cargo test`
//! output count these cases. It must not run anything.

use std::time::Duration;

/// Options that take a value (`--opt V` or `--opt=V`).
const WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--format",
    "-Z",
    "--color",
    "--logfile",
    "--shuffle-seed",
];

/// Options without a value that change nothing here.
const IGNORED_FLAGS: &[&str] = &[
    "--nocapture",
    "--no-capture",
    "--show-output",
    "--test",
    "--bench",
    "--force-run-in-process",
    "--shuffle",
    "--report-time",
    "--ensure-time",
];

/// What the command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    /// Bare words: a case runs if its name contains one (equals one, with `--exact`).
    pub filters: Vec<String>,
    /// `--skip` values: a case containing one (equal to one, with `--exact`) is left out.
    pub skips: Vec<String>,
    /// `--exact`.
    pub exact: bool,
    /// `--quiet` / `-q`: one character per case instead of a line.
    pub quiet: bool,
    /// `--list`: print the selected cases instead of running them.
    pub list: bool,
    /// `--ignored`: run only ignored cases, i.e. none.
    pub ignored_only: bool,
    /// `--help` / `-h`.
    pub help: bool,
}

/// Reads libtest-style arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    let mut only_words = false;
    while let Some(arg) = args.next() {
        if only_words || !arg.starts_with('-') || arg == "-" {
            parsed.filters.push(arg);
            continue;
        }
        if arg == "--" {
            only_words = true;
            continue;
        }
        if arg.len() > 2 && arg.starts_with("-Z") {
            // `-Zunstable-options`: the value glued on.
            continue;
        }
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if arg.starts_with("--") => (option, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        if WITH_VALUE.contains(&option) {
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| format!("option {option} needs a value"))?,
            };
            if option == "--skip" {
                parsed.skips.push(value);
            }
            continue;
        }
        if inline.is_some() {
            return Err(format!("option {option} takes no value"));
        }
        match option {
            "--exact" => parsed.exact = true,
            "--quiet" | "-q" => parsed.quiet = true,
            "--list" => parsed.list = true,
            "--ignored" => parsed.ignored_only = true,
            "--include-ignored" => {}
            "--help" | "-h" => parsed.help = true,
            o if IGNORED_FLAGS.contains(&o) => {}
            o => return Err(format!("unrecognized option: {o}")),
        }
    }
    Ok(parsed)
}

impl Args {
    /// Whether the case called `name` runs.
    pub fn selects(&self, name: &str) -> bool {
        let matches = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        !self.ignored_only
            && (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skips.iter().any(matches)
    }
}

/// Libtest's usage, shortened to what [`parse`] understands.
pub const USAGE: &str = "usage: peer_auth [OPTIONS] [FILTERS...]\n\
    \n\
    FILTERS     run only cases whose name contains one of them\n\
    --skip X    leave out cases whose name contains X (repeatable)\n\
    --exact     filters and --skip match whole names\n\
    --list      list the selected cases\n\
    --quiet     one character per case\n\
    accepted and ignored: --test-threads N, --nocapture, --show-output, --format X, -Z X,\n\
    --color X, --include-ignored (--ignored selects nothing: no case is ignored)";

/// The closing line, as libtest prints it.
pub fn summary(passed: usize, failed: usize, filtered_out: usize, elapsed: Duration) -> String {
    format!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; \
         {filtered_out} filtered out; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        elapsed.as_secs_f64()
    )
}
