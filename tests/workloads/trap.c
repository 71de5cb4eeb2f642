/*
 * Integration-test workload: prints "before trap", flushes it so that the
 * runtime has already received it, then executes the `unreachable`
 * instruction.  Output written before a trap must not be lost.
 */
#include <stdio.h>

int main(void)
{
    fputs("before trap\n", stdout);
    fflush(stdout);
    __builtin_trap();
}
