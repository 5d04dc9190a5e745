//! What the layers above the kernel boundary share: what a trigger is and
//! the records of one snapshot as a backend delivers them. The command line
//! builds these, the backends fill them, assembly reads them.

use std::path::PathBuf;
use std::time::Duration;

use crate::record::{BeginRec, EndRec, Record};

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
    /// Periodic sampling: a perf-event program , a user-space
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

/// One snapshot's records as a backend delivered them.
#[derive(Debug, Clone, Default)]
pub struct RawSnapshot {
    pub seq: u32,
    /// What fired it; None for a user-space one-shot, or when it was lost.
    pub begin: Option<BeginRec>,
    /// The in-event part's own account; None if lost or not sent (no trigger program).
    pub end: Option<EndRec>,
    /// Task, file and stack records: the event's first, then the completion's.
    pub records: Vec<Record>,
    pub decode_error: Option<String>,
    /// CLOCK_MONOTONIC at the event (or at the start of the walk), ns.
    pub ktime_ns: u64,
    /// From the event to the end of the completion.
    pub walk_ns: u64,
    /// How long the trigger program captured inside the event.
    pub in_event_ns: u64,
    /// END_* flags of the in-event part.
    pub end_flags: u32,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Records the trigger program sent through the ring buffer, begin and
    /// end included, when it says.
    pub emitted: Option<u64>,
    /// Of those, the records that arrived.
    pub received: Option<u64>,
    /// Records the completion read from the iterators (none are lost).
    pub completion_records: u64,
    /// Completed by the iterators after the event.
    pub after_event: bool,
    /// A trigger program ran: its end record was due.
    pub expects_end: bool,
    /// --interval with stacks: each CPU's latest sample, for the threads
    /// the walk found on a CPU (kinds/oncpu.rs).
    pub oncpu: Vec<crate::kinds::oncpu::OnCpuSample>,
}
