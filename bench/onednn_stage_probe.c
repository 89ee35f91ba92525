// #31 item 5's measurement, not part of the tool: §3.3/§3.4's stages of the paper's net for training on Debian's
// oneDNN 2.6.3 primitives in the channel-blocked layout its convolutions choose (nChw16c), each pass the best of five
// runs after a warm-up: ReLU's backward (eltwise, from the ReLU'd output), LRN across channels within each tower
// (the towers' halves of a blocked tensor are a tensor of twice the batch, as OneDnnNet's TowerView), forward for
// training and backward, and the 3×3, stride-2 max-pool forward for training (with its workspace) and backward. Set
// beside `alexnet bench stage 128x96x55x55` and `128x256x27x27` (our fused ReLU→LRN→pool on libtorch's N×C×H×W)
// it says what keeping the activations blocked between the convolutions would cost in these stages
// (docs/inference.md, "What is not done").
//
//   apt-get install libdnnl-dev    # or oneDNN v2.6.3's include/ on the include path
//   gcc -O2 bench/onednn_stage_probe.c -o /tmp/stage -l:libdnnl.so.2 && OMP_NUM_THREADS=2 /tmp/stage 128
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "oneapi/dnnl/dnnl.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static dnnl_engine_t eng; static dnnl_stream_t str;
static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
  dnnl_memory_t m; dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE);
  void *h; dnnl_memory_get_data_handle(m, &h); memset(h, 0, dnnl_memory_desc_get_size(md)); return m; }
static double timeit(dnnl_primitive_t p, int n, dnnl_exec_arg_t *a) {
  double best = 1e9;
  for (int r = 0; r < 6; r++) { double t0 = now(); dnnl_primitive_execute(p, str, n, a); dnnl_stream_wait(str); double t = now() - t0; if (r && t < best) best = t; }
  return best * 1e3; }
static const char *impl(const_dnnl_primitive_desc_t pd) { const char *s; dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s); return s; }
static dnnl_primitive_t make(dnnl_primitive_desc_t *pd, const void *desc, const_dnnl_primitive_desc_t hint) {
  dnnl_primitive_t p; if (dnnl_primitive_desc_create(pd, desc, NULL, eng, hint) || dnnl_primitive_create(&p, *pd)) { printf("unimplemented\n"); exit(1); }
  return p; }
static void stage(const char *name, long N, long C, long H, int towers) {
  long P = (H - 3) / 2 + 1;
  dnnl_dims_t xd = {N, C, H, H}, td = {N * towers, C / towers, H, H}, pd = {N, C, P, P};
  dnnl_memory_desc_t x, t, y;
  dnnl_memory_desc_init_by_tag(&x, 4, xd, dnnl_f32, dnnl_nChw16c);
  dnnl_memory_desc_init_by_tag(&t, 4, td, dnnl_f32, dnnl_nChw16c);   // the same bytes as x: each tower a batch
  dnnl_memory_desc_init_by_tag(&y, 4, pd, dnnl_f32, dnnl_nChw16c);
  dnnl_memory_t mx = mem(&x), mg = mem(&x), mg2 = mem(&x), my = mem(&y), mgy = mem(&y);
  // ReLU's backward from its output (the forward is the convolution's post-op)
  dnnl_eltwise_desc_t ef, eb; dnnl_primitive_desc_t efpd, ebpd;
  dnnl_eltwise_forward_desc_init(&ef, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd, &x, 0, 0);
  dnnl_primitive_t efp = make(&efpd, &ef, NULL);
  dnnl_eltwise_backward_desc_init(&eb, dnnl_eltwise_relu_use_dst_for_bwd, &x, &x, 0, 0);
  dnnl_primitive_t ebp = make(&ebpd, &eb, efpd);
  dnnl_exec_arg_t ea[] = {{DNNL_ARG_DST, mx}, {DNNL_ARG_DIFF_DST, mg}, {DNNL_ARG_DIFF_SRC, mg2}};
  double relu = timeit(ebp, 3, ea);
  // §3.3's LRN: n = 5, k = 2, α = 1e-4, β = 0.75, within each tower
  dnnl_lrn_desc_t lf, lb; dnnl_primitive_desc_t lfpd, lbpd;
  dnnl_lrn_forward_desc_init(&lf, dnnl_forward_training, dnnl_lrn_across_channels, &t, 5, 1e-4f, 0.75f, 2.0f);
  dnnl_primitive_t lfp = make(&lfpd, &lf, NULL);
  dnnl_memory_t tin = NULL, tout = NULL, tg = NULL, tg2 = NULL; void *h;
  dnnl_memory_get_data_handle(mx, &h); dnnl_memory_create(&tin, &t, eng, h);
  dnnl_memory_get_data_handle(mg, &h); dnnl_memory_create(&tout, &t, eng, h);
  dnnl_memory_get_data_handle(mg2, &h); dnnl_memory_create(&tg, &t, eng, h);
  dnnl_memory_t lws = mem(dnnl_primitive_desc_query_md(lfpd, dnnl_query_workspace_md, 0)), tg3 = mem(&t);
  dnnl_exec_arg_t lfa[] = {{DNNL_ARG_SRC, tin}, {DNNL_ARG_DST, tout}, {DNNL_ARG_WORKSPACE, lws}};
  double lrnf = timeit(lfp, 3, lfa);
  dnnl_lrn_backward_desc_init(&lb, dnnl_lrn_across_channels, &t, &t, 5, 1e-4f, 0.75f, 2.0f);
  dnnl_primitive_t lbp = make(&lbpd, &lb, lfpd);
  dnnl_exec_arg_t lba[] = {{DNNL_ARG_SRC, tin}, {DNNL_ARG_DIFF_DST, tg}, {DNNL_ARG_WORKSPACE, lws}, {DNNL_ARG_DIFF_SRC, tg3}};
  double lrnb = timeit(lbp, 4, lba);
  (void)tg2;
  // §3.4's overlapping max-pool, 3×3 windows, stride 2
  dnnl_pooling_v2_desc_t pf, pb; dnnl_primitive_desc_t pfpd, pbpd;
  dnnl_dims_t k = {3, 3}, s = {2, 2}, dil = {0, 0}, pad = {0, 0};
  dnnl_pooling_v2_forward_desc_init(&pf, dnnl_forward_training, dnnl_pooling_max, &x, &y, s, k, dil, pad, pad);
  dnnl_primitive_t pfp = make(&pfpd, &pf, NULL);
  dnnl_memory_t pws = mem(dnnl_primitive_desc_query_md(pfpd, dnnl_query_workspace_md, 0));
  dnnl_exec_arg_t pfa[] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}, {DNNL_ARG_WORKSPACE, pws}};
  double poolf = timeit(pfp, 3, pfa);
  dnnl_pooling_v2_backward_desc_init(&pb, dnnl_pooling_max, &x, &y, s, k, dil, pad, pad);
  dnnl_primitive_t pbp = make(&pbpd, &pb, pfpd);
  dnnl_exec_arg_t pba[] = {{DNNL_ARG_DIFF_DST, mgy}, {DNNL_ARG_WORKSPACE, pws}, {DNNL_ARG_DIFF_SRC, mg}};
  double poolb = timeit(pbp, 3, pba);
  printf("%s %ldx%ldx%ldx%ld: forward LRN %.1f + pool %.1f = %.1f ms; backward pool %.1f + LRN %.1f + ReLU %.1f = %.1f ms"
         "  [%s | %s | %s | %s | %s]\n", name, N, C, H, H, lrnf, poolf, lrnf + poolf, poolb, lrnb, relu, poolb + lrnb + relu,
         impl(lfpd), impl(lbpd), impl(pfpd), impl(pbpd), impl(ebpd));
}
int main(int argc, char **argv) {
  long N = argc > 1 ? atol(argv[1]) : 128;
  dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&str, eng, dnnl_stream_default_flags);
  stage("conv1's stage", N, 96, 55, 2);
  stage("conv2's stage", N, 256, 27, 2);
  return 0;
}
