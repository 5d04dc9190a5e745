/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Record layouts: the one contract between itersnap's BPF programs and its
 * Rust decoder (src/record.rs). Every backend emits exactly these records.
 *
 * This file holds the framing every record shares (rec_hdr, the kinds'
 * numbers, the begin and end records around a snapshot, the per-snapshot
 * stats, the load-time options); each kind of data's own layout lives in
 * kinds/<kind>.h, included below, so that every includer sees them all.
 *
 * All records start with struct rec_hdr; `size` is the record's total length
 * in bytes, including the header and any variable tail, and is always a
 * multiple of 8 so that records can be concatenated in one stream.
 * Fields are little/host endian, naturally aligned, no implicit padding.
 * Bump ITERSNAP_ABI when any layout changes, those under kinds/ included.
 */
#ifndef ITERSNAP_H
#define ITERSNAP_H

#define ITERSNAP_ABI 10

#define COMM_LEN 16

/*
 * The registration list of record kinds. A new kind of data adds its number
 * here, its layout in bpf/kinds/<kind>.h (included below, after rec_hdr)
 * and its fill functions in bpf/kinds/<kind>.bpf.h (included by
 * walk.bpf.h).
 */
enum rec_kind {
	REC_TASK = 1,	/* kinds/task.h */
	REC_FILE = 2,	/* kinds/file.h */
	REC_STACK = 3,	/* kinds/stack.h */
	REC_BEGIN = 4,	/* first record of a snapshot: what triggered it */
	REC_END = 5,	/* last record: what the walk emitted */
	REC_SOCKET = 6,	/* kinds/socket.h */
	REC_PROC = 7,	/* kinds/proc.h */
	REC_CMDLINE = 8, /* kinds/cmdline.h */
	REC_ACTIVITY = 9, /* kinds/activity.h */
	REC_EVENT = 10,	/* kinds/event.h: the trigger's own details */
	REC_USTACK = 11, /* kinds/ustack.h */
};

/* What fired a snapshot (struct begin_rec.trigger). */
enum trigger_kind {
	TRIGGER_ONESHOT = 1,
	TRIGGER_SIGNAL = 2,
	TRIGGER_SYSCALL = 3,
	TRIGGER_TRACEPOINT = 4,
	TRIGGER_UPROBE = 5,
	TRIGGER_TIMER = 6,
};

struct rec_hdr {
	__u16 kind;	/* enum rec_kind */
	__u16 size;	/* total record size in bytes, multiple of 8 */
	__u32 seq;	/* snapshot sequence number */
};

/* Each kind's own layout: they use rec_hdr and COMM_LEN above. */
#include "kinds/task.h"
#include "kinds/file.h"
#include "kinds/stack.h"
#include "kinds/socket.h"
#include "kinds/proc.h"
#include "kinds/cmdline.h"
#include "kinds/activity.h"
#include "kinds/event.h"
#include "kinds/ustack.h"
#include "kinds/oncpu.h"

/*
 * Sent when a trigger fires, followed by the records captured inside the
 * event (within --event-budget) and an end_rec. User space then completes the
 * snapshot with the seq iterators (unless END_ALL_TASKS).
 */
struct begin_rec {
	struct rec_hdr hdr;
	__u32 trigger;		/* enum trigger_kind */
	__s32 arg;		/* signal number, syscall number */
	__u32 pid;		/* current task at the event (signal sender, caller): tgid */
	__u32 tid;
	__u32 target_pid;	/* signal target: tgid */
	__u32 target_tid;
	__u32 cpu;
	__u32 _pad;
	__u64 ktime_ns;		/* bpf_ktime_get_ns() at the event */
	__u64 skipped_gap;	/* triggers skipped so far: within --min-gap */
	__u64 skipped_busy;	/* ...: a walk was still running */
	char comm[COMM_LEN];
	char target_comm[COMM_LEN];
};

/* The last record of a trigger program's run: what its in-event part emitted. */
struct end_rec {
	struct rec_hdr hdr;
	__u32 tasks;		/* records emitted in the event, by kind */
	__u32 files;
	__u32 stacks;
	__u32 truncated_fds;	/* fd tables larger than the scan bound */
	__u64 ktime_ns;		/* end of the in-event part */
	__u64 emitted;		/* records emitted before this one, begin_rec included */
	__u64 dropped;		/* of those, lost because the ring buffer was full */
	__u32 flags;		/* enum end_flags */
	__u32 _pad;
};

enum end_flags {
	END_BUDGET_HIT = 1 << 0,  /* --event-budget ran out: the rest comes after */
	END_ALL_TASKS = 1 << 1,	  /* every selected task was captured in the event */
};

/*
 * Per-snapshot counters kept in the BPF object's .bss, in a ring of slots
 * indexed by seq % STATS_SLOTS, so that user space can account for a
 * snapshot even when its end_rec was lost.
 */
#define STATS_SLOTS 16

struct snap_stats {
	__u32 seq;
	__u32 done;		/* in-event part finished (end_rec emitted or dropped) */
	__u64 emitted;		/* every record of the snapshot, end_rec included */
	__u64 dropped;
	__u64 walk_ns;		/* the in-event part */
	__u32 flags;		/* enum end_flags */
	__u32 _pad;
};

/* Filters and options fixed before load (.rodata of every program). */
#define FILTER_COMM_ON (1 << 0)
#define FILTER_PID_ON (1 << 1)
#define OPT_THREADS (1 << 2)  /* stacks for every thread, not just leaders */
#define OPT_STACKS (1 << 3)
#define OPT_FILES (1 << 4)
#define FILTER_SOCK_ON (1 << 5)  /* --port, --proto, --state: only matching sockets */
#define FILTER_HOLD_ON (1 << 6)  /* --file, --mount: only files on them (kinds/file.bpf.h) */
#define FILTER_USER_ON (1 << 7)  /* --user: only processes of these effective uids */
#define FILTER_STATE_ON (1 << 8) /* --task-state: only tasks in these states */
#define FILTER_CGROUP_ON (1 << 9) /* --cgroup: only processes in it or below */
#define OPT_ACTIVITY (1 << 10)	  /* --activity: each task's syscall (kinds/activity.bpf.h) */
#define OPT_USTACKS (1 << 11)	  /* --ustacks: user stacks (kinds/ustack.bpf.h) */
#define OPT_NO_CMDLINE (1 << 12)  /* dump_cmdline unwinds user stacks only (--folded) */

#endif /* ITERSNAP_H */
