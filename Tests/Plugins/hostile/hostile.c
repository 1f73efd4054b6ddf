/*
 * hostile.c: a plug-in that misbehaves on purpose, to test that the host contains it.
 *
 * Startup and Shutdown behaviour is chosen by words in extraInfo (the plug-in's
 * InitializationParameters): crash-startup, fail-startup, hang-startup, hang-shutdown,
 * leak-threads=N, callback-after-shutdown; crash-startup-once and fail-startup-once
 * (only while $HOME/hostile-startup-once does not exist; the first such Startup creates
 * it); record-shutdown (Shutdown appends "reason=N" to $HOME/hostile-shutdown-reasons).
 *
 * Everything else is chosen by the first word of a command's line (command line and
 * arguments joined by spaces; the other words are arguments), so one shell hosts many
 * behaviours. Probes print their result on stdout and finish the command:
 *     ok[ <value>]                      exit code 0
 *     denied errno=<n> <strerror>[ ...] exit code 1
 * A Receive on a finished command gets all of its output and Done at once. Results of
 * probes that end the command in unusual ways (double-complete, result-after-complete,
 * context-after-complete, duplicate-context) are kept and printed by `last-result`.
 *
 * Crashes:   segv, abort, exit N, segv-later MS, close-channel
 * Channel:   write-channel garbage | unknown-complete  (bytes written to the worker's
 *            channel socket, fd 3, then the entry point never returns); corrupt-ring
 *            (scribbles on the channel's shared memory, rings the doorbell, never returns)
 * Hangs:     hang-command, hang-receive, slow-cancel MS, wait (a Receive waits until
 *            it is cancelled)
 * Processes: grandchild [setsid]  (forks `sleep 1000`, or a pause()ing child when exec
 *            is denied; with setsid it leaves the worker's session)
 * Startup:   startup-flags  (prints "ok flags=N": what WSManPluginStartup received)
 * Abuse:     flood (endless numbered 64 KiB chunks), double-complete, result-after-complete, context-after-complete,
 *            context-in-receive, duplicate-context, null-request, bogus-request
 * Sandbox:   connect-tcp PORT, read-file PATH, write-file PATH, kill-pid PID SIG,
 *            ptrace-pid PID, alloc-mb N, fork N, syscall NAME, getpid, listdir PATH,
 *            hostname, id, threads
 * Plain:     echo WORDS..., last-result
 */
#define _GNU_SOURCE
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOSTILE_CHUNK (64u * 1024u)

/* MARK: - Helpers */

static char *utf8_copy(PCWSTR text)
{
    size_t count = 0;
    while (text != NULL && text[count] != 0) {
        count++;
    }
    char *result = malloc(count * 3 + 1);
    size_t used = 0;
    if (result == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t c = text[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < count && text[i + 1] >= 0xDC00 && text[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (text[i + 1] - 0xDC00u);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD;
        }
        if (c < 0x80) {
            result[used++] = (char)c;
        } else if (c < 0x800) {
            result[used++] = (char)(0xC0 | (c >> 6));
            result[used++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            result[used++] = (char)(0xE0 | (c >> 12));
            result[used++] = (char)(0x80 | ((c >> 6) & 0x3F));
            result[used++] = (char)(0x80 | (c & 0x3F));
        } else {
            result[used++] = (char)(0xF0 | (c >> 18));
            result[used++] = (char)(0x80 | ((c >> 12) & 0x3F));
            result[used++] = (char)(0x80 | ((c >> 6) & 0x3F));
            result[used++] = (char)(0x80 | (c & 0x3F));
        }
    }
    result[used] = '\0';
    return result;
}

static void sleep_ms(unsigned long milliseconds)
{
    struct timespec duration = {(time_t)(milliseconds / 1000), (long)(milliseconds % 1000) * 1000000L};
    while (nanosleep(&duration, &duration) < 0 && errno == EINTR) {
    }
}

static void sleep_forever(void)
{
    for (;;) {
        pause();
    }
}

static void crash(void)
{
    *(volatile int *)NULL = 1; /* SIGSEGV */
    abort();
}

/* A growable text buffer. */
struct hostile_text {
    char *bytes;
    size_t length;
    size_t capacity;
};

static void text_printf(struct hostile_text *text, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    int needed = vsnprintf(NULL, 0, format, arguments);
    va_end(arguments);
    if (needed < 0) {
        return;
    }
    if (text->length + (size_t)needed + 1 > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 256;
        while (capacity < text->length + (size_t)needed + 1) {
            capacity *= 2;
        }
        char *grown = realloc(text->bytes, capacity);
        if (grown == NULL) {
            return;
        }
        text->bytes = grown;
        text->capacity = capacity;
    }
    va_start(arguments, format);
    vsnprintf(text->bytes + text->length, (size_t)needed + 1, format, arguments);
    va_end(arguments);
    text->length += (size_t)needed;
}

/* MARK: - State */

/* The last request any entry point saw (for callback-after-shutdown). */
static WSMAN_PLUGIN_REQUEST *volatile hostile_last_request;
/* The result kept for `last-result`. */
static pthread_mutex_t hostile_result_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hostile_result_kept = PTHREAD_COND_INITIALIZER;
static char hostile_last_result[256] = "none";
/* True between a probe's first completion (the client may already ask `last-result`,
   which another reader thread then serves) and its keep_result. */
static bool hostile_result_pending;

static void expect_result(void)
{
    pthread_mutex_lock(&hostile_result_lock);
    hostile_result_pending = true;
    pthread_mutex_unlock(&hostile_result_lock);
}

static void keep_result(const char *format, ...)
{
    va_list arguments;
    pthread_mutex_lock(&hostile_result_lock);
    va_start(arguments, format);
    vsnprintf(hostile_last_result, sizeof hostile_last_result, format, arguments);
    va_end(arguments);
    hostile_result_pending = false;
    pthread_cond_broadcast(&hostile_result_kept);
    pthread_mutex_unlock(&hostile_result_lock);
}

/* The flags WSManPluginStartup received, for `startup-flags`. */
static DWORD hostile_startup_flags;

/* True when `name` occurs in `words` as a whole switch (not as part of a longer one such
   as crash-startup in crash-startup-once). */
static bool has_switch(const char *words, const char *name)
{
    size_t length = strlen(name);
    for (const char *at = strstr(words, name); at != NULL; at = strstr(at + 1, name)) {
        char before = at == words ? ' ' : at[-1];
        char after = at[length];
        bool joined_before = before == '-' || before == '_' || (before >= 'a' && before <= 'z') || (before >= '0' && before <= '9');
        bool joined_after = after == '-' || after == '_' || (after >= 'a' && after <= 'z') || (after >= '0' && after <= '9');
        if (!joined_before && !joined_after) {
            return true;
        }
    }
    return false;
}

/* $HOME/<name> (the plug-in's writable state folder), or NULL. */
static char *home_file(const char *name)
{
    const char *home = getenv("HOME");
    char *path = NULL;
    if (home == NULL || asprintf(&path, "%s/%s", home, name) < 0) {
        return NULL;
    }
    return path;
}

/* True the first time only: creates $HOME/hostile-startup-once. */
static bool first_startup(void)
{
    char *path = home_file("hostile-startup-once");
    if (path == NULL) {
        return false;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    free(path);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

struct hostile_plugin {
    char *extra_info;
    bool callback_after_shutdown;
    bool hang_shutdown;
    bool record_shutdown;
};

struct hostile_command;

struct hostile_shell {
    pthread_mutex_t lock;
    WSMAN_PLUGIN_REQUEST *request; /* until completed */
    bool reported, cancelled;
    struct hostile_command *commands; /* every command, freed with the shell */
};

struct hostile_command {
    pthread_mutex_t lock;
    struct hostile_shell *shell;
    struct hostile_command *next;
    WSMAN_PLUGIN_REQUEST *request; /* the Command request until completed */
    WSMAN_PLUGIN_REQUEST *receive; /* a parked Receive */
    char *verb;                    /* first word */
    char *argument;                /* the rest (may be empty) */
    struct hostile_text output;
    bool reported, finished, ended;
    DWORD exit_code;
    DWORD end_error;
    unsigned long slow_cancel_ms;
};

/* MARK: - Startup and Shutdown */

static void *hostile_sleeper(void *unused)
{
    (void)unused;
    sleep_forever();
    return NULL;
}

static volatile int hostile_shutdown_returned;

static void *hostile_late_caller(void *unused)
{
    (void)unused;
    for (;;) {
        sleep_ms(10);
        if (!hostile_shutdown_returned) {
            continue;
        }
        WSMAN_PLUGIN_REQUEST *stale = hostile_last_request;
        if (stale == NULL) {
            stale = (WSMAN_PLUGIN_REQUEST *)(uintptr_t)0x1234;
        }
        static BYTE late[] = "late\n";
        WSMAN_DATA data;
        data.type = WSMAN_DATA_TYPE_BINARY;
        data.binaryData.dataLength = 5;
        data.binaryData.data = late;
        WSManPluginReceiveResult(stale, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
        WSManPluginOperationComplete(stale, 0, NO_ERROR, NULL);
    }
    return NULL;
}

DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo,
                                PVOID *pluginContext)
{
    (void)applicationIdentification;
    hostile_startup_flags = flags;
    char *extra = utf8_copy(extraInfo);
    const char *words = extra != NULL ? extra : "";
    if (has_switch(words, "crash-startup") || (has_switch(words, "crash-startup-once") && first_startup())) {
        crash();
    }
    if (has_switch(words, "fail-startup") || (has_switch(words, "fail-startup-once") && first_startup())) {
        free(extra);
        return ERROR_WSMAN_PLUGIN_FAILED;
    }
    if (strstr(words, "hang-startup") != NULL) {
        sleep_forever();
    }
    const char *leak = strstr(words, "leak-threads=");
    if (leak != NULL) {
        long count = strtol(leak + strlen("leak-threads="), NULL, 10);
        for (long i = 0; i < count; i++) {
            pthread_t thread;
            if (pthread_create(&thread, NULL, hostile_sleeper, NULL) == 0) {
                pthread_detach(thread); /* never joined, never ended */
            }
        }
    }
    struct hostile_plugin *plugin = calloc(1, sizeof *plugin);
    if (plugin == NULL) {
        free(extra);
        return ERROR_OUTOFMEMORY;
    }
    plugin->extra_info = extra;
    plugin->callback_after_shutdown = strstr(words, "callback-after-shutdown") != NULL;
    plugin->hang_shutdown = strstr(words, "hang-shutdown") != NULL;
    plugin->record_shutdown = strstr(words, "record-shutdown") != NULL;
    *pluginContext = plugin;
    return NO_ERROR;
}

DWORD WINAPI WSManPluginShutdown(PVOID pluginContext, DWORD flags, DWORD reason)
{
    (void)flags;
    struct hostile_plugin *plugin = pluginContext;
    if (plugin != NULL && plugin->record_shutdown) {
        char *path = home_file("hostile-shutdown-reasons");
        int fd = path != NULL ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
        if (fd >= 0) {
            char line[32];
            int length = snprintf(line, sizeof line, "reason=%u\n", reason);
            ssize_t written = write(fd, line, (size_t)length);
            (void)written;
            close(fd);
        }
        free(path);
    }
    if (plugin != NULL && plugin->hang_shutdown) {
        sleep_forever();
    }
    if (plugin != NULL && plugin->callback_after_shutdown) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, hostile_late_caller, NULL) == 0) {
            pthread_detach(thread);
        }
        hostile_shutdown_returned = 1; /* the thread starts calling in 10 ms */
    }
    if (plugin != NULL) {
        free(plugin->extra_info);
        free(plugin);
    }
    return NO_ERROR;
}

/* MARK: - Shell */

static void hostile_shell_cancelled(void *context)
{
    struct hostile_shell *shell = context;
    pthread_mutex_lock(&shell->lock);
    shell->cancelled = true;
    WSMAN_PLUGIN_REQUEST *request = shell->reported ? shell->request : NULL;
    if (request != NULL) {
        shell->request = NULL;
    }
    pthread_mutex_unlock(&shell->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
    }
}

VOID WINAPI WSManPluginShell(PVOID pluginContext, WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags,
                             WSMAN_SHELL_STARTUP_INFO *startupInfo, WSMAN_DATA *inboundShellInformation)
{
    (void)pluginContext;
    (void)flags;
    (void)startupInfo;
    (void)inboundShellInformation;
    struct hostile_shell *shell = calloc(1, sizeof *shell);
    if (shell == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    pthread_mutex_init(&shell->lock, NULL);
    shell->request = requestDetails;
    WSManPluginRegisterShutdownCallback(requestDetails, hostile_shell_cancelled, shell);
    shell->cancelled = requestDetails->shutdownNotification;
    WSManPluginReportContext(requestDetails, 0, shell);
    pthread_mutex_lock(&shell->lock);
    shell->reported = true;
    WSMAN_PLUGIN_REQUEST *request = shell->cancelled ? shell->request : NULL;
    shell->request = shell->cancelled ? NULL : shell->request;
    pthread_mutex_unlock(&shell->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
    }
}

static void hostile_command_free(struct hostile_command *command)
{
    free(command->verb);
    free(command->argument);
    free(command->output.bytes);
    pthread_mutex_destroy(&command->lock);
    free(command);
}

/* Commands live as long as their shell, so duplicate-context can reuse an old pointer. */
VOID WINAPI WSManPluginReleaseShellContext(PVOID shellContext)
{
    struct hostile_shell *shell = shellContext;
    while (shell->commands != NULL) {
        struct hostile_command *next = shell->commands->next;
        hostile_command_free(shell->commands);
        shell->commands = next;
    }
    pthread_mutex_destroy(&shell->lock);
    free(shell);
}

VOID WINAPI WSManPluginReleaseCommandContext(PVOID shellContext, PVOID commandContext)
{
    (void)shellContext;
    (void)commandContext; /* freed with the shell */
}

/* MARK: - Ending commands */

/* Ends the command with `error` and completes its request once it was reported. */
static void hostile_command_end(struct hostile_command *command, DWORD error)
{
    pthread_mutex_lock(&command->lock);
    if (!command->ended) {
        command->ended = true;
        command->end_error = error;
    }
    WSMAN_PLUGIN_REQUEST *request = command->reported ? command->request : NULL;
    if (request != NULL) {
        command->request = NULL;
    }
    DWORD code = command->end_error;
    pthread_mutex_unlock(&command->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, code, NULL);
    }
}

static void hostile_command_cancelled(void *context)
{
    struct hostile_command *command = context;
    pthread_mutex_lock(&command->lock);
    WSMAN_PLUGIN_REQUEST *receive = command->slow_cancel_ms == 0 ? command->receive : NULL;
    if (receive != NULL) {
        command->receive = NULL;
    }
    pthread_mutex_unlock(&command->lock);
    if (receive != NULL) {
        WSManPluginOperationComplete(receive, 0, ERROR_OPERATION_ABORTED, NULL);
    }
    hostile_command_end(command, ERROR_OPERATION_ABORTED);
}

/* Finishes a probe: its exit code is 0 for "ok", 1 for "denied". */
static void probe_ok(struct hostile_command *command)
{
    command->finished = true;
    command->exit_code = 0;
}

static void probe_denied(struct hostile_command *command, int error, const char *detail)
{
    text_printf(&command->output, "denied errno=%d %s%s%s\n", error, strerror(error), detail ? " " : "", detail ? detail : "");
    command->finished = true;
    command->exit_code = 1;
}

/* MARK: - Sandbox probes */

static void probe_connect_tcp(struct hostile_command *command, const char *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_denied(command, errno, "socket");
        return;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        probe_denied(command, errno, NULL);
    } else {
        text_printf(&command->output, "ok\n");
        probe_ok(command);
    }
    close(fd);
}

static void probe_open(struct hostile_command *command, const char *path, bool write_it)
{
    int fd = write_it ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        probe_denied(command, errno, NULL);
        return;
    }
    char byte = 'x';
    ssize_t done = write_it ? write(fd, &byte, 1) : read(fd, &byte, 1);
    int error = errno;
    close(fd);
    if (done < 0) {
        probe_denied(command, error, NULL);
        return;
    }
    text_printf(&command->output, "ok\n");
    probe_ok(command);
}

static void probe_kill(struct hostile_command *command, const char *arguments)
{
    int pid = 0, signal_number = 0;
    sscanf(arguments, "%d %d", &pid, &signal_number);
    if (kill(pid, signal_number) < 0) {
        probe_denied(command, errno, NULL);
        return;
    }
    text_printf(&command->output, "ok\n");
    probe_ok(command);
}

static void probe_ptrace(struct hostile_command *command, const char *argument)
{
    pid_t pid = (pid_t)atoi(argument);
    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0) {
        probe_denied(command, errno, NULL);
        return;
    }
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    text_printf(&command->output, "ok\n");
    probe_ok(command);
}

static void probe_alloc(struct hostile_command *command, const char *argument)
{
    long wanted = atol(argument), got = 0;
    char **blocks = calloc((size_t)(wanted > 0 ? wanted : 1), sizeof *blocks);
    int error = 0;
    for (; blocks != NULL && got < wanted; got++) {
        blocks[got] = malloc(1024 * 1024);
        if (blocks[got] == NULL) {
            error = errno ? errno : ENOMEM;
            break;
        }
        memset(blocks[got], 0xA5, 1024 * 1024); /* touch every page */
    }
    if (blocks == NULL || error != 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "allocated=%ld MiB", got);
        probe_denied(command, blocks == NULL ? ENOMEM : error, detail);
    } else {
        text_printf(&command->output, "ok allocated=%ld MiB\n", got);
        probe_ok(command);
    }
    for (long i = 0; blocks != NULL && i < got; i++) {
        free(blocks[i]);
    }
    free(blocks);
}

static void probe_fork(struct hostile_command *command, const char *argument)
{
    long wanted = atol(argument), made = 0;
    pid_t *children = calloc((size_t)(wanted > 0 ? wanted : 1), sizeof *children);
    int error = 0;
    for (; children != NULL && made < wanted; made++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) {
                pause(); /* async-signal-safe only: we forked a threaded process */
            }
        }
        if (pid < 0) {
            error = errno;
            break;
        }
        children[made] = pid;
    }
    for (long i = 0; i < made; i++) {
        kill(children[i], SIGKILL);
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR) {
        }
    }
    free(children);
    if (error != 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "forked=%ld", made);
        probe_denied(command, error, detail);
    } else {
        text_printf(&command->output, "ok forked=%ld\n", made);
        probe_ok(command);
    }
}

/* Calls one system call by name with harmless arguments. */
static void probe_syscall(struct hostile_command *command, const char *name)
{
    long result;
    errno = 0;
    if (strcmp(name, "unshare") == 0) {
        result = syscall(SYS_unshare, 0); /* no flags: changes nothing */
    } else if (strcmp(name, "mount") == 0) {
        result = syscall(SYS_mount, "none", "/nonexistent-airlock-probe", "tmpfs", 0UL, NULL);
    } else if (strcmp(name, "ptrace") == 0) {
        result = syscall(SYS_ptrace, PTRACE_GETREGS, getpid(), NULL, NULL); /* not traced: ESRCH */
    } else if (strcmp(name, "bpf") == 0) {
        result = syscall(SYS_bpf, 0x7fff, NULL, 0); /* no such command */
    } else if (strcmp(name, "keyctl") == 0) {
        result = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1 /* thread keyring */, 0);
    } else if (strcmp(name, "personality") == 0) {
        result = syscall(SYS_personality, 0xffffffffUL); /* query only */
    } else if (strcmp(name, "userfaultfd") == 0) {
        result = syscall(SYS_userfaultfd, O_CLOEXEC);
        if (result >= 0) {
            close((int)result);
        }
    } else if (strcmp(name, "setns") == 0) {
        result = syscall(SYS_setns, -1, 0); /* bad descriptor */
    } else if (strcmp(name, "perf_event_open") == 0) {
        result = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0UL); /* no attributes */
    } else if (strcmp(name, "kexec_load") == 0) {
        result = syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xffff0000UL); /* invalid flags */
    } else if (strcmp(name, "init_module") == 0) {
        result = syscall(SYS_init_module, NULL, 0UL, ""); /* no module */
    } else if (strcmp(name, "process_vm_readv") == 0) {
        result = syscall(SYS_process_vm_readv, getpid(), NULL, 0UL, NULL, 0UL, 0UL); /* nothing */
    } else {
        text_printf(&command->output, "unknown syscall %s\n", name);
        command->finished = true;
        command->exit_code = 2;
        return;
    }
    if (result < 0) {
        probe_denied(command, errno, NULL);
    } else {
        text_printf(&command->output, "ok %ld\n", result);
        probe_ok(command);
    }
}

static int compare_strings(const void *left, const void *right)
{
    return strcmp(*(char *const *)left, *(char *const *)right);
}

static void probe_listdir(struct hostile_command *command, const char *path)
{
    DIR *directory = opendir(path);
    if (directory == NULL) {
        probe_denied(command, errno, NULL);
        return;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char **grown = realloc(names, (count + 1) * sizeof *names);
        if (grown == NULL) {
            break;
        }
        names = grown;
        names[count++] = strdup(entry->d_name);
    }
    closedir(directory);
    qsort(names, count, sizeof *names, compare_strings);
    text_printf(&command->output, "ok\n");
    for (size_t i = 0; i < count; i++) {
        text_printf(&command->output, "%s\n", names[i] ? names[i] : "?");
        free(names[i]);
    }
    free(names);
    probe_ok(command);
}

static void probe_id(struct hostile_command *command)
{
    gid_t groups[64];
    int count = getgroups(64, groups);
    text_printf(&command->output, "ok uid=%u gid=%u euid=%u egid=%u groups=", (unsigned)getuid(), (unsigned)getgid(),
                (unsigned)geteuid(), (unsigned)getegid());
    for (int i = 0; i < count; i++) {
        text_printf(&command->output, "%s%u", i ? "," : "", (unsigned)groups[i]);
    }
    text_printf(&command->output, "\n");
    probe_ok(command);
}

static void probe_threads(struct hostile_command *command)
{
    FILE *status = fopen("/proc/self/status", "re");
    char line[256];
    long threads = -1;
    if (status == NULL) {
        probe_denied(command, errno, NULL);
        return;
    }
    while (fgets(line, sizeof line, status) != NULL) {
        if (strncmp(line, "Threads:", 8) == 0) {
            threads = atol(line + 8);
        }
    }
    fclose(status);
    text_printf(&command->output, "ok %ld\n", threads);
    probe_ok(command);
}

static void hostile_ignore(void *context)
{
    (void)context;
}

/* Calls every callback that takes a request with `request`; prints the return codes. */
static void probe_request(struct hostile_command *command, WSMAN_PLUGIN_REQUEST *request)
{
    static BYTE bytes[] = "x";
    WSMAN_DATA data;
    data.type = WSMAN_DATA_TYPE_BINARY;
    data.binaryData.dataLength = 1;
    data.binaryData.data = bytes;
    DWORD context = WSManPluginReportContext(request, 0, command);
    DWORD result = WSManPluginReceiveResult(request, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
    DWORD complete = WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
    WSMAN_DATA answer;
    memset(&answer, 0, sizeof answer);
    DWORD parameters = WSManPluginGetOperationParameters(request, WSMAN_PLUGIN_PARAMS_TIMEOUT, &answer);
    DWORD details = WSManPluginFreeRequestDetails(request);
    WSManPluginRegisterShutdownCallback(request, hostile_ignore, NULL);
    text_printf(&command->output,
                "ReportContext=%u ReceiveResult=%u OperationComplete=%u GetOperationParameters=%u "
                "FreeRequestDetails=%u RegisterShutdownCallback=returned\n",
                context, result, complete, parameters, details);
    command->finished = true;
    command->exit_code = 0;
}

/* Writes bytes the supervisor must reject to the worker's channel (fd 3). */
static void write_channel(const char *what)
{
    if (strcmp(what, "unknown-complete") == 0) {
        /* A well-formed W_COMPLETE (0x0384, FINAL) for operation 0xDEAD, which does not
           exist: length 17, then type, flags, operation id, errorCode 0, no extended info. */
        static const unsigned char frame[] = {
            0x11, 0x00, 0x00, 0x00, 0x84, 0x03, 0x01, 0x00, 0xAD, 0xDE, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };
        ssize_t written = send(3, frame, sizeof frame, MSG_NOSIGNAL);
        (void)written;
    } else {
        /* A length prefix that promises far more than the packet holds. */
        static const unsigned char garbage[] = {0xFF, 0xFF, 0x00, 0x00, 'g', 'a', 'r', 'b', 'a', 'g', 'e', 0x00, 0x01, 0x02, 0x03, 0x04};
        ssize_t written = send(3, garbage, sizeof garbage, MSG_NOSIGNAL);
        (void)written;
    }
}

/* Scribbles on the worker channel's shared memory, as a plug-in with a stray pointer
   could: finds the mapping of /memfd:airlock-channel, moves the tail of the ring to the
   supervisor (control word 4, at byte 64 + 4 * 64) far beyond its head, and rings the
   doorbell (fd 5) so the supervisor looks at once. */
static void corrupt_ring(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) {
        return;
    }
    char line[512];
    unsigned long start = 0;
    while (fgets(line, sizeof line, maps) != NULL) {
        if (strstr(line, "/memfd:airlock-channel") != NULL) {
            start = strtoul(line, NULL, 16);
            break;
        }
    }
    fclose(maps);
    if (start == 0) {
        return;
    }
    volatile uint32_t *tail = (volatile uint32_t *)(start + 64 + 4 * 64);
    *tail += 0x40000000u;
    uint64_t one = 1;
    ssize_t written = write(5, &one, sizeof one);
    (void)written;
}

/* Forks a grandchild of the worker: `sleep 1000`, or a child that pause()s when exec is
   denied. It keeps every inherited descriptor, like a careless plug-in's child would. */
static void probe_grandchild(struct hostile_command *command, const char *argument)
{
    bool leave_session = strcmp(argument, "setsid") == 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (leave_session) {
            setsid();
        }
        execl("/bin/sleep", "sleep", "1000", (char *)NULL);
        for (;;) {
            pause(); /* async-signal-safe only: we forked a threaded process */
        }
    }
    if (pid < 0) {
        probe_denied(command, errno, "fork");
        return;
    }
    text_printf(&command->output, "ok pid=%d\n", (int)pid);
    probe_ok(command);
}

/* MARK: - Command */

static void *hostile_segv_later(void *context)
{
    sleep_ms((unsigned long)(uintptr_t)context);
    crash();
    return NULL;
}

/* The command line and its arguments joined by spaces, split into verb and the rest. */
static void hostile_parse(struct hostile_command *command, PCWSTR commandLine, const WSMAN_COMMAND_ARG_SET *arguments)
{
    struct hostile_text line = {0};
    char *part = utf8_copy(commandLine);
    text_printf(&line, "%s", part ? part : "");
    free(part);
    for (DWORD i = 0; arguments != NULL && i < arguments->argsCount; i++) {
        part = utf8_copy(arguments->args[i]);
        text_printf(&line, " %s", part ? part : "");
        free(part);
    }
    const char *text = line.bytes ? line.bytes : "";
    while (*text == ' ') {
        text++;
    }
    size_t verb_length = strcspn(text, " ");
    command->verb = strndup(text, verb_length);
    text += verb_length;
    while (*text == ' ') {
        text++;
    }
    command->argument = strdup(text);
    free(line.bytes);
}

VOID WINAPI WSManPluginCommand(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PCWSTR commandLine, WSMAN_COMMAND_ARG_SET *arguments)
{
    (void)flags;
    struct hostile_shell *shell = shellContext;
    hostile_last_request = requestDetails;
    struct hostile_command *command = calloc(1, sizeof *command);
    if (command == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    pthread_mutex_init(&command->lock, NULL);
    command->shell = shell;
    command->request = requestDetails;
    hostile_parse(command, commandLine, arguments);
    const char *verb = command->verb ? command->verb : "";
    const char *argument = command->argument ? command->argument : "";

    /* Behaviours that never get as far as reporting a context. */
    if (strcmp(verb, "segv") == 0) {
        crash();
    } else if (strcmp(verb, "abort") == 0) {
        abort();
    } else if (strcmp(verb, "exit") == 0) {
        exit(atoi(argument));
    } else if (strcmp(verb, "hang-command") == 0) {
        sleep_forever();
    } else if (strcmp(verb, "close-channel") == 0) {
        close(3); /* the worker's channel */
        sleep_forever();
    } else if (strcmp(verb, "write-channel") == 0) {
        write_channel(argument);
        sleep_forever();
    } else if (strcmp(verb, "corrupt-ring") == 0) {
        corrupt_ring();
        sleep_forever();
    }

    pthread_mutex_lock(&shell->lock);
    struct hostile_command *previous = shell->commands;
    command->next = shell->commands;
    shell->commands = command;
    pthread_mutex_unlock(&shell->lock);

    if (strcmp(verb, "duplicate-context") == 0) {
        /* Report the context of an earlier command of this shell (or the shell's own). */
        void *reused = previous != NULL ? (void *)previous : (void *)shell;
        DWORD error = WSManPluginReportContext(requestDetails, 0, reused);
        keep_result("duplicate-context=%u", error);
        WSManPluginOperationComplete(requestDetails, 0, error, NULL);
        return;
    }

    /* Everything else decides its output before the context is reported (a Receive
       may come at once); Receive delivers it. */
    if (strcmp(verb, "segv-later") == 0) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, hostile_segv_later, (void *)(uintptr_t)strtoul(argument, NULL, 10)) == 0) {
            pthread_detach(thread);
        }
    } else if (strcmp(verb, "double-complete") == 0 || strcmp(verb, "hang-receive") == 0 || strcmp(verb, "flood") == 0 ||
               strcmp(verb, "result-after-complete") == 0 || strcmp(verb, "context-after-complete") == 0 ||
               strcmp(verb, "context-in-receive") == 0 || strcmp(verb, "wait") == 0) {
        /* handled after reporting, or by Receive */
    } else if (strcmp(verb, "slow-cancel") == 0) {
        command->slow_cancel_ms = strtoul(argument, NULL, 10);
        if (command->slow_cancel_ms == 0) {
            command->slow_cancel_ms = 1;
        }
    } else if (strcmp(verb, "null-request") == 0) {
        probe_request(command, NULL);
    } else if (strcmp(verb, "bogus-request") == 0) {
        probe_request(command, (WSMAN_PLUGIN_REQUEST *)(uintptr_t)0x1234);
    } else if (strcmp(verb, "connect-tcp") == 0) {
        probe_connect_tcp(command, argument);
    } else if (strcmp(verb, "read-file") == 0) {
        probe_open(command, argument, false);
    } else if (strcmp(verb, "write-file") == 0) {
        probe_open(command, argument, true);
    } else if (strcmp(verb, "kill-pid") == 0) {
        probe_kill(command, argument);
    } else if (strcmp(verb, "ptrace-pid") == 0) {
        probe_ptrace(command, argument);
    } else if (strcmp(verb, "alloc-mb") == 0) {
        probe_alloc(command, argument);
    } else if (strcmp(verb, "fork") == 0) {
        probe_fork(command, argument);
    } else if (strcmp(verb, "syscall") == 0) {
        probe_syscall(command, argument);
    } else if (strcmp(verb, "getpid") == 0) {
        text_printf(&command->output, "ok %d\n", (int)getpid());
        probe_ok(command);
    } else if (strcmp(verb, "listdir") == 0) {
        probe_listdir(command, argument);
    } else if (strcmp(verb, "hostname") == 0) {
        char name[256] = {0};
        if (gethostname(name, sizeof name - 1) < 0) {
            probe_denied(command, errno, NULL);
        } else {
            text_printf(&command->output, "ok %s\n", name);
            probe_ok(command);
        }
    } else if (strcmp(verb, "id") == 0) {
        probe_id(command);
    } else if (strcmp(verb, "threads") == 0) {
        probe_threads(command);
    } else if (strcmp(verb, "grandchild") == 0) {
        probe_grandchild(command, argument);
    } else if (strcmp(verb, "startup-flags") == 0) {
        text_printf(&command->output, "ok flags=%u\n", hostile_startup_flags);
        probe_ok(command);
    } else if (strcmp(verb, "echo") == 0) {
        text_printf(&command->output, "%s\n", argument);
        probe_ok(command);
    } else if (strcmp(verb, "last-result") == 0) {
        pthread_mutex_lock(&hostile_result_lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        while (hostile_result_pending &&
               pthread_cond_timedwait(&hostile_result_kept, &hostile_result_lock, &deadline) == 0) {
        }
        text_printf(&command->output, "%s\n", hostile_last_result);
        pthread_mutex_unlock(&hostile_result_lock);
        probe_ok(command);
    } else {
        text_printf(&command->output, "unknown command %s\n", verb);
        command->finished = true;
        command->exit_code = 127;
    }

    if (strcmp(verb, "double-complete") == 0) {
        /* Before the context is reported: that already answers the client's RUN_COMMAND. */
        expect_result();
    }
    WSManPluginRegisterShutdownCallback(requestDetails, hostile_command_cancelled, command);
    bool cancelled = requestDetails->shutdownNotification;
    DWORD reported = WSManPluginReportContext(requestDetails, 0, command);
    if (reported != NO_ERROR) {
        WSManPluginOperationComplete(requestDetails, 0, reported, NULL);
        return;
    }

    if (strcmp(verb, "double-complete") == 0) {
        pthread_mutex_lock(&command->lock);
        command->request = NULL;
        command->reported = command->ended = true;
        pthread_mutex_unlock(&command->lock);
        DWORD first = WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        DWORD second = WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        keep_result("double-complete first=%u second=%u", first, second);
        return;
    }

    pthread_mutex_lock(&command->lock);
    command->reported = true;
    bool ended = command->ended;
    pthread_mutex_unlock(&command->lock);
    if (cancelled) {
        hostile_command_cancelled(command);
    } else if (ended) {
        hostile_command_end(command, NO_ERROR); /* a Receive finished it meanwhile */
    }
}

/* MARK: - Receive and the rest */

/* A waiting Receive of slow-cancel: completes MS ms after the cancellation. */
struct hostile_slow_cancel {
    WSMAN_PLUGIN_REQUEST *receive;
    unsigned long delay_ms;
};

static void *hostile_slow_abort(void *context)
{
    struct hostile_slow_cancel *slow = context;
    sleep_ms(slow->delay_ms);
    WSManPluginOperationComplete(slow->receive, 0, ERROR_OPERATION_ABORTED, NULL);
    free(slow);
    return NULL;
}

static void hostile_receive_cancelled(void *context)
{
    struct hostile_command *command = context;
    pthread_mutex_lock(&command->lock);
    WSMAN_PLUGIN_REQUEST *receive = command->receive;
    command->receive = NULL;
    unsigned long delay = command->slow_cancel_ms;
    pthread_mutex_unlock(&command->lock);
    if (receive == NULL) {
        return;
    }
    if (delay == 0) {
        WSManPluginOperationComplete(receive, 0, ERROR_OPERATION_ABORTED, NULL);
        return;
    }
    struct hostile_slow_cancel *slow = malloc(sizeof *slow);
    pthread_t thread;
    if (slow != NULL) {
        slow->receive = receive;
        slow->delay_ms = delay;
        if (pthread_create(&thread, NULL, hostile_slow_abort, slow) == 0) {
            pthread_detach(thread);
            return;
        }
        free(slow);
    }
    WSManPluginOperationComplete(receive, 0, ERROR_OPERATION_ABORTED, NULL);
}

/* Delivers a finished command's output and Done. */
static void hostile_deliver(WSMAN_PLUGIN_REQUEST *receive, struct hostile_command *command)
{
    if (command->output.length > 0) {
        WSMAN_DATA data;
        data.type = WSMAN_DATA_TYPE_BINARY;
        data.binaryData.dataLength = (DWORD)command->output.length;
        data.binaryData.data = (BYTE *)command->output.bytes;
        WSManPluginReceiveResult(receive, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
    }
    WSManPluginReceiveResult(receive, WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA, NULL, NULL, WSMAN_COMMAND_STATE_DONE,
                             command->exit_code);
}

VOID WINAPI WSManPluginReceive(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PVOID commandContext, WSMAN_STREAM_ID_SET *streamSet)
{
    (void)flags;
    (void)shellContext;
    (void)streamSet;
    struct hostile_command *command = commandContext;
    hostile_last_request = requestDetails;
    if (command == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    const char *verb = command->verb ? command->verb : "";

    if (strcmp(verb, "hang-receive") == 0) {
        return; /* never completed, cancellation ignored */
    }
    if (strcmp(verb, "flood") == 0) {
        /* Numbered chunks, so a reader can check that each arrives whole and in order:
         * the chunk's sequence number (8 bytes, little-endian), then its low byte. */
        BYTE *chunk = malloc(HOSTILE_CHUNK);
        DWORD error = ERROR_OUTOFMEMORY;
        if (chunk != NULL) {
            WSMAN_DATA data;
            data.type = WSMAN_DATA_TYPE_BINARY;
            data.binaryData.dataLength = HOSTILE_CHUNK;
            data.binaryData.data = chunk;
            uint64_t sequence = 0;
            do {
                memcpy(chunk, &sequence, sizeof sequence);
                memset(chunk + sizeof sequence, (int)(sequence & 0xff), HOSTILE_CHUNK - sizeof sequence);
                sequence++;
            } while ((error = WSManPluginReceiveResult(requestDetails, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0)) == NO_ERROR);
            free(chunk);
        }
        WSManPluginOperationComplete(requestDetails, 0, error, NULL);
        return;
    }
    if (strcmp(verb, "context-in-receive") == 0) {
        DWORD error = WSManPluginReportContext(requestDetails, 0, command);
        text_printf(&command->output, "context-in-receive=%u\n", error);
        command->finished = true;
    }
    if (strcmp(verb, "result-after-complete") == 0 || strcmp(verb, "context-after-complete") == 0) {
        command->finished = true;
        expect_result(); /* the Receive's Done reaches the client before keep_result below */
        hostile_deliver(requestDetails, command);
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        DWORD error;
        if (verb[0] == 'r') {
            static BYTE late[] = "late\n";
            WSMAN_DATA data;
            data.type = WSMAN_DATA_TYPE_BINARY;
            data.binaryData.dataLength = 5;
            data.binaryData.data = late;
            error = WSManPluginReceiveResult(requestDetails, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
        } else {
            pthread_mutex_lock(&command->lock);
            WSMAN_PLUGIN_REQUEST *request = command->request;
            command->request = NULL;
            command->ended = true;
            pthread_mutex_unlock(&command->lock);
            if (request != NULL) {
                WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
                error = WSManPluginReportContext(request, 0, command);
            } else {
                error = ERROR_INVALID_PARAMETER;
            }
        }
        keep_result("%s=%u", verb, error);
        hostile_command_end(command, NO_ERROR);
        return;
    }

    pthread_mutex_lock(&command->lock);
    bool finished = command->finished;
    bool busy = command->receive != NULL;
    if (!finished && !busy) {
        command->receive = requestDetails; /* waits for a cancellation (or a crash) */
    }
    pthread_mutex_unlock(&command->lock);
    if (busy) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    if (!finished) {
        WSManPluginRegisterShutdownCallback(requestDetails, hostile_receive_cancelled, command);
        if (requestDetails->shutdownNotification) {
            hostile_receive_cancelled(command);
        }
        return;
    }
    hostile_deliver(requestDetails, command);
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
    hostile_command_end(command, NO_ERROR);
}

VOID WINAPI WSManPluginSend(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                            PVOID commandContext, PCWSTR stream, WSMAN_DATA *inboundData)
{
    (void)flags;
    (void)shellContext;
    (void)commandContext;
    (void)stream;
    (void)inboundData;
    hostile_last_request = requestDetails;
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
}

VOID WINAPI WSManPluginSignal(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                              PVOID commandContext, PCWSTR code)
{
    (void)flags;
    (void)shellContext;
    (void)commandContext;
    (void)code;
    hostile_last_request = requestDetails;
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
}
