/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trigger programs shared by both backends. Each decides whether its event
 * is one the user asked for, passes the in-kernel guards (--count, --min-gap,
 * single flight), fills a begin_rec and hands it to on_trigger(), which the
 * including object defines:
 *   - opencoded.bpf.c walks every task right there, inside the event;
 *   - seqiter.bpf.c only reports the event; user space then reads the seq
 *     iterators.
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
const volatile char cfg_caller_comm[COMM_LEN] = {};
const volatile __u32 cfg_target_pid = 0;
const volatile char cfg_target_comm[COMM_LEN] = {};
const volatile __u64 cfg_min_gap_ns = 0;
const volatile __u64 cfg_max_snapshots = 0;	/* 0: no limit */
const volatile __u64 cfg_ringbuf_bytes = 0;	/* size of the events map */

/* Guard state; user space reads the counters (and, for seq, clears busy). */
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

static __always_inline bool comm_equal(const char *comm, const volatile char *want)
{
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != want[i])
			return false;
		if (comm[i] == '\0')
			return true;
	}
	return true;
}

/* --caller-pid / --caller-comm: the task running when the event fires. */
static __always_inline bool caller_selected(void)
{
	char comm[COMM_LEN];

	if ((cfg_trigger_flags & TRIG_CALLER_PID) &&
	    (bpf_get_current_pid_tgid() >> 32) != cfg_caller_pid)
		return false;
	if (cfg_trigger_flags & TRIG_CALLER_COMM) {
		bpf_get_current_comm(comm, sizeof(comm));
		if (!comm_equal(comm, cfg_caller_comm))
			return false;
	}
	return true;
}

/*
 * The in-kernel guards. --count: stop quietly once enough snapshots were
 * taken. Single flight: a walk never starts while another runs, nor while
 * user space has yet to read half a ring buffer of earlier records.
 * --min-gap: at most one snapshot per gap. Skips are counted, never silent.
 * Kernels with BPF atomics (5.12+, so every open-coded one) get exact
 * compare-and-swap; older ones a plain check that user space backs up.
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

/* Defined by the object that includes this header. */
static __always_inline void on_trigger(struct begin_rec *b);

static __always_inline int fire(__u32 trigger, __s32 arg, struct task_struct *target)
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
	on_trigger(b);
	return 0;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	char comm[COMM_LEN];

	if (sig != cfg_trigger_arg)
		return 0;
	if ((cfg_trigger_flags & TRIG_TARGET_PID) && BPF_CORE_READ(task, tgid) != cfg_target_pid)
		return 0;
	if (cfg_trigger_flags & TRIG_TARGET_COMM) {
		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
		if (!comm_equal(comm, cfg_target_comm))
			return 0;
	}
	if (!caller_selected())
		return 0;
	return fire(TRIGGER_SIGNAL, sig, task);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_syscall, struct pt_regs *regs, long id)
{
	if (id != cfg_trigger_arg || !caller_selected())
		return 0;
	return fire(TRIGGER_SYSCALL, id, NULL);
}

/* Attached by name at run time: one program serves every tracepoint. */
SEC("raw_tp")
int on_tracepoint(void *ctx)
{
	if (!caller_selected())
		return 0;
	return fire(TRIGGER_TRACEPOINT, 0, NULL);
}

/* Attached at run time to PATH:SYMBOL (and to --caller-pid, if given). */
SEC("uprobe")
int on_uprobe(struct pt_regs *ctx)
{
	if (!caller_selected())
		return 0;
	return fire(TRIGGER_UPROBE, 0, NULL);
}

/* Periodic sampling: a software clock perf event on one CPU (--interval). */
SEC("perf_event")
int on_timer(struct bpf_perf_event_data *ctx)
{
	return fire(TRIGGER_TIMER, 0, NULL);
}

#endif /* TRIGGER_BPF_H */
