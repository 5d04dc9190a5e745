/*
 * The plain /proc walker itersnap is measured against: for every process,
 * /proc/PID/stat (identity, state, CPU time) and readlink of every
 * /proc/PID/fd/N — the same facts a snapshot holds, the way ps and lsof get
 * them. Built and run by scripts/bench.
 *
 * usage: procwalk [COMM] [--count N --interval-ms MS]
 *   COMM: only processes with that name; /proc cannot filter, so every
 *   /proc/PID/stat is still read to learn the names (as pgrep does).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void walk(const char *comm_filter, FILE *out)
{
	DIR *proc = opendir("/proc");
	struct dirent *p;
	char path[1024], buf[4096], link[4096];

	if (!proc)
		return;
	while ((p = readdir(proc))) {
		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", p->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		char *open = strchr(buf, '('), *close = strrchr(buf, ')');
		if (!open || !close)
			continue;
		*close = 0;
		int show = !comm_filter || strcmp(open + 1, comm_filter) == 0;
		if (show)
			fprintf(out, "%s %s %s\n", p->d_name, open + 1, close + 2);
		if (!show)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", p->d_name);
		DIR *fds = opendir(path);
		struct dirent *fd;
		if (!fds)
			continue;
		while ((fd = readdir(fds))) {
			if (fd->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fd/%s", p->d_name, fd->d_name);
			ssize_t len = readlink(path, link, sizeof(link) - 1);
			if (len < 0)
				continue;
			link[len] = 0;
			fprintf(out, "  %s %s\n", fd->d_name, link);
		}
		closedir(fds);
	}
	closedir(proc);
}

int main(int argc, char **argv)
{
	const char *comm = NULL;
	int count = 1, interval_ms = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
			interval_ms = atoi(argv[++i]);
		else
			comm = argv[i];
	}
	for (int i = 0; i < count; i++) {
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		walk(comm, stdout);
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
