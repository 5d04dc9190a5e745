// SPDX-License-Identifier: GPL-2.0
/*
 * The open-coded backend (kernels with bpf_iter_task_new, 6.7+): the trigger
 * program itself walks every task with bpf_for_each(task) and every fd table
 * with bpf_for, inside the event's own context, and writes the shared walk's
 * records (walk.bpf.h) to the ring buffer: begin_rec, records, end_rec.
 */
#define HAVE_BPF_ATOMICS 1
#define WALK_USE_BPF_LOOP 1
#include "trigger.bpf.h"

char LICENSE[] SEC("license") = "GPL";

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

/* Words of the open-fds bitmap scanned per process: 262,144 fds. */
#define FD_WORDS_MAX 4096

/* Counters of the walk in progress (single flight: one walk at a time). */
struct walk_state {
	__u64 emitted;
	__u64 dropped;
	__u32 tasks;
	__u32 files;
	__u32 stacks;
	__u32 truncated_fds;
};
struct walk_state ws = {};

/* Index of the lowest set bit: BPF has no count-trailing-zeros instruction. */
const volatile __u8 debruijn64[64] = {
	0,  1,  2,  53, 3,  7,  54, 27, 4,  38, 41, 8,  34, 55, 48, 28,
	62, 5,  39, 46, 44, 42, 22, 9,  24, 35, 59, 56, 49, 18, 29, 11,
	63, 52, 6,  26, 37, 40, 33, 47, 61, 45, 43, 21, 23, 58, 17, 10,
	51, 25, 36, 32, 60, 20, 57, 16, 50, 31, 19, 15, 30, 14, 13, 12,
};
#define DEBRUIJN_MULT 0x022fdd63cc95386dULL

static __always_inline void emit(void *rec, __u32 size, __u64 flags)
{
	/* Keep the bound check on the very register passed to the helper. */
	barrier_var(size);
	if (size > sizeof(union scratch))
		return;
	/* Wake-ups cost; most records go without one, but every 64th asks
	 * whether the buffer is past half full: then the reader drains it
	 * while the walk goes on. */
	if (flags == BPF_RB_NO_WAKEUP && (ws.emitted & 63) == 63 &&
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > cfg_ringbuf_bytes / 2)
		flags = BPF_RB_FORCE_WAKEUP;
	ws.emitted++;
	if (bpf_ringbuf_output(&events, rec, size, flags))
		ws.dropped++;
}

/* The fd array's entries for one bitmap word, read at once (walk_files). */
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
 * Every open file of one process. A global function, like fill_file(): the
 * verifier checks its two nested loops once, on their own, instead of inside
 * the task loop of every program that walks.
 */
__noinline int walk_files(__u64 files_addr, __u32 tgid)
{
	struct files_struct *files = (struct files_struct *)files_addr;
	union scratch *buf = scratch_buf();
	__u32 zero = 0;
	struct fd_slots *slots = bpf_map_lookup_elem(&fd_slots_map, &zero);
	struct fdtable *fdt;
	unsigned long *open_fds, *close_on_exec;
	struct file **fd_array;
	__u32 words;
	int w;

	if (!files || !buf || !slots)
		return 0;
	fdt = BPF_CORE_READ(files, fdt);
	open_fds = BPF_CORE_READ(fdt, open_fds);
	close_on_exec = BPF_CORE_READ(fdt, close_on_exec);
	fd_array = BPF_CORE_READ(fdt, fd);
	words = (BPF_CORE_READ(fdt, max_fds) + 63) / 64;
	if (words > FD_WORDS_MAX) {
		words = FD_WORDS_MAX;
		ws.truncated_fds++;
	}

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
			__u32 size, bit;
			__u64 low;
			int fd;

			if (!word)
				break;
			low = word & -word;
			word &= word - 1;
			bit = debruijn64[(low * DEBRUIJN_MULT) >> 58] & 63;
			fd = w * 64 + bit;
			f = slots->f[bit];
			if (!f)
				continue;
			size = fill_file((__u64)f, tgid, fd, cloexec & low);
			if (size) {
				emit(&buf->file, size, BPF_RB_NO_WAKEUP);
				ws.files++;
			}
		}
	}
	return 0;
}

static __always_inline void walk_tasks(union scratch *buf)
{
	struct task_struct *t;

	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_THREADS) {
		__u32 pid = BPF_CORE_READ(t, pid);
		__u32 size;

		/* The idle task (swapper) is not a process: /proc and iter/task skip it. */
		if (pid == 0 || !task_selected(t))
			continue;
		fill_task(t, &buf->task);
		emit(&buf->task, sizeof(buf->task), BPF_RB_NO_WAKEUP);
		ws.tasks++;
		if (want_stack(t)) {
			size = fill_stack(t, &buf->stack);
			if (size && size <= sizeof(buf->stack)) {
				emit(&buf->stack, size, BPF_RB_NO_WAKEUP);
				ws.stacks++;
			}
		}
		if ((cfg_flags & OPT_FILES) && pid == BPF_CORE_READ(t, tgid))
			walk_files((__u64)BPF_CORE_READ(t, files), pid);
	}
}

/* The snapshot itself: begin_rec, every record, end_rec, then the stats slot. */
static __always_inline void on_trigger(struct begin_rec *b)
{
	union scratch *buf = (union scratch *)b;
	__u32 seq = b->hdr.seq;
	struct snap_stats *st = &stats[seq & (STATS_SLOTS - 1)];
	__u64 start = b->ktime_ns;
	__u64 end;

	__builtin_memset(&ws, 0, sizeof(ws));
	emit(b, sizeof(*b), BPF_RB_NO_WAKEUP);
	walk_tasks(buf);

	end = bpf_ktime_get_ns();
	set_hdr(&buf->end.hdr, REC_END, sizeof(buf->end));
	buf->end.tasks = ws.tasks;
	buf->end.files = ws.files;
	buf->end.stacks = ws.stacks;
	buf->end.truncated_fds = ws.truncated_fds;
	buf->end.ktime_ns = end;
	buf->end.emitted = ws.emitted;
	buf->end.dropped = ws.dropped;
	emit(&buf->end, sizeof(buf->end), BPF_RB_FORCE_WAKEUP);

	st->seq = seq;
	st->emitted = ws.emitted;
	st->dropped = ws.dropped;
	st->walk_ns = end - start;
	st->done = 1;
	busy = 0;
}

/*
 * One-shot: run once by user space with BPF_PROG_TEST_RUN. A raw_tp program
 * (never attached), not a sleepable SEC("syscall") one: there
 * bpf_get_task_stack is the sleepable variant, which kernels before 6.18
 * refuse inside the RCU section that the task iterator needs. The test run
 * of a raw_tp program holds rcu_read_lock itself.
 */
SEC("raw_tp")
int snapshot_once(void *ctx)
{
	/* The test run is itersnap's own thread: its root is at hand. */
	learn_root((struct task_struct *)bpf_get_current_task());
	fire(TRIGGER_ONESHOT, 0, NULL);
	return 0;
}

/* Run once by user space at start: triggers fire in other tasks' contexts,
 * so itersnap's root is learnt here, in its own. */
SEC("syscall")
int learn_reader_root(void *ctx)
{
	learn_root((struct task_struct *)bpf_get_current_task());
	return 0;
}

/*
 * The kernel's own limit, for scripts/bench: the same task and fd-bitmap
 * loops as the snapshot, counting instead of building records. A raw_tp
 * program run like snapshot_once (its test run holds rcu_read_lock).
 */
struct bare_walk_result {
	__u64 tasks;
	__u64 files;
	__u64 ns;
};
struct bare_walk_result bare = {};

SEC("raw_tp")
int bare_walk(void *ctx)
{
	struct task_struct *t;
	__u64 start = bpf_ktime_get_ns();

	bare.tasks = 0;
	bare.files = 0;
	bpf_for_each(task, t, NULL, BPF_TASK_ITER_ALL_THREADS) {
		struct files_struct *files;
		struct fdtable *fdt;
		unsigned long *open_fds;
		__u32 words;
		int w;

		bare.tasks++;
		if (BPF_CORE_READ(t, pid) != BPF_CORE_READ(t, tgid))
			continue;
		files = BPF_CORE_READ(t, files);
		if (!files)
			continue;
		fdt = BPF_CORE_READ(files, fdt);
		open_fds = BPF_CORE_READ(fdt, open_fds);
		words = (BPF_CORE_READ(fdt, max_fds) + 63) / 64;
		if (words > FD_WORDS_MAX)
			words = FD_WORDS_MAX;
		bpf_for(w, 0, words) {
			unsigned long word = 0;

			bpf_probe_read_kernel(&word, sizeof(word), open_fds + w);
			bare.files += __builtin_popcountll(word);
		}
	}
	bare.ns = bpf_ktime_get_ns() - start;
	return 0;
}
