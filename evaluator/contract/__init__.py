"""The submission contract (``spec``) and the checks an untrusted .onnx file must pass (``check``)."""
