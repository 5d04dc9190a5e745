/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Task identity: how one task becomes a task record (kinds/task.h), and the
 * name /proc shows for a task, which the COMM filters match too. Its own
 * file so that everything about this kind of data sits together, layout and
 * fill function, over the machinery every kind shares (base.bpf.h:
 * set_hdr(), the copy buffer, the CO-RE reads).
 */
#ifndef ITERSNAP_KIND_TASK_BPF_H
#define ITERSNAP_KIND_TASK_BPF_H

#include "base.bpf.h"

/* task_struct.flags (task_rec.flags). */
#define PF_WQ_WORKER 0x00000020
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

/* The boot-clock start time was real_start_time before 5.5. */
struct task_struct___pre55 {
	u64 real_start_time;
} __attribute__((preserve_access_index));

/* A task's CPU was task_struct.cpu before 5.16 (now thread_info.cpu). */
struct task_struct___pre516 {
	unsigned int cpu;
} __attribute__((preserve_access_index));

/*
 * The CPU a task runs on, or last ran on (/proc/PID/stat's processor), and
 * whether it runs now. Read at whatever size this kernel gives them
 * (on_cpu is an int before 7.x, narrower after).
 */
static __always_inline __u32 task_cpu_of(struct task_struct *t)
{
	if (bpf_core_field_exists(t->thread_info.cpu))
		return BPF_CORE_READ_BITFIELD_PROBED(t, thread_info.cpu);
	return BPF_CORE_READ_BITFIELD_PROBED((struct task_struct___pre516 *)t, cpu);
}

static __always_inline bool task_on_cpu(struct task_struct *t)
{
	return BPF_CORE_READ_BITFIELD_PROBED(t, on_cpu) != 0;
}

static __always_inline __u32 task_state_raw(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return KREAD(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/*
 * The index of ps's state letter in "RSDTtXZPI", as the kernel's
 * task_state_index() computes it (fls() of the reported state bits, with
 * TASK_IDLE as I and an RT lock wait as D).
 */
static __always_inline __u32 task_state_index(struct task_struct *t)
{
	__u32 state = task_state_raw(t);
	__u32 x = (state & 0x7f) | KREAD(t, exit_state);
	__u32 n = 0;

	if (state == 0x0402)
		return 8;
	if (state == 0x1000)
		return 2;
	if (x & 0xf0) {
		n += 4;
		x >>= 4;
	}
	if (x & 0xc) {
		n += 2;
		x >>= 2;
	}
	if (x & 2) {
		n += 1;
		x >>= 1;
	}
	return n + (x & 1);
}

/* The effective uid /proc/PID/status shows (the objective credentials). */
static __always_inline __u32 task_euid(struct task_struct *t)
{
	return BPF_CORE_READ(t, real_cred, euid.val);
}

/*
 * The task's name as proc_task_name() (fs/proc/array.c) gives it to
 * /proc/PID/comm, stat and status, and as `ps` and `pgrep -x` see it:
 *   - a workqueue worker (PF_WQ_WORKER): wq_worker_comm(), its id (6.10+:
 *     format_worker_id(), e.g. kworker/u8:2 or kworker/R-kblockd; before:
 *     its comm), then `+desc` while it runs a work item, `-desc` after, when
 *     it is in a pool and has a desc (the workqueue's name, or
 *     set_worker_desc()'s);
 *   - another kernel thread (PF_KTHREAD): get_kthread_comm(), its struct
 *     kthread's full_name when its name did not fit comm (5.17+), else comm;
 *   - everyone else: comm.
 * At most TASK_NAME_LEN - 1 bytes, cut where the kernel's 64-byte buffer
 * cuts it.
 *
 * Composed here rather than from raw pieces in user space: the COMM filters
 * run in the kernel and must match the very name that is shown (`pgrep -x
 * kworker/0:1-events`), and one composition serves both; the record then
 * carries 64 bytes of name instead of every piece (comm, full name, desc,
 * the workqueue's name, pool and worker ids) for every task.
 */

/* The name under composition, per CPU, with room past TASK_NAME_LEN so that
 * an append at any offset below it passes the verifier's bounds check. */
struct name_buf {
	char s[2 * TASK_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_buf);
} name_map SEC(".maps");

static __always_inline struct name_buf *name_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&name_map, &zero);
}

/* The last offset a character may take: the 64th byte is the NUL. */
#define NAME_LAST (TASK_NAME_LEN - 1)

/* scnprintf("%c") at s + len: returns the new length (at most NAME_LAST). */
static __always_inline __u32 name_char(char *s, __u32 len, char c)
{
	if (len >= NAME_LAST)
		return NAME_LAST;
	len &= NAME_LAST;
	s[len] = c;
	s[len + 1] = '\0';
	return len + 1;
}

/* scnprintf("%s") of the kernel string `src` (a char array of `size` bytes)
 * at s + len: returns the new length. */
static __always_inline __u32 name_str(char *s, __u32 len, const void *src, __u32 size)
{
	__u32 room;
	long n;

	if (len >= NAME_LAST)
		return NAME_LAST;
	len &= NAME_LAST;
	room = TASK_NAME_LEN - len;
	if (room > size)
		room = size;
	/* Keep the bound on the very register passed to the helper. */
	barrier_var(room);
	if (room == 0 || room > TASK_NAME_LEN)
		return len;
	n = bpf_probe_read_kernel_str(s + len, room, src);
	if (n <= 0) {
		s[len] = '\0';
		return len;
	}
	return len + n - 1;
}

/* scnprintf("%d") of a value the kernel prints non-negative (cpu and ids). */
static __always_inline __u32 name_uint(char *s, __u32 len, __u32 v)
{
#define NAME_DIGIT(p)                                                    \
	if (v >= p || p == 1)                                              \
		len = name_char(s, len, '0' + (v / p) % 10);
	NAME_DIGIT(1000000000)
	NAME_DIGIT(100000000)
	NAME_DIGIT(10000000)
	NAME_DIGIT(1000000)
	NAME_DIGIT(100000)
	NAME_DIGIT(10000)
	NAME_DIGIT(1000)
	NAME_DIGIT(100)
	NAME_DIGIT(10)
	NAME_DIGIT(1)
#undef NAME_DIGIT
	return len;
}

static __always_inline __u32 name_comm(struct task_struct *t, char *s)
{
	return name_str(s, 0, &t->comm, bpf_core_field_size(t->comm));
}

/* to_kthread(): task->worker_private (5.19+), set_child_tid before. */
static __always_inline struct kthread *task_kthread(struct task_struct *t)
{
	if (bpf_core_field_exists(t->worker_private))
		return BPF_CORE_READ(t, worker_private);
	return (struct kthread *)BPF_CORE_READ(t, set_child_tid);
}

/* get_kthread_comm() */
static __always_inline __u32 kthread_name(struct task_struct *t, char *s)
{
	struct kthread *k;
	char *full;

	if (bpf_core_field_exists(struct kthread, full_name)) {
		k = task_kthread(t);
		full = k ? BPF_CORE_READ(k, full_name) : NULL;
		if (full)
			return name_str(s, 0, full, TASK_NAME_LEN);
	}
	return name_comm(t, s);
}

#ifndef WALK_HAS_SNPRINTF
/*
 * wq_worker_comm() byte by byte, for kernels without bpf_snprintf()
 * (before 5.13): its id, then what it works on. Each digit is a branch and
 * each branch a verifier state: ~10,000 instructions to verify.
 */
static __always_inline __u32 wq_worker_name_bytes(struct task_struct *t, struct worker *w,
						  struct worker_pool *pool, char *s)
{
	struct workqueue_struct *rescue_wq;
	char desc0 = 0;
	__u32 len;
	int cpu;

	/* format_worker_id() came (6.10, and stable kernels) with WORKER_ID_LEN. */
	if (bpf_core_enum_value_exists(enum wq_internal_consts, WORKER_ID_LEN)) {
		rescue_wq = BPF_CORE_READ(w, rescue_wq);
		__builtin_memcpy(s, "kworker/", 8);
		len = 8;
		if (rescue_wq) {
			len = name_char(s, len, 'R');
			len = name_char(s, len, '-');
			len = name_str(s, len, &rescue_wq->name, bpf_core_field_size(rescue_wq->name));
		} else if (pool) {
			cpu = BPF_CORE_READ(pool, cpu);
			if (cpu >= 0) {
				len = name_uint(s, len, cpu);
				len = name_char(s, len, ':');
				len = name_uint(s, len, BPF_CORE_READ(w, id));
				if (BPF_CORE_READ(pool, attrs, nice) < 0)
					len = name_char(s, len, 'H');
			} else {
				len = name_char(s, len, 'u');
				len = name_uint(s, len, BPF_CORE_READ(pool, id));
				len = name_char(s, len, ':');
				len = name_uint(s, len, BPF_CORE_READ(w, id));
			}
		} else {
			len = name_char(s, len, 'd');
			len = name_char(s, len, 'y');
			len = name_char(s, len, 'i');
			len = name_char(s, len, 'n');
			len = name_char(s, len, 'g');
		}
	} else {
		len = name_comm(t, s);
	}
	if (!pool)
		return len;
	bpf_probe_read_kernel(&desc0, 1, &w->desc);
	if (desc0) {
		len = name_char(s, len, BPF_CORE_READ(w, current_work) ? '+' : '-');
		len = name_str(s, len, &w->desc, bpf_core_field_size(w->desc));
	}
	return len;
}
#endif

/* A bpf_snprintf() result as a length within the name (at most NAME_LAST). */
static __always_inline __u32 name_len_of(long n)
{
	if (n <= 1)
		return 0;
	return n - 1 > NAME_LAST ? NAME_LAST : n - 1;
}

/*
 * wq_worker_comm() with bpf_snprintf() (5.13+): the same text as
 * format_worker_id() and its "+desc"/"-desc", in two helper calls, which
 * the verifier checks as two instructions.
 */
static __always_inline __u32 wq_worker_name_fmt(struct task_struct *t, struct worker *w,
						struct worker_pool *pool, char *s)
{
	struct workqueue_struct *rescue_wq;
	char desc0 = 0;
	__u32 len;
	long n;
	int cpu;

	if (bpf_core_enum_value_exists(enum wq_internal_consts, WORKER_ID_LEN)) {
		rescue_wq = BPF_CORE_READ(w, rescue_wq);
		if (rescue_wq) {
			n = BPF_SNPRINTF(s, TASK_NAME_LEN, "kworker/R-%s", &rescue_wq->name);
		} else if (pool) {
			cpu = BPF_CORE_READ(pool, cpu);
			if (cpu >= 0 && BPF_CORE_READ(pool, attrs, nice) < 0)
				n = BPF_SNPRINTF(s, TASK_NAME_LEN, "kworker/%d:%dH", cpu,
						 BPF_CORE_READ(w, id));
			else if (cpu >= 0)
				n = BPF_SNPRINTF(s, TASK_NAME_LEN, "kworker/%d:%d", cpu,
						 BPF_CORE_READ(w, id));
			else
				n = BPF_SNPRINTF(s, TASK_NAME_LEN, "kworker/u%d:%d",
						 BPF_CORE_READ(pool, id), BPF_CORE_READ(w, id));
		} else {
			n = BPF_SNPRINTF(s, TASK_NAME_LEN, "kworker/dying");
		}
		len = name_len_of(n);
	} else {
		len = name_comm(t, s);
	}
	if (!pool)
		return len;
	bpf_probe_read_kernel(&desc0, 1, &w->desc);
	if (!desc0 || len >= NAME_LAST)
		return len;
	len &= NAME_LAST;
	/* name_buf has TASK_NAME_LEN bytes of room past the name. */
	n = BPF_SNPRINTF(s + len, TASK_NAME_LEN - len, "%c%s",
			 BPF_CORE_READ(w, current_work) ? '+' : '-', &w->desc);
	return len + name_len_of(n);
}

/* wq_worker_comm(): its id, then what it works on. */
static __always_inline __u32 wq_worker_name(struct task_struct *t, char *s)
{
	struct kthread *k = task_kthread(t);
	struct worker *w = k ? BPF_CORE_READ(k, data) : NULL;
	struct worker_pool *pool;

	if (!w)
		return name_comm(t, s);
	pool = BPF_CORE_READ(w, pool);
#ifdef WALK_HAS_SNPRINTF
	return wq_worker_name_fmt(t, w, pool, s);
#else
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_snprintf))
		return wq_worker_name_fmt(t, w, pool, s);
	return wq_worker_name_bytes(t, w, pool, s);
#endif
}

/*
 * The name of task t, NUL-padded to TASK_NAME_LEN, in the CPU's name buffer
 * (name_buf()); returns its length. Not inlined: one copy of it per
 * program, however many places name a task. (Not a global function: those
 * take no pointers before 5.12, and callers hold t as one.)
 */
static __noinline __u32 compose_task_name(struct task_struct *t)
{
	struct name_buf *b = name_buf();
	__u32 flags;

	if (!b)
		return 0;
	__builtin_memset(b->s, 0, TASK_NAME_LEN);
	flags = KREAD(t, flags);
	/* Workers first: they are kernel threads too. */
	if (flags & PF_WQ_WORKER)
		return wq_worker_name(t, b->s);
	if (flags & PF_KTHREAD)
		return kthread_name(t, b->s);
	return name_comm(t, b->s);
}

/* Is t's name (as above) exactly `want`, a NUL-terminated .rodata name? */
/* Is t's comm exactly `want`? The name of anyone but a kernel thread. */
static __always_inline bool comm_is(struct task_struct *t, const volatile char *want)
{
	char comm[COMM_LEN];

	BPF_CORE_READ_STR_INTO(&comm, t, comm);
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != want[i])
			return false;
		if (comm[i] == '\0')
			return true;
	}
	return want[COMM_LEN] == '\0';
}

static __always_inline bool task_name_is(struct task_struct *t, const volatile char *want)
{
	struct name_buf *b;

	/* Anyone but a kernel thread is named by comm: no need to compose. */
	if (!(KREAD(t, flags) & (PF_WQ_WORKER | PF_KTHREAD)))
		return comm_is(t, want);
	compose_task_name(t);
	b = name_buf();
	if (!b)
		return false;
	for (int i = 0; i < TASK_NAME_LEN; i++) {
		if (b->s[i] != want[i])
			return false;
		if (b->s[i] == '\0')
			return true;
	}
	return true;
}

/*
 * Is t's name one of names[0..n)? task_name_is() for several names: the
 * name is read (or, for a kernel thread, composed) once.
 */
#define TASK_NAMES_MAX 8
static __always_inline bool task_name_in(struct task_struct *t,
					 const volatile char (*names)[TASK_NAME_LEN], __u32 n)
{
	struct name_buf *b = NULL;
	char comm[COMM_LEN];
	bool kthread = KREAD(t, flags) & (PF_WQ_WORKER | PF_KTHREAD);

	if (kthread) {
		compose_task_name(t);
		b = name_buf();
		if (!b)
			return false;
	} else {
		BPF_CORE_READ_STR_INTO(&comm, t, comm);
	}
	for (__u32 k = 0; k < TASK_NAMES_MAX; k++) {
		bool same = true;

		if (k >= n)
			break;
		if (b) {
			for (int i = 0; i < TASK_NAME_LEN; i++) {
				if (b->s[i] != names[k][i]) {
					same = false;
					break;
				}
				if (b->s[i] == '\0')
					break;
			}
		} else {
			same = names[k][COMM_LEN] == '\0';
			for (int i = 0; i < COMM_LEN; i++) {
				if (comm[i] != names[k][i]) {
					same = false;
					break;
				}
				if (comm[i] == '\0')
					break;
			}
		}
		if (same)
			return true;
	}
	return false;
}

/* The credentials /proc/PID/status shows: the task's objective ones. */
#define CRED_SPAN                                                                \
	MAX2(MAX2(MAX2(FIELD_END(struct cred, uid), FIELD_END(struct cred, gid)),  \
		  MAX2(FIELD_END(struct cred, suid), FIELD_END(struct cred, sgid))), \
	     MAX2(MAX2(FIELD_END(struct cred, euid), FIELD_END(struct cred, egid)), \
		  MAX2(FIELD_END(struct cred, fsuid), FIELD_END(struct cred, fsgid))))

static __always_inline void fill_creds(struct task_struct *t, struct task_rec *r)
{
	/* __task_cred(), which /proc/PID/status reads, is real_cred. */
	struct cred *cred = (struct cred *)KREAD(t, real_cred);
	struct struct_copy *c = copy_buf();

	/* One probe read of the span costs less than eight; eight loads, less. */
	if (!DIRECT_READS && c && CRED_SPAN <= COPY_BYTES &&
	    !bpf_probe_read_kernel(c->data, CRED_SPAN, cred)) {
		r->ruid = COPIED(c->data, struct cred, uid.val);
		r->euid = COPIED(c->data, struct cred, euid.val);
		r->suid = COPIED(c->data, struct cred, suid.val);
		r->fsuid = COPIED(c->data, struct cred, fsuid.val);
		r->rgid = COPIED(c->data, struct cred, gid.val);
		r->egid = COPIED(c->data, struct cred, egid.val);
		r->sgid = COPIED(c->data, struct cred, sgid.val);
		r->fsgid = COPIED(c->data, struct cred, fsgid.val);
		return;
	}
	r->ruid = KREAD(cred, uid.val);
	r->euid = KREAD(cred, euid.val);
	r->suid = KREAD(cred, suid.val);
	r->fsuid = KREAD(cred, fsuid.val);
	r->rgid = KREAD(cred, gid.val);
	r->egid = KREAD(cred, egid.val);
	r->sgid = KREAD(cred, sgid.val);
	r->fsgid = KREAD(cred, fsgid.val);
}

/*
 * CPU time, as cputime_adjust() (kernel/sched/cputime.c) needs it: the
 * tick-sampled utime and stime, the exact runtime they are scaled to, and
 * prev_cputime, the split the kernel last reported, which it never goes
 * below. User space does the arithmetic (kinds/task.rs). Kernels built with
 * VIRT_CPU_ACCOUNTING_NATIVE have no prev_cputime and report utime and
 * stime as they are.
 */
static __always_inline void fill_cputime(struct task_struct *t, struct signal_struct *sig,
					 struct task_rec *r)
{
	r->utime_ns = KREAD(t, utime);
	r->stime_ns = KREAD(t, stime);
	r->runtime_ns = KREAD(t, se.sum_exec_runtime);
	r->dead_utime_ns = KREAD(sig, utime);
	r->dead_stime_ns = KREAD(sig, stime);
	r->dead_runtime_ns = KREAD(sig, sum_sched_runtime);
	if (bpf_core_field_exists(t->prev_cputime)) {
		r->present |= TASK_PREV_CPUTIME;
		r->prev_utime_ns = KREAD(t, prev_cputime.utime);
		r->prev_stime_ns = KREAD(t, prev_cputime.stime);
		r->group_prev_utime_ns = KREAD(sig, prev_cputime.utime);
		r->group_prev_stime_ns = KREAD(sig, prev_cputime.stime);
	} else {
		r->prev_utime_ns = 0;
		r->prev_stime_ns = 0;
		r->group_prev_utime_ns = 0;
		r->group_prev_stime_ns = 0;
	}
}

/* The terminal's foreground group was tty->pgrp before 5.17 (now ctrl.pgrp). */
struct tty_struct___pre517 {
	struct pid *pgrp;
} __attribute__((preserve_access_index));

static __always_inline struct pid *tty_pgrp(struct tty_struct *tty)
{
	if (bpf_core_field_exists(tty->ctrl))
		return BPF_CORE_READ(tty, ctrl.pgrp);
	return BPF_CORE_READ((struct tty_struct___pre517 *)tty, pgrp);
}

/* A struct pid's number in the initial pid namespace (0 for none). */
static __always_inline __u32 pid_nr_init(struct pid *pid)
{
	return pid ? BPF_CORE_READ(pid, numbers[0].nr) : 0;
}

/*
 * What ps's STAT shows besides the state: the thread's nice, its process's
 * session and process group, its terminal's foreground group, its locked
 * pages.
 */
static __always_inline void fill_stat_parts(struct task_struct *t, struct signal_struct *sig,
					    struct task_rec *r)
{
	struct tty_struct *tty;
	struct mm_struct *mm;

	r->nice = (__s32)KREAD(t, static_prio) - 120;
	r->sid = pid_nr_init(BPF_CORE_READ(sig, pids[PIDTYPE_SID]));
	r->pgid = pid_nr_init(BPF_CORE_READ(sig, pids[PIDTYPE_PGID]));
	tty = KREAD(sig, tty);
	r->tpgid = tty ? pid_nr_init(tty_pgrp(tty)) : 0;
	mm = KREAD(t, mm);
	r->locked_pages = mm ? KREAD(mm, locked_vm) : 0;
}

/* `capture` and `fds_upto`: where the record is filled (enum capture_flags). */
static __always_inline void fill_task(struct task_struct *t, struct task_rec *r, __u32 capture,
				      __u32 fds_upto)
{
	struct signal_struct *sig = KREAD(t, signal);
	struct name_buf *name;

	set_hdr(&r->hdr, REC_TASK, sizeof(*r));
	r->pid = KREAD(t, pid);
	r->tgid = KREAD(t, tgid);
	r->ppid = KREAD(t, real_parent, tgid);
	r->state = task_state_raw(t);
	r->exit_state = KREAD(t, exit_state);
	r->flags = KREAD(t, flags);
	r->nr_threads = KREAD(sig, nr_threads);
	r->present = 0;
	fill_creds(t, r);
	fill_cputime(t, sig, r);
	r->start_ns = KREAD(t, start_time);
	if (bpf_core_field_exists(t->start_boottime))
		r->start_boottime_ns = KREAD(t, start_boottime);
	else
		r->start_boottime_ns =
			BPF_CORE_READ((struct task_struct___pre55 *)t, real_start_time);
	r->self_exec_id = KREAD(t, self_exec_id);
	fill_stat_parts(t, sig, r);
	r->cpu = task_cpu_of(t);
	/* On a CPU right now: its kernel stack cannot be read, only sampled
	 * (kinds/oncpu.bpf.h). */
	r->on_cpu = task_on_cpu(t);
	compose_task_name(t);
	name = name_buf();
	if (name)
		__builtin_memcpy(r->comm, name->s, TASK_NAME_LEN);
	else
		BPF_CORE_READ_STR_INTO(&r->comm, t, comm);
	r->comm[NAME_LAST] = '\0';
	r->capture = capture;
	r->fds_upto = fds_upto;
	r->taken_ns = bpf_ktime_get_ns();
}

#endif /* ITERSNAP_KIND_TASK_BPF_H */
