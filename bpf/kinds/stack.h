/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel stacks: the layout of the stack record (REC_STACK), one per thread
 * whose stack is wanted, decoded by src/record.rs. Its own file so that
 * everything about this kind of data sits together; kinds/stack.bpf.h
 * fills it. Plain C, included by itersnap.h after struct rec_hdr, not on
 * its own.
 */
#ifndef ITERSNAP_KIND_STACK_H
#define ITERSNAP_KIND_STACK_H

/* Kernel stack frames kept per task. */
#define STACK_MAX_DEPTH 64

/* Kernel stack of one thread: nr_ips addresses, innermost first. */
struct stack_rec {
	struct rec_hdr hdr;
	__u32 pid;
	__u32 nr_ips;
	__u64 ips[STACK_MAX_DEPTH];
};

#endif /* ITERSNAP_KIND_STACK_H */
