/* The thread setting, the team runner and the per-step barrier.
 *
 * The setting is an atomic int read once at the start of each call (a configuration value, not
 * kernel state): $PYRNN_NUM_THREADS at first use, else OpenMP's default, until
 * pyrnn_set_num_threads changes it.
 *
 * A team is one OpenMP parallel region around a kernel's whole time loop: inside a PyTorch
 * process the region runs on the same OpenMP runtime (and threads) as PyTorch's own operations,
 * so the two never compete for the cores. The per-step barrier is pyrnn's own: it spins for up
 * to 100 microseconds, yields the core for up to 2 ms and then sleeps on a futex. OpenMP's
 * barrier spins for far longer, and on a shared machine a thread spinning at it keeps a core
 * from a preempted team mate, so every step waits out a scheduler time slice (an LSTM fwd+bwd
 * at T=50 B=128 H=32 went from 19 ms on one thread to 372 ms on two). Without OpenMP the
 * kernels run on one thread. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#include <pthread.h>
#define PYRNN_TEAM 1
#else
#define PYRNN_TEAM 0
#endif

#include <time.h>
#if PYRNN_TEAM
#include <sched.h>
#endif
#if PYRNN_TEAM && defined(__linux__)
#define PYRNN_FUTEX 1
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define PYRNN_FUTEX 0
#endif

#define MAX_THREADS 256

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static atomic_int setting = 0;  /* 0: not read from the environment yet */

/* $name as a whole number in [1, max], or 0 when unset or anything else. */
static long env_count(const char *name, long max)
{
    const char *env = getenv(name);
    if (!env || !*env) return 0;
    char *end;
    const long n = strtol(env, &end, 10);
    return *end == '\0' && n >= 1 && n <= max ? n : 0;
}

static int initial_threads(void)
{
    const long env = env_count("PYRNN_NUM_THREADS", MAX_THREADS);
    if (env) return (int)env;
#if PYRNN_TEAM
    const int n = omp_get_max_threads();
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
#else
    return 1;
#endif
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

static atomic_long l1d = 0;

int64_t pyrnn_l1d_bytes(void)
{
    long bytes = atomic_load_explicit(&l1d, memory_order_relaxed);
    if (bytes == 0) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
        bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
        if (bytes < 4096) bytes = 32768;  /* unknown (some systems say 0): the common size */
        atomic_store_explicit(&l1d, bytes, memory_order_relaxed);
    }
    return bytes;
}

/* The thresholds the kernels pass to pyrnn_threads_for were measured where one barrier of a
 * two-thread team takes about this long (benchmarks/kernel_parts.c `barrier`: 51-80 ns, AMD
 * Zen 5). Where the cores are further apart (a virtual machine's vCPUs: 325 ns seen) a second
 * thread must save more per step to pay, so the thresholds grow in proportion, up to
 * MAX_SCALE (large problems keep the team even if the measurement met a busy core). */
#define REFERENCE_BARRIER_NS 60.0
#define MAX_SCALE 8.0

static double measured_barrier_ns(void);

/* The cost is the fastest of MEASUREMENTS measurements: the first at the first call that asks,
 * the k-th one at least RETRY_NS * 4^(k-2) after the one before (50 ms, 0.2 s, 0.8 s, ... 3.4
 * min), calls in between taking the fastest so far. A team's first start on a virtual machine
 * often meets a slow barrier, one that waits out a scheduler time slice (a contended
 * measurement, which gives nothing) or one merely slower than the ones after it; and the host
 * moves the vCPUs: in one process the barrier took 33-89 ns and 206-279 ns by turns, in spells
 * of 0.3 s to a few seconds (benchmarks/RESULTS.md), so three measurements within 0.1 s all
 * met the slow one in one process in five, which then ran the problems on the line (LSTM batch
 * 1 with 64 units) on one thread for good. Until a measurement is uncontended, and for good
 * once all met a busy core, the barrier counts as slow as MAX_SCALE allows (one thread serves
 * a busy machine better: benchmarks/RESULTS.md). */
#define MEASUREMENTS 8
#define RETRY_NS 50000000LL
static atomic_long pinned_ns = 0;         /* $PYRNN_BARRIER_NS; -1 unset, 0 not read yet */
static atomic_long fastest_ns = 0;        /* the fastest uncontended measurement, 0: none */
static atomic_int measurements = 0;       /* taken, or claimed by a call taking one */
static atomic_llong last_measured_ns = 0; /* when the last one ended */

static long pinned_barrier_ns(void)
{
    long pinned = atomic_load_explicit(&pinned_ns, memory_order_relaxed);
    if (pinned == 0) {
        pinned = env_count("PYRNN_BARRIER_NS", 1000000);
        if (pinned == 0) pinned = -1;
        atomic_store_explicit(&pinned_ns, pinned, memory_order_relaxed);
    }
    return pinned;
}

double pyrnn_barrier_ns(void)
{
    const long pinned = pinned_barrier_ns();
    if (pinned > 0) return (double)pinned;
    int taken = atomic_load(&measurements);
    if (taken < MEASUREMENTS &&
        (taken == 0 ||
         now_ns() - atomic_load(&last_measured_ns) >= RETRY_NS << (2 * (taken - 1))) &&
        atomic_compare_exchange_strong(&measurements, &taken, taken + 1)) {
        const long ns = (long)(measured_barrier_ns() + 0.5);  /* 0: contended */
        const long fastest = atomic_load(&fastest_ns);
        if (ns > 0 && (fastest == 0 || ns < fastest)) atomic_store(&fastest_ns, ns);
        atomic_store(&last_measured_ns, now_ns());
    }
    const long fastest = atomic_load(&fastest_ns);
    return fastest > 0 ? (double)fastest : REFERENCE_BARRIER_NS * MAX_SCALE;
}

int pyrnn_barrier_measurements(void)
{
    return pinned_barrier_ns() > 0 ? 0 : atomic_load(&measurements);
}

static int leave_asleep(double total);

int pyrnn_threads_for(double work, double per_thread, int64_t max_parts, double total)
{
    if (!PYRNN_TEAM) return 1;
    int64_t n = pyrnn_get_num_threads();
    if (n > 1 && work >= 2.0 * per_thread) {  /* else one thread, whatever the barrier costs */
        const double scale = pyrnn_barrier_ns() / REFERENCE_BARRIER_NS;
        per_thread *= scale < 1.0 ? 1.0 : scale > MAX_SCALE ? MAX_SCALE : scale;
    }
    const double useful = work / per_thread;
    if (useful < (double)n) n = useful < 1.0 ? 1 : (int64_t)useful;
    if (n > max_parts) n = max_parts;
    if (n > 1 && leave_asleep(total)) n = 1;
    return n < 1 ? 1 : (int)n;
}

#if PYRNN_TEAM
/* GNU OpenMP cannot start a team in a forked child once the parent has used one (the child
 * waits forever for threads it does not have), so children run every call on one thread. */
static atomic_int in_forked_child = 0;
static void mark_forked_child(void)
{
    atomic_store(&in_forked_child, 1);
}
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, mark_forked_child);
}

/* nth, or 1 in a forked child. */
static int team_size(int nth)
{
    pthread_once(&atfork_once, register_atfork);
    return atomic_load_explicit(&in_forked_child, memory_order_relaxed) ? 1 : nth;
}

/* How long a waiting thread spins before it yields (then sleeps). Waking a sleeper costs tens
 * of microseconds here, and a step's wait, at a few microseconds as a rule, passes 5 us often
 * enough that with 5 us of spinning one barrier in eight slept (LSTM 200x16x64x128: 12%)
 * and forward+backward took 6.9 ms; with 100 us, one in 5,000, and 5.6 ms. */
#define SPIN_NS 100000

/* How long it then yields its core before it sleeps. A vCPU whose threads all sleep halts, and
 * the host takes 0.1-2 ms to run it again; meanwhile the guest puts the threads woken for it
 * on the waker's vCPU (it avoids one the host has descheduled). So a team that slept once on a
 * virtual machine kept sleeping: every wait outlasted the spin while the other vCPU came back,
 * which halted this one in turn (LSTM 50x16x64x128 inference after 50 ms idle: barrier sleeps
 * in 28-48 of its 50 steps, 13.8 ms a call against 2.1 back to back). A thread that yields
 * keeps its vCPU running and still gives way to a team mate queued on the same one; with that
 * and the worker's move below (pyrnn_leave_cpu) the call took 4.5-4.7 ms, one thread 4.8-5.3
 * (benchmarks/RESULTS.md); either alone left it at 13.3-13.8 in two runs of three. */
#define YIELD_NS 2000000

/* ---- waiting on a 32-bit word: spin, yield, then sleep on a futex (elsewhere than Linux:
 * yield) ---- */

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
#if PYRNN_FUTEX
    for (const int64_t until = now_ns() + YIELD_NS; now_ns() < until;) {
        sched_yield();
        if (atomic_load_explicit(&w->value, memory_order_acquire) != old) return;
    }
    atomic_fetch_add(&w->sleepers, 1);
    /* the kernel re-checks value == old before sleeping, so a change made after the
     * sleepers increment is never missed (both sides are sequentially consistent) */
    while (atomic_load(&w->value) == old)
        syscall(SYS_futex, &w->value, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
    atomic_fetch_sub(&w->sleepers, 1);
#else
    while (atomic_load(&w->value) == old) sched_yield();
#endif
}

/* w->value += 1 (release), waking every sleeper. */
static void bump(struct word *w)
{
    atomic_fetch_add(&w->value, 1);
#if PYRNN_FUTEX
    if (atomic_load(&w->sleepers) > 0)
        syscall(SYS_futex, &w->value, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
}

/* One team's barrier, on the stack of the thread that started the team; each member finds it
 * through a thread-local pointer (teams of concurrent calls each have their own). */
struct team_barrier {
    struct word phase;  /* bumped when the barrier opens */
    atomic_int arrived; /* threads at the current barrier */
};
static _Thread_local struct team_barrier *current_barrier;

void pyrnn_barrier(int nth)
{
    if (nth <= 1) return;
    struct team_barrier *b = current_barrier;
    const unsigned phase = atomic_load(&b->phase.value);
    if (atomic_fetch_add(&b->arrived, 1) == nth - 1) {
        atomic_store(&b->arrived, 0);
        bump(&b->phase);
    } else {
        wait_change(&b->phase, phase);
    }
}

/* ---- the barrier's cost, measured ---- */

#define TIMED_BARRIERS 32
#define TIMED_RUNS 32
/* A run this slow (over 1 us a barrier; 40-330 ns seen uncontended) met a barrier that shared a
 * core with another busy thread (NumPy's BLAS threads spin for about 0.1 s after each call, for
 * one): it says nothing about the machine, so the measurement stops there rather than wait out
 * more scheduler time slices. */
#define CONTENDED_RUN_NS (TIMED_BARRIERS * 1000)

#define NO_STOP (TIMED_RUNS * TIMED_BARRIERS + 1)

struct barrier_timing {
    double best_ns;     /* 0 until a run of TIMED_BARRIERS that was not contended */
    atomic_int stop_at; /* the barrier after which the team stops (NO_STOP: none), by thread 0 */
};

/* Thread 0 times up to TIMED_RUNS runs of TIMED_BARRIERS barriers and keeps the fastest run. It
 * reads the clock only between runs, as kernel_parts `barrier` times a long run (against which
 * REFERENCE_BARRIER_NS was taken): a read after every barrier added 20-45 ns to each (73-117 ns
 * measured where kernel_parts gives 40-54, AMD Zen 3). After a contended run it sets stop_at
 * two barriers on: its store precedes its arrival at the next barrier, so every thread has seen
 * it when it checks after that one. */
static void time_barriers(void *ctx, int tid, int nth)
{
    struct barrier_timing *timing = ctx;
    if (nth < 2) return;  /* no team (a forked child): nothing to measure */
    pyrnn_barrier(nth);
    int64_t run_start = now_ns();
    for (int i = 1; i <= TIMED_RUNS * TIMED_BARRIERS; i++) {
        pyrnn_barrier(nth);
        if (i >= atomic_load(&timing->stop_at)) return;
        if (tid != 0 || i % TIMED_BARRIERS != 0) continue;
        const int64_t t = now_ns();
        if (t - run_start > CONTENDED_RUN_NS) {
            atomic_store(&timing->stop_at, i + 2);
        } else {
            const double ns = (double)(t - run_start) / TIMED_BARRIERS;
            if (timing->best_ns == 0 || ns < timing->best_ns) timing->best_ns = ns;
        }
        run_start = t;
    }
}

/* The fastest uncontended run's ns per barrier, 0 when the first run met a contended one. */
static double measured_barrier_ns(void)
{
    struct barrier_timing timing = {0, NO_STOP};
    pyrnn_team(2, time_barriers, &timing);
    return timing.best_ns;
}

/* ---- a team that has gone to sleep ----
 * An OpenMP worker spins for a few milliseconds after a region (GNU OpenMP: 3.5-4 ms here)
 * and then sleeps. Waking it can cost milliseconds on a virtual machine: the woken worker is
 * often put on the caller's own vCPU and waits there for a scheduler time slice, and a team on
 * one vCPU waits out a spin at every barrier (benchmarks/RESULTS.md: after 10-50 ms idle,
 * medians of 0.5-3.8 ms to start the worker, the two on one vCPU in half the starts or more;
 * LSTM 100x1x32x128 12 ms a call against 0.3). So once the team has not run for the idle time
 * ($PYRNN_TEAM_IDLE_NS, 0: never count it asleep), a section of less than SMALL_SECTION_FLOPS
 * (about a millisecond on one core) runs on one thread, unless sections have come with shorter
 * gaps for STEADY_NS: a program calling steadily pays the wake once and keeps the team warm. */
#define DEFAULT_IDLE_NS 2000000
#define STEADY_NS 10000000
#define SMALL_SECTION_FLOPS 1e8
static atomic_llong idle_ns_setting = -1;  /* -1: not read yet */
static atomic_llong team_end_ns = 0;       /* when the last team ended */
static atomic_llong section_end_ns = 0;    /* when the last section ended, team or not */
static atomic_llong steady_since_ns = 0;   /* when the current run of short gaps began */

static long long team_idle_ns(void)
{
    long long ns = atomic_load_explicit(&idle_ns_setting, memory_order_relaxed);
    if (ns < 0) {
        const long n = env_count("PYRNN_TEAM_IDLE_NS", 1000000000);
        const char *env = getenv("PYRNN_TEAM_IDLE_NS");
        ns = n ? n : env && strcmp(env, "0") == 0 ? 0 : DEFAULT_IDLE_NS;
        atomic_store_explicit(&idle_ns_setting, ns, memory_order_relaxed);
    }
    return ns;
}

/* Whether a section of `total` flops starting now should leave the team asleep (see above). */
static int leave_asleep(double total)
{
    const long long idle = team_idle_ns();
    if (total >= SMALL_SECTION_FLOPS || idle == 0) return 0;
    const int64_t now = now_ns();
    if (now - atomic_load_explicit(&team_end_ns, memory_order_relaxed) < idle) return 0;
    if (now - atomic_load_explicit(&section_end_ns, memory_order_relaxed) >= idle) return 1;
    return now - atomic_load_explicit(&steady_since_ns, memory_order_relaxed) < STEADY_NS;
}

/* The section clock (only when the setting allows a team: one thread has nothing to wake). */
static int64_t section_start(void)
{
    if (pyrnn_get_num_threads() < 2) return 0;
    const int64_t now = now_ns();
    if (now - atomic_load_explicit(&section_end_ns, memory_order_relaxed) >= team_idle_ns())
        atomic_store_explicit(&steady_since_ns, now, memory_order_relaxed);
    return now;
}

static void section_end(int64_t start, int team)
{
    if (start == 0) return;
    const int64_t now = now_ns();
    atomic_store_explicit(&section_end_ns, now, memory_order_relaxed);
    if (team) atomic_store_explicit(&team_end_ns, now, memory_order_relaxed);
}

/* ---- a woken worker that lands on its caller's CPU ----
 * After idle the scheduler puts the woken worker on the caller's own vCPU more often than not
 * (it avoids a vCPU the host has descheduled): in 40 empty regions each after 50 ms idle it was
 * there in 29-32, in after 1.8 ms; with its affinity narrowed to the other CPU before each
 * region, in none, in after 0.13-0.15 ms (benchmarks/RESULTS.md). On the caller's vCPU it
 * waits for the caller to give up the core, and then the team shares one core until the load
 * balancer parts them. So a worker of a team that was asleep that finds itself on its caller's
 * CPU moves itself: its own affinity narrowed to the other CPUs it allows, which migrates it at
 * once, then given back whole, which leaves it where it is. A worker that allows only that CPU
 * (pinned by the user or by OMP_PROC_BIND) stays. */
#if defined(__linux__)
static int current_cpu(void)
{
    return sched_getcpu();
}

int pyrnn_leave_cpu(int cpu)
{
    if (cpu < 0 || sched_getcpu() != cpu) return 0;
    cpu_set_t allowed, others;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || !CPU_ISSET(cpu, &allowed))
        return 0;
    others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof others, &others) != 0) return 0;
    sched_setaffinity(0, sizeof allowed, &allowed);
    return 1;
}
#else
static int current_cpu(void)
{
    return -1;
}

int pyrnn_leave_cpu(int cpu)
{
    (void)cpu;
    return 0;
}
#endif

/* Whether the team has not run for the idle time (its workers may sleep), at a section's
 * start (0: no clock kept). */
static int team_asleep(int64_t start)
{
    const long long idle = team_idle_ns();
    return start != 0 && idle > 0 &&
           start - atomic_load_explicit(&team_end_ns, memory_order_relaxed) >= idle;
}

void pyrnn_team(int nth, void (*body)(void *ctx, int tid, int nth), void *ctx)
{
    nth = team_size(nth);
    const int64_t start = section_start();
    if (nth <= 1) {
        body(ctx, 0, 1);
        section_end(start, 0);
        return;
    }
    struct team_barrier barrier = {0};
    const int caller_cpu = team_asleep(start) ? current_cpu() : -1;
#pragma omp parallel num_threads(nth)
    {
        if (omp_get_thread_num() != 0) pyrnn_leave_cpu(caller_cpu);
        struct team_barrier *outer = current_barrier;
        current_barrier = &barrier;
        /* the runtime may give fewer threads than asked: share by the real count */
        body(ctx, omp_get_thread_num(), omp_get_num_threads());
        current_barrier = outer;
    }
    section_end(start, 1);
}

#else

static double measured_barrier_ns(void)
{
    return REFERENCE_BARRIER_NS;  /* no team: the thresholds stand as they are */
}

static int leave_asleep(double total)
{
    (void)total;
    return 0;  /* no team to wake */
}

int pyrnn_leave_cpu(int cpu)
{
    (void)cpu;
    return 0;  /* no team, no worker to move */
}

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
