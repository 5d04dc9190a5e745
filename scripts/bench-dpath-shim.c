/* LD_PRELOAD'ed into bpftrace by scripts/bench, for the benchmark only.
 *
 * bpftrace decides whether path() (the bpf_d_path helper) exists by loading a
 * test fentry program on dentry_open. Where fentry is refused (as on the
 * machines these benchmarks run on), it then rejects path() everywhere, even
 * in iterator programs, where the kernel allows bpf_d_path. This answers that
 * one test load as a success; every other load, the iterator program
 * included, goes to libbpf and the kernel's verifier unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>

struct bpf_prog_load_opts;
typedef int (*prog_load_fn)(enum bpf_prog_type, const char *, const char *,
			    const struct bpf_insn *, size_t, struct bpf_prog_load_opts *);

static int calls_d_path(const struct bpf_insn *insns, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (insns[i].code == (BPF_JMP | BPF_CALL) && insns[i].imm == BPF_FUNC_d_path)
			return 1;
	return 0;
}

int bpf_prog_load(enum bpf_prog_type type, const char *name, const char *license,
		  const struct bpf_insn *insns, size_t count, struct bpf_prog_load_opts *opts)
{
	static prog_load_fn libbpf_load;

	if (!libbpf_load)
		libbpf_load = (prog_load_fn)dlsym(RTLD_NEXT, "bpf_prog_load");
	/* The feature test: a tracing program named after its attach point. */
	if (type == BPF_PROG_TYPE_TRACING && name && !strcmp(name, "dentry_open") &&
	    calls_d_path(insns, count))
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	return libbpf_load(type, name, license, insns, count, opts);
}
