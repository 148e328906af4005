"""Library entry points the CLI, benchmarks, Ray and notebooks call: crop outputs, evaluation, suspects."""
