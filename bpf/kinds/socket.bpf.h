/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sockets: how the socket behind a socket fd becomes a socket record
 * (kinds/socket.h), read from its struct sock as ss reads it through
 * sock_diag, and the --port/--proto/--state filter. The socket is found from
 * the file (file->private_data, a struct socket, for every sockfs file), not
 * with bpf_sock_from_file(), which 5.10 lacks. Its own file so that
 * everything about this kind of data sits together, over the machinery
 * every kind shares (base.bpf.h).
 */
#ifndef ITERSNAP_KIND_SOCKET_BPF_H
#define ITERSNAP_KIND_SOCKET_BPF_H

#include "base.bpf.h"

#include <bpf/bpf_endian.h>

#define SOCKFS_MAGIC 0x534F434B

/* Macros in the kernel, so not in its BTF (SOCK_*, IPPROTO_*, TCP_* are enums: vmlinux.h). */
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define UNIX_PATH_MAX 108
#define IPPROTO_ICMPV6 58

/* UNIX receive queues are summed skb by skb (ss's unix_inq_len()) up to this. */
#define UNIX_QUEUE_WALK 64

/*
 * The --port/--proto/--state filter, set by user space before load.
 * cfg_sock_protos is a mask of 1 << enum sock_proto, cfg_sock_states of
 * 1 << sk_state; a zero mask (or no port) does not filter on that.
 */
#define SOCK_PORTS_MAX 8
const volatile __u32 cfg_sock_protos = 0;
const volatile __u32 cfg_sock_states = 0;
const volatile __u32 cfg_sock_nports = 0;
const volatile __u16 cfg_sock_ports[SOCK_PORTS_MAX] = {};

/* The protocol names --proto takes (src/kinds/sockets.rs has the same). */
enum sock_proto {
	PROTO_TCP,
	PROTO_UDP,
	PROTO_UDPLITE,
	PROTO_RAW,
	PROTO_SCTP,
	PROTO_ICMP,
	PROTO_UNIX,
	PROTO_NETLINK,
	PROTO_PACKET,
	PROTO_OTHER,
};

#define AF_NETLINK 16
#define AF_PACKET 17

struct sock_rec _sock_rec_btf = {};

/* One socket record under construction per CPU, beside its file record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_rec);
} sock_scratch SEC(".maps");

static __always_inline struct sock_rec *sock_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sock_scratch, &zero);
}

static __always_inline __u32 sock_proto_of(struct sock_rec *r)
{
	switch (r->family) {
	case AF_UNIX:
		return PROTO_UNIX;
	case AF_NETLINK:
		return PROTO_NETLINK;
	case AF_PACKET:
		return PROTO_PACKET;
	case AF_INET:
	case AF_INET6:
		break;
	default:
		return PROTO_OTHER;
	}
	if (r->type == SOCK_RAW)
		return PROTO_RAW;
	switch (r->protocol) {
	case IPPROTO_TCP:
		return PROTO_TCP;
	case IPPROTO_UDP:
		return PROTO_UDP;
	case IPPROTO_UDPLITE:
		return PROTO_UDPLITE;
	case IPPROTO_SCTP:
		return PROTO_SCTP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return PROTO_ICMP;
	}
	return PROTO_OTHER;
}

/* Does the socket pass --port, --proto and --state (each given one)? */
static __always_inline bool sock_matches(struct sock_rec *r)
{
	bool inet = r->family == AF_INET || r->family == AF_INET6;

	if (cfg_sock_protos && !(cfg_sock_protos & (1U << sock_proto_of(r))))
		return false;
	if (cfg_sock_states && !(cfg_sock_states & (1U << (r->state & 31))))
		return false;
	if (cfg_sock_nports) {
		bool hit = false;

		if (!inet)
			return false;
		for (int i = 0; i < SOCK_PORTS_MAX; i++) {
			if (i >= cfg_sock_nports)
				break;
			if (r->local_port == cfg_sock_ports[i] || r->remote_port == cfg_sock_ports[i])
				hit = true;
		}
		if (!hit)
			return false;
	}
	return true;
}

/* The socket's inode number, as sock_i_ino() gives it (a UNIX peer's). */
static __always_inline __u64 sock_inode_of(struct sock *sk)
{
	struct socket *sock = KREAD(sk, sk_socket);
	struct socket_alloc *sa;

	if (!sock)
		return 0;
	sa = container_of(sock, struct socket_alloc, socket);
	return KREAD(sa, vfs_inode.i_ino);
}

/* Endpoints and queues of an inet socket, as inet_diag reports them. */
static __always_inline void fill_inet(struct sock *sk, struct sock_rec *r)
{
	r->local_port = KREAD(sk, __sk_common.skc_num);
	r->remote_port = bpf_ntohs(KREAD(sk, __sk_common.skc_dport));
	if (r->family == AF_INET) {
		__u32 saddr = KREAD(sk, __sk_common.skc_rcv_saddr);
		__u32 daddr = KREAD(sk, __sk_common.skc_daddr);

		__builtin_memcpy(r->local_addr, &saddr, 4);
		__builtin_memcpy(r->remote_addr, &daddr, 4);
	} else {
		BPF_CORE_READ_INTO(&r->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->remote_addr, sk, __sk_common.skc_v6_daddr);
	}
	if (r->protocol == IPPROTO_TCP && r->type == SOCK_STREAM) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;

		if (r->state == TCP_LISTEN) {
			r->rx_queue = KREAD(sk, sk_ack_backlog);
			r->tx_queue = KREAD(sk, sk_max_ack_backlog);
		} else {
			__s32 rx = KREAD(tp, rcv_nxt) - KREAD(tp, copied_seq);

			r->rx_queue = rx > 0 ? rx : 0;
			r->tx_queue = KREAD(tp, write_seq) - KREAD(tp, snd_una);
		}
		return;
	}
	/* sk_rmem_alloc is a macro for this field. */
	r->rx_queue = KREAD(sk, sk_backlog.rmem_alloc.counter);
	if (r->protocol == IPPROTO_UDP || r->protocol == IPPROTO_UDPLITE) {
		struct udp_sock *up = (struct udp_sock *)sk;

		/* udp_rqueue_get(): what the reader has not taken yet. */
		r->rx_queue -= KREAD(up, forward_deficit);
	}
	r->tx_queue = KREAD(sk, sk_wmem_alloc.refs.counter) - 1;
}

/* Bytes waiting in a UNIX socket, as unix_inq_len() counts them. */
static __always_inline __u32 unix_rx_queue(struct sock *sk, struct sock_rec *r)
{
	struct sk_buff *head = (struct sk_buff *)__builtin_preserve_access_index(&sk->sk_receive_queue);
	struct sk_buff *skb = BPF_CORE_READ(sk, sk_receive_queue.next);
	__u32 amount = 0;

	if (r->type == SOCK_DGRAM)
		return skb && skb != head ? BPF_CORE_READ(skb, len) : 0;
	/*
	 * bpf_for (6.4+) is verified until its states converge, in two
	 * iterations here; a bounded loop once per iteration (fill_socket
	 * 3,013 -> 577 verified instructions in each program that has it).
	 */
#ifdef WALK_USE_BPF_FOR
	int i;

	bpf_for(i, 0, UNIX_QUEUE_WALK) {
		if (!skb || skb == head)
			break;
#else
	for (int i = 0; i < UNIX_QUEUE_WALK && skb && skb != head; i++) {
#endif
		struct unix_skb_parms *cb = (struct unix_skb_parms *)__builtin_preserve_access_index(&skb->cb);

		amount += BPF_CORE_READ(skb, len) - BPF_CORE_READ(cb, consumed);
		skb = BPF_CORE_READ(skb, next);
	}
	return amount;
}

/* Path, peer and queues of a UNIX socket, as unix_diag reports them. */
static __always_inline void fill_unix(struct sock *sk, struct sock_rec *r)
{
	struct unix_sock *u = (struct unix_sock *)sk;
	struct unix_address *addr = KREAD(u, addr);
	struct sock *peer = KREAD(u, peer);

	if (addr) {
		/* addr->len counts sun_family; a path's NUL is included. */
		__u32 len = KREAD(addr, len) - sizeof(__u16);

		if (len > UNIX_PATH_MAX)
			len = 0;
		barrier_var(len);
		len &= UNIX_PATH_BUF - 1;
		if (len) {
			if (bpf_probe_read_kernel(r->path, len, (void *)addr->name[0].sun_path))
				r->flags |= SOCK_FAULT;
			else
				r->path_len = len;
		}
	}
	if (peer)
		r->peer_ino = sock_inode_of(peer);
	if (r->state == TCP_LISTEN) {
		r->rx_queue = KREAD(sk, sk_receive_queue.qlen);
		r->tx_queue = KREAD(sk, sk_max_ack_backlog);
	} else {
		r->rx_queue = unix_rx_queue(sk, r);
		r->tx_queue = KREAD(sk, sk_wmem_alloc.refs.counter) - 1;
	}
}

/*
 * The socket record of a file that fill_file() found on sockfs (`magic`),
 * in the CPU's sock_scratch; returns its size, 0 for a file that is not a
 * socket. A global function, checked once by the verifier, like fill_file().
 */
__noinline __u32 fill_socket(__u64 file_addr, __u32 tgid, int fd, __u64 ino, __u32 magic)
{
	struct file *f = (struct file *)file_addr;
	struct sock_rec *r = sock_buf();
	struct socket *sock;
	struct sock *sk;
	struct net *net;
	__u32 size;

	if (!r || magic != SOCKFS_MAGIC)
		return 0;
	sock = KREAD(f, private_data);
	sk = KREAD(sock, sk);
	__builtin_memset(r, 0, offsetof(struct sock_rec, path));
	r->pid = tgid;
	r->fd = fd;
	r->ino = ino;
	if (!sk) {
		r->flags = SOCK_FAULT;
	} else {
		r->family = KREAD(sk, __sk_common.skc_family);
		r->type = KREAD(sk, sk_type);
		r->protocol = KREAD(sk, sk_protocol);
		r->state = KREAD(sk, __sk_common.skc_state);
		net = KREAD(sk, __sk_common.skc_net.net);
		r->netns = KREAD(net, ns.inum);
		if (r->family == AF_INET || r->family == AF_INET6)
			fill_inet(sk, r);
		else if (r->family == AF_UNIX)
			fill_unix(sk, r);
		if (sock_matches(r))
			r->flags |= SOCK_MATCHED;
	}
	size = offsetof(struct sock_rec, path) + ((r->path_len + 7) & ~7);
	if (size > sizeof(*r))
		size = sizeof(*r);
	set_hdr(&r->hdr, REC_SOCKET, size);
	return size;
}

/*
 * Is the fd whose record fill_file() just wrote to be kept? Every fd without
 * a socket filter; with one, only matching sockets (`sock_size` the
 * socket record's size, 0 for a file that is not a socket).
 */
static __always_inline bool fd_kept(__u32 sock_size)
{
	struct sock_rec *r;

	if (!(cfg_flags & FILTER_SOCK_ON))
		return true;
	r = sock_buf();
	return sock_size && r && (r->flags & SOCK_MATCHED);
}

#endif /* ITERSNAP_KIND_SOCKET_BPF_H */
