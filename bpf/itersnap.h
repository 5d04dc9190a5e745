/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Record layouts: the one contract between itersnap's BPF programs and its
 * Rust decoder (src/record.rs). Every backend emits exactly these records.
 *
 * All records start with struct rec_hdr; `size` is the record's total length
 * in bytes, including the header and any variable tail, and is always a
 * multiple of 8 so that records can be concatenated in one stream.
 * Fields are little/host endian, naturally aligned, no implicit padding.
 * Bump ITERSNAP_ABI when a layout changes.
 */
#ifndef ITERSNAP_H
#define ITERSNAP_H

#define ITERSNAP_ABI 3

#define COMM_LEN 16
/* Longest single path component the kernel allows (NAME_MAX) + NUL. */
#define NAME_BUF 256
/* Bytes of path data one file record can carry (NUL-separated components). */
#define PATH_BUF 4096
/* Components walked before a path is marked truncated. */
#define PATH_MAX_DEPTH 64
/* Kernel stack frames kept per task. */
#define STACK_MAX_DEPTH 64

enum rec_kind {
	REC_TASK = 1,
	REC_FILE = 2,
	REC_STACK = 3,
	REC_BEGIN = 4,	/* first record of a snapshot: what triggered it */
	REC_END = 5,	/* last record: what the walk emitted */
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

/* One per thread (pid == tgid for a thread-group leader). */
struct task_rec {
	struct rec_hdr hdr;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;		/* real_parent's tgid, as /proc/PID/stat */
	__u32 uid;		/* real uid */
	__u32 euid;		/* effective uid */
	__u32 gid;		/* real gid */
	__u32 state;		/* task_struct.__state (or .state), raw */
	__u32 exit_state;	/* task_struct.exit_state, raw */
	__u32 flags;		/* task_struct.flags (PF_*) */
	__u32 nr_threads;	/* signal_struct.nr_threads */
	__u64 utime_ns;		/* this thread */
	__u64 stime_ns;
	__u64 runtime_ns;	/* se.sum_exec_runtime: exact on-CPU time */
	__u64 dead_utime_ns;	/* signal_struct: threads that already exited */
	__u64 dead_stime_ns;
	__u64 dead_runtime_ns;
	__u64 start_ns;		/* start_time, monotonic clock */
	char comm[COMM_LEN];
	__u64 taken_ns;		/* bpf_ktime_get_ns() when this record was filled */
	__u32 capture;		/* enum capture_flags */
	__u32 fds_upto;		/* with CAPTURE_FILES: fds below this were walked in the event */
};

/*
 * Where a task record was filled: inside the event (the trigger program,
 * within --event-budget), or after it (the seq iterators that complete the
 * snapshot from a preemptible context).
 */
enum capture_flags {
	CAPTURE_IN_EVENT = 1 << 0,
	/* A leader whose fd table the trigger program walked: its fds below
	 * fds_upto are the event's (FDS_ALL: every one), the rest come after. */
	CAPTURE_FILES = 1 << 1,
};
#define FDS_ALL 0xffffffffU

/* How path[] of a file record is to be read. */
enum path_flags {
	PATH_DNAME = 1 << 0,	 /* synthetic name (socket, pipe, anon inode, ns): see magic */
	PATH_DELETED = 1 << 1,	 /* dentry unlinked: readlink appends " (deleted)" */
	PATH_TRUNCATED = 1 << 2, /* depth or buffer bound hit: leading components missing */
	PATH_FAULT = 1 << 3,	 /* a kernel read failed midway */
	PATH_TEXT = 1 << 4,	 /* path[] is the final text, from the kernel's d_path() */
};

/*
 * One per open fd of a process. path[] holds path_len bytes: NUL-terminated
 * components from the leaf up to the root ("leaf\0dir\0...\0"). With
 * PATH_DNAME it holds one component: the dentry name (anon inodes) or, for
 * nsfs, the namespace type name. With PATH_TEXT it is what readlink shows,
 * NUL-terminated, as the kernel's own d_path() wrote it.
 */
struct file_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* tgid of the owning process */
	__s32 fd;
	__u32 f_flags;		/* O_* flags as in /proc/PID/fdinfo */
	__u32 f_mode;		/* FMODE_* */
	__u32 i_mode;		/* inode type and permissions */
	__u32 magic;		/* super_block.s_magic */
	__u32 dev;		/* super_block.s_dev, kernel encoding */
	__u16 path_len;
	__u16 path_flags;	/* enum path_flags */
	__u64 ino;
	__u64 pos;
	__u64 size;
	char path[PATH_BUF];
};

/* Kernel stack of one thread: nr_ips addresses, innermost first. */
struct stack_rec {
	struct rec_hdr hdr;
	__u32 pid;
	__u32 nr_ips;
	__u64 ips[STACK_MAX_DEPTH];
};

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

#endif /* ITERSNAP_H */
