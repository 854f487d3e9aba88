"""Fuzz: the C++ safetensors header parser (formats.safetensors.parse_header) on bytes."""

import common

with common.instrumented():
    from inspector.formats.safetensors import parse_header


def TestOneInput(data: bytes) -> None:
    with common.expected():
        parse_header("fuzz.safetensors", data, len(data))
    with common.expected():
        parse_header("fuzz.safetensors", data, len(data), offsets=False)


if __name__ == "__main__":
    common.main(TestOneInput)
