// SPDX-License-Identifier: GPL-2.0
/*
 * The seq backend: iter/task and iter/task_file programs that run the shared
 * walk (walk.bpf.h) once per thread and once per open file, writing binary
 * records to the iterator's seq_file. Works on every kernel from 5.8 on.
 *
 * Its trigger programs (trigger.bpf.h) only report the event through the
 * ring buffer; user space then reads the iterators, so such a snapshot shows
 * the state just *after* the event.
 */
#include "trigger.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline void seq_emit(struct seq_file *seq, void *rec, __u64 size)
{
	/* Keep the bound check on the very register passed to the helper. */
	barrier_var(size);
	if (size == 0 || size > sizeof(union scratch))
		return;
	bpf_seq_write(seq, rec, size);
}

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	union scratch *buf;
	__u32 size;

	/* Iterators run in the reader's context: itersnap's own root. */
	if (!root_dentry)
		learn_root((struct task_struct *)bpf_get_current_task());
	if (!t || !task_selected(t))
		return 0;
	buf = scratch_buf();
	if (!buf)
		return 0;

	fill_task(t, &buf->task);
	seq_emit(seq, &buf->task, sizeof(buf->task));
	if (want_stack(t))
		seq_emit(seq, &buf->stack, fill_stack(t, &buf->stack));
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

	if (!root_dentry)
		learn_root((struct task_struct *)bpf_get_current_task());
	if (!t || !f)
		return 0;
	/* /proc/PID/fd is the leader's table; threads that unshared theirs are skipped. */
	tgid = BPF_CORE_READ(t, tgid);
	if (BPF_CORE_READ(t, pid) != tgid || !task_selected(t))
		return 0;
	/* fill_file() takes plain addresses: read the pointer as a number. */
	size = fill_file((__u64)BPF_CORE_READ(ctx, file), tgid, ctx->fd,
			 fd_cloexec(BPF_CORE_READ(t, files, fdt), ctx->fd));
	buf = scratch_buf();
	if (!buf || !size)
		return 0;
	/*
	 * The kernel's own d_path(), as /proc/PID/fd uses it, when iterator
	 * programs may call it: one helper call instead of a walk of probe
	 * reads. User space reloads without OPT_D_PATH where it is refused.
	 */
	if (cfg_flags & OPT_D_PATH)
		size = file_rec_set_text(&buf->file,
					 bpf_d_path(&f->f_path, buf->file.path, sizeof(buf->file.path)));
	seq_emit(seq, &buf->file, size);
	return 0;
}

/* Report the event; busy stays set until user space has read the iterators. */
static __always_inline void on_trigger(struct begin_rec *b)
{
	struct snap_stats *st = &stats[b->hdr.seq & (STATS_SLOTS - 1)];

	st->seq = b->hdr.seq;
	st->emitted = 1;
	st->dropped = 0;
	st->done = 0;
	if (bpf_ringbuf_output(&events, b, sizeof(*b), BPF_RB_FORCE_WAKEUP)) {
		st->dropped = 1;
		st->done = 1;
		busy = 0;
	}
}
