//! Open files: one record per fd of a process (`bpf/kinds/file.h`, filled
//! by `bpf/kinds/file.bpf.h`), shown as `readlink /proc/PID/fd/N` and lsof
//! show them. Everything about a file lives here: its layout and decoding,
//! its description, what changed between two snapshots, its JSON and its
//! table line.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Serialize, Serializer};

use crate::kinds::sockets::{self, Socket, SocketJson};
use crate::text::{digits_before, printable, push_decimal, push_json_string};
use crate::wire::Fields;

/// `struct file_rec` up to its path.
pub const FILE_HDR_SIZE: usize = 64;
/// Bytes of path one record carries.
pub const PATH_BUF: usize = 4096;

/// enum path_flags: how `path` is to be read.
pub const PATH_DNAME: u16 = 1 << 0;
pub const PATH_DELETED: u16 = 1 << 1;
pub const PATH_TRUNCATED: u16 = 1 << 2;
pub const PATH_FAULT: u16 = 1 << 3;
pub const PATH_TEXT: u16 = 1 << 4;

/// One `struct file_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRec {
    pub seq: u32,
    pub pid: u32,
    pub fd: i32,
    pub f_flags: u32,
    pub f_mode: u32,
    pub i_mode: u32,
    pub magic: u32,
    pub dev: u32,
    pub path_flags: u16,
    pub ino: u64,
    pub pos: u64,
    pub size: u64,
    /// What readlink shows: decode() turns the kernel's form (see
    /// `bpf/kinds/file.h`) into it.
    pub path: Vec<u8>,
}

/// A file record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<FileRec, &'static str> {
    if f.len() < FILE_HDR_SIZE {
        return Err("file record too short");
    }
    let path_len = (f.u16(36) as usize).min(PATH_BUF);
    if FILE_HDR_SIZE + path_len > f.len() {
        return Err("file path runs past its record");
    }
    let (path_flags, magic, ino) = (f.u16(38), f.u32(28), f.u64(40));
    Ok(FileRec {
        seq,
        pid: f.u32(8),
        fd: f.u32(12) as i32,
        f_flags: f.u32(16),
        f_mode: f.u32(20),
        i_mode: f.u32(24),
        magic,
        dev: f.u32(32),
        path_flags: settled_flags(path_flags),
        ino,
        pos: f.u64(48),
        size: f.u64(56),
        // Its text now, on the thread that decodes, while the bytes are
        // in the cache.
        path: describe_raw(f.slice(FILE_HDR_SIZE, path_len), path_flags, magic, ino),
    })
}

/// An open file as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub fd: i32,
    /// What `readlink /proc/PID/fd/FD` prints (bytes: paths need not be UTF-8).
    pub desc: Vec<u8>,
    pub kind: &'static str,
    pub f_flags: u32,
    pub f_mode: u32,
    pub i_mode: u32,
    pub dev: u32,
    pub ino: u64,
    pub pos: u64,
    pub size: u64,
    /// The path lost leading components to the walk's depth or buffer bound.
    pub truncated: bool,
    /// Its name was unlinked: readlink appends " (deleted)" (lsof's DEL
    /// for a mapped file).
    pub deleted: bool,
    /// A socket's endpoints, state, queues (kinds/sockets.rs). Boxed: most
    /// files are not sockets, and a snapshot holds ~100,000 entries.
    pub socket: Option<Box<Socket>>,
}

impl FileEntry {
    /// lsof's access mode letter: r, w or u.
    pub fn access(&self) -> char {
        match self.f_flags & libc::O_ACCMODE as u32 {
            x if x == libc::O_RDONLY as u32 => 'r',
            x if x == libc::O_WRONLY as u32 => 'w',
            _ => 'u',
        }
    }

    pub fn from_record(mut f: FileRec) -> FileEntry {
        let dname = f.path_flags & PATH_DNAME != 0;
        // decode() made it the text.
        let desc = std::mem::take(&mut f.path);
        // An internal mount's pseudo file (memfd, SysV shm) has no name to
        // unlink: d_dname() calls it deleted, as lsof's DEL does.
        let deleted = f.path_flags & PATH_DELETED != 0 || (dname && desc.ends_with(b" (deleted)"));
        FileEntry {
            deleted,
            fd: f.fd,
            desc,
            kind: file_kind(f.i_mode, f.magic),
            f_flags: f.f_flags,
            f_mode: f.f_mode,
            i_mode: f.i_mode,
            dev: f.dev,
            ino: f.ino,
            pos: f.pos,
            size: f.size,
            truncated: f.path_flags & (PATH_TRUNCATED | PATH_FAULT) != 0,
            socket: None,
        }
    }

    /// lsof's TYPE: the socket's (IPv4, unix, …) for a socket, else ours.
    pub fn lsof_type(&self) -> &'static str {
        self.socket.as_ref().map_or(self.kind, |s| s.lsof_type())
    }

    /// The table's description: lsof's NAME for a socket, else readlink's.
    pub fn description(&self, reader_netns: u64) -> Cow<'_, str> {
        match &self.socket {
            Some(s) => Cow::Owned(s.lsof_name(reader_netns)),
            None => printable(&self.desc),
        }
    }
}

/// A process's files in fd order, one per fd: of two records of one fd
/// the first (the event's) stays.
pub fn by_fd(files: &mut Vec<FileEntry>) {
    // The walk writes a table's fds in order: usually nothing to sort.
    if !files.is_sorted_by_key(|f| f.fd) {
        files.sort_by_key(|f| f.fd);
    }
    files.dedup_by_key(|f| f.fd);
}

const SOCKFS_MAGIC: u32 = 0x534F_434B;
const PIPEFS_MAGIC: u32 = 0x5049_5045;
const ANON_INODE_FS_MAGIC: u32 = 0x0904_1934;
const NSFS_MAGIC: u32 = 0x6e73_6673;
const PIDFS_MAGIC: u32 = 0x5049_4446;
const DMA_BUF_MAGIC: u32 = 0x444d_4142;

/// lsof's TYPE column.
pub fn file_kind(i_mode: u32, magic: u32) -> &'static str {
    // pidfs inodes are S_IFREG inside, but stat(2) reports them typeless,
    // like the anon inodes they replaced.
    if magic == PIDFS_MAGIC {
        return "a_inode";
    }
    match i_mode & libc::S_IFMT {
        libc::S_IFREG => "REG",
        libc::S_IFDIR => "DIR",
        libc::S_IFCHR => "CHR",
        libc::S_IFBLK => "BLK",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "SOCK",
        libc::S_IFLNK => "LINK",
        _ if magic == ANON_INODE_FS_MAGIC || magic == PIDFS_MAGIC => "a_inode",
        _ => "unknown",
    }
}

/// `name:[ino]`, as sockets, pipes and namespaces read; by hand, not with
/// format!: most fds of a busy system are sockets and pipes.
fn with_ino(name: &[u8], ino: u64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let at = crate::text::digits_before(&mut digits, 20, ino, 10);
    let mut out = Vec::with_capacity(name.len() + 3 + digits.len() - at);
    out.extend_from_slice(name);
    out.extend_from_slice(b":[");
    out.extend_from_slice(&digits[at..]);
    out.push(b']');
    out
}

/// The text readlink shows for a file, from its record's path as the
/// kernel wrote it: d_path() for real paths, the filesystem's d_dname()
/// convention for sockets, pipes, anon inodes, namespaces. Built in one
/// allocation: a snapshot can have 100,000 of them.
fn describe_raw(raw: &[u8], flags: u16, magic: u32, ino: u64) -> Vec<u8> {
    let first = &raw[..memchr::memchr(0, raw).unwrap_or(raw.len())];
    // The kernel's d_path() already wrote what readlink shows.
    if flags & PATH_TEXT != 0 {
        return first.to_vec();
    }
    if flags & PATH_DNAME != 0 {
        return match magic {
            SOCKFS_MAGIC => with_ino(b"socket", ino),
            PIPEFS_MAGIC => with_ino(b"pipe", ino),
            PIDFS_MAGIC => b"anon_inode:[pidfd]".to_vec(),
            NSFS_MAGIC => with_ino(first, ino),
            ANON_INODE_FS_MAGIC => [b"anon_inode:", first].concat(),
            DMA_BUF_MAGIC => [b"/", first, b":"].concat(),
            // simple_dname(): pseudo files of internal mounts.
            _ => [b"/", first, b" (deleted)"].concat(),
        };
    }
    // "leaf\0dir\0tmp\0" -> "/tmp/dir/leaf", empty components dropped.
    // A truncated path lacks its leading components: say so instead of
    // passing a suffix off as an absolute path.
    let cut = flags & (PATH_TRUNCATED | PATH_FAULT) != 0;
    let deleted = flags & PATH_DELETED != 0;
    // Each component's NUL becomes its "/": no more room than that (100,000
    // paths of a snapshot stay in memory until it is written).
    let mut path = Vec::with_capacity(
        raw.len().max(1) + if cut { 3 } else { 0 } + if deleted { 10 } else { 0 },
    );
    if cut {
        path.extend_from_slice(b"...");
    }
    for component in raw.rsplit(|&b| b == 0).filter(|c| !c.is_empty()) {
        path.push(b'/');
        path.extend_from_slice(component);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    if deleted {
        path.extend_from_slice(b" (deleted)");
    }
    path
}

/// A record as decode() gives it back after encoding (tests).
#[cfg(test)]
pub fn as_decoded(mut f: FileRec) -> FileRec {
    f.path = describe_raw(&f.path, f.path_flags, f.magic, f.ino);
    f.path_flags = settled_flags(f.path_flags);
    f
}

/// The flags of a record whose path is its text: what describe_raw() read
/// from the kernel's flags besides the path's form.
fn settled_flags(flags: u16) -> u16 {
    PATH_TEXT | (flags & (PATH_TRUNCATED | PATH_FAULT | PATH_DELETED | PATH_DNAME))
}

/// Files opened and closed between two snapshots of one process, by fd; a
/// different description at the same fd is a close and an open.
pub struct Changes<'a> {
    pub opened: Vec<&'a FileEntry>,
    pub closed: Vec<&'a FileEntry>,
}

pub fn changes<'a>(old: &'a [FileEntry], new: &'a [FileEntry]) -> Changes<'a> {
    let before: BTreeMap<i32, &FileEntry> = old.iter().map(|f| (f.fd, f)).collect();
    let after: BTreeMap<i32, &FileEntry> = new.iter().map(|f| (f.fd, f)).collect();
    let same = |a: &FileEntry, b: &FileEntry| a.desc == b.desc && a.ino == b.ino;
    Changes {
        closed: before
            .iter()
            .filter(|(fd, f)| after.get(fd).is_none_or(|n| !same(n, f)))
            .map(|(_, f)| *f)
            .collect(),
        opened: after
            .iter()
            .filter(|(fd, f)| before.get(fd).is_none_or(|o| !same(o, f)))
            .map(|(_, f)| *f)
            .collect(),
    }
}

/// A process's files through serde: the reference the hand-written
/// write_json_fd() and write_json_rest() are tested against
/// (output/json.rs).
#[cfg(test)]
pub struct FilesJson<'a>(pub &'a [FileEntry]);

#[cfg(test)]
impl Serialize for FilesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(json))
    }
}

#[derive(Serialize)]
pub struct FileJson<'a> {
    fd: i32,
    path: Cow<'a, str>,
    /// The path's exact bytes, when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    path_base64: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    access: char,
    /// Octal, exactly as /proc/PID/fdinfo's `flags:` line.
    #[serde(serialize_with = "octal")]
    flags: u32,
    #[serde(serialize_with = "flag_names")]
    flag_names: u32,
    mode: u32,
    /// The kernel's dev_t encoding (MAJOR << 20 | MINOR) as "major:minor".
    #[serde(serialize_with = "major_minor")]
    dev: u32,
    ino: u64,
    pos: u64,
    size: u64,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<SocketJson>,
}

/// The file's JSON object (docs/json.md).
pub fn json(f: &FileEntry) -> FileJson<'_> {
    FileJson {
        fd: f.fd,
        path: String::from_utf8_lossy(&f.desc),
        path_base64: crate::text::base64_if_not_utf8(&f.desc),
        kind: f.kind,
        access: f.access(),
        flags: f.f_flags,
        flag_names: f.f_flags,
        mode: f.i_mode,
        dev: f.dev,
        ino: f.ino,
        pos: f.pos,
        size: f.size,
        truncated: f.truncated,
        socket: f.socket.as_deref().map(sockets::json),
    }
}

/// The same object written by hand, byte for byte what serde_json makes of
/// FileJson (tested), in two parts: a snapshot has ~100,000 of them, and
/// serde_json spent most of their time escaping the keys. First the
/// object's opening and its fd.
pub fn write_json_fd(out: &mut Vec<u8>, f: &FileEntry) {
    out.extend_from_slice(b"{\"fd\":");
    if f.fd < 0 {
        out.push(b'-');
    }
    push_decimal(out, u64::from(f.fd.unsigned_abs()));
}

/// The same open file description, as far as a snapshot tells: every
/// field but the fd equal, and no socket. The JSON after the fd is then
/// the same bytes (an fd inherited across fork, or dup()ed).
pub fn same_description(a: &FileEntry, b: &FileEntry) -> bool {
    a.ino == b.ino
        && a.dev == b.dev
        && a.pos == b.pos
        && a.f_flags == b.f_flags
        && a.f_mode == b.f_mode
        && a.i_mode == b.i_mode
        && a.size == b.size
        && a.truncated == b.truncated
        && a.deleted == b.deleted
        && a.kind == b.kind
        && a.socket.is_none()
        && b.socket.is_none()
        && a.desc == b.desc
}

/// Everything after the fd, to the object's closing brace.
pub fn write_json_rest(out: &mut Vec<u8>, f: &FileEntry) {
    let mut octal_digits = [0u8; 16];
    out.extend_from_slice(b",\"path\":");
    push_json_string(out, &f.desc);
    if let Some(exact) = crate::text::base64_if_not_utf8(&f.desc) {
        // Base64's alphabet needs no escaping.
        out.extend_from_slice(b",\"path_base64\":\"");
        out.extend_from_slice(exact.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(f.kind.as_bytes());
    out.extend_from_slice(b"\",\"access\":\"");
    out.push(f.access() as u8);
    out.extend_from_slice(b"\",\"flags\":\"0");
    let at = digits_before(&mut octal_digits, 16, u64::from(f.f_flags), 8);
    out.extend_from_slice(&octal_digits[at..]);
    out.extend_from_slice(b"\",\"flag_names\":[");
    for (i, name) in open_flag_names_iter(f.f_flags).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(out, name.as_bytes());
    }
    out.extend_from_slice(b"],\"mode\":");
    push_decimal(out, u64::from(f.i_mode));
    out.extend_from_slice(b",\"dev\":\"");
    push_decimal(out, u64::from(f.dev >> 20));
    out.push(b':');
    push_decimal(out, u64::from(f.dev & 0xfffff));
    out.extend_from_slice(b"\",\"ino\":");
    push_decimal(out, f.ino);
    out.extend_from_slice(b",\"pos\":");
    push_decimal(out, f.pos);
    out.extend_from_slice(b",\"size\":");
    push_decimal(out, f.size);
    out.extend_from_slice(if f.truncated {
        b",\"truncated\":true"
    } else {
        b",\"truncated\":false"
    });
    if let Some(socket) = f.socket.as_deref() {
        out.extend_from_slice(b",\"socket\":");
        // Writing to a Vec cannot fail, and SocketJson holds no map keys
        // that are not strings.
        let _ = serde_json::to_writer(&mut *out, &sockets::json(socket));
    }
    out.push(b'}');
}

fn octal<S: Serializer>(flags: &u32, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 16];
    let at = digits_before(&mut buf, 16, u64::from(*flags), 8) - 1;
    buf[at] = b'0';
    s.serialize_str(std::str::from_utf8(&buf[at..]).unwrap_or("0"))
}

fn major_minor<S: Serializer>(dev: &u32, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 24];
    let minor = digits_before(&mut buf, 24, u64::from(dev & 0xfffff), 10);
    buf[minor - 1] = b':';
    let at = digits_before(&mut buf, minor - 1, u64::from(dev >> 20), 10);
    s.serialize_str(std::str::from_utf8(&buf[at..]).unwrap_or("0:0"))
}

fn flag_names<S: Serializer>(flags: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(open_flag_names_iter(*flags))
}

/// The kernel's O_* bits, in /proc/PID/fdinfo's `flags` encoding. Not libc's:
/// glibc defines O_LARGEFILE as 0 on 64-bit targets, the kernel does not.
/// (name, lsof `+fg` abbreviation, bits); composite flags come first.
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const OPEN_FLAGS: &[(&str, &str, u32)] = &[
    ("O_TMPFILE", "TMPF", 0o20_200_000),
    ("O_SYNC", "SYN", 0o4_010_000),
    ("O_APPEND", "AP", 0o2_000),
    ("O_NONBLOCK", "NB", 0o4_000),
    ("O_DSYNC", "DSYN", 0o10_000),
    ("O_ASYNC", "ASYN", 0o20_000),
    ("O_DIRECT", "DIRECT", 0o40_000),
    ("O_LARGEFILE", "", 0o100_000),
    ("O_DIRECTORY", "DIR", 0o200_000),
    ("O_NOFOLLOW", "NOFL", 0o400_000),
    ("O_NOATIME", "NOATM", 0o1_000_000),
    ("O_CLOEXEC", "CX", 0o2_000_000),
    ("O_PATH", "PATH", 0o10_000_000),
];
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const OPEN_FLAGS: &[(&str, &str, u32)] = &[
    ("O_TMPFILE", "TMPF", 0o20_040_000),
    ("O_SYNC", "SYN", 0o4_010_000),
    ("O_APPEND", "AP", 0o2_000),
    ("O_NONBLOCK", "NB", 0o4_000),
    ("O_DSYNC", "DSYN", 0o10_000),
    ("O_ASYNC", "ASYN", 0o20_000),
    ("O_DIRECTORY", "DIR", 0o40_000),
    ("O_NOFOLLOW", "NOFL", 0o100_000),
    ("O_DIRECT", "DIRECT", 0o200_000),
    ("O_LARGEFILE", "", 0o400_000),
    ("O_NOATIME", "NOATM", 0o1_000_000),
    ("O_CLOEXEC", "CX", 0o2_000_000),
    ("O_PATH", "PATH", 0o10_000_000),
];

/// Names of the flags set in `f_flags`, access mode first ("O_RDWR", ...);
/// bits without a name are given in octal.
pub fn open_flag_names(f_flags: u32) -> Vec<Cow<'static, str>> {
    open_flag_names_iter(f_flags).collect()
}

/// The same names, one at a time (JSON writes them without a Vec per file).
pub fn open_flag_names_iter(f_flags: u32) -> impl Iterator<Item = Cow<'static, str>> {
    let access = match f_flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    };
    // A flag's bits are taken once: O_SYNC includes O_DSYNC's bit.
    let mut rest = f_flags & !0o3;
    let mut table = OPEN_FLAGS.iter();
    let named = std::iter::from_fn(move || {
        for &(name, _, bits) in table.by_ref() {
            if rest & bits == bits {
                rest &= !bits;
                return Some(Cow::Borrowed(name));
            }
        }
        // Bits without a name, in octal, last.
        let unnamed = std::mem::take(&mut rest);
        (unnamed != 0).then(|| Cow::Owned(format!("0{unnamed:o}")))
    });
    std::iter::once(Cow::Borrowed(access)).chain(named)
}

/// lsof `+fg` style: "CX,NB"; the access mode is in the FD column already and
/// O_LARGEFILE (always set on 64-bit) is left out.
pub fn open_flags_short(f_flags: u32) -> Cow<'static, str> {
    let mut rest = f_flags & !0o3;
    let mut out: Vec<&'static str> = Vec::new();
    for &(_, short, bits) in OPEN_FLAGS {
        if rest & bits == bits {
            if !short.is_empty() {
                out.push(short);
            }
            rest &= !bits;
        }
    }
    match out.as_slice() {
        [] => Cow::Borrowed("-"),
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(out.join(",")),
    }
}

/// The length of `open_flags_short(f_flags)`, without building it.
pub fn open_flags_short_len(f_flags: u32) -> usize {
    let mut rest = f_flags & !0o3;
    let mut len = 0;
    for &(_, short, bits) in OPEN_FLAGS {
        if rest & bits == bits {
            if !short.is_empty() {
                len += short.len() + usize::from(len > 0);
            }
            rest &= !bits;
        }
    }
    len.max(1)
}

/// The FLAGS column's width for these files: its heading's, or the
/// longest flags, so that DESCRIPTION stays in line.
pub fn flags_width<'a>(files: impl Iterator<Item = &'a FileEntry>) -> usize {
    files
        .map(|f| open_flags_short_len(f.f_flags))
        .max()
        .unwrap_or(0)
        .max(FLAGS_MIN_WIDTH)
}

/// FLAGS is at least as wide as `-`, `CX,NB` and its heading need.
const FLAGS_MIN_WIDTH: usize = 8;

/// The table's heading over files, after `indent` spaces.
pub fn write_heading(w: &mut dyn Write, indent: usize, flags_width: usize) -> io::Result<()> {
    writeln!(
        w,
        "{:indent$}{:>6} {:<7} {:<flags_width$} DESCRIPTION",
        "", "FD", "TYPE", "FLAGS"
    )
}

/// "fd 3u REG /tmp/x": a file as a change line names it.
pub fn summary(f: &FileEntry, reader_netns: u64) -> String {
    format!(
        "fd {}{} {} {}",
        f.fd,
        f.access(),
        f.lsof_type(),
        f.description(reader_netns)
    )
}

/// Where a file line's parts go, the same for every file of a snapshot.
pub struct LineLayout {
    pub indent: usize,
    /// FLAGS' width (flags_width()).
    pub flags_width: usize,
    /// itersnap's own network namespace: sockets of others say theirs.
    pub reader_netns: u64,
}

/// One file under its task: `{indent}{fd:>5}{access} {type:<7} {flags:<8}
/// {description}`. Built by hand in a reused buffer: a snapshot can have
/// 100,000 of these lines and the formatting machinery was most of their cost.
pub fn write_line(
    w: &mut dyn Write,
    line: &mut Vec<u8>,
    layout: &LineLayout,
    f: &FileEntry,
) -> io::Result<()> {
    fn pad_to(line: &mut Vec<u8>, text: &[u8], width: usize, right: bool) {
        let fill = width.saturating_sub(text.len());
        if right {
            line.resize(line.len() + fill, b' ');
        }
        line.extend_from_slice(text);
        if !right {
            line.resize(line.len() + fill, b' ');
        }
    }
    let mut fd = [0u8; 12];
    line.clear();
    line.resize(layout.indent, b' ');
    match slot_label(f) {
        // What a process holds without an fd: lsof's cwd, rtd, txt, mem, DEL.
        Some(label) => {
            pad_to(line, label.as_bytes(), 6, true);
        }
        None => {
            pad_to(line, format_int(&mut fd, f.fd), 5, true);
            line.push(f.access() as u8);
        }
    }
    line.push(b' ');
    pad_to(line, f.lsof_type().as_bytes(), 7, false);
    line.push(b' ');
    pad_to(
        line,
        open_flags_short(f.f_flags).as_bytes(),
        layout.flags_width,
        false,
    );
    line.push(b' ');
    let description = f.description(layout.reader_netns);
    // lsof's DEL says it: the name goes without readlink's " (deleted)".
    let description = match slot_label(f) {
        Some("DEL") => description
            .strip_suffix(" (deleted)")
            .unwrap_or(&description),
        _ => &description,
    };
    line.extend_from_slice(description.as_bytes());
    if f.truncated {
        line.extend_from_slice(b" [truncated]");
    }
    line.push(b'\n');
    w.write_all(line)
}

/// lsof's FD column for what is not an fd (bpf/kinds/file.h's enum
/// file_slot): None for an fd.
pub fn slot_label(f: &FileEntry) -> Option<&'static str> {
    match f.fd {
        -1 => Some("cwd"),
        -2 => Some("rtd"),
        -3 => Some("txt"),
        -4 if f.deleted => Some("DEL"),
        -4 => Some("mem"),
        fd if fd < 0 => Some("?"),
        _ => None,
    }
}

/// Decimal digits of `n` in `buf`, without the formatting machinery.
fn format_int(buf: &mut [u8; 12], n: i32) -> &[u8] {
    let mut at = digits_before(buf, 12, u64::from(n.unsigned_abs()), 10);
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::file_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(file_rec, fd), 12);
        assert_eq!(offset_of!(file_rec, dev), 32);
        assert_eq!(offset_of!(file_rec, path_len), 36);
        assert_eq!(offset_of!(file_rec, path_flags), 38);
        assert_eq!(offset_of!(file_rec, ino), 40);
        assert_eq!(offset_of!(file_rec, size), 56);
        assert_eq!(offset_of!(file_rec, path), FILE_HDR_SIZE);
        assert_eq!(size_of::<file_rec>(), FILE_HDR_SIZE + PATH_BUF);
    }

    fn file(path: &[u8], flags: u16, magic: u32) -> FileRec {
        FileRec {
            seq: 0,
            pid: 1,
            fd: 3,
            f_flags: 0,
            f_mode: 0,
            i_mode: 0,
            magic,
            dev: 0,
            path_flags: flags,
            ino: 42,
            pos: 0,
            size: 0,
            path: path.to_vec(),
        }
    }

    fn describe(f: &mut FileRec) -> Vec<u8> {
        describe_raw(&f.path, f.path_flags, f.magic, f.ino)
    }

    #[test]
    fn paths_read_like_readlink() {
        assert_eq!(describe(&mut file(b"f\0tmp\0", 0, 0)), b"/tmp/f");
        assert_eq!(describe(&mut file(b"", 0, 0)), b"/");
        assert_eq!(
            describe(&mut file(b"f\0d9\0", PATH_TRUNCATED, 0)),
            b".../d9/f"
        );
        assert_eq!(
            describe(&mut file(b"/tmp/x (deleted)\0", PATH_TEXT, 0)),
            b"/tmp/x (deleted)"
        );
        assert_eq!(
            describe(&mut file(b"x\0", PATH_DELETED, 0)),
            b"/x (deleted)".to_vec()
        );
        assert_eq!(
            describe(&mut file(b"dentry\0", PATH_DNAME, SOCKFS_MAGIC)),
            b"socket:[42]"
        );
        assert_eq!(
            describe(&mut file(b"[eventfd]\0", PATH_DNAME, ANON_INODE_FS_MAGIC)),
            b"anon_inode:[eventfd]"
        );
        assert_eq!(
            describe(&mut file(b"net\0", PATH_DNAME, NSFS_MAGIC)),
            b"net:[42]"
        );
        for ino in [0, 7, 1234567890, u64::MAX] {
            assert_eq!(with_ino(b"pipe", ino), format!("pipe:[{ino}]").as_bytes());
        }
    }

    /// The hand-built file line is the one `format!` would give.
    #[test]
    fn file_lines_match_their_format() {
        for (fd, desc, flags, truncated) in [
            (0, &b"/dev/null"[..], 0o100000, false),
            (42, &b"x\ny"[..], 0o2004002, true),
            (i32::MAX, &b"socket:[12]"[..], 0o2, false),
            (123456, &b""[..], 0o40000000, false),
        ] {
            let f = FileEntry {
                fd,
                desc: desc.to_vec(),
                kind: "REG",
                f_flags: flags,
                f_mode: 0,
                i_mode: 0,
                dev: 0,
                ino: 0,
                pos: 0,
                size: 0,
                truncated,
                deleted: false,
                socket: None,
            };
            let mark = if truncated { " [truncated]" } else { "" };
            let want = format!(
                "{:10}{:>5}{} {:<7} {:<8} {}{}\n",
                "",
                f.fd,
                f.access(),
                f.kind,
                open_flags_short(f.f_flags),
                printable(&f.desc),
                mark
            );
            let mut out = Vec::new();
            let layout = LineLayout {
                indent: 10,
                flags_width: 8,
                reader_netns: 0,
            };
            write_line(&mut out, &mut Vec::new(), &layout, &f).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// What a process holds without an fd is named as lsof's FD column
    /// names it, where an fd and its access letter go.
    #[test]
    fn slots_are_named_as_lsof_names_them() {
        let f = |fd, deleted| FileEntry {
            fd,
            desc: b"/x".to_vec(),
            kind: "REG",
            f_flags: 0,
            f_mode: 0,
            i_mode: 0,
            dev: 0,
            ino: 0,
            pos: 0,
            size: 0,
            truncated: false,
            deleted,
            socket: None,
        };
        let names: Vec<_> = [
            (-1, false),
            (-2, false),
            (-3, false),
            (-4, false),
            (-4, true),
            (-9, false),
        ]
        .into_iter()
        .map(|(fd, deleted)| slot_label(&f(fd, deleted)))
        .collect();
        let want = [
            Some("cwd"),
            Some("rtd"),
            Some("txt"),
            Some("mem"),
            Some("DEL"),
            Some("?"),
        ];
        assert_eq!(names, want);
        assert_eq!(slot_label(&f(0, false)), None);
        let layout = LineLayout {
            indent: 2,
            flags_width: 5,
            reader_netns: 0,
        };
        let mut out = Vec::new();
        write_line(&mut out, &mut Vec::new(), &layout, &f(-1, false)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "     cwd REG     -     /x\n"
        );
    }

    /// The hand-written numbers read as format! would write them.
    #[test]
    fn numbers_match_their_format() {
        for v in [0, 1, 0o2104002, 0o40000000, u32::MAX] {
            let mut out = Vec::new();
            octal(&v, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(out, format!("\"0{v:o}\"").into_bytes());
            let mut out = Vec::new();
            major_minor(&v, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(out, format!("\"{}:{}\"", v >> 20, v & 0xfffff).into_bytes());
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn names_fdinfo_flags() {
        // fdinfo "flags: 02104002" of an O_RDWR|O_NONBLOCK|O_CLOEXEC file.
        assert_eq!(
            open_flag_names(0o2104002),
            ["O_RDWR", "O_NONBLOCK", "O_LARGEFILE", "O_CLOEXEC"]
        );
        assert_eq!(open_flags_short(0o2104002), "NB,CX");
        assert_eq!(open_flags_short(0o100000), "-");
        assert_eq!(open_flag_names(0o4010001), ["O_WRONLY", "O_SYNC"]);
        assert_eq!(open_flag_names(0o40000000), ["O_RDONLY", "040000000"]);
        for flags in [0, 0o100000, 0o2104002, 0o4010001, 0o2016000, 0o37777777777] {
            assert_eq!(
                open_flags_short_len(flags),
                open_flags_short(flags).len(),
                "{flags:o}"
            );
        }
    }
}
