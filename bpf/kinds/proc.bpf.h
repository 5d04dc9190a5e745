/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Process identity: how a thread-group leader becomes a process record
 * (kinds/proc.h): its memory (as ps's RSS and VSZ), controlling terminal,
 * pid namespace and cgroup v2 path; and its working directory, root and
 * executable as file records (kinds/file.h's FD_CWD, FD_RTD, FD_TXT), as
 * lsof lists them. Everything here is read without faulting, so it is read
 * inside the event for the event's processes, and after it for the rest.
 * Built on the file kind, whose fill functions it uses.
 */
#ifndef ITERSNAP_KIND_PROC_BPF_H
#define ITERSNAP_KIND_PROC_BPF_H

#include "base.bpf.h"
#include "kinds/file.bpf.h"

/* See _task_rec_btf: the Rust side checks its offsets against this type. */
struct proc_rec _proc_rec_btf = {};

/* The CPUs whose RSS counters to add (possible CPUs), set before load. */
const volatile __u32 cfg_nr_cpus = 1;
/* More CPUs than this: the kernel's own running total only. */
#define RSS_CPUS_MAX 1024

/* mm->rss_stat before 6.2: one atomic counter per kind, exact. */
struct mm_rss_stat___pre62 {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));
struct mm_struct___pre62 {
	struct mm_rss_stat___pre62 rss_stat;
} __attribute__((preserve_access_index));

/* kernfs_node.parent became __parent (RCU-protected) in 6.15. */
struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* enum mm_counter_type (stable since 4.5). */
#define MM_FILEPAGES 0
#define MM_ANONPAGES 1
#define MM_SHMEMPAGES 3

/* A percpu_counter's value: its running total plus every CPU's delta. */
struct rss_sum {
	__u64 counters[3]; /* __percpu s32 of FILE, ANON, SHMEM */
	__s64 sum[3];
	__u64 base;	   /* __percpu address of scratch_map's element */
};

/*
 * One CPU's deltas. Its per-CPU offset (__per_cpu_offset[cpu], which
 * kallsyms lacks without CONFIG_KALLSYMS_ALL, and so does every per-CPU
 * variable) is where a per-CPU map's element lives on that CPU minus the
 * element's __percpu address.
 */
static long rss_cpu(__u32 cpu, void *arg)
{
	struct rss_sum *s = arg;
	__u32 zero = 0;
	__u64 addr = 0;
	void *elem;

	elem = bpf_map_lookup_percpu_elem(&scratch_map, &zero, cpu);
	if (!elem)
		return 1;
	/* The pointer as a number: copied, the verifier sees a scalar. */
	if (bpf_probe_read_kernel(&addr, sizeof(addr), &elem))
		return 1;
	for (int i = 0; i < 3; i++) {
		__s32 delta = 0;

		if (!bpf_probe_read_kernel(&delta, sizeof(delta),
					   (void *)(s->counters[i] + addr - s->base)))
			s->sum[i] += delta;
	}
	return 0;
}

/* The __percpu address of scratch_map's element (struct bpf_array.pptrs[0]). */
static __always_inline __u64 scratch_percpu_base(void)
{
	void *map = &scratch_map;
	__u64 addr = 0, base = 0;

	/* Copied, the map's address is a number the verifier lets us add to. */
	if (bpf_probe_read_kernel(&addr, sizeof(addr), &map))
		return 0;
	if (bpf_probe_read_kernel(&base, sizeof(base),
				  (void *)(addr + bpf_core_field_offset(struct bpf_array, pptrs))))
		return 0;
	return base;
}

/* RSS pages of each kind, as /proc/PID/status adds them. */
static __always_inline void fill_rss(struct mm_struct *mm, struct proc_rec *r)
{
	if (bpf_core_type_exists(struct mm_rss_stat___pre62)) {
		struct mm_struct___pre62 *old = (void *)mm;

		r->rss_file_pages = BPF_CORE_READ(old, rss_stat.count[MM_FILEPAGES].counter);
		r->rss_anon_pages = BPF_CORE_READ(old, rss_stat.count[MM_ANONPAGES].counter);
		r->rss_shmem_pages = BPF_CORE_READ(old, rss_stat.count[MM_SHMEMPAGES].counter);
		return;
	}
	/*
	 * 6.2+: per-CPU counters. Their running total lags by up to a batch
	 * per CPU (on a large machine /proc once showed 0 kB this way), so the
	 * CPUs' deltas are added, as percpu_counter_sum() does.
	 */
	struct rss_sum s = {};

	/* Constant indexes: a kernel-typed pointer takes no variable offset. */
	s.sum[0] = KREAD(mm, rss_stat[MM_FILEPAGES].count);
	s.sum[1] = KREAD(mm, rss_stat[MM_ANONPAGES].count);
	s.sum[2] = KREAD(mm, rss_stat[MM_SHMEMPAGES].count);
	s.counters[0] = (__u64)KREAD(mm, rss_stat[MM_FILEPAGES].counters);
	s.counters[1] = (__u64)KREAD(mm, rss_stat[MM_ANONPAGES].counters);
	s.counters[2] = (__u64)KREAD(mm, rss_stat[MM_SHMEMPAGES].counters);
	s.base = scratch_percpu_base();
	if (s.base && cfg_nr_cpus <= RSS_CPUS_MAX) {
#ifdef WALK_USE_BPF_LOOP
		bpf_loop(cfg_nr_cpus, rss_cpu, &s, 0);
#else
		for (__u32 cpu = 0; cpu < cfg_nr_cpus && cpu < RSS_CPUS_MAX; cpu++)
			if (rss_cpu(cpu, &s))
				break;
#endif
		r->flags |= PROC_RSS_SUMMED;
	}
	r->rss_file_pages = s.sum[0] > 0 ? s.sum[0] : 0;
	r->rss_anon_pages = s.sum[1] > 0 ? s.sum[1] : 0;
	r->rss_shmem_pages = s.sum[2] > 0 ? s.sum[2] : 0;
}

/* The controlling terminal: its device as tty_devnum() and its name. */
static __always_inline void fill_tty(struct task_struct *t, struct proc_rec *r)
{
	struct tty_struct *tty = KREAD(t, signal, tty);
	struct tty_driver *driver;

	if (!tty)
		return;
	driver = KREAD(tty, driver);
	r->tty_major = KREAD(driver, major);
	r->tty_minor = KREAD(driver, minor_start) + KREAD(tty, index);
	bpf_probe_read_kernel_str(r->tty_name, sizeof(r->tty_name),
				  __builtin_preserve_access_index(&tty->name));
	r->flags |= PROC_TTY;
}

/* The pid namespace the task lives in and its pid there (task_active_pid_ns()). */
static __always_inline void fill_pidns(struct task_struct *t, struct proc_rec *r)
{
	struct pid *pid = BPF_CORE_READ(t, thread_pid);
	struct upid *up;
	__u32 level;

	if (!pid)
		return;
	level = KREAD(pid, level);
	if (level > 32)
		return;
	up = (void *)pid + bpf_core_field_offset(struct pid, numbers) +
	     level * bpf_core_type_size(struct upid);
	r->ns_pid = KREAD(up, nr);
	r->pidns_ino = KREAD(up, ns, ns.inum);
	r->pidns_level = level;
	r->flags |= PROC_PIDNS;
}

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return KREAD(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___pre615 *)kn, parent);
}

/* Where a cgroup walk is: one kernfs node per step, up to the root. */
struct cgroup_walk {
	struct proc_rec *r;
	struct kernfs_node *kn;
	__u32 done; /* reached the root */
};

/*
 * One step up the cgroup tree: append kn's name, unless it is the root.
 * Returns 1 to stop. A name may be read past cgroup[CGROUP_BUF - 1]: union
 * scratch has NAME_BUF bytes of room after the record.
 */
static long cgroup_step(__u32 i, void *arg)
{
	struct cgroup_walk *w = arg;
	struct proc_rec *r = w->r;
	struct kernfs_node *kn = w->kn;
	struct kernfs_node *parent = kn_parent(kn);
	__u32 off = r->cgroup_len;
	long n;

	if (!parent) {
		w->done = 1;
		return 1;
	}
	if (off > CGROUP_BUF - 1)
		return 1;
	n = bpf_probe_read_kernel_str(&r->cgroup[off], NAME_BUF, KREAD(kn, name));
	if (n <= 0 || n > NAME_BUF || off + n > CGROUP_BUF - 1)
		return 1;
	r->cgroup_len = off + n;
	w->kn = parent;
	return 0;
}

/*
 * The cgroup v2 path, names leaf first, as /proc/PID/cgroup's `0::` line
 * has them root first: the default hierarchy's cgroup (the root one on a
 * machine that mounts only v1), up to its root. bpf_loop (5.17+) verifies
 * the step once; a bounded loop verifies it at every level.
 */
static __always_inline void fill_cgroup(struct task_struct *t, struct proc_rec *r)
{
	struct kernfs_node *kn = KREAD(t, cgroups, dfl_cgrp, kn);
	struct cgroup_walk w = { .r = r, .kn = kn };

	if (!kn)
		return;
	r->cgroup_id = KREAD(kn, id);
#ifdef WALK_USE_BPF_LOOP
	bpf_loop(CGROUP_DEPTH, cgroup_step, &w, 0);
#else
	for (int i = 0; i < CGROUP_DEPTH; i++)
		if (cgroup_step(i, &w))
			break;
#endif
	r->flags |= w.done ? PROC_CGROUP : PROC_CGROUP | PROC_CGROUP_TRUNCATED;
}

/*
 * --cgroup: the cgroup's kernfs id (its directory's inode on cgroup2), set
 * by user space before load.
 */
const volatile __u64 cfg_cgroup_id = 0;

/* Is t's process in the cgroup --cgroup names, or below it? */
static __always_inline bool in_cgroup(struct task_struct *t)
{
	struct kernfs_node *kn = KREAD(t, cgroups, dfl_cgrp, kn);

	for (int i = 0; i < CGROUP_DEPTH; i++) {
		if (!kn)
			return false;
		if (KREAD(kn, id) == cfg_cgroup_id)
			return true;
		kn = kn_parent(kn);
	}
	return false;
}

/*
 * A leader's address as a plain number, as global functions take it (a
 * trusted pointer is refused): its group_leader is itself, read through a
 * probe read.
 */
#define leader_addr(t) ((__u64)BPF_CORE_READ(t, group_leader))

/*
 * Fill the CPU's scratch process record for leader t; returns its size.
 * Global: the verifier checks it once, not at each call site. The task
 * comes as a plain number because it is only ever read through probe
 * reads.
 */
__noinline __u32 fill_proc(__u64 task_addr, __u32 tgid)
{
	struct task_struct *t = (struct task_struct *)task_addr;
	union scratch *buf = scratch_buf();
	struct mm_struct *mm;
	struct proc_rec *r;
	__u32 size;

	if (!buf || !t)
		return 0;
	r = &buf->proc;
	__builtin_memset(r, 0, offsetof(struct proc_rec, cgroup));
	r->pid = tgid;
	mm = KREAD(t, mm);
	if (mm) {
		r->flags |= PROC_MM;
		r->vsz_pages = KREAD(mm, total_vm);
		fill_rss(mm, r);
	}
	fill_tty(t, r);
	fill_pidns(t, r);
	fill_cgroup(t, r);
	r->taken_ns = bpf_ktime_get_ns();
	size = offsetof(struct proc_rec, cgroup) + ((r->cgroup_len + 7) & ~7);
	if (size > sizeof(*r))
		size = sizeof(*r);
	set_hdr(&r->hdr, REC_PROC, size);
	return size;
}

/*
 * One of the files a process holds without an fd, into the CPU's scratch
 * file record: its working directory (FD_CWD), root (FD_RTD) or executable
 * (FD_TXT), its path walked if `walk`. Returns the record's size, 0 if it
 * has none (a kernel thread has no executable; an exiting process no
 * fs_struct).
 */
static __always_inline __u32 fill_slot_rec(__u64 task_addr, __u32 tgid, int slot, bool walk)
{
	struct task_struct *t = (struct task_struct *)task_addr;
	struct fs_struct *fs;
	struct file *exe;
	__u64 dentry, mnt;

	if (!t)
		return 0;
	if (slot == FD_TXT) {
		exe = BPF_CORE_READ(t, mm, exe_file);
		if (!exe)
			return 0;
		return walk ? fill_file((__u64)exe, tgid, FD_TXT, false)
			    : fill_file_fields((__u64)exe, tgid, FD_TXT, false);
	}
	fs = KREAD(t, fs);
	if (!fs)
		return 0;
	if (slot == FD_CWD) {
		dentry = (__u64)BPF_CORE_READ(fs, pwd.dentry);
		mnt = (__u64)BPF_CORE_READ(fs, pwd.mnt);
	} else {
		dentry = (__u64)BPF_CORE_READ(fs, root.dentry);
		mnt = (__u64)BPF_CORE_READ(fs, root.mnt);
	}
	return walk ? fill_fs_path(dentry, mnt, tgid, slot) : fill_fs_fields(dentry, mnt, tgid, slot);
}

/* Global: verified once; with the walk (events, and iterators without bpf_d_path). */
__noinline __u32 fill_slot(__u64 task_addr, __u32 tgid, int slot)
{
	return fill_slot_rec(task_addr, tgid, slot, true);
}

/* Without the walk: the iterators' paths come from bpf_d_path(). */
__noinline __u32 fill_slot_fields(__u64 task_addr, __u32 tgid, int slot)
{
	return fill_slot_rec(task_addr, tgid, slot, false);
}

/*
 * The struct path of a slot of trusted task t, for bpf_d_path(), or NULL.
 * Direct reads: the helper takes a BTF pointer, not a number.
 */
static __always_inline struct path *slot_path(struct task_struct *t, int slot)
{
	struct fs_struct *fs;
	struct mm_struct *mm;
	struct file *exe;

	if (slot == FD_TXT) {
		mm = t->mm;
		if (!mm)
			return NULL;
		exe = mm->exe_file;
		return exe ? (struct path *)&exe->f_path : NULL;
	}
	fs = t->fs;
	if (!fs)
		return NULL;
	return slot == FD_CWD ? &fs->pwd : &fs->root;
}

#endif /* ITERSNAP_KIND_PROC_BPF_H */
