/*
 * airlock_plugin_echo.h: the echo example plug-in exports the WSManPlugin* entry points
 * of <wsman.h> (Startup, Shutdown, Shell, Command, Send, Receive, Signal, Connect,
 * ReleaseShellContext, ReleaseCommandContext) and nothing else. SwiftPM needs a public
 * header folder for a C target; there is no API here to include.
 */
#ifndef AIRLOCK_PLUGIN_ECHO_H
#define AIRLOCK_PLUGIN_ECHO_H
#endif
