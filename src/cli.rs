//! Command line: clap definitions and validation of every value a user types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};

use crate::kinds::holds::Target;
use crate::kinds::sockets::{SocketFilter, PROTOCOLS, STATES};
use crate::model::TriggerSpec;
use crate::run::Request;
use crate::{signals, syscalls};

// The types of values below the command line; it only parses into them.
pub use crate::backend::BackendChoice;
pub use crate::diff::SortKey;
pub use crate::output::OutputFormat;

pub const EXAMPLES: &str = "\
Examples:
  sudo itersnap                          every process, its open files
  sudo itersnap bash                     only processes named exactly `bash`
  sudo itersnap --pid 1234 --threads     one process, a row per thread
  sudo itersnap --stacks --no-files      kernel stacks of every process
  sudo itersnap -o json | jq .           JSON Lines, one object per snapshot
  sudo itersnap --on-signal SIGUSR1 bash a snapshot of bash whenever a SIGUSR1 is sent
  sudo itersnap --on-syscall execve --count 5
  sudo itersnap --on-tracepoint sched:sched_process_exit --caller-comm make
  sudo itersnap --on-uprobe /usr/bin/bash:readline --caller-pid 1234

Exit status: 0 the snapshots hold a match; 1 the filters matched nothing
(or an error); 2 a bad command line; 3 a snapshot lost records (see
--allow-incomplete).";

/// Snapshots of every task (identity, state, open files, kernel stack),
/// taken inside the kernel with BPF iterators.
#[derive(Debug, Parser)]
#[command(name = "itersnap", version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
#[command(group(ArgGroup::new("trigger").args(["on_signal", "on_syscall", "on_tracepoint", "on_uprobe", "interval"])))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Only processes whose name is exactly COMM, as /proc/PID/comm shows it (like `pgrep -x`; kernel threads by their full name, e.g. kworker/0:1-events); several: any of them (up to 8); with --threads, threads by their own names too (like `pgrep -w -x`)
    #[arg(value_parser = parse_comm)]
    pub comm: Vec<Comm>,

    /// Only the process with this PID (thread-group id); a list (`-p 1,2`) or repeated: any of them (up to 16)
    #[arg(short, long, value_parser = parse_pid, value_delimiter = ',', allow_hyphen_values = true)]
    pub pid: Vec<u32>,

    /// Only processes whose effective user is USER, a name or a uid, like `ps -u` (a list, or repeated: any of them, up to 8)
    #[arg(short = 'u', long, value_name = "USER", value_parser = parse_user, value_delimiter = ',')]
    pub user: Vec<User>,

    /// Only processes in this cgroup or below it: a cgroup2 directory, or a path as /proc/PID/cgroup shows it (/system.slice/nginx.service)
    #[arg(long, value_name = "PATH", value_parser = parse_cgroup)]
    pub cgroup: Option<(String, u64)>,

    /// Only tasks in these states, ps's STAT letters: R running, S sleeping, D uninterruptible (disk) sleep, T stopped, t traced, Z zombie, I idle kernel thread, P parked, X dead (e.g. D, or D,R); a process is shown when a thread of it is in one
    #[arg(long, value_name = "STATES", value_parser = parse_task_states)]
    pub task_state: Option<u32>,

    /// One row per thread instead of per process (like `ps -L`)
    #[arg(short = 'L', long)]
    pub threads: bool,

    /// Do not list open files
    #[arg(long)]
    pub no_files: bool,

    /// Show each task's kernel stack, symbolized
    #[arg(short = 'k', long)]
    pub stacks: bool,

    /// What each task is doing: the syscall it is in (number, name, its six
    /// arguments, the file of its fd argument, as /proc/PID/syscall) and the
    /// kernel function it sleeps in (WCHAN) (Linux 5.15+)
    #[arg(long)]
    pub activity: bool,

    /// Show each task's user-space stack, symbolized: the event's own task
    /// unwound in its own context, the others by their frame pointers
    /// (Linux 5.18+)
    #[arg(long)]
    pub ustacks: bool,

    /// List the files each process maps, like lsof's `mem` and `DEL`
    /// entries (Linux 5.12+)
    #[arg(long)]
    pub maps: bool,

    /// Only sockets with this local or remote port, and the processes
    /// holding one, like `lsof -i :PORT` (repeatable, up to 8)
    #[arg(long, value_name = "PORT", value_parser = parse_port, conflicts_with = "no_files")]
    pub port: Vec<u16>,

    /// Only sockets of this protocol: tcp, udp, udplite, raw, sctp, icmp,
    /// unix, netlink, packet (repeatable)
    #[arg(long, value_name = "PROTO", value_parser = parse_proto, conflicts_with = "no_files")]
    pub proto: Vec<u32>,

    /// Only sockets in this state, like `ss state`: LISTEN, ESTABLISHED,
    /// SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
    /// CLOSING, CLOSE, CONNECTED, UNCONNECTED (repeatable)
    #[arg(long, value_name = "STATE", value_parser = parse_state, conflicts_with = "no_files")]
    pub state: Vec<u8>,

    /// Only processes holding the file at PATH, by an open fd, as their
    /// cwd, root or executable, or by a mapping, matched by device and
    /// inode, like `fuser -v PATH` and `lsof PATH` (repeatable)
    #[arg(long = "file", value_name = "PATH", value_parser = parse_file_target, conflicts_with_all = HOLD_CONFLICTS)]
    pub file: Vec<Target>,

    /// Only processes holding anything on the filesystem mounted at (or
    /// holding) PATH, or on block device PATH, like `fuser -vm PATH`
    /// (repeatable)
    #[arg(long = "mount", value_name = "PATH", value_parser = parse_mount_target, conflicts_with_all = HOLD_CONFLICTS)]
    pub mount: Vec<Target>,

    /// Show tasks under their parents, like `ps f` (table output)
    #[arg(short = 't', long, help_heading = "Output")]
    pub tree: bool,

    /// Task columns of the table, comma-separated, like `ps -o`: pid, tid,
    /// ppid, user, group, uid, euid, ruid, suid, fsuid, gid, egid, rgid,
    /// sgid, fsgid, state, stat, ni, psr, nlwp, vsz, rss, %cpu, %mem, tty, time,
    /// start, stime, start_time, bsdstart, lstart, taken, wchan, syscall,
    /// exe, cwd, root, cgroup, comm, args
    #[arg(long, value_name = "LIST", value_parser = Offering::new(parse_columns, column_names), hide_possible_values = true, help_heading = "Output")]
    pub columns: Option<Columns>,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,

    /// Show the backend choice, the programs loaded and their verifier work, where the time went, and libbpf's warnings (a refused program's verifier log) on stderr
    #[arg(short, long)]
    pub verbose: bool,

    /// Take a snapshot whenever signal SIG is generated (name or number: SIGUSR1, USR1, 10)
    #[arg(long, value_name = "SIG", value_parser = Offering::new(signals::parse, signals::names), hide_possible_values = true, help_heading = "Triggers")]
    pub on_signal: Option<i32>,

    /// With --on-signal: only signals sent to this process
    #[arg(long, value_name = "PID", value_parser = parse_pid, requires = "on_signal", help_heading = "Triggers")]
    pub signal_target: Option<u32>,

    /// With --on-signal: only signals sent to processes named exactly COMM
    #[arg(long, value_name = "COMM", value_parser = parse_comm, requires = "on_signal", help_heading = "Triggers")]
    pub signal_target_comm: Option<Comm>,

    /// Take a snapshot when syscall NAME is entered (e.g. execve, openat)
    #[arg(long, value_name = "NAME", value_parser = Offering::new(parse_syscall, syscall_names), hide_possible_values = true, help_heading = "Triggers")]
    pub on_syscall: Option<Syscall>,

    /// Take a snapshot at kernel tracepoint CATEGORY:NAME (e.g. sched:sched_process_exit)
    #[arg(long, value_name = "CATEGORY:NAME", value_parser = parse_tracepoint, help_heading = "Triggers")]
    pub on_tracepoint: Option<Tracepoint>,

    /// Take a snapshot when a program calls a function (e.g. /usr/bin/bash:readline)
    #[arg(long, value_name = "PATH:SYMBOL", value_parser = parse_uprobe, help_heading = "Triggers")]
    pub on_uprobe: Option<Uprobe>,

    /// Take a snapshot every DURATION (e.g. 500ms, 1s, 2m; at least 10ms)
    #[arg(short = 'i', long, value_name = "DURATION", value_parser = parse_interval, allow_hyphen_values = true, help_heading = "Triggers")]
    pub interval: Option<Duration>,

    /// After the first snapshot, show only what changed since the previous one
    #[arg(long, help_heading = "Output")]
    pub diff: bool,

    /// Instead of snapshots, at the end: every thread's stack of every
    /// snapshot, folded for flame graphs (`state;comm;frame;...;frame count`,
    /// kernel frames `_[k]`, grouped first by state: on-cpu, runnable,
    /// sleeping, disk); implies --threads, --stacks, and --ustacks where
    /// the kernel has them; with --interval, threads on a CPU are sampled
    /// there by a perf event on every CPU
    #[arg(long, help_heading = "Output", conflicts_with = "diff")]
    pub folded: bool,

    /// Instead of snapshots, at the end: the same stacks drawn as a flame
    /// graph, an SVG written to FILE
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Output",
        conflicts_with = "diff"
    )]
    pub flamegraph: Option<std::path::PathBuf>,

    /// With --diff: order of the CPU-time table
    #[arg(long, value_enum, default_value_t = SortKey::Cpu, requires = "diff", help_heading = "Output")]
    pub sort: SortKey,

    /// Only events in this process (signal sender, syscall caller, ...)
    #[arg(long, value_name = "PID", value_parser = parse_pid, requires = "trigger", help_heading = "Triggers")]
    pub caller_pid: Option<u32>,

    /// Only events in processes named exactly COMM
    #[arg(long, value_name = "COMM", value_parser = parse_comm, requires = "trigger", help_heading = "Triggers")]
    pub caller_comm: Option<Comm>,

    /// Stop after N snapshots
    #[arg(short = 'c', long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true, help_heading = "Triggers")]
    pub count: Option<u64>,

    /// Least time between two snapshots, enforced in the kernel (default 100ms; 0 with --interval)
    #[arg(long, value_name = "DURATION", value_parser = parse_gap, allow_hyphen_values = true, help_heading = "Triggers")]
    pub min_gap: Option<Duration>,

    /// Longest time a trigger captures inside the event, with the CPU held (e.g. 500us, 1ms; 0: nothing in the event); the rest of the snapshot is completed right after, preemptibly
    #[arg(long, value_name = "DURATION", value_parser = parse_event_budget, allow_hyphen_values = true, requires = "trigger", help_heading = "Triggers")]
    pub event_budget: Option<Duration>,

    /// Which kernel mechanism takes the snapshot
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// Take a one-shot snapshot here even when `itersnap serve` is running (by default one-shots go through it: the same output and exit status, without loading any program)
    #[arg(long)]
    pub no_server: bool,

    /// Ring buffer size for what a trigger captures in the event (e.g. 64M); default: sized from --event-budget
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub ringbuf_size: Option<u32>,

    /// Exit 0 even if a snapshot is incomplete (records lost: see its problems); without it such a run exits 3
    #[arg(long)]
    pub allow_incomplete: bool,
}

/// What --file and --mount cannot be used with: they list processes by
/// what they hold, as fuser does, in a table of their own.
const HOLD_CONFLICTS: [&str; 7] = [
    "no_files", "port", "proto", "state", "threads", "tree", "columns",
];

impl Cli {
    /// --file's and --mount's targets, in the order given.
    pub fn targets(&self) -> Vec<Target> {
        self.file.iter().chain(&self.mount).cloned().collect()
    }

    /// Why the command line is refused (exit 2), if it is: an option that
    /// cannot apply, more values than the kernel side matches.
    pub fn refusal(&self) -> Option<clap::Error> {
        if let Some(conflict) = self.inapplicable() {
            return Some(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                conflict,
            ));
        }
        if self.port.len() > SocketFilter::PORTS_MAX {
            return Some(clap::Error::raw(
                clap::error::ErrorKind::TooManyValues,
                format!(
                    "--port is given {} times, at most {} are checked in the kernel",
                    self.port.len(),
                    SocketFilter::PORTS_MAX
                ),
            ));
        }
        for (given, most, what) in [
            (self.comm.len(), crate::backend::COMMS_MAX, "COMMs are"),
            (self.pid.len(), crate::backend::PIDS_MAX, "pids are"),
            (self.user.len(), crate::backend::UIDS_MAX, "users are"),
        ] {
            if given > most {
                return Some(clap::Error::raw(
                    clap::error::ErrorKind::TooManyValues,
                    format!("{given} {what} given, at most {most} are matched in the kernel"),
                ));
            }
        }
        let targets = self.file.len() + self.mount.len();
        if targets > crate::kinds::holds::TARGETS_MAX {
            return Some(clap::Error::raw(
                clap::error::ErrorKind::TooManyValues,
                format!(
                    "--file and --mount name {targets} targets, at most {} are matched in the kernel",
                    crate::kinds::holds::TARGETS_MAX
                ),
            ));
        }
        None
    }

    /// An option that cannot apply to the mode asked for, named with the
    /// conflict: refused (exit 2), never silently ignored.
    pub fn inapplicable(&self) -> Option<String> {
        let trigger = self.on_signal.is_some()
            || self.on_syscall.is_some()
            || self.on_tracepoint.is_some()
            || self.on_uprobe.is_some()
            || self.interval.is_some();
        let given = |set: bool, name: &'static str| set.then_some(name);
        if self.on_signal.is_none() {
            if let Some(name) = given(self.signal_target.is_some(), "--signal-target").or(given(
                self.signal_target_comm.is_some(),
                "--signal-target-comm",
            )) {
                return Some(format!("{name} applies to --on-signal only"));
            }
        }
        if self.interval.is_some() {
            if let Some(name) = given(self.caller_pid.is_some(), "--caller-pid")
                .or(given(self.caller_comm.is_some(), "--caller-comm"))
            {
                return Some(format!(
                    "{name} cannot be used with --interval: a tick has no caller (the timer fires in whatever task runs)"
                ));
            }
            if self.event_budget.is_some() {
                return Some(
                    "--event-budget cannot be used with --interval: a tick captures nothing in the event"
                        .into(),
                );
            }
        }
        if !trigger {
            if let Some(name) = given(self.count.is_some(), "--count")
                .or(given(self.min_gap.is_some(), "--min-gap"))
                .or(given(self.ringbuf_size.is_some(), "--ringbuf-size"))
                .or(given(self.diff, "--diff"))
            {
                return Some(format!(
                    "{name} applies to a run with a trigger (--interval, --on-signal, --on-syscall, --on-tracepoint, --on-uprobe), not to a one-shot"
                ));
            }
        }
        if self.folds() {
            let what = if self.folded {
                "--folded"
            } else {
                "--flamegraph"
            };
            if let Some(name) = given(self.output == OutputFormat::Json, "-o json")
                .or(given(self.tree, "--tree"))
                .or(given(self.columns.is_some(), "--columns"))
            {
                return Some(format!(
                    "{name} does not apply with {what}, which writes stacks instead of snapshots"
                ));
            }
        }
        if self.output == OutputFormat::Json {
            if let Some(name) =
                given(self.tree, "--tree").or(given(self.columns.is_some(), "--columns"))
            {
                return Some(format!(
                    "{name} applies to the table, not to -o json (whose objects hold every field)"
                ));
            }
        }
        None
    }

    /// The run the command line asks for, in the types below it.
    pub fn request(&self) -> Request {
        Request {
            trigger: self.trigger_spec(),
            comms: self.comm.iter().map(|c| c.0.clone()).collect(),
            pids: self.pid.clone(),
            users: self.user.iter().map(|u| (u.name.clone(), u.uid)).collect(),
            states: self.task_state.unwrap_or(0),
            cgroup: self.cgroup.clone(),
            threads: self.threads || self.folds(),
            // Flame graphs show stacks: files are walked only when they
            // select the processes (--port, --proto, --state, --file, --mount).
            files: !self.no_files && (!self.folds() || self.files_select()),
            stacks: self.stacks || self.folds(),
            activity: self.activity,
            ustacks: self.ustacks,
            folded: self.folded,
            flamegraph: self.flamegraph.clone(),
            maps: self.maps,
            targets: self.targets(),
            sockets: SocketFilter {
                ports: self.port.clone(),
                protocols: self.proto.iter().fold(0, |m, p| m | 1 << p),
                states: self.state.iter().fold(0, |m, s| m | 1 << s),
            },
            tree: self.tree,
            columns: self.columns.as_ref().map(|c| c.0.clone()),
            output: self.output,
            verbose: self.verbose,
            diff: self.diff,
            sort: self.sort,
            caller_pid: self.caller_pid,
            caller_comm: self.caller_comm.as_ref().map(|c| c.0.clone()),
            count: self.count,
            min_gap: self.min_gap,
            event_budget: self.event_budget,
            backend: self.backend,
            ringbuf_size: self.ringbuf_size,
            allow_incomplete: self.allow_incomplete,
        }
    }

    /// Processes are selected by their files: --port, --proto, --state,
    /// --file, --mount.
    fn files_select(&self) -> bool {
        !(self.port.is_empty()
            && self.proto.is_empty()
            && self.state.is_empty()
            && self.file.is_empty()
            && self.mount.is_empty())
    }

    /// --folded or --flamegraph: stacks are sampled, not printed.
    fn folds(&self) -> bool {
        self.folded || self.flamegraph.is_some()
    }

    fn trigger_spec(&self) -> TriggerSpec {
        if let Some(signal) = self.on_signal {
            TriggerSpec::Signal {
                signal,
                target_pid: self.signal_target,
                target_comm: self.signal_target_comm.as_ref().map(|c| c.0.clone()),
            }
        } else if let Some(s) = &self.on_syscall {
            TriggerSpec::Syscall {
                name: s.name.clone(),
                nr: s.nr,
            }
        } else if let Some(t) = &self.on_tracepoint {
            TriggerSpec::Tracepoint {
                category: t.category.clone(),
                name: t.name.clone(),
            }
        } else if let Some(u) = &self.on_uprobe {
            TriggerSpec::Uprobe {
                path: u.path.clone(),
                symbol: u.symbol.clone(),
            }
        } else if let Some(period) = self.interval {
            TriggerSpec::Interval { period }
        } else {
            TriggerSpec::OneShot
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Report what this kernel supports and which backend each mode would use
    Check,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(alias = "completion")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout
    Man,
    /// Keep the programs loaded and answer one-shot queries over a Unix socket, Prometheus and triggers from a file (see docs/fleet.md)
    Serve {
        /// The socket to listen on (the command line finds it there; ITERSNAP_SOCKET names another)
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Let this group's members query the server too (mode 0660). It discloses every process's identity, command line and open files to them
        #[arg(long, value_name = "GROUP")]
        socket_group: Option<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics, each scrape one walk (e.g. 127.0.0.1:9477; docs/fleet.md)
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Keep the triggers of FILE armed (one per line, as itersnap's arguments: `--on-signal SIGQUIT --no-files`); SIGHUP reads it again
        #[arg(long, value_name = "FILE")]
        triggers: Option<PathBuf>,
        /// Append the triggers' snapshots (JSON Lines) to FILE instead of stdout, rotated by --log-size
        #[arg(long, value_name = "FILE", requires = "triggers")]
        log: Option<PathBuf>,
        /// Rotate --log when it would pass this size (FILE.1 … FILE.4 kept)
        #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "64M", requires = "log")]
        log_size: u64,
    },
    /// For scripts/bench: time the task and fd loops alone, without records
    #[command(hide = true)]
    BareWalk,
}

/// Where `itersnap serve` listens, and the command line looks for it.
pub const DEFAULT_SOCKET: &str = "/run/itersnap.sock";

/// A value parser that offers `candidates` to shell completion (hidden from
/// --help, where hundreds of syscall names would drown the rest) and parses
/// with `parse`, which also takes what is not a candidate (numbers).
#[derive(Clone)]
pub struct Offering<T> {
    parse: fn(&str) -> Result<T, String>,
    candidates: fn() -> &'static [&'static str],
}

impl<T> Offering<T> {
    pub fn new(
        parse: fn(&str) -> Result<T, String>,
        candidates: fn() -> &'static [&'static str],
    ) -> Self {
        Offering { parse, candidates }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Offering<T> {
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        (self.parse)(&text).map_err(|e| {
            let arg = arg.map(ToString::to_string).unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{text}' for '{arg}': {e}\n"),
            )
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            (self.candidates)()
                .iter()
                .map(|&name| clap::builder::PossibleValue::new(name)),
        ))
    }
}

/// Syscall names, for completion.
fn syscall_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| syscalls::SYSCALLS.iter().map(|(n, _)| *n).collect())
}

/// Column names, for completion.
fn column_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        crate::output::Column::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect()
    })
}

/// The command as shell completion offers it: without the hidden
/// subcommands (clap_complete lists them all).
pub fn completion_command() -> clap::Command {
    use clap::CommandFactory;
    let full = Cli::command();
    let mut cmd = clap::Command::new("itersnap")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default());
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    // The groups the arguments name (`requires = "trigger"`).
    for group in full.get_groups() {
        cmd = cmd.group(group.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The completion script for `shell`: clap_complete's, with process ids
/// offered where a PID goes, which clap has no hint for: bash lists
/// /proc's, zsh and fish use their own `_pids` and `__fish_complete_pids`.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    let mut cmd = completion_command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "itersnap", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    // The options that take a PID, as the script spells them.
    let pid_flags: Vec<(Option<char>, String)> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_value_names()
                .is_some_and(|v| v.iter().any(|n| n.as_str() == "PID"))
        })
        .filter_map(|a| Some((a.get_short(), a.get_long()?.to_string())))
        .collect();
    match shell {
        clap_complete::Shell::Bash => {
            let spelled: Vec<String> = pid_flags
                .iter()
                .flat_map(|(short, long)| {
                    std::iter::once(format!("--{long})")).chain(short.map(|s| format!("-{s})")))
                })
                .collect();
            let mut out = String::with_capacity(script.len());
            let mut pid_case = false;
            for line in script.lines() {
                let trimmed = line.trim_start();
                if pid_case && trimmed.starts_with("COMPREPLY=(") {
                    let indent = &line[..line.len() - trimmed.len()];
                    out.push_str(indent);
                    out.push_str(
                        r#"COMPREPLY=($(compgen -W "$(command ls /proc 2>/dev/null | grep -E '^[0-9]+$')" -- "${cur}"))"#,
                    );
                    out.push('\n');
                    pid_case = false;
                    continue;
                }
                pid_case = spelled.iter().any(|s| trimmed == s);
                out.push_str(line);
                out.push('\n');
            }
            out
        }
        clap_complete::Shell::Zsh => script.replace(":PID:_default", ":PID:_pids"),
        clap_complete::Shell::Fish => script
            .lines()
            .map(|line| {
                let takes_pid = pid_flags
                    .iter()
                    .any(|(_, long)| line.contains(&format!(" -l {long} ")));
                if takes_pid && line.ends_with(" -r") {
                    format!("{line} -f -a \"(__fish_complete_pids)\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect(),
        _ => script,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    pub name: String,
    pub nr: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracepoint {
    pub category: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uprobe {
    pub path: PathBuf,
    pub symbol: String,
}

pub fn parse_file_target(s: &str) -> Result<Target, String> {
    Target::file(std::path::Path::new(s))
}

pub fn parse_mount_target(s: &str) -> Result<Target, String> {
    Target::mount(std::path::Path::new(s))
}

pub fn parse_syscall(s: &str) -> Result<Syscall, String> {
    let name = s.strip_prefix("sys_").unwrap_or(s);
    // A number, as strace -e and ausyscall take it.
    if let Ok(nr) = name.parse::<i32>() {
        return syscalls::SYSCALLS
            .iter()
            .find(|&&(_, n)| n == nr)
            .map(|&(n, nr)| Syscall {
                name: n.to_string(),
                nr,
            })
            .ok_or_else(|| format!("no syscall number {nr} on {}", std::env::consts::ARCH));
    }
    syscalls::SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(n, nr)| Syscall {
            name: n.to_string(),
            nr,
        })
        .ok_or_else(|| format!("unknown syscall '{s}' on {}", std::env::consts::ARCH))
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn parse_tracepoint(s: &str) -> Result<Tracepoint, String> {
    match s.split_once(':') {
        Some((category, name)) if is_ident(category) && is_ident(name) => Ok(Tracepoint {
            category: category.into(),
            name: name.into(),
        }),
        _ => Err("expected CATEGORY:NAME, e.g. sched:sched_process_exit".into()),
    }
}

pub fn parse_uprobe(s: &str) -> Result<Uprobe, String> {
    match s.rsplit_once(':') {
        Some((path, symbol)) if !path.is_empty() && !symbol.is_empty() => Ok(Uprobe {
            path: path.into(),
            symbol: symbol.into(),
        }),
        _ => Err("expected PATH:SYMBOL, e.g. /usr/bin/bash:readline".into()),
    }
}

/// A list of table columns (a newtype so clap sees one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(pub Vec<crate::output::Column>);

/// `pid,comm` or `pid comm`: column names as `ps -o` takes them.
pub fn parse_columns(s: &str) -> Result<Columns, String> {
    use crate::output::Column;
    let cols = s
        .split([',', ' '])
        .filter(|c| !c.is_empty())
        .map(|name| {
            Column::NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|&(_, c)| c)
                .ok_or_else(|| {
                    let known: Vec<&str> = Column::NAMES.iter().map(|(n, _)| *n).collect();
                    format!("unknown column '{name}' (known: {})", known.join(", "))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if cols.is_empty() {
        return Err("no columns given".into());
    }
    Ok(Columns(cols))
}

pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the count must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("the count must be a positive number".into()),
    }
}

/// The longest duration any option takes: a year.
const MAX_DURATION_SECS: f64 = 86_400.0 * 365.0;

/// `500us`, `100ms`, `1s`, `2m`, `1h`, `1.5s`; a bare `0` means none; at
/// most 365 days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs = duration_secs(s)?;
    if secs > MAX_DURATION_SECS {
        return Err(format!("'{s}' is too long: at most 365 days (8760h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration's seconds, unbounded above: each option names its own limit.
fn duration_secs(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid duration '{s}': use a number and a unit, like 100ms, 1s or 2m");
    if s == "0" {
        return Ok(0.0);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = value * scale;
    if !secs.is_finite() {
        return Err(bad());
    }
    Ok(secs)
}

fn parse_gap(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("the minimum gap: {e}"))
}

/// Above this a CPU held inside an event stalls everything else on it for
/// longer than any production machine tolerates.
pub const MAX_EVENT_BUDGET: Duration = Duration::from_secs(1);

pub fn parse_event_budget(s: &str) -> Result<Duration, String> {
    if duration_secs(s)? > MAX_EVENT_BUDGET.as_secs_f64() {
        return Err(format!("the event budget must be at most 1s, not '{s}'"));
    }
    parse_duration(s)
}

/// Below this a walk of a busy machine would not finish before the next tick.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

pub fn parse_interval(s: &str) -> Result<Duration, String> {
    if duration_secs(s)? > MAX_DURATION_SECS {
        return Err(format!(
            "the interval must be at most 365 days (8760h), not '{s}'"
        ));
    }
    let d = parse_duration(s)?;
    if d < MIN_INTERVAL {
        return Err(format!("the interval must be at least 10ms, not '{s}'"));
    }
    Ok(d)
}

/// `4096`, `64K`, `16M`, `1G`: a power of two of at least one page is used.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let bytes = parse_bytes(s)?;
    if bytes > 1 << 30 {
        return Err(format!("ring buffer size '{s}' is over the 1G limit"));
    }
    Ok(bytes as u32)
}

/// A positive size in bytes, K, M or G (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{s}': use bytes or K/M/G, like 64M");
    let upper = s.to_ascii_uppercase();
    let trimmed = upper.trim_end_matches('B').trim_end_matches('I');
    let (number, shift) = match trimmed.chars().last() {
        Some('K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('G') => (&trimmed[..trimmed.len() - 1], 30),
        _ => (trimmed, 0),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    // Shifted back unchanged: no bit was lost.
    n.checked_shl(shift)
        .filter(|&b| b > 0 && b >> shift == n)
        .ok_or_else(bad)
}

/// A task name as /proc shows it (a newtype so clap sees one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comm(pub Vec<u8>);

/// The longest name /proc/PID/comm shows: proc_task_name() prints into 64
/// bytes, the NUL included (bpf/kinds/task.h's TASK_NAME_LEN).
pub const COMM_MAX: usize = crate::kinds::task::TASK_NAME_LEN - 1;

/// A name as `pgrep -x` takes it: compared whole with the name /proc
/// shows. A process names itself with at most 15 bytes (the kernel keeps
/// comm in 16, the NUL included), so a longer COMM only ever matches a
/// kernel thread, which /proc names in full (rcu_tasks_trace_kthread,
/// kworker/R-kblockd, kworker/0:1-events), up to 63 bytes; and, as with
/// pgrep -x, a longer name's first 15 bytes are not a match.
pub fn parse_comm(s: &str) -> Result<Comm, String> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("COMM must not be empty".into());
    }
    if bytes.len() > COMM_MAX {
        return Err(format!(
            "COMM is {} bytes long, but /proc shows task names of at most {COMM_MAX} bytes",
            bytes.len()
        ));
    }
    if bytes.contains(&0) {
        return Err("COMM must not contain a NUL byte".into());
    }
    Ok(Comm(bytes.to_vec()))
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("PORT must be a number from 1 to 65535, not {s:?}")),
        Ok(port) => Ok(port),
    }
}

/// --proto: the index of its name in PROTOCOLS.
pub fn parse_proto(s: &str) -> Result<u32, String> {
    let name = s.to_ascii_lowercase();
    PROTOCOLS
        .iter()
        .position(|p| *p == name)
        .map(|i| i as u32)
        .ok_or_else(|| format!("unknown protocol {s:?}: one of {}", PROTOCOLS.join(", ")))
}

/// --state: the sk_state it names.
pub fn parse_state(s: &str) -> Result<u8, String> {
    let name = s.to_ascii_uppercase().replace('-', "_");
    let name = match name.as_str() {
        "ESTAB" => "ESTABLISHED",
        "UNCONN" => "UNCONNECTED",
        "CLOSED" => "CLOSE",
        // A TCP socket in TIME_WAIT is the kernel's alone: no fd, no process.
        "TIME_WAIT" | "TIME_WAIT2" => {
            return Err(
                "TIME_WAIT sockets have no fd and belong to no process: `ss -tan state time-wait` lists them"
                    .into(),
            )
        }
        n => n,
    };
    STATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = STATES.iter().map(|(n, _)| *n).collect();
            format!("unknown socket state {s:?}: one of {}", names.join(", "))
        })
}

/// A user, as --user names it: the name given and its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
}

/// A user name, or a uid (a number, as ps takes it, whether or not the user
/// database knows it).
pub fn parse_user(s: &str) -> Result<User, String> {
    let uid = match s.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => crate::kinds::process::user_id(s).ok_or_else(|| format!("no user named {s}"))?,
    };
    Ok(User {
        name: s.to_string(),
        uid,
    })
}

pub fn parse_cgroup(s: &str) -> Result<(String, u64), String> {
    crate::kinds::process::cgroup_id(s)
}

/// ps's state letters (`D`, `D,R`, `DR`) as a mask of their indices in
/// task::STATE_LETTERS.
pub fn parse_task_states(s: &str) -> Result<u32, String> {
    use crate::kinds::task::STATE_LETTERS;
    let mut mask = 0;
    for c in s.chars().filter(|c| *c != ',') {
        let Some(i) = STATE_LETTERS.iter().position(|&l| l as char == c) else {
            return Err(format!(
                "'{c}' is not a task state: one of R, S, D, T, t, Z, X, P, I (ps's STAT letters)"
            ));
        };
        mask |= 1 << i;
    }
    if mask == 0 {
        return Err("no state given: one of R, S, D, T, t, Z, X, P, I".into());
    }
    Ok(mask)
}

pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("PID must be a positive number (0 is not a process)".into()),
        Ok(pid) if pid <= i32::MAX as u32 => Ok(pid),
        _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("PID {s} is too large (at most {})", i32::MAX))
        }
        _ => Err("PID must be a positive number".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_limits() {
        assert_eq!(parse_comm("bash").unwrap().0, b"bash");
        assert!(parse_comm("exactly15bytes!").is_ok());
        // Kernel threads' names, as /proc shows them, up to 63 bytes.
        assert!(parse_comm("sixteen-bytes-xx").is_ok());
        assert!(parse_comm("kworker/u8:2-ext4-rsv-conversion").is_ok());
        assert!(parse_comm(&"x".repeat(63)).is_ok());
        assert!(parse_comm(&"x".repeat(64)).is_err());
        assert!(parse_comm("a\0b").is_err());
        assert!(parse_comm("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "-1s", "1xs", "ms", "1", "1..2s", "99999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("200ms"), Ok(Duration::from_millis(200)));
        for bad in ["0", "-1s", "1xs", "5ms", "1"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        for bad in ["0", "x", "2G", "-1M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_count("0").is_err());
        assert_eq!(parse_count("3"), Ok(3));
    }

    #[test]
    fn trigger_specs() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(parse_syscall("execve").unwrap().nr, 59);
        assert!(parse_syscall("getpid").is_ok());
        assert!(parse_syscall("no_such_call").is_err());
        assert_eq!(
            parse_tracepoint("sched:sched_process_exit").unwrap().name,
            "sched_process_exit"
        );
        assert!(parse_tracepoint("sched_process_exit").is_err());
        assert!(parse_tracepoint("a:b:c").is_err());
        let u = parse_uprobe("/usr/bin/bash:readline").unwrap();
        assert_eq!(
            (u.path.to_str(), u.symbol.as_str()),
            (Some("/usr/bin/bash"), "readline")
        );
        assert!(parse_uprobe("readline").is_err());
    }

    #[test]
    fn pid_limits() {
        assert_eq!(parse_pid("42"), Ok(42));
        for bad in ["0", "-1", "x", "99999999999", "2147483648"] {
            assert!(parse_pid(bad).is_err(), "{bad}");
        }
    }
}
