/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Open files: how one open file becomes a file record (kinds/file.h): its
 * struct file, inode and super_block fields, and its path, from the
 * kernel's d_path() (file_rec_set_text()) or walked here from dentries and
 * mounts. Its own file so that everything about this kind of data sits
 * together, layout and fill functions, over the machinery every kind
 * shares (base.bpf.h: scratch and copy buffers, COPIED(), the reader's
 * root, set_hdr()).
 */
#ifndef ITERSNAP_KIND_FILE_BPF_H
#define ITERSNAP_KIND_FILE_BPF_H

#include "base.bpf.h"

/* Superblock magics whose dentries carry a synthetic name (d_op->d_dname). */
#define NSFS_MAGIC 0x6e736673

/*
 * A global of the record type, never used: libbpf-cargo only emits Rust
 * types for structs present in the object's BTF (src/record.rs checks the
 * offsets against them).
 */
struct file_rec _file_rec_btf = {};

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

/*
 * Where a path walk is: one step per dentry or mount crossed. With bpf_loop
 * it is kept per CPU, not on the caller's stack: what the verifier learns
 * of a stack slot stays with it from one step to the next, so that the
 * step's states took a hundred rounds to converge (2,164 verified
 * instructions in dump_task_files, 412 from a map). Per CPU like the
 * record it writes (scratch_map): a trigger walks only when no completion
 * is running (the single flight, `busy`), and the iterators that walk paths
 * are read one after another. A bounded loop verifies each step anyway:
 * there the stack costs less.
 */
struct path_walk {
	struct dentry *d;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *mnt_root; /* vfsmnt->mnt_root, read once per mount */
	/* d's parent and name when already read (the leaf: fill_path read it) */
	struct dentry *parent;
	const unsigned char *name;
	__u32 done; /* reached the root (or failed: see r->path_flags) */
};

#ifdef WALK_USE_BPF_LOOP
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_walk);
} walk_map SEC(".maps");
#endif

/*
 * One step up from w->d: append its name, or cross to the parent mount, or
 * stop at the reader's root or the mount tree's. Returns 1 to stop. The
 * write position lives in the record (memory, not registers) so that the
 * verifier sees one state per step instead of one per branch taken.
 */
static __always_inline long path_step(struct path_walk *w, struct file_rec *r)
{
	/* Copied out first: CO-RE relocates kernel types, not this local one. */
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
	} else if (DIRECT_READS || !c || DENTRY_SPAN > COPY_BYTES ||
		   bpf_probe_read_kernel(c->data, DENTRY_SPAN, d)) {
		parent = KREAD(d, d_parent);
		name = KREAD(d, d_name.name);
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
		w->d = KCAST(BPF_CORE_READ(mnt, mnt_mountpoint), dentry);
		w->mnt = up;
		vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&up->mnt);
		w->vfsmnt = vfsmnt;
		w->mnt_root = KREAD(vfsmnt, mnt_root);
		return 0;
	}
	/*
	 * A name may be read past path[PATH_BUF - 1]: union scratch has room
	 * for NAME_BUF more bytes. A path that would not fit in PATH_BUF bytes
	 * (the text and its NUL) is one d_path() cannot give either: it keeps
	 * the components that fit and is marked truncated.
	 */
	off = r->path_len;
	if (off > PATH_BUF - 1)
		return 1;
	n = bpf_probe_read_kernel_str(&r->path[off], NAME_BUF, name);
	if (n <= 0 || n > NAME_BUF) {
		r->path_flags |= PATH_FAULT;
		w->done = 1;
		return 1;
	}
	if (off + n > PATH_BUF - 1)
		return 1;
	r->path_len = off + n;
	w->d = parent;
	return 0;
}

#ifdef WALK_USE_BPF_LOOP
/* bpf_loop's step: the record comes on the stack, the walk from its map. */
static long path_step_cb(__u32 i, void *record)
{
	__u32 zero = 0;
	struct path_walk *w = bpf_map_lookup_elem(&walk_map, &zero);

	return w ? path_step(w, *(struct file_rec **)record) : 1;
}
#endif

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

	if (!DIRECT_READS && c && LEAF_SPAN <= COPY_BYTES &&
	    !bpf_probe_read_kernel(c->data, LEAF_SPAN, d)) {
		d_op = COPIED(c->data, struct dentry, d_op);
		leaf_name = COPIED(c->data, struct dentry, d_name.name);
		parent = COPIED(c->data, struct dentry, d_parent);
		hashed = COPIED(c->data, struct dentry, d_hash.pprev);
	} else {
		d_op = KREAD(d, d_op);
		leaf_name = KREAD(d, d_name.name);
		parent = KREAD(d, d_parent);
		hashed = KREAD(d, d_hash.pprev);
	}

	/* (Not const: a kernel type to cast to is the struct itself.) */
	if (d_op && KREAD((struct dentry_operations *)d_op, d_dname)) {
		const char *name = (const char *)leaf_name;
		long n;

		if (r->magic == NSFS_MAGIC) {
			struct ns_common *ns = KREAD(inode, i_private);

			name = KREAD(ns, ops, name);
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

#ifdef WALK_USE_BPF_LOOP
	__u32 zero = 0;
	struct path_walk *w = bpf_map_lookup_elem(&walk_map, &zero);

	if (!w) {
		r->path_flags |= PATH_FAULT;
		return;
	}
#else
	struct path_walk on_stack, *w = &on_stack;
#endif
	w->d = d;
	w->vfsmnt = vfsmnt;
	w->mnt = mnt;
	w->mnt_root = KREAD(vfsmnt, mnt_root);
	w->parent = parent;
	w->name = leaf_name;
	w->done = 0;
	/*
	 * bpf_loop (5.17+) verifies the step once; a bounded loop verifies it at
	 * each iteration. The choice is made at compile time, not with a CO-RE
	 * check: a kernel without bpf_loop (5.10) refuses the callback reference
	 * even in dead code. The open-coded object (6.7+) asks for bpf_loop.
	 */
#ifdef WALK_USE_BPF_LOOP
	bpf_loop(PATH_WALK_STEPS, path_step_cb, &r, 0);
#else
	for (int i = 0; i < PATH_MAX_DEPTH; i++)
		if (path_step(w, r))
			break;
#endif
	if (!w->done)
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
	unsigned long *bits = KREAD(fdt, close_on_exec);
	unsigned long word = 0;

	if (fd < 0 || bpf_probe_read_kernel(&word, sizeof(word), bits + fd / 64))
		return false;
	return word & (1UL << (fd % 64));
}

/* The superblock's magic and device, for a file record. */
static __always_inline void fill_sb_fields(struct file_rec *r, struct super_block *sb,
					   struct struct_copy *c)
{
	if (!DIRECT_READS && SB_SPAN <= COPY_BYTES && !bpf_probe_read_kernel(c->data, SB_SPAN, sb)) {
		r->magic = COPIED(c->data, struct super_block, s_magic);
		r->dev = COPIED(c->data, struct super_block, s_dev);
	} else {
		r->magic = KREAD(sb, s_magic);
		r->dev = KREAD(sb, s_dev);
	}
}

/*
 * --file and --mount: the files whose holders a snapshot lists, by device
 * (super_block.s_dev) and inode, set by user space before load; inode 0
 * stands for every inode of the device (--mount). Matched before the path
 * walk, so a file that is not one of them costs its inode's read only.
 */
#define HOLD_KEYS_MAX 32
const volatile __u32 cfg_hold_n = 0;
const volatile __u32 cfg_hold_dev[HOLD_KEYS_MAX] = {};
const volatile __u64 cfg_hold_ino[HOLD_KEYS_MAX] = {};

/* Is (dev, ino) one of the targets? Never without any. */
static __always_inline bool is_hold_target(__u32 dev, __u64 ino)
{
	for (__u32 i = 0; i < HOLD_KEYS_MAX; i++) {
		if (i >= cfg_hold_n)
			break;
		if (dev == cfg_hold_dev[i] && (!cfg_hold_ino[i] || ino == cfg_hold_ino[i]))
			return true;
	}
	return false;
}

/*
 * --file, --mount: user space reads the iterators in two passes
 * (completion.rs): first only the files held (HOLDERS_FILES: fds, cwd,
 * root, the executable only when held, mappings; no task, process or
 * stack records), then, for the processes that hold one, their identity
 * (HOLDERS_IDENTITY: task, process and stack records and the executable;
 * no fds, cwd or root). In .bss, set between reads (triggers do not fire
 * while a walk is read); HOLDERS_ALL, a constant, without those filters.
 */
enum holders_pass { HOLDERS_ALL, HOLDERS_FILES, HOLDERS_IDENTITY };
__u32 holders_pass_now = HOLDERS_ALL;
#define HOLDERS_PASS() ((cfg_flags & FILTER_HOLD_ON) ? holders_pass_now : HOLDERS_ALL)

/* Is a filled file record to be kept? Every one without --file or --mount. */
static __always_inline bool file_held(const struct file_rec *r)
{
	return !(cfg_flags & FILTER_HOLD_ON) || is_hold_target(r->dev, r->ino);
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

	if (!buf || !c)
		return 0;
	/*
	 * --file, --mount: most files are none of theirs, and four reads say
	 * so before the file and its inode are copied whole.
	 */
	if ((cfg_flags & FILTER_HOLD_ON) && (fd != FD_TXT || HOLDERS_PASS() == HOLDERS_FILES)) {
		inode = KREAD(f, f_inode);
		if (!is_hold_target(KREAD(inode, i_sb, s_dev), KREAD(inode, i_ino)))
			return 0;
	}
	r = &buf->file;
	r->pid = tgid;
	r->fd = fd;
	/*
	 * One probe read per structure instead of one per field: the file and
	 * its inode are copied whole (their sizes and the fields' offsets are
	 * CO-RE constants for the running kernel), then read locally.
	 */
	if (!DIRECT_READS && FILE_SPAN <= COPY_BYTES && INODE_SPAN <= COPY_BYTES) {
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
		r->f_flags = KREAD(f, f_flags);
		r->f_mode = KREAD(f, f_mode);
		r->pos = KREAD(f, f_pos);
		inode = KREAD(f, f_inode);
		dentry = KREAD(f, f_path.dentry);
		/* A number: the walk subtracts from it (container_of). */
		vfsmnt = BPF_CORE_READ(f, f_path.mnt);
		r->i_mode = KREAD(inode, i_mode);
		r->ino = KREAD(inode, i_ino);
		r->size = KREAD(inode, i_size);
		sb = KREAD(inode, i_sb);
	}
	if (cloexec)
		r->f_flags |= O_CLOEXEC_FLAG;
	fill_sb_fields(r, sb, c);
	/* The executable is the process's identity: kept whatever it is,
	 * but while the holders are looked for. */
	if ((fd != FD_TXT || HOLDERS_PASS() == HOLDERS_FILES) && !file_held(r))
		return 0;
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

/*
 * A process's working directory or root (fd FD_CWD, FD_RTD): a struct path
 * of its fs_struct, not an open file, recorded as one, as lsof lists them;
 * the path walked here if `walk`, else left to the caller (bpf_d_path()).
 */
static __always_inline __u32 fill_fs_rec(__u64 dentry_addr, __u64 mnt_addr, __u32 tgid, int fd,
					 bool walk)
{
	/* Kernel-typed, as the walk's other dentries: one verifier state. */
	struct dentry *dentry = KCAST(dentry_addr, dentry);
	union scratch *buf = scratch_buf();
	struct struct_copy *c = copy_buf();
	struct inode *inode;
	struct file_rec *r;

	if (!buf || !c || !dentry)
		return 0;
	r = &buf->file;
	r->pid = tgid;
	r->fd = fd;
	r->f_flags = 0;
	r->f_mode = 0;
	r->pos = 0;
	r->path_len = 0;
	r->path_flags = 0;
	inode = KREAD(dentry, d_inode);
	if (!inode)
		return 0;
	r->i_mode = KREAD(inode, i_mode);
	r->ino = KREAD(inode, i_ino);
	r->size = KREAD(inode, i_size);
	fill_sb_fields(r, KREAD(inode, i_sb), c);
	/* Inline, not a global function of its own: a trigger program's
	 * calls (fd loop, file, path step) stay within the 512-byte stack
	 * that 6.12's verifier counts over the whole chain. */
	if (walk)
		fill_path(dentry, (struct vfsmount *)mnt_addr, inode, r);
	return file_rec_size(r);
}

/* Global, for the same reason as fill_file(), and two for the same reason. */
__noinline __u32 fill_fs_path(__u64 dentry_addr, __u64 mnt_addr, __u32 tgid, int fd)
{
	return fill_fs_rec(dentry_addr, mnt_addr, tgid, fd, true);
}

__noinline __u32 fill_fs_fields(__u64 dentry_addr, __u64 mnt_addr, __u32 tgid, int fd)
{
	return fill_fs_rec(dentry_addr, mnt_addr, tgid, fd, false);
}

#endif /* ITERSNAP_KIND_FILE_BPF_H */
