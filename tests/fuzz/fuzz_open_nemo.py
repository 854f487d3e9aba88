"""Fuzz: inspector.open on a .nemo tar."""

import common

with common.instrumented():
    TestOneInput = common.open_file("model.nemo")


if __name__ == "__main__":
    common.main(TestOneInput)
