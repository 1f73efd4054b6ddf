/* The airlock-bench half of the shims: CPU affinity (GNU-only, hidden from Swift). */
#include "airlock_shims.h"

#include <sched.h>
#include <errno.h>
#include <unistd.h>

int airlock_set_cpu_affinity(pid_t tid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0) {
        if (cpu >= CPU_SETSIZE) {
            errno = EINVAL;
            return -1;
        }
        CPU_SET(cpu, &set);
    } else {
        long count = sysconf(_SC_NPROCESSORS_CONF);
        for (long i = 0; i < count && i < CPU_SETSIZE; i++) {
            CPU_SET((int)i, &set);
        }
    }
    return sched_setaffinity(tid, sizeof set, &set);
}

int airlock_cpu_affinity_count(pid_t tid)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(tid, sizeof set, &set) != 0) {
        return -1;
    }
    return CPU_COUNT(&set);
}
