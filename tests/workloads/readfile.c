/*
 * Integration-test workload: `readfile IN [OUT TEXT]` copies the file IN to
 * stdout; if OUT is given, it then writes TEXT to OUT.  Any failure prints
 * "readfile: PATH: strerror" to stderr and exits 1.  With IN inside a
 * read-only preopen and OUT beside it, the read must work and the write must
 * fail.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define BUF_BYTES 65536

static int fail(const char *path)
{
    fprintf(stderr, "readfile: %s: %s\n", path, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fputs("usage: readfile IN [OUT TEXT]\n", stderr);
        return 64;
    }
    FILE *in = fopen(argv[1], "rb");
    if (in == NULL) {
        return fail(argv[1]);
    }
    static char buf[BUF_BYTES];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    if (ferror(in)) {
        return fail(argv[1]);
    }
    fclose(in);
    fflush(stdout);

    if (argc == 4) {
        FILE *out = fopen(argv[2], "wb");
        if (out == NULL) {
            return fail(argv[2]);
        }
        size_t len = strlen(argv[3]);
        if (fwrite(argv[3], 1, len, out) != len || fclose(out) != 0) {
            return fail(argv[2]);
        }
    }
    return 0;
}
