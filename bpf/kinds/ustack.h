/* SPDX-License-Identifier: GPL-2.0 */
/*
 * User-space stacks (--ustacks): the layout of the user stack record
 * (REC_USTACK), one per thread whose user stack is wanted, decoded by
 * src/kinds/ustacks.rs and filled by kinds/ustack.bpf.h. Plain C,
 * included by itersnap.h after struct rec_hdr, not on its own.
 */
#ifndef ITERSNAP_KIND_USTACK_H
#define ITERSNAP_KIND_USTACK_H

/* User stack frames kept per thread. */
#define USTACK_MAX_DEPTH 64

enum ustack_flags {
	/* The frame-pointer chain broke before its end (a frame without a
	 * frame pointer, an unreadable page): outer frames are missing. */
	USTACK_PARTIAL = 1 << 0,
	/* On a CPU: its saved registers are stale, its stack not walked. */
	USTACK_RUNNING = 1 << 1,
	/* The event's own task, unwound in its own context by the kernel. */
	USTACK_IN_EVENT = 1 << 2,
	/* Deeper than USTACK_MAX_DEPTH frames: the outermost are left out. */
	USTACK_DEEP = 1 << 3,
};

/* One thread's user stack: nr_ips addresses, innermost first. */
struct ustack_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* thread id */
	__u32 nr_ips;
	__u32 flags;		/* enum ustack_flags */
	__u32 _pad;
	__u64 ips[USTACK_MAX_DEPTH];
};

#endif /* ITERSNAP_KIND_USTACK_H */
