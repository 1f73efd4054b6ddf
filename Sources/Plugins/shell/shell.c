/*
 * shell.c: a real shell plug-in, like WinRS: every command runs as
 *
 *     /bin/sh -c "<commandLine> <arg1> <arg2> ..."      (joined with single spaces)
 *
 * in a child process of its own process group, in the shell's working directory, with
 * the shell's environment variables added to the inherited environment.
 *
 * Per command, one pump thread reads the child's stdout and stderr. Each chunk read
 * becomes one ReceiveResult (binary, bytes unchanged) on its stream. Output produced
 * while no Receive is waiting is buffered up to SHELL_BUFFER_LIMIT; beyond that the pump
 * stops reading, so the child blocks on a full pipe (backpressure). Once the child has
 * exited and both pipes are at end of file, a Receive gets the final result: state Done
 * with the exit code (128 + N when signal N killed it), then the Command completes.
 *
 * Send writes to the child's stdin (WSMAN_FLAG_SEND_NO_MORE_DATA closes it). Signal:
 * ctrl_c sends SIGINT to the process group, ctrl_break SIGQUIT, terminate SIGKILL (and
 * the command finishes). Closing the shell kills what is still running.
 *
 * Threads: pump threads are joined in ReleaseCommandContext, or in Shutdown at the
 * latest, so no thread outlives Shutdown. Locking follows echo.c (read that first): we
 * never call the host while holding a lock, and a context in use outside the lock is
 * held (`holds`) so its request, and so its life, cannot end under our feet. Unlike
 * echo.c each command has its own lock, because its pump thread may outlive the shell.
 *
 * The host process must not reap these children (no waitpid(-1), SIGCHLD not SIG_IGN).
 */
#define _GNU_SOURCE
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Output buffered per command before the pump stops reading the pipes. */
#define SHELL_BUFFER_LIMIT (1024u * 1024u)
/* The most one read() (and so one ReceiveResult) takes. */
#define SHELL_READ_SIZE (64u * 1024u)

enum { SHELL_STDOUT = 0, SHELL_STDERR = 1 };
#define SHELL_ALL_STREAMS ((1u << SHELL_STDOUT) | (1u << SHELL_STDERR))

/* MARK: - UTF-16 helpers (as in echo.c) */

static size_t utf16_length(PCWSTR text)
{
    size_t length = 0;
    while (text != NULL && text[length] != 0) {
        length++;
    }
    return length;
}

static char *utf8_from_utf16(PCWSTR text, size_t count)
{
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

static char *utf8_copy(PCWSTR text)
{
    return text == NULL ? NULL : utf8_from_utf16(text, utf16_length(text));
}

static bool utf16_equals_ignoring_case(PCWSTR left, PCWSTR right)
{
    size_t i = 0;
    if (left == NULL || right == NULL) {
        return false;
    }
    for (; left[i] != 0 && right[i] != 0; i++) {
        WCHAR a = left[i], b = right[i];
        if (a >= 'A' && a <= 'Z') a = (WCHAR)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (WCHAR)(b + 32);
        if (a != b) {
            return false;
        }
    }
    return left[i] == right[i];
}

/* MARK: - Contexts */

/* A piece of output read from one pipe, waiting for a Receive. */
struct shell_chunk {
    struct shell_chunk *next;
    int stream; /* SHELL_STDOUT or SHELL_STDERR */
    size_t length;
    unsigned char bytes[];
};

struct shell_command;

/* The plug-in context: every command whose pump thread has not been joined yet. */
struct shell_plugin {
    pthread_mutex_t lock;
    struct shell_command *commands;
};

/* A shell context. `lock` guards its fields and the list of its commands. */
struct shell_shell {
    pthread_mutex_t lock;
    struct shell_plugin *plugin;
    WSMAN_PLUGIN_REQUEST *request; /* the Shell request until completed */
    unsigned holds;
    bool cancelled;
    char *working_directory;       /* NULL: the host's */
    char **environment;            /* the children's environment */
    struct shell_command *commands;
};

/* A command context. Its own lock guards it: the pump thread never touches the shell,
   which the host may release while a pump finishes. Lock order: shell, then command. */
struct shell_command {
    pthread_mutex_t lock;
    struct shell_shell *shell;
    struct shell_command *next;        /* in shell->commands (until released) */
    struct shell_command *plugin_next; /* in plugin->commands (until joined) */
    WSMAN_PLUGIN_REQUEST *request;     /* the Command request until completed */
    WSMAN_PLUGIN_REQUEST *receive;     /* a waiting Receive, or NULL */
    unsigned receive_streams;          /* the streams that Receive wants (bit per stream) */
    unsigned holds;
    pid_t pid;                         /* the child, also its process group */
    int stdin_fd;                      /* write end of the child's stdin, -1 once closed */
    int output_fds[2];                 /* read ends of stdout and stderr (the pump's) */
    int wake_fd;                       /* eventfd that wakes the pump */
    pthread_t pump;
    pthread_mutex_t send_lock;         /* one Send at a time */
    struct shell_chunk *first_chunk, *last_chunk;
    size_t buffered;                   /* bytes in the chunks */
    bool reaping;                      /* the child has exited: never signal its pid again */
    bool exited;                       /* reaped and pipes done: exit_code is final */
    bool terminated;                   /* killed by us: stop waiting for end of file */
    bool final_claimed, final_delivered, cancelled;
    bool released;                     /* released on its own pump thread: free later */
    DWORD exit_code;
};

/* MARK: - Small system helpers */

static void shell_close(int fd)
{
    if (fd >= 0) {
        close(fd); /* on Linux the descriptor is gone even when close() says EINTR */
    }
}

static void shell_wake(int eventfd_fd)
{
    uint64_t one = 1;
    while (write(eventfd_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* Signals the command's process group unless the child was already reaped (its pid
   could belong to someone else then). Caller holds the command's lock. */
static void shell_command_signal_locked(struct shell_command *command, int signal_number)
{
    if (command->pid > 0 && !command->reaping) {
        kill(-command->pid, signal_number);
    }
}

/* MARK: - Completing commands */

static WSMAN_PLUGIN_REQUEST *shell_command_claim_request(struct shell_command *command, DWORD *error)
{
    WSMAN_PLUGIN_REQUEST *request = command->request;
    if (request == NULL || command->holds > 0 || !(command->final_delivered || command->cancelled)) {
        return NULL;
    }
    command->request = NULL;
    *error = command->final_delivered ? NO_ERROR : ERROR_OPERATION_ABORTED;
    return request;
}

static void shell_command_release_hold(struct shell_command *command)
{
    DWORD error = NO_ERROR;
    pthread_mutex_lock(&command->lock);
    command->holds--;
    WSMAN_PLUGIN_REQUEST *request = shell_command_claim_request(command, &error);
    pthread_mutex_unlock(&command->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, error, NULL);
    }
}

/*
 * Gives a waiting Receive what there is for it: buffered chunks of the streams it asked
 * for, then (once the child has exited and those are delivered) the Done result; or
 * completes it with ERROR_OPERATION_ABORTED when it, or the command, was cancelled
 * (the output stays for the next Receive). Callers hold the command or are its pump.
 */
static void shell_command_progress(struct shell_command *command)
{
    struct shell_chunk *taken = NULL, **taken_tail = &taken;
    WSMAN_PLUGIN_REQUEST *receive = NULL;
    bool aborted = false, final = false, wake = false;

    pthread_mutex_lock(&command->lock);
    if (command->receive != NULL) {
        if (command->receive->shutdownNotification || command->cancelled) {
            aborted = true;
        } else {
            bool was_full = command->buffered >= SHELL_BUFFER_LIMIT;
            /* Take the chunks of the wanted streams, in order; leave the others. */
            struct shell_chunk **link = &command->first_chunk;
            command->last_chunk = NULL;
            while (*link != NULL) {
                struct shell_chunk *chunk = *link;
                if (command->receive_streams & (1u << chunk->stream)) {
                    *link = chunk->next;
                    chunk->next = NULL;
                    *taken_tail = chunk;
                    taken_tail = &chunk->next;
                    command->buffered -= chunk->length;
                } else {
                    command->last_chunk = chunk;
                    link = &chunk->next;
                }
            }
            wake = was_full && command->buffered < SHELL_BUFFER_LIMIT;
            if (command->exited && !command->final_claimed) {
                final = true; /* what is left belongs to streams nobody asked for */
                command->final_claimed = true;
            }
        }
        if (aborted || taken != NULL || final) {
            receive = command->receive;
            command->receive = NULL;
            command->holds++;
        }
    }
    pthread_mutex_unlock(&command->lock);
    if (wake) {
        shell_wake(command->wake_fd); /* room again: the pump reads on */
    }
    if (receive == NULL) {
        return;
    }

    if (aborted) {
        WSManPluginOperationComplete(receive, 0, ERROR_OPERATION_ABORTED, NULL);
    } else {
        for (struct shell_chunk *chunk = taken; chunk != NULL; chunk = chunk->next) {
            WSMAN_DATA data;
            data.type = WSMAN_DATA_TYPE_BINARY;
            data.binaryData.dataLength = (DWORD)chunk->length;
            data.binaryData.data = chunk->bytes;
            WSManPluginReceiveResult(receive, 0, chunk->stream == SHELL_STDOUT ? WSMAN_STREAM_ID_STDOUT : WSMAN_STREAM_ID_STDERR,
                                     &data, NULL, 0);
        }
        if (final) {
            WSManPluginReceiveResult(receive, WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA, NULL, NULL,
                                     WSMAN_COMMAND_STATE_DONE, command->exit_code);
        }
        WSManPluginOperationComplete(receive, 0, NO_ERROR, NULL);
    }
    while (taken != NULL) {
        struct shell_chunk *next = taken->next;
        free(taken);
        taken = next;
    }

    pthread_mutex_lock(&command->lock);
    command->final_delivered = command->final_delivered || final;
    pthread_mutex_unlock(&command->lock);
    shell_command_release_hold(command);
}

/* Kills the command's process group and tells the pump to stop waiting for end of file. */
static void shell_command_kill(struct shell_command *command)
{
    pthread_mutex_lock(&command->lock);
    shell_command_signal_locked(command, SIGKILL);
    command->terminated = true;
    pthread_mutex_unlock(&command->lock);
    shell_wake(command->wake_fd);
}

/* Shutdown callback of a Receive request. */
static void shell_receive_cancelled(void *context)
{
    shell_command_progress(context);
}

/* Shutdown callback of a Command request: kill the child, end the command. */
static void shell_command_cancelled(void *context)
{
    struct shell_command *command = context;
    pthread_mutex_lock(&command->lock);
    command->cancelled = true;
    command->holds++;
    pthread_mutex_unlock(&command->lock);
    shell_command_kill(command);
    shell_command_progress(command);
    shell_command_release_hold(command);
}

/* MARK: - The pump thread */

/* Reads the child's output until both pipes end (or the command is terminated), then
   reaps the child and records its exit code. */
static void *shell_pump(void *context)
{
    struct shell_command *command = context;
    unsigned char *buffer = malloc(SHELL_READ_SIZE);

    for (;;) {
        pthread_mutex_lock(&command->lock);
        bool room = command->buffered < SHELL_BUFFER_LIMIT && buffer != NULL;
        bool terminated = command->terminated;
        pthread_mutex_unlock(&command->lock);
        if (terminated || (command->output_fds[SHELL_STDOUT] < 0 && command->output_fds[SHELL_STDERR] < 0)) {
            break;
        }
        struct pollfd fds[3];
        int streams[3];
        nfds_t count = 0;
        for (int stream = SHELL_STDOUT; stream <= SHELL_STDERR; stream++) {
            if (room && command->output_fds[stream] >= 0) {
                fds[count] = (struct pollfd){.fd = command->output_fds[stream], .events = POLLIN};
                streams[count++] = stream;
            }
        }
        fds[count] = (struct pollfd){.fd = command->wake_fd, .events = POLLIN};
        streams[count++] = -1;
        if (poll(fds, count, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        for (nfds_t i = 0; i < count; i++) {
            if (fds[i].revents == 0) {
                continue;
            }
            if (streams[i] < 0) {
                uint64_t value;
                while (read(command->wake_fd, &value, sizeof value) < 0 && errno == EINTR) {
                }
                continue;
            }
            ssize_t got = read(fds[i].fd, buffer, SHELL_READ_SIZE);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (got <= 0) { /* end of file (or a broken pipe): this stream is done */
                shell_close(command->output_fds[streams[i]]);
                command->output_fds[streams[i]] = -1;
                continue;
            }
            struct shell_chunk *chunk = malloc(sizeof *chunk + (size_t)got);
            if (chunk == NULL) {
                continue; /* out of memory: drop this piece rather than the command */
            }
            chunk->next = NULL;
            chunk->stream = streams[i];
            chunk->length = (size_t)got;
            memcpy(chunk->bytes, buffer, (size_t)got);
            pthread_mutex_lock(&command->lock);
            if (command->last_chunk != NULL) {
                command->last_chunk->next = chunk;
            } else {
                command->first_chunk = chunk;
            }
            command->last_chunk = chunk;
            command->buffered += chunk->length;
            pthread_mutex_unlock(&command->lock);
            shell_command_progress(command); /* a waiting Receive gets it now */
        }
    }
    free(buffer);
    for (int stream = SHELL_STDOUT; stream <= SHELL_STDERR; stream++) {
        shell_close(command->output_fds[stream]);
        command->output_fds[stream] = -1;
    }

    /* Wait for the exit without reaping, so signals can never reach a recycled pid. */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid(P_PID, (id_t)command->pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&command->lock);
    command->reaping = true;
    pthread_mutex_unlock(&command->lock);
    int status = 0;
    pid_t reaped;
    while ((reaped = waitpid(command->pid, &status, 0)) < 0 && errno == EINTR) {
    }
    DWORD exit_code = 255; /* reaped by someone else: unknown */
    if (reaped == command->pid) {
        if (WIFEXITED(status)) {
            exit_code = (DWORD)WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            exit_code = 128u + (DWORD)WTERMSIG(status);
        }
    }
    pthread_mutex_lock(&command->lock);
    command->exit_code = exit_code;
    command->exited = true;
    pthread_mutex_unlock(&command->lock);
    shell_command_progress(command); /* a waiting Receive gets the Done result */
    return NULL;
}

/* MARK: - Startup and Shutdown */

DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo,
                                PVOID *pluginContext)
{
    (void)flags;
    (void)applicationIdentification;
    (void)extraInfo;
    struct shell_plugin *plugin = calloc(1, sizeof *plugin);
    if (plugin == NULL) {
        return ERROR_OUTOFMEMORY;
    }
    pthread_mutex_init(&plugin->lock, NULL);
    *pluginContext = plugin;
    return NO_ERROR;
}

static void shell_command_free(struct shell_command *command)
{
    shell_close(command->stdin_fd);
    shell_close(command->wake_fd);
    while (command->first_chunk != NULL) {
        struct shell_chunk *next = command->first_chunk->next;
        free(command->first_chunk);
        command->first_chunk = next;
    }
    pthread_mutex_destroy(&command->send_lock);
    pthread_mutex_destroy(&command->lock);
    free(command);
}

/* Removes a command from the plug-in's list (caller holds the plug-in lock). */
static void shell_plugin_unlink_locked(struct shell_plugin *plugin, struct shell_command *command)
{
    for (struct shell_command **link = &plugin->commands; *link != NULL; link = &(*link)->plugin_next) {
        if (*link == command) {
            *link = command->plugin_next;
            return;
        }
    }
}

/* Joins and frees the commands released on their own pump thread. */
static void shell_plugin_reap_released(struct shell_plugin *plugin)
{
    for (;;) {
        struct shell_command *found = NULL;
        pthread_mutex_lock(&plugin->lock);
        for (struct shell_command *command = plugin->commands; command != NULL; command = command->plugin_next) {
            if (command->released && !pthread_equal(command->pump, pthread_self())) {
                found = command;
                shell_plugin_unlink_locked(plugin, command);
                break;
            }
        }
        pthread_mutex_unlock(&plugin->lock);
        if (found == NULL) {
            return;
        }
        pthread_join(found->pump, NULL);
        shell_command_free(found);
    }
}

/* Shutdown: kill whatever still runs, join every pump thread, free. */
DWORD WINAPI WSManPluginShutdown(PVOID pluginContext, DWORD flags, DWORD reason)
{
    (void)flags;
    (void)reason;
    struct shell_plugin *plugin = pluginContext;
    if (plugin == NULL) {
        return NO_ERROR;
    }
    for (;;) {
        pthread_mutex_lock(&plugin->lock);
        struct shell_command *command = plugin->commands;
        if (command != NULL) {
            plugin->commands = command->plugin_next;
        }
        pthread_mutex_unlock(&plugin->lock);
        if (command == NULL) {
            break;
        }
        if (!command->released) {
            shell_command_kill(command);
        }
        pthread_join(command->pump, NULL);
        shell_command_free(command);
    }
    pthread_mutex_destroy(&plugin->lock);
    free(plugin);
    return NO_ERROR;
}

/* MARK: - Shell */

static void shell_shell_free(struct shell_shell *shell)
{
    for (size_t i = 0; shell->environment != NULL && shell->environment[i] != NULL; i++) {
        free(shell->environment[i]);
    }
    free(shell->environment);
    free(shell->working_directory);
    pthread_mutex_destroy(&shell->lock);
    free(shell);
}

/* The children's environment: the inherited one, with the shell's variables added
   (replacing inherited ones of the same name). */
static char **shell_make_environment(const WSMAN_ENVIRONMENT_VARIABLE_SET *variables)
{
    size_t inherited = 0, added = variables != NULL ? variables->varsCount : 0, used = 0;
    while (environ != NULL && environ[inherited] != NULL) {
        inherited++;
    }
    char **environment = calloc(inherited + added + 1, sizeof *environment);
    if (environment == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < added; i++) {
        char *name = utf8_copy(variables->vars[i].name);
        char *value = utf8_copy(variables->vars[i].value);
        char *entry = NULL;
        if (name != NULL && name[0] != '\0' && strchr(name, '=') == NULL) {
            entry = malloc(strlen(name) + (value ? strlen(value) : 0) + 2);
            if (entry != NULL) {
                sprintf(entry, "%s=%s", name, value ? value : "");
            }
        }
        free(name);
        free(value);
        if (entry != NULL) {
            environment[used++] = entry;
        }
    }
    size_t own = used;
    for (size_t i = 0; i < inherited; i++) {
        size_t name_length = strcspn(environ[i], "=");
        bool replaced = false;
        for (size_t j = 0; j < own && !replaced; j++) {
            replaced = strncmp(environment[j], environ[i], name_length) == 0 && environment[j][name_length] == '=';
        }
        if (!replaced && (environment[used] = strdup(environ[i])) != NULL) {
            used++;
        }
    }
    environment[used] = NULL;
    return environment;
}

static WSMAN_PLUGIN_REQUEST *shell_shell_claim_request(struct shell_shell *shell)
{
    WSMAN_PLUGIN_REQUEST *request = shell->request;
    if (request == NULL || shell->holds > 0 || !shell->cancelled) {
        return NULL;
    }
    shell->request = NULL;
    return request;
}

static void shell_shell_release_hold(struct shell_shell *shell)
{
    pthread_mutex_lock(&shell->lock);
    shell->holds--;
    WSMAN_PLUGIN_REQUEST *request = shell_shell_claim_request(shell);
    pthread_mutex_unlock(&shell->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
    }
}

/* Shutdown callback of a Shell request: kill what still runs, end every command, then
   the shell. */
static void shell_shell_cancelled(void *context)
{
    struct shell_shell *shell = context;
    pthread_mutex_lock(&shell->lock);
    shell->cancelled = true;
    shell->holds++;
    pthread_mutex_unlock(&shell->lock);
    for (;;) {
        /* Pick a command whose request is outstanding (so the host cannot release it)
           and hold it, all under the shell's lock (Release unlinks under it too). */
        struct shell_command *command;
        pthread_mutex_lock(&shell->lock);
        for (command = shell->commands; command != NULL; command = command->next) {
            pthread_mutex_lock(&command->lock);
            bool pick = !command->cancelled && command->request != NULL;
            if (pick) {
                command->cancelled = true;
                command->holds++;
            }
            pthread_mutex_unlock(&command->lock);
            if (pick) {
                break;
            }
        }
        pthread_mutex_unlock(&shell->lock);
        if (command == NULL) {
            break;
        }
        shell_command_kill(command);
        shell_command_progress(command);
        shell_command_release_hold(command);
    }
    shell_shell_release_hold(shell);
}

VOID WINAPI WSManPluginShell(PVOID pluginContext, WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags,
                             WSMAN_SHELL_STARTUP_INFO *startupInfo, WSMAN_DATA *inboundShellInformation)
{
    (void)flags;
    (void)inboundShellInformation;
    struct shell_shell *shell = calloc(1, sizeof *shell);
    if (shell == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    pthread_mutex_init(&shell->lock, NULL);
    shell->plugin = pluginContext;
    shell->request = requestDetails;
    shell->holds = 1;
    shell->environment = shell_make_environment(startupInfo != NULL ? startupInfo->variableSet : NULL);
    if (startupInfo != NULL && startupInfo->workingDirectory != NULL && startupInfo->workingDirectory[0] != 0) {
        shell->working_directory = utf8_copy(startupInfo->workingDirectory);
    }
    if (shell->environment == NULL) {
        shell_shell_free(shell);
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    WSManPluginRegisterShutdownCallback(requestDetails, shell_shell_cancelled, shell);
    if (requestDetails->shutdownNotification) {
        shell->cancelled = true;
    }
    DWORD error = WSManPluginReportContext(requestDetails, 0, shell);
    if (error != NO_ERROR) {
        pthread_mutex_lock(&shell->lock);
        shell->request = NULL;
        pthread_mutex_unlock(&shell->lock);
        WSManPluginOperationComplete(requestDetails, 0, error, NULL);
        shell_shell_free(shell);
        return;
    }
    shell_shell_release_hold(shell);
}

VOID WINAPI WSManPluginReleaseShellContext(PVOID shellContext)
{
    shell_shell_free(shellContext);
}

/* MARK: - Command */

/* "<commandLine> <arg1> <arg2> ..." as a new UTF-8 string. */
static char *shell_join_command_line(PCWSTR commandLine, const WSMAN_COMMAND_ARG_SET *arguments)
{
    size_t count = arguments != NULL ? arguments->argsCount : 0;
    char **parts = calloc(count + 1, sizeof *parts);
    size_t total = 1;
    char *line = NULL;
    if (parts == NULL) {
        return NULL;
    }
    parts[0] = utf8_copy(commandLine != NULL ? commandLine : WSMAN_TEXT(""));
    for (size_t i = 0; i < count; i++) {
        parts[i + 1] = utf8_copy(arguments->args[i] != NULL ? arguments->args[i] : WSMAN_TEXT(""));
    }
    for (size_t i = 0; i <= count; i++) {
        if (parts[i] == NULL) {
            goto done;
        }
        total += strlen(parts[i]) + 1;
    }
    if ((line = malloc(total)) != NULL) {
        line[0] = '\0';
        for (size_t i = 0; i <= count; i++) {
            if (i > 0) {
                strcat(line, " ");
            }
            strcat(line, parts[i]);
        }
    }
done:
    for (size_t i = 0; i <= count; i++) {
        free(parts[i]);
    }
    free(parts);
    return line;
}

/* Starts /bin/sh -c line in its own process group with pipes for stdin, stdout and
   stderr. Returns 0 or an errno value. */
static int shell_spawn(struct shell_command *command, const char *line)
{
    int input[2] = {-1, -1}, output[2] = {-1, -1}, errors[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t all, none;
    int error = 0;

    if (pipe2(input, O_CLOEXEC) < 0 || pipe2(output, O_CLOEXEC) < 0 || pipe2(errors, O_CLOEXEC) < 0) {
        error = errno;
        goto fail;
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, input[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, output[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, errors[1], STDERR_FILENO);
    if (command->shell->working_directory != NULL) {
        posix_spawn_file_actions_addchdir_np(&actions, command->shell->working_directory);
    }
    posix_spawn_file_actions_addclosefrom_np(&actions, 3); /* nothing of the host leaks */

    /* Own process group (signals reach the whole command), default dispositions (the
       host may ignore SIGPIPE or SIGINT), nothing blocked. */
    posix_spawnattr_init(&attributes);
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setpgroup(&attributes, 0);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    char *argv[] = {"sh", "-c", (char *)line, NULL};
    error = posix_spawn(&command->pid, "/bin/sh", &actions, &attributes, argv, command->shell->environment);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
        command->pid = 0;
        goto fail;
    }
    shell_close(input[0]);
    shell_close(output[1]);
    shell_close(errors[1]);
    fcntl(input[1], F_SETFL, fcntl(input[1], F_GETFL) | O_NONBLOCK); /* Send polls */
    command->stdin_fd = input[1];
    command->output_fds[SHELL_STDOUT] = output[0];
    command->output_fds[SHELL_STDERR] = errors[0];
    return 0;

fail:
    shell_close(input[0]);
    shell_close(input[1]);
    shell_close(output[0]);
    shell_close(output[1]);
    shell_close(errors[0]);
    shell_close(errors[1]);
    return error;
}

/* Completes a Command request that failed before its context was reported. */
static void shell_fail_command(WSMAN_PLUGIN_REQUEST *request, DWORD code, const char *what, int error)
{
    char text[512];
    WCHAR wide[512];
    size_t i = 0;
    snprintf(text, sizeof text, "%s: %s", what, strerror(error));
    for (; text[i] != '\0' && i + 1 < sizeof wide / sizeof wide[0]; i++) {
        wide[i] = (WCHAR)(unsigned char)text[i]; /* ASCII messages */
    }
    wide[i] = 0;
    WSManPluginOperationComplete(request, 0, code, wide);
}

VOID WINAPI WSManPluginCommand(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PCWSTR commandLine, WSMAN_COMMAND_ARG_SET *arguments)
{
    (void)flags;
    struct shell_shell *shell = shellContext;
    struct shell_plugin *plugin = shell->plugin;
    shell_plugin_reap_released(plugin);

    struct shell_command *command = calloc(1, sizeof *command);
    char *line = shell_join_command_line(commandLine, arguments);
    if (command == NULL || line == NULL) {
        free(command);
        free(line);
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    command->shell = shell;
    command->request = requestDetails;
    command->holds = 1;
    command->stdin_fd = command->output_fds[0] = command->output_fds[1] = -1;
    pthread_mutex_init(&command->lock, NULL);
    pthread_mutex_init(&command->send_lock, NULL);
    command->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (command->wake_fd < 0) {
        int error = errno;
        free(line);
        shell_command_free(command);
        shell_fail_command(requestDetails, ERROR_OUTOFMEMORY, "eventfd", error);
        return;
    }
    int error = shell_spawn(command, line);
    free(line);
    if (error != 0) {
        shell_command_free(command);
        shell_fail_command(requestDetails, ERROR_INVALID_PARAMETER, "cannot start /bin/sh", error);
        return;
    }
    error = pthread_create(&command->pump, NULL, shell_pump, command);
    if (error != 0) {
        kill(-command->pid, SIGKILL);
        while (waitpid(command->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        shell_close(command->output_fds[0]);
        shell_close(command->output_fds[1]);
        shell_command_free(command);
        shell_fail_command(requestDetails, ERROR_OUTOFMEMORY, "pthread_create", error);
        return;
    }

    /* The pump is running: the plug-in now owns a thread to join. */
    pthread_mutex_lock(&plugin->lock);
    command->plugin_next = plugin->commands;
    plugin->commands = command;
    pthread_mutex_unlock(&plugin->lock);

    WSManPluginRegisterShutdownCallback(requestDetails, shell_command_cancelled, command);
    pthread_mutex_lock(&shell->lock);
    pthread_mutex_lock(&command->lock);
    command->cancelled = command->cancelled || requestDetails->shutdownNotification || shell->cancelled;
    bool cancelled = command->cancelled;
    pthread_mutex_unlock(&command->lock);
    command->next = shell->commands;
    shell->commands = command;
    pthread_mutex_unlock(&shell->lock);
    if (cancelled) {
        shell_command_kill(command);
    }

    DWORD report = WSManPluginReportContext(requestDetails, 0, command);
    if (report != NO_ERROR) {
        pthread_mutex_lock(&shell->lock);
        for (struct shell_command **link = &shell->commands; *link != NULL; link = &(*link)->next) {
            if (*link == command) {
                *link = command->next;
                break;
            }
        }
        pthread_mutex_unlock(&shell->lock);
        pthread_mutex_lock(&command->lock);
        command->request = NULL;
        pthread_mutex_unlock(&command->lock);
        WSManPluginOperationComplete(requestDetails, 0, report, NULL);
        shell_command_kill(command);
        pthread_mutex_lock(&plugin->lock);
        shell_plugin_unlink_locked(plugin, command);
        pthread_mutex_unlock(&plugin->lock);
        pthread_join(command->pump, NULL);
        shell_command_free(command);
        return;
    }
    shell_command_release_hold(command);
}

/* The host is done with the command: make sure the child is gone, join the pump, free.
   Called on the pump thread itself (from a completion), the freeing is left for later. */
VOID WINAPI WSManPluginReleaseCommandContext(PVOID shellContext, PVOID commandContext)
{
    struct shell_shell *shell = shellContext;
    struct shell_command *command = commandContext;
    struct shell_plugin *plugin = shell->plugin;
    pthread_mutex_lock(&shell->lock);
    for (struct shell_command **link = &shell->commands; *link != NULL; link = &(*link)->next) {
        if (*link == command) {
            *link = command->next;
            break;
        }
    }
    pthread_mutex_unlock(&shell->lock);
    shell_command_kill(command); /* normally long gone */

    if (pthread_equal(command->pump, pthread_self())) {
        pthread_mutex_lock(&plugin->lock);
        command->released = true; /* joined and freed by the next Command, Release or Shutdown */
        pthread_mutex_unlock(&plugin->lock);
        return;
    }
    pthread_mutex_lock(&plugin->lock);
    shell_plugin_unlink_locked(plugin, command);
    pthread_mutex_unlock(&plugin->lock);
    pthread_join(command->pump, NULL);
    shell_command_free(command);
    shell_plugin_reap_released(plugin);
}

/* MARK: - Send, Receive, Signal */

/* Writes all of `length` bytes to the child's stdin, waiting while the pipe is full;
   stops early when the Send is cancelled. Returns NO_ERROR or an error code. */
static DWORD shell_write_stdin(int fd, WSMAN_PLUGIN_REQUEST *request, const unsigned char *bytes, size_t length)
{
    /* A child that closed its stdin makes write() raise SIGPIPE, which would kill the
       host process: block it on this thread and swallow the one we cause. */
    sigset_t pipe_signal, previous;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
    DWORD result = NO_ERROR;
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written > 0) {
            bytes += written;
            length -= (size_t)written;
            continue;
        }
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written < 0 && errno == EAGAIN) {
            struct pollfd fds[2] = {
                {.fd = fd, .events = POLLOUT},
                {.fd = WSManPluginShutdownNotificationFd(request), .events = POLLIN},
            };
            if (poll(fds, 2, -1) < 0 && errno != EINTR) {
                result = ERROR_INVALID_PARAMETER;
                break;
            }
            if (fds[1].revents & POLLIN) {
                result = ERROR_OPERATION_ABORTED; /* the host cancelled this Send */
                break;
            }
            continue;
        }
        if (written < 0 && errno == EPIPE) {
            struct timespec now = {0, 0};
            sigtimedwait(&pipe_signal, NULL, &now);
        }
        break; /* the child stopped reading: the rest of its input is discarded */
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return result;
}

VOID WINAPI WSManPluginSend(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                            PVOID commandContext, PCWSTR stream, WSMAN_DATA *inboundData)
{
    (void)shellContext;
    (void)stream;
    struct shell_command *command = commandContext;
    if (command == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        return;
    }
    DWORD result = NO_ERROR;
    char *text = NULL;
    const unsigned char *bytes = NULL;
    size_t length = 0;
    if (inboundData != NULL && inboundData->type == WSMAN_DATA_TYPE_BINARY && inboundData->binaryData.data != NULL) {
        bytes = inboundData->binaryData.data;
        length = inboundData->binaryData.dataLength;
    } else if (inboundData != NULL && inboundData->type == WSMAN_DATA_TYPE_TEXT && inboundData->text.buffer != NULL) {
        text = utf8_from_utf16(inboundData->text.buffer, inboundData->text.bufferLength);
        if (text == NULL) {
            WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
            return;
        }
        bytes = (const unsigned char *)text;
        length = strlen(text);
    }

    /* The Send is outstanding, so the command cannot be released meanwhile. */
    pthread_mutex_lock(&command->send_lock);
    if (command->stdin_fd >= 0) {
        result = shell_write_stdin(command->stdin_fd, requestDetails, bytes, length);
        if (flags & WSMAN_FLAG_SEND_NO_MORE_DATA) {
            shell_close(command->stdin_fd); /* end of input for the child */
            command->stdin_fd = -1;
        }
    }
    pthread_mutex_unlock(&command->send_lock);
    free(text);
    WSManPluginOperationComplete(requestDetails, 0, result, NULL);
}

/* Bit mask of the streams a Receive asks for; NULL or empty means all. */
static unsigned shell_stream_mask(const WSMAN_STREAM_ID_SET *set)
{
    if (set == NULL || set->streamIDsCount == 0 || set->streamIDs == NULL) {
        return SHELL_ALL_STREAMS;
    }
    unsigned mask = 0;
    for (DWORD i = 0; i < set->streamIDsCount; i++) {
        if (utf16_equals_ignoring_case(set->streamIDs[i], WSMAN_STREAM_ID_STDOUT)) {
            mask |= 1u << SHELL_STDOUT;
        } else if (utf16_equals_ignoring_case(set->streamIDs[i], WSMAN_STREAM_ID_STDERR)) {
            mask |= 1u << SHELL_STDERR;
        }
    }
    return mask;
}

VOID WINAPI WSManPluginReceive(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PVOID commandContext, WSMAN_STREAM_ID_SET *streamSet)
{
    (void)flags;
    (void)shellContext;
    struct shell_command *command = commandContext;
    if (command == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    unsigned streams = shell_stream_mask(streamSet);
    WSManPluginRegisterShutdownCallback(requestDetails, shell_receive_cancelled, command);
    pthread_mutex_lock(&command->lock);
    bool busy = command->receive != NULL;
    if (!busy) {
        command->receive = requestDetails;
        command->receive_streams = streams;
        command->holds++;
    }
    pthread_mutex_unlock(&command->lock);
    if (busy) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    shell_command_progress(command);
    shell_command_release_hold(command);
}

/* Whether a signal code names `name`: the full URI or just its last segment. */
static bool shell_signal_is(PCWSTR code, PCWSTR uri, PCWSTR name)
{
    return utf16_equals_ignoring_case(code, uri) || utf16_equals_ignoring_case(code, name);
}

VOID WINAPI WSManPluginSignal(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                              PVOID commandContext, PCWSTR code)
{
    (void)flags;
    (void)shellContext;
    struct shell_command *command = commandContext;
    if (command != NULL) {
        pthread_mutex_lock(&command->lock);
        if (shell_signal_is(code, WSMAN_SIGNAL_SHELL_CODE_CTRL_C, WSMAN_TEXT("ctrl_c"))) {
            shell_command_signal_locked(command, SIGINT);
        } else if (shell_signal_is(code, WSMAN_SIGNAL_SHELL_CODE_CTRL_BREAK, WSMAN_TEXT("ctrl_break"))) {
            shell_command_signal_locked(command, SIGQUIT);
        } else if (shell_signal_is(code, WSMAN_SIGNAL_SHELL_CODE_TERMINATE, WSMAN_TEXT("terminate"))) {
            shell_command_signal_locked(command, SIGKILL);
            command->terminated = true;
        }
        pthread_mutex_unlock(&command->lock);
        shell_wake(command->wake_fd);
    }
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
}
