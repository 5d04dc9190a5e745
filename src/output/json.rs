//! JSON Lines: one object per snapshot. Field names are a stable interface,
//! documented in docs/json.md; add fields, never rename them.

use std::io::{self, Write};

use std::borrow::Cow;

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::{digits_before, rfc3339};
use crate::diff::{Diff, FileChange, TaskRef};
use crate::snapshot::{Actor, FileEntry, Snapshot, TaskRow, Trigger};

#[derive(Serialize)]
struct SnapshotJson<'a> {
    seq: u32,
    time: String,
    ktime_ns: u64,
    trigger: Value,
    backend: &'a str,
    after_event: bool,
    capture: CaptureJson,
    walk_ns: u64,
    skipped: SkippedJson,
    complete: bool,
    problems: &'a [String],
    counts: CountsJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<Value>,
}

/// Which tasks were captured inside the event and which after.
#[derive(Serialize)]
struct CaptureJson {
    in_event: usize,
    after_event: usize,
    in_event_ns: u64,
    budget_ns: u64,
    budget_hit: bool,
    latest_after_ns: u64,
}

#[derive(Serialize)]
struct SkippedJson {
    min_gap: u64,
    busy: u64,
    missed: u64,
}

#[derive(Serialize)]
struct CountsJson {
    processes: usize,
    threads: usize,
    files: usize,
    stacks: usize,
    records: usize,
    emitted: u64,
    received: u64,
    dropped: u64,
    iterated: u64,
    truncated: usize,
}

/// Files are serialized straight from the snapshot, one at a time, never
/// gathered into a second tree: a snapshot can hold 100,000 files.
struct Files<'a>(&'a [FileEntry]);

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(file_json))
    }
}

#[derive(Serialize)]
struct TaskJson<'a> {
    pid: u32,
    tid: u32,
    ppid: u32,
    comm: Cow<'a, str>,
    state: char,
    uid: u32,
    euid: u32,
    gid: u32,
    threads: u32,
    utime_ns: u64,
    stime_ns: u64,
    start_ns: u64,
    kthread: bool,
    in_event: bool,
    since_event_ns: u64,
    files: Files<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<Vec<FrameJson<'a>>>,
}

#[derive(Serialize)]
struct FileJson<'a> {
    fd: i32,
    path: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    access: char,
    /// Octal, exactly as /proc/PID/fdinfo's `flags:` line.
    #[serde(serialize_with = "octal")]
    flags: u32,
    #[serde(serialize_with = "flag_names")]
    flag_names: u32,
    mode: u32,
    /// The kernel's dev_t encoding (MAJOR << 20 | MINOR) as "major:minor".
    #[serde(serialize_with = "major_minor")]
    dev: u32,
    ino: u64,
    pos: u64,
    size: u64,
    truncated: bool,
}

fn octal<S: Serializer>(flags: &u32, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 16];
    let at = digits_before(&mut buf, 16, u64::from(*flags), 8) - 1;
    buf[at] = b'0';
    s.serialize_str(std::str::from_utf8(&buf[at..]).unwrap_or("0"))
}

fn major_minor<S: Serializer>(dev: &u32, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 24];
    let minor = digits_before(&mut buf, 24, u64::from(dev & 0xfffff), 10);
    buf[minor - 1] = b':';
    let at = digits_before(&mut buf, minor - 1, u64::from(dev >> 20), 10);
    s.serialize_str(std::str::from_utf8(&buf[at..]).unwrap_or("0:0"))
}

fn flag_names<S: Serializer>(flags: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(super::open_flag_names_iter(*flags))
}

#[derive(Serialize)]
struct FrameJson<'a> {
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
}

fn actor(a: &Actor) -> Value {
    json!({ "pid": a.pid, "tid": a.tid, "comm": text(&a.comm) })
}

/// `type` and `description` always; the event's details by type.
fn trigger_json(t: &Trigger, cpu: Option<u32>) -> Value {
    let mut v = json!({ "type": t.kind(), "description": t.describe() });
    let details = match t {
        Trigger::Signal {
            signal,
            sender,
            target,
        } => json!({
            "signal": crate::signals::name(*signal),
            "signal_number": signal,
            "sender": actor(sender),
            "target": actor(target),
        }),
        Trigger::Syscall { name, nr, caller } => {
            json!({ "syscall": name, "syscall_number": nr, "caller": actor(caller) })
        }
        Trigger::Tracepoint { name, caller } => {
            json!({ "tracepoint": name, "caller": actor(caller) })
        }
        Trigger::Uprobe { target, caller } => json!({ "uprobe": target, "caller": actor(caller) }),
        Trigger::Timer { period } => json!({ "interval_ns": period.as_nanos() as u64 }),
        Trigger::OneShot | Trigger::Unknown => json!({}),
    };
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, details) {
        map.extend(extra);
        if let Some(cpu) = cpu {
            map.insert("cpu".into(), cpu.into());
        }
    }
    v
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn file_json(f: &FileEntry) -> FileJson<'_> {
    FileJson {
        fd: f.fd,
        path: text(&f.desc),
        kind: f.kind,
        access: f.access(),
        flags: f.f_flags,
        flag_names: f.f_flags,
        mode: f.i_mode,
        dev: f.dev,
        ino: f.ino,
        pos: f.pos,
        size: f.size,
        truncated: f.truncated,
    }
}

fn task_json(t: &TaskRow) -> TaskJson<'_> {
    TaskJson {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        comm: text(&t.comm),
        state: t.state,
        uid: t.uid,
        euid: t.euid,
        gid: t.gid,
        threads: t.threads,
        utime_ns: t.utime_ns,
        stime_ns: t.stime_ns,
        start_ns: t.start_ns,
        kthread: t.kthread,
        in_event: t.in_event,
        since_event_ns: t.since_event_ns,
        files: Files(&t.files),
        stack: t.stack.as_ref().map(|s| {
            s.iter()
                .map(|f| FrameJson {
                    addr: format!("{:#x}", f.addr),
                    symbol: f.symbol.as_deref(),
                })
                .collect()
        }),
    }
}

fn task_ref(t: &TaskRef) -> Value {
    json!({ "pid": t.pid, "tid": t.tid, "ppid": t.ppid, "comm": text(&t.comm) })
}

fn diff_json(d: &Diff) -> Value {
    let file_change = |c: &FileChange| {
        let mut v = task_ref(&c.task);
        if let Value::Object(map) = &mut v {
            map.insert(
                "file".into(),
                serde_json::to_value(file_json(&c.file)).unwrap_or_default(),
            );
        }
        v
    };
    json!({
        "from_seq": d.from_seq,
        "interval_ns": d.interval_ns,
        "appeared": d.appeared.iter().map(task_ref).collect::<Vec<_>>(),
        "exited": d.exited.iter().map(task_ref).collect::<Vec<_>>(),
        "state_changes": d.state_changes.iter().map(|c| {
            let mut v = task_ref(&c.task);
            if let Value::Object(map) = &mut v {
                map.insert("from".into(), c.from.to_string().into());
                map.insert("to".into(), c.to.to_string().into());
            }
            v
        }).collect::<Vec<_>>(),
        "files_opened": d.files_opened.iter().map(file_change).collect::<Vec<_>>(),
        "files_closed": d.files_closed.iter().map(file_change).collect::<Vec<_>>(),
        "cpu": d.cpu.iter().map(|c| {
            let mut v = task_ref(&c.task);
            if let Value::Object(map) = &mut v {
                map.insert("cpu_ns".into(), c.cpu_ns.into());
                map.insert("percent".into(), ((c.percent * 10.0).round() / 10.0).into());
                map.insert("files".into(), c.files.into());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

pub fn write(w: &mut dyn Write, snap: &Snapshot, diff: Option<&Diff>) -> io::Result<()> {
    let c = &snap.counts;
    let obj = SnapshotJson {
        seq: snap.info.seq,
        time: rfc3339(snap.info.wall_time),
        ktime_ns: snap.info.ktime_ns,
        trigger: trigger_json(&snap.info.trigger, snap.info.cpu),
        backend: snap.info.backend,
        after_event: snap.info.after_event,
        capture: {
            let c = &snap.info.capture;
            CaptureJson {
                in_event: c.in_event,
                after_event: c.after_event,
                in_event_ns: c.in_event_ns,
                budget_ns: c.budget_ns,
                budget_hit: c.budget_hit,
                latest_after_ns: c.latest_after_ns,
            }
        },
        walk_ns: snap.info.walk_ns,
        skipped: SkippedJson {
            min_gap: snap.info.skipped_gap,
            busy: snap.info.skipped_busy,
            missed: snap.info.missed,
        },
        complete: snap.complete(),
        problems: &snap.problems,
        counts: CountsJson {
            processes: c.processes,
            threads: c.threads,
            files: c.files,
            stacks: c.stacks,
            records: c.records,
            emitted: c.emitted,
            received: c.received,
            dropped: c.dropped,
            iterated: c.iterated,
            truncated: c.truncated,
        },
        diff: diff.map(diff_json),
    };
    let mut head = serde_json::to_vec(&obj)?;
    // The full task list (not in --diff mode after the first snapshot) is
    // the object's last key, written after the rest.
    if diff.is_none() {
        head.pop(); // the closing brace: the task list goes before it
        head.extend_from_slice(b",\"tasks\":[");
        w.write_all(&head)?;
        let parts = tasks_json(&snap.rows)?;
        for (i, part) in parts.iter().filter(|p| !p.is_empty()).enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(part)?;
        }
        w.write_all(b"]}\n")
    } else {
        head.push(b'\n');
        w.write_all(&head)
    }
}

/// The task list's elements, comma-separated, in consecutive parts. A big
/// list is serialized in parallel, a part per CPU (up to 4), split by file
/// count: serde_json writes ~200 bytes per file, the longest step after the
/// walk, and the CPUs that ran the walk are idle by now.
fn tasks_json(rows: &[TaskRow]) -> io::Result<Vec<Vec<u8>>> {
    const PARALLEL_FROM_FILES: usize = 2000;
    let files: usize = rows.iter().map(|r| r.files.len() + 1).sum();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let parts = if files < PARALLEL_FROM_FILES { 1 } else { cpus };
    // Split points: equal shares of rows weighted by their files.
    let mut bounds = vec![0];
    let mut seen = 0;
    for (i, r) in rows.iter().enumerate() {
        seen += r.files.len() + 1;
        if bounds.len() < parts && seen * parts >= files * bounds.len() {
            bounds.push(i + 1);
        }
    }
    bounds.push(rows.len());
    bounds.dedup();
    let serialize = |chunk: &[TaskRow]| -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(chunk.len() * 256);
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &task_json(row))?;
        }
        Ok(out)
    };
    if bounds.len() <= 2 {
        return Ok(vec![serialize(rows)?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|b| scope.spawn(move || serialize(&rows[b[0]..b[1]])))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("JSON thread panicked")))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In parts (in parallel) or whole, the task list reads the same.
    #[test]
    fn task_list_parts_join_to_the_whole() {
        let file = |fd| FileEntry {
            fd,
            desc: format!("/tmp/f{fd}").into_bytes(),
            kind: "REG",
            f_flags: 2,
            f_mode: 0,
            i_mode: 0o100600,
            dev: 1 << 20 | 3,
            ino: fd as u64,
            pos: 0,
            size: 0,
            truncated: false,
        };
        for (n, files_each) in [(0, 0), (1, 0), (3, 5000), (500, 10), (7, 1)] {
            let rows: Vec<TaskRow> = (0..n)
                .map(|i| TaskRow {
                    pid: i,
                    tid: i,
                    ppid: 1,
                    comm: b"x".to_vec(),
                    state: 'S',
                    uid: 0,
                    euid: 0,
                    gid: 0,
                    threads: 1,
                    utime_ns: 0,
                    stime_ns: 0,
                    start_ns: 0,
                    kthread: false,
                    in_event: i % 2 == 0,
                    since_event_ns: u64::from(i),
                    files: (0..files_each).map(file).collect(),
                    stack: None,
                })
                .collect();
            let whole =
                serde_json::to_vec(&rows.iter().map(task_json).collect::<Vec<_>>()).unwrap();
            let parts = tasks_json(&rows).unwrap();
            let joined = parts
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(&b","[..]);
            assert_eq!([&b"["[..], &joined, b"]"].concat(), whole, "{n} rows");
        }
    }

    /// The hand-written numbers read as format! would write them.
    #[test]
    fn numbers_match_their_format() {
        for v in [0, 1, 0o2104002, 0o40000000, u32::MAX] {
            let mut out = Vec::new();
            octal(&v, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(out, format!("\"0{v:o}\"").into_bytes());
            let mut out = Vec::new();
            major_minor(&v, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(out, format!("\"{}:{}\"", v >> 20, v & 0xfffff).into_bytes());
        }
    }
}
