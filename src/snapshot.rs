//! Records → one snapshot: tasks grouped into processes (or threads), files
//! and stacks attached to their task, file descriptions rendered exactly as
//! `readlink /proc/PID/fd/N` prints them, and the snapshot's completeness.

use std::collections::BTreeMap;
use std::time::SystemTime;

use std::time::{Duration, UNIX_EPOCH};

use crate::ksyms::Ksyms;
use crate::model::{RawSnapshot, TriggerSpec};
use crate::record::{
    BeginRec, FileRec, Record, StackRec, TaskRec, PATH_DELETED, PATH_DNAME, PATH_FAULT, PATH_TEXT,
    PATH_TRUNCATED,
};

/// A task involved in the event: the signal's sender or target, the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub comm: Vec<u8>,
}

impl Actor {
    fn describe(&self) -> String {
        format!("{} ({})", self.pid, crate::text::printable(&self.comm))
    }
}

/// What made the snapshot happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    OneShot,
    Signal {
        signal: i32,
        sender: Actor,
        target: Actor,
    },
    Syscall {
        name: String,
        nr: i32,
        caller: Actor,
    },
    Tracepoint {
        name: String,
        caller: Actor,
    },
    Uprobe {
        target: String,
        caller: Actor,
    },
    /// A tick of --interval.
    Timer {
        period: Duration,
    },
    /// The trigger's own record was lost (ring buffer full).
    Unknown,
}

impl Trigger {
    /// Names from the user's trigger spec, the rest from the kernel's begin_rec.
    pub fn from_event(spec: &TriggerSpec, begin: Option<&BeginRec>) -> Trigger {
        let Some(b) = begin else {
            return if spec.is_oneshot() {
                Trigger::OneShot
            } else {
                Trigger::Unknown
            };
        };
        let caller = Actor {
            pid: b.pid,
            tid: b.tid,
            comm: b.comm.clone(),
        };
        match spec {
            TriggerSpec::OneShot => Trigger::OneShot,
            TriggerSpec::Signal { .. } => Trigger::Signal {
                signal: b.arg,
                sender: caller,
                target: Actor {
                    pid: b.target_pid,
                    tid: b.target_tid,
                    comm: b.target_comm.clone(),
                },
            },
            TriggerSpec::Syscall { name, nr } => Trigger::Syscall {
                name: name.clone(),
                nr: *nr,
                caller,
            },
            TriggerSpec::Tracepoint { category, name } => Trigger::Tracepoint {
                name: format!("{category}:{name}"),
                caller,
            },
            TriggerSpec::Uprobe { path, symbol } => Trigger::Uprobe {
                target: format!("{}:{symbol}", path.display()),
                caller,
            },
            TriggerSpec::Interval { period } => Trigger::Timer { period: *period },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Trigger::OneShot => "one-shot".to_string(),
            Trigger::Signal {
                signal,
                sender,
                target,
            } => format!(
                "{} from {} to {}",
                crate::signals::name(*signal),
                sender.describe(),
                target.describe()
            ),
            Trigger::Syscall { name, caller, .. } => {
                format!("syscall {name} by {}", caller.describe())
            }
            Trigger::Tracepoint { name, caller } => {
                format!("tracepoint {name} in {}", caller.describe())
            }
            Trigger::Uprobe { target, caller } => {
                format!("uprobe {target} in {}", caller.describe())
            }
            Trigger::Timer { period } => {
                format!("every {}", crate::text::human_duration(*period))
            }
            Trigger::Unknown => "a trigger whose record was lost".to_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::OneShot => "oneshot",
            Trigger::Signal { .. } => "signal",
            Trigger::Syscall { .. } => "syscall",
            Trigger::Tracepoint { .. } => "tracepoint",
            Trigger::Uprobe { .. } => "uprobe",
            Trigger::Timer { .. } => "interval",
            Trigger::Unknown => "unknown",
        }
    }
}

/// How the kernel walk went, as the backend measured it.
#[derive(Debug, Clone)]
pub struct WalkInfo {
    pub seq: u32,
    pub trigger: Trigger,
    pub backend: &'static str,
    /// Completed by reading iterators after the event: not every task is
    /// the event's (see Capture).
    pub after_event: bool,
    pub capture: Capture,
    /// CPU the trigger fired on, when there was a trigger.
    pub cpu: Option<u32>,
    /// Wall-clock time at the start of the walk.
    pub wall_time: SystemTime,
    /// CLOCK_MONOTONIC (the kernel's ktime) at the start of the walk, ns.
    pub ktime_ns: u64,
    pub walk_ns: u64,
    /// Triggers the in-kernel guards skipped since the previous snapshot.
    pub skipped_gap: u64,
    pub skipped_busy: u64,
    /// Events the kernel did not run the trigger for since the previous
    /// snapshot (another BPF program was running on that CPU).
    pub missed: u64,
}

/// Which tasks were captured inside the event and which after, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Task records (threads) the trigger program filled inside the event.
    pub in_event: usize,
    /// Task records the completion filled after it.
    pub after_event: usize,
    /// How long the trigger program captured inside the event.
    pub in_event_ns: u64,
    /// --event-budget; 0 for a one-shot or a tick (nothing in the event).
    pub budget_ns: u64,
    /// The budget ran out before the event's part was done.
    pub budget_hit: bool,
    /// The latest task record of the completion, after the event (or the
    /// walk's start).
    pub latest_after_ns: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub info: WalkInfo,
    /// One row per process, or per thread with `--threads`; sorted by (pid, tid).
    pub rows: Vec<TaskRow>,
    pub counts: Counts,
    /// Why the snapshot is incomplete, if it is (decode errors, drops).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub processes: usize,
    pub threads: usize,
    pub files: usize,
    pub stacks: usize,
    /// Task, file and stack records in the snapshot (the event's and the
    /// completion's, merged).
    pub records: usize,
    /// Records the kernel wrote for this snapshot: through the ring buffer
    /// (begin and end records included) and through the iterators.
    pub emitted: u64,
    /// Of those, the records that arrived (emitted = received + dropped).
    pub received: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Records read from the iterators, after the event (none are lost).
    pub iterated: u64,
    pub truncated: usize,
}

impl Snapshot {
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What assembly needs besides the records.
pub struct Context<'a> {
    pub backend: &'static str,
    pub spec: &'a TriggerSpec,
    pub per_thread: bool,
    pub ksyms: Option<&'a Ksyms>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, to date kernel timestamps.
    pub wall_offset_ns: u64,
    /// --event-budget, as the trigger programs were given it.
    pub event_budget_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
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
    pub files: Vec<FileEntry>,
    pub stack: Option<Vec<Frame>>,
}

impl TaskRow {
    pub fn cpu_ns(&self) -> u64 {
        self.utime_ns.saturating_add(self.stime_ns)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub fd: i32,
    /// What `readlink /proc/PID/fd/FD` prints (bytes: paths need not be UTF-8).
    pub desc: Vec<u8>,
    pub kind: &'static str,
    pub f_flags: u32,
    pub f_mode: u32,
    pub i_mode: u32,
    pub dev: u32,
    pub ino: u64,
    pub pos: u64,
    pub size: u64,
    /// The path lost leading components to the walk's depth or buffer bound.
    pub truncated: bool,
}

impl FileEntry {
    /// lsof's access mode letter: r, w or u.
    pub fn access(&self) -> char {
        match self.f_flags & libc::O_ACCMODE as u32 {
            x if x == libc::O_RDONLY as u32 => 'r',
            x if x == libc::O_WRONLY as u32 => 'w',
            _ => 'u',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    /// `function+0xoff/0xsize [module]`, as /proc/PID/stack prints it.
    pub symbol: Option<String>,
}

const PF_KTHREAD: u32 = 0x0020_0000;

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

const SOCKFS_MAGIC: u32 = 0x534F_434B;
const PIPEFS_MAGIC: u32 = 0x5049_5045;
const ANON_INODE_FS_MAGIC: u32 = 0x0904_1934;
const NSFS_MAGIC: u32 = 0x6e73_6673;
const PIDFS_MAGIC: u32 = 0x5049_4446;
const DMA_BUF_MAGIC: u32 = 0x444d_4142;

/// lsof's TYPE column.
pub fn file_kind(i_mode: u32, magic: u32) -> &'static str {
    // pidfs inodes are S_IFREG inside, but stat(2) reports them typeless,
    // like the anon inodes they replaced.
    if magic == PIDFS_MAGIC {
        return "a_inode";
    }
    match i_mode & libc::S_IFMT {
        libc::S_IFREG => "REG",
        libc::S_IFDIR => "DIR",
        libc::S_IFCHR => "CHR",
        libc::S_IFBLK => "BLK",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "SOCK",
        libc::S_IFLNK => "LINK",
        _ if magic == ANON_INODE_FS_MAGIC || magic == PIDFS_MAGIC => "a_inode",
        _ => "unknown",
    }
}

/// `name:[ino]`, as sockets, pipes and namespaces read; by hand, not with
/// format!: most fds of a busy system are sockets and pipes.
fn with_ino(name: &[u8], ino: u64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let at = crate::text::digits_before(&mut digits, 20, ino, 10);
    let mut out = Vec::with_capacity(name.len() + 3 + digits.len() - at);
    out.extend_from_slice(name);
    out.extend_from_slice(b":[");
    out.extend_from_slice(&digits[at..]);
    out.push(b']');
    out
}

/// The text readlink shows for a file: d_path() for real paths, the
/// filesystem's d_dname() convention for sockets, pipes, anon inodes,
/// namespaces. Takes the record's path buffer and, for paths, rewrites it in
/// place: a snapshot can have 100,000 of them.
pub fn describe(rec: &mut FileRec) -> Vec<u8> {
    let mut path = std::mem::take(&mut rec.path);
    let first_len = memchr::memchr(0, &path).unwrap_or(path.len());
    // The kernel's d_path() already wrote what readlink shows.
    if rec.path_flags & PATH_TEXT != 0 {
        path.truncate(first_len);
        return path;
    }
    if rec.path_flags & PATH_DNAME != 0 {
        let first = &path[..first_len];
        let ino = rec.ino;
        return match rec.magic {
            SOCKFS_MAGIC => with_ino(b"socket", ino),
            PIPEFS_MAGIC => with_ino(b"pipe", ino),
            PIDFS_MAGIC => b"anon_inode:[pidfd]".to_vec(),
            NSFS_MAGIC => with_ino(first, ino),
            ANON_INODE_FS_MAGIC => [b"anon_inode:", first].concat(),
            DMA_BUF_MAGIC => [b"/", first, b":"].concat(),
            // simple_dname(): pseudo files of internal mounts.
            _ => [b"/", first, b" (deleted)"].concat(),
        };
    }
    // "leaf\0dir\0tmp\0" -> "/tmp/dir/leaf": drop empty components,
    // reverse the whole, then each component back.
    path.dedup_by(|a, b| *a == 0 && *b == 0);
    while path.last() == Some(&0) {
        path.pop();
    }
    if path.first() == Some(&0) {
        path.remove(0);
    }
    path.reverse();
    for component in path.split_mut(|&b| b == 0) {
        component.reverse();
    }
    for b in path.iter_mut().filter(|b| **b == 0) {
        *b = b'/';
    }
    path.insert(0, b'/');
    // A truncated path lacks its leading components: say so instead of
    // passing a suffix off as an absolute path.
    if rec.path_flags & (PATH_TRUNCATED | PATH_FAULT) != 0 && path.len() > 1 {
        path.splice(0..0, *b"...");
    } else if rec.path_flags & (PATH_TRUNCATED | PATH_FAULT) != 0 {
        path = b"...".to_vec();
    }
    if rec.path_flags & PATH_DELETED != 0 {
        path.extend_from_slice(b" (deleted)");
    }
    path
}

/// Functions through which a BPF program reaches bpf_get_task_stack().
const BPF_MACHINERY: &[&str] = &[
    "__bpf_get_stack",
    "__bpf_get_task_stack",
    "bpf_get_task_stack",
    "bpf_prog_",
    "bpf_trace_run",
    "__bpf_trace_",
    "__traceiter_",
    "trace_call_bpf",
    "bpf_dispatcher",
    "__uprobe_perf_func",
    "uprobe_dispatcher",
    "uprobe_prog_run",
    "bpf_prog_test_run",
    "bpf_overflow_handler",
];

/// The stack of the task a trigger fired in was captured from inside the
/// BPF program: drop those leading frames (and the program's own JIT code,
/// which has no symbol) so it starts where the event happened, like
/// /proc/PID/stack would.
fn trim_bpf_frames(frames: Vec<Frame>) -> Vec<Frame> {
    let is_machinery = |f: &Frame| match &f.symbol {
        Some(s) => BPF_MACHINERY.iter().any(|m| s.starts_with(m)),
        None => true,
    };
    if !frames.first().is_some_and(is_machinery) {
        return frames;
    }
    let Some(last) = frames.iter().rposition(is_machinery) else {
        return frames;
    };
    frames.into_iter().skip(last + 1).collect()
}

#[derive(Default)]
struct Process {
    threads: Vec<TaskRec>,
}

/// Builds the snapshot from a backend's records. `skipped` is what the
/// trigger guards skipped since the previous snapshot: (min-gap, busy), and
/// the events the kernel missed.
/// Turns a file record's path into its final text now, while the record
/// is fresh in the cache: a backend calls it on records that arrive while
/// the walk still runs, when its reader would otherwise wait.
pub fn settle_path(f: &mut FileRec) {
    if f.path_flags & PATH_TEXT == 0 {
        f.path = describe(f);
        f.path_flags = PATH_TEXT | (f.path_flags & (PATH_TRUNCATED | PATH_FAULT));
    }
}

fn file_entry(mut f: FileRec) -> FileEntry {
    FileEntry {
        fd: f.fd,
        desc: describe(&mut f),
        kind: file_kind(f.i_mode, f.magic),
        f_flags: f.f_flags,
        f_mode: f.f_mode,
        i_mode: f.i_mode,
        dev: f.dev,
        ino: f.ino,
        pos: f.pos,
        size: f.size,
        truncated: f.path_flags & (PATH_TRUNCATED | PATH_FAULT) != 0,
    }
}

pub fn assemble(raw: RawSnapshot, ctx: &Context<'_>, skipped: (u64, u64, u64)) -> Snapshot {
    let mut info = walk_info(&raw, ctx, skipped);
    let mut counts = record_counts(&raw);
    let problems = problems(&raw, ctx);
    let ktime_ns = raw.ktime_ns;
    let gathered = gather(raw.records, ktime_ns, &mut info.capture);
    let rows = rows(gathered, ctx, ktime_ns, &mut counts);
    Snapshot {
        info,
        rows,
        counts,
        problems,
    }
}

/// How the walk went, from the backend's account and the trigger's record.
fn walk_info(raw: &RawSnapshot, ctx: &Context<'_>, skipped: (u64, u64, u64)) -> WalkInfo {
    WalkInfo {
        seq: raw.seq,
        trigger: Trigger::from_event(ctx.spec, raw.begin.as_ref()),
        backend: ctx.backend,
        after_event: raw.after_event,
        capture: Capture {
            in_event_ns: raw.in_event_ns,
            // A tick captures nothing in its event, whatever the budget.
            budget_ns: match ctx.spec {
                TriggerSpec::Interval { .. } | TriggerSpec::OneShot => 0,
                _ if raw.expects_end => ctx.event_budget_ns,
                _ => 0,
            },
            budget_hit: raw.end_flags & crate::record::END_BUDGET_HIT != 0,
            ..Capture::default()
        },
        cpu: raw.begin.as_ref().map(|b| b.cpu),
        // Kernel timestamps are untrusted: no overflow, whatever they say.
        wall_time: UNIX_EPOCH
            .checked_add(Duration::from_nanos(
                raw.ktime_ns.saturating_add(ctx.wall_offset_ns),
            ))
            .unwrap_or(UNIX_EPOCH),
        ktime_ns: raw.ktime_ns,
        walk_ns: raw.walk_ns,
        skipped_gap: skipped.0,
        skipped_busy: skipped.1,
        missed: skipped.2,
    }
}

/// The record accounting; the rows' counts are added as they are built.
fn record_counts(raw: &RawSnapshot) -> Counts {
    // Without a trigger program (a one-shot, a user-space tick) every
    // record came from the iterators.
    let iterated = match raw.emitted {
        Some(_) => raw.completion_records,
        None => raw.records.len() as u64,
    };
    Counts {
        dropped: raw.dropped,
        records: raw.records.len(),
        emitted: raw.emitted.unwrap_or(0).saturating_add(iterated),
        received: raw
            .received
            .unwrap_or(raw.emitted.unwrap_or(0).saturating_sub(raw.dropped))
            .saturating_add(iterated),
        iterated,
        ..Counts::default()
    }
}

/// Records sorted by what they belong to.
struct Gathered {
    procs: BTreeMap<u32, Process>,
    files: BTreeMap<u32, Vec<FileEntry>>,
    stacks: BTreeMap<u32, StackRec>,
}

/// Tasks by process, files by process, stacks by thread; counts in
/// `capture` which tasks the event captured and which came after.
fn gather(records: Vec<Record>, ktime_ns: u64, capture: &mut Capture) -> Gathered {
    let mut procs: BTreeMap<u32, Process> = BTreeMap::new();
    let mut files: BTreeMap<u32, Vec<FileEntry>> = BTreeMap::new();
    let mut stacks: BTreeMap<u32, StackRec> = BTreeMap::new();
    // A process's files arrive one after another: gather each run before
    // touching the map, instead of a map lookup per file.
    let mut run: Option<(u32, Vec<FileEntry>)> = None;
    let mut end_run = |run: &mut Option<(u32, Vec<FileEntry>)>| {
        if let Some((pid, mut list)) = run.take() {
            files.entry(pid).or_default().append(&mut list);
        }
    };
    for rec in records {
        match rec {
            Record::Task(t) => {
                if t.in_event() {
                    capture.in_event += 1;
                } else {
                    capture.after_event += 1;
                    capture.latest_after_ns = capture
                        .latest_after_ns
                        .max(t.taken_ns.saturating_sub(ktime_ns));
                }
                procs.entry(t.tgid).or_default().threads.push(t)
            }
            Record::File(f) => {
                if run.as_ref().is_none_or(|(pid, _)| *pid != f.pid) {
                    end_run(&mut run);
                    run = Some((f.pid, Vec::with_capacity(16)));
                }
                if let Some((_, list)) = run.as_mut() {
                    list.push(file_entry(f));
                }
            }
            // The first of a thread's stacks: the event's.
            Record::Stack(s) => {
                stacks.entry(s.pid).or_insert(s);
            }
            Record::Begin(_) | Record::End(_) => {}
        }
    }
    end_run(&mut run);
    Gathered {
        procs,
        files,
        stacks,
    }
}

/// One row per process (or per thread), with its files and stack.
fn rows(g: Gathered, ctx: &Context<'_>, ktime_ns: u64, counts: &mut Counts) -> Vec<TaskRow> {
    let Gathered {
        procs,
        mut files,
        mut stacks,
    } = g;
    let ksyms = ctx.ksyms;
    let mut rows = Vec::with_capacity(procs.len());
    for (tgid, mut proc) in procs {
        // Stable: of two records of one thread, the event's (first) stays.
        proc.threads.sort_by_key(|t| t.pid);
        proc.threads.dedup_by_key(|t| t.pid);
        let Some(leader) = proc
            .threads
            .iter()
            .find(|t| t.pid == tgid)
            .or(proc.threads.first())
            .cloned()
        else {
            continue;
        };
        counts.processes += 1;
        counts.threads += proc.threads.len();

        let mut open_files: Vec<FileEntry> = files.remove(&tgid).unwrap_or_default();
        open_files.sort_by_key(|f| f.fd);
        open_files.dedup_by_key(|f| f.fd);
        counts.files += open_files.len();
        counts.truncated += open_files.iter().filter(|f| f.truncated).count();

        let mut stack_of = |pid: u32| {
            stacks.remove(&pid).map(|s| {
                counts.stacks += 1;
                let frames: Vec<Frame> = s
                    .ips
                    .iter()
                    .map(|&addr| Frame {
                        addr,
                        symbol: ksyms.and_then(|k| k.describe(addr)),
                    })
                    .collect();
                trim_bpf_frames(frames)
            })
        };
        let row =
            |t: &TaskRec, (utime_ns, stime_ns)| task_row(t, tgid, ktime_ns, utime_ns, stime_ns);

        if ctx.per_thread {
            for t in &proc.threads {
                let mut r = row(t, cputime_adjust(t.utime_ns, t.stime_ns, t.runtime_ns));
                r.stack = stack_of(t.pid);
                if t.pid == tgid {
                    r.files = std::mem::take(&mut open_files);
                }
                rows.push(r);
            }
        } else {
            // Thread-group totals as /proc/PID/stat: live threads plus the dead.
            // Saturating: the counters come from the kernel, untrusted.
            let sum =
                |f: fn(&TaskRec) -> u64| proc.threads.iter().map(f).fold(0u64, u64::saturating_add);
            let mut r = row(
                &leader,
                cputime_adjust(
                    sum(|t| t.utime_ns).saturating_add(leader.dead_utime_ns),
                    sum(|t| t.stime_ns).saturating_add(leader.dead_stime_ns),
                    sum(|t| t.runtime_ns).saturating_add(leader.dead_runtime_ns),
                ),
            );
            r.tid = tgid;
            r.stack = stack_of(leader.pid);
            r.files = open_files;
            rows.push(r);
        }
    }
    rows
}

/// A task's row, without its files and stack.
fn task_row(t: &TaskRec, tgid: u32, ktime_ns: u64, utime_ns: u64, stime_ns: u64) -> TaskRow {
    TaskRow {
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
        files: Vec::new(),
        stack: None,
    }
}

/// Why the snapshot is incomplete, if it is.
fn problems(raw: &RawSnapshot, ctx: &Context<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(e) = &raw.decode_error {
        problems.push(e.clone());
    }
    if raw.dropped > 0 {
        problems.push(format!(
            "{} records dropped: the ring buffer was full (see --ringbuf-size)",
            raw.dropped
        ));
    }
    if raw.begin.is_none() && !ctx.spec.is_oneshot() {
        problems.push("the trigger's record was lost".into());
    }
    match &raw.end {
        Some(end) if end.truncated_fds > 0 => problems.push(format!(
            "{} fd tables were larger than the scan limit: their highest fds are missing",
            end.truncated_fds
        )),
        None if raw.expects_end => problems.push("the end record was lost".into()),
        _ => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &[u8], flags: u16, magic: u32) -> FileRec {
        FileRec {
            seq: 0,
            pid: 1,
            fd: 3,
            f_flags: 0,
            f_mode: 0,
            i_mode: 0,
            magic,
            dev: 0,
            path_flags: flags,
            ino: 42,
            pos: 0,
            size: 0,
            path: path.to_vec(),
        }
    }

    #[test]
    fn paths_read_like_readlink() {
        assert_eq!(describe(&mut file(b"f\0tmp\0", 0, 0)), b"/tmp/f");
        assert_eq!(describe(&mut file(b"", 0, 0)), b"/");
        assert_eq!(
            describe(&mut file(b"f\0d9\0", PATH_TRUNCATED, 0)),
            b".../d9/f"
        );
        assert_eq!(
            describe(&mut file(b"/tmp/x (deleted)\0", PATH_TEXT, 0)),
            b"/tmp/x (deleted)"
        );
        assert_eq!(
            describe(&mut file(b"x\0", PATH_DELETED, 0)),
            b"/x (deleted)".to_vec()
        );
        assert_eq!(
            describe(&mut file(b"dentry\0", PATH_DNAME, SOCKFS_MAGIC)),
            b"socket:[42]"
        );
        assert_eq!(
            describe(&mut file(b"[eventfd]\0", PATH_DNAME, ANON_INODE_FS_MAGIC)),
            b"anon_inode:[eventfd]"
        );
        assert_eq!(
            describe(&mut file(b"net\0", PATH_DNAME, NSFS_MAGIC)),
            b"net:[42]"
        );
        for ino in [0, 7, 1234567890, u64::MAX] {
            assert_eq!(with_ino(b"pipe", ino), format!("pipe:[{ino}]").as_bytes());
        }
    }

    #[test]
    fn bpf_frames_are_trimmed() {
        let f = |s: Option<&str>| Frame {
            addr: 1,
            symbol: s.map(String::from),
        };
        let frames = vec![
            f(Some("__bpf_get_stack+0x48b/0x4d0")),
            f(None),
            f(Some("bpf_trace_run2+0xf2/0x1b0")),
            f(Some("__traceiter_sched_process_exit+0x30/0x50")),
            f(Some("do_exit+0x450/0xab0")),
            f(Some("do_group_exit+0x29/0xb0")),
        ];
        let kept: Vec<_> = trim_bpf_frames(frames)
            .into_iter()
            .map(|f| f.symbol.unwrap())
            .collect();
        assert_eq!(kept, ["do_exit+0x450/0xab0", "do_group_exit+0x29/0xb0"]);
        let plain = vec![f(Some("do_nanosleep+0x1/0x2")), f(None)];
        assert_eq!(trim_bpf_frames(plain.clone()), plain);
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
