// The edgedistill firmware runner.
//
// Builds a MicroInterpreter from the generated model array (model_data.cc), op resolver
// (model_op_resolver.h) and kTensorArenaSize (model_settings.h); runs the embedded test
// samples (test_data.cc), compares their outputs with the host TFLM outputs written by the
// export; times kNumTimedInvokes invokes; prints one machine-readable block between
// EDGEDISTILL_RESULT_BEGIN and EDGEDISTILL_RESULT_END, parsed by edgedistill/firmware/result.py.
//
// Per-operator profile (EDGEDISTILL_PROFILE, on by default; 0 leaves it out): a TFLM
// MicroProfilerInterface on the interpreter, recording only during kNumProfiledInvokes invokes after
// the timed ones (outside them it returns at once). Its events are printed in the format of TFLM's
// MicroProfiler::LogCsv ("Event","Tag","Ticks" then i,TAG,ticks), in the port's ticks (under QEMU
// -icount, SysTick ticks of the virtual clock: instructions, not time), parsed by edgedistill/profiles.py.
//
// An audio export (micro/ also holds the front end: frontend_*.h, audio_test_data.*) also runs
// the device's chain on the raw test audio: front end (TFLM Signal ops, reset per clip, one invoke
// per frame) -> g_feature_to_input table -> model; the features must equal the host TFLM
// interpreter's bit for bit and the class scores the host's (RunAudioChain).

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "model_data.h"
#include "model_op_resolver.h"
#include "model_settings.h"
#include "port.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#ifdef EDGEDISTILL_RECORD_ALLOCATIONS
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#endif
#include "tensorflow/lite/schema/schema_generated.h"
#include "test_data.h"
#if __has_include("frontend_settings.h")
#define EDGEDISTILL_AUDIO 1
#include "audio_test_data.h"
#include "frontend_data.h"
#include "frontend_op_resolver.h"
#include "frontend_settings.h"
#endif

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
#ifndef EDGEDISTILL_PROFILE
#define EDGEDISTILL_PROFILE 1
#endif
#ifndef EDGEDISTILL_NUM_PROFILED_INVOKES
#define EDGEDISTILL_NUM_PROFILED_INVOKES 1
#endif
// Operators x profiled invokes the profiler can hold (12 bytes each).
#ifndef EDGEDISTILL_PROFILE_MAX_EVENTS
#define EDGEDISTILL_PROFILE_MAX_EVENTS 256
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

// Records one event per operator invoke while enabled; a no-op otherwise (the timed invokes stay unprofiled
// but for one virtual call and a branch per operator).
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr uint32_t kMaxEvents = EDGEDISTILL_PROFILE_MAX_EVENTS;

  uint32_t BeginEvent(const char* tag) override {
    if (!enabled_ || num_events_ >= kMaxEvents) {
      dropped_ += enabled_ ? 1 : 0;
      return kMaxEvents;
    }
    tags_[num_events_] = tag;
    start_ticks_[num_events_] = static_cast<uint32_t>(edgedistill::port::Ticks());
    end_ticks_[num_events_] = start_ticks_[num_events_];
    return num_events_++;
  }

  void EndEvent(uint32_t event_handle) override {
    if (event_handle < kMaxEvents) end_ticks_[event_handle] = static_cast<uint32_t>(edgedistill::port::Ticks());
  }

  void Enable(bool enabled) { enabled_ = enabled; }

  // MicroProfiler::LogCsv's format, written through the port (no printf of 64-bit values needed).
  void LogCsv() const {
    edgedistill::port::Write("\"Event\",\"Tag\",\"Ticks\"\n");
    for (uint32_t i = 0; i < num_events_; ++i) {
      WriteU64(i);
      edgedistill::port::Write(",");
      edgedistill::port::Write(tags_[i] != nullptr ? tags_[i] : "?");
      edgedistill::port::Write(",");
      WriteU64(end_ticks_[i] - start_ticks_[i]);
      edgedistill::port::Write("\n");
    }
    WriteLineU64("profile_num_events", num_events_);
    WriteLineU64("profile_dropped_events", dropped_);
  }

 private:
  bool enabled_ = false;
  uint32_t num_events_ = 0;
  uint32_t dropped_ = 0;
  const char* tags_[kMaxEvents] = {};
  uint32_t start_ticks_[kMaxEvents] = {};
  uint32_t end_ticks_[kMaxEvents] = {};
};

int Fail(const char* reason) {
  WriteLineText("error", reason);
  WriteLineText("status", "error");
  edgedistill::port::Write("EDGEDISTILL_RESULT_END\n");
  edgedistill::port::Exit(2);
  return 2;
}

#ifdef EDGEDISTILL_AUDIO
#ifndef EDGEDISTILL_FRONTEND_ARENA_SIZE
#define EDGEDISTILL_FRONTEND_ARENA_SIZE kFrontEndArenaSize
#endif
#ifndef EDGEDISTILL_NUM_TIMED_CLIPS
#define EDGEDISTILL_NUM_TIMED_CLIPS 2
#endif
static_assert(kFeatureSize == kInputSize, "the model must take exactly the front end's features");
constexpr int kFrontEndArena = EDGEDISTILL_FRONTEND_ARENA_SIZE;
alignas(16) uint8_t frontend_arena[kFrontEndArena];
int8_t clip_features[kFeatureSize];

// One clip's features: the front end from its reset state (its noise estimate is state), one
// invoke per frame of kWindowSamples samples, kStrideSamples apart (as the host's FrontEndRunner).
bool ClipFeatures(tflite::MicroInterpreter& frontend, const int16_t* clip, int8_t* features) {
  if (frontend.Reset() != kTfLiteOk) return false;
  TfLiteTensor* input = frontend.input(0);
  const TfLiteTensor* output = frontend.output(0);
  for (int frame = 0; frame < kNumFrames; ++frame) {
    std::memcpy(input->data.raw, clip + frame * kStrideSamples, sizeof(int16_t) * kWindowSamples);
    if (frontend.Invoke() != kTfLiteOk) return false;
    std::memcpy(features + frame * kNumChannels, output->data.raw, kNumChannels);
  }
  return true;
}

// Raw audio -> front end -> table -> model for each test clip (the model's test samples, same
// order); then the front end's time per clip. Returns the number of clips that did not match.
int RunAudioChain(tflite::MicroInterpreter& model_interpreter) {
  static FrontEndOpResolver frontend_resolver;
  if (RegisterFrontEndOps(frontend_resolver) != kTfLiteOk) return Fail("register_frontend_ops_failed");
  static tflite::MicroInterpreter frontend(tflite::GetModel(g_frontend_data), frontend_resolver, frontend_arena,
                                           kFrontEndArena);
  if (frontend.AllocateTensors() != kTfLiteOk) return Fail("frontend_allocate_tensors_failed");
  if (frontend.input(0)->bytes != sizeof(int16_t) * kWindowSamples) return Fail("frontend_input_size_mismatch");
  if (frontend.output(0)->bytes != static_cast<size_t>(kNumChannels)) return Fail("frontend_output_size_mismatch");
  WriteLineU64("frontend_model_size_bytes", g_frontend_data_len);
  WriteLineU64("frontend_arena_size_bytes", kFrontEndArena);
  WriteLineU64("frontend_arena_used_bytes", frontend.arena_used_bytes());

  FeatureInputType* model_input = reinterpret_cast<FeatureInputType*>(model_interpreter.input(0)->data.raw);
  const TfLiteTensor* output = model_interpreter.output(0);
  const int num_clips = kNumAudioTestSamples < kNumTestSamples ? kNumAudioTestSamples : kNumTestSamples;
  int feature_mismatches = 0;
  int output_mismatches = 0;
  for (int clip = 0; clip < num_clips; ++clip) {
    if (!ClipFeatures(frontend, g_test_audio[clip], clip_features)) return Fail("frontend_invoke_failed");
    feature_mismatches += std::memcmp(clip_features, g_test_expected_features[clip], kFeatureSize) == 0 ? 0 : 1;
    for (int i = 0; i < kFeatureSize; ++i) model_input[i] = g_feature_to_input[clip_features[i] + 128];
    if (model_interpreter.Invoke() != kTfLiteOk) return Fail("invoke_failed");
    const ModelOutputType* values = reinterpret_cast<const ModelOutputType*>(output->data.raw);
    bool matched = true;
    for (int i = 0; i < kOutputSize; ++i) matched = matched && Matches(values[i], g_test_expected_outputs[clip][i]);
    output_mismatches += matched ? 0 : 1;
  }
  WriteLineU64("audio_num_clips", num_clips);
  WriteLineU64("audio_num_feature_mismatches", feature_mismatches);
  WriteLineU64("audio_num_output_mismatches", output_mismatches);

  const uint64_t start = edgedistill::port::Ticks();
  for (int run = 0; run < EDGEDISTILL_NUM_TIMED_CLIPS; ++run) {
    if (!ClipFeatures(frontend, g_test_audio[0], clip_features)) return Fail("frontend_invoke_failed");
  }
  WriteLineU64("frontend_ticks_total", edgedistill::port::Ticks() - start);
  WriteLineU64("frontend_num_timed_clips", EDGEDISTILL_NUM_TIMED_CLIPS);
  WriteLineU64("frontend_invokes_per_clip", kNumFrames);
  return feature_mismatches > output_mismatches ? feature_mismatches : output_mismatches;
}
#endif

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

#if EDGEDISTILL_PROFILE
  static OpProfiler profiler;
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize, nullptr, &profiler);
#else
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
#endif
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

#ifdef EDGEDISTILL_AUDIO
  num_mismatched += RunAudioChain(interpreter);
#endif

  const uint64_t start = edgedistill::port::Ticks();
  for (int run = 0; run < kNumTimedInvokes; ++run) {
    if (interpreter.Invoke() != kTfLiteOk) return Fail("invoke_failed");
  }
  const uint64_t ticks = edgedistill::port::Ticks() - start;
  WriteLineU64("num_timed_invokes", kNumTimedInvokes);
  WriteLineU64("ticks_total", ticks);
  WriteLineU64("ticks_per_second", edgedistill::port::TicksPerSecond());
  WriteLineText("tick_source", edgedistill::port::TickSource());
#if EDGEDISTILL_PROFILE
  profiler.Enable(true);
  const uint64_t profile_start = edgedistill::port::Ticks();
  for (int run = 0; run < EDGEDISTILL_NUM_PROFILED_INVOKES; ++run) {
    if (interpreter.Invoke() != kTfLiteOk) return Fail("invoke_failed");
  }
  const uint64_t profile_ticks = edgedistill::port::Ticks() - profile_start;
  profiler.Enable(false);
  WriteLineU64("profile_runs", EDGEDISTILL_NUM_PROFILED_INVOKES);
  WriteLineU64("profile_ticks_total", profile_ticks);
  profiler.LogCsv();
#endif
  WriteLineU64("num_mismatched", num_mismatched);
  WriteLineText("status", num_mismatched == 0 ? "pass" : "fail");
  edgedistill::port::Write("EDGEDISTILL_RESULT_END\n");
  edgedistill::port::Exit(num_mismatched == 0 ? 0 : 1);
  return num_mismatched == 0 ? 0 : 1;
}
