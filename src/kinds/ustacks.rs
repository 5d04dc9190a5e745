//! User-space stacks (`--ustacks`): one record per thread
//! (`bpf/kinds/ustack.h`, filled by `bpf/kinds/ustack.bpf.h`): the event's
//! own task unwound by the kernel in its own context, every other thread by
//! its frame pointers from the sleepable iterator after the event. Its
//! layout and decoding, its symbolization (blazesym's process source: the
//! ELF symbols of the files the process maps, read while it lives), its
//! JSON and its table lines.

use std::collections::HashMap;

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::Pid;
use serde::Serialize;

use crate::wire::Fields;

/// `struct ustack_rec` up to its addresses.
pub const USTACK_HDR_SIZE: usize = 24;
pub const USTACK_MAX_DEPTH: usize = 64;

/// enum ustack_flags.
pub const USTACK_PARTIAL: u32 = 1 << 0;
pub const USTACK_RUNNING: u32 = 1 << 1;
pub const USTACK_IN_EVENT: u32 = 1 << 2;
pub const USTACK_DEEP: u32 = 1 << 3;

/// One `struct ustack_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UStackRec {
    pub seq: u32,
    /// Thread id.
    pub pid: u32,
    pub flags: u32,
    /// Innermost first.
    pub ips: Vec<u64>,
}

/// A user stack record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<UStackRec, &'static str> {
    if f.len() < USTACK_HDR_SIZE {
        return Err("user stack record too short");
    }
    let n = (f.u32(12) as usize)
        .min(USTACK_MAX_DEPTH)
        .min((f.len() - USTACK_HDR_SIZE) / 8);
    let mut ips: Vec<u64> = (0..n).map(|i| f.u64(USTACK_HDR_SIZE + 8 * i)).collect();
    // The kernel's unwinder may end its list with a zero (no frame).
    while ips.last() == Some(&0) {
        ips.pop();
    }
    Ok(UStackRec {
        seq,
        pid: f.u32(8),
        flags: f.u32(16),
        ips,
    })
}

/// One frame: its address, and where it is when the process's files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UFrame {
    pub addr: u64,
    /// `function+0xoff`.
    pub symbol: Option<String>,
    /// The file that maps the address.
    pub module: Option<String>,
}

/// A thread's user stack, as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UStack {
    pub frames: Vec<UFrame>,
    /// The frame-pointer chain broke: outer frames are missing (a function
    /// built without frame pointers hides its callers).
    pub partial: bool,
    /// On a CPU at the walk: no stack (its registers are not saved).
    pub running: bool,
    /// Unwound inside the event, in the task's own context.
    pub in_event: bool,
}

/// What says a process's address space is the one an earlier snapshot
/// symbolized: the same process (its start time), not exec'd since (its
/// exec count), mapping as much as then (its size, VSZ). A library
/// unmapped and another of the very same size mapped at its place in
/// between is the change it misses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceKey {
    pub start_ns: u64,
    pub exec_id: u64,
    pub vsz_kib: u64,
}

/// A frame's `function+0xoff` and its file, as far as they are known.
type Described = (Option<String>, Option<String>);

/// Symbolizes user addresses by process: each file's symbols read once per
/// run (blazesym keeps its parsed files, checking each is still the same
/// file); each process's mappings read when one of its addresses is new
/// or its address space changed (`SpaceKey`), not again every snapshot.
pub struct USyms {
    symbolizer: Symbolizer,
    /// By process: the address space described, and its addresses.
    procs: HashMap<u32, (SpaceKey, HashMap<u64, Described>)>,
    /// Processes of the current snapshot: the others are forgotten at the
    /// next one.
    seen: std::collections::HashSet<u32>,
    /// /proc/PID/map_files could not be opened (no CAP_SYS_ADMIN): by
    /// the paths /proc/PID/maps names.
    map_files_refused: bool,
}

impl Default for USyms {
    fn default() -> Self {
        USyms {
            symbolizer: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            procs: HashMap::new(),
            seen: Default::default(),
            map_files_refused: false,
        }
    }
}

impl UStack {
    /// Thread `rec.pid`'s stack, of process `tgid` whose address space
    /// `space` identifies; symbolized with `syms`.
    pub fn of(rec: &UStackRec, tgid: u32, space: SpaceKey, syms: Option<&mut USyms>) -> UStack {
        let described = match syms {
            Some(syms) => syms.describe(tgid, space, &rec.ips),
            None => vec![(None, None); rec.ips.len()],
        };
        UStack {
            frames: rec
                .ips
                .iter()
                .zip(described)
                .map(|(&addr, (symbol, module))| UFrame {
                    addr,
                    symbol,
                    module,
                })
                .collect(),
            partial: rec.flags & (USTACK_PARTIAL | USTACK_DEEP) != 0,
            running: rec.flags & USTACK_RUNNING != 0,
            in_event: rec.flags & USTACK_IN_EVENT != 0,
        }
    }
}

impl USyms {
    /// A new snapshot: processes the last one did not have are forgotten.
    pub fn new_snapshot(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.procs.retain(|tgid, _| seen.contains(tgid));
    }

    /// Process `tgid`'s addresses, each its `function+0xoff` and file
    /// where a symbol names it, through its /proc/PID/map_files links where
    /// itersnap may open them (CAP_SYS_ADMIN: a container's files, deleted
    /// ones), else by the paths /proc/PID/maps names.
    fn symbolize(&mut self, tgid: u32, addrs: &[u64]) -> Vec<Option<(String, Option<String>)>> {
        let by = |map_files: bool| {
            let mut process = Process::new(Pid::from(tgid));
            process.debug_syms = false;
            process.perf_map = true;
            process.map_files = map_files;
            Source::Process(process)
        };
        let owned = |found: Vec<Symbolized<'_>>| -> Vec<Option<(String, Option<String>)>> {
            found
                .iter()
                .map(|s| match s {
                    Symbolized::Sym(sym) => Some((
                        format!("{}+{:#x}", sym.name, sym.offset),
                        sym.module
                            .as_ref()
                            .map(|m| m.to_string_lossy().into_owned()),
                    )),
                    _ => None,
                })
                .collect()
        };
        if !self.map_files_refused {
            match self.symbolizer.symbolize(&by(true), Input::AbsAddr(addrs)) {
                Ok(found) => return owned(found),
                Err(e) if e.kind() == blazesym::ErrorKind::PermissionDenied => {
                    self.map_files_refused = true;
                }
                Err(_) => {}
            }
        }
        self.symbolizer
            .symbolize(&by(false), Input::AbsAddr(addrs))
            .map(owned)
            .unwrap_or_default()
    }

    /// Each address of process `tgid`: its `function+0xoff` and its file,
    /// where the process's files say.
    fn describe(&mut self, tgid: u32, space: SpaceKey, ips: &[u64]) -> Vec<Described> {
        self.seen.insert(tgid);
        let (key, known) = self.procs.entry(tgid).or_default();
        if *key != space {
            *key = space;
            known.clear();
        }
        let missing: Vec<u64> = ips
            .iter()
            .copied()
            .filter(|a| !known.contains_key(a))
            .collect();
        if !missing.is_empty() {
            let found = self.symbolize(tgid, &missing);
            let known = &mut self.procs.entry(tgid).or_default().1;
            let mut maps = None;
            for (i, &addr) in missing.iter().enumerate() {
                let described = match found.get(i) {
                    Some(Some((symbol, module))) => (Some(symbol.clone()), module.clone()),
                    // No symbol (a stripped library): at least its file.
                    _ => (
                        None,
                        mapped_file(maps.get_or_insert_with(|| read_maps(tgid)), addr),
                    ),
                };
                known.insert(addr, described);
            }
        }
        let known = &self.procs[&tgid].1;
        ips.iter()
            .map(|addr| known.get(addr).cloned().unwrap_or_default())
            .collect()
    }
}

/// A process's file mappings, (start, end, path), from /proc/PID/maps.
fn read_maps(tgid: u32) -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let (start, end) = fields.next()?.split_once('-')?;
            let path = fields.nth(4)?.trim_start();
            if !path.starts_with('/') {
                return None;
            }
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
                path.to_string(),
            ))
        })
        .collect()
}

/// The file mapped at `addr`, if any.
fn mapped_file(maps: &[(u64, u64, String)], addr: u64) -> Option<String> {
    maps.iter()
        .find(|(start, end, _)| (*start..*end).contains(&addr))
        .map(|(_, _, path)| path.clone())
}

/// A row's user stack in JSON, flattened into the task's object:
/// `ustack` (the frames), `ustack_partial`, `ustack_running`.
#[derive(Serialize)]
pub struct UStackJson<'a> {
    ustack: Vec<UFrameJson<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ustack_partial: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ustack_running: bool,
}

#[derive(Serialize)]
pub struct UFrameJson<'a> {
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
}

/// The stack's JSON (docs/json.md).
pub fn json(s: &UStack) -> UStackJson<'_> {
    UStackJson {
        ustack: s
            .frames
            .iter()
            .map(|f| UFrameJson {
                addr: format!("{:#x}", f.addr),
                symbol: f.symbol.as_deref(),
                module: f.module.as_deref(),
            })
            .collect(),
        ustack_partial: s.partial,
        ustack_running: s.running,
    }
}

/// The stack under its task's kernel stack, as perf script prints a user
/// callchain: `[u] function+0xoff (/path/to/file)`; a last line says when
/// it is partial or was not taken.
pub fn write_lines(w: &mut dyn std::io::Write, indent: usize, s: &UStack) -> std::io::Result<()> {
    if s.running {
        return writeln!(w, "{:indent$}[u] (running: no user stack)", "");
    }
    for f in &s.frames {
        let symbol = f
            .symbol
            .as_deref()
            .map_or_else(|| format!("{:#x}", f.addr), str::to_string);
        match &f.module {
            Some(m) => writeln!(w, "{:indent$}[u] {symbol} ({m})", "")?,
            None => writeln!(w, "{:indent$}[u] {symbol}", "")?,
        }
    }
    if s.partial {
        writeln!(
            w,
            "{:indent$}[u] ... (frame-pointer chain broken: outer frames missing)",
            ""
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::ustack_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(ustack_rec, pid), 8);
        assert_eq!(offset_of!(ustack_rec, nr_ips), 12);
        assert_eq!(offset_of!(ustack_rec, flags), 16);
        assert_eq!(offset_of!(ustack_rec, ips), USTACK_HDR_SIZE);
        assert_eq!(
            size_of::<ustack_rec>(),
            USTACK_HDR_SIZE + 8 * USTACK_MAX_DEPTH
        );
    }

    /// This test's own process, symbolized: an address in this very
    /// function names it.
    #[test]
    fn own_addresses_are_symbolized() {
        #[inline(never)]
        fn marker() -> u64 {
            marker as *const () as u64
        }
        let rec = UStackRec {
            seq: 1,
            pid: std::process::id(),
            flags: USTACK_PARTIAL,
            ips: vec![marker() + 1, 1],
        };
        let space = SpaceKey::default();
        let s = UStack::of(&rec, std::process::id(), space, Some(&mut USyms::default()));
        assert!(s.partial && !s.running);
        let symbol = s.frames[0].symbol.as_deref().unwrap_or_default();
        assert!(symbol.contains("marker"), "{symbol}");
        assert!(s.frames[0]
            .module
            .as_deref()
            .unwrap_or_default()
            .starts_with('/'));
        assert_eq!(s.frames[1].symbol, None);
    }
}
