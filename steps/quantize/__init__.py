"""The ONNX export, its encodings and the parity gate."""
