//! One interface over the ways a snapshot can be taken in the kernel.
//! Every backend returns the same binary records (bpf/itersnap.h).

pub mod seq;

use std::time::SystemTime;

use anyhow::Result;

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

/// The raw result of one kernel walk.
pub struct Walk {
    pub records: Vec<u8>,
    pub wall_time: SystemTime,
    /// CLOCK_MONOTONIC at the start of the walk, ns.
    pub ktime_ns: u64,
    pub walk_ns: u64,
    pub dropped: u64,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Walks all tasks now and returns their records, stamped with `seq`.
    fn walk(&mut self, seq: u32) -> Result<Walk>;
}

/// Flags shared with the BPF programs' `cfg_flags` (bpf/itersnap.h).
pub(crate) fn cfg_flags(opts: &WalkOptions) -> u32 {
    const FILTER_COMM_ON: u32 = 1 << 0;
    const FILTER_PID_ON: u32 = 1 << 1;
    const OPT_THREADS: u32 = 1 << 2;
    const OPT_STACKS: u32 = 1 << 3;
    let mut flags = 0;
    if opts.comm.is_some() {
        flags |= FILTER_COMM_ON;
    }
    if opts.pid.is_some() {
        flags |= FILTER_PID_ON;
    }
    if opts.threads {
        flags |= OPT_THREADS;
    }
    if opts.stacks {
        flags |= OPT_STACKS;
    }
    flags
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and task start times.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
