//! The event's own details, read inside the event: a syscall's arguments by
//! name (the path an execve runs and its argv, the file an openat opens,
//! the file behind a read's fd, the address a connect dials), an exit's
//! status, a signal's siginfo, a tracepoint's fields; and the command line
//! the event's own task had at that moment. Each trigger is narrowed to a
//! fixture of its own (its pid or a name no other process has).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// A python3 fixture that names itself `comm`, runs `before`, says
/// "ready", waits for a line on stdin, then runs `action` (python, with
/// os, sys, socket and ctypes imported; its arguments from sys.argv[2]).
struct Py {
    child: Child,
    stdin: ChildStdin,
    comm: String,
    /// Its command line as /proc showed it once it was ready.
    cmdline: Vec<String>,
}

impl Py {
    fn start(tag: &str, before: &str, action: &str, args: &[&str]) -> Py {
        let comm = unique_comm(tag);
        let script = format!(
            "import os, sys, socket, ctypes\n\
             open('/proc/self/comm', 'w').write(sys.argv[1])\n\
             {before}\n\
             print('ready', flush=True)\n\
             sys.stdin.readline()\n\
             {action}\n"
        );
        let mut full: Vec<String> = vec!["-c".into(), script.clone(), comm.clone()];
        full.extend(args.iter().map(|a| a.to_string()));
        let mut child = Command::new("python3")
            .args(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        let stdin = child.stdin.take().unwrap();
        let raw = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
        let cmdline = raw
            .strip_suffix(b"\0")
            .unwrap_or(&raw)
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Py {
            child,
            stdin,
            comm,
            cmdline,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arms `trigger` (JSON, one snapshot, no files unless asked), lets the
/// fixture go, and returns the snapshot and the table's details line.
fn at_event(py: &mut Py, trigger: &[&str]) -> Value {
    let mut args = vec!["-o", "json", "--count", "1"];
    args.extend_from_slice(trigger);
    let armed = Armed::start(&args);
    py.go();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let snaps = parse_lines(&out);
    assert_eq!(snaps.len(), 1, "{out}{err}");
    snaps.into_iter().next().unwrap()
}

/// A file of its own for a test, removed with its directory at the end.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &[u8]) -> TempFile {
        let dir = std::env::temp_dir().join(format!("itersnap-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file.txt"), contents).unwrap();
        TempFile(dir)
    }

    fn path(&self) -> String {
        self.0.join("file.txt").to_str().unwrap().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `at_event` for an event the fixture itself causes, narrowed to its
/// name (its pid may be gone before the run could notice: an exit).
fn at_own_event(py: &mut Py, trigger: &[&str]) -> Value {
    let comm = py.comm.clone();
    let mut args = trigger.to_vec();
    args.extend(["--caller-comm", &comm, "--no-files", &comm]);
    at_event(py, &args)
}

/// The row of `pid`, which the event captured, with the command line it
/// had at the event, read inside it.
fn assert_own_cmdline_at_event(snap: &Value, py: &Py) {
    let rows = rows_of(snap, py.pid());
    assert_eq!(rows.len(), 1, "{snap}");
    let row = rows[0];
    assert_eq!(row["in_event"], true, "{row}");
    assert_eq!(row["cmdline"], json!(py.cmdline), "{row}");
    let after = row["read_after_event"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !after.contains(&json!("cmdline")),
        "read in the event: {row}"
    );
}

/// An execve trigger names the program executed and its argv, read from
/// the caller's memory inside the event; the caller's row is the program
/// that called it, with its own command line (never the new one's).
#[test]
fn an_execve_trigger_names_the_path_and_argv() {
    let mut py = Py::start(
        "ex",
        "pass",
        "os.dup2(os.open('/dev/null', os.O_WRONLY), 1); os.execv('/bin/echo', ['/bin/echo', 'first', 'two words'])",
        &[],
    );
    let pid = py.pid().to_string();
    let snap = at_event(
        &mut py,
        &["--on-syscall", "execve", "--caller-pid", &pid, "--no-files"],
    );
    let t = &snap["trigger"];
    assert_eq!(t["args"]["filename"], "/bin/echo", "{t}");
    assert_eq!(
        t["args"]["argv"],
        json!(["/bin/echo", "first", "two words"])
    );
    assert!(t["args"]["envp"].as_str().unwrap().starts_with("0x"), "{t}");
    assert_own_cmdline_at_event(&snap, &py);
}

/// The same, as the table shows it: strace's line under the header.
#[test]
fn the_table_shows_the_call_as_strace_does() {
    let file = TempFile::new("ev", b"x");
    let path = file.path();
    let mut py = Py::start(
        "op",
        "pass",
        "os.open(sys.argv[2], os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)",
        &[&path],
    );
    let comm = py.comm.clone();
    let armed = Armed::start(&[
        "--count",
        "1",
        "--on-syscall",
        "openat",
        "--caller-comm",
        &comm,
        "--no-files",
        &comm,
    ]);
    py.go();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().nth(1).unwrap_or_default();
    assert_eq!(
        line,
        format!("  openat(AT_FDCWD, \"{path}\", O_RDONLY|O_NOFOLLOW|O_CLOEXEC, 0)"),
        "{out}"
    );
}

/// An fd argument comes with its file, as the caller held it at the event.
#[test]
fn an_fd_argument_names_its_file() {
    let file = TempFile::new("fd", b"0123456789");
    let path = file.path();
    let mut py = Py::start(
        "rd",
        "f = os.open(sys.argv[2], os.O_RDONLY)",
        "os.read(f, 7)",
        &[&path],
    );
    let fd = proc_fds(py.pid())
        .into_iter()
        .find(|(_, p)| *p == path)
        .map(|(fd, _)| fd)
        .expect("the fixture holds the file");
    let pid = py.pid().to_string();
    let snap = at_event(&mut py, &["--on-syscall", "read", "--caller-pid", &pid]);
    let t = &snap["trigger"];
    assert_eq!(t["args"]["fd"], fd, "{t}");
    assert_eq!(t["args"]["count"], 7, "{t}");
    assert_eq!(t["arg_files"]["fd"]["path"], path.as_str(), "{t}");
    assert_eq!(t["arg_files"]["fd"]["type"], "REG", "{t}");
}

/// An exit (sched_process_exit) gives the status the fixture chose, its
/// fields by their tracefs names, and the dying process's own command
/// line, read inside the event.
#[test]
fn an_exit_gives_its_status_and_the_dying_command_line() {
    let mut py = Py::start("xt", "pass", "os._exit(42)", &[]);
    let snap = at_own_event(&mut py, &["--on-tracepoint", "sched:sched_process_exit"]);
    let t = &snap["trigger"];
    assert_eq!(
        t["exit"],
        json!({"code": 42 << 8, "status": 42, "signal": null, "core_dumped": false}),
        "{t}"
    );
    if t.get("fields").is_some() {
        // Through tracefs: the record's own fields.
        assert_eq!(t["fields"]["pid"], py.pid(), "{t}");
        assert_eq!(t["fields"]["comm"], py.comm.as_str(), "{t}");
    }
    assert_own_cmdline_at_event(&snap, &py);
}

/// A process killed by a signal: the signal, not a status.
#[test]
fn an_exit_by_a_signal_names_it() {
    let mut py = Py::start("xk", "pass", "os.kill(os.getpid(), 9)", &[]);
    let snap = at_own_event(&mut py, &["--on-tracepoint", "sched:sched_process_exit"]);
    assert_eq!(
        snap["trigger"]["exit"],
        json!({"code": 9, "status": null, "signal": "SIGKILL", "core_dumped": false})
    );
}

/// kill()'s siginfo names its sender; a fault's names its code and
/// address, and the faulting process's row has its own command line.
#[test]
fn a_signal_gives_its_siginfo() {
    let mut py = Py::start("sg", "pass", "os.kill(os.getpid(), 12)", &[]);
    let snap = at_own_event(&mut py, &["--on-signal", "USR2"]);
    let info = &snap["trigger"]["siginfo"];
    assert_eq!(info["code"], "SI_USER", "{info}");
    assert_eq!(info["pid"], py.pid(), "{info}");
    assert_eq!(info["uid"], unsafe { libc::geteuid() }, "{info}");

    // Reading address 0: SIGSEGV, SEGV_MAPERR at 0x0.
    let mut py = Py::start("sv", "pass", "ctypes.string_at(0)", &[]);
    let snap = at_own_event(&mut py, &["--on-signal", "SEGV"]);
    let info = &snap["trigger"]["siginfo"];
    assert_eq!(info["code"], "SEGV_MAPERR", "{info}");
    assert_eq!(info["addr"], "0x0", "{info}");
    assert_own_cmdline_at_event(&snap, &py);
}

/// connect()'s address, read from the caller's memory, and its socket.
#[test]
fn a_connect_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut py = Py::start(
        "cn",
        "s = socket.socket()",
        "s.connect(('127.0.0.1', int(sys.argv[2])))",
        &[&port.to_string()],
    );
    let pid = py.pid().to_string();
    let snap = at_event(&mut py, &["--on-syscall", "connect", "--caller-pid", &pid]);
    let t = &snap["trigger"];
    assert_eq!(
        t["args"]["uservaddr"],
        json!({"family": "inet", "addr": "127.0.0.1", "port": port}),
        "{t}"
    );
    assert_eq!(t["args"]["addrlen"], 16, "{t}");
    assert_eq!(t["arg_files"]["fd"]["socket"]["protocol"], "tcp", "{t}");
}

/// A tracefs syscall event reads its syscall's arguments as --on-syscall
/// does, and gives its record's fields by name.
#[test]
fn a_tracefs_syscall_event_names_its_arguments() {
    if !std::path::Path::new("/sys/kernel/tracing/events/syscalls").is_dir() {
        eprintln!("no tracefs syscall events here: skipped");
        return;
    }
    let mut py = Py::start(
        "ul",
        "pass",
        "try: os.unlink('/nonexistent/itersnap-x')\nexcept OSError: pass",
        &[],
    );
    let snap = at_own_event(&mut py, &["--on-tracepoint", "syscalls:sys_enter_unlink"]);
    let t = &snap["trigger"];
    assert_eq!(t["args"]["pathname"], "/nonexistent/itersnap-x", "{t}");
    assert_eq!(t["fields"]["__syscall_nr"], 87, "{t}");
}
