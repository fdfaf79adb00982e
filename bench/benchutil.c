/* benchutil.c — see benchutil.h. */
#define _POSIX_C_SOURCE 200809L
#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KVT_GIT_COMMIT
#define KVT_GIT_COMMIT "unknown"
#endif

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

void bu_header(int argc, char **argv)
{
    char cpu[128];
    cpu_model(cpu, sizeof cpu);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30);
    const char *commit = getenv("KVT_COMMIT") ? getenv("KVT_COMMIT") : KVT_GIT_COMMIT;
    printf("# %s commit=%s machine=\"%s, %ld cores, %.0f GiB\" args=", argv[0], commit, cpu,
           cores, mem);
    for (int i = 1; i < argc; i++)
        printf("%s%s", i > 1 ? " " : "", argv[i]);
    printf("\n");
}

uint64_t bu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bu_quantile(double *xs, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(xs, n, sizeof *xs, cmp_double);
    size_t i = (size_t)(q * (double)n);
    if (i >= n)
        i = n - 1;
    return xs[i];
}

int bu_flag(int argc, char **argv, const char *flag)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0)
            return 1;
    return 0;
}

long long bu_opt(int argc, char **argv, const char *name, long long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return strtoll(argv[i + 1], NULL, 0);
    return def;
}

void bu_sink(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
