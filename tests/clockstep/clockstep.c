/* clockstep: step the wall clock of one process and leave every other clock real.
 *
 *     LD_PRELOAD=/path/clockstep.so CLOCKSTEP_FILE=/path/offset prog
 *
 * The file holds an offset in seconds (a decimal number: negative, fractional, or both).
 * clock_gettime() of CLOCK_REALTIME and CLOCK_REALTIME_COARSE, gettimeofday() and time()
 * return the real time plus that offset; every other clock id (CLOCK_MONOTONIC above all)
 * passes through untouched, so sleeps, timeouts and monotonic deadlines stay real. That
 * is what libfaketime could not do for Python 3.11 (its time.sleep failed with EINVAL).
 *
 * The file is read again at most every 100 ms, judged on the real monotonic clock, so a
 * test steps the clock of a running process by renaming a new file onto the path. A
 * missing file, or one that holds no number (or one beyond +-1e9 s), keeps the offset
 * read last (0 until one is read).
 *
 * State: that cache (the offset and when it was read, each one 64-bit integer read and
 * written atomically, so threads may race to read the file and whichever stores last
 * stores a value the file held) and the addresses of libc's functions, looked up once.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#define NS 1000000000LL
#define READ_EVERY_NS (NS / 10)
#define MAX_OFFSET_S 1e9

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static int64_t offset_ns;  /* the cached offset */
static int64_t read_at_ns; /* monotonic time of its last read; 0: never read */

/* The next definition of `name` after ours (libc's), looked up once into `slot`. */
static void *real(const char *name, void **slot)
{
    void *fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (fn == NULL) {
        fn = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, fn, __ATOMIC_RELEASE);
    }
    return fn;
}

static int real_clock_gettime(clockid_t id, struct timespec *ts)
{
    static void *slot;
    return ((clock_gettime_fn)real("clock_gettime", &slot))(id, ts);
}

/* The offset in nanoseconds, from $CLOCKSTEP_FILE read at most every 100 ms. */
static int64_t offset(void)
{
    struct timespec mono;
    if (real_clock_gettime(CLOCK_MONOTONIC, &mono) != 0)
        return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    int64_t now = (int64_t)mono.tv_sec * NS + mono.tv_nsec;
    int64_t last = __atomic_load_n(&read_at_ns, __ATOMIC_RELAXED);
    if (last != 0 && now - last < READ_EVERY_NS)
        return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&read_at_ns, now, __ATOMIC_RELAXED);
    const char *path = getenv("CLOCKSTEP_FILE");
    FILE *file = path != NULL ? fopen(path, "re") : NULL;
    if (file != NULL) {
        double seconds;
        if (fscanf(file, "%lf", &seconds) == 1 && seconds > -MAX_OFFSET_S &&
            seconds < MAX_OFFSET_S)
            __atomic_store_n(&offset_ns, (int64_t)(seconds * NS), __ATOMIC_RELAXED);
        fclose(file);
    }
    return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
}

/* (sec, nsec) moved by `delta` nanoseconds, nsec kept in [0, 1e9). */
static void shift(time_t *sec, int64_t *nsec, int64_t delta)
{
    int64_t total = *nsec + delta % NS;
    *sec += (time_t)(delta / NS);
    if (total < 0) {
        total += NS;
        *sec -= 1;
    } else if (total >= NS) {
        total -= NS;
        *sec += 1;
    }
    *nsec = total;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int result = real_clock_gettime(id, ts);
    if (result == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        int64_t nsec = ts->tv_nsec;
        shift(&ts->tv_sec, &nsec, offset());
        ts->tv_nsec = (long)nsec;
    }
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    static void *slot;
    int result = ((gettimeofday_fn)real("gettimeofday", &slot))(tv, tz);
    if (result == 0) {
        int64_t nsec = (int64_t)tv->tv_usec * 1000;
        shift(&tv->tv_sec, &nsec, offset());
        tv->tv_usec = (suseconds_t)(nsec / 1000);
    }
    return result;
}

time_t time(time_t *out)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
