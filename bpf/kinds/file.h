/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Open files: the layout of the file record (REC_FILE), one per open fd of
 * a process, and the bounds of its path, decoded by src/record.rs. Its own
 * file so that everything about this kind of data sits together;
 * kinds/file.bpf.h fills it. Plain C, included by itersnap.h after struct
 * rec_hdr, not on its own.
 */
#ifndef ITERSNAP_KIND_FILE_H
#define ITERSNAP_KIND_FILE_H

/* Longest single path component the kernel allows (NAME_MAX) + NUL. */
#define NAME_BUF 256
/* Bytes of path data one file record can carry (NUL-separated components). */
#define PATH_BUF 4096
/*
 * Steps (components, and mounts crossed) a path walk takes before it marks
 * the path truncated. With bpf_loop (the open-coded object) the walk goes
 * as far as the kernel's own limit: d_path() fails past PATH_MAX (4096
 * bytes with the NUL), and every component takes at least two bytes, so
 * PATH_BUF steps (plus mount crossings) reach it. Without bpf_loop each
 * step is verified on its own, and 64 is what old verifiers accept.
 */
#define PATH_WALK_STEPS 4096
#define PATH_MAX_DEPTH 64

/*
 * A file record's fd for what a process holds without an fd, named as
 * lsof's FD column names them: its working directory, its root, its
 * executable, and (--maps) each file it maps.
 */
enum file_slot {
	FD_CWD = -1,
	FD_RTD = -2,
	FD_TXT = -3,
	FD_MEM = -4,
};

/* How path[] of a file record is to be read. */
enum path_flags {
	PATH_DNAME = 1 << 0,	 /* synthetic name (socket, pipe, anon inode, ns): see magic */
	PATH_DELETED = 1 << 1,	 /* dentry unlinked: readlink appends " (deleted)" */
	PATH_TRUNCATED = 1 << 2, /* depth or buffer bound hit: leading components missing */
	PATH_FAULT = 1 << 3,	 /* a kernel read failed midway */
	PATH_TEXT = 1 << 4,	 /* path[] is the final text, from the kernel's d_path() */
};

/*
 * One per open fd of a process. path[] holds path_len bytes: NUL-terminated
 * components from the leaf up to the root ("leaf\0dir\0...\0"). With
 * PATH_DNAME it holds one component: the dentry name (anon inodes) or, for
 * nsfs, the namespace type name. With PATH_TEXT it is what readlink shows,
 * NUL-terminated, as the kernel's own d_path() wrote it.
 */
struct file_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* tgid of the owning process */
	__s32 fd;
	__u32 f_flags;		/* O_* flags as in /proc/PID/fdinfo */
	__u32 f_mode;		/* FMODE_* */
	__u32 i_mode;		/* inode type and permissions */
	__u32 magic;		/* super_block.s_magic */
	__u32 dev;		/* super_block.s_dev, kernel encoding */
	__u16 path_len;
	__u16 path_flags;	/* enum path_flags */
	__u64 ino;
	__u64 pos;
	__u64 size;
	char path[PATH_BUF];
};

#endif /* ITERSNAP_KIND_FILE_H */
