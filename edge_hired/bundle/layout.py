"""Names of the files and folders inside a bundle, in one place for writer and reader."""

ENCODER_FILE = "vision_encoder.onnx"
PROJECTOR_FILE = "projector.safetensors"
LLM_DIR = "llm"
PROCESSOR_DIR = "processor"
VLM_CONFIG_DIR = "vlm"
