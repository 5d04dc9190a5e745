//! Shared by the integration tests: running itersnap, a fixture process with
//! known open files and threads, and ground truth read from /proc.
//!
//! The fixture is this same test binary, re-executed with ITERSNAP_FIXTURE
//! set: its `fixture_process` test then builds the fixture instead of passing
//! trivially. Each fixture gets a unique comm so filters never match another
//! test's processes.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const ITERSNAP: &str = env!("CARGO_BIN_EXE_itersnap");

/// Both backends; tests that check snapshots against /proc run each.
pub const BACKENDS: [&str; 2] = ["seq", "open-coded"];

/// The backends this kernel runs, of BACKENDS (the open-coded one needs
/// 6.7): the tests that scripts/test also runs in the older kernels' VMs
/// (tests/exact.rs, tests/identity.rs) take each of these.
pub fn backends_here() -> Vec<&'static str> {
    static HERE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    HERE.get_or_init(|| {
        let me = std::process::id().to_string();
        let here: Vec<_> = BACKENDS
            .into_iter()
            .filter(|b| {
                itersnap(&["--backend", b, "--pid", &me, "--no-files"])
                    .status
                    .success()
            })
            .collect();
        assert!(
            here.contains(&"seq"),
            "the seq backend runs on every kernel"
        );
        here
    })
    .clone()
}

/// Runs itersnap with `args`.
pub fn itersnap(args: &[&str]) -> Output {
    Command::new(ITERSNAP)
        .args(args)
        .output()
        .expect("running itersnap")
}

/// Runs itersnap with `-o json` and returns its snapshots; fails the test on
/// a non-zero exit, but for 1 when no snapshot holds a task (the filters
/// matched nothing: errors.rs tests that status; here the snapshots say it).
pub fn snapshots(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = itersnap(&all);
    let snaps = parse_lines(&String::from_utf8(out.stdout).expect("JSON output is UTF-8"));
    let matched_nothing = !snaps.is_empty()
        && snaps
            .iter()
            .all(|s| s["tasks"].as_array().is_some_and(|t| t.is_empty()));
    assert!(
        out.status.success() || (out.status.code() == Some(1) && matched_nothing),
        "itersnap {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    snaps
}

pub fn snapshot(args: &[&str]) -> Value {
    let mut snaps = snapshots(args);
    assert_eq!(snaps.len(), 1, "one snapshot expected");
    snaps.remove(0)
}

/// The pids of a JSON snapshot's tasks.
pub fn task_pids(snap: &Value) -> BTreeSet<u32> {
    snap["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_u64().unwrap() as u32)
        .collect()
}

/// Rows of a JSON snapshot whose pid is `pid`.
pub fn rows_of(snap: &Value, pid: u32) -> Vec<&Value> {
    snap["tasks"]
        .as_array()
        .expect("tasks array")
        .iter()
        .filter(|t| t["pid"] == pid)
        .collect()
}

/// fd → readlink text, straight from /proc/PID/fd.
pub fn proc_fds(pid: u32) -> BTreeMap<i32, String> {
    let mut fds = BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return fds;
    };
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(target) = fs::read_link(entry.path()) {
            fds.insert(fd, target.to_string_lossy().into_owned());
        }
    }
    fds
}

/// fd → description as itersnap's JSON row shows it.
pub fn snapshot_fds(row: &Value) -> BTreeMap<i32, String> {
    row["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| {
            (
                f["fd"].as_i64().unwrap() as i32,
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Fields of /proc/PID/stat after the comm: index 0 is the state.
pub fn proc_stat(pid: u32) -> Option<(String, Vec<String>)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest = text[close + 2..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((comm, rest))
}

pub fn proc_tids(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort();
    tids
}

/// Every process now in /proc, with its start time (to tell pid reuse apart).
pub fn proc_processes() -> BTreeMap<u32, u64> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(|pid| {
            let (_, stat) = proc_stat(pid)?;
            Some((pid, stat.get(19)?.parse().ok()?))
        })
        .collect()
}

/// A fresh comm (≤ 15 bytes) no other test or process uses.
pub fn unique_comm(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("is{tag}{}x{n}", std::process::id());
    name[..name.len().min(15)].to_string()
}

/// A running fixture; dropping it ends the process.
pub struct Fixture {
    pub pid: u32,
    pub comm: String,
    /// With `start_with_creds`: the child whose ids all differ (CREDS).
    pub creds_pid: Option<u32>,
    pub dir: PathBuf,
    child: Child,
    /// Kept open so the fixture never writes to a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Fixture {
    /// Starts the fixture and waits until it holds all its files and threads.
    pub fn start(tag: &str) -> Fixture {
        Self::start_with(tag, None, 0)
    }

    /// A fixture that, once told `go()`, opens `moment.txt`, causes `event`
    /// (see `cause_event`), closes the file and exits at once.
    pub fn start_event(tag: &str, event: &str) -> Fixture {
        Self::start_with(tag, Some(event), 0)
    }

    /// An event fixture that also holds `extra_fds` more fds (dups of /dev/null).
    pub fn start_event_with_fds(tag: &str, event: &str, extra_fds: usize) -> Fixture {
        Self::start_with(tag, Some(event), extra_fds)
    }

    /// A quiescent fixture that also holds `extra_fds` more fds (dups of /dev/null).
    pub fn start_with_fds(tag: &str, extra_fds: usize) -> Fixture {
        Self::start_full(tag, None, extra_fds, 0, false)
    }

    /// A quiescent fixture with `children` forked children of its name, each
    /// holding the fixture's files, paused until the fixture exits.
    pub fn start_with_children(tag: &str, children: usize) -> Fixture {
        Self::start_full(tag, None, 0, children, false)
    }

    /// A quiescent fixture with a child of its name (`creds_pid`) whose
    /// real, effective, saved and filesystem ids all differ: CREDS.
    pub fn start_with_creds(tag: &str) -> Fixture {
        Self::start_full(tag, None, 0, 0, true)
    }

    fn start_with(tag: &str, event: Option<&str>, extra_fds: usize) -> Fixture {
        Self::start_full(tag, event, extra_fds, 0, false)
    }

    fn start_full(
        tag: &str,
        event: Option<&str>,
        extra_fds: usize,
        children: usize,
        creds: bool,
    ) -> Fixture {
        let comm = unique_comm(tag);
        let dir = std::env::temp_dir().join(format!("itersnap-{comm}"));
        // Not the test's stderr: that file is written by other tests as this
        // one compares the fixture's fds (and their positions) with /proc.
        let stderr_path = fixture_stderr(&dir);
        let stderr = fs::File::create(&stderr_path).expect("creating the fixture's stderr");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["fixture_process", "--exact", "--nocapture", "--quiet"])
            .env("ITERSNAP_FIXTURE", &comm)
            .env("ITERSNAP_FIXTURE_DIR", &dir)
            .env("ITERSNAP_FIXTURE_EVENT", event.unwrap_or(""))
            .env("ITERSNAP_FIXTURE_EXTRA_FDS", extra_fds.to_string())
            .env("ITERSNAP_FIXTURE_CHILDREN", children.to_string())
            .env("ITERSNAP_FIXTURE_CREDS", if creds { "1" } else { "" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting the fixture");
        // libtest prints its own lines first; the fixture's is "ready".
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut creds_pid = None;
        while line.trim() != "ready" {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "fixture exited before it was ready: {}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            if let Some(pid) = line.trim().strip_prefix("creds ") {
                creds_pid = pid.parse().ok();
            }
        }
        // Quiescent means asleep: the creds child reports its ids before it
        // pauses, and on a busy machine it may still be runnable (its
        // scheduler statistics changing under the tests that compare them).
        if let Some(pid) = creds_pid {
            wait_until_asleep(pid);
        }
        Fixture {
            pid: child.id(),
            comm,
            creds_pid,
            dir,
            child,
            _stdout: stdout,
        }
    }
}

/// Waits (up to 10 s) until process `pid` sleeps (state S in /proc).
fn wait_until_asleep(pid: u32) {
    for _ in 0..1000 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next());
        if matches!(state, Some("S") | None) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Fixture {
    /// The next line the fixture prints after "ready".
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self._stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// The pid an event fixture reports on its "child PID" line.
    pub fn child_pid(&mut self) -> u64 {
        let line = self.read_line();
        let pid = line
            .strip_prefix("child ")
            .unwrap_or_else(|| panic!("not a child line: {line}"));
        pid.parse().unwrap()
    }

    /// Tells an event fixture to act; it exits right after.
    pub fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the fixture to exit.
    pub fn wait(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(fixture_stderr(&self.dir));
    }
}

/// Where a fixture's stderr goes: beside its directory, not in it.
fn fixture_stderr(dir: &std::path::Path) -> PathBuf {
    let mut path = dir.as_os_str().to_owned();
    path.push(".stderr");
    PathBuf::from(path)
}

/// Number of threads the fixture starts besides the test harness's own.
pub const FIXTURE_THREADS: usize = 3;

/// A child process killed and reaped when dropped (a test that fails
/// midway leaves nothing running).
pub struct Reaped(pub Child);

impl Reaped {
    pub fn spawn(cmd: &mut Command) -> Reaped {
        Reaped(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("running {cmd:?}: {e}")),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a `Holder` holds its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// An fd open for reading (its stdin).
    Read,
    /// An fd open for writing (its stdout, appending).
    Write,
    /// As its working directory.
    Cwd,
    /// By a mapping, its fd closed (a re-executed test binary).
    Map,
}

/// A process that holds one path one way (`sleep`, or for a mapping this
/// test binary), until dropped: for --file and --mount against fuser and
/// lsof.
pub struct Holder {
    pub pid: u32,
    child: Child,
}

impl Holder {
    pub fn start(how: Hold, path: &Path) -> Holder {
        let mut cmd = if how == Hold::Map {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["fixture_process", "--exact", "--nocapture", "--quiet"])
                .env("ITERSNAP_MAP_HOLDER", path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            cmd
        } else {
            let mut cmd = Command::new("sleep");
            cmd.arg("600").stdout(Stdio::null()).stdin(Stdio::null());
            cmd
        };
        match how {
            Hold::Read => {
                cmd.stdin(fs::File::open(path).unwrap());
            }
            Hold::Write => {
                cmd.stdout(fs::OpenOptions::new().append(true).open(path).unwrap());
            }
            Hold::Cwd => {
                cmd.current_dir(path);
            }
            Hold::Map => {}
        }
        let mut child = cmd.spawn().expect("starting a holder");
        let pid = child.id();
        if how == Hold::Map {
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            while line.trim() != "ready" {
                line.clear();
                assert!(
                    stdout.read_line(&mut line).unwrap() > 0,
                    "the map holder exited"
                );
            }
        } else {
            // Held from the fork on; named `sleep` once it has exec'd.
            for _ in 0..500 {
                if fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Holder { pid, child }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The map holder's body: maps the file, closes its fd, says "ready" and
/// waits for stdin to close.
fn hold_mapping(path: &Path) -> ! {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).unwrap();
    // SAFETY: a read-only shared mapping of a file this process opened,
    // never read, kept until exit.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    drop(file);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// Starts this test binary as a process that rewrites its command line as
/// setproctitle() does (redis, postgres, nginx): `title`, then NULs to the
/// end of the argv area. Returns it once it has.
pub fn start_retitled(title: &str) -> Holder {
    start_this_binary("ITERSNAP_TITLE", title)
}

/// This test binary re-run with `key`=`value` (run_fixture_if_asked()
/// picks its body by it); returns once it says "ready". It ends when its
/// stdin closes, or when dropped.
fn start_this_binary(key: &str, value: &str) -> Holder {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["fixture_process", "--exact", "--nocapture", "--quiet"])
        .env(key, value)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting this test binary with {key}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{key}: it exited");
    }
    Holder {
        pid: child.id(),
        child,
    }
}

/// The retitled process's body: the argv area, from /proc/self/stat's
/// arg_start and arg_end, overwritten with the title and NUL padding.
fn retitle(title: &str) -> ! {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 48 and 49 of stat(5); `fields` starts at field 3.
    let start: usize = fields[48 - 3].parse().unwrap();
    let end: usize = fields[49 - 3].parse().unwrap();
    assert!(title.len() < end - start, "the title fits the argv area");
    // SAFETY: [start, end) is this process's own argv strings, on its
    // stack, which nothing reads after main() began.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        area[..title.len()].copy_from_slice(title.as_bytes());
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// Starts this test binary as a process with a thread of each name in
/// `names` (a name may come twice), as redis names its `bio_close_file`
/// threads. Returns it once they are named.
pub fn start_with_named_threads(names: &[&str]) -> Holder {
    start_this_binary("ITERSNAP_THREAD_NAMES", &names.join(","))
}

/// The named-threads process's body: a thread per name (std names it in
/// the kernel too), then "ready", until stdin closes.
fn name_threads(names: &str) -> ! {
    let (named, all_named) = std::sync::mpsc::channel();
    for name in names.split(',') {
        let named = named.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                named.send(()).unwrap();
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
    }
    for _ in names.split(',') {
        all_named.recv().unwrap();
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// The body of the fixture process: opens a known set of files, starts
/// threads, names itself, says "ready" and waits for stdin to close.
pub fn run_fixture_if_asked() {
    if let Some(path) = std::env::var_os("ITERSNAP_MAP_HOLDER") {
        hold_mapping(Path::new(&path));
    }
    if let Ok(title) = std::env::var("ITERSNAP_TITLE") {
        retitle(&title);
    }
    if let Ok(names) = std::env::var("ITERSNAP_THREAD_NAMES") {
        name_threads(&names);
    }
    let Ok(comm) = std::env::var("ITERSNAP_FIXTURE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("ITERSNAP_FIXTURE_DIR").unwrap());
    fs::create_dir_all(&dir).unwrap();
    let event = std::env::var("ITERSNAP_FIXTURE_EVENT").unwrap_or_default();
    hold_files(&dir);
    let extra: usize = std::env::var("ITERSNAP_FIXTURE_EXTRA_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for _ in 0..extra {
        keep(fs::File::open("/dev/null").unwrap());
    }
    for _ in 0..FIXTURE_THREADS {
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }
    // /proc/self is the thread-group leader: this names the process, not
    // just this (test harness) thread.
    fs::write("/proc/self/comm", &comm).unwrap();
    let children: usize = std::env::var("ITERSNAP_FIXTURE_CHILDREN")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let name = std::ffi::CString::new(comm.as_bytes()).unwrap();
    for _ in 0..children {
        // SAFETY: the child makes only async-signal-safe calls.
        unsafe { fork_paused(&name) };
    }
    if std::env::var("ITERSNAP_FIXTURE_CREDS").is_ok_and(|v| v == "1") {
        // SAFETY: the child makes only async-signal-safe calls.
        let pid = unsafe { fork_with_creds(&name) };
        println!("creds {pid}");
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    if !event.is_empty() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        let moment = fs::File::create(dir.join("moment.txt")).unwrap();
        cause_event(&event);
        drop(moment);
        // The directory goes with the Fixture on the test's side: removing it
        // here would turn the open directory fds into "(deleted)" changes.
        std::process::exit(0);
    }
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = fs::remove_dir_all(&dir);
    std::process::exit(0);
}

/// A function for `--on-uprobe TEST_BINARY:itersnap_fixture_probe`.
#[no_mangle]
#[inline(never)]
pub extern "C" fn itersnap_fixture_probe() -> u64 {
    std::hint::black_box(42)
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Forks a child named like the fixture that pauses until the fixture
/// exits. Only async-signal-safe calls in the child of a threaded process.
unsafe fn fork_paused(comm: &std::ffi::CStr) {
    let parent = libc::getpid();
    if libc::fork() == 0 {
        libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The fixture may have gone before the death signal was armed.
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        loop {
            libc::pause();
        }
    }
}

/// The ids of the `start_with_creds` child: real, effective, saved and
/// filesystem uids, then gids (euid 0 keeps the capability to set fsuid).
pub const CREDS: [u32; 8] = [1001, 0, 1003, 1004, 2001, 2002, 2003, 2004];

/// Forks a child named like the fixture, with the ids of CREDS, paused
/// until the fixture exits; returns once the ids are set. Raw syscalls (a
/// thread's own ids, not glibc's broadcast to every thread) in the child
/// of a threaded process, which makes only async-signal-safe calls.
unsafe fn fork_with_creds(comm: &std::ffi::CStr) -> libc::pid_t {
    let parent = libc::getpid();
    let mut pipe = [0; 2];
    check(libc::pipe(pipe.as_mut_ptr()), "pipe");
    let child = libc::fork();
    if child == 0 {
        libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        let [ruid, euid, suid, fsuid, rgid, egid, sgid, fsgid] = CREDS;
        let ok = libc::syscall(libc::SYS_setresgid, rgid, egid, sgid) == 0
            && libc::syscall(libc::SYS_setfsgid, fsgid) >= 0
            && libc::syscall(libc::SYS_setresuid, ruid, euid, suid) == 0
            && libc::syscall(libc::SYS_setfsuid, fsuid) >= 0;
        // A change of ids clears the parent-death signal: set it again,
        // or the child outlives the fixture.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        libc::write(pipe[1], [u8::from(ok)].as_ptr().cast(), 1);
        loop {
            libc::pause();
        }
    }
    libc::close(pipe[1]);
    let mut ok = [0u8];
    let n = libc::read(pipe[0], ok.as_mut_ptr().cast(), 1);
    libc::close(pipe[0]);
    assert!(
        n == 1 && ok[0] == 1,
        "the creds child could not set its ids"
    );
    child
}

/// Forks a child named like the fixture (the COMM filter shows it; otherwise
/// it would inherit this harness thread's name) that lives `lifetime`, with
/// a grandchild of the same name if asked; prints "child PID" and returns it.
/// Only async-signal-safe calls in the child of a threaded process.
unsafe fn fork_named(lifetime: libc::timespec, grandchild: bool) -> libc::pid_t {
    let comm = std::ffi::CString::new(std::env::var("ITERSNAP_FIXTURE").unwrap()).unwrap();
    let child = libc::fork();
    if child == 0 {
        libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
        if grandchild && libc::fork() == 0 {
            libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
        }
        libc::nanosleep(&lifetime, std::ptr::null_mut());
        libc::_exit(0);
    }
    println!("child {child}");
    std::io::stdout().flush().unwrap();
    child
}

/// The event an event fixture causes while `moment.txt` is open.
fn cause_event(event: &str) {
    // SAFETY: plain syscalls; the handler does nothing.
    unsafe {
        match event {
            "signal" => {
                libc::signal(
                    libc::SIGUSR1,
                    ignore_signal as *const () as libc::sighandler_t,
                );
                libc::kill(libc::getpid(), libc::SIGUSR1);
            }
            "syscall" => {
                libc::getppid();
            }
            "tracepoint" => {
                // task:task_rename, for this thread only.
                libc::prctl(libc::PR_SET_NAME, c"itersnap-moved".as_ptr());
            }
            "uprobe" => {
                itersnap_fixture_probe();
            }
            // The --diff test: open a file, fork a child, close the file, let
            // the child exit; each step two 300 ms ticks after the last.
            "diff" => {
                let step = || std::thread::sleep(std::time::Duration::from_millis(600));
                let dir = std::env::var("ITERSNAP_FIXTURE_DIR").unwrap();
                let file = fs::File::create(format!("{dir}/diff-file.txt")).unwrap();
                step();
                let child = fork_named(
                    libc::timespec {
                        tv_sec: 1,
                        tv_nsec: 200_000_000,
                    },
                    false,
                );
                step();
                drop(file);
                step();
                libc::waitpid(child, std::ptr::null_mut(), 0);
                step();
            }
            // The --tree test: a child and a grandchild, named like the
            // fixture, alive for two seconds.
            "tree" => {
                fork_named(
                    libc::timespec {
                        tv_sec: 2,
                        tv_nsec: 0,
                    },
                    true,
                );
                std::thread::sleep(std::time::Duration::from_millis(2500));
            }
            // The --diff test of ids: euid (and with it fsuid) to 4242, in
            // every thread (glibc's seteuid), then 1.5 s to be seen.
            "setuid" => {
                check(libc::seteuid(4242), "seteuid");
                std::thread::sleep(std::time::Duration::from_millis(1500));
            }
            // A hot syscall for one second: the rate-limit test.
            "spin" => {
                let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
                while std::time::Instant::now() < end {
                    libc::getpid();
                }
            }
            other => panic!("unknown fixture event {other}"),
        }
    }
}

/// Keeps an fd open for the life of the process.
fn keep(fd: impl IntoRawFd) {
    let _ = fd.into_raw_fd();
}

fn check(ret: i32, what: &str) -> i32 {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

fn hold_files(dir: &Path) {
    use std::os::unix::net::{UnixListener, UnixStream};
    let mut regular = fs::File::create(dir.join("regular file.txt")).unwrap();
    regular.write_all(b"itersnap fixture\n").unwrap();
    keep(regular);
    // Files on other mounts: procfs and the tmpfs on /dev/shm.
    keep(fs::File::open("/proc/self/status").unwrap());
    let shm = PathBuf::from(format!("/dev/shm/itersnap-{}", std::process::id()));
    keep(fs::File::create(&shm).unwrap());
    let _ = fs::remove_file(&shm); // also a deleted file on another mount
    let deleted = dir.join("deleted.txt");
    keep(fs::File::create(&deleted).unwrap());
    fs::remove_file(&deleted).unwrap();
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    keep(fs::File::open(dir.join("sub/deeper")).unwrap());
    keep(fs::File::open("/").unwrap());
    keep(fs::File::open("/proc/self/ns/net").unwrap());

    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    keep(tcp);
    keep(UnixListener::bind(dir.join("listener.sock")).unwrap());
    let (a, b) = UnixStream::pair().unwrap();
    keep(a);
    keep(b);
    keep(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());

    // SAFETY: plain syscalls on fds this process owns; results checked.
    unsafe {
        let mut pipe = [0; 2];
        check(libc::pipe(pipe.as_mut_ptr()), "pipe");
        check(libc::eventfd(0, libc::EFD_CLOEXEC), "eventfd");
        check(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll");
        check(
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC),
            "timerfd",
        );
        check(libc::inotify_init1(libc::IN_CLOEXEC), "inotify");
        let name = c"itersnap-memfd";
        check(
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC),
            "memfd",
        );
        let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32;
        check(pidfd, "pidfd_open");
        // A high fd, beyond the first word of the open-fds bitmap.
        check(libc::dup2(pipe[0], 300), "dup2");
    }
}

/// Names of every BPF program itersnap loads (BPF keeps 15 bytes of a name).
pub const OUR_PROGRAMS: &[&str] = &[
    "dump_task",
    "dump_task_files",
    "dump_file",
    "dump_file_walk",
    "dump_cmdline",
    "dump_maps",
    "bare_walk",
    "on_signal",
    "on_syscall",
    "on_syscall_exit",
    "on_tracepoint",
    "on_tracefs",
    "on_uprobe",
    "on_timer",
    "bare_walk",
];

/// itersnap's BPF programs that no process holds open: left behind (pinned or
/// leaked). A program in use by a running itersnap is held through its fds;
/// one that a concurrent test's itersnap is loading or tearing down may be
/// unheld for an instant, so only what stays orphaned across samples counts.
pub fn orphaned_programs() -> Vec<u32> {
    still_orphaned(orphaned_programs_now)
}

/// What `sample` finds orphaned every time over about a second.
fn still_orphaned(sample: fn() -> Vec<u32>) -> Vec<u32> {
    let mut orphans = sample();
    for _ in 0..3 {
        if orphans.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let again = sample();
        orphans.retain(|id| again.contains(id));
    }
    orphans
}

/// Names of itersnap's maps as the kernel shows them (15 bytes kept).
const OUR_MAPS: &[&str] = &[
    "scratch_map",
    "name_map",
    "events",
    "seqiter_.rodata",
    "seqiter_.bss",
    "opencode.rodata",
    "opencode.bss",
];

/// itersnap's maps that neither a process's fd nor a loaded program holds:
/// left behind (a pin, a leak). Re-sampled like programs.
pub fn orphaned_maps() -> Vec<u32> {
    still_orphaned(orphaned_maps_now)
}

fn orphaned_maps_now() -> Vec<u32> {
    let mut held: BTreeSet<u32> = fdinfo_ids("map_id:");
    let opts = libbpf_rs::query::ProgInfoQueryOptions::default().include_map_ids(true);
    for prog in libbpf_rs::query::ProgInfoIter::with_query_opts(opts) {
        held.extend(prog.map_ids);
    }
    libbpf_rs::query::MapInfoIter::default()
        .filter(|m| OUR_MAPS.iter().any(|n| m.name.to_str() == Some(n)))
        .map(|m| m.id)
        .filter(|id| !held.contains(id))
        .collect()
}

/// Every `<key> N` line of every process's fdinfo.
fn fdinfo_ids(key: &str) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for proc_dir in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = fs::read_dir(proc_dir.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in info.lines() {
                if let Some(id) = line.strip_prefix(key) {
                    ids.extend(id.trim().parse::<u32>());
                }
            }
        }
    }
    ids
}

fn orphaned_programs_now() -> Vec<u32> {
    let held = fdinfo_ids("prog_id:");
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| OUR_PROGRAMS.iter().any(|n| p.name.to_str() == Some(n)))
        .map(|p| p.id)
        .filter(|id| !held.contains(id))
        .collect()
}

/// A running itersnap with a trigger armed; its stdout is collected.
pub struct Armed {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Armed {
    /// Starts itersnap and returns once it says the trigger is armed.
    pub fn start(args: &[&str]) -> Armed {
        let mut child = Command::new(ITERSNAP)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running itersnap");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                panic!("itersnap {args:?} exited ({status}) before arming: {first}");
            }
            first.push_str(&line);
            if line.starts_with("itersnap: armed:") {
                break;
            }
        }
        let stderr = std::thread::spawn(move || {
            let mut s = first;
            let _ = err.read_to_string(&mut s);
            s
        });
        Armed {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits (at most 30 s) for itersnap to end by itself; returns
    /// (exit code, stdout, stderr).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.code(), out, err)
    }

    /// Sends a signal (SIGINT, SIGTERM, ...) and waits for the end.
    pub fn stop(self, signal: i32) -> (Option<i32>, String, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.finish()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// JSON Lines → objects.
pub fn parse_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| {
            let snap = serde_json::from_str(l).expect("each line is one JSON object");
            assert_valid_snapshot(&snap);
            snap
        })
        .collect()
}

/// docs/snapshot.schema.json, compiled once.
fn snapshot_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/snapshot.schema.json");
        let schema: Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    })
}

/// Every snapshot a test reads must be what docs/snapshot.schema.json says.
pub fn assert_valid_snapshot(snap: &Value) {
    let errors: Vec<String> = snapshot_schema()
        .iter_errors(snap)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not as docs/snapshot.schema.json says: {errors:?}"
    );
}

/// Whether docs/snapshot.schema.json accepts `value` (for the schema's own test).
pub fn schema_accepts(value: &Value) -> bool {
    snapshot_schema().is_valid(value)
}

/// docs/check.schema.json, compiled once.
fn check_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/check.schema.json");
        let schema: Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    })
}

/// `itersnap check -o json` must be what docs/check.schema.json says.
pub fn assert_valid_check(report: &Value) {
    let errors: Vec<String> = check_schema()
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not as docs/check.schema.json says: {errors:?}"
    );
}

/// Whether docs/check.schema.json accepts `value` (for the schema's own test).
pub fn check_schema_accepts(value: &Value) -> bool {
    check_schema().is_valid(value)
}

/// A snapshot of this process, taken inside an event: this process is the
/// target of an (ignored) SIGWINCH.
pub fn in_event_snapshot_of_me(backend: &str) -> Value {
    let me = std::process::id().to_string();
    let armed = Armed::start(&[
        "-o",
        "json",
        "--count",
        "1",
        "--backend",
        backend,
        "--on-signal",
        "SIGWINCH",
        "--signal-target",
        &me,
        "--pid",
        &me,
    ]);
    // SAFETY: kill(2) on this very process, with a signal ignored by default.
    assert_eq!(
        unsafe { libc::kill(std::process::id() as i32, libc::SIGWINCH) },
        0
    );
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let snap = parse_lines(&out).remove(0);
    assert_eq!(rows_of(&snap, std::process::id())[0]["in_event"], true);
    snap
}

/// Every `.rs` file under `dir`, for the tests that read the sources
/// (tests/layers.rs, tests/man.rs).
pub fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Is this path on overlayfs (statfs says so, of the file or, deleted,
/// of the directory it was in)? Its files' stat and /proc devices are the
/// overlay's, where the kernel's records name the layer's superblock.
pub fn on_overlayfs(path: &str) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    let statfs_type = |path: &str| {
        let c = std::ffi::CString::new(path).ok()?;
        // SAFETY: statfs writes only the struct we own; the path is NUL-terminated.
        unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            (libc::statfs(c.as_ptr(), &mut fs) == 0).then_some(fs.f_type as i64)
        }
    };
    let dir = std::path::Path::new(path.trim_end_matches(" (deleted)"))
        .parent()
        .and_then(|d| d.to_str())
        .unwrap_or("/");
    statfs_type(path).or_else(|| statfs_type(dir)) == Some(OVERLAYFS_SUPER_MAGIC)
}
