//! The open-coded backend (kernels with bpf_iter_task_new, 6.7+): its
//! trigger programs capture, inside the event and within --event-budget, the
//! event's own tasks and the tasks a COMM/--pid filter selects
//! (bpf/opencoded.bpf.c); the seq iterators complete the rest right after
//! (session.rs).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, OpenObject};

use super::attach::{
    configure_completion, configure_sampler, open_configured, parse_kernel_btf_now,
    select_trigger_program,
};
use super::completion::CommScan;
use super::programs::LoadReport;
use super::session::{load_first, session_of, IterPaths, Session};
use super::{TriggerOptions, WalkOptions};
use crate::bpf::opencoded::{OpencodedSkel, OpencodedSkelBuilder};

/// BPF_PROG_TEST_RUN of a program that takes no context, by fd.
fn test_run(prog_fd: i32) -> std::io::Result<()> {
    let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_test_run_opts with no buffers; the
    // fd belongs to a skeleton that outlives the call.
    let ret = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if ret < 0 {
        return Err(std::io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

/// Opens, configures and loads the object, its iterators taking paths
/// from where `paths` says.
fn load(
    walk: &WalkOptions,
    trig: &TriggerOptions,
    paths: IterPaths,
) -> Result<OpencodedSkel<'static>> {
    let mut open = open_configured!(OpencodedSkelBuilder, "opencoded", "open-coded", walk, trig);
    select_trigger_program!(open.progs, trig);
    configure_sampler!(open, walk, trig);
    open.progs.bare_walk.set_autoload(false);
    open.progs.find_comm.set_autoload(scans_for_comm(walk));
    open.progs.dump_task.set_autoload(!tasks_carry_files(walk));
    open.progs
        .dump_task_files
        .set_autoload(tasks_carry_files(walk));
    configure_completion!(open, walk, trig, paths);
    let task_prog = if tasks_carry_files(walk) {
        &mut open.progs.dump_task_files
    } else {
        &mut open.progs.dump_task
    };
    parse_kernel_btf_now(task_prog)?;
    set_kernel_type_ids(open.maps.rodata_data.as_deref_mut().context("no .rodata")?)?;
    super::core_btf::wait_for("opencoded");
    open.load()
        .context("loading the open-coded BPF programs (--verbose shows the verifier log)")
}

/// The kernel's BTF ids of the types bpf/base.bpf.h's KREAD() casts to
/// (its KERNEL_TYPES: one `kid_<struct>` each), for bpf_rdonly_cast().
macro_rules! set_kernel_type_ids {
    ($rodata:expr, $($field:ident),+ $(,)?) => {{
        let names = [$(stringify!($field).trim_start_matches("kid_")),+];
        let ids = super::core_btf::kernel_struct_ids("opencoded", &names)?;
        if let Some(i) = ids.iter().position(|&id| id == 0) {
            anyhow::bail!("the kernel's BTF has no struct {}", names[i]);
        }
        let mut ids = ids.into_iter();
        $( $rodata.$field = ids.next().unwrap_or(0); )+
    }};
}

fn set_kernel_type_ids(rodata: &mut crate::bpf::opencoded::types::rodata) -> Result<()> {
    set_kernel_type_ids!(
        rodata,
        kid_task_struct,
        kid_signal_struct,
        kid_cred,
        kid_mm_struct,
        kid_tty_struct,
        kid_tty_driver,
        kid_pid,
        kid_upid,
        kid_kernfs_node,
        kid_fs_struct,
        kid_dentry,
        kid_dentry_operations,
        kid_inode,
        kid_ns_common,
        kid_super_block,
        kid_file,
        kid_fdtable,
        kid_vfsmount,
        kid_socket,
        kid_socket_alloc,
        kid_sock,
        kid_net,
        kid_unix_sock,
        kid_unix_address,
        kid_tcp_sock,
        kid_udp_sock,
    );
    Ok(())
}

/// Whether the task iterator writes each process's files with it
/// (dump_task_files): one pass over every process and its fd table. A
/// filter selects a few processes, whose files iterators bound to each read
/// as cheaply, and dump_task with iter/task_file verifies ~5,000
/// instructions less (the fd loop is only iter/task_file's then).
/// A COMM query without --pid looks for its processes first (find_comm).
fn scans_for_comm(walk: &WalkOptions) -> bool {
    !walk.comms.is_empty() && walk.pids.is_empty()
}

fn tasks_carry_files(walk: &WalkOptions) -> bool {
    walk.files && walk.comms.is_empty() && walk.pids.is_empty()
}

pub fn open(walk: &WalkOptions, trig: &TriggerOptions) -> Result<Session> {
    use libbpf_rs::skel::Skel;
    let started = std::time::Instant::now();
    // This object has bpf_loop: its walk gives cwd, root and executable
    // whole, so it never asks d_path() for them (see IterPaths::choices).
    let (skel, paths, attempts) = load_first(&IterPaths::choices(walk.files, false), |p| {
        load(walk, trig, p)
    })?;
    let report = LoadReport::of("open-coded", skel.object(), started.elapsed(), attempts);
    let task_prog = if tasks_carry_files(walk) {
        skel.progs.dump_task_files.as_libbpf_object()
    } else {
        skel.progs.dump_task.as_libbpf_object()
    };
    let comm_scan = scans_for_comm(walk).then(|| comm_scan(&skel)).transpose()?;
    let mut session = session_of!(
        skel,
        "open-coded",
        paths,
        report,
        walk,
        trig,
        true,
        task_prog,
        tasks_carry_files(walk)
    )?;
    if let Some(scan) = comm_scan {
        session.completion.set_comm_scan(scan);
    }
    Ok(session)
}

/// find_comm, run with BPF_PROG_TEST_RUN, and its result read from .bss.
fn comm_scan(skel: &OpencodedSkel<'static>) -> Result<CommScan> {
    let fd = skel.progs.find_comm.as_fd().as_raw_fd();
    let bss = skel.maps.bss_data.as_deref().context("no .bss")?;
    // An address, to be Send: the .bss is a mapping libbpf keeps in place
    // as long as the object, which the session holds past its completion.
    let result = std::ptr::addr_of!(bss.comm_scan) as usize;
    Ok(CommScan {
        run: Box::new(move || {
            test_run(fd).context("looking for the COMM's processes (find_comm)")?;
            // SAFETY: `result` points into the live .bss mapping (see
            // above); the program that writes it has returned, and a
            // volatile read takes what it wrote.
            let scan = unsafe {
                std::ptr::read_volatile(
                    result as *const crate::bpf::opencoded::types::comm_scan_result,
                )
            };
            let n = (scan.n as usize).min(scan.tgids.len());
            Ok((scan.complete != 0).then(|| scan.tgids[..n].to_vec()))
        }),
    })
}

/// The bare walk (scripts/bench): (tasks, fds, ns) of the task and fd-bitmap
/// loops of an in-kernel walk, counting only. The kernel's own limit.
pub fn bare_walk() -> Result<(u64, u64, u64)> {
    let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = OpencodedSkelBuilder::default()
        .open(storage)
        .context("opening the open-coded BPF object")?;
    open.progs.on_signal.set_autoload(false);
    open.progs.on_syscall.set_autoload(false);
    open.progs.on_syscall_exit.set_autoload(false);
    open.progs.on_tracepoint.set_autoload(false);
    open.progs.on_tracefs.set_autoload(false);
    open.progs.on_uprobe.set_autoload(false);
    open.progs.on_timer.set_autoload(false);
    open.progs.on_cpu_sample.set_autoload(false);
    open.progs.dump_task.set_autoload(false);
    open.progs.dump_task_files.set_autoload(false);
    open.progs.dump_file.set_autoload(false);
    open.progs.dump_file_walk.set_autoload(false);
    open.progs.find_comm.set_autoload(false);
    let skel = open.load().context("loading the bare-walk program")?;
    test_run(skel.progs.bare_walk.as_fd().as_raw_fd()).context("running the bare walk")?;
    let bss = skel.maps.bss_data.as_deref().context("no .bss")?;
    Ok((bss.bare.tasks, bss.bare.files, bss.bare.ns))
}
