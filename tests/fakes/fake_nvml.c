/*
 * A fake libnvidia-ml.so.1 for carbonfast's tests: the NVML entry points carbonfast calls,
 * answering from a state file that the tests write and rewrite, so energy, power and errors
 * are scripted. The state file is "nvml_state" beside the library itself, so that tests in
 * one process each load their own copy with its own state. Built by the test suites with:
 *
 *     cc -shared -fPIC -o libnvidia-ml.so.1 fake_nvml.c -lm -pthread
 *
 * State file, one statement per line:
 *     init=ok|driver_not_loaded|no_permission|...
 *     init=segv|exit        (nvmlInit_v2 crashes the process, or calls _exit(3), as broken
 *                            driver installs have been seen to)
 *     init_hang=1          nvmlInit_v2 never returns (a GPU fallen off the bus, Xid 79)
 *     shutdown_hang=1      nvmlShutdown never returns
 *     shutdown_segv=1      nvmlShutdown crashes the process (as at exit on broken installs)
 *     count=N              nvmlDeviceGetCount_v2 reports N devices, however many there are
 *     gpu <index> name=... uuid=GPU-... energy_mj=N power_mw=N limit_mw=N util=PCT
 *                 energy=ok|not_supported|no_permission|gpu_lost   (same for power=, field=)
 *                 strings=unterminated  name and UUID fill the caller's buffer, with no NUL
 *                 strings=control       name and UUID come wrapped in terminal escapes
 *                 tick_ms=N tick_mj=N   (the counter also advances tick_mj every tick_ms)
 *                 mig_uuid=MIG-...      (a MIG instance of this GPU)
 *                 delay_us=N            (each energy read takes this long, as on some VMs)
 *                 energy_hang_after_ms=N (from N ms after nvmlInit_v2, an energy read never
 *                                        returns: a GPU fallen off the bus, Xid 79)
 *                 lost_after_ms=N       (from N ms after nvmlInit_v2, energy and power reads
 *                                        answer GPU_IS_LOST)
 *                 segv_after_ms=N       (from N ms after nvmlInit_v2, an energy read crashes
 *                                        the process)
 * Values are re-read on every call.
 *
 * Processes on the GPUs (nvmlDeviceGetComputeRunningProcesses_v3, nvmlDeviceGetProcessUtilization):
 *     proc <gpu> pid=N sm=PCT samples=K compute=1|0
 *                          a process on GPU <gpu>: a compute process unless compute=0 (a
 *                          graphics client, or one that has exited but left samples); with
 *                          samples=K (default 1 where sm= is given, else 0) it has K samples of
 *                          SM utilisation PCT, stamped (wall-clock microseconds, as NVML's) every
 *                          sample_us back from now, the newest sample_us/2 ago
 *     sample_us=N          the sampling period (default 166667, NVML's 1/6 s)
 *     proc_count=N         asked for the count (a null array), the process list reports N
 *                          however many there are; given an array, it writes what there is
 *     procs=not_supported  both process calls answer NOT_SUPPORTED
 * Built with -DFAKE_NVML_NO_PROCESSES, the library has neither process call, as older drivers.
 *
 * The H100 model, for a GPU whose line has model=h100. A scripted counter cannot show what a
 * meter meets on a real H100: the energy counter refreshes only every ~100 ms (gaps 97-101 ms),
 * one read of it takes ~3.3 ms, and reported power moves only at those refreshes and lags the
 * load. The model simulates that timing against an exactly known truth. Keys (defaults):
 *     model=h100 refresh_us=100000 jitter_us=2000 idle_mw=70000 busy_mw=700000 tau_us=20000
 *     noise_pct=10 noise_us=50000 delay_us=3300 latch=random|start|end seed=1
 * energy_mj stays the counter's base; power_mw and tick_* are not used; the error keys work.
 * On CLOCK_MONOTONIC from t0 (the first nvmlInit_v2, or the model's first use):
 *     load L(t) is 1 inside busy stretches declared by fake_nvml_enqueue (a queue, as a CUDA
 *       stream: a kernel starts at max(now, busy_until)), so it never depends on how the test
 *       process happens to be scheduled;
 *     lagged activity ds/dt = (L - s) / tau, s(t0) = 0;
 *     noise m(t) = 1 + noise_pct/100 * u_k, u_k in [-1, 1] hashed from (seed, gpu, k), constant
 *       on [t0 + k noise_us, t0 + (k+1) noise_us);
 *     power P = m (idle + (busy - idle) s), true energy E = its exact integral from t0;
 *     refreshes r_k = t0 + k refresh_us + j_k, j_k uniform in +-jitter_us (kept under half the
 *       refresh), r_0 = t0.
 * nvmlDeviceGetTotalEnergyConsumption takes delay_us and returns energy_mj + floor(E(r) in mJ),
 * r the latest refresh at or before the instant it latches (entry, exit or uniformly between);
 * nvmlDeviceGetPowerUsage is the mean power over the last completed refresh interval and the
 * POWER_INSTANT field P at the latest refresh (both P(t0) before the first refresh).
 * The physics keys are taken when the model starts, so that its history stays exact; energy_mj,
 * delay_us, latch and the error keys are re-read on every call. The fake_nvml_* functions at
 * the end drive and inspect the model (for ctypes and libloading); on a GPU without the model
 * they do nothing and return NaN or -1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

enum { LATCH_RANDOM, LATCH_START, LATCH_END };

typedef struct {
    int present;
    char name[96], uuid[96], mig_uuid[96];
    int strings; /* STRINGS_* */
    unsigned long long energy_mj;
    unsigned int power_mw, limit_mw, util;
    int energy_rc, power_rc, field_rc;
    unsigned long long tick_ms, tick_mj, delay_us, hang_after_ms, lost_after_ms, segv_after_ms;
    /* The H100 model's keys; delay_set tells a delay_us=0 from none (the model's default). */
    int model, latch, delay_set;
    unsigned long long refresh_us, jitter_us, idle_mw, busy_mw, tau_us, noise_pct, noise_us, seed;
} gpu_t;

/* One parse of the state file. Each call parses into its own copy, so that a thread reading a
 * GPU never sees another thread's parse half done (the meter reads from background threads). */
#define MAX_PROCS 64

typedef struct {
    int gpu;
    unsigned pid, sm, samples, compute;
} proc_t;

typedef struct {
    int init_rc, init_crash;
    int nproc, procs_rc;
    long long proc_count; /* -1: the processes there are */
    unsigned long long sample_us;
    proc_t proc[MAX_PROCS];
    int init_hang, shutdown_hang, shutdown_segv;
    long long count; /* -1: the GPUs there are */
    gpu_t gpu[MAX_GPUS];
} state_t;

enum { STRINGS_OK, STRINGS_UNTERMINATED, STRINGS_CONTROL };

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

static void model_defaults(gpu_t *g) {
    g->refresh_us = 100000;
    g->jitter_us = 2000;
    g->idle_mw = 70000;
    g->busy_mw = 700000;
    g->tau_us = 20000;
    g->noise_pct = 10;
    g->noise_us = 50000;
    g->seed = 1;
    g->latch = LATCH_RANDOM;
}

static void set_key(gpu_t *g, const char *k, const char *v) {
    unsigned long long n = strtoull(v, NULL, 10);
    if (!strcmp(k, "name")) snprintf(g->name, sizeof g->name, "%s", v);
    else if (!strcmp(k, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", v);
    else if (!strcmp(k, "mig_uuid")) snprintf(g->mig_uuid, sizeof g->mig_uuid, "%s", v);
    else if (!strcmp(k, "strings"))
        g->strings = !strcmp(v, "unterminated") ? STRINGS_UNTERMINATED
                     : !strcmp(v, "control")    ? STRINGS_CONTROL
                                                : STRINGS_OK;
    else if (!strcmp(k, "energy_mj")) g->energy_mj = n;
    else if (!strcmp(k, "power_mw")) g->power_mw = (unsigned)n;
    else if (!strcmp(k, "limit_mw")) g->limit_mw = (unsigned)n;
    else if (!strcmp(k, "util")) g->util = (unsigned)n;
    else if (!strcmp(k, "energy")) g->energy_rc = status(v);
    else if (!strcmp(k, "power")) g->power_rc = status(v);
    else if (!strcmp(k, "field")) g->field_rc = status(v);
    else if (!strcmp(k, "tick_ms")) g->tick_ms = n;
    else if (!strcmp(k, "tick_mj")) g->tick_mj = n;
    else if (!strcmp(k, "delay_us")) { g->delay_us = n; g->delay_set = 1; }
    else if (!strcmp(k, "energy_hang_after_ms")) g->hang_after_ms = n + 1;
    else if (!strcmp(k, "lost_after_ms")) g->lost_after_ms = n + 1;
    else if (!strcmp(k, "segv_after_ms")) g->segv_after_ms = n + 1;
    else if (!strcmp(k, "model")) g->model = !strcmp(v, "h100");
    else if (!strcmp(k, "refresh_us")) g->refresh_us = n;
    else if (!strcmp(k, "jitter_us")) g->jitter_us = n;
    else if (!strcmp(k, "idle_mw")) g->idle_mw = n;
    else if (!strcmp(k, "busy_mw")) g->busy_mw = n;
    else if (!strcmp(k, "tau_us")) g->tau_us = n;
    else if (!strcmp(k, "noise_pct")) g->noise_pct = n;
    else if (!strcmp(k, "noise_us")) g->noise_us = n;
    else if (!strcmp(k, "seed")) g->seed = n;
    else if (!strcmp(k, "latch"))
        g->latch = !strcmp(v, "start") ? LATCH_START : !strcmp(v, "end") ? LATCH_END : LATCH_RANDOM;
}

static void parse_proc(state_t *st, char **save) {
    char *tok = strtok_r(NULL, " \t\n", save);
    if (!tok || st->nproc >= MAX_PROCS) return;
    proc_t *p = &st->proc[st->nproc++];
    memset(p, 0, sizeof *p);
    p->gpu = atoi(tok);
    p->compute = 1;
    int samples_set = 0, sm_set = 0;
    while ((tok = strtok_r(NULL, " \t\n", save))) {
        char *v = strchr(tok, '=');
        if (!v) continue;
        *v++ = 0;
        unsigned n = (unsigned)strtoul(v, NULL, 10);
        if (!strcmp(tok, "pid")) p->pid = n;
        else if (!strcmp(tok, "sm")) { p->sm = n; sm_set = 1; }
        else if (!strcmp(tok, "samples")) { p->samples = n; samples_set = 1; }
        else if (!strcmp(tok, "compute")) p->compute = n;
    }
    if (!samples_set) p->samples = sm_set ? 1 : 0;
}

static void load(state_t *st) {
    memset(st, 0, sizeof *st);
    st->init_rc = OK;
    st->count = -1;
    st->proc_count = -1;
    st->sample_us = 166667;
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
        if (!strncmp(tok, "init=", 5)) {
            st->init_rc = status(tok + 5);
            st->init_crash = !strcmp(tok + 5, "segv") ? 1 : !strcmp(tok + 5, "exit") ? 2 : 0;
            continue;
        }
        if (!strncmp(tok, "init_hang=", 10)) { st->init_hang = atoi(tok + 10); continue; }
        if (!strncmp(tok, "shutdown_hang=", 14)) { st->shutdown_hang = atoi(tok + 14); continue; }
        if (!strncmp(tok, "shutdown_segv=", 14)) { st->shutdown_segv = atoi(tok + 14); continue; }
        if (!strncmp(tok, "count=", 6)) { st->count = strtoll(tok + 6, NULL, 10); continue; }
        if (!strncmp(tok, "proc_count=", 11)) { st->proc_count = strtoll(tok + 11, NULL, 10); continue; }
        if (!strncmp(tok, "sample_us=", 10)) { st->sample_us = strtoull(tok + 10, NULL, 10); continue; }
        if (!strncmp(tok, "procs=", 6)) { st->procs_rc = status(tok + 6); continue; }
        if (!strcmp(tok, "proc")) { parse_proc(st, &save); continue; }
        if (strcmp(tok, "gpu")) continue;
        tok = strtok_r(NULL, " \t\n", &save);
        int i = tok ? atoi(tok) : -1;
        if (i < 0 || i >= MAX_GPUS) continue;
        gpu_t *g = &st->gpu[i];
        if (!g->present) model_defaults(g);
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

/* Handles are 1-based GPU numbers, MIG handles MIG_BASE + GPU number. */
static gpu_t *dev(void *h, state_t *st) {
    long i = (long)h;
    if (i >= MIG_BASE) i -= MIG_BASE;
    if (i < 1 || i > MAX_GPUS) return NULL;
    load(st);
    return st->gpu[i - 1].present ? &st->gpu[i - 1] : NULL;
}

/* ---- The H100 model (see the header) ---- */

#define NS 1000000000LL
#define DEFAULT_DELAY_US 3300
/* A query walks the noise segments of one piece of history; long pieces are split this often. */
#define CHECKPOINT_NS NS

/* A stretch of history over which the load is constant. Times are ns since the model's t0. */
typedef struct {
    int64_t t;        /* where the piece starts */
    int load;         /* L over the piece */
    long double s, e; /* lagged activity and true energy (J) at t */
} piece_t;

typedef struct {
    int started;
    unsigned gpu;
    int64_t t0;                              /* CLOCK_MONOTONIC ns */
    int64_t refresh, jitter, tau, noise_len; /* ns */
    long double idle_w, busy_w, noise;       /* noise as a fraction */
    uint64_t seed, rng;
    int64_t busy_until; /* end of the last busy stretch; -1 before the first kernel */
    piece_t *piece;     /* sorted by t, piece[0] at t0; only the last may lie in the future */
    size_t n, cap;
} model_t;

/* Outside state_t: the model lives across the re-reads of the state file. */
static model_t models[MAX_GPUS];
static pthread_mutex_t model_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * NS + t.tv_nsec;
}

static void sleep_until(int64_t t) {
    struct timespec ts = {(time_t)(t / NS), (long)(t % NS)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* splitmix64's mixer: deterministic noise and jitter from (seed, gpu, stream, k). */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

enum { STREAM_NOISE = 1, STREAM_JITTER = 2, STREAM_LATCH = 3 };

static uint64_t hash(const model_t *m, uint64_t stream, int64_t k) {
    return mix(m->seed ^ mix(m->gpu ^ mix(stream ^ mix((uint64_t)k))));
}

static long double unit(uint64_t h) { return (long double)(h >> 11) * 0x1p-53L; } /* [0, 1) */

static long double multiplier(const model_t *m, int64_t t) {
    int64_t k = m->noise_len ? t / m->noise_len : 0;
    return 1 + m->noise * (2 * unit(hash(m, STREAM_NOISE, k)) - 1);
}

static int64_t segment_end(const model_t *m, int64_t t) {
    return m->noise_len ? (t / m->noise_len + 1) * m->noise_len : INT64_MAX;
}

/* The state at t >= p.t inside piece p. L is constant there and m on each noise segment, so on
 * each segment s = L + (s0 - L) e^(-dt/tau) and its integral have closed forms: exact energy. */
static piece_t evolve(const model_t *m, piece_t p, int64_t t) {
    long double tau = m->tau * 1e-9L;
    while (p.t < t) {
        int64_t end = segment_end(m, p.t);
        if (end > t) end = t;
        long double dt = (end - p.t) * 1e-9L;
        long double gone = tau > 0 ? -expm1l(-dt / tau) : 1; /* 1 - e^(-dt/tau), no cancellation */
        long double s_integral = p.load * dt + (p.s - p.load) * tau * gone;
        p.e += multiplier(m, p.t) * (m->idle_w * dt + (m->busy_w - m->idle_w) * s_integral);
        p.s += (p.load - p.s) * gone;
        p.t = end;
    }
    return p;
}

static size_t find(const model_t *m, int64_t t) { /* the last piece starting at or before t */
    size_t lo = 0, hi = m->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->piece[mid].t <= t) lo = mid;
        else hi = mid;
    }
    return lo;
}

static piece_t state_at(const model_t *m, int64_t t) {
    if (t < 0) t = 0;
    return evolve(m, m->piece[find(m, t)], t);
}

static long double power(const model_t *m, int64_t t) {
    piece_t p = state_at(m, t);
    return multiplier(m, p.t) * (m->idle_w + (m->busy_w - m->idle_w) * p.s);
}

static void insert(model_t *m, size_t i, piece_t p) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        piece_t *grown = realloc(m->piece, cap * sizeof *grown);
        if (!grown) abort(); /* a test fake: no memory is no test */
        m->piece = grown;
        m->cap = cap;
    }
    memmove(&m->piece[i + 1], &m->piece[i], (m->n - i) * sizeof *m->piece);
    m->piece[i] = p;
    m->n++;
}

/* Splits a long piece at a past noise boundary, so that queries stay cheap however long the
 * device idles. The split changes no value: the new piece continues the same trajectory. */
static void checkpoint(model_t *m, int64_t now) {
    int64_t c = m->noise_len ? now - now % m->noise_len : now;
    size_t i = find(m, c);
    if (c - m->piece[i].t >= CHECKPOINT_NS) insert(m, i + 1, evolve(m, m->piece[i], c));
}

/* A kernel of dur ns, queued at now: it runs from max(now, busy_until). Only the future changes,
 * so every value already read stays true. */
static void enqueue(model_t *m, int64_t now, int64_t dur) {
    if (dur <= 0) return;
    if (m->busy_until >= now) { /* joins the running stretch: its ending piece moves later */
        m->busy_until += dur;
        piece_t end = evolve(m, m->piece[m->n - 2], m->busy_until);
        end.load = 0;
        m->piece[m->n - 1] = end;
        return;
    }
    piece_t busy = state_at(m, now);
    busy.load = 1;
    insert(m, m->n, busy);
    m->busy_until = now + dur;
    piece_t end = evolve(m, busy, m->busy_until);
    end.load = 0;
    insert(m, m->n, end);
}

static int64_t refresh_at(const model_t *m, int64_t k) { /* r_k; r_0 = t0 */
    if (k <= 0) return 0;
    uint64_t span = 2 * (uint64_t)m->jitter + 1;
    return k * m->refresh + (int64_t)(hash(m, STREAM_JITTER, k) % span) - m->jitter;
}

/* k of the latest refresh at or before t. The jitter is under half the period, so none after
 * t / refresh + 1 can be at or before t. */
static int64_t latest_refresh(const model_t *m, int64_t t) {
    if (t < 0) return 0;
    int64_t k = t / m->refresh + 1;
    while (k > 0 && refresh_at(m, k) > t) k--;
    return k;
}

static void start(model_t *m, unsigned gpu, const gpu_t *g, int64_t now) {
    memset(m, 0, sizeof *m);
    m->started = 1;
    m->gpu = gpu;
    m->t0 = now;
    m->refresh = (int64_t)(g->refresh_us ? g->refresh_us : 100000) * 1000;
    m->jitter = (int64_t)g->jitter_us * 1000;
    if (m->jitter > (m->refresh - 1) / 2) m->jitter = (m->refresh - 1) / 2; /* keeps r_k ordered */
    m->tau = (int64_t)g->tau_us * 1000;
    m->noise_len = (int64_t)g->noise_us * 1000;
    m->idle_w = g->idle_mw * 1e-3L;
    m->busy_w = g->busy_mw * 1e-3L;
    m->noise = (g->noise_pct < 100 ? g->noise_pct : 100) * 1e-2L; /* power stays >= 0 */
    m->seed = g->seed;
    m->rng = hash(m, STREAM_LATCH, 0);
    m->busy_until = -1;
    insert(m, 0, (piece_t){0, 0, 0, 0});
}

/* The model of GPU i, started at now on first use. Call with model_lock held. */
static model_t *model(unsigned i, const gpu_t *g, int64_t now) {
    model_t *m = &models[i];
    if (!m->started) start(m, i, g, now);
    checkpoint(m, now - m->t0);
    return m;
}

/* For the fake_nvml_* functions: the locked model of gpu, or NULL (unlocked) without one. */
static model_t *acquire(unsigned gpu, int64_t now) {
    state_t st;
    load(&st);
    if (gpu >= MAX_GPUS || !st.gpu[gpu].present || !st.gpu[gpu].model) return NULL;
    pthread_mutex_lock(&model_lock);
    return model(gpu, &st.gpu[gpu], now);
}

static void release(void) { pthread_mutex_unlock(&model_lock); }

static int64_t latch_offset(model_t *m, int latch, int64_t delay) {
    if (latch == LATCH_START || delay <= 0) return 0;
    if (latch == LATCH_END) return delay;
    m->rng = mix(m->rng);
    return (int64_t)(m->rng % (uint64_t)(delay + 1));
}

static unsigned long long model_energy_mj(unsigned i, const gpu_t *g) {
    int64_t entry = now_ns();
    int64_t delay = (int64_t)(g->delay_set ? g->delay_us : DEFAULT_DELAY_US) * 1000;
    pthread_mutex_lock(&model_lock);
    model_t *m = model(i, g, entry);
    int64_t latch = entry - m->t0 + latch_offset(m, g->latch, delay);
    pthread_mutex_unlock(&model_lock);
    sleep_until(entry + delay); /* the read's cost; unlocked, so that other threads go on */
    pthread_mutex_lock(&model_lock);
    long double e = state_at(m, refresh_at(m, latest_refresh(m, latch))).e;
    pthread_mutex_unlock(&model_lock);
    return g->energy_mj + (unsigned long long)floorl(e * 1000);
}

/* Instant: P at the latest refresh. Otherwise the mean over the last refresh interval, which
 * is what makes reported power lag the load. Both are P(t0) before the first refresh. */
static unsigned model_power_mw(unsigned i, const gpu_t *g, int instant) {
    int64_t now = now_ns();
    pthread_mutex_lock(&model_lock);
    model_t *m = model(i, g, now);
    int64_t k = latest_refresh(m, now - m->t0);
    int64_t a = refresh_at(m, k - 1), b = refresh_at(m, k);
    long double w = instant || k == 0
                        ? power(m, b)
                        : (state_at(m, b).e - state_at(m, a).e) / ((b - a) * 1e-9L);
    pthread_mutex_unlock(&model_lock);
    return (unsigned)(w * 1000 + 0.5L);
}

/* Whether `after_ms` (kept plus one, 0: unset) has passed since nvmlInit_v2. */
static int since_init_past(unsigned long long after_ms) {
    if (!after_ms) return 0;
    int64_t start = (int64_t)t0.tv_sec * 1000000000LL + t0.tv_nsec;
    return now_ns() - start >= (int64_t)(after_ms - 1) * 1000000LL;
}

/* ---- NVML ---- */

/* Never returns, as a call into a driver that waits on a device that will not answer. */
static void hang(void) {
    for (;;) {
        struct timespec d = {3600, 0};
        nanosleep(&d, NULL);
    }
}

int nvmlInit_v2(void) {
    state_t st;
    load(&st);
    if (st.init_crash == 1) *(volatile int *)0 = 0; /* a real fault: raise() is caught by a runtime's handler */
    if (st.init_crash == 2) _exit(3);
    if (st.init_hang) hang();
    if (st.init_rc != OK) return st.init_rc;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t now = now_ns();
    pthread_mutex_lock(&model_lock);
    for (unsigned i = 0; i < MAX_GPUS; i++)
        if (st.gpu[i].present && st.gpu[i].model) model(i, &st.gpu[i], now);
    pthread_mutex_unlock(&model_lock);
    initialized = 1;
    return OK;
}

int nvmlShutdown(void) {
    state_t st;
    load(&st);
    if (st.shutdown_hang) hang();
    if (st.shutdown_segv) *(volatile int *)0 = 0;
    initialized = 0;
    return OK;
}

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
    state_t st;
    load(&st);
    unsigned c = 0;
    while (c < MAX_GPUS && st.gpu[c].present) c++;
    *n = st.count >= 0 ? (unsigned)st.count : c;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) {
    if (!initialized) return ERR_UNINITIALIZED;
    state_t st;
    load(&st);
    if (i >= MAX_GPUS || !st.gpu[i].present) return ERR_INVALID_ARGUMENT;
    *h = (void *)(long)(i + 1);
    return OK;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **h) {
    state_t st;
    load(&st);
    for (int i = 0; i < MAX_GPUS; i++) {
        const gpu_t *g = &st.gpu[i];
        if (!g->present) continue;
        if (!strcmp(g->uuid, uuid)) { *h = (void *)(long)(i + 1); return OK; }
        if (g->mig_uuid[0] && !strcmp(g->mig_uuid, uuid)) {
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
    state_t st;
    if (!dev(h, &st)) return ERR_INVALID_ARGUMENT;
    *index = (unsigned)((long)h % MIG_BASE) - 1;
    return OK;
}

/* A name or UUID into the caller's buffer of n bytes, as the GPU's strings= key says. */
static void put_string(const gpu_t *g, char *out, unsigned int n, const char *s) {
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

int nvmlDeviceGetName(void *h, char *out, unsigned int n) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    put_string(g, out, n, g->name[0] ? g->name : "Fake GPU");
    return OK;
}

int nvmlDeviceGetUUID(void *h, char *out, unsigned int n) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    put_string(g, out, n, g->uuid);
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *mj) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (g->energy_rc != OK) return g->energy_rc;
    if (since_init_past(g->lost_after_ms)) return ERR_GPU_IS_LOST;
    if (since_init_past(g->segv_after_ms)) *(volatile int *)0 = 0; /* a real fault: raise() is caught by a runtime's handler */
    if (since_init_past(g->hang_after_ms))
        for (;;) pause();
    if (g->model) {
        *mj = model_energy_mj((unsigned)(g - st.gpu), g);
        return OK;
    }
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
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (g->power_rc != OK) return g->power_rc;
    if (since_init_past(g->lost_after_ms)) return ERR_GPU_IS_LOST;
    *mw = g->model ? model_power_mw((unsigned)(g - st.gpu), g, 0) : g->power_mw;
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
    state_t st;
    gpu_t *g = dev(h, &st);
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
        v->value.ui = g->model ? model_power_mw((unsigned)(g - st.gpu), g, 1) : g->power_mw;
    }
    return OK;
}

int nvmlDeviceGetEnforcedPowerLimit(void *h, unsigned int *mw) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    if (!g->limit_mw) return ERR_NOT_SUPPORTED;
    *mw = g->limit_mw;
    return OK;
}

typedef struct { unsigned int gpu, memory; } utilization_t;

int nvmlDeviceGetUtilizationRates(void *h, utilization_t *u) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g) return ERR_INVALID_ARGUMENT;
    u->gpu = g->util;
    u->memory = 0;
    return OK;
}

/* ---- Processes (see the header) ---- */

#define ERR_INSUFFICIENT_SIZE 7

#ifndef FAKE_NVML_NO_PROCESSES
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} process_info_t; /* nvmlProcessInfo_t (v2), as _v3 fills it */

int nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *count, process_info_t *infos) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g || !count) return ERR_INVALID_ARGUMENT;
    if (st.procs_rc != OK) return st.procs_rc;
    int gi = (int)(g - st.gpu);
    unsigned n = 0;
    for (int i = 0; i < st.nproc; i++) n += st.proc[i].gpu == gi && st.proc[i].compute;
    if (!infos || *count == 0) {
        unsigned reported = st.proc_count >= 0 ? (unsigned)st.proc_count : n;
        *count = reported;
        return reported ? ERR_INSUFFICIENT_SIZE : OK;
    }
    if (*count < n) { *count = n; return ERR_INSUFFICIENT_SIZE; }
    unsigned k = 0;
    for (int i = 0; i < st.nproc; i++) {
        const proc_t *p = &st.proc[i];
        if (p->gpu != gi || !p->compute) continue;
        infos[k] = (process_info_t){p->pid, 1ULL << 30, 0xFFFFFFFFu, 0xFFFFFFFFu};
        k++;
    }
    *count = k;
    return OK;
}

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} process_sample_t; /* nvmlProcessUtilizationSample_t */

static unsigned long long wall_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (unsigned long long)t.tv_sec * 1000000ULL + (unsigned long long)t.tv_nsec / 1000;
}

int nvmlDeviceGetProcessUtilization(void *h, process_sample_t *out, unsigned int *count,
                                    unsigned long long last_seen) {
    state_t st;
    gpu_t *g = dev(h, &st);
    if (!g || !count) return ERR_INVALID_ARGUMENT;
    if (st.procs_rc != OK) return st.procs_rc;
    int gi = (int)(g - st.gpu);
    unsigned long long now = wall_us();
    unsigned n = 0;
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        for (int i = 0; i < st.nproc; i++) {
            const proc_t *p = &st.proc[i];
            if (p->gpu != gi) continue;
            for (unsigned j = 0; j < p->samples; j++) {
                unsigned long long ts = now - st.sample_us / 2 - j * st.sample_us;
                if (ts <= last_seen) continue;
                if (pass == 1) out[n] = (process_sample_t){p->pid, ts, p->sm, p->sm / 2, 0, 0};
                n++;
            }
        }
        if (pass == 0) {
            if (!n) return ERR_NOT_FOUND;
            if (!out || *count < n) { *count = n; return ERR_INSUFFICIENT_SIZE; }
        }
    }
    *count = n;
    return OK;
}
#endif

/* ---- Test-only: drive and inspect the H100 model. gpu is the index in the state file, times
 * are CLOCK_MONOTONIC ns (Python's time.monotonic_ns()). ---- */

/* Queues a kernel of this many seconds, like a launch on a CUDA stream. */
void fake_nvml_enqueue(unsigned gpu, double seconds) {
    int64_t now = now_ns();
    model_t *m = acquire(gpu, now);
    if (!m) return;
    if (seconds > 0) enqueue(m, now - m->t0, (int64_t)(seconds * 1e9 + 0.5));
    release();
}

/* Returns once all queued work is done, like cudaDeviceSynchronize. */
void fake_nvml_sync(unsigned gpu) {
    model_t *m = acquire(gpu, now_ns());
    if (!m) return;
    int64_t until = m->t0 + m->busy_until;
    release();
    sleep_until(until);
}

/* Exact E(t) in J (0 before t0). A future t assumes nothing more is queued. */
double fake_nvml_true_energy_j(unsigned gpu, long long t_ns) {
    model_t *m = acquire(gpu, now_ns());
    if (!m) return NAN;
    double e = (double)state_at(m, t_ns - m->t0).e;
    release();
    return e;
}

/* Exact P(t) in W. */
double fake_nvml_power_w(unsigned gpu, long long t_ns) {
    model_t *m = acquire(gpu, now_ns());
    if (!m) return NAN;
    double w = (double)power(m, t_ns - m->t0);
    release();
    return w;
}

/* The refresh instant r_k (t0 for k <= 0). */
long long fake_nvml_refresh_ns(unsigned gpu, long long k) {
    model_t *m = acquire(gpu, now_ns());
    if (!m) return -1;
    long long r = m->t0 + refresh_at(m, k);
    release();
    return r;
}

long long fake_nvml_t0_ns(unsigned gpu) {
    model_t *m = acquire(gpu, now_ns());
    if (!m) return -1;
    long long t = m->t0;
    release();
    return t;
}
