/*
 * wsman.c: the one translation unit SwiftPM needs for the CWSMan target.
 *
 * CWSMan is the header <wsman.h> alone. The host callbacks it declares
 * (WSManPluginReportContext, ...) are deliberately NOT defined here: the host
 * executable (airlock-worker) defines and exports them, and plug-ins resolve them
 * from it when they are loaded. This file only checks the layouts at compile time.
 */
#define WSMAN_API_VERSION_1_1
#include <wsman.h>

#define AIRLOCK_ASSERT_LAYOUT(expr) _Static_assert(expr, #expr)

AIRLOCK_ASSERT_LAYOUT(sizeof(DWORD) == 4 && sizeof(BOOL) == 4 && sizeof(WCHAR) == 2);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_DATA) == 24);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_OPERATION_INFO) == 88);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_SHELL_STARTUP_INFO_V10) == 40);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_SHELL_STARTUP_INFO_V11) == 48);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_SENDER_DETAILS) == 40);
AIRLOCK_ASSERT_LAYOUT(sizeof(WSMAN_PLUGIN_REQUEST) == 56);
AIRLOCK_ASSERT_LAYOUT(offsetof(WSMAN_PLUGIN_REQUEST, shutdownNotification) == 32);
AIRLOCK_ASSERT_LAYOUT(offsetof(WSMAN_PLUGIN_REQUEST, shutdownNotificationHandle) == 40);
