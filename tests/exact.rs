//! Every value as ps, lsof and /proc show it: whole-system comparisons with
//! the tools users check itersnap against, on both backends. A process that
//! changed while it was read is left out (compared before and after).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// `pid → rest of the line` of a ps or itersnap table, first column the pid.
fn by_pid(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (pid, rest) = line.split_once(' ').unwrap_or((line, ""));
            Some((pid.parse().ok()?, rest.trim().to_string()))
        })
        .collect()
}

fn ps_columns(tz: &str, format: &str) -> BTreeMap<u32, String> {
    ps_columns_of(tz, format, None)
}

/// The same for one process (`ps -p`), or every one.
fn ps_columns_of(tz: &str, format: &str, pid: Option<u32>) -> BTreeMap<u32, String> {
    let which = match pid {
        Some(pid) => vec!["-p".to_string(), pid.to_string()],
        None => vec!["-e".to_string()],
    };
    let out = Command::new("ps")
        .env("TZ", tz)
        .args(which)
        .args(["-o", &format!("pid=,{format}=")])
        .output()
        .expect("running ps");
    assert!(out.status.success());
    by_pid(&String::from_utf8_lossy(&out.stdout))
}

fn itersnap_columns(tz: &str, backend: &str, format: &str) -> BTreeMap<u32, String> {
    itersnap_columns_of(tz, backend, format, None)
}

fn itersnap_columns_of(
    tz: &str,
    backend: &str,
    format: &str,
    pid: Option<u32>,
) -> BTreeMap<u32, String> {
    let pid_args = pid
        .map(|p| vec!["--pid".to_string(), p.to_string()])
        .unwrap_or_default();
    let out = Command::new(ITERSNAP)
        .env("TZ", tz)
        .args(pid_args)
        .args([
            "--no-files",
            "--backend",
            backend,
            "--columns",
            &format!("pid,{format}"),
        ])
        .output()
        .expect("running itersnap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The header line and the column headings are not rows.
    by_pid(&text.lines().skip(2).collect::<Vec<_>>().join("\n"))
}

/// Start times in every format ps has, in the local time zone as TZ says,
/// equal ps's for every process that lived through both reads.
#[test]
fn start_times_read_as_ps_shows_them() {
    let backends = backends_here();
    for tz in ["UTC", "UTC-9", "EST5EDT"] {
        for format in ["start", "stime", "start_time", "bsdstart", "lstart"] {
            for &backend in &backends {
                let before = ps_columns(tz, format);
                let ours = itersnap_columns(tz, backend, format);
                let after = ps_columns(tz, format);
                let mut compared = 0;
                for (pid, want) in &before {
                    if *pid == 1 || after.get(pid) != Some(want) {
                        continue;
                    }
                    let Some(got) = ours.get(pid) else {
                        continue; // exited in between
                    };
                    assert_eq!(got, want, "pid {pid}, {format}, TZ={tz}, {backend}");
                    compared += 1;
                }
                assert!(
                    compared > 10,
                    "only {compared} compared ({format}, TZ={tz})"
                );
            }
        }
    }
}

/// Long FLAGS widen their column: every DESCRIPTION starts where its
/// heading does.
#[test]
fn descriptions_stay_in_line_with_long_flags() {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(unique_comm("flags"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_DSYNC | libc::O_NOATIME)
        .open(&path)
        .unwrap();
    let me = std::process::id().to_string();
    let out = itersnap(&["--pid", &me]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let heading = text
        .lines()
        .find(|l| l.ends_with("DESCRIPTION"))
        .unwrap_or_else(|| panic!("a DESCRIPTION heading: {text}"));
    let column = heading.find("DESCRIPTION").unwrap();
    let long = text
        .lines()
        .find(|l| l.contains(path.file_name().unwrap().to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is listed: {text}", path.display()));
    assert!(long.contains("AP,NB,DSYN,NOATM,CX"), "{long}");
    for line in text
        .lines()
        .filter(|l| l.contains(" REG ") || l.contains(" FIFO "))
    {
        assert_eq!(
            line.find('/').or(line.find("pipe:")),
            Some(column),
            "{line}\n{heading}"
        );
    }
    drop(file);
    std::fs::remove_file(path).unwrap();
}

/// One fd as `lsof -F atGDoin` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct LsofFile {
    access: String,
    kind: String,
    flags: String,
    dev: String,
    offset: String,
    inode: String,
    name: String,
    /// A socket's TST= (state), TQR= and TQS= (queues).
    tcp_info: BTreeMap<String, String>,
}

/// pid → fd → file, for numeric fds (cwd, txt, mem… are not fds).
fn lsof(pid: Option<u32>) -> BTreeMap<u32, BTreeMap<i32, LsofFile>> {
    let mut cmd = Command::new("lsof");
    cmd.args(["-n", "-P", "-w", "-F", "pfatGDoinT"]);
    if let Some(pid) = pid {
        cmd.args(["-p", &pid.to_string()]);
    }
    let out = cmd.output().expect("running lsof");
    let mut all: BTreeMap<u32, BTreeMap<i32, LsofFile>> = BTreeMap::new();
    let (mut pid, mut fd): (u32, Option<i32>) = (0, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (tag, value) = line.split_at(line.len().min(1));
        let value = value.to_string();
        match tag {
            "p" => pid = value.parse().unwrap_or(0),
            "f" => fd = value.parse().ok(),
            _ => {}
        }
        let Some(fd) = fd else { continue };
        let file = all.entry(pid).or_default().entry(fd).or_default();
        match tag {
            "a" => file.access = value,
            "t" => file.kind = value,
            "G" => file.flags = value,
            "D" => file.dev = value,
            "o" => file.offset = value,
            "i" => file.inode = value,
            "n" => file.name = value,
            "T" => {
                if let Some((k, v)) = value.split_once('=') {
                    file.tcp_info.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
    }
    all
}

/// The kernel's dev_t ("major:minor" in the JSON) as lsof prints st_dev.
fn lsof_dev(major_minor: &str) -> String {
    let (major, minor) = major_minor.split_once(':').unwrap();
    let (major, minor): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
    format!(
        "0x{:x}",
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    )
}

/// lsof's offset: `0t` and decimal, or `0x` and hex past 8 digits.
fn lsof_offset(pos: u64) -> [String; 2] {
    [format!("0t{pos}"), format!("0x{pos:x}")]
}

/// The names of namespace files (nsfs).
const NAMESPACES: &[&str] = &[
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

/// Where our JSON file and lsof's disagree, field by field.
fn lsof_mismatches(ours: &serde_json::Value, theirs: &LsofFile) -> Vec<String> {
    let mut bad = Vec::new();
    fn differs(bad: &mut Vec<String>, what: &str, a: &str, b: &str) {
        if a != b {
            bad.push(format!("{what}: ours {a:?}, lsof {b:?}"));
        }
    }
    let kind = ours["type"].as_str().unwrap();
    let path = ours["path"].as_str().unwrap();
    differs(
        &mut bad,
        "access",
        ours["access"].as_str().unwrap(),
        theirs.access.trim(),
    );
    let flags = u32::from_str_radix(ours["flags"].as_str().unwrap(), 8).unwrap();
    let lsof_flags = theirs.flags.split(';').next().unwrap_or("");
    differs(&mut bad, "flags", &format!("0x{flags:x}"), lsof_flags);
    // lsof gives no device for sockets. stat(2) on overlayfs shows a
    // non-directory's layer as a pseudo device, not the superblock's.
    if !theirs.dev.is_empty() && !on_overlayfs(path) {
        let dev = lsof_dev(ours["dev"].as_str().unwrap());
        differs(&mut bad, "dev", &dev, &theirs.dev);
    }
    if !theirs.inode.is_empty() {
        differs(&mut bad, "inode", &ours["ino"].to_string(), &theirs.inode);
    }
    if !theirs.offset.is_empty()
        && !lsof_offset(ours["pos"].as_u64().unwrap()).contains(&theirs.offset)
    {
        bad.push(format!(
            "offset: ours {}, lsof {}",
            ours["pos"], theirs.offset
        ));
    }
    // lsof names a socket by its protocol (unix, IPv4, …): itersnap's SOCK.
    let lsof_kind = match theirs.kind.as_str() {
        "unix" | "IPv4" | "IPv6" | "sock" | "netlink" | "pack" | "ax25" | "raw" | "raw6" => "SOCK",
        k => k,
    };
    differs(&mut bad, "type", kind, lsof_kind);
    match kind {
        // A namespace: readlink's `net:[4026531833]`, lsof's `net`.
        "REG"
            if NAMESPACES
                .iter()
                .any(|ns| path.starts_with(&format!("{ns}:["))) =>
        {
            let ns = path.split(":[").next().unwrap_or(path);
            differs(&mut bad, "name", ns, &theirs.name)
        }
        // Paths: exactly readlink's text, " (deleted)" included.
        "REG" | "DIR" | "CHR" | "BLK" | "LINK" if !path.starts_with("anon_inode:") => {
            differs(&mut bad, "name", path, &theirs.name)
        }
        // lsof adds an id to some anon inodes: [eventfd:3], [pidfd:1234].
        "a_inode" => {
            let ours = path.trim_start_matches("anon_inode:").trim_end_matches(']');
            if !theirs.name.starts_with(ours) {
                bad.push(format!("name: ours {path:?}, lsof {:?}", theirs.name));
            }
        }
        "FIFO" => differs(&mut bad, "name", "pipe", &theirs.name),
        "SOCK" => bad.extend(socket_mismatches(ours, theirs)),
        _ => {}
    }
    bad
}

/// A socket's name, state and queues as lsof gives them (`n`, `TST=`,
/// `TQR=`, `TQS=`): inet `127.0.0.1:41234->127.0.0.1:8080` (`*` for any
/// address), UNIX `PATH type=STREAM`.
fn socket_mismatches(ours: &serde_json::Value, theirs: &LsofFile) -> Vec<String> {
    let s = &ours["socket"];
    let mut bad = Vec::new();
    if s.is_null() {
        return vec!["no socket object".into()];
    }
    let family = s["family"].as_str().unwrap_or("");
    let endpoint = |e: &serde_json::Value| {
        let addr = e["addr"].as_str().unwrap_or("");
        let host = match addr {
            "0.0.0.0" | "::" => "*".to_string(),
            a if family == "inet6" => format!("[{a}]"),
            a => a.to_string(),
        };
        format!("{host}:{}", e["port"])
    };
    let name = match family {
        "inet" | "inet6" => {
            let mut n = endpoint(&s["local"]);
            if s["remote"].is_object() {
                n = format!("{n}->{}", endpoint(&s["remote"]));
            }
            n
        }
        "unix" => {
            let kind = s["type"].as_str().unwrap_or("").to_uppercase();
            match s["path"].as_str() {
                Some(p) => format!("{p} type={kind}"),
                None => format!("type={kind}"),
            }
        }
        _ => return bad, // lsof names others its own way
    };
    if name != theirs.name {
        bad.push(format!(
            "socket name: ours {name:?}, lsof {:?}",
            theirs.name
        ));
    }
    // `-F T` lines read `TST=LISTEN`: the tag T, then ST=, QR=, QS=. lsof
    // takes queues from /proc/net/tcp, where a listener's send queue is 0;
    // itersnap's are sock_diag's (ss's), where it is the backlog's limit.
    let listening = s["state"] == "LISTEN";
    for (key, ours) in [
        ("ST", s["state"].as_str().unwrap_or("").to_string()),
        ("QR", s["rx_queue"].to_string()),
        ("QS", s["tx_queue"].to_string()),
    ] {
        if key == "QS" && listening {
            continue;
        }
        if let Some(theirs) = theirs.tcp_info.get(key) {
            if *theirs != ours {
                bad.push(format!("socket {key}: ours {ours}, lsof {theirs}"));
            }
        }
    }
    bad
}

/// This process's snapshot files against lsof, looked at alone.
/// Returns how many fds agreed (0: the process never held still, or is gone).
fn files_agree_with_lsof_alone(pid: u32, backend: &str, tries: usize) -> Result<usize, String> {
    let mut last = String::new();
    for _ in 0..tries {
        let before = lsof(Some(pid));
        let snap = snapshot(&["--pid", &pid.to_string(), "--backend", backend]);
        if lsof(Some(pid)) != before {
            continue;
        }
        let Some(row) = rows_of(&snap, pid).first().copied() else {
            return Ok(0);
        };
        let theirs = before.get(&pid).cloned().unwrap_or_default();
        let bad = compare_with_lsof(row, theirs.clone());
        if bad.is_empty() {
            return Ok(theirs.len());
        }
        last = bad.join("\n");
    }
    if last.is_empty() {
        Ok(0)
    } else {
        Err(last)
    }
}

fn compare_with_lsof(row: &serde_json::Value, theirs: BTreeMap<i32, LsofFile>) -> Vec<String> {
    let ours: BTreeMap<i32, &serde_json::Value> = row["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["fd"].as_i64().unwrap() as i32, f))
        .collect();
    let mut bad = Vec::new();
    let fds_ours: Vec<_> = ours.keys().collect();
    let fds_theirs: Vec<_> = theirs.keys().collect();
    if fds_ours != fds_theirs {
        bad.push(format!("fds: ours {fds_ours:?}, lsof {fds_theirs:?}"));
    }
    for (fd, file) in &theirs {
        if let Some(our) = ours.get(fd) {
            for m in lsof_mismatches(our, file) {
                bad.push(format!("fd {fd}: {m}"));
            }
        }
    }
    bad
}

/// Every fd of every process that did not change while read agrees with
/// lsof: access, flags, device, inode, offset, type and name.
#[test]
fn every_fd_agrees_with_lsof() {
    // Not this test, whose fds change as it runs lsof. The fixture holds
    // one of each kind of file, and keeps them.
    let me = std::process::id();
    let mut fx = Fixture::start("lsof");
    for backend in backends_here() {
        let before = lsof(None);
        let snap = snapshot(&["--backend", backend]);
        let after = lsof(None);
        let (mut compared, mut fds, mut fixture_fds) = (0, 0, 0);
        let mut failures = Vec::new();
        for (pid, theirs) in &before {
            if *pid == 1 || *pid == me || after.get(pid) != Some(theirs) {
                continue;
            }
            let Some(row) = rows_of(&snap, *pid).first().copied() else {
                continue;
            };
            if !compare_with_lsof(row, theirs.clone()).is_empty() {
                // Equal before and after need not be unchanged in between.
                if let Err(e) = files_agree_with_lsof_alone(*pid, backend, 3) {
                    failures.push(format!("pid {pid} ({}): {e}", row["comm"]));
                }
            }
            compared += 1;
            fds += theirs.len();
            if *pid == fx.pid {
                fixture_fds = theirs.len();
            }
        }
        assert!(failures.is_empty(), "{backend}:\n{}", failures.join("\n"));
        if fixture_fds == 0 {
            // It changed while the whole system was read (lsof took long
            // in a slow VM): a look of its own.
            fixture_fds = files_agree_with_lsof_alone(fx.pid, backend, 5)
                .unwrap_or_else(|e| panic!("{backend}: the fixture: {e}"));
        }
        assert!(
            fixture_fds > 10,
            "{backend}: the fixture's fds were not compared"
        );
        // The rest of the system is compared where it held still: in a slow
        // VM little does while lsof reads it, so the fixture is the floor.
        eprintln!("{backend}: {compared} other processes, {fds} fds compared");
    }
    fx.wait();
}

/// A kernel thread running in our snapshot and idle or asleep in ps's,
/// alike in all else: itersnap's own loading and freeing of BPF programs
/// waits for RCU grace periods and queues work, which wake the RCU
/// kthreads and a workqueue worker (seen in the VMs, where rcu_sched ran
/// at every look and a kworker ran `events` work instead of its last
/// `mm_percpu_wq`: its name follows its work).
fn woken_by_us(ours: &str, theirs: &str) -> bool {
    const STATE: usize = 12; // ppid, 10 ids, nlwp, then s
    const NAME: usize = 13;
    let (ours, theirs): (Vec<&str>, Vec<&str>) =
        (ours.split(' ').collect(), theirs.split(' ').collect());
    fn worker(name: &str) -> Option<&str> {
        name.strip_prefix("kworker/")
            .map(|w| w.split('-').next().unwrap_or(w))
    }
    let same_name = |a: &str, b: &str| a == b || worker(a).is_some_and(|w| worker(b) == Some(w));
    // Running against idle or asleep; a worker's state and name follow
    // whatever work it took.
    let is_worker = ours.get(NAME).is_some_and(|n| worker(n).is_some());
    let woken = |a: &str, b: &str| is_worker || (a == "R" && matches!(b, "I" | "S"));
    ours.len() == theirs.len()
        && ours.len() == NAME + 1
        && ours.iter().zip(&theirs).enumerate().all(|(i, (a, b))| {
            a == b || (i == STATE && woken(a, b)) || (i == NAME && same_name(a, b))
        })
}

/// Every process that held still reads as `ps -eo` prints it: parent,
/// each uid and gid, thread count, state, name (kernel threads in full; ps
/// shows them without the brackets the table adds).
#[test]
fn every_process_reads_as_ps_eo_prints_it() {
    const FIELDS: &str = "ppid,uid,euid,ruid,suid,fsuid,gid,egid,rgid,sgid,fsgid,nlwp,s,comm";
    let normal = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    // `[name]`: the table's mark of a kernel thread.
    let unbracketed = |got: &str| -> (String, bool) {
        let got = normal(got);
        match got.rfind(" [").filter(|_| got.ends_with(']')) {
            Some(at) => (
                format!("{} {}", &got[..at], &got[at + 2..got.len() - 1]),
                true,
            ),
            None => (got, false),
        }
    };
    // Equal before and after is not unchanged in between (a workqueue
    // worker's name follows its work): a mismatch gets three quiet looks
    // at that process alone.
    let agrees_alone = |pid: u32, backend: &str| {
        (0..3).any(|_| {
            let before = ps_columns_of("UTC", FIELDS, Some(pid));
            let ours = itersnap_columns_of("UTC", backend, FIELDS, Some(pid));
            let after = ps_columns_of("UTC", FIELDS, Some(pid));
            before == after
                && before.get(&pid).map(|w| normal(w)) == ours.get(&pid).map(|g| unbracketed(g).0)
        })
    };
    for backend in backends_here() {
        let before = ps_columns("UTC", FIELDS);
        let ours = itersnap_columns("UTC", backend, FIELDS);
        let after = ps_columns("UTC", FIELDS);
        let mut compared = 0;
        let mut kthreads = 0;
        for (pid, want) in &before {
            if *pid == 1 || after.get(pid) != Some(want) {
                continue;
            }
            let Some(got) = ours.get(pid) else {
                continue;
            };
            let (got, kthread) = unbracketed(got);
            kthreads += usize::from(kthread);
            if got != normal(want) {
                if kthread && woken_by_us(&got, &normal(want)) {
                    continue;
                }
                assert!(
                    agrees_alone(*pid, backend),
                    "pid {pid} ({FIELDS}), {backend}: ours {got:?}, ps {want:?}"
                );
            }
            compared += 1;
        }
        assert!(
            compared > 10 && kthreads > 0,
            "{backend}: {compared} compared, {kthreads} kernel threads"
        );
    }
}
