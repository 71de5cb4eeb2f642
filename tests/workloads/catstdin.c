/*
 * Integration-test workload: copies stdin to stdout byte for byte, so that
 * stdin delivery (bytes or a file) can be checked end to end.
 */
#include <stdio.h>

#define BUF_BYTES 65536

int main(void)
{
    static char buf[BUF_BYTES];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (fwrite(buf, 1, n, stdout) != n) {
            return 1;
        }
    }
    return ferror(stdin) ? 1 : 0;
}
