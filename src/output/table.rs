//! The readable view: a header line per snapshot, a row per task, its open
//! files (lsof-like) and kernel stack indented beneath it.

use std::io::{self, Write};

use std::time::{Duration, UNIX_EPOCH};

use super::{digits_before, open_flags_short, printable, rfc3339, Column, Paint, Printer};
use crate::diff::{Diff, TaskRef};
use crate::snapshot::{FileEntry, Snapshot, TaskRow};

pub fn header_line(snap: &Snapshot) -> String {
    let info = &snap.info;
    let c = &snap.counts;
    let mut line = format!(
        "snapshot {} at {}: {} ({} backend), {} processes, {} threads, {} files",
        info.seq,
        rfc3339(info.wall_time),
        info.trigger.describe(),
        info.backend,
        c.processes,
        c.threads,
        c.files,
    );
    if c.stacks > 0 {
        line.push_str(&format!(", {} stacks", c.stacks));
    }
    line.push_str(&format!(", walk {:.2} ms", info.walk_ns as f64 / 1e6));
    line.push_str(&capture_summary(snap));
    if c.truncated > 0 {
        line.push_str(&format!(", {} paths truncated", c.truncated));
    }
    let skipped = info.skipped_gap + info.skipped_busy;
    if skipped > 0 {
        line.push_str(&format!(
            ", {skipped} triggers skipped since the last ({} within --min-gap, {} during a walk)",
            info.skipped_gap, info.skipped_busy
        ));
    }
    if info.missed > 0 {
        line.push_str(&format!(
            ", {} events missed by the kernel (another BPF program was running)",
            info.missed
        ));
    }
    line
}

/// `event` for a task captured inside the event, else how long after it
/// (or after the walk's start), like `+1.2ms`.
fn taken(t: &TaskRow) -> String {
    if t.in_event {
        "event".into()
    } else {
        format!("+{}", short_duration(t.since_event_ns))
    }
}

/// 850us, 1.2ms, 35ms, 1.4s: two or three significant digits.
fn short_duration(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 10_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1e3)
    } else {
        format!("{:.1}s", us / 1e6)
    }
}

/// Which tasks the event captured and which came after: "; 3 tasks in the
/// event in 40us of a 1.0ms budget, 120 after it within 4.1ms". A one-shot
/// or a tick has no event to capture in: nothing is said.
fn capture_summary(snap: &Snapshot) -> String {
    let c = &snap.info.capture;
    if c.budget_ns == 0 {
        return String::new();
    }
    let mut out = format!(
        "; {} in the event in {} of a {} budget{}",
        plural_tasks(c.in_event),
        short_duration(c.in_event_ns),
        short_duration(c.budget_ns),
        if c.budget_hit { " (used up)" } else { "" }
    );
    if c.after_event > 0 {
        out.push_str(&format!(
            ", {} after it within {}",
            c.after_event,
            short_duration(c.latest_after_ns)
        ));
    }
    out
}

fn plural_tasks(n: usize) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}

/// CPU time like top's TIME+: minutes:seconds.hundredths.
fn cpu_time(ns: u64) -> String {
    let centis = ns / 10_000_000;
    format!(
        "{}:{:02}.{:02}",
        centis / 6000,
        centis / 100 % 60,
        centis % 100
    )
}

/// A task row in the chosen columns; `branch` goes before the command, as
/// `ps f` draws its tree.
fn task_line(t: &TaskRow, cols: &[Column], snap: &Snapshot, branch: &str, paint: Paint) -> String {
    let mut line = String::new();
    for (i, &col) in cols.iter().enumerate() {
        let (_, width) = col.header();
        let cell = match col {
            Column::Pid => t.pid.to_string(),
            Column::Tid => t.tid.to_string(),
            Column::Ppid => t.ppid.to_string(),
            Column::Uid => t.uid.to_string(),
            Column::Euid => t.euid.to_string(),
            Column::Gid => t.gid.to_string(),
            Column::State => paint.state(t.state),
            Column::Nlwp => t.threads.to_string(),
            Column::Time => cpu_time(t.cpu_ns()),
            Column::Start => start_time(t, snap),
            Column::Taken => taken(t),
            Column::Comm => {
                let comm = printable(&t.comm);
                if t.kthread {
                    format!("{branch}[{comm}]")
                } else {
                    format!("{branch}{comm}")
                }
            }
        };
        if i > 0 {
            line.push(' ');
        }
        if col == Column::Comm {
            line.push_str(&cell);
        } else if col == Column::State {
            line.push_str(&cell); // one letter, maybe wrapped in colour codes
        } else {
            line.push_str(&format!("{cell:>width$}"));
        }
    }
    line
}

/// Wall-clock start time (UTC, HH:MM:SS): the snapshot's clock pair dates
/// the task's start on the monotonic clock.
fn start_time(t: &TaskRow, snap: &Snapshot) -> String {
    let ago = Duration::from_nanos(snap.info.ktime_ns.saturating_sub(t.start_ns));
    let started = snap.info.wall_time.checked_sub(ago).unwrap_or(UNIX_EPOCH);
    let secs = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn header_row(cols: &[Column]) -> String {
    cols.iter()
        .map(|&c| {
            let (name, width) = c.header();
            format!("{name:>width$}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "1234 (bash)", or "1234/1240 (worker)" for a thread with --threads.
fn who(t: &TaskRef, threads: bool) -> String {
    if threads && t.tid != t.pid {
        format!("{}/{} ({})", t.pid, t.tid, printable(&t.comm))
    } else {
        format!("{} ({})", t.pid, printable(&t.comm))
    }
}

fn file_text(f: &FileEntry) -> String {
    format!(
        "fd {}{} {} {}",
        f.fd,
        f.access(),
        f.kind,
        printable(&f.desc)
    )
}

/// With --tree: the changed tasks in their place in the process tree (with
/// their ancestors for context), marked `+` appeared, `-` exited, `~` state
/// changed, their opened (`+`) and closed (`-`) files beneath them.
fn write_diff_tree(w: &mut dyn Write, snap: &Snapshot, d: &Diff, threads: bool) -> io::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut marks: BTreeMap<(u32, u32), char> = BTreeMap::new();
    let mut notes: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
    for t in &d.appeared {
        marks.insert((t.pid, t.tid), '+');
    }
    for c in &d.state_changes {
        marks.entry((c.task.pid, c.task.tid)).or_insert('~');
        notes
            .entry((c.task.pid, c.task.tid))
            .or_default()
            .push(format!("~ state {} -> {}", c.from, c.to));
    }
    for (sign, list) in [('+', &d.files_opened), ('-', &d.files_closed)] {
        for c in list {
            marks.entry((c.task.pid, c.task.tid)).or_insert(' ');
            notes
                .entry((c.task.pid, c.task.tid))
                .or_default()
                .push(format!("{sign} {}", file_text(&c.file)));
        }
    }
    // Current rows that changed, exited ones rebuilt from the diff, and the
    // ancestors of both, so that each change sits where it happened.
    let by_pid: BTreeMap<u32, &TaskRow> = snap
        .rows
        .iter()
        .filter(|r| r.tid == r.pid)
        .map(|r| (r.pid, r))
        .collect();
    let mut rows: Vec<TaskRow> = Vec::new();
    let mut wanted: BTreeSet<(u32, u32)> = marks.keys().copied().collect();
    let mut frontier: Vec<u32> = snap
        .rows
        .iter()
        .filter(|r| marks.contains_key(&(r.pid, r.tid)))
        .map(|r| r.ppid)
        .chain(d.exited.iter().map(|t| t.ppid))
        .collect();
    while let Some(pid) = frontier.pop() {
        if let Some(r) = by_pid.get(&pid) {
            if wanted.insert((r.pid, r.tid)) {
                frontier.push(r.ppid);
            }
        }
    }
    rows.extend(
        snap.rows
            .iter()
            .filter(|r| wanted.contains(&(r.pid, r.tid)))
            .cloned(),
    );
    for t in &d.exited {
        marks.insert((t.pid, t.tid), '-');
        rows.push(TaskRow {
            pid: t.pid,
            tid: t.tid,
            ppid: t.ppid,
            comm: t.comm.clone(),
            state: 'X',
            uid: 0,
            euid: 0,
            gid: 0,
            threads: 0,
            utime_ns: 0,
            stime_ns: 0,
            start_ns: 0,
            kthread: false,
            in_event: false,
            since_event_ns: 0,
            files: Vec::new(),
            stack: None,
        });
    }
    for (i, depth) in tree_order(&rows) {
        let r = &rows[i];
        let mark = marks.get(&(r.pid, r.tid)).copied().unwrap_or(' ');
        let who = if threads && r.tid != r.pid {
            format!("{}/{}", r.pid, r.tid)
        } else {
            r.pid.to_string()
        };
        writeln!(
            w,
            "{mark} {:>7} {}{}",
            who,
            branch(depth),
            printable(&r.comm)
        )?;
        for note in notes.get(&(r.pid, r.tid)).into_iter().flatten() {
            writeln!(w, "{:width$}{note}", "", width = 12 + 2 * depth)?;
        }
    }
    Ok(())
}

/// Changes since the previous snapshot, one line each, then the CPU table.
pub fn write_diff(w: &mut dyn Write, snap: &Snapshot, d: &Diff, p: &Printer) -> io::Result<()> {
    let (threads, tree, paint) = (p.threads, p.tree, Paint(p.color));
    writeln!(
        w,
        "{}; changes since snapshot {} ({:.1} ms before):",
        header_line(snap),
        d.from_seq,
        d.interval_ns as f64 / 1e6
    )?;
    if !snap.complete() {
        writeln!(
            w,
            "{}",
            paint.paint("1;31", &format!("INCOMPLETE: {}", snap.problems.join("; ")))
        )?;
    }
    if d.is_empty() {
        writeln!(w, "  no changes")?;
    }
    if tree {
        write_diff_tree(w, snap, d, threads)?;
    } else {
        write_change_lines(w, d, threads)?;
    }
    write_cpu_table(w, d)
}

fn write_change_lines(w: &mut dyn Write, d: &Diff, threads: bool) -> io::Result<()> {
    for t in &d.appeared {
        writeln!(w, "+ {} appeared, parent {}", who(t, threads), t.ppid)?;
    }
    for t in &d.exited {
        writeln!(w, "- {} exited", who(t, threads))?;
    }
    for c in &d.state_changes {
        writeln!(
            w,
            "~ {} state {} -> {}",
            who(&c.task, threads),
            c.from,
            c.to
        )?;
    }
    for c in &d.files_opened {
        writeln!(
            w,
            "+ {} opened {}",
            who(&c.task, threads),
            file_text(&c.file)
        )?;
    }
    for c in &d.files_closed {
        writeln!(
            w,
            "- {} closed {}",
            who(&c.task, threads),
            file_text(&c.file)
        )?;
    }
    Ok(())
}

fn write_cpu_table(w: &mut dyn Write, d: &Diff) -> io::Result<()> {
    if !d.cpu.is_empty() {
        writeln!(
            w,
            "{:>7} {:>7} {:>6}  {:>9} {:>5} COMMAND",
            "PID", "TID", "CPU%", "TIME+", "FILES"
        )?;
        for c in &d.cpu {
            writeln!(
                w,
                "{:>7} {:>7} {:>6.1}  {:>9} {:>5} {}",
                c.task.pid,
                c.task.tid,
                c.percent,
                cpu_time(c.cpu_ns),
                c.files,
                printable(&c.task.comm)
            )?;
        }
    }
    Ok(())
}

pub fn write(w: &mut dyn Write, snap: &Snapshot, p: &Printer) -> io::Result<()> {
    let (threads, tree, paint) = (p.threads, p.tree, Paint(p.color));
    writeln!(w, "{}", header_line(snap))?;
    if !snap.complete() {
        writeln!(
            w,
            "{}",
            paint.paint("1;31", &format!("INCOMPLETE: {}", snap.problems.join("; ")))
        )?;
    }
    let cols = p
        .columns
        .clone()
        .unwrap_or_else(|| Column::defaults(threads));
    writeln!(w, "{}", header_row(&cols))?;
    let indent = if threads { 16 } else { 8 };
    if snap.rows.iter().any(|t| !t.files.is_empty()) {
        writeln!(
            w,
            "{:indent$}{:>6} {:<7} {:<8} DESCRIPTION",
            "", "FD", "TYPE", "FLAGS"
        )?;
    }
    let order: Vec<(usize, usize)> = if tree {
        tree_order(&snap.rows)
    } else {
        (0..snap.rows.len()).map(|i| (i, 0)).collect()
    };
    let mut line = Vec::with_capacity(256);
    for (i, depth) in order {
        let t = &snap.rows[i];
        writeln!(w, "{}", task_line(t, &cols, snap, &branch(depth), paint))?;
        // Under a task, its files and stack, indented with it.
        let indent = indent + 2 * depth;
        for f in &t.files {
            write_file_line(w, &mut line, indent, f)?;
        }
        if let Some(stack) = &t.stack {
            for frame in stack {
                match &frame.symbol {
                    Some(s) => writeln!(w, "{:indent$}[<0>] {s}", "")?,
                    None => writeln!(w, "{:indent$}[<0>] {:#x}", "", frame.addr)?,
                }
            }
        }
    }
    Ok(())
}

/// One file under its task: `{indent}{fd:>5}{access} {type:<7} {flags:<8}
/// {description}`. Built by hand in a reused buffer: a snapshot can have
/// 100,000 of these lines and the formatting machinery was most of their cost.
fn write_file_line(
    w: &mut dyn Write,
    line: &mut Vec<u8>,
    indent: usize,
    f: &FileEntry,
) -> io::Result<()> {
    fn pad_to(line: &mut Vec<u8>, text: &[u8], width: usize, right: bool) {
        let fill = width.saturating_sub(text.len());
        if right {
            line.resize(line.len() + fill, b' ');
        }
        line.extend_from_slice(text);
        if !right {
            line.resize(line.len() + fill, b' ');
        }
    }
    let mut fd = [0u8; 12];
    line.clear();
    line.resize(indent, b' ');
    pad_to(line, format_int(&mut fd, f.fd), 5, true);
    line.push(f.access() as u8);
    line.push(b' ');
    pad_to(line, f.kind.as_bytes(), 7, false);
    line.push(b' ');
    pad_to(line, open_flags_short(f.f_flags).as_bytes(), 8, false);
    line.push(b' ');
    line.extend_from_slice(printable(&f.desc).as_bytes());
    if f.truncated {
        line.extend_from_slice(b" [truncated]");
    }
    line.push(b'\n');
    w.write_all(line)
}

/// Decimal digits of `n` in `buf`, without the formatting machinery.
fn format_int(buf: &mut [u8; 12], n: i32) -> &[u8] {
    let mut at = digits_before(buf, 12, u64::from(n.unsigned_abs()), 10);
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// `ps f`'s tree art: nothing at the top, then "\_ " indented per level.
fn branch(depth: usize) -> String {
    if depth == 0 {
        String::new()
    } else {
        format!("{}\\_ ", "    ".repeat(depth - 1))
    }
}

/// Rows in tree order, with their depth: each process under its parent
/// (sorted by pid), a process's other threads right after it; a process
/// whose parent is not in the snapshot is a root.
pub fn tree_order(rows: &[TaskRow]) -> Vec<(usize, usize)> {
    use std::collections::{BTreeMap, BTreeSet};
    // The row that stands for each process: its leader, else its first row.
    let mut proc_row: BTreeMap<u32, usize> = BTreeMap::new();
    let mut threads_of: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.tid == r.pid || !proc_row.contains_key(&r.pid) {
            if let Some(prev) = proc_row.insert(r.pid, i) {
                threads_of.entry(r.pid).or_default().push(prev);
            }
        } else {
            threads_of.entry(r.pid).or_default().push(i);
        }
    }
    let mut children: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut roots = BTreeSet::new();
    for (&pid, &i) in &proc_row {
        let ppid = rows[i].ppid;
        if ppid != pid && proc_row.contains_key(&ppid) {
            children.entry(ppid).or_default().insert(pid);
        } else {
            roots.insert(pid);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = BTreeSet::new();
    // Depth-first, with an explicit stack (process trees can be deep).
    let mut stack: Vec<(u32, usize)> = roots.iter().rev().map(|&p| (p, 0)).collect();
    while let Some((pid, depth)) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        out.push((proc_row[&pid], depth));
        for &t in threads_of.get(&pid).into_iter().flatten() {
            out.push((t, depth));
        }
        for &child in children.get(&pid).into_iter().flatten().rev() {
            stack.push((child, depth + 1));
        }
    }
    // A parent loop (pid reuse between reads) would leave rows out: add them.
    for (&pid, &i) in &proc_row {
        if !seen.contains(&pid) {
            out.push((i, 0));
            out.extend(threads_of.get(&pid).into_iter().flatten().map(|&t| (t, 0)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-built file line is the one `format!` would give.
    #[test]
    fn file_lines_match_their_format() {
        for (fd, desc, flags, truncated) in [
            (0, &b"/dev/null"[..], 0o100000, false),
            (-1, &b"x\ny"[..], 0o2004002, true),
            (i32::MIN, &b"socket:[12]"[..], 0o2, false),
            (123456, &b""[..], 0o40000000, false),
        ] {
            let f = FileEntry {
                fd,
                desc: desc.to_vec(),
                kind: "REG",
                f_flags: flags,
                f_mode: 0,
                i_mode: 0,
                dev: 0,
                ino: 0,
                pos: 0,
                size: 0,
                truncated,
            };
            let mark = if truncated { " [truncated]" } else { "" };
            let want = format!(
                "{:10}{:>5}{} {:<7} {:<8} {}{}\n",
                "",
                f.fd,
                f.access(),
                f.kind,
                open_flags_short(f.f_flags),
                printable(&f.desc),
                mark
            );
            let mut out = Vec::new();
            write_file_line(&mut out, &mut Vec::new(), 10, &f).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
