/*
 * A fake libnvidia-ml.so.1 for carbonfast's tests: the NVML entry points carbonfast calls,
 * answering from a state file that the tests write and rewrite, so energy, power and errors
 * are scripted. The state file is "nvml_state" beside the library itself, so that tests in
 * one process each load their own copy with its own state. Built by the test suites with:
 *
 *     cc -shared -fPIC -o libnvidia-ml.so.1 fake_nvml.c
 *
 * State file, one statement per line:
 *     init=ok|driver_not_loaded|no_permission|...
 *     gpu <index> name=... uuid=GPU-... energy_mj=N power_mw=N limit_mw=N util=PCT
 *                 energy=ok|not_supported|no_permission|gpu_lost   (same for power=, field=)
 *                 tick_ms=N tick_mj=N   (the counter also advances tick_mj every tick_ms)
 *                 mig_uuid=MIG-...      (a MIG instance of this GPU)
 *                 delay_us=N            (each energy read takes this long, as on some VMs)
 * Values are re-read on every call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OK 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_NO_PERMISSION 4
#define ERR_NOT_FOUND 6
#define ERR_DRIVER_NOT_LOADED 9
#define ERR_GPU_IS_LOST 15
#define ERR_UNKNOWN 999
#define MAX_GPUS 16
#define MIG_BASE 100

typedef struct {
    int present;
    char name[96], uuid[96], mig_uuid[96];
    unsigned long long energy_mj;
    unsigned int power_mw, limit_mw, util;
    int energy_rc, power_rc, field_rc;
    unsigned long long tick_ms, tick_mj, delay_us;
} gpu_t;

static gpu_t gpus[MAX_GPUS];
static int init_rc;
static int initialized;
static struct timespec t0;

static int status(const char *s) {
    if (!strcmp(s, "ok")) return OK;
    if (!strcmp(s, "not_supported")) return ERR_NOT_SUPPORTED;
    if (!strcmp(s, "no_permission")) return ERR_NO_PERMISSION;
    if (!strcmp(s, "gpu_lost")) return ERR_GPU_IS_LOST;
    if (!strcmp(s, "driver_not_loaded")) return ERR_DRIVER_NOT_LOADED;
    return ERR_UNKNOWN;
}

static void load(void) {
    memset(gpus, 0, sizeof gpus);
    init_rc = OK;
    char path[4096];
    Dl_info self;
    if (!dladdr((void *)load, &self) || !self.dli_fname) return;
    snprintf(path, sizeof path, "%s", self.dli_fname);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0),
             "nvml_state");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r(line, " \t\n", &save);
        if (!tok) continue;
        if (!strncmp(tok, "init=", 5)) { init_rc = status(tok + 5); continue; }
        if (strcmp(tok, "gpu")) continue;
        tok = strtok_r(NULL, " \t\n", &save);
        int i = tok ? atoi(tok) : -1;
        if (i < 0 || i >= MAX_GPUS) continue;
        gpu_t *g = &gpus[i];
        g->present = 1;
        while ((tok = strtok_r(NULL, " \t\n", &save))) {
            char *v = strchr(tok, '=');
            if (!v) continue;
            *v++ = 0;
            if (!strcmp(tok, "name")) snprintf(g->name, sizeof g->name, "%s", v);
            else if (!strcmp(tok, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", v);
            else if (!strcmp(tok, "mig_uuid")) snprintf(g->mig_uuid, sizeof g->mig_uuid, "%s", v);
            else if (!strcmp(tok, "energy_mj")) g->energy_mj = strtoull(v, NULL, 10);
            else if (!strcmp(tok, "power_mw")) g->power_mw = (unsigned)strtoul(v, NULL, 10);
            else if (!strcmp(tok, "limit_mw")) g->limit_mw = (unsigned)strtoul(v, NULL, 10);
            else if (!strcmp(tok, "util")) g->util = (unsigned)strtoul(v, NULL, 10);
            else if (!strcmp(tok, "energy")) g->energy_rc = status(v);
            else if (!strcmp(tok, "power")) g->power_rc = status(v);
            else if (!strcmp(tok, "field")) g->field_rc = status(v);
            else if (!strcmp(tok, "tick_ms")) g->tick_ms = strtoull(v, NULL, 10);
            else if (!strcmp(tok, "tick_mj")) g->tick_mj = strtoull(v, NULL, 10);
            else if (!strcmp(tok, "delay_us")) g->delay_us = strtoull(v, NULL, 10);
        }
    }
    fclose(f);
}

/* Handles are 1-based GPU numbers, MIG handles MIG_BASE + GPU number. */
static gpu_t *dev(void *h) {
    long i = (long)h;
    if (i >= MIG_BASE) i -= MIG_BASE;
    if (i < 1 || i > MAX_GPUS) return NULL;
    load();
    return gpus[i - 1].present ? &gpus[i - 1] : NULL;
}

int nvmlInit_v2(void) {
    load();
    if (init_rc != OK) return init_rc;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    initialized = 1;
    return OK;
}

int nvmlShutdown(void) { initialized = 0; return OK; }

const char *nvmlErrorString(int rc) {
    switch (rc) {
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_NO_PERMISSION: return "Insufficient Permissions";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    case ERR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

int nvmlDeviceGetCount_v2(unsigned int *n) {
    if (!initialized) return ERR_UNINITIALIZED;
    load();
    unsigned c = 0;
    while (c < MAX_GPUS && gpus[c].present) c++;
    *n = c;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) {
    if (!initialized) return ERR_UNINITIALIZED;
    load();
    if (i >= MAX_GPUS || !gpus[i].present) return ERR_INVALID_ARGUMENT;
    *h = (void *)(long)(i + 1);
    return OK;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **h) {
    load();
    for (int i = 0; i < MAX_GPUS; i++) {
        if (!gpus[i].present) continue;
        if (!strcmp(gpus[i].uuid, uuid)) { *h = (void *)(long)(i + 1); return OK; }
        if (gpus[i].mig_uuid[0] && !strcmp(gpus[i].mig_uuid, uuid)) {
            *h = (void *)(long)(MIG_BASE + i + 1);
            return OK;
        }
    }
    return ERR_NOT_FOUND;
}

int nvmlDeviceIsMigDeviceHandle(void *h, unsigned int *is_mig) {
    *is_mig = (long)h >= MIG_BASE;
    return OK;
}

int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(void *mig, void **parent) {
    if ((long)mig < MIG_BASE) return ERR_INVALID_ARGUMENT;
    *parent = (void *)((long)mig - MIG_BASE);
    return OK;
}

int nvmlDeviceGetIndex(void *h, unsigned int *index) {
    if (!dev(h)) return ERR_INVALID_ARGUMENT;
    *index = (unsigned)((long)h % MIG_BASE) - 1;
    return OK;
}

int nvmlDeviceGetName(void *h, char *out, unsigned int n) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    snprintf(out, n, "%s", g->name[0] ? g->name : "Fake GPU");
    return OK;
}

int nvmlDeviceGetUUID(void *h, char *out, unsigned int n) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    snprintf(out, n, "%s", g->uuid);
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *mj) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (g->energy_rc != OK) return g->energy_rc;
    if (g->delay_us) {
        struct timespec d = {(time_t)(g->delay_us / 1000000), (long)(g->delay_us % 1000000) * 1000};
        nanosleep(&d, NULL);
    }
    unsigned long long e = g->energy_mj;
    if (g->tick_ms) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        unsigned long long ms = (t.tv_sec - t0.tv_sec) * 1000ULL + (t.tv_nsec - t0.tv_nsec) / 1000000;
        e += ms / g->tick_ms * g->tick_mj;
    }
    *mj = e;
    return OK;
}

int nvmlDeviceGetPowerUsage(void *h, unsigned int *mw) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (g->power_rc != OK) return g->power_rc;
    *mw = g->power_mw;
    return OK;
}

typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType, nvmlReturn;
    union { double d; unsigned int ui; unsigned long long ull; } value;
} field_value_t;

#define FI_POWER_INSTANT 186

int nvmlDeviceGetFieldValues(void *h, int count, field_value_t *values) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    for (int i = 0; i < count; i++) {
        field_value_t *v = &values[i];
        if (v->fieldId != FI_POWER_INSTANT || g->field_rc != OK || g->power_rc != OK) {
            v->nvmlReturn = v->fieldId == FI_POWER_INSTANT && g->field_rc == OK ? g->power_rc
                                                                                 : ERR_NOT_SUPPORTED;
            continue;
        }
        v->nvmlReturn = OK;
        v->valueType = 1; /* unsigned int */
        v->value.ui = g->power_mw;
    }
    return OK;
}

int nvmlDeviceGetEnforcedPowerLimit(void *h, unsigned int *mw) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (!g->limit_mw) return ERR_NOT_SUPPORTED;
    *mw = g->limit_mw;
    return OK;
}

typedef struct { unsigned int gpu, memory; } utilization_t;

int nvmlDeviceGetUtilizationRates(void *h, utilization_t *u) {
    gpu_t *g = dev(h);
    if (!g) return ERR_INVALID_ARGUMENT;
    u->gpu = g->util;
    u->memory = 0;
    return OK;
}
