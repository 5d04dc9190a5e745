// SPDX-License-Identifier: GPL-2.0
/*
 * The seq backend (every kernel from 5.8 on): its trigger programs
 * (trigger.bpf.h) capture the event's own tasks inside the event, with a
 * bounded fd loop the oldest verifiers accept; the rest of the snapshot
 * comes from the seq iterators (complete.bpf.h), read right after.
 */
#include "trigger.bpf.h"
#include "complete.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Without the open-coded task iterator, nothing more is reachable in the event. */
static __always_inline bool capture_more(__u64 deadline, __u32 trigger)
{
	return false;
}
