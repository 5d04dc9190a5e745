/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel stacks: whether a thread's stack is wanted and how it becomes a
 * stack record (kinds/stack.h). Its own file so that everything about this
 * kind of data sits together, layout and fill function, over the machinery
 * every kind shares (base.bpf.h: cfg_flags, set_hdr()).
 */
#ifndef ITERSNAP_KIND_STACK_BPF_H
#define ITERSNAP_KIND_STACK_BPF_H

#include "base.bpf.h"

/*
 * A global of the record type, never used: libbpf-cargo only emits Rust
 * types for structs present in the object's BTF (src/record.rs checks the
 * offsets against them).
 */
struct stack_rec _stack_rec_btf = {};

/* Is a kernel stack wanted for this thread? Leaders only, unless --threads. */
static __always_inline bool want_stack(struct task_struct *t)
{
	if (!(cfg_flags & OPT_STACKS))
		return false;
	return (cfg_flags & OPT_THREADS) || KREAD(t, pid) == KREAD(t, tgid);
}

/*
 * Fill a stack record; returns its size, or 0 when the kernel has no
 * bpf_get_task_stack (before 5.9: the call is removed at load time).
 */
static __always_inline __u32 fill_stack(struct task_struct *t, struct stack_rec *r)
{
	long n = 0;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_task_stack))
		return 0;
	n = bpf_get_task_stack(t, r->ips, sizeof(r->ips), 0);
	if (n < 0)
		n = 0;
	n /= sizeof(__u64);
	if (n > STACK_MAX_DEPTH)
		n = STACK_MAX_DEPTH;
	r->pid = KREAD(t, pid);
	r->nr_ips = n;
	set_hdr(&r->hdr, REC_STACK, offsetof(struct stack_rec, ips) + n * sizeof(__u64));
	return r->hdr.size;
}

#endif /* ITERSNAP_KIND_STACK_BPF_H */
