//! Process identity as `ps aux` and lsof show it: the process record
//! (`bpf/kinds/proc.h`, filled by `bpf/kinds/proc.bpf.h`: memory, tty, pid
//! namespace, cgroup), the process's cwd, root and executable (file records
//! at lsof's `cwd`, `rtd`, `txt`), its command line (kinds/cmdline.rs), its
//! mapped files (kinds/maps.rs), and its user and group names, looked up in
//! the system's user database here. Everything about a process as a whole
//! lives here: decoding, assembly, changes, JSON and table cells.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

use serde::Serialize;

use crate::kinds::cmdline::Cmdline;
use crate::kinds::files::FileEntry;
use crate::kinds::maps;
use crate::text::{base64, base64_if_not_utf8, printable};
use crate::wire::Fields;

/// `struct proc_rec` up to its cgroup path.
pub const PROC_HDR_SIZE: usize = 120;
pub const CGROUP_BUF: usize = 1024;
const TTY_NAME_BUF: usize = 32;

/// enum proc_flags.
pub const PROC_MM: u32 = 1 << 0;
pub const PROC_RSS_SUMMED: u32 = 1 << 1;
pub const PROC_TTY: u32 = 1 << 2;
pub const PROC_CGROUP: u32 = 1 << 3;
pub const PROC_CGROUP_TRUNCATED: u32 = 1 << 4;
pub const PROC_PIDNS: u32 = 1 << 5;

/// enum file_slot (bpf/kinds/file.h): the fds of what a process holds
/// without an fd.
pub const FD_CWD: i32 = -1;
pub const FD_RTD: i32 = -2;
pub const FD_TXT: i32 = -3;
pub const FD_MEM: i32 = -4;

/// One `struct proc_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRec {
    pub seq: u32,
    pub pid: u32,
    pub flags: u32,
    pub vsz_pages: u64,
    pub rss_file_pages: u64,
    pub rss_anon_pages: u64,
    pub rss_shmem_pages: u64,
    pub tty_major: u32,
    pub tty_minor: u32,
    pub pidns_ino: u32,
    pub ns_pid: u32,
    pub pidns_level: u32,
    pub cgroup_id: u64,
    pub taken_ns: u64,
    pub tty_name: Vec<u8>,
    /// NUL-terminated names, leaf first.
    pub cgroup: Vec<u8>,
}

/// A process record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<ProcRec, &'static str> {
    if f.len() < PROC_HDR_SIZE {
        return Err("process record too short");
    }
    let cgroup_len = (f.u16(68) as usize).min(CGROUP_BUF);
    if PROC_HDR_SIZE + cgroup_len > f.len() {
        return Err("cgroup path runs past its record");
    }
    Ok(ProcRec {
        seq,
        pid: f.u32(8),
        flags: f.u32(12),
        vsz_pages: f.u64(16),
        rss_file_pages: f.u64(24),
        rss_anon_pages: f.u64(32),
        rss_shmem_pages: f.u64(40),
        tty_major: f.u32(48),
        tty_minor: f.u32(52),
        pidns_ino: f.u32(56),
        ns_pid: f.u32(60),
        pidns_level: f.u32(64),
        cgroup_id: f.u64(72),
        taken_ns: f.u64(80),
        tty_name: f.c_bytes(88, TTY_NAME_BUF),
        cgroup: f.slice(PROC_HDR_SIZE, cgroup_len).to_vec(),
    })
}

/// A process's controlling terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tty {
    pub major: u32,
    pub minor: u32,
    /// As ps's TTY column: "pts/3", "tty1", "ttyS0".
    pub name: String,
}

impl Tty {
    /// /proc/PID/stat's tty_nr: new_encode_dev() of the device.
    pub fn nr(&self) -> u64 {
        let (major, minor) = (u64::from(self.major), u64::from(self.minor));
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }
}

/// The name ps gives a terminal the kernel calls `name` (tty_struct.name):
/// a pseudo-terminal slave "ptsN" is "pts/N"; the others are their
/// device's name under /dev.
fn tty_name(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("pts/{n}"),
        _ => name.into_owned(),
    }
}

/// A process as `ps aux` and lsof see it, beside its task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// ps's RSS and VSZ, KiB; 0 without an address space (a kernel thread).
    pub rss_kib: u64,
    pub vsz_kib: u64,
    pub tty: Option<Tty>,
    /// The cgroup v2 path, as /proc/PID/cgroup's `0::` line.
    pub cgroup: Option<Vec<u8>>,
    pub cgroup_truncated: bool,
    /// The pid namespace's inode, and the pid inside it.
    pub pidns: Option<u32>,
    pub ns_pid: Option<u32>,
    /// Its working directory, root and executable (FD_CWD, FD_RTD, FD_TXT).
    pub cwd: Option<FileEntry>,
    pub root: Option<FileEntry>,
    pub exe: Option<FileEntry>,
    /// None for a kernel thread, a zombie, or a kernel that cannot read it.
    pub cmdline: Option<Cmdline>,
    /// Command lines were read (false: the kernel cannot, before 5.18).
    pub cmdline_read: bool,
    /// --maps: one entry per mapped file (FD_MEM), else None.
    pub maps: Option<Vec<FileEntry>>,
    /// Names of the effective uid and gid (or the ids, as ps falls back).
    pub user: String,
    pub group: String,
    /// Read after the event although the task was captured in it.
    pub read_after_event: Vec<&'static str>,
}

impl Process {
    /// From its record (if one came); `names`: look up the user and group
    /// names (else the ids, as for a test's fixed output).
    pub fn from_record(rec: Option<&ProcRec>, euid: u32, egid: u32, names: bool) -> Process {
        let mut p = Process {
            user: if names {
                user_name(euid)
            } else {
                euid.to_string()
            },
            group: if names {
                group_name(egid)
            } else {
                egid.to_string()
            },
            ..Process::default()
        };
        let Some(r) = rec else {
            return p;
        };
        let page_kib = page_size() / 1024;
        if r.flags & PROC_MM != 0 {
            let rss = r
                .rss_file_pages
                .saturating_add(r.rss_anon_pages)
                .saturating_add(r.rss_shmem_pages);
            p.rss_kib = rss.saturating_mul(page_kib);
            p.vsz_kib = r.vsz_pages.saturating_mul(page_kib);
        }
        if r.flags & PROC_TTY != 0 {
            p.tty = Some(Tty {
                major: r.tty_major,
                minor: r.tty_minor,
                name: tty_name(&r.tty_name),
            });
        }
        if r.flags & PROC_CGROUP != 0 {
            p.cgroup = Some(cgroup_path(&r.cgroup));
            p.cgroup_truncated = r.flags & PROC_CGROUP_TRUNCATED != 0;
        }
        if r.flags & PROC_PIDNS != 0 {
            p.pidns = Some(r.pidns_ino);
            p.ns_pid = Some(r.ns_pid);
        }
        p
    }

    /// Takes one of the process's slot files (cwd, rtd, txt, mem).
    pub fn add_slot(&mut self, f: FileEntry) {
        match f.fd {
            FD_CWD => self.cwd = self.cwd.take().or(Some(f)),
            FD_RTD => self.root = self.root.take().or(Some(f)),
            FD_TXT => self.exe = self.exe.take().or(Some(f)),
            _ => self.maps.get_or_insert_with(Vec::new).push(f),
        }
    }

    /// The lsof rows before a process's fds: cwd, rtd, txt, then its mapped
    /// files but the executable (lsof lists it once, as txt).
    /// The executable is told by its inode, or by its path: on overlayfs
    /// the mapping is of the layer's file, the executable the overlay's.
    pub fn slot_files(&self) -> impl Iterator<Item = &FileEntry> {
        let exe = self.exe.as_ref();
        let is_exe = move |m: &FileEntry| {
            exe.is_some_and(|e| (e.dev, e.ino) == (m.dev, m.ino) || e.desc == m.desc)
        };
        let maps = self.maps.iter().flatten();
        self.cwd
            .iter()
            .chain(self.root.iter())
            .chain(self.exe.iter())
            .chain(maps.filter(move |m| !is_exe(m)))
    }
}

/// "leaf\0parent\0" (names up to the root) → "/parent/leaf"; the root is "/".
fn cgroup_path(names: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = names.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut path = Vec::with_capacity(names.len() + 1);
    for p in &parts {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096).max(1024)
}

/// Names looked up once per run: a snapshot asks for the same few ids
/// thousands of times, and --interval every tick.
static USERS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);
static GROUPS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);

fn cached(
    cache: &Mutex<Option<HashMap<u32, String>>>,
    id: u32,
    look: fn(u32) -> Option<String>,
) -> String {
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_insert_with(|| look(id).unwrap_or_else(|| id.to_string()))
        .clone()
}

/// The user database's name for uid (NSS, as ps asks it), else the number.
pub fn user_name(uid: u32) -> String {
    cached(&USERS, uid, |uid| {
        let mut buf = vec![0u8; 4096];
        // SAFETY: passwd is plain data filled by getpwuid_r, which writes
        // its strings into buf (of the length given) and sets result.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc == 0 && !result.is_null() && !pw.pw_name.is_null())
                .then(|| CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned())
        }
    })
}

/// A cgroup as --cgroup names it: a cgroup2 directory (`/sys/fs/cgroup/...`)
/// or a path as /proc/PID/cgroup's `0::` line shows it (from the cgroup2
/// root); returns it as given and its id (the directory's inode: the
/// kernel's kernfs id).
pub fn cgroup_id(path: &str) -> Result<(String, u64), String> {
    use std::os::unix::fs::MetadataExt;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let is_cgroup2 = |p: &std::path::Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statfs fills a plain struct for a NUL-terminated path.
        unsafe {
            let mut s: libc::statfs = std::mem::zeroed();
            libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == CGROUP2_SUPER_MAGIC
        }
    };
    let direct = std::path::PathBuf::from(path);
    let found = if direct.is_dir() && is_cgroup2(&direct) {
        Some(direct)
    } else {
        // Below the cgroup2 mount (mountinfo's fifth field).
        std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| {
                        l.split(" - ")
                            .nth(1)
                            .is_some_and(|t| t.starts_with("cgroup2 "))
                    })
                    .and_then(|l| l.split(' ').nth(4).map(std::path::PathBuf::from))
            })
            .map(|root| root.join(path.trim_start_matches('/')))
            .filter(|p| p.is_dir() && is_cgroup2(p))
    };
    let dir = found.ok_or_else(|| {
        format!("no cgroup {path}: neither a cgroup2 directory nor a path below the cgroup2 mount")
    })?;
    let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((path.to_string(), meta.ino()))
}

/// The uid of a user name in the user database (as `ps -u` takes it).
pub fn user_id(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: as user_name, with getpwnam_r and a NUL-terminated name.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(pw.pw_uid)
    }
}

/// The gid of a group name in the group database.
pub fn group_id(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: as user_name, with getgrnam_r and a NUL-terminated name.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(gr.gr_gid)
    }
}

/// The group database's name for gid, else the number.
pub fn group_name(gid: u32) -> String {
    cached(&GROUPS, gid, |gid| {
        let mut buf = vec![0u8; 4096];
        // SAFETY: as user_name, with getgrgid_r.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrgid_r(
                gid,
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc == 0 && !result.is_null() && !gr.gr_name.is_null())
                .then(|| CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned())
        }
    })
}

/// A process changed its working directory between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwdChange {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// RSS grew between two snapshots by at least RSS_GROWTH_MIN_KIB and
/// RSS_GROWTH_MIN_PERCENT: a process filling memory, not page-cache noise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssGrowth {
    pub from_kib: u64,
    pub to_kib: u64,
}

pub const RSS_GROWTH_MIN_KIB: u64 = 1024;
pub const RSS_GROWTH_MIN_PERCENT: u64 = 10;

/// What changed in one process (an exec is the task's: kinds/task.rs).
pub struct Changes {
    pub cwd: Option<CwdChange>,
    pub rss: Option<RssGrowth>,
}

pub fn changes(old: &Process, new: &Process) -> Changes {
    let cwd_of = |p: &Process| p.cwd.as_ref().map(|f| f.desc.clone());
    let (from, to) = (cwd_of(old), cwd_of(new));
    let grown = new.rss_kib.saturating_sub(old.rss_kib);
    Changes {
        cwd: match (from, to) {
            (Some(from), Some(to)) if from != to => Some(CwdChange { from, to }),
            _ => None,
        },
        rss: (grown >= RSS_GROWTH_MIN_KIB
            && grown.saturating_mul(100) >= old.rss_kib.saturating_mul(RSS_GROWTH_MIN_PERCENT))
        .then_some(RssGrowth {
            from_kib: old.rss_kib,
            to_kib: new.rss_kib,
        }),
    }
}

/// The process's JSON fields (docs/json.md), flattened into its task's.
#[derive(Serialize)]
pub struct ProcessJson<'a> {
    cmdline: Option<crate::kinds::cmdline::ArgsJson<'a>>,
    /// Only where it differs from `cmdline`: /proc's argv, title padding
    /// and all.
    #[serde(skip_serializing_if = "Option::is_none")]
    cmdline_raw: Option<Vec<Cow<'a, str>>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cmdline_truncated: bool,
    /// Every argument's bytes, when one is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    cmdline_base64: Option<Vec<String>>,
    exe: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe_base64: Option<String>,
    cwd: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd_base64: Option<String>,
    root: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_base64: Option<String>,
    user: &'a str,
    group: &'a str,
    rss_kib: u64,
    vsz_kib: u64,
    tty: Option<&'a str>,
    tty_nr: u64,
    cgroup: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_base64: Option<String>,
    pidns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maps: Option<maps::MapsJson<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    read_after_event: &'a [&'static str],
}

/// `pid` is the row's, to tell whether the namespace's pid differs.
pub fn json(p: &Process, pid: u32) -> ProcessJson<'_> {
    fn path(f: &Option<FileEntry>) -> Option<Cow<'_, str>> {
        f.as_ref().map(|f| String::from_utf8_lossy(&f.desc))
    }
    fn path_bytes(f: &Option<FileEntry>) -> Option<String> {
        f.as_ref().and_then(|f| base64_if_not_utf8(&f.desc))
    }
    let cmdline_base64 = p.cmdline.as_ref().and_then(|c| {
        c.args_iter()
            .any(|a| std::str::from_utf8(a).is_err())
            .then(|| c.args_iter().map(base64).collect())
    });
    ProcessJson {
        cmdline: p.cmdline.as_ref().map(Cmdline::json),
        cmdline_raw: p
            .cmdline
            .as_ref()
            .filter(|c| c.padded())
            .map(Cmdline::raw_json),
        cmdline_truncated: p.cmdline.as_ref().is_some_and(|c| c.truncated),
        cmdline_base64,
        exe: path(&p.exe),
        exe_base64: path_bytes(&p.exe),
        cwd: path(&p.cwd),
        cwd_base64: path_bytes(&p.cwd),
        root: path(&p.root),
        root_base64: path_bytes(&p.root),
        user: &p.user,
        group: &p.group,
        rss_kib: p.rss_kib,
        vsz_kib: p.vsz_kib,
        tty: p.tty.as_ref().map(|t| t.name.as_str()),
        tty_nr: p.tty.as_ref().map_or(0, Tty::nr),
        cgroup: p.cgroup.as_deref().map(String::from_utf8_lossy),
        cgroup_base64: p.cgroup.as_deref().and_then(base64_if_not_utf8),
        pidns: p.pidns,
        ns_pid: p.ns_pid.filter(|&n| n != pid),
        maps: p.maps.as_deref().map(maps::MapsJson),
        read_after_event: &p.read_after_event,
    }
}

/// A table cell of a process column (kinds/task.rs's Column), unpadded.
pub fn cell(p: Option<&Process>, column: ProcessColumn) -> Cow<'_, str> {
    let Some(p) = p else {
        return Cow::Borrowed("-");
    };
    fn path(f: &Option<FileEntry>) -> Cow<'_, str> {
        match f {
            Some(f) => printable(&f.desc),
            None => Cow::Borrowed("-"),
        }
    }
    match column {
        ProcessColumn::User => Cow::Borrowed(&p.user),
        ProcessColumn::Group => Cow::Borrowed(&p.group),
        ProcessColumn::Exe => path(&p.exe),
        ProcessColumn::Cwd => path(&p.cwd),
        ProcessColumn::Root => path(&p.root),
        ProcessColumn::Rss => Cow::Owned(p.rss_kib.to_string()),
        ProcessColumn::Vsz => Cow::Owned(p.vsz_kib.to_string()),
        ProcessColumn::Tty => Cow::Borrowed(p.tty.as_ref().map_or("?", |t| t.name.as_str())),
        ProcessColumn::Cgroup => match &p.cgroup {
            Some(c) => printable(c),
            None => Cow::Borrowed("-"),
        },
    }
}

/// The table columns a process (not its task) fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessColumn {
    User,
    Group,
    Exe,
    Cwd,
    Root,
    Rss,
    Vsz,
    Tty,
    Cgroup,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_matches_the_c_struct() {
        use crate::bpf::seqiter::types::proc_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(proc_rec, pid), 8);
        assert_eq!(offset_of!(proc_rec, flags), 12);
        assert_eq!(offset_of!(proc_rec, vsz_pages), 16);
        assert_eq!(offset_of!(proc_rec, rss_file_pages), 24);
        assert_eq!(offset_of!(proc_rec, rss_anon_pages), 32);
        assert_eq!(offset_of!(proc_rec, rss_shmem_pages), 40);
        assert_eq!(offset_of!(proc_rec, tty_major), 48);
        assert_eq!(offset_of!(proc_rec, tty_minor), 52);
        assert_eq!(offset_of!(proc_rec, pidns_ino), 56);
        assert_eq!(offset_of!(proc_rec, ns_pid), 60);
        assert_eq!(offset_of!(proc_rec, pidns_level), 64);
        assert_eq!(offset_of!(proc_rec, cgroup_len), 68);
        assert_eq!(offset_of!(proc_rec, cgroup_id), 72);
        assert_eq!(offset_of!(proc_rec, taken_ns), 80);
        assert_eq!(offset_of!(proc_rec, tty_name), 88);
        assert_eq!(offset_of!(proc_rec, cgroup), PROC_HDR_SIZE);
        assert_eq!(size_of::<proc_rec>(), PROC_HDR_SIZE + CGROUP_BUF);
    }

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(tty_name(b"pts12"), "pts/12");
        assert_eq!(tty_name(b"tty1"), "tty1");
        assert_eq!(tty_name(b"ttyS0"), "ttyS0");
        assert_eq!(tty_name(b"ptsx"), "ptsx");
        let pts = Tty {
            major: 136,
            minor: 300,
            name: "pts/300".into(),
        };
        // MKDEV(136, 300) as /proc/PID/stat's tty_nr encodes it.
        assert_eq!(pts.nr(), (300 & 0xff) | (136 << 8) | ((300 & !0xff) << 12));
    }

    #[test]
    fn cgroup_paths_read_root_first() {
        assert_eq!(
            cgroup_path(b"session-1.scope\0user.slice\0"),
            b"/user.slice/session-1.scope"
        );
        assert_eq!(cgroup_path(b""), b"/");
    }

    #[test]
    fn rss_growth_needs_both_thresholds() {
        let p = |rss_kib| Process {
            rss_kib,
            ..Process::default()
        };
        assert!(changes(&p(1000), &p(40_000)).rss.is_some());
        assert!(changes(&p(100_000), &p(102_000)).rss.is_none()); // 2%
        assert!(changes(&p(100), &p(600)).rss.is_none()); // < 1 MiB
    }

    #[test]
    fn unknown_ids_are_numbers() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(3_999_999_999), "3999999999");
    }
}
