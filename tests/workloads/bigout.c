/*
 * Integration-test workload: `bigout MIB [both]` writes MIB MiB of a fixed
 * pattern to stdout (and the same to stderr if the second argument is
 * "both"), in 64 KiB writes.  Byte i of the stream is (i * 31) mod 251; 251 is
 * prime, so the pattern does not repeat on any power-of-two boundary and a
 * dropped or duplicated chunk changes the digest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WRITE_BYTES (64UL * 1024UL)
#define MIB (1024UL * 1024UL)
#define PATTERN_MUL 31UL
#define PATTERN_MOD 251UL
#define MAX_MIB 4096UL

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: bigout MIB [both]\n", stderr);
        return 64;
    }
    char *end;
    unsigned long mib = strtoul(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || mib > MAX_MIB) {
        fputs("bigout: MIB must be an integer 0..4096\n", stderr);
        return 64;
    }
    int both = argc > 2 && strcmp(argv[2], "both") == 0;

    static unsigned char buf[WRITE_BYTES];
    unsigned long total = mib * MIB;
    for (unsigned long off = 0; off < total; off += WRITE_BYTES) {
        for (unsigned long i = 0; i < WRITE_BYTES; i++) {
            buf[i] = (unsigned char)(((off + i) * PATTERN_MUL) % PATTERN_MOD);
        }
        if (write_all(1, buf, WRITE_BYTES) != 0 || (both && write_all(2, buf, WRITE_BYTES) != 0)) {
            return 1;
        }
    }
    return 0;
}
