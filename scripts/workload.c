/*
 * A workload for scripts/bench: N sleeping processes, each holding the same
 * M open files of mixed kinds (regular files, pipes, UNIX sockets, /dev/null)
 * and T extra threads. One of them is named "isb-needle" (for filtered
 * snapshots), the rest "isb-worker". Everything dies with this process:
 * children have PR_SET_PDEATHSIG, and closing stdin (or SIGTERM/SIGINT) makes
 * it kill them and exit.
 *
 * usage: workload N M T DIR   — prints "ready" when all are running.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: workload PROCS FILES THREADS DIR\n");
		return 2;
	}
	int procs = atoi(argv[1]), files = atoi(argv[2]), threads = atoi(argv[3]);
	const char *dir = argv[4];
	char path[4096];

	setpgid(0, 0);
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
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
		if (fd < 0) {
			perror("workload: open");
			return 1;
		}
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
			for (int t = 0; t < threads; t++) {
				pthread_t th;
				pthread_create(&th, NULL, sleeper, NULL);
			}
			for (;;)
				pause();
		}
	}
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	stop(0);
	return 0;
}
