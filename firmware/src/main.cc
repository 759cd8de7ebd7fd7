// The edgedistill firmware runner.
//
// Builds a MicroInterpreter from the generated model array (model_data.cc), op resolver
// (model_op_resolver.h) and kTensorArenaSize (model_settings.h); runs the embedded test
// samples (test_data.cc), compares their outputs with the host TFLM outputs written by the
// export; times kNumTimedInvokes invokes; prints one machine-readable block between
// EDGEDISTILL_RESULT_BEGIN and EDGEDISTILL_RESULT_END, parsed by edgedistill/firmware/result.py.

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "model_data.h"
#include "model_op_resolver.h"
#include "model_settings.h"
#include "port.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#ifdef EDGEDISTILL_RECORD_ALLOCATIONS
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#endif
#include "tensorflow/lite/schema/schema_generated.h"
#include "test_data.h"

#ifndef EDGEDISTILL_TENSOR_ARENA_SIZE
#define EDGEDISTILL_TENSOR_ARENA_SIZE kTensorArenaSize
#endif
#ifndef EDGEDISTILL_NUM_TIMED_INVOKES
#define EDGEDISTILL_NUM_TIMED_INVOKES 10
#endif
// Integer outputs must match the host TFLM outputs within this many quantization steps.
// 0 by default: TFLM's reference kernels are deterministic integer code, and CMSIS-NN is
// tested bit-exact against them. Float outputs use a relative tolerance of 1e-5 instead.
#ifndef EDGEDISTILL_OUTPUT_TOLERANCE
#define EDGEDISTILL_OUTPUT_TOLERANCE 0
#endif
#ifndef EDGEDISTILL_BOARD
#define EDGEDISTILL_BOARD "unknown"
#endif
#ifndef EDGEDISTILL_KERNELS
#define EDGEDISTILL_KERNELS "unknown"
#endif

namespace {

constexpr int kArenaSize = EDGEDISTILL_TENSOR_ARENA_SIZE;
constexpr int kNumTimedInvokes = EDGEDISTILL_NUM_TIMED_INVOKES;
alignas(16) uint8_t tensor_arena[kArenaSize];

// newlib-nano's printf has no 64-bit or float conversions: format those by hand.
void WriteU64(uint64_t value) {
  char digits[21];
  int index = 20;
  digits[index] = '\0';
  do {
    digits[--index] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  edgedistill::port::Write(&digits[index]);
}

void WriteI64(int64_t value) {
  if (value < 0) {
    edgedistill::port::Write("-");
    WriteU64(static_cast<uint64_t>(-(value + 1)) + 1);
  } else {
    WriteU64(static_cast<uint64_t>(value));
  }
}

void WriteHex32(uint32_t value) {
  static const char kHex[] = "0123456789abcdef";
  char text[11] = "0x";
  for (int i = 0; i < 8; ++i) text[2 + i] = kHex[(value >> (28 - 4 * i)) & 0xF];
  text[10] = '\0';
  edgedistill::port::Write(text);
}

void WriteKey(const char* key) {
  edgedistill::port::Write(key);
  edgedistill::port::Write("=");
}

void WriteLineU64(const char* key, uint64_t value) {
  WriteKey(key);
  WriteU64(value);
  edgedistill::port::Write("\n");
}

void WriteLineText(const char* key, const char* value) {
  WriteKey(key);
  edgedistill::port::Write(value);
  edgedistill::port::Write("\n");
}

// One output element: integers in decimal; floats as their IEEE-754 bits (exact, and no
// float printf is needed).
template <typename T>
void WriteElement(T value) {
  if constexpr (std::is_floating_point_v<T>) {
    uint32_t bits;
    static_assert(sizeof(value) == sizeof(bits), "float outputs must be 32-bit");
    std::memcpy(&bits, &value, sizeof(bits));
    WriteHex32(bits);
  } else {
    WriteI64(static_cast<int64_t>(value));
  }
}

template <typename T>
bool Matches(T actual, T expected) {
  if constexpr (std::is_floating_point_v<T>) {
    const float difference = actual > expected ? actual - expected : expected - actual;
    const float scale = expected > 0 ? expected : -expected;
    return difference <= 1e-5f * (scale > 1.0f ? scale : 1.0f);
  } else {
    const int64_t difference = static_cast<int64_t>(actual) - static_cast<int64_t>(expected);
    return difference <= EDGEDISTILL_OUTPUT_TOLERANCE && -difference <= EDGEDISTILL_OUTPUT_TOLERANCE;
  }
}

int Fail(const char* reason) {
  WriteLineText("error", reason);
  WriteLineText("status", "error");
  edgedistill::port::Write("EDGEDISTILL_RESULT_END\n");
  edgedistill::port::Exit(2);
  return 2;
}

}  // namespace

int main() {
  edgedistill::port::Init();
  edgedistill::port::Write("EDGEDISTILL_RESULT_BEGIN\n");
  WriteLineU64("format_version", 1);
  WriteLineText("board", EDGEDISTILL_BOARD);
  WriteLineText("kernels", EDGEDISTILL_KERNELS);
  WriteLineU64("pointer_bytes", sizeof(void*));
  WriteLineU64("model_size_bytes", g_model_data_len);
  WriteLineU64("arena_size_bytes", kArenaSize);

  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("model_schema_version_mismatch");

  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return Fail("register_ops_failed");

  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("allocate_tensors_failed");
  // The 32-bit truth for kTensorArenaSize: what this target's allocator used.
  WriteLineU64("arena_used_bytes", interpreter.arena_used_bytes());

#ifdef EDGEDISTILL_RECORD_ALLOCATIONS
  // Diagnostics for the 32-bit arena estimate: the same model under TFLM's recording
  // allocator (what the host Python interpreter uses), with its per-struct breakdown.
  {
    alignas(16) static uint8_t recording_arena[kArenaSize + 4096];
    static tflite::RecordingMicroInterpreter recording(model, resolver, recording_arena, sizeof(recording_arena));
    if (recording.AllocateTensors() == kTfLiteOk) {
      WriteLineU64("recording_arena_used_bytes", recording.arena_used_bytes());
      recording.GetMicroAllocator().PrintAllocations();
    }
  }
#endif

  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->bytes != sizeof(ModelInputType) * kInputSize) return Fail("input_size_mismatch");
  if (output->bytes != sizeof(ModelOutputType) * kOutputSize) return Fail("output_size_mismatch");

  WriteLineU64("num_test_samples", kNumTestSamples);
  int num_mismatched = 0;
  for (int sample = 0; sample < kNumTestSamples; ++sample) {
    std::memcpy(input->data.raw, g_test_inputs[sample], input->bytes);
    if (interpreter.Invoke() != kTfLiteOk) return Fail("invoke_failed");
    const ModelOutputType* values = reinterpret_cast<const ModelOutputType*>(output->data.raw);
    bool matched = true;
    int argmax = 0;
    for (int i = 0; i < kOutputSize; ++i) {
      matched = matched && Matches(values[i], g_test_expected_outputs[sample][i]);
      if (values[i] > values[argmax]) argmax = i;
    }
    num_mismatched += matched ? 0 : 1;
    edgedistill::port::Write("sample=");
    WriteU64(sample);
    edgedistill::port::Write(" label=");
    WriteI64(g_test_labels[sample]);
    edgedistill::port::Write(" argmax=");
    WriteI64(argmax);
    edgedistill::port::Write(matched ? " match=1 output=" : " match=0 output=");
    for (int i = 0; i < kOutputSize; ++i) {
      if (i) edgedistill::port::Write(",");
      WriteElement(values[i]);
    }
    edgedistill::port::Write("\n");
  }

  const uint64_t start = edgedistill::port::Ticks();
  for (int run = 0; run < kNumTimedInvokes; ++run) {
    if (interpreter.Invoke() != kTfLiteOk) return Fail("invoke_failed");
  }
  const uint64_t ticks = edgedistill::port::Ticks() - start;
  WriteLineU64("num_timed_invokes", kNumTimedInvokes);
  WriteLineU64("ticks_total", ticks);
  WriteLineU64("ticks_per_second", edgedistill::port::TicksPerSecond());
  WriteLineText("tick_source", edgedistill::port::TickSource());
  WriteLineU64("num_mismatched", num_mismatched);
  WriteLineText("status", num_mismatched == 0 ? "pass" : "fail");
  edgedistill::port::Write("EDGEDISTILL_RESULT_END\n");
  edgedistill::port::Exit(num_mismatched == 0 ? 0 : 1);
  return num_mismatched == 0 ? 0 : 1;
}
