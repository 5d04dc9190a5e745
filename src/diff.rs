//! What changed between two snapshots (`--diff`): tasks that appeared or
//! exited, state changes, files opened or closed, and the CPU time each task
//! gained over the interval, top-like.

use std::collections::BTreeMap;

use clap::ValueEnum;

use crate::snapshot::{FileEntry, Snapshot, TaskRow};

/// Order of the CPU-time table (--sort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// most CPU time gained first
    Cpu,
    /// by process id
    Pid,
    /// most open files first
    Files,
}

/// A task as a diff names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub task: TaskRef,
    pub from: char,
    pub to: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub task: TaskRef,
    pub file: FileEntry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CpuGain {
    pub task: TaskRef,
    pub cpu_ns: u64,
    /// Share of one CPU over the interval, in percent.
    pub percent: f64,
    pub files: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub from_seq: u32,
    pub interval_ns: u64,
    pub appeared: Vec<TaskRef>,
    pub exited: Vec<TaskRef>,
    pub state_changes: Vec<StateChange>,
    pub files_opened: Vec<FileChange>,
    pub files_closed: Vec<FileChange>,
    /// Tasks that used CPU in the interval, ordered by the sort key.
    pub cpu: Vec<CpuGain>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty()
            && self.exited.is_empty()
            && self.state_changes.is_empty()
            && self.files_opened.is_empty()
            && self.files_closed.is_empty()
            && self.cpu.is_empty()
    }
}

fn task_ref(t: &TaskRow) -> TaskRef {
    TaskRef {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        comm: t.comm.clone(),
    }
}

/// A task's identity across snapshots: a reused pid is a different task.
fn identity(t: &TaskRow) -> (u32, u32, u64) {
    (t.pid, t.tid, t.start_ns)
}

pub fn diff(prev: &Snapshot, cur: &Snapshot, sort: SortKey) -> Diff {
    let before: BTreeMap<_, &TaskRow> = prev.rows.iter().map(|t| (identity(t), t)).collect();
    let after: BTreeMap<_, &TaskRow> = cur.rows.iter().map(|t| (identity(t), t)).collect();
    let interval_ns = cur.info.ktime_ns.saturating_sub(prev.info.ktime_ns);
    let mut d = Diff {
        from_seq: prev.info.seq,
        interval_ns,
        appeared: Vec::new(),
        exited: Vec::new(),
        state_changes: Vec::new(),
        files_opened: Vec::new(),
        files_closed: Vec::new(),
        cpu: Vec::new(),
    };

    for (id, old) in &before {
        if !after.contains_key(id) {
            d.exited.push(task_ref(old));
        }
    }
    for (id, new) in &after {
        let old = before.get(id);
        let gained = new.cpu_ns().saturating_sub(old.map_or(0, |o| o.cpu_ns()));
        match old {
            // A new task's files come with it: not listed as opened.
            None => d.appeared.push(task_ref(new)),
            Some(old) => {
                if old.state != new.state {
                    d.state_changes.push(StateChange {
                        task: task_ref(new),
                        from: old.state,
                        to: new.state,
                    });
                }
                diff_files(old, new, &mut d);
            }
        }
        let percent = if interval_ns > 0 {
            gained as f64 * 100.0 / interval_ns as f64
        } else {
            0.0
        };
        // Less than 0.05% of a CPU shows as 0.0: not a change worth a line.
        if percent >= 0.05 {
            d.cpu.push(CpuGain {
                task: task_ref(new),
                cpu_ns: gained,
                percent,
                files: new.files.len(),
            });
        }
    }
    match sort {
        SortKey::Cpu => d
            .cpu
            .sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(a.task.pid.cmp(&b.task.pid))),
        SortKey::Pid => d.cpu.sort_by_key(|c| (c.task.pid, c.task.tid)),
        SortKey::Files => d
            .cpu
            .sort_by(|a, b| b.files.cmp(&a.files).then(a.task.pid.cmp(&b.task.pid))),
    }
    d
}

/// Files by fd; a different description at the same fd is a close and an open.
fn diff_files(old: &TaskRow, new: &TaskRow, d: &mut Diff) {
    let before: BTreeMap<i32, &FileEntry> = old.files.iter().map(|f| (f.fd, f)).collect();
    let after: BTreeMap<i32, &FileEntry> = new.files.iter().map(|f| (f.fd, f)).collect();
    for (fd, f) in &before {
        if after
            .get(fd)
            .is_none_or(|n| n.desc != f.desc || n.ino != f.ino)
        {
            d.files_closed.push(FileChange {
                task: task_ref(new),
                file: (*f).clone(),
            });
        }
    }
    for (fd, f) in &after {
        if before
            .get(fd)
            .is_none_or(|o| o.desc != f.desc || o.ino != f.ino)
        {
            d.files_opened.push(FileChange {
                task: task_ref(new),
                file: (*f).clone(),
            });
        }
    }
}
