/* The thread setting and pyrnn's own thread team.
 *
 * The setting is an atomic int read once at the start of each call (a configuration value, not
 * kernel state): $PYRNN_NUM_THREADS at first use, else the CPUs this process may run on, until
 * pyrnn_set_num_threads changes it.
 *
 * The team is a pool of worker threads started on first use, one job at a time. Kernels run
 * their whole time loop as one job and synchronise steps with pyrnn_barrier. Every wait spins
 * for a short while and then sleeps on a futex: a step takes microseconds, so spinning catches
 * the common case, and sleeping soon matters on a shared machine. A thread that spins for long
 * keeps a core from a preempted team mate (every step would then wait out a scheduler time
 * slice), and workers that spin on after a call compete with the caller's next work (another
 * library's thread pool, for instance). The team exists on Linux; elsewhere kernels run on one
 * thread. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"

#if defined(__linux__)
#define PYRNN_TEAM 1
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#else
#define PYRNN_TEAM 0
#endif

#define MAX_THREADS 256

static atomic_int setting = 0;  /* 0: not read from the environment yet */

static int initial_threads(void)
{
    const char *env = getenv("PYRNN_NUM_THREADS");
    if (env && *env) {
        char *end;
        const long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= MAX_THREADS) return (int)n;
    }
#if PYRNN_TEAM
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        const int n = CPU_COUNT(&cpus);
        return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    }
#endif
    return 1;
}

int pyrnn_get_num_threads(void)
{
    int n = atomic_load_explicit(&setting, memory_order_relaxed);
    if (n == 0) {
        int expected = 0;
        n = initial_threads();
        if (!atomic_compare_exchange_strong(&setting, &expected, n)) n = expected;
    }
    return n;
}

int pyrnn_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS) return PYRNN_ERR_ARGUMENT;
    atomic_store_explicit(&setting, n, memory_order_relaxed);
    return PYRNN_OK;
}

int pyrnn_has_thread_team(void)
{
    return PYRNN_TEAM;
}

int pyrnn_threads_for(double work, double per_thread, int64_t max_parts)
{
    if (!PYRNN_TEAM) return 1;
    int64_t n = pyrnn_get_num_threads();
    const double useful = work / per_thread;
    if (useful < (double)n) n = useful < 1.0 ? 1 : (int64_t)useful;
    if (n > max_parts) n = max_parts;
    return n < 1 ? 1 : (int)n;
}

#if PYRNN_TEAM

/* How long a waiting thread spins before it sleeps. */
#define SPIN_NS 5000

/* ---- waiting on a 32-bit word: spin, then futex ---- */

struct word {
    atomic_uint value;
    atomic_int sleepers;  /* lets the waker skip the system call when nobody sleeps */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Returns once w->value != old (acquire). */
static void wait_change(struct word *w, unsigned old)
{
    if (atomic_load_explicit(&w->value, memory_order_acquire) != old) return;
    const int64_t deadline = now_ns() + SPIN_NS;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if (atomic_load_explicit(&w->value, memory_order_acquire) != old) return;
        if (i % 64 == 0 && now_ns() > deadline) break;
    }
    atomic_fetch_add(&w->sleepers, 1);
    /* the kernel re-checks value == old before sleeping, so a change made after the
     * sleepers increment is never missed (both sides are sequentially consistent) */
    while (atomic_load(&w->value) == old)
        syscall(SYS_futex, &w->value, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
    atomic_fetch_sub(&w->sleepers, 1);
}

/* w->value += 1 (release), waking every sleeper. */
static void bump(struct word *w)
{
    atomic_fetch_add(&w->value, 1);
    if (atomic_load(&w->sleepers) > 0)
        syscall(SYS_futex, &w->value, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- the pool ---- */

static struct {
    pthread_mutex_t lock;  /* held by the caller running a job: one job at a time */
    int nworkers;          /* started workers, ids 1..nworkers */
    struct word job;       /* bumped when a job is posted */
    struct word done;      /* bumped by each worker once the job is over for it */
    struct word phase;     /* bumped when a barrier opens */
    atomic_int arrived;    /* threads at the current barrier */
    void (*body)(void *ctx, int tid, int nth);
    void *ctx;
    int nth;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct worker_start {
    int id;
    unsigned job_seen;
};
static struct worker_start starts[MAX_THREADS];

static void *worker_main(void *arg)
{
    const struct worker_start *start = arg;
    const int id = start->id;
    unsigned seen = start->job_seen;
    for (;;) {
        wait_change(&pool.job, seen);
        seen++;  /* one job at a time: the caller waits for every worker to finish it */
        const int nth = pool.nth;
        if (id < nth) pool.body(pool.ctx, id, nth);
        bump(&pool.done);
    }
    return NULL;
}

/* Starts workers up to `want`; returns how many exist (fewer if the system refuses). */
static int start_workers(int want)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* signals go to the caller's threads */
    while (pool.nworkers < want) {
        struct worker_start *s = &starts[pool.nworkers + 1];
        s->id = pool.nworkers + 1;
        s->job_seen = atomic_load(&pool.job.value);
        pthread_attr_t attr;
        pthread_t thread;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attr, worker_main, s);
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool.nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool.nworkers;
}

/* A forked child has none of the parent's workers and may inherit a held lock. */
static void reset_in_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pool.lock = fresh;
    pool.nworkers = 0;
    atomic_store(&pool.job.sleepers, 0);
    atomic_store(&pool.done.sleepers, 0);
    atomic_store(&pool.phase.sleepers, 0);
    atomic_store(&pool.arrived, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, reset_in_child);
}

void pyrnn_team(int nth, void (*body)(void *ctx, int tid, int nth), void *ctx)
{
    /* busy (another Python thread's call, or a call from inside a job): run alone; results
     * do not depend on the thread count */
    if (nth <= 1 || pthread_mutex_trylock(&pool.lock) != 0) {
        body(ctx, 0, 1);
        return;
    }
    pthread_once(&atfork_once, register_atfork);
    const int workers = start_workers(nth - 1);
    if (nth > workers + 1) nth = workers + 1;
    if (nth > 1) {
        const unsigned done0 = atomic_load(&pool.done.value);
        pool.body = body;
        pool.ctx = ctx;
        pool.nth = nth;
        bump(&pool.job);
        body(ctx, 0, nth);
        for (unsigned d = atomic_load_explicit(&pool.done.value, memory_order_acquire);
             d - done0 != (unsigned)workers;
             d = atomic_load_explicit(&pool.done.value, memory_order_acquire))
            wait_change(&pool.done, d);
    } else {
        body(ctx, 0, 1);
    }
    pthread_mutex_unlock(&pool.lock);
}

void pyrnn_barrier(int nth)
{
    if (nth <= 1) return;
    const unsigned phase = atomic_load(&pool.phase.value);
    if (atomic_fetch_add(&pool.arrived, 1) == nth - 1) {
        atomic_store(&pool.arrived, 0);
        bump(&pool.phase);
    } else {
        wait_change(&pool.phase, phase);
    }
}

#else

void pyrnn_team(int nth, void (*body)(void *ctx, int tid, int nth), void *ctx)
{
    (void)nth;
    body(ctx, 0, 1);
}

void pyrnn_barrier(int nth)
{
    (void)nth;
}

#endif
