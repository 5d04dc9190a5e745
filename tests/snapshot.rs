//! One-shot snapshots checked against /proc: a fixture with known files and
//! threads, and every process on the machine.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::process::Command;

use common::*;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

#[test]
fn fixture_files_equal_readlink() {
    for backend in BACKENDS {
        fixture_files_equal_readlink_with(backend);
    }
}

fn fixture_files_equal_readlink_with(backend: &str) {
    let fx = Fixture::start("f");
    let snap = snapshot(&["--backend", backend, &fx.comm]);
    assert_eq!(snap["backend"], backend);
    let tasks = snap["tasks"].as_array().unwrap();
    assert_eq!(
        tasks.len(),
        1,
        "the COMM filter shows only the fixture: {tasks:?}"
    );
    let row = &tasks[0];
    assert_eq!(row["pid"], fx.pid);
    assert_eq!(row["comm"], fx.comm.as_str());

    let expected = proc_fds(fx.pid);
    let got = snapshot_fds(row);
    assert_eq!(got, expected, "every fd and description equals readlink");

    // The fixture holds each kind of file the issue names; make sure the
    // comparison above really covered them.
    let descs: Vec<&String> = got.values().collect();
    let has = |pred: &dyn Fn(&str) -> bool| descs.iter().any(|d| pred(d));
    assert!(has(&|d| d.ends_with("/regular file.txt")));
    assert!(has(&|d| d.starts_with("/proc/") && d.ends_with("/status")));
    assert!(has(
        &|d| d.starts_with("/dev/shm/itersnap-") && d.ends_with(" (deleted)")
    ));
    assert!(has(&|d| d.ends_with("/deleted.txt (deleted)")));
    assert!(has(&|d| d.ends_with("/sub/deeper")));
    assert!(has(&|d| d == "/"));
    assert!(has(&|d| d.starts_with("pipe:[")));
    assert!(has(&|d| d.starts_with("socket:[")));
    assert!(has(&|d| d.starts_with("net:[")));
    assert!(has(&|d| d == "anon_inode:[eventfd]"));
    assert!(has(&|d| d == "anon_inode:[eventpoll]"));
    assert!(has(&|d| d == "/memfd:itersnap-memfd (deleted)"));
    assert!(got.contains_key(&300));

    // File types as lsof shows them, from stat(2) of each open file.
    for f in row["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let kind = f["type"].as_str().unwrap();
        let fd = f["fd"].as_i64().unwrap();
        let ft = fs::metadata(format!("/proc/{}/fd/{fd}", fx.pid))
            .unwrap()
            .file_type();
        let expected_kind = if ft.is_socket() {
            "SOCK"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_dir() {
            "DIR"
        } else if ft.is_file() {
            "REG"
        } else if ft.is_char_device() {
            "CHR"
        } else {
            "a_inode"
        };
        assert_eq!(kind, expected_kind, "{path}");
        // flags (with O_CLOEXEC from the fd table), pos and ino as fdinfo has them.
        let fdinfo = fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", fx.pid)).unwrap();
        let field = |name: &str| {
            fdinfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        assert_eq!(f["flags"].as_str(), field("flags:").as_deref(), "{path}");
        assert_eq!(f["pos"].to_string(), field("pos:").unwrap(), "{path}");
        if let Some(ino) = field("ino:") {
            assert_eq!(f["ino"].to_string(), ino, "{path}");
        }
        if path.ends_with("/regular file.txt") {
            assert_eq!(kind, "REG");
            assert_eq!(f["access"], "w");
            assert_eq!(f["size"], 17);
            assert_eq!(f["pos"], 17);
        }
    }
}

#[test]
fn fixture_identity_matches_proc() {
    let fx = Fixture::start("i");
    let snap = snapshot(&["--pid", &fx.pid.to_string()]);
    let tasks = snap["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "--pid shows only that process");
    let row = &tasks[0];
    let (comm, stat) = proc_stat(fx.pid).unwrap();
    assert_eq!(row["comm"], comm.as_str());
    assert_eq!(row["state"], stat[0].as_str());
    assert_eq!(row["ppid"].to_string(), stat[1]);
    assert_eq!(row["threads"].to_string(), stat[17]);
    assert_eq!(row["threads"], proc_tids(fx.pid).len());
    assert_eq!(
        row["threads"],
        2 + FIXTURE_THREADS,
        "harness thread, main, fixture threads"
    );
    // /proc/PID/status: Uid: real effective saved fs
    let status = fs::read_to_string(format!("/proc/{}/status", fx.pid)).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row["uid"].to_string(), uids[1]);
    assert_eq!(row["euid"].to_string(), uids[2]);
    // Start time: /proc gives clock ticks since boot (USER_HZ = 100 here).
    let start_ticks: u64 = stat[19].parse().unwrap();
    let start_ns = row["start_ns"].as_u64().unwrap();
    assert_eq!(start_ns / 10_000_000, start_ticks);
    // CPU time: utime+stime in ticks; ours is exact, so allow one tick of rounding.
    let proc_cpu: u64 = stat[11].parse::<u64>().unwrap() + stat[12].parse::<u64>().unwrap();
    let ours = (row["utime_ns"].as_u64().unwrap() + row["stime_ns"].as_u64().unwrap()) / 10_000_000;
    assert!(
        ours.abs_diff(proc_cpu) <= 2,
        "cpu ticks {ours} vs /proc {proc_cpu}"
    );
    assert_eq!(snapshot_fds(row), proc_fds(fx.pid));
}

#[test]
fn threads_get_a_row_each() {
    for backend in BACKENDS {
        threads_get_a_row_each_with(backend);
    }
}

fn threads_get_a_row_each_with(backend: &str) {
    let fx = Fixture::start("t");
    let snap = snapshot(&["--backend", backend, "--threads", &fx.comm]);
    let rows = rows_of(&snap, fx.pid);
    let tids: Vec<u32> = rows
        .iter()
        .map(|r| r["tid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tids, proc_tids(fx.pid));
    for r in &rows {
        let tid = r["tid"].as_u64().unwrap() as u32;
        let (comm, stat) = proc_stat(tid).unwrap();
        assert_eq!(r["comm"], comm.as_str(), "thread {tid}");
        assert_eq!(r["state"], stat[0].as_str(), "thread {tid}");
        // Files hang off the leader's row only.
        let files = r["files"].as_array().unwrap();
        assert_eq!(files.is_empty(), tid != fx.pid);
    }
}

#[test]
fn stacks_match_proc_stack() {
    for backend in BACKENDS {
        stacks_match_proc_stack_with(backend);
    }
}

fn stacks_match_proc_stack_with(backend: &str) {
    let fx = Fixture::start("k");
    let snap = snapshot(&["--backend", backend, "--stacks", "--no-files", &fx.comm]);
    let row = rows_of(&snap, fx.pid)[0];
    let ours: Vec<String> = row["stack"]
        .as_array()
        .expect("a stack")
        .iter()
        .map(|f| f["symbol"].as_str().unwrap().to_string())
        .collect();
    // The leader is blocked in the harness; its stack stays put.
    let proc: Vec<String> = fs::read_to_string(format!("/proc/{}/stack", fx.pid))
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("[<0>] ").to_string())
        .collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, proc);
    assert!(row["files"].as_array().unwrap().is_empty(), "--no-files");
}

/// A `sleep` child, killed when dropped.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `function+0xoff/0xsize [module]`, as /proc/PID/stack prints a frame.
fn is_frame(symbol: &str) -> bool {
    let (func, rest) = symbol.split_once('+').unwrap_or(("", ""));
    let (span, module) = match rest.split_once(' ') {
        Some((span, module)) => (span, Some(module)),
        None => (rest, None),
    };
    let hex = |h: &str| {
        h.strip_prefix("0x")
            .is_some_and(|d| u64::from_str_radix(d, 16).is_ok())
    };
    !func.is_empty()
        && span.split_once('/').is_some_and(|(o, s)| hex(o) && hex(s))
        && module.is_none_or(|m| m.len() > 2 && m.starts_with('[') && m.ends_with(']'))
}

#[test]
fn sleep_stack_names_nanosleep() {
    for backend in BACKENDS {
        sleep_stack_names_nanosleep_with(backend);
    }
}

fn sleep_stack_names_nanosleep_with(backend: &str) {
    let sleeper = Sleeper(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawning sleep"),
    );
    let pid = sleeper.0.id();
    // Until it is asleep in the syscall: /proc/PID/stack names it.
    let proc_stack = || {
        fs::read_to_string(format!("/proc/{pid}/stack"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_start_matches("[<0>] ").to_string())
            .collect::<Vec<String>>()
    };
    let in_nanosleep =
        |s: &str| s.starts_with("hrtimer_nanosleep+") || s.starts_with("do_nanosleep+");
    let mut proc = proc_stack();
    for _ in 0..500 {
        if proc.iter().any(|f| in_nanosleep(f)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        proc = proc_stack();
    }
    assert!(
        proc.iter().any(|f| in_nanosleep(f)),
        "sleep never slept: {proc:?}"
    );

    let pid_arg = pid.to_string();
    let args = [
        "--backend",
        backend,
        "--stacks",
        "--no-files",
        "--pid",
        &pid_arg,
    ];
    let snap = snapshot(&args);
    let row = rows_of(&snap, pid)[0];
    let ours: Vec<String> = row["stack"]
        .as_array()
        .expect("a stack")
        .iter()
        .map(|f| f["symbol"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(ours.iter().any(|f| in_nanosleep(f)), "{backend}: {ours:?}");
    assert!(ours.iter().all(|f| is_frame(f)), "{backend}: {ours:?}");
    // A sleeping task's stack stays put: the same frames the kernel shows.
    assert_eq!(ours, proc, "{backend}");

    // The table shows the same frames.
    let out = itersnap(&args);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for frame in &proc {
        assert!(
            table.contains(&format!("[<0>] {frame}")),
            "{backend}: {table}"
        );
    }
}

#[test]
fn table_output_names_the_fixture_files() {
    let fx = Fixture::start("o");
    let out = itersnap(&[&fx.comm]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("snapshot 1 at "), "{header}");
    // auto: the open-coded backend where the kernel has it, filtered or not.
    let auto = if backends_here().contains(&"open-coded") {
        "open-coded"
    } else {
        "seq"
    };
    assert!(
        header.contains(&format!("one-shot ({auto} backend), 1 processes")),
        "{header}"
    );
    // COMMAND is ps's args: the fixture's command line, spaces between.
    let cmdline = fs::read(format!("/proc/{}/cmdline", fx.pid)).unwrap();
    let args = String::from_utf8_lossy(cmdline.strip_suffix(b"\0").unwrap()).replace('\0', " ");
    assert!(text.contains(&format!(" {args}\n")), "{args} in {text}");
    assert!(text.contains("regular file.txt"));
    assert!(text.contains("anon_inode:[eventfd]"));
}

/// Every process that exists before and after a snapshot of all tasks is in
/// it, with the identity /proc gives; and every process it shows existed.
#[test]
fn all_tasks_agree_with_proc() {
    for backend in BACKENDS {
        all_tasks_agree_with_proc_with(backend);
    }
}

fn all_tasks_agree_with_proc_with(backend: &str) {
    let before = proc_processes();
    let snap = snapshot(&["--backend", backend]);
    let after = proc_processes();
    let rows = snap["tasks"].as_array().unwrap();
    let shown: BTreeSet<u32> = rows
        .iter()
        .map(|r| r["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(shown.len(), rows.len(), "one row per process");

    let mut checked = 0;
    for (pid, start) in &before {
        // PID 1 is invisible to BPF on these machines; skip pid reuse.
        if *pid == 1 || after.get(pid) != Some(start) {
            continue;
        }
        assert!(
            shown.contains(pid),
            "process {pid} missing from the snapshot"
        );
        let row = rows_of(&snap, *pid)[0];
        assert_eq!(
            row["start_ns"].as_u64().unwrap() / 10_000_000,
            *start,
            "pid {pid}"
        );
        // Gone since `after` (another test's process): nothing to compare.
        let Some((comm, stat)) = proc_stat(*pid) else {
            continue;
        };
        assert_eq!(row["ppid"].to_string(), stat[1], "ppid of {pid}");
        if row["comm"] != comm.as_str() {
            // Only a process that renamed itself (exec) may differ.
            assert_ne!(
                proc_stat(*pid).map(|s| s.0),
                Some(row["comm"].as_str().unwrap().into())
            );
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} processes compared");
    for pid in &shown {
        assert!(
            before.contains_key(pid) || after.contains_key(pid) || proc_stat(*pid).is_none(),
            "pid {pid} shown but never in /proc"
        );
    }
    assert_eq!(snap["counts"]["processes"], rows.len());
    assert_eq!(snap["complete"], true);
}

/// Files of every stable process agree with /proc/PID/fd.
#[test]
fn all_files_agree_with_proc() {
    for backend in BACKENDS {
        all_files_agree_with_proc_with(backend);
    }
}

fn all_files_agree_with_proc_with(backend: &str) {
    // Not PID 1 (invisible to BPF here), nor this test, whose fds change as it reads.
    let me = std::process::id();
    let pids: Vec<u32> = proc_processes()
        .into_keys()
        .filter(|&p| p != 1 && p != me)
        .collect();
    let before: Vec<_> = pids.iter().map(|&p| (p, proc_fds(p))).collect();
    let snap = snapshot(&["--backend", backend]);
    let mut compared = 0;
    for (pid, fds) in before {
        if proc_fds(pid) != fds {
            continue; // changed while we looked: no ground truth
        }
        let Some(row) = rows_of(&snap, pid).first().copied() else {
            continue; // exited in between
        };
        if snapshot_fds(row) != fds {
            // Equal before and after is not unchanged in between (a
            // compiler opens and closes a file): a stable process agrees
            // on a second look of its own.
            assert_files_agree_alone(pid, backend);
        }
        compared += 1;
    }
    assert!(compared > 5, "only {compared} processes compared");
}

/// One process's files agree with /proc/PID/fd in one of three quiet reads.
fn assert_files_agree_alone(pid: u32, backend: &str) {
    let mut last = None;
    for _ in 0..3 {
        let fds = proc_fds(pid);
        let snap = snapshot(&["--pid", &pid.to_string(), "--backend", backend]);
        if proc_fds(pid) != fds {
            continue;
        }
        let shown = rows_of(&snap, pid).first().map(|r| snapshot_fds(r));
        if shown.is_none() || shown.as_ref() == Some(&fds) {
            return; // gone, or agrees
        }
        last = Some((shown, fds));
    }
    if let Some((shown, fds)) = last {
        assert_eq!(shown.unwrap(), fds, "files of pid {pid} ({backend})");
    }
}

#[test]
fn closed_stdout_ends_quietly() {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("{ITERSNAP} | head -c 10 >/dev/null; echo ${{PIPESTATUS:-}}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A path deeper than the walk's bound, captured inside an event (where
/// paths are built from dentries), is marked truncated and keeps its tail;
/// through d_path() (the iterators of every one-shot) it is whole.
/// This process's file whose path ends so.
fn my_file_ending(snap: &serde_json::Value, suffix: &str) -> serde_json::Value {
    rows_of(snap, std::process::id())[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no file ending {suffix}"))
        .clone()
}

/// Paths are whole up to the kernel's own limit, as readlink shows them:
/// in the event on the open-coded backend (its walk has bpf_loop), after it
/// on both (d_path). The seq object's walk inside the event is bounded at
/// 64 components (no bpf_loop on its oldest kernels): there a deeper path
/// is marked truncated, a true tail of the real one.
#[test]
fn deep_paths_are_whole_or_marked_truncated() {
    let top = std::env::temp_dir().join(unique_comm("deep"));
    let deep = top.join(["d"; 80].join("/"));
    fs::create_dir_all(&deep).unwrap();
    // This test process holds the file open; the snapshot looks at it.
    let file = fs::File::create(deep.join("leaf")).unwrap();
    let me = std::process::id();
    let real = fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))
    .unwrap()
    .to_string_lossy()
    .into_owned();

    for backend in BACKENDS {
        let snap = in_event_snapshot_of_me(backend);
        let entry = my_file_ending(&snap, "/d/leaf");
        let shown = entry["path"].as_str().unwrap();
        if backend == "open-coded" {
            assert_eq!(shown, real, "in the event, {backend}");
            assert_eq!(entry["truncated"], false);
        } else {
            assert_eq!(entry["truncated"], true, "in the event, {backend}");
            let tail = shown.strip_prefix("...").expect("marked as a partial path");
            assert!(real.ends_with(tail), "{shown} is a tail of {real}");
            assert!(snap["counts"]["truncated"].as_u64().unwrap() >= 1);
        }
        let whole = my_file_ending(
            &snapshot(&["--pid", &me.to_string(), "--backend", backend]),
            "/d/leaf",
        );
        assert_eq!(whole["path"].as_str().unwrap(), real, "{backend}");
        assert_eq!(whole["truncated"], false, "{backend}");
    }
    drop(file);
    fs::remove_dir_all(top).unwrap();
}

/// No filter makes a snapshot less exact: a process whose working
/// directory and open file are 80 levels deep shows both whole, as
/// readlink does, with --pid, with its COMM and unfiltered, on every
/// backend (the seq object's bounded walk hands such a cwd to /proc's
/// d_path(); files come from the iterators' d_path()).
#[test]
fn deep_paths_are_whole_with_every_filter() {
    let top = std::env::temp_dir().join(unique_comm("dcwd"));
    let deep = top.join(["d"; 80].join("/"));
    fs::create_dir_all(&deep).unwrap();
    let comm = unique_comm("dp");
    let exe = top.join(&comm);
    fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = std::process::Command::new(&exe)
        .arg("600")
        .current_dir(&deep)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let real_cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    let real_cwd = real_cwd.to_str().unwrap();
    // Our own file at the same depth.
    let file = fs::File::create(deep.join("leaf-of-every-filter")).unwrap();
    let real_file = fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))
    .unwrap();
    let real_file = real_file.to_str().unwrap();
    let me = std::process::id().to_string();
    let pid_s = pid.to_string();

    for backend in backends_here() {
        for filter in [vec!["--pid", pid_s.as_str()], vec![comm.as_str()], vec![]] {
            let mut args = vec!["--backend", backend];
            args.extend(&filter);
            let snap = snapshot(&args);
            let row = rows_of(&snap, pid)[0];
            assert_eq!(row["cwd"].as_str(), Some(real_cwd), "{backend} {filter:?}");
        }
        for filter in [vec!["--pid", me.as_str()], vec![]] {
            let mut args = vec!["--backend", backend];
            args.extend(&filter);
            let entry = my_file_ending(&snapshot(&args), "/d/leaf-of-every-filter");
            assert_eq!(
                entry["path"].as_str(),
                Some(real_file),
                "{backend} {filter:?}"
            );
            assert_eq!(entry["truncated"], false, "{backend} {filter:?}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(file);
    fs::remove_dir_all(top).unwrap();
}

/// A path longer than PATH_MAX, made with *at() calls (no path argument is
/// that long): readlink fails on it, and every backend marks it truncated
/// rather than pass a suffix off as a path.
#[test]
fn paths_past_path_max_are_marked_truncated() {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let top = std::env::temp_dir().join(unique_comm("long"));
    fs::create_dir_all(&top).unwrap();
    let name = CString::new("n".repeat(200)).unwrap();
    let open_dir = |at: i32, path: &CString| {
        // SAFETY: plain syscalls on a valid fd and NUL-terminated names.
        // Close-on-exec, as std opens files: else fixtures that other tests
        // spawn meanwhile inherit them (and readlink cannot name them).
        let flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
        let fd = unsafe { libc::openat(at, path.as_ptr(), flags) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut dir = open_dir(
        libc::AT_FDCWD,
        &CString::new(top.to_str().unwrap()).unwrap(),
    );
    for _ in 0..22 {
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) },
            0
        );
        dir = open_dir(dir.as_raw_fd(), &name);
    }
    let leaf = CString::new("leaf").unwrap();
    // SAFETY: as above.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            leaf.as_ptr(),
            libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    assert!(fd >= 0);
    // SAFETY: a fresh fd owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let err = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));

    let me = std::process::id();
    let long_entry = |snap: &serde_json::Value| {
        rows_of(snap, me)[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fd"] == fd)
            .expect("the long file is listed")
            .clone()
    };
    for backend in BACKENDS {
        for (when, snap) in [
            ("in the event", in_event_snapshot_of_me(backend)),
            (
                "one-shot",
                snapshot(&["--pid", &me.to_string(), "--backend", backend]),
            ),
        ] {
            let entry = long_entry(&snap);
            assert_eq!(entry["truncated"], true, "{when}, {backend}: {entry}");
            let shown = entry["path"].as_str().unwrap();
            assert!(shown.starts_with("..."), "{when}, {backend}: {shown}");
            assert!(shown.len() <= 4096, "{when}, {backend}");
        }
    }
    drop(file);
    drop(dir);
    fs::remove_dir_all(top).unwrap();
}

/// Task names and paths are bytes: newlines, invalid UTF-8, 255-byte names.
/// The table escapes them (one line per row, \xNN), JSON stays valid.
#[test]
fn odd_bytes_print_safely() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    // This test process takes a name with a newline and a byte that is not
    // UTF-8 (only a process can rename itself), and opens the odd files.
    let me = std::process::id().to_string();
    let old_comm = fs::read(format!("/proc/{me}/comm")).unwrap();
    let odd_comm: &[u8] = b"od\nd\xffname";
    fs::write("/proc/self/comm", odd_comm).unwrap();
    // Files with such names, and one with a 255-byte component, opened by us.
    // tmpfs takes any byte but NUL and slash in a name (some disk filesystems
    // refuse invalid UTF-8).
    let dir = std::path::Path::new("/dev/shm").join(unique_comm("odd"));
    fs::create_dir_all(&dir).unwrap();
    let names: Vec<Vec<u8>> = vec![
        b"new\nline".to_vec(),
        b"bad\xfe\xffutf8".to_vec(),
        vec![b'L'; 255],
    ];
    let files: Vec<fs::File> = names
        .iter()
        .map(|n| fs::File::create(dir.join(OsStr::from_bytes(n))).unwrap())
        .collect();

    let mine = snapshot(&["--pid", &me]);
    assert_eq!(mine["tasks"][0]["comm"], "od\nd\u{fffd}name");
    let paths: Vec<String> = mine["tasks"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for n in &names {
        let expected = format!("{}/{}", dir.display(), String::from_utf8_lossy(n));
        assert!(paths.contains(&expected), "{expected:?} in {paths:?}");
    }

    let rows = itersnap(&["--pid", &me, "--columns", "pid,comm"]);
    let text = String::from_utf8(rows.stdout).expect("the table is valid UTF-8");
    assert!(text.contains("od\\x0ad\\xffname"), "{text}");
    assert!(text.contains("new\\x0aline"), "{text}");
    assert!(text.contains("bad\\xfe\\xffutf8"), "{text}");
    assert!(text.contains(&"L".repeat(255)));
    // Every line is a header, a task or a file: no name broke a line.
    assert!(
        text.lines()
            .all(|l| l.starts_with("snapshot ") || l.starts_with(' ')),
        "{text}"
    );
    drop(files);
    fs::remove_dir_all(dir).unwrap();
    fs::write("/proc/self/comm", old_comm.trim_ascii_end()).unwrap();
}

/// A filtered snapshot reads less (iterators bound to the process with
/// --pid, files process by process with a COMM), and shows the same rows as
/// an unfiltered one, on both backends.
#[test]
fn filters_show_what_the_whole_snapshot_shows() {
    let fx = Fixture::start("w");
    let pid = fx.pid.to_string();
    // When each row was taken differs from run to run, not what it shows.
    let row = |args: &[&str]| {
        let snap = snapshot(args);
        let mut rows = rows_of(&snap, fx.pid);
        assert_eq!(rows.len(), 1, "{args:?}");
        let mut row = rows.remove(0).clone();
        row.as_object_mut().unwrap().remove("since_event_ns");
        row
    };
    for backend in ["open-coded", "seq"] {
        let whole = row(&["--backend", backend]);
        assert_eq!(row(&["--backend", backend, "--pid", &pid]), whole, "--pid");
        assert_eq!(row(&["--backend", backend, &fx.comm]), whole, "COMM");
        assert_eq!(snapshot_fds(&whole), proc_fds(fx.pid));
    }
}

/// More files than one task's turn of the iterator holds (24 KiB of
/// records): the open-coded task iterator writes what fits and leaves the
/// rest to iter/task_file, from the fd its record names; the snapshot has
/// every fd as /proc does, filtered or not.
#[test]
fn a_process_with_many_files_is_whole() {
    let fx = Fixture::start_with_fds("m", 1500);
    let expected = proc_fds(fx.pid);
    assert!(expected.len() > 1500);
    let pid = fx.pid.to_string();
    for args in [
        &["--backend", "open-coded"][..],
        &["--backend", "open-coded", "--pid", &pid],
        &["--backend", "open-coded", &fx.comm],
        &["--backend", "seq", "--pid", &pid],
    ] {
        let snap = snapshot(args);
        let rows = rows_of(&snap, fx.pid);
        assert_eq!(rows.len(), 1, "{args:?}");
        assert_eq!(snapshot_fds(rows[0]), expected, "{args:?}");
        assert_eq!(snap["complete"], true, "{args:?}: {}", snap["problems"]);
    }
}

/// The JSON Schema every test validates its snapshots against is strict: a
/// real snapshot passes, one with a field renamed or of the wrong type fails.
#[test]
fn json_schema_describes_snapshots_exactly() {
    let fx = Fixture::start("j");
    let snap = snapshot(&["--stacks", "--threads", &fx.comm]);
    assert!(schema_accepts(&snap));
    let mut renamed = snap.clone();
    let task = renamed["tasks"][0].as_object_mut().unwrap();
    let pid = task.remove("pid").unwrap();
    task.insert("process_id".into(), pid);
    assert!(!schema_accepts(&renamed), "an unknown field is refused");
    let mut wrong = snap.clone();
    wrong["counts"]["files"] = serde_json::json!("many");
    assert!(!schema_accepts(&wrong), "a wrong type is refused");
}

/// The processes /proc names `comm` (its `comm` file, as pgrep -x reads it).
fn processes_named(comm: &str) -> BTreeSet<u32> {
    proc_processes()
        .into_keys()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// A COMM query finds every process of the name, with its files, and
/// nothing else: whether the open-coded object's scan (find_comm) binds the
/// iterators to each of a few, or, past what the scan takes, every task is
/// walked; and a kernel thread by the long name /proc gives it.
#[test]
fn comm_query_finds_every_process_of_the_name() {
    for children in [3, 40] {
        let fx = Fixture::start_with_children("q", children);
        // Each child names itself after its fork: wait until all have.
        let mut want = processes_named(&fx.comm);
        for _ in 0..200 {
            if want.len() == children + 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
            want = processes_named(&fx.comm);
        }
        assert_eq!(want.len(), children + 1, "the fixture and its children");
        for backend in backends_here() {
            let snap = snapshot(&["--backend", backend, &fx.comm]);
            let got: BTreeSet<u32> = snap["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["pid"].as_u64().unwrap() as u32)
                .collect();
            assert_eq!(got, want, "{backend}, {children} children");
            assert_eq!(snap["complete"], true, "{backend}: {}", snap["problems"]);
            let row = &rows_of(&snap, fx.pid)[0];
            assert_eq!(snapshot_fds(row), proc_fds(fx.pid), "{backend}");
            assert!(row["cmdline"].is_array(), "{backend}: {row}");
        }
    }
    // A kernel thread whose name is longer than its comm (a workqueue
    // rescuer, "kworker/R-…" from 6.10, whose name does not change): found
    // by it.
    let long = proc_processes().into_keys().find_map(|pid| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let name = status
            .lines()
            .next()?
            .strip_prefix("Name:")?
            .trim()
            .to_string();
        let ppid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        (ppid == 2 && name.len() > 15 && name.starts_with("kworker/R-")).then_some((pid, name))
    });
    if let Some((pid, name)) = long {
        for backend in backends_here() {
            let snap = snapshot(&["--backend", backend, &name]);
            assert_eq!(rows_of(&snap, pid).len(), 1, "{backend} {name}: {snap}");
        }
    }
}

/// Several COMMs select the processes of any of them, as `pgrep -x
/// 'a|b'`; several pids (a list, or --pid repeated) any of them, as `ps -p
/// a,b`; each with its files exact, on both backends, one-shot and ticks.
#[test]
fn several_names_and_pids_select_any_of_them() {
    let a = Fixture::start("na");
    let b = Fixture::start("nb");
    let other = Fixture::start("nc");
    let want: BTreeSet<u32> = [a.pid, b.pid].into();
    let pgrep = Command::new("pgrep")
        .args(["-x", &format!("{}|{}", a.comm, b.comm)])
        .output()
        .expect("running pgrep");
    let pgrep: BTreeSet<u32> = String::from_utf8_lossy(&pgrep.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pgrep, want, "pgrep -x 'a|b'");
    let ps = Command::new("ps")
        .args(["-o", "pid=", "-p", &format!("{},{}", a.pid, b.pid)])
        .output()
        .expect("running ps");
    let ps: BTreeSet<u32> = String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ps, want, "ps -p a,b");
    let (pa, pb) = (a.pid.to_string(), b.pid.to_string());
    let list = format!("{pa},{pb}");
    for backend in backends_here() {
        let only_a: BTreeSet<u32> = [a.pid].into();
        for (args, expect) in [
            (vec![a.comm.as_str(), b.comm.as_str()], &want),
            (vec!["-p", &list], &want),
            (vec!["-p", &pa, "--pid", &pb], &want),
            // Pids and names: both must hold.
            (vec!["-p", &list, &a.comm, &other.comm], &only_a),
        ] {
            let mut all = vec!["--backend", backend];
            all.extend(&args);
            let snap = snapshot(&all);
            assert_eq!(&task_pids(&snap), expect, "{backend} {args:?}");
            for &pid in expect {
                let row = rows_of(&snap, pid)[0];
                assert_eq!(
                    snapshot_fds(row),
                    proc_fds(pid),
                    "{backend} {args:?}: {}",
                    row["files"]
                );
            }
        }
        let mut all = vec!["--backend", backend, "--interval", "100ms", "--count", "2"];
        all.extend(["-p", &list, "--no-files"]);
        for snap in snapshots(&all) {
            assert_eq!(task_pids(&snap), want, "{backend} --interval");
        }
    }
}

/// The WCHAN column is ps's, and JSON's `wchan` /proc/PID/task/TID/wchan's:
/// the function each sleeping thread waits in (a pipe read, a futex, a
/// nanosleep, kthreadd's loop), on both backends.
#[test]
fn wchan_is_what_proc_and_ps_show() {
    let holder = start_with_named_threads(&["wchan-a", "wchan-b"]);
    let sleeper = Reaped::spawn(Command::new("sleep").arg("600"));
    let pids = format!("{},{},2", holder.pid, sleeper.pid());
    let tids: Vec<u32> = [holder.pid, sleeper.pid(), 2]
        .into_iter()
        .flat_map(proc_tids)
        .collect();
    let proc_wchan = |tid: u32| -> String {
        let pid = fs::read_to_string(format!("/proc/{tid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:").map(|p| p.trim().to_string()))
            .unwrap();
        fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap()
    };
    // Until every thread sleeps where it stays (sleep has exec'd).
    for _ in 0..500 {
        if tids.iter().all(|&t| proc_wchan(t) != "0")
            && fs::read_to_string(format!("/proc/{}/comm", sleeper.pid()))
                .is_ok_and(|c| c.trim_end() == "sleep")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ps = Command::new("ps")
        .args(["-L", "-o", "tid=,wchan:64=", "-p", &pids])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout).to_string();
    for backend in BACKENDS {
        let args = ["--backend", backend, "-L", "-p", &pids, "--no-files"];
        let out = itersnap(&[&args[..], &["--columns", "tid,wchan"]].concat());
        assert!(out.status.success(), "{backend}");
        let table = String::from_utf8_lossy(&out.stdout);
        // Below the header and the heading: the lines ps prints, spaced alike.
        let ours: Vec<String> = table
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let theirs: Vec<String> = ps
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(ours, theirs, "{backend}");

        let snap = snapshot(&[&args[..], &["--stacks"]].concat());
        let rows = snap["tasks"].as_array().unwrap();
        assert_eq!(rows.len(), tids.len(), "{backend}");
        for row in rows {
            let tid = row["tid"].as_u64().unwrap() as u32;
            let want = proc_wchan(tid);
            assert_ne!(want, "0", "{backend}: {tid} sleeps");
            assert_eq!(row["wchan"], want.as_str(), "{backend}: thread {tid}");
        }
    }
}

/// Names that are not UTF-8 (a task's name, an argument, a working
/// directory, an open file's path) read in JSON as strings with U+FFFD,
/// plus their exact bytes in `*_base64`, so that no two names collide; the
/// table escapes them (and a bidirectional control) for the terminal.
#[test]
fn names_that_are_not_utf8_keep_their_bytes() {
    use base64::Engine as _;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let root = std::env::temp_dir().join(format!("itersnap-odd-{}", std::process::id()));
    let dir = root.join(OsStr::from_bytes(b"dir\xfd"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(OsStr::from_bytes(b"f\xfe\xe2\x80\xae"));
    fs::write(&file, b"x").unwrap();
    // bash names itself (/proc/$$/comm), holds the file as fd 3, sits in
    // the directory, and has an argument ($0) that is not UTF-8.
    let mut holder = Command::new("bash")
        .args([
            "-c",
            "printf 'bad\\377' > /proc/$$/comm; exec 3<\"$1\"; cd \"$2\" && read -r _",
        ])
        .arg(OsStr::from_bytes(b"arg\xfc"))
        .arg(&file)
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = holder.id();
    for _ in 0..500 {
        let named = fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == b"bad\xff\n");
        let there = fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir);
        if named && there {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let pid_s = pid.to_string();
    for backend in BACKENDS {
        let snap = snapshot(&["--backend", backend, "-p", &pid_s]);
        let row = rows_of(&snap, pid)[0];
        assert_eq!(row["comm"], "bad\u{fffd}", "{backend}");
        assert_eq!(row["comm_base64"], b64(b"bad\xff"), "{backend}");
        assert_eq!(
            row["cwd_base64"],
            b64(dir.as_os_str().as_bytes()),
            "{backend}"
        );
        assert_eq!(row["cmdline_base64"][0], b64(b"bash"), "{backend}");
        assert_eq!(row["cmdline_base64"][3], b64(b"arg\xfc"), "{backend}");
        let fd3 = row["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fd"] == 3)
            .expect("fd 3");
        assert_eq!(
            fd3["path_base64"],
            b64(file.as_os_str().as_bytes()),
            "{backend}"
        );
        assert!(row["exe"].is_string() && row.get("exe_base64").is_none());
        // The table: every odd byte escaped, U+202E too.
        let out = itersnap(&["--backend", backend, "-p", &pid_s]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("f\\xfe\\u202E"), "{backend}: {table}");
        assert!(table.contains("arg\\xfc"), "{backend}: {table}");
        assert!(!table.contains('\u{202e}'), "{backend}");
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = fs::remove_dir_all(&root);
}

/// Hostile names, as #24 lists them: a UNIX socket and two files whose
/// names differ in one invalid byte and hold a newline, ESC and U+202E; a
/// task named with ESC and an invalid byte. JSON gives back the kernel's
/// exact bytes (`*_base64`), the two files stay apart, and the table holds
/// no raw control or bidirectional character. A command line of 1 MB is
/// marked cut in the table.
#[test]
fn hostile_names_stay_exact_in_json_and_inert_in_the_table() {
    use base64::Engine as _;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let root = std::env::temp_dir().join(format!("itersnap-hostile-{}", std::process::id()));
    fs::create_dir_all(&root).unwrap();
    let name = |last: u8| [b"n\n\x1b\xe2\x80\xae".as_slice(), &[last]].concat();
    let (a, b) = (
        root.join(OsStr::from_bytes(&name(0xfe))),
        root.join(OsStr::from_bytes(&name(0xfd))),
    );
    fs::write(&a, b"a").unwrap();
    fs::write(&b, b"b").unwrap();
    let sock = root.join(OsStr::from_bytes(&name(0xfc)));
    // python3 binds the socket (its argv keeps the bytes: surrogateescape),
    // names itself, holds both files, and waits on stdin.
    let script = "import os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.bind(os.fsencode(sys.argv[1]))\n\
        s.listen()\n\
        keep = [open(os.fsencode(p)) for p in sys.argv[2:]]\n\
        open('/proc/self/comm', 'wb').write(b'py\\x1bq\\xff\\x1b\\x1b')\n\
        print('ready', flush=True)\n\
        sys.stdin.read()\n";
    let mut holder = Command::new("python3")
        .args(["-c", script])
        .args([&sock, &a, &b])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let pid = holder.id().to_string();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    for backend in BACKENDS {
        let snap = snapshot(&["--backend", backend, "-p", &pid]);
        let row = &snap["tasks"][0];
        assert_eq!(row["comm_base64"], b64(b"py\x1bq\xff\x1b\x1b"), "{backend}");
        let files = row["files"].as_array().unwrap();
        let exact = |bytes: &[u8]| {
            files
                .iter()
                .find(|f| f["path_base64"] == b64(bytes))
                .unwrap_or_else(|| panic!("{backend}: {bytes:?} in {files:?}"))
        };
        let (fa, fb) = (
            exact(a.as_os_str().as_bytes()),
            exact(b.as_os_str().as_bytes()),
        );
        // One string for both (U+FFFD for either byte): the bytes tell them apart.
        assert_eq!(fa["path"], fb["path"], "{backend}");
        assert_ne!(fa["path_base64"], fb["path_base64"], "{backend}");
        let unix = files
            .iter()
            .find(|f| f["socket"]["family"] == "unix")
            .expect("the UNIX socket");
        assert_eq!(
            unix["socket"]["path_base64"],
            b64(sock.as_os_str().as_bytes()),
            "{backend}"
        );
        let out = itersnap(&["--backend", backend, "-p", &pid]);
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(
            !table
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{backend}: {table:?}"
        );
        // Escaped, the name is wider than its column: cut whole escapes
        // and marked.
        let out = itersnap(&[
            "--backend",
            backend,
            "-p",
            &pid,
            "--no-files",
            "--columns",
            "comm,pid",
        ]);
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(
            table
                .lines()
                .any(|l| l == format!("{:<15} {pid:>7}", "py\\x1bq\\xff+")),
            "{backend}: {table:?}"
        );
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = fs::remove_dir_all(&root);

    // 1 MB of arguments (at most 128 KiB each, the kernel's limit).
    let arg = "a".repeat(100_000);
    let mut long = Reaped::spawn(
        Command::new("bash")
            .args(["-c", "read -r _"])
            .args(std::iter::repeat_n(&arg, 10))
            .stdin(std::process::Stdio::piped()),
    );
    let long_pid = long.pid();
    for _ in 0..500 {
        if fs::read(format!("/proc/{long_pid}/cmdline")).is_ok_and(|c| c.len() > 1_000_000) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = itersnap(&["-p", &long_pid.to_string(), "--no-files"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table.lines().last().unwrap();
    assert!(
        line.ends_with("more bytes not read]"),
        "{}",
        &line[line.len() - 80..]
    );
    drop(long.0.stdin.take());
}
