"""An example program answering with an exported ONNX model on a device."""
