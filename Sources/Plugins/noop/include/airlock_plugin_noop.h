/*
 * airlock_plugin_noop.h: the noop benchmark plug-in exports the WSManPlugin* entry
 * points of <wsman.h> and nothing else. SwiftPM needs a public header folder for a C
 * target; there is no API here to include.
 */
#ifndef AIRLOCK_PLUGIN_NOOP_H
#define AIRLOCK_PLUGIN_NOOP_H
#endif
