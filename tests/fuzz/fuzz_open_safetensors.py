"""Fuzz: inspector.open on a .safetensors file."""

import common

with common.instrumented():
    TestOneInput = common.open_file("model.safetensors")


if __name__ == "__main__":
    common.main(TestOneInput)
