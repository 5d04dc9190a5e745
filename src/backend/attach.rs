//! What both BPF objects share on the user-space side: their `.rodata`
//! configuration, which trigger program loads, and how it is attached.
//! The two skeletons have distinct Rust types with the same field and
//! program names (both come from bpf/walk.bpf.h and bpf/trigger.bpf.h), so
//! the field-by-field parts are macros and the rest plain functions.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use anyhow::{Context, Result};
use libbpf_rs::{Link, ProgramMut, UprobeOpts};

use super::{TriggerOptions, TriggerSpec};

/// Opens a skeleton (`$builder` names its builder type) and fills its
/// `.rodata` from the walk and trigger options (`$object`: its name in
/// objinfo, for the reduced CO-RE BTF). The skeleton borrows its
/// object storage for its whole life: one small allocation per run, freed
/// at exit.
macro_rules! open_configured {
    ($builder:ty, $object:expr, $what:expr, $walk:expr, $trig:expr) => {{
        let storage: &'static mut std::mem::MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
        // CO-RE against the reduced kernel BTF where it could be built.
        let mut open = match $crate::backend::core_btf::for_object($object) {
            Some(core) => <$builder>::default().open_opts(core.open_opts(), storage),
            None => <$builder>::default().open(storage),
        }
        .with_context(|| format!("opening the {} BPF object", $what))?;
        $crate::backend::attach::configure_rodata!(
            open.maps
                .rodata_data
                .as_deref_mut()
                .context("BPF object has no .rodata")?,
            $walk,
            $trig
        );
        open
    }};
}
pub(crate) use open_configured;

/// Has libbpf parse the kernel's BTF now, for the task iterator's attach
/// point, instead of inside load(): the reduced CO-RE BTF (core_btf) is
/// built on another thread meanwhile, and load() only waits for what is
/// left of it. Load would look the same attach point up.
pub fn parse_kernel_btf_now(task_iter: &mut libbpf_rs::OpenProgramMut<'_>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    task_iter
        .set_attach_target(0, Some("task".into()))
        .context("finding the task iterator in the kernel's BTF")
}

/// Fills a skeleton's `.rodata` from the walk and trigger options.
macro_rules! configure_rodata {
    ($rodata:expr, $walk:expr, $trig:expr) => {{
        let rodata = $rodata;
        let walk: &$crate::backend::WalkOptions = $walk;
        let trig: &$crate::backend::TriggerOptions = $trig;
        rodata.cfg_flags = $crate::backend::cfg_flags(walk);
        rodata.cfg_npids = walk.pids.len().min(rodata.cfg_pids.len()) as u32;
        for (slot, pid) in rodata.cfg_pids.iter_mut().zip(&walk.pids) {
            *slot = *pid;
        }
        rodata.cfg_nr_cpus = libbpf_rs::num_possible_cpus().map_or(1, |n| n as u32);
        rodata.cfg_nuids = walk.uids.len().min(rodata.cfg_uids.len()) as u32;
        for (slot, uid) in rodata.cfg_uids.iter_mut().zip(&walk.uids) {
            *slot = *uid;
        }
        rodata.cfg_states = walk.states;
        rodata.cfg_cgroup_id = walk.cgroup.unwrap_or(0);
        rodata.cfg_ncomms = walk.comms.len().min(rodata.cfg_comms.len()) as u32;
        for (slot, comm) in rodata.cfg_comms.iter_mut().zip(&walk.comms) {
            *slot = $crate::backend::c_comm(comm);
        }
        rodata.cfg_trigger_flags = $crate::backend::trigger_flags(trig);
        rodata.cfg_trigger_arg = $crate::backend::trigger_arg(&trig.spec);
        rodata.cfg_caller_pid = trig.caller_pid.unwrap_or(0);
        rodata.cfg_caller_comm =
            $crate::backend::c_comm(trig.caller_comm.as_deref().unwrap_or(&[]));
        if let $crate::backend::TriggerSpec::Signal {
            target_pid,
            target_comm,
            ..
        } = &trig.spec
        {
            rodata.cfg_target_pid = target_pid.unwrap_or(0);
            rodata.cfg_target_comm = $crate::backend::c_comm(target_comm.as_deref().unwrap_or(&[]));
        }
        rodata.cfg_min_gap_ns = trig.min_gap.as_nanos().min(u64::MAX as u128) as u64;
        rodata.cfg_max_snapshots = trig.count.unwrap_or(0);
        rodata.cfg_ringbuf_bytes = u64::from($crate::backend::ringbuf_bytes(trig.ringbuf_size));
        rodata.cfg_event_budget_ns = trig.event_budget.as_nanos().min(u64::MAX as u128) as u64;
        rodata.cfg_sock_protos = walk.sockets.protocols;
        rodata.cfg_sock_states = walk.sockets.states;
        let ports = &walk.sockets.ports;
        rodata.cfg_sock_nports = ports.len().min(rodata.cfg_sock_ports.len()) as u32;
        for (slot, port) in rodata.cfg_sock_ports.iter_mut().zip(ports) {
            *slot = *port;
        }
        let keys = walk
            .targets
            .iter()
            .flat_map(|t| t.devs.iter().map(|&dev| (dev, t.ino.unwrap_or(0))));
        let mut n = 0;
        for (i, (dev, ino)) in keys.take(rodata.cfg_hold_dev.len()).enumerate() {
            rodata.cfg_hold_dev[i] = dev;
            rodata.cfg_hold_ino[i] = ino;
            n = i + 1;
        }
        rodata.cfg_hold_n = n as u32;
        let event = &trig.event;
        rodata.cfg_event_strs = event.reads.strs;
        rodata.cfg_event_argv = event.reads.argv;
        rodata.cfg_event_addr = event.reads.addr;
        rodata.cfg_event_addrlen = event.reads.addrlen;
        rodata.cfg_event_exit = u32::from(event.exit);
        rodata.cfg_event_nargs = event.nargs;
        rodata.cfg_event_record = event.record_len;
        rodata.cfg_event_record_args = event.record_args.map_or(0, |at| at + 1);
    }};
}
pub(crate) use configure_rodata;

/// Loads only the trigger program the spec needs (none for a one-shot).
macro_rules! select_trigger_program {
    ($progs:expr, $trig:expr) => {{
        let progs = &mut $progs;
        let which = $crate::backend::attach::program_for($trig);
        progs.on_signal.set_autoload(which == Some("on_signal"));
        progs.on_syscall.set_autoload(which == Some("on_syscall"));
        progs
            .on_syscall_exit
            .set_autoload(which == Some("on_syscall_exit"));
        progs
            .on_tracepoint
            .set_autoload(which == Some("on_tracepoint"));
        progs.on_uprobe.set_autoload(which == Some("on_uprobe"));
        progs.on_tracefs.set_autoload(which == Some("on_tracefs"));
        progs.on_timer.set_autoload(which == Some("on_timer"));
    }};
}
pub(crate) use select_trigger_program;

/// Loads the on-CPU sampler (backend/sampler.rs) only when the run
/// samples with stacks, its map sized one sample per possible CPU.
macro_rules! configure_sampler {
    ($open:expr, $walk:expr, $trig:expr) => {{
        let wanted = $crate::backend::sampler::wanted($walk, $trig);
        $open.progs.on_cpu_sample.set_autoload(wanted);
        if wanted {
            let cpus = libbpf_rs::num_possible_cpus().context("counting the possible CPUs")?;
            $open
                .maps
                .oncpu_samples
                .set_max_entries(cpus.max(1) as u32)
                .context("sizing the on-CPU samples map")?;
        }
    }};
}
pub(crate) use configure_sampler;

/// Which iter/task_file program loads (paths from bpf_d_path() if
/// `$paths.files`, else from the walk; none without files), where the
/// task iterator takes cwd, root and executable from, and the ring
/// buffer's size, for either object.
macro_rules! configure_completion {
    ($open:expr, $walk:expr, $trig:expr, $paths:expr) => {{
        let files: bool = $walk.files;
        let paths: $crate::backend::session::IterPaths = $paths;
        $open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("BPF object has no .rodata")?
            .cfg_iter_d_path = u32::from(paths.slots);
        $open.progs.dump_cmdline.set_autoload($walk.cmdlines);
        $open.progs.dump_maps.set_autoload($walk.maps);
        $open.progs.dump_file.set_autoload(files && paths.files);
        $open
            .progs
            .dump_file_walk
            .set_autoload(files && !paths.files);
        $open
            .maps
            .events
            .set_max_entries($crate::backend::ringbuf_bytes($trig.ringbuf_size))
            .context("sizing the ring buffer")?;
    }};
}
pub(crate) use configure_completion;

/// The trigger program's name in bpf/trigger.bpf.h.
pub fn program_for(trig: &TriggerOptions) -> Option<&'static str> {
    match trig.spec {
        TriggerSpec::OneShot => None,
        TriggerSpec::Signal { .. } => Some("on_signal"),
        TriggerSpec::Syscall { .. } if trig.on_open_of_targets => Some("on_syscall_exit"),
        TriggerSpec::Syscall { .. } => Some("on_syscall"),
        TriggerSpec::Tracepoint { .. } if trig.tracefs => Some("on_tracefs"),
        TriggerSpec::Tracepoint { .. } => Some("on_tracepoint"),
        TriggerSpec::Uprobe { .. } => Some("on_uprobe"),
        TriggerSpec::Interval { .. } => Some("on_timer"),
    }
}

/// The trigger programs of a loaded skeleton (both skeletons name them alike).
macro_rules! trigger_programs {
    ($skel:expr) => {
        $crate::backend::attach::TriggerPrograms {
            on_signal: &$skel.progs.on_signal,
            on_syscall: &$skel.progs.on_syscall,
            on_syscall_exit: &$skel.progs.on_syscall_exit,
            on_tracepoint: &$skel.progs.on_tracepoint,
            on_tracefs: &$skel.progs.on_tracefs,
            on_uprobe: &$skel.progs.on_uprobe,
            on_timer: &$skel.progs.on_timer,
        }
    };
}
pub(crate) use trigger_programs;

/// The trigger programs of a loaded skeleton.
pub struct TriggerPrograms<'a, 'obj> {
    pub on_signal: &'a ProgramMut<'obj>,
    pub on_syscall: &'a ProgramMut<'obj>,
    pub on_syscall_exit: &'a ProgramMut<'obj>,
    pub on_tracepoint: &'a ProgramMut<'obj>,
    pub on_tracefs: &'a ProgramMut<'obj>,
    pub on_uprobe: &'a ProgramMut<'obj>,
    pub on_timer: &'a ProgramMut<'obj>,
}

/// An attached trigger: detached when dropped.
pub struct AttachedTrigger {
    _link: Link,
    /// The trigger program's fd (owned by the skeleton, which outlives this).
    prog_fd: i32,
}

impl AttachedTrigger {
    /// Times the kernel did not run the trigger program because another
    /// BPF program was running on that CPU (bpf_prog_info.recursion_misses):
    /// events lost before any guard could count them.
    pub fn missed(&self) -> u64 {
        super::programs::prog_info_of(self.prog_fd).map_or(0, |info| info.recursion_misses)
    }
}

/// A software CPU-clock perf event on `cpu` that overflows every
/// `period`: its BPF program runs from the timer interrupt, whatever that
/// CPU does. Its first overflow is a period after this call, and each
/// next one a period after that (the kernel keeps the phase).
pub fn open_clock_event(period: std::time::Duration, cpu: u32) -> Result<OwnedFd> {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: perf_event_attr is plain data; zero is its documented default.
    let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
    attr.config = sys::PERF_COUNT_SW_CPU_CLOCK as u64;
    // For the CPU clock, the sample period is in nanoseconds.
    attr.__bindgen_anon_1.sample_period = period.as_nanos().clamp(1, u64::MAX as u128) as u64;
    // SAFETY: the attr outlives the call; pid -1 + a cpu = all tasks on that CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const sys::perf_event_attr,
            -1,
            cpu as libc::c_int,
            -1,
            sys::PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        anyhow::bail!("opening a CPU-clock perf event on CPU {cpu}: {err}");
    }
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A program attached to a perf event: the link owns the event.
pub fn attach_to_perf_event(prog: &ProgramMut<'_>, fd: OwnedFd) -> Result<Link> {
    let link = prog
        .attach_perf_event(fd.as_raw_fd())
        .context("attaching to a CPU-clock perf event")?;
    // The link now owns the perf event and closes it when dropped.
    let _ = fd.into_raw_fd();
    Ok(link)
}

/// Attaches the trigger the user asked for; None for a one-shot.
pub fn attach_trigger(
    progs: TriggerPrograms<'_, '_>,
    trig: &TriggerOptions,
) -> Result<Option<AttachedTrigger>> {
    let prog_fd = match &trig.spec {
        TriggerSpec::OneShot => return Ok(None),
        TriggerSpec::Interval { .. } => progs.on_timer.as_fd().as_raw_fd(),
        TriggerSpec::Signal { .. } => progs.on_signal.as_fd().as_raw_fd(),
        TriggerSpec::Syscall { .. } if trig.on_open_of_targets => {
            progs.on_syscall_exit.as_fd().as_raw_fd()
        }
        TriggerSpec::Syscall { .. } => progs.on_syscall.as_fd().as_raw_fd(),
        TriggerSpec::Tracepoint { .. } if trig.tracefs => progs.on_tracefs.as_fd().as_raw_fd(),
        TriggerSpec::Tracepoint { .. } => progs.on_tracepoint.as_fd().as_raw_fd(),
        TriggerSpec::Uprobe { .. } => progs.on_uprobe.as_fd().as_raw_fd(),
    };
    let link = match &trig.spec {
        TriggerSpec::OneShot => return Ok(None),
        TriggerSpec::Interval { period } => {
            attach_to_perf_event(progs.on_timer, open_clock_event(*period, 0)?)?
        }
        TriggerSpec::Signal { .. } => progs
            .on_signal
            .attach()
            .context("attaching to tracepoint signal:signal_generate")?,
        TriggerSpec::Syscall { .. } if trig.on_open_of_targets => progs
            .on_syscall_exit
            .attach()
            .context("attaching to tracepoint raw_syscalls:sys_exit")?,
        TriggerSpec::Syscall { .. } => progs
            .on_syscall
            .attach()
            .context("attaching to tracepoint raw_syscalls:sys_enter")?,
        TriggerSpec::Tracepoint { category, name } if trig.tracefs => progs
            .on_tracefs
            .attach_tracepoint(
                libbpf_rs::TracepointCategory::Custom(category.clone()),
                name.as_str(),
            )
            .with_context(|| format!("attaching to tracefs tracepoint {category}:{name}"))?,
        TriggerSpec::Tracepoint { category, name } => progs
            .on_tracepoint
            .attach_raw_tracepoint(name)
            .with_context(|| format!("attaching to tracepoint {category}:{name}"))?,
        TriggerSpec::Uprobe { path, symbol } => {
            // The kernel filters by pid for us when --caller-pid is given.
            let pid = trig.caller_pid.map_or(-1, |p| p as i32);
            let opts = UprobeOpts {
                func_name: Some(symbol.clone()),
                ..UprobeOpts::default()
            };
            progs
                .on_uprobe
                .attach_uprobe_with_opts(pid, path, 0, opts)
                .with_context(|| format!("attaching a uprobe to {}:{symbol}", path.display()))?
        }
    };
    Ok(Some(AttachedTrigger {
        _link: link,
        prog_fd,
    }))
}
