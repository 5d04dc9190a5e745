//! Task identity: one record per thread (`bpf/kinds/task.h`, filled by
//! `bpf/kinds/task.bpf.h`), shown as ps shows it: its layout and decoding,
//! a thread or a thread group as a snapshot holds it, what makes two
//! snapshots' tasks the same and what changed, its JSON fields and its
//! table columns.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use crate::text::{printable, short_duration, Paint};
use crate::wire::{Fields, COMM_LEN};

/// `struct task_rec`.
pub const TASK_SIZE: usize = 136;

/// enum capture_flags: where a task record was filled.
pub const CAPTURE_IN_EVENT: u32 = 1 << 0;
/// A leader whose fd table the trigger program walked, up to `fds_upto`.
pub const CAPTURE_FILES: u32 = 1 << 1;
/// `fds_upto` when the whole fd table was walked in the event.
pub const FDS_ALL: u32 = u32::MAX;

const PF_KTHREAD: u32 = 0x0020_0000;

/// One `struct task_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRec {
    pub seq: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub state: u32,
    pub exit_state: u32,
    pub flags: u32,
    pub nr_threads: u32,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub runtime_ns: u64,
    pub dead_utime_ns: u64,
    pub dead_stime_ns: u64,
    pub dead_runtime_ns: u64,
    pub start_ns: u64,
    /// Bytes up to the first NUL (at most 15): task names need not be UTF-8.
    pub comm: Vec<u8>,
    /// CLOCK_MONOTONIC when the record was filled, ns.
    pub taken_ns: u64,
    /// CAPTURE_* flags.
    pub capture: u32,
    /// With CAPTURE_FILES: the fds below this were walked in the event.
    pub fds_upto: u32,
}

impl TaskRec {
    pub fn in_event(&self) -> bool {
        self.capture & CAPTURE_IN_EVENT != 0
    }
}

/// A task record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<TaskRec, &'static str> {
    if f.len() < TASK_SIZE {
        return Err("task record too short");
    }
    Ok(TaskRec {
        seq,
        pid: f.u32(8),
        tgid: f.u32(12),
        ppid: f.u32(16),
        uid: f.u32(20),
        euid: f.u32(24),
        gid: f.u32(28),
        state: f.u32(32),
        exit_state: f.u32(36),
        flags: f.u32(40),
        nr_threads: f.u32(44),
        utime_ns: f.u64(48),
        stime_ns: f.u64(56),
        runtime_ns: f.u64(64),
        dead_utime_ns: f.u64(72),
        dead_stime_ns: f.u64(80),
        dead_runtime_ns: f.u64(88),
        start_ns: f.u64(96),
        comm: f.c_bytes(104, COMM_LEN),
        taken_ns: f.u64(120),
        capture: f.u32(128),
        fds_upto: f.u32(132),
    })
}

/// A task record's bytes, as the BPF side lays them out: for the fuzz
/// seeds' generator (record.rs, `ITERSNAP_WRITE_SEEDS=1`).
#[cfg(test)]
pub(crate) fn encode(t: &TaskRec) -> Vec<u8> {
    let mut b = vec![0u8; TASK_SIZE];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &crate::record::REC_TASK.to_ne_bytes());
    put(2, &(TASK_SIZE as u16).to_ne_bytes());
    put(4, &t.seq.to_ne_bytes());
    for (at, v) in [
        (8, t.pid),
        (12, t.tgid),
        (16, t.ppid),
        (20, t.uid),
        (24, t.euid),
        (28, t.gid),
        (32, t.state),
        (36, t.exit_state),
        (40, t.flags),
        (44, t.nr_threads),
        (128, t.capture),
        (132, t.fds_upto),
    ] {
        put(at, &v.to_ne_bytes());
    }
    for (at, v) in [
        (48, t.utime_ns),
        (56, t.stime_ns),
        (64, t.runtime_ns),
        (72, t.dead_utime_ns),
        (80, t.dead_stime_ns),
        (88, t.dead_runtime_ns),
        (96, t.start_ns),
        (120, t.taken_ns),
    ] {
        put(at, &v.to_ne_bytes());
    }
    let comm = &t.comm[..t.comm.len().min(COMM_LEN - 1)];
    put(104, comm);
    b
}

/// A thread, or a process (its thread group's totals), as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: Vec<u8>,
    pub state: char,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub threads: u32,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub start_ns: u64,
    pub kthread: bool,
    /// Captured by the trigger program inside the event.
    pub in_event: bool,
    /// When it was captured, ns after the event (or the walk's start).
    pub since_event_ns: u64,
}

impl Task {
    /// One thread, `ktime_ns` being the event's (or the walk's start).
    pub fn thread(t: &TaskRec, ktime_ns: u64) -> Task {
        let (utime_ns, stime_ns) = cputime_adjust(t.utime_ns, t.stime_ns, t.runtime_ns);
        Task::with_times(t, t.tgid, ktime_ns, utime_ns, stime_ns)
    }

    /// A process: its leader's identity, and the CPU time of its live
    /// threads plus its dead ones, as /proc/PID/stat adds them.
    pub fn process(leader: &TaskRec, threads: &[TaskRec], ktime_ns: u64) -> Task {
        // Saturating: the counters come from the kernel, untrusted.
        let sum = |f: fn(&TaskRec) -> u64| threads.iter().map(f).fold(0u64, u64::saturating_add);
        let (utime_ns, stime_ns) = cputime_adjust(
            sum(|t| t.utime_ns).saturating_add(leader.dead_utime_ns),
            sum(|t| t.stime_ns).saturating_add(leader.dead_stime_ns),
            sum(|t| t.runtime_ns).saturating_add(leader.dead_runtime_ns),
        );
        let mut task = Task::with_times(leader, leader.tgid, ktime_ns, utime_ns, stime_ns);
        task.tid = leader.tgid;
        task
    }

    fn with_times(t: &TaskRec, tgid: u32, ktime_ns: u64, utime_ns: u64, stime_ns: u64) -> Task {
        Task {
            pid: tgid,
            tid: t.pid,
            ppid: t.ppid,
            comm: t.comm.clone(),
            state: state_letter(t.state, t.exit_state),
            uid: t.uid,
            euid: t.euid,
            gid: t.gid,
            threads: t.nr_threads.max(1),
            utime_ns,
            stime_ns,
            start_ns: t.start_ns,
            kthread: t.flags & PF_KTHREAD != 0,
            in_event: t.in_event(),
            since_event_ns: t.taken_ns.saturating_sub(ktime_ns),
        }
    }

    /// An exited task as a diff still knows it.
    pub fn exited(r: &TaskRef) -> Task {
        Task {
            pid: r.pid,
            tid: r.tid,
            ppid: r.ppid,
            comm: r.comm.clone(),
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
        }
    }

    pub fn cpu_ns(&self) -> u64 {
        self.utime_ns.saturating_add(self.stime_ns)
    }

    /// The same task in another snapshot: a reused pid is a different task.
    pub fn identity(&self) -> (u32, u32, u64) {
        (self.pid, self.tid, self.start_ns)
    }

    pub fn reference(&self) -> TaskRef {
        TaskRef {
            pid: self.pid,
            tid: self.tid,
            ppid: self.ppid,
            comm: self.comm.clone(),
        }
    }
}

/// ps's state letter, as the kernel's task_state_index() computes it.
pub fn state_letter(state: u32, exit_state: u32) -> char {
    const TASK_REPORT: u32 = 0x7f;
    const TASK_IDLE: u32 = 0x0402; // TASK_UNINTERRUPTIBLE | TASK_NOLOAD
    const TASK_RTLOCK_WAIT: u32 = 0x1000;
    let reported = (state & TASK_REPORT) | exit_state;
    let index = if state == TASK_IDLE {
        8
    } else if state == TASK_RTLOCK_WAIT {
        2
    } else {
        (32 - reported.leading_zeros()) as usize
    };
    b"RSDTtXZPI".get(index).map_or('?', |&b| b as char)
}

/// Splits on-CPU time into user and system the way the kernel's
/// cputime_adjust() does, so totals match /proc/PID/stat.
fn cputime_adjust(utime: u64, stime: u64, rtime: u64) -> (u64, u64) {
    if rtime == 0 {
        return (utime, stime);
    }
    if stime == 0 {
        return (rtime, 0);
    }
    if utime == 0 {
        return (0, rtime);
    }
    let stime_adj = (rtime as u128 * stime as u128 / (utime as u128 + stime as u128)) as u64;
    (rtime - stime_adj, stime_adj)
}

/// A task as a diff names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: Vec<u8>,
}

impl TaskRef {
    pub fn json(&self) -> Value {
        json!({
            "pid": self.pid,
            "tid": self.tid,
            "ppid": self.ppid,
            "comm": String::from_utf8_lossy(&self.comm),
        })
    }

    /// "1234 (bash)", or "1234/1240 (worker)" for a thread with --threads.
    pub fn who(&self, threads: bool) -> String {
        if threads && self.tid != self.pid {
            format!("{}/{} ({})", self.pid, self.tid, printable(&self.comm))
        } else {
            format!("{} ({})", self.pid, printable(&self.comm))
        }
    }
}

/// A task's state changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub task: TaskRef,
    pub from: char,
    pub to: char,
}

/// What changed in one task between two snapshots.
pub fn state_change(old: &Task, new: &Task) -> Option<StateChange> {
    (old.state != new.state).then(|| StateChange {
        task: new.reference(),
        from: old.state,
        to: new.state,
    })
}

/// The task's JSON fields (docs/json.md); a snapshot's task object adds
/// its files and stack.
#[derive(Serialize)]
pub struct TaskJson<'a> {
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
}

pub fn json(t: &Task) -> TaskJson<'_> {
    TaskJson {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        comm: String::from_utf8_lossy(&t.comm),
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
    }
}

/// A task column of the table, named as `ps -o` names it where it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Pid,
    Tid,
    Ppid,
    Uid,
    Euid,
    Gid,
    State,
    Nlwp,
    Time,
    Start,
    /// When the task was captured: in the event, or how long after it.
    Taken,
    Comm,
}

/// The clock a snapshot's times are read against: its kernel time and the
/// wall-clock time it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub ktime_ns: u64,
    pub wall_time: SystemTime,
}

impl Column {
    pub const NAMES: &'static [(&'static str, Column)] = &[
        ("pid", Column::Pid),
        ("tid", Column::Tid),
        ("lwp", Column::Tid),
        ("ppid", Column::Ppid),
        ("uid", Column::Euid),
        ("euid", Column::Euid),
        ("ruid", Column::Uid),
        ("gid", Column::Gid),
        ("state", Column::State),
        ("s", Column::State),
        ("stat", Column::State),
        ("nlwp", Column::Nlwp),
        ("thcount", Column::Nlwp),
        ("time", Column::Time),
        ("start", Column::Start),
        ("stime", Column::Start),
        ("taken", Column::Taken),
        ("comm", Column::Comm),
        ("command", Column::Comm),
        ("cmd", Column::Comm),
    ];

    /// The default table: ps-like, with TID when there is a row per thread.
    pub fn defaults(threads: bool) -> Vec<Column> {
        let mut cols = vec![Column::Pid];
        if threads {
            cols.push(Column::Tid);
        }
        cols.extend([
            Column::Ppid,
            Column::Euid,
            Column::State,
            Column::Nlwp,
            Column::Time,
            Column::Comm,
        ]);
        cols
    }

    /// Header text and width (right-aligned; COMMAND is last and free).
    pub fn header(self) -> (&'static str, usize) {
        match self {
            Column::Pid => ("PID", 7),
            Column::Tid => ("TID", 7),
            Column::Ppid => ("PPID", 7),
            Column::Uid => ("RUID", 6),
            Column::Euid => ("UID", 6),
            Column::Gid => ("GID", 6),
            Column::State => ("S", 1),
            Column::Nlwp => ("NLWP", 4),
            Column::Time => ("TIME", 9),
            Column::Start => ("START", 8),
            Column::Taken => ("TAKEN", 8),
            Column::Comm => ("COMMAND", 0),
        }
    }

    /// The task's cell in this column, unpadded; `branch` goes before the
    /// command, as `ps f` draws its tree.
    pub fn cell(self, t: &Task, clock: Clock, branch: &str, paint: Paint) -> String {
        match self {
            Column::Pid => t.pid.to_string(),
            Column::Tid => t.tid.to_string(),
            Column::Ppid => t.ppid.to_string(),
            Column::Uid => t.uid.to_string(),
            Column::Euid => t.euid.to_string(),
            Column::Gid => t.gid.to_string(),
            Column::State => paint.state(t.state),
            Column::Nlwp => t.threads.to_string(),
            Column::Time => cpu_time(t.cpu_ns()),
            Column::Start => start_time(t, clock),
            Column::Taken => taken(t),
            Column::Comm => {
                let comm = printable(&t.comm);
                if t.kthread {
                    format!("{branch}[{comm}]")
                } else {
                    format!("{branch}{comm}")
                }
            }
        }
    }
}

/// A task row in the chosen columns.
pub fn table_line(t: &Task, cols: &[Column], clock: Clock, branch: &str, paint: Paint) -> String {
    let mut line = String::new();
    for (i, &col) in cols.iter().enumerate() {
        let (_, width) = col.header();
        let cell = col.cell(t, clock, branch, paint);
        if i > 0 {
            line.push(' ');
        }
        // COMMAND is free; S is one letter, maybe wrapped in colour codes.
        if col == Column::Comm || col == Column::State {
            line.push_str(&cell);
        } else {
            line.push_str(&format!("{cell:>width$}"));
        }
    }
    line
}

/// The column headings, aligned as the cells.
pub fn table_heading(cols: &[Column]) -> String {
    cols.iter()
        .map(|&c| {
            let (name, width) = c.header();
            format!("{name:>width$}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `event` for a task captured inside the event, else how long after it
/// (or after the walk's start), like `+1.2ms`.
fn taken(t: &Task) -> String {
    if t.in_event {
        "event".into()
    } else {
        format!("+{}", short_duration(t.since_event_ns))
    }
}

/// CPU time like top's TIME+: minutes:seconds.hundredths.
pub fn cpu_time(ns: u64) -> String {
    let centis = ns / 10_000_000;
    format!(
        "{}:{:02}.{:02}",
        centis / 6000,
        centis / 100 % 60,
        centis % 100
    )
}

/// Wall-clock start time (UTC, HH:MM:SS): the snapshot's clock pair dates
/// the task's start on the monotonic clock.
fn start_time(t: &Task, clock: Clock) -> String {
    let ago = Duration::from_nanos(clock.ktime_ns.saturating_sub(t.start_ns));
    let started = clock.wall_time.checked_sub(ago).unwrap_or(UNIX_EPOCH);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::task_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<task_rec>(), TASK_SIZE);
        assert_eq!(offset_of!(task_rec, pid), 8);
        assert_eq!(offset_of!(task_rec, nr_threads), 44);
        assert_eq!(offset_of!(task_rec, utime_ns), 48);
        assert_eq!(offset_of!(task_rec, start_ns), 96);
        assert_eq!(offset_of!(task_rec, comm), 104);
        assert_eq!(offset_of!(task_rec, taken_ns), 120);
        assert_eq!(offset_of!(task_rec, capture), 128);
        assert_eq!(offset_of!(task_rec, fds_upto), 132);
    }

    #[test]
    fn states_as_ps_shows_them() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(1, 0), 'S');
        assert_eq!(state_letter(2, 0), 'D');
        assert_eq!(state_letter(4, 0), 'T');
        assert_eq!(state_letter(8 | 0x100, 0), 't');
        assert_eq!(state_letter(0x80, 32), 'Z');
        assert_eq!(state_letter(0x402, 0), 'I');
    }

    #[test]
    fn cputime_split_keeps_the_total() {
        assert_eq!(cputime_adjust(3, 1, 100), (75, 25));
        assert_eq!(cputime_adjust(0, 0, 100), (100, 0));
        assert_eq!(cputime_adjust(5, 0, 9), (9, 0));
    }
}
