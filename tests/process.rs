//! Process identity (#16) as ps, lsof and /proc show it, on both backends:
//! the command line (argv as the kernel keeps it: spaces, empty and
//! non-ASCII arguments, an argv[0] that is not the program, invalid UTF-8,
//! a line over the cap), exe, cwd, root, RSS and VSZ, user and group names,
//! the controlling terminal, the cgroup and the pid namespace, of a fixture
//! and of every process that held still; kernel threads and zombies, which
//! have none of these; the mapped files of --maps in JSON and as lsof's
//! rows in the table; the new --columns; what --diff says of an exec, a
//! cwd change and RSS growth.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, OsStr};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Re-executed by `Fixture::start` (the threads and ids tests).
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Re-executed by `IdFixture::start`; passes trivially in a normal run.
#[test]
fn identity_fixture_process() {
    run_identity_fixture_if_asked();
}

// ---------------------------------------------------------------------------
// The identity fixture: this test binary again, as `fake argv0`, with odd
// arguments (libtest takes them as filters that match no test), in a
// directory of its own, a session of its own (no controlling terminal), a
// file mapped and a file mapped then deleted, and RESIDENT bytes touched.

/// Its argv[0]: not its program, which is this test binary.
const ARGV0: &str = "fake argv0";
/// What libtest needs to run `identity_fixture_process` alone.
const LIBTEST_ARGS: [&str; 5] = [
    "identity_fixture_process",
    "--exact",
    "--nocapture",
    "--quiet",
    "--test-threads=1",
];
/// Two spaces inside, an empty one inside and one last (a trailing NUL
/// more in /proc/PID/cmdline), non-ASCII UTF-8.
const ODD_ARGS: [&str; 4] = ["with  two spaces", "", "é 日本", ""];
/// Its cwd and, after "cd", the next, under its directory.
const CWD: &str = "cwd dir";
const MOVED_CWD: &str = "moved dir";
/// The file it maps and keeps, and the one it maps then deletes.
const KEPT_MAP: &str = "kept.bin";
const DELETED_MAP: &str = "deleted.bin";
/// What it allocates and touches at the start, and on "grow".
const RESIDENT: usize = 32 << 20;
const GROWTH: usize = 64 << 20;

/// The name of the thread that runs the fixture's body, and execs: libtest
/// names it after the test (comm keeps 15 bytes).
fn fixture_thread_comm() -> &'static str {
    &LIBTEST_ARGS[0][..15]
}

/// The fixture's whole argv, as /proc/PID/cmdline splits.
fn fixture_argv() -> Vec<String> {
    std::iter::once(ARGV0)
        .chain(LIBTEST_ARGS)
        .chain(ODD_ARGS)
        .map(str::to_string)
        .collect()
}

/// Maps `len` bytes of a new file at `path` (the fd closes, the mapping
/// stays) and reads a byte of it.
fn map_file(path: &Path, len: usize) {
    fs::write(path, vec![7u8; len]).unwrap();
    let file = fs::File::open(path).unwrap();
    // SAFETY: a fresh read-only private mapping of a file this process
    // wrote; it is never unmapped, so the read stays in bounds.
    unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(at, libc::MAP_FAILED, "mmap {}", path.display());
        std::ptr::read_volatile(at as *const u8);
    }
}

/// The fixture's body: maps its files, fills its memory, names itself,
/// says "ready", then acts on each line of stdin ("cd", "grow": "done"
/// after; "exec": becomes `sleep 60`) until stdin closes.
fn run_identity_fixture_if_asked() {
    let Ok(comm) = std::env::var("ITERSNAP_ID_FIXTURE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("ITERSNAP_ID_FIXTURE_DIR").unwrap());
    map_file(&dir.join(KEPT_MAP), 64 << 10);
    map_file(&dir.join(DELETED_MAP), 64 << 10);
    fs::remove_file(dir.join(DELETED_MAP)).unwrap();
    // Non-zero bytes: every page written, so resident.
    let mut memory = vec![vec![0x5au8; RESIDENT]];
    fs::write("/proc/self/comm", &comm).unwrap();
    println!("ready");
    io::stdout().flush().unwrap();
    for line in io::stdin().lock().lines() {
        match line.unwrap().trim() {
            "cd" => std::env::set_current_dir(dir.join(MOVED_CWD)).unwrap(),
            "grow" => memory.push(vec![0x5au8; GROWTH]),
            "exec" => {
                // Its memory goes first: an exec that frees 100 MiB is
                // seen half done (the new, empty memory; the thread's
                // name, not yet the program's) by many a snapshot.
                drop(std::mem::take(&mut memory));
                let err = Command::new("sleep").arg("60").exec();
                panic!("exec sleep: {err}");
            }
            other => panic!("unknown fixture command {other:?}"),
        }
        std::hint::black_box(&memory);
        println!("done");
        io::stdout().flush().unwrap();
    }
    std::process::exit(0);
}

/// A running identity fixture; dropping it ends the process.
struct IdFixture {
    pid: u32,
    comm: String,
    dir: PathBuf,
    /// Where it starts: `dir/CWD`.
    cwd: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl IdFixture {
    /// Starts the fixture and waits until its files are mapped and its
    /// memory resident.
    fn start(tag: &str) -> IdFixture {
        let comm = unique_comm(tag);
        let dir = std::env::temp_dir().join(format!("itersnap-{comm}"));
        let cwd = dir.join(CWD);
        fs::create_dir_all(&cwd).unwrap();
        fs::create_dir_all(dir.join(MOVED_CWD)).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg0(ARGV0)
            .args(LIBTEST_ARGS)
            .args(ODD_ARGS)
            .current_dir(&cwd)
            .env("ITERSNAP_ID_FIXTURE", &comm)
            .env("ITERSNAP_ID_FIXTURE_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // A session of its own, whatever the test runs in: no controlling
        // terminal (ps's "?").
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("starting the identity fixture");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut fx = IdFixture {
            pid: child.id(),
            comm,
            dir,
            cwd,
            child,
            stdin,
            out,
        };
        fx.expect_line("ready");
        fx
    }

    /// Reads lines (libtest prints its own first) until `want`.
    fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        while line.trim() != want {
            line.clear();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "the identity fixture exited before {want:?}");
        }
    }

    /// Tells the fixture to act and waits until it has ("exec": until the
    /// process is `sleep`).
    fn tell(&mut self, what: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
        if what == "exec" {
            wait_for(&format!("{} to exec sleep", self.pid), || {
                comm_of(self.pid).as_deref() == Some("sleep")
            });
        } else {
            self.expect_line("done");
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    fn cwd(&self) -> String {
        self.cwd.to_str().unwrap().to_string()
    }
}

impl Drop for IdFixture {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A process this test started, killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    /// Spawns `cmd` and waits until its command line is there: spawn
    /// returns once the exec has replaced the memory, which is before the
    /// new program's arguments are (/proc/PID/cmdline is empty until then).
    /// Before that, it is empty, or still the parent's (between fork and
    /// exec): wait for the very argv given.
    fn spawn(cmd: &mut Command) -> Sleeper {
        let mut want: Vec<u8> = Vec::new();
        for arg in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
            want.extend_from_slice(arg.as_bytes());
            want.push(0);
        }
        let sleeper = Sleeper(cmd.spawn().expect("spawning a test process"));
        let pid = sleeper.pid();
        wait_for(&format!("the command line of {pid}"), || {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
        });
        sleeper
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 600` in a session of its own: no controlling terminal. (Ten
/// minutes, not one: a slow VM's test outlived `sleep 60`, and an exited
/// process has no terminal.)
fn sleep_without_tty() -> Sleeper {
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Sleeper::spawn(&mut cmd)
}

/// `sleep 600` whose controlling terminal is a new pty's slave; keeps the
/// master open.
struct OnPty {
    sleeper: Sleeper,
    /// "pts/N", as ps names it.
    tty: String,
    _master: OwnedFd,
}

fn sleep_on_pty() -> OnPty {
    // SAFETY: libc calls on the fd this opens; each result checked.
    let (master, slave) = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        (master, CStr::from_ptr(name.as_ptr()).to_owned())
    };
    let tty = slave
        .to_str()
        .unwrap()
        .strip_prefix("/dev/")
        .unwrap()
        .to_string();
    let mut cmd = Command::new("sleep");
    cmd.arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (setsid, open, ioctl) between
    // fork and exec; the path was made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::open(slave.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let sleeper = Sleeper::spawn(&mut cmd);
    OnPty {
        sleeper,
        tty,
        _master: master,
    }
}

/// `sleep 60` run as `uid`:`gid`.
fn sleep_as(uid: u32, gid: u32) -> Sleeper {
    Sleeper::spawn(Command::new("sleep").arg("600").uid(uid).gid(gid))
}

/// `bash -c 'read -r _' ARGS...`: waits on its stdin (piped), with `args`
/// as its $0 and positional parameters.
fn bash_waiting_with(args: &[&[u8]]) -> Sleeper {
    Sleeper::spawn(
        Command::new("bash")
            .args(["-c", "read -r _"])
            .args(args.iter().map(|a| OsStr::from_bytes(a)))
            .stdin(Stdio::piped()),
    )
}

// ---------------------------------------------------------------------------
// Ground truth: /proc and ps.

/// Polls `done` every 20 ms, for at most 10 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn comm_of(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

/// readlink of /proc/PID/WHAT (exe, cwd, root), " (deleted)" included.
fn readlink(pid: u32, what: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/{what}"))
        .ok()
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned())
}

/// An argv as ps shows it: without its trailing empty arguments.
fn without_trailing_empty(mut argv: Value) -> Value {
    if let Some(args) = argv.as_array_mut() {
        while args.len() > 1 && args.last() == Some(&json!("")) {
            args.pop();
        }
    }
    argv
}

/// /proc/PID/cmdline split at NULs (a trailing NUL ends the last
/// argument), each lossy UTF-8.
fn proc_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(split_cmdline(&raw))
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    if raw.is_empty() {
        return Vec::new();
    }
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The `Key:` line of /proc/PID/status, trimmed.
fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// VmRSS or VmSize in KiB (absent, as in kernel threads and zombies: 0,
/// as ps shows them).
fn status_kib(pid: u32, key: &str) -> u64 {
    status_field(pid, key)
        .map(|v| v.trim_end_matches(" kB").trim().parse().unwrap())
        .unwrap_or(0)
}

/// The cgroup v2 path: the `0::` line of /proc/PID/cgroup.
fn cgroup_v2(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The pid namespace's inode: `readlink /proc/PID/ns/pid` is pid:[N].
fn pidns(pid: u32) -> Option<u64> {
    let link = readlink(pid, "ns/pid")?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// /proc/PID/stat field 7, tty_nr.
fn tty_nr(pid: u32) -> u64 {
    proc_stat(pid).unwrap().1[4].parse().unwrap()
}

/// Runs ps in a UTF-8 locale (else it prints each non-ASCII byte as '?').
fn ps(args: &[&str]) -> String {
    let out = Command::new("ps")
        .env("LC_ALL", "C.UTF-8")
        .args(args)
        .output()
        .expect("running ps");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One ps field of one process (`-o FIELD= -p PID`), wide, trimmed.
fn ps_field(pid: u32, field: &str) -> String {
    ps(&["-ww", "-o", &format!("{field}="), "-p", &pid.to_string()])
        .trim()
        .to_string()
}

/// ps's TTY as the JSON has it: "?" is none.
fn ps_tty_json(tty: &str) -> Value {
    match tty {
        "?" => Value::Null,
        t => json!(t),
    }
}

/// Whether this kernel lets BPF read another process's memory (the
/// command line): bpf_copy_from_user_task, Linux 5.18.
fn cmdline_readable() -> bool {
    kernel_at_least(5, 18)
}

/// Whether this kernel has the task_vma iterator (--maps): Linux 5.12.
fn maps_readable() -> bool {
    kernel_at_least(5, 12)
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// `--maps` where the kernel has it; else nothing (the option is refused
/// there: `maps_need_a_task_vma_iterator` says how).
fn maps_arg() -> &'static [&'static str] {
    if maps_readable() {
        &["--maps"]
    } else {
        &[]
    }
}

/// Before 5.12, --maps is one line and exit status 1, nothing loaded.
#[test]
fn maps_need_a_task_vma_iterator() {
    if maps_readable() {
        return;
    }
    let out = itersnap(&["--maps", "--pid", &std::process::id().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "itersnap: error: --maps needs Linux 5.12 or later (the kernel has no task_vma iterator)"
    );
    assert!(out.stdout.is_empty());
}

/// `got` is `want` within 5%.
fn within_5_percent(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

/// Does ps show `ours` (itersnap's cmdline joined with spaces) as
/// `theirs`? ps prints a control character as '?', '.' (a tab) or ' ' (a
/// newline), each
/// byte of invalid UTF-8 as '?' (lossy UTF-8 has one U+FFFD for one or
/// more), and drops what trails (the space of a last empty argument).
fn ps_shows(ours: &str, theirs: &str) -> bool {
    let theirs: Vec<char> = theirs.trim_end().chars().collect();
    let mut ours = ours.trim_end().chars().peekable();
    let mut i = 0;
    while let Some(c) = ours.next() {
        if c == '\u{FFFD}' {
            let mut run = 1;
            while ours.peek() == Some(&'\u{FFFD}') {
                ours.next();
                run += 1;
            }
            let start = i;
            while theirs.get(i) == Some(&'?') {
                i += 1;
            }
            if i - start < run {
                return false;
            }
        } else if c.is_control() {
            if !matches!(theirs.get(i), Some('?' | '.' | ' ')) {
                return false;
            }
            i += 1;
        } else {
            if theirs.get(i) != Some(&c) {
                return false;
            }
            i += 1;
        }
    }
    i == theirs.len()
}

/// File-backed mappings of /proc/PID/maps, one per path: (path as maps
/// shows it, " (deleted)" included; "major:minor" in decimal; inode;
/// deleted).
fn proc_maps_files(pid: u32) -> BTreeSet<(String, String, u64, bool)> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files = BTreeSet::new();
    for line in text.lines() {
        // addr perms offset dev inode, then padding and the path.
        let mut fields = line.splitn(6, ' ');
        let (Some(_), Some(_), Some(_), Some(dev), Some(ino)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let ino: u64 = ino.parse().unwrap();
        let path = fields.next().unwrap_or("").trim_start();
        if ino == 0 || path.is_empty() {
            continue;
        }
        let (major, minor) = dev.split_once(':').unwrap();
        let dev = format!(
            "{}:{}",
            u32::from_str_radix(major, 16).unwrap(),
            u32::from_str_radix(minor, 16).unwrap()
        );
        files.insert((path.to_string(), dev, ino, path.ends_with(" (deleted)")));
    }
    files
}

/// The JSON `maps` of a row as the same tuples.
fn json_maps(row: &Value) -> Vec<(String, String, u64, bool)> {
    row["maps"]
        .as_array()
        .unwrap_or_else(|| panic!("no maps array: {row}"))
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["dev"].as_str().unwrap().to_string(),
                m["ino"].as_u64().unwrap(),
                m["deleted"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Runs itersnap's table; fails the test on a non-zero exit.
fn table(args: &[&str]) -> String {
    let out = itersnap(args);
    assert!(
        out.status.success(),
        "itersnap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the table is UTF-8")
}

/// The task heading of a table and the row of `pid` (first token the pid).
fn heading_and_row(text: &str, pid: u32) -> (&str, &str) {
    let heading = text
        .lines()
        .find(|l| l.trim_start().starts_with("PID "))
        .unwrap_or_else(|| panic!("no PID heading: {text}"));
    let row = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
        .unwrap_or_else(|| panic!("no row for {pid}: {text}"));
    (heading, row)
}

/// The table's lsof-style rows (FD cwd, rtd, txt, mem, DEL) as (FD, path),
/// " (deleted)" left out as lsof leaves it out.
fn lsof_style_rows(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let fd = l.split_whitespace().next()?;
            if !["cwd", "rtd", "txt", "mem", "DEL"].contains(&fd) {
                return None;
            }
            let path = &l[l.find(" /")? + 1..];
            let path = path.trim_end();
            Some((
                fd.to_string(),
                path.trim_end_matches(" (deleted)").to_string(),
            ))
        })
        .collect()
}

/// The same rows of `lsof -p PID`, or None without lsof.
fn lsof_rows(pid: u32) -> Option<BTreeSet<(String, String)>> {
    let out = Command::new("lsof")
        .args(["-n", "-P", "-w", "-F", "fn", "-p", &pid.to_string()])
        .output()
        .ok()?;
    let mut rows = BTreeSet::new();
    let mut fd = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(f) = line.strip_prefix('f') {
            fd = f.to_string();
        } else if let Some(name) = line.strip_prefix('n') {
            if ["cwd", "rtd", "txt", "mem", "DEL"].contains(&fd.as_str()) {
                rows.insert((fd.clone(), name.trim_end_matches(" (deleted)").to_string()));
            }
        }
    }
    Some(rows)
}

/// A kernel thread, kthreadd if there is one (PID 1 is hidden from BPF
/// here: never it).
fn a_kernel_thread() -> u32 {
    let kthreads: Vec<u32> = proc_processes()
        .into_keys()
        .filter(|&pid| pid != 1)
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|(_, s)| s[6].parse::<u64>().unwrap() & 0x0020_0000 != 0)
        })
        .collect();
    kthreads
        .iter()
        .copied()
        .find(|&pid| comm_of(pid).as_deref() == Some("kthreadd"))
        .or(kthreads.first().copied())
        .expect("a kernel thread")
}

// ---------------------------------------------------------------------------
// One process against /proc.

/// Where a process row's identity differs from /proc and ps, read now
/// (the process must be one that holds still).
fn identity_mismatches(row: &Value, pid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mut differs = |what: &str, got: &Value, want: Value| {
        if *got != want {
            bad.push(format!("{what}: ours {got}, /proc or ps {want}"));
        }
    };
    let kthread = row["kthread"] == true;
    let zombie = row["state"] == "Z";
    let cmdline = if kthread || zombie || !cmdline_readable() {
        Value::Null
    } else {
        json!(proc_cmdline(pid))
    };
    // /proc's argv is cmdline_raw where that differs (trailing empty
    // arguments), and cmdline is it without them, as ps shows it.
    let raw = row.get("cmdline_raw").unwrap_or(&row["cmdline"]);
    differs("cmdline", raw, cmdline.clone());
    differs(
        "cmdline trimmed",
        &row["cmdline"],
        without_trailing_empty(cmdline),
    );
    for link in ["exe", "cwd", "root"] {
        differs(link, &row[link], json!(readlink(pid, link)));
    }
    differs("user", &row["user"], json!(ps_field(pid, "user:64")));
    differs("group", &row["group"], json!(ps_field(pid, "group:64")));
    differs("tty", &row["tty"], ps_tty_json(&ps_field(pid, "tty")));
    differs("tty_nr", &row["tty_nr"], json!(tty_nr(pid)));
    differs("cgroup", &row["cgroup"], json!(cgroup_v2(pid)));
    differs("pidns", &row["pidns"], json!(pidns(pid)));
    let ns_pid = status_field(pid, "NSpid")
        .and_then(|v| v.split_whitespace().last()?.parse::<u32>().ok())
        .filter(|&n| n != pid);
    differs(
        "ns_pid",
        row.get("ns_pid").unwrap_or(&Value::Null),
        json!(ns_pid),
    );
    if row["cmdline_truncated"] == true {
        bad.push("cmdline_truncated on a short command line".into());
    }
    bad
}

/// The fixture (spaces, empty and non-ASCII arguments, a fake argv[0], a
/// cwd of its own, a deleted mapping, 32 MiB resident): each field of its
/// JSON row is what /proc and ps say, on both backends.
#[test]
fn fixture_identity_is_as_proc_shows_it() {
    let fx = IdFixture::start("id");
    let pid = fx.pid;
    // The fixture is what it means to be.
    let mut want_raw = Vec::new();
    for arg in fixture_argv() {
        want_raw.extend_from_slice(arg.as_bytes());
        want_raw.push(0);
    }
    assert_eq!(fs::read(format!("/proc/{pid}/cmdline")).unwrap(), want_raw);
    assert_eq!(proc_cmdline(pid).unwrap(), fixture_argv());
    let exe = std::env::current_exe().unwrap();
    assert_eq!(readlink(pid, "exe").unwrap(), exe.to_str().unwrap());
    assert_eq!(readlink(pid, "cwd").unwrap(), fx.cwd());
    let deleted = format!("{} (deleted)", fx.path(DELETED_MAP));
    assert!(proc_maps_files(pid).iter().any(|m| m.0 == deleted && m.3));
    assert!(status_kib(pid, "VmRSS") >= (RESIDENT >> 10) as u64);
    assert_eq!(ps_field(pid, "tty"), "?");

    for backend in backends_here() {
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &pid.to_string(),
        ]);
        let row = rows_of(&snap, pid)[0];
        let bad = identity_mismatches(row, pid);
        assert!(bad.is_empty(), "{backend}: {bad:#?}\n{row}");
        if cmdline_readable() {
            let argv = json!(fixture_argv());
            assert_eq!(row["cmdline_raw"], argv, "{backend}");
            assert_eq!(row["cmdline"], without_trailing_empty(argv), "{backend}");
        }
        assert_eq!(row["exe"], exe.to_str().unwrap(), "{backend}");
        assert_eq!(row["cwd"], fx.cwd(), "{backend}");
        assert_eq!(row["root"], "/", "{backend}");
        assert_eq!(row["user"], "root", "{backend}");
        assert!(row["tty"].is_null(), "{backend}: {}", row["tty"]);
        assert_eq!(row["tty_nr"], 0, "{backend}");
        assert!(row.get("ns_pid").is_none(), "{backend}");
        // Read after: the fixture is idle, its memory stays.
        let (rss, vsz) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmSize"));
        let got = row["rss_kib"].as_u64().unwrap();
        assert!(
            within_5_percent(got, rss),
            "{backend}: rss_kib {got}, VmRSS {rss}"
        );
        assert_eq!(row["vsz_kib"], vsz, "{backend}: vsz_kib, VmSize");
    }
}

/// With --threads, every thread's row carries its process's identity.
#[test]
fn thread_rows_carry_the_process_identity() {
    let fx = Fixture::start("thr");
    let pid = fx.pid;
    for backend in backends_here() {
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--threads",
            "--pid",
            &pid.to_string(),
        ]);
        let rows = rows_of(&snap, pid);
        let tids: Vec<u32> = rows
            .iter()
            .map(|r| r["tid"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tids.len(), proc_tids(pid).len(), "{backend}: {tids:?}");
        assert!(tids.len() > FIXTURE_THREADS, "{backend}");
        let rss = status_kib(pid, "VmRSS");
        for row in rows {
            let what = format!("{backend}: thread {}", row["tid"]);
            let bad = identity_mismatches(row, pid);
            assert!(bad.is_empty(), "{what}: {bad:#?}");
            let got = row["rss_kib"].as_u64().unwrap();
            assert!(
                within_5_percent(got, rss),
                "{what}: rss_kib {got}, VmRSS {rss}"
            );
            assert_eq!(row["vsz_kib"], status_kib(pid, "VmSize"), "{what}");
        }
    }
}

/// A kernel thread has no command line, exe, mappings or memory (its cwd
/// and root are "/"), and the table shows it as ps does: `[kthreadd]`.
#[test]
fn kernel_thread_has_no_cmdline_exe_or_maps() {
    let pid = a_kernel_thread();
    let name = comm_of(pid).unwrap();
    let pid_arg = pid.to_string();
    for backend in backends_here() {
        let snap = snapshot(
            &["--backend", backend, "--no-files", "--pid", &pid_arg]
                .iter()
                .chain(maps_arg())
                .copied()
                .collect::<Vec<_>>(),
        );
        let row = rows_of(&snap, pid)[0];
        let what = format!("{backend}: kernel thread {pid} ({name})");
        assert_eq!(row["kthread"], true, "{what}");
        assert!(
            row["cmdline"].is_null(),
            "{what}: cmdline {}",
            row["cmdline"]
        );
        assert!(row["exe"].is_null(), "{what}: exe {}", row["exe"]);
        assert_eq!(row["cwd"], json!(readlink(pid, "cwd")), "{what}: cwd");
        assert_eq!(row["cwd"], "/", "{what}");
        assert_eq!(row["root"], "/", "{what}");
        assert!(
            row.get("maps")
                .is_none_or(|m| m.as_array().is_some_and(|a| a.is_empty())),
            "{what}: maps {}",
            row["maps"]
        );
        assert_eq!(row["rss_kib"], 0, "{what}");
        assert_eq!(row["vsz_kib"], 0, "{what}");
        assert!(row["tty"].is_null(), "{what}");
        assert_eq!(row["tty_nr"], 0, "{what}");
        assert_eq!(row["user"], json!(ps_field(pid, "user:64")), "{what}");

        // The default table's COMMAND, the last column.
        let text = table(&["--backend", backend, "--no-files", "--pid", &pid_arg]);
        let (heading, line) = heading_and_row(&text, pid);
        let at = heading
            .find("COMMAND")
            .unwrap_or_else(|| panic!("{what}: no COMMAND: {text}"));
        assert_eq!(
            line.get(at..).map(str::trim_end),
            Some(format!("[{name}]").as_str()),
            "{what}: {text}"
        );
        assert_eq!(ps_field(pid, "args"), format!("[{name}]"));
        // Column for column as ps prints them.
        let cols = "pid,user,tty,rss,vsz,args";
        let text = table(&[
            "--backend",
            backend,
            "--no-files",
            "--columns",
            cols,
            "--pid",
            &pid_arg,
        ]);
        let (_, line) = heading_and_row(&text, pid);
        let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let ps_line = ps(&["-ww", "-o", cols, "-p", &pid_arg]);
        let ps_line = ps_line.lines().nth(1).unwrap_or("");
        assert_eq!(normal(line), normal(ps_line), "{what}: {cols}");
    }
}

/// A zombie has no command line, exe, cwd, root, mappings or memory; ps
/// shows it as `[true] <defunct>`.
#[test]
fn zombie_has_no_cmdline_exe_or_cwd() {
    let mut child = Command::new("true").spawn().expect("true");
    let pid = child.id();
    wait_for("a zombie", || {
        proc_stat(pid).is_some_and(|(_, s)| s[0] == "Z")
    });
    let pid_arg = pid.to_string();
    for backend in backends_here() {
        let snap = snapshot(
            &["--backend", backend, "--no-files", "--pid", &pid_arg]
                .iter()
                .chain(maps_arg())
                .copied()
                .collect::<Vec<_>>(),
        );
        let row = rows_of(&snap, pid)[0];
        assert_eq!(row["state"], "Z", "{backend}");
        assert!(row["cmdline"].is_null(), "{backend}: {}", row["cmdline"]);
        for link in ["exe", "cwd", "root"] {
            assert_eq!(readlink(pid, link), None, "/proc/{pid}/{link}");
            assert!(row[link].is_null(), "{backend}: {link} {}", row[link]);
        }
        assert!(
            row.get("maps")
                .is_none_or(|m| m.as_array().is_some_and(|a| a.is_empty())),
            "{backend}: maps {}",
            row["maps"]
        );
        assert_eq!(row["rss_kib"], 0, "{backend}");
        assert_eq!(row["vsz_kib"], 0, "{backend}");
        let text = table(&[
            "--backend",
            backend,
            "--no-files",
            "--columns",
            "pid,args",
            "--pid",
            &pid_arg,
        ]);
        let (_, line) = heading_and_row(&text, pid);
        let cell = line.trim_start().split_once(' ').map(|(_, c)| c.trim());
        assert_eq!(
            cell,
            Some(ps_field(pid, "args").as_str()),
            "{backend}: {text}"
        );
    }
    child.wait().unwrap();
}

/// Invalid UTF-8 in an argument is U+FFFD, control characters are kept as
/// they are; a command line over the cap is cut, and says so.
#[test]
fn cmdline_is_lossy_utf8_and_capped() {
    if !cmdline_readable() {
        return; // null everywhere: fixture_identity_is_as_proc_shows_it checks it
    }
    let odd = bash_waiting_with(&[
        b"odd zero",
        b"\xff\xfeq",
        b"tab\there",
        b"new\nline",
        b"",
        b"end",
    ]);
    let long_arg = vec![b'x'; 30 << 10];
    let long = bash_waiting_with(&[b"long", &long_arg, b"after"]);
    let raw_long = fs::read(format!("/proc/{}/cmdline", long.pid())).unwrap();
    assert!(raw_long.len() > 30 << 10);
    for backend in backends_here() {
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &odd.pid().to_string(),
        ]);
        let row = rows_of(&snap, odd.pid())[0];
        let want = [
            "bash",
            "-c",
            "read -r _",
            "odd zero",
            "\u{FFFD}\u{FFFD}q",
            "tab\there",
            "new\nline",
            "",
            "end",
        ];
        assert_eq!(row["cmdline"], json!(want), "{backend}");
        assert_eq!(row["cmdline"], json!(proc_cmdline(odd.pid())), "{backend}");
        assert_ne!(row["cmdline_truncated"], true, "{backend}");
        assert!(ps_shows(&want.join(" "), &ps_field(odd.pid(), "args")));

        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &long.pid().to_string(),
        ]);
        let row = rows_of(&snap, long.pid())[0];
        assert_eq!(row["cmdline_truncated"], true, "{backend}");
        let got: Vec<&str> = row["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let joined = got.join("\0");
        assert!(
            raw_long.starts_with(joined.as_bytes()),
            "{backend}: {} arguments, not a prefix of /proc's",
            got.len()
        );
        assert!(
            (16 << 10..=28 << 10).contains(&joined.len()),
            "{backend}: {} bytes kept",
            joined.len()
        );
        assert_eq!(&got[..4], ["bash", "-c", "read -r _", "long"], "{backend}");
    }
}

/// The effective user's and group's names as ps prints them, the id where
/// the user database has none: nobody, 4242:4243 and a process whose real
/// and effective ids differ.
#[test]
fn user_and_group_are_names_of_the_effective_ids() {
    let nobody = sleep_as(65534, 65534);
    let nameless = sleep_as(4242, 4243);
    let fx = Fixture::start_with_creds("cr");
    let creds = fx.creds_pid.unwrap();
    assert_eq!(ps_field(nameless.pid(), "user:64"), "4242");
    for backend in backends_here() {
        for pid in [nobody.pid(), nameless.pid(), creds] {
            let snap = snapshot(&[
                "--backend",
                backend,
                "--no-files",
                "--pid",
                &pid.to_string(),
            ]);
            let row = rows_of(&snap, pid)[0];
            for (key, ps_name) in [("user", "user:64"), ("group", "group:64")] {
                assert_eq!(
                    row[key],
                    json!(ps_field(pid, ps_name)),
                    "{backend}: {key} of {pid} (euid {}, egid {})",
                    row["euid"],
                    row["egid"]
                );
            }
        }
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &nameless.pid().to_string(),
        ]);
        let row = rows_of(&snap, nameless.pid())[0];
        assert_eq!(row["user"], "4242", "{backend}");
        assert_eq!(row["group"], "4243", "{backend}");
    }
}

/// A process whose controlling terminal is a pty's slave: tty "pts/N",
/// as ps; tty_nr as /proc/PID/stat; one without: null and 0 (ps "?").
/// The TT column prints what ps does.
#[test]
fn controlling_terminal_is_as_ps_names_it() {
    let on_pty = sleep_on_pty();
    let without = sleep_without_tty();
    let pty_pid = on_pty.sleeper.pid();
    assert_eq!(ps_field(pty_pid, "tty"), on_pty.tty);
    assert_ne!(tty_nr(pty_pid), 0);
    assert_eq!(ps_field(without.pid(), "tty"), "?");
    for backend in backends_here() {
        for pid in [pty_pid, without.pid()] {
            let snap = snapshot(&[
                "--backend",
                backend,
                "--no-files",
                "--pid",
                &pid.to_string(),
            ]);
            let row = rows_of(&snap, pid)[0];
            let ps_tty = ps_field(pid, "tty");
            assert_eq!(row["tty"], ps_tty_json(&ps_tty), "{backend}: pid {pid}");
            assert_eq!(row["tty_nr"], tty_nr(pid), "{backend}: pid {pid}");
            let text = table(&[
                "--backend",
                backend,
                "--no-files",
                "--columns",
                "pid,tty",
                "--pid",
                &pid.to_string(),
            ]);
            let (heading, line) = heading_and_row(&text, pid);
            assert_eq!(
                heading.split_whitespace().collect::<Vec<_>>(),
                ["PID", "TT"],
                "{backend}"
            );
            assert_eq!(
                line.split_whitespace().nth(1),
                Some(ps_tty.as_str()),
                "{backend}: {text}"
            );
        }
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &pty_pid.to_string(),
        ]);
        assert_eq!(
            rows_of(&snap, pty_pid)[0]["tty"],
            on_pty.tty.as_str(),
            "{backend}"
        );
    }
}

/// A process in a pid namespace of its own (`unshare --pid --fork`) is 1
/// there: ns_pid, and pidns its namespace's inode; its parent outside has
/// no ns_pid and this namespace's inode.
#[test]
fn pid_namespace_and_the_pid_inside() {
    let unshare = Sleeper::spawn(Command::new("unshare").args([
        "--pid",
        "--fork",
        "--kill-child",
        "sleep",
        "600",
    ]));
    let outside = unshare.pid();
    let mut inside = 0;
    wait_for("the process in a new pid namespace", || {
        let children = fs::read_to_string(format!("/proc/{outside}/task/{outside}/children"))
            .unwrap_or_default();
        inside = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .find(|&p| {
                proc_cmdline(p).is_some_and(|c| c.first().map(String::as_str) == Some("sleep"))
            })
            .unwrap_or(0);
        inside != 0
    });
    let ours = pidns(std::process::id()).unwrap();
    assert_ne!(pidns(inside), Some(ours));
    for backend in backends_here() {
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &inside.to_string(),
        ]);
        let row = rows_of(&snap, inside)[0];
        assert_eq!(row["ns_pid"], 1, "{backend}");
        assert_eq!(row["pidns"], json!(pidns(inside)), "{backend}");
        let bad = identity_mismatches(row, inside);
        assert!(bad.is_empty(), "{backend}: {bad:#?}");
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &outside.to_string(),
        ]);
        let row = rows_of(&snap, outside)[0];
        assert!(row.get("ns_pid").is_none(), "{backend}: {row}");
        assert_eq!(row["pidns"], ours, "{backend}");
    }
    // The child first, so that no other test sees it orphaned (reparented)
    // between unshare's death and its own; unshare then exits.
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(inside as i32, libc::SIGKILL) };
    let mut unshare = unshare;
    let _ = unshare.0.wait();
}

// ---------------------------------------------------------------------------
// --maps and the new columns.

/// --maps: the fixture's `maps` are the file-backed mappings of
/// /proc/PID/maps, one per path, the deleted file as maps shows it
/// (" (deleted)", deleted: true), the exe among them.
#[test]
fn maps_are_the_file_backed_mappings() {
    if !maps_readable() {
        return; // maps_need_a_task_vma_iterator
    }
    let fx = IdFixture::start("mp");
    let pid = fx.pid;
    let exe = readlink(pid, "exe").unwrap();
    let deleted = format!("{} (deleted)", fx.path(DELETED_MAP));
    for backend in backends_here() {
        let before = proc_maps_files(pid);
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--maps",
            "--pid",
            &pid.to_string(),
        ]);
        assert_eq!(
            proc_maps_files(pid),
            before,
            "the fixture's maps held still"
        );
        let row = rows_of(&snap, pid)[0];
        let got = json_maps(row);
        let unique: BTreeSet<_> = got.iter().cloned().collect();
        assert_eq!(
            got.len(),
            unique.len(),
            "{backend}: one entry per file: {got:#?}"
        );
        // On overlayfs (the VMs' root) a mapping is of the layer's file:
        // its device is the layer's, /proc's the overlay's.
        let overlay_blind = |set: &BTreeSet<(String, String, u64, bool)>| -> BTreeSet<_> {
            set.iter()
                .map(|(path, dev, ino, deleted)| {
                    let dev = if on_overlayfs(path) {
                        String::new()
                    } else {
                        dev.clone()
                    };
                    (path.clone(), dev, *ino, *deleted)
                })
                .collect()
        };
        assert_eq!(overlay_blind(&unique), overlay_blind(&before), "{backend}");
        let by_path: BTreeMap<&str, bool> = got.iter().map(|m| (m.0.as_str(), m.3)).collect();
        assert_eq!(
            by_path.get(exe.as_str()),
            Some(&false),
            "{backend}: the exe"
        );
        assert_eq!(
            by_path.get(deleted.as_str()),
            Some(&true),
            "{backend}: {deleted}"
        );
        assert_eq!(
            by_path.get(fx.path(KEPT_MAP).as_str()),
            Some(&false),
            "{backend}: {KEPT_MAP}"
        );
        // Without --maps, none.
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &pid.to_string(),
        ]);
        assert!(rows_of(&snap, pid)[0].get("maps").is_none(), "{backend}");
    }
}

/// --maps in the table: lsof's rows among the fixture's files — cwd, rtd,
/// txt (the exe), mem (each other mapped file), DEL (the deleted one) — the
/// same rows as `lsof -p` has.
#[test]
fn maps_table_has_lsofs_rows() {
    if !maps_readable() {
        return; // maps_need_a_task_vma_iterator
    }
    let fx = IdFixture::start("mt");
    let pid = fx.pid;
    let exe = readlink(pid, "exe").unwrap();
    let libc_so = proc_maps_files(pid)
        .into_iter()
        .map(|m| m.0)
        .find(|p| p.contains("/libc.so"))
        .expect("libc mapped");
    for backend in backends_here() {
        let text = table(&["--backend", backend, "--maps", "--pid", &pid.to_string()]);
        let rows = lsof_style_rows(&text);
        for (fd, path) in [
            ("cwd", fx.cwd()),
            ("rtd", "/".to_string()),
            ("txt", exe.clone()),
            ("mem", fx.path(KEPT_MAP)),
            ("mem", libc_so.clone()),
            ("DEL", fx.path(DELETED_MAP)),
        ] {
            assert!(
                rows.contains(&(fd.to_string(), path.clone())),
                "{backend}: no {fd} row of {path}: {rows:#?}\n{text}"
            );
        }
        assert!(
            !rows.contains(&("mem".into(), exe.clone())),
            "{backend}: the exe is txt, not mem"
        );
        if let Some(mut lsof) = lsof_rows(pid) {
            // On overlayfs the mapping is the layer's file, another inode
            // than the executable's: lsof lists it as mem too, itersnap
            // tells it by its path.
            if on_overlayfs(&exe) {
                lsof.remove(&("mem".to_string(), exe.clone()));
            }
            assert_eq!(rows, lsof, "{backend}: ours, then lsof's\n{text}");
        }
        // Without --maps: no mapped files (mem, DEL).
        let text = table(&["--backend", backend, "--pid", &pid.to_string()]);
        let plain = lsof_style_rows(&text);
        assert!(
            plain.iter().all(|(fd, _)| fd != "mem" && fd != "DEL"),
            "{backend}: {plain:?}"
        );
    }
}

/// `--columns pid,user,args,exe,cwd,rss,vsz,tty,cgroup`: those headings,
/// and the fixture's row with its user, full args (as ps), exe, cwd, RSS
/// and VSZ in KiB, TT and cgroup.
#[test]
fn identity_columns_show_the_fixture() {
    let fx = IdFixture::start("co");
    let pid = fx.pid;
    let cols = "pid,user,args,exe,cwd,rss,vsz,tty,cgroup";
    let exe = readlink(pid, "exe").unwrap();
    let args = ps_field(pid, "args");
    assert!(args.starts_with(ARGV0) && args.contains("with  two spaces  é 日本"));
    // Without command lines (before 5.18) COMMAND is the name, as comm.
    let args = if cmdline_readable() {
        args
    } else {
        comm_of(pid).unwrap()
    };
    for backend in backends_here() {
        let text = table(&[
            "--backend",
            backend,
            "--no-files",
            "--columns",
            cols,
            "--pid",
            &pid.to_string(),
        ]);
        let (heading, line) = heading_and_row(&text, pid);
        assert_eq!(
            heading.split_whitespace().collect::<Vec<_>>(),
            ["PID", "USER", "COMMAND", "EXE", "CWD", "RSS", "VSZ", "TT", "CGROUP"],
            "{backend}"
        );
        // Each cell in its order; args and cwd hold spaces.
        let mut rest = line.trim_start().strip_prefix(&pid.to_string()).unwrap();
        for (what, cell) in [
            ("user", ps_field(pid, "user:64")),
            ("args", args.clone()),
            ("exe", exe.clone()),
            ("cwd", fx.cwd()),
        ] {
            let at = rest
                .find(&cell)
                .unwrap_or_else(|| panic!("{backend}: no {what} {cell:?} in {line:?}"));
            assert!(
                rest[..at].trim().is_empty(),
                "{backend}: {:?} before the {what}",
                &rest[..at]
            );
            rest = &rest[at + cell.len()..];
        }
        let cells: Vec<&str> = rest.split_whitespace().collect();
        let [rss, vsz, tt, cgroup] = cells[..] else {
            panic!("{backend}: rss, vsz, tty, cgroup: {cells:?} in {line:?}");
        };
        let want_rss = status_kib(pid, "VmRSS");
        assert!(
            within_5_percent(rss.parse().unwrap(), want_rss),
            "{backend}: RSS {rss}, VmRSS {want_rss}"
        );
        assert_eq!(vsz, status_kib(pid, "VmSize").to_string(), "{backend}: VSZ");
        assert_eq!(tt, ps_field(pid, "tty"), "{backend}: TT");
        assert_eq!(
            Some(cgroup.to_string()),
            cgroup_v2(pid),
            "{backend}: CGROUP"
        );
    }
}

// ---------------------------------------------------------------------------
// The whole system against ps and /proc.

/// What ps and /proc say of one process: ps's user, tty and args, the
/// readlinks, and the start time (pid reuse).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    user: String,
    tty: String,
    args: String,
    exe: Option<String>,
    cwd: Option<String>,
    root: Option<String>,
    start: Option<String>,
}

/// Every process (`pid`: one) as `ps -ww -eo pid,user:64,tty,args` and
/// /proc show it.
fn look(pid: Option<u32>) -> BTreeMap<u32, Seen> {
    let which = match pid {
        Some(pid) => vec!["-p".to_string(), pid.to_string()],
        None => vec!["-e".to_string()],
    };
    let mut args: Vec<&str> = vec!["-ww"];
    args.extend(which.iter().map(String::as_str));
    args.extend(["-o", "pid,user:64,tty,args"]);
    let text = ps(&args);
    let mut lines = text.lines();
    let Some(heading) = lines.next() else {
        return BTreeMap::new();
    };
    let at = heading.find("COMMAND").expect("ps's COMMAND heading");
    let mut seen = BTreeMap::new();
    for line in lines {
        let (Some(head), Some(args)) = (line.get(..at), line.get(at..)) else {
            continue;
        };
        let fields: Vec<&str> = head.split_whitespace().collect();
        let [pid, user, tty] = fields[..] else {
            continue;
        };
        let pid: u32 = pid.parse().unwrap();
        seen.insert(
            pid,
            Seen {
                user: user.to_string(),
                tty: tty.to_string(),
                args: args.trim_end().to_string(),
                exe: readlink(pid, "exe"),
                cwd: readlink(pid, "cwd"),
                root: readlink(pid, "root"),
                start: proc_stat(pid).map(|(_, s)| s[19].clone()),
            },
        );
    }
    seen
}

/// Where a row differs from what ps and /proc saw.
fn seen_mismatches(row: &Value, seen: &Seen) -> Vec<String> {
    let mut bad = Vec::new();
    let mut differs = |what: &str, got: &Value, want: Value| {
        if *got != want {
            bad.push(format!("{what}: ours {got}, ps or /proc {want}"));
        }
    };
    differs("user", &row["user"], json!(seen.user));
    differs("tty", &row["tty"], ps_tty_json(&seen.tty));
    differs("exe", &row["exe"], json!(seen.exe));
    differs("cwd", &row["cwd"], json!(seen.cwd));
    differs("root", &row["root"], json!(seen.root));
    let kthread = row["kthread"] == true;
    let zombie = row["state"] == "Z";
    let comm = row["comm"].as_str().unwrap_or("");
    let cmdline = &row["cmdline"];
    let expect_null = kthread || zombie || !cmdline_readable();
    if expect_null != cmdline.is_null() {
        bad.push(format!(
            "cmdline {cmdline} (kthread {kthread}, zombie {zombie})"
        ));
    }
    match cmdline.as_array().filter(|a| !a.is_empty()) {
        // ps shows a process without a command line as [comm].
        None if kthread || zombie || cmdline_readable() => {
            let bracketed = format!("[{comm}]");
            let defunct = format!("{bracketed} <defunct>");
            if seen.args != bracketed && !(zombie && seen.args == defunct) {
                bad.push(format!("no cmdline ({cmdline}), ps {:?}", seen.args));
            }
        }
        None => {}
        Some(args) => {
            let joined = args
                .iter()
                .map(|a| a.as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ");
            if !ps_shows(&joined, &seen.args) {
                bad.push(format!("cmdline {joined:?}, ps args {:?}", seen.args));
            }
        }
    }
    bad
}

/// What looking at one process alone found.
#[derive(Debug, PartialEq)]
enum Alone {
    Agrees,
    /// Gone, or never the same in two reads around its snapshot (a
    /// workqueue worker's name follows its work): no ground truth.
    Unknown,
}

/// Whether `pid` agrees when looked at alone, within five quiet tries
/// (equal before and after need not be unchanged in between).
fn agrees_alone(pid: u32, backend: &str) -> Result<Alone, String> {
    let mut last = None;
    // Whether every try differed only in a worker's "+desc"/"-desc".
    let mut desc_only = true;
    for _ in 0..5 {
        let before = look(Some(pid));
        let snap = snapshot(&[
            "--backend",
            backend,
            "--no-files",
            "--pid",
            &pid.to_string(),
        ]);
        let after = look(Some(pid));
        let (Some(seen), Some(row)) = (before.get(&pid), rows_of(&snap, pid).first().copied())
        else {
            return Ok(Alone::Unknown); // gone
        };
        if after.get(&pid) != Some(seen) {
            continue;
        }
        let bad = seen_mismatches(row, seen);
        if bad.is_empty() {
            return Ok(Alone::Agrees);
        }
        desc_only &= bad.len() == 1
            && worker_id(row["comm"].as_str().unwrap_or(""))
                .is_some_and(|id| Some(id) == worker_id(seen.args.trim_matches(['[', ']'])));
        last = Some(format!("{}: {}", row["comm"], bad.join("; ")));
    }
    match last {
        // A workqueue worker's name follows its work, which can change
        // between every look (a slow VM's kworker/1:1 alternated between
        // -events and -mm_percpu_wq): its id agreed, its work is unknown.
        Some(_) if desc_only => Ok(Alone::Unknown),
        Some(e) => Err(e),
        None => Ok(Alone::Unknown),
    }
}

#[test]
fn worker_ids_end_where_the_work_begins() {
    assert_eq!(worker_id("kworker/1:1-events"), Some("kworker/1:1"));
    assert_eq!(worker_id("kworker/u8:2+flush-8:0"), Some("kworker/u8:2"));
    assert_eq!(worker_id("kworker/0:0H"), Some("kworker/0:0H"));
    assert_eq!(worker_id("kworker/R-rcu_gp"), None);
    assert_eq!(worker_id("bash"), None);
}

/// A workqueue worker's name up to its work ("kworker/1:1" of
/// "kworker/1:1-events"), or None for another name.
fn worker_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("kworker/")?;
    let colon = rest.find(':')?;
    let end = rest[colon..]
        .find(['+', '-'])
        .map_or(name.len(), |at| "kworker/".len() + colon + at);
    Some(&name[..end])
}

/// Every process that held still (the same in two reads of ps and /proc
/// around the snapshot): its cmdline (joined as ps's args), exe, cwd,
/// root, user and tty, as `ps -ww -eo pid,user:64,tty,args` and readlink
/// show them; the fixture, a process on a pty and processes of other
/// users among them.
#[test]
fn every_process_agrees_with_ps_and_proc() {
    let fx = IdFixture::start("all");
    let on_pty = sleep_on_pty();
    let nobody = sleep_as(65534, 65534);
    let nameless = sleep_as(4242, 4243);
    let ours = [fx.pid, on_pty.sleeper.pid(), nobody.pid(), nameless.pid()];
    for backend in backends_here() {
        let before = look(None);
        let snap = snapshot(&["--backend", backend, "--no-files"]);
        assert_eq!(snap["complete"], true, "{}", snap["problems"]);
        let after = look(None);
        let rows: BTreeMap<u32, &Value> = snap["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["pid"].as_u64().unwrap() as u32, r))
            .collect();
        let (mut compared, mut kthreads, mut with_cmdline) = (BTreeSet::new(), 0, 0);
        let mut failures = Vec::new();
        for (&pid, seen) in &before {
            if pid == 1 || after.get(&pid) != Some(seen) {
                continue;
            }
            let Some(row) = rows.get(&pid) else {
                continue; // exited in between
            };
            let bad = seen_mismatches(row, seen);
            if !bad.is_empty() {
                // Past a few failures, no more looks: the run stays short.
                let alone = match failures.len() {
                    0..5 => agrees_alone(pid, backend),
                    _ => Err(format!("{}: {}", row["comm"], bad.join("; "))),
                };
                match alone {
                    Ok(Alone::Agrees) => {}
                    Ok(Alone::Unknown) => continue,
                    Err(e) => failures.push(format!("pid {pid}: {e}")),
                }
            }
            compared.insert(pid);
            kthreads += usize::from(row["kthread"] == true);
            with_cmdline += usize::from(row["cmdline"].as_array().is_some_and(|a| !a.is_empty()));
        }
        assert!(failures.is_empty(), "{backend}:\n{}", failures.join("\n"));
        // Ours hold still; one that did not here (a slow VM) gets looks of its own.
        for pid in ours {
            if !compared.contains(&pid) {
                let alone = agrees_alone(pid, backend);
                assert_eq!(alone, Ok(Alone::Agrees), "{backend}: pid {pid}");
            }
        }
        assert!(
            compared.len() > 10 && kthreads > 0 && (with_cmdline > 0 || !cmdline_readable()),
            "{backend}: {} compared, {kthreads} kernel threads, {with_cmdline} with a cmdline",
            compared.len()
        );
        eprintln!("{backend}: {} processes compared with ps", compared.len());
    }
}

// ---------------------------------------------------------------------------
// --diff: an exec, a cwd change, RSS growth. The names of the lists and
// their fields ("execs", "cwd_changes", "rss_growth"; from/to, from_kib/
// to_kib) and the text lines are the ones this section assumes.

/// Every entry of a diff list about `pid`, across snapshots.
fn diff_entries<'a>(snaps: &'a [Value], list: &str, pid: u32) -> Vec<&'a Value> {
    snaps
        .iter()
        .filter_map(|s| s.get("diff"))
        .filter_map(|d| d.get(list))
        .flat_map(|l| l.as_array().unwrap())
        .filter(|e| e["pid"] == pid)
        .collect()
}

/// The fixture changes its cwd, grows by 64 MiB and execs sleep, each
/// step a few 300 ms ticks after the last: --diff says each, in JSON and
/// in the table, on both backends.
#[test]
fn diff_shows_cwd_change_rss_growth_and_exec() {
    let mut fx = IdFixture::start("df");
    let pid = fx.pid;
    let run = |backend: &str, json: bool| {
        let mut args = vec![
            "--backend",
            backend,
            "--interval",
            "300ms",
            "--diff",
            "--no-files",
        ];
        if json {
            args.extend(["-o", "json"]);
        }
        Armed::start(&args)
    };
    let backends = backends_here();
    let armed: Vec<_> = backends
        .iter()
        .flat_map(|b| [(b, true, run(b, true)), (b, false, run(b, false))])
        .collect();
    let step = || std::thread::sleep(Duration::from_millis(900));
    // The first (whole) snapshots, then the changes.
    std::thread::sleep(Duration::from_millis(700));
    let (from_cwd, to_cwd) = (fx.cwd(), fx.path(MOVED_CWD));
    fx.tell("cd");
    assert_eq!(readlink(pid, "cwd").unwrap(), to_cwd);
    step();
    let rss_before = status_kib(pid, "VmRSS");
    fx.tell("grow");
    let rss_after = status_kib(pid, "VmRSS");
    assert!(rss_after >= rss_before + (GROWTH >> 10) as u64 * 9 / 10);
    step();
    fx.tell("exec");
    step();
    let me = std::process::id();
    for (backend, json, armed) in armed {
        let (code, out, err) = armed.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{backend}: {err}");
        if json {
            let snaps = parse_lines(&out);
            let cwd = diff_entries(&snaps, "cwd_changes", pid);
            assert_eq!(cwd.len(), 1, "{backend}: {cwd:?}");
            assert_eq!(cwd[0]["from"], from_cwd.as_str(), "{backend}");
            assert_eq!(cwd[0]["to"], to_cwd.as_str(), "{backend}");
            assert_eq!(cwd[0]["tid"], pid, "{backend}");
            assert_eq!(cwd[0]["ppid"], me, "{backend}");
            assert_eq!(cwd[0]["comm"], fx.comm.as_str(), "{backend}");
            // The growth may be seen over two ticks, and its tail then be
            // too small a growth to report. (Sleep's own, from a snapshot
            // that saw the exec half done, is not the fixture's.)
            let growth: Vec<&Value> = diff_entries(&snaps, "rss_growth", pid)
                .into_iter()
                .filter(|g| g["comm"] != "sleep")
                .collect();
            assert!(!growth.is_empty(), "{backend}: no rss_growth");
            let kib = |e: &Value, k: &str| e[k].as_u64().unwrap();
            for g in &growth {
                assert!(kib(g, "to_kib") > kib(g, "from_kib"), "{backend}: {g}");
                assert_eq!(g["comm"], fx.comm.as_str(), "{backend}: {growth:?}");
            }
            let first = growth.iter().map(|g| kib(g, "from_kib")).min().unwrap();
            let last = growth.iter().map(|g| kib(g, "to_kib")).max().unwrap();
            let half = (GROWTH >> 11) as u64;
            // It starts from about the RSS before (a slow VM's fixture had
            // grown 5% more by the first tick), and grows by the half.
            assert!(
                first.abs_diff(rss_before) * 10 <= rss_before
                    && last >= rss_before + half
                    && last <= rss_after + rss_after / 20,
                "{backend}: {first} -> {last} KiB, /proc {rss_before} -> {rss_after}"
            );
            // From the fixture's name, or the exec'ing thread's where a
            // snapshot saw the exec half done.
            let exec = diff_entries(&snaps, "execs", pid);
            assert_eq!(exec.len(), 1, "{backend}: {exec:?}");
            assert!(
                exec[0]["from_comm"] == fx.comm.as_str()
                    || exec[0]["from_comm"] == fixture_thread_comm(),
                "{backend}: {}",
                exec[0]
            );
            assert_eq!(exec[0]["to_comm"], "sleep", "{backend}");
            assert_eq!(exec[0]["comm"], "sleep", "{backend}");
        } else {
            let about: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with(&format!("~ {pid} (")))
                .collect();
            let has = |what: &str, needles: &[&str]| {
                assert!(
                    about.iter().any(|l| needles.iter().all(|n| l.contains(n))),
                    "{backend}: a {what} line with {needles:?} in {about:#?}"
                );
            };
            has("cwd", &[" cwd ", &from_cwd, &to_cwd]);
            assert!(
                about.iter().any(|l| l.to_lowercase().contains(" rss ")),
                "{backend}: an rss line in {about:#?}"
            );
            let exec_from = |from: &str| format!("~ {pid} (sleep) exec {from} -> sleep");
            assert!(
                about
                    .iter()
                    .any(|l| *l == exec_from(&fx.comm) || *l == exec_from(fixture_thread_comm())),
                "{backend}: an exec line in {about:#?}"
            );
        }
    }
}

/// A process that rewrites its title as setproctitle() does (redis,
/// postgres, nginx) leaves NUL padding in /proc/PID/cmdline: ps shows the
/// title alone, and so does itersnap, in the table and in JSON's `cmdline`;
/// `cmdline_raw` keeps /proc's argv.
#[test]
fn retitled_processes_show_their_title_as_ps_does() {
    if !cmdline_readable() {
        return;
    }
    let title = "redis-server 127.0.0.1:6379";
    let retitled = start_retitled(title);
    let pid = retitled.pid.to_string();
    let raw = proc_cmdline(retitled.pid).unwrap();
    assert!(
        raw.len() > 2 && raw[0] == title && raw[1..].iter().all(String::is_empty),
        "{raw:?}"
    );
    let theirs = ps(&["-ww", "-o", "args=", "-p", &pid]);
    assert_eq!(theirs.trim_end_matches('\n'), title, "ps -o args");
    for backend in backends_here() {
        let snap = snapshot(&["--backend", backend, "--pid", &pid, "--no-files"]);
        let row = rows_of(&snap, retitled.pid)[0];
        assert_eq!(row["cmdline"], json!([title]), "{backend}");
        assert_eq!(row["cmdline_raw"], json!(raw), "{backend}");
        let table = itersnap(&["--backend", backend, "--pid", &pid, "--no-files"]);
        let text = String::from_utf8_lossy(&table.stdout);
        let line = text.lines().last().unwrap();
        assert!(line.ends_with(&format!(" {title}")), "{backend}: {line:?}");
    }
    // Without padding there is no cmdline_raw.
    let me = std::process::id().to_string();
    let snap = snapshot(&["--pid", &me, "--no-files"]);
    assert!(rows_of(&snap, std::process::id())[0]
        .get("cmdline_raw")
        .is_none());
}

/// ps's STAT (with its modifiers), %CPU and %MEM columns, and TIME
/// exactly as /proc's ticks give it:
/// a process that spun for a while and was stopped (its times fixed), and
/// every process on the machine against `ps -e`.
#[test]
fn pcpu_pmem_and_time_as_ps_and_proc_give_them() {
    let spinner = Reaped::spawn(Command::new("sh").args(["-c", "while :; do :; done"]));
    let pid = spinner.pid();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(100));
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks: u64 =
        fields[14 - 3].parse::<u64>().unwrap() + fields[15 - 3].parse::<u64>().unwrap();
    assert!(ticks > 0, "it spun");
    let want_time = format!(
        "{}:{:02}.{:02}",
        ticks / 6000,
        ticks / 100 % 60,
        ticks % 100
    );
    let pid_s = pid.to_string();
    let ps_cpu_mem = || {
        let theirs = ps(&["-o", "%cpu=,%mem=", "-p", &pid_s]);
        let words: Vec<String> = theirs.split_whitespace().map(str::to_string).collect();
        (words[0].parse::<f64>().unwrap(), words[1].clone())
    };
    for backend in backends_here() {
        // A stopped process's %CPU only falls as time passes: ours lies
        // between ps's before and after it (however slow the machine), but
        // for ps's rounding (its elapsed time in whole seconds).
        let (before, ps_mem) = ps_cpu_mem();
        let out = itersnap(&[
            "--backend",
            backend,
            "--pid",
            &pid_s,
            "--no-files",
            "--columns",
            "pid,%cpu,%mem,time",
        ]);
        let (after, _) = ps_cpu_mem();
        let text = String::from_utf8_lossy(&out.stdout);
        let line: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(line[3], want_time, "{backend}: TIME from /proc's ticks");
        let ours: f64 = line[1].parse().unwrap();
        assert!(
            after * 0.97 - 0.1 <= ours && ours <= before * 1.03 + 0.1,
            "{backend}: %CPU {ours}, ps {before} before and {after} after"
        );
        assert!(ours > 10.0, "{backend}: it spun: {ours}");
        assert_eq!(line[2], ps_mem, "{backend}: %MEM");
    }
    drop(spinner);
    // Every process, STAT with its modifiers too: the same but for those
    // that ran meanwhile (ps says otherwise after than before: the other
    // tests' fixtures, this test binary, kernel workers).
    let before = ps(&["-e", "-o", "pid=,stat=,%cpu=,%mem="]);
    let ours = itersnap(&["--no-files", "--columns", "pid,stat,%cpu,%mem"]);
    let ours: BTreeMap<String, String> = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            l.trim()
                .split_once(' ')
                .map(|(p, r)| (p.to_string(), r.trim().to_string()))
        })
        .collect();
    let theirs = ps(&["-e", "-o", "pid=,stat=,%cpu=,%mem="]);
    let still: std::collections::BTreeSet<&str> = before.lines().map(str::trim).collect();
    let (mut same, mut differ) = (0, 0);
    for line in theirs.lines().filter(|l| still.contains(l.trim())) {
        let line = line.trim();
        let Some((p, rest)) = line.split_once(' ') else {
            continue;
        };
        match ours.get(p) {
            Some(r) if r.split_whitespace().eq(rest.split_whitespace()) => same += 1,
            Some(_) => differ += 1,
            None => {}
        }
    }
    assert!(
        same > 10 && differ * 10 <= same,
        "{same} the same as ps -e, {differ} not"
    );
}
