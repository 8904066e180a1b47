/* A real external TFLite delegate for tests (plugin ABI of tflite::ExternalDelegate).
 *
 * By default it claims float32 ADD nodes without fused activation whose two inputs have the same
 * element count, and custom ops named edgetpu-custom-op of that form (computed as the same
 * elementwise add: the stand-in for libedgetpu); it executes them itself and counts what it did.
 *
 * Options: claim=ADD|<custom op name>[,...]  fail=1 (create returns NULL)  device=...  label=...
 * Environment: EDGEQ_TEST_DELEGATE_NO_DEVICE=1 makes create return NULL like libedgetpu without a TPU.
 * Unknown keys are rejected through report_error, like a strict vendor delegate.
 * Counters are read by the tests with ctypes: edgeq_test_delegate_stats().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tflite_min.h"

#define MAX_CLAIMS 8
#define MAX_NODES 256

typedef struct {
  char claims[MAX_CLAIMS][64];
  int n_claims;
} DelegateData;

typedef struct {
  int n;
  int in0[MAX_NODES], in1[MAX_NODES], out[MAX_NODES];
} KernelData;

static int g_created, g_destroyed, g_claimed, g_partitions, g_invokes, g_nodes_run;
static char g_options[512];

void edgeq_test_delegate_stats(int* created, int* destroyed, int* claimed, int* partitions,
                               int* invokes, int* nodes_run) {
  *created = g_created; *destroyed = g_destroyed; *claimed = g_claimed;
  *partitions = g_partitions; *invokes = g_invokes; *nodes_run = g_nodes_run;
}

const char* edgeq_test_delegate_options(void) { return g_options; }

void edgeq_test_delegate_reset(void) {
  g_created = g_destroyed = g_claimed = g_partitions = g_invokes = g_nodes_run = 0;
  g_options[0] = 0;
}

static int claims(const DelegateData* d, const TfLiteRegistration* reg) {
  for (int i = 0; i < d->n_claims; ++i) {
    if (strcmp(d->claims[i], "ADD") == 0 && reg->builtin_code == kTfLiteBuiltinAdd) return 1;
    if (reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name &&
        strcmp(d->claims[i], reg->custom_name) == 0) return 1;
  }
  return 0;
}

static int supported(TfLiteContext* ctx, const TfLiteNode* node, const TfLiteRegistration* reg) {
  if (node->inputs->size != 2 || node->outputs->size != 1) return 0;
  const TfLiteTensor* a = &ctx->tensors[node->inputs->data[0]];
  const TfLiteTensor* b = &ctx->tensors[node->inputs->data[1]];
  const TfLiteTensor* o = &ctx->tensors[node->outputs->data[0]];
  if (a->type != kTfLiteFloat32 || b->type != kTfLiteFloat32 || o->type != kTfLiteFloat32) return 0;
  if (a->bytes != b->bytes || a->bytes != o->bytes) return 0;
  if (reg->builtin_code == kTfLiteBuiltinAdd && node->builtin_data &&
      ((const TfLiteAddParams*)node->builtin_data)->activation != 0) return 0;
  return 1;
}

static void* kernel_init(TfLiteContext* ctx, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  KernelData* k = calloc(1, sizeof(KernelData));
  for (int i = 0; i < params->nodes_to_replace->size && k->n < MAX_NODES; ++i) {
    TfLiteNode* node; TfLiteRegistration* reg;
    if (ctx->GetNodeAndRegistration(ctx, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk) {
      free(k);
      return NULL;
    }
    k->in0[k->n] = node->inputs->data[0];
    k->in1[k->n] = node->inputs->data[1];
    k->out[k->n] = node->outputs->data[0];
    k->n++;
  }
  g_partitions++;
  return k;
}

static void kernel_free(TfLiteContext* ctx, void* buffer) { (void)ctx; free(buffer); }

static TfLiteStatus kernel_prepare(TfLiteContext* ctx, TfLiteNode* node) { (void)ctx; (void)node; return kTfLiteOk; }

static TfLiteStatus kernel_invoke(TfLiteContext* ctx, TfLiteNode* node) {
  const KernelData* k = (const KernelData*)node->user_data;
  for (int i = 0; i < k->n; ++i) {
    const TfLiteTensor* a = &ctx->tensors[k->in0[i]];
    const TfLiteTensor* b = &ctx->tensors[k->in1[i]];
    TfLiteTensor* o = &ctx->tensors[k->out[i]];
    size_t n = o->bytes / sizeof(float);
    for (size_t j = 0; j < n; ++j) o->data.f[j] = a->data.f[j] + b->data.f[j];
    g_nodes_run++;
  }
  g_invokes++;
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext* ctx, TfLiteDelegate* delegate) {
  const DelegateData* d = (const DelegateData*)delegate->data_;
  TfLiteIntArray* plan;
  if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray* chosen = malloc(sizeof(int) * (1 + (size_t)plan->size));
  chosen->size = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node; TfLiteRegistration* reg;
    if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    if (claims(d, reg) && supported(ctx, node, reg)) chosen->data[chosen->size++] = plan->data[i];
  }
  g_claimed += chosen->size;
  TfLiteStatus status = kTfLiteOk;
  if (chosen->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof(kernel));
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kTfLiteBuiltinCustom;
    kernel.custom_name = "EdgeqTestDelegate";
    kernel.version = 1;
    status = ctx->ReplaceNodeSubsetsWithDelegateKernels(ctx, kernel, chosen, delegate);
  }
  free(chosen);
  return status;
}

static void append_option(const char* key, const char* value) {
  size_t used = strlen(g_options);
  snprintf(g_options + used, sizeof(g_options) - used, "%s%s=%s", used ? ";" : "", key, value);
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  char msg[256];
  DelegateData* d = calloc(1, sizeof(DelegateData));
  strcpy(d->claims[0], "ADD");
  strcpy(d->claims[1], "edgetpu-custom-op");
  d->n_claims = 2;
  g_options[0] = 0;
  const char* no_device = getenv("EDGEQ_TEST_DELEGATE_NO_DEVICE");
  if (no_device && strcmp(no_device, "1") == 0) {
    /* what libedgetpu does when no Edge TPU is attached: report and return NULL */
    if (report_error) report_error("edgeq test delegate: no device found (EDGEQ_TEST_DELEGATE_NO_DEVICE=1)");
    free(d);
    return NULL;
  }
  for (size_t i = 0; i < n; ++i) {
    append_option(keys[i], values[i]);
    if (strcmp(keys[i], "fail") == 0 && strcmp(values[i], "0") != 0) {
      if (report_error) report_error("edgeq test delegate: creation refused (fail option set)");
      free(d);
      return NULL;
    } else if (strcmp(keys[i], "claim") == 0) {
      d->n_claims = 0;
      char buf[256];
      snprintf(buf, sizeof(buf), "%s", values[i]);
      for (char* tok = strtok(buf, ","); tok && d->n_claims < MAX_CLAIMS; tok = strtok(NULL, ",")) {
        snprintf(d->claims[d->n_claims++], 64, "%s", tok);
      }
    } else if (strcmp(keys[i], "device") != 0 && strcmp(keys[i], "label") != 0) {
      snprintf(msg, sizeof(msg), "edgeq test delegate: unknown option '%s' (valid: claim, fail, device, label)",
               keys[i]);
      if (report_error) report_error(msg);
      free(d);
      return NULL;
    }
  }
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->data_ = d;
  delegate->Prepare = delegate_prepare;
  /* Like libedgetpu: without this flag the runtime prepares every op before delegation (to look
     for dynamic tensors), which fails on custom ops only the delegate can run. */
  delegate->flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  g_created++;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (!delegate) return;
  free(delegate->data_);
  free(delegate);
  g_destroyed++;
}
