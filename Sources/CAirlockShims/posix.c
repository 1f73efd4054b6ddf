/* The AirlockPosix half of the shims: see airlock_shims.h. */
#include "airlock_shims.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sched.h>
#include <spawn.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

const char *airlock_errno_name(int error) { return strerrorname_np(error); }
const char *airlock_signal_abbreviation(int signal_number) { return sigabbrev_np(signal_number); }
int airlock_sigrtmin(void) { return SIGRTMIN; }
int airlock_sigrtmax(void) { return SIGRTMAX; }

int airlock_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
int airlock_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }
int airlock_fcntl_getfd(int fd) { return fcntl(fd, F_GETFD); }
int airlock_fcntl_setfd(int fd, int flags) { return fcntl(fd, F_SETFD, flags); }
int airlock_fcntl_dupfd_cloexec(int fd, int minimum) { return fcntl(fd, F_DUPFD_CLOEXEC, minimum); }

int airlock_close_range(unsigned int first, unsigned int last, int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

int airlock_pipe2(int fds[2], int flags) { return pipe2(fds, O_CLOEXEC | flags); }
int airlock_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }
int airlock_signalfd(int fd, const sigset_t *mask, int flags) { return signalfd(fd, mask, flags); }
int airlock_eventfd(unsigned int initial, int flags) { return eventfd(initial, flags); }

int airlock_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int airlock_set_buffer_size(int fd, int receive, int force, int bytes) {
    int option = receive ? (force ? SO_RCVBUFFORCE : SO_RCVBUF) : (force ? SO_SNDBUFFORCE : SO_SNDBUF);
    return setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes);
}

int airlock_get_buffer_size(int fd, int receive) {
    int bytes = 0;
    socklen_t length = sizeof bytes;
    if (getsockopt(fd, SOL_SOCKET, receive ? SO_RCVBUF : SO_SNDBUF, &bytes, &length) != 0) return -1;
    return bytes;
}

static int fill_unix_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof address->sun_path) {
        errno = length == 0 ? EINVAL : ENAMETOOLONG;
        return -1;
    }
    memcpy(address->sun_path, path, length);
    return 0;
}

int airlock_unix_bind(int fd, const char *path) {
    struct sockaddr_un address;
    if (fill_unix_address(&address, path) != 0) return -1;
    return bind(fd, (struct sockaddr *)&address, sizeof address);
}

int airlock_unix_connect(int fd, const char *path) {
    struct sockaddr_un address;
    if (fill_unix_address(&address, path) != 0) return -1;
    return connect(fd, (struct sockaddr *)&address, sizeof address);
}

int airlock_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                  const int *sources, const int *targets, int count, int new_session) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int error = posix_spawn_file_actions_init(&actions);
    if (error != 0) { errno = error; return -1; }
    error = posix_spawnattr_init(&attributes);
    if (error != 0) { posix_spawn_file_actions_destroy(&actions); errno = error; return -1; }

    int highest = 2;
    for (int i = 0; i < count && error == 0; i++) {
        error = posix_spawn_file_actions_adddup2(&actions, sources[i], targets[i]);
        if (targets[i] > highest) highest = targets[i];
    }
    if (error == 0) error = posix_spawn_file_actions_addclosefrom_np(&actions, highest + 1);

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_session) flags |= POSIX_SPAWN_SETSID;
    if (error == 0) error = posix_spawnattr_setsigmask(&attributes, &empty);
    if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &all);
    if (error == 0) error = posix_spawnattr_setflags(&attributes, flags);
    if (error == 0) error = posix_spawn(pid, path, &actions, &attributes, argv, envp);

    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) { errno = error; return -1; }
    return 0;
}

int airlock_wifexited(int status) { return WIFEXITED(status); }
int airlock_wexitstatus(int status) { return WEXITSTATUS(status); }
int airlock_wifsignaled(int status) { return WIFSIGNALED(status); }
int airlock_wtermsig(int status) { return WTERMSIG(status); }
int airlock_wcoredump(int status) { return WCOREDUMP(status); }

pid_t airlock_gettid(void) { return gettid(); }

int airlock_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal_number, 0UL, 0UL, 0UL);
}
int airlock_get_parent_death_signal(void) {
    int signal_number = 0;
    if (prctl(PR_GET_PDEATHSIG, (unsigned long)&signal_number, 0UL, 0UL, 0UL) != 0) return -1;
    return signal_number;
}
int airlock_set_no_new_privileges(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL); }
int airlock_get_no_new_privileges(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0UL, 0UL, 0UL, 0UL); }
int airlock_set_dumpable(int dumpable) { return prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0UL, 0UL, 0UL); }
int airlock_set_child_subreaper(int enabled) { return prctl(PR_SET_CHILD_SUBREAPER, (unsigned long)enabled, 0UL, 0UL, 0UL); }
int airlock_set_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL); }

int airlock_sigmask(int how, const sigset_t *set, sigset_t *old) {
    int error = pthread_sigmask(how, set, old);
    if (error != 0) { errno = error; return -1; }
    return 0;
}

int airlock_set_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
int airlock_set_malloc_thresholds(int trim, int mmap) { return mallopt(M_TRIM_THRESHOLD, trim) && mallopt(M_MMAP_THRESHOLD, mmap); }

int airlock_receive_packets(int fd, void *const *buffers, size_t capacity, unsigned int count, size_t *sizes, int *truncated, int flags)
{
    if (count == 0 || count > AIRLOCK_RECEIVE_PACKETS_MAX) {
        errno = EINVAL;
        return -1;
    }
    struct iovec vectors[AIRLOCK_RECEIVE_PACKETS_MAX];
    struct mmsghdr headers[AIRLOCK_RECEIVE_PACKETS_MAX];
    memset(headers, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = capacity;
        headers[i].msg_hdr.msg_iov = &vectors[i];
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(fd, headers, count, flags | MSG_TRUNC, NULL);
    for (int i = 0; i < received; i++) {
        sizes[i] = headers[i].msg_len;
        truncated[i] = (headers[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || headers[i].msg_len > capacity;
    }
    return received;
}

int airlock_prefer_batch_scheduling(void)
{
    int policy = sched_getscheduler(0);
    if (policy < 0) {
        return -1;
    }
    if (policy != SCHED_OTHER) {
        return 0;
    }
    struct sched_param parameters = { .sched_priority = 0 };
    return sched_setscheduler(0, SCHED_BATCH, &parameters) == 0 ? 1 : -1;
}

int airlock_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); }

void *airlock_map_shared(int fd, size_t length) {
    void *address = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return address == MAP_FAILED ? NULL : address;
}

void *airlock_map_shared_read_only(int fd, size_t length) {
    void *address = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    return address == MAP_FAILED ? NULL : address;
}

int airlock_add_seals(int fd, unsigned int seals) { return fcntl(fd, F_ADD_SEALS, seals); }
int airlock_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }
const unsigned int AIRLOCK_SEAL_SEAL = F_SEAL_SEAL;
const unsigned int AIRLOCK_SEAL_SHRINK = F_SEAL_SHRINK;
const unsigned int AIRLOCK_SEAL_GROW = F_SEAL_GROW;
const unsigned int AIRLOCK_SEAL_WRITE = F_SEAL_WRITE;

long long airlock_filesystem_type(int fd) {
    struct statfs status;
    if (fstatfs(fd, &status) != 0) return -1;
    return (long long)status.f_type;
}
const long long AIRLOCK_TMPFS_MAGIC = TMPFS_MAGIC;

int airlock_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

long airlock_send_with_descriptor(int fd, const void *bytes, size_t length, int passed, int flags) {
    struct iovec vector = { (void *)bytes, length };
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &passed, sizeof(int));
    return (long)sendmsg(fd, &message, flags | MSG_NOSIGNAL);
}

long airlock_receive_with_descriptors(int fd, void *bytes, size_t length, int flags, int *descriptors, int capacity, int *received, int *truncated) {
    struct iovec vector = { bytes, length };
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int) * 8)]; } control;
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    *received = 0;
    *truncated = 0;
    ssize_t count = recvmsg(fd, &message, flags | MSG_CMSG_CLOEXEC);
    if (count < 0) return -1;
    if (message.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int passed;
            memcpy(&passed, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (*received < capacity) {
                descriptors[(*received)++] = passed;
            } else {
                close(passed);
                *truncated = 1;
            }
        }
    }
    return (long)count;
}

int airlock_futex_wait(uint32_t *word, uint32_t expected) {
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0);
}

int airlock_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}
