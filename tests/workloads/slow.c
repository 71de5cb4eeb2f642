/*
 * Integration-test workload: `slow COUNT MS` prints "tick N" for N = 1..COUNT,
 * flushing after each line and sleeping MS milliseconds between lines.  It is
 * used to check that output reaches the caller while the workload still runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NS_PER_MS 1000000L
#define MS_PER_S 1000L

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / MS_PER_S, .tv_nsec = (ms % MS_PER_S) * NS_PER_MS};
    /* nanosleep reports an interruption with EINTR and the time left. */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: slow COUNT MS\n", stderr);
        return 64;
    }
    long count = atol(argv[1]);
    long ms = atol(argv[2]);
    for (long n = 1; n <= count; n++) {
        if (n > 1) {
            sleep_ms(ms);
        }
        printf("tick %ld\n", n);
        fflush(stdout);
    }
    return 0;
}
