//! Kernel addresses → `function+0xoff/0xsize [module]`, from /proc/kallsyms,
//! in the format of /proc/PID/stack.

use std::fs;

use anyhow::{bail, Context, Result};

pub struct Ksyms {
    /// (address, name, module), sorted by address.
    syms: Vec<(u64, String, Option<String>)>,
}

impl Ksyms {
    pub fn load() -> Result<Self> {
        let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        let ksyms = Self::parse(&text);
        if ksyms.syms.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kernel.kptr_restrict?): cannot symbolize stacks");
        }
        Ok(ksyms)
    }

    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String, Option<String>)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                // Only code symbols, and only real addresses (not hidden zeros).
                if addr == 0 || !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                let module = parts
                    .next()
                    .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
                Some((addr, name.to_string(), module))
            })
            .collect();
        syms.sort_by_key(|s| s.0);
        Ksyms { syms }
    }

    /// `None` when no symbol plausibly holds the address: below every
    /// symbol, or so far past the nearest one (JIT-compiled BPF code, when
    /// bpf_jit_kallsyms is off) that no kernel function is that long.
    pub fn describe(&self, addr: u64) -> Option<String> {
        const MAX_FUNCTION: u64 = 1 << 20;
        let i = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, name, module) = &self.syms[i];
        let size = self
            .syms
            .get(i + 1)
            .map_or(0, |next| next.0.saturating_sub(*start));
        let off = addr - start;
        if off > MAX_FUNCTION {
            return None;
        }
        Some(match module {
            Some(m) => format!("{name}+{off:#x}/{size:#x} [{m}]"),
            None => format!("{name}+{off:#x}/{size:#x}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_function() {
        let k = Ksyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81000100 t do_nanosleep\n\
             ffffffff81000200 T next_fn\n\
             ffffffffc0000000 t mod_fn\t[kvm]\n",
        );
        assert_eq!(
            k.describe(0xffffffff81000110).as_deref(),
            Some("do_nanosleep+0x10/0x100")
        );
        assert_eq!(
            k.describe(0xffffffffc0000004).as_deref(),
            Some("mod_fn+0x4/0x0 [kvm]")
        );
        assert_eq!(k.describe(0x10), None);
        assert_eq!(k.describe(0xffffffff90000000), None);
    }
}
