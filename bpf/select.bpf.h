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

/* Set by user space before load; constant to the verifier. */
const volatile __u32 cfg_pid = 0;
const volatile char cfg_comm[TASK_NAME_LEN] = {};

/*
 * COMM filter: exact match on the process's name as /proc shows it (its
 * group leader's; a kernel thread's full name, kinds/task.bpf.h), like
 * pgrep -x.
 */
static __always_inline bool comm_matches(struct task_struct *t)
{
	return task_name_is(KREAD(t, group_leader), cfg_comm);
}

/* In-kernel filters: is this task (thread) part of the snapshot? */
static __always_inline bool task_selected(struct task_struct *t)
{
	if ((cfg_flags & FILTER_PID_ON) && KREAD(t, tgid) != cfg_pid)
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
	if ((cfg_flags & FILTER_PID_ON) && KREAD(t, tgid) != cfg_pid)
		return false;
	if ((cfg_flags & FILTER_COMM_ON) && !comm_is(KREAD(t, group_leader), cfg_comm))
		return false;
	return true;
}

#endif /* SELECT_BPF_H */
