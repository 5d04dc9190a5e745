/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Selection: which tasks a snapshot holds (COMMs, --pid, --user, --cgroup,
 * --task-state), above the kinds (a COMM is matched on the name
 * kinds/task.bpf.h composes, a cgroup by kinds/proc.bpf.h) and below the
 * walks that ask it. The file kind's --file/--mount filter and the socket
 * kind's --port are their kinds' own: they select records, not tasks.
 */
#ifndef SELECT_BPF_H
#define SELECT_BPF_H

#include "base.bpf.h"
#include "kinds/task.bpf.h"
#include "kinds/stack.bpf.h"
#include "kinds/activity.bpf.h"
#include "kinds/proc.bpf.h"

/*
 * Set by user space before load; constant to the verifier: the processes
 * (thread-group ids) of --pid, the names of COMM (one or several).
 */
#define SELECT_PIDS_MAX 16
const volatile __u32 cfg_npids = 0;
const volatile __u32 cfg_pids[SELECT_PIDS_MAX] = {};
const volatile __u32 cfg_ncomms = 0;
const volatile char cfg_comms[TASK_NAMES_MAX][TASK_NAME_LEN] = {};

static __always_inline bool pid_selected(__u32 tgid)
{
	for (__u32 i = 0; i < SELECT_PIDS_MAX; i++) {
		if (i >= cfg_npids)
			break;
		if (tgid == cfg_pids[i])
			return true;
	}
	return false;
}

/*
 * --threads with a COMM: a thread is also selected by its own name, as
 * pgrep -w finds it (`-L bio_close_file`), beside every thread of a process
 * of that name (ps -L -C). Its process's main thread carries the process's
 * records (files, identity), so it is selected too, whatever its name: the
 * processes whose other threads bear a name are found before each walk
 * (find_comm, or user space from a first pass of the task iterator) and
 * listed here, in .bss, where user space writes them; `all` when there
 * were more than the list holds. User space shows only the threads named.
 */
#define THREAD_NAMES_ON() \
	((cfg_flags & (FILTER_COMM_ON | OPT_THREADS)) == (FILTER_COMM_ON | OPT_THREADS))
#define NAMED_THREADS_PROCS_MAX 32
struct named_threads_procs {
	__u32 all;
	__u32 n;
	__u32 tgids[NAMED_THREADS_PROCS_MAX];
};
struct named_threads_procs named_threads_procs = {};

static __always_inline bool has_named_thread(__u32 tgid)
{
	if (named_threads_procs.all)
		return true;
	for (__u32 i = 0; i < NAMED_THREADS_PROCS_MAX; i++) {
		if (i >= named_threads_procs.n)
			break;
		if (tgid == named_threads_procs.tgids[i])
			return true;
	}
	return false;
}

/* A user thread's own name (a kernel thread is its process's leader). */
static __always_inline bool thread_comm_in(struct task_struct *t)
{
	for (__u32 k = 0; k < TASK_NAMES_MAX; k++) {
		if (k >= cfg_ncomms)
			break;
		if (comm_is(t, cfg_comms[k]))
			return true;
	}
	return false;
}

/*
 * COMM filter: exact match on the process's name as /proc shows it (its
 * group leader's; a kernel thread's full name, kinds/task.bpf.h), like
 * pgrep -x; any of the names given. With --threads, on the thread's own
 * name (above).
 */
static __always_inline bool comm_matches(struct task_struct *t)
{
	if (task_name_in(KREAD(t, group_leader), cfg_comms, cfg_ncomms))
		return true;
	if (!THREAD_NAMES_ON())
		return false;
	if (KREAD(t, pid) == KREAD(t, tgid))
		return has_named_thread(KREAD(t, tgid));
	return thread_comm_in(t);
}

/*
 * --user: the effective uids of the processes (their main thread's, as ps
 * -u); --task-state: 1 << the index of each state letter in "RSDTtXZPI".
 */
#define SELECT_UIDS_MAX 8
const volatile __u32 cfg_nuids = 0;
const volatile __u32 cfg_uids[SELECT_UIDS_MAX] = {};
const volatile __u32 cfg_states = 0;

static __always_inline bool user_selected(struct task_struct *leader)
{
	__u32 euid = task_euid(leader);

	for (__u32 i = 0; i < SELECT_UIDS_MAX; i++) {
		if (i >= cfg_nuids)
			break;
		if (euid == cfg_uids[i])
			return true;
	}
	return false;
}

static __always_inline bool state_selected(struct task_struct *t)
{
	return !(cfg_flags & FILTER_STATE_ON) || (cfg_states & (1U << (task_state_index(t) & 31)));
}

/*
 * In-kernel filters: is this task (thread) part of the snapshot? A
 * process's main thread is whenever its process is: it carries the
 * process's records (files, identity), and user space shows the process
 * (or, with --threads, the thread) only if a thread of it is in one of
 * --task-state's states. Other threads are left out here.
 */
static __always_inline bool task_selected(struct task_struct *t)
{
	if ((cfg_flags & FILTER_PID_ON) && !pid_selected(KREAD(t, tgid)))
		return false;
	if ((cfg_flags & FILTER_USER_ON) && !user_selected(KREAD(t, group_leader)))
		return false;
	if ((cfg_flags & FILTER_CGROUP_ON) && !in_cgroup(KREAD(t, group_leader)))
		return false;
	if ((cfg_flags & FILTER_COMM_ON) && !comm_matches(t))
		return false;
	if ((cfg_flags & FILTER_STATE_ON) && KREAD(t, pid) != KREAD(t, tgid) && !state_selected(t))
		return false;
	return true;
}

/* A task's stack: as asked (stack.bpf.h), and only in --task-state's states. */
static __always_inline bool stack_selected(struct task_struct *t)
{
	return want_stack(t) && state_selected(t);
}

/* A task's activity (activity.bpf.h), likewise. */
static __always_inline bool activity_selected(struct task_struct *t)
{
	return want_activity(t) && state_selected(t);
}

/*
 * task_selected() of a task known not to be a kernel thread, whose name is
 * its comm, for its process's records (command lines): a program that never
 * looks at kernel threads then holds no name composition for the verifier
 * to check.
 */
static __always_inline bool user_task_selected(struct task_struct *t)
{
	struct task_struct *leader;

	if ((cfg_flags & FILTER_PID_ON) && !pid_selected(KREAD(t, tgid)))
		return false;
	leader = KREAD(t, group_leader);
	if ((cfg_flags & FILTER_USER_ON) && !user_selected(leader))
		return false;
	if ((cfg_flags & FILTER_CGROUP_ON) && !in_cgroup(leader))
		return false;
	if (!(cfg_flags & FILTER_COMM_ON))
		return true;
	return thread_comm_in(leader) || (THREAD_NAMES_ON() && has_named_thread(KREAD(t, tgid)));
}

#endif /* SELECT_BPF_H */
