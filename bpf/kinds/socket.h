/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sockets: the layout of the socket record (REC_SOCKET), one per socket fd,
 * right after that fd's file record, decoded by src/kinds/sockets.rs. What
 * lsof -i and ss show of a socket: family, type, protocol, state,
 * endpoints, queues, network namespace, and a UNIX socket's path and peer.
 * Its own file so that everything about this kind of data sits together;
 * kinds/socket.bpf.h fills it. Plain C, included by itersnap.h after
 * struct rec_hdr, not on its own.
 */
#ifndef ITERSNAP_KIND_SOCKET_H
#define ITERSNAP_KIND_SOCKET_H

/* sizeof(sockaddr_un.sun_path) is 108; a power of two lets the verifier
 * bound a length with a mask. */
#define UNIX_PATH_BUF 128

struct sock_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* tgid of the owning process */
	__s32 fd;
	__u64 ino;		/* the socket's inode: its file record's ino */
	__u64 netns;		/* inode of its network namespace (net->ns.inum) */
	__u64 peer_ino;		/* UNIX: the peer's inode, 0 without one */
	__u32 rx_queue;		/* as ss's Recv-Q */
	__u32 tx_queue;		/* as ss's Send-Q */
	__u16 family;		/* sk_family: AF_* */
	__u16 type;		/* sk_type: SOCK_* */
	__u16 protocol;		/* sk_protocol: IPPROTO_*, NETLINK_*, ETH_P_* (network order) */
	__u8 state;		/* sk_state: TCP_* (UNIX and UDP use TCP_ESTABLISHED, TCP_CLOSE) */
	__u8 flags;		/* enum sock_rec_flags */
	__u16 local_port;	/* host order (inet); raw sockets: the protocol */
	__u16 remote_port;
	__u16 path_len;		/* UNIX: bytes of path[]; an abstract name starts with a NUL */
	__u16 _pad;
	__u8 local_addr[16];	/* IPv4: the first 4 bytes; IPv6: all 16; network order */
	__u8 remote_addr[16];
	char path[UNIX_PATH_BUF];	/* UNIX: sun_path as bound, path_len bytes */
};

enum sock_rec_flags {
	SOCK_FAULT = 1 << 0,	/* a kernel read failed midway */
	SOCK_MATCHED = 1 << 1,	/* selected by the --port/--proto/--state filter */
};

#endif /* ITERSNAP_KIND_SOCKET_H */
