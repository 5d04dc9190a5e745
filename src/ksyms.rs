//! Kernel addresses → `function+0xoff/0xsize [module]`, in the format of
//! /proc/PID/stack. blazesym finds the symbol in /proc/kallsyms; the size,
//! which kallsyms does not list, is where the next symbol starts (as the
//! kernel computes it), found through blazesym too; the module that holds
//! the address comes from /proc/modules.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use blazesym::symbolize::source::{Kernel, Source};
use blazesym::symbolize::{Input, Reason, Symbolized, Symbolizer};
use blazesym::MaybeDefault;

/// No kernel function is this long: an address further than this past the
/// nearest symbol is JIT-compiled BPF code (with bpf_jit_kallsyms off) or
/// not code at all.
const MAX_FUNCTION: u64 = 1 << 20;

/// Descriptions kept for addresses already seen, at most: stacks repeat
/// from snapshot to snapshot, arbitrary addresses (the fuzzer's) do not.
const MAX_CACHED: usize = 1 << 16;

/// A loaded module's core memory, from /proc/modules.
struct Module {
    base: u64,
    size: u64,
    name: String,
}

pub struct Ksyms {
    symbolizer: Symbolizer,
    source: Source<'static>,
    /// Sorted by base.
    modules: Vec<Module>,
    /// Symbol start → size.
    sizes: RefCell<HashMap<u64, u64>>,
    /// Address → description.
    described: RefCell<HashMap<u64, Option<String>>>,
    /// The kallsyms file made by `from_text`, removed with this.
    _made: Option<Removed>,
}

/// A file removed when this is dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A symbol as blazesym resolves an address: start, name, and the module
/// blazesym knows of itself (`bpf` for a BPF program).
struct Sym {
    start: u64,
    name: String,
    module: Option<String>,
}

/// Why /proc/kallsyms hides addresses from this process, as the kernel's
/// kallsyms_show_value() decides: kptr_restrict 2 hides them from everyone;
/// else they need CAP_SYSLOG, unless kptr_restrict is 0 and
/// perf_event_paranoid at most 1.
fn why_addresses_are_hidden() -> String {
    let sysctl = |name: &str| {
        fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let kptr = sysctl("kptr_restrict");
    let paranoid = sysctl("perf_event_paranoid");
    // CapEff in /proc/self/status; CAP_SYSLOG is capability 34.
    let syslog = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 34) != 0);
    let show = |v: Option<i64>| v.map_or_else(|| "unknown".into(), |v| v.to_string());
    match kptr {
        Some(k) if k >= 2 => {
            "kernel.kptr_restrict is 2, which hides kernel addresses from everyone (0 or 1 shows them to CAP_SYSLOG)".into()
        }
        _ if !syslog => format!(
            "reading kernel addresses needs CAP_SYSLOG (kernel.kptr_restrict is {}, kernel.perf_event_paranoid {})",
            show(kptr),
            show(paranoid)
        ),
        _ => format!("kernel.kptr_restrict is {}", show(kptr)),
    }
}

impl Ksyms {
    /// The running kernel's symbols, read now (a module loaded later is not
    /// seen, as before blazesym).
    pub fn load() -> Result<Self> {
        // No /proc/modules on a kernel built without modules: none loaded.
        Self::load_with(&fs::read_to_string("/proc/modules").unwrap_or_default())
    }

    /// The running kernel's, with the text of /proc/modules read already.
    pub fn load_with(modules: &str) -> Result<Self> {
        Self::open(Path::new("/proc/kallsyms"), modules)
    }

    /// From a kallsyms file and the text of a /proc/modules.
    pub fn open(kallsyms: &Path, modules: &str) -> Result<Self> {
        let symbolizer = Symbolizer::builder()
            .enable_auto_reload(false)
            .enable_code_info(false)
            .enable_inlined_fns(false)
            // Kernel names are C's, never mangled: a guess would read `f`
            // as C++'s `float`.
            .enable_demangling(false)
            .build();
        let source = Source::Kernel(Kernel {
            kallsyms: MaybeDefault::Some(kallsyms.to_path_buf()),
            // kallsyms is what /proc/PID/stack uses; a vmlinux file, where
            // one exists, could be for another build of the kernel.
            vmlinux: MaybeDefault::None,
            // Only a vmlinux needs the KASLR offset; without this blazesym
            // would read /proc/kcore to find it.
            kaslr_offset: Some(0),
            debug_syms: false,
            ..Kernel::default()
        });
        // Parse kallsyms now, not at the first stack. blazesym skips zero
        // addresses, so a kallsyms whose addresses are hidden has none.
        match symbolizer.symbolize_single(&source, Input::AbsAddr(u64::MAX)) {
            Ok(Symbolized::Unknown(Reason::MissingSyms)) => bail!(
                "{} shows no addresses: {}: cannot symbolize stacks (--stacks, --activity, WCHAN)",
                kallsyms.display(),
                why_addresses_are_hidden()
            ),
            Ok(_) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .context(format!("reading {}", kallsyms.display()))
            }
        }
        Ok(Ksyms {
            symbolizer,
            source,
            modules: parse_modules(modules),
            sizes: RefCell::default(),
            described: RefCell::default(),
            _made: None,
        })
    }

    /// From the text of a kallsyms and of a /proc/modules, for tests and
    /// the fuzzer. blazesym reads kallsyms from a file, and looks at it
    /// again at every lookup: a temporary one, kept while this lives.
    pub fn from_text(kallsyms: &str, modules: &str) -> Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let made = Removed(std::env::temp_dir().join(format!(
            "itersnap-kallsyms-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )));
        fs::write(&made.0, kallsyms).with_context(|| format!("writing {}", made.0.display()))?;
        let mut ksyms = Self::open(&made.0, modules)?;
        ksyms._made = Some(made);
        Ok(ksyms)
    }

    /// `None` when no symbol plausibly holds the address: below every
    /// symbol, too far past the nearest one, or outside the module that
    /// holds the nearest one (JIT-compiled BPF code sits between modules).
    pub fn describe(&self, addr: u64) -> Option<String> {
        if let Some(d) = self.described.borrow().get(&addr) {
            return d.clone();
        }
        let d = self.resolve(addr);
        let mut described = self.described.borrow_mut();
        if described.len() >= MAX_CACHED {
            described.clear();
        }
        described.insert(addr, d.clone());
        d
    }

    fn resolve(&self, addr: u64) -> Option<String> {
        let sym = self.lookup(addr)?;
        let off = addr.checked_sub(sym.start)?;
        if off > MAX_FUNCTION {
            return None;
        }
        let module = match sym.module {
            Some(m) => Some(m),
            None => {
                let holder = self.module_of(addr);
                if holder.map(|m| m.base) != self.module_of(sym.start).map(|m| m.base) {
                    return None;
                }
                holder.map(|m| m.name.clone())
            }
        };
        let size = self.size_of(sym.start, addr);
        let name = sym.name;
        Some(match module {
            Some(m) => format!("{name}+{off:#x}/{size:#x} [{m}]"),
            None => format!("{name}+{off:#x}/{size:#x}"),
        })
    }

    fn lookup(&self, addr: u64) -> Option<Sym> {
        match self
            .symbolizer
            .symbolize_single(&self.source, Input::AbsAddr(addr))
        {
            Ok(Symbolized::Sym(s)) => Some(Sym {
                start: s.addr,
                name: s.name.into_owned(),
                module: s.module.map(|m| {
                    m.to_string_lossy()
                        .trim_matches(|c| c == '[' || c == ']')
                        .to_string()
                }),
            }),
            _ => None,
        }
    }

    fn start_of(&self, addr: u64) -> Option<u64> {
        let s = self
            .symbolizer
            .symbolize_single(&self.source, Input::AbsAddr(addr));
        match s {
            Ok(Symbolized::Sym(s)) => Some(s.addr),
            _ => None,
        }
    }

    /// The distance from the symbol at `start` to the next symbol, which
    /// lies past `inside`; 0 if there is none within MAX_FUNCTION (the last
    /// symbol). Found by doubling steps, then halving them: a few dozen
    /// lookups, once per function.
    fn size_of(&self, start: u64, inside: u64) -> u64 {
        if let Some(&size) = self.sizes.borrow().get(&start) {
            return size;
        }
        let holds = |a: u64| self.start_of(a) == Some(start);
        let (mut lo, mut step) = (inside, 16u64);
        let mut hi = loop {
            match lo.checked_add(step) {
                Some(probe) if probe - start <= MAX_FUNCTION => {
                    if !holds(probe) {
                        break Some(probe);
                    }
                    lo = probe;
                    step *= 2;
                }
                _ => break None,
            }
        };
        let size = match hi.as_mut() {
            Some(hi) => {
                while *hi - lo > 1 {
                    let mid = lo + (*hi - lo) / 2;
                    if holds(mid) {
                        lo = mid;
                    } else {
                        *hi = mid;
                    }
                }
                *hi - start
            }
            None => 0,
        };
        self.sizes.borrow_mut().insert(start, size);
        size
    }

    fn module_of(&self, addr: u64) -> Option<&Module> {
        let i = self
            .modules
            .partition_point(|m| m.base <= addr)
            .checked_sub(1)?;
        let m = &self.modules[i];
        (addr - m.base < m.size).then_some(m)
    }
}

/// /proc/modules: `name size refcount deps state address [taints]`; the
/// address is 0 where kptr_restrict hides it.
fn parse_modules(text: &str) -> Vec<Module> {
    let mut modules: Vec<Module> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, size, addr) = (fields.first()?, fields.get(1)?, fields.get(5)?);
            let base = u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()?;
            let size = size.parse().ok()?;
            (base != 0).then(|| Module {
                base,
                size,
                name: name.to_string(),
            })
        })
        .collect();
    modules.sort_by_key(|m| m.base);
    modules
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "ffffffff81000000 T _stext\n\
        ffffffff810000f0 t __pfx_do_nanosleep\n\
        ffffffff81000100 t do_nanosleep\n\
        ffffffff810001f0 t __pfx_next_fn\n\
        ffffffff81000200 T next_fn\n\
        ffffffffc0000000 t mod_fn\t[kvm]\n\
        ffffffffc0000040 t mod_fn2\t[kvm]\n\
        ffffffffc0002000 t bpf_prog_6deef7357e7b4530_snap\t[bpf]\n\
        ffffffffc0002100 t other_fn\t[other]\n";
    const MODULES: &str = "kvm 4096 0 - Live 0xffffffffc0000000\n\
        other 4096 0 - Live 0xffffffffc0002100 (E)\n";

    #[test]
    fn finds_the_enclosing_function() {
        let k = Ksyms::from_text(KALLSYMS, MODULES).unwrap();
        assert_eq!(
            k.describe(0xffffffff81000110).as_deref(),
            Some("do_nanosleep+0x10/0xf0")
        );
        assert_eq!(
            k.describe(0xffffffff81000100).as_deref(),
            Some("do_nanosleep+0x0/0xf0")
        );
        assert_eq!(
            k.describe(0xffffffffc0000004).as_deref(),
            Some("mod_fn+0x4/0x40 [kvm]")
        );
        assert_eq!(
            k.describe(0xffffffffc0002010).as_deref(),
            Some("bpf_prog_6deef7357e7b4530_snap+0x10/0x100 [bpf]")
        );
        // The last symbol: no next one to end it.
        assert_eq!(
            k.describe(0xffffffffc0002104).as_deref(),
            Some("other_fn+0x4/0x0 [other]")
        );
    }

    #[test]
    fn unresolvable_addresses_have_no_symbol() {
        let k = Ksyms::from_text(KALLSYMS, MODULES).unwrap();
        // Below every symbol.
        assert_eq!(k.describe(0x10), None);
        // Past kvm's memory, before the next symbol: JIT code.
        assert_eq!(k.describe(0xffffffffc0001800), None);
        // Far past the last symbol.
        assert_eq!(k.describe(0xffffffff90000000), None);
        assert_eq!(k.describe(u64::MAX), None);
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let err = Ksyms::from_text("0000000000000000 T _stext\n", "")
            .err()
            .unwrap();
        assert!(err.to_string().contains("kptr_restrict"), "{err:#}");
    }

    #[test]
    fn modules_parse() {
        let m = parse_modules(
            "kvm 1388544 1 kvm_intel, Live 0xffffffffc0a00000\n\
             hidden 4096 0 - Live 0x0000000000000000\n\
             bad line\n",
        );
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].base, m[0].size), (0xffffffffc0a00000, 1388544));
        assert_eq!(m[0].name, "kvm");
    }
}
