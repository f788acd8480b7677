"""Exporting a trained run for other runtimes: ONNX fp32 / int8 (`exporter.export_run`); the
runtime side that loads an export lives in `gazeclip.run.onnx_runtime`, since every mode loads runs."""
