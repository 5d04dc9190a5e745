/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The event's own details: how a trigger program fills the event record
 * (kinds/event.h) inside the event, from what its context gives: the
 * arguments, the user strings and socket address they point to (read from
 * the event's own task, which is current, with bpf_probe_read_user(): a
 * page that is not in memory reads as a fault, marked), execve's argv, an
 * exiting task's code, a signal's siginfo, a tracefs record. Which
 * arguments are strings is a .rodata constant user space sets from the
 * syscall's signature, so a trigger verifies only the reads it asks for.
 */
#ifndef ITERSNAP_KIND_EVENT_BPF_H
#define ITERSNAP_KIND_EVENT_BPF_H

#include "base.bpf.h"

/* See _task_rec_btf. */
struct event_rec _event_rec_btf = {};

const volatile __u32 cfg_event_strs = 0;	/* bit i: args[i] points to a string */
const volatile __u32 cfg_event_argv = 0;	/* 1 + the index of an argv argument, else 0 */
const volatile __u32 cfg_event_addr = 0;	/* 1 + the index of a socket address, else 0 */
const volatile __u32 cfg_event_addrlen = 0;	/* the index of its length */
const volatile __u32 cfg_event_exit = 0;	/* the event is a task's exit */
const volatile __u32 cfg_event_nargs = 0;	/* a raw tracepoint's arguments to copy */
const volatile __u32 cfg_event_record = 0;	/* bytes of a tracefs record to copy */
/* 1 + the offset of a syscall's six arguments in the tracefs record
 * (syscalls:sys_enter_*), else 0. */
const volatile __u32 cfg_event_record_args = 0;

/*
 * Appends the user string at `uptr` as an item of source `src`. Items
 * start 4-aligned; past the room for one more string, nothing is appended
 * and the record says it ran out.
 */
static __always_inline void event_str(struct event_rec *r, const void *uptr, __u8 src)
{
	__u32 off = r->data_len;
	struct event_item *it;
	long n;

	if (off > EVENT_DATA - EVENT_STR_MAX - sizeof(*it)) {
		r->flags |= EVENT_ITEMS_CUT;
		return;
	}
	it = (struct event_item *)&r->data[off];
	it->src = src;
	it->flags = 0;
	n = bpf_probe_read_user_str(&r->data[off + sizeof(*it)], EVENT_STR_MAX, uptr);
	if (n <= 0) {
		it->flags = EVENT_ITEM_FAULT;
		n = 0;
	} else if (n >= EVENT_STR_MAX) {
		it->flags = EVENT_ITEM_CUT;
	}
	it->len = n;
	r->data_len = (off + sizeof(*it) + n + 3) & ~3;
}

/* The socket address `uptr` points to, `len` bytes of it (at most 128). */
static __always_inline void event_addr(struct event_rec *r, const void *uptr, __u64 len)
{
	__u32 off = r->data_len;
	struct event_item *it;

	if (off > EVENT_DATA - EVENT_ADDR_MAX - sizeof(*it)) {
		r->flags |= EVENT_ITEMS_CUT;
		return;
	}
	it = (struct event_item *)&r->data[off];
	it->src = EVENT_ITEM_ADDR;
	it->flags = 0;
	if (len > EVENT_ADDR_MAX)
		len = EVENT_ADDR_MAX;
	barrier_var(len);
	if (!len || len > EVENT_ADDR_MAX ||
	    bpf_probe_read_user(&r->data[off + sizeof(*it)], len, uptr)) {
		it->flags = EVENT_ITEM_FAULT;
		len = 0;
	}
	it->len = len;
	r->data_len = (off + sizeof(*it) + len + 3) & ~3;
}

/* execve's argv: its elements in order, up to EVENT_ARGV_MAX. */
static __always_inline void event_argv(struct event_rec *r, const char *const *argv)
{
	const char *arg;
	int i;

#ifdef WALK_USE_BPF_FOR
	bpf_for(i, 0, EVENT_ARGV_MAX) {
#else
	for (i = 0; i < EVENT_ARGV_MAX; i++) {
#endif
		arg = NULL;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			return;
		event_str(r, arg, EVENT_ITEM_ARGV);
		if (r->flags & EVENT_ITEMS_CUT)
			return;
	}
	arg = NULL;
	if (!bpf_probe_read_user(&arg, sizeof(arg), &argv[EVENT_ARGV_MAX]) && arg)
		r->flags |= EVENT_ARGV_MORE;
}

/* What the arguments point to, as the .rodata constants say. */
static __always_inline void event_pointees(struct event_rec *r)
{
	for (int i = 0; i < 6; i++)
		if (cfg_event_strs & (1 << i))
			event_str(r, (const void *)r->args[i], i);
	if (cfg_event_argv && cfg_event_argv <= 6)
		event_argv(r, (const char *const *)r->args[cfg_event_argv - 1]);
	if (cfg_event_addr && cfg_event_addr <= 6 && cfg_event_addrlen < 6)
		event_addr(r, (const void *)r->args[cfg_event_addr - 1], r->args[cfg_event_addrlen]);
}

/* Starts an event record in `r`: no arguments, no items yet. */
static __always_inline void event_begin(struct event_rec *r)
{
	__builtin_memset(r, 0, offsetof(struct event_rec, data));
}

/* Seals it: the header, and its size (the used data, 8-aligned). */
static __always_inline __u32 event_end(struct event_rec *r)
{
	__u32 size = offsetof(struct event_rec, data) + ((r->data_len + 7) & ~7);

	if (size > sizeof(*r))
		size = sizeof(*r);
	set_hdr(&r->hdr, REC_EVENT, size);
	return size;
}

/* The exiting task's code (it is current): what wait() will report. */
static __always_inline void event_exit(struct event_rec *r)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	r->exit_code = BPF_CORE_READ(t, exit_code);
	r->flags |= EVENT_EXIT;
}

/* A tracefs tracepoint's record (ctx), cfg_event_record bytes of it, and
 * a syscall's arguments from it (syscalls:sys_enter_*). */
static __always_inline void event_record(struct event_rec *r, void *record)
{
	__u32 n = cfg_event_record;

	if (n && n <= EVENT_DATA && !bpf_probe_read_kernel(r->data, n, record)) {
		r->record_len = n;
		r->data_len = (n + 3) & ~3;
		r->flags |= EVENT_RECORD;
	}
	if (cfg_event_record_args && cfg_event_record_args <= 512 &&
	    !bpf_probe_read_kernel(r->args, sizeof(r->args),
				   (char *)record + cfg_event_record_args - 1))
		r->flags |= EVENT_ARGS;
}

/* A signal's siginfo, as the signal_generate tracepoint gets it. */
static __always_inline void event_siginfo(struct event_rec *r, struct kernel_siginfo *info)
{
	r->flags |= EVENT_SIGINFO;
	/* The kernel's markers for "no siginfo" (kill()) and "the kernel's". */
	if ((__u64)info == 0) {
		r->flags |= EVENT_SIG_NOINFO;
		return;
	}
	if ((__u64)info == 1) {
		r->flags |= EVENT_SIG_PRIV;
		return;
	}
	r->si_errno = BPF_CORE_READ(info, si_errno);
	r->si_code = BPF_CORE_READ(info, si_code);
	bpf_probe_read_kernel(r->si_fields, sizeof(r->si_fields),
			      __builtin_preserve_access_index(&info->_sifields));
}

#endif /* ITERSNAP_KIND_EVENT_BPF_H */
