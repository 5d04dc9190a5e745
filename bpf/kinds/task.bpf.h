/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Task identity: how one task becomes a task record (kinds/task.h). Its own
 * file so that everything about this kind of data sits together, layout and
 * fill function; walk.bpf.h includes it after the machinery every kind
 * shares (set_hdr(), the CO-RE reads), which it uses.
 */
#ifndef ITERSNAP_KIND_TASK_BPF_H
#define ITERSNAP_KIND_TASK_BPF_H

/* task_struct.flags of a kernel thread (task_rec.flags). */
#define PF_KTHREAD 0x00200000

/*
 * A global of the record type, never used: libbpf-cargo only emits Rust
 * types for structs present in the object's BTF (src/record.rs checks the
 * offsets against them).
 */
struct task_rec _task_rec_btf = {};

/* Older kernels name the state field `state` (renamed __state in 5.14). */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u32 task_state_raw(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/* `capture` and `fds_upto`: where the record is filled (enum capture_flags). */
static __always_inline void fill_task(struct task_struct *t, struct task_rec *r, __u32 capture,
				      __u32 fds_upto)
{
	const struct cred *cred = BPF_CORE_READ(t, real_cred);
	struct signal_struct *sig = BPF_CORE_READ(t, signal);

	set_hdr(&r->hdr, REC_TASK, sizeof(*r));
	r->pid = BPF_CORE_READ(t, pid);
	r->tgid = BPF_CORE_READ(t, tgid);
	r->ppid = BPF_CORE_READ(t, real_parent, tgid);
	r->uid = BPF_CORE_READ(cred, uid.val);
	r->euid = BPF_CORE_READ(cred, euid.val);
	r->gid = BPF_CORE_READ(cred, gid.val);
	r->state = task_state_raw(t);
	r->exit_state = BPF_CORE_READ(t, exit_state);
	r->flags = BPF_CORE_READ(t, flags);
	r->nr_threads = BPF_CORE_READ(sig, nr_threads);
	r->utime_ns = BPF_CORE_READ(t, utime);
	r->stime_ns = BPF_CORE_READ(t, stime);
	r->runtime_ns = BPF_CORE_READ(t, se.sum_exec_runtime);
	r->dead_utime_ns = BPF_CORE_READ(sig, utime);
	r->dead_stime_ns = BPF_CORE_READ(sig, stime);
	r->dead_runtime_ns = BPF_CORE_READ(sig, sum_sched_runtime);
	r->start_ns = BPF_CORE_READ(t, start_time);
	BPF_CORE_READ_STR_INTO(&r->comm, t, comm);
	r->capture = capture;
	r->fds_upto = fds_upto;
	r->taken_ns = bpf_ktime_get_ns();
}

#endif /* ITERSNAP_KIND_TASK_BPF_H */
