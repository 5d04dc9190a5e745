//! Every error a user can cause: one clear line on stderr, a non-zero exit,
//! no panic, no libbpf dump, and nothing left loaded in the kernel.

mod common;

use std::process::{Command, Output};

use common::*;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

fn assert_one_line_error(out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "exactly one line: {stderr:?}");
    assert!(stderr.starts_with("itersnap: error: "), "{stderr}");
    assert!(stderr.contains(expect), "{stderr:?} should say {expect:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("libbpf"));
    assert!(out.stdout.is_empty(), "no output on error");
    assert_eq!(
        orphaned_programs(),
        Vec::<u32>::new(),
        "nothing left loaded"
    );
}

/// /proc shows names of at most 63 bytes (a kernel thread's full name):
/// a longer COMM could never match.
#[test]
fn comm_longer_than_63_bytes() {
    let out = itersnap(&[&"a-very-long-name".repeat(4)]);
    assert_one_line_error(&out, "at most 63 bytes");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_pids() {
    for bad in ["0", "abc", "-3", "1.5"] {
        let out = itersnap(&["--pid", bad]);
        assert_one_line_error(&out, "PID must be a positive number");
        assert_eq!(out.status.code(), Some(2), "--pid {bad}");
    }
    // A number, too large for a PID, is called too large.
    let out = itersnap(&["--pid", "99999999999"]);
    assert_one_line_error(&out, "PID 99999999999 is too large");
    assert_eq!(out.status.code(), Some(2));
}

/// Options that cannot apply to the mode asked for are refused, one line
/// naming the conflict, exit 2: never silently ignored.
#[test]
fn options_that_cannot_apply_are_refused() {
    for (args, says) in [
        (
            &["--on-syscall", "execve", "--signal-target", "1"][..],
            "--signal-target applies to --on-signal only",
        ),
        (
            &["--on-syscall", "execve", "--signal-target-comm", "x"],
            "--signal-target-comm applies to --on-signal only",
        ),
        (
            &["--interval", "1s", "--caller-pid", "1"],
            "--caller-pid cannot be used with --interval",
        ),
        (
            &["--interval", "1s", "--caller-comm", "x"],
            "--caller-comm cannot be used with --interval",
        ),
        (
            &["--interval", "1s", "--event-budget", "2ms"],
            "--event-budget cannot be used with --interval",
        ),
        (&["--count", "3"], "--count applies to a run with a trigger"),
        (
            &["--min-gap", "1s"],
            "--min-gap applies to a run with a trigger",
        ),
        (
            &["--ringbuf-size", "4K"],
            "--ringbuf-size applies to a run with a trigger",
        ),
        (&["--diff"], "--diff applies to a run with a trigger"),
        (
            &["--folded", "-o", "json"],
            "-o json does not apply with --folded, which writes stacks instead of snapshots",
        ),
        (
            &["--flamegraph", "/tmp/x.svg", "--tree"],
            "--tree does not apply with --flamegraph",
        ),
        (
            &["--interval", "1s", "--folded", "--diff"],
            "'--folded' cannot be used with '--diff'",
        ),
        (
            &["--tree", "-o", "json"],
            "--tree applies to the table, not to -o json",
        ),
        (
            &["--columns", "pid", "-o", "json"],
            "--columns applies to the table",
        ),
        (
            &["--file", "/", "--no-files"],
            "'--file <PATH>' cannot be used with '--no-files'",
        ),
        (
            &["--mount", "/", "--port", "80"],
            "'--mount <PATH>' cannot be used with '--port <PORT>'",
        ),
        (
            &["--file", "/", "--threads"],
            "'--file <PATH>' cannot be used with '--threads'",
        ),
        (
            &["--file", "/", "--tree"],
            "'--file <PATH>' cannot be used with '--tree'",
        ),
        (
            &["--mount", "/", "--columns", "pid"],
            "'--mount <PATH>' cannot be used with '--columns <LIST>'",
        ),
        (
            &["--file", "/nonexistent/itersnap"],
            "cannot stat /nonexistent/itersnap: No such file or directory",
        ),
        (
            &[
                "--file", "/", "--file", "/", "--file", "/", "--file", "/", "--file", "/",
                "--file", "/", "--file", "/", "--file", "/", "--file", "/", "--file", "/",
                "--file", "/", "--file", "/", "--file", "/", "--file", "/", "--file", "/",
                "--mount", "/", "--mount", "/",
            ],
            "--file and --mount name 17 targets, at most 16",
        ),
    ] {
        let out = itersnap(args);
        assert_one_line_error(&out, says);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// Mistakes get errors that point the right way: clap's "did you mean",
/// two COMMs, the subcommand's singular.
#[test]
fn mistakes_are_named_as_such() {
    let out = itersnap(&["--theads"]);
    assert_one_line_error(&out, "'--threads'");
    assert_eq!(out.status.code(), Some(2));
    // A subcommand after a COMM is taken for a second COMM, and said so.
    let out = itersnap(&["nginx", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`check` is a subcommand: `itersnap check`, alone"),
        "{stderr}"
    );
    // Too many names or pids for the kernel's filter: refused.
    let names: Vec<String> = (0..9).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_one_line_error(
        &itersnap(&names),
        "9 COMMs are given, at most 8 are matched in the kernel",
    );
    assert_one_line_error(
        &itersnap(&["-p", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"]),
        "17 pids are given, at most 16",
    );
    let out = itersnap(&["completion", "bash"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("itersnap"));
    // A COMM one letter off a subcommand: no such process, and the hint.
    let out = itersnap(&["chek"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean `itersnap check`"), "{stderr}");
}

#[test]
fn unknown_output_format() {
    let out = itersnap(&["--output", "xml"]);
    assert_one_line_error(&out, "invalid value 'xml'");
    assert!(String::from_utf8_lossy(&out.stderr).contains("table, json"));
}

#[test]
fn unknown_flag() {
    assert_one_line_error(&itersnap(&["--frobnicate"]), "unexpected argument");
}

#[test]
fn without_capabilities() {
    // Root with every capability dropped, and an ordinary user.
    for extra in [
        &[][..],
        &["--reuid=65534", "--regid=65534", "--clear-groups"][..],
    ] {
        let out = Command::new("setpriv")
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .args(extra)
            .arg("--")
            .arg(ITERSNAP)
            .output()
            .expect("setpriv (util-linux)");
        assert_one_line_error(
            &out,
            "needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn without_btf() {
    // Hide the kernel's BTF in a private mount namespace.
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /sys/kernel/btf && exec {ITERSNAP}"
        ))
        .output()
        .expect("unshare (util-linux)");
    assert_one_line_error(&out, "this kernel has no BTF");
}

/// Filters that match nothing: the snapshot is still written (as `ps -p`
/// prints its header), and the run exits 1 with one line saying what
/// matched nothing, as pgrep and lsof exit 1.
#[test]
fn filters_that_match_nothing_exit_1() {
    let nobody = unique_comm("none");
    let gone = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid.to_string()
    };
    for (args, says) in [
        (
            vec![nobody.as_str()],
            format!("no process named {nobody} in the snapshot"),
        ),
        (
            vec!["--pid", &gone],
            format!("no process with pid {gone} in the snapshot"),
        ),
        (
            vec!["--pid", "2147483647"],
            "no process with pid 2147483647".to_string(),
        ),
        (
            vec!["a-name-of-25-bytes-in-all"],
            "in the snapshot (a process's name is at most 15 bytes".to_string(),
        ),
        (
            vec!["--port", "1", "--proto", "udp"],
            "no process holding a socket that --port".to_string(),
        ),
        (
            // The lsof habit: a path where a COMM goes.
            vec!["/etc/hostname"],
            "no process named /etc/hostname in the snapshot; to see who holds a file: itersnap --file /etc/hostname".to_string(),
        ),
        (
            vec!["--interval", "100ms", "--count", "2", &nobody],
            format!("no process named {nobody} in any of 2 snapshots"),
        ),
    ] {
        let mut all = vec!["-o", "json"];
        all.extend(&args);
        let out = itersnap(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("itersnap: ") && last.contains(&says),
            "{args:?}: {stderr:?}"
        );
        assert!(
            !stderr.contains("error") && !stderr.contains("panicked"),
            "{stderr}"
        );
        let snaps = parse_lines(&String::from_utf8_lossy(&out.stdout));
        assert!(!snaps.is_empty(), "{args:?}: the snapshots are written");
        for snap in snaps {
            assert_eq!(snap["tasks"].as_array().unwrap().len(), 0, "{args:?}");
            assert_eq!(snap["complete"], true, "{args:?}");
        }
        assert_eq!(orphaned_programs(), Vec::<u32>::new());
    }
    // A match: 0, and nothing on stderr.
    let fx = Fixture::start("m");
    let out = itersnap(&["-o", "json", &fx.comm]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nothing_left_loaded_after_a_snapshot() {
    let fx = Fixture::start("n");
    let snap = snapshot(&["--stacks", "--threads", &fx.comm]);
    assert!(!rows_of(&snap, fx.pid).is_empty());
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

#[test]
fn bad_trigger_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["--on-signal", "SIGFOO"], "unknown signal 'SIGFOO'"),
        (&["--on-signal", "99"], "unknown signal '99'"),
        (
            &["--on-syscall", "frobnicate"],
            "unknown syscall 'frobnicate'",
        ),
        (
            &["--on-signal", "USR1", "--count", "0"],
            "the count must be at least 1",
        ),
        (
            &["--on-signal", "USR1", "--min-gap", "1xs"],
            "invalid duration '1xs'",
        ),
        (
            &["--on-signal", "USR1", "--min-gap", "-1s"],
            "invalid duration '-1s'",
        ),
        (
            &["--on-signal", "USR1", "--ringbuf-size", "lots"],
            "invalid size 'lots'",
        ),
        (
            &["--on-tracepoint", "sched_process_exit"],
            "expected CATEGORY:NAME",
        ),
        (&["--on-uprobe", "readline"], "expected PATH:SYMBOL"),
        (&["--signal-target", "5"], "--on-signal"),
        (&["--caller-pid", "5"], "required"),
        (
            &["--on-signal", "USR1", "--on-syscall", "read"],
            "cannot be used with",
        ),
        (&["--backend", "bpftrace"], "invalid value 'bpftrace'"),
        (
            &["--interval", "0"],
            "the interval must be at least 10ms, not '0'",
        ),
        (&["--interval", "5ms"], "the interval must be at least 10ms"),
        (&["--interval", "-1s"], "invalid duration '-1s'"),
        (&["--interval", "1xs"], "invalid duration '1xs'"),
        // Too large is called too large, with the limit.
        (
            &["--interval", "8761h"],
            "the interval must be at most 365 days (8760h), not '8761h'",
        ),
        (
            &["--on-signal", "USR1", "--min-gap", "1000000000h"],
            "the minimum gap: '1000000000h' is too long: at most 365 days (8760h)",
        ),
        (
            &["--on-signal", "USR1", "--event-budget", "1000000h"],
            "the event budget must be at most 1s, not '1000000h'",
        ),
        (&["--sort", "cpu"], "--diff"),
        (
            &["--on-signal", "USR1", "--event-budget", "2s"],
            "the event budget must be at most 1s, not '2s'",
        ),
        (
            &["--on-signal", "USR1", "--event-budget", "-1ms"],
            "invalid duration '-1ms'",
        ),
        (
            &["--on-signal", "USR1", "--event-budget", "fast"],
            "invalid duration 'fast'",
        ),
        // A one-shot has no event to capture in.
        (
            &["--event-budget", "1ms"],
            "the following required arguments were not provided",
        ),
        (
            &["--interval", "1s", "--on-signal", "USR1"],
            "cannot be used with",
        ),
    ];
    for (args, expect) in cases {
        let out = itersnap(args);
        assert_one_line_error(&out, expect);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn triggers_that_do_not_exist_here() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--on-tracepoint", "sched:no_such_event"],
            "unknown tracepoint 'sched:no_such_event'",
        ),
        (
            &["--on-uprobe", "/no/such/binary:main"],
            "cannot read /no/such/binary",
        ),
        (
            &["--on-uprobe", "/etc/passwd:main"],
            "/etc/passwd is not an ELF file",
        ),
        (
            &["--on-uprobe", "/bin/sh:no_such_function_here"],
            "/bin/sh has no function 'no_such_function_here'",
        ),
    ];
    for (args, expect) in cases {
        let out = itersnap(args);
        assert_one_line_error(&out, expect);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

/// Categories can only be checked where tracefs is mounted (names always
/// are, through the kernel's BTF).
#[test]
fn unknown_tracepoint_category_where_tracefs_is_mounted() {
    if !std::path::Path::new("/sys/kernel/tracing/events").is_dir() {
        eprintln!("tracefs is not mounted here: nothing to check");
        return;
    }
    let out = itersnap(&["--on-tracepoint", "nocategory:sched_switch"]);
    assert_one_line_error(&out, "unknown tracepoint category 'nocategory'");
    // A syscalls: event that does not exist points to --on-syscall.
    let out = itersnap(&["--on-tracepoint", "syscalls:sys_enter_nosuchcall"]);
    assert_one_line_error(
        &out,
        "unknown tracepoint 'syscalls:sys_enter_nosuchcall' (see /sys/kernel/tracing/events/syscalls); --on-syscall NAME",
    );
    assert_eq!(out.status.code(), Some(1));
}

/// SIGINT, SIGTERM and SIGHUP end an armed itersnap with status 0, a summary,
/// and nothing left in the kernel.
#[test]
fn signals_stop_an_armed_run_cleanly() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let comm = unique_comm("s");
        let armed = Armed::start(&["--on-signal", "USR2", "--signal-target-comm", &comm]);
        let (code, out, err) = armed.stop(signal);
        assert_eq!(code, Some(0), "signal {signal}: {err}");
        assert!(out.is_empty());
        assert!(
            err.contains("itersnap: 0 snapshots, 0 triggers skipped"),
            "{err}"
        );
        assert!(!err.contains("panicked"));
        assert_eq!(orphaned_programs(), Vec::<u32>::new());
    }
}

/// Output to a closed pipe ends an armed itersnap quietly: no error, no
/// panic, exit status 0, nothing left loaded.
#[test]
fn closed_stdout_ends_an_armed_run() {
    let out = Command::new("bash")
        .args(["-c", &format!(
            "set -o pipefail; {ITERSNAP} --interval 100ms --no-files | head -1 >/dev/null; echo \"status $?\""
        )])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.trim(), "status 0", "{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

/// Even a panic with programs loaded and a trigger attached leaves nothing:
/// itersnap pins nothing, so the kernel frees all with its file descriptors.
#[test]
fn a_panic_leaves_nothing_loaded() {
    for backend in BACKENDS {
        let out = Command::new(ITERSNAP)
            .args([
                "--backend",
                backend,
                "--on-signal",
                "USR2",
                "--signal-target-comm",
                "nobody-here",
            ])
            .env("ITERSNAP_TEST_PANIC", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(101), "{backend}: a Rust panic");
        assert!(String::from_utf8_lossy(&out.stderr).contains("ITERSNAP_TEST_PANIC"));
        assert_eq!(orphaned_programs(), Vec::<u32>::new(), "{backend}");
        assert_eq!(orphaned_maps(), Vec::<u32>::new(), "{backend}");
        assert!(std::fs::read_dir("/sys/fs/bpf")
            .map(|d| d
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().contains("itersnap")))
            .unwrap_or(true));
    }
}

#[test]
fn bad_filter_values() {
    for (args, says) in [
        (
            &["--user", "no-such-user-here"][..],
            "no user named no-such-user-here",
        ),
        (&["--task-state", "Q"], "'Q' is not a task state"),
        (&["--task-state", ","], "no state given"),
        (&["--on-syscall", "99999"], "no syscall number 99999"),
        (
            &["--cgroup", "/no/such/cgroup"],
            "no cgroup /no/such/cgroup: neither a cgroup2 directory",
        ),
        (
            &["--state", "TIME_WAIT"],
            "TIME_WAIT sockets have no fd and belong to no process: `ss -tan state time-wait`",
        ),
    ] {
        let out = itersnap(args);
        assert_one_line_error(&out, says);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// --flamegraph's file is created before anything is loaded: a path that
/// cannot be is one line, exit 1.
#[test]
fn a_flamegraph_file_that_cannot_be_written() {
    let out = itersnap(&["--flamegraph", "/nonexistent/itersnap/x.svg"]);
    assert_one_line_error(
        &out,
        "creating /nonexistent/itersnap/x.svg: No such file or directory",
    );
    assert_eq!(out.status.code(), Some(1));
}

/// --signal-target and --caller-pid name a process that must exist when
/// the run starts: one line, exit 1, nothing loaded (a process that has
/// exited, a pid above pid_max, a thread's id).
#[test]
fn watched_processes_must_exist() {
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let gone = gone.id().to_string();
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let beyond = (pid_max + 1).to_string();
    // A thread that lives through the test (libtest's own come and go).
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let parked = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        std::thread::park();
    });
    let thread = tid_rx.recv().unwrap().to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--on-signal", "WINCH", "--signal-target", &gone],
            format!("--signal-target {gone}: no such process"),
        ),
        (
            vec!["--on-signal", "WINCH", "--signal-target", &beyond],
            format!("--signal-target {beyond}: no such process"),
        ),
        (
            vec!["--on-syscall", "getpid", "--caller-pid", &gone],
            format!("--caller-pid {gone}: no such process"),
        ),
        (
            vec!["--on-syscall", "getpid", "--caller-pid", &thread],
            format!("--caller-pid {thread} is a thread, not a process"),
        ),
    ];
    for (args, expect) in &cases {
        let out = itersnap(args);
        assert_one_line_error(&out, expect);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    parked.thread().unpark();
}

/// As a user that is not root, with only CAP_BPF and CAP_PERFMON (ambient,
/// through setpriv): a snapshot works, every process's files, command
/// lines, mappings and activity included; kernel stacks need CAP_SYSLOG to
/// read kernel addresses (unless the sysctls show them to everyone), and
/// the error names it; without CAP_PERFMON nothing loads, and the error
/// names both.
#[test]
fn capabilities_each_view_needs() {
    let run = |caps: &str, args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(ITERSNAP)
            .args(args)
            .output()
            .expect("running setpriv")
    };
    let me = std::process::id().to_string();
    let out = run(
        "+bpf,+perfmon",
        &["-p", &me, "-o", "json", "--activity", "--maps"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.lines().count() <= 1,
        "at most a note on WCHAN: {stderr}"
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &snap["tasks"][0];
    assert_eq!(row["user"], "root", "another user's process");
    assert!(row["cmdline"].is_array(), "{row}");
    assert!(!row["files"].as_array().unwrap().is_empty(), "{row}");
    assert!(row["activity"].is_string(), "{row}");

    let sysctl = |name: &str| -> i64 {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (kptr, paranoid) = (sysctl("kptr_restrict"), sysctl("perf_event_paranoid"));
    let stacks = ["--stacks", "--no-files", "-p", me.as_str()];
    let out = run("+bpf,+perfmon", &stacks);
    if kptr == 0 && paranoid <= 1 {
        assert!(out.status.success(), "addresses shown to everyone");
    } else if kptr < 2 {
        assert_one_line_error(&out, "reading kernel addresses needs CAP_SYSLOG");
        assert_eq!(out.status.code(), Some(1));
        let out = run("+bpf,+perfmon,+syslog", &stacks);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run("+bpf", &["-p", &me]);
    assert_one_line_error(&out, "CAP_BPF and CAP_PERFMON");
}
