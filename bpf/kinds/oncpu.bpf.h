/* SPDX-License-Identifier: GPL-2.0 */
/*
 * On-CPU samples (kinds/oncpu.h): the stacks of whatever a CPU runs when
 * its CPU-clock perf event fires, kept as that CPU's latest sample for the
 * next snapshot, which takes them for a thread it finds on a CPU (whose
 * stacks no walk can read). Filled from the interrupted context's
 * registers, as perf's callchains: the kernel stack of the interrupted
 * code, the user stack from the registers the kernel entry saved (frame
 * pointers, as bpf_get_stack() walks them).
 */
#ifndef ITERSNAP_KIND_ONCPU_BPF_H
#define ITERSNAP_KIND_ONCPU_BPF_H

#include "base.bpf.h"
#include <bpf/bpf_tracing.h>

/* See _task_rec_btf. */
struct oncpu_sample _oncpu_sample_btf = {};

/* One sample per CPU, indexed by CPU; sized by user space (1 when off). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oncpu_sample);
} oncpu_samples SEC(".maps");

static __always_inline long oncpu_frames(long bytes)
{
	return bytes < 0 ? 0 : bytes / sizeof(__u64);
}

/* The stacks the interrupted context (ctx, a perf_event program's) runs. */
static __always_inline void fill_oncpu_sample(struct bpf_perf_event_data *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 id = bpf_get_current_pid_tgid();
	struct oncpu_sample *s;
	__u64 seq;

	s = bpf_map_lookup_elem(&oncpu_samples, &cpu);
	if (!s)
		return;
	seq = s->seq_end + 1;
	s->seq = seq;
	barrier();
	s->time_ns = bpf_ktime_get_ns();
	s->tid = (__u32)id;
	s->tgid = id >> 32;
	s->cpu = cpu;
	s->flags = 0;
	s->nr_kips = 0;
	s->nr_uips = 0;
	/* No kernel frames when it was interrupted in user mode. */
	if (s->tid && (cfg_flags & OPT_STACKS)) {
		s->flags |= ONCPU_KSTACK;
		s->nr_kips = oncpu_frames(bpf_get_stack(ctx, s->kips, sizeof(s->kips), 0));
	}
	if (s->tid && (cfg_flags & OPT_USTACKS)) {
		s->flags |= ONCPU_USTACK;
		s->nr_uips = oncpu_frames(
			bpf_get_stack(ctx, s->uips, sizeof(s->uips), BPF_F_USER_STACK));
	}
	barrier();
	s->seq_end = seq;
}

#endif /* ITERSNAP_KIND_ONCPU_BPF_H */
