// SPDX-License-Identifier: GPL-2.0
/*
 * The open-coded backend (kernels with bpf_iter_task_new, 6.7+): besides
 * the event's own tasks, its trigger programs walk, inside the event and
 * within --event-budget, the tasks a COMM/--pid filter selects, with
 * bpf_for_each(task) and bpf_for over each fd table. When that walk ends
 * before the budget, the whole snapshot is the event's; otherwise the seq
 * iterators (complete.bpf.h) complete it right after.
 */
#define HAVE_BPF_ATOMICS 1
#define WALK_USE_BPF_LOOP 1
#define WALK_USE_BPF_FOR 1
/*
 * What every 6.7+ kernel has, so that no fallback for older ones is loaded
 * only for the verifier to remove it: bpf_snprintf() (5.13), and a walk
 * that gives cwd, root and executable whole (bpf_loop), never d_path().
 */
#define WALK_HAS_SNPRINTF 1
#define WALK_SLOTS_WALKED 1
/* Kernel memory read by direct loads (bpf_rdonly_cast(), 6.2+): KREAD(). */
#define WALK_DIRECT_READS 1
#include "trigger.bpf.h"
#include "complete.bpf.h"

char LICENSE[] SEC("license") = "GPL";

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

extern struct task_struct *bpf_task_from_pid(s32 pid) __weak __ksym;
extern void bpf_task_release(struct task_struct *p) __weak __ksym;

/*
 * With a COMM/--pid filter, the selected tasks are few: look for them in
 * the event until the budget runs out. One --pid's process is found by the
 * kernel's own pid lookup, and only its threads are visited (an iterator
 * over one process), where the program may call bpf_task_from_pid() (6.2+,
 * a generic kfunc: tp_btf programs); elsewhere (a COMM, several pids,
 * raw_tp and uprobe programs) among every task. (One iterator, as one pid
 * or none: a second made the stack of the deepest call chain too large.)
 * Without a filter, the rest of the snapshot is the completion's: returns
 * false. Returns true when every selected task was captured.
 */
static __always_inline bool capture_more(__u64 deadline, __u32 trigger)
{
	unsigned int which = BPF_TASK_ITER_ALL_THREADS;
	struct task_struct *proc = NULL;
	struct task_struct *t;
	bool whole = true;

	if (!(cfg_flags & (FILTER_COMM_ON | FILTER_PID_ON)))
		return false;
	if ((trigger == TRIGGER_SIGNAL || trigger == TRIGGER_SYSCALL) &&
	    (cfg_flags & FILTER_PID_ON) && cfg_npids == 1) {
		proc = bpf_task_from_pid(cfg_pids[0]);
		/* No such process: nothing is selected, nothing left to find. */
		if (!proc)
			return true;
		which = BPF_TASK_ITER_PROC_THREADS;
	}
	bpf_for_each(task, t, proc, which) {
		__u32 pid = BPF_CORE_READ(t, pid);

		if (over_budget(deadline)) {
			whole = false;
			break;
		}
		if (pid == 0 || !task_selected(t) || captured_already(pid))
			continue;
		capture_task(t, deadline);
	}
	if (proc)
		bpf_task_release(proc);
	/*
	 * --threads with a COMM: a thread found by its own name here may need
	 * its main thread, which the completion reads (select.bpf.h).
	 */
	return whole && !ws.budget_hit && !THREAD_NAMES_ON();
}

/*
 * The kernel's own limit, for scripts/bench: the same task and fd-bitmap
 * loops as the snapshot, counting instead of building records. A raw_tp
 * program run once with BPF_PROG_TEST_RUN (its test run holds rcu_read_lock).
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

/*
 * A COMM query's first step: the processes that may bear the name, found by
 * the kernel's process list (bpf_for_each(task), ~0.2 us a process here,
 * two cache misses) instead of one iterator program run per task (~0.7 us
 * each, which was nearly all of a COMM one-shot's walk). User space runs
 * it once with BPF_PROG_TEST_RUN, then binds the task, file and
 * command-line iterators to each process found; they apply the exact
 * filter (task_selected()). A user process is a candidate when its comm is
 * the name; a kernel thread when its comm begins it (its /proc name may be
 * longer: kworker/0:1-events). With --threads every thread is, by its own
 * name, and the scan also lists the processes whose main threads the walk
 * needs (select.bpf.h's named_threads_procs).
 * Bounded: past COMM_SCAN_MAX candidates, or past 1 ms (a kernel that does
 * not preempt holds the CPU for the whole run, as a trigger holds it for
 * --event-budget's default: ~5,000 processes here) the scan stops and says
 * so (`complete` 0), and the snapshot walks every task with the iterators,
 * which yield the CPU.
 */
#define COMM_SCAN_MAX 32
/* With --threads, every thread's own name (select.bpf.h): it visits threads. */
#define THREAD_SCAN_ITER (THREAD_NAMES_ON() ? BPF_TASK_ITER_ALL_THREADS : BPF_TASK_ITER_ALL_PROCS)
#define COMM_SCAN_BUDGET_NS (1000 * 1000)

struct comm_scan_result {
	__u32 complete;
	__u32 n;
	__u32 tgids[COMM_SCAN_MAX];
	__u64 procs;
	__u64 ns;
};
struct comm_scan_result comm_scan = {};

static __always_inline bool comm_candidate(struct task_struct *t)
{
	/*
	 * The iterator's task is trusted: its comm is read with plain loads,
	 * the first byte alone for most processes (a helper call per name
	 * made the scan overrun its budget at 10,000 processes).
	 */
	bool kthread = t->flags & (PF_WQ_WORKER | PF_KTHREAD);
	char first = t->comm[0];

	for (__u32 k = 0; k < TASK_NAMES_MAX; k++) {
		bool same = true;

		if (k >= cfg_ncomms)
			break;
		if (first != cfg_comms[k][0])
			continue;
		for (int i = 1; i < COMM_LEN; i++) {
			char c = t->comm[i];

			if (c == '\0') {
				same = kthread || cfg_comms[k][i] == '\0';
				break;
			}
			if (c != cfg_comms[k][i]) {
				same = false;
				break;
			}
			if (i == COMM_LEN - 1)
				same = kthread || cfg_comms[k][COMM_LEN] == '\0';
		}
		if (same)
			return true;
	}
	return false;
}

SEC("raw_tp")
int find_comm(void *ctx)
{
	struct task_struct *t;
	__u64 start = bpf_ktime_get_ns();
	__u32 complete = 1;

	/* Counts in memory, not registers: a register counter would make each
	 * iteration's state new to the verifier, which would never converge. */
	comm_scan.n = 0;
	comm_scan.procs = 0;
	named_threads_procs.n = 0;
	named_threads_procs.all = 0;
	bpf_for_each(task, t, NULL, THREAD_SCAN_ITER) {
		__u32 n = comm_scan.n;
		__u32 tgid;

		if ((++comm_scan.procs & 255) == 0 &&
		    bpf_ktime_get_ns() - start > COMM_SCAN_BUDGET_NS) {
			complete = 0;
			break;
		}
		if (!comm_candidate(t))
			continue;
		tgid = KREAD(t, tgid);
		/* --threads: a process's threads come in a row; each once. */
		if (n > 0 && comm_scan.tgids[(n - 1) & (COMM_SCAN_MAX - 1)] == tgid)
			continue;
		if (n >= COMM_SCAN_MAX) {
			complete = 0;
			break;
		}
		comm_scan.tgids[n] = tgid;
		comm_scan.n = n + 1;
		/*
		 * Not its main thread (that one, met first, would have selected
		 * the whole process): a user thread, whose candidacy is its
		 * exact name (comm_candidate).
		 */
		if (THREAD_NAMES_ON() && KREAD(t, pid) != tgid) {
			__u32 m = named_threads_procs.n;

			if (m < NAMED_THREADS_PROCS_MAX) {
				named_threads_procs.tgids[m] = tgid;
				named_threads_procs.n = m + 1;
			}
		}
	}
	/* A partial list would leave out a main thread the walk needs. */
	if (!complete)
		named_threads_procs.all = 1;
	comm_scan.complete = complete;
	comm_scan.ns = bpf_ktime_get_ns() - start;
	return 0;
}
