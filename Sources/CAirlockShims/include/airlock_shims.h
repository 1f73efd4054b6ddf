/*
 * airlock_shims.h: the thin C layer under AirlockPosix and AirlockSandbox.
 *
 * Only what Swift cannot call directly lives here: C variadic functions (prctl, fcntl
 * with an argument, syscall), GNU-only names that the Glibc module hides
 * (POSIX_SPAWN_SETSID, posix_spawn_file_actions_addclosefrom_np, gettid, close_range,
 * unshare, setresuid), macros (WIFEXITED...), raw system calls without a libc wrapper
 * (Landlock, mount_setattr), the seccomp BPF program and its async-signal-safe SIGSYS
 * handler.
 *
 * Convention: every function named airlock_* returns -1 and leaves errno set on
 * failure (like the system call it wraps), unless its comment says otherwise. None of
 * them retries EINTR: the Swift wrapper does, exactly once per call site.
 */
#ifndef AIRLOCK_SHIMS_H
#define AIRLOCK_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <poll.h>

/* MARK: - Constants the Glibc module imports awkwardly (enums, GNU-only) */

static const int AIRLOCK_SOCK_STREAM = SOCK_STREAM;
static const int AIRLOCK_SOCK_SEQPACKET = SOCK_SEQPACKET;
static const int AIRLOCK_SOCK_CLOEXEC = SOCK_CLOEXEC;
static const int AIRLOCK_SOCK_NONBLOCK = SOCK_NONBLOCK;
static const int AIRLOCK_O_PATH = 010000000;
static const int AIRLOCK_MSG_DONTWAIT = MSG_DONTWAIT;
static const int AIRLOCK_MSG_NOSIGNAL = MSG_NOSIGNAL;
static const int AIRLOCK_MSG_TRUNC = MSG_TRUNC;
static const int AIRLOCK_MSG_CTRUNC = MSG_CTRUNC;
static const int AIRLOCK_MSG_PEEK = MSG_PEEK;
static const int AIRLOCK_MSG_WAITALL = MSG_WAITALL;

static const uint32_t AIRLOCK_EPOLLIN = EPOLLIN;
static const uint32_t AIRLOCK_EPOLLOUT = EPOLLOUT;
static const uint32_t AIRLOCK_EPOLLRDHUP = EPOLLRDHUP;
static const uint32_t AIRLOCK_EPOLLHUP = EPOLLHUP;
static const uint32_t AIRLOCK_EPOLLERR = EPOLLERR;
static const uint32_t AIRLOCK_EPOLLET = EPOLLET;
static const uint32_t AIRLOCK_EPOLLONESHOT = EPOLLONESHOT;

/* MARK: - Names */

/** The symbolic name of an errno value ("ENOENT"), or NULL when unknown. */
const char *airlock_errno_name(int error);
/** The abbreviation of a signal without "SIG" ("SEGV"), or NULL when unknown. */
const char *airlock_signal_abbreviation(int signal_number);
/** SIGRTMIN and SIGRTMAX as this libc defines them (they are functions in glibc). */
int airlock_sigrtmin(void);
int airlock_sigrtmax(void);

/* MARK: - File descriptors */

int airlock_fcntl_getfl(int fd);
int airlock_fcntl_setfl(int fd, int flags);
int airlock_fcntl_getfd(int fd);
int airlock_fcntl_setfd(int fd, int flags);
/** fcntl(fd, F_DUPFD_CLOEXEC, minimum). */
int airlock_fcntl_dupfd_cloexec(int fd, int minimum);
/** close_range(first, last, flags). */
int airlock_close_range(unsigned int first, unsigned int last, int flags);
/** pipe2(fds, O_CLOEXEC | extra_flags). */
int airlock_pipe2(int fds[2], int flags);
/** accept4 (GNU). */
int airlock_accept4(int fd, int flags);
int airlock_signalfd(int fd, const sigset_t *mask, int flags);
int airlock_eventfd(unsigned int initial, int flags);
/** The flag values signalfd and eventfd take. */
static const int AIRLOCK_SFD_NONBLOCK = SFD_NONBLOCK;
static const int AIRLOCK_SFD_CLOEXEC = SFD_CLOEXEC;
static const int AIRLOCK_EFD_NONBLOCK = EFD_NONBLOCK;
static const int AIRLOCK_EFD_CLOEXEC = EFD_CLOEXEC;
static const int AIRLOCK_EFD_SEMAPHORE = EFD_SEMAPHORE;

/* MARK: - Sockets */

/** SO_PEERCRED of a connected Unix socket. */
int airlock_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);
/** setsockopt(SOL_SOCKET, SO_SNDBUF / SO_RCVBUF (or the *FORCE variants)). */
int airlock_set_buffer_size(int fd, int receive, int force, int bytes);
/** getsockopt(SOL_SOCKET, SO_SNDBUF / SO_RCVBUF): the size the kernel uses. */
int airlock_get_buffer_size(int fd, int receive);
/** socket(AF_UNIX, type | SOCK_CLOEXEC) then bind to path (length-checked). ENAMETOOLONG when too long. */
int airlock_unix_bind(int fd, const char *path);
int airlock_unix_connect(int fd, const char *path);

/* MARK: - Processes */

/**
 * posix_spawn with what the Glibc module hides. Each sources[i] is dup2()ed onto
 * targets[i] (the caller guarantees no source number is also a target number), every
 * descriptor above the highest target is closed (addclosefrom_np), the signal mask is
 * emptied and every signal reset to its default disposition; with new_session the
 * child calls setsid(). Returns 0 and stores the pid, or -1 with errno.
 */
int airlock_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                  const int *sources, const int *targets, int count, int new_session);

int airlock_wifexited(int status);
int airlock_wexitstatus(int status);
int airlock_wifsignaled(int status);
int airlock_wtermsig(int status);
int airlock_wcoredump(int status);

pid_t airlock_gettid(void);

int airlock_set_parent_death_signal(int signal_number);
int airlock_get_parent_death_signal(void);
int airlock_set_no_new_privileges(void);
int airlock_get_no_new_privileges(void);
int airlock_set_dumpable(int dumpable);
int airlock_set_child_subreaper(int enabled);
/** PR_SET_NAME (the kernel keeps the first 15 bytes). */
int airlock_set_name(const char *name);

/** pthread_sigmask(SIG_BLOCK / SIG_UNBLOCK / SIG_SETMASK, ...); returns 0 or -1 with errno. */
int airlock_sigmask(int how, const sigset_t *set, sigset_t *old);
static const int AIRLOCK_SIG_BLOCK = SIG_BLOCK;
static const int AIRLOCK_SIG_UNBLOCK = SIG_UNBLOCK;
static const int AIRLOCK_SIG_SETMASK = SIG_SETMASK;

/* MARK: - Sandbox (used by AirlockSandbox) */

/** unshare(flags). */
int airlock_unshare(int flags);
static const int AIRLOCK_CLONE_NEWUSER = 0x10000000;
static const int AIRLOCK_CLONE_NEWNS = 0x00020000;
static const int AIRLOCK_CLONE_NEWPID = 0x20000000;
static const int AIRLOCK_CLONE_NEWNET = 0x40000000;
static const int AIRLOCK_CLONE_NEWIPC = 0x08000000;
static const int AIRLOCK_CLONE_NEWUTS = 0x04000000;

int airlock_setresuid(uid_t uid);
int airlock_setresgid(gid_t gid);
int airlock_setgroups(size_t count, const gid_t *groups);
int airlock_sethostname(const char *name);
/** mount(2). */
int airlock_mount(const char *source, const char *target, const char *type,
                  unsigned long flags, const char *data);
/** mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, {attr_set, attr_clr}) (Linux 5.12+). */
int airlock_mount_setattr(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clear);
/** fork() (unavailable to Swift). */
pid_t airlock_fork(void);
/**
 * Forks the PID 1 of a fresh PID namespace (after unshare(CLONE_NEWPID)): it closes every
 * descriptor, sets PDEATHSIG(SIGKILL), reaps orphans forever. Returns its pid in the
 * caller; never returns in the child.
 */
pid_t airlock_fork_namespace_init(void);
/** In the host process forked after airlock_fork_namespace_init: close the inherited end
 *  of the pipe that tells the namespace init its outer process is gone. */
void airlock_close_namespace_init_pipe(void);
/**
 * Waits for `child` (forwarding SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 to it)
 * and then ends the calling process the same way: the same exit code, or the same signal
 * re-raised with its default action. Never returns.
 */
void airlock_mirror_child_exit(pid_t child) __attribute__((noreturn));
static const unsigned long AIRLOCK_MS_RDONLY = 1;
static const unsigned long AIRLOCK_MS_NOSUID = 2;
static const unsigned long AIRLOCK_MS_NODEV = 4;
static const unsigned long AIRLOCK_MS_NOEXEC = 8;
static const unsigned long AIRLOCK_MS_REMOUNT = 32;
static const unsigned long AIRLOCK_MS_BIND = 4096;
static const unsigned long AIRLOCK_MS_REC = 16384;
static const unsigned long AIRLOCK_MS_PRIVATE = 1UL << 18;
static const unsigned long AIRLOCK_MS_SLAVE = 1UL << 19;
static const uint64_t AIRLOCK_MOUNT_ATTR_RDONLY = 1;
static const uint64_t AIRLOCK_MOUNT_ATTR_NOSUID = 2;
static const uint64_t AIRLOCK_MOUNT_ATTR_NODEV = 4;
/** Lowers both the soft and hard limit of `resource` to `value` (never raises a hard limit: clamps to it). */
int airlock_lower_rlimit(int resource, uint64_t value);
static const int AIRLOCK_RLIMIT_DATA = 2;
static const int AIRLOCK_RLIMIT_CORE = 4;
static const int AIRLOCK_RLIMIT_NPROC = 6;
static const int AIRLOCK_RLIMIT_NOFILE = 7;
/** mallopt(M_ARENA_MAX, arenas). Returns 1 on success, 0 on failure (no errno). */
int airlock_set_malloc_arena_max(int arenas);
/** mallopt(M_TRIM_THRESHOLD, trim) and mallopt(M_MMAP_THRESHOLD, mmap): keep freed memory
 *  instead of returning (and re-faulting) it. Returns 1 on success, 0 on failure. */
int airlock_set_malloc_thresholds(int trim, int mmap);

/** The highest Landlock ABI version the kernel supports, or -1 with errno (ENOSYS, EOPNOTSUPP). */
int airlock_landlock_abi_version(void);
/** landlock_create_ruleset with the given handled rights; returns the ruleset fd. */
int airlock_landlock_create_ruleset(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped, int abi);
/** landlock_add_rule(PATH_BENEATH) for the path opened with O_PATH. -1/errno (ENOENT when absent). */
int airlock_landlock_allow_path(int ruleset, const char *path, uint64_t allowed_fs);
/** landlock_restrict_self(ruleset, 0). */
int airlock_landlock_restrict_self(int ruleset);

/** Drops every capability: effective/permitted/inheritable to zero, ambient cleared, bounding set cleared (best effort, EPERM ignored). */
int airlock_drop_capabilities(void);

/**
 * Installs an async-signal-safe SIGSYS handler (SA_SIGINFO) that writes one W_FATAL
 * frame "seccomp: denied system call <name> (<nr>)" to channel_fd with a single
 * send(MSG_NOSIGNAL) (write() when the fd is not a socket), resets SIGSYS to SIG_DFL
 * and re-raises it.
 */
int airlock_install_sigsys_reporter(int channel_fd);
/** Loads the built-in seccomp deny-list filter into every thread (TSYNC): SECCOMP_RET_TRAP for each denied call, KILL_PROCESS on a foreign architecture. Needs no_new_privs or CAP_SYS_ADMIN (EACCES). */
int airlock_seccomp_install_deny_list(void);
/** The number of system calls on the deny list, and the name of entry i (for documentation and status). */
int airlock_seccomp_deny_list_count(void);
const char *airlock_seccomp_deny_list_name(int index);
/** The name of a system call number on this architecture, or NULL (async-signal-safe). */
const char *airlock_syscall_name(long number);
/** syscall(SYS_ptrace, PTRACE_TRACEME...) style probe: a raw syscall with up to three arguments, for tests and probes. */
long airlock_raw_syscall3(long number, long a1, long a2, long a3);

/* MARK: - Batched receive and scheduling (posix.c) */

/** The most packets one airlock_receive_packets call takes. */
#define AIRLOCK_RECEIVE_PACKETS_MAX 64

/**
 * Receives up to `count` (at most AIRLOCK_RECEIVE_PACKETS_MAX) packets from a datagram or
 * SOCK_SEQPACKET socket with one recvmmsg(2): packet i goes to buffers[i] (each `capacity`
 * bytes), sizes[i] gets its full size (MSG_TRUNC: larger than `capacity` when it did not
 * fit) and truncated[i] is 1 when it did not fit. `flags` are recvmmsg's (MSG_DONTWAIT).
 * Returns how many packets were received (a zero-size packet is end of file), or -1 with errno.
 */
int airlock_receive_packets(int fd, void *const *buffers, size_t capacity, unsigned int count, size_t *sizes, int *truncated, int flags);

/**
 * Moves the calling process from SCHED_OTHER to SCHED_BATCH (same nice level and CPU share;
 * the scheduler no longer preempts the thread that woke it, so a sender finishes its
 * system call before the relay runs). Returns 1 when switched, 0 when the process already
 * had another policy (left as it is), -1 with errno on failure.
 */
int airlock_prefer_batch_scheduling(void);

/* MARK: - Shared memory and futexes (the worker channel's rings; posix.c) */

/** memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING). */
int airlock_memfd_create(const char *name);
/** mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0); NULL with errno on failure. */
void *airlock_map_shared(int fd, size_t length);
/** mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0); NULL with errno on failure. */
void *airlock_map_shared_read_only(int fd, size_t length);
/** fcntl(fd, F_ADD_SEALS, seals): 0, or -1 with errno. */
int airlock_add_seals(int fd, unsigned int seals);
/** fcntl(fd, F_GET_SEALS): the seals, or -1 with errno (EINVAL: not a memory file). */
int airlock_get_seals(int fd);
/** The seal bits, for Swift: F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE. */
extern const unsigned int AIRLOCK_SEAL_SEAL, AIRLOCK_SEAL_SHRINK, AIRLOCK_SEAL_GROW, AIRLOCK_SEAL_WRITE;
/** fstatfs(fd).f_type, or -1 with errno. */
long long airlock_filesystem_type(int fd);
/** TMPFS_MAGIC: the file system of memfd_create's files (without MFD_HUGETLB). */
extern const long long AIRLOCK_TMPFS_MAGIC;
/** fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length): 0, or -1 with errno. */
int airlock_punch_hole(int fd, long long offset, long long length);

/* MARK: - Descriptor passing (SCM_RIGHTS; posix.c) */

/**
 * sendmsg of `length` bytes with one descriptor, `passed`, attached (SCM_RIGHTS) and
 * MSG_NOSIGNAL. Returns the count sent, or -1 with errno.
 */
long airlock_send_with_descriptor(int fd, const void *bytes, size_t length, int passed, int flags);
/**
 * recvmsg of up to `length` bytes into `bytes`, taking descriptors passed with them
 * (SCM_RIGHTS, received close-on-exec): up to `capacity` go to `descriptors` and their
 * count to `*received`; any beyond those are closed and `*truncated` is set to 1 (also
 * when the kernel reports MSG_CTRUNC). Returns the count of bytes received (0: the peer
 * closed), or -1 with errno.
 */
long airlock_receive_with_descriptors(int fd, void *bytes, size_t length, int flags, int *descriptors, int capacity, int *received, int *truncated);
/**
 * FUTEX_WAIT (not private: the word may be shared between processes): sleeps while
 * `*word == expected`. Returns 0 when woken, -1 with errno (EAGAIN: the word had already
 * changed; EINTR).
 */
int airlock_futex_wait(uint32_t *word, uint32_t expected);
/** FUTEX_WAKE: wakes up to `count` waiters on `word`; returns how many, or -1 with errno. */
int airlock_futex_wake(uint32_t *word, int count);

/*
 * Atomic access to words of memory shared with another process (the rings). Each load is
 * one load: a value checked after it is the value used.
 */
static inline uint32_t airlock_load_acquire_u32(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }
static inline uint32_t airlock_load_relaxed_u32(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
static inline void airlock_store_release_u32(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }
static inline void airlock_store_relaxed_u32(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }
static inline uint32_t airlock_exchange_u32(uint32_t *word, uint32_t value) { return __atomic_exchange_n(word, value, __ATOMIC_SEQ_CST); }
static inline uint32_t airlock_add_u32(uint32_t *word, uint32_t value) { return __atomic_add_fetch(word, value, __ATOMIC_SEQ_CST); }
static inline uint32_t airlock_subtract_u32(uint32_t *word, uint32_t value) { return __atomic_sub_fetch(word, value, __ATOMIC_SEQ_CST); }
/** A full (sequentially consistent) fence: orders a store before a later load. */
static inline void airlock_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* MARK: - CPU affinity (airlock-bench; bench.c) */

/** sched_setaffinity(tid) to CPU `cpu` alone, or to every configured CPU when `cpu` < 0. */
int airlock_set_cpu_affinity(pid_t tid, int cpu);
/** How many CPUs thread `tid` may run on (sched_getaffinity), or -1. */
int airlock_cpu_affinity_count(pid_t tid);

#endif /* AIRLOCK_SHIMS_H */
