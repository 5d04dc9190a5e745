//! `itersnap check`: what this kernel supports, asked of the kernel itself
//! (BTF look-ups, libbpf's trial loads), for exactly the helpers, kfuncs,
//! program types and iterator targets that itersnap's embedded BPF objects
//! use (src/objinfo.rs); and which backend `auto` picks for each mode, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use libbpf_rs::libbpf_sys as sys;
use serde_json::json;

use crate::features::{self, KernelBtf};
use crate::objinfo;

/// One answer: what, whether, and how we know.
#[derive(Debug, Clone)]
pub struct Probe {
    pub group: &'static str,
    pub name: String,
    pub ok: bool,
    pub source: String,
}

/// The backend `auto` would use for one mode of itersnap, and how that
/// backend takes a snapshot there: what it captures inside the event, and
/// how the rest is completed.
#[derive(Debug, Clone)]
pub struct ModeChoice {
    pub mode: &'static str,
    pub backend: Option<&'static str>,
    pub why: String,
    pub in_event: String,
    pub completion: String,
}

fn event_tasks(mode: &str) -> &'static str {
    if mode == "--on-signal" {
        "the signal's sender and target"
    } else {
        "the task that caused the event"
    }
}

/// What the trigger programs of `backend` capture inside the event of
/// `mode`, and how the snapshot is completed (bpf/trigger.bpf.h).
fn capture_plan(mode: &str, backend: Option<&str>) -> (String, String) {
    const ITERATORS: &str = "seq iterators iter/task and iter/task_file read right after, \
                             preemptibly (the kernel reschedules between tasks)";
    match (mode, backend) {
        (_, None) => ("nothing".into(), "none".into()),
        ("one-shot", Some("open-coded")) => (
            "nothing: there is no event whose moment to keep".into(),
            "every task: iter/task read by itersnap, each process's files written with it \
             (bpf_for), the kernel rescheduling between tasks; iter/task_file for what one \
             task's turn cannot hold"
                .into(),
        ),
        ("one-shot", _) => (
            "nothing: there is no event whose moment to keep".into(),
            format!("every task: {ITERATORS}"),
        ),
        ("--interval", Some("open-coded")) => (
            "nothing: a tick is not a moment (a perf_event program only reports it)".into(),
            format!("every task: {ITERATORS}"),
        ),
        ("--interval", Some(_)) => (
            "nothing: the tick comes from a user-space timer".into(),
            format!("every task: {ITERATORS}"),
        ),
        (_, Some("open-coded")) => (
            format!(
                "within --event-budget: {}, then the tasks a COMM/--pid filter selects \
                 ({}), every fd (bpf_for), paths whole (bpf_loop)",
                event_tasks(mode),
                if matches!(mode, "--on-signal" | "--on-syscall") {
                    "--pid's by bpf_task_from_pid and its threads, a COMM's by bpf_for_each task"
                } else {
                    "bpf_for_each task"
                }
            ),
            format!(
                "the rest: {ITERATORS}; none needed when the filtered walk ended within the budget"
            ),
        ),
        (_, Some(_)) => (
            format!(
                "within --event-budget: {}, the first 256 fds of each and paths up to 64 \
                 components (bounded loops: bpf_for needs 6.4, bpf_loop 5.17); a filter's \
                 other tasks only after (the open-coded task iterator needs 6.7)",
                event_tasks(mode)
            ),
            format!("the rest: {ITERATORS}"),
        ),
    }
}

pub struct Report {
    pub kernel: String,
    pub probes: Vec<Probe>,
    pub modes: Vec<ModeChoice>,
    pub can_run: bool,
    /// `itersnap serve` at the command line's socket, if the caller looked.
    pub server: Option<ServerStatus>,
}

/// Whether a server answers the command line's one-shots.
pub struct ServerStatus {
    pub socket: String,
    /// Ok(what it holds) or Err(why none answers).
    pub answer: Result<String, String>,
}

/// libbpf's trial load of a minimal program of this type (its log silenced
/// with the rest of libbpf's output).
fn prog_type_loads(prog_type: sys::bpf_prog_type) -> Option<bool> {
    // SAFETY: a plain probe; libbpf allocates and frees everything itself.
    match unsafe { sys::libbpf_probe_bpf_prog_type(prog_type, std::ptr::null()) } {
        1 => Some(true),
        0 => Some(false),
        _ => None, // libbpf cannot probe this type
    }
}

fn map_type_works(map_type: sys::bpf_map_type) -> bool {
    // SAFETY: as above.
    unsafe { sys::libbpf_probe_bpf_map_type(map_type, std::ptr::null()) == 1 }
}

fn helper_loads(prog_type: sys::bpf_prog_type, helper: u32) -> Option<bool> {
    // SAFETY: as above.
    match unsafe { sys::libbpf_probe_bpf_helper(prog_type, helper, std::ptr::null()) } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// The program type libbpf gives a SEC() name, for the types itersnap uses.
fn section_prog_type(section: &str) -> Option<(sys::bpf_prog_type, &'static str)> {
    let prefix = section.split('/').next().unwrap_or(section);
    Some(match prefix {
        "iter" | "tp_btf" => (sys::BPF_PROG_TYPE_TRACING, "tracing"),
        "raw_tp" => (sys::BPF_PROG_TYPE_RAW_TRACEPOINT, "raw_tracepoint"),
        "perf_event" => (sys::BPF_PROG_TYPE_PERF_EVENT, "perf_event"),
        "uprobe" | "kprobe" => (sys::BPF_PROG_TYPE_KPROBE, "kprobe (uprobe)"),
        "syscall" => (sys::BPF_PROG_TYPE_SYSCALL, "syscall"),
        _ => return None,
    })
}

/// Helper numbers → names, from the running kernel's own enum bpf_func_id.
fn helper_names(btf: &KernelBtf) -> BTreeMap<u32, String> {
    btf.enum_values("bpf_func_id")
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix("BPF_FUNC_")?.to_string();
            Some((u32::try_from(value).ok()?, format!("bpf_{name}")))
        })
        .collect()
}

pub fn build() -> Report {
    let release = features::kernel_release().unwrap_or_else(|| "unknown".into());
    let mut found = Probes::default();
    let base = kernel_probes(&mut found, &release);
    let objects = objinfo::all();
    let btf = base.btf.as_ref();
    let prog_ok = program_types(&mut found, &objects, base.privileged, btf.is_some());
    let attach_ok = attach_points(&mut found, &objects, btf);
    let kfuncs_ok = kfuncs(&mut found, &objects, btf);
    helpers(&mut found, &objects, btf, base.privileged);
    let modes = mode_choices(&base, &prog_ok, &attach_ok, &kfuncs_ok);
    let can_run = modes[0].backend.is_some();
    Report {
        kernel: release,
        probes: found.list,
        modes,
        can_run,
        server: None,
    }
}

/// The probes as they are found, grouped.
#[derive(Default)]
struct Probes {
    list: Vec<Probe>,
}

impl Probes {
    fn add(&mut self, group: &'static str, name: String, ok: bool, source: String) {
        self.list.push(Probe {
            group,
            name,
            ok,
            source,
        })
    }
}

/// What every mode needs: a recent enough kernel, BTF, privilege, a ring buffer.
struct Base {
    version_ok: bool,
    btf: Option<KernelBtf>,
    privileged: bool,
    ringbuf: bool,
}

fn kernel_probes(out: &mut Probes, release: &str) -> Base {
    let version = features::kernel_version();
    let version_ok = version.is_some_and(|v| v >= (5, 8));
    out.add(
        "kernel",
        format!("Linux {release}"),
        version_ok,
        "uname(2); itersnap needs 5.8 or later".into(),
    );
    let btf = KernelBtf::load().ok();
    out.add(
        "kernel",
        "BTF".into(),
        btf.is_some(),
        format!("{} parsed", features::VMLINUX_BTF),
    );
    let privileged = features::require_privilege().is_ok();
    out.add(
        "kernel",
        "privilege to load BPF".into(),
        privileged,
        "CapEff of this process: CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN".into(),
    );
    let ringbuf = privileged && map_type_works(sys::BPF_MAP_TYPE_RINGBUF);
    out.add(
        "maps",
        "ring buffer".into(),
        ringbuf,
        "libbpf trial map create (5.8+)".into(),
    );

    Base {
        version_ok,
        btf,
        privileged,
        ringbuf,
    }
}

/// Program types of every program we ship: trial loads where libbpf can.
fn program_types(
    out: &mut Probes,
    objects: &[objinfo::ObjectInfo],
    privileged: bool,
    btf_present: bool,
) -> BTreeMap<String, bool> {
    // Program types and attach points of every program we ship.
    let mut types_seen = BTreeSet::new();
    let mut prog_ok: BTreeMap<String, bool> = BTreeMap::new();
    for obj in objects {
        for p in &obj.programs {
            let Some((ty, ty_name)) = section_prog_type(&p.section) else {
                continue;
            };
            if types_seen.insert(ty_name) {
                // A tracing program cannot load without a BTF attach target,
                // so libbpf's generic trial load says no: the attach points
                // and iterator targets below are the real test.
                let probed = if ty == sys::BPF_PROG_TYPE_TRACING {
                    None
                } else {
                    privileged.then(|| prog_type_loads(ty)).flatten()
                };
                let (ok, source) = match probed {
                    Some(ok) => (ok, "libbpf trial load".to_string()),
                    None => (
                        btf_present,
                        "kernel BTF present (tracing programs load against it)".to_string(),
                    ),
                };
                out.add("program types", ty_name.to_string(), ok, source);
                prog_ok.insert(ty_name.to_string(), ok);
            }
        }
    }
    prog_ok
}

/// tp_btf attach points and iterator targets, from the kernel's BTF.
fn attach_points(
    out: &mut Probes,
    objects: &[objinfo::ObjectInfo],
    btf: Option<&KernelBtf>,
) -> BTreeMap<String, bool> {
    let has = |name: &str| btf.is_some_and(|b| b.has(name));
    let mut attach_ok: BTreeMap<String, bool> = BTreeMap::new();
    for obj in objects {
        for p in &obj.programs {
            if let Some(target) = p.section.strip_prefix("tp_btf/") {
                if attach_ok.contains_key(&p.section) {
                    continue;
                }
                let ok = has(&format!("btf_trace_{target}"));
                out.add(
                    "attach points",
                    format!("tracepoint {target} (tp_btf)"),
                    ok,
                    format!("BTF typedef btf_trace_{target}"),
                );
                attach_ok.insert(p.section.clone(), ok);
            }
            if let Some(target) = p.section.strip_prefix("iter/") {
                if attach_ok.contains_key(&p.section) {
                    continue;
                }
                let ok = has(&format!("bpf_iter__{target}"));
                out.add(
                    "iterator targets",
                    format!("iter/{target}"),
                    ok,
                    format!("BTF struct bpf_iter__{target}"),
                );
                attach_ok.insert(p.section.clone(), ok);
            }
        }
    }
    // What the views that need more than the walk find here.
    // Enum members are no types: asked of the helper list, by name.
    let cmdlines = btf.is_some_and(|b| {
        helper_names(b)
            .values()
            .any(|n| n == "bpf_copy_from_user_task")
    });
    out.add(
        "views",
        "command lines (iter.s/task, 5.18+)".into(),
        cmdlines,
        "BTF enum bpf_func_id".into(),
    );
    let activity = btf.is_some_and(|b| helper_names(b).values().any(|n| n == "bpf_task_pt_regs"));
    out.add(
        "views",
        "--activity (bpf_task_pt_regs, 5.15+)".into(),
        activity,
        "BTF enum bpf_func_id".into(),
    );
    out.add(
        "views",
        "--ustacks of other tasks (5.18+)".into(),
        cmdlines,
        "bpf_copy_from_user_task in BTF enum bpf_func_id".into(),
    );
    let stacks = btf.is_some_and(|b| helper_names(b).values().any(|n| n == "bpf_get_stack"));
    out.add(
        "views",
        "on-CPU samples (--interval, stacks)".into(),
        stacks,
        "bpf_get_stack in BTF enum bpf_func_id".into(),
    );
    let maps = btf.is_some_and(|b| features::maps_unsupported(b).is_none());
    out.add(
        "views",
        "--maps (iter/task_vma, 5.12+)".into(),
        maps,
        "BTF struct bpf_iter__task_vma".into(),
    );
    // 6.2 made the RSS counters per CPU: the walk adds every CPU's part.
    let percpu_rss = has("percpu_counter") && !has("mm_rss_stat");
    out.add(
        "views",
        format!(
            "RSS counters: {}",
            if percpu_rss {
                "per CPU (6.2+), summed"
            } else {
                "atomic (before 6.2)"
            }
        ),
        true,
        if percpu_rss {
            "BTF: struct percpu_counter, no struct mm_rss_stat".into()
        } else {
            "BTF struct mm_rss_stat".into()
        },
    );

    attach_ok
}

fn kfuncs(
    out: &mut Probes,
    objects: &[objinfo::ObjectInfo],
    btf: Option<&KernelBtf>,
) -> BTreeMap<&'static str, bool> {
    let has = |name: &str| btf.is_some_and(|b| b.has(name));
    // Kfuncs: the open-coded backend's whole requirement.
    let mut kfuncs_ok: BTreeMap<&'static str, bool> = BTreeMap::new();
    for obj in objects {
        let mut all = true;
        for k in &obj.kfuncs {
            let ok = has(k);
            all &= ok;
            out.add(
                "kfuncs",
                format!("{k} ({})", obj.name),
                ok,
                "BTF function".into(),
            );
        }
        kfuncs_ok.insert(obj.name, all);
    }

    kfuncs_ok
}

fn helpers(
    out: &mut Probes,
    objects: &[objinfo::ObjectInfo],
    btf: Option<&KernelBtf>,
    privileged: bool,
) {
    // Helpers, by the kernel's own numbering.
    let names = btf.map(helper_names).unwrap_or_default();
    let mut helpers: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for obj in objects {
        for p in &obj.programs {
            for &h in &p.helpers {
                helpers.entry(h).or_default().insert(p.section.clone());
            }
        }
    }
    for (id, users) in &helpers {
        let name = names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("helper #{id}"));
        let mut ok = names.contains_key(id);
        let mut source = "BTF enum bpf_func_id".to_string();
        // Where libbpf can trial-load the program type, ask for real.
        for section in users {
            if let Some((ty, ty_name)) = section_prog_type(section) {
                if let Some(loads) = privileged.then(|| helper_loads(ty, *id)).flatten() {
                    ok &= loads;
                    source = format!("libbpf trial load in a {ty_name} program");
                }
            }
        }
        out.add("helpers", name, ok, source);
    }
}

/// Each mode, whether its trigger program can load here, and what it needs.
fn mode_needs(
    prog_ok: &BTreeMap<String, bool>,
    attach_ok: &BTreeMap<String, bool>,
) -> [(&'static str, bool, &'static str); 6] {
    let ty = |t: &str| prog_ok.get(t).copied().unwrap_or(false);
    let at = |s: &str| attach_ok.get(s).copied().unwrap_or(false);
    [
        (
            "one-shot",
            at("iter/task") && at("iter/task_file"),
            "the seq iterators",
        ),
        (
            "--on-signal",
            ty("tracing") && at("tp_btf/signal_generate"),
            "tp_btf/signal_generate",
        ),
        (
            "--on-syscall",
            ty("tracing") && at("tp_btf/sys_enter"),
            "tp_btf/sys_enter",
        ),
        ("--on-tracepoint", ty("raw_tracepoint"), "raw_tp programs"),
        ("--on-uprobe", ty("kprobe (uprobe)"), "uprobe programs"),
        ("--interval", ty("perf_event"), "perf_event programs"),
    ]
}

/// The backend `auto` picks for each mode, and why.
fn mode_choices(
    base: &Base,
    prog_ok: &BTreeMap<String, bool>,
    attach_ok: &BTreeMap<String, bool>,
    kfuncs_ok: &BTreeMap<&'static str, bool>,
) -> Vec<ModeChoice> {
    let Base {
        version_ok,
        btf,
        privileged,
        ringbuf,
    } = base;
    let (version_ok, privileged, ringbuf) = (*version_ok, *privileged, *ringbuf);
    let base_ok = version_ok && btf.is_some() && privileged;
    let seq_ok = base_ok
        && ringbuf
        && attach_ok.get("iter/task").copied().unwrap_or(false)
        && attach_ok.get("iter/task_file").copied().unwrap_or(false);
    let open_coded_ok = base_ok && ringbuf && kfuncs_ok.get("opencoded").copied().unwrap_or(false);
    let open_coded_why = btf
        .as_ref()
        .and_then(|b| features::open_coded_unsupported(b))
        .unwrap_or_else(|| "a kfunc it needs is missing (see kfuncs)".into());
    let modes_needs = mode_needs(prog_ok, attach_ok);
    modes_needs
        .iter()
        .map(|&(mode, trigger_ok, what)| {
            // The seq backend's one-shot reads iterators directly, and its
            // --interval is a user-space timer: neither needs a trigger program.
            let seq_needs_trigger = !matches!(mode, "one-shot" | "--interval");
            if open_coded_ok && trigger_ok {
                ModeChoice {
                    mode,
                    backend: Some("open-coded"),
                    why: if mode == "one-shot" {
                        "bpf_for walks each task's files with it, and its loops verify \
                         once (bpf_loop, bpf_for): it loads fastest, filtered or not"
                            .into()
                    } else {
                        format!("open-coded task iterators and {what} are available")
                    },
                    in_event: String::new(),
                    completion: String::new(),
                }
            } else if seq_ok && (trigger_ok || !seq_needs_trigger) {
                ModeChoice {
                    mode,
                    backend: Some("seq"),
                    why: if open_coded_ok {
                        format!("{what} unavailable: seq iterators instead")
                    } else {
                        format!("open-coded: {open_coded_why}")
                    },
                    in_event: String::new(),
                    completion: String::new(),
                }
            } else {
                ModeChoice {
                    mode,
                    backend: None,
                    why: if !base_ok {
                        "itersnap cannot run here (see kernel)".into()
                    } else if !seq_ok {
                        "the seq iterators or the ring buffer are missing".into()
                    } else {
                        format!("{what} unavailable")
                    },
                    in_event: String::new(),
                    completion: String::new(),
                }
            }
        })
        .map(|m| {
            let (in_event, completion) = capture_plan(m.mode, m.backend);
            ModeChoice {
                in_event,
                completion,
                ..m
            }
        })
        .collect::<Vec<_>>()
}

pub fn write_table(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(w, "itersnap check: Linux {}", r.kernel)?;
    let mut group = "";
    for p in &r.probes {
        if p.group != group {
            group = p.group;
            writeln!(w, "\n{group}:")?;
        }
        writeln!(
            w,
            "  {:<3} {:<44} {}",
            if p.ok { "yes" } else { "NO" },
            p.name,
            p.source
        )?;
    }
    if let Some(server) = &r.server {
        writeln!(w, "\nitersnap serve:")?;
        match &server.answer {
            Ok(held) => writeln!(
                w,
                "  yes one-shots go to the server at {} ({held})",
                server.socket
            )?,
            Err(why) => writeln!(w, "  no  no server at {}: {why}", server.socket)?,
        }
    }
    writeln!(w, "\nbackend chosen by --backend auto:")?;
    for m in &r.modes {
        writeln!(
            w,
            "  {:<16} {:<11} {}",
            m.mode,
            m.backend.unwrap_or("none"),
            m.why
        )?;
    }
    writeln!(w, "\nhow each mode takes a snapshot here:")?;
    for m in r.modes.iter().filter(|m| m.backend.is_some()) {
        writeln!(w, "  {:<16} in the event: {}", m.mode, m.in_event)?;
        writeln!(w, "  {:<16} after it:     {}", "", m.completion)?;
    }
    writeln!(
        w,
        "\n{}",
        if r.can_run {
            "itersnap can run here."
        } else {
            "itersnap cannot run here."
        }
    )
}

pub fn write_json(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    let v = json!({
        "kernel": r.kernel,
        "can_run": r.can_run,
        "features": r.probes.iter().map(|p| json!({
            "group": p.group, "name": p.name, "available": p.ok, "source": p.source,
        })).collect::<Vec<_>>(),
        "modes": r.modes.iter().map(|m| json!({
            "mode": m.mode, "backend": m.backend, "why": m.why,
            "in_event": m.in_event, "completion": m.completion,
        })).collect::<Vec<_>>(),
        "server": r.server.as_ref().map(|s| json!({
            "socket": s.socket,
            "answers": s.answer.is_ok(),
            "detail": match &s.answer { Ok(d) | Err(d) => d },
        })),
    });
    serde_json::to_writer(&mut *w, &v)?;
    writeln!(w)
}
