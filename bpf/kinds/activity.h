/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a thread is doing (--activity): the layout of the activity record
 * (REC_ACTIVITY), one per thread whose activity is wanted, decoded by
 * src/kinds/activity.rs and filled by kinds/activity.bpf.h. Plain C,
 * included by itersnap.h after struct rec_hdr, not on its own.
 */
#ifndef ITERSNAP_KIND_ACTIVITY_H
#define ITERSNAP_KIND_ACTIVITY_H

enum activity_flags {
	/* On a CPU (or about to be): its saved registers are stale, as
	 * /proc/PID/syscall says "running". */
	ACTIVITY_RUNNING = 1 << 0,
	/* A kernel thread: never in a syscall. */
	ACTIVITY_KTHREAD = 1 << 1,
};

/*
 * The syscall a thread is in, from the user registers its kernel entry
 * saved (task_pt_regs()), as /proc/PID/syscall shows them: its number (-1
 * when it is not in one: in user space, or stopped outside a syscall), its
 * six arguments, the user stack pointer and program counter.
 */
struct activity_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* thread id */
	__s32 nr;
	__u64 args[6];
	__u64 sp;
	__u64 pc;
	__u32 flags;		/* enum activity_flags */
	__u32 _pad;
};

#endif /* ITERSNAP_KIND_ACTIVITY_H */
