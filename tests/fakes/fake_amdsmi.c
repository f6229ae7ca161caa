/*
 * A fake libamd_smi.so for carbonfast's tests: the AMD SMI entry points carbonfast calls, with
 * the real ABI (include/amd_smi/amdsmi.h), answering from a state file that the tests write and
 * rewrite. The state file is "amdsmi_state" beside the library itself, so that tests in one
 * process each load their own copy with its own state. Built by the test suites with:
 *
 *     cc -shared -fPIC -o libamd_smi.so fake_amdsmi.c -lm -pthread
 *
 * State file, one statement per line:
 *     init=ok|no_perm|driver_not_loaded|...     what amdsmi_init answers
 *     init_hang=1         amdsmi_init never returns (a GPU that stopped answering)
 *     shutdown_hang=1     amdsmi_shut_down never returns
 *     count=N             amdsmi_get_socket_handles and amdsmi_get_processor_handles report N
 *                         when asked for the count (a null array), however many there are;
 *                         asked to fill an array, they still write only what there is
 *     version=26.0.0      amdsmi_get_lib_version, and the layout of the structs that changed:
 *                         26+ as ROCm 7, 25 as ROCm 6.4, 24 as ROCm 6.1-6.3 (a year first),
 *                         23 as ROCm 5.7 (average power first, then voltages)
 *     gpu <index> name=... uuid=... bdf=0000:03:00.0 type=gpu|cpu
 *                 power_w=W         the power it draws (a float)
 *                 cap_w=W           its power cap (amdsmi_get_power_cap_info), default 300
 *                 resolution_uj=R   the counter's resolution (a float), default 15.259
 *                 modulus=N         the accumulator wraps at N (0, the default: 2^64)
 *                 start=N           the accumulator's value at t0
 *                 refresh_us=N      the counter holds its value between refreshes (1000)
 *                 delay_us=N        each energy read takes this long
 *                 hip_id=N hip_uuid=GPU-...   amdsmi_get_gpu_enumeration_info (library 25 and
 *                                   later): ROCm's index and UUID, by default the GPU's place
 *                                   among the GPUs and GPU-<16 hex digits>
 *                 lost_after=N      after N more energy or power reads (counted from when
 *                                   this value first appears), every query of it answers
 *                                   AMDSMI_STATUS_NOT_FOUND, as a GPU that fell off the bus
 *                 energy=ok|not_supported|no_perm|lost|...   (same for power=, cap=, uuid=)
 *                 strings=unterminated   name and UUID fill the caller's buffer, with no NUL
 *                 strings=control        name and UUID come wrapped in terminal escapes
 *
 * Processes (amdsmi_get_gpu_process_list, amdsmi_proc_info_t as from library 25: 704 bytes):
 *     proc <gpu> pid=N busy=PCT gfx_ns=N name=...
 *                         a compute process on GPU <gpu>: its engine_usage.gfx is gfx_ns plus
 *                         PCT% of the time since t0 (the GFX engine time it has used)
 *     proc_count=N        asked for the count (max_processes 0), the list reports N however
 *                         many there are; given room, it writes what there is
 * Built with -DFAKE_AMDSMI_NO_PROCESSES, the library lacks amdsmi_get_gpu_process_list.
 *
 * Energy is computed when it is read, on CLOCK_MONOTONIC from t0 (the first amdsmi_init of this
 * copy): E(t) = power_w x (t - t0), so the truth is exact whatever the test process's
 * scheduling. The accumulator reads start + floor(E(r) / resolution) mod modulus, r the latest
 * refresh at or before the read (refreshes at t0 + k refresh_us). power_w, resolution_uj,
 * modulus, start and refresh_us are taken at a GPU's first energy or power query (so its
 * history stays exact); the others, errors included, are re-read on every call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint32_t amdsmi_status_t;
typedef void *amdsmi_processor_handle;
typedef void *amdsmi_socket_handle;

#define SUCCESS 0
#define INVAL 1
#define NOT_SUPPORTED 2
#define NO_PERM 10
#define IO 12
#define FILE_ERROR 14
#define BUSY 30
#define NOT_FOUND 31
#define NOT_INIT 32
#define DRIVER_NOT_LOADED 34
#define INSUFFICIENT_SIZE 41
#define UNKNOWN_ERROR 0xFFFFFFFFu

#define MAX_GPUS 16
#define SOCKET_BASE 0x1000
#define NS 1000000000LL

typedef struct {
    int present;
    char name[256], uuid[96], hip_uuid[96];
    long long hip_id; /* -1: its place among the GPUs */
    uint64_t bdf;
    uint32_t type;
    double power_w, cap_w;
    float resolution_uj;
    uint64_t modulus, start, refresh_us, delay_us;
    long long lost_after; /* -1: never */
    amdsmi_status_t energy_rc, power_rc, cap_rc, uuid_rc;
    int strings; /* STRINGS_* */
} gpu_t;

enum { STRINGS_OK, STRINGS_UNTERMINATED, STRINGS_CONTROL };

/* One parse of the state file. Each call parses into its own copy, so that a thread reading a
 * GPU never sees another thread's parse half done (the meter reads from background threads). */
#define MAX_PROCS 64

typedef struct {
    int gpu;
    uint32_t pid;
    double busy;
    uint64_t gfx_ns;
    char name[256];
} proc_t;

typedef struct {
    amdsmi_status_t init_rc;
    int nproc;
    long long proc_count; /* -1: the processes there are */
    proc_t proc[MAX_PROCS];
    int init_hang, shutdown_hang;
    long long count; /* -1: what there is */
    unsigned version[3];
    gpu_t gpu[MAX_GPUS];
} state_t;

/* What lives across calls: the clock's origin, each GPU's physics once it started, its reads. */
typedef struct {
    int started;
    long double power_w;
    float resolution_uj;
    uint64_t modulus, start, refresh_ns;
    uint64_t reads;
    long long lost_seen; /* the lost_after value last seen, and the read count then */
    uint64_t lost_base;
} model_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int inits;
static int64_t t0 = -1;
static model_t models[MAX_GPUS];

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * NS + t.tv_nsec;
}

static amdsmi_status_t status(const char *s) {
    if (!strcmp(s, "ok")) return SUCCESS;
    if (!strcmp(s, "inval")) return INVAL;
    if (!strcmp(s, "not_supported")) return NOT_SUPPORTED;
    if (!strcmp(s, "no_perm")) return NO_PERM;
    if (!strcmp(s, "io")) return IO;
    if (!strcmp(s, "file_error")) return FILE_ERROR;
    if (!strcmp(s, "busy")) return BUSY;
    if (!strcmp(s, "not_found") || !strcmp(s, "lost")) return NOT_FOUND;
    if (!strcmp(s, "not_init")) return NOT_INIT;
    if (!strcmp(s, "driver_not_loaded")) return DRIVER_NOT_LOADED;
    return UNKNOWN_ERROR;
}

static uint64_t parse_bdf(const char *s) {
    unsigned domain = 0, bus = 0, device = 0, function = 0;
    if (sscanf(s, "%x:%x:%x.%x", &domain, &bus, &device, &function) != 4) return 0;
    return ((uint64_t)domain << 16) | ((uint64_t)(bus & 0xff) << 8) | ((device & 0x1f) << 3) |
           (function & 0x7);
}

static void defaults(gpu_t *g, int i) {
    snprintf(g->name, sizeof g->name, "AMD Instinct MI300X");
    snprintf(g->uuid, sizeof g->uuid, "%02x000000-0000-1000-8000-00000000000%x", i, i & 0xf);
    g->bdf = parse_bdf("0000:03:00.0") + ((uint64_t)i << 8);
    g->type = 1;
    g->cap_w = 300;
    g->resolution_uj = 15.259f;
    g->refresh_us = 1000;
    g->lost_after = -1;
    g->hip_id = -1;
    snprintf(g->hip_uuid, sizeof g->hip_uuid, "GPU-%016llx", 0xc0ffee00000000ULL + (unsigned)i);
}

static void set_key(gpu_t *g, const char *k, const char *v) {
    unsigned long long n = strtoull(v, NULL, 10);
    if (!strcmp(k, "name")) snprintf(g->name, sizeof g->name, "%s", v);
    else if (!strcmp(k, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", v);
    else if (!strcmp(k, "bdf")) g->bdf = parse_bdf(v);
    else if (!strcmp(k, "type")) g->type = !strcmp(v, "cpu") ? 2 : 1;
    else if (!strcmp(k, "power_w")) g->power_w = strtod(v, NULL);
    else if (!strcmp(k, "cap_w")) g->cap_w = strtod(v, NULL);
    else if (!strcmp(k, "resolution_uj")) g->resolution_uj = strtof(v, NULL);
    else if (!strcmp(k, "modulus")) g->modulus = n;
    else if (!strcmp(k, "start")) g->start = n;
    else if (!strcmp(k, "refresh_us")) g->refresh_us = n;
    else if (!strcmp(k, "delay_us")) g->delay_us = n;
    else if (!strcmp(k, "lost_after")) g->lost_after = (long long)n;
    else if (!strcmp(k, "hip_id")) g->hip_id = (long long)n;
    else if (!strcmp(k, "hip_uuid")) snprintf(g->hip_uuid, sizeof g->hip_uuid, "%s", v);
    else if (!strcmp(k, "energy")) g->energy_rc = status(v);
    else if (!strcmp(k, "power")) g->power_rc = status(v);
    else if (!strcmp(k, "cap")) g->cap_rc = status(v);
    else if (!strcmp(k, "uuid_rc")) g->uuid_rc = status(v);
    else if (!strcmp(k, "strings"))
        g->strings = !strcmp(v, "unterminated") ? STRINGS_UNTERMINATED
                     : !strcmp(v, "control")    ? STRINGS_CONTROL
                                                : STRINGS_OK;
}

static void parse_proc(state_t *st, char **save) {
    char *tok = strtok_r(NULL, " \t\n", save);
    if (!tok || st->nproc >= MAX_PROCS) return;
    proc_t *p = &st->proc[st->nproc++];
    memset(p, 0, sizeof *p);
    p->gpu = atoi(tok);
    while ((tok = strtok_r(NULL, " \t\n", save))) {
        char *v = strchr(tok, '=');
        if (!v) continue;
        *v++ = 0;
        if (!strcmp(tok, "pid")) p->pid = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(tok, "busy")) p->busy = strtod(v, NULL);
        else if (!strcmp(tok, "gfx_ns")) p->gfx_ns = strtoull(v, NULL, 10);
        else if (!strcmp(tok, "name")) snprintf(p->name, sizeof p->name, "%s", v);
    }
}

static void load(state_t *st) {
    memset(st, 0, sizeof *st);
    st->version[0] = 26;
    st->count = -1;
    st->proc_count = -1;
    char path[4096];
    Dl_info self;
    if (!dladdr((void *)load, &self) || !self.dli_fname) return;
    snprintf(path, sizeof path, "%s", self.dli_fname);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0),
             "amdsmi_state");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r(line, " \t\n", &save);
        if (!tok) continue;
        if (!strncmp(tok, "init=", 5)) { st->init_rc = status(tok + 5); continue; }
        if (!strncmp(tok, "init_hang=", 10)) { st->init_hang = atoi(tok + 10); continue; }
        if (!strncmp(tok, "shutdown_hang=", 14)) { st->shutdown_hang = atoi(tok + 14); continue; }
        if (!strncmp(tok, "count=", 6)) { st->count = strtoll(tok + 6, NULL, 10); continue; }
        if (!strncmp(tok, "proc_count=", 11)) { st->proc_count = strtoll(tok + 11, NULL, 10); continue; }
        if (!strcmp(tok, "proc")) { parse_proc(st, &save); continue; }
        if (!strncmp(tok, "version=", 8)) {
            sscanf(tok + 8, "%u.%u.%u", &st->version[0], &st->version[1], &st->version[2]);
            continue;
        }
        if (strcmp(tok, "gpu")) continue;
        tok = strtok_r(NULL, " \t\n", &save);
        int i = tok ? atoi(tok) : -1;
        if (i < 0 || i >= MAX_GPUS) continue;
        gpu_t *g = &st->gpu[i];
        if (!g->present) defaults(g, i);
        g->present = 1;
        while ((tok = strtok_r(NULL, " \t\n", &save))) {
            char *v = strchr(tok, '=');
            if (!v) continue;
            *v++ = 0;
            set_key(g, tok, v);
        }
    }
    fclose(f);
}

static int initialized(void) {
    pthread_mutex_lock(&lock);
    int n = inits;
    pthread_mutex_unlock(&lock);
    return n > 0;
}

/* Processor handles are 1-based GPU numbers; NULL unless that GPU is in the state. */
static gpu_t *dev(amdsmi_processor_handle h, state_t *st) {
    uintptr_t i = (uintptr_t)h;
    if (i < 1 || i > MAX_GPUS) return NULL;
    load(st);
    return st->gpu[i - 1].present ? &st->gpu[i - 1] : NULL;
}

#define GPU_OR_RETURN(h, st, g)                   \
    if (!initialized()) return NOT_INIT;          \
    state_t st;                                   \
    gpu_t *g = dev(h, &st);                       \
    if (!g || g->type != 1) return INVAL;

/* Counts a read of GPU i and says whether it is lost by now. Call with the lock held. */
static int lost_now(unsigned i, const gpu_t *g, int count_it) {
    model_t *m = &models[i];
    if (count_it) m->reads++;
    if (g->lost_after < 0) return 0;
    if (m->lost_seen != g->lost_after + 1) { /* a new value: count from here */
        m->lost_seen = g->lost_after + 1;
        m->lost_base = m->reads - (count_it ? 1 : 0);
    }
    return m->reads - m->lost_base > (uint64_t)g->lost_after;
}

static model_t *model(unsigned i, const gpu_t *g) {
    model_t *m = &models[i];
    if (!m->started) {
        m->started = 1;
        m->power_w = g->power_w;
        m->resolution_uj = g->resolution_uj;
        m->modulus = g->modulus;
        m->start = g->start;
        m->refresh_ns = g->refresh_us ? g->refresh_us * 1000 : 1;
    }
    return m;
}

/* ---- Initialisation and discovery ---- */

/* Never returns, as a call into a driver that waits on a device that will not answer. */
static void hang(void) {
    for (;;) {
        struct timespec d = {3600, 0};
        nanosleep(&d, NULL);
    }
}

amdsmi_status_t amdsmi_init(uint64_t flags) {
    (void)flags;
    state_t st;
    load(&st);
    if (st.init_hang) hang();
    if (st.init_rc != SUCCESS) return st.init_rc;
    pthread_mutex_lock(&lock);
    if (t0 < 0) t0 = now_ns();
    inits++;
    pthread_mutex_unlock(&lock);
    return SUCCESS;
}

amdsmi_status_t amdsmi_shut_down(void) {
    state_t st;
    load(&st);
    if (st.shutdown_hang) hang();
    pthread_mutex_lock(&lock);
    int was = inits;
    if (inits > 0) inits--;
    pthread_mutex_unlock(&lock);
    return was > 0 ? SUCCESS : NOT_INIT;
}

/* Each GPU (or CPU) of the state sits in a socket of its own, in index order. */
amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, amdsmi_socket_handle *out) {
    if (!initialized()) return NOT_INIT;
    if (!count) return INVAL;
    state_t st;
    load(&st);
    uint32_t n = 0;
    for (unsigned i = 0; i < MAX_GPUS; i++) {
        if (!st.gpu[i].present) continue;
        if (out) {
            if (n >= *count) return INSUFFICIENT_SIZE;
            out[n] = (amdsmi_socket_handle)(uintptr_t)(SOCKET_BASE + i);
        }
        n++;
    }
    *count = !out && st.count >= 0 ? (uint32_t)st.count : n;
    return SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_handles(amdsmi_socket_handle socket, uint32_t *count,
                                             amdsmi_processor_handle *out) {
    if (!initialized()) return NOT_INIT;
    uintptr_t i = (uintptr_t)socket - SOCKET_BASE;
    if (!count || i >= MAX_GPUS) return INVAL;
    if (out) {
        if (*count < 1) return INSUFFICIENT_SIZE;
        out[0] = (amdsmi_processor_handle)(i + 1);
    }
    state_t st;
    load(&st);
    *count = !out && st.count >= 0 ? (uint32_t)st.count : 1;
    return SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_type(amdsmi_processor_handle h, uint32_t *type) {
    if (!initialized()) return NOT_INIT;
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g || !type) return INVAL;
    *type = g->type;
    return SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_bdf(amdsmi_processor_handle h, uint64_t *bdf) {
    GPU_OR_RETURN(h, st, g);
    if (!bdf) return INVAL;
    *bdf = g->bdf;
    return SUCCESS;
}

/* A name or UUID into the caller's buffer of n bytes, as the GPU's strings= key says. */
static void put_string(const gpu_t *g, char *out, unsigned n, const char *s) {
    if (!n) return;
    if (g->strings == STRINGS_UNTERMINATED) {
        size_t len = strlen(s);
        for (unsigned i = 0; i < n; i++) out[i] = len ? s[i % len] : 'X';
    } else if (g->strings == STRINGS_CONTROL) {
        snprintf(out, n, "\x1b[2J\x1b]0;%s\x07\r%s\n", s, s);
    } else {
        snprintf(out, n, "%s", s);
    }
}

amdsmi_status_t amdsmi_get_gpu_device_uuid(amdsmi_processor_handle h, unsigned int *len,
                                           char *uuid) {
    GPU_OR_RETURN(h, st, g);
    if (g->uuid_rc != SUCCESS) return g->uuid_rc;
    if (!len || !uuid) return INVAL;
    if (g->strings != STRINGS_OK) {
        put_string(g, uuid, *len, g->uuid);
        return SUCCESS;
    }
    size_t need = strlen(g->uuid) + 1;
    if (*len < need) return INSUFFICIENT_SIZE;
    memcpy(uuid, g->uuid, need);
    *len = (unsigned)need;
    return SUCCESS;
}

/* amdsmi_asic_info_t: only market_name, its first member (char[64] before library 24, then
 * char[256]), is written. */
amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_processor_handle h, void *info) {
    GPU_OR_RETURN(h, st, g);
    if (!info) return INVAL;
    size_t len = st.version[0] >= 24 ? 256 : 64;
    memset(info, 0, len);
    put_string(g, info, (unsigned)len, g->name);
    return SUCCESS;
}

/* amdsmi_enumeration_info_t: {drm_render, drm_card, hsa_id, hip_id; char hip_uuid[256]}. */
amdsmi_status_t amdsmi_get_gpu_enumeration_info(amdsmi_processor_handle h, void *info) {
    GPU_OR_RETURN(h, st, g);
    if (st.version[0] < 25) return NOT_SUPPORTED; /* the call came with ROCm 6.4 */
    if (!info) return INVAL;
    unsigned i = (unsigned)((uintptr_t)h - 1), place = 0;
    for (unsigned k = 0; k < i; k++) place += st.gpu[k].present && st.gpu[k].type == 1;
    uint32_t ids[4] = {128 + i, i, 2 + i, g->hip_id >= 0 ? (uint32_t)g->hip_id : place};
    memset(info, 0, 16 + 256);
    memcpy(info, ids, sizeof ids);
    snprintf((char *)info + 16, 256, "%s", g->hip_uuid);
    return SUCCESS;
}

/* amdsmi_version_t: {year, major, minor, release, build} up to library 24, then {major, minor,
 * release, build}; either way the build string's pointer sits at byte 16. */
amdsmi_status_t amdsmi_get_lib_version(void *out) {
    if (!out) return INVAL;
    state_t st;
    load(&st);
    uint32_t *v = out;
    v[0] = st.version[0], v[1] = st.version[1], v[2] = st.version[2], v[3] = 0;
    *(const char **)((char *)out + 16) = "fake";
    return SUCCESS;
}

/* ---- Energy, power and the power cap ---- */

amdsmi_status_t amdsmi_get_energy_count(amdsmi_processor_handle h, uint64_t *energy,
                                        float *resolution, uint64_t *timestamp) {
    GPU_OR_RETURN(h, st, g);
    unsigned i = (unsigned)((uintptr_t)h - 1);
    if (g->delay_us) {
        struct timespec d = {(time_t)(g->delay_us / 1000000), (long)(g->delay_us % 1000000) * 1000};
        while (nanosleep(&d, &d) == -1 && errno == EINTR) {}
    }
    pthread_mutex_lock(&lock);
    int lost = lost_now(i, g, 1);
    model_t *m = model(i, g);
    int64_t t = now_ns() - t0;
    pthread_mutex_unlock(&lock);
    if (lost) return NOT_FOUND;
    if (g->energy_rc != SUCCESS) return g->energy_rc;
    if (!energy || !resolution || !timestamp) return INVAL;
    int64_t r = t - t % (int64_t)m->refresh_ns; /* the latest refresh, ns after t0 */
    long double uj = m->power_w * (long double)r * 1e-3L;
    unsigned __int128 count = (unsigned __int128)m->start + (uint64_t)floorl(uj / m->resolution_uj);
    *energy = m->modulus ? (uint64_t)(count % m->modulus) : (uint64_t)count;
    *resolution = m->resolution_uj;
    *timestamp = (uint64_t)(t0 + r);
    return SUCCESS;
}

/* amdsmi_power_info_t in the layout of the version declared (see the state's version=). Power
 * is in whole watts; fields a GPU does not support are all ones, as ROCm 7 documents. */
amdsmi_status_t amdsmi_get_power_info(amdsmi_processor_handle h, void *info) {
    GPU_OR_RETURN(h, st, g);
    unsigned i = (unsigned)((uintptr_t)h - 1);
    pthread_mutex_lock(&lock);
    int lost = lost_now(i, g, 1);
    model_t *m = model(i, g);
    pthread_mutex_unlock(&lock);
    if (lost) return NOT_FOUND;
    if (g->power_rc != SUCCESS) return g->power_rc;
    if (!info) return INVAL;
    uint32_t w = (uint32_t)llroundl(m->power_w), cap = (uint32_t)llround(g->cap_w), mv = 850;
    char *p = info;
    unsigned major = st.version[0];
    if (major >= 26) { /* u64 socket, u32 current, u32 average, u64 voltages x3, u32 limit */
        memset(p, 0, 192);
        uint64_t socket = w, volts = mv;
        uint32_t current = w, average = UINT32_MAX;
        memcpy(p, &socket, 8);
        memcpy(p + 8, &current, 4);
        memcpy(p + 12, &average, 4);
        for (int k = 0; k < 3; k++) memcpy(p + 16 + 8 * k, &volts, 8);
        memcpy(p + 40, &cap, 4);
    } else if (major == 25) { /* u64 socket (host only), u32 current, u32 average, u32 x4 */
        memset(p, 0, 40);
        uint32_t current = w, average = w;
        memcpy(p + 8, &current, 4);
        memcpy(p + 12, &average, 4);
        for (int k = 0; k < 3; k++) memcpy(p + 16 + 4 * k, &mv, 4);
        memcpy(p + 28, &cap, 4);
    } else if (major == 24) { /* u32 current, u32 average, u32 voltages x3, u32 limit */
        memset(p, 0, 68);
        uint32_t current = 0, average = w; /* a Navi or MI200: no current power */
        memcpy(p, &current, 4);
        memcpy(p + 4, &average, 4);
        for (int k = 0; k < 3; k++) memcpy(p + 8 + 4 * k, &mv, 4);
        memcpy(p + 20, &cap, 4);
    } else { /* 23: u32 average, u32 voltages x3, u32 limit */
        memset(p, 0, 64);
        memcpy(p, &w, 4);
        for (int k = 0; k < 3; k++) memcpy(p + 4 + 4 * k, &mv, 4);
        memcpy(p + 16, &cap, 4);
    }
    return SUCCESS;
}

/* amdsmi_power_cap_info_t: {power_cap, default_power_cap, dpm_cap, min, max (uW), reserved}. */
amdsmi_status_t amdsmi_get_power_cap_info(amdsmi_processor_handle h, uint32_t sensor,
                                          void *info) {
    GPU_OR_RETURN(h, st, g);
    if (g->cap_rc != SUCCESS) return g->cap_rc;
    if (!info || sensor != 0) return INVAL;
    uint64_t cap[8] = {0};
    cap[0] = cap[1] = cap[4] = (uint64_t)llround(g->cap_w * 1e6);
    memcpy(info, cap, sizeof cap);
    return SUCCESS;
}

amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t rc, const char **out) {
    if (!out) return INVAL;
    switch (rc) {
    case SUCCESS: *out = "AMDSMI_STATUS_SUCCESS: Call succeeded"; break;
    case INVAL: *out = "AMDSMI_STATUS_INVAL: Invalid parameters"; break;
    case NOT_SUPPORTED: *out = "AMDSMI_STATUS_NOT_SUPPORTED: Command not supported"; break;
    case NO_PERM: *out = "AMDSMI_STATUS_NO_PERM: Permission Denied"; break;
    case IO: *out = "AMDSMI_STATUS_IO: I/O Error"; break;
    case FILE_ERROR: *out = "AMDSMI_STATUS_FILE_ERROR: Problem accessing a file"; break;
    case BUSY: *out = "AMDSMI_STATUS_BUSY: Device busy"; break;
    case NOT_FOUND: *out = "AMDSMI_STATUS_NOT_FOUND: Device Not found"; break;
    case NOT_INIT: *out = "AMDSMI_STATUS_NOT_INIT: Device not initialized"; break;
    case DRIVER_NOT_LOADED: *out = "AMDSMI_STATUS_DRIVER_NOT_LOADED: Processor driver not loaded"; break;
    default: *out = "AMDSMI_STATUS_UNKNOWN_ERROR: An unknown error occurred"; break;
    }
    return SUCCESS;
}

/* ---- Processes ---- */

#ifndef FAKE_AMDSMI_NO_PROCESSES
#define OUT_OF_RESOURCES 15

typedef struct {
    char name[256];
    uint32_t pid;
    uint64_t mem;
    struct {
        uint64_t gfx, enc;
        uint32_t reserved[12];
    } engine_usage; /* ns */
    struct {
        uint64_t gtt_mem, cpu_mem, vram_mem;
        uint32_t reserved[10];
    } memory_usage;
    char container_name[256];
    uint32_t cu_occupancy, evicted_time, reserved[10];
} amdsmi_proc_info_t; /* library 25 and later */

_Static_assert(sizeof(amdsmi_proc_info_t) == 704, "amdsmi_proc_info_t is 704 bytes");

amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_processor_handle h, uint32_t *max_processes,
                                            amdsmi_proc_info_t *list) {
    GPU_OR_RETURN(h, st, g);
    if (!max_processes) return INVAL;
    int gi = (int)(g - st.gpu);
    uint32_t n = 0;
    for (int i = 0; i < st.nproc; i++) n += st.proc[i].gpu == gi;
    if (*max_processes == 0 || n == 0) {
        *max_processes = st.proc_count >= 0 ? (uint32_t)st.proc_count : n;
        return SUCCESS;
    }
    if (!list) return INVAL;
    pthread_mutex_lock(&lock);
    int64_t since_t0 = t0 < 0 ? 0 : now_ns() - t0;
    pthread_mutex_unlock(&lock);
    uint32_t room = *max_processes, k = 0;
    for (int i = 0; i < st.nproc && k < room; i++) {
        const proc_t *p = &st.proc[i];
        if (p->gpu != gi) continue;
        amdsmi_proc_info_t *e = &list[k++];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", p->name[0] ? p->name : "python3");
        e->pid = p->pid;
        e->mem = 1ULL << 30;
        e->engine_usage.gfx = p->gfx_ns + (uint64_t)(p->busy / 100.0 * (double)since_t0);
        e->memory_usage.vram_mem = 1ULL << 30;
    }
    *max_processes = n;
    return room >= n ? SUCCESS : OUT_OF_RESOURCES;
}
#endif

/* ---- For the tests (ctypes and libloading) ---- */

/* How many amdsmi_init calls are not yet matched by a shut-down. */
int fake_amdsmi_live_inits(void) {
    pthread_mutex_lock(&lock);
    int n = inits;
    pthread_mutex_unlock(&lock);
    return n;
}

/* CLOCK_MONOTONIC ns of t0, or -1 before the first amdsmi_init. */
long long fake_amdsmi_t0_ns(void) {
    pthread_mutex_lock(&lock);
    long long t = t0;
    pthread_mutex_unlock(&lock);
    return t;
}
