/*
 * Integration-test workload: allocates 1 MiB blocks until malloc fails, prints
 * how many it got and exits 1 ("out of memory" on stderr), as a program that
 * needs the memory would.  Under a store memory limit, memory.grow returns -1
 * and malloc returns NULL; the workload must see that, not be killed.
 *
 * Each block is touched and its address is stored through a volatile sink:
 * otherwise clang -O2 removes the unused allocation, assumes it succeeds and
 * turns the loop into an infinite one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_BYTES (1024 * 1024)
#define MAX_BLOCKS 65536 /* 64 GiB: far beyond any 32-bit Wasm memory */

static void *volatile sink;

int main(void)
{
    unsigned long blocks = 0;
    while (blocks < MAX_BLOCKS) {
        void *p = malloc(BLOCK_BYTES);
        if (p == NULL) {
            break;
        }
        memset(p, (int)(blocks & 0xff), BLOCK_BYTES);
        sink = p;
        blocks++;
    }
    printf("%lu\n", blocks);
    if (blocks < MAX_BLOCKS) {
        fputs("alloc: out of memory\n", stderr);
        return 1;
    }
    return 0;
}
