//! `itersnap serve` (#23): one-shots through the server equal direct ones,
//! field by field; a question's programs load once; clients that send
//! garbage, too much or nothing get an error while others are answered; an
//! ordinary user cannot connect; a stopped or killed server leaves nothing
//! loaded. Each test runs its own server on a socket of its own.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// A running `itersnap serve` on a socket of its own; killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
    /// Its stderr so far, line by line.
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(tag: &str) -> Server {
        Self::start_with(tag, &[])
    }

    /// With more options of `serve`.
    fn start_with(tag: &str, extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("itersnap-serve-{}", unique_comm(tag)));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sock");
        let mut child = Command::new(ITERSNAP)
            .args(["serve", "--socket"])
            .arg(&socket)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("running itersnap serve");
        let err = BufReader::new(child.stderr.take().unwrap());
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&said);
        // Read all along, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let server = Server {
            child,
            socket,
            dir,
            said,
        };
        server.wait_for("itersnap: serving one-shot queries at ");
        server
    }

    /// Waits (at most 30 s) for a line of its stderr that starts so; the
    /// line.
    fn wait_for(&self, start: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self
                .said
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(start))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "serve never said {start:?}: {:?}",
                self.said.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// itersnap with `args`, sent to this server where it can be.
    fn query(&self, args: &[&str]) -> Output {
        Command::new(ITERSNAP)
            .env("ITERSNAP_SOCKET", &self.socket)
            .args(args)
            .output()
            .expect("running itersnap")
    }

    /// Sends SIGTERM or SIGKILL and returns the exit code.
    fn stop(&mut self, signal: i32) -> Option<i32> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().unwrap();
        status.code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The ids of the BPF programs a process holds open (its fdinfo).
fn programs_held(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        for line in info.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.extend(id.trim().parse::<u32>());
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Of these program ids, those the kernel still has (after up to 3 s).
fn still_loaded(ids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now: Vec<u32> = libbpf_rs::query::ProgInfoIter::default()
            .map(|p| p.id)
            .filter(|id| ids.contains(id))
            .collect();
        if now.is_empty() || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A snapshot's fields that differ between any two walks: clocks and
/// the walk's own timing.
const MOMENT_FIELDS: &[&str] = &[
    "time",
    "ktime_ns",
    "walk_ns",
    "latest_after_ns",
    "since_event_ns",
];

/// Every difference between two snapshots but their moments, as paths.
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                if MOMENT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => differences(p, q, &format!("{path}.{key}"), out),
                    _ => out.push(format!("{path}.{key}: only in one")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON snapshot")
}

#[test]
fn one_shots_through_the_server_equal_direct_ones() {
    let fixture = Fixture::start("srv");
    let server = Server::start("eq");
    let pid = fixture.pid.to_string();
    for args in [
        vec!["--pid", &pid],
        vec!["--pid", &pid, "--no-files"],
        vec!["--pid", &pid, "--threads"],
        vec!["--pid", &pid, "--backend", "seq"],
        // Twice: the second with the kernel's symbols the server kept.
        vec!["--pid", &pid, "--stacks"],
        vec!["--pid", &pid, "--stacks"],
        vec![&fixture.comm],
        vec![&fixture.comm, "--threads"],
    ] {
        let mut json = vec!["-o", "json"];
        json.extend(&args);
        let served = server.query(&[&json[..], &["-v"]].concat());
        let stderr = String::from_utf8_lossy(&served.stderr).into_owned();
        assert!(
            stderr.contains(&format!("answered by the server (pid {})", server.pid())),
            "{args:?}: {stderr}"
        );
        let direct = server.query(&[&json[..], &["--no-server"]].concat());
        let (served, direct) = (json_of(&served), json_of(&direct));
        assert!(!served["tasks"].as_array().unwrap().is_empty(), "{args:?}");
        let mut diffs = Vec::new();
        differences(&served, &direct, "", &mut diffs);
        assert!(
            diffs.is_empty(),
            "{args:?}: through the server and direct differ: {diffs:#?}"
        );
        // The table too, byte for byte below its heading (which has the
        // moment and the walk's time).
        let table = server.query(&args);
        let table_direct = server.query(&[&args[..], &["--no-server"]].concat());
        assert!(table.status.success());
        let body = |out: &Output| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_once('\n')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        };
        assert_eq!(body(&table), body(&table_direct), "{args:?}");
    }
    // The same exit status and line when nothing matches.
    let none = ["--pid", &pid, "--port", "9"];
    let (served, direct) = (
        server.query(&none),
        server.query(&[&none[..], &["--no-server"]].concat()),
    );
    assert_eq!(served.status.code(), Some(1));
    assert_eq!(direct.status.code(), Some(1));
    assert_eq!(served.stderr, direct.stderr);
    assert!(served.stdout.is_empty() == direct.stdout.is_empty());
}

#[test]
fn a_question_is_loaded_once_and_any_pid_asks_it() {
    let fixture = Fixture::start("srl");
    let server = Server::start("once");
    let (pid, other) = (fixture.pid.to_string(), std::process::id().to_string());
    let ask = |args: &[&str]| {
        let out = server.query(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
        (programs_held(server.pid()), task_pids(&snap))
    };
    let (first, pids) = ask(&["--pid", &pid, "--no-files", "-o", "json"]);
    assert_eq!(pids, [fixture.pid].into());
    for _ in 0..3 {
        assert_eq!(ask(&["--pid", &pid, "--no-files", "-o", "json"]).0, first);
    }
    // Another pid: the same programs, their iterators bound to it.
    let (held, pids) = ask(&["--pid", &other, "--no-files", "-o", "json"]);
    assert_eq!((held, pids), (first.clone(), [std::process::id()].into()));
    // With files: the default question's programs, loaded at the start.
    let (held, pids) = ask(&["--pid", &pid, "-o", "json"]);
    assert_eq!((held, pids), (first.clone(), [fixture.pid].into()));
    // Every process again, with the same programs unbound.
    let (held, pids) = ask(&["-o", "json"]);
    assert_eq!(held, first);
    assert!(pids.contains(&fixture.pid) && pids.contains(&std::process::id()) && pids.len() > 2);
    // Another question loads its own programs beside.
    let (more, _) = ask(&["--pid", &pid, "--stacks", "-o", "json"]);
    assert!(first.iter().all(|id| more.contains(id)) && more.len() > first.len());
    // --no-server takes it here, with its own programs.
    let out = server.query(&["--pid", &pid, "-o", "json", "--no-server", "-v"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("answered by the server"),
        "{stderr}"
    );
    assert!(stderr.contains("object loaded in"), "{stderr}");
}

/// Sends `bytes` (then nothing more) and reads the answer's frames:
/// (messages, output, exit status).
fn raw_exchange(socket: &PathBuf, bytes: &[u8]) -> (String, Vec<u8>, u8) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    read_answer(&mut s)
}

fn read_answer(s: &mut UnixStream) -> (String, Vec<u8>, u8) {
    let (mut messages, mut output) = (String::new(), Vec::new());
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).expect("an answer frame");
        let len = u32::from_le_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        match head[0] {
            b'E' => messages.push_str(&String::from_utf8_lossy(&body)),
            b'O' => output.extend(body),
            b'X' => return (messages, output, body[0]),
            k => panic!("unknown frame {k}"),
        }
    }
}

#[test]
fn bad_clients_get_an_error_while_others_are_answered() {
    let fixture = Fixture::start("srb");
    let server = Server::start("bad");
    let pid = fixture.pid.to_string();
    // Garbage.
    let (messages, output, status) = raw_exchange(&server.socket, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!((status, output.is_empty()), (2, true));
    assert_eq!(messages, "itersnap: error: not an itersnap query\n");
    // A length past the limit.
    let (messages, _, status) = raw_exchange(&server.socket, &[b'Q', 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(status, 2);
    assert!(
        messages.contains("a query of 2147483647 bytes; at most 65536"),
        "{messages}"
    );
    // A well-framed query whose body is not one.
    let (messages, _, status) = raw_exchange(&server.socket, &[b'Q', 3, 0, 0, 0, 1, 0, 9]);
    assert_eq!(
        (status, messages.as_str()),
        (2, "itersnap: error: a malformed query\n")
    );
    // Arguments the command line would refuse, and a run that is not a one-shot.
    let query = |args: &[&str]| {
        let mut body = vec![1u8, 0];
        body.extend((args.len() as u32).to_le_bytes());
        for a in args {
            body.extend((a.len() as u32).to_le_bytes());
            body.extend(a.as_bytes());
        }
        let mut framed = vec![b'Q'];
        framed.extend((body.len() as u32).to_le_bytes());
        framed.extend(body);
        framed
    };
    let (messages, _, status) = raw_exchange(&server.socket, &query(&["--frobnicate"]));
    assert_eq!(status, 2);
    assert!(messages.contains("unexpected argument"), "{messages}");
    let (messages, _, status) = raw_exchange(&server.socket, &query(&["--interval", "1s"]));
    assert_eq!(status, 2);
    assert!(messages.contains("one-shot snapshots only"), "{messages}");

    // A client that sends half a query and stalls: another is answered
    // meanwhile, and the first gets its error when its time is up.
    let mut slow = UnixStream::connect(&server.socket).unwrap();
    slow.write_all(&[b'Q', 10, 0]).unwrap();
    let started = Instant::now();
    let out = server.query(&["--pid", &pid, "-o", "json"]);
    assert_eq!(json_of(&out)["tasks"][0]["pid"], fixture.pid);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered while the other stalls"
    );
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (messages, _, status) = read_answer(&mut slow);
    assert_eq!(status, 2);
    assert_eq!(messages, "itersnap: error: no complete query within 5 s\n");
}

/// --socket-group: the group's members are answered, others are not; a
/// group that does not exist is an error.
#[test]
fn a_socket_group_lets_its_members_ask() {
    let fixture = Fixture::start("srg");
    // nogroup (65534), which the user nobody is put in below.
    let server = Server::start_with("grp", &["--socket-group", "65534"]);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&server.socket).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0o660, 0, 65534)
    );
    let as_nobody = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups, "--"])
            .arg(ITERSNAP)
            .args(["--pid", &fixture.pid.to_string(), "-o", "json", "-v"])
            .env("ITERSNAP_SOCKET", &server.socket)
            .output()
            .expect("setpriv (util-linux)")
    };
    let member = as_nobody("--clear-groups");
    let stderr = String::from_utf8_lossy(&member.stderr);
    assert!(member.status.success(), "{stderr}");
    assert!(stderr.contains("answered by the server"), "{stderr}");
    assert_eq!(json_of(&member)["tasks"][0]["pid"], fixture.pid);
    // Not of the group: the socket refuses, the run here needs root.
    let other = Command::new("setpriv")
        .args(["--reuid=65533", "--regid=65533", "--clear-groups", "--"])
        .arg(ITERSNAP)
        .arg("-v")
        .env("ITERSNAP_SOCKET", &server.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains("Permission denied") && stderr.contains("needs root"),
        "{stderr}"
    );
    assert_eq!(other.status.code(), Some(1));

    let unknown = Command::new(ITERSNAP)
        .args(["serve", "--socket"])
        .arg(server.dir.join("other"))
        .args(["--socket-group", "no-such-group-here"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "itersnap: error: --socket-group no-such-group-here: no such group\n"
    );
}

#[test]
fn an_ordinary_user_cannot_connect() {
    let server = Server::start("priv");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(ITERSNAP)
        .arg("-v")
        .env("ITERSNAP_SOCKET", &server.socket)
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "itersnap: taken here, not by a server: no server at {}: Permission denied",
            server.socket.display()
        )),
        "{stderr}"
    );
    // Taken here, it needs what the user does not have.
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("needs root"), "{stderr}");
    let mode = std::fs::metadata(&server.socket).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((mode.mode() & 0o777, mode.uid()), (0o600, 0));
}

#[test]
fn a_stopped_or_killed_server_leaves_nothing_loaded() {
    let fixture = Fixture::start("srs");
    let pid = fixture.pid.to_string();
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let mut server = Server::start("stop");
        assert!(server
            .query(&["--pid", &pid, "-o", "json"])
            .status
            .success());
        let held = programs_held(server.pid());
        assert!(!held.is_empty());
        // A second server on the same socket is refused.
        let second = Command::new(ITERSNAP)
            .args(["serve", "--socket"])
            .arg(&server.socket)
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&second.stderr),
            format!(
                "itersnap: error: a server is already listening at {}\n",
                server.socket.display()
            )
        );
        // A client that never sends its query does not hold the stop up.
        let _stalled = UnixStream::connect(&server.socket).unwrap();
        let stopping = Instant::now();
        let code = server.stop(signal);
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "{:?}",
            stopping.elapsed()
        );
        assert_eq!(still_loaded(&held), Vec::<u32>::new(), "signal {signal}");
        if signal == libc::SIGTERM {
            assert_eq!(code, Some(0));
            assert!(!server.socket.exists(), "the socket is removed");
        }
    }
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

#[test]
fn a_socket_left_by_a_killed_server_is_taken_over() {
    let mut first = Server::start("stale");
    // Killed: its socket stays behind, with no one listening.
    first.stop(libc::SIGKILL);
    assert!(first.socket.exists());
    let mut again = Command::new(ITERSNAP)
        .args(["serve", "--socket"])
        .arg(&first.socket)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(again.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = again.kill();
    let _ = again.wait();
    assert!(
        line.starts_with("itersnap: serving one-shot queries at "),
        "{line}"
    );
}

/// A free TCP port on the loopback address (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` from a loopback HTTP server.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// A PromQL query as a URL's query string value.
fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An ext4 image loop-mounted and frozen (fsfreeze), with a process of a
/// name of our own blocked writing to it: a task in D state. Thawed and
/// unmounted when dropped.
struct FrozenWriter {
    dir: PathBuf,
    mnt: PathBuf,
    writer: Reaped,
    comm: String,
}

impl FrozenWriter {
    fn start() -> FrozenWriter {
        let comm = unique_comm("dw");
        let dir = std::env::temp_dir().join(format!("itersnap-{comm}"));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let image = dir.join("fs.img");
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate").arg("-s").arg("8M").arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        run(Command::new("fsfreeze").arg("-f").arg(&mnt));
        // touch under a name of our own: its comm is the file's name.
        let exe = dir.join(&comm);
        std::fs::copy("/usr/bin/touch", &exe).unwrap();
        let writer = Reaped::spawn(Command::new(&exe).arg(mnt.join("blocked")));
        let deadline = Instant::now() + Duration::from_secs(10);
        while proc_stat(writer.pid()).is_none_or(|(_, rest)| rest[0] != "D") {
            assert!(Instant::now() < deadline, "the writer never blocked in D");
            std::thread::sleep(Duration::from_millis(20));
        }
        FrozenWriter {
            dir,
            mnt,
            writer,
            comm,
        }
    }
}

impl Drop for FrozenWriter {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mnt).status();
        let _ = self.writer.0.wait();
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prometheus (Debian's) scraping `serve --metrics` returns, through its
/// query API, the fixture's listening port and a task in D state.
#[test]
fn prometheus_scrapes_the_fixtures_listener_and_a_d_state_task() {
    let fixture = Fixture::start("srm");
    let frozen = FrozenWriter::start();
    // The fixture's TCP listener, as a one-shot shows it.
    let snap = snapshot(&["--pid", &fixture.pid.to_string(), "--no-server"]);
    let bound = |protocol: &str, state: &str| {
        snap["tasks"][0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|f| {
                let s = &f["socket"];
                (s["protocol"] == protocol && s["state"] == state)
                    .then(|| s["local"]["port"].to_string())
            })
            .unwrap_or_else(|| panic!("the fixture has no {protocol} socket in {state}"))
    };
    // What `ss -l` lists: TCP listeners and bound UDP sockets.
    let ports = [
        ("tcp", bound("tcp", "LISTEN")),
        ("udp", bound("udp", "UNCONNECTED")),
    ];

    let metrics_port = free_port();
    let dir = std::env::temp_dir().join(format!("itersnap-prom-{}", unique_comm("pr")));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("sock");
    let _server = Reaped::spawn(
        Command::new(ITERSNAP)
            .args(["serve", "--socket"])
            .arg(&socket)
            .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
            .stderr(Stdio::null()),
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: itersnap\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let _prometheus = Reaped::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let query = |promql: &str| -> Vec<Value> {
        let body = http_get(
            prom_port,
            &format!("/api/v1/query?query={}", url_encoded(promql)),
        );
        body.and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
    let listener = format!("itersnap_listening_sockets{{comm=\"{}\"}}", fixture.comm);
    let blocked = format!("itersnap_uninterruptible_tasks{{comm=\"{}\"}}", frozen.comm);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (found_listener, found_blocked) = loop {
        let (l, b) = (query(&listener), query(&blocked));
        if (!l.is_empty() && !b.is_empty()) || Instant::now() > deadline {
            break (l, b);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut listed: Vec<(String, String, String)> = found_listener
        .iter()
        .map(|r| {
            let m = &r["metric"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&m["protocol"]), text(&m["port"]), text(&r["value"][1]))
        })
        .collect();
    listed.sort();
    let want: Vec<(String, String, String)> = ports
        .iter()
        .map(|(p, port)| (p.to_string(), port.clone(), "1".to_string()))
        .collect();
    assert_eq!(listed, want);
    assert_eq!(found_blocked.len(), 1, "{found_blocked:?}");
    assert_eq!(found_blocked[0]["value"][1], "1");
    // The D-state count holds it too.
    let d = query("itersnap_tasks{state=\"D\"}");
    assert!(
        d.first()
            .and_then(|v| v["value"][1].as_str()?.parse::<u64>().ok())
            >= Some(1),
        "{d:?}"
    );
    drop(frozen);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_the_server() {
    let server = Server::start("chk");
    let out = server.query(&["check", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("check's JSON");
    assert_valid_check(&report);
    assert_eq!(report["server"]["answers"], true, "{report}");
    assert_eq!(
        report["server"]["socket"],
        server.socket.display().to_string().as_str()
    );
    let detail = report["server"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("pid {}, ", server.pid())),
        "{detail}"
    );
    let table = String::from_utf8(server.query(&["check"]).stdout).unwrap();
    assert!(
        table.contains(&format!(
            "  yes one-shots go to the server at {} (pid {}, ",
            server.socket.display(),
            server.pid()
        )),
        "{table}"
    );
    let env_socket = server.socket.clone();
    drop(server);
    let out = Command::new(ITERSNAP)
        .env("ITERSNAP_SOCKET", &env_socket)
        .args(["check", "-o", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid_check(&report);
    assert_eq!(report["server"]["answers"], false);
    assert!(
        report["server"]["detail"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{report}"
    );
}

/// docs/fleet.md's scrape config and alert rules, as promtool reads them.
#[test]
fn the_fleet_docs_config_and_rules_pass_promtool() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fleet.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "a scrape config and the rules");
    let dir = std::env::temp_dir().join(format!("itersnap-promtool-{}", unique_comm("pt")));
    std::fs::create_dir_all(&dir).unwrap();
    for (block, what) in blocks.iter().zip(["config", "rules"]) {
        let file = dir.join(format!("{what}.yml"));
        std::fs::write(&file, block).unwrap();
        let out = Command::new("promtool")
            .args(["check", what])
            .arg(&file)
            .output()
            .expect("promtool (Debian's prometheus package)");
        assert!(
            out.status.success(),
            "promtool check {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// scripts/itersnap.service's ExecStart is a command line `serve` takes
/// (its socket and port moved to the test's own).
#[test]
fn the_systemd_units_command_starts_a_server() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/itersnap.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("@PREFIX@/bin/itersnap"));
    let port = free_port().to_string();
    let args: Vec<String> = words
        .map(|w| match w.rsplit_once(':') {
            Some(("127.0.0.1", _)) => format!("127.0.0.1:{port}"),
            _ => w.to_string(),
        })
        .collect();
    assert_eq!(args[0], "serve");
    let dir = std::env::temp_dir().join(format!("itersnap-unit-{}", unique_comm("un")));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Reaped::spawn(
        Command::new(ITERSNAP)
            .args(&args)
            .arg("--socket")
            .arg(dir.join("sock"))
            .stderr(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(server.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains(&format!("metrics at http://127.0.0.1:{port}/metrics")),
        "{line}"
    );
    let metrics = http_get(port.parse().unwrap(), "/metrics").unwrap_or_default();
    assert!(metrics.contains("itersnap_processes "), "{metrics}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The JSON lines of a log and of its rotated files, oldest first.
fn logged(log: &std::path::Path) -> Vec<Value> {
    let mut all = Vec::new();
    for n in (1..=4).rev() {
        let rotated = PathBuf::from(format!("{}.{n}", log.display()));
        all.extend(parse_lines(
            &std::fs::read_to_string(rotated).unwrap_or_default(),
        ));
    }
    all.extend(parse_lines(
        &std::fs::read_to_string(log).unwrap_or_default(),
    ));
    all
}

/// Waits (at most 10 s) until the log holds `n` snapshots.
fn wait_for_logged(log: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snaps = logged(log);
        if snaps.len() >= n || Instant::now() > deadline {
            return snaps;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// --triggers: a config's trigger armed by the server, its snapshots
/// appended to --log as JSON Lines and rotated at --log-size; SIGHUP reads
/// the config again (a bad one keeps the triggers before it).
#[test]
fn triggers_from_a_config_file_are_logged_rotated_and_reloaded() {
    let fixture = Fixture::start("srt");
    let dir = std::env::temp_dir().join(format!("itersnap-trig-{}", unique_comm("tr")));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, log) = (dir.join("triggers.conf"), dir.join("snapshots.jsonl"));
    let line = |sig: &str| {
        format!(
            "# the fixture's own signals\n\n--on-signal {sig} --signal-target {} --no-files {}  # a comment\n",
            fixture.pid, fixture.comm
        )
    };
    std::fs::write(&config, line("SIGURG")).unwrap();
    let metrics_port = free_port().to_string();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut server = Server::start_with(
        "trig",
        &[
            "--triggers",
            config.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--log-size",
            "1K",
            "--metrics",
            &metrics_addr,
        ],
    );
    let armed = server.wait_for("itersnap: armed (");
    assert!(
        armed.contains(&format!("{}:3): ", config.display())),
        "{armed}"
    );
    // Three signals, past the default --min-gap: three snapshots, each a
    // line longer than 1K, so each in a file of its own.
    for n in 1..=3 {
        signal(fixture.pid, libc::SIGURG);
        assert_eq!(wait_for_logged(&log, n).len(), n);
        std::thread::sleep(Duration::from_millis(150));
    }
    let snaps = logged(&log);
    for snap in &snaps {
        assert_valid_snapshot(snap);
        assert_eq!(snap["trigger"]["type"], "signal");
        assert_eq!(task_pids(snap), [fixture.pid].into());
    }
    assert!(
        PathBuf::from(format!("{}.2", log.display())).exists(),
        "rotated twice"
    );

    // Another signal after SIGHUP; the one before no longer fires.
    std::fs::write(&config, line("SIGWINCH")).unwrap();
    signal(server.pid(), libc::SIGHUP);
    server.wait_for("itersnap: SIGHUP: 1 trigger armed from ");
    signal(fixture.pid, libc::SIGURG);
    signal(fixture.pid, libc::SIGWINCH);
    let snaps = wait_for_logged(&log, 4);
    std::thread::sleep(Duration::from_millis(300));
    let snaps_after = logged(&log);
    assert_eq!((snaps.len(), snaps_after.len()), (4, 4));
    assert_eq!(
        snaps_after[3]["trigger"]["signal"], "SIGWINCH",
        "{}",
        snaps_after[3]["trigger"]
    );
    // A config with a mistake: said, and the trigger before stays armed.
    std::fs::write(&config, "--on-signal SIGNOPE\n").unwrap();
    signal(server.pid(), libc::SIGHUP);
    let said = server.wait_for(&format!("itersnap: SIGHUP: {}:1: ", config.display()));
    assert!(
        said.ends_with("; the triggers before it stay armed"),
        "{said}"
    );
    signal(fixture.pid, libc::SIGWINCH);
    assert_eq!(wait_for_logged(&log, 5).len(), 5);
    // The metrics count the trigger armed now: two snapshots since SIGHUP.
    let metrics = http_get(metrics_port.parse().unwrap(), "/metrics").unwrap();
    let line = format!(
        "itersnap_trigger_snapshots_total{{trigger=\"{}:3\"}} 2",
        config.display()
    );
    assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    assert_eq!(server.stop(libc::SIGTERM), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A config that cannot be armed stops the start: one line naming it.
#[test]
fn a_bad_triggers_config_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("itersnap-badtrig-{}", unique_comm("bt")));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("triggers.conf");
    for (text, says) in [
        ("--pid 1\n", "triggers.conf:1: not a trigger"),
        (
            "\n--on-signal SIGURG --frobnicate\n",
            "triggers.conf:2: unexpected argument '--frobnicate'",
        ),
        ("--on-tracepoint nosuch:tracepoint\n", "triggers.conf:1: "),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(ITERSNAP)
            .args(["serve", "--socket"])
            .arg(dir.join("sock"))
            .arg("--triggers")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("itersnap: error: ") && stderr.contains(says),
            "{text:?}: {stderr}"
        );
        assert!(!dir.join("sock").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

/// At most 16 clients at once: the 17th is told the server is busy (exit
/// 1); once the others go, queries are answered again.
#[test]
fn clients_past_the_limit_are_told_the_server_is_busy() {
    let fixture = Fixture::start("srk");
    let server = Server::start("busy");
    let pid = fixture.pid.to_string();
    let stalled: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&server.socket).unwrap())
        .collect();
    let out = server.query(&["--pid", &pid, "-o", "json", "-v"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "itersnap: error: the server is busy (16 clients at once); try again, or use --no-server\n"
    );
    assert!(out.stdout.is_empty());
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = server.query(&["--pid", &pid, "-o", "json"]);
        if out.status.success() {
            assert_eq!(json_of(&out)["tasks"][0]["pid"], fixture.pid);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
