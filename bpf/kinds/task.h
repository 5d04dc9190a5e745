/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Task identity: the layout of the task record (REC_TASK), one per thread,
 * decoded by src/kinds/task.rs. Its own file so that everything about this kind
 * of data sits together; kinds/task.bpf.h fills it. Plain C, included by
 * itersnap.h after struct rec_hdr and COMM_LEN, not on its own.
 */
#ifndef ITERSNAP_KIND_TASK_H
#define ITERSNAP_KIND_TASK_H

/*
 * proc_task_name()'s buffer (fs/proc/array.c): a task's name as
 * /proc/PID/comm, stat and status show it is at most 63 bytes and a NUL.
 */
#define TASK_NAME_LEN 64

/* One per thread (pid == tgid for a thread-group leader). */
struct task_rec {
	struct rec_hdr hdr;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;		/* real_parent's tgid, as /proc/PID/stat */
	__u32 state;		/* task_struct.__state (or .state), raw */
	__u32 exit_state;	/* task_struct.exit_state, raw */
	__u32 flags;		/* task_struct.flags (PF_*) */
	__u32 nr_threads;	/* signal_struct.nr_threads */
	/* real_cred, as /proc/PID/status's Uid: and Gid: lines (init namespace) */
	__u32 ruid;
	__u32 euid;
	__u32 suid;
	__u32 fsuid;
	__u32 rgid;
	__u32 egid;
	__u32 sgid;
	__u32 fsgid;
	__u32 present;		/* enum task_present: optional fields this kernel has */
	__u64 utime_ns;		/* this thread */
	__u64 stime_ns;
	__u64 runtime_ns;	/* se.sum_exec_runtime: exact on-CPU time */
	__u64 prev_utime_ns;	/* task_struct.prev_cputime: what the kernel last reported */
	__u64 prev_stime_ns;
	__u64 dead_utime_ns;	/* signal_struct: threads that already exited */
	__u64 dead_stime_ns;
	__u64 dead_runtime_ns;
	__u64 group_prev_utime_ns; /* signal_struct.prev_cputime: the same for the group */
	__u64 group_prev_stime_ns;
	__u64 start_ns;		/* start_time, monotonic clock */
	__u64 start_boottime_ns; /* start_boottime (real_start_time before 5.5): boot clock */
	__u64 self_exec_id;	/* counts the task's execs: a change means it exec'd */
	__u64 taken_ns;		/* bpf_ktime_get_ns() when this record was filled */
	__u32 capture;		/* enum capture_flags */
	__u32 fds_upto;		/* with CAPTURE_FILES: fds below this were walked in the event */
	/* The name /proc/PID/comm shows, NUL-terminated: comm, a kernel thread's
	 * full name, a workqueue worker's name and what it works on. */
	char comm[TASK_NAME_LEN];
	/* What ps's STAT adds to the state letter (<, N, L, s, l, +). */
	__s32 nice;		/* this thread's: static_prio - 120 */
	__u32 sid;		/* its process's session, pgrp, and its tty's */
	__u32 pgid;		/*   foreground pgrp (0: none), init namespace */
	__u32 tpgid;
	__u64 locked_pages;	/* mm->locked_vm, as /proc/PID/status VmLck */
	__u32 cpu;		/* the CPU it runs or last ran on (ps's PSR) */
	__u32 on_cpu;		/* 1 if running on that CPU at the walk */
};

/* Optional fields of a task record (struct task_rec.present). */
enum task_present {
	/* prev_*_ns are the kernel's: without them (VIRT_CPU_ACCOUNTING_NATIVE)
	 * /proc shows utime and stime as they are. */
	TASK_PREV_CPUTIME = 1 << 0,
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

#endif /* ITERSNAP_KIND_TASK_H */
