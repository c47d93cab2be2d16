"""Baselines users compare the plugin's verifier against (each decides the same ONNX + VNN-LIB
instances by an independent method)."""
