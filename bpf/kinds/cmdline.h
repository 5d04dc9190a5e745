/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Command lines: the layout of the command-line record (REC_CMDLINE), the
 * bytes /proc/PID/cmdline gives, in chunks of up to CMDLINE_CHUNK. They
 * live in the process's own memory, which only a sleepable iterator can
 * read (bpf_copy_from_user_task(), Linux 5.18+), after the event; only the
 * event's own task's, in its own context, can be read inside it
 * (bpf_probe_read_user(), when its pages are in memory). kinds/cmdline.bpf.h fills it; src/kinds/cmdline.rs
 * decodes and joins the chunks. Plain C, included by itersnap.h.
 */
#ifndef ITERSNAP_KIND_CMDLINE_H
#define ITERSNAP_KIND_CMDLINE_H

#define CMDLINE_CHUNK 4096
/* Chunks per process: what one iterator object (32 KiB of seq_file) holds. */
#define CMDLINE_CHUNKS 7

enum cmdline_flags {
	/* argv's last byte is not a NUL: the process wrote over its argv
	 * (setproctitle); /proc gives one page up to the first NUL. */
	CMDLINE_PROCTITLE = 1 << 0,
	CMDLINE_FAULT = 1 << 1,	    /* a read of the process's memory failed */
	CMDLINE_TRUNCATED = 1 << 2, /* longer than CMDLINE_CHUNKS chunks */
	/* Read inside the event, from the event's own task (the whole
	 * command line: one chunk). */
	CMDLINE_IN_EVENT = 1 << 3,
};

struct cmdline_rec {
	struct rec_hdr hdr;
	__u32 pid;		/* tgid */
	__u32 offset;		/* of data[0] in the command line */
	__u32 total;		/* the command line's length as /proc reads it */
	__u16 len;		/* bytes in data[] */
	__u16 flags;		/* enum cmdline_flags */
	__u64 taken_ns;		/* bpf_ktime_get_ns() when this chunk was read */
	char data[CMDLINE_CHUNK];
};

#endif /* ITERSNAP_KIND_CMDLINE_H */
