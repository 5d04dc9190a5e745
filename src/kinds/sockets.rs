//! Sockets: one record per socket fd (`bpf/kinds/socket.h`, filled by
//! `bpf/kinds/socket.bpf.h`), right after the fd's file record, shown as
//! `ss -n` and `lsof -i` show them: its layout and decoding, the names of
//! families, types, protocols and states, the --port/--proto/--state
//! filter's names, its JSON object and its table text.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::text::printable;
use crate::wire::Fields;

/// `struct sock_rec` up to its UNIX path.
pub const SOCK_HDR_SIZE: usize = 96;
/// Bytes of UNIX path one record carries.
pub const UNIX_PATH_BUF: usize = 128;

/// enum sock_rec_flags.
pub const SOCK_FAULT: u8 = 1 << 0;
pub const SOCK_MATCHED: u8 = 1 << 1;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_NETLINK: u16 = 16;
const AF_PACKET: u16 = 17;

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

/// One `struct sock_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockRec {
    pub seq: u32,
    pub pid: u32,
    pub fd: i32,
    pub socket: Socket,
}

/// A socket as a snapshot holds it, under its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub ino: u64,
    pub netns: u64,
    pub peer_ino: u64,
    pub rx_queue: u32,
    pub tx_queue: u32,
    pub family: u16,
    pub kind: u16,
    pub protocol: u16,
    pub state: u8,
    pub flags: u8,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// UNIX: sun_path as bound (an abstract name starts with a NUL).
    pub path: Vec<u8>,
}

/// A socket record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<SockRec, &'static str> {
    if f.len() < SOCK_HDR_SIZE {
        return Err("socket record too short");
    }
    let path_len = (f.u16(60) as usize).min(UNIX_PATH_BUF);
    if SOCK_HDR_SIZE + path_len > f.len() {
        return Err("socket path runs past its record");
    }
    let addr = |at| -> [u8; 16] { f.slice(at, 16).try_into().unwrap_or([0; 16]) };
    Ok(SockRec {
        seq,
        pid: f.u32(8),
        fd: f.u32(12) as i32,
        socket: Socket {
            ino: f.u64(16),
            netns: f.u64(24),
            peer_ino: f.u64(32),
            rx_queue: f.u32(40),
            tx_queue: f.u32(44),
            family: f.u16(48),
            kind: f.u16(50),
            protocol: f.u16(52),
            state: f.slice(54, 1).first().copied().unwrap_or(0),
            flags: f.slice(55, 1).first().copied().unwrap_or(0),
            local_port: f.u16(56),
            remote_port: f.u16(58),
            local_addr: addr(64),
            remote_addr: addr(80),
            path: f.slice(SOCK_HDR_SIZE, path_len).to_vec(),
        },
    })
}

/// What --proto names (enum sock_proto in `bpf/kinds/socket.bpf.h`, in order).
pub const PROTOCOLS: &[&str] = &[
    "tcp", "udp", "udplite", "raw", "sctp", "icmp", "unix", "netlink", "packet",
];

/// What --state names: (name, sk_state). CONNECTED and UNCONNECTED are
/// what UNIX and UDP sockets call ESTABLISHED and CLOSE.
pub const STATES: &[(&str, u8)] = &[
    ("ESTABLISHED", 1),
    ("SYN_SENT", 2),
    ("SYN_RECV", 3),
    ("FIN_WAIT1", 4),
    ("FIN_WAIT2", 5),
    ("TIME_WAIT", 6),
    ("CLOSE", 7),
    ("CLOSE_WAIT", 8),
    ("LAST_ACK", 9),
    ("LISTEN", 10),
    ("CLOSING", 11),
    ("CONNECTED", TCP_ESTABLISHED),
    ("UNCONNECTED", TCP_CLOSE),
];

/// The in-kernel socket filter, as user space hands it to the BPF objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketFilter {
    /// Local or remote port, any of them.
    pub ports: Vec<u16>,
    /// 1 << index in PROTOCOLS.
    pub protocols: u32,
    /// 1 << sk_state.
    pub states: u32,
}

impl SocketFilter {
    /// How many ports the kernel side checks.
    pub const PORTS_MAX: usize = 8;

    pub fn is_on(&self) -> bool {
        !self.ports.is_empty() || self.protocols != 0 || self.states != 0
    }
}

impl Socket {
    fn inet(&self) -> bool {
        matches!(self.family, AF_INET | AF_INET6)
    }

    /// tcp, udp, …: the --proto name (PROTOCOLS), as the kernel side classes it.
    pub fn protocol_class(&self) -> &'static str {
        match self.family {
            AF_UNIX => return "unix",
            AF_NETLINK => return "netlink",
            AF_PACKET => return "packet",
            AF_INET | AF_INET6 => {}
            _ => return "other",
        }
        if self.kind == libc::SOCK_RAW as u16 {
            return "raw";
        }
        match i32::from(self.protocol) {
            libc::IPPROTO_TCP => "tcp",
            libc::IPPROTO_UDP => "udp",
            libc::IPPROTO_UDPLITE => "udplite",
            libc::IPPROTO_SCTP => "sctp",
            libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => "icmp",
            _ => "other",
        }
    }

    pub fn family_name(&self) -> String {
        match self.family {
            AF_UNIX => "unix".into(),
            AF_INET => "inet".into(),
            AF_INET6 => "inet6".into(),
            AF_NETLINK => "netlink".into(),
            AF_PACKET => "packet".into(),
            n => format!("af{n}"),
        }
    }

    pub fn type_name(&self) -> String {
        match i32::from(self.kind) {
            libc::SOCK_STREAM => "stream".into(),
            libc::SOCK_DGRAM => "dgram".into(),
            libc::SOCK_RAW => "raw".into(),
            libc::SOCK_RDM => "rdm".into(),
            libc::SOCK_SEQPACKET => "seqpacket".into(),
            libc::SOCK_DCCP => "dccp".into(),
            10 => "packet".into(), // SOCK_PACKET, obsolete
            n => format!("type{n}"),
        }
    }

    /// The protocol's name: tcp, udp, …; a netlink family (route, audit,
    /// …); a packet socket's ethertype (all, ip, …, or 0x88cc).
    pub fn protocol_name(&self) -> String {
        match self.family {
            AF_NETLINK => netlink_name(self.protocol),
            AF_PACKET => ethertype_name(u16::from_be(self.protocol)),
            AF_UNIX => "unix".into(),
            _ => match self.protocol_class() {
                "other" | "raw" => match i32::from(self.protocol) {
                    libc::IPPROTO_ICMP => "icmp".into(),
                    libc::IPPROTO_ICMPV6 => "icmpv6".into(),
                    libc::IPPROTO_RAW => "raw".into(),
                    n => format!("ip{n}"),
                },
                class => class.into(),
            },
        }
    }

    /// The state as lsof names TCP's; CONNECTED/UNCONNECTED for the
    /// connectionless and UNIX sockets.
    pub fn state_name(&self) -> String {
        let tcp_like = matches!(self.protocol_class(), "tcp" | "sctp");
        match self.state {
            TCP_ESTABLISHED if !tcp_like => "CONNECTED".into(),
            TCP_CLOSE if !tcp_like => "UNCONNECTED".into(),
            TCP_LISTEN => "LISTEN".into(),
            s => STATES
                .iter()
                .find(|(_, v)| *v == s)
                .map(|(n, _)| (*n).to_string())
                .unwrap_or_else(|| match s {
                    12 => "NEW_SYN_RECV".into(),
                    13 => "BOUND_INACTIVE".into(),
                    _ => format!("STATE{s}"),
                }),
        }
    }

    fn ip(&self, addr: &[u8; 16]) -> String {
        if self.family == AF_INET {
            Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string()
        } else {
            Ipv6Addr::from(*addr).to_string()
        }
    }

    /// Connected to a remote end (inet): not listening nor unconnected.
    pub fn has_remote(&self) -> bool {
        self.inet()
            && self.state != TCP_LISTEN
            && self.state != TCP_CLOSE
            && (self.remote_port != 0 || self.remote_addr != [0; 16])
    }

    /// A UNIX socket's name for the table: its path, or `@name` for an
    /// abstract one, escaped for a terminal.
    pub fn unix_path(&self) -> Option<String> {
        let (prefix, name) = self.unix_name()?;
        Some(format!("{prefix}{}", printable(name)))
    }

    /// The same name for JSON: the bytes as they are, which JSON escapes
    /// its own way (invalid UTF-8 as U+FFFD), as every other path.
    pub fn unix_path_text(&self) -> Option<String> {
        let (prefix, name) = self.unix_name()?;
        Some(format!("{prefix}{}", String::from_utf8_lossy(name)))
    }

    /// A UNIX socket's name: `@` and the bytes after the NUL of an abstract
    /// one, or the path up to its NUL.
    fn unix_name(&self) -> Option<(&'static str, &[u8])> {
        if self.family != AF_UNIX || self.path.is_empty() {
            return None;
        }
        Some(match self.path.split_first() {
            Some((0, name)) => ("@", name),
            _ => {
                let end = memchr::memchr(0, &self.path).unwrap_or(self.path.len());
                ("", &self.path[..end])
            }
        })
    }

    /// lsof's TYPE: IPv4, IPv6, unix, netlink, pack, sock.
    pub fn lsof_type(&self) -> &'static str {
        match self.family {
            AF_INET => "IPv4",
            AF_INET6 => "IPv6",
            AF_UNIX => "unix",
            AF_NETLINK => "netlink",
            AF_PACKET => "pack",
            _ => "sock",
        }
    }

    /// lsof's NAME: `TCP 127.0.0.1:41234->127.0.0.1:8080 (ESTABLISHED)`,
    /// `TCP *:8080 (LISTEN)`, `UDP 127.0.0.1:53`, `/run/x.sock
    /// type=STREAM (LISTEN)`; the namespace after it when it is not
    /// `reader_netns`.
    pub fn lsof_name(&self, reader_netns: u64) -> String {
        let mut out = if self.inet() {
            let class = self.protocol_class();
            let proto = if class == "other" {
                "IP".to_string()
            } else {
                class.to_uppercase()
            };
            let end = |addr: &[u8; 16], port: u16| {
                let host = if *addr == [0; 16] {
                    "*".to_string()
                } else if self.family == AF_INET6 {
                    format!("[{}]", self.ip(addr))
                } else {
                    self.ip(addr)
                };
                format!("{host}:{port}")
            };
            let mut s = format!("{proto} {}", end(&self.local_addr, self.local_port));
            if self.has_remote() {
                s.push_str(&format!("->{}", end(&self.remote_addr, self.remote_port)));
            }
            if matches!(class, "tcp" | "sctp") {
                s.push_str(&format!(" ({})", self.state_name()));
            }
            s
        } else if self.family == AF_UNIX {
            let kind = self.type_name().to_uppercase();
            match self.unix_path() {
                Some(path) => format!("{path} type={kind} ({})", self.state_name()),
                None => format!("type={kind} ({})", self.state_name()),
            }
        } else if self.family == AF_NETLINK {
            self.protocol_name().to_uppercase()
        } else {
            format!(
                "type={} {}",
                self.type_name().to_uppercase(),
                self.protocol_name()
            )
        };
        if self.netns != 0 && self.netns != reader_netns {
            out.push_str(&format!(" netns:[{}]", self.netns));
        }
        out
    }
}

/// NETLINK_* by number, as ss names them where it can.
fn netlink_name(protocol: u16) -> String {
    const NAMES: &[&str] = &[
        "route",
        "unused",
        "usersock",
        "firewall",
        "sock_diag",
        "nflog",
        "xfrm",
        "selinux",
        "iscsi",
        "audit",
        "fib_lookup",
        "connector",
        "netfilter",
        "ip6_fw",
        "dnrtmsg",
        "kobject_uevent",
        "generic",
        "dm",
        "scsitransport",
        "ecryptfs",
        "rdma",
        "crypto",
        "smc",
    ];
    NAMES
        .get(usize::from(protocol))
        .map_or_else(|| format!("netlink{protocol}"), |n| (*n).to_string())
}

/// ETH_P_* (host order) by number.
fn ethertype_name(ethertype: u16) -> String {
    match ethertype {
        0x0003 => "all".into(),
        0x0800 => "ip".into(),
        0x0806 => "arp".into(),
        0x86dd => "ipv6".into(),
        0x8100 => "8021q".into(),
        0x88cc => "lldp".into(),
        n => format!("0x{n:04x}"),
    }
}

#[derive(Serialize)]
pub struct EndpointJson {
    addr: String,
    port: u16,
}

/// A socket file's `socket` object (docs/json.md).
#[derive(Serialize)]
pub struct SocketJson {
    family: String,
    #[serde(rename = "type")]
    kind: String,
    protocol: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<EndpointJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<EndpointJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_ino: Option<u64>,
    netns: u64,
    rx_queue: u32,
    tx_queue: u32,
}

pub fn json(s: &Socket) -> SocketJson {
    let inet = s.inet();
    let endpoint = |addr: &[u8; 16], port| EndpointJson {
        addr: s.ip(addr),
        port,
    };
    SocketJson {
        family: s.family_name(),
        kind: s.type_name(),
        protocol: s.protocol_name(),
        state: s.state_name(),
        local: inet.then(|| endpoint(&s.local_addr, s.local_port)),
        remote: s
            .has_remote()
            .then(|| endpoint(&s.remote_addr, s.remote_port)),
        path: s.unix_path_text(),
        path_base64: s.unix_name().and_then(|(prefix, name)| {
            crate::text::base64_if_not_utf8(name)
                .map(|_| crate::text::base64(&[prefix.as_bytes(), name].concat()))
        }),
        peer_ino: (s.family == AF_UNIX && s.peer_ino != 0).then_some(s.peer_ino),
        netns: s.netns,
        rx_queue: s.rx_queue,
        tx_queue: s.tx_queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::sock_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(sock_rec, pid), 8);
        assert_eq!(offset_of!(sock_rec, fd), 12);
        assert_eq!(offset_of!(sock_rec, ino), 16);
        assert_eq!(offset_of!(sock_rec, netns), 24);
        assert_eq!(offset_of!(sock_rec, peer_ino), 32);
        assert_eq!(offset_of!(sock_rec, rx_queue), 40);
        assert_eq!(offset_of!(sock_rec, tx_queue), 44);
        assert_eq!(offset_of!(sock_rec, family), 48);
        assert_eq!(offset_of!(sock_rec, r#type), 50);
        assert_eq!(offset_of!(sock_rec, protocol), 52);
        assert_eq!(offset_of!(sock_rec, state), 54);
        assert_eq!(offset_of!(sock_rec, flags), 55);
        assert_eq!(offset_of!(sock_rec, local_port), 56);
        assert_eq!(offset_of!(sock_rec, remote_port), 58);
        assert_eq!(offset_of!(sock_rec, path_len), 60);
        assert_eq!(offset_of!(sock_rec, local_addr), 64);
        assert_eq!(offset_of!(sock_rec, remote_addr), 80);
        assert_eq!(offset_of!(sock_rec, path), SOCK_HDR_SIZE);
        assert_eq!(size_of::<sock_rec>(), SOCK_HDR_SIZE + UNIX_PATH_BUF);
    }

    fn tcp4(state: u8, local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16) -> Socket {
        let mut s = Socket {
            ino: 1,
            netns: 4026531840,
            peer_ino: 0,
            rx_queue: 0,
            tx_queue: 0,
            family: AF_INET,
            kind: libc::SOCK_STREAM as u16,
            protocol: libc::IPPROTO_TCP as u16,
            state,
            flags: 0,
            local_port: lport,
            remote_port: rport,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            path: Vec::new(),
        };
        s.local_addr[..4].copy_from_slice(&local);
        s.remote_addr[..4].copy_from_slice(&remote);
        s
    }

    #[test]
    fn names_read_as_lsof_prints_them() {
        let listen = tcp4(TCP_LISTEN, [0; 4], 8080, [0; 4], 0);
        assert_eq!(listen.lsof_name(4026531840), "TCP *:8080 (LISTEN)");
        assert_eq!(listen.lsof_type(), "IPv4");
        let conn = tcp4(1, [127, 0, 0, 1], 41234, [127, 0, 0, 1], 8080);
        assert_eq!(
            conn.lsof_name(4026531840),
            "TCP 127.0.0.1:41234->127.0.0.1:8080 (ESTABLISHED)"
        );
        assert_eq!(
            conn.lsof_name(1),
            "TCP 127.0.0.1:41234->127.0.0.1:8080 (ESTABLISHED) netns:[4026531840]"
        );
        let mut udp = tcp4(TCP_CLOSE, [127, 0, 0, 1], 53, [0; 4], 0);
        udp.kind = libc::SOCK_DGRAM as u16;
        udp.protocol = libc::IPPROTO_UDP as u16;
        assert_eq!(udp.lsof_name(4026531840), "UDP 127.0.0.1:53");
        assert_eq!(udp.state_name(), "UNCONNECTED");
        let mut unix = tcp4(TCP_LISTEN, [0; 4], 0, [0; 4], 0);
        unix.family = AF_UNIX;
        unix.protocol = 0;
        unix.path = b"/run/x.sock\0".to_vec();
        assert_eq!(
            unix.lsof_name(4026531840),
            "/run/x.sock type=STREAM (LISTEN)"
        );
        unix.path = b"\0abstract".to_vec();
        assert_eq!(unix.unix_path().unwrap(), "@abstract");
        // The table escapes a hostile name; JSON carries it as any path.
        unix.path = b"/tmp/s\nx\xff\0".to_vec();
        assert_eq!(unix.unix_path().unwrap(), "/tmp/s\\x0ax\\xff");
        assert_eq!(unix.unix_path_text().unwrap(), "/tmp/s\nx\u{fffd}");
        let text = serde_json::to_string(&json(&unix)).unwrap();
        assert!(text.contains("\"path\":\"/tmp/s\\nx\u{fffd}\""), "{text}");
        let mut v6 = tcp4(TCP_LISTEN, [0; 4], 22, [0; 4], 0);
        v6.family = AF_INET6;
        v6.local_addr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(v6.lsof_name(4026531840), "TCP [::1]:22 (LISTEN)");
        assert_eq!(json(&v6).local.unwrap().addr, "::1");
    }
}
