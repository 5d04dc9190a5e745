//! Kernel symbolization against the running kernel's own /proc/kallsyms
//! and /proc/modules: module symbols, with their module. Skips what the
//! kernel has not got (a kernel without modules has no module symbols);
//! scripts/test runs it in the VMs too, whose Debian kernels load modules.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;
use itersnap::ksyms::Ksyms;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Every symbol of /proc/kallsyms: address → (names, module).
fn kallsyms() -> BTreeMap<u64, (Vec<String>, Option<String>, char)> {
    let mut syms: BTreeMap<u64, (Vec<String>, Option<String>, char)> = BTreeMap::new();
    for line in fs::read_to_string("/proc/kallsyms").unwrap().lines() {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let addr = u64::from_str_radix(addr, 16).unwrap();
        if addr == 0 {
            continue;
        }
        let module = parts.next().map(|m| m.trim_matches(['[', ']']).to_string());
        let entry = syms
            .entry(addr)
            .or_insert_with(|| (Vec::new(), module, kind.chars().next().unwrap()));
        entry.0.push(name.to_string());
    }
    syms
}

#[test]
fn module_functions_name_their_module() {
    let modules = fs::read_to_string("/proc/modules").unwrap_or_default();
    if modules.trim().is_empty() {
        eprintln!("no modules loaded: nothing to check");
        return;
    }
    let syms = kallsyms();
    let ksyms = Ksyms::load().unwrap();
    let mut checked = 0;
    let addrs: Vec<u64> = syms.keys().copied().collect();
    for (i, &addr) in addrs.iter().enumerate() {
        let (names, module, kind) = &syms[&addr];
        let Some(module) = module else { continue };
        // Functions of loaded modules (not BPF programs or trampolines).
        if !matches!(kind, 't' | 'T') || module.starts_with("__builtin") || module == "bpf" {
            continue;
        }
        let Some(&next) = addrs.get(i + 1) else {
            continue;
        };
        if next - addr < 2 || next - addr > 1 << 20 {
            continue;
        }
        let got = ksyms.describe(addr + 1).unwrap_or_default();
        let (name, rest) = got.split_once('+').unwrap_or_default();
        assert!(
            names.iter().any(|n| n == name),
            "{addr:#x}: {got} is not one of {names:?}"
        );
        assert_eq!(
            rest,
            format!("0x1/{:#x} [{module}]", next - addr),
            "{addr:#x} {names:?}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no module function in /proc/kallsyms");
    eprintln!("{checked} module functions checked");
}
