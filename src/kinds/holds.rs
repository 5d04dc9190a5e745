//! Who holds a file or a filesystem (`--file`, `--mount`), as `fuser -v`
//! and `lsof FILE` answer it. Not a record of its own: the file kind's
//! records (fds, a process's cwd, root and executable, its mappings) are
//! matched by device and inode: in the kernel (`file_held()` in
//! bpf/kinds/file.bpf.h drops every other fd and mapping before its path is
//! walked), then here, to say which target each record is and how it is
//! held (fuser's access letters).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use super::files::FileEntry;
use super::process::{Process, FD_CWD, FD_MEM, FD_RTD, FD_TXT};

/// How many targets --file and --mount take; each is one or two keys of
/// the kernel's filter (`HOLD_KEYS_MAX`, twice as many).
pub const TARGETS_MAX: usize = 16;

/// A file (`--file`) or a filesystem (`--mount`) whose holders a snapshot
/// lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the command line named it.
    pub name: Vec<u8>,
    /// Its filesystem's device as the kernel encodes it (super_block.s_dev:
    /// MAJOR << 20 | MINOR), as file records carry it: the superblock's
    /// (from mountinfo), and stat(2)'s st_dev if that differs (overlayfs
    /// gives a file's real layer's, btrfs a subvolume's).
    pub devs: Vec<u32>,
    /// Its inode; None for `--mount` (every inode of the device).
    pub ino: Option<u64>,
}

impl Target {
    /// `--file PATH`: the file stat(2) finds (symbolic links followed, as
    /// fuser and lsof do).
    pub fn file(path: &Path) -> Result<Target, String> {
        let meta = std::fs::metadata(path).map_err(|e| stat_error(path, &e))?;
        Ok(Target {
            name: path.as_os_str().as_encoded_bytes().to_vec(),
            devs: devs(path, meta.dev()),
            ino: Some(meta.ino()),
        })
    }

    /// `--mount PATH`: the filesystem PATH is on, or, for a block device,
    /// the filesystem on it (as `fuser -m`).
    pub fn mount(path: &Path) -> Result<Target, String> {
        let meta = std::fs::metadata(path).map_err(|e| stat_error(path, &e))?;
        let devs = if meta.file_type().is_block_device() {
            vec![kernel_dev(meta.rdev())]
        } else {
            devs(path, meta.dev())
        };
        Ok(Target {
            name: path.as_os_str().as_encoded_bytes().to_vec(),
            devs,
            ino: None,
        })
    }

    /// What the kernel matches, for --verbose: "/x: device 0:24 or 0:25,
    /// inode 10".
    pub fn describe(&self) -> String {
        let devs: Vec<String> = self
            .devs
            .iter()
            .map(|d| format!("{}:{}", d >> 20, d & 0xfffff))
            .collect();
        let what = match self.ino {
            Some(ino) => format!("inode {ino}"),
            None => "every inode".into(),
        };
        format!(
            "{}: device {}, {what}",
            crate::text::printable(&self.name),
            devs.join(" or ")
        )
    }

    pub fn matches(&self, f: &FileEntry) -> bool {
        self.holds(f.dev, f.ino)
    }

    /// Whether a file of device `dev` (as the kernel encodes it) and inode
    /// `ino` is this target, or on it.
    pub fn holds(&self, dev: u32, ino: u64) -> bool {
        self.devs.contains(&dev) && self.ino.is_none_or(|want| ino == want)
    }
}

/// The devices a file's records may carry: its superblock's, and st_dev.
fn devs(path: &Path, st_dev: u64) -> Vec<u32> {
    let mut devs = vec![kernel_dev(st_dev)];
    if let Some(dev) = superblock_dev(path).filter(|d| !devs.contains(d)) {
        devs.insert(0, dev);
    }
    devs
}

/// The device of the superblock PATH is on, as the kernel holds it: the
/// major:minor of its mount's line in /proc/self/mountinfo, found by the
/// mount id statx(2) gives (Linux 5.8+; None before, or on a failure).
fn superblock_dev(path: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data, filled by the kernel; the path is
    // NUL-terminated and outlives the call.
    let stx = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let rc = libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &mut stx,
        );
        (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx)
    }?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let mut words = line.split(' ');
        let id: u64 = words.next()?.parse().ok()?;
        let (major, minor) = words.nth(1)?.split_once(':')?;
        (id == stx.stx_mnt_id).then_some(())?;
        Some((major.parse::<u32>().ok()? << 20) | (minor.parse::<u32>().ok()? & 0xfffff))
    })
}

fn stat_error(path: &Path, e: &std::io::Error) -> String {
    let e = e.to_string();
    // "No such file or directory (os error 2)": the errno's text alone.
    let e = e.split(" (os error").next().unwrap_or(&e);
    format!("cannot stat {}: {e}", path.display())
}

/// A user-space dev_t (stat's st_dev) in the kernel's encoding.
pub fn kernel_dev(dev: u64) -> u32 {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    (major << 20) | (minor & 0xfffff)
}

/// How a process holds a target: fuser's access letters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// By an open fd (`f`), one open for writing among them (`F`).
    pub fd: bool,
    pub fd_write: bool,
    /// As its root directory (`r`), working directory (`c`), executable
    /// (`e`), or by a mapping (`m`).
    pub root: bool,
    pub cwd: bool,
    pub exe: bool,
    pub mmap: bool,
}

impl Access {
    /// As `fuser -v` prints it: `F`/`f`, `r`, `c`, `e`, `m`, a `.` for each
    /// one that is not.
    pub fn letters(&self) -> String {
        let letter = |on: bool, c: char| if on { c } else { '.' };
        [
            if self.fd_write {
                'F'
            } else {
                letter(self.fd, 'f')
            },
            letter(self.root, 'r'),
            letter(self.cwd, 'c'),
            letter(self.exe, 'e'),
            letter(self.mmap, 'm'),
        ]
        .into_iter()
        .collect()
    }

    fn is_empty(&self) -> bool {
        *self == Access::default()
    }
}

/// One target a process holds, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub target: Vec<u8>,
    pub access: Access,
    /// The fds it is open on, in order.
    pub fds: Vec<i32>,
}

/// What of `targets` a process holds, in the targets' order: by its open
/// files (`files`), its cwd, root and executable, and its mappings.
pub fn held(targets: &[Target], process: Option<&Process>, files: &[FileEntry]) -> Vec<Held> {
    let slots = process
        .into_iter()
        .flat_map(|p| [&p.cwd, &p.root, &p.exe])
        .flatten();
    // The executable's own mappings are its `e`, not an `m`: fuser and
    // lsof (`txt`, no `mem` line) count it once.
    let exe = process.and_then(|p| p.exe.as_ref());
    let maps = process
        .and_then(|p| p.maps.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(move |m| !exe.is_some_and(|e| e.dev == m.dev && e.ino == m.ino));
    let mut out = Vec::new();
    for target in targets {
        let mut access = Access::default();
        let mut fds = Vec::new();
        for f in files
            .iter()
            .chain(slots.clone())
            .chain(maps.clone())
            .filter(|f| target.matches(f))
        {
            match f.fd {
                FD_CWD => access.cwd = true,
                FD_RTD => access.root = true,
                FD_TXT => access.exe = true,
                FD_MEM => access.mmap = true,
                fd if fd >= 0 => {
                    access.fd = true;
                    access.fd_write |= f.access() != 'r';
                    fds.push(fd);
                }
                _ => {}
            }
        }
        if !access.is_empty() {
            out.push(Held {
                target: target.name.clone(),
                access,
                fds,
            });
        }
    }
    out
}

/// The table's heading, as `fuser -v`'s (the targets' column has none).
pub fn table_heading() -> String {
    format!("{:21}{:<9} {:>5} ACCESS COMMAND", "", "USER", "PID")
}

/// A line of the table: the target's name (with a colon) on its first
/// holder's line, then the holder, as `fuser -v` prints them. A name too
/// long for its column gets a line of its own, as fuser gives it.
pub fn table_lines(name: Option<&[u8]>, user: &str, pid: u32, held: &Held, comm: &[u8]) -> String {
    let mut out = String::new();
    let mut first = String::new();
    if let Some(name) = name {
        first = format!("{}:", crate::text::printable(name));
        if first.chars().count() > 20 {
            out.push_str(&first);
            out.push('\n');
            first.clear();
        }
    }
    // ps cuts a user name past 8 characters to 7 and a `+`.
    let user = crate::text::cut_marked(user, 8);
    out.push_str(&format!(
        "{first:21}{user:<9} {pid:>5} {} {}",
        held.access.letters(),
        crate::text::printable(comm)
    ));
    out
}

/// A row's `holds`: each target the process holds.
#[derive(Debug, Serialize)]
pub struct HeldJson<'a> {
    target: std::borrow::Cow<'a, str>,
    access: String,
    fds: &'a [i32],
}

pub fn json(held: &[Held]) -> Vec<HeldJson<'_>> {
    held.iter()
        .map(|h| HeldJson {
            target: String::from_utf8_lossy(&h.target),
            access: h.access.letters(),
            fds: &h.fds,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fd: i32, dev: u32, ino: u64, f_flags: u32) -> FileEntry {
        FileEntry {
            fd,
            desc: Vec::new(),
            kind: "REG",
            f_flags,
            f_mode: 0,
            i_mode: 0o100644,
            dev,
            ino,
            pos: 0,
            size: 0,
            truncated: false,
            deleted: false,
            socket: None,
        }
    }

    #[test]
    fn letters_are_fusers() {
        let mut a = Access::default();
        assert_eq!(a.letters(), ".....");
        a.fd = true;
        a.exe = true;
        assert_eq!(a.letters(), "f..e.");
        a.fd_write = true;
        a.root = true;
        a.cwd = true;
        a.mmap = true;
        assert_eq!(a.letters(), "Frcem");
    }

    #[test]
    fn a_file_matches_by_device_and_inode_a_mount_by_device() {
        let target = Target {
            name: b"/x".to_vec(),
            devs: vec![8 << 20 | 1],
            ino: Some(12),
        };
        let mount = Target {
            ino: None,
            ..target.clone()
        };
        assert!(target.matches(&file(3, 8 << 20 | 1, 12, 0)));
        assert!(!target.matches(&file(3, 8 << 20 | 1, 13, 0)));
        assert!(!target.matches(&file(3, 8 << 20 | 2, 12, 0)));
        assert!(mount.matches(&file(3, 8 << 20 | 1, 13, 0)));
        assert!(!mount.matches(&file(3, 8 << 20 | 2, 12, 0)));
    }

    #[test]
    fn held_says_how_and_by_which_fds() {
        let t = Target {
            name: b"/x".to_vec(),
            devs: vec![1],
            ino: Some(7),
        };
        let other = Target {
            name: b"/y".to_vec(),
            devs: vec![1],
            ino: Some(8),
        };
        let files = [
            file(3, 1, 7, libc::O_RDONLY as u32),
            file(5, 1, 7, libc::O_RDWR as u32),
            file(6, 2, 7, 0),
        ];
        let held = held(&[t.clone(), other], None, &files);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].target, b"/x");
        assert_eq!(held[0].access.letters(), "F....");
        assert_eq!(held[0].fds, [3, 5]);
    }

    #[test]
    fn user_devices_take_the_kernels_encoding() {
        // 259:3 (an NVMe partition) and 0:52 (tmpfs); a minor past 255.
        assert_eq!(kernel_dev(libc::makedev(259, 3)), 259 << 20 | 3);
        assert_eq!(kernel_dev(libc::makedev(0, 52)), 52);
        assert_eq!(kernel_dev(libc::makedev(8, 300)), 8 << 20 | 300);
    }
}
