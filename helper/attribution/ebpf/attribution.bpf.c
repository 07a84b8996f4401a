// SPDX-License-Identifier: GPL-2.0-or-later
//
// Portcullis socket attribution: cgroup eBPF programs that record who owns each TCP and UDP
// socket of the cgroup they are attached to, so that userspace can name the process of a
// connection even after that process has exited. Built by helper/attribution/build.rs
// (`clang -O2 -g -target bpf`, headers from libbpf-dev) and loaded by aya.
//
// What these programs own: three LRU hash maps (bounded; the kernel evicts the least recently
// used entry when one is full) and a per-CPU counter array.
//   pcl_sockets:   socket cookie -> owner (the process that created or last used the socket)
//   pcl_flows:     flow key (protocol, family, local, remote) -> cookie + owner + kind
//   pcl_processes: (tgid, start time, exec count) -> ppid, comm, executable path
// What they must not do: decide anything of their own. Every program returns 1 (allow) on
// every path but one: the fast path below, which only repeats a decision userspace made. A
// failed lookup or update only leaves a gap that userspace fills the slow way (sock_diag and
// /proc, or the packet queue). Attribution wakes nobody per connection: userspace reads the
// maps when it needs an answer.
//
// The fast path (off until userspace enables it in pcl_fast_config): userspace, having decided
// a connection of process P to (protocol, address, port) from the packet queue, stores P's app
// (pcl_fast_apps, keyed by tgid + start time + exec count, so a recycled pid or an execve never
// inherits it) and the verdict for (app, protocol, address, port) with the policy generation it
// was decided under (pcl_fast_verdicts). When the same app connects there again, connect4/6
// find the verdict; it counts only while its generation is the current one (userspace bumps
// the generation on every policy change, which retires every cached verdict at once).
//   allow (TCP only): the socket gets our "allow" mark bits (SO_MARK), so its SYN passes the
//     firewall's mark rule and never waits in the queue; when the connection is established
//     the socket's own mark is restored, so a later re-decision (conntrack entry deleted)
//     queues its next packet like any other. UDP is never fast-allowed: a connected UDP socket
//     can still sendto() elsewhere with the socket's mark.
//   block (TCP and connected UDP): connect() fails with EPERM; no packet leaves.
// Each fast decision is reported to userspace through pcl_fast_events (a ring buffer; when it
// is full the event is lost and counted, the decision is not delayed), so connections decided
// in the kernel are still logged.
//
// Licence: GPL-2.0-or-later (compatible with the project's GPL-3.0-or-later) so that the
// kernel lets the programs use its GPL-only helpers (bpf_get_current_task,
// bpf_probe_read_kernel), which read the executable path and start time of the process.
//
// Where each flow comes from (every hook runs in the cgroup the socket was created in):
//   TCP out:  connect4/6 notes the connecting process by cookie; sockops TCP_CONNECT_CB has the
//             full 4-tuple before the SYN leaves and records the flow (ACTIVE_ESTABLISHED_CB
//             fills gaps).
//   TCP in:   sockops TCP_LISTEN_CB records the listener as (local addr, port, remote *);
//             PASSIVE_ESTABLISHED_CB records each accepted connection with the listener's owner.
//   UDP out:  sendmsg4/6 (unconnected sends) has the source port and the destination;
//             connect4/6 records connected sockets that are already bound; sock_release records
//             connected sockets with their final 4-tuple as they close (their port is chosen
//             only after connect4 ran); in between, userspace maps sock_diag's cookie.
//   UDP in:   post_bind4/6 records bound sockets as (local addr, port, remote *).
// sock_release also forgets listeners and bound sockets (so a closed port is not attributed to
// its old owner) and the socket's cookie entry (so userspace can tell a closed socket).

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_LISTEN 10
#define TCP_CLOSE 7

// The ABI shared with src/linux/ebpf.rs: keep both in step.
#define KIND_TCP_CONNECT 1
#define KIND_UDP_SEND 2
#define KIND_UDP_CONNECT 3
#define KIND_TCP_LISTEN 4
#define KIND_UDP_BOUND 5
#define KIND_TCP_ACCEPTED 6
#define KIND_UDP_CLOSED 7

#define EXE_COMPLETE 1   // exe holds every component up to the namespace's root
#define EXE_TRUNCATED 2  // too long or too deep: exe is partial
#define EXE_FAILED 4     // a read failed (or no executable: a kernel thread)

#define EXE_BYTES 768    // components (leaf first, NUL-separated) fit in the first 512 + 256
#define EXE_WINDOW 512   // a component may start below this offset
#define NAME_READ 256    // and is read with at most this many bytes (NUL included)
#define MAX_COMPONENTS 48

#define COUNTER_SOCKETS 0
#define COUNTER_FLOWS 1
#define COUNTER_PROCESSES 2
#define COUNTER_EXE_FAILED 3
#define COUNTER_UPDATE_FAILED 4
#define COUNTER_FAST_ALLOWED 5
#define COUNTER_FAST_BLOCKED 6
#define COUNTER_FAST_EVENTS_LOST 7
#define COUNTERS 8

#define SOL_SOCKET 1
#define SO_MARK 36

// Fast-path verdicts (the ABI with src/linux/fast.rs).
#define FAST_ALLOW 1
#define FAST_BLOCK 2

struct owner {
	__u32 tgid;     // the process id (of the initial pid namespace)
	__u32 uid;      // its effective uid when it made or used the socket
	__u64 start_ns; // when the process started (CLOCK_BOOTTIME): pid reuse check
	__u64 exec_id;  // how many execve()s the process had done: exec check
};

struct flow_key {
	__u64 netns;    // the network namespace's cookie: the same addresses in two namespaces
	                // are two flows
	__u8 protocol;  // IPPROTO_TCP or IPPROTO_UDP
	__u8 family;    // AF_INET (v4-mapped addresses are stored as IPv4) or AF_INET6
	__u16 lport;    // host byte order
	__u16 rport;    // host byte order; 0 with raddr 0: any remote (listener, bound socket)
	__u16 pad;
	__u32 laddr[4]; // network byte order; IPv4 in laddr[0]; 0 = any local address
	__u32 raddr[4];
};

struct flow_val {
	__u64 cookie;
	struct owner owner;
	__u32 kind;
	__u32 pad;
};

struct proc_key {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
	__u64 exec_id;
};

struct proc_val {
	__u32 ppid;
	__u32 exe_flags;
	__u32 exe_len;           // bytes used in exe
	__u32 pad;
	char comm[16];
	char exe[EXE_BYTES];     // path components, leaf first, each NUL-terminated
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} pcl_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} pcl_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct proc_key);
	__type(value, struct proc_val);
} pcl_processes SEC(".maps");

// Room to build a proc_val (too large for the 512-byte stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_val);
} pcl_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} pcl_counters SEC(".maps");

// The fast path's switches, written by userspace only.
struct fast_config {
	__u32 enabled;    // 0: the programs only observe
	__u32 mask;       // our bits of the packet mark (the firewall's mark mask)
	__u32 allow;      // the "allow" bits within it
	__u32 helper;     // the helper's tgid: its own sockets carry our bits and stay as they are
	__u64 generation; // the policy generation in force; older verdicts do not count
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fast_config);
} pcl_fast_config SEC(".maps");

struct fast_app {
	__u32 app;        // userspace's number for the app's profile
	__u32 pad;
};

// (tgid, start time, exec count) -> app, written by userspace after it attributed a process.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, struct fast_app);
} pcl_fast_apps SEC(".maps");

struct verdict_key {
	__u32 app;
	__u8 protocol;
	__u8 family;      // AF_INET (v4-mapped addresses as IPv4) or AF_INET6
	__u16 port;       // the remote port, host byte order
	__u32 addr[4];    // the remote address, network byte order; IPv4 in addr[0]
};

struct verdict_val {
	__u64 generation;
	__u64 expires_ns; // CLOCK_MONOTONIC (bpf_ktime_get_ns); 0: while the generation lasts
	__u32 verdict;    // FAST_ALLOW or FAST_BLOCK
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct verdict_key);
	__type(value, struct verdict_val);
} pcl_fast_verdicts SEC(".maps");

// A socket the fast path marked, until its connection is established (or it closes). Only
// for the report and the generation check: whether a socket carries our bits is read from
// the socket itself, so losing an entry (LRU, a helper restart) never keeps a mark alive.
struct fast_socket {
	__u64 generation; // the policy generation the allow was repeated under
	__u32 app;
	__u32 reported;   // the event was sent (sockops TCP_CONNECT_CB)
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct fast_socket);
} pcl_fast_sockets SEC(".maps");

// One connection decided in the kernel.
struct fast_event {
	struct owner owner;
	__u32 app;
	__u8 protocol;
	__u8 family;
	__u8 verdict;
	__u8 pad;
	__u16 lport;      // host byte order; 0 when not known yet (a blocked connect)
	__u16 rport;
	__u32 pad2;
	__u32 laddr[4];   // network byte order; 0 when not known yet
	__u32 raddr[4];
};

#define FAST_EVENTS_BYTES (256 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FAST_EVENTS_BYTES);
} pcl_fast_events SEC(".maps");

// What a TCP connection carried, reported when it closes (the ABI with
// src/linux/traffic.rs). Payload bytes as TCP counts them: acknowledged by the peer going out,
// received coming in; segments each way.
struct traffic_event {
	__u8 protocol;
	__u8 family;
	__u16 lport;      // host byte order
	__u16 rport;      // host byte order
	__u16 pad;
	__u32 laddr[4];   // network byte order
	__u32 raddr[4];
	__u64 bytes_out;
	__u64 bytes_in;
	__u32 packets_out;
	__u32 packets_in;
};

#define TRAFFIC_EVENTS_BYTES (256 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TRAFFIC_EVENTS_BYTES);
} pcl_traffic_events SEC(".maps");

// Kernel types, only the fields read here; CO-RE relocates them against the running kernel's
// BTF at load time.
typedef struct {
	__u32 val;
} kuid_t;

struct cred {
	kuid_t euid;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct in6_addr {
	__u32 words[4];
};

// What sock_release may not read from its context (the kernel allows the source address and
// port only to post_bind programs): read from the socket itself, which is what the context of
// a cgroup/sock program points to.
struct sock_common {
	__u32 skc_rcv_saddr;
	__u16 skc_num;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));


struct task_struct {
	int tgid;
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	const struct cred *cred;
	__u64 start_boottime;
	__u64 self_exec_id;
	char comm[16];
} __attribute__((preserve_access_index));

static __always_inline void count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&pcl_counters, &which);
	if (value)
		*value += 1;
}

// Appends the executable's path components, leaf first, to v->exe. The walk follows d_parent
// up to each mount's root and then crosses to the parent mount, until the root mount of the
// process' mount namespace.
static __always_inline void read_exe(struct proc_val *v, struct task_struct *task)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	v->exe_len = 0;
	v->exe_flags = 0;
	if (!exe) {
		v->exe_flags = EXE_FAILED;
		return;
	}
	struct dentry *dentry = BPF_CORE_READ(exe, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(exe, f_path.mnt);
	__u64 mnt_offset = bpf_core_field_offset(struct mount, mnt);
	struct mount *mnt = (struct mount *)((char *)vfsmnt - mnt_offset);
	__u32 flags = EXE_TRUNCATED;
	// The offset lives in the map value, not in a register: read back, it is just "some
	// value below EXE_WINDOW" to the verifier, so the paths through one step (a component or
	// a mount crossing) meet again and the loop is verified in linear time.
	for (int i = 0; i < MAX_COMPONENTS; i++) {
		struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (dentry == root || dentry == parent) {
			if (dentry != root) {
				// Not below its mount's root: a disconnected path.
				flags = EXE_FAILED;
				break;
			}
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
			if (up == mnt || !up) {
				flags = EXE_COMPLETE;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = (struct vfsmount *)((char *)up + mnt_offset);
			continue;
		}
		__u32 off = *(volatile __u32 *)&v->exe_len;
		if (off >= EXE_WINDOW)
			break;
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		long n = bpf_probe_read_kernel_str(&v->exe[off], NAME_READ, name);
		if (n <= 0) {
			flags = EXE_FAILED;
			break;
		}
		v->exe_len = off + (__u32)n;
		dentry = parent;
	}
	v->exe_flags = flags;
	if (flags != EXE_COMPLETE)
		count(COUNTER_EXE_FAILED);
}

// Records the calling process in pcl_processes unless this (tgid, start, exec) is known.
static __always_inline void note_process(const struct owner *o, struct task_struct *task,
					 struct task_struct *leader)
{
	struct proc_key key = {
		.tgid = o->tgid,
		.start_ns = o->start_ns,
		.exec_id = o->exec_id,
	};
	if (bpf_map_lookup_elem(&pcl_processes, &key))
		return;
	__u32 zero = 0;
	struct proc_val *v = bpf_map_lookup_elem(&pcl_scratch, &zero);
	if (!v)
		return;
	v->ppid = BPF_CORE_READ(leader, real_parent, tgid);
	v->pad = 0;
	if (BPF_CORE_READ_STR_INTO(&v->comm, leader, comm) < 0)
		v->comm[0] = 0;
	read_exe(v, task);
	if (bpf_map_update_elem(&pcl_processes, &key, v, BPF_NOEXIST) == 0)
		count(COUNTER_PROCESSES);
}

// The calling process as an owner (process context only: never in softirq callbacks).
static __always_inline void current_owner(struct owner *o)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	o->tgid = BPF_CORE_READ(task, tgid);
	o->uid = BPF_CORE_READ(task, cred, euid.val);
	o->start_ns = BPF_CORE_READ(leader, start_boottime);
	o->exec_id = BPF_CORE_READ(task, self_exec_id);
	note_process(o, task, leader);
}

// The socket's owner: the calling process (which is recorded for the cookie if it is not
// already), or NULL if the cookie map is full of live entries and refuses.
static __always_inline struct owner *own(__u64 cookie)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct owner *known = bpf_map_lookup_elem(&pcl_sockets, &cookie);
	if (known && known->tgid == tgid) {
		// The same process, but after an execve it is another program: record it anew.
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		if (BPF_CORE_READ(task, self_exec_id) == known->exec_id)
			return known;
	}
	struct owner o = {};
	current_owner(&o);
	if (bpf_map_update_elem(&pcl_sockets, &cookie, &o, BPF_ANY) != 0) {
		count(COUNTER_UPDATE_FAILED);
		return 0;
	}
	count(COUNTER_SOCKETS);
	return bpf_map_lookup_elem(&pcl_sockets, &cookie);
}

// Same, for sockops, which has no bpf_get_current_pid_tgid: the recorded owner, or the
// current task (only call this from process-context callbacks).
static __always_inline struct owner *own_sockops(__u64 cookie)
{
	struct owner *known = bpf_map_lookup_elem(&pcl_sockets, &cookie);
	if (known)
		return known;
	struct owner o = {};
	current_owner(&o);
	if (bpf_map_update_elem(&pcl_sockets, &cookie, &o, BPF_ANY) != 0) {
		count(COUNTER_UPDATE_FAILED);
		return 0;
	}
	count(COUNTER_SOCKETS);
	return bpf_map_lookup_elem(&pcl_sockets, &cookie);
}

static __always_inline int is_zero6(const __u32 a[4])
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

static __always_inline int is_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

// IPv4-mapped IPv6 flows (a dual-stack socket talking IPv4) are stored as IPv4, as userspace
// asks for them.
static __always_inline void normalize(struct flow_key *k)
{
	if (k->family != AF_INET6)
		return;
	int lm = is_mapped(k->laddr), rm = is_mapped(k->raddr);
	if (!(lm || rm))
		return;
	if (!(lm || is_zero6(k->laddr)) || !(rm || is_zero6(k->raddr)))
		return;
	k->family = AF_INET;
	k->laddr[0] = lm ? k->laddr[3] : 0;
	k->raddr[0] = rm ? k->raddr[3] : 0;
	k->laddr[1] = k->laddr[2] = k->laddr[3] = 0;
	k->raddr[1] = k->raddr[2] = k->raddr[3] = 0;
}

static __always_inline void put_flow(struct flow_key *k, __u64 cookie, const struct owner *o,
				     __u32 kind)
{
	normalize(k);
	struct flow_val *old = bpf_map_lookup_elem(&pcl_flows, k);
	if (old && old->cookie == cookie && old->owner.tgid == o->tgid && old->kind == kind &&
	    old->owner.exec_id == o->exec_id)
		return; // the same socket sending to the same place again: nothing new
	struct flow_val v = {
		.cookie = cookie,
		.owner = *o,
		.kind = kind,
	};
	if (bpf_map_update_elem(&pcl_flows, k, &v, BPF_ANY) == 0)
		count(COUNTER_FLOWS);
	else
		count(COUNTER_UPDATE_FAILED);
}

// Deletes k if it still belongs to the socket `cookie`.
static __always_inline void drop_flow(struct flow_key *k, __u64 cookie)
{
	normalize(k);
	struct flow_val *old = bpf_map_lookup_elem(&pcl_flows, k);
	if (old && old->cookie == cookie)
		bpf_map_delete_elem(&pcl_flows, k);
}

SEC("cgroup/sock_create")
int pcl_sock_create(struct bpf_sock *ctx)
{
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	own(bpf_get_socket_cookie(ctx));
	return 1;
}

// A bound UDP socket: it receives from anyone on (local addr, port).
static __always_inline int post_bind(struct bpf_sock *ctx, int v6)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct owner *o = own(cookie);
	if (!o)
		return 1;
	struct flow_key k = {
		.netns = bpf_get_netns_cookie(ctx),
		.protocol = IPPROTO_UDP,
		.family = v6 ? AF_INET6 : AF_INET,
		.lport = (__u16)ctx->src_port,
	};
	if (v6) {
		k.laddr[0] = ctx->src_ip6[0];
		k.laddr[1] = ctx->src_ip6[1];
		k.laddr[2] = ctx->src_ip6[2];
		k.laddr[3] = ctx->src_ip6[3];
	} else {
		k.laddr[0] = ctx->src_ip4;
	}
	put_flow(&k, cookie, o, KIND_UDP_BOUND);
	return 1;
}

SEC("cgroup/post_bind4")
int pcl_post_bind4(struct bpf_sock *ctx)
{
	return post_bind(ctx, 0);
}

SEC("cgroup/post_bind6")
int pcl_post_bind6(struct bpf_sock *ctx)
{
	return post_bind(ctx, 1);
}

// Sends one fast decision to userspace; a full ring loses the event (counted), never the
// decision.
static __always_inline void fast_report(const struct owner *o, __u32 app, __u8 protocol,
					__u8 family, __u8 verdict, __u16 lport, __u16 rport,
					const __u32 laddr[4], const __u32 raddr[4])
{
	struct fast_event *e = bpf_ringbuf_reserve(&pcl_fast_events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_FAST_EVENTS_LOST);
		return;
	}
	e->owner = *o;
	e->app = app;
	e->protocol = protocol;
	e->family = family;
	e->verdict = verdict;
	e->pad = 0;
	e->lport = lport;
	e->rport = rport;
	e->pad2 = 0;
	e->laddr[0] = laddr[0];
	e->laddr[1] = laddr[1];
	e->laddr[2] = laddr[2];
	e->laddr[3] = laddr[3];
	e->raddr[0] = raddr[0];
	e->raddr[1] = raddr[1];
	e->raddr[2] = raddr[2];
	e->raddr[3] = raddr[3];
	// Waking the reader costs the connecting process a few microseconds: it polls instead,
	// and is woken only when the ring is a quarter full.
	__u64 queued = bpf_ringbuf_query(&pcl_fast_events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(e, queued >= FAST_EVENTS_BYTES / 4 ? 0 : BPF_RB_NO_WAKEUP);
}

// The fast path at connect(): 0 refuses the connect (EPERM), 1 lets it go on (marked when a
// cached "allow" applies, else to the queue as usual). See the top of this file.
// Takes our bits off a socket's mark (leaving every other bit), if it has any.
static __always_inline void strip_mark(void *ctx, __u32 mark, __u32 mask)
{
	if (!(mark & mask))
		return;
	__u32 clean = mark & ~mask;
	bpf_setsockopt(ctx, SOL_SOCKET, SO_MARK, &clean, sizeof(clean));
}

// The fast path at connect(): 0 refuses the connect (EPERM), 1 lets it go on (marked when a
// cached "allow" applies, else to the queue as usual). See the top of this file. Except for
// the helper's own sockets, a socket leaves here with our bits only if this very connect was
// allowed now: bits from an earlier connect of the socket (or set by anyone else) are taken
// off first, so a stale allow can never ride along to another destination.
static __always_inline int fast_connect(struct bpf_sock_addr *ctx, const struct owner *o,
					__u64 cookie, int v6)
{
	__u32 zero = 0;
	struct fast_config *cfg = bpf_map_lookup_elem(&pcl_fast_config, &zero);
	if (!cfg || !cfg->enabled)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	if (o->tgid == cfg->helper)
		return 1;
	__u8 protocol = (__u8)ctx->protocol;
	__u32 mark = sk->mark;
	__u32 mask = cfg->mask;
	bpf_map_delete_elem(&pcl_fast_sockets, &cookie);
	struct proc_key pk = {
		.tgid = o->tgid,
		.start_ns = o->start_ns,
		.exec_id = o->exec_id,
	};
	struct fast_app *app = bpf_map_lookup_elem(&pcl_fast_apps, &pk);
	if (!app) {
		strip_mark(ctx, mark, mask);
		return 1;
	}
	struct verdict_key vk = {
		.app = app->app,
		.protocol = protocol,
		.family = AF_INET,
		.port = bpf_ntohs((__u16)ctx->user_port),
	};
	if (v6) {
		__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1];
		__u32 a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
		if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0x0000ffff)) {
			vk.addr[0] = a3; // IPv4-mapped: the packets are IPv4
		} else {
			vk.family = AF_INET6;
			vk.addr[0] = a0;
			vk.addr[1] = a1;
			vk.addr[2] = a2;
			vk.addr[3] = a3;
		}
	} else {
		vk.addr[0] = ctx->user_ip4;
	}
	struct verdict_val *v = bpf_map_lookup_elem(&pcl_fast_verdicts, &vk);
	__u64 generation = cfg->generation;
	int current = v && v->generation == generation &&
		      // A decision that rested on something with an end (the app's DNS lookup)
		      // ends with it.
		      !(v->expires_ns && bpf_ktime_get_ns() >= v->expires_ns);
	if (current && v->verdict == FAST_BLOCK) {
		__u32 none[4] = {};
		count(COUNTER_FAST_BLOCKED);
		fast_report(o, vk.app, protocol, vk.family, FAST_BLOCK, 0, vk.port, none, vk.addr);
		return 0;
	}
	if (!current || v->verdict != FAST_ALLOW || protocol != IPPROTO_TCP) {
		strip_mark(ctx, mark, mask);
		return 1;
	}
	__u32 marked = (mark & ~mask) | (cfg->allow & mask);
	struct fast_socket fs = {
		.generation = generation,
		.app = vk.app,
	};
	if (bpf_setsockopt(ctx, SOL_SOCKET, SO_MARK, &marked, sizeof(marked)) != 0) {
		strip_mark(ctx, mark, mask);
		return 1;
	}
	bpf_map_update_elem(&pcl_fast_sockets, &cookie, &fs, BPF_ANY);
	count(COUNTER_FAST_ALLOWED);
	return 1;
}

// connect4/6: the connecting process owns the socket from now on. TCP's source port is still
// 0 here (sockops records the flow); a UDP socket that is already bound is recorded at once.
static __always_inline int on_connect(struct bpf_sock_addr *ctx, int v6)
{
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct owner *o = own(cookie);
	if (!o)
		return 1;
	if (!fast_connect(ctx, o, cookie, v6))
		return 0;
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	__u32 lport = sk->src_port;
	if (lport == 0)
		return 1; // chosen after this hook: sock_diag's cookie, then sock_release, fill in
	struct flow_key k = {
		.netns = bpf_get_netns_cookie(ctx),
		.protocol = IPPROTO_UDP,
		.family = v6 ? AF_INET6 : AF_INET,
		.lport = (__u16)lport,
		.rport = bpf_ntohs((__u16)ctx->user_port),
	};
	if (v6) {
		k.laddr[0] = sk->src_ip6[0];
		k.laddr[1] = sk->src_ip6[1];
		k.laddr[2] = sk->src_ip6[2];
		k.laddr[3] = sk->src_ip6[3];
		k.raddr[0] = ctx->user_ip6[0];
		k.raddr[1] = ctx->user_ip6[1];
		k.raddr[2] = ctx->user_ip6[2];
		k.raddr[3] = ctx->user_ip6[3];
	} else {
		k.laddr[0] = sk->src_ip4;
		k.raddr[0] = ctx->user_ip4;
	}
	put_flow(&k, cookie, o, KIND_UDP_CONNECT);
	return 1;
}

SEC("cgroup/connect4")
int pcl_connect4(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, 0);
}

SEC("cgroup/connect6")
int pcl_connect6(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, 1);
}

// sendmsg4/6: an unconnected UDP send. The socket already has its source port (autobind runs
// before this hook); its local address is the bound one (often any) unless the sender chose
// one with IP_PKTINFO.
static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx, int v6)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	__u32 lport = sk->src_port;
	if (lport == 0)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct owner *o = own(cookie);
	if (!o)
		return 1;
	struct flow_key k = {
		.netns = bpf_get_netns_cookie(ctx),
		.protocol = IPPROTO_UDP,
		.family = v6 ? AF_INET6 : AF_INET,
		.lport = (__u16)lport,
		.rport = bpf_ntohs((__u16)ctx->user_port),
	};
	if (v6) {
		k.laddr[0] = ctx->msg_src_ip6[0];
		k.laddr[1] = ctx->msg_src_ip6[1];
		k.laddr[2] = ctx->msg_src_ip6[2];
		k.laddr[3] = ctx->msg_src_ip6[3];
		if (is_zero6(k.laddr)) {
			k.laddr[0] = sk->src_ip6[0];
			k.laddr[1] = sk->src_ip6[1];
			k.laddr[2] = sk->src_ip6[2];
			k.laddr[3] = sk->src_ip6[3];
		}
		k.raddr[0] = ctx->user_ip6[0];
		k.raddr[1] = ctx->user_ip6[1];
		k.raddr[2] = ctx->user_ip6[2];
		k.raddr[3] = ctx->user_ip6[3];
	} else {
		k.laddr[0] = ctx->msg_src_ip4;
		if (k.laddr[0] == 0)
			k.laddr[0] = sk->src_ip4;
		k.raddr[0] = ctx->user_ip4;
	}
	put_flow(&k, cookie, o, KIND_UDP_SEND);
	return 1;
}

SEC("cgroup/sendmsg4")
int pcl_sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, 0);
}

SEC("cgroup/sendmsg6")
int pcl_sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, 1);
}

// The socket's own 4-tuple as sockops sees it (remote zero for a listener).
static __always_inline void ops_key(struct bpf_sock_ops *ops, struct flow_key *k, int with_remote)
{
	k->netns = bpf_get_netns_cookie(ops);
	k->protocol = IPPROTO_TCP;
	k->lport = (__u16)ops->local_port;
	if (ops->family == AF_INET6) {
		k->family = AF_INET6;
		k->laddr[0] = ops->local_ip6[0];
		k->laddr[1] = ops->local_ip6[1];
		k->laddr[2] = ops->local_ip6[2];
		k->laddr[3] = ops->local_ip6[3];
		if (with_remote) {
			k->raddr[0] = ops->remote_ip6[0];
			k->raddr[1] = ops->remote_ip6[1];
			k->raddr[2] = ops->remote_ip6[2];
			k->raddr[3] = ops->remote_ip6[3];
		}
	} else {
		k->family = AF_INET;
		k->laddr[0] = ops->local_ip4;
		if (with_remote)
			k->raddr[0] = ops->remote_ip4;
	}
	if (with_remote)
		k->rport = (__u16)bpf_ntohl(ops->remote_port);
}

// Right before a SYN the fast path let through leaves (TCP_CONNECT_CB, process context; with
// TCP fast open this is the first write, which may come long after connect()): it is
// reported, unless the policy changed since connect() — then our bits come off and the SYN
// goes to the queue like any other.
static __always_inline void fast_syn(struct bpf_sock_ops *ops, const struct owner *o,
				     __u64 cookie, const struct flow_key *k)
{
	__u32 zero = 0;
	struct fast_config *cfg = bpf_map_lookup_elem(&pcl_fast_config, &zero);
	struct bpf_sock *sk = ops->sk;
	if (!cfg || !cfg->enabled || !sk || o->tgid == cfg->helper)
		return;
	__u32 mark = sk->mark;
	if (!(mark & cfg->mask))
		return;
	struct fast_socket *fs = bpf_map_lookup_elem(&pcl_fast_sockets, &cookie);
	if (!fs || fs->generation != cfg->generation) {
		__u32 clean = mark & ~cfg->mask;
		bpf_setsockopt(ops, SOL_SOCKET, SO_MARK, &clean, sizeof(clean));
		bpf_map_delete_elem(&pcl_fast_sockets, &cookie);
		return;
	}
	if (!fs->reported) {
		fs->reported = 1;
		fast_report(o, fs->app, IPPROTO_TCP, k->family, FAST_ALLOW, k->lport, k->rport,
			    k->laddr, k->raddr);
	}
}

// An outgoing connection is established (softirq): our bits come off its socket, whoever
// set them, unless the socket is the helper's own (its recorded owner); from now on a
// re-decision (conntrack entry deleted) queues its next packet like any other.
static __always_inline void fast_established(struct bpf_sock_ops *ops, __u64 cookie)
{
	__u32 zero = 0;
	struct fast_config *cfg = bpf_map_lookup_elem(&pcl_fast_config, &zero);
	struct bpf_sock *sk = ops->sk;
	bpf_map_delete_elem(&pcl_fast_sockets, &cookie);
	if (!cfg || !cfg->enabled || !sk)
		return;
	__u32 mark = sk->mark;
	if (!(mark & cfg->mask))
		return;
	struct owner *o = bpf_map_lookup_elem(&pcl_sockets, &cookie);
	if (o && o->tgid == cfg->helper)
		return;
	__u32 clean = mark & ~cfg->mask;
	bpf_setsockopt(ops, SOL_SOCKET, SO_MARK, &clean, sizeof(clean));
}

// The owner of the listener that accepted a connection to `k` (normalized), if recorded.
static __always_inline struct flow_val *listener_of(const struct flow_key *k)
{
	struct flow_key l = {
		.netns = k->netns,
		.protocol = IPPROTO_TCP,
		.family = k->family,
		.lport = k->lport,
	};
	l.laddr[0] = k->laddr[0];
	l.laddr[1] = k->laddr[1];
	l.laddr[2] = k->laddr[2];
	l.laddr[3] = k->laddr[3];
	struct flow_val *v = bpf_map_lookup_elem(&pcl_flows, &l);
	if (v)
		return v;
	l.laddr[0] = l.laddr[1] = l.laddr[2] = l.laddr[3] = 0;
	v = bpf_map_lookup_elem(&pcl_flows, &l);
	if (v || k->family != AF_INET)
		return v;
	// An IPv4 connection accepted by a dual-stack listener on [::].
	l.family = AF_INET6;
	return bpf_map_lookup_elem(&pcl_flows, &l);
}

SEC("sockops")
int pcl_sock_ops_cb(struct bpf_sock_ops *ops)
{
	__u32 op = ops->op;
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_TCP_LISTEN_CB &&
	    op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	if (ops->family != AF_INET && ops->family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ops);
	struct flow_key k = {};
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		// Process context (connect()), right before the SYN.
		struct owner *o = own_sockops(cookie);
		if (!o)
			return 1;
		ops_key(ops, &k, 1);
		put_flow(&k, cookie, o, KIND_TCP_CONNECT);
		fast_syn(ops, o, cookie, &k);
		return 1;
	}
	case BPF_SOCK_OPS_TCP_LISTEN_CB: {
		// Process context (listen()).
		struct owner *o = own_sockops(cookie);
		if (!o)
			return 1;
		ops_key(ops, &k, 0);
		put_flow(&k, cookie, o, KIND_TCP_LISTEN);
		return 1;
	}
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		// Established: our bits come off (see the top), except on the helper's own sockets.
		fast_established(ops, cookie);
		// Softirq: the current task is anyone; only a recorded owner counts. This fills the
		// gap of a connect whose CONNECT_CB found no owner.
		struct owner *o = bpf_map_lookup_elem(&pcl_sockets, &cookie);
		if (!o)
			return 1;
		// An app's connection: its end is reported with what it carried (STATE_CB).
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		ops_key(ops, &k, 1);
		normalize(&k);
		if (!bpf_map_lookup_elem(&pcl_flows, &k))
			put_flow(&k, cookie, o, KIND_TCP_CONNECT);
		return 1;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		// Softirq: a new child socket, owned like the listener that accepted it.
		ops_key(ops, &k, 1);
		normalize(&k);
		struct flow_val *l = listener_of(&k);
		if (!l)
			return 1;
		struct owner o = l->owner;
		if (bpf_map_update_elem(&pcl_sockets, &cookie, &o, BPF_ANY) == 0)
			count(COUNTER_SOCKETS);
		put_flow(&k, cookie, &o, KIND_TCP_ACCEPTED);
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	case BPF_SOCK_OPS_STATE_CB: {
		// Only sockets of apps ask for this (see ESTABLISHED above). The connection is over
		// (after TIME_WAIT began, a reset, or a close of both sides): report what it carried,
		// while its ports are still set. A full ring loses the report, nothing else.
		if (ops->args[1] != TCP_CLOSE)
			return 1;
		struct traffic_event *t =
			bpf_ringbuf_reserve(&pcl_traffic_events, sizeof(*t), 0);
		if (!t)
			return 1;
		ops_key(ops, &k, 1);
		t->protocol = IPPROTO_TCP;
		t->family = k.family;
		t->lport = k.lport;
		t->rport = k.rport;
		t->pad = 0;
		t->laddr[0] = k.laddr[0];
		t->laddr[1] = k.laddr[1];
		t->laddr[2] = k.laddr[2];
		t->laddr[3] = k.laddr[3];
		t->raddr[0] = k.raddr[0];
		t->raddr[1] = k.raddr[1];
		t->raddr[2] = k.raddr[2];
		t->raddr[3] = k.raddr[3];
		t->bytes_out = ops->bytes_acked;
		t->bytes_in = ops->bytes_received;
		t->packets_out = ops->segs_out;
		t->packets_in = ops->segs_in;
		bpf_ringbuf_submit(t, 0);
		return 1;
	}
	}
	return 1;
}

// A socket closes (process context; its 4-tuple is still intact).
SEC("cgroup/sock_release")
int pcl_sock_release(struct bpf_sock *ctx)
{
	__u32 protocol = ctx->protocol;
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return 1;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	bpf_map_delete_elem(&pcl_fast_sockets, &cookie);
	struct owner *o = bpf_map_lookup_elem(&pcl_sockets, &cookie);
	if (!o)
		return 1;
	struct owner owner = *o;
	struct sock *sk = (struct sock *)ctx;
	struct flow_key k = {
		.netns = bpf_get_netns_cookie(ctx),
		.protocol = (__u8)protocol,
		.family = (__u8)ctx->family,
		.lport = BPF_CORE_READ(sk, __sk_common.skc_num),
	};
	if (ctx->family == AF_INET6) {
		struct in6_addr local = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr);
		k.laddr[0] = local.words[0];
		k.laddr[1] = local.words[1];
		k.laddr[2] = local.words[2];
		k.laddr[3] = local.words[3];
	} else {
		k.laddr[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	}
	__u16 rport = bpf_ntohs(ctx->dst_port);
	if (protocol == IPPROTO_TCP && ctx->state == TCP_LISTEN) {
		drop_flow(&k, cookie);
	} else if (protocol == IPPROTO_UDP && k.lport != 0) {
		if (rport != 0) {
			// A connected UDP socket: its final 4-tuple, for a lookup after it is gone.
			k.rport = rport;
			if (ctx->family == AF_INET6) {
				k.raddr[0] = ctx->dst_ip6[0];
				k.raddr[1] = ctx->dst_ip6[1];
				k.raddr[2] = ctx->dst_ip6[2];
				k.raddr[3] = ctx->dst_ip6[3];
			} else {
				k.raddr[0] = ctx->dst_ip4;
			}
			put_flow(&k, cookie, &owner, KIND_UDP_CLOSED);
		} else {
			drop_flow(&k, cookie);
		}
	}
	bpf_map_delete_elem(&pcl_sockets, &cookie);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
