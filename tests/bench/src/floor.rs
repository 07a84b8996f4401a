//! `pcl-bench floor`: the floor arm, the least any NFQUEUE firewall pays. It installs the very
//! rule layout Portcullis uses (`portcullis_intercept::InstalledRules`: only NEW connections
//! are queued, the verdict's mark is saved with CONNMARK, fail-open with `--queue-bypass`) in
//! the network namespace it runs in, and answers every queued packet "allow" at once, with no
//! attribution and no policy.
//!
//! It runs only inside a lab's client namespace (`pcl-bench` starts it there) and stops on
//! SIGTERM or SIGINT, removing its rules; they would vanish with the namespace anyway.

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use portcullis_intercept::{InstalledRules, InterceptConfig, InterceptError, Queue};
use portcullis_protocol::Verdict;

/// Runs the floor handler until SIGTERM or SIGINT.
pub fn run() -> anyhow::Result<()> {
    // Block the stop signals in every thread (threads inherit the mask) and wait for them on
    // one thread, which stops the queue: the main loop then removes the rules and returns.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking SIGTERM/SIGINT")?;

    let config = InterceptConfig::default();
    // As the helper does: bind the queue first, then install the rules that feed it.
    let mut queue = Queue::open(&config).context("binding the packet queue")?;
    let stopper = queue.stopper();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let _signal = signals.wait();
            stopper.stop();
        })
        .context("starting the signal thread")?;
    let mut rules = InstalledRules::install(&config).context("installing the rules")?;
    println!(
        "floor ready: queue {} ({})",
        config.queue_num,
        rules.backend()
    );

    let (mut answered, mut errors) = (0_u64, 0_u64);
    loop {
        match queue.recv() {
            Ok(pending) => {
                if let Err(e) = queue.verdict(pending, Verdict::Allow) {
                    errors += 1;
                    if errors <= 10 {
                        eprintln!("floor: verdict failed: {e}");
                    }
                }
                answered += 1;
            }
            Err(InterceptError::Stopped) => break,
            // As the helper does: a receive error (e.g. the socket buffer overran during a
            // storm, which fail-open covers) is reported and reading goes on.
            Err(e) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("floor: reading the queue failed: {e}");
                }
            }
        }
    }
    rules.remove().context("removing the rules")?;
    println!("floor stopped after {answered} verdicts ({errors} errors)");
    Ok(())
}
