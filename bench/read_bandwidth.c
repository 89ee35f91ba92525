// #31's measurement, not part of the tool: how fast 2 threads read 234 MB (owt's fc6, fc7 and fc8 weights in float32)
// once, each 64-byte line multiplied into a running sum as a batch-of-one fully connected layer does. Set beside the
// engine's fc6/fc7/fc8 at batch 1 it says whether those layers run at the memory's rate (docs/inference.md,
// "owt at batch 1").
//
//   gcc -O3 -march=native -fopenmp bench/read_bandwidth.c -o /tmp/bw && /tmp/bw 2
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  size_t n = 234ull * 1024 * 1024 / 4;
  float *a = aligned_alloc(64, n * 4), *x = aligned_alloc(64, 8192 * 4);
  for (size_t i = 0; i < n; i++) a[i] = 1e-3f * (i % 97);
  for (int i = 0; i < 8192; i++) x[i] = 1;
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  for (int r = 0; r < 7; r++) {
    double t0 = now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_load_ps(a + i), _mm512_load_ps(x + (i & 8191)), s0);
        s1 = _mm512_fmadd_ps(_mm512_load_ps(a + i + 16), _mm512_load_ps(x + ((i + 16) & 8191)), s1);
        s2 = _mm512_fmadd_ps(_mm512_load_ps(a + i + 32), _mm512_load_ps(x + ((i + 32) & 8191)), s2);
        s3 = _mm512_fmadd_ps(_mm512_load_ps(a + i + 48), _mm512_load_ps(x + ((i + 48) & 8191)), s3);
      }
      total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    }
    double t = now() - t0;
    printf("%d threads: %.2f ms, %.1f GB/s (%g)\n", threads, t * 1e3, n * 4 / t / 1e9, total);
  }
  return 0;
}
