//! --file and --mount against fuser and lsof: who holds a file, and who
//! holds anything on a filesystem, with how each holds it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// target → pid → (access letters, COMMAND), as a `fuser -v` table says.
type Holders = BTreeMap<String, BTreeMap<u32, (String, String)>>;

/// A directory of the test's own.
fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("itersnap-holds-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// target → pid → (access letters, COMMAND) from a `fuser -v` table (ours
/// or fuser's own); kernel mounts are left out.
fn fuser_table(text: &str) -> Holders {
    let mut out = Holders::new();
    let mut target = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(name) = line
            .split_whitespace()
            .next()
            .filter(|_| !line.starts_with(' '))
            .and_then(|w| w.strip_suffix(':'))
        {
            target = name.to_string();
        }
        if line.contains("kernel mount") || words.len() < 4 {
            continue;
        }
        let n = words.len();
        let Ok(pid) = words[n - 3].parse::<u32>() else {
            continue;
        };
        out.entry(target.clone())
            .or_default()
            .insert(pid, (words[n - 2].to_string(), words[n - 1].to_string()));
    }
    out
}

/// `fuser -v` (or `-vm`) on `targets`: its table, whose pids it writes to
/// stdout and the rest to stderr (both into one pipe, stdout unbuffered).
fn fuser(mount: bool, targets: &[&Path]) -> Holders {
    let out = Command::new("sh")
        .args(["-c", "stdbuf -o0 fuser \"$@\" 2>&1", "sh"])
        .arg(if mount { "-vm" } else { "-v" })
        .args(targets)
        .output()
        .expect("running fuser (psmisc)");
    fuser_table(&String::from_utf8_lossy(&out.stdout))
}

/// pid → what `lsof TARGET` lists it holding by (fd numbers, `mem`, `cwd`…).
fn lsof(target: &Path) -> BTreeMap<u32, BTreeSet<String>> {
    let out = Command::new("lsof")
        .args(["-n", "-P", "-w", "-F", "pf", "--"])
        .arg(target)
        .output()
        .expect("running lsof");
    let mut all: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut pid = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_at(line.len().min(1)) {
            ("p", v) => pid = v.parse().unwrap(),
            ("f", v) => {
                all.entry(pid).or_default().insert(v.to_string());
            }
            _ => {}
        }
    }
    all
}

/// What lsof's FD column says of a hold: its fds, then `cwd`, `rtd`,
/// `txt`, `mem` for the access letters that are not fds.
fn as_lsof(hold: &serde_json::Value) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = hold["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fd| fd.to_string())
        .collect();
    let access = hold["access"].as_str().unwrap();
    for (letter, label) in [('r', "rtd"), ('c', "cwd"), ('e', "txt"), ('m', "mem")] {
        if access.contains(letter) {
            out.insert(label.to_string());
        }
    }
    out
}

/// itersnap's table and JSON for `args`, on `backend`.
fn ours(backend: &str, args: &[&str]) -> (Holders, serde_json::Value) {
    let mut with_backend = vec!["--backend", backend];
    with_backend.extend_from_slice(args);
    let table = itersnap(&with_backend);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    (
        fuser_table(&String::from_utf8_lossy(&table.stdout)),
        snapshot(&with_backend),
    )
}

#[test]
fn file_holders_are_fusers_and_lsofs() {
    let dir = scratch_dir("file");
    let held = dir.join("held-file");
    let other = dir.join("other");
    fs::write(&held, vec![b'x'; 4096]).unwrap();
    fs::write(&other, b"other").unwrap();
    let by_fd = Holder::start(Hold::Read, &held);
    let writer = Holder::start(Hold::Write, &held);
    let by_map = Holder::start(Hold::Map, &held);
    let not = Holder::start(Hold::Read, &other);

    let target = held.to_str().unwrap();
    for backend in backends_here() {
        let (table, snap) = ours(backend, &["--file", target]);
        let theirs = fuser(false, &[&held]);
        assert_eq!(
            table, theirs,
            "{backend}: itersnap's table against fuser -v"
        );
        let holders = &table[target];
        assert_eq!(holders[&by_fd.pid].0, "f....", "{backend}");
        assert_eq!(holders[&writer.pid].0, "F....", "{backend}");
        assert_eq!(holders[&by_map.pid].0, "....m", "{backend}");
        assert!(!holders.contains_key(&not.pid), "{backend}");

        let tasks = snap["tasks"].as_array().unwrap();
        let json: BTreeMap<u32, BTreeSet<String>> = tasks
            .iter()
            .map(|t| {
                let holds = t["holds"].as_array().unwrap();
                assert_eq!(holds.len(), 1, "{backend}: {t}");
                assert_eq!(holds[0]["target"], target);
                (t["pid"].as_u64().unwrap() as u32, as_lsof(&holds[0]))
            })
            .collect();
        assert_eq!(json, lsof(&held), "{backend}: JSON against lsof FILE");
        // The fds shown are the matching ones, whole.
        let reader = rows_of(&snap, by_fd.pid)[0];
        assert_eq!(
            snapshot_fds(reader).into_values().collect::<Vec<_>>(),
            [target]
        );
    }
    drop((by_fd, writer, by_map, not));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn several_files_are_listed_each_with_its_holders() {
    let dir = scratch_dir("several");
    let (a, b) = (dir.join("a"), dir.join("b"));
    fs::write(&a, b"a").unwrap();
    fs::write(&b, b"b").unwrap();
    let holds_a = Holder::start(Hold::Read, &a);
    let holds_b = Holder::start(Hold::Write, &b);
    let in_dir = Holder::start(Hold::Cwd, &dir);
    let names = [
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let (table, _) = ours(
        "open-coded",
        &["--file", names[0], "--file", names[1], "--file", names[2]],
    );
    assert_eq!(table, fuser(false, &[&a, &b, &dir]));
    assert_eq!(table[names[0]][&holds_a.pid].0, "f....");
    assert_eq!(table[names[1]][&holds_b.pid].0, "F....");
    assert_eq!(table[names[2]][&in_dir.pid].0, "..c..");
    drop((holds_a, holds_b, in_dir));
    let _ = fs::remove_dir_all(&dir);
}

/// A filesystem mounted for the test (a tmpfs, an overlay), unmounted
/// (lazily) when dropped.
struct Mount(PathBuf);

impl Mount {
    /// `mount -t FSTYPE [-o OPTIONS] itersnap-test DIR`.
    fn new(fstype: &str, options: Option<&str>, dir: &Path) -> Mount {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", fstype, "itersnap-test"]);
        if let Some(options) = options {
            cmd.args(["-o", options]);
        }
        let status = cmd.arg(dir).status().expect("running mount");
        assert!(status.success(), "mounting a {fstype} on {}", dir.display());
        Mount(dir.to_path_buf())
    }

    fn tmpfs(dir: &Path) -> Mount {
        Mount::new("tmpfs", None, dir)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn mount_holders_are_fuser_ms() {
    let dir = scratch_dir("mount");
    let mnt = Mount::tmpfs(&dir);
    let file = dir.join("open");
    fs::write(&file, vec![b'y'; 4096]).unwrap();
    let in_it = Holder::start(Hold::Cwd, &dir);
    let reader = Holder::start(Hold::Read, &file);
    let mapper = Holder::start(Hold::Map, &file);
    let target = dir.to_str().unwrap();
    for backend in backends_here() {
        let (table, snap) = ours(backend, &["--mount", target]);
        assert_eq!(table, fuser(true, &[&dir]), "{backend}: against fuser -vm");
        let holders = &table[target];
        assert_eq!(holders[&in_it.pid].0, "..c..", "{backend}");
        assert_eq!(holders[&reader.pid].0, "f....", "{backend}");
        assert_eq!(holders[&mapper.pid].0, "....m", "{backend}");
        assert_eq!(holders.len(), 3, "{backend}: only the tmpfs's holders");
        assert_eq!(snap["tasks"].as_array().unwrap().len(), 3, "{backend}");
    }
    drop((in_it, reader, mapper, mnt));
    let _ = fs::remove_dir(&dir);
}

#[test]
fn a_file_held_by_no_one_exits_1() {
    let dir = scratch_dir("none");
    let lonely = dir.join("lonely");
    fs::write(&lonely, b"").unwrap();
    let out = itersnap(&["--file", lonely.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "itersnap: no process holding {} in the snapshot",
            lonely.display()
        )
    );
    let _ = fs::remove_dir_all(&dir);
}

/// "The moment someone opens the key file": with --file, `--on-syscall
/// openat` fires as the open of that file returns, while another process
/// opens other files in a loop (which, before, kept the trigger busy and
/// made it skip the open it was armed for).
#[test]
fn a_snapshot_at_the_open_of_a_given_file() {
    let dir = scratch_dir("open");
    let key = dir.join("key");
    fs::write(&key, b"secret").unwrap();
    let busy = Command::new("sh")
        .args(["-c", "while :; do cat /etc/hostname >/dev/null; done"])
        .spawn()
        .unwrap();
    let busy = Reaped(busy);
    for backend in backends_here() {
        let armed = Armed::start(&[
            "--backend",
            backend,
            "--on-syscall",
            "openat",
            "--file",
            key.to_str().unwrap(),
            "--count",
            "1",
            "-o",
            "json",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        // A shell that opens the key itself (fd 3), then becomes sleep.
        let opener = Reaped(
            Command::new("sh")
                .args(["-c", "exec 3<\"$1\"; exec sleep 600", "sh"])
                .arg(&key)
                .spawn()
                .unwrap(),
        );
        let opener_pid = opener.0.id();
        let (status, out, err) = armed.finish();
        assert_eq!(status, Some(0), "{backend}: {err}");
        let snaps = parse_lines(&out);
        assert_eq!(snaps.len(), 1, "{backend}: {out}");
        let snap = &snaps[0];
        assert_eq!(snap["trigger"]["syscall"], "openat", "{backend}");
        // The opener's open, not the loop's, as it returned: the file is
        // in its table, at fd 3.
        assert_eq!(snap["trigger"]["caller"]["pid"], opener_pid, "{backend}");
        let rows = rows_of(snap, opener_pid);
        assert_eq!(rows.len(), 1, "{backend}: {snap}");
        assert_eq!(rows[0]["in_event"], true, "{backend}");
        assert_eq!(rows[0]["holds"][0]["access"], "f....", "{backend}");
        assert_eq!(
            rows[0]["holds"][0]["fds"],
            serde_json::json!([3]),
            "{backend}"
        );
        drop(opener);
        assert_eq!(snap["tasks"].as_array().unwrap().len(), 1, "{backend}");
        assert_eq!(snap["skipped"]["busy"], 0, "{backend}");
    }
    drop(busy);
    let _ = fs::remove_dir_all(&dir);
}

/// A file on overlayfs, as a container's root is: stat(2) gives its real
/// layer's device (the layers are on different filesystems here), the open
/// file's inode the overlay's. Found either way, as fuser finds it.
#[test]
fn a_file_on_overlayfs_is_found() {
    let dir = scratch_dir("overlay");
    let (lower, merged) = (dir.join("lower"), dir.join("merged"));
    let (upper, work) = ("upper", "work");
    fs::create_dir_all(&lower).unwrap();
    fs::write(lower.join("from-lower"), b"lower").unwrap();
    // The upper layer on a tmpfs of its own: another filesystem than lower.
    let layers = dir.join("layers");
    fs::create_dir_all(&layers).unwrap();
    let tmpfs = Mount::tmpfs(&layers);
    let (upper, work) = (layers.join(upper), layers.join(work));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let overlay = Mount::new("overlay", Some(&options), &merged);
    let fresh = merged.join("fresh");
    fs::write(&fresh, b"upper").unwrap();
    let old = merged.join("from-lower");
    let holders = [
        Holder::start(Hold::Read, &fresh),
        Holder::start(Hold::Read, &old),
    ];
    for backend in backends_here() {
        for (path, holder) in [(&fresh, &holders[0]), (&old, &holders[1])] {
            let (table, _) = ours(backend, &["--file", path.to_str().unwrap()]);
            assert_eq!(table, fuser(false, &[path]), "{backend} {}", path.display());
            assert_eq!(
                table[path.to_str().unwrap()][&holder.pid].0,
                "f....",
                "{backend}"
            );
        }
    }
    drop(holders);
    drop(overlay);
    drop(tmpfs);
    let _ = fs::remove_dir_all(&dir);
}
