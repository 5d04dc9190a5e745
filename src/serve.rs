//! `itersnap serve`: the programs of each question loaded once and kept,
//! one-shot queries answered over a Unix socket (docs/fleet.md); and the
//! command line's side, which sends its own arguments there.
//!
//! One query per connection. The client sends a query frame: its
//! arguments, and whether its stdout wants color. The server parses them
//! as the command line does, walks with the programs it loaded for that
//! question before (loading them the first time), and answers with a frame
//! of messages (what the run would have written to stderr), one of output
//! (stdout's bytes), and one of the exit status. A frame is a kind byte and
//! a little-endian u32 length, then that many bytes.
//!
//! The walks run one at a time, on one thread that owns every loaded
//! backend (`Walker`: the questions', and the triggers' of `--triggers`,
//! polled between jobs): a question is never walked twice at once, and the
//! loaded objects never cross threads. Each client has a thread of its own
//! for its reads and writes, with deadlines, so that a client that stalls
//! delays no other; so has each Prometheus scrape (`--metrics`), whose
//! walk the walking thread takes and output/metrics.rs counts.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, DEFAULT_SOCKET};
use crate::features::BtfNames;
use crate::output::metrics::{ServerCounts, TriggerCounts};
use crate::run::{self, Machine, Prepared, Request};

const QUERY: u8 = b'Q';
/// An empty frame asking what the server holds (`itersnap check`).
const STATUS: u8 = b'S';
const MESSAGES: u8 = b'E';
const OUTPUT: u8 = b'O';
const EXIT: u8 = b'X';
/// The query format's version, its first byte.
const VERSION: u8 = 1;
const COLOR: u8 = 1 << 0;

/// The largest query the server reads: arguments are short.
pub const QUERY_MAX: usize = 64 << 10;
/// A client has this long to send its whole query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that stops reading its answer this long is dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The command line waits this long for a server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Clients served at once; more are told so and closed.
pub const CLIENTS_MAX: usize = 16;
/// Questions whose programs stay loaded; the one used least recently goes.
const SESSIONS_MAX: usize = 32;

/// The socket the command line looks for a server at.
pub fn socket_path() -> PathBuf {
    std::env::var_os("ITERSNAP_SOCKET").map_or_else(|| DEFAULT_SOCKET.into(), PathBuf::from)
}

/// What a server answered.
struct Answer {
    messages: Vec<u8>,
    output: Vec<u8>,
    status: u8,
}

impl Answer {
    fn refused(status: u8, line: String) -> Answer {
        Answer {
            messages: format!("itersnap: error: {line}\n").into_bytes(),
            output: Vec::new(),
            status,
        }
    }
}

/// A part of a query's answer, sent to its client's thread as soon as it
/// is made: the output in pieces while it is written, so that the client
/// prints a large snapshot while the server still writes it.
enum Piece {
    Messages(Vec<u8>),
    Output(Vec<u8>),
    Exit(u8),
}

impl Answer {
    /// The answer as pieces, in the order the client reads them.
    fn pieces(self) -> [Piece; 3] {
        [
            Piece::Messages(self.messages),
            Piece::Output(self.output),
            Piece::Exit(self.status),
        ]
    }
}

/// Output written on the walking thread, sent to the client's thread in
/// pieces of up to PIECE_BYTES, each after the messages said before it.
struct PieceWriter<'a> {
    reply: &'a mpsc::Sender<Piece>,
    buf: Vec<u8>,
}

/// The pieces an answer's output is sent in.
const PIECE_BYTES: usize = 1 << 20;

impl PieceWriter<'_> {
    fn send_buffered(&mut self) {
        let said = run::take_messages();
        if !said.is_empty() {
            let _ = self.reply.send(Piece::Messages(said));
        }
        if !self.buf.is_empty() {
            let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE_BYTES));
            let _ = self.reply.send(Piece::Output(piece));
        }
    }
}

impl Write for PieceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE_BYTES {
            self.send_buffered();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered();
        Ok(())
    }
}

/// Work for the walking thread.
enum Job {
    /// Load a question's programs (the server's start).
    Warm(Request),
    /// A parsed query.
    Query {
        req: Request,
        color: bool,
        reply: mpsc::Sender<Piece>,
    },
    /// A Prometheus scrape: the answer's output is the metrics.
    Scrape { reply: mpsc::Sender<Answer> },
    /// What the server holds, as one line of output.
    Status { reply: mpsc::Sender<Piece> },
}

/// What a client sent.
enum Incoming {
    Query(Vec<OsString>, bool),
    Status,
}

/// What `serve` is asked to run (its command line).
pub struct ServeOptions {
    pub socket: PathBuf,
    pub group: Option<String>,
    pub metrics: Option<SocketAddr>,
    /// --triggers: the config file of triggers to keep armed.
    pub triggers: Option<PathBuf>,
    /// --log: where their snapshots go (else stdout), rotated at `log_size`.
    pub log: Option<PathBuf>,
    pub log_size: u64,
}

/// How long the walking thread waits without a job before it gives
/// the memory its last walks freed back to the kernel.
const IDLE_TRIM: Duration = Duration::from_secs(1);

/// Set by SIGHUP: the walking thread reads --triggers again.
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sighup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Runs the server until SIGINT or SIGTERM; then everything it loaded is
/// released and its socket removed.
pub fn serve(opts: &ServeOptions) -> Result<()> {
    let (socket, group, metrics) = (opts.socket.as_path(), opts.group.as_deref(), opts.metrics);
    crate::features::require_runnable()?;
    let btf = BtfNames::load()?;
    // Read before anything is loaded: a mistake in it stops the start.
    let triggers = match &opts.triggers {
        Some(path) => Some((path.clone(), read_triggers(path)?)),
        None => None,
    };
    let log = Log::open(opts.log.as_deref(), opts.log_size)?;
    let gid = group
        .map(|g| {
            g.parse::<u32>()
                .ok()
                .or_else(|| crate::kinds::process::group_id(g))
                .with_context(|| format!("--socket-group {g}: no such group"))
        })
        .transpose()?;
    let listener = bind(socket, gid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the signal handler")?;
    // SIGHUP reloads the triggers instead of stopping (ctrlc took it).
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the sigaction is zeroed but for it.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sighup as *const () as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGHUP, &act, std::ptr::null_mut());
    }

    let (jobs, queue) = mpsc::channel::<Job>();
    let (armed_tx, armed_rx) = mpsc::channel();
    let walker_stop = Arc::clone(&stop);
    let walker = std::thread::Builder::new()
        .name("walker".into())
        .spawn(move || {
            let mut walker = Walker::new(btf, triggers, log);
            let _ = armed_tx.send(walker.arm_all());
            walker.run(queue, &walker_stop)
        })
        .context("starting the walking thread")?;
    // The triggers armed, or why not: then the server does not start.
    if let Err(e) = armed_rx
        .recv()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the walking thread ended")))
    {
        drop(jobs);
        let _ = walker.join();
        let _ = std::fs::remove_file(socket);
        return Err(e);
    }
    // The default question, loaded before the first client asks it.
    if let Ok(cli) = Cli::try_parse_from(["itersnap"]) {
        let _ = jobs.send(Job::Warm(cli.request()));
    }
    let http = match metrics {
        Some(addr) => Some(serve_metrics(addr, &stop, &jobs)?),
        None => None,
    };
    eprintln!(
        "itersnap: serving one-shot queries at {}{} (pid {})",
        socket.display(),
        metrics.map_or(String::new(), |a| format!(
            ", metrics at http://{a}/metrics"
        )),
        std::process::id()
    );
    let served = accept_until(&listener, &stop, &jobs);
    drop(jobs);
    if let Some(http) = http {
        let _ = http.join();
    }
    let _ = walker.join();
    let _ = std::fs::remove_file(socket);
    served
}

/// Listens at `path`, born with mode 0600 (0660 and the group's with
/// `gid`). A socket left by a server that is gone is replaced; a live one
/// is not.
fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!("a server is already listening at {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    // SAFETY: umask only swaps the process's file-creation mask; it is
    // restored right after the bind, before any other thread starts.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("listening at {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, Some(0), Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)))
            .with_context(|| format!("giving group {gid} access to {}", path.display()))?;
    }
    Ok(listener)
}

/// Accepts clients until `stop`, each on a thread of its own.
fn accept_until(
    listener: &UnixListener,
    stop: &AtomicBool,
    jobs: &mpsc::Sender<Job>,
) -> Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let mut ready = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; 100 ms, then the stop flag is read.
        if unsafe { libc::poll(&mut ready, 1, 100) } != 1 {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("accepting a client"),
        };
        if active.fetch_add(1, Ordering::SeqCst) >= CLIENTS_MAX {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Answer::refused(
                1,
                format!("the server is busy ({CLIENTS_MAX} clients at once); try again, or use --no-server"),
            );
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = send_answer(&stream, busy);
            continue;
        }
        let jobs = jobs.clone();
        let active = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("client".into())
            .spawn(move || {
                serve_client(stream, &jobs);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            eprintln!("itersnap: could not start a thread for a client");
        }
    }
    Ok(())
}

/// Reads one client's query, has it walked, sends the answer.
fn serve_client(stream: UnixStream, jobs: &mpsc::Sender<Job>) {
    let job = match read_query(&stream, Instant::now() + QUERY_TIMEOUT) {
        Err(why) => Err(why),
        Ok(Incoming::Status) => {
            Ok(Box::new(|reply| Job::Status { reply }) as Box<dyn FnOnce(_) -> Job>)
        }
        Ok(Incoming::Query(args, color)) => request_of(args).map(|req| {
            Box::new(move |reply| Job::Query { req, color, reply }) as Box<dyn FnOnce(_) -> Job>
        }),
    };
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let job = match job {
        Err(why) => return drop(send_answer(&stream, Answer::refused(2, why))),
        Ok(job) => job,
    };
    let (reply, pieces) = mpsc::channel();
    if jobs.send(job(reply)).is_ok() {
        // A client that stops reading is dropped: the rest of its pieces
        // go with the channel.
        for piece in &pieces {
            if send_piece(&stream, &piece).is_err() || matches!(piece, Piece::Exit(_)) {
                return;
            }
        }
    }
    let _ = send_answer(&stream, Answer::refused(1, "the server is stopping".into()));
}

/// A query's arguments and color flag, or a status request, read by
/// `deadline`; why not, as one line.
fn read_query(mut stream: &UnixStream, deadline: Instant) -> Result<Incoming, String> {
    let mut head = [0u8; 5];
    read_by(&mut stream, &mut head, deadline)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    match (head[0], len) {
        (STATUS, 0) => return Ok(Incoming::Status),
        (QUERY, _) => {}
        _ => return Err("not an itersnap query".into()),
    }
    if len > QUERY_MAX {
        return Err(format!(
            "a query of {len} bytes; at most {QUERY_MAX} are read"
        ));
    }
    let mut body = vec![0u8; len];
    read_by(&mut stream, &mut body, deadline)?;
    parse_query(&body)
        .map(|(args, color)| Incoming::Query(args, color))
        .ok_or_else(|| "a malformed query".to_string())
}

/// Fills `buf` from the stream, or says why not by `deadline`.
fn read_by(stream: &mut &UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut at = 0;
    while at < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete query within {} s",
                QUERY_TIMEOUT.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf[at..]) {
            Ok(0) => return Err("the query ended early".into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the query: {e}")),
        }
    }
    Ok(())
}

/// The query's body: version, flags, argument count, then each argument
/// as a length and its bytes. Bounds-checked: it comes from any client.
fn parse_query(body: &[u8]) -> Option<(Vec<OsString>, bool)> {
    let (&version, rest) = body.split_first()?;
    let (&flags, mut rest) = rest.split_first()?;
    if version != VERSION {
        return None;
    }
    let take_u32 = |rest: &mut &[u8]| -> Option<u32> {
        let (n, tail) = rest.split_first_chunk::<4>()?;
        *rest = tail;
        Some(u32::from_le_bytes(*n))
    };
    let argc = take_u32(&mut rest)? as usize;
    let mut args = Vec::with_capacity(argc.min(rest.len() / 4));
    for _ in 0..argc {
        let len = take_u32(&mut rest)? as usize;
        let arg = rest.get(..len)?;
        rest = &rest[len..];
        args.push(OsString::from_vec(arg.to_vec()));
    }
    rest.is_empty().then_some((args, flags & COLOR != 0))
}

/// A query's body for these arguments.
fn query_body(args: &[OsString], color: bool) -> Vec<u8> {
    let mut body = vec![VERSION, if color { COLOR } else { 0 }];
    body.extend_from_slice(&(args.len() as u32).to_le_bytes());
    for arg in args {
        body.extend_from_slice(&(arg.len() as u32).to_le_bytes());
        body.extend_from_slice(arg.as_bytes());
    }
    body
}

/// The request the arguments make, as the command line would; what the
/// server does not answer is refused (the command line does not send it).
fn request_of(args: Vec<OsString>) -> Result<Request, String> {
    let cli = Cli::try_parse_from(std::iter::once(OsString::from("itersnap")).chain(args))
        .map_err(clap_line)?;
    if let Some(e) = cli.refusal() {
        return Err(clap_line(e));
    }
    let req = cli.request();
    if cli.command.is_some() || !req.trigger.is_oneshot() || req.flamegraph.is_some() {
        return Err("the server answers one-shot snapshots only".into());
    }
    Ok(req)
}

/// A command-line error's first line, without clap's `error: `.
fn clap_line(e: clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// For the fuzzer (fuzz/fuzz_targets/queries.rs): a client's bytes, any
/// of them, read as a query's body and parsed as the server parses it.
/// Whatever they are, this returns.
pub fn parse_untrusted_query(body: &[u8]) -> Option<Result<Request, String>> {
    parse_query(body).map(|(args, _)| request_of(args))
}

/// Writes one piece of an answer as a frame: its head, then its bytes.
fn send_piece(mut stream: &UnixStream, piece: &Piece) -> io::Result<()> {
    let (kind, data) = match piece {
        Piece::Messages(data) => (MESSAGES, data.as_slice()),
        Piece::Output(data) => (OUTPUT, data.as_slice()),
        Piece::Exit(status) => (EXIT, std::slice::from_ref(status)),
    };
    stream.write_all(&frame_head(kind, data.len()))?;
    stream.write_all(data)
}

/// Writes the three frames of a whole answer.
fn send_answer(stream: &UnixStream, answer: Answer) -> io::Result<()> {
    answer
        .pieces()
        .iter()
        .try_for_each(|piece| send_piece(stream, piece))
}

fn frame_head(kind: u8, len: usize) -> [u8; 5] {
    let mut head = [kind, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(len.min(u32::MAX as usize) as u32).to_le_bytes());
    head
}

/// A question's backend, loaded once.
struct Loaded {
    key: String,
    backend: Box<dyn crate::backend::Backend>,
    reason: String,
    loaded: Instant,
    used: Instant,
}

/// The walking thread's state: every loaded backend (the questions', the
/// triggers'), and where the triggers' snapshots go.
struct Walker {
    machine: Machine,
    kept: Vec<Loaded>,
    counts: ServerCounts,
    /// --triggers: its path and lines.
    config: Option<(PathBuf, Vec<TriggerLine>)>,
    armed: Vec<(usize, run::Watch)>,
    log: Log,
}

impl Walker {
    fn new(btf: BtfNames, config: Option<(PathBuf, Vec<TriggerLine>)>, log: Log) -> Walker {
        Walker {
            machine: Machine::read(btf),
            kept: Vec::new(),
            counts: ServerCounts::default(),
            config,
            armed: Vec::new(),
            log,
        }
    }

    /// Arms every trigger of the config; the first that cannot be armed
    /// is the error (the others armed before it are released).
    fn arm_all(&mut self) -> Result<()> {
        let Some((path, lines)) = &self.config else {
            return Ok(());
        };
        let mut armed = Vec::new();
        for line in lines {
            let watch = run::Watch::arm(line.req.clone(), &mut self.machine)
                .with_context(|| format!("{}:{}", path.display(), line.number))?;
            eprintln!(
                "itersnap: armed ({}:{}): {}",
                path.display(),
                line.number,
                watch.describe()
            );
            armed.push((line.number, watch));
        }
        self.armed = armed;
        Ok(())
    }

    /// SIGHUP: the config read again and every trigger armed afresh; a
    /// config that cannot be read or armed keeps the triggers before it.
    fn reload(&mut self) {
        let Some(path) = self.config.as_ref().map(|(p, _)| p.clone()) else {
            eprintln!("itersnap: SIGHUP: no --triggers to read again");
            return;
        };
        let lines = match read_triggers(&path) {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("itersnap: SIGHUP: {e:#}; the triggers before it stay armed");
                return;
            }
        };
        let before = self.config.replace((path.clone(), lines));
        let old = std::mem::take(&mut self.armed);
        if let Err(e) = self.arm_all() {
            eprintln!("itersnap: SIGHUP: {e:#}; the triggers before it stay armed");
            self.config = before;
            self.armed = old;
            return;
        }
        drop(old);
        eprintln!(
            "itersnap: SIGHUP: {} armed from {}",
            plural(self.armed.len(), "trigger"),
            path.display()
        );
    }

    /// Answers jobs one at a time and polls the triggers between them,
    /// until the server stops (what is queued then is dropped, and the
    /// clients' threads answer that it stops) or every sender is gone.
    fn run(mut self, queue: mpsc::Receiver<Job>, stop: &AtomicBool) {
        let mut last_job = None;
        while !stop.load(Ordering::SeqCst) {
            if RELOAD.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            // Triggers are completed at most this long after their event.
            let wait = if self.armed.is_empty() {
                100
            } else {
                TRIGGER_POLL_MS
            };
            match queue.recv_timeout(Duration::from_millis(wait)) {
                Ok(job) => {
                    self.handle(job);
                    last_job = Some(Instant::now());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A full snapshot leaves tens of MB freed but kept by
                    // malloc: given back once the server is idle (not after
                    // each job: the next would fault them in again).
                    if last_job.is_some_and(|t| t.elapsed() >= IDLE_TRIM) {
                        last_job = None;
                        // SAFETY: no arguments to uphold; glibc locks each arena.
                        unsafe { libc::malloc_trim(0) };
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.poll_triggers();
        }
    }

    fn handle(&mut self, job: Job) {
        let (machine, kept) = (&mut self.machine, &mut self.kept);
        match job {
            Job::Warm(req) => {
                let loaded = Prepared::new(&req, machine)
                    .and_then(|prepared| kept_for(&req, &prepared, &machine.btf, kept));
                if let Err(e) = loaded {
                    eprintln!("itersnap: loading the default question's programs: {e:#}");
                }
            }
            Job::Query { req, color, reply } => {
                self.counts.queries += 1;
                // Freed once the answer's last piece is on its way.
                drop(answer(&req, color, machine, kept, &reply));
            }
            Job::Scrape { reply } => {
                self.counts.scrapes += 1;
                let file = self.config.as_ref().map(|(p, _)| p.display().to_string());
                self.counts.triggers = self
                    .armed
                    .iter()
                    .map(|(number, watch)| {
                        let (snapshots, skipped_gap, skipped_busy, missed, _) = watch.counts();
                        TriggerCounts {
                            trigger: format!("{}:{number}", file.as_deref().unwrap_or("?")),
                            snapshots,
                            skipped_gap,
                            skipped_busy,
                            missed,
                        }
                    })
                    .collect();
                let _ = reply.send(scrape(machine, kept, &mut self.counts));
            }
            Job::Status { reply } => {
                let line = format!(
                    "pid {}, {} loaded, {} armed, {} answered, {} served",
                    std::process::id(),
                    plural(kept.len(), "question"),
                    plural(self.armed.len(), "trigger"),
                    plural(self.counts.queries as usize, "query"),
                    plural(self.counts.scrapes as usize, "scrape"),
                );
                let status = Answer {
                    messages: Vec::new(),
                    output: line.into_bytes(),
                    status: 0,
                };
                for piece in status.pieces() {
                    let _ = reply.send(piece);
                }
            }
        }
    }

    /// Each trigger's snapshots since the last poll, to the log; a trigger
    /// whose run is over (its --count, its process gone) is released.
    fn poll_triggers(&mut self) {
        let path = self.config.as_ref().map(|(p, _)| p.display().to_string());
        let (log, dropped) = (&mut self.log, &mut self.counts.records_dropped);
        self.armed.retain_mut(|(number, watch)| {
            let mut out = Vec::new();
            let dropped_before = watch.counts().4;
            let going = watch.poll(&mut out);
            *dropped += watch.counts().4 - dropped_before;
            if !out.is_empty() {
                if let Err(e) = log.append(&out) {
                    eprintln!("itersnap: writing the triggers' log: {e}");
                }
            }
            match going {
                Ok(true) => true,
                Ok(false) => {
                    eprintln!(
                        "itersnap: done ({}:{number}): {}",
                        path.as_deref().unwrap_or("?"),
                        watch.describe()
                    );
                    false
                }
                Err(e) => {
                    eprintln!(
                        "itersnap: error ({}:{number}): {e:#}; released",
                        path.as_deref().unwrap_or("?")
                    );
                    false
                }
            }
        });
    }
}

/// How often the walking thread looks for the triggers' snapshots.
const TRIGGER_POLL_MS: u64 = 20;

/// One trigger of --triggers: its line number and what it asks.
struct TriggerLine {
    number: usize,
    req: Request,
}

/// The triggers of a config file: one per line, as itersnap's arguments
/// (split at white space; `#` starts a comment), each with a trigger
/// option; their snapshots are JSON Lines.
fn read_triggers(path: &Path) -> Result<Vec<TriggerLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--triggers {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let args = ["itersnap", "-o", "json"]
            .into_iter()
            .chain(line.split_whitespace());
        let cli =
            Cli::try_parse_from(args).map_err(|e| anyhow::anyhow!("{}: {}", at(), clap_line(e)))?;
        if let Some(e) = cli.refusal() {
            anyhow::bail!("{}: {}", at(), clap_line(e));
        }
        let req = cli.request();
        if cli.command.is_some() || req.trigger.is_oneshot() {
            anyhow::bail!("{}: not a trigger (--interval, --on-signal, --on-syscall, --on-tracepoint, --on-uprobe)", at());
        }
        if req.folds() {
            anyhow::bail!(
                "{}: --folded and --flamegraph write at the end of a run, not as it goes",
                at()
            );
        }
        lines.push(TriggerLine { number: i + 1, req });
    }
    Ok(lines)
}

/// Where the triggers' snapshots go: a file, rotated when the next write
/// would take it past its size (to FILE.1, FILE.1 to FILE.2, …, LOG_KEEP
/// kept), or stdout (the journal, under systemd).
struct Log {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    size: u64,
    limit: u64,
}

/// Rotated files kept beside the log.
pub const LOG_KEEP: u32 = 4;

impl Log {
    fn open(path: Option<&Path>, limit: u64) -> Result<Log> {
        let Some(path) = path else {
            return Ok(Log {
                path: None,
                out: Box::new(io::stdout()),
                size: 0,
                limit,
            });
        };
        let file = Self::append_to(path)?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Log {
            path: Some(path.to_path_buf()),
            out: Box::new(file),
            size,
            limit,
        })
    }

    fn append_to(path: &Path) -> Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("--log {}", path.display()))
    }

    /// Appends whole lines, rotating first if they would not fit.
    fn append(&mut self, lines: &[u8]) -> Result<()> {
        if let Some(path) = &self.path {
            if self.size > 0 && self.size + lines.len() as u64 > self.limit {
                let numbered = |n: u32| {
                    let mut p = path.as_os_str().to_owned();
                    p.push(format!(".{n}"));
                    PathBuf::from(p)
                };
                for n in (1..LOG_KEEP).rev() {
                    let _ = std::fs::rename(numbered(n), numbered(n + 1));
                }
                std::fs::rename(path, numbered(1))
                    .with_context(|| format!("rotating {}", path.display()))?;
                self.out = Box::new(Self::append_to(path)?);
                self.size = 0;
            }
        }
        self.out.write_all(lines)?;
        self.out.flush()?;
        self.size += lines.len() as u64;
        Ok(())
    }
}

/// A scrape's metrics, from a snapshot of every thread with its files,
/// sockets and (where the kernel has iter/task_vma) mapped files.
fn scrape(machine: &mut Machine, kept: &mut Vec<Loaded>, counts: &mut ServerCounts) -> Answer {
    let mut args = vec!["itersnap", "--threads"];
    if crate::features::maps_unsupported(&machine.btf).is_none() {
        args.push("--maps");
    }
    let taken = Cli::try_parse_from(args)
        .map_err(anyhow::Error::from)
        .and_then(|cli| {
            let req = cli.request();
            let (at, prepared) = backend_for(&req, machine, kept)?;
            kept[at].used = Instant::now();
            let taken = run::take_oneshot(&req, &prepared, kept[at].backend.as_mut());
            if taken.is_err() {
                kept.remove(at);
            }
            taken
        });
    match taken {
        Ok(snap) => {
            counts.records_dropped += snap.counts.dropped;
            Answer {
                messages: Vec::new(),
                output: crate::output::metrics::render(&snap, counts).into_bytes(),
                status: 0,
            }
        }
        Err(e) => Answer::refused(1, format!("{e:#}")),
    }
}

/// The HTTP side (`--metrics`): GET /metrics has the walking thread take a
/// snapshot and answers with its metrics. Each request on a thread of its
/// own, at most CLIENTS_MAX at once.
fn serve_metrics(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    jobs: &mpsc::Sender<Job>,
) -> Result<std::thread::JoinHandle<()>> {
    let http =
        tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
    let (stop, jobs) = (Arc::clone(stop), jobs.clone());
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(Some(request)) = http.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                if active.fetch_add(1, Ordering::SeqCst) >= CLIENTS_MAX {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = request.respond(text_response(503, "too many scrapes at once\n"));
                    continue;
                }
                let (jobs, active) = (jobs.clone(), Arc::clone(&active));
                let _ = std::thread::Builder::new()
                    .name("scrape".into())
                    .spawn(move || {
                        respond_http(request, &jobs);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
            }
        })
        .context("starting the metrics thread")
}

fn text_response(status: u16, text: &str) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(text).with_status_code(status)
}

/// One HTTP request: the metrics, or what else is there.
fn respond_http(request: tiny_http::Request, jobs: &mpsc::Sender<Job>) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    if *request.method() != tiny_http::Method::Get {
        let _ = request.respond(text_response(405, "only GET\n"));
        return;
    }
    match path.as_str() {
        "/metrics" => {}
        "/" => {
            let _ = request.respond(text_response(200, "itersnap: metrics at /metrics\n"));
            return;
        }
        _ => {
            let _ = request.respond(text_response(404, "not found: metrics are at /metrics\n"));
            return;
        }
    }
    let (reply, answered) = mpsc::channel();
    let answer = jobs
        .send(Job::Scrape { reply })
        .ok()
        .and_then(|()| answered.recv().ok());
    let response = match answer {
        Some(a) if a.status == 0 => {
            let kind = tiny_http::Header::from_bytes(
                &b"Content-Type"[..],
                &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
            )
            .expect("a valid header");
            tiny_http::Response::from_data(a.output).with_header(kind)
        }
        Some(a) => text_response(500, &String::from_utf8_lossy(&a.messages)),
        None => text_response(503, "the server is stopping\n"),
    };
    let _ = request.respond(response);
}

/// One query's answer, as the command line would have printed it, sent to
/// `reply` in pieces while it is written; the snapshot it took is returned
/// to be freed once the client has the answer.
fn answer(
    req: &Request,
    color: bool,
    machine: &mut Machine,
    kept: &mut Vec<Loaded>,
    reply: &mpsc::Sender<Piece>,
) -> Option<crate::snapshot::Snapshot> {
    let (result, mut messages) = run::collecting_messages(|| {
        let mut output = PieceWriter {
            reply,
            buf: Vec::new(),
        };
        let result = backend_for(req, machine, kept).and_then(|(at, prepared)| {
            let loaded = &mut kept[at];
            loaded.used = Instant::now();
            if req.verbose {
                run::say(format_args!(
                    "itersnap: answered by the server (pid {}), with programs it loaded {:.1} s ago",
                    std::process::id(),
                    loaded.loaded.elapsed().as_secs_f64()
                ));
                run::describe_backend(req, loaded.backend.as_ref(), &loaded.reason);
            }
            let answered =
                run::answer_oneshot(req, &prepared, loaded.backend.as_mut(), color, &mut output);
            if answered.is_err() {
                // Loaded afresh next time.
                kept.remove(at);
            }
            answered
        });
        // What was written before an error still goes.
        let _ = output.flush();
        result
    });
    let (status, snap) = match result {
        Ok((outcome, snap)) => {
            let (status, line) = outcome.exit_status(req);
            if let Some(line) = line {
                let _ = writeln!(messages, "itersnap: {line}");
            }
            (status, Some(snap))
        }
        Err(e) => {
            let _ = writeln!(messages, "itersnap: error: {e:#}");
            (1, None)
        }
    };
    if !messages.is_empty() {
        let _ = reply.send(Piece::Messages(messages));
    }
    let _ = reply.send(Piece::Exit(status));
    snap
}

/// The backend that answers `req` (its place in `kept`), bound as the
/// request needs, and the walk it was prepared with. One pid alone is
/// asked of the programs loaded without a pid filter, their iterators
/// bound to that process: any pid is answered without loading anything
/// (where the kernel binds iterators, 6.1+; else the pid is in the
/// programs, a question of its own).
fn backend_for(
    req: &Request,
    machine: &mut Machine,
    kept: &mut Vec<Loaded>,
) -> Result<(usize, Prepared)> {
    if let ([pid], true, true) = (
        req.pids.as_slice(),
        req.comms.is_empty(),
        req.targets.is_empty(),
    ) {
        let unfiltered = Request {
            pids: Vec::new(),
            ..req.clone()
        };
        let prepared = Prepared::new(&unfiltered, machine)?;
        let at = kept_for(&unfiltered, &prepared, &machine.btf, kept)?;
        if kept[at].backend.bind_to(Some(*pid))? {
            return Ok((at, prepared));
        }
    }
    let prepared = Prepared::new(req, machine)?;
    let at = kept_for(req, &prepared, &machine.btf, kept)?;
    if !kept[at].backend.bind_to(None)? {
        anyhow::bail!("the server could not unbind its iterators");
    }
    Ok((at, prepared))
}

/// Where in `kept` the backend for this question is, loaded now if it was
/// not (the least recently used one going when there are too many).
fn kept_for(
    req: &Request,
    prepared: &Prepared,
    btf: &BtfNames,
    kept: &mut Vec<Loaded>,
) -> Result<usize> {
    // What the programs were loaded with (their .rodata) and which backend.
    let key = format!("{:?} {:?} {:?}", req.backend, prepared.walk, prepared.trig);
    if let Some(at) = kept.iter().position(|l| l.key == key) {
        return Ok(at);
    }
    if kept.len() >= SESSIONS_MAX {
        if let Some(oldest) = (0..kept.len()).min_by_key(|&i| kept[i].used) {
            kept.remove(oldest);
        }
    }
    let (backend, reason) = run::open_backend(req, &prepared.walk, &prepared.trig, btf)?;
    let now = Instant::now();
    kept.push(Loaded {
        key,
        backend,
        reason,
        loaded: now,
        used: now,
    });
    Ok(kept.len() - 1)
}

/// Why a query is not sent to a server, if it is not: the server answers
/// one-shots, and reads paths in its own working directory.
pub fn not_for_server(cli: &Cli, req: &Request) -> Option<&'static str> {
    if cli.no_server {
        return Some("--no-server");
    }
    if !req.trigger.is_oneshot() {
        return Some("a run with a trigger is not a one-shot");
    }
    if req.flamegraph.is_some() {
        return Some("--flamegraph writes a file here");
    }
    let relative = req.targets.iter().any(|t| !t.name.starts_with(b"/"))
        || req
            .cgroup
            .as_ref()
            .is_some_and(|(p, _)| !p.starts_with('/'));
    relative.then_some("a relative path is this directory's")
}

/// How a query sent to a server went.
pub enum Served {
    /// Answered, with this exit status.
    Answered(u8),
    /// Not answered, nothing written: why (the run goes on here).
    No(String),
}

/// Sends the command line's arguments to the server at `path` and writes
/// its answer to stdout and stderr.
pub fn query(path: &Path, args: &[OsString], color: bool) -> Served {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => return Served::No(format!("no server at {}: {e}", path.display())),
    };
    // A first question loads its programs (tens of ms, a second at most on a
    // large machine); a server silent this long is stuck.
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let body = query_body(args, color);
    let sent = stream
        .write_all(&frame_head(QUERY, body.len()))
        .and_then(|()| stream.write_all(&body));
    let mut any = false;
    loop {
        let mut head = [0u8; 5];
        // A server that answers without reading (busy) may have closed
        // before the query was all written: its answer is still there.
        if let Err(e) = stream.read_exact(&mut head) {
            if !any {
                return Served::No(match &sent {
                    Err(sending) => {
                        format!("the server at {} took no query: {sending}", path.display())
                    }
                    Ok(()) => format!("the server at {} did not answer: {e}", path.display()),
                });
            }
            eprintln!(
                "itersnap: error: the server at {} stopped answering: {e}",
                path.display()
            );
            return Served::Answered(1);
        }
        any = true;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if head[0] == EXIT {
            let mut status = [1u8];
            let _ = stream.read_exact(&mut status[..len.min(1)]);
            return Served::Answered(status[0]);
        }
        let relayed = match head[0] {
            OUTPUT => relay(&mut stream, len, &mut io::stdout().lock()),
            MESSAGES => relay(&mut stream, len, &mut io::stderr().lock()),
            _ => Err(io::Error::other("an unknown frame")),
        };
        match relayed {
            // `itersnap | head`: nobody reads; end quietly, as a run here.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Served::Answered(0),
            Err(e) => {
                eprintln!("itersnap: error: the server's answer: {e}");
                return Served::Answered(1);
            }
            Ok(()) => {}
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "query") => format!("{n} queries"),
        _ => format!("{n} {what}s"),
    }
}

/// Whether a server answers at `path`: Ok(what it holds, one line), or
/// why not.
pub fn status(path: &Path) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(QUERY_TIMEOUT));
    stream
        .write_all(&frame_head(STATUS, 0))
        .map_err(|e| e.to_string())?;
    let (mut line, mut messages) = (Vec::new(), Vec::new());
    loop {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.min(QUERY_MAX)];
        stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        match head[0] {
            OUTPUT => line = body,
            MESSAGES => messages = body,
            EXIT if body == [0] => return Ok(String::from_utf8_lossy(&line).into_owned()),
            EXIT => return Err(String::from_utf8_lossy(&messages).trim().to_string()),
            _ => {}
        }
    }
}

/// Copies `len` bytes of a frame from the server to `to`.
fn relay(from: &mut UnixStream, len: usize, to: &mut dyn Write) -> io::Result<()> {
    let copied = io::copy(&mut from.take(len as u64), to)?;
    if copied < len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_in_pieces_after_the_messages_said_before_it() {
        let (reply, pieces) = mpsc::channel();
        let ((), _) = run::collecting_messages(|| {
            let mut out = PieceWriter {
                reply: &reply,
                buf: Vec::new(),
            };
            run::say(format_args!("first"));
            out.write_all(&vec![b'a'; PIECE_BYTES + 10]).unwrap();
            run::say(format_args!("second"));
            out.write_all(b"bc").unwrap();
            out.flush().unwrap();
            out.flush().unwrap();
        });
        drop(reply);
        let got: Vec<_> = pieces
            .iter()
            .map(|p| match p {
                Piece::Messages(m) => format!("E {}", String::from_utf8_lossy(&m)),
                Piece::Output(o) => format!("O {}", o.len()),
                Piece::Exit(s) => format!("X {s}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                "E first\n",
                &format!("O {}", PIECE_BYTES + 10),
                "E second\n",
                "O 2"
            ]
        );
    }

    #[test]
    fn queries_round_trip_any_bytes() {
        let args = vec![
            OsString::from("--pid"),
            OsString::from("1"),
            OsString::from_vec(vec![0xff, 0, b'x']),
            OsString::new(),
        ];
        for color in [false, true] {
            assert_eq!(
                parse_query(&query_body(&args, color)),
                Some((args.clone(), color))
            );
        }
    }

    #[test]
    fn malformed_queries_are_refused() {
        let good = query_body(&[OsString::from("bash")], false);
        // Every truncation, a trailing byte, another version, a huge count.
        for cut in 0..good.len() {
            assert_eq!(parse_query(&good[..cut]), None, "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(parse_query(&long), None);
        let mut other = good.clone();
        other[0] = 9;
        assert_eq!(parse_query(&other), None);
        let huge = [VERSION, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_query(&huge), None);
    }
}
