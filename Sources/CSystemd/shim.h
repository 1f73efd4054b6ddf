// The parts of libsystemd that Airlock uses: service notification and socket
// activation (sd-daemon), and structured logging to the journal (sd-journal).
// Provided by Debian's libsystemd-dev. Variadic functions (sd_notifyf,
// sd_journal_send) are not callable from Swift: use sd_notify and sd_journal_sendv.
#ifndef AIRLOCK_CSYSTEMD_SHIM_H
#define AIRLOCK_CSYSTEMD_SHIM_H

#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#endif
