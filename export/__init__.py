"""Build-time, torch side: teacher loading, the early-exit student, distillation, staged ONNX export."""
