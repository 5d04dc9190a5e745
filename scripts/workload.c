/*
 * A workload for scripts/bench: N sleeping processes, each holding M open
 * files and T extra threads. One of them is named "isb-needle" (for filtered
 * snapshots), the rest "isb-worker". Everything dies with this process:
 * children have PR_SET_PDEATHSIG, and closing stdin (or SIGTERM/SIGINT) makes
 * it kill them and exit.
 *
 * usage: workload N M T DIR [KIND [shared|own]]   — prints "ready" when all
 * are running, with their files open.
 *
 * KIND is what the M files are:
 *   mixed  regular files in DIR, pipes, UNIX socket pairs, /dev/null (default)
 *   pipe   pipe ends (both ends of each pipe)
 *   unix   UNIX stream socket pair ends (both ends of each pair)
 *   tcp    one loopback TCP listener and both ends of connections to it
 *          (with an odd M, the last connection is left in the accept queue)
 *   udp    UDP sockets bound to a loopback address, each its own port
 * shared (the default): this process opens the M files and every child
 * inherits them, so N processes hold N·M fds of only M distinct files. own:
 * each child opens M files of its own, N·M distinct files (its UDP sockets
 * on an address of its own, 127.1.x.y, so that the ports do not run out).
 * An odd M leaves one pipe or socket pair with one end closed. TCP sockets
 * linger 0: closing them sends a reset and leaves nothing in TIME_WAIT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void stop(int sig)
{
	(void)sig;
	kill(0, SIGKILL); /* our process group: every child, and us */
}

static int mixed_fds(int files, const char *dir)
{
	char path[4096];

	for (int i = 0; i < files; i++) {
		int fd, pair[2];
		switch (i % 4) {
		case 0:
			snprintf(path, sizeof(path), "%s/file-%d", dir, i);
			fd = open(path, O_RDWR | O_CREAT, 0600);
			break;
		case 1:
			if (pipe(pair) == 0) { /* both ends count */
				i++;
				fd = pair[0];
				break;
			}
			fd = -1;
			break;
		case 2:
			fd = socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0 ? pair[0] : -1;
			break;
		default:
			fd = open("/dev/null", O_RDONLY);
		}
		if (fd < 0)
			return -1;
	}
	return 0;
}

/* Pipes or UNIX socket pairs, both ends kept: `files` fds. */
static int pair_fds(int files, int unix_pairs)
{
	for (int i = 0; i < files; i += 2) {
		int pair[2];
		if ((unix_pairs ? socketpair(AF_UNIX, SOCK_STREAM, 0, pair) : pipe(pair)) != 0)
			return -1;
		if (i + 1 == files)
			close(pair[1]);
	}
	return 0;
}

static int linger0(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	return fd < 0 ? -1 : setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) ? -1 : fd;
}

/* One listener, then connections to it, both ends kept: `files` fds. */
static int tcp_fds(int files)
{
	struct sockaddr_in addr = { .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	int l = linger0(socket(AF_INET, SOCK_STREAM, 0));

	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(l, files) || getsockname(l, (struct sockaddr *)&addr, &len))
		return -1;
	for (int n = 1; n < files; n++) {
		int c = linger0(socket(AF_INET, SOCK_STREAM, 0));
		if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)))
			return -1;
		if (++n < files && linger0(accept(l, NULL, NULL)) < 0)
			return -1;
	}
	return 0;
}

/* Bound UDP sockets, each its own port on 127.1.x.y (x.y from `who`). */
static int udp_fds(int files, int who)
{
	struct sockaddr_in addr = { .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(0x7f010001 + who) };

	for (int i = 0; i < files; i++) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)))
			return -1;
	}
	return 0;
}

static int open_fds(const char *kind, int files, const char *dir, int who)
{
	if (!strcmp(kind, "mixed"))
		return mixed_fds(files, dir);
	if (!strcmp(kind, "pipe"))
		return pair_fds(files, 0);
	if (!strcmp(kind, "unix"))
		return pair_fds(files, 1);
	if (!strcmp(kind, "tcp"))
		return tcp_fds(files);
	return udp_fds(files, who);
}

int main(int argc, char **argv)
{
	const char *kind = argc > 5 ? argv[5] : "mixed";
	const char *share = argc > 6 ? argv[6] : "shared";
	int own = !strcmp(share, "own");

	if (argc < 5 || argc > 7 ||
	    (strcmp(kind, "mixed") && strcmp(kind, "pipe") && strcmp(kind, "unix") &&
	     strcmp(kind, "tcp") && strcmp(kind, "udp")) ||
	    (!own && strcmp(share, "shared"))) {
		fprintf(stderr, "usage: workload PROCS FILES THREADS DIR "
				"[mixed|pipe|unix|tcp|udp [shared|own]]\n");
		return 2;
	}
	int procs = atoi(argv[1]), files = atoi(argv[2]), threads = atoi(argv[3]);
	const char *dir = argv[4];
	int ready[2];

	setpgid(0, 0);
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	if (!own && open_fds(kind, files, dir, 0)) {
		perror("workload: open");
		return 1;
	}
	/* Each child reports here once its files are open: '+', or '-'. */
	if (pipe(ready)) {
		perror("workload: pipe");
		return 1;
	}
	for (int i = 0; i < procs; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("workload: fork");
			stop(0);
		}
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			prctl(PR_SET_NAME, i == procs / 2 ? "isb-needle" : "isb-worker");
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			close(ready[0]);
			char ok = '+';
			if (own && open_fds(kind, files, dir, i)) {
				perror("workload: open");
				ok = '-';
			}
			if (write(ready[1], &ok, 1) != 1 || ok != '+')
				_exit(1);
			close(ready[1]);
			for (int t = 0; t < threads; t++) {
				pthread_t th;
				pthread_create(&th, NULL, sleeper, NULL);
			}
			for (;;)
				pause();
		}
	}
	close(ready[1]);
	for (int i = 0; i < procs; i++) {
		char ok;
		if (read(ready[0], &ok, 1) != 1 || ok != '+') {
			fprintf(stderr, "workload: a child could not open its files\n");
			stop(0);
		}
	}
	close(ready[0]);
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	stop(0);
	return 0;
}
