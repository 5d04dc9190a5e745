//! The seq backend (every kernel from 5.8 on): its trigger programs capture
//! the event's own tasks inside the event, with a bounded fd loop
//! (bpf/seqiter.bpf.c); the seq iterators complete the rest right after
//! (session.rs). --interval ticks come from a user-space timer.

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::AsRawLibbpf;

use super::attach::{
    configure_completion, configure_sampler, open_configured, parse_kernel_btf_now,
    select_trigger_program,
};
use super::programs::LoadReport;
use super::session::{load_first, session_of, IterPaths, Session};
use super::{TriggerOptions, TriggerSpec, WalkOptions};
use crate::bpf::seqiter::{SeqiterSkel, SeqiterSkelBuilder};

/// Opens, configures and loads the programs, their iterators taking paths
/// from where `paths` says.
fn load(
    walk: &WalkOptions,
    trig: &TriggerOptions,
    paths: IterPaths,
) -> Result<SeqiterSkel<'static>> {
    let mut open = open_configured!(SeqiterSkelBuilder, "seqiter", "seq-iterator", walk, trig);
    select_trigger_program!(open.progs, trig);
    configure_sampler!(open, walk, trig);
    // Old kernels get a user-space timer instead of a perf-event program.
    if let TriggerSpec::Interval { .. } = trig.spec {
        open.progs.on_timer.set_autoload(false);
    }
    configure_completion!(open, walk, trig, paths);
    parse_kernel_btf_now(&mut open.progs.dump_task)?;
    super::core_btf::wait_for("seqiter");
    open.load()
        .context("loading the seq-iterator BPF programs (--verbose shows the verifier log)")
}

/// `slot_d_path`: ask d_path() for cwd, root and executable (kernels
/// without open-coded iterators: see IterPaths::choices).
pub fn open(walk: &WalkOptions, trig: &TriggerOptions, slot_d_path: bool) -> Result<Session> {
    use libbpf_rs::skel::Skel;
    let started = std::time::Instant::now();
    let (skel, paths, attempts) = load_first(&IterPaths::choices(walk.files, slot_d_path), |p| {
        load(walk, trig, p)
    })?;
    let report = LoadReport::of("seq", skel.object(), started.elapsed(), attempts);
    // --interval ticks come from a user-space timer: no trigger program.
    let attach = !matches!(trig.spec, TriggerSpec::Interval { .. });
    let task_prog = skel.progs.dump_task.as_libbpf_object();
    session_of!(skel, "seq", paths, report, walk, trig, attach, task_prog, false)
}
