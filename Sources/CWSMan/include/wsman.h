/*
 * wsman.h: the WinRM operations plug-in API, for plug-ins hosted by Airlock on Linux.
 *
 * This is the plug-in section of Microsoft's <wsman.h> (the WSManPlugin* entry points a
 * plug-in exports and the callbacks its host provides), with the types given their
 * Windows sizes so every structure has its Win64 layout. A plug-in written against
 * Microsoft's documentation compiles unchanged:
 *
 *     #define WSMAN_API_VERSION_1_1          (or WSMAN_API_VERSION_1_0)
 *     #include <wsman.h>
 *
 *     cc -shared -fPIC $(pkg-config --cflags airlock-plugin) plugin.c -o plugin.so
 *
 * Linux conventions
 * -----------------
 * - DWORD is 32 bits (uint32_t), BOOL is a 32-bit int, HANDLE and PVOID are void *.
 * - Every string (PCWSTR) is NUL-terminated UTF-16LE, not wchar_t (which is 32 bits on
 *   Linux). Write literals as u"..." (C11). A Windows plug-in that writes L"..." builds
 *   unchanged with -fshort-wchar: the header sees __SIZEOF_WCHAR_T__ == 2 and makes
 *   WCHAR wchar_t (define WSMAN_USE_SHORT_WCHAR to force it).
 * - WINAPI and CALLBACK are empty: there is one calling convention on x86-64 Linux.
 * - Export the entry points with default visibility (the default for cc; with
 *   -fvisibility=hidden mark them __attribute__((visibility("default")))). The host
 *   finds them with dlsym() by name. The host callbacks are defined by the host process
 *   (airlock-worker); leave them undefined in the plug-in, and the dynamic loader
 *   resolves them when the host dlopen()s it.
 *
 * Cancellation on Linux
 * ---------------------
 * When the host cancels an operation (the client cancelled it, its deadline passed, its
 * shell or command is closing, or the plug-in is being shut down), it, in this order:
 *   1. sets requestDetails->shutdownNotification to TRUE;
 *   2. signals requestDetails->shutdownNotificationHandle. On Linux that HANDLE holds an
 *      eventfd(2) file descriptor, not a pointer: (int)(intptr_t)handle, or use
 *      WSManPluginShutdownNotificationFd(). It becomes readable (POLLIN) when the
 *      operation is cancelled, so a plug-in can poll() it next to its own descriptors.
 *      It belongs to the host: never close it, and do not use it after
 *      WSManPluginOperationComplete on that request;
 *   3. calls every callback registered for the request with
 *      WSManPluginRegisterShutdownCallback (PowerShell's Linux addition).
 * The plug-in must still call WSManPluginOperationComplete on the cancelled request
 * (usually with ERROR_OPERATION_ABORTED). Children are cancelled first: Receive, Send
 * and Signal, then Command, then Shell.
 *
 * Shutdown callbacks registered with WSManPluginRegisterShutdownCallback:
 *   - run at most once per registration, on a host thread, after steps 1 and 2;
 *   - if the request is already cancelled when registered, the callback runs at once,
 *     possibly on the registering thread before the registration call returns, so do
 *     not hold a lock the callback takes while registering;
 *   - never run after WSManPluginOperationComplete on that request has returned (the
 *     host waits for a callback already running), so do not hold a lock the callback
 *     takes while completing the request either;
 *   - take a context pointer that should outlive the request: the shell or command
 *     context is a good choice (it lives until Release...Context).
 *
 * Requests: the host identifies an operation by its WSMAN_PLUGIN_REQUEST pointer. Every
 * field stays valid until WSManPluginOperationComplete on it (or until
 * WSManPluginFreeRequestDetails, after which the plug-in may not read any field,
 * shutdownNotification included, but still completes the operation with that pointer).
 */
#ifndef AIRLOCK_WSMAN_H
#define AIRLOCK_WSMAN_H

#include <stdint.h>
#include <stddef.h>
#if !defined(__cplusplus)
#include <uchar.h>
#endif

/* The API version: the plug-in chooses it before including this header, as with
   Microsoft's header. Swift (the CWSMan module) sees version 1.1. */
#if !defined(WSMAN_API_VERSION_1_0) && !defined(WSMAN_API_VERSION_1_1)
#if defined(__swift__)
#define WSMAN_API_VERSION_1_1
#else
#error Either WSMAN_API_VERSION_1_0 or WSMAN_API_VERSION_1_1 need to be defined before including this header.
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* MARK: - Windows types with their Windows sizes */

/** 32-bit unsigned integer (not unsigned long, which is 64-bit on Linux). */
typedef uint32_t DWORD;
/** 32-bit boolean: FALSE (0) or TRUE (non-zero). */
typedef int BOOL;
/** 8-bit unsigned integer. */
typedef uint8_t BYTE;
/** Untyped pointer (contexts). */
typedef void *PVOID;
/** Opaque handle; in WSMAN_PLUGIN_REQUEST it carries an eventfd (see the top). */
typedef void *HANDLE;

/** One UTF-16 code unit. wchar_t only when it is 16 bits wide (-fshort-wchar). */
#if defined(WSMAN_USE_SHORT_WCHAR) || (defined(__SIZEOF_WCHAR_T__) && __SIZEOF_WCHAR_T__ == 2)
typedef wchar_t WCHAR;
/** Makes a string literal of WCHAR: L"..." here. */
#define WSMAN_TEXT(s) L##s
#else
typedef char16_t WCHAR;
/** Makes a string literal of WCHAR: u"..." here. */
#define WSMAN_TEXT(s) u##s
#endif
/** Pointer to a NUL-terminated UTF-16LE string. */
typedef WCHAR *PWSTR;
/** Pointer to a constant NUL-terminated UTF-16LE string. */
typedef const WCHAR *PCWSTR;

#ifndef VOID
/** Windows spells void VOID. */
#define VOID void
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
/** Calling-convention markers: empty on x86-64 Linux. */
#ifndef WINAPI
#define WINAPI
#endif
#ifndef CALLBACK
#define CALLBACK
#endif

/* MARK: - Error codes (Win32 and WSMan) */

#ifndef NO_ERROR
#define NO_ERROR 0u /**< Success. */
#endif
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5u /**< Access is denied. */
#endif
#ifndef ERROR_OUTOFMEMORY
#define ERROR_OUTOFMEMORY 14u /**< Not enough memory. */
#endif
#ifndef ERROR_INVALID_PARAMETER
#define ERROR_INVALID_PARAMETER 87u /**< A parameter is incorrect. */
#endif
#ifndef ERROR_INSUFFICIENT_BUFFER
#define ERROR_INSUFFICIENT_BUFFER 122u /**< The data area passed is too small. */
#endif
#ifndef ERROR_OPERATION_ABORTED
#define ERROR_OPERATION_ABORTED 995u /**< The operation was cancelled. */
#endif
#ifndef ERROR_SHUTDOWN_IN_PROGRESS
#define ERROR_SHUTDOWN_IN_PROGRESS 1115u /**< The host is shutting down. */
#endif

#define ERROR_WSMAN_RESOURCE_NOT_FOUND 0x80338000u            /**< No such resource. */
#define ERROR_WSMAN_PROVIDER_FAILURE 0x80338003u              /**< The plug-in failed. */
#define ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029u            /**< The deadline passed. */
#define ERROR_WSMAN_INVALID_PARAMETER 0x8033803Au             /**< Invalid WSMan parameter. */
#define ERROR_WSMAN_INVALID_RESOURCE_URI 0x8033803Bu          /**< Unknown resource URI. */
#define ERROR_WSMAN_QUOTA_LIMIT 0x8033803Fu                   /**< A quota was exceeded. */
#define ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED 0x80338048u    /**< Message too large. */
#define ERROR_WSMAN_INVALID_SELECTORS 0x8033805Bu             /**< Unknown shell/command id. */
#define ERROR_WSMAN_PLUGIN_FAILED 0x80338083u                 /**< The plug-in failed. */
#define ERROR_WSMAN_PROVIDER_LOAD_FAILED 0x8033809Au          /**< Cannot load the plug-in. */
#define ERROR_WSMAN_SHELL_ALREADY_CLOSED 0x8033814Au          /**< The shell is closed. */
#define ERROR_WSMAN_COMMAND_ALREADY_CLOSED 0x8033814Fu        /**< The command is closed. */
#define ERROR_WSMAN_INVALID_PROVIDER_RESPONSE 0x8033816Du     /**< Bad plug-in response. */
#define ERROR_WSMAN_SHELL_NOT_INITIALIZED 0x8033816Eu         /**< The shell is not ready. */
#define ERROR_WSMAN_PLUGIN_CONFIGURATION_CORRUPTED 0x80338190u /**< Bad registration. */
#define ERROR_WSMAN_FILE_NOT_PRESENT 0x80338192u              /**< The library is missing. */
#define ERROR_WSMAN_QUOTA_MAX_SHELLS 0x803381A5u              /**< Too many shells. */
#define ERROR_WSMAN_QUOTA_MAX_OPERATIONS 0x803381A6u          /**< Too many operations. */
#define ERROR_WSMAN_QUOTA_USER 0x803381A7u                    /**< Too many for this user. */
#define ERROR_WSMAN_COMMAND_TERMINATED 0x803381CCu            /**< The command was terminated. */
#define ERROR_WSMAN_SERVICE_STREAM_DISCONNECTED 0x803381DEu   /**< The stream disconnected. */
#define ERROR_WSMAN_CREATESHELL_RUNAS_FAILED 0x803381DFu      /**< RunAs user failed. */

/* MARK: - Flags and parameters */

/** ReceiveResult flags: this is the last result of the command (with state Done). */
#define WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA 1u
/** ReceiveResult flags: deliver what is buffered now. */
#define WSMAN_FLAG_RECEIVE_FLUSH 2u
/** ReceiveResult flags: the data ends a logical unit. */
#define WSMAN_FLAG_RECEIVE_RESULT_DATA_BOUNDARY 4u
/** Send flags: this is the last input of the stream. */
#define WSMAN_FLAG_SEND_NO_MORE_DATA 1u
/** Shell flags: the client requested API version 1.0. */
#define WSMAN_FLAG_REQUESTED_API_VERSION_1_0 0x0u
/** Shell flags: the client requested API version 1.1. */
#define WSMAN_FLAG_REQUESTED_API_VERSION_1_1 0x1u

/** GetOperationParameters: maximum envelope size in bytes (DWORD). */
#define WSMAN_PLUGIN_PARAMS_MAX_ENVELOPE_SIZE 1u
/** GetOperationParameters: the operation's timeout in milliseconds (DWORD). */
#define WSMAN_PLUGIN_PARAMS_TIMEOUT 2u
/** GetOperationParameters: space left for results in bytes (DWORD). */
#define WSMAN_PLUGIN_PARAMS_REMAINING_RESULT_SIZE 3u
/** GetOperationParameters: largest single result in bytes (DWORD). */
#define WSMAN_PLUGIN_PARAMS_LARGEST_RESULT_SIZE 4u
/** GetOperationParameters: the requested locale (text). */
#define WSMAN_PLUGIN_PARAMS_GET_REQUESTED_LOCALE 5u
/** GetOperationParameters: the requested data locale (text). */
#define WSMAN_PLUGIN_PARAMS_GET_REQUESTED_DATA_LOCALE 6u

/** GetConfiguration: whether the plug-in shares its host process (UseSharedProcess). */
#define WSMAN_PLUGIN_PARAMS_SHAREDHOST 1u
/** GetConfiguration: the RunAsUser setting. */
#define WSMAN_PLUGIN_PARAMS_RUNAS_USER 2u
/** GetConfiguration: the AutoRestart setting. */
#define WSMAN_PLUGIN_PARAMS_AUTORESTART 3u
/** GetConfiguration: ProcessIdleTimeoutSec (0 = none). */
#define WSMAN_PLUGIN_PARAMS_HOSTIDLETIMEOUTSECONDS 4u
/** GetConfiguration: the plug-in's registered name. */
#define WSMAN_PLUGIN_PARAMS_NAME 5u

/** Startup flags: started for a request. */
#define WSMAN_PLUGIN_STARTUP_REQUEST_RECEIVED 0x0u
/** Startup flags: restarted automatically at boot. */
#define WSMAN_PLUGIN_STARTUP_AUTORESTARTED_REBOOT 0x1u
/** Startup flags: restarted automatically after a crash. */
#define WSMAN_PLUGIN_STARTUP_AUTORESTARTED_CRASH 0x2u

/** Shutdown reason: the system is shutting down. */
#define WSMAN_PLUGIN_SHUTDOWN_SYSTEM 1u
/** Shutdown reason: the service (airlockd) is stopping or the plug-in is stopped. */
#define WSMAN_PLUGIN_SHUTDOWN_SERVICE 2u
/** Shutdown reason: the IIS host is stopping (not used by Airlock). */
#define WSMAN_PLUGIN_SHUTDOWN_IISHOST 3u
/** Shutdown reason: the process idle timeout elapsed. */
#define WSMAN_PLUGIN_SHUTDOWN_IDLETIMEOUT_ELAPSED 4u

/** The default operation timeout in milliseconds. */
#define WSMAN_DEFAULT_TIMEOUT_MS 60000u
/** WSMAN_OPERATION_INFO.version: version 1. */
#define WSMAN_OPERATION_INFOV1 0x00000000u
/** WSMAN_OPERATION_INFO.version: version 2. */
#define WSMAN_OPERATION_INFOV2 0xaabbccddu

/* MARK: - Strings (UTF-16) */

/** The namespace of the shell resource URIs. */
#define WSMAN_SHELL_NS WSMAN_TEXT("http://schemas.microsoft.com/wbem/wsman/1/windows/shell")
/** The resource URI of the Windows command shell (WinRS). */
#define WSMAN_CMDSHELL_URI WSMAN_SHELL_NS WSMAN_TEXT("/cmd")

/** Stream names. */
#define WSMAN_STREAM_ID_STDIN WSMAN_TEXT("stdin")
#define WSMAN_STREAM_ID_STDOUT WSMAN_TEXT("stdout")
#define WSMAN_STREAM_ID_STDERR WSMAN_TEXT("stderr")

/** Command states passed to WSManPluginReceiveResult. The exit code counts only with Done. */
#define WSMAN_COMMAND_STATE_DONE WSMAN_SHELL_NS WSMAN_TEXT("/CommandState/Done")
#define WSMAN_COMMAND_STATE_PENDING WSMAN_SHELL_NS WSMAN_TEXT("/CommandState/Pending")
#define WSMAN_COMMAND_STATE_RUNNING WSMAN_SHELL_NS WSMAN_TEXT("/CommandState/Running")

/** Signal codes passed to WSManPluginSignal (compare them case-insensitively). */
#define WSMAN_SIGNAL_SHELL_CODE_TERMINATE WSMAN_SHELL_NS WSMAN_TEXT("/signal/terminate")
#define WSMAN_SIGNAL_SHELL_CODE_CTRL_C WSMAN_SHELL_NS WSMAN_TEXT("/signal/ctrl_c")
#define WSMAN_SIGNAL_SHELL_CODE_CTRL_BREAK WSMAN_SHELL_NS WSMAN_TEXT("/signal/ctrl_break")

/** Options of the WinRS shell (Microsoft's names; informational for other shells). */
#define WSMAN_CMDSHELL_OPTION_CODEPAGE WSMAN_TEXT("WINRS_CODEPAGE")
#define WSMAN_SHELL_OPTION_NOPROFILE WSMAN_TEXT("WINRS_NOPROFILE")
#define WSMAN_CMDSHELL_OPTION_CONSOLEMODE_STDIN WSMAN_TEXT("WINRS_CONSOLEMODE_STDIN")
#define WSMAN_CMDSHELL_OPTION_SKIP_CMD_SHELL WSMAN_TEXT("WINRS_SKIP_CMD_SHELL")

/* MARK: - Data */

/** Text data: bufferLength counts UTF-16 code units (the buffer need not end in NUL). */
typedef struct _WSMAN_DATA_TEXT {
    DWORD bufferLength;
    PCWSTR buffer;
} WSMAN_DATA_TEXT;

/** Binary data: dataLength bytes at data. */
typedef struct _WSMAN_DATA_BINARY {
    DWORD dataLength;
    BYTE *data;
} WSMAN_DATA_BINARY;

/** Which member of WSMAN_DATA's union is valid. */
typedef enum {
    WSMAN_DATA_NONE = 0,
    WSMAN_DATA_TYPE_TEXT = 1,
    WSMAN_DATA_TYPE_BINARY = 2,
    WSMAN_DATA_TYPE_DWORD = 4
} WSManDataType;

/** A piece of data: text, binary or a number (24 bytes). */
typedef struct _WSMAN_DATA {
    WSManDataType type;
    union {
        WSMAN_DATA_TEXT text;
        WSMAN_DATA_BINARY binaryData;
        DWORD number;
    };
} WSMAN_DATA;

/* MARK: - Operation information */

/** An option of the request (name, value, whether the plug-in must comply). */
typedef struct _WSMAN_OPTION {
    PCWSTR name;
    PCWSTR value;
    BOOL mustComply;
} WSMAN_OPTION;

/** The options of a request. */
typedef struct _WSMAN_OPTION_SET {
    DWORD optionsCount;
    WSMAN_OPTION *options;
    BOOL optionsMustUnderstand;
} WSMAN_OPTION_SET;

/** A selector: key and value. */
typedef struct _WSMAN_KEY {
    PCWSTR key;
    PCWSTR value;
} WSMAN_KEY;

/** The selectors of a request. */
typedef struct _WSMAN_SELECTOR_SET {
    DWORD numberKeys;
    WSMAN_KEY *keys;
} WSMAN_SELECTOR_SET;

/** A fragment of the resource: path and dialect. */
typedef struct _WSMAN_FRAGMENT {
    PCWSTR path;
    PCWSTR dialect;
} WSMAN_FRAGMENT;

/** A filter: expression and dialect. */
typedef struct _WSMAN_FILTER {
    PCWSTR filter;
    PCWSTR dialect;
} WSMAN_FILTER;

/** What a request addresses (88 bytes). */
typedef struct _WSMAN_OPERATION_INFO {
    WSMAN_FRAGMENT fragment;
    WSMAN_FILTER filter;
    WSMAN_SELECTOR_SET selectorSet;
    WSMAN_OPTION_SET optionSet;
    void *reserved;
    DWORD version; /**< WSMAN_OPERATION_INFOV1 or WSMAN_OPERATION_INFOV2. */
} WSMAN_OPERATION_INFO;

/* MARK: - Shells and commands */

/** A set of stream names. */
typedef struct _WSMAN_STREAM_ID_SET {
    DWORD streamIDsCount;
    PCWSTR *streamIDs;
} WSMAN_STREAM_ID_SET;

/** An environment variable of a shell. */
typedef struct _WSMAN_ENVIRONMENT_VARIABLE {
    PCWSTR name;
    PCWSTR value;
} WSMAN_ENVIRONMENT_VARIABLE;

/** The environment variables of a shell. */
typedef struct _WSMAN_ENVIRONMENT_VARIABLE_SET {
    DWORD varsCount;
    WSMAN_ENVIRONMENT_VARIABLE *vars;
} WSMAN_ENVIRONMENT_VARIABLE_SET;

/** How the client wants a shell started, API 1.0 (40 bytes). Every field may be NULL. */
typedef struct _WSMAN_SHELL_STARTUP_INFO_V10 {
    WSMAN_STREAM_ID_SET *inputStreamSet;
    WSMAN_STREAM_ID_SET *outputStreamSet;
    DWORD idleTimeoutMs;
    PCWSTR workingDirectory;
    WSMAN_ENVIRONMENT_VARIABLE_SET *variableSet;
} WSMAN_SHELL_STARTUP_INFO_V10;

/** How the client wants a shell started, API 1.1: V10 plus the shell's name (48 bytes). */
typedef struct _WSMAN_SHELL_STARTUP_INFO_V11 {
    WSMAN_STREAM_ID_SET *inputStreamSet;
    WSMAN_STREAM_ID_SET *outputStreamSet;
    DWORD idleTimeoutMs;
    PCWSTR workingDirectory;
    WSMAN_ENVIRONMENT_VARIABLE_SET *variableSet;
    PCWSTR name;
} WSMAN_SHELL_STARTUP_INFO_V11;

/** Disconnect parameters of a shell (API 1.1). */
typedef struct _WSMAN_SHELL_DISCONNECT_INFO {
    DWORD idleTimeoutMs;
} WSMAN_SHELL_DISCONNECT_INFO;

/** The startup information of the API version the plug-in chose. */
#if defined(WSMAN_API_VERSION_1_1)
typedef WSMAN_SHELL_STARTUP_INFO_V11 WSMAN_SHELL_STARTUP_INFO;
#else
typedef WSMAN_SHELL_STARTUP_INFO_V10 WSMAN_SHELL_STARTUP_INFO;
#endif

/** The arguments of a command. */
typedef struct _WSMAN_COMMAND_ARG_SET {
    DWORD argsCount;
    PCWSTR *args;
} WSMAN_COMMAND_ARG_SET;

/* MARK: - Requests */

/** The client certificate, when the client authenticated with one. */
typedef struct _WSMAN_CERTIFICATE_DETAILS {
    PCWSTR subject;
    PCWSTR issuerName;
    PCWSTR issuerThumbprint;
    PCWSTR subjectName;
} WSMAN_CERTIFICATE_DETAILS;

/** Who sent the request (40 bytes). On Linux clientToken is NULL. */
typedef struct _WSMAN_SENDER_DETAILS {
    PCWSTR senderName;
    PCWSTR authenticationMechanism;
    WSMAN_CERTIFICATE_DETAILS *certificateDetails;
    HANDLE clientToken;
    PCWSTR httpURL;
} WSMAN_SENDER_DETAILS;

/**
 * One operation (56 bytes). The pointer identifies the operation in every host
 * callback; the fields stay valid until WSManPluginOperationComplete (see the top).
 */
typedef struct _WSMAN_PLUGIN_REQUEST {
    WSMAN_SENDER_DETAILS *senderDetails;
    PCWSTR locale;
    PCWSTR resourceUri;
    WSMAN_OPERATION_INFO *operationInfo;
    /** Set to TRUE by the host when the operation is cancelled. */
    volatile BOOL shutdownNotification;
    /** On Linux an eventfd, readable once the operation is cancelled (see the top). */
    HANDLE shutdownNotificationHandle;
    PCWSTR dataLocale;
} WSMAN_PLUGIN_REQUEST;

/**
 * The cancellation eventfd of a request (poll it for POLLIN; do not close it), or -1
 * when the request has none.
 */
static inline int WSManPluginShutdownNotificationFd(WSMAN_PLUGIN_REQUEST *r)
{
    if (r == NULL || r->shutdownNotificationHandle == NULL) {
        return -1;
    }
    return (int)(intptr_t)r->shutdownNotificationHandle;
}

/* MARK: - Entry points the plug-in exports (the host finds them with dlsym) */

/** WSManPluginStartup (required): set *pluginContext; NO_ERROR or an error code. */
typedef DWORD WINAPI WSMAN_PLUGIN_STARTUP(
    DWORD flags,
    PCWSTR applicationIdentification,
    PCWSTR extraInfo,
    PVOID *pluginContext);

/** WSManPluginShutdown (required): end every thread, free the plug-in context. */
typedef DWORD WINAPI WSMAN_PLUGIN_SHUTDOWN(
    PVOID pluginContext,
    DWORD flags,
    DWORD reason);

/** WSManPluginShell: report a shell context; the request stays outstanding for the shell's life. */
typedef VOID WINAPI WSMAN_PLUGIN_SHELL(
    PVOID pluginContext,
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    WSMAN_SHELL_STARTUP_INFO *startupInfo,
    WSMAN_DATA *inboundShellInformation);

/** WSManPluginCommand: report a command context; complete the request when the command ends. */
typedef VOID WINAPI WSMAN_PLUGIN_COMMAND(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID shellContext,
    PCWSTR commandLine,
    WSMAN_COMMAND_ARG_SET *arguments);

/** WSManPluginSend: input for the command (or the shell when commandContext is NULL). */
typedef VOID WINAPI WSMAN_PLUGIN_SEND(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID shellContext,
    PVOID commandContext,
    PCWSTR stream,
    WSMAN_DATA *inboundData);

/** WSManPluginReceive: deliver output with ReceiveResult, then complete. NULL/empty set = all streams. */
typedef VOID WINAPI WSMAN_PLUGIN_RECEIVE(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID shellContext,
    PVOID commandContext,
    WSMAN_STREAM_ID_SET *streamSet);

/** WSManPluginSignal: a signal code (terminate, ctrl_c, ctrl_break or plug-in defined). */
typedef VOID WINAPI WSMAN_PLUGIN_SIGNAL(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID shellContext,
    PVOID commandContext,
    PCWSTR code);

/** WSManPluginConnect (optional): reattach a client; the response goes in extendedInformation. */
typedef VOID WINAPI WSMAN_PLUGIN_CONNECT(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID shellContext,
    PVOID commandContext,
    WSMAN_DATA *inboundConnectInformation);

/** WSManPluginReleaseShellContext (optional): the shell context may be freed now. */
typedef VOID WINAPI WSMAN_PLUGIN_RELEASE_SHELL_CONTEXT(PVOID shellContext);

/** WSManPluginReleaseCommandContext (optional): the command context may be freed now. */
typedef VOID WINAPI WSMAN_PLUGIN_RELEASE_COMMAND_CONTEXT(PVOID shellContext, PVOID commandContext);

/* MARK: - Callbacks the host provides */

/** Reports the context of a Shell or Command request (flags 0). Only from those entry points. */
DWORD WINAPI WSManPluginReportContext(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PVOID context);

/**
 * Delivers one piece of a Receive's output: stream and data (both optional), the
 * command state (optional) and the exit code (counts only with WSMAN_COMMAND_STATE_DONE).
 * May block while the client is not reading (flow control).
 */
DWORD WINAPI WSManPluginReceiveResult(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    PCWSTR stream,
    WSMAN_DATA *streamResult,
    PCWSTR commandState,
    DWORD exitCode);

/**
 * Ends an operation (all but Startup/Shutdown) exactly once. After it the request
 * pointer is dead for every other host call. extendedInformation is passed to the
 * client unchanged.
 */
DWORD WINAPI WSManPluginOperationComplete(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    DWORD errorCode,
    PCWSTR extendedInformation);

/**
 * Answers a WSMAN_PLUGIN_PARAMS_* question about an operation in *data. Text answers
 * point into host memory that stays valid until the request completes.
 */
DWORD WINAPI WSManPluginGetOperationParameters(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    DWORD flags,
    WSMAN_DATA *data);

/** Answers a WSMAN_PLUGIN_PARAMS_* question about the plug-in's registration in *data. */
DWORD WINAPI WSManPluginGetConfiguration(
    PVOID pluginContext,
    DWORD flags,
    WSMAN_DATA *data);

/** Tells the host the plug-in has finished its work and may be shut down (flags 0). */
DWORD WINAPI WSManPluginReportCompletion(
    PVOID pluginContext,
    DWORD flags);

/** Frees the request's fields early; the request must still be completed. */
DWORD WINAPI WSManPluginFreeRequestDetails(WSMAN_PLUGIN_REQUEST *requestDetails);

/** A function the host calls when a request is cancelled (see the top). */
typedef void (*WSMAN_PLUGIN_SHUTDOWN_CALLBACK)(void *shutdownContext);

/**
 * Registers a function to call, with shutdownContext, when the request is cancelled
 * (PowerShell's Linux addition; see "Cancellation on Linux" at the top).
 */
void WSManPluginRegisterShutdownCallback(
    WSMAN_PLUGIN_REQUEST *requestDetails,
    WSMAN_PLUGIN_SHUTDOWN_CALLBACK shutdownCallback,
    void *shutdownContext);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* AIRLOCK_WSMAN_H */
