//! The batched writer: never blocks, counts what it loses, honours "don't record", clears.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{T0, record};
use portcullis_history::{
    ClassRetention, Clear, DontRecord, Filter, Retention, Store, Writer, WriterConfig,
};

fn config() -> WriterConfig {
    WriterConfig {
        capacity: 1_024,
        batch_max: 100,
        batch_delay: Duration::from_millis(20),
        ..WriterConfig::default()
    }
}

#[test]
fn records_are_written_in_batches_and_visible_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let (writer, aside) = Writer::start(&path, config(), None).unwrap();
    assert!(aside.is_none());
    let sender = writer.sender();
    for i in 0..250 {
        assert!(sender.record(record(i, "/usr/bin/curl")));
    }
    writer.flush().unwrap();
    let reader = Store::open_reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 250);
    let stats = writer.stats();
    assert_eq!((stats.written, stats.lost, stats.failed), (250, 0, 0));
}

#[test]
fn a_partial_batch_is_committed_after_the_batch_delay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let (writer, _) = Writer::start(&path, config(), None).unwrap();
    writer.record(record(1, "/usr/bin/curl"));
    let reader = Store::open_reader(&path).unwrap();
    let start = Instant::now();
    while reader.count().unwrap() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_channel_counts_records_as_lost_without_blocking() {
    // The predicate runs on the writer thread: holding it there makes the channel fill.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new(AtomicBool::new(false));
    let (g, e) = (Arc::clone(&gate), Arc::clone(&entered));
    let hold: DontRecord = Arc::new(move |_app: &str| {
        e.store(true, Ordering::SeqCst);
        let (lock, cv) = &*g;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        false
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        capacity: 4,
        ..config()
    };
    let (writer, _) = Writer::start(&dir.path().join("h.sqlite3"), cfg, Some(hold)).unwrap();
    let sender = writer.sender();
    assert!(sender.record(record(0, "/usr/bin/a")));
    while !entered.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let accepted = (1..=10)
        .filter(|i| sender.record(record(*i, "/usr/bin/a")))
        .count();
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "record() blocked"
    );
    assert_eq!(accepted, 4);
    assert_eq!(sender.stats().lost, 6);
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    writer.flush().unwrap();
    let stats = writer.stats();
    assert_eq!((stats.written, stats.lost), (5, 6));
}

#[test]
fn apps_that_are_not_recorded_leave_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let skip: DontRecord = Arc::new(|app: &str| app == "/usr/bin/private");
    let (writer, _) = Writer::start(&path, config(), Some(skip)).unwrap();
    for i in 0..100 {
        writer.record(record(
            i,
            if i % 2 == 0 {
                "/usr/bin/private"
            } else {
                "/usr/bin/curl"
            },
        ));
    }
    writer.flush().unwrap();
    let reader = Store::open_reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 50);
    let private = Filter {
        search: Some("private".into()),
        ..Filter::default()
    };
    assert!(reader.query(&private, None, 10).unwrap().rows.is_empty());
    assert_eq!(writer.stats().not_recorded, 50);
    // Turned off again: recorded again.
    writer.set_dont_record(None).unwrap();
    writer.record(record(200, "/usr/bin/private"));
    writer.flush().unwrap();
    assert_eq!(reader.query(&private, None, 10).unwrap().rows.len(), 1);
}

#[test]
fn clear_and_retention_through_the_writer_include_queued_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let cfg = WriterConfig {
        retention: Retention {
            allowed: ClassRetention {
                max_age: Some(Duration::from_secs(10)),
                max_rows: None,
            },
            blocked: ClassRetention {
                max_age: Some(Duration::from_secs(10)),
                max_rows: None,
            },
            bandwidth_max_age: None,
        },
        batch_delay: Duration::from_secs(60),
        ..config()
    };
    let (writer, _) = Writer::start(&path, cfg, None).unwrap();
    for i in 0..50 {
        writer.record(record(i, "/usr/bin/curl"));
        writer.record(record(i, "/usr/bin/wget"));
    }
    // Queued, not yet committed (long batch delay): clear must see them.
    let removed = writer.clear(Clear::App("/usr/bin/wget".into())).unwrap();
    assert_eq!(removed.rows, 50);
    let removed = writer.apply_retention(T0 + 50_000).unwrap();
    assert_eq!(removed.rows, 40);
    let reader = Store::open_reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 10);
    writer.clear(Clear::All).unwrap();
    assert_eq!(reader.count().unwrap(), 0);
}

#[test]
fn dropping_the_writer_writes_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let cfg = WriterConfig {
        batch_delay: Duration::from_secs(60),
        ..config()
    };
    let (writer, _) = Writer::start(&path, cfg, None).unwrap();
    let sender = writer.sender();
    for i in 0..30 {
        sender.record(record(i, "/usr/bin/curl"));
    }
    drop(writer);
    assert_eq!(Store::open_reader(&path).unwrap().count().unwrap(), 30);
    // The writer is gone: records are counted as lost, not blocked on.
    assert!(!sender.record(record(99, "/usr/bin/curl")));
    assert_eq!(sender.stats().lost, 1);
}

#[test]
fn a_database_corrupted_while_running_is_moved_aside_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let cfg = WriterConfig {
        capacity: 8_192,
        ..config()
    };
    let (writer, _) = Writer::start(&path, cfg, None).unwrap();
    for i in 0..3_000 {
        writer.record(record(i, &format!("/usr/bin/app{}", i % 300)));
    }
    writer.flush().unwrap();
    writer.clear(Clear::All).unwrap(); // checkpoints: everything is in the main file now
    for i in 0..3_000 {
        writer.record(record(i, &format!("/usr/bin/app{}", i % 300)));
    }
    writer.flush().unwrap();
    // Trash every page after the first under the writer's feet, and its WAL and WAL index
    // (so its page cache is invalidated and the damage is read).
    let wal = dir.path().join("h.sqlite3-wal");
    let shm = dir.path().join("h.sqlite3-shm");
    for (p, keep) in [(&path, 4096), (&wal, 0), (&shm, 0)] {
        if let Ok(mut bytes) = std::fs::read(p) {
            for b in bytes.iter_mut().skip(keep) {
                *b = 0x5A;
            }
            std::fs::write(p, &bytes).unwrap();
        }
    }
    let mut moved = false;
    for round in 0..20u32 {
        for i in 0..200 {
            writer.record(record(
                10_000 + round * 200 + i,
                &format!("/usr/bin/new{i}"),
            ));
        }
        let _ = writer.flush();
        let _ = writer.clear(Clear::App("/usr/bin/app7".into()));
        if writer.stats().moved_aside > 0 {
            moved = true;
            break;
        }
    }
    assert!(moved, "corruption never detected: {:?}", writer.stats());
    let asides: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert!(!asides.is_empty());
    writer.record(record(1, "/usr/bin/after"));
    writer.flush().unwrap();
    let reader = Store::open_reader(&path).unwrap();
    assert!(reader.count().unwrap() >= 1);
}

#[test]
fn a_flood_stops_at_the_size_cap_and_row_retention_runs_between_timed_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    // A small file cap: the flood fails past it (counted) and the file stops growing.
    let cap = 512 * 1024;
    let (writer, _) = Writer::start(
        &path,
        WriterConfig {
            max_bytes: Some(cap),
            ..config()
        },
        None,
    )
    .unwrap();
    for round in 0..40u32 {
        for i in 0..500u32 {
            let mut r = record(round * 500 + i, "/usr/bin/curl");
            r.domain = Some(format!("x{round}-{i}.flood.example"));
            while !writer.record(r.clone()) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        writer.flush().unwrap();
    }
    let stats = writer.stats();
    assert!(stats.failed > 0, "{stats:?}");
    assert!(std::fs::metadata(&path).unwrap().len() <= cap + 64 * 1024);
    // Queries still work on the full database.
    assert!(Store::open_reader(&path).unwrap().count().unwrap() > 0);
    drop(writer);

    // Row limits are applied after every `retention_every_rows` rows, not only on the timer.
    let path = dir.path().join("r.sqlite3");
    let keep = ClassRetention {
        max_age: None,
        max_rows: Some(300),
    };
    let (writer, _) = Writer::start(
        &path,
        WriterConfig {
            retention: Retention {
                allowed: keep,
                blocked: keep,
                bandwidth_max_age: None,
            },
            retention_every: Duration::from_secs(3600),
            retention_every_rows: 1_000,
            ..config()
        },
        None,
    )
    .unwrap();
    for i in 0..3_000 {
        while !writer.record(record(i, "/usr/bin/curl")) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    writer.flush().unwrap();
    let rows = Store::open_reader(&path).unwrap().count().unwrap();
    assert!(rows <= 600 + 1_000, "{rows} rows after the flood");
}

#[test]
fn readers_leave_a_corrupt_file_at_once_and_read_the_fresh_one() {
    // Paths this process holds open whose name contains `part`.
    let open_files_named = |part: &str| -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.contains(part))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let cfg = WriterConfig {
        capacity: 8_192,
        ..config()
    };
    let (writer, _) = Writer::start(&path, cfg, None).unwrap();
    let reader = writer.reader();
    for i in 0..2_000 {
        writer.record(record(i, &format!("/usr/bin/app{}", i % 300)));
    }
    writer.flush().unwrap();
    writer.clear(Clear::All).unwrap();
    for i in 0..2_000 {
        writer.record(record(i, &format!("/usr/bin/app{}", i % 300)));
    }
    writer.flush().unwrap();
    assert_eq!(reader.read(Store::count).unwrap(), 2_000);
    assert!(reader.is_open());
    // Damage the file under both connections until the writer notices and moves it aside.
    let wal = dir.path().join("h.sqlite3-wal");
    let shm = dir.path().join("h.sqlite3-shm");
    for (p, keep) in [(&path, 4096), (&wal, 0), (&shm, 0)] {
        if let Ok(mut bytes) = std::fs::read(p) {
            for b in bytes.iter_mut().skip(keep) {
                *b = 0x5A;
            }
            std::fs::write(p, &bytes).unwrap();
        }
    }
    for round in 0..20u32 {
        for i in 0..200 {
            writer.record(record(
                10_000 + round * 200 + i,
                &format!("/usr/bin/new{i}"),
            ));
        }
        let _ = writer.flush();
        let _ = writer.clear(Clear::App("/usr/bin/app7".into()));
        if writer.stats().moved_aside > 0 {
            break;
        }
    }
    assert!(writer.stats().moved_aside > 0, "{:?}", writer.stats());
    // At once, before any read: nothing holds the moved file open any more.
    assert!(!reader.is_open());
    assert_eq!(open_files_named(".corrupt-"), Vec::<String>::new());
    // The next read is of the fresh database: what was written after the move, nothing
    // of the old file.
    writer.record(record(1, "/usr/bin/after"));
    writer.flush().unwrap();
    let rows = reader
        .read(|s| s.query(&Filter::default(), None, 1_000))
        .unwrap()
        .rows;
    assert!(rows.iter().any(|r| r.record.app == "/usr/bin/after"));
    assert!(
        rows.iter()
            .all(|r| !r.record.app.starts_with("/usr/bin/app"))
    );
    assert!(reader.is_open());
}
