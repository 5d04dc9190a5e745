// SPDX-License-Identifier: GPL-2.0
/*
 * The program scripts/bench pins with `bpftool iter pin` and reads with
 * `cat`: the same facts as an itersnap snapshot with files (process identity
 * and every fd's path), as text, the way one would do it by hand with bpftool.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/task_file")
int dump_task_file(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	static char path[256];

	if (!task || !file)
		return 0;
	if (bpf_d_path(&file->f_path, path, sizeof(path)) < 0)
		path[0] = 0;
	BPF_SEQ_PRINTF(seq, "%d %d %s %d %s\n", task->tgid, task->real_parent->tgid,
		       task->comm, ctx->fd, path);
	return 0;
}
