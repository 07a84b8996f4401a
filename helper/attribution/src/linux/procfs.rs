//! The kernel's per-process files under `/proc`, read and parsed: `stat`, `status`, `cgroup`,
//! `cmdline`, `environ`, the `exe` and `fd/N` links, and `/proc/self/mountinfo`; also
//! `/etc/passwd` for user names. Every parser is a pure function over the file's bytes or text
//! that returns `None` for what it cannot understand: these files come from the kernel (or, in
//! tests, from a fake tree) and a malformed one must never panic. [`ProcFs`] does the reading,
//! relative to a configurable root so that tests can point it at a fake tree. This module
//! decides nothing about sockets or apps.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

/// Most bytes read from `cmdline`: command lines can be megabytes long; the first 32 KiB name
/// the program and its important arguments.
const CMDLINE_LIMIT: u64 = 32 * 1024;
/// Most bytes read from `environ` when looking for `APPIMAGE=` (which the AppImage runtime
/// appends, so it comes last): environments are a few KiB; one this large is not an app's.
const ENVIRON_LIMIT: u64 = 256 * 1024;
/// Most bytes read from the small text files (`stat`, `status`, `cgroup`, `.flatpak-info`).
const SMALL_LIMIT: u64 = 256 * 1024;
/// The first size of a reused read buffer: every small `/proc` file of a process fits.
const FIRST_BUFFER: usize = 4096;

/// The fields of `/proc/PID/stat` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The process id (first field).
    pub pid: u32,
    /// The command name (`comm`), without the parentheses; it may contain spaces and `)`.
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// The parent's pid (0 for pid 1 and kernel threads' root).
    pub ppid: u32,
    /// When the process started, in clock ticks after boot (field 22): with the pid, it
    /// identifies a process across pid reuse.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The command name sits between the first `(` and the *last* `)`,
/// since it may itself contain spaces and parentheses.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let mut state_field = rest.next()?.chars();
    let state = state_field.next()?;
    if state_field.next().is_some() {
        return None;
    }
    let ppid = rest.next()?.parse().ok()?;
    // Fields after comm, counting `state` as 0: starttime is overall field 22, so index 19;
    // two are consumed above.
    let start_time = rest.nth(17)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        start_time,
    })
}

/// The uids of `/proc/PID/status`' `Uid:` line: real, effective, saved set, filesystem.
pub(crate) fn parse_status_uids(text: &str) -> Option<[u32; 4]> {
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_ascii_whitespace().map(|f| f.parse::<u32>().ok());
    let uids = [ids.next()??, ids.next()??, ids.next()??, ids.next()??];
    if ids.next().is_some() {
        return None;
    }
    Some(uids)
}

/// The process' cgroup path from `/proc/PID/cgroup`: the unified (v2) hierarchy's line
/// `0::PATH`, or on a host without one, the `name=systemd` v1 hierarchy, which systemd keeps in
/// the same shape. Lines are `ID:CONTROLLERS:PATH`; the path may contain `:`.
pub(crate) fn parse_cgroup(text: &str) -> Option<String> {
    let mut systemd_v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            return Some(path.to_owned());
        }
        if controllers == "name=systemd" && systemd_v1.is_none() {
            systemd_v1 = Some(path.to_owned());
        }
    }
    systemd_v1
}

/// Splits `/proc/PID/cmdline` (NUL-separated, usually NUL-terminated) into arguments, lossily
/// decoded as UTF-8. A process that rewrote its command line into one string gives one element.
pub(crate) fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The value of `key` in a NUL-separated environment block (`/proc/PID/environ`); the first
/// definition wins, as with `getenv`.
pub(crate) fn environ_value(bytes: &[u8], key: &[u8]) -> Option<OsString> {
    bytes.split(|&b| b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(key)?;
        let value = rest.strip_prefix(b"=")?;
        Some(OsString::from_vec(value.to_vec()))
    })
}

/// The socket inode from an `fd/N` link target: `socket:[12345]`; `None` for anything else.
pub(crate) fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Splits an `exe` link target into the path and whether the file was deleted (replaced or
/// removed since the process started: the kernel appends ` (deleted)`).
pub(crate) fn split_deleted(target: &OsStr) -> (PathBuf, bool) {
    const SUFFIX: &[u8] = b" (deleted)";
    let bytes = target.as_bytes();
    match bytes.strip_suffix(SUFFIX) {
        Some(path) if !path.is_empty() => (PathBuf::from(OsStr::from_bytes(path)), true),
        _ => (PathBuf::from(target), false),
    }
}

/// Undoes the octal escapes (`\040` for a space, `\011`, `\012`, `\134`) of mountinfo fields.
fn unescape_mount_field(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            if b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = d.iter().fold(0_u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                u8::try_from(v).ok()
            } else {
                None
            }
        });
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// Where the unified (v2) cgroup hierarchy is mounted, from `/proc/self/mountinfo` text:
/// `/sys/fs/cgroup` on pure-v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones. Prefers a
/// mount of the hierarchy's root (a bind mount of a sub-cgroup also has type `cgroup2`).
pub(crate) fn parse_cgroup2_mount(text: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in text.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_ascii_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = left.split_ascii_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        if !mount_point.starts_with('/') {
            continue;
        }
        let path = PathBuf::from(unescape_mount_field(mount_point));
        if root == "/" {
            return Some(path);
        }
        fallback.get_or_insert(path);
    }
    fallback
}

/// User names by uid from `/etc/passwd` text (`name:password:uid:gid:gecos:home:shell`); the
/// first entry for a uid wins. Comments and NIS `+`/`-` lines are skipped.
pub(crate) fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if let Ok(uid) = uid.parse::<u32>() {
            users.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    users
}

/// The application id in a Flatpak sandbox's `/.flatpak-info` (`[Application]` `name=`).
/// The uid and inode of the ping socket with identifier `id` in `/proc/net/icmp{,6}` text
/// (`sl local_address rem_address st … uid timeout inode …`; the local "port" is the id, in
/// hex). Malformed lines are skipped.
pub(crate) fn find_ping_socket(text: &str, id: u16) -> Option<(u32, u64)> {
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let (_, port) = local.rsplit_once(':')?;
        if u16::from_str_radix(port, 16).ok()? != id {
            return None;
        }
        let uid = fields.get(7)?.parse().ok()?;
        let inode = fields.get(9)?.parse().ok()?;
        Some((uid, inode))
    })
}

pub(crate) fn parse_flatpak_info(text: &str) -> Option<String> {
    let mut in_application = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_application = line == "[Application]";
            continue;
        }
        if in_application
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            let value = value.trim();
            return (!value.is_empty()).then(|| value.to_owned());
        }
    }
    None
}

/// Reads the files of `/proc` (or of a fake tree in tests) for one pid at a time.
#[derive(Debug, Clone)]
pub(crate) struct ProcFs {
    root: PathBuf,
    /// Whether `root` is the kernel's `/proc`. Its `stat`, `status` and `cgroup` (one record
    /// each) and `cmdline` are generated whole: a `read` that returns less than asked has
    /// reached the end, and the `read` that would return 0 is saved. (Not so for files of many
    /// records, such as `mountinfo`: they come a page at a time.)
    generated: bool,
}

impl ProcFs {
    /// A reader of the proc filesystem mounted at `root` (normally `/proc`).
    pub(crate) fn new(root: PathBuf) -> ProcFs {
        ProcFs {
            generated: root == Path::new("/proc"),
            root,
        }
    }

    /// At most `limit` bytes of `ROOT/PID/NAME`, one of the files generated whole, read into
    /// `buf` (see [`read_into`]).
    fn read_pid_file<'b>(
        &self,
        pid: u32,
        name: &str,
        limit: u64,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        read_into(&self.pid_path(pid, name), limit, self.generated, buf)
    }

    /// `ROOT/PID/NAME`.
    pub(crate) fn pid_path(&self, pid: u32, name: &str) -> PathBuf {
        let mut path = self.root.join(pid.to_string());
        if !name.is_empty() {
            path.push(name);
        }
        path
    }

    /// The root itself (to list pids).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `stat`, parsed; an unparsable file is reported as `InvalidData`.
    #[cfg(test)]
    pub(crate) fn stat(&self, pid: u32) -> io::Result<Stat> {
        self.stat_in(pid, &mut Vec::new())
    }

    /// `stat`, parsed, read into `buf` (reused across calls: no allocation once it has grown);
    /// an unparsable file is reported as `InvalidData`.
    pub(crate) fn stat_in(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Stat> {
        let bytes = self.read_pid_file(pid, "stat", SMALL_LIMIT, buf)?;
        parse_stat(&String::from_utf8_lossy(bytes))
            .ok_or_else(|| invalid("unparsable /proc/PID/stat"))
    }

    /// The raw `exe` link target (with a ` (deleted)` suffix if there is one).
    pub(crate) fn exe_raw(&self, pid: u32) -> io::Result<OsString> {
        std::fs::read_link(self.pid_path(pid, "exe")).map(PathBuf::into_os_string)
    }

    /// The socket inode that descriptor `fd` of `pid` refers to, if it is a socket.
    pub(crate) fn fd_socket(&self, pid: u32, fd: u32) -> Option<u64> {
        let link = std::fs::read_link(self.pid_path(pid, "fd").join(fd.to_string())).ok()?;
        parse_socket_link(link.as_os_str().as_bytes())
    }

    /// The command line (at most 32 KiB of it), read into `buf`.
    pub(crate) fn cmdline_in(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Vec<String>> {
        self.read_pid_file(pid, "cmdline", CMDLINE_LIMIT, buf)
            .map(parse_cmdline)
    }

    /// The effective uid from `status`, read into `buf`.
    pub(crate) fn effective_uid_in(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<u32> {
        let bytes = self.read_pid_file(pid, "status", SMALL_LIMIT, buf)?;
        parse_status_uids(&String::from_utf8_lossy(bytes))
            .map(|[_, effective, _, _]| effective)
            .ok_or_else(|| invalid("no Uid line in /proc/PID/status"))
    }

    /// The cgroup path (see [`parse_cgroup`]), read into `buf`; empty if the file names none.
    pub(crate) fn cgroup_in(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<String> {
        let bytes = self.read_pid_file(pid, "cgroup", SMALL_LIMIT, buf)?;
        Ok(parse_cgroup(&String::from_utf8_lossy(bytes)).unwrap_or_default())
    }

    /// One variable of the process' initial environment.
    pub(crate) fn environ_value(&self, pid: u32, key: &str) -> io::Result<Option<OsString>> {
        read_bytes(&self.pid_path(pid, "environ"), ENVIRON_LIMIT)
            .map(|b| environ_value(&b, key.as_bytes()))
    }

    /// The text of `/.flatpak-info` as the process sees its root.
    pub(crate) fn flatpak_info(&self, pid: u32) -> io::Result<String> {
        read_text(&self.pid_path(pid, "root/.flatpak-info"), SMALL_LIMIT)
    }

    /// The ping sockets (ICMP datagram sockets) of the calling thread's network namespace:
    /// `/proc/thread-self/net/icmp` or `icmp6`.
    pub(crate) fn ping_sockets(&self, v6: bool) -> io::Result<String> {
        let name = if v6 {
            "thread-self/net/icmp6"
        } else {
            "thread-self/net/icmp"
        };
        read_text(&self.root().join(name), 4 * 1024 * 1024)
    }

    /// The process's security (AppArmor) label, e.g. `snap.spotify.spotify (enforce)`.
    pub(crate) fn security_label(&self, pid: u32) -> io::Result<String> {
        read_text(&self.pid_path(pid, "attr/current"), SMALL_LIMIT)
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads at most `limit` bytes of `path`.
pub(crate) fn read_bytes(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Reads at most `limit` bytes of `path` into `buf` and returns them. `buf` is scratch memory
/// kept between calls: it only grows (doubling, up to `limit`), is never cleared, and reads go
/// straight into it, so a reader of many small files allocates nothing once it has grown. With
/// `short_read_ends`, a read that returns less than asked is taken as the end of the file.
pub(crate) fn read_into<'b>(
    path: &Path,
    limit: u64,
    short_read_ends: bool,
    buf: &'b mut Vec<u8>,
) -> io::Result<&'b [u8]> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    loop {
        if filled >= buf.len() {
            if filled >= limit {
                break;
            }
            let grown = filled.saturating_mul(2).clamp(FIRST_BUFFER, limit);
            buf.resize(grown, 0);
        }
        let end = buf.len().min(limit);
        let Some(free) = buf.get_mut(filled..end).filter(|f| !f.is_empty()) else {
            break;
        };
        let asked = free.len();
        match file.read(free) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if short_read_ends && n < asked {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.get(..filled).unwrap_or_default())
}

/// Reads at most `limit` bytes of `path` as (lossy) UTF-8.
pub(crate) fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    read_bytes(path, limit).map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAT: &str = "1234 (my (weird) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 \
                        1 0 987654 12345678 100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 \
                        17 1 0 0 0 0 0\n";

    #[test]
    fn stat_with_spaces_and_parentheses_in_comm() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "my (weird) app");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987_654);
    }

    #[test]
    fn stat_of_this_process_parses() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.pid, std::process::id());
        assert!(s.start_time > 0);
    }

    #[test]
    fn stat_rejects_malformed() {
        for bad in [
            "",
            "1234",
            "1234 (x",
            "1234 x) S 1",
            ") 1234 (x S 1 2",
            "abc (x) S 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 5",
            "1 (x) S 1 1 1",
            "1 (x) SS 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 5",
            "1 (x) S -1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 5",
            "1 (x) S 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 notanumber",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        // The shortest valid line.
        assert!(parse_stat("1 (x) S 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 5").is_some());
    }

    #[test]
    fn reads_reuse_the_buffer_and_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..10_000_u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            read_into(&path, 1 << 20, false, &mut buf).unwrap(),
            &content[..]
        );
        let grown = buf.len();
        assert_eq!(
            read_into(&path, 100, false, &mut buf).unwrap(),
            &content[..100]
        );
        assert_eq!(buf.len(), grown, "never shrinks");
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(
            read_into(&path, 1 << 20, false, &mut buf).unwrap(),
            b"short"
        );
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read_into(&path, 1 << 20, false, &mut buf).unwrap(), b"");
        assert!(read_into(&dir.path().join("none"), 10, false, &mut buf).is_err());
        // The files of /proc that a short read ends read whole, as with read_to_end.
        for short_read_ends in [false, true] {
            for name in ["cgroup", "cmdline"] {
                let path = Path::new("/proc/self").join(name);
                let read = read_into(&path, SMALL_LIMIT, short_read_ends, &mut buf).unwrap();
                assert_eq!(read, &std::fs::read(&path).unwrap()[..], "{name}");
            }
            let stat = read_into(
                Path::new("/proc/self/stat"),
                SMALL_LIMIT,
                short_read_ends,
                &mut buf,
            );
            let stat = String::from_utf8_lossy(stat.unwrap()).into_owned();
            assert!(
                stat.ends_with('\n') && parse_stat(&stat).is_some(),
                "{stat}"
            );
            let status = read_into(
                Path::new("/proc/self/status"),
                SMALL_LIMIT,
                short_read_ends,
                &mut buf,
            );
            let status = String::from_utf8_lossy(status.unwrap()).into_owned();
            // Its last line.
            assert!(status.contains("\nnonvoluntary_ctxt_switches:"), "{status}");
        }
    }

    #[test]
    fn status_uids() {
        let text = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t1000\t0\n\
                    Gid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_uids(text), Some([1000, 0, 1000, 0]));
        assert_eq!(parse_status_uids("Name:\tx\n"), None);
        assert_eq!(parse_status_uids("Uid:\t1\t2\t3\n"), None);
        assert_eq!(parse_status_uids("Uid:\t1\t2\t3\t4\t5\n"), None);
        assert_eq!(parse_status_uids("Uid:\ta\tb\tc\td\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_status_uids(&own).is_some());
    }

    #[test]
    fn cgroup_prefers_unified_over_v1_lines() {
        let hybrid = "12:cpuset:/\n11:memory:/user.slice/user-1000.slice/session-2.scope\n\
                      1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n\
                      0::/user.slice/user-1000.slice/user@1000.service/app.slice/\
                      app-flatpak-org.mozilla.firefox-12345.scope\n";
        assert_eq!(
            parse_cgroup(hybrid).unwrap(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/\
             app-flatpak-org.mozilla.firefox-12345.scope"
        );
        assert_eq!(parse_cgroup("0::/\n").unwrap(), "/");
        assert_eq!(parse_cgroup("0::/a:b/c\n").unwrap(), "/a:b/c");
        let v1_only = "3:cpu,cpuacct:/x\n1:name=systemd:/system.slice/foo.service\n";
        assert_eq!(parse_cgroup(v1_only).unwrap(), "/system.slice/foo.service");
        for bad in ["", "garbage", "0:", "0::relative", "::::", "\n\n"] {
            assert_eq!(parse_cgroup(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            parse_cmdline(b"curl\0-s\0https://x\0"),
            ["curl", "-s", "https://x"]
        );
        assert_eq!(parse_cmdline(b"rewritten title"), ["rewritten title"]);
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_cmdline(b"\xff\0"), ["\u{fffd}"]);
    }

    #[test]
    fn environ_lookup() {
        let env = b"HOME=/home/u\0APPIMAGE=/home/u/Apps/Foo.AppImage\0APPIMAGE=/second\0X=\0";
        assert_eq!(
            environ_value(env, b"APPIMAGE").unwrap(),
            "/home/u/Apps/Foo.AppImage"
        );
        assert_eq!(environ_value(env, b"X").unwrap(), "");
        assert_eq!(environ_value(env, b"APP"), None);
        assert_eq!(environ_value(b"APPIMAGE", b"APPIMAGE"), None);
        assert_eq!(environ_value(b"", b"HOME"), None);
        assert_eq!(environ_value(b"\0\0=\0", b"HOME"), None);
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[123456]"), Some(123_456));
        for bad in [
            &b"socket:[]"[..],
            b"socket:[12",
            b"socket:[-1]",
            b"socket:[1a]",
            b"pipe:[12]",
            b"/dev/null",
            b"socket:[99999999999999999999999]",
            b"",
        ] {
            assert_eq!(parse_socket_link(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deleted_exe_suffix() {
        assert_eq!(
            split_deleted(OsStr::new("/usr/bin/foo (deleted)")),
            (PathBuf::from("/usr/bin/foo"), true)
        );
        assert_eq!(
            split_deleted(OsStr::new("/usr/bin/foo")),
            (PathBuf::from("/usr/bin/foo"), false)
        );
        assert_eq!(
            split_deleted(OsStr::new(" (deleted)")),
            (PathBuf::from(" (deleted)"), false)
        );
    }

    #[test]
    fn mountinfo_hybrid_and_pure_v2() {
        let hybrid = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            parse_cgroup2_mount(hybrid).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        let pure = "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - \
                    cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            parse_cgroup2_mount(pure).unwrap(),
            PathBuf::from("/sys/fs/cgroup")
        );
        // A bind mount of a sub-cgroup comes first; the hierarchy's root wins; escapes undone.
        let bind = "40 22 0:26 /user.slice /mnt/x rw - cgroup2 cgroup2 rw\n\
                    41 22 0:26 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(bind).unwrap(),
            PathBuf::from("/mnt/my cgroup")
        );
        assert_eq!(
            parse_cgroup2_mount("40 22 0:26 /user.slice /mnt/x rw - cgroup2 cgroup2 rw\n").unwrap(),
            PathBuf::from("/mnt/x")
        );
        for bad in [
            "",
            "garbage",
            " - cgroup2",
            "1 2 3 - cgroup2 x y",
            "1 2 0:1 / relative rw - cgroup2 c rw",
            "1 2 0:1 / /x rw - cgroup c rw",
        ] {
            assert_eq!(parse_cgroup2_mount(bad), None, "{bad:?}");
        }
        assert_eq!(unescape_mount_field("a\\134b\\"), OsString::from("a\\b\\"));
        assert_eq!(
            unescape_mount_field("\\777\\01"),
            OsString::from("\\777\\01")
        );
    }

    #[test]
    fn passwd_names() {
        let text = "# comment\nroot:x:0:0:root:/root:/bin/bash\n\
                    alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nalias:x:1000:1000::/:/bin/sh\n\
                    +nis::::::\nbroken\n:x:5:5::/:\nbob:x:notanumber:1::/:\n";
        let users = parse_passwd(text);
        assert_eq!(users.get(&0).unwrap(), "root");
        assert_eq!(users.get(&1000).unwrap(), "alice");
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn ping_sockets_by_id() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  12: 00000000:0007 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 0\n\
  13: 0100007F:00FF 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0\n\
 garbage line\n";
        assert_eq!(find_ping_socket(text, 7), Some((1000, 4242)));
        assert_eq!(find_ping_socket(text, 255), Some((0, 77)));
        assert_eq!(find_ping_socket(text, 8), None);
        assert_eq!(find_ping_socket("", 7), None);
    }

    #[test]
    fn flatpak_info_name() {
        let text = "[Application]\nname=org.mozilla.firefox\nruntime=runtime/org.freedesktop\n\
                    [Instance]\ninstance-id=123\n";
        assert_eq!(parse_flatpak_info(text).unwrap(), "org.mozilla.firefox");
        assert_eq!(
            parse_flatpak_info("[Runtime]\nname=org.gnome.Platform\n"),
            None
        );
        assert_eq!(parse_flatpak_info("[Application]\nname=\n"), None);
        assert_eq!(parse_flatpak_info(""), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_stat(&text);
            let _ = parse_status_uids(&text);
            let _ = parse_cgroup(&text);
            let _ = parse_cmdline(&bytes);
            let _ = environ_value(&bytes, b"APPIMAGE");
            let _ = parse_socket_link(&bytes);
            let _ = split_deleted(OsStr::from_bytes(&bytes));
            let _ = parse_cgroup2_mount(&text);
            let _ = parse_passwd(&text);
            let _ = parse_flatpak_info(&text);
        }

        #[test]
        fn parsers_never_panic_on_near_valid_text(
            cut in 0_usize..200,
            junk in "[ ()a-z0-9:\\\\\n-]{0,40}",
        ) {
            let mut stat = STAT.chars().take(cut).collect::<String>();
            stat.push_str(&junk);
            let _ = parse_stat(&stat);
            let mount = format!("27 26 0:24 / /sys/fs/{junk} rw - cgroup2 cgroup2 rw");
            let _ = parse_cgroup2_mount(&mount);
            let _ = parse_cgroup(&format!("0::{junk}\n1:name=systemd:{junk}"));
        }
    }
}
