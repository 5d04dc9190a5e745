//! A small target BTF for libbpf's CO-RE relocation: only the kernel types
//! that our BPF objects name, and the types those embed.
//!
//! libbpf looks for relocation candidates by scanning every type of the
//! kernel's BTF (~130,000 on 6.18) once per relocated type name; with 17
//! names that was a third of a one-shot snapshot's run time. Handed this
//! copy (`btf_custom_path`), it scans a few hundred types instead. The copy
//! is built in one pass over the kernel's BTF. Pointers in it point to void:
//! CO-RE only checks that a pointer member is a pointer, and a dereference is
//! a new relocation whose type is looked up by name. Kfuncs and attach points
//! still resolve against the kernel's BTF itself: libbpf loads that apart,
//! and the copy is built on a thread of its own meanwhile (a one-shot's run
//! 2.4 ms shorter at 6.18, the two being the longest steps before the
//! verifier's).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Mutex, OnceLock};

const BTF_MAGIC: u16 = 0xeb9f;
const HDR_LEN: usize = 24;

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// A parsed BTF blob: its type records and strings, bounds-checked.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Offset in `types` of type id i+1.
    offsets: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Bytes a type record takes: the common 12 bytes plus what its kind adds.
fn record_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(
        12 + match kind {
            PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
            INT | VAR | DECL_TAG => 4,
            ARRAY => 12,
            STRUCT | UNION | DATASEC | ENUM64 => 12 * vlen,
            ENUM | FUNC_PROTO => 8 * vlen,
            _ => return None,
        },
    )
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < HDR_LEN || u16::from_ne_bytes([data[0], data[1]]) != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(u32_at(data, off)? as usize)?;
            data.get(start..start.checked_add(u32_at(data, len)? as usize)?)
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut offsets = Vec::with_capacity(types.len() / 20);
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4)?;
            offsets.push(at as u32);
            at += record_len(kind(info), vlen(info))?;
        }
        (at == types.len()).then_some(Btf {
            types,
            strings,
            offsets,
        })
    }

    fn record(&self, id: u32) -> Option<&'a [u8]> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        let info = u32_at(self.types, at + 4)?;
        self.types.get(at..at + record_len(kind(info), vlen(info))?)
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        &rest[..memchr::memchr(0, rest).unwrap_or(rest.len())]
    }
}

fn kind(info: u32) -> u32 {
    (info >> 24) & 0x1f
}

fn vlen(info: u32) -> usize {
    (info & 0xffff) as usize
}

/// A name without its `___flavor` suffix, as libbpf matches them.
fn essential(name: &[u8]) -> &[u8] {
    // One searcher for the ~130,000 kernel names, not one per name.
    static FLAVOR: OnceLock<memchr::memmem::FinderRev<'static>> = OnceLock::new();
    let flavor = FLAVOR.get_or_init(|| memchr::memmem::FinderRev::new(b"___"));
    match flavor.rfind(name) {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// FNV-1a: the name set is ours and small, and SipHash's DoS resistance
/// buys nothing against the kernel's own type names.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type NameSet = HashSet<Vec<u8>, std::hash::BuildHasherDefault<Fnv>>;

/// The essential names of every named struct, union, enum and typedef in a
/// BPF object's BTF: a superset of its CO-RE relocation roots.
fn local_names(object_btf: &[u8]) -> Option<NameSet> {
    let btf = Btf::parse(object_btf)?;
    let mut names = NameSet::default();
    for id in 1..=btf.offsets.len() as u32 {
        let rec = btf.record(id)?;
        if matches!(
            kind(u32_at(rec, 4)?),
            STRUCT | UNION | ENUM | ENUM64 | TYPEDEF
        ) {
            let name = btf.name(u32_at(rec, 0)?);
            if !name.is_empty() {
                names.insert(essential(name).to_vec());
            }
        }
    }
    Some(names)
}

/// Builds the reduced BTF: the kernel types whose essential names are in
/// `names`, and everything they embed. `None` on anything unexpected: the
/// caller then lets libbpf search the kernel's BTF whole.
/// Every pointer becomes this one `void *`, type id 1.
const VOID_PTR: u32 = 1;

fn reduce(kernel: &[u8], names: &NameSet) -> Option<(Vec<u8>, StructIds)> {
    let btf = Btf::parse(kernel)?;
    let (order, new_id) = select_types(&btf, names)?;
    let (types, strings) = write_types(&btf, &order, &new_id)?;
    // The kernel's own ids of the structs kept, found on this same pass.
    let mut ids = StructIds::new();
    for &id in &order {
        let rec = btf.record(id)?;
        if kind(u32_at(rec, 4)?) == STRUCT {
            ids.entry(btf.name(u32_at(rec, 0)?).to_vec()).or_insert(id);
        }
    }
    Some((btf_file(&types, &strings), ids))
}

/// Struct names to their ids in the kernel's BTF.
type StructIds = HashMap<Vec<u8>, u32>;

/// The first two bytes a kernel type's name must start with for its
/// essential name to be one of ours, as a bitmap: a test that spares most of
/// the kernel's ~130,000 names the NUL search, the flavor search and the
/// hash (a tenth of a one-shot's run time went into those).
struct Prefixes(Vec<u64>);

impl Prefixes {
    fn of(names: &NameSet) -> Self {
        let mut bits = Prefixes(vec![0; 65536 / 64]);
        for name in names {
            match *name.as_slice() {
                [] => {}
                // "x" matches a kernel "x" or "x___flavor".
                [first] => {
                    bits.set(first, 0);
                    bits.set(first, b'_');
                }
                [first, second, ..] => bits.set(first, second),
            }
        }
        bits
    }

    fn set(&mut self, first: u8, second: u8) {
        let at = usize::from(first) << 8 | usize::from(second);
        self.0[at / 64] |= 1 << (at % 64);
    }

    /// Could the name at `off` of `strings` have an essential name of ours?
    fn may_match(&self, strings: &[u8], off: u32) -> bool {
        let off = off as usize;
        let first = strings.get(off).copied().unwrap_or(0);
        let second = strings.get(off + 1).copied().unwrap_or(0);
        let at = usize::from(first) << 8 | usize::from(second);
        first != 0 && self.0[at / 64] & (1 << (at % 64)) != 0
    }
}

/// The named types and what they embed (not what they point to), in the
/// order they will have, with their new ids.
fn select_types(btf: &Btf<'_>, names: &NameSet) -> Option<(Vec<u32>, HashMap<u32, u32>)> {
    select_types_with(btf, names, &Prefixes::of(names))
}

fn select_types_with(
    btf: &Btf<'_>,
    names: &NameSet,
    prefixes: &Prefixes,
) -> Option<(Vec<u32>, HashMap<u32, u32>)> {
    let mut new_id: HashMap<u32, u32> = HashMap::new();
    let mut order: Vec<u32> = Vec::new();
    fn visit(id: u32, order: &mut Vec<u32>, new_id: &mut HashMap<u32, u32>) {
        if let std::collections::hash_map::Entry::Vacant(slot) = new_id.entry(id) {
            slot.insert(order.len() as u32 + 2);
            order.push(id);
        }
    }
    for id in 1..=btf.offsets.len() as u32 {
        let rec = btf.record(id)?;
        if matches!(
            kind(u32_at(rec, 4)?),
            STRUCT | UNION | ENUM | ENUM64 | TYPEDEF
        ) && prefixes.may_match(btf.strings, u32_at(rec, 0)?)
            && names.contains(essential(btf.name(u32_at(rec, 0)?)))
        {
            visit(id, &mut order, &mut new_id);
        }
    }
    // Breadth first through what the chosen types embed (not through pointers).
    let mut next = 0;
    while next < order.len() {
        let rec = btf.record(order[next])?;
        next += 1;
        let info = u32_at(rec, 4)?;
        let mut refs = Vec::new();
        match kind(info) {
            PTR | INT | ENUM | ENUM64 | FWD | FLOAT => {}
            TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => refs.push(u32_at(rec, 8)?),
            ARRAY => refs.extend([u32_at(rec, 12)?, u32_at(rec, 16)?]),
            STRUCT | UNION => {
                for m in 0..vlen(info) {
                    refs.push(u32_at(rec, 12 + 12 * m + 4)?);
                }
            }
            FUNC_PROTO => {
                refs.push(u32_at(rec, 8)?);
                for p in 0..vlen(info) {
                    refs.push(u32_at(rec, 12 + 8 * p + 4)?);
                }
            }
            _ => return None,
        }
        for r in refs {
            match btf.record(r) {
                None if r == 0 => {} // void
                None => return None,
                Some(target) if kind(u32_at(target, 4)?) == PTR => {}
                Some(_) => visit(r, &mut order, &mut new_id),
            }
        }
    }

    Some((order, new_id))
}

/// The selected types with their ids and names remapped, and their strings.
fn write_types(
    btf: &Btf<'_>,
    order: &[u32],
    new_id: &HashMap<u32, u32>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut strings: Vec<u8> = vec![0];
    let mut string_at: HashMap<&[u8], u32> = HashMap::new();
    let mut name = |off: u32| -> u32 {
        let s = btf.name(off);
        if s.is_empty() {
            return 0;
        }
        *string_at.entry(s).or_insert_with(|| {
            let at = strings.len() as u32;
            strings.extend_from_slice(s);
            strings.push(0);
            at
        })
    };
    let remap = |id: u32| -> u32 {
        match btf.record(id).and_then(|r| u32_at(r, 4)) {
            Some(info) if kind(info) == PTR => VOID_PTR,
            _ => new_id.get(&id).copied().unwrap_or(0),
        }
    };
    let mut types: Vec<u8> = Vec::new();
    let put = |types: &mut Vec<u8>, v: u32| types.extend_from_slice(&v.to_ne_bytes());
    // Type 1: `void *`.
    put(&mut types, 0);
    put(&mut types, PTR << 24);
    put(&mut types, 0);
    for &id in order {
        let rec = btf.record(id)?;
        let info = u32_at(rec, 4)?;
        let size_or_type = u32_at(rec, 8)?;
        put(&mut types, name(u32_at(rec, 0)?));
        put(&mut types, info);
        match kind(info) {
            TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG | FUNC_PROTO => {
                put(&mut types, remap(size_or_type))
            }
            _ => put(&mut types, size_or_type),
        }
        match kind(info) {
            INT => put(&mut types, u32_at(rec, 12)?),
            ARRAY => {
                put(&mut types, remap(u32_at(rec, 12)?));
                put(&mut types, remap(u32_at(rec, 16)?));
                put(&mut types, u32_at(rec, 20)?);
            }
            STRUCT | UNION => {
                for m in 0..vlen(info) {
                    let at = 12 + 12 * m;
                    put(&mut types, name(u32_at(rec, at)?));
                    put(&mut types, remap(u32_at(rec, at + 4)?));
                    put(&mut types, u32_at(rec, at + 8)?);
                }
            }
            ENUM => {
                for v in 0..vlen(info) {
                    put(&mut types, name(u32_at(rec, 12 + 8 * v)?));
                    put(&mut types, u32_at(rec, 12 + 8 * v + 4)?);
                }
            }
            ENUM64 => {
                for v in 0..vlen(info) {
                    let at = 12 + 12 * v;
                    put(&mut types, name(u32_at(rec, at)?));
                    put(&mut types, u32_at(rec, at + 4)?);
                    put(&mut types, u32_at(rec, at + 8)?);
                }
            }
            FUNC_PROTO => {
                for p in 0..vlen(info) {
                    put(&mut types, name(u32_at(rec, 12 + 8 * p)?));
                    put(&mut types, remap(u32_at(rec, 12 + 8 * p + 4)?));
                }
            }
            _ => {}
        }
    }

    Some((types, strings))
}

/// A BTF file: header, types, strings.
fn btf_file(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HDR_LEN + types.len() + strings.len());
    out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
    out.extend_from_slice(&[1, 0]); // version 1, no flags
    for v in [
        HDR_LEN as u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}

/// The thread that builds the reduced BTF's bytes and finds the ids.
type Builder = std::thread::JoinHandle<Option<(Vec<u8>, StructIds)>>;

/// The reduced BTF in a memfd, named by a /proc/self/fd path for libbpf.
/// The path exists from the start; the bytes are written by a thread of
/// their own while libbpf opens the object and parses the kernel's BTF
/// (see await_built), which it reads only when it relocates, at load.
pub struct CoreBtf {
    file: File,
    path: CString,
    builder: Mutex<Option<Builder>>,
    /// The kernel's own ids of the structs in it, once written.
    struct_ids: OnceLock<StructIds>,
}

impl CoreBtf {
    fn start(kernel: &'static [u8], object_btf: &'static [u8]) -> Option<Self> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the fd
        // it returns is owned by the File from here on.
        let fd = unsafe { libc::memfd_create(c"itersnap-core-btf".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let builder = std::thread::Builder::new()
            .name("core-btf".into())
            .spawn(move || reduce(kernel, &local_names(object_btf)?))
            .ok()?;
        Some(CoreBtf {
            file,
            path,
            builder: Mutex::new(Some(builder)),
            struct_ids: OnceLock::new(),
        })
    }

    /// Waits for the bytes and writes them. Where they could not be built
    /// the kernel's BTF goes there whole: libbpf then searches all of it, as
    /// it would without this copy, only slower.
    fn await_built(&self) -> &StructIds {
        let mut builder = self.builder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = builder.take() {
            let built = handle.join().ok().flatten();
            let ids = match built {
                Some((bytes, ids)) if (&self.file).write_all(&bytes).is_ok() => ids,
                _ => {
                    let whole = crate::features::vmlinux_btf().unwrap_or(&[]);
                    let _ = self.file.set_len(0);
                    let _ = (&self.file).write_all(whole);
                    StructIds::new()
                }
            };
            let _ = self.struct_ids.set(ids);
        }
        self.struct_ids.get_or_init(StructIds::new)
    }

    /// Open options that point libbpf's CO-RE at this BTF. The pointer in
    /// them stays valid as long as `self` (for_object's: the process).
    pub fn open_opts(&self) -> libbpf_rs::libbpf_sys::bpf_object_open_opts {
        libbpf_rs::libbpf_sys::bpf_object_open_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_object_open_opts>() as _,
            btf_custom_path: self.path.as_ptr(),
            ..Default::default()
        }
    }
}

/// Makes sure `object`'s reduced BTF is written before libbpf reads it:
/// called before loading an object opened with its open_opts().
pub fn wait_for(object: &str) {
    if let Some(core) = for_object(object) {
        core.await_built();
    }
}

/// The reduced BTF for one of our objects (by its name in objinfo), started
/// on first use, once per process; `None` (libbpf then searches the
/// kernel's BTF whole) if the kernel has no BTF to reduce or
/// ITERSNAP_CORE_BTF=full asks for the whole search.
pub fn for_object(object: &str) -> Option<&'static CoreBtf> {
    static STARTED: Mutex<Vec<(&'static str, Option<&'static CoreBtf>)>> = Mutex::new(Vec::new());
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, core)) = started.iter().find(|(name, _)| *name == object) {
        return *core;
    }
    let (name, bytes) = crate::objinfo::OBJECTS
        .iter()
        .find(|(name, _)| *name == object)?;
    let core = (|| {
        if std::env::var_os("ITERSNAP_CORE_BTF").is_some_and(|v| v == "full") {
            return None;
        }
        let kernel = crate::features::vmlinux_btf().ok()?;
        let object_btf = crate::objinfo::btf_section(bytes)?;
        // Lives as long as the process: libbpf holds its path.
        Some(&*Box::leak(Box::new(CoreBtf::start(kernel, object_btf)?)))
    })();
    started.push((name, core));
    core
}

/// The kernel's own BTF ids of the named structs, in the order asked (0
/// where the kernel has no such struct): what `bpf_rdonly_cast()` takes,
/// which the reduced copy's ids are not. From `object`'s reduced BTF, which
/// found them on its pass, else from a pass over the kernel's BTF.
pub fn kernel_struct_ids(object: &str, names: &[&str]) -> anyhow::Result<Vec<u32>> {
    if let Some(ids) = for_object(object)
        .map(CoreBtf::await_built)
        .filter(|ids| !ids.is_empty())
    {
        return Ok(names
            .iter()
            .map(|n| ids.get(n.as_bytes()).copied().unwrap_or(0))
            .collect());
    }
    let kernel = crate::features::vmlinux_btf()?;
    scan_struct_ids(kernel, names).ok_or_else(|| anyhow::anyhow!("the kernel's BTF is malformed"))
}

/// kernel_struct_ids() by a pass of its own over the kernel's BTF.
fn scan_struct_ids(kernel: &[u8], names: &[&str]) -> Option<Vec<u32>> {
    let btf = Btf::parse(kernel)?;
    let mut ids = vec![0u32; names.len()];
    for id in 1..=btf.offsets.len() as u32 {
        let rec = btf.record(id)?;
        if kind(u32_at(rec, 4)?) != STRUCT {
            continue;
        }
        let name = btf.name(u32_at(rec, 0)?);
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            if ids[i] == 0 {
                ids[i] = id;
            }
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::btf::types::Struct;
    use libbpf_rs::btf::HasSize;

    /// (size, members as name and attributes) of a struct, as libbpf reads it.
    fn layout(btf: &libbpf_rs::btf::Btf<'_>, name: &str) -> (usize, Vec<String>) {
        let s = btf.type_by_name::<Struct<'_>>(name).expect(name);
        let members = s
            .iter()
            .map(|m| format!("{:?} {:?}", m.name, m.attr))
            .collect();
        (s.size(), members)
    }

    /// Our objects' type names reduce the kernel's BTF to a BTF that libbpf
    /// accepts and that keeps each named type's layout exactly.
    #[test]
    fn reduces_the_kernel_btf() {
        let Ok(kernel) = crate::features::vmlinux_btf() else {
            return; // no BTF on this machine: nothing to check
        };
        let (_, object) = crate::objinfo::OBJECTS[1];
        let names = local_names(crate::objinfo::btf_section(object).unwrap()).unwrap();
        assert!(names.contains(&b"task_struct"[..]), "{names:?}");
        let (small, ids) = reduce(kernel, &names).expect("reduced");
        let full = Btf::parse(kernel).unwrap();
        let reduced = Btf::parse(&small).expect("the reduced BTF parses");
        assert!(reduced.offsets.len() < full.offsets.len() / 10);
        let path = std::env::temp_dir().join(format!("itersnap-core-btf-{}", std::process::id()));
        std::fs::write(&path, &small).unwrap();
        let lib = libbpf_rs::btf::Btf::from_path(&path).expect("libbpf");
        std::fs::remove_file(&path).unwrap();
        let whole = libbpf_rs::btf::Btf::from_path(crate::features::VMLINUX_BTF).unwrap();
        for name in ["task_struct", "file", "dentry", "inode", "mount", "fdtable"] {
            assert_eq!(layout(&lib, name), layout(&whole, name), "{name}");
        }
        // The prefix test leaves out no type the names alone would take.
        let everything = Prefixes(vec![u64::MAX; 65536 / 64]);
        assert_eq!(
            select_types(&full, &names).unwrap().0,
            select_types_with(&full, &names, &everything).unwrap().0
        );
        // The kernel's own ids, for bpf_rdonly_cast(): as a pass of their
        // own and libbpf find them.
        let names = ["task_struct", "file", "dentry", "sock", "unix_sock", "upid"];
        let scanned = scan_struct_ids(kernel, &names).unwrap();
        for (name, id) in names.iter().zip(scanned) {
            assert_eq!(ids.get(name.as_bytes()), Some(&id), "{name}");
            let found = whole.type_by_name::<Struct<'_>>(name).expect(name);
            assert_eq!(found.type_id(), id.into(), "{name}");
        }
    }
}
