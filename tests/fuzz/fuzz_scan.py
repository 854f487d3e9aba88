"""Fuzz: inspector.scanning.scan on a file; the first byte picks the file name suffix."""

import common

with common.instrumented():
    from inspector.scanning import scan

SUFFIXES = (".pt", ".bin", ".safetensors", ".nemo", ".ckpt", ".pkl", "")


def TestOneInput(data: bytes) -> None:
    if not data or len(data) > common.MAX_LEN:
        return
    path = common.written(data[1:], "model" + SUFFIXES[data[0] % len(SUFFIXES)])
    scan(path)  # never raises for bad content: every problem is a finding in the report
    scan(path, strict=True)


if __name__ == "__main__":
    common.main(TestOneInput)
