//! --user and --task-state against ps: processes of a user, and tasks in a
//! state (a writer blocked in D on a frozen filesystem).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// `ps -o pid= ARGS`, as a set.
fn ps(args: &[&str]) -> BTreeSet<u32> {
    let out = Command::new("ps")
        .args(["-o", "pid="])
        .args(args)
        .output()
        .expect("running ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Processes of a user no one else runs (setpriv, util-linux), found by
/// uid and by name as `ps -u` finds them.
#[test]
fn user_selects_processes_as_ps_u() {
    let uid = 40_000 + std::process::id() % 20_000;
    let sleeper = |n: u32| {
        Reaped(
            Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "sleep",
                    &format!("60.{n}"),
                ])
                .spawn()
                .expect("running setpriv"),
        )
    };
    let (a, b) = (sleeper(1), sleeper(2));
    let want: BTreeSet<u32> = [a.0.id(), b.0.id()].into();
    // Until both have dropped root (setpriv changes ids, then execs).
    for _ in 0..200 {
        if ps(&["-u", &uid.to_string()]) == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(ps(&["-u", &uid.to_string()]), want, "ps -u");
    for backend in backends_here() {
        let snap = snapshot(&["--backend", backend, "--user", &uid.to_string()]);
        assert_eq!(task_pids(&snap), want, "{backend}");
        for pid in &want {
            let row = rows_of(&snap, *pid)[0];
            assert_eq!(row["euid"], uid, "{backend}");
            assert_eq!(snapshot_fds(row), proc_fds(*pid), "{backend}");
        }
        // root's processes, by name: ps -u root's, but for those that came
        // or went between the two.
        let ours = task_pids(&snapshot(&[
            "--backend",
            backend,
            "--user",
            "root",
            "--no-files",
        ]));
        let theirs = ps(&["-u", "root"]);
        assert!(ours.is_disjoint(&want), "{backend}");
        let differ = ours.symmetric_difference(&theirs).count();
        assert!(
            differ < 10,
            "{backend}: {ours:?} against ps -u root {theirs:?}"
        );
    }
    // A list: this user or another one nobody runs.
    let snap = snapshot(&["--user", &format!("{uid},{}", uid + 1)]);
    assert_eq!(task_pids(&snap), want);
}

/// An ext4 image mounted on a loop device, frozen with fsfreeze: a writer
/// blocks in D until it is thawed. Thawed, unmounted and removed when
/// dropped.
struct Frozen {
    dir: PathBuf,
    image: PathBuf,
}

impl Frozen {
    fn new(tag: &str) -> Frozen {
        let base = std::env::temp_dir().join(format!("itersnap-{tag}-{}", std::process::id()));
        let (dir, image) = (base.with_extension("mnt"), base.with_extension("img"));
        fs::create_dir_all(&dir).unwrap();
        let run = |cmd: &str, args: &[&Path]| {
            let status = Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
            assert!(status.success(), "{cmd} {args:?}");
        };
        run("truncate", &[Path::new("-s16M"), &image]);
        run("mkfs.ext4", &[Path::new("-qF"), &image]);
        run("mount", &[Path::new("-oloop"), &image, &dir]);
        run("fsfreeze", &[Path::new("-f"), &dir]);
        Frozen { dir, image }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.dir).status();
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::remove_file(&self.image);
    }
}

/// The state letter /proc/PID/task/TID/stat gives.
fn proc_state(pid: u32, tid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 2..].split(' ').next()?.to_string())
}

#[test]
fn task_state_finds_a_writer_blocked_on_a_frozen_filesystem() {
    let frozen = Frozen::new("frozen");
    let target = frozen.dir.join("file");
    let writer = Reaped(
        Command::new("sh")
            .args(["-c", "echo blocked > \"$1\"", "sh"])
            .arg(&target)
            .spawn()
            .unwrap(),
    );
    let pid = writer.0.id();
    for _ in 0..500 {
        if proc_state(pid, pid).as_deref() == Some("D") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        proc_state(pid, pid).as_deref(),
        Some("D"),
        "the writer blocks"
    );
    for backend in backends_here() {
        for threads in [false, true] {
            let mut args = vec!["--backend", backend, "--task-state", "D", "--stacks"];
            if threads {
                args.push("--threads");
            }
            let snap = snapshot(&args);
            let rows = rows_of(&snap, pid);
            assert_eq!(rows.len(), 1, "{backend} threads={threads}: {snap}");
            assert_eq!(rows[0]["state"], "D", "{backend}");
            assert_eq!(snapshot_fds(rows[0]), proc_fds(pid), "{backend}");
            let stack: Vec<&str> = rows[0]["stack"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["symbol"].as_str())
                .collect();
            assert!(
                stack.iter().any(|s| s.contains("percpu_rwsem")
                    || s.contains("sb_start_write")
                    || s.contains("mnt_want_write")),
                "{backend}: blocked on the freeze: {stack:?}"
            );
            // With --threads, every task shown is one in D.
            if threads {
                for t in snap["tasks"].as_array().unwrap() {
                    assert_eq!(t["state"], "D", "{backend}: {t}");
                }
            }
        }
        // A state nothing here is in past a moment: not this writer.
        let snap = snapshot(&["--backend", backend, "--task-state", "T,t", "--no-files"]);
        assert!(rows_of(&snap, pid).is_empty(), "{backend}");
    }
    drop(frozen);
    drop(writer);
}

/// The cgroup2 mount, from mountinfo.
fn cgroup2_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split(' ').nth(4).map(PathBuf::from))
}

/// A cgroup of the test's own, with a child cgroup; removed when dropped
/// (its processes killed first).
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(self.0.join("sub"));
        let _ = fs::remove_dir(&self.0);
    }
}

/// Every pid in a cgroup and the cgroups below it, as cgroup.procs lists them.
fn cgroup_procs(dir: &Path) -> BTreeSet<u32> {
    let mut pids: BTreeSet<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            pids.extend(cgroup_procs(&entry.path()));
        }
    }
    pids
}

/// --cgroup: the processes of a cgroup and of the cgroups below it, by its
/// directory or by the path /proc/PID/cgroup shows, as cgroup.procs lists
/// them.
#[test]
fn cgroup_selects_its_processes_and_those_below() {
    let Some(root) = cgroup2_root() else {
        eprintln!("no cgroup2 mount here: skipped");
        return;
    };
    let name = format!("itersnap-test-{}", std::process::id());
    let cgroup = Cgroup(root.join(&name));
    if fs::create_dir_all(cgroup.0.join("sub")).is_err() {
        eprintln!("cannot make a cgroup here: skipped");
        return;
    }
    let (a, b) = (
        Reaped::spawn(Command::new("sleep").arg("60")),
        Reaped::spawn(Command::new("sleep").arg("61")),
    );
    fs::write(cgroup.0.join("cgroup.procs"), a.pid().to_string()).unwrap();
    fs::write(cgroup.0.join("sub/cgroup.procs"), b.pid().to_string()).unwrap();
    let want: BTreeSet<u32> = [a.pid(), b.pid()].into();
    assert_eq!(cgroup_procs(&cgroup.0), want);
    let path = format!("/{name}");
    for backend in backends_here() {
        let snap = snapshot(&["--backend", backend, "--cgroup", &path]);
        assert_eq!(task_pids(&snap), want, "{backend}");
        for t in snap["tasks"].as_array().unwrap() {
            assert!(
                t["cgroup"].as_str().unwrap().starts_with(&path),
                "{backend}: {t}"
            );
        }
        let dir = cgroup.0.join("sub");
        let snap = snapshot(&["--backend", backend, "--cgroup", dir.to_str().unwrap()]);
        assert_eq!(task_pids(&snap), [b.pid()].into(), "{backend}");
    }
    drop((a, b));
}

/// `pgrep ARGS`'s pids (tids with -w), as a set.
fn pgrep(args: &[&str]) -> BTreeSet<u32> {
    let out = Command::new("pgrep")
        .args(args)
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// The tids of a snapshot's rows, and the pids they belong to.
fn rows_tids(snap: &serde_json::Value) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let rows = snap["tasks"].as_array().unwrap();
    let id = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap() as u32;
    (
        rows.iter().map(|r| id(r, "tid")).collect(),
        rows.iter().map(|r| id(r, "pid")).collect(),
    )
}

/// With --threads a COMM also selects threads by their own names, as
/// `pgrep -w -x` lists them (one name or several), besides every thread of
/// a process of that name (ps -L); without --threads it names processes
/// only, as `pgrep -x` (exit 1). A thread's row carries its process's
/// identity; the main thread's, not shown, keeps the files.
#[test]
fn threads_are_selected_by_their_own_names_as_pgrep_w() {
    let (a, b) = (unique_comm("thra"), unique_comm("thrb"));
    let holder = start_with_named_threads(&[&a, &a, &b]);
    let pid = holder.pid;
    let process_name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let process_name = process_name.trim_end();
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<&str> = cmdline.trim_end_matches('\0').split('\0').collect();
    let pattern = format!("{a}|{b}");
    for backend in backends_here() {
        let snap = snapshot(&["--backend", backend, "-L", &a]);
        let (tids, pids) = rows_tids(&snap);
        assert_eq!(tids, pgrep(&["-w", "-x", &a]), "{backend}: -L {a}");
        assert_eq!(tids.len(), 2, "{backend}");
        assert_eq!(pids, BTreeSet::from([pid]), "{backend}");
        for row in snap["tasks"].as_array().unwrap() {
            assert_eq!(row["comm"], a.as_str(), "{backend}");
            assert_eq!(row["cmdline"], serde_json::json!(argv), "{backend}");
            assert!(row["files"].as_array().unwrap().is_empty(), "{backend}");
        }
        assert_eq!(snap["counts"]["threads"], 2, "{backend}");

        let (tids, _) = rows_tids(&snapshot(&["--backend", backend, "-L", &a, &b]));
        assert_eq!(
            tids,
            pgrep(&["-w", "-x", &pattern]),
            "{backend}: -L {a} {b}"
        );
        assert_eq!(tids.len(), 3, "{backend}");

        // The process's own name: all its threads, and its files.
        let pid_arg = pid.to_string();
        let snap = snapshot(&["--backend", backend, "-L", process_name, "-p", &pid_arg]);
        let (tids, _) = rows_tids(&snap);
        assert_eq!(tids, proc_tids(pid).into_iter().collect(), "{backend}");
        let main = rows_of(&snap, pid)
            .into_iter()
            .find(|r| r["tid"] == pid)
            .expect("the main thread's row");
        assert_eq!(snapshot_fds(main), proc_fds(pid), "{backend}");

        // Not a process's name: pgrep -x finds nothing, nor do we.
        assert!(pgrep(&["-x", &a]).is_empty());
        let out = itersnap(&["--backend", backend, &a]);
        assert_eq!(out.status.code(), Some(1), "{backend}: {a} without -L");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("no process named {a}")),
            "{stderr}"
        );
        let out = itersnap(&["--backend", backend, "-L", "nosuch-thread"]);
        assert_eq!(out.status.code(), Some(1), "{backend}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no process with a thread named nosuch-thread"),
            "{stderr}"
        );
    }
}
