//! The event's own details: one record per trigger (`bpf/kinds/event.h`,
//! filled inside the event by `bpf/kinds/event.bpf.h`): a syscall's, probe's
//! or raw tracepoint's arguments, the strings its path arguments point to,
//! execve's argv, a socket address, an exiting task's code, a signal's
//! siginfo, a tracefs tracepoint's record. Its layout and decoding; which
//! arguments of a syscall the kernel side reads (`Reads`, from
//! `signature`); what a snapshot holds of it (`Details`), its JSON and its
//! line under the table's header, strace-like.

use std::borrow::Cow;

use serde_json::{json, Map};

use super::files::{self, FileEntry};
use crate::text::{base64_if_not_utf8, printable};
use crate::wire::Fields;

/// `struct event_rec`'s size up to `data`.
pub const EVENT_HDR_SIZE: usize = 96;
/// Bytes of items per event (EVENT_DATA).
pub const EVENT_DATA: usize = 4096;

/// enum event_flags.
pub const EVENT_ARGS: u32 = 1 << 0;
pub const EVENT_EXIT: u32 = 1 << 1;
pub const EVENT_SIGINFO: u32 = 1 << 2;
pub const EVENT_ITEMS_CUT: u32 = 1 << 3;
pub const EVENT_ARGV_MORE: u32 = 1 << 4;
pub const EVENT_RECORD: u32 = 1 << 5;
pub const EVENT_SIG_NOINFO: u32 = 1 << 6;
pub const EVENT_SIG_PRIV: u32 = 1 << 7;

/// enum event_item_src: 0-5 the string `args[i]` points to, or these.
pub const ITEM_ARGV: u8 = 6;
pub const ITEM_ADDR: u8 = 7;
/// enum event_item_flags.
pub const ITEM_CUT: u8 = 1 << 0;
pub const ITEM_FAULT: u8 = 1 << 1;

/// One `struct event_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRec {
    pub seq: u32,
    pub flags: u32,
    pub args: [u64; 6],
    pub exit_code: i32,
    pub si_errno: i32,
    pub si_code: i32,
    pub record_len: u32,
    pub si_fields: [u8; 16],
    /// The used part of `data[]`.
    pub data: Vec<u8>,
}

/// An event record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<EventRec, &'static str> {
    if f.len() < EVENT_HDR_SIZE {
        return Err("event record too short");
    }
    let data_len = (f.u32(12) as usize)
        .min(EVENT_DATA)
        .min(f.len() - EVENT_HDR_SIZE);
    let mut args = [0u64; 6];
    for (i, arg) in args.iter_mut().enumerate() {
        *arg = f.u64(16 + 8 * i);
    }
    let mut si_fields = [0u8; 16];
    si_fields.copy_from_slice(f.slice(80, 16));
    Ok(EventRec {
        seq,
        flags: f.u32(8),
        args,
        exit_code: f.u32(64) as i32,
        si_errno: f.u32(68) as i32,
        si_code: f.u32(72) as i32,
        record_len: f.u32(76),
        si_fields,
        data: f.slice(EVENT_HDR_SIZE, data_len).to_vec(),
    })
}

/// One item of `data[]`: a string (its NUL dropped) or an address's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub src: u8,
    pub flags: u8,
    pub bytes: Vec<u8>,
}

impl EventRec {
    /// The tracefs record, if the event has one.
    pub fn record(&self) -> Option<&[u8]> {
        (self.flags & EVENT_RECORD != 0)
            .then(|| &self.data[..(self.record_len as usize).min(self.data.len())])
    }

    /// The items after the record, each 4-aligned; a malformed one ends them.
    pub fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut at = match self.record() {
            Some(r) => (r.len() + 3) & !3,
            None => 0,
        };
        while at + 4 <= self.data.len() {
            let len = u16::from_ne_bytes([self.data[at], self.data[at + 1]]) as usize;
            let (src, flags) = (self.data[at + 2], self.data[at + 3]);
            let Some(bytes) = self.data.get(at + 4..at + 4 + len) else {
                break;
            };
            // A string's bytes end at its NUL.
            let bytes = match (src, memchr::memchr(0, bytes)) {
                (ITEM_ADDR, _) | (_, None) => bytes,
                (_, Some(nul)) => &bytes[..nul],
            };
            items.push(Item {
                src,
                flags,
                bytes: bytes.to_vec(),
            });
            at = (at + 4 + len + 3) & !3;
        }
        items
    }
}

/// How an argument is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A C int (the register's low 32 bits, signed).
    Int,
    /// A size or count.
    Uint,
    /// An address or an opaque value, in hex.
    Hex,
    /// A file descriptor: shown with its file, as `strace -y` does.
    Fd,
    /// A directory fd of the *at() calls: AT_FDCWD or an fd.
    DirFd,
    /// A user string (a path), read inside the event.
    Path,
    /// execve's argv, read inside the event.
    Argv,
    /// A socket address (its length the next argument), read inside the event.
    Addr,
    /// open()'s flags.
    OpenFlags,
    /// AT_* flags.
    AtFlags,
    /// A mode, in octal.
    Mode,
    /// A signal number.
    Signal,
}

use Arg::*;

type Signature = &'static [(&'static str, Arg)];

const PATH_MODE: Signature = &[("filename", Path), ("mode", Mode)];
const DFD_PATH_MODE: Signature = &[("dfd", DirFd), ("filename", Path), ("mode", Mode)];
const PATH_STATBUF: Signature = &[("filename", Path), ("statbuf", Hex)];
const TWO_PATHS: Signature = &[("oldname", Path), ("newname", Path)];
const PATH_ONLY: Signature = &[("pathname", Path)];
const FD_ONLY: Signature = &[("fd", Fd)];
const FD_BUF_COUNT: Signature = &[("fd", Fd), ("buf", Hex), ("count", Uint)];
const FD_BUF_COUNT_POS: Signature = &[("fd", Fd), ("buf", Hex), ("count", Uint), ("pos", Int)];
const FD_VEC: Signature = &[("fd", Fd), ("vec", Hex), ("vlen", Uint)];
const FD_MSG: Signature = &[("fd", Fd), ("msg", Hex), ("flags", Hex)];
const FD_ADDR: Signature = &[("fd", Fd), ("uservaddr", Addr), ("addrlen", Int)];
const PATH_OWNER: Signature = &[("filename", Path), ("user", Int), ("group", Int)];
const XATTR_GET: Signature = &[
    ("pathname", Path),
    ("name", Path),
    ("value", Hex),
    ("size", Uint),
];
const KILL: Signature = &[("pid", Int), ("sig", Signal)];
const EXIT: Signature = &[("error_code", Int)];

/// The arguments of the syscalls whose arguments are worth naming (the
/// families that take paths, fds, addresses), by their x86-64 names; their
/// names as the kernel's tracefs formats give them (bpftrace's
/// `args.filename`).
const SIGNATURES: &[(&str, Signature)] = &[
    (
        "open",
        &[("filename", Path), ("flags", OpenFlags), ("mode", Mode)],
    ),
    (
        "openat",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("flags", OpenFlags),
            ("mode", Mode),
        ],
    ),
    (
        "openat2",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("how", Hex),
            ("usize", Uint),
        ],
    ),
    ("creat", &[("pathname", Path), ("mode", Mode)]),
    (
        "execve",
        &[("filename", Path), ("argv", Argv), ("envp", Hex)],
    ),
    (
        "execveat",
        &[
            ("fd", DirFd),
            ("filename", Path),
            ("argv", Argv),
            ("envp", Hex),
            ("flags", AtFlags),
        ],
    ),
    ("stat", PATH_STATBUF),
    ("lstat", PATH_STATBUF),
    ("statfs", &[("pathname", Path), ("buf", Hex)]),
    (
        "newfstatat",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("statbuf", Hex),
            ("flag", AtFlags),
        ],
    ),
    (
        "statx",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("flags", AtFlags),
            ("mask", Hex),
            ("buffer", Hex),
        ],
    ),
    ("access", &[("filename", Path), ("mode", Int)]),
    (
        "faccessat",
        &[("dfd", DirFd), ("filename", Path), ("mode", Int)],
    ),
    (
        "faccessat2",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("mode", Int),
            ("flags", AtFlags),
        ],
    ),
    ("unlink", PATH_ONLY),
    ("rmdir", PATH_ONLY),
    (
        "unlinkat",
        &[("dfd", DirFd), ("pathname", Path), ("flag", AtFlags)],
    ),
    ("mkdir", &[("pathname", Path), ("mode", Mode)]),
    (
        "mkdirat",
        &[("dfd", DirFd), ("pathname", Path), ("mode", Mode)],
    ),
    ("mknod", &[("filename", Path), ("mode", Mode), ("dev", Hex)]),
    (
        "mknodat",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("mode", Mode),
            ("dev", Hex),
        ],
    ),
    ("rename", TWO_PATHS),
    ("link", TWO_PATHS),
    ("symlink", TWO_PATHS),
    (
        "renameat",
        &[
            ("olddfd", DirFd),
            ("oldname", Path),
            ("newdfd", DirFd),
            ("newname", Path),
        ],
    ),
    (
        "renameat2",
        &[
            ("olddfd", DirFd),
            ("oldname", Path),
            ("newdfd", DirFd),
            ("newname", Path),
            ("flags", Hex),
        ],
    ),
    (
        "linkat",
        &[
            ("olddfd", DirFd),
            ("oldname", Path),
            ("newdfd", DirFd),
            ("newname", Path),
            ("flags", AtFlags),
        ],
    ),
    (
        "symlinkat",
        &[("oldname", Path), ("newdfd", DirFd), ("newname", Path)],
    ),
    ("readlink", &[("path", Path), ("buf", Hex), ("bufsiz", Int)]),
    (
        "readlinkat",
        &[
            ("dfd", DirFd),
            ("pathname", Path),
            ("buf", Hex),
            ("bufsiz", Int),
        ],
    ),
    ("chdir", &[("filename", Path)]),
    ("chroot", &[("filename", Path)]),
    ("chmod", PATH_MODE),
    ("fchmodat", DFD_PATH_MODE),
    ("chown", PATH_OWNER),
    ("lchown", PATH_OWNER),
    (
        "fchownat",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("user", Int),
            ("group", Int),
            ("flag", AtFlags),
        ],
    ),
    ("truncate", &[("path", Path), ("length", Int)]),
    (
        "utimensat",
        &[
            ("dfd", DirFd),
            ("filename", Path),
            ("utimes", Hex),
            ("flags", AtFlags),
        ],
    ),
    (
        "mount",
        &[
            ("dev_name", Path),
            ("dir_name", Path),
            ("type", Path),
            ("flags", Hex),
            ("data", Hex),
        ],
    ),
    ("umount2", &[("name", Path), ("flags", Hex)]),
    ("swapon", &[("specialfile", Path), ("swap_flags", Hex)]),
    ("swapoff", &[("specialfile", Path)]),
    ("getxattr", XATTR_GET),
    ("lgetxattr", XATTR_GET),
    (
        "inotify_add_watch",
        &[("fd", Fd), ("pathname", Path), ("mask", Hex)],
    ),
    ("connect", FD_ADDR),
    ("bind", &[("fd", Fd), ("umyaddr", Addr), ("addrlen", Int)]),
    (
        "sendto",
        &[
            ("fd", Fd),
            ("buff", Hex),
            ("len", Uint),
            ("flags", Hex),
            ("addr", Addr),
            ("addr_len", Int),
        ],
    ),
    ("read", FD_BUF_COUNT),
    ("write", FD_BUF_COUNT),
    ("pread64", FD_BUF_COUNT_POS),
    ("pwrite64", FD_BUF_COUNT_POS),
    ("readv", FD_VEC),
    ("writev", FD_VEC),
    ("sendmsg", FD_MSG),
    ("recvmsg", FD_MSG),
    (
        "recvfrom",
        &[
            ("fd", Fd),
            ("ubuf", Hex),
            ("size", Uint),
            ("flags", Hex),
            ("addr", Hex),
            ("addr_len", Hex),
        ],
    ),
    ("close", FD_ONLY),
    ("fsync", FD_ONLY),
    ("fdatasync", FD_ONLY),
    ("fchdir", FD_ONLY),
    ("syncfs", FD_ONLY),
    ("fstat", &[("fd", Fd), ("statbuf", Hex)]),
    ("fstatfs", &[("fd", Fd), ("buf", Hex)]),
    ("ioctl", &[("fd", Fd), ("cmd", Hex), ("arg", Hex)]),
    ("fcntl", &[("fd", Fd), ("cmd", Int), ("arg", Hex)]),
    ("flock", &[("fd", Fd), ("cmd", Int)]),
    ("lseek", &[("fd", Fd), ("offset", Int), ("whence", Int)]),
    ("ftruncate", &[("fd", Fd), ("length", Int)]),
    ("fchmod", &[("fd", Fd), ("mode", Mode)]),
    ("fchown", &[("fd", Fd), ("user", Int), ("group", Int)]),
    (
        "getdents64",
        &[("fd", Fd), ("dirent", Hex), ("count", Uint)],
    ),
    ("dup", &[("fildes", Fd)]),
    ("dup2", &[("oldfd", Fd), ("newfd", Int)]),
    (
        "dup3",
        &[("oldfd", Fd), ("newfd", Int), ("flags", OpenFlags)],
    ),
    ("listen", &[("fd", Fd), ("backlog", Int)]),
    ("shutdown", &[("fd", Fd), ("how", Int)]),
    (
        "accept",
        &[("fd", Fd), ("upeer_sockaddr", Hex), ("upeer_addrlen", Hex)],
    ),
    (
        "accept4",
        &[
            ("fd", Fd),
            ("upeer_sockaddr", Hex),
            ("upeer_addrlen", Hex),
            ("flags", Hex),
        ],
    ),
    (
        "sendfile",
        &[
            ("out_fd", Fd),
            ("in_fd", Fd),
            ("offset", Hex),
            ("count", Uint),
        ],
    ),
    (
        "mmap",
        &[
            ("addr", Hex),
            ("len", Uint),
            ("prot", Hex),
            ("flags", Hex),
            ("fd", Fd),
            ("off", Hex),
        ],
    ),
    (
        "epoll_wait",
        &[
            ("epfd", Fd),
            ("events", Hex),
            ("maxevents", Int),
            ("timeout", Int),
        ],
    ),
    (
        "socket",
        &[("family", Int), ("type", Hex), ("protocol", Int)],
    ),
    ("kill", KILL),
    ("tkill", KILL),
    ("tgkill", &[("tgid", Int), ("pid", Int), ("sig", Signal)]),
    ("exit", EXIT),
    ("exit_group", EXIT),
];

/// A syscall's named arguments, for those worth naming.
pub fn signature(syscall: &str) -> Option<Signature> {
    SIGNATURES
        .iter()
        .find(|(name, _)| *name == syscall)
        .map(|&(_, sig)| sig)
}

/// What the kernel side reads inside the event for a signature (the
/// `cfg_event_*` constants of bpf/kinds/event.bpf.h): bit i of `strs`
/// when `args[i]` is a string, 1 + the index of argv and of a socket
/// address (0: none), and the index of the address's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub strs: u32,
    pub argv: u32,
    pub addr: u32,
    pub addrlen: u32,
}

pub fn reads(sig: Signature) -> Reads {
    let mut r = Reads::default();
    for (i, &(_, arg)) in sig.iter().enumerate().take(6) {
        match arg {
            Path => r.strs |= 1 << i,
            Argv => r.argv = i as u32 + 1,
            Addr => {
                r.addr = i as u32 + 1;
                r.addrlen = (i as u32 + 1).min(5);
            }
            _ => {}
        }
    }
    r
}

/// A string the event read, with what went wrong reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserString {
    pub bytes: Vec<u8>,
    /// Longer than the event reads (1,023 bytes): the rest left out.
    pub cut: bool,
    /// Not in memory at the event (a page out): not read.
    pub unread: bool,
}

impl From<&Item> for UserString {
    fn from(i: &Item) -> UserString {
        UserString {
            bytes: i.bytes.clone(),
            cut: i.flags & ITEM_CUT != 0,
            unread: i.flags & ITEM_FAULT != 0,
        }
    }
}

/// An argument's value, as its signature reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Hex(u64),
    /// An fd, and its file in the caller's snapshot (captured in the event).
    Fd(i32, Option<Box<FileEntry>>),
    Str(UserString),
    Argv {
        args: Vec<UserString>,
        /// More elements than the event reads (32), or no room for all.
        more: bool,
    },
    Addr(Option<SockAddr>),
    OpenFlags(u32),
    AtFlags(u32),
    Mode(u32),
    Signal(i32),
}

/// A socket address an argument pointed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet {
        addr: std::net::IpAddr,
        port: u16,
    },
    Unix(Vec<u8>),
    /// Another family: its number.
    Other(u16),
}

/// The event's details, as a snapshot holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// Named arguments, in order (a syscall's by its signature, a probe's
    /// arg0-arg5, a raw tracepoint's by its prototype).
    pub args: Vec<(Cow<'static, str>, Value)>,
    /// The six raw values, when the event had arguments.
    pub raw_args: Option<[u64; 6]>,
    /// The exiting task's code: status << 8, or the killing signal.
    pub exit_code: Option<i32>,
    pub siginfo: Option<SigInfo>,
    /// A tracefs tracepoint's fields, by the names its format gives.
    pub fields: Vec<(String, FieldValue)>,
}

/// A signal's siginfo at signal_generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    /// si_code; None: sent without one (SEND_SIG_NOINFO: kill() from
    /// the kernel's side, SI_USER) or by the kernel (SEND_SIG_PRIV, SI_KERNEL).
    pub code: i32,
    pub errno: i32,
    /// si_pid and si_uid (codes <= 0, SIGCHLD).
    pub pid_uid: Option<(i32, u32)>,
    /// si_addr (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP with a code > 0).
    pub addr: Option<u64>,
    /// si_status (SIGCHLD).
    pub status: Option<i32>,
}

/// A tracefs field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Int(i64),
    Uint(u64),
    Text(Vec<u8>),
    Bytes(Vec<u8>),
}

const SI_KERNEL: i32 = 0x80;
const SIGCHLD: i32 = 17;
const FAULT_SIGNALS: [i32; 5] = [4, 5, 7, 8, 11]; // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV

impl SigInfo {
    fn from_record(r: &EventRec, signal: i32) -> SigInfo {
        let i32_at = |at: usize| i32::from_ne_bytes(r.si_fields[at..at + 4].try_into().unwrap());
        let mut info = SigInfo {
            code: r.si_code,
            errno: r.si_errno,
            pid_uid: None,
            addr: None,
            status: None,
        };
        if r.flags & EVENT_SIG_NOINFO != 0 {
            info.code = 0; // SI_USER
            return info;
        }
        if r.flags & EVENT_SIG_PRIV != 0 {
            info.code = SI_KERNEL;
            return info;
        }
        if info.code <= 0 || signal == SIGCHLD {
            info.pid_uid = Some((i32_at(0), i32_at(4) as u32));
            if signal == SIGCHLD && info.code > 0 {
                info.status = Some(i32_at(8));
            }
        } else if FAULT_SIGNALS.contains(&signal) && info.code != SI_KERNEL {
            info.addr = Some(u64::from_ne_bytes(r.si_fields[..8].try_into().unwrap()));
        }
        info
    }
}

/// Where the details' names and files come from, from the layers above.
pub struct Context<'a> {
    /// The event's syscall (its signature names the arguments), if any.
    pub syscall: Option<&'a str>,
    /// A signal's number, for its siginfo.
    pub signal: Option<i32>,
    /// A raw tracepoint's or probe's argument names.
    pub arg_names: &'a [String],
    /// A tracefs record's fields.
    pub record_fields: &'a [RecordField],
    /// The caller's open files, as captured in the event.
    pub files: &'a [FileEntry],
}

/// What a trigger's program reads inside the event (its `cfg_event_*`
/// constants) and what names it: set up before load from the trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub reads: Reads,
    /// The event is a task's exit: its exit code is read.
    pub exit: bool,
    /// A raw tracepoint's arguments to copy (its prototype's, at most 6).
    pub nargs: u32,
    /// Bytes of a tracefs record to copy (at most EVENT_DATA).
    pub record_len: u32,
    /// The offset of a syscall's six arguments in the tracefs record
    /// (syscalls:sys_enter_*), when it has them.
    pub record_args: Option<u32>,
    pub names: Names,
}

impl Setup {
    /// For --on-syscall NAME.
    pub fn syscall(name: &str) -> Setup {
        Setup {
            reads: signature(name).map(reads).unwrap_or_default(),
            exit: false,
            ..Setup::default()
        }
    }

    /// For a tracefs tracepoint, from its format file: its fields, and for
    /// syscalls:sys_enter_NAME the syscall's arguments (after
    /// __syscall_nr), read as --on-syscall NAME reads them.
    pub fn tracefs(category: &str, name: &str, format: &str) -> Setup {
        let fields = parse_format(format);
        let end = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
        let mut setup = Setup {
            exit: name == "sched_process_exit",
            record_len: end.min(EVENT_DATA) as u32,
            ..Setup::default()
        };
        if let (Some(call), "syscalls") = (name.strip_prefix("sys_enter_"), category) {
            let first = fields.iter().find(|f| f.name != "__syscall_nr");
            if let Some(first) = first {
                setup.record_args = Some(first.offset as u32);
                setup.reads = signature(call).map(reads).unwrap_or_default();
            }
        }
        setup.names.fields = fields;
        setup
    }

    /// For a raw tracepoint: its prototype's argument names (without the
    /// leading `__data`).
    pub fn raw_tracepoint(name: &str, args: Vec<String>) -> Setup {
        Setup {
            exit: name == "sched_process_exit",
            nargs: args.len().min(6) as u32,
            names: Names {
                args,
                fields: Vec::new(),
            },
            ..Setup::default()
        }
    }
}

/// What the trigger's setup learnt to name an event's details with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// A raw tracepoint's arguments (its prototype's, from the kernel's BTF).
    pub args: Vec<String>,
    /// A tracefs tracepoint's fields (its format file).
    pub fields: Vec<RecordField>,
}

/// One field of a tracefs format (`field:TYPE NAME; offset:N; size:N; signed:N;`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordField {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    /// `char NAME[N]`: a string, up to its NUL.
    pub text: bool,
}

/// The fields of a tracefs `format` file, common_* left out.
pub fn parse_format(format: &str) -> Vec<RecordField> {
    let mut fields = Vec::new();
    for line in format.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or_default();
        let get = |key: &str| {
            parts
                .clone()
                .find_map(|p| p.strip_prefix(key))
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let (Some(offset), Some(size)) = (get("offset:"), get("size:")) else {
            continue;
        };
        let signed = get("signed:") == Some(1);
        // `char comm[16]`, `unsigned long args[6]`, `const char * filename`.
        let name_part = decl.rsplit([' ', '*']).next().unwrap_or_default();
        let (name, array) = match name_part.split_once('[') {
            Some((n, _)) => (n, true),
            None => (name_part, false),
        };
        if name.is_empty() || name.starts_with("common_") || decl.starts_with("__data_loc") {
            continue;
        }
        let text = array && decl.starts_with("char ");
        fields.push(RecordField {
            name: name.to_string(),
            offset,
            size,
            signed,
            text,
        });
    }
    fields
}

impl Details {
    /// From the event's record; `ctx` names what it holds.
    pub fn from_record(r: &EventRec, ctx: &Context<'_>) -> Details {
        let mut d = Details::default();
        if r.flags & EVENT_EXIT != 0 {
            d.exit_code = Some(r.exit_code);
        }
        if let (true, Some(signal)) = (r.flags & EVENT_SIGINFO != 0, ctx.signal) {
            d.siginfo = Some(SigInfo::from_record(r, signal));
        }
        if let Some(record) = r.record() {
            d.fields = ctx
                .record_fields
                .iter()
                .filter_map(|f| Some((f.name.clone(), field_value(record, f)?)))
                .collect();
        }
        if r.flags & EVENT_ARGS == 0 {
            return d;
        }
        d.raw_args = Some(r.args);
        let items = r.items();
        let string = |src: u8| items.iter().find(|i| i.src == src).map(UserString::from);
        match ctx.syscall.and_then(signature) {
            Some(sig) => {
                for (i, &(name, arg)) in sig.iter().enumerate().take(6) {
                    let raw = r.args[i];
                    let value = match arg {
                        Int => Value::Int(raw as u32 as i32 as i64),
                        Uint => Value::Uint(raw),
                        Hex => Value::Hex(raw),
                        Fd | DirFd => {
                            let fd = raw as u32 as i32;
                            let file = ctx.files.iter().find(|f| f.fd == fd && fd >= 0);
                            Value::Fd(fd, file.map(|f| Box::new(f.clone())))
                        }
                        Path => match string(i as u8) {
                            Some(s) => Value::Str(s),
                            None => Value::Hex(raw),
                        },
                        Argv => Value::Argv {
                            args: items
                                .iter()
                                .filter(|i| i.src == ITEM_ARGV)
                                .map(UserString::from)
                                .collect(),
                            more: r.flags & (EVENT_ARGV_MORE | EVENT_ITEMS_CUT) != 0,
                        },
                        Addr => Value::Addr(
                            items
                                .iter()
                                .find(|i| i.src == ITEM_ADDR)
                                .and_then(|i| sockaddr(&i.bytes)),
                        ),
                        OpenFlags => Value::OpenFlags(raw as u32),
                        AtFlags => Value::AtFlags(raw as u32),
                        Mode => Value::Mode(raw as u32),
                        Signal => Value::Signal(raw as u32 as i32),
                    };
                    d.args.push((Cow::Borrowed(name), value));
                }
            }
            None => {
                // A probe's, a raw tracepoint's or an unnamed syscall's: as
                // many as are named, else all six, in hex.
                let n = if ctx.arg_names.is_empty() {
                    6
                } else {
                    ctx.arg_names.len().min(6)
                };
                for i in 0..n {
                    let name = ctx
                        .arg_names
                        .get(i)
                        .map_or_else(|| Cow::Owned(format!("arg{i}")), |n| Cow::Owned(n.clone()));
                    d.args.push((name, Value::Hex(r.args[i])));
                }
            }
        }
        d
    }

    /// The exit code as wait() reports it: (status, signal, core dumped).
    pub fn exit(&self) -> Option<(Option<i32>, Option<i32>, bool)> {
        let code = self.exit_code?;
        let signal = code & 0x7f;
        Some(if signal == 0 {
            (Some((code >> 8) & 0xff), None, false)
        } else {
            (None, Some(signal), code & 0x80 != 0)
        })
    }
}

/// A tracefs field from the record's bytes (bounds-checked: None past them).
fn field_value(record: &[u8], f: &RecordField) -> Option<FieldValue> {
    let bytes = record.get(f.offset..f.offset + f.size)?;
    if f.text {
        let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
        return Some(FieldValue::Text(bytes[..end].to_vec()));
    }
    let unsigned = match f.size {
        1 => u64::from(bytes[0]),
        2 => u64::from(u16::from_ne_bytes(bytes.try_into().ok()?)),
        4 => u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
        8 => u64::from_ne_bytes(bytes.try_into().ok()?),
        _ => return Some(FieldValue::Bytes(bytes.to_vec())),
    };
    Some(if f.signed {
        let shift = 64 - 8 * f.size as u32;
        FieldValue::Int(((unsigned << shift) as i64) >> shift)
    } else {
        FieldValue::Uint(unsigned)
    })
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A sockaddr's bytes: its family and address (bounds-checked).
fn sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes(b.get(..2)?.try_into().ok()?);
    let port = |b: &[u8]| Some(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?));
    Some(match family {
        AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            SockAddr::Inet {
                addr: std::net::Ipv4Addr::from(a).into(),
                port: port(b)?,
            }
        }
        AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            SockAddr::Inet {
                addr: std::net::Ipv6Addr::from(a).into(),
                port: port(b)?,
            }
        }
        AF_UNIX => {
            let path = &b[2..];
            // A pathname socket ends at its NUL; an abstract one starts with one.
            let path = match path.first() {
                Some(0) => path,
                _ => &path[..memchr::memchr(0, path).unwrap_or(path.len())],
            };
            SockAddr::Unix(path.to_vec())
        }
        other => SockAddr::Other(other),
    })
}

/// O_* flags as open() takes them: those only open() sees first.
fn open_arg_flags(flags: u32) -> Vec<Cow<'static, str>> {
    const CREATE_FLAGS: &[(&str, u32)] = &[
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
    ];
    let mut rest = flags;
    let mut names = Vec::new();
    for &(name, bit) in CREATE_FLAGS {
        if rest & bit != 0 {
            names.push(Cow::Borrowed(name));
            rest &= !bit;
        }
    }
    let mut all: Vec<Cow<'static, str>> = files::open_flag_names_iter(rest).collect();
    all.splice(1..1, names);
    all
}

fn at_flags(flags: u32) -> Vec<Cow<'static, str>> {
    const AT_FLAGS: &[(&str, u32)] = &[
        ("AT_SYMLINK_NOFOLLOW", 0x100),
        ("AT_REMOVEDIR", 0x200),
        ("AT_SYMLINK_FOLLOW", 0x400),
        ("AT_NO_AUTOMOUNT", 0x800),
        ("AT_EMPTY_PATH", 0x1000),
        ("AT_STATX_FORCE_SYNC", 0x2000),
        ("AT_STATX_DONT_SYNC", 0x4000),
        ("AT_RECURSIVE", 0x8000),
    ];
    let mut rest = flags;
    let mut names = Vec::new();
    for &(name, bit) in AT_FLAGS {
        if rest & bit != 0 {
            names.push(Cow::Borrowed(name));
            rest &= !bit;
        }
    }
    if rest != 0 || names.is_empty() {
        names.push(Cow::Owned(format!("{rest:#x}")));
    }
    names
}

const AT_FDCWD: i32 = -100;

/// A mode as strace and chmod write it: 0644.
fn mode_text(m: u32) -> String {
    if m == 0 {
        "0".into()
    } else {
        format!("0{m:o}")
    }
}

fn addr_text(a: &SockAddr) -> String {
    match a {
        SockAddr::Inet {
            addr: std::net::IpAddr::V6(v6),
            port,
        } => format!("[{v6}]:{port}"),
        SockAddr::Inet { addr, port } => format!("{addr}:{port}"),
        SockAddr::Unix(path) if path.first() == Some(&0) => {
            format!("@{}", printable(&path[1..]))
        }
        SockAddr::Unix(path) => printable(path).into_owned(),
        SockAddr::Other(family) => format!("family {family}"),
    }
}

/// A string as strace quotes it, escaped for a terminal, `...` when cut.
fn quoted(s: &UserString) -> String {
    if s.unread {
        return "(not in memory)".into();
    }
    let text = printable(&s.bytes).replace('"', "\\\"");
    format!("\"{text}\"{}", if s.cut { "..." } else { "" })
}

/// One argument, as strace shows it (`3</tmp/f>`, `"/etc/passwd"`,
/// `O_RDONLY|O_CLOEXEC`).
fn value_text(v: &Value, signal_name: &dyn Fn(i32) -> String) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Hex(h) => format!("{h:#x}"),
        Value::Fd(AT_FDCWD, _) => "AT_FDCWD".into(),
        Value::Fd(fd, Some(file)) => format!("{fd}<{}>", file.description(0)),
        Value::Fd(fd, None) => fd.to_string(),
        Value::Str(s) => quoted(s),
        Value::Argv { args, more } => {
            let mut shown: Vec<String> = args.iter().map(quoted).collect();
            if *more {
                shown.push("...".into());
            }
            format!("[{}]", shown.join(", "))
        }
        Value::Addr(Some(a)) => addr_text(a),
        Value::Addr(None) => "?".into(),
        Value::OpenFlags(f) => open_arg_flags(*f).join("|"),
        Value::AtFlags(f) => at_flags(*f).join("|"),
        Value::Mode(m) => mode_text(*m),
        Value::Signal(s) => signal_name(*s),
    }
}

impl Details {
    /// The line under the table's header: the call, strace-like
    /// (`openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC, 0)`), the
    /// exit status, the siginfo, the tracepoint's fields.
    pub fn text(
        &self,
        call: Option<&str>,
        signal_name: &dyn Fn(i32) -> String,
        code_name: &dyn Fn(i32) -> String,
    ) -> Option<String> {
        let mut parts = Vec::new();
        if !self.args.is_empty() {
            let args: Vec<String> = self
                .args
                .iter()
                .map(|(name, v)| match call {
                    Some(_) => value_text(v, signal_name),
                    None => format!("{name}={}", value_text(v, signal_name)),
                })
                .collect();
            parts.push(match call {
                Some(call) => format!("{call}({})", args.join(", ")),
                None => args.join(" "),
            });
        }
        if let Some((status, signal, core)) = self.exit() {
            parts.push(match (status, signal) {
                (Some(status), _) => format!("exit status {status}"),
                (_, Some(sig)) => format!(
                    "killed by {}{}",
                    signal_name(sig),
                    if core { " (core dumped)" } else { "" }
                ),
                _ => String::new(),
            });
        }
        if let Some(info) = &self.siginfo {
            let mut s = code_name(info.code);
            if let Some((pid, uid)) = info.pid_uid {
                s.push_str(&format!(" from pid {pid} uid {uid}"));
            }
            if let Some(addr) = info.addr {
                s.push_str(&format!(" at {addr:#x}"));
            }
            if let Some(status) = info.status {
                s.push_str(&format!(" status {status}"));
            }
            parts.push(s);
        }
        // A syscall's arguments said it all (syscalls:sys_enter_*'s fields
        // are those arguments).
        if !self.fields.is_empty() && call.is_none() {
            let fields: Vec<String> = self
                .fields
                .iter()
                .map(|(name, v)| format!("{name}={}", field_text(v)))
                .collect();
            parts.push(fields.join(" "));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The JSON fields the details add to `trigger` (docs/json.md).
    pub fn json(
        &self,
        signal_name: &dyn Fn(i32) -> String,
        code_name: &dyn Fn(i32) -> String,
    ) -> Map<String, Value0> {
        let mut out = Map::new();
        if let Some(raw) = self.raw_args {
            self.args_json(&raw, signal_name, &mut out);
        }
        if let (Some(code), Some((status, signal, core))) = (self.exit_code, self.exit()) {
            out.insert(
                "exit".into(),
                json!({
                    "code": code,
                    "status": status,
                    "signal": signal.map(signal_name),
                    "core_dumped": core,
                }),
            );
        }
        if let Some(info) = &self.siginfo {
            let mut v =
                json!({ "code": code_name(info.code), "si_code": info.code, "errno": info.errno });
            if let Some((pid, uid)) = info.pid_uid {
                v["pid"] = json!(pid);
                v["uid"] = json!(uid);
            }
            if let Some(addr) = info.addr {
                v["addr"] = json!(format!("{addr:#x}"));
            }
            if let Some(status) = info.status {
                v["status"] = json!(status);
            }
            out.insert("siginfo".into(), v);
        }
        if !self.fields.is_empty() {
            let mut fields = Map::new();
            for (name, v) in &self.fields {
                if let FieldValue::Text(t) = v {
                    if let Some(exact) = base64_if_not_utf8(t) {
                        fields.insert(format!("{name}_base64"), json!(exact));
                    }
                }
                fields.insert(name.clone(), field_json(v));
            }
            out.insert("fields".into(), Value0::Object(fields));
        }
        out
    }

    /// `args` and what goes beside it: `args_raw`, `arg_files`,
    /// `args_truncated`, `args_unread`.
    fn args_json(
        &self,
        raw: &[u64; 6],
        signal_name: &dyn Fn(i32) -> String,
        out: &mut Map<String, Value0>,
    ) {
        let mut args = Map::new();
        let mut arg_files = Map::new();
        let (mut cut, mut unread) = (Vec::new(), Vec::new());
        for (name, v) in &self.args {
            let name = name.to_string();
            let strings: Vec<&UserString> = match v {
                Value::Str(s) => vec![s],
                Value::Argv { args, .. } => args.iter().collect(),
                _ => Vec::new(),
            };
            if strings.iter().any(|s| s.cut) || matches!(v, Value::Argv { more: true, .. }) {
                cut.push(name.clone());
            }
            if strings.iter().any(|s| s.unread) {
                unread.push(name.clone());
            }
            if strings
                .iter()
                .any(|s| base64_if_not_utf8(&s.bytes).is_some())
            {
                let exact: Vec<String> = strings
                    .iter()
                    .map(|s| crate::text::base64(&s.bytes))
                    .collect();
                let exact = match v {
                    Value::Str(_) => json!(exact[0]),
                    _ => json!(exact),
                };
                args.insert(format!("{name}_base64"), exact);
            }
            if let Value::Fd(_, Some(file)) = v {
                arg_files.insert(name.clone(), json!(files::json(file)));
            }
            args.insert(name, value_json(v, signal_name));
        }
        out.insert("args".into(), Value0::Object(args));
        out.insert(
            "args_raw".into(),
            json!(raw.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>()),
        );
        if !arg_files.is_empty() {
            out.insert("arg_files".into(), Value0::Object(arg_files));
        }
        if !cut.is_empty() {
            out.insert("args_truncated".into(), json!(cut));
        }
        if !unread.is_empty() {
            out.insert("args_unread".into(), json!(unread));
        }
    }
}

/// One argument in JSON (its exact bytes and file go beside it).
fn value_json(v: &Value, signal_name: &dyn Fn(i32) -> String) -> Value0 {
    match v {
        Value::Int(i) => json!(i),
        Value::Uint(u) => json!(u),
        Value::Hex(h) => json!(format!("{h:#x}")),
        Value::Fd(fd, _) => json!(fd),
        Value::Str(s) => json!(String::from_utf8_lossy(&s.bytes)),
        Value::Argv { args, .. } => json!(args
            .iter()
            .map(|s| String::from_utf8_lossy(&s.bytes))
            .collect::<Vec<_>>()),
        Value::Addr(Some(SockAddr::Inet { addr, port })) => json!({
            "family": if addr.is_ipv4() { "inet" } else { "inet6" },
            "addr": addr.to_string(),
            "port": port,
        }),
        Value::Addr(Some(SockAddr::Unix(path))) => {
            let mut v = json!({"family": "unix", "path": String::from_utf8_lossy(path)});
            if let Some(exact) = base64_if_not_utf8(path) {
                v["path_base64"] = json!(exact);
            }
            v
        }
        Value::Addr(Some(SockAddr::Other(family))) => json!({ "family": family }),
        Value::Addr(None) => Value0::Null,
        Value::OpenFlags(f) => json!(open_arg_flags(*f)),
        Value::AtFlags(f) => json!(at_flags(*f)),
        Value::Mode(m) => json!(mode_text(*m)),
        Value::Signal(s) => json!(signal_name(*s)),
    }
}

fn field_json(v: &FieldValue) -> Value0 {
    match v {
        FieldValue::Int(i) => json!(i),
        FieldValue::Uint(u) => json!(u),
        FieldValue::Text(t) => json!(String::from_utf8_lossy(t)),
        FieldValue::Bytes(b) => json!(crate::text::base64(b)),
    }
}

type Value0 = serde_json::Value;

fn field_text(v: &FieldValue) -> String {
    match v {
        FieldValue::Int(i) => i.to_string(),
        FieldValue::Uint(u) => u.to_string(),
        FieldValue::Text(t) => printable(t).into_owned(),
        FieldValue::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::event_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(event_rec, flags), 8);
        assert_eq!(offset_of!(event_rec, data_len), 12);
        assert_eq!(offset_of!(event_rec, args), 16);
        assert_eq!(offset_of!(event_rec, exit_code), 64);
        assert_eq!(offset_of!(event_rec, si_errno), 68);
        assert_eq!(offset_of!(event_rec, si_code), 72);
        assert_eq!(offset_of!(event_rec, record_len), 76);
        assert_eq!(offset_of!(event_rec, si_fields), 80);
        assert_eq!(offset_of!(event_rec, data), EVENT_HDR_SIZE);
        assert_eq!(size_of::<event_rec>(), EVENT_HDR_SIZE + EVENT_DATA);
    }

    /// What the kernel side reads follows the signature.
    #[test]
    fn reads_follow_signatures() {
        let r = |name| reads(signature(name).unwrap());
        assert_eq!(
            r("execve"),
            Reads {
                strs: 1,
                argv: 2,
                addr: 0,
                addrlen: 0
            }
        );
        assert_eq!(r("renameat2").strs, 0b1010);
        assert_eq!(
            r("connect"),
            Reads {
                strs: 0,
                argv: 0,
                addr: 2,
                addrlen: 2
            }
        );
        assert_eq!(r("sendto").addr, 5);
        assert_eq!(r("sendto").addrlen, 5);
        assert_eq!(r("read"), Reads::default());
        assert!(signature("getppid").is_none());
    }

    /// A tracefs format file's fields, as the kernel writes them.
    #[test]
    fn formats_are_parsed() {
        let format = "name: sched_process_exit\nID: 369\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
            \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:const char * filename;\toffset:32;\tsize:8;\tsigned:0;\n\
            \tfield:__data_loc char[] name;\toffset:40;\tsize:4;\tsigned:0;\n\n\
            print fmt: \"comm=%s\"\n";
        let fields = parse_format(format);
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["comm", "pid", "filename"]);
        assert!(fields[0].text && !fields[1].text && fields[1].signed);
        let mut record = vec![0u8; 40];
        record[8..11].copy_from_slice(b"sh\0");
        record[24..28].copy_from_slice(&(-5i32).to_ne_bytes());
        assert_eq!(
            field_value(&record, &fields[0]),
            Some(FieldValue::Text(b"sh".to_vec()))
        );
        assert_eq!(field_value(&record, &fields[1]), Some(FieldValue::Int(-5)));
        // Past the record's end: nothing, not a panic.
        assert_eq!(field_value(&record[..30], &fields[2]), None);
    }

    /// Socket addresses as the kernel lays them out.
    #[test]
    fn socket_addresses() {
        let v4 = [2, 0, 0x1f, 0x90, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(addr_text(&sockaddr(&v4).unwrap()), "10.0.0.1:8080");
        let mut v6 = vec![10, 0, 0, 80, 0, 0, 0, 0];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(addr_text(&sockaddr(&v6).unwrap()), "[::1]:80");
        assert_eq!(
            addr_text(&sockaddr(b"\x01\x00/run/x.sock\0junk").unwrap()),
            "/run/x.sock"
        );
        assert_eq!(
            addr_text(&sockaddr(b"\x01\x00\0abstract").unwrap()),
            "@abstract"
        );
        assert_eq!(sockaddr(&[2, 0, 1]), None);
    }

    #[test]
    fn flags_by_name() {
        assert_eq!(
            open_arg_flags(0o2_000_000 | 0o1000 | 0o100 | 1).join("|"),
            "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
        );
        assert_eq!(
            at_flags(0x100 | 0x1000).join("|"),
            "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"
        );
        assert_eq!(at_flags(0).join("|"), "0x0");
        assert_eq!(mode_text(0o644), "0644");
    }

    /// The exit code as wait() reads it.
    #[test]
    fn exit_codes() {
        let d = |code| Details {
            exit_code: Some(code),
            ..Details::default()
        };
        assert_eq!(d(3 << 8).exit(), Some((Some(3), None, false)));
        assert_eq!(d(9).exit(), Some((None, Some(9), false)));
        assert_eq!(d(0x80 | 11).exit(), Some((None, Some(11), true)));
    }
}
