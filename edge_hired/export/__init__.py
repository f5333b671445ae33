"""Host side: a LLaVA checkpoint -> a bundle (ONNX vision encoder, projector, quantized LLM)."""
