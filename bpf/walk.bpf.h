/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The walk: how one task, one open file and one kernel stack become records
 * (bpf/itersnap.h). Shared by every BPF program of every backend; a backend
 * only decides how tasks and files are visited and where the bytes go.
 *
 * Everything is read with CO-RE probe reads so that the same object loads on
 * every kernel from 5.8 on, whatever the layout of the structures.
 */
#ifndef WALK_BPF_H
#define WALK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "itersnap.h"

/* Superblock magics whose dentries carry a synthetic name (d_op->d_dname). */
#define NSFS_MAGIC 0x6e736673

#define PF_KTHREAD 0x00200000

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((void *)(ptr) - __builtin_offsetof(type, member)))
#endif

/* Set by user space before load; constant to the verifier. */
const volatile __u32 cfg_flags = 0;
const volatile __u32 cfg_pid = 0;
const volatile char cfg_comm[COMM_LEN] = {};

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

/* One record under construction per CPU: records are too big for the stack. */
union scratch {
	struct task_rec task;
	struct file_rec file;
	struct stack_rec stack;
	struct begin_rec begin;
	struct end_rec end;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union scratch);
} scratch_map SEC(".maps");

/*
 * Globals of each record type, never used: libbpf-cargo only emits Rust
 * types for structs present in the object's BTF.
 */
struct task_rec _task_rec_btf = {};
struct file_rec _file_rec_btf = {};
struct stack_rec _stack_rec_btf = {};

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

/*
 * The prefixes of struct file, inode and dentry that hold every field the
 * walk reads: copied with one probe read each. Copying the whole structures
 * cost more than the reads they saved (an inode is ~600 bytes; i_private,
 * needed only for namespaces, sits at its end and is read on its own).
 */
#define FILE_SPAN                                                                  \
	MAX2(MAX2(FIELD_END(struct file, f_flags), FIELD_END(struct file, f_mode)),  \
	     MAX2(MAX2(FIELD_END(struct file, f_pos), FIELD_END(struct file, f_inode)), \
		  FIELD_END(struct file, f_path)))
#define INODE_SPAN                                                                   \
	MAX2(MAX2(FIELD_END(struct inode, i_mode), FIELD_END(struct inode, i_ino)),    \
	     MAX2(FIELD_END(struct inode, i_size), FIELD_END(struct inode, i_sb)))
#define DENTRY_SPAN MAX2(FIELD_END(struct dentry, d_parent), FIELD_END(struct dentry, d_name))
/* The leaf dentry also gives its operations and hash link (d_dname, d_unlinked). */
#define LEAF_SPAN \
	MAX2(DENTRY_SPAN, MAX2(FIELD_END(struct dentry, d_op), FIELD_END(struct dentry, d_hash)))
#define SB_SPAN MAX2(FIELD_END(struct super_block, s_magic), FIELD_END(struct super_block, s_dev))

/* Field `field` of a `type` copied to `buf`, at its offset in this kernel. */
#define COPIED(buf, type, field)                                                  \
	(*(typeof(((type *)0)->field) *)((void *)(buf) +                        \
					  bpf_core_field_offset(type, field)))

/* Older kernels name the state field `state` (renamed __state in 5.14). */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline __u32 task_state_raw(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/* COMM filter: exact match on the process (group leader) name, like pgrep -x. */
static __always_inline bool comm_matches(struct task_struct *t)
{
	char comm[COMM_LEN];

	BPF_CORE_READ_STR_INTO(&comm, t, group_leader, comm);
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != cfg_comm[i])
			return false;
		if (comm[i] == '\0')
			return true;
	}
	return true;
}

/* In-kernel filters: is this task (thread) part of the snapshot? */
static __always_inline bool task_selected(struct task_struct *t)
{
	if ((cfg_flags & FILTER_PID_ON) && BPF_CORE_READ(t, tgid) != cfg_pid)
		return false;
	if ((cfg_flags & FILTER_COMM_ON) && !comm_matches(t))
		return false;
	return true;
}

static __always_inline void set_hdr(struct rec_hdr *h, __u16 kind, __u16 size)
{
	h->kind = kind;
	h->size = size;
	h->seq = snapshot_seq;
}

/* `capture` and `fds_upto`: where the record is filled (enum capture_flags). */
static __always_inline void fill_task(struct task_struct *t, struct task_rec *r, __u32 capture,
				      __u32 fds_upto)
{
	const struct cred *cred = BPF_CORE_READ(t, real_cred);
	struct signal_struct *sig = BPF_CORE_READ(t, signal);

	set_hdr(&r->hdr, REC_TASK, sizeof(*r));
	r->pid = BPF_CORE_READ(t, pid);
	r->tgid = BPF_CORE_READ(t, tgid);
	r->ppid = BPF_CORE_READ(t, real_parent, tgid);
	r->uid = BPF_CORE_READ(cred, uid.val);
	r->euid = BPF_CORE_READ(cred, euid.val);
	r->gid = BPF_CORE_READ(cred, gid.val);
	r->state = task_state_raw(t);
	r->exit_state = BPF_CORE_READ(t, exit_state);
	r->flags = BPF_CORE_READ(t, flags);
	r->nr_threads = BPF_CORE_READ(sig, nr_threads);
	r->utime_ns = BPF_CORE_READ(t, utime);
	r->stime_ns = BPF_CORE_READ(t, stime);
	r->runtime_ns = BPF_CORE_READ(t, se.sum_exec_runtime);
	r->dead_utime_ns = BPF_CORE_READ(sig, utime);
	r->dead_stime_ns = BPF_CORE_READ(sig, stime);
	r->dead_runtime_ns = BPF_CORE_READ(sig, sum_sched_runtime);
	r->start_ns = BPF_CORE_READ(t, start_time);
	BPF_CORE_READ_STR_INTO(&r->comm, t, comm);
	r->capture = capture;
	r->fds_upto = fds_upto;
	r->taken_ns = bpf_ktime_get_ns();
}

/* Is a kernel stack wanted for this thread? Leaders only, unless --threads. */
static __always_inline bool want_stack(struct task_struct *t)
{
	if (!(cfg_flags & OPT_STACKS))
		return false;
	return (cfg_flags & OPT_THREADS) || BPF_CORE_READ(t, pid) == BPF_CORE_READ(t, tgid);
}

/*
 * Fill a stack record; returns its size, or 0 when the kernel has no
 * bpf_get_task_stack (before 5.9: the call is removed at load time).
 */
static __always_inline __u32 fill_stack(struct task_struct *t, struct stack_rec *r)
{
	long n = 0;

	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_task_stack))
		return 0;
	n = bpf_get_task_stack(t, r->ips, sizeof(r->ips), 0);
	if (n < 0)
		n = 0;
	n /= sizeof(__u64);
	if (n > STACK_MAX_DEPTH)
		n = STACK_MAX_DEPTH;
	r->pid = BPF_CORE_READ(t, pid);
	r->nr_ips = n;
	set_hdr(&r->hdr, REC_STACK, offsetof(struct stack_rec, ips) + n * sizeof(__u64));
	return r->hdr.size;
}

/* Where a path walk is: one step per dentry or mount crossed. */
struct path_walk {
	struct file_rec *r;
	struct dentry *d;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *mnt_root; /* vfsmnt->mnt_root, read once per mount */
	/* d's parent and name when already read (the leaf: fill_path read it) */
	struct dentry *parent;
	const unsigned char *name;
	__u32 done; /* reached the root (or failed: see r->path_flags) */
};

/*
 * One step up from w->d: append its name, or cross to the parent mount, or
 * stop at the reader's root or the mount tree's. Returns 1 to stop. The
 * write position lives in the record (memory, not registers) so that the
 * verifier sees one state per step instead of one per branch taken.
 */
static long path_step(__u32 i, void *arg)
{
	/* Copied out first: CO-RE relocates kernel types, not this local one. */
	struct path_walk *w = arg;
	struct file_rec *r = w->r;
	struct dentry *d = w->d;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = w->mnt_root;
	struct struct_copy *c = copy_buf();
	struct dentry *parent;
	const unsigned char *name;
	__u32 off;
	long n;

	/* The dentry's parent and name: known already, or one read, not two. */
	if (w->name) {
		parent = w->parent;
		name = w->name;
		w->name = NULL;
	} else if (!c || DENTRY_SPAN > COPY_BYTES ||
		   bpf_probe_read_kernel(c->data, DENTRY_SPAN, d)) {
		parent = BPF_CORE_READ(d, d_parent);
		name = BPF_CORE_READ(d, d_name.name);
	} else {
		parent = COPIED(c->data, struct dentry, d_parent);
		name = COPIED(c->data, struct dentry, d_name.name);
	}

	if ((__u64)d == root_dentry && (__u64)vfsmnt == root_mnt) {
		w->done = 1;
		return 1;
	}
	if (d == mnt_root || d == parent) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		/* Root of the mount tree, or a disconnected dentry. */
		if (d != mnt_root || up == mnt || !up) {
			w->done = 1;
			return 1;
		}
		w->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&up->mnt);
		w->vfsmnt = vfsmnt;
		w->mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		return 0;
	}
	off = r->path_len;
	if (off > PATH_BUF - NAME_BUF)
		return 1;
	n = bpf_probe_read_kernel_str(&r->path[off], NAME_BUF, name);
	if (n <= 0 || n > NAME_BUF) {
		r->path_flags |= PATH_FAULT;
		w->done = 1;
		return 1;
	}
	r->path_len = off + n;
	w->d = parent;
	return 0;
}

/*
 * Path of an open file as d_path() would print it, built from dentries and
 * mounts: components leaf first, NUL-terminated, crossing mount points up to
 * the reader's root (or the root of the mount tree).
 */
static __always_inline void fill_path(struct dentry *d, struct vfsmount *vfsmnt,
				      struct inode *inode, struct file_rec *r)
{
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	struct struct_copy *c = copy_buf();
	const struct dentry_operations *d_op;
	const unsigned char *leaf_name;
	struct dentry *parent;
	void *hashed;

	r->path_len = 0;
	r->path_flags = 0;

	if (c && LEAF_SPAN <= COPY_BYTES && !bpf_probe_read_kernel(c->data, LEAF_SPAN, d)) {
		d_op = COPIED(c->data, struct dentry, d_op);
		leaf_name = COPIED(c->data, struct dentry, d_name.name);
		parent = COPIED(c->data, struct dentry, d_parent);
		hashed = COPIED(c->data, struct dentry, d_hash.pprev);
	} else {
		d_op = BPF_CORE_READ(d, d_op);
		leaf_name = BPF_CORE_READ(d, d_name.name);
		parent = BPF_CORE_READ(d, d_parent);
		hashed = BPF_CORE_READ(d, d_hash.pprev);
	}

	if (d_op && BPF_CORE_READ(d_op, d_dname)) {
		const char *name = (const char *)leaf_name;
		long n;

		if (r->magic == NSFS_MAGIC) {
			struct ns_common *ns = BPF_CORE_READ(inode, i_private);

			name = BPF_CORE_READ(ns, ops, name);
		}
		n = bpf_probe_read_kernel_str(r->path, NAME_BUF, name);
		if (n > 0)
			r->path_len = n;
		else
			r->path_flags |= PATH_FAULT;
		r->path_flags |= PATH_DNAME;
		return;
	}

	/* d_unlinked(): unhashed and not a root dentry. */
	if (!hashed && parent != d)
		r->path_flags |= PATH_DELETED;

	struct path_walk w = {
		.r = r,
		.d = d,
		.vfsmnt = vfsmnt,
		.mnt = mnt,
		.mnt_root = BPF_CORE_READ(vfsmnt, mnt_root),
		.parent = parent,
		.name = leaf_name,
	};
	/*
	 * bpf_loop (5.17+) verifies the step once; a bounded loop verifies it at
	 * each iteration. The choice is made at compile time, not with a CO-RE
	 * check: a kernel without bpf_loop (5.10) refuses the callback reference
	 * even in dead code. The open-coded object (6.7+) asks for bpf_loop.
	 */
#ifdef WALK_USE_BPF_LOOP
	bpf_loop(PATH_MAX_DEPTH, path_step, &w, 0);
#else
	for (int i = 0; i < PATH_MAX_DEPTH; i++)
		if (path_step(i, &w))
			break;
#endif
	if (!w.done)
		r->path_flags |= PATH_TRUNCATED;
}

/* Seals a file record: header plus the used path bytes, 8-aligned. */
static __always_inline __u32 file_rec_size(struct file_rec *r)
{
	__u32 size = offsetof(struct file_rec, path) + ((r->path_len + 7) & ~7);

	if (size > sizeof(*r))
		size = sizeof(*r);
	set_hdr(&r->hdr, REC_FILE, size);
	return size;
}

/*
 * The path as bpf_d_path() returned it (len bytes with the NUL, or an
 * error): the very text readlink shows, " (deleted)" and synthetic names
 * included. Returns the record's new size.
 */
static __always_inline __u32 file_rec_set_text(struct file_rec *r, long len)
{
	if (len > 0 && len <= PATH_BUF) {
		r->path_len = len;
		r->path_flags = PATH_TEXT;
	} else {
		r->path_len = 0;
		r->path_flags = PATH_FAULT;
	}
	return file_rec_size(r);
}

#define O_CLOEXEC_FLAG 02000000

/*
 * Is close-on-exec set for fd? It lives in the fd table, not in f_flags. The
 * open-coded walk reads the bitmap a word per 64 fds instead (capture_fds).
 */
static __always_inline bool fd_cloexec(struct fdtable *fdt, int fd)
{
	unsigned long *bits = BPF_CORE_READ(fdt, close_on_exec);
	unsigned long word = 0;

	if (fd < 0 || bpf_probe_read_kernel(&word, sizeof(word), bits + fd / 64))
		return false;
	return word & (1UL << (fd % 64));
}

/*
 * Fill the CPU's scratch file record; returns its size (header plus used path
 * bytes, 8-aligned), 0 on failure. f_flags gets O_CLOEXEC when the caller
 * found it in the fd table (`cloexec`), as /proc/PID/fdinfo shows it.
 * Without `build_path` the caller writes the path (file_rec_set_text()).
 */
static __always_inline __u32 fill_file_rec(__u64 file_addr, __u32 tgid, int fd, bool cloexec,
					   bool build_path)
{
	struct file *f = (struct file *)file_addr;
	union scratch *buf = scratch_buf();
	struct struct_copy *c = copy_buf();
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct inode *inode;
	struct super_block *sb;
	struct file_rec *r;
	__u32 size;

	if (!buf || !c)
		return 0;
	r = &buf->file;
	r->pid = tgid;
	r->fd = fd;
	/*
	 * One probe read per structure instead of one per field: the file and
	 * its inode are copied whole (their sizes and the fields' offsets are
	 * CO-RE constants for the running kernel), then read locally.
	 */
	if (FILE_SPAN <= COPY_BYTES && INODE_SPAN <= COPY_BYTES) {
		if (bpf_probe_read_kernel(c->data, FILE_SPAN, f))
			return 0;
		r->f_flags = COPIED(c->data, struct file, f_flags);
		r->f_mode = COPIED(c->data, struct file, f_mode);
		r->pos = COPIED(c->data, struct file, f_pos);
		inode = COPIED(c->data, struct file, f_inode);
		dentry = COPIED(c->data, struct file, f_path.dentry);
		vfsmnt = COPIED(c->data, struct file, f_path.mnt);
		if (bpf_probe_read_kernel(c->data, INODE_SPAN, inode))
			return 0;
		r->i_mode = COPIED(c->data, struct inode, i_mode);
		r->ino = COPIED(c->data, struct inode, i_ino);
		r->size = COPIED(c->data, struct inode, i_size);
		sb = COPIED(c->data, struct inode, i_sb);
	} else {
		r->f_flags = BPF_CORE_READ(f, f_flags);
		r->f_mode = BPF_CORE_READ(f, f_mode);
		r->pos = BPF_CORE_READ(f, f_pos);
		inode = BPF_CORE_READ(f, f_inode);
		dentry = BPF_CORE_READ(f, f_path.dentry);
		vfsmnt = BPF_CORE_READ(f, f_path.mnt);
		r->i_mode = BPF_CORE_READ(inode, i_mode);
		r->ino = BPF_CORE_READ(inode, i_ino);
		r->size = BPF_CORE_READ(inode, i_size);
		sb = BPF_CORE_READ(inode, i_sb);
	}
	if (cloexec)
		r->f_flags |= O_CLOEXEC_FLAG;
	if (SB_SPAN <= COPY_BYTES && !bpf_probe_read_kernel(c->data, SB_SPAN, sb)) {
		r->magic = COPIED(c->data, struct super_block, s_magic);
		r->dev = COPIED(c->data, struct super_block, s_dev);
	} else {
		r->magic = BPF_CORE_READ(sb, s_magic);
		r->dev = BPF_CORE_READ(sb, s_dev);
	}
	r->path_len = 0;
	r->path_flags = 0;
	if (build_path)
		fill_path(dentry, vfsmnt, inode, r);
	return file_rec_size(r);
}

/*
 * The two ways to call it, as global functions: the verifier checks each
 * once, on its own, instead of at every call site inside the nested fd and
 * task loops. Two, not one with a flag, so that a program verifies only the
 * one it calls: the path walk's bounded loop (seq object) is costly to
 * verify and iterators that use bpf_d_path() never need it. Their pointers
 * come as plain numbers because they only ever read them through probe
 * reads.
 */
__noinline __u32 fill_file(__u64 file_addr, __u32 tgid, int fd, bool cloexec)
{
	return fill_file_rec(file_addr, tgid, fd, cloexec, true);
}

/* The same without the path: for iterator programs that call bpf_d_path(). */
__noinline __u32 fill_file_fields(__u64 file_addr, __u32 tgid, int fd, bool cloexec)
{
	return fill_file_rec(file_addr, tgid, fd, cloexec, false);
}

#endif /* WALK_BPF_H */
