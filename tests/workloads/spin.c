/*
 * Integration-test workload: prints "spinning", flushes, then never returns.
 * It exercises CPU budgets (fuel) and wall-clock deadlines (epochs).
 *
 * The counter is volatile: an infinite loop without side effects is undefined
 * behaviour in C and the optimiser may delete it, so every iteration must
 * perform an observable store.
 */
#include <stdio.h>

static volatile unsigned long counter;

int main(void)
{
    fputs("spinning\n", stdout);
    fflush(stdout);
    for (;;) {
        counter = counter + 1;
    }
}
