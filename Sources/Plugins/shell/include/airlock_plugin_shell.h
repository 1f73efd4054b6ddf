/*
 * airlock_plugin_shell.h: the shell example plug-in exports the WSManPlugin* entry
 * points of <wsman.h> and nothing else; it runs each command with /bin/sh -c. SwiftPM
 * needs a public header folder for a C target; there is no API here to include.
 */
#ifndef AIRLOCK_PLUGIN_SHELL_H
#define AIRLOCK_PLUGIN_SHELL_H
#endif
