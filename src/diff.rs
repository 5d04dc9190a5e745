//! What changed between two snapshots (`--diff`): tasks that appeared or
//! exited, state changes, execs, reparenting and id changes, a process's
//! working directory and RSS growth, files opened or closed, and the CPU
//! time each task gained over the interval, top-like.

use std::collections::BTreeMap;

use clap::ValueEnum;

use crate::kinds::files::{self, FileEntry};
use crate::kinds::process::{self, CwdChange, RssGrowth};
use crate::kinds::task::{self, CredChange, Exec, Reparent, StateChange, TaskRef};
use crate::snapshot::{Row, Snapshot};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub task: TaskRef,
    pub file: FileEntry,
}

/// A change of a process (kinds/process.rs), with the task it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessChange<T> {
    pub task: TaskRef,
    pub change: T,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CpuGain {
    pub task: TaskRef,
    /// CPU time used in the interval.
    pub cpu_ns: u64,
    /// CPU time used since the task started (top's TIME+).
    pub total_cpu_ns: u64,
    /// Share of one CPU over the interval, in percent.
    pub percent: f64,
    /// Open files; None when files were not walked (--no-files).
    pub files: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub from_seq: u32,
    pub interval_ns: u64,
    pub appeared: Vec<TaskRef>,
    pub exited: Vec<TaskRef>,
    pub state_changes: Vec<StateChange>,
    pub execs: Vec<Exec>,
    pub reparented: Vec<Reparent>,
    pub cred_changes: Vec<CredChange>,
    pub cwd_changes: Vec<ProcessChange<CwdChange>>,
    pub rss_growth: Vec<ProcessChange<RssGrowth>>,
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
            && self.execs.is_empty()
            && self.reparented.is_empty()
            && self.cred_changes.is_empty()
            && self.cwd_changes.is_empty()
            && self.rss_growth.is_empty()
            && self.files_opened.is_empty()
            && self.files_closed.is_empty()
            && self.cpu.is_empty()
    }
}

/// A snapshot's rows by the identity of their task.
fn by_identity(s: &Snapshot) -> BTreeMap<(u32, u32, u64), &Row> {
    s.rows.iter().map(|r| (r.task.identity(), r)).collect()
}

pub fn diff(prev: &Snapshot, cur: &Snapshot, sort: SortKey) -> Diff {
    let (before, after) = (by_identity(prev), by_identity(cur));
    let interval_ns = cur.info.ktime_ns.saturating_sub(prev.info.ktime_ns);
    let mut d = Diff {
        from_seq: prev.info.seq,
        interval_ns,
        appeared: Vec::new(),
        exited: Vec::new(),
        state_changes: Vec::new(),
        execs: Vec::new(),
        reparented: Vec::new(),
        cred_changes: Vec::new(),
        cwd_changes: Vec::new(),
        rss_growth: Vec::new(),
        files_opened: Vec::new(),
        files_closed: Vec::new(),
        cpu: Vec::new(),
    };

    for (id, old) in &before {
        if !after.contains_key(id) {
            d.exited.push(old.task.reference());
        }
    }
    for (id, new) in &after {
        let old = before.get(id);
        let gained = new
            .task
            .cpu_ns()
            .saturating_sub(old.map_or(0, |o| o.task.cpu_ns()));
        match old {
            // A new task's files come with it: not listed as opened.
            None => d.appeared.push(new.task.reference()),
            Some(old) => {
                let changed = task::changes(&old.task, &new.task);
                d.state_changes.extend(changed.state);
                d.execs.extend(changed.exec);
                d.reparented.extend(changed.reparent);
                d.cred_changes.extend(changed.creds);
                // A thread's row carries its process's: one change per process.
                if let (Some(o), Some(n)) = (&old.process, &new.process) {
                    if new.task.tid == new.task.pid {
                        let changed = process::changes(o, n);
                        let of = |change| ProcessChange {
                            task: new.task.reference(),
                            change,
                        };
                        d.cwd_changes.extend(changed.cwd.map(of));
                        d.rss_growth.extend(changed.rss.map(|change| ProcessChange {
                            task: new.task.reference(),
                            change,
                        }));
                    }
                }
                let changed = files::changes(&old.files, &new.files);
                let change = |f: &FileEntry| FileChange {
                    task: new.task.reference(),
                    file: f.clone(),
                };
                d.files_closed
                    .extend(changed.closed.into_iter().map(change));
                d.files_opened
                    .extend(changed.opened.into_iter().map(change));
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
                task: new.task.reference(),
                cpu_ns: gained,
                total_cpu_ns: new.task.cpu_ns(),
                percent,
                files: cur.info.files.then_some(new.files.len()),
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
