// #31 item 5's measurement, not part of the tool: the paper's and owt's five convolutions for training
// (forward_training, backward data, backward weights) on Debian's oneDNN 2.6.3 primitives alone, direct and
// Winograd, each pass the best of five runs after a warm-up, in the layouts the primitives choose (no reorders
// counted). Set beside `alexnet bench layers -m paper -b 128` (libtorch's convolutions, the same passes) it says what
// a training path on these primitives could save (docs/inference.md, "What is not done").
//
//   apt-get install libdnnl-dev    # or oneDNN v2.6.3's include/ on the include path
//   gcc -O2 bench/onednn_training_probe.c -o /tmp/probe -l:libdnnl.so.2 && OMP_NUM_THREADS=2 /tmp/probe 128 [owt]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "oneapi/dnnl/dnnl.h"
#define CHECK(x) do { dnnl_status_t s = (x); if (s != dnnl_success) { return -1.0 - s; } } while (0)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static dnnl_engine_t eng; static dnnl_stream_t str;
static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
  dnnl_memory_t m; dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE);
  void *h; dnnl_memory_get_data_handle(m, &h); memset(h, 0, dnnl_memory_desc_get_size(md)); return m; }
static double timeit(dnnl_primitive_t p, int n, dnnl_exec_arg_t *a) {
  double best = 1e9; for (int r = 0; r < 6; r++) { double t0 = now(); dnnl_primitive_execute(p, str, n, a); dnnl_stream_wait(str); double t = now() - t0; if (r && t < best) best = t; }
  return best * 1e3; }
// returns fwd, bwd-data, bwd-weights ms in out[3]; negative on failure
static int layer(int alg, long N, long C, long K, long H, long k, long s, long p, long g, double out[3], char impl[3][64]) {
  long O = (H + 2 * p - k) / s + 1;
  dnnl_memory_desc_t src, w, b, dst;
  dnnl_dims_t sd = {N, C, H, H}, dd = {N, K, O, O}, bd = {K};
  dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a);
  if (g == 1) { dnnl_dims_t wd = {K, C, k, k}; dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_format_tag_any); }
  else { dnnl_dims_t wd = {g, K / g, C / g, k, k}; dnnl_memory_desc_init_by_tag(&w, 5, wd, dnnl_f32, dnnl_format_tag_any); }
  dnnl_dims_t st = {s, s}, pd = {p, p};
  dnnl_convolution_desc_t fd, bdd, bwd;
  if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &src, &w, &b, &dst, st, pd, pd)) return -1;
  dnnl_primitive_desc_t fpd, dpd, wpd;
  if (dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL)) return -1;
  const dnnl_memory_desc_t *srcm = dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0), *wm = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0),
    *dstm = dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
  dnnl_memory_t ms = mem(srcm), mw = mem(wm), mb = mem(&b), md = mem(dstm);
  const char *name; dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &name); snprintf(impl[0], 64, "%s", name);
  dnnl_primitive_t fp; dnnl_primitive_create(&fp, fpd);
  dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, md}};
  out[0] = timeit(fp, 4, fa);
  out[1] = out[2] = -1;
  if (!dnnl_convolution_backward_data_desc_init(&bdd, alg, &src, &w, &dst, st, pd, pd) && !dnnl_primitive_desc_create(&dpd, &bdd, NULL, eng, fpd)) {
    dnnl_memory_t dds = mem(dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_src_md, 0)), dw = mem(dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0)),
      ddd = mem(dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0));
    dnnl_primitive_desc_query(dpd, dnnl_query_impl_info_str, 0, &name); snprintf(impl[1], 64, "%s", name);
    dnnl_primitive_t dp; dnnl_primitive_create(&dp, dpd);
    dnnl_exec_arg_t da[] = {{DNNL_ARG_DIFF_SRC, dds}, {DNNL_ARG_WEIGHTS, dw}, {DNNL_ARG_DIFF_DST, ddd}};
    out[1] = timeit(dp, 3, da);
  }
  if (!dnnl_convolution_backward_weights_desc_init(&bwd, alg, &src, &w, &b, &dst, st, pd, pd) && !dnnl_primitive_desc_create(&wpd, &bwd, NULL, eng, fpd)) {
    dnnl_memory_t ws = mem(dnnl_primitive_desc_query_md(wpd, dnnl_query_src_md, 0)), dw = mem(dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0)),
      db = mem(&b), ddd = mem(dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0));
    dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &name); snprintf(impl[2], 64, "%s", name);
    dnnl_primitive_t wp; dnnl_primitive_create(&wp, wpd);
    dnnl_exec_arg_t wa[] = {{DNNL_ARG_SRC, ws}, {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, db}, {DNNL_ARG_DIFF_DST, ddd}};
    out[2] = timeit(wp, 4, wa);
  }
  return 0;
}
int main(int argc, char **argv) {
  long N = argc > 1 ? atol(argv[1]) : 128;
  dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&str, eng, dnnl_stream_default_flags);
  // name, C, K, H, k, s, p, groups (paper, batch N)
  struct { const char *n; long C, K, H, k, s, p, g, macs; } L[] = {
    {"conv1", 3, 96, 224, 11, 4, 2, 1, 105415200}, {"conv2", 96, 256, 27, 5, 1, 2, 2, 223948800},
    {"conv3", 256, 384, 13, 3, 1, 1, 1, 149520384}, {"conv4", 384, 384, 13, 3, 1, 1, 2, 112140288}, {"conv5", 384, 256, 13, 3, 1, 1, 2, 74760192}};
  if (argc > 2 && !strcmp(argv[2], "owt")) {
    L[0].K = 64; L[0].macs = 70276800; L[1].C = 64; L[1].K = 192; L[1].g = 1; L[1].macs = 223948800;
    L[2].C = 192; L[2].macs = 112140288; L[3].K = 256; L[3].g = 1; L[3].macs = 149520384; L[4].C = 256; L[4].g = 1; L[4].macs = 99680256;
  }
  for (int i = 0; i < 5; i++) for (int alg = 1; alg <= 2; alg++) {
    double o[3]; char impl[3][64] = {"-", "-", "-"};
    if (alg == 2 && L[i].k != 3) continue;
    if (layer(alg, N, L[i].C, L[i].K, L[i].H, L[i].k, L[i].s, L[i].p, L[i].g, o, impl)) { printf("%s %s: unimplemented\n", L[i].n, alg == 1 ? "direct" : "winograd"); continue; }
    double gf = 2.0 * L[i].macs * N / 1e9;
    printf("%s %-8s fwd %7.1f ms (%5.0f GFLOP/s) bwd-data %7.1f ms bwd-weights %7.1f ms  [%s | %s | %s]\n", L[i].n, alg == 1 ? "direct" : "winograd",
      o[0], gf / o[0] * 1e3, o[1], o[2], impl[0], impl[1], impl[2]);
  }
  return 0;
}
