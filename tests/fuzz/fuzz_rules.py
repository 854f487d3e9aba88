"""Fuzz: load_rules on a rules file."""

import common

with common.instrumented():
    from inspector.mapping.rules import load_rules


def TestOneInput(data: bytes) -> None:
    path = common.written(data, "rules.yaml")
    with common.expected():
        load_rules(path)


if __name__ == "__main__":
    common.main(TestOneInput)
