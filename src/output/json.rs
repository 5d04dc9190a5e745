//! JSON Lines: one object per snapshot. Field names are a stable interface,
//! documented in docs/json.md; add fields, never rename them.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Value};

use super::rfc3339;
use crate::diff::{Diff, FileChange};
use crate::kinds::{event, files, holds, process, stacks, task, ustacks};
use crate::snapshot::{Actor, Row, Snapshot, Trigger};

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
    sockets: usize,
    stacks: usize,
    records: usize,
    emitted: u64,
    received: u64,
    dropped: u64,
    iterated: u64,
    truncated: usize,
}

/// A task object: the task's fields, then each kind's data about it. The
/// reference write_row() is tested against.
#[cfg(test)]
#[derive(Serialize)]
struct RowJson<'a> {
    #[serde(flatten)]
    head: RowHeadJson<'a>,
    files: files::FilesJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<Vec<stacks::FrameJson<'a>>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ustack: Option<ustacks::UStackJson<'a>>,
}

/// What comes before the files: the task's fields and its process's.
#[derive(Serialize)]
struct RowHeadJson<'a> {
    #[serde(flatten)]
    task: task::TaskJson<'a>,
    #[serde(flatten)]
    process: Option<process::ProcessJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    holds: Vec<holds::HeldJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oncpu_sample: Option<crate::kinds::oncpu::OnCpu>,
}

fn row_head_json(r: &Row) -> RowHeadJson<'_> {
    RowHeadJson {
        task: task::json(&r.task),
        process: r.process.as_ref().map(|p| process::json(p, r.task.pid)),
        holds: holds::json(&r.holds),
        oncpu_sample: r.oncpu,
    }
}

#[cfg(test)]
fn row_json(r: &Row) -> RowJson<'_> {
    RowJson {
        head: row_head_json(r),
        files: files::FilesJson(&r.files),
        stack: r.stack.as_deref().map(stacks::json),
        ustack: r.ustack.as_ref().map(ustacks::json),
    }
}

/// The files of the last row written into a buffer with files, and where
/// the JSON after each one's fd lies in it. Processes forked from one
/// parent hold the same open files at the same fds: a file the same as the
/// previous row's at its place is copied, not written again.
#[derive(Default)]
struct PrevFiles<'r> {
    files: &'r [files::FileEntry],
    written: Vec<std::ops::Range<usize>>,
    /// The row being written fills this; swapped with `written` after it,
    /// so that no row allocates.
    writing: Vec<std::ops::Range<usize>>,
}

/// What RowJson serializes to, its files written by hand
/// (files::write_json_fd and write_json_rest): they are most of a
/// snapshot's JSON.
fn write_row<'r>(out: &mut Vec<u8>, r: &'r Row, prev: &mut PrevFiles<'r>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &row_head_json(r))?;
    out.pop(); // its closing brace: the files go before it
    out.extend_from_slice(b",\"files\":[");
    let mut writing = std::mem::take(&mut prev.writing);
    writing.clear();
    for (i, f) in r.files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        files::write_json_fd(out, f);
        let start = out.len();
        match prev.files.get(i).zip(prev.written.get(i)) {
            Some((p, range)) if files::same_description(p, f) => {
                out.extend_from_within(range.clone())
            }
            _ => files::write_json_rest(out, f),
        }
        writing.push(start..out.len());
    }
    if r.files.is_empty() {
        prev.writing = writing;
    } else {
        prev.files = &r.files;
        prev.writing = std::mem::replace(&mut prev.written, writing);
    }
    out.push(b']');
    if let Some(stack) = r.stack.as_deref() {
        out.extend_from_slice(b",\"stack\":");
        serde_json::to_writer(&mut *out, &stacks::json(stack))?;
    }
    if let Some(ustack) = r.ustack.as_ref() {
        // Flattened: its fields go into the task's object.
        let v = serde_json::to_vec(&ustacks::json(ustack))?;
        if v.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&v[1..v.len() - 1]);
        }
    }
    out.push(b'}');
    Ok(())
}

fn actor(a: &Actor) -> Value {
    let mut v = json!({ "pid": a.pid, "tid": a.tid, "comm": text(&a.comm) });
    if let Some(exact) = crate::text::base64_if_not_utf8(&a.comm) {
        v["comm_base64"] = json!(exact);
    }
    v
}

/// `type` and `description` always; the event's details by type, and
/// what it read inside the event (its arguments, exit code, siginfo,
/// tracepoint fields: kinds/event.rs).
fn trigger_json(t: &Trigger, cpu: Option<u32>, details: Option<&event::Details>) -> Value {
    let mut v = json!({ "type": t.kind(), "description": t.describe() });
    let details_json = match t {
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
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, details_json) {
        map.extend(extra);
        if let Some(cpu) = cpu {
            map.insert("cpu".into(), cpu.into());
        }
        if let Some(d) = details {
            map.extend(d.json(&crate::signals::name, &|code| {
                crate::signals::code_name(t.signal().unwrap_or(0), code)
            }));
        }
    }
    v
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `{key: text, key_base64: its exact bytes if they are not UTF-8}`, for
/// names in diff entries (docs/json.md).
fn named(pairs: &[(&str, &[u8])]) -> Value {
    let mut v = json!({});
    for &(key, bytes) in pairs {
        v[key] = json!(text(bytes));
        if let Some(exact) = crate::text::base64_if_not_utf8(bytes) {
            v[format!("{key}_base64")] = json!(exact);
        }
    }
    v
}

/// A diff entry: the task's reference with the entry's own fields.
fn task_with(task: &task::TaskRef, fields: Value) -> Value {
    let mut v = task.json();
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, fields) {
        map.extend(extra);
    }
    v
}

fn diff_json(d: &Diff) -> Value {
    let file_change = |c: &FileChange| {
        let file = serde_json::to_value(files::json(&c.file)).unwrap_or_default();
        task_with(&c.task, json!({ "file": file }))
    };
    json!({
        "from_seq": d.from_seq,
        "interval_ns": d.interval_ns,
        "appeared": d.appeared.iter().map(|t| t.json()).collect::<Vec<_>>(),
        "exited": d.exited.iter().map(|t| t.json()).collect::<Vec<_>>(),
        "state_changes": d.state_changes.iter().map(|c| {
            task_with(&c.task, json!({ "from": c.from.to_string(), "to": c.to.to_string() }))
        }).collect::<Vec<_>>(),
        "execs": d.execs.iter().map(|c| {
            task_with(&c.task, named(&[("from_comm", &c.from_comm), ("to_comm", &c.to_comm)]))
        }).collect::<Vec<_>>(),
        "reparented": d.reparented.iter().map(|c| {
            task_with(&c.task, json!({ "from_ppid": c.from_ppid, "to_ppid": c.to_ppid }))
        }).collect::<Vec<_>>(),
        "cred_changes": d.cred_changes.iter().map(|c| {
            task_with(&c.task, json!({ "field": c.field, "from": c.from, "to": c.to }))
        }).collect::<Vec<_>>(),
        "cwd_changes": d.cwd_changes.iter().map(|c| {
            task_with(&c.task, named(&[("from", &c.change.from), ("to", &c.change.to)]))
        }).collect::<Vec<_>>(),
        "rss_growth": d.rss_growth.iter().map(|c| {
            task_with(&c.task, json!({ "from_kib": c.change.from_kib, "to_kib": c.change.to_kib }))
        }).collect::<Vec<_>>(),
        "files_opened": d.files_opened.iter().map(file_change).collect::<Vec<_>>(),
        "files_closed": d.files_closed.iter().map(file_change).collect::<Vec<_>>(),
        "cpu": d.cpu.iter().map(|c| {
            task_with(&c.task, json!({
                "cpu_ns": c.cpu_ns,
                "total_cpu_ns": c.total_cpu_ns,
                "percent": (c.percent * 10.0).round() / 10.0,
                "files": c.files,
            }))
        }).collect::<Vec<_>>(),
    })
}

pub fn write(w: &mut dyn Write, snap: &Snapshot, diff: Option<&Diff>) -> io::Result<()> {
    let c = &snap.counts;
    let obj = SnapshotJson {
        seq: snap.info.seq,
        time: rfc3339(snap.info.wall_time),
        ktime_ns: snap.info.ktime_ns,
        trigger: trigger_json(
            &snap.info.trigger,
            snap.info.cpu,
            snap.info.details.as_ref(),
        ),
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
            sockets: c.sockets,
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
        write_tasks(w, &snap.rows)?;
        w.write_all(b"]}\n")
    } else {
        head.push(b'\n');
        w.write_all(&head)
    }
}

/// The task list's elements, comma-separated, written as they are
/// serialized: serde_json writes ~200 bytes per file, the longest step after
/// the walk, and the CPUs that ran the walk are idle by now. Rows go in
/// chunks of about CHUNK_FILES files, a window of one chunk per CPU (up to
/// 4) serialized side by side, then written in order: memory holds a few
/// chunks' JSON, never the whole list (17 MB at 5,000 processes).
fn write_tasks(w: &mut dyn Write, rows: &[Row]) -> io::Result<()> {
    const CHUNK_FILES: usize = 2000;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut bounds = vec![0];
    let mut weight = 0;
    for (i, r) in rows.iter().enumerate() {
        weight += r.files.len() + 1;
        if weight >= CHUNK_FILES {
            bounds.push(i + 1);
            weight = 0;
        }
    }
    if bounds.last() != Some(&rows.len()) {
        bounds.push(rows.len());
    }
    let chunks: Vec<&[Row]> = bounds.windows(2).map(|b| &rows[b[0]..b[1]]).collect();
    let serialize = |chunk: &[Row]| -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(chunk.len() * 256);
        let mut prev = PrevFiles::default();
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_row(&mut out, row, &mut prev)?;
        }
        Ok(out)
    };
    let mut first = true;
    for window in chunks.chunks(cpus) {
        let parts: Vec<io::Result<Vec<u8>>> = std::thread::scope(|scope| {
            let others: Vec<_> = window[1..]
                .iter()
                .map(|&chunk| scope.spawn(move || serialize(chunk)))
                .collect();
            let mut parts = vec![serialize(window[0])];
            parts.extend(others.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("JSON thread panicked")))
            }));
            parts
        });
        for part in parts {
            let part = part?;
            if part.is_empty() {
                continue;
            }
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            w.write_all(&part)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::files::FileEntry;
    use crate::kinds::task::Task;

    /// Names unlike each other: that need escaping, or are not UTF-8.
    const NAMES: [&[u8]; 6] = [
        b"/tmp/plain",
        b"/tmp/quote\"back\\slash",
        b"/tmp/ctl\n\t\r\x08\x0c\x01\x1f\x7f",
        b"/tmp/bad\xff\xfe utf8 \xc3\xa9",
        b"socket:[12345]",
        b"",
    ];

    /// A file unlike the others in every field the hand-written writer
    /// spells out: slots (negative fds), unnamed flag bits, sockets.
    fn file(fd: i32) -> FileEntry {
        let names: [&[u8]; 6] = NAMES;
        FileEntry {
            fd: if fd % 7 == 3 { -(fd % 5) - 1 } else { fd },
            desc: names[fd as usize % names.len()].to_vec(),
            kind: ["REG", "SOCK", "a_inode", "FIFO"][fd as usize % 4],
            f_flags: [2, 0, 0o4_002_001, 0o37_777_777_777, 0o100_000 | 0o40][fd as usize % 5],
            f_mode: 0,
            i_mode: 0o100600 + fd as u32,
            dev: ((fd as u32 % 300) << 20) | (3 + fd as u32),
            ino: (fd as u64) << 33 | 7,
            pos: u64::MAX - fd as u64,
            size: fd as u64 * 4096,
            truncated: fd % 3 == 0,
            deleted: false,
            socket: (fd % 4 == 1).then(|| {
                Box::new(crate::kinds::sockets::Socket {
                    ino: 12345,
                    netns: 4026531840,
                    peer_ino: fd as u64,
                    rx_queue: 1,
                    tx_queue: 2,
                    family: [1, 2, 10][fd as usize % 3],
                    kind: 1,
                    protocol: 6,
                    state: 10,
                    flags: 0,
                    local_port: 80,
                    remote_port: 0,
                    local_addr: [1; 16],
                    remote_addr: [0; 16],
                    path: b"/run/s\n\xff".to_vec(),
                })
            }),
        }
    }

    /// In chunks (in parallel) or whole, and with files copied from the
    /// row before, the task list reads the same.
    #[test]
    fn task_list_parts_join_to_the_whole() {
        // Files unlike each other in every field the hand-written writer
        // spells out: names that need escaping or are not UTF-8, slots
        // (negative fds), unnamed flag bits, sockets.
        for (n, files_each) in [(0, 0), (1, 0), (3, 5000), (500, 10), (7, 1)] {
            let rows: Vec<Row> = (0..n)
                .map(|i| Row {
                    task: Task {
                        pid: i,
                        tid: i,
                        ppid: 1,
                        comm: b"x".to_vec(),
                        state: 'S',
                        stat: "S".into(),
                        nice: 0,
                        creds: Default::default(),
                        threads: 1,
                        utime_ns: 0,
                        stime_ns: 0,
                        start_ns: 0,
                        start_boottime_ns: 0,
                        exec_id: 0,
                        kthread: false,
                        in_event: i % 2 == 0,
                        since_event_ns: u64::from(i),
                        wchan: None,
                        activity: None,
                        cpu: i % 2,
                        on_cpu: i == 1,
                    },
                    process: None,
                    // Most rows hold the previous row's files (written
                    // once, then copied); some differ in one field of a
                    // few, or hold fewer.
                    files: (0..if i % 5 == 4 {
                        files_each / 2
                    } else {
                        files_each
                    })
                        .map(|fd| {
                            let mut f = file(fd);
                            if i % 4 == 2 && fd % 3 == 1 {
                                f.pos = 7;
                            }
                            f
                        })
                        .collect(),
                    stack: None,
                    ustack: (i % 3 == 1).then(|| crate::kinds::ustacks::UStack {
                        frames: vec![crate::kinds::ustacks::UFrame {
                            addr: 0x5555_0000_1000,
                            symbol: (i > 1).then(|| "main+0x9".into()),
                            module: Some("/usr/bin/x".into()),
                        }],
                        partial: i == 4,
                        running: false,
                        in_event: false,
                    }),
                    oncpu: (i == 1).then_some(crate::kinds::oncpu::OnCpu {
                        cpu: 1,
                        offset_ns: -45_000,
                    }),
                    holds: if i == 1 {
                        vec![crate::kinds::holds::Held {
                            target: b"/x\n".to_vec(),
                            access: Default::default(),
                            fds: vec![3],
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            let whole = serde_json::to_vec(&rows.iter().map(row_json).collect::<Vec<_>>()).unwrap();
            let mut joined = Vec::new();
            write_tasks(&mut joined, &rows).unwrap();
            assert_eq!([&b"["[..], &joined, b"]"].concat(), whole, "{n} rows");
        }
    }
}
