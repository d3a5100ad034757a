// Replaced by the CPU kernels.
