/*
 * cpu: facts about the machine the program runs on, for choosing thread counts.
 *
 * cpu_physical_cores counts distinct physical cores (package, core id) among the CPUs
 * this process may run on, from /sys/devices/system/cpu/cpuN/topology; hyper-threads
 * share a core's arithmetic units, so a matrix product gains little from a second
 * thread on the same core (llama.cpp makes the same choice). When sysfs is missing
 * (some containers) it falls back to the CPUs the process may use.
 *
 * Threading: reentrant; reads sysfs on every call (callers cache the answer).
 */
#ifndef DS_BASE_CPU_H
#define DS_BASE_CPU_H

/* Physical cores usable by this process; always >= 1. */
int cpu_physical_cores(void);

/* Logical CPUs usable by this process (affinity mask, else online CPUs); >= 1. */
int cpu_logical_cpus(void);

#endif
