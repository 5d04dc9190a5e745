//! What this kernel and this process can do, asked of the system itself.
//! Each requirement that fails becomes one line that says what is missing.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use crate::kinds::event;
use crate::model::TriggerSpec;
use anyhow::{bail, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// (major, minor) of the running kernel, from uname(2).
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = kernel_release()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn kernel_release() -> Option<String> {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Everything a snapshot needs before any BPF is loaded.
pub fn require_runnable() -> Result<()> {
    if let Some((major, minor)) = kernel_version() {
        if (major, minor) < (5, 8) {
            bail!(
                "kernel {major}.{minor} is too old: itersnap needs Linux 5.8 or later (BPF task iterators)"
            );
        }
    }
    if !Path::new(VMLINUX_BTF).exists() {
        bail!(
            "this kernel has no BTF ({VMLINUX_BTF} is missing): itersnap needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    require_privilege()
}

/// CAP_BPF with CAP_PERFMON (5.8+), or CAP_SYS_ADMIN.
pub fn require_privilege() -> Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let bpf_ok =
        has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON));
    if !bpf_ok {
        let sysctl = match unprivileged_bpf_disabled() {
            Some(n) if n > 0 => {
                format!(" (kernel.unprivileged_bpf_disabled={n} also refuses BPF to other users)")
            }
            _ => String::new(),
        };
        bail!("permission denied: itersnap needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); run it with sudo{sysctl}");
    }
    Ok(())
}

fn unprivileged_bpf_disabled() -> Option<u32> {
    fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why a privileged load can still be refused: kernel lockdown forbids
/// reading kernel memory from BPF (`integrity` may, `confidentiality` does).
pub fn explain_refusal() -> Option<String> {
    let lockdown = fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let mode = lockdown
        .split_whitespace()
        .find(|w| w.starts_with('['))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    (mode != "none").then(|| {
        format!(
            "the kernel is locked down ({mode}), which forbids the BPF helpers that read kernel memory"
        )
    })
}

/// The kernel's own BTF, asked about functions and types by name.
pub struct KernelBtf {
    btf: libbpf_rs::btf::Btf<'static>,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        let btf = libbpf_rs::btf::Btf::from_path(VMLINUX_BTF)
            .map_err(|e| anyhow::anyhow!("reading {VMLINUX_BTF}: {e}"))?;
        Ok(KernelBtf { btf })
    }

    pub fn has(&self, name: &str) -> bool {
        self.btf
            .type_by_name::<libbpf_rs::btf::BtfType<'_>>(name)
            .is_some()
    }

    /// The parameter names of the function `name` (its BTF prototype's),
    /// if the kernel has it.
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        use libbpf_rs::btf::types::{Func, FuncProto};
        use libbpf_rs::btf::ReferencesType as _;
        let func = self.btf.type_by_name::<Func<'_>>(name)?;
        let proto = FuncProto::try_from(func.referenced_type()).ok()?;
        Some(
            proto
                .iter()
                .map(|p| {
                    p.name
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                })
                .collect(),
        )
    }

    /// (name, value) of every member of the C enum `name`.
    pub fn enum_values(&self, name: &str) -> Vec<(String, i64)> {
        self.btf
            .type_by_name::<libbpf_rs::btf::types::Enum<'_>>(name)
            .map(|e| {
                e.iter()
                    .filter_map(|m| Some((m.name?.to_str()?.to_string(), m.value)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The kernel's BTF, read once per process: mapped where the kernel allows
/// it (6.16 and later), read otherwise (sysfs hands it out 4 KiB a read).
pub fn vmlinux_btf() -> Result<&'static [u8]> {
    static BTF: OnceLock<std::result::Result<&'static [u8], String>> = OnceLock::new();
    BTF.get_or_init(|| {
        let io = |e: std::io::Error| format!("reading {VMLINUX_BTF}: {e}");
        let file = fs::File::open(VMLINUX_BTF).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        // SAFETY: a read-only private mapping of a file that never changes
        // while the kernel runs; it is never unmapped, so the slice made
        // from it lives as long as the process.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            );
            if at != libc::MAP_FAILED && len > 0 {
                return Ok(std::slice::from_raw_parts(at as *const u8, len));
            }
        }
        let bytes = fs::read(VMLINUX_BTF).map_err(io)?;
        Ok(Vec::leak(bytes) as &'static [u8])
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// The names in the kernel's BTF, without parsing its types: enough to learn
/// whether a kfunc or a tracepoint exists, at a fraction of a full parse's
/// cost (which libbpf pays anyway when it loads the programs).
pub struct BtfNames {
    strings: &'static [u8],
}

impl BtfNames {
    pub fn load() -> Result<Self> {
        let data = vmlinux_btf()?;
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        let magic = data.get(0..2).map(|m| u16::from_ne_bytes([m[0], m[1]]));
        let range = (|| {
            let start = (u32_at(4)? as usize).checked_add(u32_at(16)? as usize)?;
            Some(start..start.checked_add(u32_at(20)? as usize)?)
        })();
        match (magic, range) {
            (Some(0xeb9f), Some(r)) if r.end <= data.len() => Ok(BtfNames { strings: &data[r] }),
            _ => bail!("{VMLINUX_BTF} is not BTF this itersnap can read"),
        }
    }
}

/// Answers "does the kernel's BTF know this name?"
pub trait HasName {
    fn has(&self, name: &str) -> bool;
}

impl HasName for BtfNames {
    fn has(&self, name: &str) -> bool {
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        memchr::memmem::find(self.strings, &needle).is_some()
    }
}

impl HasName for KernelBtf {
    fn has(&self, name: &str) -> bool {
        KernelBtf::has(self, name)
    }
}

/// Why the open-coded backend cannot run here, if it cannot: a kfunc that
/// its BPF object calls (read from the object itself) is not in the kernel.
pub fn open_coded_unsupported(btf: &dyn HasName) -> Option<String> {
    let kfuncs = crate::objinfo::kfuncs_of("opencoded");
    // Name the iterator itself first: it is what the kernel version decides.
    let missing = kfuncs
        .iter()
        .filter(|k| !btf.has(k))
        .min_by_key(|k| (k.as_str() != "bpf_iter_task_new", k.as_str()))?;
    Some(format!(
        "the kernel has no {missing} kfunc (open-coded task iterators need Linux 6.7 or later)"
    ))
}

/// Why command lines cannot be read here, if they cannot: they live in each
/// process's memory, which only a sleepable iterator reads, with
/// bpf_copy_from_user_task() (Linux 5.18, with sleepable iterators).
pub fn cmdlines_unsupported(btf: &dyn HasName) -> Option<&'static str> {
    (!btf.has("BPF_FUNC_copy_from_user_task")).then_some(
        "command lines need Linux 5.18 or later (bpf_copy_from_user_task in a sleepable iterator)",
    )
}

/// Why --ustacks cannot run here, if it cannot: other tasks' stacks are read
/// from their memory by the sleepable iterator that reads command lines.
pub fn ustacks_unsupported(btf: &dyn HasName) -> Option<&'static str> {
    (!btf.has("BPF_FUNC_copy_from_user_task")).then_some(
        "--ustacks needs Linux 5.18 or later (bpf_copy_from_user_task in a sleepable iterator)",
    )
}

/// Why --activity cannot run here, if it cannot: it reads each task's saved
/// registers with bpf_task_pt_regs().
pub fn activity_unsupported(btf: &dyn HasName) -> Option<&'static str> {
    (!btf.has("BPF_FUNC_task_pt_regs")).then_some(
        "--activity needs Linux 5.15 or later (the kernel has no bpf_task_pt_regs helper)",
    )
}

/// Why --maps cannot run here, if it cannot: it reads the task_vma iterator.
pub fn maps_unsupported(btf: &dyn HasName) -> Option<&'static str> {
    (!btf.has("bpf_iter__task_vma"))
        .then_some("--maps needs Linux 5.12 or later (the kernel has no task_vma iterator)")
}

const TRACEFS_ROOTS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// How a tracepoint is attached: through tracefs where it is mounted and
/// has the event (a perf tracepoint program, whose record's fields its
/// format file names), else as a raw tracepoint (the kernel's BTF has its
/// btf_trace_NAME: every TRACE_EVENT; its arguments named by its
/// prototype).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracepointKind {
    Raw,
    Tracefs,
}

/// Checks that CATEGORY:NAME is a tracepoint of this kernel, and says how
/// it attaches; an error names what exists (and, for syscalls:, points to
/// --on-syscall).
pub fn check_tracepoint(btf: &dyn HasName, category: &str, name: &str) -> Result<TracepointKind> {
    let known = |call: &str| crate::syscalls::SYSCALLS.iter().any(|(n, _)| *n == call);
    let syscall_hint = match (category, name.strip_prefix("sys_enter_")) {
        ("syscalls", Some(call)) if known(call) => {
            format!("; --on-syscall {call} takes the same moment without tracefs")
        }
        ("syscalls", _) => "; --on-syscall NAME takes a syscall's entry without tracefs".into(),
        _ => String::new(),
    };
    let tracefs = TRACEFS_ROOTS
        .iter()
        .map(|root| Path::new(root).join("events"))
        .find(|events| events.is_dir());
    let in_tracefs = tracefs
        .as_ref()
        .is_some_and(|events| events.join(category).join(name).is_dir());
    // tracefs's event where it has one: its record's fields are named by its
    // format file (the event's details); else the raw tracepoint by name.
    if in_tracefs {
        return Ok(TracepointKind::Tracefs);
    }
    if btf.has(&format!("btf_trace_{name}")) && tracefs.is_none() {
        return Ok(TracepointKind::Raw);
    }
    match &tracefs {
        Some(events) if !events.join(category).is_dir() => bail!(
            "unknown tracepoint category '{category}' (see {}){syscall_hint}",
            events.display()
        ),
        Some(events) => bail!(
            "unknown tracepoint '{category}:{name}' (see {}){syscall_hint}",
            events.join(category).display()
        ),
        None if category == "syscalls" => bail!(
            "{category}:{name} is a tracefs event, and tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing){syscall_hint}"
        ),
        None => bail!(
            "unknown tracepoint '{category}:{name}': the kernel's BTF has no btf_trace_{name}, and tracefs is not mounted"
        ),
    }
}

/// What a trigger reads inside its event and what names it
/// (kinds/event.rs): a syscall's signature; a tracefs tracepoint's format
/// file; a raw tracepoint's prototype, from the kernel's BTF (its
/// `__bpf_trace_NAME`, whose first parameter is the probe's own data).
pub fn event_setup(spec: &TriggerSpec, tracefs: bool) -> event::Setup {
    match spec {
        TriggerSpec::Syscall { name, .. } => event::Setup::syscall(name),
        TriggerSpec::Tracepoint { category, name } if tracefs => TRACEFS_ROOTS
            .iter()
            .find_map(|root| {
                std::fs::read_to_string(
                    Path::new(root)
                        .join("events")
                        .join(category)
                        .join(name)
                        .join("format"),
                )
                .ok()
            })
            .map(|format| event::Setup::tracefs(category, name, &format))
            .unwrap_or_default(),
        TriggerSpec::Tracepoint { name, .. } => {
            let args = KernelBtf::load()
                .ok()
                .and_then(|btf| btf.func_params(&format!("__bpf_trace_{name}")))
                .map(|params| params.into_iter().skip(1).collect())
                .unwrap_or_default();
            event::Setup::raw_tracepoint(name, args)
        }
        _ => event::Setup::default(),
    }
}

/// A bare program name (`bash`) is looked up in $PATH, as a shell would; a
/// bare library name (`libc.so.6`) as the dynamic linker finds it: in the
/// process `caller_pid` maps, if given, then in ld.so.cache (`ldconfig
/// -p`), then in the usual directories.
pub fn resolve_program(path: &Path, caller_pid: Option<u32>) -> std::path::PathBuf {
    if path.components().count() > 1 || path.is_absolute() {
        return path.to_path_buf();
    }
    let name = path.as_os_str().to_string_lossy();
    if name.contains(".so") {
        if let Some(found) = caller_pid.and_then(|pid| mapped_library(pid, &name)) {
            return found;
        }
        if let Some(found) = cached_library(&name) {
            return found;
        }
        let dirs = [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ];
        if let Some(found) = dirs
            .iter()
            .map(|d| Path::new(d).join(path))
            .find(|p| p.is_file())
        {
            return found;
        }
    }
    std::env::var_os("PATH")
        .and_then(|dirs| {
            std::env::split_paths(&dirs)
                .map(|d| d.join(path))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| path.to_path_buf())
}

/// The file a process maps whose name is `name` (libc.so.6), as
/// /proc/PID/maps names it, reached through /proc/PID/root (its mount
/// namespace: a container's libc).
fn mapped_library(pid: u32, name: &str) -> Option<std::path::PathBuf> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == name)
        })
        .map(|p| Path::new(&format!("/proc/{pid}/root")).join(p.trim_start_matches('/')))
        .filter(|p| p.is_file())
}

/// `name` in the dynamic linker's cache, as `ldconfig -p` lists it: the
/// first entry of this machine's word size.
fn cached_library(name: &str) -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| {
            std::process::Command::new("/sbin/ldconfig")
                .arg("-p")
                .output()
        })
        .ok()?;
    let arch = if cfg!(target_arch = "aarch64") {
        "AArch64"
    } else {
        "x86-64"
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            // "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6"
            let (left, target) = line.trim().split_once(" => ")?;
            let (lib, flags) = left.split_once(' ')?;
            (lib == name && flags.contains(arch)).then(|| std::path::PathBuf::from(target))
        })
}

/// Checks that PATH is an ELF file that defines SYMBOL.
pub fn check_uprobe(path: &Path, symbol: &str) -> Result<()> {
    use object::{Object, ObjectSymbol};
    let data =
        fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|_| anyhow::anyhow!("{} is not an ELF file", path.display()))?;
    let defined = file
        .symbols()
        .chain(file.dynamic_symbols())
        .any(|s| s.is_definition() && s.name() == Ok(symbol));
    if !defined {
        bail!("{} has no function '{symbol}'", path.display());
    }
    Ok(())
}
