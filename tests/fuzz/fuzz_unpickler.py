"""Fuzz: the allow-list pickle VM (formats.unpickler.load) and scan_pickle on bytes."""

import common

with common.instrumented():
    from inspector.formats.unpickler import load, scan_pickle


def TestOneInput(data: bytes) -> None:
    with common.expected():
        load(data, path="fuzz.pkl")
    with common.expected():
        load(data, path="fuzz.pkl", strict=True)
    found = scan_pickle(data, path="fuzz.pkl")  # never raises for bad data
    assert found.end <= len(data), found


if __name__ == "__main__":
    common.main(TestOneInput)
