"""Fuzz: inspector.open on a sharded safetensors folder; the input is its index JSON."""

import common

with common.instrumented():
    TestOneInput = common.open_file("model.safetensors.index.json", "hf_index", folder=True)


if __name__ == "__main__":
    common.main(TestOneInput)
