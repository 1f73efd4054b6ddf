#!/bin/sh
# The linker of the C plug-in products (Package.swift: cPluginLinking). SwiftPM links
# every dynamic library with swiftc, which adds -lswiftCore ahead of any flag a target
# can pass; --as-needed in front drops it again, since a C plug-in uses none of it.
# (airlock-worker has the Swift runtime linked in statically; a plug-in that needed
# libswiftCore.so would fail to load inside the sandbox.)
exec /usr/bin/ld.gold --as-needed "$@"
