/* SPDX-License-Identifier: GPL-2.0 */
/*
 * User-space stacks (--ustacks): whether a thread's user stack is wanted
 * and how it becomes a user stack record (kinds/ustack.h). The event's own
 * task is unwound by the kernel in its own context (bpf_get_task_stack()
 * with BPF_F_USER_STACK, which current kernels allow for the current task
 * only); every other thread by following its frame pointers from the
 * registers its kernel entry saved, reading its memory with
 * bpf_copy_from_user_task(), which may fault pages in: only from the
 * sleepable iterator after the event (complete.bpf.h, 5.18+).
 */
#ifndef ITERSNAP_KIND_USTACK_BPF_H
#define ITERSNAP_KIND_USTACK_BPF_H

#include "base.bpf.h"
#include "kinds/task.bpf.h"

/* See _task_rec_btf. */
struct ustack_rec _ustack_rec_btf = {};

/* The record a sleepable iterator writes: not per CPU (it may sleep and be
 * preempted on its CPU); one reader at a time reads that iterator. */
struct ustack_rec ustack_buf = {};

/* Is this thread's user stack wanted? Leaders only, unless --threads. */
static __always_inline bool want_ustack(struct task_struct *t)
{
	if (!(cfg_flags & OPT_USTACKS) || (KREAD(t, flags) & PF_KTHREAD))
		return false;
	return (cfg_flags & OPT_THREADS) || KREAD(t, pid) == KREAD(t, tgid);
}

static __always_inline __u32 ustack_seal(struct ustack_rec *r, __u32 pid, long n, __u32 flags)
{
	if (n < 0)
		n = 0;
	if (n > USTACK_MAX_DEPTH)
		n = USTACK_MAX_DEPTH;
	r->pid = pid;
	r->nr_ips = n;
	r->flags = flags;
	r->_pad = 0;
	set_hdr(&r->hdr, REC_USTACK, offsetof(struct ustack_rec, ips) + n * sizeof(__u64));
	return r->hdr.size;
}

/*
 * The task the event runs in (t, a BTF pointer to current): the kernel's
 * own user unwinder (frame pointers, as perf's callchains). Returns the
 * record's size, 0 without the helper (before 5.9).
 */
static __always_inline __u32 fill_ustack_current(struct task_struct *t, struct ustack_rec *r)
{
	long n;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_task_stack))
		return 0;
	n = bpf_get_task_stack(t, r->ips, sizeof(r->ips), BPF_F_USER_STACK);
	return ustack_seal(r, KREAD(t, pid), n < 0 ? 0 : n / sizeof(__u64), USTACK_IN_EVENT);
}

/*
 * Another thread's, from its saved user registers: its pc, then the return
 * address of each frame its frame-pointer chain (rbp) links, while each
 * frame lies above the last. A chain that breaks before a zero frame
 * pointer is marked partial: a function built without frame pointers (most
 * of libc) hides its callers. Sleepable programs only.
 */
static __always_inline __u32 fill_ustack_walk(struct task_struct *t, struct ustack_rec *r)
{
	__u32 pid = KREAD(t, pid);
	struct pt_regs *regs;
	__u32 flags = 0;
	__u64 bp, frame[2];
	long n = 1;
	__u32 idx;
	int i;

	/* On a CPU: its saved registers are stale; --interval samples it
	 * (kinds/oncpu.bpf.h). A runnable thread off its CPU is walked. */
	if (task_on_cpu(t))
		return ustack_seal(r, pid, 0, USTACK_RUNNING);
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return ustack_seal(r, pid, 0, USTACK_PARTIAL);
	r->ips[0] = BPF_CORE_READ(regs, ip);
	bp = BPF_CORE_READ(regs, bp);
#ifdef WALK_USE_BPF_FOR
	bpf_for(i, 1, USTACK_MAX_DEPTH) {
#else
	for (i = 1; i < USTACK_MAX_DEPTH; i++) {
#endif
		if (!bp)
			break;
		if (bpf_copy_from_user_task(frame, sizeof(frame), (void *)bp, t, 0)) {
			flags |= USTACK_PARTIAL;
			break;
		}
		if (!frame[1])
			break;
		/* The bound check on the very register that indexes. */
		idx = i;
		barrier_var(idx);
		if (idx >= USTACK_MAX_DEPTH)
			break;
		r->ips[idx] = frame[1];
		n = idx + 1;
		if (frame[0] && frame[0] <= bp) {
			flags |= USTACK_PARTIAL;
			break;
		}
		bp = frame[0];
	}
	if (n == USTACK_MAX_DEPTH && bp)
		flags |= USTACK_DEEP;
	return ustack_seal(r, pid, n, flags);
}

#endif /* ITERSNAP_KIND_USTACK_BPF_H */
