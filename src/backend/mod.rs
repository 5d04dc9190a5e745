//! One interface over the two backends. Both capture inside the event what
//! it is about, within --event-budget, and complete the snapshot right
//! after with seq iterators (session.rs); they differ in what the trigger
//! program reaches in the event: `open_coded` (6.7+) also the tasks a
//! filter selects, `seq` (5.8+) the event's own tasks. Both deliver the
//! same records (bpf/itersnap.h) as `RawSnapshot`s.

pub mod attach;
pub mod completion;
pub mod core_btf;
pub mod events;
pub mod open_coded;
pub mod programs;
pub mod sampler;
pub mod seq;
pub mod session;

use crate::kinds::holds::Target;
use crate::kinds::sockets::SocketFilter;
use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;

pub use crate::model::{RawSnapshot, TriggerSpec};

/// Which backend takes snapshots (--backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// open-coded where the kernel has bpf_iter_task_new (6.7+), else seq
    Auto,
    /// inside the event, also the tasks a filter selects (6.7+)
    OpenCoded,
    /// inside the event, the event's own tasks (5.8+)
    Seq,
}

/// What the user asked the kernel to include; fixed before the BPF programs load.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Exact process names (a group leader's, as /proc shows it), any of
    /// them (at most PIDS_MAX and COMMS_MAX of each); empty: no filter.
    pub comms: Vec<Vec<u8>>,
    /// Thread-group ids.
    pub pids: Vec<u32>,
    /// --user: effective uids of processes (at most UIDS_MAX).
    pub uids: Vec<u32>,
    /// --task-state: 1 << the index of each state letter in "RSDTtXZPI"
    /// (task::STATE_LETTERS); 0: every state.
    pub states: u32,
    /// --cgroup: the cgroup's id (its directory's inode on cgroup2).
    pub cgroup: Option<u64>,
    pub threads: bool,
    pub files: bool,
    pub stacks: bool,
    /// --activity: each task's syscall (kinds/activity.rs).
    pub activity: bool,
    /// --ustacks: each task's user stack (kinds/ustacks.rs).
    pub ustacks: bool,
    /// --port, --proto, --state: only the sockets they select.
    pub sockets: SocketFilter,
    /// Read command lines (the kernel has bpf_copy_from_user_task, 5.18+).
    pub cmdlines: bool,
    /// The command-line iterator only unwinds user stacks (--folded):
    /// command lines are not read.
    pub skip_cmdline_text: bool,
    /// --maps: read each process's mapped files (iter/task_vma, 5.12+).
    pub maps: bool,
    /// --file, --mount: only the fds and mappings of these files (at most
    /// holds::TARGETS_MAX).
    pub targets: Vec<Target>,
}

/// The trigger and its in-kernel guards.
#[derive(Debug, Clone)]
pub struct TriggerOptions {
    pub spec: TriggerSpec,
    pub caller_pid: Option<u32>,
    pub caller_comm: Option<Vec<u8>>,
    /// The kernel stops taking snapshots after this many.
    pub count: Option<u64>,
    pub min_gap: Duration,
    /// Ring buffer bytes (a power of two, a multiple of the page size).
    pub ringbuf_size: u32,
    /// The longest a trigger program captures inside the event.
    pub event_budget: Duration,
    /// An open syscall with --file or --mount: fire as it returns, only
    /// when the fd it opened is one of theirs (`on_syscall_exit`).
    pub on_open_of_targets: bool,
    /// A tracepoint that is tracefs's only (no raw tracepoint of its name:
    /// syscalls:*): a perf tracepoint program (`on_tracefs`).
    pub tracefs: bool,
    /// What the trigger reads inside the event for its details, and what
    /// names them.
    pub event: crate::kinds::event::Setup,
}

/// The default --event-budget: short enough that the worst latency
/// itersnap adds stays under 2 ms, long enough for the event's own tasks
/// with a few thousand fds (a file record costs ~0.5 µs).
pub const DEFAULT_EVENT_BUDGET: Duration = Duration::from_millis(1);

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Where file paths come from: the kernel's d_path() or the walk's own.
    fn paths(&self) -> &'static str {
        "built by the walk from dentries"
    }
    /// What was loaded into the kernel (--verbose, tests, scripts/bench).
    fn load_report(&self) -> Option<&programs::LoadReport> {
        None
    }
    /// A one-shot taken: the next poll takes another, with what is loaded
    /// (a server answers each query so).
    fn rewind(&mut self) {}
    /// Binds the iterators to one process, or to none: Ok(false) where the
    /// kernel cannot (a server's `--pid P` on programs loaded without it).
    fn bind_to(&mut self, pid: Option<u32>) -> Result<bool> {
        Ok(pid.is_none())
    }
    /// Waits up to `timeout` for snapshots and returns those completed.
    fn poll(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>>;
    /// Triggers the in-kernel guards skipped so far: (within --min-gap, walk busy).
    fn skipped(&self) -> (u64, u64);
    /// Events the kernel did not run the trigger program for (another BPF
    /// program was running on that CPU), so far.
    fn missed(&self) -> u64;
    /// How often the on-CPU samplers ran and for how long (--interval with
    /// stacks), as the kernel counts it.
    fn sampler_runs(&self) -> Option<programs::ProgramRuns> {
        None
    }
}

/// Flags shared with the BPF programs' `cfg_flags` (bpf/itersnap.h).
pub(crate) fn cfg_flags(opts: &WalkOptions) -> u32 {
    const FILTER_COMM_ON: u32 = 1 << 0;
    const FILTER_PID_ON: u32 = 1 << 1;
    const OPT_THREADS: u32 = 1 << 2;
    const OPT_STACKS: u32 = 1 << 3;
    const OPT_FILES: u32 = 1 << 4;
    const FILTER_SOCK_ON: u32 = 1 << 5;
    const FILTER_HOLD_ON: u32 = 1 << 6;
    const FILTER_USER_ON: u32 = 1 << 7;
    const FILTER_STATE_ON: u32 = 1 << 8;
    const FILTER_CGROUP_ON: u32 = 1 << 9;
    const OPT_ACTIVITY: u32 = 1 << 10;
    const OPT_USTACKS: u32 = 1 << 11;
    const OPT_NO_CMDLINE: u32 = 1 << 12;
    let mut flags = 0;
    for (on, bit) in [
        (!opts.comms.is_empty(), FILTER_COMM_ON),
        (!opts.pids.is_empty(), FILTER_PID_ON),
        (opts.threads, OPT_THREADS),
        (opts.stacks, OPT_STACKS),
        (opts.files, OPT_FILES),
        (opts.sockets.is_on(), FILTER_SOCK_ON),
        (!opts.targets.is_empty(), FILTER_HOLD_ON),
        (!opts.uids.is_empty(), FILTER_USER_ON),
        (opts.states != 0, FILTER_STATE_ON),
        (opts.cgroup.is_some(), FILTER_CGROUP_ON),
        (opts.activity, OPT_ACTIVITY),
        (opts.ustacks, OPT_USTACKS),
        (opts.skip_cmdline_text, OPT_NO_CMDLINE),
    ] {
        if on {
            flags |= bit;
        }
    }
    flags
}

/// Flags shared with the trigger programs' `cfg_trigger_flags` (bpf/trigger.bpf.h).
pub(crate) fn trigger_flags(t: &TriggerOptions) -> u32 {
    const TRIG_CALLER_PID: u32 = 1 << 0;
    const TRIG_CALLER_COMM: u32 = 1 << 1;
    const TRIG_TARGET_PID: u32 = 1 << 2;
    const TRIG_TARGET_COMM: u32 = 1 << 3;
    let mut flags = 0;
    if t.caller_pid.is_some() {
        flags |= TRIG_CALLER_PID;
    }
    if t.caller_comm.is_some() {
        flags |= TRIG_CALLER_COMM;
    }
    if let TriggerSpec::Signal {
        target_pid,
        target_comm,
        ..
    } = &t.spec
    {
        if target_pid.is_some() {
            flags |= TRIG_TARGET_PID;
        }
        if target_comm.is_some() {
            flags |= TRIG_TARGET_COMM;
        }
    }
    flags
}

/// The number the trigger program compares with (signal or syscall).
pub(crate) fn trigger_arg(spec: &TriggerSpec) -> i32 {
    match spec {
        TriggerSpec::Signal { signal, .. } => *signal,
        TriggerSpec::Syscall { nr, .. } => *nr,
        _ => 0,
    }
}

/// How many processes --pid names, and how many names a COMM filter
/// holds, at most (select.bpf.h's SELECT_PIDS_MAX, task.bpf.h's
/// TASK_NAMES_MAX).
pub const PIDS_MAX: usize = 16;
pub const COMMS_MAX: usize = 8;
pub const UIDS_MAX: usize = 8;

/// A C char array filled from bytes, NUL-padded and NUL-terminated
/// (callers check the length).
pub(crate) fn c_comm<const N: usize>(bytes: &[u8]) -> [i8; N] {
    let mut out = [0i8; N];
    for (dst, &src) in out.iter_mut().zip(bytes.iter().take(N.saturating_sub(1))) {
        *dst = src as i8;
    }
    out
}

/// The default ring buffer: room for what a trigger program can capture
/// inside the event within its budget, twice over. A record costs the walk
/// at least ~300 ns and takes at most a few hundred bytes (a task record is
/// 256, a file record 64 and its path, usually short): 2 bytes per ns of
/// budget is ample, up to 64 MiB. A one-shot or a tick captures nothing in the
/// event.
pub fn default_ringbuf_size(budget: Duration, oneshot: bool) -> u32 {
    if oneshot {
        return 4096;
    }
    // Capped: setting up a big buffer is not free (64 MiB: ~100 ms), and
    // what does not fit is completed after the event anyway.
    let need = budget.as_nanos().saturating_mul(2).min(64 << 20) as u64;
    need.next_power_of_two().clamp(1 << 20, 64 << 20) as u32
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and task start times.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_BOOTTIME: the monotonic clock and the time spent suspended.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Rounds a requested ring-buffer size to what the kernel accepts.
pub fn ringbuf_bytes(requested: u32) -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
    requested.max(page).next_power_of_two()
}

/// Opens the backend the user chose, or the one `auto` picks; returns it and
/// the reason it was picked.
pub fn open(
    choice: BackendChoice,
    walk: &WalkOptions,
    trig: &TriggerOptions,
    btf: &dyn crate::features::HasName,
) -> Result<(Box<dyn Backend>, String)> {
    let unsupported = crate::features::open_coded_unsupported(btf);
    // Where the kernel has no open-coded iterators, its verifier may still
    // let iterators give d_path() a task's cwd, root and executable.
    let slot_d_path = unsupported.is_some();
    match (choice, unsupported) {
        (BackendChoice::Seq, _) => Ok((
            Box::new(seq::open(walk, trig, slot_d_path)?),
            "chosen with --backend seq".into(),
        )),
        (BackendChoice::OpenCoded, Some(why)) => {
            anyhow::bail!("--backend open-coded is not possible: {why}")
        }
        (BackendChoice::Auto, Some(why)) => Ok((
            Box::new(seq::open(walk, trig, slot_d_path)?),
            format!("auto: {why}"),
        )),
        (choice, None) => Ok((
            Box::new(open_coded::open(walk, trig)?),
            if choice == BackendChoice::Auto {
                "auto: the kernel has open-coded task iterators (bpf_iter_task_new)".into()
            } else {
                "chosen with --backend open-coded".into()
            },
        )),
    }
}
