//! What itersnap's own BPF objects ask of the kernel, read from their ELF
//! (the `object` crate): program sections (types and attach points), helper
//! calls, kfuncs. `itersnap check` tests exactly these, so a helper or kfunc
//! added in bpf/ shows up in the report without anyone editing a list.

use std::collections::BTreeSet;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

/// The embedded objects, as build.rs compiled them.
pub const OBJECTS: &[(&str, &[u8])] = &[
    (
        "seqiter",
        include_bytes!(concat!(env!("OUT_DIR"), "/seqiter.bpf.o")),
    ),
    (
        "opencoded",
        include_bytes!(concat!(env!("OUT_DIR"), "/opencoded.bpf.o")),
    ),
];

/// A BPF program of an object: its ELF section (libbpf's SEC() name) and
/// the helpers it calls, by number.
#[derive(Debug, Clone)]
pub struct ProgramInfo {
    pub section: String,
    pub helpers: BTreeSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectInfo {
    pub name: &'static str,
    pub programs: Vec<ProgramInfo>,
    /// Kernel functions the object calls (`__ksym` externs).
    pub kfuncs: BTreeSet<String>,
}

const BPF_CALL: u8 = 0x85;

/// Reads one embedded object. Unknown or malformed input yields what could
/// be read: this only feeds a report.
pub fn read(name: &'static str, bytes: &[u8]) -> ObjectInfo {
    let mut info = ObjectInfo {
        name,
        ..ObjectInfo::default()
    };
    let Ok(file) = object::File::parse(bytes) else {
        return info;
    };
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        let Ok(section_name) = section.name() else {
            continue;
        };
        let Ok(code) = section.data() else {
            continue;
        };
        // Helper calls: `call imm` with src_reg 0. (src_reg 1 is a call to a
        // BPF function, 2 a kfunc; those come from relocations.)
        let helpers = code
            .chunks_exact(8)
            .filter(|insn| insn[0] == BPF_CALL && insn[1] >> 4 == 0)
            .map(|insn| u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]))
            .filter(|&id| id != 0)
            .collect();
        // ".text" holds the global functions (fill_file): its helpers are
        // reported with the rest, under that name.
        info.programs.push(ProgramInfo {
            section: section_name.to_string(),
            helpers,
        });
    }
    info.kfuncs = kfuncs_in(&file);
    info
}

fn kfuncs_in(file: &object::File<'_>) -> BTreeSet<String> {
    file.symbols()
        .filter(|sym| sym.is_undefined())
        .filter_map(|sym| sym.name().ok().filter(|n| !n.is_empty()))
        .map(str::to_string)
        .collect()
}

/// The kfuncs one embedded object calls, without reading its programs: what
/// a run needs to choose its backend.
pub fn kfuncs_of(name: &str) -> BTreeSet<String> {
    OBJECTS
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, bytes)| object::File::parse(*bytes).ok())
        .map(|file| kfuncs_in(&file))
        .unwrap_or_default()
}

/// An object's own BTF (its `.BTF` section): the types its programs use.
pub fn btf_section(bytes: &[u8]) -> Option<&[u8]> {
    let file = object::File::parse(bytes).ok()?;
    file.section_by_name(".BTF")?.data().ok()
}

pub fn all() -> Vec<ObjectInfo> {
    OBJECTS
        .iter()
        .map(|(name, bytes)| read(name, bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_objects() {
        let objects = all();
        let opencoded = objects.iter().find(|o| o.name == "opencoded").unwrap();
        assert!(opencoded.kfuncs.contains("bpf_iter_task_new"));
        assert!(opencoded.kfuncs.contains("bpf_iter_num_new"));
        let sections: Vec<&str> = opencoded
            .programs
            .iter()
            .map(|p| p.section.as_str())
            .collect();
        for s in [
            "iter/task",
            "tp_btf/signal_generate",
            "perf_event",
            "raw_tp",
            "uprobe",
        ] {
            assert!(sections.contains(&s), "{s} in {sections:?}");
        }
        let seq = objects.iter().find(|o| o.name == "seqiter").unwrap();
        let iter = seq
            .programs
            .iter()
            .find(|p| p.section == "iter/task")
            .unwrap();
        // bpf_seq_write is helper 127.
        assert!(iter.helpers.contains(&127), "{:?}", iter.helpers);
        assert!(seq.kfuncs.is_empty(), "{:?}", seq.kfuncs);
    }
}
