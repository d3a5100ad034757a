// The interface between the host code (cuda_ops.cpp: ATen, checks, allocation,
// dispatcher registration) and the kernels (*.cu). It holds no ATen types on
// purpose: the .cu files then include only light c10 headers, and nvcc's four
// device passes (sm_80/86/89/90) do not each parse all of ATen (about 60 s of
// CPU per pass and file). That keeps the CUDA build to about a minute.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cube_items.h"

namespace cubecrop {
namespace cuda {

// Element types the launchers dispatch on (the host maps at::ScalarType here).
// kUInt8..kUInt64 also stand for any type of that width in copy-only crops.
enum class DType : int { kHalf, kBFloat16, kFloat, kDouble, kUInt8, kUInt16, kUInt32, kUInt64 };

// Every kernel runs 32 x 8 = 256 threads per block (8 warps); the block reduction is written for it.
constexpr int kThreads = cuda_items::kLanes * cuda_items::kRowsY;
static_assert(kThreads == 256, "block_sum3 and __launch_bounds__ assume 256 threads");
constexpr int kWarps = kThreads / 32;
// gridDim.y and gridDim.z are limited to 65535; the grid-stride loops cover whatever lies past it.
constexpr int64_t kMaxGridY = 65535;
// The gather stages the cubes of a batch item in shared memory when there are at most
// this many (else each thread computes them as it goes).
constexpr int kTile = 32;


// One crop problem on an (N, C, T, H, W) input view with any strides.
struct CropProblem {
  int64_t batch = 0;            // N
  int64_t cubes_per_video = 0;  // K
  int64_t channels = 0;         // C
  int64_t extent[3] = {0, 0, 0};
  int64_t size[3] = {0, 0, 0};
  int64_t stride[5] = {0, 0, 0, 0, 0};  // input strides (n, c, t, h, w), in elements
  int64_t padding_mode = 0;
  bool use_int32 = true;  // offsets inside one batch item / cube fit int32 (see cuda_ops.cpp)
};

// Blocks of the backward window kernel per cube (planes x row blocks) = centre partials per cube.
inline int64_t centre_chunks(const CropProblem& p) { return cuda_items::window_blocks_per_cube(p.channels, p.size); }

// out: contiguous (N, K, C, Dt, Dh, Dw). centers: contiguous (N, K, 3) in the accumulation
// type (double for kDouble, else float).
void launch_crop_forward(DType scalar, const CropProblem& p, const void* video, const void* centers, void* out,
                         cudaStream_t stream);

// The fused backward over each cube's window. grad_video: the zero-filled contiguous
// (N, C, T, H, W) video gradient in the video's dtype, which receives atomic adds (fp16/bf16
// ones round per add), or null (centre gradient only). centre_partials: (N*K, centre_chunks(p), 3)
// scratch of the accumulation type, and grad_centers: (N, K, 3) output of that type; both null or both set.
void launch_crop_backward_window(DType scalar, const CropProblem& p, const void* grad_out, const void* video,
                                 const void* centers, void* grad_video, void* centre_partials,
                                 void* grad_centers, cudaStream_t stream);

// The deterministic video gradient: writes every element of the contiguous (N, C, T, H, W)
// grad_video (the video's dtype).
void launch_crop_backward_gather(DType scalar, const CropProblem& p, const void* grad_out, const void* centers,
                                 void* grad_video, cudaStream_t stream);

// Whether launch_crop_int has a fused kernel for this (video, output) pair (32-bit indexing only).
bool crop_int_fused(DType in, DType out);

// crop_cubes_int: in == out without mean/std is a copy (any type of that width); otherwise
// a fused pair (crop_int_fused). centers: contiguous (N, K, 3) double. mean/std: (C,) or null.
void launch_crop_int(DType in, DType out, const CropProblem& p, const void* video, const void* centers,
                     const float* mean, const float* std, void* out_data, cudaStream_t stream);

}  // namespace cuda
}  // namespace cubecrop
