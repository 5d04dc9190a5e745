//! One interface over the two ways a snapshot is taken in the kernel:
//! `open_coded` (the trigger program walks every task itself) and `seq`
//! (seq iterators read from user space). Both deliver the same records
//! (bpf/itersnap.h) as `RawSnapshot`s.

pub mod attach;
pub mod core_btf;
pub mod events;
pub mod open_coded;
pub mod seq;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::record::{BeginRec, EndRec, Record};

/// What the user asked the kernel to include; fixed before the BPF programs load.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Exact process name (group leader's comm), at most 15 bytes.
    pub comm: Option<Vec<u8>>,
    /// Thread-group id.
    pub pid: Option<u32>,
    pub threads: bool,
    pub files: bool,
    pub stacks: bool,
}

/// The event that takes a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSpec {
    OneShot,
    Signal {
        signal: i32,
        target_pid: Option<u32>,
        target_comm: Option<Vec<u8>>,
    },
    Syscall {
        name: String,
        nr: i32,
    },
    Tracepoint {
        category: String,
        name: String,
    },
    Uprobe {
        path: PathBuf,
        symbol: String,
    },
    /// Periodic sampling: a perf-event program (open-coded), a user-space
    /// timer (seq).
    Interval {
        period: Duration,
    },
}

impl TriggerSpec {
    pub fn is_oneshot(&self) -> bool {
        matches!(self, TriggerSpec::OneShot)
    }
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
}

/// One snapshot's records as a backend delivered them.
#[derive(Debug, Clone, Default)]
pub struct RawSnapshot {
    pub seq: u32,
    /// What fired it; None for a user-space one-shot, or when it was lost.
    pub begin: Option<BeginRec>,
    /// The walk's own account (open-coded); None if lost or not sent (seq).
    pub end: Option<EndRec>,
    /// Task, file and stack records.
    pub records: Vec<Record>,
    pub decode_error: Option<String>,
    /// CLOCK_MONOTONIC at the start of the walk, ns.
    pub ktime_ns: u64,
    pub walk_ns: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Records the kernel emitted, begin and end included, when it says.
    pub emitted: Option<u64>,
    /// Taken after the event (seq backend), not inside it.
    pub after_event: bool,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Where file paths come from: the kernel's d_path() or the walk's own.
    fn paths(&self) -> &'static str {
        "built by the walk from dentries"
    }
    /// Waits up to `timeout` for snapshots and returns those completed.
    fn poll(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>>;
    /// Triggers the in-kernel guards skipped so far: (within --min-gap, walk busy).
    fn skipped(&self) -> (u64, u64);
    /// Events the kernel did not run the trigger program for (another BPF
    /// program was running on that CPU), so far.
    fn missed(&self) -> u64;
}

/// `cfg_flags` bit: paths from bpf_d_path() (iterator programs only).
pub(crate) const OPT_D_PATH: u32 = 1 << 5;

/// Flags shared with the BPF programs' `cfg_flags` (bpf/itersnap.h).
pub(crate) fn cfg_flags(opts: &WalkOptions) -> u32 {
    const FILTER_COMM_ON: u32 = 1 << 0;
    const FILTER_PID_ON: u32 = 1 << 1;
    const OPT_THREADS: u32 = 1 << 2;
    const OPT_STACKS: u32 = 1 << 3;
    const OPT_FILES: u32 = 1 << 4;
    let mut flags = 0;
    for (on, bit) in [
        (opts.comm.is_some(), FILTER_COMM_ON),
        (opts.pid.is_some(), FILTER_PID_ON),
        (opts.threads, OPT_THREADS),
        (opts.stacks, OPT_STACKS),
        (opts.files, OPT_FILES),
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

/// A C char array filled from bytes, NUL-padded (callers check the length).
pub(crate) fn c_comm(bytes: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (dst, &src) in out.iter_mut().zip(bytes.iter().take(15)) {
        *dst = src as i8;
    }
    out
}

/// The default ring buffer: big enough for a full snapshot of this system,
/// with room to spare: records per thread (/proc/loadavg) and per open fd,
/// rounded up to a power of two. Open fds are estimated from the kernel's
/// open file count (/proc/sys/fs/file-nr), but at least 32 per process:
/// forked processes share their struct files, so that count can be far
/// below the fds.
///
/// Capped where a reader on another CPU drains it during the walk (records
/// past half a buffer wake it): a big buffer is not free — setting up 64 MiB
/// costs ~100 ms, more than a walk of 5,000 processes.
pub fn default_ringbuf_size(walk: &WalkOptions, oneshot: bool) -> u32 {
    let whole = whole_snapshot_ringbuf_size(walk);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cap: u32 = match (cpus > 1, oneshot) {
        (false, _) => return whole,
        (true, true) => 8 << 20,
        (true, false) => 16 << 20,
    };
    whole.min(cap)
}

fn whole_snapshot_ringbuf_size(walk: &WalkOptions) -> u32 {
    let threads: u64 = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(10_000);
    let open_files: u64 = fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(100_000);
    // Forked fds share one struct file, so file-nr can undercount fds: allow
    // 32 per thread too (threads bound processes; no /proc readdir needed).
    let files = open_files.max(threads * 32);
    // Ring-buffer records carry an 8-byte header; paths average well under 128 bytes.
    let per_thread =
        8 + crate::record::TASK_SIZE as u64 + if walk.stacks { 8 + 16 + 8 * 20 } else { 0 };
    let per_file = if walk.files {
        8 + crate::record::FILE_HDR_SIZE as u64 + 96
    } else {
        0
    };
    let need = 2 * (threads * per_thread + files * per_file) + 64 * 1024;
    need.next_power_of_two().clamp(1 << 20, 1 << 30) as u32
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and task start times.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
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
    choice: crate::cli::BackendChoice,
    walk: &WalkOptions,
    trig: &TriggerOptions,
    btf: &dyn crate::features::HasName,
) -> Result<(Box<dyn Backend>, String)> {
    use crate::cli::BackendChoice;
    let unsupported = crate::features::open_coded_unsupported(btf);
    match (choice, unsupported) {
        (BackendChoice::Seq, _) => Ok((
            Box::new(seq::SeqBackend::new(walk, trig)?),
            "chosen with --backend seq".into(),
        )),
        (BackendChoice::OpenCoded, Some(why)) => {
            anyhow::bail!("--backend open-coded is not possible: {why}")
        }
        (BackendChoice::Auto, Some(why)) => Ok((
            Box::new(seq::SeqBackend::new(walk, trig)?),
            format!("auto: {why}"),
        )),
        (choice, None) => Ok((
            Box::new(open_coded::OpenCodedBackend::new(walk, trig)?),
            if choice == BackendChoice::Auto {
                "auto: the kernel has open-coded task iterators (bpf_iter_task_new)".into()
            } else {
                "chosen with --backend open-coded".into()
            },
        )),
    }
}
