//! What this kernel and this process can do, asked of the system itself.
//! Each requirement that fails becomes one line that says what is missing.

use std::fs;
use std::path::Path;

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
    let caps = effective_caps().unwrap_or(0);
    let bpf_ok =
        has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON));
    if !bpf_ok {
        bail!("permission denied: itersnap needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); run it with sudo");
    }
    Ok(())
}
