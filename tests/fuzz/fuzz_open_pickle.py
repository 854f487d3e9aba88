"""Fuzz: inspector.open on a legacy (pre-1.6) torch pickle file."""

import common

with common.instrumented():
    TestOneInput = common.open_file("model.bin")


if __name__ == "__main__":
    common.main(TestOneInput)
