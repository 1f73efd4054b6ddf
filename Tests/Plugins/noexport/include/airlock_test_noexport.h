/*
 * airlock_test_noexport.h: the noexport test plug-in exports WSManPluginStartup only.
 * SwiftPM needs a public header folder for a C target; there is no API here to include.
 */
#ifndef AIRLOCK_TEST_NOEXPORT_H
#define AIRLOCK_TEST_NOEXPORT_H
#endif
