//! Sockets as ss and lsof -i show them: a process holding every kind
//! (TCP listening and both ends of a connection on IPv4 and IPv6, UDP bound
//! and connected, UNIX path, abstract and a connected pair, and a listener
//! in a network namespace of its own), field by field against `ss
//! -tuxwanpe` in each namespace, on both backends; the --port, --proto and
//! --state filters; every socket of the system against ss.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use common::*;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Re-executed under `unshare -n` by `NetnsListener`: listens on a port in
/// its own network namespace, says so, and waits to be killed.
#[test]
fn netns_listener_process() {
    let Ok(port) = std::env::var("ITERSNAP_NETNS_PORT") else {
        return;
    };
    let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
    println!("listening {}", listener.as_raw_fd());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

struct NetnsListener {
    child: Child,
}

impl NetnsListener {
    fn start(port: u16) -> NetnsListener {
        let mut child = Command::new("unshare")
            .args(["-n", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "netns_listener_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ITERSNAP_NETNS_PORT", port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the netns listener died"
            );
        }
        NetnsListener { child }
    }
}

impl Drop for NetnsListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tests that open sockets in this process, one at a time: each
/// counts what this process holds.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static HELD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sockets of every kind, held by this test process while it looks. One
/// test at a time holds them (tests share this process): each counts them.
struct Sockets {
    // Fields drop in this order: the sockets close before the lock goes.
    _held: Vec<Box<dyn std::any::Any>>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    path: std::path::PathBuf,
    tcp4_port: u16,
}

impl Sockets {
    fn open() -> Sockets {
        let one_at_a_time = one_at_a_time();
        let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp4_port = l4.local_addr().unwrap().port();
        let c4 = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let (a4, _) = l4.accept().unwrap();
        (&c4).write_all(b"waiting").unwrap(); // 7 bytes in a4's receive queue
        let l6 = TcpListener::bind("[::1]:0").unwrap();
        let c6 = TcpStream::connect(l6.local_addr().unwrap()).unwrap();
        let (a6, _) = l6.accept().unwrap();
        let u_bound = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u_conn = UdpSocket::bind("127.0.0.1:0").unwrap();
        u_conn.connect(u_bound.local_addr().unwrap()).unwrap();
        // Names of their own: unique_comm() is cut to a task name's 15 bytes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unique = format!("itersnap-test-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(&unique);
        let ux = UnixListener::bind(&path).unwrap();
        let name = format!("{unique}-abstract");
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name).unwrap()).unwrap();
        let (p1, p2) = UnixStream::pair().unwrap();
        held.push(Box::new((l4, c4, a4, l6, c6, a6, u_bound, u_conn)));
        held.push(Box::new((ux, abs, p1, p2)));
        Sockets {
            _held: held,
            _one_at_a_time: one_at_a_time,
            path,
            tcp4_port,
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One socket as `ss -tuxwanpe` prints it, keyed by its owners' (pid, fd).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SsSocket {
    netid: String,
    state: String,
    rx: u64,
    tx: u64,
    local: String,
    peer: String,
    ino: u64,
}

/// `ss -tuxwanpe`, in the network namespace of `netns_of` (a pid) if given.
fn ss(netns_of: Option<u32>) -> BTreeMap<(u32, i32), SsSocket> {
    let mut cmd = match netns_of {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "ss"]);
            c
        }
        None => Command::new("ss"),
    };
    let out = cmd
        .args(["-tuxwanpeH"])
        .output()
        .expect("running ss (iproute2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut all = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 {
            continue;
        }
        let unix = cols[0].starts_with("u_");
        // UNIX: `path-or-* INODE * PEER`; inet: `addr:port addr:port`.
        let (local, peer, ino, rest) = if unix {
            if cols.len() < 9 {
                continue;
            }
            (
                cols[4].to_string(),
                cols[7].to_string(),
                cols[5].parse().unwrap_or(0),
                &cols[8..],
            )
        } else {
            let ino = cols
                .iter()
                .find_map(|c| c.strip_prefix("ino:"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (cols[4].to_string(), cols[5].to_string(), ino, &cols[6..])
        };
        let sock = SsSocket {
            netid: cols[0].into(),
            state: cols[1].into(),
            rx: cols[2].parse().unwrap_or(0),
            tx: cols[3].parse().unwrap_or(0),
            local,
            peer,
            ino,
        };
        // users:(("name",pid=1,fd=3),("other",pid=2,fd=4))
        for col in rest.iter().filter(|c| c.starts_with("users:")) {
            for owner in col.split("),(") {
                let num = |key: &str| -> Option<u64> {
                    let at = owner.find(key)? + key.len();
                    owner[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                };
                if let (Some(pid), Some(fd)) = (num("pid="), num("fd=")) {
                    all.insert((pid as u32, fd as i32), sock.clone());
                }
            }
        }
    }
    all
}

/// Our socket in ss's words.
fn as_ss(file: &Value) -> Option<SsSocket> {
    let s = &file["socket"];
    if s.is_null() {
        return None;
    }
    let (family, kind, protocol) = (
        s["family"].as_str()?,
        s["type"].as_str()?,
        s["protocol"].as_str()?,
    );
    let netid = match (family, kind, protocol) {
        ("unix", "stream", _) => "u_str",
        ("unix", "dgram", _) => "u_dgr",
        ("unix", "seqpacket", _) => "u_seq",
        (_, _, "tcp") => "tcp",
        (_, _, "udp") => "udp",
        (_, "raw", _) => "raw",
        _ => return None, // ss -tuxw shows no other kind
    };
    let state = match s["state"].as_str()? {
        "ESTABLISHED" | "CONNECTED" => "ESTAB".to_string(),
        "UNCONNECTED" | "CLOSE" => "UNCONN".to_string(),
        "FIN_WAIT1" => "FIN-WAIT-1".to_string(),
        "FIN_WAIT2" => "FIN-WAIT-2".to_string(),
        other => other.replace('_', "-"),
    };
    let endpoint = |e: &Value, any: &str| match e.as_object() {
        Some(e) => {
            let addr = e["addr"].as_str().unwrap();
            let port = e["port"].as_u64().unwrap();
            let port = if port == 0 {
                "*".to_string()
            } else {
                port.to_string()
            };
            if family == "inet6" {
                format!("[{addr}]:{port}")
            } else {
                format!("{addr}:{port}")
            }
        }
        None => any.to_string(),
    };
    let any = if family == "inet6" {
        "[::]:*"
    } else {
        "0.0.0.0:*"
    };
    let (local, peer) = if family == "unix" {
        let path = s["path"].as_str().unwrap_or("*").to_string();
        (path, s["peer_ino"].as_u64().unwrap_or(0).to_string())
    } else {
        (endpoint(&s["local"], any), endpoint(&s["remote"], any))
    };
    Some(SsSocket {
        netid: netid.into(),
        state,
        rx: s["rx_queue"].as_u64()?,
        tx: s["tx_queue"].as_u64()?,
        local,
        peer,
        ino: file["ino"].as_u64()?,
    })
}

/// Our sockets of `pid`, by fd, in ss's words.
fn our_sockets(snap: &Value, pid: u32) -> BTreeMap<i32, SsSocket> {
    rows_of(snap, pid)
        .first()
        .map(|row| {
            row["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| Some((f["fd"].as_i64()? as i32, as_ss(f)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// ss's sockets of `pid`, by fd (the kinds ss -tuxw shows).
fn ss_sockets_of(all: &BTreeMap<(u32, i32), SsSocket>, pid: u32) -> BTreeMap<i32, SsSocket> {
    all.iter()
        .filter(|((p, _), _)| *p == pid)
        .map(|((_, fd), s)| (*fd, s.clone()))
        .collect()
}

#[test]
fn every_kind_of_socket_reads_as_ss_shows_it() {
    let held = Sockets::open();
    let me = std::process::id();
    for backend in backends_here() {
        let snap = snapshot(&["--pid", &me.to_string(), "--backend", backend]);
        let ours = our_sockets(&snap, me);
        let theirs = ss_sockets_of(&ss(None), me);
        assert_eq!(ours.len(), 12, "{backend}: {ours:#?}");
        assert_eq!(ours, theirs, "{backend}");
        // The connection's receiving end holds what was written.
        assert!(
            ours.values().any(|s| s.rx == 7 && s.netid == "tcp"),
            "{backend}"
        );
    }
    drop(held);
}

/// A listener in a network namespace of its own: ss sees it only from
/// inside; itersnap from anywhere, with that namespace named.
#[test]
fn a_listener_in_another_netns_is_seen_with_its_netns() {
    let ns = NetnsListener::start(7777);
    let pid = ns.child.id();
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let theirs_ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    assert_ne!(own.as_ref().ok(), theirs_ns.as_ref().ok());
    for backend in backends_here() {
        let snap = snapshot(&["--pid", &pid.to_string(), "--backend", backend]);
        assert_eq!(
            our_sockets(&snap, pid),
            ss_sockets_of(&ss(Some(pid)), pid),
            "{backend}"
        );
        assert!(ss_sockets_of(&ss(None), pid).is_empty());
        let file = rows_of(&snap, pid)[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| !f["socket"].is_null())
            .unwrap()
            .clone();
        assert_eq!(
            file["socket"]["netns"].as_u64(),
            theirs_ns.as_ref().ok().copied()
        );
        let table = itersnap(&["--pid", &pid.to_string(), "--backend", backend]);
        let text = String::from_utf8_lossy(&table.stdout);
        let netns = theirs_ns.as_ref().unwrap();
        assert!(
            text.contains(&format!("TCP *:7777 (LISTEN) netns:[{netns}]")),
            "{text}"
        );
    }
}

/// `--port P` keeps exactly the holders of port P and, of their files, the
/// sockets with it; --proto and --state narrow as ss does.
#[test]
fn port_proto_and_state_filters_keep_exactly_the_holders() {
    let held = Sockets::open();
    let me = std::process::id();
    let port = held.tcp4_port.to_string();
    for backend in backends_here() {
        let snap = snapshot(&["--port", &port, "--backend", backend]);
        let pids: Vec<u32> = snap["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["pid"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(pids, [me], "{backend}: only this process holds port {port}");
        let ours = our_sockets(&snap, me);
        let fds: Vec<i32> = rows_of(&snap, me)[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fd"].as_i64().unwrap() as i32)
            .collect();
        assert_eq!(fds.len(), ours.len(), "{backend}: only sockets are kept");
        // The listener and both ends of the connection.
        assert_eq!(ours.len(), 3, "{backend}: {ours:#?}");
        let listen = snapshot(&[
            "--pid",
            &me.to_string(),
            "--state",
            "LISTEN",
            "--proto",
            "tcp",
            "--backend",
            backend,
        ]);
        let states: Vec<String> = our_sockets(&listen, me)
            .values()
            .map(|s| s.state.clone())
            .collect();
        assert_eq!(states, ["LISTEN", "LISTEN"], "{backend}");
        let unix = snapshot(&[
            "--pid",
            &me.to_string(),
            "--proto",
            "unix",
            "--backend",
            backend,
        ]);
        assert!(our_sockets(&unix, me)
            .values()
            .all(|s| s.netid.starts_with("u_")));
        assert_eq!(our_sockets(&unix, me).len(), 4, "{backend}");
    }
    drop(held);
}

/// Every socket of every process that ss -tuxw shows agrees with it.
#[test]
fn every_socket_of_the_system_agrees_with_ss() {
    let held = Sockets::open();
    for backend in backends_here() {
        let before = ss(None);
        let snap = snapshot(&["--backend", backend]);
        let after = ss(None);
        let mut compared = 0;
        let mut failures = Vec::new();
        for (&(pid, fd), theirs) in &before {
            if pid == 1 || after.get(&(pid, fd)) != Some(theirs) {
                continue; // changed (or queues moved) while we looked
            }
            let ours = our_sockets(&snap, pid);
            match ours.get(&fd) {
                Some(our) if our == theirs => {}
                // A process that exited in between has no row.
                None if rows_of(&snap, pid).is_empty() => continue,
                other => failures.push(format!("pid {pid} fd {fd}: ours {other:?}, ss {theirs:?}")),
            }
            compared += 1;
        }
        assert!(failures.is_empty(), "{backend}:\n{}", failures.join("\n"));
        assert!(
            compared >= 12,
            "{backend}: only {compared} sockets compared"
        );
    }
    drop(held);
}

/// Bad values: one line, exit 2, as every usage error.
#[test]
fn bad_filter_values_are_refused() {
    for args in [
        &["--port", "0"][..],
        &["--port", "65536"],
        &["--port", "http"],
        &["--proto", "tcpp"],
        &["--state", "LISTENING"],
        &["--port", "1", "--no-files"],
        &[
            "--port", "1", "--port", "2", "--port", "3", "--port", "4", "--port", "5", "--port",
            "6", "--port", "7", "--port", "8", "--port", "9",
        ],
    ] {
        let out = itersnap(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("itersnap: error: "), "{args:?}: {err}");
    }
}

/// Inside an event (this process is a signal's target), its sockets are
/// the event's and read as ss shows them, on both backends.
#[test]
fn sockets_are_captured_inside_the_event() {
    let held = Sockets::open();
    for backend in backends_here() {
        let snap = in_event_snapshot_of_me(backend);
        let pid = std::process::id();
        assert_eq!(rows_of(&snap, pid)[0]["in_event"], true, "{backend}");
        assert_eq!(
            our_sockets(&snap, pid),
            ss_sockets_of(&ss(None), pid),
            "{backend}"
        );
        assert_eq!(snap["counts"]["sockets"].as_u64(), Some(12), "{backend}");
    }
    drop(held);
}

/// With --diff, a connection opened between two snapshots is a change,
/// named as lsof names it, and the socket filter applies to the diff too.
#[test]
fn a_new_connection_is_a_change() {
    let _one_at_a_time = one_at_a_time();
    let me = std::process::id().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port_number = listener.local_addr().unwrap().port();
    let port = port_number.to_string();
    let armed = Armed::start(&[
        "-o",
        "json",
        "--interval",
        "300ms",
        "--count",
        "4",
        "--diff",
        "--pid",
        &me,
        "--port",
        &port,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(450));
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let opened: Vec<Value> = parse_lines(&out)
        .iter()
        .filter_map(|s| s["diff"]["files_opened"].as_array().cloned())
        .flatten()
        .collect();
    let sockets: Vec<&Value> = opened.iter().map(|c| &c["file"]["socket"]).collect();
    assert!(
        sockets
            .iter()
            .any(|s| s["state"] == "ESTABLISHED" && s["remote"]["port"] == port_number),
        "the client's end appears: {opened:?}"
    );
    assert!(
        sockets.iter().all(|s| s["protocol"] == "tcp"),
        "only port {port}'s sockets: {opened:?}"
    );
    drop(client);
}
