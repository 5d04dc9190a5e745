/* SPDX-License-Identifier: GPL-2.0 */
/*
 * On-CPU samples (--interval with --stacks or --ustacks): the layout of
 * one CPU's latest sample, a value of the oncpu_samples array (one per
 * CPU), not a record of the stream. A thread running on another CPU has no
 * stack the walk can read; a CPU-clock perf event on each CPU, in phase
 * with the ticks, takes the stacks of whatever it interrupts. Decoded by
 * src/kinds/oncpu.rs, filled by kinds/oncpu.bpf.h. Plain C, included by
 * itersnap.h, not on its own.
 */
#ifndef ITERSNAP_KIND_ONCPU_H
#define ITERSNAP_KIND_ONCPU_H

enum oncpu_flags {
	/* Stacks were asked for (--stacks, --ustacks respectively). */
	ONCPU_KSTACK = 1 << 0,
	ONCPU_USTACK = 1 << 1,
};

/*
 * The latest sample of one CPU. A sample is written while user space may
 * read it: `seq` is written first and `seq_end` last, with the same
 * number; a copy whose two differ, or that differs from a second copy, is
 * torn (src/kinds/oncpu.rs reads twice).
 */
struct oncpu_sample {
	__u64 seq;
	__u64 time_ns;		/* bpf_ktime_get_ns() at the sample */
	__u32 tid;		/* 0: the CPU was idle */
	__u32 tgid;
	__u32 cpu;
	__u32 flags;		/* enum oncpu_flags */
	__u32 nr_kips;
	__u32 nr_uips;
	__u64 kips[STACK_MAX_DEPTH];	/* innermost first */
	__u64 uips[USTACK_MAX_DEPTH];
	__u64 seq_end;
};

#endif /* ITERSNAP_KIND_ONCPU_H */
