/* A self-contained driver that runs every kernel on exactly sized heap buffers, for builds with
 * sanitizers (.ci/sanitize.sh): every cell, variant, data type and flag on shapes with vector
 * tails, batch 1, lengths and both thread counts; bad arguments must return an error status.
 * Prints one line per failure and exits non-zero if there was any (sanitizers abort on their
 * own). Not part of the Python extension. */
#define _GNU_SOURCE /* nanosleep, clock_gettime; sched_setaffinity, sched_getcpu */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h" /* pyrnn.h and the thread decisions */

static int failures = 0;

#define CHECK(cond, ...)                                 \
    do {                                                 \
        if (!(cond)) {                                   \
            fprintf(stderr, "selftest: " __VA_ARGS__);   \
            fprintf(stderr, "\n");                       \
            failures++;                                  \
        }                                                \
    } while (0)

static uint64_t rng_state = 88172645463325252ull;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* A heap array of n random values (NULL for n == 0), exactly n long so overruns are caught. */
#define DEFINE_HELPERS(real, SFX)                                                  \
    static real *random_##SFX(int64_t n, double scale)                             \
    {                                                                              \
        real *p = malloc((size_t)n * sizeof(real));                                \
        for (int64_t k = 0; k < n; k++) p[k] = (real)(uniform() * scale);          \
        return p;                                                                  \
    }                                                                              \
    static int finite_##SFX(const real *p, int64_t n)                              \
    {                                                                              \
        for (int64_t k = 0; k < n; k++)                                            \
            if (!isfinite((double)p[k])) return 0;                                 \
        return 1;                                                                  \
    }
DEFINE_HELPERS(float, f32)
DEFINE_HELPERS(double, f64)

enum { RNN_TANH, RNN_RELU, LSTM, GRU_AFTER, GRU_BEFORE, N_CELLS };
static const char *const cell_names[] = {"rnn-tanh", "rnn-relu", "lstm", "gru-after",
                                         "gru-before"};

static int64_t gates_of(int cell) { return cell == LSTM ? 4 : cell >= GRU_AFTER ? 3 : 1; }

static int64_t ws_len(int cell, int64_t T, int64_t B, int64_t I, int64_t H, int training)
{
    switch (cell) {
    case LSTM: return pyrnn_lstm_workspace_len(T, B, I, H, training);
    case GRU_AFTER: return pyrnn_gru_workspace_len(T, B, I, H, training, 1);
    case GRU_BEFORE: return pyrnn_gru_workspace_len(T, B, I, H, training, 0);
    default: return pyrnn_rnn_workspace_len(T, B, I, H, training);
    }
}

/* One cell on one shape: inference forward, training forward, backward; every output finite. */
#define DEFINE_RUN(real, SFX)                                                                    \
    static void run_##SFX(int cell, int64_t T, int64_t B, int64_t I, int64_t H, int reverse,     \
                          int with_lengths, int bias, int states)                                \
    {                                                                                            \
        const int64_t G = gates_of(cell), GH = G * H;                                            \
        real *x = random_##SFX(T * B * I, 1.0), *dy = random_##SFX(T * B * H, 1.0);              \
        real *w_ih = random_##SFX(GH * I, 0.5), *w_hh = random_##SFX(GH * H, 0.5);               \
        real *b_ih = bias ? random_##SFX(GH, 0.5) : NULL;                                        \
        real *b_hh = bias ? random_##SFX(GH, 0.5) : NULL;                                        \
        real *h0 = states ? random_##SFX(B * H, 1.0) : NULL;                                     \
        real *c0 = states ? random_##SFX(B * H, 1.0) : NULL;                                     \
        real *dh_n = states ? random_##SFX(B * H, 1.0) : NULL;                                   \
        real *dc_n = states ? random_##SFX(B * H, 1.0) : NULL;                                   \
        int64_t *lengths = NULL;                                                                 \
        if (with_lengths) {                                                                      \
            lengths = malloc((size_t)B * sizeof(int64_t));                                       \
            for (int64_t b = 0; b < B; b++) lengths[b] = 1 + (b * 7 + 3) % T;                    \
            lengths[B / 2] = T;                                                                  \
        }                                                                                        \
        real *y = malloc((size_t)(T * B * H) * sizeof(real));                                    \
        real *h_n = malloc((size_t)(B * H) * sizeof(real));                                      \
        real *c_n = malloc((size_t)(B * H) * sizeof(real));                                      \
        real *dx = malloc((size_t)(T * B * I) * sizeof(real));                                   \
        real *dh0 = malloc((size_t)(B * H) * sizeof(real));                                      \
        real *dc0 = malloc((size_t)(B * H) * sizeof(real));                                      \
        real *dw_ih = malloc((size_t)(GH * I) * sizeof(real));                                   \
        real *dw_hh = malloc((size_t)(GH * H) * sizeof(real));                                   \
        real *db_ih = bias ? malloc((size_t)GH * sizeof(real)) : NULL;                           \
        real *db_hh = bias ? malloc((size_t)GH * sizeof(real)) : NULL;                           \
        for (int training = 0; training < 2; training++) {                                       \
            real *ws = malloc((size_t)ws_len(cell, T, B, I, H, training) * sizeof(real));        \
            int st;                                                                              \
            if (cell == LSTM)                                                                    \
                st = pyrnn_lstm_forward_##SFX(T, B, I, H, reverse, training, x, h0, c0, w_ih,    \
                                              w_hh, b_ih, b_hh, lengths, y, h_n, c_n, ws);       \
            else if (cell >= GRU_AFTER)                                                          \
                st = pyrnn_gru_forward_##SFX(T, B, I, H, reverse, training, cell == GRU_AFTER,   \
                                             x, h0, w_ih, w_hh, b_ih, b_hh, lengths, y, h_n, ws);\
            else                                                                                 \
                st = pyrnn_rnn_forward_##SFX(T, B, I, H, reverse, training, cell == RNN_RELU, x, \
                                             h0, w_ih, w_hh, b_ih, b_hh, lengths, y, h_n, ws);   \
            CHECK(st == PYRNN_OK && finite_##SFX(y, T * B * H) && finite_##SFX(h_n, B * H),      \
                  "%s " #SFX " forward T%lld B%lld I%lld H%lld: status %d or non-finite output", \
                  cell_names[cell], (long long)T, (long long)B, (long long)I, (long long)H, st); \
            if (training) {                                                                      \
                if (cell == LSTM)                                                                \
                    st = pyrnn_lstm_backward_##SFX(T, B, I, H, reverse, x, h0, c0, w_ih, w_hh,   \
                                                   b_ih, b_hh, lengths, dy, dh_n, dc_n, dx, dh0, \
                                                   dc0, dw_ih, dw_hh, db_ih, db_hh, ws);         \
                else if (cell >= GRU_AFTER)                                                      \
                    st = pyrnn_gru_backward_##SFX(T, B, I, H, reverse, cell == GRU_AFTER, x, h0, \
                                                  w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dx, \
                                                  dh0, dw_ih, dw_hh, db_ih, db_hh, ws);          \
                else                                                                             \
                    st = pyrnn_rnn_backward_##SFX(T, B, I, H, reverse, cell == RNN_RELU, x, h0,  \
                                                  w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dx, \
                                                  dh0, dw_ih, dw_hh, db_ih, db_hh, ws);          \
                CHECK(st == PYRNN_OK && finite_##SFX(dx, T * B * I) &&                           \
                          finite_##SFX(dw_hh, GH * H) && finite_##SFX(dh0, B * H),               \
                      "%s " #SFX " backward T%lld B%lld I%lld H%lld: status %d or non-finite",   \
                      cell_names[cell], (long long)T, (long long)B, (long long)I, (long long)H,  \
                      st);                                                                       \
                /* again, every gradient but db_hh left NULL: not computed (pyrnn.h) */          \
                if (cell == LSTM)                                                                \
                    st = pyrnn_lstm_backward_##SFX(T, B, I, H, reverse, x, h0, c0, w_ih, w_hh,   \
                                                   b_ih, b_hh, lengths, dy, dh_n, dc_n, NULL,    \
                                                   NULL, NULL, NULL, NULL, NULL, db_hh, ws);     \
                else if (cell >= GRU_AFTER)                                                      \
                    st = pyrnn_gru_backward_##SFX(T, B, I, H, reverse, cell == GRU_AFTER, x, h0, \
                                                  w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n,     \
                                                  NULL, NULL, NULL, NULL, NULL, db_hh, ws);      \
                else                                                                             \
                    st = pyrnn_rnn_backward_##SFX(T, B, I, H, reverse, cell == RNN_RELU, x, h0,  \
                                                  w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n,     \
                                                  NULL, NULL, NULL, NULL, NULL, db_hh, ws);      \
                CHECK(st == PYRNN_OK && (!db_hh || finite_##SFX(db_hh, GH)),                     \
                      "%s " #SFX " backward of db_hh alone T%lld B%lld I%lld H%lld: status %d "  \
                      "or non-finite", cell_names[cell], (long long)T, (long long)B,             \
                      (long long)I, (long long)H, st);                                           \
            }                                                                                    \
            free(ws);                                                                            \
        }                                                                                        \
        void *all[] = {x, dy, w_ih, w_hh, b_ih, b_hh, h0, c0, dh_n, dc_n, lengths, y, h_n, c_n,  \
                       dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh};                                \
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) free(all[k]);                    \
    }
DEFINE_RUN(float, f32)
DEFINE_RUN(double, f64)

static void bad_arguments(void)
{
    float v[64] = {0};
    const int64_t bad_len[2] = {0, 3};
    CHECK(pyrnn_rnn_forward_f32(0, 1, 1, 1, 0, 0, 0, v, NULL, v, v, NULL, NULL, NULL, v, v, v) ==
              PYRNN_ERR_SIZE, "T = 0 accepted");
    CHECK(pyrnn_lstm_forward_f32(1, 1, 1, 1, 0, 0, NULL, NULL, NULL, v, v, NULL, NULL, NULL, v, v,
                                 v, v) == PYRNN_ERR_NULL, "x = NULL accepted");
    CHECK(pyrnn_gru_forward_f32(3, 2, 1, 1, 0, 0, 1, v, NULL, v, v, NULL, NULL, bad_len, v, v,
                                v) == PYRNN_ERR_LENGTHS, "length 0 accepted");
    CHECK(pyrnn_rnn_workspace_len((int64_t)1 << 62, 1, 1, 1, 1) == -1, "huge T accepted");
}

static void nothing(void *ctx, int tid, int nth)
{
    (void)ctx, (void)tid, (void)nth;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void sleep_ms(double ms)
{
    const struct timespec ts = {0, (long)(ms * 1e6)};
    nanosleep(&ts, NULL);
}

/* threads.c's idle rule with its default idle time (2 ms) and steady time (10 ms): a small
 * section (1e6 flops) gets the team it asks for while the team is warm, one thread once the
 * team has idled, and the team again once sections have kept coming; a large one always. */
static void idle_team(void)
{
    if (!pyrnn_has_thread_team()) return;
    pyrnn_set_num_threads(2);
    const double work = 2.5e6 * 8;  /* two threads at any barrier cost (the scale's 8x cap) */
    pyrnn_team(2, nothing, NULL);
    CHECK(pyrnn_threads_for(work, 1e6, 8, 1e6) == 2, "a warm team refused");
    sleep_ms(5);
    CHECK(pyrnn_threads_for(work, 1e6, 8, 1e6) == 1, "an idle team woken for a small section");
    CHECK(pyrnn_threads_for(work, 1e6, 8, 1e9) == 2, "an idle team not woken for a large one");
    /* one-thread sections 0.2 ms apart: not before 10 ms of them (a late wake-up that makes a
     * gap of 2 ms only starts the count again), and by 0.5 s however busy the machine is */
    const double begin = now_ms();
    double woken = 0;
    while (!woken && now_ms() - begin < 500) {
        pyrnn_team(1, nothing, NULL);
        sleep_ms(0.2);
        if (pyrnn_threads_for(work, 1e6, 8, 1e6) == 2) woken = now_ms() - begin;
    }
    CHECK(woken >= 10, "the team woken after %.1f ms of steady sections (0: not in 0.5 s)",
          woken);
}

#if defined(__linux__)
/* Worker 1 of a team put on CPU `on`, allowed `allowed` afterwards (the scheduler leaves it on
 * `on` until it balances the load); `seen`: the CPU worker 1 ran on. */
struct placement {
    cpu_set_t on, allowed;
    int seen;
};

static void place_worker(void *ctx, int tid, int nth)
{
    struct placement *p = ctx;
    (void)nth;
    if (tid != 1) return;
    sched_setaffinity(0, sizeof p->on, &p->on);
    sched_setaffinity(0, sizeof p->allowed, &p->allowed);
}

static void see_worker(void *ctx, int tid, int nth)
{
    (void)nth;
    if (tid == 1) ((struct placement *)ctx)->seen = sched_getcpu();
}
#endif

/* threads.c's move of a woken worker off its caller's CPU (pyrnn_leave_cpu): a thread running
 * on one CPU of two it allows moves to the other and keeps both allowed; one that allows only
 * its CPU stays. Held on one CPU and then allowed a second, the thread is still on the first
 * unless the scheduler moved it in between, so that is tried a few times. Then a team started
 * while it counts as asleep (PYRNN_TEAM_IDLE_NS=1: always) whose worker was left on the
 * caller's CPU: the worker runs its share elsewhere. */
static void leave_cpu(void)
{
#if defined(__linux__)
    cpu_set_t saved, one, two, after;
    if (!pyrnn_has_thread_team() || sched_getaffinity(0, sizeof saved, &saved) != 0 ||
        CPU_COUNT(&saved) < 2) {
        printf("selftest --leave-cpu: no team or one CPU, nothing to move\n");
        return;
    }
    int c = -1, d = -1;
    for (int i = 0; i < CPU_SETSIZE && d < 0; i++)
        if (CPU_ISSET(i, &saved)) *(c < 0 ? &c : &d) = i;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    two = one;
    CPU_SET(d, &two);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0 && sched_getcpu() == c, "not held on %d", c);
    CHECK(!pyrnn_leave_cpu(c) && sched_getcpu() == c, "left the one CPU it allows");
    CHECK(!pyrnn_leave_cpu(-1), "moved for no CPU");
    int moved = 0;
    for (int tries = 0; tries < 10 && !moved; tries++) {
        sched_setaffinity(0, sizeof one, &one);
        sched_setaffinity(0, sizeof two, &two);
        moved = pyrnn_leave_cpu(c);
    }
    CHECK(moved && sched_getcpu() == d, "did not move from CPU %d to %d", c, d);
    CHECK(sched_getaffinity(0, sizeof after, &after) == 0 && CPU_EQUAL(&after, &two),
          "its affinity not given back");

    setenv("PYRNN_TEAM_IDLE_NS", "1", 1);
    pyrnn_set_num_threads(2);
    struct placement p = {one, two, -1};
    sched_setaffinity(0, sizeof one, &one);  /* the caller on c */
    pyrnn_team(2, place_worker, &p);          /* worker 1 on c too, allowed d */
    pyrnn_team(2, see_worker, &p);
    if (p.seen < 0)
        printf("selftest --leave-cpu: the runtime gave no second thread\n");
    else
        CHECK(p.seen == d, "a team's worker left on its caller's CPU %d ran on %d", c, p.seen);
    sched_setaffinity(0, sizeof saved, &saved);
#endif
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--isa") == 0) {  /* the path this machine picks */
        printf("%s\n", pyrnn_isa_name());
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--barrier") == 0) {  /* measured unless in the environment */
        const double ns = pyrnn_barrier_ns();
        printf("barrier: %.0f ns\n", ns);
        CHECK(ns >= 1, "barrier cost %g", ns);
        if (pyrnn_has_thread_team()) {  /* thresholds scale by ns / 60, within 1x..8x */
            const double scale = ns / 60 < 1 ? 1 : ns / 60 > 8 ? 8 : ns / 60;
            pyrnn_set_num_threads(2);
            /* sections large enough to wake a sleeping team, so its state does not matter */
            CHECK(pyrnn_threads_for(1.5e6 * scale, 1e6, 8, 1e9) == 1,
                  "one thread below the threshold");
            CHECK(pyrnn_threads_for(2.5e6 * scale, 1e6, 8, 1e9) == 2, "two threads above it");
            CHECK(pyrnn_threads_for(1e9, 1e6, 1, 1e9) == 1, "more threads than parts");
        }
        return failures != 0;
    }
    if (argc > 1 && strcmp(argv[1], "--leave-cpu") == 0) {
        leave_cpu();
        return failures != 0;
    }
    if (argc > 1 && strcmp(argv[1], "--idle") == 0) {  /* a team gone to sleep is left asleep */
        idle_team();
        return failures != 0;
    }
    /* the two-thread runs must get their teams however long the runs between them take */
    setenv("PYRNN_TEAM_IDLE_NS", "0", 1);
    /* T, B, I, H: singletons, vector tails, batch 1, one-step calls (few-row GEMMs past their
     * whole vectors, folded products, B read in place, panels packed as they go over two K
     * blocks), and large enough for two threads */
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1}, {4, 3, 5, 7}, {5, 13, 3, 20}, {6, 1, 8, 33}, {3, 2, 40, 1},
        {1, 1, 70, 20}, {1, 3, 40, 20}, {1, 5, 300, 37}, {4, 24, 90, 150},
    };
    bad_arguments();
    for (int threads = 1; threads <= 2; threads++) {
        pyrnn_set_num_threads(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int cell = 0; cell < N_CELLS; cell++)
                for (int flags = 0; flags < 4; flags++) {
                    const int64_t *z = shapes[s];
                    run_f32(cell, z[0], z[1], z[2], z[3], flags & 1, flags != 0, flags != 3,
                            flags & 2);
                    run_f64(cell, z[0], z[1], z[2], z[3], !(flags & 1), flags == 2, flags != 1,
                            !(flags & 2));
                }
    }
    printf("selftest (%s, %s): %d failure(s)\n", pyrnn_isa_name(),
           pyrnn_has_thread_team() ? "thread team" : "no thread team", failures);
    return failures != 0;
}
