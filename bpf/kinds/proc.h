/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Process identity: the layout of the process record (REC_PROC), one per
 * process (thread-group leader), beside its task record: what ps's RSS,
 * VSZ and TTY columns, /proc/PID/cgroup and the pid namespace say.
 * kinds/proc.bpf.h fills it; src/kinds/process.rs decodes it. The
 * process's exe, cwd and root are file records (kinds/file.h's FD_TXT,
 * FD_CWD, FD_RTD); its command line has records of its own
 * (kinds/cmdline.h). Plain C, included by itersnap.h after struct rec_hdr.
 */
#ifndef ITERSNAP_KIND_PROC_H
#define ITERSNAP_KIND_PROC_H

/* Bytes of cgroup path one record carries (NUL-separated names, leaf first). */
#define CGROUP_BUF 1024
/* Levels of the cgroup hierarchy walked before the path is marked truncated. */
#define CGROUP_DEPTH 32
/* tty_struct.name is 64 bytes; a name as ps shows it fits in 32. */
#define TTY_NAME_BUF 32

enum proc_flags {
	PROC_MM = 1 << 0,	   /* has an address space: the memory fields are its */
	PROC_RSS_SUMMED = 1 << 1,  /* the per-CPU RSS counters (6.2+) were summed */
	PROC_TTY = 1 << 2,	   /* has a controlling terminal */
	PROC_CGROUP = 1 << 3,	   /* cgroup[] holds its cgroup v2 path */
	PROC_CGROUP_TRUNCATED = 1 << 4, /* deeper than CGROUP_DEPTH or CGROUP_BUF */
	PROC_PIDNS = 1 << 5,	   /* pidns_ino and ns_pid are set */
};

struct proc_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* tgid */
	__u32 flags;		/* enum proc_flags */
	__u64 vsz_pages;	/* mm->total_vm, as /proc/PID/status VmSize */
	__u64 rss_file_pages;	/* mm->rss_stat: MM_FILEPAGES */
	__u64 rss_anon_pages;	/* MM_ANONPAGES */
	__u64 rss_shmem_pages;	/* MM_SHMEMPAGES */
	__u32 tty_major;	/* the tty's device, as /proc/PID/stat's tty_nr */
	__u32 tty_minor;
	__u32 pidns_ino;	/* the pid namespace's inode (readlink /proc/PID/ns/pid) */
	__u32 ns_pid;		/* the pid as seen inside that namespace */
	__u32 pidns_level;	/* 0: the initial namespace */
	__u16 cgroup_len;	/* bytes used in cgroup[] */
	__u16 _pad;
	__u64 cgroup_id;	/* kernfs id of the cgroup (its inode on cgroupfs) */
	__u64 taken_ns;		/* bpf_ktime_get_ns() when this record was filled */
	char tty_name[TTY_NAME_BUF]; /* tty_struct.name: "pts0", "tty1", "ttyS0" */
	/* NUL-terminated names from the cgroup up to (not including) the
	 * root: "leaf\0parent\0..."; empty for the root cgroup. Last field:
	 * the record ends after cgroup_len bytes, 8-aligned. */
	char cgroup[CGROUP_BUF];
};

#endif /* ITERSNAP_KIND_PROC_H */
