//! Snapshots at the moment of an event: each trigger, narrowed to its own
//! fixture so that parallel tests never fire it.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Arms itersnap with `trigger_args` for an event fixture, lets the fixture
/// open moment.txt, cause the event, close the file and exit; returns the
/// one snapshot taken.
fn snapshot_at_event(
    event: &str,
    trigger_args: &dyn Fn(&Fixture) -> Vec<String>,
) -> (Fixture, Value) {
    let mut fx = Fixture::start_event(&event[..1], event);
    let mut args: Vec<String> = ["-o", "json", "--count", "1"].map(String::from).to_vec();
    args.extend(trigger_args(&fx));
    args.push(fx.comm.clone());
    let armed = Armed::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    fx.go();
    fx.wait();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "itersnap failed: {err}");
    let snaps = parse_lines(&out);
    assert_eq!(snaps.len(), 1, "one snapshot: {out}");
    (fx, snaps.into_iter().next().unwrap())
}

fn assert_holds_moment_file(fx: &Fixture, snap: &Value) {
    let rows = rows_of(snap, fx.pid);
    assert_eq!(rows.len(), 1, "the fixture is in the snapshot: {snap}");
    assert_eq!(rows[0]["in_event"], true, "captured inside the event");
    let paths: Vec<&str> = rows[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let expected = fx.dir.join("moment.txt");
    assert!(
        paths.contains(&expected.to_str().unwrap()),
        "the file open at the moment of the event is listed: {paths:?}"
    );
    assert_eq!(snap["complete"], true, "{}", snap["problems"]);
    let capture = &snap["capture"];
    assert!(capture["in_event"].as_u64().unwrap() >= 1, "{capture}");
    assert_eq!(capture["budget_ns"], 1_000_000, "the default budget");
    if snap["backend"] == "open-coded" {
        // The COMM filter selects only the fixture: the filtered walk in
        // the event found every task, and no completion was needed.
        assert_eq!(snap["after_event"], false);
        assert_eq!(capture["after_event"], 0, "{capture}");
    }
}

#[test]
fn on_signal_sees_the_moment() {
    let (fx, snap) = snapshot_at_event("signal", &|fx| {
        vec![
            "--on-signal".into(),
            "SIGUSR1".into(),
            "--signal-target".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    let t = &snap["trigger"];
    assert_eq!(t["type"], "signal");
    assert_eq!(t["signal"], "SIGUSR1");
    assert_eq!(t["signal_number"], 10);
    assert_eq!(t["sender"]["pid"], fx.pid);
    assert_eq!(t["target"]["pid"], fx.pid);
    assert_eq!(t["sender"]["comm"], t["sender"]["comm"]);
    let desc = t["description"].as_str().unwrap();
    assert!(
        desc.starts_with(&format!("SIGUSR1 from {} (", fx.pid)),
        "{desc}"
    );
}

#[test]
fn on_signal_by_target_comm() {
    let (fx, snap) = snapshot_at_event("signal", &|fx| {
        vec![
            "--on-signal".into(),
            "10".into(),
            "--signal-target-comm".into(),
            fx.comm.clone(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    assert_eq!(snap["trigger"]["target"]["comm"], fx.comm.as_str());
}

#[test]
fn on_syscall_sees_the_moment() {
    let (fx, snap) = snapshot_at_event("syscall", &|fx| {
        vec![
            "--on-syscall".into(),
            "getppid".into(),
            "--caller-pid".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    let t = &snap["trigger"];
    assert_eq!(t["type"], "syscall");
    assert_eq!(t["syscall"], "getppid");
    assert_eq!(t["caller"]["pid"], fx.pid);
}

#[test]
fn on_tracepoint_sees_the_moment() {
    let (fx, snap) = snapshot_at_event("tracepoint", &|fx| {
        vec![
            "--on-tracepoint".into(),
            "task:task_rename".into(),
            "--caller-pid".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    assert_eq!(snap["trigger"]["tracepoint"], "task:task_rename");
    assert_eq!(snap["trigger"]["caller"]["pid"], fx.pid);
}

/// A tracefs event with no raw tracepoint (the syscalls: category, as
/// bpftrace attaches it): a perf tracepoint program.
#[test]
fn on_a_tracefs_tracepoint_sees_the_moment() {
    if !std::path::Path::new("/sys/kernel/tracing/events/syscalls").is_dir() {
        eprintln!("no tracefs syscall events here: skipped");
        return;
    }
    let (fx, snap) = snapshot_at_event("syscall", &|fx| {
        vec![
            "--on-tracepoint".into(),
            "syscalls:sys_enter_getppid".into(),
            "--caller-pid".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    assert_eq!(snap["trigger"]["tracepoint"], "syscalls:sys_enter_getppid");
    assert_eq!(snap["trigger"]["caller"]["pid"], fx.pid);
}

/// A uprobe on a shared library named as the dynamic linker finds it
/// (`libc.so.6`, as bpftrace takes it): the fixture's getppid() call.
#[test]
fn on_a_library_uprobe_by_name_sees_the_moment() {
    let (fx, snap) = snapshot_at_event("syscall", &|fx| {
        vec![
            "--on-uprobe".into(),
            "libc.so.6:getppid".into(),
            "--caller-pid".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    let target = snap["trigger"]["uprobe"].as_str().unwrap();
    assert!(
        target.ends_with("/libc.so.6:getppid") && target.starts_with('/'),
        "{target}"
    );
    assert_eq!(snap["trigger"]["caller"]["pid"], fx.pid);
}

#[test]
fn on_uprobe_sees_the_moment() {
    let exe = std::env::current_exe().unwrap();
    let target = format!("{}:itersnap_fixture_probe", exe.display());
    let (fx, snap) = snapshot_at_event("uprobe", &|fx| {
        vec![
            "--on-uprobe".into(),
            target.clone(),
            "--caller-pid".into(),
            fx.pid.to_string(),
        ]
    });
    assert_holds_moment_file(&fx, &snap);
    assert_eq!(snap["trigger"]["uprobe"], target.as_str());
    assert_eq!(snap["trigger"]["caller"]["pid"], fx.pid);
}

/// The seq backend captures the event's own task inside the event too
/// (a bounded fd loop), and completes the rest after it, and says so.
#[test]
fn seq_backend_sees_the_moment_of_the_events_task() {
    for event in ["signal", "syscall"] {
        let (fx, snap) = snapshot_at_event(event, &|fx| {
            let mut args: Vec<String> = vec!["--backend".into(), "seq".into()];
            if event == "signal" {
                args.extend(["--on-signal", "USR1", "--signal-target"].map(String::from));
            } else {
                args.extend(["--on-syscall", "getppid", "--caller-pid"].map(String::from));
            }
            args.push(fx.pid.to_string());
            args
        });
        assert_eq!(snap["backend"], "seq");
        assert_holds_moment_file(&fx, &snap);
        assert_eq!(
            snap["after_event"], true,
            "the seq backend always completes"
        );
    }
}

/// Sends `signal` to `pid` from this test process.
fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a fixture of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Pids whose parent is `ppid`, from /proc.
fn proc_children(ppid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = proc_processes()
        .keys()
        .copied()
        .filter(|&pid| {
            proc_stat(pid)
                .is_some_and(|(_, rest)| rest.get(1).map(String::as_str) == Some(&ppid.to_string()))
        })
        .collect();
    out.sort_unstable();
    out
}

/// ~2,000 processes and a budget far too small for them: the event's own
/// task is captured inside the event, the budget stops the rest, and the
/// completion still delivers every process with every file as /proc has it.
#[test]
fn tiny_budget_still_completes_the_snapshot() {
    const CHILDREN: usize = 2000;
    let fx = Fixture::start_with_children("b", CHILDREN);
    let children = proc_children(fx.pid);
    assert_eq!(children.len(), CHILDREN, "the fixture's children");
    for backend in ["open-coded", "seq"] {
        let target = fx.pid.to_string();
        // SIGWINCH is ignored by default: the fixture lives on. The sender
        // (this test) is not selected by the COMM filter.
        let armed = Armed::start(&[
            "-o",
            "json",
            "--backend",
            backend,
            "--count",
            "1",
            "--event-budget",
            "30us",
            "--on-signal",
            "SIGWINCH",
            "--signal-target",
            &target,
            &fx.comm,
        ]);
        send_signal(fx.pid, libc::SIGWINCH);
        let (code, out, err) = armed.finish();
        assert_eq!(code, Some(0), "{backend}: {err}");
        let snaps = parse_lines(&out);
        assert_eq!(snaps.len(), 1, "{backend}: {err}");
        let snap = &snaps[0];
        assert_eq!(snap["complete"], true, "{backend}: {}", snap["problems"]);
        assert_eq!(snap["backend"], backend);
        let capture = &snap["capture"];
        assert_eq!(capture["budget_ns"], 30_000, "{capture}");
        assert_eq!(snap["after_event"], true, "{backend}: {capture}");

        // The signal's target first, inside the event.
        let leader = rows_of(snap, fx.pid);
        assert_eq!(leader.len(), 1, "{backend}: the target is in the snapshot");
        assert_eq!(leader[0]["in_event"], true, "{backend}: {}", leader[0]);
        if backend == "open-coded" {
            // The filtered walk went on in the event until the budget ended it.
            assert_eq!(capture["budget_hit"], true, "{capture}");
        }
        // Every child, and the rest after the event, later than it.
        let mut after = 0;
        for &pid in &children {
            let rows = rows_of(snap, pid);
            assert_eq!(rows.len(), 1, "{backend}: child {pid} is in the snapshot");
            let row = rows[0];
            assert_eq!(
                snapshot_fds(row),
                proc_fds(pid),
                "{backend}: files of {pid}"
            );
            if row["in_event"] == false {
                after += 1;
                assert!(row["since_event_ns"].as_u64().unwrap() > 0, "{row}");
            }
        }
        assert!(
            after > CHILDREN / 2,
            "{backend}: 30us cannot hold {CHILDREN} processes; {after} after the event"
        );
        assert_eq!(
            capture["in_event"].as_u64().unwrap() + capture["after_event"].as_u64().unwrap(),
            snap["counts"]["threads"].as_u64().unwrap(),
            "{capture}"
        );
        // Still there afterwards: the snapshot had every process.
        assert_eq!(proc_children(fx.pid), children);
    }
}

/// Every field of every row the same, whichever backend took the snapshot.
#[test]
fn backends_agree_on_a_quiescent_fixture() {
    let fx = Fixture::start("a");
    let take = |backend: &str| -> Vec<Value> {
        let snap = snapshot(&["--backend", backend, "--threads", "--stacks", &fx.comm]);
        assert_eq!(snap["backend"], backend);
        snap["tasks"].as_array().unwrap().clone()
    };
    // When each row was taken differs from run to run, not what it shows.
    let by_tid = |rows: Vec<Value>| -> BTreeMap<u64, Value> {
        rows.into_iter()
            .map(|mut r| {
                let taken = r.as_object_mut().unwrap();
                assert_eq!(taken.remove("in_event"), Some(Value::Bool(false)));
                assert!(taken.remove("since_event_ns").is_some());
                (r["tid"].as_u64().unwrap(), r)
            })
            .collect()
    };
    let open_coded = by_tid(take("open-coded"));
    let seq = by_tid(take("seq"));
    assert_eq!(open_coded.len(), proc_tids(fx.pid).len());
    assert_eq!(open_coded, seq);
}

/// Snapshots of `fx` when it calls getpid, through a 4 KiB ring buffer that
/// cannot hold what the event captures (an ample budget: all of it).
fn arm_small_ring(fx: &Fixture, extra: &[&str]) -> Armed {
    let pid = fx.pid.to_string();
    let mut args = vec![
        "-o",
        "json",
        "--ringbuf-size",
        "4K",
        "--event-budget",
        "100ms",
        "--on-syscall",
        "getpid",
        "--caller-pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    args.push(&fx.comm);
    Armed::start(&args)
}

/// A ring buffer too small for what the event captures: reported incomplete
/// with the exact number of records lost, the completion after the event
/// still fills in every fd, and the next trigger still works.
#[test]
fn ring_buffer_overflow_is_counted_exactly() {
    let mut fx = Fixture::start_event_with_fds("v", "spin", 400);
    let armed = arm_small_ring(&fx, &["--min-gap", "300ms", "--count", "2"]);
    // Ground truth while the fixture is still quiescent; it then opens
    // moment.txt, one more fd, for the time it spins.
    let threads = proc_tids(fx.pid).len() as u64;
    let fds = proc_fds(fx.pid).len() as u64 + 1;
    fx.go();
    let (code, out, err) = armed.finish();
    fx.wait();
    // Incomplete snapshots, not accepted: status 3, said in one line.
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("itersnap: 2 of 2 snapshots incomplete")),
        "{err}"
    );
    let snaps = parse_lines(&out);
    assert_eq!(
        snaps.len(),
        2,
        "itersnap keeps working after an overflow: {err}"
    );
    for snap in &snaps {
        let c = &snap["counts"];
        let dropped = c["dropped"].as_u64().unwrap();
        assert!(dropped > 0, "a 4K ring cannot hold {fds} file records");
        assert_eq!(snap["complete"], false);
        let problems = snap["problems"].to_string();
        assert!(
            problems.contains(&format!("{dropped} records dropped")),
            "{problems}"
        );
        // In the event (the COMM filter selects only the fixture, and the
        // budget is ample): begin, the event's details, its task's command
        // line (when it is in memory), every thread and fd, each socket's
        // record beside its fd's, the process's record and its cwd, root
        // and executable, end.
        let emitted = c["emitted"].as_u64().unwrap();
        let iterated = c["iterated"].as_u64().unwrap();
        let sockets = c["sockets"].as_u64().unwrap();
        assert!(
            sockets >= 3,
            "the fixture holds TCP, UDP and UNIX sockets: {c}"
        );
        let in_event = emitted - iterated;
        let expected = 3 + threads + fds + sockets + 4;
        assert!(
            in_event == expected || in_event == expected + 1,
            "{in_event} records in the event, {expected} or one more expected: {c}"
        );
        assert_eq!(c["received"].as_u64().unwrap() + dropped, emitted, "{c}");
        // The completion after the event filled in what the ring lost.
        let rows = rows_of(snap, fx.pid);
        assert_eq!(rows.len(), 1, "{snap}");
        let listed = rows[0]["files"].as_array().unwrap().len() as u64;
        assert!(listed + 1 >= fds, "{listed} of {fds} fds listed");
    }
    assert!(err.contains("records dropped"), "{err}");
}

/// The same overflow with --allow-incomplete: accepted, status 0.
#[test]
fn allow_incomplete_accepts_lost_records() {
    let mut fx = Fixture::start_event_with_fds("w", "spin", 400);
    let armed = arm_small_ring(&fx, &["--count", "1", "--allow-incomplete"]);
    fx.go();
    let (code, out, err) = armed.finish();
    fx.wait();
    assert_eq!(code, Some(0), "{err}");
    let snaps = parse_lines(&out);
    assert_eq!(snaps.len(), 1, "{err}");
    assert_eq!(snaps[0]["complete"], false, "{}", snaps[0]["problems"]);
}

/// A hot syscall for one second with --min-gap 100ms: about ten snapshots,
/// the rest skipped in the kernel and reported.
#[test]
fn min_gap_limits_the_rate() {
    let mut fx = Fixture::start_event("r", "spin");
    let pid = fx.pid.to_string();
    let armed = Armed::start(&[
        "-o",
        "json",
        "--no-files",
        "--min-gap",
        "100ms",
        "--on-syscall",
        "getpid",
        "--caller-pid",
        &pid,
        &fx.comm,
    ]);
    fx.go();
    fx.wait();
    let (code, out, err) = armed.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "Ctrl-C ends a run cleanly: {err}");
    let snaps = parse_lines(&out);
    assert!(
        (7..=13).contains(&snaps.len()),
        "about 10 snapshots in 1 s, got {}",
        snaps.len()
    );
    let skipped: u64 = snaps
        .iter()
        .map(|s| s["skipped"]["min_gap"].as_u64().unwrap())
        .sum();
    assert!(
        skipped > 100,
        "the spinning fixture makes many more calls: {skipped}"
    );
    // Kernel timestamps at least the gap apart.
    let times: Vec<u64> = snaps
        .iter()
        .map(|s| s["ktime_ns"].as_u64().unwrap())
        .collect();
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 100_000_000, "{times:?}");
    }
    let summary = err.lines().last().unwrap();
    assert!(
        summary.contains(&format!("{} snapshots", snaps.len())),
        "{summary}"
    );
    assert!(summary.contains("within --min-gap"), "{summary}");
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

/// --stacks with a trigger: the event's own task has its kernel stack
/// taken inside the event, on every backend (the stack helper wants a BTF
/// task pointer, which the event's own tasks are given as).
#[test]
fn stacks_are_taken_inside_the_event() {
    for backend in backends_here() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = sleeper.id().to_string();
        let armed = Armed::start(&[
            "--backend",
            backend,
            "--on-signal",
            "SIGCONT",
            "--signal-target",
            &pid,
            "--pid",
            &pid,
            "--stacks",
            "--no-files",
            "--count",
            "1",
            "-o",
            "json",
        ]);
        // SAFETY: kill(2) with a pid this test started.
        unsafe { libc::kill(sleeper.id() as i32, libc::SIGCONT) };
        let (code, out, err) = armed.finish();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(code, Some(0), "{backend}: {err}");
        let snap = &parse_lines(&out)[0];
        let row = rows_of(snap, sleeper.id())[0];
        assert_eq!(row["in_event"], true, "{backend}: {row}");
        let frames = row["stack"].as_array().expect("a stack");
        assert!(
            frames.iter().any(|f| f["symbol"]
                .as_str()
                .is_some_and(|s| s.contains("nanosleep"))),
            "{backend}: {frames:?}"
        );
    }
}

/// A run that waits on --signal-target or --caller-pid ends when that
/// process exits, with one line saying so (as `tail --pid` ends), and a run
/// whose output nobody reads any more ends at once, not at its next event;
/// neither leaves anything loaded.
#[test]
fn runs_end_when_their_purpose_does() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    for (flag, trigger) in [
        ("--signal-target", ["--on-signal", "WINCH"]),
        ("--caller-pid", ["--on-syscall", "getppid"]),
    ] {
        let mut sleeper = Reaped::spawn(Command::new("sleep").arg("600"));
        let pid = sleeper.pid().to_string();
        let armed = Armed::start(&[trigger[0], trigger[1], flag, &pid, "-o", "json"]);
        sleeper.0.kill().unwrap();
        sleeper.0.wait().unwrap();
        let (code, out, err) = armed.finish();
        assert_eq!(code, Some(0), "{flag}: {err}");
        assert!(
            err.contains(&format!("itersnap: {flag} {pid} has exited")),
            "{flag}: {err}"
        );
        assert!(out.is_empty(), "{flag}: {out}");
    }
    // `itersnap … | head -1` whose head has gone: no event comes.
    let sleeper = Reaped::spawn(Command::new("sleep").arg("600"));
    let mut child = Command::new(ITERSNAP)
        .args(["--on-signal", "WINCH", "--signal-target"])
        .arg(sleeper.pid().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("itersnap: armed:") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "it armed");
    }
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.is_some(), "a closed stdout ends the run");
    assert_eq!(
        orphaned_programs(),
        Vec::<u32>::new(),
        "nothing left loaded"
    );
}
