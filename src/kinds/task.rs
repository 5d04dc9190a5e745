//! Task identity: one record per thread (`bpf/kinds/task.h`, filled by
//! `bpf/kinds/task.bpf.h`), shown as ps and /proc show it: its layout and
//! decoding, a thread or a thread group as a snapshot holds it (CPU time
//! split as the kernel's cputime_adjust() splits it), what makes two
//! snapshots' tasks the same and what changed, its JSON fields and its
//! table columns.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use crate::kinds::activity::{self, Activity};
use crate::kinds::cmdline::ps_args;
use crate::kinds::process::{self, Process, ProcessColumn};
use crate::text::{
    base64_if_not_utf8, printable, ps_start_time, short_duration, Paint, StartFormat,
};
use crate::wire::Fields;

/// `struct task_rec`.
pub const TASK_SIZE: usize = 288;
/// `TASK_NAME_LEN`: proc_task_name()'s buffer, the name's NUL included.
pub const TASK_NAME_LEN: usize = 64;

/// enum capture_flags: where a task record was filled.
pub const CAPTURE_IN_EVENT: u32 = 1 << 0;
/// A leader whose fd table the trigger program walked, up to `fds_upto`.
pub const CAPTURE_FILES: u32 = 1 << 1;
/// `fds_upto` when the whole fd table was walked in the event.
pub const FDS_ALL: u32 = u32::MAX;

/// enum task_present: the kernel keeps prev_cputime (the record's prev_*).
pub const TASK_PREV_CPUTIME: u32 = 1 << 0;

const PF_KTHREAD: u32 = 0x0020_0000;

/// One `struct task_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRec {
    pub seq: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub state: u32,
    pub exit_state: u32,
    pub flags: u32,
    pub nr_threads: u32,
    /// The objective credentials (`real_cred`), as /proc/PID/status has them.
    pub ruid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// TASK_PREV_CPUTIME: which optional fields the kernel has.
    pub present: u32,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub runtime_ns: u64,
    /// task_struct.prev_cputime: the thread's split as the kernel last
    /// reported it.
    pub prev_utime_ns: u64,
    pub prev_stime_ns: u64,
    pub dead_utime_ns: u64,
    pub dead_stime_ns: u64,
    pub dead_runtime_ns: u64,
    /// signal_struct.prev_cputime: the same for the thread group.
    pub group_prev_utime_ns: u64,
    pub group_prev_stime_ns: u64,
    pub start_ns: u64,
    /// start_boottime: CLOCK_BOOTTIME at the start (/proc's starttime).
    pub start_boottime_ns: u64,
    /// self_exec_id: changes when the task execs.
    pub self_exec_id: u64,
    /// The name as /proc/PID/comm shows it, bytes up to the first NUL (at
    /// most 63): task names need not be UTF-8.
    pub comm: Vec<u8>,
    /// CLOCK_MONOTONIC when the record was filled, ns.
    pub taken_ns: u64,
    /// CAPTURE_* flags.
    pub capture: u32,
    /// With CAPTURE_FILES: the fds below this were walked in the event.
    pub fds_upto: u32,
    /// What ps's STAT adds to the state letter.
    pub stat: StatParts,
    /// The CPU it runs or last ran on (ps's PSR).
    pub cpu: u32,
    /// Running on that CPU at the walk.
    pub on_cpu: bool,
}

/// What ps's STAT shows besides the state letter (`Ssl`, `D<`, `S+`): the
/// thread's nice, its process's session and process group, its
/// terminal's foreground group (0: none), its locked pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatParts {
    pub nice: i32,
    pub sid: u32,
    pub pgid: u32,
    pub tpgid: u32,
    pub locked_pages: u64,
}

impl StatParts {
    /// ps's STAT: the state's letter, then its modifiers in procps's
    /// order: `<` high or `N` low priority, `L` pages locked, `s` session
    /// leader, `l` multi-threaded, `+` in the terminal's foreground group.
    pub fn stat(&self, state: char, tgid: u32, threads: u32) -> String {
        let mut out = String::with_capacity(8);
        out.push(state);
        if self.nice < 0 {
            out.push('<');
        } else if self.nice > 0 {
            out.push('N');
        }
        if self.locked_pages > 0 {
            out.push('L');
        }
        if self.sid == tgid {
            out.push('s');
        }
        if threads > 1 {
            out.push('l');
        }
        if self.tpgid != 0 && self.pgid == self.tpgid {
            out.push('+');
        }
        out
    }
}

impl TaskRec {
    pub fn in_event(&self) -> bool {
        self.capture & CAPTURE_IN_EVENT != 0
    }

    /// The thread's prev_cputime, if the kernel keeps it.
    fn prev(&self) -> Option<(u64, u64)> {
        (self.present & TASK_PREV_CPUTIME != 0).then_some((self.prev_utime_ns, self.prev_stime_ns))
    }

    /// The thread group's prev_cputime, if the kernel keeps it.
    fn group_prev(&self) -> Option<(u64, u64)> {
        (self.present & TASK_PREV_CPUTIME != 0)
            .then_some((self.group_prev_utime_ns, self.group_prev_stime_ns))
    }
}

/// The offsets of the record's u32 fields, in the order `encode` writes
/// them (the layout test checks them against the C struct).
#[cfg(test)]
const U32_FIELDS: [usize; 17] = [
    8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 184,
];

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
        state: f.u32(20),
        exit_state: f.u32(24),
        flags: f.u32(28),
        nr_threads: f.u32(32),
        ruid: f.u32(36),
        euid: f.u32(40),
        suid: f.u32(44),
        fsuid: f.u32(48),
        rgid: f.u32(52),
        egid: f.u32(56),
        sgid: f.u32(60),
        fsgid: f.u32(64),
        present: f.u32(68),
        utime_ns: f.u64(72),
        stime_ns: f.u64(80),
        runtime_ns: f.u64(88),
        prev_utime_ns: f.u64(96),
        prev_stime_ns: f.u64(104),
        dead_utime_ns: f.u64(112),
        dead_stime_ns: f.u64(120),
        dead_runtime_ns: f.u64(128),
        group_prev_utime_ns: f.u64(136),
        group_prev_stime_ns: f.u64(144),
        start_ns: f.u64(152),
        start_boottime_ns: f.u64(160),
        self_exec_id: f.u64(168),
        taken_ns: f.u64(176),
        capture: f.u32(184),
        fds_upto: f.u32(188),
        comm: f.c_bytes(192, TASK_NAME_LEN),
        stat: StatParts {
            nice: f.u32(256) as i32,
            sid: f.u32(260),
            pgid: f.u32(264),
            tpgid: f.u32(268),
            locked_pages: f.u64(272),
        },
        cpu: f.u32(280),
        on_cpu: f.u32(284) != 0,
    })
}

/// A task record's bytes, as the BPF side lays them out, all but the
/// header's kind and seq (the framing's, record.rs): for the fuzz seeds'
/// generator there (`ITERSNAP_WRITE_SEEDS=1`).
#[cfg(test)]
pub(crate) fn encode(t: &TaskRec) -> Vec<u8> {
    let mut b = vec![0u8; TASK_SIZE];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(2, &(TASK_SIZE as u16).to_ne_bytes());
    let u32s = [
        t.pid,
        t.tgid,
        t.ppid,
        t.state,
        t.exit_state,
        t.flags,
        t.nr_threads,
        t.ruid,
        t.euid,
        t.suid,
        t.fsuid,
        t.rgid,
        t.egid,
        t.sgid,
        t.fsgid,
        t.present,
        t.capture,
    ];
    for (at, v) in U32_FIELDS.iter().zip(u32s) {
        put(*at, &v.to_ne_bytes());
    }
    put(188, &t.fds_upto.to_ne_bytes());
    let u64s = [
        t.utime_ns,
        t.stime_ns,
        t.runtime_ns,
        t.prev_utime_ns,
        t.prev_stime_ns,
        t.dead_utime_ns,
        t.dead_stime_ns,
        t.dead_runtime_ns,
        t.group_prev_utime_ns,
        t.group_prev_stime_ns,
        t.start_ns,
        t.start_boottime_ns,
        t.self_exec_id,
        t.taken_ns,
    ];
    for (i, v) in u64s.iter().enumerate() {
        put(72 + 8 * i, &v.to_ne_bytes());
    }
    put(192, &t.comm[..t.comm.len().min(TASK_NAME_LEN - 1)]);
    put(256, &t.stat.nice.to_ne_bytes());
    put(260, &t.stat.sid.to_ne_bytes());
    put(264, &t.stat.pgid.to_ne_bytes());
    put(268, &t.stat.tpgid.to_ne_bytes());
    put(272, &t.stat.locked_pages.to_ne_bytes());
    put(280, &t.cpu.to_ne_bytes());
    put(284, &u32::from(t.on_cpu).to_ne_bytes());
    b
}

/// A thread, or a process (its thread group's totals), as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    /// As /proc/PID/comm shows it (a kernel thread's full name).
    pub comm: Vec<u8>,
    pub state: char,
    /// ps's STAT: the state letter and its modifiers (`Ssl`, `D<`, `S+`).
    pub stat: String,
    /// The thread's nice (a process's: its main thread's), as ps's NI.
    pub nice: i32,
    pub creds: Creds,
    pub threads: u32,
    /// As /proc/PID/stat's utime and stime (ns, not clock ticks).
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub start_ns: u64,
    pub start_boottime_ns: u64,
    /// The kernel's self_exec_id: a change means an exec.
    pub exec_id: u64,
    pub kthread: bool,
    /// Captured by the trigger program inside the event.
    pub in_event: bool,
    /// When it was captured, ns after the event (or the walk's start).
    pub since_event_ns: u64,
    /// The kernel function it sleeps in, as /proc/PID/wchan (from its
    /// stack: kinds/stacks.rs's `wchan`); none when running or unread.
    pub wchan: Option<String>,
    /// With --activity: the syscall it is in (kinds/activity.rs).
    pub activity: Option<Activity>,
    /// The CPU it runs or last ran on (ps's PSR; a process's: its main
    /// thread's).
    pub cpu: u32,
    /// Running on a CPU at the walk (a process's: its main thread).
    pub on_cpu: bool,
}

/// A task's user and group ids, as /proc/PID/status's `Uid:` and `Gid:`
/// lines give them: real, effective, saved, filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
}

impl Creds {
    /// Every id with its name (JSON's and the table's), in status's order.
    pub fn named(&self) -> [(&'static str, u32); 8] {
        [
            ("ruid", self.ruid),
            ("euid", self.euid),
            ("suid", self.suid),
            ("fsuid", self.fsuid),
            ("rgid", self.rgid),
            ("egid", self.egid),
            ("sgid", self.sgid),
            ("fsgid", self.fsgid),
        ]
    }
}

impl Task {
    /// One thread, `ktime_ns` being the event's (or the walk's start):
    /// its CPU time as /proc/PID/task/TID/stat gives it.
    pub fn thread(t: &TaskRec, ktime_ns: u64) -> Task {
        let (utime_ns, stime_ns) = cputime_adjust(t.utime_ns, t.stime_ns, t.runtime_ns, t.prev());
        Task::with_times(t, t.tgid, ktime_ns, utime_ns, stime_ns)
    }

    /// A process: its leader's identity, and the CPU time of its live
    /// threads plus its dead ones, as /proc/PID/stat adds them
    /// (thread_group_cputime()) and splits them (with the group's
    /// prev_cputime).
    pub fn process(leader: &TaskRec, threads: &[TaskRec], ktime_ns: u64) -> Task {
        // Saturating: the counters come from the kernel, untrusted.
        let sum = |f: fn(&TaskRec) -> u64| threads.iter().map(f).fold(0u64, u64::saturating_add);
        let (utime_ns, stime_ns) = cputime_adjust(
            sum(|t| t.utime_ns).saturating_add(leader.dead_utime_ns),
            sum(|t| t.stime_ns).saturating_add(leader.dead_stime_ns),
            sum(|t| t.runtime_ns).saturating_add(leader.dead_runtime_ns),
            leader.group_prev(),
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
            stat: t.stat.stat(
                state_letter(t.state, t.exit_state),
                tgid,
                t.nr_threads.max(1),
            ),
            nice: t.stat.nice,
            creds: Creds {
                ruid: t.ruid,
                euid: t.euid,
                suid: t.suid,
                fsuid: t.fsuid,
                rgid: t.rgid,
                egid: t.egid,
                sgid: t.sgid,
                fsgid: t.fsgid,
            },
            threads: t.nr_threads.max(1),
            utime_ns,
            stime_ns,
            start_ns: t.start_ns,
            start_boottime_ns: t.start_boottime_ns,
            exec_id: t.self_exec_id,
            kthread: t.flags & PF_KTHREAD != 0,
            in_event: t.in_event(),
            since_event_ns: t.taken_ns.saturating_sub(ktime_ns),
            wchan: None,
            activity: None,
            cpu: t.cpu,
            on_cpu: t.on_cpu,
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
            stat: "X".into(),
            nice: 0,
            creds: Creds::default(),
            threads: 0,
            utime_ns: 0,
            stime_ns: 0,
            start_ns: 0,
            start_boottime_ns: 0,
            exec_id: 0,
            kthread: false,
            in_event: false,
            since_event_ns: 0,
            wchan: None,
            activity: None,
            cpu: 0,
            on_cpu: false,
        }
    }

    pub fn cpu_ns(&self) -> u64 {
        self.utime_ns.saturating_add(self.stime_ns)
    }

    /// CPU time as /proc/PID/stat gives it: user and system time each in
    /// whole clock ticks (USER_HZ, 100 a second), summed, as ns.
    pub fn cpu_ticks_ns(&self) -> u64 {
        let tick = 1_000_000_000 / USER_HZ;
        (self.utime_ns / tick + self.stime_ns / tick) * tick
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

/// ps's state letters, in the kernel's task_state_index() order.
pub const STATE_LETTERS: &[u8; 9] = b"RSDTtXZPI";

/// The index of a task's state letter in STATE_LETTERS.
pub fn state_index(state: u32, exit_state: u32) -> usize {
    STATE_LETTERS
        .iter()
        .position(|&l| l as char == state_letter(state, exit_state))
        .unwrap_or(STATE_LETTERS.len())
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
    STATE_LETTERS.get(index).map_or('?', |&b| b as char)
}

/// The kernel's cputime_adjust() (kernel/sched/cputime.c), which gives
/// /proc/PID/stat its utime and stime: the exact runtime `rtime` split in
/// the ratio of the tick-sampled `utime` and `stime`, but never below the
/// split last reported (`prev`, the kernel's prev_cputime), so that neither
/// goes backwards; if that already covers `rtime`, it is reported again.
/// Without prev_cputime (VIRT_CPU_ACCOUNTING_NATIVE) the samples are exact
/// and reported as they are. Wrapping and u128 arithmetic where the kernel's
/// u64 would wrap or mul_u64_u64_div_u64() widen: the inputs are
/// untrusted, and this must not panic.
pub fn cputime_adjust(utime: u64, stime: u64, rtime: u64, prev: Option<(u64, u64)>) -> (u64, u64) {
    let Some((prev_utime, prev_stime)) = prev else {
        return (utime, stime);
    };
    // rtime not past what was reported: report that again.
    if prev_stime.wrapping_add(prev_utime) >= rtime {
        return (prev_utime, prev_stime);
    }
    // Without a tick of one kind, all of it is the other's (user time if
    // neither): the monotonicity below makes later splits converge.
    let stime = if stime == 0 {
        0
    } else if utime == 0 {
        rtime
    } else {
        let total = u128::from(stime) + u128::from(utime);
        let scaled = u128::from(stime) * u128::from(rtime) / total;
        scaled.min(u128::from(rtime)) as u64
    };
    // Neither goes backwards: stime not below its last, then utime.
    let mut stime = stime.max(prev_stime);
    let mut utime = rtime - stime.min(rtime);
    if utime < prev_utime {
        utime = prev_utime;
        stime = rtime.saturating_sub(utime);
    }
    (utime, stime)
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
        let mut v = json!({
            "pid": self.pid,
            "tid": self.tid,
            "ppid": self.ppid,
            "comm": String::from_utf8_lossy(&self.comm),
        });
        if let Some(exact) = base64_if_not_utf8(&self.comm) {
            v["comm_base64"] = json!(exact);
        }
        v
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

/// A task exec'd between two snapshots (its self_exec_id changed): the
/// name it had and the one it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub task: TaskRef,
    pub from_comm: Vec<u8>,
    pub to_comm: Vec<u8>,
}

/// A task got another parent (its own exited: it was reparented to a
/// subreaper or init).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reparent {
    pub task: TaskRef,
    pub from_ppid: u32,
    pub to_ppid: u32,
}

/// One of a task's ids changed (`field`: ruid, euid, … fsgid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredChange {
    pub task: TaskRef,
    pub field: &'static str,
    pub from: u32,
    pub to: u32,
}

/// What changed in one task between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub state: Option<StateChange>,
    pub exec: Option<Exec>,
    pub reparent: Option<Reparent>,
    pub creds: Vec<CredChange>,
}

/// What changed in one task (the same task: `identity()` equal) between
/// two snapshots. An exec is told by self_exec_id, not by the name, which
/// a task may change without exec'ing (prctl, /proc/PID/comm) and a
/// workqueue worker changes with each work item.
pub fn changes(old: &Task, new: &Task) -> Changes {
    let task = new.reference();
    Changes {
        state: (old.state != new.state).then(|| StateChange {
            task: task.clone(),
            from: old.state,
            to: new.state,
        }),
        exec: (old.exec_id != new.exec_id).then(|| Exec {
            task: task.clone(),
            from_comm: old.comm.clone(),
            to_comm: new.comm.clone(),
        }),
        reparent: (old.ppid != new.ppid).then(|| Reparent {
            task: task.clone(),
            from_ppid: old.ppid,
            to_ppid: new.ppid,
        }),
        creds: old
            .creds
            .named()
            .into_iter()
            .zip(new.creds.named())
            .filter(|((_, from), (_, to))| from != to)
            .map(|((field, from), (_, to))| CredChange {
                task: task.clone(),
                field,
                from,
                to,
            })
            .collect(),
    }
}

/// The task's JSON fields (docs/json.md); a snapshot's task object adds
/// its files and stack. `uid` and `gid` are the effective ids, as ps's
/// columns of those names.
#[derive(Serialize)]
pub struct TaskJson<'a> {
    pid: u32,
    tid: u32,
    ppid: u32,
    comm: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_base64: Option<String>,
    state: char,
    stat: &'a str,
    nice: i32,
    uid: u32,
    gid: u32,
    ruid: u32,
    euid: u32,
    suid: u32,
    fsuid: u32,
    rgid: u32,
    egid: u32,
    sgid: u32,
    fsgid: u32,
    threads: u32,
    utime_ns: u64,
    stime_ns: u64,
    start_ns: u64,
    start_boottime_ns: u64,
    kthread: bool,
    in_event: bool,
    since_event_ns: u64,
    cpu: u32,
    on_cpu: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    wchan: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syscall: Option<activity::SyscallJson<'a>>,
}

pub fn json(t: &Task) -> TaskJson<'_> {
    let c = &t.creds;
    TaskJson {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        comm: String::from_utf8_lossy(&t.comm),
        comm_base64: base64_if_not_utf8(&t.comm),
        state: t.state,
        stat: &t.stat,
        nice: t.nice,
        uid: c.euid,
        gid: c.egid,
        ruid: c.ruid,
        euid: c.euid,
        suid: c.suid,
        fsuid: c.fsuid,
        rgid: c.rgid,
        egid: c.egid,
        sgid: c.sgid,
        fsgid: c.fsgid,
        threads: t.threads,
        utime_ns: t.utime_ns,
        stime_ns: t.stime_ns,
        start_ns: t.start_ns,
        start_boottime_ns: t.start_boottime_ns,
        kthread: t.kthread,
        in_event: t.in_event,
        since_event_ns: t.since_event_ns,
        cpu: t.cpu,
        on_cpu: t.on_cpu,
        wchan: t.wchan.as_deref(),
        activity: t.activity.as_ref().map(Activity::word),
        syscall: t.activity.as_ref().and_then(activity::json),
    }
}

/// A task column of the table, named as `ps -o` names it where it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Pid,
    Tid,
    Ppid,
    /// The effective uid, as ps's `uid` (and `euid`).
    Uid,
    Euid,
    Ruid,
    Suid,
    Fsuid,
    /// The effective gid, as ps's `gid` (and `egid`).
    Gid,
    Egid,
    Rgid,
    Sgid,
    Fsgid,
    State,
    /// ps's STAT: the state and its modifiers.
    Stat,
    /// ps's NI.
    Nice,
    /// ps's PSR: the CPU it runs or last ran on.
    Psr,
    Nlwp,
    Time,
    /// ps's %CPU: CPU time over the time since the task started.
    Pcpu,
    /// ps's %MEM: resident memory over the machine's (MemTotal).
    Pmem,
    /// Start time as ps's `start` (STARTED), `stime` (STIME), `start_time`
    /// (START), `bsdstart` (START) and `lstart` (STARTED) show it.
    Start,
    Stime,
    StartTime,
    BsdStart,
    Lstart,
    /// When the task was captured: in the event, or how long after it.
    Taken,
    /// ps's WCHAN: the kernel function a sleeping task waits in.
    Wchan,
    /// With --activity: the syscall the task is in (kinds/activity.rs).
    Syscall,
    Comm,
    /// ps's `args`: the command line (kinds/cmdline.rs), `[name]` without one.
    Args,
    /// What the task's process fills (kinds/process.rs): user, group, exe,
    /// cwd, root, rss, vsz, tty, cgroup.
    Process(ProcessColumn),
}

/// The clock a snapshot's times are read against: its kernel time and the
/// wall-clock time it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub ktime_ns: u64,
    pub wall_time: SystemTime,
    /// When the machine booted, wall clock ns (/proc/stat's btime).
    pub boot_wall_ns: u64,
    /// The machine's memory (/proc/meminfo's MemTotal), for %MEM; 0 unknown.
    pub mem_total_kib: u64,
}

impl Column {
    pub const NAMES: &'static [(&'static str, Column)] = &[
        ("pid", Column::Pid),
        ("tid", Column::Tid),
        ("lwp", Column::Tid),
        ("ppid", Column::Ppid),
        ("uid", Column::Uid),
        ("euid", Column::Euid),
        ("ruid", Column::Ruid),
        ("suid", Column::Suid),
        ("fsuid", Column::Fsuid),
        ("gid", Column::Gid),
        ("egid", Column::Egid),
        ("rgid", Column::Rgid),
        ("sgid", Column::Sgid),
        ("fsgid", Column::Fsgid),
        ("state", Column::State),
        ("s", Column::State),
        ("stat", Column::Stat),
        ("ni", Column::Nice),
        ("nice", Column::Nice),
        ("psr", Column::Psr),
        ("nlwp", Column::Nlwp),
        ("thcount", Column::Nlwp),
        ("time", Column::Time),
        ("%cpu", Column::Pcpu),
        ("pcpu", Column::Pcpu),
        ("%mem", Column::Pmem),
        ("pmem", Column::Pmem),
        ("start", Column::Start),
        ("stime", Column::Stime),
        ("start_time", Column::StartTime),
        ("bsdstart", Column::BsdStart),
        ("lstart", Column::Lstart),
        ("taken", Column::Taken),
        ("wchan", Column::Wchan),
        ("syscall", Column::Syscall),
        ("comm", Column::Comm),
        ("ucomm", Column::Comm),
        ("args", Column::Args),
        ("command", Column::Args),
        ("cmd", Column::Args),
        ("user", Column::Process(ProcessColumn::User)),
        ("euser", Column::Process(ProcessColumn::User)),
        ("group", Column::Process(ProcessColumn::Group)),
        ("egroup", Column::Process(ProcessColumn::Group)),
        ("exe", Column::Process(ProcessColumn::Exe)),
        ("cwd", Column::Process(ProcessColumn::Cwd)),
        ("root", Column::Process(ProcessColumn::Root)),
        ("rss", Column::Process(ProcessColumn::Rss)),
        ("rssize", Column::Process(ProcessColumn::Rss)),
        ("vsz", Column::Process(ProcessColumn::Vsz)),
        ("vsize", Column::Process(ProcessColumn::Vsz)),
        ("tty", Column::Process(ProcessColumn::Tty)),
        ("tt", Column::Process(ProcessColumn::Tty)),
        ("cgroup", Column::Process(ProcessColumn::Cgroup)),
    ];

    /// The default table: ps-like, with TID when there is a row per
    /// thread, and WCHAN and SYSCALL with --activity.
    pub fn defaults(threads: bool, activity: bool) -> Vec<Column> {
        let mut cols = vec![Column::Pid];
        if threads {
            cols.push(Column::Tid);
        }
        cols.extend([
            Column::Ppid,
            Column::Process(ProcessColumn::User),
            Column::State,
            Column::Nlwp,
            Column::Process(ProcessColumn::Vsz),
            Column::Process(ProcessColumn::Rss),
            Column::Process(ProcessColumn::Tty),
            Column::Time,
        ]);
        if activity {
            cols.extend([Column::Wchan, Column::Syscall]);
        }
        cols.push(Column::Args);
        cols
    }

    /// Left-aligned, as ps aligns names and paths; the last column is free.
    fn left_aligned(self) -> bool {
        matches!(
            self,
            Column::Comm
                | Column::Args
                | Column::Wchan
                | Column::Syscall
                | Column::State
                | Column::Stat
                | Column::Process(
                    ProcessColumn::User
                        | ProcessColumn::Group
                        | ProcessColumn::Tty
                        | ProcessColumn::Exe
                        | ProcessColumn::Cwd
                        | ProcessColumn::Root
                        | ProcessColumn::Cgroup
                )
        )
    }

    /// Header text and width (right-aligned; COMMAND is last and free).
    pub fn header(self) -> (&'static str, usize) {
        match self {
            Column::Pid => ("PID", 7),
            Column::Tid => ("TID", 7),
            Column::Ppid => ("PPID", 7),
            Column::Uid => ("UID", 6),
            Column::Euid => ("EUID", 6),
            Column::Ruid => ("RUID", 6),
            Column::Suid => ("SUID", 6),
            Column::Fsuid => ("FSUID", 6),
            Column::Gid => ("GID", 6),
            Column::Egid => ("EGID", 6),
            Column::Rgid => ("RGID", 6),
            Column::Sgid => ("SGID", 6),
            Column::Fsgid => ("FSGID", 6),
            Column::State => ("S", 1),
            Column::Nlwp => ("NLWP", 4),
            Column::Stat => ("STAT", 4),
            Column::Nice => ("NI", 3),
            Column::Psr => ("PSR", 3),
            Column::Time => ("TIME", 9),
            Column::Pcpu => ("%CPU", 4),
            Column::Pmem => ("%MEM", 4),
            Column::Start => ("STARTED", 8),
            Column::Stime => ("STIME", 5),
            Column::StartTime => ("START", 5),
            Column::BsdStart => ("START", 6),
            Column::Lstart => ("STARTED", 24),
            Column::Taken => ("TAKEN", 8),
            Column::Wchan => ("WCHAN", 20),
            Column::Syscall => ("SYSCALL", 20),
            // Free when last; when not, as wide as ps makes them.
            Column::Comm => ("COMMAND", 15),
            Column::Args => ("COMMAND", 27),
            Column::Process(p) => match p {
                ProcessColumn::User => ("USER", 8),
                ProcessColumn::Group => ("GROUP", 8),
                ProcessColumn::Exe => ("EXE", 24),
                ProcessColumn::Cwd => ("CWD", 24),
                ProcessColumn::Root => ("ROOT", 8),
                ProcessColumn::Rss => ("RSS", 7),
                ProcessColumn::Vsz => ("VSZ", 8),
                ProcessColumn::Tty => ("TT", 8),
                ProcessColumn::Cgroup => ("CGROUP", 24),
            },
        }
    }

    /// The task's cell in this column, unpadded; `branch` goes before the
    /// command, as `ps f` draws its tree.
    pub fn cell(
        self,
        t: &Task,
        p: Option<&Process>,
        clock: Clock,
        branch: &str,
        paint: Paint,
    ) -> String {
        let c = &t.creds;
        match self {
            Column::Pid => t.pid.to_string(),
            Column::Tid => t.tid.to_string(),
            Column::Ppid => t.ppid.to_string(),
            Column::Uid | Column::Euid => c.euid.to_string(),
            Column::Ruid => c.ruid.to_string(),
            Column::Suid => c.suid.to_string(),
            Column::Fsuid => c.fsuid.to_string(),
            Column::Gid | Column::Egid => c.egid.to_string(),
            Column::Rgid => c.rgid.to_string(),
            Column::Sgid => c.sgid.to_string(),
            Column::Fsgid => c.fsgid.to_string(),
            Column::State => paint.state(t.state),
            Column::Nlwp => t.threads.to_string(),
            Column::Stat => t.stat.clone(),
            Column::Nice => t.nice.to_string(),
            Column::Psr => t.cpu.to_string(),
            Column::Time => cpu_time(t.cpu_ticks_ns()),
            Column::Pcpu => pcpu(t, clock),
            Column::Pmem => match p {
                Some(p) if clock.mem_total_kib > 0 => {
                    tenths(p.rss_kib * 1000 / clock.mem_total_kib)
                }
                _ => "-".into(),
            },
            Column::Start => start_time(t, clock, StartFormat::Start),
            Column::Stime | Column::StartTime => start_time(t, clock, StartFormat::Stime),
            Column::BsdStart => start_time(t, clock, StartFormat::BsdStart),
            Column::Lstart => start_time(t, clock, StartFormat::Lstart),
            Column::Taken => taken(t),
            Column::Wchan => t.wchan.as_deref().unwrap_or("-").to_string(),
            Column::Syscall => t
                .activity
                .as_ref()
                .map_or_else(|| "-".into(), Activity::cell),
            Column::Comm => {
                let comm = printable(&t.comm);
                if t.kthread {
                    format!("{branch}[{comm}]")
                } else {
                    format!("{branch}{comm}")
                }
            }
            // A thread other than the main one: its own name, as `ps -L`
            // shows it (the command line is the process's, the same on
            // every row).
            Column::Args if t.tid != t.pid => Column::Comm.cell(t, p, clock, branch, paint),
            // Without command lines (before 5.18) the name, as comm shows
            // it; kernel threads and zombies have none anyway.
            Column::Args if p.is_some_and(|p| p.cmdline_read) || t.kthread || t.state == 'Z' => {
                let cmdline = p.and_then(|p| p.cmdline.as_ref());
                format!("{branch}{}", ps_args(cmdline, &t.comm, t.state == 'Z'))
            }
            Column::Args => Column::Comm.cell(t, p, clock, branch, paint),
            Column::Process(col) => process::cell(p, col).into_owned(),
        }
    }
}

/// A task row in the chosen columns, `p` its process.
pub fn table_line(
    t: &Task,
    p: Option<&Process>,
    cols: &[Column],
    clock: Clock,
    branch: &str,
    paint: Paint,
) -> String {
    let mut line = String::new();
    for (i, &col) in cols.iter().enumerate() {
        let (_, width) = col.header();
        let mut cell = col.cell(t, p, clock, branch, paint);
        if i > 0 {
            line.push(' ');
        }
        let last = i + 1 == cols.len();
        // Names too long for a column that is not the last, cut and marked
        // as ps marks a user name, `averyve+`: a user, group, task name,
        // WCHAN or syscall. Command lines and paths stay whole.
        if !last
            && matches!(
                col,
                Column::Process(ProcessColumn::User | ProcessColumn::Group)
                    | Column::Comm
                    | Column::Wchan
                    | Column::Syscall
            )
        {
            if let Cow::Owned(cut) = crate::text::cut_marked(&cell, width) {
                cell = cut;
            }
        }
        // S is one letter, maybe wrapped in colour codes; the last column
        // is free.
        if col == Column::State || (last && col.left_aligned()) {
            line.push_str(&cell);
        } else if col.left_aligned() {
            line.push_str(&format!("{cell:<width$}"));
        } else {
            line.push_str(&format!("{cell:>width$}"));
        }
    }
    line
}

/// The column headings, aligned as the cells.
pub fn table_heading(cols: &[Column]) -> String {
    let heading = cols
        .iter()
        .map(|&c| {
            let (name, width) = c.header();
            if c.left_aligned() {
                format!("{name:<width$}")
            } else {
                format!("{name:>width$}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    heading.trim_end().to_string()
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
/// The kernel's USER_HZ: /proc's clock ticks a second.
const USER_HZ: u64 = 100;

/// ps's %CPU: CPU time (in ticks, as /proc gives it) over the time since
/// the task started (its start in ticks, as /proc/PID/stat's starttime), in
/// tenths of a percent, as procps computes it.
fn pcpu(t: &Task, clock: Clock) -> String {
    let tick = 1_000_000_000 / USER_HZ;
    let wall_ns = clock
        .wall_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let now_boot_ns = wall_ns.saturating_sub(clock.boot_wall_ns);
    let seconds = now_boot_ns.saturating_sub(t.start_boottime_ns / tick * tick) as f64 / 1e9;
    let ticks = t.cpu_ticks_ns() / tick;
    if seconds <= 0.0 {
        return tenths(0);
    }
    tenths(((ticks * 1000 / USER_HZ) as f64 / seconds) as u64)
}

/// Tenths as ps prints them: "12.3".
fn tenths(n: u64) -> String {
    format!("{}.{}", n / 10, n % 10)
}

pub fn cpu_time(ns: u64) -> String {
    let centis = ns / 10_000_000;
    format!(
        "{}:{:02}.{:02}",
        centis / 6000,
        centis / 100 % 60,
        centis % 100
    )
}

/// The start time in the local time zone, as ps computes it: the boot
/// time in whole seconds (/proc/stat's btime) plus the whole seconds from
/// boot to the start on the boot clock (starttime), against the
/// snapshot's time as "now".
fn start_time(t: &Task, clock: Clock, format: StartFormat) -> String {
    let wall_ns = clock
        .wall_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let boot_s = clock.boot_wall_ns / 1_000_000_000;
    let start_s = boot_s.saturating_add(t.start_boottime_ns / 1_000_000_000);
    let now_s = wall_ns / 1_000_000_000;
    ps_start_time(format, start_s as i64, now_s as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler
    /// built, every field.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::task_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<task_rec>(), TASK_SIZE);
        let u32s = [
            offset_of!(task_rec, pid),
            offset_of!(task_rec, tgid),
            offset_of!(task_rec, ppid),
            offset_of!(task_rec, state),
            offset_of!(task_rec, exit_state),
            offset_of!(task_rec, flags),
            offset_of!(task_rec, nr_threads),
            offset_of!(task_rec, ruid),
            offset_of!(task_rec, euid),
            offset_of!(task_rec, suid),
            offset_of!(task_rec, fsuid),
            offset_of!(task_rec, rgid),
            offset_of!(task_rec, egid),
            offset_of!(task_rec, sgid),
            offset_of!(task_rec, fsgid),
            offset_of!(task_rec, present),
            offset_of!(task_rec, capture),
        ];
        assert_eq!(u32s, U32_FIELDS);
        assert_eq!(offset_of!(task_rec, fds_upto), 188);
        let u64s = [
            offset_of!(task_rec, utime_ns),
            offset_of!(task_rec, stime_ns),
            offset_of!(task_rec, runtime_ns),
            offset_of!(task_rec, prev_utime_ns),
            offset_of!(task_rec, prev_stime_ns),
            offset_of!(task_rec, dead_utime_ns),
            offset_of!(task_rec, dead_stime_ns),
            offset_of!(task_rec, dead_runtime_ns),
            offset_of!(task_rec, group_prev_utime_ns),
            offset_of!(task_rec, group_prev_stime_ns),
            offset_of!(task_rec, start_ns),
            offset_of!(task_rec, start_boottime_ns),
            offset_of!(task_rec, self_exec_id),
            offset_of!(task_rec, taken_ns),
        ];
        assert_eq!(u64s, std::array::from_fn(|i| 72 + 8 * i));
        assert_eq!(offset_of!(task_rec, comm), 192);
        assert_eq!(offset_of!(task_rec, nice) - 192, TASK_NAME_LEN);
        assert_eq!(offset_of!(task_rec, nice), 256);
        assert_eq!(offset_of!(task_rec, sid), 260);
        assert_eq!(offset_of!(task_rec, pgid), 264);
        assert_eq!(offset_of!(task_rec, tpgid), 268);
        assert_eq!(offset_of!(task_rec, locked_pages), 272);
        assert_eq!(offset_of!(task_rec, cpu), 280);
        assert_eq!(offset_of!(task_rec, on_cpu), 284);
        assert_eq!(std::mem::size_of::<task_rec>(), TASK_SIZE);
    }

    /// What is encoded decodes back, every field in its place.
    #[test]
    fn encode_and_decode_agree() {
        let mut n = 0u32;
        let mut next = || {
            n += 1;
            n
        };
        let rec = TaskRec {
            seq: next(),
            pid: next(),
            tgid: next(),
            ppid: next(),
            state: next(),
            exit_state: next(),
            flags: next(),
            nr_threads: next(),
            ruid: next(),
            euid: next(),
            suid: next(),
            fsuid: next(),
            rgid: next(),
            egid: next(),
            sgid: next(),
            fsgid: next(),
            present: next(),
            utime_ns: next().into(),
            stime_ns: next().into(),
            runtime_ns: next().into(),
            prev_utime_ns: next().into(),
            prev_stime_ns: next().into(),
            dead_utime_ns: next().into(),
            dead_stime_ns: next().into(),
            dead_runtime_ns: next().into(),
            group_prev_utime_ns: next().into(),
            group_prev_stime_ns: next().into(),
            start_ns: next().into(),
            start_boottime_ns: next().into(),
            self_exec_id: next().into(),
            comm: b"kworker/R-a_workqueue_name_of_31".to_vec(),
            taken_ns: next().into(),
            capture: next(),
            fds_upto: next(),
            stat: StatParts {
                nice: -(next() as i32),
                sid: next(),
                pgid: next(),
                tpgid: next(),
                locked_pages: next().into(),
            },
            cpu: next(),
            on_cpu: true,
        };
        let bytes = encode(&rec);
        assert_eq!(&bytes[2..4], &(TASK_SIZE as u16).to_ne_bytes());
        assert_eq!(decode(&Fields::new(&bytes), rec.seq), Ok(rec));
    }

    #[test]
    fn long_user_names_are_cut_as_ps_cuts_them() {
        let mut t = Task::process(&rec(1, 1), &[rec(1, 1)], 0);
        t.kthread = false;
        let mut p = Process::from_record(None, 0, 0, false);
        p.user = "averyveryverylongname".into();
        let clock = Clock {
            ktime_ns: 0,
            wall_time: UNIX_EPOCH,
            boot_wall_ns: 0,
            mem_total_kib: 0,
        };
        let user = Column::Process(ProcessColumn::User);
        let line = table_line(&t, Some(&p), &[user, Column::Pid], clock, "", Paint(false));
        assert_eq!(line, "averyve+       1");
        // The last column is free.
        let line = table_line(&t, Some(&p), &[Column::Pid, user], clock, "", Paint(false));
        assert!(line.ends_with("averyveryverylongname"), "{line}");
        // An escaped name keeps its column too, marked as cut.
        t.comm = b"a\nname\xffwith\x01bytes".to_vec();
        let line = table_line(
            &t,
            Some(&p),
            &[Column::Comm, Column::Pid],
            clock,
            "",
            Paint(false),
        );
        assert_eq!(line, "a\\x0aname\\xffw+       1");
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

    /// cputime_adjust() worked by hand from kernel/sched/cputime.c:
    /// (utime, stime, rtime, prev) → what /proc/PID/stat shows.
    #[test]
    fn cputime_as_the_kernel_adjusts_it() {
        let fresh = Some((0, 0));
        // stime = 1 * 100 / (3 + 1) = 25, utime = 100 - 25.
        assert_eq!(cputime_adjust(3, 1, 100, fresh), (75, 25));
        // Truncating division: stime = 1 * 10 / 3 = 3.
        assert_eq!(cputime_adjust(2, 1, 10, fresh), (7, 3));
        // No system tick: all of rtime is user time; no user tick: system.
        assert_eq!(cputime_adjust(5, 0, 9, fresh), (9, 0));
        assert_eq!(cputime_adjust(0, 5, 9, fresh), (0, 9));
        // No tick at all: user time.
        assert_eq!(cputime_adjust(0, 0, 100, fresh), (100, 0));
        // Nothing ran yet: prev (0, 0) covers rtime 0.
        assert_eq!(cputime_adjust(0, 0, 0, fresh), (0, 0));
        // prev already covers rtime (bigger, or equal): reported again.
        assert_eq!(cputime_adjust(3, 1, 100, Some((60, 50))), (60, 50));
        assert_eq!(cputime_adjust(3, 1, 100, Some((60, 40))), (60, 40));
        // stime would go back (10 < 50): kept at 50, utime the rest.
        assert_eq!(cputime_adjust(9, 1, 100, Some((10, 50))), (50, 50));
        // utime would go back (100 - 90 = 10 < 80): kept at 80, stime the rest.
        assert_eq!(cputime_adjust(1, 9, 100, Some((80, 10))), (80, 20));
        // stime 0 ticks, yet it had system time: not below it.
        assert_eq!(cputime_adjust(5, 0, 100, Some((10, 20))), (80, 20));
        // utime 0 ticks, yet it had user time: not below it.
        assert_eq!(cputime_adjust(0, 5, 100, Some((30, 10))), (30, 70));
        // Without prev_cputime (VIRT_CPU_ACCOUNTING_NATIVE): as sampled.
        assert_eq!(cputime_adjust(3, 1, 100, None), (3, 1));
        // Untrusted extremes never panic and keep the total.
        let (u, s) = cputime_adjust(u64::MAX, u64::MAX, u64::MAX, fresh);
        assert_eq!(u.wrapping_add(s), u64::MAX);
        cputime_adjust(1, 1, 5, Some((u64::MAX, 1)));
        cputime_adjust(u64::MAX, 1, 5, Some((1, u64::MAX - 1)));
    }

    fn rec(pid: u32, tgid: u32) -> TaskRec {
        let mut r = decode(&Fields::new(&[0u8; TASK_SIZE]), 0).unwrap();
        r.pid = pid;
        r.tgid = tgid;
        r.present = TASK_PREV_CPUTIME;
        r
    }

    /// A thread is split with its own prev_cputime, a process with its
    /// group's and the times of its dead threads.
    #[test]
    fn threads_and_processes_use_their_own_prev() {
        let mut leader = rec(10, 10);
        (leader.utime_ns, leader.stime_ns, leader.runtime_ns) = (3, 1, 100);
        (leader.prev_utime_ns, leader.prev_stime_ns) = (60, 50);
        (leader.group_prev_utime_ns, leader.group_prev_stime_ns) = (0, 0);
        (
            leader.dead_utime_ns,
            leader.dead_stime_ns,
            leader.dead_runtime_ns,
        ) = (1, 3, 100);
        let mut other = rec(11, 10);
        (other.utime_ns, other.stime_ns, other.runtime_ns) = (0, 0, 0);
        let t = Task::thread(&leader, 0);
        assert_eq!((t.utime_ns, t.stime_ns), (60, 50));
        // (3 + 0 + 1) user and (1 + 0 + 3) system ticks over 200 ns.
        let p = Task::process(&leader, &[leader.clone(), other], 0);
        assert_eq!((p.utime_ns, p.stime_ns), (100, 100));
        assert_eq!((p.pid, p.tid), (10, 10));
    }

    #[test]
    fn changes_name_exec_reparent_and_ids() {
        let mut r = rec(7, 7);
        r.comm = b"bash".to_vec();
        (r.ppid, r.euid, r.fsuid, r.self_exec_id) = (5, 1000, 1000, 3);
        let old = Task::thread(&r, 0);
        assert_eq!(changes(&old, &old), Changes::default());
        let mut renamed = old.clone();
        renamed.comm = b"kworker/0:1-events".to_vec();
        assert_eq!(
            changes(&old, &renamed),
            Changes::default(),
            "a rename is no exec"
        );
        r.comm = b"sleep".to_vec();
        (r.ppid, r.euid, r.fsuid, r.self_exec_id) = (1, 0, 0, 4);
        r.state = 2;
        let new = Task::thread(&r, 0);
        let c = changes(&old, &new);
        let task = new.reference();
        assert_eq!(
            c.state,
            Some(StateChange {
                task: task.clone(),
                from: 'R',
                to: 'D'
            })
        );
        assert_eq!(
            c.exec,
            Some(Exec {
                task: task.clone(),
                from_comm: b"bash".to_vec(),
                to_comm: b"sleep".to_vec()
            })
        );
        assert_eq!(
            c.reparent,
            Some(Reparent {
                task: task.clone(),
                from_ppid: 5,
                to_ppid: 1
            })
        );
        let creds: Vec<_> = c.creds.iter().map(|c| (c.field, c.from, c.to)).collect();
        assert_eq!(creds, [("euid", 1000, 0), ("fsuid", 1000, 0)]);
    }

    /// `uid` and `gid` are the effective ids, as ps's; each id has its
    /// column, headed as ps heads it.
    #[test]
    fn id_columns_as_ps_names_them() {
        let mut r = rec(7, 7);
        (r.ruid, r.euid, r.suid, r.fsuid) = (1, 2, 3, 4);
        (r.rgid, r.egid, r.sgid, r.fsgid) = (5, 6, 7, 8);
        let t = Task::thread(&r, 0);
        let clock = Clock {
            ktime_ns: 0,
            wall_time: UNIX_EPOCH,
            boot_wall_ns: 0,
            mem_total_kib: 0,
        };
        let names = "uid euid ruid suid fsuid gid egid rgid sgid fsgid";
        let cols: Vec<Column> = names
            .split(' ')
            .map(|n| Column::NAMES.iter().find(|(c, _)| *c == n).unwrap().1)
            .collect();
        let cells: Vec<String> = cols
            .iter()
            .map(|c| c.cell(&t, None, clock, "", Paint(false)))
            .collect();
        assert_eq!(cells, ["2", "2", "1", "3", "4", "6", "6", "5", "7", "8"]);
        assert_eq!(
            table_heading(&cols).split_whitespace().collect::<Vec<_>>(),
            ["UID", "EUID", "RUID", "SUID", "FSUID", "GID", "EGID", "RGID", "SGID", "FSGID"]
        );
        let v = serde_json::to_value(json(&t)).unwrap();
        assert_eq!((v["uid"].as_u64(), v["gid"].as_u64()), (Some(2), Some(6)));
        assert_eq!(
            (v["ruid"].as_u64(), v["fsgid"].as_u64()),
            (Some(1), Some(8))
        );
    }
}
