"""Model definitions, fine-tuning, evaluation, ONNX export and MLflow logging."""
