/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every kind's fill functions share, and nothing else: the load-time
 * options, the reader's root, the scratch and copy buffers, the CO-RE span
 * helpers and the record header. The bottom of the BPF side's layers:
 *
 *   itersnap.h, kinds/<kind>.h    record layouts (the contract with user space)
 *   base.bpf.h                    this file
 *   kinds/<kind>.bpf.h            one kind's fill functions; they include
 *                                 base.bpf.h and the kinds they build on
 *   select.bpf.h                  which tasks a snapshot selects (COMM, --pid)
 *   walk.bpf.h                    every kind and the selection, for the walks
 *   trigger.bpf.h, complete.bpf.h the walks: in the event, and after it
 *   opencoded.bpf.c, seqiter.bpf.c the two objects
 *
 * Each includes only those below it (tests/layers.rs checks the includes).
 * Everything is read with CO-RE (KREAD() below) so that the same object loads
 * on every kernel from 5.8 on, whatever the layout of the structures.
 */
#ifndef BASE_BPF_H
#define BASE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "itersnap.h"

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((void *)(ptr) - __builtin_offsetof(type, member)))
#endif

/*
 * KREAD(src, a, b, ...): src->a->b... of kernel memory, as BPF_CORE_READ()
 * reads it (CO-RE relocated, 0 where the memory cannot be read). Where the
 * object defines WALK_DIRECT_READS (the open-coded one: bpf_rdonly_cast() is
 * 6.2+), src is cast to its kernel type and every hop is one load, which
 * the JIT guards with an exception-table entry (BPF_PROBE_MEM), instead of
 * a bpf_probe_read_kernel() call: those calls were a quarter of the CPU of
 * a walk. A pointer read this way is a kernel-typed pointer to the
 * verifier, not a number: for reads, comparisons and helpers that take
 * anything, not for arithmetic nor for a global function's argument
 * (BPF_CORE_READ() for those).
 */
#ifdef WALK_DIRECT_READS
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

/*
 * The kernel's BTF ids of the types KREAD() starts from, set before load
 * (src/backend/open_coded.rs): libbpf would relocate
 * bpf_core_type_id_kernel() into the reduced BTF it is given for CO-RE
 * (src/backend/core_btf.rs), whose ids are not the kernel's.
 */
#define KERNEL_TYPES(X)                                                            \
	X(task_struct) X(signal_struct) X(cred) X(mm_struct) X(tty_struct)           \
	X(tty_driver) X(pid) X(upid) X(kernfs_node) X(fs_struct) X(dentry)           \
	X(dentry_operations) X(inode) X(ns_common) X(super_block) X(file) X(fdtable) \
	X(vfsmount) X(socket) X(socket_alloc) X(sock) X(net) X(unix_sock)                \
	X(unix_address) X(tcp_sock) X(udp_sock)
#define KERNEL_TYPE_ID(type) const volatile __u32 kid_##type = 0;
KERNEL_TYPES(KERNEL_TYPE_ID)
#define KERNEL_TYPE_CASE(type) struct type: kid_##type,
/* A type missing from KERNEL_TYPES is a compile error here. */
#define KERNEL_ID_OF(src) _Generic(*(src), KERNEL_TYPES(KERNEL_TYPE_CASE) struct rec_hdr: 0)

#define DIRECT_READS 1
/* A number as a pointer to the kernel type `struct type` (in KERNEL_TYPES). */
#define KCAST(addr, type) ((struct type *)bpf_rdonly_cast((void *)(addr), kid_##type))
#define KREAD(src, a, ...)                                                       \
	(((typeof(*(src)) *)bpf_rdonly_cast((src), KERNEL_ID_OF(src)))              \
		 ->___arrow(a, ##__VA_ARGS__))
#else
#define DIRECT_READS 0
#define KCAST(addr, type) ((struct type *)(addr))
#define KREAD(src, a, ...) BPF_CORE_READ(src, a, ##__VA_ARGS__)
#endif

/* Set by user space before load; constant to the verifier (OPT_*, FILTER_*). */
const volatile __u32 cfg_flags = 0;

/* Sequence number stamped on every record; user space sets it per snapshot. */
__u32 snapshot_seq = 0;

/*
 * The reader's root (itersnap's fs->root, learnt in its own context): a path
 * walk stops there, as d_path() stops at the root of the process that reads
 * /proc/PID/fd. Inside a chroot or container this is not the mount tree's.
 */
__u64 root_dentry = 0;
__u64 root_mnt = 0;

static __always_inline void learn_root(struct task_struct *reader)
{
	root_dentry = (__u64)BPF_CORE_READ(reader, fs, root.dentry);
	root_mnt = (__u64)BPF_CORE_READ(reader, fs, root.mnt);
}

/*
 * One record under construction per CPU: records are too big for the stack.
 * Shared by every kind, so it names every record type (one per-CPU buffer,
 * as large as the largest record, instead of one map per kind).
 */
union scratch {
	struct task_rec task;
	struct file_rec file;
	/* A path walk reads a name of up to NAME_BUF bytes at any offset of
	 * file.path below PATH_BUF: room for it past the record's end. */
	char file_slack[sizeof(struct file_rec) + NAME_BUF];
	struct stack_rec stack;
	struct activity_rec activity;
	struct proc_rec proc;
	/* The cgroup walk reads a name at any offset of proc.cgroup likewise. */
	char proc_slack[sizeof(struct proc_rec) + NAME_BUF];
	struct begin_rec begin;
	struct end_rec end;
	/* A trigger's own details, and its task's command line. */
	struct event_rec event;
	struct cmdline_rec cmdline;
	struct ustack_rec ustack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union scratch);
} scratch_map SEC(".maps");

static __always_inline union scratch *scratch_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch_map, &zero);
}

/* A per-CPU copy of one kernel structure (struct file, struct inode). */
#define COPY_BYTES 1024
struct struct_copy {
	char data[COPY_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct struct_copy);
} copy_map SEC(".maps");

static __always_inline struct struct_copy *copy_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&copy_map, &zero);
}

/* Where `field` of `type` ends in this kernel's layout (a CO-RE constant). */
#define FIELD_END(type, field) \
	(bpf_core_field_offset(type, field) + bpf_core_field_size(type, field))
#define MAX2(a, b) ((a) > (b) ? (a) : (b))

/* Field `field` of a `type` copied to `buf`, at its offset in this kernel. */
#define COPIED(buf, type, field)                                                  \
	(*(typeof(((type *)0)->field) *)((void *)(buf) +                        \
					  bpf_core_field_offset(type, field)))

static __always_inline void set_hdr(struct rec_hdr *h, __u16 kind, __u16 size)
{
	h->kind = kind;
	h->size = size;
	h->seq = snapshot_seq;
}

#endif /* BASE_BPF_H */
