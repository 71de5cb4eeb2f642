/*
 * CPU-bound benchmark: SHA-256 (FIPS 180-4) over N MiB of deterministically
 * generated data, N from argv[1] (default 64).  It prints the hex digest and
 * a newline, nothing else.
 *
 * The same source builds to WASI and natively, so that the cost of running in
 * a Keep can be compared against the host CPU (see examples/build.sh).
 *
 * The data generator is a 32-bit xorshift (Marsaglia, shifts 13/17/5) seeded
 * with 0x2545F491, emitting each state as 4 little-endian bytes.  Tests
 * reimplement it to check the digest with an independent SHA-256.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MIB 64UL
#define MAX_MIB 65536UL
#define CHUNK_BYTES (64UL * 1024UL) /* a multiple of the 64-byte block */
#define MIB (1024UL * 1024UL)
#define SEED 0x2545F491u

struct sha256 {
    uint32_t h[8];
    uint64_t total_bytes;
    uint8_t buf[64];
    size_t buf_len;
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t block[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + s1 + ch + K[i] + w[i];
        uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->total_bytes = 0;
    s->buf_len = 0;
}

static void sha256_update(struct sha256 *s, const uint8_t *p, size_t n)
{
    s->total_bytes += n;
    if (s->buf_len) {
        size_t take = 64 - s->buf_len < n ? 64 - s->buf_len : n;
        memcpy(s->buf + s->buf_len, p, take);
        s->buf_len += take;
        p += take;
        n -= take;
        if (s->buf_len == 64) {
            compress(s->h, s->buf);
            s->buf_len = 0;
        }
    }
    for (; n >= 64; p += 64, n -= 64) {
        compress(s->h, p);
    }
    memcpy(s->buf, p, n);
    s->buf_len = n;
}

static void sha256_final(struct sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->total_bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t pad_len = (s->buf_len < 56 ? 56 : 120) - s->buf_len;
    for (int i = 0; i < 8; i++) {
        pad[pad_len + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    sha256_update(s, pad, pad_len + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

int main(int argc, char **argv)
{
    unsigned long mib = DEFAULT_MIB;
    if (argc > 1) {
        char *end;
        mib = strtoul(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || mib > MAX_MIB) {
            fprintf(stderr, "usage: sha256sum [MiB]  (0..%lu, default %lu)\n", MAX_MIB, DEFAULT_MIB);
            return 2;
        }
    }

    static uint8_t chunk[CHUNK_BYTES];
    struct sha256 s;
    sha256_init(&s);
    uint32_t x = SEED;
    unsigned long chunks = mib * (MIB / CHUNK_BYTES);
    for (unsigned long c = 0; c < chunks; c++) {
        for (size_t i = 0; i < CHUNK_BYTES; i += 4) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            chunk[i] = (uint8_t)x;
            chunk[i + 1] = (uint8_t)(x >> 8);
            chunk[i + 2] = (uint8_t)(x >> 16);
            chunk[i + 3] = (uint8_t)(x >> 24);
        }
        sha256_update(&s, chunk, CHUNK_BYTES);
    }
    uint8_t digest[32];
    sha256_final(&s, digest);
    for (int i = 0; i < 32; i++) {
        printf("%02x", digest[i]);
    }
    putchar('\n');
    return 0;
}
