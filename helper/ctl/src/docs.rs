//! `generate-docs` (hidden): writes the man pages and shell completions of this binary from
//! its own clap definitions, so they can never drift from the options it accepts. The
//! packages are built with it (scripts/build-debs); it touches nothing but `DIR`.

use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;

/// Writes `DIR/man/NAME[-SUB…].SECTION` for the command and each visible subcommand, and
/// `DIR/completions/{NAME.bash,_NAME,NAME.fish}`.
pub fn generate(cmd: clap::Command, section: &str, dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, section, &man)?;
    let name = cmd.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    Ok(())
}

fn man_pages(cmd: &clap::Command, section: &str, dir: &Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, section, dir)?;
    }
    let page = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("Portcullis");
    page.generate_to(dir)
        .with_context(|| format!("cannot write the man page {}", page.get_filename()))?;
    Ok(())
}
