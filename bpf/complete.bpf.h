/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Completion: iter/task and iter/task_file programs that run the shared walk
 * (walk.bpf.h) once per thread and once per open file, writing records to
 * the iterator's seq_file. User space reads them right after an event (or
 * for a one-shot or a tick of --interval): the kernel reschedules between
 * tasks, so however many there are, no CPU is held for long. Records filled
 * here are marked as taken after the event, with the time they were taken.
 * Both objects include this file; it works on every kernel from 5.8 on.
 */
#ifndef COMPLETE_BPF_H
#define COMPLETE_BPF_H

#include "walk.bpf.h"

/*
 * Set by user space for one read at start: the iterator only learns the
 * reader's root (its context is itersnap's), which the trigger programs,
 * running in other tasks' contexts, need for their paths.
 */
__u32 learn_root_only = 0;

/*
 * Set before load: the iterators may give a process's cwd, root and
 * executable to bpf_d_path() (the seq object on kernels that allow it; an
 * object that defines WALK_SLOTS_WALKED always walks them, and holds no
 * code for it).
 */
const volatile __u32 cfg_iter_d_path = 0;

/*
 * A record to the seq_file; `max` is its buffer's size (seq_emit() passes
 * it). Returns 0 once it is written, else nonzero (-EOVERFLOW: the
 * seq_file is full and the object is shown again in the next read()).
 */
static __always_inline long seq_emit_rec(struct seq_file *seq, void *rec, __u64 size, __u64 max)
{
	/*
	 * Keep the bound check on the very register passed to the helper,
	 * and one check only: `size == 0 ||` made the compiler test size - 1,
	 * whose bound the 5.10 verifier does not carry back to size. A zero
	 * size writes nothing.
	 */
	barrier_var(size);
	if (size > max)
		return -1;
	return bpf_seq_write(seq, rec, size);
}

#define seq_emit(seq, rec, size) seq_emit_rec(seq, rec, size, sizeof(*(rec)))

/*
 * Iterators run in the reader's context: the first object of a pass
 * learns itersnap's own root, which the path walks stop at.
 */
static __always_inline void learn_root_once(void)
{
	if (!root_dentry)
		learn_root((struct task_struct *)bpf_get_current_task());
}

/*
 * Is this object a task to write? (Its first call learns the reader's root.)
 */
static __always_inline bool task_wanted(struct task_struct *t)
{
	learn_root_once();
	return !learn_root_only && t && task_selected(t);
}

/*
 * A task's record (with how far its files were written) and its stack;
 * for a leader its process record and its cwd, root and executable.
 */
static __always_inline int write_task(struct seq_file *seq, struct task_struct *t, __u32 capture,
				      __u32 fds_upto)
{
	union scratch *buf = scratch_buf();
	__u32 tgid = KREAD(t, tgid);
	int slots[3] = { FD_CWD, FD_RTD, FD_TXT };
	__u32 part = HOLDERS_PASS();
	__u32 size;

	if (!buf)
		return 0;
	/* Looking for holders, a task record only to say which fds are left. */
	if (part != HOLDERS_FILES || ((capture & CAPTURE_FILES) && fds_upto != FDS_ALL)) {
		fill_task(t, &buf->task, capture, fds_upto);
		seq_emit(seq, &buf->task, sizeof(buf->task));
	}
	if (part != HOLDERS_FILES && stack_selected(t))
		seq_emit(seq, &buf->stack, fill_stack(t, &buf->stack));
	if (part != HOLDERS_FILES && activity_selected(t))
		seq_emit(seq, &buf->activity, fill_activity(t, &buf->activity));
	if (KREAD(t, pid) != tgid)
		return 0;
	if (part != HOLDERS_FILES)
		seq_emit(seq, &buf->proc, fill_proc(leader_addr(t), tgid));
	for (int i = 0; i < 3; i++) {
		if (part == HOLDERS_IDENTITY && slots[i] != FD_TXT)
			continue;
#ifdef WALK_SLOTS_WALKED
		seq_emit(seq, &buf->file, fill_slot(leader_addr(t), tgid, slots[i]));
#else
		if (!cfg_iter_d_path) {
			seq_emit(seq, &buf->file, fill_slot(leader_addr(t), tgid, slots[i]));
			continue;
		}
		/* The kernel's own d_path(), as readlink /proc/PID/cwd uses it. */
		size = fill_slot_fields(leader_addr(t), tgid, slots[i]);
		struct path *path = slot_path(t, slots[i]);

		if (!size || !path)
			continue;
		size = file_rec_set_text(&buf->file,
					 bpf_d_path(path, buf->file.path, sizeof(buf->file.path)));
		seq_emit(seq, &buf->file, size);
#endif
	}
	return 0;
}

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!task_wanted(t))
		return 0;
	return write_task(ctx->meta->seq, t, 0, 0);
}

#ifdef WALK_USE_BPF_FOR
/*
 * Every thread, and each process's open files with it, in one pass: the
 * fd table walked with bpf_for (6.4+; capture_fds() in trigger.bpf.h, which
 * the open-coded object includes first), without the per-file cost of
 * iter/task_file. The kernel still reschedules between tasks: one object is
 * one task, at most STAGE_BYTES of file records. What does not fit, what is
 * past the bitmap bound and paths deeper than the walk's bound are left to
 * iter/task_file, from the fd its record names (CAPTURE_FILES, fds_upto).
 */
SEC("iter/task")
int dump_task_files(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	struct fd_stage *st = fd_stage();
	__u32 capture = 0, fds_upto = 0, used;

	if (!task_wanted(t) || !st)
		return 0;
	st->used = 0;
	if ((cfg_flags & OPT_FILES) && KREAD(t, pid) == KREAD(t, tgid) &&
	    HOLDERS_PASS() != HOLDERS_IDENTITY) {
		fds_upto = capture_fds((__u64)BPF_CORE_READ(t, files), KREAD(t, tgid), ~0ULL,
				       FDS_TO_STAGE);
		capture = CAPTURE_FILES;
		used = st->used;
		if (used > STAGE_BYTES)
			used = STAGE_BYTES;
		/* Keep the bound on the very register passed to the helper. */
		barrier_var(used);
		bpf_seq_write(seq, st->data, used);
	}
	return write_task(seq, t, capture, fds_upto);
}
#endif

/*
 * Each process's command line (kinds/cmdline.bpf.h), in chunks, and with
 * --ustacks each wanted thread's user stack (kinds/ustack.bpf.h): a
 * sleepable iterator (Linux 5.18+), the only kind of program that may read
 * another process's memory, faulting its pages in. User space loads it
 * where the kernel has bpf_copy_from_user_task().
 */
SEC("iter.s/task")
int dump_cmdline(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	struct mm_struct *mm;
	__u32 tgid;

	learn_root_once();
	if (learn_root_only || !t)
		return 0;
	tgid = KREAD(t, tgid);
	mm = KREAD(t, mm);
	/* Kernel threads have none (a borrowed mm is not theirs). */
	if (!mm || (KREAD(t, flags) & PF_KTHREAD))
		return 0;
	/* Other threads only for their user stacks (a .rodata switch). */
	if (!(cfg_flags & OPT_USTACKS) && KREAD(t, pid) != tgid)
		return 0;
	if (!user_task_selected(t))
		return 0;
	/* --ustacks: each wanted thread's user stack, its memory read as its
	 * command line is (this iterator visits every thread). */
	if (want_ustack(t))
		seq_emit(seq, &ustack_buf, fill_ustack_walk(t, &ustack_buf));
	if (KREAD(t, pid) != tgid || (cfg_flags & OPT_NO_CMDLINE))
		return 0;
	cmdline_cur = cmdline_span(t, mm);
	/*
	 * bpf_for (6.4+) is verified until its states converge, a bounded loop
	 * once per chunk.
	 */
#ifdef WALK_USE_BPF_FOR
	int i;

	bpf_for(i, 0, CMDLINE_CHUNKS) {
#else
	for (__u32 i = 0; i < CMDLINE_CHUNKS; i++) {
#endif
		__u32 size = fill_cmdline_chunk(t, &cmdline_cur, tgid, i);

		if (!size)
			break;
		seq_emit(seq, &cmdline_buf, size);
	}
	return 0;
}

/*
 * Is t's process selected? Asked once per process: its mappings come in a
 * row (a COMM match is not free).
 */
__u32 maps_selected_tgid = 0;
__u32 maps_selected = 0;

static __always_inline bool maps_process_selected(struct task_struct *t)
{
	__u32 tgid = KREAD(t, tgid);

	if (tgid != maps_selected_tgid) {
		maps_selected_tgid = tgid;
		maps_selected = task_selected(t);
	}
	return maps_selected;
}

/*
 * --maps: each mapping of each process (Linux 5.12+); kinds/map.bpf.h keeps
 * one record per file of consecutive mappings.
 */
SEC("iter/task_vma")
int dump_maps(struct bpf_iter__task_vma *ctx)
{
	struct task_struct *t = ctx->task;
	struct vm_area_struct *vma = ctx->vma;
	union scratch *buf;
	__u32 size;

	learn_root_once();
	if (!t || !vma || learn_root_only)
		return 0;
	size = fill_map(t, vma, ctx->meta->seq_num == 0, maps_process_selected(t));
	buf = scratch_buf();
	if (buf && size && !seq_emit(ctx->meta->seq, &buf->file, size))
		map_written(vma);
	/* Not a file --file or --mount names: its next mappings are not either. */
	else if (!size && (cfg_flags & FILTER_HOLD_ON))
		map_written(vma);
	return 0;
}

/*
 * One open file of one process. With `d_path` its path is the kernel's own
 * d_path(), as /proc/PID/fd uses it: one helper call instead of a walk of
 * probe reads; else the walk's (walk.bpf.h).
 */
static __always_inline int dump_one_file(struct bpf_iter__task_file *ctx, bool d_path)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	struct file *f = ctx->file;
	union scratch *buf;
	struct sock_rec *sr;
	__u32 size, sock_size, tgid;
	__u64 file_addr;
	bool cloexec;

	learn_root_once();
	if (!t || !f)
		return 0;
	/* /proc/PID/fd is the leader's table; threads that unshared theirs are skipped. */
	tgid = KREAD(t, tgid);
	if (KREAD(t, pid) != tgid || !task_selected(t))
		return 0;
	/* fill_file() takes plain addresses: read the pointer as a number. */
	file_addr = (__u64)BPF_CORE_READ(ctx, file);
	cloexec = fd_cloexec(KREAD(t, files, fdt), ctx->fd);
	if (d_path)
		size = fill_file_fields(file_addr, tgid, ctx->fd, cloexec);
	else
		size = fill_file(file_addr, tgid, ctx->fd, cloexec);
	buf = scratch_buf();
	if (!buf || !size)
		return 0;
	if (d_path)
		size = file_rec_set_text(&buf->file,
					 bpf_d_path(&f->f_path, buf->file.path, sizeof(buf->file.path)));
	sock_size = fill_socket(file_addr, tgid, ctx->fd, buf->file.ino, buf->file.magic);
	if (!fd_kept(sock_size))
		return 0;
	seq_emit(seq, &buf->file, size);
	sr = sock_buf();
	if (sock_size && sr)
		seq_emit(seq, sr, sock_size);
	return 0;
}

/*
 * Two programs, one loaded: paths from bpf_d_path() where the kernel lets
 * iterator programs call it, else from the walk (user space loads the
 * second where the first is refused).
 */
SEC("iter/task_file")
int dump_file(struct bpf_iter__task_file *ctx)
{
	return dump_one_file(ctx, true);
}

SEC("iter/task_file")
int dump_file_walk(struct bpf_iter__task_file *ctx)
{
	return dump_one_file(ctx, false);
}

#endif /* COMPLETE_BPF_H */
