/*
 * Integration-test workload: `exitcode CODE [WORDS...]` writes WORDS joined by
 * single spaces and a newline to stdout, "to stderr\n" to stderr, and exits
 * with CODE.  It checks that arguments, both output streams and the exit
 * status all travel intact between the runtime and the caller.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: exitcode CODE [WORDS...]\n", stderr);
        return 64;
    }
    for (int i = 2; i < argc; i++) {
        if (i > 2) {
            fputc(' ', stdout);
        }
        fputs(argv[i], stdout);
    }
    fputc('\n', stdout);
    fputs("to stderr\n", stderr);
    fflush(stdout);
    exit(atoi(argv[1]));
}
