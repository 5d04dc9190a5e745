// SPDX-License-Identifier: GPL-2.0
/*
 * The seq backend: iter/task and iter/task_file programs that run the shared
 * walk (walk.bpf.h) once per thread and once per open file, writing binary
 * records to the iterator's seq_file. Works on every kernel from 5.8 on.
 */
#include "walk.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	union scratch *buf;
	__u32 size;

	if (!t || !task_selected(t))
		return 0;
	buf = scratch_buf();
	if (!buf)
		return 0;

	fill_task(t, &buf->task);
	bpf_seq_write(seq, &buf->task, sizeof(buf->task));

	if (want_stack(t)) {
		size = fill_stack(t, &buf->stack);
		if (size && size <= sizeof(buf->stack))
			bpf_seq_write(seq, &buf->stack, size);
	}
	return 0;
}

SEC("iter/task_file")
int dump_file(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	struct file *f = ctx->file;
	union scratch *buf;
	__u32 size, tgid;

	if (!t || !f)
		return 0;
	/* /proc/PID/fd is the leader's table; threads that unshared theirs are skipped. */
	tgid = BPF_CORE_READ(t, tgid);
	if (BPF_CORE_READ(t, pid) != tgid || !task_selected(t))
		return 0;
	buf = scratch_buf();
	if (!buf)
		return 0;

	size = fill_file(f, BPF_CORE_READ(t, files, fdt), tgid, ctx->fd, &buf->file);
	if (size <= sizeof(buf->file))
		bpf_seq_write(seq, &buf->file, size);
	return 0;
}
