/*
 * airlock_test_hostile.h: the hostile test plug-in exports the WSManPlugin* entry points
 * of <wsman.h> and misbehaves on purpose (see hostile.c for the behaviours). SwiftPM
 * needs a public header folder for a C target; there is no API here to include.
 */
#ifndef AIRLOCK_TEST_HOSTILE_H
#define AIRLOCK_TEST_HOSTILE_H
#endif
