//! The seq backend (every kernel from 5.8 on): its trigger programs capture
//! the event's own tasks inside the event, with a bounded fd loop
//! (bpf/seqiter.bpf.c); the seq iterators complete the rest right after
//! (session.rs). --interval ticks come from a user-space timer.

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::AsRawLibbpf;

use super::attach::{configure_completion, open_configured, select_trigger_program};
use super::session::{load_preferring_d_path, session_of, Session};
use super::{TriggerOptions, TriggerSpec, WalkOptions};
use crate::bpf::seqiter::{SeqiterSkel, SeqiterSkelBuilder};

/// Opens, configures and loads the programs; `d_path` asks for iterator
/// paths from bpf_d_path().
fn load(walk: &WalkOptions, trig: &TriggerOptions, d_path: bool) -> Result<SeqiterSkel<'static>> {
    let mut open = open_configured!(SeqiterSkelBuilder, "seqiter", "seq-iterator", walk, trig);
    select_trigger_program!(open.progs, &trig.spec);
    // Old kernels get a user-space timer instead of a perf-event program.
    if let TriggerSpec::Interval { .. } = trig.spec {
        open.progs.on_timer.set_autoload(false);
    }
    configure_completion!(open, walk, trig, d_path);
    open.load()
        .context("loading the seq-iterator BPF programs (--verbose shows the verifier log)")
}

pub fn open(walk: &WalkOptions, trig: &TriggerOptions) -> Result<Session> {
    let (skel, d_path) = load_preferring_d_path(true, |d| load(walk, trig, d))?;
    // --interval ticks come from a user-space timer: no trigger program.
    let attach = !matches!(trig.spec, TriggerSpec::Interval { .. });
    let task_prog = skel.progs.dump_task.as_libbpf_object();
    session_of!(skel, "seq", d_path, walk, trig, attach, task_prog, false)
}
