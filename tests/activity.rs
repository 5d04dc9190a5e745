//! --activity: the syscall each thread is in, against
//! /proc/PID/task/TID/syscall (number, arguments, user stack pointer and
//! program counter), the file behind its fd argument, and its WCHAN.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// /proc/PID/task/TID/syscall, without its newline.
fn proc_syscall(pid: u32, tid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Every thread's /proc/PID/task/TID/syscall, by (pid, tid).
fn every_proc_syscall() -> BTreeMap<(u32, u32), String> {
    let mut out = BTreeMap::new();
    for pid in proc_processes().into_keys() {
        for tid in proc_tids(pid) {
            if let Some(line) = proc_syscall(pid, tid) {
                out.insert((pid, tid), line);
            }
        }
    }
    out
}

/// A row's activity as /proc/PID/syscall prints it: in a syscall its
/// number, arguments, sp and pc; `-1` outside one (the JSON keeps no
/// registers then); `running`; a kernel thread's zeroed registers.
fn proc_line(row: &Value) -> String {
    match row["activity"].as_str().expect("an activity") {
        "syscall" => {
            let s = &row["syscall"];
            let mut words = vec![s["nr"].to_string()];
            for arg in s["args"].as_array().unwrap() {
                words.push(arg.as_str().unwrap().to_string());
            }
            words.push(s["sp"].as_str().unwrap().to_string());
            words.push(s["pc"].as_str().unwrap().to_string());
            words.join(" ")
        }
        "user" => "-1".into(),
        "running" => "running".into(),
        "kernel" => format!("0{}", " 0x0".repeat(8)),
        other => panic!("activity {other}"),
    }
}

/// /proc's line as proc_line() can compare it: `-1` without its registers.
fn comparable(line: &str) -> String {
    if line.starts_with("-1 ") {
        "-1".into()
    } else {
        line.to_string()
    }
}

/// A thread blocked reading a pipe shows `read`, its fd and that pipe as
/// the file, and a pipe-reading WCHAN; a parked thread `futex`; `sleep`
/// `clock_nanosleep` in hrtimer_nanosleep: each exactly as /proc says.
#[test]
fn blocked_threads_show_their_syscall_file_and_wchan() {
    let holder = start_with_named_threads(&["act-parked"]);
    let sleeper = Reaped::spawn(Command::new("sleep").arg("600"));
    let pids = [holder.pid, sleeper.pid()];
    let settled = || {
        pids.iter().all(|&pid| {
            proc_tids(pid).into_iter().all(|tid| {
                proc_syscall(pid, tid).is_some_and(|l| l != "running" && !l.starts_with("-1"))
            })
        }) && fs::read_to_string(format!("/proc/{}/comm", sleeper.pid()))
            .is_ok_and(|c| c.trim_end() == "sleep")
    };
    for _ in 0..500 {
        if settled() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(settled(), "the fixtures sleep in their syscalls");
    let pid_list = format!("{},{}", pids[0], pids[1]);
    let stdin = fs::read_link(format!("/proc/{}/fd/0", holder.pid)).unwrap();
    for backend in backends_here() {
        let snap = snapshot(&["--backend", backend, "--activity", "-L", "-p", &pid_list]);
        let rows = snap["tasks"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            proc_tids(pids[0]).len() + 1,
            "{backend}: a row per thread"
        );
        let mut names = Vec::new();
        for row in rows {
            let (pid, tid) = (
                row["pid"].as_u64().unwrap() as u32,
                row["tid"].as_u64().unwrap() as u32,
            );
            let what = format!("{backend}: {pid}/{tid} ({})", row["comm"]);
            assert_eq!(proc_line(row), proc_syscall(pid, tid).unwrap(), "{what}");
            let wchan = fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap();
            assert_eq!(row["wchan"], wchan.as_str(), "{what}");
            names.push((tid, row["syscall"]["name"].as_str().unwrap().to_string()));
            if row["syscall"]["name"] == "read" {
                // The holder's thread that reads its stdin.
                assert_eq!(pid, holder.pid, "{what}");
                assert_eq!(row["syscall"]["fd"], 0, "{what}");
                let file = &row["syscall"]["file"];
                assert_eq!(file["path"], stdin.to_str().unwrap(), "{what}");
                assert_eq!(file["type"], "FIFO", "{what}");
                assert!(wchan.contains("pipe"), "{what}: {wchan}");
            }
        }
        let name_of = |tid: u32| {
            names
                .iter()
                .find(|(t, _)| *t == tid)
                .map(|(_, n)| n.as_str())
        };
        assert_eq!(name_of(sleeper.pid()), Some("clock_nanosleep"), "{backend}");
        for (name, why) in [("read", "stdin"), ("futex", "the parked thread")] {
            assert!(
                names.iter().any(|(_, n)| n == name),
                "{backend}: {why}: {names:?}"
            );
        }
        // The table's columns.
        let out = itersnap(&[
            "--backend",
            backend,
            "--activity",
            "-L",
            "-p",
            &sleeper.pid().to_string(),
            "--no-files",
        ]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(" WCHAN "), "{table}");
        assert!(table.contains(" SYSCALL "), "{table}");
        assert!(
            table.contains("hrtimer_nanosleep    clock_nanosleep"),
            "{table}"
        );
    }
}

/// Every thread of the machine whose /proc/PID/task/TID/syscall reads the
/// same before and after the snapshot is shown as it says: syscall number,
/// six arguments, user sp and pc; outside a syscall, running, or a kernel
/// thread likewise.
#[test]
fn every_stable_thread_is_as_proc_pid_syscall_says() {
    for backend in backends_here() {
        let before = every_proc_syscall();
        let snap = snapshot(&["--backend", backend, "--activity", "-L", "--no-files"]);
        let after = every_proc_syscall();
        let mut compared = 0;
        for row in snap["tasks"].as_array().unwrap() {
            let key = (
                row["pid"].as_u64().unwrap() as u32,
                row["tid"].as_u64().unwrap() as u32,
            );
            // This test's own threads read /proc around the snapshot.
            if key.0 == std::process::id() {
                continue;
            }
            let (Some(b), Some(a)) = (before.get(&key), after.get(&key)) else {
                continue;
            };
            // A runnable thread is not still (a spinning loop's pc comes
            // round again): it may run as we look.
            if a != b || a == "running" || row["state"] == "R" {
                continue;
            }
            let ours = proc_line(row);
            if ours == "running" {
                continue; // it ran as we looked
            }
            assert_eq!(ours, comparable(a), "{backend}: {key:?} ({})", row["comm"]);
            compared += 1;
        }
        assert!(compared >= 20, "{backend}: only {compared} stable threads");
    }
}
