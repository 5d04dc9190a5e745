/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Mapped files (--maps): one file record (fd FD_MEM, kinds/file.h) per
 * file a process maps, as lsof's `mem` and `DEL` entries, from the
 * task_vma iterator of complete.bpf.h (Linux 5.12+), after the event.
 * Built on the file kind; which processes it records is the walk's to say
 * (complete.bpf.h passes `selected`).
 */
#ifndef ITERSNAP_KIND_MAP_BPF_H
#define ITERSNAP_KIND_MAP_BPF_H

#include "base.bpf.h"
#include "kinds/file.bpf.h"

/*
 * The file of the previous mapping the iterator visited: a library's
 * segments are consecutive mappings of one file, recorded once. Globals,
 * not per CPU: the iterator may move between CPUs from one mapping to the
 * next, and one reader at a time reads it (src/backend/completion.rs).
 * User space merges what repeats further apart.
 */
__u64 maps_last_file = 0;
__u32 maps_last_tgid = 0;

/*
 * The mapping's file into the CPU's scratch file record, unless it is
 * anonymous, the previous mapping's file, or of a process not selected;
 * `first`: the first mapping of a pass, which forgets the last pass's.
 * Returns the record's size, or 0. The caller calls map_written() once the
 * record is in the seq_file: a record that did not fit is filled again in
 * the next read() and must not be taken for a repeat.
 */
static __always_inline __u32 fill_map(struct task_struct *t, struct vm_area_struct *vma,
				      bool first, bool selected)
{
	/*
	 * The iterator's task and mapping are BTF pointers: their fields are
	 * plain loads (a helper call each cost most of a --file query's
	 * visit of every mapping).
	 */
	__u32 tgid = t->tgid;
	struct file *f = vma->vm_file;

	if (first)
		maps_last_tgid = 0;
	/* One mm per process: its leader's visit is the process's. */
	if (t->pid != tgid)
		return 0;
	if (tgid != maps_last_tgid) {
		maps_last_tgid = tgid;
		maps_last_file = 0;
	}
	if (!f || !selected || (__u64)f == maps_last_file)
		return 0;
	/* --file, --mount: most mappings are none of theirs (file.bpf.h). */
	if ((cfg_flags & FILTER_HOLD_ON) && !is_hold_target(f->f_inode->i_sb->s_dev, f->f_inode->i_ino))
		return 0;
	/* The global function takes a number: one helper read makes it one. */
	return fill_file((__u64)BPF_CORE_READ(vma, vm_file), tgid, FD_MEM, false);
}

static __always_inline void map_written(struct vm_area_struct *vma)
{
	maps_last_file = (__u64)vma->vm_file;
}

#endif /* ITERSNAP_KIND_MAP_BPF_H */
