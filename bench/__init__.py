"""``overfeat bench``: where the time goes, side by side, and how far it is from the hardware.

- :mod:`.macs`: multiply-accumulates per scale, counted from the ONNX graph;
- :mod:`.ceiling`: the machine's measured matrix-multiply rate (fp32 through NumPy, int8
  through ONNX Runtime's ``MatMulInteger`` where it is installed);
- :mod:`.run`: latency per scale and the end-to-end split, each candidate in its own worker
  process (its own peak memory), the candidates interleaved round by round (the same load);
- :mod:`.windows`: dense evaluation against the classifier run on every window separately.
"""
