/* The AirlockSandbox half of the shims: see airlock_shims.h. */
#include "airlock_shims.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* MARK: - Namespaces, credentials, mounts */

int airlock_unshare(int flags) { return unshare(flags); }
int airlock_setresuid(uid_t uid) { return setresuid(uid, uid, uid); }
int airlock_setresgid(gid_t gid) { return setresgid(gid, gid, gid); }
int airlock_setgroups(size_t count, const gid_t *groups) { return setgroups(count, groups); }
int airlock_sethostname(const char *name) { return sethostname(name, strlen(name)); }

int airlock_mount(const char *source, const char *target, const char *type,
                  unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data);
}

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

struct airlock_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int airlock_mount_setattr(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clear) {
    struct airlock_mount_attr attr = { .attr_set = attr_set, .attr_clr = attr_clear };
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr);
}

pid_t airlock_fork(void) { return fork(); }

int airlock_lower_rlimit(int resource, uint64_t value) {
    struct rlimit limit;
    if (getrlimit(resource, &limit) != 0) return -1;
    rlim_t wanted = (rlim_t)value;
    if (limit.rlim_max != RLIM_INFINITY && wanted > limit.rlim_max) wanted = limit.rlim_max;
    limit.rlim_cur = wanted;
    limit.rlim_max = wanted;
    return setrlimit(resource, &limit);
}

/* The PID 1 of a worker's PID namespace: holds nothing, reaps orphans, and dies with its
   parent (the outer worker process), which takes the whole namespace down with it. */
/* The write end of a pipe only the outer worker process holds: when it is gone, for
   whatever reason and however early, the namespace init sees POLLHUP and ends (which ends
   everything in the namespace). PR_SET_PDEATHSIG alone misses a parent that died before
   the child got to set it. */
static int init_pipe_write = -1;

static void run_namespace_init(int parent_alive) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (parent_alive > 0) {
        syscall(SYS_close_range, 0U, (unsigned)parent_alive - 1U, 0);
    }
    syscall(SYS_close_range, (unsigned)parent_alive + 1U, ~0U, 0);
    sigset_t children, empty;
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &children, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        struct pollfd watch = { .fd = parent_alive, .events = POLLIN, .revents = 0 };
        /* Wakes on SIGCHLD (reap) or when the outer process is gone (POLLHUP). */
        int ready = ppoll(&watch, 1, NULL, &empty);
        if (ready > 0 && (watch.revents & (POLLHUP | POLLERR | POLLNVAL))) _exit(0);
    }
}

static void ignore_signal(int signal_number) { (void)signal_number; }

pid_t airlock_fork_namespace_init(void) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) == -1) return -1;
    pid_t pid = fork();
    if (pid == -1) {
        int saved = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        errno = saved;
        return -1;
    }
    if (pid != 0) {
        close(pipe_fds[0]);
        init_pipe_write = pipe_fds[1];
        return pid;
    }
    close(pipe_fds[1]);
    /* PID 1 gets no signal without a handler: a no-op one lets SIGCHLD end ppoll. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ignore_signal;
    sigaction(SIGCHLD, &action, NULL);
    run_namespace_init(pipe_fds[0]);
    _exit(0);
}

void airlock_close_namespace_init_pipe(void) {
    if (init_pipe_write >= 0) {
        close(init_pipe_write);
        init_pipe_write = -1;
    }
}

void airlock_mirror_child_exit(pid_t child) {
    /* Forward the usual termination requests to the child; wait for it; then end the
       same way it did, so the supervisor sees the real exit code or signal. */
    static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int status = 0;
    for (;;) {
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child) break;
        if (done == -1 && errno != EINTR) _exit(127);
        siginfo_t info;
        int signal_number = sigwaitinfo(&set, &info);
        if (signal_number > 0 && signal_number != SIGCHLD) kill(child, signal_number);
    }
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int signal_number = WTERMSIG(status);
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    sigaction(signal_number, &action, NULL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal_number);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(signal_number);
    _exit(128 + signal_number);
}

/* MARK: - Landlock (raw system calls; the installed header predates ABI 4) */

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

struct airlock_landlock_ruleset_attr { uint64_t handled_access_fs, handled_access_net, scoped; };
struct airlock_landlock_path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));

/* Rights that apply to a file (as opposed to a directory): EXECUTE, WRITE_FILE, READ_FILE,
   TRUNCATE (ABI 3), IOCTL_DEV (ABI 5). */
#define AIRLOCK_LANDLOCK_FILE_RIGHTS ((1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15))

int airlock_landlock_abi_version(void) {
    return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, 1U /* LANDLOCK_CREATE_RULESET_VERSION */);
}

int airlock_landlock_create_ruleset(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped, int abi) {
    struct airlock_landlock_ruleset_attr attr = { handled_fs, handled_net, scoped };
    size_t size = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
    return (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0U);
}

int airlock_landlock_allow_path(int ruleset, const char *path, uint64_t allowed_fs) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat status;
    if (fstat(fd, &status) != 0) { int e = errno; close(fd); errno = e; return -1; }
    if (!S_ISDIR(status.st_mode)) allowed_fs &= AIRLOCK_LANDLOCK_FILE_RIGHTS;
    struct airlock_landlock_path_beneath_attr rule = { allowed_fs, fd };
    int result = (int)syscall(SYS_landlock_add_rule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &rule, 0U);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}

int airlock_landlock_restrict_self(int ruleset) {
    return (int)syscall(SYS_landlock_restrict_self, ruleset, 0U);
}

/* MARK: - Capabilities */

int airlock_drop_capabilities(void) {
    /* Lock root out of regaining capabilities through execve or setuid (needs CAP_SETPCAP,
       which a fresh user namespace gives; ignored without it). */
    prctl(PR_SET_SECUREBITS, 0xEFUL, 0UL, 0UL, 0UL);
    for (unsigned long cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0UL, 0UL, 0UL) != 0) {
            if (errno == EINVAL) break;   /* past CAP_LAST_CAP */
            if (errno != EPERM) return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0UL, 0UL, 0UL) != 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &header, data);
}

/* MARK: - seccomp */

struct denied_call { int number; const char *name; };

#define DENY(name) { __NR_##name, #name },
static const struct denied_call deny_list[] = {
#if defined(__x86_64__) || defined(__aarch64__)
    DENY(ptrace) DENY(process_vm_readv) DENY(process_vm_writev)
    DENY(mount) DENY(umount2) DENY(pivot_root) DENY(chroot)
    DENY(bpf) DENY(perf_event_open)
    DENY(kexec_load) DENY(kexec_file_load)
    DENY(init_module) DENY(finit_module) DENY(delete_module)
    DENY(keyctl) DENY(add_key) DENY(request_key)
    DENY(unshare) DENY(setns) DENY(personality) DENY(userfaultfd)
    DENY(swapon) DENY(swapoff) DENY(reboot) DENY(acct)
    DENY(settimeofday) DENY(clock_settime) DENY(adjtimex) DENY(clock_adjtime)
    DENY(open_by_handle_at) DENY(name_to_handle_at)
    DENY(quotactl) DENY(syslog) DENY(vhangup) DENY(fanotify_init)
    DENY(pidfd_getfd) DENY(kcmp)
    DENY(io_uring_setup) DENY(io_uring_enter) DENY(io_uring_register)
    DENY(nfsservctl) DENY(lookup_dcookie)
    DENY(sethostname) DENY(setdomainname)
#ifdef __NR_mount_setattr
    DENY(mount_setattr)
#endif
#ifdef __NR_move_mount
    DENY(move_mount) DENY(open_tree) DENY(fsopen) DENY(fsmount) DENY(fsconfig) DENY(fspick)
#endif
#ifdef __NR_quotactl_fd
    DENY(quotactl_fd)
#endif
#ifdef __NR_open_tree_attr
    DENY(open_tree_attr)
#endif
#endif
#if defined(__x86_64__)
    DENY(iopl) DENY(ioperm) DENY(uselib) DENY(create_module) DENY(get_kernel_syms)
    DENY(query_module) DENY(_sysctl) DENY(modify_ldt)
#endif
};
#undef DENY

#define DENY_COUNT ((int)(sizeof deny_list / sizeof deny_list[0]))

int airlock_seccomp_deny_list_count(void) { return DENY_COUNT; }
const char *airlock_seccomp_deny_list_name(int index) {
    return index >= 0 && index < DENY_COUNT ? deny_list[index].name : NULL;
}

const char *airlock_syscall_name(long number) {
    for (int i = 0; i < DENY_COUNT; i++) if (deny_list[i].number == number) return deny_list[i].name;
#ifdef __NR_clone
    if (number == __NR_clone) return "clone";
#endif
    if (number == __NR_ioctl) return "ioctl";
    return NULL;
}

long airlock_raw_syscall3(long number, long a1, long a2, long a3) { return syscall(number, a1, a2, a3); }

#if defined(__x86_64__)
#define AIRLOCK_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AIRLOCK_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define NAMESPACE_FLAGS (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)

int airlock_seccomp_install_deny_list(void) {
#ifndef AIRLOCK_AUDIT_ARCH
    errno = ENOSYS;
    return -1;
#else
    struct sock_filter program[DENY_COUNT + 32];
    int n = 0;
#define STMT(code, k) program[n++] = (struct sock_filter)BPF_STMT(code, k)
#define JUMP(code, k, jt, jf) program[n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf)
    /* Foreign architecture (e.g. i386 via int 0x80): kill. */
    STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, AIRLOCK_AUDIT_ARCH, 1, 0);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
    /* x32 system calls (bit 30): trap. */
    JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
#endif
    /* clone3 passes its flags in memory seccomp cannot read: make it ENOSYS so glibc falls
       back to clone, whose flags are checked below. */
#ifdef __NR_clone3
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
#endif
    /* clone with namespace flags: trap (plain fork and thread creation pass). */
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4);
    STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    JUMP(BPF_JMP | BPF_JSET | BPF_K, NAMESPACE_FLAGS, 0, 1);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    /* ioctl(TIOCSTI / TIOCLINUX): pushing input into a terminal. */
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5);
    STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]));
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0);
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
    /* The deny list: each match jumps to the TRAP after the final ALLOW. */
    for (int i = 0; i < DENY_COUNT; i++) {
        JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)deny_list[i].number, (uint8_t)(DENY_COUNT - i), 0);
    }
    STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
#undef STMT
#undef JUMP
    struct sock_fprog fprog = { .len = (unsigned short)n, .filter = program };
    /* TSYNC: every thread of the process gets the filter, not only the caller. */
    long result = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
    if (result > 0) { errno = EBUSY; return -1; }   /* a thread with an unrelated filter */
    return (int)result;
#endif
}

/* MARK: - SIGSYS reporter */

static volatile int sigsys_channel_fd = -1;

static size_t append(char *buffer, size_t at, size_t capacity, const char *text) {
    while (*text && at < capacity) buffer[at++] = *text++;
    return at;
}

static size_t append_number(char *buffer, size_t at, size_t capacity, long value) {
    char digits[24];
    int count = 0;
    unsigned long magnitude = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do { digits[count++] = (char)('0' + magnitude % 10); magnitude /= 10; } while (magnitude && count < 24);
    if (value < 0 && at < capacity) buffer[at++] = '-';
    while (count > 0 && at < capacity) buffer[at++] = digits[--count];
    return at;
}

static void store_le(char *at, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; i++) at[i] = (char)((value >> (8 * i)) & 0xFF);
}

static void report_denied_call(int signal_number, siginfo_t *info, void *context) {
    (void)context;
    int saved_errno = errno;
    long number = info->si_syscall;
    const char *name = airlock_syscall_name(number);
    char frame[256];
    enum { header = 4 + 2 + 2 + 8 + 4 };
    size_t end = append(frame, header, sizeof frame, "seccomp: denied system call ");
    end = append(frame, end, sizeof frame, name ? name : "unknown");
    end = append(frame, end, sizeof frame, " (");
    end = append_number(frame, end, sizeof frame, number);
    end = append(frame, end, sizeof frame, ")");
    size_t message_length = end - header;
    store_le(frame + 0, (uint64_t)(end - 4), 4);   /* length: everything after this field */
    store_le(frame + 4, 0x0387, 2);                /* W_FATAL */
    store_le(frame + 6, 0, 2);                     /* flags */
    store_le(frame + 8, 0, 8);                     /* operation 0 */
    store_le(frame + 16, (uint64_t)message_length, 4);
    int fd = sigsys_channel_fd;
    if (fd >= 0) {
        ssize_t sent;
        do { sent = send(fd, frame, end, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno == ENOTSOCK) {
            do { sent = write(fd, frame, end); } while (sent < 0 && errno == EINTR);
        }
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    sigaction(signal_number, &action, NULL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal_number);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), signal_number);
    errno = saved_errno;
}

int airlock_install_sigsys_reporter(int channel_fd) {
    sigsys_channel_fd = channel_fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = report_denied_call;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGSYS, &action, NULL);
}
