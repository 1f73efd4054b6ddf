/*
 * sandbox-probe: does, under airlockd.service's hardening, the steps an airlock-worker's
 * sandbox does (Sources/AirlockSandbox/Sandbox.swift), in the same order, and prints one
 * line per step: "sandbox <step> ok" or "sandbox <step> FAILED: <error>". Then prints
 * "sandbox done" and a heartbeat line every second until killed.
 *
 * Used by Tests/systemd/nspawn-test.sh as the stand-in airlockd's worker, so the unit's
 * settings are proven not to break the worker sandbox before airlockd exists.
 *
 *   sandbox-probe [USER]     USER: switch to it first, as RunAsUser does (needs root)
 *
 * Built by the test script with the host's cc: cc -O2 -o sandbox-probe sandbox-probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void step(const char *name, int result) {
    if (result == 0) {
        printf("sandbox %s ok\n", name);
    } else {
        printf("sandbox %s FAILED: %s\n", name, strerror(errno));
        failures++;
    }
    fflush(stdout);
}

static int write_file(const char *path, const char *fmt, ...) {
    char text[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t written = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return written == (ssize_t)strlen(text) ? 0 : -1;
}

static int run_as(const char *user) {
    struct passwd *entry = getpwnam(user);
    if (!entry) { errno = ENOENT; return -1; }
    gid_t groups[1] = { entry->pw_gid };
    if (setgroups(1, groups) != 0) return -1;
    if (setresgid(entry->pw_gid, entry->pw_gid, entry->pw_gid) != 0) return -1;
    if (setresuid(entry->pw_uid, entry->pw_uid, entry->pw_uid) != 0) return -1;
    /* Changing credentials makes the process non-dumpable, which makes /proc/self/uid_map
     * root-owned: restore it, as the worker does. */
    return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

/* A read-only bind remount that keeps the mount's other flags: inside a user namespace
 * the flags of mounts inherited from the service (ProtectSystem=strict) are locked, and a
 * remount that would clear one of them fails with EPERM. */
static int remount_readonly(const char *path) {
    struct statvfs info;
    if (statvfs(path, &info) != 0) return -1;
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
    if (info.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (info.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (info.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (info.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (info.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (info.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    return mount(NULL, path, NULL, flags, NULL);
}

static int landlock(void) {
    int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) return -1;
    struct landlock_ruleset_attr attributes = {
        .handled_access_fs = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG,
    };
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attributes, sizeof attributes, 0);
    if (ruleset < 0) return -1;
    struct landlock_path_beneath_attr beneath = { .allowed_access = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG };
    beneath.parent_fd = open("/tmp", O_PATH | O_CLOEXEC);
    if (beneath.parent_fd < 0) return -1;
    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) != 0) return -1;
    close(beneath.parent_fd);
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) return -1;
    close(ruleset);
    printf("sandbox landlock-abi %d\n", abi);
    return 0;
}

static int seccomp_filter(void) {
    /* Deny ptrace with EPERM, allow the rest: enough to prove a filter loads. */
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0 /* offsetof(struct seccomp_data, nr) */),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ptrace, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = { .len = sizeof program / sizeof program[0], .filter = program };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter);
}

int main(int argc, char **argv) {
    uid_t outside_uid;
    gid_t outside_gid;
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (argc > 1) step("run-as", run_as(argv[1]));
    outside_uid = geteuid();
    outside_gid = getegid();

    step("unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS));
    step("setgroups-deny", write_file("/proc/self/setgroups", "deny"));
    step("gid-map", write_file("/proc/self/gid_map", "0 %u 1\n", (unsigned)outside_gid));
    step("uid-map", write_file("/proc/self/uid_map", "0 %u 1\n", (unsigned)outside_uid));

    pid_t child = fork();
    if (child < 0) { step("pid-fork", -1); return 1; }
    if (child > 0) {
        int status = 0;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() == 0 && kill(1, 0) != 0) return 1;
    printf("sandbox pid-namespace pid=%d\n", (int)getpid());

    step("mount-private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    step("mount-readonly", remount_readonly("/"));
    step("mount-tmpfs", mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"));
    step("mount-proc", mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    step("sethostname", sethostname("airlock-echo", strlen("airlock-echo")));
    step("no-new-privs", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    step("landlock", landlock());
    step("seccomp", seccomp_filter());
    step("seccomp-effective", syscall(SYS_ptrace, 0, 0, 0, 0) == -1 && errno == EPERM ? 0 : -1);
    /* MemoryDenyWriteExecute: W^X mappings must fail, plain ones work. */
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    step("mmap-rw", page == MAP_FAILED ? -1 : 0);
    /* Information, not a step: refused under MemoryDenyWriteExecute=yes, allowed elsewhere. */
    int wx = page != MAP_FAILED && mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) == 0;
    printf("sandbox write-execute %s\n", wx ? "allowed" : "refused");

    printf("sandbox done failures=%d\n", failures);
    for (unsigned long beat = 1;; beat++) {
        printf("heartbeat %lu\n", beat);
        sleep(1);
    }
}
