//! What a run loaded into the kernel: each program's name, section, size
//! and how much work the verifier did for it (`bpf_prog_info`), and how
//! long the load took and how many attempts it needed. `--verbose` prints
//! it; tests count it (which programs each mode loads), scripts/bench
//! tables it. Counted facts, not times, are what tests assert.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::libbpf_sys as sys;

/// One program of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedProgram {
    pub name: String,
    /// Its ELF section: the program type and attach point (`iter/task`).
    pub section: String,
    /// Instructions after the verifier's rewrites (xlated).
    pub insns: u32,
    /// Instructions the verifier processed (5.16+; 0 before).
    pub verified_insns: u32,
}

/// What loading an object cost.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub object: &'static str,
    pub programs: Vec<LoadedProgram>,
    /// Open, CO-RE relocation and verification of every program.
    pub load_time: Duration,
    /// Loads of the object: more than one when a first choice was refused.
    pub attempts: u32,
}

impl LoadReport {
    /// The programs of a loaded object that were loaded into the kernel.
    pub fn of(
        object: &'static str,
        obj: &libbpf_rs::Object,
        load_time: Duration,
        attempts: u32,
    ) -> Self {
        let programs = obj
            .progs()
            .filter(|p| p.autoload())
            .map(|p| {
                let (insns, verified_insns) = prog_info(p.as_fd().as_raw_fd());
                LoadedProgram {
                    name: p.name().to_string_lossy().into_owned(),
                    section: p.section().to_string_lossy().into_owned(),
                    insns: insns.unwrap_or_else(|| p.insn_cnt() as u32),
                    verified_insns,
                }
            })
            .collect();
        LoadReport {
            object,
            programs,
            load_time,
            attempts,
        }
    }

    /// One line for --verbose (scripts/bench and tests/programs.rs read it).
    pub fn describe(&self) -> String {
        let progs: Vec<String> = self
            .programs
            .iter()
            .map(|p| {
                format!(
                    "{} ({}, {} insns, {} verified)",
                    p.name, p.section, p.insns, p.verified_insns
                )
            })
            .collect();
        format!(
            "{} object loaded in {:.1} ms ({} attempt{}), {} programs: {}",
            self.object,
            self.load_time.as_secs_f64() * 1e3,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.programs.len(),
            progs.join(", ")
        )
    }
}

/// How often a program ran and for how long, as the kernel counts them
/// (bpf_prog_info.run_cnt, run_time_ns) while kernel.bpf_stats_enabled is
/// 1: zero otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramRuns {
    pub count: u64,
    pub ns: u64,
}

impl ProgramRuns {
    /// Of the program whose fd this is.
    pub fn of(fd: i32) -> ProgramRuns {
        prog_info_of(fd)
            .map(|info| ProgramRuns {
                count: info.run_cnt,
                ns: info.run_time_ns,
            })
            .unwrap_or_default()
    }

    /// One line for --verbose (scripts/bench reads it).
    pub fn describe(&self, what: &str) -> String {
        if self.count == 0 {
            return format!(
                "{what}: runs not counted (sysctl kernel.bpf_stats_enabled=1 counts them)"
            );
        }
        format!(
            "{what}: {} runs, {:.3} ms in all, {:.2} us each",
            self.count,
            self.ns as f64 / 1e6,
            self.ns as f64 / 1e3 / self.count as f64
        )
    }
}

/// The kernel's bpf_prog_info of the program whose fd this is: its scalar
/// fields only (no arrays are asked for). None if the kernel refuses.
pub fn prog_info_of(fd: i32) -> Option<sys::bpf_prog_info> {
    let mut info = sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: info and len describe a valid, writable bpf_prog_info; no
    // array pointers are set, so the kernel writes into info only.
    let ret = unsafe { sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    (ret == 0).then_some(info)
}

/// (xlated instructions, verified instructions) of a loaded program.
fn prog_info(fd: i32) -> (Option<u32>, u32) {
    match prog_info_of(fd) {
        Some(info) => (Some(info.xlated_prog_len / 8), info.verified_insns),
        None => (None, 0),
    }
}
