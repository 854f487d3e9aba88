"""Fuzz: inspector.open on a torch zip file (sniff + read)."""

import common

with common.instrumented():
    TestOneInput = common.open_file("model.pt")


if __name__ == "__main__":
    common.main(TestOneInput)
