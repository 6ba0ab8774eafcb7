/* cpu: physical-core count from sysfs topology, with an affinity-mask fallback. */
#include "base/cpu.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CPU_MAX_CORES 4096 /* distinct (package, core) pairs remembered */

int cpu_logical_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Reads one small non-negative integer from a sysfs file; -1 when unreadable. */
static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[32];
    long v = -1;
    if (fgets(buf, sizeof buf, f)) {
        char *end;
        v = strtol(buf, &end, 10);
        if (end == buf || v < 0)
            v = -1;
    }
    fclose(f);
    return v;
}

int cpu_physical_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return cpu_logical_cpus();
    static const char fmt[] = "/sys/devices/system/cpu/cpu%d/topology/%s";
    long *keys = malloc(CPU_MAX_CORES * sizeof *keys);
    if (!keys)
        return cpu_logical_cpus();
    int n_keys = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n_keys < CPU_MAX_CORES; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        char path[128];
        snprintf(path, sizeof path, fmt, cpu, "core_id");
        long core = read_long(path);
        snprintf(path, sizeof path, fmt, cpu, "physical_package_id");
        long pkg = read_long(path);
        if (core < 0 || pkg < 0) { /* no topology: count logical CPUs instead */
            free(keys);
            return cpu_logical_cpus();
        }
        long key = pkg * 1000000L + core;
        int seen = 0;
        for (int i = 0; i < n_keys && !seen; i++)
            seen = keys[i] == key;
        if (!seen)
            keys[n_keys++] = key;
    }
    free(keys);
    return n_keys > 0 ? n_keys : cpu_logical_cpus();
}
