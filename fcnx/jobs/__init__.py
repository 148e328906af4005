"""Library entry points the CLI, benchmarks, Ray and notebooks call: the crop job and its outputs, evaluation, suspects."""
