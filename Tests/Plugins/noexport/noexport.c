/*
 * noexport.c: a broken plug-in that exports WSManPluginStartup and nothing else. It
 * lacks the mandatory WSManPluginShutdown and the shell entry points (Shell, Command,
 * Send, Receive, Signal), so a host must refuse to load it
 * (ERROR_WSMAN_PROVIDER_LOAD_FAILED) without calling Startup.
 */
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

DWORD WINAPI WSManPluginStartup(DWORD flags, PCWSTR applicationIdentification, PCWSTR extraInfo,
                                PVOID *pluginContext)
{
    (void)flags;
    (void)applicationIdentification;
    (void)extraInfo;
    *pluginContext = NULL;
    return NO_ERROR;
}
