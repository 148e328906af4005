"""Fine-tuning backbones: datasets, schedules, the resumable training loop, torchrun."""
