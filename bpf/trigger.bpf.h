/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trigger programs shared by both backends. Each decides whether its event
 * is one the user asked for, passes the in-kernel guards (--count, --min-gap,
 * single flight), fills a begin_rec and captures, inside the event and
 * within --event-budget, what the event is about: the task that caused it,
 * a signal's target, and (capture_more(), which the including object
 * defines) whatever else it can reach in the budget:
 *   - opencoded.bpf.c walks the tasks a COMM/--pid filter selects with the
 *     open-coded task iterator (6.7+);
 *   - seqiter.bpf.c captures only the event's own tasks (5.8+).
 * User space completes the snapshot right after, preemptibly, with the seq
 * iterators (complete.bpf.h), and clears `busy` when it is done.
 */
#ifndef TRIGGER_BPF_H
#define TRIGGER_BPF_H

#include "walk.bpf.h"
#include <bpf/bpf_tracing.h>

/* Trigger filters (cfg_trigger_flags). */
#define TRIG_CALLER_PID (1 << 0)
#define TRIG_CALLER_COMM (1 << 1)
#define TRIG_TARGET_PID (1 << 2)
#define TRIG_TARGET_COMM (1 << 3)

const volatile __u32 cfg_trigger_flags = 0;
const volatile __s32 cfg_trigger_arg = 0;	/* signal or syscall number */
const volatile __u32 cfg_caller_pid = 0;
const volatile char cfg_caller_comm[TASK_NAME_LEN] = {};
const volatile __u32 cfg_target_pid = 0;
const volatile char cfg_target_comm[TASK_NAME_LEN] = {};
const volatile __u64 cfg_min_gap_ns = 0;
const volatile __u64 cfg_max_snapshots = 0;	/* 0: no limit */
const volatile __u64 cfg_ringbuf_bytes = 0;	/* size of the events map */
/* --event-budget: the longest a trigger program may capture inside the event. */
const volatile __u64 cfg_event_budget_ns = 1000000;

/* Guard state; user space reads the counters and clears busy. */
__u64 busy = 0;
__u32 seq_next = 0;
__u64 last_ns = 0;
__u64 taken = 0;
__u64 skipped_gap = 0;
__u64 skipped_busy = 0;
struct snap_stats stats[STATS_SLOTS] = {};

struct begin_rec _begin_rec_btf = {};
struct end_rec _end_rec_btf = {};

/* Sized by user space before load (--ringbuf-size, or from the task count). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* --caller-pid / --caller-comm: the task running when the event fires. */
static __always_inline bool caller_selected(void)
{
	if ((cfg_trigger_flags & TRIG_CALLER_PID) &&
	    (bpf_get_current_pid_tgid() >> 32) != cfg_caller_pid)
		return false;
	/* Its name as /proc shows it (a kernel thread's in full), like pgrep -x. */
	if ((cfg_trigger_flags & TRIG_CALLER_COMM) &&
	    !task_name_is((struct task_struct *)bpf_get_current_task(), cfg_caller_comm))
		return false;
	return true;
}

/*
 * The in-kernel guards. --count: stop quietly once enough snapshots were
 * taken. Single flight: a walk never starts while another runs, nor while
 * user space has yet to read half a ring buffer of earlier records.
 * --min-gap: at most one snapshot per gap. Skips are counted, never silent.
 * Kernels with BPF atomics (5.12+, so every open-coded one) get exact
 * compare-and-swap. The seq object, which loads down to 5.8, gets a plain
 * check and set: two CPUs firing within the same few instructions could
 * both pass it (then they share the walk's counters; rare, and only there).
 */
static __always_inline bool gate_open(__u64 now)
{
	if (cfg_max_snapshots && taken >= cfg_max_snapshots)
		return false;
#ifdef HAVE_BPF_ATOMICS
	if (__sync_val_compare_and_swap(&busy, 0, 1) != 0) {
		__sync_fetch_and_add(&skipped_busy, 1);
		return false;
	}
#else
	if (busy) {
		__sync_fetch_and_add(&skipped_busy, 1);
		return false;
	}
	busy = 1;
#endif
	if (last_ns && cfg_min_gap_ns && now - last_ns < cfg_min_gap_ns) {
		busy = 0;
		__sync_fetch_and_add(&skipped_gap, 1);
		return false;
	}
	/* The reader is behind: a walk now would only drop records. Wait
	 * until it has drained the previous snapshot (counted as busy). */
	if (cfg_ringbuf_bytes &&
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > cfg_ringbuf_bytes / 2) {
		busy = 0;
		__sync_fetch_and_add(&skipped_busy, 1);
		return false;
	}
	last_ns = now;
	taken++;
	return true;
}

/* Counters of the in-event part in progress (single flight: one at a time). */
struct walk_state {
	__u64 emitted;
	__u64 dropped;
	__u32 tasks;
	__u32 files;
	__u32 stacks;
	__u32 truncated_fds;
	__u32 budget_hit;
	__u32 ncaptured;
	__u32 captured[4];	/* tids captured already: the event's own tasks */
};
struct walk_state ws = {};

/* A record to the ring; `max` is its buffer's size (emit() passes it). */
static __always_inline void emit_rec(void *rec, __u32 size, __u32 max, __u64 flags)
{
	/* Keep the bound check on the very register passed to the helper. */
	barrier_var(size);
	if (size > max)
		return;
	ws.emitted++;
	if (bpf_ringbuf_output(&events, rec, size, flags))
		ws.dropped++;
}

#define emit(rec, size, flags) emit_rec(rec, size, sizeof(*(rec)), flags)

/* Has the in-event part used its budget? Then the rest comes after. */
static __always_inline bool over_budget(__u64 deadline)
{
	if (bpf_ktime_get_ns() < deadline)
		return false;
	ws.budget_hit = 1;
	return true;
}

/*
 * Where capture_fds() puts each file record: the ring buffer (inside an
 * event), or the CPU's stage (an iterator program, which writes the stage
 * to its seq_file at once: a global function cannot take the seq_file).
 */
#define FDS_TO_RING 0
#define FDS_TO_STAGE 1

#ifdef WALK_USE_BPF_FOR
/* Words of the open-fds bitmap scanned per process: 262,144 fds. */
#define FD_WORDS_MAX 4096

/* Index of the lowest set bit: BPF has no count-trailing-zeros instruction. */
const volatile __u8 debruijn64[64] = {
	0,  1,  2,  53, 3,  7,  54, 27, 4,  38, 41, 8,  34, 55, 48, 28,
	62, 5,  39, 46, 44, 42, 22, 9,  24, 35, 59, 56, 49, 18, 29, 11,
	63, 52, 6,  26, 37, 40, 33, 47, 61, 45, 43, 21, 23, 58, 17, 10,
	51, 25, 36, 32, 60, 20, 57, 16, 50, 31, 19, 15, 30, 14, 13, 12,
};
#define DEBRUIJN_MULT 0x022fdd63cc95386dULL

/* The fd array's entries for one bitmap word, read at once (capture_fds). */
struct fd_slots {
	struct file *f[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fd_slots);
} fd_slots_map SEC(".maps");

/*
 * What one iter/task object may write besides its task and stack records:
 * the kernel's seq_file buffer holds 32 KiB, and an object that does not
 * fit in it fails the whole read.
 */
#define STAGE_BYTES (24 << 10)

struct fd_stage {
	__u32 used;
	__u32 _pad;
	char data[STAGE_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fd_stage);
} fd_stage_map SEC(".maps");

static __always_inline struct fd_stage *fd_stage(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fd_stage_map, &zero);
}

/*
 * Most records are short (a file's header and a path of a few dozen
 * bytes): one of up to this many bytes is copied with plain loads and
 * stores, a constant count the verifier checks once; a longer one through
 * the helper, whose per-call cost was most of a stage's. Both records
 * staged are at least this long, so the copy never reads past them.
 */
#define STAGE_COPY_SMALL 192
_Static_assert(sizeof(struct sock_rec) >= STAGE_COPY_SMALL, "sock_rec shorter than the small copy");
_Static_assert(sizeof(struct file_rec) >= STAGE_COPY_SMALL, "file_rec shorter than the small copy");

/* Appends a record to the stage; false when it is full. */
static __always_inline bool stage_append(struct fd_stage *st, void *rec, __u32 size)
{
	__u32 used = st->used;

	__u64 n = size;

	if (used > STAGE_BYTES - sizeof(struct file_rec))
		return false;
	/* Keep the bound check on the very register passed to the helper,
	 * widened first (a 32-bit value's check is made on a copy). */
	barrier_var(n);
	if (n > sizeof(struct file_rec))
		return false;
	if (n <= STAGE_COPY_SMALL) {
		__u64 *to = (__u64 *)&st->data[used];
		const __u64 *from = rec;

#pragma unroll
		for (int i = 0; i < STAGE_COPY_SMALL / 8; i++)
			to[i] = from[i];
	} else if (bpf_probe_read_kernel(&st->data[used], n, rec)) {
		return false;
	}
	st->used = used + n;
	return true;
}

/*
 * The open files of one process, in fd order. Returns the first fd not
 * walked (FDS_ALL: none left): to the ring, until the deadline; to the
 * stage, until it is full or a path needs the kernel's d_path() (deeper
 * than the walk's bound), or past the bitmap bound: the rest is left to
 * iter/task_file. A global function, like fill_file(): the verifier checks
 * its nested loops once, on their own. bpf_for (6.4+) lets the loops run to
 * the table's size.
 */
__noinline __u32 capture_fds(__u64 files_addr, __u32 tgid, __u64 deadline, __u32 sink)
{
	struct files_struct *files = (struct files_struct *)files_addr;
	union scratch *buf = scratch_buf();
	struct fd_stage *st = fd_stage();
	struct sock_rec *sr = sock_buf();
	__u32 zero = 0;
	struct fd_slots *slots = bpf_map_lookup_elem(&fd_slots_map, &zero);
	struct fdtable *fdt;
	unsigned long *open_fds, *close_on_exec;
	struct file **fd_array;
	__u32 words;
	int w;

	if (!files || !buf || !slots || !st || !sr)
		return FDS_ALL;
	fdt = BPF_CORE_READ(files, fdt);
	open_fds = BPF_CORE_READ(fdt, open_fds);
	close_on_exec = BPF_CORE_READ(fdt, close_on_exec);
	fd_array = BPF_CORE_READ(fdt, fd);
	words = (BPF_CORE_READ(fdt, max_fds) + 63) / 64;
	/* Past the bound, the rest comes from iter/task_file (see below). */
	if (words > FD_WORDS_MAX)
		words = FD_WORDS_MAX;

	bpf_for(w, 0, words) {
		unsigned long word = 0, cloexec = 0;
		__u32 span;
		int i;

		bpf_probe_read_kernel(&word, sizeof(word), open_fds + w);
		if (!word)
			continue;
		bpf_probe_read_kernel(&cloexec, sizeof(cloexec), close_on_exec + w);
		/*
		 * The word's file pointers in one read: the first 16 when no
		 * higher fd is open (the usual process), else all 64 (fd tables
		 * grow in multiples of 64 entries: never past the array).
		 */
		span = (word >> 16 ? 64 : 16) * sizeof(struct file *);
		if (bpf_probe_read_kernel(slots, span, fd_array + w * 64))
			continue;
		bpf_for(i, 0, 64) {
			struct file *f = NULL;
			__u32 size, sock_size, bit;
			__u64 low;
			int fd;

			if (!word)
				break;
			low = word & -word;
			word &= word - 1;
			bit = debruijn64[(low * DEBRUIJN_MULT) >> 58] & 63;
			fd = w * 64 + bit;
			if (sink == FDS_TO_RING && over_budget(deadline))
				return fd;
			f = slots->f[bit];
			if (!f)
				continue;
			size = fill_file((__u64)f, tgid, fd, cloexec & low);
			if (!size)
				continue;
			sock_size = fill_socket((__u64)f, tgid, fd, buf->file.ino, buf->file.magic);
			if (!fd_kept(sock_size))
				continue;
			if (sink == FDS_TO_STAGE) {
				__u32 mark = st->used;

				/* A file and its socket go together, or both after. */
				if ((buf->file.path_flags & (PATH_TRUNCATED | PATH_FAULT)) ||
				    !stage_append(st, &buf->file, size))
					return fd;
				if (sock_size && !stage_append(st, sr, sock_size)) {
					st->used = mark;
					return fd;
				}
				continue;
			}
			emit(&buf->file, size, BPF_RB_NO_WAKEUP);
			ws.files++;
			if (sock_size)
				emit(sr, sock_size, BPF_RB_NO_WAKEUP);
		}
	}
	/* A table larger than the bound: its higher fds are the completion's. */
	if (words == FD_WORDS_MAX &&
	    (BPF_CORE_READ(fdt, max_fds) + 63) / 64 > FD_WORDS_MAX)
		return FD_WORDS_MAX * 64;
	return FDS_ALL;
}
#else
/*
 * Kernels without bpf_for (before 6.4) verify a loop by running it: the
 * in-event walk of one fd table stops at this many fds, and the rest of the
 * table comes after the event.
 */
#define BOUNDED_FDS 256

/* Only ever to the ring: the seq object's iterators leave files to iter/task_file. */
__noinline __u32 capture_fds(__u64 files_addr, __u32 tgid, __u64 deadline, __u32 sink)
{
	struct files_struct *files = (struct files_struct *)files_addr;
	union scratch *buf = scratch_buf();
	struct sock_rec *sr = sock_buf();
	unsigned long *open_fds, *close_on_exec;
	unsigned long word = 0, cloexec = 0;
	struct file **fd_array;
	struct fdtable *fdt;
	__u32 max_fds;

	if (!files || !buf || !sr || sink != FDS_TO_RING)
		return FDS_ALL;
	fdt = BPF_CORE_READ(files, fdt);
	open_fds = BPF_CORE_READ(fdt, open_fds);
	close_on_exec = BPF_CORE_READ(fdt, close_on_exec);
	fd_array = BPF_CORE_READ(fdt, fd);
	max_fds = BPF_CORE_READ(fdt, max_fds);

	for (int fd = 0; fd < BOUNDED_FDS; fd++) {
		struct file *f = NULL;
		__u32 size, sock_size;

		if (fd >= max_fds)
			return FDS_ALL;
		if ((fd & 63) == 0) {
			word = 0;
			cloexec = 0;
			bpf_probe_read_kernel(&word, sizeof(word), open_fds + fd / 64);
			bpf_probe_read_kernel(&cloexec, sizeof(cloexec), close_on_exec + fd / 64);
		}
		if (!(word & (1UL << (fd & 63))))
			continue;
		if (over_budget(deadline))
			return fd;
		if (bpf_probe_read_kernel(&f, sizeof(f), fd_array + fd) || !f)
			continue;
		size = fill_file((__u64)f, tgid, fd, cloexec & (1UL << (fd & 63)));
		if (!size)
			continue;
		sock_size = fill_socket((__u64)f, tgid, fd, buf->file.ino, buf->file.magic);
		if (!fd_kept(sock_size))
			continue;
		emit(&buf->file, size, BPF_RB_NO_WAKEUP);
		ws.files++;
		if (sock_size)
			emit(sr, sock_size, BPF_RB_NO_WAKEUP);
	}
	return max_fds <= BOUNDED_FDS ? FDS_ALL : BOUNDED_FDS;
}
#endif

static __always_inline bool captured_already(__u32 tid)
{
	for (int i = 0; i < 4; i++)
		if (i < ws.ncaptured && ws.captured[i] == tid)
			return true;
	return false;
}

/*
 * Task pointers that bpf_get_task_stack() takes: BTF pointers, not numbers.
 * Kernels with bpf_get_current_task_btf() (5.11+) give them for the event's
 * own tasks; before, their stacks come after the event, from the iterators.
 */
#define HAVE_TASK_BTF bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)

/*
 * A process's identity inside the event: its process record, then its
 * working directory, root and executable as file records.
 */
static __always_inline void capture_identity(struct task_struct *t, __u32 tgid)
{
	int slots[3] = { FD_CWD, FD_RTD, FD_TXT };
	union scratch *buf;
	__u32 size;

	size = fill_proc(leader_addr(t), tgid);
	buf = scratch_buf();
	if (!buf)
		return;
	if (size)
		emit(&buf->proc, size, BPF_RB_NO_WAKEUP);
	for (int i = 0; i < 3; i++) {
		size = fill_slot(leader_addr(t), tgid, slots[i]);
		if (size)
			emit(&buf->file, size, BPF_RB_NO_WAKEUP);
	}
}

/*
 * One task inside the event: for a leader its fd table first (so that its
 * record can say how far the walk got), then its stack and its record.
 */
static __always_inline void capture_task(struct task_struct *t, __u64 deadline)
{
	union scratch *buf = scratch_buf();
	__u32 pid = BPF_CORE_READ(t, pid);
	__u32 tgid = BPF_CORE_READ(t, tgid);
	__u32 capture = CAPTURE_IN_EVENT, fds_upto = 0, size;

	if (!buf || over_budget(deadline))
		return;
	if (pid == tgid && (cfg_flags & OPT_FILES)) {
		fds_upto = capture_fds((__u64)BPF_CORE_READ(t, files), tgid, deadline, FDS_TO_RING);
		capture |= CAPTURE_FILES;
	}
	if (HAVE_TASK_BTF && stack_selected(t)) {
		size = fill_stack(t, &buf->stack);
		if (size && size <= sizeof(buf->stack)) {
			emit(&buf->stack, size, BPF_RB_NO_WAKEUP);
			ws.stacks++;
		}
	}
	/* The event's own task's user stack, unwound in its own context. */
	if (HAVE_TASK_BTF && want_ustack(t) && pid == (__u32)bpf_get_current_pid_tgid()) {
		size = fill_ustack_current(t, &buf->ustack);
		if (size && size <= sizeof(buf->ustack))
			emit(&buf->ustack, size, BPF_RB_NO_WAKEUP);
	}
	if (HAVE_TASK_BTF && activity_selected(t)) {
		size = fill_activity(t, &buf->activity);
		if (size)
			emit(&buf->activity, sizeof(buf->activity), BPF_RB_NO_WAKEUP);
	}
	fill_task(t, &buf->task, capture, fds_upto);
	emit(&buf->task, sizeof(buf->task), BPF_RB_NO_WAKEUP);
	ws.tasks++;
	if (pid == tgid)
		capture_identity(t, tgid);
	if (ws.ncaptured < 4)
		ws.captured[ws.ncaptured & 3] = pid;
	ws.ncaptured++;
}

static __always_inline struct task_struct *event_current(void)
{
	if (HAVE_TASK_BTF)
		return bpf_get_current_task_btf();
	return (struct task_struct *)bpf_get_current_task();
}

/* The event's own task t, if the snapshot selects it: its leader, then t. */
static __always_inline void capture_process(struct task_struct *t, __u64 deadline)
{
	struct task_struct *leader;
	__u32 pid;

	if (!t)
		return;
	pid = BPF_CORE_READ(t, pid);
	/* The idle task (an event in interrupt context) is not a process. */
	if (pid == 0 || !task_selected(t))
		return;
	/* A BTF pointer's field is one too (the stack helper takes it). */
	if (HAVE_TASK_BTF)
		leader = t->group_leader;
	else
		leader = BPF_CORE_READ(t, group_leader);
	if (leader && !captured_already(BPF_CORE_READ(leader, pid)))
		capture_task(leader, deadline);
	if (leader != t && !captured_already(pid))
		capture_task(t, deadline);
}

/* Defined by the object that includes this header: more tasks in the
 * event, within the budget; returns true when every selected task was
 * captured. `trigger` (enum trigger_kind) is a compile-time constant, which
 * says what kind of program this is (only tp_btf ones, TRIGGER_SIGNAL and
 * TRIGGER_SYSCALL, may call the kernel's generic kfuncs). */
static __always_inline bool capture_more(__u64 deadline, __u32 trigger);

/* Keeps the compiler from reordering stores user space reads in order. */
#define store_barrier() asm volatile("" ::: "memory")

/*
 * The stats slot of a finished in-event part: its counts first, `done` last
 * (x86 keeps stores in order; the barrier keeps the compiler from moving
 * them), so that user space never sees `done` before the counts.
 */
static __always_inline void close_slot(struct snap_stats *st, __u64 emitted, __u64 dropped,
				       __u64 walk_ns, __u32 flags)
{
	st->emitted = emitted;
	st->dropped = dropped;
	st->walk_ns = walk_ns;
	st->flags = flags;
	store_barrier();
	st->done = 1;
}

/*
 * The in-event part: begin_rec, the records of what the event is about,
 * end_rec, then the stats slot. `busy` stays set whatever happens: user
 * space clears it once it has completed the snapshot, so that nothing else
 * uses the per-CPU buffers or snapshot_seq meanwhile. `b` is the CPU's
 * scratch buffer, overwritten by the records: what it says is read first.
 */
/*
 * What a trigger program's context gives for the event record: the
 * arguments (EVENT_ARGS in flags), a signal's siginfo, a tracefs record.
 */
struct event_in {
	__u64 args[6];
	__u32 flags;
	struct kernel_siginfo *info;
	void *record;
};

/*
 * The event's own details, right after the begin_rec: its record
 * (kinds/event.bpf.h), then the command line of the task it runs in, as
 * it was at the event.
 */
static __always_inline void emit_event_details(union scratch *buf, const struct event_in *in,
					       __u32 trigger)
{
	struct event_rec *e = &buf->event;
	__u32 size;

	event_begin(e);
	if (in->record) {
		event_record(e, in->record);
	} else if (in->flags & EVENT_ARGS) {
		for (int i = 0; i < 6; i++)
			e->args[i] = in->args[i];
		e->flags |= EVENT_ARGS;
	}
	if (e->flags & EVENT_ARGS)
		event_pointees(e);
	if (trigger == TRIGGER_SIGNAL)
		event_siginfo(e, in->info);
	if (cfg_event_exit)
		event_exit(e);
	emit(e, event_end(e), BPF_RB_NO_WAKEUP);
	size = fill_cmdline_current(&buf->cmdline);
	if (size)
		emit(&buf->cmdline, size, BPF_RB_NO_WAKEUP);
}

static __always_inline void on_trigger(struct begin_rec *b, struct task_struct *target,
				       __u32 trigger, const struct event_in *in)
{
	union scratch *buf = (union scratch *)b;
	__u32 seq = b->hdr.seq;
	__u64 start = b->ktime_ns;
	/* A constant: a tick's program holds no capture code at all. */
	bool timer = trigger == TRIGGER_TIMER;
	struct snap_stats *st = &stats[seq & (STATS_SLOTS - 1)];
	__u64 deadline = start + cfg_event_budget_ns;
	bool all_tasks = false;
	__u32 flags = 0;
	__u64 end;

	__builtin_memset(&ws, 0, sizeof(ws));
	/* Not done before it is this snapshot's: a slot of 16 snapshots ago
	 * must never look finished under the new seq. */
	st->done = 0;
	store_barrier();
	st->seq = seq;
	emit(b, sizeof(*b), BPF_RB_NO_WAKEUP);
	if (ws.dropped) {
		/* User space learns of this snapshot from the slot alone. */
		close_slot(st, 1, 1, 0, 0);
		return;
	}
	if (!timer) {
		emit_event_details(buf, in, trigger);
		capture_process(event_current(), deadline);
		capture_process(target, deadline);
		all_tasks = capture_more(deadline, trigger);
	}
	end = bpf_ktime_get_ns();
	if (ws.budget_hit)
		flags |= END_BUDGET_HIT;
	/* Records lost on the way are completed after the event. */
	if (all_tasks && !ws.budget_hit && !ws.dropped)
		flags |= END_ALL_TASKS;
	set_hdr(&buf->end.hdr, REC_END, sizeof(buf->end));
	buf->end.tasks = ws.tasks;
	buf->end.files = ws.files;
	buf->end.stacks = ws.stacks;
	buf->end.truncated_fds = ws.truncated_fds;
	buf->end.ktime_ns = end;
	buf->end.emitted = ws.emitted;
	buf->end.dropped = ws.dropped;
	buf->end.flags = flags;
	buf->end._pad = 0;
	emit(&buf->end, sizeof(buf->end), BPF_RB_FORCE_WAKEUP);
	close_slot(st, ws.emitted, ws.dropped, end - start, flags);
}

static __always_inline int fire(__u32 trigger, __s32 arg, struct task_struct *target,
				const struct event_in *in)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	union scratch *buf;
	struct begin_rec *b;

	if (!gate_open(now))
		return 0;
	buf = scratch_buf();
	if (!buf) {
		busy = 0;
		return 0;
	}
	b = &buf->begin;
	seq_next++;
	snapshot_seq = seq_next;
	set_hdr(&b->hdr, REC_BEGIN, sizeof(*b));
	b->trigger = trigger;
	b->arg = arg;
	b->pid = id >> 32;
	b->tid = (__u32)id;
	b->target_pid = target ? BPF_CORE_READ(target, tgid) : 0;
	b->target_tid = target ? BPF_CORE_READ(target, pid) : 0;
	b->cpu = bpf_get_smp_processor_id();
	b->_pad = 0;
	b->ktime_ns = now;
	b->skipped_gap = skipped_gap;
	b->skipped_busy = skipped_busy;
	bpf_get_current_comm(b->comm, sizeof(b->comm));
	__builtin_memset(b->target_comm, 0, sizeof(b->target_comm));
	if (target)
		BPF_CORE_READ_STR_INTO(&b->target_comm, target, comm);
	on_trigger(b, target, trigger, in);
	return 0;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	if (sig != cfg_trigger_arg)
		return 0;
	if ((cfg_trigger_flags & TRIG_TARGET_PID) && BPF_CORE_READ(task, tgid) != cfg_target_pid)
		return 0;
	if ((cfg_trigger_flags & TRIG_TARGET_COMM) &&
	    !task_name_is(BPF_CORE_READ(task, group_leader), cfg_target_comm))
		return 0;
	if (!caller_selected())
		return 0;
	struct event_in in = { .info = info };

	return fire(TRIGGER_SIGNAL, sig, task, &in);
}

/* A syscall's arguments from its saved registers. */
static __always_inline void syscall_args(struct event_in *in, struct pt_regs *regs)
{
	syscall_regs_args(regs, in->args);
	in->flags = EVENT_ARGS;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_syscall, struct pt_regs *regs, long id)
{
	if (id != cfg_trigger_arg || !caller_selected())
		return 0;
	struct event_in in = {};

	syscall_args(&in, regs);
	return fire(TRIGGER_SYSCALL, id, NULL, &in);
}

/*
 * --on-syscall open, openat, openat2, creat or open_by_handle_at with
 * --file or --mount: the syscall's return, when the fd it opened is one of
 * their files. The snapshot shows the file open; other opens never fire,
 * so a busy walk can never make one of the target's be skipped. (x86-64:
 * the syscall's number is orig_ax.)
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_syscall_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file *f = NULL;
	struct inode *inode;

	if ((long)regs->orig_ax != cfg_trigger_arg || ret < 0 || !caller_selected())
		return 0;
	fdt = BPF_CORE_READ(t, files, fdt);
	if (ret >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), BPF_CORE_READ(fdt, fd) + ret) || !f)
		return 0;
	inode = BPF_CORE_READ(f, f_inode);
	if (!is_hold_target(BPF_CORE_READ(inode, i_sb, s_dev), BPF_CORE_READ(inode, i_ino)))
		return 0;
	struct event_in in = {};

	syscall_args(&in, regs);
	return fire(TRIGGER_SYSCALL, regs->orig_ax, NULL, &in);
}

/*
 * A tracefs (perf) tracepoint that is not a raw one, as the syscalls:
 * category's events (ftrace's syscall events, which have no
 * btf_trace_*): attached by category and name at run time.
 */
SEC("tracepoint")
int on_tracefs(void *ctx)
{
	if (!caller_selected())
		return 0;
	struct event_in in = { .record = ctx };

	return fire(TRIGGER_TRACEPOINT, 0, NULL, &in);
}

/* Attached by name at run time: one program serves every tracepoint. */
SEC("raw_tp")
int on_tracepoint(void *ctx)
{
	if (!caller_selected())
		return 0;
	/* Its arguments (TP_PROTO's), as many as it has: reading past them
	 * would fail the attach. */
	struct event_in in = {};
	__u64 *args = ctx;

	if (cfg_event_nargs > 0)
		in.args[0] = args[0];
	if (cfg_event_nargs > 1)
		in.args[1] = args[1];
	if (cfg_event_nargs > 2)
		in.args[2] = args[2];
	if (cfg_event_nargs > 3)
		in.args[3] = args[3];
	if (cfg_event_nargs > 4)
		in.args[4] = args[4];
	if (cfg_event_nargs > 5)
		in.args[5] = args[5];
	in.flags = cfg_event_nargs ? EVENT_ARGS : 0;
	return fire(TRIGGER_TRACEPOINT, 0, NULL, &in);
}

/* Attached at run time to PATH:SYMBOL (and to --caller-pid, if given). */
SEC("uprobe")
int on_uprobe(struct pt_regs *ctx)
{
	if (!caller_selected())
		return 0;
	/* The probed function's first six arguments, as bpftrace's arg0-5. */
	struct event_in in = {
		.args = { PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx),
			  PT_REGS_PARM4(ctx), PT_REGS_PARM5(ctx), PT_REGS_PARM6(ctx) },
		.flags = EVENT_ARGS,
	};

	return fire(TRIGGER_UPROBE, 0, NULL, &in);
}

/* Periodic sampling: a software clock perf event on one CPU (--interval). */
SEC("perf_event")
int on_timer(struct bpf_perf_event_data *ctx)
{
	struct event_in none = {};

	return fire(TRIGGER_TIMER, 0, NULL, &none);
}

/*
 * --interval with stacks: a CPU-clock perf event on every CPU, opened just
 * before the ticks' so that it fires with each tick, keeps the
 * stacks of what runs there (kinds/oncpu.bpf.h) for the thread the
 * snapshot finds on that CPU.
 */
SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	fill_oncpu_sample(ctx);
	return 0;
}

#endif /* TRIGGER_BPF_H */
