/*
 * The first workload a new user deploys: a greeting, and the arguments it was
 * given, so that argument passing into a Keep can be seen at a glance.
 */
#include <stdio.h>

int main(int argc, char **argv)
{
    fputs("Hello from a Keep!\n", stdout);
    if (argc > 1) {
        fputs("args:", stdout);
        for (int i = 1; i < argc; i++) {
            fputc(' ', stdout);
            fputs(argv[i], stdout);
        }
        fputc('\n', stdout);
    }
    return 0;
}
