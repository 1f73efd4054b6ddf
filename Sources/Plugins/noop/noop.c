/*
 * noop.c: the benchmark plug-in. Every entry point does the least it can, so a
 * benchmark measures the host, not the plug-in:
 *
 *   Shell, Command   report their context at once (no thread, no copy).
 *   Send, Signal     OperationComplete(NO_ERROR) at once, on the calling thread.
 *   Receive          for the command line `stream N`: N bytes in 64 KiB ReceiveResults
 *                    (one static buffer, no allocation per chunk), then Done, exit 0;
 *                    for any other command: Done, exit 0, at once.
 *
 * The Shell request completes when the host cancels it; the Command request after its
 * Done result was delivered, or when the host cancels it. Cancellation of a Receive is
 * noticed between chunks (it never waits for anything). Locking follows echo.c: never
 * call the host while holding a lock.
 */
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define NOOP_CHUNK_SIZE (64u * 1024u)

/* The bytes every chunk carries (zeros). */
static BYTE noop_chunk[NOOP_CHUNK_SIZE];

/* Shell or command: the request stays ours until both the entry point reported the
   context and the operation has ended (done or cancelled). */
struct noop_operation {
    pthread_mutex_t lock;
    WSMAN_PLUGIN_REQUEST *request; /* until completed */
    bool reported;                 /* the entry point has reported the context */
    bool ended;                    /* done (commands) or cancelled */
    DWORD error;                   /* what the request completes with */
    DWORD cancel_error;            /* ... when cancelled: NO_ERROR closes a shell */
    unsigned long long remaining;  /* commands: bytes still to stream */
};

/* Claims the request once it may be completed (caller holds the lock). */
static WSMAN_PLUGIN_REQUEST *noop_claim(struct noop_operation *operation)
{
    WSMAN_PLUGIN_REQUEST *request = NULL;
    if (operation->reported && operation->ended) {
        request = operation->request;
        operation->request = NULL;
    }
    return request;
}

/* Ends the operation with `error` (the first end wins) and completes it if possible. */
static void noop_end(struct noop_operation *operation, DWORD error)
{
    pthread_mutex_lock(&operation->lock);
    if (!operation->ended) {
        operation->ended = true;
        operation->error = error;
    }
    WSMAN_PLUGIN_REQUEST *request = noop_claim(operation);
    DWORD code = operation->error;
    pthread_mutex_unlock(&operation->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, code, NULL);
    }
}

/* Shutdown callback for Shell and Command requests. */
static void noop_cancelled(void *context)
{
    struct noop_operation *operation = context;
    noop_end(operation, operation->cancel_error);
}

/* Creates the context, registers for cancellation and reports it. */
static void noop_start(WSMAN_PLUGIN_REQUEST *request, unsigned long long remaining, DWORD cancel_error)
{
    struct noop_operation *operation = calloc(1, sizeof *operation);
    if (operation == NULL) {
        WSManPluginOperationComplete(request, 0, ERROR_OUTOFMEMORY, NULL);
        return;
    }
    pthread_mutex_init(&operation->lock, NULL);
    operation->request = request;
    operation->remaining = remaining;
    operation->cancel_error = cancel_error;
    WSManPluginRegisterShutdownCallback(request, noop_cancelled, operation);
    bool cancelled = request->shutdownNotification;
    DWORD error = WSManPluginReportContext(request, 0, operation);
    if (error != NO_ERROR) {
        WSManPluginOperationComplete(request, 0, error, NULL);
        pthread_mutex_destroy(&operation->lock);
        free(operation);
        return;
    }
    pthread_mutex_lock(&operation->lock);
    operation->reported = true;
    if (cancelled && !operation->ended) {
        operation->ended = true;
        operation->error = cancel_error;
    }
    request = noop_claim(operation);
    DWORD code = operation->error;
    pthread_mutex_unlock(&operation->lock);
    if (request != NULL) {
        WSManPluginOperationComplete(request, 0, code, NULL);
    }
}

static void noop_free(struct noop_operation *operation)
{
    pthread_mutex_destroy(&operation->lock);
    free(operation);
}

DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo,
                                PVOID *pluginContext)
{
    (void)flags;
    (void)applicationIdentification;
    (void)extraInfo;
    *pluginContext = noop_chunk; /* any non-NULL pointer: noop keeps no state */
    return NO_ERROR;
}

DWORD WINAPI WSManPluginShutdown(PVOID pluginContext, DWORD flags, DWORD reason)
{
    (void)pluginContext;
    (void)flags;
    (void)reason;
    return NO_ERROR;
}

VOID WINAPI WSManPluginShell(PVOID pluginContext, WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags,
                             WSMAN_SHELL_STARTUP_INFO *startupInfo, WSMAN_DATA *inboundShellInformation)
{
    (void)pluginContext;
    (void)flags;
    (void)startupInfo;
    (void)inboundShellInformation;
    noop_start(requestDetails, 0, NO_ERROR); /* closing a shell is no error */
}

VOID WINAPI WSManPluginReleaseShellContext(PVOID shellContext)
{
    noop_free(shellContext);
}

/* Parses "stream N" (the count may also be the first argument); 0 otherwise. */
static unsigned long long noop_stream_size(PCWSTR commandLine, const WSMAN_COMMAND_ARG_SET *arguments)
{
    static const char verb[] = "stream";
    size_t i = 0;
    if (commandLine == NULL) {
        return 0;
    }
    for (; verb[i] != '\0'; i++) {
        if (commandLine[i] != (WCHAR)verb[i]) {
            return 0;
        }
    }
    PCWSTR digits = commandLine + i;
    if (*digits == 0 && arguments != NULL && arguments->argsCount > 0 && arguments->args[0] != NULL) {
        digits = arguments->args[0];
    } else if (*digits != ' ') {
        return 0;
    }
    while (*digits == ' ') {
        digits++;
    }
    unsigned long long size = 0;
    for (; *digits >= '0' && *digits <= '9'; digits++) {
        size = size * 10 + (unsigned long long)(*digits - '0');
    }
    return size;
}

VOID WINAPI WSManPluginCommand(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PCWSTR commandLine, WSMAN_COMMAND_ARG_SET *arguments)
{
    (void)flags;
    (void)shellContext;
    noop_start(requestDetails, noop_stream_size(commandLine, arguments), ERROR_OPERATION_ABORTED);
}

VOID WINAPI WSManPluginReleaseCommandContext(PVOID shellContext, PVOID commandContext)
{
    (void)shellContext;
    noop_free(commandContext);
}

VOID WINAPI WSManPluginSend(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                            PVOID commandContext, PCWSTR stream, WSMAN_DATA *inboundData)
{
    (void)flags;
    (void)shellContext;
    (void)commandContext;
    (void)stream;
    (void)inboundData;
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
}

VOID WINAPI WSManPluginSignal(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                              PVOID commandContext, PCWSTR code)
{
    (void)flags;
    (void)shellContext;
    (void)commandContext;
    (void)code;
    WSManPluginOperationComplete(requestDetails, 0, NO_ERROR, NULL);
}

VOID WINAPI WSManPluginReceive(WSMAN_PLUGIN_REQUEST *requestDetails, DWORD flags, PVOID shellContext,
                               PVOID commandContext, WSMAN_STREAM_ID_SET *streamSet)
{
    (void)flags;
    (void)shellContext;
    (void)streamSet;
    struct noop_operation *command = commandContext;
    if (command == NULL) {
        WSManPluginOperationComplete(requestDetails, 0, ERROR_INVALID_PARAMETER, NULL);
        return;
    }
    /* Stream what is left, one static chunk at a time. The Receive is outstanding, so
       the command stays alive; `remaining` is only touched by the one Receive. */
    pthread_mutex_lock(&command->lock);
    unsigned long long remaining = command->remaining;
    pthread_mutex_unlock(&command->lock);
    DWORD error = NO_ERROR;
    WSMAN_DATA data;
    data.type = WSMAN_DATA_TYPE_BINARY;
    data.binaryData.data = noop_chunk;
    while (remaining > 0) {
        if (requestDetails->shutdownNotification) {
            error = ERROR_OPERATION_ABORTED;
            break;
        }
        data.binaryData.dataLength = remaining < NOOP_CHUNK_SIZE ? (DWORD)remaining : NOOP_CHUNK_SIZE;
        error = WSManPluginReceiveResult(requestDetails, 0, WSMAN_STREAM_ID_STDOUT, &data, NULL, 0);
        if (error != NO_ERROR) {
            break;
        }
        remaining -= data.binaryData.dataLength;
    }
    if (error == NO_ERROR) {
        error = WSManPluginReceiveResult(requestDetails, WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA, NULL, NULL,
                                         WSMAN_COMMAND_STATE_DONE, 0);
    }

    /* Claim the Command request before completing the Receive: once the Receive is
       complete the host may release the command. */
    WSMAN_PLUGIN_REQUEST *finished = NULL;
    DWORD code = NO_ERROR;
    pthread_mutex_lock(&command->lock);
    command->remaining = remaining;
    if (error == NO_ERROR) {
        if (!command->ended) {
            command->ended = true;
            command->error = NO_ERROR;
        }
        finished = noop_claim(command);
        code = command->error;
    }
    pthread_mutex_unlock(&command->lock);
    WSManPluginOperationComplete(requestDetails, 0, error, NULL);
    if (finished != NULL) {
        WSManPluginOperationComplete(finished, 0, code, NULL);
    }
}
