/*
 * A RAPL package counter whose truth is known and whose reads are slow, for cf.bench's tests
 * and benches/bench_read_cost.py. Loaded with LD_PRELOAD into a process that reads a fake
 * powercap tree (tests/fakes/powercap.py); it serves one energy_uj file of that tree itself:
 *
 *   power  = idle_w + cpu_w x (busy CPUs of this process), its own thread left out: a package
 *            whose power follows the benchmark process's CPU time, at the kernel's nanosecond
 *            resolution (CLOCK_PROCESS_CPUTIME_ID);
 *   refresh: every period_us, by a thread of its own that wakes at each boundary, as RAPL
 *            refreshes on its own clock whoever reads it; a read returns the energy as of the
 *            latest refresh. Where that thread has not yet run for the latest boundary (a
 *            busy machine, a CPU quota, or its wake-up still under way), the read refreshes the
 *            counter itself, as of that boundary: the counter never stands still longer than
 *            real RAPL does, and each refresh holds one period's idle energy, as real RAPL's do;
 *   a read costs delay_us, spent busy on the reading thread: a counter behind a FUSE file, a
 *            slow hwmon sensor or an ACPI power meter whose method the kernel evaluates on the
 *            caller's CPU (drawing full power while it does: the harness's reads are never
 *            cheaper to the package than the calls).
 *
 * Environment (read once, at the first open of the file):
 *   FAKE_RAPL_FILE       the energy_uj file to serve (matched by device and inode, whatever
 *                        path opens it); nothing else is touched
 *   FAKE_RAPL_DELAY_US   cost of one read (default 0)
 *   FAKE_RAPL_IDLE_W     default 10
 *   FAKE_RAPL_CPU_W      default 40, per busy CPU
 *   FAKE_RAPL_PERIOD_US  default 1000
 *
 * open/openat/read/pread/close are wrapped; descriptors of the served file are marked at open
 * and unmarked at close. After fork the child starts its own refresh thread and goes on from
 * the parent's last value (its process CPU time starts again at 0).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536

static atomic_uchar marked[MAX_FD];
static long long offsets[MAX_FD];

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static int configured;
static dev_t target_dev;
static ino_t target_ino;
static long long delay_ns, period_ns;
static double idle_w = 10.0, cpu_w = 40.0;

/* The served value, in microjoules, as of the latest refresh, and that refresh's period
 * number (CLOCK_MONOTONIC / period_ns). */
static _Atomic unsigned long long value_uj;
static long long value_tick;
static pthread_mutex_t value_lock = PTHREAD_MUTEX_INITIALIZER;
static clockid_t refresher_clock; /* the refresh thread's CPU clock, left out of the power */
static int running;                 /* a refresh thread runs in this process */
static unsigned long long base_uj;  /* energy before this process's clocks start */
static long long t0_ns, cpu0_ns;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);

static long long ns_of(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double env_num(const char *k, double dflt) {
    const char *v = getenv(k);
    return v && *v ? atof(v) : dflt;
}

static void resolve(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_close = dlsym(RTLD_NEXT, "close");
    real_read = dlsym(RTLD_NEXT, "read");
    real_pread = dlsym(RTLD_NEXT, "pread");
    real_pread64 = dlsym(RTLD_NEXT, "pread64");
    const char *file = getenv("FAKE_RAPL_FILE");
    struct stat st;
    if (file && stat(file, &st) == 0) {
        target_dev = st.st_dev;
        target_ino = st.st_ino;
        configured = 1;
    }
    delay_ns = (long long)(env_num("FAKE_RAPL_DELAY_US", 0) * 1000);
    period_ns = (long long)(env_num("FAKE_RAPL_PERIOD_US", 1000) * 1000);
    idle_w = env_num("FAKE_RAPL_IDLE_W", 10);
    cpu_w = env_num("FAKE_RAPL_CPU_W", 40);
}

/* The energy at the period boundary `tick`: idle power up to the boundary, CPU power for the
 * process's CPU time as of now (read within a read's time of the boundary). */
static unsigned long long energy_at(long long tick, long long own_cpu_ns) {
    long long at = tick * period_ns;
    double wall = (at > t0_ns ? at - t0_ns : 0) * 1e-9;
    double cpu = (ns_of(CLOCK_PROCESS_CPUTIME_ID) - cpu0_ns - own_cpu_ns) * 1e-9;
    return base_uj + (unsigned long long)((idle_w * wall + cpu_w * cpu) * 1e6);
}

static void refresh(long long tick, long long own_cpu_ns) {
    pthread_mutex_lock(&value_lock);
    if (tick > value_tick) {
        unsigned long long v = energy_at(tick, own_cpu_ns);
        if (v > atomic_load(&value_uj))
            atomic_store(&value_uj, v);
        value_tick = tick;
    }
    pthread_mutex_unlock(&value_lock);
}

static void *refresher(void *arg) {
    (void)arg;
    pthread_getcpuclockid(pthread_self(), &refresher_clock);
    long long next = (ns_of(CLOCK_MONOTONIC) / period_ns + 1) * period_ns;
    for (;;) {
        struct timespec ts = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
        }
        refresh(next / period_ns, ns_of(CLOCK_THREAD_CPUTIME_ID));
        long long now = ns_of(CLOCK_MONOTONIC);
        next += period_ns;
        if (next <= now) /* fell behind (a busy machine): the next boundary from now */
            next = (now / period_ns + 1) * period_ns;
    }
    return NULL;
}

static void after_fork_child(void) {
    running = 0;
    pthread_mutex_init(&start_lock, NULL);
    pthread_mutex_init(&value_lock, NULL);
}

static void ensure_running(void) {
    if (running)
        return;
    pthread_mutex_lock(&start_lock);
    if (!running) {
        base_uj = atomic_load(&value_uj);
        t0_ns = ns_of(CLOCK_MONOTONIC);
        cpu0_ns = ns_of(CLOCK_PROCESS_CPUTIME_ID);
        atomic_store(&value_uj, base_uj);
        value_tick = t0_ns / period_ns;
        refresher_clock = CLOCK_THREAD_CPUTIME_ID; /* until the thread has named its own */
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_create(&th, &attr, refresher, NULL);
        pthread_attr_destroy(&attr);
        static int registered;
        if (!registered) {
            pthread_atfork(NULL, NULL, after_fork_child);
            registered = 1;
        }
        running = 1;
    }
    pthread_mutex_unlock(&start_lock);
}

static void init(void) { pthread_once(&once, resolve); }

static void mark_if_target(int fd, const char *path) {
    if (fd < 0 || fd >= MAX_FD || !configured || !path)
        return;
    size_t n = strlen(path);
    if (n < 9 || strcmp(path + n - 9, "energy_uj") != 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_dev == target_dev && st.st_ino == target_ino) {
        offsets[fd] = 0;
        atomic_store(&marked[fd], 1);
        ensure_running();
    }
}

static int is_marked(int fd) { return fd >= 0 && fd < MAX_FD && atomic_load(&marked[fd]); }

static ssize_t serve(void *buf, size_t count, long long off) {
    long long end = ns_of(CLOCK_MONOTONIC) + delay_ns;
    long long now;
    while ((now = ns_of(CLOCK_MONOTONIC)) < end) {
    }
    long long tick = now / period_ns;
    if (tick > value_tick) { /* the refresh thread is late: refresh here, as of the boundary */
        clockid_t c = refresher_clock;
        refresh(tick, c == CLOCK_THREAD_CPUTIME_ID ? 0 : ns_of(c));
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%llu\n", atomic_load(&value_uj));
    if (off >= len)
        return 0;
    size_t n = (size_t)(len - off) < count ? (size_t)(len - off) : count;
    memcpy(buf, text + off, n);
    return (ssize_t)n;
}

#define OPEN_MODE(flags, mode)                                                                 \
    mode_t mode = 0;                                                                           \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                     \
        va_list ap;                                                                            \
        va_start(ap, flags);                                                                   \
        mode = va_arg(ap, mode_t);                                                             \
        va_end(ap);                                                                            \
    }

int open(const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_open(path, flags, mode);
    mark_if_target(fd, path);
    return fd;
}

int open64(const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_open64(path, flags, mode);
    mark_if_target(fd, path);
    return fd;
}

int openat(int dir, const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_openat(dir, path, flags, mode);
    mark_if_target(fd, path);
    return fd;
}

int openat64(int dir, const char *path, int flags, ...) {
    init();
    OPEN_MODE(flags, mode);
    int fd = real_openat64(dir, path, flags, mode);
    mark_if_target(fd, path);
    return fd;
}

int close(int fd) {
    init();
    if (fd >= 0 && fd < MAX_FD)
        atomic_store(&marked[fd], 0);
    return real_close(fd);
}

ssize_t read(int fd, void *buf, size_t count) {
    init();
    if (!is_marked(fd))
        return real_read(fd, buf, count);
    ssize_t n = serve(buf, count, offsets[fd]);
    offsets[fd] += n;
    return n;
}

ssize_t pread(int fd, void *buf, size_t count, off_t off) {
    init();
    return is_marked(fd) ? serve(buf, count, off) : real_pread(fd, buf, count, off);
}

ssize_t pread64(int fd, void *buf, size_t count, off_t off) {
    init();
    return is_marked(fd) ? serve(buf, count, off) : real_pread64(fd, buf, count, off);
}

/* What the counter holds now, for a test that wants to look without a read's cost. */
unsigned long long fake_rapl_value_uj(void) { return atomic_load(&value_uj); }
