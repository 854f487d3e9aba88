// ckh1 leaf digests computed on a CUDA device (csrc/cuda/treehash.cu). The host combines them
// with treehash::combine, so GPU and CPU digests are the same by construction of the leaves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "treehash.hpp"

namespace inspector::cuda {

// XXH3-128 of each 1 MiB chunk of `nbytes` contiguous bytes at device address `ptr` on
// `device`, in canonical form. Throws std::runtime_error with the CUDA error text (no driver,
// no device, bad pointer, ...). Only the kernel launch and small copies run on the device.
std::vector<treehash::Digest> leaf_digests(std::uintptr_t ptr, std::size_t nbytes, int device);

}  // namespace inspector::cuda
