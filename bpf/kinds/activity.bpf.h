/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a thread is doing (--activity): whether its activity is wanted and
 * how it becomes an activity record (kinds/activity.h), over the machinery
 * every kind shares (base.bpf.h) and the task kind's state.
 */
#ifndef ITERSNAP_KIND_ACTIVITY_BPF_H
#define ITERSNAP_KIND_ACTIVITY_BPF_H

#include "base.bpf.h"
#include "kinds/task.bpf.h"

/* Never used: libbpf-cargo emits Rust types only for structs in the BTF. */
struct activity_rec _activity_rec_btf = {};

/* Is this thread's activity wanted? Leaders only, unless --threads. */
static __always_inline bool want_activity(struct task_struct *t)
{
	if (!(cfg_flags & OPT_ACTIVITY))
		return false;
	return (cfg_flags & OPT_THREADS) || KREAD(t, pid) == KREAD(t, tgid);
}

/*
 * A syscall's six arguments from the user registers its entry saved, in
 * x86-64's order (di, si, dx, r10, r8, r9), as collect_syscall() reads
 * them: shared with the trigger programs (the event's own arguments).
 */
static __always_inline void syscall_regs_args(struct pt_regs *regs, __u64 args[6])
{
	args[0] = BPF_CORE_READ(regs, di);
	args[1] = BPF_CORE_READ(regs, si);
	args[2] = BPF_CORE_READ(regs, dx);
	args[3] = BPF_CORE_READ(regs, r10);
	args[4] = BPF_CORE_READ(regs, r8);
	args[5] = BPF_CORE_READ(regs, r9);
}

/*
 * Fill an activity record from the thread's saved user registers, as
 * /proc/PID/syscall reads them (collect_syscall()): x86-64's syscall
 * number in orig_ax, its arguments in di, si, dx, r10, r8, r9. `t` is a
 * BTF pointer (bpf_task_pt_regs() takes one). The task the program runs
 * in runs, but its registers are its syscall's, as /proc/self/syscall
 * reads them. Returns the record's size, or 0 without bpf_task_pt_regs()
 * (before 5.15: the call is removed at load time).
 */
static __always_inline __u32 fill_activity(struct task_struct *t, struct activity_rec *r)
{
	bool current = KREAD(t, pid) == (__u32)bpf_get_current_pid_tgid();

	struct pt_regs *regs;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return 0;
	__builtin_memset(r, 0, sizeof(*r));
	r->pid = KREAD(t, pid);
	r->nr = -1;
	set_hdr(&r->hdr, REC_ACTIVITY, sizeof(*r));
	if (KREAD(t, flags) & PF_KTHREAD) {
		r->flags = ACTIVITY_KTHREAD;
		return sizeof(*r);
	}
	if (task_state_raw(t) == 0 && !current) {
		r->flags = ACTIVITY_RUNNING;
		return sizeof(*r);
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return sizeof(*r);
	r->nr = BPF_CORE_READ(regs, orig_ax);
	r->sp = BPF_CORE_READ(regs, sp);
	r->pc = BPF_CORE_READ(regs, ip);
	if (r->nr < 0)
		return sizeof(*r);
	syscall_regs_args(regs, r->args);
	return sizeof(*r);
}

#endif /* ITERSNAP_KIND_ACTIVITY_BPF_H */
