// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// ipcwatch's kernel-side counters: System V and POSIX IPC calls the kernel refused, and the
// time spent in the calls that can block (semop/semtimedop, msgsnd), per IPC namespace.
//
// Everything is counted here, in maps the daemon reads once a tick. Only refused allocations
// go to user space one by one, through a small ring buffer (a bounded sample: when it is
// full, the sample is dropped and counted, the counters stay exact).
//
// Built with `clang -O2 -g -target bpf` and committed beside this file as ipcwatch.bpf.o;
// crates/probes/tests/rebuild.rs rebuilds it and checks that the rebuilt object behaves the
// same. No vmlinux.h: the few kernel structs read are declared below and relocated by CO-RE
// against the running kernel's BTF.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// --- the kernel's types, as much as is read (CO-RE relocates the offsets) ---

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct ipc_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct ipc_namespace *ipc_ns;
} __attribute__((preserve_access_index));

struct task_struct {
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

// The syscall tracepoints' records (stable: include/trace/events/syscalls.h).
struct sys_enter_args {
	__u64 common;
	long id;
	unsigned long args[6];
};

struct sys_exit_args {
	__u64 common;
	long id;
	long ret;
};

// --- what user space reads; crates/probes/src/layout.rs mirrors these numbers ---

#define KIND_SEM 0
#define KIND_MSG 1
#define KIND_SHM 2
#define KIND_MQ 3

#define BUCKETS 36 // log2 of nanoseconds: bucket b holds [2^b, 2^(b+1)); the last, the rest

// Per namespace, per CPU: the wait histograms and the refused IPC_NOWAIT sends.
struct ns_stats {
	__u64 sem_wait[BUCKETS];
	__u64 sem_wait_ns;
	__u64 msg_wait[BUCKETS];
	__u64 msg_wait_ns;
	__u64 msg_refused;
};

// One refused allocation, for "who was refused".
struct failure {
	__u64 boot_ns;
	__u32 ns;
	__u32 pid;
	__u32 uid;
	__u16 kind;
	__u16 err;
	__s32 key; // the IPC key asked for (0 for mq_open)
	__u32 pad;
	__u64 arg; // nsems for semget, the size for shmget, else 0
	char comm[16];
};

// Index of the health counters (a per-CPU array; user space sums the CPUs).
#define HEALTH_SAMPLES_LOST 0 // failures not sampled (ring buffer full)
#define HEALTH_MAP_FULL 1     // events not counted because a map was full
#define HEALTH_INFLIGHT_LOST 2 // calls whose start was not kept (in-flight map full)
#define HEALTH_LEN 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HEALTH_LEN);
	__type(key, __u32);
	__type(value, __u64);
} health SEC(".maps");

// Any change to the maps below, counted where user space reads it without a syscall each
// tick (and reads the maps only when it moved): one 64-byte line per CPU, written by that CPU
// alone (no line shared between CPUs), mapped into the daemon. Sized to the possible CPUs
// when loaded.
struct change_line {
	__u64 count;
	__u64 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct change_line);
} changes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); // IPC namespace inode
	__type(value, struct ns_stats);
} ns_stats SEC(".maps");

// (namespace inode << 32 | kind << 16 | errno) -> refused calls
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} failures SEC(".maps");

// (namespace inode << 32 | kind << 31 | id) -> [waited ns, waits, refused sends]; only calls
// that waited (at least WAITED_NS), so a call that did not block touches no shared line.
struct object_stats {
	__u64 wait_ns;
	__u64 waits;
	__u64 refused;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct object_stats);
} objects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} recent SEC(".maps");

// A call's start and arguments, from its enter to its exit, in the calling task's own
// storage: no lock and no shared table on the hot path, and freed with the task.
struct inflight {
	__u64 start_ns;
	__u64 arg;
	__s32 id;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight SEC(".maps");

#define WAITED_NS 16384 // 2^14: below this a call did not sleep (a wake-up alone takes longer)
#define IPC_NOWAIT 04000
#define O_CREAT 0100
#define EAGAIN 11

static __always_inline void health_count(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&health, &index);
	if (v)
		*v += 1;
}

static __always_inline void changed(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct change_line *l = bpf_map_lookup_elem(&changes, &cpu);
	if (l)
		__sync_fetch_and_add(&l->count, 1);
}

// A loss is a change too: user space reads only the change count each tick, the rest when
// it moved.
static __always_inline void health_add(__u32 index)
{
	health_count(index);
	changed();
}

// Plain loads through the task's BTF pointer (the verifier turns them into fault-safe loads):
// four bpf_probe_read_kernel calls cost more than the rest of a traced semop together.
static __always_inline __u32 current_ipc_ns(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct nsproxy *nsproxy = task->nsproxy;
	if (!nsproxy)
		return 0;
	return nsproxy->ipc_ns->ns.inum;
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r < BUCKETS ? r : BUCKETS - 1;
}

static __always_inline struct ns_stats *stats_of(__u32 ns)
{
	struct ns_stats *s = bpf_map_lookup_elem(&ns_stats, &ns);
	if (s)
		return s;
	static const struct ns_stats zero = {};
	bpf_map_update_elem(&ns_stats, &ns, &zero, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&ns_stats, &ns);
	if (!s)
		health_add(HEALTH_MAP_FULL);
	return s;
}

static __always_inline void add_object(__u32 ns, __u32 kind, __s32 id, __u64 wait_ns, __u64 refused)
{
	__u64 key = ((__u64)ns << 32) | ((__u64)kind << 31) | ((__u64)(__u32)id & 0x7FFFFFFF);
	struct object_stats *o = bpf_map_lookup_elem(&objects, &key);
	if (!o) {
		struct object_stats zero = {};
		bpf_map_update_elem(&objects, &key, &zero, BPF_NOEXIST);
		o = bpf_map_lookup_elem(&objects, &key);
		if (!o) {
			health_add(HEALTH_MAP_FULL);
			return;
		}
	}
	if (wait_ns) {
		__sync_fetch_and_add(&o->wait_ns, wait_ns);
		__sync_fetch_and_add(&o->waits, 1);
	}
	if (refused)
		__sync_fetch_and_add(&o->refused, refused);
}

static __always_inline void refused(__u32 kind, long ret, __s32 key, __u64 arg)
{
	__u32 ns = current_ipc_ns();
	__u64 mkey = ((__u64)ns << 32) | (kind << 16) | ((__u64)(-ret) & 0xFFFF);
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&failures, &mkey);
	if (count)
		__sync_fetch_and_add(count, 1);
	else if (bpf_map_update_elem(&failures, &mkey, &one, BPF_NOEXIST) != 0) {
		count = bpf_map_lookup_elem(&failures, &mkey); // another CPU made it first
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			health_add(HEALTH_MAP_FULL);
	}
	changed();

	struct failure *f = bpf_ringbuf_reserve(&recent, sizeof(*f), 0);
	if (!f) {
		health_add(HEALTH_SAMPLES_LOST);
		return;
	}
	f->boot_ns = bpf_ktime_get_boot_ns();
	f->ns = ns;
	f->pid = bpf_get_current_pid_tgid() >> 32;
	f->uid = (__u32)bpf_get_current_uid_gid();
	f->kind = kind;
	f->err = (__u16)(-ret);
	f->key = key;
	f->pad = 0;
	f->arg = arg;
	bpf_get_current_comm(f->comm, sizeof(f->comm));
	bpf_ringbuf_submit(f, 0);
}

// --- allocations: semget, msgget, shmget, mq_open(O_CREAT) ---

// The exit record does not carry the arguments; the enter of the same task keeps them.
static __always_inline void keep_args(__s32 id, __u32 flags, __u64 arg)
{
	struct inflight *v = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
						  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v) {
		health_add(HEALTH_INFLIGHT_LOST);
		return;
	}
	v->start_ns = bpf_ktime_get_ns();
	v->arg = arg;
	v->id = id;
	v->flags = flags;
}

// The call's start, once: a task's next exit without an enter (one the probes missed) finds
// start_ns 0 and is not counted.
static __always_inline int taken_args(struct inflight *out)
{
	struct inflight *v = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!v || !v->start_ns)
		return 0;
	*out = *v;
	v->start_ns = 0;
	return 1;
}

// semget(key, nsems, flags), msgget(key, flags), shmget(key, size, flags): the enter keeps
// the key and the size asked for, which the failure sample names. These calls are rare (an
// application makes its objects once), so the enter costs nothing that matters.
static __always_inline void allocation_exit(__u32 kind, long ret)
{
	struct inflight v;
	if (!taken_args(&v))
		return;
	if (ret < 0)
		refused(kind, ret, v.id, v.arg);
}

SEC("tracepoint/syscalls/sys_enter_semget")
int semget_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], 0, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_semget")
int semget_exit(struct sys_exit_args *ctx)
{
	allocation_exit(KIND_SEM, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_msgget")
int msgget_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_msgget")
int msgget_exit(struct sys_exit_args *ctx)
{
	allocation_exit(KIND_MSG, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_shmget")
int shmget_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], 0, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_shmget")
int shmget_exit(struct sys_exit_args *ctx)
{
	allocation_exit(KIND_SHM, ctx->ret);
	return 0;
}

// mq_open counts only with O_CREAT: opening a queue that does not exist is a lookup, not
// an allocation the kernel refused.
SEC("tracepoint/syscalls/sys_enter_mq_open")
int mq_open_enter(struct sys_enter_args *ctx)
{
	__u32 oflag = (__u32)ctx->args[1];
	if (oflag & O_CREAT)
		keep_args(0, oflag, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mq_open")
int mq_open_exit(struct sys_exit_args *ctx)
{
	allocation_exit(KIND_MQ, ctx->ret);
	return 0;
}

// --- waits: semop/semtimedop and msgsnd ---

SEC("tracepoint/syscalls/sys_enter_semop")
int semop_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_semtimedop")
int semtimedop_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_msgsnd")
int msgsnd_enter(struct sys_enter_args *ctx)
{
	keep_args((__s32)ctx->args[0], (__u32)ctx->args[3], 0);
	return 0;
}

static __always_inline void waited(__u32 kind, long ret)
{
	struct inflight v;
	if (!taken_args(&v))
		return;
	__u64 took = bpf_ktime_get_ns() - v.start_ns;
	__u32 ns = current_ipc_ns();
	struct ns_stats *s = stats_of(ns);
	if (!s)
		return;
	__u32 b = log2_bucket(took);
	__u64 was_refused = 0;
	if (kind == KIND_SEM) {
		if (b < BUCKETS)
			s->sem_wait[b] += 1;
		s->sem_wait_ns += took;
	} else {
		if (b < BUCKETS)
			s->msg_wait[b] += 1;
		s->msg_wait_ns += took;
		if (ret == -EAGAIN && (v.flags & IPC_NOWAIT)) {
			s->msg_refused += 1;
			was_refused = 1;
		}
	}
	if (took >= WAITED_NS || was_refused)
		add_object(ns, kind, v.id, took >= WAITED_NS ? took : 0, was_refused);
	changed();
}

SEC("tracepoint/syscalls/sys_exit_semop")
int semop_exit(struct sys_exit_args *ctx)
{
	waited(KIND_SEM, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_semtimedop")
int semtimedop_exit(struct sys_exit_args *ctx)
{
	waited(KIND_SEM, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_msgsnd")
int msgsnd_exit(struct sys_exit_args *ctx)
{
	waited(KIND_MSG, ctx->ret);
	return 0;
}
