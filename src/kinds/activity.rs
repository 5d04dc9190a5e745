//! What a thread is doing (`--activity`): one record per thread
//! (`bpf/kinds/activity.h`, filled by `bpf/kinds/activity.bpf.h`): the
//! syscall it is in, from the user registers its kernel entry saved, as
//! `/proc/PID/syscall` shows them, and the file behind its fd argument.
//! Its layout and decoding, what a snapshot holds of it, its JSON and its
//! table cell. (The kernel function it sleeps in, WCHAN, comes from its
//! stack: kinds/stacks.rs.)

use serde::Serialize;

use super::files::{self, FileEntry};
use crate::wire::Fields;

/// `struct activity_rec`'s size.
pub const ACTIVITY_SIZE: usize = 88;

/// enum activity_flags.
pub const ACTIVITY_RUNNING: u32 = 1 << 0;
pub const ACTIVITY_KTHREAD: u32 = 1 << 1;

/// One `struct activity_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRec {
    pub seq: u32,
    pub pid: u32,
    /// The syscall number; -1: not in a syscall.
    pub nr: i32,
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
    pub flags: u32,
}

/// An activity record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<ActivityRec, &'static str> {
    if f.len() < ACTIVITY_SIZE {
        return Err("activity record too short");
    }
    let mut args = [0u64; 6];
    for (i, arg) in args.iter_mut().enumerate() {
        *arg = f.u64(16 + 8 * i);
    }
    Ok(ActivityRec {
        seq,
        pid: f.u32(8),
        nr: f.u32(12) as i32,
        args,
        sp: f.u64(64),
        pc: f.u64(72),
        flags: f.u32(80),
    })
}

/// What a thread is doing, as a snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// In a syscall.
    Syscall(Syscall),
    /// Not in a syscall: in user space, or stopped outside one
    /// (/proc/PID/syscall: `-1 SP PC`).
    User { sp: u64, pc: u64 },
    /// On a CPU: its registers are not saved (/proc/PID/syscall: `running`).
    Running,
    /// A kernel thread, never in a syscall (/proc/PID/syscall shows the
    /// zeroed registers it was created with: `0 0x0 …`).
    Kernel,
}

/// The syscall a thread is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    pub nr: i32,
    /// Its name for this architecture (src/syscalls.rs), if known.
    pub name: Option<&'static str>,
    /// The six raw arguments, as the registers hold them.
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
    /// The first argument, for the syscalls whose first argument is an fd,
    /// and that fd's file in the snapshot (its process's open files).
    pub fd: Option<i32>,
    pub file: Option<FileEntry>,
}

/// Syscalls whose first argument is a file descriptor.
const FD_FIRST: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "accept",
    "accept4",
    "connect",
    "bind",
    "listen",
    "shutdown",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "ioctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "syncfs",
    "sync_file_range",
    "fstat",
    "fstatfs",
    "getdents",
    "getdents64",
    "lseek",
    "ftruncate",
    "fallocate",
    "fadvise64",
    "fchmod",
    "fchown",
    "fchdir",
    "close",
    "dup",
    "dup2",
    "dup3",
    "sendfile",
    "splice",
    "tee",
    "readahead",
    "fgetxattr",
    "fsetxattr",
    "flistxattr",
    "fremovexattr",
    "inotify_add_watch",
    "inotify_rm_watch",
    "timerfd_settime",
    "timerfd_gettime",
    "io_uring_enter",
    "io_uring_register",
];

impl Activity {
    /// From the thread's record; `name`: its syscall's name for this
    /// architecture (src/syscalls.rs, above this layer), if known; `files`:
    /// its process's open files, for the file behind an fd argument.
    pub fn from_record(
        r: &ActivityRec,
        name: impl Fn(i32) -> Option<&'static str>,
        files: &[FileEntry],
    ) -> Activity {
        if r.flags & ACTIVITY_KTHREAD != 0 {
            return Activity::Kernel;
        }
        if r.flags & ACTIVITY_RUNNING != 0 {
            return Activity::Running;
        }
        if r.nr < 0 {
            return Activity::User { sp: r.sp, pc: r.pc };
        }
        let name = name(r.nr);
        // An fd is an int: the register's low 32 bits.
        let fd = name
            .filter(|n| FD_FIRST.contains(n))
            .map(|_| r.args[0] as u32 as i32);
        let file = fd.and_then(|fd| files.iter().find(|f| f.fd == fd).cloned());
        Activity::Syscall(Syscall {
            nr: r.nr,
            name,
            args: r.args,
            sp: r.sp,
            pc: r.pc,
            fd,
            file,
        })
    }

    /// The line /proc/PID/task/TID/syscall would have shown (a kernel
    /// thread's is its zeroed registers').
    pub fn proc_line(&self) -> String {
        match self {
            Activity::Running => "running".into(),
            Activity::Kernel => format!("0{}", " 0x0".repeat(8)),
            Activity::User { sp, pc } => format!("-1 {sp:#x} {pc:#x}"),
            Activity::Syscall(s) => {
                let args: Vec<String> = s.args.iter().map(|a| format!("{a:#x}")).collect();
                format!("{} {} {:#x} {:#x}", s.nr, args.join(" "), s.sp, s.pc)
            }
        }
    }

    /// JSON `activity`: what the thread is doing, in a word.
    pub fn word(&self) -> &'static str {
        match self {
            Activity::Syscall(_) => "syscall",
            Activity::User { .. } => "user",
            Activity::Running => "running",
            Activity::Kernel => "kernel",
        }
    }

    /// The table's SYSCALL cell: `read(3)`, `clock_nanosleep`, the number
    /// of one without a name, `-` outside a syscall, `running` on a CPU.
    pub fn cell(&self) -> String {
        match self {
            Activity::Syscall(s) => {
                let name = s
                    .name
                    .map_or_else(|| format!("syscall_{}", s.nr), str::to_string);
                match s.fd {
                    Some(fd) => format!("{name}({fd})"),
                    None => name,
                }
            }
            Activity::Running => "running".into(),
            Activity::User { .. } | Activity::Kernel => "-".into(),
        }
    }
}

/// JSON `syscall` (docs/json.md).
#[derive(Serialize)]
pub struct SyscallJson<'a> {
    nr: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    /// Hexadecimal, as /proc/PID/syscall prints them (pointers exceed
    /// what a JSON number holds exactly).
    args: Vec<String>,
    sp: String,
    pc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<files::FileJson<'a>>,
}

/// The thread's syscall's JSON object, if it is in one.
pub fn json(a: &Activity) -> Option<SyscallJson<'_>> {
    let Activity::Syscall(s) = a else {
        return None;
    };
    Some(SyscallJson {
        nr: s.nr,
        name: s.name,
        args: s.args.iter().map(|a| format!("{a:#x}")).collect(),
        sp: format!("{:#x}", s.sp),
        pc: format!("{:#x}", s.pc),
        fd: s.fd,
        file: s.file.as_ref().map(files::json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::activity_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(activity_rec, pid), 8);
        assert_eq!(offset_of!(activity_rec, nr), 12);
        assert_eq!(offset_of!(activity_rec, args), 16);
        assert_eq!(offset_of!(activity_rec, sp), 64);
        assert_eq!(offset_of!(activity_rec, pc), 72);
        assert_eq!(offset_of!(activity_rec, flags), 80);
        assert_eq!(size_of::<activity_rec>(), ACTIVITY_SIZE);
    }

    fn rec(nr: i32, flags: u32) -> ActivityRec {
        ActivityRec {
            seq: 1,
            pid: 7,
            nr,
            args: [3, 0x7ff0, 4096, 0, 0, 0],
            sp: 0x7ffd_0000,
            pc: 0x7f00_1234,
            flags,
        }
    }

    #[test]
    fn lines_are_proc_pid_syscalls() {
        let read = Activity::from_record(&rec(0, 0), |nr| (nr == 0).then_some("read"), &[]);
        assert_eq!(
            read.proc_line(),
            "0 0x3 0x7ff0 0x1000 0x0 0x0 0x0 0x7ffd0000 0x7f001234"
        );
        assert_eq!(read.cell(), "read(3)");
        assert_eq!(
            Activity::from_record(&rec(-1, 0), |_| None, &[]).proc_line(),
            "-1 0x7ffd0000 0x7f001234"
        );
        let running = Activity::from_record(&rec(0, ACTIVITY_RUNNING), |_| None, &[]);
        assert_eq!(running.proc_line(), "running");
        assert!(json(&running).is_none());
        let kernel = Activity::from_record(&rec(-1, ACTIVITY_KTHREAD), |_| None, &[]);
        assert_eq!(kernel.proc_line(), "0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0");
        assert_eq!(kernel.cell(), "-");
    }
}
