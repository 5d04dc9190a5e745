/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Selection: which tasks a snapshot holds (the COMM and --pid filters),
 * above the kinds (a COMM is matched on the name kinds/task.bpf.h
 * composes) and below the walks that ask it.
 */
#ifndef SELECT_BPF_H
#define SELECT_BPF_H

#include "base.bpf.h"
#include "kinds/task.bpf.h"

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
 * COMM filter: exact match on the process's name as /proc shows it (its
 * group leader's; a kernel thread's full name, kinds/task.bpf.h), like
 * pgrep -x; any of the names given.
 */
static __always_inline bool comm_matches(struct task_struct *t)
{
	return task_name_in(KREAD(t, group_leader), cfg_comms, cfg_ncomms);
}

/* In-kernel filters: is this task (thread) part of the snapshot? */
static __always_inline bool task_selected(struct task_struct *t)
{
	if ((cfg_flags & FILTER_PID_ON) && !pid_selected(KREAD(t, tgid)))
		return false;
	if ((cfg_flags & FILTER_COMM_ON) && !comm_matches(t))
		return false;
	return true;
}

/*
 * task_selected() of a task known not to be a kernel thread, whose name is
 * its comm: a program that never looks at kernel threads (command lines)
 * then holds no name composition for the verifier to check.
 */
static __always_inline bool user_task_selected(struct task_struct *t)
{
	struct task_struct *leader;

	if ((cfg_flags & FILTER_PID_ON) && !pid_selected(KREAD(t, tgid)))
		return false;
	if (!(cfg_flags & FILTER_COMM_ON))
		return true;
	leader = KREAD(t, group_leader);
	for (__u32 k = 0; k < TASK_NAMES_MAX; k++) {
		if (k >= cfg_ncomms)
			break;
		if (comm_is(leader, cfg_comms[k]))
			return true;
	}
	return false;
}

#endif /* SELECT_BPF_H */
