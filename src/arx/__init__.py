"""arx: deploy WebAssembly workloads into attested Keeps."""

__version__ = "0.1.0"
