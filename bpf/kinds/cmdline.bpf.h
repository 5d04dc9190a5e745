/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Command lines: the bytes /proc/PID/cmdline gives (get_mm_cmdline() in
 * fs/proc/base.c), read from the process's memory with
 * bpf_copy_from_user_task(), which may fault pages in and so sleeps: the
 * sleepable iterator of complete.bpf.h, after the event. Inside the event
 * only the event's own task's, from its own context (fill_cmdline_current).
 */
#ifndef ITERSNAP_KIND_CMDLINE_BPF_H
#define ITERSNAP_KIND_CMDLINE_BPF_H

#include "base.bpf.h"

/* See _task_rec_btf. */
struct cmdline_rec _cmdline_rec_btf = {};

/*
 * The record being written. Not per CPU: a sleeping program may be
 * preempted by another on its CPU; one reader at a time reads the
 * command-line iterator (src/backend/completion.rs), so one buffer serves.
 */
struct cmdline_rec cmdline_buf = {};

/* Where a process's command line is, as get_mm_cmdline() decides. */
struct cmdline_span {
	__u64 start;
	__u64 len;
	__u16 flags;
};

/*
 * The span of the command line being read, beside cmdline_buf for the same
 * reason. Global, not on the stack: the chunk loop compares each chunk's
 * offset with the length, and bounds learnt on a stack slot stay with it,
 * so every chunk would be a new state to verify; read from a global, the
 * length is unknown again in each chunk, and the loop's states converge.
 */
struct cmdline_span cmdline_cur = {};

/*
 * argv's area, or with setproctitle() (argv's last byte overwritten) the
 * area through the environment that follows it, of which /proc shows one
 * page up to the first NUL.
 */
static __always_inline struct cmdline_span cmdline_span(struct task_struct *t,
							 struct mm_struct *mm)
{
	struct cmdline_span s = {};
	__u64 arg_start = KREAD(mm, arg_start);
	__u64 arg_end = KREAD(mm, arg_end);
	__u64 env_start = KREAD(mm, env_start);
	__u64 env_end = KREAD(mm, env_end);
	char last = 0;

	if (arg_start >= arg_end)
		return s;
	s.start = arg_start;
	s.len = arg_end - arg_start;
	if (bpf_copy_from_user_task(&last, 1, (void *)(arg_end - 1), t, 0)) {
		s.flags = CMDLINE_FAULT;
		return s;
	}
	if (last) {
		if (env_start != arg_end || env_end < env_start)
			env_end = arg_end;
		s.len = env_end - arg_start;
		if (s.len > CMDLINE_CHUNK)
			s.len = CMDLINE_CHUNK;
		s.flags = CMDLINE_PROCTITLE;
	}
	return s;
}

/*
 * Chunk i of the command line into cmdline_buf; returns the record's size,
 * 0 past the end (chunk 0 is always written: an empty or unreadable
 * command line says so).
 */
static __always_inline __u32 fill_cmdline_chunk(struct task_struct *t, struct cmdline_span *s,
						 __u32 tgid, __u32 i)
{
	struct cmdline_rec *r = &cmdline_buf;
	__u64 off = (__u64)i * CMDLINE_CHUNK;
	__u64 n;

	if (i > 0 && off >= s->len)
		return 0;
	n = off < s->len ? s->len - off : 0;
	if (n > CMDLINE_CHUNK)
		n = CMDLINE_CHUNK;
	r->pid = tgid;
	r->offset = off;
	r->total = s->len;
	r->flags = s->flags;
	if (i == CMDLINE_CHUNKS - 1 && s->len > off + n)
		r->flags |= CMDLINE_TRUNCATED;
	/*
	 * n goes through the record and back: the check below then bounds a
	 * value the verifier knows nothing of, so that making the helper's
	 * size precise stops here instead of reaching the chunk's index
	 * through off (see cmdline_cur: dump_cmdline 8,169 -> 1,976 verified
	 * instructions on the seq object, 2,571 -> 680 on the open-coded one).
	 */
	r->len = n;
	n = *(volatile __u16 *)&r->len;
	if (n > CMDLINE_CHUNK)
		return 0;
	if (n && bpf_copy_from_user_task(r->data, n, (void *)(s->start + off), t, 0)) {
		r->flags |= CMDLINE_FAULT;
		n = 0;
	}
	r->len = n;
	r->taken_ns = bpf_ktime_get_ns();
	n = offsetof(struct cmdline_rec, data) + ((n + 7) & ~7);
	set_hdr(&r->hdr, REC_CMDLINE, n);
	return n;
}

/*
 * The command line of the task the event runs in (current), read inside
 * the event with bpf_probe_read_user(), which cannot fault a page in: the
 * command line it had at the event, even if it then execs or exits. Only a
 * whole one is sent (one chunk, every byte read), marked CMDLINE_IN_EVENT;
 * a longer one, or one not in memory, is left to the iterator after the
 * event, which reads it whole: never half of each. Returns the record's
 * size, or 0.
 */
static __always_inline __u32 fill_cmdline_current(struct cmdline_rec *r)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct mm_struct *mm = BPF_CORE_READ(t, mm);
	__u64 start, end, env_start, env_end, n;
	__u16 flags = CMDLINE_IN_EVENT;
	char last = 0;

	/* A kernel thread has none (and its borrowed mm is not its own: it
	 * has no arg_start there either). */
	if (!mm)
		return 0;
	start = BPF_CORE_READ(mm, arg_start);
	end = BPF_CORE_READ(mm, arg_end);
	if (start >= end || bpf_probe_read_user(&last, 1, (void *)(end - 1)))
		return 0;
	n = end - start;
	if (last) {
		/* setproctitle(): as cmdline_span() reads it. */
		env_start = BPF_CORE_READ(mm, env_start);
		env_end = BPF_CORE_READ(mm, env_end);
		if (env_start != end || env_end < env_start)
			env_end = end;
		n = env_end - start;
		if (n > CMDLINE_CHUNK)
			n = CMDLINE_CHUNK;
		flags |= CMDLINE_PROCTITLE;
	}
	barrier_var(n);
	if (!n || n > CMDLINE_CHUNK || bpf_probe_read_user(r->data, n, (void *)start))
		return 0;
	r->pid = BPF_CORE_READ(t, tgid);
	r->offset = 0;
	r->total = n;
	r->len = n;
	r->flags = flags;
	r->taken_ns = bpf_ktime_get_ns();
	n = offsetof(struct cmdline_rec, data) + ((n + 7) & ~7);
	set_hdr(&r->hdr, REC_CMDLINE, n);
	return n;
}

#endif /* ITERSNAP_KIND_CMDLINE_BPF_H */
