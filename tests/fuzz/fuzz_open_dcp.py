"""Fuzz: inspector.open on a torch.distributed.checkpoint folder; the input is .metadata."""

import common

with common.instrumented():
    TestOneInput = common.open_file(".metadata", "dcp", folder=True)


if __name__ == "__main__":
    common.main(TestOneInput)
