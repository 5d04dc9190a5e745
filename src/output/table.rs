//! The readable view: a header line per snapshot, a row per task, its open
//! files (lsof-like) and kernel stack indented beneath it.

use std::io::{self, Write};

use super::{printable, rfc3339, Column, Paint, Printer};
use crate::diff::Diff;
use crate::kinds::task::{self, Clock, Task};
use crate::kinds::{files, holds, stacks, ustacks};
use crate::snapshot::Snapshot;
use crate::text::short_duration;

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

/// The snapshot's clock, for the task columns that show times.
fn clock(snap: &Snapshot) -> Clock {
    Clock {
        ktime_ns: snap.info.ktime_ns,
        wall_time: snap.info.wall_time,
        boot_wall_ns: snap.info.boot_wall_ns,
        mem_total_kib: snap.info.mem_total_kib,
    }
}

/// Each change of a task (state, exec, parent, ids) as the diff's lines
/// say it after the task's name, with the task it is about.
fn task_changes(d: &Diff) -> Vec<(&task::TaskRef, String)> {
    let mut out = Vec::new();
    for c in &d.state_changes {
        out.push((&c.task, format!("state {} -> {}", c.from, c.to)));
    }
    for c in &d.execs {
        let (from, to) = (printable(&c.from_comm), printable(&c.to_comm));
        out.push((&c.task, format!("exec {from} -> {to}")));
    }
    for c in &d.reparented {
        out.push((
            &c.task,
            format!("reparented {} -> {}", c.from_ppid, c.to_ppid),
        ));
    }
    for c in &d.cred_changes {
        out.push((&c.task, format!("{} {} -> {}", c.field, c.from, c.to)));
    }
    for c in &d.cwd_changes {
        let (from, to) = (printable(&c.change.from), printable(&c.change.to));
        out.push((&c.task, format!("cwd {from} -> {to}")));
    }
    for c in &d.rss_growth {
        let (from, to) = (c.change.from_kib, c.change.to_kib);
        out.push((&c.task, format!("rss {from} -> {to} KiB")));
    }
    out
}

/// With --tree: the changed tasks in their place in the process tree (with
/// their ancestors for context), marked `+` appeared, `-` exited, `~`
/// changed (state, exec, parent, ids: each on a line beneath), their opened
/// (`+`) and closed (`-`) files beneath them.
fn write_diff_tree(w: &mut dyn Write, snap: &Snapshot, d: &Diff, threads: bool) -> io::Result<()> {
    let snap_netns = snap.info.reader_netns;
    use std::collections::{BTreeMap, BTreeSet};
    let mut marks: BTreeMap<(u32, u32), char> = BTreeMap::new();
    let mut notes: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
    for t in &d.appeared {
        marks.insert((t.pid, t.tid), '+');
    }
    for (t, change) in task_changes(d) {
        marks.entry((t.pid, t.tid)).or_insert('~');
        notes
            .entry((t.pid, t.tid))
            .or_default()
            .push(format!("~ {change}"));
    }
    for (sign, list) in [('+', &d.files_opened), ('-', &d.files_closed)] {
        for c in list {
            marks.entry((c.task.pid, c.task.tid)).or_insert(' ');
            notes
                .entry((c.task.pid, c.task.tid))
                .or_default()
                .push(format!("{sign} {}", files::summary(&c.file, snap_netns)));
        }
    }
    // Current rows that changed, exited ones rebuilt from the diff, and the
    // ancestors of both, so that each change sits where it happened.
    let by_pid: BTreeMap<u32, &Task> = snap
        .rows
        .iter()
        .map(|r| &r.task)
        .filter(|t| t.tid == t.pid)
        .map(|t| (t.pid, t))
        .collect();
    let mut rows: Vec<Task> = Vec::new();
    let mut wanted: BTreeSet<(u32, u32)> = marks.keys().copied().collect();
    let mut frontier: Vec<u32> = snap
        .rows
        .iter()
        .map(|r| &r.task)
        .filter(|t| marks.contains_key(&(t.pid, t.tid)))
        .map(|t| t.ppid)
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
            .map(|r| &r.task)
            .filter(|t| wanted.contains(&(t.pid, t.tid)))
            .cloned(),
    );
    for t in &d.exited {
        marks.insert((t.pid, t.tid), '-');
        rows.push(Task::exited(t));
    }
    for (i, depth) in tree_order(rows.iter()) {
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
        write_change_lines(w, d, threads, snap.info.reader_netns)?;
    }
    write_cpu_table(w, d)
}

fn write_change_lines(
    w: &mut dyn Write,
    d: &Diff,
    threads: bool,
    snap_netns: u64,
) -> io::Result<()> {
    for t in &d.appeared {
        writeln!(w, "+ {} appeared, parent {}", t.who(threads), t.ppid)?;
    }
    for t in &d.exited {
        writeln!(w, "- {} exited", t.who(threads))?;
    }
    for (t, change) in task_changes(d) {
        writeln!(w, "~ {} {change}", t.who(threads))?;
    }
    for c in &d.files_opened {
        writeln!(
            w,
            "+ {} opened {}",
            c.task.who(threads),
            files::summary(&c.file, snap_netns)
        )?;
    }
    for c in &d.files_closed {
        writeln!(
            w,
            "- {} closed {}",
            c.task.who(threads),
            files::summary(&c.file, snap_netns)
        )?;
    }
    Ok(())
}

/// Tasks that used CPU in the interval, top-like: CPU% is their share of
/// one CPU over the interval, TIME+ their CPU time since they started;
/// FILES is `-` when files were not walked (--no-files).
fn write_cpu_table(w: &mut dyn Write, d: &Diff) -> io::Result<()> {
    if !d.cpu.is_empty() {
        writeln!(
            w,
            "{:>7} {:>7} {:>6}  {:>9} {:>5} COMMAND",
            "PID", "TID", "CPU%", "TIME+", "FILES"
        )?;
        for c in &d.cpu {
            let files = c.files.map_or_else(|| "-".to_string(), |n| n.to_string());
            writeln!(
                w,
                "{:>7} {:>7} {:>6.1}  {:>9} {:>5} {}",
                c.task.pid,
                c.task.tid,
                c.percent,
                task::cpu_time(c.total_cpu_ns),
                files,
                printable(&c.task.comm)
            )?;
        }
    }
    Ok(())
}

/// With --file or --mount: who holds each target, as `fuser -v` shows
/// it, a line per process and target, the targets in the order given.
fn write_holders(w: &mut dyn Write, snap: &Snapshot, targets: &[Vec<u8>]) -> io::Result<()> {
    writeln!(w, "{}", holds::table_heading())?;
    for target in targets {
        let mut name = Some(target.as_slice());
        for row in &snap.rows {
            let Some(held) = row.holds.iter().find(|h| &h.target == target) else {
                continue;
            };
            let user = row.process.as_ref().map_or("?", |p| p.user.as_str());
            let line = holds::table_lines(name.take(), user, row.task.pid, held, &row.task.comm);
            writeln!(w, "{line}")?;
        }
    }
    Ok(())
}

/// The event's own details under the header, strace-like: `  openat(
/// AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC, 0)`, `  exit status 3`.
fn details_line(snap: &Snapshot) -> Option<String> {
    let t = &snap.info.trigger;
    let call = match t {
        crate::snapshot::Trigger::Syscall { name, .. } => Some(name.as_str()),
        crate::snapshot::Trigger::Tracepoint { name, .. } => {
            name.strip_prefix("syscalls:sys_enter_")
        }
        _ => None,
    };
    let text = snap
        .info
        .details
        .as_ref()?
        .text(call, &crate::signals::name, &|code| {
            crate::signals::code_name(t.signal().unwrap_or(0), code)
        })?;
    Some(format!("  {text}"))
}

pub fn write(w: &mut dyn Write, snap: &Snapshot, p: &Printer) -> io::Result<()> {
    let (threads, tree, paint) = (p.threads, p.tree, Paint(p.color));
    writeln!(w, "{}", header_line(snap))?;
    if let Some(line) = details_line(snap) {
        writeln!(w, "{line}")?;
    }
    if !snap.complete() {
        writeln!(
            w,
            "{}",
            paint.paint("1;31", &format!("INCOMPLETE: {}", snap.problems.join("; ")))
        )?;
    }
    if !p.targets.is_empty() {
        return write_holders(w, snap, &p.targets);
    }
    let cols = p
        .columns
        .clone()
        .unwrap_or_else(|| Column::defaults(threads, p.activity));
    writeln!(w, "{}", task::table_heading(&cols))?;
    let indent = if threads { 16 } else { 8 };
    let flags_width = files::flags_width(snap.rows.iter().flat_map(|r| &r.files));
    let any_slot = snap.info.files
        && snap.rows.iter().any(|r| {
            r.process
                .as_ref()
                .is_some_and(|p| p.slot_files().next().is_some())
        });
    if any_slot || snap.rows.iter().any(|r| !r.files.is_empty()) {
        files::write_heading(w, indent, flags_width)?;
    }
    let order: Vec<(usize, usize)> = if tree {
        tree_order(snap.rows.iter().map(|r| &r.task))
    } else {
        (0..snap.rows.len()).map(|i| (i, 0)).collect()
    };
    let mut line = Vec::with_capacity(256);
    for (i, depth) in order {
        let row = &snap.rows[i];
        let clock = clock(snap);
        let process = row.process.as_ref();
        let line_of_task =
            task::table_line(&row.task, process, &cols, clock, &branch(depth), paint);
        writeln!(w, "{line_of_task}")?;
        // Under a task, its files and stack, indented with it.
        let indent = indent + 2 * depth;
        let layout = files::LineLayout {
            indent,
            flags_width,
            reader_netns: snap.info.reader_netns,
        };
        // lsof's order: cwd, rtd, txt, mem, then the fds; a thread's row
        // names its process's only with its files.
        let slots = process
            .filter(|_| snap.info.files && (row.task.tid == row.task.pid || !row.files.is_empty()))
            .into_iter()
            .flat_map(|p| p.slot_files());
        for f in slots.chain(&row.files) {
            files::write_line(w, &mut line, &layout, f)?;
        }
        if let Some(o) = &row.oncpu {
            writeln!(
                w,
                "{:indent$}[on CPU {}: stacks sampled {} {} the snapshot]",
                "",
                o.cpu,
                short_duration(o.offset_ns.unsigned_abs()),
                if o.offset_ns <= 0 { "before" } else { "after" }
            )?;
        }
        if let Some(stack) = &row.stack {
            stacks::write_lines(w, indent, stack)?;
        }
        if let Some(ustack) = &row.ustack {
            ustacks::write_lines(w, indent, ustack)?;
        }
    }
    Ok(())
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
pub fn tree_order<'a>(tasks: impl Iterator<Item = &'a Task>) -> Vec<(usize, usize)> {
    let rows: Vec<&Task> = tasks.collect();
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
    use crate::diff::{self, SortKey};
    use crate::kinds::task::{TaskRec, TASK_PREV_CPUTIME, TASK_SIZE};
    use crate::model::{RawSnapshot, TriggerSpec};
    use crate::record::Record;
    use crate::snapshot::{self, Context};
    use crate::wire::Fields;

    fn rec(pid: u32, ppid: u32, comm: &str, exec_id: u64, euid: u32, runtime_ns: u64) -> Record {
        let mut r: TaskRec = task::decode(&Fields::new(&[0u8; TASK_SIZE]), 0).unwrap();
        (r.pid, r.tgid, r.ppid, r.state, r.nr_threads) = (pid, pid, ppid, 1, 1);
        (r.comm, r.self_exec_id, r.euid) = (comm.as_bytes().to_vec(), exec_id, euid);
        (r.utime_ns, r.stime_ns, r.runtime_ns) = (1, 1, runtime_ns);
        r.present = TASK_PREV_CPUTIME;
        Record::Task(Box::new(r))
    }

    fn snap(seq: u32, ktime_ns: u64, records: Vec<Record>) -> Snapshot {
        let raw = RawSnapshot {
            seq,
            records,
            ktime_ns,
            ..RawSnapshot::default()
        };
        let ctx = Context {
            backend: "seq",
            spec: &TriggerSpec::OneShot,
            per_thread: false,
            files: false,
            ksyms: None,
            wall_offset_ns: 0,
            event_budget_ns: 0,
            socket_filter: false,
            targets: &[],
            states: 0,
            stacks: true,
            thread_names: &[],
            reader_netns: 0,
            boot_wall_ns: 0,
            mem_total_kib: 0,
            cmdlines: true,
            maps: false,
            user_names: false,
            usyms: None,
            event_names: &Default::default(),
        };
        snapshot::assemble(raw, &ctx, (0, 0, 0))
    }

    /// bash (10) execs sleep and gains root's euid; sh (12) exits and its
    /// child (11) goes to init. Each change on a line, in the list and in
    /// the tree; TIME+ is the cumulative CPU time, FILES `-` without files.
    #[test]
    fn diff_lines_name_execs_parents_and_ids() {
        let before = snap(
            1,
            1_000_000_000,
            vec![
                rec(10, 1, "bash", 1, 1000, 1_000_000_000),
                rec(11, 12, "sleep", 1, 0, 0),
                rec(12, 1, "sh", 1, 0, 0),
            ],
        );
        let after = snap(
            2,
            2_000_000_000,
            vec![
                rec(10, 1, "sleep", 2, 0, 1_500_000_000),
                rec(11, 1, "sleep", 1, 0, 0),
            ],
        );
        let d = diff::diff(&before, &after, SortKey::Cpu);
        let printer = |tree| Printer {
            format: super::super::OutputFormat::Table,
            threads: false,
            activity: false,
            tree,
            columns: None,
            targets: Vec::new(),
            color: false,
            fold: None,
        };
        let render = |tree| {
            let mut out = Vec::new();
            write_diff(&mut out, &after, &d, &printer(tree)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let list = render(false);
        let lines: Vec<&str> = list.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "- 12 (sh) exited",
                "~ 10 (sleep) exec bash -> sleep",
                "~ 11 (sleep) reparented 12 -> 1",
                "~ 10 (sleep) euid 1000 -> 0",
                "    PID     TID   CPU%      TIME+ FILES COMMAND",
                "     10      10   50.0    0:01.50     - sleep",
            ],
            "{list}"
        );
        let tree = render(true);
        for note in [
            "~ exec bash -> sleep",
            "~ euid 1000 -> 0",
            "~ reparented 12 -> 1",
        ] {
            assert!(tree.contains(note), "{note} in {tree}");
        }
        assert!(tree.contains("~      10 sleep"), "{tree}");
        assert!(tree.contains("-      12 sh"), "{tree}");
    }
}
