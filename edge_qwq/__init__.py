"""edge-qwq: distil, export, quantize, compile and run an early-exit inspection model on a Jetson Orin."""
__version__ = "0.1.0"
