"""Fuzz: load_manifest (YAML bounds + parse_manifest) on a manifest file."""

import common

with common.instrumented():
    from inspector.manifest import load_manifest


def TestOneInput(data: bytes) -> None:
    path = common.written(data, "manifest.yaml")
    with common.expected():
        load_manifest(path)


if __name__ == "__main__":
    common.main(TestOneInput)
