/*
 * echo.c: the smallest correct Airlock plug-in, and the template for writing one.
 *
 * Build it out of tree with nothing but the header:
 *
 *     cc -shared -fPIC $(pkg-config --cflags airlock-plugin) echo.c -o echo.so -lpthread
 *
 * What it does: a shell whose commands print their command line. The command `cat`
 * echoes its standard input until the client ends it; a few other command lines call
 * the remaining host callbacks so the host can be tested (see echo_command_output()).
 *
 * The contract, in short (every step below explains its part):
 *
 *   Startup  -> returns a plug-in context; Shutdown frees it.
 *   Shell    -> ReportContext(shell context). The Shell request then stays outstanding
 *               for the shell's whole life; completing it ends the shell. We complete
 *               it when the host cancels it (the client closed the shell).
 *   Command  -> ReportContext(command context). The Command request stays outstanding
 *               until the command has ended: we complete it after its last output.
 *   Send, Receive, Signal, Connect -> each request is completed exactly once with
 *               WSManPluginOperationComplete, possibly later and on another thread.
 *   Release{Shell,Command}Context -> the host is done with the context: free it now,
 *               and never before.
 *
 * Threads: the host may call entry points and shutdown callbacks concurrently, on any
 * thread. This plug-in starts no threads of its own (so Shutdown has none to end); work
 * that waits (a Receive with no output yet) is parked in the context and finished by
 * whichever entry point produces what it waits for.
 *
 * Two rules keep it correct:
 *   1. Never call the host while holding our lock. A host callback may block (flow
 *      control) or run a shutdown callback that takes the same lock.
 *   2. A context stays alive while its Shell or Command request is outstanding, because
 *      the host releases it only after that request is complete. So every thread that
 *      will touch a command context after unlocking takes a "hold" on it first
 *      (command->holds), and the Command request is completed only when nobody holds
 *      the context. The same goes for shells.
 */
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest piece of output passed to one WSManPluginReceiveResult call. */
#define ECHO_RESULT_CHUNK (64u * 1024u)

/* MARK: - Small helpers: UTF-16 strings and a byte buffer */

/* The number of UTF-16 code units before the NUL. */
static size_t utf16_length(PCWSTR text)
{
    size_t length = 0;
    while (text != NULL && text[length] != 0) {
        length++;
    }
    return length;
}

/* Converts `count` UTF-16 units to a new NUL-terminated UTF-8 string (NULL only when
   out of memory). Unpaired surrogates become U+FFFD. */
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

/* A NUL-terminated UTF-16 string as a new UTF-8 string; NULL stays NULL. */
static char *utf8_copy(PCWSTR text)
{
    return text == NULL ? NULL : utf8_from_utf16(text, utf16_length(text));
}

/* Whether two UTF-16 strings are equal, ignoring ASCII case (signal codes are URIs). */
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

/* A growable array of bytes. */
struct echo_buffer {
    char *bytes;
    size_t length;
    size_t capacity;
};

static bool echo_buffer_append(struct echo_buffer *buffer, const void *bytes, size_t count)
{
    if (buffer->length + count > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->length + count) {
            capacity *= 2;
        }
        char *grown = realloc(buffer->bytes, capacity);
        if (grown == NULL) {
            return false;
        }
        buffer->bytes = grown;
        buffer->capacity = capacity;
    }
    if (count > 0) {
        memcpy(buffer->bytes + buffer->length, bytes, count);
    }
    buffer->length += count;
    return true;
}

static bool echo_buffer_append_string(struct echo_buffer *buffer, const char *text)
{
    return echo_buffer_append(buffer, text, strlen(text));
}

/* Appends a WSMAN_DATA answer as text: a number, a string, bytes, or "-" for an error. */
static void echo_buffer_append_data(struct echo_buffer *buffer, DWORD error, const WSMAN_DATA *data)
{
    char number[16];
    if (error != NO_ERROR) {
        echo_buffer_append_string(buffer, "-");
    } else if (data->type == WSMAN_DATA_TYPE_DWORD) {
        snprintf(number, sizeof number, "%u", data->number);
        echo_buffer_append_string(buffer, number);
    } else if (data->type == WSMAN_DATA_TYPE_TEXT && data->text.buffer != NULL) {
        size_t units = data->text.bufferLength;
        while (units > 0 && data->text.buffer[units - 1] == 0) {
            units--; /* a length that counts the NUL */
        }
        char *text = utf8_from_utf16(data->text.buffer, units);
        if (text != NULL) {
            echo_buffer_append_string(buffer, text);
            free(text);
        }
    } else if (data->type == WSMAN_DATA_TYPE_BINARY && data->binaryData.data != NULL) {
        echo_buffer_append(buffer, data->binaryData.data, data->binaryData.dataLength);
    }
}

/* MARK: - Contexts */

/* The plug-in context: what Startup returned. */
struct echo_plugin {
    char *application_identification;
    char *extra_info; /* the InitializationParameters XML, or NULL */
};

struct echo_command;

/* A shell context. `lock` also guards the shell's commands. */
struct echo_shell {
    pthread_mutex_t lock;
    struct echo_plugin *plugin;
    WSMAN_PLUGIN_REQUEST *request; /* the Shell request until we complete it, then NULL */
    unsigned holds;                /* threads using the shell outside the lock */
    bool cancelled;                /* the host cancelled the Shell request */
    char *working_directory;       /* from the startup info, or NULL */
    size_t variable_count;
    char **variables;              /* "NAME=VALUE" */
    struct echo_command *commands; /* every command not yet released */
};

/* A command context. Guarded by its shell's lock. */
struct echo_command {
    struct echo_shell *shell;
    struct echo_command *next;
    WSMAN_PLUGIN_REQUEST *request; /* the Command request until we complete it, then NULL */
    WSMAN_PLUGIN_REQUEST *receive; /* a Receive waiting for output, or NULL */
    unsigned holds;                /* threads using the command outside the lock */
    struct echo_buffer output;     /* produced, not yet delivered */
    bool reads_stdin;              /* `cat`: output is the input, until end of input */
    bool finished;                 /* all output produced; exit_code is final */
    bool final_claimed;            /* a Receive is delivering the Done result */
    bool final_delivered;          /* ... and has completed */
    bool cancelled;                /* the host cancelled the Command request */
    DWORD exit_code;
};

/* MARK: - Completing commands and shells */

/* Claims the Command request if it may be completed now: the command has ended (its
   Done result was delivered, or it was cancelled) and no thread holds the context.
   The caller holds the lock and completes the returned request after unlocking. */
static WSMAN_PLUGIN_REQUEST *echo_command_claim_request(struct echo_command *command, DWORD *error)
{
    WSMAN_PLUGIN_REQUEST *request = command->request;
    if (request == NULL || command->holds > 0 || !(command->final_delivered || command->cancelled)) {
        return NULL;
    }
    command->request = NULL;
    *error = command->final_delivered ? NO_ERROR : ERROR_OPERATION_ABORTED;
    return request;
}

/* Drops a hold taken under the lock, completing the Command request if that was the
   last thing it waited for. The context may be freed (released) once this returns. */
static void echo_command_release_hold(struct echo_command *command)
{
    DWORD error = NO_ERROR;
    pthread_mutex_lock(&command->shell->lock);
    command->holds--;
    WSMAN_PLUGIN_REQUEST *request = echo_command_claim_request(command, &error);
    pthread_mutex_unlock(&command->shell->lock);
    if (request != NULL) {
        /* The command's last operation: after this the host may release the context. */
        WSManPluginOperationComplete(request, 0, error, NULL);
    }
}

/*
 * Moves a command forward: if a Receive is waiting and there is something for it
 * (output, the end of the command, or a cancellation), deliver it and complete the
 * Receive. The caller holds the context (a hold, not the lock).
 */
static void echo_command_progress(struct echo_command *command)
{
    struct echo_buffer output = {0};
    WSMAN_PLUGIN_REQUEST *receive = NULL;
    bool aborted = false, final = false;

    pthread_mutex_lock(&command->shell->lock);
    if (command->receive != NULL) {
        /* A waiting Receive is still ours, so reading its fields is safe here. */
        if (command->receive->shutdownNotification || command->cancelled) {
            aborted = true;
        } else if (command->output.length > 0 || (command->finished && !command->final_claimed)) {
            output = command->output; /* take the output; the context keeps none */
            command->output = (struct echo_buffer){0};
            final = command->finished;
            command->final_claimed = final;
        }
        if (aborted || output.length > 0 || final) {
            receive = command->receive; /* claim it: only we complete it now */
            command->receive = NULL;
            command->holds++;
        }
    }
    pthread_mutex_unlock(&command->shell->lock);
    if (receive == NULL) {
        return;
    }

    if (aborted) {
        /* Cancelled: the output stays for the next Receive. */
        WSManPluginOperationComplete(receive, 0, ERROR_OPERATION_ABORTED, NULL);
    } else {
        /* One ReceiveResult per piece of output, bytes unchanged... */
        for (size_t offset = 0; offset < output.length; offset += ECHO_RESULT_CHUNK) {
            size_t count = output.length - offset;
            WSMAN_DATA data;
            data.type = WSMAN_DATA_TYPE_BINARY;
            data.binaryData.dataLength = (DWORD)(count < ECHO_RESULT_CHUNK ? count : ECHO_RESULT_CHUNK);
            data.binaryData.data = (BYTE *)output.bytes + offset;
            WSManPluginReceiveResult(receive, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
        }
        /* ...then, once the command has ended, the Done state with its exit code... */
        if (final) {
            WSManPluginReceiveResult(receive, WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA, NULL, NULL,
                                     WSMAN_COMMAND_STATE_DONE, command->exit_code);
        }
        /* ...and the Receive is complete (the client sends another to read more). */
        WSManPluginOperationComplete(receive, 0, NO_ERROR, NULL);
    }
    free(output.bytes);

    pthread_mutex_lock(&command->shell->lock);
    command->final_delivered = command->final_delivered || final;
    pthread_mutex_unlock(&command->shell->lock);
    echo_command_release_hold(command); /* completes the Command after its Done result */
}

/* Shutdown callback of a Receive request: the host cancelled it. */
static void echo_receive_cancelled(void *context)
{
    echo_command_progress(context);
}

/* Shutdown callback of a Command request: the host cancelled the command (the client
   cancelled it, or the shell is closing). A waiting Receive ends too. */
static void echo_command_cancelled(void *context)
{
    struct echo_command *command = context;
    pthread_mutex_lock(&command->shell->lock);
    command->cancelled = true;
    command->holds++;
    pthread_mutex_unlock(&command->shell->lock);
    echo_command_progress(command); /* aborts a waiting Receive */
    echo_command_release_hold(command);
}

/* Claims the Shell request once it was cancelled and nobody holds the shell. */
static WSMAN_PLUGIN_REQUEST *echo_shell_claim_request(struct echo_shell *shell)
{
    WSMAN_PLUGIN_REQUEST *request = shell->request;
    if (request == NULL || shell->holds > 0 || !shell->cancelled) {
        return NULL;
    }
    shell->request = NULL;
    return request;
}

static void echo_shell_release_hold(struct echo_shell *shell)
{
    pthread_mutex_lock(&shell->lock);
    shell->holds--;
    WSMAN_PLUGIN_REQUEST *request = echo_shell_claim_request(shell);
    pthread_mutex_unlock(&shell->lock);
    if (request != NULL) {
        /* Ends the shell. The host releases its context afterwards. */
        WSManPluginOperationComplete(request, 0, NO_ERROR, NULL);
    }
}

/* Shutdown callback of a Shell request: the client closed the shell (or the plug-in is
   shutting down). The host cancels the commands first; we end any it did not, then
   complete the Shell request. No thread waits for this: the callback is the signal. */
static void echo_shell_cancelled(void *context)
{
    struct echo_shell *shell = context;
    pthread_mutex_lock(&shell->lock);
    shell->cancelled = true;
    shell->holds++;
    pthread_mutex_unlock(&shell->lock);

    for (;;) {
        struct echo_command *command;
        pthread_mutex_lock(&shell->lock);
        for (command = shell->commands; command != NULL; command = command->next) {
            if (!command->cancelled && command->request != NULL) {
                break;
            }
        }
        if (command != NULL) {
            command->cancelled = true;
            command->holds++;
        }
        pthread_mutex_unlock(&shell->lock);
        if (command == NULL) {
            break;
        }
        echo_command_progress(command);
        echo_command_release_hold(command);
    }
    echo_shell_release_hold(shell);
}

/* MARK: - Startup and Shutdown */

/*
 * Startup: called once per applicationIdentification before anything else. Return
 * NO_ERROR and a context (passed back to Shell and Shutdown), or an error code, in which
 * case Shutdown is not called.
 */
DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo,
                                PVOID *pluginContext)
{
    (void)flags;
    struct echo_plugin *plugin = calloc(1, sizeof *plugin);
    if (plugin == NULL) {
        return ERROR_OUTOFMEMORY;
    }
    /* Strings passed to an entry point are the host's: copy what you keep. */
    plugin->application_identification = utf8_copy(applicationIdentification);
    plugin->extra_info = utf8_copy(extraInfo);
    *pluginContext = plugin;
    return NO_ERROR;
}

/*
 * Shutdown: every operation has been cancelled and completed. End every thread the
 * plug-in started (this one starts none), free the context, return.
 */
DWORD WINAPI WSManPluginShutdown(PVOID pluginContext, DWORD flags, DWORD reason)
{
    (void)flags;
    (void)reason;
    struct echo_plugin *plugin = pluginContext;
    if (plugin != NULL) {
        free(plugin->application_identification);
        free(plugin->extra_info);
        free(plugin);
    }
    return NO_ERROR;
}

/* MARK: - Shell */

static void echo_shell_free(struct echo_shell *shell)
{
    for (size_t i = 0; i < shell->variable_count; i++) {
        free(shell->variables[i]);
    }
    free(shell->variables);
    free(shell->working_directory);
    pthread_mutex_destroy(&shell->lock);
    free(shell);
}

/* Copies what the shell keeps from its startup information. */
static bool echo_shell_copy_startup_info(struct echo_shell *shell, const WSMAN_SHELL_STARTUP_INFO *info)
{
    if (info == NULL) {
        return true;
    }
    if (info->workingDirectory != NULL && (shell->working_directory = utf8_copy(info->workingDirectory)) == NULL) {
        return false;
    }
    if (info->variableSet != NULL && info->variableSet->varsCount > 0) {
        shell->variables = calloc(info->variableSet->varsCount, sizeof *shell->variables);
        if (shell->variables == NULL) {
            return false;
        }
        for (DWORD i = 0; i < info->variableSet->varsCount; i++) {
            char *name = utf8_copy(info->variableSet->vars[i].name);
            char *value = utf8_copy(info->variableSet->vars[i].value);
            char *line = malloc((name ? strlen(name) : 0) + (value ? strlen(value) : 0) + 2);
            if (line != NULL) {
                sprintf(line, "%s=%s", name ? name : "", value ? value : "");
                shell->variables[shell->variable_count++] = line;
            }
            free(name);
            free(value);
            if (line == NULL) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Shell: create the shell context and report it. The request stays outstanding until
 * the shell ends; here it ends when the host cancels it, which we learn from a
 * registered shutdown callback (no thread waits for it).
 */
VOID WINAPI WSManPluginShell(PVOID pluginContext, WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags,
                             WSMAN_SHELL_STARTUP_INFO *startupInfo, WSMAN_DATA *inboundShellInformation)
{
    (void)flags;
    (void)inboundShellInformation;
    struct echo_shell *shell = calloc(1, sizeof *shell);
    if (shell == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    pthread_mutex_init(&shell->lock, NULL);
    shell->plugin = pluginContext;
    shell->request = requestDetails;
    shell->holds = 1; /* ours, until the context is reported */
    if (!echo_shell_copy_startup_info(shell, startupInfo)) {
        echo_shell_free(shell);
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }

    /* Learn of the cancellation. Register before reporting: the request cannot be
       completed by anyone else yet, and a cancellation that already happened shows in
       shutdownNotification (or runs the callback at once). */
    WSManPluginRegisterShutdownCallback(requestDetails, echo_shell_cancelled, shell);
    if (requestDetails->shutdownNotification) {
        shell->cancelled = true;
    }

    /* Report the context. From here on the host may call Command, Receive... with it,
       on other threads, even before this function returns: it must be ready. */
    DWORD error = WSManPluginReportContext(requestDetails, 0, shell);
    if (error != NO_ERROR) {
        /* Not reported: the host will not release it. Complete and free it ourselves. */
        pthread_mutex_lock(&shell->lock);
        shell->request = NULL;
        pthread_mutex_unlock(&shell->lock);
        WSManPluginOperationComplete(requestDetails, 0, error, NULL);
        echo_shell_free(shell);
        return;
    }
    echo_shell_release_hold(shell); /* completes now if it was cancelled meanwhile */
}

/* The host will not use the shell context again (its commands were released first). */
VOID WINAPI WSManPluginReleaseShellContext(PVOID shellContext)
{
    echo_shell_free(shellContext);
}

/* MARK: - Command */

/* Splits a line at spaces into at most `capacity` words (in place). */
static size_t echo_split_words(char *line, char **words, size_t capacity)
{
    size_t count = 0;
    for (char *save = NULL, *word = strtok_r(line, " ", &save); word != NULL && count < capacity;
         word = strtok_r(NULL, " ", &save)) {
        words[count++] = word;
    }
    return count;
}

/*
 * Decides what a command prints. `line` is the command line and its arguments joined
 * by single spaces. Called before the context is reported (nobody else sees it yet).
 */
static void echo_command_output(struct echo_command *command, WSMAN_PLUGIN_REQUEST *request, const char *line)
{
    struct echo_shell *shell = command->shell;
    struct echo_buffer *out = &command->output;
    char *copy = strdup(line);
    char *words[3] = {0};
    size_t count = copy ? echo_split_words(copy, words, 3) : 0;
    const char *verb = count > 0 ? words[0] : "";
    WSMAN_DATA data;
    DWORD error;
    char text[64];

    command->finished = true; /* every command but `cat` ends at once */
    command->exit_code = 0;
    if (strcmp(line, "cat") == 0) {
        command->reads_stdin = true;
        command->finished = false;
    } else if (strcmp(verb, "exit") == 0) {
        command->exit_code = count > 1 ? (DWORD)strtoul(words[1], NULL, 10) : 0;
    } else if (strcmp(line, "params") == 0) {
        /* Questions about this operation; text answers stay valid until it completes. */
        static const struct { DWORD flag; const char *name; } questions[] = {
            {WSMAN_PLUGIN_PARAMS_TIMEOUT, "timeout"},
            {WSMAN_PLUGIN_PARAMS_MAX_ENVELOPE_SIZE, "envelope"},
            {WSMAN_PLUGIN_PARAMS_GET_REQUESTED_LOCALE, "locale"},
            {WSMAN_PLUGIN_PARAMS_GET_REQUESTED_DATA_LOCALE, "datalocale"},
        };
        for (size_t i = 0; i < sizeof questions / sizeof questions[0]; i++) {
            memset(&data, 0, sizeof data);
            error = WSManPluginGetOperationParameters(request, questions[i].flag, &data);
            echo_buffer_append_string(out, i == 0 ? "" : " ");
            echo_buffer_append_string(out, questions[i].name);
            echo_buffer_append_string(out, "=");
            echo_buffer_append_data(out, error, &data);
        }
        echo_buffer_append_string(out, "\n");
    } else if (strcmp(line, "config") == 0) {
        /* Questions about the plug-in's registration. */
        static const struct { DWORD flag; const char *name; } questions[] = {
            {WSMAN_PLUGIN_PARAMS_NAME, "name"},
            {WSMAN_PLUGIN_PARAMS_AUTORESTART, "autorestart"},
            {WSMAN_PLUGIN_PARAMS_SHAREDHOST, "sharedhost"},
            {WSMAN_PLUGIN_PARAMS_RUNAS_USER, "runasuser"},
            {WSMAN_PLUGIN_PARAMS_HOSTIDLETIMEOUTSECONDS, "idletimeout"},
        };
        for (size_t i = 0; i < sizeof questions / sizeof questions[0]; i++) {
            memset(&data, 0, sizeof data);
            error = WSManPluginGetConfiguration(shell->plugin, questions[i].flag, &data);
            echo_buffer_append_string(out, i == 0 ? "" : " ");
            echo_buffer_append_string(out, questions[i].name);
            echo_buffer_append_string(out, "=");
            echo_buffer_append_data(out, error, &data);
        }
        echo_buffer_append_string(out, "\n");
    } else if (strcmp(line, "free-details") == 0) {
        /* The request's fields are gone after this; the request itself is still ours
           to complete (and its shutdown callback still fires). */
        error = WSManPluginFreeRequestDetails(request);
        snprintf(text, sizeof text, "free-details=%u\n", error);
        echo_buffer_append_string(out, text);
    } else if (strcmp(line, "report-completion") == 0) {
        /* Tells the host the plug-in has no more work and may be shut down. */
        error = WSManPluginReportCompletion(shell->plugin, 0);
        snprintf(text, sizeof text, "report-completion=%u\n", error);
        echo_buffer_append_string(out, text);
    } else if (strcmp(line, "whoami") == 0) {
        WSMAN_SENDER_DETAILS *sender = request->senderDetails;
        char *name = utf8_copy(sender ? sender->senderName : NULL);
        char *mechanism = utf8_copy(sender ? sender->authenticationMechanism : NULL);
        char *uri = utf8_copy(request->resourceUri);
        echo_buffer_append_string(out, "senderName=");
        echo_buffer_append_string(out, name ? name : "");
        echo_buffer_append_string(out, " authenticationMechanism=");
        echo_buffer_append_string(out, mechanism ? mechanism : "");
        echo_buffer_append_string(out, " resourceUri=");
        echo_buffer_append_string(out, uri ? uri : "");
        if (sender != NULL && sender->httpURL != NULL) {
            /* Set when a gateway (airlock-wsman) asserted the user: the URL the client used. */
            char *url = utf8_copy(sender->httpURL);
            echo_buffer_append_string(out, " httpURL=");
            echo_buffer_append_string(out, url ? url : "");
            free(url);
        }
        echo_buffer_append_string(out, "\n");
        free(name);
        free(mechanism);
        free(uri);
    } else if (strcmp(line, "env") == 0) {
        for (size_t i = 0; i < shell->variable_count; i++) {
            echo_buffer_append_string(out, shell->variables[i]);
            echo_buffer_append_string(out, "\n");
        }
    } else if (strcmp(line, "pwd") == 0) {
        echo_buffer_append_string(out, shell->working_directory ? shell->working_directory : "");
        echo_buffer_append_string(out, "\n");
    } else {
        echo_buffer_append_string(out, line);
        echo_buffer_append_string(out, "\n");
    }
    free(copy);
}

/* Joins the command line and its arguments with single spaces (new UTF-8 string). */
static char *echo_join_command_line(PCWSTR commandLine, const WSMAN_COMMAND_ARG_SET *arguments)
{
    struct echo_buffer line = {0};
    char *text = utf8_copy(commandLine);
    echo_buffer_append_string(&line, text ? text : "");
    free(text);
    for (DWORD i = 0; arguments != NULL && i < arguments->argsCount; i++) {
        text = utf8_copy(arguments->args[i]);
        echo_buffer_append_string(&line, " ");
        echo_buffer_append_string(&line, text ? text : "");
        free(text);
    }
    if (!echo_buffer_append(&line, "", 1)) { /* the NUL */
        free(line.bytes);
        return NULL;
    }
    return line.bytes;
}

/*
 * Command: create the command context and report it. The Command request stays
 * outstanding until the command has ended and its Done result was received (or it was
 * cancelled). Output waits in the context for a Receive.
 */
VOID WINAPI WSManPluginCommand(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PCWSTR commandLine, WSMAN_COMMAND_ARG_SET *arguments)
{
    (void)flags;
    struct echo_shell *shell = shellContext;
    struct echo_command *command = calloc(1, sizeof *command);
    char *line = echo_join_command_line(commandLine, arguments);
    if (command == NULL || line == NULL) {
        free(command);
        free(line);
        WSManPluginOperationComplete(requestDetails, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    command->shell = shell;
    command->request = requestDetails;
    command->holds = 1; /* ours, until the context is reported */

    /* As for the shell: register for cancellation before anyone else can complete the
       request, and notice a cancellation that came first. */
    WSManPluginRegisterShutdownCallback(requestDetails, echo_command_cancelled, command);
    if (requestDetails->shutdownNotification) {
        command->cancelled = true;
    }
    echo_command_output(command, requestDetails, line); /* may free the request details */
    free(line);

    /* Make it visible to the shell (so closing the shell ends it), then report it. */
    pthread_mutex_lock(&shell->lock);
    command->next = shell->commands;
    shell->commands = command;
    command->cancelled = command->cancelled || shell->cancelled; /* the shell is closing */
    pthread_mutex_unlock(&shell->lock);

    DWORD error = WSManPluginReportContext(requestDetails, 0, command);
    if (error != NO_ERROR) {
        pthread_mutex_lock(&shell->lock);
        for (struct echo_command **link = &shell->commands; *link != NULL; link = &(*link)->next) {
            if (*link == command) {
                *link = command->next;
                break;
            }
        }
        command->request = NULL;
        pthread_mutex_unlock(&shell->lock);
        WSManPluginOperationComplete(requestDetails, 0, error, NULL);
        free(command->output.bytes);
        free(command);
        return;
    }
    /* Reported: from now on the host owns the context's lifetime. Drop our hold (this
       completes the command at once if it was cancelled meanwhile). */
    echo_command_release_hold(command);
}

/* The host is done with the command: unlink and free it. */
VOID WINAPI WSManPluginReleaseCommandContext(PVOID shellContext, PVOID commandContext)
{
    struct echo_shell *shell = shellContext;
    struct echo_command *command = commandContext;
    pthread_mutex_lock(&shell->lock);
    for (struct echo_command **link = &shell->commands; *link != NULL; link = &(*link)->next) {
        if (*link == command) {
            *link = command->next;
            break;
        }
    }
    pthread_mutex_unlock(&shell->lock);
    free(command->output.bytes);
    free(command);
}

/* MARK: - Send, Receive, Signal, Connect */

/*
 * Send: input for a command. `cat` echoes it; WSMAN_FLAG_SEND_NO_MORE_DATA ends the
 * input and so the command. Every Send is acknowledged with OperationComplete before
 * the host delivers the next one.
 */
VOID WINAPI WSManPluginSend(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                            PVOID commandContext, PCWSTR stream, WSMAN_DATA *inboundData)
{
    (void)shellContext;
    (void)stream;
    struct echo_command *command = commandContext;
    if (command == NULL) {
        /* Input for the shell itself: this shell has no use for it. */
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        return;
    }
    DWORD error = NO_ERROR;
    pthread_mutex_lock(&command->shell->lock);
    if (command->reads_stdin && !command->finished && inboundData != NULL) {
        bool stored = true;
        if (inboundData->type == WSMAN_DATA_TYPE_BINARY && inboundData->binaryData.data != NULL) {
            stored = echo_buffer_append(&command->output, inboundData->binaryData.data,
                                        inboundData->binaryData.dataLength);
        } else if (inboundData->type == WSMAN_DATA_TYPE_TEXT && inboundData->text.buffer != NULL) {
            char *text = utf8_from_utf16(inboundData->text.buffer, inboundData->text.bufferLength);
            stored = text != NULL && echo_buffer_append_string(&command->output, text);
            free(text);
        }
        error = stored ? NO_ERROR : ERROR_OUTOFMEMORY;
    }
    if (command->reads_stdin && (flags & WSMAN_FLAG_SEND_NO_MORE_DATA) && !command->finished) {
        command->finished = true; /* end of input: `cat` is done, exit code 0 */
        command->exit_code = 0;
    }
    command->holds++; /* we touch the command after completing the Send */
    pthread_mutex_unlock(&command->shell->lock);

    WSManPluginOperationComplete(requestDetails, 0, error, NULL);
    echo_command_progress(command); /* a waiting Receive gets the new output */
    echo_command_release_hold(command);
}

/*
 * Receive: deliver the output that is there and complete. With nothing to deliver yet,
 * park the request in the context: a later Send, Signal or the cancellation completes
 * it, on its own thread. One Receive per command at a time.
 */
VOID WINAPI WSManPluginReceive(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PVOID commandContext, WSMAN_STREAM_ID_SET *streamSet)
{
    (void)flags;
    (void)shellContext;
    (void)streamSet; /* echo writes stdout only */
    struct echo_command *command = commandContext;
    if (command == NULL) {
        /* This shell produces output only from commands. */
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    /* Register before the request becomes visible to other threads. */
    WSManPluginRegisterShutdownCallback(requestDetails, echo_receive_cancelled, command);

    pthread_mutex_lock(&command->shell->lock);
    bool busy = command->receive != NULL;
    if (!busy) {
        command->receive = requestDetails;
        command->holds++;
    }
    pthread_mutex_unlock(&command->shell->lock);
    if (busy) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    echo_command_progress(command); /* delivers now if there is anything */
    echo_command_release_hold(command);
}

/*
 * Signal: terminate ends the command (Done, exit code 0) and so completes a waiting
 * Receive; every signal is acknowledged with OperationComplete.
 */
VOID WINAPI WSManPluginSignal(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                              PVOID commandContext, PCWSTR code)
{
    (void)flags;
    (void)shellContext;
    struct echo_command *command = commandContext;
    bool terminate = utf16_equals_ignoring_case(code, WSMAN_SIGNAL_SHELL_CODE_TERMINATE)
        || utf16_equals_ignoring_case(code, WSMAN_TEXT("terminate"));
    if (command == NULL || !terminate) {
        WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
        return;
    }
    pthread_mutex_lock(&command->shell->lock);
    if (!command->finished) {
        command->finished = true;
        command->exit_code = 0;
    }
    command->holds++;
    pthread_mutex_unlock(&command->shell->lock);

    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
    echo_command_progress(command);
    echo_command_release_hold(command);
}

/* Connect: a client reattaches. The connect response travels in extendedInformation. */
VOID WINAPI WSManPluginConnect(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PVOID commandContext, WSMAN_DATA *inboundConnectInformation)
{
    (void)flags;
    (void)shellContext;
    (void)commandContext;
    (void)inboundConnectInformation;
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, WSMAN_TEXT("<EchoConnectResponse/>"));
}
