/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The event's own details: the layout of the event record (REC_EVENT),
 * which a trigger program sends right after its begin_rec, read inside the
 * event: a syscall's (or probe's, or raw tracepoint's) arguments, the
 * strings its path arguments point to, execve's argv, a socket address, an
 * exiting task's exit code, a signal's siginfo, a tracefs tracepoint's own
 * record. kinds/event.bpf.h fills it; src/kinds/event.rs decodes it. Plain
 * C, included by itersnap.h after struct rec_hdr, not on its own.
 */
#ifndef ITERSNAP_KIND_EVENT_H
#define ITERSNAP_KIND_EVENT_H

/* Bytes of items (strings, an address, a tracepoint's record) per event. */
#define EVENT_DATA 4096
/* The longest string item, its NUL included: a longer one is marked cut. */
#define EVENT_STR_MAX 1024
/* argv elements read; more are counted as missing (EVENT_ARGV_MORE). */
#define EVENT_ARGV_MAX 32
/* A socket address's bytes (sockaddr_storage). */
#define EVENT_ADDR_MAX 128

enum event_flags {
	EVENT_ARGS = 1 << 0,	   /* args[]: the syscall's, probe's or raw tracepoint's */
	EVENT_EXIT = 1 << 1,	   /* exit_code: the exiting task's */
	EVENT_SIGINFO = 1 << 2,	   /* si_*: the signal's siginfo */
	EVENT_ITEMS_CUT = 1 << 3,  /* data[] was full: later items left out */
	EVENT_ARGV_MORE = 1 << 4,  /* argv has more than EVENT_ARGV_MAX elements */
	EVENT_RECORD = 1 << 5,	   /* data[] is the tracefs tracepoint's record */
	EVENT_SIG_NOINFO = 1 << 6, /* sent without a siginfo (kill(2) from the kernel's view) */
	EVENT_SIG_PRIV = 1 << 7,   /* sent by the kernel itself (SEND_SIG_PRIV) */
};

/* Where an item came from: 0-5 the string that args[i] points to, or: */
enum event_item_src {
	EVENT_ITEM_ARGV = 6, /* an element of execve's argv, in order */
	EVENT_ITEM_ADDR = 7, /* the socket address an argument points to */
};

enum event_item_flags {
	EVENT_ITEM_CUT = 1 << 0,   /* longer than EVENT_STR_MAX - 1 bytes */
	EVENT_ITEM_FAULT = 1 << 1, /* the user memory could not be read in the event */
};

/* Each item in data[]: this header, then `len` bytes (a string's NUL too). */
struct event_item {
	__u16 len;
	__u8 src;   /* enum event_item_src */
	__u8 flags; /* enum event_item_flags */
};

struct event_rec {
	struct rec_hdr hdr;
	__u32 flags;		/* enum event_flags */
	__u32 data_len;		/* bytes used in data[] */
	__u64 args[6];
	__s32 exit_code;	/* task->exit_code: status << 8, or the killing signal */
	__s32 si_errno;
	__s32 si_code;
	__u32 record_len;	/* EVENT_RECORD: data[]'s first bytes are the record */
	__u8 si_fields[16];	/* the start of kernel_siginfo's union, read by si_code */
	char data[EVENT_DATA];
};

#endif /* ITERSNAP_KIND_EVENT_H */
