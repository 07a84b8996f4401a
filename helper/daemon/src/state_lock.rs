//! The state lock: one `portcullisd` per state directory. It is an advisory `flock` on
//! `<state_dir>/portcullisd.lock`, held for the helper's lifetime and released by the kernel
//! when the process dies however it dies, so a crash never leaves it stuck. Two helpers on the
//! same settings would fight over the socket and the database; `recover` takes it too, so it
//! never undoes the changes of a helper that is running.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

/// Held while this process owns the state directory.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

impl StateLock {
    /// Takes the lock, or fails at once naming the directory when another process holds it.
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        let path = state_dir.join("portcullisd.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StateLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
                "another portcullisd is running with state directory {}",
                state_dir.display()
            ),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another portcullisd"), "{err}");
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
