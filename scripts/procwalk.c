/*
 * The plain /proc walker itersnap is measured against: for every process,
 * /proc/PID/stat (identity, state, CPU time) and readlink of every
 * /proc/PID/fd/N, the way ps and lsof get them. Built and run by
 * scripts/bench.
 *
 * usage: procwalk [--all-facts | --thread-stacks] [COMM] [--count N --interval-ms MS]
 *   --all-facts: also what a snapshot holds of a process's identity:
 *   /proc/PID/status (uids and gids, as its Uid: and Gid: lines), cmdline,
 *   cgroup and readlink of exe, cwd and root (not the fd's type, mode,
 *   position and flags, which would take a stat() and an fdinfo read per fd,
 *   nor the sockets' addresses: a lower bound of what /proc costs).
 *   COMM: only processes with that name; /proc cannot filter, so every
 *   /proc/PID/stat is still read to learn the names (as pgrep does), and the
 *   rest is read only for the processes that have it.
 *   --thread-stacks: instead of files, what a /proc sampler of what every
 *   thread is doing reads (0x.tools' first xcapture): each thread's
 *   /proc/PID/task/TID/stat, syscall, wchan and (kernel) stack.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Reads up to size - 1 bytes of path into buf, NUL-terminated: the length, or -1. */
static ssize_t slurp(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

/* Prints the lines of /proc/PID/status that start with one of keys. */
static void status_lines(const char *pid, const char *const *keys, FILE *out)
{
	char path[1024], buf[8192];

	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	if (slurp(path, buf, sizeof(buf)) < 0)
		return;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		for (const char *const *key = keys; *key; key++)
			if (!strncmp(line, *key, strlen(*key)))
				fprintf(out, "  %s\n", line);
}

static void identity(const char *pid, FILE *out)
{
	static const char *const ids[] = { "Uid:", "Gid:", NULL };
	static const char *const links[] = { "exe", "cwd", "root" };
	char path[1024], buf[4096];
	ssize_t n;

	status_lines(pid, ids, out);
	snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
	if ((n = slurp(path, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n - 1; i++)
			if (!buf[i])
				buf[i] = ' ';
		fprintf(out, "  cmdline %s\n", buf);
	}
	snprintf(path, sizeof(path), "/proc/%s/cgroup", pid);
	if (slurp(path, buf, sizeof(buf)) > 0)
		fprintf(out, "  cgroup %s", buf);
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		snprintf(path, sizeof(path), "/proc/%s/%s", pid, links[i]);
		if ((n = readlink(path, buf, sizeof(buf) - 1)) >= 0) {
			buf[n] = 0;
			fprintf(out, "  %s %s\n", links[i], buf);
		}
	}
}

static void files(const char *pid, FILE *out)
{
	char path[1024], link[4096];
	struct dirent *fd;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	DIR *fds = opendir(path);
	if (!fds)
		return;
	while ((fd = readdir(fds))) {
		if (fd->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd/%s", pid, fd->d_name);
		ssize_t len = readlink(path, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = 0;
		fprintf(out, "  %s %s\n", fd->d_name, link);
	}
	closedir(fds);
}

/* Each thread's stat, syscall, wchan and kernel stack. */
static void thread_stacks(const char *pid, FILE *out)
{
	static const char *const facts[] = { "stat", "syscall", "wchan", "stack" };
	char path[1024], buf[8192];
	struct dirent *t;

	snprintf(path, sizeof(path), "/proc/%s/task", pid);
	DIR *tasks = opendir(path);
	if (!tasks)
		return;
	while ((t = readdir(tasks))) {
		if (t->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]); i++) {
			snprintf(path, sizeof(path), "/proc/%s/task/%s/%s", pid, t->d_name, facts[i]);
			if (slurp(path, buf, sizeof(buf)) >= 0)
				fprintf(out, "  %s %s: %s\n", t->d_name, facts[i], buf);
		}
	}
	closedir(tasks);
}

static int thread_stacks_on;

static void walk(const char *comm_filter, int all_facts, FILE *out)
{
	DIR *proc = opendir("/proc");
	struct dirent *p;
	char path[1024], buf[4096];

	if (!proc)
		return;
	while ((p = readdir(proc))) {
		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", p->d_name);
		if (slurp(path, buf, sizeof(buf)) < 0)
			continue;
		char *open = strchr(buf, '('), *close = strrchr(buf, ')');
		if (!open || !close)
			continue;
		*close = 0;
		if (comm_filter && strcmp(open + 1, comm_filter))
			continue;
		fprintf(out, "%s %s %s", p->d_name, open + 1, close + 2);
		if (thread_stacks_on) {
			thread_stacks(p->d_name, out);
			continue;
		}
		if (all_facts)
			identity(p->d_name, out);
		files(p->d_name, out);
	}
	closedir(proc);
}

int main(int argc, char **argv)
{
	const char *comm = NULL;
	int count = 1, interval_ms = 0, all_facts = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
			interval_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--all-facts"))
			all_facts = 1;
		else if (!strcmp(argv[i], "--thread-stacks"))
			thread_stacks_on = 1;
		else
			comm = argv[i];
	}
	for (int i = 0; i < count; i++) {
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		walk(comm, all_facts, stdout);
		fflush(stdout);
		if (interval_ms && i + 1 < count) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
			if (spent < interval_ms)
				usleep((interval_ms - spent) * 1000);
		}
	}
	return 0;
}
