"""The torch engine: devices, loaded FCNs, how they run (backends), the ensemble, decoding, the batched pyramid cropper."""
