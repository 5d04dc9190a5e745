//! The readable view: a header line per snapshot, a row per task, its open
//! files (lsof-like) and kernel stack indented beneath it.

use std::io::{self, Write};

use super::{open_flags_short, printable, rfc3339};
use crate::diff::{Diff, TaskRef};
use crate::snapshot::{FileEntry, Snapshot, TaskRow};

pub fn header_line(snap: &Snapshot) -> String {
    let info = &snap.info;
    let c = &snap.counts;
    let when = if info.after_event {
        ", after the event"
    } else {
        ""
    };
    let mut line = format!(
        "snapshot {} at {}: {} ({} backend{when}), {} processes, {} threads, {} files",
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

fn task_line(t: &TaskRow, threads: bool) -> String {
    let comm = printable(&t.comm);
    let comm = if t.kthread { format!("[{comm}]") } else { comm };
    let tid = if threads {
        format!(" {:>7}", t.tid)
    } else {
        String::new()
    };
    format!(
        "{:>7}{tid} {:>7} {:>6} {} {:>4} {:>9} {}",
        t.pid,
        t.ppid,
        t.euid,
        t.state,
        t.threads,
        cpu_time(t.cpu_ns()),
        comm
    )
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

/// Changes since the previous snapshot, one line each, then the CPU table.
pub fn write_diff(w: &mut dyn Write, snap: &Snapshot, d: &Diff, threads: bool) -> io::Result<()> {
    writeln!(
        w,
        "{}; changes since snapshot {} ({:.1} ms before):",
        header_line(snap),
        d.from_seq,
        d.interval_ns as f64 / 1e6
    )?;
    if !snap.complete() {
        writeln!(w, "INCOMPLETE: {}", snap.problems.join("; "))?;
    }
    if d.is_empty() {
        writeln!(w, "  no changes")?;
    }
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

pub fn write(w: &mut dyn Write, snap: &Snapshot, threads: bool) -> io::Result<()> {
    writeln!(w, "{}", header_line(snap))?;
    if !snap.complete() {
        writeln!(w, "INCOMPLETE: {}", snap.problems.join("; "))?;
    }
    let tid = if threads { "     TID" } else { "" };
    writeln!(
        w,
        "{:>7}{tid} {:>7} {:>6} S NLWP      TIME COMMAND",
        "PID", "PPID", "UID"
    )?;
    let indent = if threads { 16 } else { 8 };
    if snap.rows.iter().any(|t| !t.files.is_empty()) {
        writeln!(
            w,
            "{:indent$}{:>6} {:<7} {:<8} DESCRIPTION",
            "", "FD", "TYPE", "FLAGS"
        )?;
    }
    for t in &snap.rows {
        writeln!(w, "{}", task_line(t, threads))?;
        for f in &t.files {
            let mark = if f.truncated { " [truncated]" } else { "" };
            writeln!(
                w,
                "{:indent$}{:>5}{} {:<7} {:<8} {}{}",
                "",
                f.fd,
                f.access(),
                f.kind,
                open_flags_short(f.f_flags),
                printable(&f.desc),
                mark
            )?;
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
