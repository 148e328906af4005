"""The torch engine: devices, loaded FCNs, the ensemble, the batched pyramid cropper, the Ray engine."""
